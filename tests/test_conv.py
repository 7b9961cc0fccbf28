"""conv1d / conv2d forward and backward against the numpy reference."""
import numpy as np
import pytest

import reference as R
from conftest import assert_close, check_numeric_grad

from cconv import ops

DTYPES = [np.float32, np.float64]

# (x shape, w shape, keyword arguments)
CONV2D_CASES = [
    ((2, 3, 7, 8), (4, 3, 3, 3), {}),
    ((1, 3, 7, 8), (4, 3, 3, 3), {}),
    ((0, 3, 7, 8), (4, 3, 3, 3), {"padding": 1}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"stride": 2}),
    ((2, 3, 9, 8), (4, 3, 3, 2), {"stride": (2, 3)}),
    ((2, 3, 9, 8), (4, 3, 2, 2), {"stride": 3}),  # stride > kernel: rows never read
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": 1}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": (1, 2)}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": ((0, 2), (1, 0))}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": ((2, 0), (0, 3))}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": "valid"}),
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": "same"}),
    ((2, 3, 7, 8), (4, 3, 4, 2), {"padding": "same"}),  # even kernel: extra pad bottom/right
    ((2, 3, 7, 8), (4, 3, 3, 3), {"padding": "same", "stride": 2}),
    ((2, 3, 9, 8), (4, 3, 4, 3), {"padding": "same", "stride": (2, 3)}),
    ((2, 3, 9, 10), (4, 3, 3, 3), {"padding": "same", "dilation": 2}),
    ((2, 3, 9, 10), (4, 3, 2, 3), {"padding": "same", "dilation": (3, 2), "stride": 2}),
    ((2, 3, 9, 10), (4, 3, 3, 3), {"dilation": 2}),
    ((2, 3, 9, 10), (4, 3, 3, 2), {"dilation": (2, 1), "padding": 2}),
    ((2, 3, 11, 10), (4, 3, 3, 3), {"dilation": 2, "stride": 2, "padding": 1}),
    ((2, 4, 7, 8), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 6, 7, 8), (3, 2, 3, 3), {"groups": 3}),
    ((2, 4, 7, 8), (4, 1, 3, 3), {"groups": 4, "padding": 1}),  # depthwise
    ((2, 4, 7, 8), (8, 1, 3, 3), {"groups": 4, "padding": 1}),  # depthwise, multiplier 2
    ((2, 4, 7, 8), (8, 1, 3, 3), {"groups": 4, "stride": 2, "dilation": 2}),
    ((2, 5, 7, 8), (3, 5, 1, 1), {}),  # 1x1
    ((2, 5, 7, 8), (3, 5, 1, 1), {"stride": 2}),
    ((2, 5, 7, 8), (3, 5, 1, 1), {"padding": 1}),
    ((2, 3, 5, 6), (4, 3, 5, 6), {}),  # kernel == input
    ((2, 3, 5, 6), (4, 3, 5, 6), {"padding": 1}),
    ((2, 3, 5, 6), (4, 3, 5, 6), {"padding": "same"}),
    ((2, 3, 1, 9), (4, 3, 1, 3), {}),  # one-row image
    ((2, 3, 9, 1), (4, 3, 3, 1), {"padding": (1, 0)}),  # one-column image
    ((2, 3, 4, 4), (4, 3, 1, 4), {"padding": ((0, 0), (3, 3))}),
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((1, 1, 1, 1), (1, 1, 3, 3), {"padding": 1}),  # a 3x3 kernel on a 1x1 image
]

# a few shapes big enough for the fast and parallel paths
CONV2D_BIG = [
    ((2, 16, 20, 20), (32, 16, 3, 3), {"padding": 1}),
    ((2, 16, 20, 20), (32, 16, 3, 3), {"padding": "same", "stride": 2}),
    ((2, 32, 16, 16), (32, 1, 3, 3), {"groups": 32, "padding": 1}),
    ((2, 16, 16, 16), (32, 1, 3, 3), {"groups": 16, "padding": 1, "stride": 2}),
    ((3, 8, 33, 17), (12, 8, 3, 3), {"stride": 2, "dilation": 2, "padding": 2}),
    ((2, 64, 14, 14), (32, 64, 1, 1), {}),
    ((1, 3, 32, 32), (16, 3, 5, 5), {"padding": 2}),
    ((2, 24, 12, 12), (24, 6, 3, 3), {"groups": 4, "padding": 1}),
]

CONV1D_CASES = [
    ((2, 3, 10), (4, 3, 3), {}),
    ((1, 3, 10), (4, 3, 3), {}),
    ((0, 3, 10), (4, 3, 3), {"padding": 1}),
    ((2, 3, 11), (4, 3, 3), {"stride": 2}),
    ((2, 3, 11), (4, 3, 2), {"stride": 3}),
    ((2, 3, 10), (4, 3, 3), {"padding": 2}),
    ((2, 3, 10), (4, 3, 3), {"padding": (0, 2)}),
    ((2, 3, 10), (4, 3, 3), {"padding": (3, 1)}),
    ((2, 3, 10), (4, 3, 3), {"padding": "valid"}),
    ((2, 3, 10), (4, 3, 3), {"padding": "same"}),
    ((2, 3, 10), (4, 3, 4), {"padding": "same"}),
    ((2, 3, 11), (4, 3, 4), {"padding": "same", "stride": 3}),
    ((2, 3, 12), (4, 3, 3), {"padding": "same", "dilation": 3}),
    ((2, 3, 12), (4, 3, 3), {"dilation": 2, "stride": 2, "padding": 1}),
    ((2, 4, 10), (6, 2, 3), {"groups": 2, "padding": 1}),
    ((2, 4, 10), (4, 1, 3), {"groups": 4, "padding": 1}),
    ((2, 4, 10), (8, 1, 5), {"groups": 4, "padding": 2}),
    ((2, 5, 10), (3, 5, 1), {}),
    ((2, 3, 7), (4, 3, 7), {}),
    ((2, 3, 7), (4, 3, 7), {"padding": "same"}),
    ((1, 1, 1), (1, 1, 1), {}),
    ((2, 16, 200), (32, 16, 5), {"padding": 2}),  # bigger
    ((2, 32, 128), (32, 1, 3), {"groups": 32, "padding": "same", "stride": 2}),
]


def _ids(cases):
    return [f"{x}-{w}-{kw}" for x, w, kw in cases]


def _operands(rng, xs, ws, dtype, bias=True):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    return x, w, b


# ---------------------------------------------------------------- forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV2D_CASES, ids=_ids(CONV2D_CASES))
def test_conv2d_forward(rng, nthreads, dtype, xs, ws, kw):
    x, w, b = _operands(rng, xs, ws, dtype)
    assert_close(ops.conv2d(x, w, b, **kw), R.conv2d(x, w, b, **kw), dtype)
    assert_close(ops.conv2d(x, w, **kw), R.conv2d(x, w, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV2D_BIG, ids=_ids(CONV2D_BIG))
def test_conv2d_forward_big(rng, nthreads, dtype, xs, ws, kw):
    x, w, b = _operands(rng, xs, ws, dtype)
    assert_close(ops.conv2d(x, w, b, **kw), R.conv2d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV1D_CASES, ids=_ids(CONV1D_CASES))
def test_conv1d_forward(rng, nthreads, dtype, xs, ws, kw):
    x, w, b = _operands(rng, xs, ws, dtype)
    assert_close(ops.conv1d(x, w, b, **kw), R.conv1d(x, w, b, **kw), dtype)
    assert_close(ops.conv1d(x, w, **kw), R.conv1d(x, w, **kw), dtype)


def test_conv2d_keyword_arguments(rng):
    x, w, b = _operands(rng, (2, 4, 8, 8), (6, 2, 3, 3), np.float64)
    got = ops.conv2d(x=x, w=w, bias=b, stride=2, padding=1, dilation=1, groups=2)
    assert_close(got, R.conv2d(x, w, b, 2, 1, 1, 2), np.float64)


def test_conv2d_identity_kernel(rng):
    """A centred delta kernel with 'same' padding returns the input exactly."""
    x = rng.standard_normal((2, 3, 6, 7))
    w = np.zeros((3, 3, 3, 3))
    for c in range(3):
        w[c, c, 1, 1] = 1.0
    np.testing.assert_array_equal(ops.conv2d(x, w, padding="same"), x)


def test_conv2d_same_output_size(rng):
    for h, w_, s, k, d in [(7, 8, 2, 3, 1), (9, 10, 3, 4, 1), (5, 5, 2, 2, 2), (1, 6, 4, 3, 1)]:
        x = rng.standard_normal((1, 2, h, w_))
        y = ops.conv2d(x, rng.standard_normal((3, 2, k, k)), stride=s, dilation=d,
                       padding="same")
        assert y.shape == (1, 3, -(-h // s), -(-w_ // s))


def test_conv2d_bias_only(rng):
    """A zero kernel outputs exactly the bias everywhere."""
    x = rng.standard_normal((2, 3, 5, 5))
    b = np.array([1.5, -2.0])
    y = ops.conv2d(x, np.zeros((2, 3, 3, 3)), b, padding=1)
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))


def test_conv2d_dtype_promotion(rng):
    x32 = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w64 = rng.standard_normal((3, 2, 3, 3))
    y = ops.conv2d(x32, w64)
    assert y.dtype == np.float64
    assert_close(y, R.conv2d(x32, w64), np.float64)
    y = ops.conv2d(x32, w64.astype(np.float32), rng.standard_normal(3))
    assert y.dtype == np.float64


def test_conv2d_batch_zero_shape(rng):
    y = ops.conv2d(np.zeros((0, 3, 7, 8), np.float32), np.ones((4, 3, 3, 3), np.float32),
                   stride=2, padding=1)
    assert y.shape == (0, 4, 4, 4) and y.dtype == np.float32


# ---------------------------------------------------------------- backward

# stride 1, >= 4 input channels per group, short reductions: the input
# gradient runs as a direct convolution of grad_out (flipped kernel, padding
# k - 1 - pad, asymmetric pads, groups, odd sizes)
BACKWARD_DIRECT_CASES = [
    ((64, 6, 12, 12), (16, 6, 5, 5), {}),
    ((2, 8, 9, 11), (6, 4, 3, 3), {"groups": 2, "padding": ((2, 0), (1, 2))}),
    ((3, 5, 7, 16), (7, 5, 3, 5), {"padding": (1, 2)}),
    ((1, 4, 1, 9), (3, 4, 1, 3), {"padding": "same"}),
]


# 3x3 stride 1, C_out * 9 > 450 (else the direct kernel): the input gradient
# runs as a Winograd convolution of grad_out (F(4x4, 3x3) from 32 tiles of
# 4x4, else F(2x2, 3x3))
BACKWARD_WINOGRAD_CASES = [
    ((2, 16, 20, 20), (64, 16, 3, 3), {"padding": 1}),
    ((1, 32, 10, 14), (64, 32, 3, 3), {"padding": 1}),
    ((1, 16, 9, 17), (56, 16, 3, 3), {"padding": ((0, 2), (1, 1))}),
]
# layers whose forward pass runs Winograd F(4x4, 3x3) (C_in * 9 > 320) on at
# least 128 tiles: the weight gradient does too, by the adjoint transforms
# (partial tiles at the bottom/right edges, asymmetric padding)
WEIGHT_GRAD_WINOGRAD_CASES = [
    ((2, 40, 32, 32), (24, 40, 3, 3), {"padding": 1}, "winograd_f4"),
    ((3, 40, 27, 30), (20, 40, 3, 3), {"padding": 1}, "winograd_f4"),
    ((2, 48, 31, 33), (16, 48, 3, 3), {"padding": ((0, 2), (1, 1))}, "winograd_f4"),
]


@pytest.mark.parametrize("xs,ws,kw,algorithm", [
    (*BACKWARD_WINOGRAD_CASES[0], "winograd_f4"), (*BACKWARD_WINOGRAD_CASES[1], "winograd"),
    (*BACKWARD_WINOGRAD_CASES[2], "winograd")])
def test_backward_winograd_cases_reach_winograd(xs, ws, kw, algorithm):
    """The input gradient's convolution (C_out -> C_in channels over the output,
    padding k - 1 - pad) is one the forward pass runs with Winograd."""
    pads = ops._conv_setup("conv2d", np.zeros(xs), np.zeros(ws), None, 1, kw["padding"], 1, 1,
                           2)[3][3]
    out = R.conv2d(np.zeros(xs), np.zeros(ws), **kw).shape
    flipped = tuple(2 - q for q in pads)
    assert ops.conv2d_algorithms(out, (ws[1], ws[0], 3, 3), (1, 1), flipped, (1, 1),
                                 1)[0] == algorithm


def test_backward_winograd_recomputes_for_new_weights(rng):
    """The flipped weights live in one per-thread buffer and their Winograd
    transform is cached by content: new weights of the same shape recompute."""
    x = rng.standard_normal((2, 16, 20, 20))
    gy = rng.standard_normal((2, 64, 20, 20))
    for _ in range(3):
        w = rng.standard_normal((64, 16, 3, 3))
        gx, _, _ = ops.conv2d_backward(gy, x, w, padding=1)
        assert_close(gx, R.conv2d_backward(gy, x, w, padding=1)[0], np.float64)


@pytest.mark.parametrize("xs,ws,kw,algorithm", WEIGHT_GRAD_WINOGRAD_CASES)
def test_weight_gradient_cases_reach_winograd(xs, ws, kw, algorithm):
    """Their forward pass runs F(4x4, 3x3) on >= 128 tiles (the weight
    gradient's own threshold); test_conv2d_backward checks the values."""
    plan = ops._conv_setup("conv2d", np.zeros(xs), np.zeros(ws), None, 1, kw["padding"], 1, 1,
                           2)[3]
    assert ops.conv2d_algorithms(*plan[:6])[0] == algorithm
    out = R.conv2d(np.zeros(xs), np.zeros(ws), **kw).shape
    assert xs[0] * -(-out[2] // 4) * -(-out[3] // 4) >= 128      # 4x4 tiles


def test_winograd_weight_gradient_accuracy(rng):
    """F(4x4, 3x3)'s adjoint transforms round more than a GEMM over im2col:
    bound its float32 error on a deep layer against a float64 sum (measured:
    3.5e-6 of the gradient's scale)."""
    x = rng.standard_normal((4, 64, 24, 24)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 24, 24)).astype(np.float32)
    exact = R.conv2d_backward(gy.astype(np.float64), x.astype(np.float64),
                              w.astype(np.float64), padding=1)[1]
    err = np.abs(ops.conv2d_backward(gy, x, w, padding=1)[1] - exact).max()
    assert err <= 2e-5 * np.abs(exact).max(), err


BACKWARD_CASES = (CONV2D_CASES + BACKWARD_DIRECT_CASES + BACKWARD_WINOGRAD_CASES
                  + [case[:3] for case in WEIGHT_GRAD_WINOGRAD_CASES])


@pytest.mark.parametrize("algorithm", ["auto", "im2col_gemm"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", BACKWARD_CASES, ids=_ids(BACKWARD_CASES))
def test_conv2d_backward(rng, nthreads, dtype, xs, ws, kw, algorithm):
    x, w, _ = _operands(rng, xs, ws, dtype, bias=False)
    gy = rng.standard_normal(R.conv2d(x, w, **kw).shape).astype(dtype)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw, algorithm=algorithm)
    rx, rw, rb = R.conv2d_backward(gy, x, w, **kw)
    assert_close(gx, rx, dtype)
    assert_close(gw, rw, dtype)
    assert_close(gb, rb, dtype)


def test_conv2d_backward_im2col_gemm_rounds_less_than_winograd(rng):
    """algorithm="im2col_gemm" keeps both gradients of a layer that runs the
    Winograd backward (input gradient by F(4x4), weight gradient by its
    adjoint) on im2col + GEMM's rounding."""
    x = rng.standard_normal((4, 64, 24, 24)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 32, 24, 24)).astype(np.float32)
    exact = R.conv2d_backward(gy.astype(np.float64), x.astype(np.float64),
                              w.astype(np.float64), padding=1)
    auto = ops.conv2d_backward(gy, x, w, padding=1)
    gemm = ops.conv2d_backward(gy, x, w, padding=1, algorithm="im2col_gemm")
    for got_auto, got_gemm, ref in zip(auto[:2], gemm[:2], exact[:2]):
        scale = np.abs(ref).max()
        err_auto, err_gemm = np.abs(got_auto - ref).max(), np.abs(got_gemm - ref).max()
        assert err_gemm <= 2e-6 * scale, err_gemm
        assert err_gemm < err_auto, (err_gemm, err_auto)


@pytest.mark.parametrize("bad", ["winograd", "direct", None, 1])
def test_conv2d_backward_bad_algorithm_names_it(rng, bad):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"algorithm must be one of \['auto', 'im2col_gemm'\]"):
        ops.conv2d_backward(np.ones((1, 3, 3, 3)), x, w, algorithm=bad)
    with pytest.raises(ValueError, match="algorithm"):
        ops.conv1d_backward(np.ones((1, 3, 3)), x[:, :, 0], w[:, :, 0], algorithm=bad)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV2D_BIG, ids=_ids(CONV2D_BIG))
def test_conv2d_backward_big(rng, nthreads, dtype, xs, ws, kw):
    x, w, _ = _operands(rng, xs, ws, dtype, bias=False)
    gy = rng.standard_normal(R.conv2d(x, w, **kw).shape).astype(dtype)
    gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw)
    rx, rw, rb = R.conv2d_backward(gy, x, w, **kw)
    assert_close(gx, rx, dtype)
    assert_close(gw, rw, dtype)
    assert_close(gb, rb, dtype)


@pytest.mark.parametrize("algorithm", ["auto", "im2col_gemm"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV1D_CASES, ids=_ids(CONV1D_CASES))
def test_conv1d_backward(rng, nthreads, dtype, xs, ws, kw, algorithm):
    x, w, _ = _operands(rng, xs, ws, dtype, bias=False)
    gy = rng.standard_normal(R.conv1d(x, w, **kw).shape).astype(dtype)
    gx, gw, gb = ops.conv1d_backward(gy, x, w, **kw, algorithm=algorithm)
    rx, rw, rb = R.conv1d_backward(gy, x, w, **kw)
    assert_close(gx, rx, dtype)
    assert_close(gw, rw, dtype)
    assert_close(gb, rb, dtype)


def test_conv2d_backward_batch_zero():
    x = np.zeros((0, 3, 7, 8))
    w = np.ones((4, 3, 3, 3))
    gx, gw, gb = ops.conv2d_backward(np.zeros((0, 4, 7, 8)), x, w, padding=1)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(4))


def test_conv2d_backward_uncovered_inputs_get_zero(rng):
    """With stride 3 and a 2x2 kernel every third row/column is never read."""
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 2, 2))
    gy = rng.standard_normal((1, 3, 3, 3))
    gx, _, _ = ops.conv2d_backward(gy, x, w, stride=3)
    assert np.all(gx[:, :, 2::3, :] == 0) and np.all(gx[:, :, :, 2::3] == 0)
    assert np.all(gx[:, :, 0::3, 0::3] != 0)


# ---------------------------------------------------------------- finite differences

FD_CONV2D = [
    ((2, 2, 5, 6), (3, 2, 3, 3), {}),
    ((2, 2, 6, 5), (3, 2, 3, 2), {"stride": (2, 1), "padding": ((1, 0), (2, 1))}),
    ((1, 4, 7, 7), (4, 2, 3, 3), {"groups": 2, "dilation": 2, "padding": "same"}),
    ((1, 3, 6, 6), (6, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    ((2, 2, 5, 5), (2, 2, 1, 1), {"stride": 2}),
]

FD_CONV1D = [
    ((2, 2, 9), (3, 2, 3), {}),
    ((2, 2, 9), (3, 2, 4), {"stride": 2, "padding": (2, 1)}),
    ((1, 4, 10), (4, 2, 3), {"groups": 2, "dilation": 2, "padding": "same"}),
]


def _fd_check(fwd, bwd, rng, xs, ws, kw):
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    g = rng.standard_normal(fwd(x, w, b, **kw).shape)

    def loss():
        return float(np.sum(fwd(x, w, b, **kw) * g))

    gx, gw, gb = bwd(g, x, w, **kw)
    check_numeric_grad(loss, x, gx)
    check_numeric_grad(loss, w, gw)
    check_numeric_grad(loss, b, gb)


@pytest.mark.parametrize("xs,ws,kw", FD_CONV2D, ids=_ids(FD_CONV2D))
def test_conv2d_numeric_gradient(rng, xs, ws, kw):
    _fd_check(ops.conv2d, ops.conv2d_backward, rng, xs, ws, kw)


@pytest.mark.parametrize("xs,ws,kw", FD_CONV1D, ids=_ids(FD_CONV1D))
def test_conv1d_numeric_gradient(rng, xs, ws, kw):
    _fd_check(ops.conv1d, ops.conv1d_backward, rng, xs, ws, kw)


@pytest.mark.parametrize("xs,ws,kw", FD_CONV2D[:2], ids=_ids(FD_CONV2D[:2]))
def test_reference_conv2d_gradient_is_consistent(rng, xs, ws, kw):
    """The reference's own backward agrees with its forward (guards the spec)."""
    _fd_check(R.conv2d, R.conv2d_backward, rng, xs, ws, kw)
