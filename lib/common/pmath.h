/* Portable elementary functions: the same result bits on every platform.
 *
 * libm's exp, tanh, log and cos are not exactly specified: glibc's tanhf,
 * for one, is float code that GCC contracts into fused multiply-adds on
 * s390x but not on x86-64, and 32-bit x86 uses x87 instructions, so a tanh
 * model's outputs differed in the last bits between machines. These
 * functions use only IEEE-754 double +, -, *, / and exact operations
 * (floor, frexp, bit assembly of 2^k), which every platform rounds the same
 * way given the build flags of meson.build (no contraction, no excess
 * precision). They are accurate to about 1e-15 relative, so the float
 * results are correctly rounded except in astronomically rare cases
 * (at most 1 ulp from libm's). doc/PORTABILITY.md lists where they are
 * used. Never installed. */
#ifndef MM_PMATH_H
#define MM_PMATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ln 2 split so that k * MM_LN2_HI is exact for |k| < 2^11 (Cody-Waite). */
#define MM_LN2_HI 0x1.62e42feep-1
#define MM_LN2_LO 0x1.a39ef35793c76p-33

/* exp(x), 1e-15 relative; NaN stays NaN, overflow gives +inf, underflow 0. */
static inline double mm_pexp(double x) {
    if (x != x) return x;
    if (x > 709.7) return INFINITY;
    if (x < -745.0) return 0.0;
    double k = floor(x * 1.4426950408889634 + 0.5); /* nearest integer to x / ln 2 */
    double r = (x - k * MM_LN2_HI) - k * MM_LN2_LO; /* |r| <= ~0.347 */
    /* Taylor series to r^13 (error < 1e-17 relative for |r| <= 0.347) */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k in two factors, each a normal double (k in [-1075, 1024]) */
    int64_t ki = (int64_t)k, k1 = ki / 2, k2 = ki - k1;
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

/* expf: NaN stays NaN, +inf and overflow give +inf, -inf and underflow 0. */
static inline float mm_pexpf(float x) {
    if (x != x) return x;
    if (x > 89.0f) return INFINITY;
    if (x < -110.0f) return 0.0f;
    return (float)mm_pexp((double)x);
}

/* tanhf: odd, NaN stays NaN, +-1 for |x| >= 10, x itself for |x| < 2^-12
 * (where tanh x = x (1 - x^2/3 + ...) rounds to x). */
static inline float mm_ptanhf(float x) {
    float ax = fabsf(x);
    if (!(ax < 10.0f)) return x != x ? x : (x < 0.0f ? -1.0f : 1.0f);
    if (ax < 0x1p-12f) return x;
    double e = mm_pexp(2.0 * (double)ax);
    float t = (float)((e - 1.0) / (e + 1.0)); /* e - 1 >= 2^-11: relative error < 1e-12 */
    return x < 0.0f ? -t : t;
}

/* log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
 * s = (m - 1) / (m + 1), |s| <= 0.172. log 0 = -inf, log +inf = +inf,
 * NaN for NaN and x < 0. */
static inline double mm_plog(double x) {
    if (!(x > 0.0)) return x == 0.0 ? -INFINITY : NAN;
    if (x == INFINITY) return x;
    int e;
    double m = frexp(x, &e); /* exact: m in [0.5, 1) */
    if (m < 0.70710678118654752) {
        m *= 2.0;
        e -= 1;
    }
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = 1.0 / 25.0;
    for (int n = 23; n >= 1; n -= 2) p = p * s2 + 1.0 / n;
    return 2.0 * s * p + (double)e * MM_LN2_LO + (double)e * MM_LN2_HI;
}

/* x^y for x >= 0 (exp(y log x)): 0^y = 0 for y > 0, x^0 = 1. About
 * |y log x| * 1e-16 relative: fine for learning-rate factors and schedules. */
static inline double mm_ppow(double x, double y) {
    if (y == 0.0) return 1.0;
    return mm_pexp(y * mm_plog(x));
}

/* cos(2 pi t) for any finite t: reduced in turns (exact), then a Taylor
 * series of cos or sin on [0, pi/4]. */
static inline double mm_pcos2pi(double t) {
    double a = fabs(t - floor(t + 0.5)); /* [0, 0.5], exact; cos is even */
    double sign = 1.0;
    if (a > 0.25) { /* cos(2 pi a) = -cos(2 pi (0.5 - a)) */
        a = 0.5 - a;
        sign = -1.0;
    }
    bool use_sin = a > 0.125; /* cos(2 pi a) = sin(2 pi (0.25 - a)) */
    if (use_sin) a = 0.25 - a;
    double th = 6.283185307179586 * a, t2 = th * th, p;
    if (use_sin) { /* th - th^3/3! + ... + th^17/17! */
        p = 1.0 / 355687428096000.0;
        for (int n = 15; n >= 3; n -= 2) {
            double f = 1.0;
            for (int i = 2; i <= n; i++) f *= i; /* n! exact below 2^53 */
            p = p * t2 + ((n & 2) ? -1.0 : 1.0) / f;
        }
        p = (p * t2 + 1.0) * th;
    } else { /* 1 - th^2/2! + ... + th^18/18! */
        p = -1.0 / 6402373705728000.0;
        for (int n = 16; n >= 2; n -= 2) {
            double f = 1.0;
            for (int i = 2; i <= n; i++) f *= i;
            p = p * t2 + ((n & 2) ? -1.0 : 1.0) / f;
        }
        p = p * t2 + 1.0;
    }
    return sign * p;
}

#endif
