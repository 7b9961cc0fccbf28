/* The conv2d algorithms (im2col+GEMM, Winograd F2/F4, depthwise, direct, Winograd rows) with the ReLU
 * epilogue against a naive double-precision loop, at 1 and 2 threads:
 * built by .ci/sanitize.sh with AddressSanitizer and UBSan. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "cconv_core.h"
static double ref(const cconv_conv2d_params *p, const float *x, const float *w, const float *b, int n, int co, int oh, int ow) {
    double s = b ? b[co] : 0; int64_t cg = p->c_in / p->groups, g = co / (p->c_out / p->groups);
    for (int64_t c = 0; c < cg; c++) for (int i = 0; i < p->kh; i++) for (int j = 0; j < p->kw; j++) {
        int64_t ih = oh * p->stride_h - p->pad_top + i * p->dil_h, iw = ow * p->stride_w - p->pad_left + j * p->dil_w;
        if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w) continue;
        s += (double)x[((n * p->c_in + g * cg + c) * p->h + ih) * p->w + iw] * w[((co * cg + c) * p->kh + i) * p->kw + j];
    }
    return s;
}
int main(void) {
    int shapes[][10] = { /* n cin h w cout k pad groups relu stride */
        {2, 16, 9, 7, 16, 3, 1, 1, 0, 1}, {3, 20, 17, 33, 18, 3, 1, 1, 1, 1}, {1, 16, 34, 34, 24, 3, 0, 1, 0, 1},
        {64, 6, 12, 12, 16, 5, 0, 1, 1, 1}, {9, 3, 5, 4, 4, 3, 1, 1, 0, 1}, {2, 8, 1, 7, 16, 3, 1, 8, 1, 1},
        {2, 8, 6, 1, 8, 3, 1, 8, 0, 1}, {3, 5, 11, 13, 7, 3, 2, 1, 1, 1}, {2, 3, 37, 29, 13, 7, 3, 1, 1, 2},
        {1, 4, 10, 23, 8, 3, 2, 2, 0, 3}, {1, 3, 40, 70, 64, 7, 3, 1, 1, 2}, {2, 4, 9, 41, 10, 5, 2, 2, 0, 2},
        {1, 80, 12, 12, 80, 3, 1, 1, 1, 1}};  /* fewer Winograd blocks than threads: shared */
    int fails = 0;
    for (unsigned s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int *q = shapes[s];
        cconv_conv2d_params p = {q[0], q[1], q[2], q[3], q[4], q[5], q[5], q[9], q[9], q[6], q[6], q[6], q[6], 1, 1, q[7], 0, 0};
        if (cconv_conv2d_check(&p)) { printf("bad params %u\n", s); return 1; }
        int64_t nx = p.n * p.c_in * p.h * p.w, nw = p.c_out * (p.c_in / p.groups) * p.kh * p.kw, ny = p.n * p.c_out * p.out_h * p.out_w;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(p.c_out * 4), *y = malloc(ny * 4);
        for (int64_t i = 0; i < nx; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
        for (int64_t i = 0; i < nw; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
        for (int64_t i = 0; i < p.c_out; i++) b[i] = (float)rand() / RAND_MAX - 0.5f;
        for (int algo = 1; algo <= CCONV_ALGO_WINOGRAD_ROWS; algo++) for (int nt = 1; nt <= 2; nt++) {
            int st = cconv_conv2d_forward_ex_f32(&p, x, w, b, y, q[8], algo, nt);
            if (st == CCONV_EINVAL) continue;
            double err = 0;
            for (int n = 0; n < p.n; n++) for (int co = 0; co < p.c_out; co++) for (int oh = 0; oh < p.out_h; oh++) for (int ow = 0; ow < p.out_w; ow++) {
                double r = ref(&p, x, w, b, n, co, oh, ow); if (q[8] && r < 0) r = 0;
                double e = fabs(r - y[((n * p.c_out + co) * p.out_h + oh) * p.out_w + ow]); if (e > err) err = e;
            }
            if (st || err > 1e-3) { printf("shape %u algo %d nt %d: status %d err %g\n", s, algo, nt, st, err); fails++; }
        }
        /* the direct kernel with 2x2 max pooling in its epilogue */
        for (int nt = 1; nt <= 2; nt++) {
            const int64_t PH = p.out_h / 2, PW = p.out_w / 2;
            float *yp = malloc((size_t)(p.n * p.c_out * (PH * PW > 0 ? PH * PW : 1)) * 4);
            int st = cconv_conv2d_forward_maxpool2_f32(&p, x, w, b, yp, q[8], nt);
            double err = 0;
            for (int n = 0; n < p.n; n++) for (int co = 0; co < p.c_out; co++)
                for (int ph = 0; ph < PH; ph++) for (int pw = 0; pw < PW; pw++) {
                    double m = -INFINITY;
                    for (int u = 0; u < 4; u++) {
                        double r = ref(&p, x, w, b, n, co, 2 * ph + u / 2, 2 * pw + u % 2);
                        if (q[8] && r < 0) r = 0;
                        if (r > m) m = r;
                    }
                    double e = fabs(m - yp[((n * p.c_out + co) * PH + ph) * PW + pw]);
                    if (e > err) err = e;
                }
            if (st || err > 1e-3) { printf("shape %u maxpool2 nt %d: status %d err %g\n", s, nt, st, err); fails++; }
            free(yp);
        }
        free(x); free(w); free(b); free(y);
    }
    printf(fails ? "FAILED\n" : "conv paths: OK\n");
    return fails != 0;
}
