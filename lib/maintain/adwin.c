/* ADWIN2 (A. Bifet, R. Gavaldà, "Learning from Time-Changing Data with
 * Adaptive Windowing", SDM 2007), with the exponential histogram of the
 * paper (and of MOA's reference implementation).
 *
 * The window W of recent samples is stored as buckets: row i holds buckets
 * that each summarise 2^i consecutive samples (their sum and their variance
 * term), at most max_buckets (M) per row; when a row reaches M + 1 buckets
 * its two oldest merge into one bucket of row i + 1. So memory is
 * O(M log(W / M)) buckets for a window of W samples, and the mean and
 * variance of the whole window are kept incrementally.
 *
 * Every `clock` samples (once W > grace_period) the window is checked: for
 * every split of W at a bucket boundary into an older part W0 (n0 samples,
 * mean u0) and a newer part W1 (n1, u1), both at least min_window long,
 *     |u0 - u1| > eps_cut,
 *     eps_cut = sqrt(2 m sigma^2 ln(2 ln(W) / delta)) + (2/3) m ln(2 ln(W) / delta),
 *     m = 1 / (n0 - min_window + 1) + 1 / (n1 - min_window + 1),
 * with sigma^2 the window's variance, means a change: the oldest bucket is
 * dropped and the check repeats until no split passes. The detector reports
 * DRIFT for a sample whose check dropped buckets; the window then holds
 * only the newer part (no further reset). Under a stationary stream the
 * probability that a check drops anything is at most delta (the paper's
 * Theorem 3.1 for the bound above). */
#include <math.h>
#include <stdlib.h>

#include "common/pmath.h"
#include "maintain/drift_internal.h"

typedef struct adwin_row {
    double *sum; /* [M + 1], index 0 the oldest bucket of the row */
    double *var;
    size_t count;
} adwin_row;

typedef struct adwin {
    mm_drift base;
    double delta, clock, max_buckets, min_window, grace_period; /* parameters */
    adwin_row *rows;  /* rows[0]: buckets of 1 sample (newest) */
    size_t n_rows, cap_rows, row_cap; /* row_cap = M + 1 for the allocated rows */
    uint64_t width, ticks;
    double total, variance; /* sum of the window, sum of squared deviations */
} adwin;

static const mm_drift_param adwin_params[] = {
    {"delta", offsetof(adwin, delta), 0.0, 1.0, true, true, false, "(0, 1)"},
    {"clock", offsetof(adwin, clock), 1.0, 1e9, false, false, true, "[1, 1e9]"},
    {"max_buckets", offsetof(adwin, max_buckets), 2.0, 1024.0, false, false, true, "[2, 1024]"},
    {"min_window", offsetof(adwin, min_window), 1.0, 1e9, false, false, true, "[1, 1e9]"},
    {"grace_period", offsetof(adwin, grace_period), 0.0, 1e15, false, false, true, "[0, 1e15]"},
    {NULL, 0, 0, 0, false, false, false, NULL}};

static void adwin_defaults(mm_drift *d) {
    adwin *a = (adwin *)d;
    a->delta = 0.002;
    a->clock = 32.0;
    a->max_buckets = 5.0;
    a->min_window = 5.0;
    a->grace_period = 10.0;
}

static void free_rows(adwin *a) {
    for (size_t i = 0; i < a->n_rows; i++) {
        free(a->rows[i].sum);
        free(a->rows[i].var);
    }
    free(a->rows);
    a->rows = NULL;
    a->n_rows = a->cap_rows = 0;
}

static void adwin_reset(mm_drift *d) {
    adwin *a = (adwin *)d;
    free_rows(a);
    a->width = 0;
    a->ticks = 0;
    a->total = 0.0;
    a->variance = 0.0;
}

static void adwin_destroy(mm_drift *d) { free_rows((adwin *)d); }

static mm_status adwin_can_set(const mm_drift *d, const char *param) {
    const adwin *a = (const adwin *)d;
    if (a->width > 0 && param[0] == 'm' && param[1] == 'a') /* max_buckets */
        return mm_error(MM_E_STATE,
                        "adwin parameter \"max_buckets\" can change only while the window is "
                        "empty (reset first; it holds %llu samples)",
                        (unsigned long long)a->width);
    return MM_OK;
}

/* Make sure row i exists (rows are added one at a time, at the old end). */
static mm_status ensure_row(adwin *a, size_t i) {
    if (i < a->n_rows) return MM_OK;
    if (a->n_rows == 0) a->row_cap = (size_t)a->max_buckets + 1;
    if (a->n_rows == a->cap_rows) {
        size_t cap = a->cap_rows ? 2 * a->cap_rows : 8;
        adwin_row *r = realloc(a->rows, cap * sizeof *r);
        if (!r) return mm_oom("adwin bucket rows");
        a->rows = r;
        a->cap_rows = cap;
    }
    adwin_row *r = &a->rows[a->n_rows];
    r->sum = malloc(a->row_cap * sizeof *r->sum);
    r->var = malloc(a->row_cap * sizeof *r->var);
    r->count = 0;
    if (!r->sum || !r->var) {
        free(r->sum);
        free(r->var);
        return mm_oom("adwin buckets");
    }
    a->n_rows++;
    return MM_OK;
}

static void row_push(adwin_row *r, double sum, double var) {
    r->sum[r->count] = sum;
    r->var[r->count] = var;
    r->count++;
}

static void row_pop_oldest(adwin_row *r, size_t k) {
    for (size_t j = k; j < r->count; j++) {
        r->sum[j - k] = r->sum[j];
        r->var[j - k] = r->var[j];
    }
    r->count -= k;
}

/* Merge the two oldest buckets of every full row into the next row. Never
 * allocates. */
static void compress(adwin *a) {
    size_t m = a->row_cap - 1;
    for (size_t i = 0; i < a->n_rows; i++) {
        adwin_row *r = &a->rows[i];
        if (r->count <= m) break; /* rows below are not full either */
        /* row i + 1 exists: adwin_update keeps an empty row at the old end,
         * and a row that receives a bucket here holds at most M + 1 */
        double n = ldexp(1.0, (int)i);
        double u1 = r->sum[0] / n, u2 = r->sum[1] / n;
        double var = r->var[0] + r->var[1] + n * n * (u1 - u2) * (u1 - u2) / (2.0 * n);
        row_push(&a->rows[i + 1], r->sum[0] + r->sum[1], var);
        row_pop_oldest(r, 2);
    }
}

/* Drop the oldest bucket of the window. */
static void drop_oldest(adwin *a) {
    size_t i = a->n_rows - 1;
    while (a->rows[i].count == 0) i--; /* skip the spare empty row(s) */
    adwin_row *r = &a->rows[i];
    double n = ldexp(1.0, (int)i);
    double u = r->sum[0], v = r->var[0];
    a->width -= (uint64_t)n;
    a->total -= u;
    if (a->width > 0) {
        double w = (double)a->width;
        double diff = u / n - a->total / w;
        a->variance -= v + n * w * diff * diff / (n + w);
        if (a->variance < 0.0) a->variance = 0.0;
    } else {
        a->total = 0.0;
        a->variance = 0.0;
    }
    row_pop_oldest(r, 1);
    while (a->n_rows > 0 && a->rows[a->n_rows - 1].count == 0) {
        a->n_rows--;
        free(a->rows[a->n_rows].sum);
        free(a->rows[a->n_rows].var);
    }
}

static bool cut_expression(const adwin *a, double n0, double n1, double u0, double u1) {
    double n = (double)a->width;
    double dd = mm_plog(2.0 * mm_plog(n) / a->delta); /* platform-independent log (pmath.h) */
    double v = a->variance / n;
    double mw = a->min_window;
    double m = 1.0 / (n0 - mw + 1.0) + 1.0 / (n1 - mw + 1.0);
    double eps = sqrt(2.0 * m * v * dd) + 2.0 / 3.0 * dd * m;
    return fabs(u0 / n0 - u1 / n1) > eps;
}

/* One pass over the splits, oldest first; true if it dropped a bucket. */
static bool check_once(adwin *a) {
    double n0 = 0.0, n1 = (double)a->width, u0 = 0.0, u1 = a->total;
    for (size_t i = a->n_rows; i-- > 0;) {
        const adwin_row *r = &a->rows[i];
        double n = ldexp(1.0, (int)i);
        for (size_t j = 0; j < r->count; j++) {
            if (i == 0 && j + 1 == r->count) return false; /* no split after the newest */
            n0 += n;
            n1 -= n;
            u0 += r->sum[j];
            u1 -= r->sum[j];
            if (n0 >= a->min_window && n1 >= a->min_window && cut_expression(a, n0, n1, u0, u1)) {
                drop_oldest(a);
                return true;
            }
        }
    }
    return false;
}

static mm_status adwin_update(mm_drift *d, double x, mm_drift_state *state) {
    adwin *a = (adwin *)d;
    /* Keep an empty row at the old end, so that compress never allocates
     * and a failed allocation leaves the detector unchanged. */
    if (a->width == 0) free_rows(a); /* max_buckets may have changed */
    while (a->n_rows < 2 || a->rows[a->n_rows - 1].count > 0) {
        mm_status st = ensure_row(a, a->n_rows);
        if (st != MM_OK) return st;
    }
    /* insert a bucket of one sample */
    a->width++;
    if (a->width > 1) {
        double w = (double)a->width;
        double diff = x - a->total / (w - 1.0);
        a->variance += (w - 1.0) * diff * diff / w;
    }
    a->total += x;
    row_push(&a->rows[0], x, 0.0);
    compress(a);
    *state = MM_DRIFT_STABLE;
    a->ticks++;
    if (a->ticks % (uint64_t)a->clock == 0 && (double)a->width > a->grace_period) {
        bool changed = false;
        while (a->width > 2 && check_once(a)) changed = true;
        if (changed) *state = MM_DRIFT_DRIFT;
    }
    return MM_OK;
}

size_t mm_drift_adwin_buckets(const mm_drift *d) {
    if (!d || d->vt != &mm_drift_adwin_vt) return 0;
    const adwin *a = (const adwin *)d;
    size_t n = 0;
    for (size_t i = 0; i < a->n_rows; i++) n += a->rows[i].count;
    return n;
}

static uint64_t adwin_samples(const mm_drift *d) { return ((const adwin *)d)->width; }
static double adwin_estimate(const mm_drift *d) {
    const adwin *a = (const adwin *)d;
    return a->width ? a->total / (double)a->width : 0.0;
}

const mm_drift_vtable mm_drift_adwin_vt = {
    .kind = MM_DRIFT_ADWIN,
    .name = "adwin",
    .size = sizeof(adwin),
    .binary = false,
    .params = adwin_params,
    .set_defaults = adwin_defaults,
    .can_set = adwin_can_set,
    .update = adwin_update,
    .reset = adwin_reset,
    .destroy = adwin_destroy,
    .samples = adwin_samples,
    .estimate = adwin_estimate,
};
