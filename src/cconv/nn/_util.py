"""Argument checks and small helpers shared by the built-in layers."""
import numbers

import numpy as np

from .. import plugins


def run_kernel(name, *args, **kwargs):
    """Run op `name` (a cconv.ops function name, with ops' signature) through the
    plugin registry, so a plugin kernel can replace the built-in one.

    The one place layers reach the kernels.
    """
    return plugins.run_kernel(name, *args, **kwargs)


def check_int(name, value, minimum=None):
    """value as an int; ValueError naming the argument when it is not one (or too small)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_tuple(name, value, n, minimum):
    """An int or n ints (each >= minimum) as a tuple of n ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
        return tuple(check_int(name, v, minimum) for v in value)
    return (check_int(name, value, minimum),) * n


def check_float(name, value, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        rel = ">" if low_open else ">="
        raise ValueError(f"{name} must be {rel} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_axis(name, axis, ndim):
    """A batch-inclusive axis for arrays of ndim dimensions, normalised; never the batch axis."""
    axis = check_int(name, axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for {ndim}-D input (batch included)")
    axis %= ndim
    if axis == 0:
        raise ValueError(f"{name} must not be the batch axis 0")
    return axis


def as_rng(rng):
    """A numpy Generator from a Generator, a seed, or None (fresh OS entropy, no global state)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def as_shapes(input_shapes):
    """Per-sample shapes as a list of int tuples."""
    return [tuple(int(d) for d in s) for s in input_shapes]


def set_grad(layer, name, value):
    """Overwrite layer.grads[name] with value, in place when it fits so references stay live."""
    g = layer.grads.get(name)
    if value is None:
        if g is not None:
            g.fill(0)
        return
    if g is not None and g.shape == value.shape:
        np.copyto(g, value, casting="unsafe")
    else:
        layer.grads[name] = np.asarray(value, dtype=layer.params[name].dtype)


def saved(layer):
    """What the last training forward kept; RuntimeError when there was none."""
    s = layer.__dict__.get("_saved")
    if s is None:
        raise RuntimeError(f"{layer.type_name}.backward needs a forward(..., training=True) "
                           f"first")
    return s


def need_built(layer):
    if not layer.built:
        raise RuntimeError(f"{layer.type_name} is not built: call build(input_shapes, rng) "
                           f"first")
