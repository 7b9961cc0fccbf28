"""`cconv train` and `cconv predict`: the training and inference commands.

    cconv train digits [--epochs N] [--out digits.safetensors]
    cconv predict digits.safetensors images.npy     # or: --digits 0 1 2

Plugged into the main CLI through add_parser(subparsers) / run(args).
"""
import sys
import warnings

import numpy as np

EXAMPLES = {"digits": "cconv.examples.digits"}


def add_parser(subparsers):
    """Add the `train` and `predict` subcommands to an argparse subparsers object."""
    from .examples import digits

    train = subparsers.add_parser("train", help="train an example network",
                                  description="Train one of the bundled examples.")
    train.add_argument("example", choices=sorted(EXAMPLES))
    digits.add_arguments(train)
    train.set_defaults(func=run_train, command="train")

    predict = subparsers.add_parser(
        "predict", help="classify images with a saved model",
        description="Run a saved model (cconv.save) on images from a .npy file, or on "
                    "scikit-learn digits by index. Inputs get the preprocessing stored "
                    "with the model (the digits example divides raw 0..16 pixels by 16); "
                    "--scale replaces its scale. A warning says when the inputs look "
                    "already scaled.")
    predict.add_argument("model", help="a .safetensors file written by cconv.save")
    predict.add_argument("images", nargs="?", help=".npy array: one image or a batch")
    predict.add_argument("--digits", type=int, nargs="+", metavar="INDEX",
                         help="indices into sklearn's load_digits instead of a file")
    predict.add_argument("--scale", type=float, default=None,
                         help="divide the inputs by this instead of the model's stored scale "
                              "(1: the inputs are already scaled)")
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument("--out", help="also save the outputs (logits) to this .npy file")
    predict.set_defaults(func=run_predict, command="predict")
    return train, predict


def run(args):
    return args.func(args)


def run_train(args):
    from .examples import digits

    digits.train(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                 out=args.out or None, progress=not args.no_progress, threads=args.threads)
    return 0


def _fit_to_model(images, input_shape, source):
    """Reshape a single image or a batch to (N,) + input_shape, or explain why not."""
    size = int(np.prod(input_shape))
    if images.size % size or images.size == 0:
        raise SystemExit(f"{source}: shape {images.shape} does not hold whole images of "
                         f"shape {tuple(input_shape)}")
    return images.reshape((images.size // size,) + tuple(input_shape))


def run_predict(args):
    from .io import load, read_safetensors
    from .preprocessing import Preprocessing, PreprocessingWarning
    from .train import predict

    try:
        net = load(args.model)
        _, metadata = read_safetensors(args.model)
    except ValueError as exc:   # WeightFileError, WeightsMismatchError, GraphError
        from .cli import one_line

        raise SystemExit(f"cconv predict: {one_line(exc)}") from None
    labels = None
    if args.digits:
        from .examples.digits import _load_digits

        data = _load_digits()
        bad = [i for i in args.digits if not 0 <= i < len(data.target)]
        if bad:
            raise SystemExit(f"digit indices must be in [0, {len(data.target)}), got {bad}")
        images, labels, source = data.images[args.digits], data.target[args.digits], "digits"
    elif args.images:
        try:
            images = np.load(args.images, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cconv predict: cannot read {args.images}: {exc}") from None
        source = args.images
    else:
        raise SystemExit("cconv predict: give an images .npy file or --digits INDEX ...")
    x = _fit_to_model(np.asarray(images, dtype=np.float32), net.input_shapes[0], source)
    try:
        prep = Preprocessing.from_metadata(metadata) or Preprocessing()
        if args.scale is not None:
            prep = Preprocessing(scale=args.scale, mean=prep.mean, std=prep.std)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PreprocessingWarning)
            x = prep.apply(x)
    except ValueError as exc:
        raise SystemExit(f"cconv predict: {exc}") from None
    for warning in caught:
        print(f"cconv predict: warning: {warning.message}", file=sys.stderr)
    out = predict(net, x, batch_size=args.batch_size)
    if args.out:
        np.save(args.out, out)
    if out.ndim == 2:
        z = out - out.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        pred = probs.argmax(axis=1)
        for i, (p, row) in enumerate(zip(pred, probs)):
            name = args.digits[i] if args.digits else i
            truth = "" if labels is None else f"  (label {labels[i]})"
            print(f"{name}: {p}  p={row[p]:.3f}{truth}")
        if labels is not None:
            print(f"accuracy {np.mean(pred == labels):.4f} on {len(labels)} image(s)")
    else:
        np.set_printoptions(threshold=50)
        print(out)
    sys.stdout.flush()
    return 0


def main(argv=None):
    """Stand-alone entry while the main `cconv` CLI does not include these commands."""
    import argparse

    parser = argparse.ArgumentParser(prog="cconv")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
