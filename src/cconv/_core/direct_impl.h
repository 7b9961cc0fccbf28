/* Direct convolution with a register-blocked micro-kernel, type-generic
 * (included by conv_impl.h with T, SFX, GEMM set).
 *
 * For layers whose reduction K = C_in/groups * kh * kw is small (LeNet's,
 * a 7x7 stem on 3 channels), im2col + GEMM spends more time writing and
 * re-packing the unfolded image than multiplying. Here the image is copied
 * once into a zero-bordered buffer, split by column phase (column iw of a
 * stride-s layer goes to phase iw % s at iw / s), so that the inputs under
 * VL consecutive outputs of any tap are VL consecutive elements. A
 * micro-tile is MR output channels x (up to) two vectors of VL outputs; per
 * tap it loads the two input vectors, broadcasts MR weights and does 2 * MR
 * multiply-adds into registers, then adds the bias, applies the
 * activation and stores straight into the NCHW output. Weights are packed
 * once per call as [channel block][tap][MR]. */

#define DIR_MR 6     /* output channels per micro-tile: 12 accumulators + 3 */
#define DIR_JOBS_PER_THREAD 8   /* when the batch alone gives fewer jobs */

#if defined(__GNUC__) || defined(__clang__)
#define DIR_VEC 1
#define DIR_VL ((int)(32 / sizeof(T)))
typedef T SFX(dir_vt) __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
#else
#define DIR_VEC 0
#define DIR_VL 8
#endif

/* Where one job's inputs lie in its phase-split buffer. */
typedef struct {
    int64_t R;     /* input rows held: those under output rows [oh0, oh1) */
    int64_t Wq;    /* elements per phase row (vector over-reads included) */
    int64_t NPH;   /* column phases held: min(sw, dilated kernel width) */
    int64_t RS;    /* row stride: NPH phases of Wq */
    int64_t CS;    /* channel stride: R rows */
} SFX(dir_geom);

static SFX(dir_geom) SFX(dir_geometry)(const cconv_conv2d_params *p, int64_t rows)
{
    SFX(dir_geom) g;
    const int64_t sw = p->stride_w;
    const int64_t ow_span = (p->out_w + DIR_VL - 1) / DIR_VL * DIR_VL;
    g.R = (rows - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
    const int64_t eff_w = (p->kw - 1) * p->dil_w + 1;
    g.Wq = ow_span + ((p->kw - 1) * p->dil_w) / sw;
    /* phases no tap reads are not stored: a stride far beyond the kernel
     * (2^24) would otherwise size the buffer and the fill by the stride */
    g.NPH = sw < eff_w ? sw : eff_w;
    g.RS = g.NPH * g.Wq;
    g.CS = g.R * g.RS;
    return g;
}

/* Copy channels [0, cin_g) of image xg, rows under outputs [oh0, oh1), into
 * buf split by column phase, zeros outside the image. */
CCONV_CLONES static void SFX(dir_fill)(const cconv_conv2d_params *p, const T *xg,
                                       int64_t cin_g, int64_t oh0,
                                       const SFX(dir_geom) *g, T *CCONV_RESTRICT buf)
{
    const int64_t H = p->h, W = p->w, sw = p->stride_w;
    const int64_t ih0 = oh0 * p->stride_h - p->pad_top;
    for (int64_t c = 0; c < cin_g; ++c) {
        for (int64_t r = 0; r < g->R; ++r) {
            const int64_t ih = ih0 + r;
            T *dst = buf + c * g->CS + r * g->RS;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)g->RS * sizeof(T));
                continue;
            }
            const T *CCONV_RESTRICT src = xg + (c * H + ih) * W;
            for (int64_t ph = 0; ph < g->NPH; ++ph) {
                T *CCONV_RESTRICT d = dst + ph * g->Wq;
                /* iw = q * sw + ph - pad_left; valid for q in [lo, hi) */
                const int64_t iw0 = ph - p->pad_left;
                int64_t lo, hi;
                valid_range(iw0, sw, W, g->Wq, &lo, &hi);
                for (int64_t q = 0; q < lo; ++q) d[q] = 0;
                if (sw == 1) {
                    memcpy(d + lo, src + iw0 + lo, (size_t)(hi - lo) * sizeof(T));
                } else {
                    for (int64_t q = lo; q < hi; ++q) d[q] = src[iw0 + q * sw];
                }
                for (int64_t q = hi; q < g->Wq; ++q) d[q] = 0;
            }
        }
    }
}

/* wp[block][k][DIR_MR] for the output channels of group g; a last, partial
 * block is padded with zeros (its extra rows are never stored). */
static void SFX(dir_pack_weights)(const T *w, int64_t cout_g, int64_t K, T *wp)
{
    const int64_t nb = (cout_g + DIR_MR - 1) / DIR_MR;
    for (int64_t b = 0; b < nb; ++b)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t r = 0; r < DIR_MR; ++r) {
                const int64_t co = b * DIR_MR + r;
                wp[(b * K + k) * DIR_MR + r] = co < cout_g ? w[co * K + k] : (T)0;
            }
}

/* Element offset in the buffer of every tap k = (c * kh + i) * kw + j.
 * The column part depends on j only: computed once per j (a division per
 * tap cost 2 us of a 10 us LeNet call), then every row adds its base. */
static void SFX(dir_tap_offsets)(const cconv_conv2d_params *p, int64_t cin_g,
                                 const SFX(dir_geom) *g, int64_t *koff)
{
    const int64_t sw = p->stride_w, kw = p->kw, kh = p->kh;
    for (int64_t j = 0; j < kw; ++j) {
        const int64_t jw = j * p->dil_w;
        koff[j] = (jw % sw) * g->Wq + jw / sw;
    }
    /* downwards, so that koff[0..kw) still holds the column parts when the
     * later rows read them (the first row's base is 0) */
    for (int64_t row = cin_g * kh - 1; row >= 0; --row) {
        const int64_t c = row / kh, i = row % kh;
        const int64_t base = c * g->CS + i * p->dil_h * g->RS;
        for (int64_t j = kw - 1; j >= 0; --j) koff[row * kw + j] = base + koff[j];
    }
}

/* One output vector: where it reads (offset of its first input in the
 * buffer) and writes (its first output in the plane), and how many of its
 * lanes are real outputs. */
typedef struct {
    int64_t in, out;
    int lanes;
} SFX(dir_vec);

#if DIR_VEC
typedef SFX(dir_vt) SFX(dir_v);

/* The larger of a and b, NaN if either is (max_pool2d's rule). */
#define DIR_NANMAX(a, b) (((b) > (a) || (b) != (b)) ? (b) : (a))

/* The even and the odd lanes of v, each in the low half (GCC >= 12 and
 * clang have __builtin_shufflevector; older compilers pool lane by lane). */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define DIR_PAIRS 1
#if DIR_LANES == 8
#define DIR_EVEN(v) __builtin_shufflevector(v, v, 0, 2, 4, 6, 0, 2, 4, 6)
#define DIR_ODD(v) __builtin_shufflevector(v, v, 1, 3, 5, 7, 1, 3, 5, 7)
#else
#define DIR_EVEN(v) __builtin_shufflevector(v, v, 0, 2, 0, 2)
#define DIR_ODD(v) __builtin_shufflevector(v, v, 1, 3, 1, 3)
#endif
#endif

/* The micro-tile's products, shared with the row-Winograd tile:
 * acc[r][u] = sum over taps k of w[k][r] * the vector at x_u + koff[k]
 * (x_1 only when nv == 2): per tap nv vector loads, mr broadcasts and
 * mr * nv multiply-adds, all in registers. */
static inline __attribute__((always_inline)) void
SFX(dir_products)(const int mr, const int nv, int64_t K, const int64_t *CCONV_RESTRICT koff,
                  const T *CCONV_RESTRICT w, const T *x0, const T *x1,
                  SFX(dir_v) acc[DIR_MR][2])
{
    const SFX(dir_v) zero = {0};
    const SFX(dir_v) one = zero + 1;
    for (int r = 0; r < mr; ++r)
        for (int u = 0; u < nv; ++u) acc[r][u] = zero;
    for (int64_t k = 0; k < K; ++k) {
        const int64_t o = koff[k];
        const SFX(dir_v) a0 = *(const SFX(dir_v) *)(x0 + o);
        const SFX(dir_v) a1 = *(const SFX(dir_v) *)(x1 + o);
        const T *wk = w + k * DIR_MR;
        for (int r = 0; r < mr; ++r) {
            const SFX(dir_v) b = one * wk[r];
            acc[r][0] += a0 * b;
            if (nv > 1) acc[r][1] += a1 * b;
        }
    }
}

/* POOL: v[0] and v[1] are the same columns of two output rows; the tile
 * stores the 2x2 max of each column pair instead (v[0].out: the first
 * pooled output, v[0].lanes: how many). */
static inline __attribute__((always_inline)) void
SFX(dir_tile)(const int mr, const int nv, const int POOL, int64_t K,
              const int64_t *CCONV_RESTRICT koff, const T *CCONV_RESTRICT wp, const T *buf,
              const SFX(dir_vec) *v, T *const *yc, const T *bias, int act)
{
    SFX(dir_v) acc[DIR_MR][2];
    const SFX(dir_v) zero = {0};
    SFX(dir_products)(mr, nv, K, koff, wp, buf + v[0].in, buf + v[nv - 1].in, acc);
    if (POOL) {
        for (int r = 0; r < mr; ++r) {
            const T bv = bias ? bias[r] : (T)0;
            SFX(dir_v) s0 = acc[r][0] + bv, s1 = acc[r][1] + bv;
            if (act == CCONV_ACT_RELU) {
                const __typeof__(s0 < zero) n0 = s0 < zero, n1 = s1 < zero;
                s0 = (SFX(dir_v))((__typeof__(n0))s0 & ~n0);
                s1 = (SFX(dir_v))((__typeof__(n1))s1 & ~n1);
            }
            /* rows first, then column pairs: the same maximum as max_pool2d's
             * (which NaN wins when several are NaN is not observable) */
            const __typeof__(s0 < zero) take = (s1 > s0) | (s1 != s1);
            const SFX(dir_v) m = (SFX(dir_v))(((__typeof__(take))s1 & take) |
                                                ((__typeof__(take))s0 & ~take));
            T *dst = yc[r] + v[0].out;
#ifdef DIR_PAIRS
            /* column pairs in vector registers: a scalar max per output
             * lane cost LeNet's first layer 13% of its time (more than
             * storing the unpooled output) */
            const SFX(dir_v) e = DIR_EVEN(m), o = DIR_ODD(m);
            const __typeof__(take) t2 = (o > e) | (o != o);
            const SFX(dir_v) pm = (SFX(dir_v))(((__typeof__(t2))o & t2) |
                                                 ((__typeof__(t2))e & ~t2));
            if (v[0].lanes == DIR_VL / 2) {
                memcpy(dst, &pm, sizeof(T) * (DIR_VL / 2));
            } else {
                T lanes[32 / sizeof(T)];
                memcpy(lanes, &pm, sizeof pm);
                for (int l = 0; l < v[0].lanes; ++l) dst[l] = lanes[l];
            }
#else
            T lanes[32 / sizeof(T)];
            memcpy(lanes, &m, sizeof m);
            for (int l = 0; l < v[0].lanes; ++l)
                dst[l] = DIR_NANMAX(lanes[2 * l], lanes[2 * l + 1]);
#endif
        }
        return;
    }
    for (int r = 0; r < mr; ++r) {
        const T bv = bias ? bias[r] : (T)0;
        for (int u = 0; u < nv; ++u) {
            SFX(dir_v) s = acc[r][u] + bv;
            if (act == CCONV_ACT_RELU) {
                /* clear the lanes below zero; NaN compares false and stays
                 * NaN, as in torch (a max instruction would drop it) */
                const __typeof__(s < zero) neg = s < zero;
                s = (SFX(dir_v))((__typeof__(neg))s & ~neg);
            }
            T *dst = yc[r] + v[u].out;
            if (v[u].lanes == DIR_VL) {
                *(SFX(dir_v) *)dst = s;
            } else {
                T lanes[32 / sizeof(T)];
                memcpy(lanes, &s, sizeof s);
                for (int l = 0; l < v[u].lanes; ++l) dst[l] = lanes[l];
            }
        }
    }
}
#else
/* The portable tile: the same sums in the same order, without vectors. */
#define DIR_NANMAX(a, b) (((b) > (a) || (b) != (b)) ? (b) : (a))

static T SFX(dir_one)(int64_t K, const int64_t *koff, const T *wp, const T *buf,
                      int64_t in, int r, const T *bias, int act)
{
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += buf[in + koff[k]] * wp[k * DIR_MR + r];
    s += bias ? bias[r] : (T)0;
    return (act == CCONV_ACT_RELU && s < 0) ? 0 : s;
}

static void SFX(dir_tile)(const int mr, const int nv, const int POOL, int64_t K,
                          const int64_t *koff, const T *wp, const T *buf,
                          const SFX(dir_vec) *v, T *const *yc, const T *bias, int act)
{
    if (POOL) {
        for (int r = 0; r < mr; ++r)
            for (int l = 0; l < v[0].lanes; ++l) {
                T m = SFX(dir_one)(K, koff, wp, buf, v[0].in + 2 * l, r, bias, act);
                for (int q = 1; q < 4; ++q) {
                    const T e = SFX(dir_one)(K, koff, wp, buf, v[q >> 1].in + 2 * l + (q & 1),
                                             r, bias, act);
                    m = DIR_NANMAX(m, e);
                }
                yc[r][v[0].out + l] = m;
            }
        return;
    }
    for (int u = 0; u < nv; ++u)
        for (int r = 0; r < mr; ++r)
            for (int l = 0; l < v[u].lanes; ++l) {
                T s = 0;
                for (int64_t k = 0; k < K; ++k)
                    s += buf[v[u].in + koff[k] + l] * wp[k * DIR_MR + r];
                s += bias ? bias[r] : (T)0;
                if (act == CCONV_ACT_RELU && s < 0) s = 0;
                yc[r][v[u].out + l] = s;
            }
}
#endif

/* Every output vector of rows [oh0, oh1), paired, for channels of one
 * block: the switch turns MR and NV into constants for dir_tile. With
 * pool, rows [oh0, oh1) (oh0 even) pooled 2x2 into yg (planes of
 * (OH / 2) x (OW / 2)). */
CCONV_CLONES static void SFX(dir_rows)(const cconv_conv2d_params *p, int64_t K,
                                       const int64_t *koff, const T *wp, int64_t cout_g,
                                       const T *buf, const SFX(dir_geom) *g, int64_t oh0,
                                       int64_t oh1, const T *bias, int act, int pool, T *yg)
{
    const int64_t OW = p->out_w, sh = p->stride_h;
    const int64_t PH = p->out_h / 2, PW = OW / 2;
    const int64_t P = pool ? PH * PW : p->out_h * OW;
    const int64_t nb = (cout_g + DIR_MR - 1) / DIR_MR;
    for (int64_t b = 0; b < nb; ++b) {
        const int mr = (int)(cout_g - b * DIR_MR < DIR_MR ? cout_g - b * DIR_MR : DIR_MR);
        T *yc[DIR_MR];
        for (int r = 0; r < mr; ++r) yc[r] = yg + (b * DIR_MR + r) * P;
        const T *wb = wp + b * K * DIR_MR;
        const T *bb = bias ? bias + b * DIR_MR : NULL;
        SFX(dir_vec) v[2];
        if (pool) {
            for (int64_t oh = oh0; oh + 1 < oh1 && oh < 2 * PH; oh += 2) {
                for (int64_t ow = 0; ow < 2 * PW; ow += DIR_VL) {
                    v[0].in = (oh - oh0) * sh * g->RS + ow;
                    v[1].in = v[0].in + sh * g->RS;
                    v[0].out = (oh / 2) * PW + ow / 2;
                    v[0].lanes = (int)(PW - ow / 2 < DIR_VL / 2 ? PW - ow / 2 : DIR_VL / 2);
#define DIR_CASE(M)                                                                  \
    case M: SFX(dir_tile)(M, 2, 1, K, koff, wb, buf, v, yc, bb, act); break;
                    switch (mr) {
                        DIR_CASE(1) DIR_CASE(2) DIR_CASE(3) DIR_CASE(4) DIR_CASE(5) DIR_CASE(6)
                    }
#undef DIR_CASE
                }
            }
            continue;
        }
        int nv = 0;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
            for (int64_t ow = 0; ow < OW; ow += DIR_VL) {
                v[nv].in = (oh - oh0) * sh * g->RS + ow;
                v[nv].out = oh * OW + ow;
                v[nv].lanes = (int)(OW - ow < DIR_VL ? OW - ow : DIR_VL);
                if (++nv < 2 && !(oh == oh1 - 1 && ow + DIR_VL >= OW)) continue;
#define DIR_CASE(M)                                                                  \
    case M:                                                                         \
        if (nv == 2) SFX(dir_tile)(M, 2, 0, K, koff, wb, buf, v, yc, bb, act);       \
        else SFX(dir_tile)(M, 1, 0, K, koff, wb, buf, v, yc, bb, act);               \
        break;
                switch (mr) {
                    DIR_CASE(1) DIR_CASE(2) DIR_CASE(3) DIR_CASE(4) DIR_CASE(5) DIR_CASE(6)
                }
#undef DIR_CASE
                nv = 0;
            }
        }
    }
}

/* Output rows per job: those whose input rows (row_bytes each output row)
 * fill a buffer near 256 KiB (L2). */
static int64_t SFX(dir_rows_for)(const cconv_conv2d_params *p, int64_t row_bytes)
{
    int64_t rows = 262144 / (row_bytes > 0 ? row_bytes : 1);
    /* rows between the windows of a stride beyond the kernel are never read:
     * one output row per job keeps the buffer the kernel's height */
    if (rows < 1 || p->stride_h > (p->kh - 1) * p->dil_h + 1) rows = 1;
    return rows < p->out_h ? rows : p->out_h;
}

static int64_t SFX(dir_job_rows)(const cconv_conv2d_params *p, int64_t cin_g)
{
    const SFX(dir_geom) one = SFX(dir_geometry)(p, 1);
    return SFX(dir_rows_for)(p, cin_g * p->stride_h * one.RS * (int64_t)sizeof(T));
}

/* The jobs of a forward pass: *rows output rows each, *chunks per image and
 * group. L2-sized (dir_rows_for); when the batch gives few jobs, at least
 * 8 per thread in a whole number per thread, handed out first come, first
 * served: on a shared machine one thread often starts or runs late, and
 * with 2 fixed halves the call waited for it (the 7x7 stem at batch 1 on 2
 * threads, median of 6 x 200 calls: 2.34 ms with 4 fixed jobs per thread,
 * 2.1 ms this way; the fastest calls, 1.43-1.5 ms, are the same). The
 * jobs' input rows overlap by the kernel height, a small cost next to their
 * products. With pool, a job pools whole pairs of rows. */
static void SFX(dir_plan_jobs)(const cconv_conv2d_params *p, int64_t row_bytes, int pool,
                               int nt, int64_t *rows_out, int64_t *chunks_out)
{
    const int64_t OH = p->out_h;
    int64_t rows = SFX(dir_rows_for)(p, row_bytes);
    int64_t chunks = (OH + rows - 1) / rows;
    const int64_t images = p->n * p->groups;
    if (nt > 1 && images * chunks < DIR_JOBS_PER_THREAD * nt) {
        int64_t want = (DIR_JOBS_PER_THREAD * nt + images - 1) / images;
        while (want < OH && (images * want) % nt) ++want;
        if (want > chunks) chunks = want < OH ? want : OH;
        rows = (OH + chunks - 1) / chunks;
        chunks = (OH + rows - 1) / rows;
    }
    if (pool && rows % 2) {
        rows = rows + 1 < OH ? rows + 1 : OH;
        chunks = (OH + rows - 1) / rows;
    }
    *rows_out = rows;
    *chunks_out = chunks;
}

/* Weights prepared from w (w_elems) into elems elements: this thread's
 * cached copy where it fits (*cached = 1; *fresh = 0 when it was made from
 * w's current bytes), else a work buffer (slot 3) to fill (*fresh = 1).
 * NULL: out of memory. */
static T *SFX(dir_prepared)(int kind, const T *w, int64_t w_elems, size_t elems, int *cached,
                            int *fresh)
{
    T *u = (T *)cconv_derived_get(kind, w, (size_t)w_elems * sizeof(T), elems * sizeof(T),
                                  fresh);
    *cached = u != NULL;
    if (!u) {
        *fresh = 1;
        u = (T *)cconv_work_alloc(3, elems * sizeof(T));
    }
    return u;
}

/* y = act(conv(x, w) + bias), or with pool its 2x2 / stride 2 max pooling
 * ((OH / 2) x (OW / 2) planes: a last odd row or column is dropped, as
 * max_pool2d(2) does), without the full-size output ever being stored. */
static int SFX(direct_forward)(const cconv_conv2d_params *p, const T *x, const T *w,
                               const T *bias, T *y, int act, int pool, int nthreads)
{
    const int64_t G = p->groups, cin_g = p->c_in / G, cout_g = p->c_out / G;
    const int64_t K = cin_g * p->kh * p->kw, OH = p->out_h, P = OH * p->out_w;
    const int64_t HW = p->h * p->w;
    const int nt = cconv_threads_for(nthreads, (double)p->n * p->c_out * P * K);
    const SFX(dir_geom) one = SFX(dir_geometry)(p, 1);
    int64_t rows, chunks;
    SFX(dir_plan_jobs)(p, cin_g * p->stride_h * one.RS * (int64_t)sizeof(T), pool, nt, &rows,
                       &chunks);
    const int64_t njobs = p->n * G * chunks;
    const SFX(dir_geom) geo = SFX(dir_geometry)(p, rows);
    const int64_t nb = (cout_g + DIR_MR - 1) / DIR_MR;
    const size_t wp_elems = (size_t)(G * nb * K * DIR_MR);
    /* the packed weights from this thread's cache when w is unchanged
     * (packing them was a tenth of a batch-1 LeNet layer's time) */
    int fresh, cached;
    T *wp = SFX(dir_prepared)(sizeof(T) == 4 ? CCONV_DERIVED_DIRECT_F32
                                             : CCONV_DERIVED_DIRECT_F64,
                              w, p->c_out * K, wp_elems, &cached, &fresh);
    int64_t *koff = (int64_t *)cconv_work_alloc(1, (size_t)K * sizeof(int64_t));
    if (!wp || !koff) {
        if (!cached) cconv_work_free(3, wp);
        cconv_work_free(1, koff);
        return CCONV_ENOMEM;
    }
    if (fresh)
        for (int64_t g = 0; g < G; ++g)
            SFX(dir_pack_weights)(w + g * cout_g * K, cout_g, K, wp + g * nb * K * DIR_MR);
    SFX(dir_tap_offsets)(p, cin_g, &geo, koff);
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const unsigned fpm = cconv_fp_enter();
        /* + DIR_VL: the last vector of a row may read past its phase row */
        T *buf = (T *)cconv_work_alloc(0, (size_t)(cin_g * geo.CS + DIR_VL) * sizeof(T));
        if (!buf) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
        } else {
            memset(buf + cin_g * geo.CS, 0, DIR_VL * sizeof(T));
        }
        int64_t job;
#ifdef _OPENMP
        #pragma omp for schedule(dynamic, 1)
#endif
        for (job = 0; job < njobs; ++job) {
            if (!buf) continue;
            const int64_t chunk = job % chunks, ng = job / chunks;
            const int64_t n = ng / G, g = ng % G;
            const int64_t oh0 = chunk * rows, oh1 = oh0 + rows < OH ? oh0 + rows : OH;
            SFX(dir_fill)(p, x + (n * p->c_in + g * cin_g) * HW, cin_g, oh0, &geo, buf);
            const int64_t plane = pool ? (OH / 2) * (p->out_w / 2) : P;
            SFX(dir_rows)(p, K, koff, wp + g * nb * K * DIR_MR, cout_g, buf, &geo, oh0, oh1,
                          bias ? bias + g * cout_g : NULL, act, pool,
                          y + (n * p->c_out + g * cout_g) * plane);
        }
        cconv_work_free(0, buf);
        cconv_fp_leave(fpm);
    }
    cconv_work_free(1, koff);
    if (!cached) cconv_work_free(3, wp);
    return status;
}

#include "direct_grad_impl.h"
#include "wino_rows_impl.h"

#undef DIR_MR
#undef DIR_JOBS_PER_THREAD
#undef DIR_PAIRS
#undef DIR_EVEN
#undef DIR_ODD
#undef DIR_VEC
#undef DIR_VL
