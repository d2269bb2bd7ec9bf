/* Page-Hinkley test (E. S. Page, "Continuous inspection schemes",
 * Biometrika 1954; in the form used for drift detection by Gama et al.,
 * "A survey on concept drift adaptation", 2014, and by MOA/River), for an
 * increase of the mean of a real-valued stream (a loss going up).
 *
 * After sample t (t = 1, 2, ...):
 *   mean_t = mean_{t-1} + (x_t - mean_{t-1}) / t        running mean
 *   m_t    = alpha * m_{t-1} + (x_t - mean_t - delta)   cumulative deviation, m_0 = 0
 *   M_t    = min(M_{t-1}, m_t), M_0 = 0
 *   drift when t >= min_samples and m_t - M_t > lambda.
 * delta is the magnitude of change tolerated, lambda the detection threshold,
 * alpha (<= 1) a forgetting factor of the cumulative sum (1 = the classic
 * test). On drift everything is reset. */
#include <math.h>

#include "maintain/drift_internal.h"

typedef struct ph {
    mm_drift base;
    double lambda, delta, alpha, min_samples; /* parameters */
    uint64_t n;
    double mean, sum, min_sum;
} ph;

static const mm_drift_param ph_params[] = {
    {"lambda", offsetof(ph, lambda), 0.0, INFINITY, true, true, false, "(0, inf)"},
    {"delta", offsetof(ph, delta), 0.0, INFINITY, false, true, false, "[0, inf)"},
    {"alpha", offsetof(ph, alpha), 0.0, 1.0, true, false, false, "(0, 1]"},
    {"min_samples", offsetof(ph, min_samples), 1.0, 1e15, false, false, true, "[1, 1e15]"},
    {NULL, 0, 0, 0, false, false, false, NULL}};

static void ph_defaults(mm_drift *d) {
    ph *p = (ph *)d;
    p->lambda = 50.0;
    p->delta = 0.005;
    p->alpha = 1.0 - 0.0001;
    p->min_samples = 30.0;
}

static void ph_reset(mm_drift *d) {
    ph *p = (ph *)d;
    p->n = 0;
    p->mean = 0.0;
    p->sum = 0.0;
    p->min_sum = 0.0;
}

static mm_status ph_update(mm_drift *d, double x, mm_drift_state *state) {
    ph *p = (ph *)d;
    p->n++;
    p->mean += (x - p->mean) / (double)p->n;
    p->sum = p->alpha * p->sum + (x - p->mean - p->delta);
    if (p->sum < p->min_sum) p->min_sum = p->sum;
    *state = MM_DRIFT_STABLE;
    if ((double)p->n >= p->min_samples && p->sum - p->min_sum > p->lambda) {
        *state = MM_DRIFT_DRIFT;
        ph_reset(d);
    }
    return MM_OK;
}

static uint64_t ph_samples(const mm_drift *d) { return ((const ph *)d)->n; }
static double ph_estimate(const mm_drift *d) { return ((const ph *)d)->mean; }

const mm_drift_vtable mm_drift_page_hinkley_vt = {
    .kind = MM_DRIFT_PAGE_HINKLEY,
    .name = "page_hinkley",
    .size = sizeof(ph),
    .binary = false,
    .params = ph_params,
    .set_defaults = ph_defaults,
    .update = ph_update,
    .reset = ph_reset,
    .samples = ph_samples,
    .estimate = ph_estimate,
};
