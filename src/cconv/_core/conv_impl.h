/* Type-generic body of conv.c, included once per dtype with T, SFX, GEMM set. */

/* Unfold columns [p0, p0 + pt) of one group of one image into col (K rows of
 * pt, row stride ld >= pt: several images can share one col). */
CCONV_CLONES static void SFX(im2col)(const cconv_conv2d_params *p, const T *x, int64_t cin_g,
                        int64_t p0, int64_t pt, T *col, int64_t ld)
{
    const int64_t H = p->h, W = p->w, OW = p->out_w, kh = p->kh, kw = p->kw;
    const int64_t sh = p->stride_h, sw = p->stride_w;
    const int64_t K = cin_g * kh * kw;
    (void)K;
    /* rows r = (c * kh + i) * kw + j, walked without divisions */
    for (int64_t r = 0, c = 0, i = 0, j = 0; c < cin_g;
         ++r, j = (j + 1 == kw) ? 0 : j + 1, i = (j == 0) ? ((i + 1 == kh) ? 0 : i + 1) : i,
         c = (j == 0 && i == 0) ? c + 1 : c) {
        const T *xc = x + c * H * W;
        T *dst = col + r * ld;
        int64_t q = 0, oh = p0 / OW, ow = p0 % OW;
        /* the valid part of a whole output row, the same for every row: its
         * divisions cost more than copying a short (8-wide) row */
        const int64_t iw_full = -p->pad_left + j * p->dil_w;
        int64_t lo_full, hi_full;
        valid_range(iw_full, sw, W, OW, &lo_full, &hi_full);
        const int64_t ih_first = -p->pad_top + i * p->dil_h;
        const int64_t OH = p->out_h;
        if (p0 == 0 && pt == OH * OW && sw == 1 && lo_full == 0 && hi_full == OW &&
            ih_first >= 0 && (OH - 1) * sh + ih_first < H) {
            /* the whole image, every tap inside it (unpadded small maps such
             * as LeNet's): a plain strided 2-D copy, no per-row bookkeeping */
            const T *src = xc + ih_first * W + iw_full;
            for (int64_t oh2 = 0; oh2 < OH; ++oh2) {
                const T *CCONV_RESTRICT sr = src + oh2 * sh * W;
                T *CCONV_RESTRICT dr = dst + oh2 * OW;
                for (int64_t t = 0; t < OW; ++t) dr[t] = sr[t];
            }
            continue;
        }
        while (q < pt) {
            int64_t seg = OW - ow;
            if (seg > pt - q) seg = pt - q;
            const int64_t ih = oh * sh - p->pad_top + i * p->dil_h;
            if (ih < 0 || ih >= H) {
                T *d = dst + q;
                for (int64_t t = 0; t < seg; ++t) d[t] = 0;
            } else {
                const T *xrow = xc + ih * W;
                const int64_t iw0 = ow * sw + iw_full;
                int64_t lo = lo_full, hi = hi_full;
                if (ow != 0 || seg != OW) valid_range(iw0, sw, W, seg, &lo, &hi);
                T *d = dst + q;
                for (int64_t t = 0; t < lo; ++t) d[t] = 0;
                if (sw == 1) {
                    if (hi - lo >= 64) {
                        memcpy(d + lo, xrow + iw0 + lo, (size_t)(hi - lo) * sizeof(T));
                    } else {            /* short rows: no call */
                        const T *xs = xrow + iw0;
                        for (int64_t t = lo; t < hi; ++t) d[t] = xs[t];
                    }
                } else if (sw == 2) {
                    /* a constant stride lets the compiler vectorise the gather
                     * (stem convolutions spent 20% of their time here) */
                    const T *xs = xrow + iw0;
                    for (int64_t t = lo; t < hi; ++t) d[t] = xs[2 * t];
                } else {
                    for (int64_t t = lo; t < hi; ++t) d[t] = xrow[iw0 + t * sw];
                }
                for (int64_t t = hi; t < seg; ++t) d[t] = 0;
            }
            q += seg; ow = 0; ++oh;
        }
    }
}

/* Add the rows [r0, r1) of col (K x pt, columns [p0, p0 + pt)) back into x. */
CCONV_CLONES static void SFX(col2im)(const cconv_conv2d_params *p, const T *col, int64_t r0,
                        int64_t r1, int64_t p0, int64_t pt, T *x)
{
    const int64_t H = p->h, W = p->w, OW = p->out_w, kh = p->kh, kw = p->kw;
    const int64_t sh = p->stride_h, sw = p->stride_w;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        T *xc = x + c * H * W;
        const T *src = col + r * pt;
        int64_t q = 0, oh = p0 / OW, ow = p0 % OW;
        while (q < pt) {
            int64_t seg = OW - ow;
            if (seg > pt - q) seg = pt - q;
            const int64_t ih = oh * sh - p->pad_top + i * p->dil_h;
            if (ih >= 0 && ih < H) {
                T *xrow = xc + ih * W;
                const int64_t iw0 = ow * sw - p->pad_left + j * p->dil_w;
                int64_t lo, hi;
                valid_range(iw0, sw, W, seg, &lo, &hi);
                const T *s = src + q;
                if (sw == 1) {
                    T *xr = xrow + iw0;
                    for (int64_t t = lo; t < hi; ++t) xr[t] += s[t];
                } else {
                    for (int64_t t = lo; t < hi; ++t) xrow[iw0 + t * sw] += s[t];
                }
            }
            q += seg; ow = 0; ++oh;
        }
    }
}

static int SFX(is_pointwise)(const cconv_conv2d_params *p)
{
    return p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
           p->pad_top == 0 && p->pad_bottom == 0 && p->pad_left == 0 &&
           p->pad_right == 0;
}

static int SFX(is_depthwise)(const cconv_conv2d_params *p)
{
    return p->groups == p->c_in && p->groups > 1;
}

/* ---------------- depthwise (one input channel per group) ---------------- */

/* Copy one input plane into a zero-bordered buffer so the tap loops below
 * need no bounds checks. */
CCONV_CLONES static void SFX(pad_plane)(const cconv_conv2d_params *p, const T *xp, T *buf,
                                        int64_t Hp, int64_t Wp)
{
    memset(buf, 0, (size_t)(Hp * Wp) * sizeof(T));
    for (int64_t ih = 0; ih < p->h; ++ih)
        memcpy(buf + (ih + p->pad_top) * Wp + p->pad_left, xp + ih * p->w,
               (size_t)p->w * sizeof(T));
}

/* 3x3, stride 1, no dilation: all nine taps of an output in registers, two
 * output rows per pass (the four input rows they need are loaded once).
 * restrict: without it the compiler must assume y aliases the input and
 * does not vectorise along the row. */
CCONV_CLONES static void SFX(dw3x3_s1)(const T *CCONV_RESTRICT xp, int64_t Wp,
                                       const T *CCONV_RESTRICT k, T b,
                                       T *CCONV_RESTRICT y, int64_t OH, int64_t OW,
                                       int relu)
{
    const T k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5];
    const T k6 = k[6], k7 = k[7], k8 = k[8];
    int64_t oh = 0;
    for (; oh + 2 <= OH; oh += 2) {
        const T *CCONV_RESTRICT r0 = xp + oh * Wp;
        const T *CCONV_RESTRICT r1 = r0 + Wp;
        const T *CCONV_RESTRICT r2 = r1 + Wp;
        const T *CCONV_RESTRICT r3 = r2 + Wp;
        T *CCONV_RESTRICT y0 = y + oh * OW;
        T *CCONV_RESTRICT y1 = y0 + OW;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const T a0 = r1[ow], a1 = r1[ow + 1], a2 = r1[ow + 2];
            const T c0 = r2[ow], c1 = r2[ow + 1], c2 = r2[ow + 2];
            T v0 = b + k0 * r0[ow] + k1 * r0[ow + 1] + k2 * r0[ow + 2]
                     + k3 * a0 + k4 * a1 + k5 * a2 + k6 * c0 + k7 * c1 + k8 * c2;
            T v1 = b + k0 * a0 + k1 * a1 + k2 * a2 + k3 * c0 + k4 * c1 + k5 * c2
                     + k6 * r3[ow] + k7 * r3[ow + 1] + k8 * r3[ow + 2];
            if (relu) { v0 = v0 < 0 ? 0 : v0; v1 = v1 < 0 ? 0 : v1; }
            y0[ow] = v0;
            y1[ow] = v1;
        }
    }
    for (; oh < OH; ++oh) {
        const T *CCONV_RESTRICT r0 = xp + oh * Wp;
        const T *CCONV_RESTRICT r1 = r0 + Wp;
        const T *CCONV_RESTRICT r2 = r1 + Wp;
        T *CCONV_RESTRICT yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ++ow) {
            T v = b + k0 * r0[ow] + k1 * r0[ow + 1] + k2 * r0[ow + 2]
                    + k3 * r1[ow] + k4 * r1[ow + 1] + k5 * r1[ow + 2]
                    + k6 * r2[ow] + k7 * r2[ow + 1] + k8 * r2[ow + 2];
            yr[ow] = (relu && v < 0) ? 0 : v;
        }
    }
}

/* The two edge columns of a 3x3 "same" output row (one when W == 1) from
 * input rows r0..r2, taps outside the row skipped. Inlined into the AVX2
 * clone: called out of line from 256-bit code it cost 36% of a 128x56x56
 * layer (5x slower than the rows themselves, measured with perf). */
CCONV_ALWAYS_INLINE void SFX(dw3x3_edges)(const T *r0, const T *r1, const T *r2, int64_t W, const T *k,
                             T b, T *yr, int relu)
{
    for (int64_t e = 0; e < 2 && e < W; ++e) {
        const int64_t ow = e == 0 ? 0 : W - 1;
        T v = b;
        for (int64_t j = -1; j <= 1; ++j) {
            if (ow + j < 0 || ow + j >= W) continue;
            v += k[1 + j] * r0[ow + j] + k[4 + j] * r1[ow + j] + k[7 + j] * r2[ow + j];
        }
        yr[ow] = (relu && v < 0) ? 0 : v;
    }
}

/* 3x3, stride 1, padding 1 on every side (the common "same" layer), read in
 * place: rows above and below the image are a zero row, the first and last
 * output columns are computed apart. Copying each plane into a padded buffer
 * first took a third of the time. zrow: W zeros. */
CCONV_CLONES static void SFX(dw3x3_s1_p1)(const T *CCONV_RESTRICT xp, int64_t H, int64_t W,
                                          const T *CCONV_RESTRICT k, T b,
                                          T *CCONV_RESTRICT y, int relu,
                                          const T *CCONV_RESTRICT zrow)
{
    const T k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5];
    const T k6 = k[6], k7 = k[7], k8 = k[8];
    int64_t oh = 0;
#if defined(__GNUC__) || defined(__clang__)
    /* Rows wide enough for a vector: two output rows per pass from four
     * input rows (12 vector loads for 18 multiply-adds instead of 18), the
     * interior in whole vectors, the last one shifted back to end at column
     * W - 2 (it recomputes a few columns: the same values). GCC's own
     * vectorisation of the loop below left 6 of 54 interior columns of a
     * 56-wide row to scalar code. */
    enum { VL = 32 / (int)sizeof(T) };
    typedef T vt __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
    if (W - 2 >= VL) {
        const vt one = (vt){0} + 1;
        const vt w0 = one * k0, w1 = one * k1, w2 = one * k2, w3 = one * k3, w4 = one * k4;
        const vt w5 = one * k5, w6 = one * k6, w7 = one * k7, w8 = one * k8, vb = one * b;
        const vt zero = {0};
        for (; oh < H; oh += 2) {
            const int two = oh + 1 < H;
            const T *CCONV_RESTRICT r0 = oh > 0 ? xp + (oh - 1) * W : zrow;
            const T *CCONV_RESTRICT r1 = xp + oh * W;
            const T *CCONV_RESTRICT r2 = two ? xp + (oh + 1) * W : zrow;
            const T *CCONV_RESTRICT r3 = two && oh + 2 < H ? xp + (oh + 2) * W : zrow;
            T *CCONV_RESTRICT y0 = y + oh * W;
            T *CCONV_RESTRICT y1 = two ? y0 + W : y0;   /* (written last: row oh wins) */
            for (int64_t ow = 1;; ow += VL) {
                if (ow + VL > W - 1) ow = W - 1 - VL;
                const vt a0 = *(const vt *)(r1 + ow - 1), a1 = *(const vt *)(r1 + ow);
                const vt a2 = *(const vt *)(r1 + ow + 1);
                const vt c0 = *(const vt *)(r2 + ow - 1), c1 = *(const vt *)(r2 + ow);
                const vt c2 = *(const vt *)(r2 + ow + 1);
                vt v0 = vb + w0 * *(const vt *)(r0 + ow - 1) + w1 * *(const vt *)(r0 + ow)
                           + w2 * *(const vt *)(r0 + ow + 1)
                           + w3 * a0 + w4 * a1 + w5 * a2 + w6 * c0 + w7 * c1 + w8 * c2;
                vt v1 = vb + w0 * a0 + w1 * a1 + w2 * a2 + w3 * c0 + w4 * c1 + w5 * c2
                           + w6 * *(const vt *)(r3 + ow - 1) + w7 * *(const vt *)(r3 + ow)
                           + w8 * *(const vt *)(r3 + ow + 1);
                if (relu) {   /* lanes below zero cleared; NaN stays NaN */
                    const __typeof__(v0 < zero) n0 = v0 < zero, n1 = v1 < zero;
                    v0 = (vt)((__typeof__(n0))v0 & ~n0);
                    v1 = (vt)((__typeof__(n1))v1 & ~n1);
                }
                *(vt *)(y1 + ow) = v1;
                *(vt *)(y0 + ow) = v0;
                if (ow + VL >= W - 1) break;
            }
            SFX(dw3x3_edges)(r0, r1, r2, W, k, b, y0, relu);
            if (two) SFX(dw3x3_edges)(r1, r2, r3, W, k, b, y1, relu);
        }
        return;
    }
#endif
    for (; oh < H; ++oh) {
        const T *CCONV_RESTRICT r0 = oh > 0 ? xp + (oh - 1) * W : zrow;
        const T *CCONV_RESTRICT r1 = xp + oh * W;
        const T *CCONV_RESTRICT r2 = oh + 1 < H ? xp + (oh + 1) * W : zrow;
        T *CCONV_RESTRICT yr = y + oh * W;
        for (int64_t ow = 1; ow + 1 < W; ++ow) {
            const T v = b + k0 * r0[ow - 1] + k1 * r0[ow] + k2 * r0[ow + 1]
                          + k3 * r1[ow - 1] + k4 * r1[ow] + k5 * r1[ow + 1]
                          + k6 * r2[ow - 1] + k7 * r2[ow] + k8 * r2[ow + 1];
            yr[ow] = (relu && v < 0) ? 0 : v;
        }
        SFX(dw3x3_edges)(r0, r1, r2, W, k, b, yr, relu);
    }
}

/* Any kernel on a padded plane: one tap at a time over a whole output row. */
CCONV_CLONES static void SFX(dw_padded)(const cconv_conv2d_params *p, const T *xp,
                                        int64_t Wp, const T *wk, T b, T *y)
{
    const int64_t OH = p->out_h, OW = p->out_w, sw = p->stride_w;
    for (int64_t oh = 0; oh < OH; ++oh) {
        T *yr = y + oh * OW;
        for (int64_t q = 0; q < OW; ++q) yr[q] = b;
        for (int64_t i = 0; i < p->kh; ++i) {
            for (int64_t j = 0; j < p->kw; ++j) {
                const T wv = wk[i * p->kw + j];
                const T *xr = xp + (oh * p->stride_h + i * p->dil_h) * Wp + j * p->dil_w;
                if (sw == 1)
                    for (int64_t q = 0; q < OW; ++q) yr[q] += wv * xr[q];
                else
                    for (int64_t q = 0; q < OW; ++q) yr[q] += wv * xr[q * sw];
            }
        }
    }
}

static int SFX(dw_forward)(const cconv_conv2d_params *p, const T *x, const T *w,
                           const T *bias, T *y, int act, int nthreads)
{
    const int64_t mult = p->c_out / p->c_in, HW = p->h * p->w;
    const int64_t OHW = p->out_h * p->out_w, planes = p->n * p->c_out;
    const int64_t Hp = p->h + p->pad_top + p->pad_bottom;
    const int64_t Wp = p->w + p->pad_left + p->pad_right;
    const int padded = Hp != p->h || Wp != p->w;
    const int fast3x3 = p->kh == 3 && p->kw == 3 && p->stride_h == 1 &&
                        p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1;
    const int same3x3 = fast3x3 && p->pad_top == 1 && p->pad_bottom == 1 &&
                        p->pad_left == 1 && p->pad_right == 1;
    const int nt = cconv_threads_for(nthreads, (double)planes * OHW * p->kh * p->kw);
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        /* a padded copy of the plane, or (same3x3) one zero row */
        T *buf = same3x3 ? (T *)calloc((size_t)p->w, sizeof(T))
               : padded ? (T *)malloc((size_t)(Hp * Wp) * sizeof(T)) : NULL;
        int64_t filled = -1;   /* which input plane buf holds */
        if (padded && !buf) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        int64_t t;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (t = 0; t < planes; ++t) {
            if (padded && !buf) continue;
            const int64_t n = t / p->c_out, co = t % p->c_out, ci = co / mult;
            const int64_t plane = n * p->c_in + ci;
            const T *src = x + plane * HW;
            if (same3x3) {
                SFX(dw3x3_s1_p1)(src, p->h, p->w, w + co * 9, bias ? bias[co] : (T)0,
                                 y + t * OHW, act == CCONV_ACT_RELU, buf);
                continue;
            }
            if (padded) {
                if (filled != plane) { SFX(pad_plane)(p, src, buf, Hp, Wp); filled = plane; }
                src = buf;
            }
            const T *wk = w + co * p->kh * p->kw;
            const T b = bias ? bias[co] : (T)0;
            T *yp = y + t * OHW;
            if (fast3x3) {
                SFX(dw3x3_s1)(src, Wp, wk, b, yp, p->out_h, p->out_w,
                              act == CCONV_ACT_RELU);
            } else {
                SFX(dw_padded)(p, src, Wp, wk, b, yp);
                if (act == CCONV_ACT_RELU)
                    for (int64_t q = 0; q < OHW; ++q) yp[q] = yp[q] < 0 ? 0 : yp[q];
            }
        }
        free(buf);
        cconv_fp_leave(fpm);
    }
    (void)nt;
    return status;
}

/* dx of one input plane: every output channel fed by it scatters its taps. */
CCONV_CLONES static void SFX(dw_plane_backward_input)(const cconv_conv2d_params *p,
                                                      const T *dy_n, const T *w,
                                                      int64_t ci, T *dxp)
{
    const int64_t mult = p->c_out / p->c_in, H = p->h, W = p->w;
    const int64_t OH = p->out_h, OW = p->out_w, OHW = OH * OW;
    const int64_t sh = p->stride_h, sw = p->stride_w;
    memset(dxp, 0, (size_t)(H * W) * sizeof(T));
    for (int64_t m = 0; m < mult; ++m) {
        const int64_t co = ci * mult + m;
        const T *dyp = dy_n + co * OHW;
        const T *wk = w + co * p->kh * p->kw;
        for (int64_t i = 0; i < p->kh; ++i) {
            for (int64_t oh = 0; oh < OH; ++oh) {
                const int64_t ih = oh * sh - p->pad_top + i * p->dil_h;
                if (ih < 0 || ih >= H) continue;
                T *dxrow = dxp + ih * W;
                const T *dyrow = dyp + oh * OW;
                for (int64_t j = 0; j < p->kw; ++j) {
                    const T wv = wk[i * p->kw + j];
                    const int64_t iw0 = -p->pad_left + j * p->dil_w;
                    int64_t lo, hi;
                    valid_range(iw0, sw, W, OW, &lo, &hi);
                    if (sw == 1) {
                        T *dr = dxrow + iw0;
                        for (int64_t q = lo; q < hi; ++q) dr[q] += wv * dyrow[q];
                    } else {
                        for (int64_t q = lo; q < hi; ++q) dxrow[iw0 + q * sw] += wv * dyrow[q];
                    }
                }
            }
        }
    }
}

static int SFX(dw_backward_input)(const cconv_conv2d_params *p, const T *dy,
                                  const T *w, T *dx, int nthreads)
{
    const int64_t HW = p->h * p->w, OHW = p->out_h * p->out_w, planes = p->n * p->c_in;
    const int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * OHW * p->kh * p->kw);
    int64_t t;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (t = 0; t < planes; ++t) {
        const int64_t n = t / p->c_in, ci = t % p->c_in;
        SFX(dw_plane_backward_input)(p, dy + n * p->c_out * OHW, w, ci, dx + t * HW);
    }
    (void)nt;
    return CCONV_OK;
}

/* Products are summed lane-wise in a row buffer (the compiler may not
 * reorder a scalar float sum, so that would not vectorise), then reduced. */
#define DW_CHUNK 256

/* dw (and the bias sum) of one output channel over the whole batch. */
CCONV_CLONES static void SFX(dw_channel_backward_weight)(const cconv_conv2d_params *p,
                                                         const T *dy, const T *x,
                                                         int64_t co, T *dwk, T *bsum)
{
    const int64_t mult = p->c_out / p->c_in, H = p->h, W = p->w, HW = H * W;
    const int64_t OH = p->out_h, OW = p->out_w, OHW = OH * OW;
    const int64_t sh = p->stride_h, sw = p->stride_w, KK = p->kh * p->kw;
    const int64_t ci = co / mult;
    T lanes[DW_CHUNK];
    for (int64_t k = 0; k < KK; ++k) dwk[k] = 0;
    T bs = 0;
    for (int64_t n = 0; n < p->n; ++n) {
        const T *dyp = dy + (n * p->c_out + co) * OHW;
        const T *xp = x + (n * p->c_in + ci) * HW;
        if (bsum) for (int64_t q = 0; q < OHW; ++q) bs += dyp[q];
        for (int64_t i = 0; i < p->kh; ++i) {
            for (int64_t j = 0; j < p->kw; ++j) {
                const int64_t iw0 = -p->pad_left + j * p->dil_w;
                int64_t lo, hi;
                valid_range(iw0, sw, W, OW, &lo, &hi);
                T acc = 0;
                for (int64_t c0 = lo; c0 < hi; c0 += DW_CHUNK) {
                    const int64_t c1 = c0 + DW_CHUNK < hi ? c0 + DW_CHUNK : hi;
                    for (int64_t q = 0; q < c1 - c0; ++q) lanes[q] = 0;
                    for (int64_t oh = 0; oh < OH; ++oh) {
                        const int64_t ih = oh * sh - p->pad_top + i * p->dil_h;
                        if (ih < 0 || ih >= H) continue;
                        const T *xrow = xp + ih * W + iw0;
                        const T *dyrow = dyp + oh * OW;
                        if (sw == 1)
                            for (int64_t q = c0; q < c1; ++q) lanes[q - c0] += dyrow[q] * xrow[q];
                        else
                            for (int64_t q = c0; q < c1; ++q) lanes[q - c0] += dyrow[q] * xrow[q * sw];
                    }
                    for (int64_t q = 0; q < c1 - c0; ++q) acc += lanes[q];
                }
                dwk[i * p->kw + j] += acc;
            }
        }
    }
    if (bsum) *bsum = bs;
}

static int SFX(dw_backward_weight)(const cconv_conv2d_params *p, const T *dy,
                                   const T *x, T *dw, T *db, int nthreads)
{
    const int64_t OHW = p->out_h * p->out_w, KK = p->kh * p->kw;
    const int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * OHW * KK);
    int64_t co;
#ifdef _OPENMP
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (co = 0; co < p->c_out; ++co)
        SFX(dw_channel_backward_weight)(p, dy, x, co, dw + co * KK, db ? db + co : NULL);
    (void)nt;
    return CCONV_OK;
}

/* ---------------- general path: im2col + GEMM ---------------- */

/* dst += each of the ncopies arrays of n elements at copies, in order: the
 * per-thread partial sums of a weight gradient, added in thread order so a
 * given thread count always gives the same bits. */
static void SFX(add_copies)(T *CCONV_RESTRICT dst, const T *CCONV_RESTRICT copies,
                            int64_t ncopies, int64_t n)
{
    for (int64_t t = 0; t < ncopies; ++t)
        for (int64_t k = 0; k < n; ++k) dst[k] += copies[t * n + k];
}

/* dst[q] = act(src[q] + b): the bias and activation epilogue of a GEMM row
 * (src == dst in place). NaN stays NaN through the ReLU, as in torch. */
CCONV_CLONES static void SFX(epilogue)(const T *src, T *dst, int64_t n, T b, int act)
{
    if (act == CCONV_ACT_RELU) {
        for (int64_t q = 0; q < n; ++q) {
            const T v = src[q] + b;
            dst[q] = v < 0 ? 0 : v;
        }
    } else {
        for (int64_t q = 0; q < n; ++q) dst[q] = src[q] + b;
    }
}

static int SFX(gemm_forward)(const cconv_conv2d_params *p, const T *x, const T *w,
                             const T *bias, T *y, int act, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w;
    const int64_t pt = tile_cols(K, P, sizeof(T));
    int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P * K);
    /* Images smaller than a tile share one: a GEMM over a few dozen columns
     * (LeNet's 8x8 maps) runs far below the micro-kernel's speed. Each such
     * tile holds `imgs` whole images, its result is scattered to y. */
    int64_t imgs = 1;
    if (P < pt && p->n > 1) {
        imgs = pt / P;
        if (imgs > p->n) imgs = p->n;
        /* keep a job per thread */
        while (imgs > 1 && G * ((p->n + imgs - 1) / imgs) < nt) imgs = (imgs + 1) / 2;
    }
    const int batched = imgs > 1;
    const int pointwise = !batched && SFX(is_pointwise)(p);
    const int64_t ntiles = batched ? (p->n + imgs - 1) / imgs : (P + pt - 1) / pt;
    const int64_t njobs = batched ? G * ntiles : p->n * G * ntiles;
    const int64_t colsz = batched ? K * imgs * P : K * pt;
    /* Too few jobs for the team: let the GEMM split the work instead. */
    const int inner_nt = (njobs < nt) ? nt : 1;
    if (njobs < nt) nt = 1;
    /* The weights packed for the GEMM once, not once per tile (a 3x3 layer
     * with 256 channels re-packed its 2.4 MB of weights for every 112
     * columns), and kept in this thread's cache while they do not change. */
    const size_t psz = GEMM_PACKED_A_SIZE(cout_g, K);
    int fresh_w = 1;
    T *WP = (T *)cconv_derived_get(sizeof(T) == 4 ? CCONV_DERIVED_GEMM_A_F32
                                                  : CCONV_DERIVED_GEMM_A_F64,
                                   w, (size_t)(G * cout_g * K) * sizeof(T),
                                   (size_t)G * psz * sizeof(T), &fresh_w);
    const int cached_w = WP != NULL;
    if (!WP) WP = (T *)cconv_work_alloc(3, (size_t)G * psz * sizeof(T));
    if (!WP) return CCONV_ENOMEM;
    if (fresh_w)
        for (int64_t g = 0; g < G; ++g)
            GEMM_PACK_A(0, cout_g, K, w + g * cout_g * K, K, WP + g * psz);
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        T *col = pointwise ? NULL : (T *)cconv_work_alloc(0, (size_t)colsz * sizeof(T));
        T *tmp = batched ? (T *)cconv_work_alloc(1, (size_t)(cout_g * imgs * P) * sizeof(T))
                         : NULL;
        const int ok = (pointwise || col) && (!batched || tmp);
        if (!ok) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!ok) continue;
            if (batched) {
                const int64_t g = job % G, n0 = (job / G) * imgs;
                const int64_t nimg = n0 + imgs <= p->n ? imgs : p->n - n0;
                const int64_t cols = nimg * P;
                for (int64_t j = 0; j < nimg; ++j)
                    SFX(im2col)(p, x + ((n0 + j) * p->c_in + g * cin_g) * HW, cin_g, 0, P,
                                col + j * P, cols);
                if (GEMM_PA(0, 0, cout_g, cols, K, (T)1, w + g * cout_g * K, K,
                            WP + g * psz, col, cols, (T)0, tmp, cols, inner_nt) != CCONV_OK) {
                    CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                    continue;
                }
                for (int64_t j = 0; j < nimg; ++j)
                    for (int64_t m = 0; m < cout_g; ++m)
                        SFX(epilogue)(tmp + m * cols + j * P,
                                      y + ((n0 + j) * p->c_out + g * cout_g + m) * P, P,
                                      bias ? bias[g * cout_g + m] : (T)0, act);
                continue;
            }
            const int64_t tile = job % ntiles, ng = job / ntiles;
            const int64_t n = ng / G, g = ng % G;
            const int64_t p0 = tile * pt, cols = (p0 + pt <= P) ? pt : P - p0;
            const T *xg = x + (n * p->c_in + g * cin_g) * HW;
            T *yg = y + (n * p->c_out + g * cout_g) * P + p0;
            const T *B;
            int64_t ldb;
            if (pointwise) {
                B = xg + p0; ldb = P;
            } else {
                SFX(im2col)(p, xg, cin_g, p0, cols, col, cols);
                B = col; ldb = cols;
            }
            if (GEMM_PA(0, 0, cout_g, cols, K, (T)1, w + g * cout_g * K, K, WP + g * psz,
                        B, ldb, (T)0, yg, P, inner_nt) != CCONV_OK) {
                CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                continue;
            }
            if (bias || act != CCONV_ACT_NONE) {
                for (int64_t m = 0; m < cout_g; ++m)
                    SFX(epilogue)(yg + m * P, yg + m * P, cols,
                                  bias ? bias[g * cout_g + m] : (T)0, act);
            }
        }
        cconv_work_free(0, col);
        cconv_work_free(1, tmp);
        cconv_fp_leave(fpm);
    }
    if (!cached_w) cconv_work_free(3, WP);
    return status;
}

#include "winograd_impl.h"
#include "winograd_grad_impl.h"
#include "direct_impl.h"

/* Whether v[0, n) holds a NaN or an infinity (v - v is 0 for every finite v):
 * an integer OR over a compare, so it vectorises. */
CCONV_CLONES static int SFX(any_nonfinite)(const T *CCONV_RESTRICT v, int64_t n)
{
    int bad = 0;
    for (int64_t q = 0; q < n; ++q) bad |= !(v[q] - v[q] == 0);
    return bad;
}

/* Winograd's transforms mix a tile's whole input patch into each of its
 * outputs, so one NaN/inf input makes outputs non-finite whose receptive
 * field is finite. A non-finite input never gives a finite transformed sum
 * (NaN and inf survive every add and multiply; zeros are skipped, not
 * multiplied), so the finite outputs are right, and only the non-finite
 * ones are recomputed here as direct sums over their own receptive field,
 * with the same bias and activation. Costs one vectorised scan of y when
 * everything is finite. */
static void SFX(fix_nonfinite)(const cconv_conv2d_params *p, const T *x, const T *w,
                               const T *bias, T *y, int act, int nthreads)
{
    const int64_t OHW = p->out_h * p->out_w, planes = p->n * p->c_out;
    const int64_t cin_g = p->c_in / p->groups, cout_g = p->c_out / p->groups;
    const int64_t H = p->h, W = p->w, kh = p->kh, kw = p->kw;
    const int nt = cconv_threads_for(nthreads, (double)planes * (double)OHW);
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t pl = 0; pl < planes; ++pl) {
        T *yp = y + pl * OHW;
        if (!SFX(any_nonfinite)(yp, OHW)) continue;
        const int64_t n = pl / p->c_out, co = pl % p->c_out, g = co / cout_g;
        const T *wc = w + co * cin_g * kh * kw;
        const T *xg = x + (n * p->c_in + g * cin_g) * H * W;
        for (int64_t q = 0; q < OHW; ++q) {
            if (yp[q] - yp[q] == 0) continue;
            const int64_t ih0 = (q / p->out_w) * p->stride_h - p->pad_top;
            const int64_t iw0 = (q % p->out_w) * p->stride_w - p->pad_left;
            T s = 0;
            for (int64_t c = 0; c < cin_g; ++c)
                for (int64_t i = 0; i < kh; ++i) {
                    const int64_t ih = ih0 + i * p->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    for (int64_t j = 0; j < kw; ++j) {
                        const int64_t iw = iw0 + j * p->dil_w;
                        if (iw < 0 || iw >= W) continue;
                        s += wc[(c * kh + i) * kw + j] * xg[(c * H + ih) * W + iw];
                    }
                }
            s += bias ? bias[co] : (T)0;
            yp[q] = act == CCONV_ACT_RELU && s < 0 ? (T)0 : s;
        }
    }
}

int SFX(cconv_conv2d_forward_ex)(const cconv_conv2d_params *p, const T *x,
                                 const T *w, const T *bias, T *y, int act, int algo,
                                 int nthreads)
{
    if (act != CCONV_ACT_NONE && act != CCONV_ACT_RELU) return CCONV_EINVAL;
    if (algo == CCONV_ALGO_AUTO) algo = cconv_conv2d_algo(p);
    if ((algo == CCONV_ALGO_WINOGRAD || algo == CCONV_ALGO_WINOGRAD4) &&
        !cconv_conv2d_winograd_ok(p))
        return CCONV_EINVAL;
    if (algo == CCONV_ALGO_DEPTHWISE && (!SFX(is_depthwise)(p) || !dw_plane_bounded(p)))
        return CCONV_EINVAL;
    if (algo == CCONV_ALGO_WINOGRAD_ROWS && !cconv_conv2d_winograd_rows_ok(p))
        return CCONV_EINVAL;
    if (algo < CCONV_ALGO_GEMM || algo > CCONV_ALGO_WINOGRAD_ROWS) return CCONV_EINVAL;
    if (p->n == 0) return CCONV_OK;
    const unsigned fpm = cconv_fp_enter();
    int status;
    if (algo == CCONV_ALGO_DEPTHWISE)
        status = SFX(dw_forward)(p, x, w, bias, y, act, nthreads);
    else if (algo == CCONV_ALGO_WINOGRAD)
        status = SFX(wino_forward)(p, x, w, bias, y, act, nthreads, 2);
    else if (algo == CCONV_ALGO_WINOGRAD4)
        status = SFX(wino_forward)(p, x, w, bias, y, act, nthreads, 4);
    else if (algo == CCONV_ALGO_DIRECT)
        status = SFX(direct_forward)(p, x, w, bias, y, act, 0, nthreads);
#ifdef WR_AVAILABLE
    else if (algo == CCONV_ALGO_WINOGRAD_ROWS)
        status = SFX(wino_rows_forward)(p, x, w, bias, y, act, nthreads);
#endif
    else
        status = SFX(gemm_forward)(p, x, w, bias, y, act, nthreads);
    if (status == CCONV_OK && (algo == CCONV_ALGO_WINOGRAD || algo == CCONV_ALGO_WINOGRAD4 ||
                               algo == CCONV_ALGO_WINOGRAD_ROWS))
        SFX(fix_nonfinite)(p, x, w, bias, y, act, nthreads);
    cconv_fp_leave(fpm);
    return status;
}

int SFX(cconv_conv2d_forward_maxpool2)(const cconv_conv2d_params *p, const T *x,
                                       const T *w, const T *bias, T *y, int act,
                                       int nthreads)
{
    if (act != CCONV_ACT_NONE && act != CCONV_ACT_RELU) return CCONV_EINVAL;
    if (p->n == 0 || p->out_h < 2 || p->out_w < 2) return CCONV_OK;
    const unsigned fpm = cconv_fp_enter();
    const int status = SFX(direct_forward)(p, x, w, bias, y, act, 1, nthreads);
    cconv_fp_leave(fpm);
    return status;
}

int SFX(cconv_conv2d_forward)(const cconv_conv2d_params *p, const T *x,
                              const T *w, const T *bias, T *y, int nthreads)
{
    return SFX(cconv_conv2d_forward_ex)(p, x, w, bias, y, CCONV_ACT_NONE,
                                        CCONV_ALGO_AUTO, nthreads);
}

/* Stride 1 without dilation: dx is the convolution of dy, zero-padded by
 * k - 1 - pad on each side, with the kernel flipped and its two channel axes
 * swapped. That convolution runs through the direct kernel (want_direct:
 * no col2im scatter, which took 28% of LeNet conv2's backward: its 8-wide
 * rows are all bookkeeping) or, where the forward pass would pick Winograd
 * for it (3x3 layers with many channels), through Winograd: 1.6-2x faster
 * than GEMM + col2im on 64-channel 56x56 maps. CCONV_EINVAL where neither
 * applies. */
static int SFX(backward_input_as_conv)(const cconv_conv2d_params *p, const T *dy,
                                       const T *w, T *dx, int nthreads, int want_direct)
{
    const int64_t kh = p->kh, kw = p->kw, KK = kh * kw, G = p->groups;
    const int64_t cin_g = p->c_in / G, cout_g = p->c_out / G;
    if (p->stride_h != 1 || p->stride_w != 1 || p->dil_h != 1 || p->dil_w != 1 ||
        p->pad_top >= kh || p->pad_bottom >= kh || p->pad_left >= kw || p->pad_right >= kw)
        return CCONV_EINVAL;
    cconv_conv2d_params q = *p;
    q.c_in = p->c_out; q.c_out = p->c_in; q.h = p->out_h; q.w = p->out_w;
    q.pad_top = kh - 1 - p->pad_top; q.pad_bottom = kh - 1 - p->pad_bottom;
    q.pad_left = kw - 1 - p->pad_left; q.pad_right = kw - 1 - p->pad_right;
    if (cconv_conv2d_check(&q) != CCONV_OK || q.out_h != p->h || q.out_w != p->w)
        return CCONV_EINVAL;
    /* not the direct kernel unless asked for: LeNet conv1's 1-channel
     * gradient was measured slower through it */
    const int algo = want_direct ? CCONV_ALGO_DIRECT : cconv_conv2d_algo(&q);
    if (!want_direct && algo != CCONV_ALGO_WINOGRAD && algo != CCONV_ALGO_WINOGRAD4)
        return CCONV_EINVAL;
    /* wf[g][ci][co][kh - 1 - i][kw - 1 - j] = w[g][co][ci][i][j]; in this
     * thread's slot 4, so while w does not change Winograd finds its
     * transform of wf cached (the cache compares the bytes, not just the
     * address) */
    T *wf = (T *)cconv_work_alloc(4, (size_t)(G * cin_g * cout_g * KK) * sizeof(T));
    if (!wf) return CCONV_ENOMEM;
    for (int64_t g = 0; g < G; ++g)
        for (int64_t co = 0; co < cout_g; ++co)
            for (int64_t ci = 0; ci < cin_g; ++ci) {
                const T *src = w + ((g * cout_g + co) * cin_g + ci) * KK;
                T *dst = wf + ((g * cin_g + ci) * cout_g + co) * KK;
                for (int64_t t = 0; t < KK; ++t) dst[KK - 1 - t] = src[t];
            }
    const int st = algo == CCONV_ALGO_DIRECT
        ? SFX(direct_forward)(&q, dy, wf, NULL, dx, CCONV_ACT_NONE, 0, nthreads)
        : SFX(wino_forward)(&q, dy, wf, NULL, dx, CCONV_ACT_NONE, nthreads,
                            algo == CCONV_ALGO_WINOGRAD4 ? 4 : 2);
    if (st == CCONV_OK && algo != CCONV_ALGO_DIRECT)   /* NaN in dy stays local in dx too */
        SFX(fix_nonfinite)(&q, dy, wf, NULL, dx, CCONV_ACT_NONE, nthreads);
    cconv_work_free(4, wf);
    return st;
}

/* algo: CCONV_ALGO_AUTO (the direct, Winograd and depthwise paths where
 * they apply) or CCONV_ALGO_GEMM (col2im of a GEMM only: im2col's rounding) */
static int SFX(backward_input)(const cconv_conv2d_params *p, const T *dy,
                               const T *w, T *dx, int algo, int nthreads)
{
    if (p->n == 0) return CCONV_OK;
    const int any = algo == CCONV_ALGO_AUTO;
    if (any && SFX(is_depthwise)(p)) return SFX(dw_backward_input)(p, dy, w, dx, nthreads);
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t KK = p->kh * p->kw, K = cin_g * KK, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w;
    const int pointwise = SFX(is_pointwise)(p);
    if (any && !pointwise) {
        const int direct = cout_g * KK <= CCONV_DIRECT_BWD_MAX_K &&
                           cin_g >= CCONV_DIRECT_BWD_MIN_CIN;
        const int st = SFX(backward_input_as_conv)(p, dy, w, dx, nthreads, direct);
        if (st != CCONV_EINVAL) return st;    /* EINVAL: the shape needs the general path */
    }
    const int64_t pt = tile_cols(K, P, sizeof(T)), ntiles = (P + pt - 1) / pt;
    const int64_t njobs = p->n * G;
    int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P * K);
    /* Tiles of one (image, group) scatter into the same dx: they run in
     * sequence, so with fewer (image, group) pairs than threads the team
     * works inside each tile instead. */
    const int inner_nt = (njobs < nt) ? nt : 1;
    if (njobs < nt) nt = 1;
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        T *col = pointwise ? NULL : (T *)malloc((size_t)(K * pt) * sizeof(T));
        if (!pointwise && !col) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!pointwise && !col) continue;
            const int64_t n = job / G, g = job % G;
            T *dxg = dx + (n * p->c_in + g * cin_g) * HW;
            const T *dyg = dy + (n * p->c_out + g * cout_g) * P;
            const T *wg = w + g * cout_g * K;
            if (pointwise) {
                /* dx_g (cin_g x P) = w_g^T (cin_g x cout_g) dy_g (cout_g x P) */
                if (GEMM(1, 0, cin_g, P, cout_g, (T)1, wg, K, dyg, P, (T)0, dxg, P,
                         inner_nt) != CCONV_OK) {
                    CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                }
                continue;
            }
            memset(dxg, 0, (size_t)(cin_g * HW) * sizeof(T));
            for (int64_t tile = 0; tile < ntiles; ++tile) {
                const int64_t p0 = tile * pt, cols = (p0 + pt <= P) ? pt : P - p0;
                if (GEMM(1, 0, K, cols, cout_g, (T)1, wg, K, dyg + p0, P, (T)0, col,
                         cols, inner_nt) != CCONV_OK) {
                    CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                    break;
                }
                if (inner_nt > 1) {
                    /* rows of one input channel only touch that channel */
                    int64_t c;
#ifdef _OPENMP
                    #pragma omp parallel for num_threads(inner_nt) schedule(static)
#endif
                    for (c = 0; c < cin_g; ++c)
                        SFX(col2im)(p, col, c * KK, (c + 1) * KK, p0, cols, dxg);
                } else {
                    SFX(col2im)(p, col, 0, K, p0, cols, dxg);
                }
            }
        }
        free(col);
    }
    return status;
}

/* db[co] = sum of dy over images and positions (nothing when db is NULL).
 * In 16 running sums per channel, added pairwise at the end: one sum was a
 * chain of dependent additions (LeNet conv1 at batch 64, 221k elements: 0.3
 * ms of a 1.5 ms backward pass); 16 lanes vectorise and round less. */
CCONV_CLONES static void SFX(bias_grad)(const cconv_conv2d_params *p, const T *dy, T *db)
{
    if (!db) return;
    const int64_t P = p->out_h * p->out_w;
    for (int64_t co = 0; co < p->c_out; ++co) {
        T acc[16] = {0};
        for (int64_t n = 0; n < p->n; ++n) {
            const T *CCONV_RESTRICT row = dy + (n * p->c_out + co) * P;
            int64_t q = 0;
            for (; q + 16 <= P; q += 16)
                for (int l = 0; l < 16; ++l) acc[l] += row[q + l];
            for (int l = 0; q < P; ++q, ++l) acc[l] += row[q];
        }
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
        db[co] = acc[0];
    }
}

/* algo: as for backward_input (CCONV_ALGO_GEMM: no Winograd adjoint, no
 * depthwise loop) */
static int SFX(backward_weight)(const cconv_conv2d_params *p, const T *dy,
                                const T *x, T *dw, T *db, int algo, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w, wsize = p->c_out * K;
    if (p->n == 0) {
        memset(dw, 0, (size_t)wsize * sizeof(T));
        if (db) memset(db, 0, (size_t)p->c_out * sizeof(T));
        return CCONV_OK;
    }
    const int any = algo == CCONV_ALGO_AUTO;
    if (any && SFX(is_depthwise)(p)) return SFX(dw_backward_weight)(p, dy, x, dw, db, nthreads);
    /* where the forward pass runs Winograd F(4x4, 3x3), so does the weight
     * gradient, given enough tiles: its products reduce over the tiles, and
     * with a few dozen (28x28 at batch 1) im2col + GEMM was faster
     * (128x28x28: 3.3 vs 4.0 ms; 64x56x56, 196 tiles: 5.1 vs 3.2 ms) */
    if (any && cconv_conv2d_algo(p) == CCONV_ALGO_WINOGRAD4 &&
        (size_t)36 * (size_t)(p->c_out * p->c_in) * sizeof(T) <= CCONV_WINOGRAD_GRAD_MAX_BYTES &&
        p->n * ((p->out_h + 3) / 4) * ((p->out_w + 3) / 4) >= CCONV_WINOGRAD_GRAD_MIN_TILES) {
        const int st = SFX(wino4_backward_weight)(p, dy, x, dw, nthreads);
        if (st != CCONV_OK) return st;
        SFX(bias_grad)(p, dy, db);
        return CCONV_OK;
    }
#ifdef DG_AVAILABLE
    /* where the forward pass runs the direct kernel, so does the weight
     * gradient (direct_grad_impl.h), for up to CCONV_DIRECT_GRAD_MAX_COUT
     * output channels per group: beyond, im2col + GEMM has rows enough */
    if (any && cout_g <= CCONV_DIRECT_GRAD_MAX_COUT &&
        (cconv_conv2d_algo(p) == CCONV_ALGO_DIRECT ||
         cconv_conv2d_algo(p) == CCONV_ALGO_WINOGRAD_ROWS)) {
        const int st = SFX(direct_backward_weight)(p, dy, x, dw, nthreads);
        if (st != CCONV_OK) return st;
        SFX(bias_grad)(p, dy, db);
        return CCONV_OK;
    }
#endif
    const int64_t pt = tile_cols(K, P, sizeof(T));
    const double work = (double)p->n * p->c_out * P * K;
    int nt = cconv_threads_for(nthreads, work);
    /* Images smaller than a tile share one, as in gemm_forward: a product
     * per LeNet image (16 x 150 x 64 for conv2) ran at 16 GFLOP/s, packing
     * its operands for every 64 columns; `imgs` images side by side make
     * one long reduction. Their dy rows are gathered next to each other
     * (dy holds each image's channels apart). The image groups are evened
     * out over CCONV_GRAD_PARTS (not the threads: the grouping sets the
     * order of the sums). */
    int64_t imgs = 1;
    if (P < pt && p->n > 1) {
        imgs = pt / P;
        if (imgs > p->n) imgs = p->n;
        int64_t groups_n = (p->n + imgs - 1) / imgs;   /* image groups */
        if (G == 1 && groups_n % CCONV_GRAD_PARTS)
            groups_n += CCONV_GRAD_PARTS - groups_n % CCONV_GRAD_PARTS;
        if (groups_n > p->n) groups_n = p->n;
        imgs = (p->n + groups_n - 1) / groups_n;
    }
    const int batched = imgs > 1;
    const int pointwise = !batched && SFX(is_pointwise)(p);
    const int64_t ntiles = batched ? (p->n + imgs - 1) / imgs : (P + pt - 1) / pt;
    const int64_t njobs = batched ? G * ntiles : p->n * G * ntiles;
    const int64_t colsz = batched ? K * imgs * P : K * pt;
    if (cin_g >= CCONV_GRAD_SPLIT_MIN_CIN) {
        /* Each thread its own input channels' columns of dw (their rows of
         * col, unfolded by that thread alone), summed over every job in
         * order: no copies of dw, and every element is summed the same way
         * at any thread count. */
        const int64_t KK = p->kh * p->kw;
        if (nt > cin_g / 4) nt = (int)(cin_g / 4);
        int status = CCONV_OK;
        memset(dw, 0, (size_t)wsize * sizeof(T));
#ifdef _OPENMP
        #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
            const int tid = CCONV_THREAD_NUM(), team = nt > 1 ? nt : 1;
            const int64_t c0 = tid * cin_g / team, nc = (tid + 1) * cin_g / team - c0;
            const int64_t colt = batched ? nc * KK * imgs * P : nc * KK * pt;
            T *col = pointwise ? NULL : (T *)cconv_work_alloc(0, (size_t)colt * sizeof(T));
            T *dyb = batched ? (T *)cconv_work_alloc(1, (size_t)(cout_g * imgs * P) * sizeof(T))
                             : NULL;
            if (!((pointwise || col) && (!batched || dyb))) {
                CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
            } else {
                for (int64_t job = 0; job < njobs; ++job) {
                    const int64_t g = batched ? job % G : (job / ntiles) % G;
                    T *acc = dw + g * cout_g * K + c0 * KK;
                    if (batched) {
                        const int64_t n0 = (job / G) * imgs;
                        const int64_t nimg = n0 + imgs <= p->n ? imgs : p->n - n0;
                        const int64_t cols = nimg * P;
                        for (int64_t j = 0; j < nimg; ++j) {
                            const int64_t n = n0 + j;
                            SFX(im2col)(p, x + (n * p->c_in + g * cin_g + c0) * HW, nc, 0, P,
                                        col + j * P, cols);
                            for (int64_t m = 0; m < cout_g; ++m)
                                memcpy(dyb + m * cols + j * P,
                                       dy + (n * p->c_out + g * cout_g + m) * P,
                                       (size_t)P * sizeof(T));
                        }
                        if (GEMM_BLOCKED(0, 1, cout_g, nc * KK, cols, (T)1, dyb, cols, col, cols, (T)1,
                                 acc, K, 1) != CCONV_OK) {
                            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                        }
                        continue;
                    }
                    const int64_t tile = job % ntiles, n = job / ntiles / G;
                    const int64_t p0 = tile * pt, cols = (p0 + pt <= P) ? pt : P - p0;
                    const T *xg = x + (n * p->c_in + g * cin_g + c0) * HW;
                    const T *dyg = dy + (n * p->c_out + g * cout_g) * P + p0;
                    const T *B = xg + p0;
                    int64_t ldb = P;
                    if (!pointwise) {
                        SFX(im2col)(p, xg, nc, p0, cols, col, cols);
                        B = col; ldb = cols;
                    }
                    if (GEMM_BLOCKED(0, 1, cout_g, nc * KK, cols, (T)1, dyg, P, B, ldb, (T)1,
                             acc, K, 1) != CCONV_OK) {
                        CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                    }
                }
            }
            cconv_work_free(0, col);
            cconv_work_free(1, dyb);
        }
        if (status != CCONV_OK) return status;
        SFX(bias_grad)(p, dy, db);
        return CCONV_OK;
    }
    /* Few input channels: fixed parts of the jobs, each summed into its own
     * copy of dw (conv.c, grad_parts); threads beyond the parts split each
     * product (the GEMM cuts dw, never the reduction). */
    const int64_t parts = grad_parts(njobs, work, wsize, sizeof(T));
    const int inner_nt = nt > parts ? (int)(nt / parts) : 1;
    if (nt > parts) nt = (int)parts;
    int status = CCONV_OK;
    T *partial = NULL;
    if (parts > 1) {
        partial = (T *)calloc((size_t)(parts - 1) * (size_t)wsize, sizeof(T));
        if (!partial) return CCONV_ENOMEM;
    }
    memset(dw, 0, (size_t)wsize * sizeof(T));
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        T *col = pointwise ? NULL : (T *)cconv_work_alloc(0, (size_t)colsz * sizeof(T));
        T *dyb = batched ? (T *)cconv_work_alloc(1, (size_t)(cout_g * imgs * P) * sizeof(T))
                         : NULL;
        const int ok = (pointwise || col) && (!batched || dyb);
        if (!ok) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        int64_t part;
#ifdef _OPENMP
        #pragma omp for schedule(dynamic, 1)
#endif
        for (part = 0; part < parts; ++part) {
            T *acc = part == 0 ? dw : partial + (size_t)(part - 1) * (size_t)wsize;
            const int64_t j1 = (part + 1) * njobs / parts;
            for (int64_t job = part * njobs / parts; job < j1 && ok; ++job) {
                if (batched) {
                    const int64_t g = job % G, n0 = (job / G) * imgs;
                    const int64_t nimg = n0 + imgs <= p->n ? imgs : p->n - n0;
                    const int64_t cols = nimg * P;
                    for (int64_t j = 0; j < nimg; ++j) {
                        const int64_t n = n0 + j;
                        SFX(im2col)(p, x + (n * p->c_in + g * cin_g) * HW, cin_g, 0, P,
                                    col + j * P, cols);
                        for (int64_t m = 0; m < cout_g; ++m)
                            memcpy(dyb + m * cols + j * P,
                                   dy + (n * p->c_out + g * cout_g + m) * P,
                                   (size_t)P * sizeof(T));
                    }
                    if (GEMM(0, 1, cout_g, K, cols, (T)1, dyb, cols, col, cols, (T)1,
                             acc + g * cout_g * K, K, inner_nt) != CCONV_OK) {
                        CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                    }
                    continue;
                }
                const int64_t tile = job % ntiles, ng = job / ntiles;
                const int64_t n = ng / G, g = ng % G;
                const int64_t p0 = tile * pt, cols = (p0 + pt <= P) ? pt : P - p0;
                const T *xg = x + (n * p->c_in + g * cin_g) * HW;
                const T *dyg = dy + (n * p->c_out + g * cout_g) * P + p0;
                const T *B;
                int64_t ldb;
                if (pointwise) {
                    B = xg + p0; ldb = P;
                } else {
                    SFX(im2col)(p, xg, cin_g, p0, cols, col, cols);
                    B = col; ldb = cols;
                }
                /* dw_g (cout_g x K) += dy_g (cout_g x cols) col^T (cols x K) */
                if (GEMM(0, 1, cout_g, K, cols, (T)1, dyg, P, B, ldb, (T)1,
                         acc + g * cout_g * K, K, inner_nt) != CCONV_OK) {
                    CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                }
            }
        }
        cconv_work_free(0, col);
        cconv_work_free(1, dyb);
    }
    if (partial) {
        SFX(add_copies)(dw, partial, parts - 1, wsize);
        free(partial);
    }
    SFX(bias_grad)(p, dy, db);
    return status;
}

/* The backward entry points run in the kernels' floating-point mode; their
 * GEMMs (on any thread) set it themselves. */
int SFX(cconv_conv2d_backward_input_ex)(const cconv_conv2d_params *p, const T *dy,
                                        const T *w, T *dx, int algo, int nthreads)
{
    if (algo != CCONV_ALGO_AUTO && algo != CCONV_ALGO_GEMM) return CCONV_EINVAL;
    const unsigned fpm = cconv_fp_enter();
    const int status = SFX(backward_input)(p, dy, w, dx, algo, nthreads);
    cconv_fp_leave(fpm);
    return status;
}

int SFX(cconv_conv2d_backward_weight_ex)(const cconv_conv2d_params *p, const T *dy,
                                         const T *x, T *dw, T *db, int algo, int nthreads)
{
    if (algo != CCONV_ALGO_AUTO && algo != CCONV_ALGO_GEMM) return CCONV_EINVAL;
    const unsigned fpm = cconv_fp_enter();
    const int status = SFX(backward_weight)(p, dy, x, dw, db, algo, nthreads);
    cconv_fp_leave(fpm);
    return status;
}

int SFX(cconv_conv2d_backward_input)(const cconv_conv2d_params *p, const T *dy,
                                     const T *w, T *dx, int nthreads)
{
    return SFX(cconv_conv2d_backward_input_ex)(p, dy, w, dx, CCONV_ALGO_AUTO, nthreads);
}

int SFX(cconv_conv2d_backward_weight)(const cconv_conv2d_params *p, const T *dy,
                                      const T *x, T *dw, T *db, int nthreads)
{
    return SFX(cconv_conv2d_backward_weight_ex)(p, dy, x, dw, db, CCONV_ALGO_AUTO, nthreads);
}
