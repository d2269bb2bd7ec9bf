/* mm_optimizer: settings, the parameter walk, gradient checks and the step
 * driver. The algorithms are vtables (sgd.c, adam.c); schedules are in
 * schedule.c, batch learning in fit.c, save/load in state.c. See
 * optim_internal.h for the decisions that shape this file. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/value_names.h"
#include "optim/optim_internal.h"

/* ---- settings table ---------------------------------------------------- */

typedef struct param_info {
    const char *name;
    double lo, hi;     /* as documented */
    bool lo_open, hi_open;
    bool integer;
    bool algo_specific; /* applies only if the algorithm's `uses` has it */
    double def;         /* default (lr and weight decay come from the algorithm) */
    mm_value_name_fn names; /* names of the values of an enum-valued setting, or NULL */
} param_info;

static const char *schedule_name(int v) {
    static const char *const names[] = {[MM_SCHEDULE_CONSTANT] = "constant",
                                        [MM_SCHEDULE_STEP] = "step",
                                        [MM_SCHEDULE_EXPONENTIAL] = "exponential",
                                        [MM_SCHEDULE_COSINE] = "cosine"};
    return v >= 0 && v < (int)(sizeof names / sizeof names[0]) ? names[v] : NULL;
}

#define TWO53 9007199254740992.0

static const param_info params[MM_OPT_PARAM_COUNT] = {
    [MM_OPT_LEARNING_RATE] = {"learning_rate", 0, 1e3, true, false, false, false, 1e-3},
    [MM_OPT_MOMENTUM] = {"momentum", 0, 1, false, true, false, true, 0},
    [MM_OPT_NESTEROV] = {"nesterov", 0, 1, false, false, true, true, 0},
    [MM_OPT_WEIGHT_DECAY] = {"weight_decay", 0, 10, false, false, false, false, 0},
    [MM_OPT_BETA1] = {"beta1", 0, 1, false, true, false, true, 0.9},
    [MM_OPT_BETA2] = {"beta2", 0, 1, false, true, false, true, 0.999},
    [MM_OPT_EPSILON] = {"epsilon", 0, 1, true, false, false, true, 1e-8},
    [MM_OPT_CLIP_NORM] = {"clip_norm", 0, 1e9, false, false, false, false, 0},
    [MM_OPT_SCHEDULE] = {"schedule", 0, 3, false, false, true, false, MM_SCHEDULE_CONSTANT,
                         schedule_name},
    [MM_OPT_STEP_SIZE] = {"step_size", 1, 1e12, false, false, true, false, 1000},
    [MM_OPT_GAMMA] = {"gamma", 0, 1, true, false, false, false, 0.1},
    [MM_OPT_WARMUP_STEPS] = {"warmup_steps", 0, 1e12, false, false, true, false, 0},
    [MM_OPT_TOTAL_STEPS] = {"total_steps", 0, 1e12, false, false, true, false, 0},
    [MM_OPT_MIN_LR] = {"min_lr", 0, 1e3, false, false, false, false, 0},
    [MM_OPT_BATCH_SIZE] = {"batch_size", 1, 1e7, false, false, true, false, 64},
    [MM_OPT_EPOCHS] = {"epochs", 1, 1e6, false, false, true, false, 1},
    [MM_OPT_SEED] = {"seed", 0, TWO53, false, false, true, false, 0},
    [MM_OPT_SHUFFLE] = {"shuffle", 0, 1, false, false, true, false, 1},
    [MM_OPT_PATIENCE] = {"patience", 0, 1e6, false, false, true, false, 0},
    [MM_OPT_RESTORE_BEST] = {"restore_best", 0, 1, false, false, true, false, 1},
    [MM_OPT_MAX_GRAD_NORM] = {"max_grad_norm", 0, 1e30, false, false, false, false, 0},
    [MM_OPT_GRAD_SPIKE] = {"grad_spike", 0, 1e9, false, false, false, false, 0},
    [MM_OPT_L2SP] = {"l2sp", 0, 1e6, false, false, false, false, 0},
    [MM_OPT_LINEAGE] = {"lineage", 0, 1, false, false, true, false, 1},
};

bool mm_opt_param_valid(int param) {
    return param >= MM_OPT_PARAM_FIRST && param <= MM_OPT_PARAM_LAST && params[param].name;
}

bool mm_opt_param_is_integer(mm_opt_param param) {
    return mm_opt_param_valid((int)param) && params[param].integer;
}

bool mm_opt_param_applies(const mm_optimizer *opt, mm_opt_param param) {
    if (!mm_opt_param_valid((int)param)) return false;
    if (!params[param].algo_specific) return true;
    return (opt->algo->uses & MM_OPT_BIT(param)) != 0;
}

const char *mm_opt_param_name(mm_opt_param param) {
    return mm_opt_param_valid((int)param) ? params[param].name : NULL;
}

mm_status mm_opt_param_from_name(const char *name, mm_opt_param *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (int p = MM_OPT_PARAM_FIRST; p <= MM_OPT_PARAM_LAST; p++) {
        if (params[p].name && strcmp(params[p].name, name) == 0) {
            *out = (mm_opt_param)p;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer setting '%s'", name);
}

mm_status mm_opt_value_from_name(mm_opt_param param, const char *name, double *value) {
    if (!mm_opt_param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer setting %d", (int)param);
    const param_info *pi = &params[param];
    char what[64];
    snprintf(what, sizeof what, "optimizer setting %s", pi->name);
    /* named settings have small integer ranges (the others' bounds need not fit an int) */
    return mm_value_from_name_lookup(what, pi->names, pi->names ? (int)pi->lo : 0,
                                     pi->names ? (int)pi->hi : -1, name, value);
}

const char *mm_opt_value_name(mm_opt_param param, double value) {
    if (!mm_opt_param_valid((int)param) || !params[param].names) return NULL;
    const param_info *pi = &params[param];
    return mm_value_name_lookup(pi->names, (int)pi->lo, (int)pi->hi, value);
}

static const mm_optim_algo *const algos[] = {&mm_optim_algo_sgd, &mm_optim_algo_adam,
                                             &mm_optim_algo_adamw};
#define N_ALGOS (sizeof algos / sizeof algos[0])

static const mm_optim_algo *algo_for(mm_optim_kind kind) {
    for (size_t i = 0; i < N_ALGOS; i++)
        if (algos[i]->kind == kind) return algos[i];
    return NULL;
}

const char *mm_optim_kind_name(mm_optim_kind kind) {
    const mm_optim_algo *a = algo_for(kind);
    return a ? a->name : NULL;
}

mm_status mm_optim_kind_from_name(const char *name, mm_optim_kind *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (size_t i = 0; i < N_ALGOS; i++) {
        if (strcmp(algos[i]->name, name) == 0) {
            *out = algos[i]->kind;
            return MM_OK;
        }
    }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer '%s' (expected sgd, adam or adamw)",
                    name);
}

/* Open ends are turned into the nearest representable double inside the
 * range, so the reported bounds are a true closed range. */
mm_status mm_opt_param_bounds(mm_opt_param param, double *lo, double *hi) {
    if (!mm_opt_param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer setting %d", (int)param);
    const param_info *pi = &params[param];
    if (lo) *lo = pi->lo_open ? nextafter(pi->lo, INFINITY) : pi->lo;
    if (hi) *hi = pi->hi_open ? nextafter(pi->hi, -INFINITY) : pi->hi;
    return MM_OK;
}

static bool in_range(const param_info *pi, double v) {
    if (!(v == v)) return false; /* NaN */
    if (pi->lo_open ? !(v > pi->lo) : !(v >= pi->lo)) return false;
    if (pi->hi_open ? !(v < pi->hi) : !(v <= pi->hi)) return false;
    return true;
}

/* ---- create / free / accessors ---------------------------------------- */

static void free_anchor(mm_optimizer *opt) {
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_free_floats(opt->slots[i].anchor);
        opt->slots[i].anchor = NULL;
    }
}

static void free_state(mm_optimizer *opt) {
    for (size_t i = 0; i < opt->n_slots; i++)
        for (size_t s = 0; s < MM_OPTIM_MAX_STATE; s++) {
            mm_free_floats(opt->slots[i].state[s]);
            opt->slots[i].state[s] = NULL;
        }
    opt->has_state = false;
}

mm_status mm_optimizer_create(mm_optimizer **out, mm_model *model, mm_optim_kind kind) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!model) return mm_null_arg("model");
    const mm_optim_algo *algo = algo_for(kind);
    if (!algo)
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer kind %d (expected %d..%d)",
                        (int)kind, (int)MM_OPTIM_SGD, (int)MM_OPTIM_ADAMW);
    if (model->n_layers == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "the model has no layers to optimize");

    size_t n_slots = 0;
    for (size_t l = 0; l < model->n_layers; l++)
        for (size_t j = 0; j < model->layers[l]->n_params; j++)
            if (model->layers[l]->params[j].grad) n_slots++;
    if (n_slots == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "the model has no trainable parameters");

    mm_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return mm_oom("optimizer");
    opt->slots = calloc(n_slots, sizeof *opt->slots);
    if (!opt->slots) {
        free(opt);
        return mm_oom("optimizer parameter list");
    }
    opt->algo = algo;
    opt->model = model;
    opt->n_layers = model->n_layers;
    size_t k = 0;
    for (size_t l = 0; l < model->n_layers; l++) {
        mm_layer *ly = model->layers[l];
        for (size_t j = 0; j < ly->n_params; j++)
            if (ly->params[j].grad) mm_opt_slot_init(&opt->slots[k++], ly, l, j);
    }
    opt->n_slots = n_slots;
    for (int p = MM_OPT_PARAM_FIRST; p <= MM_OPT_PARAM_LAST; p++) opt->set[p] = params[p].def;
    opt->set[MM_OPT_LEARNING_RATE] = algo->default_lr;
    opt->set[MM_OPT_WEIGHT_DECAY] = algo->default_weight_decay;
    static _Atomic uint64_t next_uid = 1;
    opt->uid = atomic_fetch_add_explicit(&next_uid, 1, memory_order_relaxed);
    *out = opt;
    return MM_OK;
}

void mm_optimizer_free(mm_optimizer *opt) {
    if (!opt) return;
    mm_opt_set_hook(opt, NULL); /* an attached pruner forgets this optimizer */
    if (opt->slots) {
        free_state(opt);
        free_anchor(opt);
    }
    free(opt->slots);
    free(opt);
}

mm_status mm_optimizer_set(mm_optimizer *opt, mm_opt_param param, double value) {
    if (!opt) return mm_null_arg("optimizer");
    if (!mm_opt_param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer setting %d", (int)param);
    const param_info *pi = &params[param];
    if (!mm_opt_param_applies(opt, param))
        return mm_error(MM_E_UNSUPPORTED, "setting %s is not used by the %s optimizer", pi->name,
                        opt->algo->name);
    if (!in_range(pi, value))
        return mm_error(MM_E_OUT_OF_RANGE, "%s must be in %c%.17g, %.17g%c, got %.10g", pi->name,
                        pi->lo_open ? '(' : '[', pi->lo, pi->hi, pi->hi_open ? ')' : ']', value);
    if (pi->integer && value != floor(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "%s must be an integer, got %.10g", pi->name, value);
    if (opt->set[param] != value) opt->settings_gen++; /* ends a lineage run of online steps */
    opt->set[param] = value;
    return MM_OK;
}

mm_status mm_optimizer_get(const mm_optimizer *opt, mm_opt_param param, double *value) {
    if (!opt) return mm_null_arg("optimizer");
    if (!value) return mm_null_arg("value");
    if (!mm_opt_param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer setting %d", (int)param);
    if (!mm_opt_param_applies(opt, param))
        return mm_error(MM_E_UNSUPPORTED, "setting %s is not used by the %s optimizer",
                        params[param].name, opt->algo->name);
    *value = opt->set[param];
    return MM_OK;
}

mm_optim_kind mm_optimizer_kind(const mm_optimizer *opt) {
    return opt ? opt->algo->kind : (mm_optim_kind)0;
}

mm_model *mm_optimizer_model(const mm_optimizer *opt) { return opt ? opt->model : NULL; }

uint64_t mm_optimizer_steps(const mm_optimizer *opt) { return opt ? opt->step : 0; }

double mm_optimizer_current_lr(const mm_optimizer *opt) {
    return opt ? mm_opt_schedule_lr(opt, opt->step) : NAN;
}

/* ---- L2-SP anchor ------------------------------------------------------ */

mm_status mm_optimizer_set_anchor(mm_optimizer *opt) {
    if (!opt) return mm_null_arg("optimizer");
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;
    /* all or nothing: allocate the missing buffers first */
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        if (s->anchor) continue;
        s->anchor = mm_alloc_floats(mm_param_count(mm_opt_slot_param(opt, s)));
        if (!s->anchor) {
            free_anchor(opt);
            return mm_oom("L2-SP anchor");
        }
    }
    for (size_t i = 0; i < opt->n_slots; i++) {
        const mm_param *p = mm_opt_slot_param(opt, &opt->slots[i]);
        memcpy(opt->slots[i].anchor, p->data, mm_param_count(p) * sizeof(float));
    }
    return MM_OK;
}

void mm_optimizer_clear_anchor(mm_optimizer *opt) {
    if (opt) free_anchor(opt);
}

int mm_optimizer_has_anchor(const mm_optimizer *opt) {
    if (!opt || opt->n_slots == 0) return 0;
    for (size_t i = 0; i < opt->n_slots; i++)
        if (!opt->slots[i].anchor) return 0;
    return 1;
}

/* g += alpha * (w - w0) on every active slot (the gradient of
 * alpha/2 * ||w - w0||^2). */
static void add_l2sp(mm_optimizer *opt, float alpha) {
    for (size_t i = 0; i < opt->n_slots; i++) {
        const mm_opt_slot *s = &opt->slots[i];
        if (!mm_opt_slot_active(opt, s)) continue;
        mm_param *p = mm_opt_slot_param(opt, s);
        const size_t n = mm_param_count(p);
        const float *w0 = s->anchor;
        for (size_t k = 0; k < n; k++) p->grad[k] += alpha * (p->data[k] - w0[k]);
    }
}

/* ---- model walk -------------------------------------------------------- */

void mm_opt_slot_init(mm_opt_slot *s, mm_layer *layer, size_t l, size_t j) {
    memset(s, 0, sizeof *s);
    s->layer = l;
    s->index = j;
    s->uid = mm_layer_uid(layer);
    s->rows = layer->params[j].rows;
    s->cols = layer->params[j].cols;
    s->lr_scale = 1.0;
    s->pbound = -1.0; /* unknown: measured by the first step */
}

mm_status mm_opt_check_model(const mm_optimizer *opt) {
    const mm_model *m = opt->model;
    if (m->n_layers != opt->n_layers)
        return mm_error(MM_E_STATE,
                        "the model had %zu layers when the optimizer was created or synced and "
                        "has %zu now; call mm_optimizer_sync (or create a new optimizer)",
                        opt->n_layers, m->n_layers);
    size_t k = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        const mm_layer *ly = m->layers[l];
        for (size_t j = 0; j < ly->n_params; j++) {
            const mm_param *p = &ly->params[j];
            if (!p->grad) continue;
            const mm_opt_slot *s = k < opt->n_slots ? &opt->slots[k] : NULL;
            if (!s || s->layer != l || s->index != j || s->rows != p->rows ||
                s->cols != p->cols || s->uid != ly->uid)
                return mm_error(MM_E_STATE,
                                "layer %zu %s (%zu x %zu) changed since the optimizer was "
                                "created or synced; call mm_optimizer_sync (or create a new "
                                "optimizer)",
                                l, p->name, p->rows, p->cols);
            k++;
        }
    }
    if (k != opt->n_slots)
        return mm_error(MM_E_STATE,
                        "the model's trainable parameters changed since the optimizer was "
                        "created or synced; call mm_optimizer_sync (or create a new optimizer)");
    return MM_OK;
}

mm_status mm_opt_ensure_state(mm_optimizer *opt) {
    if (opt->has_state || opt->algo->n_state == 0) return MM_OK;
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        size_t count;
        if (!mm_mul_ok(s->rows, s->cols, &count)) return mm_oom("optimizer state");
        for (size_t k = 0; k < opt->algo->n_state; k++) {
            if (s->state[k]) continue;
            s->state[k] = mm_alloc_floats_zero(count);
            if (!s->state[k]) {
                free_state(opt);
                return mm_oom("optimizer state");
            }
        }
    }
    opt->has_state = true;
    return MM_OK;
}

void mm_opt_set_hook(mm_optimizer *opt, const mm_opt_hook *hook) {
    mm_opt_hook old = opt->hook;
    if (hook && hook->ctx)
        opt->hook = *hook;
    else
        memset(&opt->hook, 0, sizeof opt->hook);
    if (old.ctx && old.detached && old.ctx != opt->hook.ctx) old.detached(old.ctx, opt);
}

/* ---- pruning masks ----------------------------------------------------- */

/* x[i] = 0 where mask[i] == 0, for up to four arrays in one pass (the
 * select form if-converts and vectorises). */
MM_OPT_INLINE void mask_body(const uint8_t *restrict mask, size_t n, float *restrict a,
                             float *restrict b, float *restrict c, float *restrict d) {
    for (size_t i = 0; i < n; i++) {
        const bool keep = mask[i] != 0;
        a[i] = keep ? a[i] : 0.0f;
        if (b) b[i] = keep ? b[i] : 0.0f;
        if (c) c[i] = keep ? c[i] : 0.0f;
        if (d) d[i] = keep ? d[i] : 0.0f;
    }
}

static void mask_arrays(const uint8_t *mask, size_t n, float *a, float *b, float *c, float *d) {
    /* specialised on which arrays are present so the loop has no branches */
    if (!b && !c && !d)
        mask_body(mask, n, a, NULL, NULL, NULL);
    else if (b && !c && !d)
        mask_body(mask, n, a, b, NULL, NULL);
    else if (b && c && !d)
        mask_body(mask, n, a, b, c, NULL);
    else
        mask_body(mask, n, a, b, c, d);
}

void mm_opt_apply_masks(mm_optimizer *opt, bool grads) {
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        mm_param *p = mm_opt_slot_param(opt, s);
        if (!p->mask) continue;
        float *arr[4] = {NULL, NULL, NULL, NULL};
        size_t k = 0;
        if (grads) arr[k++] = p->grad;
        if (opt->has_state)
            for (size_t j = 0; j < opt->algo->n_state; j++)
                if (s->state[j]) arr[k++] = s->state[j];
        mask_arrays(p->mask, mm_param_count(p), p->data, arr[0], arr[1], arr[2]);
    }
}

/* ---- gradient checks --------------------------------------------------- */

/* Squares summed in float lanes over chunks of 1024 elements, chunks summed
 * in double: accurate, and no double arithmetic per element. */
MM_OPT_INLINE double sum_squares_body(const float *restrict g, size_t n) {
    double total = 0.0;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > 1024 ? i + 1024 : n;
        float acc[MM_VBLOCK] = {0};
        for (; i + MM_VBLOCK <= end; i += MM_VBLOCK)
            for (size_t j = 0; j < MM_VBLOCK; j++) acc[j] += g[i + j] * g[i + j];
        float tail = 0.0f;
        for (; i < end; i++) tail += g[i] * g[i];
        double s = tail;
        for (size_t j = 0; j < MM_VBLOCK; j++) s += acc[j];
        total += s;
    }
    return total;
}

/* Largest |v[i]| as IEEE bits, in one vectorisable integer pass: for
 * non-negative floats the bit patterns order like the values, and NaN/Inf
 * have bits >= 0x7f800000, so one maximum answers both "all finite?" and
 * "how large?". */
MM_OPT_INLINE uint32_t max_abs_bits_body(const float *restrict v, size_t n) {
    uint32_t acc[MM_VBLOCK] = {0};
    size_t i = 0;
    for (; i + MM_VBLOCK <= n; i += MM_VBLOCK)
        for (size_t j = 0; j < MM_VBLOCK; j++) {
            uint32_t b;
            memcpy(&b, &v[i + j], sizeof b);
            b &= 0x7fffffffu;
            acc[j] = b > acc[j] ? b : acc[j];
        }
    uint32_t m = 0;
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    for (size_t j = 0; j < MM_VBLOCK; j++) m = acc[j] > m ? acc[j] : m;
    return m;
}

#if MM_OPT_X86
MM_OPT_AVX2 static uint32_t max_abs_bits_avx2(const float *restrict v, size_t n) {
    return max_abs_bits_body(v, n);
}
MM_OPT_AVX2 static double sum_squares_avx2(const float *restrict g, size_t n) {
    return sum_squares_body(g, n);
}
#endif

uint32_t mm_opt_max_abs_bits(const float *v, size_t n) {
#if MM_OPT_X86
    if (mm_opt_simd_avx2()) return max_abs_bits_avx2(v, n);
#endif
    return max_abs_bits_body(v, n);
}

double mm_opt_bits_value(uint32_t bits) {
    if (bits >= 0x7f800000u) return INFINITY;
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}

double mm_opt_sum_squares(const float *g, size_t n) {
#if MM_OPT_X86
    if (mm_opt_simd_avx2()) return sum_squares_avx2(g, n);
#endif
    return sum_squares_body(g, n);
}

/* 1 if the AVX2 loops may be used: CPU support, and MM_OPT_SIMD is not "0"
 * (a switch for tests that compare the portable loops with the SIMD ones;
 * both give bit-identical results). Decided once per process. */
#if MM_OPT_X86
bool mm_opt_simd_avx2(void) {
    static atomic_int level = -1;
    int v = atomic_load_explicit(&level, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("MM_OPT_SIMD");
        __builtin_cpu_init();
        v = (env && strcmp(env, "0") == 0) ? 0 : (__builtin_cpu_supports("avx2") ? 1 : 0);
        atomic_store_explicit(&level, v, memory_order_relaxed);
    }
    return v == 1;
}
#endif

/* ---- the step ---------------------------------------------------------- */

/* Plain SGD (no momentum, weight decay, clipping or gradient-norm guards)
 * needs no gradient buffers: the layers update their weights straight from
 * the backpropagated deltas, one pass over the weights instead of three.
 * This is the online learning hot path. */
static bool fused_sgd_applies(const mm_optimizer *opt) {
    return opt->algo->kind == MM_OPTIM_SGD && opt->set[MM_OPT_MOMENTUM] == 0.0 &&
           opt->set[MM_OPT_WEIGHT_DECAY] == 0.0 && opt->set[MM_OPT_CLIP_NORM] == 0.0 &&
           opt->set[MM_OPT_MAX_GRAD_NORM] == 0.0 && opt->set[MM_OPT_GRAD_SPIKE] == 0.0 &&
           opt->set[MM_OPT_L2SP] == 0.0 && mm_model_can_apply_sgd(opt->model);
}

/* Guidance appended to every numeric-trouble message of a step. */
#define NUMERIC_HINT                                                                          \
    "; no update was made (model and optimizer state unchanged): lower the learning rate, "  \
    "enable gradient clipping (MM_OPT_CLIP_NORM), or scale the loss/inputs down"

/* The loss of the step is not finite (mm_model_backprop said so): keep its
 * words and add the guidance. */
static mm_status loss_trouble(mm_status st) {
    if (st != MM_E_NUMERIC) return st;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", mm_last_error_message());
    return mm_error(MM_E_NUMERIC, "%s" NUMERIC_HINT, msg);
}

/* The lr scale of layer l (slots are ordered by layer; *cursor walks them). */
static double layer_scale(const mm_optimizer *opt, size_t l, size_t *cursor) {
    while (*cursor < opt->n_slots && opt->slots[*cursor].layer < l) (*cursor)++;
    return *cursor < opt->n_slots && opt->slots[*cursor].layer == l
               ? opt->slots[*cursor].lr_scale
               : 1.0;
}

/* Layers that serve from a form derived from their float parameters (the
 * quantized kinds) re-derive it after every update (vtable after_update);
 * frozen layers did not change. */
static void layers_after_update(mm_optimizer *opt) {
    mm_model *m = opt->model;
    for (size_t l = 0; l < m->n_layers; l++)
        if (!m->layers[l]->frozen) mm_layer_params_changed(m->layers[l]);
}

/* Every active slot counted one more update. */
static void count_update(mm_optimizer *opt) {
    for (size_t i = 0; i < opt->n_slots; i++)
        if (mm_opt_slot_active(opt, &opt->slots[i])) opt->slots[i].t++;
    opt->step++;
}

static mm_status fused_sgd_step(mm_optimizer *opt, size_t n) {
    mm_model *m = opt->model;
    const float lr = (float)mm_opt_schedule_lr(opt, opt->step);
    const size_t lo = mm_model_lowest_trainable(m);
    /* The gradient of layer l is delta_l^T x_l. Deltas and inputs are small
     * (n x width), so check them instead of the gradients: all finite, and
     * no product lr * n * |delta| * |x| that could overflow the weights. */
    size_t cur = 0;
    for (size_t l = lo; l < m->n_layers; l++) {
        const mm_layer *ly = m->layers[l];
        const double scale = layer_scale(opt, l, &cur);
        if (ly->frozen || scale == 0.0) continue;
        uint32_t dbits = mm_opt_max_abs_bits(mm_model_layer_delta(m, l), n * ly->out);
        if (dbits >= 0x7f800000u)
            return mm_error(MM_E_NUMERIC, "gradient of layer %zu is not finite (NaN or Inf)" NUMERIC_HINT,
                            l);
        uint32_t xbits = mm_opt_max_abs_bits(mm_model_layer_input(m, l), n * ly->in);
        double bound = (double)lr * (double)scale * (double)n * mm_opt_bits_value(dbits) *
                       fmax(1.0, mm_opt_bits_value(xbits));
        if (!(bound < 1e30))
            return mm_error(MM_E_NUMERIC,
                            "update of layer %zu would overflow (gradient too large)" NUMERIC_HINT,
                            l);
    }
    const mm_kernels *k = mm_kernels_get();
    cur = 0;
    for (size_t l = lo; l < m->n_layers; l++) {
        mm_layer *ly = m->layers[l];
        const double scale = layer_scale(opt, l, &cur);
        if (ly->frozen || scale == 0.0) continue;
        const float neg_lr = scale == 1.0 ? -lr : (float)(-(double)lr * scale);
        ly->vt->apply_sgd(ly, k, mm_model_layer_input(m, l), mm_model_layer_delta(m, l), n, neg_lr);
    }
    mm_opt_apply_masks(opt, false); /* pruned weights back to exactly 0 */
    layers_after_update(opt);
    count_update(opt);
    return MM_OK;
}

/* Measure max |param| and max |state[k]| of a slot (the overflow guard's
 * bounds when the carried ones are unknown, stale or too loose). */
static void measure_bounds(const mm_optimizer *opt, mm_opt_slot *s, bool have_state) {
    const mm_param *p = mm_opt_slot_param(opt, s);
    const size_t cnt = mm_param_count(p);
    s->pbound = mm_opt_bits_value(mm_opt_max_abs_bits(p->data, cnt));
    for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++)
        s->sbound[k] = have_state && k < opt->algo->n_state && s->state[k]
                           ? mm_opt_bits_value(mm_opt_max_abs_bits(s->state[k], cnt))
                           : 0.0;
    s->pver = opt->model->layers[s->layer]->version;
}

/* The update context of one slot: the scheduled lr times the slot's scale,
 * and the slot's own update count for bias correction. */
static void slot_ctx(const mm_optimizer *opt, const mm_opt_slot *s, double lr, float gscale,
                     mm_opt_step_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
    const double slr = s->lr_scale == 1.0 ? lr : lr * s->lr_scale;
    opt->algo->prepare(opt, slr, s->t + 1, ctx);
    ctx->gscale = gscale;
}

mm_status mm_opt_step_impl(mm_optimizer *opt, const float *x, const int32_t *labels,
                           const float *targets, size_t n, double *loss) {
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;
    if (opt->algo->validate && (st = opt->algo->validate(opt)) != MM_OK) return st;
    if (mm_model_lowest_trainable(opt->model) == opt->model->n_layers)
        return mm_error(MM_E_STATE,
                        "every layer of the model is frozen; unfreeze one with "
                        "mm_model_set_trainable");
    bool need_state = opt->algo->n_state > 0 &&
                      (!opt->algo->needs_state || opt->algo->needs_state(opt));
    const double l2sp = opt->set[MM_OPT_L2SP];
    if (l2sp > 0.0)
        for (size_t i = 0; i < opt->n_slots; i++)
            if (mm_opt_slot_active(opt, &opt->slots[i]) && !opt->slots[i].anchor)
                return mm_error(MM_E_STATE,
                                "l2sp is %g but the optimizer has no anchor (none set, or the "
                                "model's layers changed since); call mm_optimizer_set_anchor",
                                l2sp);
    if (need_state && (st = mm_opt_ensure_state(opt)) != MM_OK) return st;

    /* A NaN input does not always surface in the loss or the gradients
     * (relu maps NaN to 0; BLIS may skip 0 * NaN), so inputs are checked
     * here; the cost is one read of n * input_dim floats. */
    if ((st = mm_check_samples(x, n, opt->model->input_dim, "input sample",
                               "no update was made")) != MM_OK)
        return st;

    /* Gradual pruning: may update masks (never layers) before this step. */
    if (opt->hook.ctx && opt->hook.before_step &&
        (st = opt->hook.before_step(opt->hook.ctx, opt)) != MM_OK)
        return st;

    double value = NAN;
    if (fused_sgd_applies(opt)) {
        st = mm_model_backprop(opt->model, x, labels, targets, n, false, &value);
        if (loss) *loss = value;
        if (st != MM_OK) return loss_trouble(st);
        return fused_sgd_step(opt, n);
    }
    st = mm_model_backward(opt->model, x, labels, targets, n, &value);
    if (loss) *loss = value;
    if (st != MM_OK) return loss_trouble(st);

    /* L2-SP before the mask pass, which zeroes masked gradients again. A
     * non-finite result is caught by the gradient check below. */
    if (l2sp > 0.0) add_l2sp(opt, (float)l2sp);

    /* Masked weights, gradients and state to 0 (see optim_internal.h): the
     * update below then keeps them at exactly 0. */
    mm_opt_apply_masks(opt, true);

    /* Gradients of the active slots: finite (max |g| answers that too), and
     * the global norm when clipping or a norm guard needs it. */
    const double clip = opt->set[MM_OPT_CLIP_NORM];
    const double max_norm = opt->set[MM_OPT_MAX_GRAD_NORM];
    const double spike = opt->set[MM_OPT_GRAD_SPIKE];
    const bool want_norm = clip > 0.0 || max_norm > 0.0 || spike > 0.0;
    double ss = 0.0;
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        if (!mm_opt_slot_active(opt, s)) continue;
        const mm_param *p = mm_opt_slot_param(opt, s);
        const uint32_t gb = mm_opt_max_abs_bits(p->grad, mm_param_count(p));
        if (gb >= 0x7f800000u)
            return mm_error(MM_E_NUMERIC, "gradient of layer %zu %s is not finite (NaN or Inf)" NUMERIC_HINT,
                            s->layer, p->name);
        s->gmax = mm_opt_bits_value(gb);
        if (want_norm) ss += mm_opt_sum_squares(p->grad, mm_param_count(p));
    }
    const double gnorm = want_norm ? sqrt(ss) : NAN;
    if (want_norm && !isfinite(gnorm))
        return mm_error(MM_E_NUMERIC, "gradient norm overflows (the gradients are huge)" NUMERIC_HINT);
    if (max_norm > 0.0 && gnorm > max_norm)
        return mm_error(MM_E_NUMERIC,
                        "exploding gradient: global gradient norm %.4g exceeds max_grad_norm "
                        "%.4g" NUMERIC_HINT,
                        gnorm, max_norm);
    if (spike > 0.0 && opt->gnorm_count >= 8 && gnorm > spike * opt->gnorm_avg)
        return mm_error(MM_E_NUMERIC,
                        "exploding gradient: global gradient norm %.4g is %.3gx its running "
                        "average %.4g (grad_spike %.4g)" NUMERIC_HINT,
                        gnorm, gnorm / opt->gnorm_avg, opt->gnorm_avg, spike);
    float gscale = 1.0f;
    if (clip > 0.0) {
        /* As torch.nn.utils.clip_grad_norm_. */
        double coef = clip / (gnorm + 1e-6);
        if (coef < 1.0) gscale = (float)coef;
    }

    /* Overflow guard: prove the update stays finite before writing (see
     * optim_internal.h): carried bounds first, measured ones when those are
     * unknown, stale or not good enough. */
    const double lr = mm_opt_schedule_lr(opt, opt->step);
    mm_opt_step_ctx ctx;
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        if (!mm_opt_slot_active(opt, s)) continue;
        const mm_param *p = mm_opt_slot_param(opt, s);
        const mm_layer *ly = opt->model->layers[s->layer];
        slot_ctx(opt, s, lr, gscale, &ctx);
        bool measured = false;
        for (;;) {
            if (!measured && (s->pbound < 0.0 || s->pver != ly->version)) {
                measure_bounds(opt, s, need_state);
                measured = true;
            }
            if (opt->algo->safe(&ctx, s->gmax, s->pbound, s->sbound, p->decay, &s->pnext,
                                s->snext))
                break;
            if (!measured) {
                measure_bounds(opt, s, need_state);
                measured = true;
                continue;
            }
            return mm_error(MM_E_NUMERIC,
                            "update of layer %zu %s could overflow to infinity (max |gradient| "
                            "%.3g, max |%s| %.3g, learning rate %.3g, weight decay %.3g)" NUMERIC_HINT,
                            s->layer, p->name, s->gmax, p->name, s->pbound, lr * s->lr_scale,
                            opt->set[MM_OPT_WEIGHT_DECAY]);
        }
    }

    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        if (!mm_opt_slot_active(opt, s)) continue;
        mm_param *p = mm_opt_slot_param(opt, s);
        slot_ctx(opt, s, lr, gscale, &ctx);
        opt->algo->update(&ctx, p->data, p->grad, need_state ? s->state : NULL,
                          mm_param_count(p), p->decay);
    }
    /* commit the carried bounds (with a margin for float rounding) */
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_opt_slot *s = &opt->slots[i];
        if (!mm_opt_slot_active(opt, s)) continue;
        s->pbound = s->pnext * (1.0 + 1e-6);
        for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++) s->sbound[k] = s->snext[k] * (1.0 + 1e-6);
    }
    if (want_norm) {
        opt->gnorm_count++;
        const double w = opt->gnorm_count < 32 ? 1.0 / (double)opt->gnorm_count : 1.0 / 32.0;
        opt->gnorm_avg += w * (gnorm - opt->gnorm_avg);
    }
    layers_after_update(opt);
    for (size_t i = 0; i < opt->n_slots; i++) /* the write above was ours */
        if (mm_opt_slot_active(opt, &opt->slots[i]))
            opt->slots[i].pver = opt->model->layers[opt->slots[i].layer]->version;
    count_update(opt);
    return MM_OK;
}

mm_status mm_optimizer_step(mm_optimizer *opt, const float *x, const int32_t *labels,
                            const float *targets, size_t n, double *loss) {
    if (loss) *loss = NAN;
    if (!opt) return mm_null_arg("optimizer");
    if (!x) return mm_null_arg("x");
    if (n == 0) return mm_error(MM_E_INVALID_ARGUMENT, "a step needs at least one sample");
    /* Lineage: consecutive steps extend one "online_steps" event of the
     * model (plain fields; see lib/model/lineage.c). Only closing a run of
     * another optimizer can fail, and it happens before the step. */
    const bool record = opt->set[MM_OPT_LINEAGE] != 0.0;
    mm_status st;
    if (record && (st = mm_lineage_begin_steps(opt->model, opt->uid, opt->settings_gen)) != MM_OK)
        return st;
    const double lr = mm_opt_schedule_lr(opt, opt->step);
    st = mm_opt_step_impl(opt, x, labels, targets, n, loss);
    if (st == MM_OK && record)
        mm_lineage_note_steps(opt->model, opt->uid, opt->settings_gen, opt->algo->name, lr, n);
    return st;
}

/* ---- per-layer learning rates ------------------------------------------ */

static mm_status scale_layer_check(const mm_optimizer *opt, size_t layer) {
    if (!opt) return mm_null_arg("optimizer");
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;
    if (layer >= opt->n_layers)
        return mm_error(MM_E_OUT_OF_RANGE, "layer index %zu out of range (model has %zu layers)",
                        layer, opt->n_layers);
    for (size_t i = 0; i < opt->n_slots; i++)
        if (opt->slots[i].layer == layer) return MM_OK;
    return mm_error(MM_E_UNSUPPORTED, "layer %zu has no trainable parameters", layer);
}

mm_status mm_optimizer_set_layer_lr_scale(mm_optimizer *opt, size_t layer, double scale) {
    mm_status st = scale_layer_check(opt, layer);
    if (st != MM_OK) return st;
    if (!(scale >= 0.0 && scale <= 1e3))
        return mm_error(MM_E_OUT_OF_RANGE, "lr scale of layer %zu must be in [0, 1000], got %g",
                        layer, scale);
    for (size_t i = 0; i < opt->n_slots; i++)
        if (opt->slots[i].layer == layer) {
            if (opt->slots[i].lr_scale != scale) opt->settings_gen++; /* a new lineage run */
            opt->slots[i].lr_scale = scale;
        }
    return MM_OK;
}

mm_status mm_optimizer_get_layer_lr_scale(const mm_optimizer *opt, size_t layer, double *scale) {
    if (!scale) return mm_null_arg("scale");
    mm_status st = scale_layer_check(opt, layer);
    if (st != MM_OK) return st;
    for (size_t i = 0; i < opt->n_slots; i++)
        if (opt->slots[i].layer == layer) {
            *scale = opt->slots[i].lr_scale;
            break;
        }
    return MM_OK;
}
