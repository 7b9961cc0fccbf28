/* 2-D convolution (cross-correlation) forward and backward.
 * The general path lowers each output-column tile to a GEMM through im2col
 * (a cache-sized tile, never the whole unfolded image); depthwise convolution
 * has a direct path because im2col would turn it into C tiny GEMMs. */
#include <stdlib.h>
#include <string.h>
#include "cconv_core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int cconv_conv2d_check(cconv_conv2d_params *p)
{
    if (p->n < 0 || p->c_in < 1 || p->h < 1 || p->w < 1 || p->c_out < 1 ||
        p->kh < 1 || p->kw < 1 || p->stride_h < 1 || p->stride_w < 1 ||
        p->dil_h < 1 || p->dil_w < 1 || p->groups < 1 ||
        p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0)
        return CCONV_EINVAL;
    if (p->c_in % p->groups || p->c_out % p->groups) return CCONV_EINVAL;
    int64_t eff_h = p->dil_h * (p->kh - 1) + 1, eff_w = p->dil_w * (p->kw - 1) + 1;
    int64_t span_h = p->h + p->pad_top + p->pad_bottom;
    int64_t span_w = p->w + p->pad_left + p->pad_right;
    if (eff_h > span_h || eff_w > span_w) return CCONV_EINVAL;
    p->out_h = (span_h - eff_h) / p->stride_h + 1;
    p->out_w = (span_w - eff_w) / p->stride_w + 1;
    return CCONV_OK;
}

/* Columns per im2col tile: the tile (K x cols) near 1 MiB. Measured on
 * Zen 3 (512 KiB L2): 256 KiB tiles leave the GEMM too few columns per
 * packed weight block on 3x3 convolutions with 128+ channels (47 vs 66
 * GFLOP/s); 4 MiB tiles fall out of cache. */
static int64_t tile_cols(int64_t K, int64_t P, size_t elem)
{
    int64_t cols = (int64_t)(1048576 / (elem * (size_t)(K > 0 ? K : 1)));
    if (cols < 32) cols = 32;
    cols = (cols / 16) * 16;
    if (cols >= P) return P;
    /* even out the tiles so the last one is not a sliver */
    int64_t ntiles = (P + cols - 1) / cols;
    cols = (P + ntiles - 1) / ntiles;
    return cols;
}

/* First and one-past-last q in [0, seg) with 0 <= iw0 + q*s < W. */
static inline void valid_range(int64_t iw0, int64_t s, int64_t W, int64_t seg,
                               int64_t *lo, int64_t *hi)
{
    int64_t a, b;
    if (s == 1) {               /* the common case, without two divisions */
        a = iw0 >= 0 ? 0 : -iw0;
        b = iw0 >= W ? 0 : W - iw0;
    } else {
        a = iw0 >= 0 ? 0 : (-iw0 + s - 1) / s;
        b = iw0 >= W ? 0 : (W - iw0 + s - 1) / s;
    }
    if (a > seg) a = seg;
    if (b > seg) b = seg;
    if (b < a) b = a;
    *lo = a; *hi = b;
}

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define CCONV_RESTRICT __restrict
#else
#define CCONV_RESTRICT
#endif

int cconv_conv2d_winograd_ok(const cconv_conv2d_params *p)
{
    return p->kh == 3 && p->kw == 3 && p->stride_h == 1 && p->stride_w == 1 &&
           p->dil_h == 1 && p->dil_w == 1 && p->groups == 1 &&
           p->out_h >= 1 && p->out_w >= 1;
}

/* Winograd needs enough channels and tiles to amortise its input and output
 * transforms (its weight transform is cached per thread, threads.c), and
 * rows of at least 14 outputs for its vector loops. Measured on Zen 3, 1
 * thread, vs im2col + GEMM (and the direct path below K = 320): F(2x2, 3x3)
 * 1.2-1.5x faster on 64x56x56 and 128x28x28 3x3 layers, 1.16x on 256x14x14
 * and 1.3x on 128x14x14 at batch 1; slower on 7x7 maps (512x7x7: 0.9x).
 * F(4x4, 3x3) does 1.8x fewer multiplies again but reads 2.25x more
 * transformed weights per tile: 1.5-1.7x faster than F(2x2, 3x3) on 64x56
 * and 128x28 (bench/bench_conv_algorithms.py), 1.3-1.5x on 256x14, 128x14
 * and 128x16 at batch 1 (16 tiles; 1.04-1.5x at 2 threads; 512x14: 1.3-1.5x),
 * a wash on 32x16 and slower below 16 tiles (256x12: 9 tiles), so it takes
 * over from CCONV_WINOGRAD4_MIN_TILES of its 4x4 tiles, where its packed
 * transformed weights (36 matrices) fit the per-thread weight cache: beyond
 * (1024 channels: 151 MB) every call would transform and page them in
 * again (at 512 channels, before they fit, 8x slower than F(2x2)). The
 * bound is taken for float32 (float64 layers of ~430-610 channels run
 * F(4x4) uncached). */
#define CCONV_WINOGRAD_MIN_CHANNELS 16
#define CCONV_WINOGRAD_MIN_TILES 32
#define CCONV_WINOGRAD4_MIN_TILES 16
#define CCONV_WINOGRAD_MIN_ROW 14
/* The weight gradient by Winograd F(4x4, 3x3) from this many 4x4 tiles
 * (conv_impl.h, backward_weight). */
#define CCONV_WINOGRAD_GRAD_MIN_TILES 128
/* Its blocks of tiles: V and dM of a block near 2 MiB. Each block adds a
 * product of reduction length (tiles per block) into every dU matrix, so
 * short blocks pay dU's loads and stores for little work: measured on
 * 8x64x56x56 (1 thread), 512 KiB blocks (16 tiles) 39 ms, 2 MiB 34 ms,
 * 8 MiB 41 ms. */
#define CCONV_WINOGRAD_GRAD_BLOCK_BYTES 2097152
/* The Winograd weight gradient sums into one 36 x C_out x C_in dU (each
 * thread its own points' matrices): taken only where dU stays under
 * CCONV_WINOGRAD_GRAD_MAX_BYTES (256 channels in float32: 9.4 MB; at 512
 * the forward pass's F(4x4) is cached, but dU would be 38 MB; the bound was
 * measured when every thread kept its own copy). */
#define CCONV_WINOGRAD_GRAD_MAX_BYTES ((size_t)16 << 20)

/* Reductions up to this long run the direct kernel: measured on Zen 3, 1
 * thread, it beats im2col + GEMM by 1.2-2x on LeNet's layers, 7x7 stems and
 * 3x3 layers of 16-32 channels (K = 144-288), where unfolding the image
 * costs as much as the multiplies; from 64 channels (K = 576) on, the
 * GEMM's cache blocking and Winograd win (and on 3x3 layers of 24-35
 * channels with enough tiles Winograd does too: below). */
#define CCONV_DIRECT_MAX_K 320
/* The input gradient of a stride-1 layer runs as a direct convolution of
 * the output gradient up to this reduction (C_out/groups * kh * kw), for at
 * least CCONV_DIRECT_BWD_MIN_CIN input channels (a micro-tile's rows).
 * Measured on Zen 3 vs im2col + GEMM + col2im: LeNet conv2 (K = 400, 6
 * channels) 1.1-1.5x faster at 1 thread; 64-channel 3x3 (K = 576) equal at
 * 1 thread, 1.5x slower at 2; LeNet conv1's 1-channel gradient slower. */
#define CCONV_DIRECT_BWD_MAX_K 450
#define CCONV_DIRECT_BWD_MIN_CIN 4
/* The weight gradient of a direct-path layer runs the direct gradient
 * kernel up to this many output channels per group. Measured on Zen 3 vs
 * im2col + GEMM (batch 64 unless said): LeNet conv1 (6 channels) 5x
 * faster, conv2 (16) 2.2x, 3x3 on 16 and 32 channels (batch 8) 1.3-1.6x
 * (bench/results/conv_weight_grad.json; 32-channel layers on 56x56 maps
 * now run Winograd forward, and their weight gradient its adjoint: 2.07x
 * im2col + GEMM at batch 8 against the direct gradient's 1.31x);
 * the 7x7 stem's 64 channels 0.8-1.1x (the GEMM has rows enough there). */
#define CCONV_DIRECT_GRAD_MAX_COUT 32

/* Direct-path layers run with Winograd F(4, 4) along their rows
 * (wino_rows_impl.h) where that halves the multiplies (7 x NPH per 4
 * outputs against 4 x kw: 7x7 and 8x8 stride-2 stems) and rows hold whole
 * vectors of 4-output tiles. Measured on Zen 3 against the direct kernel
 * (C harness, medians of 7; bench/results/conv_algorithms.json: 1.31x / 1.43x
 * at 1 / 2 threads): 7x7/2 stem on 224x224 1.1-1.3x faster at 1
 * thread, 1.2-1.5x at 2 (batch 1 and 8; 64x64 inputs 1.3-1.5x); 5x5/2
 * (3.5 vs 5 multiplies per output before the transforms) 1.04-1.21x at 1
 * thread but 0.92-1.10x at 2 (bench/results/conv_algorithms_rows.json and
 * the harness) and 3x3 stride-1 layers of 16 channels 0.9-1.03x: they stay
 * direct. */
#define CCONV_WINOGRAD_ROWS_MIN_KW 7
#define CCONV_WINOGRAD_ROWS_MIN_OUT_W 32

static int winograd_rows_pays(const cconv_conv2d_params *p)
{
    const int64_t phases = p->stride_w < p->kw ? p->stride_w : p->kw;
    return cconv_conv2d_winograd_rows_ok(p) && p->kw >= CCONV_WINOGRAD_ROWS_MIN_KW &&
           7 * phases <= 2 * p->kw && p->out_w >= CCONV_WINOGRAD_ROWS_MIN_OUT_W;
}

/* 3x3 layers short enough for the direct kernel (K = 9 C_in <= 320) still
 * run Winograd from this many input channels and 4x4 tiles: measured on
 * Zen 3 (bench/results/conv_algorithms_rows.json, 1 / 2 threads), 32
 * channels on 56x56 F(4x4) 1.92x / 1.41x faster than direct at batch 8
 * (direct had been 0.97x torch), 1.58x / 1.38x at batch 1, 32 -> 64
 * channels 2.02x / 1.74x; 16 channels 1.30x / 0.94x, 32 channels on 28x28
 * (49 tiles) 1.55x / 0.82x (14x14 at batch 4, 64 tiles, similar): those
 * stay direct. */
#define CCONV_WINOGRAD_OVER_DIRECT_MIN_CHANNELS 24
#define CCONV_WINOGRAD_OVER_DIRECT_MIN_TILES 100

/* The depthwise forward pass copies each plane into a zero-bordered one:
 * only while that stays near the input and output sizes, so that a padding
 * far beyond the input (2^20) costs what its output costs (im2col instead). */
static int dw_plane_bounded(const cconv_conv2d_params *p)
{
    const double hp = (double)p->h + (double)p->pad_top + (double)p->pad_bottom;
    const double wp = (double)p->w + (double)p->pad_left + (double)p->pad_right;
    const double need = (double)p->h * (double)p->w +
                        (double)p->out_h * (double)p->out_w * (double)(p->kh * p->kw);
    return hp * wp <= 4.0 * need + 4096.0;
}

int cconv_conv2d_algo(const cconv_conv2d_params *p)
{
    if (p->groups == p->c_in && p->groups > 1 && dw_plane_bounded(p))
        return CCONV_ALGO_DEPTHWISE;
    const int64_t k = p->c_in / p->groups * p->kh * p->kw;
    const int direct = k <= CCONV_DIRECT_MAX_K && p->kh * p->kw > 1;
    const int64_t tiles4 = p->n * ((p->out_h + 3) / 4) * ((p->out_w + 3) / 4);
    const int winograd = cconv_conv2d_winograd_ok(p) && p->c_in >= CCONV_WINOGRAD_MIN_CHANNELS &&
                         p->c_out >= CCONV_WINOGRAD_MIN_CHANNELS &&
                         p->out_w >= CCONV_WINOGRAD_MIN_ROW;
    const int winograd_first = winograd && p->c_in >= CCONV_WINOGRAD_OVER_DIRECT_MIN_CHANNELS &&
                               tiles4 >= CCONV_WINOGRAD_OVER_DIRECT_MIN_TILES;
    if (winograd && (!direct || winograd_first)) {
        const size_t cc = (size_t)p->c_in * (size_t)p->c_out;
        if (tiles4 >= CCONV_WINOGRAD4_MIN_TILES &&
            cconv_derived_fits(9 * cc * sizeof(float),
                               36 * cconv_gemm_packed_a_size_f32(p->c_out, p->c_in) *
                                   sizeof(float)))
            return CCONV_ALGO_WINOGRAD4;
        if (p->n * ((p->out_h + 1) / 2) * ((p->out_w + 1) / 2) >= CCONV_WINOGRAD_MIN_TILES)
            return CCONV_ALGO_WINOGRAD;
    }
    if (direct) return winograd_rows_pays(p) ? CCONV_ALGO_WINOGRAD_ROWS : CCONV_ALGO_DIRECT;
    return CCONV_ALGO_GEMM;
}

/* Weight gradients sum over images and tiles; for the same bits at any
 * thread count no sum may be split by thread. Layers of >= 16 input channels
 * per group split dw itself among the threads (by input channel: im2col +
 * GEMM; by Winograd point: the adjoint), each element summed by one thread
 * in job order. The others (LeNet's, stems: dw is small, the reduction long)
 * cut their jobs into `parts` (from the problem, never the thread count),
 * each summed from zero into its own copy of dw, the copies added in part
 * order. A part must do CCONV_GRAD_PART_WORK multiply-adds per element of
 * its copy (zeroing and adding a copy costs about 20 multiply-adds per
 * element, so the copies stay near 3% of the work even at 1 thread); parts
 * are 1, 2, 4, 6 or 12 (even shares for 2, 3, 4 and 6 threads), with at most
 * CCONV_GRAD_COPY_BYTES of copies. */
#define CCONV_GRAD_SPLIT_MIN_CIN 16
#define CCONV_GRAD_PARTS 12
#define CCONV_GRAD_PART_WORK 700.0
#define CCONV_GRAD_COPY_BYTES ((size_t)64 << 20)

static int64_t grad_parts(int64_t njobs, double work, int64_t copy_elems, size_t elem)
{
    static const int64_t even[] = {12, 6, 4, 2, 1};
    double most = 1.0 + work / ((double)copy_elems * CCONV_GRAD_PART_WORK);
    const double fit = (double)CCONV_GRAD_COPY_BYTES / ((double)copy_elems * (double)elem);
    if (most > fit) most = fit;
    if (most > (double)njobs) most = (double)njobs;
    for (int i = 0; i < 5; ++i)
        if ((double)even[i] <= most) return even[i];
    return 1;
}

#define T float
#define DIR_LANES 8   /* floats per 32-byte vector, for the preprocessor */
#define SFX(name) name##_f32
#define GEMM cconv_gemm_f32
#define GEMM_BLOCKED cconv_gemm_blocked_f32
#define GEMM_PA cconv_gemm_pa_f32
#define GEMM_PACK_A cconv_gemm_pack_a_f32
#define GEMM_PACK_A_BLOCK cconv_gemm_pack_a_block_f32
#define GEMM_PACKED_A_SIZE cconv_gemm_packed_a_size_f32
#include "conv_impl.h"
#undef T
#undef DIR_LANES
#undef SFX
#undef GEMM
#undef GEMM_BLOCKED
#undef GEMM_PA
#undef GEMM_PACK_A
#undef GEMM_PACK_A_BLOCK
#undef GEMM_PACKED_A_SIZE

#define T double
#define DIR_LANES 4
#define SFX(name) name##_f64
#define GEMM cconv_gemm_f64
#define GEMM_BLOCKED cconv_gemm_blocked_f64
#define GEMM_PA cconv_gemm_pa_f64
#define GEMM_PACK_A cconv_gemm_pack_a_f64
#define GEMM_PACK_A_BLOCK cconv_gemm_pack_a_block_f64
#define GEMM_PACKED_A_SIZE cconv_gemm_packed_a_size_f64
#include "conv_impl.h"
#undef T
#undef DIR_LANES
#undef SFX
#undef GEMM
#undef GEMM_BLOCKED
#undef GEMM_PA
#undef GEMM_PACK_A
#undef GEMM_PACK_A_BLOCK
#undef GEMM_PACKED_A_SIZE

int cconv_conv2d_winograd_rows_ok(const cconv_conv2d_params *p)
{
#ifdef WR_AVAILABLE
    return p->dil_w == 1 && p->stride_w <= 4 && p->kw <= 4 * p->stride_w &&
           p->out_h >= 1 && p->out_w >= 1;
#else
    (void)p;
    return 0;   /* its kernel needs GCC / clang vector extensions */
#endif
}
