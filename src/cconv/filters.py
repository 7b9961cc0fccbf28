"""Canonical image kernels and fast filtering of real images.

Section 2.3 of the notes lists four kernels and warns that "some of these
canonical kernels are not working as expected": its blur kernel sums to 8, so
applying it brightens an image eightfold, and its vertical edge detector
changes sign depending on whether it is applied as a convolution or as a
correlation. Here the smoothing kernels are normalised to sum 1 by default
(``normalize=False`` gives the notes' raw values) and `filter2d` applies any
kernel as either operator, explicitly.

Which operator a kernel is meant for:

- ``blur``, ``sharpen``, ``edge``, ``box`` and ``gaussian`` are symmetric under
  a half-turn (``k == k[::-1, ::-1]``): convolution and correlation agree.
- ``sobel_vertical`` and ``sobel_horizontal`` are defined for convolution (as
  in the textbook operator (A * B)_ij = sum_st A_st B_(i-s, j-t)): convolved,
  ``sobel_vertical`` gives d/dx (positive where the image gets brighter to the
  right) and ``sobel_horizontal`` d/dy (brighter downwards). Applied as a
  correlation -- what ``cv2.filter2D`` and every deep-learning "conv" layer
  do -- the kernel is not flipped and the response changes sign.

`filter2d` matches ``scipy.ndimage.convolve`` / ``correlate`` (same boundary
modes, same anchor for even kernel sizes) and is much faster: separable kernels
run as two 1-D passes, 3x3 kernels have unrolled paths, every kernel is
vectorised over columns and two output rows at a time, rows are spread over
OpenMP threads, and large dense kernels (from 35x35) go through the FFT.
"""
import functools
import numbers

import numpy as np

from . import _kernels
from ._threads import get_num_threads

__all__ = [
    "blur", "sharpen", "edge", "sobel_vertical", "sobel_horizontal", "box", "gaussian",
    "KERNELS", "get_kernel", "filter2d", "border_mode", "is_separable",
    "BORDER_MODES", "FFT_MIN_SIZE", "FFT_MIN_TAPS",
]

#: boundary modes, scipy.ndimage names; for a row ``a b c d``:
BORDER_MODES = {
    "reflect": "d c b a | a b c d | d c b a   (half-sample symmetric; cv2 BORDER_REFLECT)",
    "mirror": "d c b | a b c d | c b a   (whole-sample symmetric; cv2 BORDER_REFLECT_101, "
              "BORDER_DEFAULT)",
    "nearest": "a a a | a b c d | d d d   (cv2 BORDER_REPLICATE)",
    "wrap": "b c d | a b c d | a b c   (periodic; cv2 BORDER_WRAP)",
    "constant": "k k k | a b c d | k k k   (k = cval; cv2 BORDER_CONSTANT)",
    "valid": "no extension: only outputs whose window lies inside the image "
             "(output shrinks by the kernel size - 1)",
}

_MODE_ALIASES = {
    # scipy.ndimage's grid-* names are the same extensions for filters
    "grid-mirror": "reflect", "grid-constant": "constant", "grid-wrap": "wrap",
    # OpenCV names
    "border_constant": "constant", "border_replicate": "nearest",
    "border_reflect": "reflect", "border_wrap": "wrap", "border_reflect_101": "mirror",
    "border_reflect101": "mirror", "border_default": "mirror",
}
# cv2.BORDER_CONSTANT .. cv2.BORDER_REFLECT_101 (== BORDER_DEFAULT)
_CV2_BORDER_INTS = {0: "constant", 1: "nearest", 2: "reflect", 3: "wrap", 4: "mirror"}

#: method="auto" applies a kernel through the FFT when it is not separable,
#: at least FFT_MIN_SIZE in both dimensions and has at least FFT_MIN_TAPS
#: nonzero weights. Measured on a 2048x2048 float32 image, 1 thread (see
#: docs/filters.md): the direct path, vectorised and skipping zeros, beats the
#: FFT (overlap-save, scipy.fft) up to 31x31 (131 vs 204 ms) and loses from
#: about 45x45 (275 vs 194 ms).
FFT_MIN_SIZE = 15
FFT_MIN_TAPS = 1225

# A kernel is separable when its second singular value is below this fraction
# of the first: a few units of the compute dtype's rounding, so the two 1-D
# passes are as exact as the 2-D sum.
_SEPARABLE_RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 4e-15}

# image and output dtypes the C loops read and write themselves
_C_INT_DTYPES = tuple(np.dtype(d) for d in _kernels.FILTER_INT_DTYPES)


# ---------------------------------------------------------------- kernels

def blur(normalize=True):
    """The notes' blurring kernel (2.5), [[0, 1, 0], [1, 4, 1], [0, 1, 0]].

    Its weights sum to 8, so applied raw it makes an image eight times
    brighter; normalised (the default) it is divided by 8 and keeps the mean
    brightness. Symmetric: the same for convolution and correlation.
    """
    k = np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]])
    return k / k.sum() if normalize else k


def sharpen():
    """The notes' sharpening kernel (2.6), [[0, -1, 0], [-1, 5, -1], [0, -1, 0]].

    Sums to 1 (the identity plus the `edge` kernel): flat regions keep their
    value. Symmetric: the same for convolution and correlation.
    """
    return np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def edge():
    """The notes' edge detector (2.7), the negative discrete Laplacian
    [[0, -1, 0], [-1, 4, -1], [0, -1, 0]].

    Sums to 0: flat regions go to 0, edges give a positive/negative pair.
    Symmetric: the same for convolution and correlation.
    """
    return np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


def sobel_vertical():
    """The notes' vertical edge detector (2.8), Sobel [[1, 0, -1], [2, 0, -2], [1, 0, -1]].

    Meant for convolution: ``filter2d(img, sobel_vertical(), op="convolve")``
    is the horizontal derivative d/dx (smoothed vertically), positive where
    the image gets brighter to the right, so it responds to vertical edges.
    As a correlation (``op="correlate"``, cv2.filter2D, conv layers) the
    kernel is not flipped and the result is exactly the negative.
    """
    return np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def sobel_horizontal():
    """Sobel for horizontal edges, the transpose of `sobel_vertical`:
    [[1, 2, 1], [0, 0, 0], [-1, -2, -1]].

    Meant for convolution: gives d/dy, positive where the image gets brighter
    downwards; as a correlation the sign flips.
    """
    return sobel_vertical().T.copy()


def _check_size(name, n):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def box(n=3, normalize=True):
    """n x n box (mean) filter: all ones, divided by n**2 unless normalize=False."""
    n = _check_size("n", n)
    k = np.ones((n, n))
    return k / k.sum() if normalize else k


def gaussian(sigma, size=None, normalize=True):
    """size x size samples of a 2-D Gaussian with standard deviation sigma.

    size defaults to 2 * ceil(3 * sigma) + 1 (odd, +-3 sigma); an even size
    samples at half-integer offsets from the centre. Normalised to sum 1 by
    default; normalize=False gives the raw samples of the density
    exp(-(x**2 + y**2) / (2 sigma**2)) / (2 pi sigma**2), which sum to about 1
    only when the window covers +-3 sigma. Separable: filter2d applies it as
    two 1-D passes.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or \
            not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if size is None:
        size = 2 * int(np.ceil(3.0 * sigma)) + 1
    size = _check_size("size", size)
    t = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    k = np.outer(g, g) / (2.0 * np.pi * sigma * sigma)
    return k / k.sum() if normalize else k


#: name -> kernel function, as the command line and the gallery know them.
KERNELS = {
    "blur": blur, "sharpen": sharpen, "edge": edge, "sobel_vertical": sobel_vertical,
    "sobel_horizontal": sobel_horizontal, "box": box, "gaussian": gaussian,
}


def get_kernel(spec, normalize=True):
    """Kernel from a name with optional arguments: "sharpen", "box:5",
    "gaussian:2" (sigma), "gaussian:2,9" (sigma, size).

    normalize applies to the kernels that take it (blur, box, gaussian).
    """
    if not isinstance(spec, str):
        raise TypeError(f"kernel spec must be a string, got {type(spec).__name__}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNELS)}")
    args = []
    for a in filter(None, (s.strip() for s in rest.split(","))):
        try:
            args.append(int(a))
        except ValueError:
            try:
                args.append(float(a))
            except ValueError:
                raise ValueError(f"kernel {name!r}: argument {a!r} is not a number") from None
    kwargs = {"normalize": normalize} if name in ("blur", "box", "gaussian") else {}
    if name == "gaussian" and not args:
        raise ValueError("kernel 'gaussian' needs sigma, e.g. 'gaussian:2'")
    try:
        return KERNELS[name](*args, **kwargs)
    except TypeError:
        raise ValueError(f"kernel {name!r} takes different arguments than {rest!r}") from None


# ---------------------------------------------------------------- validation

def border_mode(mode):
    """Canonical boundary mode for a scipy.ndimage name, an OpenCV name
    ("BORDER_REFLECT_101", ...) or an OpenCV integer constant (cv2.BORDER_*),
    or "valid"."""
    if isinstance(mode, str):
        key = mode.strip().lower()
        key = key.removeprefix("cv2.")
        key = _MODE_ALIASES.get(key, key)
        if key in BORDER_MODES:
            return key
    elif isinstance(mode, numbers.Integral) and not isinstance(mode, bool):
        if int(mode) in _CV2_BORDER_INTS:
            return _CV2_BORDER_INTS[int(mode)]
    else:
        raise TypeError(f"mode must be a string or an OpenCV border constant, "
                        f"got {type(mode).__name__}")
    raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(BORDER_MODES)}, "
                     f"an OpenCV name (BORDER_REFLECT, BORDER_REFLECT_101, BORDER_DEFAULT, "
                     f"BORDER_REPLICATE, BORDER_WRAP, BORDER_CONSTANT) or cv2 constant 0-4")


def _real_array(name, a):
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric (integer or float) array, "
                        f"got dtype {a.dtype}")
    return a


def _output_dtype(output, image_dtype):
    """The result's dtype, native byte order."""
    if output is None:
        return image_dtype.newbyteorder("=")
    try:
        dt = np.dtype(output)
    except TypeError:
        raise TypeError(f"output must be a numpy dtype (e.g. np.float32), got {output!r}") \
            from None
    if dt.kind not in "iuf":
        raise TypeError(f"output must be an integer or float dtype, got {dt}")
    return dt.newbyteorder("=")


@functools.lru_cache(maxsize=64)
def _compute_dtype(image_dtype, out_dtype):
    """float32 unless the input or the requested output needs float64."""
    wide = [d for d in (image_dtype, out_dtype)
            if (d.kind == "f" and d.itemsize > 4) or (d.kind in "iu" and d.itemsize > 2)]
    return np.dtype(np.float64) if wide else np.dtype(np.float32)


def is_separable(kernel, rtol=1e-12):
    """(kcol, krow) with kernel == outer(kcol, krow) within rtol (relative to
    the largest singular value), or None. Rank by SVD; the factors are a row
    and a column of the kernel itself, so integer kernels factor exactly."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0 or not np.isfinite(k).all():
        return None
    s = np.linalg.svd(k, compute_uv=False)
    if s[0] == 0 or (s.size > 1 and s[1] > rtol * s[0]):
        return None
    i0, j0 = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    kcol = k[:, j0].copy()
    krow = k[i0, :] / k[i0, j0]
    if np.abs(np.outer(kcol, krow) - k).max() > 4 * rtol * np.abs(k).max() * max(k.shape):
        u, s, vt = np.linalg.svd(k)
        kcol, krow = u[:, 0] * s[0], vt[0].copy()
    return kcol, krow


# ---------------------------------------------------------------- filtering

def _border_indices(start, stop, n, mode):
    """Input index of each extended position in [start, stop), -1 for constant."""
    i = np.arange(start, stop)
    inside = (i >= 0) & (i < n)
    if mode == "nearest":
        m = np.clip(i, 0, n - 1)
    elif mode == "wrap":
        m = i % n
    elif mode == "reflect":
        m = i % (2 * n)
        m = np.where(m < n, m, 2 * n - 1 - m)
    elif mode == "mirror":
        if n == 1:
            m = np.zeros_like(i)
        else:
            m = i % (2 * n - 2)
            m = np.where(m < n, m, 2 * n - 2 - m)
    else:
        m = np.where(inside, i, -1)
    return np.where(inside, i, m)


def _extend(planes, rows, cols, cval):
    """planes (N, C, H, W) extended to rows x cols (input indices, -1: cval).
    The input itself is copied as one slice; only the border strips go
    through fancy indexing."""
    n, c, h, w = planes.shape
    r0, c0 = int(np.argmax(rows == 0)), int(np.argmax(cols == 0))
    r1, c1 = r0 + h, c0 + w
    if not (np.array_equal(rows[r0:r1], np.arange(h))
            and np.array_equal(cols[c0:c1], np.arange(w))):
        ext = planes[:, :, np.maximum(rows, 0)][:, :, :, np.maximum(cols, 0)]
        ext[:, :, rows < 0] = cval
        ext[:, :, :, cols < 0] = cval
        return ext
    ext = np.empty((n, c, rows.size, cols.size), planes.dtype)
    ext[:, :, r0:r1, c0:c1] = planes
    for cs in (slice(0, c0), slice(c1, cols.size)):
        ci = cols[cs]
        ext[:, :, r0:r1, cs] = np.where(ci < 0, cval, planes[:, :, :, np.maximum(ci, 0)])
    for rs in (slice(0, r0), slice(r1, rows.size)):
        ri = rows[rs]
        ext[:, :, rs] = np.where((ri < 0)[:, None], cval, ext[:, :, r0 + np.maximum(ri, 0)])
    return ext


def _fft_tile(k, extent):
    """FFT length of one tile along an axis: about 8 kernel lengths (measured:
    long enough to amortise the overlap, short enough to stay in cache), or
    the whole extent when that is shorter."""
    import scipy.fft as sfft

    return min(sfft.next_fast_len(max(128, 8 * k), real=True),
               sfft.next_fast_len(extent, real=True))


def _fft_filter(x4, kk, anchors, out_hw, mode, cval, nthreads):
    """Correlation of x4 (N, H, W, C) with kk by FFT, overlap-save: extend the
    image by the border rule, cut it into overlapping tiles, multiply each
    tile's spectrum by the kernel's and keep the valid part of each tile."""
    import scipy.fft as sfft  # lazily: scipy.fft costs import time
    from numpy.lib.stride_tricks import sliding_window_view

    n, h, w, c = x4.shape
    kh, kw = kk.shape
    (ay, ax), (oh, ow) = anchors, out_hw
    th, tw = _fft_tile(kh, oh + kh - 1), _fft_tile(kw, ow + kw - 1)
    bh, bw = th - kh + 1, tw - kw + 1                  # outputs per tile
    ny, nx = -(-oh // bh), -(-ow // bw)
    # extended image, rounded up to whole tiles (the extra outputs are dropped)
    rows = _border_indices(-ay, ny * bh + kh - 1 - ay, h, mode)
    cols = _border_indices(-ax, nx * bw + kw - 1 - ax, w, mode)
    ext = _extend(np.moveaxis(x4, 3, 1), rows, cols, cval)
    tiles = sliding_window_view(ext, (th, tw), axis=(2, 3))[:, :, ::bh, ::bw]
    spec = sfft.rfft2(tiles, s=(th, tw), workers=nthreads)
    spec *= sfft.rfft2(kk[::-1, ::-1], s=(th, tw), workers=nthreads)
    out = sfft.irfft2(spec, s=(th, tw), workers=nthreads)[..., kh - 1:, kw - 1:]
    out = np.moveaxis(out, 4, 3).reshape(n, c, ny * bh, nx * bw)[:, :, :oh, :ow]
    return np.ascontiguousarray(np.moveaxis(out, 1, 3), dtype=x4.dtype)


def _separable_factors(kk, rtol):
    """is_separable of the float64 kernel kk, factors read-only."""
    factors = is_separable(kk, rtol)
    if factors is not None:
        for f in factors:
            f.setflags(write=False)
    return factors


@functools.lru_cache(maxsize=256)
def _kernel_plan(data, shape, kdtype, op, method, cdt):
    """Everything filter2d derives from the kernel alone, remembered by its
    bytes: the SVD behind the separability test was half of a small image's
    filter2d time (and woke OpenBLAS's threads beside the kernels' own), and
    the conversions a few microseconds more. Returns (path, kk, kcd, factors,
    fft_ok): the correlation kernel in float64 (kk) and in the compute dtype
    (kcd, contiguous), path "separable" (factors: (kcol, krow) in cdt),
    "fft" or "direct", and for "direct" whether the FFT would be taken for
    an image without NaN or inf (fft_ok). Arrays are read-only."""
    kk = np.frombuffer(data, kdtype).reshape(shape).astype(np.float64)
    if op == "convolve":
        kk = kk[::-1, ::-1].copy()
    kcd = np.ascontiguousarray(kk, dtype=cdt)
    kk.setflags(write=False)
    kcd.setflags(write=False)
    kh, kw = shape
    if method in ("direct", "fft"):
        return method, kk, kcd, None, False
    # a single row or column is already one 1-D pass
    if method == "separable" or min(kh, kw) > 1:
        factors = _separable_factors(kk, _SEPARABLE_RTOL[cdt])
        if factors is not None:
            factors = tuple(np.ascontiguousarray(f, dtype=cdt) for f in factors)
            for f in factors:
                f.setflags(write=False)
            return "separable", kk, kcd, factors, False
        if method == "separable":
            raise ValueError(f"method='separable' but the kernel {shape} is not rank 1 "
                             f"(within the tolerance of {cdt})")
    # the FFT spreads a NaN or inf over the whole image: direct then
    fft_ok = (min(kh, kw) >= FFT_MIN_SIZE and np.count_nonzero(kk) >= FFT_MIN_TAPS
              and bool(np.isfinite(kk).all()))
    return "direct", kk, kcd, None, fft_ok


def _image_allows_fft(x4):
    """The FFT spreads a NaN or inf over the whole image."""
    return x4.dtype.kind != "f" or bool(np.isfinite(x4).all())


def _plan(kk, cdt, method, x4):
    """How filter2d applies the correlation kernel kk to x4 (compute dtype
    cdt): ("separable", (kcol, krow)), ("fft", None) or ("direct", None)."""
    kc = np.ascontiguousarray(kk, dtype=np.float64)
    path, _, _, factors, fft_ok = _kernel_plan(kc.tobytes(), kc.shape, kc.dtype,
                                               "correlate", method, np.dtype(cdt))
    if fft_ok and _image_allows_fft(x4):
        return "fft", None
    return path, factors


def _cast_result(y, dtype):
    """y (float) as dtype: integers are rounded half to even and clipped to the
    dtype's range, so nothing wraps around."""
    if y.dtype == dtype:
        return y
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        y = np.rint(y, out=y)
        np.clip(y, info.min, info.max, out=y)
        return y.astype(dtype)
    return y if y.dtype == dtype else y.astype(dtype)


def filter2d(image, kernel, mode="reflect", cval=0.0, op="convolve", *, batch=False,
             output=None, method="auto"):
    """Filter an image with a 2-D kernel, like scipy.ndimage.convolve/correlate.

    image: (H, W) grayscale or (H, W, C) with channels last (colour); with
        batch=True, (N, H, W) or (N, H, W, C). Each channel is filtered with
        the same kernel. Any memory layout; integer or float dtype.
    kernel: 2-D array of any size (odd or even), e.g. ``sharpen()``.
    mode: how the image is extended beyond its edges: "reflect" (default),
        "mirror", "nearest", "wrap", "constant" (with cval) as in
        scipy.ndimage; the OpenCV names and cv2.BORDER_* constants as aliases
        (BORDER_REFLECT -> reflect, BORDER_REFLECT_101 / BORDER_DEFAULT ->
        mirror, BORDER_REPLICATE -> nearest, BORDER_WRAP -> wrap,
        BORDER_CONSTANT -> constant); or "valid" (no extension, output
        smaller by the kernel size - 1, like scipy.signal's "valid").
    op: "convolve" (the kernel is flipped, the textbook operator and
        scipy.ndimage.convolve) or "correlate" (not flipped:
        scipy.ndimage.correlate, cv2.filter2D, conv layers).
    output: dtype of the result; default the image's dtype. Integer results
        are rounded (half to even) and clipped to the dtype's range, never
        wrapped; e.g. output=np.float32 keeps negative edge responses.
    method: "auto" (default), "direct", "separable" (refused for a kernel
        that is not rank 1) or "fft".

    The anchor is the kernel's centre; for an even size k it is element
    k // 2 for correlation and (k - 1) // 2 of the unflipped kernel for
    convolution: scipy.ndimage's convention (origin=0).

    Computed in float32 for float16/float32 images and 8/16-bit integer
    images, in float64 for float64 images, wider integers or float64 output.
    """
    if not isinstance(op, str):
        raise TypeError(f"op must be 'convolve' or 'correlate', got {type(op).__name__}")
    if op not in ("convolve", "correlate"):
        raise ValueError(f"op must be 'convolve' or 'correlate', got {op!r}")
    mode = border_mode(mode)
    if isinstance(cval, bool) or not isinstance(cval, numbers.Real):
        raise TypeError(f"cval must be a real number, got {cval!r}")
    if method not in ("auto", "direct", "separable", "fft"):
        raise ValueError(f"method must be 'auto', 'direct', 'separable' or 'fft', "
                         f"got {method!r}")
    if not isinstance(batch, (bool, np.bool_)):
        raise TypeError(f"batch must be True or False, got {batch!r}")

    img = _real_array("image", image)
    k = _real_array("kernel", kernel)
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {k.shape}"
                         + (" (use kernel[None, :] for a row)" if k.ndim == 1 else ""))
    if k.size == 0:
        raise ValueError(f"kernel must not be empty, got shape {k.shape}")
    layouts = ("(N, H, W) or (N, H, W, C)", (3, 4)) if batch else ("(H, W) or (H, W, C)", (2, 3))
    if img.ndim not in layouts[1]:
        hint = "; for a batch pass batch=True" if not batch and img.ndim == 4 else ""
        raise ValueError(f"image must be {layouts[0]} with batch={bool(batch)}, got shape "
                         f"{img.shape}{hint}")
    out_dtype = _output_dtype(output, img.dtype)
    cdt = _compute_dtype(img.dtype, out_dtype)

    # to (N, H, W, C)
    if batch:
        x4 = img if img.ndim == 4 else img[..., None]
    else:
        x4 = img[None] if img.ndim == 3 else img[None, :, :, None]
    n, h, w, c = x4.shape
    if h == 0 or w == 0 or c == 0:
        raise ValueError(f"image must not be empty, got shape {img.shape}")
    kh, kw = k.shape
    if mode == "valid":
        if kh > h or kw > w:
            raise ValueError(f"kernel {k.shape} is larger than the image ({h}, {w}) "
                             f"in mode 'valid'")
        anchors, out_hw = (0, 0), (h - kh + 1, w - kw + 1)
    elif op == "correlate":
        anchors, out_hw = (kh // 2, kw // 2), (h, w)
    else:
        anchors, out_hw = ((kh - 1) // 2, (kw - 1) // 2), (h, w)
    out_shape = img.shape[:-2] + out_hw if img.ndim == (3 if batch else 2) else \
        img.shape[:-3] + out_hw + img.shape[-1:]
    if n == 0:
        return np.empty(out_shape, out_dtype)

    kc = np.ascontiguousarray(k)
    path, kk, kcd, factors, fft_ok = _kernel_plan(kc.tobytes(), kc.shape, kc.dtype, op,
                                                  method, cdt)
    border = "constant" if mode == "valid" else mode
    # 8/16-bit integer images and outputs are converted inside the C loops
    native_in = x4.dtype.newbyteorder("=") in _C_INT_DTYPES
    x4 = np.ascontiguousarray(x4, dtype=x4.dtype.newbyteorder("=") if native_in else cdt)
    if not x4.flags.aligned:        # np.frombuffer at an odd offset; the kernels need aligned
        x4 = x4.copy()
    if fft_ok and _image_allows_fft(x4):
        path = "fft"
    nthreads = get_num_threads()
    if path == "fft":
        x4 = x4.astype(cdt, copy=False)
        y4 = _fft_filter(x4, kcd, anchors, out_hw, border, float(cval), nthreads)
    else:
        y4 = np.empty((n,) + out_hw + (c,), out_dtype if out_dtype in _C_INT_DTYPES else cdt)
        code = _kernels.BORDER_CODES[border]
        if path == "separable":
            _kernels.sepfilter2d(x4, factors[0], factors[1], y4, anchors[0], anchors[1], code,
                                 float(cval), nthreads)
        else:
            _kernels.filter2d(x4, kcd, y4, anchors[0], anchors[1], code, float(cval),
                              nthreads)
    return _cast_result(y4.reshape(out_shape), out_dtype)
