"""The trainer from a real Jupyter kernel: the user's matplotlib backend is left alone, and progress shows."""

import textwrap

import pytest

jupyter_client = pytest.importorskip("jupyter_client", reason="the test extra installs jupyter_client (nbmake)")

CODE = textwrap.dedent("""
    import tempfile, os
    import matplotlib
    import matplotlib.pyplot as plt
    %matplotlib inline
    backend = matplotlib.get_backend()
    plt.figure(); plt.plot([1, 2]); figures_before = plt.get_fignums()
    import sparse_rtrl as sr
    folder = os.path.join(tempfile.mkdtemp(), "run")
    config = sr.RunConfig(task={"name": "add", "length": 20}, cell="vanilla", n_hidden=6, learner="snap1",
                          steps=200, log_every=50, eval_every=100, eval_steps=40, checkpoint_every=100)
    trainer = sr.Trainer(config, folder)
    summary = trainer.run()
    print("PROGRESS", trainer.progress)
    print("SAME_BACKEND", matplotlib.get_backend() == backend, backend)
    print("SAME_FIGURES", plt.get_fignums() == figures_before)
    print("PNG", os.path.exists(os.path.join(folder, "loss.png")))
""")


def _run_in_kernel(code, timeout=300):
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        out, err = [], []

        def collect(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                err.append("\n".join(content["traceback"]))

        reply = kc.execute_interactive(code, timeout=timeout, output_hook=collect)
        return reply["content"]["status"], "".join(out), "".join(err)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_training_in_a_kernel_keeps_the_backend_and_shows_progress():
    status, out, err = _run_in_kernel(CODE)
    assert status == "ok", err
    assert "SAME_BACKEND True" in out, out
    assert "SAME_FIGURES True" in out
    assert "PNG True" in out
    # In a notebook the progress bar is on by default (tqdm: a widget, or text in the cell's output).
    assert "PROGRESS True" in out
    assert "200/200" in err or "200/200" in out, (out, err)
