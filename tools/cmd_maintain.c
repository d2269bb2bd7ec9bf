/* mmaint maintain — guarded maintenance of a deployed model over a stream
 * (mm_maintainer): progressive validation, guarded online updates with
 * rollback and quarantine, replay, L2-SP, champion/challenger on drift; a
 * live status line, a final report, --json and an SVG or PNG plot of
 * accuracy over the stream with drift, rollback and promotion marks.
 *
 * The stream loop, the drift scenario (shifted class mix, brightened images,
 * a poisoned segment), the report and the plot are shared with `demo` and
 * benchmarks/run_maintain.sh through cli.h. --mode never|naive|guarded runs
 * the same stream without updates, with plain online SGD (every sample
 * learned, no guard, no replay) or guarded, for side-by-side comparisons.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- the drift scenario ------------------------------------------------- */

#ifndef BRIGHT_ADD
#define BRIGHT_ADD 0.25f /* brightened images: x' = BRIGHT_ADD + (1 - BRIGHT_ADD) x */
#endif

/* The scenario's brightened images (n floats). */
static void brighten(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = BRIGHT_ADD + (1.0f - BRIGHT_ADD) * src[i];
}

/* Deterministic uniform in [0, 1) from a 64-bit state (splitmix64). */
static double scen_uniform(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

void cli_maint_plan_for(size_t length, cli_maint_plan *p) {
    p->length = length;
    p->shift_at = length / 5;          /* class mix shifts */
    p->drift_at = 2 * length / 5;      /* images brighten */
    p->poison_at = 3 * length / 5;     /* labels scrambled ... */
    p->poison_end = 7 * length / 10;   /* ... until here */
}

int cli_maint_scenario(const cli *c, const mm_dataset *pool, size_t length, uint64_t seed,
                       mm_dataset **out, cli_maint_plan *plan) {
    *out = NULL;
    const size_t n = mm_dataset_size(pool), dim = mm_dataset_dim(pool);
    const float *px = mm_dataset_features(pool);
    const int32_t *py = mm_dataset_labels(pool);
    if (!py || n == 0) return cli_runtime_error(c, "the drift scenario needs labelled stream data");
    const size_t classes = mm_dataset_num_classes(pool);
    if (classes < 2) return cli_runtime_error(c, "the drift scenario needs at least 2 classes");
    cli_maint_plan_for(length, plan);
    float *x = malloc(length * dim * sizeof *x);
    int32_t *y = malloc(length * sizeof *y);
    size_t *order = malloc(n * sizeof *order);
    if (!x || !y || !order) {
        free(x);
        free(y);
        free(order);
        return cli_runtime_error(c, "out of memory building the drift scenario");
    }
    uint64_t rs = seed * 0x2545F4914F6CDD1Dull + 7;
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(scen_uniform(&rs) * (double)i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    size_t cur = 0;
    for (size_t i = 0; i < length; i++) {
        size_t k = order[cur++ % n];
        if (i >= plan->shift_at && i < plan->drift_at) {
            /* shifted class mix: the first half of the classes make ~70% */
            while ((size_t)py[k] >= classes / 2 && scen_uniform(&rs) > 3.0 / 7.0)
                k = order[cur++ % n];
        }
        const float *src = px + k * dim;
        float *dst = x + i * dim;
        if (i >= plan->drift_at)
            brighten(dst, src, dim);
        else
            memcpy(dst, src, dim * sizeof *dst);
        y[i] = py[k];
        if (i >= plan->poison_at && i < plan->poison_end)
            y[i] = (int32_t)(scen_uniform(&rs) * (double)classes); /* scrambled */
    }
    mm_status st = mm_dataset_create(out, x, y, length, dim);
    free(x);
    free(y);
    free(order);
    if (st != MM_OK) return cli_lib_error(c, st, "building the drift scenario");
    return 0;
}

int cli_maint_brighten(const cli *c, const mm_dataset *ds, mm_dataset **out) {
    *out = NULL;
    const size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    const float *src = mm_dataset_features(ds);
    float *x = malloc((n ? n : 1) * dim * sizeof *x);
    if (!x) return cli_runtime_error(c, "out of memory brightening the test set");
    brighten(x, src, n * dim);
    mm_status st = mm_dataset_create(out, x, mm_dataset_labels(ds), n, dim);
    free(x);
    if (st != MM_OK) return cli_lib_error(c, st, "brightening the test set");
    return 0;
}

/* ---- the stream loop ---------------------------------------------------- */

const char *cli_maint_mode_name(cli_maint_mode m) {
    return m == CLI_MAINT_NEVER ? "never" : m == CLI_MAINT_NAIVE ? "naive" : "guarded";
}

void cli_maint_result_free(cli_maint_result *r) {
    free(r->pos);
    free(r->acc);
    free(r->probe);
    free(r->ev_pos);
    free(r->ev_kind);
    free(r->ranges);
    memset(r, 0, sizeof *r);
}

static int push_point(cli_maint_result *r, uint64_t pos, double acc, double probe) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        uint64_t *p = realloc(r->pos, cap * sizeof *p);
        if (p) r->pos = p;
        double *a = realloc(r->acc, cap * sizeof *a);
        if (a) r->acc = a;
        double *t = realloc(r->probe, cap * sizeof *t);
        if (t) r->probe = t;
        if (!p || !a || !t) return -1;
        r->cap = cap;
    }
    r->pos[r->n] = pos;
    r->acc[r->n] = acc;
    r->probe[r->n++] = probe;
    return 0;
}

static int push_event(cli_maint_result *r, uint64_t pos, char kind) {
    if (r->n_ev == r->cap_ev) {
        size_t cap = r->cap_ev ? 2 * r->cap_ev : 64;
        uint64_t *p = realloc(r->ev_pos, cap * sizeof *p);
        if (p) r->ev_pos = p;
        char *k = realloc(r->ev_kind, cap);
        if (k) r->ev_kind = k;
        if (!p || !k) return -1;
        r->cap_ev = cap;
    }
    r->ev_pos[r->n_ev] = pos;
    r->ev_kind[r->n_ev++] = kind;
    return 0;
}

size_t cli_maint_plot_every(size_t plot_every, size_t length) {
    if (plot_every) return plot_every;
    size_t every = length / CLI_MAINT_MIN_POINTS;
    return every < 1 ? 1 : every > 500 ? 500 : every;
}

static const char *drift_state_name(int s) {
    return s == 2 ? "DRIFT" : s == 1 ? "warning" : "stable";
}

int cli_maint_run(const cli *c, mm_maintainer *mt, const mm_model *model, const mm_dataset *ds,
                  const cli_maint_run_cfg *cfg, cli_maint_result *r) {
    memset(r, 0, sizeof *r);
    r->mode = cfg->mode;
    const size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    const float *x = mm_dataset_features(ds);
    const int32_t *y = mm_dataset_labels(ds);
    /* Series points every plot_every samples; by default from the stream's
     * length (the whole stream is loaded first, stdin too): at least
     * CLI_MAINT_MIN_POINTS points, at most 500 samples apart. The stream
     * goes in chunks of up to 100 samples that end at every point. */
    const size_t chunk = 100, every = cli_maint_plot_every(cfg->plot_every, n);
    int32_t *pred = mt ? NULL : malloc(chunk * sizeof *pred);
    if (cfg->opt) model = mm_optimizer_model(cfg->opt);
    if (!mt && !pred) return cli_runtime_error(c, "out of memory");
    cli_progress bar;
    cli_progress_init(&bar, c);
    const double t0 = cli_now();
    uint64_t correct = 0, pt_correct = 0, pt_start = 0;
    /* naive and never modes: rolling accuracy over the last ROLL samples */
    enum { ROLL = 1000 };
    unsigned char *roll = mt ? NULL : calloc(ROLL, 1);
    uint64_t roll_ok = 0;
    if (!mt && !roll) {
        free(pred);
        return cli_runtime_error(c, "out of memory");
    }
    size_t next_status = cfg->status_every;
    int rc = 0;
    for (size_t i = 0, k = 0; i < n && !rc; i += k) {
        if (cli_interrupted()) {
            rc = cli_runtime_error(c, "interrupted after %zu samples", i);
            break;
        }
        k = n - i < chunk ? n - i : chunk;
        if (pt_start + every - i < k) k = (size_t)(pt_start + every - i); /* end at the point */
        if (mt) {
            mm_status st = mm_maintainer_feed(mt, x + i * dim, y + i, k, &r->rep);
            if (st != MM_OK) {
                rc = cli_lib_error(c, st, "maintaining at sample %zu", i);
                break;
            }
            correct = r->rep.correct;
            if (r->rep.events & MM_MAINT_EV_DRIFT) push_event(r, i + k, 'd');
            if (r->rep.events & MM_MAINT_EV_PROMOTE) push_event(r, i + k, 'p');
            if (r->rep.events & MM_MAINT_EV_REJECT) push_event(r, i + k, 'r');
        } else {
            uint64_t ok = 0;
            mm_status st = MM_OK;
            if (cfg->opt) { /* naive: predict, then one SGD step, sample by sample */
                for (size_t j = 0; j < k && st == MM_OK; j++) {
                    st = mm_model_predict(mm_optimizer_model(cfg->opt), x + (i + j) * dim, 1, pred + j);
                    if (st == MM_OK) st = mm_optimizer_step(cfg->opt, x + (i + j) * dim, y + i + j, NULL, 1, NULL);
                    if (st == MM_E_NUMERIC) st = MM_OK; /* refused: nothing changed */
                }
                r->rep.learned += k;
            } else {
                st = mm_model_predict(model, x + i * dim, k, pred);
            }
            if (st != MM_OK) {
                rc = cli_lib_error(c, st, "at sample %zu", i);
                break;
            }
            for (size_t j = 0; j < k; j++) {
                const unsigned char hit = pred[j] == y[i + j];
                unsigned char *slot = &roll[(i + j) % ROLL];
                roll_ok += (uint64_t)hit - *slot;
                *slot = hit;
                ok += hit;
            }
            correct += ok;
            r->rep.samples = i + k;
            r->rep.correct = correct;
            r->rep.rolling_accuracy = (double)roll_ok / (double)(i + k < ROLL ? i + k : ROLL);
            r->rep.version = 1;
        }
        const uint64_t done = i + k;
        if (done - pt_start >= every || done == n) {
            double probe = NAN;
            const mm_dataset *pd = cfg->probe[done > cfg->probe_switch];
            if (pd) {
                const mm_model *served = mt ? mm_maintainer_model(mt) : model;
                mm_status st = mm_model_evaluate(served, mm_dataset_features(pd), mm_dataset_labels(pd),
                                                 NULL, mm_dataset_size(pd), NULL, &probe);
                if (st != MM_OK) {
                    rc = cli_lib_error(c, st, "evaluating the test set at sample %llu",
                                       (unsigned long long)done);
                    break;
                }
            }
            if (push_point(r, done, (double)(correct - pt_correct) / (double)(done - pt_start), probe)) {
                rc = cli_runtime_error(c, "out of memory");
                break;
            }
            pt_start = done;
            pt_correct = correct;
        }
        const double el = cli_now() - t0;
        if (c->tty && !c->quiet) {
            char extra[160];
            snprintf(extra, sizeof extra, "v%llu acc %.3f %s rb %llu pr %llu",
                     (unsigned long long)r->rep.version, r->rep.rolling_accuracy,
                     drift_state_name(r->rep.drift_state), (unsigned long long)r->rep.rollbacks,
                     (unsigned long long)r->rep.promotions);
            cli_progress_draw(&bar, cfg->label ? cfg->label : "maintain", (double)done / (double)n, el,
                              el > 0 ? (double)done / el : 0, extra, done == n);
        } else if (!c->quiet && cfg->status_every && done >= next_status) {
            fprintf(c->out,
                    "[%7llu/%zu] version %llu  rolling acc %.4f  drift %-7s  rollbacks %llu  "
                    "promotions %llu\n",
                    (unsigned long long)done, n, (unsigned long long)r->rep.version,
                    r->rep.rolling_accuracy, drift_state_name(r->rep.drift_state),
                    (unsigned long long)r->rep.rollbacks, (unsigned long long)r->rep.promotions);
            while (next_status <= done) next_status += cfg->status_every;
        }
    }
    cli_progress_clear(&bar);
    free(pred);
    free(roll);
    if (!rc && mt) {
        mm_status st = mm_maintainer_flush(mt, &r->rep);
        if (st != MM_OK) rc = cli_lib_error(c, st, "ending the last window");
    }
    r->seconds = cli_now() - t0;
    r->samples = n;
    r->correct = correct;
    if (!rc && mt) {
        r->n_ranges = mm_maintainer_num_quarantined(mt);
        r->ranges = calloc(r->n_ranges ? r->n_ranges : 1, sizeof *r->ranges);
        if (!r->ranges) return cli_runtime_error(c, "out of memory");
        for (size_t i = 0; i < r->n_ranges; i++) mm_maintainer_quarantined(mt, i, &r->ranges[i]);
    }
    return rc;
}

double cli_maint_accuracy_between(const cli_maint_result *r, uint64_t from, uint64_t to) {
    /* points are the accuracy of (pos[i-1], pos[i]]: average those inside */
    double sum = 0, w = 0;
    for (size_t i = 0; i < r->n; i++) {
        const uint64_t a = i ? r->pos[i - 1] : 0, b = r->pos[i];
        if (a >= from && b <= to) {
            sum += r->acc[i] * (double)(b - a);
            w += (double)(b - a);
        }
    }
    return w > 0 ? sum / w : NAN;
}

void cli_maint_scenario_metrics(const cli_maint_result *r, const cli_maint_plan *p,
                                cli_maint_metrics *m) {
    const uint64_t w = 1000; /* stretch for "accuracy at" */
    m->before_drift = cli_maint_accuracy_between(r, p->drift_at > 2000 ? p->drift_at - 2000 : 0,
                                                 p->drift_at);
    m->after_5k = cli_maint_accuracy_between(r, p->drift_at + 5000 - w, p->drift_at + 5000);
    m->recovered_after = -1;
    for (uint64_t e = p->drift_at + w; e <= p->poison_at; e += 100) {
        const double a = cli_maint_accuracy_between(r, e - w, e);
        if (isfinite(a) && a >= m->before_drift - 0.02) {
            m->recovered_after = (double)(e - p->drift_at);
            break;
        }
    }
    m->before_poison = cli_maint_accuracy_between(r, p->poison_at > 2000 ? p->poison_at - 2000 : 0,
                                                  p->poison_at);
    m->after_poison = cli_maint_accuracy_between(r, p->poison_end, p->poison_end + 2000);
    m->poison_cost = m->before_poison - m->after_poison;

    /* test set: the served model at the series points (the last point at
     * or before each position: plot points need not fall on them) */
    m->t_before_drift = m->t_after_5k = m->t_before_poison = m->t_worst_poison = NAN;
    m->t_recovered_after = -1;
    for (size_t i = 0; i < r->n && r->probe; i++) {
        const uint64_t pos = r->pos[i];
        const double t = r->probe[i];
        if (!isfinite(t)) continue;
        if (pos <= p->drift_at) m->t_before_drift = t;
        if (pos > p->drift_at && pos <= p->drift_at + 5000) m->t_after_5k = t;
        if (pos > p->drift_at && pos <= p->poison_at && m->t_recovered_after < 0 &&
            t >= m->t_before_drift - 0.02)
            m->t_recovered_after = (double)(pos - p->drift_at);
        if (pos <= p->poison_at) m->t_before_poison = t;
        if (pos > p->poison_at && pos <= p->poison_end + 2000 && !(t >= m->t_worst_poison))
            m->t_worst_poison = t;
    }
    m->t_poison_cost = m->t_before_poison - m->t_worst_poison;
}

json_t *cli_maint_metrics_json(const cli_maint_metrics *m) {
    json_t *j = json_object();
    json_object_set_new(j, "accuracy_before_drift", cli_json_num(m->before_drift));
    json_object_set_new(j, "accuracy_5k_after_drift", cli_json_num(m->after_5k));
    json_object_set_new(j, "recovered_within_2_points_after",
                        m->recovered_after >= 0 ? json_integer((json_int_t)m->recovered_after)
                                                : json_null());
    json_object_set_new(j, "accuracy_before_poison", cli_json_num(m->before_poison));
    json_object_set_new(j, "accuracy_after_poison", cli_json_num(m->after_poison));
    json_object_set_new(j, "poison_cost_points", cli_json_num(100 * m->poison_cost));
    json_t *t = json_object();
    json_object_set_new(t, "accuracy_at_drift", cli_json_num(m->t_before_drift));
    json_object_set_new(t, "accuracy_5k_after_drift", cli_json_num(m->t_after_5k));
    json_object_set_new(t, "recovered_within_2_points_after",
                        m->t_recovered_after >= 0 ? json_integer((json_int_t)m->t_recovered_after)
                                                  : json_null());
    json_object_set_new(t, "accuracy_at_poison", cli_json_num(m->t_before_poison));
    json_object_set_new(t, "worst_accuracy_to_2k_after_poison", cli_json_num(m->t_worst_poison));
    json_object_set_new(t, "poison_cost_points", cli_json_num(100 * m->t_poison_cost));
    json_object_set_new(j, "test_set", t);
    return j;
}

json_t *cli_maint_json(const cli_maint_result *r) {
    json_t *j = json_object();
    json_object_set_new(j, "mode", json_string(cli_maint_mode_name(r->mode)));
    json_object_set_new(j, "samples", json_integer((json_int_t)r->samples));
    json_object_set_new(j, "progressive_accuracy",
                        cli_json_num(r->samples ? (double)r->correct / (double)r->samples : NAN));
    json_object_set_new(j, "rolling_accuracy", cli_json_num(r->rep.rolling_accuracy));
    json_object_set_new(j, "version", json_integer((json_int_t)r->rep.version));
    json_object_set_new(j, "learned", json_integer((json_int_t)r->rep.learned));
    json_object_set_new(j, "quarantined", json_integer((json_int_t)r->rep.quarantined));
    json_object_set_new(j, "holdout_accuracy", cli_json_num(r->rep.holdout_accuracy));
    json_object_set_new(j, "drifts", json_integer((json_int_t)r->rep.drifts));
    json_object_set_new(j, "rollbacks", json_integer((json_int_t)r->rep.rollbacks));
    json_object_set_new(j, "challengers", json_integer((json_int_t)r->rep.challengers));
    json_object_set_new(j, "promotions", json_integer((json_int_t)r->rep.promotions));
    json_object_set_new(j, "seconds", cli_json_num(r->seconds));
    json_object_set_new(j, "samples_per_second",
                        cli_json_num(r->seconds > 0 ? (double)r->samples / r->seconds : NAN));
    json_t *q = json_array();
    for (size_t i = 0; i < r->n_ranges; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "start", json_integer((json_int_t)r->ranges[i].start));
        json_object_set_new(e, "end", json_integer((json_int_t)r->ranges[i].end));
        json_object_set_new(e, "reason", json_string(r->ranges[i].reason == MM_MAINT_REASON_NUMERIC
                                                         ? "numeric"
                                                         : "metric"));
        json_object_set_new(e, "holdout_accuracy", cli_json_num(r->ranges[i].accuracy));
        json_object_set_new(e, "good_accuracy", cli_json_num(r->ranges[i].good_accuracy));
        json_array_append_new(q, e);
    }
    json_object_set_new(j, "quarantined_ranges", q);
    json_t *ev = json_array();
    for (size_t i = 0; i < r->n_ev; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "sample", json_integer((json_int_t)r->ev_pos[i]));
        json_object_set_new(e, "event", json_string(r->ev_kind[i] == 'd'   ? "drift"
                                                    : r->ev_kind[i] == 'p' ? "promote"
                                                                           : "challenger_rejected"));
        json_array_append_new(ev, e);
    }
    json_object_set_new(j, "events", ev);
    json_t *s = json_array();
    for (size_t i = 0; i < r->n; i++) {
        json_t *p = json_array();
        json_array_append_new(p, json_integer((json_int_t)r->pos[i]));
        json_array_append_new(p, cli_json_num(r->acc[i]));
        if (isfinite(r->probe[i])) json_array_append_new(p, cli_json_num(r->probe[i]));
        json_array_append_new(s, p);
    }
    json_object_set_new(j, "series", s); /* [sample end, accuracy of the stretch(, test set)] */
    return j;
}

void cli_maint_print_report(FILE *f, const cli_maint_result *r) {
    fprintf(f, "stream: %zu samples in %.1f s (%.0f samples/s), progressive accuracy %.4f, "
               "rolling %.4f\n",
            r->samples, r->seconds, r->seconds > 0 ? (double)r->samples / r->seconds : 0.0,
            r->samples ? (double)r->correct / (double)r->samples : NAN, r->rep.rolling_accuracy);
    if (r->mode == CLI_MAINT_NEVER) {
        fprintf(f, "never updated: version 1 throughout\n");
        return;
    }
    if (r->mode == CLI_MAINT_NAIVE) {
        fprintf(f, "naive online SGD: every sample learned at once, nothing guarded\n");
        return;
    }
    fprintf(f, "deployed version %llu; %llu samples learned, %llu quarantined; holdout accuracy %.4f\n",
            (unsigned long long)r->rep.version, (unsigned long long)r->rep.learned,
            (unsigned long long)r->rep.quarantined, r->rep.holdout_accuracy);
    fprintf(f, "drifts %llu, challengers %llu (promoted %llu), rollbacks %llu\n",
            (unsigned long long)r->rep.drifts, (unsigned long long)r->rep.challengers,
            (unsigned long long)r->rep.promotions, (unsigned long long)r->rep.rollbacks);
    for (size_t i = 0; i < r->n_ranges && i < 20; i++) {
        const mm_maint_range *q = &r->ranges[i];
        if (q->reason == MM_MAINT_REASON_NUMERIC)
            fprintf(f, "  quarantined [%llu, %llu): non-finite loss\n", (unsigned long long)q->start,
                    (unsigned long long)q->end);
        else
            fprintf(f, "  quarantined [%llu, %llu): holdout accuracy %.4f vs %.4f deployed\n",
                    (unsigned long long)q->start, (unsigned long long)q->end, q->accuracy,
                    q->good_accuracy);
    }
    if (r->n_ranges > 20) fprintf(f, "  ... %zu more quarantined windows\n", r->n_ranges - 20);
}

/* ---- plot ---------------------------------------------------------------- */

enum { CLI_PLOT_W = 900, CLI_PLOT_H = 420 }; /* pixels, or SVG user units */

/* One drawing description, two back ends: SVG elements or a raster canvas. */
typedef struct plot_out {
    FILE *svg;      /* SVG: elements go here */
    cli_canvas *cv; /* else PNG: drawn here */
} plot_out;

static uint32_t plot_rgb(const char *hex) { /* "#rgb" or "#rrggbb" */
    const unsigned long v = strtoul(hex + 1, NULL, 16);
    if (strlen(hex) != 4) return (uint32_t)v;
    return (uint32_t)(((v >> 8) & 0xf) * 0x110000 + ((v >> 4) & 0xf) * 0x1100 + (v & 0xf) * 0x11);
}

/* A filled rectangle; title: SVG tooltip (NULL = none). */
static void plot_rect(plot_out *p, double x, double y, double w, double h, const char *fill,
                      double opacity, const char *title) {
    if (!p->svg) {
        cli_canvas_rect(p->cv, x, y, w, h, plot_rgb(fill), opacity);
        return;
    }
    fprintf(p->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"", x, y,
            w, h, fill);
    if (opacity < 1) fprintf(p->svg, " opacity=\"%.2g\"", opacity);
    if (title) fprintf(p->svg, "><title>%s</title></rect>\n", title);
    else fprintf(p->svg, "/>\n");
}

static void plot_line(plot_out *p, double x1, double y1, double x2, double y2, const char *col,
                      double width, bool dashed, const char *title) {
    if (!p->svg) {
        cli_canvas_line(p->cv, x1, y1, x2, y2, width, plot_rgb(col), dashed);
        return;
    }
    fprintf(p->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"%g\"%s",
            x1, y1, x2, y2, col, width, dashed ? " stroke-dasharray=\"4,3\"" : "");
    if (title) fprintf(p->svg, "><title>%s</title></line>\n", title);
    else fprintf(p->svg, "/>\n");
}

static void plot_circle(plot_out *p, double cx, double cy, double r, const char *fill,
                        const char *title) {
    if (!p->svg) {
        cli_canvas_disc(p->cv, cx, cy, r, plot_rgb(fill));
        return;
    }
    fprintf(p->svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"%s\"><title>%s</title></circle>\n",
            cx, cy, r, fill, title);
}

/* anchor: -1 start, 0 middle, 1 end; size only matters to SVG (the raster
 * font has one size). */
static void plot_text(plot_out *p, double x, double y, int anchor, int size, const char *fill,
                      const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void plot_text(plot_out *p, double x, double y, int anchor, int size, const char *fill,
                      const char *fmt, ...) {
    char s[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof s, fmt, ap);
    va_end(ap);
    if (!p->svg) {
        cli_canvas_text(p->cv, x, y, anchor, plot_rgb(fill), s);
        return;
    }
    fprintf(p->svg, "<text x=\"%.1f\" y=\"%.1f\"", x, y);
    if (anchor >= 0) fprintf(p->svg, " text-anchor=\"%s\"", anchor ? "end" : "middle");
    if (size != 12) fprintf(p->svg, " font-size=\"%d\"", size);
    if (strcmp(fill, "#000") != 0) fprintf(p->svg, " fill=\"%s\"", fill);
    fprintf(p->svg, ">%s</text>\n", s);
}

static void plot_draw(plot_out *p, const cli_maint_result *const *runs, size_t n_runs,
                      const cli_maint_plan *plan) {
    const double W = CLI_PLOT_W, H = CLI_PLOT_H, L = 60, R = 20, T = 30, B = 50;
    uint64_t xmax = 1;
    for (size_t k = 0; k < n_runs; k++)
        if (runs[k]->n && runs[k]->pos[runs[k]->n - 1] > xmax) xmax = runs[k]->pos[runs[k]->n - 1];
#define PX(s) (L + (W - L - R) * (double)(s) / (double)xmax)
#define PY(a) (T + (H - T - B) * (1.0 - (a)))
    char title[120];
    plot_rect(p, 0, 0, W, H, "#fff", 1, NULL);
    bool probed = false;
    for (size_t k = 0; k < n_runs; k++)
        for (size_t i = 0; i < runs[k]->n && runs[k]->probe && !probed; i++)
            probed = isfinite(runs[k]->probe[i]);
    plot_text(p, L, 18, -1, 14, "#000", "%s",
              probed ? "accuracy over the stream: progressive per stretch (solid), served model "
                       "on the test set (thin, dashed)"
                     : "accuracy over the stream (progressive, per stretch)");
    if (plan) { /* scenario segments */
        const struct { size_t a, b; const char *label, *fill; } seg[] = {
            {plan->shift_at, plan->drift_at, "class mix", "#eef"},
            {plan->drift_at, plan->length, "brightened", "#ffe"},
            {plan->poison_at, plan->poison_end, "poisoned", "#fdd"},
        };
        for (size_t i = 0; i < 3; i++) {
            plot_rect(p, PX(seg[i].a), T, PX(seg[i].b) - PX(seg[i].a), H - T - B, seg[i].fill, 1,
                      NULL);
            plot_text(p, PX(seg[i].a) + 3, T + 14 + 14.0 * (double)(i == 2), -1, 12, "#666", "%s",
                      seg[i].label);
        }
    }
    for (int g = 0; g <= 10; g += 2) { /* grid and axes */
        plot_line(p, L, PY(g / 10.0), W - R, PY(g / 10.0), "#ddd", 1, false, NULL);
        plot_text(p, L - 6, PY(g / 10.0) + 4, 1, 12, "#000", "%.1f", g / 10.0);
    }
    for (int g = 0; g <= 5; g++) {
        const uint64_t s = xmax * (uint64_t)g / 5;
        plot_text(p, PX(s), H - B + 16, 0, 12, "#000", "%llu", (unsigned long long)s);
    }
    plot_text(p, W - R, H - B + 30, 1, 12, "#000", "samples");
    plot_line(p, L, T, W - R, T, "#333", 1, false, NULL); /* frame */
    plot_line(p, L, H - B, W - R, H - B, "#333", 1, false, NULL);
    plot_line(p, L, T, L, H - B, "#333", 1, false, NULL);
    plot_line(p, W - R, T, W - R, H - B, "#333", 1, false, NULL);
    static const char *colors[] = {"#888", "#d62728", "#1f77b4", "#2ca02c"};
    for (size_t k = 0; k < n_runs; k++) {
        const cli_maint_result *r = runs[k];
        const char *col = colors[(r->mode == CLI_MAINT_GUARDED ? 2 : r->mode == CLI_MAINT_NAIVE ? 1 : 0)];
        for (size_t i = 0; i < r->n_ranges; i++) { /* quarantined windows: red bands */
            snprintf(title, sizeof title, "rolled back [%llu, %llu)",
                     (unsigned long long)r->ranges[i].start, (unsigned long long)r->ranges[i].end);
            plot_rect(p, PX(r->ranges[i].start), H - B - 6,
                      fmax(1.0, PX(r->ranges[i].end) - PX(r->ranges[i].start)), 6, "#d62728", 0.7,
                      title);
        }
        if (p->svg) {
            fprintf(p->svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", col);
            for (size_t i = 0; i < r->n; i++)
                if (isfinite(r->acc[i])) fprintf(p->svg, "%.1f,%.1f ", PX(r->pos[i]), PY(r->acc[i]));
            fprintf(p->svg, "\"/>\n");
        } else { /* 2 px: the raster has no anti-aliasing to carry 1.6 */
            double x0 = NAN, y0 = NAN;
            for (size_t i = 0; i < r->n; i++) {
                if (!isfinite(r->acc[i])) continue;
                const double x1 = PX(r->pos[i]), y1 = PY(r->acc[i]);
                if (isfinite(x0)) plot_line(p, x0, y0, x1, y1, col, 2, false, NULL);
                x0 = x1;
                y0 = y1;
            }
        }
        if (r->probe) { /* the served model on the fixed test set: thin, dashed */
            double x0 = NAN, y0 = NAN;
            for (size_t i = 0; i < r->n; i++) {
                if (!isfinite(r->probe[i])) continue;
                const double x1 = PX(r->pos[i]), y1 = PY(r->probe[i]);
                if (isfinite(x0)) plot_line(p, x0, y0, x1, y1, col, 1, true, NULL);
                x0 = x1;
                y0 = y1;
            }
        }
        for (size_t i = 0; i < r->n_ev; i++) {
            const double xx = PX(r->ev_pos[i]);
            const unsigned long long at = (unsigned long long)r->ev_pos[i];
            if (r->ev_kind[i] == 'd') {
                snprintf(title, sizeof title, "drift at %llu", at);
                plot_line(p, xx, T, xx, H - B, "#ff7f0e", 1, true, title);
            } else {
                const bool promoted = r->ev_kind[i] == 'p';
                snprintf(title, sizeof title, "%s at %llu",
                         promoted ? "challenger promoted" : "challenger rejected", at);
                plot_circle(p, xx, T + 6.0, 4, promoted ? "#2ca02c" : "#aaa", title);
            }
        }
        const double lx = L + 10 + 100.0 * (double)k; /* legend */
        plot_line(p, lx, H - 12, lx + 20, H - 12, col, 2, false, NULL);
        plot_text(p, lx + 24, H - 8, -1, 12, "#000", "%s", cli_maint_mode_name(r->mode));
    }
    plot_text(p, L + 10 + 100.0 * (double)n_runs, H - 8, -1, 12, "#666",
              "dashed: drift detected; green dot: challenger promoted; red band: window rolled back");
#undef PX
#undef PY
}

static bool has_ext(const char *path, const char *ext) {
    const size_t len = strlen(path), n = strlen(ext);
    return len > n && strcasecmp(path + len - n, ext) == 0;
}

int cli_maint_plot_check(const cli *c, const char *path) {
    if (has_ext(path, ".svg") || has_ext(path, ".png")) return 0;
    return cli_usage_error(c, "--plot: '%s': name the file *.svg or *.png (the format follows "
                              "the extension)", path);
}

int cli_maint_plot(const cli *c, const char *path, const cli_maint_result *const *runs,
                   size_t n_runs, const cli_maint_plan *plan) {
    int rc = cli_maint_plot_check(c, path);
    if (rc) return rc;
    cli_canvas cv = {0};
    plot_out p = {NULL, NULL};
    if (has_ext(path, ".png")) { /* draw first: nothing to clean up if memory runs out */
        if (cli_canvas_init(&cv, CLI_PLOT_W, CLI_PLOT_H, 0xffffff))
            return cli_runtime_error(c, "cannot draw %s: out of memory", path);
        p.cv = &cv;
        plot_draw(&p, runs, n_runs, plan);
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = cli_runtime_error(c, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    int bad = 0;
    if (p.cv) {
        bad = cli_canvas_write_png(&cv, f) != 0;
    } else {
        p.svg = f;
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n", CLI_PLOT_W, CLI_PLOT_H);
        plot_draw(&p, runs, n_runs, plan);
        fprintf(f, "</svg>\n");
    }
    int e = errno;
    bad |= ferror(f) != 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        e = bad && e ? e : errno;
        unlink(tmp);
        rc = cli_runtime_error(c, "cannot write %s: %s", path, strerror(e));
    }
done:
    cli_canvas_free(&cv);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

enum {
    OPT_MODE = CLI_OPT_CMD_BASE,
    OPT_SCENARIO,
    OPT_SCENARIO_LENGTH,
    OPT_SCENARIO_SEED,
    OPT_PLOT,
    OPT_PLOT_EVERY,
    OPT_STATUS_EVERY,
    OPT_CHECKPOINT_DIR,
    OPT_DETECTOR,
    OPT_HOLDOUT_IMAGES,
    OPT_HOLDOUT_LABELS,
    OPT_HOLDOUT_CSV,
    OPT_MAINT_BASE /* + mm_maint_param */
};

#define M(p) (OPT_MAINT_BASE + (p))

static void maintain_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"mode", required_argument, OPT_MODE, "MODE",
         "guarded (default), naive (plain online SGD, no guard) or never (no updates)"},
        {"window", required_argument, M(MM_MAINT_WINDOW), "N",
         "samples per guard window and rolling window (default 1000)"},
        {"threshold", required_argument, M(MM_MAINT_GUARD_THRESHOLD), "X",
         "tolerated holdout accuracy drop before a rollback (default 0.01)"},
        {"ring", required_argument, M(MM_MAINT_RING), "N", "checkpoints kept (default 4)"},
        {"checkpoint-dir", required_argument, OPT_CHECKPOINT_DIR, "DIR",
         "also write each accepted version to DIR/ckpt-<version>.mmf"},
        {"batch", required_argument, M(MM_MAINT_BATCH), "N", "new samples per update (default 1)"},
        {"replay", required_argument, M(MM_MAINT_REPLAY_SIZE), "N",
         "replay reservoir size, 0 = none (default 2000)"},
        {"replay-mix", required_argument, M(MM_MAINT_REPLAY_MIX), "X",
         "replay samples per new sample (default 0.5)"},
        {"l2sp", required_argument, M(MM_MAINT_L2SP), "X",
         "L2-SP strength towards the deployed weights (default 0)"},
        {"detector", required_argument, OPT_DETECTOR, "NAME",
         "drift detector: adwin (default), ddm, eddm, page_hinkley or none"},
        {"holdout-every", required_argument, M(MM_MAINT_HOLDOUT_EVERY), "K",
         "every K-th stream sample goes to the holdout, 0 = none (default 5)"},
        {"holdout-size", required_argument, M(MM_MAINT_HOLDOUT_SIZE), "N",
         "holdout capacity (default 1000)"},
        {"holdout-images", required_argument, OPT_HOLDOUT_IMAGES, "FILE", "trusted holdout images (IDX)"},
        {"holdout-labels", required_argument, OPT_HOLDOUT_LABELS, "FILE", "trusted holdout labels (IDX)"},
        {"holdout-csv", required_argument, OPT_HOLDOUT_CSV, "FILE", "trusted holdout data as CSV"},
        {"recent", required_argument, M(MM_MAINT_RECENT_SIZE), "N",
         "recent samples a challenger trains on (default 3000)"},
        {"challenger-epochs", required_argument, M(MM_MAINT_CHALLENGER_EPOCHS), "N",
         "epochs of a challenger, 0 = no champion/challenger (default 2)"},
        {"seed", required_argument, M(MM_MAINT_SEED), "N", "seed of replay and challengers (default 0)"},
        {"scenario", required_argument, OPT_SCENARIO, "NAME",
         "'drift': turn the stream into the demo's drifting, poisoned stream"},
        {"scenario-length", required_argument, OPT_SCENARIO_LENGTH, "N",
         "samples of the scenario stream (default 30000)"},
        {"scenario-seed", required_argument, OPT_SCENARIO_SEED, "N", "seed of the scenario (default 1)"},
        {"plot", required_argument, OPT_PLOT, "FILE",
         "draw accuracy over the stream with drift and rollback marks; FILE.svg: SVG, "
         "FILE.png: 900x420 PNG"},
        {"plot-every", required_argument, OPT_PLOT_EVERY, "N",
         "samples per point of the plot and of the JSON series (default: from the "
         "stream's length, at least 50 points and at most 500 samples apart)"},
        {"status-every", required_argument, OPT_STATUS_EVERY, "N",
         "status line every N samples when stderr is not a terminal (default 5000, 0 = none)"},
    };
    cli_opts_init(o);
    cli_opts_add_out(o, "save the deployed version at the end here");
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_optimizer(o, false);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_TEST), CLI_ROLE_TRAIN);
    cli_opts_add_common(o, true);
}

void help_maintain(FILE *f) {
    cli_opts o;
    maintain_opts(&o);
    fprintf(f,
            "Usage: mmaint maintain MODEL [--out FILE] [options]\n"
            "Guarded maintenance of a deployed model over a stream of labelled samples: each\n"
            "sample is predicted first (progressive validation), then learned by a working\n"
            "copy (online SGD by default, lr 0.0005; naive mode 0.001; mixed with replay\n"
            "samples). Every --window samples the working copy is compared with the deployed\n"
            "version on the holdout; if it lost more than --threshold accuracy (or a loss was\n"
            "NaN) it is rolled back and the window (its held-out samples too) is quarantined,\n"
            "otherwise it becomes the new deployed version (a checkpoint). When the drift\n"
            "detector fires, two challengers are trained (Adam) on recent data + replay: one\n"
            "fine-tuned, one with its first layer re-aligned to the new input statistics;\n"
            "the better one is promoted only if it beats the champion on the holdout samples\n"
            "taken since the drift (paired sign test, 1%%) or on the whole holdout; else it\n"
            "tries again after more data (3 rounds). Prints a live status line and a final\n"
            "report.\n\n"
            "Data: the stream is --images/--labels or --csv (FILE '-' reads stdin), in\n"
            "order; --offset/--limit select a range; default (no data files, or --data-dir):\n"
            "the Fashion-MNIST training set. The holdout is --holdout-* data plus every\n"
            "--holdout-every-th stream sample. --test-* data is evaluated before and after;\n"
            "with --scenario (default: the Fashion-MNIST test set) also at every plot point,\n"
            "brightened after the drift.\n\n"
            "Options:\n");
    cli_opts_print_help(&o, f);
    fprintf(f, "\nExample:\n"
               "  mmaint maintain model.mmf --offset 50000 --scenario drift --plot acc.svg --out model-m.mmf\n");
}

static int parse_detector(const cli *c, const char *arg, double *value) {
    if (strcmp(arg, "none") == 0) {
        *value = 0;
        return 0;
    }
    mm_drift_kind k;
    if (mm_drift_kind_from_name(arg, &k) != MM_OK)
        return cli_usage_error(c, "--detector: unknown detector '%s' (ddm, eddm, adwin, "
                                  "page_hinkley, none)", arg);
    *value = (double)k;
    return 0;
}

int cmd_maintain(int argc, char **argv) {
    cli c;
    cli_init(&c, "maintain");
    cli_optim_cfg optim;
    cli_optim_init(&optim, MM_OPTIM_SGD);
    cli_data_cfg data;
    cli_data_init(&data, CLI_ROLE_TRAIN);
    cli_data_cfg hold;
    cli_data_init(&hold, CLI_ROLE_TRAIN);
    const char *out = NULL, *plot = NULL, *ckpt_dir = NULL, *scenario = NULL;
    size_t scen_len = 30000, scen_seed = 1, plot_every = 0 /* from the length */, status_every = 5000;
    cli_maint_mode mode = CLI_MAINT_GUARDED;
    double mset[32];
    bool mgiven[32] = {false};
    cli_opts o;
    maintain_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_maintain(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &data, id, arg, &r) ||
            cli_optim_option(&c, &optim, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        if (id > OPT_MAINT_BASE && id < OPT_MAINT_BASE + 32) {
            const int p = id - OPT_MAINT_BASE;
            if ((r = cli_parse_double(&c, cli_current_flag(), arg, &mset[p]))) return r;
            mgiven[p] = true;
            continue;
        }
        switch (id) {
        case CLI_OPT_OUT: out = arg; break;
        case OPT_MODE:
            if (strcmp(arg, "guarded") == 0) mode = CLI_MAINT_GUARDED;
            else if (strcmp(arg, "naive") == 0) mode = CLI_MAINT_NAIVE;
            else if (strcmp(arg, "never") == 0) mode = CLI_MAINT_NEVER;
            else r = cli_usage_error(&c, "--mode: '%s' is not guarded, naive or never", arg);
            break;
        case OPT_DETECTOR:
            r = parse_detector(&c, arg, &mset[MM_MAINT_DETECTOR]);
            mgiven[MM_MAINT_DETECTOR] = true;
            break;
        case OPT_CHECKPOINT_DIR: ckpt_dir = arg; break;
        case OPT_HOLDOUT_IMAGES: hold.src[CLI_ROLE_TRAIN].images = arg; break;
        case OPT_HOLDOUT_LABELS: hold.src[CLI_ROLE_TRAIN].labels = arg; break;
        case OPT_HOLDOUT_CSV: hold.src[CLI_ROLE_TRAIN].csv = arg; break;
        case OPT_SCENARIO:
            if (strcmp(arg, "drift") != 0)
                r = cli_usage_error(&c, "--scenario: unknown scenario '%s' (drift)", arg);
            scenario = arg;
            break;
        case OPT_SCENARIO_LENGTH:
            r = cli_parse_size(&c, "--scenario-length", arg, &scen_len);
            if (!r && scen_len < 10) r = cli_usage_error(&c, "--scenario-length must be at least 10");
            break;
        case OPT_SCENARIO_SEED: r = cli_parse_size(&c, "--scenario-seed", arg, &scen_seed); break;
        case OPT_PLOT: plot = arg; break;
        case OPT_PLOT_EVERY:
            r = cli_parse_size(&c, "--plot-every", arg, &plot_every);
            if (!r && plot_every == 0) r = cli_usage_error(&c, "--plot-every must be at least 1");
            break;
        case OPT_STATUS_EVERY: r = cli_parse_size(&c, "--status-every", arg, &status_every); break;
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
        if (r) return r;
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(&c, "which model? (mmaint maintain MODEL)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    if (plot && (rc = cli_maint_plot_check(&c, plot))) return rc;
    const char *in = argv[optind];
    /* '-' reads the stream from stdin */
    for (int role = 0; role < CLI_ROLE_COUNT; role++) {
        cli_data_src *s = &data.src[role];
        if (s->csv && strcmp(s->csv, "-") == 0) s->csv = "/dev/stdin";
        if (s->images && strcmp(s->images, "-") == 0) s->images = "/dev/stdin";
    }

    mm_model *model = NULL;
    mm_maintainer *mt = NULL;
    mm_optimizer *naive = NULL;
    mm_dataset *ds = NULL, *raw = NULL, *test = NULL, *hds = NULL, *test_bright = NULL;
    cli_maint_result res;
    memset(&res, 0, sizeof res);
    char desc[1200], test_desc[1200], hdesc[1200];
    double before = NAN, after = NAN;
    cli_maint_plan plan;
    memset(&plan, 0, sizeof plan);

    if ((rc = cli_data_require(&c, &data, CLI_ROLE_TRAIN, "the stream", &hold, "holdout")))
        goto done;
    if ((rc = cli_load_model(&c, in, &model))) goto done;
    if ((rc = cli_data_load(&c, &data, CLI_ROLE_TRAIN, true, &raw, desc, sizeof desc))) goto done;
    if ((rc = cli_check_data_fits(&c, model, raw, desc))) goto done;
    if (!mm_dataset_labels(raw)) {
        rc = cli_usage_error(&c, "%s has no labels: maintenance learns from labelled samples", desc);
        goto done;
    }
    if (scenario) {
        if ((rc = cli_maint_scenario(&c, raw, scen_len, scen_seed, &ds, &plan))) goto done;
        mm_dataset_free(raw);
        raw = NULL;
    } else {
        ds = raw;
        raw = NULL;
    }
    /* the scenario on the default Fashion-MNIST stream also follows the test set */
    const bool default_test = scenario && !cli_data_given(&data, CLI_ROLE_TRAIN);
    if ((rc = cli_data_load(&c, &data, CLI_ROLE_TEST, default_test, &test, test_desc,
                            sizeof test_desc)))
        goto done;
    if (test && (rc = cli_check_data_fits(&c, model, test, test_desc))) goto done;
    if (cli_data_given(&hold, CLI_ROLE_TRAIN)) {
        if ((rc = cli_data_load(&c, &hold, CLI_ROLE_TRAIN, false, &hds, hdesc, sizeof hdesc))) goto done;
        if ((rc = cli_check_data_fits(&c, model, hds, hdesc))) goto done;
        if (!mm_dataset_labels(hds)) {
            rc = cli_usage_error(&c, "the holdout %s has no labels", hdesc);
            goto done;
        }
    }

    if (mode == CLI_MAINT_NAIVE) {
        mm_status st = mm_optimizer_create(&naive, model, optim.kind);
        if (st == MM_OK) st = mm_optimizer_set(naive, MM_OPT_LEARNING_RATE, 1e-3);
        if (st != MM_OK) {
            rc = cli_lib_error(&c, st, "creating the optimizer");
            goto done;
        }
        if ((rc = cli_optim_apply(&c, &optim, naive))) goto done;
    }
    if (mode == CLI_MAINT_GUARDED) {
        mm_status st = mm_maintainer_create(&mt, model, optim.kind);
        /* half the naive rate: a window's updates are judged together, and
         * one-sample steps at 1e-3 drift by a point between guards */
        if (st == MM_OK) st = mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 5e-4);
        if (st != MM_OK) {
            rc = cli_lib_error(&c, st, "creating the maintainer");
            goto done;
        }
        for (int p = 1; p < 32; p++) {
            if (!mgiven[p]) continue;
            st = mm_maintainer_set(mt, (mm_maint_param)p, mset[p]);
            if (st != MM_OK) {
                rc = cli_lib_usage_error(&c, st, "--%s", mm_maint_param_name((mm_maint_param)p));
                goto done;
            }
        }
        for (size_t i = 0; i < optim.n; i++) {
            st = mm_maintainer_set_optimizer(mt, optim.set[i].param, optim.set[i].value);
            if (st != MM_OK) {
                rc = cli_lib_usage_error(&c, st, "%s", optim.set[i].flag);
                goto done;
            }
        }
        if (hds) {
            double cap;
            mm_maintainer_get(mt, MM_MAINT_HOLDOUT_SIZE, &cap);
            size_t hn = mm_dataset_size(hds) < (size_t)cap ? mm_dataset_size(hds) : (size_t)cap;
            st = mm_maintainer_set_holdout(mt, mm_dataset_features(hds), mm_dataset_labels(hds), hn);
            if (st != MM_OK) {
                rc = cli_lib_error(&c, st, "setting the holdout from %s", hdesc);
                goto done;
            }
        }
        if (ckpt_dir && (st = mm_maintainer_set_checkpoint_dir(mt, ckpt_dir)) != MM_OK) {
            rc = cli_lib_error(&c, st, "--checkpoint-dir");
            goto done;
        }
    }

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    cli_say(&c, "model: %s (%s)\n", in, arch);
    cli_say(&c, "stream: %s%s, %zu samples; mode %s\n", desc,
            scenario ? " as the drift scenario (class mix shift, brightened images, poisoned labels)"
                     : "",
            mm_dataset_size(ds), cli_maint_mode_name(mode));
    if (scenario)
        cli_say(&c, "scenario: class mix shifts at %zu, images brighten at %zu, labels scrambled in "
                    "[%zu, %zu)\n",
                plan.shift_at, plan.drift_at, plan.poison_at, plan.poison_end);
    if (test) {
        cli_eval_result r;
        if ((rc = cli_evaluate(&c, model, test, false, &r))) goto done;
        before = r.accuracy;
    }

    cli_maint_run_cfg cfg = {mode, plot_every, status_every, "maintain", naive, {NULL, NULL}, 0};
    if (scenario && test) { /* the test set follows the scenario's images */
        if ((rc = cli_maint_brighten(&c, test, &test_bright))) goto done;
        cfg.probe[0] = test;
        cfg.probe[1] = test_bright;
        cfg.probe_switch = plan.drift_at;
    }
    if ((rc = cli_maint_run(&c, mt, model, ds, &cfg, &res))) goto done;
    const mm_model *final_model = mt ? mm_maintainer_model(mt) : model;
    if (test) {
        cli_eval_result r;
        if ((rc = cli_evaluate(&c, final_model, test, false, &r))) goto done;
        after = r.accuracy;
    }
    cli_maint_print_report(c.out, &res);
    cli_maint_metrics met;
    if (scenario) {
        cli_maint_scenario_metrics(&res, &plan, &met);
        fprintf(c.out, "scenario: accuracy %.4f before the drift, %.4f 5000 samples after it "
                       "(within 2 points after %s); %.4f before the poisoned segment, %.4f after "
                       "it (cost %.2f points)\n",
                met.before_drift, met.after_5k, met.recovered_after >= 0 ? "" : "never",
                met.before_poison, met.after_poison, 100 * met.poison_cost);
        if (met.recovered_after >= 0)
            fprintf(c.out, "          recovered to within 2 points %.0f samples after the drift\n",
                    met.recovered_after);
        if (test) {
            char rec[32] = "never";
            if (met.t_recovered_after >= 0) snprintf(rec, sizeof rec, "%.0f", met.t_recovered_after);
            fprintf(c.out, "test set: %.4f at the drift (normal images), %.4f 5000 samples after it "
                           "(brightened; within 2 points after %s); %.4f when the poison starts, "
                           "worst %.4f until 2000 after it (cost %.2f points)\n",
                    met.t_before_drift, met.t_after_5k, rec, met.t_before_poison, met.t_worst_poison,
                    100 * met.t_poison_cost);
        }
    }
    if (test) fprintf(c.out, "test accuracy: %.4f before, %.4f after (%+.4f)\n", before, after, after - before);
    if (out) {
        mm_status st = mm_model_save(final_model, out);
        if (st != MM_OK) {
            rc = cli_lib_error(&c, st, "saving %s", out);
            goto done;
        }
        fprintf(c.out, "saved %s\n", out);
    }
    if (plot) {
        const cli_maint_result *runs[1] = {&res};
        if ((rc = cli_maint_plot(&c, plot, runs, 1, scenario ? &plan : NULL))) goto done;
        fprintf(c.out, "plot: %s\n", plot);
    }
    if (c.json) {
        json_t *j = cli_maint_json(&res);
        json_object_set_new(j, "command", json_string("maintain"));
        json_object_set_new(j, "model_in", json_string(in));
        json_object_set_new(j, "arch", json_string(arch));
        json_object_set_new(j, "data", json_string(desc));
        if (out) json_object_set_new(j, "model", json_string(out));
        if (plot) json_object_set_new(j, "plot", json_string(plot));
        json_object_set_new(j, "test_accuracy_before", cli_json_num(before));
        json_object_set_new(j, "test_accuracy_after", cli_json_num(after));
        if (scenario) {
            json_t *p = json_object();
            json_object_set_new(p, "length", json_integer((json_int_t)plan.length));
            json_object_set_new(p, "shift_at", json_integer((json_int_t)plan.shift_at));
            json_object_set_new(p, "drift_at", json_integer((json_int_t)plan.drift_at));
            json_object_set_new(p, "poison_at", json_integer((json_int_t)plan.poison_at));
            json_object_set_new(p, "poison_end", json_integer((json_int_t)plan.poison_end));
            json_object_set_new(p, "metrics", cli_maint_metrics_json(&met));
            json_object_set_new(j, "scenario", p);
        }
        cli_json_print(j);
    }

done:
    cli_maint_result_free(&res);
    mm_maintainer_free(mt);
    mm_optimizer_free(naive);
    mm_model_free(model);
    mm_dataset_free(ds);
    mm_dataset_free(raw);
    mm_dataset_free(test);
    mm_dataset_free(hds);
    mm_dataset_free(test_bright);
    return rc;
}
