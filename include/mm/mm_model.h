/* mmaint — mm_model: a feed-forward network (a sequence of layers) and its loss.
 *
 * Layout conventions (the same as PyTorch's nn.Linear, so weights move across
 * without transposition):
 *   - a batch of inputs is n rows of input_dim floats, row-major (C order);
 *   - a dense layer with `in` inputs and `out` outputs holds W as `out` rows of
 *     `in` floats (W[o*in + i]) and a bias b of `out` floats; it computes
 *     y = act(x W^T + b).
 *
 * Thread safety: calls that only read the model (forward, predict, evaluate,
 * describe, getters, save) may run from many threads at once as long as no
 * thread mutates it. Calls that mutate it (add_dense, set_*, backward, weights
 * setters, optimizer steps, load into) need exclusive access.
 */
#ifndef MM_MODEL_H
#define MM_MODEL_H

#include "mm_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_model mm_model;

typedef enum mm_activation {
    MM_ACT_IDENTITY = 0,
    MM_ACT_RELU = 1,
    MM_ACT_LEAKY_RELU = 2, /* slope for x < 0 set by mm_model_set_leaky_slope, default 0.01 */
    MM_ACT_TANH = 3,
    MM_ACT_SIGMOID = 4
} mm_activation;

typedef enum mm_loss {
    MM_LOSS_SOFTMAX_XENT = 0, /* softmax + cross-entropy on integer labels */
    MM_LOSS_MSE = 1           /* mean squared error; targets, or one-hot of labels */
} mm_loss;

typedef enum mm_init {
    MM_INIT_AUTO = 0,    /* He for relu/leaky relu, Xavier otherwise */
    MM_INIT_HE = 1,      /* normal(0, sqrt(2/in)) */
    MM_INIT_XAVIER = 2   /* uniform(+-sqrt(6/(in+out))) */
} mm_init;

/* Name of an activation ("relu") / loss ("softmax_xent"); NULL if unknown. */
MM_API const char *mm_activation_name(mm_activation act);
MM_API const char *mm_loss_name(mm_loss loss);
/* Parse a name back; MM_E_INVALID_ARGUMENT naming the text if unknown. */
MM_API mm_status mm_activation_from_name(const char *name, mm_activation *out);
MM_API mm_status mm_loss_from_name(const char *name, mm_loss *out);

/* Create an empty model taking `input_dim` features per sample. `seed` drives
 * weight initialisation (a platform-independent PRNG: the same seed gives the
 * same weights everywhere). The caller owns *out and frees it with
 * mm_model_free. Loss defaults to MM_LOSS_SOFTMAX_XENT. */
MM_API mm_status mm_model_create(mm_model **out, size_t input_dim, uint64_t seed);

/* Free a model. NULL is a no-op. An optimizer that borrows the model must be
 * freed first. */
MM_API void mm_model_free(mm_model *model);

/* Deep copy: layers, weights, loss, lineage (not training caches). The caller
 * owns *out. */
MM_API mm_status mm_model_clone(const mm_model *model, mm_model **out);

/* Append a dense layer with `units` outputs, initialised with MM_INIT_AUTO. */
MM_API mm_status mm_model_add_dense(mm_model *model, size_t units, mm_activation act);
/* Same with an explicit initialisation scheme. */
MM_API mm_status mm_model_add_dense_init(mm_model *model, size_t units, mm_activation act,
                                         mm_init init);

/* Build a whole model from a spec such as "784-256-128-10:relu" (hidden
 * activation after the colon, default relu; the last layer is identity) and
 * "784-64-10:tanh,xavier". The caller owns *out. */
MM_API mm_status mm_model_create_from_spec(mm_model **out, const char *spec, uint64_t seed);

MM_API mm_status mm_model_set_loss(mm_model *model, mm_loss loss);
MM_API mm_loss mm_model_loss(const mm_model *model);
/* Negative slope of MM_ACT_LEAKY_RELU layers of the whole model, in [0, 1). */
MM_API mm_status mm_model_set_leaky_slope(mm_model *model, float slope);

MM_API size_t mm_model_input_dim(const mm_model *model);
/* Width of the last layer (input_dim when there are no layers). */
MM_API size_t mm_model_output_dim(const mm_model *model);
MM_API size_t mm_model_num_layers(const mm_model *model);
/* Number of trainable scalars (weights + biases). */
MM_API size_t mm_model_num_params(const mm_model *model);
/* Bytes held by parameters as stored (float32 now; less for pruned and
 * quantized layer kinds later). */
MM_API size_t mm_model_param_bytes(const mm_model *model);

/* Facts about layer `index` (0-based). Any out-pointer may be NULL.
 * `kind` is a static string such as "dense". */
MM_API mm_status mm_model_layer_info(const mm_model *model, size_t index, const char **kind,
                                     size_t *inputs, size_t *outputs, mm_activation *act);

/* Copy the weights (out*in floats, W[o*in+i]) and biases (out floats) of
 * layer `index` out of / into caller buffers whose element counts are given;
 * either pointer may be NULL to skip it. MM_E_SHAPE if a count is wrong.
 * Setting refuses NaN/Inf with MM_E_NUMERIC.
 * Every layer kind reads as the dense out x in matrix it computes with:
 *   - dense (and "qat") layers: their weights; pruned (masked) weights are 0;
 *   - sparse layers (mm_pruner_finalize): zeros where pruned, the stored
 *     weights elsewhere; setting writes the stored positions and drops the
 *     values given for pruned ones (they stay 0, as masked weights do);
 *   - quantized layers (int8, fp16, bf16, sparse_int8): their float master
 *     weights when they keep them (MM_QUANT_KEEP_MASTER = 1: what
 *     optimizers update, set_weights writes and the layer re-quantizes),
 *     else (the default) the dequantized weights (q - zero point) * scale,
 *     zeros where a sparse_int8 layer was pruned; without master weights a
 *     layer is inference-only and refuses set_weights and get_gradients
 *     with MM_E_UNSUPPORTED (so does a sparse_int8 layer with them).
 * mm_model_get_gradients uses the same layout (zeros where pruned). */
MM_API mm_status mm_model_get_weights(const mm_model *model, size_t index, float *weights,
                                      size_t weights_len, float *bias, size_t bias_len);
MM_API mm_status mm_model_set_weights(mm_model *model, size_t index, const float *weights,
                                      size_t weights_len, const float *bias, size_t bias_len);

/* Forward pass: x is n*input_dim floats, out receives n*output_dim floats
 * (raw outputs of the last layer: logits for softmax cross-entropy).
 * Inputs must be finite: a NaN or infinite feature gives MM_E_NUMERIC naming
 * the first such sample and feature ("input sample 3, feature 17 is NaN");
 * then nothing is computed, `out` is not written and the model is untouched
 * (as for every inference call below, mm_model_backward and the optimizer's
 * step). The check is one integer pass over x: about 1% of a batch-1
 * forward of a 784-256-128-10 model (benchmarks/RESULTS.md).
 * Thread-safe on a model nobody mutates (uses no model-owned scratch; small
 * batches use the stack, larger ones allocate scratch for the call). */
MM_API mm_status mm_model_forward(const mm_model *model, const float *x, size_t n, float *out);

/* Class probabilities (softmax of the logits for MM_LOSS_SOFTMAX_XENT, raw
 * outputs for MSE): n*output_dim floats. Errors (MM_E_NUMERIC for
 * non-finite inputs, nothing written) and thread safety as forward. */
MM_API mm_status mm_model_predict_proba(const mm_model *model, const float *x, size_t n,
                                        float *out);

/* Arg-max class of each of n samples into labels[n]. MM_E_NUMERIC for a
 * non-finite input, naming sample and feature; no label is written.
 * Allocates nothing for small batches (those whose logits and activations
 * fit in 32 KB: up to 15 samples of a 784-256-128-10 model), one block per
 * call for larger ones (the kernels may allocate on their own: Debian's
 * OpenMP build of BLIS does for every matrix product of more than one
 * sample; sparse layers do for batches > 1). Thread-safe like forward. */
MM_API mm_status mm_model_predict(const mm_model *model, const float *x, size_t n,
                                  int32_t *labels);

/* Mean loss and accuracy over n samples. `labels` (n ints in [0, output_dim))
 * are required for cross-entropy; MSE uses `targets` (n*output_dim floats)
 * when given, else the one-hot encoding of `labels`. `accuracy` is computed
 * when labels are given (else set to NaN). loss/accuracy may be NULL.
 * MM_E_NUMERIC for a non-finite input (naming sample and feature; loss and
 * accuracy are not written). Allocates like predict. Thread-safe like
 * forward. */
MM_API mm_status mm_model_evaluate(const mm_model *model, const float *x, const int32_t *labels,
                                   const float *targets, size_t n, double *loss,
                                   double *accuracy);

/* One forward + backward pass over a batch: computes the mean loss and leaves
 * the gradients of every parameter of trainable layers in the model
 * (overwriting earlier ones; frozen layers' gradients stay zero and nothing
 * is backpropagated below the lowest trainable layer).
 * Targets as for mm_model_evaluate. Mutates the model's gradient buffers and
 * caches: not thread-safe. Optimizers call this; use it directly for custom
 * training loops or gradient checks. MM_E_NUMERIC if an input is not finite
 * (naming sample and feature; nothing is computed) or the loss is not finite. */
MM_API mm_status mm_model_backward(mm_model *model, const float *x, const int32_t *labels,
                                   const float *targets, size_t n, double *loss);

/* Copy the gradients left by the last mm_model_backward for layer `index`
 * (same layout as mm_model_get_weights). */
MM_API mm_status mm_model_get_gradients(const mm_model *model, size_t index, float *dweights,
                                        size_t weights_len, float *dbias, size_t bias_len);

/* ---- transfer learning -------------------------------------------------
 *
 * A model remembers per layer whether it is trainable (the default) or
 * frozen. Frozen layers keep their parameters while the rest trains:
 *   - optimizers (every algorithm, the fused SGD path and fit) leave a frozen
 *     layer's weights and biases bit-identical: no update, no weight decay,
 *     and no change to its optimizer state (momentum, Adam moments, the
 *     per-parameter step counter used for Adam's bias correction);
 *   - mm_model_backward does not compute the parameter gradients of frozen
 *     layers (their gradient buffers read as zeros), and does not
 *     backpropagate at all below the lowest trainable layer;
 *   - the flag is part of the model: clone copies it, model files store it
 *     (doc/FORMAT.md; files without it load as all trainable).
 * Structure changes (truncate, replace_head, add_dense) invalidate an
 * optimizer created earlier until mm_optimizer_sync is called (its next
 * step fails with MM_E_STATE otherwise). All of these mutate the model: not
 * thread-safe. */

/* Freeze (trainable = 0) or unfreeze (trainable != 0) layer `index`.
 * MM_E_OUT_OF_RANGE for a bad index. Freezing zeroes the layer's gradient
 * buffers (they stay zero while it is frozen). Takes effect at the next
 * optimizer step; an optimizer needs no sync. */
MM_API mm_status mm_model_set_trainable(mm_model *model, size_t index, int trainable);

/* 1 if layer `index` is trainable, 0 if frozen, -1 if model is NULL or the
 * index is out of range (the error message says which). Thread-safe like
 * forward. */
MM_API int mm_model_layer_trainable(const mm_model *model, size_t index);

/* Keep the first `n_layers` layers and free the rest (n_layers <= the
 * current count; equal is a no-op). MM_E_OUT_OF_RANGE otherwise. */
MM_API mm_status mm_model_truncate(mm_model *model, size_t n_layers);

/* Replace the last layer by a new trainable dense layer with the same
 * inputs, `units` outputs and activation `act`, initialised with
 * MM_INIT_AUTO from an RNG seeded with `seed` (the same seed gives the same
 * head everywhere). The model must have a layer. All or nothing: on error
 * (MM_E_INVALID_ARGUMENT for units 0 or an unknown activation,
 * MM_E_OUT_OF_MEMORY) the model is unchanged. Appends a lineage event
 * "replace_head". */
MM_API mm_status mm_model_replace_head(mm_model *model, size_t units, mm_activation act,
                                       uint64_t seed);

/* Human-readable multi-line description (layers, shapes, activations,
 * parameter counts, bytes). Writes at most `cap` bytes including the final
 * NUL into buf (truncating) and returns in *needed (may be NULL) the length
 * the full text needs, excluding the NUL, as snprintf does. */
MM_API mm_status mm_model_describe(const mm_model *model, char *buf, size_t cap, size_t *needed);

/* Lineage: a JSON array of events ({"op": ..., "time": ..., ...}) recording
 * what was done to the model (created, trained, updated, loaded from ...);
 * online steps appear as one "online_steps" event per run of consecutive
 * steps (mm_optimizer_step, doc/FORMAT.md §4.2). The string is owned by the
 * model and valid until it is next mutated (an optimizer step included).
 * Thread-safe like forward. NULL for a NULL model, or when the text of a
 * run of steps cannot be allocated (MM_E_OUT_OF_MEMORY). */
MM_API const char *mm_model_lineage(const mm_model *model);
/* Append an event; `detail_json` is a JSON object text or NULL. MM_E_FORMAT if
 * it does not parse as an object. */
MM_API mm_status mm_model_add_lineage(mm_model *model, const char *op, const char *detail_json);

/* Save to a model file (safetensors container, doc/FORMAT.md). Atomic: the
 * file is written to a temporary name, fsynced and renamed over `path`, so a
 * crash never leaves a half-written model. Thread-safe like forward. */
MM_API mm_status mm_model_save(const mm_model *model, const char *path);

/* Load a model file. Every field is validated; a truncated, corrupt or
 * hostile file gives MM_E_FORMAT / MM_E_CHECKSUM / MM_E_VERSION / MM_E_IO with a
 * message, never a crash. The caller owns *out. */
MM_API mm_status mm_model_load(mm_model **out, const char *path);

/* Same, from a memory buffer (borrowed; not kept). */
MM_API mm_status mm_model_load_buffer(mm_model **out, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* MM_MODEL_H */
