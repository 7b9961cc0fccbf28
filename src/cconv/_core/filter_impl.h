/* Image filtering kernels for one element type; included by filter.c with
 *   T             the element type (float or double)
 *   SFX(name)     name##_f32 / name##_f64
 *   FMA_T         fmaf / fma
 *   V, VL, VLOAD, VSTORE, VSET1, VFMA, VZERO   AVX2 vector ops (x86 only)
 *
 * Every path computes an output row as a list of taps over padded rows:
 *   y0[j] = sum_e w0_e * rp[r_e][off_e + j]      (and y1[j] with w1_e)
 * A list for two output rows at once (y0 from padded rows 0..kh-1, y1 from
 * 1..kh) carries both weights of each (row, offset), so every loaded vector
 * feeds two accumulators. Zero weights are skipped (as scipy.ndimage does):
 * the list is cut into runs of taps that feed both rows, only the first or
 * only the second, each run a branch-free loop. Each output row adds its
 * taps in the same order alone or in a pair, so results do not depend on
 * how rows are split between threads. */

typedef struct {
    int64_t n, nruns;
    int64_t *r, *off;       /* padded row and element offset of each tap */
    T *w0, *w1;             /* weight for the first and the second output row */
    int64_t *run_end;       /* run q covers taps [run_end[q - 1], run_end[q]) */
    int *run_kind;          /* TAP_BOTH, TAP_FIRST or TAP_SECOND */
} SFX(taps);

static int SFX(taps_alloc)(SFX(taps) *L, int64_t cap)
{
    void *mem = malloc((size_t)cap * (3 * sizeof(int64_t) + 2 * sizeof(T) + sizeof(int)));
    if (!mem) return CCONV_ENOMEM;
    L->r = (int64_t *)mem;
    L->off = L->r + cap;
    L->run_end = L->off + cap;
    L->w0 = (T *)(L->run_end + cap);
    L->w1 = L->w0 + cap;
    L->run_kind = (int *)(L->w1 + cap);
    L->n = L->nruns = 0;
    return CCONV_OK;
}

/* Taps of a kh x kw kernel (row-major) whose columns are `step` elements
 * apart, for one output row (pair == 0) or two. */
static void SFX(make_taps)(const T *k, int64_t kh, int64_t kw, int64_t step, int pair,
                           SFX(taps) *L)
{
    int64_t n = 0, q = 0;
    for (int64_t r = 0; r < kh + pair; ++r) {
        for (int64_t v = 0; v < kw; ++v) {
            T w0 = r < kh ? k[r * kw + v] : 0;
            T w1 = pair && r >= 1 ? k[(r - 1) * kw + v] : 0;
            if (w0 == 0 && w1 == 0) continue;
            int kind = w1 == 0 ? TAP_FIRST : w0 == 0 ? TAP_SECOND : TAP_BOTH;
            if (q == 0 || L->run_kind[q - 1] != kind) L->run_kind[q++] = kind;
            L->r[n] = r; L->off[n] = v * step; L->w0[n] = w0; L->w1[n] = w1;
            L->run_end[q - 1] = ++n;
        }
    }
    L->n = n; L->nruns = q;
}

/* Portable kernel: accumulate one tap at a time over the whole row. */
CCONV_CLONES static void SFX(rows_portable)(const T *const *ep, const SFX(taps) *L,
                                            T *restrict y0, T *restrict y1, int64_t len)
{
    for (int64_t j = 0; j < len; ++j) y0[j] = 0;
    if (y1)
        for (int64_t j = 0; j < len; ++j) y1[j] = 0;
    for (int64_t e = 0; e < L->n; ++e) {
        const T *restrict s = ep[e];
        const T w0 = L->w0[e], w1 = L->w1[e];
        if (w0 != 0)
            for (int64_t j = 0; j < len; ++j) y0[j] += w0 * s[j];
        if (y1 && w1 != 0)
            for (int64_t j = 0; j < len; ++j) y1[j] += w1 * s[j];
    }
}

#ifdef FILTER_X86
/* AVX2 kernel: 4 vectors of columns x (1 or 2) output rows stay in registers
 * while the taps stream past. A tail of at least one block is done by one
 * more, overlapping block: its columns are recomputed with the same
 * operations, hence the same values. */
FILTER_AVX2 static void SFX(rows_avx2)(const T *const *ep, const SFX(taps) *L,
                                       T *restrict y0, T *restrict y1, int64_t len)
{
    const T *w0 = L->w0, *w1 = L->w1;
    int64_t j = 0;
    for (; j < len && len >= 4 * VL; j += 4 * VL) {
        if (j + 4 * VL > len) j = len - 4 * VL;
        V a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();
        V b0 = VZERO(), b1 = VZERO(), b2 = VZERO(), b3 = VZERO();
        int64_t e = 0;
        for (int64_t q = 0; q < L->nruns; ++q) {
            const int64_t end = L->run_end[q];
            if (L->run_kind[q] == TAP_BOTH) {
                for (; e < end; ++e) {
                    const T *s = ep[e] + j;
                    V x0 = VLOAD(s), x1 = VLOAD(s + VL), x2 = VLOAD(s + 2 * VL),
                      x3 = VLOAD(s + 3 * VL);
                    V w = VSET1(w0[e]);
                    a0 = VFMA(w, x0, a0); a1 = VFMA(w, x1, a1);
                    a2 = VFMA(w, x2, a2); a3 = VFMA(w, x3, a3);
                    w = VSET1(w1[e]);
                    b0 = VFMA(w, x0, b0); b1 = VFMA(w, x1, b1);
                    b2 = VFMA(w, x2, b2); b3 = VFMA(w, x3, b3);
                }
            } else if (L->run_kind[q] == TAP_FIRST) {
                for (; e < end; ++e) {
                    const T *s = ep[e] + j;
                    V w = VSET1(w0[e]);
                    a0 = VFMA(w, VLOAD(s), a0); a1 = VFMA(w, VLOAD(s + VL), a1);
                    a2 = VFMA(w, VLOAD(s + 2 * VL), a2);
                    a3 = VFMA(w, VLOAD(s + 3 * VL), a3);
                }
            } else {
                for (; e < end; ++e) {
                    const T *s = ep[e] + j;
                    V w = VSET1(w1[e]);
                    b0 = VFMA(w, VLOAD(s), b0); b1 = VFMA(w, VLOAD(s + VL), b1);
                    b2 = VFMA(w, VLOAD(s + 2 * VL), b2);
                    b3 = VFMA(w, VLOAD(s + 3 * VL), b3);
                }
            }
        }
        VSTORE(y0 + j, a0); VSTORE(y0 + j + VL, a1);
        VSTORE(y0 + j + 2 * VL, a2); VSTORE(y0 + j + 3 * VL, a3);
        if (y1) {
            VSTORE(y1 + j, b0); VSTORE(y1 + j + VL, b1);
            VSTORE(y1 + j + 2 * VL, b2); VSTORE(y1 + j + 3 * VL, b3);
        }
    }
    for (; j < len && len >= VL; j += VL) {
        if (j + VL > len) j = len - VL;
        V a = VZERO(), b = VZERO();
        for (int64_t e = 0; e < L->n; ++e) {
            V x = VLOAD(ep[e] + j);
            if (w0[e] != 0) a = VFMA(VSET1(w0[e]), x, a);
            if (w1[e] != 0) b = VFMA(VSET1(w1[e]), x, b);
        }
        VSTORE(y0 + j, a);
        if (y1) VSTORE(y1 + j, b);
    }
    for (; j < len; ++j) {
        T a = 0, b = 0;
        for (int64_t e = 0; e < L->n; ++e) {
            const T x = ep[e][j];
            if (w0[e] != 0) a = FMA_T(w0[e], x, a);
            if (w1[e] != 0) b = FMA_T(w1[e], x, b);
        }
        y0[j] = a;
        if (y1) y1[j] = b;
    }
}

/* Unrolled 3x3 kernels: dense, and "cross" (corners zero: the notes' blur,
 * sharpen and edge). MASK (bit 3u + v: weight nonzero) is a constant, so
 * zero taps cost nothing; the tap order is the list's, so either may compute
 * any column. 2 rows x 2 vectors of columns are register-blocked and the nine
 * broadcast weights stay in registers. Needs len >= 2 vectors (returns 0
 * otherwise), else does every column. pf[0], pf[1] (each may be NULL): the
 * rows the next call will read first, fetched a line per step, at the same
 * columns: the stream from memory then overlaps the arithmetic (1.25x-1.27x
 * cv2 -> 1.32x-1.36x at 1 thread on a 2048^2 float32 image, where the
 * filter is bound by memory). */
static inline __attribute__((always_inline)) FILTER_AVX2 int64_t
SFX(k3_avx2)(const T *const *rp, const T *k, const unsigned MASK, int64_t step,
             const T *const *pf, T *restrict y0, T *restrict y1, int64_t len)
{
    V wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = VSET1(k[t]);
    const int NR = y1 ? 4 : 3;
    const T *pf0 = pf[0], *pf1 = pf[1];
    int64_t j = 0;
    /* a step covers 2 * VL elements: one 64-byte line of each row */
    for (; j < len && len >= 2 * VL; j += 2 * VL) {
        if (j + 2 * VL > len) j = len - 2 * VL;
        if (pf0) __builtin_prefetch(pf0 + j, 0, 3);
        if (pf1) __builtin_prefetch(pf1 + j, 0, 3);
        V a0 = VZERO(), a1 = VZERO(), b0 = VZERO(), b1 = VZERO();
        #pragma GCC unroll 4
        for (int r = 0; r < NR; ++r) {
            const T *row = rp[r] + j;
            #pragma GCC unroll 3
            for (int v = 0; v < 3; ++v) {
                const int t0 = r * 3 + v, t1 = (r - 1) * 3 + v;
                const int use0 = r < 3 && (MASK >> t0 & 1u);
                const int use1 = y1 && r >= 1 && (MASK >> t1 & 1u);
                if (!use0 && !use1) continue;
                V x0 = VLOAD(row + v * step), x1 = VLOAD(row + v * step + VL);
                if (use0) { a0 = VFMA(wv[t0], x0, a0); a1 = VFMA(wv[t0], x1, a1); }
                if (use1) { b0 = VFMA(wv[t1], x0, b0); b1 = VFMA(wv[t1], x1, b1); }
            }
        }
        VSTORE(y0 + j, a0); VSTORE(y0 + j + VL, a1);
        if (y1) { VSTORE(y1 + j, b0); VSTORE(y1 + j + VL, b1); }
    }
    return j;
}

FILTER_AVX2 static int64_t SFX(k3_pair)(const T *const *rp, const T *k, int64_t step,
                                        const T *const *pf, T *y0, T *y1, int64_t len)
{ return SFX(k3_avx2)(rp, k, 0x1FFu, step, pf, y0, y1, len); }
FILTER_AVX2 static int64_t SFX(k3_one)(const T *const *rp, const T *k, int64_t step,
                                       const T *const *pf, T *y0, int64_t len)
{ return SFX(k3_avx2)(rp, k, 0x1FFu, step, pf, y0, NULL, len); }
FILTER_AVX2 static int64_t SFX(k3x_pair)(const T *const *rp, const T *k, int64_t step,
                                         const T *const *pf, T *y0, T *y1, int64_t len)
{ return SFX(k3_avx2)(rp, k, 0xBAu, step, pf, y0, y1, len); }
FILTER_AVX2 static int64_t SFX(k3x_one)(const T *const *rp, const T *k, int64_t step,
                                        const T *const *pf, T *y0, int64_t len)
{ return SFX(k3_avx2)(rp, k, 0xBAu, step, pf, y0, NULL, len); }
#endif

/* Which unrolled path fits kernel k (FIXED_*), or FIXED_NONE. */
static int SFX(fixed_kind)(const T *k, int64_t kh, int64_t kw)
{
    if (kh != 3 || kw != 3) return FIXED_NONE;
    unsigned mask = 0;
    for (int t = 0; t < 9; ++t)
        if (k[t] != 0) mask |= 1u << t;
    return mask == 0x1FFu ? FIXED_K3 : mask == 0xBAu ? FIXED_K3CROSS : FIXED_NONE;
}

/* What one call of rows() needs besides the row pointers. */
typedef struct {
    const SFX(taps) *taps;
    int fixed;              /* FIXED_* (with the 3x3 kernel k) */
    const T *k;
    int64_t step;           /* elements between kernel columns (channels) */
    const T *pf[2];         /* rows to prefetch (k3 paths; NULL: none) */
} SFX(rowspec);

/* y0 (and y1) over len elements from padded-row pointers rp; ep is scratch
 * for one pointer per tap. */
static void SFX(rows)(const T *const *rp, const SFX(rowspec) *rs, const T **ep,
                      T *y0, T *y1, int64_t len)
{
    const SFX(taps) *L = rs->taps;
#ifdef FILTER_X86
    if (filter_have_avx2()) {
        int64_t done = 0;
        if (rs->fixed == FIXED_K3)
            done = y1 ? SFX(k3_pair)(rp, rs->k, rs->step, rs->pf, y0, y1, len)
                      : SFX(k3_one)(rp, rs->k, rs->step, rs->pf, y0, len);
        else if (rs->fixed == FIXED_K3CROSS)
            done = y1 ? SFX(k3x_pair)(rp, rs->k, rs->step, rs->pf, y0, y1, len)
                      : SFX(k3x_one)(rp, rs->k, rs->step, rs->pf, y0, len);
        if (done >= len) return;
        for (int64_t e = 0; e < L->n; ++e) ep[e] = rp[L->r[e]] + L->off[e];
        SFX(rows_avx2)(ep, L, y0, y1, len);
        return;
    }
#endif
    for (int64_t e = 0; e < L->n; ++e) ep[e] = rp[L->r[e]] + L->off[e];
    SFX(rows_portable)(ep, L, y0, y1, len);
}

/* ---- element types of the image and the output ---- */

/* dst[0..n) = src[0..n) (elements of `type`) as T: exact for 8/16-bit ints. */
CCONV_CLONES static void SFX(convert_in)(int type, const void *src, int64_t n, T *dst)
{
    switch (type) {
    case CCONV_DT_U8: CONVERT_IN_LOOP(uint8_t)
    case CCONV_DT_I8: CONVERT_IN_LOOP(int8_t)
    case CCONV_DT_U16: CONVERT_IN_LOOP(uint16_t)
    case CCONV_DT_I16: CONVERT_IN_LOOP(int16_t)
    default:
        memcpy(dst, src, (size_t)n * sizeof(T));
    }
}

static T SFX(load_one)(int type, const void *src, int64_t i)
{
    switch (type) {
    case CCONV_DT_U8: return (T)((const uint8_t *)src)[i];
    case CCONV_DT_I8: return (T)((const int8_t *)src)[i];
    case CCONV_DT_U16: return (T)((const uint16_t *)src)[i];
    case CCONV_DT_I16: return (T)((const int16_t *)src)[i];
    default: return ((const T *)src)[i];
    }
}

/* Round half to even (the default rounding mode), clip, store: never wraps. */
CCONV_CLONES static void SFX(convert_out)(int type, const T *src, int64_t n, void *dst)
{
    switch (type) {
    case CCONV_DT_U8: CONVERT_OUT_LOOP(uint8_t, 0, 255)
    case CCONV_DT_I8: CONVERT_OUT_LOOP(int8_t, -128, 127)
    case CCONV_DT_U16: CONVERT_OUT_LOOP(uint16_t, 0, 65535)
    case CCONV_DT_I16: CONVERT_OUT_LOOP(int16_t, -32768, 32767)
    default:
        memcpy(dst, src, (size_t)n * sizeof(T));
    }
}

static size_t SFX(type_size)(int type)
{
    switch (type) {
    case CCONV_DT_U8: case CCONV_DT_I8: return 1;
    case CCONV_DT_U16: case CCONV_DT_I16: return 2;
    default: return sizeof(T);
    }
}

/* Column plan. Padded element t of a row holds input column t / c - anchor_w
 * (channel t % c) extended by the border rule; a padded row has Wp elements,
 * of which [lo, hi) are the input row itself. Outputs [j0, j1) read only
 * input columns, so they are computed from the input rows in place; outputs
 * [0, el) and [er, olen) read small padded edge buffers (left: padded
 * [0, lw), right: padded [er, Wp)), at least one vector wide (they overlap
 * the interior, which they recompute to the same values). When no output is
 * interior (kernel wider than the image) or the input must be converted
 * (integer images: `full`), the left buffer is the whole padded row. */
typedef struct {
    int64_t *cmap;          /* padded element -> input element, or -1 (cval) */
    int64_t Wp, olen, lo, hi, j0, j1, el, er, lw, rw;
} SFX(colplan);

static int SFX(make_colplan)(const cconv_filter2d_params *p, int full, SFX(colplan) *cp)
{
    /* edge strips at least one AVX2 vector wide, so edges never go scalar */
    const int64_t C = p->c, span = (p->kw - 1) * C, emin = (int64_t)(32 / sizeof(T));
    cp->Wp = (p->out_w + p->kw - 1) * C;
    cp->olen = p->out_w * C;
    cp->lo = p->anchor_w * C;
    cp->hi = (p->anchor_w + p->w) * C < cp->Wp ? (p->anchor_w + p->w) * C : cp->Wp;
    cp->j0 = cp->lo;
    cp->j1 = cp->hi - span;
    if (full || cp->j1 <= cp->j0) {
        cp->j0 = cp->j1 = cp->el = cp->er = cp->olen;
    } else {
        cp->el = cp->j0 == 0 ? 0 : cp->j0 > emin ? cp->j0 : emin < cp->olen ? emin : cp->olen;
        cp->er = cp->j1 == cp->olen ? cp->olen
               : cp->olen - cp->j1 > emin ? cp->j1 : cp->olen > emin ? cp->olen - emin : 0;
    }
    cp->lw = cp->el + span;
    cp->rw = cp->Wp - cp->er;
    cp->cmap = (int64_t *)malloc((size_t)cp->Wp * sizeof(int64_t));
    if (!cp->cmap) return CCONV_ENOMEM;
    for (int64_t t = 0; t < cp->Wp; ++t) {
        int64_t m = cconv_border_index(t / C - p->anchor_w, p->w, p->border);
        cp->cmap[t] = m < 0 ? -1 : m * C + t % C;
    }
    return CCONV_OK;
}

/* buf = padded elements [t0, t1) of the input row src (elements of type). */
static void SFX(fill_padded)(const SFX(colplan) *cp, int type, const void *src,
                             int64_t t0, int64_t t1, T cval, T *buf)
{
    int64_t a = t0 > cp->lo ? t0 : cp->lo, b = t1 < cp->hi ? t1 : cp->hi;
    if (a >= b) a = b = t1;
    for (int64_t t = t0; t < a; ++t)
        buf[t - t0] = cp->cmap[t] >= 0 ? SFX(load_one)(type, src, cp->cmap[t]) : cval;
    if (b > a)
        SFX(convert_in)(type, (const char *)src + (a - cp->lo) * (int64_t)SFX(type_size)(type),
                        b - a, buf + (a - t0));
    for (int64_t t = b; t < t1; ++t)
        buf[t - t0] = cp->cmap[t] >= 0 ? SFX(load_one)(type, src, cp->cmap[t]) : cval;
}

/* The input rows of one plane. */
typedef struct {
    const char *plane;
    int64_t h, rowbytes;
    int border, type;
    const T *crow;          /* Wp copies of cval */
} SFX(rowsrc);

/* Input row r of the plane (any r: the border rule picks the row), or NULL
 * for a row of cval (CONSTANT outside the image). */
static const void *SFX(input_row)(const SFX(rowsrc) *rs, int64_t r)
{
    int64_t m = cconv_border_index(r, rs->h, rs->border);
    return m < 0 ? NULL : rs->plane + m * rs->rowbytes;
}

/* The padded edges of input row src in slot: left [0, lw), right [er, Wp). */
static void SFX(build_edges)(const SFX(colplan) *cp, const SFX(rowsrc) *rs,
                             const void *src, T *slot)
{
    SFX(fill_padded)(cp, rs->type, src, 0, cp->lw, rs->crow[0], slot);
    SFX(fill_padded)(cp, rs->type, src, cp->er, cp->Wp, rs->crow[0], slot + cp->lw);
}

/* Outputs [j0, j1) of one row (or a pair), read in place from the input rows
 * (pin[u]: padded element j0), then the edge strips from the padded edges.
 * The driver builds the edges of new rows in between: after the interior
 * pass has streamed the rows into cache, not before (a cold row end first
 * costs a memory round trip per row). */
static void SFX(rows_inner)(const SFX(colplan) *cp, const T *const *pin,
                            const SFX(rowspec) *rs, const T **ep, T *y0, T *y1)
{
    if (cp->j1 > cp->j0)
        SFX(rows)(pin, rs, ep, y0 + cp->j0, y1 ? y1 + cp->j0 : NULL, cp->j1 - cp->j0);
}

static void SFX(rows_edges)(const SFX(colplan) *cp, const T *const *pl, const T *const *pr,
                            const SFX(rowspec) *rs, const T **ep, T *y0, T *y1)
{
    if (cp->el > 0)
        SFX(rows)(pl, rs, ep, y0, y1, cp->el);
    if (cp->er < cp->olen)
        SFX(rows)(pr, rs, ep, y0 + cp->er, y1 ? y1 + cp->er : NULL, cp->olen - cp->er);
}

static int SFX(filter2d_impl)(const cconv_filter2d_params *p, const void *x, const T *k,
                              const T *kcol, const T *krow, void *y, int nthreads)
{
    int status = cconv_filter2d_check(p);
    if (status != CCONV_OK) return status;
    if (p->n == 0) return CCONV_OK;
    const int sep = k == NULL;
    const int64_t C = p->c, kh = p->kh, kw = p->kw, R = kh + 1;
    const int64_t olen = p->out_w * C, G = p->n * p->out_h;
    const int64_t in_size = (int64_t)SFX(type_size)(p->in_type);
    const int64_t out_size = (int64_t)SFX(type_size)(p->out_type);
    const int convert_out = p->out_type != CCONV_DT_COMPUTE;
    SFX(colplan) cp;
    if (SFX(make_colplan)(p, p->in_type != CCONV_DT_COMPUTE, &cp) != CCONV_OK)
        return CCONV_ENOMEM;
    const int64_t Wp = cp.Wp;

    /* direct: taps of k; separable: vertical taps of kcol (a kh x 1 kernel
     * over horizontally filtered rows) and horizontal taps of krow */
    SFX(taps) one, two, hor;
    one.r = two.r = hor.r = NULL;
    const int64_t cap = (kh + 1) * kw + kw;
    if (SFX(taps_alloc)(&one, cap) || SFX(taps_alloc)(&two, cap) ||
        SFX(taps_alloc)(&hor, cap)) {
        free(one.r); free(two.r); free(cp.cmap);
        return CCONV_ENOMEM;
    }
    if (sep) {
        SFX(make_taps)(kcol, kh, 1, 0, 0, &one);
        SFX(make_taps)(kcol, kh, 1, 0, 1, &two);
        SFX(make_taps)(krow, 1, kw, C, 0, &hor);
    } else {
        SFX(make_taps)(k, kh, kw, C, 0, &one);
        SFX(make_taps)(k, kh, kw, C, 1, &two);
    }
    const int fixed = sep ? FIXED_NONE : SFX(fixed_kind)(k, kh, kw);
    SFX(rowspec) rs_one = {&one, fixed, k, C, {NULL, NULL}};
    SFX(rowspec) rs_two = {&two, fixed, k, C, {NULL, NULL}};
    SFX(rowspec) rs_hor = {&hor, FIXED_NONE, NULL, C, {NULL, NULL}};
    double work = (double)G * (double)olen * (double)(sep ? hor.n + one.n : one.n);
    int nt = cconv_threads_for(nthreads, work);
    if ((int64_t)nt > G) nt = (int)G;
    if (nt < 1) nt = 1;
    const T cval = (T)p->cval;

    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0, nteam = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nteam = omp_get_num_threads();
#endif
        int64_t g0 = G * tid / nteam, g1 = G * (tid + 1) / nteam;
        /* ring of R slots: padded edges of input rows (direct) or horizontally
         * filtered rows (separable); a row of cval and its filtered copy; the
         * edges of the row being filtered; two output rows to convert */
        const int64_t edge = cp.lw + cp.rw, slot_len = sep ? olen : edge;
        const int64_t ybuf_len = convert_out ? 2 * olen : 0;
        T *mem = (T *)malloc((size_t)(R * slot_len + Wp + olen + edge + ybuf_len) * sizeof(T));
        int64_t *tags = (int64_t *)malloc((size_t)R * sizeof(int64_t));
        const T **ptr = (const T **)malloc((size_t)(3 * (R + 1) + cap) * sizeof(T *));
        const void **bsrc = (const void **)malloc((size_t)(R + 1) * sizeof(void *));
        T **bslot = (T **)malloc((size_t)(R + 1) * sizeof(T *));
        if (!mem || !tags || !ptr || !bsrc || !bslot) {
            CCONV_ATOMIC_STORE(status, CCONV_ENOMEM);
            g1 = g0;
        }
        T *ring = mem, *crow = mem ? mem + R * slot_len : NULL;
        T *crow_h = crow ? crow + Wp : NULL, *ebuf = crow_h ? crow_h + olen : NULL;
        T *ybuf = ebuf ? ebuf + edge : NULL;
        const T **pin = ptr, **pl = ptr ? ptr + R + 1 : NULL;
        const T **pr = ptr ? ptr + 2 * (R + 1) : NULL, **ep = ptr ? ptr + 3 * (R + 1) : NULL;
        if (crow) {
            for (int64_t t = 0; t < Wp; ++t) crow[t] = cval;
            if (sep) {
                const T *ci = crow + cp.j0, *cl = crow, *cr = crow + cp.er;
                SFX(rows_inner)(&cp, &ci, &rs_hor, ep, crow_h, NULL);
                SFX(rows_edges)(&cp, &cl, &cr, &rs_hor, ep, crow_h, NULL);
            }
        }
        SFX(rowsrc) src;
        src.plane = NULL; src.h = p->h; src.rowbytes = p->w * C * in_size;
        src.border = p->border; src.type = p->in_type; src.crow = crow;
        int64_t b_cur = -1;
        for (int64_t g = g0; g < g1;) {
            int64_t b = g / p->out_h, i = g % p->out_h;
            if (b != b_cur) {
                b_cur = b;
                src.plane = (const char *)x + b * p->h * src.rowbytes;
                for (int64_t s = 0; s < R; ++s) tags[s] = INT64_MIN;
            }
            int pair = g + 1 < g1 && i + 1 < p->out_h;
            int64_t nrows = kh + pair;
            int64_t nb = 0;                 /* rows whose edges are to build */
            for (int64_t u = 0; u < nrows; ++u) {
                int64_t r = i - p->anchor_h + u;
                int64_t s = ((r % R) + R) % R;
                T *slot = ring + s * slot_len;
                const void *row = SFX(input_row)(&src, r);
                if (!sep) {
                    if (!row) {
                        pin[u] = crow + cp.j0; pl[u] = crow; pr[u] = crow + cp.er;
                        continue;
                    }
                    pin[u] = (const T *)row;    /* padded element j0 = input element 0 */
                    pl[u] = slot; pr[u] = slot + cp.lw;
                    if (tags[s] != r) {
                        bsrc[nb] = row; bslot[nb++] = slot;
                        tags[s] = r;
                    }
                    continue;
                }
                if (!row) {
                    pin[u] = crow_h;
                    continue;
                }
                if (tags[s] != r) {             /* filter the new row horizontally */
                    const T *ri = (const T *)row, *rl = ebuf, *rr = ebuf + cp.lw;
                    SFX(rows_inner)(&cp, &ri, &rs_hor, ep, slot, NULL);
                    SFX(build_edges)(&cp, &src, row, ebuf);
                    SFX(rows_edges)(&cp, &rl, &rr, &rs_hor, ep, slot, NULL);
                    tags[s] = r;
                }
                pin[u] = slot;
            }
            T *y0 = convert_out ? ybuf : (T *)y + g * olen;
            T *y1 = pair ? y0 + olen : NULL;
            const SFX(rowspec) *spec = pair ? &rs_two : &rs_one;
            if (sep) {
                SFX(rows)(pin, spec, ep, y0, y1, olen);
            } else {
                /* the next step's new input rows, read in place by the interior
                 * pass (integer images never are: converted into the edges) */
                SFX(rowspec) inner = *spec;
                if (p->in_type == CCONV_DT_COMPUTE)
                    for (int q = 0; q < 2; ++q)
                        inner.pf[q] = (const T *)SFX(input_row)(&src, i - p->anchor_h + nrows + q);
                SFX(rows_inner)(&cp, pin, &inner, ep, y0, y1);
                for (int64_t q = 0; q < nb; ++q)
                    SFX(build_edges)(&cp, &src, bsrc[q], bslot[q]);
                SFX(rows_edges)(&cp, pl, pr, spec, ep, y0, y1);
            }
            if (convert_out)
                SFX(convert_out)(p->out_type, ybuf, (1 + pair) * olen,
                                 (char *)y + g * olen * out_size);
            g += 1 + pair;
        }
        free(mem); free(tags); free(ptr); free(bsrc); free(bslot);
    }
    free(one.r); free(two.r); free(hor.r);
    free(cp.cmap);
    return status;
}
