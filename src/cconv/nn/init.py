"""Weight initialisers. Every one draws from the Generator it is given (no global RNG).

Fans follow torch: for a weight (out, in, *kernel), fan_in = in * prod(kernel)
and fan_out = out * prod(kernel); a grouped conv's weight already has in/groups.
"""
import math

import numpy as np

__all__ = ["fans", "he_normal", "he_uniform", "xavier_normal", "xavier_uniform",
           "zeros", "ones", "INITIALIZERS", "get_initializer"]


def fans(shape):
    """(fan_in, fan_out) of a weight of this shape."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 dimensions (out, in, ...), got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def he_normal(rng, shape, dtype=np.float32):
    """Kaiming normal for ReLU: N(0, 2 / fan_in)."""
    std = math.sqrt(2.0 / fans(shape)[0])
    return (rng.standard_normal(shape) * std).astype(dtype)


def he_uniform(rng, shape, dtype=np.float32):
    """Kaiming uniform for ReLU: U(-b, b), b = sqrt(6 / fan_in)."""
    bound = math.sqrt(6.0 / fans(shape)[0])
    return rng.uniform(-bound, bound, shape).astype(dtype)


def xavier_normal(rng, shape, dtype=np.float32):
    """Glorot normal: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(dtype)


def xavier_uniform(rng, shape, dtype=np.float32):
    """Glorot uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(dtype)


def zeros(rng, shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def ones(rng, shape, dtype=np.float32):
    return np.ones(shape, dtype)


#: name -> initialiser(rng, shape, dtype); layers take the name (it goes into configs).
INITIALIZERS = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier": xavier_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
}


def get_initializer(name, argname="init"):
    """The weight initialiser called `name`; ValueError naming argname when unknown."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"{argname} must be one of {sorted(INITIALIZERS)}, got {name!r}")
    return INITIALIZERS[name]
