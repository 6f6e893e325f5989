"""Cold start: seconds from launch to the main job's first progress line, and of compilation, on an empty kernel cache.

The main job is the README's first command (``sparse-rtrl train`` with its
built-in defaults: SnAp-2 on the copy task, a 64-unit GRU, float64) for
2000 steps. It runs in a fresh process with ``NUMBA_CACHE_DIR`` pointing at
an empty folder, with the progress bar on; the script reads the process's
output as it comes and notes when the bar first draws (the trainer opens it
after the first call of the compiled loop, so everything compiled before
then is paid for by then). The same command is then run again on the now
warm cache: the difference of the two totals is the compilation. Then each
further learner x dtype (``--learners``, both dtypes; on the GRU, or a vanilla
RNN for the learners that run on vanilla cells only) runs 200 steps on the
cache the main job left, cold for its own kernels, and again warm; its
compilation is the difference. Targets: first progress line within 15 s,
at most 20 s of compilation in total, at most 10 s per further learner x
dtype.

    python perf/cold_start.py           # the main job, then every learner x dtype (~15 min)
    python perf/cold_start.py --quick   # the main job for 50 steps, on the test suite's warm cache
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

from sparse_rtrl import registry  # noqa: E402


def run(args, cache, out):
    """Run ``sparse-rtrl train ARGS --out OUT`` with the kernel cache ``cache``; returns
    (seconds to the first progress line or None, seconds in total)."""
    env = dict(os.environ)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    cmd = [sys.executable, "-m", "sparse_rtrl", "train", *args, "--out", out, "--progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = []

    def watch(stream):
        while True:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                return
            if not first and (b"step/s" in chunk or b"s/step" in chunk):  # the bar's first draw
                first.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=watch, args=(s,)) for s in (proc.stdout, proc.stderr)]
    for th in threads:
        th.start()
    proc.wait()
    total = time.perf_counter() - t0
    for th in threads:
        th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return (first[0] if first else None), total


def main(argv=None):
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="steps of the main job")
    p.add_argument("--learners", nargs="*", default=None,
                   help="further learners (registry specs; default: one spec per learner)")
    args = p.parse_args(argv)
    learners = args.learners if args.learners is not None else list(dict.fromkeys(
        s for s in registry.example_specs() if s != "snap2"))
    if args.quick:
        args.steps, learners = 50, []
    print(f"cold start of the main job ({args.steps} steps) and of each further learner x dtype; {_common.machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = None if args.quick else os.path.join(tmp, "cache")  # quick: the caller's cache, warm or not
        n = 0

        def folder():
            nonlocal n
            n += 1
            return os.path.join(tmp, f"run{n}")

        main_args = ["--steps", str(args.steps)]
        first, cold = run(main_args, cache, folder())
        _, warm = run(main_args, cache, folder())
        rows.append({"run": "main job", "first_line_s": first, "cold_s": cold, "warm_s": warm,
                     "compile_s": cold - warm})
        print(f"  main job: first progress line {first if first is None else round(first, 1)} s, "
              f"total {cold:.1f} s cold, {warm:.1f} s warm: {cold - warm:.1f} s compiling", flush=True)
        gru = registry.make_cell("gru", 1, 2)
        for spec in learners:
            # The main job's GRU where the learner runs on one, else a vanilla RNN (KF-RTRL, RFLO, ...).
            cell = "gru" if registry.parse_learner(spec)[0].supports(gru) is None else "vanilla"
            for dtype in ("float64", "float32"):
                extra = ["--learner", spec, "--cell", cell, "--dtype", dtype, "--steps", "200"]
                _, cold = run(extra, cache, folder())
                _, warm = run(extra, cache, folder())
                rows.append({"run": f"{spec} {dtype}", "first_line_s": None, "cold_s": cold, "warm_s": warm,
                             "compile_s": cold - warm})
                print(f"  {spec} {dtype}: {cold:.1f} s cold, {warm:.1f} s warm: {cold - warm:.1f} s compiling",
                      flush=True)
    print()
    _common.print_table(rows, ["run", "first_line_s", "cold_s", "warm_s", "compile_s"])
    head = rows[0]
    print("\nheadline" + (" (quick: the caller's kernel cache, not an empty one; no verdicts)" if args.quick else "") + ":")
    if head["first_line_s"] is not None:
        verdict = "" if args.quick else f" (target 15 s: {'met' if head['first_line_s'] <= 15 else 'NOT met'})"
        print(f"  first progress line {head['first_line_s']:.1f} s{verdict}")
    verdict = "" if args.quick else f" (target 20 s: {'met' if head['compile_s'] <= 20 else 'NOT met'})"
    print(f"  main job compiling {head['compile_s']:.1f} s{verdict}")
    further = [r["compile_s"] for r in rows[1:]]
    if further:
        worst = max(rows[1:], key=lambda r: r["compile_s"])
        print(f"  further learner x dtype: at most {worst['compile_s']:.1f} s ({worst['run']}; target 10 s: "
              f"{'met' if worst['compile_s'] <= 10 else 'NOT met'})")
    tag = "quick" if args.quick else "full"
    print("wrote", _common.write_csv(os.path.join(args.out, f"cold_start_{tag}.csv"), rows))
    fig = _common.figure(figsize=(10, 4))
    ax = fig.subplots()
    labels = [r["run"] for r in rows]
    ax.bar(range(len(rows)), [r["compile_s"] for r in rows], label="compiling (cold - warm)")
    ax.bar(range(len(rows)), [r["warm_s"] for r in rows], bottom=[r["compile_s"] for r in rows], label="warm run")
    ax.axhline(10, color="k", ls=":", lw=1, label="10 s (further learner x dtype)")
    ax.axhline(20, color="k", ls="--", lw=1, label="20 s (main job)")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7)
    ax.set_title(f"Cold start on an empty kernel cache; {_common.machine()}", fontsize=9)
    fig.tight_layout()
    print("wrote", _common.save_figure(fig, os.path.join(args.out, f"cold_start_{tag}.png")))
    return rows


if __name__ == "__main__":
    main()
