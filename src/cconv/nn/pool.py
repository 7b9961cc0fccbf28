"""Max / average pooling layers and GlobalAvgPool."""
import numpy as np

from .. import ops, plugins
from . import _util
from ._util import run_kernel
from .base import Layer


def _config_value(t, nd):
    return t[0] if nd == 1 else list(t)


class _PoolNd(Layer):
    nd = None
    kind = None  # "max" | "avg"
    type_name = None

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        nd = self.nd
        self.kernel_size = _util.check_tuple("kernel_size", kernel_size, nd, 1)
        self.stride = self.kernel_size if stride is None else \
            _util.check_tuple("stride", stride, nd, 1)
        self.padding = _util.check_tuple("padding", padding, nd, 0)
        for k, p in zip(self.kernel_size, self.padding):
            if p > k // 2:
                raise ValueError(f"padding={padding!r} must be at most half of "
                                 f"kernel_size={kernel_size!r}")
        self.ceil_mode = _util.check_bool("ceil_mode", ceil_mode)
        self._saved = None

    def _dilation(self):
        return (1,) * self.nd

    def get_config(self):
        nd = self.nd
        return {"kernel_size": _config_value(self.kernel_size, nd),
                "stride": _config_value(self.stride, nd),
                "padding": _config_value(self.padding, nd), "ceil_mode": self.ceil_mode}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) != self.nd + 1:
            layout = "(C, L)" if self.nd == 1 else "(C, H, W)"
            raise ValueError(f"{self.type_name} expects per-sample input {layout}, got {shape}")
        out = tuple(ops.pool_output_size(s, k, st, p, d, self.ceil_mode)
                    for s, k, st, p, d in zip(shape[1:], self.kernel_size, self.stride,
                                              self.padding, self._dilation()))
        if min(out) < 1:
            raise ValueError(f"{self.type_name}: kernel_size={self.kernel_size} does not fit "
                             f"the padded input {shape}")
        return (shape[0],) + out

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def _op_args(self):
        args = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode)
        if self.kind == "max":
            args["dilation"] = self._dilation()
        else:
            args["count_include_pad"] = self.count_include_pad
        return args


class _MaxPoolNd(_PoolNd):
    kind = "max"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = _util.check_tuple("dilation", dilation, self.nd, 1)

    def _dilation(self):
        return self.dilation

    def get_config(self):
        config = super().get_config()
        config["dilation"] = _config_value(self.dilation, self.nd)
        return config

    def forward(self, x, training=False):
        name = f"max_pool{self.nd}d"
        if not training:
            return run_kernel(name, x, **self._op_args())
        y, indices = run_kernel(name, x, return_indices=True, **self._op_args())
        # backward needs x's shape and dtype only, not its values (they are in indices)
        self._saved = (np.shape(x), np.asarray(x).dtype, indices)
        return y

    def plan_forward(self, input_shapes, dtype):
        """Inference function for one input shape (see Conv2d.plan_forward)."""
        if self.nd != 2:
            return self.forward
        run = ops.max_pool2d_runner(input_shapes[0], dtype, **self._op_args())
        builtin = ops.max_pool2d

        def forward(x):
            if plugins.static_kernel("max_pool2d") is builtin:
                try:
                    return run(x)
                except (TypeError, ValueError):
                    pass
            return self.forward(x)
        return forward

    def backward(self, grad_out):
        shape, dtype, indices = _util.saved(self)
        stand_in = np.broadcast_to(np.zeros((), dtype), shape)
        return run_kernel(f"max_pool{self.nd}d_backward", grad_out, stand_in,
                          indices=indices, **self._op_args())


class _AvgPoolNd(_PoolNd):
    kind = "avg"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = _util.check_bool("count_include_pad", count_include_pad)

    def get_config(self):
        config = super().get_config()
        config["count_include_pad"] = self.count_include_pad
        return config

    def forward(self, x, training=False):
        y = run_kernel(f"avg_pool{self.nd}d", x, **self._op_args())
        if training:
            self._saved = (np.shape(x),)
        return y

    def backward(self, grad_out):
        (shape,) = _util.saved(self)
        return run_kernel(f"avg_pool{self.nd}d_backward", grad_out, shape,
                          **self._op_args())


class MaxPool1d(_MaxPoolNd):
    """Max pooling of (N, C, L); padding counts as -inf."""
    nd = 1
    type_name = "MaxPool1d"


class MaxPool2d(_MaxPoolNd):
    """Max pooling of (N, C, H, W); padding counts as -inf."""
    nd = 2
    type_name = "MaxPool2d"


class AvgPool1d(_AvgPoolNd):
    """Average pooling of (N, C, L), torch's divisor rules."""
    nd = 1
    type_name = "AvgPool1d"


class AvgPool2d(_AvgPoolNd):
    """Average pooling of (N, C, H, W), torch's divisor rules."""
    nd = 2
    type_name = "AvgPool2d"


class GlobalAvgPool(Layer):
    """Mean over all spatial positions: (N, C, L) or (N, C, H, W) -> (N, C)."""
    type_name = "GlobalAvgPool"

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) not in (2, 3):
            raise ValueError(f"GlobalAvgPool expects per-sample input (C, L) or (C, H, W), "
                             f"got {shape}")
        return shape[:1]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"GlobalAvgPool expects (N, C, L) or (N, C, H, W), got shape "
                             f"{x.shape}")
        y = run_kernel(f"global_avg_pool{x.ndim - 2}d", x)
        if training:
            self._saved = (x.shape,)
        return y.reshape(y.shape[:2])

    def backward(self, grad_out):
        (shape,) = _util.saved(self)
        nd = len(shape) - 2
        grad = np.asarray(grad_out).reshape(tuple(shape[:2]) + (1,) * nd)
        return run_kernel(f"global_avg_pool{nd}d_backward", grad, shape)
