"""Equivariance and invariance of the trained digits net (notes 2.4.3), for docs/.

    python bench/probe_digits.py [--model digits.safetensors]

Trains the digits example first when no model is given (about 15 s), probes
it on the held-out images with shifts of 0..4 pixels, and writes
docs/probes_digits.json and, when matplotlib is installed,
docs/probes_digits.png.
"""
import argparse
import json
import sys
from pathlib import Path

import cconv
from cconv import analysis
from cconv.examples import digits

DOCS = Path(__file__).resolve().parent.parent / "docs"


def plot(eq, inv, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    k = eq.shifts
    for name, kind, jump in zip(eq.layers, eq.types, eq.jumps):
        style = "-o" if kind.startswith("Conv") else ("--s" if "Pool" in kind else ":^")
        label = f"{name} (jump {jump[1]})"
        axes[0].plot(k, eq.error[name], style, label=label)
        axes[1].plot(k, eq.change[name], style, label=label)
    axes[0].set_title("equivariance error |f(Sx) - S'f(x)| / |f(x)|")
    axes[1].set_title("change without re-alignment |f(Sx) - f(x)| / |f(x)|")
    axes[2].plot(k, inv.agreement, "-o", label="same predicted class")
    axes[2].plot(k, inv.accuracy, "-s", label="accuracy")
    axes[2].plot(k, inv.tv_distance, "-^", label="TV distance of softmax")
    axes[2].set_title("network prediction (invariance)")
    for ax in axes:
        ax.set_xlabel("input shift k (pixels)")
        ax.set_xticks(k)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("Trained digits net (8x8): conv layers are equivariant, pooling trades "
                 "equivariance for (partial) invariance", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--shifts", type=int, default=4)
    args = parser.parse_args(argv)
    if args.model:
        net = cconv.load(args.model)
    else:
        net = digits.train(out=None, progress=False)["net"]
    _, _, x_test, y_test = digits.load_data()
    shifts = range(args.shifts + 1)
    eq = analysis.equivariance_curve(net, x_test, shifts=shifts)
    inv = analysis.invariance_curve(net, x_test, y_test, shifts=shifts)
    print(eq.table())
    print()
    print(inv.table())
    DOCS.mkdir(exist_ok=True)
    with open(DOCS / "probes_digits.json", "w") as f:
        json.dump({"equivariance": eq.to_dict(), "invariance": inv.to_dict(),
                   "images": len(x_test), "directions": [list(d) for d in
                                                              eq.directions]}, f, indent=1)
    try:
        plot(eq, inv, DOCS / "probes_digits.png")
        print(f"wrote {DOCS / 'probes_digits.png'}")
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
