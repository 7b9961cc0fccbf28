"""LeNet-5 inference with each engine alone in its own process, calls back to back.

bench_lenet.py samples the engines in one process, interleaved, with a
pause before each sample; this script is the other view: a fresh process
per (engine, threads, batch), warmed up, then timed without pauses, so no
engine's thread pool state (sleeping or spinning) bears on another's. It
also reports how much CPU onnxruntime's idle pool burns after its last run
(its threads spin-wait; cconv's sleep, see docs/performance.md, Threads).

    python bench/bench_lenet_isolated.py        # JSON in bench/results/lenet_isolated.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import results_dir  # noqa: E402  (bench/ is the script's folder)

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1


def one(engine, threads, batch, rounds):
    """Median ms per call, in this process (run as a child)."""
    import cconv
    from bench_lenet import lenet, onnx_lenet, ort_session
    net = lenet()
    x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    if engine == "onnxruntime":
        sess = ort_session(onnx_lenet(net), threads)
        fn = lambda: sess.run(None, {"x": x})  # noqa: E731
    else:
        fn = lambda: net(x)  # noqa: E731
    with cconv.threads(threads):
        for _ in range(50):
            fn()
        n = 200 if batch > 1 else 2000
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples.append((time.perf_counter() - t0) / n * 1e3)
        idle_cpu = []
        for wait in (0.0, 0.02, 0.1):      # CPU the idle pool burns after a run
            for _ in range(20):
                fn()
            time.sleep(wait)
            t0, w0 = os.times(), time.perf_counter()
            time.sleep(0.2)
            t1, w1 = os.times(), time.perf_counter()
            idle_cpu.append((t1.user - t0.user + t1.system - t0.system) / (w1 - w0))
    return {"ms": statistics.median(samples), "idle_cpu_after_0_20_100ms": idle_cpu}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=2, help="processes per configuration")
    ap.add_argument("--out", default=str(RESULTS / "lenet_isolated.json"))
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "THREADS", "BATCH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        e, t, b = args.child
        print(json.dumps(one(e, int(t), int(b), args.rounds)))
        return
    try:
        import onnxruntime  # noqa: F401
        engines = ["cconv", "onnxruntime"]
    except ImportError:
        engines = ["cconv"]
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for batch in (1, 64):
            row = {"case": f"lenet_infer_isolated/b{batch}", "threads": threads}
            for _ in range(args.repeats):       # engines alternate, process by process
                for e in engines:
                    r = subprocess.run([sys.executable, __file__, "--child", e, str(threads),
                                        str(batch), "--rounds", str(args.rounds)],
                                       capture_output=True, text=True, timeout=600)
                    if r.returncode != 0:
                        raise RuntimeError(r.stderr)
                    got = json.loads(r.stdout.strip().splitlines()[-1])
                    row.setdefault(f"{e}_samples_ms", []).append(got["ms"])
                    row[f"{e}_idle_cpu"] = got["idle_cpu_after_0_20_100ms"]
            for e in engines:
                row[f"{e}_ms"] = statistics.median(row[f"{e}_samples_ms"])
            if "onnxruntime_ms" in row:
                row["vs_onnxruntime"] = row["onnxruntime_ms"] / row["cconv_ms"]
            rows.append(row)
            print(f"{row['case']:26s} {threads}t  " + "  ".join(
                f"{e} {row[e + '_ms']:.3f} ms (idle CPU after 0/20/100 ms: "
                + "/".join(f"{c:.0%}" for c in row[e + '_idle_cpu']) + ")" for e in engines),
                flush=True)
    from _machine import describe
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe(), "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
