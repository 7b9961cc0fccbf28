"""Benchmark cconv.filters.filter2d against cv2.filter2D, scipy.ndimage and torch.

A 2048x2048 float32 image, 3x3 and 5x5 dense kernels, the notes' sharpen
kernel, a separable Gaussian and a 21x21 dense kernel (direct and FFT), at 1
and 2 threads. Every anchor that is installed runs in the same process, on
the same arrays, interleaved with cconv round by round (so background load
hits all of them alike); figures are medians. Ratios are anchor time / cconv
time (> 1: cconv is faster). cconv and cv2 compute the same correlation with
the same border (BORDER_REFLECT_101 = "mirror"); scipy.ndimage.correlate is
serial; torch conv2d pads with zeros (the same work, another border) and runs
only for the 3x3 and 5x5 kernels.

    python bench/bench_filters.py               # JSON in bench/results/filters.json
    python bench/bench_filters.py --quick       # fewer rounds
    python bench/bench_filters.py --filter 3x3  # only cases whose name matches
"""
import os

# One OpenMP pool spinning next to another on 2 cores costs more than the
# work: let idle threads sleep, and keep OpenBLAS (unused here) single-threaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

import cconv  # noqa: E402
from cconv import filters as F  # noqa: E402
from _machine import describe, results_dir  # noqa: E402  # bench/ is the script's own folder

try:
    import cv2
except ImportError:  # an optional anchor, never a dependency
    cv2 = None
try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = None

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1
SIZE = 2048


def cases(rng):
    """name -> (image, correlation kernel, filter2d keyword arguments, note)."""
    img = rng.random((SIZE, SIZE), dtype=np.float32)
    rgb8 = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    dense3 = rng.normal(size=(3, 3)).astype(np.float32)
    dense5 = rng.normal(size=(5, 5)).astype(np.float32)
    dense21 = rng.normal(size=(21, 21)).astype(np.float32)
    gauss = F.gaussian(3.0).astype(np.float32)
    return {
        "3x3_dense": (img, dense3, {}, "unrolled 3x3 path"),
        "3x3_sharpen": (img, F.sharpen().astype(np.float32), {},
                        "notes' kernel: 5 nonzero taps (3x3 cross path)"),
        "5x5_dense": (img, dense5, {}, "tap list, 2 rows x 32 columns in registers"),
        "gaussian_s3_19x19": (img, gauss, {}, "separable: two 1-D passes of 19 taps"),
        "21x21_dense_auto": (img, dense21, {}, "auto = direct (441 taps)"),
        "21x21_dense_fft": (img, dense21, {"method": "fft"}, "forced FFT (overlap-save)"),
        "3x3_sharpen_uint8_rgb": (rgb8, F.sharpen().astype(np.float32), {},
                                  "uint8 RGB in and out (float32 inside)"),
    }


def interleaved_medians(fns, rounds, min_time=0.05):
    """{name: median seconds per call}: each round times every fn once (looping
    a fast one until it lasts min_time), so drifting load hits all alike."""
    loops = {}
    for name, fn in fns.items():
        fn()  # warm: first-touch pages, thread pools, caches
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        loops[name] = max(1, int(min_time / max(once, 1e-7))) if once < min_time else 1
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / loops[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def anchors(img, k, threads, slow_ok):
    """name -> callable computing the same filter with another library."""
    fns = {}
    if cv2 is not None:
        fns["cv2"] = lambda: cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
    if slow_ok:
        # serial; in float32 like the others (it computes in float64 inside)
        fns["scipy"] = lambda: ndi.correlate(img, k, mode="mirror")
    # torch pads a 1-channel conv to 16 channels (ANCHORS.md): seconds for a
    # 19x19 kernel, so only the small kernels
    if torch is not None and img.ndim == 2 and slow_ok and k.size <= 25:
        t_img = torch.from_numpy(img)[None, None]
        t_k = torch.from_numpy(np.ascontiguousarray(k))[None, None]

        def run_torch():
            with torch.no_grad():
                return TF.conv2d(t_img, t_k, padding="same")
        fns["torch"] = run_torch
    return fns


def bench(threads, rounds, flt):
    rng = np.random.default_rng(0)
    rows = []
    cconv.set_num_threads(threads)
    if cv2 is not None:
        cv2.setNumThreads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    for name, (img, k, kwargs, note) in cases(rng).items():
        if flt and flt not in name:
            continue
        big = k.size > 100
        fns = {"cconv": lambda img=img, k=k, kw=kwargs: F.filter2d(
            img, k, mode="mirror", op="correlate", **kw)}
        # the slow serial anchors only once per kernel size, at 1 thread
        fns.update(anchors(img, k, threads, slow_ok=threads == 1 and name != "21x21_dense_fft"
                           and "uint8" not in name))
        times = interleaved_medians(fns, max(3, rounds // 3) if big else rounds)
        row = {"case": name, "threads": threads, "shape": list(img.shape),
               "kernel": list(k.shape), "note": note}
        for lib, t in times.items():
            row[f"{lib}_ms"] = t * 1e3
            if lib != "cconv":
                row[f"{lib}_ratio"] = t / times["cconv"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(r):
    def cell(lib):
        if f"{lib}_ms" not in r:
            return f"{'-':>9s} {'':>7s}"
        ratio = f"{r[lib + '_ratio']:6.2f}x" if lib != "cconv" else ""
        return f"{r[lib + '_ms']:9.3f} {ratio:>7s}"
    return (f"{r['case']:24s} {r['threads']:3d} {cell('cconv')} {cell('cv2')} "
            f"{cell('scipy')} {cell('torch')}")


def machine():
    return describe(scipy=scipy.__version__,
                    cv2=cv2.__version__ if cv2 is not None else None,
                    torch=torch.__version__ if torch is not None else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 rounds")
    ap.add_argument("--filter", default="", help="only cases containing this text")
    ap.add_argument("--out", default=str(RESULTS / "filters.json"))
    args = ap.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    info = machine()
    print(json.dumps(info))
    print(f"{'case':24s} {'thr':>3s} {'cconv ms':>9s} {'':7s} {'cv2 ms':>9s} {'ratio':>7s} "
          f"{'scipy ms':>9s} {'ratio':>7s} {'torch ms':>9s} {'ratio':>7s}")
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        rows += bench(threads, rounds, args.filter)
    info["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": info, "results": rows}, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
