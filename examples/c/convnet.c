/* A small conv-pool network on a grey image with cconv's C API, no Python:
 *
 *   conv 3x3 (1 -> 4 channels, padding 1) + bias, ReLU
 *   max pool 2x2
 *   conv 3x3 (4 -> 8 channels) + bias, ReLU
 *   global average pool -> 8 features
 *
 * Build and run (see the Makefile):
 *   cc convnet.c -o convnet $(python -m cconv --cflags --libs)
 *   ./convnet [image.pgm]
 * Without an argument it runs on a generated 32 x 32 image. Pixels are
 * scaled to [0, 1]. The weights are fixed formulas (exact in float), so that
 * tests/test_capi.py can rebuild the network with cconv.ops and compare. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cconv.h>

/* Run a cconv call; on failure print where and why, and exit. */
#define CHECK(call)                                                              \
    do {                                                                         \
        int status_ = (call);                                                    \
        if (status_ != CCONV_SUCCESS) {                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,       \
                    cconv_strerror(status_));                                    \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static float *alloc_floats(int64_t n)
{
    float *p = (float *)malloc((size_t)n * sizeof(float));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

/* ---- PGM (P2 text or P5 binary, 8 or 16 bit) ---- */

static int pgm_int(FILE *f, long *v)
{
    int c = fgetc(f);
    for (;;) {                           /* skip blanks and # comments */
        while (c != EOF && isspace(c)) c = fgetc(f);
        if (c != '#') break;
        while (c != EOF && c != '\n') c = fgetc(f);
    }
    if (c == EOF || !isdigit(c)) return 0;
    *v = 0;
    while (c != EOF && isdigit(c)) {
        if (*v > 100000000L) return 0;
        *v = *v * 10 + (c - '0');
        c = fgetc(f);
    }
    return 1;                            /* the one blank after the number is consumed */
}

static float *read_pgm(const char *path, int64_t *h, int64_t *w)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    char magic[3] = {0};
    long width, height, maxval;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '2' && magic[1] != '5') ||
        !pgm_int(f, &width) || !pgm_int(f, &height) || !pgm_int(f, &maxval) ||
        width < 1 || height < 1 || maxval < 1 || maxval > 65535 || width * height > 100000000L) {
        fprintf(stderr, "%s: not a PGM image (P2 or P5)\n", path);
        exit(1);
    }
    float *img = alloc_floats((int64_t)width * height);
    for (long i = 0; i < width * height; ++i) {
        long v = 0;
        if (magic[1] == '2') {
            if (!pgm_int(f, &v)) v = -1;
        } else if (maxval < 256) {
            int c = fgetc(f);
            v = c == EOF ? -1 : c;
        } else {
            int hi = fgetc(f), lo = fgetc(f);
            v = (hi == EOF || lo == EOF) ? -1 : hi * 256 + lo;
        }
        if (v < 0 || v > maxval) {
            fprintf(stderr, "%s: truncated or invalid pixel data\n", path);
            exit(1);
        }
        img[i] = (float)v / (float)maxval;
    }
    fclose(f);
    *h = height;
    *w = width;
    return img;
}

static float *generated_image(int64_t h, int64_t w)
{
    float *img = alloc_floats(h * w);
    for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j)
            img[i * w + j] = (float)((i * i + 3 * j) % 17) / 16.0f;
    return img;
}

static void relu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        if (!(x[i] > 0.0f)) x[i] = 0.0f;
}

int main(int argc, char **argv)
{
    int64_t H = 32, W = 32;
    float *x = argc > 1 ? read_pgm(argv[1], &H, &W) : generated_image(H, W);
    printf("cconv %s (C ABI %d), %d thread(s), OpenMP %s\n", cconv_version(),
           cconv_abi_version(), cconv_get_num_threads(),
           cconv_openmp_enabled() ? "on" : "off");
    printf("input  1x1x%lldx%lld (%s)\n", (long long)H, (long long)W,
           argc > 1 ? argv[1] : "generated");

    /* weights: small exact fractions */
    enum { C1 = 4, C2 = 8 };
    float w1[C1 * 1 * 3 * 3], b1[C1], w2[C2 * C1 * 3 * 3], b2[C2];
    for (int k = 0; k < C1 * 9; ++k) w1[k] = (float)((k * 37) % 17 - 8) / 16.0f;
    for (int c = 0; c < C1; ++c) b1[c] = ((float)c - 1.5f) / 8.0f;
    for (int k = 0; k < C2 * C1 * 9; ++k) w2[k] = (float)((k * 29) % 19 - 9) / 32.0f;
    for (int c = 0; c < C2; ++c) b2[c] = (float)c / 16.0f;

    /* conv1 + ReLU */
    cconv_conv2d_params_t conv1;
    cconv_conv2d_params_init(&conv1);
    conv1.n = 1; conv1.c_in = 1; conv1.h = H; conv1.w = W;
    conv1.c_out = C1; conv1.kh = conv1.kw = 3;
    conv1.pad_top = conv1.pad_bottom = conv1.pad_left = conv1.pad_right = 1;
    int64_t h1, w1o;
    CHECK(cconv_conv2d_output_shape(&conv1, &h1, &w1o));
    const int64_t n1 = C1 * h1 * w1o;
    float *y1 = alloc_floats(n1);
    CHECK(cconv_conv2d_forward(&conv1, x, H * W, w1, C1 * 9, b1, C1, y1, n1));
    relu(y1, n1);
    printf("conv1  1x%dx%lldx%lld + relu\n", C1, (long long)h1, (long long)w1o);

    /* max pool 2x2 */
    cconv_pool2d_params_t pool;
    cconv_pool2d_params_init(&pool);
    pool.n = 1; pool.c = C1; pool.h = h1; pool.w = w1o;
    pool.kh = pool.kw = 2;             /* stride 0: the kernel size */
    int64_t hp, wp;
    CHECK(cconv_pool2d_output_shape(&pool, &hp, &wp));
    const int64_t np = C1 * hp * wp;
    float *yp = alloc_floats(np);
    CHECK(cconv_max_pool2d_forward(&pool, y1, n1, yp, np, NULL, 0));
    printf("pool   1x%dx%lldx%lld\n", C1, (long long)hp, (long long)wp);

    /* conv2 + ReLU */
    cconv_conv2d_params_t conv2;
    cconv_conv2d_params_init(&conv2);
    conv2.n = 1; conv2.c_in = C1; conv2.h = hp; conv2.w = wp;
    conv2.c_out = C2; conv2.kh = conv2.kw = 3;
    int64_t h2, w2o;
    CHECK(cconv_conv2d_output_shape(&conv2, &h2, &w2o));
    const int64_t n2 = C2 * h2 * w2o;
    float *y2 = alloc_floats(n2);
    CHECK(cconv_conv2d_forward(&conv2, yp, np, w2, C2 * C1 * 9, b2, C2, y2, n2));
    relu(y2, n2);
    printf("conv2  1x%dx%lldx%lld + relu\n", C2, (long long)h2, (long long)w2o);

    /* global average pool: one window the size of the feature map */
    cconv_pool2d_params_t gap;
    cconv_pool2d_params_init(&gap);
    gap.n = 1; gap.c = C2; gap.h = h2; gap.w = w2o;
    gap.kh = h2; gap.kw = w2o;
    float features[C2];
    CHECK(cconv_avg_pool2d_forward(&gap, y2, n2, features, C2));

    printf("features");
    for (int c = 0; c < C2; ++c) printf(" %.9g", features[c]);
    printf("\n");

    free(x); free(y1); free(yp); free(y2);
    return 0;
}
