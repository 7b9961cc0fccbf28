/* Inference chains: a sequence of per-sample layers over a batch in one call
 * (see cconv_core.h). The steps themselves are the core's own kernels; what
 * this file adds is the order, the checks that each step's input is the
 * previous step's output, and the choice between splitting the batch over
 * threads and letting each step use the threads on the whole batch. */
#include <stdint.h>
#include "cconv_core.h"

/* A split batch runs every step on every thread, so each thread caches its
 * own packed copy of every weight (threads.c): split only nets whose weights
 * are small enough to be held once per thread (LeNet: 0.25 MB). */
#define CCONV_CHAIN_SPLIT_MAX_WEIGHT_BYTES ((size_t)4 << 20)
/* Steps of one chain at most (their sizes live on the stack). */
#define CCONV_CHAIN_MAX_STEPS 256


int cconv_chain_step_sizes(cconv_chain_step *s, int64_t *in_size, int64_t *out_size,
                           double *work)
{
    switch (s->kind) {
    case CCONV_STEP_CONV2D: {
        cconv_conv2d_params *p = &s->conv;
        const int64_t n = p->n;
        p->n = 1;
        int st = cconv_conv2d_check(p);
        p->n = n;
        if (st != CCONV_OK) return CCONV_EINVAL;
        if (s->activation != CCONV_ACT_NONE && s->activation != CCONV_ACT_RELU)
            return CCONV_EINVAL;
        int64_t oh = p->out_h, ow = p->out_w;
        if (s->pool2) {
            if (oh < 2 || ow < 2) return CCONV_EINVAL;
            oh /= 2;
            ow /= 2;
        } else if (s->algo < CCONV_ALGO_AUTO || s->algo > CCONV_ALGO_WINOGRAD_ROWS) {
            return CCONV_EINVAL;
        }
        *in_size = p->c_in * p->h * p->w;
        *out_size = p->c_out * oh * ow;
        *work = (double)p->c_out * (double)(p->out_h * p->out_w) *
                (double)(p->c_in / p->groups * p->kh * p->kw);
        return CCONV_OK;
    }
    case CCONV_STEP_MAX_POOL2D: {
        const cconv_pool2d_params *p = &s->pool;
        if (cconv_pool2d_check(p) != CCONV_OK) return CCONV_EINVAL;
        /* the window of the last output must start inside the padded input */
        if ((p->out_h - 1) * p->stride_h >= p->h + p->pad_top + p->pad_bottom ||
            (p->out_w - 1) * p->stride_w >= p->w + p->pad_left + p->pad_right)
            return CCONV_EINVAL;
        *in_size = p->c * p->h * p->w;
        *out_size = p->c * p->out_h * p->out_w;
        *work = (double)*out_size * (double)(p->kh * p->kw);
        return CCONV_OK;
    }
    case CCONV_STEP_LINEAR:
        if (s->in_features < 1 || s->out_features < 1) return CCONV_EINVAL;
        if (s->activation != CCONV_ACT_NONE && s->activation != CCONV_ACT_RELU)
            return CCONV_EINVAL;
        *in_size = s->in_features;
        *out_size = s->out_features;
        *work = (double)s->in_features * (double)s->out_features;
        return CCONV_OK;
    case CCONV_STEP_RELU:
        /* the size is the previous step's: filled in by the caller */
        *in_size = *out_size = -1;
        *work = 0;
        return CCONV_OK;
    default:
        return CCONV_EINVAL;
    }
}

static size_t weight_bytes(const cconv_chain_step *s, int elem)
{
    if (s->kind == CCONV_STEP_CONV2D)
        return (size_t)(s->conv.c_out * (s->conv.c_in / s->conv.groups) * s->conv.kh *
                        s->conv.kw) * (size_t)elem;
    if (s->kind == CCONV_STEP_LINEAR)
        return (size_t)(s->in_features * s->out_features) * (size_t)elem;
    return 0;
}

/* Checks the chain (and its pointers when `pointers`); fills sizes[i] =
 * (input, output) elements per sample of step i, the total multiply-adds per
 * sample and the bytes of all weights. */
static int chain_check(cconv_chain_step *steps, int nsteps, int64_t n, int pointers,
                       int64_t *sizes, double *work, size_t *wbytes, int elem)
{
    if (nsteps < 1 || n < 0) return CCONV_EINVAL;
    *work = 0;
    *wbytes = 0;
    int64_t prev = -1;
    for (int i = 0; i < nsteps; i++) {
        int64_t in, out;
        double w;
        if (cconv_chain_step_sizes(&steps[i], &in, &out, &w) != CCONV_OK) return CCONV_EINVAL;
        if (pointers && (!steps[i].y || ((steps[i].kind == CCONV_STEP_CONV2D ||
                                          steps[i].kind == CCONV_STEP_LINEAR) && !steps[i].w)))
            return CCONV_EINVAL;
        if (steps[i].kind == CCONV_STEP_RELU) {
            if (prev < 0) return CCONV_EINVAL;   /* a chain does not start with ReLU */
            in = out = prev;
            w = (double)prev;
        }
        if (prev >= 0 && in != prev) return CCONV_EINVAL;
        sizes[2 * i] = in;
        sizes[2 * i + 1] = out;
        prev = out;
        *work += w;
        *wbytes += weight_bytes(&steps[i], elem);
    }
    return CCONV_OK;
}

/* Threads for a split batch: the team the whole chain's work earns, if the
 * samples divide evenly enough over it (a 3-sample batch on 2 threads would
 * leave one thread idle a third of the time: per-step threads do better). */
static int split_threads(int64_t n, double work, size_t wbytes, int nthreads)
{
    if (wbytes > CCONV_CHAIN_SPLIT_MAX_WEIGHT_BYTES || n < 2) return 1;
    int t = cconv_threads_for(nthreads, (double)n * work);
    if ((int64_t)t > n) t = (int)n;
    if (t > 1 && n % t != 0 && n < 4 * (int64_t)t) return 1;
    return t;
}


int cconv_chain_split_threads(cconv_chain_step *steps, int nsteps, int64_t n, int elem,
                              int nthreads)
{
    int64_t sizes[2 * CCONV_CHAIN_MAX_STEPS];
    double work;
    size_t wbytes;
    if (nsteps > CCONV_CHAIN_MAX_STEPS ||
        chain_check(steps, nsteps, n, 0, sizes, &work, &wbytes, elem) != CCONV_OK)
        return 0;
    return split_threads(n, work, wbytes, nthreads);
}

#define T float
#define SFX(name) name##_f32
#include "chain_impl.h"
#undef T
#undef SFX

#define T double
#define SFX(name) name##_f64
#include "chain_impl.h"
#undef T
#undef SFX
