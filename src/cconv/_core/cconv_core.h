/* Internal interface of the C core: plain C99 + OpenMP, no Python.h.
 * Every entry point takes an explicit thread count so that the caller (the
 * Cython layer, or a C program) decides the parallelism; 1 means serial and is
 * safe inside somebody else's parallel region.
 * Layouts: row-major, NCHW for images, (C_out, C_in/groups, KH, KW) for weights.
 * All sizes and indices are int64_t so no product of dimensions overflows. */
#ifndef CCONV_CORE_H
#define CCONV_CORE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Hot loops are compiled twice, for x86-64-v3 (AVX2 + FMA) and the baseline,
 * and the loader picks one for the CPU (GCC function multiversioning): a
 * wheel built anywhere runs everywhere and still uses 256-bit vectors. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(CCONV_NO_CLONES)
#define CCONV_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CCONV_CLONES
#endif

enum {
    CCONV_OK = 0,
    CCONV_ENOMEM = 1,   /* a work buffer could not be allocated */
    CCONV_EINVAL = 2,   /* a parameter is out of range */
};

/* ---- threads ---- */
int cconv_openmp_enabled(void);
int cconv_max_threads(void);          /* omp_get_max_threads() or 1 */
/* How many threads to use for `work` scalar operations at most `nthreads`:
 * small work runs serial because waking a pool costs more than it saves. */
int cconv_threads_for(int nthreads, double work);

/* ---- GEMM: row-major C[M,N] = alpha * op(A) op(B) + beta * C ----
 * op(A) is M x K: A stored M x K (lda >= K) when transa == 0, else K x M
 * (lda >= M). Likewise op(B) is K x N. beta == 0 means C is only written.
 * Returns CCONV_OK or CCONV_ENOMEM. */
int cconv_gemm_f32(int transa, int transb, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta,
                   float *C, int64_t ldc, int nthreads);
int cconv_gemm_f64(int transa, int transb, int64_t M, int64_t N, int64_t K,
                   double alpha, const double *A, int64_t lda,
                   const double *B, int64_t ldb, double beta,
                   double *C, int64_t ldc, int nthreads);

/* ---- 2-D convolution (cross-correlation, like every DL framework) ----
 * 1-D convolution is the H == 1 case. */
typedef struct {
    int64_t n, c_in, h, w;                 /* input  (n, c_in, h, w) */
    int64_t c_out, kh, kw;                 /* weight (c_out, c_in / groups, kh, kw) */
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_bottom, pad_left, pad_right;
    int64_t dil_h, dil_w;
    int64_t groups;
    int64_t out_h, out_w;                  /* output (n, c_out, out_h, out_w) */
} cconv_conv2d_params;

/* Fills out_h/out_w; returns CCONV_EINVAL when a parameter is out of range. */
int cconv_conv2d_check(cconv_conv2d_params *p);

int cconv_conv2d_forward_f32(const cconv_conv2d_params *p, const float *x,
                             const float *w, const float *bias, float *y,
                             int nthreads);
int cconv_conv2d_forward_f64(const cconv_conv2d_params *p, const double *x,
                             const double *w, const double *bias, double *y,
                             int nthreads);
/* dx = d loss / d x (overwritten). */
int cconv_conv2d_backward_input_f32(const cconv_conv2d_params *p, const float *dy,
                                    const float *w, float *dx, int nthreads);
int cconv_conv2d_backward_input_f64(const cconv_conv2d_params *p, const double *dy,
                                    const double *w, double *dx, int nthreads);
/* dw (overwritten) and, when db != NULL, db (overwritten). */
int cconv_conv2d_backward_weight_f32(const cconv_conv2d_params *p, const float *dy,
                                     const float *x, float *dw, float *db,
                                     int nthreads);
int cconv_conv2d_backward_weight_f64(const cconv_conv2d_params *p, const double *dy,
                                     const double *x, double *dw, double *db,
                                     int nthreads);

/* ---- 2-D pooling (1-D is the H == 1 case) ---- */
typedef struct {
    int64_t n, c, h, w;
    int64_t kh, kw, stride_h, stride_w;
    int64_t pad_top, pad_bottom, pad_left, pad_right;
    int64_t dil_h, dil_w;                  /* max pooling only */
    int64_t out_h, out_w;
    int count_include_pad;                 /* average pooling only */
} cconv_pool2d_params;

int cconv_pool2d_check(const cconv_pool2d_params *p);

/* indices (may be NULL): flat h * w + x position of each maximum in its plane. */
int cconv_max_pool2d_forward_f32(const cconv_pool2d_params *p, const float *x,
                                 float *y, int64_t *indices, int nthreads);
int cconv_max_pool2d_forward_f64(const cconv_pool2d_params *p, const double *x,
                                 double *y, int64_t *indices, int nthreads);
int cconv_max_pool2d_backward_f32(const cconv_pool2d_params *p, const float *dy,
                                  const int64_t *indices, float *dx, int nthreads);
int cconv_max_pool2d_backward_f64(const cconv_pool2d_params *p, const double *dy,
                                  const int64_t *indices, double *dx, int nthreads);
int cconv_avg_pool2d_forward_f32(const cconv_pool2d_params *p, const float *x,
                                 float *y, int nthreads);
int cconv_avg_pool2d_forward_f64(const cconv_pool2d_params *p, const double *x,
                                 double *y, int nthreads);
int cconv_avg_pool2d_backward_f32(const cconv_pool2d_params *p, const float *dy,
                                  float *dx, int nthreads);
int cconv_avg_pool2d_backward_f64(const cconv_pool2d_params *p, const double *dy,
                                  double *dx, int nthreads);

#ifdef __cplusplus
}
#endif
#endif
