/* int8 x int8 -> int32 kernels for quantized dense layers
 * y = act(x W^T + b), W [out x in] with per-output-channel scales.
 * Portable C plus AVX2 and AVX-512 VNNI copies chosen at run time
 * (int8.c). Never installed.
 *
 * Quantization convention (one for the whole library):
 *  - Weights: signed int8, symmetric, any value in [-128, 127] (the
 *    quantizer normally uses [-127, 127]; -128 is handled exactly too).
 *    Real weight = w_scale[o] * w.
 *  - Activations: UNSIGNED uint8 with a zero point zp in [0, 255]
 *    (asymmetric): real x = x_scale * (xq - zp). This is the operand type
 *    vpdpbusd multiplies (u8 x s8). Symmetric activations are the special
 *    case zp = 128 (equivalent to int8 shifted by +128).
 *  - The kernels compute exact int32 accumulators
 *        acc[s, o] = sum_i (xq[s, i] - zp) * w[o, i]
 *    as sum_i xq*w - zp * rowsum(w[o]) with the row sums precomputed at
 *    pack time. Every ISA variant gives bit-identical results. Exactness
 *    needs |acc| < 2^31, guaranteed for in <= MM_INT8_MAX_IN
 *    (255 * 128 * 65536 < 2^31), which pack enforces. No intermediate can
 *    saturate: the AVX2 variant multiplies in 16 bits with vpmaddwd (not
 *    the saturating vpmaddubsw), so unlike fbgemm's "reduce_range" no 7-bit
 *    restriction is needed.
 *  - float -> uint8: q = clamp(round(x * (1/scale)) + zp, 0, 255), where
 *    1/scale is computed once in float and round() is round-half-to-even
 *    (strictly: the current FP rounding mode, round-to-nearest-even by
 *    default; every variant follows the same mode). Saturation: values
 *    beyond the range, and +-Inf, clamp to 0 / 255; NaN maps to the zero
 *    point (real 0). The static quantizers still write every output and
 *    then return MM_E_NUMERIC if any input was NaN or Inf, so the layer
 *    above can refuse or accept the saturated result.
 *  - Output stage (dequant_bias_act, requantize): in float,
 *        t = (float)acc * (x_scale * w_scale[o]);  y = t + bias[o];  act(y)
 *    as two roundings (a multiply, then an add: never a fused multiply-add,
 *    in any variant), so all variants agree bit for bit. Requantize is
 *    exactly quantize(dequant_bias_act(...)) with the output's scale and
 *    zero point (float requantization rather than gemmlowp's fixed-point
 *    multiplier: same cost here, simpler to reason about).
 *
 * Packed weights: rows in blocks of 16 (the int32 lanes of a zmm),
 * columns in groups of 4 (vpdpbusd's 4-way dot product); the 64 bytes of
 * (block b, group g) hold rows 16b..16b+15, each with its 4 weights
 * 4g..4g+3; blocks are stored one after the other. Padding rows and
 * columns are zero (so they add nothing), row sums are stored per padded
 * row. The format is the same for every ISA: a packed matrix can be used
 * by any variant (the AVX2 one sign-extends 16 bytes = 4 rows x 4 weights
 * at a time; the portable one reads it with scalar loops).
 *
 * Thread safety: all functions are reentrant; a packed matrix is read-only
 * after packing and can be shared by threads. mm_int8_set_isa changes a
 * process-wide setting (tests and benchmarks only).
 */
#ifndef MM_INT8_H
#define MM_INT8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mm_common.h"
#include "mm/mm_model.h" /* mm_activation */

/* Largest input width (columns of W) the exact int32 accumulation allows. */
#define MM_INT8_MAX_IN 65536u
/* Rows per packed block and columns per group. */
#define MM_INT8_BLOCK_ROWS 16u
#define MM_INT8_GROUP_COLS 4u

/* ---- ISA selection ------------------------------------------------------ */

typedef enum mm_int8_isa {
    MM_INT8_ISA_PORTABLE = 0,   /* plain C */
    MM_INT8_ISA_AVX2 = 1,       /* AVX2: 16-bit vpmaddwd */
    MM_INT8_ISA_AVX512VNNI = 2  /* AVX-512 F/BW/VL + VNNI: vpdpbusd */
} mm_int8_isa;

/* The variant in use: the best the build and CPU support, capped by the
 * environment variable MM_INT8_ISA=portable|avx2|avx512vnni (read once per
 * process; an unknown value is ignored), or as set by mm_int8_set_isa. */
mm_int8_isa mm_int8_isa_current(void);
/* The best variant this build and CPU support (ignores MM_INT8_ISA). */
mm_int8_isa mm_int8_isa_best(void);
/* Does this build and CPU support `isa`? */
bool mm_int8_isa_available(mm_int8_isa isa);
/* Force a variant (tests, benchmarks). MM_E_UNSUPPORTED if not available.
 * Not for use while other threads run int8 kernels. */
mm_status mm_int8_set_isa(mm_int8_isa isa);
/* Forget the current selection: the next call re-reads MM_INT8_ISA
 * (tests). Not for use while other threads run int8 kernels. */
void mm_int8_isa_reset(void);
/* "portable", "avx2", "avx512vnni" ("?" for other values). */
const char *mm_int8_isa_name(mm_int8_isa isa);
/* Parse a name as above (also "vnni", "avx512"); MM_E_NOT_FOUND if unknown. */
mm_status mm_int8_isa_parse(const char *name, mm_int8_isa *out);

/* ---- packed weights ----------------------------------------------------- */

typedef struct mm_int8_packed mm_int8_packed;

/* Pack W (out x in, row-major int8) for the kernels; the caller owns
 * *packed (free with mm_int8_packed_free). MM_E_INVALID_ARGUMENT for NULL
 * or a zero dimension, MM_E_OUT_OF_RANGE for in > MM_INT8_MAX_IN,
 * MM_E_OUT_OF_MEMORY. */
mm_status mm_int8_pack_weights(const int8_t *w, size_t out, size_t in, mm_int8_packed **packed);
/* NULL is a no-op. */
void mm_int8_packed_free(mm_int8_packed *p);

/* Refill packed weights of the same shape in place from w (out x in int8,
 * row-major): re-quantizing after a training step without allocating. */
void mm_int8_repack_weights(mm_int8_packed *p, const int8_t *w);
/* Bytes held by the packed matrix (struct, padded weights, row sums). */
size_t mm_int8_packed_bytes(const mm_int8_packed *p);
size_t mm_int8_packed_out(const mm_int8_packed *p);
size_t mm_int8_packed_in(const mm_int8_packed *p);
/* Sum of the weights of row o (o < out). */
int32_t mm_int8_packed_row_sum(const mm_int8_packed *p, size_t o);
/* Write W back (out x in, row-major). */
void mm_int8_unpack_weights(const mm_int8_packed *p, int8_t *w);

/* ---- activation quantization --------------------------------------------- */

/* xq[i] = clamp(round(x[i] / scale) + zero_point, 0, 255) for the n x in
 * values (contiguous rows), with the rounding and saturation rules above.
 * MM_E_INVALID_ARGUMENT if scale is not positive and finite, if 1/scale
 * overflows, or zero_point is outside [0, 255] (nothing written); else
 * every output is written and the result is MM_E_NUMERIC if some x[i] was
 * NaN or +-Inf, MM_OK otherwise. */
mm_status mm_int8_quantize_rows(const float *x, size_t n, size_t in, float scale,
                                int32_t zero_point, uint8_t *xq);

/* Quantization parameters for the real range [lo, hi] (finite, lo <= hi).
 * The range is first widened to include 0 (so real 0 is exact).
 * Asymmetric: scale = (hi - lo) / 255, zero_point = round(-lo / scale)
 * in [0, 255]. Symmetric: zero_point = 128, scale = max(|lo|, |hi|) / 127.5
 * (as PyTorch's symmetric quint8 observers). A degenerate range (all
 * zero, or so tiny that 1/scale would overflow) gives scale 1, with
 * zero_point 0 (asymmetric) or 128. MM_E_NUMERIC for NaN/Inf bounds,
 * MM_E_INVALID_ARGUMENT for lo > hi. */
mm_status mm_int8_choose_params(float lo, float hi, bool symmetric, float *scale,
                                int32_t *zero_point);

/* Dynamic quantization: find the range (of the whole batch, or of each
 * row when per_row), choose asymmetric parameters with
 * mm_int8_choose_params, and quantize. scale and zero_point receive 1
 * value (batch) or n (per row). MM_E_NUMERIC (nothing written) if any
 * input is NaN or Inf. n == 0 or in == 0 writes nothing. */
mm_status mm_int8_quantize_dynamic(const float *x, size_t n, size_t in, bool per_row,
                                   uint8_t *xq, float *scale, int32_t *zero_point);

/* ---- the GEMM ------------------------------------------------------------ */

/* acc[s, o] = sum_i (xq[s, i] - x_zero_point) * W[o, i] for s < n, o < out
 * (acc is n x out, row-major; xq is n x in, row-major). Exact.
 * Preconditions (not checked: the hot path): in == mm_int8_packed_in(w),
 * x_zero_point in [0, 255]. n == 0 does nothing. Batch 1 takes a GEMV
 * path. Needs no scratch memory, cannot fail. */
void mm_int8_gemm(const uint8_t *xq, size_t n, size_t in, int32_t x_zero_point,
                  const mm_int8_packed *w, int32_t *acc);

/* The same with one zero point per row of xq (per-row dynamic
 * quantization): x_zero_points[s] in [0, 255]. */
void mm_int8_gemm_zp_rows(const uint8_t *xq, size_t n, size_t in, const int32_t *x_zero_points,
                          const mm_int8_packed *w, int32_t *acc);

/* ---- output stage ---------------------------------------------------------- */

typedef struct mm_int8_epilogue {
    const float *x_scale;  /* activation scale: x_scale_count values */
    size_t x_scale_count;  /* 1 (per batch) or n (per row) */
    const float *w_scale;  /* out per-channel weight scales (per-tensor: repeat it) */
    const float *bias;     /* out values, or NULL for none */
    mm_activation act;     /* any mm_activation; identity, relu and leaky relu
                              are fused, tanh and sigmoid are a scalar pass
                              with the model's formulas */
    float slope;           /* leaky relu slope */
} mm_int8_epilogue;

/* y[s, o] = act((float)acc[s, o] * (x_scale * w_scale[o]) + bias[o])
 * (n x out floats). Activation formulas are those of the float model
 * (relu: y < 0 ? 0 : y; leaky: y > 0 ? y : slope * y). No finiteness
 * check. MM_E_INVALID_ARGUMENT for NULL arrays, x_scale_count not 1 or
 * n, or an unknown activation. */
mm_status mm_int8_dequant_bias_act(const int32_t *acc, size_t n, size_t out,
                                   const mm_int8_epilogue *e, float *y);

/* Static chains: yq[s, o] = quantize(y[s, o], y_scale, y_zero_point) with
 * y as computed by mm_int8_dequant_bias_act, bit for bit, without storing
 * y. Errors as both functions; MM_E_NUMERIC (all outputs written,
 * saturated) if some y was NaN or Inf. */
mm_status mm_int8_requantize(const int32_t *acc, size_t n, size_t out,
                             const mm_int8_epilogue *e, float y_scale, int32_t y_zero_point,
                             uint8_t *yq);

#endif
