/* Max and average pooling, forward and backward, with torch's semantics
 * (padding counts as -inf for max; ceil_mode and count_include_pad). Work is
 * split over (image, channel) planes. */
#include <stdlib.h>
#include <string.h>
#include "cconv_core.h"

int cconv_pool2d_check(const cconv_pool2d_params *p)
{
    if (p->n < 0 || p->c < 1 || p->h < 1 || p->w < 1 || p->kh < 1 || p->kw < 1 ||
        p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1 ||
        p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0 ||
        p->out_h < 1 || p->out_w < 1)
        return CCONV_EINVAL;
    return CCONV_OK;
}

#define T float
#define IT int32_t /* an integer of T's width, for vector masks */
#define SFX(name) name##_f32
#include "pool_impl.h"
#undef T
#undef IT
#undef SFX

#define T double
#define IT int64_t
#define SFX(name) name##_f64
#include "pool_impl.h"
#undef T
#undef IT
#undef SFX
