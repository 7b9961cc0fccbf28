/* Type-generic body of conv.c, included once per dtype with T, SFX, GEMM set. */

/* Unfold columns [p0, p0 + pt) of one group of one image into col (K x pt). */
CCONV_CLONES static void SFX(im2col)(const cconv_conv2d_params *p, const T *x, int64_t cin_g,
                        int64_t p0, int64_t pt, T *col)
{
    const int64_t H = p->h, W = p->w, OW = p->out_w, kh = p->kh, kw = p->kw;
    const int64_t sh = p->stride_h, sw = p->stride_w;
    const int64_t K = cin_g * kh * kw;
    for (int64_t r = 0; r < K; ++r) {
        const int64_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        const T *xc = x + c * H * W;
        T *dst = col + r * pt;
        int64_t q = 0, oh = p0 / OW, ow = p0 % OW;
        while (q < pt) {
            int64_t seg = OW - ow;
            if (seg > pt - q) seg = pt - q;
            const int64_t ih = oh * sh - p->pad_top + i * p->dil_h;
            if (ih < 0 || ih >= H) {
                memset(dst + q, 0, (size_t)seg * sizeof(T));
            } else {
                const T *xrow = xc + ih * W;
                const int64_t iw0 = ow * sw - p->pad_left + j * p->dil_w;
                int64_t lo, hi;
                valid_range(iw0, sw, W, seg, &lo, &hi);
                T *d = dst + q;
                for (int64_t t = 0; t < lo; ++t) d[t] = 0;
                if (sw == 1) {
                    memcpy(d + lo, xrow + iw0 + lo, (size_t)(hi - lo) * sizeof(T));
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

/* 3x3, stride 1, no dilation: all nine taps of an output in registers. */
CCONV_CLONES static void SFX(dw3x3_s1)(const T *xp, int64_t Wp, const T *k, T b, T *y,
                                       int64_t OH, int64_t OW)
{
    const T k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5];
    const T k6 = k[6], k7 = k[7], k8 = k[8];
    for (int64_t oh = 0; oh < OH; ++oh) {
        const T *r0 = xp + oh * Wp, *r1 = r0 + Wp, *r2 = r1 + Wp;
        T *yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ++ow)
            yr[ow] = b + k0 * r0[ow] + k1 * r0[ow + 1] + k2 * r0[ow + 2]
                       + k3 * r1[ow] + k4 * r1[ow + 1] + k5 * r1[ow + 2]
                       + k6 * r2[ow] + k7 * r2[ow + 1] + k8 * r2[ow + 2];
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
                           const T *bias, T *y, int nthreads)
{
    const int64_t mult = p->c_out / p->c_in, HW = p->h * p->w;
    const int64_t OHW = p->out_h * p->out_w, planes = p->n * p->c_out;
    const int64_t Hp = p->h + p->pad_top + p->pad_bottom;
    const int64_t Wp = p->w + p->pad_left + p->pad_right;
    const int padded = Hp != p->h || Wp != p->w;
    const int fast3x3 = p->kh == 3 && p->kw == 3 && p->stride_h == 1 &&
                        p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1;
    const int nt = cconv_threads_for(nthreads, (double)planes * OHW * p->kh * p->kw);
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        T *buf = padded ? (T *)malloc((size_t)(Hp * Wp) * sizeof(T)) : NULL;
        int64_t filled = -1;   /* which input plane buf holds */
        if (padded && !buf) {
#ifdef _OPENMP
            #pragma omp atomic write
#endif
            status = CCONV_ENOMEM;
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
            if (padded) {
                if (filled != plane) { SFX(pad_plane)(p, src, buf, Hp, Wp); filled = plane; }
                src = buf;
            }
            const T *wk = w + co * p->kh * p->kw;
            const T b = bias ? bias[co] : (T)0;
            if (fast3x3)
                SFX(dw3x3_s1)(src, Wp, wk, b, y + t * OHW, p->out_h, p->out_w);
            else
                SFX(dw_padded)(p, src, Wp, wk, b, y + t * OHW);
        }
        free(buf);
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

int SFX(cconv_conv2d_forward)(const cconv_conv2d_params *p, const T *x,
                              const T *w, const T *bias, T *y, int nthreads)
{
    if (p->n == 0) return CCONV_OK;
    if (SFX(is_depthwise)(p)) return SFX(dw_forward)(p, x, w, bias, y, nthreads);
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w;
    const int pointwise = SFX(is_pointwise)(p);
    const int64_t pt = tile_cols(K, P, sizeof(T)), ntiles = (P + pt - 1) / pt;
    const int64_t njobs = p->n * G * ntiles;
    int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P * K);
    /* Too few jobs for the team: let the GEMM split the work instead. */
    const int inner_nt = (njobs < nt) ? nt : 1;
    if (njobs < nt) nt = 1;
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        T *col = pointwise ? NULL : (T *)malloc((size_t)(K * pt) * sizeof(T));
        if (!pointwise && !col) {
#ifdef _OPENMP
            #pragma omp atomic write
#endif
            status = CCONV_ENOMEM;
        }
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!pointwise && !col) continue;
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
                SFX(im2col)(p, xg, cin_g, p0, cols, col);
                B = col; ldb = cols;
            }
            if (GEMM(0, 0, cout_g, cols, K, (T)1, w + g * cout_g * K, K, B, ldb,
                     (T)0, yg, P, inner_nt) != CCONV_OK) {
#ifdef _OPENMP
                #pragma omp atomic write
#endif
                status = CCONV_ENOMEM;
                continue;
            }
            if (bias) {
                for (int64_t m = 0; m < cout_g; ++m) {
                    const T b = bias[g * cout_g + m];
                    T *row = yg + m * P;
                    for (int64_t q = 0; q < cols; ++q) row[q] += b;
                }
            }
        }
        free(col);
    }
    return status;
}

int SFX(cconv_conv2d_backward_input)(const cconv_conv2d_params *p, const T *dy,
                                     const T *w, T *dx, int nthreads)
{
    if (p->n == 0) return CCONV_OK;
    if (SFX(is_depthwise)(p)) return SFX(dw_backward_input)(p, dy, w, dx, nthreads);
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t KK = p->kh * p->kw, K = cin_g * KK, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w;
    const int pointwise = SFX(is_pointwise)(p);
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
#ifdef _OPENMP
            #pragma omp atomic write
#endif
            status = CCONV_ENOMEM;
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
#ifdef _OPENMP
                    #pragma omp atomic write
#endif
                    status = CCONV_ENOMEM;
                }
                continue;
            }
            memset(dxg, 0, (size_t)(cin_g * HW) * sizeof(T));
            for (int64_t tile = 0; tile < ntiles; ++tile) {
                const int64_t p0 = tile * pt, cols = (p0 + pt <= P) ? pt : P - p0;
                if (GEMM(1, 0, K, cols, cout_g, (T)1, wg, K, dyg + p0, P, (T)0, col,
                         cols, inner_nt) != CCONV_OK) {
#ifdef _OPENMP
                    #pragma omp atomic write
#endif
                    status = CCONV_ENOMEM;
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

int SFX(cconv_conv2d_backward_weight)(const cconv_conv2d_params *p, const T *dy,
                                      const T *x, T *dw, T *db, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, P = p->out_h * p->out_w;
    const int64_t HW = p->h * p->w, wsize = p->c_out * K;
    if (p->n == 0) {
        memset(dw, 0, (size_t)wsize * sizeof(T));
        if (db) memset(db, 0, (size_t)p->c_out * sizeof(T));
        return CCONV_OK;
    }
    if (SFX(is_depthwise)(p)) return SFX(dw_backward_weight)(p, dy, x, dw, db, nthreads);
    const int pointwise = SFX(is_pointwise)(p);
    const int64_t pt = tile_cols(K, P, sizeof(T)), ntiles = (P + pt - 1) / pt;
    const int64_t njobs = p->n * G * ntiles;
    int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P * K);
    const int inner_nt = (njobs < nt) ? nt : 1;
    if (njobs < nt) nt = 1;
    int status = CCONV_OK;
    /* Each thread accumulates into its own copy of dw (weights are small);
     * the copies are summed in thread order, so a given thread count always
     * gives the same bits. */
    T *partial = NULL;
    if (nt > 1) {
        partial = (T *)calloc((size_t)(nt - 1) * (size_t)wsize, sizeof(T));
        if (!partial) return CCONV_ENOMEM;
    }
    memset(dw, 0, (size_t)wsize * sizeof(T));
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int tid = 0;
#ifdef _OPENMP
        if (nt > 1) tid = omp_get_thread_num();
#endif
        T *acc = tid == 0 ? dw : partial + (size_t)(tid - 1) * (size_t)wsize;
        T *col = pointwise ? NULL : (T *)malloc((size_t)(K * pt) * sizeof(T));
        if (!pointwise && !col) {
#ifdef _OPENMP
            #pragma omp atomic write
#endif
            status = CCONV_ENOMEM;
        }
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!pointwise && !col) continue;
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
                SFX(im2col)(p, xg, cin_g, p0, cols, col);
                B = col; ldb = cols;
            }
            /* dw_g (cout_g x K) += dy_g (cout_g x cols) col^T (cols x K) */
            if (GEMM(0, 1, cout_g, K, cols, (T)1, dyg, P, B, ldb, (T)1,
                     acc + g * cout_g * K, K, inner_nt) != CCONV_OK) {
#ifdef _OPENMP
                #pragma omp atomic write
#endif
                status = CCONV_ENOMEM;
            }
        }
        free(col);
    }
    if (partial) {
        for (int t = 0; t < nt - 1; ++t) {
            const T *src = partial + (size_t)t * (size_t)wsize;
            for (int64_t k = 0; k < wsize; ++k) dw[k] += src[k];
        }
        free(partial);
    }
    if (db) {
        for (int64_t co = 0; co < p->c_out; ++co) {
            T s = 0;
            for (int64_t n = 0; n < p->n; ++n) {
                const T *row = dy + (n * p->c_out + co) * P;
                for (int64_t q = 0; q < P; ++q) s += row[q];
            }
            db[co] = s;
        }
    }
    return status;
}
