/* mm_pruner: settings, per-layer targets and scores, calibration, exact
 * masks (one shot and on the gradual schedule driven by an optimizer),
 * lineage. The criteria are tables in criteria.c; finalize is in shrink.c.
 * See pruner_internal.h for the decisions that shape this file.
 *
 * Gradual pruning (Zhu & Gupta 2017). With t the optimizer's update count
 * before an update (mm_optimizer_steps), the schedule's sparsity is
 *
 *   s_t = s_f + (s_i - s_f) * (1 - (t' - t0) / (t_end - t0))^power,
 *         t' = t clamped to [t0, t_end]   (s_i exactly up to t0, s_f from t_end)
 *
 * and the masks are recomputed at s_t before the update when t0 <= t <= t_end
 * and (t - t0) % frequency == 0, and once more at t = t_end. So the final
 * sparsity is in place for update number t_end + 1 and after: train for more
 * than t_end steps. A one-shot schedule attached to an optimizer prunes to
 * s_f once, before the update at t = t0. A per-layer target s_f^l replaces
 * s_f in the formula for its layer, with s_i^l = min(s_i, s_f^l). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pmath.h"
#include "common/value_names.h"
#include "prune/pruner_internal.h"

/* ---- settings table ------------------------------------------------------ */

typedef struct prune_param_info {
    const char *name;
    double lo, hi;
    bool hi_open;
    bool integer;
    double def;
    mm_value_name_fn names; /* names of the values of an enum-valued setting, or NULL */
} prune_param_info;

static const char *schedule_name(int v) {
    static const char *const names[] = {[MM_PRUNE_ONE_SHOT] = "one_shot",
                                        [MM_PRUNE_POLYNOMIAL] = "polynomial"};
    return v >= 0 && v < (int)(sizeof names / sizeof names[0]) ? names[v] : NULL;
}

static const char *sparse_format_name(int v) {
    static const char *const names[] = {[MM_PRUNE_FORMAT_AUTO] = "auto",
                                        [MM_PRUNE_FORMAT_SPARSE] = "sparse",
                                        [MM_PRUNE_FORMAT_DENSE] = "dense"};
    return v >= 0 && v < (int)(sizeof names / sizeof names[0]) ? names[v] : NULL;
}

#define TWO53 9007199254740992.0

static const prune_param_info params[MM_PRUNE_PARAM_COUNT] = {
    [MM_PRUNE_SPARSITY] = {"sparsity", 0, 1, true, false, 0.5},
    [MM_PRUNE_SCHEDULE] = {"schedule", 0, 1, false, true, MM_PRUNE_ONE_SHOT, schedule_name},
    [MM_PRUNE_INITIAL_SPARSITY] = {"initial_sparsity", 0, 1, true, false, 0},
    [MM_PRUNE_BEGIN_STEP] = {"begin_step", 0, 1e12, false, true, 0},
    [MM_PRUNE_END_STEP] = {"end_step", 1, 1e12, false, true, 1000},
    [MM_PRUNE_FREQUENCY] = {"frequency", 1, 1e12, false, true, 100},
    [MM_PRUNE_POWER] = {"power", 1, 10, false, false, 3},
    [MM_PRUNE_SEED] = {"seed", 0, TWO53, false, true, 0},
    [MM_PRUNE_OUTPUT_LAYER] = {"output_layer", 0, 1, false, true, 1},
    [MM_PRUNE_SPARSE_FORMAT] = {"sparse_format", 0, 2, false, true, MM_PRUNE_FORMAT_AUTO,
                                sparse_format_name},
    [MM_PRUNE_REORDER_NEURONS] = {"reorder_neurons", 0, 1, false, true, 1},
};

static bool param_valid(int p) {
    return p >= MM_PRUNE_PARAM_FIRST && p <= MM_PRUNE_PARAM_LAST && params[p].name;
}

const char *mm_prune_param_name(mm_prune_param p) {
    return param_valid((int)p) ? params[p].name : NULL;
}

mm_status mm_prune_param_from_name(const char *name, mm_prune_param *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (int p = MM_PRUNE_PARAM_FIRST; p <= MM_PRUNE_PARAM_LAST; p++) {
        if (params[p].name && strcmp(params[p].name, name) == 0) {
            *out = (mm_prune_param)p;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning setting '%s'", name);
}

mm_status mm_prune_value_from_name(mm_prune_param p, const char *name, double *value) {
    if (!param_valid((int)p))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning setting %d", (int)p);
    const prune_param_info *pi = &params[p];
    char what[64];
    snprintf(what, sizeof what, "pruning setting %s", pi->name);
    /* named settings have small integer ranges (the others' bounds need not fit an int) */
    return mm_value_from_name_lookup(what, pi->names, pi->names ? (int)pi->lo : 0,
                                     pi->names ? (int)pi->hi : -1, name, value);
}

const char *mm_prune_value_name(mm_prune_param p, double value) {
    if (!param_valid((int)p) || !params[p].names) return NULL;
    const prune_param_info *pi = &params[p];
    return mm_value_name_lookup(pi->names, (int)pi->lo, (int)pi->hi, value);
}

mm_status mm_prune_param_bounds(mm_prune_param p, double *lo, double *hi) {
    if (!param_valid((int)p))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning setting %d", (int)p);
    if (lo) *lo = params[p].lo;
    if (hi) *hi = params[p].hi_open ? nextafter(params[p].hi, -INFINITY) : params[p].hi;
    return MM_OK;
}

/* ---- create / free / settings -------------------------------------------- */

static void free_calibration(mm_pruner *p) {
    if (p->cal_act)
        for (size_t l = 0; l < p->cal_n_layers; l++) free(p->cal_act[l]);
    free(p->cal_act);
    free(p->cal_outs);
    p->cal_act = NULL;
    p->cal_outs = NULL;
    p->calibrated = false;
    p->cal_n_layers = p->cal_input_dim = 0;
}

mm_status mm_pruner_create(mm_pruner **out, mm_prune_criterion criterion) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    const mm_prune_crit *crit = mm_prune_crit_find(criterion);
    if (!crit)
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning criterion %d (expected %d..%d)",
                        (int)criterion, (int)MM_PRUNE_MAGNITUDE, (int)MM_PRUNE_NEURON_USER);
    mm_pruner *p = calloc(1, sizeof *p);
    if (!p) return mm_oom("pruner");
    p->crit = crit;
    for (int i = MM_PRUNE_PARAM_FIRST; i <= MM_PRUNE_PARAM_LAST; i++) p->set[i] = params[i].def;
    *out = p;
    return MM_OK;
}

void mm_pruner_free(mm_pruner *p) {
    if (!p) return;
    if (p->opt) mm_opt_set_hook(p->opt, NULL); /* calls back: p->opt = NULL */
    free(p->layer_sparsity);
    for (size_t i = 0; i < p->n_scores; i++) free(p->scores[i].scores);
    free(p->scores);
    free_calibration(p);
    free(p);
}

mm_status mm_pruner_set(mm_pruner *p, mm_prune_param param, double value) {
    if (!p) return mm_null_arg("pruner");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning setting %d", (int)param);
    const prune_param_info *pi = &params[param];
    bool ok = value == value && value >= pi->lo && (pi->hi_open ? value < pi->hi : value <= pi->hi);
    if (!ok)
        return mm_error(MM_E_OUT_OF_RANGE, "%s must be in [%.17g, %.17g%c, got %.10g", pi->name,
                        pi->lo, pi->hi, pi->hi_open ? ')' : ']', value);
    if (pi->integer && value != floor(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "%s must be an integer, got %.10g", pi->name, value);
    p->set[param] = value;
    return MM_OK;
}

mm_status mm_pruner_get(const mm_pruner *p, mm_prune_param param, double *value) {
    if (!p) return mm_null_arg("pruner");
    if (!value) return mm_null_arg("value");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown pruning setting %d", (int)param);
    *value = p->set[param];
    return MM_OK;
}

mm_prune_criterion mm_pruner_criterion(const mm_pruner *p) {
    return p ? p->crit->id : (mm_prune_criterion)0;
}

/* The per-layer override of layer l, or NAN. */
static double layer_override(const mm_pruner *p, size_t l) {
    for (size_t i = 0; i < p->n_layer_sparsity; i++)
        if (p->layer_sparsity[i].index == l) return p->layer_sparsity[i].sparsity;
    return NAN;
}

mm_status mm_pruner_set_layer_sparsity(mm_pruner *p, size_t index, double sparsity) {
    if (!p) return mm_null_arg("pruner");
    if (p->crit->global)
        return mm_error(MM_E_UNSUPPORTED,
                        "per-layer sparsity does not apply to the %s criterion (one ranking over "
                        "all layers); use a layer-wise criterion",
                        p->crit->name);
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return mm_error(MM_E_OUT_OF_RANGE, "sparsity of layer %zu must be in [0, 1), got %.10g",
                        index, sparsity);
    for (size_t i = 0; i < p->n_layer_sparsity; i++) {
        if (p->layer_sparsity[i].index == index) {
            p->layer_sparsity[i].sparsity = sparsity;
            return MM_OK;
        }
    }
    mm_prune_layer_value *v =
        realloc(p->layer_sparsity, (p->n_layer_sparsity + 1) * sizeof *p->layer_sparsity);
    if (!v) return mm_oom("per-layer sparsity");
    p->layer_sparsity = v;
    v[p->n_layer_sparsity++] = (mm_prune_layer_value){index, sparsity};
    return MM_OK;
}

const mm_prune_scores *mm_pruner_scores_for(const mm_pruner *p, size_t l) {
    for (size_t i = 0; i < p->n_scores; i++)
        if (p->scores[i].index == l) return &p->scores[i];
    return NULL;
}

mm_status mm_pruner_set_scores(mm_pruner *p, size_t index, const float *scores, size_t len) {
    if (!p) return mm_null_arg("pruner");
    if (!scores) return mm_null_arg("scores");
    if (!p->crit->needs_scores)
        return mm_error(MM_E_UNSUPPORTED,
                        "the %s criterion computes its own scores (user scores need the user or "
                        "neuron_user criterion)",
                        p->crit->name);
    if (len == 0) return mm_error(MM_E_INVALID_ARGUMENT, "scores of layer %zu are empty", index);
    for (size_t i = 0; i < len; i++)
        if (isnan(scores[i]))
            return mm_error(MM_E_NUMERIC, "score %zu of layer %zu is NaN", i, index);
    float *copy = mm_malloc_array(len, sizeof *copy);
    if (!copy) return mm_oom("scores");
    memcpy(copy, scores, len * sizeof *copy);
    for (size_t i = 0; i < p->n_scores; i++) {
        if (p->scores[i].index == index) {
            free(p->scores[i].scores);
            p->scores[i].scores = copy;
            p->scores[i].len = len;
            return MM_OK;
        }
    }
    mm_prune_scores *v = realloc(p->scores, (p->n_scores + 1) * sizeof *p->scores);
    if (!v) {
        free(copy);
        return mm_oom("scores");
    }
    p->scores = v;
    v[p->n_scores++] = (mm_prune_scores){index, copy, len};
    return MM_OK;
}

/* ---- helpers shared with shrink.c ---------------------------------------- */

bool mm_prune_layer_is_dense(const mm_model *m, size_t l) {
    const mm_layer *ly = m->layers[l];
    return mm_layer_has(ly, MM_CAP_DENSE_WEIGHTS) && mm_layer_holds_matrix(ly);
}

float mm_prune_act_at_zero(const mm_layer *layer) {
    float y = 0.0f;
    mm_activation_forward(layer->act, layer->leaky_slope, &y, 1);
    return y;
}

mm_status mm_prune_lineage(mm_model *m, const char *op, json_t *detail) {
    if (!detail) return mm_oom("lineage detail");
    char *text = json_dumps(detail, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(detail);
    if (!text) return mm_oom("lineage detail");
    mm_status st = mm_lineage_append(m, op, text);
    free(text);
    return st;
}

static size_t count_zeros(const uint8_t *mask, size_t n) {
    size_t z = 0;
    if (mask)
        for (size_t i = 0; i < n; i++) z += mask[i] == 0;
    return z;
}

/* ---- calibration --------------------------------------------------------- */

#define CAL_CHUNK 256

mm_status mm_pruner_calibrate(mm_pruner *p, const mm_model *model, const float *x, size_t n) {
    if (!p) return mm_null_arg("pruner");
    if (!model) return mm_null_arg("model");
    if (!x) return mm_null_arg("x");
    if (n == 0) return mm_error(MM_E_INVALID_ARGUMENT, "calibration needs at least one sample");
    if (model->n_layers == 0) return mm_error(MM_E_STATE, "model has no layers");
    const size_t L = model->n_layers, dim = model->input_dim;
    size_t total;
    if (!mm_mul_ok(n, dim, &total))
        return mm_error(MM_E_OUT_OF_RANGE, "calibration set of %zu samples is too large", n);
    mm_status st0 = mm_check_samples(x, n, dim, "calibration sample", "nothing was calibrated");
    if (st0 != MM_OK) return st0;

    const size_t width = mm_model_max_width(model);
    const size_t chunk = n < CAL_CHUNK ? n : CAL_CHUNK;
    size_t *outs = calloc(L, sizeof *outs);
    float **act = calloc(L, sizeof *act);
    double **sum = calloc(L, sizeof *sum);
    float *buf = mm_alloc_floats(2 * chunk * width);
    mm_status st = MM_OK;
    if (!outs || !act || !sum || !buf) {
        st = mm_oom("calibration");
        goto out;
    }
    for (size_t l = 0; l + 1 < L; l++) {
        outs[l] = model->layers[l]->out;
        act[l] = mm_malloc_array(outs[l], sizeof **act);
        sum[l] = mm_calloc_array(outs[l], sizeof **sum);
        if (!act[l] || !sum[l]) {
            st = mm_oom("calibration");
            goto out;
        }
    }
    outs[L - 1] = model->layers[L - 1]->out;
    const mm_kernels *k = mm_kernels_get();
    for (size_t start = 0; start < n; start += chunk) {
        const size_t cnt = n - start < chunk ? n - start : chunk;
        const float *cur = x + start * dim;
        for (size_t l = 0; l + 1 < L; l++) {
            float *dst = buf + (l & 1) * chunk * width;
            mm_layer_forward1(model->layers[l], k, cur, dst, cnt);
            const size_t o = outs[l];
            for (size_t r = 0; r < cnt; r++)
                for (size_t j = 0; j < o; j++) sum[l][j] += fabs((double)dst[r * o + j]);
            cur = dst;
        }
    }
    for (size_t l = 0; l + 1 < L; l++)
        for (size_t j = 0; j < outs[l]; j++) {
            act[l][j] = (float)(sum[l][j] / (double)n);
            if (!isfinite(act[l][j])) {
                st = mm_error(MM_E_NUMERIC,
                              "mean activation of layer %zu neuron %zu is not finite", l, j);
                goto out;
            }
        }
    free_calibration(p);
    p->calibrated = true;
    p->cal_input_dim = dim;
    p->cal_n_layers = L;
    p->cal_outs = outs;
    p->cal_act = act;
    outs = NULL;
    act = NULL;
out:
    if (act)
        for (size_t l = 0; l < L; l++) free(act[l]);
    free(act);
    free(outs);
    if (sum)
        for (size_t l = 0; l < L; l++) free(sum[l]);
    free(sum);
    mm_free_floats(buf);
    return st;
}

static bool calibration_matches(const mm_pruner *p, const mm_model *m) {
    if (!p->calibrated || p->cal_input_dim != m->input_dim || p->cal_n_layers != m->n_layers)
        return false;
    for (size_t l = 0; l < m->n_layers; l++)
        if (p->cal_outs[l] != m->layers[l]->out) return false;
    return true;
}

/* ---- planning masks -------------------------------------------------------- */

/* Per layer: what this pruning does to it. */
typedef struct layer_plan {
    bool included;  /* the pruner acts on this layer */
    double target;  /* its target sparsity (weights, or neurons when structured) */
    size_t k;       /* weights / neurons to have pruned */
    uint8_t *wmask; /* new weight mask (NULL: unchanged) */
    uint8_t *bmask; /* new bias mask (NULL: unchanged) */
    uint8_t *newly; /* structured: neurons pruned by this call */
} layer_plan;

typedef struct prune_plan {
    size_t L;
    layer_plan *layers;
    double target; /* overall target of this call */
} prune_plan;

static void plan_free(prune_plan *pl) {
    if (pl->layers)
        for (size_t l = 0; l < pl->L; l++) {
            free(pl->layers[l].wmask);
            free(pl->layers[l].bmask);
            free(pl->layers[l].newly);
        }
    free(pl->layers);
    pl->layers = NULL;
}

static size_t round_count(double s, size_t count) {
    size_t k = (size_t)floor(s * (double)count + 0.5);
    return k > count ? count : k;
}

/* Target of layer l for the schedule term `term` = (1 - frac)^power (0 for
 * one shot, i.e. the final target). */
static double scheduled(const mm_pruner *p, double sf, double term) {
    if (term == 0.0) return sf;
    double si = p->set[MM_PRUNE_INITIAL_SPARSITY];
    if (si > sf) si = sf;
    if (term == 1.0) return si; /* exactly, not sf + (si - sf) */
    return sf + (si - sf) * term;
}

/* A copy of a mask, or all ones. */
static uint8_t *mask_copy(const uint8_t *mask, size_t n) {
    uint8_t *m = malloc(n ? n : 1);
    if (!m) return NULL;
    if (mask)
        memcpy(m, mask, n);
    else
        memset(m, 1, n);
    return m;
}

static mm_status check_scores(const float *s, size_t n, size_t l) {
    for (size_t i = 0; i < n; i++)
        if (isnan(s[i])) return mm_error(MM_E_NUMERIC, "score %zu of layer %zu is NaN", i, l);
    return MM_OK;
}

/* Which layers the pruner works on and their targets; checks every
 * precondition. Structured criteria work on hidden layers followed by a
 * dense layer; unstructured on dense layers (the last one only with
 * MM_PRUNE_OUTPUT_LAYER, unless it has its own target). */
static mm_status plan_targets(const mm_pruner *p, const mm_model *m, double term,
                              prune_plan *pl) {
    const size_t L = m->n_layers;
    const bool structured = p->crit->structured;
    for (size_t i = 0; i < p->n_layer_sparsity; i++) {
        const mm_prune_layer_value *v = &p->layer_sparsity[i];
        if (v->index >= L)
            return mm_error(MM_E_OUT_OF_RANGE,
                            "a sparsity is set for layer %zu, but the model has %zu layers",
                            v->index, L);
        if (v->sparsity == 0.0) continue;
        if (structured && v->index + 1 == L)
            return mm_error(MM_E_INVALID_ARGUMENT,
                            "layer %zu is the output layer: its neurons are never removed "
                            "(structured pruning works on hidden layers)",
                            v->index);
        if (!mm_prune_layer_is_dense(m, v->index) ||
            (structured && !mm_prune_layer_is_dense(m, v->index + 1)))
            return mm_error(MM_E_UNSUPPORTED, "layer %zu (%s) cannot be pruned by %s", v->index,
                            m->layers[v->index]->vt->kind, p->crit->name);
    }
    if (p->crit->needs_calibration && !calibration_matches(p, m))
        return mm_error(MM_E_STATE,
                        p->calibrated
                            ? "the %s criterion was calibrated on a model of another shape; "
                              "call mm_pruner_calibrate with this model"
                            : "the %s criterion needs mm_pruner_calibrate first",
                        p->crit->name);
    const double s = p->set[MM_PRUNE_SPARSITY];
    for (size_t l = 0; l < L; l++) {
        layer_plan *lp = &pl->layers[l];
        const double over = layer_override(p, l);
        const bool has_over = !isnan(over);
        if (!mm_prune_layer_is_dense(m, l)) continue;
        if (structured) {
            if (l + 1 == L || !mm_prune_layer_is_dense(m, l + 1)) continue;
        } else if (l + 1 == L && !has_over && p->set[MM_PRUNE_OUTPUT_LAYER] == 0.0) {
            continue;
        }
        const double sf = has_over ? over : s;
        if (sf == 0.0) continue;
        lp->included = true;
        lp->target = p->crit->global ? pl->target : scheduled(p, sf, term);
        const mm_layer *ly = m->layers[l];
        const size_t count = structured ? ly->out : mm_param_count(&ly->params[0]);
        lp->k = round_count(lp->target, count);
        if (structured && lp->k >= count)
            return mm_error(MM_E_INVALID_ARGUMENT,
                            "layer %zu: sparsity %.6g would remove all of its %zu neurons "
                            "(round(%.6g * %zu) = %zu)",
                            l, lp->target, count, lp->target, count, lp->k);
        if (p->crit->needs_scores) {
            const mm_prune_scores *u = mm_pruner_scores_for(p, l);
            if (!u)
                return mm_error(MM_E_STATE,
                                "the %s criterion has no scores for layer %zu "
                                "(mm_pruner_set_scores)",
                                p->crit->name, l);
            if (u->len != count)
                return mm_error(MM_E_SHAPE, "layer %zu has %zu %s, its scores %zu", l, count,
                                structured ? "neurons" : "weights", u->len);
        }
    }
    return MM_OK;
}

/* Unstructured, layer by layer. */
static mm_status plan_layerwise(const mm_pruner *p, const mm_model *m, prune_plan *pl) {
    mm_status st = MM_OK;
    float *scores = NULL;
    mm_prune_key *keys = NULL;
    for (size_t l = 0; l < m->n_layers && st == MM_OK; l++) {
        layer_plan *lp = &pl->layers[l];
        if (!lp->included) continue;
        const mm_param *w = &m->layers[l]->params[0];
        const size_t n = mm_param_count(w);
        const size_t forced = count_zeros(w->mask, n);
        if (lp->k <= forced) continue; /* masks only grow */
        scores = mm_malloc_array(n, sizeof *scores);
        keys = mm_malloc_array(n - forced, sizeof *keys);
        lp->wmask = mask_copy(w->mask, n);
        if (!scores || !keys || !lp->wmask) {
            st = mm_oom("pruning scores");
            break;
        }
        p->crit->score(p, m, l, scores);
        if ((st = check_scores(scores, n, l)) != MM_OK) break;
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            if (!w->mask || w->mask[i]) keys[c++] = (mm_prune_key){scores[i], i};
        const size_t want = lp->k - forced;
        mm_prune_select(keys, c, want);
        for (size_t i = 0; i < want; i++) lp->wmask[keys[i].index] = 0;
        free(scores);
        free(keys);
        scores = NULL;
        keys = NULL;
    }
    free(scores);
    free(keys);
    return st;
}

/* Unstructured, one ranking over every included layer. */
static mm_status plan_global(const mm_pruner *p, const mm_model *m, double s, prune_plan *pl) {
    const size_t L = m->n_layers;
    size_t total = 0, forced = 0, maxn = 0;
    size_t *offset = calloc(L + 1, sizeof *offset);
    if (!offset) return mm_oom("pruning plan");
    for (size_t l = 0; l < L; l++) {
        offset[l] = total;
        if (!pl->layers[l].included) continue;
        const mm_param *w = &m->layers[l]->params[0];
        const size_t n = mm_param_count(w);
        total += n;
        forced += count_zeros(w->mask, n);
        if (n > maxn) maxn = n;
    }
    offset[L] = total;
    const size_t k = round_count(s, total);
    pl->target = s;
    for (size_t l = 0; l < L; l++) pl->layers[l].k = 0; /* per-layer counts follow */
    if (k <= forced) {
        free(offset);
        return MM_OK;
    }
    mm_status st = MM_OK;
    float *scores = mm_malloc_array(maxn, sizeof *scores);
    mm_prune_key *keys = mm_malloc_array(total - forced, sizeof *keys);
    if (!scores || !keys) {
        st = mm_oom("pruning scores");
        goto out;
    }
    size_t c = 0;
    for (size_t l = 0; l < L; l++) {
        if (!pl->layers[l].included) continue;
        const mm_param *w = &m->layers[l]->params[0];
        const size_t n = mm_param_count(w);
        p->crit->score(p, m, l, scores);
        if ((st = check_scores(scores, n, l)) != MM_OK) goto out;
        for (size_t i = 0; i < n; i++)
            if (!w->mask || w->mask[i]) keys[c++] = (mm_prune_key){scores[i], offset[l] + i};
    }
    const size_t want = k - forced;
    mm_prune_select(keys, c, want);
    for (size_t i = 0; i < want; i++) {
        size_t l = 0;
        while (keys[i].index >= offset[l + 1]) l++;
        layer_plan *lp = &pl->layers[l];
        if (!lp->wmask) {
            const mm_param *w = &m->layers[l]->params[0];
            lp->wmask = mask_copy(w->mask, mm_param_count(w));
            if (!lp->wmask) {
                st = mm_oom("pruning mask");
                goto out;
            }
        }
        lp->wmask[keys[i].index - offset[l]] = 0;
    }
out:
    free(scores);
    free(keys);
    free(offset);
    return st;
}

/* Structured: neurons of each included hidden layer. */
static mm_status plan_structured(const mm_pruner *p, const mm_model *m, prune_plan *pl) {
    const size_t L = m->n_layers;
    mm_status st = MM_OK;
    for (size_t l = 0; l + 1 < L && st == MM_OK; l++) {
        layer_plan *lp = &pl->layers[l];
        if (!lp->included) continue;
        const mm_layer *ly = m->layers[l];
        const size_t out = ly->out;
        const uint8_t *bm = ly->params[1].mask;
        const size_t forced = count_zeros(bm, out);
        if (lp->k <= forced) continue;
        float *scores = mm_malloc_array(out, sizeof *scores);
        mm_prune_key *keys = mm_malloc_array(out, sizeof *keys);
        lp->bmask = mask_copy(bm, out);
        lp->newly = calloc(out, 1);
        if (!scores || !keys || !lp->bmask || !lp->newly) {
            st = mm_oom("pruning scores");
        } else {
            p->crit->score(p, m, l, scores);
            st = check_scores(scores, out, l);
        }
        if (st == MM_OK) {
            size_t c = 0;
            for (size_t j = 0; j < out; j++)
                if (!bm || bm[j]) keys[c++] = (mm_prune_key){scores[j], j};
            const size_t want = lp->k - forced;
            mm_prune_select(keys, c, want);
            for (size_t i = 0; i < want; i++) {
                lp->bmask[keys[i].index] = 0;
                lp->newly[keys[i].index] = 1;
            }
        }
        free(scores);
        free(keys);
    }
    if (st != MM_OK) return st;
    /* weight masks: rows of pruned neurons in W_l, their columns in W_{l+1} */
    for (size_t l = 0; l + 1 < L; l++) {
        if (!pl->layers[l].newly) continue;
        const size_t out = m->layers[l]->out;
        for (size_t t = l; t <= l + 1; t++) {
            layer_plan *tp = &pl->layers[t];
            if (!tp->wmask) {
                const mm_param *w = &m->layers[t]->params[0];
                tp->wmask = mask_copy(w->mask, mm_param_count(w));
                if (!tp->wmask) return mm_oom("pruning mask");
            }
        }
        uint8_t *rows = pl->layers[l].wmask, *cols = pl->layers[l + 1].wmask;
        const size_t in = m->layers[l]->in, out2 = m->layers[l + 1]->out;
        for (size_t j = 0; j < out; j++) {
            if (!pl->layers[l].newly[j]) continue;
            memset(rows + j * in, 0, in);
            for (size_t o = 0; o < out2; o++) cols[o * out + j] = 0;
        }
    }
    return MM_OK;
}

/* Compute every new mask for the schedule term (0 = the final target);
 * changes nothing in the model. */
static mm_status plan_masks(const mm_pruner *p, const mm_model *m, double term, prune_plan *pl) {
    memset(pl, 0, sizeof *pl);
    if (m->n_layers == 0) return mm_error(MM_E_STATE, "model has no layers");
    pl->L = m->n_layers;
    pl->layers = calloc(pl->L, sizeof *pl->layers);
    if (!pl->layers) return mm_oom("pruning plan");
    pl->target = scheduled(p, p->set[MM_PRUNE_SPARSITY], term);
    mm_status st = plan_targets(p, m, term, pl);
    if (st == MM_OK) {
        if (p->crit->structured)
            st = plan_structured(p, m, pl);
        else if (p->crit->global)
            st = plan_global(p, m, pl->target, pl);
        else
            st = plan_layerwise(p, m, pl);
    }
    if (st != MM_OK) plan_free(pl);
    return st;
}

/* Install the planned masks and zero what they prune. Cannot fail. */
static void commit_masks(mm_model *m, prune_plan *pl) {
    const size_t L = pl->L;
    /* fold f(0) of newly pruned neurons into the next layer's bias while
     * W_{l+1} still holds the columns */
    for (size_t l = 0; l + 1 < L; l++) {
        const layer_plan *lp = &pl->layers[l];
        if (!lp->newly) continue;
        const float a0 = mm_prune_act_at_zero(m->layers[l]);
        if (a0 == 0.0f) continue;
        mm_layer *next = m->layers[l + 1];
        const size_t out = m->layers[l]->out;
        for (size_t j = 0; j < out; j++) {
            if (!lp->newly[j]) continue;
            for (size_t o = 0; o < next->out; o++)
                next->params[1].data[o] += a0 * next->params[0].data[o * out + j];
        }
    }
    for (size_t l = 0; l < L; l++) {
        layer_plan *lp = &pl->layers[l];
        mm_layer *ly = m->layers[l];
        uint8_t *newm[2] = {lp->wmask, lp->bmask};
        for (size_t j = 0; j < 2; j++) {
            if (!newm[j]) continue;
            mm_param *prm = &ly->params[j];
            free(prm->mask);
            prm->mask = newm[j];
            const size_t n = mm_param_count(prm);
            for (size_t i = 0; i < n; i++)
                if (!prm->mask[i]) prm->data[i] = 0.0f;
        }
        lp->wmask = lp->bmask = NULL;
    }
}

/* Weights (biases excluded) that are zero or masked in layer l. */
static size_t layer_zero_weights(const mm_layer *ly) {
    const mm_param *w = &ly->params[0];
    const size_t n = mm_param_count(w);
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += (w->data[i] == 0.0f || (w->mask && !w->mask[i]));
    return z;
}

/* The lineage event of a pruning step. */
static json_t *plan_detail(const mm_pruner *p, const mm_model *m, const prune_plan *pl,
                           const char *mode, size_t nonzero_before) {
    json_t *d = json_object();
    json_t *layers = json_array();
    if (!d || !layers) {
        json_decref(d);
        json_decref(layers);
        return NULL;
    }
    const bool structured = p->crit->structured;
    size_t units = 0, pruned = 0;
    int bad = 0;
    bad |= json_object_set_new(d, "criterion", json_string(p->crit->name));
    bad |= json_object_set_new(d, "structured", json_boolean(structured));
    bad |= json_object_set_new(d, "mode", json_string(mode));
    bad |= json_object_set_new(d, "target_sparsity", json_real(pl->target));
    for (size_t l = 0; l < pl->L; l++) {
        const layer_plan *lp = &pl->layers[l];
        if (!lp->included) continue;
        const mm_layer *ly = m->layers[l];
        const size_t nw = mm_param_count(&ly->params[0]);
        const size_t zw = layer_zero_weights(ly);
        json_t *e = json_object();
        if (!e) {
            bad = 1;
            break;
        }
        bad |= json_object_set_new(e, "layer", json_integer((json_int_t)l));
        if (!p->crit->global) bad |= json_object_set_new(e, "target", json_real(lp->target));
        if (structured) {
            const size_t zn = count_zeros(ly->params[1].mask, ly->out);
            bad |= json_object_set_new(e, "neurons", json_integer((json_int_t)ly->out));
            bad |= json_object_set_new(e, "pruned_neurons", json_integer((json_int_t)zn));
            units += ly->out;
            pruned += zn;
        } else {
            units += nw;
            pruned += count_zeros(ly->params[0].mask, nw);
        }
        bad |= json_object_set_new(e, "weights", json_integer((json_int_t)nw));
        bad |= json_object_set_new(e, "zero_weights", json_integer((json_int_t)zw));
        bad |= json_object_set_new(e, "weight_sparsity",
                                   json_real(nw ? (double)zw / (double)nw : 0.0));
        bad |= json_array_append_new(layers, e);
    }
    bad |= json_object_set_new(d, "achieved_sparsity",
                               json_real(units ? (double)pruned / (double)units : 0.0));
    bad |= json_object_set_new(d, "layers", layers);
    bad |= json_object_set_new(d, "params", json_integer((json_int_t)mm_model_num_params(m)));
    bad |= json_object_set_new(d, "nonzero_before", json_integer((json_int_t)nonzero_before));
    bad |= json_object_set_new(d, "nonzero_after",
                               json_integer((json_int_t)mm_model_num_nonzero(m)));
    if (bad) {
        json_decref(d);
        return NULL;
    }
    return d;
}

static mm_status prune_now(mm_pruner *p, mm_model *m, double term, const char *mode,
                           json_t *extra) {
    prune_plan pl;
    mm_status st = plan_masks(p, m, term, &pl);
    if (st != MM_OK) {
        json_decref(extra);
        return st;
    }
    const size_t before = mm_model_num_nonzero(m);
    commit_masks(m, &pl);
    if (mode) {
        json_t *d = plan_detail(p, m, &pl, mode, before);
        if (d && extra) json_object_update(d, extra);
        st = mm_prune_lineage(m, "prune", d);
    }
    json_decref(extra);
    plan_free(&pl);
    return st;
}

mm_status mm_pruner_apply(mm_pruner *p, mm_model *model) {
    if (!p) return mm_null_arg("pruner");
    if (!model) return mm_null_arg("model");
    return prune_now(p, model, 0.0, "one_shot", NULL);
}

/* ---- schedule -------------------------------------------------------------- */

static mm_status check_schedule(const mm_pruner *p) {
    if (p->set[MM_PRUNE_SCHEDULE] != MM_PRUNE_POLYNOMIAL) return MM_OK;
    if (!(p->set[MM_PRUNE_END_STEP] > p->set[MM_PRUNE_BEGIN_STEP]))
        return mm_error(MM_E_INVALID_ARGUMENT, "end_step (%.0f) must be greater than begin_step "
                                               "(%.0f)",
                        p->set[MM_PRUNE_END_STEP], p->set[MM_PRUNE_BEGIN_STEP]);
    if (p->set[MM_PRUNE_INITIAL_SPARSITY] > p->set[MM_PRUNE_SPARSITY])
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "initial_sparsity (%.6g) must not exceed the final sparsity (%.6g)",
                        p->set[MM_PRUNE_INITIAL_SPARSITY], p->set[MM_PRUNE_SPARSITY]);
    return MM_OK;
}

/* (1 - frac)^power at step t; 0 for one shot. */
static double schedule_term(const mm_pruner *p, uint64_t t) {
    if (p->set[MM_PRUNE_SCHEDULE] != MM_PRUNE_POLYNOMIAL) return 0.0;
    const uint64_t t0 = (uint64_t)p->set[MM_PRUNE_BEGIN_STEP];
    const uint64_t t1 = (uint64_t)p->set[MM_PRUNE_END_STEP];
    const uint64_t tc = t < t0 ? t0 : (t > t1 ? t1 : t);
    const double frac = (double)(tc - t0) / (double)(t1 - t0);
    return mm_ppow(1.0 - frac, p->set[MM_PRUNE_POWER]);
}

mm_status mm_pruner_sparsity_at(const mm_pruner *p, uint64_t step, double *sparsity) {
    if (!p) return mm_null_arg("pruner");
    if (!sparsity) return mm_null_arg("sparsity");
    mm_status st = check_schedule(p);
    if (st != MM_OK) return st;
    *sparsity = scheduled(p, p->set[MM_PRUNE_SPARSITY], schedule_term(p, step));
    return MM_OK;
}

static bool is_mask_step(const mm_pruner *p, uint64_t t) {
    const uint64_t t0 = (uint64_t)p->set[MM_PRUNE_BEGIN_STEP];
    if (p->set[MM_PRUNE_SCHEDULE] != MM_PRUNE_POLYNOMIAL) return t == t0;
    const uint64_t t1 = (uint64_t)p->set[MM_PRUNE_END_STEP];
    const uint64_t f = (uint64_t)p->set[MM_PRUNE_FREQUENCY];
    return t >= t0 && t <= t1 && ((t - t0) % f == 0 || t == t1);
}

static bool is_last_step(const mm_pruner *p, uint64_t t) {
    if (p->set[MM_PRUNE_SCHEDULE] != MM_PRUNE_POLYNOMIAL)
        return t == (uint64_t)p->set[MM_PRUNE_BEGIN_STEP];
    return t == (uint64_t)p->set[MM_PRUNE_END_STEP];
}

static mm_status hook_before_step(void *ctx, mm_optimizer *opt) {
    mm_pruner *p = ctx;
    const uint64_t t = opt->step;
    if (!is_mask_step(p, t)) return MM_OK;
    mm_status st = check_schedule(p);
    if (st != MM_OK) return mm_error_prefix(st, "gradual pruning at step %llu",
                                            (unsigned long long)t);
    const bool last = is_last_step(p, t) && !p->finished;
    json_t *extra = NULL;
    if (last) {
        extra = json_object();
        if (!extra) return mm_oom("lineage detail");
        const bool poly = p->set[MM_PRUNE_SCHEDULE] == MM_PRUNE_POLYNOMIAL;
        json_object_set_new(extra, "schedule", json_string(poly ? "polynomial" : "one_shot"));
        json_object_set_new(extra, "step", json_integer((json_int_t)t));
        if (poly) {
            json_object_set_new(extra, "initial_sparsity",
                                json_real(p->set[MM_PRUNE_INITIAL_SPARSITY]));
            json_object_set_new(extra, "begin_step",
                                json_integer((json_int_t)p->set[MM_PRUNE_BEGIN_STEP]));
            json_object_set_new(extra, "end_step",
                                json_integer((json_int_t)p->set[MM_PRUNE_END_STEP]));
            json_object_set_new(extra, "frequency",
                                json_integer((json_int_t)p->set[MM_PRUNE_FREQUENCY]));
            json_object_set_new(extra, "power", json_real(p->set[MM_PRUNE_POWER]));
        }
    }
    st = prune_now(p, opt->model, schedule_term(p, t), last ? "gradual" : NULL, extra);
    if (st != MM_OK)
        return mm_error_prefix(st, "gradual pruning at step %llu", (unsigned long long)t);
    if (last) p->finished = true;
    return MM_OK;
}

static void hook_detached(void *ctx, mm_optimizer *opt) {
    mm_pruner *p = ctx;
    if (p->opt == opt) p->opt = NULL;
}

mm_status mm_pruner_attach(mm_pruner *p, mm_optimizer *opt) {
    if (!opt) return mm_null_arg("optimizer");
    if (!p) {
        mm_opt_set_hook(opt, NULL);
        return MM_OK;
    }
    mm_status st = check_schedule(p);
    if (st != MM_OK) return st;
    /* Catch missing scores, calibration, impossible targets now rather
     * than at some later training step: plan the final masks and discard
     * them. */
    prune_plan pl;
    if ((st = plan_masks(p, opt->model, 0.0, &pl)) != MM_OK) return st;
    plan_free(&pl);
    if (p->opt && p->opt != opt) mm_opt_set_hook(p->opt, NULL);
    const mm_opt_hook hook = {hook_before_step, hook_detached, p};
    mm_opt_set_hook(opt, &hook);
    p->opt = opt;
    p->finished = false;
    return MM_OK;
}

mm_status mm_pruner_finalize(mm_pruner *p, mm_model *model, mm_optimizer *opt) {
    if (!p) return mm_null_arg("pruner");
    if (!model) return mm_null_arg("model");
    if (opt && opt->model != model)
        return mm_error(MM_E_INVALID_ARGUMENT, "the optimizer trains another model");
    mm_status st = mm_prune_finalize_impl(p, model, opt);
    if (st == MM_OK && p->opt) mm_opt_set_hook(p->opt, NULL); /* pruning is over */
    return st;
}
