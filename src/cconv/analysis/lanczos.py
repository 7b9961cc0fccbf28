"""Eigenvalues, trace and spectral density of a Hessian from Hessian-vector products.

    res = top_eigenvalues(net, "cross_entropy", x, y, k=5, which="both")
    res.eigenvalues, res.residuals, res.iterations, res.converged
    hutchinson_trace(net, "cross_entropy", x, y, samples=100)
    spectral_density(net, "cross_entropy", x, y).density(grid)

Lanczos keeps every basis vector and re-orthogonalises each new one against
all of them twice (full re-orthogonalisation: no spurious copies of converged
eigenvalues, at O(n m) memory for m steps). When the Krylov space is exhausted
(an invariant subspace, e.g. repeated eigenvalues) it restarts with a fresh
random vector orthogonal to the basis, so repeated eigenvalues are found then.
Before that, a single start vector sees one copy of each repeated eigenvalue:
the values reported are true eigenvalues (their residuals say so), but a
multiplicity can be missed, e.g. the 2nd copy of the top eigenvalue replaced
by the next distinct one. Use the dense Hessian when multiplicities matter.
A Ritz pair (theta, y) has residual |H y - theta y| = |beta_m s_m|; it counts
as converged when that is <= tol * max|theta|, and since H is symmetric the
eigenvalue error is at most the residual.
"""
from dataclasses import dataclass, field

import numpy as np

from .hessian import as_operator

__all__ = [
    "EigenResult",
    "SpectralDensity",
    "TraceEstimate",
    "hutchinson_trace",
    "lanczos",
    "spectral_density",
    "top_eigenvalues",
]


@dataclass
class EigenResult:
    """Ritz values (ascending) and vectors (columns) with their convergence report."""
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray          # |H y - theta y| per pair
    iterations: int                # Lanczos steps (= Krylov dimension)
    converged: bool                # every wanted pair within tol
    n_matvec: int
    which: str
    tol: float
    history: list = field(default_factory=list, repr=False)  # (step, max rel. residual)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.eigenvalues, dtype=dtype)

    def __len__(self):
        return len(self.eigenvalues)

    def report(self):
        state = "converged" if self.converged else "NOT converged"
        lines = [(f"Lanczos ({self.which}): {self.iterations} steps, {self.n_matvec} "
                  f"Hessian-vector products, {state} (tol {self.tol:g})")]
        lines += [f"  lambda = {lam: .8g}   residual {r:.2e}"
                  for lam, r in zip(self.eigenvalues, self.residuals)]
        return "\n".join(lines)


def _wanted(order_len, k, which):
    if which == "largest":
        return list(range(max(0, order_len - k), order_len))
    if which == "smallest":
        return list(range(min(k, order_len)))
    if which == "both":
        return sorted(set(range(min(k, order_len))) |
                      set(range(max(0, order_len - k), order_len)))
    raise ValueError(f"which must be 'largest', 'smallest' or 'both', got {which!r}")


def _tridiag_eigh(alpha, beta):
    from ..linalg import eigh
    m = len(alpha)
    t = np.diag(alpha)
    if m > 1:
        t += np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
    return eigh(t, check="ignore")


def lanczos(matvec, n, k=6, which="largest", tol=1e-8, max_iter=None, seed=0,
            v0=None, check_every=1):
    """k eigenpairs at one or both ends of the spectrum of a symmetric operator.

    matvec: v -> H v on flat float64 vectors of length n. which: "largest",
    "smallest" (algebraically), or "both" (k of each). tol: relative residual.
    max_iter: Krylov dimension limit (default min(n, max(4k + 40, 120))).
    Returns an EigenResult; converged=False when max_iter ran out first.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    want = 2 * k if which == "both" else k
    _wanted(want, k, which)   # validates which
    if want > n:
        raise ValueError(f"k={k} ({which}) asks for {want} eigenvalues of a {n} x {n} "
                         f"operator")
    m_max = min(n, max(4 * want + 40, 120)) if max_iter is None else min(int(max_iter), n)
    if m_max < want:
        raise ValueError(f"max_iter={max_iter} must be at least the number of "
                         f"eigenvalues wanted ({want})")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(n) if v0 is None else np.asarray(v0, dtype=np.float64).copy()
    q /= np.linalg.norm(q)
    basis = np.empty((m_max + 1, n))
    basis[0] = q
    alpha, beta = [], []
    n_matvec = 0
    history = []
    converged = False
    theta = s = None
    for j in range(m_max):
        w = np.asarray(matvec(basis[j]), dtype=np.float64)
        n_matvec += 1
        a = float(basis[j] @ w)
        alpha.append(a)
        w = w - a * basis[j]
        if j > 0:
            w -= beta[j - 1] * basis[j - 1]
        for _ in range(2):  # full re-orthogonalisation, twice is enough
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(abs(x) for x in alpha) + (max(beta) if beta else 0.0)
        exhausted = b <= 1e-12 * max(scale, np.finfo(float).tiny)
        m = j + 1
        # an exhausted Krylov space restarts below (unless it is the whole space):
        # its Ritz values are exact but may lack copies of repeated eigenvalues
        if m >= want and (m % check_every == 0 or m == m_max) and \
                not (exhausted and m < m_max):
            theta, s = _tridiag_eigh(np.array(alpha), np.array(beta + [b]))
            idx = _wanted(m, k, which)
            res = np.abs(b * s[-1, idx])
            rel = res / max(np.abs(theta).max(), np.finfo(float).tiny)
            history.append((m, float(rel.max())))
            if rel.max() <= tol:
                converged = True
                beta.append(b)
                break
        if m == m_max:
            beta.append(b)
            break
        if exhausted:
            # invariant subspace: continue from a fresh direction orthogonal to the basis
            b = 0.0
            w = rng.standard_normal(n)
            for _ in range(2):
                w -= basis[:m].T @ (basis[:m] @ w)
            w /= np.linalg.norm(w)
            beta.append(b)
            basis[m] = w
            continue
        beta.append(b)
        basis[m] = w / b
    m = len(alpha)
    if theta is None or len(theta) != m:
        theta, s = _tridiag_eigh(np.array(alpha), np.array(beta))
    idx = _wanted(m, k, which)
    vectors = basis[:m].T @ s[:, idx]
    residuals = np.abs(beta[m - 1] * s[-1, idx])
    if m == n:   # the whole space: T is similar to H, the values are exact
        converged = True
    return EigenResult(theta[idx], vectors, residuals, m, converged, n_matvec, which,
                       tol, history)


def top_eigenvalues(net, loss=None, x=None, y=None, k=6, which="largest", params=None,
                    mode="eval", tol=1e-8, max_iter=None, seed=0, batch_size=None,
                    verify=True):
    """k extreme eigenvalues of the loss Hessian by Lanczos on exact HVPs.

    which: "largest" | "smallest" | "both" (k of each). Returns an EigenResult
    (np.asarray(result) gives the eigenvalues, ascending). verify=True
    recomputes each residual |H y - lambda y| with one more HVP per pair.
    net may also be a HessianOperator (then loss, x, y are not needed).
    """
    op = as_operator(net, loss, x, y, params=params, mode=mode, batch_size=batch_size)
    res = lanczos(op.matvec, op.size, k=k, which=which, tol=tol, max_iter=max_iter,
                  seed=seed)
    if verify:
        res.residuals = np.array([np.linalg.norm(op.matvec(v) - lam * v)
                                  for lam, v in zip(res.eigenvalues, res.eigenvectors.T)])
        res.n_matvec += len(res.eigenvalues)
    return res


@dataclass
class TraceEstimate:
    """Hutchinson's estimate tr(H) ~ mean of z^T H z over random +-1 vectors z."""
    estimate: float
    stderr: float
    samples: np.ndarray

    def __float__(self):
        return self.estimate


def hutchinson_trace(net, loss=None, x=None, y=None, samples=64, params=None, mode="eval",
                     seed=0, batch_size=None):
    """tr(H) from `samples` Rademacher probes (one HVP each), with its standard error."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    op = as_operator(net, loss, x, y, params=params, mode=mode, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for i in range(samples):
        z = rng.integers(0, 2, op.size) * 2.0 - 1.0
        values[i] = z @ op.matvec(z)
    stderr = float(values.std(ddof=1) / np.sqrt(samples)) if samples > 1 else float("inf")
    return TraceEstimate(float(values.mean()), stderr, values)


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe l, nodes theta_i^l with weights tau_i^l
    (squared first components of T's eigenvectors, summing to 1 per probe)."""
    nodes: np.ndarray     # (probes, steps)
    weights: np.ndarray   # (probes, steps)
    n: int                # dimension of H

    def density(self, grid=None, sigma=None, points=400):
        """(grid, phi): the eigenvalue density smoothed by a Gaussian of width sigma,
        normalised to integrate to 1 (multiply by n for eigenvalue counts)."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        span = max(hi - lo, 1e-12)
        if sigma is None:
            sigma = span / 100
        if grid is None:
            grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
        grid = np.asarray(grid, dtype=np.float64)
        diff = grid[:, None, None] - self.nodes[None]
        kern = np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        phi = (kern * self.weights[None]).sum(axis=(1, 2)) / self.nodes.shape[0]
        return grid, phi

    def trace(self):
        """n * E[sum_i tau_i theta_i]: the trace implied by the quadrature."""
        return float(self.n * (self.nodes * self.weights).sum(axis=1).mean())

    def moments(self, p):
        """Estimate of tr(H^p) / n."""
        return float((self.nodes ** p * self.weights).sum(axis=1).mean())


def spectral_density(net, loss=None, x=None, y=None, probes=8, steps=80, params=None,
                     mode="eval", seed=0, batch_size=None):
    """Eigenvalue density of H by stochastic Lanczos quadrature.

    probes random unit vectors, steps Lanczos steps each (full
    re-orthogonalisation); probes * steps HVPs in all.
    """
    op = as_operator(net, loss, x, y, params=params, mode=mode, batch_size=batch_size)
    steps = min(int(steps), op.size)
    if steps < 1 or int(probes) < 1:
        raise ValueError(f"probes and steps must be positive, got {probes}, {steps}")
    rng = np.random.default_rng(seed)
    nodes = np.zeros((probes, steps))
    weights = np.zeros((probes, steps))
    for p in range(probes):
        v0 = rng.integers(0, 2, op.size) * 2.0 - 1.0
        t_vals, t_vecs = _slq_tridiag(op.matvec, op.size, v0, steps)
        m = len(t_vals)
        nodes[p, :m] = t_vals
        nodes[p, m:] = t_vals[0]   # padding with zero weight
        weights[p, :m] = t_vecs[0] ** 2
    return SpectralDensity(nodes, weights, op.size)


def _slq_tridiag(matvec, n, v0, steps):
    """Eigen-decomposition of the Lanczos tridiagonal T started at v0 (no restarts)."""
    q = v0 / np.linalg.norm(v0)
    basis = [q]
    alpha, beta = [], []
    for j in range(steps):
        w = matvec(basis[j])
        a = float(basis[j] @ w)
        alpha.append(a)
        w = w - a * basis[j] - (beta[j - 1] * basis[j - 1] if j else 0.0)
        qmat = np.array(basis)
        for _ in range(2):
            w -= qmat.T @ (qmat @ w)
        b = float(np.linalg.norm(w))
        if j == steps - 1 or b <= 1e-12 * max(abs(a), 1e-300):
            break
        beta.append(b)
        basis.append(w / b)
    return _tridiag_eigh(np.array(alpha), np.array(beta + [0.0]))
