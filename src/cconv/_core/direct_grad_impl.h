/* Weight gradient of the layers the direct kernel runs forward (short
 * reductions: LeNet's, 7x7 stems on 3 channels), type-generic, included at
 * the end of direct_impl.h (its geometry, buffer fill and tap offsets):
 *
 *   dw[co][k] = sum over images and outputs of dy[co][out] * x[tap k of out]
 *
 * im2col + GEMM ran these at 13-30 GFLOP/s: a 6 x 25 or 16 x 150 product
 * over tens of thousands of columns packs both operands once per block for
 * a handful of multiply-adds per element. Here each image's rows go into
 * the forward kernel's phase-split buffer, where the inputs under VL
 * consecutive outputs of any tap are VL consecutive elements, and a tile of
 * DG_MR output channels x DG_KB taps keeps its sums in vector registers
 * while it walks the output rows: per vector of outputs DG_MR loads of dy,
 * DG_KB of x and DG_MR * DG_KB multiply-adds. The lanes of each sum are
 * kept apart (vacc) and added at the end of each of the fixed parts of the
 * jobs (conv.c, grad_parts): the same bits at any thread count. */

#if DIR_VEC
#define DG_AVAILABLE 1   /* read by conv_impl.h's backward_weight */
#define DG_MR 3   /* 9 sums, 3 dy vectors and an input in registers, none spilled */
#define DG_KB 3
#ifndef DG_JOB_BYTES
#define DG_JOB_BYTES 32768
#endif

/* The tile of channels [cb, cb + mr) x taps [kb, kb + kr) over a job's
 * output vectors: vector e reads x at buf + xo[e] + koff[tap] and dy at
 * dy + dof[e] + channel * dcs; the last ntail vectors are a row's tail,
 * their lanes past the row's end masked off (keep). One flat loop: LeNet
 * conv2's rows are a single vector each, and walking them row by row cost
 * more than their multiply-adds. */
static inline __attribute__((always_inline)) void
SFX(dg_tile)(const int mr, const int kr, int64_t cb, int64_t kb, int64_t K,
             const int64_t *CCONV_RESTRICT koff, const T *buf, const T *dy, int64_t dcs,
             const int64_t *CCONV_RESTRICT xo, const int64_t *CCONV_RESTRICT dof,
             int64_t nvec, int64_t ntail, const T *keepv, T *vacc)
{
    SFX(dir_v) acc[DG_MR][DG_KB];
    const T *xk[DG_KB];
    const T *dr[DG_MR];
    for (int r = 0; r < mr; ++r)
        for (int t = 0; t < kr; ++t)
            acc[r][t] = *(const SFX(dir_v) *)(vacc + ((cb + r) * K + kb + t) * DIR_VL);
    for (int t = 0; t < kr; ++t) xk[t] = buf + koff[kb + t];
    for (int r = 0; r < mr; ++r) dr[r] = dy + (cb + r) * dcs;
    const int64_t nfull = nvec - ntail;
    for (int64_t e = 0; e < nfull; ++e) {
        const int64_t x0 = xo[e], d0 = dof[e];
        SFX(dir_v) d[DG_MR];
        for (int r = 0; r < mr; ++r) d[r] = *(const SFX(dir_v) *)(dr[r] + d0);
        for (int t = 0; t < kr; ++t) {
            const SFX(dir_v) a = *(const SFX(dir_v) *)(xk[t] + x0);
            for (int r = 0; r < mr; ++r) acc[r][t] += d[r] * a;
        }
    }
    if (ntail) {
        const SFX(dir_v) zero = {0};
        __typeof__(zero < zero) keep;
        memcpy(&keep, keepv, sizeof keep);
        for (int64_t e = nfull; e < nvec; ++e) {
            const int64_t x0 = xo[e], d0 = dof[e];
            SFX(dir_v) d[DG_MR];
            for (int r = 0; r < mr; ++r) d[r] = *(const SFX(dir_v) *)(dr[r] + d0);
            for (int t = 0; t < kr; ++t) {
                SFX(dir_v) a = *(const SFX(dir_v) *)(xk[t] + x0);
                /* inputs past the row's last output: zero, so that an inf
                 * or NaN the convolution never reads does not reach dw */
                a = (SFX(dir_v))((__typeof__(keep))a & keep);
                for (int r = 0; r < mr; ++r) acc[r][t] += d[r] * a;
            }
        }
    }
    for (int r = 0; r < mr; ++r)
        for (int t = 0; t < kr; ++t)
            *(SFX(dir_v) *)(vacc + ((cb + r) * K + kb + t) * DIR_VL) = acc[r][t];
}

CCONV_CLONES static void SFX(dg_rows)(int64_t K, const int64_t *koff, int64_t cout_g,
                                      const T *buf, const T *dy, int64_t dcs,
                                      const int64_t *xo, const int64_t *dof, int64_t nvec,
                                      int64_t ntail, const T *keepv, T *vacc)
{
    for (int64_t cb = 0; cb < cout_g; cb += DG_MR) {
        const int mr = (int)(cout_g - cb < DG_MR ? cout_g - cb : DG_MR);
        for (int64_t kb = 0; kb < K; kb += DG_KB) {
            const int kr = (int)(K - kb < DG_KB ? K - kb : DG_KB);
#define DG_CASE(M, R)                                                                  \
    case (M) * 8 + (R):                                                                \
        SFX(dg_tile)(M, R, cb, kb, K, koff, buf, dy, dcs, xo, dof, nvec, ntail, keepv, vacc); \
        break;
            switch (mr * 8 + kr) {
                DG_CASE(1, 1) DG_CASE(1, 2) DG_CASE(1, 3)
                DG_CASE(2, 1) DG_CASE(2, 2) DG_CASE(2, 3)
                DG_CASE(3, 1) DG_CASE(3, 2) DG_CASE(3, 3)
            }
#undef DG_CASE
        }
    }
}

/* The most parts (12, 6, 4, 2 or 1; at most cap) that njobs jobs share out
 * evenly: a whole number each, or at least 4 each. */
static int64_t SFX(dg_even_parts)(int64_t cap, int64_t njobs)
{
    static const int64_t even[] = {12, 6, 4, 2};
    for (int i = 0; i < 4; ++i)
        if (even[i] <= cap && (njobs % even[i] == 0 || njobs >= 4 * even[i])) return even[i];
    return 1;
}

/* dw (overwritten; no bias) of a layer the direct kernel runs forward.
 * Small images go several to a job (a tile's sums then stay in registers
 * over all of them: LeNet conv2's 8x8 outputs gave a tile 8 vectors of
 * work per image); large ones are cut into chunks of rows, as forward. */
static int SFX(direct_backward_weight)(const cconv_conv2d_params *p, const T *dy,
                                       const T *x, T *dw, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, OH = p->out_h, OW = p->out_w, P = OH * OW;
    const int64_t HW = p->h * p->w, wsize = p->c_out * K;
    const double work = (double)p->n * p->c_out * P * K;
    int nt = cconv_threads_for(nthreads, work);
    int64_t rows = SFX(dir_job_rows)(p, cin_g);   /* chunks of a big map, as forward */
    int64_t chunks = (OH + rows - 1) / rows;
    /* The parts from the work (a part's own sums, vacc, mostly stay in cache:
     * half a copy's cost), then jobs that share them out evenly; the jobs
     * depend on the problem only, as they set the order of the sums. */
    const int64_t parts_w = grad_parts(INT64_MAX, work, wsize * DIR_VL / 2, sizeof(T));
    const int grouped = chunks == 1 && p->n > 1;
    int64_t parts = SFX(dg_even_parts)(parts_w, p->n * G * chunks);
    if (!grouped && parts < parts_w && p->n * G * chunks < 4 * parts_w && rows > 1) {
        /* few images (a stem at batch 1): rows cut for two jobs per part */
        int64_t want = (2 * parts_w + p->n * G - 1) / (p->n * G);
        if (want > OH) want = OH;
        rows = (OH + want - 1) / want;
        chunks = (OH + rows - 1) / rows;
        parts = SFX(dg_even_parts)(parts_w, p->n * G * chunks);
    }
    const SFX(dir_geom) geo = SFX(dir_geometry)(p, rows);
    const int64_t bstride = cin_g * geo.CS;
    int64_t imgs = 1;
    const int64_t dsample = cout_g * P;   /* dy elements of one image */
    if (grouped) {
        /* image groups whole per part: one long job per part keeps a tile's
         * sums in registers over more images */
        imgs = DG_JOB_BYTES / ((bstride + dsample) * (int64_t)sizeof(T));
        if (imgs < 1) imgs = 1;
        if (imgs > p->n) imgs = p->n;
        int64_t ngroups = (p->n + imgs - 1) / imgs;
        if (G == 1 && ngroups % parts_w) ngroups += parts_w - ngroups % parts_w;
        if (ngroups > p->n) ngroups = p->n;
        imgs = (p->n + ngroups - 1) / ngroups;
    }
    const int64_t ngroups = (p->n + imgs - 1) / imgs;
    const int64_t njobs = ngroups * G * chunks;
    if (grouped) parts = SFX(dg_even_parts)(parts_w, njobs);
    if (nt > parts) nt = (int)parts;
    /* dy rows padded to whole vectors (zeros after OW) when OW is not */
    const int64_t nvr = (OW + DIR_VL - 1) / DIR_VL;          /* vectors per row */
    const int64_t ldy = OW % DIR_VL ? nvr * DIR_VL : OW;
    const int padded = ldy != OW;
    const int64_t dcs = padded ? OH * ldy : P;               /* dy channel stride */
    const int64_t dstride = padded ? cout_g * dcs : p->c_out * P;   /* and image stride */
    const int64_t maxvec = imgs * rows * nvr;
    int64_t *koff = (int64_t *)cconv_work_alloc(1, (size_t)K * sizeof(int64_t));
    T *partial = parts > 1 ? (T *)calloc((size_t)(parts - 1) * (size_t)wsize, sizeof(T)) : NULL;
    if (!koff || (parts > 1 && !partial)) {
        cconv_work_free(1, koff);
        free(partial);
        return CCONV_ENOMEM;
    }
    SFX(dir_tap_offsets)(p, cin_g, &geo, koff);
    T keepv[DIR_VL];   /* all bits set in the lanes of a row's tail that are outputs */
    for (int l = 0; l < DIR_VL; ++l) {
        int64_t bits = l < OW % DIR_VL ? -1 : 0;
        memcpy(&keepv[l], &bits, sizeof(T));
    }
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        /* + DIR_VL: the last vector of a row may read past its phase row */
        const size_t bufsz = (size_t)(imgs * bstride + DIR_VL);
        const size_t vsz = (size_t)(wsize * DIR_VL);
        /* dsz rounded to 16 elements: the int64 offset lists follow */
        const size_t dsz = padded ? ((size_t)(imgs * dstride) + 15) / 16 * 16 : 0;
        const size_t isz = (size_t)(2 * maxvec) * sizeof(int64_t) / sizeof(T);
        T *buf = (T *)cconv_work_alloc(0, bufsz * sizeof(T));
        T *vacc = (T *)cconv_work_alloc(3, (vsz + dsz + isz) * sizeof(T));
        if (!buf || !vacc) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        } else {
            memset(buf + imgs * bstride, 0, DIR_VL * sizeof(T));
            memset(vacc, 0, (vsz + dsz) * sizeof(T));
        }
        T *dyp = vacc ? vacc + vsz : NULL;
        int64_t *xo = vacc ? (int64_t *)(void *)(vacc + vsz + dsz) : NULL;
        int64_t *dof = xo ? xo + maxvec : NULL;
        int64_t part;
#ifdef _OPENMP
        #pragma omp for schedule(dynamic, 1)
#endif
        for (part = 0; part < parts; ++part) {
            if (!buf || !vacc) continue;
            memset(vacc, 0, vsz * sizeof(T));   /* a part's sums start from zero */
            const int64_t j1 = (part + 1) * njobs / parts;
            for (int64_t job = part * njobs / parts; job < j1; ++job) {
                const int64_t chunk = job % chunks, gg = job / chunks;
                const int64_t g = gg % G, n0 = (gg / G) * imgs;
                const int64_t nimg = n0 + imgs <= p->n ? imgs : p->n - n0;
                const int64_t oh0 = chunk * rows, oh1 = oh0 + rows < OH ? oh0 + rows : OH;
                for (int64_t i = 0; i < nimg; ++i) {
                    const int64_t n = n0 + i;
                    SFX(dir_fill)(p, x + (n * p->c_in + g * cin_g) * HW, cin_g, oh0, &geo,
                                  buf + i * bstride);
                    if (padded)   /* this chunk's rows, padded (the tails stay zero) */
                        for (int64_t c = 0; c < cout_g; ++c)
                            for (int64_t oh = oh0; oh < oh1; ++oh)
                                memcpy(dyp + i * dstride + c * dcs + oh * ldy,
                                       dy + (n * p->c_out + g * cout_g + c) * P + oh * OW,
                                       (size_t)OW * sizeof(T));
                }
                /* the job's output vectors: whole ones first, then the row tails */
                const int tail = OW % DIR_VL != 0;
                int64_t nv = 0;
                for (int pass = 0; pass < 2; ++pass)
                    for (int64_t i = 0; i < nimg; ++i)
                        for (int64_t oh = oh0; oh < oh1; ++oh)
                            for (int64_t v = 0; v < nvr; ++v) {
                                if ((tail && v == nvr - 1) != pass) continue;
                                xo[nv] = i * bstride + (oh - oh0) * p->stride_h * geo.RS +
                                         v * DIR_VL;
                                dof[nv] = i * dstride + oh * ldy + v * DIR_VL;
                                ++nv;
                            }
                const int64_t ntail = tail ? nimg * (oh1 - oh0) : 0;
                const T *dyg = padded ? dyp : dy + (n0 * p->c_out + g * cout_g) * P;
                SFX(dg_rows)(K, koff, cout_g, buf, dyg, dcs, xo, dof, nv, ntail, keepv,
                             vacc + g * cout_g * K * DIR_VL);
            }
            /* the part's sums: the lanes of each, pairwise */
            T *acc = part == 0 ? dw : partial + (size_t)(part - 1) * (size_t)wsize;
            for (int64_t i = 0; i < wsize; ++i) {
                T l[DIR_VL];
                memcpy(l, vacc + i * DIR_VL, sizeof l);
                for (int w = DIR_VL / 2; w >= 1; w /= 2)
                    for (int q = 0; q < w; ++q) l[q] += l[q + w];
                acc[i] = l[0];
            }
        }
        cconv_work_free(0, buf);
        cconv_work_free(3, vacc);
        cconv_fp_leave(fpm);
    }
    if (partial) {
        SFX(add_copies)(dw, partial, parts - 1, wsize);
        free(partial);
    }
    cconv_work_free(1, koff);
    return status;
}

#undef DG_MR
#undef DG_KB
#endif /* DIR_VEC */
