"""Fuzzing of every registered layer's forward and backward (tests/layer_cases.py configs).

Each layer is built from its registry entry (plugins.get_layer_class(type) ->
from_config(get_config())), then called with a random batch size, dtype,
memory layout and values. The float64 run on C-contiguous inputs is the
reference (its gradients are checked by finite differences in
test_layers.py): other layouts must give the same result, float32 the same
within float32 rounding, non-finite values must not crash, and a wrongly
shaped input must raise ValueError/TypeError with a message.
"""
import numpy as np
import pytest
from fuzz_helpers import (
    FUZZ_PER_CASE,
    NONFINITE,
    check_result,
    clear_error,
    layouts,
    relayout,
    seeds,
    specials,
    values,
)
from hypothesis import given
from hypothesis import strategies as st
from layer_cases import CASES

from cconv import plugins


def _from_registry(case, dtype):
    """The case's layer rebuilt through the registry, as a loaded net would get it."""
    proto = case.make()
    cls = plugins.get_layer_class(proto.type_name)
    layer = cls.from_config(proto.get_config())
    layer.build(case.shapes, rng=np.random.default_rng(0))
    return layer.astype(dtype)


def _inputs(case, batch, dtype, special, seed, lays):
    xs = []
    for i, shape in enumerate(case.shapes):
        x = values(seed + i, (batch,) + shape, dtype, special)
        if case.inputs == "distinct" and special == "plain":   # a stable argmax
            rng = np.random.default_rng(seed + i)
            x = (rng.permutation(x.size).reshape(x.shape) * 0.1).astype(dtype)
        if case.inputs == "positive":   # log, sqrt, pow: inside their real domain
            x = (np.abs(x) + 0.5).astype(dtype)
        xs.append(x)
    return xs, [relayout(x, lays[i % len(lays)]) for i, x in enumerate(xs)]


def _reset_rngs(layer):
    rng = getattr(layer, "rng", None)
    if isinstance(rng, np.random.Generator):
        layer.rng = np.random.default_rng(7)


def _forward_backward(layer, xs, gy_seed, special):
    _reset_rngs(layer)
    y = layer.forward(*xs, training=True)
    gy = values(gy_seed, np.shape(y), np.asarray(y).dtype, "plain")
    grads_in = layer.backward(gy)
    grads_in = grads_in if isinstance(grads_in, tuple) else (grads_in,)
    return y, [g for g in grads_in], {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("case", CASES, ids=repr)
@FUZZ_PER_CASE
@given(batch=st.integers(1, 3), lays=st.tuples(layouts, layouts, layouts), special=specials,
       seed=seeds)
def test_fuzz_layer(case, batch, lays, special, seed):
    ref_layer = _from_registry(case, np.float64)
    c64, l64 = _inputs(case, batch, np.float64, special, seed, lays)
    # division by a zero, denormal or huge divisor may overflow
    # (and exp, powers, reciprocals, products of huge values overflow)
    nonfinite = special in NONFINITE or (special != "plain" and any(
        op in case.id for op in ("div", "exp", "pow", "reciprocal", "prod")))
    # inference: any layout gives the C-contiguous result
    y_ref = ref_layer.forward(*c64)
    y_lay = ref_layer.forward(*l64)
    # shape-only layers (Flatten, Pad) may hand a big-endian input's dtype through
    check_result(y_lay, y_ref, np.float64, nonfinite, f"{case.id} forward, layouts {lays}",
                 any_byteorder=True)
    # training: the same, and backward gives gradients of the input's shapes
    try:
        y_t, gin, gparams = _forward_backward(ref_layer, l64, seed + 9, special)
    except ValueError as exc:   # BatchNorm: one value per channel cannot be normalised
        assert batch == 1 and "BatchNorm" in str(exc), exc
        clear_error(exc)
        return
    y_c, gin_c, gparams_c = _forward_backward(ref_layer, c64, seed + 9, special)
    check_result(y_t, y_c, np.float64, nonfinite, f"{case.id} training forward",
                 any_byteorder=True)
    for g, gc, x in zip(gin, gin_c, c64):
        assert g is not None and np.shape(g) == x.shape, f"{case.id}: input gradient shape"
        check_result(g, gc, np.float64, nonfinite, f"{case.id} input gradient",
                     any_byteorder=True)
    for name, g in gparams.items():
        assert g.shape == ref_layer.params[name].shape
        check_result(g, gparams_c[name], np.float64, nonfinite, f"{case.id} grad {name}")
    # float32 agrees with float64 on ordinary values
    if special in ("plain", "zeros"):
        layer32 = _from_registry(case, np.float32)
        c32, l32 = _inputs(case, batch, np.float32, special, seed, lays)
        y32 = layer32.forward(*l32)
        fresh = _from_registry(case, np.float64)   # running statistics untouched
        y64 = fresh.forward(*[x.astype(np.float64) for x in c32])
        check_result(y32, y64, np.float32, nonfinite, f"{case.id} float32", any_byteorder=True)


def _wrong_shape(shape, how):
    if how == "drop":
        return shape[:-1] if len(shape) > 1 else shape + (2,)
    if how == "add":
        return shape + (2,)
    if how == "grow":
        return shape[:-1] + (shape[-1] + 3,)
    return (shape[0] + 1,) + shape[1:]   # channels


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("how", ["drop", "add", "grow", "channels"])
def test_fuzz_layer_wrong_input_shapes(case, how):
    """A wrongly shaped input raises a clear error, or the layer takes any shape and works."""
    layer = _from_registry(case, np.float64)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2,) + _wrong_shape(s, how)) for s in case.shapes]
    try:
        y = layer.forward(*xs, training=True)
    except (ValueError, TypeError) as exc:
        clear_error(exc)
        return
    # accepted: it must be a real result, and backward must match it
    y = np.asarray(y)
    g = layer.backward(np.ones_like(y))
    g = g if isinstance(g, tuple) else (g,)
    assert all(np.shape(gi) == x.shape for gi, x in zip(g, xs)), case.id


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_fuzz_layer_junk_inputs(case):
    """Complex, object, string inputs or the wrong number of inputs: clear errors only."""
    layer = _from_registry(case, np.float32)
    shape = (2,) + case.shapes[0]
    n = len(case.shapes)
    for junk in (np.zeros(shape, complex), np.full(shape, "a"), np.empty(shape, object),
                 [[1, 2], [3]]):
        try:
            layer.forward(*([junk] * n))
        except (ValueError, TypeError) as exc:
            clear_error(exc)
    try:
        layer.forward(*([np.zeros(shape, np.float32)] * (n + 1)))
    except (ValueError, TypeError) as exc:
        clear_error(exc)
