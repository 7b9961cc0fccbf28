"""Transfer-learning tasks cut from scikit-learn's bundled digits: a class subset,
few labelled examples per class, the rest of those classes held out for testing.

    x_tr, y_tr, x_te, y_te = load_task([5, 6, 7, 8, 9], per_class=10, seed=0)

Labels are renumbered 0..k-1 in the order the classes are given, so a net
with a k-way head trains on them directly.
"""
import numpy as np

from .digits import _load_digits, preprocess

__all__ = ["load_task", "parse_classes"]


def parse_classes(classes):
    """A list of distinct digits 0..9 from ints or a string like "5-9" or "0,2,4"."""
    if isinstance(classes, str):
        out = []
        for part in classes.replace(" ", ",").split(","):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
            except ValueError:
                raise ValueError(f"classes must look like '5-9' or '0,2,4', got "
                                 f"{classes!r}") from None
        classes = out
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c <= 9]
    if bad or not classes:
        raise ValueError(f"classes must be digits 0..9, at least one, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes!r}")
    return classes


def load_task(classes, per_class=None, test_fraction=0.3, seed=0, data=None):
    """(x_train, y_train, x_test, y_test) of the digits in `classes`.

    A seeded, stratified split: test_fraction of every class is held out;
    per_class (None: all) training examples of each class are drawn from the
    rest. x is (N, 1, 8, 8) float32 in [0, 1]; y int64 in 0..len(classes)-1.
    data: a loaded sklearn digits Bunch (loaded when None).
    """
    classes = parse_classes(classes)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digits = _load_digits() if data is None else data
    x, labels = preprocess(digits.images), np.asarray(digits.target)
    rng = np.random.default_rng(seed)
    train, test, y_train, y_test = [], [], [], []
    for new, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(idx) * test_fraction)
        pool = idx[n_test:]
        if per_class is not None:
            if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
                raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
            if per_class > len(pool):
                raise ValueError(f"per_class={per_class} but digit {c} has only {len(pool)} "
                                 f"training images (test_fraction={test_fraction})")
            pool = pool[:int(per_class)]
        train.extend(pool)
        test.extend(idx[:n_test])
        y_train.extend([new] * len(pool))
        y_test.extend([new] * n_test)
    train, test = np.asarray(train), np.asarray(test)
    return (x[train], np.asarray(y_train, np.int64), x[test], np.asarray(y_test, np.int64))
