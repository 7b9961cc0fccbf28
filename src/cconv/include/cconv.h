/* cconv.h: the public C API of cconv (plain C99, no Python).
 *
 * The kernels of the cconv Python package (convolution, pooling, GEMM, a
 * symmetric eigensolver) for C programs and other extensions. Documentation:
 * docs/c-api.md. Two ways in:
 *   - C programs link the static library shipped in the package:
 *         cc app.c $(python -m cconv --cflags --libs)
 *   - Python extensions include "cconv_capsule.h" instead, call import_cconv()
 *     once, and reach the same functions through the versioned function table
 *     in the capsule cconv._C_API (Cython: `from cconv cimport capi`).
 *
 * Conventions
 *   - Arrays are dense, row-major (C order): images NCHW (NCL in 1-D),
 *     weights (c_out, c_in / groups, kh, kw). The element type is a params
 *     field, `dtype` (CCONV_FLOAT32 or CCONV_FLOAT64); data pointers are void *.
 *   - Every buffer comes with its capacity in elements (`*_len`); a buffer
 *     smaller than the operation needs gives CCONV_ERR_SIZE, a larger one is
 *     fine (only the first elements are used). Outputs must not overlap inputs.
 *   - Every function returns a status: CCONV_SUCCESS (0) or an error code
 *     (cconv_strerror gives its text). Invalid arguments never crash and never
 *     write to an output; they return an error code.
 *   - Each operation takes a params struct. Initialise it with its
 *     cconv_*_params_init function (defaults below, struct_size set), then
 *     set the fields you need.
 *   - Functions are reentrant: any number of threads may call them at once
 *     (on distinct output buffers). The only global state is the default
 *     thread count, an atomic.
 *
 * ABI: the functions, structs and constants of ABI major version
 * CCONV_ABI_MAJOR never change. A minor version may only add: functions (at
 * the end of cconv_api_t), fields (at the end of a params struct, with a
 * default in its init function), status codes and dtypes. See docs/c-api.md.
 */
#ifndef CCONV_H
#define CCONV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ---- */
#define CCONV_VERSION_MAJOR 0
#define CCONV_VERSION_MINOR 1
#define CCONV_VERSION_PATCH 0
#define CCONV_VERSION_STRING "0.1.0"        /* the package version */

#define CCONV_ABI_MAJOR 1                   /* incompatible change */
#define CCONV_ABI_MINOR 0                   /* compatible addition */
#define CCONV_ABI_VERSION (CCONV_ABI_MAJOR * 1000 + CCONV_ABI_MINOR)

#if defined(_WIN32) && defined(CCONV_BUILD_DLL)
#define CCONV_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define CCONV_API __attribute__((visibility("default")))
#else
#define CCONV_API
#endif

#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
#define CCONV_INLINE static inline
#else
#define CCONV_INLINE static __inline
#endif

/* ---- status codes ---- */
enum {
    CCONV_SUCCESS = 0,
    CCONV_ERR_NOMEM = 1,     /* a work buffer could not be allocated */
    CCONV_ERR_INVALID = 2,   /* a parameter is out of range (size < 1, stride < 1, flag...) */
    CCONV_ERR_NULL = 3,      /* a required pointer is NULL */
    CCONV_ERR_DTYPE = 4,     /* dtype is not CCONV_FLOAT32 or CCONV_FLOAT64 */
    CCONV_ERR_SHAPE = 5,     /* sizes disagree (groups do not divide the channels,
                                kernel larger than the padded input...) */
    CCONV_ERR_SIZE = 6,      /* a buffer is smaller than the operation needs */
    CCONV_ERR_OVERFLOW = 7,  /* a size, or a product of sizes, is too large;
                                cconv_eigh: an eigenvalue beyond the dtype's range */
    CCONV_ERR_OVERLAP = 8,   /* an output buffer overlaps an input buffer */
    CCONV_ERR_STRUCT = 9,    /* params->struct_size is too small: not initialised
                                with its cconv_*_params_init function? */
    CCONV_ERR_NOCONV = 10    /* the eigensolver did not converge (NaN or inf in A) */
};

/* ---- element types ---- */
enum {
    CCONV_FLOAT32 = 1,
    CCONV_FLOAT64 = 2
};

/* Largest thread count a call uses; larger requests are capped. */
#define CCONV_MAX_THREADS 1024

/* Every params struct starts with these three fields:
 *   struct_size  sizeof the struct as the caller compiled it (set by the
 *                init function; lets a newer library tell old callers apart)
 *   dtype        CCONV_FLOAT32 (default) or CCONV_FLOAT64
 *   num_threads  0 (default): the library default, cconv_get_num_threads();
 *                n >= 1: at most n threads for this call. Inside your own
 *                parallel region pass 1. */

/* ---- 2-D convolution (cross-correlation, like every DL framework) ----
 *   x (n, c_in, h, w), w (c_out, c_in / groups, kh, kw), bias (c_out) or NULL,
 *   y (n, c_out, out_h, out_w) with
 *   out_h = (h + pad_top + pad_bottom - dil_h * (kh - 1) - 1) / stride_h + 1
 *   (likewise out_w); cconv_conv2d_output_shape computes them. */
typedef struct cconv_conv2d_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;
    int64_t n, c_in, h, w;       /* n >= 0 (0: empty batch), others >= 1 */
    int64_t c_out, kh, kw;       /* >= 1 */
    int64_t stride_h, stride_w;  /* >= 1, default 1 */
    int64_t pad_top, pad_bottom, pad_left, pad_right;   /* >= 0, default 0 */
    int64_t dil_h, dil_w;        /* >= 1, default 1 */
    int64_t groups;              /* >= 1, divides c_in and c_out; default 1 */
} cconv_conv2d_params_t;

/* ---- 1-D convolution: x (n, c_in, l), w (c_out, c_in / groups, k),
 *   y (n, c_out, out_l) ---- */
typedef struct cconv_conv1d_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;
    int64_t n, c_in, l;
    int64_t c_out, k;
    int64_t stride;              /* default 1 */
    int64_t pad_left, pad_right; /* default 0 */
    int64_t dilation;            /* default 1 */
    int64_t groups;              /* default 1 */
} cconv_conv1d_params_t;

/* ---- 2-D pooling, torch's semantics: x (n, c, h, w), y (n, c, out_h, out_w),
 *   out_h = floor-or-ceil((h + 2 pad_h - dil_h (kh - 1) - 1) / stride_h) + 1,
 *   where with ceil_mode the last window must start inside the input or the
 *   top/left padding. Max pooling pads with -inf; NaN wins. ---- */
typedef struct cconv_pool2d_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;
    int64_t n, c, h, w;          /* n >= 0, others >= 1 */
    int64_t kh, kw;              /* >= 1 */
    int64_t stride_h, stride_w;  /* >= 1; 0 (default): the kernel size */
    int64_t pad_h, pad_w;        /* each side; 0 <= pad <= kernel / 2; default 0 */
    int64_t dil_h, dil_w;        /* max pooling only (average: must be 1); default 1 */
    int ceil_mode;               /* 0 (default) or 1 */
    int count_include_pad;       /* average pooling: 1 (default) divides by the
                                    window including padding, 0 by the inputs in it */
} cconv_pool2d_params_t;

typedef struct cconv_pool1d_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;
    int64_t n, c, l;
    int64_t k;
    int64_t stride;              /* 0 (default): k */
    int64_t pad;                 /* each side, <= k / 2 */
    int64_t dilation;            /* max pooling only; default 1 */
    int ceil_mode;
    int count_include_pad;       /* default 1 */
} cconv_pool1d_params_t;

/* ---- GEMM, row-major: C = alpha op(A) op(B) + beta C, C is m x n ----
 *   op(A) is m x k: A stored m x k when trans_a == 0, else k x m (likewise B).
 *   Leading dimensions 0 (default) mean tight rows; else >= the row length.
 *   beta == 0: C is only written (NaN in C does not propagate). */
typedef struct cconv_gemm_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;
    int trans_a, trans_b;        /* 0 (default) or 1 */
    int64_t m, n, k;             /* >= 0 */
    int64_t lda, ldb, ldc;       /* 0 (default): tight */
    double alpha, beta;          /* default 1 and 0; rounded to float for FLOAT32 */
} cconv_gemm_params_t;

/* ---- symmetric eigendecomposition A = V diag(w) V^T ----
 *   A is n x n (leading dimension lda; 0 = n); only its lower triangle is read
 *   (upper = 1: the upper one). w gets the n eigenvalues in ascending order;
 *   v (n x n, tight rows) the orthonormal eigenvectors as columns, or pass
 *   v = NULL for eigenvalues only. v may be the same buffer as a.
 *   A portable reference solver (Householder tridiagonalisation, then the
 *   implicit QL algorithm with shifts; O(n^3), serial, computed in double
 *   also for FLOAT32), not LAPACK speed: cconv.linalg.eigh in Python uses
 *   LAPACK. */
typedef struct cconv_eigh_params_t {
    size_t struct_size;
    int dtype;
    int num_threads;             /* reserved (the solver is serial) */
    int64_t n;                   /* >= 1 */
    int64_t lda;                 /* 0 (default): n */
    int upper;                   /* 0 (default): read the lower triangle */
} cconv_eigh_params_t;

/* ---- params initialisation (defaults); inline so struct_size is the caller's ---- */
CCONV_INLINE void cconv_conv2d_params_init(cconv_conv2d_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->n = p->c_in = p->h = p->w = 0;
    p->c_out = p->kh = p->kw = 0;
    p->stride_h = p->stride_w = 1;
    p->pad_top = p->pad_bottom = p->pad_left = p->pad_right = 0;
    p->dil_h = p->dil_w = 1;
    p->groups = 1;
}

CCONV_INLINE void cconv_conv1d_params_init(cconv_conv1d_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->n = p->c_in = p->l = 0;
    p->c_out = p->k = 0;
    p->stride = 1;
    p->pad_left = p->pad_right = 0;
    p->dilation = 1;
    p->groups = 1;
}

CCONV_INLINE void cconv_pool2d_params_init(cconv_pool2d_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->n = p->c = p->h = p->w = 0;
    p->kh = p->kw = 0;
    p->stride_h = p->stride_w = 0;
    p->pad_h = p->pad_w = 0;
    p->dil_h = p->dil_w = 1;
    p->ceil_mode = 0;
    p->count_include_pad = 1;
}

CCONV_INLINE void cconv_pool1d_params_init(cconv_pool1d_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->n = p->c = p->l = 0;
    p->k = 0;
    p->stride = 0;
    p->pad = 0;
    p->dilation = 1;
    p->ceil_mode = 0;
    p->count_include_pad = 1;
}

CCONV_INLINE void cconv_gemm_params_init(cconv_gemm_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->trans_a = p->trans_b = 0;
    p->m = p->n = p->k = 0;
    p->lda = p->ldb = p->ldc = 0;
    p->alpha = 1.0;
    p->beta = 0.0;
}

CCONV_INLINE void cconv_eigh_params_init(cconv_eigh_params_t *p)
{
    p->struct_size = sizeof(*p);
    p->dtype = CCONV_FLOAT32;
    p->num_threads = 0;
    p->n = 0;
    p->lda = 0;
    p->upper = 0;
}

/* ---- library information and threads ---- */
CCONV_API const char *cconv_version(void);       /* CCONV_VERSION_STRING of the library */
CCONV_API int cconv_abi_version(void);           /* CCONV_ABI_VERSION of the library */
/* Text of a status code (a static string; unknown codes get a generic text). */
CCONV_API const char *cconv_strerror(int status);
/* 1 when the library was built with OpenMP (else every call is serial). */
CCONV_API int cconv_openmp_enabled(void);
/* Default thread count of calls with num_threads == 0, process-wide and
 * atomic (safe to change while other threads run kernels; a call reads it
 * once when it starts). n >= 1 sets it, n == 0 restores the initial default
 * (OpenMP's, i.e. OMP_NUM_THREADS or the CPU count); n < 0: CCONV_ERR_INVALID.
 * Separate from cconv.set_num_threads() in Python. */
CCONV_API int cconv_set_num_threads(int n);
CCONV_API int cconv_get_num_threads(void);

/* ---- convolution ----
 * forward:         y = conv(x, w) + bias (bias may be NULL)
 * backward_input:  dx = d loss / d x from dy = d loss / d y (dx overwritten)
 * backward_weight: dw = d loss / d w (overwritten) and, when db != NULL,
 *                  db = d loss / d bias (overwritten) */
CCONV_API int cconv_conv2d_output_shape(const cconv_conv2d_params_t *p,
                                        int64_t *out_h, int64_t *out_w);
CCONV_API int cconv_conv2d_forward(const cconv_conv2d_params_t *p,
                                   const void *x, int64_t x_len,
                                   const void *w, int64_t w_len,
                                   const void *bias, int64_t bias_len,
                                   void *y, int64_t y_len);
CCONV_API int cconv_conv2d_backward_input(const cconv_conv2d_params_t *p,
                                          const void *dy, int64_t dy_len,
                                          const void *w, int64_t w_len,
                                          void *dx, int64_t dx_len);
CCONV_API int cconv_conv2d_backward_weight(const cconv_conv2d_params_t *p,
                                           const void *dy, int64_t dy_len,
                                           const void *x, int64_t x_len,
                                           void *dw, int64_t dw_len,
                                           void *db, int64_t db_len);

CCONV_API int cconv_conv1d_output_length(const cconv_conv1d_params_t *p, int64_t *out_l);
CCONV_API int cconv_conv1d_forward(const cconv_conv1d_params_t *p,
                                   const void *x, int64_t x_len,
                                   const void *w, int64_t w_len,
                                   const void *bias, int64_t bias_len,
                                   void *y, int64_t y_len);
CCONV_API int cconv_conv1d_backward_input(const cconv_conv1d_params_t *p,
                                          const void *dy, int64_t dy_len,
                                          const void *w, int64_t w_len,
                                          void *dx, int64_t dx_len);
CCONV_API int cconv_conv1d_backward_weight(const cconv_conv1d_params_t *p,
                                           const void *dy, int64_t dy_len,
                                           const void *x, int64_t x_len,
                                           void *dw, int64_t dw_len,
                                           void *db, int64_t db_len);

/* ---- pooling ----
 * max forward: indices (may be NULL; int64, same size as y) get the position
 *   h_index * w + w_index of each maximum in its (image, channel) plane
 *   (-1 for a window that lies in the padding only); max backward needs them
 *   (each must be -1 or inside the plane) and overwrites dx. */
CCONV_API int cconv_pool2d_output_shape(const cconv_pool2d_params_t *p,
                                        int64_t *out_h, int64_t *out_w);
CCONV_API int cconv_max_pool2d_forward(const cconv_pool2d_params_t *p,
                                       const void *x, int64_t x_len,
                                       void *y, int64_t y_len,
                                       int64_t *indices, int64_t indices_len);
CCONV_API int cconv_max_pool2d_backward(const cconv_pool2d_params_t *p,
                                        const void *dy, int64_t dy_len,
                                        const int64_t *indices, int64_t indices_len,
                                        void *dx, int64_t dx_len);
CCONV_API int cconv_avg_pool2d_forward(const cconv_pool2d_params_t *p,
                                       const void *x, int64_t x_len,
                                       void *y, int64_t y_len);
CCONV_API int cconv_avg_pool2d_backward(const cconv_pool2d_params_t *p,
                                        const void *dy, int64_t dy_len,
                                        void *dx, int64_t dx_len);

CCONV_API int cconv_pool1d_output_length(const cconv_pool1d_params_t *p, int64_t *out_l);
CCONV_API int cconv_max_pool1d_forward(const cconv_pool1d_params_t *p,
                                       const void *x, int64_t x_len,
                                       void *y, int64_t y_len,
                                       int64_t *indices, int64_t indices_len);
CCONV_API int cconv_max_pool1d_backward(const cconv_pool1d_params_t *p,
                                        const void *dy, int64_t dy_len,
                                        const int64_t *indices, int64_t indices_len,
                                        void *dx, int64_t dx_len);
CCONV_API int cconv_avg_pool1d_forward(const cconv_pool1d_params_t *p,
                                       const void *x, int64_t x_len,
                                       void *y, int64_t y_len);
CCONV_API int cconv_avg_pool1d_backward(const cconv_pool1d_params_t *p,
                                        const void *dy, int64_t dy_len,
                                        void *dx, int64_t dx_len);

/* ---- linear algebra ---- */
CCONV_API int cconv_gemm(const cconv_gemm_params_t *p,
                         const void *a, int64_t a_len,
                         const void *b, int64_t b_len,
                         void *c, int64_t c_len);
CCONV_API int cconv_eigh(const cconv_eigh_params_t *p,
                         const void *a, int64_t a_len,
                         void *w, int64_t w_len,
                         void *v, int64_t v_len);

/* ---- the function table (what the capsule cconv._C_API holds) ----
 * Field order is part of the ABI: a minor version only appends. */
typedef struct cconv_api_t {
    int abi_major;               /* first field, in every version */
    int abi_minor;
    size_t size;                 /* sizeof(cconv_api_t) of the library */
    const char *(*version)(void);
    int (*abi_version)(void);
    const char *(*strerror)(int status);
    int (*openmp_enabled)(void);
    int (*set_num_threads)(int n);
    int (*get_num_threads)(void);
    int (*conv2d_output_shape)(const cconv_conv2d_params_t *, int64_t *, int64_t *);
    int (*conv2d_forward)(const cconv_conv2d_params_t *, const void *, int64_t,
                          const void *, int64_t, const void *, int64_t, void *, int64_t);
    int (*conv2d_backward_input)(const cconv_conv2d_params_t *, const void *, int64_t,
                                 const void *, int64_t, void *, int64_t);
    int (*conv2d_backward_weight)(const cconv_conv2d_params_t *, const void *, int64_t,
                                  const void *, int64_t, void *, int64_t, void *, int64_t);
    int (*conv1d_output_length)(const cconv_conv1d_params_t *, int64_t *);
    int (*conv1d_forward)(const cconv_conv1d_params_t *, const void *, int64_t,
                          const void *, int64_t, const void *, int64_t, void *, int64_t);
    int (*conv1d_backward_input)(const cconv_conv1d_params_t *, const void *, int64_t,
                                 const void *, int64_t, void *, int64_t);
    int (*conv1d_backward_weight)(const cconv_conv1d_params_t *, const void *, int64_t,
                                  const void *, int64_t, void *, int64_t, void *, int64_t);
    int (*pool2d_output_shape)(const cconv_pool2d_params_t *, int64_t *, int64_t *);
    int (*max_pool2d_forward)(const cconv_pool2d_params_t *, const void *, int64_t,
                              void *, int64_t, int64_t *, int64_t);
    int (*max_pool2d_backward)(const cconv_pool2d_params_t *, const void *, int64_t,
                               const int64_t *, int64_t, void *, int64_t);
    int (*avg_pool2d_forward)(const cconv_pool2d_params_t *, const void *, int64_t,
                              void *, int64_t);
    int (*avg_pool2d_backward)(const cconv_pool2d_params_t *, const void *, int64_t,
                               void *, int64_t);
    int (*pool1d_output_length)(const cconv_pool1d_params_t *, int64_t *);
    int (*max_pool1d_forward)(const cconv_pool1d_params_t *, const void *, int64_t,
                              void *, int64_t, int64_t *, int64_t);
    int (*max_pool1d_backward)(const cconv_pool1d_params_t *, const void *, int64_t,
                               const int64_t *, int64_t, void *, int64_t);
    int (*avg_pool1d_forward)(const cconv_pool1d_params_t *, const void *, int64_t,
                              void *, int64_t);
    int (*avg_pool1d_backward)(const cconv_pool1d_params_t *, const void *, int64_t,
                               void *, int64_t);
    int (*gemm)(const cconv_gemm_params_t *, const void *, int64_t, const void *,
                int64_t, void *, int64_t);
    int (*eigh)(const cconv_eigh_params_t *, const void *, int64_t, void *, int64_t,
                void *, int64_t);
    /* ABI 1.1 and later append here */
} cconv_api_t;

/* The library's table (static storage, never freed). */
CCONV_API const cconv_api_t *cconv_get_api(void);

#ifdef __cplusplus
}
#endif
#endif /* CCONV_H */
