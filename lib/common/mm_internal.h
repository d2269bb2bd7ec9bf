/* Internal helpers shared by every module: error reporting, allocation,
 * checked arithmetic, the portable PRNG. Never installed. */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mm_common.h"

#if defined(__GNUC__)
#  define MM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define MM_PRINTF(a, b)
#endif

/* Record `status` and a printf-style detail message for this thread and
 * return `status`, so error paths read `return mm_error(MM_E_SHAPE, "...")`. */
mm_status mm_error(mm_status status, const char *fmt, ...) MM_PRINTF(2, 3);

/* Prefix the current detail message with context ("loading x.mmf: ...")
 * and return `status`. */
mm_status mm_error_prefix(mm_status status, const char *fmt, ...) MM_PRINTF(2, 3);

/* Report a NULL argument: `return mm_null_arg("model")`. */
mm_status mm_null_arg(const char *what);

/* Allocation: return NULL on failure (callers turn it into MM_E_OUT_OF_MEMORY
 * with mm_oom()). Sizes are checked for overflow. mm_aligned_alloc gives
 * 64-byte aligned memory freed with mm_aligned_free. */
void *mm_malloc_array(size_t count, size_t size);
void *mm_calloc_array(size_t count, size_t size);
float *mm_alloc_floats(size_t count);      /* 64-byte aligned, uninitialised */
float *mm_alloc_floats_zero(size_t count); /* 64-byte aligned, zeroed */
void mm_free_floats(float *p);
mm_status mm_oom(const char *what);
char *mm_strdup(const char *s);

/* Finite caller data (finite.c). mm_all_finite: no NaN or infinity in
 * x[0..count), in one vectorisable integer pass (exponent bits: correct
 * whatever the floating-point flags). mm_check_samples: the same over n
 * samples of dim features, MM_OK or MM_E_NUMERIC naming the first offending
 * sample, feature and value, e.g. with what = "input sample" and
 * consequence = "nothing was computed":
 *   "input sample 3, feature 17 is NaN; nothing was computed"
 * (MM_E_OUT_OF_RANGE if n * dim overflows). Every entry point that computes
 * on caller samples (inference, steps, calibration) checks them with it. */
bool mm_all_finite(const float *x, size_t count);
mm_status mm_check_samples(const float *x, size_t n, size_t dim, const char *what,
                           const char *consequence);

/* a*b without overflow: false if it would overflow. */
static inline bool mm_mul_ok(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return false;
    *out = a * b;
    return true;
}

/* Portable PRNG: xoshiro256** seeded through splitmix64. The same seed gives
 * the same stream on every platform and compiler. */
typedef struct mm_rng {
    uint64_t s[4];
} mm_rng;

void mm_rng_seed(mm_rng *rng, uint64_t seed);
uint64_t mm_rng_next(mm_rng *rng);
/* Uniform in [0, 1) with 24 random bits (exact in float). */
float mm_rng_uniform(mm_rng *rng);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t mm_rng_below(mm_rng *rng, uint64_t n);
/* Standard normal (Box-Muller from two uniforms, double precision). */
double mm_rng_normal(mm_rng *rng);
/* Fisher-Yates shuffle of idx[0..n). */
void mm_rng_shuffle_u32(mm_rng *rng, uint32_t *idx, size_t n);

/* Seconds from a monotonic clock. */
double mm_now_seconds(void);

#endif
