# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Symmetric eigensolvers: LAPACK ?syevd / ?syevr through scipy.linalg.cython_lapack.

A separate extension from cconv._kernels because cimporting cython_lapack
makes Python import all of scipy.linalg (~0.2 s) when the module loads;
cconv.linalg imports this module on first use, so `import cconv` stays fast.

LAPACK is column-major. The routines receive a C-ordered copy of A, which
LAPACK reads as A^T, so uplo "U" there is the lower triangle of A as numpy
sees it: the triangle numpy.linalg.eigh reads by default (UPLO="L").
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport fabs
from scipy.linalg.cython_lapack cimport dsyevd, dsyevr, ssyevd, ssyevr

cnp.import_array()

ctypedef fused real:
    float
    double


def asymmetry(const real[:, ::1] a):
    """(max |a_ij - a_ji|, max |a_ij|) in one blocked pass, no temporary."""
    cdef Py_ssize_t n = a.shape[0], i, j, bi, bj, i0, j0, i1, j1
    cdef Py_ssize_t nb = (n + 63) // 64
    cdef double diff = 0.0, big = 0.0, d, v
    with nogil:
        # 64x64 blocks of the lower triangle, each against its mirror block
        for bi in range(nb):
            i0 = bi * 64
            i1 = min(i0 + 64, n)
            for bj in range(bi + 1):
                j0 = bj * 64
                j1 = min(j0 + 64, n)
                for i in range(i0, i1):
                    for j in range(j0, min(j1, i + 1)):
                        d = fabs(<double>a[i, j] - <double>a[j, i])
                        if d > diff:
                            diff = d
                        v = fabs(<double>a[i, j])
                        if v > big:
                            big = v
                        v = fabs(<double>a[j, i])
                        if v > big:
                            big = v
    return diff, big


cdef int _syevd(real[:, ::1] a, real[::1] w, bint vectors) except -1:
    """Full spectrum by divide and conquer; a is overwritten (eigenvectors as rows)."""
    cdef int n = <int>a.shape[0], lda = max(n, 1), lwork = -1, liwork = -1, info = 0
    cdef char *jobz = b"V" if vectors else b"N"
    cdef char *uplo = b"U"
    cdef real work_query = 0
    cdef int iwork_query = 0
    if real is double:
        dsyevd(jobz, uplo, &n, &a[0, 0], &lda, &w[0], &work_query, &lwork,
               &iwork_query, &liwork, &info)
    else:
        ssyevd(jobz, uplo, &n, &a[0, 0], &lda, &w[0], &work_query, &lwork,
               &iwork_query, &liwork, &info)
    if info != 0:
        raise RuntimeError(f"?syevd workspace query failed (info={info})")
    lwork = <int>work_query + 1
    liwork = max(iwork_query, 1)
    cdef real[::1] work = np.empty(lwork, dtype=np.float64 if real is double else np.float32)
    cdef int[::1] iwork = np.empty(liwork, dtype=np.intc)
    with nogil:
        if real is double:
            dsyevd(jobz, uplo, &n, &a[0, 0], &lda, &w[0], &work[0], &lwork,
                   &iwork[0], &liwork, &info)
        else:
            ssyevd(jobz, uplo, &n, &a[0, 0], &lda, &w[0], &work[0], &lwork,
                   &iwork[0], &liwork, &info)
    return info


cdef int _syevr(real[:, ::1] a, real[::1] w, real[:, ::1] z, int il, int iu,
                bint vectors, int *m) except -1:
    """Eigenvalues il..iu (1-based, inclusive) by relatively robust representations."""
    cdef int n = <int>a.shape[0], lda = max(n, 1), ldz = max(n, 1)
    cdef int lwork = -1, liwork = -1, info = 0
    cdef char *jobz = b"V" if vectors else b"N"
    cdef char *rng = b"A" if (il == 1 and iu == n) else b"I"
    cdef char *uplo = b"U"
    cdef real vl = 0, vu = 0, abstol = 0    # 0: LAPACK's default tolerance
    cdef real work_query = 0
    cdef int iwork_query = 0
    cdef int[::1] isuppz = np.empty(2 * max(n, 1), dtype=np.intc)
    cdef real *zp = &z[0, 0]
    if real is double:
        dsyevr(jobz, rng, uplo, &n, &a[0, 0], &lda, &vl, &vu, &il, &iu, &abstol, m,
               &w[0], zp, &ldz, &isuppz[0], &work_query, &lwork, &iwork_query, &liwork,
               &info)
    else:
        ssyevr(jobz, rng, uplo, &n, &a[0, 0], &lda, &vl, &vu, &il, &iu, &abstol, m,
               &w[0], zp, &ldz, &isuppz[0], &work_query, &lwork, &iwork_query, &liwork,
               &info)
    if info != 0:
        raise RuntimeError(f"?syevr workspace query failed (info={info})")
    lwork = <int>work_query + 1
    liwork = max(iwork_query, 1)
    cdef real[::1] work = np.empty(lwork, dtype=np.float64 if real is double else np.float32)
    cdef int[::1] iwork = np.empty(liwork, dtype=np.intc)
    with nogil:
        if real is double:
            dsyevr(jobz, rng, uplo, &n, &a[0, 0], &lda, &vl, &vu, &il, &iu, &abstol, m,
                   &w[0], zp, &ldz, &isuppz[0], &work[0], &lwork, &iwork[0], &liwork,
                   &info)
        else:
            ssyevr(jobz, rng, uplo, &n, &a[0, 0], &lda, &vl, &vu, &il, &iu, &abstol, m,
                   &w[0], zp, &ldz, &isuppz[0], &work[0], &lwork, &iwork[0], &liwork,
                   &info)
    return info


def syevd(real[:, ::1] a, bint vectors=True):
    """(w, V) of the symmetric matrix in `a` (C-ordered, overwritten, n >= 1).

    V is `a` itself reinterpreted: LAPACK leaves eigenvector k in column-major
    column k, which is row k of the C-ordered buffer, so V = asarray(a).T.
    """
    cdef Py_ssize_t n = a.shape[0]
    w = np.empty(n, dtype=np.float64 if real is double else np.float32)
    cdef real[::1] wv = w
    info = _syevd(a, wv, vectors)
    if info != 0:
        raise np.linalg.LinAlgError(f"?syevd did not converge (info={info})")
    return w, (np.asarray(a).T if vectors else None)


def syevr(real[:, ::1] a, int lo, int hi, bint vectors=True):
    """Eigenvalues with indices lo..hi (0-based, inclusive, ascending order) and
    their eigenvectors as columns (None without vectors). `a` is overwritten."""
    cdef int n = <int>a.shape[0], m = 0
    cdef int count = hi - lo + 1
    dt = np.float64 if real is double else np.float32
    w = np.empty(max(n, 1), dtype=dt)
    # LAPACK writes eigenvector k to column-major column k of z (ldz = n): in a
    # C-ordered (count, n) buffer that is row k, so Z = zbuf.T.
    zbuf = np.empty((count if vectors else 1, max(n, 1)), dtype=dt)
    cdef real[::1] wv = w
    cdef real[:, ::1] zv = zbuf
    info = _syevr(a, wv, zv, lo + 1, hi + 1, vectors, &m)
    if info != 0:
        raise np.linalg.LinAlgError(f"?syevr failed (info={info})")
    if m != count:
        raise np.linalg.LinAlgError(f"?syevr returned {m} eigenvalues, expected {count}")
    return w[:m].copy(), (zbuf.T if vectors else None)
