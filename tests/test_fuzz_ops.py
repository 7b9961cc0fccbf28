"""Fuzzing of every public op of cconv.ops and of cconv.filters.filter2d.

Random shapes, strides, paddings, dilations, groups, dtypes, memory layouts
and values (see fuzz_helpers): each call returns what tests/reference.py
(or scipy) returns, or raises ValueError/TypeError with a message. Also
random junk for every argument: only clear errors, never a crash or a hang.
"""
import numpy as np
import pytest
import reference as R
import scipy.ndimage
import scipy.signal
from fuzz_helpers import (
    FUZZ,
    NONFINITE,
    check_result,
    clear_error,
    layouts,
    relayout,
    result_dtype,
    seeds,
    specials,
    values,
)
from hypothesis import given
from hypothesis import strategies as st

from cconv import filters, ops

pads_1 = st.integers(0, 3)
pad_2d = st.one_of(
    pads_1, st.sampled_from(["valid", "same"]), st.tuples(pads_1, pads_1),
    st.tuples(st.tuples(pads_1, pads_1), st.tuples(pads_1, pads_1)))
pad_1d = st.one_of(pads_1, st.sampled_from(["valid", "same"]), st.tuples(pads_1, pads_1))
pair = st.tuples(st.integers(1, 3), st.integers(1, 3))
in_dtypes = st.sampled_from([np.float32, np.float64, np.float32, np.float64, np.float16,
                             np.int32])


@st.composite
def conv2d_case(draw, nd=2):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    n = draw(st.integers(0, 2))
    spatial = tuple(draw(st.integers(1, 7)) for _ in range(nd))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    case = {
        "x_shape": (n, cg * groups) + spatial,
        "w_shape": (og * groups, cg) + kernel,
        "bias": draw(st.booleans()),
        "groups": groups,
        "stride": draw(pair) if nd == 2 else draw(st.integers(1, 3)),
        "dilation": draw(pair) if nd == 2 else draw(st.integers(1, 3)),
        "padding": draw(pad_2d) if nd == 2 else draw(pad_1d),
        "dtypes": (draw(in_dtypes), draw(in_dtypes), draw(in_dtypes)),
        "layouts": (draw(layouts), draw(layouts), draw(layouts)),
        "special": draw(specials),
    }
    return case


def _conv_inputs(case, seed):
    dx, dw, db = case["dtypes"]
    special = case["special"]
    x = values(seed, case["x_shape"], dx, special)
    w = values(seed + 1, case["w_shape"], dw, "plain" if special in NONFINITE else special)
    b = values(seed + 2, case["w_shape"][:1], db) if case["bias"] else None
    lx, lw, lb = case["layouts"]
    return (relayout(x, lx), relayout(w, lw), None if b is None else relayout(b, lb),
            result_dtype(dx, dw, *((db,) if case["bias"] else ())))


def _run_conv(nd, case, seed):
    fwd, bwd = (ops.conv2d, ops.conv2d_backward) if nd == 2 else (ops.conv1d, ops.conv1d_backward)
    rfwd, rbwd = (R.conv2d, R.conv2d_backward) if nd == 2 else (R.conv1d, R.conv1d_backward)
    x, w, b, dtype = _conv_inputs(case, seed)
    args = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                groups=case["groups"])
    try:
        ref = rfwd(x, w, b, **args)
    except AssertionError:  # the kernel does not fit the padded input
        with pytest.raises((ValueError, TypeError)) as info:
            fwd(x, w, b, **args)
        clear_error(info.value, "kernel", "larger")
        return
    nonfinite = case["special"] in NONFINITE
    ax, aw = np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64))
    ab = None if b is None else np.abs(np.asarray(b, np.float64))
    check_result(fwd(x, w, b, **args), ref, dtype, nonfinite, "forward",
                 bound=rfwd(ax, aw, ab, **args))
    # a finite upstream gradient: cconv's backward skips the zero padding, where
    # the reference would multiply a non-finite gradient by the padding's zeros
    special = "plain" if nonfinite else case["special"]
    gy = relayout(values(seed + 3, ref.shape, dtype, special), case["layouts"][0])
    rdx, rdw, rdb = rbwd(gy, x, w, **args)
    bdx, bdw, bdb = rbwd(np.abs(np.asarray(gy, np.float64)), ax, aw, **args)
    dx, dw, db = bwd(gy, x, w, **args)
    check_result(dx, rdx, dtype, False, "grad x", bound=bdx)
    check_result(dw, rdw, dtype, nonfinite, "grad w", bound=bdw)
    check_result(db, rdb, dtype, False, "grad bias", bound=bdb)


@FUZZ
@given(conv2d_case(2), seeds)
def test_fuzz_conv2d(case, seed):
    _run_conv(2, case, seed)


@FUZZ
@given(conv2d_case(1), seeds)
def test_fuzz_conv1d(case, seed):
    _run_conv(1, case, seed)


# ---------------------------------------------------------------- pooling

@st.composite
def pool_case(draw, nd=2):
    k = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    return {
        "x_shape": (draw(st.integers(0, 2)), draw(st.integers(1, 3)))
        + tuple(draw(st.integers(1, 8)) for _ in range(nd)),
        "kernel_size": k,
        "stride": draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * nd))),
        # up to one more than allowed (half the kernel): must be refused clearly
        "padding": tuple(draw(st.integers(0, kk // 2 + 1)) for kk in k),
        "dilation": tuple(draw(st.integers(1, 3)) for _ in range(nd)),
        "ceil_mode": draw(st.booleans()),
        "count_include_pad": draw(st.booleans()),
        "dtype": draw(in_dtypes),
        "layout": draw(layouts),
        "special": draw(specials),
    }


def _unpack(t, nd):
    return t[0] if nd == 1 and isinstance(t, tuple) else t


def _run_pool(nd, case, seed):
    names = ("max_pool2d", "avg_pool2d") if nd == 2 else ("max_pool1d", "avg_pool1d")
    x = relayout(values(seed, case["x_shape"], case["dtype"], case["special"]), case["layout"])
    dtype = result_dtype(case["dtype"])
    nonfinite = case["special"] in NONFINITE
    k = _unpack(case["kernel_size"], nd)
    s = None if case["stride"] is None else _unpack(case["stride"], nd)
    p = _unpack(case["padding"], nd)
    d = _unpack(case["dilation"], nd)
    too_much_padding = any(pp > kk // 2 for pp, kk in zip(case["padding"], case["kernel_size"]))
    common = dict(stride=s, padding=p, ceil_mode=case["ceil_mode"])
    for name in names:
        fn, bwd = getattr(ops, name), getattr(ops, name + "_backward")
        rfn, rbwd = getattr(R, name), getattr(R, name + "_backward")
        kw = dict(common, dilation=d) if name.startswith("max") else \
            dict(common, count_include_pad=case["count_include_pad"])
        if too_much_padding:
            with pytest.raises((ValueError, TypeError)) as info:
                fn(x, k, **kw)
            clear_error(info.value, "padding")
            continue
        dil = case["dilation"] if name.startswith("max") else (1,) * nd
        oversized = any((kk - 1) * dd + 1 > n + 2 * pp for kk, dd, n, pp in
                        zip(case["kernel_size"], dil, case["x_shape"][2:], case["padding"]))
        try:
            if oversized:   # torch's ceil_mode allows it; cconv refuses it
                raise AssertionError
            ref = rfn(x if x.shape[0] else np.zeros((1,) + x.shape[1:]), k, **kw)
        except AssertionError:  # no window fits
            with pytest.raises((ValueError, TypeError)) as info:
                fn(x, k, **kw)
            clear_error(info.value, "kernel_size", "larger")
            continue
        if x.shape[0] == 0:   # an empty batch: an empty result of the right shape
            got = fn(x, k, **kw)
            assert got.shape == (0,) + ref.shape[1:] and got.dtype == dtype
            continue
        if name.startswith("max"):
            y, idx = fn(x, k, return_indices=True, **kw)
            ry = rfn(x, k, **kw)
            # -1: a window entirely in the padding (dilation); its max is -inf
            empty = idx == -1
            assert np.isneginf(y[empty]).all() and np.isneginf(ry[empty]).all()
            check_result(np.where(empty, 0, y), np.where(empty, 0, ry), dtype, nonfinite, name)
            assert idx.dtype == np.int64 and idx.shape == ry.shape
            if not nonfinite:   # the index points at a maximum
                flat = np.asarray(x, np.float64).reshape(x.shape[0], x.shape[1], -1)
                picked = np.take_along_axis(
                    flat, np.maximum(idx, 0).reshape(idx.shape[0], idx.shape[1], -1),
                    axis=2).reshape(ry.shape)
                np.testing.assert_array_equal(picked[~empty], ry[~empty])
            gy = values(seed + 1, ry.shape, dtype)
            check_result(bwd(gy, x, k, indices=idx, **kw), _scatter(gy, idx, x.shape),
                         dtype, False, name + " backward")
        else:
            check_result(fn(x, k, **kw), ref, dtype, nonfinite, name)
            gy = relayout(values(seed + 1, ref.shape, dtype), case["layout"])
            check_result(bwd(gy, x.shape, k, **kw), rbwd(gy, x.shape, k, **kw), dtype,
                         False, name + " backward")


def _scatter(gy, idx, shape):
    """Max-pool backward from the definition: each gradient to its index (-1: dropped)."""
    n, c = shape[:2]
    gx = np.zeros((n, c, int(np.prod(shape[2:]))))
    g, i = gy.reshape(n, c, -1), idx.reshape(n, c, -1)
    for a in range(n):
        for b in range(c):
            keep = i[a, b] >= 0
            np.add.at(gx[a, b], i[a, b][keep], g[a, b][keep])
    return gx.reshape(shape)


@FUZZ
@given(pool_case(2), seeds)
def test_fuzz_pool2d(case, seed):
    _run_pool(2, case, seed)


@FUZZ
@given(pool_case(1), seeds)
def test_fuzz_pool1d(case, seed):
    _run_pool(1, case, seed)


@FUZZ
@given(st.sampled_from([1, 2]), st.integers(0, 2), st.integers(1, 3), st.integers(1, 6),
       in_dtypes, layouts, specials, seeds)
def test_fuzz_global_avg_pool(nd, n, c, size, dtype, layout, special, seed):
    shape = (n, c) + (size,) * nd
    x = relayout(values(seed, shape, dtype, special), layout)
    fn = ops.global_avg_pool2d if nd == 2 else ops.global_avg_pool1d
    bwd = ops.global_avg_pool2d_backward if nd == 2 else ops.global_avg_pool1d_backward
    rfn = R.global_avg_pool2d if nd == 2 else R.global_avg_pool1d
    rbwd = R.global_avg_pool2d_backward if nd == 2 else R.global_avg_pool1d_backward
    rdtype = result_dtype(dtype)
    ref = rfn(x)
    check_result(fn(x), ref, rdtype, special in NONFINITE, "global avg pool")
    gy = values(seed + 1, ref.shape, rdtype)
    check_result(bwd(gy, shape), rbwd(gy, shape), rdtype, False, "global avg pool backward")


# ---------------------------------------------------------------- gemm

@FUZZ
@given(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.booleans(), st.booleans(),
       st.sampled_from([1.0, -0.5, 0.0, 2.5]), st.sampled_from([0.0, 1.0, -2.0]), in_dtypes,
       in_dtypes, st.tuples(layouts, layouts, layouts), specials, seeds)
def test_fuzz_gemm(m, n, k, ta, tb, alpha, beta, da, db, lays, special, seed):
    a = values(seed, (k, m) if ta else (m, k), da, special)
    b = values(seed + 1, (n, k) if tb else (k, n), db,
               "plain" if special in NONFINITE else special)
    c = values(seed + 2, (m, n), np.float64) if beta != 0 else None
    a, b = relayout(a, lays[0]), relayout(b, lays[1])
    c = None if c is None else relayout(c, lays[2])
    dtype = result_dtype(da, db, *((np.float64,) if c is not None else ()))
    got = ops.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, c=c)
    ref = R.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, c=c)
    # alpha = 0 times an inf is NaN in the reference; cconv may skip the product
    if not (special in NONFINITE and alpha == 0):
        bound = R.gemm(np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64)),
                       trans_a=ta, trans_b=tb, alpha=abs(alpha), beta=abs(beta),
                       c=None if c is None else np.abs(np.asarray(c, np.float64)))
        check_result(got, ref, dtype, special in NONFINITE, "gemm", bound=bound)


# ---------------------------------------------------------------- textbook operators

@FUZZ
@given(st.sampled_from([1, 2]), st.tuples(st.integers(1, 7), st.integers(1, 7)),
       st.tuples(st.integers(1, 5), st.integers(1, 5)), st.sampled_from(["full", "same", "valid"]),
       st.sampled_from(["convolve", "correlate"]), in_dtypes, in_dtypes,
       st.tuples(layouts, layouts), specials, seeds)
def test_fuzz_convolve_correlate(nd, sa, sv, mode, name, da, dv, lays, special, seed):
    sa, sv = sa[:nd], sv[:nd]
    a = relayout(values(seed, sa, da, special), lays[0])
    v = relayout(values(seed + 1, sv, dv, "plain" if special in NONFINITE else special),
                 lays[1])
    fits = all(x >= y for x, y in zip(sa, sv)) or all(y >= x for x, y in zip(sa, sv))
    if mode == "valid" and not fits:
        with pytest.raises(ValueError) as info:
            getattr(ops, name)(a, v, mode)
        clear_error(info.value, "valid")
        return
    a64, v64 = np.asarray(a, np.float64), np.asarray(v, np.float64)
    if special in NONFINITE:
        # scipy's 2-D direct path multiplies its zero padding by the NaN/inf
        # too; the definition (sum over the overlap only) is the reference
        ref = _textbook(a64, v64, mode, name)
    else:
        ref = getattr(scipy.signal, name)(a64, v64, mode=mode, method="direct")
    check_result(getattr(ops, name)(a, v, mode), ref, result_dtype(da, dv),
                 special in NONFINITE, name)


def _textbook(a, v, mode, name):
    """(a * v)_t = sum over the overlap of a_tau v_(t - tau), straight from the definition."""
    if name == "correlate":
        v = np.flip(v).conj()
    a2, v2 = np.atleast_2d(a), np.atleast_2d(v)
    full = np.zeros(tuple(p + q - 1 for p, q in zip(a2.shape, v2.shape)))
    for i, j in np.ndindex(*a2.shape):
        full[i:i + v2.shape[0], j:j + v2.shape[1]] += a2[i, j] * v2
    if mode == "full":
        out = full
    else:
        if mode == "same":
            shape = a2.shape
        else:
            shape = tuple(abs(p - q) + 1 for p, q in zip(a2.shape, v2.shape))
        starts = [(f - s) // 2 for f, s in zip(full.shape, shape)]
        out = full[tuple(slice(b, b + s) for b, s in zip(starts, shape))]
    return out if a.ndim == 2 else out[0]


# ---------------------------------------------------------------- filters

@FUZZ
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([None, 1, 3]),
       st.integers(1, 6), st.integers(1, 6),
       st.sampled_from(["reflect", "mirror", "nearest", "wrap", "constant", "valid"]),
       st.sampled_from(["convolve", "correlate"]),
       st.sampled_from(["auto", "direct", "fft", "separable"]),
       st.sampled_from([np.float32, np.float64, np.uint8, np.int16]), layouts, specials, seeds)
def test_fuzz_filter2d(h, w, c, kh, kw, mode, op, method, dtype, layout, special, seed):
    shape = (h, w) if c is None else (h, w, c)
    img = values(seed, shape, dtype, special if np.dtype(dtype).kind == "f" else "plain")
    if np.dtype(dtype).kind != "f":
        img = (np.abs(img) * 20).astype(dtype)
    img = relayout(img, layout)
    rng = np.random.default_rng(seed + 1)
    if method == "separable" and rng.random() < 0.7:   # mostly rank-1 kernels
        kernel = np.outer(rng.standard_normal(kh), rng.standard_normal(kw))
    else:
        kernel = rng.standard_normal((kh, kw))
    call = dict(mode=mode, op=op, method=method, output=np.float64)
    if mode == "valid" and (kh > h or kw > w):
        with pytest.raises(ValueError) as info:
            filters.filter2d(img, kernel, **call)
        clear_error(info.value, "kernel")
        return
    try:
        got = filters.filter2d(img, kernel, **call)
    except ValueError as exc:   # only a kernel that is not rank 1 may refuse separable
        assert method == "separable", exc
        clear_error(exc, "separable", "rank")
        return
    f64 = np.asarray(img, np.float64)
    k64 = kernel if op == "correlate" else kernel[::-1, ::-1]
    if mode == "valid":
        ref = scipy.signal.correlate(f64, k64[..., None] if c else k64, mode="valid",
                                     method="direct")
    else:
        k3 = k64[..., None] if c else k64
        origin = [0, 0] + ([0] if c else [])
        if op == "convolve":    # scipy.ndimage.convolve's anchor for even sizes
            ref = scipy.ndimage.convolve(f64, (kernel[..., None] if c else kernel),
                                         mode=mode, cval=0.0)
        else:
            ref = scipy.ndimage.correlate(f64, k3, mode=mode, cval=0.0, origin=origin)
    if special in NONFINITE and method == "fft":   # an FFT spreads a NaN over the plane
        assert got.shape == ref.shape and got.dtype == np.float64
        return
    check_result(got, ref, np.float64, special in NONFINITE, "filter2d")


# ---------------------------------------------------------------- junk arguments

JUNK = [-1, 0, 2**63, -2**63, 2**64, 1.5, float("nan"), "3", None, True, (1, 2, 3), ((1,),),
        [[1, 2], [3]], object(), np.int64(-5), 10**30, (2**62, 2**62)]


@pytest.mark.parametrize("op", ["conv2d", "conv1d", "conv2d_backward", "max_pool2d",
                                "avg_pool2d", "max_pool1d", "gemm", "convolve", "filter2d"])
@pytest.mark.parametrize("arg", ["stride", "padding", "dilation", "groups", "kernel_size",
                                 "ceil_mode", "mode", "trans", "alpha", "cval", "border"])
def test_fuzz_junk_arguments_raise_clear_errors(arg, op):
    for junk in JUNK:
        _junk_call(arg, junk, op)


def _junk_call(arg, junk, op):
    """A junk value in any argument: a correct result or a clear ValueError/TypeError."""
    rng = np.random.default_rng(0)
    x2, x1 = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((1, 2, 5))
    w2, w1 = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3))
    calls = {
        "conv2d": lambda **kw: ops.conv2d(x2, w2, **kw),
        "conv1d": lambda **kw: ops.conv1d(x1, w1, **kw),
        "conv2d_backward": lambda **kw: ops.conv2d_backward(np.ones((1, 2, 3, 3)), x2, w2, **kw),
        "max_pool2d": lambda **kw: ops.max_pool2d(x2, kw.pop("kernel_size", 2), **kw),
        "avg_pool2d": lambda **kw: ops.avg_pool2d(x2, kw.pop("kernel_size", 2), **kw),
        "max_pool1d": lambda **kw: ops.max_pool1d(x1, kw.pop("kernel_size", 2), **kw),
        "gemm": lambda **kw: ops.gemm(x2[0, 0], w2[0, 0, :, :3].T @ np.ones((3, 5)), **kw),
        "convolve": lambda **kw: ops.convolve(x1[0, 0], w1[0, 0], **kw),
        "filter2d": lambda **kw: filters.filter2d(x2[0, 0], w2[0, 0], **kw),
    }
    names = {"trans": "trans_a", "border": "mode"}
    accepted = {  # which arguments each call takes
        "conv2d": {"stride", "padding", "dilation", "groups"},
        "conv1d": {"stride", "padding", "dilation", "groups"},
        "conv2d_backward": {"stride", "padding", "dilation", "groups"},
        "max_pool2d": {"stride", "padding", "dilation", "kernel_size", "ceil_mode"},
        "avg_pool2d": {"stride", "padding", "kernel_size", "ceil_mode"},
        "max_pool1d": {"stride", "padding", "dilation", "kernel_size", "ceil_mode"},
        "gemm": {"trans", "alpha"},
        "convolve": {"mode"},
        "filter2d": {"border", "cval"},
    }[op]
    if arg not in accepted:
        return
    name = names.get(arg, arg)
    try:
        calls[op](**{name: junk})
    except (ValueError, TypeError) as exc:
        clear_error(exc)
    # Anything else propagates and fails the test: OverflowError, SystemError,
    # IndexError, MemoryError... A value that is accepted (e.g. True for
    # ceil_mode, 1.5 for alpha) must just work.
