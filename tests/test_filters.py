"""cconv.filters: canonical kernels, filter2d against scipy.ndimage and a numpy
reference, every fast path, integer images, threads, the seed's properties and
bad input."""
import numpy as np
import pytest
import scipy.ndimage as ndi

from conftest import assert_close

import cconv
from cconv import filters as F

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]
OPS = ["convolve", "correlate"]
DTYPES = [np.float32, np.float64]
# odd, even, mixed, a row, and kernels larger than the 6 x 7 test image
KERNEL_SHAPES = [(3, 3), (5, 5), (2, 2), (4, 3), (1, 4), (6, 1), (9, 8)]
LAYOUTS = {  # name: (image shape, batch)
    "gray": ((6, 7), False),
    "colour": ((6, 7, 3), False),
    "batch": ((2, 6, 7), True),
    "batch_colour": ((2, 6, 7, 2), True),
}
NP_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
          "constant": "constant"}


def scipy_filter(image, kernel, mode, op, cval=0.0, batch=False):
    """scipy.ndimage.convolve/correlate in float64, plane by plane."""
    x = np.asarray(image, np.float64)
    k = np.asarray(kernel, np.float64)
    fn = ndi.convolve if op == "convolve" else ndi.correlate
    if not batch:
        x = x[None]
    planes = x if x.ndim == 3 else np.moveaxis(x, 3, 1)   # (N, H, W) or (N, C, H, W)
    out = np.stack([fn(p, k, mode=mode, cval=cval) for p in planes.reshape(-1, *x.shape[1:3])])
    out = out.reshape(planes.shape)
    if x.ndim == 4:
        out = np.moveaxis(out, 1, 3)
    return out if batch else out[0]


def numpy_filter(image2d, kernel, mode, op, cval=0.0):
    """Reference: np.pad by the border rule, then a sum of shifted slices."""
    x = np.asarray(image2d, np.float64)
    k = np.asarray(kernel, np.float64)
    kh, kw = k.shape
    if op == "convolve":
        k = k[::-1, ::-1]
        ay, ax = (kh - 1) // 2, (kw - 1) // 2
    else:
        ay, ax = kh // 2, kw // 2
    pads = ((ay, kh - 1 - ay), (ax, kw - 1 - ax))
    kwargs = {"constant_values": cval} if mode == "constant" else {}
    xp = np.pad(x, pads, mode=NP_PAD[mode], **kwargs)
    h, w = x.shape
    out = np.zeros((h, w))
    for u in range(kh):
        for v in range(kw):
            out += k[u, v] * xp[u:u + h, v:v + w]
    return out


# ---------------------------------------------------------------- kernels

def test_kernel_values_are_the_notes():
    np.testing.assert_array_equal(F.blur(normalize=False), [[0, 1, 0], [1, 4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(F.blur(), np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 8)
    np.testing.assert_array_equal(F.sharpen(), [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(F.edge(), [[0, -1, 0], [-1, 4, -1], [0, -1, 0]])
    np.testing.assert_array_equal(F.sobel_vertical(), [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(F.sobel_horizontal(), [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    np.testing.assert_array_equal(F.box(3, normalize=False), np.ones((3, 3)))
    np.testing.assert_array_equal(F.box(2), np.full((2, 2), 0.25))


def test_kernel_sums_and_relations():
    assert F.blur(normalize=False).sum() == 8       # the notes' kernel brightens 8x
    assert F.blur().sum() == 1
    assert F.sharpen().sum() == 1 and F.edge().sum() == 0
    identity = np.zeros((3, 3))
    identity[1, 1] = 1
    np.testing.assert_array_equal(F.sharpen(), identity + F.edge())
    for k in (F.blur(), F.sharpen(), F.edge(), F.box(4), F.gaussian(1.3)):
        np.testing.assert_array_equal(k, k[::-1, ::-1])     # same for both operators
    np.testing.assert_array_equal(F.sobel_vertical()[::-1, ::-1], -F.sobel_vertical())


def test_kernels_are_fresh_float_arrays():
    k = F.sharpen()
    k[0, 0] = 99
    assert F.sharpen()[0, 0] == 0
    assert all(f().dtype == np.float64 for f in (F.blur, F.sharpen, F.edge, F.sobel_vertical))


@pytest.mark.parametrize("sigma,size", [(1.0, None), (2.5, None), (0.5, 4), (1.0, 6)])
def test_gaussian(sigma, size):
    k = F.gaussian(sigma, size)
    n = 2 * int(np.ceil(3 * sigma)) + 1 if size is None else size
    assert k.shape == (n, n)
    assert abs(k.sum() - 1) < 1e-12
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    raw = F.gaussian(sigma, size, normalize=False)
    t = np.arange(n) - (n - 1) / 2
    yy, xx = np.meshgrid(t, t, indexing="ij")
    np.testing.assert_allclose(raw, np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
                               / (2 * np.pi * sigma**2), rtol=1e-12)
    assert F.is_separable(k) is not None


@pytest.mark.parametrize("call", [lambda: F.box(0), lambda: F.box(2.5), lambda: F.box(True),
                                  lambda: F.gaussian(0), lambda: F.gaussian(-1),
                                  lambda: F.gaussian(float("nan")),
                                  lambda: F.gaussian(1, size=0)])
def test_kernel_arguments_are_checked(call):
    with pytest.raises(ValueError):
        call()


def test_get_kernel():
    np.testing.assert_array_equal(F.get_kernel("sharpen"), F.sharpen())
    np.testing.assert_array_equal(F.get_kernel("box:5"), F.box(5))
    np.testing.assert_array_equal(F.get_kernel("gaussian:2,9"), F.gaussian(2, 9))
    np.testing.assert_array_equal(F.get_kernel("blur", normalize=False), F.blur(normalize=False))
    with pytest.raises(ValueError, match="unknown kernel 'blurr'.*sharpen"):
        F.get_kernel("blurr")
    with pytest.raises(ValueError, match="sigma"):
        F.get_kernel("gaussian")
    with pytest.raises(ValueError, match="not a number"):
        F.get_kernel("box:x")


# ---------------------------------------------------------------- normalisation

@pytest.mark.parametrize("kernel", [F.blur(), F.box(5), F.gaussian(1.5), F.box(4)])
@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap"])
def test_blurred_constant_image_stays_constant(kernel, mode):
    img = np.full((9, 11), 77, np.uint8)
    np.testing.assert_array_equal(F.filter2d(img, kernel, mode=mode), img)
    out = F.filter2d(img.astype(np.float64), kernel, mode=mode)
    np.testing.assert_allclose(out, 77, rtol=1e-12)


def test_raw_blur_brightens_eightfold():
    img = np.full((5, 6), 10.0)
    np.testing.assert_allclose(F.filter2d(img, F.blur(normalize=False)), 80)
    np.testing.assert_array_equal(F.filter2d(np.full((5, 6), 100, np.uint8),
                                             F.blur(normalize=False)), 255)   # clipped


# ---------------------------------------------------------------- equality with scipy

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kshape", KERNEL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_equals_scipy_ndimage(dtype, mode, op, kshape, layout, rng):
    shape, batch = LAYOUTS[layout]
    img = rng.normal(size=shape).astype(dtype)
    k = rng.normal(size=kshape)
    got = F.filter2d(img, k, mode=mode, cval=0.75, op=op, batch=batch)
    assert_close(got, scipy_filter(img, k, mode, op, cval=0.75, batch=batch), dtype)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3)])
@pytest.mark.parametrize("mode", MODES)
def test_tiny_images(shape, mode, rng):
    img = rng.normal(size=shape)
    for k in (rng.normal(size=(3, 3)), rng.normal(size=(4, 5)), np.outer([1, 2, 3], [1, 0, 4])):
        for op in OPS:
            assert_close(F.filter2d(img, k, mode=mode, op=op),
                         scipy_filter(img, k, mode, op), np.float64)


@pytest.mark.parametrize("alias,mode", [
    ("BORDER_REFLECT", "reflect"), ("BORDER_REFLECT_101", "mirror"),
    ("BORDER_REFLECT101", "mirror"), ("BORDER_DEFAULT", "mirror"),
    ("BORDER_REPLICATE", "nearest"), ("BORDER_WRAP", "wrap"),
    ("BORDER_CONSTANT", "constant"), ("cv2.BORDER_DEFAULT", "mirror"),
    ("border_reflect", "reflect"), ("grid-mirror", "reflect"), ("grid-wrap", "wrap"),
    ("grid-constant", "constant"), ("Reflect", "reflect"),
    (0, "constant"), (1, "nearest"), (2, "reflect"), (3, "wrap"), (4, "mirror"),
    (np.int64(4), "mirror")])
def test_border_aliases(alias, mode, rng):
    assert F.border_mode(alias) == mode
    img = rng.normal(size=(7, 8))
    k = rng.normal(size=(3, 4))
    np.testing.assert_array_equal(F.filter2d(img, k, mode=alias, cval=2.0),
                                  F.filter2d(img, k, mode=mode, cval=2.0))


def test_matches_cv2_filter2d_as_a_correlation(rng):
    cv2 = pytest.importorskip("cv2")
    img = rng.random((40, 53)).astype(np.float32)
    k = rng.normal(size=(5, 5)).astype(np.float32)
    for border, mode in [(cv2.BORDER_REFLECT_101, "mirror"), (cv2.BORDER_REFLECT, "reflect"),
                         (cv2.BORDER_REPLICATE, "nearest")]:
        ref = cv2.filter2D(img, -1, k, borderType=border)
        assert_close(F.filter2d(img, k, mode=border, op="correlate"), ref, np.float32)
        assert_close(F.filter2d(img, k, mode=mode, op="correlate"), ref, np.float32)


def test_valid_mode_is_scipy_signal_valid(rng):
    import scipy.signal

    img = rng.normal(size=(9, 12))
    k = rng.normal(size=(4, 3))
    assert_close(F.filter2d(img, k, mode="valid"),
                 scipy.signal.convolve2d(img, k, mode="valid"), np.float64)
    assert_close(F.filter2d(img, k, mode="valid", op="correlate"),
                 scipy.signal.correlate2d(img, k, mode="valid"), np.float64)
    assert F.filter2d(np.zeros((2, 5, 6, 3)), k, mode="valid", batch=True).shape == (2, 2, 4, 3)


def test_even_kernel_anchor_follows_scipy_origin():
    """For size 2: correlation reads [i - 1, i], convolution [i, i + 1]."""
    x = np.array([[0.0, 1.0, 10.0, 100.0]])
    k = np.array([[1.0, 2.0]])
    # correlate: k[0] x[j-1] + k[1] x[j]; convolve: k[0] x[j+1] + k[1] x[j]
    np.testing.assert_array_equal(F.filter2d(x, k, op="correlate", mode="constant"),
                                  [[0, 2, 21, 210]])
    np.testing.assert_array_equal(F.filter2d(x, k, op="convolve", mode="constant"),
                                  [[1, 12, 120, 200]])


# ---------------------------------------------------------------- layouts and memory

def test_non_contiguous_inputs(rng):
    base = rng.normal(size=(20, 30, 4))
    k = rng.normal(size=(3, 4))
    views = {
        "strided": base[::2, ::3, 1],
        "transposed": base[:, :, 0].T,
        "negative": base[::-1, ::-1, 2],
        "fortran": np.asfortranarray(base[:, :, 3]),
        "channels_view": base[:, :, 1:],
        "big_endian": base[:, :, 0].astype(">f8"),
    }
    for name, img in views.items():
        ref = scipy_filter(np.ascontiguousarray(img, np.float64), k, "reflect", "convolve")
        got = F.filter2d(img, k)
        assert got.dtype == np.float64, name
        assert_close(got, ref, np.float64)


def test_list_input_and_zero_batch():
    out = F.filter2d([[1, 2], [3, 4]], [[1.0]])
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])
    empty = F.filter2d(np.zeros((0, 5, 6), np.float32), F.blur(), batch=True)
    assert empty.shape == (0, 5, 6) and empty.dtype == np.float32


def test_float16_and_output_dtypes(rng):
    img = rng.random((8, 9)).astype(np.float16)
    out = F.filter2d(img, F.blur())
    assert out.dtype == np.float16
    assert_close(out.astype(np.float64), scipy_filter(img, F.blur(), "reflect", "convolve"),
                 np.float64, tol=2e-3)
    assert F.filter2d(img, F.blur(), output=np.float64).dtype == np.float64
    assert F.filter2d(img.astype(np.float32), F.blur(), output="float64").dtype == np.float64


# ---------------------------------------------------------------- integer images

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int8, np.int32])
@pytest.mark.parametrize("kernel", ["sharpen", "edge", "blur_raw", "blur", "sobel", "box4",
                                    "dense5"])
def test_integer_images_round_and_clip(dtype, kernel, rng):
    info = np.iinfo(dtype)
    img = rng.integers(info.min, int(info.max) + 1, size=(12, 13, 3), dtype=dtype)
    img[0, :4] = info.max        # force overflow and underflow
    img[1, :4] = info.min
    k = {"sharpen": F.sharpen(), "edge": F.edge(), "blur_raw": F.blur(normalize=False),
         "blur": F.blur(), "sobel": F.sobel_vertical(), "box4": F.box(4),
         "dense5": np.arange(25.0).reshape(5, 5) % 7 - 3}[kernel]
    ref = scipy_filter(img, k, "reflect", "convolve")      # float64, exact here
    got = F.filter2d(img, k)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.clip(np.rint(ref), info.min, info.max))
    as_float = F.filter2d(img, k, output=np.float32)
    assert as_float.dtype == np.float32
    assert_close(as_float, ref, np.float32)


def test_integer_rounding_is_half_to_even():
    img = np.array([[1, 2, 3, 4]], np.uint8)
    k = np.array([[0.5, 0.5]])
    # correlation with mode nearest: (x[j-1] + x[j]) / 2 = 1, 1.5, 2.5, 3.5
    np.testing.assert_array_equal(F.filter2d(img, k, op="correlate", mode="nearest"),
                                  [[1, 2, 2, 4]])


def test_float_image_to_integer_output():
    img = np.array([[-3.0, 0.4, 300.0]])
    np.testing.assert_array_equal(F.filter2d(img, [[1.0]], output=np.uint8), [[0, 0, 255]])


def test_gaussian_on_uint8_within_one(rng):
    img = rng.integers(0, 256, size=(30, 31), dtype=np.uint8)
    ref = scipy_filter(img, F.gaussian(1.7), "mirror", "convolve")
    got = F.filter2d(img, F.gaussian(1.7), mode="mirror")
    assert np.abs(got.astype(int) - np.rint(ref)).max() <= 1


# ---------------------------------------------------------------- fast paths

def _path(kernel, dtype=np.float32, method="auto", image=None):
    kk = np.asarray(kernel, np.float64)
    x = np.zeros((1, 4, 4, 1), dtype) if image is None else image
    return F._plan(kk, np.dtype(dtype), method, x)[0]


def test_path_selection():
    assert _path(F.gaussian(2.0)) == "separable"
    assert _path(F.sobel_vertical()) == "separable"
    assert _path(F.box(5)) == "separable"
    assert _path(F.sharpen()) == "direct"
    assert _path(np.ones((1, 7))) == "direct"              # already 1-D
    big = np.random.default_rng(0).normal(size=(35, 35))
    assert _path(big) == "fft"
    assert _path(big[:, :14]) == "direct"
    assert _path(big, image=np.full((1, 4, 4, 1), np.nan, np.float32)) == "direct"
    assert _path(big, method="direct") == "direct"
    with pytest.raises(ValueError, match="not rank 1"):
        _path(F.sharpen(), method="separable")


def test_separable_factors_are_exact_for_integer_kernels():
    kcol, krow = F.is_separable(F.sobel_vertical())
    np.testing.assert_array_equal(np.outer(kcol, krow), F.sobel_vertical())
    assert F.is_separable(F.sharpen()) is None
    assert F.is_separable([[1.0, np.nan], [1.0, 1.0]]) is None


# widths around the vector blocks (8 and 32 floats) and the edge strips; heights
# odd and even (output rows go in pairs)
PATH_SHAPES = [(5, 7), (6, 16), (9, 37), (4, 70), (7, 131)]


@pytest.mark.parametrize("shape", PATH_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name,kernel", [
    ("3x3_dense", np.arange(1.0, 10.0).reshape(3, 3) - 4.5),
    ("3x3_cross", F.sharpen()),
    ("3x3_sparse", np.array([[1.0, 0, 0], [0, 0, 2], [0, 3, 0]])),
    ("5x5_dense", np.cos(np.arange(25.0)).reshape(5, 5)),
    ("7x4_list", np.sin(np.arange(28.0)).reshape(7, 4)),
    ("separable_5x3", np.outer([1.0, -2, 3, 0.5, 1], [2.0, 0, -1])),
    ("gaussian_9", F.gaussian(1.5, 9)),
])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fast_paths_match_numpy_reference(dtype, name, kernel, shape, rng):
    for mode in MODES:
        for op in OPS:
            img = rng.normal(size=shape).astype(dtype)
            got = F.filter2d(img, kernel, mode=mode, op=op, cval=-1.5)
            assert_close(got, numpy_filter(img, kernel, mode, op, cval=-1.5), dtype)
            colour = rng.normal(size=shape + (3,)).astype(dtype)
            got = F.filter2d(colour, kernel, mode=mode, op=op, cval=-1.5)
            ref = np.stack([numpy_filter(colour[..., c], kernel, mode, op, cval=-1.5)
                            for c in range(3)], axis=-1)
            assert_close(got, ref, dtype)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_forced_methods_agree(method, rng):
    img = rng.normal(size=(23, 41, 2)).astype(np.float32)
    k = np.outer(rng.normal(size=6), rng.normal(size=5))
    for mode in MODES:
        ref = scipy_filter(img, k, mode, "convolve", cval=0.5)
        assert_close(F.filter2d(img, k, mode=mode, cval=0.5, method=method), ref, np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_fft_path_large_kernel(mode, rng):
    img = rng.normal(size=(70, 300)).astype(np.float32)   # several overlap-save tiles
    k = rng.normal(size=(35, 36))
    assert _path(k) == "fft"
    for op in OPS:
        assert_close(F.filter2d(img, k, mode=mode, op=op, cval=0.25),
                     scipy_filter(img, k, mode, op, cval=0.25), np.float32, tol=1e-3)
    small = rng.normal(size=(10, 12))                       # kernel larger than the image
    assert_close(F.filter2d(small, k, mode=mode, method="fft"),
                 scipy_filter(small, k, mode, "convolve"), np.float64)


def test_nan_stays_local(rng):
    img = rng.normal(size=(40, 40))
    img[20, 20] = np.nan
    for k in (F.sharpen(), F.gaussian(1.0), rng.normal(size=(35, 35))):
        out = F.filter2d(img, k)
        assert np.isnan(out).any() and not np.isnan(out[0, 0])
    # zero weights are skipped, as in scipy.ndimage: a NaN under a zero tap stays out
    out = F.filter2d(img, F.sharpen())
    ref = ndi.convolve(img, F.sharpen())
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))


# ---------------------------------------------------------------- threads

@pytest.mark.parametrize("kernel", [F.sharpen(), np.arange(9.0).reshape(3, 3) + 1,
                                    np.cos(np.arange(25.0)).reshape(5, 5), F.gaussian(2.0),
                                    np.sin(np.arange(21.0)).reshape(3, 7)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_one_and_two_threads_equal(kernel, dtype, rng):
    img = rng.normal(size=(2, 131, 150)).astype(dtype)      # odd rows: pairs split
    with cconv.threads(1):
        one = F.filter2d(img, kernel, batch=True)
    with cconv.threads(2):
        two = F.filter2d(img, kernel, batch=True)
    np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------- the seed's properties

def _full(a, b):
    """Full 2-D convolution a * b through filter2d: zero padding, 'valid'."""
    kh, kw = b.shape
    padded = np.pad(a, ((kh - 1, kh - 1), (kw - 1, kw - 1)))
    return F.filter2d(padded, b, mode="valid")


def test_convolution_is_commutative(rng):
    a = rng.normal(size=(7, 9))
    b = rng.normal(size=(3, 4))
    np.testing.assert_allclose(_full(a, b), _full(b, a), rtol=1e-12, atol=1e-12)


def test_convolution_is_linear(rng):
    img = rng.normal(size=(16, 19, 3))
    b, c = rng.normal(size=(3, 3)), rng.normal(size=(5, 4))
    cpad = c
    bpad = np.pad(b, ((1, 1), (0, 1)))                      # same size and centre as c
    l1, l2 = 0.7, -1.9
    for mode in MODES:
        lhs = F.filter2d(img, l1 * bpad + l2 * cpad, mode=mode)
        rhs = l1 * F.filter2d(img, bpad, mode=mode) + l2 * F.filter2d(img, cpad, mode=mode)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
        x2 = rng.normal(size=img.shape)
        np.testing.assert_allclose(F.filter2d(l1 * img + l2 * x2, b, mode=mode),
                                   l1 * F.filter2d(img, b, mode=mode)
                                   + l2 * F.filter2d(x2, b, mode=mode), rtol=1e-10, atol=1e-10)


def test_sobel_sign_flip_between_convolution_and_correlation(rng):
    img = rng.integers(0, 256, size=(20, 30)).astype(np.float32)
    for k in (F.sobel_vertical(), F.sobel_horizontal()):
        conv = F.filter2d(img, k, op="convolve")
        corr = F.filter2d(img, k, op="correlate")
        np.testing.assert_array_equal(conv, -corr)
    # convolution gives the derivative: positive where brighter to the right / below
    ramp_x = np.tile(np.arange(10.0), (8, 1))
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_array_equal(F.filter2d(ramp_x, F.sobel_vertical())[inner], 8)
    np.testing.assert_array_equal(
        F.filter2d(ramp_x, F.sobel_vertical(), op="correlate")[inner], -8)
    np.testing.assert_array_equal(F.filter2d(ramp_x.T, F.sobel_horizontal())[inner], 8)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"image": np.zeros(5)}, ValueError, "image must be"),
    ({"image": np.zeros((2, 3, 4, 5))}, ValueError, "batch=True"),
    ({"image": np.zeros((2, 3)), "batch": True}, ValueError, r"image must be \(N, H, W\)"),
    ({"image": np.zeros((1, 2, 3, 4, 5)), "batch": True}, ValueError, "image must be"),
    ({"image": np.zeros((0, 4))}, ValueError, "image must not be empty"),
    ({"image": np.zeros((4, 4), complex)}, TypeError, "image must be a real"),
    ({"image": np.zeros((4, 4), bool)}, TypeError, "image must be a real"),
    ({"image": np.array([["a"]])}, TypeError, "image must be a real"),
    ({"kernel": np.ones(3)}, ValueError, "kernel must be 2-D"),
    ({"kernel": np.ones((3, 3, 1))}, ValueError, "kernel must be 2-D"),
    ({"kernel": np.ones((0, 3))}, ValueError, "kernel must not be empty"),
    ({"kernel": np.ones((3, 3), complex)}, TypeError, "kernel must be a real"),
    ({"mode": "reflekt"}, ValueError, "unknown mode 'reflekt'"),
    ({"mode": 7}, ValueError, "unknown mode 7"),
    ({"mode": None}, TypeError, "mode must be"),
    ({"op": "conv"}, ValueError, "op must be"),
    ({"op": 1}, TypeError, "op must be"),
    ({"cval": "0"}, TypeError, "cval must be"),
    ({"method": "winograd"}, ValueError, "method must be"),
    ({"output": np.complex64}, TypeError, "output must be"),
    ({"output": "nonsense"}, TypeError, "output must be"),
    ({"kernel": np.ones((9, 3)), "mode": "valid"}, ValueError, "larger than the image"),
    ({"batch": "yes"}, TypeError, "batch must be"),
])
def test_bad_input(kwargs, exc, match):
    args = {"image": np.zeros((5, 6)), "kernel": np.ones((3, 3))}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        F.filter2d(args.pop("image"), args.pop("kernel"), **args)


def test_kernel_plan_cache_follows_the_kernels_bytes(rng):
    """filter2d remembers what it derives from a kernel (separability, the
    flipped and converted copies) by the kernel's bytes: a kernel changed in
    place, or another dtype with the same values, is never served stale."""
    img = rng.random((20, 23)).astype(np.float32)
    k = F.gaussian(1.2)                                  # separable
    for _ in range(2):
        np.testing.assert_allclose(F.filter2d(img, k, mode="mirror"),
                        scipy_filter(img, k, "mirror", "convolve"), rtol=1e-5, atol=1e-5)
    k[0, 0] += 0.5                                       # in place: no longer rank 1
    np.testing.assert_allclose(F.filter2d(img, k, mode="mirror"),
                    scipy_filter(img, k, "mirror", "convolve"), rtol=1e-5, atol=1e-5)
    k32 = k.astype(np.float32)
    np.testing.assert_allclose(F.filter2d(img, k32, mode="mirror", op="correlate"),
                    scipy_filter(img, k32, "mirror", "correlate"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(F.filter2d(img, k32, mode="mirror", op="convolve"),
                    scipy_filter(img, k32, "mirror", "convolve"), rtol=1e-5, atol=1e-5)
