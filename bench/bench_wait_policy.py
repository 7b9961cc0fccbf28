"""LeNet-5 at batch 64 under each OpenMP wait setting, back to back and after idling.

For cconv's default (`GOMP_SPINCOUNT=30000` set at import: idle threads spin
briefly, then sleep) and `OMP_WAIT_POLICY=passive` (its earlier default), a
fresh process per setting, alternating, times every `net(x)` call: calls
back to back, and the calls after a pause (the first few after an idle
spell are slow for every setting: cold caches and a halted vCPU; the rest
show whether the pool itself is asleep), and each round's mean per call
(which counts the stalls that per-call medians hide), and the CPU time the
process burns in the 50 ms after a last call (how long idle threads spin).
Medians over rounds. With --train,
also the wall time of `cconv train digits --threads 2` under each setting,
alone and next to a process that keeps one core busy (a spinning thread
must not starve other work). With --onnxruntime, also the calls right after
30 onnxruntime runs in the same process, whose pool then spins on: the case
where passive waiting is the better setting.

    python bench/bench_wait_policy.py            # JSON in bench/results/wait_policy.json
    python bench/bench_wait_policy.py --train --onnxruntime
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

from _machine import describe, results_dir  # bench/ is the script's own folder

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1
SETTINGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "passive"}}
CALLS = 40       # per round
SETTLED = 5      # calls after a pause counted as "settled" from this one on


def child(threads, pause, rounds):
    """Per-call medians; pause < 0: each round right after 30 onnxruntime runs
    of the same net on as many threads (its pool still spinning)."""
    import cconv
    from bench_lenet import lenet
    net = lenet()
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    per_call = [[] for _ in range(CALLS)]
    if pause < 0:
        from bench_lenet import onnx_lenet, ort_session
        sess = ort_session(onnx_lenet(net), threads)
    with cconv.threads(threads):
        for _ in range(20):
            net(x)
        for _ in range(rounds):
            if pause < 0:
                for _ in range(30):
                    sess.run(None, {"x": x})
            else:
                time.sleep(pause)
            for i in range(CALLS):
                t0 = time.perf_counter()
                net(x)
                per_call[i].append(time.perf_counter() - t0)
        # how long the idle pool spins: the process's CPU time in the 50 ms
        # after a last call (onnxruntime's pool, when present, would count too)
        idle = []
        for _ in range(5):
            net(x)
            c0 = time.process_time()
            time.sleep(0.05)
            idle.append(time.process_time() - c0)
    med = [statistics.median(c) * 1e3 for c in per_call]
    # a round's mean counts its stalls, which the per-call medians hide
    means = [sum(c[r] for c in per_call) / CALLS * 1e3 for r in range(int(rounds))]
    return {"first_ms": med[0], "settled_ms": statistics.median(med[SETTLED:]),
            "round_mean_ms": statistics.median(means),
            "idle_cpu_ms_after_last_call": statistics.median(idle) * 1e3}


def train_seconds(env, busy):
    """Wall seconds of a digits training run (a fresh process) under env."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cconv", "train", "digits", "--threads", "2",
                        "--no-progress", "--out", ""], env=env, check=True,
                       capture_output=True)
        return time.perf_counter() - t0
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.03, help="seconds idle before a round")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2, help="processes per setting and pause")
    ap.add_argument("--onnxruntime", action="store_true",
                    help="also right after onnxruntime runs, its pool still spinning")
    ap.add_argument("--train", action="store_true",
                    help="also time digits training, alone and next to a busy process")
    ap.add_argument("--out", default=str(RESULTS / "wait_policy.json"))
    ap.add_argument("--child", nargs=3, type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        t, pause, rounds = args.child
        print(json.dumps(child(int(t), pause, int(rounds))))
        return
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    rows = []
    pauses = [0.0, args.pause] + ([-1.0] if args.onnxruntime else [])
    for pause in pauses:
        samples = {name: [] for name in SETTINGS}
        for _ in range(args.repeats):
            for name, extra in SETTINGS.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(args.threads), str(pause),
                     str(args.rounds)], env={**base, **extra}, capture_output=True,
                    text=True, check=True)
                samples[name].append(json.loads(out.stdout))
        row = {"case": (f"lenet_infer/b64 pause {pause * 1e3:.0f} ms" if pause >= 0
                        else "lenet_infer/b64 after onnxruntime"), "threads": args.threads}
        for name, s in samples.items():
            row[f"{name}_settled_ms"] = [r["settled_ms"] for r in s]
            row[f"{name}_first_ms"] = [r["first_ms"] for r in s]
            row[f"{name}_round_mean_ms"] = [r["round_mean_ms"] for r in s]
            row[f"{name}_idle_cpu_ms"] = [r["idle_cpu_ms_after_last_call"] for r in s]
        rows.append(row)
        print(f"{row['case']:<28} {args.threads}t  " + "  ".join(
            f"{n} settled {'/'.join(f'{v:.3f}' for v in row[f'{n}_settled_ms'])} ms "
            f"(first {'/'.join(f'{v:.2f}' for v in row[f'{n}_first_ms'])}, round mean "
            f"{'/'.join(f'{v:.2f}' for v in row[f'{n}_round_mean_ms'])}, idle CPU "
            f"{'/'.join(f'{v:.1f}' for v in row[f'{n}_idle_cpu_ms'])} ms)" for n in SETTINGS))
    if args.train:
        for busy in (False, True):
            row = {"case": "train_digits" + ("/next_to_busy_process" if busy else ""),
                   "threads": 2}
            for _ in range(args.repeats):
                for name, extra in SETTINGS.items():
                    row.setdefault(f"{name}_s", []).append(
                        train_seconds({**base, **extra}, busy))
            rows.append(row)
            print(f"{row['case']:<34} 2t  " + "  ".join(
                f"{n} {'/'.join(f'{v:.2f}' for v in row[f'{n}_s'])} s" for n in SETTINGS))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe(), "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
