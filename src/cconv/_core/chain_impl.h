/* Inference chains for one float type (included by chain.c with T and SFX). */

/* Step s on samples [b0, b0 + cnt) of its input x, with up to nthreads. */
static int SFX(chain_step)(const cconv_chain_step *s, const T *x, int64_t in_size,
                           int64_t out_size, int64_t b0, int64_t cnt, int nthreads)
{
    const T *xs = x + b0 * in_size;
    T *y = (T *)s->y + b0 * out_size;
    switch (s->kind) {
    case CCONV_STEP_CONV2D: {
        cconv_conv2d_params p = s->conv;
        p.n = cnt;
        if (s->pool2)
            return SFX(cconv_conv2d_forward_maxpool2)(&p, xs, (const T *)s->w,
                                                      (const T *)s->bias, y, s->activation,
                                                      nthreads);
        return SFX(cconv_conv2d_forward_ex)(&p, xs, (const T *)s->w, (const T *)s->bias, y,
                                            s->activation, s->algo, nthreads);
    }
    case CCONV_STEP_MAX_POOL2D: {
        cconv_pool2d_params p = s->pool;
        p.n = cnt;
        return SFX(cconv_max_pool2d_forward)(&p, xs, y, NULL, nthreads);
    }
    case CCONV_STEP_LINEAR: {
        const int64_t k = s->in_features, m = s->out_features;
        int st = SFX(cconv_gemm)(0, 1, cnt, m, k, (T)1, xs, k, (const T *)s->w, k, (T)0, y,
                                 m, nthreads);
        if (st != CCONV_OK) return st;
        /* bias, then ReLU: the rounding of `y += bias` (cconv.compiled's epilogue) */
        const T *b = (const T *)s->bias;
        const int relu = s->activation == CCONV_ACT_RELU;
        if (b || relu) {
            for (int64_t r = 0; r < cnt; r++) {
                T *row = y + r * m;
                if (b)
                    for (int64_t j = 0; j < m; j++) row[j] += b[j];
                if (relu)
                    for (int64_t j = 0; j < m; j++) row[j] = row[j] < 0 ? (T)0 : row[j];
            }
        }
        return CCONV_OK;
    }
    case CCONV_STEP_RELU: {
        /* v < 0 ? 0 : v keeps NaN, as torch's relu does */
        const int64_t total = cnt * in_size;
        for (int64_t i = 0; i < total; i++) {
            const T v = xs[i];
            y[i] = v < 0 ? (T)0 : v;
        }
        return CCONV_OK;
    }
    default:
        return CCONV_EINVAL;
    }
}

int SFX(cconv_chain_forward)(cconv_chain_step *steps, int nsteps, int64_t n, const T *x,
                             int nthreads)
{
    int64_t sizes[2 * CCONV_CHAIN_MAX_STEPS];
    double work;
    size_t wbytes;
    if (nsteps > CCONV_CHAIN_MAX_STEPS ||
        chain_check(steps, nsteps, n, 1, sizes, &work, &wbytes, (int)sizeof(T)) != CCONV_OK)
        return CCONV_EINVAL;
    if (n == 0) return CCONV_OK;
    if (!x) return CCONV_EINVAL;
    const int t = split_threads(n, work, wbytes, nthreads);
    if (t <= 1) {
        /* each step on the whole batch, threads as each kernel sees fit */
        const T *in = x;
        for (int i = 0; i < nsteps; i++) {
            int st = SFX(chain_step)(&steps[i], in, sizes[2 * i], sizes[2 * i + 1], 0, n,
                                     nthreads);
            if (st != CCONV_OK) return st;
            in = (const T *)steps[i].y;
        }
        return CCONV_OK;
    }
    int status = CCONV_OK;
#ifdef _OPENMP
    #pragma omp parallel num_threads(t)
    {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        const int64_t b0 = n * tid / team, b1 = n * (tid + 1) / team;
        const T *in = x;
        int st = CCONV_OK;
        for (int i = 0; i < nsteps && b1 > b0; i++) {
            /* serial kernels: 1 thread is safe inside this region */
            st = SFX(chain_step)(&steps[i], in, sizes[2 * i], sizes[2 * i + 1], b0, b1 - b0, 1);
            if (st != CCONV_OK) break;
            in = (const T *)steps[i].y;
        }
        if (st != CCONV_OK) CCONV_ATOMIC_STORE(status, st);
    }
#endif
    return status;
}
