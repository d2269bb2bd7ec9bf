/* mm_quantizer: settings, scheme tables, calibration, apply (plain,
 * accuracy-aware, QAT preparation), lineage and the per-layer report. The
 * observers are in observers.c, the "qat" layer kind in qat.c, the
 * quantized layer kinds behind quant_internal.h. See quantizer_internal.h
 * for the decisions that shape these files.
 *
 * Applying is all-or-nothing: every replacement layer is built first
 * (errors leave the model as it was), the lineage event is recorded, then
 * the layers are swapped in (which cannot fail).
 *
 * Accuracy-aware apply (NNCF / Intel Neural Compressor style, greedy):
 *   a_f = accuracy of the model as given; quantize every enabled layer;
 *   while a_f - a > allowed (MAX_DROP, or MAX_DROP * a_f when relative) and
 *   some layer is still quantized: for each quantized layer l measure the
 *   accuracy with only l back in float; return the layer with the highest
 *   such accuracy (ties: the lowest index) to float for good.
 * "Back in float" is the layer the model held before (a dense layer: its
 * exact weights, whatever MM_QUANT_KEEP_MASTER says; a qat layer: a dense
 * layer with its master weights), not a dequantized copy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/value_names.h"
#include "quant/quantizer_internal.h"

/* ---- settings table ------------------------------------------------------- */

typedef struct qparam_info {
    const char *name;
    double lo, hi;
    bool lo_open;
    bool integer;
    double def;
    mm_value_name_fn names; /* names of the values of an enum-valued setting, or NULL */
} qparam_info;

static const char *observer_value_name(int v) {
    return mm_quant_observer_name((mm_quant_observer)v);
}

static const qparam_info params[MM_QUANT_PARAM_COUNT] = {
    [MM_QUANT_PER_CHANNEL] = {"per_channel", 0, 1, false, true, 1},
    [MM_QUANT_WEIGHT_SYMMETRIC] = {"weight_symmetric", 0, 1, false, true, 1},
    [MM_QUANT_ACT_SYMMETRIC] = {"act_symmetric", 0, 1, false, true, 0},
    [MM_QUANT_OBSERVER] = {"observer", 0, 4, false, true, MM_OBSERVER_MINMAX,
                           observer_value_name},
    [MM_QUANT_PERCENTILE] = {"percentile", 50, 100, true, false, 99.99},
    [MM_QUANT_AVERAGING] = {"averaging", 0, 1, true, false, 0.01},
    [MM_QUANT_BINS] = {"bins", 128, 65536, false, true, 2048},
    [MM_QUANT_KEEP_MASTER] = {"keep_master", 0, 1, false, true, 0},
    [MM_QUANT_MAX_DROP] = {"max_drop", 0, 1, false, false, 0.003},
    [MM_QUANT_DROP_RELATIVE] = {"drop_relative", 0, 1, false, true, 0},
};

static bool param_valid(int p) {
    return p >= MM_QUANT_PARAM_FIRST && p <= MM_QUANT_PARAM_LAST && params[p].name;
}

const char *mm_quant_param_name(mm_quant_param p) {
    return param_valid((int)p) ? params[p].name : NULL;
}

mm_status mm_quant_param_from_name(const char *name, mm_quant_param *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (int p = MM_QUANT_PARAM_FIRST; p <= MM_QUANT_PARAM_LAST; p++) {
        if (params[p].name && strcmp(params[p].name, name) == 0) {
            *out = (mm_quant_param)p;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization setting '%s'", name);
}

mm_status mm_quant_value_from_name(mm_quant_param p, const char *name, double *value) {
    if (!param_valid((int)p))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization setting %d", (int)p);
    const qparam_info *pi = &params[p];
    char what[64];
    snprintf(what, sizeof what, "quantization setting %s", pi->name);
    return mm_value_from_name_lookup(what, pi->names, pi->names ? (int)pi->lo : 0,
                                     pi->names ? (int)pi->hi : -1, name, value);
}

const char *mm_quant_value_name(mm_quant_param p, double value) {
    if (!param_valid((int)p) || !params[p].names) return NULL;
    const qparam_info *pi = &params[p];
    return mm_value_name_lookup(pi->names, (int)pi->lo, (int)pi->hi, value);
}

mm_status mm_quant_param_bounds(mm_quant_param p, double *lo, double *hi) {
    if (!param_valid((int)p))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization setting %d", (int)p);
    if (lo) *lo = params[p].lo_open ? nextafter(params[p].lo, INFINITY) : params[p].lo;
    if (hi) *hi = params[p].hi;
    return MM_OK;
}

/* ---- schemes ---------------------------------------------------------------- */

#define USES_COMMON \
    (MM_QUANT_BIT(MM_QUANT_KEEP_MASTER) | MM_QUANT_BIT(MM_QUANT_MAX_DROP) | \
     MM_QUANT_BIT(MM_QUANT_DROP_RELATIVE))
#define USES_INT8_WEIGHTS \
    (MM_QUANT_BIT(MM_QUANT_PER_CHANNEL) | MM_QUANT_BIT(MM_QUANT_WEIGHT_SYMMETRIC))
#define USES_ACTIVATIONS                                                                 \
    (MM_QUANT_BIT(MM_QUANT_ACT_SYMMETRIC) | MM_QUANT_BIT(MM_QUANT_OBSERVER) |            \
     MM_QUANT_BIT(MM_QUANT_PERCENTILE) | MM_QUANT_BIT(MM_QUANT_AVERAGING) |              \
     MM_QUANT_BIT(MM_QUANT_BINS))

static void configure_common(const mm_quantizer *q, mm_qlayer_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->scheme = q->scheme->id;
    cfg->keep_master = q->set[MM_QUANT_KEEP_MASTER] != 0.0;
}

static void configure_int8_weights(const mm_quantizer *q, size_t l, mm_qlayer_config *cfg) {
    (void)l;
    configure_common(q, cfg);
    cfg->per_channel = q->set[MM_QUANT_PER_CHANNEL] != 0.0;
    cfg->weight_symmetric = q->set[MM_QUANT_WEIGHT_SYMMETRIC] != 0.0;
}

static void configure_static(const mm_quantizer *q, size_t l, mm_qlayer_config *cfg) {
    configure_int8_weights(q, l, cfg);
    cfg->act_symmetric = q->set[MM_QUANT_ACT_SYMMETRIC] != 0.0;
    /* in_lo / in_hi: filled by the caller (calibration or QAT range) */
}

static void configure_16bit(const mm_quantizer *q, size_t l, mm_qlayer_config *cfg) {
    (void)l;
    configure_common(q, cfg);
}

static const mm_qscheme schemes[] = {
    {MM_QUANT_INT8_WEIGHT_ONLY, "int8_weight_only", false, true, false,
     USES_COMMON | USES_INT8_WEIGHTS, configure_int8_weights},
    {MM_QUANT_INT8_DYNAMIC, "int8_dynamic", false, true, true, USES_COMMON | USES_INT8_WEIGHTS,
     configure_int8_weights},
    {MM_QUANT_INT8_STATIC, "int8_static", true, true, true,
     USES_COMMON | USES_INT8_WEIGHTS | USES_ACTIVATIONS, configure_static},
    {MM_QUANT_FP16, "fp16", false, false, false, USES_COMMON, configure_16bit},
    {MM_QUANT_BF16, "bf16", false, false, false, USES_COMMON, configure_16bit},
};
#define N_SCHEMES (sizeof schemes / sizeof schemes[0])

static const mm_qscheme *scheme_find(mm_quant_scheme s) {
    for (size_t i = 0; i < N_SCHEMES; i++)
        if (schemes[i].id == s) return &schemes[i];
    return NULL;
}

const char *mm_quant_scheme_name(mm_quant_scheme s) {
    const mm_qscheme *sc = scheme_find(s);
    return sc ? sc->name : NULL;
}

/* Short aliases accepted by the parser (the CLI's --scheme). */
static const struct {
    const char *alias;
    mm_quant_scheme id;
} scheme_aliases[] = {{"weight_only", MM_QUANT_INT8_WEIGHT_ONLY},
                      {"dynamic", MM_QUANT_INT8_DYNAMIC},
                      {"static", MM_QUANT_INT8_STATIC}};

mm_status mm_quant_scheme_from_name(const char *name, mm_quant_scheme *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (size_t i = 0; i < N_SCHEMES; i++)
        if (strcmp(schemes[i].name, name) == 0) {
            *out = schemes[i].id;
            return MM_OK;
        }
    for (size_t i = 0; i < sizeof scheme_aliases / sizeof scheme_aliases[0]; i++)
        if (strcmp(scheme_aliases[i].alias, name) == 0) {
            *out = scheme_aliases[i].id;
            return MM_OK;
        }
    return mm_error(MM_E_INVALID_ARGUMENT,
                    "unknown quantization scheme '%s' (int8_weight_only, int8_dynamic, "
                    "int8_static, fp16, bf16)",
                    name);
}

const char *mm_quant_observer_name(mm_quant_observer o) {
    const mm_qobserver *ob = mm_qobserver_find(o);
    return ob ? ob->name : NULL;
}

mm_status mm_quant_observer_from_name(const char *name, mm_quant_observer *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (int o = MM_OBSERVER_MINMAX; o <= MM_OBSERVER_ENTROPY; o++) {
        const mm_qobserver *ob = mm_qobserver_find((mm_quant_observer)o);
        if (ob && strcmp(ob->name, name) == 0) {
            *out = ob->id;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT,
                    "unknown calibration observer '%s' (minmax, moving_minmax, percentile, mse, "
                    "entropy)",
                    name);
}

/* ---- create / free / settings ------------------------------------------------ */

static void free_calibration(mm_quantizer *q) {
    if (q->stats)
        for (size_t l = 0; l < q->cal_n_layers; l++) mm_qstats_free(&q->stats[l]);
    free(q->stats);
    free(q->cal_outs);
    q->stats = NULL;
    q->cal_outs = NULL;
    q->calibrated = false;
    q->cal_n_layers = q->cal_input_dim = 0;
}

mm_status mm_quantizer_create(mm_quantizer **out, mm_quant_scheme scheme) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    const mm_qscheme *sc = scheme_find(scheme);
    if (!sc)
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization scheme %d (expected %d..%d)",
                        (int)scheme, (int)MM_QUANT_INT8_WEIGHT_ONLY, (int)MM_QUANT_BF16);
    mm_quantizer *q = calloc(1, sizeof *q);
    if (!q) return mm_oom("quantizer");
    q->report = mm_strdup("");
    if (!q->report) {
        free(q);
        return mm_oom("quantizer report");
    }
    q->scheme = sc;
    for (int i = MM_QUANT_PARAM_FIRST; i <= MM_QUANT_PARAM_LAST; i++) q->set[i] = params[i].def;
    *out = q;
    return MM_OK;
}

void mm_quantizer_free(mm_quantizer *q) {
    if (!q) return;
    free_calibration(q);
    free(q->flags);
    free(q->report);
    free(q);
}

mm_quant_scheme mm_quantizer_scheme(const mm_quantizer *q) {
    return q ? q->scheme->id : (mm_quant_scheme)0;
}

static bool param_applies(const mm_quantizer *q, mm_quant_param p) {
    return (q->scheme->uses & MM_QUANT_BIT(p)) != 0;
}

mm_status mm_quantizer_set(mm_quantizer *q, mm_quant_param param, double value) {
    if (!q) return mm_null_arg("quantizer");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization setting %d", (int)param);
    const qparam_info *pi = &params[param];
    if (!param_applies(q, param))
        return mm_error(MM_E_UNSUPPORTED, "setting %s is not used by the %s scheme", pi->name,
                        q->scheme->name);
    bool ok = value == value && (pi->lo_open ? value > pi->lo : value >= pi->lo) &&
              value <= pi->hi;
    if (!ok)
        return mm_error(MM_E_OUT_OF_RANGE, "%s must be in %c%.17g, %.17g], got %.10g", pi->name,
                        pi->lo_open ? '(' : '[', pi->lo, pi->hi, value);
    if (pi->integer && value != floor(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "%s must be an integer, got %.10g", pi->name, value);
    /* The statistics are shaped by these two: a change starts over. */
    if ((param == MM_QUANT_BINS || param == MM_QUANT_AVERAGING) && q->set[param] != value)
        free_calibration(q);
    q->set[param] = value;
    return MM_OK;
}

mm_status mm_quantizer_get(const mm_quantizer *q, mm_quant_param param, double *value) {
    if (!q) return mm_null_arg("quantizer");
    if (!value) return mm_null_arg("value");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown quantization setting %d", (int)param);
    if (!param_applies(q, param))
        return mm_error(MM_E_UNSUPPORTED, "setting %s is not used by the %s scheme",
                        params[param].name, q->scheme->name);
    *value = q->set[param];
    return MM_OK;
}

mm_status mm_quantizer_set_layer(mm_quantizer *q, size_t index, int enabled) {
    if (!q) return mm_null_arg("quantizer");
    if (enabled != 0 && enabled != 1)
        return mm_error(MM_E_INVALID_ARGUMENT, "enabled must be 0 or 1, got %d", enabled);
    for (size_t i = 0; i < q->n_flags; i++)
        if (q->flags[i].index == index) {
            q->flags[i].enabled = enabled != 0;
            return MM_OK;
        }
    mm_qlayer_flag *f = realloc(q->flags, (q->n_flags + 1) * sizeof *f);
    if (!f) return mm_oom("per-layer setting");
    q->flags = f;
    f[q->n_flags++] = (mm_qlayer_flag){index, enabled != 0};
    return MM_OK;
}

static bool layer_enabled(const mm_quantizer *q, size_t l) {
    for (size_t i = 0; i < q->n_flags; i++)
        if (q->flags[i].index == l) return q->flags[i].enabled;
    return true;
}

/* ---- calibration --------------------------------------------------------------- */

static bool calibration_matches(const mm_quantizer *q, const mm_model *m) {
    if (!q->calibrated || q->cal_input_dim != m->input_dim || q->cal_n_layers != m->n_layers)
        return false;
    for (size_t l = 0; l < m->n_layers; l++)
        if (q->cal_outs[l] != m->layers[l]->out) return false;
    return true;
}

static bool all_finite(const float *x, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            if (bad) *bad = i;
            return false;
        }
    return true;
}

static void free_stats_array(mm_qstats *s, size_t n) {
    if (!s) return;
    for (size_t l = 0; l < n; l++) mm_qstats_free(&s[l]);
    free(s);
}

mm_status mm_quantizer_calibrate(mm_quantizer *q, const mm_model *model, const float *x,
                                 size_t n) {
    if (!q) return mm_null_arg("quantizer");
    if (!model) return mm_null_arg("model");
    if (!x) return mm_null_arg("x");
    if (n == 0) return mm_error(MM_E_INVALID_ARGUMENT, "calibration needs at least one sample");
    if (model->n_layers == 0) return mm_error(MM_E_STATE, "model has no layers");
    const size_t L = model->n_layers, dim = model->input_dim;
    if (q->calibrated && !calibration_matches(q, model))
        return mm_error(MM_E_STATE,
                        "this quantizer was calibrated on a model of another shape (%zu inputs, "
                        "%zu layers); use a new quantizer for this model",
                        q->cal_input_dim, q->cal_n_layers);
    size_t total;
    if (!mm_mul_ok(n, dim, &total) || total > (SIZE_MAX / 4) / sizeof(float))
        return mm_error(MM_E_OUT_OF_RANGE, "calibration set of %zu samples is too large", n);
    size_t bad;
    mm_status st0 = mm_check_samples(x, n, dim, "calibration sample", "nothing was calibrated");
    if (st0 != MM_OK) return st0;

    /* Work on copies so that a failure leaves the calibration as it was. */
    const size_t bins = (size_t)q->set[MM_QUANT_BINS];
    const double averaging = q->set[MM_QUANT_AVERAGING];
    const size_t width = mm_model_max_width(model);
    const size_t chunk = n < MM_QCAL_CHUNK ? n : MM_QCAL_CHUNK;
    mm_status st = MM_OK;
    size_t *outs = mm_calloc_array(L, sizeof *outs);
    mm_qstats *stats = mm_calloc_array(L, sizeof *stats);
    float *buf = mm_alloc_floats(2 * chunk * width);
    if (!outs || !stats || !buf) {
        st = mm_oom("calibration");
        goto out;
    }
    size_t made = 0;
    for (; made < L && st == MM_OK; made++) {
        outs[made] = model->layers[made]->out;
        st = q->calibrated ? mm_qstats_copy(&stats[made], &q->stats[made])
                           : mm_qstats_init(&stats[made], bins);
    }
    if (st != MM_OK) goto out;
    const mm_kernels *k = mm_kernels_get();
    for (size_t start = 0; start < n && st == MM_OK; start += chunk) {
        const size_t cnt = n - start < chunk ? n - start : chunk;
        const float *cur = x + start * dim;
        for (size_t l = 0; l < L; l++) {
            const mm_layer *ly = model->layers[l];
            const size_t count = cnt * ly->in;
            if (l > 0 && !all_finite(cur, count, &bad)) {
                st = mm_error(MM_E_NUMERIC,
                              "the input of layer %zu (output of layer %zu) is not finite for "
                              "calibration sample %zu",
                              l, l - 1, start + bad / ly->in);
                break;
            }
            mm_qstats_observe(&stats[l], cur, count, averaging);
            if (l + 1 == L) break;
            float *dst = buf + (l & 1) * chunk * width;
            mm_layer_forward1(ly, k, cur, dst, cnt);
            cur = dst;
        }
    }
    if (st != MM_OK) goto out;
    free_calibration(q);
    q->calibrated = true;
    q->cal_input_dim = dim;
    q->cal_n_layers = L;
    q->cal_outs = outs;
    q->stats = stats;
    outs = NULL;
    stats = NULL;
out:
    free_stats_array(stats, L);
    free(outs);
    mm_free_floats(buf);
    return st;
}

void mm_quantizer_layer_range(const mm_quantizer *q, size_t l, float *lo, float *hi) {
    const mm_qobserver *ob = mm_qobserver_find((mm_quant_observer)q->set[MM_QUANT_OBSERVER]);
    const mm_qobs_opts o = {q->set[MM_QUANT_PERCENTILE], q->set[MM_QUANT_ACT_SYMMETRIC] != 0.0};
    double a, b;
    ob->range(&q->stats[l], &o, &a, &b);
    *lo = (float)a;
    *hi = (float)b;
    if (*lo > *hi) *lo = *hi; /* rounding to float cannot reorder, but be safe */
}

/* ---- planning ------------------------------------------------------------------- */

/* What apply does to one layer. */
typedef struct qplan_layer {
    mm_layer *old;       /* the model's layer when apply started */
    mm_layer *quant;     /* its replacement (quantized or qat kind), or NULL */
    mm_layer *flt;       /* its float version: old (dense) or a dense copy of a
                            qat layer's master; NULL when not a candidate */
    bool candidate;      /* the scheme converts it */
    bool quantized;      /* model holds quant at the end */
    bool has_range;
    float lo, hi;        /* static: the input range used */
    const char *range_from; /* "calibration (<observer>)" or "qat" */
    double acc_if_float; /* NaN unless measured */
    char reason[192];
} qplan_layer;

typedef struct qplan {
    size_t L;
    qplan_layer *layers;
} qplan;

static void plan_free(qplan *pl) {
    if (!pl->layers) return;
    for (size_t l = 0; l < pl->L; l++) {
        qplan_layer *p = &pl->layers[l];
        if (p->quant) p->quant->vt->destroy(p->quant);
        if (p->flt && p->flt != p->old) p->flt->vt->destroy(p->flt);
    }
    free(pl->layers);
    pl->layers = NULL;
}

static bool is_dense(const mm_layer *ly) {
    return mm_layer_has(ly, MM_CAP_DENSE_WEIGHTS) && mm_layer_holds_matrix(ly);
}

/* Stored-weight layers (the sparse kind) quantize to sparse_int8. */
static bool is_sparse(const mm_layer *ly) {
    return mm_layer_has(ly, MM_CAP_STORED_WEIGHTS) && !mm_layer_has(ly, MM_CAP_QUANTIZED);
}

static mm_status check_params_finite(const mm_layer *ly, size_t l) {
    for (size_t j = 0; j < ly->n_params; j++) {
        const mm_param *p = &ly->params[j];
        size_t bad;
        if (!all_finite(p->data, mm_param_count(p), &bad))
            return mm_error(MM_E_NUMERIC, "layer %zu %s[%zu] is %s; the model was not quantized",
                            l, p->name, bad, isnan(p->data[bad]) ? "NaN" : "infinite");
    }
    return MM_OK;
}

static const char *observer_name(const mm_quantizer *q) {
    return mm_quant_observer_name((mm_quant_observer)q->set[MM_QUANT_OBSERVER]);
}

/* Decide per layer, check every precondition; `qat` prepares qat layers
 * instead of quantized ones. Builds nothing. */
static mm_status plan_layers(const mm_quantizer *q, const mm_model *m, bool qat, qplan *pl) {
    memset(pl, 0, sizeof *pl);
    if (m->n_layers == 0) return mm_error(MM_E_STATE, "model has no layers");
    const size_t L = m->n_layers;
    for (size_t i = 0; i < q->n_flags; i++)
        if (!q->flags[i].enabled && q->flags[i].index >= L)
            return mm_error(MM_E_OUT_OF_RANGE,
                            "layer %zu was chosen to stay in float, but the model has %zu layers "
                            "(0 .. %zu)",
                            q->flags[i].index, L, L - 1);
    pl->L = L;
    pl->layers = mm_calloc_array(L, sizeof *pl->layers);
    if (!pl->layers) return mm_oom("quantization plan");
    const bool is_static = q->scheme->needs_calibration;
    const bool cal_ok = calibration_matches(q, m);
    bool any_qat = false;
    for (size_t l = 0; l < L; l++) any_qat = any_qat || mm_layer_is_qat(m->layers[l]);
    for (size_t l = 0; l < L; l++) {
        qplan_layer *p = &pl->layers[l];
        const mm_layer *ly = m->layers[l];
        p->old = m->layers[l];
        p->acc_if_float = NAN;
        if (!layer_enabled(q, l)) {
            snprintf(p->reason, sizeof p->reason, "kept in float: disabled for this layer by the caller");
            p->quantized = mm_layer_has(ly, MM_CAP_QUANTIZED);
            continue;
        }
        if (mm_layer_has(ly, MM_CAP_QUANTIZED)) {
            snprintf(p->reason, sizeof p->reason, "already quantized (%s)", ly->vt->kind);
            p->quantized = true;
            continue;
        }
        const bool layer_qat = mm_layer_is_qat(ly);
        if (qat && layer_qat) {
            snprintf(p->reason, sizeof p->reason, "already in quantization-aware training");
            continue;
        }
        const bool sparse = is_sparse(ly);
        if (sparse && (!q->scheme->int8 || qat)) {
            /* pruned layers take int8 only, and no fake quantization */
            snprintf(p->reason, sizeof p->reason,
                     !q->scheme->int8 ? "kept in float: sparse layers have no %s form"
                     : is_static ? "kept sparse float during quantization-aware training; "
                                   "quantized to sparse_int8 by apply after calibrating"
                                 : "kept sparse float during quantization-aware training; "
                                   "quantized to sparse_int8 by apply",
                     q->scheme->name);
            continue;
        }
        if (sparse && is_static && !cal_ok && any_qat) {
            /* ending quantization-aware training: the qat layers observed
             * their ranges, a sparse layer did not */
            snprintf(p->reason, sizeof p->reason, "kept sparse float: static int8 needs this "
                     "layer's input range; calibrate before apply to quantize it");
            continue;
        }
        if (!is_dense(ly) && !layer_qat && !sparse) {
            /* a kind the quantizer does not know stays as it is */
            snprintf(p->reason, sizeof p->reason, "kept in float: the %s scheme takes dense and "
                     "sparse layers, not %s", q->scheme->name, ly->vt->kind);
            continue;
        }
        if (sparse && ly->in > MM_INT8_MAX_IN) {
            snprintf(p->reason, sizeof p->reason, "kept in float: %zu inputs, more than the "
                     "int8 kernels take (%u)", ly->in, MM_INT8_MAX_IN);
            continue;
        }
        mm_status st = check_params_finite(ly, l);
        if (st != MM_OK) return st;
        p->candidate = true;
        if (!is_static) continue;
        if (!qat && layer_qat && mm_qat_input_range(ly, &p->lo, &p->hi)) {
            p->has_range = true;
            p->range_from = "qat";
        } else if (cal_ok) {
            mm_quantizer_layer_range(q, l, &p->lo, &p->hi);
            p->has_range = true;
            p->range_from = observer_name(q);
        } else if (!qat) {
            return mm_error(MM_E_STATE,
                            q->calibrated
                                ? "static quantization: the quantizer was calibrated on a model "
                                  "of another shape; call mm_quantizer_calibrate with this model"
                                : "static quantization needs activation ranges: call "
                                  "mm_quantizer_calibrate first (layer %zu has none)",
                            l);
        }
    }
    return MM_OK;
}

/* Build every candidate's replacement (and float version for qat layers). */
static mm_status plan_build(const mm_quantizer *q, qplan *pl, bool qat) {
    for (size_t l = 0; l < pl->L; l++) {
        qplan_layer *p = &pl->layers[l];
        if (!p->candidate) continue;
        mm_status st = MM_OK;
        if (mm_layer_is_qat(p->old)) {
            st = mm_qat_to_dense(p->old, &p->flt);
        } else {
            p->flt = p->old;
        }
        if (st == MM_OK && qat) {
            mm_qat_config c;
            memset(&c, 0, sizeof c);
            c.scheme = q->scheme->id;
            c.per_channel = q->set[MM_QUANT_PER_CHANNEL] != 0.0;
            c.weight_symmetric = q->set[MM_QUANT_WEIGHT_SYMMETRIC] != 0.0;
            c.act_symmetric = q->set[MM_QUANT_ACT_SYMMETRIC] != 0.0;
            c.averaging = q->set[MM_QUANT_AVERAGING];
            c.have_range = p->has_range;
            c.in_lo = p->lo;
            c.in_hi = p->hi;
            st = mm_qat_from_dense(p->flt, &c, &p->quant);
        } else if (st == MM_OK) {
            mm_qlayer_config cfg;
            q->scheme->configure(q, l, &cfg);
            if (p->has_range) {
                cfg.in_lo = p->lo;
                cfg.in_hi = p->hi;
            }
            st = is_sparse(p->flt) ? mm_qsparse_from_sparse(p->flt, &cfg, &p->quant)
                                            : mm_qlayer_from_dense(p->flt, &cfg, &p->quant);
        }
        if (st != MM_OK) return mm_error_prefix(st, "layer %zu", l);
        p->quantized = !qat;
    }
    return MM_OK;
}

/* Install the layers the plan says the model holds at the end; the others
 * stay owned by the plan (freed by plan_free), the model's old ones are
 * destroyed unless reinstalled. */
static void plan_commit(mm_model *m, qplan *pl) {
    mm_model_drop_caches(m); /* layers are swapped */
    for (size_t l = 0; l < pl->L; l++) {
        qplan_layer *p = &pl->layers[l];
        if (!p->candidate) continue;
        mm_layer *keep = (p->quantized || (p->quant && mm_layer_is_qat(p->quant))) ? p->quant : p->flt;
        /* the same layer in a new kind: an optimizer keeps training it
         * (same float parameters), and a frozen layer stays frozen (the swap
         * carries uid, flag and wiring) */
        mm_graph_swap_layer(m, l, keep);
        if (keep == p->quant) p->quant = NULL;
        if (keep == p->flt) p->flt = NULL;
        if (p->old != keep) {
            if (p->flt == p->old) p->flt = NULL;
            p->old->vt->destroy(p->old);
        }
        p->old = keep;
    }
}

/* ---- lineage and report ------------------------------------------------------- */

static size_t layer_bytes(const mm_layer *ly) { return ly->vt->param_bytes(ly); }

static mm_layer *plan_final(const qplan_layer *p) {
    if (!p->candidate) return p->old;
    if (p->quant && (p->quantized || mm_layer_is_qat(p->quant))) return p->quant;
    return p->flt;
}

static json_t *json_range(float lo, float hi) {
    json_t *a = json_array();
    if (a && (json_array_append_new(a, json_real(lo)) || json_array_append_new(a, json_real(hi)))) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *json_num_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* Settings of the scheme (for lineage and report). */
static int add_settings(const mm_quantizer *q, json_t *d) {
    int bad = 0;
    bad |= json_object_set_new(d, "scheme", json_string(q->scheme->name));
    if (q->scheme->int8) {
        bad |= json_object_set_new(d, "per_channel", json_boolean(q->set[MM_QUANT_PER_CHANNEL]));
        bad |= json_object_set_new(d, "weight_symmetric",
                                   json_boolean(q->set[MM_QUANT_WEIGHT_SYMMETRIC]));
    }
    if (q->scheme->needs_calibration) {
        bad |= json_object_set_new(d, "act_symmetric",
                                   json_boolean(q->set[MM_QUANT_ACT_SYMMETRIC]));
        bad |= json_object_set_new(d, "observer", json_string(observer_name(q)));
        if (q->set[MM_QUANT_OBSERVER] == MM_OBSERVER_PERCENTILE)
            bad |= json_object_set_new(d, "percentile", json_real(q->set[MM_QUANT_PERCENTILE]));
    }
    bad |= json_object_set_new(d, "keep_master", json_boolean(q->set[MM_QUANT_KEEP_MASTER]));
    return bad;
}

/* One JSON object describing the result; `lineage` selects the lineage
 * event's field set, else the report's. */
static json_t *plan_json(const mm_quantizer *q, const qplan *pl, const char *mode, bool lineage,
                         double acc_float, double acc_quant, double acc_final) {
    json_t *d = json_object(), *layers = json_array();
    if (!d || !layers) {
        json_decref(d);
        json_decref(layers);
        return NULL;
    }
    int bad = 0;
    bad |= json_object_set_new(d, "mode", json_string(mode));
    bad |= add_settings(q, d);
    size_t before = 0, after = 0;
    for (size_t l = 0; l < pl->L && !bad; l++) {
        const qplan_layer *p = &pl->layers[l];
        const mm_layer *fin = plan_final(p);
        const size_t b0 = layer_bytes(p->old); /* not yet committed */
        const size_t b1 = layer_bytes(fin);
        before += b0;
        after += b1;
        json_t *e = json_object();
        if (!e) {
            bad = 1;
            break;
        }
        bad |= json_object_set_new(e, lineage ? "layer" : "index", json_integer((json_int_t)l));
        bad |= json_object_set_new(e, "kind", json_string(fin->vt->kind));
        bad |= json_object_set_new(e, "quantized", json_boolean(p->quantized));
        bad |= json_object_set_new(e, "reason", json_string(p->reason));
        if (!lineage) bad |= json_object_set_new(e, "accuracy_if_float",
                                                 json_num_or_null(p->acc_if_float));
        if (p->has_range && (p->quantized || (p->quant && mm_layer_is_qat(p->quant)))) {
            json_t *r = json_range(p->lo, p->hi);
            bad |= !r || json_object_set_new(e, "input_range", r);
            bad |= json_object_set_new(e, "range_from", json_string(p->range_from));
        }
        bad |= json_object_set_new(e, "bytes_before", json_integer((json_int_t)b0));
        bad |= json_object_set_new(e, "bytes_after", json_integer((json_int_t)b1));
        bad |= json_array_append_new(layers, e);
    }
    bad |= json_object_set_new(d, "layers", layers);
    layers = NULL;
    bad |= json_object_set_new(d, "bytes_before", json_integer((json_int_t)before));
    bad |= json_object_set_new(d, "bytes_after", json_integer((json_int_t)after));
    if (!lineage || !isnan(acc_float)) {
        bad |= json_object_set_new(d, "float_accuracy", json_num_or_null(acc_float));
        bad |= json_object_set_new(d, "quantized_accuracy", json_num_or_null(acc_quant));
        bad |= json_object_set_new(d, "final_accuracy", json_num_or_null(acc_final));
    }
    if (!isnan(acc_float)) {
        bad |= json_object_set_new(d, "max_drop", json_real(q->set[MM_QUANT_MAX_DROP]));
        bad |= json_object_set_new(d, "drop_relative",
                                   json_boolean(q->set[MM_QUANT_DROP_RELATIVE]));
    }
    if (bad) {
        json_decref(d);
        return NULL;
    }
    return d;
}

static char *dump(json_t *j) {
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    return s;
}

/* Record the lineage event and build the report; nothing is changed on
 * failure. *report receives the new report text. */
static mm_status plan_record(const mm_quantizer *q, mm_model *m, const qplan *pl,
                             const char *mode, double af, double aq, double a, char **report) {
    *report = NULL;
    char *ev = dump(plan_json(q, pl, mode, true, af, aq, a));
    char *rep = dump(plan_json(q, pl, mode, false, af, aq, a));
    mm_status st = MM_OK;
    if (!ev || !rep)
        st = mm_oom("quantization report");
    else
        st = mm_lineage_append(m, "quantize", ev);
    free(ev);
    if (st != MM_OK) {
        free(rep);
        return st;
    }
    *report = rep;
    return MM_OK;
}

static void set_report(mm_quantizer *q, char *rep) {
    free(q->report);
    q->report = rep;
}

/* Reason text of a quantized layer. */
static void reason_quantized(const mm_quantizer *q, qplan_layer *p) {
    const bool int8 = q->scheme->int8;
    char range[96] = "";
    if (p->has_range)
        snprintf(range, sizeof range, ", input range [%.6g, %.6g] from %s", (double)p->lo,
                 (double)p->hi, p->range_from);
    /* sparse_int8 weights are always symmetric: pruned zeros stay exact */
    const bool sparse = p->quant && mm_layer_is_qsparse(p->quant);
    snprintf(p->reason, sizeof p->reason, "quantized: %s%s%s%s", q->scheme->name,
             int8 ? (q->set[MM_QUANT_PER_CHANNEL] != 0.0 ? ", per-channel" : ", per-tensor") : "",
             !int8 ? ""
             : sparse ? (q->set[MM_QUANT_WEIGHT_SYMMETRIC] != 0.0
                             ? " symmetric weights (sparse)"
                             : " symmetric weights (sparse: pruned zeros stay exact)")
             : q->set[MM_QUANT_WEIGHT_SYMMETRIC] != 0.0 ? " symmetric weights"
                                                        : " asymmetric weights",
             range);
}

/* ---- apply ------------------------------------------------------------------------ */

mm_status mm_quantizer_apply(mm_quantizer *q, mm_model *model) {
    if (!q) return mm_null_arg("quantizer");
    if (!model) return mm_null_arg("model");
    qplan pl;
    mm_status st = plan_layers(q, model, false, &pl);
    if (st == MM_OK) st = plan_build(q, &pl, false);
    char *rep = NULL;
    if (st == MM_OK) {
        for (size_t l = 0; l < pl.L; l++)
            if (pl.layers[l].candidate) reason_quantized(q, &pl.layers[l]);
        st = plan_record(q, model, &pl, "apply", NAN, NAN, NAN, &rep);
    }
    if (st == MM_OK) {
        plan_commit(model, &pl);
        set_report(q, rep);
    }
    plan_free(&pl);
    return st;
}

static mm_status accuracy(const mm_model *m, const float *x, const int32_t *labels, size_t n,
                          double *acc) {
    return mm_model_evaluate(m, x, labels, NULL, n, NULL, acc);
}

mm_status mm_quantizer_apply_with_tolerance(mm_quantizer *q, mm_model *model, const float *x,
                                            const int32_t *labels, size_t n,
                                            double *accuracy_out) {
    if (accuracy_out) *accuracy_out = NAN;
    if (!q) return mm_null_arg("quantizer");
    if (!model) return mm_null_arg("model");
    if (!x) return mm_null_arg("x");
    if (!labels) return mm_null_arg("labels");
    if (n == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "accuracy-aware quantization needs at least one "
                                               "evaluation sample");
    const size_t dim = model->input_dim;
    size_t total;
    if (!mm_mul_ok(n, dim, &total))
        return mm_error(MM_E_OUT_OF_RANGE, "evaluation set of %zu samples is too large", n);
    mm_status st0 = mm_check_samples(x, n, dim, "evaluation sample", "nothing was quantized");
    if (st0 != MM_OK) return st0;
    double acc_f;
    mm_status st = accuracy(model, x, labels, n, &acc_f);
    if (st != MM_OK) return mm_error_prefix(st, "evaluating the float model");
    qplan pl;
    st = plan_layers(q, model, false, &pl);
    if (st == MM_OK) st = plan_build(q, &pl, false);
    if (st != MM_OK) {
        plan_free(&pl);
        return st;
    }
    const size_t L = pl.L;
    /* Trial: the model temporarily holds plan layers; every exit restores
     * the original layers before anything is committed. */
    for (size_t l = 0; l < L; l++) {
        qplan_layer *p = &pl.layers[l];
        if (p->candidate) {
            reason_quantized(q, p);
            mm_graph_swap_layer(model, l, p->quant);
        }
    }
    const double max_drop = q->set[MM_QUANT_MAX_DROP];
    const double allowed =
        q->set[MM_QUANT_DROP_RELATIVE] != 0.0 ? max_drop * acc_f : max_drop;
    double acc_q = NAN, acc = NAN;
    st = accuracy(model, x, labels, n, &acc_q);
    acc = acc_q;
    while (st == MM_OK && acc_f - acc > allowed + 1e-12) {
        size_t best = SIZE_MAX;
        double best_acc = -1.0;
        for (size_t l = 0; l < L && st == MM_OK; l++) {
            qplan_layer *p = &pl.layers[l];
            if (!p->candidate || !p->quantized) continue;
            mm_graph_swap_layer(model, l, p->flt);
            double a;
            st = accuracy(model, x, labels, n, &a);
            mm_graph_swap_layer(model, l, p->quant);
            if (st != MM_OK) break;
            p->acc_if_float = a;
            if (a > best_acc) {
                best_acc = a;
                best = l;
            }
        }
        if (st != MM_OK || best == SIZE_MAX) break;
        qplan_layer *p = &pl.layers[best];
        mm_graph_swap_layer(model, best, p->flt);
        p->quantized = false;
        snprintf(p->reason, sizeof p->reason,
                 "fallback: accuracy %.4f -> %.4f with layer %zu in float (float model %.4f, "
                 "tolerated drop %.4g)",
                 acc, best_acc, best, acc_f, allowed);
        acc = best_acc;
    }
    for (size_t l = 0; l < L; l++) mm_graph_swap_layer(model, l, pl.layers[l].old); /* restore */
    if (st != MM_OK) {
        plan_free(&pl);
        return mm_error_prefix(st, "accuracy-aware quantization");
    }
    for (size_t l = 0; l < L; l++) {
        qplan_layer *p = &pl.layers[l];
        if (p->candidate && p->quantized && !isnan(p->acc_if_float)) {
            size_t len = strlen(p->reason);
            snprintf(p->reason + len, sizeof p->reason - len,
                     "; kept quantized (accuracy %.4f with it in float)", p->acc_if_float);
        }
    }
    char *rep = NULL;
    st = plan_record(q, model, &pl, "accuracy_aware", acc_f, acc_q, acc, &rep);
    if (st == MM_OK) {
        plan_commit(model, &pl);
        set_report(q, rep);
        if (accuracy_out) *accuracy_out = acc;
    }
    plan_free(&pl);
    return st;
}

mm_status mm_quantizer_prepare_qat(mm_quantizer *q, mm_model *model) {
    if (!q) return mm_null_arg("quantizer");
    if (!model) return mm_null_arg("model");
    qplan pl;
    mm_status st = plan_layers(q, model, true, &pl);
    if (st == MM_OK) st = plan_build(q, &pl, true);
    char *rep = NULL;
    if (st == MM_OK) {
        for (size_t l = 0; l < pl.L; l++) {
            qplan_layer *p = &pl.layers[l];
            if (!p->candidate) continue;
            snprintf(p->reason, sizeof p->reason, "quantization-aware training (%s)%s",
                     q->scheme->name,
                     q->scheme->needs_calibration
                         ? (p->has_range ? ", input range seeded from calibration"
                                         : ", input range observed in training")
                         : "");
        }
        st = plan_record(q, model, &pl, "qat_prepare", NAN, NAN, NAN, &rep);
    }
    if (st == MM_OK) {
        plan_commit(model, &pl);
        free(rep); /* the report describes applies only */
    }
    plan_free(&pl);
    return st;
}

const char *mm_quantizer_report(const mm_quantizer *q) { return q && q->report ? q->report : ""; }
