"""ConvTranspose2d: the gradient of a convolution with respect to its input, as a layer.

A transposed convolution is exactly conv2d_backward's input gradient, so it
runs on the same kernels: forward is conv2d_backward(need_input) of a conv
whose weight is ours (torch and ONNX store it (C_in, C_out / groups, kH, kW),
which is the layout that conv's weight has), and backward is conv2d forward.
"""
import numpy as np

from . import _util
from ._util import run_kernel
from .base import Layer
from .conv import (
    _init_weight_and_bias,
    _jsonable,
    _norm_padding,
    _pads_per_axis,
    _weight_and_bias_shapes,
)
from .init import get_initializer


class ConvTranspose2d(Layer):
    """(N, in_ch, H, W) -> (N, out_ch, H', W'), H' = (H-1)*stride - pads + dilation*(k-1)
    + output_padding + 1.

    padding: int | (ph, pw) | ((top, bottom), (left, right)): rows and columns
    removed from the full output. output_padding (< stride or < dilation)
    adds rows/columns at the bottom/right.
    """

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, output_padding=0,
                 dilation=1, groups=1, bias=True, init="he"):
        super().__init__()
        self.in_ch = _util.check_int("in_ch", in_ch, 1)
        self.out_ch = _util.check_int("out_ch", out_ch, 1)
        self.kernel_size = _util.check_tuple("kernel_size", kernel_size, 2, 1)
        self.stride = _util.check_tuple("stride", stride, 2, 1)
        padding = _norm_padding(padding, 2)
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int or a tuple for ConvTranspose2d, "
                             f"got {padding!r}")
        self.padding = padding
        self.output_padding = _util.check_tuple("output_padding", output_padding, 2, 0)
        self.dilation = _util.check_tuple("dilation", dilation, 2, 1)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"output_padding must be smaller than stride or dilation, "
                                 f"got output_padding={self.output_padding}, stride="
                                 f"{self.stride}, dilation={self.dilation}")
        self.groups = _util.check_int("groups", groups, 1)
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_ch={self.in_ch} and "
                             f"out_ch={self.out_ch}")
        self.bias = _util.check_bool("bias", bias)
        get_initializer(init)
        self.init = init
        self._saved = None

    def get_config(self):
        return {"in_ch": self.in_ch, "out_ch": self.out_ch,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": _jsonable(self.padding),
                "output_padding": list(self.output_padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias,
                "init": self.init}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) != 3 or shape[0] != self.in_ch:
            raise ValueError(f"ConvTranspose2d expects per-sample input (C, H, W) with "
                             f"C={self.in_ch}, got {shape}")
        out = tuple((s - 1) * st - pb - pa + d * (k - 1) + op + 1 for s, st, (pb, pa), d, k, op
                    in zip(shape[1:], self.stride, _pads_per_axis(self.padding, 2),
                           self.dilation, self.kernel_size, self.output_padding))
        if min(out) < 1:
            raise ValueError(f"ConvTranspose2d: padding={self.padding} removes the whole "
                             f"output of input {shape}")
        return (self.out_ch,) + out

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        return _weight_and_bias_shapes(self, (self.in_ch, self.out_ch // self.groups))

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        rng = _util.as_rng(rng)
        # the weight of the equivalent forward conv (C_in, C_out / groups, kH, kW), its fans too
        _init_weight_and_bias(self, (self.in_ch, self.out_ch // self.groups), rng)
        super().build(input_shapes, rng)

    def _op_args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def forward(self, x, training=False):
        _util.need_built(self)
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        out = self.output_shape([x.shape[1:]])
        w = self.params["weight"]
        dtype = np.result_type(x, w)
        # conv2d_backward reads only the shape of its input argument here
        shape_only = np.broadcast_to(np.zeros((), dtype), (x.shape[0],) + out)
        y, _, _ = run_kernel("conv2d_backward", x, shape_only, w, need_input=True,
                             need_weight=False, need_bias=False, **self._op_args())
        if self.bias:
            y += self.params["bias"].astype(dtype)[:, None, None]
        if training:
            self._saved = (x,)
        return y

    def backward(self, grad_out):
        (x,) = _util.saved(self)
        g = np.asarray(grad_out)
        w = self.params["weight"]
        need_w = self.trainable["weight"]
        if need_w:
            # dL/dw of y = conv^T(x) is dL/dw of the conv that maps g to x
            _, dw, _ = run_kernel("conv2d_backward", x, g, w, need_input=False,
                                  need_weight=True, need_bias=False, **self._op_args())
        _util.set_grad(self, "weight", dw if need_w else None)
        if self.bias:
            _util.set_grad(self, "bias", g.sum(axis=(0, 2, 3)) if self.trainable["bias"]
                           else None)
        return run_kernel("conv2d", g, w, None, **self._op_args())
