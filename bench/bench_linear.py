"""Linear layer: numpy matmul (OpenBLAS) vs cconv.ops.gemm, forward + backward, float32.

Run: python bench/bench_linear.py [threads ...]   (default 1 2)
Each row times one training step of a 256->120 (and LeNet's other) Linear at
batch 64, alone and right after a conv2d (so the OpenMP pool of the conv and
OpenBLAS's pool alternate, as in a real net). min over repeats, microseconds.
"""
import os
import platform
import sys
import timeit

import numpy as np

import cconv
from cconv import ops


def step_numpy(x, w, g):
    y = x @ w.T
    return y, g.T @ x, g @ w


def step_gemm(x, w, g):
    y = ops.gemm(x, w, trans_b=True)
    return y, ops.gemm(g, x, trans_a=True), ops.gemm(g, w)


def main(thread_counts):
    rng = np.random.default_rng(0)
    xc = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    wc = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    print(f"# cpu={platform.processor() or platform.machine()} cores={os.cpu_count()} "
          f"numpy={np.__version__} cconv={cconv.__version__} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    for th in thread_counts:
        cconv.set_num_threads(th)
        for n, i, o in [(64, 256, 120), (64, 120, 84), (64, 84, 10), (64, 400, 120)]:
            x = rng.standard_normal((n, i)).astype(np.float32)
            w = rng.standard_normal((o, i)).astype(np.float32)
            g = rng.standard_normal((n, o)).astype(np.float32)
            row = {}
            for name, fn in [("numpy", step_numpy), ("gemm", step_gemm)]:
                alone = min(timeit.repeat(lambda: fn(x, w, g), number=100, repeat=9)) / 100
                conv = min(timeit.repeat(lambda: ops.conv2d(xc, wc), number=20, repeat=5)) / 20
                both = min(timeit.repeat(lambda: (ops.conv2d(xc, wc), fn(x, w, g)),
                                         number=20, repeat=5)) / 20
                row[name] = (alone * 1e6, (both - conv) * 1e6)
            print(f"threads={th} {n}x{i}->{o}: " + "  ".join(
                f"{k} alone {a:7.1f} after-conv {b:7.1f}" for k, (a, b) in row.items()))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 2])
