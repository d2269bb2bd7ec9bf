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

/* True for the kinds defined in qlayer.c. */
bool mm_layer_is_quantized(const mm_layer *layer);

extern const mm_layer_kind mm_int8_kind;
extern const mm_layer_kind mm_f16_kind;
extern const mm_layer_kind mm_bf16_kind;

#endif
