"""The Hessian of a loss with respect to a network's parameters (notes section 1).

    op = HessianOperator(net, "cross_entropy", x, y)     # float64 copy of the net
    hv = op.matvec(v)                                    # H v, exact (R-operator)
    H = hessian(net, "cross_entropy", x, y)              # dense, after a memory check
    classify(H)                                          # "minimum" | "maximum" | ...

Everything runs on a float64 deep copy of the net, so the caller's net (and
its float32 weights) is never touched. The function analysed is

    J(theta) = loss(net(x; theta), y)

with theta the selected parameters (default: all trainable ones; BatchNorm's
running statistics are state, never parameters here) and the rest fixed.
Mode "eval" (default): BatchNorm uses its running statistics, Dropout is the
identity; "train": see cconv.analysis.rop.

HVP methods: "rop" (default) is the exact forward-over-reverse product
(rounding-level accuracy, about 2 gradient evaluations). "fd" is the
central difference of two gradients, (g(theta + h v) - g(theta - h v)) / 2h,
with h = cbrt(eps) * max(1, |theta|_inf) / |v|_inf (about 1e-9 relative on
smooth nets; wrong when +-h v crosses a ReLU or max-pool switch).
"""
import copy
import logging
import math
from dataclasses import dataclass

import numpy as np

from .rop import Program, loss_rule

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HessianOperator",
    "HessianTooLargeError",
    "TaylorCheck",
    "as_operator",
    "classify",
    "curvature",
    "definiteness",
    "gradient",
    "hessian",
    "hessian_nbytes",
    "hvp",
    "taylor_check",
]

log = logging.getLogger("cconv.analysis")

#: Refuse a dense Hessian above this many bytes unless max_bytes says otherwise.
DEFAULT_MAX_BYTES = 1_000_000_000


class HessianTooLargeError(MemoryError):
    """The dense Hessian would need more memory than the allowed limit."""


def _fmt_bytes(n):
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def hessian_nbytes(n_params):
    """Bytes of a dense float64 Hessian for n_params parameters."""
    return int(n_params) * int(n_params) * 8


def _chunks(n, batch_size):
    if batch_size is None or batch_size >= n:
        return [slice(0, n)]
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return [slice(i, min(i + int(batch_size), n)) for i in range(0, n, int(batch_size))]


class HessianOperator:
    """H of J(theta) = loss(net(x; theta), y) as a linear operator on flat vectors.

    net: a cconv Graph / Sequential (copied, cast to float64; the original is
        not modified). Built from x's shape if it was not.
    loss: a name ("cross_entropy", "mse") or a function (pred, target) ->
        (mean loss, grad wrt pred); the two built-ins have exact second-order
        rules, any other loss is differentiated once more numerically.
    x: the input batch (a tuple of arrays for several graph inputs); y: targets.
    params: None (every trainable parameter), "all" (frozen ones too), or
        names / prefixes as Graph.select takes them ("0_conv2d", ["fc.weight"]).
    mode: "eval" (default) or "train"; see cconv.analysis.rop.
    batch_size: evaluate x in chunks of this many samples (the loss is the
        sample-weighted mean over chunks, so the function is the same in eval
        mode; in train mode BatchNorm statistics are per chunk).
    method: "rop" (exact) or "fd" (central difference of gradients).

    Vectors are flat float64 arrays in the order of `names`; `unflatten` and
    `flatten` convert to and from {name: array}.
    """

    def __init__(self, net, loss, x, y, params=None, mode="eval", batch_size=None,
                 method="rop", seed=0):
        from ..graph import Graph

        if not isinstance(net, Graph):
            raise TypeError(f"net must be a cconv Graph or Sequential, got "
                            f"{type(net).__name__}")
        if method not in ("rop", "fd"):
            raise ValueError(f"method must be 'rop' or 'fd', got {method!r}")
        xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        xs = tuple(np.asarray(a, dtype=np.float64) for a in xs)
        n = len(xs[0])
        if n == 0 or any(len(a) != n for a in xs):
            raise ValueError(f"x must be a non-empty batch (several inputs: the same batch "
                             f"size each), got shapes {[a.shape for a in xs]}")
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"y must have one target per sample ({n}), got shape {y.shape}")
        graph = copy.deepcopy(net)
        if not graph.built:
            graph.build([a.shape[1:] for a in xs], seed=getattr(net, "seed", 0))
        graph.astype(np.float64)
        self.graph = graph
        self.mode = mode
        self.method = method
        self.names = self._select(graph, params)
        if not self.names:
            raise ValueError("no parameters selected: the net has no trainable parameters")
        refs = {f"{nname}.{p}": (node.layer, p) for nname, node in graph.nodes.items()
                for p in node.layer.params}
        self._refs = [refs[name] for name in self.names]
        for layer, p in self._refs:   # a frozen layer skips its weight gradient
            layer.trainable[p] = True
        self.shapes = [layer.params[p].shape for layer, p in self._refs]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.size = int(self.offsets[-1])
        self.loss_fn, self._lrule, loss_exact = loss_rule(loss)
        self.program = Program(graph, mode=mode, seed=seed)
        self.exact = loss_exact and not self.program.inexact
        self.xs, self.y = xs, y
        self._chunks = _chunks(n, batch_size)
        self._weights = [(s.stop - s.start) / n for s in self._chunks]
        self.n_samples = n
        self.n_matvec = 0
        self.n_gradient = 0

    @staticmethod
    def _select(graph, params):
        if params is None:
            frozen = set(graph.frozen())
            return [n for n in graph.select(None) if n not in frozen]
        if isinstance(params, str) and params == "all":
            return graph.select(None)
        return graph.select(params)

    # ------------------------------------------------------------ vectors
    @property
    def shape(self):
        return (self.size, self.size)

    def flatten(self, tensors):
        """{name: array} (every selected name) -> flat float64 vector."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise KeyError(f"missing parameters {missing}; expected {self.names}")
        out = np.empty(self.size)
        for name, shape, a, b in zip(self.names, self.shapes, self.offsets[:-1],
                                     self.offsets[1:]):
            t = np.asarray(tensors[name], dtype=np.float64)
            if t.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {t.shape}")
            out[a:b] = t.ravel()
        return out

    def unflatten(self, vector):
        """flat vector -> {name: array view}."""
        v = self._as_vector(vector)
        return {name: v[a:b].reshape(shape) for name, shape, a, b in
                zip(self.names, self.shapes, self.offsets[:-1], self.offsets[1:])}

    def _as_vector(self, vector, name="v"):
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (self.size,):
            raise ValueError(f"{name} must be a flat vector of the {self.size} selected "
                             f"parameters, got shape {v.shape}")
        return v

    def theta(self):
        """The selected parameters as a flat vector (a copy)."""
        return np.concatenate([layer.params[p].ravel() for layer, p in self._refs])

    def set_theta(self, theta):
        theta = self._as_vector(theta, "theta")
        for (layer, p), shape, a, b in zip(self._refs, self.shapes, self.offsets[:-1],
                                           self.offsets[1:]):
            layer.params[p][...] = theta[a:b].reshape(shape)

    # ------------------------------------------------------------ evaluation
    def _run(self, direction=None):
        loss = 0.0
        grad = np.zeros(self.size)
        hv = np.zeros(self.size) if direction is not None else None
        for chunk, (sl, w) in enumerate(zip(self._chunks, self._weights)):
            l, pg, prg = self.program.run([a[sl] for a in self.xs], self.y[sl],
                                          self._lrule, direction, chunk)
            loss += w * l
            for name, a, b in zip(self.names, self.offsets[:-1], self.offsets[1:]):
                grad[a:b] += w * pg[name].ravel()
                if hv is not None and name in prg:
                    hv[a:b] += w * prg[name].ravel()
        return loss, grad, hv

    def _at(self, theta, fn):
        if theta is None:
            return fn()
        keep = self.theta()
        try:
            self.set_theta(theta)
            return fn()
        finally:
            self.set_theta(keep)

    def loss(self, theta=None):
        """J at theta (default: the net's own parameters)."""
        return self._at(theta, lambda: self._run()[0])

    def loss_and_gradient(self, theta=None):
        self.n_gradient += 1
        return self._at(theta, lambda: self._run()[:2])

    def gradient(self, theta=None):
        return self.loss_and_gradient(theta)[1]

    def matvec(self, v):
        """H v for a flat vector v."""
        v = self._as_vector(v)
        self.n_matvec += 1
        if not np.any(v):
            return np.zeros(self.size)
        if self.method == "rop":
            return self._run(self.unflatten(v))[2]
        theta = self.theta()
        h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, np.abs(theta).max()) / \
            np.abs(v).max()
        plus = self._at(theta + h * v, lambda: self._run()[1])
        minus = self._at(theta - h * v, lambda: self._run()[1])
        return (plus - minus) / (2 * h)

    __matmul__ = matvec

    def dense(self, max_bytes=DEFAULT_MAX_BYTES, log_fn=None):
        """The dense Hessian (n HVPs, one per column), symmetrised.

        States the memory it needs first (through log_fn, default the
        "cconv.analysis" logger) and raises HessianTooLargeError above max_bytes.
        """
        max_bytes = _check_max_bytes(max_bytes)
        n = self.size
        need = hessian_nbytes(n)
        message = (f"{n} parameters -> {_fmt_bytes(need)} for the dense float64 Hessian "
                   f"({n} x {n}; limit {_fmt_bytes(max_bytes)})")
        (log_fn or log.info)(message)
        if need > max_bytes:
            raise HessianTooLargeError(
                f"{message}: refused. Pass max_bytes={need} (or more) to allow it, select "
                f"fewer parameters with params=..., or use top_eigenvalues / "
                f"hutchinson_trace, which need only Hessian-vector products")
        h = np.empty((n, n))
        e = np.zeros(n)
        for i in range(n):
            e[i] = 1.0
            h[:, i] = self.matvec(e)
            e[i] = 0.0
        diff = np.abs(h - h.T).max() if n else 0.0
        scale = np.abs(h).max() if n else 0.0
        self.last_asymmetry = (float(diff), float(scale))
        if diff > 1e-6 * max(scale, np.finfo(float).tiny):
            log.warning("the Hessian is not symmetric to 1e-6 (max|H - H^T| = %.3g, "
                        "max|H| = %.3g): a non-smooth point (ReLU or max-pool switch) or an "
                        "inexact layer rule", diff, scale)
        h += h.T
        h *= 0.5
        return h

    def __repr__(self):
        return (f"HessianOperator({self.size} parameters in {len(self.names)} arrays, "
                f"{self.n_samples} samples, mode={self.mode!r}, method={self.method!r}, "
                f"exact={self.exact})")


def as_operator(net, loss=None, x=None, y=None, **kwargs):
    """net itself when it is a HessianOperator (or any object with matvec(v) and
    size, e.g. an explicit symmetric matrix wrapped for tests), else a new one."""
    if isinstance(net, HessianOperator) or (hasattr(net, "matvec") and hasattr(net, "size")
                                            and not hasattr(net, "forward")):
        return net
    if loss is None or x is None or y is None:
        raise ValueError("pass net, loss, x and y (or a HessianOperator as net)")
    return HessianOperator(net, loss, x, y, **kwargs)


def hvp(net, loss=None, x=None, y=None, v=None, params=None, mode="eval", method="rop", batch_size=None):
    """H v, float64. v: a flat vector over the selected parameters, or {name: array};
    the result has the same form."""
    op = as_operator(net, loss, x, y, params=params, mode=mode, method=method,
                     batch_size=batch_size)
    if v is None:
        raise ValueError("v (the direction) is required")
    if isinstance(v, dict):
        return op.unflatten(op.matvec(op.flatten(v)))
    return op.matvec(v)


def gradient(net, loss=None, x=None, y=None, params=None, mode="eval", batch_size=None):
    """(loss, flat gradient) at the net's parameters, float64."""
    op = as_operator(net, loss, x, y, params=params, mode=mode, batch_size=batch_size)
    return op.loss_and_gradient()


def _check_max_bytes(max_bytes):
    """max_bytes as a number, or ValueError: NaN would pass every `need > max_bytes` test."""
    ok = isinstance(max_bytes, (int, float, np.integer, np.floating)) \
        and not isinstance(max_bytes, (bool, np.bool_)) and math.isfinite(max_bytes) \
        and max_bytes >= 0
    if not ok:
        raise ValueError(f"max_bytes must be a finite number of bytes >= 0, got {max_bytes!r}")
    return max_bytes


def hessian(net, loss=None, x=None, y=None, params=None, mode="eval", max_bytes=DEFAULT_MAX_BYTES,
            method="rop", batch_size=None, log_fn=None):
    """The dense Hessian (float64, symmetric) over the selected parameters.

    Before allocating it states "N parameters -> X GB" (log_fn, default the
    "cconv.analysis" logger) and refuses (HessianTooLargeError) above max_bytes
    (default 1 GB, about 11,000 parameters).
    """
    _check_max_bytes(max_bytes)     # before any work on the net
    op = as_operator(net, loss, x, y, params=params, mode=mode, method=method,
                     batch_size=batch_size)
    return op.dense(max_bytes=max_bytes, log_fn=log_fn)


def curvature(net, loss=None, x=None, y=None, v=None, params=None, mode="eval"):
    """v^T H v / |v|^2: the curvature of the loss along the line theta + t v (notes 1.2)."""
    op = as_operator(net, loss, x, y, params=params, mode=mode)
    if v is None:
        raise ValueError("v (the direction) is required")
    v = op.flatten(v) if isinstance(v, dict) else np.asarray(v, dtype=np.float64)
    nrm2 = float(v @ v)
    if nrm2 == 0.0:
        raise ValueError("v must not be the zero vector")
    return float(v @ op.matvec(v)) / nrm2


@dataclass
class TaylorCheck:
    """The loss along theta + t v against its first- and second-order models (notes 1.3, 1.6).

    error2 should shrink like t^3 for small t (order ~ 3) until rounding takes over.
    """
    t: np.ndarray
    actual: np.ndarray
    first_order: np.ndarray
    second_order: np.ndarray
    loss0: float
    slope: float          # g . v
    curvature: float      # v^T H v (v as given, or unit if normalised)
    direction: np.ndarray

    @property
    def error1(self):
        return np.abs(self.actual - self.first_order)

    @property
    def error2(self):
        return np.abs(self.actual - self.second_order)

    @property
    def relative_error2(self):
        """|J - model2| / |J - J0|: the share of the change the quadratic model misses."""
        change = np.abs(self.actual - self.loss0)
        return self.error2 / np.where(change > 0, change, np.inf)

    def order(self):
        """Fitted exponent p of error2 ~ t^p over the smallest half of the steps."""
        t, e = np.abs(self.t), self.error2
        ok = (t > 0) & (e > 0)
        t, e = t[ok], e[ok]
        if len(t) < 2:
            return float("nan")
        keep = np.argsort(t)[:max(2, len(t) // 2)]
        return float(np.polyfit(np.log(t[keep]), np.log(e[keep]), 1)[0])

    def table(self):
        rows = [(f"{'t':>10} {'J(t)':>14} {'1st order':>14} {'2nd order':>14} "
                 f"{'|err2|':>10} {'err2/dJ':>9}")]
        for i in range(len(self.t)):
            rows.append(f"{self.t[i]:>10.3g} {self.actual[i]:>14.8g} "
                        f"{self.first_order[i]:>14.8g} {self.second_order[i]:>14.8g} "
                        f"{self.error2[i]:>10.3g} {self.relative_error2[i]:>9.3g}")
        return "\n".join(rows)


def taylor_check(net, loss=None, x=None, y=None, v=None, steps=None, params=None,
                 mode="eval", seed=0, normalize=True):
    """Compare J(theta + t v) with J0 + t g.v + t^2/2 v^T H v for t in steps.

    v: a direction (flat or dict), "gradient" (steepest descent, -g), or
    None (a seeded random Gaussian direction). normalize: scale v to unit norm.
    steps: values of t (default 1e-4 ... 1, both signs).
    """
    op = as_operator(net, loss, x, y, params=params, mode=mode)
    loss0, g = op.loss_and_gradient()
    if v is None:
        v = np.random.default_rng(seed).standard_normal(op.size)
    elif isinstance(v, str):
        if v != "gradient":
            raise ValueError(f"v must be a vector, 'gradient' or None, got {v!r}")
        v = -g
    elif isinstance(v, dict):
        v = op.flatten(v)
    v = op._as_vector(v).copy()
    nrm = np.linalg.norm(v)
    if nrm == 0:
        raise ValueError("v must not be the zero vector")
    if normalize:
        v /= nrm
    if steps is None:
        base = np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
        steps = np.concatenate([-base[::-1], base])
    t = np.asarray(steps, dtype=np.float64)
    slope = float(g @ v)
    curv = float(v @ op.matvec(v))
    theta = op.theta()
    actual = np.array([op.loss(theta + ti * v) for ti in t])
    first = loss0 + t * slope
    second = first + 0.5 * t * t * curv
    return TaylorCheck(t, actual, first, second, float(loss0), slope, curv, v)


# ------------------------------------------------------------------ definiteness
def _eigenvalues_of(h_or_eigs):
    a = np.asarray(getattr(h_or_eigs, "eigenvalues", h_or_eigs), dtype=np.float64)
    if a.ndim == 2:
        from ..linalg import eigvalsh
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"a Hessian must be square, got shape {a.shape}")
        return eigvalsh(a)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"expected a square matrix or a non-empty 1-D array of "
                         f"eigenvalues, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("eigenvalues must be finite")
    return a


#: Default tolerances of classify: |lambda| <= max(atol, rtol * max|lambda|) counts as 0.
CLASSIFY_RTOL = 1e-6
CLASSIFY_ATOL = 1e-12


def definiteness(h_or_eigs, rtol=CLASSIFY_RTOL, atol=CLASSIFY_ATOL, tol=None):
    """Counts of positive / negative / zero eigenvalues and the resulting label.

    An eigenvalue counts as zero when |lambda| <= tol, with
    tol = max(atol, rtol * max|lambda|) unless given. Accepts a symmetric
    matrix (solved with cconv.linalg.eigvalsh), the eigenvalues, or any object
    with an `eigenvalues` attribute (a Lanczos result: its extreme
    eigenvalues decide the label just as the whole spectrum would).
    """
    lam = _eigenvalues_of(h_or_eigs)
    scale = float(np.abs(lam).max())
    if tol is None:
        tol = max(float(atol), float(rtol) * scale)
    pos = int((lam > tol).sum())
    neg = int((lam < -tol).sum())
    zero = lam.size - pos - neg
    if pos and neg:
        label = "saddle"
    elif zero:
        label = "degenerate"    # semi-definite: the second-order test is inconclusive
    elif pos:
        label = "minimum"
    else:
        label = "maximum"
    return {"label": label, "positive": pos, "negative": neg, "zero": zero,
            "tol": tol, "min": float(lam.min()), "max": float(lam.max()),
            "condition": (float(lam.max() / lam.min()) if label == "minimum" else math.inf)}


def classify(h_or_eigs, rtol=CLASSIFY_RTOL, atol=CLASSIFY_ATOL, tol=None):
    """"minimum" | "maximum" | "saddle" | "degenerate" from the Hessian's eigenvalues.

    With tol = max(atol, rtol * max|lambda|) (defaults 1e-12 and 1e-6, or tol
    given): all eigenvalues > tol: minimum (positive definite); all < -tol:
    maximum; some > tol and some < -tol: saddle, whatever the rest; otherwise
    some are within tol of zero and the rest share a sign: degenerate (the
    second-order test says nothing). It judges the curvature only: whether
    the point is critical (gradient ~ 0) is a separate question.
    """
    return definiteness(h_or_eigs, rtol=rtol, atol=atol, tol=tol)["label"]
