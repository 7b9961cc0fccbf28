"""Losses: each is a function (prediction, target) -> (mean loss as float, grad wrt prediction)."""
import numpy as np

__all__ = ["softmax_cross_entropy", "mse", "LOSSES", "get_loss"]


def _float(a):
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) along axis 1, and its gradient wrt logits.

    logits: (N, C) or (N, C, d1, ...) (classes on axis 1, averaged over every
    other position). labels: integer class indices of shape (N, d1, ...), or
    target probabilities (one-hot or soft) of the logits' shape.
    Uses log-sum-exp, so any finite logits are safe.
    """
    z = _float(logits)
    if z.ndim < 2:
        raise ValueError(f"logits must be (N, C, ...), got shape {z.shape}")
    labels = np.asarray(labels)
    n_classes = z.shape[1]
    count = z.size // n_classes  # positions the mean runs over
    if count == 0:
        raise ValueError(f"logits must not be empty, got shape {z.shape}")
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(sum_exp)
    probs = exp / sum_exp
    if labels.dtype.kind in "iu":
        expected = z.shape[:1] + z.shape[2:]
        if labels.shape != expected:
            raise ValueError(f"integer labels must have shape {expected} for logits of "
                             f"shape {z.shape}, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"labels must be class indices in [0, {n_classes}), got values "
                             f"in [{labels.min()}, {labels.max()}]")
        picked = np.take_along_axis(log_probs, np.expand_dims(labels, 1), axis=1)
        loss = -float(picked.sum(dtype=np.float64)) / count
        grad = probs
        np.put_along_axis(grad, np.expand_dims(labels, 1),
                          np.take_along_axis(grad, np.expand_dims(labels, 1), axis=1) - 1,
                          axis=1)
    elif labels.dtype.kind in "fb":
        if labels.shape != z.shape:
            raise ValueError(f"probability labels must have the logits' shape {z.shape}, "
                             f"got {labels.shape}")
        t = labels.astype(z.dtype, copy=False)
        loss = -float((t * log_probs).sum(dtype=np.float64)) / count
        # d/dz of -sum_c t_c log softmax_c = softmax * sum_c t_c - t (no need for sum t = 1)
        grad = probs * t.sum(axis=1, keepdims=True) - t
    else:
        raise ValueError(f"labels must be integer class indices or float probabilities, "
                         f"got dtype {labels.dtype}")
    grad /= count
    return loss, grad


def mse(pred, target):
    """Mean squared error over all elements, and its gradient wrt pred."""
    p = _float(pred)
    t = np.asarray(target)
    if t.shape != p.shape:
        raise ValueError(f"target must have pred's shape {p.shape}, got {t.shape}")
    if p.size == 0:
        raise ValueError("pred must not be empty")
    diff = p - t.astype(p.dtype, copy=False)
    d64 = diff.ravel().astype(np.float64, copy=False)
    loss = float(np.dot(d64, d64)) / p.size
    return loss, diff * p.dtype.type(2.0 / p.size)


#: name -> loss function, so fit(loss="cross_entropy") can look one up.
LOSSES = {
    "cross_entropy": softmax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
    "mse": mse,
}


def get_loss(loss):
    """A loss function from its name in LOSSES, or the callable itself."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"loss must be a callable or one of {sorted(LOSSES)}, got {loss!r}")
