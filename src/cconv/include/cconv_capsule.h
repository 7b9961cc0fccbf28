/* cconv_capsule.h: cconv's C API for Python extension modules.
 *
 * Include this header (it includes Python.h and cconv.h), call
 * import_cconv() once when the module initialises, then call the functions
 * of cconv.h by their usual names: in this header each name is a macro that
 * goes through the function table of the capsule cconv._C_API, so nothing
 * is linked (the code lives in cconv's own extension module).
 *
 *     #include "cconv_capsule.h"      // -I$(python -c "import cconv; print(cconv.get_include())")
 *     PyMODINIT_FUNC PyInit_mymod(void) {
 *         if (import_cconv() < 0) return NULL;
 *         ...
 *     }
 *     ... cconv_conv2d_forward(&p, x, nx, w, nw, NULL, 0, y, ny) ...   // GIL not needed
 *
 * Cython: `from cconv cimport capi` and `capi.import_cconv()` (capi.pxd).
 *
 * Versioning: import_cconv() accepts the library when its ABI major version
 * equals the one this header declares and its minor version is at least
 * this header's (a newer library only appended to the table). Otherwise it
 * raises ImportError naming both versions: rebuild the extension against the
 * installed cconv.
 *
 * The table pointer is static: each C file that calls cconv functions must
 * call import_cconv() itself (cheap after the first time), or share one
 * pointer: define CCONV_API_SHARED in one file and CCONV_API_EXTERN in the
 * others (then one import_cconv() call serves them all).
 *
 * Define CCONV_LINK_STATIC before including this header to call the
 * functions directly instead (link libcconv.a: see docs/c-api.md); then
 * import_cconv() does nothing and returns 0.
 */
#ifndef CCONV_CAPSULE_H
#define CCONV_CAPSULE_H

#include <Python.h>
#include "cconv.h"

#define CCONV_CAPSULE_NAME "cconv._C_API"

#ifdef CCONV_LINK_STATIC

CCONV_INLINE int import_cconv(void) { return 0; }

#else

#ifdef CCONV_API_EXTERN
extern const cconv_api_t *cconv_API_ptr;
#elif defined(CCONV_API_SHARED)
const cconv_api_t *cconv_API_ptr = NULL;
#else
static const cconv_api_t *cconv_API_ptr = NULL;
#endif

/* 0 on success; -1 with ImportError (or the error of importing cconv) set. */
CCONV_INLINE int import_cconv(void)
{
    const cconv_api_t *api;
    if (cconv_API_ptr) return 0;
    api = (const cconv_api_t *)PyCapsule_Import(CCONV_CAPSULE_NAME, 0);
    if (!api) return -1;
    if (api->abi_major != CCONV_ABI_MAJOR || api->abi_minor < CCONV_ABI_MINOR) {
        PyErr_Format(PyExc_ImportError,
                     "cconv C API version mismatch: this module was compiled against "
                     "cconv ABI %d.%d (cconv %s headers), but the installed cconv "
                     "provides ABI %d.%d; rebuild this module against the installed "
                     "cconv (headers from cconv.get_include())",
                     CCONV_ABI_MAJOR, CCONV_ABI_MINOR, CCONV_VERSION_STRING,
                     api->abi_major, api->abi_minor);
        return -1;
    }
    cconv_API_ptr = api;
    return 0;
}

/* The names of cconv.h, through the table (declared above as functions;
 * from here on each is a call through cconv_API_ptr). */
#define cconv_version (*cconv_API_ptr->version)
#define cconv_abi_version (*cconv_API_ptr->abi_version)
#define cconv_strerror (*cconv_API_ptr->strerror)
#define cconv_openmp_enabled (*cconv_API_ptr->openmp_enabled)
#define cconv_set_num_threads (*cconv_API_ptr->set_num_threads)
#define cconv_get_num_threads (*cconv_API_ptr->get_num_threads)
#define cconv_conv2d_output_shape (*cconv_API_ptr->conv2d_output_shape)
#define cconv_conv2d_forward (*cconv_API_ptr->conv2d_forward)
#define cconv_conv2d_backward_input (*cconv_API_ptr->conv2d_backward_input)
#define cconv_conv2d_backward_weight (*cconv_API_ptr->conv2d_backward_weight)
#define cconv_conv1d_output_length (*cconv_API_ptr->conv1d_output_length)
#define cconv_conv1d_forward (*cconv_API_ptr->conv1d_forward)
#define cconv_conv1d_backward_input (*cconv_API_ptr->conv1d_backward_input)
#define cconv_conv1d_backward_weight (*cconv_API_ptr->conv1d_backward_weight)
#define cconv_pool2d_output_shape (*cconv_API_ptr->pool2d_output_shape)
#define cconv_max_pool2d_forward (*cconv_API_ptr->max_pool2d_forward)
#define cconv_max_pool2d_backward (*cconv_API_ptr->max_pool2d_backward)
#define cconv_avg_pool2d_forward (*cconv_API_ptr->avg_pool2d_forward)
#define cconv_avg_pool2d_backward (*cconv_API_ptr->avg_pool2d_backward)
#define cconv_pool1d_output_length (*cconv_API_ptr->pool1d_output_length)
#define cconv_max_pool1d_forward (*cconv_API_ptr->max_pool1d_forward)
#define cconv_max_pool1d_backward (*cconv_API_ptr->max_pool1d_backward)
#define cconv_avg_pool1d_forward (*cconv_API_ptr->avg_pool1d_forward)
#define cconv_avg_pool1d_backward (*cconv_API_ptr->avg_pool1d_backward)
#define cconv_gemm (*cconv_API_ptr->gemm)
#define cconv_eigh (*cconv_API_ptr->eigh)

#endif /* CCONV_LINK_STATIC */
#endif /* CCONV_CAPSULE_H */
