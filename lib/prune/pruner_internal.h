/* Internals of mm_pruner shared by pruner.c (settings, masks, schedules,
 * lineage), criteria.c (the criterion tables and exact selection) and
 * shrink.c (finalize). Never installed.
 *
 * Decisions worth knowing:
 *  - Masks live on the model (mm_param.mask, uint8 1 = keep, 0 = pruned,
 *    malloc'd with the parameter's count, owned by the layer). Unstructured
 *    pruning masks weights only. Structured pruning of neuron j of hidden
 *    layer l masks row j of W_l, b_l[j] (biases get a mask too: that is how
 *    a pruned neuron is recognised) and column j of W_{l+1}, after folding
 *    f(0) * W_{l+1}[:, j] into b_{l+1} (f = layer l's activation; f(0) is 0
 *    except for sigmoid, 0.5), so the masked model computes exactly what the
 *    shrunk one will.
 *  - Masks only grow. An already pruned weight (neuron) ranks below every
 *    unpruned one, so a new mask computed for count k contains the old one
 *    when k >= the old count; when k is smaller the layer keeps its mask
 *    (the achieved sparsity, recorded in the lineage, is then above the
 *    target). mm_pruner_finalize with MM_PRUNE_FORMAT_DENSE drops masks.
 *  - Exact counts: k = floor(s * count + 0.5) weights (neurons) per layer,
 *    or over all included layers for the global criterion. The k smallest
 *    scores are found by selection (quickselect on (score, index) keys, a
 *    strict total order, so ties are broken by the lower flat index first
 *    and the count is always exact).
 *  - Applying a mask is all-or-nothing: every layer's new mask is computed
 *    first (errors leave the model untouched), then installed.
 */
#ifndef MM_PRUNER_INTERNAL_H
#define MM_PRUNER_INTERNAL_H

#include <stdbool.h>

#include "optim/optim_internal.h"
#include "prune/prune_internal.h"

#define MM_PRUNE_PARAM_FIRST 1
#define MM_PRUNE_PARAM_LAST 11 /* MM_PRUNE_REORDER_NEURONS */
#define MM_PRUNE_PARAM_COUNT (MM_PRUNE_PARAM_LAST + 1)

/* One criterion: a static const table. */
typedef struct mm_prune_crit {
    mm_prune_criterion id;
    const char *name;
    bool structured;        /* ranks hidden neurons, not weights */
    bool global;            /* one ranking across all included layers */
    bool needs_calibration; /* mm_pruner_calibrate first */
    bool needs_scores;      /* mm_pruner_set_scores for every included layer */
    /* Scores of layer `l` of `m` (a dense layer): per weight (out*in, W
     * layout) or per neuron (out) for structured criteria. Higher = more
     * important. Preconditions (calibration, scores) were checked. */
    void (*score)(const mm_pruner *p, const mm_model *m, size_t l, float *scores);
} mm_prune_crit;

const mm_prune_crit *mm_prune_crit_find(mm_prune_criterion c);

typedef struct mm_prune_layer_value {
    size_t index;
    double sparsity;
} mm_prune_layer_value;

typedef struct mm_prune_scores {
    size_t index;
    float *scores;
    size_t len;
} mm_prune_scores;

struct mm_pruner {
    const mm_prune_crit *crit;
    double set[MM_PRUNE_PARAM_COUNT];
    mm_prune_layer_value *layer_sparsity; /* overrides (layer-wise criteria) */
    size_t n_layer_sparsity;
    mm_prune_scores *scores; /* user scores */
    size_t n_scores;
    /* calibration: the shape it was taken on and each hidden layer's mean
     * |activation| per neuron (act[l] for l < n_layers - 1) */
    bool calibrated;
    size_t cal_input_dim, cal_n_layers;
    size_t *cal_outs;
    float **cal_act;
    /* gradual pruning */
    mm_optimizer *opt; /* attached optimizer (borrowed) or NULL */
    bool finished;     /* the schedule's last mask update was recorded */
};

/* Scores supplied for layer l, or NULL. */
const mm_prune_scores *mm_pruner_scores_for(const mm_pruner *p, size_t l);

/* A candidate for pruning: its score and flat index (in the layer, or
 * across the included layers for the global criterion). */
typedef struct mm_prune_key {
    float score;
    size_t index;
} mm_prune_key;

/* Reorder keys[0..n) so that keys[0..k) are the k smallest by (score, then
 * index): a strict total order, so the set is unique and ties go to the
 * lower index. Scores must not be NaN. Cannot fail. */
void mm_prune_select(mm_prune_key *keys, size_t n, size_t k);

/* Make masks physical (shrink.c). */
mm_status mm_prune_finalize_impl(mm_pruner *p, mm_model *model, mm_optimizer *opt);

/* Is layer l of m a dense layer (the kind pruning works on)? */
bool mm_prune_layer_is_dense(const mm_model *m, size_t l);

/* f(0) of an activation (0 except sigmoid). */
float mm_prune_act_at_zero(const mm_layer *layer);

/* Append a "prune..." lineage event (detail is a JSON object, stolen). */
mm_status mm_prune_lineage(mm_model *m, const char *op, json_t *detail);

#endif
