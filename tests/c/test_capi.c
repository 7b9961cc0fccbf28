/* Test of cconv's public C API (include/cconv.h) from C:
 *   1. bad arguments of every function give the documented status code and
 *      leave the outputs untouched;
 *   2. every operation agrees with a naive reference on random shapes
 *      (f32 and f64, 1 and 2 threads), so that a sanitizer build runs all
 *      kernels through the API;
 *   3. threads calling kernels at once while another changes the default
 *      thread count get the serial result.
 * Built and run by tests/test_capi.py (also with -fsanitize=address,undefined,
 * and by .ci/sanitize.sh):
 *   cc -O1 tests/c/test_capi.c -o /tmp/test_capi $(python -m cconv --cflags --libs) -pthread
 * Prints "test_capi: N checks, 0 failures" and exits 0 when all pass. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cconv.h>

static long n_checks = 0, n_fail = 0;

#define EXPECT(cond)                                                             \
    do {                                                                         \
        ++n_checks;                                                              \
        if (!(cond)) {                                                           \
            ++n_fail;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
        }                                                                        \
    } while (0)

/* call returns the status `want` */
#define EXPECT_STATUS(want, call)                                                \
    do {                                                                         \
        int got_ = (call);                                                       \
        ++n_checks;                                                              \
        if (got_ != (want)) {                                                    \
            ++n_fail;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s returned %d (%s), expected %s\n",    \
                    __FILE__, __LINE__, #call, got_, cconv_strerror(got_), #want); \
        }                                                                        \
    } while (0)

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void)                /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static int64_t irand(int64_t lo, int64_t hi) /* in [lo, hi] */
{
    return lo + (int64_t)((urand() + 1.0) * 0.5 * (double)(hi - lo + 1)) % (hi - lo + 1);
}

/* Buffers hold doubles; f32 calls use a float copy. */
typedef struct { int dtype; int64_t n; void *p; } buf;

static buf make(int dtype, int64_t n)
{
    buf b;
    b.dtype = dtype;
    b.n = n;
    b.p = calloc((size_t)(n > 0 ? n : 1), dtype == CCONV_FLOAT32 ? sizeof(float) : sizeof(double));
    if (!b.p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return b;
}
static double get(const buf *b, int64_t i)
{
    return b->dtype == CCONV_FLOAT32 ? (double)((float *)b->p)[i] : ((double *)b->p)[i];
}
static void set(buf *b, int64_t i, double v)
{
    if (b->dtype == CCONV_FLOAT32) ((float *)b->p)[i] = (float)v;
    else ((double *)b->p)[i] = v;
}
static buf randbuf(int dtype, int64_t n)
{
    buf b = make(dtype, n);
    for (int64_t i = 0; i < n; ++i) set(&b, i, urand());
    return b;
}
static void fill(buf *b, double v) { for (int64_t i = 0; i < b->n; ++i) set(b, i, v); }
static int all_equal(const buf *b, double v)
{
    for (int64_t i = 0; i < b->n; ++i) if (get(b, i) != v) return 0;
    return 1;
}
/* max |got - ref| relative to max |ref| (1 when ref is 0) */
static double rel_err(const buf *got, const double *ref, int64_t n)
{
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double g = get(got, i);
        const double d = g == ref[i] ? 0.0 : fabs(g - ref[i]);   /* -inf == -inf */
        if (!(d <= err)) err = d;
        if (isfinite(ref[i]) && fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return err / (scale > 0 ? scale : 1.0);
}
static double tol(int dtype) { return dtype == CCONV_FLOAT32 ? 2e-5 : 1e-12; }

/* ------------------------------------------------------------------------ */
/* 1. bad arguments                                                          */
/* ------------------------------------------------------------------------ */

static void test_info(void)
{
    EXPECT(strcmp(cconv_version(), CCONV_VERSION_STRING) == 0);
    EXPECT(cconv_abi_version() == CCONV_ABI_VERSION);
    EXPECT(cconv_strerror(CCONV_SUCCESS) != NULL);
    for (int s = -3; s < 40; ++s) EXPECT(cconv_strerror(s) != NULL && cconv_strerror(s)[0]);
    EXPECT(strcmp(cconv_strerror(12345), cconv_strerror(CCONV_ERR_NOCONV)) != 0);
    EXPECT(cconv_openmp_enabled() == 0 || cconv_openmp_enabled() == 1);
    const cconv_api_t *api = cconv_get_api();
    EXPECT(api != NULL && api->abi_major == CCONV_ABI_MAJOR && api->abi_minor == CCONV_ABI_MINOR);
    EXPECT(api->size == sizeof(cconv_api_t));
    EXPECT(api->conv2d_forward == cconv_conv2d_forward && api->eigh == cconv_eigh);

    EXPECT_STATUS(CCONV_ERR_INVALID, cconv_set_num_threads(-1));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_set_num_threads(3));
    EXPECT(cconv_get_num_threads() == 3);
    EXPECT_STATUS(CCONV_SUCCESS, cconv_set_num_threads(1000000));
    EXPECT(cconv_get_num_threads() == CCONV_MAX_THREADS);
    EXPECT_STATUS(CCONV_SUCCESS, cconv_set_num_threads(0));
    EXPECT(cconv_get_num_threads() >= 1);
}

static void conv2d_ok(cconv_conv2d_params_t *p)
{
    cconv_conv2d_params_init(p);
    p->n = 2; p->c_in = 4; p->h = 6; p->w = 5;
    p->c_out = 6; p->kh = 3; p->kw = 2;
    p->groups = 2;
}

static void test_conv2d_errors(void)
{
    cconv_conv2d_params_t p;
    conv2d_ok(&p);
    int64_t oh = -1, ow = -1;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_output_shape(&p, &oh, &ow));
    EXPECT(oh == 4 && ow == 4);
    const int64_t nx = 2 * 4 * 6 * 5, nw = 6 * 2 * 3 * 2, ny = 2 * 6 * 4 * 4;
    buf x = randbuf(CCONV_FLOAT32, nx), w = randbuf(CCONV_FLOAT32, nw);
    buf b = randbuf(CCONV_FLOAT32, 6), y = make(CCONV_FLOAT32, ny);
    const double sentinel = 12345.0;
    fill(&y, sentinel);
#define FWD(pp) cconv_conv2d_forward((pp), x.p, nx, w.p, nw, b.p, 6, y.p, ny)

    EXPECT_STATUS(CCONV_SUCCESS, FWD(&p));
    EXPECT(!all_equal(&y, sentinel));
    fill(&y, sentinel);

    EXPECT_STATUS(CCONV_ERR_NULL, FWD(NULL));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv2d_output_shape(&p, NULL, &ow));
    p.struct_size = 0; EXPECT_STATUS(CCONV_ERR_STRUCT, FWD(&p)); conv2d_ok(&p);
    p.struct_size = sizeof(p) - 1; EXPECT_STATUS(CCONV_ERR_STRUCT, FWD(&p)); conv2d_ok(&p);
    p.dtype = 0; EXPECT_STATUS(CCONV_ERR_DTYPE, FWD(&p)); conv2d_ok(&p);
    p.dtype = 3; EXPECT_STATUS(CCONV_ERR_DTYPE, FWD(&p)); conv2d_ok(&p);
    p.num_threads = -1; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);

    /* each size out of range */
    int64_t *fields[] = {&p.c_in, &p.h, &p.w, &p.c_out, &p.kh, &p.kw, &p.stride_h,
                         &p.stride_w, &p.dil_h, &p.dil_w, &p.groups};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
        int64_t *f = fields[i];          /* conv2d_ok() refills the same p */
        *f = 0; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);
        *f = -1; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);
        *f = INT64_MIN; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);
        *f = INT64_MAX; EXPECT(FWD(&p) != CCONV_SUCCESS); conv2d_ok(&p);
    }
    p.n = -1; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);
    p.pad_top = -1; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);
    p.pad_right = -5; EXPECT_STATUS(CCONV_ERR_INVALID, FWD(&p)); conv2d_ok(&p);

    /* overflow of sizes and of products of sizes */
    p.n = INT64_MAX; EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);
    p.h = (int64_t)1 << 40; p.w = (int64_t)1 << 40;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);
    p.n = (int64_t)1 << 40; p.c_in = (int64_t)1 << 20; p.groups = 1;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);
    p.dil_h = (int64_t)1 << 55; p.kh = 1 << 10;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);
    p.pad_top = (int64_t)1 << 55; p.pad_bottom = (int64_t)1 << 55;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);
    p.pad_left = (int64_t)1 << 40; p.pad_top = (int64_t)1 << 40;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, FWD(&p)); conv2d_ok(&p);

    /* inconsistent sizes */
    p.groups = 3; EXPECT_STATUS(CCONV_ERR_SHAPE, FWD(&p)); conv2d_ok(&p);
    p.groups = 4; EXPECT_STATUS(CCONV_ERR_SHAPE, FWD(&p)); conv2d_ok(&p);  /* 4 ∤ 6 */
    p.groups = 8; EXPECT_STATUS(CCONV_ERR_SHAPE, FWD(&p)); conv2d_ok(&p);
    p.kh = 7; EXPECT_STATUS(CCONV_ERR_SHAPE, FWD(&p)); conv2d_ok(&p);
    p.kh = 7; p.pad_top = 1; EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_output_shape(&p, &oh, &ow));
    EXPECT(oh == 1); conv2d_ok(&p);
    p.dil_w = 5; EXPECT_STATUS(CCONV_ERR_SHAPE, FWD(&p)); conv2d_ok(&p);

    /* buffers: NULL, too small, negative length, overlap */
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv2d_forward(&p, NULL, nx, w.p, nw, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv2d_forward(&p, x.p, nx, NULL, nw, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv2d_forward(&p, x.p, nx, w.p, nw, NULL, 0, NULL, ny));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_forward(&p, x.p, nx - 1, w.p, nw, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_forward(&p, x.p, nx, w.p, nw - 1, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_forward(&p, x.p, nx, w.p, nw, b.p, 5, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_forward(&p, x.p, nx, w.p, nw, NULL, 0, y.p, ny - 1));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_forward(&p, x.p, nx, w.p, nw, NULL, 0, y.p, 0));
    EXPECT_STATUS(CCONV_ERR_INVALID, cconv_conv2d_forward(&p, x.p, -1, w.p, nw, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_conv2d_forward(&p, y.p, nx, w.p, nw, NULL, 0, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_OVERLAP,
                  cconv_conv2d_forward(&p, x.p, nx, w.p, nw, NULL, 0, (float *)x.p + 10, ny));
    EXPECT_STATUS(CCONV_ERR_OVERLAP,
                  cconv_conv2d_forward(&p, x.p, nx, (float *)y.p + ny - 1, nw, NULL, 0, y.p, ny));
    EXPECT(all_equal(&y, sentinel));
    /* a larger buffer is fine; an empty batch needs no data */
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_forward(&p, x.p, nx + 100, w.p, nw, NULL, 0, y.p, ny));
    p.n = 0;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_forward(&p, NULL, 0, w.p, nw, NULL, 0, NULL, 0));
    conv2d_ok(&p);

    /* backward */
    buf dx = make(CCONV_FLOAT32, nx), dw = make(CCONV_FLOAT32, nw), db = make(CCONV_FLOAT32, 6);
    fill(&dx, sentinel); fill(&dw, sentinel); fill(&db, sentinel);
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_backward_input(&p, y.p, ny, w.p, nw, dx.p, nx - 1));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv2d_backward_input(&p, NULL, ny, w.p, nw, dx.p, nx));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_conv2d_backward_input(&p, y.p, ny, w.p, nw, y.p, nx));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, dw.p, nw - 1, NULL, 0));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, dw.p, nw, db.p, 5));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, dw.p, nw, dw.p, 6));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, x.p, nw, NULL, 0));
    p.groups = 5;
    EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, dw.p, nw, db.p, 6));
    EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_conv2d_backward_input(&p, y.p, ny, w.p, nw, dx.p, nx));
    conv2d_ok(&p);
    EXPECT(all_equal(&dx, sentinel) && all_equal(&dw, sentinel) && all_equal(&db, sentinel));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_weight(&p, y.p, ny, x.p, nx, dw.p, nw, db.p, 6));
    p.n = 0;   /* empty batch: zero gradients */
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_weight(&p, NULL, 0, NULL, 0, dw.p, nw, db.p, 6));
    EXPECT(all_equal(&dw, 0.0) && all_equal(&db, 0.0));
#undef FWD
    free(x.p); free(w.p); free(b.p); free(y.p); free(dx.p); free(dw.p); free(db.p);
}

static void test_conv1d_errors(void)
{
    cconv_conv1d_params_t p;
    cconv_conv1d_params_init(&p);
    double x[2 * 3 * 10], w[4 * 3 * 3], y[2 * 4 * 8];
    p.dtype = CCONV_FLOAT64;
    p.n = 2; p.c_in = 3; p.l = 10; p.c_out = 4; p.k = 3;
    int64_t ol = 0;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv1d_output_length(&p, &ol));
    EXPECT(ol == 8);
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_conv1d_forward(NULL, x, 60, w, 36, NULL, 0, y, 64));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv1d_forward(&p, x, 59, w, 36, NULL, 0, y, 64));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv1d_backward_input(&p, y, 64, w, 36, x, 59));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_conv1d_backward_weight(&p, y, 63, x, 60, w, 36, NULL, 0));
    p.struct_size = 4; EXPECT_STATUS(CCONV_ERR_STRUCT, cconv_conv1d_forward(&p, x, 60, w, 36, NULL, 0, y, 64));
    p.struct_size = sizeof(p);
    p.groups = 2; EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_conv1d_forward(&p, x, 60, w, 36, NULL, 0, y, 64));
    p.groups = 1; p.k = 11; EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_conv1d_output_length(&p, &ol));
    p.k = 3; p.stride = 0; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_conv1d_output_length(&p, &ol));
    p.stride = 1; p.dilation = -2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_conv1d_output_length(&p, &ol));
}

static void pool2d_ok(cconv_pool2d_params_t *p)
{
    cconv_pool2d_params_init(p);
    p->n = 2; p->c = 3; p->h = 7; p->w = 6; p->kh = 3; p->kw = 2;
}

static void test_pool_errors(void)
{
    cconv_pool2d_params_t p;
    pool2d_ok(&p);
    int64_t oh, ow;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_pool2d_output_shape(&p, &oh, &ow));
    EXPECT(oh == 2 && ow == 3);
    p.ceil_mode = 1;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_pool2d_output_shape(&p, &oh, &ow));
    EXPECT(oh == 3 && ow == 3);
    pool2d_ok(&p);
    const int64_t nx = 2 * 3 * 7 * 6, ny = 2 * 3 * 2 * 3;
    buf x = randbuf(CCONV_FLOAT32, nx), y = make(CCONV_FLOAT32, ny), dx = make(CCONV_FLOAT32, nx);
    int64_t idx[2 * 3 * 2 * 3];
    fill(&y, 7.0); fill(&dx, 7.0);
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_max_pool2d_forward(NULL, x.p, nx, y.p, ny, NULL, 0));
    p.struct_size = 0;
    EXPECT_STATUS(CCONV_ERR_STRUCT, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0));
    pool2d_ok(&p);
    p.dtype = -1; EXPECT_STATUS(CCONV_ERR_DTYPE, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.kh = 0; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.c = -3; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.stride_w = -1; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.pad_h = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.pad_w = -1; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.ceil_mode = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.count_include_pad = -1; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.dil_h = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.kh = 8; EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny)); pool2d_ok(&p);
    p.dil_w = 6; EXPECT_STATUS(CCONV_ERR_SHAPE, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0)); pool2d_ok(&p);
    p.h = INT64_MAX; EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0)); pool2d_ok(&p);
    p.n = (int64_t)1 << 50; p.c = (int64_t)1 << 20;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0)); pool2d_ok(&p);
    p.dil_h = (int64_t)1 << 60; EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0)); pool2d_ok(&p);
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny - 1, NULL, 0));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, idx, ny - 1));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_avg_pool2d_forward(&p, x.p, nx - 1, y.p, ny));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_avg_pool2d_forward(&p, x.p, nx, NULL, ny));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_avg_pool2d_forward(&p, x.p, nx, (float *)x.p + 1, ny));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, (int64_t *)y.p, ny));
    EXPECT(all_equal(&y, 7.0));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, idx, ny));
    /* backward: indices required and checked */
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_max_pool2d_backward(&p, y.p, ny, NULL, ny, dx.p, nx));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny - 1, dx.p, nx));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, dx.p, nx - 1));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, y.p, nx));
    const int64_t keep = idx[5];
    idx[5] = 7 * 6; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, dx.p, nx));
    idx[5] = -2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, dx.p, nx));
    idx[5] = INT64_MIN; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, dx.p, nx));
    EXPECT(all_equal(&dx, 7.0));
    idx[5] = keep;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool2d_backward(&p, y.p, ny, idx, ny, dx.p, nx));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_avg_pool2d_backward(&p, y.p, ny - 1, dx.p, nx));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_avg_pool2d_backward(&p, x.p, ny, x.p, nx));

    /* 1-D */
    cconv_pool1d_params_t q;
    cconv_pool1d_params_init(&q);
    q.n = 1; q.c = 2; q.l = 9; q.k = 4; q.pad = 2;
    int64_t ol = 0;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_pool1d_output_length(&q, &ol));
    EXPECT(ol == 3);
    q.pad = 3; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_pool1d_output_length(&q, &ol)); q.pad = 2;
    q.struct_size = 0; EXPECT_STATUS(CCONV_ERR_STRUCT, cconv_pool1d_output_length(&q, &ol));
    q.struct_size = sizeof(q);
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_max_pool1d_forward(&q, x.p, 17, y.p, 6, NULL, 0));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_avg_pool1d_forward(&q, x.p, 18, y.p, 5));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_max_pool1d_backward(&q, y.p, 6, NULL, 6, dx.p, 18));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_avg_pool1d_backward(&q, y.p, 6, dx.p, 17));
    free(x.p); free(y.p); free(dx.p);
}

static void gemm_ok(cconv_gemm_params_t *p)
{
    cconv_gemm_params_init(p);
    p->dtype = CCONV_FLOAT64;
    p->m = 3; p->n = 4; p->k = 5;
}

static void test_gemm_errors(void)
{
    cconv_gemm_params_t p;
    gemm_ok(&p);
    double a[40], b[40], c[40];
    for (int i = 0; i < 40; ++i) { a[i] = i; b[i] = 1; c[i] = -1; }
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_gemm(NULL, a, 15, b, 20, c, 12));
    p.struct_size = 1; EXPECT_STATUS(CCONV_ERR_STRUCT, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.dtype = 7; EXPECT_STATUS(CCONV_ERR_DTYPE, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.trans_a = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.trans_b = -1; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.m = -1; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.lda = 4; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.ldc = -4; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.trans_a = 1; p.lda = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.m = (int64_t)1 << 40; p.n = (int64_t)1 << 40;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    p.k = INT64_MAX; EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_gemm(&p, a, 15, b, 20, c, 12)); gemm_ok(&p);
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_gemm(&p, a, 14, b, 20, c, 12));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_gemm(&p, a, 15, b, 19, c, 12));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_gemm(&p, a, 15, b, 20, c, 11));
    p.lda = 8; EXPECT_STATUS(CCONV_ERR_SIZE, cconv_gemm(&p, a, 20, b, 20, c, 12)); gemm_ok(&p);
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_gemm(&p, NULL, 15, b, 20, c, 12));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_gemm(&p, a, 15, b, 20, a + 14, 12));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_gemm(&p, a, 15, c + 11, 20, c, 12));
    for (int i = 0; i < 12; ++i) EXPECT(c[i] == -1);
    /* degenerate sizes are fine: m == 0 touches nothing, k == 0 gives beta C */
    p.m = 0; EXPECT_STATUS(CCONV_SUCCESS, cconv_gemm(&p, NULL, 0, b, 20, NULL, 0)); gemm_ok(&p);
    p.k = 0; p.beta = 2.0; EXPECT_STATUS(CCONV_SUCCESS, cconv_gemm(&p, NULL, 0, NULL, 0, c, 12));
    for (int i = 0; i < 12; ++i) EXPECT(c[i] == -2);
    p.beta = 0.0; c[0] = NAN; EXPECT_STATUS(CCONV_SUCCESS, cconv_gemm(&p, NULL, 0, NULL, 0, c, 12));
    for (int i = 0; i < 12; ++i) EXPECT(c[i] == 0);
    gemm_ok(&p);
    EXPECT_STATUS(CCONV_SUCCESS, cconv_gemm(&p, a, 15, b, 20, c, 12));
    EXPECT(c[0] == 0 + 1 + 2 + 3 + 4 && c[11] == 10 + 11 + 12 + 13 + 14);
}

static void test_eigh_errors(void)
{
    cconv_eigh_params_t p;
    cconv_eigh_params_init(&p);
    p.dtype = CCONV_FLOAT64;
    p.n = 3;
    double a[16] = {2, 0, 0, 1, 3, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0}, w[4] = {9, 9, 9, 9}, v[16];
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_eigh(NULL, a, 9, w, 3, v, 9));
    p.struct_size = 0; EXPECT_STATUS(CCONV_ERR_STRUCT, cconv_eigh(&p, a, 9, w, 3, v, 9));
    p.struct_size = sizeof(p);
    p.n = 0; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_eigh(&p, a, 9, w, 3, v, 9));
    p.n = -3; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_eigh(&p, a, 9, w, 3, v, 9));
    p.n = (int64_t)1 << 40; EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_eigh(&p, a, 9, w, 3, v, 9));
    p.n = 3;
    p.lda = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_eigh(&p, a, 9, w, 3, v, 9)); p.lda = 0;
    p.upper = 2; EXPECT_STATUS(CCONV_ERR_INVALID, cconv_eigh(&p, a, 9, w, 3, v, 9)); p.upper = 0;
    p.dtype = 0; EXPECT_STATUS(CCONV_ERR_DTYPE, cconv_eigh(&p, a, 9, w, 3, v, 9)); p.dtype = CCONV_FLOAT64;
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_eigh(&p, a, 8, w, 3, v, 9));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_eigh(&p, a, 9, w, 2, v, 9));
    EXPECT_STATUS(CCONV_ERR_SIZE, cconv_eigh(&p, a, 9, w, 3, v, 8));
    EXPECT_STATUS(CCONV_ERR_NULL, cconv_eigh(&p, a, 9, NULL, 3, v, 9));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_eigh(&p, a, 9, a + 8, 3, NULL, 0));
    EXPECT_STATUS(CCONV_ERR_OVERLAP, cconv_eigh(&p, a, 9, w, 3, w, 9));
    EXPECT(w[0] == 9 && w[1] == 9 && w[2] == 9);
    a[3] = NAN; EXPECT_STATUS(CCONV_ERR_NOCONV, cconv_eigh(&p, a, 9, w, 3, v, 9));
    a[3] = INFINITY; EXPECT_STATUS(CCONV_ERR_NOCONV, cconv_eigh(&p, a, 9, w, 3, NULL, 0));
    a[1] = NAN;            /* the upper triangle is not read */
    a[3] = 1;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, a, 9, w, 3, v, 9));
    EXPECT(w[0] <= w[1] && w[1] <= w[2]);
    EXPECT(fabs(w[0] + w[1] + w[2] - 9.0) < 1e-12);
    /* in place: v == a */
    double b[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, b, 9, w, 3, b, 9));
    EXPECT(w[0] == 1 && w[2] == 1);
}

/* ------------------------------------------------------------------------ */
/* 2. agreement with naive references                                        */
/* ------------------------------------------------------------------------ */

static void ref_conv2d(const cconv_conv2d_params_t *p, int64_t oh, int64_t ow,
                       const buf *x, const buf *w, const buf *b, const buf *dy,
                       double *y, double *dx, double *dw, double *db)
{
    const int64_t G = p->groups, cig = p->c_in / G, cog = p->c_out / G;
    memset(dx, 0, sizeof(double) * (size_t)(p->n * p->c_in * p->h * p->w));
    memset(dw, 0, sizeof(double) * (size_t)(p->c_out * cig * p->kh * p->kw));
    memset(db, 0, sizeof(double) * (size_t)p->c_out);
    for (int64_t n = 0; n < p->n; ++n)
        for (int64_t co = 0; co < p->c_out; ++co) {
            const int64_t g = co / cog;
            for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j) {
                    const int64_t yi = ((n * p->c_out + co) * oh + i) * ow + j;
                    double s = b ? get(b, co) : 0.0;
                    const double gy = get(dy, yi);
                    db[co] += gy;
                    for (int64_t c = 0; c < cig; ++c)
                        for (int64_t u = 0; u < p->kh; ++u)
                            for (int64_t v = 0; v < p->kw; ++v) {
                                const int64_t r = i * p->stride_h - p->pad_top + u * p->dil_h;
                                const int64_t q = j * p->stride_w - p->pad_left + v * p->dil_w;
                                if (r < 0 || r >= p->h || q < 0 || q >= p->w) continue;
                                const int64_t xi = ((n * p->c_in + g * cig + c) * p->h + r) * p->w + q;
                                const int64_t wi = ((co * cig + c) * p->kh + u) * p->kw + v;
                                s += get(w, wi) * get(x, xi);
                                dx[xi] += get(w, wi) * gy;
                                dw[wi] += get(x, xi) * gy;
                            }
                    y[yi] = s;
                }
        }
}

static void check_conv2d_random(int dtype, int nthreads)
{
    cconv_conv2d_params_t p;
    cconv_conv2d_params_init(&p);
    p.dtype = dtype;
    p.num_threads = nthreads;
    p.groups = irand(1, 3);
    p.n = irand(0, 3);
    p.c_in = p.groups * irand(1, 3);
    p.c_out = p.groups * irand(1, 3);
    if (irand(0, 3) == 0) { p.c_in = p.groups = irand(2, 4); p.c_out = p.groups * irand(1, 2); }
    p.h = irand(1, 12); p.w = irand(1, 12);
    p.kh = irand(1, 4); p.kw = irand(1, 4);
    p.stride_h = irand(1, 3); p.stride_w = irand(1, 3);
    p.dil_h = irand(1, 2); p.dil_w = irand(1, 2);
    p.pad_top = irand(0, 2); p.pad_bottom = irand(0, 2);
    p.pad_left = irand(0, 2); p.pad_right = irand(0, 2);
    int64_t oh, ow;
    if (cconv_conv2d_output_shape(&p, &oh, &ow) != CCONV_SUCCESS) {
        EXPECT(p.dil_h * (p.kh - 1) + 1 > p.h + p.pad_top + p.pad_bottom ||
               p.dil_w * (p.kw - 1) + 1 > p.w + p.pad_left + p.pad_right);
        return;
    }
    const int64_t nx = p.n * p.c_in * p.h * p.w, nw = p.c_out * (p.c_in / p.groups) * p.kh * p.kw;
    const int64_t ny = p.n * p.c_out * oh * ow;
    buf x = randbuf(dtype, nx), w = randbuf(dtype, nw), b = randbuf(dtype, p.c_out);
    buf dy = randbuf(dtype, ny), y = make(dtype, ny), dx = make(dtype, nx);
    buf dw = make(dtype, nw), db = make(dtype, p.c_out);
    double *ry = malloc(sizeof(double) * (size_t)(ny + 1)), *rdx = malloc(sizeof(double) * (size_t)(nx + 1));
    double *rdw = malloc(sizeof(double) * (size_t)nw), *rdb = malloc(sizeof(double) * (size_t)p.c_out);
    const int with_bias = irand(0, 1);
    ref_conv2d(&p, oh, ow, &x, &w, with_bias ? &b : NULL, &dy, ry, rdx, rdw, rdb);
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_forward(&p, x.p, nx, w.p, nw, with_bias ? b.p : NULL,
                                                      p.c_out, y.p, ny));
    EXPECT(rel_err(&y, ry, ny) < tol(dtype));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_input(&p, dy.p, ny, w.p, nw, dx.p, nx));
    EXPECT(rel_err(&dx, rdx, nx) < tol(dtype));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_weight(&p, dy.p, ny, x.p, nx, dw.p, nw,
                                                              db.p, p.c_out));
    EXPECT(rel_err(&dw, rdw, nw) < tol(dtype));
    EXPECT(rel_err(&db, rdb, p.c_out) < tol(dtype));
    if (p.kh == 1 && p.stride_h == 1 && p.pad_top == 0 && p.pad_bottom == 0) {
        /* the same problem as 1-D convolution, row by row when h == 1 */
        if (p.h == 1) {
            cconv_conv1d_params_t q;
            cconv_conv1d_params_init(&q);
            q.dtype = dtype; q.num_threads = nthreads;
            q.n = p.n; q.c_in = p.c_in; q.l = p.w; q.c_out = p.c_out; q.k = p.kw;
            q.stride = p.stride_w; q.pad_left = p.pad_left; q.pad_right = p.pad_right;
            q.dilation = p.dil_w; q.groups = p.groups;
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv1d_forward(&q, x.p, nx, w.p, nw,
                                                              with_bias ? b.p : NULL, p.c_out, y.p, ny));
            EXPECT(rel_err(&y, ry, ny) < tol(dtype));
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv1d_backward_input(&q, dy.p, ny, w.p, nw, dx.p, nx));
            EXPECT(rel_err(&dx, rdx, nx) < tol(dtype));
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv1d_backward_weight(&q, dy.p, ny, x.p, nx, dw.p, nw,
                                                                      NULL, 0));
            EXPECT(rel_err(&dw, rdw, nw) < tol(dtype));
        }
    }
    free(x.p); free(w.p); free(b.p); free(dy.p); free(y.p); free(dx.p); free(dw.p); free(db.p);
    free(ry); free(rdx); free(rdw); free(rdb);
}

static void check_pool2d_random(int dtype, int nthreads)
{
    cconv_pool2d_params_t p;
    cconv_pool2d_params_init(&p);
    p.dtype = dtype;
    p.num_threads = nthreads;
    p.n = irand(0, 2); p.c = irand(1, 3); p.h = irand(1, 10); p.w = irand(1, 10);
    p.kh = irand(1, 4); p.kw = irand(1, 4);
    p.stride_h = irand(0, 3); p.stride_w = irand(0, 3);
    p.pad_h = irand(0, p.kh / 2); p.pad_w = irand(0, p.kw / 2);
    p.ceil_mode = (int)irand(0, 1);
    p.count_include_pad = (int)irand(0, 1);
    const int average = (int)irand(0, 1);
    if (!average) { p.dil_h = irand(1, 2); p.dil_w = irand(1, 2); }
    int64_t oh, ow;
    if (cconv_pool2d_output_shape(&p, &oh, &ow) != CCONV_SUCCESS) return;
    const int64_t sh = p.stride_h ? p.stride_h : p.kh, sw = p.stride_w ? p.stride_w : p.kw;
    const int64_t nx = p.n * p.c * p.h * p.w, ny = p.n * p.c * oh * ow;
    buf x = randbuf(dtype, nx), y = make(dtype, ny), dy = randbuf(dtype, ny), dx = make(dtype, nx);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(ny + 1));
    double *ry = malloc(sizeof(double) * (size_t)(ny + 1)), *rdx = calloc((size_t)(nx + 1), sizeof(double));
    for (int64_t pl = 0; pl < p.n * p.c; ++pl)
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
                const int64_t yi = (pl * oh + i) * ow + j;
                const int64_t h0 = i * sh - p.pad_h, w0 = j * sw - p.pad_w;
                if (average) {
                    int64_t he = h0 + p.kh, we = w0 + p.kw;
                    if (he > p.h + p.pad_h) he = p.h + p.pad_h;
                    if (we > p.w + p.pad_w) we = p.w + p.pad_w;
                    const int64_t padded = (he - h0) * (we - w0);
                    const int64_t hs = h0 < 0 ? 0 : h0, ws = w0 < 0 ? 0 : w0;
                    const int64_t hz = he > p.h ? p.h : he, wz = we > p.w ? p.w : we;
                    const int64_t cnt = p.count_include_pad ? padded : (hz - hs) * (wz - ws);
                    double s = 0.0;
                    for (int64_t r = hs; r < hz; ++r)
                        for (int64_t q = ws; q < wz; ++q) s += get(&x, pl * p.h * p.w + r * p.w + q);
                    ry[yi] = cnt > 0 ? s / (double)cnt : 0.0;
                    for (int64_t r = hs; r < hz; ++r)
                        for (int64_t q = ws; q < wz; ++q)
                            rdx[pl * p.h * p.w + r * p.w + q] += cnt > 0 ? get(&dy, yi) / (double)cnt : 0.0;
                } else {
                    double best = -INFINITY;
                    int64_t bi = -1;
                    for (int64_t u = 0; u < p.kh; ++u)
                        for (int64_t v = 0; v < p.kw; ++v) {
                            const int64_t r = h0 + u * p.dil_h, q = w0 + v * p.dil_w;
                            if (r < 0 || r >= p.h || q < 0 || q >= p.w) continue;
                            const double xv = get(&x, pl * p.h * p.w + r * p.w + q);
                            if (bi < 0 || xv > best) { best = xv; bi = r * p.w + q; }
                        }
                    ry[yi] = best;
                    if (bi >= 0) rdx[pl * p.h * p.w + bi] += get(&dy, yi);
                }
            }
    if (average) {
        EXPECT_STATUS(CCONV_SUCCESS, cconv_avg_pool2d_forward(&p, x.p, nx, y.p, ny));
        EXPECT(rel_err(&y, ry, ny) < tol(dtype));
        EXPECT_STATUS(CCONV_SUCCESS, cconv_avg_pool2d_backward(&p, dy.p, ny, dx.p, nx));
        EXPECT(rel_err(&dx, rdx, nx) < tol(dtype));
    } else {
        EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, NULL, 0));
        EXPECT(rel_err(&y, ry, ny) == 0.0);
        EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool2d_forward(&p, x.p, nx, y.p, ny, idx, ny));
        EXPECT(rel_err(&y, ry, ny) == 0.0);
        EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool2d_backward(&p, dy.p, ny, idx, ny, dx.p, nx));
        EXPECT(rel_err(&dx, rdx, nx) < tol(dtype));
    }
    if (p.h == 1 && p.kh == 1) {
        cconv_pool1d_params_t q;
        cconv_pool1d_params_init(&q);
        q.dtype = dtype; q.num_threads = nthreads;
        q.n = p.n; q.c = p.c; q.l = p.w; q.k = p.kw; q.stride = p.stride_w; q.pad = p.pad_w;
        q.dilation = p.dil_w; q.ceil_mode = p.ceil_mode; q.count_include_pad = p.count_include_pad;
        if (sh == 1 || oh == 1) {
            if (average) {
                EXPECT_STATUS(CCONV_SUCCESS, cconv_avg_pool1d_forward(&q, x.p, nx, y.p, ny));
                EXPECT(rel_err(&y, ry, ny) < tol(dtype));
                EXPECT_STATUS(CCONV_SUCCESS, cconv_avg_pool1d_backward(&q, dy.p, ny, dx.p, nx));
            } else {
                EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool1d_forward(&q, x.p, nx, y.p, ny, idx, ny));
                EXPECT(rel_err(&y, ry, ny) == 0.0);
                EXPECT_STATUS(CCONV_SUCCESS, cconv_max_pool1d_backward(&q, dy.p, ny, idx, ny, dx.p, nx));
            }
            EXPECT(rel_err(&dx, rdx, nx) < tol(dtype));
        }
    }
    free(x.p); free(y.p); free(dy.p); free(dx.p); free(idx); free(ry); free(rdx);
}

static void check_gemm_random(int dtype, int nthreads)
{
    cconv_gemm_params_t p;
    cconv_gemm_params_init(&p);
    p.dtype = dtype;
    p.num_threads = nthreads;
    p.m = irand(1, 70); p.n = irand(1, 70); p.k = irand(1, 70);
    p.trans_a = (int)irand(0, 1); p.trans_b = (int)irand(0, 1);
    p.alpha = irand(0, 1) ? 1.0 : -0.5;
    p.beta = irand(0, 1) ? 0.0 : 0.75;
    const int64_t ra = p.trans_a ? p.k : p.m, ca = p.trans_a ? p.m : p.k;
    const int64_t rb = p.trans_b ? p.n : p.k, cb = p.trans_b ? p.k : p.n;
    p.lda = ca + irand(0, 3); p.ldb = cb + irand(0, 3); p.ldc = p.n + irand(0, 3);
    const int64_t na = (ra - 1) * p.lda + ca, nb = (rb - 1) * p.ldb + cb, nc = (p.m - 1) * p.ldc + p.n;
    buf a = randbuf(dtype, na), b = randbuf(dtype, nb), c = randbuf(dtype, nc);
    double *ref = malloc(sizeof(double) * (size_t)nc);
    for (int64_t i = 0; i < nc; ++i) ref[i] = get(&c, i);
    for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j) {
            double s = 0.0;
            for (int64_t l = 0; l < p.k; ++l)
                s += get(&a, p.trans_a ? l * p.lda + i : i * p.lda + l) *
                     get(&b, p.trans_b ? j * p.ldb + l : l * p.ldb + j);
            const double c0 = get(&c, i * p.ldc + j);
            ref[i * p.ldc + j] = p.alpha * s + (p.beta == 0.0 ? 0.0 : p.beta * c0);
        }
    EXPECT_STATUS(CCONV_SUCCESS, cconv_gemm(&p, a.p, na, b.p, nb, c.p, nc));
    EXPECT(rel_err(&c, ref, nc) < tol(dtype) * 10);
    free(a.p); free(b.p); free(c.p); free(ref);
}

static void check_eigh_random(int dtype)
{
    cconv_eigh_params_t p;
    cconv_eigh_params_init(&p);
    p.dtype = dtype;
    p.n = irand(1, 24);
    p.upper = (int)irand(0, 1);
    p.lda = p.n + irand(0, 2);
    const int64_t n = p.n, na = (n - 1) * p.lda + n;
    buf a = randbuf(dtype, na), w = make(dtype, n), v = make(dtype, n * n);
    if (irand(0, 2) == 0)   /* repeated eigenvalues: a multiple of I plus a rank-1 term */
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) set(&a, i * p.lda + j, (i == j) + 0.25 * (i % 2) * (j % 2));
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, a.p, na, w.p, n, v.p, n * n));
    double anorm = 0.0, res = 0.0, orth = 0.0;
#define A_(i, j) get(&a, ((p.upper ? (i) < (j) : (i) > (j)) ? (i) * p.lda + (j) : (j) * p.lda + (i)))
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) anorm = fmax(anorm, fabs(A_(i, j)));
    for (int64_t k = 0; k < n; ++k) {
        if (k > 0) EXPECT(get(&w, k - 1) <= get(&w, k));
        for (int64_t i = 0; i < n; ++i) {     /* (A v_k - w_k v_k)_i */
            double s = 0.0;
            for (int64_t j = 0; j < n; ++j) s += A_(i, j) * get(&v, j * n + k);
            res = fmax(res, fabs(s - get(&w, k) * get(&v, i * n + k)));
        }
        for (int64_t l = 0; l < n; ++l) {     /* v_k . v_l - delta */
            double s = 0.0;
            for (int64_t i = 0; i < n; ++i) s += get(&v, i * n + k) * get(&v, i * n + l);
            orth = fmax(orth, fabs(s - (k == l)));
        }
    }
#undef A_
    const double eps = dtype == CCONV_FLOAT32 ? 1e-6 : 1e-15;
    EXPECT(res <= 100 * (double)n * eps * (anorm > 1 ? anorm : 1));
    EXPECT(orth <= 100 * (double)n * eps);
    /* eigenvalues only: the same values */
    buf w2 = make(dtype, n);
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, a.p, na, w2.p, n, NULL, 0));
    double wd = 0.0;
    for (int64_t k = 0; k < n; ++k) wd = fmax(wd, fabs(get(&w, k) - get(&w2, k)));
    EXPECT(wd <= 100 * (double)n * eps * (anorm > 1 ? anorm : 1));
    free(a.p); free(w.p); free(v.p); free(w2.p);
}

/* ------------------------------------------------------------------------ */
/* 3. concurrent calls                                                       */
/* ------------------------------------------------------------------------ */

enum { TN = 2, TC = 3, TH = 17, TW = 13, TO = 5 };
static float t_x[TN * TC * TH * TW], t_w[TO * TC * 9], t_ref[TN * TO * TH * TW];

static void *worker(void *arg)
{
    long bad = 0;
    float *y = malloc(sizeof(t_ref));
    cconv_conv2d_params_t p;
    cconv_conv2d_params_init(&p);
    p.n = TN; p.c_in = TC; p.h = TH; p.w = TW; p.c_out = TO; p.kh = p.kw = 3;
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    p.num_threads = (int)(intptr_t)arg;
    for (int it = 0; it < 50; ++it) {
        if (cconv_conv2d_forward(&p, t_x, TN * TC * TH * TW, t_w, TO * TC * 9, NULL, 0, y,
                                 TN * TO * TH * TW) != CCONV_SUCCESS ||
            memcmp(y, t_ref, sizeof(t_ref)) != 0)
            ++bad;
    }
    free(y);
    return (void *)(intptr_t)bad;
}

static void *toggler(void *arg)
{
    (void)arg;
    for (int it = 0; it < 2000; ++it) cconv_set_num_threads(it % 3);
    return NULL;
}

static void test_threads(void)
{
    for (int i = 0; i < TN * TC * TH * TW; ++i) t_x[i] = (float)urand();
    for (int i = 0; i < TO * TC * 9; ++i) t_w[i] = (float)urand();
    cconv_conv2d_params_t p;
    cconv_conv2d_params_init(&p);
    p.n = TN; p.c_in = TC; p.h = TH; p.w = TW; p.c_out = TO; p.kh = p.kw = 3;
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 1;
    p.num_threads = 1;
    EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_forward(&p, t_x, TN * TC * TH * TW, t_w, TO * TC * 9,
                                                      NULL, 0, t_ref, TN * TO * TH * TW));
    pthread_t th[5];
    for (int i = 0; i < 4; ++i) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)(i % 2));
    pthread_create(&th[4], NULL, toggler, NULL);
    for (int i = 0; i < 4; ++i) {
        void *bad;
        pthread_join(th[i], &bad);
        EXPECT((intptr_t)bad == 0);
    }
    pthread_join(th[4], NULL);
    cconv_set_num_threads(0);
}

/* Strides and paddings far beyond a 9x9 input: the work and the buffers follow
 * the output (1x1 or 3x3 here), not stride * width (2^24 phases were 6 GB). */
static void test_huge_strides(void)
{
    double x[2 * 9 * 9], w[2 * 2 * 9], y[2 * 9], dx[2 * 9 * 9], dw[2 * 2 * 9], db[2];
    for (int i = 0; i < 2 * 9 * 9; ++i) x[i] = urand();
    for (int i = 0; i < 2 * 2 * 9; ++i) w[i] = urand();
    const int64_t big[] = {(int64_t)1 << 24, (int64_t)1 << 30, (int64_t)1 << 40};
    for (int k = 0; k < 3; ++k)
        for (int groups = 1; groups <= 2; ++groups) {
            cconv_conv2d_params_t p;
            cconv_conv2d_params_init(&p);
            p.dtype = CCONV_FLOAT64;
            p.n = 1; p.c_in = 2; p.h = p.w = 9; p.c_out = 2; p.kh = p.kw = 3;
            p.groups = groups;
            p.stride_h = p.stride_w = big[k];
            /* k == 2: padding 2^20 on every side and stride 2^20, a 3x3 output */
            if (k == 2) {
                p.stride_h = p.stride_w = (int64_t)1 << 20;
                p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = (int64_t)1 << 20;
            }
            int64_t oh = 0, ow = 0;
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_output_shape(&p, &oh, &ow));
            EXPECT(oh == (k == 2 ? 3 : 1) && ow == oh);
            const int64_t ny = 2 * oh * ow, cg = 2 / groups;
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_forward(&p, x, 162, w, 18 * cg, NULL, 0,
                                                              y, ny));
            /* the one window over the image: output (1, 1) with padding, else (0, 0) */
            const int64_t at = k == 2 ? 1 * ow + 1 : 0;
            for (int64_t co = 0; co < 2; ++co) {
                double want = 0;
                for (int64_t c = 0; c < cg; ++c)
                    for (int i = 0; i < 9; ++i)
                        want += w[(co * cg + c) * 9 + i] *
                                x[((groups == 2 ? co : c) * 9 + i / 3) * 9 + i % 3];
                EXPECT(fabs(y[co * oh * ow + at] - want) < 1e-12);
                for (int64_t q = 0; q < oh * ow; ++q)
                    if (q != at) EXPECT(y[co * oh * ow + q] == 0);
            }
            for (int64_t i = 0; i < ny; ++i) y[i] = 1;      /* as dy */
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_input(&p, y, ny, w, 18 * cg,
                                                                     dx, 162));
            EXPECT_STATUS(CCONV_SUCCESS, cconv_conv2d_backward_weight(&p, y, ny, x, 162,
                                                                      dw, 18 * cg, db, 2));
            EXPECT(dx[4 * 9 + 4] == 0 && db[0] == (double)(oh * ow));
            EXPECT(dw[0] == x[(groups == 2 ? 0 : 0) * 81]);
        }
}

/* cconv_eigh on finite entries near the largest double: solved on A / max|A|.
 * An eigenvalue beyond the range (2 * 1e308) is CCONV_ERR_OVERFLOW. */
static void test_eigh_extreme_scale(void)
{
    cconv_eigh_params_t p;
    cconv_eigh_params_init(&p);
    p.dtype = CCONV_FLOAT64;
    p.n = 3;
    double a[9] = {2e307, 1e307, 0, 1e307, 2e307, 1e307, 0, 1e307, 2e307}, w[3], v[9];
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, a, 9, w, 3, v, 9));
    /* eigenvalues of [[2,1,0],[1,2,1],[0,1,2]]: 2 - sqrt 2, 2, 2 + sqrt 2 */
    EXPECT(fabs(w[0] / 1e307 - (2 - sqrt(2.0))) < 1e-13);
    EXPECT(fabs(w[1] / 1e307 - 2) < 1e-13);
    EXPECT(fabs(w[2] / 1e307 - (2 + sqrt(2.0))) < 1e-13);
    for (int i = 0; i < 9; ++i) a[i] *= 5;   /* 1e308 on the diagonal */
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, a, 9, w, 3, NULL, 0));
    EXPECT(isfinite(w[2]) && fabs(w[2] / 5e307 - (2 + sqrt(2.0))) < 1e-13);
    double big[4] = {1e308, 1e308, 1e308, 1e308};
    p.n = 2;
    EXPECT_STATUS(CCONV_ERR_OVERFLOW, cconv_eigh(&p, big, 4, w, 2, v, 4));
    double tiny[4] = {4e-320, 0, 0, 2e-320};    /* subnormal: scaled up, exact */
    EXPECT_STATUS(CCONV_SUCCESS, cconv_eigh(&p, tiny, 4, w, 2, v, 4));
    EXPECT(w[0] == 2e-320 && w[1] == 4e-320);
}

int main(int argc, char **argv)
{
    const int rounds = argc > 1 ? atoi(argv[1]) : 40;
    test_info();
    test_conv2d_errors();
    test_conv1d_errors();
    test_pool_errors();
    test_gemm_errors();
    test_eigh_errors();
    test_huge_strides();
    test_eigh_extreme_scale();
    for (int r = 0; r < rounds; ++r)
        for (int dt = CCONV_FLOAT32; dt <= CCONV_FLOAT64; ++dt) {
            const int nt = 1 + r % 2;
            check_conv2d_random(dt, nt);
            check_pool2d_random(dt, nt);
            check_gemm_random(dt, nt);
            if (r % 4 == 0) check_eigh_random(dt);
        }
    test_threads();
    printf("test_capi: %ld checks, %ld failures\n", n_checks, n_fail);
    return n_fail ? 1 : 0;
}
