/* The one check that caller data is finite: every entry point that computes
 * on samples a caller passes in (inference, training steps, calibration)
 * refuses NaN and infinity with MM_E_NUMERIC through mm_check_samples, so
 * they all say the same thing the same way. */
#include <string.h>

#include "common/mm_internal.h"

/* Block width: 16 independent accumulators let GCC's "very cheap" cost
 * model (-O2) vectorise the loop although its trip count is unknown. */
#define FINITE_BLOCK 16

/* An IEEE single is NaN or infinite iff its exponent bits are all ones:
 * (bits & 0x7f800000) + 0x00800000 then carries into bit 31. Integer
 * operations only, so the answer does not depend on floating-point flags
 * (isfinite is folded to true under -ffast-math) and the loop vectorises
 * with plain SSE2 / NEON. */
bool mm_all_finite(const float *restrict x, size_t count) {
    uint32_t acc[FINITE_BLOCK] = {0};
    size_t i = 0;
    for (; i + FINITE_BLOCK <= count; i += FINITE_BLOCK)
        for (size_t j = 0; j < FINITE_BLOCK; j++) {
            uint32_t b;
            memcpy(&b, &x[i + j], sizeof b);
            acc[j] |= (b & 0x7f800000u) + 0x00800000u;
        }
    uint32_t r = 0;
    for (; i < count; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        r |= (b & 0x7f800000u) + 0x00800000u;
    }
    for (size_t j = 0; j < FINITE_BLOCK; j++) r |= acc[j];
    return (r & 0x80000000u) == 0;
}

mm_status mm_check_samples(const float *x, size_t n, size_t dim, const char *what,
                           const char *consequence) {
    size_t count;
    if (!mm_mul_ok(n, dim, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "batch of %zu samples is too large", n);
    if (mm_all_finite(x, count)) return MM_OK;
    /* Only on error: find the first offender for the message. */
    for (size_t k = 0; k < count; k++) {
        uint32_t b;
        memcpy(&b, &x[k], sizeof b);
        if ((b & 0x7f800000u) != 0x7f800000u) continue;
        const char *kind = (b & 0x007fffffu) ? "NaN" : (b >> 31) ? "-inf" : "inf";
        return mm_error(MM_E_NUMERIC, "%s %zu, feature %zu is %s%s%s", what ? what : "sample",
                        k / dim, k % dim, kind, consequence ? "; " : "",
                        consequence ? consequence : "");
    }
    return MM_OK; /* not reached: mm_all_finite said otherwise */
}
