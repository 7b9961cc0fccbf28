"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
import numpy as np

from . import _util
from .base import Layer


class Dropout(Layer):
    """Training: y = x * mask with mask in {0, 1/(1-p)}; inference: identity.

    Masks come from the layer's own Generator seeded with `seed` (None: fresh
    entropy), so a seeded layer draws the same sequence of masks every run.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = _util.check_float("p", p, 0.0, 1.0)
        if seed is not None:
            seed = _util.check_int("seed", seed, 0)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._saved = None

    def get_config(self):
        return {"p": self.p, "seed": self.seed}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _util.as_shapes(input_shapes)[0]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if not training or self.p == 0.0:
            if training:
                self._saved = (None,)
            return x
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        keep = self.rng.random(x.shape, dtype=np.float32 if dtype == np.float32
                               else np.float64) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        mask = keep.astype(dtype)
        mask *= dtype.type(scale)
        self._saved = (mask,)
        return x * mask

    def backward(self, grad_out):
        (mask,) = _util.saved(self)
        return grad_out if mask is None else grad_out * mask
