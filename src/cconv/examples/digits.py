"""LeNet-style CNN on scikit-learn's bundled 8x8 digits (no download).

    pip install 'cconv[examples]'
    cconv train digits                 # or: python -m cconv.examples.digits

The network is LeNet-5's shape (conv5-relu-pool-conv5-relu-pool-fc120-fc84-fc10)
adapted to 8x8 images by "same" padding on both convolutions instead of
upsampling the input: 8x8 -> conv 6@8x8 -> pool 4x4 -> conv 16@4x4 -> pool
2x2 -> 64 -> 120 -> 84 -> 10. It takes raw 8x8 pixels scaled to [0, 1]
(load_digits gives 0..16), so the saved model needs no other preprocessing.
"""
import argparse
import time

import numpy as np

__all__ = ["build_model", "load_data", "main", "train"]

PIXEL_MAX = 16.0   # load_digits pixel values are 0..16


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the digits example needs scikit-learn: "
                         "pip install 'cconv[examples]'") from None
    return load_digits()


def preprocess(images):
    """(N, 8, 8) or (N, 64) raw digits (0..16) -> (N, 1, 8, 8) float32 in [0, 1]."""
    images = np.asarray(images, dtype=np.float32)
    return (images.reshape(len(images), 1, 8, 8) / PIXEL_MAX).astype(np.float32)


def load_data(test_fraction=0.2, seed=0):
    """(x_train, y_train, x_test, y_test): a seeded, stratified hold-out split."""
    digits = _load_digits()
    x, y = preprocess(digits.images), digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):  # stratified: the same fraction of every class
        idx = np.flatnonzero(y == label)
        test.extend(rng.choice(idx, size=round(len(idx) * test_fraction),
                               replace=False))
    is_test = np.zeros(len(y), bool)
    is_test[test] = True
    return x[~is_test], y[~is_test], x[is_test], y[is_test]


def build_model(seed=0):
    from ..graph import Sequential
    from ..nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU

    net = Sequential(
        Conv2d(1, 6, 5, padding=2), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, padding=2), ReLU(), MaxPool2d(2),
        Flatten(), Linear(16 * 2 * 2, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10),
    )
    return net.build((1, 8, 8), seed=seed)


def _single_threaded_blas():
    """Cap numpy's BLAS pool at one thread for the block.

    The fully connected layers multiply tiny matrices through numpy; a second
    BLAS thread pool spinning next to the kernels' OpenMP threads on 2 cores
    made epochs 10-20x slower. threadpoolctl comes with scikit-learn.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def train(epochs=30, batch_size=32, lr=3e-3, seed=0, out="digits.safetensors",
          progress=True, threads=None, log=print):
    """Train, report held-out accuracy and time, save to `out` (None: don't save)."""
    from .. import threads as thread_count
    from .._threads import get_num_threads
    from ..io import save
    from ..optim import Adam, CosineAnnealingLR
    from ..train import evaluate, fit

    x_train, y_train, x_test, y_test = load_data(seed=seed)
    n_threads = threads or get_num_threads()
    log(f"digits: {len(x_train)} training and {len(x_test)} test images (8x8), "
        f"{n_threads} thread(s)")
    with thread_count(n_threads), _single_threaded_blas():
        t0 = time.perf_counter()
        net = build_model(seed=seed)
        optimizer = Adam(net, lr=lr)
        history = fit(net, x_train, y_train, epochs=epochs, batch_size=batch_size,
                      optimizer=optimizer, scheduler=CosineAnnealingLR(optimizer, epochs),
                      seed=seed, progress=progress)
        elapsed = time.perf_counter() - t0
        result = evaluate(net, x_test, y_test)
    log(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}), "
        f"trained in {elapsed:.1f}s")
    if out:
        from ..preprocessing import Preprocessing

        # `cconv predict` divides raw 0..16 pixels by 16, and warns on other ranges
        save(net, out, metadata={"example": "digits"},
             preprocessing=Preprocessing(scale=PIXEL_MAX, raw_range=(0, PIXEL_MAX)))
        log(f"saved {out}")
    return {"net": net, "history": history, "test_accuracy": result["accuracy"],
            "test_loss": result["loss"], "seconds": elapsed}


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: all available CPUs)")
    parser.add_argument("--out", default="digits.safetensors",
                        help="where to save the trained model ('' to skip)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    train(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
          out=args.out or None, progress=not args.no_progress, threads=args.threads)


if __name__ == "__main__":
    main()
