# Declarations of the C core for Cython code (cimport cconv._kernels).
from libc.stdint cimport int64_t

cdef extern from "cconv_core.h" nogil:
    enum:
        CCONV_OK
        CCONV_ENOMEM
        CCONV_EINVAL

    int cconv_openmp_enabled()
    int cconv_max_threads()

    int cconv_gemm_f32(int transa, int transb, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc, int nthreads)
    int cconv_gemm_f64(int transa, int transb, int64_t M, int64_t N, int64_t K,
                       double alpha, const double *A, int64_t lda,
                       const double *B, int64_t ldb, double beta,
                       double *C, int64_t ldc, int nthreads)

    ctypedef struct cconv_conv2d_params:
        int64_t n, c_in, h, w
        int64_t c_out, kh, kw
        int64_t stride_h, stride_w
        int64_t pad_top, pad_bottom, pad_left, pad_right
        int64_t dil_h, dil_w
        int64_t groups
        int64_t out_h, out_w

    int cconv_conv2d_check(cconv_conv2d_params *p)
    int cconv_conv2d_forward_f32(const cconv_conv2d_params *p, const float *x,
                                 const float *w, const float *bias, float *y, int nthreads)
    enum:
        CCONV_ACT_NONE
        CCONV_ACT_RELU
    enum:
        CCONV_ALGO_AUTO
        CCONV_ALGO_GEMM
        CCONV_ALGO_WINOGRAD
        CCONV_ALGO_DEPTHWISE
        CCONV_ALGO_DIRECT
        CCONV_ALGO_WINOGRAD4
        CCONV_ALGO_WINOGRAD_ROWS
    int cconv_conv2d_winograd_ok(const cconv_conv2d_params *p)
    int cconv_conv2d_winograd_rows_ok(const cconv_conv2d_params *p)
    int cconv_conv2d_algo(const cconv_conv2d_params *p)
    int cconv_conv2d_forward_ex_f32(const cconv_conv2d_params *p, const float *x,
                                    const float *w, const float *bias, float *y,
                                    int activation, int algo, int nthreads)
    int cconv_conv2d_forward_ex_f64(const cconv_conv2d_params *p, const double *x,
                                    const double *w, const double *bias, double *y,
                                    int activation, int algo, int nthreads)
    int cconv_conv2d_forward_maxpool2_f32(const cconv_conv2d_params *p, const float *x,
                                          const float *w, const float *bias, float *y,
                                          int activation, int nthreads)
    int cconv_conv2d_forward_maxpool2_f64(const cconv_conv2d_params *p, const double *x,
                                          const double *w, const double *bias, double *y,
                                          int activation, int nthreads)
    void cconv_set_flush_denormal(int on)
    void cconv_derived_clear()
    int cconv_get_flush_denormal()
    double cconv_work_per_thread()
    int cconv_conv2d_forward_f64(const cconv_conv2d_params *p, const double *x,
                                 const double *w, const double *bias, double *y, int nthreads)
    int cconv_conv2d_backward_input_f32(const cconv_conv2d_params *p, const float *dy,
                                        const float *w, float *dx, int nthreads)
    int cconv_conv2d_backward_input_f64(const cconv_conv2d_params *p, const double *dy,
                                        const double *w, double *dx, int nthreads)
    int cconv_conv2d_backward_weight_f32(const cconv_conv2d_params *p, const float *dy,
                                         const float *x, float *dw, float *db, int nthreads)
    int cconv_conv2d_backward_weight_f64(const cconv_conv2d_params *p, const double *dy,
                                         const double *x, double *dw, double *db, int nthreads)
    int cconv_conv2d_backward_input_ex_f32(const cconv_conv2d_params *p, const float *dy,
                                           const float *w, float *dx, int algo, int nthreads)
    int cconv_conv2d_backward_input_ex_f64(const cconv_conv2d_params *p, const double *dy,
                                           const double *w, double *dx, int algo,
                                           int nthreads)
    int cconv_conv2d_backward_weight_ex_f32(const cconv_conv2d_params *p, const float *dy,
                                            const float *x, float *dw, float *db, int algo,
                                            int nthreads)
    int cconv_conv2d_backward_weight_ex_f64(const cconv_conv2d_params *p, const double *dy,
                                            const double *x, double *dw, double *db,
                                            int algo, int nthreads)

    ctypedef struct cconv_pool2d_params:
        int64_t n, c, h, w
        int64_t kh, kw, stride_h, stride_w
        int64_t pad_top, pad_bottom, pad_left, pad_right
        int64_t dil_h, dil_w
        int64_t out_h, out_w
        int count_include_pad

    int cconv_pool2d_check(const cconv_pool2d_params *p)
    int cconv_max_pool2d_forward_f32(const cconv_pool2d_params *p, const float *x,
                                     float *y, int64_t *indices, int nthreads)
    int cconv_max_pool2d_forward_f64(const cconv_pool2d_params *p, const double *x,
                                     double *y, int64_t *indices, int nthreads)
    int cconv_max_pool2d_backward_f32(const cconv_pool2d_params *p, const float *dy,
                                      const int64_t *indices, float *dx, int nthreads)
    int cconv_max_pool2d_backward_f64(const cconv_pool2d_params *p, const double *dy,
                                      const int64_t *indices, double *dx, int nthreads)
    int cconv_avg_pool2d_forward_f32(const cconv_pool2d_params *p, const float *x,
                                     float *y, int nthreads)
    int cconv_avg_pool2d_forward_f64(const cconv_pool2d_params *p, const double *x,
                                     double *y, int nthreads)
    int cconv_avg_pool2d_backward_f32(const cconv_pool2d_params *p, const float *dy,
                                      float *dx, int nthreads)
    int cconv_avg_pool2d_backward_f64(const cconv_pool2d_params *p, const double *dy,
                                      double *dx, int nthreads)

ctypedef fused floating:
    float
    double

# noexcept nogil entry points, fused over float/double, for other Cython code.
cdef int conv2d_forward_t(const cconv_conv2d_params *p, const floating *x,
                        const floating *w, const floating *bias, floating *y,
                        int nthreads) noexcept nogil
cdef int conv2d_backward_input_t(const cconv_conv2d_params *p, const floating *dy,
                               const floating *w, floating *dx, int nthreads) noexcept nogil
cdef int conv2d_backward_weight_t(const cconv_conv2d_params *p, const floating *dy,
                                const floating *x, floating *dw, floating *db,
                                int nthreads) noexcept nogil
cdef int max_pool2d_forward_t(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int64_t *indices, int nthreads) noexcept nogil
cdef int max_pool2d_backward_t(const cconv_pool2d_params *p, const floating *dy,
                             const int64_t *indices, floating *dx, int nthreads) noexcept nogil
cdef int avg_pool2d_forward_t(const cconv_pool2d_params *p, const floating *x,
                            floating *y, int nthreads) noexcept nogil
cdef int avg_pool2d_backward_t(const cconv_pool2d_params *p, const floating *dy,
                             floating *dx, int nthreads) noexcept nogil
cdef int gemm_t(int transa, int transb, int64_t M, int64_t N, int64_t K,
              floating alpha, const floating *A, int64_t lda, const floating *B,
              int64_t ldb, floating beta, floating *C, int64_t ldc,
              int nthreads) noexcept nogil

# ---- image filtering (cconv.filters) ----
cdef extern from "cconv_core.h" nogil:
    enum:
        CCONV_BORDER_CONSTANT
        CCONV_BORDER_REFLECT
        CCONV_BORDER_MIRROR
        CCONV_BORDER_NEAREST
        CCONV_BORDER_WRAP
    enum:
        CCONV_DT_COMPUTE
        CCONV_DT_U8
        CCONV_DT_I8
        CCONV_DT_U16
        CCONV_DT_I16

    ctypedef struct cconv_filter2d_params:
        int64_t n, h, w, c
        int64_t kh, kw
        int64_t anchor_h, anchor_w
        int64_t out_h, out_w
        int border
        double cval
        int in_type, out_type

    int cconv_filter2d_check(const cconv_filter2d_params *p)
    int64_t cconv_border_index(int64_t i, int64_t n, int border)
    int cconv_filter2d_f32(const cconv_filter2d_params *p, const void *x,
                           const float *k, void *y, int nthreads)
    int cconv_filter2d_f64(const cconv_filter2d_params *p, const void *x,
                           const double *k, void *y, int nthreads)
    int cconv_sepfilter2d_f32(const cconv_filter2d_params *p, const void *x,
                              const float *kcol, const float *krow, void *y, int nthreads)
    int cconv_sepfilter2d_f64(const cconv_filter2d_params *p, const void *x,
                              const double *kcol, const double *krow, void *y,
                              int nthreads)
# ---- end of image filtering ----

# ---- inference chains (cconv.compiled) ----
cdef extern from "cconv_core.h" nogil:
    enum:
        CCONV_STEP_CONV2D
        CCONV_STEP_MAX_POOL2D
        CCONV_STEP_LINEAR
        CCONV_STEP_RELU

    ctypedef struct cconv_chain_step:
        int kind
        int activation
        int algo
        int pool2
        cconv_conv2d_params conv
        cconv_pool2d_params pool
        int64_t in_features, out_features
        const void *w
        const void *bias
        void *y

    int cconv_chain_step_sizes(cconv_chain_step *s, int64_t *in_size, int64_t *out_size,
                               double *work)
    int cconv_chain_split_threads(cconv_chain_step *steps, int nsteps, int64_t n, int elem,
                                  int nthreads)
    int cconv_chain_forward_f32(cconv_chain_step *steps, int nsteps, int64_t n,
                                const float *x, int nthreads)
    int cconv_chain_forward_f64(cconv_chain_step *steps, int nsteps, int64_t n,
                                const double *x, int nthreads)
# ---- end of inference chains ----
