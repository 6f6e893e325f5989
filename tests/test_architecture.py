"""The architecture's promises: objects own their state, tables feed everything, one new module adds a learner.

- ``config()`` rebuilds an object; a subclass's own setting round-trips
  through a checkpoint, or the load is refused naming it; a class is saved
  under a stable id that its subclasses do not inherit.
- The learner table feeds the command line, ``compare`` and the perf lists;
  ``ReadoutOnly`` (the proof: one module) appears in all of them.
- Plots never touch the user's matplotlib state.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sparse_rtrl as sr
from conftest import CELL_KINDS, make_cell
from learner_table import LEARNERS
from sparse_rtrl import checkpoint as ck
from sparse_rtrl.learners.base import FACINGS, STRUCTURES


# -- ReadoutOnly ----------------------------------------------------------------------------

def test_readout_only_trains_the_readout_like_lms_and_leaves_the_cell_alone():
    cell = sr.VanillaRNN(3, 6, density=0.5, alpha=0.5, seed=1)
    before = cell.params.copy()
    readout = sr.LinearReadout(cell, 2, seed=2)
    V0 = readout.params.copy()
    opt = sr.SGD([cell.params, readout.params], lr=0.05)
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    losses = sr.train_online(sr.ReadoutOnly(cell), readout, opt, xs, ys)
    assert np.array_equal(cell.params, before)
    # Reference: the frozen network's states, and plain LMS on the readout (y = V h + b, L = |y - t|^2 / 2).
    W = cell.weights["W"].toarray()
    U, b = cell.weights["U"].toarray(), cell.weights["b"]
    h = np.zeros(6)
    V, bias = V0[:12].reshape(2, 6).copy(), V0[12:].copy()
    ref_losses = []
    for x, t in zip(xs, ys):
        h = 0.5 * h + 0.5 * np.tanh(W @ h + U @ x + b)
        err = V @ h + bias - t
        ref_losses.append(0.5 * err @ err)
        V -= 0.05 * np.outer(err, h)
        bias -= 0.05 * err
    np.testing.assert_allclose(readout.params, np.concatenate([V.ravel(), bias]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_readout_only_gives_no_gradient_and_the_cells_states(kind):
    cell = make_cell(kind, 2, 4, 0.5, seed=0)
    learner = sr.ReadoutOnly(cell, batch_size=2)
    s = np.zeros((2, cell.n_state))
    for x in np.random.default_rng(0).normal(size=(5, 2, 2)):
        s = cell.step(s, x)
        np.testing.assert_array_equal(learner.forward(x), s)
        learner.backward(np.ones((2, cell.n_state)))
    assert np.array_equal(learner.grad(), np.zeros(cell.n_params))
    adam = sr.Adam([cell.params.copy()], lr=0.1)
    adam.step([learner.grad()])
    assert np.array_equal(adam.params[0], cell.params)  # Adam's step on a zero gradient is exactly zero


def test_readout_only_appears_wherever_the_learner_table_reaches(tmp_path, capsys):
    from sparse_rtrl.cli import build_parser, main

    assert sr.registry.LEARNERS["readout_only"] is sr.ReadoutOnly
    assert sr.registry.parse_learner("readout_only") == (sr.ReadoutOnly, None)
    assert "readout_only" in sr.registry.learner_specs_help()
    assert "readout_only" in sr.registry.example_specs(make_cell("lstm", 1, 2, 1.0, 0))  # perf and compare lists
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert "readout_only" in train.format_help()
    assert main(["train", "--task", "add", "--cell", "vanilla", "--n-hidden", "4", "--learner", "readout_only",
                 "--steps", "120", "--segment", "20", "--out", str(tmp_path / "esn"), "--no-progress",
                 "--log-every", "40", "--eval-every", "0", "--checkpoint-every", "60"]) == 0
    assert json.loads((tmp_path / "esn" / "summary.json").read_text())["learner"] == "readout only"
    assert main(["compare", "--cell", "gru", "--n-hidden", "4", "--steps", "12", "--seeds", "2"]) == 0
    table = capsys.readouterr().out
    assert "readout only" in table and "SnAp-2" in table and "RFLO" not in table  # RFLO needs a vanilla cell


def test_compare_measures_the_variance_of_every_stochastic_learner():
    # The old hand-written list left KeRNL out although the class said it is stochastic.
    from sparse_rtrl.compare import compare

    result = compare({"name": "add", "length": 20}, "vanilla", 4, 0.5, 0.5, ["kernl", "uoro", "snap1"], steps=10,
                     seeds=3)
    assert set(result["variance"]) == {"KeRNL", "UORO"}


def test_the_taxonomy_lives_on_the_classes():
    for key, cls in sr.registry.LEARNERS.items():
        assert cls.facing in FACINGS and cls.structure in STRUCTURES, key
        assert cls.key == key and sr.registry.class_id(cls) == f"learner/{key}"
    assert sr.RTRL.unbiased and sr.UORO.unbiased and sr.UORO.stochastic and not sr.SnAp.stochastic
    assert sr.KeRNL.learned and sr.DNI.learned and not sr.RFLO.learned
    assert sr.FutureBPTT.facing == "future" and sr.SnAp.facing == "past"


# -- config() rebuilds; subclasses' settings travel -----------------------------------------

@pytest.mark.parametrize("name", list(LEARNERS))
def test_config_rebuilds_every_learner(name):
    spec = LEARNERS[name]
    cell = make_cell(spec.cells[0], 2, 3, 0.5, seed=4)
    learner = spec.make(cell, batch_size=2)
    twin = type(learner)(cell, **learner.config())
    assert twin.config() == learner.config()
    a, b = learner.state_dict(), twin.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    json.dumps(learner.config())


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_config_rebuilds_every_cell(kind):
    cell = make_cell(kind, 3, 5, 0.4, seed=9, dtype=np.float32)
    twin = sr.registry.CELLS[kind](**cell.config())
    assert twin.structure_digest() == cell.structure_digest()
    np.testing.assert_array_equal(twin.params, cell.params)
    json.dumps(cell.config())


class DampedRFLO(sr.RFLO):
    """A user's RFLO with a setting of its own (kept as an attribute of the same name)."""

    def __init__(self, cell, beta=0.9, **kwargs):
        self.beta = beta
        super().__init__(cell, **kwargs)


class ForgetfulRFLO(sr.RFLO):
    """A user's RFLO that does not keep its setting."""

    def __init__(self, cell, beta=0.9, **kwargs):
        self._b = beta
        super().__init__(cell, **kwargs)


def test_a_subclass_setting_round_trips_or_is_refused_by_name(tmp_path):
    cell = make_cell("vanilla", 2, 3, 0.5, seed=4)
    learner = DampedRFLO(cell, beta=0.5)
    learner.forward(np.ones(2))
    learner.backward(np.ones(3))
    assert learner.config() == {"beta": 0.5, "batch_size": None}
    ck.save(tmp_path / "user.ckpt", {"learner": ck.get_state(learner)})
    saved = ck.load(tmp_path / "user.ckpt")["learner"]
    assert saved["class"] == f"python:{__name__}.DampedRFLO"
    twin = DampedRFLO(cell, beta=0.5)
    ck.set_state(twin, saved)
    np.testing.assert_array_equal(twin.traces(), learner.traces())
    with pytest.raises(ValueError, match="beta: state 0.5, this 0.9"):
        ck.set_state(DampedRFLO(cell), saved)
    with pytest.raises(ValueError, match="RFLO"):
        ck.set_state(sr.RFLO(cell), saved)
    with pytest.raises(TypeError, match="'beta'"):
        ForgetfulRFLO(cell).config()


def test_an_unregistered_class_does_not_take_a_registered_id():
    class SnAp(sr.SnAp):  # a user's class that happens to share the name
        pass

    cell = make_cell("gru", 2, 3, 0.5, seed=4)
    mine, theirs = SnAp(cell, 2), sr.SnAp(cell, 2)
    assert SnAp.key is None and sr.registry.class_id(SnAp).startswith("python:")
    assert ck.get_state(theirs)["class"] == "learner/snap"
    with pytest.raises(ValueError, match="not from a SnAp"):
        ck.set_state(mine, ck.get_state(theirs))


def test_records_name_public_fields_only():
    cell = make_cell("lstm", 2, 3, 0.5, seed=4)
    for name, spec in LEARNERS.items():
        if "lstm" not in spec.cells:
            continue
        record = ck.get_state(spec.make(cell))
        assert "python" not in record["class"] and "sparse_rtrl." not in record["class"]
        assert not any(k.startswith("_") for k in record["state"]), name
        assert not any(k.startswith("_") for k in record["identity"]["config"]), name


def test_a_format1_record_of_an_unknown_class_is_refused_naming_the_version(tmp_path):
    import zipfile

    path = tmp_path / "old.ckpt"
    ck.save(path, {"learner": {"kind": "learner", "type": "mylib.MyLearner", "config": {}, "arrays": {},
                               "scalars": {}, "generators": {}}})
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[ck.TREE_MEMBER] = members[ck.TREE_MEMBER].replace(b'"version":2', b'"version":1')
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(ValueError, match="format version 1.*mylib.MyLearner"):
        ck.load(path)


# -- plots leave the user's matplotlib alone ----------------------------------------------------

def test_plots_do_not_touch_the_users_matplotlib_state(tmp_path):
    pytest.importorskip("matplotlib")
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        plt.rcParams["lines.linewidth"] = 7.0
        plt.figure()  # the user's figure
        import sparse_rtrl as sr
        from sparse_rtrl.compare import compare
        cfg = sr.RunConfig(task={{"name": "add", "length": 20}}, cell="vanilla", n_hidden=4, learner="snap1",
                           steps=60, log_every=20, eval_every=0, checkpoint_every=60)
        sr.Trainer(cfg, {str(tmp_path / "run")!r}, progress=False).run()
        compare({{"name": "add", "length": 20}}, "vanilla", 4, 0.5, 0.5, ["uoro"], steps=8, seeds=2,
                out={str(tmp_path / "cmp")!r})
        print(matplotlib.get_backend(), plt.get_fignums(), plt.rcParams["lines.linewidth"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["svg", "[1]", "7.0"]
    assert os.path.getsize(tmp_path / "run" / "loss.png") > 0 and os.path.getsize(tmp_path / "cmp" / "compare.png")
