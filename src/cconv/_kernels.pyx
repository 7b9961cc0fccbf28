# cython: language_level=3
"""Cython layer over the C core: nogil entry points fused over float/double,
and thin Python wrappers that take validated, C-contiguous numpy arrays.

Only cconv.ops calls the Python wrappers; it has already checked shapes,
dtypes and parameters, so the wrappers check only what protects memory.
"""
from libc.stdint cimport int64_t
cimport numpy as cnp

cnp.import_array()

_STATUS_MESSAGES = {
    CCONV_ENOMEM: "cconv: out of memory for a work buffer",
    CCONV_EINVAL: "cconv: invalid kernel parameters",
}


cdef inline void _raise_on(int status) except *:
    if status == CCONV_ENOMEM:
        raise MemoryError(_STATUS_MESSAGES[status])
    if status != CCONV_OK:
        raise ValueError(_STATUS_MESSAGES.get(status, f"cconv: error {status}"))


# ---- noexcept nogil entry points (declared in _kernels.pxd) ----

cdef int conv2d_forward_t(const cconv_conv2d_params *p, const floating *x,
                        const floating *w, const floating *bias, floating *y,
                        int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_forward_f32(p, x, w, bias, y, nthreads)
    else:
        return cconv_conv2d_forward_f64(p, x, w, bias, y, nthreads)

cdef int conv2d_backward_input_t(const cconv_conv2d_params *p, const floating *dy,
                               const floating *w, floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_backward_input_f32(p, dy, w, dx, nthreads)
    else:
        return cconv_conv2d_backward_input_f64(p, dy, w, dx, nthreads)

cdef int conv2d_backward_weight_t(const cconv_conv2d_params *p, const floating *dy,
                                const floating *x, floating *dw, floating *db,
                                int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_backward_weight_f32(p, dy, x, dw, db, nthreads)
    else:
        return cconv_conv2d_backward_weight_f64(p, dy, x, dw, db, nthreads)

cdef int max_pool2d_forward_t(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int64_t *indices, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_max_pool2d_forward_f32(p, x, y, indices, nthreads)
    else:
        return cconv_max_pool2d_forward_f64(p, x, y, indices, nthreads)

cdef int max_pool2d_backward_t(const cconv_pool2d_params *p, const floating *dy,
                             const int64_t *indices, floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_max_pool2d_backward_f32(p, dy, indices, dx, nthreads)
    else:
        return cconv_max_pool2d_backward_f64(p, dy, indices, dx, nthreads)

cdef int avg_pool2d_forward_t(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_avg_pool2d_forward_f32(p, x, y, nthreads)
    else:
        return cconv_avg_pool2d_forward_f64(p, x, y, nthreads)

cdef int avg_pool2d_backward_t(const cconv_pool2d_params *p, const floating *dy,
                             floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_avg_pool2d_backward_f32(p, dy, dx, nthreads)
    else:
        return cconv_avg_pool2d_backward_f64(p, dy, dx, nthreads)

cdef int gemm_t(int transa, int transb, int64_t M, int64_t N, int64_t K,
              floating alpha, const floating *A, int64_t lda, const floating *B,
              int64_t ldb, floating beta, floating *C, int64_t ldc,
              int nthreads) noexcept nogil:
    if floating is float:
        return cconv_gemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb,
                              beta, C, ldc, nthreads)
    else:
        return cconv_gemm_f64(transa, transb, M, N, K, alpha, A, lda, B, ldb,
                              beta, C, ldc, nthreads)


# ---- array access ----
_TYPE_NAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT64: "float64", cnp.NPY_INT64: "int64"}

# The Python wrappers below take numpy arrays that cconv.ops has already
# validated; they check again only what protects memory (type, dtype, layout,
# every dimension), with C-level calls, because they sit on the per-call path
# (a fused `def` or a memoryview costs microseconds per argument).

cdef inline int _typenum(object a, str name) except -1:
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array")
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must be float32 or float64")
    return t


cdef inline char *_data(object a, int typenum, int ndim, const int64_t *shape,
                        bint writable, str name) except NULL:
    """Data pointer of a, after checking it is a native C-contiguous array of
    typenum with exactly this shape."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {_TYPE_NAMES[typenum]}")
    if not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be a native-endian C-contiguous array")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writable")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {cnp.PyArray_NDIM(arr)}-D")
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    cdef int i
    for i in range(ndim):
        if dims[i] != shape[i]:
            expected = [shape[j] for j in range(ndim)]
            raise ValueError(f"{name} has shape {a.shape}, expected {tuple(expected)}")
    # a zero-size array may have a NULL-ish pointer: never dereferenced then
    return <char *>cnp.PyArray_DATA(arr) if cnp.PyArray_DATA(arr) != NULL else <char *>1


cdef inline void _dims4(object a, int64_t *out, str name) except *:
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 4:
        raise ValueError(f"{name} must be a 4-D numpy array")
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>a)
    cdef int i
    for i in range(4):
        out[i] = dims[i]


# ---- parameter structs ----

cdef cconv_conv2d_params _conv_params(const int64_t *xs, const int64_t *ws, tuple stride,
                                      tuple pads, tuple dilation, int64_t groups) except *:
    cdef cconv_conv2d_params p
    p.n, p.c_in, p.h, p.w = xs[0], xs[1], xs[2], xs[3]
    p.c_out, p.kh, p.kw = ws[0], ws[2], ws[3]
    p.stride_h, p.stride_w = stride
    p.pad_top, p.pad_bottom, p.pad_left, p.pad_right = pads
    p.dil_h, p.dil_w = dilation
    p.groups = groups
    _raise_on(cconv_conv2d_check(&p))
    if ws[1] * groups != xs[1]:
        raise ValueError("conv2d: weight and input channels disagree")
    return p


cdef cconv_pool2d_params _pool_params(const int64_t *xs, tuple kernel, tuple stride,
                                      tuple pads, tuple dilation, const int64_t *ys,
                                      bint count_include_pad) except *:
    cdef cconv_pool2d_params p
    p.n, p.c, p.h, p.w = xs[0], xs[1], xs[2], xs[3]
    p.kh, p.kw = kernel
    p.stride_h, p.stride_w = stride
    p.pad_top, p.pad_bottom, p.pad_left, p.pad_right = pads
    p.dil_h, p.dil_w = dilation
    p.out_h, p.out_w = ys[2], ys[3]
    p.count_include_pad = count_include_pad
    if ys[0] != xs[0] or ys[1] != xs[1]:
        raise ValueError("pool: input and output batch/channels disagree")
    _raise_on(cconv_pool2d_check(&p))
    # the window of the last output must start inside the padded input
    if (p.out_h - 1) * p.stride_h >= p.h + p.pad_top + p.pad_bottom or \
       (p.out_w - 1) * p.stride_w >= p.w + p.pad_left + p.pad_right:
        raise ValueError("pool: output larger than the input allows")
    return p


# ---- Python wrappers over C-contiguous arrays ----

def conv2d_forward(x, w, bias, y, tuple stride, tuple pads, tuple dilation,
                   int64_t groups, int nthreads):
    """y = conv2d(x, w) + bias (bias may be None); y preallocated."""
    cdef int64_t xs[4]
    cdef int64_t ws[4]
    cdef int64_t ys[4]
    _dims4(x, xs, "x")
    _dims4(w, ws, "w")
    cdef int t = _typenum(x, "x")
    cdef cconv_conv2d_params p = _conv_params(xs, ws, stride, pads, dilation, groups)
    ys[0] = p.n; ys[1] = p.c_out; ys[2] = p.out_h; ys[3] = p.out_w
    cdef char *xp = _data(x, t, 4, xs, False, "x")
    cdef char *wp = _data(w, t, 4, ws, False, "w")
    cdef char *yp = _data(y, t, 4, ys, True, "y")
    cdef char *bp = NULL
    if bias is not None:
        bp = _data(bias, t, 1, &ws[0], False, "bias")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_conv2d_forward_f32(&p, <float *>xp, <float *>wp, <float *>bp,
                                              <float *>yp, nthreads)
        else:
            status = cconv_conv2d_forward_f64(&p, <double *>xp, <double *>wp, <double *>bp,
                                              <double *>yp, nthreads)
    _raise_on(status)


def conv2d_backward_input(dy, w, dx, tuple stride, tuple pads, tuple dilation,
                          int64_t groups, int nthreads):
    """dx (preallocated, overwritten) = gradient of conv2d w.r.t. its input."""
    cdef int64_t xs[4]
    cdef int64_t ws[4]
    cdef int64_t ys[4]
    _dims4(dx, xs, "dx")
    _dims4(w, ws, "w")
    cdef int t = _typenum(dy, "dy")
    cdef cconv_conv2d_params p = _conv_params(xs, ws, stride, pads, dilation, groups)
    ys[0] = p.n; ys[1] = p.c_out; ys[2] = p.out_h; ys[3] = p.out_w
    cdef char *dyp = _data(dy, t, 4, ys, False, "grad_out")
    cdef char *wp = _data(w, t, 4, ws, False, "w")
    cdef char *dxp = _data(dx, t, 4, xs, True, "dx")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_conv2d_backward_input_f32(&p, <float *>dyp, <float *>wp,
                                                     <float *>dxp, nthreads)
        else:
            status = cconv_conv2d_backward_input_f64(&p, <double *>dyp, <double *>wp,
                                                     <double *>dxp, nthreads)
    _raise_on(status)


def conv2d_backward_weight(dy, x, dw, db, tuple stride, tuple pads, tuple dilation,
                           int64_t groups, int nthreads):
    """dw (and db unless None), preallocated and overwritten."""
    cdef int64_t xs[4]
    cdef int64_t ws[4]
    cdef int64_t ys[4]
    _dims4(x, xs, "x")
    _dims4(dw, ws, "dw")
    cdef int t = _typenum(x, "x")
    cdef cconv_conv2d_params p = _conv_params(xs, ws, stride, pads, dilation, groups)
    ys[0] = p.n; ys[1] = p.c_out; ys[2] = p.out_h; ys[3] = p.out_w
    cdef char *dyp = _data(dy, t, 4, ys, False, "grad_out")
    cdef char *xp = _data(x, t, 4, xs, False, "x")
    cdef char *dwp = _data(dw, t, 4, ws, True, "dw")
    cdef char *dbp = NULL
    if db is not None:
        dbp = _data(db, t, 1, &ws[0], True, "db")
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_conv2d_backward_weight_f32(&p, <float *>dyp, <float *>xp,
                                                      <float *>dwp, <float *>dbp, nthreads)
        else:
            status = cconv_conv2d_backward_weight_f64(&p, <double *>dyp, <double *>xp,
                                                      <double *>dwp, <double *>dbp, nthreads)
    _raise_on(status)


def max_pool2d_forward(x, y, indices, tuple kernel, tuple stride, tuple pads,
                       tuple dilation, int nthreads):
    """y (and indices unless None) preallocated."""
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    _dims4(x, xs, "x")
    _dims4(y, ys, "y")
    cdef int t = _typenum(x, "x")
    cdef cconv_pool2d_params p = _pool_params(xs, kernel, stride, pads, dilation, ys, False)
    cdef char *xp = _data(x, t, 4, xs, False, "x")
    cdef char *yp = _data(y, t, 4, ys, True, "y")
    cdef char *ip = NULL
    if indices is not None:
        ip = _data(indices, cnp.NPY_INT64, 4, ys, True, "indices")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_max_pool2d_forward_f32(&p, <float *>xp, <float *>yp,
                                                  <int64_t *>ip, nthreads)
        else:
            status = cconv_max_pool2d_forward_f64(&p, <double *>xp, <double *>yp,
                                                  <int64_t *>ip, nthreads)
    _raise_on(status)


def max_pool2d_backward(dy, indices, dx, int nthreads):
    """dx (preallocated, overwritten): dy routed to the flat indices of each plane."""
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    _dims4(dx, xs, "dx")
    _dims4(dy, ys, "grad_out")
    cdef int t = _typenum(dy, "grad_out")
    if ys[0] != xs[0] or ys[1] != xs[1]:
        raise ValueError("max_pool2d_backward: grad_out and dx disagree")
    cdef cconv_pool2d_params p
    p.n, p.c, p.h, p.w = xs[0], xs[1], xs[2], xs[3]
    p.out_h, p.out_w = ys[2], ys[3]
    cdef char *dyp = _data(dy, t, 4, ys, False, "grad_out")
    cdef char *ip = _data(indices, cnp.NPY_INT64, 4, ys, False, "indices")
    cdef char *dxp = _data(dx, t, 4, xs, True, "dx")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_max_pool2d_backward_f32(&p, <float *>dyp, <int64_t *>ip,
                                                   <float *>dxp, nthreads)
        else:
            status = cconv_max_pool2d_backward_f64(&p, <double *>dyp, <int64_t *>ip,
                                                   <double *>dxp, nthreads)
    _raise_on(status)


def avg_pool2d_forward(x, y, tuple kernel, tuple stride, tuple pads,
                       bint count_include_pad, int nthreads):
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    _dims4(x, xs, "x")
    _dims4(y, ys, "y")
    cdef int t = _typenum(x, "x")
    cdef cconv_pool2d_params p = _pool_params(xs, kernel, stride, pads, (1, 1), ys,
                                              count_include_pad)
    cdef char *xp = _data(x, t, 4, xs, False, "x")
    cdef char *yp = _data(y, t, 4, ys, True, "y")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_avg_pool2d_forward_f32(&p, <float *>xp, <float *>yp, nthreads)
        else:
            status = cconv_avg_pool2d_forward_f64(&p, <double *>xp, <double *>yp, nthreads)
    _raise_on(status)


def avg_pool2d_backward(dy, dx, tuple kernel, tuple stride, tuple pads,
                        bint count_include_pad, int nthreads):
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    _dims4(dx, xs, "dx")
    _dims4(dy, ys, "grad_out")
    cdef int t = _typenum(dy, "grad_out")
    cdef cconv_pool2d_params p = _pool_params(xs, kernel, stride, pads, (1, 1), ys,
                                              count_include_pad)
    cdef char *dyp = _data(dy, t, 4, ys, False, "grad_out")
    cdef char *dxp = _data(dx, t, 4, xs, True, "dx")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_avg_pool2d_backward_f32(&p, <float *>dyp, <float *>dxp, nthreads)
        else:
            status = cconv_avg_pool2d_backward_f64(&p, <double *>dyp, <double *>dxp, nthreads)
    _raise_on(status)


def gemm(bint transa, bint transb, double alpha, a, b, double beta, c, int nthreads):
    """c = alpha * op(a) op(b) + beta * c, all 2-D C-contiguous of one dtype."""
    cdef int t = _typenum(c, "c")
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2 or \
       not cnp.PyArray_Check(b) or cnp.PyArray_NDIM(<cnp.ndarray>b) != 2 or \
       cnp.PyArray_NDIM(<cnp.ndarray>c) != 2:
        raise ValueError("gemm: a, b and c must be 2-D arrays")
    cdef cnp.npy_intp *ad = cnp.PyArray_DIMS(<cnp.ndarray>a)
    cdef cnp.npy_intp *bd = cnp.PyArray_DIMS(<cnp.ndarray>b)
    cdef cnp.npy_intp *cd = cnp.PyArray_DIMS(<cnp.ndarray>c)
    cdef int64_t M = cd[0], N = cd[1]
    cdef int64_t K = ad[0] if transa else ad[1]
    cdef int64_t ash[2]
    cdef int64_t bsh[2]
    cdef int64_t csh[2]
    ash[0] = K if transa else M; ash[1] = M if transa else K
    bsh[0] = N if transb else K; bsh[1] = K if transb else N
    csh[0] = M; csh[1] = N
    cdef char *ap = _data(a, t, 2, ash, False, "a")
    cdef char *bp = _data(b, t, 2, bsh, False, "b")
    cdef char *cp = _data(c, t, 2, csh, True, "c")
    if M == 0 or N == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_gemm_f32(transa, transb, M, N, K, <float>alpha, <float *>ap,
                                    ash[1], <float *>bp, bsh[1], <float>beta,
                                    <float *>cp, N, nthreads)
        else:
            status = cconv_gemm_f64(transa, transb, M, N, K, alpha, <double *>ap,
                                    ash[1], <double *>bp, bsh[1], beta,
                                    <double *>cp, N, nthreads)
    _raise_on(status)


def openmp_enabled():
    return bool(cconv_openmp_enabled())


def max_threads():
    return cconv_max_threads()
