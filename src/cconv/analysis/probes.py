"""Equivariance and invariance to translations, measured (notes section 2.4.3).

    eq = equivariance_curve(net, x, shifts=range(5))    # per spatial layer
    inv = invariance_curve(net, x, y, shifts=range(5))  # the predictions

Equivariance: a layer f is translation-equivariant when f(S_k x) = S_k' f(x):
shifting the input by k pixels shifts the feature maps by k' = k / jump
(jump = the product of the strides before the layer's output). The probe runs
the spatial part of the net (every node whose output still has spatial axes,
from the input up to the first Flatten / Linear / global pooling) on the
images embedded in a zero canvas `canvas` pixels wider on every side, so a
shift loses no content and no border effect reaches the compared region,
shifts the input by k along each direction, and reports

    error(k) = |f(S_k x) - S_{k'} f(x)| / |f(x)|

(L2 over the overlap of the two maps less a margin of one receptive field,
in output positions, along the canvas edge, where the layers' own zero
padding differs from the background the bias terms create)

with k' = round(k / jump); when k is not a multiple of the jump no integer
k' exists and the error is that of the best neighbour (floor or ceil). The
same run gives change(k) = |f(S_k x) - f(x)| / |f(x)|, how much the layer's
output moves at all (0 = invariant). With zero "same" padding and stride 1,
convolutions are equivariant to rounding; pooling keeps equivariance only
for shifts that are multiples of its stride.

Invariance: the whole net on in-frame shifts (zero fill, content shifted
out of the frame is lost, as for a real camera): how often the predicted
class stays the same, the accuracy when labels are given, and the mean
total-variation distance between the softmax outputs.

The zero canvas and zero fill assume a zero background (true of the digits
example, whose pixels are scaled to [0, 1] on black). Directions default to
right, left, down, up; the curves are means over them.
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EquivarianceResult",
    "InvarianceResult",
    "equivariance_curve",
    "invariance_curve",
    "shift",
    "shift_probe",
]

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def shift(x, dy, dx):
    """Translate the last two axes of x by (dy, dx) pixels, filling with zeros."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def _spatial_prefix(net, input_shape):
    """Names of the nodes (topological order) whose outputs are (C, H, W) maps fed
    only by such maps, and their jumps (cumulative strides)."""
    shapes = net.infer_shapes(input_shape)
    spatial = set(net.input_names)
    jumps = {name: (1, 1) for name in net.input_names}
    order = []
    for name in net.topological_order():
        node = net.nodes[name]
        if len(shapes[name]) != 3 or not all(i in spatial for i in node.inputs):
            continue
        stride = getattr(node.layer, "stride", (1, 1))
        if not isinstance(stride, tuple) or len(stride) != 2:
            continue
        jy = max(jumps[i][0] for i in node.inputs) * stride[0]
        jx = max(jumps[i][1] for i in node.inputs) * stride[1]
        spatial.add(name)
        jumps[name] = (jy, jx)
        order.append(name)
    return order, jumps


def _prefix_graph(net, names, input_shape):
    """A new Graph sharing the layer objects of `names`, outputs = all of them."""
    from ..graph import Graph

    sub = Graph(inputs=list(net.input_names))
    for name in names:
        node = net.nodes[name]
        sub.add(name, node.layer, inputs=list(node.inputs))
    sub.set_outputs(list(names))
    sub.build(input_shape)
    return sub


def _overlap(a, b, oy, ox):
    """a[q] against b[q - (oy, ox)] over the positions where both exist."""
    h, w = a.shape[-2:]
    ys = slice(max(0, oy), min(h, h + oy))
    xs = slice(max(0, ox), min(w, w + ox))
    yb = slice(max(0, -oy), min(h, h - oy))
    xb = slice(max(0, -ox), min(w, w - ox))
    return a[..., ys, xs], b[..., yb, xb]


def _crop(a, my, mx):
    return a[..., my:a.shape[-2] - my, mx:a.shape[-1] - mx]


def _rel(diff, ref):
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(diff) / denom) if denom > 0 else float("nan")


@dataclass
class EquivarianceResult:
    shifts: np.ndarray
    layers: list                 # node names, input order
    types: list
    jumps: list                  # (jy, jx) per layer
    error: dict                  # name -> array over shifts (mean over directions)
    change: dict                 # name -> array over shifts
    canvas: int
    directions: tuple = field(default=DIRECTIONS)

    def table(self):
        head = f"{'layer':<14} {'type':<10} {'jump':>5}  " + " ".join(
            f"{'k=' + str(int(k)):>16}" for k in self.shifts)
        rows = [head, " " * 33 + "equivariance error / change without re-alignment"]
        for name, kind, jump in zip(self.layers, self.types, self.jumps):
            cells = " ".join(f"{e:>7.1e} / {c:>6.3f}" for e, c in
                             zip(self.error[name], self.change[name]))
            rows.append(f"{name:<14} {kind:<10} {jump[1]:>5}  {cells}")
        return "\n".join(rows)

    def to_dict(self):
        return {"shifts": [int(k) for k in self.shifts], "canvas": self.canvas,
                "layers": [{"name": n, "type": t, "jump": list(j),
                            "error": [float(v) for v in self.error[n]],
                            "change": [float(v) for v in self.change[n]]}
                           for n, t, j in zip(self.layers, self.types, self.jumps)]}


def equivariance_curve(net, x, shifts=range(5), canvas=None, directions=DIRECTIONS,
                       layers=None):
    """Equivariance error and raw change of every spatial layer, as curves over shifts.

    x: a batch (N, C, H, W) in the net's input scale. canvas: zero border
    added on every side (default: the largest shift plus the largest
    receptive field of the probed layers, so nothing reaches the border).
    layers: node names to report (default: all spatial ones).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W), got shape {x.shape}")
    shifts = np.asarray(list(shifts), dtype=int)
    if shifts.size == 0 or shifts.min() < 0:
        raise ValueError(f"shifts must be non-negative pixel counts, got {list(shifts)}")
    names, jumps = _spatial_prefix(net, x.shape[1:])
    if layers is not None:
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"not spatial layers of this net: {unknown}; spatial ones: "
                             f"{names}")
    if not names:
        raise ValueError("the net has no layer with (C, H, W) output to probe")
    from .size import summary
    rfs = {s.name: max(s.receptive_field) for s in summary(net, x.shape[1:]).layers
           if s.name in names and not isinstance(s.receptive_field, str)}
    if canvas is None:
        # room for the shift, the cropped margin, and an interior to compare
        canvas = int(shifts.max()) + 2 * max(rfs.values(), default=1) + \
            2 * max((max(jumps[n]) for n in names), default=1)
    pad = ((0, 0), (0, 0), (canvas, canvas), (canvas, canvas))
    big = np.pad(x, pad).astype(net.dtype)
    sub = _prefix_graph(net, names, big.shape[1:])
    base = sub.forward(big)
    base = dict(zip(names, base if isinstance(base, tuple) else (base,)))
    report = layers or names
    error = {n: np.zeros(len(shifts)) for n in report}
    change = {n: np.zeros(len(shifts)) for n in report}
    for si, k in enumerate(shifts):
        for dy, dx in directions:
            out = sub.forward(shift(big, dy * k, dx * k))
            out = dict(zip(names, out if isinstance(out, tuple) else (out,)))
            for n in report:
                f0, f1 = base[n].astype(np.float64), out[n].astype(np.float64)
                jy, jx = jumps[n]
                # positions within a receptive field of the canvas edge see the
                # layers' zero padding instead of background: leave them out
                my = -(-rfs.get(n, 1) // jy) + 1
                mx = -(-rfs.get(n, 1) // jx) + 1
                ty, tx = dy * k / jy, dx * k / jx
                best = np.inf
                for oy in {int(np.floor(ty)), int(np.ceil(ty))}:
                    for ox in {int(np.floor(tx)), int(np.ceil(tx))}:
                        a, b = _overlap(f1, f0, oy, ox)
                        a, b = _crop(a, my, mx), _crop(b, my, mx)
                        best = min(best, _rel(a - b, b))
                error[n][si] += best / len(directions)
                change[n][si] += _rel(_crop(f1, my, mx) - _crop(f0, my, mx),
                                      _crop(f0, my, mx)) / len(directions)
    types = [net.nodes[n].layer.type_name for n in report]
    return EquivarianceResult(shifts, list(report), types, [jumps[n] for n in report],
                              error, change, canvas, tuple(directions))


@dataclass
class InvarianceResult:
    shifts: np.ndarray
    agreement: np.ndarray        # share of predictions unchanged
    accuracy: np.ndarray         # None without labels
    tv_distance: np.ndarray      # mean total variation between softmax outputs
    directions: tuple = field(default=DIRECTIONS)

    def table(self):
        rows = [f"{'shift':>5} {'same class':>10} {'accuracy':>9} {'TV dist.':>9}"]
        for i, k in enumerate(self.shifts):
            acc = "-" if self.accuracy is None else f"{self.accuracy[i]:.3f}"
            rows.append(f"{int(k):>5} {self.agreement[i]:>10.3f} {acc:>9} "
                        f"{self.tv_distance[i]:>9.3f}")
        return "\n".join(rows)

    def to_dict(self):
        return {"shifts": [int(k) for k in self.shifts],
                "agreement": [float(v) for v in self.agreement],
                "accuracy": None if self.accuracy is None else
                [float(v) for v in self.accuracy],
                "tv_distance": [float(v) for v in self.tv_distance]}


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def invariance_curve(net, x, y=None, shifts=range(5), directions=DIRECTIONS,
                     batch_size=512):
    """How the net's predictions change when the input shifts by k pixels in-frame."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W), got shape {x.shape}")
    shifts = np.asarray(list(shifts), dtype=int)

    def run(batch):
        outs = [np.asarray(net.forward(batch[i:i + batch_size]), dtype=np.float64)
                for i in range(0, len(batch), batch_size)]
        return np.concatenate(outs)

    z0 = run(x)
    p0, c0 = _softmax(z0), z0.argmax(axis=1)
    agree = np.zeros(len(shifts))
    acc = None if y is None else np.zeros(len(shifts))
    tv = np.zeros(len(shifts))
    for si, k in enumerate(shifts):
        for dy, dx in directions:
            z = run(shift(x, dy * k, dx * k))
            c = z.argmax(axis=1)
            agree[si] += np.mean(c == c0) / len(directions)
            tv[si] += 0.5 * np.abs(_softmax(z) - p0).sum(axis=1).mean() / len(directions)
            if acc is not None:
                acc[si] += np.mean(c == np.asarray(y)) / len(directions)
    return InvarianceResult(shifts, agree, acc, tv, tuple(directions))


def shift_probe(net, x, y=None, shifts=range(5), **kwargs):
    """Both curves: (EquivarianceResult, InvarianceResult)."""
    return (equivariance_curve(net, x, shifts=shifts, **kwargs),
            invariance_curve(net, x, y, shifts=shifts))
