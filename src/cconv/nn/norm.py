"""Batch normalisation over the channel axis 1 (torch's semantics).

Training normalises with the batch's mean and biased variance and moves the
running statistics towards the batch's (running_var takes the unbiased
variance); inference uses the running statistics. The running statistics are
non-trainable parameters, so they are saved and loaded with the weights.
"""
import numpy as np

from . import _util
from .base import Layer


class _BatchNorm(Layer):
    sample_ndims = ()
    type_name = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.num_features = _util.check_int("num_features", num_features, 1)
        self.eps = _util.check_float("eps", eps, 0.0, low_open=True)
        self.momentum = _util.check_float("momentum", momentum, 0.0, 1.0)
        self.affine = _util.check_bool("affine", affine)
        self._saved = None

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps,
                "momentum": self.momentum, "affine": self.affine}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) not in self.sample_ndims or shape[0] != self.num_features:
            layouts = {1: "(C,)", 2: "(C, L)", 3: "(C, H, W)"}
            allowed = " or ".join(layouts[n] for n in self.sample_ndims)
            raise ValueError(f"{self.type_name} expects per-sample input {allowed} with "
                             f"C={self.num_features}, got {shape}")
        return shape

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        names = ("weight", "bias") * self.affine + ("running_mean", "running_var")
        return {name: (self.num_features,) for name in names}

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        self.params, self.grads, self.trainable = {}, {}, {}
        c = self.num_features
        if self.affine:
            self.add_param("weight", np.ones(c, np.float32))
            self.add_param("bias", np.zeros(c, np.float32))
        self.add_param("running_mean", np.zeros(c, np.float32), trainable=False)
        self.add_param("running_var", np.ones(c, np.float32), trainable=False)
        super().build(input_shapes, rng)

    def _as3d(self, x):
        x = np.asarray(x)
        if x.ndim - 1 not in self.sample_ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{self.type_name}(num_features={self.num_features}) got input "
                             f"of shape {x.shape}")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        return x.reshape(x.shape[0], x.shape[1], -1)

    def _affine(self):
        if self.affine:
            return self.params["weight"][:, None], self.params["bias"][:, None]
        return None, None

    @property
    def frozen(self):
        """True when weight and bias are both frozen: the layer then trains as in inference.

        A fine-tuned net's frozen BatchNorm keeps the statistics it was
        trained with: normalising by a small new data set's batch
        statistics (and moving the running ones towards them) would change
        what the frozen layers after it see. Without affine parameters there
        is nothing to freeze, and the layer always uses batch statistics.
        """
        t = self.trainable
        return self.affine and not (t.get("weight", True) or t.get("bias", True))

    def forward(self, x, training=False):
        _util.need_built(self)
        x3 = self._as3d(x)
        gamma, beta = self._affine()
        if not training or self.frozen:
            inv_std = 1.0 / np.sqrt(self.params["running_var"] + self.eps)
            scale = inv_std if gamma is None else gamma[:, 0] * inv_std
            shift = -self.params["running_mean"] * scale
            if beta is not None:
                shift = shift + beta[:, 0]
            dtype = np.result_type(x3, scale)
            scale = scale.astype(dtype)[:, None]
            y = x3 * scale + shift.astype(dtype)[:, None]
            if training:   # frozen: backward is the affine map's, y = scale*x + shift
                self._saved = (None, scale, np.shape(x))
            return y.reshape(np.shape(x))
        m = x3.shape[0] * x3.shape[2]
        if m < 2:
            raise ValueError(f"{self.type_name} needs more than one value per channel in "
                             f"training, got input of shape {np.shape(x)}")
        mean = x3.mean(axis=(0, 2))
        xc = x3 - mean[:, None]
        var = np.mean(xc * xc, axis=(0, 2))
        inv_std = 1.0 / np.sqrt(var + x3.dtype.type(self.eps))
        xhat = xc * inv_std[:, None]
        y = xhat if gamma is None else xhat * gamma + beta
        mom = self.momentum
        rm, rv = self.params["running_mean"], self.params["running_var"]
        rm[...] = (1 - mom) * rm + mom * mean
        rv[...] = (1 - mom) * rv + mom * var * (m / (m - 1))
        self._saved = (xhat, inv_std, np.shape(x))
        return y.reshape(np.shape(x))

    def backward(self, grad_out):
        xhat, inv_std, shape = _util.saved(self)
        if xhat is None:   # frozen: inv_std holds the per-channel scale
            for name in ("weight", "bias"):
                _util.set_grad(self, name, None)
            g = np.asarray(grad_out)
            return (g.reshape(g.shape[0], self.num_features, -1) * inv_std).reshape(shape)
        g = np.asarray(grad_out).reshape(xhat.shape)
        gamma, _ = self._affine()
        if self.affine:
            _util.set_grad(self, "weight", (g * xhat).sum(axis=(0, 2))
                           if self.trainable["weight"] else None)
            _util.set_grad(self, "bias", g.sum(axis=(0, 2)) if self.trainable["bias"] else None)
        dxhat = g if gamma is None else g * gamma
        dx = dxhat - dxhat.mean(axis=(0, 2), keepdims=True)
        dx -= xhat * (dxhat * xhat).mean(axis=(0, 2), keepdims=True)
        dx *= inv_std[:, None]
        return dx.reshape(shape)


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) or (N, C, L) over the batch (and length) per channel."""
    sample_ndims = (1, 2)
    type_name = "BatchNorm1d"


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) over batch and space per channel."""
    sample_ndims = (3,)
    type_name = "BatchNorm2d"
