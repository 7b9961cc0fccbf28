"""Every conv2d algorithm that applies, against torch, interleaved in one process.

For LeNet's layers (the direct kernel against im2col + GEMM) and the shapes
where the automatic choice is closest to torch (the 3x3 ResNet layers, the
7x7 stem): each algorithm cconv can run
(`ops.conv2d_algorithms`, forced with `algorithm=`) and torch's conv2d are
sampled in alternation (`bench_ops.paired_times`), so a burst of load from
other jobs hits all alike. Ratios are torch time / cconv time.

    python bench/bench_conv_algorithms.py                 # 1 and 2 threads
    python bench/bench_conv_algorithms.py --rounds 25 --threads 1
    python bench/bench_conv_algorithms.py --new-weights --cases resnet_256x14_b1 \
        --out bench/results/conv_algorithms_new_weights.json

--new-weights changes one weight in place before every cconv call, as a
training step does: the prepared (transformed, packed) weights are then
made again each call instead of coming from the weight cache (torch's
calls are unchanged).

--weight-grad times the weight gradient instead (`ops.conv2d_backward`
with need_input/need_bias off): "auto" (the direct gradient kernel for
direct-path layers of <= CCONV_DIRECT_GRAD_MAX_COUT output channels, Winograd's
adjoint for F(4x4) layers) against "im2col_gemm" and torch's
`torch.nn.grad.conv2d_weight`, on the cases either side of that bound:

    python bench/bench_conv_algorithms.py --weight-grad \
        --cases lenet_conv1_b64,lenet_conv2_b64,direct_3x3_16_b8,direct_3x3_32_b8,\
direct_3x3_32to64_b8,stem_7x7s2_b1 --out bench/results/conv_weight_grad.json

and the layers short enough for the direct kernel where another algorithm
may win (Winograd along rows, F(4x4, 3x3)):

    python bench/bench_conv_algorithms.py --cases conv_5x5s2_b1,stem_7x7s2_64px_b1,\
direct_3x3_16_b8,direct_3x3_32_b8,direct_3x3_32_b1,direct_3x3_32to64_b1,\
direct_3x3_32x28_b1 --out bench/results/conv_algorithms_rows.json
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

import cconv
from cconv import ops
from _machine import describe, results_dir  # bench/ is the script's own folder
from bench_ops import paired_times

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1
CASES = {   # name: (x shape, w shape, stride, padding)
    "lenet_conv1_b64": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 0),
    "lenet_conv2_b64": ((64, 6, 12, 12), (16, 6, 5, 5), 1, 0),
    "resnet_64x56_b1": ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    "resnet_64x56_b8": ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    "resnet_128x28_b1": ((1, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    "resnet_256x14_b1": ((1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    "stem_7x7s2_b1": ((1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
    # direct-path 3x3 layers either side of CCONV_DIRECT_GRAD_MAX_COUT (32)
    "direct_3x3_16_b8": ((8, 16, 56, 56), (16, 16, 3, 3), 1, 1),
    "direct_3x3_32_b8": ((8, 32, 56, 56), (32, 32, 3, 3), 1, 1),
    "direct_3x3_32to64_b8": ((8, 32, 56, 56), (64, 32, 3, 3), 1, 1),
    # 3x3 layers the direct kernel could run: Winograd from 24 input channels
    # and 100 tiles (CCONV_WINOGRAD_OVER_DIRECT_*)
    "direct_3x3_32_b1": ((1, 32, 56, 56), (32, 32, 3, 3), 1, 1),
    "direct_3x3_32to64_b1": ((1, 32, 56, 56), (64, 32, 3, 3), 1, 1),
    "direct_3x3_32x28_b1": ((1, 32, 28, 28), (32, 32, 3, 3), 1, 1),
    # where winograd_rows applies but is not picked (CCONV_WINOGRAD_ROWS_*)
    "conv_5x5s2_b1": ((1, 3, 224, 224), (32, 3, 5, 5), 2, 2),
    "stem_7x7s2_64px_b1": ((1, 3, 64, 64), (64, 3, 7, 7), 2, 3),
}
DEFAULT_CASES = ("lenet_conv1_b64", "lenet_conv2_b64", "resnet_64x56_b1", "resnet_64x56_b8",
                 "resnet_128x28_b1", "resnet_256x14_b1", "stem_7x7s2_b1")


def _forward_fns(x, w, b, s, p, names, new_weights):
    def conv(a):
        if new_weights:
            w.flat[0] += 1e-3     # in place: the weight cache must prepare w again
        return ops.conv2d(x, w, b, s, p, algorithm=a)
    fns = {a: (lambda a=a: conv(a)) for a in names}
    if torch is not None:
        tx, tw, tb = map(torch.from_numpy, (x, w, b))

        def torch_conv():
            with torch.no_grad():
                F.conv2d(tx, tw, tb, stride=s, padding=p)
        fns["torch"] = torch_conv
    return fns


def _weight_grad_fns(x, w, s, p):
    dy = np.random.default_rng(1).standard_normal(ops.conv2d(x, w, None, s, p).shape,
                                                  dtype=np.float32)
    fns = {a: (lambda a=a: ops.conv2d_backward(dy, x, w, s, p, need_input=False,
                                               need_bias=False, algorithm=a))
           for a in ("auto", "im2col_gemm")}
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)

        def torch_grad():
            with torch.no_grad():
                torch.nn.grad.conv2d_weight(tx, w.shape, tdy, stride=s, padding=p)
        fns["torch"] = torch_grad
    return fns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--out", default=None,
                    help="default results/conv_algorithms.json (conv_weight_grad.json "
                         "with --weight-grad)")
    ap.add_argument("--new-weights", action="store_true",
                    help="change a weight in place before every cconv call (training)")
    ap.add_argument("--weight-grad", action="store_true",
                    help="time the weight gradient: auto vs im2col_gemm vs torch")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(RESULTS / ("conv_weight_grad.json" if args.weight_grad
                                  else "conv_algorithms.json"))
    rng = np.random.default_rng(0)
    rows = []
    for name in args.cases.split(","):
        xs, ws, s, p = CASES[name]
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        b = rng.standard_normal(ws[0], dtype=np.float32)
        if args.weight_grad:
            names = ["auto", "im2col_gemm"]
            fns = _weight_grad_fns(x, w, s, p)
        else:
            names = list(ops.conv2d_algorithms(xs, ws, (s, s), (p,) * 4, (1, 1), 1))
            fns = _forward_fns(x, w, b, s, p, names, args.new_weights)
        for threads in [int(t) for t in args.threads.split(",")]:
            if torch is not None:
                torch.set_num_threads(threads)
            with cconv.threads(threads):
                t = paired_times(fns, args.rounds)
            row = {"case": name, "threads": threads, "auto": names[0],
                   "new_weights": bool(args.new_weights),
                   "weight_grad": bool(args.weight_grad),
                   **{f"{k}_ms": v * 1e3 for k, v in t.items() if not k.endswith("_min_ms")}}
            if torch is not None:
                row.update({f"vs_torch/{a}": t["torch"] / t[a] for a in names})
            rows.append(row)
            print(f"{name:20s} {threads}t  " + "  ".join(
                f"{a}={t[a] * 1e3:.3f}ms" for a in fns) + (
                f"  {names[0]} vs torch {t['torch'] / t[names[0]]:.2f}x"
                if torch is not None else ""), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe(torch=torch.__version__ if torch else None),
                               "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
