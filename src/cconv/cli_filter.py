"""`cconv filter`: apply a kernel to an image file.

    cconv filter photo.png --kernel sharpen -o sharp.png
    cconv filter photo.jpg --kernel "gaussian:2" -o soft.jpg
    cconv filter photo.png --kernel "[[0,1,0],[1,-4,1],[0,1,0]]" --offset 128 -o lap.png
    cconv filter photo.png --kernel sobel_vertical -o edges.png   # signed: grey = 0
    cconv filter photo.png --kernel sobel_vertical --op correlate --abs -o edges.png
    cconv filter photo.png --kernel my_kernel.npy -o out.png      # or .txt / .csv

Images are read and written with Pillow (PNG, JPEG and whatever else Pillow
knows; `.npy` output keeps the float result). Plugged into the main CLI
through add_parser(subparsers).
"""
import ast
import os
import sys

import numpy as np

_PILLOW_HINT = ("cconv {cmd} needs Pillow to read and write images: "
                "pip install Pillow (or pip install 'cconv[images]')")


def require_pillow(cmd="filter"):
    """The PIL.Image module, or SystemExit with an installation hint."""
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit(_PILLOW_HINT.format(cmd=cmd)) from None
    return Image


def add_parser(subparsers):
    """Add the `filter` subcommand to an argparse subparsers object."""
    from .filters import BORDER_MODES, KERNELS

    p = subparsers.add_parser(
        "filter", help="filter an image file with a kernel",
        description="Apply a 2-D kernel to every channel of an image (PNG, JPEG, ... via "
                    "Pillow) and write the result. Integer images stay in their range: the "
                    "response is rounded and clipped, never wrapped.")
    p.add_argument("image", help="input image file")
    p.add_argument("-k", "--kernel", required=True,
                   help=f"a name ({', '.join(KERNELS)}; arguments after a colon: "
                        "'box:5', 'gaussian:2' or 'gaussian:2,9' for sigma, size), a .npy/"
                        ".txt/.csv file, or a literal matrix like '[[0,1,0],[1,-4,1],[0,1,0]]'")
    p.add_argument("-o", "--output", required=True,
                   help="output file; the format follows the suffix (.png, .jpg, ..., .npy "
                        "for the float32 response)")
    p.add_argument("--op", choices=("convolve", "correlate"), default="convolve",
                   help="convolve (flip the kernel, default) or correlate (as cv2.filter2D)")
    p.add_argument("--mode", default="reflect",
                   help=f"border: {', '.join(BORDER_MODES)} or an OpenCV name "
                        "(BORDER_REFLECT_101, ...); default reflect")
    p.add_argument("--cval", type=float, default=0.0, help="outside value for --mode constant")
    p.add_argument("--raw", action="store_true",
                   help="do not normalise blur/box/gaussian (the notes' blur sums to 8)")
    p.add_argument("--gray", action="store_true", help="convert to grayscale first")
    p.add_argument("--abs", action="store_true",
                   help="absolute value of the response (edge detectors)")
    p.add_argument("--signed", choices=("auto", "offset", "abs", "clip"), default="auto",
                   help="how an image file shows a response with both signs (kernels "
                        "summing to 0: Sobel, edge): offset = mid-grey is 0, scaled down "
                        "only if it would clip; abs = magnitude; clip = cut negatives. "
                        "auto (default): offset for such kernels unless --scale/--offset/"
                        "--abs say otherwise")
    p.add_argument("--scale", type=float, default=None, help="multiply the response by this")
    p.add_argument("--offset", type=float, default=None,
                   help="then add this (e.g. 128 to show signed responses as grey +- detail)")
    p.set_defaults(func=run, command="filter")
    return p


def parse_kernel(value, normalize=True):
    """A 2-D float64 kernel from a name spec, a file or a literal matrix."""
    from .filters import KERNELS, get_kernel

    text = value.strip()
    if text.startswith("["):
        try:
            k = np.array(ast.literal_eval(text), dtype=np.float64)
        except (ValueError, SyntaxError, TypeError) as exc:
            raise ValueError(f"--kernel {value!r} is not a literal matrix of numbers "
                             f"({exc})") from None
    elif text.partition(":")[0].strip().lower().replace("-", "_") in KERNELS:
        return get_kernel(text, normalize=normalize)
    elif os.path.isfile(text):
        try:
            if text.endswith(".npy"):
                k = np.load(text, allow_pickle=False)
            else:
                delimiter = "," if text.endswith(".csv") else None
                k = np.loadtxt(text, delimiter=delimiter, ndmin=2)
            k = np.asarray(k, dtype=np.float64)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"--kernel: cannot read a matrix from {value!r}: {exc}") from None
    elif text.lower().endswith((".npy", ".txt", ".csv")):
        raise ValueError(f"--kernel: no such file {value!r}")
    else:
        return get_kernel(text, normalize=normalize)
    if k.ndim == 1:
        k = k[None, :]
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"--kernel must be a non-empty 2-D matrix, got shape {k.shape}")
    return k


def read_image(path, gray=False):
    """(array, alpha or None, Pillow mode) of an image file; alpha is kept apart
    so that filtering does not smear transparency."""
    Image = require_pillow()
    with Image.open(path) as im:
        im.load()
        if gray:
            im = im.convert("L")
        elif im.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode == "LA":
            im = im.convert("RGBA")
        arr = np.asarray(im)
        mode = im.mode
    alpha = None
    if mode == "RGBA":
        arr, alpha = arr[..., :3], arr[..., 3]
    return arr, alpha, mode


def write_image(path, arr, alpha=None):
    if path.lower().endswith(".npy"):
        np.save(path, arr)
        return
    Image = require_pillow()
    if alpha is not None:
        arr = np.dstack([arr, alpha.astype(arr.dtype)])
    im = Image.fromarray(np.ascontiguousarray(arr))
    if path.lower().endswith((".jpg", ".jpeg")) and im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    im.save(path)


def apply(arr, kernel, *, op="convolve", mode="reflect", cval=0.0, absolute=False,
          scale=1.0, offset=0.0, dtype=None):
    """filter2d in float32, then |.| / scale / offset, back to dtype (default
    arr's dtype): rounded and clipped for integer dtypes."""
    from .filters import _cast_result, filter2d

    y = filter2d(arr, kernel, mode=mode, cval=cval, op=op, output=np.float32)
    if absolute:
        np.abs(y, out=y)
    if scale != 1.0:
        y *= scale
    if offset != 0.0:
        y += offset
    return _cast_result(y, np.dtype(dtype or arr.dtype))


def _signed_display(args, kernel, dtype, npy):
    """"offset", "abs" or "clip": how to write a response that has both signs."""
    if args.signed != "auto":
        return args.signed
    explicit = args.abs or args.scale is not None or args.offset is not None
    zero_sum = abs(kernel.sum()) <= 1e-9 * np.abs(kernel).sum() and (kernel < 0).any()
    if explicit or npy or not zero_sum or not np.issubdtype(dtype, np.integer):
        return "clip"
    return "offset"


def show_signed(arr, kernel, *, op="convolve", mode="reflect", cval=0.0):
    """The response r as mid + r * s in arr's integer range: 0 is mid-grey, both signs
    stay visible, and s < 1 only where |r| would otherwise clip."""
    from .filters import _cast_result, filter2d

    y = filter2d(arr, kernel, mode=mode, cval=cval, op=op, output=np.float32)
    info = np.iinfo(arr.dtype)
    mid = (float(info.max) + float(info.min) + 1) / 2
    peak = float(np.abs(y).max()) if y.size else 0.0
    half = float(info.max) - mid
    if peak > half:
        y *= half / peak
    y += mid
    return _cast_result(y, arr.dtype)


def run(args):
    try:
        kernel = parse_kernel(args.kernel, normalize=not args.raw)
    except ValueError as exc:
        print(f"cconv filter: {exc}", file=sys.stderr)
        return 2
    try:
        arr, alpha, _ = read_image(args.image, gray=args.gray)
    except (OSError, ValueError) as exc:
        print(f"cconv filter: cannot read {args.image!r}: {exc}", file=sys.stderr)
        return 2
    npy = args.output.lower().endswith(".npy")
    signed = _signed_display(args, kernel, arr.dtype, npy)
    try:
        if signed == "offset":
            out = show_signed(arr, kernel, op=args.op, mode=args.mode, cval=args.cval)
            print("cconv filter: signed response shown around mid-grey (grey = 0; "
                  "--signed abs or clip for other views)", file=sys.stderr)
        else:
            out = apply(arr, kernel, op=args.op, mode=args.mode, cval=args.cval,
                        absolute=args.abs or signed == "abs",
                        scale=1.0 if args.scale is None else args.scale,
                        offset=0.0 if args.offset is None else args.offset,
                        dtype=np.float32 if npy else None)
    except (TypeError, ValueError) as exc:
        print(f"cconv filter: {exc}", file=sys.stderr)
        return 2
    try:
        write_image(args.output, out, alpha)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cconv filter: cannot write {args.output!r}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.image} -> {args.output}: {kernel.shape[0]}x{kernel.shape[1]} kernel, "
          f"{args.op}, mode {args.mode}")
    return 0
