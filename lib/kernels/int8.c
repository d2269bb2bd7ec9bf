/* int8 kernels: see int8.h for the contract, the quantization convention
 * and the packed format.
 *
 * Three variants of each hot loop, selected at run time:
 *  - portable C over the same packed format, written to auto-vectorise
 *    (element-wise int8 x int16 -> int32 over the 64 bytes of a
 *    (block, group)); a fallback: ~0.2-0.4x the fp32 BLIS path with SSE2;
 *  - AVX2: per (16-row block, group of 4 columns) four 16-byte loads
 *    sign-extended to 16 bits (vpmovsxbw), each times the 4 activations
 *    broadcast as 16-bit words (vpmaddwd: exact, no saturation), giving
 *    8 int32 partial sums (2 per row) that are folded with vphaddd at the
 *    end. Tile: 1 block x 2 samples (8 accumulators). (vpmaddubsw would
 *    do twice the products per instruction but saturates at 16 bits for
 *    full-range u8 x s8; exact results need 16-bit products, so AVX2 int8
 *    is only ~1.2-2x the fp32 path.)
 *  - AVX-512 VNNI: one 64-byte load per (block, group), one vpdpbusd per
 *    sample with the 4 activation bytes broadcast. GEMM tile: 4 blocks
 *    (64 rows) x 6 samples = 24 zmm accumulators; GEMV: 4 blocks with two
 *    accumulator chains (even/odd column groups) to hide the latency.
 * Sample tails of a tile repeat the last valid sample (computed, not
 * stored); row tails use masked stores; a column tail (in % 4) builds the
 * last group's activation word from the remaining bytes only (never reads
 * past a row of xq).
 *
 * Quantize / dequantize loops are written with intrinsics (not left to the
 * auto-vectoriser) so every variant performs exactly the same float
 * operations in the same order (multiply, then add: never contracted to a
 * fused multiply-add; the portable copy is plain C, and the project's
 * -std=c11 keeps GCC from contracting): results are bit-identical.
 *
 * Measured here (AMD EPYC, AVX-512 VNNI, 1 thread; benchmarks/bench_int8):
 * 784x256 layer at batch 1 ~1.9 us (L2 bandwidth bound: 200 KB of
 * weights), 4-5x BLIS sgemv; at batch 256 ~4.5x BLIS sgemm; the whole
 * 784-256-128-10 model ~350-390k samples/s at batch 1 and ~700k at 256.
 */
#include "kernels/int8.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "common/pmath.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(MM_INT8_PORTABLE_ONLY)
#  define I8_X86 1
#  include <immintrin.h>
#  define I8_AVX2 __attribute__((target("avx2")))
#  define I8_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))
#  define I8_AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))
#  define I8_VNNI_INLINE \
      static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))
#else
#  define I8_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define I8_INLINE static inline __attribute__((always_inline))
#else
#  define I8_INLINE static inline
#endif

#define BR MM_INT8_BLOCK_ROWS /* 16 */
#define GC MM_INT8_GROUP_COLS /* 4 */
#define GBYTES (BR * GC)      /* 64 bytes per (block, group) */

struct mm_int8_packed {
    size_t out, in;
    size_t blocks;  /* ceil(out / 16) */
    size_t groups;  /* ceil(in / 4) */
    int8_t *data;   /* blocks * groups * 64 bytes, 64-byte aligned */
    int32_t *rsum;  /* blocks * 16 row sums (0 for padding rows) */
    size_t bytes;
};

/* ---- ISA selection ------------------------------------------------------ */

static int detect_best(void) {
#if I8_X86
    __builtin_cpu_init();
    int v = MM_INT8_ISA_PORTABLE;
    if (__builtin_cpu_supports("avx2")) {
        v = MM_INT8_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            v = MM_INT8_ISA_AVX512VNNI;
    }
    return v;
#else
    return MM_INT8_ISA_PORTABLE;
#endif
}

mm_int8_isa mm_int8_isa_best(void) {
    static atomic_int best = -1;
    int v = atomic_load_explicit(&best, memory_order_relaxed);
    if (v < 0) {
        v = detect_best();
        atomic_store_explicit(&best, v, memory_order_relaxed);
    }
    return (mm_int8_isa)v;
}

bool mm_int8_isa_available(mm_int8_isa isa) {
    return (int)isa >= MM_INT8_ISA_PORTABLE && (int)isa <= (int)mm_int8_isa_best();
}

static atomic_int g_isa = -1;

mm_int8_isa mm_int8_isa_current(void) {
    int v = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (v >= 0) return (mm_int8_isa)v;
    v = (int)mm_int8_isa_best();
    const char *env = getenv("MM_INT8_ISA");
    mm_int8_isa cap;
    if (env != NULL && mm_int8_isa_parse(env, &cap) == MM_OK && (int)cap < v) v = (int)cap;
    int expected = -1;
    if (!atomic_compare_exchange_strong(&g_isa, &expected, v)) v = expected;
    return (mm_int8_isa)v;
}

mm_status mm_int8_set_isa(mm_int8_isa isa) {
    if (!mm_int8_isa_available(isa))
        return mm_error(MM_E_UNSUPPORTED, "int8 kernel variant %s (%d) is not available here",
                        mm_int8_isa_name(isa), (int)isa);
    atomic_store_explicit(&g_isa, (int)isa, memory_order_relaxed);
    return MM_OK;
}

void mm_int8_isa_reset(void) { atomic_store_explicit(&g_isa, -1, memory_order_relaxed); }

const char *mm_int8_isa_name(mm_int8_isa isa) {
    switch (isa) {
    case MM_INT8_ISA_PORTABLE:
        return "portable";
    case MM_INT8_ISA_AVX2:
        return "avx2";
    case MM_INT8_ISA_AVX512VNNI:
        return "avx512vnni";
    }
    return "?";
}

mm_status mm_int8_isa_parse(const char *name, mm_int8_isa *out) {
    if (name == NULL || out == NULL) return mm_null_arg(name == NULL ? "name" : "out");
    if (strcmp(name, "portable") == 0 || strcmp(name, "c") == 0 || strcmp(name, "0") == 0)
        *out = MM_INT8_ISA_PORTABLE;
    else if (strcmp(name, "avx2") == 0)
        *out = MM_INT8_ISA_AVX2;
    else if (strcmp(name, "avx512vnni") == 0 || strcmp(name, "avx512") == 0 ||
             strcmp(name, "vnni") == 0)
        *out = MM_INT8_ISA_AVX512VNNI;
    else
        return mm_error(MM_E_NOT_FOUND,
                        "unknown int8 kernel variant \"%s\" (portable, avx2, avx512vnni)", name);
    return MM_OK;
}

/* ---- packing ---------------------------------------------------------------- */

mm_status mm_int8_pack_weights(const int8_t *w, size_t out, size_t in, mm_int8_packed **packed) {
    if (packed == NULL) return mm_null_arg("packed");
    *packed = NULL;
    if (w == NULL) return mm_null_arg("w");
    if (out == 0 || in == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "int8 weights must be non-empty, got %zu x %zu",
                        out, in);
    if (in > MM_INT8_MAX_IN)
        return mm_error(MM_E_OUT_OF_RANGE,
                        "int8 layer input width %zu exceeds %u (int32 accumulators could "
                        "overflow)",
                        in, MM_INT8_MAX_IN);
    size_t blocks = (out + BR - 1) / BR, groups = (in + GC - 1) / GC, dbytes;
    if (!mm_mul_ok(blocks, groups, &dbytes) || !mm_mul_ok(dbytes, GBYTES, &dbytes) ||
        blocks > SIZE_MAX / (BR * sizeof(int32_t)))
        return mm_error(MM_E_OUT_OF_RANGE, "int8 weights %zu x %zu are too large", out, in);
    mm_int8_packed *p = calloc(1, sizeof *p);
    if (p == NULL) return mm_oom("int8 packed weights");
    p->data = aligned_alloc(64, dbytes); /* a multiple of 64 */
    p->rsum = aligned_alloc(64, blocks * BR * sizeof(int32_t));
    if (p->data == NULL || p->rsum == NULL) {
        mm_int8_packed_free(p);
        return mm_oom("int8 packed weights");
    }
    p->out = out;
    p->in = in;
    p->blocks = blocks;
    p->groups = groups;
    p->bytes = sizeof *p + dbytes + blocks * BR * sizeof(int32_t);
    /* padding (rows past out, columns past in) is zero and stays zero */
    memset(p->data, 0, dbytes);
    memset(p->rsum, 0, blocks * BR * sizeof(int32_t));
    mm_int8_repack_weights(p, w);
    *packed = p;
    return MM_OK;
}

/* Row o goes to block o / BR, lane o % BR: each group of GC columns is GC
 * consecutive bytes at (block * groups + g) * GBYTES + lane * GC. Whole
 * groups are copied as GC-byte moves (a byte-at-a-time loop with / and %
 * made re-quantizing after every online step cost more than the step). */
void mm_int8_repack_weights(mm_int8_packed *p, const int8_t *w) {
    const size_t out = p->out, in = p->in, groups = p->groups, full = in / GC, rest = in % GC;
    for (size_t o = 0; o < out; o++) {
        const int8_t *row = w + o * in;
        int8_t *dst = p->data + (o / BR) * groups * GBYTES + (o % BR) * GC;
        for (size_t g = 0; g < full; g++) memcpy(dst + g * GBYTES, row + g * GC, GC);
        if (rest) memcpy(dst + full * GBYTES, row + full * GC, rest);
        int32_t sum = 0;
        for (size_t i = 0; i < in; i++) sum += row[i];
        p->rsum[o] = sum;
    }
}

void mm_int8_packed_free(mm_int8_packed *p) {
    if (p == NULL) return;
    free(p->data);
    free(p->rsum);
    free(p);
}

size_t mm_int8_packed_bytes(const mm_int8_packed *p) { return p ? p->bytes : 0; }
size_t mm_int8_packed_out(const mm_int8_packed *p) { return p->out; }
size_t mm_int8_packed_in(const mm_int8_packed *p) { return p->in; }
int32_t mm_int8_packed_row_sum(const mm_int8_packed *p, size_t o) { return p->rsum[o]; }

void mm_int8_unpack_weights(const mm_int8_packed *p, int8_t *w) {
    for (size_t o = 0; o < p->out; o++)
        for (size_t i = 0; i < p->in; i++)
            w[o * p->in + i] =
                p->data[((o / BR) * p->groups + i / GC) * GBYTES + (o % BR) * GC + i % GC];
}

/* ---- shared helpers ------------------------------------------------------------ */

I8_INLINE int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The activation word of the last, partial column group: rem (1..3) bytes,
 * zero-padded (the padding weights are 0 anyway). */
I8_INLINE int32_t ld_tail(const uint8_t *p, size_t rem) {
    uint8_t b[4] = {0, 0, 0, 0};
    memcpy(b, p, rem);
    return ld32(b);
}

/* A GEMM call, whatever the variant. zp[s * zstep] is sample s's zero
 * point (zstep 0: one for all). */
typedef struct gemm_args {
    const uint8_t *x;
    size_t n, in;
    const int32_t *zp;
    size_t zstep;
    const mm_int8_packed *w;
    int32_t *acc;
} gemm_args;

/* ---- portable C ---------------------------------------------------------------- */

/* Portable GEMM. Written so that compilers vectorise it on any target:
 * per sample, per chunk of up to PCHUNK blocks, per column group, the 4
 * activations are repeated into a 64-lane int16 pattern xp (xp[t] =
 * x[t % 4]) and every block of the chunk does the element-wise
 * acc[t] += q[t] * xp[t] over its 64 bytes (int8 x int16 -> int32, no
 * cross-lane work); at the end row r of the block sums acc[4r..4r+3]. */
#define PCHUNK 8

static void gemm_portable(const gemm_args *a) {
    const mm_int8_packed *w = a->w;
    const size_t in = a->in, out = w->out, G = w->groups, full = in / GC, rem = in % GC;
    const size_t bs = G * GBYTES;
    int32_t acc[PCHUNK][GBYTES];
    int16_t xp[GBYTES];
    for (size_t s = 0; s < a->n; s++) {
        const uint8_t *x = a->x + s * in;
        const int32_t zp = a->zp[s * a->zstep];
        for (size_t b0 = 0; b0 < w->blocks; b0 += PCHUNK) {
            const size_t mb = w->blocks - b0 < PCHUNK ? w->blocks - b0 : PCHUNK;
            memset(acc, 0, sizeof acc);
            for (size_t g = 0; g < G; g++) {
                for (size_t j = 0; j < GC; j++)
                    xp[j] = (g < full || j < rem) ? (int16_t)x[g * GC + j] : 0;
                for (size_t t = GC; t < GBYTES; t++) xp[t] = xp[t - GC];
                for (size_t m = 0; m < mb; m++) {
                    const int8_t *restrict q = w->data + (b0 + m) * bs + g * GBYTES;
                    int32_t *restrict am = acc[m];
                    for (size_t t = 0; t < GBYTES; t++) am[t] += (int32_t)q[t] * xp[t];
                }
            }
            for (size_t m = 0; m < mb; m++) {
                const size_t row0 = (b0 + m) * BR;
                const size_t rows = out - row0 < BR ? out - row0 : BR;
                int32_t *dst = a->acc + s * out + row0;
                for (size_t r = 0; r < rows; r++)
                    dst[r] = (acc[m][r * GC] + acc[m][r * GC + 1] + acc[m][r * GC + 2] +
                              acc[m][r * GC + 3]) -
                             zp * w->rsum[row0 + r];
            }
        }
    }
}

#if FLT_EVAL_METHOD == 0
/* Round to an integer in the current mode (half to even by default), for
 * |v| <= 2^22: the classic magic-number addition, which vectorises. */
I8_INLINE float round_small(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }
#else
I8_INLINE float round_small(float v) { return nearbyintf(v); }
#endif

/* Quantize cnt values; returns true if some input was NaN or Inf. One
 * value: v = x * inv; NaN -> 0; clamp to [-zp, 255 - zp]; round; + zp. */
static bool quant_portable(const float *restrict x, size_t cnt, float inv, int32_t zp,
                           uint8_t *restrict q) {
    const float lo = (float)-zp, hi = (float)(255 - zp);
    unsigned bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        const float xi = x[i];
        bad |= !(fabsf(xi) <= FLT_MAX); /* NaN or +-Inf */
        float v = xi * inv;
        v = v == v ? v : 0.0f;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        q[i] = (uint8_t)((int32_t)round_small(v) + zp);
    }
    return bad != 0;
}

/* NaN or +-Inf (a comparison, so that the loops using it vectorise). */
I8_INLINE unsigned nonfinite1(float x) { return !(fabsf(x) <= FLT_MAX); }

/* Min and max of cnt (>= 1) values; true if some value is NaN or Inf. */
static bool minmax_portable(const float *x, size_t cnt, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    unsigned bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        bad |= nonfinite1(x[i]);
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *mn = lo;
    *mx = hi;
    return bad != 0;
}

/* One output row: y[o] = act_fused((float)acc[o] * (xs * ws[o]) + b[o]) for
 * the fused activations (identity, relu, leaky); others are applied by the
 * caller. */
static void dequant_portable(const int32_t *acc, size_t cnt, float xs, const float *ws,
                             const float *b, mm_activation act, float slope, float *y) {
    for (size_t o = 0; o < cnt; o++) {
        float s = xs * ws[o];
        float t = (float)acc[o] * s;
        if (b) t = t + b[o];
        if (act == MM_ACT_RELU) t = t < 0.0f ? 0.0f : t;
        else if (act == MM_ACT_LEAKY_RELU) t = t > 0.0f ? t : slope * t;
        y[o] = t;
    }
}

/* ---- AVX2 ------------------------------------------------------------------------ */
#if I8_X86

/* AVX2 tile: one 16-row block (wb) x NS (1 or 2) samples, all column
 * groups. Writes the 16 exact sums (before zero-point compensation) of
 * sample s to res[s][0..15]. Named accumulators (not arrays), so that
 * they live in registers. a<c><s>: chunk c (rows 4c..4c+3) of sample s;
 * lanes r0 r0 r1 r1 | r2 r2 r3 r3 (two partial sums per row). */
I8_AVX2_INLINE __m256i avx2_x(const uint8_t *p) {
    return _mm256_cvtepu8_epi16(_mm_set1_epi32(ld32(p)));
}

I8_AVX2_INLINE void avx2_rows(__m256i a0, __m256i a1, __m256i a2, __m256i a3, int32_t *res) {
    /* hadd gives rows r0 r1 r4 r5 | r2 r3 r6 r7; the permute puts them in order. */
    _mm256_storeu_si256((__m256i *)res,
                        _mm256_permute4x64_epi64(_mm256_hadd_epi32(a0, a1), 0xD8));
    _mm256_storeu_si256((__m256i *)(res + 8),
                        _mm256_permute4x64_epi64(_mm256_hadd_epi32(a2, a3), 0xD8));
}

#define AVX2_MAC(c)                                                                      \
    do {                                                                                 \
        __m256i wv_ = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(q + 16 * (c)))); \
        a##c##0 = _mm256_add_epi32(a##c##0, _mm256_madd_epi16(wv_, x0));                 \
        if (NS > 1) a##c##1 = _mm256_add_epi32(a##c##1, _mm256_madd_epi16(wv_, x1));     \
    } while (0)

I8_AVX2_INLINE void avx2_tile(const uint8_t *const *xs, size_t full, size_t rem, const int8_t *wb,
                              int32_t res[][BR], const int NS) {
    __m256i a00 = _mm256_setzero_si256(), a10 = a00, a20 = a00, a30 = a00;
    __m256i a01 = a00, a11 = a00, a21 = a00, a31 = a00;
    const uint8_t *p0 = xs[0], *p1 = xs[NS > 1 ? 1 : 0];
    for (size_t g = 0; g < full; g++) {
        const __m256i x0 = avx2_x(p0 + g * GC);
        const __m256i x1 = NS > 1 ? avx2_x(p1 + g * GC) : x0;
        const int8_t *q = wb + g * GBYTES;
        AVX2_MAC(0);
        AVX2_MAC(1);
        AVX2_MAC(2);
        AVX2_MAC(3);
    }
    if (rem) {
        const __m256i x0 = _mm256_cvtepu8_epi16(_mm_set1_epi32(ld_tail(p0 + full * GC, rem)));
        const __m256i x1 =
            NS > 1 ? _mm256_cvtepu8_epi16(_mm_set1_epi32(ld_tail(p1 + full * GC, rem))) : x0;
        const int8_t *q = wb + full * GBYTES;
        AVX2_MAC(0);
        AVX2_MAC(1);
        AVX2_MAC(2);
        AVX2_MAC(3);
    }
    avx2_rows(a00, a10, a20, a30, res[0]);
    if (NS > 1) avx2_rows(a01, a11, a21, a31, res[1]);
}

I8_AVX2_INLINE void avx2_store(const gemm_args *a, size_t s, size_t b, const int32_t *res) {
    const mm_int8_packed *w = a->w;
    const size_t out = w->out;
    const int32_t zp = a->zp[s * a->zstep];
    int32_t *dst = a->acc + s * out + b * BR;
    const __m256i z = _mm256_set1_epi32(zp);
    for (size_t h = 0; h < 2; h++) {
        __m256i v = _mm256_sub_epi32(
            _mm256_loadu_si256((const __m256i *)(res + 8 * h)),
            _mm256_mullo_epi32(z, _mm256_load_si256((const __m256i *)(w->rsum + b * BR + 8 * h))));
        size_t r0 = b * BR + 8 * h;
        if (r0 + 8 <= out) {
            _mm256_storeu_si256((__m256i *)(dst + 8 * h), v);
        } else if (r0 < out) {
            int32_t tmp[8];
            _mm256_storeu_si256((__m256i *)tmp, v);
            memcpy(dst + 8 * h, tmp, (out - r0) * sizeof(int32_t));
        }
    }
}

I8_AVX2 static void gemm_avx2(const gemm_args *a) {
    const mm_int8_packed *w = a->w;
    const size_t in = a->in, full = in / GC, rem = in % GC, G = w->groups;
    int32_t res[2][BR];
    size_t s = 0;
    for (; s + 2 <= a->n; s += 2) {
        const uint8_t *xs[2] = {a->x + s * in, a->x + (s + 1) * in};
        for (size_t b = 0; b < w->blocks; b++) {
            avx2_tile(xs, full, rem, w->data + b * G * GBYTES, res, 2);
            avx2_store(a, s, b, res[0]);
            avx2_store(a, s + 1, b, res[1]);
        }
    }
    if (s < a->n) {
        const uint8_t *xs[1] = {a->x + s * in};
        for (size_t b = 0; b < w->blocks; b++) {
            avx2_tile(xs, full, rem, w->data + b * G * GBYTES, res, 1);
            avx2_store(a, s, b, res[0]);
        }
    }
}

I8_AVX2 static bool quant_avx2(const float *x, size_t cnt, float inv, int32_t zp, uint8_t *q) {
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps((float)-zp),
                 hi = _mm256_set1_ps((float)(255 - zp));
    const __m256i vzp = _mm256_set1_epi32(zp), em = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256i e = _mm256_and_si256(_mm256_castps_si256(xv), em);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, em));
        __m256 v = _mm256_mul_ps(xv, vinv);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        __m256i qi = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
        __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(qi, qi), _mm256_setzero_si256());
        __m128i r = _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        _mm_storel_epi64((__m128i *)(q + i), r);
    }
    bool b = !_mm256_testz_si256(bad, bad);
    if (i < cnt) b |= quant_portable(x + i, cnt - i, inv, zp, q + i);
    return b;
}

I8_AVX2 static bool minmax_avx2(const float *x, size_t cnt, float *mn, float *mx) {
    size_t i = 0;
    float lo = x[0], hi = x[0];
    bool b = false;
    if (cnt >= 8) {
        const __m256i em = _mm256_set1_epi32(0x7f800000);
        __m256i bad = _mm256_setzero_si256();
        __m256 vl = _mm256_loadu_ps(x), vh = vl;
        for (; i + 8 <= cnt; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            __m256i e = _mm256_and_si256(_mm256_castps_si256(xv), em);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, em));
            vl = _mm256_min_ps(vl, xv);
            vh = _mm256_max_ps(vh, xv);
        }
        float l[8], h[8];
        _mm256_storeu_ps(l, vl);
        _mm256_storeu_ps(h, vh);
        for (int j = 0; j < 8; j++) {
            lo = l[j] < lo ? l[j] : lo;
            hi = h[j] > hi ? h[j] : hi;
        }
        b = !_mm256_testz_si256(bad, bad);
    }
    if (i < cnt) {
        float l2, h2;
        b |= minmax_portable(x + i, cnt - i, &l2, &h2);
        lo = l2 < lo ? l2 : lo;
        hi = h2 > hi ? h2 : hi;
    }
    *mn = lo;
    *mx = hi;
    return b;
}

I8_AVX2 static void dequant_avx2(const int32_t *acc, size_t cnt, float xs, const float *ws,
                                 const float *bias, mm_activation act, float slope, float *y) {
    const __m256 vxs = _mm256_set1_ps(xs), zero = _mm256_setzero_ps(),
                 vsl = _mm256_set1_ps(slope);
    size_t o = 0;
    for (; o + 8 <= cnt; o += 8) {
        __m256 s = _mm256_mul_ps(vxs, _mm256_loadu_ps(ws + o));
        __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + o))), s);
        if (bias) t = _mm256_add_ps(t, _mm256_loadu_ps(bias + o));
        if (act == MM_ACT_RELU)
            t = _mm256_blendv_ps(t, zero, _mm256_cmp_ps(t, zero, _CMP_LT_OQ));
        else if (act == MM_ACT_LEAKY_RELU)
            t = _mm256_blendv_ps(_mm256_mul_ps(vsl, t), t, _mm256_cmp_ps(t, zero, _CMP_GT_OQ));
        _mm256_storeu_ps(y + o, t);
    }
    if (o < cnt)
        dequant_portable(acc + o, cnt - o, xs, ws + o, bias ? bias + o : NULL, act, slope, y + o);
}

/* ---- AVX-512 VNNI ---------------------------------------------------------------- */

I8_VNNI_INLINE __mmask16 row_mask(size_t out, size_t row0) {
    if (row0 >= out) return 0;
    size_t r = out - row0;
    return r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1u);
}

/* acc += u8(x) . s8(w) (vpdpbusd). GCC (12) copies the tied accumulator
 * of the intrinsic through extra registers and then spills the 4 x 6
 * tile; the same instruction as inline asm keeps all 24 in registers. */
I8_VNNI_INLINE __m512i dpbusd(__m512i acc, __m512i x, __m512i w) {
#  if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
    return acc;
#  else
    return _mm512_dpbusd_epi32(acc, x, w);
#  endif
}

/* Store block m's accumulator of sample s0 + s (if s < ns) minus the
 * zero-point compensation. */
I8_VNNI_INLINE void vnni_store(const gemm_args *a, __m512i v, size_t row0, __m512i rs, size_t smp) {
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(a->zp[smp * a->zstep]), rs));
    _mm512_mask_storeu_epi32(a->acc + smp * a->w->out + row0, row_mask(a->w->out, row0), v);
}

/* GEMM tile: MB (1..4) blocks from b0 x 6 samples xs[0..5] (the first ns
 * of them, from sample s0, are stored). Named accumulators c<m><s> (arrays
 * of vectors would be kept in memory by GCC); unused ones are removed
 * once MB is a constant. */
#define VN_DP(m, s, xv)                                                        \
    do {                                                                       \
        if (MB > (m)) c##m##s = dpbusd(c##m##s, xv, w##m);        \
    } while (0)
#define VN_SAMPLE(s, word)                                                     \
    do {                                                                       \
        const __m512i xv_ = _mm512_set1_epi32(word);                           \
        VN_DP(0, s, xv_);                                                      \
        VN_DP(1, s, xv_);                                                      \
        VN_DP(2, s, xv_);                                                      \
        VN_DP(3, s, xv_);                                                      \
    } while (0)
#define VN_STORE_BLOCK(m)                                                      \
    do {                                                                       \
        if (MB > (m)) {                                                        \
            const size_t row0_ = (b0 + (m)) * BR;                              \
            const __m512i rs_ = _mm512_load_si512((const void *)(w->rsum + row0_)); \
            vnni_store(a, c##m##0, row0_, rs_, s0);                            \
            if (ns > 1) vnni_store(a, c##m##1, row0_, rs_, s0 + 1);            \
            if (ns > 2) vnni_store(a, c##m##2, row0_, rs_, s0 + 2);            \
            if (ns > 3) vnni_store(a, c##m##3, row0_, rs_, s0 + 3);            \
            if (ns > 4) vnni_store(a, c##m##4, row0_, rs_, s0 + 4);            \
            if (ns > 5) vnni_store(a, c##m##5, row0_, rs_, s0 + 5);            \
        }                                                                      \
    } while (0)

I8_VNNI_INLINE void vnni_tile(const gemm_args *a, const uint8_t *const *xs, size_t s0, size_t ns,
                              size_t b0, const int MB) {
    const mm_int8_packed *w = a->w;
    const size_t in = a->in, full = in / GC, rem = in % GC, G = w->groups, bs = G * GBYTES;
    const int8_t *wb = w->data + b0 * bs;
    const uint8_t *x0 = xs[0], *x1 = xs[1], *x2 = xs[2], *x3 = xs[3], *x4 = xs[4], *x5 = xs[5];
    const __m512i z = _mm512_setzero_si512();
    __m512i c00 = z, c01 = z, c02 = z, c03 = z, c04 = z, c05 = z;
    __m512i c10 = z, c11 = z, c12 = z, c13 = z, c14 = z, c15 = z;
    __m512i c20 = z, c21 = z, c22 = z, c23 = z, c24 = z, c25 = z;
    __m512i c30 = z, c31 = z, c32 = z, c33 = z, c34 = z, c35 = z;
    for (size_t g = 0; g < full; g++) {
        const int8_t *q = wb + g * GBYTES;
        const __m512i w0 = _mm512_load_si512((const void *)q);
        const __m512i w1 = MB > 1 ? _mm512_load_si512((const void *)(q + bs)) : z;
        const __m512i w2 = MB > 2 ? _mm512_load_si512((const void *)(q + 2 * bs)) : z;
        const __m512i w3 = MB > 3 ? _mm512_load_si512((const void *)(q + 3 * bs)) : z;
        const size_t o = g * GC;
        VN_SAMPLE(0, ld32(x0 + o));
        VN_SAMPLE(1, ld32(x1 + o));
        VN_SAMPLE(2, ld32(x2 + o));
        VN_SAMPLE(3, ld32(x3 + o));
        VN_SAMPLE(4, ld32(x4 + o));
        VN_SAMPLE(5, ld32(x5 + o));
    }
    if (rem) {
        const int8_t *q = wb + full * GBYTES;
        const __m512i w0 = _mm512_load_si512((const void *)q);
        const __m512i w1 = MB > 1 ? _mm512_load_si512((const void *)(q + bs)) : z;
        const __m512i w2 = MB > 2 ? _mm512_load_si512((const void *)(q + 2 * bs)) : z;
        const __m512i w3 = MB > 3 ? _mm512_load_si512((const void *)(q + 3 * bs)) : z;
        const size_t o = full * GC;
        VN_SAMPLE(0, ld_tail(x0 + o, rem));
        VN_SAMPLE(1, ld_tail(x1 + o, rem));
        VN_SAMPLE(2, ld_tail(x2 + o, rem));
        VN_SAMPLE(3, ld_tail(x3 + o, rem));
        VN_SAMPLE(4, ld_tail(x4 + o, rem));
        VN_SAMPLE(5, ld_tail(x5 + o, rem));
    }
    VN_STORE_BLOCK(0);
    VN_STORE_BLOCK(1);
    VN_STORE_BLOCK(2);
    VN_STORE_BLOCK(3);
}

/* GEMV: MB (1..4) blocks from b0, one sample, two accumulator chains
 * (even and odd column groups). */
#define VN_GV(m, acc, xv, off)                                                                \
    do {                                                                                      \
        if (MB > (m))                                                                         \
            acc##m = dpbusd(acc##m, xv,                                                       \
                            _mm512_load_si512((const void *)(wb + (m) * bs + (off))));        \
    } while (0)
#define VN_GV4(acc, xv, off)                                                                  \
    do {                                                                                      \
        VN_GV(0, acc, xv, off);                                                               \
        VN_GV(1, acc, xv, off);                                                               \
        VN_GV(2, acc, xv, off);                                                               \
        VN_GV(3, acc, xv, off);                                                               \
    } while (0)
#define VN_GV_STORE(m)                                                                        \
    do {                                                                                      \
        if (MB > (m)) {                                                                       \
            const size_t row0_ = (b0 + (m)) * BR;                                             \
            vnni_store(a, _mm512_add_epi32(e##m, d##m), row0_,                                \
                       _mm512_load_si512((const void *)(w->rsum + row0_)), 0);                \
        }                                                                                     \
    } while (0)

I8_VNNI_INLINE void vnni_gemv_blocks(const gemm_args *a, size_t b0, const int MB) {
    const mm_int8_packed *w = a->w;
    const size_t in = a->in, full = in / GC, rem = in % GC, G = w->groups, bs = G * GBYTES;
    const int8_t *wb = w->data + b0 * bs;
    const uint8_t *x = a->x;
    const __m512i z = _mm512_setzero_si512();
    __m512i e0 = z, e1 = z, e2 = z, e3 = z, d0 = z, d1 = z, d2 = z, d3 = z;
    size_t g = 0;
    for (; g + 2 <= full; g += 2) {
        const __m512i xe = _mm512_set1_epi32(ld32(x + g * GC));
        const __m512i xd = _mm512_set1_epi32(ld32(x + g * GC + GC));
        VN_GV4(e, xe, g * GBYTES);
        VN_GV4(d, xd, g * GBYTES + GBYTES);
    }
    if (g < full) {
        const __m512i xe = _mm512_set1_epi32(ld32(x + g * GC));
        VN_GV4(e, xe, g * GBYTES);
    }
    if (rem) {
        const __m512i xd = _mm512_set1_epi32(ld_tail(x + full * GC, rem));
        VN_GV4(d, xd, full * GBYTES);
    }
    VN_GV_STORE(0);
    VN_GV_STORE(1);
    VN_GV_STORE(2);
    VN_GV_STORE(3);
}

#define VNNI_NS 6

I8_VNNI static void gemm_vnni(const gemm_args *a) {
    const mm_int8_packed *w = a->w;
    const size_t nb = w->blocks;
    if (a->n == 1) {
        size_t b = 0;
        for (; b + 4 <= nb; b += 4) vnni_gemv_blocks(a, b, 4);
        switch (nb - b) {
        case 3:
            vnni_gemv_blocks(a, b, 3);
            break;
        case 2:
            vnni_gemv_blocks(a, b, 2);
            break;
        case 1:
            vnni_gemv_blocks(a, b, 1);
            break;
        default:
            break;
        }
        return;
    }
    for (size_t s0 = 0; s0 < a->n; s0 += VNNI_NS) {
        size_t ns = a->n - s0 < VNNI_NS ? a->n - s0 : VNNI_NS;
        const uint8_t *xs[VNNI_NS];
        for (size_t j = 0; j < VNNI_NS; j++) xs[j] = a->x + (s0 + (j < ns ? j : ns - 1)) * a->in;
        size_t b = 0;
        for (; b + 4 <= nb; b += 4) vnni_tile(a, xs, s0, ns, b, 4);
        switch (nb - b) {
        case 3:
            vnni_tile(a, xs, s0, ns, b, 3);
            break;
        case 2:
            vnni_tile(a, xs, s0, ns, b, 2);
            break;
        case 1:
            vnni_tile(a, xs, s0, ns, b, 1);
            break;
        default:
            break;
        }
    }
}

I8_VNNI static bool quant_vnni(const float *x, size_t cnt, float inv, int32_t zp, uint8_t *q) {
    const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps((float)-zp),
                 hi = _mm512_set1_ps((float)(255 - zp));
    const __m512i vzp = _mm512_set1_epi32(zp), em = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (size_t i = 0; i < cnt; i += 16) {
        __mmask16 k = cnt - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - i)) - 1u);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(xv), em), em);
        __m512 v = _mm512_mul_ps(xv, vinv);
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        __m512i qi = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
        _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(qi));
    }
    return bad != 0;
}

I8_VNNI static bool minmax_vnni(const float *x, size_t cnt, float *mn, float *mx) {
    const __m512i em = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    __m512 vl = _mm512_set1_ps(x[0]), vh = vl;
    for (size_t i = 0; i < cnt; i += 16) {
        __mmask16 k = cnt - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - i)) - 1u);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(xv), em), em);
        vl = _mm512_mask_min_ps(vl, k, vl, xv);
        vh = _mm512_mask_max_ps(vh, k, vh, xv);
    }
    *mn = _mm512_reduce_min_ps(vl);
    *mx = _mm512_reduce_max_ps(vh);
    return bad != 0;
}

I8_VNNI static void dequant_vnni(const int32_t *acc, size_t cnt, float xs, const float *ws,
                                 const float *bias, mm_activation act, float slope, float *y) {
    const __m512 vxs = _mm512_set1_ps(xs), zero = _mm512_setzero_ps(),
                 vsl = _mm512_set1_ps(slope);
    for (size_t o = 0; o < cnt; o += 16) {
        __mmask16 k = cnt - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - o)) - 1u);
        __m512 s = _mm512_mul_ps(vxs, _mm512_maskz_loadu_ps(k, ws + o));
        __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(k, acc + o)), s);
        if (bias) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, bias + o));
        if (act == MM_ACT_RELU)
            t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, zero, _CMP_LT_OQ), zero);
        else if (act == MM_ACT_LEAKY_RELU)
            t = _mm512_mask_mov_ps(_mm512_mul_ps(vsl, t), _mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ),
                                   t);
        _mm512_mask_storeu_ps(y + o, k, t);
    }
}
#endif /* I8_X86 */

/* ---- dispatch ---------------------------------------------------------------- */

typedef struct i8_ops {
    void (*gemm)(const gemm_args *a);
    bool (*quant)(const float *x, size_t cnt, float inv, int32_t zp, uint8_t *q);
    bool (*minmax)(const float *x, size_t cnt, float *mn, float *mx);
    void (*dequant)(const int32_t *acc, size_t cnt, float xs, const float *ws, const float *b,
                    mm_activation act, float slope, float *y);
} i8_ops;

static const i8_ops ops_portable = {gemm_portable, quant_portable, minmax_portable,
                                    dequant_portable};
#if I8_X86
static const i8_ops ops_avx2 = {gemm_avx2, quant_avx2, minmax_avx2, dequant_avx2};
static const i8_ops ops_vnni = {gemm_vnni, quant_vnni, minmax_vnni, dequant_vnni};
#endif

static const i8_ops *ops(void) {
#if I8_X86
    switch (mm_int8_isa_current()) {
    case MM_INT8_ISA_AVX512VNNI:
        return &ops_vnni;
    case MM_INT8_ISA_AVX2:
        return &ops_avx2;
    case MM_INT8_ISA_PORTABLE:
        break;
    }
#endif
    return &ops_portable;
}

/* ---- public entry points -------------------------------------------------------- */

void mm_int8_gemm(const uint8_t *xq, size_t n, size_t in, int32_t x_zero_point,
                  const mm_int8_packed *w, int32_t *acc) {
    if (n == 0) return;
    gemm_args a = {xq, n, in, &x_zero_point, 0, w, acc};
    ops()->gemm(&a);
}

void mm_int8_gemm_zp_rows(const uint8_t *xq, size_t n, size_t in, const int32_t *x_zero_points,
                          const mm_int8_packed *w, int32_t *acc) {
    if (n == 0) return;
    gemm_args a = {xq, n, in, x_zero_points, 1, w, acc};
    ops()->gemm(&a);
}

static mm_status check_qparams(float scale, int32_t zp, float *inv) {
    if (!(scale > 0.0f) || !isfinite(scale))
        return mm_error(MM_E_INVALID_ARGUMENT, "quantization scale must be positive and finite, "
                                               "got %g", (double)scale);
    *inv = 1.0f / scale;
    if (!isfinite(*inv))
        return mm_error(MM_E_INVALID_ARGUMENT, "quantization scale %g is too small", (double)scale);
    if (zp < 0 || zp > 255)
        return mm_error(MM_E_INVALID_ARGUMENT, "uint8 zero point must be in [0, 255], got %d",
                        (int)zp);
    return MM_OK;
}

static mm_status nonfinite_error(void) {
    return mm_error(MM_E_NUMERIC, "NaN or infinite value in int8 quantization input "
                                  "(saturated: NaN -> zero point, +-Inf -> 255 / 0)");
}

mm_status mm_int8_quantize_rows(const float *x, size_t n, size_t in, float scale,
                                int32_t zero_point, uint8_t *xq) {
    float inv = 0.0f;
    mm_status st = check_qparams(scale, zero_point, &inv);
    if (st != MM_OK) return st;
    size_t cnt;
    if (!mm_mul_ok(n, in, &cnt)) return mm_error(MM_E_OUT_OF_RANGE, "n * in overflows");
    if (cnt == 0) return MM_OK;
    if (x == NULL || xq == NULL) return mm_null_arg(x == NULL ? "x" : "xq");
    return ops()->quant(x, cnt, inv, zero_point, xq) ? nonfinite_error() : MM_OK;
}

mm_status mm_int8_choose_params(float lo, float hi, bool symmetric, float *scale,
                                int32_t *zero_point) {
    if (scale == NULL || zero_point == NULL)
        return mm_null_arg(scale == NULL ? "scale" : "zero_point");
    if (!isfinite(lo) || !isfinite(hi))
        return mm_error(MM_E_NUMERIC, "quantization range [%g, %g] is not finite", (double)lo,
                        (double)hi);
    if (lo > hi)
        return mm_error(MM_E_INVALID_ARGUMENT, "quantization range [%g, %g] is empty",
                        (double)lo, (double)hi);
    lo = lo < 0.0f ? lo : 0.0f; /* widened to include 0; zeros are +0 */
    hi = hi > 0.0f ? hi : 0.0f;
    float s;
    int32_t zp;
    if (symmetric) {
        double m = -(double)lo > (double)hi ? -(double)lo : (double)hi;
        s = (float)(m / 127.5);
        zp = 128;
    } else {
        s = (float)(((double)hi - (double)lo) / 255.0);
        zp = 0;
    }
    if (!(s > 0.0f) || !isfinite(1.0f / s)) {
        s = 1.0f;
    } else if (!symmetric) {
        float z = nearbyintf(-lo / s);
        zp = z < 0.0f ? 0 : z > 255.0f ? 255 : (int32_t)z;
    }
    *scale = s;
    *zero_point = zp;
    return MM_OK;
}

mm_status mm_int8_quantize_dynamic(const float *x, size_t n, size_t in, bool per_row,
                                   uint8_t *xq, float *scale, int32_t *zero_point) {
    size_t cnt;
    if (!mm_mul_ok(n, in, &cnt)) return mm_error(MM_E_OUT_OF_RANGE, "n * in overflows");
    if (cnt == 0) return MM_OK;
    if (x == NULL || xq == NULL || scale == NULL || zero_point == NULL)
        return mm_null_arg(x == NULL ? "x" : xq == NULL ? "xq" : scale == NULL ? "scale"
                                                                               : "zero_point");
    const i8_ops *k = ops();
    if (!per_row) {
        float lo, hi;
        if (k->minmax(x, cnt, &lo, &hi))
            return mm_error(MM_E_NUMERIC, "NaN or infinite value in dynamic int8 quantization "
                                          "input");
        mm_status st = mm_int8_choose_params(lo, hi, false, scale, zero_point);
        if (st != MM_OK) return st;
        k->quant(x, cnt, 1.0f / *scale, *zero_point, xq);
        return MM_OK;
    }
    /* Check everything before writing anything. */
    for (size_t s = 0; s < n; s++) {
        float lo, hi;
        if (k->minmax(x + s * in, in, &lo, &hi))
            return mm_error(MM_E_NUMERIC, "NaN or infinite value in row %zu of dynamic int8 "
                                          "quantization input", s);
    }
    for (size_t s = 0; s < n; s++) {
        float lo, hi;
        k->minmax(x + s * in, in, &lo, &hi);
        mm_status st = mm_int8_choose_params(lo, hi, false, &scale[s], &zero_point[s]);
        if (st != MM_OK) return st;
        k->quant(x + s * in, in, 1.0f / scale[s], zero_point[s], xq + s * in);
    }
    return MM_OK;
}

static mm_status check_epilogue(size_t n, size_t out, const mm_int8_epilogue *e) {
    if (e == NULL || e->x_scale == NULL || e->w_scale == NULL)
        return mm_null_arg(e == NULL ? "epilogue" : e->x_scale == NULL ? "x_scale" : "w_scale");
    if (e->x_scale_count != 1 && e->x_scale_count != n)
        return mm_error(MM_E_INVALID_ARGUMENT, "x_scale_count must be 1 or n = %zu, got %zu", n,
                        e->x_scale_count);
    switch (e->act) {
    case MM_ACT_IDENTITY:
    case MM_ACT_RELU:
    case MM_ACT_LEAKY_RELU:
    case MM_ACT_TANH:
    case MM_ACT_SIGMOID:
        break;
    default:
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown activation %d", (int)e->act);
    }
    (void)out;
    return MM_OK;
}

/* y[0..cnt) of one row, fused stage + unfused activations. */
static void dequant_row(const i8_ops *k, const int32_t *acc, size_t cnt, float xs,
                        const mm_int8_epilogue *e, size_t o0, float *y) {
    bool fused = e->act == MM_ACT_IDENTITY || e->act == MM_ACT_RELU ||
                 e->act == MM_ACT_LEAKY_RELU;
    k->dequant(acc, cnt, xs, e->w_scale + o0, e->bias ? e->bias + o0 : NULL,
               fused ? e->act : MM_ACT_IDENTITY, e->slope, y);
    if (e->act == MM_ACT_TANH)
        for (size_t i = 0; i < cnt; i++) y[i] = mm_ptanhf(y[i]);
    else if (e->act == MM_ACT_SIGMOID)
        for (size_t i = 0; i < cnt; i++) y[i] = 1.0f / (1.0f + mm_pexpf(-y[i]));
}

mm_status mm_int8_dequant_bias_act(const int32_t *acc, size_t n, size_t out,
                                   const mm_int8_epilogue *e, float *y) {
    mm_status st = check_epilogue(n, out, e);
    if (st != MM_OK) return st;
    if (n == 0 || out == 0) return MM_OK;
    if (acc == NULL || y == NULL) return mm_null_arg(acc == NULL ? "acc" : "y");
    const i8_ops *k = ops();
    for (size_t s = 0; s < n; s++)
        dequant_row(k, acc + s * out, out, e->x_scale[e->x_scale_count == 1 ? 0 : s], e, 0,
                    y + s * out);
    return MM_OK;
}

#define RQ_CHUNK 256

mm_status mm_int8_requantize(const int32_t *acc, size_t n, size_t out,
                             const mm_int8_epilogue *e, float y_scale, int32_t y_zero_point,
                             uint8_t *yq) {
    mm_status st = check_epilogue(n, out, e);
    if (st != MM_OK) return st;
    float inv = 0.0f;
    st = check_qparams(y_scale, y_zero_point, &inv);
    if (st != MM_OK) return st;
    if (n == 0 || out == 0) return MM_OK;
    if (acc == NULL || yq == NULL) return mm_null_arg(acc == NULL ? "acc" : "yq");
    const i8_ops *k = ops();
    float buf[RQ_CHUNK];
    bool bad = false;
    for (size_t s = 0; s < n; s++) {
        const float xs = e->x_scale[e->x_scale_count == 1 ? 0 : s];
        for (size_t o = 0; o < out; o += RQ_CHUNK) {
            size_t cnt = out - o < RQ_CHUNK ? out - o : RQ_CHUNK;
            dequant_row(k, acc + s * out + o, cnt, xs, e, o, buf);
            bad |= k->quant(buf, cnt, inv, y_zero_point, yq + s * out + o);
        }
    }
    return bad ? nonfinite_error() : MM_OK;
}
