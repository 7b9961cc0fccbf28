"""Slow, obviously-correct numpy implementations of the forward ops.

They take the arguments of the cconv.ops functions and follow the same
rules (padding forms, torch's pooling divisors, result dtype), written as
the textbook sums: one shifted, strided slice of the padded input per
kernel tap. The fast kernels are tested against them.
"""
import numpy as np

from cconv.ops import pool_output_size

__all__ = ["conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"]


def _compute_dtype(*arrays):
    """float32 when every input is float32 or narrower, else float64 (as cconv.ops)."""
    kinds = [np.float32 if a.dtype.kind == "f" and a.dtype.itemsize <= 4 else np.float64
             for a in arrays if a is not None]
    return np.result_type(*kinds)


def _ints(value, nd):
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * nd


def _conv_pads(padding, spatial, kernel, stride, dilation, nd):
    """((before, after), ...) per spatial axis from any padding form cconv.ops accepts."""
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return ((0, 0),) * nd
        pads = []  # "same": output ceil(size / stride), the odd pad after
        for size, k, s, d in zip(spatial, kernel, stride, dilation):
            out = -(-size // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if not isinstance(padding, (tuple, list)):
        return ((int(padding),) * 2,) * nd
    if nd == 1 and len(padding) == 2 and not isinstance(padding[0], (tuple, list)):
        return ((int(padding[0]), int(padding[1])),)   # conv1d: (left, right)
    return tuple(tuple(int(v) for v in p) if isinstance(p, (tuple, list)) else (int(p),) * 2
                 for p in padding)


def _taps(kernel, dilation, stride, out):
    """For each kernel tap: the slices of the padded input it multiplies."""
    for tap in np.ndindex(*kernel):
        yield tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                         for t, d, s, o in zip(tap, dilation, stride, out))


def _conv(x, w, bias, stride, padding, dilation, groups, nd):
    x, w = np.asarray(x), np.asarray(w)
    bias = None if bias is None else np.asarray(bias)
    dtype = _compute_dtype(x, w, bias)
    x, w = x.astype(dtype), w.astype(dtype)
    stride, dilation = _ints(stride, nd), _ints(dilation, nd)
    kernel = w.shape[2:]
    pads = _conv_pads(padding, x.shape[2:], kernel, stride, dilation, nd)
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    out = tuple((p - d * (k - 1) - 1) // s + 1
                for p, k, s, d in zip(xp.shape[2:], kernel, stride, dilation))
    c_in, c_out = x.shape[1] // groups, w.shape[0] // groups
    y = np.zeros((x.shape[0], w.shape[0]) + out, dtype)
    for g in range(groups):
        xg = xp[:, g * c_in:(g + 1) * c_in]
        wg = w[g * c_out:(g + 1) * c_out]
        for tap, window in _taps(kernel, dilation, stride, out):
            # y[n, o, ...] += sum_c x[n, c, shifted ...] * w[o, c, tap]
            y[:, g * c_out:(g + 1) * c_out] += np.einsum(
                "nc...,oc->no...", xg[(slice(None), slice(None)) + window],
                wg[(slice(None), slice(None)) + tap])
    if bias is not None:
        y += bias.astype(dtype).reshape((1, -1) + (1,) * nd)
    return y


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(x, w, bias, stride, padding, dilation, groups, 2)


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(x, w, bias, stride, padding, dilation, groups, 1)


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, nd):
    k = _ints(kernel_size, nd)
    s = k if stride is None else _ints(stride, nd)
    p, d = _ints(padding, nd), _ints(dilation, nd)
    out = tuple(pool_output_size(size, k_, s_, p_, d_, ceil_mode)
                for size, k_, s_, p_, d_ in zip(x.shape[2:], k, s, p, d))
    # ceil_mode windows may run past the right padding: make room for them
    extent = tuple(max((o - 1) * s_ + d_ * (k_ - 1) + 1, size + 2 * p_)
                   for o, s_, d_, k_, size, p_ in zip(out, s, d, k, x.shape[2:], p))
    return k, s, p, d, out, extent


def _place(x, fill, p, extent):
    """x inside a bigger array of `fill`, offset by the left padding p."""
    xp = np.full(x.shape[:2] + extent, fill, x.dtype)
    xp[(slice(None), slice(None)) + tuple(slice(p_, p_ + n) for p_, n in
                                          zip(p, x.shape[2:]))] = x
    return xp


def _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, nd):
    x = np.asarray(x)
    x = x.astype(_compute_dtype(x))
    k, s, p, d, out, extent = _pool_geometry(x, kernel_size, stride, padding, dilation,
                                             ceil_mode, nd)
    xp = _place(x, -np.inf, p, extent)   # padding never wins a max
    y = np.full(x.shape[:2] + out, -np.inf, x.dtype)
    for _, window in _taps(k, d, s, out):
        y = np.maximum(y, xp[(slice(None), slice(None)) + window])   # NaN propagates
    return y


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, 2)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return _max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, 1)


def _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, nd):
    x = np.asarray(x)
    x = x.astype(_compute_dtype(x))
    k, s, p, d, out, extent = _pool_geometry(x, kernel_size, stride, padding, 1,
                                             ceil_mode, nd)
    xp = _place(x, 0, p, extent)
    # torch's divisor: the window clipped to the padded input (count_include_pad)
    # or to the real input; what lies past the right padding never counts.
    if count_include_pad:
        counted = np.zeros(extent, x.dtype)
        counted[tuple(slice(0, n + 2 * p_) for n, p_ in zip(x.shape[2:], p))] = 1
    else:
        counted = _place(np.ones((1, 1) + x.shape[2:], x.dtype), 0, p, extent)[0, 0]
    total = np.zeros(x.shape[:2] + out, x.dtype)
    count = np.zeros(out, x.dtype)
    for _, window in _taps(k, d, s, out):
        total += xp[(slice(None), slice(None)) + window]
        count += counted[window]
    return total / count


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, 2)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return _avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, 1)
