"""Plain numpy reference implementations of cconv.ops' kernels.

This file is the executable spec the kernels are tested against. It favours
obviousness over speed: convolutions are a loop over kernel offsets, pooling
gathers every window element explicitly. Everything is computed in float64
(inputs are converted), so the result is an accurate answer for float32 too.

Layouts: NCHW for 2-D ops, NCL for 1-D ops; weights (Cout, Cin/groups, KH, KW).
Convolutions are cross-correlations, like torch. 1-D ops are the 2-D ones with
H == 1 (a 1-row image and a 1-row kernel).
"""
import numpy as np

__all__ = [
    "conv_out_size", "same_pads", "conv2d_pads", "conv1d_pads",
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward",
    "pool_out_size", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "max_pool1d", "max_pool1d_backward", "avg_pool1d",
    "avg_pool1d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "global_avg_pool1d", "global_avg_pool1d_backward", "gemm",
]


def _pair(v):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------

def conv_out_size(n, k, s, pad_lo, pad_hi, d):
    """Output length of a convolution along one axis."""
    return (n + pad_lo + pad_hi - d * (k - 1) - 1) // s + 1


def same_pads(n, k, s, d):
    """(lo, hi) padding of "same": output ceil(n/s), the extra one at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def conv2d_pads(padding, hw, khw, stride, dilation):
    """Normalise a conv2d padding argument to (top, bottom, left, right)."""
    (h, w), (kh, kw) = hw, khw
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        assert padding == "same", padding
        return same_pads(h, kh, sh, dh) + same_pads(w, kw, sw, dw)
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return p, p, p, p
    a, b = padding
    if isinstance(a, (tuple, list)):
        return int(a[0]), int(a[1]), int(b[0]), int(b[1])
    return int(a), int(a), int(b), int(b)


def conv1d_pads(padding, length, k, stride, dilation):
    """Normalise a conv1d padding argument to (left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        assert padding == "same", padding
        return same_pads(length, k, int(stride), int(dilation))
    if isinstance(padding, (int, np.integer)):
        return int(padding), int(padding)
    left, right = padding
    return int(left), int(right)


def _conv2d_setup(x, w, stride, padding, dilation, groups):
    x, w = _f64(x), _f64(w)
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    assert c == cg * groups and cout % groups == 0
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    top, bottom, left, right = conv2d_pads(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    oh = conv_out_size(h, kh, sh, top, bottom, dh)
    ow = conv_out_size(wd, kw, sw, left, right, dw)
    assert oh >= 1 and ow >= 1
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))

    def window(i, j):
        """Slice of the padded input that kernel offset (i, j) multiplies."""
        return (slice(None), slice(None),
                slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))

    return x, w, xp, (top, left), (oh, ow), window


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n,o,p,q] = bias[o] + sum_{c,i,j} xpad[n, g*Cg+c, p*sh+i*dh, q*sw+j*dw] * w[o,c,i,j]."""
    x, w, xp, _, (oh, ow), window = _conv2d_setup(x, w, stride, padding, dilation, groups)
    cout, cg, kh, kw = w.shape
    og = cout // groups
    y = np.zeros((x.shape[0], cout, oh, ow))
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                y[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", xg[window(i, j)], wg[:, :, i, j])
    if bias is not None:
        y += _f64(bias)[None, :, None, None]
    return y


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_w, grad_b) of conv2d for the upstream gradient grad_out."""
    x, w, xp, (top, left), (oh, ow), window = _conv2d_setup(
        x, w, stride, padding, dilation, groups)
    gy = _f64(grad_out)
    assert gy.shape == (x.shape[0], w.shape[0], oh, ow)
    cout, cg, kh, kw = w.shape
    og = cout // groups
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for g in range(groups):
        gyg = gy[:, g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                win = window(i, j)
                gw[g * og:(g + 1) * og, :, i, j] += np.einsum(
                    "nohw,nchw->oc", gyg, xp[:, g * cg:(g + 1) * cg][win])
                gxp[:, g * cg:(g + 1) * cg][win] += np.einsum(
                    "nohw,oc->nchw", gyg, w[g * og:(g + 1) * og, :, i, j])
    gx = gxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    gb = gy.sum(axis=(0, 2, 3))
    return gx, gw, gb


def _pads_1d_as_2d(padding, length, k, stride, dilation):
    left, right = conv1d_pads(padding, length, k, stride, dilation)
    return (0, 0), (left, right)


def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = _f64(x), _f64(w)
    pads = _pads_1d_as_2d(padding, x.shape[2], w.shape[2], stride, dilation)
    y = conv2d(x[:, :, None, :], w[:, :, None, :], bias, (1, int(stride)), pads,
               (1, int(dilation)), groups)
    return y[:, :, 0, :]


def conv1d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1):
    x, w = _f64(x), _f64(w)
    pads = _pads_1d_as_2d(padding, x.shape[2], w.shape[2], stride, dilation)
    gx, gw, gb = conv2d_backward(_f64(grad_out)[:, :, None, :], x[:, :, None, :],
                                 w[:, :, None, :], (1, int(stride)), pads,
                                 (1, int(dilation)), groups)
    return gx[:, :, 0, :], gw[:, :, 0, :], gb


# --------------------------------------------------------------------------
# pooling (torch semantics)
# --------------------------------------------------------------------------

def pool_out_size(n, k, s, p, d=1, ceil_mode=False):
    """torch's pooling output size; ceil_mode drops a window starting in the right pad."""
    span = n + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
    else:
        out = span // s + 1
    return out


def _axis_positions(n, k, s, p, d, out):
    """pos[t, o] = input index of window element t of output o, and its validity."""
    pos = np.arange(out)[None, :] * s - p + np.arange(k)[:, None] * d
    return pos, (pos >= 0) & (pos < n)


def _pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    n, c, h, w = shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    oh = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    assert oh >= 1 and ow >= 1
    hpos, hval = _axis_positions(h, kh, sh, ph, dh, oh)
    wpos, wval = _axis_positions(w, kw, sw, pw, dw, ow)
    # every array below has shape (KH, KW, OH, OW)
    hp = np.broadcast_to(hpos[:, None, :, None], (kh, kw, oh, ow))
    wp = np.broadcast_to(wpos[None, :, None, :], (kh, kw, oh, ow))
    valid = hval[:, None, :, None] & wval[None, :, None, :]
    return (kh, kw, oh, ow), hp, wp, valid


def _gather(x, hp, wp, valid, fill):
    """Window elements: (N, C, KH, KW, OH, OW), `fill` where a window is off the input."""
    h, w = x.shape[2:]
    g = x[:, :, np.clip(hp, 0, h - 1), np.clip(wp, 0, w - 1)]
    return np.where(valid, g, fill)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over each window (padding is -inf); indices = h*W + w of the first maximum
    in row-major window order (a NaN counts as the maximum)."""
    x = _f64(x)
    n, c, h, w = x.shape
    (kh, kw, oh, ow), hp, wp, valid = _pool_geometry(
        x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    vals = _gather(x, hp, wp, valid, -np.inf).reshape(n, c, kh * kw, oh, ow)
    y = vals.max(axis=2)  # np.max propagates NaN
    hit = valid.reshape(kh * kw, oh, ow) & ((vals == y[:, :, None]) | np.isnan(vals))
    first = np.argmax(hit, axis=2)  # first True along the window
    oi, oj = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    flat_pos = (hp * w + wp).reshape(kh * kw, oh, ow)
    indices = flat_pos[first, oi, oj].astype(np.int64)
    return (y, indices) if return_indices else y


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Each output gradient goes to its argmax input (summed where windows overlap)."""
    x = _f64(x)
    if indices is None:
        _, indices = max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode,
                                return_indices=True)
    n, c, h, w = x.shape
    gy = _f64(grad_out)
    assert gy.shape == indices.shape
    plane = (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
    gx = np.bincount((indices + plane).ravel(), weights=gy.ravel(), minlength=n * c * h * w)
    return gx.reshape(n, c, h, w)


def _avg_divisor(shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Divisor of each output, shape (OH, OW), exactly as torch computes it."""
    _, _, h, w = shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    oh = pool_out_size(h, kh, sh, ph, 1, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, 1, ceil_mode)

    def counts(n, k, s, p, out):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, n + p)
        if count_include_pad:
            return end - start  # the window clipped to [-p, n + p)
        return np.minimum(end, n) - np.maximum(start, 0)  # clipped to the input

    return np.outer(counts(h, kh, sh, ph, oh), counts(w, kw, sw, pw, ow)).astype(np.float64)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    x = _f64(x)
    (kh, kw, oh, ow), hp, wp, valid = _pool_geometry(
        x.shape, kernel_size, stride, padding, 1, ceil_mode)
    total = _gather(x, hp, wp, valid, 0.0).sum(axis=(2, 3))
    return total / _avg_divisor(x.shape, kernel_size, stride, padding, ceil_mode,
                                count_include_pad)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Each output gradient, divided by its divisor, goes to every real input of its window."""
    n, c, h, w = input_shape
    (kh, kw, oh, ow), hp, wp, valid = _pool_geometry(
        input_shape, kernel_size, stride, padding, 1, ceil_mode)
    g = _f64(grad_out) / _avg_divisor(input_shape, kernel_size, stride, padding,
                                      ceil_mode, count_include_pad)
    assert g.shape == (n, c, oh, ow)
    gx = np.zeros((n * c, h * w))
    g = g.reshape(n * c, oh, ow)
    for i in range(kh):
        for j in range(kw):
            m = valid[i, j]
            np.add.at(gx, (slice(None), (hp[i, j] * w + wp[i, j])[m]), g[:, m])
    return gx.reshape(n, c, h, w)


def _as2d(x):
    return _f64(x)[:, :, None, :]


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    s = kernel_size if stride is None else stride
    r = max_pool2d(_as2d(x), (1, kernel_size), (1, s), (0, padding), (1, dilation),
                   ceil_mode, return_indices)
    if return_indices:
        # in a 1-row plane the flat index h*W + w is just w
        return r[0][:, :, 0], r[1][:, :, 0]
    return r[:, :, 0]


def max_pool1d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    s = kernel_size if stride is None else stride
    idx = None if indices is None else np.asarray(indices)[:, :, None, :]
    return max_pool2d_backward(_as2d(grad_out), _as2d(x), (1, kernel_size), (1, s),
                               (0, padding), (1, dilation), ceil_mode, idx)[:, :, 0]


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    s = kernel_size if stride is None else stride
    return avg_pool2d(_as2d(x), (1, kernel_size), (1, s), (0, padding), ceil_mode,
                      count_include_pad)[:, :, 0]


def avg_pool1d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    s = kernel_size if stride is None else stride
    n, c, length = input_shape
    return avg_pool2d_backward(_as2d(grad_out), (n, c, 1, length), (1, kernel_size),
                               (1, s), (0, padding), ceil_mode, count_include_pad)[:, :, 0]


def global_avg_pool2d(x):
    return _f64(x).mean(axis=(2, 3), keepdims=True)


def global_avg_pool2d_backward(grad_out, input_shape):
    n, c, h, w = input_shape
    return np.broadcast_to(_f64(grad_out).reshape(n, c, 1, 1) / (h * w), input_shape).copy()


def global_avg_pool1d(x):
    return _f64(x).mean(axis=2, keepdims=True)


def global_avg_pool1d_backward(grad_out, input_shape):
    n, c, length = input_shape
    return np.broadcast_to(_f64(grad_out).reshape(n, c, 1) / length, input_shape).copy()


# --------------------------------------------------------------------------
# gemm
# --------------------------------------------------------------------------

def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    a, b = _f64(a), _f64(b)
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = alpha * (a @ b)
    if c is not None and beta != 0:
        out = out + beta * _f64(c)
    return out
