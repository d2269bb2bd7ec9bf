/* DDM and EDDM: drift detectors for a 0/1 error stream (1 = the model's
 * prediction was wrong).
 *
 * DDM (J. Gama, P. Medas, G. Castillo, P. Rodrigues, "Learning with Drift
 * Detection", SBIA 2004). After sample n: p = error rate so far,
 * s = sqrt(p (1 - p) / n). Once n > min_samples, (p_min, s_min) is the pair
 * with the smallest p + s seen so far; warning when
 * p + s > p_min + warning_level * s_min, drift when
 * p + s > p_min + drift_level * s_min (the paper's 2 and 3; strict
 * comparisons and "more than min_samples" as in MOA and River, whose
 * documented example stream gives the same warning and drift indices).
 *
 * EDDM (M. Baena-García, J. del Campo-Ávila, R. Fidalgo, A. Bifet, R.
 * Gavaldà, R. Morales-Bueno, "Early Drift Detection Method", 2006). At each
 * error: d = distance (in samples) since the previous error (the first
 * error's distance is its index); p' and s' are the running mean and
 * sample standard deviation of d. Once more than min_samples samples have
 * been seen, (p' + 2 s')_max is the largest value reached at an error; once
 * more than min_errors errors have been seen, warning when
 * (p' + 2 s') / (p' + 2 s')_max < warning_level (0.95), drift below
 * drift_level (0.90). Samples without an error only advance the clock.
 * These are the conditions of MOA and River (30 samples, 30 errors); River's
 * documented example stream gives the same drift index.
 *
 * Both reset fully on drift. */
#include <math.h>

#include "maintain/drift_internal.h"

/* ---- DDM --------------------------------------------------------------- */

typedef struct ddm {
    mm_drift base;
    double warning_level, drift_level, min_samples;
    uint64_t n;
    double p, p_min, s_min, ps_min;
} ddm;

static const mm_drift_param ddm_params[] = {
    {"warning_level", offsetof(ddm, warning_level), 0.0, 1e6, true, false, false, "(0, 1e6]"},
    {"drift_level", offsetof(ddm, drift_level), 0.0, 1e6, true, false, false, "(0, 1e6]"},
    {"min_samples", offsetof(ddm, min_samples), 1.0, 1e15, false, false, true, "[1, 1e15]"},
    {NULL, 0, 0, 0, false, false, false, NULL}};

static void ddm_defaults(mm_drift *d) {
    ddm *m = (ddm *)d;
    m->warning_level = 2.0;
    m->drift_level = 3.0;
    m->min_samples = 30.0;
}

static mm_status ddm_check(const mm_drift *d, const char *changed) {
    const ddm *m = (const ddm *)d;
    if (m->warning_level > m->drift_level)
        return mm_error(MM_E_OUT_OF_RANGE,
                        "ddm parameter \"%s\": warning_level (%g) must not exceed drift_level (%g)",
                        changed, m->warning_level, m->drift_level);
    return MM_OK;
}

static void ddm_reset(mm_drift *d) {
    ddm *m = (ddm *)d;
    m->n = 0;
    m->p = 0.0;
    m->p_min = INFINITY;
    m->s_min = INFINITY;
    m->ps_min = INFINITY;
}

static mm_status ddm_update(mm_drift *d, double x, mm_drift_state *state) {
    ddm *m = (ddm *)d;
    m->n++;
    m->p += (x - m->p) / (double)m->n;
    double s = sqrt(m->p * (1.0 - m->p) / (double)m->n);
    *state = MM_DRIFT_STABLE;
    if ((double)m->n <= m->min_samples) return MM_OK;
    if (m->p + s <= m->ps_min) {
        m->p_min = m->p;
        m->s_min = s;
        m->ps_min = m->p + s;
    }
    if (m->p + s > m->p_min + m->drift_level * m->s_min) {
        *state = MM_DRIFT_DRIFT;
        ddm_reset(d);
    } else if (m->p + s > m->p_min + m->warning_level * m->s_min) {
        *state = MM_DRIFT_WARNING;
    }
    return MM_OK;
}

static uint64_t ddm_samples(const mm_drift *d) { return ((const ddm *)d)->n; }
static double ddm_estimate(const mm_drift *d) { return ((const ddm *)d)->p; }

const mm_drift_vtable mm_drift_ddm_vt = {
    .kind = MM_DRIFT_DDM,
    .name = "ddm",
    .size = sizeof(ddm),
    .binary = true,
    .params = ddm_params,
    .set_defaults = ddm_defaults,
    .check = ddm_check,
    .update = ddm_update,
    .reset = ddm_reset,
    .samples = ddm_samples,
    .estimate = ddm_estimate,
};

/* ---- EDDM -------------------------------------------------------------- */

typedef struct eddm {
    mm_drift base;
    double warning_level, drift_level, min_samples, min_errors;
    uint64_t n, errors, last_error;
    double mean, m2, max_m2s; /* distance mean, Welford sum of squares, max p'+2s' */
} eddm;

static const mm_drift_param eddm_params[] = {
    {"warning_level", offsetof(eddm, warning_level), 0.0, 1.0, true, true, false, "(0, 1)"},
    {"drift_level", offsetof(eddm, drift_level), 0.0, 1.0, true, true, false, "(0, 1)"},
    {"min_samples", offsetof(eddm, min_samples), 0.0, 1e15, false, false, true, "[0, 1e15]"},
    {"min_errors", offsetof(eddm, min_errors), 1.0, 1e15, false, false, true, "[1, 1e15]"},
    {NULL, 0, 0, 0, false, false, false, NULL}};

static void eddm_defaults(mm_drift *d) {
    eddm *e = (eddm *)d;
    e->warning_level = 0.95;
    e->drift_level = 0.90;
    e->min_samples = 30.0;
    e->min_errors = 30.0;
}

static mm_status eddm_check(const mm_drift *d, const char *changed) {
    const eddm *e = (const eddm *)d;
    if (e->drift_level > e->warning_level)
        return mm_error(MM_E_OUT_OF_RANGE,
                        "eddm parameter \"%s\": drift_level (%g) must not exceed warning_level (%g)",
                        changed, e->drift_level, e->warning_level);
    return MM_OK;
}

static void eddm_reset(mm_drift *d) {
    eddm *e = (eddm *)d;
    e->n = 0;
    e->errors = 0;
    e->last_error = 0;
    e->mean = 0.0;
    e->m2 = 0.0;
    e->max_m2s = 0.0;
}

static mm_status eddm_update(mm_drift *d, double x, mm_drift_state *state) {
    eddm *e = (eddm *)d;
    e->n++;
    *state = MM_DRIFT_STABLE;
    if (x == 0.0) return MM_OK;
    e->errors++;
    double dist = (double)(e->n - e->last_error);
    e->last_error = e->n;
    double old = e->mean;
    e->mean += (dist - old) / (double)e->errors;
    e->m2 += (dist - old) * (dist - e->mean);
    double var = e->errors > 1 ? e->m2 / (double)(e->errors - 1) : 0.0;
    double m2s = e->mean + 2.0 * sqrt(var);
    if ((double)e->n <= e->min_samples) return MM_OK; /* reference not started */
    if (m2s > e->max_m2s) {
        e->max_m2s = m2s;
        return MM_OK;
    }
    if ((double)e->errors <= e->min_errors) return MM_OK;
    double ratio = m2s / e->max_m2s;
    if (ratio < e->drift_level) {
        *state = MM_DRIFT_DRIFT;
        eddm_reset(d);
    } else if (ratio < e->warning_level) {
        *state = MM_DRIFT_WARNING;
    }
    return MM_OK;
}

static uint64_t eddm_samples(const mm_drift *d) { return ((const eddm *)d)->n; }
static double eddm_estimate(const mm_drift *d) { return ((const eddm *)d)->mean; }

const mm_drift_vtable mm_drift_eddm_vt = {
    .kind = MM_DRIFT_EDDM,
    .name = "eddm",
    .size = sizeof(eddm),
    .binary = true,
    .params = eddm_params,
    .set_defaults = eddm_defaults,
    .check = eddm_check,
    .update = eddm_update,
    .reset = eddm_reset,
    .samples = eddm_samples,
    .estimate = eddm_estimate,
};
