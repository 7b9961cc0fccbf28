/* Thread helpers: every OpenMP call of the core goes through here so that the
 * library builds (serial) without OpenMP. */
#include "cconv_core.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <xmmintrin.h>
#define CCONV_HAVE_MXCSR 1
#define CCONV_MXCSR_FTZ_DAZ 0x8040u   /* bit 15 flush-to-zero, bit 6 denormals-are-zero */
#else
#define CCONV_HAVE_MXCSR 0
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

/* Multiply-adds per thread below which an extra thread is not worth waking.
 * Waking a spinning team costs a few microseconds: ~64k multiply-adds. A
 * sleeping thread costs 20-30 us to wake (measured on LeNet-sized
 * convolutions on Zen 3: 2 threads only paid from ~2M multiply-adds on; 154k:
 * 9 us on 1 thread, 30 us on 2). cconv's own default (see _threads.py) is a
 * bounded spin, GOMP_SPINCOUNT=30000 (1-2 ms here): threads stay awake between
 * the regions of one pass and between passes in a loop, but the first region
 * after an idle spell still wakes sleepers, so the threshold stays the
 * sleeping one. Only threads that spin for good (OMP_WAIT_POLICY=active) or
 * for the runtime's long default (nothing set: 300000 spins, several ms) get
 * the spinning threshold. */
#define CCONV_WORK_PER_THREAD_SPIN 65536.0
#define CCONV_WORK_PER_THREAD_SLEEP 1.0e6
#define CCONV_LONG_SPINCOUNT 300000.0   /* GNU OpenMP's default spin count */

/* GOMP_SPINCOUNT as GNU OpenMP reads it (a count with an optional k/M/G/T
 * suffix, or "infinite"/"infinity" in any case): 1 if threads then spin for
 * long, 0 if not, -1 if the runtime would reject the value (and fall back to
 * OMP_WAIT_POLICY). */
static int spincount_is_long(const char *spin)
{
    while (*spin == ' ' || *spin == '\t') ++spin;
    static const char inf[] = "infinit";
    int i = 0;
    while (inf[i] && (spin[i] | 0x20) == inf[i]) ++i;
    if (!inf[i]) return 1;
    char *end = NULL;
    double n = strtod(spin, &end);
    if (end == spin || n < 0 || n != n) return -1;
    switch (*end) {
    case 'k': case 'K': n *= 1e3; ++end; break;
    case 'M': n *= 1e6; ++end; break;
    case 'G': n *= 1e9; ++end; break;
    case 'T': n *= 1e12; ++end; break;
    default: break;
    }
    while (*end == ' ' || *end == '\t') ++end;
    if (*end) return -1;
    return n >= CCONV_LONG_SPINCOUNT;
}

/* 0: not read yet; then the threshold. Benign race: every reader computes
 * the same. The runtime reads its environment once, at start-up, so it is
 * read once here too. */
static double work_per_thread = 0.0;

double cconv_work_per_thread(void)
{
    double v = work_per_thread;
    if (v == 0.0) {
        const char *policy = getenv("OMP_WAIT_POLICY");
        const char *spin = getenv("GOMP_SPINCOUNT");
        /* a valid explicit count overrides the policy */
        int spins_long = spin ? spincount_is_long(spin) : -1;
        if (spins_long < 0)
            spins_long = policy && *policy ? policy[0] == 'a' || policy[0] == 'A' : 1;
        v = spins_long ? CCONV_WORK_PER_THREAD_SPIN : CCONV_WORK_PER_THREAD_SLEEP;
        work_per_thread = v;
    }
    return v;
}

int cconv_threads_for(int nthreads, double work)
{
#ifdef _OPENMP
    if (nthreads <= 1) return 1;
    double useful = work / cconv_work_per_thread();
    if (useful < 2.0) return 1;
    if (useful < (double)nthreads) return (int)useful;
    return nthreads;
#else
    (void)nthreads; (void)work;
    return 1;
#endif
}

/* -1: not read yet; then 0 or 1. Benign race: every reader computes the same. */
static int flush_denormal = -1;

static int flush_from_env(void)
{
    const char *e = getenv("CCONV_FLUSH_DENORMAL");
    return !(e && e[0] == '0' && e[1] == '\0');
}

void cconv_set_flush_denormal(int on)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&flush_denormal, on ? 1 : 0, __ATOMIC_RELAXED);
#else
    flush_denormal = on ? 1 : 0;
#endif
}

int cconv_get_flush_denormal(void)
{
#if defined(__GNUC__) || defined(__clang__)
    int v = __atomic_load_n(&flush_denormal, __ATOMIC_RELAXED);
    if (v < 0) {
        v = flush_from_env();
        __atomic_store_n(&flush_denormal, v, __ATOMIC_RELAXED);
    }
#else
    int v = flush_denormal;
    if (v < 0) flush_denormal = v = flush_from_env();
#endif
    return v;
}

unsigned cconv_fp_enter(void)
{
#if CCONV_HAVE_MXCSR
    /* Off means off, not "whatever the thread had": an OpenMP worker created
     * during a call inherits the flushing mode of the thread that started it. */
    const unsigned saved = _mm_getcsr();
    const unsigned want = cconv_get_flush_denormal() ? (saved | CCONV_MXCSR_FTZ_DAZ)
                                                    : (saved & ~CCONV_MXCSR_FTZ_DAZ);
    if (want != saved) _mm_setcsr(want);
    return saved;
#else
    return 0;
#endif
}

void cconv_fp_leave(unsigned saved)
{
#if CCONV_HAVE_MXCSR
    if (_mm_getcsr() != saved) _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

/* ---- per-thread work buffers ----
 * Kernels ask for their scratch (im2col tiles, packed panels, Winograd
 * blocks) on every call. Buffers of a few hundred KiB come from mmap and go
 * back on free, so each call paid page faults and page clearing again (a
 * third of a Winograd convolution's time). Each thread keeps its buffers
 * instead, one per slot, grown on demand and freed when the thread exits;
 * requests above CCONV_WORK_CACHE_MAX are allocated and freed per call. */
#define CCONV_WORK_SLOTS 5
#define CCONV_WORK_CACHE_MAX ((size_t)64 << 20)

typedef struct {
    void *raw[CCONV_WORK_SLOTS];
    void *ptr[CCONV_WORK_SLOTS];
    size_t size[CCONV_WORK_SLOTS];
} cconv_work_cache;

static void *aligned_new(size_t bytes, void **raw)
{
    *raw = malloc(bytes + 64);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_key_t work_key;
static pthread_once_t work_once = PTHREAD_ONCE_INIT;
static int work_key_ok = 0;

static void work_cache_free(void *v)
{
    cconv_work_cache *c = (cconv_work_cache *)v;
    for (int i = 0; i < CCONV_WORK_SLOTS; ++i) free(c->raw[i]);
    free(c);
}

static void work_key_init(void)
{
    work_key_ok = pthread_key_create(&work_key, work_cache_free) == 0;
}

static cconv_work_cache *work_cache(void)
{
    pthread_once(&work_once, work_key_init);
    if (!work_key_ok) return NULL;
    cconv_work_cache *c = (cconv_work_cache *)pthread_getspecific(work_key);
    if (!c) {
        c = (cconv_work_cache *)calloc(1, sizeof(*c));
        if (c && pthread_setspecific(work_key, c) != 0) { free(c); c = NULL; }
    }
    return c;
}
#else
static cconv_work_cache *work_cache(void) { return NULL; }  /* no cache: per call */
#endif

void *cconv_work_alloc(int slot, size_t bytes)
{
    if (bytes == 0) bytes = 1;
    cconv_work_cache *c = (slot >= 0 && slot < CCONV_WORK_SLOTS &&
                           bytes <= CCONV_WORK_CACHE_MAX) ? work_cache() : NULL;
    if (!c) {
        /* malloc's pointer is kept just before the aligned block */
        void *raw = malloc(bytes + 64 + sizeof(void *));
        if (!raw) return NULL;
        void *p = (void *)(((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63);
        ((void **)p)[-1] = raw;
        return p;
    }
    if (c->size[slot] < bytes) {
        free(c->raw[slot]);
        c->raw[slot] = c->ptr[slot] = NULL;
        c->size[slot] = 0;
        void *raw;
        void *p = aligned_new(bytes, &raw);
        if (!p) return NULL;
        c->raw[slot] = raw; c->ptr[slot] = p; c->size[slot] = bytes;
    }
    return c->ptr[slot];
}

void cconv_work_free(int slot, void *p)
{
    if (!p) return;
    cconv_work_cache *c = (slot >= 0 && slot < CCONV_WORK_SLOTS) ? work_cache() : NULL;
    if (c && c->ptr[slot] == p) return;   /* the thread's cached buffer: kept */
    free(((void **)p)[-1]);
}

/* ---- per-thread cache of arrays derived from weights ----
 * Winograd transforms its kernels before every convolution: 18% of a
 * 128-channel 28x28 layer's time, more at 256 channels, for weights that
 * do not change between inference calls. The transform is kept per thread,
 * keyed by the weights' address and an exact copy of their bytes: a hit
 * costs a memcmp of the weights (several times cheaper than the transform),
 * and weights changed in place (training) are never served stale. At most
 * CCONV_DERIVED_ENTRIES entries and CCONV_DERIVED_BYTES bytes per thread,
 * the least recently used evicted first; freed when the thread exits. */
#define CCONV_DERIVED_ENTRIES 32
#define CCONV_DERIVED_BYTES ((size_t)128 << 20)

typedef struct {
    int kind;
    const void *src;
    size_t src_bytes, bytes;
    void *copy;            /* the source bytes the derived array was made from */
    void *raw, *data;      /* the derived array (64-byte aligned) */
    uint64_t used;         /* LRU clock */
} cconv_derived_entry;

typedef struct {
    cconv_derived_entry e[CCONV_DERIVED_ENTRIES];
    size_t total;
    uint64_t clock;
} cconv_derived_cache;

static void derived_drop(cconv_derived_cache *c, cconv_derived_entry *e)
{
    c->total -= e->src_bytes + e->bytes;
    free(e->copy); free(e->raw);
    memset(e, 0, sizeof *e);
}

#if defined(__unix__) || defined(__APPLE__)
static pthread_key_t derived_key;
static pthread_once_t derived_once = PTHREAD_ONCE_INIT;
static int derived_key_ok = 0;

static void derived_cache_free(void *v)
{
    cconv_derived_cache *c = (cconv_derived_cache *)v;
    for (int i = 0; i < CCONV_DERIVED_ENTRIES; ++i)
        if (c->e[i].data) derived_drop(c, &c->e[i]);
    free(c);
}

static void derived_key_init(void)
{
    derived_key_ok = pthread_key_create(&derived_key, derived_cache_free) == 0;
}

static cconv_derived_cache *derived_cache(void)
{
    pthread_once(&derived_once, derived_key_init);
    if (!derived_key_ok) return NULL;
    cconv_derived_cache *c = (cconv_derived_cache *)pthread_getspecific(derived_key);
    if (!c) {
        c = (cconv_derived_cache *)calloc(1, sizeof(*c));
        if (c && pthread_setspecific(derived_key, c) != 0) { free(c); c = NULL; }
    }
    return c;
}
#else
static cconv_derived_cache *derived_cache(void) { return NULL; }
#endif

int cconv_derived_fits(size_t src_bytes, size_t bytes)
{
    return src_bytes + bytes <= CCONV_DERIVED_BYTES / 2;
}

void *cconv_derived_get(int kind, const void *src, size_t src_bytes, size_t bytes,
                        int *fresh)
{
    *fresh = 1;
    cconv_derived_cache *c = derived_cache();
    if (!c || !cconv_derived_fits(src_bytes, bytes)) return NULL;
    cconv_derived_entry *hit = NULL, *lru = NULL;
    for (int i = 0; i < CCONV_DERIVED_ENTRIES; ++i) {
        cconv_derived_entry *e = &c->e[i];
        if (e->data && e->kind == kind && e->src == src && e->src_bytes == src_bytes &&
            e->bytes == bytes) {
            hit = e;
            break;
        }
        if (!lru || !e->data || (lru->data && e->used < lru->used)) lru = e;
    }
    if (hit) {
        hit->used = ++c->clock;
        if (memcmp(hit->copy, src, src_bytes) == 0) {
            *fresh = 0;
        } else {
            memcpy(hit->copy, src, src_bytes);   /* same weights changed: recompute */
        }
        return hit->data;
    }
    /* a new entry: evict least recently used ones until it fits */
    if (lru->data) derived_drop(c, lru);
    while (c->total + src_bytes + bytes > CCONV_DERIVED_BYTES) {
        cconv_derived_entry *old = NULL;
        for (int i = 0; i < CCONV_DERIVED_ENTRIES; ++i)
            if (c->e[i].data && (!old || c->e[i].used < old->used)) old = &c->e[i];
        if (!old) break;
        derived_drop(c, old);
    }
    void *copy = malloc(src_bytes ? src_bytes : 1), *raw;
    void *data = aligned_new(bytes, &raw);
    if (!copy || !data) { free(copy); free(raw); return NULL; }
    memcpy(copy, src, src_bytes);
    lru->kind = kind; lru->src = src; lru->src_bytes = src_bytes; lru->bytes = bytes;
    lru->copy = copy; lru->raw = raw; lru->data = data; lru->used = ++c->clock;
    c->total += src_bytes + bytes;
    return data;
}

void cconv_derived_clear(void)
{
    cconv_derived_cache *c = derived_cache();
    if (!c) return;
    for (int i = 0; i < CCONV_DERIVED_ENTRIES; ++i)
        if (c->e[i].data) derived_drop(c, &c->e[i]);
}

