/* Winograd F(2x2, 3x3) convolution, type-generic (included by conv_impl.h
 * with T, SFX, GEMM set).
 *
 * Every 2x2 block of outputs ("tile") is computed from the 4x4 input patch
 * under it as  Y = A^T [ (G g G^T) .* (B^T d B) ] A  (Lavin & Gray 2015):
 * the 9 * 4 multiplies of a direct 3x3 become 16, so after transforming
 * the weights (U, 16 matrices C_out x C_in) and the input (V, 16 matrices
 * C_in x tiles) the work is 16 GEMMs with 2.25x fewer multiply-adds than
 * im2col. Tiles run over the whole batch, in blocks sized for the cache,
 * one block per job. Rounding: the transforms only add and halve, so the
 * error stays within a few ulps of the GEMM's (tested against the
 * reference in tests/test_conv.py). */

#ifndef CCONV_WINO_WT_CHUNK
/* The weight transforms go sliver by sliver (CCONV_GEMM_MR output
 * channels, the rows the GEMM packs together) and in chunks of input
 * channels through a scratch of the taps of one channel and the (up to 36)
 * transformed rows of the sliver, which are then written into the packed
 * GEMM operand directly (cconv_gemm_pack_a_block): no row-major copy of
 * the transformed weights is kept or packed again (that took half of a
 * call with new weights: 256 channels, F(4x4), 5 ms), and the stores run
 * along whole packed runs (straight into 36 row-major matrices c_out * c_in
 * apart, they aliased in the same cache sets: 40 ms at 512 channels). */
#define CCONV_WINO_WT_CHUNK 64
#define CCONV_WINO_WT_SCRATCH ((9 + 36 * CCONV_GEMM_MR) * CCONV_WINO_WT_CHUNK)
#endif

/* wt[k * CH + c] = w[co][c0 + c][k]: tap-major, so that the transforms run
 * along c_in with unit stride */
static inline void SFX(wino_taps)(const T *w, int64_t cin, int64_t co, int64_t c0,
                                  int64_t nc, T *CCONV_RESTRICT wt)
{
    const int64_t CH = CCONV_WINO_WT_CHUNK;
    for (int64_t c = 0; c < nc; ++c)
        for (int k = 0; k < 9; ++k) wt[k * CH + c] = w[(co * cin + c0 + c) * 9 + k];
}

/* G g G^T of one output channel's chunk of nc input channels: the taps wt
 * (wino_taps) to the 16 transformed rows u[xi * ld + c]. Inlined into its
 * caller's AVX2 clone, as wino4_kernel. */
CCONV_ALWAYS_INLINE void SFX(wino2_kernel)(const T *CCONV_RESTRICT wt, int64_t nc,
                                           T *CCONV_RESTRICT u, int64_t ld)
{
    const int64_t CH = CCONV_WINO_WT_CHUNK;
    const T h = (T)0.5;
    /* scalars only, so that the loop vectorises along c_in */
    CCONV_IVDEP
    for (int64_t c = 0; c < nc; ++c) {
        T t[4][3];
        for (int j = 0; j < 3; ++j) {          /* G g: rows of the 4x3 */
            const T a0 = wt[j * CH + c], a1 = wt[(3 + j) * CH + c];
            const T a2 = wt[(6 + j) * CH + c];
            t[0][j] = a0;
            t[1][j] = h * (a0 + a1 + a2);
            t[2][j] = h * (a0 - a1 + a2);
            t[3][j] = a2;
        }
        for (int i = 0; i < 4; ++i) {          /* (G g) G^T */
            u[(4 * i + 0) * ld + c] = t[i][0];
            u[(4 * i + 1) * ld + c] = h * (t[i][0] + t[i][1] + t[i][2]);
            u[(4 * i + 2) * ld + c] = h * (t[i][0] - t[i][1] + t[i][2]);
            u[(4 * i + 3) * ld + c] = t[i][2];
        }
    }
}

/* Tile t of the batch: image n, tile row th, tile column tw. A block of
 * tiles [t0, t0 + cnt) is walked in runs of one tile row ("segments"). */
typedef struct {
    int64_t n, th, tw0, seg;
} SFX(wino_seg);

static inline SFX(wino_seg) SFX(wino_segment)(int64_t t, int64_t end, int64_t TH, int64_t TW)
{
    SFX(wino_seg) s;
    s.n = t / (TH * TW);
    s.th = (t / TW) % TH;
    s.tw0 = t % TW;
    s.seg = TW - s.tw0;
    if (s.seg > end - t) s.seg = end - t;
    return s;
}

/* V[xi][ci][t - t0] = (B^T d B)[xi] for the tiles [t0, t0 + cnt) and the
 * input channels [c0, c1); row stride ldv of each ci row. rows: scratch of
 * 16 * (TW + 1).
 * The 4 input rows under a run of tiles are split into even and odd columns
 * (tile s covers columns 2s .. 2s + 3 = even[s], odd[s], even[s+1], odd[s+1]),
 * so every loop below runs with unit stride and vectorises. */
CCONV_CLONES static void SFX(wino_input)(const cconv_conv2d_params *p, const T *x,
                                         int64_t TH, int64_t TW, int64_t t0, int64_t cnt,
                                         int64_t ldv, T *CCONV_RESTRICT V,
                                         T *CCONV_RESTRICT rows, int64_t c0, int64_t c1)
{
    const int64_t H = p->h, W = p->w, HW = H * W, cin = p->c_in;
    const int64_t S = cin * ldv, L = TW + 1;
    T *CCONV_RESTRICT ev = rows, *CCONV_RESTRICT od = rows + 4 * L;
    T *CCONV_RESTRICT ae = rows + 8 * L, *CCONV_RESTRICT ao = rows + 12 * L;
    for (int64_t t = t0; t < t0 + cnt;) {
        const SFX(wino_seg) sg = SFX(wino_segment)(t, t0 + cnt, TH, TW);
        const int64_t n2 = sg.seg + 1, iw0 = 2 * sg.tw0 - p->pad_left;
        int64_t elo, ehi, olo, ohi;    /* even / odd columns inside the image */
        valid_range(iw0, 2, W, n2, &elo, &ehi);
        valid_range(iw0 + 1, 2, W, n2, &olo, &ohi);
        for (int64_t ci = c0; ci < c1; ++ci) {
            const T *xc = x + (sg.n * cin + ci) * HW;
            for (int r = 0; r < 4; ++r) {
                T *e = ev + r * L, *o = od + r * L;
                const int64_t ih = 2 * sg.th - p->pad_top + r;
                if (ih < 0 || ih >= H) {
                    for (int64_t k = 0; k < n2; ++k) { e[k] = 0; o[k] = 0; }
                    continue;
                }
                const T *src = xc + ih * W + iw0;
                for (int64_t k = 0; k < elo; ++k) e[k] = 0;
                for (int64_t k = elo; k < ehi; ++k) e[k] = src[2 * k];
                for (int64_t k = ehi; k < n2; ++k) e[k] = 0;
                for (int64_t k = 0; k < olo; ++k) o[k] = 0;
                for (int64_t k = olo; k < ohi; ++k) o[k] = src[2 * k + 1];
                for (int64_t k = ohi; k < n2; ++k) o[k] = 0;
            }
            /* B^T d, down the columns */
            CCONV_IVDEP for (int64_t k = 0; k < n2; ++k) {
                ae[k] = ev[k] - ev[2 * L + k];
                ae[L + k] = ev[L + k] + ev[2 * L + k];
                ae[2 * L + k] = ev[2 * L + k] - ev[L + k];
                ae[3 * L + k] = ev[L + k] - ev[3 * L + k];
                ao[k] = od[k] - od[2 * L + k];
                ao[L + k] = od[L + k] + od[2 * L + k];
                ao[2 * L + k] = od[2 * L + k] - od[L + k];
                ao[3 * L + k] = od[L + k] - od[3 * L + k];
            }
            /* (B^T d) B, along the rows */
            T *v = V + ci * ldv + (t - t0);
            for (int i = 0; i < 4; ++i) {
                const T *CCONV_RESTRICT e = ae + i * L, *CCONV_RESTRICT o = ao + i * L;
                T *CCONV_RESTRICT v0 = v + (4 * i + 0) * S, *CCONV_RESTRICT v1 = v + (4 * i + 1) * S;
                T *CCONV_RESTRICT v2 = v + (4 * i + 2) * S, *CCONV_RESTRICT v3 = v + (4 * i + 3) * S;
                CCONV_IVDEP for (int64_t s = 0; s < sg.seg; ++s) {
                    v0[s] = e[s] - e[s + 1];
                    v1[s] = o[s] + e[s + 1];
                    v2[s] = e[s + 1] - o[s];
                    v3[s] = o[s] - o[s + 1];
                }
            }
        }
        t += sg.seg;
    }
}

/* y tiles from M[xi][co][t - t0] for the output channels [c0, c1):
 * Y = A^T m A, then bias and activation. out: scratch of 2 * 2 * TW. */
CCONV_CLONES static void SFX(wino_output)(const cconv_conv2d_params *p, const T *Mb,
                                          int64_t TH, int64_t TW, int64_t t0, int64_t cnt,
                                          int64_t ldm, const T *bias, int act, T *y,
                                          T *CCONV_RESTRICT out, int64_t c0, int64_t c1)
{
    const int64_t cout = p->c_out, OH = p->out_h, OW = p->out_w, OHW = OH * OW;
    const int64_t S = cout * ldm;
    for (int64_t t = t0; t < t0 + cnt;) {
        const SFX(wino_seg) sg = SFX(wino_segment)(t, t0 + cnt, TH, TW);
        const int64_t oh = 2 * sg.th, ow0 = 2 * sg.tw0;
        const int64_t ncol = (ow0 + 2 * sg.seg <= OW) ? 2 * sg.seg : OW - ow0;
        const int two_rows = oh + 1 < OH;
        T *CCONV_RESTRICT o0 = out, *CCONV_RESTRICT o1 = out + 2 * TW;
        for (int64_t co = c0; co < c1; ++co) {
            const T *CCONV_RESTRICT m = Mb + co * ldm + (t - t0);
            CCONV_IVDEP for (int64_t s = 0; s < sg.seg; ++s) {
                T r0[4], r1[4];
                for (int k = 0; k < 4; ++k) {      /* A^T m */
                    const T m0 = m[(0 + k) * S + s], m1 = m[(4 + k) * S + s];
                    const T m2 = m[(8 + k) * S + s], m3 = m[(12 + k) * S + s];
                    r0[k] = m0 + m1 + m2;
                    r1[k] = m1 - m2 - m3;
                }
                /* (A^T m) A; the two columns of a tile interleave in y */
                o0[2 * s] = r0[0] + r0[1] + r0[2];
                o0[2 * s + 1] = r0[1] - r0[2] - r0[3];
                o1[2 * s] = r1[0] + r1[1] + r1[2];
                o1[2 * s + 1] = r1[1] - r1[2] - r1[3];
            }
            const T b = bias ? bias[co] : (T)0;
            T *yr = y + (sg.n * cout + co) * OHW + oh * OW + ow0;
            SFX(epilogue)(o0, yr, ncol, b, act);
            if (two_rows) SFX(epilogue)(o1, yr + OW, ncol, b, act);
        }
        t += sg.seg;
    }
}

#include "winograd4_impl.h"

/* The (m + 2)^2 transformed kernels of output channels [co0, co0 + mr)
 * (one sliver), packed into UP (matrix xi = (m + 2) * row + column at
 * UP + xi * psz). wt: scratch of CCONV_WINO_WT_SCRATCH. */
CCONV_CLONES static void SFX(wino_weights)(const T *CCONV_RESTRICT w, int64_t cout,
                                           int64_t cin, int64_t co0, int64_t mr,
                                           T *CCONV_RESTRICT UP, int64_t psz,
                                           T *CCONV_RESTRICT wt, int m)
{
    const int64_t CH = CCONV_WINO_WT_CHUNK, R = CCONV_GEMM_MR, A2 = (m + 2) * (m + 2);
    T *CCONV_RESTRICT ut = wt + 9 * CH;      /* ut[(xi * R + r) * CH + c] */
    for (int64_t c0 = 0; c0 < cin; c0 += CH) {
        const int64_t nc = cin - c0 < CH ? cin - c0 : CH;
        for (int64_t r = 0; r < mr; ++r) {
            SFX(wino_taps)(w, cin, co0 + r, c0, nc, wt);
            if (m == 2) SFX(wino2_kernel)(wt, nc, ut + r * CH, R * CH);
            else SFX(wino4_kernel)(wt, nc, ut + r * CH, R * CH);
        }
        for (int64_t xi = 0; xi < A2; ++xi)
            GEMM_PACK_A_BLOCK(cout, cin, co0, mr, c0, nc, ut + xi * R * CH, CH, UP + xi * psz);
    }
}

int cconv_conv2d_winograd_ok(const cconv_conv2d_params *p);

/* What every block of one F(m x m, 3x3) call shares. */
typedef struct {
    const cconv_conv2d_params *p;
    const T *x, *UP, *bias;
    T *V, *M, *y;
    int64_t TH, TW, tb, psz;
    int m, act;
} SFX(wino_call);

/* The input transform of tiles [t0, t0 + cnt) for input channels [c0, c1). */
static inline void SFX(wino_in)(const SFX(wino_call) *c, int64_t t0, int64_t cnt,
                                int64_t c0, int64_t c1, T *rows)
{
    if (c->m == 2) SFX(wino_input)(c->p, c->x, c->TH, c->TW, t0, cnt, c->tb, c->V, rows, c0, c1);
    else SFX(wino4_input)(c->p, c->x, c->TH, c->TW, t0, cnt, c->tb, c->V, rows, c0, c1);
}

/* Product xi of a block of cnt tiles: M_xi = U_xi V_xi (one thread; U_xi
 * packed only). */
static inline int SFX(wino_product)(const SFX(wino_call) *c, int64_t xi, int64_t cnt)
{
    const int64_t cin = c->p->c_in, cout = c->p->c_out, tb = c->tb;
    return GEMM_PA(0, 0, cout, cnt, cin, (T)1, NULL, cin, c->UP + xi * c->psz,
                   c->V + xi * cin * tb, tb, (T)0, c->M + xi * cout * tb, tb, 1);
}

/* The output transform, bias and activation of tiles [t0, t0 + cnt) for
 * output channels [c0, c1). */
static inline void SFX(wino_out)(const SFX(wino_call) *c, int64_t t0, int64_t cnt,
                                 int64_t c0, int64_t c1, T *out)
{
    if (c->m == 2)
        SFX(wino_output)(c->p, c->M, c->TH, c->TW, t0, cnt, c->tb, c->bias, c->act, c->y,
                         out, c0, c1);
    else
        SFX(wino4_output)(c->p, c->M, c->TH, c->TW, t0, cnt, c->tb, c->bias, c->act, c->y,
                          out, c0, c1);
}

/* F(m x m, 3x3) for m = 2 or 4: A2 = (m + 2)^2 transformed elements per tile.
 * Tiles run in blocks, one block per thread at a time; when there are fewer
 * blocks than threads (a 14x14 map at batch 1 has 16 tiles of 4x4) the
 * threads share each block instead: input channels, then the A2 products,
 * then output channels split among them (splitting each product's 16
 * columns instead left the transforms serial and cost a fork per product:
 * 2 threads were slower than 1). */
static int SFX(wino_forward)(const cconv_conv2d_params *p, const T *x, const T *w,
                             const T *bias, T *y, int act, int nthreads, int m)
{
    const int64_t cin = p->c_in, cout = p->c_out, A2 = (m + 2) * (m + 2);
    const int64_t TH = (p->out_h + m - 1) / m, TW = (p->out_w + m - 1) / m;
    const int64_t tiles = p->n * TH * TW;
    int nt = cconv_threads_for(nthreads, (double)tiles * (double)A2 * (double)(cin * cout));
    /* Tiles per block: the block's V (A2 x c_in x tb) near 512 KiB, so V and
     * the block's GEMM operands stay in L2; the blocks evened out (196 tiles
     * in blocks of 48 left a last one of 4, a product of 4 columns) and a
     * whole number per thread (5 blocks on 2 threads left one idle a fifth
     * of the time), in multiples of 8 columns (the GEMM's half sliver).
     * Fewer than 16 tiles per thread: the threads share blocks (split). */
    int64_t tb = (int64_t)(524288 / ((size_t)A2 * sizeof(T) * (size_t)cin));
    tb = tb < 16 ? 16 : (tb > 512 ? 512 : tb);
    int64_t nblocks = (tiles + tb - 1) / tb;
    const int split = nt > 1 && tiles < 16 * (int64_t)nt;
    if (!split) {
        nblocks = (nblocks + nt - 1) / nt * nt;
        tb = ((tiles + nblocks - 1) / nblocks + 7) / 8 * 8;
        if ((tiles + tb - 1) / tb != nblocks) tb = (tiles + nblocks - 1) / nblocks;
    } else if (tb > tiles) {
        tb = tiles;
    }
    nblocks = (tiles + tb - 1) / tb;
    /* the transformed weights, each of the A2 matrices packed for the GEMM
     * (packing them per product cost 10-15% of a 256-channel 14x14 layer),
     * from this thread's cache when w is unchanged */
    const size_t psz = GEMM_PACKED_A_SIZE(cout, cin);
    const size_t ubytes = (size_t)A2 * psz * sizeof(T);
    const int kind = m == 2 ? (sizeof(T) == 4 ? CCONV_DERIVED_WINOGRAD_F32
                                              : CCONV_DERIVED_WINOGRAD_F64)
                            : (sizeof(T) == 4 ? CCONV_DERIVED_WINOGRAD4_F32
                                              : CCONV_DERIVED_WINOGRAD4_F64);
    int fresh_u = 1;
    T *UP = (T *)cconv_derived_get(kind, w, (size_t)(9 * cout * cin) * sizeof(T), ubytes,
                                   &fresh_u);
    const int cached_u = UP != NULL;
    if (!UP) UP = (T *)cconv_work_alloc(1, ubytes);
    if (!UP) return CCONV_ENOMEM;
    const size_t vsz = (size_t)(A2 * cin * tb), msz = (size_t)(A2 * cout * tb);
    /* shared by the team when it splits blocks, else one pair per thread */
    T *VM = split ? (T *)cconv_work_alloc(3, (vsz + msz) * sizeof(T)) : NULL;
    if (split && !VM) {
        if (!cached_u) cconv_work_free(1, UP);
        return CCONV_ENOMEM;
    }
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        /* input rows split by column phase and their B^T; output rows */
        const size_t rsz = (size_t)(m == 2 ? 16 * (TW + 1) : 36 * tb + 4 * TW + 8);
        const size_t osz = (size_t)(m == 2 ? 4 * TW : 40 * tb + 4);
        size_t wsz = (size_t)CCONV_WINO_WT_SCRATCH;
        size_t total = (split ? 0 : vsz + msz) + rsz + osz;
        T *buf = (T *)cconv_work_alloc(0, (total > wsz ? total : wsz) * sizeof(T));
        if (!buf) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        const int64_t R = CCONV_GEMM_MR, nsl = (cout + R - 1) / R;
        int64_t sl;
#ifdef _OPENMP
        #pragma omp for schedule(static)
#endif
        for (sl = 0; sl < nsl; ++sl) {
            if (!buf || !fresh_u) continue;
            const int64_t co0 = sl * R, mr = cout - co0 < R ? cout - co0 : R;
            SFX(wino_weights)(w, cout, cin, co0, mr, UP, (int64_t)psz, buf, m);
        }
        /* (the implied barrier: the weights are complete before any block) */
        SFX(wino_call) call = {p, x, UP, bias, NULL, NULL, y, TH, TW, tb, (int64_t)psz, m, act};
        call.V = split ? VM : buf;
        call.M = split ? VM + vsz : (buf ? buf + vsz : NULL);
        T *rows = buf ? buf + (split ? 0 : vsz + msz) : NULL, *out = buf ? rows + rsz : NULL;
        int64_t blk;
        if (split) {
            /* every thread walks every block; the worksharing loops' implied
             * barriers order input -> products -> output */
            for (blk = 0; blk < nblocks; ++blk) {
                const int64_t t0 = blk * tb, cnt = t0 + tb <= tiles ? tb : tiles - t0;
                int part;
#ifdef _OPENMP
                #pragma omp for schedule(static)
#endif
                for (part = 0; part < nt; ++part)
                    if (buf && status == CCONV_OK)
                        SFX(wino_in)(&call, t0, cnt, cin * part / nt, cin * (part + 1) / nt, rows);
                int64_t xi;
#ifdef _OPENMP
                #pragma omp for schedule(static)
#endif
                for (xi = 0; xi < A2; ++xi) {
                    if (status == CCONV_OK && SFX(wino_product)(&call, xi, cnt) != CCONV_OK) {
                        CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                    }
                }
#ifdef _OPENMP
                #pragma omp for schedule(static)
#endif
                for (part = 0; part < nt; ++part)
                    if (buf && status == CCONV_OK)
                        SFX(wino_out)(&call, t0, cnt, cout * part / nt, cout * (part + 1) / nt,
                                      out);
            }
        } else {
#ifdef _OPENMP
            #pragma omp for schedule(static)
#endif
            for (blk = 0; blk < nblocks; ++blk) {
                if (!buf || status != CCONV_OK) continue;
                const int64_t t0 = blk * tb, cnt = t0 + tb <= tiles ? tb : tiles - t0;
                SFX(wino_in)(&call, t0, cnt, 0, cin, rows);
                for (int64_t xi = 0; xi < A2; ++xi) {
                    if (SFX(wino_product)(&call, xi, cnt) != CCONV_OK) {
                        CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                        break;
                    }
                }
                if (status == CCONV_OK) SFX(wino_out)(&call, t0, cnt, 0, cout, out);
            }
        }
        cconv_work_free(0, buf);
        cconv_fp_leave(fpm);
    }
    if (split) cconv_work_free(3, VM);
    if (!cached_u) cconv_work_free(1, UP);
    else if (status != CCONV_OK) cconv_derived_clear();   /* UP may be incomplete */
    return status;
}
