/* IEEE binary16 and bfloat16 to float, exact. Shared by the quantized
 * layer kinds and the model-file readers. Never installed. */
#ifndef MM_HALF_H
#define MM_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#  define MM_HALF_INLINE static inline __attribute__((always_inline))
#else
#  define MM_HALF_INLINE static inline
#endif

MM_HALF_INLINE float mm_half_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE half -> float, exact (branch-free, vectorises). */
MM_HALF_INLINE float mm_f16_to_f32(uint16_t h) {
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    const uint32_t exp = o & (0x7c00u << 13);
    o += (127u - 15u) << 23;
    const float sub = mm_half_u2f(o + (1u << 23)) - mm_half_u2f(113u << 23);
    uint32_t r = exp == (0x7c00u << 13) ? o + ((128u - 16u) << 23) : o;
    uint32_t subu;
    memcpy(&subu, &sub, sizeof subu);
    r = exp == 0 ? subu : r;
    return mm_half_u2f(r | ((uint32_t)(h & 0x8000u) << 16));
}

/* bfloat16 -> float: the top half of a binary32, exact. */
MM_HALF_INLINE float mm_bf16_to_f32(uint16_t h) { return mm_half_u2f((uint32_t)h << 16); }

#endif
