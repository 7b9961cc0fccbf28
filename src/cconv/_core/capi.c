/* The public C API (include/cconv.h) over the internal core (cconv_core.h).
 *
 * Every entry point validates all of its arguments before it touches memory
 * or calls a kernel, and answers a bad one with a status code: the kernels
 * behind it assume valid, consistent sizes. Order of the checks (so that a
 * caller sees the most basic mistake first): NULL params, struct_size, dtype,
 * num_threads, each size parameter's range, overflow of derived sizes, the
 * consistency of the sizes, then each buffer (NULL, capacity), then overlap.
 *
 * Sizes: every size parameter and every derived count (elements of a buffer,
 * padded extents) must stay <= 2^56, far beyond any real buffer, so that byte
 * counts and the kernels' index arithmetic (int64_t) cannot overflow.
 *
 * ABI (docs/c-api.md): in 1.0 every params struct must be at least as large
 * as this file's. When a minor version appends a field, its setup must
 * accept struct_size >= offsetof(that field) and use the field's default
 * when struct_size does not cover it; new functions go at the end of
 * api_table. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cconv_core.h"
#include "../include/cconv.h"

#define CAP ((int64_t)1 << 56)

/* ---- library information and threads ---- */

const char *cconv_version(void) { return CCONV_VERSION_STRING; }

int cconv_abi_version(void) { return CCONV_ABI_VERSION; }

const char *cconv_strerror(int status)
{
    switch (status) {
    case CCONV_SUCCESS: return "success";
    case CCONV_ERR_NOMEM: return "out of memory for a work buffer";
    case CCONV_ERR_INVALID: return "a parameter is out of range";
    case CCONV_ERR_NULL: return "a required pointer is NULL";
    case CCONV_ERR_DTYPE: return "unknown dtype (expected CCONV_FLOAT32 or CCONV_FLOAT64)";
    case CCONV_ERR_SHAPE: return "the sizes are inconsistent (groups, kernel larger than the padded input, ...)";
    case CCONV_ERR_SIZE: return "a buffer is smaller than the operation needs";
    case CCONV_ERR_OVERFLOW: return "a size or a product of sizes is too large (cconv_eigh: an eigenvalue beyond the dtype's range)";
    case CCONV_ERR_OVERLAP: return "an output buffer overlaps an input buffer";
    case CCONV_ERR_STRUCT: return "params struct_size too small (initialise the params with its cconv_*_params_init function)";
    case CCONV_ERR_NOCONV: return "the eigensolver did not converge (NaN or infinity in the matrix?)";
    default: return "unknown cconv status code";
    }
}

/* 0: not set, the OpenMP default applies. */
static int default_threads = 0;

int cconv_set_num_threads(int n)
{
    if (n < 0) return CCONV_ERR_INVALID;
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&default_threads, n, __ATOMIC_RELAXED);
#else
    *(volatile int *)&default_threads = n;   /* aligned int stores are atomic on MSVC targets */
#endif
    return CCONV_SUCCESS;
}

int cconv_get_num_threads(void)
{
#if defined(__GNUC__) || defined(__clang__)
    int n = __atomic_load_n(&default_threads, __ATOMIC_RELAXED);
#else
    int n = *(volatile int *)&default_threads;
#endif
    if (n <= 0) n = cconv_max_threads();
    if (n > CCONV_MAX_THREADS) n = CCONV_MAX_THREADS;
    return n < 1 ? 1 : n;
}

/* ---- shared checks ---- */

/* dtype and thread count of a call: element size and threads to use. */
static int call_setup(int dtype, int num_threads, size_t *elem, int *nthreads)
{
    if (dtype == CCONV_FLOAT32) *elem = sizeof(float);
    else if (dtype == CCONV_FLOAT64) *elem = sizeof(double);
    else return CCONV_ERR_DTYPE;
    if (num_threads < 0) return CCONV_ERR_INVALID;
    *nthreads = num_threads == 0 ? cconv_get_num_threads()
              : num_threads > CCONV_MAX_THREADS ? CCONV_MAX_THREADS : num_threads;
    return CCONV_SUCCESS;
}

/* A size parameter: >= lo, and <= CAP. */
static int range(int64_t v, int64_t lo)
{
    if (v < lo) return CCONV_ERR_INVALID;
    if (v > CAP) return CCONV_ERR_OVERFLOW;
    return CCONV_SUCCESS;
}

#define CHECK(expr) do { int st_ = (expr); if (st_) return st_; } while (0)

/* *r = a * b for 0 <= a, b; 0 when the product stays <= CAP. */
static int mul(int64_t a, int64_t b, int64_t *r)
{
    if (a != 0 && b > CAP / a) return CCONV_ERR_OVERFLOW;
    *r = a * b;
    return CCONV_SUCCESS;
}

static int mul4(int64_t a, int64_t b, int64_t c, int64_t d, int64_t *r)
{
    int64_t ab, abc;
    CHECK(mul(a, b, &ab));
    CHECK(mul(ab, c, &abc));
    return mul(abc, d, r);
}

/* A buffer of capacity len that must hold count elements. */
static int need(const void *ptr, int64_t len, int64_t count)
{
    if (len < 0) return CCONV_ERR_INVALID;
    if (count > 0 && !ptr) return CCONV_ERR_NULL;
    if (len < count) return CCONV_ERR_SIZE;
    return CCONV_SUCCESS;
}

/* Whether the first na and nb bytes of a and b share a byte (addresses
 * compared as integers: the two buffers need not be one object). */
static int overlap(const void *a, int64_t na, const void *b, int64_t nb)
{
    if (!a || !b || na <= 0 || nb <= 0) return 0;
    const uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    return pa < pb + (uintptr_t)nb && pb < pa + (uintptr_t)na;
}

/* An output of `count` elements against an input, both of element size elem. */
#define NO_OVERLAP(out, nout, in, nin, elem)                                      \
    do {                                                                           \
        if (overlap((out), (nout) * (int64_t)(elem), (in), (nin) * (int64_t)(elem))) \
            return CCONV_ERR_OVERLAP;                                              \
    } while (0)

/* Internal statuses (CCONV_OK, CCONV_ENOMEM, CCONV_EINVAL) have the same values
 * as the public ones; EINVAL after full validation would be a bug of ours. */
static int from_core(int status) { return status; }

/* ---- convolution ---- */

typedef struct {
    size_t elem;
    int nthreads;
    int64_t x, w, y, b;          /* element counts */
} conv_call;

static int conv2d_setup(const cconv_conv2d_params_t *p, cconv_conv2d_params *q,
                        conv_call *s)
{
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_conv2d_params_t)) return CCONV_ERR_STRUCT;
    CHECK(call_setup(p->dtype, p->num_threads, &s->elem, &s->nthreads));
    CHECK(range(p->n, 0));
    CHECK(range(p->c_in, 1)); CHECK(range(p->h, 1)); CHECK(range(p->w, 1));
    CHECK(range(p->c_out, 1)); CHECK(range(p->kh, 1)); CHECK(range(p->kw, 1));
    CHECK(range(p->stride_h, 1)); CHECK(range(p->stride_w, 1));
    CHECK(range(p->pad_top, 0)); CHECK(range(p->pad_bottom, 0));
    CHECK(range(p->pad_left, 0)); CHECK(range(p->pad_right, 0));
    CHECK(range(p->dil_h, 1)); CHECK(range(p->dil_w, 1));
    CHECK(range(p->groups, 1));
    int64_t eff_h, eff_w, span_plane;
    CHECK(mul(p->dil_h, p->kh - 1, &eff_h));
    CHECK(mul(p->dil_w, p->kw - 1, &eff_w));
    eff_h += 1; eff_w += 1;
    const int64_t span_h = p->h + p->pad_top + p->pad_bottom;
    const int64_t span_w = p->w + p->pad_left + p->pad_right;
    if (span_h > CAP || span_w > CAP) return CCONV_ERR_OVERFLOW;
    CHECK(mul(span_h, span_w, &span_plane));   /* the padded plane a kernel may copy */
    if (p->c_in % p->groups || p->c_out % p->groups) return CCONV_ERR_SHAPE;
    if (eff_h > span_h || eff_w > span_w) return CCONV_ERR_SHAPE;
    memset(q, 0, sizeof(*q));
    q->n = p->n; q->c_in = p->c_in; q->h = p->h; q->w = p->w;
    q->c_out = p->c_out; q->kh = p->kh; q->kw = p->kw;
    q->stride_h = p->stride_h; q->stride_w = p->stride_w;
    q->pad_top = p->pad_top; q->pad_bottom = p->pad_bottom;
    q->pad_left = p->pad_left; q->pad_right = p->pad_right;
    q->dil_h = p->dil_h; q->dil_w = p->dil_w;
    q->groups = p->groups;
    if (cconv_conv2d_check(q) != CCONV_OK) return CCONV_ERR_SHAPE;
    CHECK(mul4(p->n, p->c_in, p->h, p->w, &s->x));
    CHECK(mul4(p->c_out, p->c_in / p->groups, p->kh, p->kw, &s->w));
    CHECK(mul4(p->n, p->c_out, q->out_h, q->out_w, &s->y));
    s->b = p->c_out;
    return CCONV_SUCCESS;
}

int cconv_conv2d_output_shape(const cconv_conv2d_params_t *p, int64_t *out_h,
                              int64_t *out_w)
{
    cconv_conv2d_params q;
    conv_call s;
    CHECK(conv2d_setup(p, &q, &s));
    if (!out_h || !out_w) return CCONV_ERR_NULL;
    *out_h = q.out_h;
    *out_w = q.out_w;
    return CCONV_SUCCESS;
}

int cconv_conv2d_forward(const cconv_conv2d_params_t *p, const void *x, int64_t x_len,
                         const void *w, int64_t w_len, const void *bias,
                         int64_t bias_len, void *y, int64_t y_len)
{
    cconv_conv2d_params q;
    conv_call s;
    CHECK(conv2d_setup(p, &q, &s));
    CHECK(need(x, x_len, s.x));
    CHECK(need(w, w_len, s.w));
    if (bias) CHECK(need(bias, bias_len, s.b));
    CHECK(need(y, y_len, s.y));
    NO_OVERLAP(y, s.y, x, s.x, s.elem);
    NO_OVERLAP(y, s.y, w, s.w, s.elem);
    NO_OVERLAP(y, s.y, bias, s.b, s.elem);
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_conv2d_forward_f32(&q, (const float *)x, (const float *)w,
                                                  (const float *)bias, (float *)y, s.nthreads));
    return from_core(cconv_conv2d_forward_f64(&q, (const double *)x, (const double *)w,
                                              (const double *)bias, (double *)y, s.nthreads));
}

int cconv_conv2d_backward_input(const cconv_conv2d_params_t *p, const void *dy,
                                int64_t dy_len, const void *w, int64_t w_len,
                                void *dx, int64_t dx_len)
{
    cconv_conv2d_params q;
    conv_call s;
    CHECK(conv2d_setup(p, &q, &s));
    CHECK(need(dy, dy_len, s.y));
    CHECK(need(w, w_len, s.w));
    CHECK(need(dx, dx_len, s.x));
    NO_OVERLAP(dx, s.x, dy, s.y, s.elem);
    NO_OVERLAP(dx, s.x, w, s.w, s.elem);
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_conv2d_backward_input_f32(&q, (const float *)dy,
                                                         (const float *)w, (float *)dx,
                                                         s.nthreads));
    return from_core(cconv_conv2d_backward_input_f64(&q, (const double *)dy,
                                                     (const double *)w, (double *)dx,
                                                     s.nthreads));
}

int cconv_conv2d_backward_weight(const cconv_conv2d_params_t *p, const void *dy,
                                 int64_t dy_len, const void *x, int64_t x_len,
                                 void *dw, int64_t dw_len, void *db, int64_t db_len)
{
    cconv_conv2d_params q;
    conv_call s;
    CHECK(conv2d_setup(p, &q, &s));
    CHECK(need(dy, dy_len, s.y));
    CHECK(need(x, x_len, s.x));
    CHECK(need(dw, dw_len, s.w));
    if (db) CHECK(need(db, db_len, s.b));
    NO_OVERLAP(dw, s.w, dy, s.y, s.elem);
    NO_OVERLAP(dw, s.w, x, s.x, s.elem);
    NO_OVERLAP(db, s.b, dy, s.y, s.elem);
    NO_OVERLAP(db, s.b, x, s.x, s.elem);
    NO_OVERLAP(db, s.b, dw, s.w, s.elem);
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_conv2d_backward_weight_f32(&q, (const float *)dy,
                                                          (const float *)x, (float *)dw,
                                                          (float *)db, s.nthreads));
    return from_core(cconv_conv2d_backward_weight_f64(&q, (const double *)dy,
                                                      (const double *)x, (double *)dw,
                                                      (double *)db, s.nthreads));
}

/* 1-D is the 2-D case with h == kh == 1. */
static int conv1d_as_2d(const cconv_conv1d_params_t *p, cconv_conv2d_params_t *t)
{
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_conv1d_params_t)) return CCONV_ERR_STRUCT;
    cconv_conv2d_params_init(t);
    t->dtype = p->dtype; t->num_threads = p->num_threads;
    t->n = p->n; t->c_in = p->c_in; t->h = 1; t->w = p->l;
    t->c_out = p->c_out; t->kh = 1; t->kw = p->k;
    t->stride_w = p->stride;
    t->pad_left = p->pad_left; t->pad_right = p->pad_right;
    t->dil_w = p->dilation;
    t->groups = p->groups;
    return CCONV_SUCCESS;
}

int cconv_conv1d_output_length(const cconv_conv1d_params_t *p, int64_t *out_l)
{
    cconv_conv2d_params_t t;
    int64_t out_h;
    CHECK(conv1d_as_2d(p, &t));
    return cconv_conv2d_output_shape(&t, &out_h, out_l);
}

int cconv_conv1d_forward(const cconv_conv1d_params_t *p, const void *x, int64_t x_len,
                         const void *w, int64_t w_len, const void *bias,
                         int64_t bias_len, void *y, int64_t y_len)
{
    cconv_conv2d_params_t t;
    CHECK(conv1d_as_2d(p, &t));
    return cconv_conv2d_forward(&t, x, x_len, w, w_len, bias, bias_len, y, y_len);
}

int cconv_conv1d_backward_input(const cconv_conv1d_params_t *p, const void *dy,
                                int64_t dy_len, const void *w, int64_t w_len,
                                void *dx, int64_t dx_len)
{
    cconv_conv2d_params_t t;
    CHECK(conv1d_as_2d(p, &t));
    return cconv_conv2d_backward_input(&t, dy, dy_len, w, w_len, dx, dx_len);
}

int cconv_conv1d_backward_weight(const cconv_conv1d_params_t *p, const void *dy,
                                 int64_t dy_len, const void *x, int64_t x_len,
                                 void *dw, int64_t dw_len, void *db, int64_t db_len)
{
    cconv_conv2d_params_t t;
    CHECK(conv1d_as_2d(p, &t));
    return cconv_conv2d_backward_weight(&t, dy, dy_len, x, x_len, dw, dw_len, db, db_len);
}

/* ---- pooling ---- */

/* Output length along one axis, torch's rule (cconv.ops.pool_output_size). */
static int64_t pool_out(int64_t size, int64_t k, int64_t stride, int64_t pad,
                        int64_t dil, int ceil_mode)
{
    const int64_t span = size + 2 * pad - dil * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
    /* the last window must start inside the input or the left padding */
    if (ceil_mode && (out - 1) * stride >= size + pad) out -= 1;
    return out;
}

typedef struct {
    size_t elem;
    int nthreads;
    int64_t x, y;
} pool_call;

static int pool2d_setup(const cconv_pool2d_params_t *p, int average,
                        cconv_pool2d_params *q, pool_call *s)
{
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_pool2d_params_t)) return CCONV_ERR_STRUCT;
    CHECK(call_setup(p->dtype, p->num_threads, &s->elem, &s->nthreads));
    CHECK(range(p->n, 0));
    CHECK(range(p->c, 1)); CHECK(range(p->h, 1)); CHECK(range(p->w, 1));
    CHECK(range(p->kh, 1)); CHECK(range(p->kw, 1));
    CHECK(range(p->stride_h, 0)); CHECK(range(p->stride_w, 0));
    CHECK(range(p->pad_h, 0)); CHECK(range(p->pad_w, 0));
    CHECK(range(p->dil_h, 1)); CHECK(range(p->dil_w, 1));
    if ((p->ceil_mode != 0 && p->ceil_mode != 1) ||
        (p->count_include_pad != 0 && p->count_include_pad != 1))
        return CCONV_ERR_INVALID;
    if (p->pad_h > p->kh / 2 || p->pad_w > p->kw / 2) return CCONV_ERR_INVALID;
    if (average && (p->dil_h != 1 || p->dil_w != 1)) return CCONV_ERR_INVALID;
    int64_t eff_h, eff_w;
    CHECK(mul(p->dil_h, p->kh - 1, &eff_h));
    CHECK(mul(p->dil_w, p->kw - 1, &eff_w));
    const int64_t sh = p->stride_h ? p->stride_h : p->kh;
    const int64_t sw = p->stride_w ? p->stride_w : p->kw;
    memset(q, 0, sizeof(*q));
    q->n = p->n; q->c = p->c; q->h = p->h; q->w = p->w;
    q->kh = p->kh; q->kw = p->kw; q->stride_h = sh; q->stride_w = sw;
    q->pad_top = q->pad_bottom = p->pad_h;
    q->pad_left = q->pad_right = p->pad_w;
    q->dil_h = p->dil_h; q->dil_w = p->dil_w;
    q->count_include_pad = p->count_include_pad;
    q->out_h = pool_out(p->h, p->kh, sh, p->pad_h, p->dil_h, p->ceil_mode);
    q->out_w = pool_out(p->w, p->kw, sw, p->pad_w, p->dil_w, p->ceil_mode);
    if (q->out_h < 1 || q->out_w < 1) return CCONV_ERR_SHAPE;
    if (cconv_pool2d_check(q) != CCONV_OK) return CCONV_ERR_SHAPE;
    CHECK(mul4(p->n, p->c, p->h, p->w, &s->x));
    CHECK(mul4(p->n, p->c, q->out_h, q->out_w, &s->y));
    return CCONV_SUCCESS;
}

int cconv_pool2d_output_shape(const cconv_pool2d_params_t *p, int64_t *out_h,
                              int64_t *out_w)
{
    cconv_pool2d_params q;
    pool_call s;
    CHECK(pool2d_setup(p, 0, &q, &s));
    if (!out_h || !out_w) return CCONV_ERR_NULL;
    *out_h = q.out_h;
    *out_w = q.out_w;
    return CCONV_SUCCESS;
}

int cconv_max_pool2d_forward(const cconv_pool2d_params_t *p, const void *x, int64_t x_len,
                             void *y, int64_t y_len, int64_t *indices,
                             int64_t indices_len)
{
    cconv_pool2d_params q;
    pool_call s;
    CHECK(pool2d_setup(p, 0, &q, &s));
    CHECK(need(x, x_len, s.x));
    CHECK(need(y, y_len, s.y));
    if (indices) CHECK(need(indices, indices_len, s.y));
    NO_OVERLAP(y, s.y, x, s.x, s.elem);
    if (overlap(indices, s.y * 8, x, s.x * (int64_t)s.elem) ||
        overlap(indices, s.y * 8, y, s.y * (int64_t)s.elem))
        return CCONV_ERR_OVERLAP;
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_max_pool2d_forward_f32(&q, (const float *)x, (float *)y,
                                                      indices, s.nthreads));
    return from_core(cconv_max_pool2d_forward_f64(&q, (const double *)x, (double *)y,
                                                  indices, s.nthreads));
}

int cconv_max_pool2d_backward(const cconv_pool2d_params_t *p, const void *dy,
                              int64_t dy_len, const int64_t *indices, int64_t indices_len,
                              void *dx, int64_t dx_len)
{
    cconv_pool2d_params q;
    pool_call s;
    CHECK(pool2d_setup(p, 0, &q, &s));
    CHECK(need(dy, dy_len, s.y));
    if (!indices && s.y > 0) return CCONV_ERR_NULL;
    CHECK(need(indices, indices_len, s.y));
    CHECK(need(dx, dx_len, s.x));
    NO_OVERLAP(dx, s.x, dy, s.y, s.elem);
    if (overlap(dx, s.x * (int64_t)s.elem, indices, s.y * 8)) return CCONV_ERR_OVERLAP;
    const int64_t plane = p->h * p->w;
    for (int64_t i = 0; i < s.y; ++i)
        if (indices[i] < -1 || indices[i] >= plane) return CCONV_ERR_INVALID;
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_max_pool2d_backward_f32(&q, (const float *)dy, indices,
                                                       (float *)dx, s.nthreads));
    return from_core(cconv_max_pool2d_backward_f64(&q, (const double *)dy, indices,
                                                   (double *)dx, s.nthreads));
}

int cconv_avg_pool2d_forward(const cconv_pool2d_params_t *p, const void *x, int64_t x_len,
                             void *y, int64_t y_len)
{
    cconv_pool2d_params q;
    pool_call s;
    CHECK(pool2d_setup(p, 1, &q, &s));
    CHECK(need(x, x_len, s.x));
    CHECK(need(y, y_len, s.y));
    NO_OVERLAP(y, s.y, x, s.x, s.elem);
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_avg_pool2d_forward_f32(&q, (const float *)x, (float *)y,
                                                      s.nthreads));
    return from_core(cconv_avg_pool2d_forward_f64(&q, (const double *)x, (double *)y,
                                                  s.nthreads));
}

int cconv_avg_pool2d_backward(const cconv_pool2d_params_t *p, const void *dy,
                              int64_t dy_len, void *dx, int64_t dx_len)
{
    cconv_pool2d_params q;
    pool_call s;
    CHECK(pool2d_setup(p, 1, &q, &s));
    CHECK(need(dy, dy_len, s.y));
    CHECK(need(dx, dx_len, s.x));
    NO_OVERLAP(dx, s.x, dy, s.y, s.elem);
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_avg_pool2d_backward_f32(&q, (const float *)dy, (float *)dx,
                                                       s.nthreads));
    return from_core(cconv_avg_pool2d_backward_f64(&q, (const double *)dy, (double *)dx,
                                                   s.nthreads));
}

static int pool1d_as_2d(const cconv_pool1d_params_t *p, cconv_pool2d_params_t *t)
{
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_pool1d_params_t)) return CCONV_ERR_STRUCT;
    cconv_pool2d_params_init(t);
    t->dtype = p->dtype; t->num_threads = p->num_threads;
    t->n = p->n; t->c = p->c; t->h = 1; t->w = p->l;
    t->kh = 1; t->kw = p->k;
    t->stride_h = 1; t->stride_w = p->stride;
    t->pad_h = 0; t->pad_w = p->pad;
    t->dil_h = 1; t->dil_w = p->dilation;
    t->ceil_mode = p->ceil_mode;
    t->count_include_pad = p->count_include_pad;
    return CCONV_SUCCESS;
}

int cconv_pool1d_output_length(const cconv_pool1d_params_t *p, int64_t *out_l)
{
    cconv_pool2d_params_t t;
    int64_t out_h;
    CHECK(pool1d_as_2d(p, &t));
    return cconv_pool2d_output_shape(&t, &out_h, out_l);
}

int cconv_max_pool1d_forward(const cconv_pool1d_params_t *p, const void *x, int64_t x_len,
                             void *y, int64_t y_len, int64_t *indices,
                             int64_t indices_len)
{
    cconv_pool2d_params_t t;
    CHECK(pool1d_as_2d(p, &t));
    return cconv_max_pool2d_forward(&t, x, x_len, y, y_len, indices, indices_len);
}

int cconv_max_pool1d_backward(const cconv_pool1d_params_t *p, const void *dy,
                              int64_t dy_len, const int64_t *indices, int64_t indices_len,
                              void *dx, int64_t dx_len)
{
    cconv_pool2d_params_t t;
    CHECK(pool1d_as_2d(p, &t));
    return cconv_max_pool2d_backward(&t, dy, dy_len, indices, indices_len, dx, dx_len);
}

int cconv_avg_pool1d_forward(const cconv_pool1d_params_t *p, const void *x, int64_t x_len,
                             void *y, int64_t y_len)
{
    cconv_pool2d_params_t t;
    CHECK(pool1d_as_2d(p, &t));
    return cconv_avg_pool2d_forward(&t, x, x_len, y, y_len);
}

int cconv_avg_pool1d_backward(const cconv_pool1d_params_t *p, const void *dy,
                              int64_t dy_len, void *dx, int64_t dx_len)
{
    cconv_pool2d_params_t t;
    CHECK(pool1d_as_2d(p, &t));
    return cconv_avg_pool2d_backward(&t, dy, dy_len, dx, dx_len);
}

/* ---- GEMM ---- */

/* Elements a rows x cols matrix with leading dimension ld spans. */
static int span(int64_t rows, int64_t cols, int64_t ld, int64_t *r)
{
    if (rows == 0 || cols == 0) { *r = 0; return CCONV_SUCCESS; }
    CHECK(mul(rows - 1, ld, r));
    if (*r > CAP - cols) return CCONV_ERR_OVERFLOW;
    *r += cols;
    return CCONV_SUCCESS;
}

/* ld == 0: tight (cols); else ld >= cols. */
static int leading(int64_t ld, int64_t cols, int64_t *r)
{
    CHECK(range(ld, 0));
    if (ld == 0) ld = cols > 0 ? cols : 1;
    if (ld < cols) return CCONV_ERR_INVALID;
    *r = ld;
    return CCONV_SUCCESS;
}

static float to_f32(double v)
{
    /* out-of-range double -> float conversion is undefined in C */
    if (v > FLT_MAX) return (float)INFINITY;
    if (v < -FLT_MAX) return -(float)INFINITY;
    return (float)v;
}

int cconv_gemm(const cconv_gemm_params_t *p, const void *a, int64_t a_len,
               const void *b, int64_t b_len, void *c, int64_t c_len)
{
    size_t elem;
    int nthreads;
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_gemm_params_t)) return CCONV_ERR_STRUCT;
    CHECK(call_setup(p->dtype, p->num_threads, &elem, &nthreads));
    if ((p->trans_a != 0 && p->trans_a != 1) || (p->trans_b != 0 && p->trans_b != 1))
        return CCONV_ERR_INVALID;
    CHECK(range(p->m, 0)); CHECK(range(p->n, 0)); CHECK(range(p->k, 0));
    const int64_t M = p->m, N = p->n, K = p->k;
    const int64_t ra = p->trans_a ? K : M, ca = p->trans_a ? M : K;
    const int64_t rb = p->trans_b ? N : K, cb = p->trans_b ? K : N;
    int64_t lda, ldb, ldc, na, nb, nc;
    CHECK(leading(p->lda, ca, &lda));
    CHECK(leading(p->ldb, cb, &ldb));
    CHECK(leading(p->ldc, N, &ldc));
    CHECK(span(ra, ca, lda, &na));
    CHECK(span(rb, cb, ldb, &nb));
    CHECK(span(M, N, ldc, &nc));
    CHECK(need(a, a_len, na));
    CHECK(need(b, b_len, nb));
    CHECK(need(c, c_len, nc));
    NO_OVERLAP(c, nc, a, na, elem);
    NO_OVERLAP(c, nc, b, nb, elem);
    if (M == 0 || N == 0) return CCONV_SUCCESS;
    if (K == 0) {                       /* C = beta C */
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
                if (p->dtype == CCONV_FLOAT32) {
                    float *ci = (float *)c + i * ldc + j;
                    *ci = p->beta == 0.0 ? 0.0f : to_f32(p->beta) * *ci;
                } else {
                    double *ci = (double *)c + i * ldc + j;
                    *ci = p->beta == 0.0 ? 0.0 : p->beta * *ci;
                }
            }
        return CCONV_SUCCESS;
    }
    if (p->dtype == CCONV_FLOAT32)
        return from_core(cconv_gemm_f32(p->trans_a, p->trans_b, M, N, K, to_f32(p->alpha),
                                        (const float *)a, lda, (const float *)b, ldb,
                                        to_f32(p->beta), (float *)c, ldc, nthreads));
    return from_core(cconv_gemm_f64(p->trans_a, p->trans_b, M, N, K, p->alpha,
                                    (const double *)a, lda, (const double *)b, ldb,
                                    p->beta, (double *)c, ldc, nthreads));
}

/* ---- symmetric eigensolver (eigh.c) ---- */

int cconv_eigh(const cconv_eigh_params_t *p, const void *a, int64_t a_len,
               void *w, int64_t w_len, void *v, int64_t v_len)
{
    size_t elem;
    int nthreads;
    if (!p) return CCONV_ERR_NULL;
    if (p->struct_size < sizeof(cconv_eigh_params_t)) return CCONV_ERR_STRUCT;
    CHECK(call_setup(p->dtype, p->num_threads, &elem, &nthreads));
    (void)nthreads;                     /* the reference solver is serial */
    if (p->upper != 0 && p->upper != 1) return CCONV_ERR_INVALID;
    CHECK(range(p->n, 1));
    const int64_t n = p->n;
    int64_t lda, na, nn;
    CHECK(leading(p->lda, n, &lda));
    CHECK(span(n, n, lda, &na));
    CHECK(mul(n, n, &nn));
    CHECK(need(a, a_len, na));
    CHECK(need(w, w_len, n));
    if (v) CHECK(need(v, v_len, nn));
    /* a is copied before anything is written: v may overlap it, w may not */
    NO_OVERLAP(w, n, a, na, elem);
    NO_OVERLAP(w, n, v, nn, elem);
    int st = p->dtype == CCONV_FLOAT32
        ? cconv_eigh_f32(n, (const float *)a, lda, p->upper, (float *)w, (float *)v)
        : cconv_eigh_f64(n, (const double *)a, lda, p->upper, (double *)w, (double *)v);
    if (st == CCONV_ENOCONV) return CCONV_ERR_NOCONV;
    if (st == CCONV_ERANGE) return CCONV_ERR_OVERFLOW;
    return from_core(st);
}

/* ---- the function table of the capsule cconv._C_API ---- */

static const cconv_api_t api_table = {
    CCONV_ABI_MAJOR,
    CCONV_ABI_MINOR,
    sizeof(cconv_api_t),
    cconv_version,
    cconv_abi_version,
    cconv_strerror,
    cconv_openmp_enabled,
    cconv_set_num_threads,
    cconv_get_num_threads,
    cconv_conv2d_output_shape,
    cconv_conv2d_forward,
    cconv_conv2d_backward_input,
    cconv_conv2d_backward_weight,
    cconv_conv1d_output_length,
    cconv_conv1d_forward,
    cconv_conv1d_backward_input,
    cconv_conv1d_backward_weight,
    cconv_pool2d_output_shape,
    cconv_max_pool2d_forward,
    cconv_max_pool2d_backward,
    cconv_avg_pool2d_forward,
    cconv_avg_pool2d_backward,
    cconv_pool1d_output_length,
    cconv_max_pool1d_forward,
    cconv_max_pool1d_backward,
    cconv_avg_pool1d_forward,
    cconv_avg_pool1d_backward,
    cconv_gemm,
    cconv_eigh,
};

const cconv_api_t *cconv_get_api(void) { return &api_table; }
