/* mmaint — mm_optimizer: online and batch learning for an mm_model.
 *
 * An optimizer borrows a model (the model must outlive it) and updates its
 * parameters in place. Algorithms (SGD with momentum/Nesterov, Adam, AdamW)
 * are vtables; settings go through enum-keyed setters with range checks, as
 * zstd's ZSTD_CCtx_setParameter does, so new settings never change the ABI.
 *
 * Online learning: mm_optimizer_step on one sample (or any small batch)
 * updates the model at once. Batch learning: mm_optimizer_fit runs epochs of
 * seeded-shuffled mini-batches with optional validation and early stopping.
 *
 * Thread safety: an optimizer and its model are used by one thread at a time.
 */
#ifndef MM_OPTIMIZER_H
#define MM_OPTIMIZER_H

#include "mm_common.h"
#include "mm_dataset.h"
#include "mm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_optimizer mm_optimizer;

typedef enum mm_optim_kind {
    MM_OPTIM_SGD = 1,   /* with optional momentum and Nesterov */
    MM_OPTIM_ADAM = 2,  /* weight decay added to the gradient (L2), as torch.optim.Adam */
    MM_OPTIM_ADAMW = 3  /* decoupled weight decay, as torch.optim.AdamW */
} mm_optim_kind;

typedef enum mm_schedule {
    MM_SCHEDULE_CONSTANT = 0,
    MM_SCHEDULE_STEP = 1,        /* lr * gamma^floor(step / step_size) */
    MM_SCHEDULE_EXPONENTIAL = 2, /* lr * gamma^step */
    MM_SCHEDULE_COSINE = 3       /* warmup lr*(step+1)/warmup_steps, then cosine decay to
                                    min_lr at total_steps, then min_lr; total_steps 0 =
                                    the end of the current fit */
} mm_schedule;

/* Settings. Values never renumber; new settings are appended. All values are
 * doubles; integer settings must hold integral values. Steps count optimizer
 * updates (mini-batches). */
typedef enum mm_opt_param {
    MM_OPT_LEARNING_RATE = 1,  /* (0, 1e3], default 1e-3 (adam/adamw), 1e-2 (sgd) */
    MM_OPT_MOMENTUM = 2,       /* [0, 1), default 0 (sgd) */
    MM_OPT_NESTEROV = 3,       /* 0 or 1, default 0; needs momentum > 0 */
    MM_OPT_WEIGHT_DECAY = 4,   /* [0, 10], default 0 (sgd, adam), 1e-2 (adamw) */
    MM_OPT_BETA1 = 5,          /* [0, 1), default 0.9 */
    MM_OPT_BETA2 = 6,          /* [0, 1), default 0.999 */
    MM_OPT_EPSILON = 7,        /* (0, 1], default 1e-8 */
    MM_OPT_CLIP_NORM = 8,      /* [0, 1e9], 0 = off: clip gradients to this global L2 norm */
    MM_OPT_SCHEDULE = 9,       /* an mm_schedule, default constant */
    MM_OPT_STEP_SIZE = 10,     /* [1, 1e12] steps between decays (step schedule), default 1000 */
    MM_OPT_GAMMA = 11,         /* (0, 1], decay factor (step, exponential), default 0.1 */
    MM_OPT_WARMUP_STEPS = 12,  /* [0, 1e12] (cosine), default 0 */
    MM_OPT_TOTAL_STEPS = 13,   /* [0, 1e12] (cosine); 0 = derive from epochs in fit, default 0 */
    MM_OPT_MIN_LR = 14,        /* [0, 1e3] (cosine floor), default 0 */
    MM_OPT_BATCH_SIZE = 15,    /* [1, 1e7] (fit), default 64 */
    MM_OPT_EPOCHS = 16,        /* [1, 1e6] (fit), default 1 */
    MM_OPT_SEED = 17,          /* [0, 2^53] shuffling seed (fit), default 0 */
    MM_OPT_SHUFFLE = 18,       /* 0 or 1 (fit), default 1 */
    MM_OPT_PATIENCE = 19,      /* [0, 1e6] epochs without validation improvement
                                  before stopping, 0 = no early stopping, default 0 */
    MM_OPT_RESTORE_BEST = 20,  /* 0 or 1: after early stopping, restore the
                                  weights of the best validation epoch; default 1 */
    MM_OPT_MAX_GRAD_NORM = 21, /* [0, 1e30], 0 = off (default): a step whose global
                                  gradient L2 norm (trainable layers) exceeds this
                                  fails with MM_E_NUMERIC and changes nothing */
    MM_OPT_GRAD_SPIKE = 22,    /* [0, 1e9], 0 = off (default): a step whose global
                                  gradient norm exceeds this many times the running
                                  average of the norms of earlier accepted steps
                                  (active after 8 steps) fails with MM_E_NUMERIC */
    MM_OPT_L2SP = 23,          /* [0, 1e6], 0 = off (default): L2-SP strength alpha;
                                  the loss gains alpha/2 * ||w - w0||^2 where w0 are
                                  the weights saved by mm_optimizer_set_anchor
                                  (gradient += alpha * (w - w0)); needs an anchor */
    MM_OPT_LINEAGE = 24        /* 0 or 1, default 1: mm_optimizer_step records its
                                  steps in the model's lineage ("online_steps"
                                  events, see mm_optimizer_step); 0 for a program
                                  that records its own events for them. Not saved
                                  with the optimizer state. */
} mm_opt_param;

/* Name of a setting ("learning_rate") or NULL; and the reverse lookup. */
MM_API const char *mm_opt_param_name(mm_opt_param param);
MM_API mm_status mm_opt_param_from_name(const char *name, mm_opt_param *out);
/* Name of an algorithm ("sgd", "adam", "adamw") and the reverse. */
MM_API const char *mm_optim_kind_name(mm_optim_kind kind);
MM_API mm_status mm_optim_kind_from_name(const char *name, mm_optim_kind *out);

/* Valid closed range of a setting (for UIs and bindings). */
MM_API mm_status mm_opt_param_bounds(mm_opt_param param, double *lo, double *hi);

/* Names of the values of enum-valued settings, so that bindings, the CLI
 * and UIs take names ("cosine") without name tables of their own. The same
 * pair exists for every object with settings (mm_prune_value_from_name,
 * mm_quant_value_from_name, mm_maint_value_from_name). Here the one named
 * setting is MM_OPT_SCHEDULE: "constant", "step", "exponential", "cosine"
 * (mm_schedule).
 * mm_opt_value_from_name stores in *value the number `name` stands for,
 * ready for mm_optimizer_set. Errors: MM_E_INVALID_ARGUMENT for an unknown
 * setting, NULL pointers, or a name that is not one of the setting's (the
 * message lists the valid names); MM_E_UNSUPPORTED for a setting that takes
 * plain numbers (learning_rate).
 * mm_opt_value_name is the reverse: the static name of `value` of setting
 * `param`, or NULL when the setting takes plain numbers or `value` is not
 * one of its named values.
 * Both are pure functions of their arguments: thread-safe. */
MM_API mm_status mm_opt_value_from_name(mm_opt_param param, const char *name, double *value);
MM_API const char *mm_opt_value_name(mm_opt_param param, double value);

/* Create an optimizer of `kind` for `model` (borrowed: the model must
 * outlive the optimizer and have at least one layer). Caller owns *out. */
MM_API mm_status mm_optimizer_create(mm_optimizer **out, mm_model *model, mm_optim_kind kind);
/* NULL is a no-op. */
MM_API void mm_optimizer_free(mm_optimizer *opt);

/* Change a setting. Out of range → MM_E_OUT_OF_RANGE naming the setting and
 * the range; a setting the algorithm does not use (beta1 for sgd) →
 * MM_E_UNSUPPORTED. */
MM_API mm_status mm_optimizer_set(mm_optimizer *opt, mm_opt_param param, double value);
MM_API mm_status mm_optimizer_get(const mm_optimizer *opt, mm_opt_param param, double *value);

MM_API mm_optim_kind mm_optimizer_kind(const mm_optimizer *opt);
/* The model the optimizer updates (borrowed). */
MM_API mm_model *mm_optimizer_model(const mm_optimizer *opt);
/* Number of updates done so far (drives schedules and Adam bias correction). */
MM_API uint64_t mm_optimizer_steps(const mm_optimizer *opt);
/* Learning rate the next step will use (after the schedule). */
MM_API double mm_optimizer_current_lr(const mm_optimizer *opt);

/* Online learning: one forward/backward pass over n samples and one update.
 * Targets as for mm_model_evaluate. *loss (may be NULL) receives the mean loss
 * before the update.
 * Numeric trouble gives MM_E_NUMERIC and leaves the model's parameters and
 * the optimizer's state (moments, counters, running gradient norm) exactly as
 * they were: an input, the loss or a gradient that is not finite; an update
 * that could overflow a weight or a state value to infinity (a huge learning
 * rate, weight decay on a huge weight, a huge gradient); a gradient norm
 * above MM_OPT_MAX_GRAD_NORM or a spike above MM_OPT_GRAD_SPIKE times its
 * running average. The message names the layer and suggests a remedy
 * (lower the learning rate, MM_OPT_CLIP_NORM, scaling the loss or inputs).
 * MM_E_STATE if Nesterov is on with momentum 0, if every layer is frozen, or
 * if the model's layers changed since the optimizer was created or last
 * synced (call mm_optimizer_sync) — mm_pruner_finalize(p, model, opt)
 * carries the optimizer's state over by itself.
 * Frozen layers (mm_model_set_trainable) and layers whose learning-rate
 * scale is 0 are not updated and their state does not change.
 * Plain SGD (no momentum, weight decay, clipping or gradient-norm guards)
 * takes a fused path that updates weights straight from the backpropagated
 * deltas; it leaves the model's gradient buffers (mm_model_get_gradients)
 * untouched.
 * Lineage (MM_OPT_LINEAGE, on by default): successful steps are recorded in
 * the model's lineage coalesced, one "online_steps" event per run of
 * consecutive steps by this optimizer with unchanged settings: steps,
 * samples, the positions of the run's first and last sample among all the
 * samples the model learned online (counted from 0, continued across
 * save/load), the algorithm, the scheduled learning rate of its first (and
 * last) step, and the times of both (doc/FORMAT.md §4.2). A step costs a
 * few stores; the event text is built when the lineage is read, saved or
 * cloned. Any other lineage event (fit, prune, quantize, replace_head,
 * mm_model_add_lineage), a change of setting or layer lr scale, or a step
 * by another optimizer ends the run; saving does not. Fit's mini-batches
 * are not online steps (fit records its own "fit" event). */
MM_API mm_status mm_optimizer_step(mm_optimizer *opt, const float *x, const int32_t *labels,
                                   const float *targets, size_t n, double *loss);

/* L2-SP (Li et al. 2018, "explicit inductive bias for transfer learning"):
 * copy the model's current trainable parameters as the anchor w0 that
 * MM_OPT_L2SP pulls the weights back to (typically the deployed version,
 * so online updates do not drift far from it). Calling it again re-anchors
 * at the current weights. Every algorithm and fit use it; plain SGD leaves
 * its fused path while MM_OPT_L2SP > 0 (the model's gradient buffers then
 * hold the penalised gradient). Masked (pruned) weights stay 0. The anchor
 * is dropped by structure changes (mm_optimizer_sync, mm_pruner_finalize)
 * and is not saved by mm_optimizer_save: a step with MM_OPT_L2SP > 0 and no
 * anchor fails with MM_E_STATE. MM_E_STATE if the model changed and the
 * optimizer was not synced; MM_E_OUT_OF_MEMORY leaves no anchor. */
MM_API mm_status mm_optimizer_set_anchor(mm_optimizer *opt);
/* Forget the anchor (NULL is a no-op). */
MM_API void mm_optimizer_clear_anchor(mm_optimizer *opt);
/* 1 if every trainable parameter has an anchor, else 0. */
MM_API int mm_optimizer_has_anchor(const mm_optimizer *opt);

/* Per-layer learning rates: the update of layer `layer` uses the scheduled
 * learning rate times `scale` (in [0, 1e3], default 1; for AdamW the
 * decoupled decay too, as a PyTorch parameter group's lr). A scale of 0
 * behaves as a frozen layer for this optimizer: no update, no decay, no
 * state change (its gradients are still computed; freeze the layer with
 * mm_model_set_trainable to skip them). Scales follow their layer through
 * mm_optimizer_sync and are saved by mm_optimizer_save.
 * MM_E_OUT_OF_RANGE for a bad layer index or scale, MM_E_UNSUPPORTED for a
 * layer without trainable parameters, MM_E_STATE if the model changed and
 * the optimizer was not synced. */
MM_API mm_status mm_optimizer_set_layer_lr_scale(mm_optimizer *opt, size_t layer, double scale);
MM_API mm_status mm_optimizer_get_layer_lr_scale(const mm_optimizer *opt, size_t layer,
                                                 double *scale);

/* Adopt the model's current layer list after a structure change
 * (mm_model_replace_head, mm_model_truncate, mm_model_add_dense): the state
 * (moments, per-parameter step counters, lr scales) of layers still in the
 * model is kept, layers that are new start with fresh state (zero moments,
 * step counter 0, scale 1), removed layers' state is freed. The global step
 * counter (schedules) is kept. All or nothing: MM_E_OUT_OF_MEMORY leaves the
 * optimizer as it was. A no-op when nothing changed. */
MM_API mm_status mm_optimizer_sync(mm_optimizer *opt);

/* Progress report passed to the fit callback. Read-only for the callback.
 * `struct_size` is sizeof the struct the library filled: fields are only ever
 * appended, so check it before reading a field added in a later version. */
typedef enum mm_fit_event {
    MM_FIT_BATCH = 0,    /* after each mini-batch */
    MM_FIT_EPOCH_END = 1 /* after each epoch (validation fields filled) */
} mm_fit_event;

typedef struct mm_fit_progress {
    uint32_t struct_size;
    mm_fit_event event;
    uint32_t epoch;          /* 0-based epoch of this fit */
    uint32_t epochs;         /* epochs planned */
    uint64_t batch;          /* batches done in this epoch */
    uint64_t batches;        /* batches per epoch */
    uint64_t step;           /* optimizer steps so far (all time) */
    double train_loss;       /* running mean loss over this epoch so far */
    double train_accuracy;   /* running accuracy this epoch (NaN for MSE without labels) */
    double val_loss;         /* NaN unless a validation set was given (epoch end) */
    double val_accuracy;     /* NaN unless a validation set was given (epoch end) */
    double learning_rate;    /* lr used for the last step */
    double elapsed_seconds;  /* since fit began */
    double samples_per_second;
} mm_fit_progress;

/* Return non-zero to stop fitting (mm_optimizer_fit then returns
 * MM_E_CANCELLED; the model keeps the updates done so far). */
typedef int (*mm_fit_callback)(const mm_fit_progress *progress, void *user);

/* Batch learning on `train` (borrowed; needs labels, or an MSE model) for
 * MM_OPT_EPOCHS epochs of MM_OPT_BATCH_SIZE mini-batches, shuffled with
 * MM_OPT_SEED (the order of epoch e depends only on the seed and the
 * optimizer's epoch counter, so resumed training reshuffles exactly as
 * uninterrupted training would). `val` may be NULL; with it, each epoch ends
 * with an evaluation, and MM_OPT_PATIENCE > 0 stops early. `cb` may be NULL.
 * `result` (may be NULL) receives the last progress report. */
MM_API mm_status mm_optimizer_fit(mm_optimizer *opt, const mm_dataset *train,
                                  const mm_dataset *val, mm_fit_callback cb, void *user,
                                  mm_fit_progress *result);

/* Save model + optimizer state (moments, step and epoch counters, settings,
 * per-layer lr scales, the running gradient norm) in one model file, atomically, so that load + continue is bit-identical to
 * never stopping. */
MM_API mm_status mm_optimizer_save(const mm_optimizer *opt, const char *path);

/* Restore the optimizer state stored by mm_optimizer_save into a new
 * optimizer for `model` (borrowed; typically loaded from the same file with
 * mm_model_load). MM_E_NOT_FOUND if the file holds no optimizer state,
 * MM_E_SHAPE if the model does not match. Caller owns *out. */
MM_API mm_status mm_optimizer_load(mm_optimizer **out, mm_model *model, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* MM_OPTIMIZER_H */
