/* Quantized dense layer kinds: "int8" (weight-only, dynamic, static) and
 * "fp16" / "bf16" (16-bit weight storage). Each computes what the dense
 * layer it replaces computes, act(x W^T + b), from quantized weights; the
 * contract with the quantizer is quant/quant_internal.h, the file form
 * doc/FORMAT.md (sections `int8`, `fp16` and `bf16`).
 *
 * Weights (int8 kind). Symmetric (default): q = rne(w / s) clamped to
 * [-127, 127], s = max|w| / 127 per output row (per channel, default) or
 * over the whole matrix (per tensor); a row of zeros gets s = 1.
 * Asymmetric: s = (hi - lo) / 255 over the range [lo, hi] widened to
 * include 0, zero point zq = rne(-128 - lo / s) in [-128, 127],
 * q = clamp(rne(w / s) + zq, -128, 127); real weight s * (q - zq). Either
 * way |w - dq(w)| <= s / 2 (up to one float rounding). Quotients are true
 * divisions rounded half to even, so quantize(master) is reproducible by
 * anyone (the tests recompute it).
 *
 * Schemes (int8):
 *  - WEIGHT_ONLY: activations stay float; the int8 weights are widened on
 *    the fly: batches of up to 4 samples take, per sample, each row's dot
 *    product with x, times the row scale; larger batches widen tiles of
 *    rows (<= 1 MB of floats: the whole 784 x 256 layer) and call the
 *    kernel table's sgemm. Only the weights carry quantization error.
 *    Measured on 784-256-128-10 (1 thread, AVX-512 machine): ~1.1x fp32
 *    at batch 1, ~1.0x at 256, at a quarter of the memory. Quantizing the
 *    activations dynamically inside would be ~3.5x faster (that is what
 *    DYNAMIC does) and was as accurate on Fashion-MNIST (87.82% vs
 *    87.81%), but mm_quantizer.h promises float activations for this
 *    scheme, and the accuracy-aware fallback needs a scheme whose only
 *    error is in the weights: weight-only is the accurate, memory-saving
 *    scheme, DYNAMIC the fast one.
 *  - DYNAMIC: each row (sample) of x gets its own asymmetric uint8 range
 *    at run time (mm_int8_quantize_dynamic per_row), then the exact int32
 *    GEMM with per-row zero points, then dequant + bias + activation in
 *    the epilogue. Per row rather than per batch: a sample's output does
 *    not depend on the other samples of its batch (batch 1 and batch 256
 *    give the same numbers), and one outlier sample cannot coarsen
 *    everyone's scale. Measured (784-256-128-10, batch 256, rows in chunks
 *    of 64): per row 3.3x fp32, per batch 3.8x; Fashion-MNIST accuracy
 *    87.82% vs 87.79% (fp32 87.81%). Batch 1 is the same either way
 *    (~3.5x fp32). QL_DYNAMIC_PER_ROW=0 at compile time selects per batch.
 *  - STATIC: x quantized with the calibrated [in_lo, in_hi]
 *    (mm_int8_choose_params, act_symmetric selects zero point 128),
 *    saturating: inputs beyond the range clamp to the edge codes.
 *  In every int8 scheme a sample whose input holds NaN or +-Inf gets a
 *  NaN output row (the float model would propagate it too), never a
 *  silently clamped number.
 *
 * Asymmetric weights with the int8 kernels: the kernels take plain int8
 * weights q and compute sum_i (xq - zx) * q exactly; the weight zero
 * point is folded in afterwards: acc -= zq[o] * sum_i (xq[s, i] - zx[s]),
 * exact in int32 for in <= 32768 (each term below 255 * 128 * 32768, the
 * sum below 2^31): wider asymmetric layers are MM_E_UNSUPPORTED
 * (symmetric ones go to the kernels' 65536). Costs ~10% at batch 256.
 *
 * fp16 / bf16: weights stored as IEEE half / bfloat16, converted from
 * float with round-to-nearest-even in portable C (no NaN can occur: the
 * source is checked; a weight beyond the 16-bit range is refused).
 * Arithmetic in float: the same two paths as weight-only int8 (F16C for
 * half -> float in the SIMD copies).
 *
 * Master weights (cfg.keep_master): the layer keeps float W and b as its
 * mm_params "weight" and "bias" (trainable, with gradients; a pruning mask
 * of the dense layer is carried along). Forward uses the quantized
 * weights; backward uses the float master (straight-through estimator)
 * for dx and writes the parameter gradients; apply_sgd updates the master;
 * after_update (called by the optimizer after every successful step)
 * re-quantizes and re-packs (in place) from the master (784-256-128-10,
 * online SGD step of ~26 us in fp32: ~43 us with fp16 masters, ~110 us
 * with int8 dynamic, ~155 us with static — most of it the per-channel
 * re-quantization of every weight; it was ~330 us when each step
 * allocated and packed byte by byte). Without a master the layer
 * is inference-only: n_params = 0 (optimizers see nothing to train in
 * it; a model whose every layer is like that cannot get an optimizer),
 * apply_sgd does nothing, and backward still propagates dx, through the
 * dequantized weights, so layers below it can be trained.
 * Code that writes mm_params directly calls mm_layer_params_changed
 * (mm_model_set_weights and mm_optimizer_fit's restore-best do), or the
 * quantized copy would go stale.
 *
 * param_bytes counts what the layer holds: int8 weights as stored (packed
 * with its padding and row sums for dynamic/static, row-major for
 * weight-only) or 16-bit weights, the scales and zero points (out values
 * each, also per tensor: the epilogue wants one per row), the float bias,
 * and the float master weights when kept. Files store the master only
 * when keep_master: the size target (int8 file <= 27% of fp32) is for
 * models quantized without master.
 *
 * Concurrency: forward reads the layer only; its scratch is on the stack
 * for small batches (<= 8 KB) and malloc'ed otherwise. Save fills a cache
 * of the row-major int8 weights (dynamic/static keep only the packed
 * form) under a spin lock, as the sparse kind does.
 */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "model/mmfile.h"
#include "quant/quant_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  define QL_X86 1
#  include <cpuid.h>
#  include <immintrin.h>
#  define QL_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#  define QL_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define QL_INLINE static inline __attribute__((always_inline))
#else
#  define QL_INLINE static inline
#endif

/* Widest asymmetric int8 layer whose corrected accumulators fit int32. */
#define QL_ASYM_MAX_IN 32768u
/* Stack scratch of the int8 forward (bytes), and rows per int8 chunk. */
#define QL_STACK_BYTES 8192u
#ifndef QL_CHUNK_ROWS
#  define QL_CHUNK_ROWS 64u
#endif
/* Float tile of widened weights for batches > QL_GEMV_MAX_N (floats). */
#define QL_TILE_FLOATS 262144u
#define QL_GEMV_MAX_N 4u
#define QL_NAME_CAP 96
/* Dynamic activation ranges per row (1) or per chunk of rows (0, for
 * measurements; see the header comment). */
#ifndef QL_DYNAMIC_PER_ROW
#  define QL_DYNAMIC_PER_ROW 1
#endif

typedef struct qlayer {
    mm_layer base;
    mm_quant_scheme scheme;
    bool per_channel, weight_symmetric, act_symmetric, keep_master;
    float in_range[2];      /* static: calibrated input range */
    float x_scale;          /* static: activation scale and zero point */
    int32_t x_zp;
    int8_t *wq;             /* weight-only: out x in, row-major */
    mm_int8_packed *packed; /* dynamic, static */
    float *w_scale;         /* int8: out values (per tensor: repeated) */
    int32_t *w_zp;          /* int8 asymmetric: out values, else NULL */
    uint16_t *wh;           /* fp16 / bf16: out x in bit patterns */
    float *bias;            /* out; the master bias when keep_master */
    float *mw, *dw, *db;    /* master weight and gradients (keep_master) */
    bool stale;             /* after_update ran out of memory: not saved */
    atomic_int save_lock;
    int8_t *save_wq; /* file form of packed weights, built by save */
} qlayer;

#define int8_vtable mm_int8_kind
#define f16_vtable mm_f16_kind
#define bf16_vtable mm_bf16_kind

/* A layer of this file's kinds. */
static bool is_qlayer(const mm_layer *layer) {
    return layer && (layer->vt == &int8_vtable || layer->vt == &f16_vtable ||
                     layer->vt == &bf16_vtable);
}

static bool is_int8(const qlayer *q) {
    return q->scheme == MM_QUANT_INT8_WEIGHT_ONLY || q->scheme == MM_QUANT_INT8_DYNAMIC ||
           q->scheme == MM_QUANT_INT8_STATIC;
}

bool mm_qlayer_has_int8(const mm_layer *layer) {
    return (is_qlayer(layer) && is_int8((const qlayer *)layer)) || mm_layer_is_qsparse(layer);
}

static bool uses_packed(mm_quant_scheme s) {
    return s == MM_QUANT_INT8_DYNAMIC || s == MM_QUANT_INT8_STATIC;
}

static const char *scheme_text(mm_quant_scheme s) {
    switch (s) {
    case MM_QUANT_INT8_WEIGHT_ONLY: return "weight_only";
    case MM_QUANT_INT8_DYNAMIC: return "dynamic";
    case MM_QUANT_INT8_STATIC: return "static";
    case MM_QUANT_FP16: return "fp16";
    case MM_QUANT_BF16: return "bf16";
    }
    return NULL;
}

/* ---- 16-bit conversions (portable, round to nearest even) ---------------- */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* float -> IEEE half, round to nearest even; overflow gives +-Inf, NaN a
 * quiet NaN. */
static uint16_t f32_to_f16(float f) {
    const uint32_t x = f2u(f);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: Inf */
    if (ax < 0x38800000u) {                                    /* below 2^-14: subnormal */
        if (ax < 0x33000000u) return (uint16_t)sign;           /* <= 2^-25 rounds to 0 */
        const uint32_t e = ax >> 23, mant = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t m = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    const uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
    return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
}


/* Round half to even for |v| < 2^22 (the values here are clamped to
 * +-255): adding and removing 1.5 * 2^23 leaves the integer part. Plain
 * float arithmetic, so the loops vectorise without SSE4.1. */
QL_INLINE float rne_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

/* ---- weight quantization --------------------------------------------------
 * The loops are branch-free so they vectorise (re-quantization runs after
 * every optimizer step on a layer with a master), and also exist as AVX2
 * copies (same operations, same bits). */

/* Float bits -> unsigned key with the order of the floats (finite values:
 * negative ones inverted, positive ones with the sign bit set), and back. */
QL_INLINE uint32_t order_key(uint32_t b) { return b ^ (((0u - (b >> 31)) >> 1) | 0x80000000u); }
static float key_float(uint32_t k) { return u2f(k & 0x80000000u ? k ^ 0x80000000u : ~k); }

/* Range of w[0..n) widened to include 0; false if some value is NaN/Inf. */
QL_INLINE bool minmax_body(const float *restrict w, size_t n, float *lo, float *hi) {
    uint32_t bad = 0, kmin = 0x80000000u, kmax = 0x80000000u; /* the key of +0 */
    for (size_t i = 0; i < n; i++) {
        const uint32_t b = f2u(w[i]), k = order_key(b);
        bad |= (b & 0x7f800000u) + 0x00800000u;
        kmin = k < kmin ? k : kmin;
        kmax = k > kmax ? k : kmax;
    }
    *lo = key_float(kmin);
    *hi = key_float(kmax);
    return (bad & 0x80000000u) == 0;
}

/* q = clamp(rne(w / s) + zp, lo_q, 127). The scale guarantees |w / s| <=
 * 256 (choose_weight_params), so the conversions are defined. */
QL_INLINE void quant_body(const float *restrict w, size_t n, float s, int32_t zp, int32_t lo_q,
                          int8_t *restrict q) {
    for (size_t i = 0; i < n; i++) {
        int32_t t = (int32_t)rne_small(w[i] / s) + zp;
        t = t < lo_q ? lo_q : t;
        t = t > 127 ? 127 : t;
        q[i] = (int8_t)t;
    }
}

QL_INLINE void bf16_body(const float *restrict w, size_t n, uint16_t *restrict h) {
    for (size_t i = 0; i < n; i++) {
        const uint32_t x = f2u(w[i]);
        const uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
        h[i] = (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? (x >> 16) | 0x40u : r);
    }
}

static bool minmax_portable(const float *w, size_t n, float *lo, float *hi) {
    return minmax_body(w, n, lo, hi);
}
static void quant_portable(const float *w, size_t n, float s, int32_t zp, int32_t lo_q,
                           int8_t *q) {
    quant_body(w, n, s, zp, lo_q, q);
}
static void f16_portable(const float *w, size_t n, uint16_t *h) {
    for (size_t i = 0; i < n; i++) h[i] = f32_to_f16(w[i]);
}
static void bf16_portable(const float *w, size_t n, uint16_t *h) { bf16_body(w, n, h); }

#if QL_X86
static int simd_level(void);
QL_AVX2 static bool minmax_avx2(const float *w, size_t n, float *lo, float *hi) {
    return minmax_body(w, n, lo, hi);
}
QL_AVX2 static void quant_avx2(const float *w, size_t n, float s, int32_t zp, int32_t lo_q,
                               int8_t *q) {
    quant_body(w, n, s, zp, lo_q, q);
}
/* F16C rounds to nearest even like f32_to_f16 (overflow to Inf, the
 * canonical NaN to 0x7e00). */
QL_AVX2 static void f16_avx2(const float *w, size_t n, uint16_t *h) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(w + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = f32_to_f16(w[i]);
}
QL_AVX2 static void bf16_avx2(const float *w, size_t n, uint16_t *h) { bf16_body(w, n, h); }
#  define QL_DISPATCH(name, ...) \
      (simd_level() >= 1 ? name##_avx2(__VA_ARGS__) : name##_portable(__VA_ARGS__))
#else
#  define QL_DISPATCH(name, ...) name##_portable(__VA_ARGS__)
#endif

/* Scale (and zero point) of the values w[0..n) (finite, or the scale comes
 * out NaN: the layer then computes NaN, visibly). */
static void choose_weight_params(const float *w, size_t n, bool symmetric, float *scale,
                                 int32_t *zp) {
    float lo, hi;
    *zp = 0;
    if (!QL_DISPATCH(minmax, w, n, &lo, &hi)) {
        *scale = NAN;
        return;
    }
    const double span = symmetric ? fmax(-(double)lo, (double)hi) : (double)hi - (double)lo;
    const double steps = symmetric ? 127.0 : 255.0;
    float sf = (float)(span / steps);
    if (!(sf > 0.0f)) sf = span > 0.0 ? FLT_TRUE_MIN : 1.0f; /* all zero: any scale is exact */
    /* a subnormal scale may round far below span / steps: keep |w / s| in
     * range (never moves a normal scale) */
    while ((double)sf * (steps + 0.5) < span) sf = nextafterf(sf, INFINITY);
    *scale = sf;
    if (!symmetric) {
        float z = rne_small(-128.0f - lo / sf);
        z = z < -128.0f ? -128.0f : z > 127.0f ? 127.0f : z;
        *zp = (int32_t)z;
    }
}

/* q[0..n) from w with scale s and zero point zp. */
static void quantize_values(const float *w, size_t n, float s, int32_t zp, bool symmetric,
                            int8_t *q) {
    if (!(s > 0.0f)) { /* NaN: the weights were not finite */
        memset(q, 0, n);
        return;
    }
    QL_DISPATCH(quant, w, n, s, symmetric ? 0 : zp, symmetric ? -127 : -128, q);
}

/* Quantize W (out x in) into q, scales[out] and (asymmetric) zps[out]. */
static void quantize_matrix(const float *w, size_t out, size_t in, bool per_channel,
                            bool symmetric, int8_t *q, float *scales, int32_t *zps) {
    if (per_channel) {
        for (size_t o = 0; o < out; o++) {
            int32_t z;
            choose_weight_params(w + o * in, in, symmetric, &scales[o], &z);
            if (zps) zps[o] = z;
            quantize_values(w + o * in, in, scales[o], z, symmetric, q + o * in);
        }
    } else {
        float s;
        int32_t z;
        choose_weight_params(w, out * in, symmetric, &s, &z);
        quantize_values(w, out * in, s, z, symmetric, q);
        for (size_t o = 0; o < out; o++) {
            scales[o] = s;
            if (zps) zps[o] = z;
        }
    }
}

/* ---- allocation ------------------------------------------------------------ */

static void ql_free_save_cache(qlayer *q) {
    free(q->save_wq);
    q->save_wq = NULL;
}

static void ql_destroy(mm_layer *layer) {
    qlayer *q = (qlayer *)layer;
    if (!q) return;
    free(q->wq);
    mm_int8_packed_free(q->packed);
    free(q->w_scale);
    free(q->w_zp);
    free(q->wh);
    mm_free_floats(q->bias);
    mm_free_floats(q->mw);
    mm_free_floats(q->dw);
    mm_free_floats(q->db);
    for (size_t j = 0; j < q->base.n_params; j++) free(q->base.params[j].mask);
    ql_free_save_cache(q);
    free(q);
}

static const mm_layer_vtable *vtable_for(mm_quant_scheme s) {
    return s == MM_QUANT_FP16 ? &f16_vtable : s == MM_QUANT_BF16 ? &bf16_vtable : &int8_vtable;
}

/* A layer with its arrays allocated (weights not yet set). */
static mm_status ql_alloc(qlayer **res, size_t in, size_t out, mm_activation act, float slope,
                          mm_quant_scheme scheme, bool per_channel, bool weight_symmetric,
                          bool act_symmetric, bool keep_master) {
    *res = NULL;
    size_t count;
    if (!mm_mul_ok(in, out, &count) || count > SIZE_MAX / 8)
        return mm_error(MM_E_OUT_OF_RANGE, "quantized layer %zu x %zu is too large", out, in);
    qlayer *q = calloc(1, sizeof *q);
    if (!q) return mm_oom("quantized layer");
    q->base.vt = vtable_for(scheme);
    q->base.in = in;
    q->base.out = out;
    q->base.act = act;
    q->base.leaky_slope = slope;
    q->scheme = scheme;
    q->per_channel = per_channel;
    q->weight_symmetric = weight_symmetric;
    q->act_symmetric = act_symmetric;
    q->keep_master = keep_master;
    q->x_scale = 1.0f;
    atomic_init(&q->save_lock, 0);
    bool ok = (q->bias = mm_alloc_floats_zero(out)) != NULL;
    if (scheme == MM_QUANT_FP16 || scheme == MM_QUANT_BF16) {
        ok = ok && (q->wh = mm_malloc_array(count, sizeof *q->wh)) != NULL;
    } else {
        ok = ok && (q->w_scale = mm_malloc_array(out, sizeof *q->w_scale)) != NULL;
        if (!weight_symmetric) ok = ok && (q->w_zp = mm_calloc_array(out, sizeof *q->w_zp)) != NULL;
        if (scheme == MM_QUANT_INT8_WEIGHT_ONLY) ok = ok && (q->wq = malloc(count)) != NULL;
    }
    if (keep_master) {
        ok = ok && (q->mw = mm_alloc_floats_zero(count)) != NULL &&
             (q->dw = mm_alloc_floats_zero(count)) != NULL &&
             (q->db = mm_alloc_floats_zero(out)) != NULL;
        if (ok) {
            q->base.params[0] = (mm_param){"weight", q->mw, q->dw, out, in, true, NULL};
            q->base.params[1] = (mm_param){"bias", q->bias, q->db, out, 1, false, NULL};
            q->base.n_params = 2;
        }
    }
    if (!ok) {
        ql_destroy(&q->base);
        return mm_oom("quantized layer arrays");
    }
    *res = q;
    return MM_OK;
}

/* The static activation parameters from in_range. */
static mm_status set_static_range(qlayer *q, float lo, float hi) {
    if (!isfinite(lo) || !isfinite(hi))
        return mm_error(MM_E_NUMERIC, "static quantization: input range [%g, %g] is not finite",
                        (double)lo, (double)hi);
    if (lo > hi)
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "static quantization: input range [%g, %g] is empty (lo > hi)",
                        (double)lo, (double)hi);
    q->in_range[0] = lo;
    q->in_range[1] = hi;
    return mm_int8_choose_params(lo, hi, q->act_symmetric, &q->x_scale, &q->x_zp);
}

/* Derive the stored form from float weights w (out x in). Weight-only and
 * 16-bit kinds write in place and cannot fail; dynamic/static quantize into
 * temporaries and then refill the packed matrix in place (or build it the
 * first time), so a failed allocation leaves the layer as it was. */
static mm_status derive_from(qlayer *q, const float *w) {
    const size_t in = q->base.in, out = q->base.out, count = in * out;
    if (q->scheme == MM_QUANT_FP16) {
        QL_DISPATCH(f16, w, count, q->wh);
        return MM_OK;
    }
    if (q->scheme == MM_QUANT_BF16) {
        QL_DISPATCH(bf16, w, count, q->wh);
        return MM_OK;
    }
    if (!uses_packed(q->scheme)) {
        quantize_matrix(w, out, in, q->per_channel, q->weight_symmetric, q->wq, q->w_scale,
                        q->w_zp);
        return MM_OK;
    }
    int8_t *tq = malloc(count);
    float *ts = mm_malloc_array(out, sizeof *ts);
    int32_t *tz = q->w_zp ? mm_malloc_array(out, sizeof *tz) : NULL;
    mm_int8_packed *p = NULL;
    mm_status st = MM_OK;
    if (!tq || !ts || (q->w_zp && !tz)) {
        st = mm_oom("int8 weights");
    } else {
        quantize_matrix(w, out, in, q->per_channel, q->weight_symmetric, tq, ts, tz);
        if (q->packed)
            mm_int8_repack_weights(q->packed, tq); /* same shape: refill in place */
        else
            st = mm_int8_pack_weights(tq, out, in, &p);
    }
    if (st == MM_OK) {
        if (p) {
            mm_int8_packed_free(q->packed);
            q->packed = p;
        }
        memcpy(q->w_scale, ts, out * sizeof *ts);
        if (tz) memcpy(q->w_zp, tz, out * sizeof *tz);
    }
    free(tq);
    free(ts);
    free(tz);
    return st;
}

/* ---- widening and the float-arithmetic forward ------------------------------
 * (weight-only int8, fp16, bf16; also dx and to_dense). Every loop exists as
 * portable C and as SIMD copies chosen at run time (AVX2 + FMA + F16C,
 * AVX-512F). Widening is exact and identical in all. The dot products use
 * 16 lanes per row in every copy; the SIMD copies fuse multiply and add
 * (FMA: ~20% faster at batch 1), so AVX2 and AVX-512 agree bit for bit,
 * and the portable loop (multiply, then add) agrees to float rounding. */

enum { WK_I8 = 0, WK_F16 = 1, WK_BF16 = 2 };

static int wkind(const qlayer *q) {
    return q->scheme == MM_QUANT_FP16 ? WK_F16 : q->scheme == MM_QUANT_BF16 ? WK_BF16 : WK_I8;
}

/* Element i of row o as float (int8: q - zq, unscaled). */
QL_INLINE float wval(int kind, const void *base, size_t idx, int32_t z) {
    if (kind == WK_F16) return mm_f16_to_f32(((const uint16_t *)base)[idx]);
    if (kind == WK_BF16) return mm_bf16_to_f32(((const uint16_t *)base)[idx]);
    return (float)((int32_t)((const int8_t *)base)[idx] - z);
}

static const void *wbase(const qlayer *q, const int8_t *src8) {
    return q->wh ? (const void *)q->wh : (const void *)src8;
}

/* Real weights of rows [o0, o0 + rows) into dst (rows x in); int8 rows
 * come from src8 (row-major). */
static void widen_portable(const qlayer *q, const int8_t *src8, size_t o0, size_t rows,
                           float *restrict dst) {
    const size_t in = q->base.in;
    const int kind = wkind(q);
    const void *base = wbase(q, src8);
    for (size_t r = 0; r < rows; r++) {
        const size_t o = o0 + r;
        float *d = dst + r * in;
        if (kind == WK_I8) {
            const float s = q->w_scale[o];
            const int32_t z = q->w_zp ? q->w_zp[o] : 0;
            for (size_t i = 0; i < in; i++) d[i] = s * wval(WK_I8, base, o * in + i, z);
        } else if (kind == WK_F16) {
            for (size_t i = 0; i < in; i++) d[i] = wval(WK_F16, base, o * in + i, 0);
        } else {
            for (size_t i = 0; i < in; i++) d[i] = wval(WK_BF16, base, o * in + i, 0);
        }
    }
}

#define QL_LANES 16
#define QL_GEMV_ROWS 4
#define QL_GEMV_ROWS512 8

/* y[o] = sum_i w[o, i] x[i] (int8: times the row scale): 16 lanes over
 * the first in/16*16 columns, a scalar tail, then tail + lanes in order. */
QL_INLINE void gemv_portable_body(const qlayer *q, int kind, const float *restrict x,
                                  float *restrict y) {
    const size_t in = q->base.in, out = q->base.out, nb = in / QL_LANES * QL_LANES;
    const void *base = wbase(q, q->wq);
    for (size_t o = 0; o < out; o++) {
        const int32_t z = q->w_zp ? q->w_zp[o] : 0;
        float lanes[QL_LANES] = {0};
        for (size_t i = 0; i < nb; i += QL_LANES)
            for (size_t j = 0; j < QL_LANES; j++)
                lanes[j] += wval(kind, base, o * in + i + j, z) * x[i + j];
        float sum = 0.0f;
        for (size_t i = nb; i < in; i++) sum += wval(kind, base, o * in + i, z) * x[i];
        for (size_t j = 0; j < QL_LANES; j++) sum += lanes[j];
        y[o] = kind == WK_I8 ? sum * q->w_scale[o] : sum;
    }
}

static void gemv_portable(const qlayer *q, const float *x, float *y) {
    switch (wkind(q)) {
    case WK_F16: gemv_portable_body(q, WK_F16, x, y); break;
    case WK_BF16: gemv_portable_body(q, WK_BF16, x, y); break;
    default: gemv_portable_body(q, WK_I8, x, y); break;
    }
}

#if QL_X86
#  define QL_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* 16 weights from element idx on, widened to two vectors of 8. */
QL_AVX2_INLINE void conv16_avx2(int kind, const void *base, size_t idx, __m256i zv, __m256 *w0,
                                __m256 *w1) {
    if (kind == WK_I8) {
        const __m128i b = _mm_loadu_si128((const __m128i *)((const int8_t *)base + idx));
        *w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(b), zv));
        *w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)), zv));
    } else {
        const uint16_t *p = (const uint16_t *)base + idx;
        const __m128i h0 = _mm_loadu_si128((const __m128i *)p);
        const __m128i h1 = _mm_loadu_si128((const __m128i *)(p + 8));
        if (kind == WK_F16) {
            *w0 = _mm256_cvtph_ps(h0);
            *w1 = _mm256_cvtph_ps(h1);
        } else {
            *w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
            *w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
        }
    }
}

/* Four rows at a time (the last block repeats its last row, not stored). */
QL_AVX2_INLINE void gemv_avx2_body(const qlayer *q, int kind, const float *restrict x,
                                   float *restrict y) {
    const size_t in = q->base.in, out = q->base.out, nb = in / QL_LANES * QL_LANES;
    const void *base = wbase(q, q->wq);
    for (size_t o0 = 0; o0 < out; o0 += QL_GEMV_ROWS) {
        size_t row[QL_GEMV_ROWS];
        int32_t z[QL_GEMV_ROWS];
        __m256i zv[QL_GEMV_ROWS];
        __m256 a0[QL_GEMV_ROWS], a1[QL_GEMV_ROWS];
        for (size_t r = 0; r < QL_GEMV_ROWS; r++) {
            row[r] = o0 + r < out ? o0 + r : out - 1;
            z[r] = q->w_zp ? q->w_zp[row[r]] : 0;
            zv[r] = _mm256_set1_epi32(z[r]);
            a0[r] = a1[r] = _mm256_setzero_ps();
        }
        for (size_t i = 0; i < nb; i += QL_LANES) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            for (size_t r = 0; r < QL_GEMV_ROWS; r++) {
                __m256 w0, w1;
                conv16_avx2(kind, base, row[r] * in + i, zv[r], &w0, &w1);
                a0[r] = _mm256_fmadd_ps(w0, x0, a0[r]);
                a1[r] = _mm256_fmadd_ps(w1, x1, a1[r]);
            }
        }
        for (size_t r = 0; r < QL_GEMV_ROWS && o0 + r < out; r++) {
            float lanes[QL_LANES];
            _mm256_storeu_ps(lanes, a0[r]);
            _mm256_storeu_ps(lanes + 8, a1[r]);
            float sum = 0.0f;
            for (size_t i = nb; i < in; i++) sum += wval(kind, base, row[r] * in + i, z[r]) * x[i];
            for (size_t j = 0; j < QL_LANES; j++) sum += lanes[j];
            y[o0 + r] = kind == WK_I8 ? sum * q->w_scale[o0 + r] : sum;
        }
    }
}

#  define QL_AVX512 __attribute__((target("avx512f")))
#  define QL_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))

/* The same with one zmm per row (lanes 0..15 as in the AVX2 copy), 8 rows
 * at a time. */
QL_AVX512_INLINE void gemv_avx512_body(const qlayer *q, int kind, bool zp,
                                       const float *restrict x, float *restrict y) {
    const size_t in = q->base.in, out = q->base.out, nb = in / QL_LANES * QL_LANES;
    const void *base = wbase(q, q->wq);
    for (size_t o0 = 0; o0 < out; o0 += QL_GEMV_ROWS512) {
        size_t row[QL_GEMV_ROWS512];
        int32_t z[QL_GEMV_ROWS512];
        __m512i zv[QL_GEMV_ROWS512];
        __m512 a[QL_GEMV_ROWS512];
        for (size_t r = 0; r < QL_GEMV_ROWS512; r++) {
            row[r] = o0 + r < out ? o0 + r : out - 1;
            z[r] = zp ? q->w_zp[row[r]] : 0;
            zv[r] = _mm512_set1_epi32(z[r]);
            a[r] = _mm512_setzero_ps();
        }
        for (size_t i = 0; i < nb; i += QL_LANES) {
            const __m512 xv = _mm512_loadu_ps(x + i);
            for (size_t r = 0; r < QL_GEMV_ROWS512; r++) {
                const size_t idx = row[r] * in + i;
                __m512 w;
                if (kind == WK_I8) {
                    __m512i v = _mm512_cvtepi8_epi32(
                        _mm_loadu_si128((const __m128i *)((const int8_t *)base + idx)));
                    if (zp) v = _mm512_sub_epi32(v, zv[r]);
                    w = _mm512_cvtepi32_ps(v);
                } else {
                    const __m256i h =
                        _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + idx));
                    w = kind == WK_F16
                            ? _mm512_cvtph_ps(h)
                            : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
                }
                a[r] = _mm512_fmadd_ps(w, xv, a[r]);
            }
        }
        for (size_t r = 0; r < QL_GEMV_ROWS512 && o0 + r < out; r++) {
            float lanes[QL_LANES];
            _mm512_storeu_ps(lanes, a[r]);
            float sum = 0.0f;
            for (size_t i = nb; i < in; i++) sum += wval(kind, base, row[r] * in + i, z[r]) * x[i];
            for (size_t j = 0; j < QL_LANES; j++) sum += lanes[j];
            y[o0 + r] = kind == WK_I8 ? sum * q->w_scale[o0 + r] : sum;
        }
    }
}

QL_AVX512 static void gemv_avx512(const qlayer *q, const float *x, float *y) {
    switch (wkind(q)) {
    case WK_F16: gemv_avx512_body(q, WK_F16, false, x, y); break;
    case WK_BF16: gemv_avx512_body(q, WK_BF16, false, x, y); break;
    default:
        if (q->w_zp) gemv_avx512_body(q, WK_I8, true, x, y);
        else gemv_avx512_body(q, WK_I8, false, x, y);
        break;
    }
}

QL_AVX2 static void gemv_avx2(const qlayer *q, const float *x, float *y) {
    switch (wkind(q)) {
    case WK_F16: gemv_avx2_body(q, WK_F16, x, y); break;
    case WK_BF16: gemv_avx2_body(q, WK_BF16, x, y); break;
    default: gemv_avx2_body(q, WK_I8, x, y); break;
    }
}

QL_AVX2_INLINE void widen_avx2_body(const qlayer *q, int kind, const int8_t *src8, size_t o0,
                                    size_t rows, float *restrict dst) {
    const size_t in = q->base.in, nb = in / QL_LANES * QL_LANES;
    const void *base = wbase(q, src8);
    for (size_t r = 0; r < rows; r++) {
        const size_t o = o0 + r;
        float *d = dst + r * in;
        const int32_t z = kind == WK_I8 && q->w_zp ? q->w_zp[o] : 0;
        const float s = kind == WK_I8 ? q->w_scale[o] : 1.0f;
        const __m256i zv = _mm256_set1_epi32(z);
        const __m256 sv = _mm256_set1_ps(s);
        for (size_t i = 0; i < nb; i += QL_LANES) {
            __m256 w0, w1;
            conv16_avx2(kind, base, o * in + i, zv, &w0, &w1);
            if (kind == WK_I8) {
                w0 = _mm256_mul_ps(sv, w0);
                w1 = _mm256_mul_ps(sv, w1);
            }
            _mm256_storeu_ps(d + i, w0);
            _mm256_storeu_ps(d + i + 8, w1);
        }
        for (size_t i = nb; i < in; i++) {
            const float v = wval(kind, base, o * in + i, z);
            d[i] = kind == WK_I8 ? s * v : v;
        }
    }
}

QL_AVX2 static void widen_avx2(const qlayer *q, const int8_t *src8, size_t o0, size_t rows,
                               float *dst) {
    switch (wkind(q)) {
    case WK_F16: widen_avx2_body(q, WK_F16, src8, o0, rows, dst); break;
    case WK_BF16: widen_avx2_body(q, WK_BF16, src8, o0, rows, dst); break;
    default: widen_avx2_body(q, WK_I8, src8, o0, rows, dst); break;
    }
}

/* 0 portable, 1 AVX2 + F16C, 2 also AVX-512F; decided once per process.
 * MM_QL_SIMD caps it: "0" portable, "1" AVX2 (tests compare them). */
static int simd_level(void) {
    static atomic_int level = -1;
    int v = atomic_load_explicit(&level, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("MM_QL_SIMD");
        __builtin_cpu_init();
        /* F16C through cpuid: clang 14's __builtin_cpu_supports does not
         * know "f16c" (a compile error). */
        unsigned a, b, c, d;
        bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c ? 1 : 0;
        if (v && __builtin_cpu_supports("avx512f")) v = 2;
        if (env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0) && env[0] - '0' < v)
            v = env[0] - '0';
        atomic_store_explicit(&level, v, memory_order_relaxed);
    }
    return v;
}

static bool cpu_avx2(void) { return simd_level() >= 1; }
#endif

static void dequant_rows(const qlayer *q, const int8_t *src8, size_t o0, size_t rows,
                         float *dst) {
#if QL_X86
    if (cpu_avx2()) {
        widen_avx2(q, src8, o0, rows, dst);
        return;
    }
#endif
    widen_portable(q, src8, o0, rows, dst);
}

static void gemv(const qlayer *q, const float *x, float *y) {
#if QL_X86
    if (simd_level() >= 2) {
        gemv_avx512(q, x, y);
        return;
    }
    if (cpu_avx2()) {
        gemv_avx2(q, x, y);
        return;
    }
#endif
    gemv_portable(q, x, y);
}

/* The row-major int8 weights: borrowed (weight-only) or a malloc'ed copy
 * unpacked from the packed form (*owned set). NULL when out of memory. */
static const int8_t *int8_rows(const qlayer *q, int8_t **owned) {
    *owned = NULL;
    if (q->wq) return q->wq;
    int8_t *w = malloc(q->base.in * q->base.out);
    if (w) mm_int8_unpack_weights(q->packed, w);
    *owned = w;
    return w;
}

/* bias and activation over y (n x out) */
static void bias_act(const mm_layer *l, const float *b, float *y, size_t n) {
    const size_t out = l->out;
    for (size_t s = 0; s < n; s++) {
        float *row = y + s * out;
        if (l->act == MM_ACT_RELU) {
            for (size_t j = 0; j < out; j++) {
                const float v = row[j] + b[j];
                row[j] = v < 0.0f ? 0.0f : v;
            }
        } else {
            for (size_t j = 0; j < out; j++) row[j] += b[j];
            if (l->act != MM_ACT_IDENTITY) mm_activation_forward(l->act, l->leaky_slope, row, out);
        }
    }
}

static void fill_nan(float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = NAN;
}

/* Rows of widened weights per tile: up to QL_TILE_FLOATS floats. */
static size_t tile_rows(const qlayer *q) {
    size_t rows = QL_TILE_FLOATS / q->base.in;
    return rows < 1 ? 1 : rows > q->base.out ? q->base.out : rows;
}

/* Batches up to QL_GEMV_MAX_N run the batch-1 loop per sample (each reads
 * the narrow weights once); larger ones widen tiles of up to 1 MB and call
 * sgemm, whose cost then dominates the widening. */
static void float_forward(const qlayer *q, const mm_kernels *k, const float *x, float *y,
                          size_t n) {
    const size_t in = q->base.in, out = q->base.out;
    if (n <= QL_GEMV_MAX_N) {
        for (size_t s = 0; s < n; s++) gemv(q, x + s * in, y + s * out);
        bias_act(&q->base, q->bias, y, n);
        return;
    }
    const size_t rows = tile_rows(q);
    float *tile = mm_alloc_floats(rows * in);
    if (!tile) { /* forward cannot fail: the result says it went wrong */
        fill_nan(y, n * out);
        return;
    }
    for (size_t o0 = 0; o0 < out; o0 += rows) {
        const size_t r = out - o0 < rows ? out - o0 : rows;
        dequant_rows(q, q->wq, o0, r, tile);
        k->sgemm(false, true, n, r, in, 1.0f, x, in, tile, in, 0.0f, y + o0, out);
    }
    mm_free_floats(tile);
    bias_act(&q->base, q->bias, y, n);
}

/* ---- int8 forward (dynamic, static) -------------------------------------- */

static size_t align64(size_t b) { return (b + 63u) & ~(size_t)63u; }

/* Scratch bytes for r rows. */
static size_t int8_scratch_bytes(size_t r, size_t in, size_t out) {
    return align64(r * in) + align64(r * out * sizeof(int32_t)) + 3 * align64(r * 4) + 64;
}

static bool row_finite(const float *x, size_t in) {
    uint32_t acc = 0;
    for (size_t i = 0; i < in; i++) acc |= (f2u(x[i]) & 0x7f800000u) + 0x00800000u;
    return (acc & 0x80000000u) == 0;
}

/* r rows of x -> y through the int8 kernels. */
static void int8_chunk(const qlayer *q, const float *x, float *y, size_t r,
                       unsigned char *scratch) {
    const size_t in = q->base.in, out = q->base.out;
    unsigned char *p = (unsigned char *)(((uintptr_t)scratch + 63u) & ~(uintptr_t)63u);
    uint8_t *xq = p;
    p += align64(r * in);
    int32_t *acc = (int32_t *)(void *)p;
    p += align64(r * out * sizeof(int32_t));
    float *xs = (float *)(void *)p;
    p += align64(r * 4);
    int32_t *xz = (int32_t *)(void *)p;
    p += align64(r * 4);
    uint8_t *bad = p;
    memset(bad, 0, r);
    bool any_bad = false;
    const bool dyn = q->scheme == MM_QUANT_INT8_DYNAMIC;
    if (dyn && !QL_DYNAMIC_PER_ROW &&
        mm_int8_quantize_dynamic(x, r, in, false, xq, xs, xz) == MM_OK) {
        for (size_t s = 1; s < r; s++) {
            xs[s] = xs[0];
            xz[s] = xz[0];
        }
        mm_int8_gemm(xq, r, in, xz[0], q->packed, acc);
    } else if (dyn) {
        if (mm_int8_quantize_dynamic(x, r, in, true, xq, xs, xz) != MM_OK) {
            for (size_t s = 0; s < r; s++) {
                if (mm_int8_quantize_dynamic(x + s * in, 1, in, true, xq + s * in, xs + s,
                                             xz + s) == MM_OK)
                    continue;
                bad[s] = 1;
                any_bad = true;
                memset(xq + s * in, 0, in);
                xs[s] = 1.0f;
                xz[s] = 0;
            }
        }
        mm_int8_gemm_zp_rows(xq, r, in, xz, q->packed, acc);
    } else {
        if (mm_int8_quantize_rows(x, r, in, q->x_scale, q->x_zp, xq) != MM_OK) {
            for (size_t s = 0; s < r; s++)
                if (!row_finite(x + s * in, in)) bad[s] = 1, any_bad = true;
        }
        for (size_t s = 0; s < r; s++) xz[s] = q->x_zp;
        mm_int8_gemm(xq, r, in, q->x_zp, q->packed, acc);
    }
    if (q->w_zp) {
        /* fold the weight zero points in: acc -= zq[o] * sum_i (xq - zx) */
        for (size_t s = 0; s < r; s++) {
            /* int32 is exact here: sum(xq) <= 255 * 32768, |zq * rs| and
             * |acc| <= 255 * 128 * 32768 each, the result < 2^31 */
            const uint8_t *restrict row = xq + s * in;
            int32_t sum = 0;
            for (size_t i = 0; i < in; i++) sum += row[i];
            const int32_t rs = sum - (int32_t)in * xz[s];
            int32_t *restrict a = acc + s * out;
            const int32_t *restrict zq = q->w_zp;
            for (size_t o = 0; o < out; o++) a[o] -= zq[o] * rs;
        }
    }
    const mm_int8_epilogue e = {dyn ? xs : &q->x_scale, dyn ? r : 1, q->w_scale, q->bias,
                                q->base.act, q->base.leaky_slope};
    (void)mm_int8_dequant_bias_act(acc, r, out, &e, y);
    if (any_bad)
        for (size_t s = 0; s < r; s++)
            if (bad[s]) fill_nan(y + s * out, out);
}

static void int8_forward(const qlayer *q, const float *x, float *y, size_t n) {
    const size_t in = q->base.in, out = q->base.out;
    const size_t chunk = n < QL_CHUNK_ROWS ? n : QL_CHUNK_ROWS;
    _Alignas(64) unsigned char stack[QL_STACK_BYTES];
    size_t rows = chunk;
    unsigned char *scratch = stack, *heap = NULL;
    if (int8_scratch_bytes(rows, in, out) > sizeof stack) {
        heap = malloc(int8_scratch_bytes(rows, in, out));
        if (heap) {
            scratch = heap;
        } else if (int8_scratch_bytes(1, in, out) <= sizeof stack) {
            rows = 1; /* slower, but right */
        } else {
            fill_nan(y, n * out);
            return;
        }
    }
    for (size_t s0 = 0; s0 < n; s0 += rows) {
        const size_t r = n - s0 < rows ? n - s0 : rows;
        int8_chunk(q, x + s0 * in, y + s0 * out, r, scratch);
    }
    free(heap);
}

static void ql_forward(const mm_layer *layer, const mm_kernels *k, const float *const *xs, float *y,
                       size_t n) {
    const float *x = xs[0];
    const qlayer *q = (const qlayer *)layer;
    if (n == 0) return;
    if (uses_packed(q->scheme))
        int8_forward(q, x, y, n);
    else
        float_forward(q, k, x, y, n);
}

/* ---- training ---------------------------------------------------------------- */

static void bias_grad(float *db, const float *dz, size_t n, size_t out, float alpha,
                      bool accumulate) {
    for (size_t i = 0; i < n; i++) {
        const float *row = dz + i * out;
        if (i == 0 && !accumulate)
            for (size_t j = 0; j < out; j++) db[j] = alpha * row[j];
        else
            for (size_t j = 0; j < out; j++) db[j] += alpha * row[j];
    }
}

/* dx = dZ Wdq through tiles of dequantized rows. */
static void dx_dequant(const qlayer *q, const mm_kernels *k, const float *dz, float *dx,
                       size_t n) {
    const size_t in = q->base.in, out = q->base.out;
    const size_t rows = tile_rows(q);
    int8_t *owned = NULL;
    const int8_t *w8 = is_int8(q) ? int8_rows(q, &owned) : NULL;
    float *tile = mm_alloc_floats(rows * in);
    if (!tile || (is_int8(q) && !w8)) {
        fill_nan(dx, n * in); /* the optimizer refuses a NaN gradient */
    } else {
        for (size_t o0 = 0; o0 < out; o0 += rows) {
            const size_t r = out - o0 < rows ? out - o0 : rows;
            dequant_rows(q, w8, o0, r, tile);
            k->sgemm(false, false, n, in, r, 1.0f, dz + o0, out, tile, in, o0 ? 1.0f : 0.0f, dx,
                     in);
        }
    }
    mm_free_floats(tile);
    free(owned);
}

/* Straight-through: the float master stands in for the quantized weights. */
static void ql_backward(mm_layer *layer, const mm_kernels *k, const float *const *xs, const float *y,
                        float *dy, float *const *dxs, size_t n, bool param_grads) {
    const float *x = xs[0];
    float *dx = dxs[0];
    qlayer *q = (qlayer *)layer;
    const size_t in = layer->in, out = layer->out;
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * out);
    if (dx) {
        if (q->mw) {
            if (n == 1)
                k->sgemv(true, out, in, 1.0f, q->mw, in, dy, 0.0f, dx);
            else
                k->sgemm(false, false, n, in, out, 1.0f, dy, out, q->mw, in, 0.0f, dx, in);
        } else {
            dx_dequant(q, k, dy, dx, n);
        }
    }
    if (param_grads && q->mw) {
        bias_grad(q->db, dy, n, out, 1.0f, false);
        k->sgemm(true, false, out, in, n, 1.0f, dy, out, x, in, 0.0f, q->dw, in);
    }
}

static void ql_apply_sgd(mm_layer *layer, const mm_kernels *k, const float *x,
                         const float *delta, size_t n, float neg_lr) {
    qlayer *q = (qlayer *)layer;
    if (!q->mw) return; /* inference-only: nothing to train */
    const size_t in = layer->in, out = layer->out;
    if (n == 1)
        k->sger(out, in, neg_lr, delta, x, q->mw, in);
    else
        k->sgemm(true, false, out, in, n, neg_lr, delta, out, x, in, 1.0f, q->mw, in);
    bias_grad(q->bias, delta, n, out, neg_lr, true);
}

/* Re-quantize (and re-pack) from the master after an optimizer step. */
static void ql_after_update(mm_layer *layer) {
    qlayer *q = (qlayer *)layer;
    if (!q->mw) return;
    ql_free_save_cache(q); /* exclusive access: no save is borrowing it */
    q->stale = derive_from(q, q->mw) != MM_OK;
}

static size_t ql_param_bytes(const mm_layer *layer) {
    const qlayer *q = (const qlayer *)layer;
    const size_t in = layer->in, out = layer->out;
    size_t b = out * sizeof(float); /* bias */
    if (is_int8(q)) {
        b += q->packed ? mm_int8_packed_bytes(q->packed) : in * out;
        b += out * sizeof(float);
        if (q->w_zp) b += out * sizeof(int32_t);
    } else {
        b += in * out * sizeof(uint16_t);
    }
    if (q->mw) b += in * out * sizeof(float);
    return b;
}

/* ---- clone ------------------------------------------------------------------- */

static mm_status copy_mask(const mm_param *src, mm_param *dst, const char *what) {
    if (!src->mask) return MM_OK;
    const size_t n = mm_param_count(src);
    dst->mask = malloc(n ? n : 1);
    if (!dst->mask) return mm_oom(what);
    memcpy(dst->mask, src->mask, n);
    return MM_OK;
}

static mm_status ql_clone(const mm_layer *layer, mm_layer **res) {
    const qlayer *s = (const qlayer *)layer;
    *res = NULL;
    qlayer *q;
    mm_status st = ql_alloc(&q, layer->in, layer->out, layer->act, layer->leaky_slope, s->scheme,
                            s->per_channel, s->weight_symmetric, s->act_symmetric,
                            s->keep_master);
    if (st != MM_OK) return st;
    const size_t in = layer->in, out = layer->out, count = in * out;
    memcpy(q->in_range, s->in_range, sizeof q->in_range);
    q->x_scale = s->x_scale;
    q->x_zp = s->x_zp;
    q->stale = s->stale;
    memcpy(q->bias, s->bias, out * sizeof(float));
    if (s->w_scale) memcpy(q->w_scale, s->w_scale, out * sizeof(float));
    if (s->w_zp) memcpy(q->w_zp, s->w_zp, out * sizeof(int32_t));
    if (s->wq) memcpy(q->wq, s->wq, count);
    if (s->wh) memcpy(q->wh, s->wh, count * sizeof(uint16_t));
    if (s->mw) {
        memcpy(q->mw, s->mw, count * sizeof(float));
        for (size_t j = 0; j < 2 && st == MM_OK; j++)
            st = copy_mask(&layer->params[j], &q->base.params[j], "pruning mask");
    }
    if (st == MM_OK && s->packed) {
        int8_t *tmp = malloc(count);
        if (!tmp) {
            st = mm_oom("int8 weights");
        } else {
            mm_int8_unpack_weights(s->packed, tmp);
            st = mm_int8_pack_weights(tmp, out, in, &q->packed);
            free(tmp);
        }
    }
    if (st != MM_OK) {
        ql_destroy(&q->base);
        return st;
    }
    *res = &q->base;
    return MM_OK;
}

/* ---- conversions with the dense kind ----------------------------------------- */

mm_status mm_qlayer_from_dense(const mm_layer *dense, const mm_qlayer_config *cfg,
                               mm_layer **out_layer) {
    if (!out_layer) return mm_null_arg("out");
    *out_layer = NULL;
    if (!dense) return mm_null_arg("dense");
    if (!cfg) return mm_null_arg("cfg");
    const size_t in = dense->in, out = dense->out;
    if (mm_layer_has(dense, MM_CAP_QUANTIZED))
        return mm_error(MM_E_UNSUPPORTED, "layer is already quantized (%s)", dense->vt->kind);
    const mm_param *pw = &dense->params[0], *pb = &dense->params[1];
    if (dense->n_params < 2 || strcmp(pw->name, "weight") != 0 || pw->rows != out ||
        pw->cols != in || strcmp(pb->name, "bias") != 0 || pb->rows != out || pb->cols != 1)
        return mm_error(MM_E_UNSUPPORTED,
                        "a %s layer cannot be quantized (needs dense weight [out, in] and bias)",
                        dense->vt->kind);
    const mm_quant_scheme scheme = cfg->scheme;
    if (!scheme_text(scheme))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization scheme %d", (int)scheme);
    if (scheme != MM_QUANT_FP16 && scheme != MM_QUANT_BF16) {
        if (in > MM_INT8_MAX_IN)
            return mm_error(MM_E_UNSUPPORTED,
                            "int8 layers take at most %u inputs (exact int32 accumulation), "
                            "this one has %zu",
                            MM_INT8_MAX_IN, in);
        if (!cfg->weight_symmetric && in > QL_ASYM_MAX_IN)
            return mm_error(MM_E_UNSUPPORTED,
                            "asymmetric int8 weights take at most %u inputs, this layer has %zu; "
                            "use symmetric weights",
                            QL_ASYM_MAX_IN, in);
    }
    for (int j = 0; j < 2; j++) {
        const mm_param *p = &dense->params[j];
        const size_t cnt = mm_param_count(p);
        for (size_t i = 0; i < cnt; i++)
            if (!isfinite(p->data[i]))
                return mm_error(MM_E_NUMERIC, "%s[%zu] is %g: cannot quantize NaN or infinity",
                                p->name, i, (double)p->data[i]);
    }
    const size_t count = in * out;
    const float lim = scheme == MM_QUANT_FP16 ? 65519.996f : scheme == MM_QUANT_BF16 ? 3.3895e38f
                                                                                     : INFINITY;
    for (size_t i = 0; i < count; i++)
        if (fabsf(pw->data[i]) > lim)
            return mm_error(MM_E_UNSUPPORTED, "weight[%zu] = %g is beyond the %s range", i,
                            (double)pw->data[i], scheme_text(scheme));
    qlayer *q;
    mm_status st = ql_alloc(&q, in, out, dense->act, dense->leaky_slope, scheme, cfg->per_channel,
                            cfg->weight_symmetric, cfg->act_symmetric, cfg->keep_master);
    if (st != MM_OK) return st;
    if (scheme == MM_QUANT_INT8_STATIC) st = set_static_range(q, cfg->in_lo, cfg->in_hi);
    if (st == MM_OK) {
        memcpy(q->bias, pb->data, out * sizeof(float));
        if (q->mw) {
            memcpy(q->mw, pw->data, count * sizeof(float));
            for (size_t j = 0; j < 2 && st == MM_OK; j++)
                st = copy_mask(&dense->params[j], &q->base.params[j], "pruning mask");
        }
    }
    if (st == MM_OK) st = derive_from(q, pw->data);
    if (st != MM_OK) {
        ql_destroy(&q->base);
        return st;
    }
    *out_layer = &q->base;
    return MM_OK;
}

mm_status mm_qlayer_to_dense(const mm_layer *qlayer_in, mm_layer **out_layer) {
    if (!out_layer) return mm_null_arg("out");
    *out_layer = NULL;
    if (!qlayer_in) return mm_null_arg("qlayer");
    if (!mm_layer_has(qlayer_in, MM_CAP_QUANTIZED))
        return mm_error(MM_E_INVALID_ARGUMENT, "layer kind %s is not quantized",
                        qlayer_in->vt->kind);
    const qlayer *q = (const qlayer *)qlayer_in;
    const size_t in = qlayer_in->in, out = qlayer_in->out;
    mm_layer *d = NULL;
    mm_status st = mm_dense_create(&d, in, out, qlayer_in->act, qlayer_in->leaky_slope,
                                   MM_INIT_AUTO, NULL);
    if (st != MM_OK) return st;
    float *w = d->params[0].data;
    if (mm_layer_is_qsparse(qlayer_in)) {
        mm_qsparse_effective_weights(qlayer_in, true, w, d->params[1].data);
        *out_layer = d;
        return MM_OK;
    }
    if (q->mw) {
        memcpy(w, q->mw, in * out * sizeof(float));
        for (size_t j = 0; j < 2 && st == MM_OK; j++)
            st = copy_mask(&qlayer_in->params[j], &d->params[j], "pruning mask");
    } else {
        int8_t *owned = NULL;
        const int8_t *w8 = is_int8(q) ? int8_rows(q, &owned) : NULL;
        if (is_int8(q) && !w8) st = mm_oom("int8 weights");
        else dequant_rows(q, w8, 0, out, w);
        free(owned);
    }
    memcpy(d->params[1].data, q->bias, out * sizeof(float));
    if (st != MM_OK) {
        d->vt->destroy(d);
        return st;
    }
    *out_layer = d;
    return MM_OK;
}

/* ---- model files ---------------------------------------------------------------- */

static void tname(char name[QL_NAME_CAP], size_t index, const char *suffix) {
    snprintf(name, QL_NAME_CAP, "layers.%zu.%s", index, suffix);
}

static mm_status check_finite(const float *v, size_t n, size_t index, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return mm_error(MM_E_NUMERIC,
                            "layer %zu %s[%zu] is not finite; refusing to save a model that "
                            "could not be loaded",
                            index, what, i);
    return MM_OK;
}

/* The row-major int8 weights for the file (see the header comment). */
static mm_status save_rows(qlayer *q, const int8_t **rows) {
    if (q->wq) {
        *rows = q->wq;
        return MM_OK;
    }
    int expected = 0;
    while (!atomic_compare_exchange_weak_explicit(&q->save_lock, &expected, 1,
                                                  memory_order_acquire, memory_order_relaxed))
        expected = 0;
    mm_status st = MM_OK;
    if (!q->save_wq) {
        int8_t *w = malloc(q->base.in * q->base.out);
        if (w) mm_int8_unpack_weights(q->packed, w);
        else st = mm_oom("int8 weights for saving");
        q->save_wq = w;
    }
    *rows = q->save_wq;
    atomic_store_explicit(&q->save_lock, 0, memory_order_release);
    return st;
}

static mm_status add_bool(json_t *entry, const char *key, bool v) {
    return json_object_set_new(entry, key, json_boolean(v)) == 0 ? MM_OK
                                                                 : mm_oom("architecture entry");
}

static mm_status ql_save(const mm_layer *layer, size_t index, json_t *entry, mm_file_writer *w) {
    /* the save cache is the only thing save writes (see save_rows) */
    qlayer *q = (qlayer *)(uintptr_t)layer;
    const size_t in = layer->in, out = layer->out;
    if (q->stale)
        return mm_error(MM_E_STATE,
                        "layer %zu: re-quantization after the last update ran out of memory; "
                        "train another step or re-quantize before saving",
                        index);
    mm_status st = check_finite(q->bias, out, index, "bias");
    if (st == MM_OK && q->mw) st = check_finite(q->mw, in * out, index, "weight");
    if (st == MM_OK && q->w_scale) {
        st = check_finite(q->w_scale, out, index, "weight_scale");
        for (size_t o = 0; st == MM_OK && o < out; o++)
            if (!(q->w_scale[o] > 0.0f))
                st = mm_error(MM_E_NUMERIC, "layer %zu weight_scale[%zu] is not positive", index,
                              o);
    }
    if (st != MM_OK) return st;
    if (is_int8(q)) {
        st = json_object_set_new(entry, "scheme", json_string(scheme_text(q->scheme))) == 0
                 ? MM_OK
                 : mm_oom("architecture entry");
        if (st == MM_OK) st = add_bool(entry, "per_channel", q->per_channel);
        if (st == MM_OK) st = add_bool(entry, "weight_symmetric", q->weight_symmetric);
        if (st == MM_OK) st = add_bool(entry, "act_symmetric", q->act_symmetric);
    }
    if (st == MM_OK) st = add_bool(entry, "keep_master", q->mw != NULL);
    if (st != MM_OK) return st;

    char name[QL_NAME_CAP];
    const uint64_t s_w[2] = {out, in}, s_b[1] = {out}, s_s[1] = {q->per_channel ? out : 1},
                   s_r[1] = {2};
    if (is_int8(q)) {
        const int8_t *rows = NULL;
        st = save_rows(q, &rows);
        if (st == MM_OK) {
            tname(name, index, "weight_q");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_I8, rows, s_w, 2);
        }
        if (st == MM_OK) {
            tname(name, index, "weight_scale");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, q->w_scale, s_s, 1);
        }
        if (st == MM_OK && q->w_zp) {
            tname(name, index, "weight_zero_point");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_I32, q->w_zp, s_s, 1);
        }
        if (st == MM_OK && q->scheme == MM_QUANT_INT8_STATIC) {
            tname(name, index, "input_range");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, q->in_range, s_r, 1);
        }
    } else {
        tname(name, index, "weight_f16");
        st = mm_file_writer_add_tensor(w, name,
                                       q->scheme == MM_QUANT_FP16 ? MM_DTYPE_F16 : MM_DTYPE_BF16,
                                       q->wh, s_w, 2);
    }
    if (st == MM_OK) {
        tname(name, index, "bias");
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, q->bias, s_b, 1);
    }
    if (st == MM_OK && q->mw) {
        tname(name, index, "weight");
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, q->mw, s_w, 2);
        if (st == MM_OK && layer->params[0].mask) {
            tname(name, index, "weight_mask");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U8, layer->params[0].mask, s_w, 2);
        }
        if (st == MM_OK && layer->params[1].mask) {
            tname(name, index, "bias_mask");
            st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U8, layer->params[1].mask, s_b, 1);
        }
    }
    return st;
}

/* ---- the int8 form for other formats (quant_internal.h) ------------------------ */

mm_status mm_qlayer_int8_describe(const mm_layer *layer, mm_qlayer_int8 *d) {
    if (!layer) return mm_null_arg("layer");
    if (!d) return mm_null_arg("d");
    qlayer *q = (qlayer *)(uintptr_t)layer; /* save_rows fills the save cache only */
    if (mm_layer_is_qsparse(layer)) return mm_qsparse_int8_describe(layer, d);
    if (!is_qlayer(layer) || !is_int8(q))
        return mm_error(MM_E_INVALID_ARGUMENT, "layer kind %s is not int8", layer->vt->kind);
    if (q->stale)
        return mm_error(MM_E_STATE,
                        "re-quantization after the last update ran out of memory; train another "
                        "step or re-quantize first");
    const int8_t *rows = NULL;
    mm_status st = save_rows(q, &rows);
    if (st != MM_OK) return st;
    *d = (mm_qlayer_int8){.scheme = q->scheme,
                          .per_channel = q->per_channel,
                          .weight_symmetric = q->weight_symmetric,
                          .act_symmetric = q->act_symmetric,
                          .weight_q = rows,
                          .weight_scale = q->w_scale,
                          .weight_zp = q->w_zp,
                          .bias = q->bias,
                          .in_lo = q->in_range[0],
                          .in_hi = q->in_range[1],
                          .x_scale = q->x_scale,
                          .x_zp = q->x_zp};
    return MM_OK;
}

mm_status mm_qlayer_int8_create(const mm_qlayer_int8 *d, size_t in, size_t out,
                                mm_activation act, float slope, mm_layer **res) {
    if (!res) return mm_null_arg("res");
    *res = NULL;
    if (!d || !d->weight_q || !d->weight_scale || !d->bias || (!d->weight_symmetric && !d->weight_zp))
        return mm_null_arg("int8 layer description");
    if (d->scheme != MM_QUANT_INT8_WEIGHT_ONLY && d->scheme != MM_QUANT_INT8_DYNAMIC &&
        d->scheme != MM_QUANT_INT8_STATIC)
        return mm_error(MM_E_INVALID_ARGUMENT, "scheme %d is not an int8 scheme", (int)d->scheme);
    const unsigned lim = d->weight_symmetric ? MM_INT8_MAX_IN : QL_ASYM_MAX_IN;
    if (in > lim)
        return mm_error(MM_E_UNSUPPORTED, "int8 layer with %zu inputs (at most %u)", in, lim);
    const size_t ns = d->per_channel ? out : 1;
    for (size_t o = 0; o < ns; o++) {
        if (!(d->weight_scale[o] > 0.0f) || !isfinite(d->weight_scale[o]))
            return mm_error(MM_E_FORMAT, "weight scale %zu is %g (scales must be finite and > 0)",
                            o, (double)d->weight_scale[o]);
        if (d->weight_zp && !d->weight_symmetric &&
            (d->weight_zp[o] < -128 || d->weight_zp[o] > 127))
            return mm_error(MM_E_FORMAT, "weight zero point %zu is %d (outside [-128, 127])", o,
                            (int)d->weight_zp[o]);
    }
    for (size_t o = 0; o < out; o++)
        if (!isfinite(d->bias[o]))
            return mm_error(MM_E_NUMERIC, "bias[%zu] is not finite", o);
    mm_status st;
    qlayer *q;
    st = ql_alloc(&q, in, out, act, slope, d->scheme, d->per_channel, d->weight_symmetric,
                  d->act_symmetric, false);
    if (st != MM_OK) return st;
    memcpy(q->bias, d->bias, out * sizeof(float));
    for (size_t o = 0; o < out; o++) {
        q->w_scale[o] = d->weight_scale[d->per_channel ? o : 0];
        if (q->w_zp) q->w_zp[o] = d->weight_zp[d->per_channel ? o : 0];
    }
    if (d->scheme == MM_QUANT_INT8_STATIC) st = set_static_range(q, d->in_lo, d->in_hi);
    if (st == MM_OK) {
        if (q->wq) memcpy(q->wq, d->weight_q, in * out);
        else st = mm_int8_pack_weights(d->weight_q, out, in, &q->packed);
    }
    if (st != MM_OK) {
        ql_destroy(&q->base);
        return st;
    }
    *res = &q->base;
    return MM_OK;
}


/* Presence, dtype and exact shape of a tensor, before anything is
 * allocated for it. */
static mm_status expect_tensor(const mm_file *f, const char *name, mm_dtype dtype,
                               const uint64_t *shape, size_t ndim) {
    mm_dtype dt;
    uint64_t sh[MM_FILE_MAX_DIMS];
    size_t nd;
    mm_status st = mm_file_tensor_info(f, name, &dt, sh, &nd);
    if (st == MM_E_NOT_FOUND) return mm_error(MM_E_FORMAT, "tensor %s is missing", name);
    if (st != MM_OK) return mm_error_prefix(MM_E_FORMAT, "tensor %s", name);
    if (dt != dtype)
        return mm_error(MM_E_FORMAT, "tensor %s has dtype %s, expected %s", name,
                        mm_dtype_name(dt), mm_dtype_name(dtype));
    bool same = nd == ndim;
    for (size_t i = 0; same && i < ndim; i++) same = sh[i] == shape[i];
    if (!same) {
        if (ndim == 2)
            return mm_error(MM_E_FORMAT, "tensor %s has the wrong shape (expected [%llu, %llu])",
                            name, (unsigned long long)shape[0], (unsigned long long)shape[1]);
        return mm_error(MM_E_FORMAT, "tensor %s has the wrong shape (expected [%llu])", name,
                        (unsigned long long)shape[0]);
    }
    return MM_OK;
}

static mm_status entry_bool(const json_t *entry, size_t index, const char *key, bool *out) {
    const json_t *v = json_object_get(entry, key);
    if (!v || !json_is_boolean(v))
        return mm_error(MM_E_FORMAT, "architecture: layer %zu: \"%s\" must be true or false",
                        index, key);
    *out = json_is_true(v);
    return MM_OK;
}

/* Masks of the master (U8, the parameter's shape, 0/1, masked values 0). */
static mm_status load_masks(const mm_file *f, size_t index, qlayer *q) {
    for (size_t j = 0; j < 2; j++) {
        mm_param *p = &q->base.params[j];
        char name[QL_NAME_CAP];
        snprintf(name, sizeof name, "layers.%zu.%s_mask", index, p->name);
        if (!mm_file_has_tensor(f, name)) continue;
        const uint64_t shape[2] = {p->rows, p->cols};
        const size_t ndim = j == 0 ? 2 : 1;
        mm_status st = expect_tensor(f, name, MM_DTYPE_U8, shape, ndim);
        if (st != MM_OK) return st;
        const size_t n = mm_param_count(p);
        p->mask = malloc(n ? n : 1);
        if (!p->mask) return mm_oom("pruning mask");
        st = mm_file_read_tensor(f, name, MM_DTYPE_U8, shape, ndim, p->mask);
        if (st != MM_OK) return st;
        for (size_t i = 0; i < n; i++) {
            if (p->mask[i] > 1)
                return mm_error(MM_E_FORMAT, "tensor %s: element %zu is %u (a mask holds 0 or 1)",
                                name, i, (unsigned)p->mask[i]);
            if (!p->mask[i] && p->data[i] != 0.0f)
                return mm_error(MM_E_FORMAT,
                                "tensor %s: element %zu is pruned but layers.%zu.%s[%zu] is %g",
                                name, i, index, p->name, i, (double)p->data[i]);
        }
    }
    return MM_OK;
}

static mm_status read_checked_f32(const mm_file *f, const char *name, const uint64_t *shape,
                                  size_t ndim, float *dst, size_t n) {
    mm_status st = mm_file_read_tensor(f, name, MM_DTYPE_F32, shape, ndim, dst);
    if (st != MM_OK) return st;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return mm_error(MM_E_NUMERIC, "tensor %s: element %zu is not finite", name, i);
    return MM_OK;
}

/* Everything after the entry is parsed: check tensors, allocate, read. */
static mm_status load_common(const mm_file *f, size_t index, size_t in, size_t out,
                             mm_activation act, float slope, mm_quant_scheme scheme,
                             bool per_channel, bool wsym, bool asym_act, bool master,
                             mm_layer **res) {
    char name[QL_NAME_CAP];
    const uint64_t s_w[2] = {out, in}, s_b[1] = {out}, s_s[1] = {per_channel ? out : 1},
                   s_r[1] = {2};
    const bool i8 = scheme != MM_QUANT_FP16 && scheme != MM_QUANT_BF16;
    mm_status st = MM_OK;
    if (i8) {
        if (in > (wsym ? MM_INT8_MAX_IN : QL_ASYM_MAX_IN))
            return mm_error(MM_E_UNSUPPORTED, "layer %zu: int8 layer with %zu inputs (at most %u)",
                            index, in, wsym ? MM_INT8_MAX_IN : QL_ASYM_MAX_IN);
        tname(name, index, "weight_q");
        st = expect_tensor(f, name, MM_DTYPE_I8, s_w, 2);
        tname(name, index, "weight_scale");
        if (st == MM_OK) st = expect_tensor(f, name, MM_DTYPE_F32, s_s, 1);
        tname(name, index, "weight_zero_point");
        if (st == MM_OK && !wsym) st = expect_tensor(f, name, MM_DTYPE_I32, s_s, 1);
        tname(name, index, "input_range");
        if (st == MM_OK && scheme == MM_QUANT_INT8_STATIC)
            st = expect_tensor(f, name, MM_DTYPE_F32, s_r, 1);
    } else {
        tname(name, index, "weight_f16");
        st = expect_tensor(f, name, scheme == MM_QUANT_FP16 ? MM_DTYPE_F16 : MM_DTYPE_BF16, s_w,
                           2);
    }
    tname(name, index, "bias");
    if (st == MM_OK) st = expect_tensor(f, name, MM_DTYPE_F32, s_b, 1);
    tname(name, index, "weight");
    if (st == MM_OK && master) st = expect_tensor(f, name, MM_DTYPE_F32, s_w, 2);
    if (st != MM_OK) return st;

    /* allocations are now bounded by the file's size */
    qlayer *q;
    st = ql_alloc(&q, in, out, act, slope, scheme, per_channel, wsym, asym_act, master);
    if (st != MM_OK) return st;
    const size_t count = in * out;
    int8_t *tmp = NULL;
    tname(name, index, "bias");
    st = read_checked_f32(f, name, s_b, 1, q->bias, out);
    if (st == MM_OK && master) {
        tname(name, index, "weight");
        st = read_checked_f32(f, name, s_w, 2, q->mw, count);
        if (st == MM_OK) st = load_masks(f, index, q);
    }
    if (st == MM_OK && i8) {
        const size_t ns = per_channel ? out : 1;
        tname(name, index, "weight_scale");
        st = read_checked_f32(f, name, s_s, 1, q->w_scale, ns);
        for (size_t o = 0; st == MM_OK && o < ns; o++)
            if (!(q->w_scale[o] > 0.0f))
                st = mm_error(MM_E_FORMAT, "tensor %s: element %zu is %g (scales must be > 0)",
                              name, o, (double)q->w_scale[o]);
        for (size_t o = ns; st == MM_OK && o < out; o++) q->w_scale[o] = q->w_scale[0];
        if (st == MM_OK && q->w_zp) {
            tname(name, index, "weight_zero_point");
            st = mm_file_read_tensor(f, name, MM_DTYPE_I32, s_s, 1, q->w_zp);
            for (size_t o = 0; st == MM_OK && o < ns; o++)
                if (q->w_zp[o] < -128 || q->w_zp[o] > 127)
                    st = mm_error(MM_E_FORMAT, "tensor %s: element %zu is %d (outside [-128, 127])",
                                  name, o, (int)q->w_zp[o]);
            for (size_t o = ns; st == MM_OK && o < out; o++) q->w_zp[o] = q->w_zp[0];
        }
        if (st == MM_OK && scheme == MM_QUANT_INT8_STATIC) {
            float r[2];
            tname(name, index, "input_range");
            st = mm_file_read_tensor(f, name, MM_DTYPE_F32, s_r, 1, r);
            if (st == MM_OK) st = set_static_range(q, r[0], r[1]);
            if (st != MM_OK)
                st = mm_error_prefix(st == MM_E_NUMERIC ? st : MM_E_FORMAT, "tensor %s", name);
        }
        tname(name, index, "weight_q");
        if (st == MM_OK && q->wq) {
            st = mm_file_read_tensor(f, name, MM_DTYPE_I8, s_w, 2, q->wq);
        } else if (st == MM_OK) {
            tmp = malloc(count);
            if (!tmp) st = mm_oom("int8 weights");
            if (st == MM_OK) st = mm_file_read_tensor(f, name, MM_DTYPE_I8, s_w, 2, tmp);
            if (st == MM_OK) st = mm_int8_pack_weights(tmp, out, in, &q->packed);
        }
    } else if (st == MM_OK) {
        tname(name, index, "weight_f16");
        st = mm_file_read_tensor(f, name, scheme == MM_QUANT_FP16 ? MM_DTYPE_F16 : MM_DTYPE_BF16,
                                 s_w, 2, q->wh);
        const uint16_t expo = scheme == MM_QUANT_FP16 ? 0x7c00u : 0x7f80u;
        for (size_t i = 0; st == MM_OK && i < count; i++)
            if ((q->wh[i] & expo) == expo)
                st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is not finite", name, i);
    }
    free(tmp);
    if (st != MM_OK) {
        ql_destroy(&q->base);
        return st;
    }
    *res = &q->base;
    return MM_OK;
}

static mm_status int8_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                           size_t out, mm_activation act, float slope, mm_layer **res) {
    *res = NULL;
    const json_t *s = json_object_get(entry, "scheme");
    const char *text = s && json_is_string(s) ? json_string_value(s) : NULL;
    mm_quant_scheme scheme;
    if (text && strcmp(text, "weight_only") == 0) scheme = MM_QUANT_INT8_WEIGHT_ONLY;
    else if (text && strcmp(text, "dynamic") == 0) scheme = MM_QUANT_INT8_DYNAMIC;
    else if (text && strcmp(text, "static") == 0) scheme = MM_QUANT_INT8_STATIC;
    else
        return mm_error(MM_E_FORMAT,
                        "architecture: layer %zu: \"scheme\" must be \"weight_only\", "
                        "\"dynamic\" or \"static\"",
                        index);
    bool pc = true, wsym = true, asym = false, master = false;
    mm_status st = entry_bool(entry, index, "per_channel", &pc);
    if (st == MM_OK) st = entry_bool(entry, index, "weight_symmetric", &wsym);
    if (st == MM_OK) st = entry_bool(entry, index, "act_symmetric", &asym);
    if (st == MM_OK) st = entry_bool(entry, index, "keep_master", &master);
    if (st != MM_OK) return st;
    return load_common(f, index, in, out, act, slope, scheme, pc, wsym, asym, master, res);
}

static mm_status half_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                           size_t out, mm_activation act, float slope, mm_quant_scheme scheme,
                           mm_layer **res) {
    *res = NULL;
    bool master = false;
    mm_status st = entry_bool(entry, index, "keep_master", &master);
    if (st != MM_OK) return st;
    return load_common(f, index, in, out, act, slope, scheme, true, true, false, master, res);
}

static mm_status f16_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                          size_t out, mm_activation act, float slope, mm_layer **res) {
    return half_load(f, index, entry, in, out, act, slope, MM_QUANT_FP16, res);
}

static mm_status bf16_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                           size_t out, mm_activation act, float slope, mm_layer **res) {
    return half_load(f, index, entry, in, out, act, slope, MM_QUANT_BF16, res);
}

/* The dense weights the layer computes with, or its master when asked and
 * kept (the effective_weights hook). */
static mm_status ql_effective_weights(const mm_layer *layer, bool master, float *w, float *b) {
    const qlayer *q = (const qlayer *)layer;
    if (master && q->mw) {
        memcpy(w, q->mw, layer->in * layer->out * sizeof *w);
        memcpy(b, q->bias, layer->out * sizeof *b);
        return MM_OK;
    }
    int8_t *owned = NULL;
    const int8_t *w8 = is_int8(q) ? int8_rows(q, &owned) : NULL;
    if (is_int8(q) && !w8) return mm_oom("int8 weights");
    dequant_rows(q, w8, 0, layer->out, w);
    free(owned);
    memcpy(b, q->bias, layer->out * sizeof *b);
    return MM_OK;
}

#define QL_VTABLE(name, loader)                                                              \
    {                                                                                        \
        .kind = name, .caps = MM_CAP_LAYER | MM_CAP_QUANTIZED, .load = loader,               \
        .destroy = ql_destroy,                                                               \
        .clone = ql_clone, .forward = ql_forward, .backward = ql_backward,                   \
        .apply_sgd = ql_apply_sgd, .param_bytes = ql_param_bytes, .save = ql_save,           \
        .after_update = ql_after_update, .effective_weights = ql_effective_weights,          \
    }

const mm_layer_vtable mm_int8_kind = QL_VTABLE("int8", int8_load);
const mm_layer_vtable mm_f16_kind = QL_VTABLE("fp16", f16_load);
const mm_layer_vtable mm_bf16_kind = QL_VTABLE("bf16", bf16_load);
