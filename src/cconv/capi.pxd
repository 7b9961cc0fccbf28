# cconv's public C API (include/cconv.h) for Cython extensions: docs/c-api.md.
#
#     from cconv cimport capi
#     capi.import_cconv()                    # once, at module level
#
#     cdef capi.cconv_conv2d_params_t p
#     capi.cconv_conv2d_params_init(&p)
#     p.n, p.c_in, p.h, p.w = ...
#     with nogil:
#         status = capi.cconv_conv2d_forward(&p, x, nx, w, nw, NULL, 0, y, ny)
#
# Build with include_dirs=[cconv.get_include()]. The calls go through the
# function table of the capsule cconv._C_API (cconv_capsule.h), so nothing is
# linked; define the macro CCONV_LINK_STATIC and link libcconv.a to call the
# static library instead. Every function is nogil and returns a status
# (capi.CCONV_SUCCESS or an error code; capi.cconv_strerror(status)).
from libc.stdint cimport int64_t

cdef extern from "cconv_capsule.h" nogil:
    enum:
        CCONV_VERSION_MAJOR
        CCONV_VERSION_MINOR
        CCONV_VERSION_PATCH
        CCONV_ABI_MAJOR
        CCONV_ABI_MINOR
        CCONV_ABI_VERSION
        CCONV_MAX_THREADS
    const char *CCONV_VERSION_STRING

    enum:
        CCONV_SUCCESS
        CCONV_ERR_NOMEM
        CCONV_ERR_INVALID
        CCONV_ERR_NULL
        CCONV_ERR_DTYPE
        CCONV_ERR_SHAPE
        CCONV_ERR_SIZE
        CCONV_ERR_OVERFLOW
        CCONV_ERR_OVERLAP
        CCONV_ERR_STRUCT
        CCONV_ERR_NOCONV

    enum:
        CCONV_FLOAT32
        CCONV_FLOAT64

    ctypedef struct cconv_conv2d_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int64_t n, c_in, h, w
        int64_t c_out, kh, kw
        int64_t stride_h, stride_w
        int64_t pad_top, pad_bottom, pad_left, pad_right
        int64_t dil_h, dil_w
        int64_t groups

    ctypedef struct cconv_conv1d_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int64_t n, c_in, l
        int64_t c_out, k
        int64_t stride
        int64_t pad_left, pad_right
        int64_t dilation
        int64_t groups

    ctypedef struct cconv_pool2d_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int64_t n, c, h, w
        int64_t kh, kw
        int64_t stride_h, stride_w
        int64_t pad_h, pad_w
        int64_t dil_h, dil_w
        int ceil_mode
        int count_include_pad

    ctypedef struct cconv_pool1d_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int64_t n, c, l
        int64_t k
        int64_t stride
        int64_t pad
        int64_t dilation
        int ceil_mode
        int count_include_pad

    ctypedef struct cconv_gemm_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int trans_a, trans_b
        int64_t m, n, k
        int64_t lda, ldb, ldc
        double alpha, beta

    ctypedef struct cconv_eigh_params_t:
        size_t struct_size
        int dtype
        int num_threads
        int64_t n
        int64_t lda
        int upper

    void cconv_conv2d_params_init(cconv_conv2d_params_t *p)
    void cconv_conv1d_params_init(cconv_conv1d_params_t *p)
    void cconv_pool2d_params_init(cconv_pool2d_params_t *p)
    void cconv_pool1d_params_init(cconv_pool1d_params_t *p)
    void cconv_gemm_params_init(cconv_gemm_params_t *p)
    void cconv_eigh_params_init(cconv_eigh_params_t *p)

    const char *cconv_version()
    int cconv_abi_version()
    const char *cconv_strerror(int status)
    int cconv_openmp_enabled()
    int cconv_set_num_threads(int n)
    int cconv_get_num_threads()

    int cconv_conv2d_output_shape(const cconv_conv2d_params_t *p, int64_t *out_h,
                                  int64_t *out_w)
    int cconv_conv2d_forward(const cconv_conv2d_params_t *p, const void *x, int64_t x_len,
                             const void *w, int64_t w_len, const void *bias,
                             int64_t bias_len, void *y, int64_t y_len)
    int cconv_conv2d_backward_input(const cconv_conv2d_params_t *p, const void *dy,
                                    int64_t dy_len, const void *w, int64_t w_len,
                                    void *dx, int64_t dx_len)
    int cconv_conv2d_backward_weight(const cconv_conv2d_params_t *p, const void *dy,
                                     int64_t dy_len, const void *x, int64_t x_len,
                                     void *dw, int64_t dw_len, void *db, int64_t db_len)

    int cconv_conv1d_output_length(const cconv_conv1d_params_t *p, int64_t *out_l)
    int cconv_conv1d_forward(const cconv_conv1d_params_t *p, const void *x, int64_t x_len,
                             const void *w, int64_t w_len, const void *bias,
                             int64_t bias_len, void *y, int64_t y_len)
    int cconv_conv1d_backward_input(const cconv_conv1d_params_t *p, const void *dy,
                                    int64_t dy_len, const void *w, int64_t w_len,
                                    void *dx, int64_t dx_len)
    int cconv_conv1d_backward_weight(const cconv_conv1d_params_t *p, const void *dy,
                                     int64_t dy_len, const void *x, int64_t x_len,
                                     void *dw, int64_t dw_len, void *db, int64_t db_len)

    int cconv_pool2d_output_shape(const cconv_pool2d_params_t *p, int64_t *out_h,
                                  int64_t *out_w)
    int cconv_max_pool2d_forward(const cconv_pool2d_params_t *p, const void *x,
                                 int64_t x_len, void *y, int64_t y_len,
                                 int64_t *indices, int64_t indices_len)
    int cconv_max_pool2d_backward(const cconv_pool2d_params_t *p, const void *dy,
                                  int64_t dy_len, const int64_t *indices,
                                  int64_t indices_len, void *dx, int64_t dx_len)
    int cconv_avg_pool2d_forward(const cconv_pool2d_params_t *p, const void *x,
                                 int64_t x_len, void *y, int64_t y_len)
    int cconv_avg_pool2d_backward(const cconv_pool2d_params_t *p, const void *dy,
                                  int64_t dy_len, void *dx, int64_t dx_len)

    int cconv_pool1d_output_length(const cconv_pool1d_params_t *p, int64_t *out_l)
    int cconv_max_pool1d_forward(const cconv_pool1d_params_t *p, const void *x,
                                 int64_t x_len, void *y, int64_t y_len,
                                 int64_t *indices, int64_t indices_len)
    int cconv_max_pool1d_backward(const cconv_pool1d_params_t *p, const void *dy,
                                  int64_t dy_len, const int64_t *indices,
                                  int64_t indices_len, void *dx, int64_t dx_len)
    int cconv_avg_pool1d_forward(const cconv_pool1d_params_t *p, const void *x,
                                 int64_t x_len, void *y, int64_t y_len)
    int cconv_avg_pool1d_backward(const cconv_pool1d_params_t *p, const void *dy,
                                  int64_t dy_len, void *dx, int64_t dx_len)

    int cconv_gemm(const cconv_gemm_params_t *p, const void *a, int64_t a_len,
                   const void *b, int64_t b_len, void *c, int64_t c_len)
    int cconv_eigh(const cconv_eigh_params_t *p, const void *a, int64_t a_len,
                   void *w, int64_t w_len, void *v, int64_t v_len)

cdef extern from "cconv_capsule.h":
    # Imports cconv and checks the ABI version of its capsule; raises
    # ImportError on a mismatch. Call it once before any other function.
    int import_cconv() except -1
