/* mmaint — mm_quantizer: int8 (and fp16/bf16) models that are accurate and
 * really faster.
 *
 * Quantizing swaps a model's dense layers for quantized layer kinds with
 * their own kernels (int8 x int8 -> int32 with run-time CPU dispatch:
 * AVX-512 VNNI, AVX2, portable C), and a pruned model's sparse layers for
 * the "sparse_int8" kind (int8 stored weights with a scale per row in the
 * sparse layout, under every int8 scheme, activations as the scheme says:
 * pruned and quantized models are the smallest and fastest;
 * benchmarks/RESULTS.md). Schemes are vtables:
 *
 *   MM_QUANT_INT8_WEIGHT_ONLY  int8 weights, float activations
 *   MM_QUANT_INT8_DYNAMIC      int8 weights; activations quantized per batch
 *                              at run time from their observed range
 *   MM_QUANT_INT8_STATIC       int8 weights and activations; activation ranges
 *                              from calibration (mm_quantizer_calibrate)
 *   MM_QUANT_FP16, MM_QUANT_BF16  16-bit weight storage, float arithmetic
 *
 * Weights are quantized per output channel (default) or per tensor,
 * symmetric (default) or asymmetric with a zero point; activations
 * symmetric or asymmetric. Static calibration observers: min-max,
 * moving-average min-max, percentile, and MSE- or entropy-optimal ranges
 * from a histogram.
 *
 * Accuracy-aware mode (mm_quantizer_apply_with_tolerance) quantizes,
 * measures the drop on an evaluation set, and returns the most sensitive
 * layers to float one at a time until the tolerated drop is met; the report
 * says which layers stayed float and why.
 *
 * Without master weights (the default) a quantized layer is
 * inference-only and its model file holds the quantized weights only: int8
 * is about a quarter of the float size, sparse_int8 about 2 bytes per
 * stored weight. With MM_QUANT_KEEP_MASTER = 1 each quantized layer also
 * keeps its float weights, so optimizers can still update it (the master
 * is updated and the int8 copy re-quantized after each step); the file
 * then holds both and is larger than the float model.
 *
 * Thread safety: a quantizer is used by one thread at a time; apply mutates
 * the model (exclusive access); inference on a quantized model is as
 * thread-safe as on a float one.
 *
 * Errors and decisions (all calls are all-or-nothing: on failure the model
 * and the quantizer's calibration are as they were):
 *  - Settings: MM_E_OUT_OF_RANGE naming the setting and its range,
 *    MM_E_INVALID_ARGUMENT for a non-integral value of an integer setting,
 *    MM_E_UNSUPPORTED (set and get) for a setting the scheme does not read:
 *    PER_CHANNEL and WEIGHT_SYMMETRIC are read by the int8 schemes only;
 *    ACT_SYMMETRIC, OBSERVER, PERCENTILE, AVERAGING and BINS by int8_static
 *    only; KEEP_MASTER, MAX_DROP and DROP_RELATIVE by every scheme.
 *  - Calibration statistics (exact min/max, moving min/max, a histogram)
 *    serve every observer: OBSERVER and PERCENTILE may change after
 *    calibrating and take effect at the next apply; changing BINS or
 *    AVERAGING discards the calibration. A calibration batch is at most 256
 *    samples of one mm_quantizer_calibrate call.
 *  - Apply quantizes dense layers, sparse layers (int8 schemes; fp16 and
 *    bf16 keep them in float) and converts "qat" layers; a layer kept in
 *    float with mm_quantizer_set_layer, already quantized or of a kind the
 *    scheme does not take is left as it is, and the report says why.
 *    Quantization-aware training (prepare) leaves sparse layers float;
 *    the apply that ends it quantizes them.
 *  - Each apply and prepare records a "quantize" lineage event (scheme,
 *    settings, observer, per-layer kind, input range, bytes before/after).
 */
#ifndef MM_QUANTIZER_H
#define MM_QUANTIZER_H

#include "mm_common.h"
#include "mm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_quantizer mm_quantizer;

typedef enum mm_quant_scheme {
    MM_QUANT_INT8_WEIGHT_ONLY = 1,
    MM_QUANT_INT8_DYNAMIC = 2,
    MM_QUANT_INT8_STATIC = 3,
    MM_QUANT_FP16 = 4,
    MM_QUANT_BF16 = 5
} mm_quant_scheme;

typedef enum mm_quant_observer {
    MM_OBSERVER_MINMAX = 0,
    MM_OBSERVER_MOVING_MINMAX = 1, /* exponential moving average of batch min/max */
    MM_OBSERVER_PERCENTILE = 2,    /* MM_QUANT_PERCENTILE of |x| (histogram); with
                                      asymmetric activations the central
                                      MM_QUANT_PERCENTILE % of x (both tails cut) */
    MM_OBSERVER_MSE = 3,           /* range minimising quantization MSE (histogram) */
    MM_OBSERVER_ENTROPY = 4        /* range minimising KL divergence (histogram), as TensorRT */
} mm_quant_observer;

/* Settings (doubles; integer settings integral). Never renumbered. */
typedef enum mm_quant_param {
    MM_QUANT_PER_CHANNEL = 1,     /* 0/1 weight scales per output channel, default 1 */
    MM_QUANT_WEIGHT_SYMMETRIC = 2,/* 0/1, default 1 */
    MM_QUANT_ACT_SYMMETRIC = 3,   /* 0/1 activation quantization symmetric, default 0 */
    MM_QUANT_OBSERVER = 4,        /* an mm_quant_observer, default minmax */
    MM_QUANT_PERCENTILE = 5,      /* (50, 100], default 99.99 */
    MM_QUANT_AVERAGING = 6,       /* moving-average constant (0, 1], default 0.01 */
    MM_QUANT_BINS = 7,            /* histogram bins [128, 65536], default 2048 */
    MM_QUANT_KEEP_MASTER = 8,     /* 0/1 keep float master weights (trainable), default 0 */
    MM_QUANT_MAX_DROP = 9,        /* tolerated accuracy drop, [0, 1], default 0.003 */
    MM_QUANT_DROP_RELATIVE = 10   /* 0/1: MAX_DROP is relative to float accuracy, default 0 */
} mm_quant_param;

MM_API const char *mm_quant_scheme_name(mm_quant_scheme s);
MM_API mm_status mm_quant_scheme_from_name(const char *name, mm_quant_scheme *out);
MM_API const char *mm_quant_observer_name(mm_quant_observer o);
MM_API mm_status mm_quant_observer_from_name(const char *name, mm_quant_observer *out);
MM_API const char *mm_quant_param_name(mm_quant_param p);
MM_API mm_status mm_quant_param_from_name(const char *name, mm_quant_param *out);
MM_API mm_status mm_quant_param_bounds(mm_quant_param p, double *lo, double *hi);

/* Names of the values of enum-valued settings, as mm_opt_value_from_name /
 * mm_opt_value_name (same errors; thread-safe): MM_QUANT_OBSERVER takes the
 * observer names of mm_quant_observer_name ("minmax", "moving_minmax",
 * "percentile", "mse", "entropy"); the other settings take plain numbers
 * (MM_E_UNSUPPORTED). */
MM_API mm_status mm_quant_value_from_name(mm_quant_param p, const char *name, double *value);
MM_API const char *mm_quant_value_name(mm_quant_param p, double value);

/* Create a quantizer; the caller owns *out. */
MM_API mm_status mm_quantizer_create(mm_quantizer **out, mm_quant_scheme scheme);
/* NULL is a no-op. */
MM_API void mm_quantizer_free(mm_quantizer *q);

MM_API mm_status mm_quantizer_set(mm_quantizer *q, mm_quant_param param, double value);
MM_API mm_status mm_quantizer_get(const mm_quantizer *q, mm_quant_param param, double *value);
MM_API mm_quant_scheme mm_quantizer_scheme(const mm_quantizer *q);

/* Leave layer `index` in float (enabled = 0) or quantize it (1, default). */
MM_API mm_status mm_quantizer_set_layer(mm_quantizer *q, size_t index, int enabled);

/* Feed n calibration samples (x: n*input_dim floats) through the float
 * model, updating the observers of every layer's input. May be called
 * several times (a few hundred samples in all is typical). Required by
 * MM_QUANT_INT8_STATIC (other schemes accept and ignore it). The model is
 * only read. MM_E_NUMERIC for NaN/Inf inputs (or layer outputs),
 * MM_E_INVALID_ARGUMENT for n == 0, MM_E_STATE for a model whose shape
 * differs from the one first calibrated. */
MM_API mm_status mm_quantizer_calibrate(mm_quantizer *q, const mm_model *model, const float *x,
                                        size_t n);

/* Quantize the enabled layers of `model` in place (their kind changes).
 * MM_E_STATE if static quantization is not calibrated for this model,
 * MM_E_NUMERIC if a weight is NaN/Inf (a layer kind the scheme cannot
 * quantize stays as it is, with the reason in the report),
 * MM_E_OUT_OF_RANGE for a layer disabled with
 * mm_quantizer_set_layer that the model does not have. Layers in
 * quantization-aware training convert with their master weights and (static)
 * the input range observed in training. An optimizer created before must be
 * recreated (the layers' parameters changed). */
MM_API mm_status mm_quantizer_apply(mm_quantizer *q, mm_model *model);

/* Accuracy-aware quantization: quantize, evaluate on (x, labels, n), and
 * while the drop exceeds MM_QUANT_MAX_DROP return the layer whose float
 * version recovers most accuracy to float, one at a time. *accuracy_out
 * (may be NULL) receives the final accuracy. The report tells what stayed
 * float and why. The float accuracy is that of the model as given; a layer
 * back "in float" is exactly the layer it was (not a dequantized copy).
 * Errors as mm_quantizer_apply, plus MM_E_INVALID_ARGUMENT for n == 0 and
 * MM_E_NUMERIC for NaN/Inf in x. */
MM_API mm_status mm_quantizer_apply_with_tolerance(mm_quantizer *q, mm_model *model,
                                                   const float *x, const int32_t *labels,
                                                   size_t n, double *accuracy_out);

/* Quantization-aware training: make the enabled dense layers fake-quantize
 * their weights (and, for static, activations) in forward with a
 * straight-through estimator in backward; train with any mm_optimizer; then
 * mm_quantizer_apply converts. The layers become kind "qat" (same
 * parameters, so an optimizer created before keeps working). int8_static
 * observes each layer's input range during training (moving average with
 * MM_QUANT_AVERAGING, seeded by mm_quantizer_calibrate if called before);
 * int8_dynamic fake-quantizes each sample's input with its own range. A
 * model saved during QAT stores its float master weights as dense layers.
 * Errors as mm_quantizer_apply (static needs no calibration here). */
MM_API mm_status mm_quantizer_prepare_qat(mm_quantizer *q, mm_model *model);

/* Per-layer report of the last apply: JSON text {"layers":[{"index":..,
 * "kind":..,"quantized":true|false,"reason":..,"accuracy_if_float":..}],
 * "float_accuracy":..,"quantized_accuracy":..}. Owned by the quantizer,
 * valid until its next call. "" before any apply. Also: "mode" ("apply",
 * "accuracy_aware"), the scheme's settings, per layer "input_range" and
 * "range_from" (static), "bytes_before", "bytes_after"; "final_accuracy"
 * (after fallback; "quantized_accuracy" is with every enabled layer
 * quantized). Accuracies are null for plain apply, "accuracy_if_float" is
 * null for a layer that was not measured. */
MM_API const char *mm_quantizer_report(const mm_quantizer *q);

#ifdef __cplusplus
}
#endif
#endif /* MM_QUANTIZER_H */
