"""Where the microseconds of a batch-1 LeNet-5 inference go.

Times, at 1 thread, in one process and interleaved: the whole `net(x)`,
its compiled plan called directly, each fused step of the plan alone (on
its real input), the layers run one by one without a plan, and, as the
per-call floors, an empty Python call, `np.empty` and onnxruntime's
`session.run` on the same net when installed. Everything that is not a
step's own time is per-call overhead: `net(x)` - sum(steps).

    python bench/bench_overhead.py           # JSON in bench/results/overhead.json
    python bench/bench_overhead.py --quick
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cconv  # noqa: E402
from bench_lenet import lenet, machine, onnx_lenet, ort, ort_session  # noqa: E402
from _machine import results_dir  # noqa: E402  (bench/ is the script's folder)

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1


def per_call(fns, rounds, min_time=0.01):
    """Median microseconds per call of each fn, sampled in interleaved rounds."""
    loops = {}
    for name, fn in fns.items():
        for _ in range(20):
            fn()
        t0 = time.perf_counter()
        for _ in range(50):
            fn()
        loops[name] = max(50, int(min_time / max((time.perf_counter() - t0) / 50, 1e-8)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = loops[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="ignored but the first (per-call cost)")
    ap.add_argument("--out", default=str(RESULTS / "overhead.json"))
    args = ap.parse_args(argv)
    threads = int(args.threads.split(",")[0])
    rounds = 7 if args.quick else 21
    net = lenet()
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with cconv.threads(threads):
        plan = net.compile(x.shape)
        layers = list(net)

        def unplanned():
            v = x
            for layer in layers:
                v = layer.forward(v)
            return v

        fns = {"net(x)": lambda: net(x), "plan(x)": lambda: plan(x),
               "net(x, reuse_output=True)": lambda: net(x, reuse_output=True),
               "layer by layer, no plan": unplanned}
        v, step_names = x, []
        for fn, (kind, nodes) in zip(plan._chain or (), plan.steps):
            name = f"step {kind}: {' + '.join(nodes)}"
            fns[name] = (lambda f, a: lambda: f(a))(fn, v)
            step_names.append(name)
            v = fn(v)
        fns["floor: empty Python call"] = lambda: None
        fns["floor: np.empty(6x24x24)"] = lambda: np.empty((1, 6, 24, 24), np.float32)
        if ort is not None:
            sess = ort_session(onnx_lenet(net), threads)
            feed = {"x": x}
            fns["onnxruntime session.run"] = lambda: sess.run(None, feed)
        us = per_call(fns, rounds)
    steps_sum = sum(us[n] for n in step_names)
    result = {"machine": machine(), "threads": threads, "plan": plan.describe(),
              "microseconds": us, "sum_of_steps_us": steps_sum,
              "overhead_us": us["net(x)"] - steps_sum,
              "results": [{"case": "lenet_infer_overhead/b1", "threads": threads,
                           "cconv_ms": us["net(x)"] / 1e3,
                           **({"onnxruntime_ms": us["onnxruntime session.run"] / 1e3}
                              if "onnxruntime session.run" in us else {})}]}
    for name, t in us.items():
        print(f"{t:9.2f} us  {name}")
    print(f"{steps_sum:9.2f} us  sum of the plan's steps; overhead "
          f"{result['overhead_us']:.2f} us per net(x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
