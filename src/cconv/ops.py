"""Functional API: convolution, pooling and GEMM on numpy arrays.

Layouts are NCHW (NCL for 1-D). "conv" is cross-correlation, as in every deep
learning framework; `convolve`/`correlate` are the textbook operators.

Dtypes: float32 and float64 run natively and the result has the common float
type of the inputs (float32 with float64 gives float64). Integer and bool
inputs are converted to float64, float16 is computed in float32; complex,
object and string arrays are refused with TypeError. Any memory layout
(strided, negative strides, Fortran order, big-endian) is accepted and copied
to a native C-contiguous array when needed.

A batch of size 0 is allowed and gives an empty result; any other empty
dimension is an error. Every bad argument raises ValueError or TypeError
naming the argument and what was expected.
"""
import functools
import numbers

import numpy as np

from . import _kernels
from ._threads import get_num_threads

__all__ = [
    "conv1d", "conv2d", "conv1d_backward", "conv2d_backward",
    "max_pool1d", "max_pool2d", "max_pool1d_backward", "max_pool2d_backward",
    "avg_pool1d", "avg_pool2d", "avg_pool1d_backward", "avg_pool2d_backward",
    "global_avg_pool1d", "global_avg_pool2d",
    "global_avg_pool1d_backward", "global_avg_pool2d_backward",
    "gemm", "matmul", "contract_axis", "convolve", "correlate", "conv_output_size", "pool_output_size",
    "conv2d_runner", "max_pool2d_runner", "gemm_runner", "conv2d_algorithms",
    "set_flush_denormal", "get_flush_denormal", "clear_weight_cache",
]

# Refuse arrays whose element count could not be indexed safely or would ask
# for an absurd allocation (2**40 elements is 4 TiB in float32).
_MAX_ELEMENTS = 2**40


# ---------------------------------------------------------------- validation

def _float_dtype(name, a):
    kind = a.dtype.kind
    if kind == "f":
        return np.dtype(np.float32) if a.dtype.itemsize <= 4 else np.dtype(np.float64)
    if kind in "iub":
        return np.dtype(np.float64)
    raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")


def _as_array(name, a):
    if isinstance(a, np.ndarray):
        return a
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    if arr.dtype.kind in "OSUV":
        raise TypeError(f"{name} must be a real numeric array, got {type(a).__name__} "
                        f"with dtype {arr.dtype}")
    return arr


def _result_dtype(named_arrays):
    dtypes = [_float_dtype(n, a) for n, a in named_arrays if a is not None]
    return np.result_type(*dtypes)


def _prepare(name, a, dtype):
    """Native-endian, aligned, C-contiguous a in dtype (no copy when it already is).

    Aligned too: arrays rebuilt from network or file buffers (np.frombuffer at
    an odd offset) can be misaligned, and the kernels' vector loads need it."""
    if a.size > _MAX_ELEMENTS:
        raise ValueError(f"{name} has shape {a.shape} ({a.size} elements): more than "
                         f"cconv handles ({_MAX_ELEMENTS})")
    out = np.ascontiguousarray(a, dtype=dtype)
    if not out.flags.aligned:
        out = out.copy()
    return out


def _check_ndim(name, a, ndim, layout):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {a.shape}")


def _int_param(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > _MAX_ELEMENTS:   # would overflow the C kernels' 64-bit index arithmetic
        raise ValueError(f"{name} must be <= {_MAX_ELEMENTS}, got {value}")
    return value


def _tuple_param(name, value, n, minimum):
    """An int or a sequence of n ints, each >= minimum, as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
        return tuple(_int_param(name, v, minimum) for v in value)
    return (_int_param(name, value, minimum),) * n


def _check_size(what, shape):
    size = 1
    for d in shape:
        size *= int(d)
    if size > _MAX_ELEMENTS:
        raise ValueError(f"{what} would have shape {tuple(shape)} ({size} elements): "
                         f"more than cconv handles ({_MAX_ELEMENTS})")


def _check_spatial(name, shape, first_spatial=2):
    if any(int(d) == 0 for d in shape[1:]):
        raise ValueError(f"{name} has an empty dimension in shape {tuple(shape)}: only "
                         f"the batch dimension may be 0")


# ---------------------------------------------------------------- conv sizes

def conv_output_size(size, kernel, stride=1, pad_before=0, pad_after=0, dilation=1):
    """Output length of a convolution along one axis (< 1 when it does not fit)."""
    span = size + pad_before + pad_after - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's "same": out = ceil(size / stride), the odd pad after (as torch)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _conv_padding(padding, spatial, kernel, stride, dilation, nd):
    """Per-side pads ((before, after) per spatial axis) from the user's padding."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * nd
        if mode == "same":
            return tuple(_same_padding(s, k, st, d)
                         for s, k, st, d in zip(spatial, kernel, stride, dilation))
        raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', "
                         f"got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) != nd:
            raise ValueError(f"padding must be an int, {nd} ints or {nd} (before, after) "
                             f"pairs, got {padding!r}")
        pads = []
        for p in padding:
            if isinstance(p, (tuple, list)):
                if len(p) != 2:
                    raise ValueError(f"padding pairs must be (before, after), got {p!r}")
                pads.append((_int_param("padding", p[0], 0), _int_param("padding", p[1], 0)))
            else:
                v = _int_param("padding", p, 0)
                pads.append((v, v))
        return tuple(pads)
    v = _int_param("padding", padding, 0)
    return ((v, v),) * nd


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_hashable(v) for v in value)
    return value


@functools.lru_cache(maxsize=512)
def _conv_plan(fn, xshape, wshape, bshape, stride, padding, dilation, groups, nd):
    """Everything about a conv call that depends only on shapes and arguments.

    Cached: a network calls each layer with the same shapes again and again,
    and this validation would otherwise cost more than a small convolution.
    """
    layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    wlayout = "(C_out, C_in/groups, K)" if nd == 1 else "(C_out, C_in/groups, KH, KW)"
    if len(xshape) != nd + 2:
        raise ValueError(f"x must be {nd + 2}-D {layout}, got shape {xshape}")
    if len(wshape) != nd + 2:
        raise ValueError(f"w must be {nd + 2}-D {wlayout}, got shape {wshape}")
    _check_spatial("x", xshape)
    if any(d == 0 for d in wshape):
        raise ValueError(f"w has an empty dimension in shape {wshape}")
    groups = _int_param("groups", groups, 1)
    stride = _tuple_param("stride", stride, nd, 1)
    dilation = _tuple_param("dilation", dilation, nd, 1)
    n, c = xshape[:2]
    c_out, c_in_g = wshape[:2]
    if c % groups:
        raise ValueError(f"groups={groups} must divide the input channels of x "
                         f"(x.shape={xshape})")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide the output channels of w "
                         f"(w.shape={wshape})")
    if c_in_g * groups != c:
        raise ValueError(f"channel mismatch: x has {c} channels but w expects "
                         f"groups * w.shape[1] = {groups} * {c_in_g} = {groups * c_in_g} "
                         f"(x.shape={xshape}, w.shape={wshape})")
    if bshape is not None and bshape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},) to match w.shape={wshape}, "
                         f"got {bshape}")
    spatial, kernel = xshape[2:], wshape[2:]
    pads = _conv_padding(padding, spatial, kernel, stride, dilation, nd)
    out = tuple(conv_output_size(s, k, st, pb, pa, d)
                for s, k, st, (pb, pa), d in zip(spatial, kernel, stride, pads, dilation))
    if min(out) < 1:
        padded = tuple(s + pb + pa for s, (pb, pa) in zip(spatial, pads))
        raise ValueError(f"{fn}: kernel {kernel} with dilation {dilation} is larger than "
                         f"the padded input {padded} (x.shape={xshape}, w.shape={wshape}, "
                         f"padding={pads})")
    _check_size(f"{fn} output", (n, c_out) + out)
    if nd == 1:
        return _ConvPlan((n, c, 1, spatial[0]), (c_out, c_in_g, 1, kernel[0]),
                         (1, stride[0]), (0, 0, pads[0][0], pads[0][1]), (1, dilation[0]),
                         groups, (n, c_out) + out, (n, c_out, 1, out[0]))
    return _ConvPlan(xshape, wshape, stride, pads[0] + pads[1], dilation, groups,
                     (n, c_out) + out, (n, c_out) + out)


class _ConvPlan(tuple):
    """(shape_x, shape_w, stride, pads, dilation, groups, out_shape, out4), 4-D shapes."""
    __slots__ = ()

    def __new__(cls, *fields):
        return tuple.__new__(cls, fields)


def _conv_setup(fn, x, w, bias, stride, padding, dilation, groups, nd):
    x = _as_array("x", x)
    w = _as_array("w", w)
    bias = None if bias is None else _as_array("bias", bias)
    key = (fn, x.shape, w.shape, None if bias is None else bias.shape, stride,
           padding, dilation, groups, nd)
    try:
        plan = _conv_plan(*key)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        plan = _conv_plan(*(_hashable(k) for k in key))
    return x, w, bias, plan


def _conv_dtype(x, w, third, third_name="bias"):
    """Common float dtype; the common case (all the same native float) is quick."""
    dt = x.dtype
    if dt in _FLOATS and w.dtype is dt and (third is None or third.dtype is dt):
        return dt
    return _result_dtype([("x", x), ("w", w), (third_name, third)])


def _conv_epilogue(activation, algorithm, plan):
    """C codes of activation and algorithm, checked against the call's plan."""
    try:
        act = _kernels.ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {list(_kernels.ACTIVATIONS)}, "
                         f"got {activation!r}") from None
    try:
        algo = _kernels.ALGORITHMS[algorithm]
    except (KeyError, TypeError):
        raise ValueError(f"algorithm must be one of {list(_kernels.ALGORITHMS)}, "
                         f"got {algorithm!r}") from None
    if algorithm in ("winograd", "winograd_f4", "winograd_rows", "depthwise_direct"):
        shape_x, shape_w, stride4, pads4, dil4, groups = plan[:6]
        able = _algorithms(shape_x, shape_w, stride4, pads4, dil4, groups)
        if algorithm not in able:
            need = {"winograd_rows": "column dilation 1, column stride <= 4 and at most 4 "
                                     "taps per column phase (kw <= 4 * stride)",
                    "depthwise_direct": "groups == input channels > 1 and a padded plane "
                                        "within a few times the input and output sizes"}.get(
                        algorithm, "a 3x3 kernel, stride 1, dilation 1 and groups 1")
            raise ValueError(f"algorithm={algorithm!r} needs {need}; got x.shape={shape_x}, "
                             f"w.shape={shape_w}, stride={stride4}, dilation={dil4}, "
                             f"groups={groups}")
    return act, algo


def conv2d_algorithms(x, w, stride=1, padding=0, dilation=1, groups=1):
    """Names of the conv2d algorithms that apply to this call, the one "auto" runs first.

    Takes what conv2d takes (x and w as arrays, or just their shapes; padding in
    any of conv2d's forms, or the four per-side pads (top, bottom, left, right)).
    """
    x_shape = tuple(x.shape) if hasattr(x, "shape") else tuple(x)
    w_shape = tuple(w.shape) if hasattr(w, "shape") else tuple(w)
    if _is_pads4(padding):
        padding = ((padding[0], padding[1]), (padding[2], padding[3]))
    plan = _conv_plan("conv2d_algorithms", x_shape, w_shape, None,
                      *(_hashable(a) for a in (stride, padding, dilation)), groups, 2)
    return _algorithms(*plan[:6])


def _is_pads4(padding):
    """True for a flat (top, bottom, left, right): the C layer's form of the pads."""
    return (isinstance(padding, (tuple, list)) and len(padding) == 4
            and all(isinstance(p, (int, np.integer)) for p in padding))


@functools.lru_cache(maxsize=512)
def _algorithms(x_shape, w_shape, stride, pads, dilation, groups):
    """conv2d_algorithms on a checked plan: 4-D shapes, pairs and the four pads."""
    auto, winograd, rows = _kernels.conv2d_algorithm(tuple(x_shape), tuple(w_shape),
                                                     tuple(stride), tuple(pads),
                                                     tuple(dilation), groups)
    names = [auto] + [n for n in ("im2col_gemm", "direct", "winograd", "winograd_f4",
                                  "winograd_rows", "depthwise_direct") if n != auto]
    if not winograd:
        names.remove("winograd")
        names.remove("winograd_f4")
    if not rows:
        names.remove("winograd_rows")
    # auto picks depthwise_direct for every depthwise shape except those whose
    # zero-bordered plane copy would dwarf input and output (padding >> input)
    if not (groups > 1 and groups == x_shape[1] and auto == "depthwise_direct"):
        names.remove("depthwise_direct")
    return tuple(names)


def _conv_forward(fn, x, w, bias, stride, padding, dilation, groups, nd,
                  activation=None, algorithm="auto"):
    x, w, bias, plan = _conv_setup(fn, x, w, bias, stride, padding, dilation, groups, nd)
    shape_x, shape_w, stride4, pads4, dil4, groups, out_shape, out4 = plan
    act = algo = 0
    if activation is not None or algorithm != "auto":
        act, algo = _conv_epilogue(activation, algorithm, plan)
    dtype = _conv_dtype(x, w, bias)
    xs = _prepare("x", x, dtype)
    ws = _prepare("w", w, dtype)
    if nd == 1:
        xs, ws = xs.reshape(shape_x), ws.reshape(shape_w)
    b = None if bias is None else _prepare("bias", bias, dtype)
    y = np.empty(out4, dtype)
    _kernels.conv2d_forward(xs, ws, b, y, stride4, pads4, dil4, groups, get_num_threads(),
                            act, algo)
    return y.reshape(out_shape) if nd == 1 else y


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
           algorithm="auto"):
    """2-D cross-correlation of x (N, C, H, W) with w (C_out, C/groups, KH, KW).

    padding: int | (ph, pw) | ((top, bottom), (left, right)) | "valid" | "same".
    "same" gives an output of ceil(size / stride) with the odd pad at the
    bottom/right (torch's choice at stride 1, TensorFlow's at any stride).
    activation: None or "relu", applied inside the kernel after the bias
    (one pass over the output instead of two; NaN stays NaN).
    algorithm: "auto" (by shape, see conv2d_algorithms), "im2col_gemm",
    "direct" (register-blocked direct loops, no unfolded image: the pick
    for short reductions C/groups * KH * KW), "winograd" (F(2x2, 3x3): 3x3,
    stride 1, no dilation, groups 1), "winograd_f4" (F(4x4, 3x3), same
    conditions: 4x fewer multiplies than a direct sum, 2.25x with F(2x2, 3x3),
    at a float32 rounding error of about 1e-5 of the output's scale instead
    of 1e-6), "winograd_rows" (the direct loops with Winograd F(4, 4) along
    each output row: 7x7 stride-2 stems do half the multiplies; column
    dilation 1, kw <= 4 * column stride <= 16) or "depthwise_direct" (groups
    == input channels); a choice that does not apply raises ValueError.
    Returns (N, C_out, OH, OW).
    """
    return _conv_forward("conv2d", x, w, bias, stride, padding, dilation, groups, 2,
                         activation, algorithm)


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of x (N, C, L) with w (C_out, C/groups, K).

    padding: int | (left, right) | "valid" | "same". Returns (N, C_out, OL).
    """
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and \
            not any(isinstance(p, (tuple, list)) for p in padding):
        padding = (tuple(padding),)
    return _conv_forward("conv1d", x, w, bias, stride, padding, dilation, groups, 1)


def _conv_backward(fn, grad_out, x, w, stride, padding, dilation, groups, nd,
                   need_input, need_weight, need_bias, algorithm="auto"):
    try:
        algo = _kernels.BACKWARD_ALGORITHMS[algorithm]
    except (KeyError, TypeError):
        raise ValueError(f"algorithm must be one of {list(_kernels.BACKWARD_ALGORITHMS)}, "
                         f"got {algorithm!r}") from None
    x, w, _, plan = _conv_setup(fn, x, w, None, stride, padding, dilation, groups, nd)
    shape_x, shape_w, stride4, pads4, dil4, groups, out_shape, out4 = plan
    grad_out = _as_array("grad_out", grad_out)
    if grad_out.shape != out_shape:
        raise ValueError(f"grad_out must have the forward output's shape {out_shape}, "
                         f"got {grad_out.shape}")
    dtype = _conv_dtype(x, w, grad_out, "grad_out")
    dy = _prepare("grad_out", grad_out, dtype).reshape(out4)
    threads = get_num_threads()
    dx = dw = db = None
    if need_input:
        dx = np.empty(shape_x, dtype)
        _kernels.conv2d_backward_input(dy, _prepare("w", w, dtype).reshape(shape_w), dx,
                                       stride4, pads4, dil4, groups, threads, algo)
        dx = dx.reshape(x.shape)
    if need_weight or need_bias:
        dw = np.empty(shape_w, dtype)
        db = np.empty(shape_w[0], dtype) if need_bias else None
        _kernels.conv2d_backward_weight(dy, _prepare("x", x, dtype).reshape(shape_x), dw,
                                        db, stride4, pads4, dil4, groups, threads, algo)
        dw = dw.reshape(w.shape) if need_weight else None
    return dx, dw, db


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1,
                    need_input=True, need_weight=True, need_bias=True, algorithm="auto"):
    """Gradients of conv2d: (grad_x, grad_w, grad_bias); None for those not needed.

    algorithm: "auto" runs the fastest path for the shape: the input gradient
    of a stride-1 3x3 layer as a Winograd convolution of grad_out, the weight
    gradient of a layer whose forward pass runs Winograd F(4x4, 3x3) on many
    tiles by its adjoint (float32 error ~5e-6 of the gradient's scale instead
    of ~5e-7), depthwise and short reductions by direct loops.
    "im2col_gemm" runs im2col + GEMM (+ col2im) only, with its rounding: for
    gradient checks or curvature work that wants float32 results close to
    float64 ones. (Layers: ``cconv.plugins.use_kernel("conv2d_backward",
    "im2col_gemm_only")``.)
    """
    return _conv_backward("conv2d_backward", grad_out, x, w, stride, padding, dilation,
                          groups, 2, need_input, need_weight, need_bias, algorithm)


def conv1d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1,
                    need_input=True, need_weight=True, need_bias=True, algorithm="auto"):
    """Gradients of conv1d: (grad_x, grad_w, grad_bias); None for those not needed.
    algorithm: as for conv2d_backward."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and \
            not any(isinstance(p, (tuple, list)) for p in padding):
        padding = (tuple(padding),)
    return _conv_backward("conv1d_backward", grad_out, x, w, stride, padding, dilation,
                          groups, 1, need_input, need_weight, need_bias, algorithm)


# ---------------------------------------------------------------- pooling

def pool_output_size(size, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    """Output length of a pooling window along one axis (torch's rule)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    # the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_setup(fn, x_shape, kernel_size, stride, padding, dilation, ceil_mode, nd):
    key = (fn, tuple(x_shape), kernel_size, stride, padding, dilation, bool(ceil_mode), nd)
    try:
        return _pool_plan(*key)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return _pool_plan(*(_hashable(k) for k in key))


@functools.lru_cache(maxsize=512)
def _pool_plan(fn, x_shape, kernel_size, stride, padding, dilation, ceil_mode, nd):
    layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    if len(x_shape) != nd + 2:
        raise ValueError(f"x must be {nd + 2}-D {layout}, got shape {tuple(x_shape)}")
    _check_spatial("x", x_shape)
    kernel = _tuple_param("kernel_size", kernel_size, nd, 1)
    stride = kernel if stride is None else _tuple_param("stride", stride, nd, 1)
    padding = _tuple_param("padding", padding, nd, 0)
    dilation = _tuple_param("dilation", dilation, nd, 1)
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise ValueError(f"padding={padding} must be at most half of "
                             f"kernel_size={kernel}")
    spatial = tuple(int(s) for s in x_shape[2:])
    out = tuple(pool_output_size(s, k, st, p, d, bool(ceil_mode))
                for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(f"{fn}: kernel_size={kernel} (dilation {dilation}) is larger "
                         f"than the padded input {tuple(s + 2 * p for s, p in zip(spatial, padding))} "
                         f"(x.shape={tuple(x_shape)})")
    n, c = int(x_shape[0]), int(x_shape[1])
    if nd == 1:
        shape4 = (n, c, 1, spatial[0])
        out4 = (n, c, 1, out[0])
        params = ((1, kernel[0]), (1, stride[0]), (0, 0, padding[0], padding[0]),
                  (1, dilation[0]))
    else:
        shape4 = (n, c) + spatial
        out4 = (n, c) + out
        params = (kernel, stride, (padding[0], padding[0], padding[1], padding[1]),
                  dilation)
    _check_size(f"{fn} output", out4)
    return shape4, out4, (n, c) + out, params


def _input_for_pool(x):
    x = _as_array("x", x)
    dtype = _float_dtype("x", x)
    return x, dtype


def _max_pool(fn, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd):
    x, dtype = _input_for_pool(x)
    shape4, out4, out_shape, (k, s, p, d) = _pool_setup(
        fn, x.shape, kernel_size, stride, padding, dilation, ceil_mode, nd)
    xs = _prepare("x", x, dtype).reshape(shape4)
    y = np.empty(out4, dtype)
    idx = np.empty(out4, np.int64) if return_indices else None
    _kernels.max_pool2d_forward(xs, y, idx, k, s, p, d, get_num_threads())
    if return_indices:
        # for 1-D the flat index in the (1, L) plane is already the position in L
        return y.reshape(out_shape), idx.reshape(out_shape)
    return y.reshape(out_shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling of x (N, C, H, W); padding counts as -inf; NaN propagates.

    With return_indices, also returns int64 indices (flat h * W + w in each
    plane, like torch) for max_pool2d_backward.
    """
    return _max_pool("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, 2)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling of x (N, C, L); see max_pool2d."""
    return _max_pool("max_pool1d", x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, 1)


def _max_pool_backward(fn, grad_out, x, kernel_size, stride, padding, dilation,
                       ceil_mode, indices, nd):
    x, dtype = _input_for_pool(x)
    grad_out = _as_array("grad_out", grad_out)
    shape4, out4, out_shape, (k, s, p, d) = _pool_setup(
        fn, x.shape, kernel_size, stride, padding, dilation, ceil_mode, nd)
    if tuple(grad_out.shape) != out_shape:
        raise ValueError(f"grad_out must have the forward output's shape {out_shape}, "
                         f"got {grad_out.shape}")
    dtype = _result_dtype([("grad_out", grad_out), ("x", x)])
    if indices is None:
        xs = _prepare("x", x, dtype).reshape(shape4)
        idx = np.empty(out4, np.int64)
        _kernels.max_pool2d_forward(xs, np.empty(out4, dtype), idx, k, s, p, d,
                                    get_num_threads())
    else:
        indices = _as_array("indices", indices)
        if tuple(indices.shape) != out_shape:
            raise ValueError(f"indices must have the forward output's shape {out_shape}, "
                             f"got {indices.shape}")
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
        idx = np.ascontiguousarray(indices, dtype=np.int64).reshape(out4)
    dy = _prepare("grad_out", grad_out, dtype).reshape(out4)
    dx = np.empty(shape4, dtype)
    try:
        # the kernel checks the indices as it goes (two numpy reductions over
        # them cost a third of a large pooling layer's backward)
        _kernels.max_pool2d_backward(dy, idx, dx, get_num_threads())
    except ValueError:
        plane = shape4[2] * shape4[3]
        # -1 marks a window that lies entirely in the padding
        if idx.min() < -1 or idx.max() >= plane:
            raise ValueError(f"indices must lie in [-1, {plane}) (flat positions in a "
                             f"plane of x), got values in [{idx.min()}, {idx.max()}]") from None
        raise
    return dx.reshape(x.shape)


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Gradient of max_pool2d w.r.t. x: grad_out routed to each window's maximum.

    Pass the forward's indices to skip recomputing the argmax.
    """
    return _max_pool_backward("max_pool2d_backward", grad_out, x, kernel_size, stride,
                              padding, dilation, ceil_mode, indices, 2)


def max_pool1d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Gradient of max_pool1d w.r.t. x."""
    return _max_pool_backward("max_pool1d_backward", grad_out, x, kernel_size, stride,
                              padding, dilation, ceil_mode, indices, 1)


def _avg_pool(fn, x, kernel_size, stride, padding, ceil_mode, count_include_pad, nd):
    x, dtype = _input_for_pool(x)
    shape4, out4, out_shape, (k, s, p, _) = _pool_setup(
        fn, x.shape, kernel_size, stride, padding, 1, ceil_mode, nd)
    xs = _prepare("x", x, dtype).reshape(shape4)
    y = np.empty(out4, dtype)
    _kernels.avg_pool2d_forward(xs, y, k, s, p, bool(count_include_pad), get_num_threads())
    return y.reshape(out_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Average pooling of x (N, C, H, W), torch's divisor rules."""
    return _avg_pool("avg_pool2d", x, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, 2)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Average pooling of x (N, C, L)."""
    return _avg_pool("avg_pool1d", x, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, 1)


def _shape_arg(name, shape):
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from exc
    if any(d < 0 for d in shape):
        raise ValueError(f"{name} must not have negative sizes, got {shape}")
    return shape


def _avg_pool_backward(fn, grad_out, input_shape, kernel_size, stride, padding,
                       ceil_mode, count_include_pad, nd):
    input_shape = _shape_arg("input_shape", input_shape)
    if len(input_shape) != nd + 2:
        raise ValueError(f"input_shape must have {nd + 2} dimensions "
                         f"({'(N, C, L)' if nd == 1 else '(N, C, H, W)'}), got {input_shape}")
    grad_out = _as_array("grad_out", grad_out)
    shape4, out4, out_shape, (k, s, p, _) = _pool_setup(
        fn, input_shape, kernel_size, stride, padding, 1, ceil_mode, nd)
    if tuple(grad_out.shape) != out_shape:
        raise ValueError(f"grad_out must have the forward output's shape {out_shape}, "
                         f"got {grad_out.shape}")
    dtype = _float_dtype("grad_out", grad_out)
    dy = _prepare("grad_out", grad_out, dtype).reshape(out4)
    dx = np.empty(shape4, dtype)
    _kernels.avg_pool2d_backward(dy, dx, k, s, p, bool(count_include_pad), get_num_threads())
    return dx.reshape(input_shape)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool2d w.r.t. its input of shape input_shape."""
    return _avg_pool_backward("avg_pool2d_backward", grad_out, input_shape, kernel_size,
                              stride, padding, ceil_mode, count_include_pad, 2)


def avg_pool1d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool1d w.r.t. its input of shape input_shape."""
    return _avg_pool_backward("avg_pool1d_backward", grad_out, input_shape, kernel_size,
                              stride, padding, ceil_mode, count_include_pad, 1)


def global_avg_pool2d(x):
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1)."""
    x = _as_array("x", x)
    _check_ndim("x", x, 4, "(N, C, H, W)")
    return avg_pool2d(x, x.shape[2:])


def global_avg_pool1d(x):
    """Mean over L: (N, C, L) -> (N, C, 1)."""
    x = _as_array("x", x)
    _check_ndim("x", x, 3, "(N, C, L)")
    return avg_pool1d(x, x.shape[2])


def global_avg_pool2d_backward(grad_out, input_shape):
    """Gradient of global_avg_pool2d: grad_out spread evenly over each plane."""
    input_shape = _shape_arg("input_shape", input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape}")
    return avg_pool2d_backward(grad_out, input_shape, input_shape[2:])


def global_avg_pool1d_backward(grad_out, input_shape):
    """Gradient of global_avg_pool1d."""
    input_shape = _shape_arg("input_shape", input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (N, C, L), got {input_shape}")
    return avg_pool1d_backward(grad_out, input_shape, input_shape[2])


# ---------------------------------------------------------------- GEMM

def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    """alpha * op(a) @ op(b) + beta * c with cconv's own blocked GEMM.

    Runs on cconv's OpenMP threads, never on OpenBLAS's pool. Without c the
    result is a new array and beta must be 0.
    """
    a = _as_array("a", a)
    b = _as_array("b", b)
    if a.ndim != 2:
        _check_ndim("a", a, 2, "matrix")
    if b.ndim != 2:
        _check_ndim("b", b, 2, "matrix")
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb:
        raise ValueError(f"inner dimensions differ: op(a) is {m}x{k} but op(b) is "
                         f"{kb}x{n} (a.shape={a.shape}, b.shape={b.shape})")
    if m * n > _MAX_ELEMENTS:
        _check_size("gemm output", (m, n))
    if c is None:
        if beta != 0:
            raise ValueError(f"beta={beta!r} needs c (got c=None)")
        dtype = a.dtype
        if dtype not in _FLOATS or b.dtype is not dtype:
            dtype = _result_dtype([("a", a), ("b", b)])
        out = np.empty((m, n), dtype)
    else:
        c = _as_array("c", c)
        if c.shape != (m, n):
            raise ValueError(f"c must have shape {(m, n)}, got {c.shape}")
        dtype = _result_dtype([("a", a), ("b", b), ("c", c)])
        out = np.array(c, dtype=dtype, order="C", copy=True)
    _kernels.gemm(bool(trans_a), bool(trans_b), alpha, _prepare("a", a, dtype),
                  _prepare("b", b, dtype), beta, out, get_num_threads())
    return out


def matmul(a, b):
    """numpy.matmul's result (leading axes broadcast) computed with cconv's GEMM, so
    that it runs on cconv's threads and never wakes OpenBLAS's pool beside them."""
    a = _as_array("a", a)
    b = _as_array("b", b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul needs arrays of >= 2 dimensions, got a.shape={a.shape}, "
                         f"b.shape={b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ (a.shape={a.shape}, "
                         f"b.shape={b.shape})")
    dtype = _result_dtype([("a", a), ("b", b)])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    _check_size("matmul output", lead + (m, n))
    out = np.empty(lead + (m, n), dtype)
    threads = get_num_threads()
    if b.ndim == 2 and a.ndim > 2:            # one GEMM: stack a's rows
        rows = _prepare("a", np.ascontiguousarray(a).reshape(-1, k), dtype)
        _kernels.gemm(False, False, 1.0, rows, _prepare("b", b, dtype), 0.0,
                      out.reshape(-1, n), threads)
        return out
    a_b = np.broadcast_to(a, lead + (m, k))
    b_b = np.broadcast_to(b, lead + (k, n))
    flat = out.reshape(-1, m, n)
    for i, index in enumerate(np.ndindex(*lead)):
        _kernels.gemm(False, False, 1.0, _prepare("a", a_b[index], dtype),
                      _prepare("b", b_b[index], dtype), 0.0, flat[i], threads)
    return out


def contract_axis(x, m, axis):
    """y with y[..., o, ...] = sum_i m[o, i] x[..., i, ...] along `axis`, on cconv's
    GEMM (one call: the axis is moved to the front, the rest flattened)."""
    x = _as_array("x", x)
    m = _as_array("m", m)
    axis = axis % x.ndim
    if m.ndim != 2 or m.shape[1] != x.shape[axis]:
        raise ValueError(f"contract_axis: m must be (out, {x.shape[axis]}), got {m.shape}")
    moved = np.moveaxis(x, axis, 0)
    rest = moved.shape[1:]
    y = gemm(m, np.ascontiguousarray(moved).reshape(moved.shape[0], -1))
    return np.moveaxis(y.reshape((m.shape[0],) + rest), 0, axis)


# ---------------------------------------------------------------- planned calls
# A network calls each op with the same shapes again and again. A runner does
# every check of the call once and returns a function that only allocates the
# output and enters C. The C layer still verifies dtype, layout and every
# dimension of what it is given (TypeError/ValueError on a mismatch), so a
# runner misused with other arrays fails cleanly instead of reading wrong memory.

def conv2d_runner(x_shape, w_shape, has_bias, dtype, stride=1, padding=0, dilation=1,
                  groups=1, activation=None, algorithm="auto"):
    """run(x, w, bias) -> conv2d(x, w, bias, ..., activation, algorithm) for exactly
    these shapes and dtype.

    x, w (and bias) must be C-contiguous native arrays of dtype. activation="relu"
    fuses a following ReLU into the kernel (a graph's Conv2d + ReLU).
    """
    plan = _conv_plan("conv2d", tuple(x_shape), tuple(w_shape),
                      (w_shape[0],) if has_bias else None, _hashable(stride),
                      _hashable(padding), _hashable(dilation), groups, 2)
    _, _, stride4, pads4, dil4, groups, _, out4 = plan
    act, algo = _conv_epilogue(activation, algorithm, plan)
    dtype = np.dtype(dtype)
    kernel = _kernels.conv2d_forward

    def run(x, w, bias=None):
        y = np.empty(out4, dtype)
        kernel(x, w, bias, y, stride4, pads4, dil4, groups, get_num_threads(), act, algo)
        return y
    return run


def set_flush_denormal(on):
    """Flush denormal floats to zero inside cconv's conv and GEMM kernels (default on).

    The kernels set the CPU's flush-to-zero and denormals-are-zero modes on
    their own threads for the duration of a call and restore them before
    returning, so the caller's floating-point state never changes. Denormal
    operands cost ~100x a normal one on x86. Off, the kernels compute with
    IEEE denormals whatever mode the calling thread is in. The environment
    variable CCONV_FLUSH_DENORMAL=0 turns it off at start-up. No effect off x86.
    """
    _kernels.set_flush_denormal(bool(on))


def get_flush_denormal():
    """Whether the kernels flush denormals to zero (see set_flush_denormal)."""
    return _kernels.get_flush_denormal()


def clear_weight_cache():
    """Free the calling thread's cache of prepared convolution weights.

    Winograd's transformed kernels and the GEMM's packed weights are kept per
    thread between calls (at most 32 layers and 128 MiB per thread, keyed by
    an exact copy of the weights, so changed weights are never served stale)
    and freed when the thread exits; this frees them now.
    """
    _kernels.clear_weight_cache()


def max_pool2d_runner(x_shape, dtype, kernel_size, stride=None, padding=0, dilation=1,
                      ceil_mode=False):
    """run(x) -> max_pool2d(x, ...) for exactly this shape and dtype (no indices)."""
    shape4, out4, _, (k, s, p, d) = _pool_setup(
        "max_pool2d", tuple(x_shape), _hashable(kernel_size), _hashable(stride),
        _hashable(padding), _hashable(dilation), ceil_mode, 2)
    dtype = np.dtype(dtype)
    kernel = _kernels.max_pool2d_forward

    def run(x):
        y = np.empty(out4, dtype)
        kernel(x, y, None, k, s, p, d, get_num_threads())
        return y
    return run


def gemm_runner(m, n, k, dtype, trans_a=False, trans_b=False):
    """run(a, b) -> op(a) @ op(b) (m x n, inner size k) for C-contiguous arrays of dtype."""
    if min(m, n, k) < 0:
        raise ValueError(f"gemm_runner: sizes must be >= 0, got m={m}, n={n}, k={k}")
    dtype = np.dtype(dtype)
    trans_a, trans_b = bool(trans_a), bool(trans_b)
    kernel = _kernels.gemm

    def run(a, b):
        out = np.empty((m, n), dtype)
        kernel(trans_a, trans_b, 1.0, a, b, 0.0, out, get_num_threads())
        return out
    return run


# ---------------------------------------------------------------- textbook operators

def _textbook_setup(a, v, mode):
    a = _as_array("a", a)
    v = _as_array("v", v)
    if mode not in ("full", "same", "valid"):
        raise ValueError(f"mode must be 'full', 'same' or 'valid', got {mode!r}")
    if a.ndim not in (1, 2):
        raise ValueError(f"a must be 1-D or 2-D, got shape {a.shape}")
    if v.ndim != a.ndim:
        raise ValueError(f"v must have a's number of dimensions ({a.ndim}), got shape "
                         f"{v.shape}")
    if a.size == 0:
        raise ValueError(f"a must not be empty, got shape {a.shape}")
    if v.size == 0:
        raise ValueError(f"v must not be empty, got shape {v.shape}")
    dtype = _result_dtype([("a", a), ("v", v)])
    return a, v, dtype


def convolve(a, v, mode="full"):
    """Textbook convolution (a * v)_t = sum_tau a_tau v_(t - tau), zero padding.

    1-D or 2-D; modes and results as scipy.signal.convolve.
    """
    a, v, dtype = _textbook_setup(a, v, mode)
    if mode == "valid":
        if all(sa >= sv for sa, sv in zip(a.shape, v.shape)):
            pass
        elif all(sv >= sa for sa, sv in zip(a.shape, v.shape)):
            a, v = v, a  # convolution commutes; scipy swaps the same way
        else:
            raise ValueError(f"mode 'valid' needs one input at least as large as the "
                             f"other in every dimension, got a.shape={a.shape}, "
                             f"v.shape={v.shape}")
    nd = a.ndim
    a2 = _prepare("a", a, dtype).reshape((1, 1) + (1,) * (2 - nd) + a.shape)
    # flipping the kernel turns the framework's correlation into convolution
    v_flipped = np.flip(_prepare("v", v, dtype), axis=tuple(range(nd)))
    v2 = np.ascontiguousarray(v_flipped).reshape((1, 1) + (1,) * (2 - nd) + v.shape)
    if mode == "valid":
        pads = 0
    else:
        pads = tuple((k - 1, k - 1) for k in v2.shape[2:])
    full = conv2d(a2, v2, padding=pads)[0, 0]
    if nd == 1:
        full = full[0]
    if mode == "same":
        starts = [(f - s) // 2 for f, s in zip(full.shape, a.shape)]
        full = full[tuple(slice(st, st + s) for st, s in zip(starts, a.shape))]
        full = np.ascontiguousarray(full)
    return full


def correlate(a, v, mode="full"):
    """Textbook cross-correlation, equal to scipy.signal.correlate for real input."""
    a, v, _ = _textbook_setup(a, v, mode)
    return convolve(a, np.flip(v, axis=tuple(range(v.ndim))), mode)
