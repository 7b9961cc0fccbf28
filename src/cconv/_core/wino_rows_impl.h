/* The direct kernel with Winograd F(4, 4) along each output row,
 * type-generic, included by direct_impl.h (its vector type and micro-tile
 * shape).
 *
 * A 7x7 stride-2 stem on 3 channels is too short a reduction for GEMM and
 * Winograd F(4x4, 3x3) does not apply; the direct kernel runs it near the
 * FMA peak, level with oneDNN. It can only get faster by doing less
 * arithmetic. Split by column phase, a stride-s row of kw taps is s
 * stride-1 rows of at most 4 taps (phase ph holds taps ph, ph + s, ...),
 * and 4 consecutive outputs of a 4-tap row are Winograd's 1-D F(4, 4): 7
 * products of transformed inputs and weights instead of 16 multiplies.
 * Per 4 outputs and input row a stride-2 7-tap layer then does 2 x 7 = 14
 * multiply-adds instead of 28 (plus the transforms: the input's once per
 * input row, the output's once per 4 outputs of each channel).
 *
 * Layout: each input row of a job is cut into S = 4 * stride_w column
 * planes (plane m, tile t: column S t + m; 8x8 transposes for stride 2 in
 * float32), so that input i of tile t in phase ph, d[4t + i], is a plane
 * read at a fixed tile offset: whole vectors over tiles. B^T turns the 7
 * inputs of every tile into V_xi[t], and for a fixed point xi the products
 * are a direct convolution over tiles with taps (channel, kernel row,
 * phase): the direct kernel's micro-tile of DIR_MR channels x 2 vectors of
 * tiles, run once per point into a small buffer; A^T then turns its 7
 * points into 4 outputs per tile, which are interleaved into the row,
 * biased, activated and stored.
 *
 * Points 0, 1, -1, 2, -2, 1/2 and infinity (Toom-Cook, derived exactly:
 * y = A^T [(G g) .* (B^T d)]); with one dimension transformed, float32 error
 * stays near 1e-6 of the sums' scale (test_winograd_rows_accuracy). As
 * with every Winograd path, an inf or NaN input spreads to the 4-output
 * tiles around it (as NaN). */

#define WR_M 4   /* outputs per tile */
#define WR_R 4   /* taps per phase */
#define WR_A 7   /* transformed points: WR_M + WR_R - 1 */

/* The transforms (derived with exact fractions; B^T's rows scaled to small
 * numbers, G carrying the inverse scales). B^T and A^T are written out in
 * wr_fill and wr_output:
 *
 *   B^T = [ 4 -8  -5    10    1   -2  0 ]     A^T = [ 1  1  1  1  1  1    0 ]
 *         [ 0 -4   4     9   -1   -2  0 ]           [ 0  1 -1  2 -2  1/2  0 ]
 *         [ 0 -2   6  -3.5 -1.5    1  0 ]           [ 0  1  1  4  4  1/4  0 ]
 *         [ 0  1 -1.5   -2  1.5    1  0 ]           [ 0  1 -1  8 -8  1/8  1 ]
 *         [ 0  1 -2.5    0  2.5   -1  0 ]
 *         [ 0  4   0    -5    0    1  0 ]
 *         [ 0 -4   8     5  -10   -1  2 ]
 */
static const double SFX(wr_g)[WR_A][WR_R] = {
    {1.0 / 4, 0, 0, 0},
    {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6},
    {1.0 / 9, -1.0 / 9, 1.0 / 9, -1.0 / 9},
    {1.0 / 36, 1.0 / 18, 1.0 / 9, 2.0 / 9},
    {1.0 / 60, -1.0 / 30, 1.0 / 15, -2.0 / 15},
    {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45},
    {0, 0, 0, 1.0 / 2}};

/* Where a job's transformed rows lie: V[c][r][ph][xi][t], TP tiles (whole
 * vectors) per point. */
typedef struct {
    int64_t NPH;   /* phases with taps: min(stride_w, kw) */
    int64_t TW;    /* tiles per output row */
    int64_t TP;    /* TW rounded up to whole vectors */
    int64_t PS;    /* stride of a phase: WR_A points of TP */
    int64_t RS;    /* stride of an input row: NPH phases */
    int64_t R;     /* input rows held */
    int64_t CS;    /* stride of a channel: R rows */
} SFX(wr_geom);

static SFX(wr_geom) SFX(wr_geometry)(const cconv_conv2d_params *p, int64_t rows)
{
    SFX(wr_geom) g;
    g.NPH = p->stride_w < p->kw ? p->stride_w : p->kw;
    g.TW = (p->out_w + WR_M - 1) / WR_M;
    g.TP = (g.TW + DIR_VL - 1) / DIR_VL * DIR_VL;
    g.PS = WR_A * g.TP;
    g.RS = g.NPH * g.PS;
    g.R = (rows - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
    g.CS = g.R * g.RS;
    return g;
}

/* U[xi][block][k][DIR_MR], k = (c * kh + i) * NPH + ph: G times the taps
 * ph, ph + s, ... of kernel row (c, i), in double then rounded once. */
static void SFX(wr_pack_weights)(const cconv_conv2d_params *p, const T *w, int64_t cin_g,
                                 int64_t cout_g, int64_t nph, T *u)
{
    const int64_t kh = p->kh, kw = p->kw, sw = p->stride_w;
    const int64_t K = cin_g * kh * nph, nb = (cout_g + DIR_MR - 1) / DIR_MR;
    for (int64_t xi = 0; xi < WR_A; ++xi)
        for (int64_t b = 0; b < nb; ++b)
            for (int64_t k = 0; k < K; ++k) {
                const int64_t ph = k % nph, row = k / nph;   /* row = c * kh + i */
                for (int64_t r = 0; r < DIR_MR; ++r) {
                    const int64_t co = b * DIR_MR + r;
                    double s = 0;
                    if (co < cout_g)
                        for (int64_t a = 0; a < WR_R && a * sw + ph < kw; ++a)
                            s += SFX(wr_g)[xi][a] * (double)w[(co * cin_g * kh + row) * kw +
                                                              a * sw + ph];
                    u[((xi * nb + b) * K + k) * DIR_MR + r] = (T)s;
                }
            }
}

#if DIR_VEC && defined(DIR_PAIRS) && DIR_LANES == 8
/* Plane m of 8 tiles of 8 columns (src: the first tile's first column):
 * an 8 x 8 transpose, e[m * pl + t] = src[8 t + m]. */
CCONV_ALWAYS_INLINE void SFX(wr_transpose8)(const T *src, T *e, int64_t pl)
{
    SFX(dir_v) r[8], t[8], u[8];
    for (int i = 0; i < 8; ++i) r[i] = *(const SFX(dir_v) *)(src + 8 * i);
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int m = 0; m < 4; ++m) {
        const SFX(dir_v) lo = __builtin_shufflevector(u[m], u[m + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        const SFX(dir_v) hi = __builtin_shufflevector(u[m], u[m + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        *(SFX(dir_v) *)(e + m * pl) = lo;
        *(SFX(dir_v) *)(e + (m + 4) * pl) = hi;
    }
}
#endif

/* Gather and transform channels [0, cin_g) of image xg, the input rows under
 * outputs [oh0, oh0 + rows), into V (zeros outside the image and for the
 * tiles past the row's last). Input i of tile t in phase ph is column
 * S t + i sw + ph - pad_left (S = 4 sw, the columns per tile): each input
 * row is first cut into the S planes X_m[t] = column S t + m - pad_left
 * (t <= TP), so that input i of every tile is plane (i sw + ph) % S read
 * (i sw + ph) / S tiles further: whole vectors over tiles. e: scratch of
 * S * (TP + DIR_VL) elements. */
CCONV_CLONES static void SFX(wr_fill)(const cconv_conv2d_params *p, const T *xg, int64_t cin_g,
                                      int64_t oh0, const SFX(wr_geom) *g, T *CCONV_RESTRICT e,
                                      T *CCONV_RESTRICT v)
{
    const int64_t H = p->h, sw = p->stride_w, TP = g->TP, S = WR_M * sw;
    const int64_t PL = TP + DIR_VL;      /* plane stride: t up to TP read */
    /* columns past the last one the convolution reads stay zero: the last
     * tile's transform would mix an inf or NaN there into real outputs */
    const int64_t last = (p->out_w - 1) * sw + p->kw - p->pad_left;
    const int64_t W = p->w < last ? p->w : last;
    const int64_t ih0 = oh0 * p->stride_h - p->pad_top;
    /* where each plane's valid tiles lie: the same for every row */
    int64_t lo[4 * WR_M], hi[4 * WR_M];   /* S <= 16: stride_w <= 4 */
    int64_t lo_all = 0, hi_all = TP + 1;   /* tiles whose S columns are all valid */
    for (int64_t m = 0; m < S; ++m) {
        valid_range(m - p->pad_left, S, W, TP + 1, &lo[m], &hi[m]);
        if (lo[m] > lo_all) lo_all = lo[m];
        if (hi[m] < hi_all) hi_all = hi[m];
    }
    if (hi_all < lo_all) hi_all = lo_all;
    for (int64_t c = 0; c < cin_g; ++c)
        for (int64_t r = 0; r < g->R; ++r) {
            const int64_t ih = ih0 + r;
            T *dst = v + c * g->CS + r * g->RS;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)g->RS * sizeof(T));
                continue;
            }
            const T *CCONV_RESTRICT src = xg + (c * H + ih) * p->w - p->pad_left;
            int64_t t0 = 0, t1 = 0;   /* tiles cut by whole-vector transposes */
#if defined(DIR_PAIRS) && DIR_LANES == 8
            if (S == DIR_VL) {
                t0 = lo_all;
                t1 = t0 + (hi_all - t0) / DIR_VL * DIR_VL;
                for (int64_t t = t0; t < t1; t += DIR_VL)
                    SFX(wr_transpose8)(src + S * t, e + t, PL);
            }
#endif
            for (int64_t m = 0; m < S; ++m) {
                T *CCONV_RESTRICT xm = e + m * PL;
                for (int64_t t = 0; t < lo[m]; ++t) xm[t] = 0;
                const int64_t a = t0 > lo[m] ? t0 : lo[m], b = t1 < hi[m] ? t1 : hi[m];
                if (a >= b) {     /* no transposed span inside [lo, hi) */
                    for (int64_t t = lo[m]; t < hi[m]; ++t) xm[t] = src[S * t + m];
                } else {
                    for (int64_t t = lo[m]; t < a; ++t) xm[t] = src[S * t + m];
                    for (int64_t t = b; t < hi[m]; ++t) xm[t] = src[S * t + m];
                }
                for (int64_t t = hi[m]; t <= TP; ++t) xm[t] = 0;
            }
            for (int64_t ph = 0; ph < g->NPH; ++ph) {
                const T *ei[WR_A];
                for (int i = 0; i < WR_A; ++i) {
                    const int64_t col = i * sw + ph;
                    ei[i] = e + (col % S) * PL + col / S;
                }
                T *CCONV_RESTRICT out = dst + ph * g->PS;
                for (int64_t t = 0; t < TP; t += DIR_VL) {
                    SFX(dir_v) d[WR_A];
                    for (int i = 0; i < WR_A; ++i)
                        d[i] = *(const SFX(dir_v) *)(ei[i] + t);
                    /* B^T */
                    SFX(dir_v) o[WR_A];
                    o[0] = (T)4 * d[0] - (T)8 * d[1] - (T)5 * d[2] + (T)10 * d[3] + d[4] -
                           (T)2 * d[5];
                    o[1] = (T)-4 * d[1] + (T)4 * d[2] + (T)9 * d[3] - d[4] - (T)2 * d[5];
                    o[2] = (T)-2 * d[1] + (T)6 * d[2] - (T)3.5 * d[3] - (T)1.5 * d[4] + d[5];
                    o[3] = d[1] - (T)1.5 * d[2] - (T)2 * d[3] + (T)1.5 * d[4] + d[5];
                    o[4] = d[1] - (T)2.5 * d[2] + (T)2.5 * d[4] - d[5];
                    o[5] = (T)4 * d[1] - (T)5 * d[3] + d[5];
                    o[6] = (T)-4 * d[1] + (T)8 * d[2] + (T)5 * d[3] - (T)10 * d[4] - d[5] +
                           (T)2 * d[6];
                    for (int xi = 0; xi < WR_A; ++xi)
                        *(SFX(dir_v) *)(out + xi * TP + t) = o[xi];
                }
            }
        }
}

/* Offsets in V of the taps k = (c * kh + i) * NPH + ph. */
static void SFX(wr_tap_offsets)(const cconv_conv2d_params *p, int64_t cin_g,
                                const SFX(wr_geom) *g, int64_t *koff)
{
    const int64_t kh = p->kh, nph = g->NPH;
    for (int64_t k = 0; k < cin_g * kh * nph; ++k) {
        const int64_t ph = k % nph, row = k / nph, c = row / kh, i = row % kh;
        koff[k] = c * g->CS + i * p->dil_h * g->RS + ph * g->PS;
    }
}

#if DIR_VEC
/* The products of one point: DIR_MR (mr) channels x nv vectors of tiles
 * (inputs at v + in[u] + koff[k]), summed into m[r][u]. */
static inline __attribute__((always_inline)) void
SFX(wr_tile)(const int mr, const int nv, int64_t K, const int64_t *CCONV_RESTRICT koff,
             const T *CCONV_RESTRICT u, const T *v, const int64_t *in, SFX(dir_v) *m)
{
    SFX(dir_v) acc[DIR_MR][2];
    SFX(dir_products)(mr, nv, K, koff, u, v + in[0], v + in[nv - 1], acc);
    for (int r = 0; r < mr; ++r)
        for (int q = 0; q < nv; ++q) m[r * 2 + q] = acc[r][q];
}

/* The 4 outputs of each tile of y0..y3 (output j of tile t in lane t of
 * yj), in row order: out[4t + j]. */
CCONV_ALWAYS_INLINE void SFX(wr_store)(SFX(dir_v) y0, SFX(dir_v) y1, SFX(dir_v) y2,
                                       SFX(dir_v) y3, T *dst, int lanes)
{
    T row[WR_M * DIR_VL];
#ifdef DIR_PAIRS
#if DIR_LANES == 8
    const SFX(dir_v) a = __builtin_shufflevector(y0, y1, 0, 8, 1, 9, 2, 10, 3, 11);
    const SFX(dir_v) b = __builtin_shufflevector(y2, y3, 0, 8, 1, 9, 2, 10, 3, 11);
    const SFX(dir_v) c = __builtin_shufflevector(y0, y1, 4, 12, 5, 13, 6, 14, 7, 15);
    const SFX(dir_v) d = __builtin_shufflevector(y2, y3, 4, 12, 5, 13, 6, 14, 7, 15);
    const SFX(dir_v) o[4] = {__builtin_shufflevector(a, b, 0, 1, 8, 9, 2, 3, 10, 11),
                             __builtin_shufflevector(a, b, 4, 5, 12, 13, 6, 7, 14, 15),
                             __builtin_shufflevector(c, d, 0, 1, 8, 9, 2, 3, 10, 11),
                             __builtin_shufflevector(c, d, 4, 5, 12, 13, 6, 7, 14, 15)};
#else
    const SFX(dir_v) a = __builtin_shufflevector(y0, y1, 0, 4, 1, 5);
    const SFX(dir_v) b = __builtin_shufflevector(y2, y3, 0, 4, 1, 5);
    const SFX(dir_v) c = __builtin_shufflevector(y0, y1, 2, 6, 3, 7);
    const SFX(dir_v) d = __builtin_shufflevector(y2, y3, 2, 6, 3, 7);
    const SFX(dir_v) o[4] = {__builtin_shufflevector(a, b, 0, 1, 4, 5),
                             __builtin_shufflevector(a, b, 2, 3, 6, 7),
                             __builtin_shufflevector(c, d, 0, 1, 4, 5),
                             __builtin_shufflevector(c, d, 2, 3, 6, 7)};
#endif
    /* whole vectors straight to the row (a row of 112 outputs ends on a
     * half-filled tile vector: 16 of its 32 outputs), the rest lane by lane */
    const int full = lanes / DIR_VL;
    if (full > 0) *(SFX(dir_v) *)dst = o[0];
    if (full > 1) *(SFX(dir_v) *)(dst + DIR_VL) = o[1];
    if (full > 2) *(SFX(dir_v) *)(dst + 2 * DIR_VL) = o[2];
    if (full > 3) *(SFX(dir_v) *)(dst + 3 * DIR_VL) = o[3];
    const int rest = lanes - full * DIR_VL;
    if (rest == 0) return;
    const SFX(dir_v) last = full == 0 ? o[0] : full == 1 ? o[1] : full == 2 ? o[2] : o[3];
    T *tail = dst + full * DIR_VL;
    memcpy(row, &last, sizeof last);
    for (int l = 0; l < rest; ++l) tail[l] = row[l];
    return;
#else
    T l0[DIR_VL], l1[DIR_VL], l2[DIR_VL], l3[DIR_VL];
    memcpy(l0, &y0, sizeof y0); memcpy(l1, &y1, sizeof y1);
    memcpy(l2, &y2, sizeof y2); memcpy(l3, &y3, sizeof y3);
    for (int t = 0; t < DIR_VL; ++t) {
        row[4 * t] = l0[t]; row[4 * t + 1] = l1[t];
        row[4 * t + 2] = l2[t]; row[4 * t + 3] = l3[t];
    }
#endif
    for (int l = 0; l < lanes; ++l) dst[l] = row[l];
}

/* A^T over the points of m[xi][r][q], then bias and activation, stored. */
CCONV_ALWAYS_INLINE void SFX(wr_output)(const int mr, const int nv, const SFX(dir_v) *m,
                                        T *const *yc, const int64_t *out, const int *lanes,
                                        const T *bias, int act)
{
    const SFX(dir_v) zero = {0};
    for (int r = 0; r < mr; ++r) {
        const T bv = bias ? bias[r] : (T)0;
        for (int q = 0; q < nv; ++q) {
            SFX(dir_v) s[WR_A];
            for (int xi = 0; xi < WR_A; ++xi) s[xi] = m[(xi * DIR_MR + r) * 2 + q];
            /* A^T: pairs of points +-x first, as the rows of A^T share them */
            const SFX(dir_v) p1 = s[1] + s[2], m1 = s[1] - s[2];
            const SFX(dir_v) p2 = s[3] + s[4], m2 = s[3] - s[4];
            SFX(dir_v) y[WR_M];
            y[0] = s[0] + p1 + p2 + s[5];
            y[1] = m1 + (T)2 * m2 + (T)0.5 * s[5];
            y[2] = p1 + (T)4 * p2 + (T)0.25 * s[5];
            y[3] = m1 + (T)8 * m2 + (T)0.125 * s[5] + s[6];
            for (int j = 0; j < WR_M; ++j) {
                y[j] += bv;
                if (act == CCONV_ACT_RELU) {
                    /* NaN compares false and stays NaN, as in torch */
                    const __typeof__(zero < zero) neg = y[j] < zero;
                    y[j] = (SFX(dir_v))((__typeof__(neg))y[j] & ~neg);
                }
            }
            SFX(wr_store)(y[0], y[1], y[2], y[3], yc[r] + out[q], lanes[q]);
        }
    }
}

/* Rows [oh0, oh1) of channels [0, cout_g) of one image and group. */
CCONV_CLONES static void SFX(wr_rows)(const cconv_conv2d_params *p, int64_t K,
                                      const int64_t *koff, const T *u, int64_t cout_g,
                                      const T *v, const SFX(wr_geom) *g, int64_t oh0,
                                      int64_t oh1, const T *bias, int act, T *yg)
{
    const int64_t OW = p->out_w, P = p->out_h * OW, nb = (cout_g + DIR_MR - 1) / DIR_MR;
    const int64_t row_step = p->stride_h * g->RS, USTEP = nb * K * DIR_MR;
    SFX(dir_v) m[WR_A * DIR_MR * 2];
    for (int64_t b = 0; b < nb; ++b) {
        const int mr = (int)(cout_g - b * DIR_MR < DIR_MR ? cout_g - b * DIR_MR : DIR_MR);
        T *yc[DIR_MR];
        for (int r = 0; r < mr; ++r) yc[r] = yg + (b * DIR_MR + r) * P;
        const T *ub = u + b * K * DIR_MR;
        const T *bb = bias ? bias + b * DIR_MR : NULL;
        int64_t in[2], out[2];
        int lanes[2];
        int nv = 0;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
            for (int64_t t = 0; t < g->TW; t += DIR_VL) {
                in[nv] = (oh - oh0) * row_step + t;
                out[nv] = oh * OW + t * WR_M;
                lanes[nv] = (int)(OW - t * WR_M < WR_M * DIR_VL ? OW - t * WR_M
                                                                 : WR_M * DIR_VL);
                if (++nv < 2 && !(oh == oh1 - 1 && t + DIR_VL >= g->TW)) continue;
#define WR_CASE(M)                                                                       \
    case M:                                                                             \
        for (int xi = 0; xi < WR_A; ++xi) {                                             \
            const int64_t pin[2] = {in[0] + xi * g->TP, in[nv - 1] + xi * g->TP};       \
            if (nv == 2) SFX(wr_tile)(M, 2, K, koff, ub + xi * USTEP, v, pin,           \
                                      m + xi * DIR_MR * 2);                             \
            else SFX(wr_tile)(M, 1, K, koff, ub + xi * USTEP, v, pin,                   \
                              m + xi * DIR_MR * 2);                                     \
        }                                                                               \
        if (nv == 2) SFX(wr_output)(M, 2, m, yc, out, lanes, bb, act);                  \
        else SFX(wr_output)(M, 1, m, yc, out, lanes, bb, act);                          \
        break;
                switch (mr) {
                    WR_CASE(1) WR_CASE(2) WR_CASE(3) WR_CASE(4) WR_CASE(5) WR_CASE(6)
                }
#undef WR_CASE
                nv = 0;
            }
        }
    }
}

/* y = act(conv(x, w) + bias) for layers cconv_conv2d_winograd_rows_ok accepts. */
static int SFX(wino_rows_forward)(const cconv_conv2d_params *p, const T *x, const T *w,
                                  const T *bias, T *y, int act, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t OH = p->out_h, P = OH * p->out_w, HW = p->h * p->w;
    const SFX(wr_geom) one = SFX(wr_geometry)(p, 1);
    const int64_t K = cin_g * p->kh * one.NPH;
    const int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P *
                                                   (cin_g * p->kh * p->kw));
    const int64_t row_bytes = cin_g * p->stride_h * one.RS * (int64_t)sizeof(T);
    int64_t rows, chunks;
    SFX(dir_plan_jobs)(p, row_bytes, 0, nt, &rows, &chunks);
    const int64_t njobs = p->n * G * chunks;
    const SFX(wr_geom) geo = SFX(wr_geometry)(p, rows);
    const int64_t nb = (cout_g + DIR_MR - 1) / DIR_MR;
    const size_t u_elems = (size_t)(G * WR_A * nb * K * DIR_MR);
    int fresh, cached;
    T *u = SFX(dir_prepared)(sizeof(T) == 4 ? CCONV_DERIVED_WINO_ROWS_F32
                                            : CCONV_DERIVED_WINO_ROWS_F64,
                             w, p->c_out * cin_g * p->kh * p->kw, u_elems, &cached, &fresh);
    int64_t *koff = (int64_t *)cconv_work_alloc(1, (size_t)K * sizeof(int64_t));
    if (!u || !koff) {
        if (!cached) cconv_work_free(3, u);
        cconv_work_free(1, koff);
        return CCONV_ENOMEM;
    }
    if (fresh)
        for (int64_t g = 0; g < G; ++g)
            SFX(wr_pack_weights)(p, w + g * cout_g * cin_g * p->kh * p->kw, cin_g, cout_g,
                                 one.NPH, u + g * WR_A * nb * K * DIR_MR);
    SFX(wr_tap_offsets)(p, cin_g, &geo, koff);
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        /* the transformed rows, then wr_fill's gather scratch */
        const size_t vbytes = (size_t)(cin_g * geo.CS) * sizeof(T);
        const size_t ebytes = (size_t)(WR_M * p->stride_w * (geo.TP + DIR_VL)) * sizeof(T);
        T *v = (T *)cconv_work_alloc(0, vbytes + ebytes);
        if (!v) CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(dynamic, 1)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!v) continue;
            const int64_t chunk = job % chunks, ng = job / chunks;
            const int64_t n = ng / G, g = ng % G;
            const int64_t oh0 = chunk * rows, oh1 = oh0 + rows < OH ? oh0 + rows : OH;
            SFX(wr_fill)(p, x + (n * p->c_in + g * cin_g) * HW, cin_g, oh0, &geo,
                         v + cin_g * geo.CS, v);
            SFX(wr_rows)(p, K, koff, u + g * WR_A * nb * K * DIR_MR, cout_g, v, &geo, oh0,
                         oh1, bias ? bias + g * cout_g : NULL, act,
                         y + (n * p->c_out + g * cout_g) * P);
        }
        cconv_work_free(0, v);
        cconv_fp_leave(fpm);
    }
    cconv_work_free(1, koff);
    if (!cached) cconv_work_free(3, u);
    return status;
}
#define WR_AVAILABLE 1
#endif

#undef WR_M
#undef WR_R
#undef WR_A
