/* Weight gradient of a 3x3 stride-1 convolution by Winograd F(4x4, 3x3),
 * type-generic (included by conv_impl.h after winograd_impl.h). Only F(4x4)
 * is needed: the weight gradient takes Winograd from 128 tiles on
 * (conv.c), where the forward pass always picks F(4x4, 3x3).
 *
 * The forward pass computes each output tile as Y = A^T [U .* V] A with
 * U = G g G^T and V = B^T d B. Its adjoint: the gradient of U is
 * (A dY A^T) .* V, so over all tiles t of the batch
 *   dU[xi][co][ci] = sum_t dM[xi][co][t] V[xi][ci][t],  dM = A dY A^T,
 * which is 36 GEMMs whose reduction runs over the tiles, and
 *   dg = G^T dU G.
 * V is the forward pass's input transform; tiles past the output's edge
 * have dY = 0. The threads share one dU, each adding the products of its
 * own points xi (see wino4_backward_weight): the same bits at any thread
 * count. */

/* dM[xi][co][t - t0] = (A dY A^T)[xi] for the tiles [t0, t0 + cnt), output
 * channels [co0, co1). D: scratch of 40 * ldm. */
CCONV_CLONES static void SFX(wino4_grad_dy)(const cconv_conv2d_params *p, const T *dy,
                                            int64_t TH, int64_t TW, int64_t t0, int64_t cnt,
                                            int64_t ldm, T *CCONV_RESTRICT dM,
                                            T *CCONV_RESTRICT D, int64_t co0, int64_t co1)
{
    const int64_t cout = p->c_out, OH = p->out_h, OW = p->out_w, OHW = OH * OW;
    const int64_t S = cout * ldm;
    T *CCONV_RESTRICT E = D + 16 * ldm;
    for (int64_t co = co0; co < co1; ++co) {
        /* D[4 * i + k][u]: row i, column k of the dY tile t0 + u (0 past
         * the output's edge) */
        for (int64_t t = t0; t < t0 + cnt;) {
            const SFX(wino_seg) sg = SFX(wino_segment)(t, t0 + cnt, TH, TW);
            const int64_t oh = 4 * sg.th, ow0 = 4 * sg.tw0, u0 = t - t0;
            const T *src = dy + (sg.n * cout + co) * OHW + ow0;
            for (int i = 0; i < 4; ++i) {
                const int row_in = oh + i < OH;
                for (int k = 0; k < 4; ++k) {
                    T *CCONV_RESTRICT d = D + (4 * i + k) * ldm + u0;
                    for (int64_t s = 0; s < sg.seg; ++s) {
                        const int64_t ow = 4 * s + k;
                        d[s] = row_in && ow0 + ow < OW ? src[(oh + i) * OW + ow] : (T)0;
                    }
                }
            }
            t += sg.seg;
        }
        /* A dY A^T: A (the transpose of the A^T above) down the columns into
         * E[4 * i + k] (6 x 4), then along E's rows into dM */
        for (int k = 0; k < 4; ++k) {
            const T *CCONV_RESTRICT d0 = D + k * ldm, *CCONV_RESTRICT d1 = D + (4 + k) * ldm;
            const T *CCONV_RESTRICT d2 = D + (8 + k) * ldm, *CCONV_RESTRICT d3 = D + (12 + k) * ldm;
            T *CCONV_RESTRICT e0 = E + k * ldm, *CCONV_RESTRICT e1 = E + (4 + k) * ldm;
            T *CCONV_RESTRICT e2 = E + (8 + k) * ldm, *CCONV_RESTRICT e3 = E + (12 + k) * ldm;
            T *CCONV_RESTRICT e4 = E + (16 + k) * ldm, *CCONV_RESTRICT e5 = E + (20 + k) * ldm;
            CCONV_IVDEP for (int64_t u = 0; u < cnt; ++u) {
                const T s02 = d0[u] + d2[u], s13 = d1[u] + d3[u];
                const T t2 = (T)4 * d2[u] + d0[u], t13 = (T)2 * d1[u] + (T)8 * d3[u];
                e0[u] = d0[u]; e1[u] = s02 + s13; e2[u] = s02 - s13;
                e3[u] = t2 + t13; e4[u] = t2 - t13; e5[u] = d3[u];
            }
        }
        T *CCONV_RESTRICT out = dM + co * ldm;
        for (int i = 0; i < 6; ++i) {
            const T *CCONV_RESTRICT q0 = E + 4 * i * ldm, *CCONV_RESTRICT q1 = q0 + ldm;
            const T *CCONV_RESTRICT q2 = q0 + 2 * ldm, *CCONV_RESTRICT q3 = q0 + 3 * ldm;
            T *CCONV_RESTRICT o0 = out + (6 * i) * S, *CCONV_RESTRICT o1 = o0 + S;
            T *CCONV_RESTRICT o2 = o0 + 2 * S, *CCONV_RESTRICT o3 = o0 + 3 * S;
            T *CCONV_RESTRICT o4 = o0 + 4 * S, *CCONV_RESTRICT o5 = o0 + 5 * S;
            CCONV_IVDEP for (int64_t u = 0; u < cnt; ++u) {
                const T s02 = q0[u] + q2[u], s13 = q1[u] + q3[u];
                const T t2 = (T)4 * q2[u] + q0[u], t13 = (T)2 * q1[u] + (T)8 * q3[u];
                o0[u] = q0[u]; o1[u] = s02 + s13; o2[u] = s02 - s13;
                o3[u] = t2 + t13; o4[u] = t2 - t13; o5[u] = q3[u];
            }
        }
    }
}

/* G^T applied to one column u[0..6) of dU, giving 3 values. */
static inline void SFX(wino4_grad_gt)(const T *u, T *o)
{
    const T s6 = (T)(1.0 / 6.0), s12 = (T)(1.0 / 12.0), s24 = (T)(1.0 / 24.0);
    o[0] = (T)0.25 * u[0] - s6 * (u[1] + u[2]) + s24 * (u[3] + u[4]);
    o[1] = s6 * (u[2] - u[1]) + s12 * (u[3] - u[4]);
    o[2] = s6 * (u[3] + u[4] - u[1] - u[2]) + u[5];
}

/* dw (C_out x C_in x 3 x 3) of a layer for which cconv_conv2d_winograd_ok
 * holds. */
static int SFX(wino4_backward_weight)(const cconv_conv2d_params *p, const T *dy, const T *x,
                                      T *dw, int nthreads)
{
    const int64_t cin = p->c_in, cout = p->c_out, A2 = 36;
    const int64_t TH = (p->out_h + 3) / 4, TW = (p->out_w + 3) / 4;
    const int64_t tiles = p->n * TH * TW, usz = A2 * cout * cin;
    int nt = cconv_threads_for(nthreads, (double)tiles * (double)A2 * (double)(cin * cout));
    int64_t tb = (int64_t)(CCONV_WINOGRAD_GRAD_BLOCK_BYTES /
                           ((size_t)A2 * sizeof(T) * (size_t)(cin + cout)));
    tb = tb < 16 ? 16 : (tb > 512 ? 512 : tb / 16 * 16);
    if (tb > tiles) tb = tiles;
    const int64_t nblocks = (tiles + tb - 1) / tb;
    /* One dU for the team, no per-thread copies: per block the team first
     * transforms the tiles (V by input channels, dM by output channels, into
     * one shared buffer), then each thread adds the products of its own
     * points xi (36 = 2, 3, 4, 6, 12 even shares). Every dU element is summed
     * by one thread in block order: the same bits at any thread count. */
    const int64_t CH = 4;   /* channels per transform job */
    const int64_t ncj = (cin + CH - 1) / CH, noj = (cout + CH - 1) / CH;
    if (nt > A2) nt = (int)A2;
    T *dU = (T *)calloc((size_t)usz, sizeof(T));
    const size_t vsz = (size_t)(A2 * cin * tb), msz = (size_t)(A2 * cout * tb);
    T *V = (T *)cconv_work_alloc(3, (vsz + msz) * sizeof(T));
    if (!dU || !V) {
        free(dU);
        cconv_work_free(3, V);
        return CCONV_ENOMEM;
    }
    T *dM = V + vsz;
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        const size_t rsz = (size_t)(36 * tb + 4 * TW + 8), dsz = (size_t)(40 * tb);
        T *scratch = (T *)cconv_work_alloc(0, (rsz > dsz ? rsz : dsz) * sizeof(T));
        if (!scratch) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        }
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            const int64_t t0 = blk * tb, cnt = t0 + tb <= tiles ? tb : tiles - t0;
            int64_t j;
#ifdef _OPENMP
            #pragma omp for schedule(static)
#endif
            for (j = 0; j < ncj + noj; ++j) {
                if (!scratch) continue;
                const int64_t c0 = (j < ncj ? j : j - ncj) * CH;
                if (j < ncj)
                    SFX(wino4_input)(p, x, TH, TW, t0, cnt, tb, V, scratch, c0,
                                     c0 + CH < cin ? c0 + CH : cin);
                else
                    SFX(wino4_grad_dy)(p, dy, TH, TW, t0, cnt, tb, dM, scratch, c0,
                                       c0 + CH < cout ? c0 + CH : cout);
            }
            int64_t xi;
#ifdef _OPENMP
            #pragma omp for schedule(static)
#endif
            for (xi = 0; xi < A2; ++xi) {
                if (status != CCONV_OK) continue;
                /* dU_xi (cout x cin) += dM_xi (cout x cnt) V_xi^T (cnt x cin) */
                if (GEMM(0, 1, cout, cin, cnt, (T)1, dM + xi * cout * tb, tb,
                         V + xi * cin * tb, tb, (T)1, dU + xi * cout * cin, cin,
                         1) != CCONV_OK) {
                    CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
                }
            }
        }
        cconv_work_free(0, scratch);
        cconv_fp_leave(fpm);
    }
    cconv_work_free(3, V);
    if (status == CCONV_OK) {
        /* dw = G^T dU G for every (co, ci) */
        const int64_t S = cout * cin;
        for (int64_t k = 0; k < S; ++k) {
            T u[36], r[6][3], col[6], o[3];
            for (int64_t xi = 0; xi < A2; ++xi) u[xi] = dU[xi * S + k];
            for (int i = 0; i < 6; ++i) SFX(wino4_grad_gt)(u + 6 * i, r[i]);  /* rows: dU G */
            for (int j = 0; j < 3; ++j) {                                   /* G^T (dU G) */
                for (int i = 0; i < 6; ++i) col[i] = r[i][j];
                SFX(wino4_grad_gt)(col, o);
                for (int i = 0; i < 3; ++i) dw[k * 9 + 3 * i + j] = o[i];
            }
        }
    }
    free(dU);
    return status;
}
