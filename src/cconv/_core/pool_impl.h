/* Type-generic body of pool.c, included once per dtype with T and SFX set. */

/* The 2x2 stride-2 window without padding is by far the most common; its own
 * loop lets the compiler vectorise. */
CCONV_CLONES static void SFX(max2x2_plane)(const cconv_pool2d_params *p, const T *xp, T *yp)
{
    const int64_t W = p->w, OH = p->out_h, OW = p->out_w;
    for (int64_t oh = 0; oh < OH; ++oh) {
        const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;
        T *yr = yp + oh * OW;
        for (int64_t ow = 0; ow < OW; ++ow) {
            T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            /* NaN wins, as in numpy's max */
            T ab = (b > a || b != b) ? b : a;
            T cd = (d > c || d != d) ? d : c;
            yr[ow] = (cd > ab || cd != cd) ? cd : ab;
        }
    }
}

/* The same window with argmax indices (the training path), picking exactly
 * what max_plane's scan picks: the first NaN in row-major window order, else
 * the first maximum (ties keep the earlier). The loops are branch-free and
 * choose indices through all-ones masks of T's width (IT) so that they
 * vectorise like max2x2_plane; a branchy loop was ~10x slower on random data.
 * Each row first runs a loop that ignores NaN and notes whether it saw one;
 * only such rows are redone with the NaN-aware comparison. */
#define CCONV_TAKES(a, b) (!((b) <= (a) || (a) != (a))) /* b replaces a */
CCONV_CLONES static void SFX(max2x2_idx_plane)(const cconv_pool2d_params *p, const T *xp,
                                               T *yp, int64_t *ip)
{
    const int64_t W = p->w, OH = p->out_h, OW = p->out_w;
    for (int64_t oh = 0; oh < OH; ++oh) {
        const T *r0 = xp + 2 * oh * W, *r1 = r0 + W;
        T *yr = yp + oh * OW;
        int64_t *ir = ip + oh * OW;
        const int64_t base = 2 * oh * W;
        IT nan = 0;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            const T ab = b > a ? b : a, cd = d > c ? d : c;
            yr[ow] = cd > ab ? cd : ab;
            const IT mb = -(IT)(b > a), md = -(IT)(d > c), mc = -(IT)(cd > ab);
            /* offset in the window: mc ? W + (md & 1) : (mb & 1) */
            ir[ow] = base + 2 * ow + (int64_t)((mc & ((IT)W - md)) | (~mc & -mb));
            nan |= (IT)(a != a) | (IT)(b != b) | (IT)(c != c) | (IT)(d != d);
        }
        if (!nan) continue;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            const T ab = CCONV_TAKES(a, b) ? b : a, cd = CCONV_TAKES(c, d) ? d : c;
            yr[ow] = CCONV_TAKES(ab, cd) ? cd : ab;
            const IT mb = -(IT)CCONV_TAKES(a, b), md = -(IT)CCONV_TAKES(c, d);
            const IT mc = -(IT)CCONV_TAKES(ab, cd);
            ir[ow] = base + 2 * ow + (int64_t)((mc & ((IT)W - md)) | (~mc & -mb));
        }
    }
}
#undef CCONV_TAKES

CCONV_CLONES static void SFX(max_plane)(const cconv_pool2d_params *p, const T *xp, T *yp,
                           int64_t *ip)
{
    const int64_t H = p->h, W = p->w, OH = p->out_h, OW = p->out_w;
    for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = oh * p->stride_h - p->pad_top;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t w0 = ow * p->stride_w - p->pad_left;
            T best = -(T)__builtin_inf();
            int64_t bi = -1;
            for (int64_t i = 0; i < p->kh; ++i) {
                const int64_t ih = h0 + i * p->dil_h;
                if (ih < 0 || ih >= H) continue;
                for (int64_t j = 0; j < p->kw; ++j) {
                    const int64_t iw = w0 + j * p->dil_w;
                    if (iw < 0 || iw >= W) continue;
                    const T v = xp[ih * W + iw];
                    if (bi < 0 || v > best || v != v) { best = v; bi = ih * W + iw; }
                    if (v != v) goto done; /* first NaN decides, like numpy */
                }
            }
        done:
            yp[oh * OW + ow] = best;
            if (ip) ip[oh * OW + ow] = bi;
        }
    }
}

int SFX(cconv_max_pool2d_forward)(const cconv_pool2d_params *p, const T *x, T *y,
                                  int64_t *indices, int nthreads)
{
    const int64_t planes = p->n * p->c, HW = p->h * p->w, OHW = p->out_h * p->out_w;
    const int fast = p->kh == 2 && p->kw == 2 && p->stride_h == 2 &&
                     p->stride_w == 2 && p->pad_top == 0 && p->pad_left == 0 &&
                     p->dil_h == 1 && p->dil_w == 1 && 2 * p->out_h <= p->h &&
                     2 * p->out_w <= p->w;
    const int nt = cconv_threads_for(nthreads, (double)planes * OHW * p->kh * p->kw);
    /* max2x2_idx_plane holds the in-window offset W + 1 in an IT */
    const int fast_idx = fast && indices && p->w < INT32_MAX;
    int64_t t;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (t = 0; t < planes; ++t) {
        if (fast_idx)
            SFX(max2x2_idx_plane)(p, x + t * HW, y + t * OHW, indices + t * OHW);
        else if (fast && !indices)
            SFX(max2x2_plane)(p, x + t * HW, y + t * OHW);
        else
            SFX(max_plane)(p, x + t * HW, y + t * OHW, indices ? indices + t * OHW : NULL);
    }
    (void)nt;
    return CCONV_OK;
}

/* 2x2 windows at stride 2 without padding cover each input at most once:
 * every element of the plane is written once, in order (the window's
 * argmax gets its gradient, the other three and any uncovered last row or
 * column 0), instead of clearing the plane and scattering into it (three
 * passes over dx). Returns 0, having written nothing valid, when an index
 * lies outside its own window (indices given by the caller): the plane then
 * takes the general scatter. */
CCONV_CLONES static int SFX(max2x2_backward_plane)(const cconv_pool2d_params *p, const T *dyp,
                                                   const int64_t *ip, T *dxp)
{
    const int64_t H = p->h, W = p->w, OH = p->out_h, OW = p->out_w;
    int64_t bad = 0;
    for (int64_t oh = 0; oh < OH; ++oh) {
        T *r0 = dxp + 2 * oh * W, *r1 = r0 + W;
        const T *g = dyp + oh * OW;
        const int64_t *ir = ip + oh * OW, base = 2 * oh * W;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t d = ir[ow] - base - 2 * ow;
            const T v = g[ow];
            r0[2 * ow] = d == 0 ? v : (T)0;
            r0[2 * ow + 1] = d == 1 ? v : (T)0;
            r1[2 * ow] = d == W ? v : (T)0;
            r1[2 * ow + 1] = d == W + 1 ? v : (T)0;
            bad |= (d != 0) & (d != 1) & (d != W) & (d != W + 1);
        }
        for (int64_t iw = 2 * OW; iw < W; ++iw) r0[iw] = r1[iw] = 0;
    }
    for (int64_t ih = 2 * OH; ih < H; ++ih)
        for (int64_t iw = 0; iw < W; ++iw) dxp[ih * W + iw] = 0;
    return !bad;
}

int SFX(cconv_max_pool2d_backward)(const cconv_pool2d_params *p, const T *dy,
                                   const int64_t *indices, T *dx, int nthreads)
{
    const int64_t planes = p->n * p->c, HW = p->h * p->w, OHW = p->out_h * p->out_w;
    const int fast = p->kh == 2 && p->kw == 2 && p->stride_h == 2 &&
                     p->stride_w == 2 && p->pad_top == 0 && p->pad_left == 0 &&
                     p->dil_h == 1 && p->dil_w == 1 && 2 * p->out_h <= p->h &&
                     2 * p->out_w <= p->w;
    const int nt = cconv_threads_for(nthreads, (double)planes * (OHW + HW));
    int invalid = 0;
    int64_t t;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1) \
        reduction(|: invalid)
#endif
    for (t = 0; t < planes; ++t) {
        T *dxp = dx + t * HW;
        const T *dyp = dy + t * OHW;
        const int64_t *ip = indices + t * OHW;
        if (fast && SFX(max2x2_backward_plane)(p, dyp, ip, dxp)) continue;
        memset(dxp, 0, (size_t)HW * sizeof(T));
        for (int64_t q = 0; q < OHW; ++q) {
            const int64_t i = ip[q];
            if (i >= 0 && i < HW) dxp[i] += dyp[q];
            else invalid |= i != -1;
        }
    }
    (void)nt;
    return invalid ? CCONV_EINVAL : CCONV_OK;
}

/* Window [h0, h1) x [w0, w1) clipped to the input, and its divisor. */
static inline int64_t SFX(avg_window)(const cconv_pool2d_params *p, int64_t oh,
                                      int64_t ow, int64_t *h0, int64_t *h1,
                                      int64_t *w0, int64_t *w1)
{
    int64_t hs = oh * p->stride_h - p->pad_top, ws = ow * p->stride_w - p->pad_left;
    int64_t he = hs + p->kh, we = ws + p->kw;
    if (he > p->h + p->pad_bottom) he = p->h + p->pad_bottom;
    if (we > p->w + p->pad_right) we = p->w + p->pad_right;
    const int64_t padded = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p->h) he = p->h;
    if (we > p->w) we = p->w;
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    if (he <= hs || we <= ws) return 0;
    return p->count_include_pad ? padded : (he - hs) * (we - ws);
}

int SFX(cconv_avg_pool2d_forward)(const cconv_pool2d_params *p, const T *x, T *y,
                                  int nthreads)
{
    const int64_t planes = p->n * p->c, HW = p->h * p->w, OHW = p->out_h * p->out_w;
    const int nt = cconv_threads_for(nthreads, (double)planes * OHW * p->kh * p->kw);
    int64_t t;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (t = 0; t < planes; ++t) {
        const T *xp = x + t * HW;
        T *yp = y + t * OHW;
        for (int64_t oh = 0; oh < p->out_h; ++oh) {
            for (int64_t ow = 0; ow < p->out_w; ++ow) {
                int64_t h0, h1, w0, w1;
                const int64_t div = SFX(avg_window)(p, oh, ow, &h0, &h1, &w0, &w1);
                T s = 0;
                for (int64_t ih = h0; ih < h1; ++ih)
                    for (int64_t iw = w0; iw < w1; ++iw) s += xp[ih * p->w + iw];
                yp[oh * p->out_w + ow] = div > 0 ? s / (T)div : (T)0;
            }
        }
    }
    (void)nt;
    return CCONV_OK;
}

int SFX(cconv_avg_pool2d_backward)(const cconv_pool2d_params *p, const T *dy, T *dx,
                                   int nthreads)
{
    const int64_t planes = p->n * p->c, HW = p->h * p->w, OHW = p->out_h * p->out_w;
    const int nt = cconv_threads_for(nthreads, (double)planes * OHW * p->kh * p->kw);
    int64_t t;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (t = 0; t < planes; ++t) {
        T *dxp = dx + t * HW;
        const T *dyp = dy + t * OHW;
        memset(dxp, 0, (size_t)HW * sizeof(T));
        for (int64_t oh = 0; oh < p->out_h; ++oh) {
            for (int64_t ow = 0; ow < p->out_w; ++ow) {
                int64_t h0, h1, w0, w1;
                const int64_t div = SFX(avg_window)(p, oh, ow, &h0, &h1, &w0, &w1);
                if (div <= 0) continue;
                const T g = dyp[oh * p->out_w + ow] / (T)div;
                for (int64_t ih = h0; ih < h1; ++ih)
                    for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * p->w + iw] += g;
            }
        }
    }
    (void)nt;
    return CCONV_OK;
}
