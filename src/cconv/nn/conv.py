"""Conv1d and Conv2d: cross-correlation layers (like every DL framework)."""
from .. import ops, plugins
from . import _util
from ._util import run_kernel
from .base import Layer
from .init import get_initializer, zeros


def _norm_padding(padding, nd):
    """Canonical padding: 'valid' | 'same' | int | nd ints | nd (before, after) pairs (tuples)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same"):
            raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', "
                             f"got {padding!r}")
        return mode
    if not isinstance(padding, (tuple, list)):
        return _util.check_int("padding", padding, 0)
    if nd == 1 and len(padding) == 2 and not any(isinstance(p, (tuple, list)) for p in padding):
        return tuple(_util.check_int("padding", p, 0) for p in padding)  # (left, right)
    if len(padding) != nd:
        raise ValueError(f"padding must be an int, {nd} ints or {nd} (before, after) pairs, "
                         f"got {padding!r}")
    out = []
    for p in padding:
        if isinstance(p, (tuple, list)):
            if len(p) != 2:
                raise ValueError(f"padding pairs must be (before, after), got {padding!r}")
            out.append(tuple(_util.check_int("padding", v, 0) for v in p))
        else:
            out.append(_util.check_int("padding", p, 0))
    if all(isinstance(p, int) for p in out):
        return tuple(out)
    return tuple(p if isinstance(p, tuple) else (p, p) for p in out)


def _pads_per_axis(padding, nd):
    """((before, after), ...) per spatial axis for a numeric canonical padding."""
    if isinstance(padding, int):
        return ((padding, padding),) * nd
    if nd == 1 and len(padding) == 2 and isinstance(padding[0], int):
        return (tuple(padding),)
    return tuple(p if isinstance(p, tuple) else (p, p) for p in padding)


def _jsonable(v):
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


def _init_weight_and_bias(layer, channel_dims, rng):
    """Fresh weight (channel_dims + kernel_size, layer.init) and zero bias (out_ch,)
    when layer.bias: the parameters of a convolution and a transposed one alike."""
    layer.params, layer.grads, layer.trainable = {}, {}, {}
    wshape = tuple(channel_dims) + layer.kernel_size
    layer.add_param("weight", get_initializer(layer.init)(rng, wshape))
    if layer.bias:
        layer.add_param("bias", zeros(rng, (layer.out_ch,)))


def _weight_and_bias_shapes(layer, channel_dims):
    """The shapes _init_weight_and_bias makes."""
    shapes = {"weight": tuple(channel_dims) + layer.kernel_size}
    if layer.bias:
        shapes["bias"] = (layer.out_ch,)
    return shapes


class _ConvNd(Layer):
    nd = None
    type_name = None

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, init="he"):
        super().__init__()
        nd = self.nd
        self.in_ch = _util.check_int("in_ch", in_ch, 1)
        self.out_ch = _util.check_int("out_ch", out_ch, 1)
        self.kernel_size = _util.check_tuple("kernel_size", kernel_size, nd, 1)
        self.stride = _util.check_tuple("stride", stride, nd, 1)
        self.padding = _norm_padding(padding, nd)
        self.dilation = _util.check_tuple("dilation", dilation, nd, 1)
        self.groups = _util.check_int("groups", groups, 1)
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_ch={self.in_ch} and "
                             f"out_ch={self.out_ch}")
        self.bias = _util.check_bool("bias", bias)
        get_initializer(init)
        self.init = init
        self._saved = None

    def get_config(self):
        unwrap = (lambda t: t[0]) if self.nd == 1 else _jsonable
        return {"in_ch": self.in_ch, "out_ch": self.out_ch,
                "kernel_size": unwrap(self.kernel_size), "stride": unwrap(self.stride),
                "padding": _jsonable(self.padding), "dilation": unwrap(self.dilation),
                "groups": self.groups, "bias": self.bias, "init": self.init}

    def _check_input(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(shape) != self.nd + 1 or shape[0] != self.in_ch:
            layout = "(C, L)" if self.nd == 1 else "(C, H, W)"
            raise ValueError(f"{self.type_name} expects per-sample input {layout} with "
                             f"C={self.in_ch}, got {shape}")
        return shape

    def output_shape(self, input_shapes):
        shape = self._check_input(input_shapes)
        spatial = shape[1:]
        if self.padding == "same":
            out = tuple(-(-s // st) for s, st in zip(spatial, self.stride))
        else:
            pads = ((0, 0),) * self.nd if self.padding == "valid" else \
                _pads_per_axis(self.padding, self.nd)
            out = tuple(ops.conv_output_size(s, k, st, pb, pa, d) for s, k, st, (pb, pa), d
                        in zip(spatial, self.kernel_size, self.stride, pads, self.dilation))
        if min(out) < 1:
            raise ValueError(f"{self.type_name}: kernel_size={self.kernel_size} (dilation "
                             f"{self.dilation}) does not fit the padded input {shape}")
        return (self.out_ch,) + out

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        return _weight_and_bias_shapes(self, (self.out_ch, self.in_ch // self.groups))

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        rng = _util.as_rng(rng)
        _init_weight_and_bias(self, (self.out_ch, self.in_ch // self.groups), rng)
        super().build(input_shapes, rng)

    def _op_args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def forward(self, x, training=False):
        _util.need_built(self)
        name = f"conv{self.nd}d"
        y = run_kernel(name, x, self.params["weight"], self.params.get("bias"),
                       **self._op_args())
        if training:
            self._saved = (x,)
        return y

    def plan_forward(self, input_shapes, dtype):
        """Inference function for one input shape: checks done once, not per call.

        Used while the built-in kernel is the one run_kernel would pick; a
        plugin or forced kernel, or an input of another dtype or layout,
        takes the general path.
        """
        if self.nd != 2:
            return self.forward
        run = ops.conv2d_runner(input_shapes[0], self.params["weight"].shape, self.bias,
                                dtype, **self._op_args())
        builtin, params = ops.conv2d, self.params

        def forward(x):
            if plugins.static_kernel("conv2d") is builtin:
                try:
                    return run(x, params["weight"], params.get("bias"))
                except (TypeError, ValueError):
                    pass  # the general path converts the input or explains the error
            return self.forward(x)
        return forward

    can_skip_input_grad = True

    def backward(self, grad_out, need_input_grad=True):
        (x,) = _util.saved(self)
        need_w = self.trainable["weight"]
        need_b = self.bias and self.trainable["bias"]
        dx, dw, db = run_kernel(f"conv{self.nd}d_backward", grad_out, x,
                                self.params["weight"], need_input=bool(need_input_grad),
                                need_weight=need_w,
                                need_bias=need_b, **self._op_args())
        _util.set_grad(self, "weight", dw)
        if self.bias:
            _util.set_grad(self, "bias", db)
        return dx


class Conv1d(_ConvNd):
    """1-D convolution of (N, C, L); padding: int | (left, right) | 'valid' | 'same'."""
    nd = 1
    type_name = "Conv1d"


class Conv2d(_ConvNd):
    """2-D convolution of (N, C, H, W).

    padding: int | (ph, pw) | ((top, bottom), (left, right)) | 'valid' | 'same'.
    init: weight initialiser name ('he' = Kaiming normal, 'xavier', ...); bias starts at 0.
    """
    nd = 2
    type_name = "Conv2d"
