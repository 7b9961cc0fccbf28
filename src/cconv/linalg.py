"""Symmetric eigensolver: LAPACK ?syevd (full spectrum) / ?syevr (a subset by index).

    w, V = cconv.linalg.eigh(H)                 # ascending, eigenvectors as columns
    w, V = cconv.linalg.eigh(H, subset=(0, 4))  # the 5 smallest only (syevr)
    w = cconv.linalg.eigvalsh(H, subset=(-3, -1))   # the 3 largest, no vectors

The LAPACK routines are scipy's (scipy.linalg.cython_lapack, called from the
Cython module cconv._lapack without the GIL). That module is imported on the
first call, not with `import cconv`, because it makes Python import
scipy.linalg (~0.2 s).

Threads: LAPACK runs on the OpenBLAS that scipy ships, whose thread pool is
separate from the OpenMP pool of cconv's kernels; cconv.set_num_threads does
not change it. Pass threads=n (needs threadpoolctl, which scikit-learn brings)
or set OPENBLAS_NUM_THREADS before the process starts. On a small machine,
avoid alternating big eigh calls with cconv kernels in a tight loop: two
spinning pools fight over the cores (see ANCHORS "Pitfalls").
"""
import contextlib
import warnings

import numpy as np

__all__ = [
    "DEFAULT_SYMMETRY_RTOL",
    "AsymmetryError",
    "AsymmetryWarning",
    "asymmetry",
    "eigh",
    "eigvalsh",
]

#: Relative tolerance of the symmetry check, max|A - A^T| <= rtol * max|A|, per dtype.
DEFAULT_SYMMETRY_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


class AsymmetryError(ValueError):
    """The matrix is not symmetric within the tolerance (a Hessian must be: Clairaut)."""


class AsymmetryWarning(UserWarning):
    pass


_lapack = None


def _lapack_module():
    global _lapack
    if _lapack is None:
        from . import _lapack as module
        _lapack = module
    return _lapack


def _blas_threads(threads):
    if threads is None:
        return contextlib.nullcontext()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn("cconv.linalg: threads= needs threadpoolctl (pip install "
                      "threadpoolctl); running with OpenBLAS's own thread count",
                      RuntimeWarning, stacklevel=3)
        return contextlib.nullcontext()
    return threadpool_limits(int(threads), user_api="blas")


def _as_square(a, name="A"):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real matrix, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {a.shape}")
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (it has NaN or inf entries)")
    return a, dtype


def asymmetry(a):
    """(max |a_ij - a_ji|, max |a_ij|) of a square matrix, without a temporary copy."""
    a, dtype = _as_square(a)
    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.aligned:         # np.frombuffer at an odd offset
        a = a.copy()
    if a.size == 0:
        return 0.0, 0.0
    return _lapack_module().asymmetry(a)


def _check_symmetry(a, dtype, check, rtol):
    if check == "ignore":
        return
    if check not in ("raise", "warn"):
        raise ValueError(f"check must be 'raise', 'warn' or 'ignore', got {check!r}")
    rtol = DEFAULT_SYMMETRY_RTOL[dtype] if rtol is None else float(rtol)
    diff, big = _lapack_module().asymmetry(a)
    if diff > rtol * big:
        msg = (f"matrix is not symmetric: max|A - A^T| = {diff:.3g} > rtol * max|A| = "
               f"{rtol:g} * {big:.3g} (a Hessian is symmetric by Clairaut's theorem; "
               f"symmetrise it with (A + A.T) / 2, or pass check='ignore' to use its "
               f"lower triangle as numpy.linalg.eigh does)")
        if check == "raise":
            raise AsymmetryError(msg)
        warnings.warn(msg, AsymmetryWarning, stacklevel=4)


def _subset_bounds(subset, n):
    if subset is None:
        return None
    try:
        lo, hi = (int(i) for i in subset)
    except (TypeError, ValueError):
        raise ValueError(f"subset must be a pair of indices (lo, hi), inclusive, got "
                         f"{subset!r}") from None
    lo = lo + n if lo < 0 else lo
    hi = hi + n if hi < 0 else hi
    if not 0 <= lo <= hi < n:
        raise ValueError(f"subset={subset!r} must satisfy 0 <= lo <= hi < n={n} (negative "
                         f"indices count from the end)")
    return lo, hi


def eigh(a, subset=None, vectors=True, check="raise", rtol=None, threads=None,
         driver=None):
    """Eigenvalues (ascending) and eigenvectors (as columns) of a real symmetric matrix.

    subset: (lo, hi) indices into the ascending spectrum, inclusive; negative
        ones count from the end: (-k, -1) are the k largest. Only those are
        computed (syevr).
    vectors: False returns (w, None) and skips the eigenvectors.
    check: what to do when max|A - A^T| > rtol * max|A|: "raise"
        (AsymmetryError), "warn" or "ignore". Only the lower triangle is read,
        as by numpy.linalg.eigh.
    rtol: symmetry tolerance, default DEFAULT_SYMMETRY_RTOL for the dtype.
    threads: OpenBLAS threads for this call (threadpoolctl); None leaves them.
    driver: "evd" (divide and conquer, the default for the full spectrum, as
        numpy) or "evr" (the default for a subset).

    float32 input is solved in float32 (ssyev*), everything else in float64.
    """
    a, dtype = _as_square(a)
    n = a.shape[0]
    bounds = _subset_bounds(subset, n)
    if driver not in (None, "evd", "evr"):
        raise ValueError(f"driver must be None, 'evd' or 'evr', got {driver!r}")
    if driver == "evd" and bounds is not None:
        raise ValueError("driver='evd' computes the whole spectrum: use driver='evr' "
                         "(or None) with subset")
    if n == 0:
        return np.empty(0, dtype), (np.empty((0, 0), dtype) if vectors else None)
    lapack = _lapack_module()
    # LAPACK overwrites its input: always work on a private C-ordered copy.
    work = np.array(a, dtype=dtype, order="C", copy=True)
    _check_symmetry(work, dtype, check, rtol)
    with _blas_threads(threads):
        if bounds is None and driver != "evr":
            return lapack.syevd(work, bool(vectors))
        lo, hi = bounds if bounds is not None else (0, n - 1)
        return lapack.syevr(work, lo, hi, bool(vectors))


def eigvalsh(a, subset=None, check="raise", rtol=None, threads=None, driver=None):
    """Eigenvalues only (ascending); see eigh."""
    return eigh(a, subset=subset, vectors=False, check=check, rtol=rtol,
                threads=threads, driver=driver)[0]
