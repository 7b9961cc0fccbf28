"""Training loop: fit, evaluate, predict.

    history = cconv.fit(net, x, y, epochs=10, validation_split=0.1)
    cconv.evaluate(net, x_test, y_test)   # {"loss": ..., "accuracy": ...}

Reproducible: for a given seed, fit gives the same weights and history at
any thread count, also one changed mid-run (mini-batch order, validation
split, initial weights and the masks of unseeded Dropout layers all derive
from the seed; the kernels never split a sum by thread).
"""
import os
import sys
import time

import numpy as np

__all__ = ["evaluate", "fit", "get_loss", "predict"]

_LOSS_ALIASES = {"cross_entropy": "softmax_cross_entropy", "crossentropy":
                 "softmax_cross_entropy", "ce": "softmax_cross_entropy",
                 "mean_squared_error": "mse"}


def get_loss(loss):
    """A loss function (logits, targets) -> (scalar loss, gradient) from a name or callable."""
    if callable(loss):
        return loss
    from .nn import losses

    key = _LOSS_ALIASES.get(loss, loss)
    table = getattr(losses, "LOSSES", {})
    for name in (key, loss):
        if name in table:
            return table[name]
    raise ValueError(f"unknown loss {loss!r}; known: {sorted(set(table) | set(_LOSS_ALIASES))}")


def _is_classification(out, y):
    return out.ndim == 2 and y.ndim == 1 and y.dtype.kind in "iu"


def _correct(out, y):
    return int(np.count_nonzero(out.argmax(axis=1) == y)) if _is_classification(out, y) else None


def _batches(n, batch_size, order=None):
    for start in range(0, n, batch_size):
        yield (slice(start, start + batch_size) if order is None
               else order[start:start + batch_size])


def predict(net, x, batch_size=256):
    """Outputs of net on x (inference mode), computed batch by batch."""
    x = np.asarray(x)
    if len(x) == 0:
        return net.forward(x)
    outs = [net.forward(x[s]) for s in _batches(len(x), batch_size)]
    return np.concatenate(outs) if len(outs) > 1 else outs[0]


def evaluate(net, x, y, loss="cross_entropy", batch_size=256):
    """{"loss": mean loss, "accuracy": fraction correct (None unless class labels)}."""
    loss_fn = get_loss(loss)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("evaluate needs at least one sample")
    total, correct = 0.0, 0
    for s in _batches(len(x), batch_size):
        out = net.forward(x[s])
        value, _ = loss_fn(out, y[s])
        total += float(value) * len(out)
        c = _correct(out, y[s])
        correct = None if c is None or correct is None else correct + c
    n = len(x)
    return {"loss": total / n, "accuracy": None if correct is None else correct / n}


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second.

    Built in rather than tqdm: training's two-level line (epoch, batch) is 30
    lines here. When stderr is not a terminal only the end-of-epoch lines are
    written; each ends with the estimated time left for the remaining epochs.
    """

    def __init__(self, enabled, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._seconds = []

    def update(self, epoch, epochs, done, total, loss, acc, t0):
        now = time.perf_counter()
        if not self.live or (done < total and now - self._last < 0.1):
            return
        self._last = now
        width = 24
        fill = int(width * done / max(total, 1))
        bar = "#" * fill + "-" * (width - fill)
        self.stream.write(f"\repoch {epoch}/{epochs} [{bar}] {done}/{total} "
                          f"{_metrics(loss, acc)} {now - t0:.1f}s")
        self.stream.flush()

    def end_epoch(self, epoch, epochs, logs):
        if not self.enabled:
            return
        parts = [f"epoch {epoch}/{epochs}", _metrics(logs["loss"], logs["accuracy"])]
        if logs.get("val_loss") is not None:
            parts.append(_metrics(logs["val_loss"], logs["val_accuracy"], "val_"))
        parts.append(f"{logs['time']:.2f}s")
        self._seconds.append(logs["time"])
        if epoch < epochs:
            per_epoch = sum(self._seconds) / len(self._seconds)
            parts.append(f"~{per_epoch * (epochs - epoch):.0f}s left")
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(prefix + "  ".join(parts) + "\n")
        self.stream.flush()


def _metrics(loss, acc, prefix=""):
    text = f"{prefix}loss {loss:.4f}"
    return text if acc is None else f"{text} {prefix}acc {acc:.4f}"


def _split(x, y, validation_data, validation_split, rng):
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        vx, vy = (np.asarray(a) for a in validation_data)
        return x, y, vx, vy
    if not validation_split:
        return x, y, None, None
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    n_val = round(len(x) * validation_split)
    if n_val < 1 or n_val >= len(x):
        raise ValueError(f"validation_split={validation_split} leaves no training or no "
                         f"validation samples out of {len(x)}")
    order = rng.permutation(len(x))
    val, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[tr], y[tr], x[val], y[val]


def _seed_unseeded_dropout(net, rng):
    """Give layers that draw random masks from an unseeded Generator one from the fit seed."""
    for _, layer in net.layers():
        if isinstance(getattr(layer, "rng", None), np.random.Generator) and \
                getattr(layer, "seed", 0) is None:
            layer.rng = np.random.default_rng(rng.integers(2**63))


def _check_optimizer(optimizer, net):
    """Refuse an optimizer that would leave every weight unchanged without a word."""
    owner = getattr(optimizer, "net", net)
    if owner is not net:
        raise ValueError(f"optimizer {optimizer!r} was made for another net; make it with "
                         f"this one: {type(optimizer).__name__}(net, ...)")
    groups = getattr(optimizer, "param_groups", None)
    if groups is not None and hasattr(optimizer, "bind"):
        optimizer.bind()
        if net.parameter_count() and not any(g["params"] for g in groups):
            raise ValueError(f"optimizer {optimizer!r} holds no parameters of this net, so "
                             f"training would change nothing")


def fit(net, x, y, epochs=10, batch_size=64, optimizer=None, loss="cross_entropy",
        validation_data=None, validation_split=None, seed=0, scheduler=None,
        progress=True, callbacks=None, shuffle=True, checkpoint=None, resume=False):
    """Train net on (x, y) with mini-batches; returns the per-epoch history.

    optimizer: an Optimizer, a registered optimizer name ("sgd", "adam", ...)
    with its default hyperparameters, or None for Adam(lr=1e-3). loss: a name from
    cconv.nn.losses.LOSSES ("cross_entropy", "mse") or a callable
    (outputs, targets) -> (loss, grad of the loss w.r.t. outputs).
    validation_split: a fraction of (x, y) held out at random (seeded).
    scheduler: stepped once after every epoch. callbacks: callables
    `cb(epoch, logs)` run after every epoch; one returning True stops training.
    history: {"loss", "accuracy", "val_loss", "val_accuracy", "time", "lr"},
    one entry per epoch (accuracy None unless the targets are class indices).
    checkpoint: a path where net, optimizer, scheduler, random state, epoch and
    history are saved (atomically) after every epoch; with resume=True and an
    existing file, training continues from it and ends with the weights an
    uninterrupted run would have (cconv.checkpoint).
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size}, "
                         f"{epochs}")
    rng = np.random.default_rng(seed)
    x, y, vx, vy = _split(x, y, validation_data, validation_split, rng)
    if len(x) == 0:
        raise ValueError("fit needs at least one training sample")
    if not net.built:
        net.build(x.shape[1:], seed=seed)
    x = np.asarray(x, dtype=net.dtype) if x.dtype != net.dtype else x
    _seed_unseeded_dropout(net, rng)
    if optimizer is None:
        from .optim import Adam
        optimizer = Adam(net, lr=1e-3)
    elif isinstance(optimizer, str):   # a registered name: built-in or from a plugin
        from .plugins import get_optimizer_class
        optimizer = get_optimizer_class(optimizer)(net)
    _check_optimizer(optimizer, net)
    loss_fn = get_loss(loss)
    callbacks = list(callbacks or [])
    bar = _Progress(progress)
    history = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "time", "lr")}
    first = 1
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        from .checkpoint import load_checkpoint
        done, saved = load_checkpoint(checkpoint, net, optimizer, scheduler, rng)
        history.update({k: list(v) for k, v in saved.items() if k in history})
        first = done + 1
    n = len(x)
    for epoch in range(first, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n) if shuffle else None
        total, correct, seen = 0.0, 0, 0
        for idx in _batches(n, batch_size, order):
            xb, yb = x[idx], y[idx]
            out = net.forward(xb, training=True)
            value, grad = loss_fn(out, yb)
            net.backward(grad, input_grads=False)
            optimizer.step()
            total += float(value) * len(xb)
            seen += len(xb)
            c = _correct(out, yb)
            correct = None if c is None or correct is None else correct + c
            bar.update(epoch, epochs, seen, n, total / seen,
                       None if correct is None else correct / seen, t0)
        logs = {"loss": total / n, "accuracy": None if correct is None else correct / n,
                "val_loss": None, "val_accuracy": None,
                "lr": optimizer.param_groups[0]["lr"]}
        if vx is not None:
            val = evaluate(net, vx, vy, loss=loss_fn, batch_size=max(batch_size, 256))
            logs["val_loss"], logs["val_accuracy"] = val["loss"], val["accuracy"]
        if scheduler is not None:
            scheduler.step()
        logs["time"] = time.perf_counter() - t0
        for key, values in history.items():
            values.append(logs[key])
        bar.end_epoch(epoch, epochs, logs)
        if checkpoint is not None:
            from .checkpoint import save_checkpoint
            save_checkpoint(checkpoint, net, optimizer, scheduler, rng, epoch, history)
        stops = [cb(epoch, logs) is True for cb in callbacks]   # a list: run every callback
        if any(stops):
            break
    return history
