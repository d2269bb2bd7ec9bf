/* mm_maintainer: guarded maintenance of a deployed model on a labelled stream
 * (progressive validation, guarded online updates with a checkpoint ring and
 * rollback, replay, L2-SP, champion/challenger on drift, publishing to an
 * mm_server). The behaviour is specified in include/mm/mm_maintainer.h.
 *
 * Decisions worth knowing:
 *  - The deployed version is always the newest model of the checkpoint ring
 *    (ring[newest]); the working copy is a separate clone that the optimizer
 *    updates. A rollback replaces the working copy by a fresh clone of the
 *    deployed version (bit-exact) and a fresh optimizer (its moments came
 *    from the rejected updates).
 *  - Samples learned in the current window wait in `pending` and enter the
 *    replay reservoir only when the window is accepted, so a quarantined
 *    window never reaches replay. The recent buffer (challenger data) keeps
 *    every learned sample with its stream position; challengers skip the
 *    positions of quarantined ranges.
 *  - Holdout samples taken from the stream count in their own window's guard
 *    at once (after a real drift the holdout must follow the stream: old
 *    samples only would reject every adaptation) but join the holdout ring
 *    only with an accepted window; a quarantined window takes its held-out
 *    samples with it, so poison cannot accumulate in the holdout.
 *  - After a drift signal, the holdout samples taken since then decide
 *    challengers by a paired sign test, and the version deployed at the
 *    signal is kept as the base of the re-aligned challenger (later
 *    versions have already half-learned the new inputs, so folding the map
 *    into them would correct twice).
 *  - The deployed version's holdout accuracy is cached per (holdout
 *    generation, version), so a guard costs one evaluation of the working
 *    copy when nothing changed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mm_internal.h"
#include "common/value_names.h"
#include "mm/mm_dataset.h"
#include "mm/mm_drift.h"
#include "mm/mm_maintainer.h"
#include "mm/mm_server.h"
#include "model/model_internal.h" /* lineage carried across rollbacks */
#include "optim/optim_internal.h" /* MM_OPT_PARAM_* bounds of the settings array */

#define MAINT_PARAM_FIRST 1
#define MAINT_PARAM_LAST 15 /* MM_MAINT_CHALLENGER_DELAY */
#define MAINT_PARAM_COUNT (MAINT_PARAM_LAST + 1)

typedef struct maint_param_info {
    const char *name;
    double lo, hi, def;
    bool integer;
    bool fixed; /* only before the first feed */
} maint_param_info;

static const maint_param_info params[MAINT_PARAM_COUNT] = {
    [MM_MAINT_WINDOW] = {"window", 1, 1e9, 1000, true, true},
    [MM_MAINT_GUARD_THRESHOLD] = {"guard_threshold", 0, 1, 0.01, false, false},
    [MM_MAINT_RING] = {"ring", 1, 1000, 4, true, true},
    [MM_MAINT_BATCH] = {"batch", 1, 4096, 1, true, true},
    [MM_MAINT_REPLAY_SIZE] = {"replay_size", 0, 1e8, 2000, true, true},
    [MM_MAINT_REPLAY_MIX] = {"replay_mix", 0, 16, 0.5, false, false},
    [MM_MAINT_L2SP] = {"l2sp", 0, 1e6, 0, false, false},
    [MM_MAINT_DETECTOR] = {"detector", 0, 4, MM_DRIFT_ADWIN, true, true},
    [MM_MAINT_HOLDOUT_SIZE] = {"holdout_size", 1, 1e8, 1000, true, true},
    [MM_MAINT_HOLDOUT_EVERY] = {"holdout_every", 0, 1e9, 5, true, false},
    [MM_MAINT_RECENT_SIZE] = {"recent_size", 1, 1e8, 3000, true, true},
    [MM_MAINT_CHALLENGER_EPOCHS] = {"challenger_epochs", 0, 1000, 2, true, false},
    [MM_MAINT_SEED] = {"seed", 0, 9007199254740992.0, 0, true, true},
    [MM_MAINT_CHALLENGER_LR] = {"challenger_lr", 1e-12, 1, 1e-4, false, false},
    [MM_MAINT_CHALLENGER_DELAY] = {"challenger_delay", 0, 1e9, 1000, true, false},
};

struct mm_maintainer {
    size_t dim, classes;
    double set[MAINT_PARAM_COUNT];
    mm_optim_kind kind;
    double optset[MM_OPT_PARAM_COUNT];
    bool optset_given[MM_OPT_PARAM_COUNT];
    bool started; /* first feed done: buffers allocated, sizes fixed */

    /* checkpoint ring: ring[(head + i) % cap], i < n, oldest first */
    mm_model **ring;
    uint64_t *ring_ver;
    size_t ring_cap, ring_head, ring_n;
    uint64_t version;
    char *ckpt_dir;

    mm_model *work;
    mm_optimizer *opt;
    mm_drift *det;
    struct mm_server *server;

    /* rolling progressive-validation window */
    uint8_t *roll_ok;
    double *roll_loss;
    size_t roll_n, roll_pos;
    double roll_ok_sum, roll_loss_sum;

    /* holdout: slots [0, h_n) hold the ring of accepted samples (trusted ones
     * and those of accepted windows), slots [h_cap, h_cap + hq_n) the current
     * window's samples, which join the ring when the window is accepted and
     * are dropped with it when it is quarantined (a long poisoned stretch
     * never fills the holdout). hpos: stream position + 1, HOLD_TRUSTED for
     * the caller's samples. */
    float *hx;
    int32_t *hy;
    uint64_t *hpos;
    size_t h_cap, h_n, h_pos, hq_n, hq_pos;
    uint64_t h_gen;
    int32_t *hp_good, *hp_other; /* predictions of the deployed version / a candidate */
    double good_acc; /* deployed version's holdout accuracy and predictions ... */
    uint64_t good_gen, good_ver; /* ... for this holdout generation and version */
    bool good_valid;
    double holdout_acc; /* reported */
    uint64_t focus_since; /* stream position + 1 of the last drift signal, 0 = none */

    /* per-feature input sums for re-alignment: `ref` runs until a drift
     * signal, `cur` from the signal to the challenger */
    double *ref_s1, *ref_s2, *cur_s1, *cur_s2;
    uint64_t ref_n, cur_n;
    mm_model *drift_base; /* the deployed version at the last drift signal */

    mm_reservoir *res;
    /* samples learned in the current window (to the reservoir on accept) */
    float *px;
    int32_t *py;
    uint64_t *ppos; /* their stream positions */
    size_t p_n, p_cap;
    /* recent learned samples with their stream positions (challengers) */
    float *rx;
    int32_t *ry;
    uint64_t *rpos;
    size_t r_cap, r_n, r_pos;
    /* the next optimizer step's batch: new samples, then replay */
    float *bx;
    int32_t *by;
    uint64_t *bpos; /* stream positions of the new samples */
    uint64_t *res_pos; /* stream position of each reservoir slot */
    size_t b_n, b_cap;
    double replay_carry;

    uint64_t win_start; /* stream position where the current window began */
    size_t win_learned;
    uint64_t samples, drifts, rollbacks, promotions, challengers, learned, quarantined, correct;
    int drift_state;
    bool challenge_armed; /* a drift was seen: train a challenger at challenge_at */
    uint64_t challenge_at;
    unsigned challenge_tries; /* challengers rejected since the signal */
    mm_maint_range *q;
    size_t q_n, q_cap;
    size_t q_reported; /* q_n at the start of the current call */
    uint32_t events;
    float *logits;
};

/* ---- names and settings ------------------------------------------------- */

static bool param_valid(int p) {
    return p >= MAINT_PARAM_FIRST && p <= MAINT_PARAM_LAST && params[p].name;
}

const char *mm_maint_param_name(mm_maint_param param) {
    return param_valid((int)param) ? params[param].name : NULL;
}

mm_status mm_maint_param_from_name(const char *name, mm_maint_param *out) {
    if (!name) return mm_null_arg("name");
    if (!out) return mm_null_arg("out");
    for (int p = MAINT_PARAM_FIRST; p <= MAINT_PARAM_LAST; p++)
        if (strcmp(params[p].name, name) == 0) {
            *out = (mm_maint_param)p;
            return MM_OK;
        }
    return mm_error(MM_E_INVALID_ARGUMENT, "unknown maintainer setting '%s'", name);
}

/* MM_MAINT_DETECTOR: "none" (0) or a drift detector's kind name. */
static const char *detector_name(int v) {
    if (v == 0) return "none";
    const char *n = mm_drift_kind_name((mm_drift_kind)v);
    return strcmp(n, "unknown") == 0 ? NULL : n;
}

static mm_value_name_fn value_names(mm_maint_param param) {
    return param == MM_MAINT_DETECTOR ? detector_name : NULL;
}

mm_status mm_maint_value_from_name(mm_maint_param param, const char *name, double *value) {
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown maintainer setting %d", (int)param);
    const maint_param_info *pi = &params[param];
    mm_value_name_fn names = value_names(param);
    if (names && name && value && strcmp(name, "none") != 0) {
        /* the detector's aliases ("ph") are the drift module's */
        mm_drift_kind k;
        if (mm_drift_kind_from_name(name, &k) == MM_OK) {
            *value = (double)k;
            return MM_OK;
        }
    }
    char what[64];
    snprintf(what, sizeof what, "maintainer setting %s", pi->name);
    return mm_value_from_name_lookup(what, names, names ? (int)pi->lo : 0,
                                     names ? (int)pi->hi : -1, name, value);
}

const char *mm_maint_value_name(mm_maint_param param, double value) {
    mm_value_name_fn names = param_valid((int)param) ? value_names(param) : NULL;
    if (!names) return NULL;
    return mm_value_name_lookup(names, (int)params[param].lo, (int)params[param].hi, value);
}

/* ---- small helpers ------------------------------------------------------ */

static mm_model *deployed(const mm_maintainer *mt) {
    return mt->ring[(mt->ring_head + mt->ring_n - 1) % mt->ring_cap];
}

static mm_status make_optimizer(mm_maintainer *mt) {
    mm_optimizer_free(mt->opt);
    mt->opt = NULL;
    mm_optimizer *o;
    mm_status st = mm_optimizer_create(&o, mt->work, mt->kind);
    if (st != MM_OK) return st;
    /* the window's steps are on record in its checkpoint or rollback event
     * (stream range, samples learned): no online_steps event per window */
    if ((st = mm_optimizer_set(o, MM_OPT_LINEAGE, 0)) != MM_OK) goto fail;
    for (int p = MM_OPT_PARAM_FIRST; p <= MM_OPT_PARAM_LAST; p++)
        if (mt->optset_given[p] && (st = mm_optimizer_set(o, (mm_opt_param)p, mt->optset[p])) != MM_OK)
            goto fail;
    if ((st = mm_optimizer_set(o, MM_OPT_L2SP, mt->set[MM_MAINT_L2SP])) != MM_OK) goto fail;
    if ((st = mm_optimizer_set_anchor(o)) != MM_OK) goto fail; /* the deployed weights */
    mt->opt = o;
    return MM_OK;
fail:
    mm_optimizer_free(o);
    return st;
}

/* New working copy: a clone of the deployed version, with a new optimizer.
 * keep_lineage: it inherits the old working copy's lineage (the deployed
 * version's plus the rollbacks since), so that consecutive rollbacks all
 * stay on record. */
static mm_status reset_work(mm_maintainer *mt, bool keep_lineage) {
    mm_model *w;
    mm_status st = mm_model_clone(deployed(mt), &w);
    if (st != MM_OK) return st;
    const char *old = keep_lineage && mt->work ? mm_lineage_text(mt->work) : NULL;
    if (keep_lineage && mt->work && (st = old ? mm_lineage_set(w, old) : MM_E_OUT_OF_MEMORY) != MM_OK) {
        mm_model_free(w);
        return st;
    }
    mm_optimizer_free(mt->opt);
    mt->opt = NULL;
    mm_model_free(mt->work);
    mt->work = w;
    return make_optimizer(mt);
}

static void ckpt_path(const mm_maintainer *mt, uint64_t version, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/ckpt-%08llu.mmf", mt->ckpt_dir, (unsigned long long)version);
}

/* Push a clone of `m` (already carrying its lineage event) as the new
 * deployed version `version`: memory ring, disk, server. */
static mm_status push_checkpoint(mm_maintainer *mt, const mm_model *m, uint64_t version) {
    mm_model *c;
    mm_status st = mm_model_clone(m, &c);
    if (st != MM_OK) return st;
    if (mt->ckpt_dir) {
        char path[4096];
        ckpt_path(mt, version, path, sizeof path);
        if ((st = mm_model_save(c, path)) != MM_OK) {
            mm_model_free(c);
            return mm_error_prefix(st, "writing checkpoint %s: ", path);
        }
    }
    if (mt->ring_n == mt->ring_cap) {
        const size_t old = mt->ring_head;
        if (mt->ckpt_dir) {
            char path[4096];
            ckpt_path(mt, mt->ring_ver[old], path, sizeof path);
            unlink(path); /* may already be gone; nothing depends on it */
        }
        mm_model_free(mt->ring[old]);
        mt->ring[old] = NULL;
        mt->ring_head = (mt->ring_head + 1) % mt->ring_cap;
        mt->ring_n--;
    }
    const size_t slot = (mt->ring_head + mt->ring_n) % mt->ring_cap;
    mt->ring[slot] = c;
    mt->ring_ver[slot] = version;
    mt->ring_n++;
    mt->version = version;
    if (mt->server) {
        uint64_t sv;
        if ((st = mm_server_publish(mt->server, c, &sv)) != MM_OK)
            return mm_error_prefix(st, "publishing version %llu: ", (unsigned long long)version);
    }
    return MM_OK;
}

#define HOLD_TRUSTED 0
/* After a drift signal, a challenger that is better on the holdout samples
 * taken since the signal with this significance is promoted even if it
 * loses on the older ones (which show the old distribution). */
#define FOCUS_MIN 100   /* holdout samples since the signal needed for the test */
#define FOCUS_Z 2.326   /* one-sided 1% of a paired sign test (McNemar) */
#define FOCUS_MIN_GAIN 5
/* A window whose working copy is better on the window's own held-out
 * samples with this significance is accepted even if it lost on the ring: a
 * lasting change of the labels' meaning (concept drift) can be learned and
 * shows on samples of the same window, scrambled labels cannot. Stricter
 * than for challengers: it is tested at every window. */
#define OWN_Z 3.09      /* one-sided 0.1% */
#define CHALLENGER_TRIES 3 /* challenger rounds per drift signal until one is promoted */

/* How a candidate compares with the deployed version on the holdout. */
typedef struct holdout_cmp {
    double acc, good_acc; /* accuracy of both over the holdout (NaN if empty) */
    size_t focus;         /* holdout samples taken since the last drift signal */
    size_t better, worse; /* ... that only the candidate / only the deployed gets right */
    bool significant;     /* the candidate is significantly better on those */
    size_t own, own_better, own_worse; /* the same on the current window's samples */
    bool own_significant;
} holdout_cmp;

/* One-sided paired sign test: `better` wins against `worse` out of n. */
static bool sign_test(size_t n, size_t better, size_t worse, double z) {
    const double gain = (double)better - (double)worse;
    /* normal approximation with continuity correction */
    return n >= FOCUS_MIN && gain >= FOCUS_MIN_GAIN &&
           gain - 1.0 > z * sqrt((double)(better + worse));
}

static mm_status holdout_predict(const mm_maintainer *mt, const mm_model *m, int32_t *pred) {
    mm_status st = mt->h_n ? mm_model_predict(m, mt->hx, mt->h_n, pred) : MM_OK;
    if (st == MM_OK && mt->hq_n)
        st = mm_model_predict(m, mt->hx + mt->h_cap * mt->dim, mt->hq_n, pred + mt->h_cap);
    return st;
}

/* Slot of the i-th holdout sample, i < h_n + hq_n. */
static size_t holdout_slot(const mm_maintainer *mt, size_t i) {
    return i < mt->h_n ? i : mt->h_cap + (i - mt->h_n);
}

/* Predictions and accuracy of the deployed version, cached per (holdout
 * generation, version). */
static mm_status good_predictions(mm_maintainer *mt) {
    if (mt->good_valid && mt->good_gen == mt->h_gen && mt->good_ver == mt->version) return MM_OK;
    mm_status st = holdout_predict(mt, deployed(mt), mt->hp_good);
    if (st != MM_OK) return st;
    const size_t n = mt->h_n + mt->hq_n;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t k = holdout_slot(mt, i);
        ok += mt->hp_good[k] == mt->hy[k];
    }
    mt->good_acc = n ? (double)ok / (double)n : NAN;
    mt->good_gen = mt->h_gen;
    mt->good_ver = mt->version;
    mt->good_valid = true;
    return MM_OK;
}

static mm_status holdout_compare(mm_maintainer *mt, const mm_model *cand, holdout_cmp *c) {
    memset(c, 0, sizeof *c);
    mm_status st = good_predictions(mt);
    if (st == MM_OK) st = holdout_predict(mt, cand, mt->hp_other);
    if (st != MM_OK) return st;
    const size_t n = mt->h_n + mt->hq_n;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const size_t k = holdout_slot(mt, i);
        const bool a = mt->hp_other[k] == mt->hy[k], g = mt->hp_good[k] == mt->hy[k];
        ok += a;
        if (mt->focus_since && mt->hpos[k] != HOLD_TRUSTED && mt->hpos[k] >= mt->focus_since) {
            c->focus++;
            c->better += a && !g;
            c->worse += g && !a;
        }
        if (i >= mt->h_n) {
            c->own++;
            c->own_better += a && !g;
            c->own_worse += g && !a;
        }
    }
    c->acc = n ? (double)ok / (double)n : NAN;
    c->good_acc = mt->good_acc;
    c->significant = sign_test(c->focus, c->better, c->worse, FOCUS_Z);
    c->own_significant = sign_test(c->own, c->own_better, c->own_worse, OWN_Z);
    return MM_OK;
}

/* Into the ring of accepted samples (overwriting the oldest). */
static void holdout_add(mm_maintainer *mt, const float *x, int32_t y, uint64_t tag) {
    memcpy(mt->hx + mt->h_pos * mt->dim, x, mt->dim * sizeof *x);
    mt->hy[mt->h_pos] = y;
    mt->hpos[mt->h_pos] = tag;
    mt->h_pos = (mt->h_pos + 1) % mt->h_cap;
    if (mt->h_n < mt->h_cap) mt->h_n++;
    mt->h_gen++;
}

/* A stream sample held out in the current window. */
static void holdout_add_pending(mm_maintainer *mt, const float *x, int32_t y, uint64_t pos) {
    const size_t k = mt->h_cap + mt->hq_pos;
    memcpy(mt->hx + k * mt->dim, x, mt->dim * sizeof *x);
    mt->hy[k] = y;
    mt->hpos[k] = pos + 1;
    mt->hq_pos = (mt->hq_pos + 1) % mt->h_cap;
    if (mt->hq_n < mt->h_cap) mt->hq_n++;
    mt->h_gen++;
}

/* The window ends: its held-out samples join the ring, or are dropped. */
static void holdout_settle(mm_maintainer *mt, bool accepted) {
    if (accepted) {
        const size_t first = mt->hq_n < mt->h_cap ? 0 : mt->hq_pos; /* oldest first */
        for (size_t i = 0; i < mt->hq_n; i++) {
            const size_t k = mt->h_cap + (first + i) % mt->h_cap;
            holdout_add(mt, mt->hx + k * mt->dim, mt->hy[k], mt->hpos[k]);
        }
    }
    if (mt->hq_n) mt->h_gen++;
    mt->hq_n = 0;
    mt->hq_pos = 0;
}

static char *fmt_double(char *buf, size_t cap, double v) {
    if (isfinite(v))
        snprintf(buf, cap, "%.6g", v);
    else
        snprintf(buf, cap, "null");
    return buf;
}

/* ---- create / free / settings ------------------------------------------ */

mm_status mm_maintainer_create(mm_maintainer **out, const mm_model *deployed_model,
                               mm_optim_kind kind) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!deployed_model) return mm_null_arg("deployed model");
    if (mm_model_num_layers(deployed_model) == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "the deployed model has no layers");
    if (mm_model_loss(deployed_model) != MM_LOSS_SOFTMAX_XENT)
        return mm_error(MM_E_UNSUPPORTED,
                        "the maintainer guards classification accuracy: the model's loss must "
                        "be softmax_xent, not %s",
                        mm_loss_name(mm_model_loss(deployed_model)));
    if (!mm_optim_kind_name(kind))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown optimizer kind %d", (int)kind);
    mm_maintainer *mt = calloc(1, sizeof *mt);
    if (!mt) return mm_oom("maintainer");
    mt->dim = mm_model_input_dim(deployed_model);
    mt->classes = mm_model_output_dim(deployed_model);
    mt->kind = kind;
    for (int p = MAINT_PARAM_FIRST; p <= MAINT_PARAM_LAST; p++) mt->set[p] = params[p].def;
    mt->holdout_acc = NAN;
    mm_status st;
    mt->ring_cap = (size_t)mt->set[MM_MAINT_RING];
    mt->ring = calloc(mt->ring_cap, sizeof *mt->ring);
    mt->ring_ver = calloc(mt->ring_cap, sizeof *mt->ring_ver);
    mt->logits = mm_alloc_floats(mt->classes);
    if (!mt->ring || !mt->ring_ver || !mt->logits) {
        mm_maintainer_free(mt);
        return mm_oom("maintainer");
    }
    mm_model *first;
    if ((st = mm_model_clone(deployed_model, &first)) != MM_OK) {
        mm_maintainer_free(mt);
        return st;
    }
    mt->ring[0] = first;
    mt->ring_ver[0] = 1;
    mt->ring_n = 1;
    mt->version = 1;
    if ((st = reset_work(mt, false)) != MM_OK) {
        mm_maintainer_free(mt);
        return st;
    }
    *out = mt;
    return MM_OK;
}

void mm_maintainer_free(mm_maintainer *mt) {
    if (!mt) return;
    mm_optimizer_free(mt->opt);
    mm_model_free(mt->work);
    mm_model_free(mt->drift_base);
    if (mt->ring)
        for (size_t i = 0; i < mt->ring_cap; i++) mm_model_free(mt->ring[i]);
    free(mt->ring);
    free(mt->ring_ver);
    free(mt->ckpt_dir);
    mm_drift_free(mt->det);
    free(mt->roll_ok);
    free(mt->roll_loss);
    mm_free_floats(mt->hx);
    free(mt->hy);
    free(mt->hpos);
    free(mt->hp_good);
    free(mt->hp_other);
    free(mt->ref_s1);
    free(mt->ref_s2);
    free(mt->cur_s1);
    free(mt->cur_s2);
    mm_reservoir_free(mt->res);
    mm_free_floats(mt->px);
    free(mt->py);
    free(mt->ppos);
    free(mt->bpos);
    free(mt->res_pos);
    mm_free_floats(mt->rx);
    free(mt->ry);
    free(mt->rpos);
    mm_free_floats(mt->bx);
    free(mt->by);
    free(mt->q);
    mm_free_floats(mt->logits);
    free(mt);
}

mm_status mm_maintainer_set(mm_maintainer *mt, mm_maint_param param, double value) {
    if (!mt) return mm_null_arg("maintainer");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown maintainer setting %d", (int)param);
    const maint_param_info *pi = &params[param];
    if (!(value >= pi->lo && value <= pi->hi))
        return mm_error(MM_E_OUT_OF_RANGE, "maintainer setting %s must be in [%.17g, %.17g], got %.10g",
                        pi->name, pi->lo, pi->hi, value);
    if (pi->integer && value != floor(value))
        return mm_error(MM_E_INVALID_ARGUMENT, "maintainer setting %s must be an integer, got %.10g",
                        pi->name, value);
    if (pi->fixed && value != mt->set[param] &&
        (mt->started || (param == MM_MAINT_HOLDOUT_SIZE && mt->hx)))
        return mm_error(MM_E_STATE, "maintainer setting %s can only change before the first %s",
                        pi->name, param == MM_MAINT_HOLDOUT_SIZE ? "holdout or feed" : "feed");
    if (param == MM_MAINT_RING && value != mt->set[param]) {
        /* only the initial checkpoint exists: move it into a ring of the new size */
        const size_t cap = (size_t)value;
        mm_model **ring = calloc(cap, sizeof *ring);
        uint64_t *ver = calloc(cap, sizeof *ver);
        if (!ring || !ver) {
            free(ring);
            free(ver);
            return mm_oom("checkpoint ring");
        }
        ring[0] = deployed(mt);
        ver[0] = mt->version;
        for (size_t i = 0; i + 1 < mt->ring_n; i++)
            mm_model_free(mt->ring[(mt->ring_head + i) % mt->ring_cap]);
        free(mt->ring);
        free(mt->ring_ver);
        mt->ring = ring;
        mt->ring_ver = ver;
        mt->ring_cap = cap;
        mt->ring_head = 0;
        mt->ring_n = 1;
    }
    if (param == MM_MAINT_L2SP) {
        mm_status st = mm_optimizer_set(mt->opt, MM_OPT_L2SP, value);
        if (st != MM_OK) return st;
    }
    mt->set[param] = value;
    return MM_OK;
}

mm_status mm_maintainer_get(const mm_maintainer *mt, mm_maint_param param, double *value) {
    if (!mt) return mm_null_arg("maintainer");
    if (!value) return mm_null_arg("value");
    if (!param_valid((int)param))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown maintainer setting %d", (int)param);
    *value = mt->set[param];
    return MM_OK;
}

mm_status mm_maintainer_set_optimizer(mm_maintainer *mt, mm_opt_param param, double value) {
    if (!mt) return mm_null_arg("maintainer");
    if (param == MM_OPT_L2SP)
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "set the L2-SP strength with mm_maintainer_set(MM_MAINT_L2SP)");
    mm_status st = mm_optimizer_set(mt->opt, param, value);
    if (st != MM_OK) return st;
    mt->optset[param] = value;
    mt->optset_given[param] = true;
    return MM_OK;
}

/* The detector named by MM_MAINT_DETECTOR, created on first need. */
static mm_status ensure_detector(mm_maintainer *mt) {
    if (mt->det || mt->set[MM_MAINT_DETECTOR] == 0) return MM_OK;
    return mm_drift_create(&mt->det, (mm_drift_kind)mt->set[MM_MAINT_DETECTOR]);
}

mm_status mm_maintainer_set_detector(mm_maintainer *mt, const char *name, double value) {
    if (!mt) return mm_null_arg("maintainer");
    if (!name) return mm_null_arg("name");
    if (mt->set[MM_MAINT_DETECTOR] == 0)
        return mm_error(MM_E_STATE, "the maintainer has no drift detector (MM_MAINT_DETECTOR is 0)");
    mm_status st = ensure_detector(mt);
    if (st != MM_OK) return st;
    return mm_drift_set(mt->det, name, value);
}

/* The holdout ring, allocated by the first holdout or feed. */
static mm_status ensure_holdout(mm_maintainer *mt) {
    if (mt->hx) return MM_OK;
    const size_t cap = (size_t)mt->set[MM_MAINT_HOLDOUT_SIZE];
    size_t count; /* the ring and the current window's samples: 2 * cap slots */
    if (!mm_mul_ok(2 * cap, mt->dim, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "holdout of %zu samples is too large", cap);
    mt->hx = mm_alloc_floats(count);
    mt->hy = mm_malloc_array(2 * cap, sizeof *mt->hy);
    mt->hpos = mm_malloc_array(2 * cap, sizeof *mt->hpos);
    mt->hp_good = mm_malloc_array(2 * cap, sizeof *mt->hp_good);
    mt->hp_other = mm_malloc_array(2 * cap, sizeof *mt->hp_other);
    if (!mt->hx || !mt->hy || !mt->hpos || !mt->hp_good || !mt->hp_other) {
        mm_free_floats(mt->hx);
        free(mt->hy);
        free(mt->hpos);
        free(mt->hp_good);
        free(mt->hp_other);
        mt->hx = NULL;
        mt->hy = NULL;
        mt->hpos = NULL;
        mt->hp_good = mt->hp_other = NULL;
        return mm_oom("holdout");
    }
    mt->h_cap = cap;
    return MM_OK;
}

/* Allocate the stream buffers (first feed). */
static mm_status start(mm_maintainer *mt) {
    if (mt->started) return MM_OK;
    mm_status st = ensure_detector(mt);
    if (st != MM_OK) return st;
    const size_t W = (size_t)mt->set[MM_MAINT_WINDOW], B = (size_t)mt->set[MM_MAINT_BATCH];
    const size_t D = mt->dim;
    if ((st = ensure_holdout(mt)) != MM_OK) return st;
    mt->r_cap = (size_t)mt->set[MM_MAINT_RECENT_SIZE];
    mt->p_cap = W + B;
    mt->b_cap = B + (size_t)ceil(16.0 * (double)B) + 1; /* replay mix <= 16 */
    size_t rc, pc, bc;
    if (!mm_mul_ok(mt->r_cap, D, &rc) ||
        !mm_mul_ok(mt->p_cap, D, &pc) || !mm_mul_ok(mt->b_cap, D, &bc))
        return mm_error(MM_E_OUT_OF_RANGE, "maintainer buffers too large");
    mt->roll_ok = calloc(W, 1);
    mt->roll_loss = mm_calloc_array(W, sizeof *mt->roll_loss);
    mt->px = mm_alloc_floats(pc);
    mt->py = mm_malloc_array(mt->p_cap, sizeof *mt->py);
    mt->ppos = mm_malloc_array(mt->p_cap, sizeof *mt->ppos);
    mt->bpos = mm_malloc_array(B, sizeof *mt->bpos);
    mt->rx = mm_alloc_floats(rc);
    mt->ry = mm_malloc_array(mt->r_cap, sizeof *mt->ry);
    mt->rpos = mm_malloc_array(mt->r_cap, sizeof *mt->rpos);
    mt->bx = mm_alloc_floats(bc);
    mt->by = mm_malloc_array(mt->b_cap, sizeof *mt->by);
    mt->ref_s1 = mm_calloc_array(D, sizeof *mt->ref_s1);
    mt->ref_s2 = mm_calloc_array(D, sizeof *mt->ref_s2);
    mt->cur_s1 = mm_calloc_array(D, sizeof *mt->cur_s1);
    mt->cur_s2 = mm_calloc_array(D, sizeof *mt->cur_s2);
    if (!mt->roll_ok || !mt->roll_loss || !mt->px || !mt->py || !mt->ppos || !mt->bpos ||
        !mt->rx || !mt->ry ||
        !mt->rpos || !mt->bx || !mt->by || !mt->ref_s1 || !mt->ref_s2 || !mt->cur_s1 ||
        !mt->cur_s2)
        return mm_oom("maintainer stream buffers");
    if (mt->set[MM_MAINT_REPLAY_SIZE] > 0) {
        if ((st = mm_reservoir_create(&mt->res, (size_t)mt->set[MM_MAINT_REPLAY_SIZE], D,
                                      (uint64_t)mt->set[MM_MAINT_SEED])) != MM_OK)
            return st;
        mt->res_pos = mm_malloc_array((size_t)mt->set[MM_MAINT_REPLAY_SIZE], sizeof *mt->res_pos);
        if (!mt->res_pos) return mm_oom("replay positions");
    }
    mt->started = true;
    return MM_OK;
}

static mm_status check_samples(const mm_maintainer *mt, const float *x, const int32_t *labels,
                               size_t n) {
    if (n > 0 && !x) return mm_null_arg("x");
    if (n > 0 && !labels) return mm_null_arg("labels");
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= mt->classes)
            return mm_error(MM_E_OUT_OF_RANGE, "label of sample %zu is %d; the model has %zu classes",
                            i, (int)labels[i], mt->classes);
    return MM_OK;
}

mm_status mm_maintainer_set_holdout(mm_maintainer *mt, const float *x, const int32_t *labels,
                                    size_t n) {
    if (!mt) return mm_null_arg("maintainer");
    mm_status st = check_samples(mt, x, labels, n);
    if (st != MM_OK) return st;
    if (n > (size_t)mt->set[MM_MAINT_HOLDOUT_SIZE])
        return mm_error(MM_E_OUT_OF_RANGE, "holdout of %zu samples exceeds holdout_size %zu", n,
                        (size_t)mt->set[MM_MAINT_HOLDOUT_SIZE]);
    if ((st = ensure_holdout(mt)) != MM_OK) return st;
    mt->h_n = 0;
    mt->h_pos = 0;
    for (size_t i = 0; i < n; i++) holdout_add(mt, x + i * mt->dim, labels[i], HOLD_TRUSTED);
    mt->h_gen++;
    if ((st = good_predictions(mt)) != MM_OK) return st;
    mt->holdout_acc = mt->good_acc;
    return MM_OK;
}

mm_status mm_maintainer_set_checkpoint_dir(mm_maintainer *mt, const char *dir) {
    if (!mt) return mm_null_arg("maintainer");
    if (!dir) {
        free(mt->ckpt_dir);
        mt->ckpt_dir = NULL;
        return MM_OK;
    }
    if (!*dir) return mm_error(MM_E_INVALID_ARGUMENT, "checkpoint directory is empty");
    char *d = mm_strdup(dir);
    if (!d) return mm_oom("checkpoint directory");
    char *old = mt->ckpt_dir;
    mt->ckpt_dir = d;
    char path[4096];
    ckpt_path(mt, mt->version, path, sizeof path);
    mm_status st = mm_model_save(deployed(mt), path);
    if (st != MM_OK) {
        mt->ckpt_dir = old;
        free(d);
        return mm_error_prefix(st, "checkpoint directory %s: ", dir);
    }
    free(old);
    return MM_OK;
}

mm_status mm_maintainer_attach_server(mm_maintainer *mt, struct mm_server *server) {
    if (!mt) return mm_null_arg("maintainer");
    if (server) {
        uint64_t v;
        mm_status st = mm_server_publish(server, deployed(mt), &v);
        if (st != MM_OK) return st;
    }
    mt->server = server;
    return MM_OK;
}

/* ---- the guard ---------------------------------------------------------- */

static mm_status add_range(mm_maintainer *mt, uint64_t end, mm_maint_reason reason, double acc,
                           double good) {
    if (mt->q_n == mt->q_cap) {
        size_t cap = mt->q_cap ? 2 * mt->q_cap : 16;
        mm_maint_range *q = realloc(mt->q, cap * sizeof *q);
        if (!q) return mm_oom("quarantine list");
        mt->q = q;
        mt->q_cap = cap;
    }
    mm_maint_range *r = &mt->q[mt->q_n++];
    r->start = mt->win_start;
    r->end = end;
    r->reason = reason;
    r->accuracy = acc;
    r->good_accuracy = good;
    mt->quarantined += end - mt->win_start;
    return MM_OK;
}

/* Roll the working copy back to the deployed version, quarantining the
 * window [win_start, end). */
static mm_status rollback(mm_maintainer *mt, uint64_t end, mm_maint_reason reason, double acc,
                          double good) {
    mm_status st = add_range(mt, end, reason, acc, good);
    if (st != MM_OK) return st;
    holdout_settle(mt, false);
    if ((st = reset_work(mt, true)) != MM_OK) return st;
    char a[32], g[32], detail[320];
    snprintf(detail, sizeof detail,
             "{\"restored_version\":%llu,\"window_start\":%llu,\"window_end\":%llu,"
             "\"reason\":\"%s\",\"holdout_accuracy\":%s,\"good_accuracy\":%s}",
             (unsigned long long)mt->version, (unsigned long long)mt->win_start,
             (unsigned long long)end, reason == MM_MAINT_REASON_NUMERIC ? "numeric" : "metric",
             fmt_double(a, sizeof a, acc), fmt_double(g, sizeof g, good));
    if ((st = mm_model_add_lineage(mt->work, "rollback", detail)) != MM_OK) return st;
    mt->rollbacks++;
    mt->events |= MM_MAINT_EV_ROLLBACK;
    mt->p_n = 0;
    mt->b_n = 0;
    mt->win_start = end;
    mt->win_learned = 0;
    return MM_OK;
}

/* The working copy becomes the deployed version. */
static mm_status accept(mm_maintainer *mt, uint64_t end, double acc) {
    char a[32], detail[320];
    const uint64_t v = mt->version + 1;
    snprintf(detail, sizeof detail,
             "{\"version\":%llu,\"parent\":%llu,\"window_start\":%llu,\"window_end\":%llu,"
             "\"samples\":%zu,\"holdout_accuracy\":%s}",
             (unsigned long long)v, (unsigned long long)mt->version,
             (unsigned long long)mt->win_start, (unsigned long long)end, mt->win_learned,
             fmt_double(a, sizeof a, acc));
    mm_status st = mm_model_add_lineage(mt->work, "checkpoint", detail);
    if (st != MM_OK) return st;
    if ((st = push_checkpoint(mt, mt->work, v)) != MM_OK) return st;
    holdout_settle(mt, true);
    mt->holdout_acc = acc;
    if (mt->res)
        for (size_t i = 0; i < mt->p_n; i++) {
            size_t slot;
            if ((st = mm_reservoir_offer(mt->res, mt->px + i * mt->dim, mt->py[i], &slot)) != MM_OK)
                return st;
            if (slot != SIZE_MAX) mt->res_pos[slot] = mt->ppos[i];
        }
    mt->learned += mt->p_n;
    mt->p_n = 0;
    mt->win_start = end;
    mt->win_learned = 0;
    mt->events |= MM_MAINT_EV_CHECKPOINT;
    return mm_optimizer_set_anchor(mt->opt); /* L2-SP pulls towards the new deployed version */
}

/* End the window at stream position `end`: accept or roll back. */
static mm_status guard(mm_maintainer *mt, uint64_t end) {
    if (mt->win_learned == 0) {
        mt->win_start = end;
        return MM_OK;
    }
    holdout_cmp c;
    mm_status st = holdout_compare(mt, mt->work, &c);
    if (st != MM_OK) return st;
    if (isfinite(c.good_acc) && !c.own_significant &&
        !(c.acc >= c.good_acc - mt->set[MM_MAINT_GUARD_THRESHOLD]))
        return rollback(mt, end, MM_MAINT_REASON_METRIC, c.acc, c.good_acc);
    return accept(mt, end, c.acc);
}

/* One optimizer step on the staged batch plus replay. */
static mm_status learn_batch(mm_maintainer *mt, uint64_t end) {
    const size_t B = mt->b_n;
    if (B == 0) return MM_OK;
    size_t k = 0;
    if (mt->res && mm_reservoir_size(mt->res) > 0) {
        mt->replay_carry += mt->set[MM_MAINT_REPLAY_MIX] * (double)B;
        k = (size_t)floor(mt->replay_carry);
        if (k > mt->b_cap - B) k = mt->b_cap - B;
        mt->replay_carry -= (double)k;
        mm_status st = mm_reservoir_draw(mt->res, k, mt->bx + B * mt->dim, mt->by + B);
        if (st != MM_OK) return st;
    }
    double loss = NAN;
    mm_status st = mm_optimizer_step(mt->opt, mt->bx, mt->by, NULL, B + k, &loss);
    if (st == MM_E_NUMERIC || (st == MM_OK && !isfinite(loss))) {
        mm_clear_error();
        return rollback(mt, end, MM_MAINT_REASON_NUMERIC, NAN, NAN);
    }
    if (st != MM_OK) return st;
    memcpy(mt->px + mt->p_n * mt->dim, mt->bx, B * mt->dim * sizeof *mt->bx);
    memcpy(mt->py + mt->p_n, mt->by, B * sizeof *mt->by);
    memcpy(mt->ppos + mt->p_n, mt->bpos, B * sizeof *mt->bpos);
    mt->p_n += B;
    mt->win_learned += B;
    mt->b_n = 0;
    return MM_OK;
}

/* ---- champion / challenger ---------------------------------------------- */

static bool in_quarantine(const mm_maintainer *mt, uint64_t pos) {
    for (size_t i = mt->q_n; i-- > 0;)
        if (pos >= mt->q[i].start && pos < mt->q[i].end) return true;
    return false;
}

/* Input re-alignment: the per-feature affine map x' = s x + c that gives
 * the inputs seen since the drift signal (cur) the mean and spread of those
 * seen before it (ref). Folded into the first layer (W' = W diag(s),
 * b' = b + W c) it undoes gain/offset drift of the inputs (sensor
 * recalibration, exposure); whether it helps is left to the holdout, like
 * every challenger. False when there are too few samples, the first layer is
 * frozen, or the inputs did not move. */
#define REALIGN_MIN 100
static bool realign_map(const mm_maintainer *mt, double *sc, double *sh) {
    if (mt->ref_n < REALIGN_MIN || mt->cur_n < REALIGN_MIN ||
        !mm_model_layer_trainable(deployed(mt), 0))
        return false;
    bool moved = false;
    for (size_t f = 0; f < mt->dim; f++) {
        const double mr = mt->ref_s1[f] / (double)mt->ref_n, mc = mt->cur_s1[f] / (double)mt->cur_n;
        const double vr = fmax(0.0, mt->ref_s2[f] / (double)mt->ref_n - mr * mr);
        const double vc = fmax(0.0, mt->cur_s2[f] / (double)mt->cur_n - mc * mc);
        double s = 1.0;
        if (vr > 1e-8 && vc > 1e-8) s = fmin(4.0, fmax(0.25, sqrt(vr / vc)));
        sc[f] = s;
        sh[f] = mr - s * mc;
        const double spread = sqrt(fmax(vr, 1e-4)); /* "moved": against the feature's spread */
        if (fabs(s - 1.0) > 0.05 || fabs(sh[f]) > 0.1 * spread) moved = true;
    }
    return moved;
}

static mm_status realign_fold(mm_model *m, size_t D, const double *sc, const double *sh) {
    size_t out;
    mm_status st = mm_model_layer_info(m, 0, NULL, NULL, &out, NULL);
    if (st != MM_OK) return st;
    float *w = mm_alloc_floats(out * D), *b = mm_alloc_floats(out);
    if (!w || !b) {
        st = mm_oom("input re-alignment");
    } else if ((st = mm_model_get_weights(m, 0, w, out * D, b, out)) == MM_OK) {
        for (size_t o = 0; o < out; o++) {
            double acc = b[o];
            for (size_t f = 0; f < D; f++) {
                acc += (double)w[o * D + f] * sh[f];
                w[o * D + f] = (float)((double)w[o * D + f] * sc[f]);
            }
            b[o] = (float)acc;
        }
        st = mm_model_set_weights(m, 0, w, out * D, b, out);
    }
    mm_free_floats(w);
    mm_free_floats(b);
    return st;
}

/* Train one challenger on ds from the deployed version, or re-aligned from
 * the version deployed at the drift signal when sc/sh are given; *out NULL
 * if it diverged. */
static mm_status train_challenger(mm_maintainer *mt, const mm_dataset *ds, const double *sc,
                                  const double *sh, mm_model **out) {
    *out = NULL;
    mm_model *chal = NULL;
    mm_optimizer *o = NULL;
    /* the re-alignment maps the new inputs to what the version deployed at
     * the signal knew; later versions have already half-learned them */
    const mm_model *base = sc && mt->drift_base ? mt->drift_base : deployed(mt);
    mm_status st = mm_model_clone(base, &chal);
    if (st != MM_OK) return st;
    if (sc && (st = realign_fold(chal, mt->dim, sc, sh)) != MM_OK) {
        if (st == MM_E_SHAPE || st == MM_E_UNSUPPORTED || st == MM_E_NUMERIC) {
            /* an inference-only first layer, or a map it refuses:
             * no re-aligned challenger */
            mm_clear_error();
            st = MM_OK;
        }
        goto fail;
    }
    if ((st = mm_optimizer_create(&o, chal, MM_OPTIM_ADAM)) != MM_OK) goto fail;
    if ((st = mm_optimizer_set(o, MM_OPT_LEARNING_RATE, mt->set[MM_MAINT_CHALLENGER_LR])) != MM_OK ||
        (st = mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 64)) != MM_OK ||
        (st = mm_optimizer_set(o, MM_OPT_EPOCHS, mt->set[MM_MAINT_CHALLENGER_EPOCHS])) != MM_OK ||
        (st = mm_optimizer_set(o, MM_OPT_SEED, mt->set[MM_MAINT_SEED] + (double)mt->challengers)) != MM_OK ||
        (st = mm_optimizer_set(o, MM_OPT_L2SP, mt->set[MM_MAINT_L2SP])) != MM_OK ||
        (st = mm_optimizer_set_anchor(o)) != MM_OK)
        goto fail;
    mt->challengers++;
    st = mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL);
    mm_optimizer_free(o);
    if (st == MM_E_NUMERIC) { /* a diverging challenger simply loses */
        mm_clear_error();
        mm_model_free(chal);
        return MM_OK;
    }
    if (st != MM_OK) {
        mm_model_free(chal);
        return st;
    }
    *out = chal;
    return MM_OK;
fail:
    mm_optimizer_free(o);
    mm_model_free(chal);
    return st;
}

/* After the holdout comparison: how much a candidate wins by, for choosing
 * between two (the drift-focused sign-test margin when there is a focus). */
static double cmp_score(const holdout_cmp *c) {
    return c->focus >= FOCUS_MIN ? (double)c->better - (double)c->worse : c->acc - c->good_acc;
}

static bool is_after_signal(const mm_maintainer *mt, uint64_t pos) {
    return mt->focus_since && pos + 1 >= mt->focus_since;
}

/* Does a candidate earn promotion: significantly better on the samples
 * since the drift signal, or better on the whole holdout. */
static bool promotable(const holdout_cmp *c) {
    return c->significant || c->acc > c->good_acc;
}

static mm_status challenge(mm_maintainer *mt) {
    const size_t epochs = (size_t)mt->set[MM_MAINT_CHALLENGER_EPOCHS];
    if (epochs == 0 || mt->h_n + mt->hq_n == 0) return MM_OK; /* nothing could prove it better */
    const size_t D = mt->dim;
    const size_t nres = mt->res ? mm_reservoir_size(mt->res) : 0;
    const size_t cap = mt->r_n + nres;
    if (cap == 0) return MM_OK;
    float *x = mm_alloc_floats(cap * D);
    int32_t *y = mm_malloc_array(cap, sizeof *y);
    double *sc = mm_malloc_array(D, sizeof *sc), *sh = mm_malloc_array(D, sizeof *sh);
    mm_status st = MM_OK;
    mm_dataset *ds = NULL;
    mm_model *cand[2] = {NULL, NULL};
    mm_model *best = NULL;
    holdout_cmp bc = {0};
    bool best_realigned = false;
    if (!x || !y || !sc || !sh) {
        st = mm_oom("challenger data");
        goto done;
    }
    /* recent (non-quarantined) and replay samples, those taken since the
     * drift signal first */
    size_t n = 0, n_new = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < mt->r_n; i++) {
            if (is_after_signal(mt, mt->rpos[i]) != (pass == 0) || in_quarantine(mt, mt->rpos[i]))
                continue;
            memcpy(x + n * D, mt->rx + i * D, D * sizeof *x);
            y[n++] = mt->ry[i];
        }
        for (size_t i = 0; i < nres; i++) {
            if (is_after_signal(mt, mt->res_pos[i]) != (pass == 0)) continue;
            const float *rx;
            if ((st = mm_reservoir_get(mt->res, i, &rx, &y[n])) != MM_OK) goto done;
            memcpy(x + n * D, rx, D * sizeof *x);
            n++;
        }
        if (pass == 0) n_new = n;
    }
    if (n == 0) goto done;
    /* two challengers: fine-tuned as is, and re-aligned to the new inputs
     * first; the re-aligned one learns the older samples as they would look
     * now (x = (x_old - c) / s), so its replay does not undo the alignment */
    const bool moved = realign_map(mt, sc, sh);
    for (int k = 0; k < 2 && st == MM_OK; k++) {
        if (k == 1) {
            if (!moved) break;
            float *xo = x + n_new * D;
            for (size_t i = 0; i < n - n_new; i++)
                for (size_t f = 0; f < D; f++)
                    xo[i * D + f] = (float)(((double)xo[i * D + f] - sh[f]) / sc[f]);
            mm_dataset_free(ds);
            ds = NULL;
        }
        if ((st = mm_dataset_create(&ds, x, y, n, D)) != MM_OK) goto done;
        if ((st = train_challenger(mt, ds, k ? sc : NULL, sh, &cand[k])) != MM_OK) goto done;
        if (!cand[k]) continue;
        holdout_cmp c;
        if ((st = holdout_compare(mt, cand[k], &c)) != MM_OK) goto done;
        if (!promotable(&c)) continue;
        if (!best || cmp_score(&c) > cmp_score(&bc)) {
            best = cand[k];
            bc = c;
            best_realigned = k == 1;
        }
    }
    if (!best) {
        mt->events |= MM_MAINT_EV_REJECT;
        goto done;
    }
    char a[32], c[32], detail[400];
    const uint64_t v = mt->version + 1;
    snprintf(detail, sizeof detail,
             "{\"version\":%llu,\"parent\":%llu,\"stream_position\":%llu,\"train_samples\":%zu,"
             "\"epochs\":%zu,\"realigned\":%s,\"holdout_accuracy\":%s,\"champion_accuracy\":%s,"
             "\"since_drift\":{\"samples\":%zu,\"better\":%zu,\"worse\":%zu}}",
             (unsigned long long)v, (unsigned long long)mt->version,
             (unsigned long long)mt->samples, n, epochs, best_realigned ? "true" : "false",
             fmt_double(a, sizeof a, bc.acc), fmt_double(c, sizeof c, bc.good_acc), bc.focus,
             bc.better, bc.worse);
    if ((st = mm_model_add_lineage(best, "promote", detail)) != MM_OK) goto done;
    if ((st = push_checkpoint(mt, best, v)) != MM_OK) goto done;
    mt->holdout_acc = bc.acc;
    mt->promotions++;
    mt->events |= MM_MAINT_EV_PROMOTE;
    st = reset_work(mt, false);
done:
    mm_model_free(cand[0]);
    mm_model_free(cand[1]);
    mm_dataset_free(ds);
    mm_free_floats(x);
    free(y);
    free(sc);
    free(sh);
    return st;
}

/* ---- feed --------------------------------------------------------------- */

static void fill_report(const mm_maintainer *mt, mm_maint_report *r) {
    memset(r, 0, sizeof *r);
    r->struct_size = (uint32_t)sizeof *r;
    r->events = mt->events;
    r->samples = mt->samples;
    r->version = mt->version;
    r->rolling_accuracy = mt->roll_n ? mt->roll_ok_sum / (double)mt->roll_n : NAN;
    r->rolling_loss = mt->roll_n ? mt->roll_loss_sum / (double)mt->roll_n : NAN;
    r->holdout_accuracy = mt->holdout_acc;
    r->drift_state = mt->drift_state;
    r->drifts = mt->drifts;
    r->rollbacks = mt->rollbacks;
    r->promotions = mt->promotions;
    r->challengers = mt->challengers;
    r->learned = mt->learned;
    r->quarantined = mt->quarantined;
    r->new_ranges = mt->q_n - mt->q_reported;
    r->correct = mt->correct;
}

/* Progressive validation of one sample on the deployed version (what
 * serves): loss and correctness (false, NaN loss for non-finite outputs and
 * for a non-finite feature, which mm_model_forward refuses: the caller rolls
 * the window back with reason "numeric"). */
static void validate(mm_maintainer *mt, const float *x, int32_t y, bool *ok, double *loss) {
    *ok = false;
    *loss = NAN;
    if (mm_model_forward(deployed(mt), x, 1, mt->logits) != MM_OK) {
        mm_clear_error(); /* numeric trouble of the stream, reported as a rollback */
        return;
    }
    const float *z = mt->logits;
    double mx = z[0];
    size_t arg = 0;
    for (size_t c = 1; c < mt->classes; c++)
        if (z[c] > mx) {
            mx = z[c];
            arg = c;
        }
    double s = 0.0;
    for (size_t c = 0; c < mt->classes; c++) s += exp((double)z[c] - mx);
    *loss = mx + log(s) - (double)z[y];
    *ok = isfinite(*loss) && arg == (size_t)y;
}

static void roll_add(mm_maintainer *mt, bool ok, double loss) {
    const size_t W = (size_t)mt->set[MM_MAINT_WINDOW];
    if (mt->roll_n == W) {
        mt->roll_ok_sum -= mt->roll_ok[mt->roll_pos];
        mt->roll_loss_sum -= mt->roll_loss[mt->roll_pos];
    } else {
        mt->roll_n++;
    }
    mt->roll_ok[mt->roll_pos] = ok;
    mt->roll_loss[mt->roll_pos] = loss;
    mt->roll_ok_sum += ok;
    mt->roll_loss_sum += loss;
    mt->roll_pos = (mt->roll_pos + 1) % W;
    if (mt->roll_pos == 0) { /* re-sum once per lap: no drift of the running sums */
        mt->roll_ok_sum = 0;
        mt->roll_loss_sum = 0;
        for (size_t i = 0; i < mt->roll_n; i++) {
            mt->roll_ok_sum += mt->roll_ok[i];
            mt->roll_loss_sum += mt->roll_loss[i];
        }
    }
}

/* Input sums for re-alignment: before a drift signal into ref, after it
 * (until the challenger) into cur. */
static void input_stats_add(mm_maintainer *mt, const float *x) {
    for (size_t f = 0; f < mt->dim; f++)
        if (!isfinite(x[f])) return; /* a column a sparse layer ignores */
    double *s1 = mt->challenge_armed ? mt->cur_s1 : mt->ref_s1;
    double *s2 = mt->challenge_armed ? mt->cur_s2 : mt->ref_s2;
    for (size_t f = 0; f < mt->dim; f++) {
        s1[f] += x[f];
        s2[f] += (double)x[f] * x[f];
    }
    if (mt->challenge_armed)
        mt->cur_n++;
    else
        mt->ref_n++;
}

static mm_status feed_one(mm_maintainer *mt, const float *x, int32_t y) {
    const uint64_t pos = mt->samples++;
    const size_t D = mt->dim;
    bool ok;
    double loss;
    validate(mt, x, y, &ok, &loss);
    if (!isfinite(loss)) /* NaN features or a broken working copy: never learned */
        return rollback(mt, pos + 1, MM_MAINT_REASON_NUMERIC, NAN, NAN);
    roll_add(mt, ok, loss);
    mt->correct += ok;
    input_stats_add(mt, x);
    bool drift = false;
    if (mt->det) {
        mm_drift_state ds;
        mm_status st = mm_drift_update(mt->det, ok ? 0.0 : 1.0, &ds);
        if (st != MM_OK) return st;
        mt->drift_state = (int)ds;
        if (ds == MM_DRIFT_DRIFT) {
            drift = true;
            mt->drifts++;
            mt->events |= MM_MAINT_EV_DRIFT;
        }
    }
    const uint64_t every = (uint64_t)mt->set[MM_MAINT_HOLDOUT_EVERY];
    if (every > 0 && pos % every == every - 1) {
        holdout_add_pending(mt, x, y, pos);
    } else {
        memcpy(mt->rx + mt->r_pos * D, x, D * sizeof *x);
        mt->ry[mt->r_pos] = y;
        mt->rpos[mt->r_pos] = pos;
        mt->r_pos = (mt->r_pos + 1) % mt->r_cap;
        if (mt->r_n < mt->r_cap) mt->r_n++;
        memcpy(mt->bx + mt->b_n * D, x, D * sizeof *x);
        mt->bpos[mt->b_n] = pos;
        mt->by[mt->b_n++] = y;
        mm_status st;
        if (mt->b_n == (size_t)mt->set[MM_MAINT_BATCH] && (st = learn_batch(mt, pos + 1)) != MM_OK)
            return st;
        if (mt->win_learned >= (size_t)mt->set[MM_MAINT_WINDOW] &&
            (st = guard(mt, pos + 1)) != MM_OK)
            return st;
    }
    if (drift && !mt->challenge_armed) {
        mm_model *base;
        mm_status st = mm_model_clone(deployed(mt), &base);
        if (st != MM_OK) return st;
        mm_model_free(mt->drift_base);
        mt->drift_base = base;
        mt->challenge_armed = true;
        mt->challenge_tries = 0;
        mt->challenge_at = pos + (uint64_t)mt->set[MM_MAINT_CHALLENGER_DELAY];
        mt->focus_since = pos + 1;
        memset(mt->cur_s1, 0, D * sizeof *mt->cur_s1); /* inputs after the signal */
        memset(mt->cur_s2, 0, D * sizeof *mt->cur_s2);
        mt->cur_n = 0;
    }
    if (mt->challenge_armed && pos >= mt->challenge_at) {
        /* settle the current window first, then let a challenger try; a
         * rejected one tries again with more data, CHALLENGER_TRIES times */
        mm_status st = learn_batch(mt, pos + 1);
        if (st == MM_OK) st = guard(mt, pos + 1);
        const uint64_t promotions = mt->promotions;
        if (st == MM_OK) st = challenge(mt);
        if (st == MM_OK && mt->promotions == promotions && ++mt->challenge_tries < CHALLENGER_TRIES) {
            mt->challenge_at = pos + (uint64_t)mt->set[MM_MAINT_CHALLENGER_DELAY];
        } else { /* done (an error too: the next feed must not retry it at once) */
            mt->challenge_armed = false;
            /* the inputs since the signal are the reference from now on */
            memcpy(mt->ref_s1, mt->cur_s1, D * sizeof *mt->ref_s1);
            memcpy(mt->ref_s2, mt->cur_s2, D * sizeof *mt->ref_s2);
            mt->ref_n = mt->cur_n;
        }
        if (st != MM_OK) return st;
    }
    return MM_OK;
}

mm_status mm_maintainer_feed(mm_maintainer *mt, const float *x, const int32_t *labels, size_t n,
                             mm_maint_report *report) {
    if (report) memset(report, 0, sizeof *report);
    if (!mt) return mm_null_arg("maintainer");
    mm_status st = check_samples(mt, x, labels, n);
    if (st != MM_OK) return st;
    if ((st = start(mt)) != MM_OK) return st;
    mt->events = 0;
    mt->q_reported = mt->q_n;
    for (size_t i = 0; i < n && st == MM_OK; i++) st = feed_one(mt, x + i * mt->dim, labels[i]);
    if (report) fill_report(mt, report);
    return st;
}

mm_status mm_maintainer_flush(mm_maintainer *mt, mm_maint_report *report) {
    if (report) memset(report, 0, sizeof *report);
    if (!mt) return mm_null_arg("maintainer");
    mm_status st = start(mt);
    if (st != MM_OK) return st;
    mt->events = 0;
    mt->q_reported = mt->q_n;
    st = learn_batch(mt, mt->samples);
    if (st == MM_OK) st = guard(mt, mt->samples);
    if (report) fill_report(mt, report);
    return st;
}

mm_status mm_maintainer_status(const mm_maintainer *mt, mm_maint_report *report) {
    if (!mt) return mm_null_arg("maintainer");
    if (!report) return mm_null_arg("report");
    fill_report(mt, report);
    return MM_OK;
}

const mm_model *mm_maintainer_model(const mm_maintainer *mt) { return mt ? deployed(mt) : NULL; }

const mm_model *mm_maintainer_working_model(const mm_maintainer *mt) {
    return mt ? mt->work : NULL;
}

size_t mm_maintainer_num_checkpoints(const mm_maintainer *mt) { return mt ? mt->ring_n : 0; }

mm_status mm_maintainer_checkpoint(const mm_maintainer *mt, size_t index, const mm_model **model,
                                   uint64_t *version) {
    if (!mt) return mm_null_arg("maintainer");
    if (index >= mt->ring_n)
        return mm_error(MM_E_OUT_OF_RANGE, "checkpoint %zu of %zu", index, mt->ring_n);
    const size_t slot = (mt->ring_head + index) % mt->ring_cap;
    if (model) *model = mt->ring[slot];
    if (version) *version = mt->ring_ver[slot];
    return MM_OK;
}

size_t mm_maintainer_num_quarantined(const mm_maintainer *mt) { return mt ? mt->q_n : 0; }

mm_status mm_maintainer_quarantined(const mm_maintainer *mt, size_t index, mm_maint_range *range) {
    if (!mt) return mm_null_arg("maintainer");
    if (!range) return mm_null_arg("range");
    if (index >= mt->q_n)
        return mm_error(MM_E_OUT_OF_RANGE, "quarantined range %zu of %zu", index, mt->q_n);
    *range = mt->q[index];
    return MM_OK;
}
