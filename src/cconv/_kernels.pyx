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


cdef inline cnp.ndarray _checked(object a, int typenum, bint writable, str name):
    """a, after checking it is a native, aligned C-contiguous array of typenum."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name} has dtype {a.dtype}, expected {_TYPE_NAMES[typenum]}")
    if not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be an aligned, native-endian C-contiguous array")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writable")
    return arr


cdef inline char *_data(object a, int typenum, int ndim, const int64_t *shape,
                        bint writable, str name) except NULL:
    """Data pointer of a, after checking it is a native C-contiguous array of
    typenum with exactly this shape."""
    cdef cnp.ndarray arr = _checked(a, typenum, writable, name)
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

# names of cconv.ops.conv2d's `activation` and `algorithm` -> C enums
ACTIVATIONS = {None: CCONV_ACT_NONE, "relu": CCONV_ACT_RELU}
ALGORITHMS = {"auto": CCONV_ALGO_AUTO, "im2col_gemm": CCONV_ALGO_GEMM,
              "winograd": CCONV_ALGO_WINOGRAD, "depthwise_direct": CCONV_ALGO_DEPTHWISE,
              "direct": CCONV_ALGO_DIRECT, "winograd_f4": CCONV_ALGO_WINOGRAD4,
              "winograd_rows": CCONV_ALGO_WINOGRAD_ROWS}


def conv2d_algorithm(tuple xshape, tuple wshape, tuple stride, tuple pads,
                     tuple dilation, int64_t groups):
    """The ALGORITHMS name that "auto" runs, whether Winograd F(2x2)/F(4x4)
    applies and whether Winograd along rows does."""
    cdef int64_t xs[4]
    cdef int64_t ws[4]
    cdef int i
    for i in range(4):
        xs[i] = xshape[i]
        ws[i] = wshape[i]
    cdef cconv_conv2d_params p = _conv_params(xs, ws, stride, pads, dilation, groups)
    cdef int algo = cconv_conv2d_algo(&p)
    name = {v: k for k, v in ALGORITHMS.items()}[algo]
    return name, bool(cconv_conv2d_winograd_ok(&p)), bool(cconv_conv2d_winograd_rows_ok(&p))


def set_flush_denormal(bint on):
    cconv_set_flush_denormal(on)


def clear_weight_cache():
    cconv_derived_clear()


def get_flush_denormal():
    return bool(cconv_get_flush_denormal())


def work_per_thread():
    """Multiply-adds per thread from which a kernel adds a thread (see threads.c)."""
    return cconv_work_per_thread()


def conv2d_forward(x, w, bias, y, tuple stride, tuple pads, tuple dilation,
                   int64_t groups, int nthreads, int activation=0, int algo=0,
                   bint pool2=False):
    """y = act(conv2d(x, w) + bias) (bias may be None); y preallocated.

    activation / algo: values of ACTIVATIONS / ALGORITHMS (0: none / auto).
    pool2: y = max_pool2d(that, 2), of (N, C_out, OH // 2, OW // 2), pooled in
    the direct kernel's epilogue (algo is then ignored).
    """
    cdef int64_t xs[4]
    cdef int64_t ws[4]
    cdef int64_t ys[4]
    _dims4(x, xs, "x")
    _dims4(w, ws, "w")
    cdef int t = _typenum(x, "x")
    cdef cconv_conv2d_params p = _conv_params(xs, ws, stride, pads, dilation, groups)
    ys[0] = p.n; ys[1] = p.c_out
    ys[2] = p.out_h // 2 if pool2 else p.out_h
    ys[3] = p.out_w // 2 if pool2 else p.out_w
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
            if pool2:
                status = cconv_conv2d_forward_maxpool2_f32(
                    &p, <float *>xp, <float *>wp, <float *>bp, <float *>yp, activation,
                    nthreads)
            else:
                status = cconv_conv2d_forward_ex_f32(
                    &p, <float *>xp, <float *>wp, <float *>bp, <float *>yp, activation,
                    algo, nthreads)
        else:
            if pool2:
                status = cconv_conv2d_forward_maxpool2_f64(
                    &p, <double *>xp, <double *>wp, <double *>bp, <double *>yp, activation,
                    nthreads)
            else:
                status = cconv_conv2d_forward_ex_f64(
                    &p, <double *>xp, <double *>wp, <double *>bp, <double *>yp, activation,
                    algo, nthreads)
    _raise_on(status)


# what conv2d_backward can be asked to run
BACKWARD_ALGORITHMS = {"auto": CCONV_ALGO_AUTO, "im2col_gemm": CCONV_ALGO_GEMM}


def conv2d_backward_input(dy, w, dx, tuple stride, tuple pads, tuple dilation,
                          int64_t groups, int nthreads, int algo=CCONV_ALGO_AUTO):
    """dx (preallocated, overwritten) = gradient of conv2d w.r.t. its input;
    algo one of BACKWARD_ALGORITHMS' values."""
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
            status = cconv_conv2d_backward_input_ex_f32(&p, <float *>dyp, <float *>wp,
                                                        <float *>dxp, algo, nthreads)
        else:
            status = cconv_conv2d_backward_input_ex_f64(&p, <double *>dyp, <double *>wp,
                                                        <double *>dxp, algo, nthreads)
    _raise_on(status)


def conv2d_backward_weight(dy, x, dw, db, tuple stride, tuple pads, tuple dilation,
                           int64_t groups, int nthreads, int algo=CCONV_ALGO_AUTO):
    """dw (and db unless None), preallocated and overwritten; algo as for
    conv2d_backward_input."""
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
            status = cconv_conv2d_backward_weight_ex_f32(&p, <float *>dyp, <float *>xp,
                                                         <float *>dwp, <float *>dbp, algo,
                                                         nthreads)
        else:
            status = cconv_conv2d_backward_weight_ex_f64(&p, <double *>dyp, <double *>xp,
                                                         <double *>dwp, <double *>dbp, algo,
                                                         nthreads)
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


# ---- image filtering (cconv.filters) ----
# Images are (n, h, w, c) C-contiguous, channels interleaved; one 2-D kernel
# (or its two separable factors) is applied to every channel. The kernel's
# dtype (float32/float64) is the compute type; the image and the output have
# it too, or are 8/16-bit integers (converted inside the C loops).

BORDER_CODES = {
    "constant": CCONV_BORDER_CONSTANT, "reflect": CCONV_BORDER_REFLECT,
    "mirror": CCONV_BORDER_MIRROR, "nearest": CCONV_BORDER_NEAREST,
    "wrap": CCONV_BORDER_WRAP,
}
_INT_TYPES = {cnp.NPY_UINT8: CCONV_DT_U8, cnp.NPY_INT8: CCONV_DT_I8,
              cnp.NPY_UINT16: CCONV_DT_U16, cnp.NPY_INT16: CCONV_DT_I16}
#: numpy dtypes that the C loops take for the image and the output directly
FILTER_INT_DTYPES = ("uint8", "int8", "uint16", "int16")


cdef inline int _filter_type(object a, int compute, str name, int *typenum) except -1:
    """CCONV_DT_* of array a for compute type `compute`; its typenum in typenum."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a numpy array")
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    typenum[0] = t
    if t == compute:
        return CCONV_DT_COMPUTE
    if t in _INT_TYPES:
        return _INT_TYPES[t]
    raise TypeError(f"{name} has dtype {a.dtype}, expected {_TYPE_NAMES[compute]} or "
                    f"one of {', '.join(FILTER_INT_DTYPES)}")


cdef cconv_filter2d_params _filter_params(object x, object y, int64_t kh, int64_t kw,
                                          int64_t anchor_h, int64_t anchor_w,
                                          int border, double cval, int compute,
                                          int64_t *xs, int64_t *ys,
                                          int *tx, int *ty) except *:
    _dims4(x, xs, "image")
    _dims4(y, ys, "output")
    cdef cconv_filter2d_params p
    p.n, p.h, p.w, p.c = xs[0], xs[1], xs[2], xs[3]
    p.kh, p.kw = kh, kw
    p.anchor_h, p.anchor_w = anchor_h, anchor_w
    p.out_h, p.out_w = ys[1], ys[2]
    p.border = border
    p.cval = cval
    p.in_type = _filter_type(x, compute, "image", tx)
    p.out_type = _filter_type(y, compute, "output", ty)
    if ys[0] != xs[0] or ys[3] != xs[3]:
        raise ValueError("filter2d: image and output batch/channels disagree")
    _raise_on(cconv_filter2d_check(&p))
    return p


def filter2d(x, k, y, int64_t anchor_h, int64_t anchor_w, int border, double cval,
             int nthreads):
    """y (preallocated, written) = correlation of x (n, h, w, c) with k (kh, kw)."""
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    cdef int64_t ks[2]
    cdef int tx, ty
    cdef int t = _typenum(k, "kernel")
    if cnp.PyArray_NDIM(<cnp.ndarray>k) != 2:
        raise ValueError("kernel must be a 2-D numpy array")
    ks[0] = cnp.PyArray_DIMS(<cnp.ndarray>k)[0]
    ks[1] = cnp.PyArray_DIMS(<cnp.ndarray>k)[1]
    cdef cconv_filter2d_params p = _filter_params(x, y, ks[0], ks[1], anchor_h, anchor_w,
                                                  border, cval, t, xs, ys, &tx, &ty)
    cdef char *xp = _data(x, tx, 4, xs, False, "image")
    cdef char *kp = _data(k, t, 2, ks, False, "kernel")
    cdef char *yp = _data(y, ty, 4, ys, True, "output")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_filter2d_f32(&p, xp, <float *>kp, yp, nthreads)
        else:
            status = cconv_filter2d_f64(&p, xp, <double *>kp, yp, nthreads)
    _raise_on(status)


def sepfilter2d(x, kcol, krow, y, int64_t anchor_h, int64_t anchor_w, int border,
                double cval, int nthreads):
    """y = correlation of x with the rank-1 kernel outer(kcol, krow)."""
    cdef int64_t xs[4]
    cdef int64_t ys[4]
    cdef int64_t kh, kw
    cdef int tx, ty
    cdef int t = _typenum(kcol, "kcol")
    if cnp.PyArray_NDIM(<cnp.ndarray>kcol) != 1 or not cnp.PyArray_Check(krow) or \
       cnp.PyArray_NDIM(<cnp.ndarray>krow) != 1:
        raise ValueError("kcol and krow must be 1-D numpy arrays")
    kh = cnp.PyArray_DIMS(<cnp.ndarray>kcol)[0]
    kw = cnp.PyArray_DIMS(<cnp.ndarray>krow)[0]
    cdef cconv_filter2d_params p = _filter_params(x, y, kh, kw, anchor_h, anchor_w,
                                                  border, cval, t, xs, ys, &tx, &ty)
    cdef char *xp = _data(x, tx, 4, xs, False, "image")
    cdef char *cp = _data(kcol, t, 1, &kh, False, "kcol")
    cdef char *rp = _data(krow, t, 1, &kw, False, "krow")
    cdef char *yp = _data(y, ty, 4, ys, True, "output")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        if t == cnp.NPY_FLOAT32:
            status = cconv_sepfilter2d_f32(&p, xp, <float *>cp, <float *>rp, yp, nthreads)
        else:
            status = cconv_sepfilter2d_f64(&p, xp, <double *>cp, <double *>rp, yp,
                                           nthreads)
    _raise_on(status)


def border_index(int64_t i, int64_t n, int border):
    """Input index at position i of an axis of length n (-1: outside, constant)."""
    if n < 1:
        raise ValueError("border_index: n must be >= 1")
    return cconv_border_index(i, n, border)
# ---- end of image filtering ----


# ---- inference chains (cconv.compiled; cconv_chain_forward in chain.c) ----
from libc.stdlib cimport calloc, free

STEP_KINDS = ("conv2d", "max_pool2d", "linear", "relu")


cdef char *_buffer_data(object a, int typenum, int64_t size, bint writable,
                        str name) except NULL:
    """Data pointer of a C-contiguous array of typenum with `size` (> 0) elements,
    any shape."""
    cdef cnp.ndarray arr = _checked(a, typenum, writable, name)
    if cnp.PyArray_SIZE(arr) != size:
        raise ValueError(f"{name} has {a.size} elements, expected {size}")
    return <char *>cnp.PyArray_DATA(arr)


cdef class Chain:
    """A compiled plan's steps run as one C call (cconv_chain_forward).

    specs: one tuple per step (its per-sample shapes; the batch is n):
      ("conv2d", params, has_bias, w_shape, (c, h, w), stride, pads4, dilation,
       groups, activation, pool2, y)
      ("max_pool2d", (c, h, w), kernel, stride, pads4, dilation, (out_h, out_w), y)
      ("linear", params, has_bias, in_features, out_features, activation, y)
      ("relu", y)
    y: the step's output for the whole batch (the plan's buffer), None for the
    last step (then given to run()). Weights are read from the layers'
    `params` dicts on every run, so replaced arrays are seen; one of another
    dtype or shape raises TypeError/ValueError (the caller then takes the
    step-by-step path).
    """
    cdef cconv_chain_step *steps
    cdef int nsteps
    cdef int typenum
    cdef readonly int64_t n
    cdef int64_t in_size, out_size
    cdef list weights     # per step: (params, has_bias, weight shape) or None
    cdef list buffers     # kept alive: the steps' y arrays

    def __cinit__(self):
        self.steps = NULL

    def __init__(self, list specs, int64_t n, dtype):
        cdef int typenum = cnp.dtype(dtype).num
        if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
            raise TypeError(f"Chain: dtype must be float32 or float64, got {dtype}")
        if not specs:
            raise ValueError("Chain: no steps")
        if n < 1:
            raise ValueError(f"Chain: n must be >= 1, got {n}")
        self.typenum, self.n, self.nsteps = typenum, n, len(specs)
        self.steps = <cconv_chain_step *>calloc(len(specs), sizeof(cconv_chain_step))
        if self.steps == NULL:
            raise MemoryError("Chain: no memory for the steps")
        self.weights, self.buffers = [], []
        cdef cconv_chain_step *s
        cdef int64_t in_size, out_size, prev = -1
        cdef double work
        cdef int i
        for i, spec in enumerate(specs):
            s = &self.steps[i]
            kind = spec[0]
            if kind == "conv2d":
                _, params, has_bias, wsh, chw, stride, pads, dil, groups, act, pool2, y = spec
                s.kind = CCONV_STEP_CONV2D
                s.conv.n = 1
                s.conv.c_in, s.conv.h, s.conv.w = chw
                s.conv.c_out, _, s.conv.kh, s.conv.kw = wsh
                s.conv.stride_h, s.conv.stride_w = stride
                s.conv.pad_top, s.conv.pad_bottom, s.conv.pad_left, s.conv.pad_right = pads
                s.conv.dil_h, s.conv.dil_w = dil
                s.conv.groups = groups
                s.activation, s.pool2, s.algo = act, pool2, CCONV_ALGO_AUTO
                if wsh[1] * groups != chw[0]:
                    raise ValueError(f"Chain step {i}: weight {wsh} and input channels "
                                     f"{chw[0]} disagree")
                self.weights.append((params, bool(has_bias), tuple(wsh)))
            elif kind == "max_pool2d":
                _, chw, k, stride, pads, dil, out_hw, y = spec
                s.kind = CCONV_STEP_MAX_POOL2D
                s.pool.n = 1
                s.pool.c, s.pool.h, s.pool.w = chw
                s.pool.kh, s.pool.kw = k
                s.pool.stride_h, s.pool.stride_w = stride
                s.pool.pad_top, s.pool.pad_bottom, s.pool.pad_left, s.pool.pad_right = pads
                s.pool.dil_h, s.pool.dil_w = dil
                s.pool.out_h, s.pool.out_w = out_hw
                self.weights.append(None)
            elif kind == "linear":
                _, params, has_bias, in_f, out_f, act, y = spec
                s.kind = CCONV_STEP_LINEAR
                s.in_features, s.out_features, s.activation = in_f, out_f, act
                self.weights.append((params, bool(has_bias), (out_f, in_f)))
            elif kind == "relu":
                _, y = spec
                s.kind = CCONV_STEP_RELU
                self.weights.append(None)
            else:
                raise ValueError(f"Chain step {i}: kind must be one of {STEP_KINDS}, "
                                 f"got {kind!r}")
            if cconv_chain_step_sizes(s, &in_size, &out_size, &work) != CCONV_OK:
                raise ValueError(f"Chain step {i} ({kind}): parameters out of range")
            if s.kind == CCONV_STEP_RELU:
                if prev < 0:
                    raise ValueError("Chain: a chain cannot start with relu")
                in_size = out_size = prev
            if prev >= 0 and in_size != prev:
                raise ValueError(f"Chain step {i} ({kind}) reads {in_size} elements per "
                                 f"sample, the step before writes {prev}")
            if i == 0:
                self.in_size = in_size
            prev = out_size
            if y is None:
                if i != len(specs) - 1:
                    raise ValueError(f"Chain step {i}: only the last step's output may be "
                                     "given per run")
            else:
                s.y = <void *>_buffer_data(y, typenum, n * out_size, True, f"step {i} output")
            self.buffers.append(y)
        self.out_size = prev

    def __dealloc__(self):
        free(self.steps)

    def split_threads(self, int nthreads):
        """Threads a run with nthreads splits the batch over (1: each step uses its own)."""
        return cconv_chain_split_threads(self.steps, self.nsteps, self.n,
                                         4 if self.typenum == cnp.NPY_FLOAT32 else 8, nthreads)

    def run(self, x, y, int nthreads):
        """Runs the chain on x (n samples); writes and returns the last step's output
        (y, or the last step's own buffer when y is None)."""
        cdef int t = self.typenum
        cdef char *xp = _buffer_data(x, t, self.n * self.in_size, False, "x")
        cdef int last = self.nsteps - 1
        if y is None:
            y = self.buffers[last]
            if y is None:
                raise ValueError("Chain.run: the last step has no buffer: pass y")
        else:
            self.steps[last].y = <void *>_buffer_data(y, t, self.n * self.out_size, True, "y")
        cdef int i, nd
        cdef int64_t shape[4]
        cdef cconv_chain_step *s
        for i in range(self.nsteps):
            entry = self.weights[i]
            if entry is None:
                continue
            params, has_bias, wsh = entry
            s = &self.steps[i]
            nd = len(wsh)
            shape[0], shape[1] = wsh[0], wsh[1]
            if nd == 4:
                shape[2], shape[3] = wsh[2], wsh[3]
            s.w = <void *>_data(params["weight"], t, nd, shape, False, "weight")
            s.bias = NULL
            if has_bias:
                s.bias = <void *>_data(params["bias"], t, 1, shape, False, "bias")
        cdef int status
        cdef int64_t n = self.n
        with nogil:
            if t == cnp.NPY_FLOAT32:
                status = cconv_chain_forward_f32(self.steps, self.nsteps, n, <float *>xp,
                                                 nthreads)
            else:
                status = cconv_chain_forward_f64(self.steps, self.nsteps, n, <double *>xp,
                                                 nthreads)
        _raise_on(status)
        return y
# ---- end of inference chains ----


# ---- public C API (include/cconv.h, src/cconv/_core/capi.c; docs/c-api.md) ----
# The capsule cconv._C_API holds the library's function table (cconv_api_t,
# ABI version first); include/cconv_capsule.h's import_cconv() reads it.
from cpython.pycapsule cimport PyCapsule_New

cdef extern from "cconv.h" nogil:
    ctypedef struct cconv_api_t:
        int abi_major
        int abi_minor
    const cconv_api_t *cconv_get_api()

_C_API = PyCapsule_New(<void *>cconv_get_api(), b"cconv._C_API", NULL)
C_ABI_VERSION = (cconv_get_api().abi_major, cconv_get_api().abi_minor)
# ---- end of public C API ----
