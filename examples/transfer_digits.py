"""Transfer learning on the bundled digits: why fine-tune with a lower learning rate?

Pretrain a small CNN (conv-BN-ReLU-pool x2, fc64, fc5) on digits 0-4, then
learn digits 5-9 from 10 labelled images per class, four ways:

  scratch        a fresh net, the pretraining learning rate (3e-3)
  head_only      pretrained net, new head; everything below it frozen, lr 3e-3
  all_low_lr     pretrained net, new head; every layer trains at lr 3e-4
  all_high_lr    pretrained net, new head; every layer trains at lr 3e-3
  discriminative pretrained net, new head at lr 3e-3, the layers below at 3e-4

Every method uses Adam and the same seeded data, batches and head; each seed
draws another pretraining run, training images and head. Per epoch we record
the held-out accuracy on digits 5-9 and how far the pretrained layers moved
(||w - w_pretrained|| / ||w_pretrained|| over the conv and fc64 weights).

    python examples/transfer_digits.py            # ~1-2 minutes on 2 cores
    python examples/transfer_digits.py --seeds 2 --epochs 10 --out-dir /tmp/t   # quick

Writes transfer_digits.json (every curve) and transfer_digits.png (matplotlib
when installed, else Pillow) to --out-dir (default docs/), and prints the table
that docs/transfer.md quotes. Needs scikit-learn (pip install 'cconv[examples]').
"""
import argparse
import json
import os
import platform
import time

import numpy as np

import cconv
from cconv import nn, transfer
from cconv.examples.digit_tasks import load_task
from cconv.optim import Adam
from cconv.train import evaluate, fit

SOURCE, TARGET = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
HIGH_LR, LOW_LR = 3e-3, 3e-4
BACKBONE = ["0_conv2d.weight", "4_conv2d.weight", "9_linear.weight"]
METHODS = ["scratch", "head_only", "all_low_lr", "all_high_lr", "discriminative"]


def build(classes, seed):
    net = cconv.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, classes),
    )
    return net.build((1, 8, 8), seed=seed)


def pretrain(seed, epochs, data):
    x, y, xt, yt = load_task(SOURCE, test_fraction=0.2, seed=seed, data=data)
    net = build(len(SOURCE), seed)
    fit(net, x, y, epochs=epochs, batch_size=32, optimizer=Adam(net, lr=HIGH_LR), seed=seed,
        progress=False)
    return net, evaluate(net, xt, yt)["accuracy"]


def drift(net, reference):
    params = dict(net.named_parameters())
    num = sum(float(np.sum((params[k] - reference[k]) ** 2)) for k in BACKBONE)
    den = sum(float(np.sum(reference[k] ** 2)) for k in BACKBONE)
    return (num / den) ** 0.5


def finetune(method, pretrained, seed, task, epochs, lr=None):
    """Curves of one run; lr overrides the method's learning rate (the sweep)."""
    x, y, xt, yt = task
    default_lr = {"scratch": HIGH_LR, "head_only": HIGH_LR, "all_low_lr": LOW_LR,
                  "all_high_lr": HIGH_LR, "all": HIGH_LR, "discriminative": HIGH_LR}[method]
    lr = default_lr if lr is None else lr
    groups = None
    if method == "scratch":
        net = build(len(TARGET), seed + 1000)
    else:
        net = cconv.Graph.from_config(pretrained.get_config())
        weights = dict(pretrained.named_parameters())
        for name, value in net.named_parameters():   # same config: same names and shapes
            np.copyto(value, weights[name])
        transfer.replace_head(net, len(TARGET), seed=seed)
        if method == "head_only":
            transfer.freeze_to(net, "10_relu")
        elif method == "discriminative":
            groups = transfer.lr_multiplier_groups(net, lr, {"11_linear": 1.0},
                                                   default=LOW_LR / HIGH_LR)
    reference = {k: v.copy() for k, v in net.named_parameters()}
    opt = Adam(groups, net=net) if groups else Adam(net, lr=lr)
    curve = {"accuracy": [evaluate(net, xt, yt)["accuracy"]], "drift": [0.0]}

    def record(epoch, logs):
        curve["accuracy"].append(evaluate(net, xt, yt)["accuracy"])
        curve["drift"].append(drift(net, reference))
    t0 = time.perf_counter()
    fit(net, x, y, epochs=epochs, batch_size=10, optimizer=opt, seed=seed, progress=False,
        callbacks=[record])
    curve["seconds"] = time.perf_counter() - t0
    return curve


def summarise(runs, epochs):
    rows = {}
    for method in METHODS:
        acc = np.array([r[method]["accuracy"] for r in runs])     # seeds x (epochs + 1)
        dr = np.array([r[method]["drift"] for r in runs])
        final, best = acc[:, -1], acc.max(axis=1)
        rows[method] = {
            "final_median": float(np.median(final)), "final_min": float(final.min()),
            "final_max": float(final.max()), "best_median": float(np.median(best)),
            "epoch5_median": float(np.median(acc[:, min(5, epochs)])),
            "drift_median": float(np.median(dr[:, -1])),
        }
    return rows


SWEEP_METHODS = ["scratch", "head_only", "all"]


def sweep(pretrained, tasks, lrs, epochs):
    """Final/best held-out accuracy and drift per method and learning rate, per seed."""
    out = {m: {f"{lr:g}": [] for lr in lrs} for m in SWEEP_METHODS}
    for seed, (net, task) in enumerate(zip(pretrained, tasks)):
        for m in SWEEP_METHODS:
            for lr in lrs:
                c = finetune(m, net, seed, task, epochs, lr=lr)
                out[m][f"{lr:g}"].append({"final": c["accuracy"][-1],
                                          "best": max(c["accuracy"]),
                                          "drift": c["drift"][-1]})
        print(f"sweep seed {seed} done", flush=True)
    return out


def sweep_table(result, lrs):
    head = "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |"
    lines = [head, "|---" * (len(lrs) + 1) + "|"]
    for m, by_lr in result.items():
        cells = []
        for lr in lrs:
            runs = by_lr[f"{lr:g}"]
            cells.append(f"{np.median([r['final'] for r in runs]):.3f} "
                         f"(drift {np.median([r['drift'] for r in runs]):.2f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(result, lrs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return   # the table in the JSON and on stdout carries the same numbers
    colors = {"scratch": COLORS["scratch"], "head_only": COLORS["head_only"],
              "all": COLORS["all_high_lr"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for m, by_lr in result.items():
        for ax, key in zip(axes, ("final", "drift")):
            if key == "drift" and m == "head_only":
                continue   # frozen: no drift, and no place on a log axis
            v = np.array([[r[key] for r in by_lr[f"{lr:g}"]] for lr in lrs])   # lrs x seeds
            ax.plot(lrs, np.median(v, axis=1), "o-", color=colors[m], label=m)
            ax.fill_between(lrs, v.min(axis=1), v.max(axis=1), color=colors[m], alpha=0.15)
    axes[0].set(xscale="log", xlabel="Adam learning rate", ylabel="final held-out accuracy",
                title="accuracy after fine-tuning vs learning rate")
    axes[1].set(xscale="log", yscale="log", xlabel="Adam learning rate",
                ylabel="||w - w0|| / ||w0||", title="how far the lower layers moved")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(rows, n_seeds):
    lines = [("| method | final acc. median [min, max] | best epoch median | acc. after 5 "
              "epochs | backbone drift |"), "|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['final_median']:.3f} [{r['final_min']:.3f}, "
                     f"{r['final_max']:.3f}] | {r['best_median']:.3f} | "
                     f"{r['epoch5_median']:.3f} | {r['drift_median']:.3f} |")
    return "\n".join(lines) + f"\n\n({n_seeds} seeds)"


COLORS = {"scratch": "#7f7f7f", "head_only": "#1f77b4", "all_low_lr": "#2ca02c",
          "all_high_lr": "#d62728", "discriminative": "#9467bd"}


def plot(runs, path):
    epochs = np.arange(len(runs[0][METHODS[0]]["accuracy"]))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pillow(runs, epochs, path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    for m in METHODS:
        for ax, key in zip(axes, ("accuracy", "drift")):
            v = np.array([r[m][key] for r in runs])
            ax.plot(epochs, np.median(v, axis=0), color=COLORS[m], label=m)
            ax.fill_between(epochs, v.min(axis=0), v.max(axis=0), color=COLORS[m], alpha=0.15)
    axes[0].set(xlabel="epoch", ylabel="held-out accuracy, digits 5-9",
                title="10 labels per class: median, band = min..max over seeds")
    axes[1].set(xlabel="epoch", ylabel="||w - w0|| / ||w0||",
                title="how far the pretrained layers moved")
    axes[0].legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_pillow(runs, epochs, path):
    """The accuracy panel alone, drawn with Pillow when matplotlib is absent."""
    from PIL import Image, ImageDraw

    w, h, pad = 640, 360, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([pad, pad // 2, w - pad // 2, h - pad], outline="black")
    n = max(len(epochs) - 1, 1)
    for i, m in enumerate(METHODS):
        v = np.median(np.array([r[m]["accuracy"] for r in runs]), axis=0)
        pts = [(pad + (w - 1.5 * pad) * e / n, h - pad - (h - 1.5 * pad) * a)
               for e, a in zip(epochs, v)]
        d.line(pts, fill=COLORS[m], width=2)
        d.text((pad + 10, pad // 2 + 5 + 12 * i), m, fill=COLORS[m])
    d.text((w // 2 - 80, h - pad + 10), "epoch -> ; held-out accuracy (0..1)", fill="black")
    img.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=60, help="fine-tuning epochs (5 steps each)")
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sweep-lrs", default="1e-4,3e-4,1e-3,3e-3,1e-2,3e-2",
                   help="learning rates of the sweep ('' to skip it)")
    p.add_argument("--sweep-seeds", type=int, default=3)
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "docs"))
    args = p.parse_args(argv)
    from cconv.examples.digits import _load_digits

    data = _load_digits()
    runs, pre_acc, nets, tasks = [], [], [], []
    t0 = time.perf_counter()
    with cconv.threads(args.threads):
        for seed in range(args.seeds):
            net, acc = pretrain(seed, args.pretrain_epochs, data)
            pre_acc.append(acc)
            task = load_task(TARGET, per_class=args.per_class, test_fraction=0.5, seed=seed,
                             data=data)
            nets.append(net)
            tasks.append(task)
            runs.append({m: finetune(m, net, seed, task, args.epochs) for m in METHODS})
            print(f"seed {seed}: pretrained acc on 0-4 {acc:.3f}; final acc on 5-9 " +
                  ", ".join(f"{m} {runs[-1][m]['accuracy'][-1]:.3f}" for m in METHODS),
                  flush=True)
        lrs = [float(v) for v in args.sweep_lrs.split(",") if v]
        k = min(args.sweep_seeds, args.seeds)
        swept = sweep(nets[:k], tasks[:k], lrs, args.epochs) if lrs else None
    rows = summarise(runs, args.epochs)
    print(table(rows, args.seeds))
    if swept:
        print(sweep_table(swept, lrs) + f"\n\n(final accuracy, median of {k} seeds)")
    os.makedirs(args.out_dir, exist_ok=True)
    result = {
        "setup": {"source_classes": SOURCE, "target_classes": TARGET,
                  "per_class": args.per_class, "test_fraction": 0.5, "epochs": args.epochs,
                  "pretrain_epochs": args.pretrain_epochs, "batch_size": 10,
                  "optimizer": "Adam", "high_lr": HIGH_LR, "low_lr": LOW_LR,
                  "seeds": args.seeds, "threads": args.threads, "backbone": BACKBONE,
                  "cconv": cconv.__version__, "numpy": np.__version__,
                  "python": platform.python_version(), "machine": platform.machine(),
                  "seconds": round(time.perf_counter() - t0, 1)},
        "pretrain_accuracy_0_4": pre_acc,
        "summary": rows,
        "runs": runs,
        "lr_sweep": {"lrs": lrs, "seeds": k, "results": swept},
    }
    json_path = os.path.join(args.out_dir, "transfer_digits.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(json_path + ".tmp", json_path)
    plot(runs, os.path.join(args.out_dir, "transfer_digits.png"))
    if swept:
        plot_sweep(swept, lrs, os.path.join(args.out_dir, "transfer_lr_sweep.png"))
    print(f"wrote {json_path} and transfer_digits.png in {result['setup']['seconds']}s")


if __name__ == "__main__":
    main()
