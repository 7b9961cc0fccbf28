/* Thread helpers: every OpenMP call of the core goes through here so that the
 * library builds (serial) without OpenMP. */
#include "cconv_core.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int cconv_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int cconv_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Waking a thread team costs a few microseconds; below ~64k multiply-adds
 * per thread the wake-up dominates, so such work stays on the calling thread. */
#define CCONV_WORK_PER_THREAD 65536.0

int cconv_threads_for(int nthreads, double work)
{
#ifdef _OPENMP
    if (nthreads <= 1) return 1;
    double useful = work / CCONV_WORK_PER_THREAD;
    if (useful < 2.0) return 1;
    if (useful < (double)nthreads) return (int)useful;
    return nthreads;
#else
    (void)nthreads; (void)work;
    return 1;
#endif
}
