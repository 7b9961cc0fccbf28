/* Row-major GEMM, single and double precision:
 *     C[M,N] = alpha * op(A) op(B) + beta * C
 * Self-contained C99 (+ OpenMP when compiled with it), no BLAS.
 *
 * Goto/BLIS structure: op(A) is packed into MR-row slivers (element (i,k) at
 * k*MR + i), op(B) into NR-column slivers (element (k,j) at k*NR + j), and a
 * register-blocked micro-kernel computes one MR x NR tile of C from a sliver
 * of each over a block of KC k's. The loop order depends on the shape:
 *   - general (Goto/BLIS): for NC columns (packed B panel in L3), for KC k's,
 *     for MC rows (packed A block in L2), for NR columns (B sliver in L1),
 *     for MR rows: micro-kernel;
 *   - one block of rows (M <= MC): A packed once per KC block, B packed in
 *     L2-sized panels used right away; with very few rows (<= 36) and B not
 *     transposed, B is read in place instead (each sliver serves few tiles);
 *   - few columns (packed KC x N panel of B <= 128 KiB): B packed, A read in
 *     place sliver by sliver (the micro-kernel takes A with any strides).
 * Edge tiles are computed into a small buffer (rows past M and columns past N
 * packed as zeros) and written back; 4-row edges have their own kernel.
 *
 * Micro-kernels: AVX2+FMA 6x16 floats / 6x8 doubles (12 ymm accumulators),
 * chosen at run time with __builtin_cpu_supports, else a portable C kernel of
 * the same shape (same packing). All AVX2 code sits in functions with target
 * attributes: the file is compiled for the baseline ISA (no -march).
 * CCONV_GEMM_PORTABLE=1 in the environment forces the portable kernels.
 *
 * Tiny problems (< 32k multiply-adds, or M == 1, or N == 1) run direct loops
 * without packing or allocation. With nthreads > 1 and enough work, C is cut
 * into a grid of row x column blocks, one per thread; each thread packs its
 * own operands into its own buffers, all allocated before the parallel
 * region (an allocation failure returns CCONV_ENOMEM before C is touched).
 * nthreads <= 1 never opens an OpenMP region.
 *
 * The generic part is written once and instantiated for float and double by
 * including this file into itself (GEMM_T defined).
 */
#ifndef GEMM_T

#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "cconv_core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
#define GEMM_X86 1
#include <immintrin.h>
#define GEMM_AVX2 __attribute__((target("avx2,fma")))
#define GEMM_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
#else
#define GEMM_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define GEMM_INLINE static inline __attribute__((always_inline))
#else
#define GEMM_INLINE static inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define GEMM_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#else
#define GEMM_PREFETCH(p) ((void)0)
#endif

/* Vectors of the compiler (unaligned, may alias the matrices); outside AVX2
 * functions the 32-byte ones are lowered to pairs of SSE operations. */
#if defined(__GNUC__) || defined(__clang__)
#define GEMM_VEC 1
typedef float gemm_v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef double gemm_v4d __attribute__((vector_size(32), aligned(8), may_alias));
typedef float gemm_v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef double gemm_v2d __attribute__((vector_size(16), aligned(8), may_alias));
#else
#define GEMM_VEC 0
#endif

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define GEMM_RESTRICT __restrict
#else
#define GEMM_RESTRICT
#endif

/* Below this many multiply-adds the direct loop beats packing. */
#ifndef GEMM_DIRECT_WORK
#define GEMM_DIRECT_WORK 32768.0
#endif
/* Up to this many rows of A, B (not transposed) is read in place. */
#ifndef GEMM_DIRECT_B_ROWS
#define GEMM_DIRECT_B_ROWS 36
#endif
/* When the packed B panel (KC x all columns) takes at most this many bytes,
 * A is read in place (macro_adirect). */
#ifndef GEMM_ADIRECT_PANEL
#define GEMM_ADIRECT_PANEL (128 * 1024)
#endif
/* Multiply-adds per thread below which an extra thread is not worth waking. */
#define GEMM_WORK_PER_THREAD 1.0e6
/* Extra elements at the end of every packing buffer: the vector packers
 * may store a few lanes past the end of the last sliver. */
#define GEMM_PAD 64
/* Bytes of a packed B panel meant to stay in L2 (see small_m_nc). */
#ifndef GEMM_L2_PANEL
#define GEMM_L2_PANEL (192 * 1024)
#endif

/* ---- run-time kernel selection ---- */
enum { GEMM_ISA_PORTABLE = 0, GEMM_ISA_AVX2 = 1 };
static int gemm_isa_cached = -1;

static int gemm_isa_detect(void)
{
    const char *e = getenv("CCONV_GEMM_PORTABLE");
    if (e && e[0] && !(e[0] == '0' && e[1] == '\0')) return GEMM_ISA_PORTABLE;
#if GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return GEMM_ISA_AVX2;
#endif
    return GEMM_ISA_PORTABLE;
}

static int gemm_isa(void)
{
    /* Benign race: every thread computes the same value. */
#if defined(__GNUC__) || defined(__clang__)
    int v = __atomic_load_n(&gemm_isa_cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = gemm_isa_detect();
        __atomic_store_n(&gemm_isa_cached, v, __ATOMIC_RELAXED);
    }
#else
    int v = gemm_isa_cached;
    if (v < 0) gemm_isa_cached = v = gemm_isa_detect();
#endif
    return v;
}

/* Internal test hook (not in the public header): forget the cached kernel
 * choice so that the next call reads CCONV_GEMM_PORTABLE again. Returns the
 * kernel set that would now be used (0 portable, 1 AVX2). */
int cconv_gemm_redispatch_(void);
int cconv_gemm_redispatch_(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&gemm_isa_cached, -1, __ATOMIC_RELAXED);
#else
    gemm_isa_cached = -1;
#endif
    return gemm_isa();
}

/* ---- packing buffers: the thread's cached work buffer (threads.c), so
 * repeated calls do not fault in fresh pages ---- */
static void *gemm_amalloc(size_t bytes) { return cconv_work_alloc(2, bytes); }

static void gemm_afree(void *p) { cconv_work_free(2, p); }

static int64_t gemm_min(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t gemm_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Split `total` into near-equal parts of at most `cap`, each a multiple of
 * `mult` (except possibly the last one). */
static int64_t gemm_even_block(int64_t total, int64_t cap, int64_t mult)
{
    if (total <= cap) return total;
    int64_t nb = gemm_cdiv(total, cap);
    int64_t b = gemm_cdiv(gemm_cdiv(total, nb), mult) * mult;
    return b > cap ? cap : b;
}

/* Thread grid: tm row blocks x tn column blocks (tm * tn <= nt) minimising
 * the time of the slowest thread: its multiply-adds (tiles rounded up to the
 * register block) plus its packing work. */
static void gemm_grid(int nt, int64_t M, int64_t N, int64_t K, int mr, int nr,
                      int *ptm, int *ptn, int64_t *pmch, int64_t *pnch)
{
    int64_t mb = gemm_cdiv(M, mr), nb = gemm_cdiv(N, nr);
    double best = -1.0;
    int btm = 1, btn = 1;
    for (int tm = 1; tm <= nt && tm <= mb; tm++) {
        for (int tn = 1; tm * tn <= nt && tn <= nb; tn++) {
            double mch = (double)(gemm_cdiv(mb, tm) * mr);
            double nch = (double)(gemm_cdiv(nb, tn) * nr);
            double cost = mch * nch * (double)K + 3.0 * (double)K * (mch + nch)
                          + 2000.0 * (double)(tm * tn);   /* waking a thread */
            if (best < 0 || cost < best) { best = cost; btm = tm; btn = tn; }
        }
    }
    *ptm = btm; *ptn = btn;
    *pmch = gemm_cdiv(mb, btm) * mr;
    *pnch = gemm_cdiv(nb, btn) * nr;
}

/* ============================ AVX2 kernels ============================ */
#if GEMM_X86

/* R x 16 float tile (R = 6, or 4 for the last rows of a matrix): c[R][16]
 * (row stride ldc) = alpha * op(A) B + beta * c over kc steps, element (i, k)
 * of A at a[i*rsa + k*csa] (packed: rsa = 1, csa = 6), row k of B at
 * b + k*ldbk (16 contiguous). beta == 0: c is only written. */
GEMM_AVX2_INLINE __m256 gemm_upd_ps(__m256 acc, float *c, __m256 va, __m256 vb, int zb)
{
    return zb ? _mm256_mul_ps(va, acc)
              : _mm256_fmadd_ps(va, acc, _mm256_mul_ps(vb, _mm256_loadu_ps(c)));
}

GEMM_AVX2_INLINE __m256d gemm_upd_pd(__m256d acc, double *c, __m256d va, __m256d vb, int zb)
{
    return zb ? _mm256_mul_pd(va, acc)
              : _mm256_fmadd_pd(va, acc, _mm256_mul_pd(vb, _mm256_loadu_pd(c)));
}

#define GEMM_KERNEL_AVX2(NAME, NAME4, T, V, VL, SET0, LOAD, BCAST, FMA, SET1, STORE, UPD) \
GEMM_AVX2_INLINE void NAME##_body(const int R, int64_t kc, const T *GEMM_RESTRICT a,   \
                             int64_t rsa, int64_t csa, const T *GEMM_RESTRICT b, \
                             int64_t ldbk, T *GEMM_RESTRICT c, int64_t ldc,      \
                             T alpha, T beta)                                    \
{                                                                               \
    V c00 = SET0(), c01 = SET0(), c10 = SET0(), c11 = SET0();                   \
    V c20 = SET0(), c21 = SET0(), c30 = SET0(), c31 = SET0();                   \
    V c40 = SET0(), c41 = SET0(), c50 = SET0(), c51 = SET0();                   \
    for (int i = 0; i < R; i++) {                                               \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                 \
        _mm_prefetch((const char *)(c + i * ldc + 2 * VL - 1), _MM_HINT_T0);    \
    }                                                                           \
    const T *a0 = a, *a3 = a + 3 * rsa;                                         \
    /* not unrolled on purpose: GCC then keeps all 12 accumulators in           \
     * registers (unrolled, it spills some of them) */                          \
    for (int64_t k = 0; k < kc; k++) {                                          \
        const V b0 = LOAD(b), b1 = LOAD(b + VL);                                \
        V av;                                                                   \
        av = BCAST(a0);                                                         \
        c00 = FMA(av, b0, c00); c01 = FMA(av, b1, c01);                         \
        av = BCAST(a0 + rsa);                                                   \
        c10 = FMA(av, b0, c10); c11 = FMA(av, b1, c11);                         \
        av = BCAST(a0 + 2 * rsa);                                               \
        c20 = FMA(av, b0, c20); c21 = FMA(av, b1, c21);                         \
        av = BCAST(a3);                                                         \
        c30 = FMA(av, b0, c30); c31 = FMA(av, b1, c31);                         \
        if (R > 4) {                                                            \
            av = BCAST(a3 + rsa);                                               \
            c40 = FMA(av, b0, c40); c41 = FMA(av, b1, c41);                     \
            av = BCAST(a3 + 2 * rsa);                                           \
            c50 = FMA(av, b0, c50); c51 = FMA(av, b1, c51);                     \
        }                                                                       \
        a0 += csa; a3 += csa; b += ldbk;                                        \
    }                                                                           \
    const V va = SET1(alpha), vb = SET1(beta);                                  \
    const int zb = beta == 0;                                                   \
    STORE(c, UPD(c00, c, va, vb, zb));                                          \
    STORE(c + VL, UPD(c01, c + VL, va, vb, zb));                                \
    STORE(c + ldc, UPD(c10, c + ldc, va, vb, zb));                              \
    STORE(c + ldc + VL, UPD(c11, c + ldc + VL, va, vb, zb));                    \
    STORE(c + 2 * ldc, UPD(c20, c + 2 * ldc, va, vb, zb));                      \
    STORE(c + 2 * ldc + VL, UPD(c21, c + 2 * ldc + VL, va, vb, zb));            \
    STORE(c + 3 * ldc, UPD(c30, c + 3 * ldc, va, vb, zb));                      \
    STORE(c + 3 * ldc + VL, UPD(c31, c + 3 * ldc + VL, va, vb, zb));            \
    if (R > 4) {                                                                \
        STORE(c + 4 * ldc, UPD(c40, c + 4 * ldc, va, vb, zb));                  \
        STORE(c + 4 * ldc + VL, UPD(c41, c + 4 * ldc + VL, va, vb, zb));        \
        STORE(c + 5 * ldc, UPD(c50, c + 5 * ldc, va, vb, zb));                  \
        STORE(c + 5 * ldc + VL, UPD(c51, c + 5 * ldc + VL, va, vb, zb));        \
    }                                                                           \
}                                                                               \
GEMM_AVX2 static void NAME(int64_t kc, const T *a, int64_t rsa, int64_t csa,     \
                           const T *b, int64_t ldbk, T *c, int64_t ldc,         \
                           T alpha, T beta)                                     \
{ NAME##_body(6, kc, a, rsa, csa, b, ldbk, c, ldc, alpha, beta); }              \
GEMM_AVX2 static void NAME4(int64_t kc, const T *a, int64_t rsa, int64_t csa, \
                                const T *b, int64_t ldbk, T *c, int64_t ldc,    \
                                T alpha, T beta)                                \
{ NAME##_body(4, kc, a, rsa, csa, b, ldbk, c, ldc, alpha, beta); }

/* 6x16 / 4x16 floats */
GEMM_KERNEL_AVX2(kern_avx2_f32, kern_avx2_r4_f32, float, __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps,
                 _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_set1_ps,
                 _mm256_storeu_ps, gemm_upd_ps)
/* 6x8 / 4x8 doubles */
GEMM_KERNEL_AVX2(kern_avx2_f64, kern_avx2_r4_f64, double, __m256d, 4, _mm256_setzero_pd, _mm256_loadu_pd,
                 _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_set1_pd,
                 _mm256_storeu_pd, gemm_upd_pd)
#undef GEMM_KERNEL_AVX2

/* 6 x VL tile (one vector of columns): the edge sliver of a product whose
 * last columns fill at most half of the 16 (8 for double), e.g. 49 Winograd
 * tiles = 3 x 16 + 1. The full kernel would compute 16 columns for them.
 * c (row stride ldc) = op(A) B over kc steps, A as in the kernels above. */
#define GEMM_KERNEL_HALF_AVX2(NAME, T, V, SET0, LOAD, BCAST, FMA, STORE)           \
GEMM_AVX2 static void NAME(int64_t kc, const T *GEMM_RESTRICT a, int64_t rsa,       \
                           int64_t csa, const T *GEMM_RESTRICT b, int64_t ldbk,     \
                           T *GEMM_RESTRICT c, int64_t ldc)                         \
{                                                                                   \
    V c0 = SET0(), c1 = SET0(), c2 = SET0(), c3 = SET0(), c4 = SET0(), c5 = SET0(); \
    for (int64_t k = 0; k < kc; k++) {                                              \
        const V b0 = LOAD(b);                                                       \
        c0 = FMA(BCAST(a), b0, c0);                                                 \
        c1 = FMA(BCAST(a + rsa), b0, c1);                                           \
        c2 = FMA(BCAST(a + 2 * rsa), b0, c2);                                       \
        c3 = FMA(BCAST(a + 3 * rsa), b0, c3);                                       \
        c4 = FMA(BCAST(a + 4 * rsa), b0, c4);                                       \
        c5 = FMA(BCAST(a + 5 * rsa), b0, c5);                                       \
        a += csa; b += ldbk;                                                        \
    }                                                                               \
    STORE(c, c0); STORE(c + ldc, c1); STORE(c + 2 * ldc, c2);                       \
    STORE(c + 3 * ldc, c3); STORE(c + 4 * ldc, c4); STORE(c + 5 * ldc, c5);         \
}
GEMM_KERNEL_HALF_AVX2(kern_half_avx2_f32, float, __m256, _mm256_setzero_ps, _mm256_loadu_ps,
                      _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_storeu_ps)
GEMM_KERNEL_HALF_AVX2(kern_half_avx2_f64, double, __m256d, _mm256_setzero_pd, _mm256_loadu_pd,
                      _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_storeu_pd)
#undef GEMM_KERNEL_HALF_AVX2

/* In-register 8x8 float transpose. */
#define GEMM_TRANSPOSE8_PS(r0, r1, r2, r3, r4, r5, r6, r7)                    \
    {                                                                         \
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1); \
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3); \
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5); \
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7); \
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE); \
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE); \
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE); \
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE); \
        r0 = _mm256_permute2f128_ps(u0, u4, 0x20);                            \
        r1 = _mm256_permute2f128_ps(u1, u5, 0x20);                            \
        r2 = _mm256_permute2f128_ps(u2, u6, 0x20);                            \
        r3 = _mm256_permute2f128_ps(u3, u7, 0x20);                            \
        r4 = _mm256_permute2f128_ps(u0, u4, 0x31);                            \
        r5 = _mm256_permute2f128_ps(u1, u5, 0x31);                            \
        r6 = _mm256_permute2f128_ps(u2, u6, 0x31);                            \
        r7 = _mm256_permute2f128_ps(u3, u7, 0x31);                            \
    }

/* In-register 4x4 double transpose. */
#define GEMM_TRANSPOSE4_PD(r0, r1, r2, r3)                                    \
    {                                                                         \
        __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1); \
        __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3); \
        r0 = _mm256_permute2f128_pd(t0, t2, 0x20);                            \
        r1 = _mm256_permute2f128_pd(t1, t3, 0x20);                            \
        r2 = _mm256_permute2f128_pd(t0, t2, 0x31);                            \
        r3 = _mm256_permute2f128_pd(t1, t3, 0x31);                            \
    }

/* Full 6-row sliver of a row-major (transa == 0) A: src row i at src + i*lda,
 * dst[k*6 + i]. Writes up to 2 floats past dst + 6*kc (buffers are padded;
 * the next sliver overwrites them). */
GEMM_AVX2 static void packa_rows_avx2_f32(int64_t kc, const float *src,
                                          int64_t lda, float *dst, const float *pf)
{
    int64_t k = 0;
    const __m256 z = _mm256_setzero_ps();
    for (; k + 8 <= kc; k += 8) {
        for (int i = 0; i < 6; i++) GEMM_PREFETCH(pf + i * lda + k);
        __m256 r0 = _mm256_loadu_ps(src + k), r1 = _mm256_loadu_ps(src + lda + k);
        __m256 r2 = _mm256_loadu_ps(src + 2 * lda + k);
        __m256 r3 = _mm256_loadu_ps(src + 3 * lda + k);
        __m256 r4 = _mm256_loadu_ps(src + 4 * lda + k);
        __m256 r5 = _mm256_loadu_ps(src + 5 * lda + k);
        __m256 r6 = z, r7 = z;
        GEMM_TRANSPOSE8_PS(r0, r1, r2, r3, r4, r5, r6, r7);
        float *d = dst + k * 6;
        _mm256_storeu_ps(d, r0);      _mm256_storeu_ps(d + 6, r1);
        _mm256_storeu_ps(d + 12, r2); _mm256_storeu_ps(d + 18, r3);
        _mm256_storeu_ps(d + 24, r4); _mm256_storeu_ps(d + 30, r5);
        _mm256_storeu_ps(d + 36, r6); _mm256_storeu_ps(d + 42, r7);
    }
    for (; k < kc; k++)
        for (int i = 0; i < 6; i++) dst[k * 6 + i] = src[i * lda + k];
}

/* Full 16-column sliver of a transposed B (transb == 1, stored N x K): src
 * row j at src + j*ldb, dst[k*16 + j]. */
GEMM_AVX2 static void packb_cols_avx2_f32(int64_t kc, const float *src,
                                          int64_t ldb, float *dst, const float *pf)
{
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        for (int j = 0; j < 16; j++) GEMM_PREFETCH(pf + j * ldb + k);
        for (int h = 0; h < 2; h++) {
            const float *s = src + 8 * h * ldb + k;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldb);
            __m256 r2 = _mm256_loadu_ps(s + 2 * ldb), r3 = _mm256_loadu_ps(s + 3 * ldb);
            __m256 r4 = _mm256_loadu_ps(s + 4 * ldb), r5 = _mm256_loadu_ps(s + 5 * ldb);
            __m256 r6 = _mm256_loadu_ps(s + 6 * ldb), r7 = _mm256_loadu_ps(s + 7 * ldb);
            GEMM_TRANSPOSE8_PS(r0, r1, r2, r3, r4, r5, r6, r7);
            float *d = dst + k * 16 + 8 * h;
            _mm256_storeu_ps(d, r0);       _mm256_storeu_ps(d + 16, r1);
            _mm256_storeu_ps(d + 32, r2);  _mm256_storeu_ps(d + 48, r3);
            _mm256_storeu_ps(d + 64, r4);  _mm256_storeu_ps(d + 80, r5);
            _mm256_storeu_ps(d + 96, r6);  _mm256_storeu_ps(d + 112, r7);
        }
    }
    for (; k < kc; k++)
        for (int j = 0; j < 16; j++) dst[k * 16 + j] = src[j * ldb + k];
}

/* Full 6-row sliver of a row-major A, doubles: dst[k*6 + i]. */
GEMM_AVX2 static void packa_rows_avx2_f64(int64_t kc, const double *src,
                                          int64_t lda, double *dst, const double *pf)
{
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        if (!(k & 4)) for (int i = 0; i < 6; i++) GEMM_PREFETCH(pf + i * lda + k);
        __m256d r0 = _mm256_loadu_pd(src + k), r1 = _mm256_loadu_pd(src + lda + k);
        __m256d r2 = _mm256_loadu_pd(src + 2 * lda + k);
        __m256d r3 = _mm256_loadu_pd(src + 3 * lda + k);
        __m256d r4 = _mm256_loadu_pd(src + 4 * lda + k);
        __m256d r5 = _mm256_loadu_pd(src + 5 * lda + k);
        GEMM_TRANSPOSE4_PD(r0, r1, r2, r3);
        __m256d lo = _mm256_unpacklo_pd(r4, r5);   /* k0 k0 | k2 k2 */
        __m256d hi = _mm256_unpackhi_pd(r4, r5);   /* k1 k1 | k3 k3 */
        double *d = dst + k * 6;
        _mm256_storeu_pd(d, r0);
        _mm_storeu_pd(d + 4, _mm256_castpd256_pd128(lo));
        _mm256_storeu_pd(d + 6, r1);
        _mm_storeu_pd(d + 10, _mm256_castpd256_pd128(hi));
        _mm256_storeu_pd(d + 12, r2);
        _mm_storeu_pd(d + 16, _mm256_extractf128_pd(lo, 1));
        _mm256_storeu_pd(d + 18, r3);
        _mm_storeu_pd(d + 22, _mm256_extractf128_pd(hi, 1));
    }
    for (; k < kc; k++)
        for (int i = 0; i < 6; i++) dst[k * 6 + i] = src[i * lda + k];
}

/* Full 8-column sliver of a transposed B, doubles: dst[k*8 + j]. */
GEMM_AVX2 static void packb_cols_avx2_f64(int64_t kc, const double *src,
                                          int64_t ldb, double *dst, const double *pf)
{
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        if (!(k & 4)) for (int j = 0; j < 8; j++) GEMM_PREFETCH(pf + j * ldb + k);
        for (int h = 0; h < 2; h++) {
            const double *s = src + 4 * h * ldb + k;
            __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + ldb);
            __m256d r2 = _mm256_loadu_pd(s + 2 * ldb), r3 = _mm256_loadu_pd(s + 3 * ldb);
            GEMM_TRANSPOSE4_PD(r0, r1, r2, r3);
            double *d = dst + k * 8 + 4 * h;
            _mm256_storeu_pd(d, r0);      _mm256_storeu_pd(d + 8, r1);
            _mm256_storeu_pd(d + 16, r2); _mm256_storeu_pd(d + 24, r3);
        }
    }
    for (; k < kc; k++)
        for (int j = 0; j < 8; j++) dst[k * 8 + j] = src[j * ldb + k];
}

#endif /* GEMM_X86 */

/* ====================== generic part, per precision ====================== */
/* Cache blocking (elements): an MR x KC sliver of A and a KC x NR sliver of B
 * stay in L1 (32 KiB), an MC x KC block of A in L2, a KC x NC panel of B in
 * L3. MC is a multiple of MR and NC of NR. */
#ifndef GEMM_F32_MC
#define GEMM_F32_MC 144
#endif
#ifndef GEMM_F32_KC
#define GEMM_F32_KC 256
#endif
#ifndef GEMM_F32_NC
#define GEMM_F32_NC 4080
#endif
#ifndef GEMM_F64_MC
#define GEMM_F64_MC 72
#endif
#ifndef GEMM_F64_KC
#define GEMM_F64_KC 256
#endif
#ifndef GEMM_F64_NC
#define GEMM_F64_NC 2040
#endif

#define GEMM_T float
#define GEMM_VT gemm_v8f
#define GEMM_VT16 gemm_v4f
#define GEMM_S(name) name##_f32
#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_MC GEMM_F32_MC
#define GEMM_KC GEMM_F32_KC
#define GEMM_NC GEMM_F32_NC
#include "gemm.c"
#undef GEMM_T
#undef GEMM_VT
#undef GEMM_VT16
#undef GEMM_S
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_MC
#undef GEMM_KC
#undef GEMM_NC

#define GEMM_T double
#define GEMM_VT gemm_v4d
#define GEMM_VT16 gemm_v2d
#define GEMM_S(name) name##_f64
#define GEMM_MR 6
#define GEMM_NR 8
#define GEMM_MC GEMM_F64_MC
#define GEMM_KC GEMM_F64_KC
#define GEMM_NC GEMM_F64_NC
#include "gemm.c"
#undef GEMM_T
#undef GEMM_VT
#undef GEMM_VT16
#undef GEMM_S
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_MC
#undef GEMM_KC
#undef GEMM_NC

#else /* GEMM_T defined: the per-precision template ==================== */

#define T GEMM_T
#define S GEMM_S
#define MR GEMM_MR
_Static_assert(GEMM_MR == CCONV_GEMM_MR, "cconv_core.h's sliver height");
#define NR GEMM_NR

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    T alpha, beta;
    const T *A; int64_t lda;
    const T *B; int64_t ldb;
    T *C; int64_t ldc;
    int isa;
    const T *ap;       /* op(A) packed whole (S(cconv_gemm_pack_a)) or NULL */
} S(gemm_job);

/* ---- portable micro-kernel, same contract as the AVX2 ones ----
 * With GCC/clang vectors: the tile in column halves of two 16-byte vectors
 * per row (12 accumulators, as many as SSE2 has registers for). */
static void S(kern_c)(int64_t kc, const T *GEMM_RESTRICT a, int64_t rsa,
                      int64_t csa, const T *GEMM_RESTRICT b, int64_t ldbk,
                      T *GEMM_RESTRICT c, int64_t ldc, T alpha, T beta)
{
#if GEMM_VEC
    typedef GEMM_VT16 V;
    enum { VL = 16 / (int)sizeof(T) };
    for (int h = 0; h < NR; h += 2 * VL) {
        V acc[MR][2];
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (V){0};
        const T *ak = a, *bk = b + h;
        for (int64_t k = 0; k < kc; k++) {
            const V b0 = *(const V *)bk, b1 = *(const V *)(bk + VL);
            for (int i = 0; i < MR; i++) {
                const T ai = ak[i * rsa];
                acc[i][0] += ai * b0;
                acc[i][1] += ai * b1;
            }
            ak += csa; bk += ldbk;
        }
        for (int i = 0; i < MR; i++) {
            V *cv = (V *)(c + i * ldc + h);
            if (beta == 0) {
                cv[0] = alpha * acc[i][0];
                cv[1] = alpha * acc[i][1];
            } else {
                cv[0] = alpha * acc[i][0] + beta * cv[0];
                cv[1] = alpha * acc[i][1] + beta * cv[1];
            }
        }
    }
#else
    T acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0;
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++) {
            const T ai = a[i * rsa];
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[j];
        }
        a += csa; b += ldbk;
    }
    if (beta == 0) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i * ldc + j] = alpha * acc[i][j];
    } else {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                c[i * ldc + j] = alpha * acc[i][j] + beta * c[i * ldc + j];
    }
#endif
}

/* Micro-tile of mr <= MR rows. Returns the number of rows written to c: MR,
 * or 4 when a 4-row kernel served mr <= 4. */
GEMM_INLINE int S(kern)(int isa, int64_t mr, int64_t kc, const T *a, int64_t rsa,
                        int64_t csa, const T *b, int64_t ldbk, T *c, int64_t ldc,
                        T alpha, T beta)
{
#if GEMM_X86
    if (isa == GEMM_ISA_AVX2) {
        if (mr <= 4) {
            S(kern_avx2_r4)(kc, a, rsa, csa, b, ldbk, c, ldc, alpha, beta);
            return 4;
        }
        S(kern_avx2)(kc, a, rsa, csa, b, ldbk, c, ldc, alpha, beta);
        return MR;
    }
#else
    (void)isa;
#endif
    (void)mr;
    S(kern_c)(kc, a, rsa, csa, b, ldbk, c, ldc, alpha, beta);
    return MR;
}

/* An edge tile (mr rows, nr columns) into t (row stride NR), alpha 1 and
 * beta 0, for merge(): the half-width kernel when the columns fit in it.
 * A's sliver always holds MR rows (packed ones are zero-padded). */
GEMM_INLINE void S(kern_edge)(int isa, int64_t mr, int64_t nr, int64_t kc, const T *a,
                              int64_t rsa, int64_t csa, const T *b, int64_t ldbk, T *t)
{
#if GEMM_X86
    if (isa == GEMM_ISA_AVX2 && nr <= NR / 2) {
        S(kern_half_avx2)(kc, a, rsa, csa, b, ldbk, t, NR);
        return;
    }
#endif
    (void)nr;
    S(kern)(isa, mr, kc, a, rsa, csa, b, ldbk, t, NR, (T)1, (T)0);
}

/* Rows the kernel for mr rows writes (see kern). */
GEMM_INLINE int64_t S(kern_rows)(int isa, int64_t mr)
{
    return isa == GEMM_ISA_AVX2 && mr <= 4 ? 4 : MR;
}

/* c[mr][nr] = alpha * t[mr][nr] (row stride NR) + beta * c (beta == 0: c
 * only written): the write-back of an edge tile. */
GEMM_INLINE void S(merge)(int64_t mr, int64_t nr, const T *t, T *c, int64_t ldc,
                          T alpha, T beta)
{
    for (int64_t i = 0; i < mr; i++) {
        T *ci = c + i * ldc;
        const T *ti = t + i * NR;
        if (beta == 0)
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * ti[j];
        else
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
    }
}

/* ---- packing ----
 * A block: rows [i0, i0+mc) x k [p0, p0+kc) of op(A) into ceil(mc/MR)
 * slivers of kc*MR, element (i, k) of a sliver at k*MR + i; rows past mc are
 * zero. B panel: k [p0, p0+kc) x columns [j0, j0+nc) of op(B) into
 * ceil(nc/NR) slivers of kc*NR, element (k, j) of a sliver at k*NR + j;
 * columns past nc are zero.
 *
 * "copy" packers: the operand is stored with the sliver's short side
 * contiguous (op(A) with transa == 1, op(B) with transb == 0): kc rows of n
 * contiguous elements, row stride ld. They walk 8 rows at a time across all
 * slivers so that the reads stream, and prefetch the next 8 rows. */
GEMM_INLINE void S(pack_copy_body)(const int W, const T *GEMM_RESTRICT src,
                                   int64_t ld, int64_t kc, int64_t n,
                                   T *GEMM_RESTRICT dst)
{
    const int64_t nfull = n / W * W;
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        const int64_t ke = gemm_min(k0 + 8, kc);
        for (int64_t j = 0; j < nfull; j += W) {
            const T *s = src + j;
            T *d = dst + j * kc;
            for (int64_t k = k0; k < ke; k++) {
                GEMM_PREFETCH(s + (k + 8) * ld);
                GEMM_PREFETCH(s + (k + 8) * ld + W - 1);
                for (int i = 0; i < W; i++) d[k * W + i] = s[k * ld + i];
            }
        }
        if (nfull < n) {
            const int64_t w = n - nfull;
            const T *s = src + nfull;
            T *d = dst + nfull * kc;
            for (int64_t k = k0; k < ke; k++) {
                int64_t i = 0;
                for (; i < w; i++) d[k * W + i] = s[k * ld + i];
                for (; i < W; i++) d[k * W + i] = 0;
            }
        }
    }
}

/* "transpose" packers: the sliver's long side (k) is contiguous: n rows of
 * kc contiguous elements, row stride ld (op(A) with transa == 0, op(B) with
 * transb == 1). Portable version; the AVX2 full-sliver ones are above. */
GEMM_INLINE void S(pack_trans_body)(const int W, const T *GEMM_RESTRICT src,
                                    int64_t ld, int64_t kc, int64_t n,
                                    T *GEMM_RESTRICT dst)
{
    for (int64_t j = 0; j < n; j += W, dst += W * kc) {
        const int64_t w = gemm_min(W, n - j);
        const T *s = src + j * ld;
        if (w == W) {
            for (int64_t k = 0; k < kc; k++)
                for (int i = 0; i < W; i++) dst[k * W + i] = s[i * ld + k];
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t i = 0;
                for (; i < w; i++) dst[k * W + i] = s[i * ld + k];
                for (; i < W; i++) dst[k * W + i] = 0;
            }
        }
    }
}

static void S(pack_copy_a_c)(const T *src, int64_t ld, int64_t kc, int64_t n, T *dst)
{ S(pack_copy_body)(MR, src, ld, kc, n, dst); }
static void S(pack_copy_b_c)(const T *src, int64_t ld, int64_t kc, int64_t n, T *dst)
{ S(pack_copy_body)(NR, src, ld, kc, n, dst); }
static void S(pack_trans_a_c)(const T *src, int64_t ld, int64_t kc, int64_t n, T *dst)
{ S(pack_trans_body)(MR, src, ld, kc, n, dst); }
static void S(pack_trans_b_c)(const T *src, int64_t ld, int64_t kc, int64_t n, T *dst)
{ S(pack_trans_body)(NR, src, ld, kc, n, dst); }

#if GEMM_X86
GEMM_AVX2 static void S(pack_copy_a_avx2)(const T *src, int64_t ld, int64_t kc,
                                          int64_t n, T *dst)
{ S(pack_copy_body)(MR, src, ld, kc, n, dst); }
GEMM_AVX2 static void S(pack_copy_b_avx2)(const T *src, int64_t ld, int64_t kc,
                                          int64_t n, T *dst)
{ S(pack_copy_body)(NR, src, ld, kc, n, dst); }
/* full slivers through the in-register transposes, the edge one portable */
GEMM_AVX2 static void S(pack_trans_a_avx2)(const T *src, int64_t ld, int64_t kc,
                                           int64_t n, T *dst)
{
    int64_t j = 0;
    for (; j + MR <= n; j += MR, dst += MR * kc) {
        /* prefetch the rows of the next sliver while transposing this one */
        const T *next = j + 2 * MR <= n ? src + (j + MR) * ld : src + j * ld;
        S(packa_rows_avx2)(kc, src + j * ld, ld, dst, next);
    }
    if (j < n) S(pack_trans_body)(MR, src + j * ld, ld, kc, n - j, dst);
}
GEMM_AVX2 static void S(pack_trans_b_avx2)(const T *src, int64_t ld, int64_t kc,
                                           int64_t n, T *dst)
{
    int64_t j = 0;
    for (; j + NR <= n; j += NR, dst += NR * kc) {
        const T *next = j + 2 * NR <= n ? src + (j + NR) * ld : src + j * ld;
        S(packb_cols_avx2)(kc, src + j * ld, ld, dst, next);
    }
    if (j < n) S(pack_trans_body)(NR, src + j * ld, ld, kc, n - j, dst);
}
#endif

static void S(pack_a)(const S(gemm_job) *x, int64_t i0, int64_t mc, int64_t p0,
                      int64_t kc, T *dst)
{
    const int avx2 = x->isa == GEMM_ISA_AVX2;
    (void)avx2;
    if (!x->ta) {        /* op(A)(i, k) = A[i*lda + k] */
        const T *src = x->A + i0 * x->lda + p0;
#if GEMM_X86
        if (avx2) { S(pack_trans_a_avx2)(src, x->lda, kc, mc, dst); return; }
#endif
        S(pack_trans_a_c)(src, x->lda, kc, mc, dst);
    } else {             /* op(A)(i, k) = A[k*lda + i] */
        const T *src = x->A + p0 * x->lda + i0;
#if GEMM_X86
        if (avx2) { S(pack_copy_a_avx2)(src, x->lda, kc, mc, dst); return; }
#endif
        S(pack_copy_a_c)(src, x->lda, kc, mc, dst);
    }
}

static void S(pack_b)(const S(gemm_job) *x, int64_t p0, int64_t kc, int64_t j0,
                      int64_t nc, T *dst)
{
    const int avx2 = x->isa == GEMM_ISA_AVX2;
    (void)avx2;
    if (!x->tb) {        /* op(B)(k, j) = B[k*ldb + j] */
        const T *src = x->B + p0 * x->ldb + j0;
#if GEMM_X86
        if (avx2) { S(pack_copy_b_avx2)(src, x->ldb, kc, nc, dst); return; }
#endif
        S(pack_copy_b_c)(src, x->ldb, kc, nc, dst);
    } else {             /* op(B)(k, j) = B[j*ldb + k] */
        const T *src = x->B + j0 * x->ldb + p0;
#if GEMM_X86
        if (avx2) { S(pack_trans_b_avx2)(src, x->ldb, kc, nc, dst); return; }
#endif
        S(pack_trans_b_c)(src, x->ldb, kc, nc, dst);
    }
}

/* ---- macro-kernel: packed mc x kc A block times a kc x nc B panel ----
 * The B panel is either packed (slivers kc*NR apart, row stride NR) or, for
 * very few rows of A, read in place from B (slivers NR apart, row stride
 * ldb) with only a partial last sliver packed into `bedge`. */
typedef struct {
    const T *p;        /* first sliver */
    int64_t sl;        /* elements between slivers */
    int64_t ld;        /* elements between k rows of a sliver */
    const T *edge;     /* packed partial last sliver (row stride NR) or NULL */
} S(bview);

static void S(macro)(int isa, int64_t mc, int64_t nc, int64_t kc,
                     const T *ap, const S(bview) *bv, T *c, int64_t ldc,
                     T alpha, T beta)
{
    T tmp[MR * NR];
    for (int64_t jr = 0; jr < nc; jr += NR) {
        const int64_t nr = gemm_min(NR, nc - jr);
        const T *b = bv->p + (jr / NR) * bv->sl;
        int64_t ldbk = bv->ld;
        if (nr < NR && bv->edge) { b = bv->edge; ldbk = NR; }
        for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = gemm_min(MR, mc - ir);
            const T *a = ap + ir * kc;
            T *cc = c + ir * ldc + jr;
            if (nr == NR && mr == S(kern_rows)(isa, mr)) {
                S(kern)(isa, mr, kc, a, 1, MR, b, ldbk, cc, ldc, alpha, beta);
            } else {
                S(kern_edge)(isa, mr, nr, kc, a, 1, MR, b, ldbk, tmp);
                S(merge)(mr, nr, tmp, cc, ldc, alpha, beta);
            }
        }
    }
}

/* Few columns: every sliver of A serves at most a few micro-tiles, so A is
 * read in place (only a partial last sliver is packed) and the loop runs
 * over slivers of A outside, the small packed B panel staying in L1/L2. */
static void S(macro_adirect)(const S(gemm_job) *x, int64_t m0, int64_t m1,
                             int64_t p0, int64_t kc, int64_t nc, const T *bp,
                             T *abuf, T *c, T beta)
{
    const int isa = x->isa;
    const int64_t ldc = x->ldc, lda = x->lda;
    const T alpha = x->alpha;
    const int64_t rsa = x->ta ? 1 : lda, csa = x->ta ? lda : 1;
    T tmp[MR * NR];
    for (int64_t ir = m0; ir < m1; ir += MR) {
        const int64_t mr = gemm_min(MR, m1 - ir);
        const T *a;
        int64_t rs = rsa, cs = csa;
        if (mr == MR) {
            a = x->ta ? x->A + p0 * lda + ir : x->A + ir * lda + p0;
        } else {
            S(pack_a)(x, ir, mr, p0, kc, abuf);
            a = abuf; rs = 1; cs = MR;
        }
        T *cr = c + (ir - m0) * ldc;
        for (int64_t jr = 0; jr < nc; jr += NR) {
            const int64_t nr = gemm_min(NR, nc - jr);
            const T *b = bp + jr * kc;
            if (nr == NR && mr == S(kern_rows)(isa, mr)) {
                S(kern)(isa, mr, kc, a, rs, cs, b, NR, cr + jr, ldc, alpha, beta);
            } else {
                S(kern_edge)(isa, mr, nr, kc, a, rs, cs, b, NR, tmp);
                S(merge)(mr, nr, tmp, cr + jr, ldc, alpha, beta);
            }
        }
    }
}

/* Columns of a B panel when A is packed once per k block (few rows): the
 * panel (kc x nc) is sized to stay in L2 next to the packed A block. */
static int64_t S(small_m_nc)(int64_t kc)
{
    int64_t nc = (int64_t)(GEMM_L2_PANEL / sizeof(T)) / (kc > 0 ? kc : 1);
    nc = nc / NR * NR;
    return nc < 4 * NR ? 4 * NR : nc;
}

/* Packing buffer sizes (elements) for a sub-problem of at most mch x nch. */
static void S(buf_sizes)(int64_t mch, int64_t nch, int64_t K,
                         size_t *asz, size_t *bsz)
{
    int64_t kc = gemm_even_block(K, GEMM_KC, 1);
    /* every row block is at most min(MC, rows); round up for the padding */
    int64_t mc = gemm_cdiv(gemm_min(GEMM_MC, mch), MR) * MR;
    /* B panels: L2-sized when every block of rows is a single one (at most
     * MC rows, see blocked), else up to NC columns; A read in place needs at
     * most GEMM_ADIRECT_PANEL bytes, less than either */
    int64_t nc = S(small_m_nc)(kc);
    if (mch > GEMM_MC && nc < GEMM_NC) nc = GEMM_NC;
    nc = gemm_cdiv(gemm_min(nc, nch), NR) * NR;
    /* whole multiples of 64 bytes, so that every buffer stays aligned */
    const size_t line = 64 / sizeof(T);
    *asz = ((size_t)(mc * kc) + GEMM_PAD + line - 1) / line * line;
    *bsz = ((size_t)(kc * nc) + GEMM_PAD + line - 1) / line * line;
}

/* Rows [m0, m1) x columns [n0, n1) of C, on the calling thread. */
static void S(blocked)(const S(gemm_job) *x, int64_t m0, int64_t m1,
                       int64_t n0, int64_t n1, T *abuf, T *bbuf)
{
    const int64_t K = x->K, ldc = x->ldc;
    const int64_t kcb = gemm_even_block(K, GEMM_KC, 1);
    const int64_t mcb = gemm_even_block(m1 - m0, GEMM_MC, MR);
    /* B read in place when each of its slivers serves few micro-tiles (few
     * rows); not when its row stride would map a sliver's rows onto a few
     * cache sets (the sliver would then be re-read from L2/L3 every tile) */
    const int64_t mc1 = m1 - m0;
    const int direct_b = !x->tb && mc1 <= n1 - n0 &&
        (mc1 <= 2 * MR || (mc1 <= GEMM_DIRECT_B_ROWS &&
                           (x->ldb * (int64_t)sizeof(T)) % 512 != 0));
    /* A read in place when each of its slivers serves few micro-tiles (few
     * columns, the whole packed B panel then stays in L2); with transa its
     * slivers are narrow column strips, worth it for fewer columns only.
     * Not when A comes packed: the packed copy is read instead. */
    const int direct_a = !direct_b && !x->ap &&
        (n1 - n0) * kcb * (int64_t)sizeof(T) <= GEMM_ADIRECT_PANEL &&
        (!x->ta || n1 - n0 <= 2 * NR);
    if (direct_a) {
        for (int64_t pc = 0; pc < K; pc += kcb) {
            const int64_t kc = gemm_min(kcb, K - pc);
            S(pack_b)(x, pc, kc, n0, n1 - n0, bbuf);
            S(macro_adirect)(x, m0, m1, pc, kc, n1 - n0, bbuf, abuf,
                             x->C + m0 * ldc + n0, pc == 0 ? x->beta : (T)1);
        }
        return;
    }
    if (mcb >= m1 - m0) {
        /* One block of rows: pack it once per k block, then stream B through
         * L2-sized panels (each packed B panel is used right away), or read
         * B in place. */
        const int64_t mc = m1 - m0;
        const int64_t ncb = gemm_even_block(n1 - n0, S(small_m_nc)(kcb), NR);
        for (int64_t pc = 0; pc < K; pc += kcb) {
            const int64_t kc = gemm_min(kcb, K - pc);
            const T beta = pc == 0 ? x->beta : (T)1;
            const T *ablk = x->ap ? x->ap + pc * gemm_cdiv(x->M, MR) * MR + m0 * kc : abuf;
            if (!x->ap) S(pack_a)(x, m0, mc, pc, kc, abuf);
            if (direct_b) {
                const int64_t nfull = (n1 - n0) / NR * NR;
                S(bview) bv;
                bv.p = x->B + pc * x->ldb + n0; bv.sl = NR; bv.ld = x->ldb;
                bv.edge = NULL;
                if (nfull < n1 - n0) {
                    S(pack_b)(x, pc, kc, n0 + nfull, n1 - n0 - nfull, bbuf);
                    bv.edge = bbuf;
                }
                S(macro)(x->isa, mc, n1 - n0, kc, ablk, &bv, x->C + m0 * ldc + n0,
                         ldc, x->alpha, beta);
                continue;
            }
            for (int64_t jc = n0; jc < n1; jc += ncb) {
                const int64_t nc = gemm_min(ncb, n1 - jc);
                S(pack_b)(x, pc, kc, jc, nc, bbuf);
                S(bview) bv = { bbuf, NR * kc, NR, NULL };
                S(macro)(x->isa, mc, nc, kc, ablk, &bv, x->C + m0 * ldc + jc,
                         ldc, x->alpha, beta);
            }
        }
        return;
    }
    /* Goto/BLIS order: a large B panel (L3) shared by every block of rows. */
    const int64_t ncb = gemm_even_block(n1 - n0, GEMM_NC, NR);
    for (int64_t jc = n0; jc < n1; jc += ncb) {
        const int64_t nc = gemm_min(ncb, n1 - jc);
        for (int64_t pc = 0; pc < K; pc += kcb) {
            const int64_t kc = gemm_min(kcb, K - pc);
            const T beta = pc == 0 ? x->beta : (T)1;
            S(pack_b)(x, pc, kc, jc, nc, bbuf);
            for (int64_t ic = m0; ic < m1; ic += mcb) {
                const int64_t mc = gemm_min(mcb, m1 - ic);
                const T *ablk = x->ap ? x->ap + pc * gemm_cdiv(x->M, MR) * MR + ic * kc : abuf;
                if (!x->ap) S(pack_a)(x, ic, mc, pc, kc, abuf);
                S(bview) bv = { bbuf, NR * kc, NR, NULL };
                S(macro)(x->isa, mc, nc, kc, ablk, &bv, x->C + ic * ldc + jc,
                         ldc, x->alpha, beta);
            }
        }
    }
}

/* ---- direct loops for tiny problems (no packing, no allocation) ---- */
GEMM_INLINE T S(dot)(int64_t n, const T *GEMM_RESTRICT x, const T *GEMM_RESTRICT y)
{
    enum { VL = 32 / (int)sizeof(T) };
    int64_t k = 0;
    T r = 0;
#if GEMM_VEC
    typedef GEMM_VT VT;
    if (n >= 4 * VL) {
        VT s0 = (VT){0}, s1 = (VT){0}, s2 = (VT){0}, s3 = (VT){0};
        for (; k + 4 * VL <= n; k += 4 * VL) {
            const VT *xv = (const VT *)(x + k), *yv = (const VT *)(y + k);
            s0 += xv[0] * yv[0]; s1 += xv[1] * yv[1];
            s2 += xv[2] * yv[2]; s3 += xv[3] * yv[3];
        }
        for (; k + VL <= n; k += VL)
            s0 += *(const VT *)(x + k) * *(const VT *)(y + k);
        s0 = (s0 + s1) + (s2 + s3);
        for (int l = 0; l < VL; l++) r += s0[l];
    }
#endif
    T t[4] = {0, 0, 0, 0};
    for (; k + 4 <= n; k += 4)
        for (int l = 0; l < 4; l++) t[l] += x[k + l] * y[k + l];
    for (; k < n; k++) t[0] += x[k] * y[k];
    return r + ((t[0] + t[1]) + (t[2] + t[3]));
}

/* C(i, j0:j0+w) = alpha * sum_k op(A)(i,k) B(k, j0:j0+w) + beta * C, the w
 * columns accumulated in registers: NV vectors of VL elements (w = NV*VL),
 * or, with NV == 0, a variable w below the vector length. */
GEMM_INLINE void S(direct_cols)(const int NV, int w, const S(gemm_job) *x,
                                int64_t i, int64_t j0)
{
    const int64_t K = x->K, ldb = x->ldb;
    const T *GEMM_RESTRICT b = x->B + j0;
    T *GEMM_RESTRICT c = x->C + i * x->ldc + j0;
    const T *ap = x->ta ? x->A + i : x->A + i * x->lda;
    const int64_t as = x->ta ? x->lda : 1;
    const T alpha = x->alpha, beta = x->beta;
#if GEMM_VEC
    if (NV) {
        typedef GEMM_VT VT;
        VT acc[8];
        for (int v = 0; v < NV; v++) acc[v] = (VT){0};
        for (int64_t k = 0; k < K; k++) {
            const T a = ap[k * as];
            const VT *bv = (const VT *)(b + k * ldb);
            for (int v = 0; v < NV; v++) acc[v] += a * bv[v];
        }
        VT *cv = (VT *)c;
        if (beta == 0)
            for (int v = 0; v < NV; v++) cv[v] = alpha * acc[v];
        else
            for (int v = 0; v < NV; v++) cv[v] = alpha * acc[v] + beta * cv[v];
        return;
    }
#endif
    enum { MAXW = 256 / (int)sizeof(T) };
    T acc[MAXW];
    if (NV) w = NV * (32 / (int)sizeof(T));
    for (int j = 0; j < w; j++) acc[j] = 0;
    for (int64_t k = 0; k < K; k++) {
        const T a = ap[k * as];
        for (int j = 0; j < w; j++) acc[j] += a * b[k * ldb + j];
    }
    if (beta == 0)
        for (int j = 0; j < w; j++) c[j] = alpha * acc[j];
    else
        for (int j = 0; j < w; j++) c[j] = alpha * acc[j] + beta * c[j];
}

GEMM_INLINE void S(direct_body)(const S(gemm_job) *x)
{
    enum { VL = 32 / (int)sizeof(T), KB = 256 };
    const int64_t M = x->M, N = x->N, K = x->K;
    const int64_t lda = x->lda, ldb = x->ldb, ldc = x->ldc;
    const T alpha = x->alpha, beta = x->beta;
    const T *A = x->A, *B = x->B;
    if (!x->tb && N >= 512 && M <= 4) {
        /* long rows (GEMV-like): stream B row by row, four rows at a time */
        for (int64_t i = 0; i < M; i++) {
            T *GEMM_RESTRICT c = x->C + i * ldc;
            const T *ap = x->ta ? A + i : A + i * lda;
            const int64_t as = x->ta ? lda : 1;
            if (beta == 0) for (int64_t j = 0; j < N; j++) c[j] = 0;
            else if (beta != 1) for (int64_t j = 0; j < N; j++) c[j] *= beta;
            int64_t k = 0;
            for (; k + 4 <= K; k += 4) {
                const T a0 = alpha * ap[k * as], a1 = alpha * ap[(k + 1) * as];
                const T a2 = alpha * ap[(k + 2) * as], a3 = alpha * ap[(k + 3) * as];
                const T *GEMM_RESTRICT b0 = B + k * ldb;
                const T *GEMM_RESTRICT b1 = b0 + ldb;
                const T *GEMM_RESTRICT b2 = b1 + ldb;
                const T *GEMM_RESTRICT b3 = b2 + ldb;
                for (int64_t j = 0; j < N; j++)
                    c[j] += (a0 * b0[j] + a1 * b1[j]) + (a2 * b2[j] + a3 * b3[j]);
            }
            for (; k < K; k++) {
                const T a0 = alpha * ap[k * as];
                const T *GEMM_RESTRICT b0 = B + k * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a0 * b0[j];
            }
        }
        return;
    }
    if (!x->tb && N >= VL) {
        for (int64_t i = 0; i < M; i++) {
            int64_t j0 = 0;
            for (; j0 + 8 * VL <= N; j0 += 8 * VL) S(direct_cols)(8, 0, x, i, j0);
            for (; j0 + 2 * VL <= N; j0 += 2 * VL) S(direct_cols)(2, 0, x, i, j0);
            for (; j0 + VL <= N; j0 += VL) S(direct_cols)(1, 0, x, i, j0);
            if (j0 < N) S(direct_cols)(0, (int)(N - j0), x, i, j0);
        }
        return;
    }
    /* dot products: C(i,j) = alpha * dot(op(A) row i, op(B) column j) + beta * C,
     * over chunks of KB k's; strided vectors are first gathered */
    for (int64_t i = 0; i < M; i++) {
        T *c = x->C + i * ldc;
        if (beta == 0) for (int64_t j = 0; j < N; j++) c[j] = 0;
        else if (beta != 1) for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
    T arow_buf[KB], bcols[VL * KB];     /* !tb here means N < VL */
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kn = gemm_min(KB, K - k0);
        if (!x->tb)
            for (int64_t j = 0; j < N; j++)
                for (int64_t k = 0; k < kn; k++) bcols[j * KB + k] = B[(k0 + k) * ldb + j];
        for (int64_t i = 0; i < M; i++) {
            T *c = x->C + i * ldc;
            const T *arow = A + i * lda + k0;
            if (x->ta) {
                for (int64_t k = 0; k < kn; k++) arow_buf[k] = A[(k0 + k) * lda + i];
                arow = arow_buf;
            }
            for (int64_t j = 0; j < N; j++) {
                const T *bcol = x->tb ? B + j * ldb + k0 : bcols + j * KB;
                c[j] += alpha * S(dot)(kn, arow, bcol);
            }
        }
    }
}

static void S(direct_c)(const S(gemm_job) *x) { S(direct_body)(x); }
#if GEMM_X86
GEMM_AVX2 static void S(direct_avx2)(const S(gemm_job) *x) { S(direct_body)(x); }
#endif

/* ---- A packed once for many products (weights) ----
 * The layout the blocked path packs into, for all rows and k blocks at
 * once: k block pc (kc = its width) at pc * roundup(M, MR), then slivers of
 * MR rows, kc * MR each. Row blocks start at multiples of MR and k blocks
 * at multiples of the block width, both functions of M and K only, so a
 * product finds its block by offset. */
size_t S(cconv_gemm_packed_a_size)(int64_t M, int64_t K)
{
    return (size_t)(gemm_cdiv(M, MR) * MR * (K > 0 ? K : 1)) + GEMM_PAD;
}

void S(cconv_gemm_pack_a)(int transa, int64_t M, int64_t K, const T *A, int64_t lda, T *ap)
{
    if (M <= 0 || K <= 0) return;
    S(gemm_job) x;
    memset(&x, 0, sizeof x);
    x.ta = transa != 0; x.M = M; x.K = K; x.A = A; x.lda = lda; x.isa = gemm_isa();
    const int64_t kcb = gemm_even_block(K, GEMM_KC, 1), mp = gemm_cdiv(M, MR) * MR;
    for (int64_t pc = 0; pc < K; pc += kcb) {
        const int64_t kc = gemm_min(kcb, K - pc);
        S(pack_a)(&x, 0, M, pc, kc, ap + pc * mp);
    }
}

void S(cconv_gemm_pack_a_block)(int64_t M, int64_t K, int64_t i0, int64_t mr, int64_t k0,
                                int64_t kn, const T *src, int64_t lds, T *ap)
{
    const int64_t kcb = gemm_even_block(K, GEMM_KC, 1), mp = gemm_cdiv(M, MR) * MR;
    for (int64_t k = k0; k < k0 + kn;) {
        const int64_t pc = k / kcb * kcb, kc = gemm_min(kcb, K - pc);
        const int64_t end = gemm_min(pc + kc, k0 + kn);
        T *dst = ap + pc * mp + i0 * kc + (k - pc) * MR;
#if GEMM_X86
        /* a whole sliver: the packing's own 8-column transposes, except for
         * the last 8 columns and the tail (each transpose stores 2 values
         * past its 8 columns: harmless only where this loop writes next) */
        if (mr == MR && end - k >= 16 && gemm_isa() == GEMM_ISA_AVX2) {
            const int64_t n8 = ((end - k) / 8 - 1) * 8;
            S(packa_rows_avx2)(n8, src + (k - k0), lds, dst, src + (k - k0));
            k += n8;
            dst += n8 * MR;
        }
#endif
        for (; k < end; ++k, dst += MR) {
            int64_t r = 0;
            for (; r < mr; ++r) dst[r] = src[r * lds + (k - k0)];
            for (; r < MR; ++r) dst[r] = 0;
        }
    }
}

static int S(gemm_impl)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                        T alpha, const T *A, int64_t lda, const T *ap, const T *B,
                        int64_t ldb, T beta, T *C, int64_t ldc, int nthreads, int blocked);

int S(cconv_gemm)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                  T alpha, const T *A, int64_t lda, const T *B, int64_t ldb,
                  T beta, T *C, int64_t ldc, int nthreads)
{
    return S(gemm_impl)(transa, transb, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C,
                        ldc, nthreads, 0);
}

/* The same product, never by the direct loops of tiny sizes: a product cut
 * into pieces (rows or columns of C per thread) then rounds every element
 * as the whole product does, whatever the pieces' sizes. */
int S(cconv_gemm_blocked)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T *A, int64_t lda, const T *B, int64_t ldb,
                          T beta, T *C, int64_t ldc, int nthreads)
{
    return S(gemm_impl)(transa, transb, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C,
                        ldc, nthreads, 1);
}

/* The same product with op(A) also given packed (ap, from cconv_gemm_pack_a
 * with the same transa, M, K, A): paths that pack A use ap instead. */
int S(cconv_gemm_pa)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                     T alpha, const T *A, int64_t lda, const T *ap, const T *B,
                     int64_t ldb, T beta, T *C, int64_t ldc, int nthreads)
{
    return S(gemm_impl)(transa, transb, M, N, K, alpha, A, lda, ap, B, ldb, beta, C,
                        ldc, nthreads, 0);
}

/* ---- entry point ---- */
static int S(gemm_impl)(int transa, int transb, int64_t M, int64_t N, int64_t K,
                        T alpha, const T *A, int64_t lda, const T *ap, const T *B,
                        int64_t ldb, T beta, T *C, int64_t ldc, int nthreads, int blocked)
{
    if (M <= 0 || N <= 0) return CCONV_OK;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++) {
            T *c = C + i * ldc;
            if (beta == 0) for (int64_t j = 0; j < N; j++) c[j] = 0;
            else if (beta != 1) for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        return CCONV_OK;
    }
    S(gemm_job) x;
    x.ta = transa != 0; x.tb = transb != 0;
    x.M = M; x.N = N; x.K = K;
    x.alpha = alpha; x.beta = beta;
    x.A = A; x.lda = lda; x.B = B; x.ldb = ldb; x.C = C; x.ldc = ldc;
    x.isa = gemm_isa();
    x.ap = ap;
    if (!A && !ap) return CCONV_EINVAL;     /* packed only needs the packed copy */

    const double work = (double)M * (double)N * (double)K;
    if (A && !blocked && (work < GEMM_DIRECT_WORK || M == 1 || N == 1)) {
        const unsigned fpm = cconv_fp_enter();
#if GEMM_X86
        if (x.isa == GEMM_ISA_AVX2) S(direct_avx2)(&x);
        else
#endif
        S(direct_c)(&x);
        cconv_fp_leave(fpm);
        return CCONV_OK;
    }

    int nt = 1;
#ifdef _OPENMP
    if (nthreads > 1) {
        double useful = work / GEMM_WORK_PER_THREAD;
        nt = useful < (double)nthreads ? (int)useful : nthreads;
        if (nt < 1) nt = 1;
    }
#else
    (void)nthreads;
#endif
    int tm = 1, tn = 1;
    int64_t mch = M, nch = N;
    if (nt > 1) gemm_grid(nt, M, N, K, MR, NR, &tm, &tn, &mch, &nch);
    nt = tm * tn;

    size_t asz, bsz;
    S(buf_sizes)(mch, nch, K, &asz, &bsz);
    T *buf = (T *)gemm_amalloc((asz + bsz) * (size_t)nt * sizeof(T));
    if (!buf) return CCONV_ENOMEM;

    const unsigned fpm = cconv_fp_enter();
    if (nt == 1) {
        S(blocked)(&x, 0, M, 0, N, buf, buf + asz);
    } else {
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt)
        {
            const unsigned tfpm = cconv_fp_enter();
            const int tid = omp_get_thread_num();
            const int team = omp_get_num_threads();
            T *abuf = buf + (size_t)tid * (asz + bsz);
            T *bbuf = abuf + asz;
            for (int blk = tid; blk < nt; blk += team) {
                const int64_t m0 = (int64_t)(blk / tn) * mch;
                const int64_t n0 = (int64_t)(blk % tn) * nch;
                const int64_t m1 = gemm_min(M, m0 + mch);
                const int64_t n1 = gemm_min(N, n0 + nch);
                if (m0 < m1 && n0 < n1) S(blocked)(&x, m0, m1, n0, n1, abuf, bbuf);
            }
            cconv_fp_leave(tfpm);
        }
#endif
    }
    cconv_fp_leave(fpm);
    gemm_afree(buf);
    return CCONV_OK;
}

#undef T
#undef S
#undef MR
#undef NR

#endif /* GEMM_T */
