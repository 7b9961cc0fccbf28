/* Image filtering: 2-D correlation of channel-interleaved images with one
 * kernel, any border rule of scipy.ndimage, direct or separable.
 *
 * Each thread takes a contiguous block of output rows. The interior of each
 * output row is computed from the input rows in place; only the few columns
 * at the left and right edges read padded copies of the rows' ends, kept in a
 * ring of kh + 1 slots (separable: the ring holds the horizontally filtered
 * rows), so every input row is extended or filtered once and nothing like a
 * padded copy of the image is made. 8/16-bit integer images are converted
 * row by row into the ring, integer outputs rounded and clipped row by row.
 * Output rows are computed in pairs, register-blocked (see filter_impl.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cconv_core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__) && !defined(CCONV_NO_CLONES)
#include <immintrin.h>
#define FILTER_X86 1
#define FILTER_AVX2 __attribute__((target("avx2,fma")))

static int filter_have_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

/* unrolled paths for 3x3 kernels of these shapes, and the kinds of taps in a
 * list for two output rows (filter_impl.h) */
enum { FIXED_NONE = 0, FIXED_K3 = 1, FIXED_K3CROSS = 2 };
enum { TAP_BOTH = 0, TAP_FIRST = 1, TAP_SECOND = 2 };

/* Loops of the type conversions in filter_impl.h (one per integer type). */
#define CONVERT_IN_LOOP(ctype)                                                    \
    {                                                                             \
        const ctype *s = (const ctype *)src;                                      \
        for (int64_t i = 0; i < n; ++i) dst[i] = (T)s[i];                         \
        break;                                                                    \
    }
#define CONVERT_OUT_LOOP(ctype, lo, hi)                                           \
    {                                                                             \
        ctype *d = (ctype *)dst;                                                  \
        for (int64_t i = 0; i < n; ++i) {                                         \
            T v = src[i];                                                         \
            v = v > (T)(lo) ? v : (T)(lo);      /* maxps: NaN gives lo */         \
            v = v < (T)(hi) ? v : (T)(hi);                                        \
            d[i] = (ctype)(int32_t)RINT_T(v);                                     \
        }                                                                         \
        break;                                                                    \
    }

#ifndef INT64_MIN
#define INT64_MIN (-INT64_MAX - 1)
#endif

int64_t cconv_border_index(int64_t i, int64_t n, int border)
{
    if (i >= 0 && i < n) return i;
    int64_t m, period;
    switch (border) {
    case CCONV_BORDER_NEAREST:
        return i < 0 ? 0 : n - 1;
    case CCONV_BORDER_WRAP:
        m = i % n;
        return m < 0 ? m + n : m;
    case CCONV_BORDER_REFLECT:          /* period 2n: a b c d d c b a */
        period = 2 * n;
        m = i % period;
        if (m < 0) m += period;
        return m < n ? m : period - 1 - m;
    case CCONV_BORDER_MIRROR:           /* period 2n - 2: a b c d c b */
        if (n == 1) return 0;
        period = 2 * n - 2;
        m = i % period;
        if (m < 0) m += period;
        return m < n ? m : period - m;
    default:
        return -1;
    }
}

int cconv_filter2d_check(const cconv_filter2d_params *p)
{
    if (p->n < 0 || p->h < 1 || p->w < 1 || p->c < 1 || p->kh < 1 || p->kw < 1 ||
        p->anchor_h < 0 || p->anchor_h >= p->kh || p->anchor_w < 0 ||
        p->anchor_w >= p->kw || p->out_h < 1 || p->out_w < 1 ||
        p->border < CCONV_BORDER_CONSTANT || p->border > CCONV_BORDER_WRAP ||
        p->in_type < CCONV_DT_COMPUTE || p->in_type > CCONV_DT_I16 ||
        p->out_type < CCONV_DT_COMPUTE || p->out_type > CCONV_DT_I16)
        return CCONV_EINVAL;
    return CCONV_OK;
}

#define T float
#define SFX(name) name##_f32
#define FMA_T fmaf
#define RINT_T rintf
#ifdef FILTER_X86
#define V __m256
#define VL 8
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
#endif
#include "filter_impl.h"
#undef T
#undef SFX
#undef FMA_T
#undef RINT_T
#undef V
#undef VL
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VFMA
#undef VZERO

#define T double
#define SFX(name) name##_f64
#define FMA_T fma
#define RINT_T rint
#ifdef FILTER_X86
#define V __m256d
#define VL 4
#define VLOAD _mm256_loadu_pd
#define VSTORE _mm256_storeu_pd
#define VSET1 _mm256_set1_pd
#define VFMA _mm256_fmadd_pd
#define VZERO _mm256_setzero_pd
#endif
#include "filter_impl.h"
#undef T
#undef SFX
#undef FMA_T
#undef RINT_T
#undef V
#undef VL
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VFMA
#undef VZERO

int cconv_filter2d_f32(const cconv_filter2d_params *p, const void *x,
                       const float *k, void *y, int nthreads)
{
    if (!k) return CCONV_EINVAL;
    return filter2d_impl_f32(p, x, k, NULL, NULL, y, nthreads);
}

int cconv_filter2d_f64(const cconv_filter2d_params *p, const void *x,
                       const double *k, void *y, int nthreads)
{
    if (!k) return CCONV_EINVAL;
    return filter2d_impl_f64(p, x, k, NULL, NULL, y, nthreads);
}

int cconv_sepfilter2d_f32(const cconv_filter2d_params *p, const void *x,
                          const float *kcol, const float *krow, void *y,
                          int nthreads)
{
    if (!kcol || !krow) return CCONV_EINVAL;
    return filter2d_impl_f32(p, x, NULL, kcol, krow, y, nthreads);
}

int cconv_sepfilter2d_f64(const cconv_filter2d_params *p, const void *x,
                          const double *kcol, const double *krow, void *y,
                          int nthreads)
{
    if (!kcol || !krow) return CCONV_EINVAL;
    return filter2d_impl_f64(p, x, NULL, kcol, krow, y, nthreads);
}
