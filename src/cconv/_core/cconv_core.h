/* Internal interface of the C core: plain C99 + OpenMP, no Python.h.
 * Every entry point takes an explicit thread count so that the caller (the
 * Cython layer, or a C program) decides the parallelism; 1 means serial and is
 * safe inside somebody else's parallel region.
 * Layouts: row-major, NCHW for images, (C_out, C_in/groups, KH, KW) for weights.
 * All sizes and indices are int64_t so no product of dimensions overflows. */
#ifndef CCONV_CORE_H
#define CCONV_CORE_H

#include <stddef.h>
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

/* Small helpers of a cloned hot loop are compiled into each clone. */
#if defined(__GNUC__) || defined(__clang__)
#define CCONV_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define CCONV_ALWAYS_INLINE static inline
#endif

/* Before a loop whose pointers never overlap but which the compiler cannot
 * prove so (restrict is honoured on parameters only): without it GCC gives
 * up on loops with more streams than its runtime alias checks cover, and
 * a transform with 6 inputs and 6 outputs runs scalar. */
#if defined(__clang__)
#define CCONV_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define CCONV_IVDEP _Pragma("GCC ivdep")
#else
#define CCONV_IVDEP
#endif

/* var = val from inside a parallel region, where any thread may report a
 * status (an atomic write, so the store is never torn or lost); and the
 * calling thread's number in its team (0 outside one). */
#ifdef _OPENMP
#include <omp.h>
#define CCONV_ATOMIC_STORE(var, val) \
    do { _Pragma("omp atomic write") (var) = (val); } while (0)
#define CCONV_THREAD_NUM() omp_get_thread_num()
#else
#define CCONV_ATOMIC_STORE(var, val) ((var) = (val))
#define CCONV_THREAD_NUM() 0
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
/* The multiply-adds per thread from which cconv_threads_for adds a thread:
 * low where the runtime's idle threads spin for long, high where they sleep
 * (read from OMP_WAIT_POLICY / GOMP_SPINCOUNT once). */
double cconv_work_per_thread(void);

/* ---- denormals ----
 * Convolution and GEMM kernels run with the SSE flush-to-zero and
 * denormals-are-zero bits set on every thread that computes (denormal
 * operands cost ~100 cycles each on x86), and restore each thread's MXCSR
 * before they return, so the caller's floating-point state is untouched.
 * On by default; CCONV_FLUSH_DENORMAL=0 in the environment or
 * cconv_set_flush_denormal(0) turns it off (the kernels then clear both
 * bits, whatever the calling thread had). No effect off x86. */
void cconv_set_flush_denormal(int on);
int cconv_get_flush_denormal(void);
/* Enter/leave the kernels' floating-point mode on the calling thread;
 * leave takes what enter returned. */
unsigned cconv_fp_enter(void);
void cconv_fp_leave(unsigned saved);

/* Per-thread work buffer for `slot` (0..4), 64-byte aligned, contents
 * undefined, kept by the thread for its next call (see threads.c); NULL when
 * out of memory. Give it back with cconv_work_free(slot, p). Slots: 0 and 1
 * the convolutions' own scratch, 2 the GEMM's packing buffers, 3 packed
 * weights that could not be cached (or Winograd's block shared by a team),
 * 4 the flipped weights of a backward pass run as a forward convolution. */
void *cconv_work_alloc(int slot, size_t bytes);
void cconv_work_free(int slot, void *p);
/* This thread's cached array of `bytes` derived from the src_bytes at src
 * (kind: which derivation). *fresh = 0: it holds what was derived from these
 * very bytes before; *fresh = 1: the caller must (re)compute it. NULL (with
 * *fresh = 1) when nothing can be cached: the caller allocates its own.
 * Valid until this thread's next call. cconv_derived_clear() empties the
 * calling thread's cache. */
void *cconv_derived_get(int kind, const void *src, size_t src_bytes, size_t bytes,
                        int *fresh);
void cconv_derived_clear(void);
/* Whether an entry of src_bytes + bytes can be cached at all (the same
 * bound cconv_derived_get applies). */
int cconv_derived_fits(size_t src_bytes, size_t bytes);
enum { CCONV_DERIVED_WINOGRAD_F32 = 1, CCONV_DERIVED_WINOGRAD_F64 = 2,
       CCONV_DERIVED_GEMM_A_F32 = 3, CCONV_DERIVED_GEMM_A_F64 = 4,
       CCONV_DERIVED_WINOGRAD4_F32 = 5, CCONV_DERIVED_WINOGRAD4_F64 = 6,
       CCONV_DERIVED_DIRECT_F32 = 7, CCONV_DERIVED_DIRECT_F64 = 8,
       CCONV_DERIVED_WINO_ROWS_F32 = 9, CCONV_DERIVED_WINO_ROWS_F64 = 10 };

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

/* The same, never by the direct loops for tiny sizes: a product cut into
 * pieces (per thread) rounds each element as the whole one does. */
int cconv_gemm_blocked_f32(int transa, int transb, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda,
                           const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc, int nthreads);
int cconv_gemm_blocked_f64(int transa, int transb, int64_t M, int64_t N, int64_t K,
                           double alpha, const double *A, int64_t lda,
                           const double *B, int64_t ldb, double beta,
                           double *C, int64_t ldc, int nthreads);

/* op(A) packed once for many products with the same A (weights): size in
 * elements of the packed copy, the packing, and the product that uses it
 * (small products read A in place when it is passed; with A == NULL every
 * product runs from the packed copy). */
size_t cconv_gemm_packed_a_size_f32(int64_t M, int64_t K);
size_t cconv_gemm_packed_a_size_f64(int64_t M, int64_t K);
void cconv_gemm_pack_a_f32(int transa, int64_t M, int64_t K, const float *A, int64_t lda,
                           float *ap);
void cconv_gemm_pack_a_f64(int transa, int64_t M, int64_t K, const double *A, int64_t lda,
                           double *ap);
int cconv_gemm_pa_f32(int transa, int transb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *ap,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      int nthreads);
int cconv_gemm_pa_f64(int transa, int transb, int64_t M, int64_t N, int64_t K,
                      double alpha, const double *A, int64_t lda, const double *ap,
                      const double *B, int64_t ldb, double beta, double *C, int64_t ldc,
                      int nthreads);
/* Rows [i0, i0 + mr) x columns [k0, k0 + kn) of an M x K matrix (A, not
 * transposed), given at src with row stride lds, written into their place
 * in cconv_gemm_pack_a's layout: i0 a multiple of CCONV_GEMM_MR, mr ==
 * CCONV_GEMM_MR or i0 + mr == M (the rest of that sliver is zeroed). For
 * producers that write a packed A directly, without the row-major matrix. */
#define CCONV_GEMM_MR 6
void cconv_gemm_pack_a_block_f32(int64_t M, int64_t K, int64_t i0, int64_t mr, int64_t k0,
                                 int64_t kn, const float *src, int64_t lds, float *ap);
void cconv_gemm_pack_a_block_f64(int64_t M, int64_t K, int64_t i0, int64_t mr, int64_t k0,
                                 int64_t kn, const double *src, int64_t lds, double *ap);

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
/* The same with an epilogue and a choice of algorithm: activation is
 * CCONV_ACT_NONE or CCONV_ACT_RELU (applied after the bias, NaN kept);
 * algo CCONV_ALGO_AUTO picks by shape (cconv_conv2d_algo), CCONV_ALGO_GEMM
 * forces im2col + GEMM (also for depthwise), CCONV_ALGO_WINOGRAD forces
 * Winograd F(2x2, 3x3), CCONV_ALGO_WINOGRAD4 Winograd F(4x4, 3x3); both
 * return CCONV_EINVAL where they do not apply (cconv_conv2d_winograd_ok).
 * CCONV_ALGO_WINOGRAD_ROWS: the direct kernel with Winograd F(4, 4) along
 * output rows (any kernel height, stride, groups; no column dilation, at
 * most 4 taps per column phase: kw <= 4 * stride_w), CCONV_EINVAL elsewhere
 * (cconv_conv2d_winograd_rows_ok; always where the compiler lacks vector
 * extensions). */
enum { CCONV_ACT_NONE = 0, CCONV_ACT_RELU = 1 };
enum { CCONV_ALGO_AUTO = 0, CCONV_ALGO_GEMM = 1, CCONV_ALGO_WINOGRAD = 2,
       CCONV_ALGO_DEPTHWISE = 3, CCONV_ALGO_DIRECT = 4, CCONV_ALGO_WINOGRAD4 = 5,
       CCONV_ALGO_WINOGRAD_ROWS = 6 };
int cconv_conv2d_winograd_ok(const cconv_conv2d_params *p);
int cconv_conv2d_winograd_rows_ok(const cconv_conv2d_params *p);
/* The algorithm CCONV_ALGO_AUTO runs for p (never CCONV_ALGO_AUTO). */
int cconv_conv2d_algo(const cconv_conv2d_params *p);
int cconv_conv2d_forward_ex_f32(const cconv_conv2d_params *p, const float *x,
                                const float *w, const float *bias, float *y,
                                int activation, int algo, int nthreads);
int cconv_conv2d_forward_ex_f64(const cconv_conv2d_params *p, const double *x,
                                const double *w, const double *bias, double *y,
                                int activation, int algo, int nthreads);
/* y = max_pool2d(act(conv2d(x, w) + bias), 2): the direct algorithm with
 * 2x2 / stride 2 max pooling in its epilogue, y of (n, c_out, out_h / 2,
 * out_w / 2) (an odd last row / column dropped; NaN wins, as in
 * max_pool2d); the unpooled output is never stored. */
int cconv_conv2d_forward_maxpool2_f32(const cconv_conv2d_params *p, const float *x,
                                      const float *w, const float *bias, float *y,
                                      int activation, int nthreads);
int cconv_conv2d_forward_maxpool2_f64(const cconv_conv2d_params *p, const double *x,
                                      const double *w, const double *bias, double *y,
                                      int activation, int nthreads);
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

/* The same with a choice: algo CCONV_ALGO_AUTO (as above: the direct,
 * Winograd and depthwise paths where they apply) or CCONV_ALGO_GEMM (im2col
 * + GEMM only, with its smaller float32 rounding); CCONV_EINVAL otherwise. */
int cconv_conv2d_backward_input_ex_f32(const cconv_conv2d_params *p, const float *dy,
                                       const float *w, float *dx, int algo, int nthreads);
int cconv_conv2d_backward_input_ex_f64(const cconv_conv2d_params *p, const double *dy,
                                       const double *w, double *dx, int algo, int nthreads);
int cconv_conv2d_backward_weight_ex_f32(const cconv_conv2d_params *p, const float *dy,
                                        const float *x, float *dw, float *db, int algo,
                                        int nthreads);
int cconv_conv2d_backward_weight_ex_f64(const cconv_conv2d_params *p, const double *dy,
                                        const double *x, double *dw, double *db, int algo,
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
/* CCONV_EINVAL (dx then undefined) when an index is neither -1 nor inside
 * its plane. */
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

/* ---- inference chains (chain.c) ----
 * A sequence of per-sample layers run over a batch in one call: step i reads
 * step i - 1's output (step 0 reads x) and writes its own y, all C-contiguous
 * with sample-major layout. Small nets at moderate batches spend more on
 * per-layer thread handoffs than on arithmetic (LeNet at batch 64: five
 * parallel regions of 30-200 us each), so where the batch divides well and
 * the weights are small the chain splits the batch instead: each thread
 * takes a contiguous range of samples through every step (its activations
 * stay in its own cache), one parallel region per call. Otherwise each step
 * runs on the whole batch with its own threads, as a call per layer would.
 * Results equal a call per layer bit for bit except that the Linear steps of
 * a split batch multiply fewer rows, which may choose another GEMM blocking
 * (differences of an ulp or so in float32). */
enum {
    CCONV_STEP_CONV2D = 1,     /* conv2d (+ activation) (+ max_pool2d(2) when pool2) */
    CCONV_STEP_MAX_POOL2D = 2,
    CCONV_STEP_LINEAR = 3,     /* y = x W^T + bias (+ activation); W (out, in) */
    CCONV_STEP_RELU = 4,
};
typedef struct {
    int kind;                  /* CCONV_STEP_* */
    int activation;            /* CCONV_ACT_*: conv2d and linear */
    int algo;                  /* CCONV_ALGO_*: conv2d without pool2 */
    int pool2;                 /* conv2d: 2x2 / stride 2 max pooling in the epilogue */
    cconv_conv2d_params conv;  /* conv2d; its n is ignored (the chain's n) */
    cconv_pool2d_params pool;  /* max_pool2d; its n is ignored */
    int64_t in_features, out_features;   /* linear */
    const void *w, *bias;      /* conv2d, linear (bias may be NULL) */
    void *y;                   /* this step's output for the whole batch */
} cconv_chain_step;

/* Elements per sample of step s's input and output (-1 for ReLU: the
 * previous step's), and its multiply-adds per sample; CCONV_EINVAL when the
 * step's parameters are out of range (its pointers are not looked at). */
int cconv_chain_step_sizes(cconv_chain_step *s, int64_t *in_size, int64_t *out_size,
                           double *work);
/* Threads of a split batch for this chain (1: not split; 0: CCONV_EINVAL). */
int cconv_chain_split_threads(cconv_chain_step *steps, int nsteps, int64_t n, int elem,
                              int nthreads);
/* Runs steps[0..nsteps) on x of n samples; the result is in steps[nsteps-1].y.
 * CCONV_EINVAL when a step is out of range or its input size is not the
 * previous step's output size. */
int cconv_chain_forward_f32(cconv_chain_step *steps, int nsteps, int64_t n,
                            const float *x, int nthreads);
int cconv_chain_forward_f64(cconv_chain_step *steps, int nsteps, int64_t n,
                            const double *x, int nthreads);
/* ---- end of inference chains ---- */

/* ---- image filtering (cconv.filters; src/cconv/_core/filter.c) ----
 * Correlation of channel-interleaved images (n, h, w, c) with one 2-D kernel
 * applied to every channel, any output size, the input extended beyond its
 * edges by a border rule:
 *   y[b, i, j, ch] = sum_{u<kh, v<kw} k[u, v] * X[b, i + u - anchor_h, j + v - anchor_w, ch]
 * Convolution is correlation with the flipped kernel (and anchor k - 1 - a).
 * Borders use scipy.ndimage's names: for a row "a b c d",
 *   REFLECT  d c b a | a b c d | d c b a   (OpenCV BORDER_REFLECT)
 *   MIRROR     d c b | a b c d | c b a     (OpenCV BORDER_REFLECT_101)
 *   NEAREST  a a a a | a b c d | d d d d   (OpenCV BORDER_REPLICATE)
 *   WRAP     a b c d | a b c d | a b c d   (OpenCV BORDER_WRAP)
 *   CONSTANT k k k k | a b c d | k k k k   (k = cval; OpenCV BORDER_CONSTANT)
 * repeated as often as needed, so a kernel may be larger than the image.
 * The sums are computed in the entry point's type (f32 or f64); the image and
 * the output may instead hold 8- or 16-bit integers (in_type, out_type):
 * inputs are converted exactly, outputs rounded half to even and clipped to
 * the type's range (NaN gives the type's minimum). */
enum {
    CCONV_BORDER_CONSTANT = 0,
    CCONV_BORDER_REFLECT = 1,
    CCONV_BORDER_MIRROR = 2,
    CCONV_BORDER_NEAREST = 3,
    CCONV_BORDER_WRAP = 4,
};

enum {
    CCONV_DT_COMPUTE = 0,                  /* the entry point's float type */
    CCONV_DT_U8 = 1,
    CCONV_DT_I8 = 2,
    CCONV_DT_U16 = 3,
    CCONV_DT_I16 = 4,
};

typedef struct {
    int64_t n, h, w, c;                    /* input  (n, h, w, c) */
    int64_t kh, kw;                        /* kernel (kh, kw), row-major */
    int64_t anchor_h, anchor_w;            /* 0 <= anchor < kernel size */
    int64_t out_h, out_w;                  /* output (n, out_h, out_w, c) */
    int border;                            /* CCONV_BORDER_* */
    double cval;                           /* outside value for CONSTANT */
    int in_type, out_type;                 /* CCONV_DT_* of x and y */
} cconv_filter2d_params;

/* CCONV_EINVAL when a size, anchor, border or type is out of range. */
int cconv_filter2d_check(const cconv_filter2d_params *p);
/* Index of the input sample that stands at position i of an axis of length n
 * (any i), or -1 for CONSTANT outside [0, n). */
int64_t cconv_border_index(int64_t i, int64_t n, int border);

/* Direct 2-D correlation; y is written. Zero weights are skipped (as
 * scipy.ndimage does), so a NaN or inf under a zero weight does not spread. */
int cconv_filter2d_f32(const cconv_filter2d_params *p, const void *x,
                       const float *k, void *y, int nthreads);
int cconv_filter2d_f64(const cconv_filter2d_params *p, const void *x,
                       const double *k, void *y, int nthreads);
/* Separable correlation with the rank-1 kernel k[u, v] = kcol[u] * krow[v]:
 * a horizontal pass (krow) then a vertical one (kcol), row by row. */
int cconv_sepfilter2d_f32(const cconv_filter2d_params *p, const void *x,
                          const float *kcol, const float *krow, void *y,
                          int nthreads);
int cconv_sepfilter2d_f64(const cconv_filter2d_params *p, const void *x,
                          const double *kcol, const double *krow, void *y,
                          int nthreads);
/* ---- end of image filtering ---- */

/* ---- symmetric eigensolver (eigh.c; public through cconv_eigh in capi.c) ----
 * A = V diag(w) V^T for a symmetric n x n A (row-major, leading dimension
 * lda >= n; only the lower triangle is read, the upper one when upper != 0).
 * w: eigenvalues ascending; v (n x n, may be NULL, may alias a): eigenvectors
 * as columns. Householder tridiagonalisation + implicit QL with shifts, in
 * double also for f32: a portable reference, not LAPACK speed. Serial.
 * A is scaled by a power of two near max|a_ij| first (exact), so entries up
 * to the type's maximum work. Returns CCONV_OK, CCONV_ENOMEM, CCONV_ENOCONV
 * (NaN/inf in A, or the iteration limit was reached) or CCONV_ERANGE (an
 * eigenvalue exceeds the type's range: |w| can reach n * max|a_ij|). */
enum { CCONV_ENOCONV = 3, CCONV_ERANGE = 4 };
int cconv_eigh_f32(int64_t n, const float *a, int64_t lda, int upper, float *w,
                   float *v);
int cconv_eigh_f64(int64_t n, const double *a, int64_t lda, int upper, double *w,
                   double *v);
/* ---- end of symmetric eigensolver ---- */

#ifdef __cplusplus
}
#endif
#endif
