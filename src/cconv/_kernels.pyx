# cython: language_level=3
"""Cython layer over the C core: nogil entry points fused over float/double,
and thin Python wrappers that take validated, C-contiguous numpy arrays.

Only cconv.ops calls the Python wrappers; it has already checked shapes,
dtypes and parameters, so the wrappers check only what protects memory.
"""
from libc.stdint cimport int64_t

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

cdef int conv2d_forward(const cconv_conv2d_params *p, const floating *x,
                        const floating *w, const floating *bias, floating *y,
                        int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_forward_f32(p, x, w, bias, y, nthreads)
    else:
        return cconv_conv2d_forward_f64(p, x, w, bias, y, nthreads)

cdef int conv2d_backward_input(const cconv_conv2d_params *p, const floating *dy,
                               const floating *w, floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_backward_input_f32(p, dy, w, dx, nthreads)
    else:
        return cconv_conv2d_backward_input_f64(p, dy, w, dx, nthreads)

cdef int conv2d_backward_weight(const cconv_conv2d_params *p, const floating *dy,
                                const floating *x, floating *dw, floating *db,
                                int nthreads) noexcept nogil:
    if floating is float:
        return cconv_conv2d_backward_weight_f32(p, dy, x, dw, db, nthreads)
    else:
        return cconv_conv2d_backward_weight_f64(p, dy, x, dw, db, nthreads)

cdef int max_pool2d_forward(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int64_t *indices, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_max_pool2d_forward_f32(p, x, y, indices, nthreads)
    else:
        return cconv_max_pool2d_forward_f64(p, x, y, indices, nthreads)

cdef int max_pool2d_backward(const cconv_pool2d_params *p, const floating *dy,
                             const int64_t *indices, floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_max_pool2d_backward_f32(p, dy, indices, dx, nthreads)
    else:
        return cconv_max_pool2d_backward_f64(p, dy, indices, dx, nthreads)

cdef int avg_pool2d_forward(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_avg_pool2d_forward_f32(p, x, y, nthreads)
    else:
        return cconv_avg_pool2d_forward_f64(p, x, y, nthreads)

cdef int avg_pool2d_backward(const cconv_pool2d_params *p, const floating *dy,
                             floating *dx, int nthreads) noexcept nogil:
    if floating is float:
        return cconv_avg_pool2d_backward_f32(p, dy, dx, nthreads)
    else:
        return cconv_avg_pool2d_backward_f64(p, dy, dx, nthreads)

cdef int gemm(int transa, int transb, int64_t M, int64_t N, int64_t K,
              floating alpha, const floating *A, int64_t lda, const floating *B,
              int64_t ldb, floating beta, floating *C, int64_t ldc,
              int nthreads) noexcept nogil:
    if floating is float:
        return cconv_gemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb,
                              beta, C, ldc, nthreads)
    else:
        return cconv_gemm_f64(transa, transb, M, N, K, alpha, A, lda, B, ldb,
                              beta, C, ldc, nthreads)


# ---- parameter structs ----

cdef cconv_conv2d_params _conv_params(tuple shape_x, tuple shape_w, tuple stride,
                                      tuple pads, tuple dilation, int64_t groups) except *:
    cdef cconv_conv2d_params p
    p.n, p.c_in, p.h, p.w = shape_x
    p.c_out, _, p.kh, p.kw = shape_w
    p.stride_h, p.stride_w = stride
    p.pad_top, p.pad_bottom, p.pad_left, p.pad_right = pads
    p.dil_h, p.dil_w = dilation
    p.groups = groups
    _raise_on(cconv_conv2d_check(&p))
    return p


cdef cconv_pool2d_params _pool_params(tuple shape_x, tuple kernel, tuple stride,
                                      tuple pads, tuple dilation, tuple out_hw,
                                      bint count_include_pad) except *:
    cdef cconv_pool2d_params p
    p.n, p.c, p.h, p.w = shape_x
    p.kh, p.kw = kernel
    p.stride_h, p.stride_w = stride
    p.pad_top, p.pad_bottom, p.pad_left, p.pad_right = pads
    p.dil_h, p.dil_w = dilation
    p.out_h, p.out_w = out_hw
    p.count_include_pad = count_include_pad
    _raise_on(cconv_pool2d_check(&p))
    return p


def conv2d_output_hw(tuple shape_x, tuple shape_w, tuple stride, tuple pads,
                     tuple dilation, int64_t groups):
    """(out_h, out_w) as the C core computes it; ValueError when out of range."""
    cdef cconv_conv2d_params p = _conv_params(shape_x, shape_w, stride, pads,
                                              dilation, groups)
    return p.out_h, p.out_w


# ---- Python wrappers over C-contiguous arrays ----

def conv2d_forward_py(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                      const floating[::1] bias, floating[:, :, :, ::1] y,
                      tuple stride, tuple pads, tuple dilation, int64_t groups,
                      bint has_bias, int nthreads):
    cdef cconv_conv2d_params p = _conv_params((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (w.shape[0], w.shape[1], w.shape[2], w.shape[3]),
                                              stride, pads, dilation, groups)
    if p.out_h != y.shape[2] or p.out_w != y.shape[3] or p.n == 0:
        if p.n == 0:
            return
        raise ValueError("conv2d: output buffer has the wrong shape")
    cdef const floating *bp = &bias[0] if has_bias else NULL
    cdef int status
    with nogil:
        status = conv2d_forward(&p, &x[0, 0, 0, 0], &w[0, 0, 0, 0], bp,
                                &y[0, 0, 0, 0], nthreads)
    _raise_on(status)


def conv2d_backward_input_py(const floating[:, :, :, ::1] dy,
                             const floating[:, :, :, ::1] w,
                             floating[:, :, :, ::1] dx, tuple stride, tuple pads,
                             tuple dilation, int64_t groups, int nthreads):
    cdef cconv_conv2d_params p = _conv_params((dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]), (w.shape[0], w.shape[1], w.shape[2], w.shape[3]),
                                              stride, pads, dilation, groups)
    if p.n == 0:
        return
    if p.out_h != dy.shape[2] or p.out_w != dy.shape[3]:
        raise ValueError("conv2d_backward: grad_out has the wrong shape")
    cdef int status
    with nogil:
        status = conv2d_backward_input(&p, &dy[0, 0, 0, 0], &w[0, 0, 0, 0],
                                       &dx[0, 0, 0, 0], nthreads)
    _raise_on(status)


def conv2d_backward_weight_py(const floating[:, :, :, ::1] dy,
                              const floating[:, :, :, ::1] x,
                              floating[:, :, :, ::1] dw, floating[::1] db,
                              tuple stride, tuple pads, tuple dilation, int64_t groups,
                              bint want_bias, int nthreads):
    cdef cconv_conv2d_params p = _conv_params((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (dw.shape[0], dw.shape[1], dw.shape[2], dw.shape[3]),
                                              stride, pads, dilation, groups)
    if p.out_h != dy.shape[2] or p.out_w != dy.shape[3]:
        raise ValueError("conv2d_backward: grad_out has the wrong shape")
    cdef floating *dbp = &db[0] if want_bias else NULL
    cdef const floating *dyp = &dy[0, 0, 0, 0] if p.n > 0 else NULL
    cdef const floating *xp = &x[0, 0, 0, 0] if p.n > 0 else NULL
    cdef int status
    with nogil:
        status = conv2d_backward_weight(&p, dyp, xp, &dw[0, 0, 0, 0], dbp, nthreads)
    _raise_on(status)


def max_pool2d_forward_py(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                          int64_t[:, :, :, ::1] indices, tuple kernel, tuple stride,
                          tuple pads, tuple dilation, bint want_indices, int nthreads):
    cdef cconv_pool2d_params p = _pool_params((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), kernel, stride, pads,
                                              dilation, (y.shape[2], y.shape[3]), False)
    if p.n == 0:
        return
    cdef int64_t *ip = &indices[0, 0, 0, 0] if want_indices else NULL
    cdef int status
    with nogil:
        status = max_pool2d_forward(&p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], ip, nthreads)
    _raise_on(status)


def max_pool2d_backward_py(const floating[:, :, :, ::1] dy,
                           const int64_t[:, :, :, ::1] indices,
                           floating[:, :, :, ::1] dx, int nthreads):
    cdef cconv_pool2d_params p = _pool_params((dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]), (1, 1), (1, 1),
                                              (0, 0, 0, 0), (1, 1),
                                              (dy.shape[2], dy.shape[3]), False)
    if (indices.shape[0], indices.shape[1], indices.shape[2], indices.shape[3]) != (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]):
        raise ValueError("max_pool2d_backward: indices and grad_out differ in shape")
    if p.n == 0:
        return
    cdef int status
    with nogil:
        status = max_pool2d_backward(&p, &dy[0, 0, 0, 0], &indices[0, 0, 0, 0],
                                     &dx[0, 0, 0, 0], nthreads)
    _raise_on(status)


def avg_pool2d_forward_py(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                          tuple kernel, tuple stride, tuple pads,
                          bint count_include_pad, int nthreads):
    cdef cconv_pool2d_params p = _pool_params((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), kernel, stride, pads,
                                              (1, 1), (y.shape[2], y.shape[3]),
                                              count_include_pad)
    if p.n == 0:
        return
    cdef int status
    with nogil:
        status = avg_pool2d_forward(&p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], nthreads)
    _raise_on(status)


def avg_pool2d_backward_py(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                           tuple kernel, tuple stride, tuple pads,
                           bint count_include_pad, int nthreads):
    cdef cconv_pool2d_params p = _pool_params((dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]), kernel, stride, pads,
                                              (1, 1), (dy.shape[2], dy.shape[3]),
                                              count_include_pad)
    if p.n == 0:
        return
    cdef int status
    with nogil:
        status = avg_pool2d_backward(&p, &dy[0, 0, 0, 0], &dx[0, 0, 0, 0], nthreads)
    _raise_on(status)


def gemm_py(bint transa, bint transb, floating alpha, const floating[:, ::1] a,
            const floating[:, ::1] b, floating beta, floating[:, ::1] c, int nthreads):
    cdef int64_t M = c.shape[0], N = c.shape[1]
    cdef int64_t K = a.shape[0] if transa else a.shape[1]
    if (a.shape[1] if transa else a.shape[0]) != M or \
       (b.shape[1] if transb else b.shape[0]) != K or \
       (b.shape[0] if transb else b.shape[1]) != N:
        raise ValueError("gemm: shapes do not agree")
    if M == 0 or N == 0:
        return
    cdef const floating *ap = &a[0, 0] if a.shape[0] * a.shape[1] > 0 else NULL
    cdef const floating *bp = &b[0, 0] if b.shape[0] * b.shape[1] > 0 else NULL
    cdef int status
    with nogil:
        status = gemm(transa, transb, M, N, K, alpha, ap, a.shape[1], bp, b.shape[1],
                      beta, &c[0, 0], N, nthreads)
    _raise_on(status)


def openmp_enabled():
    return bool(cconv_openmp_enabled())


def max_threads():
    return cconv_max_threads()
