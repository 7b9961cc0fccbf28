/* Standalone test of cconv_gemm_f32 / cconv_gemm_f64 against a naive triple
 * loop in double. Build and run from the repository root:
 *   gcc -O2 -fopenmp -Isrc/cconv/_core src/cconv/_core/gemm.c \
 *       src/cconv/_core/tests/test_gemm.c -o /tmp/test_gemm -lm && /tmp/test_gemm
 * (or `make -C src/cconv/_core/tests`). Every case runs with the dispatched
 * kernels (AVX2 where the CPU has it) and with the portable ones, with 1 and
 * 2 threads. `test_gemm -q` runs a shorter random sweep; `test_gemm bench`
 * prints the speed (median GFLOP/s, 1 and 2 threads) on the shapes of 3x3
 * convolutions (build it with -O3 -fno-math-errno -fopenmp for that). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cconv_core.h"

int cconv_gemm_redispatch_(void);   /* internal hook in gemm.c */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)           /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)((urand() + 1.0) * 0.5 * (double)(hi - lo + 1)) % (hi - lo + 1); }

static long n_cases = 0, n_fail = 0;

/* Reference: C = alpha * op(A) op(B) + beta * C, in double (beta == 0: C not read). */
static void ref_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            C[i * ldc + j] = beta == 0 ? alpha * s : alpha * s + beta * C[i * ldc + j];
        }
}

/* 1: every product runs through cconv_gemm_pack_a + cconv_gemm_pa instead;
 * 2: (not transposed A) A packed by cconv_gemm_pack_a_block, in slivers and
 * ragged column chunks that cross the k blocks, and passed packed only */
static int use_pa = 0;

#define DEFINE_PA(T, SFX)                                                          \
static int gemm_pa_##SFX(int ta, int tb, int64_t M, int64_t N, int64_t K, T alpha, \
                         const T *A, int64_t lda, const T *B, int64_t ldb, T beta, \
                         T *C, int64_t ldc, int nt)                                \
{                                                                                  \
    T *ap = malloc(cconv_gemm_packed_a_size_##SFX(M, K) * sizeof(T));              \
    if (!ap) return CCONV_ENOMEM;                                                  \
    const T *a_arg = A;                                                            \
    if (use_pa == 2 && !ta && M > 0 && K > 0) {                                    \
        for (int64_t i0 = 0; i0 < M; i0 += CCONV_GEMM_MR) {                        \
            const int64_t mr = M - i0 < CCONV_GEMM_MR ? M - i0 : CCONV_GEMM_MR;    \
            for (int64_t k0 = 0; k0 < K; k0 += 37) {                               \
                const int64_t kn = K - k0 < 37 ? K - k0 : 37;                      \
                cconv_gemm_pack_a_block_##SFX(M, K, i0, mr, k0, kn,                \
                                              A + i0 * lda + k0, lda, ap);         \
            }                                                                      \
        }                                                                          \
        a_arg = NULL;                                                              \
    } else {                                                                       \
        cconv_gemm_pack_a_##SFX(ta, M, K, A, lda, ap);                             \
    }                                                                              \
    int rc = cconv_gemm_pa_##SFX(ta, tb, M, N, K, alpha, a_arg, lda, ap, B, ldb,   \
                                 beta, C, ldc, nt);                                \
    free(ap);                                                                      \
    return rc;                                                                     \
}
DEFINE_PA(float, f32)
DEFINE_PA(double, f64)

#define DEFINE_CHECK(T, SFX, GEMM, EPS)                                            \
static int check_##SFX(int ta, int tb, int64_t M, int64_t N, int64_t K,            \
                       int64_t pa, int64_t pb, int64_t pc, double alpha,           \
                       double beta, int nthreads, int special)                     \
{                                                                                  \
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;    \
    int64_t lda = ac + pa, ldb = bc + pb, ldc = N + pc;                            \
    size_t na = (size_t)(ar * lda) + 1, nb = (size_t)(br * ldb) + 1;               \
    size_t nc = (size_t)(M * ldc) + 1;                                             \
    T *A = malloc(na * sizeof(T)), *B = malloc(nb * sizeof(T));                    \
    T *C = malloc(nc * sizeof(T));                                                 \
    double *Ad = malloc(na * sizeof(double)), *Bd = malloc(nb * sizeof(double));   \
    double *Cd = malloc(nc * sizeof(double));                                      \
    for (size_t i = 0; i < na; i++) Ad[i] = (double)(A[i] = (T)urand());           \
    for (size_t i = 0; i < nb; i++) Bd[i] = (double)(B[i] = (T)urand());           \
    for (size_t i = 0; i < nc; i++)                                                \
        Cd[i] = (double)(C[i] = beta == 0 ? (T)NAN : (T)urand());                  \
    /* special: put an inf in A and a NaN in B to check propagation */             \
    int64_t si = -1, sj = -1;                                                      \
    if (special && M > 0 && N > 0 && K > 0) {                                      \
        si = irand(0, M - 1); sj = irand(0, N - 1);                                \
        int64_t k1 = irand(0, K - 1), k2 = irand(0, K - 1);                        \
        int64_t ia = ta ? k1 * lda + si : si * lda + k1;                           \
        int64_t ib = tb ? sj * ldb + k2 : k2 * ldb + sj;                           \
        A[ia] = (T)INFINITY; Ad[ia] = INFINITY;                                    \
        B[ib] = (T)NAN; Bd[ib] = NAN;                                              \
    }                                                                              \
    int rc = (use_pa ? gemm_pa_##SFX : GEMM)(ta, tb, M, N, K, (T)alpha, A, lda, B, \
                                             ldb, (T)beta, C, ldc, nthreads);     \
    ref_gemm(ta, tb, M, N, K, (double)(T)alpha, Ad, lda, Bd, ldb, (double)(T)beta, \
             Cd, ldc);                                                             \
    int bad = rc != CCONV_OK;                                                      \
    double maxerr = 0;                                                             \
    double tol = EPS * (double)(K + 4) * 4.0;                                      \
    for (int64_t i = 0; i < M && !bad; i++)                                        \
        for (int64_t j = 0; j < ldc; j++) {                                        \
            double got = (double)C[i * ldc + j], want = Cd[i * ldc + j];           \
            if (j >= N) {  /* padding must be untouched */                         \
                if (memcmp(&C[i * ldc + j], &(T){(T)want}, sizeof(T)) &&           \
                    !(isnan(got) && isnan(want))) { bad = 1; break; }              \
                continue;                                                          \
            }                                                                      \
            if (isnan(want) || isinf(want)) {                                      \
                /* a NaN/inf reference: the result must not be finite */          \
                if (isfinite(got)) { bad = 1; break; }                             \
                continue;                                                          \
            }                                                                      \
            double scale = fabs(alpha) * (double)K + fabs(beta) + 1.0;             \
            double e = fabs(got - want) / scale;                                   \
            if (!(e <= tol)) { bad = 1; maxerr = e; break; }                       \
            if (e > maxerr) maxerr = e;                                            \
        }                                                                          \
    /* the element after the last row must be untouched too */                     \
    if (!bad && (double)C[nc - 1] != Cd[nc - 1] &&                                 \
        !(isnan((double)C[nc - 1]) && isnan(Cd[nc - 1]))) bad = 1;                 \
    n_cases++;                                                                     \
    if (bad) {                                                                     \
        n_fail++;                                                                  \
        if (n_fail < 20)                                                           \
            printf("FAIL %s ta=%d tb=%d M=%lld N=%lld K=%lld pad=%lld,%lld,%lld "   \
                   "alpha=%g beta=%g nt=%d special=%d rc=%d err=%g\n", #SFX, ta, tb, \
                   (long long)M, (long long)N, (long long)K, (long long)pa,        \
                   (long long)pb, (long long)pc, alpha, beta, nthreads, special,   \
                   rc, maxerr);                                                    \
    }                                                                              \
    free(A); free(B); free(C); free(Ad); free(Bd); free(Cd);                       \
    return !bad;                                                                   \
}

DEFINE_CHECK(float, f32, cconv_gemm_f32, 6e-8)
DEFINE_CHECK(double, f64, cconv_gemm_f64, 1.2e-16)

static void run_case(int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t pa,
                     int64_t pb, int64_t pc, double alpha, double beta, int nt,
                     int special)
{
    check_f32(ta, tb, M, N, K, pa, pb, pc, alpha, beta, nt, special);
    check_f64(ta, tb, M, N, K, pa, pb, pc, alpha, beta, nt, special);
}

static void sweep(int quick)
{
    static const double alphas[] = {1.0, -0.5, 2.0};
    static const double betas[] = {0.0, 1.0, 0.75};
    /* every small size, minimal strides, all trans, a few alpha/beta */
    int lim = quick ? 20 : 40;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int64_t M = 1; M <= lim; M += (quick ? 3 : 1))
                for (int64_t N = 1; N <= lim; N += (quick ? 5 : 3)) {
                    int64_t K = irand(1, 70);
                    int ab = (int)((M + N) % 3);
                    for (int nt = 1; nt <= 2; nt++)
                        run_case(ta, tb, M, N, K, 0, 0, 0, alphas[ab], betas[(M * N) % 3], nt, 0);
                }
    /* random sizes in 1..~300 with padded strides and K across the KC blocks */
    int nrand = quick ? 150 : 600;
    for (int r = 0; r < nrand; r++) {
        int ta = r & 1, tb = (r >> 1) & 1;
        int64_t M = irand(1, r % 5 == 0 ? 300 : 70), N = irand(1, r % 7 == 0 ? 300 : 70);
        int64_t K = irand(0, r % 3 == 0 ? 600 : 70);
        int64_t pa = irand(0, 3) ? irand(0, 9) : 0, pb = irand(0, 9), pc = irand(0, 9);
        double alpha = urand() * 2, beta = (r % 3 == 0) ? 0.0 : urand();
        run_case(ta, tb, M, N, K, pa, pb, pc, alpha, beta, 1 + (r % 2), r % 11 == 0);
    }
}

static void big(void)
{
    /* shapes of 3x3 convolutions (scaled down) and odd large ones, 1 and 2 threads */
    static const int64_t shapes[][3] = {
        {64, 400, 576}, {128, 196, 1152}, {67, 131, 300}, {150, 4100, 9},
        {13, 5000, 37}, {300, 17, 700}, {1, 1000, 300}, {1000, 1, 300},
        {97, 83, 2049}, {145, 4097, 3}, {6, 576, 25}, {16, 64, 150},
        /* one per code path of the blocked driver: B read in place, A read
         * in place, one block of rows, Goto/BLIS order */
        {30, 500, 40}, {128, 196, 300}, {64, 1000, 100}, {300, 1100, 70},
        {1, 3000, 130}, {3, 600, 5}, {2000, 1, 77},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int nt = 1; nt <= 2; nt++)
                    run_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 3, 5, 7,
                             nt == 1 ? 1.0 : -1.25, (s + ta + tb) % 2 ? 0.0 : 0.5, nt,
                             s % 3 == 0);
}

static void strides(void)
{
    /* row strides that are multiples of 512 bytes (B is then packed) */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int nt = 1; nt <= 2; nt++) {
                run_case(ta, tb, 20, 123, 60, 0, 5, 5, nt == 1 ? 1.0 : 0.5, 0.0, nt, 0);
                run_case(ta, tb, 20, 256, 60, 0, 0, 0, 1.0, 1.0, nt, 0);
                run_case(ta, tb, 70, 256, 128, 0, 0, 0, 1.0, 0.0, nt, 0);
            }
}

static void threads(void)
{
    /* more threads than cores, odd thread counts, thread grids of all shapes */
    static const int64_t shapes[][3] = {
        {200, 300, 100}, {13, 2000, 90}, {700, 20, 150}, {64, 577, 300}, {9, 9, 40000},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int nt = 3; nt <= 7; nt += 2)
            run_case((int)s & 1, (int)(s >> 1) & 1, shapes[s][0], shapes[s][1],
                     shapes[s][2], 1, 2, 3, 1.0, s % 2 ? 0.0 : -1.0, nt, 0);
}

static void edge(void)
{
    /* empty dimensions */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            run_case(ta, tb, 5, 7, 0, 1, 1, 1, 1.0, 0.0, 1, 0);
            run_case(ta, tb, 5, 7, 0, 1, 1, 1, 1.0, 0.5, 2, 0);
            run_case(ta, tb, 0, 7, 3, 0, 0, 0, 1.0, 0.5, 1, 0);
            run_case(ta, tb, 5, 0, 3, 0, 0, 0, 1.0, 0.5, 1, 0);
            run_case(ta, tb, 130, 70, 40, 0, 0, 0, 1.0, 0.0, 2, 1);
        }
    /* M = N = K = 0 with NULL pointers */
    float c32 = 1; double c64 = 1;
    n_cases += 2;
    if (cconv_gemm_f32(0, 0, 0, 0, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, &c32, 1, 2) != 0 ||
        cconv_gemm_f64(1, 1, 0, 0, 0, 1.0, NULL, 1, NULL, 1, 0.0, &c64, 1, 2) != 0 ||
        c32 != 1 || c64 != 1) {
        n_fail++; printf("FAIL empty\n");
    }
}

/* ---- `test_gemm bench`: GFLOP/s of the shapes of 3x3 convolutions ---- */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench(void)
{
    static const int64_t shapes[][5] = {   /* transa, transb, M, N, K */
        {0, 0, 64, 3136, 576}, {0, 0, 128, 784, 1152}, {0, 0, 256, 196, 2304},
        {0, 0, 64, 3136, 64}, {1, 0, 576, 3136, 64}, {0, 1, 64, 576, 3136},
        {0, 0, 256, 32, 2304}, {0, 0, 6, 576, 25}, {0, 0, 16, 64, 150},
    };
    for (int dt = 0; dt < 2; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int ta = (int)shapes[s][0], tb = (int)shapes[s][1];
            int64_t M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
            size_t es = dt ? sizeof(double) : sizeof(float);
            void *A = malloc((size_t)(M * K) * es), *B = malloc((size_t)(K * N) * es);
            void *C = malloc((size_t)(M * N) * es);
            for (int64_t i = 0; i < M * K; i++)
                if (dt) ((double *)A)[i] = urand(); else ((float *)A)[i] = (float)urand();
            for (int64_t i = 0; i < K * N; i++)
                if (dt) ((double *)B)[i] = urand(); else ((float *)B)[i] = (float)urand();
            double flop = 2.0 * (double)M * (double)N * (double)K;
            long rep = 1 + (long)(3e7 / flop);
            printf("%s ta=%d tb=%d M=%4lld N=%4lld K=%4lld:", dt ? "f64" : "f32", ta, tb,
                   (long long)M, (long long)N, (long long)K);
            for (int nt = 1; nt <= 2; nt++) {
                double g[15];
                for (int r = 0; r < 15; r++) {
                    double t = now_s();
                    for (long q = 0; q < rep; q++) {
                        if (dt) cconv_gemm_f64(ta, tb, M, N, K, 1.0, A, ta ? M : K, B,
                                               tb ? K : N, 0.0, C, N, nt);
                        else cconv_gemm_f32(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B,
                                            tb ? K : N, 0.0f, C, N, nt);
                    }
                    g[r] = flop * (double)rep / (now_s() - t) / 1e9;
                }
                qsort(g, 15, sizeof g[0], cmp_dbl);
                printf("  %d thread%s %6.1f GFLOP/s", nt, nt > 1 ? "s" : " ", g[7]);
            }
            printf("\n");
            fflush(stdout);
            free(A); free(B); free(C);
        }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "bench") == 0) { bench(); return 0; }
    int quick = argc > 1 && strcmp(argv[1], "-q") == 0;
    for (int pass = 0; pass < 6; pass++) {
        /* passes 2 and 3: A packed ahead (cconv_gemm_pa); 4 and 5: packed
         * block by block and passed packed only */
        use_pa = pass / 2;
        if (pass % 2 == 0) unsetenv("CCONV_GEMM_PORTABLE");
        else setenv("CCONV_GEMM_PORTABLE", "1", 1);
        int isa = cconv_gemm_redispatch_();
        long before = n_fail, cases = n_cases;
        edge();
        strides();
        threads();
        sweep(quick);
        big();
        printf("%s kernels%s: %ld cases, %ld failures\n", isa ? "AVX2" : "portable",
               use_pa == 2 ? ", A packed by blocks only" : use_pa ? ", A packed ahead" : "",
               n_cases - cases, n_fail - before);
    }
    unsetenv("CCONV_GEMM_PORTABLE");
    cconv_gemm_redispatch_();
    printf("%s\n", n_fail ? "FAILED" : "OK");
    return n_fail ? 1 : 0;
}
