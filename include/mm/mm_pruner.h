/* mmaint — mm_pruner: make a model really smaller and faster.
 *
 * A pruner ranks weights (unstructured) or hidden neurons (structured) by a
 * criterion, each a vtable, and removes the least important ones:
 *
 *   - mm_pruner_apply: one shot to the target sparsity. Pruned weights get a
 *     mask on the model: they are zero and stay zero during later training
 *     (optimizers honour masks, and their momentum/Adam state for pruned
 *     weights is cleared so it cannot revive them). Masks are saved in the
 *     model file.
 *   - mm_pruner_attach: gradual pruning while an optimizer trains, with the
 *     polynomial schedule of Zhu & Gupta (2017):
 *       s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0))^power,
 *     the masks recomputed every `frequency` steps between t0 and t_end.
 *   - mm_pruner_finalize: structured pruning physically removes neurons
 *     (rows of W_l and b_l, columns of W_{l+1}, and their optimizer state), so
 *     the dense layers are smaller; unstructured pruning turns a masked layer
 *     into a sparse layer kind with its own kernels, where that is faster.
 *
 * Sparsity is the fraction of weights (biases excluded) that are zero, or of a
 * hidden layer's neurons removed. Output neurons are never removed.
 * Each call records what it did in the model's lineage.
 *
 * Thread safety: a pruner is used by one thread at a time; apply, finalize
 * and attached optimizer steps mutate the model (exclusive access).
 */
#ifndef MM_PRUNER_H
#define MM_PRUNER_H

#include "mm_common.h"
#include "mm_model.h"
#include "mm_optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_pruner mm_pruner;

typedef enum mm_prune_criterion {
    MM_PRUNE_MAGNITUDE = 1,         /* unstructured |w|, each layer to the target */
    MM_PRUNE_MAGNITUDE_GLOBAL = 2,  /* unstructured |w| ranked across all pruned layers */
    MM_PRUNE_RANDOM = 3,            /* unstructured, uniform at random (a baseline) */
    MM_PRUNE_NEURON_L1 = 4,         /* structured: L1 norm of a neuron's incoming weights */
    MM_PRUNE_NEURON_L2 = 5,         /* structured: L2 norm of a neuron's incoming weights */
    MM_PRUNE_NEURON_ACTIVATION = 6, /* structured: mean activation on calibration data
                                       (mm_pruner_calibrate first) */
    MM_PRUNE_USER = 7,              /* unstructured: a score per weight (mm_pruner_set_scores) */
    MM_PRUNE_NEURON_USER = 8        /* structured: a score per neuron (mm_pruner_set_scores) */
} mm_prune_criterion;

typedef enum mm_prune_schedule {
    MM_PRUNE_ONE_SHOT = 0,
    MM_PRUNE_POLYNOMIAL = 1 /* Zhu & Gupta (2017) */
} mm_prune_schedule;

typedef enum mm_prune_sparse_format {
    MM_PRUNE_FORMAT_AUTO = 0,  /* sparse kind only where faster than dense (finalize) */
    MM_PRUNE_FORMAT_SPARSE = 1,/* always convert masked layers to the sparse kind */
    MM_PRUNE_FORMAT_DENSE = 2  /* keep dense layers with zeros (no conversion) */
} mm_prune_sparse_format;

/* Settings (doubles; integer settings must be integral). Values are never
 * renumbered; new settings are appended. */
typedef enum mm_prune_param {
    MM_PRUNE_SPARSITY = 1,         /* target (final) sparsity s_f, [0, 1), default 0.5 */
    MM_PRUNE_SCHEDULE = 2,         /* an mm_prune_schedule, default one-shot */
    MM_PRUNE_INITIAL_SPARSITY = 3, /* s_i, [0, 1), default 0 */
    MM_PRUNE_BEGIN_STEP = 4,       /* t0, [0, 1e12], default 0 */
    MM_PRUNE_END_STEP = 5,         /* t_end, [1, 1e12], > t0, default 1000 */
    MM_PRUNE_FREQUENCY = 6,        /* steps between mask updates, [1, 1e12], default 100 */
    MM_PRUNE_POWER = 7,            /* exponent, [1, 10], default 3 */
    MM_PRUNE_SEED = 8,             /* random criterion, [0, 2^53], default 0 */
    MM_PRUNE_OUTPUT_LAYER = 9,     /* 0/1: unstructured pruning includes the last layer,
                                      default 1 */
    MM_PRUNE_SPARSE_FORMAT = 10,   /* an mm_prune_sparse_format, default auto */
    MM_PRUNE_REORDER_NEURONS = 11  /* 0/1: finalize may reorder the hidden neurons of
                                      layers it makes sparse (see finalize), default 1 */
} mm_prune_param;

MM_API const char *mm_prune_criterion_name(mm_prune_criterion c);
MM_API mm_status mm_prune_criterion_from_name(const char *name, mm_prune_criterion *out);
MM_API const char *mm_prune_param_name(mm_prune_param p);
MM_API mm_status mm_prune_param_from_name(const char *name, mm_prune_param *out);
MM_API mm_status mm_prune_param_bounds(mm_prune_param p, double *lo, double *hi);

/* Names of the values of enum-valued settings, as mm_opt_value_from_name /
 * mm_opt_value_name (same errors; thread-safe): MM_PRUNE_SCHEDULE takes
 * "one_shot", "polynomial" (mm_prune_schedule), MM_PRUNE_SPARSE_FORMAT
 * "auto", "sparse", "dense" (mm_prune_sparse_format); the other settings
 * take plain numbers (MM_E_UNSUPPORTED). */
MM_API mm_status mm_prune_value_from_name(mm_prune_param p, const char *name, double *value);
MM_API const char *mm_prune_value_name(mm_prune_param p, double value);

/* Create a pruner; the caller owns *out. */
MM_API mm_status mm_pruner_create(mm_pruner **out, mm_prune_criterion criterion);
/* NULL is a no-op. Detaches it from any optimizer first. */
MM_API void mm_pruner_free(mm_pruner *p);

MM_API mm_status mm_pruner_set(mm_pruner *p, mm_prune_param param, double value);
MM_API mm_status mm_pruner_get(const mm_pruner *p, mm_prune_param param, double *value);
MM_API mm_prune_criterion mm_pruner_criterion(const mm_pruner *p);

/* Per-layer target overriding MM_PRUNE_SPARSITY for layer `index`; 0 leaves
 * the layer untouched. Layer-wise criteria only (not the global one). */
MM_API mm_status mm_pruner_set_layer_sparsity(mm_pruner *p, size_t index, double sparsity);

/* Importance scores for MM_PRUNE_USER (len = the layer's weight count,
 * W[o*in+i] layout) or MM_PRUNE_NEURON_USER (len = the layer's outputs).
 * Copied. Higher = more important. NaN is refused. */
MM_API mm_status mm_pruner_set_scores(mm_pruner *p, size_t index, const float *scores,
                                      size_t len);

/* Collect mean activations of every hidden neuron over n samples (x is
 * n*input_dim floats) for MM_PRUNE_NEURON_ACTIVATION. The model is only
 * read. MM_E_INVALID_ARGUMENT if n == 0. */
MM_API mm_status mm_pruner_calibrate(mm_pruner *p, const mm_model *model, const float *x,
                                     size_t n);

/* Prune `model` to the target sparsity now (structured: masks whole
 * neurons). Returns MM_E_STATE for the activation criterion without
 * calibration, MM_E_INVALID_ARGUMENT if a layer would lose every neuron. */
MM_API mm_status mm_pruner_apply(mm_pruner *p, mm_model *model);

/* Gradual pruning: from now on each mm_optimizer_step / fit step of `opt`
 * updates the masks of opt's model on the pruner's schedule (counted in the
 * optimizer's steps). The pruner is borrowed: detach (NULL) or free the
 * optimizer before freeing it. Pass p = NULL to detach. */
MM_API mm_status mm_pruner_attach(mm_pruner *p, mm_optimizer *opt);

/* Target sparsity of the schedule at optimizer step `step`. */
MM_API mm_status mm_pruner_sparsity_at(const mm_pruner *p, uint64_t step, double *sparsity);

/* Make the pruning physical (see above). `opt` (may be NULL) is the
 * optimizer training the model: its state is shrunk with the neurons so
 * training can go on. The pruner is detached. Layers that stay dense keep
 * their weight masks (pruned weights stay zero in later training, and the
 * model file stores only the kept weights).
 * With MM_PRUNE_REORDER_NEURONS (the default), the hidden neurons of a
 * layer that becomes sparse are put in the order that makes its sparse
 * kernel fastest (neurons with like numbers of kept weights side by side;
 * 1.2-1.3x at batch 1 on the 90% benchmark model): the rows of W_l and b_l
 * and the columns of W_{l+1} move together, so the model computes the same
 * function (up to float rounding: sums run in another order), but hidden
 * neuron j is no longer at index j. The lineage records the new order
 * ("neuron_order": old index of each neuron). Set it to 0 to keep hidden
 * neurons where they are. */
MM_API mm_status mm_pruner_finalize(mm_pruner *p, mm_model *model, mm_optimizer *opt);

/* Number of weights + biases that are not zero (masked weights count as
 * zero; sparse layers count stored entries). */
MM_API size_t mm_model_num_nonzero(const mm_model *model);

/* Fraction of the weights (biases excluded) of layer `index` that are zero
 * or pruned. */
MM_API mm_status mm_model_layer_sparsity(const mm_model *model, size_t index, double *sparsity);

#ifdef __cplusplus
}
#endif
#endif /* MM_PRUNER_H */
