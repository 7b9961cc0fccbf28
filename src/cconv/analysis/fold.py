"""Linear collapse (notes section 2.4.2): consecutive linear layers fold into one.

    folded, log = fold_linear(net)      # a new Graph; net is unchanged

Two convolutions with nothing non-linear between them are one convolution:
with y1 = W1 (*) x + b1 and y2 = W2 (*) y1 + b2 (cross-correlations),

    W[o, i] = sum_m  W2[o, m] * W1[m, i]      (* : textbook full convolution
                                               of the two kernels, W2 dilated
                                               by conv1's stride)
    b[o]    = b2[o] + sum_m b1[m] sum(W2[o, m])
    stride  = s1 s2, padding = conv1's, kernel size d1 (k1 - 1) + s1 d2 (k2 - 1) + 1

This is exact when the second convolution has no padding (its zero padding
of y1 is not what the first convolution would compute beyond the border)
and neither is grouped; other pairs are left alone. A convolution followed
by BatchNorm folds too (inference: BatchNorm is a per-channel affine map
with its running statistics): W' = W * gamma / sqrt(var + eps),
b' = (b - mean) * gamma / sqrt(var + eps) + beta.

A pair folds only when the first node's output feeds nothing else and is
not a graph output. The result is a Graph with the same node names (the
folded node takes the second node's name and the first node's inputs).
Folding repeats until nothing changes, so conv -> conv -> BN becomes one conv.
"""
import copy

import numpy as np

from .. import nn

__all__ = ["compose_conv", "fold_batchnorm", "fold_linear"]

_CONV = (nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _explicit_pads(layer, spatial):
    """((before, after), ...) per axis for the layer's padding at this input size."""
    from .size import _pads
    return _pads(layer, spatial)


def compose_conv(w1, b1, w2, b2, stride1=None, dilation1=None, dilation2=None):
    """Kernel and bias of conv2(conv1(x)) (cross-correlations, groups=1, conv2 unpadded).

    w1: (M, I, *k1), w2: (O, M, *k2); b1, b2 or None. Returns (w, b) with
    w: (O, I, *K), K = d1 (k1 - 1) + s1 d2 (k2 - 1) + 1 per axis.
    """
    w1, w2 = np.asarray(w1), np.asarray(w2)
    nd = w1.ndim - 2
    s1 = (1,) * nd if stride1 is None else tuple(stride1)
    d1 = (1,) * nd if dilation1 is None else tuple(dilation1)
    d2 = (1,) * nd if dilation2 is None else tuple(dilation2)
    if w2.shape[1] != w1.shape[0]:
        raise ValueError(f"conv2 reads {w2.shape[1]} channels, conv1 makes {w1.shape[0]}")
    k1, k2 = w1.shape[2:], w2.shape[2:]
    size = tuple(a * (p - 1) + s * b * (q - 1) + 1 for a, p, s, b, q in
                 zip(d1, k1, s1, d2, k2))
    dtype = np.result_type(w1, w2)
    w = np.zeros((w2.shape[0], w1.shape[1]) + size, dtype)
    # conv1's taps, dilated by d1, placed at every tap of conv2 (offset s1 d2 b)
    for b in np.ndindex(*k2):
        contrib = np.tensordot(w2[(slice(None), slice(None)) + b], w1, axes=(1, 0))
        index = (slice(None), slice(None)) + tuple(
            slice(s * e * bi, s * e * bi + a * (p - 1) + 1, a)
            for s, e, bi, a, p in zip(s1, d2, b, d1, k1))
        w[index] += contrib
    bias = np.zeros(w2.shape[0], dtype)
    if b2 is not None:
        bias += b2
    if b1 is not None:
        bias += w2.sum(axis=tuple(range(2, w2.ndim))) @ b1
    return w, bias


def fold_batchnorm(w, b, bn):
    """Kernel and bias of BatchNorm(conv(x)) in inference mode."""
    p = bn.params
    scale = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + bn.eps)
    if bn.affine:
        scale = scale * p["weight"]
    shift = -p["running_mean"] * scale
    if bn.affine:
        shift = shift + p["bias"]
    w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b = (np.zeros(w.shape[0]) if b is None else b) * scale + shift
    return w, b


def _new_conv(template, w, b, stride, padding):
    cls = type(template)
    nd = template.nd
    layer = cls(w.shape[1], w.shape[0], tuple(w.shape[2:]) if nd > 1 else w.shape[2],
                stride=tuple(stride) if nd > 1 else stride[0],
                padding=padding if nd > 1 else padding[0], dilation=1, groups=1, bias=True)
    return layer, w, b


def _consumers(graph, name):
    return [n for n, node in graph.nodes.items() if name in node.inputs]


def _fold_once(graph, shapes):
    for name, node in graph.nodes.items():
        first = node.layer
        if not isinstance(first, _CONV):
            continue
        users = _consumers(graph, name)
        if len(users) != 1 or name in graph.output_names:
            continue
        second_name = users[0]
        second = graph.nodes[second_name].layer
        in_shape = shapes[node.inputs[0]]
        pads1 = _explicit_pads(first, in_shape[1:])
        w1 = first.params["weight"]
        b1 = first.params.get("bias")
        if isinstance(second, _BN) and len(graph.nodes[second_name].inputs) == 1:
            w, b = fold_batchnorm(w1, b1, second)
            layer = type(first)(first.in_ch, first.out_ch,
                                first.kernel_size if first.nd > 1 else first.kernel_size[0],
                                stride=first.stride, padding=pads1 if first.nd > 1
                                else pads1[0], dilation=first.dilation, groups=first.groups)
            return name, second_name, layer, w, b, f"{name} + {second_name} (BatchNorm)"
        if (isinstance(second, type(first)) and first.groups == 1 and second.groups == 1
                and all(p == (0, 0) for p in
                        _explicit_pads(second, shapes[name][1:]))):
            w, b = compose_conv(w1, b1, second.params["weight"], second.params.get("bias"),
                                first.stride, first.dilation, second.dilation)
            stride = tuple(a * c for a, c in zip(first.stride, second.stride))
            layer, w, b = _new_conv(first, w, b, stride, pads1)
            return name, second_name, layer, w, b, f"{name} + {second_name} (conv)"
    return None


def fold_linear(net):
    """(folded copy of net, list of the folds made); see the module doc."""
    from ..graph import Graph

    if not isinstance(net, Graph) or not net.built:
        raise ValueError("fold_linear needs a built cconv Graph / Sequential")
    graph = copy.deepcopy(net)
    log = []
    while True:
        shapes = graph.infer_shapes(graph.input_shapes)
        found = _fold_once(graph, shapes)
        if found is None:
            break
        first, second, layer, w, b, what = found
        rebuilt = Graph(inputs=list(graph.input_names))
        for name, node in graph.nodes.items():
            if name == first:
                continue
            if name == second:
                rebuilt.add(name, layer, inputs=list(graph.nodes[first].inputs))
            else:
                rebuilt.add(name, node.layer, inputs=list(node.inputs))
        rebuilt.set_outputs(graph.output_names)
        rebuilt.build(graph.input_shapes)
        rebuilt.astype(graph.dtype)
        layer.params["weight"][...] = w
        layer.params["bias"][...] = b
        graph = rebuilt
        log.append(what)
    return graph, log
