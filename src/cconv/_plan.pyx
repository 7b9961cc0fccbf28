# cython: language_level=3
"""Epilogues for compiled inference plans (cconv.compiled): bias and ReLU in place.

numpy's maximum(x, 0) costs ~4 us on a 3456-element LeNet activation (NaN
handling, ufunc dispatch); these loops cost well under 1 us, which matters
when a whole batch-1 LeNet runs in tens of microseconds. Semantics follow
numpy/torch exactly: ReLU keeps NaN (`x < 0 ? 0 : x`), the bias add is one
rounding per element like `y += bias`.

Arrays must be native-endian, C-contiguous, float32 or float64, of one dtype;
anything else raises (the caller then takes numpy's path).
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()


cdef inline int _check(object a, str name, bint writable) except -1:
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be an aligned, native-endian C-contiguous array")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writable")
    return t


def relu(x, y):
    """y = relu(x) element-wise (y may be x); same size and dtype."""
    cdef int t = _check(x, "x", False)
    if _check(y, "y", True) != t:
        raise TypeError(f"y has dtype {y.dtype}, expected {x.dtype}")
    cdef int64_t n = cnp.PyArray_SIZE(<cnp.ndarray>x), i
    if cnp.PyArray_SIZE(<cnp.ndarray>y) != n:
        raise ValueError(f"y has {y.size} elements, x has {n}")
    cdef float *xf
    cdef float *yf
    cdef double *xd
    cdef double *yd
    cdef float vf
    cdef double vd
    if t == cnp.NPY_FLOAT32:
        xf = <float *>cnp.PyArray_DATA(<cnp.ndarray>x)
        yf = <float *>cnp.PyArray_DATA(<cnp.ndarray>y)
        with nogil:
            for i in range(n):
                vf = xf[i]          # one load, then a select: vectorises, no branch
                yf[i] = 0 if vf < 0 else vf
    else:
        xd = <double *>cnp.PyArray_DATA(<cnp.ndarray>x)
        yd = <double *>cnp.PyArray_DATA(<cnp.ndarray>y)
        with nogil:
            for i in range(n):
                vd = xd[i]
                yd[i] = 0 if vd < 0 else vd


def bias_act_rows(y, bias, bint relu):
    """y (rows, n) += bias (n,), then ReLU when relu; in place. bias may be None."""
    cdef int t = _check(y, "y", True)
    cdef cnp.ndarray arr = <cnp.ndarray>y
    if cnp.PyArray_NDIM(arr) != 2:
        raise ValueError(f"y must be 2-D, got shape {y.shape}")
    cdef int64_t rows = cnp.PyArray_DIM(arr, 0), n = cnp.PyArray_DIM(arr, 1), r, j
    cdef float *yf = NULL
    cdef float *bf = NULL
    cdef double *yd = NULL
    cdef double *bd = NULL
    if bias is not None:
        if _check(bias, "bias", False) != t:
            raise TypeError(f"bias has dtype {bias.dtype}, expected {y.dtype}")
        if cnp.PyArray_NDIM(<cnp.ndarray>bias) != 1 or cnp.PyArray_DIM(<cnp.ndarray>bias, 0) != n:
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
    if t == cnp.NPY_FLOAT32:
        yf = <float *>cnp.PyArray_DATA(arr)
        if bias is not None:
            bf = <float *>cnp.PyArray_DATA(<cnp.ndarray>bias)
        with nogil:
            for r in range(rows):
                if bf != NULL:
                    for j in range(n):
                        yf[r * n + j] = yf[r * n + j] + bf[j]
                if relu:
                    for j in range(n):
                        yf[r * n + j] = 0 if yf[r * n + j] < 0 else yf[r * n + j]
    else:
        yd = <double *>cnp.PyArray_DATA(arr)
        if bias is not None:
            bd = <double *>cnp.PyArray_DATA(<cnp.ndarray>bias)
        with nogil:
            for r in range(rows):
                if bd != NULL:
                    for j in range(n):
                        yd[r * n + j] = yd[r * n + j] + bd[j]
                if relu:
                    for j in range(n):
                        yd[r * n + j] = 0 if yd[r * n + j] < 0 else yd[r * n + j]


def relu_backward(grad, y, out):
    """out = grad where y > 0, else 0 (torch's threshold_backward); same size and dtype."""
    cdef int t = _check(grad, "grad", False)
    if _check(y, "y", False) != t or _check(out, "out", True) != t:
        raise TypeError(f"grad, y and out must share one dtype, got {grad.dtype}, "
                        f"{y.dtype}, {out.dtype}")
    cdef int64_t n = cnp.PyArray_SIZE(<cnp.ndarray>grad), i
    if cnp.PyArray_SIZE(<cnp.ndarray>y) != n or cnp.PyArray_SIZE(<cnp.ndarray>out) != n:
        raise ValueError(f"grad, y and out must have the same size, got {grad.size}, "
                         f"{y.size}, {out.size}")
    cdef float *gf
    cdef float *yf
    cdef float *of
    cdef double *gd
    cdef double *yd
    cdef double *od
    cdef float gv
    cdef double gw
    if t == cnp.NPY_FLOAT32:
        gf = <float *>cnp.PyArray_DATA(<cnp.ndarray>grad)
        yf = <float *>cnp.PyArray_DATA(<cnp.ndarray>y)
        of = <float *>cnp.PyArray_DATA(<cnp.ndarray>out)
        with nogil:
            for i in range(n):
                gv = gf[i]          # both loads unconditional: a select, not a branch
                of[i] = gv if yf[i] > 0 else 0
    else:
        gd = <double *>cnp.PyArray_DATA(<cnp.ndarray>grad)
        yd = <double *>cnp.PyArray_DATA(<cnp.ndarray>y)
        od = <double *>cnp.PyArray_DATA(<cnp.ndarray>out)
        with nogil:
            for i in range(n):
                gw = gd[i]
                od[i] = gw if yd[i] > 0 else 0
