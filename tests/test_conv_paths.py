"""conv2d's algorithms (im2col+GEMM, direct, Winograd, Winograd along rows,
depthwise), the fused ReLU
epilogue and the flush-denormals mode, against the numpy reference."""
import numpy as np
import pytest
import reference as R
from conftest import assert_close, run_python
from test_conv import CONV2D_BIG, CONV2D_CASES, DTYPES, _ids, _operands

from cconv import ops, plugins

ALGORITHMS = ["im2col_gemm", "direct", "winograd", "winograd_f4", "winograd_rows",
              "depthwise_direct"]

# 3x3 stride-1 shapes where Winograd's tiles, row runs and batching matter
WINOGRAD_CASES = [
    ((1, 16, 6, 6), (16, 16, 3, 3), {"padding": 1}),
    ((2, 5, 7, 9), (3, 5, 3, 3), {}),                       # odd output: partial tiles
    ((3, 4, 9, 4), (6, 4, 3, 3), {"padding": ((2, 0), (0, 1))}),
    ((2, 3, 3, 3), (2, 3, 3, 3), {}),                       # a single output
    ((1, 2, 1, 1), (2, 2, 3, 3), {"padding": 1}),           # all padding
    ((2, 16, 34, 34), (24, 16, 3, 3), {"padding": 1}),      # several tile blocks
    ((1, 40, 20, 18), (8, 40, 3, 3), {"padding": "same"}),
    ((3, 7, 13, 22), (5, 7, 3, 3), {"padding": (0, 2)}),     # 4x4 tiles cut at both edges
    ((1, 3, 10, 5), (2, 3, 3, 3), {"padding": ((3, 1), (2, 2))}),  # rows of padding only
    ((1, 80, 12, 12), (80, 80, 3, 3), {"padding": 1}),     # 2 threads share one block
]
# the direct path: column phases of strides 2-3, dilation, partial vectors,
# pairs of vectors across rows, channel blocks of 1-6, groups, row chunks
DIRECT_CASES = [
    ((2, 3, 31, 30), (13, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((1, 2, 17, 40), (7, 2, 3, 3), {"stride": (3, 2), "padding": (2, 1),
                                    "dilation": (1, 2)}),
    ((2, 4, 9, 10), (8, 2, 3, 2), {"stride": (2, 3), "padding": ((1, 0), (2, 1)),
                                   "dilation": (2, 1), "groups": 2}),
    ((3, 1, 5, 23), (1, 1, 2, 5), {"padding": ((0, 1), (4, 0))}),
    ((1, 5, 70, 9), (12, 5, 3, 3), {"padding": 1}),           # several row chunks
    ((2, 2, 4, 4), (5, 2, 4, 4), {"padding": 2, "stride": 3}),
]
# Winograd F(4, 4) along rows: strides 1-4 (4-16 column planes), 1-4 taps per
# phase, rows of less than one vector of tiles / whole vectors / a half one
# (112 outputs), asymmetric padding, row strides and dilation, groups, 1-6
# output channels per block, several row chunks (tall maps)
WINOGRAD_ROWS_CASES = [
    ((1, 3, 40, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}),      # a stem's rows
    ((2, 3, 23, 70), (13, 3, 7, 7), {"stride": 2, "padding": ((1, 3), (3, 0))}),
    ((1, 2, 9, 30), (5, 2, 8, 8), {"stride": 2, "padding": 2}),
    ((2, 4, 12, 41), (6, 2, 5, 4), {"stride": (3, 1), "padding": (2, 1),
                                    "dilation": (2, 1), "groups": 2}),
    ((1, 1, 5, 61), (7, 1, 3, 11), {"stride": (1, 3), "padding": (1, 4)}),
    ((1, 2, 6, 70), (9, 2, 2, 16), {"stride": 4, "padding": ((0, 1), (5, 2))}),
    ((1, 3, 130, 40), (4, 3, 3, 7), {"stride": (1, 2), "padding": (1, 3)}),
    ((3, 1, 4, 7), (2, 1, 1, 7), {"stride": 2, "padding": 3}),          # one tile
    ((1, 5, 11, 137), (11, 5, 3, 3), {"padding": 1}),                  # 3 taps, stride 1
]
# depthwise 3x3 "same": vector rows (two per pass, the last vector shifted
# back), odd heights, rows of exactly one vector plus the edges, one row
DEPTHWISE_CASES = [
    ((1, 3, 9, 13), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    ((2, 2, 5, 10), (2, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 2, 1, 12), (4, 1, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 4, 6, 27), (4, 1, 3, 3), {"groups": 4, "padding": 1}),
]
# many small images in one GEMM tile (LeNet's second convolution)
BATCHED_CASES = [
    ((64, 6, 12, 12), (16, 6, 5, 5), {}),
    ((9, 3, 5, 4), (4, 3, 3, 3), {"padding": 1}),
    ((7, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "stride": 2}),
    ((33, 8, 3, 3), (5, 8, 1, 1), {}),
]


def _able(x, w, kw):
    plan = ops._conv_setup("conv2d", x, w, None, kw.get("stride", 1), kw.get("padding", 0),
                           kw.get("dilation", 1), kw.get("groups", 1), 2)[3]
    return ops.conv2d_algorithms(*plan[:6])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV2D_CASES + CONV2D_BIG + WINOGRAD_CASES + DIRECT_CASES + DEPTHWISE_CASES
                         + BATCHED_CASES + WINOGRAD_ROWS_CASES,
                         ids=_ids(CONV2D_CASES + CONV2D_BIG + WINOGRAD_CASES + DIRECT_CASES + DEPTHWISE_CASES
                         + BATCHED_CASES + WINOGRAD_ROWS_CASES))
def test_every_algorithm_matches_the_reference(rng, nthreads, dtype, algorithm, xs, ws, kw):
    x, w, b = _operands(rng, xs, ws, dtype)
    if algorithm not in _able(x, w, kw):
        with pytest.raises(ValueError, match=f"algorithm='{algorithm}' needs"):
            ops.conv2d(x, w, b, algorithm=algorithm, **kw)
        return
    ref = R.conv2d(x, w, b, **kw)
    assert_close(ops.conv2d(x, w, b, algorithm=algorithm, **kw), ref, dtype)
    assert_close(ops.conv2d(x, w, b, algorithm=algorithm, activation="relu", **kw),
                 np.maximum(ref, 0), dtype)
    assert_close(ops.conv2d(x, w, algorithm=algorithm, activation="relu", **kw),
                 np.maximum(R.conv2d(x, w, **kw), 0), dtype)


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f4", "im2col_gemm", "direct"])
def test_weight_cache_never_serves_stale_weights(rng, algorithm):
    """Transformed / packed weights are cached per thread by the weights' bytes:
    a weight changed in place, a sign of zero, new values, all recompute; many
    layers evict each other and stay correct."""
    x = rng.standard_normal((1, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)

    def check():
        got = ops.conv2d(x, w, padding=1, algorithm=algorithm)
        assert_close(got, R.conv2d(x, w, padding=1), np.float32)
        return got

    first = check()
    np.testing.assert_array_equal(check(), first)      # a hit: the same result
    w[3, 5, 1, 1] += 1.0                                # changed in place
    assert not np.array_equal(check(), first)
    w[...] = 0.0
    zero = check()
    w[...] = -0.0                                       # equal values, other bits
    np.testing.assert_array_equal(check(), zero)
    w[...] = rng.standard_normal(w.shape)
    check()
    layers = [rng.standard_normal((16, 16, 3, 3)).astype(np.float32) for _ in range(40)]
    for _ in range(2):                                  # more layers than cache entries
        for lw in layers:
            assert_close(ops.conv2d(x, lw, padding=1, algorithm=algorithm),
                         R.conv2d(x, lw, padding=1), np.float32)


def test_clearing_the_weight_cache_keeps_results(rng):
    x = rng.standard_normal((1, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    first = ops.conv2d(x, w, padding=1, algorithm="winograd")
    ops.clear_weight_cache()
    np.testing.assert_array_equal(ops.conv2d(x, w, padding=1, algorithm="winograd"), first)
    ops.clear_weight_cache()
    ops.clear_weight_cache()    # an empty cache: nothing to do


def test_winograd_weight_cache_is_per_thread(rng):
    import threading
    x = rng.standard_normal((1, 16, 18, 18)).astype(np.float32)
    ws = [rng.standard_normal((24, 16, 3, 3)).astype(np.float32) for _ in range(4)]
    want = [R.conv2d(x, w, padding=1) for w in ws]
    errors = []

    def worker(i):
        try:
            for j in range(30):
                k = (i + j) % 4
                assert_close(ops.conv2d(x, ws[k], padding=1, algorithm="winograd"),
                             want[k], np.float32)
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", DIRECT_CASES + [((64, 6, 12, 12), (16, 6, 5, 5), {})],
                         ids=_ids(DIRECT_CASES + [((64, 6, 12, 12), (16, 6, 5, 5), {})]))
def test_pooled_direct_kernel_matches_the_reference(rng, nthreads, dtype, xs, ws, kw):
    """conv2d_forward(pool2=True): act(conv + bias) max-pooled 2x2 in the epilogue."""
    from cconv import _kernels
    x, w, b = _operands(rng, xs, ws, dtype)
    x[0, 0, 0, 0] = np.nan
    plan = ops._conv_setup("conv2d", x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                           kw.get("dilation", 1), kw.get("groups", 1), 2)[3]
    stride4, pads4, dil4, groups = plan[2:6]
    for relu in (False, True):
        ref = R.conv2d(x, w, b, **kw)
        ref = np.maximum(ref, 0) if relu else ref
        oh, ow = ref.shape[2] // 2, ref.shape[3] // 2
        want = ref[:, :, :2 * oh, :2 * ow].reshape(ref.shape[0], ref.shape[1], oh, 2, ow, 2)
        want = want.max(axis=(3, 5))            # NaN propagates, as in max_pool2d
        got = np.full(want.shape, 7.0, dtype)
        _kernels.conv2d_forward(x, w, b, got, stride4, pads4, dil4, groups,
                                ops.get_num_threads(), int(relu), 0, True)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(np.nan_to_num(got), np.nan_to_num(want).astype(dtype), dtype)


@pytest.mark.parametrize("algorithm,vs_gemm,vs_scale", [("winograd", 4, 2e-5),
                                                         ("winograd_f4", 40, 4e-5)])
def test_winograd_accuracy_is_close_to_im2col(rng, algorithm, vs_gemm, vs_scale):
    """F(2x2, 3x3) rounds a little more than a direct sum, F(4x4, 3x3) (factors
    up to 8 and 1/24 in its transforms) about 20x more (measured: 7e-6 of the
    output's scale); bound both on a deep layer against a float64 sum."""
    x = rng.standard_normal((2, 128, 16, 16)).astype(np.float32)
    w = rng.standard_normal((32, 128, 3, 3)).astype(np.float32)
    exact = R.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
    err_w = np.abs(ops.conv2d(x, w, padding=1, algorithm=algorithm) - exact).max()
    err_g = np.abs(ops.conv2d(x, w, padding=1, algorithm="im2col_gemm") - exact).max()
    scale = np.abs(exact).max()
    assert err_w <= vs_gemm * err_g + 1e-6 * scale, (err_w, err_g)
    assert err_w <= vs_scale * scale


def test_winograd_rows_accuracy(rng):
    """Winograd F(4, 4) along rows (factors up to 10 and 1/60 in its
    transforms, one dimension only) on a stem: bounded against a float64 sum
    near im2col + GEMM's error (measured: 1.1e-6 of the output's scale vs
    4e-7), for float32 and float64."""
    for dtype, vs_scale in ((np.float32, 4e-6), (np.float64, 1e-13)):
        x = rng.standard_normal((2, 3, 64, 96)).astype(dtype)
        w = rng.standard_normal((16, 3, 7, 7)).astype(dtype)
        exact = R.conv2d(x.astype(np.float64), w.astype(np.float64), stride=2, padding=3)
        err_r = np.abs(ops.conv2d(x, w, stride=2, padding=3, algorithm="winograd_rows")
                       - exact).max()
        err_g = np.abs(ops.conv2d(x, w, stride=2, padding=3, algorithm="im2col_gemm")
                       - exact).max()
        scale = np.abs(exact).max()
        assert err_r <= 10 * err_g + 1e-7 * scale, (dtype, err_r, err_g)
        assert err_r <= vs_scale * scale, (dtype, err_r / scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_rows_non_finite_inputs(rng, nthreads, dtype):
    """An inf spreads (as NaN) to the 4-output tiles of its rows' outputs it
    reaches through the transforms, never further; an inf in columns the
    convolution never reads (past the last output's window) changes nothing."""
    x = rng.standard_normal((1, 2, 12, 75)).astype(dtype)
    w = rng.standard_normal((5, 2, 7, 7)).astype(dtype)
    kw = {"stride": 2, "padding": ((3, 3), (3, 0))}
    clean = ops.conv2d(x, w, algorithm="winograd_rows", **kw)   # 36 outputs: 9 tiles
    assert_close(clean, R.conv2d(x, w, **kw), dtype)
    unread = x.copy()
    unread[:, :, :, 74] = np.inf     # the last output reads padded columns 70..76 (image
    # 67..73), its tile's transform column 77 (image 74) with a zero weight
    np.testing.assert_array_equal(ops.conv2d(unread, w, algorithm="winograd_rows", **kw),
                                  clean)
    hit = x.copy()
    hit[0, 1, 5, 40] = np.inf        # padded column 43: read by outputs 19..21
    got = ops.conv2d(hit, w, algorithm="winograd_rows", **kw)
    direct = ops.conv2d(hit, w, algorithm="direct", **kw)
    assert np.isfinite(direct).sum() < direct.size
    assert (~np.isfinite(got) >= ~np.isfinite(direct)).all()   # where direct has inf/NaN
    # column 43 = 8 * 5 + 3: input 1 of tile 5's phase 1 and input 5 of tile 4's,
    # so tiles 4 and 5 (outputs 16..23) and no others
    bad_cols = np.nonzero((~np.isfinite(got)).any(axis=(0, 1, 2)))[0]
    assert bad_cols.min() >= 16 and bad_cols.max() <= 23, bad_cols
    keep = np.ones(got.shape[3], bool)
    keep[16:24] = False
    rows = np.isfinite(direct).all(axis=(0, 1, 3))
    assert_close(got[:, :, :, keep], R.conv2d(x, w, **kw)[:, :, :, keep], dtype)
    assert np.isfinite(got[:, :, rows]).all()


def test_auto_picks_by_shape():
    assert ops.conv2d_algorithms((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "winograd_f4"
    assert ops.conv2d_algorithms((1, 256, 14, 14), (256, 256, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "winograd_f4"
    # 10x14: 12 tiles of 4x4 are too few for F(4x4, 3x3), 35 of 2x2 are not
    assert ops.conv2d_algorithms((1, 256, 10, 14), (256, 256, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "winograd"
    # F(4x4)'s packed transformed weights: 38 MB at 512 channels (cached),
    # 151 MB at 1024 (could not stay cached: every call would transform them)
    assert ops.conv2d_algorithms((1, 512, 14, 14), (512, 512, 3, 3), (1, 1),
                                 (1, 1, 1, 1), (1, 1), 1)[0] == "winograd_f4"
    for n in (1, 8):
        assert ops.conv2d_algorithms((n, 1024, 14, 14), (1024, 1024, 3, 3), (1, 1),
                                     (1, 1, 1, 1), (1, 1), 1)[0] == "winograd"
    assert ops.conv2d_algorithms((2, 256, 14, 14), (256, 256, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "winograd_f4"
    assert ops.conv2d_algorithms((1, 64, 56, 56), (64, 64, 3, 3), (2, 2), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "im2col_gemm"
    assert ops.conv2d_algorithms((1, 3, 56, 56), (64, 3, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "direct"
    # 3x3 layers short enough for the direct kernel: Winograd from 24 input
    # channels and 100 tiles of 4x4, direct below either
    assert ops.conv2d_algorithms((1, 32, 56, 56), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "winograd_f4"
    assert ops.conv2d_algorithms((1, 32, 28, 28), (32, 32, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "direct"
    assert ops.conv2d_algorithms((8, 16, 56, 56), (16, 16, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 1)[0] == "direct"
    assert ops.conv2d_algorithms((1, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3),
                                 (1, 1), 1)[0] == "winograd_rows"
    # a stem on a small image (16 outputs a row: half a vector of tiles), a
    # 5x5 stride-2 layer (3 + 2 taps: no halving) and column dilation stay direct
    assert ops.conv2d_algorithms((1, 3, 32, 32), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3),
                                 (1, 1), 1)[0] == "direct"
    assert ops.conv2d_algorithms((1, 3, 224, 224), (32, 3, 5, 5), (2, 2), (2, 2, 2, 2),
                                 (1, 1), 1)[0] == "direct"
    assert ops.conv2d_algorithms((1, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3),
                                 (1, 2), 1)[0] == "direct"
    assert ops.conv2d_algorithms((1, 32, 56, 56), (64, 32, 1, 1), (1, 1), (0, 0, 0, 0),
                                 (1, 1), 1)[0] == "im2col_gemm"
    assert ops.conv2d_algorithms((1, 8, 9, 9), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1),
                                 (1, 1), 8)[0] == "depthwise_direct"


def test_kernel_registry_names_the_special_choices(rng):
    x = rng.standard_normal((1, 64, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    assert plugins.select_kernel("conv2d", x, w, None, padding=1).name == "winograd_f4"
    assert plugins.select_kernel("conv2d", x[:, :, :10, :14], w, None,
                                 padding=1).name == "winograd"
    assert plugins.select_kernel("conv2d", x, w, None, stride=2).name == "im2col_gemm"
    assert plugins.select_kernel("conv2d", x[:, :3], w[:, :3], None).name == "direct"
    stem_x = rng.standard_normal((1, 3, 70, 70)).astype(np.float32)
    stem_w = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    assert plugins.select_kernel("conv2d", stem_x, stem_w, None, stride=2,
                                 padding=3).name == "winograd_rows"
    with plugins.use_kernel("conv2d", "direct"):
        got = plugins.run_kernel("conv2d", x[:, :3], w[:, :3], None, padding=1)
    assert_close(got, R.conv2d(x[:, :3], w[:, :3], padding=1), np.float32)
    for name, xx in (("winograd", x[:, :, :10, :14]), ("winograd_f4", x)):
        with plugins.use_kernel("conv2d", name):
            got = plugins.run_kernel("conv2d", xx, w, None, padding=1)
        assert_close(got, R.conv2d(xx, w, padding=1), np.float32)


def test_relu_keeps_nan_and_runner_fuses_it(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x[0, 0, 2, 2] = np.nan
    y = ops.conv2d(x, w, activation="relu")
    assert np.isnan(y[0, :, :3, :3]).all() and not np.isnan(y[1]).any()
    assert (y[1] >= 0).all()
    run = ops.conv2d_runner(x.shape, w.shape, False, np.float32, activation="relu")
    np.testing.assert_array_equal(run(x, w), y)


@pytest.mark.parametrize("bad", ["tanh", "ReLU", 1])
def test_bad_activation_or_algorithm_names_the_argument(rng, bad):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=f"activation must be one of .*got {bad!r}"):
        ops.conv2d(x, w, activation=bad)
    with pytest.raises(ValueError, match=f"algorithm must be one of .*got {bad!r}"):
        ops.conv2d(x, w, algorithm=bad)
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.conv2d_runner(x.shape, w.shape, False, np.float32, activation=bad)


# ---------------------------------------------------------------- denormals

DENORMAL = np.float32(1e-40)   # below float32's smallest normal, 1.2e-38


@pytest.fixture
def flush_mode():
    before = ops.get_flush_denormal()
    yield
    ops.set_flush_denormal(before)


@pytest.mark.parametrize("algorithm", ["im2col_gemm", "winograd", "winograd_f4"])
def test_denormals_flush_to_zero_only_when_enabled(nthreads, flush_mode, algorithm):
    # big enough for the threaded paths; 1x1 identity-like sums of denormals
    x = np.full((2, 16, 40, 40), DENORMAL, np.float32)
    w = np.zeros((16, 16, 3, 3), np.float32)
    w[:, :, 1, 1] = np.eye(16, dtype=np.float32)
    assert ops.get_flush_denormal() is True          # the default
    y = ops.conv2d(x, w, padding=1, algorithm=algorithm)
    assert (y == 0).all()
    ops.set_flush_denormal(False)
    assert ops.get_flush_denormal() is False
    y = ops.conv2d(x, w, padding=1, algorithm=algorithm)
    np.testing.assert_array_equal(y, x)
    # the caller's floating-point mode is untouched either way
    assert np.float32(1.5) * DENORMAL != 0


def test_flush_mode_leaves_the_callers_state_alone(flush_mode):
    ops.set_flush_denormal(True)
    x = np.full((1, 1, 4, 4), DENORMAL, np.float32)
    ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32))
    ops.gemm(np.ones((40, 40), np.float32), np.ones((40, 40), np.float32))
    assert np.float32(1.5) * DENORMAL != 0
    assert (np.full(4, DENORMAL) * np.float32(1)).min() > 0


def test_environment_variable_turns_flushing_off():
    out = run_python("from cconv import ops; print(ops.get_flush_denormal())",
                     env={"CCONV_FLUSH_DENORMAL": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_top_level_switch_is_the_ops_one(flush_mode):
    import cconv

    cconv.set_flush_denormal(False)
    assert cconv.get_flush_denormal() is False and ops.get_flush_denormal() is False
    cconv.set_flush_denormal(True)
    assert ops.get_flush_denormal() is True


def test_depthwise_same_padding_reads_in_place_at_the_edges(rng, nthreads):
    """3x3 'same' depthwise skips the padded copy: edges, 1-wide and 1-high maps."""
    for hw in [(1, 1), (1, 7), (6, 1), (2, 2), (5, 9)]:
        x = rng.standard_normal((2, 3) + hw).astype(np.float64)
        w = rng.standard_normal((6, 1, 3, 3))
        b = rng.standard_normal(6)
        ref = R.conv2d(x, w, b, padding=1, groups=3)
        assert_close(ops.conv2d(x, w, b, padding=1, groups=3), ref, np.float64)
        assert_close(ops.conv2d(x, w, b, padding=1, groups=3, activation="relu"),
                     np.maximum(ref, 0), np.float64)


# The weight gradient of layers the direct kernel runs forward goes through
# its own kernel (direct_grad_impl.h): several images per job, rows cut into
# chunks on big maps, row tails masked, groups, strides, dilation, padding.
DIRECT_GRAD_CASES = DIRECT_CASES + [
    ((64, 6, 12, 12), (16, 6, 5, 5), {}),                     # LeNet conv2: 8-wide rows
    ((64, 1, 28, 28), (6, 1, 5, 5), {}),                      # LeNet conv1: 24-wide rows
    ((3, 2, 9, 13), (5, 2, 3, 3), {"padding": 1}),            # 13: a tail in every row
    ((1, 3, 260, 70), (4, 3, 7, 7), {"stride": 2, "padding": 3}),   # rows in chunks
    ((2, 6, 11, 11), (8, 3, 3, 3), {"groups": 2, "dilation": 2}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", DIRECT_GRAD_CASES, ids=_ids(DIRECT_GRAD_CASES))
def test_direct_weight_gradient_matches_the_reference(rng, nthreads, dtype, xs, ws, kw):
    x, w, _ = _operands(rng, xs, ws, dtype)
    ref_shape = R.conv2d(x, w, **kw).shape
    gy = rng.standard_normal(ref_shape).astype(dtype)
    _, want_w, want_b = R.conv2d_backward(gy, x, w, **kw)
    _, got_w, got_b = ops.conv2d_backward(gy, x, w, need_input=False, **kw)
    assert_close(got_w, want_w, dtype)
    assert_close(got_b, want_b, dtype)
    # the same as im2col + GEMM's (another summation order)
    _, gemm_w, _ = ops.conv2d_backward(gy, x, w, need_input=False, need_bias=False,
                                       algorithm="im2col_gemm", **kw)
    assert_close(got_w, gemm_w, dtype)


@pytest.mark.parametrize("xs,ws,kw", [((4, 2, 9, 12), (3, 2, 3, 3), {"stride": 2}),
                                      ((2, 1, 8, 21), (2, 1, 2, 4), {"stride": (1, 3)})])
def test_direct_weight_gradient_ignores_inputs_the_layer_never_reads(rng, nthreads, xs, ws, kw):
    """A stride that skips the last column(s): inf/NaN there stays out of dw, as
    in the reference (a vector lane past the row's end reads them)."""
    x, w, _ = _operands(rng, xs, ws, np.float32)
    gy = rng.standard_normal(R.conv2d(x, w, **kw).shape).astype(np.float32)
    _, want_w, _ = R.conv2d_backward(gy, x, w, **kw)
    sw = kw["stride"] if isinstance(kw["stride"], int) else kw["stride"][1]
    read = {ow * sw + j for ow in range(gy.shape[3]) for j in range(ws[3])}
    unread = [c for c in range(xs[3]) if c not in read]
    assert unread
    for k, c in enumerate(unread):
        x[..., c] = np.inf if k % 2 == 0 else np.nan
    _, got_w, _ = ops.conv2d_backward(gy, x, w, need_input=False, **kw)
    assert np.isfinite(got_w).all()
    assert_close(got_w, want_w, np.float32)


# ---------------------------------------------------------------- NaN stays local

# where a single NaN/inf goes: interior, the four edges, corners (a 20x20 map)
NONFINITE_POSITIONS = [(10, 10), (0, 7), (19, 5), (7, 0), (5, 19), (0, 0), (19, 19), (0, 19),
                       (2, 3), (4, 4)]
# 64-channel 3x3 layers (Winograd F(2x2) and F(4x4)) and the 7x7 stride-2 stem (Winograd
# along rows), each with the algorithm auto picks and the forced ones
NONFINITE_LAYERS = [
    ("3x3", (2, 64, 20, 20), (64, 64, 3, 3), {"padding": 1},
     ["auto", "winograd", "winograd_f4"]),
    ("stem", (1, 3, 20, 70), (64, 3, 7, 7), {"stride": 2, "padding": 3},
     ["auto", "winograd_rows"]),
]


def _nonfinite_cases(rng, layer, dtype):
    _, xs, ws, kw, algos = layer
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    for pos in NONFINITE_POSITIONS:
        for value in (np.nan, np.inf, -np.inf):
            bad = x.copy()
            bad[-1, 1, pos[0], pos[1] * xs[3] // 20] = value
            yield bad, w, b, kw, algos


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", NONFINITE_LAYERS, ids=[layer[0] for layer in NONFINITE_LAYERS])
def test_winograd_non_finite_input_stays_in_its_receptive_field(rng, nthreads, dtype, layer):
    """One NaN/inf input: the outputs that are non-finite are exactly those whose
    receptive field holds it (Winograd's transforms spread it over whole tiles:
    448 outputs of a 64-channel layer, 64 of the stem); the others are right."""
    for x, w, b, kw, algos in _nonfinite_cases(rng, layer, dtype):
        ref = R.conv2d(x, w, b, **kw)
        for algo in algos:
            for act in (None, "relu"):
                got = ops.conv2d(x, w, b, algorithm=algo, activation=act, **kw)
                want = ref if act is None else np.where(ref < 0, 0, ref)
                bad = ~np.isfinite(got)
                np.testing.assert_array_equal(bad, ~np.isfinite(want), err_msg=algo)
                assert_close(np.where(bad, 0, got), np.where(bad, 0, want), dtype)
                # a NaN input stays NaN; an inf gives inf or NaN as in the reference
                np.testing.assert_array_equal(np.isnan(got) & ~np.isnan(want),
                                              np.zeros_like(bad), err_msg=algo)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_input_gradient_keeps_a_non_finite_grad_local(rng, dtype):
    """The input gradient of a 3x3 layer runs as a Winograd convolution of grad_out."""
    x = rng.standard_normal((2, 64, 20, 20)).astype(dtype)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(dtype)
    for pos in NONFINITE_POSITIONS[:5]:
        dy = rng.standard_normal((2, 64, 20, 20)).astype(dtype)
        dy[0, 3, pos[0], pos[1]] = np.nan
        dx = ops.conv2d_backward(dy, x, w, padding=1, need_weight=False, need_bias=False)[0]
        ref = R.conv2d_backward(dy, x, w, padding=1)[0]
        np.testing.assert_array_equal(~np.isfinite(dx), ~np.isfinite(ref))
        assert_close(np.where(np.isfinite(dx), dx, 0), np.where(np.isfinite(ref), ref, 0),
                     dtype)


def test_non_finite_outputs_match_torch(rng):
    torch = pytest.importorskip("torch")
    for layer in NONFINITE_LAYERS:
        for x, w, b, kw, _ in list(_nonfinite_cases(rng, layer, np.float32))[::4]:
            got = ops.conv2d(x, w, b, **kw)
            want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              torch.from_numpy(b), **kw).numpy()
            np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
            fin = np.isfinite(want)
            np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4,
                                       atol=1e-4 * np.abs(want[fin]).max())


# ---------------------------------------------------------------- strides beyond the input

@pytest.mark.parametrize("stride", [2**24, 2**28, 2**40, (2, 2**30)])
def test_huge_strides_cost_what_the_output_costs(rng, stride):
    """A 9x9 input with stride 2^24 (a 1x1 output) touched 6 GB through the direct
    kernel, 2^28 raised MemoryError; every path now sizes its buffers by the output."""
    import resource
    import time
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    x = rng.standard_normal((2, 4, 9, 9))
    for w, groups, algos in ((rng.standard_normal((6, 4, 3, 3)), 1, ["auto", "direct", "im2col_gemm"]),
                             (rng.standard_normal((8, 1, 3, 3)), 4, ["auto", "depthwise_direct"]),
                             (rng.standard_normal((6, 4, 7, 7)), 1, ["auto", "direct"])):
        for padding in (0, 1, (0, 2**20)):
            huge = padding == (0, 2**20)
            ref = None if huge else R.conv2d(x, w, stride=stride, padding=padding, groups=groups)
            for algo in algos:
                if huge and algo == "depthwise_direct":
                    # its padded copy of the plane would be 2^42 elements: refused
                    with pytest.raises(ValueError, match="depthwise_direct"):
                        ops.conv2d(x, w, stride=stride, padding=padding, groups=groups,
                                   algorithm=algo)
                    continue
                y = ops.conv2d(x, w, stride=stride, padding=padding, groups=groups,
                               algorithm=algo)
                if ref is not None:
                    assert_close(y, ref, np.float64)
                dy = np.ones_like(y)
                gx, gw, gb = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding,
                                                 groups=groups)
                np.testing.assert_allclose(np.vdot(gx, x), y.sum(), rtol=1e-10)
                np.testing.assert_allclose(np.vdot(gw, w), y.sum(), rtol=1e-10)
    for pool in (ops.max_pool2d, ops.avg_pool2d):
        y = pool(x, 3, stride=stride, padding=1)
        assert y.shape[2:] == tuple(1 if s > 9 else (9 + 2 - 3) // s + 1
                                    for s in (stride if isinstance(stride, tuple) else (stride,) * 2))
    assert time.perf_counter() - t0 < 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss - rss0 < 200, f"peak RSS grew by {rss - rss0:.0f} MB"
