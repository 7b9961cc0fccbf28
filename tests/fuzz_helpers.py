"""Shared strategies of the fuzz tests (tests/test_fuzz_*.py).

Every fuzzed call must either return what the numpy reference returns or raise
ValueError/TypeError with a message; anything else (another exception, a
crash, a wrong answer) fails. Inputs vary in shape, dtype, memory layout
(C, Fortran, strided, negative strides, big-endian) and values (denormals,
huge, zeros, NaN, inf).

CCONV_FUZZ_EXAMPLES sets the examples per test (default 12, so that the whole
fuzz suite runs in well under a minute); e.g. CCONV_FUZZ_EXAMPLES=2000 for a
long run.
"""
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = max(1, int(os.environ.get("CCONV_FUZZ_EXAMPLES", "12")))

# the default run is the same every time (CI); a scaled-up run explores anew
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="CCONV_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=list(HealthCheck))

# per case of a parametrised table (the layers: ~70 cases), a quarter as many
FUZZ_PER_CASE = settings(FUZZ, max_examples=max(3, EXAMPLES // 4))

LAYOUTS = ("c", "fortran", "strided", "negative", "bigendian")
SPECIALS = ("plain", "plain", "zeros", "denormal", "huge", "nan", "inf")
NONFINITE = ("nan", "inf")

seeds = st.integers(0, 2**32 - 1)
layouts = st.sampled_from(LAYOUTS)
specials = st.sampled_from(SPECIALS)
float_dtypes = st.sampled_from([np.float32, np.float64])


def relayout(a, kind):
    """a's values in another memory layout (a view where that is the point)."""
    a = np.asarray(a)
    if kind == "c" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "strided":   # every other element of a buffer twice as large
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "negative":  # a reversed copy, seen reversed again: negative strides
        axes = tuple(range(a.ndim))
        return np.flip(np.flip(a, axes).copy(), axes)
    if kind == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise ValueError(kind)


def values(seed, shape, dtype, special="plain"):
    """Random values of dtype; special puts some extreme values at random places."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dtype.kind in "iu":
        return np.clip(np.round(a * 3), -8, 8).astype(dtype)
    if dtype.kind == "b":
        return a > 0
    a = a.astype(dtype)
    if a.size == 0 or special == "plain":
        return a
    tiny = np.finfo(dtype).tiny if dtype.itemsize >= 4 else np.finfo(np.float16).tiny
    extreme = {
        "zeros": 0.0,
        "denormal": tiny / 8,                       # subnormal
        # large, but sums of products stay finite in the dtype
        "huge": {2: 1e3, 4: 1e15}.get(dtype.itemsize, 1e150),
        "nan": np.nan,
        "inf": np.inf,
    }[special]
    k = max(1, a.size // 5)
    flat = a.reshape(-1)
    idx = rng.choice(a.size, size=k, replace=False)
    signs = rng.choice([-1.0, 1.0], size=k)
    flat[idx] = (signs * extreme).astype(dtype) if special != "nan" else extreme
    return a


def result_dtype(*dtypes):
    """The float dtype cconv.ops computes in for these input dtypes."""
    out = []
    for d in dtypes:
        d = np.dtype(d)
        out.append(np.float32 if d.kind == "f" and d.itemsize <= 4 else np.float64)
    return np.result_type(*out)


def check_result(got, ref, dtype, nonfinite=False, what="result", bound=None,
                 any_byteorder=False):
    """got equals the float64 reference ref within dtype's rounding.

    Finite reference values are compared with a tolerance relative to the
    largest finite magnitude, or to bound (the same op on the absolute
    values: the size of the terms, which is what a sum's rounding error
    scales with when terms cancel). With non-finite inputs, a NaN in the reference
    must be NaN in got, and an infinity must be non-finite (summation order
    may turn inf + -inf into NaN, which the reference order need not show).
    """
    got, ref = np.asarray(got), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, reference {ref.shape}"
    got_dtype = got.dtype.newbyteorder("=") if any_byteorder else got.dtype
    assert got_dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {dtype}"
    finite = np.isfinite(ref)
    if not nonfinite:
        assert finite.all(), f"{what}: reference not finite with finite inputs"
    scale = float(np.abs(ref[finite]).max()) if finite.any() else 1.0
    scale = max(scale, 1.0 if np.dtype(dtype) == np.float64 else 1e-30)
    tol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-9
    g = got.astype(np.float64)
    atol = tol * scale
    if bound is not None:
        bound = np.asarray(bound, dtype=np.float64)
        atol = tol * np.maximum(np.where(np.isfinite(bound), bound, 0), scale)
        atol = atol if not nonfinite else atol[finite]
    if not nonfinite:
        _assert_close(g, ref, tol, atol, what)
        return
    assert np.isfinite(g[finite]).all(), f"{what}: non-finite where the reference is finite"
    _assert_close(g[finite], ref[finite], tol, atol, what)
    assert np.isnan(g[np.isnan(ref)]).all(), f"{what}: a NaN of the reference was lost"
    assert (~np.isfinite(g[np.isinf(ref)])).all(), f"{what}: an infinity was lost"


def _assert_close(got, ref, rtol, atol, what):
    bad = ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} values differ; first at "
                             f"flat index {i}: got {got.flat[i]!r}, reference {ref.flat[i]!r}")


def clear_error(exc, *names):
    """The exception is a ValueError/TypeError whose message says something (and names one of names)."""
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert len(msg) > 10, f"unhelpful message {msg!r}"
    if names:
        assert any(n in msg for n in names), f"message {msg!r} names none of {names}"
