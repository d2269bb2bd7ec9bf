/* Internals shared by the quantizer (quantizer.c, observers.c, qat.c) and
 * the quantized layer kinds (qlayer.c). Never installed. */
#ifndef MM_QUANT_INTERNAL_H
#define MM_QUANT_INTERNAL_H

#include "kernels/int8.h"
#include "model/model_internal.h"
#include "mm/mm_quantizer.h"

/* How to quantize one dense layer. */
typedef struct mm_qlayer_config {
    mm_quant_scheme scheme;  /* weight-only, dynamic, static, fp16, bf16 */
    bool per_channel;        /* weight scale per output row (else one per tensor) */
    bool weight_symmetric;   /* else asymmetric weights with a zero point */
    bool act_symmetric;      /* activation zero point fixed at 128 */
    bool keep_master;        /* keep float master weights (trainable) */
    /* static only: the layer input's calibrated range */
    float in_lo, in_hi;
} mm_qlayer_config;

/* Build a quantized layer (kind "int8" or "fp16"/"bf16") from a dense layer,
 * which is only read: same in/out/activation, outputs within quantization
 * error. MM_E_NUMERIC for NaN/Inf weights; MM_E_UNSUPPORTED for a scheme or
 * shape the kernels cannot take (e.g. in > 65536 for int8). */
mm_status mm_qlayer_from_dense(const mm_layer *dense, const mm_qlayer_config *cfg,
                               mm_layer **out);

/* A dense layer with the quantized layer's float weights (the master when
 * kept, else the dequantized ones): used for accuracy-aware fallback. */
mm_status mm_qlayer_to_dense(const mm_layer *qlayer, mm_layer **out);

/* The int8 form of an int8-kind layer, for other formats (ONNX QDQ). */
typedef struct mm_qlayer_int8 {
    mm_quant_scheme scheme;     /* MM_QUANT_INT8_WEIGHT_ONLY, _DYNAMIC or _STATIC */
    bool per_channel, weight_symmetric, act_symmetric;
    const int8_t *weight_q;     /* out x in, row-major */
    const float *weight_scale;  /* out values (per tensor: one value repeated) */
    const int32_t *weight_zp;   /* out values in [-128, 127]; NULL when symmetric */
    const float *bias;          /* out values */
    float in_lo, in_hi;         /* static: the calibrated input range */
    float x_scale;              /* static: the input's scale and uint8 zero point, */
    int32_t x_zp;               /*   mm_int8_choose_params(in_lo, in_hi, act_symmetric) */
} mm_qlayer_int8;

/* Describe an int8-kind layer. The pointers are borrowed from the layer
 * until it is next mutated (weight_q may be a cache the layer owns, as its
 * save hook uses). MM_E_INVALID_ARGUMENT for another kind, MM_E_STATE if
 * its int8 form is stale, MM_E_OUT_OF_MEMORY. */
mm_status mm_qlayer_int8_describe(const mm_layer *layer, mm_qlayer_int8 *d);

/* Build an int8 layer without master weights from a description (copied;
 * x_scale and x_zp are ignored: they are derived from in_lo, in_hi and
 * act_symmetric). Per tensor, weight_scale (and weight_zp) are read at
 * element 0 only. Checks what a model file's loader checks: scales finite
 * and > 0, zero points in [-128, 127], bias finite, the input-count limits
 * of the kernels; MM_E_FORMAT / MM_E_NUMERIC / MM_E_UNSUPPORTED. */
mm_status mm_qlayer_int8_create(const mm_qlayer_int8 *d, size_t in, size_t out,
                                mm_activation act, float slope, mm_layer **res);

/* True for kinds with an int8 form (mm_qlayer_int8_describe works): int8
 * and sparse_int8. */
bool mm_qlayer_has_int8(const mm_layer *layer);

/* ---- the int8 sparse kind (qsparse.c) ---- */

/* Build a "sparse_int8" layer from a float sparse layer (only read):
 * symmetric int8 stored weights (always: pruned zeros stay exact) with a
 * scale per row (cfg->per_channel) or one for the layer; float activations
 * under weight-only, uint8 activations (per-sample range, or cfg's
 * calibrated range) under dynamic and static; the float values kept as
 * trainable master with cfg->keep_master. MM_E_INVALID_ARGUMENT for
 * another kind or a bad static range, MM_E_NUMERIC for NaN/Inf,
 * MM_E_UNSUPPORTED for more than MM_INT8_MAX_IN inputs. */
mm_status mm_qsparse_from_sparse(const mm_layer *sparse, const mm_qlayer_config *cfg,
                                 mm_layer **out);
bool mm_layer_is_qsparse(const mm_layer *layer);
/* Dense out x in weights (zeros where nothing is stored) and bias: the
 * master when `master` and kept, else the dequantized weights. */
mm_status mm_qsparse_effective_weights(const mm_layer *layer, bool master, float *w, float *b);
/* The int8 form as a dense matrix (a cache on the layer), with the layer's
 * scheme and activation parameters. */
mm_status mm_qsparse_int8_describe(const mm_layer *layer, mm_qlayer_int8 *d);

extern const mm_layer_vtable mm_int8_kind;
extern const mm_layer_vtable mm_f16_kind;
extern const mm_layer_vtable mm_bf16_kind;
extern const mm_layer_vtable mm_qsparse_kind;

#endif
