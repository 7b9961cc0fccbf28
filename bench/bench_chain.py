"""LeNet-5 inference with the compiled plan's C chain against its step-by-step path.

A compiled plan whose every step has a C kernel runs as one C call
(cconv_chain_forward): no Python between layers, and for small nets the batch
split over the threads in one parallel region. This times `net(x)` with the
chain and with the plan's step-by-step path (the chain switched off on the
same plan), interleaved in one process, per batch and thread count, and
says whether the chain split the batch.

    python bench/bench_chain.py                # JSON in bench/results/chain.json
    python bench/bench_chain.py --quick
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cconv  # noqa: E402
from _machine import describe, results_dir  # noqa: E402
from bench_lenet import lenet  # noqa: E402
from bench_overhead import per_call  # noqa: E402

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1


def bench_case(net, batch, threads, rounds):
    x = np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    with cconv.threads(threads):
        plan = net.compile(x.shape)
        chain = plan._c_chain
        if chain is None:
            raise SystemExit("the plan has no C chain (extension without Chain?)")
        want = net(x)

        def with_chain():
            plan._c_chain = chain
            return net(x)

        def steps():
            plan._c_chain = None
            return net(x)
        np.testing.assert_allclose(steps(), want, rtol=1e-5, atol=1e-6)
        try:
            t = per_call({"chain": with_chain, "steps": steps}, rounds, min_time=0.02)
        finally:
            plan._c_chain = chain
        split = chain.split_threads(threads)
    return {"case": f"lenet_infer/b{batch}", "threads": threads, "split_threads": split,
            "chain_us": t["chain"], "steps_us": t["steps"],
            "speedup": t["steps"] / t["chain"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "chain.json"))
    args = ap.parse_args(argv)
    rounds = 7 if args.quick else 21
    net = lenet()
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for batch in (1, 8, 64):
            r = bench_case(net, batch, threads, rounds)
            rows.append(r)
            print(f"{r['case']:16s} {threads}t  chain {r['chain_us']:8.1f} us  steps "
                  f"{r['steps_us']:8.1f} us  {r['speedup']:.2f}x  (split over "
                  f"{r['split_threads']} thread(s))")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe(), "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
