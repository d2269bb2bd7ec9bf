/* Internals of mm_optimizer shared by optimizer.c, the algorithm files
 * (sgd.c, adam.c), schedule.c, fit.c and state.c. Never installed.
 *
 * An optimizer walks the model's trainable tensors (model->layers[l]->params[j]
 * with a non-NULL grad) as a flat list of "slots". Each slot owns the
 * algorithm's state tensors for that parameter (momentum buffer; Adam's m and
 * v), 64-byte aligned, allocated on the first step that needs them.
 *
 * Decisions worth knowing:
 *  - Settings live in a double array indexed by mm_opt_param.
 *  - The model's layer structure is recorded at create time, each slot
 *    naming its layer by position and identity (mm_layer_uid, so a new head
 *    of the same shape is still "another layer"); if layers or parameter
 *    shapes change afterwards (add_dense, replace_head, truncate, a layer
 *    swapped behind the optimizer's back), step and fit fail with
 *    MM_E_STATE until mm_optimizer_sync adopts the new list (remap.c).
 *    Code that changes layers on purpose (mm_pruner_finalize) carries the
 *    state over with mm_opt_remap_*.
 *  - Transfer learning: a slot is "active" when its layer is trainable and
 *    its lr scale is > 0. Inactive slots are skipped by every pass of a
 *    step (checks, norms, bounds, update), so their parameters, state and
 *    step counter t stay bit-identical. Each slot counts its own updates
 *    (t) and Adam's bias correction uses it, as torch.optim.Adam's
 *    per-parameter state['step'] does: a layer unfrozen late, or a new
 *    head, starts with a correctly bias-corrected first update instead of
 *    a 3x-too-large one. With no frozen layers every t equals opt->step, so
 *    results are unchanged.
 *  - Overflow guard: before anything is written, the general path proves
 *    with the algorithm's `safe` bound that no intermediate or result of the
 *    update can exceed MM_OPT_SAFE_LIMIT, from max|g| per active slot (the
 *    finiteness pass it needs anyway) and bounds of max|p| and max|state|;
 *    otherwise the step fails with MM_E_NUMERIC and nothing changes. (An
 *    exact undo after the fact is not possible in float arithmetic, and a
 *    copy of the parameters would cost more.) The bounds of p and state are
 *    carried from step to step by `safe` itself (upper bounds of what the
 *    update can produce), so the common step reads no extra weights; they
 *    are measured (vectorised integer max over the bit patterns) when
 *    unknown, when the layer's parameters were written by someone else
 *    (mm_layer_params_changed bumps layer->version), and before a refusal,
 *    so loose carried bounds never refuse a step the measured values allow.
 *    The fused SGD path needs no weight bound: lr*n*max|delta|*max|x| <
 *    1e30 is below half an ulp of FLT_MAX, so a finite weight cannot round
 *    to infinity.
 *  - Pruning masks (mm_param.mask) are honoured: before each update one
 *    pass over the masked parameters (unmasked ones are skipped) sets the
 *    weight, its gradient and its state entries (momentum, Adam m and v) to
 *    0 at every masked position. With a zero weight, gradient and state,
 *    every algorithm's update leaves all three exactly 0 (SGD: 0 + (-lr)*0;
 *    Adam: m = v = 0, 0 + (-s*0)/(0 + eps*c2) = 0; decay multiplies 0), so
 *    masked weights stay exactly 0 and no state can revive them, and the
 *    gradient norm used for clipping ignores them. The fused SGD path has no
 *    gradient buffers or state: it zeroes masked weights after its update.
 *  - Nesterov with momentum 0 is accepted by the setters (settings may be
 *    given in any order) and refused at step time with MM_E_STATE.
 *  - Gradient clipping does not modify the model's gradient buffers: the clip
 *    factor is folded into the update (torch.nn.utils.clip_grad_norm_ scales
 *    the .grad tensors in place; the resulting weights are the same).
 *  - Finiteness: inputs are checked before the backward pass (a NaN input
 *    does not always show in the loss: relu maps NaN to 0); the loss is
 *    checked by mm_model_backward; the gradients by one vectorised read-only
 *    pass over the exponent bits (integer ops, so -ffast-math cannot remove
 *    it) before anything is written, or, with clipping on, by the global norm
 *    that clipping needs anyway. A non-finite gradient therefore never
 *    reaches weights or optimizer state. (The pass costs ~10% of an online
 *    SGD step; folding it into the update would need an exact undo, which
 *    float arithmetic does not give.)
 *  - L2-SP (MM_OPT_L2SP = alpha > 0): each active slot holds a copy of its
 *    parameter taken by mm_optimizer_set_anchor, and the general path adds
 *    alpha * (w - w0) to the gradient right after the backward pass (before
 *    masks, checks, clipping and the algorithm), i.e. the gradient of
 *    alpha/2 * ||w - w0||^2. Masked positions get their gradient zeroed by
 *    the mask pass afterwards, so the penalty cannot revive pruned weights.
 *    The fused SGD path is not taken while alpha > 0. Structure changes
 *    (sync, remap) drop the anchor.
 *  - Adam's and SGD momentum's state is flushed to zero when subnormal
 *    (mm_opt_ftz).
 */
#ifndef MM_OPTIM_INTERNAL_H
#define MM_OPTIM_INTERNAL_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model_internal.h"
#include "mm/mm_optimizer.h"

#define MM_OPT_PARAM_FIRST 1
#define MM_OPT_PARAM_LAST 24 /* MM_OPT_LINEAGE */
#define MM_OPT_PARAM_COUNT (MM_OPT_PARAM_LAST + 1)
#define MM_OPT_BIT(p) (1u << (unsigned)(p))
#define MM_OPTIM_MAX_STATE 2

/* Runtime dispatch of the element loops. Each hot loop is written once in
 * portable C (blocked so it vectorises at -O2: GCC's "very cheap" cost model
 * refuses loops whose trip count is unknown) and, on x86-64 with GCC or
 * clang, compiled a second time for AVX2 via the target attribute; the AVX2
 * copy is used when the CPU has it (checked once per process, see
 * mm_opt_simd_avx2). Define MM_OPT_PORTABLE_ONLY to build only the portable
 * copy. Neither copy enables FMA, so nothing can be contracted and both give
 * bit-identical results. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MM_OPT_PORTABLE_ONLY)
#  define MM_OPT_X86 1
#  define MM_OPT_AVX2 __attribute__((target("avx2")))
/* True if the AVX2 copies may be used (CPU support, env MM_OPT_SIMD != "0"). */
bool mm_opt_simd_avx2(void);
#else
#  define MM_OPT_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define MM_OPT_INLINE static inline __attribute__((always_inline))
#else
#  define MM_OPT_INLINE static inline
#endif

/* Optimizer state is flushed to zero when it becomes subnormal. A momentum
 * or moment buffer whose gradient stays 0 (a dead relu unit) decays into the
 * subnormal range and then sticks there (0.9 * tiny rounds back to tiny),
 * and subnormal arithmetic costs ~100 cycles per element on x86: measured
 * 2.5x slower Adam steps on a 784-256-128-10 model. A subnormal buffer value
 * (< 1.2e-38) moves no weight of normal size, so zeroing it changes nothing
 * visible; both loop copies flush the same way, so results stay
 * bit-identical. Used as x = mm_opt_ftz(x). */
MM_OPT_INLINE float mm_opt_ftz(float x) { return fabsf(x) < FLT_MIN ? 0.0f : x; }

/* Block width of the element loops. */
#define MM_VBLOCK 16

/* Per-step constants computed once by the algorithm's prepare(), so the
 * element loops do float arithmetic only. */
typedef struct mm_opt_step_ctx {
    float neg_lr;  /* -lr */
    float gscale;  /* clip factor (1 when not clipping) */
    float wd;      /* weight decay for params with decay = true */
    float c[8];    /* algorithm-specific */
    int variant;   /* algorithm-specific loop selection */
} mm_opt_step_ctx;

/* One algorithm: a static const table. */
typedef struct mm_optim_algo {
    mm_optim_kind kind;
    const char *name;
    double default_lr;
    double default_weight_decay;
    uint32_t uses; /* MM_OPT_BIT()s of the algorithm-specific settings it reads */
    size_t n_state;
    const char *state_names[MM_OPTIM_MAX_STATE];
    /* State tensors that are never negative (Adam's running mean of squared
     * gradients, whose square root the update takes): loading refuses a
     * negative element. */
    bool state_nonneg[MM_OPTIM_MAX_STATE];
    /* Does the next step need state tensors? (SGD without momentum does
     * not.) NULL = always. */
    bool (*needs_state)(const mm_optimizer *opt);
    /* Step-time validation of combined settings; NULL = none. */
    mm_status (*validate)(const mm_optimizer *opt);
    /* Fill ctx for the update numbered t (1-based) with learning rate lr. */
    void (*prepare)(const mm_optimizer *opt, double lr, uint64_t t, mm_opt_step_ctx *ctx);
    /* Update n elements of one parameter tensor. state[] has n_state
     * pointers (NULL when needs_state said no). */
    void (*update)(const mm_opt_step_ctx *ctx, float *p, const float *g, float *const *state,
                   size_t n, bool decay);
    /* True if `update` with ctx provably keeps every intermediate and every
     * written value below MM_OPT_SAFE_LIMIT in magnitude, given bounds on
     * |g| (before the clip factor), |p| and |state[k]| (S[k]; 0 when there is
     * no state); then *P_next and S_next[] receive bounds of |p| and
     * |state[k]| after the update. */
    bool (*safe)(const mm_opt_step_ctx *ctx, double G, double P, const double *S, bool decay,
                 double *P_next, double *S_next);
} mm_optim_algo;

/* Magnitude the overflow guard keeps updates below (FLT_MAX is 3.4e38; the
 * margin absorbs float rounding of the bounds). */
#define MM_OPT_SAFE_LIMIT 1e37

extern const mm_optim_algo mm_optim_algo_sgd;
extern const mm_optim_algo mm_optim_algo_adam;
extern const mm_optim_algo mm_optim_algo_adamw;

/* A hook run by every step after the input checks and before the
 * forward/backward pass (the gradual pruner, lib/prune): it may change the
 * model's masks and weights, not its layers. An error from before_step
 * aborts the step (no update). `detached` tells the owner of ctx that the
 * optimizer no longer calls it (the optimizer is being freed, or another
 * hook replaced it). */
typedef struct mm_opt_hook {
    mm_status (*before_step)(void *ctx, mm_optimizer *opt);
    void (*detached)(void *ctx, mm_optimizer *opt);
    void *ctx; /* NULL = no hook */
} mm_opt_hook;

typedef struct mm_opt_slot {
    size_t layer, index; /* model->layers[layer]->params[index] */
    uint64_t uid;        /* mm_layer_uid of that layer */
    size_t rows, cols;
    float *state[MM_OPTIM_MAX_STATE];
    uint64_t t;          /* updates applied to this parameter */
    double lr_scale;     /* per-layer learning-rate multiplier */
    double gmax;         /* scratch of one step: max |gradient| */
    float *anchor;       /* L2-SP anchor weights (mm_optimizer_set_anchor) or NULL */
    /* Overflow guard: upper bounds of max |param| and max |state[k]|, valid
     * while the layer's version equals pver (pbound < 0: unknown), and the
     * bounds after the step being checked (committed when it succeeds). */
    double pbound, sbound[MM_OPTIM_MAX_STATE];
    uint64_t pver;
    double pnext, snext[MM_OPTIM_MAX_STATE];
} mm_opt_slot;

struct mm_optimizer {
    const mm_optim_algo *algo;
    mm_model *model;
    double set[MM_OPT_PARAM_COUNT]; /* settings indexed by mm_opt_param */
    uint64_t step;        /* updates done */
    uint64_t epoch;       /* completed fit epochs (drives shuffling) */
    uint64_t sched_total; /* cosine horizon derived by the last fit (TOTAL_STEPS 0) */
    size_t n_layers;      /* model->n_layers when created */
    mm_opt_slot *slots;
    size_t n_slots;
    bool has_state;       /* slots' state tensors are allocated */
    double gnorm_avg;     /* running mean of accepted steps' gradient norms */
    uint64_t gnorm_count; /* steps that entered gnorm_avg */
    mm_opt_hook hook;     /* the attached pruner, if any */
    /* Lineage of online steps (mm_lineage_note_steps): a process-unique id,
     * and a generation counter bumped by every settings change, so that a
     * run of steps ends when the optimizer or its settings change. */
    uint64_t uid;
    uint64_t settings_gen;
};

/* Install (hook != NULL with a ctx) or remove (NULL) the step hook. A
 * previous hook with another ctx is told through its `detached`. */
void mm_opt_set_hook(mm_optimizer *opt, const mm_opt_hook *hook);

/* Set every masked weight (and, with grads, its gradient) and its state
 * entries to 0. Parameters without masks are skipped. */
void mm_opt_apply_masks(mm_optimizer *opt, bool grads);

/* ---- carrying state across layer replacement (mm_pruner_finalize) ----
 *
 * When layers of the optimizer's model are replaced by others (a shrunk
 * dense layer, a sparse layer), the optimizer's slots and state are rebuilt
 * for the new parameter list in two phases, so that the caller can make
 * the whole change atomic: prepare allocates everything (and may fail,
 * changing nothing), then the caller swaps the layers into the model, then
 * commit installs the prepared slots (it cannot fail). */
typedef struct mm_opt_param_map {
    size_t old_index;     /* index of the old layer's param whose state this
                             param inherits, or SIZE_MAX: fresh (zero) state */
    const size_t *gather; /* new element e inherits old element gather[e];
                             NULL: same element count, element by element */
} mm_opt_param_map;

typedef struct mm_opt_remap mm_opt_remap;

/* new_layers[l] is the layer that will sit at position l (the model keeps
 * its number of layers); maps[l] is NULL for a layer that stays as it is,
 * else one entry per param of new_layers[l]. MM_E_STATE if the optimizer
 * no longer matches its model. */
mm_status mm_opt_remap_prepare(const mm_optimizer *opt, mm_layer *const *new_layers,
                               const mm_opt_param_map *const *maps, mm_opt_remap **out);
/* Install a prepared remap (after the model holds the new layers) and
 * free it. */
void mm_opt_remap_commit(mm_optimizer *opt, mm_opt_remap *r);
/* Discard a prepared remap. NULL is a no-op. */
void mm_opt_remap_free(mm_opt_remap *r);

/* Settings table (optimizer.c). */
bool mm_opt_param_valid(int param);
bool mm_opt_param_is_integer(mm_opt_param param);
/* Does this optimizer's algorithm use `param`? */
bool mm_opt_param_applies(const mm_optimizer *opt, mm_opt_param param);

/* Learning rate of the update that follows `step` updates (schedule.c). */
double mm_opt_schedule_lr(const mm_optimizer *opt, uint64_t step);

/* Allocate state tensors (zeroed) for every slot if not done yet. */
mm_status mm_opt_ensure_state(mm_optimizer *opt);

/* The parameter a slot refers to (after mm_opt_check_model succeeded). */
static inline mm_param *mm_opt_slot_param(const mm_optimizer *opt, const mm_opt_slot *s) {
    return &opt->model->layers[s->layer]->params[s->index];
}

/* MM_E_STATE if the model's layers no longer match the slots. */
mm_status mm_opt_check_model(const mm_optimizer *opt);

/* Does step update this slot? (trainable layer, lr scale > 0) */
static inline bool mm_opt_slot_active(const mm_optimizer *opt, const mm_opt_slot *s) {
    return !opt->model->layers[s->layer]->frozen && s->lr_scale > 0.0;
}

/* Fill a slot's bookkeeping for layer l, param j of the model (state NULL,
 * t 0, lr scale 1). */
void mm_opt_slot_init(mm_opt_slot *s, mm_layer *layer, size_t l, size_t j);

/* The body of mm_optimizer_step (fit calls it per mini-batch, after
 * validating its arguments once). */
mm_status mm_opt_step_impl(mm_optimizer *opt, const float *x, const int32_t *labels,
                           const float *targets, size_t n, double *loss);

/* Element loops shared by the algorithms (optimizer.c). */
/* Largest |v[i]| as IEEE bits (>= 0x7f800000 means a NaN or infinity). */
uint32_t mm_opt_max_abs_bits(const float *v, size_t n);
/* The float with these bits; infinity for NaN patterns. */
double mm_opt_bits_value(uint32_t bits);
/* Sum of g[i]^2 (float lanes, combined in double); NaN/Inf propagate. */
double mm_opt_sum_squares(const float *g, size_t n);

#endif
