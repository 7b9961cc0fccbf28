/* Symmetric eigensolver for the C API (cconv_eigh): a portable reference that
 * needs no LAPACK, so that C programs linking the static library have one.
 * Python's cconv.linalg.eigh uses LAPACK instead, which is much faster.
 *
 * Algorithm (EISPACK tred2 + tql2, in the form of the public-domain JAMA
 * library): Householder reduction of A to a tridiagonal T = Q^T A Q with Q
 * accumulated, then the implicit QL algorithm with Wilkinson-type shifts on T,
 * each Givens rotation applied to Q. Everything is computed in double, also
 * for float input. O(n^3) time, n^2 + 2n doubles of work memory, serial.
 *
 * Storage: V (n x n, row-major) holds A and then Q during tred2; it is then
 * transposed so that tql2's rotations act on two contiguous rows (the rows
 * of Z = Q^T are the eigenvectors). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cconv_core.h"

/* Householder tridiagonalisation (tred2). On entry V holds the symmetric
 * matrix (the lower triangle is used); on exit V holds Q, d the diagonal of
 * T and e its subdiagonal in e[1..n-1]. */
static void tred2(int64_t n, double *V, double *d, double *e)
{
#define A(i, j) V[(i) * n + (j)]
    for (int64_t j = 0; j < n; ++j) d[j] = A(n - 1, j);
    for (int64_t i = n - 1; i > 0; --i) {
        /* scale the row to avoid under/overflow */
        double scale = 0.0, h = 0.0;
        for (int64_t k = 0; k < i; ++k) scale += fabs(d[k]);
        if (scale == 0.0) {
            e[i] = d[i - 1];
            for (int64_t j = 0; j < i; ++j) {
                d[j] = A(i - 1, j);
                A(i, j) = 0.0;
                A(j, i) = 0.0;
            }
        } else {
            /* Householder vector */
            for (int64_t k = 0; k < i; ++k) {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            double f = d[i - 1];
            double g = sqrt(h);
            if (f > 0) g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int64_t j = 0; j < i; ++j) e[j] = 0.0;
            /* similarity transformation of the remaining columns */
            for (int64_t j = 0; j < i; ++j) {
                f = d[j];
                A(j, i) = f;
                g = e[j] + A(j, j) * f;
                for (int64_t k = j + 1; k <= i - 1; ++k) {
                    g += A(k, j) * d[k];
                    e[k] += A(k, j) * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for (int64_t j = 0; j < i; ++j) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            const double hh = f / (h + h);
            for (int64_t j = 0; j < i; ++j) e[j] -= hh * d[j];
            for (int64_t j = 0; j < i; ++j) {
                f = d[j];
                g = e[j];
                for (int64_t k = j; k <= i - 1; ++k) A(k, j) -= (f * e[k] + g * d[k]);
                d[j] = A(i - 1, j);
                A(i, j) = 0.0;
            }
        }
        d[i] = h;
    }
    /* accumulate the transformations into Q */
    for (int64_t i = 0; i < n - 1; ++i) {
        A(n - 1, i) = A(i, i);
        A(i, i) = 1.0;
        const double h = d[i + 1];
        if (h != 0.0) {
            for (int64_t k = 0; k <= i; ++k) d[k] = A(k, i + 1) / h;
            for (int64_t j = 0; j <= i; ++j) {
                double g = 0.0;
                for (int64_t k = 0; k <= i; ++k) g += A(k, i + 1) * A(k, j);
                for (int64_t k = 0; k <= i; ++k) A(k, j) -= g * d[k];
            }
        }
        for (int64_t k = 0; k <= i; ++k) A(k, i + 1) = 0.0;
    }
    for (int64_t j = 0; j < n; ++j) {
        d[j] = A(n - 1, j);
        A(n - 1, j) = 0.0;
    }
    A(n - 1, n - 1) = 1.0;
    e[0] = 0.0;
#undef A
}

/* Implicit QL with shifts (tql2) on the tridiagonal (d, e) from tred2; the
 * rotations update the rows of Z (= Q^T) when Z != NULL. On exit d holds the
 * eigenvalues ascending and row i of Z the eigenvector of d[i]. */
static int tql2(int64_t n, double *d, double *e, double *Z)
{
    const double eps = 2.220446049250313e-16;   /* 2^-52 */
    /* LAPACK's limit: 30 sweeps per eigenvalue on average */
    const int64_t max_iter = 30 * n + 30;
    int64_t iters = 0;
    for (int64_t i = 1; i < n; ++i) e[i - 1] = e[i];
    e[n - 1] = 0.0;
    double f = 0.0, tst1 = 0.0;
    for (int64_t l = 0; l < n; ++l) {
        /* find a negligible subdiagonal element */
        const double t = fabs(d[l]) + fabs(e[l]);
        if (t > tst1) tst1 = t;
        int64_t m = l;
        while (m < n - 1 && !(fabs(e[m]) <= eps * tst1)) ++m;
        if (m > l) {
            do {
                if (++iters > max_iter) return CCONV_ENOCONV;
                /* implicit shift */
                double g = d[l];
                double p = (d[l + 1] - g) / (2.0 * e[l]);
                double r = hypot(p, 1.0);
                if (p < 0) r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                const double dl1 = d[l + 1];
                double h = g - d[l];
                for (int64_t i = l + 2; i < n; ++i) d[i] -= h;
                f += h;
                /* implicit QL transformation */
                p = d[m];
                double c = 1.0, c2 = 1.0, c3 = 1.0, s = 0.0, s2 = 0.0;
                const double el1 = e[l + 1];
                for (int64_t i = m - 1; i >= l; --i) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if (Z) {
                        double *zi = Z + i * n, *zi1 = zi + n;
                        for (int64_t k = 0; k < n; ++k) {
                            const double zk = zi1[k];
                            zi1[k] = s * zi[k] + c * zk;
                            zi[k] = c * zi[k] - s * zk;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (!(fabs(e[l]) <= eps * tst1));
        }
        d[l] += f;
        e[l] = 0.0;
    }
    /* sort ascending (selection sort: n swaps of eigenvector rows at most) */
    for (int64_t i = 0; i < n - 1; ++i) {
        int64_t k = i;
        double p = d[i];
        for (int64_t j = i + 1; j < n; ++j)
            if (d[j] < p) { k = j; p = d[j]; }
        if (k != i) {
            d[k] = d[i];
            d[i] = p;
            if (Z) {
                double *zi = Z + i * n, *zk = Z + k * n;
                for (int64_t j = 0; j < n; ++j) {
                    const double tmp = zi[j];
                    zi[j] = zk[j];
                    zk[j] = tmp;
                }
            }
        }
    }
    return CCONV_OK;
}

/* Work memory: V (n*n), d (n), e (n). V must already hold the full symmetric
 * matrix; on success d holds the eigenvalues and the rows of V the vectors. */
static int eigh_work(int64_t n, double *V, double *d, double *e, int want_vectors)
{
    tred2(n, V, d, e);
    if (want_vectors) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = i + 1; j < n; ++j) {
                const double t = V[i * n + j];
                V[i * n + j] = V[j * n + i];
                V[j * n + i] = t;
            }
    }
    return tql2(n, d, e, want_vectors ? V : NULL);
}

/* Power of two near the max |entry|: dividing by it is exact, and the solver then
 * works on entries < 2 (tred2's row sums overflow near 1e308 otherwise). */
static double eigh_scale(int64_t n, const double *V)
{
    double amax = 0.0;
    for (int64_t i = 0; i < n * n; ++i) amax = fmax(amax, fabs(V[i]));
    if (amax == 0.0) return 1.0;
    int e;
    frexp(amax, &e);             /* amax = m 2^e, 0.5 <= m < 1 */
    return ldexp(1.0, e - 1);    /* 2^e overflows for amax near DBL_MAX */
}

#define EIGH_BODY(T, T_MAX)                                                        \
    double *V = (double *)malloc(((size_t)n * (size_t)n + 2 * (size_t)n) * sizeof(double)); \
    if (!V) return CCONV_ENOMEM;                                                   \
    double *d = V + n * n, *e = d + n;                                             \
    for (int64_t i = 0; i < n; ++i)                                                \
        for (int64_t j = 0; j <= i; ++j) {                                         \
            const double x = upper ? (double)a[j * lda + i] : (double)a[i * lda + j]; \
            if (!isfinite(x)) { free(V); return CCONV_ENOCONV; }                  \
            V[i * n + j] = V[j * n + i] = x;                                       \
        }                                                                          \
    const double scale = eigh_scale(n, V);                                         \
    for (int64_t i = 0; i < n * n; ++i) V[i] /= scale;                             \
    int st = eigh_work(n, V, d, e, v != NULL);                                     \
    if (st == CCONV_OK)                                                            \
        for (int64_t i = 0; i < n; ++i) {                                          \
            /* |w| <= n * max|a|: it can exceed the type's range */                \
            if (!(fabs(d[i]) <= (double)(T_MAX) / scale)) { st = CCONV_ERANGE; break; } \
            d[i] *= scale;                                                         \
        }                                                                          \
    if (st == CCONV_OK) {                                                          \
        for (int64_t i = 0; i < n; ++i) w[i] = (T)d[i];                            \
        if (v)                                                                     \
            for (int64_t i = 0; i < n; ++i)                                        \
                for (int64_t j = 0; j < n; ++j) v[i * n + j] = (T)V[j * n + i];    \
    }                                                                              \
    free(V);                                                                       \
    return st;

int cconv_eigh_f32(int64_t n, const float *a, int64_t lda, int upper, float *w, float *v)
{
    EIGH_BODY(float, FLT_MAX)
}

int cconv_eigh_f64(int64_t n, const double *a, int64_t lda, int upper, double *w,
                   double *v)
{
    EIGH_BODY(double, DBL_MAX)
}
