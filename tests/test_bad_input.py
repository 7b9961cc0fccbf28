"""Validation (exception type and a message naming the argument), unusual memory
layouts, dtype conversion and NaN/inf propagation."""
import textwrap

import numpy as np
import pytest

import reference as R
from conftest import assert_close, run_python

from cconv import ops

X = r"\bx\b"
W = r"(\bw\b|weight)"


def x4(*shape):
    return np.ones(shape if shape else (2, 3, 8, 8))


W33 = np.ones((4, 3, 3, 3))


# ---------------------------------------------------------------- conv: shapes

CONV_BAD = {
    "x_ndim_3": (ops.conv2d, (np.ones((3, 8, 8)), W33), {}, X),
    "x_ndim_5": (ops.conv2d, (np.ones((1, 2, 3, 8, 8)), W33), {}, X),
    "w_ndim_3": (ops.conv2d, (x4(), np.ones((4, 3, 3))), {}, W),
    "conv1d_x_ndim_4": (ops.conv1d, (x4(), np.ones((4, 3, 3))), {}, X),
    "conv1d_w_ndim_4": (ops.conv1d, (np.ones((2, 3, 8)), W33), {}, W),
    "channel_mismatch": (ops.conv2d, (x4(), np.ones((4, 2, 3, 3))), {}, r"(\bx\b|\bw\b|channel)"),
    "channel_mismatch_groups": (ops.conv2d, (x4(2, 4, 8, 8), np.ones((4, 4, 3, 3))),
                                {"groups": 2}, r"(\bx\b|\bw\b|channel|groups)"),
    "conv1d_channel_mismatch": (ops.conv1d, (np.ones((2, 3, 8)), np.ones((4, 2, 3))), {},
                                r"(\bx\b|\bw\b|channel)"),
    "groups_not_dividing_cin": (ops.conv2d, (x4(2, 3, 8, 8), np.ones((4, 1, 3, 3))),
                                {"groups": 2}, "groups"),
    "groups_not_dividing_cout": (ops.conv2d, (x4(2, 4, 8, 8), np.ones((3, 2, 3, 3))),
                                 {"groups": 2}, "groups"),
    "groups_zero": (ops.conv2d, (x4(), W33), {"groups": 0}, "groups"),
    "groups_negative": (ops.conv2d, (x4(), W33), {"groups": -1}, "groups"),
    "kernel_larger_than_input": (ops.conv2d, (x4(1, 3, 4, 4), np.ones((4, 3, 5, 5))), {},
                                 r"(\bx\b|\bw\b|kernel|input)"),
    "kernel_larger_one_axis": (ops.conv2d, (x4(1, 3, 4, 9), np.ones((4, 3, 5, 3))), {},
                               r"(\bx\b|\bw\b|kernel|input)"),
    "dilated_kernel_larger": (ops.conv2d, (x4(1, 3, 5, 5), W33), {"dilation": 3},
                              r"(\bx\b|\bw\b|kernel|input|dilation)"),
    "conv1d_kernel_larger": (ops.conv1d, (np.ones((1, 3, 4)), np.ones((4, 3, 5))), {},
                             r"(\bx\b|\bw\b|kernel|input)"),
    "stride_zero": (ops.conv2d, (x4(), W33), {"stride": 0}, "stride"),
    "stride_negative": (ops.conv2d, (x4(), W33), {"stride": -1}, "stride"),
    "stride_pair_zero": (ops.conv2d, (x4(), W33), {"stride": (1, 0)}, "stride"),
    "conv1d_stride_zero": (ops.conv1d, (np.ones((1, 3, 8)), np.ones((4, 3, 3))),
                           {"stride": 0}, "stride"),
    "dilation_zero": (ops.conv2d, (x4(), W33), {"dilation": 0}, "dilation"),
    "dilation_pair_negative": (ops.conv2d, (x4(), W33), {"dilation": (-1, 1)}, "dilation"),
    "conv1d_dilation_zero": (ops.conv1d, (np.ones((1, 3, 8)), np.ones((4, 3, 3))),
                             {"dilation": 0}, "dilation"),
    "padding_negative": (ops.conv2d, (x4(), W33), {"padding": -1}, "padding"),
    "padding_pair_negative": (ops.conv2d, (x4(), W33), {"padding": (0, -1)}, "padding"),
    "padding_asym_negative": (ops.conv2d, (x4(), W33), {"padding": ((0, 0), (-1, 2))},
                              "padding"),
    "conv1d_padding_negative": (ops.conv1d, (np.ones((1, 3, 8)), np.ones((4, 3, 3))),
                                {"padding": (1, -1)}, "padding"),
    "padding_unknown_string": (ops.conv2d, (x4(), W33), {"padding": "full"}, "padding"),
    "padding_unknown_string_1d": (ops.conv1d, (np.ones((1, 3, 8)), np.ones((4, 3, 3))),
                                  {"padding": "circular"}, "padding"),
    "padding_wrong_length": (ops.conv2d, (x4(), W33), {"padding": (1, 1, 1)}, "padding"),
    "zero_channels": (ops.conv2d, (x4(2, 0, 8, 8), np.ones((4, 0, 3, 3))), {},
                      r"(\bx\b|\bw\b)"),
    "zero_height": (ops.conv2d, (x4(2, 3, 0, 8), W33), {"padding": 1}, X),
    "zero_width_1d": (ops.conv1d, (np.ones((2, 3, 0)), np.ones((4, 3, 3))), {"padding": 1}, X),
    "zero_out_channels": (ops.conv2d, (x4(), np.ones((0, 3, 3, 3))), {}, W),
    "zero_kernel_height": (ops.conv2d, (x4(), np.ones((4, 3, 0, 3))), {}, W),
    "bias_wrong_length": (ops.conv2d, (x4(), W33, np.ones(5)), {}, "bias"),
    "bias_2d": (ops.conv2d, (x4(), W33, np.ones((1, 4))), {}, "bias"),
    "conv1d_bias_wrong_length": (ops.conv1d, (np.ones((1, 3, 8)), np.ones((4, 3, 3)),
                                              np.ones(3)), {}, "bias"),
}


@pytest.mark.parametrize("case", list(CONV_BAD), ids=list(CONV_BAD))
def test_conv_bad_input(case):
    f, args, kwargs, match = CONV_BAD[case]
    with pytest.raises(ValueError, match=match):
        f(*args, **kwargs)


def test_conv_stride_float_is_rejected():
    with pytest.raises((TypeError, ValueError), match="stride"):
        ops.conv2d(x4(), W33, stride=1.5)


BACKWARD_BAD = {
    "grad_out_wrong_shape": (ops.conv2d_backward, (np.ones((2, 4, 5, 5)), x4(), W33), {},
                             "grad_out"),
    "grad_out_wrong_channels": (ops.conv2d_backward, (np.ones((2, 3, 6, 6)), x4(), W33), {},
                                "grad_out"),
    "conv1d_grad_out_wrong_shape": (ops.conv1d_backward,
                                    (np.ones((2, 4, 7)), np.ones((2, 3, 8)), np.ones((4, 3, 3))),
                                    {}, "grad_out"),
    "backward_stride_zero": (ops.conv2d_backward, (np.ones((2, 4, 6, 6)), x4(), W33),
                             {"stride": 0}, "stride"),
    "backward_groups": (ops.conv2d_backward, (np.ones((2, 4, 6, 6)), x4(), W33),
                        {"groups": 2}, r"(groups|\bx\b|\bw\b|channel)"),
    "max_pool_grad_out_wrong_shape": (ops.max_pool2d_backward, (np.ones((2, 3, 3, 3)), x4(), 2),
                                      {}, "grad_out"),
    "avg_pool_grad_out_wrong_shape": (ops.avg_pool2d_backward,
                                      (np.ones((2, 3, 3, 3)), (2, 3, 8, 8), 2), {},
                                      r"(grad_out|input_shape)"),
    "avg_pool1d_grad_out_wrong_shape": (ops.avg_pool1d_backward,
                                        (np.ones((2, 3, 3)), (2, 3, 8), 2), {},
                                        r"(grad_out|input_shape)"),
    "global_pool_grad_out_wrong_shape": (ops.global_avg_pool2d_backward,
                                         (np.ones((2, 4, 1, 1)), (2, 3, 8, 8)), {},
                                         r"(grad_out|input_shape)"),
}


@pytest.mark.parametrize("case", list(BACKWARD_BAD), ids=list(BACKWARD_BAD))
def test_backward_bad_input(case):
    f, args, kwargs, match = BACKWARD_BAD[case]
    with pytest.raises(ValueError, match=match):
        f(*args, **kwargs)


# ---------------------------------------------------------------- batch 0 is fine

def test_batch_zero_is_allowed_everywhere():
    assert ops.conv2d(np.ones((0, 3, 8, 8)), W33, padding="same").shape == (0, 4, 8, 8)
    assert ops.conv1d(np.ones((0, 3, 8)), np.ones((4, 3, 3))).shape == (0, 4, 6)
    assert ops.max_pool2d(np.ones((0, 3, 8, 8)), 2).shape == (0, 3, 4, 4)
    y, idx = ops.max_pool2d(np.ones((0, 3, 8, 8)), 2, return_indices=True)
    assert idx.shape == (0, 3, 4, 4)
    assert ops.avg_pool2d(np.ones((0, 3, 8, 8)), 3, 1, 1).shape == (0, 3, 8, 8)
    assert ops.max_pool1d(np.ones((0, 3, 8)), 2).shape == (0, 3, 4)
    assert ops.avg_pool1d(np.ones((0, 3, 8)), 2).shape == (0, 3, 4)
    assert ops.global_avg_pool2d(np.ones((0, 3, 8, 8))).shape == (0, 3, 1, 1)
    assert ops.global_avg_pool1d(np.ones((0, 3, 8))).shape == (0, 3, 1)
    assert ops.max_pool2d_backward(np.ones((0, 3, 4, 4)), np.ones((0, 3, 8, 8)),
                                   2).shape == (0, 3, 8, 8)
    assert ops.avg_pool2d_backward(np.ones((0, 3, 4, 4)), (0, 3, 8, 8), 2).shape == (0, 3, 8, 8)


# ---------------------------------------------------------------- pools

P = np.ones((2, 3, 8, 8))
P1 = np.ones((2, 3, 8))

POOL_BAD = {
    "max_x_ndim": (ops.max_pool2d, (np.ones((3, 8, 8)), 2), {}, X),
    "avg_x_ndim": (ops.avg_pool2d, (np.ones((3, 8, 8)), 2), {}, X),
    "max1d_x_ndim": (ops.max_pool1d, (P, 2), {}, X),
    "avg1d_x_ndim": (ops.avg_pool1d, (P, 2), {}, X),
    "global_x_ndim": (ops.global_avg_pool2d, (P1,), {}, X),
    "global1d_x_ndim": (ops.global_avg_pool1d, (P,), {}, X),
    "max_kernel_zero": (ops.max_pool2d, (P, 0), {}, "kernel_size"),
    "max_kernel_pair_zero": (ops.max_pool2d, (P, (2, 0)), {}, "kernel_size"),
    "max_kernel_negative": (ops.max_pool2d, (P, -2), {}, "kernel_size"),
    "avg_kernel_zero": (ops.avg_pool2d, (P, 0), {}, "kernel_size"),
    "max1d_kernel_zero": (ops.max_pool1d, (P1, 0), {}, "kernel_size"),
    "avg1d_kernel_zero": (ops.avg_pool1d, (P1, 0), {}, "kernel_size"),
    "max_stride_zero": (ops.max_pool2d, (P, 2), {"stride": 0}, "stride"),
    "avg_stride_pair_zero": (ops.avg_pool2d, (P, 2), {"stride": (0, 1)}, "stride"),
    "max1d_stride_negative": (ops.max_pool1d, (P1, 2), {"stride": -1}, "stride"),
    "max_padding_negative": (ops.max_pool2d, (P, 2), {"padding": -1}, "padding"),
    "avg_padding_negative": (ops.avg_pool2d, (P, 2), {"padding": (0, -1)}, "padding"),
    "max_padding_over_half_kernel": (ops.max_pool2d, (P, 3), {"padding": 2}, "padding"),
    "max_padding_over_half_kernel_one_axis": (ops.max_pool2d, (P, (2, 4)),
                                              {"padding": (2, 1)}, "padding"),
    "avg_padding_over_half_kernel": (ops.avg_pool2d, (P, 2), {"padding": 2}, "padding"),
    "max1d_padding_over_half_kernel": (ops.max_pool1d, (P1, 3), {"padding": 2}, "padding"),
    "avg1d_padding_over_half_kernel": (ops.avg_pool1d, (P1, 2), {"padding": 2}, "padding"),
    "max_dilation_zero": (ops.max_pool2d, (P, 2), {"dilation": 0}, "dilation"),
    "max1d_dilation_zero": (ops.max_pool1d, (P1, 2), {"dilation": 0}, "dilation"),
    "max_kernel_larger_than_input": (ops.max_pool2d, (np.ones((1, 1, 3, 3)), 4), {},
                                     r"(kernel_size|\bx\b|input)"),
    "avg_kernel_larger_than_input": (ops.avg_pool2d, (np.ones((1, 1, 3, 5)), (4, 2)), {},
                                     r"(kernel_size|\bx\b|input)"),
    "max_dilated_kernel_larger": (ops.max_pool2d, (np.ones((1, 1, 4, 4)), 2),
                                  {"dilation": 4}, r"(kernel_size|\bx\b|input|dilation)"),
    "max1d_kernel_larger_than_input": (ops.max_pool1d, (np.ones((1, 1, 3)), 4), {},
                                       r"(kernel_size|\bx\b|input)"),
    "max_zero_channels": (ops.max_pool2d, (np.ones((2, 0, 8, 8)), 2), {}, X),
    "avg_zero_width": (ops.avg_pool2d, (np.ones((2, 3, 8, 0)), 1), {}, X),
    "global_zero_height": (ops.global_avg_pool2d, (np.ones((2, 3, 0, 8)),), {}, X),
    "global1d_zero_length": (ops.global_avg_pool1d, (np.ones((2, 3, 0)),), {}, X),
}


@pytest.mark.parametrize("case", list(POOL_BAD), ids=list(POOL_BAD))
def test_pool_bad_input(case):
    f, args, kwargs, match = POOL_BAD[case]
    with pytest.raises(ValueError, match=match):
        f(*args, **kwargs)


# ---------------------------------------------------------------- gemm

GEMM_BAD = {
    "a_ndim": ((np.ones(3), np.ones((3, 2))), {}, r"\ba\b"),
    "b_ndim": ((np.ones((2, 3)), np.ones((3, 2, 1))), {}, r"\bb\b"),
    "inner_mismatch": ((np.ones((2, 3)), np.ones((4, 2))), {}, r"(\ba\b|\bb\b)"),
    "inner_mismatch_trans": ((np.ones((2, 3)), np.ones((3, 2))), {"trans_a": True},
                             r"(\ba\b|\bb\b)"),
    "c_wrong_shape": ((np.ones((2, 3)), np.ones((3, 4))), {"beta": 1.0, "c": np.ones((4, 2))},
                      r"\bc\b"),
}


@pytest.mark.parametrize("case", list(GEMM_BAD), ids=list(GEMM_BAD))
def test_gemm_bad_input(case):
    args, kwargs, match = GEMM_BAD[case]
    with pytest.raises(ValueError, match=match):
        ops.gemm(*args, **kwargs)


# ---------------------------------------------------------------- types

BAD_DTYPES = {
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
}


@pytest.mark.parametrize("kind", list(BAD_DTYPES))
def test_conv2d_bad_dtype_names_argument(kind):
    bad = BAD_DTYPES[kind]
    x, w, b = x4(), W33, np.ones(4)
    with pytest.raises(TypeError, match=X):
        ops.conv2d(bad(x), w, b)
    with pytest.raises(TypeError, match=W):
        ops.conv2d(x, bad(w), b)
    with pytest.raises(TypeError, match="bias"):
        ops.conv2d(x, w, bad(b))


@pytest.mark.parametrize("kind", list(BAD_DTYPES))
def test_other_ops_bad_dtype(kind):
    bad = BAD_DTYPES[kind]
    with pytest.raises(TypeError, match=X):
        ops.conv1d(bad(P1), np.ones((4, 3, 3)))
    with pytest.raises(TypeError, match=X):
        ops.max_pool2d(bad(P), 2)
    with pytest.raises(TypeError, match=X):
        ops.avg_pool1d(bad(P1), 2)
    with pytest.raises(TypeError, match=X):
        ops.global_avg_pool2d(bad(P))
    with pytest.raises(TypeError, match="grad_out"):
        ops.conv2d_backward(bad(np.ones((2, 4, 6, 6))), x4(), W33)
    with pytest.raises(TypeError, match=r"\bb\b"):
        ops.gemm(np.ones((2, 2)), bad(np.ones((2, 2))))


def test_python_lists_are_accepted():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    got = ops.conv2d(x.tolist(), [[[[1.0, 0.0], [0.0, -1.0]]]])
    assert got.dtype == np.float64
    assert_close(got, R.conv2d(x, [[[[1.0, 0.0], [0.0, -1.0]]]]), np.float64)


# ---------------------------------------------------------------- overflow / absurd sizes

def _run_expect_error(snippet):
    """Run snippet in a fresh interpreter: it must end with ValueError/MemoryError, fast."""
    code = textwrap.dedent("""
        import numpy as np
        from cconv import ops
        try:
        {body}
        except (ValueError, MemoryError) as e:
            print("RAISED", type(e).__name__, e)
        else:
            print("NO ERROR")
    """).format(body=textwrap.indent(textwrap.dedent(snippet), "    "))
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, f"crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert "RAISED" in proc.stdout, proc.stdout + proc.stderr[-2000:]


HUGE = {
    "conv2d_broadcast_2e40": """
        x = np.broadcast_to(np.float32(1), (1, 1, 2**40, 2**40))
        ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32))
    """,
    "conv2d_broadcast_2e40_3x3": """
        x = np.broadcast_to(np.float32(1), (1, 1, 2**40, 2**40))
        ops.conv2d(x, np.ones((1, 1, 3, 3), np.float32), stride=2**20)
    """,
    "conv2d_padding_2e62": """
        ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=2**62)
    """,
    "conv2d_dilation_2e62": """
        ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), dilation=2**62)
    """,
    "conv1d_padding_2e62": """
        ops.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 3)), padding=(2**62, 2**62))
    """,
    "max_pool2d_broadcast_2e40": """
        x = np.broadcast_to(np.float32(1), (1, 1, 2**40, 2**40))
        ops.max_pool2d(x, 2)
    """,
    "avg_pool2d_broadcast_2e40": """
        x = np.broadcast_to(np.float32(1), (1, 1, 2**40, 2**40))
        ops.avg_pool2d(x, 2)
    """,
    "global_avg_pool2d_broadcast_2e40": """
        x = np.broadcast_to(np.float32(1), (1, 1, 2**40, 2**40))
        ops.global_avg_pool2d(x)
    """,
    "max_pool2d_kernel_2e62": """
        ops.max_pool2d(np.ones((1, 1, 4, 4)), 2**62)
    """,
    "max_pool2d_dilation_2e62": """
        ops.max_pool2d(np.ones((1, 1, 4, 4)), 3, dilation=2**62)
    """,
    "avg_pool2d_backward_huge_shape": """
        ops.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2**40, 2**40), 2**40)
    """,
    "gemm_broadcast": """
        a = np.broadcast_to(np.float32(1), (2**31, 2**31))
        ops.gemm(a, a)
    """,
}


@pytest.mark.parametrize("case", list(HUGE), ids=list(HUGE))
def test_absurd_sizes_raise_quickly(case):
    _run_expect_error(HUGE[case])


def test_huge_dilation_same_padding_raises_or_is_exact():
    """dilation 2**62 with "same": the padding (2**63) does not fit int64. Either refuse
    it, or get it right: every tap but the centre lands in the padding."""
    code = textwrap.dedent("""
        import numpy as np
        from cconv import ops
        x = np.arange(16.0).reshape(1, 1, 4, 4)
        w = np.arange(9.0).reshape(1, 1, 3, 3)
        try:
            y = ops.conv2d(x, w, dilation=2**62, padding="same")
        except (ValueError, MemoryError) as e:
            print("RAISED", e)
        else:
            print("CORRECT" if np.array_equal(y, x * 4.0) else "WRONG %r" % (y,))
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RAISED" in proc.stdout or "CORRECT" in proc.stdout, proc.stdout


# ---------------------------------------------------------------- memory layouts

def _layouts(a):
    """(name, array equal in value to a, but laid out differently)."""
    big = np.zeros((a.shape[0], a.shape[1] * 2) + a.shape[2:], a.dtype)
    big[:, ::2] = a
    rev = np.ascontiguousarray(a[..., ::-1])[..., ::-1]  # negative last-axis stride
    return [
        ("strided", big[:, ::2]),
        ("negative", rev),
        ("fortran", np.asfortranarray(a)),
        ("bigendian", a.astype(a.dtype.newbyteorder(">"))),
        ("readonly", _readonly(a)),
    ]


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def _assert_same(got, ref):
    assert got.shape == ref.shape
    assert got.dtype.kind == "f" and got.dtype.itemsize == ref.dtype.itemsize
    tol = 1e-6 if ref.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_conv2d(rng, dtype):
    x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(stride=2, padding=1, groups=2)
    ref = ops.conv2d(x, w, b, **kw)
    gy = rng.standard_normal(ref.shape).astype(dtype)
    ref_g = ops.conv2d_backward(gy, x, w, **kw)
    for (name, xl), (_, wl), (_, gl) in zip(_layouts(x), _layouts(w), _layouts(gy)):
        _assert_same(ops.conv2d(xl, w, b, **kw), ref)
        _assert_same(ops.conv2d(x, wl, b[::-1][::-1], **kw), ref)
        for got, r in zip(ops.conv2d_backward(gl, xl, wl, **kw), ref_g):
            _assert_same(got, r)
    # a transposed view (N,C,W,H -> N,C,H,W)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    _assert_same(ops.conv2d(xt, w, b, **kw), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_conv1d(rng, dtype):
    x = rng.standard_normal((2, 4, 11)).astype(dtype)
    w = rng.standard_normal((6, 4, 3)).astype(dtype)
    ref = ops.conv1d(x, w, padding="same")
    for name, xl in _layouts(x):
        _assert_same(ops.conv1d(xl, w, padding="same"), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_pools(rng, dtype):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    kw = dict(kernel_size=3, stride=2, padding=1)
    ref_max, ref_idx = ops.max_pool2d(x, return_indices=True, **kw)
    ref_avg = ops.avg_pool2d(x, **kw)
    ref_gap = ops.global_avg_pool2d(x)
    gy = rng.standard_normal(ref_max.shape).astype(dtype)
    ref_gmax = ops.max_pool2d_backward(gy, x, **kw)
    ref_gavg = ops.avg_pool2d_backward(gy, x.shape, **kw)
    for (name, xl), (_, gl) in zip(_layouts(x), _layouts(gy)):
        y, idx = ops.max_pool2d(xl, return_indices=True, **kw)
        _assert_same(y, ref_max)
        np.testing.assert_array_equal(idx, ref_idx)
        _assert_same(ops.avg_pool2d(xl, **kw), ref_avg)
        _assert_same(ops.global_avg_pool2d(xl), ref_gap)
        _assert_same(ops.max_pool2d_backward(gl, xl, **kw), ref_gmax)
        _assert_same(ops.max_pool2d_backward(gl, x, indices=idx[:, ::-1][:, ::-1], **kw),
                     ref_gmax)
        _assert_same(ops.avg_pool2d_backward(gl, x.shape, **kw), ref_gavg)
    x1 = x[:, :, 0, :]
    for name, xl in _layouts(x1):
        _assert_same(ops.max_pool1d(xl, 3, 2, 1), ops.max_pool1d(x1, 3, 2, 1))
        _assert_same(ops.avg_pool1d(xl, 3, 2, 1), ops.avg_pool1d(x1, 3, 2, 1))


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal((2, 4, 6, 6))
    xc, wc, gc = x.copy(), w.copy(), gy.copy()
    ops.conv2d(x, w, padding=1)
    ops.conv2d_backward(gy, x, w, padding=1)
    ops.max_pool2d_backward(gy[:, :3, :3, :3], x, 2)
    ops.avg_pool2d_backward(gy[:, :3, :3, :3], x.shape, 2)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(w, wc)
    np.testing.assert_array_equal(gy, gc)


# ---------------------------------------------------------------- dtype conversion

def test_integer_and_bool_inputs_become_float64(rng):
    xi = rng.integers(-5, 5, (2, 3, 6, 6))
    wi = rng.integers(-2, 3, (4, 3, 3, 3)).astype(np.int32)
    y = ops.conv2d(xi, wi, padding=1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, R.conv2d(xi, wi, padding=1))
    yb = ops.conv2d(xi > 0, wi.astype(np.int8))
    assert yb.dtype == np.float64
    np.testing.assert_array_equal(yb, R.conv2d((xi > 0).astype(float), wi))
    # an integer input with a float32 one: the integer one counts as float64
    assert ops.conv2d(xi, wi.astype(np.float32)).dtype == np.float64
    assert ops.max_pool2d(xi, 2).dtype == np.float64
    np.testing.assert_array_equal(ops.max_pool2d(xi, 2), R.max_pool2d(xi, 2))
    assert ops.avg_pool2d(xi.astype(np.uint8), 2).dtype == np.float64
    assert ops.global_avg_pool1d(xi[:, :, 0]).dtype == np.float64
    gx, gw, gb = ops.conv2d_backward(np.ones((2, 4, 4, 4), np.int64), xi, wi)
    assert gx.dtype == gw.dtype == gb.dtype == np.float64
    assert_close(gw, R.conv2d_backward(np.ones((2, 4, 4, 4)), xi, wi)[1], np.float64)


def test_float16_computes_as_float32(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    y = ops.conv2d(x, w)
    assert y.dtype == np.float32
    assert_close(y, R.conv2d(x, w), np.float32, tol=1e-5)
    yp = ops.max_pool2d(x, 2)
    assert yp.dtype == np.float32
    np.testing.assert_array_equal(yp, R.max_pool2d(x, 2).astype(np.float32))
    assert ops.avg_pool1d(x[:, :, 0], 2).dtype == np.float32
    assert ops.conv2d(x, w.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("op", ["conv2d", "conv1d", "max_pool2d", "avg_pool2d",
                                "global_avg_pool2d"])
def test_float32_in_float32_out(rng, op):
    x4_ = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    call = {
        "conv2d": lambda: ops.conv2d(x4_, np.ones((2, 2, 3, 3), np.float32),
                                     np.ones(2, np.float32)),
        "conv1d": lambda: ops.conv1d(x4_[:, :, 0], np.ones((2, 2, 3), np.float32)),
        "max_pool2d": lambda: ops.max_pool2d(x4_, 2),
        "avg_pool2d": lambda: ops.avg_pool2d(x4_, 2),
        "global_avg_pool2d": lambda: ops.global_avg_pool2d(x4_),
    }[op]
    assert call().dtype == np.float32


# ---------------------------------------------------------------- NaN / inf

def _assert_equal_nan(got, ref):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_nan_inf_propagate(rng, dtype):
    x = rng.standard_normal((2, 3, 9, 9)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 6, 6] = np.inf
    x[1, 2, 1, 7] = -np.inf
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    for kw in [dict(padding=1), dict(stride=2), dict(padding="same", dilation=2)]:
        got = ops.conv2d(x, w, **kw).astype(np.float64)
        ref = R.conv2d(x, w, **kw)
        assert np.isnan(ref).any() and np.isinf(ref).any()
        assert np.isfinite(ref).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        np.testing.assert_array_equal(np.sign(got[np.isinf(got)]), np.sign(ref[np.isinf(ref)]))
    # a big shape for the fast paths
    xb = rng.standard_normal((2, 16, 20, 20)).astype(dtype)
    xb[1, 5, 10, 10] = np.nan
    wb = rng.standard_normal((32, 16, 3, 3)).astype(dtype)
    got = ops.conv2d(xb, wb, padding=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(R.conv2d(xb, wb, padding=1)))


def test_pools_nan_propagate(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    x[0, 0, 0, 0] = np.nan
    x[1, 2, 5, 4] = np.nan
    x[1, 1, 3, 3] = np.inf
    x[0, 1, 7, 7] = -np.inf
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
               dict(kernel_size=3, stride=1, dilation=2)]:
        got = ops.max_pool2d(x, **kw)
        ref = R.max_pool2d(x, **kw)
        assert np.isnan(ref).any()
        _assert_equal_nan(got, ref)
        kw.pop("dilation", None)
        _assert_equal_nan(ops.avg_pool2d(x, **kw), R.avg_pool2d(x, **kw))
    _assert_equal_nan(ops.global_avg_pool2d(x), R.global_avg_pool2d(x))
    x1 = x[:, :, 0, :]
    _assert_equal_nan(ops.max_pool1d(x1, 2), R.max_pool1d(x1, 2))
    _assert_equal_nan(ops.avg_pool1d(x1, 3, 1, 1), R.avg_pool1d(x1, 3, 1, 1))


def test_max_pool_nan_anywhere_in_window():
    """NaN wins whatever its position: first, middle or last of the window."""
    for pos in range(4):
        x = np.array([1.0, 5.0, 2.0, 3.0]).reshape(1, 1, 2, 2)
        x.reshape(-1)[pos] = np.nan
        assert np.isnan(ops.max_pool2d(x, 2)[0, 0, 0, 0]), pos
        x32 = x.astype(np.float32)
        assert np.isnan(ops.max_pool2d(x32, 2)[0, 0, 0, 0]), pos
        assert np.isnan(ops.max_pool1d(x32.reshape(1, 1, 4), 4)[0, 0, 0]), pos


def test_max_pool_all_minus_inf():
    x = np.full((1, 1, 4, 4), -np.inf)
    y, idx = ops.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    ref_y, ref_idx = R.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(idx, ref_idx)  # a real element, never the padding
