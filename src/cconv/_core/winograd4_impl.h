/* Winograd F(4x4, 3x3) transforms, type-generic (included by
 * winograd_impl.h, which runs them through the same blocked GEMMs as
 * F(2x2, 3x3)).
 *
 * A 4x4 block of outputs comes from the 6x6 input patch under it: 36
 * multiplies instead of 16 * 9 = 144, so 4x fewer multiply-adds than a
 * direct sum (F(2x2, 3x3): 2.25x), paid for with longer transforms and
 * larger rounding (the interpolation points 0, +-1, +-2 scale terms by up
 * to 8 and 1/24; bounded against the float64 reference in
 * tests/test_conv_paths.py). The matrices are Lavin & Gray's (2015):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */

/* G applied to a 3-vector (a0, a1, a2), giving 6 values */
#define WINO4_G(a0, a1, a2, o)                                   \
    do {                                                         \
        const T s_ = (a0) + (a2);                                \
        o[0] = (T)0.25 * (a0);                                   \
        o[1] = (T)(-1.0 / 6.0) * (s_ + (a1));                    \
        o[2] = (T)(-1.0 / 6.0) * (s_ - (a1));                    \
        o[3] = (T)(1.0 / 24.0) * (a0) + (T)(1.0 / 12.0) * (a1) + \
               (T)(1.0 / 6.0) * (a2);                            \
        o[4] = (T)(1.0 / 24.0) * (a0) - (T)(1.0 / 12.0) * (a1) + \
               (T)(1.0 / 6.0) * (a2);                            \
        o[5] = (a2);                                             \
    } while (0)

/* B^T applied to a 6-vector (e0 .. e5), into o0 .. o5 (arrays indexed by u) */
#define WINO4_BT(e0, e1, e2, e3, e4, e5, o0, o1, o2, o3, o4, o5, u)    \
    do {                                                                \
        o0[u] = (T)4 * (e0) - (T)5 * (e2) + (e4);                       \
        o1[u] = (e3) + (e4) - (T)4 * ((e1) + (e2));                     \
        o2[u] = (e4) - (e3) + (T)4 * ((e1) - (e2));                     \
        o3[u] = (e4) - (e2) + (T)2 * ((e3) - (e1));                     \
        o4[u] = (e4) - (e2) - (T)2 * ((e3) - (e1));                     \
        o5[u] = (T)4 * (e1) - (T)5 * (e3) + (e5);                       \
    } while (0)

/* G g G^T of one output channel's chunk of nc input channels: the taps wt
 * to the 36 transformed rows u[xi * ld + c] (xi = 6 * row + column). */
CCONV_ALWAYS_INLINE void SFX(wino4_kernel)(const T *CCONV_RESTRICT wt, int64_t nc,
                                           T *CCONV_RESTRICT u, int64_t ld)
{
    const int64_t CH = CCONV_WINO_WT_CHUNK;
    /* the small loops unrolled, so that GCC vectorises along c_in rather
     * than across the 6 values of a row */
    CCONV_IVDEP
    for (int64_t c = 0; c < nc; ++c) {
        T t[6][3], col[6], row[6];
        #pragma GCC unroll 3
        for (int j = 0; j < 3; ++j) {          /* G g, column by column */
            WINO4_G(wt[j * CH + c], wt[(3 + j) * CH + c], wt[(6 + j) * CH + c], col);
            #pragma GCC unroll 6
            for (int i = 0; i < 6; ++i) t[i][j] = col[i];
        }
        #pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) {          /* (G g) G^T, row by row */
            WINO4_G(t[i][0], t[i][1], t[i][2], row);
            #pragma GCC unroll 6
            for (int j = 0; j < 6; ++j) u[(6 * i + j) * ld + c] = row[j];
        }
    }
}

/* V[xi][ci][t - t0] = (B^T d B)[xi] for the tiles [t0, t0 + cnt); row stride
 * ldv of each ci row. rows: scratch of 36 * ldv + 4 * TW + 8.
 * Channel by channel, the 6x6 patches of all the block's tiles are gathered
 * first (P[6 * r + j][u]: row r, column j of tile t0 + u, through a
 * zero-padded copy of each input row), so that both transforms then run
 * along the whole block with unit stride, whatever the tile rows' length
 * (a 14x14 map has rows of 4 tiles: too short to vectorise along). */
CCONV_CLONES static void SFX(wino4_input)(const cconv_conv2d_params *p, const T *x,
                                          int64_t TH, int64_t TW, int64_t t0, int64_t cnt,
                                          int64_t ldv, T *CCONV_RESTRICT V,
                                          T *CCONV_RESTRICT rows, int64_t c0, int64_t c1)
{
    const int64_t H = p->h, W = p->w, HW = H * W, cin = p->c_in;
    const int64_t S = cin * ldv;
    T *CCONV_RESTRICT P = rows, *CCONV_RESTRICT line = rows + 36 * ldv;
    for (int64_t ci = c0; ci < c1; ++ci) {
        for (int64_t t = t0; t < t0 + cnt;) {
            const SFX(wino_seg) sg = SFX(wino_segment)(t, t0 + cnt, TH, TW);
            const int64_t ncols = 4 * sg.seg + 2, iw0 = 4 * sg.tw0 - p->pad_left;
            int64_t lo, hi;
            valid_range(iw0, 1, W, ncols, &lo, &hi);
            const T *xc = x + (sg.n * cin + ci) * HW;
            const int64_t u0 = t - t0;
            for (int r = 0; r < 6; ++r) {
                const int64_t ih = 4 * sg.th - p->pad_top + r;
                if (ih < 0 || ih >= H) {
                    for (int j = 0; j < 6; ++j)
                        for (int64_t s = 0; s < sg.seg; ++s) P[(6 * r + j) * ldv + u0 + s] = 0;
                    continue;
                }
                const T *src = xc + ih * W + iw0;
                for (int64_t k = 0; k < lo; ++k) line[k] = 0;
                for (int64_t k = lo; k < hi; ++k) line[k] = src[k];
                for (int64_t k = hi; k < ncols; ++k) line[k] = 0;
                for (int j = 0; j < 6; ++j) {
                    T *CCONV_RESTRICT d = P + (6 * r + j) * ldv + u0;
                    CCONV_IVDEP for (int64_t s = 0; s < sg.seg; ++s) d[s] = line[4 * s + j];
                }
            }
            t += sg.seg;
        }
        /* B^T d B for every tile of the block: first down the columns
         * (rows of the patch, in place), then along the rows into V */
        for (int j = 0; j < 6; ++j) {
            T *CCONV_RESTRICT d0 = P + j * ldv, *CCONV_RESTRICT d1 = d0 + 6 * ldv;
            T *CCONV_RESTRICT d2 = d0 + 12 * ldv, *CCONV_RESTRICT d3 = d0 + 18 * ldv;
            T *CCONV_RESTRICT d4 = d0 + 24 * ldv, *CCONV_RESTRICT d5 = d0 + 30 * ldv;
            CCONV_IVDEP
            for (int64_t u = 0; u < cnt; ++u) {
                const T e0 = d0[u], e1 = d1[u], e2 = d2[u], e3 = d3[u], e4 = d4[u], e5 = d5[u];
                WINO4_BT(e0, e1, e2, e3, e4, e5, d0, d1, d2, d3, d4, d5, u);
            }
        }
        for (int i = 0; i < 6; ++i) {
            const T *CCONV_RESTRICT c = P + 6 * i * ldv;
            T *CCONV_RESTRICT v0 = V + (6 * i) * S + ci * ldv;
            T *CCONV_RESTRICT v1 = v0 + S, *CCONV_RESTRICT v2 = v0 + 2 * S;
            T *CCONV_RESTRICT v3 = v0 + 3 * S, *CCONV_RESTRICT v4 = v0 + 4 * S;
            T *CCONV_RESTRICT v5 = v0 + 5 * S;
            CCONV_IVDEP
            for (int64_t u = 0; u < cnt; ++u) {
                const T e0 = c[u], e1 = c[ldv + u], e2 = c[2 * ldv + u];
                const T e3 = c[3 * ldv + u], e4 = c[4 * ldv + u], e5 = c[5 * ldv + u];
                WINO4_BT(e0, e1, e2, e3, e4, e5, v0, v1, v2, v3, v4, v5, u);
            }
        }
    }
}

/* y tiles from M[xi][co][t - t0]: Y = A^T m A, then bias and activation,
 * along the whole block (Q[4 * i + k][u]: output row i, column k of tile
 * t0 + u), then scattered into y's rows. out: scratch of 40 * ldm + 4. */
CCONV_CLONES static void SFX(wino4_output)(const cconv_conv2d_params *p, const T *Mb,
                                           int64_t TH, int64_t TW, int64_t t0, int64_t cnt,
                                           int64_t ldm, const T *bias, int act, T *y,
                                           T *CCONV_RESTRICT out, int64_t c0, int64_t c1)
{
    const int64_t cout = p->c_out, OH = p->out_h, OW = p->out_w, OHW = OH * OW;
    const int64_t S = cout * ldm;
    T *CCONV_RESTRICT Q = out, *CCONV_RESTRICT R = out + 16 * ldm;
    for (int64_t co = c0; co < c1; ++co) {
        const T bv = bias ? bias[co] : (T)0;
        for (int j = 0; j < 6; ++j) {          /* A^T m, down the columns: R[6 * i + j] */
            const T *CCONV_RESTRICT m0 = Mb + co * ldm + j * S, *CCONV_RESTRICT m1 = m0 + 6 * S;
            const T *CCONV_RESTRICT m2 = m0 + 12 * S, *CCONV_RESTRICT m3 = m0 + 18 * S;
            const T *CCONV_RESTRICT m4 = m0 + 24 * S, *CCONV_RESTRICT m5 = m0 + 30 * S;
            T *CCONV_RESTRICT r0 = R + j * ldm, *CCONV_RESTRICT r1 = r0 + 6 * ldm;
            T *CCONV_RESTRICT r2 = r0 + 12 * ldm, *CCONV_RESTRICT r3 = r0 + 18 * ldm;
            CCONV_IVDEP
            for (int64_t u = 0; u < cnt; ++u) {
                const T a = m1[u] + m2[u], b = m1[u] - m2[u];
                const T c = m3[u] + m4[u], d = m3[u] - m4[u];
                r0[u] = m0[u] + a + c;
                r1[u] = b + (T)2 * d;
                r2[u] = a + (T)4 * c;
                r3[u] = b + (T)8 * d + m5[u];
            }
        }
        for (int i = 0; i < 4; ++i) {          /* (A^T m) A, along the rows, + bias */
            const T *CCONV_RESTRICT e0 = R + 6 * i * ldm, *CCONV_RESTRICT e1 = e0 + ldm;
            const T *CCONV_RESTRICT e2 = e0 + 2 * ldm, *CCONV_RESTRICT e3 = e0 + 3 * ldm;
            const T *CCONV_RESTRICT e4 = e0 + 4 * ldm, *CCONV_RESTRICT e5 = e0 + 5 * ldm;
            T *CCONV_RESTRICT q0 = Q + 4 * i * ldm, *CCONV_RESTRICT q1 = q0 + ldm;
            T *CCONV_RESTRICT q2 = q0 + 2 * ldm, *CCONV_RESTRICT q3 = q0 + 3 * ldm;
            CCONV_IVDEP
            for (int64_t u = 0; u < cnt; ++u) {
                const T a = e1[u] + e2[u], b = e1[u] - e2[u];
                const T c = e3[u] + e4[u], d = e3[u] - e4[u];
                q0[u] = e0[u] + a + c + bv;
                q1[u] = b + (T)2 * d + bv;
                q2[u] = a + (T)4 * c + bv;
                q3[u] = b + (T)8 * d + e5[u] + bv;
            }
            if (act == CCONV_ACT_RELU)         /* NaN stays NaN */
                CCONV_IVDEP
            for (int64_t u = 0; u < cnt; ++u) {
                    q0[u] = q0[u] < 0 ? 0 : q0[u]; q1[u] = q1[u] < 0 ? 0 : q1[u];
                    q2[u] = q2[u] < 0 ? 0 : q2[u]; q3[u] = q3[u] < 0 ? 0 : q3[u];
                }
        }
        for (int64_t t = t0; t < t0 + cnt;) {
            const SFX(wino_seg) sg = SFX(wino_segment)(t, t0 + cnt, TH, TW);
            const int64_t oh = 4 * sg.th, ow0 = 4 * sg.tw0, u0 = t - t0;
            const int nrow = oh + 4 <= OH ? 4 : (int)(OH - oh);
            const int64_t full = (ow0 + 4 * sg.seg <= OW) ? sg.seg : sg.seg - 1;
            T *yr = y + (sg.n * cout + co) * OHW + oh * OW + ow0;
            for (int i = 0; i < nrow; ++i, yr += OW) {
                const T *CCONV_RESTRICT q0 = Q + 4 * i * ldm + u0, *CCONV_RESTRICT q1 = q0 + ldm;
                const T *CCONV_RESTRICT q2 = q0 + 2 * ldm, *CCONV_RESTRICT q3 = q0 + 3 * ldm;
                T *CCONV_RESTRICT yo = yr;
                CCONV_IVDEP for (int64_t s = 0; s < full; ++s) {
                    yo[4 * s] = q0[s]; yo[4 * s + 1] = q1[s];
                    yo[4 * s + 2] = q2[s]; yo[4 * s + 3] = q3[s];
                }
                /* the last tile of a row that ends inside it */
                for (int64_t k = 4 * full; k < OW - ow0 && k < 4 * sg.seg; ++k)
                    yo[k] = Q[(4 * i + (k & 3)) * ldm + u0 + full];
            }
            t += sg.seg;
        }
    }
}

#undef WINO4_G
#undef WINO4_BT
