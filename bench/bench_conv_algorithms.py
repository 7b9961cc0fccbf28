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
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

import cconv
from cconv import ops
from _machine import describe  # bench/ is the script's own folder
from bench_ops import paired_times

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

RESULTS = Path(__file__).parent / "results"
CASES = {   # name: (x shape, w shape, stride, padding)
    "lenet_conv1_b64": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 0),
    "lenet_conv2_b64": ((64, 6, 12, 12), (16, 6, 5, 5), 1, 0),
    "resnet_64x56_b1": ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    "resnet_64x56_b8": ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    "resnet_128x28_b1": ((1, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    "resnet_256x14_b1": ((1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    "stem_7x7s2_b1": ((1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--out", default=str(RESULTS / "conv_algorithms.json"))
    ap.add_argument("--new-weights", action="store_true",
                    help="change a weight in place before every cconv call (training)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name in args.cases.split(","):
        xs, ws, s, p = CASES[name]
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        b = rng.standard_normal(ws[0], dtype=np.float32)
        names = ops.conv2d_algorithms(xs, ws, (s, s), (p,) * 4, (1, 1), 1)
        for threads in [int(t) for t in args.threads.split(",")]:
            if args.new_weights:
                def conv(a):
                    w.flat[0] += 1e-3     # in place: the weight cache must prepare w again
                    return ops.conv2d(x, w, b, s, p, algorithm=a)
            else:
                def conv(a):
                    return ops.conv2d(x, w, b, s, p, algorithm=a)
            fns = {a: (lambda a=a: conv(a)) for a in names}
            if torch is not None:
                torch.set_num_threads(threads)
                tx, tw, tb = map(torch.from_numpy, (x, w, b))

                def torch_conv():
                    with torch.no_grad():
                        F.conv2d(tx, tw, tb, stride=s, padding=p)
                fns["torch"] = torch_conv
            with cconv.threads(threads):
                t = paired_times(fns, args.rounds)
            row = {"case": name, "threads": threads, "auto": names[0],
                   "new_weights": bool(args.new_weights),
                   **{f"{k}_ms": v * 1e3 for k, v in t.items() if not k.endswith("_min_ms")}}
            if torch is not None:
                row.update({f"vs_torch/{a}": t["torch"] / t[a] for a in names})
            rows.append(row)
            print(f"{name:18s} {threads}t  " + "  ".join(
                f"{a}={t[a] * 1e3:.3f}ms" for a in fns) + (
                f"  auto ({names[0]}) vs torch {t['torch'] / t[names[0]]:.2f}x"
                if torch is not None else ""), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe(torch=torch.__version__ if torch else None),
                               "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
