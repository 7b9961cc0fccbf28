"""Benchmark cconv.linalg.eigh against numpy.linalg.eigh (the anchor), float64.

For n = 500, 1000, 2000 and 1 and 2 OpenBLAS threads (threadpoolctl limits
numpy's and scipy's OpenBLAS alike), both solvers run on the same random
symmetric matrix, alternating call by call so that drift and neighbours on a
shared machine hit both alike. Reported: medians, and the ratio
cconv / numpy (the target is <= 1.2). Also times the subset path (the 10
largest eigenpairs by ?syevr) and eigenvalues only.

    python bench/bench_eigh.py             # JSON in bench/results/eigh.json
    python bench/bench_eigh.py --quick     # 3 repeats, n <= 1000
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from cconv import linalg
from _machine import describe, results_dir  # bench/ is the script's own folder

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1


def machine():
    import scipy
    from threadpoolctl import threadpool_info
    return describe(
        scipy=scipy.__version__,
        blas=[{k: d.get(k) for k in ("prefix", "version", "num_threads", "filepath")}
              for d in threadpool_info()],
        OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS"))


def paired_medians(fns, repeats):
    """Median seconds of each fn, calls interleaved: f0 f1 f0 f1 ..."""
    for fn in fns:
        fn()  # warm: pages, thread pools, workspace
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples], samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "eigh.json"))
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    sizes = args.sizes or ([500, 1000] if args.quick else [500, 1000, 2000])
    rng = np.random.default_rng(0)
    results = []
    print(f"{'n':>5} {'thr':>3} {'what':<16} {'numpy ms':>9} {'cconv ms':>9} {'ratio':>6}")
    for n in sizes:
        a = rng.standard_normal((n, n))
        a = (a + a.T) / 2
        repeats = args.repeats or (3 if args.quick else (5 if n >= 2000 else 9))
        for t in args.threads:
            with threadpool_limits(t, user_api="blas"):
                cases = [
                    ("eigh", lambda a=a: np.linalg.eigh(a), lambda a=a: linalg.eigh(a)),
                    ("eigvalsh", lambda a=a: np.linalg.eigvalsh(a),
                     lambda a=a: linalg.eigvalsh(a)),
                ]
                if n <= 1000 or not args.quick:
                    cases.append(("eigh top-10", lambda a=a: np.linalg.eigh(a),
                                  lambda a=a: linalg.eigh(a, subset=(-10, -1))))
                for what, ref, ours in cases:
                    (t_np, t_cc), raw = paired_medians([ref, ours], repeats)
                    ratio = t_cc / t_np
                    print(f"{n:>5} {t:>3} {what:<16} {t_np * 1e3:>9.2f} {t_cc * 1e3:>9.2f} "
                          f"{ratio:>6.2f}", flush=True)
                    results.append({"n": n, "threads": t, "case": what,
                                    "numpy_ms": t_np * 1e3, "cconv_ms": t_cc * 1e3,
                                    "ratio": ratio, "repeats": repeats,
                                    "numpy_samples_ms": [s * 1e3 for s in raw[0]],
                                    "cconv_samples_ms": [s * 1e3 for s in raw[1]]})
    out = {"machine": machine(),
           "note": "ratio = cconv / numpy (medians, calls interleaved, same process); "
                   "'eigh top-10' compares numpy's full eigh with cconv's syevr subset",
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
