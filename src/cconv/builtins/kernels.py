"""Built-in plugin: the kernels of cconv's ops.

Priorities: 0 for the C core (general), 10 for the C core's special paths
(chosen only where they apply), -10 for the C core restricted to im2col +
GEMM (backward ops) and -100 for the numpy references (neither chosen
automatically; force them with cconv.plugins.use_kernel).
"""
import functools

import numpy as np

from cconv import ops
from cconv.hookspecs import hookimpl

from . import reference

C_CORE, SPECIAL, GEMM_ONLY, REFERENCE = 0, 10, -10, -100

# op -> C-core kernel name; every op of cconv.ops that a layer runs.
C_KERNELS = {
    "conv1d": "im2col_gemm", "conv2d": "im2col_gemm",
    "conv1d_backward": "im2col_gemm", "conv2d_backward": "im2col_gemm",
    "max_pool1d": "direct", "max_pool2d": "direct",
    "max_pool1d_backward": "direct", "max_pool2d_backward": "direct",
    "avg_pool1d": "direct", "avg_pool2d": "direct",
    "avg_pool1d_backward": "direct", "avg_pool2d_backward": "direct",
    "global_avg_pool1d": "direct", "global_avg_pool2d": "direct",
    "global_avg_pool1d_backward": "direct", "global_avg_pool2d_backward": "direct",
}


def is_depthwise(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, **_):
    """The C core's direct depthwise path: one input channel per group (groups == C_in > 1)."""
    return groups > 1 and np.ndim(x) == 4 and np.shape(x)[1] == groups


def is_depthwise_backward(grad_out, x, w, *args, groups=1, **kwargs):
    return is_depthwise(x, w, groups=groups)


def _auto_algorithm(x, w, bias, stride, padding, dilation, groups):
    """The algorithm ops.conv2d runs by itself for this call, or None for a bad call."""
    try:
        plan = ops._conv_setup("conv2d", x, w, bias, stride, padding, dilation, groups, 2)[3]
        return ops.conv2d_algorithms(*plan[:6])[0]
    except (TypeError, ValueError):
        return None


def is_winograd(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, **_):
    """The C core's Winograd F(2x2, 3x3) path: what ops.conv2d picks by itself for
    3x3 stride-1 convolutions with enough channels and tiles (ops.conv2d_algorithms)."""
    return _auto_algorithm(x, w, bias, stride, padding, dilation, groups) == "winograd"


def is_winograd_f4(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, **_):
    """The C core's Winograd F(4x4, 3x3) path: ops.conv2d's own pick for 3x3
    stride-1 convolutions with enough channels and 4x4 tiles."""
    return _auto_algorithm(x, w, bias, stride, padding, dilation, groups) == "winograd_f4"


def is_direct(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, **_):
    """The C core's direct register-blocked path: what ops.conv2d picks by itself
    when the reduction C_in/groups * kh * kw is short (LeNet, 7x7 stems)."""
    return _auto_algorithm(x, w, bias, stride, padding, dilation, groups) == "direct"


def is_winograd_rows(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, **_):
    """The C core's direct path with Winograd F(4, 4) along output rows: ops.conv2d's
    own pick for 7x7 (and 8x8) stride-2 stems on short reductions."""
    return _auto_algorithm(x, w, bias, stride, padding, dilation, groups) == "winograd_rows"


def no_indices(*args, return_indices=False, **kwargs):
    """The references return the pooled values only, not argmax indices."""
    return not return_indices


@hookimpl
def register_kernels(register):
    for op, name in C_KERNELS.items():
        register(op, name, getattr(ops, op), priority=C_CORE,
                 description="C core (cconv._core)")
    # The C core takes this path by itself inside ops.conv2d; registering it
    # names the choice, so it can be listed, forced, and beaten by a plugin.
    register("conv2d", "depthwise_direct", ops.conv2d, supports=is_depthwise,
             priority=SPECIAL, description="C core, direct depthwise loop")
    register("conv2d", "winograd", ops.conv2d, supports=is_winograd, priority=SPECIAL,
             description="C core, Winograd F(2x2, 3x3) (force it with "
                         "ops.conv2d(..., algorithm='winograd'))")
    register("conv2d", "winograd_f4", ops.conv2d, supports=is_winograd_f4, priority=SPECIAL,
             description="C core, Winograd F(4x4, 3x3) (force it with "
                         "ops.conv2d(..., algorithm='winograd_f4'))")
    register("conv2d", "winograd_rows", ops.conv2d, supports=is_winograd_rows,
             priority=SPECIAL,
             description="C core, direct convolution with Winograd F(4, 4) along rows "
                         "(force it with ops.conv2d(..., algorithm='winograd_rows'))")
    register("conv2d", "direct", ops.conv2d, supports=is_direct, priority=SPECIAL,
             description="C core, direct convolution for short reductions (force it "
                         "with ops.conv2d(..., algorithm='direct'))")
    register("conv2d_backward", "depthwise_direct", ops.conv2d_backward,
             supports=is_depthwise_backward, priority=SPECIAL,
             description="C core, direct depthwise loop")
    # never picked by itself (below the C core's): forced, it keeps a
    # network's gradients on im2col + GEMM's rounding (no Winograd adjoints)
    for op in ("conv1d_backward", "conv2d_backward"):
        register(op, "im2col_gemm_only", functools.partial(getattr(ops, op),
                                                           algorithm="im2col_gemm"),
                 priority=GEMM_ONLY,
                 description="C core, im2col + GEMM only (force it with "
                             f"use_kernel('{op}', 'im2col_gemm_only') or "
                             f"ops.{op}(..., algorithm='im2col_gemm'))")
    for op in ("conv1d", "conv2d"):
        register(op, "numpy_reference", getattr(reference, op), priority=REFERENCE,
                 description="numpy, one einsum per kernel tap (slow)")
    for op in ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"):
        register(op, "numpy_reference", getattr(reference, op), priority=REFERENCE,
                 supports=no_indices if op.startswith("max") else None,
                 description="numpy, one slice per window tap (slow)")
