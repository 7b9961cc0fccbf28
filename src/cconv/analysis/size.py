"""The size of a convolutional network, as the notes measure it (section 2.5).

    report = cconv.analysis.summary(net, (1, 28, 28))
    print(report)              # a table for people
    report.to_dict()           # JSON for programs (report.to_json())

Per node: output shape; output units; weights (trainable, frozen, and
buffers such as BatchNorm's running statistics, apart); connections;
multiply-adds; training cost; activation memory; receptive field in input
pixels. For each convolution also the numbers of a fully connected layer
with the same input and output (the notes' table: W^2 H^2 I J weights and
connections for the FC layer against K^2 I J weights and W H K^2 I J
connections for the convolution), and whether the rule of thumb holds: most
units and connections in the convolutional layers, most weights in the
fully connected ones.

Definitions (per sample, batch 1 unless batch_size is given):
- units: the values a layer creates. Convolutions, fully connected and
  pooling layers create units; element-wise layers (activations,
  BatchNorm, Dropout) transform the units of the layer before and shapes
  (Flatten, Reshape) only relabel them, so they add none ("-"). Activation
  memory still counts every array they produce.
- connections: input-to-output edges, weighted or not, that reach real
  input: up to K^2 I/groups per output unit of a convolution (fewer at a
  zero-padded border; fc_equivalent also gives the textbook W H K^2 I J,
  which counts the padding), the fan-in of a fully connected unit, the
  window of a pooling unit; bias terms are not connections.
- multiply-adds (MACs): those of the weighted connections (convolution and
  fully connected), the only ones the notes' "3 operations per connection"
  speaks of; FLOPs = 2 MACs. Training = 3 MACs per weighted connection
  (1 forward, 2 backward: input and weight gradients).
- activation memory: inference, the peak of values alive at once when
  each value is freed after its last reader; training, every value kept for
  the backward pass (all node outputs and the input), at the net's dtype.
- receptive field: the input pixels one output unit can see, per spatial
  axis, grown by (k - 1) * dilation * jump at every convolution and pooling
  (jump = product of earlier strides); "all" once a layer mixes every
  position (Flatten then Linear, global pooling).
"""
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .. import nn

__all__ = ["LayerSize", "SizeReport", "summary"]


@dataclass
class LayerSize:
    name: str
    type: str
    kind: str                      # "conv" | "fc" | "pool" | "elementwise" | "shape" | "other"
    output_shape: tuple
    units: int
    weights_trainable: int
    weights_frozen: int
    buffers: int
    connections: int
    macs: int
    activation_bytes: int
    receptive_field: object        # tuple of ints per axis, or "all"
    fc_equivalent: dict = None     # conv layers only

    @property
    def weights(self):
        return self.weights_trainable + self.weights_frozen

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def training_macs(self):
        return 3 * self.macs

    def to_dict(self):
        d = {k: getattr(self, k) for k in (
            "name", "type", "kind", "units", "weights", "weights_trainable",
            "weights_frozen", "buffers", "connections", "macs", "flops", "training_macs",
            "activation_bytes")}
        d["output_shape"] = list(self.output_shape)
        d["receptive_field"] = (self.receptive_field if isinstance(self.receptive_field, str)
                                else list(self.receptive_field))
        if self.fc_equivalent is not None:
            d["fc_equivalent"] = dict(self.fc_equivalent)
        return d


@dataclass
class SizeReport:
    input_shape: tuple
    batch_size: int
    dtype: str
    layers: list
    inference_activation_bytes: int
    training_activation_bytes: int
    totals: dict = field(default_factory=dict)
    rule_of_thumb: dict = field(default_factory=dict)

    def to_dict(self):
        return {"input_shape": list(self.input_shape), "batch_size": self.batch_size,
                "dtype": self.dtype, "layers": [layer.to_dict() for layer in self.layers],
                "totals": dict(self.totals),
                "activation_memory": {"inference_bytes": self.inference_activation_bytes,
                                      "training_bytes": self.training_activation_bytes},
                "rule_of_thumb": dict(self.rule_of_thumb)}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers]}")

    def table(self):
        def num(v):
            return "-" if not v else f"{v:,}"

        def rf(v):
            return v if isinstance(v, str) else "x".join(str(i) for i in v)

        head = ("node", "type", "output", "units", "weights", "frozen", "connections",
                "MACs", "train MACs", "act. mem", "RF")
        rows = [head]
        for s in self.layers:
            rows.append((s.name, s.type, "x".join(str(d) for d in s.output_shape),
                         num(s.units), num(s.weights_trainable), num(s.weights_frozen),
                         num(s.connections), num(s.macs), num(s.training_macs),
                         _fmt_bytes(s.activation_bytes), rf(s.receptive_field)))
        t = self.totals
        rows.append(("total", "", "", num(t["units"]), num(t["weights_trainable"]),
                     num(t["weights_frozen"]), num(t["connections"]), num(t["macs"]),
                     num(t["training_macs"]), "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        right = {3, 4, 5, 6, 7, 8, 9}
        lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                           for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        out = ["\n".join(lines), ""]
        out.append(f"input {'x'.join(map(str, self.input_shape))}, batch {self.batch_size}, "
                   f"{self.dtype}: FLOPs {t['flops']:,} forward; activation memory "
                   f"{_fmt_bytes(self.inference_activation_bytes)} inference (peak), "
                   f"{_fmt_bytes(self.training_activation_bytes)} training (kept for "
                   f"backward); buffers {t['buffers']:,}")
        convs = [s for s in self.layers if s.fc_equivalent]
        if convs:
            out += ["", ("Convolutions against a fully connected layer with the same "
                         "input and output (notes 2.5):")]
            for s in convs:
                fc = s.fc_equivalent
                out.append(f"  {s.name}: weights {fc['conv_weights']:,} (K^2 I J) vs "
                           f"{fc['fc_weights']:,} FC ({fc['weight_ratio']:,.0f}x); "
                           f"connections {fc['conv_connections']:,} (W H K^2 I J "
                           f"{fc['conv_connections_textbook']:,}) vs "
                           f"{fc['fc_connections']:,} FC; weight sharing: each weight "
                           f"used {fc['uses_per_weight']:,.0f} times")
        r = self.rule_of_thumb
        if r:
            out += ["", "Rule of thumb (notes 2.5.1): "
                    + ("holds" if r["holds"] else "does not hold")]
            out.append(f"  conv layers hold {r['conv_units_share']:.0%} of the units and "
                       f"{r['conv_connections_share']:.0%} of the connections; fully "
                       f"connected layers hold {r['fc_weights_share']:.0%} of the weights")
        return "\n".join(out)

    __str__ = table


def _fmt_bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


_CONV = (nn.Conv1d, nn.Conv2d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Sigmoid, nn.Tanh, nn.HardSigmoid,
                nn.HardSwish, nn.Softmax, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)
_SHAPE = (nn.Flatten, nn.Reshape, nn.Transpose)


def _kind(layer):
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, nn.Linear):
        return "fc"
    if isinstance(layer, _POOL + (nn.GlobalAvgPool,)):
        return "pool"
    if isinstance(layer, _ELEMENTWISE + (nn.Add, nn.Concat)):
        return "elementwise"
    if isinstance(layer, _SHAPE):
        return "shape"
    return "other"


def _pads(layer, spatial):
    """(before, after) per spatial axis, as the layer pads its input."""
    nd = len(spatial)
    padding = layer.padding
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        pads = []
        for size, k, st, d in zip(spatial, layer.kernel_size, layer.stride, layer.dilation):
            out = -(-size // st)
            total = max((out - 1) * st + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return ((padding, padding),) * nd
    if nd == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return (tuple(padding),)
    return tuple(tuple(p) if isinstance(p, (tuple, list)) else (p, p) for p in padding)


def _taps_inside(size, out, kernel, stride, before, dilation):
    """Kernel taps that land on real input (not padding), summed over the outputs of one axis."""
    o = np.arange(out)[:, None]
    pos = o * stride - before + np.arange(kernel)[None, :] * dilation
    return int(((pos >= 0) & (pos < size)).sum())


def _real_connections(layer, in_shape, out_shape, pads):
    """Input-to-output edges that touch real input, for every output channel."""
    total = 1
    dil = getattr(layer, "dilation", (1,) * len(pads))
    for size, out, k, st, (pb, _), d in zip(in_shape[1:], out_shape[1:], layer.kernel_size,
                                             layer.stride, pads, dil):
        total *= _taps_inside(size, out, k, st, pb, d)
    return total


def _grow_rf(rf, layer):
    """Receptive field state (sizes, jumps) after a conv/pool layer, per spatial axis."""
    if rf == "all":
        return rf
    sizes, jumps = rf
    dil = getattr(layer, "dilation", (1,) * len(sizes))
    if len(layer.kernel_size) != len(sizes):
        return "all"
    new_sizes = tuple(s + (k - 1) * d * j for s, k, d, j in
                      zip(sizes, layer.kernel_size, dil, jumps))
    new_jumps = tuple(j * st for j, st in zip(jumps, layer.stride))
    return (new_sizes, new_jumps)


def _merge_rf(rfs):
    if any(r == "all" for r in rfs):
        return "all"
    if len({len(r[0]) for r in rfs}) != 1:
        return "all"
    return (tuple(max(s) for s in zip(*[r[0] for r in rfs])),
            tuple(max(j) for j in zip(*[r[1] for r in rfs])))


def _counts(graph):
    frozen = set(graph.frozen())
    out = {}
    for name, node in graph.nodes.items():
        tr = fr = buf = 0
        for p, a in node.layer.params.items():
            full = f"{name}.{p}"
            if node.layer.trainable.get(p, True):
                tr += a.size
            elif full in frozen:
                fr += a.size
            else:
                buf += a.size
        out[name] = (tr, fr, buf)
    return out


def summary(net, input_shape=None, batch_size=1, dtype=None):
    """The size report of net for per-sample input_shape (default: the shape it was built for).

    batch_size scales units, connections, MACs and memory (weights do not
    scale). dtype: of the activations (default: the net's).
    """
    from ..graph import Graph

    if not isinstance(net, Graph):
        raise TypeError(f"net must be a cconv Graph or Sequential, got {type(net).__name__}")
    if input_shape is None:
        if net.input_shapes is None:
            raise ValueError("give input_shape: the net was not built")
        input_shape = net.input_shapes[0] if len(net.input_shapes) == 1 else net.input_shapes
    if not net.built:
        import copy
        net = copy.deepcopy(net)
        net.build(input_shape)
    shapes = net.infer_shapes(input_shape)
    itemsize = np.dtype(dtype or net.dtype).itemsize
    batch = int(batch_size)
    if batch < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    counts = _counts(net)
    order = net.topological_order()
    rfs = {}
    for name in net.input_names:
        spatial = shapes[name][1:]
        rfs[name] = ((1,) * len(spatial), (1,) * len(spatial)) if spatial else "all"
    layers = []
    for name in order:
        node = net.nodes[name]
        layer = node.layer
        ins = [shapes[i] for i in node.inputs]
        out = shapes[name]
        n_out = math.prod(out)
        kind = _kind(layer)
        rf = _merge_rf([rfs[i] for i in node.inputs])
        units = connections = macs = 0
        fc_eq = None
        if kind == "conv":
            k = math.prod(layer.kernel_size)
            fan_in = layer.in_ch // layer.groups * k
            units = n_out
            taps = _real_connections(layer, ins[0], out, _pads(layer, ins[0][1:]))
            connections = macs = taps * layer.out_ch * (layer.in_ch // layer.groups)
            rf = _grow_rf(rf, layer)
            n_in = math.prod(ins[0])
            conv_w = layer.out_ch * fan_in
            textbook = n_out * fan_in
            fc_eq = {"fc_units": n_out, "fc_weights": n_in * n_out,
                     "fc_connections": n_in * n_out, "conv_weights": conv_w,
                     "conv_connections": connections,
                     "conv_connections_textbook": textbook,
                     "weight_ratio": n_in * n_out / conv_w,
                     "uses_per_weight": connections / conv_w}
        elif kind == "fc":
            units = n_out
            connections = macs = n_out * layer.in_features
            rf = "all" if len(ins[0]) == 1 else rf
        elif kind == "pool":
            units = n_out
            if isinstance(layer, nn.GlobalAvgPool):
                connections = math.prod(ins[0])
                rf = "all"
            else:
                pads = tuple((p, p) for p in layer.padding)
                connections = out[0] * _real_connections(layer, ins[0], out, pads)
                rf = _grow_rf(rf, layer)
        elif kind == "other":
            units = n_out
        tr, fr, buf = counts[name]
        rfs[name] = rf
        layers.append(LayerSize(
            name, layer.type_name, kind, tuple(out), units * batch, tr, fr, buf,
            connections * batch, macs * batch, n_out * batch * itemsize,
            rf if rf == "all" else rf[0], fc_eq))
    # activation memory: liveness in topological order
    value_bytes = {n: math.prod(shapes[n]) * batch * itemsize
                   for n in list(net.input_names) + order}
    last_use = {}
    for i, name in enumerate(order):
        for src in net.nodes[name].inputs:
            last_use[src] = i
    outputs = set(net.output_names)
    live = {n: value_bytes[n] for n in net.input_names}
    peak = sum(live.values())
    for i, name in enumerate(order):
        live[name] = value_bytes[name]
        peak = max(peak, sum(live.values()))
        for src in net.nodes[name].inputs:
            if last_use.get(src) == i and src not in outputs:
                live.pop(src, None)
    training_bytes = sum(value_bytes.values())
    totals = {key: sum(getattr(s, key) for s in layers) for key in (
        "units", "weights_trainable", "weights_frozen", "buffers", "connections", "macs")}
    totals["weights"] = totals["weights_trainable"] + totals["weights_frozen"]
    totals["flops"] = 2 * totals["macs"]
    totals["training_macs"] = 3 * totals["macs"]
    rule = {}
    conv = [s for s in layers if s.kind == "conv"]
    fc = [s for s in layers if s.kind == "fc"]
    if conv and fc:
        def share(items, key, among):
            total = sum(getattr(s, key) for s in among)
            return sum(getattr(s, key) for s in items) / total if total else 0.0
        both = conv + fc
        rule = {"conv_units_share": share(conv, "units", both),
                "conv_connections_share": share(conv, "connections", both),
                "fc_weights_share": share(fc, "weights", both),
                "note": "shares among convolutional and fully connected layers"}
        rule["holds"] = bool(rule["conv_units_share"] > 0.5 and
                             rule["conv_connections_share"] > 0.5 and
                             rule["fc_weights_share"] > 0.5)
    shape0 = tuple(shapes[net.input_names[0]])
    return SizeReport(shape0, batch, str(np.dtype(dtype or net.dtype)), layers, peak,
                      training_bytes, totals, rule)
