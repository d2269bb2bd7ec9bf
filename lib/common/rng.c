/* xoshiro256** (Blackman & Vigna), seeded with splitmix64: fixed-width
 * integer arithmetic only, so streams are identical on every platform. */
#include <math.h>

#include "common/mm_internal.h"
#include "common/pmath.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void mm_rng_seed(mm_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mm_rng_next(mm_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float mm_rng_uniform(mm_rng *rng) {
    return (float)(mm_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t mm_rng_below(mm_rng *rng, uint64_t n) {
    /* Rejection sampling: drop the top partial block so every value is
     * equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t r;
    do {
        r = mm_rng_next(rng);
    } while (r >= limit);
    return r % n;
}

double mm_rng_normal(mm_rng *rng) {
    /* Box-Muller with 53-bit uniforms; u1 in (0, 1] keeps log finite. The
     * portable log and cos (pmath.h) give every platform the same weights. */
    double u1 = ((double)(mm_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(mm_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * mm_plog(u1)) * mm_pcos2pi(u2);
}

void mm_rng_shuffle_u32(mm_rng *rng, uint32_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mm_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
