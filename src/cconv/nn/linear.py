"""Linear (fully connected) layer: y = x @ W.T + b, W of shape (out, in) as torch.

Uses cconv.ops.gemm, not numpy's matmul. Alone, numpy's OpenBLAS is faster
(batch 64, 256->120, one training step: 97 vs 208 us on 2 cores), but in a net
the Linear runs right after OpenMP conv/pool kernels, and OpenBLAS's own thread
pool then fights the still-spinning OpenMP threads: the same step took ~7 ms
with numpy against ~0.4 ms with cconv's gemm, which shares cconv's threads
(bench/bench_linear.py, bench/results/linear_gemm_vs_numpy.txt). gemm is not
an op of the kernel registry (yet), so it is called directly.
"""
import numpy as np

from .. import ops
from . import _util
from .base import Layer
from .init import get_initializer, zeros


class Linear(Layer):
    """(N, ..., in_features) -> (N, ..., out_features)."""

    def __init__(self, in_features, out_features, bias=True, init="he"):
        super().__init__()
        self.in_features = _util.check_int("in_features", in_features, 1)
        self.out_features = _util.check_int("out_features", out_features, 1)
        self.bias = _util.check_bool("bias", bias)
        get_initializer(init)
        self.init = init
        self._saved = None

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "init": self.init}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"Linear expects per-sample input (..., in_features="
                             f"{self.in_features}), got {shape}")
        return shape[:-1] + (self.out_features,)

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        rng = _util.as_rng(rng)
        self.params, self.grads, self.trainable = {}, {}, {}
        self.add_param("weight", get_initializer(self.init)(
            rng, (self.out_features, self.in_features)))
        if self.bias:
            self.add_param("bias", zeros(rng, (self.out_features,)))
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        _util.need_built(self)
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input (N, ..., {self.in_features}), got shape "
                             f"{x.shape}")
        x2 = x.reshape(-1, self.in_features)
        y = ops.gemm(x2, self.params["weight"], trans_b=True)
        y = y.reshape(x.shape[:-1] + (self.out_features,))
        if self.bias:
            y += self.params["bias"]
        if training:
            self._saved = (x,)
        return y

    def plan_forward(self, input_shapes, dtype):
        """Inference function for one input shape: checks done once, not per call."""
        shape = tuple(input_shapes[0])
        self.output_shape([shape[1:]])
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        run = ops.gemm_runner(rows, self.out_features, self.in_features, dtype, trans_b=True)
        out_shape = shape[:-1] + (self.out_features,)
        params, bias = self.params, self.bias

        def forward(x):
            try:
                y = run(x.reshape(rows, self.in_features), params["weight"])
            except (TypeError, ValueError, AttributeError):
                return self.forward(x)
            if bias:
                y += params["bias"]
            return y.reshape(out_shape)
        return forward

    can_skip_input_grad = True

    def backward(self, grad_out, need_input_grad=True):
        (x,) = _util.saved(self)
        g2 = np.asarray(grad_out).reshape(-1, self.out_features)
        if self.trainable["weight"]:
            x2 = x.reshape(-1, self.in_features)
            _util.set_grad(self, "weight", ops.gemm(g2, x2, trans_a=True))
        else:
            _util.set_grad(self, "weight", None)
        if self.bias:
            _util.set_grad(self, "bias", g2.sum(axis=0) if self.trainable["bias"] else None)
        if not need_input_grad:
            return None
        return ops.gemm(g2, self.params["weight"]).reshape(x.shape)
