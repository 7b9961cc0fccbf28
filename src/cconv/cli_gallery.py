"""`cconv gallery`: one figure with each canonical kernel applied to a photo.

    cconv gallery -o docs/kernels.png [--image photo.jpg] [--tile 256]

The photograph is scikit-learn's bundled "china.jpg" (no download) when
scikit-learn is installed, else --image, else a synthetic test card. The grid
is composed with Pillow (no matplotlib): the notes' raw blur (sums to 8:
eight times brighter, clipped) next to the normalised one, and Sobel as a
convolution next to Sobel as a correlation (the sign flip: signed responses
are shown as grey 128 + response, so bright and dark swap).
"""
import sys

import numpy as np

from .cli_filter import apply, require_pillow


def add_parser(subparsers):
    """Add the `gallery` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "gallery", help="draw every canonical kernel applied to a photo",
        description="Compose one PNG showing each canonical kernel of cconv.filters applied "
                    "to a photograph, with the notes' raw blur and the Sobel "
                    "convolution/correlation sign flip side by side.")
    p.add_argument("-o", "--output", default="kernels.png", help="output image (PNG)")
    p.add_argument("--image", help="photo to use (default: scikit-learn's china.jpg if "
                                   "installed, else a synthetic image)")
    p.add_argument("--tile", type=int, default=240, help="width of one panel in pixels")
    p.add_argument("--columns", type=int, default=4, help="panels per row")
    p.set_defaults(func=run, command="gallery")
    return p


def synthetic_image(h=320, w=480, seed=0):
    """A grey test card: gradient, disks, a square, stripes and some noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 60 + 80 * xx / w
    img[(yy - h * 0.35) ** 2 + (xx - w * 0.25) ** 2 < (h * 0.2) ** 2] = 220
    img[(yy - h * 0.65) ** 2 + (xx - w * 0.55) ** 2 < (h * 0.12) ** 2] = 30
    img[int(h * 0.15):int(h * 0.45), int(w * 0.6):int(w * 0.85)] = 180
    stripes = (np.sin(xx / 3.0) > 0) & (yy > h * 0.8)
    img[stripes] = 240
    img += np.random.default_rng(seed).normal(0, 6, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def load_photo(path=None):
    """(grayscale uint8 photo, description)."""
    Image = require_pillow("gallery")
    if path:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")), path
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        return synthetic_image(), "synthetic test image (scikit-learn not installed)"
    rgb = load_sample_image("china.jpg")
    return np.asarray(Image.fromarray(rgb).convert("L")), "scikit-learn's china.jpg"


def panels(gray):
    """(label, uint8 image) for every panel of the gallery."""
    from . import filters as F

    signed = {"offset": 128.0, "scale": 0.5}   # grey = 0; +-256 fits the 8-bit range
    sobel = F.sobel_vertical()
    return [
        ("original", gray),
        ("blur (normalised, /8)", apply(gray, F.blur())),
        ("blur raw (notes: sums to 8)", apply(gray, F.blur(normalize=False))),
        ("sharpen", apply(gray, F.sharpen())),
        ("edge (Laplacian), 128 + 2r", apply(gray, F.edge(), offset=128.0, scale=2.0)),
        ("gaussian sigma=2", apply(gray, F.gaussian(2.0))),
        ("box 7x7", apply(gray, F.box(7))),
        ("sobel_horizontal, convolve: +d/dy", apply(gray, F.sobel_horizontal(), **signed)),
        ("sobel_vertical, convolve: +d/dx", apply(gray, sobel, op="convolve", **signed)),
        ("sobel_vertical, correlate: -d/dx", apply(gray, sobel, op="correlate", **signed)),
        ("|sobel| magnitude", _magnitude(gray)),
        ("sobel: convolve + correlate = 0", _sum_is_zero(gray)),
    ]


def _magnitude(gray):
    from . import filters as F

    gx = F.filter2d(gray, F.sobel_vertical(), output=np.float32)
    gy = F.filter2d(gray, F.sobel_horizontal(), output=np.float32)
    return np.clip(np.rint(np.hypot(gx, gy) / 2), 0, 255).astype(np.uint8)


def _sum_is_zero(gray):
    """128 + (convolution + correlation) of the Sobel kernel: flat grey, since
    the two are exact negatives."""
    from . import filters as F

    k = F.sobel_vertical()
    s = (F.filter2d(gray, k, output=np.float32, op="convolve")
         + F.filter2d(gray, k, output=np.float32, op="correlate"))
    return np.clip(np.rint(128 + s), 0, 255).astype(np.uint8)


def compose(items, tile=240, columns=4):
    """A Pillow image: the panels in a grid, each with its label above."""
    Image = require_pillow("gallery")
    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    h0, w0 = items[0][1].shape[:2]
    th = max(1, round(tile * h0 / w0))
    label_h, pad = 18, 6
    rows = -(-len(items) // columns)
    sheet = Image.new("L", (columns * (tile + pad) + pad, rows * (th + label_h + pad) + pad),
                      255)
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(items):
        r, c = divmod(i, columns)
        x, y = pad + c * (tile + pad), pad + r * (th + label_h + pad)
        draw.text((x, y + 2), label, fill=0, font=font)
        panel = Image.fromarray(np.ascontiguousarray(img)).resize((tile, th), Image.LANCZOS)
        sheet.paste(panel, (x, y + label_h))
    return sheet


def run(args):
    if args.tile < 16 or args.columns < 1:
        print("cconv gallery: --tile must be >= 16 and --columns >= 1", file=sys.stderr)
        return 2
    try:
        gray, source = load_photo(args.image)
    except OSError as exc:
        print(f"cconv gallery: cannot read {args.image!r}: {exc}", file=sys.stderr)
        return 2
    sheet = compose(panels(gray), tile=args.tile, columns=args.columns)
    try:
        sheet.save(args.output, optimize=True)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cconv gallery: cannot write {args.output!r}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {sheet.size[0]}x{sheet.size[1]}, photo: {source}")
    return 0
