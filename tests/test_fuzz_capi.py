# The lib fixture is imported from test_capi, so test arguments "redefine" it:
# ruff: noqa: F811
"""Fuzzing of the public C API (include/cconv.h) through ctypes over libcconv.a.

Random params structs, good and bad (negative, zero and huge sizes, strides,
pads, dilations, groups; wrong dtype codes, struct sizes, thread counts),
and buffers of the right size, too small, or NULL. Every call must return
a status code (never crash, never write past a buffer: the buffers carry
guard elements that must stay untouched); a success must give what cconv.ops
gives for the same arguments, and every argument set cconv.ops accepts with
large enough buffers must succeed.
"""
import ctypes

import numpy as np
import pytest
from fuzz_helpers import FUZZ, seeds
from hypothesis import given
from hypothesis import strategies as st
from test_capi import I64, Conv2d, Gemm, Pool2d, lib  # noqa: F401  (lib: the fixture)

from cconv import ops

GUARD = 8            # elements after every buffer that no call may write
N_STATUS = 11        # CCONV_SUCCESS .. CCONV_ERR_NOCONV

dims = st.integers(1, 5)
small = st.integers(0, 2)
BAD = [0, -1, 2**31, 2**62, -2**63]
dtype_codes = st.sampled_from([1, 2] * 4 + [0, 3, -1])
threads = st.sampled_from([0, 1, 2] * 3 + [-1, 1000])
buffer_modes = st.sampled_from(["ok"] * 8 + ["short", "null"])


@st.composite
def corrupted(draw, fields):
    """fields drawn valid-looking, then none (most often), one or two set to a bad value."""
    values = draw(st.fixed_dictionaries(fields))
    names = draw(st.lists(st.sampled_from(sorted(fields)), max_size=2))
    if draw(st.integers(0, 2)) == 0:
        for name in names:
            values[name] = draw(st.sampled_from(BAD))
    return values


def _buffer(rng, n_elems, dtype, mode):
    """(array with guard elements, capacity passed to C) or (None, 0)."""
    if mode == "null":
        return None, 0
    if n_elems is None or n_elems > 10**6 or n_elems < 0:   # invalid call: any small buffer
        n_elems = int(rng.integers(0, 64))
    elif mode == "short" and n_elems > 0:
        n_elems = int(rng.integers(0, n_elems))
    arr = rng.standard_normal(n_elems + GUARD).astype(dtype)
    return arr, n_elems


def _call(lib, name, p, buffers):
    args = [ctypes.byref(p)]
    for arr, n in buffers:
        if arr is None:
            args += [None, I64(0)]
        else:
            args += [ctypes.c_void_p(arr.ctypes.data), I64(n)]
    status = getattr(lib, "cconv_" + name)(*args)
    assert 0 <= status < N_STATUS, f"cconv_{name} returned {status}"
    return status


def _guards_intact(buffers, copies):
    for (arr, n), before in zip(buffers, copies):
        if arr is not None:
            assert np.array_equal(arr[n:], before[n:], equal_nan=True), "write past a buffer"


def _np_dtype(code):
    return np.float64 if code == 2 else np.float32


def _struct_size(cls, kind):
    return {"ok": ctypes.sizeof(cls), "zero": 0, "small": 8}[kind]


@FUZZ
@given(corrupted({
    "n": small, "c_in": dims, "h": dims, "w": dims, "c_out": dims, "kh": st.integers(1, 3),
    "kw": st.integers(1, 3), "stride_h": st.integers(1, 2), "stride_w": st.integers(1, 2),
    "pad_top": small, "pad_bottom": small, "pad_left": small, "pad_right": small,
    "dil_h": st.integers(1, 2), "dil_w": st.integers(1, 2), "groups": st.sampled_from([1, 1, 2])}),
    dtype_codes, threads, st.sampled_from(["ok"] * 6 + ["zero", "small"]),
    st.lists(buffer_modes, min_size=4, max_size=4),
    st.booleans(), seeds)
def test_fuzz_capi_conv2d(lib, fields, dtype, nthreads, ssize, modes, with_bias, seed):
    rng = np.random.default_rng(seed)
    p = Conv2d.make(np.float32, **fields)
    p.dtype, p.num_threads, p.struct_size = dtype, nthreads, _struct_size(Conv2d, ssize)
    f = fields
    valid_ops = None
    try:   # what cconv.ops says about these sizes (None: it refuses them)
        if min(f["c_in"], f["h"], f["w"], f["c_out"], f["kh"], f["kw"]) >= 1 and \
                f["c_in"] % max(f["groups"], 1) == 0 and f["groups"] >= 1 and \
                max(f.values()) < 2**20:
            xs = (f["n"], f["c_in"], f["h"], f["w"])
            ws = (f["c_out"], f["c_in"] // f["groups"], f["kh"], f["kw"])
            plan = ops.conv2d(np.zeros(xs), np.zeros(ws), stride=(f["stride_h"], f["stride_w"]),
                              padding=((f["pad_top"], f["pad_bottom"]),
                                       (f["pad_left"], f["pad_right"])),
                              dilation=(f["dil_h"], f["dil_w"]), groups=f["groups"])
            valid_ops = (xs, ws, plan.shape)
    except (ValueError, TypeError):
        valid_ops = None
    npd = _np_dtype(dtype)
    sizes = ([int(np.prod(s)) for s in valid_ops[0:2]] + [valid_ops[1][0]] +
             [int(np.prod(valid_ops[2]))]) if valid_ops else [None] * 4
    bufs = [_buffer(rng, n, npd, m) for n, m in zip(sizes, modes)]
    if not with_bias:
        bufs[2] = (None, 0)
    copies = [None if a is None else a.copy() for a, _ in bufs]
    status = _call(lib, "conv2d_forward", p, bufs)
    _guards_intact(bufs, copies)
    fine = (valid_ops is not None and dtype in (1, 2) and ssize == "ok" and
            all(m != "null" for m in modes[:2] + modes[3:]) and
            all(m == "ok" or n == 0 for m, n in zip(modes, sizes)) and
            (not with_bias or modes[2] == "ok"))
    if fine and nthreads >= 0:
        assert status == 0, f"a valid call failed with status {status}"
    if status == 0 and valid_ops is not None and min(sizes) > 0:
        xs, ws, _ = valid_ops
        x = bufs[0][0][:int(np.prod(xs))].reshape(xs)
        w = bufs[1][0][:int(np.prod(ws))].reshape(ws)
        b = bufs[2][0][:ws[0]] if with_bias else None
        want = ops.conv2d(x, w, b, stride=(f["stride_h"], f["stride_w"]),
                          padding=((f["pad_top"], f["pad_bottom"]),
                                   (f["pad_left"], f["pad_right"])),
                          dilation=(f["dil_h"], f["dil_w"]), groups=f["groups"])
        got = bufs[3][0][:want.size].reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@FUZZ
@given(corrupted({
    "n": small, "c": dims, "h": dims, "w": dims, "kh": st.integers(1, 3),
    "kw": st.integers(1, 3), "stride_h": st.integers(0, 2), "stride_w": st.integers(0, 2),
    "pad_h": st.integers(0, 1), "pad_w": st.integers(0, 1), "dil_h": st.integers(1, 2),
    "dil_w": st.integers(1, 2), "ceil_mode": st.integers(0, 1),
    "count_include_pad": st.integers(0, 1)}),
    dtype_codes, threads, st.sampled_from(["max", "avg"]),
    st.lists(buffer_modes, min_size=3, max_size=3), seeds)
def test_fuzz_capi_pool2d(lib, fields, dtype, nthreads, kind, modes, seed):
    rng = np.random.default_rng(seed)
    if kind == "avg" and seed % 4:   # average pooling has no dilation (mostly obey that)
        fields = dict(fields, dil_h=1, dil_w=1)
    p = Pool2d.make(np.float32, **fields)
    p.dtype, p.num_threads = dtype, nthreads
    f = fields
    xs = (f["n"], f["c"], f["h"], f["w"])
    out = None
    try:
        if max(abs(v) for v in f.values()) < 2**20 and min(xs[1:]) >= 1 and \
                f["ceil_mode"] in (0, 1) and f["count_include_pad"] in (0, 1):
            stride = (f["stride_h"] or f["kh"], f["stride_w"] or f["kw"])
            if kind == "max":
                out = ops.max_pool2d(np.zeros(xs), (f["kh"], f["kw"]), stride,
                                     (f["pad_h"], f["pad_w"]), (f["dil_h"], f["dil_w"]),
                                     bool(f["ceil_mode"])).shape
            elif (f["dil_h"], f["dil_w"]) == (1, 1):
                out = ops.avg_pool2d(np.zeros(xs), (f["kh"], f["kw"]), stride,
                                     (f["pad_h"], f["pad_w"]), bool(f["ceil_mode"]),
                                     bool(f["count_include_pad"])).shape
    except (ValueError, TypeError):
        out = None
    npd = _np_dtype(dtype)
    sizes = [int(np.prod(xs)), int(np.prod(out)), int(np.prod(out))] if out else [None] * 3
    bufs = [_buffer(rng, n, npd, m) for n, m in zip(sizes, modes)]
    if kind == "max":   # the indices buffer is int64
        arr, n = bufs[2]
        bufs[2] = (None, 0) if arr is None else (np.zeros(len(arr), np.int64), n)
        call = ("max_pool2d_forward", bufs)
    else:
        call = ("avg_pool2d_forward", bufs[:2])
    copies = [None if a is None else a.copy() for a, _ in call[1]]
    status = _call(lib, call[0], p, call[1])
    _guards_intact(call[1], copies)
    used = modes[:len(call[1])]
    fine = (out is not None and dtype in (1, 2) and
            all(m == "ok" or (m == "null" and i == 2) or n == 0
                for i, (m, n) in enumerate(zip(used, sizes))))
    if fine and nthreads >= 0:
        assert status == 0, f"a valid call failed with status {status}"
    if status == 0 and out is not None and min(sizes) > 0:
        x = bufs[0][0][:sizes[0]].reshape(xs)
        stride = (f["stride_h"] or f["kh"], f["stride_w"] or f["kw"])
        if kind == "max":
            want = ops.max_pool2d(x, (f["kh"], f["kw"]), stride, (f["pad_h"], f["pad_w"]),
                                  (f["dil_h"], f["dil_w"]), bool(f["ceil_mode"]))
        else:
            want = ops.avg_pool2d(x, (f["kh"], f["kw"]), stride, (f["pad_h"], f["pad_w"]),
                                  bool(f["ceil_mode"]), bool(f["count_include_pad"]))
        got = bufs[1][0][:want.size].reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@FUZZ
@given(st.integers(-1, 7), st.integers(-1, 7), st.integers(-1, 7), st.sampled_from([0, 1] * 4 + [-1, 2]),
       st.sampled_from([0, 1] * 4 + [2]), st.sampled_from([0, 0, 1, 3, 100, -1]), dtype_codes,
       st.sampled_from([0.0, 1.0, -2.0]),
       st.lists(buffer_modes, min_size=3, max_size=3), seeds)
def test_fuzz_capi_gemm(lib, m, n, k, ta, tb, ld_extra, dtype, beta, modes, seed):
    rng = np.random.default_rng(seed)
    p = Gemm.make(np.float32, m=m, n=n, k=k, trans_a=ta, trans_b=tb, beta=beta)
    p.dtype = dtype
    valid = min(m, n, k) >= 0 and ta in (0, 1) and tb in (0, 1) and ld_extra >= 0
    if valid:
        ra, ca = (k, m) if ta else (m, k)
        rb, cb = (n, k) if tb else (k, n)
        p.lda = ca + ld_extra if ld_extra else 0
        sizes = [ra * (ca + ld_extra), rb * cb, m * n]
    else:
        p.lda = ld_extra
        sizes = [None] * 3
    npd = _np_dtype(dtype)
    bufs = [_buffer(rng, s, npd, md) for s, md in zip(sizes, modes)]
    copies = [None if a is None else a.copy() for a, _ in bufs]
    status = _call(lib, "gemm", p, bufs)
    _guards_intact(bufs, copies)
    fine = valid and dtype in (1, 2) and all(md == "ok" or s == 0 for md, s in zip(modes, sizes))
    if fine:
        assert status == 0, f"a valid call failed with status {status}"
    if status == 0 and valid and min(sizes) > 0:
        a = bufs[0][0][:sizes[0]].reshape(ra, ca + ld_extra)[:, :ca]
        b = bufs[1][0][:sizes[1]].reshape(rb, cb)
        c0 = copies[2][:m * n].reshape(m, n).astype(np.float64)
        want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b) + beta * c0
        got = bufs[2][0][:m * n].reshape(m, n)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * max(1, k))


def test_fuzz_capi_fixture_is_real(lib):
    """The library is loaded and a trivial call succeeds (the fuzzers above need it)."""
    p = Gemm.make(np.float64, m=1, n=1, k=1)
    a, b, c = np.array([2.0]), np.array([3.0]), np.zeros(1)
    assert _call(lib, "gemm", p, [(a, 1), (b, 1), (c, 1)]) == 0 and c[0] == 6.0


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
