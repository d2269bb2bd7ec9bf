/* mm_drift: the four detectors on streams with a known change point
 * (abrupt Bernoulli error-rate change, Gaussian loss mean shift, gradual
 * drift): each detects within a bounded delay; false alarms on long
 * stationary streams stay under a bound derived from the parameters
 * (ADWIN: delta per check, the paper's Theorem 3.1; Page-Hinkley: Siegmund's
 * average run length of the one-sided CUSUM it is, which the measured rate
 * follows within ~20%) or, for DDM and EDDM whose papers give no
 * false-alarm guarantee, under the rate measured with benchmarks/bench_drift
 * plus a margin (a regression bound; both are far noisier than ADWIN and
 * Page-Hinkley: see benchmarks/RESULTS.md); detectors are deterministic,
 * reset as documented, ADWIN keeps O(log W) buckets and the exact window
 * mean; parameter and input errors. Internal suite: it counts ADWIN's
 * buckets (maintain/drift_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maintain/drift_internal.h"
#include "mm/mm.h"
#include "testutil.h"

/* ---- streams (own PRNG: splitmix64, so the test needs no internals) ----- */

typedef struct rng {
    uint64_t s;
} rng;

static double unif(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double gauss(rng *r) {
    double u1 = unif(r), u2 = unif(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Error rate at time t of a stream changing at `change` from p0 to p1,
 * linearly over `width` samples (0 = abrupt). */
static double rate_at(size_t t, size_t change, size_t width, double p0, double p1) {
    if (t < change) return p0;
    if (width == 0 || t >= change + width) return p1;
    return p0 + (p1 - p0) * (double)(t - change) / (double)width;
}

/* Feed a stream; returns the first t >= `from` with a DRIFT (SIZE_MAX if
 * none before `len`), and counts drifts before `from` into *early. */
typedef enum stream_kind { BERNOULLI, GAUSSIAN } stream_kind;

static size_t run_stream(mm_drift *d, stream_kind kind, uint64_t seed, size_t len, size_t change,
                         size_t width, double a0, double a1, double sd, size_t *early) {
    rng r = {seed * 0x2545F4914F6CDD1DULL + 17};
    size_t first = SIZE_MAX;
    if (early) *early = 0;
    for (size_t t = 0; t < len; t++) {
        double mean = rate_at(t, change, width, a0, a1);
        double v = kind == BERNOULLI ? (unif(&r) < mean ? 1.0 : 0.0) : mean + sd * gauss(&r);
        mm_drift_state st;
        MM_ASSERT_OK(mm_drift_update(d, v, &st));
        if (st == MM_DRIFT_DRIFT) {
            if (t < change) {
                if (early) (*early)++;
            } else if (first == SIZE_MAX) {
                first = t;
                break;
            }
        }
    }
    return first;
}

static const mm_drift_kind all_kinds[] = {MM_DRIFT_ADWIN, MM_DRIFT_PAGE_HINKLEY, MM_DRIFT_DDM,
                                          MM_DRIFT_EDDM};

/* ---- API ---------------------------------------------------------------- */

START_TEST(test_names) {
    for (size_t i = 0; i < 4; i++) {
        mm_drift_kind k;
        MM_ASSERT_OK(mm_drift_kind_from_name(mm_drift_kind_name(all_kinds[i]), &k));
        ck_assert_int_eq(k, all_kinds[i]);
        mm_drift *d;
        MM_ASSERT_OK(mm_drift_create(&d, all_kinds[i]));
        ck_assert_int_eq(mm_drift_get_kind(d), all_kinds[i]);
        ck_assert_uint_eq(mm_drift_samples(d), 0);
        ck_assert(mm_drift_estimate(d) == 0.0);
        mm_drift_free(d);
    }
    mm_drift_kind k;
    MM_ASSERT_OK(mm_drift_kind_from_name("ph", &k));
    ck_assert_int_eq(k, MM_DRIFT_PAGE_HINKLEY);
    MM_ASSERT_STATUS(mm_drift_kind_from_name("kswin", &k), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "kswin"));
    ck_assert_str_eq(mm_drift_kind_name((mm_drift_kind)99), "unknown");
    mm_drift *d;
    MM_ASSERT_STATUS(mm_drift_create(&d, (mm_drift_kind)0), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(d);
    MM_ASSERT_STATUS(mm_drift_create(NULL, MM_DRIFT_DDM), MM_E_INVALID_ARGUMENT);
    mm_drift_free(NULL);
    ck_assert_uint_eq(mm_drift_samples(NULL), 0);
}
END_TEST

START_TEST(test_params) {
    mm_drift *d;
    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_PAGE_HINKLEY));
    double v;
    MM_ASSERT_OK(mm_drift_get(d, "lambda", &v));
    ck_assert(v == 50.0);
    MM_ASSERT_OK(mm_drift_get(d, "delta", &v));
    ck_assert(v == 0.005);
    MM_ASSERT_OK(mm_drift_set(d, "lambda", 20.0));
    MM_ASSERT_OK(mm_drift_get(d, "lambda", &v));
    ck_assert(v == 20.0);
    MM_ASSERT_STATUS(mm_drift_set(d, "lambda", 0.0), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "lambda"));
    MM_ASSERT_STATUS(mm_drift_set(d, "alpha", 1.5), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_drift_set(d, "alpha", NAN), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_drift_set(d, "min_samples", 2.5), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_drift_set(d, "warning_level", 2.0), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "warning_level"));
    MM_ASSERT_STATUS(mm_drift_set(d, NULL, 2.0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_drift_set(NULL, "delta", 2.0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_drift_get(d, "lambda", &v));
    ck_assert(v == 20.0); /* failed sets change nothing */
    mm_drift_free(d);

    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_DDM));
    MM_ASSERT_STATUS(mm_drift_set(d, "warning_level", 4.0), MM_E_OUT_OF_RANGE); /* > drift 3 */
    MM_ASSERT_OK(mm_drift_set(d, "drift_level", 5.0));
    MM_ASSERT_OK(mm_drift_set(d, "warning_level", 4.0));
    MM_ASSERT_STATUS(mm_drift_set(d, "delta", 0.1), MM_E_INVALID_ARGUMENT);
    mm_drift_free(d);

    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_EDDM));
    MM_ASSERT_STATUS(mm_drift_set(d, "drift_level", 0.97), MM_E_OUT_OF_RANGE); /* > warning */
    MM_ASSERT_STATUS(mm_drift_set(d, "warning_level", 1.0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_OK(mm_drift_set(d, "min_errors", 10));
    MM_ASSERT_STATUS(mm_drift_set(d, "min_errors", 0), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "min_errors"));
    mm_drift_free(d);

    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_ADWIN));
    MM_ASSERT_STATUS(mm_drift_set(d, "delta", 0.0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_drift_set(d, "lambda", 1.0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_drift_set(d, "max_buckets", 3));
    MM_ASSERT_OK(mm_drift_update(d, 0.5, NULL));
    MM_ASSERT_STATUS(mm_drift_set(d, "max_buckets", 4), MM_E_STATE);
    MM_ASSERT_OK(mm_drift_reset(d));
    MM_ASSERT_OK(mm_drift_set(d, "max_buckets", 4));
    mm_drift_free(d);
}
END_TEST

START_TEST(test_bad_input) {
    for (size_t i = 0; i < 4; i++) {
        mm_drift *d;
        MM_ASSERT_OK(mm_drift_create(&d, all_kinds[i]));
        mm_drift_state st = MM_DRIFT_WARNING;
        MM_ASSERT_STATUS(mm_drift_update(d, NAN, &st), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_STATUS(mm_drift_update(d, INFINITY, &st), MM_E_INVALID_ARGUMENT);
        ck_assert_uint_eq(mm_drift_samples(d), 0); /* refused samples leave no trace */
        if (all_kinds[i] == MM_DRIFT_DDM || all_kinds[i] == MM_DRIFT_EDDM) {
            MM_ASSERT_STATUS(mm_drift_update(d, 0.5, &st), MM_E_INVALID_ARGUMENT);
            ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "0/1"));
            MM_ASSERT_STATUS(mm_drift_update(d, 2.0, &st), MM_E_INVALID_ARGUMENT);
            ck_assert_uint_eq(mm_drift_samples(d), 0);
        } else {
            MM_ASSERT_OK(mm_drift_update(d, 3.25, &st));
            ck_assert_int_eq(st, MM_DRIFT_STABLE);
            ck_assert(mm_drift_estimate(d) == 3.25);
        }
        MM_ASSERT_OK(mm_drift_update(d, 1.0, NULL)); /* state may be NULL */
        MM_ASSERT_STATUS(mm_drift_update(NULL, 1.0, &st), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_OK(mm_drift_reset(d));
        ck_assert_uint_eq(mm_drift_samples(d), 0);
        mm_drift_free(d);
    }
}
END_TEST

/* ---- detection ---------------------------------------------------------- */

/* Abrupt change of a Bernoulli error rate 0.1 -> 0.4 at t = 2000, 50 seeds:
 * every detector detects in every run, within max_delay, mean delay within
 * mean_delay. */
START_TEST(test_abrupt_bernoulli) {
    const size_t max_delay[] = {400, 400, 600, 1000};
    const double mean_delay[] = {150, 250, 150, 400};
    for (size_t i = 0; i < 4; i++) {
        double sum = 0;
        size_t worst = 0;
        for (uint64_t seed = 1; seed <= 50; seed++) {
            mm_drift *d;
            MM_ASSERT_OK(mm_drift_create(&d, all_kinds[i]));
            size_t early;
            size_t t = run_stream(d, BERNOULLI, seed, 6000, 2000, 0, 0.1, 0.4, 0, &early);
            ck_assert_msg(t != SIZE_MAX, "%s missed the change (seed %llu)",
                          mm_drift_kind_name(all_kinds[i]), (unsigned long long)seed);
            size_t delay = t - 2000;
            sum += (double)delay;
            if (delay > worst) worst = delay;
            mm_drift_free(d);
        }
        ck_assert_msg(worst <= max_delay[i] && sum / 50 <= mean_delay[i],
                      "%s: worst delay %zu (bound %zu), mean %.1f (bound %.0f)",
                      mm_drift_kind_name(all_kinds[i]), worst, max_delay[i], sum / 50,
                      mean_delay[i]);
    }
}
END_TEST


/* Gaussian loss mean shift 0.3 -> 0.6 (sd 0.1) at t = 2000, 50 seeds:
 * the real-valued detectors (measured: ADWIN 55 every run, which is its
 * check clock; Page-Hinkley mean 166, max 180 = lambda / shift + noise). */
START_TEST(test_gaussian_shift) {
    const mm_drift_kind kinds[] = {MM_DRIFT_ADWIN, MM_DRIFT_PAGE_HINKLEY};
    const size_t max_delay[] = {100, 260};
    for (size_t i = 0; i < 2; i++) {
        for (uint64_t seed = 1; seed <= 50; seed++) {
            mm_drift *d;
            MM_ASSERT_OK(mm_drift_create(&d, kinds[i]));
            size_t early;
            size_t t = run_stream(d, GAUSSIAN, seed, 5000, 2000, 0, 0.3, 0.6, 0.1, &early);
            ck_assert_msg(early == 0, "%s: false alarm before the shift (seed %llu)",
                          mm_drift_kind_name(kinds[i]), (unsigned long long)seed);
            ck_assert_msg(t != SIZE_MAX && t - 2000 <= max_delay[i],
                          "%s: delay %zu > %zu (seed %llu)", mm_drift_kind_name(kinds[i]),
                          t == SIZE_MAX ? (size_t)0 : t - 2000, max_delay[i],
                          (unsigned long long)seed);
            mm_drift_free(d);
        }
    }
    /* Page-Hinkley watches increases only: a decrease is not a drift */
    mm_drift *d;
    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_PAGE_HINKLEY));
    ck_assert_uint_eq(run_stream(d, GAUSSIAN, 7, 6000, 2000, 0, 0.6, 0.3, 0.1, NULL), SIZE_MAX);
    mm_drift_free(d);
}
END_TEST

/* Gradual drift: the error rate ramps 0.1 -> 0.4 over 2000 samples from
 * t = 2000. Every run detects during the ramp or soon after (delay counted
 * from the ramp's start; measured maxima: ADWIN 951, Page-Hinkley 905, DDM
 * 2297, EDDM 1136). */
START_TEST(test_gradual) {
    const size_t max_delay[] = {1500, 1500, 3500, 2000};
    for (size_t i = 0; i < 4; i++) {
        for (uint64_t seed = 1; seed <= 30; seed++) {
            mm_drift *d;
            MM_ASSERT_OK(mm_drift_create(&d, all_kinds[i]));
            size_t t = run_stream(d, BERNOULLI, seed, 9000, 2000, 2000, 0.1, 0.4, 0, NULL);
            ck_assert_msg(t != SIZE_MAX && t - 2000 <= max_delay[i],
                          "%s: gradual drift found after %zu (bound %zu, seed %llu)",
                          mm_drift_kind_name(all_kinds[i]), t == SIZE_MAX ? (size_t)0 : t - 2000,
                          max_delay[i], (unsigned long long)seed);
            mm_drift_free(d);
        }
    }
}
END_TEST

/* Stationary stream: number of DRIFTs over `seeds` streams of `len`. */
static uint64_t stationary_alarms(mm_drift_kind kind, const char *p1, double v1, const char *p2,
                                  double v2, stream_kind sk, double mean, double sd, int seeds,
                                  size_t len) {
    uint64_t alarms = 0;
    for (int seed = 1; seed <= seeds; seed++) {
        mm_drift *d;
        MM_ASSERT_OK(mm_drift_create(&d, kind));
        if (p1) MM_ASSERT_OK(mm_drift_set(d, p1, v1));
        if (p2) MM_ASSERT_OK(mm_drift_set(d, p2, v2));
        rng r = {(uint64_t)seed * 7919u + 3};
        for (size_t t = 0; t < len; t++) {
            double v = sk == BERNOULLI ? (unif(&r) < mean ? 1.0 : 0.0) : mean + sd * gauss(&r);
            mm_drift_state st;
            MM_ASSERT_OK(mm_drift_update(d, v, &st));
            alarms += st == MM_DRIFT_DRIFT;
        }
        mm_drift_free(d);
    }
    return alarms;
}

/* Siegmund's approximation of the in-control average run length of a
 * one-sided CUSUM with drift -delta, per-sample variance var and threshold
 * lambda: (e^a - 1 - a) / (2 delta^2 / var), a = 2 delta lambda / var. */
static double siegmund_arl(double delta, double var, double lambda) {
    double a = 2.0 * delta * lambda / var;
    return (exp(a) - 1.0 - a) / (2.0 * delta * delta / var);
}

START_TEST(test_false_alarms_page_hinkley) {
    const int seeds = 50;
    const size_t len = 20000;
    const double n = (double)seeds * (double)len, var = 0.1 * 0.9;
    /* lambda 10 without forgetting: Siegmund predicts one alarm per ~1660
     * samples; the measured rate must follow it (within -40%/+25%) */
    double arl = siegmund_arl(0.005, var, 10.0);
    uint64_t a = stationary_alarms(MM_DRIFT_PAGE_HINKLEY, "lambda", 10, "alpha", 1, BERNOULLI, 0.1,
                                   0, seeds, len);
    ck_assert_msg((double)a <= 1.25 * n / arl && (double)a >= 0.6 * n / arl,
                  "page_hinkley lambda 10: %llu alarms in %.0f samples, Siegmund predicts %.0f",
                  (unsigned long long)a, n, n / arl);
    /* lambda 20: ~10.8k */
    arl = siegmund_arl(0.005, var, 20.0);
    a = stationary_alarms(MM_DRIFT_PAGE_HINKLEY, "lambda", 20, "alpha", 1, BERNOULLI, 0.1, 0,
                          seeds, len);
    ck_assert_msg((double)a <= 1.25 * n / arl && (double)a >= 0.6 * n / arl,
                  "page_hinkley lambda 20: %llu alarms in %.0f samples, Siegmund predicts %.0f",
                  (unsigned long long)a, n, n / arl);
    /* defaults (lambda 50, alpha 0.9999): without forgetting the ARL would
     * be ~455k samples; forgetting caps how far the cumulative sum drifts
     * down and raises the rate (measured ~3.5x at lambda 50: 8e-6 per
     * sample), so the bound allows 4x */
    arl = siegmund_arl(0.005, var, 50.0);
    a = stationary_alarms(MM_DRIFT_PAGE_HINKLEY, NULL, 0, NULL, 0, BERNOULLI, 0.1, 0, seeds, len);
    ck_assert_msg((double)a <= 4.0 * n / arl + 2.0, "page_hinkley defaults: %llu alarms (bound %.1f)",
                  (unsigned long long)a, 4.0 * n / arl + 2.0);
    /* Gaussian loss, sd 0.1: a = 50, no alarm at all */
    a = stationary_alarms(MM_DRIFT_PAGE_HINKLEY, NULL, 0, NULL, 0, GAUSSIAN, 0.3, 0.1, seeds, len);
    ck_assert_uint_eq(a, 0);
}
END_TEST

START_TEST(test_false_alarms_adwin) {
    /* Theorem 3.1: under a stationary stream a check shrinks the window with
     * probability at most delta. With delta 0.3 and a check per sample the
     * bound is 0.3 per sample; measured: ~2e-4. */
    const int seeds = 20;
    const size_t len = 20000;
    uint64_t a = stationary_alarms(MM_DRIFT_ADWIN, "delta", 0.3, "clock", 1, BERNOULLI, 0.1, 0,
                                   seeds, len);
    ck_assert_msg((double)a <= 0.3 * seeds * (double)len, "adwin: %llu alarms", (unsigned long long)a);
    ck_assert_msg(a > 0, "adwin with delta 0.3 should shrink its window sometimes");
    /* defaults: delta 0.002 every 32 samples: at most 0.002 * 12500 = 25;
     * measured: none */
    a = stationary_alarms(MM_DRIFT_ADWIN, NULL, 0, NULL, 0, BERNOULLI, 0.1, 0, seeds, len);
    ck_assert_msg((double)a <= 0.002 * seeds * (double)len / 32.0, "adwin: %llu alarms",
                  (unsigned long long)a);
    a = stationary_alarms(MM_DRIFT_ADWIN, NULL, 0, NULL, 0, GAUSSIAN, 0.3, 0.1, seeds, len);
    ck_assert_msg((double)a <= 0.002 * seeds * (double)len / 32.0, "adwin: %llu alarms",
                  (unsigned long long)a);
}
END_TEST

START_TEST(test_false_alarms_ddm_eddm) {
    /* No guarantee in the papers; regression bounds at about twice the rate
     * measured by benchmarks/bench_drift (DDM ~5-7 per 100k samples, mostly
     * just after min_samples when p_min is estimated from few samples;
     * EDDM ~120-190 per 100k: its reference maximum of p'+2s' is taken from
     * the first, noisy estimates). */
    const int seeds = 50;
    const size_t len = 20000;
    const double n = (double)seeds * (double)len;
    uint64_t a = stationary_alarms(MM_DRIFT_DDM, NULL, 0, NULL, 0, BERNOULLI, 0.1, 0, seeds, len);
    ck_assert_msg((double)a <= 15e-5 * n, "ddm: %llu alarms in %.0f samples", (unsigned long long)a, n);
    /* a later start of the reference (min_samples 300) removes most of them */
    uint64_t b = stationary_alarms(MM_DRIFT_DDM, "min_samples", 300, NULL, 0, BERNOULLI, 0.1, 0,
                                   seeds, len);
    ck_assert_msg(b * 2 <= a, "ddm: min_samples 300 gives %llu alarms, 30 gives %llu",
                  (unsigned long long)b, (unsigned long long)a);
    a = stationary_alarms(MM_DRIFT_EDDM, NULL, 0, NULL, 0, BERNOULLI, 0.1, 0, seeds, len);
    ck_assert_msg((double)a <= 400e-5 * n, "eddm: %llu alarms in %.0f samples",
                  (unsigned long long)a, n);
}
END_TEST

START_TEST(test_deterministic) {
    for (size_t i = 0; i < 4; i++) {
        mm_drift *d1, *d2;
        MM_ASSERT_OK(mm_drift_create(&d1, all_kinds[i]));
        MM_ASSERT_OK(mm_drift_create(&d2, all_kinds[i]));
        rng r = {42};
        for (size_t t = 0; t < 8000; t++) {
            double p = t < 4000 ? 0.1 : 0.4;
            double v = unif(&r) < p ? 1.0 : 0.0;
            mm_drift_state s1, s2;
            MM_ASSERT_OK(mm_drift_update(d1, v, &s1));
            MM_ASSERT_OK(mm_drift_update(d2, v, &s2));
            ck_assert_int_eq(s1, s2);
            ck_assert_uint_eq(mm_drift_samples(d1), mm_drift_samples(d2));
            double e1 = mm_drift_estimate(d1), e2 = mm_drift_estimate(d2);
            ck_assert(memcmp(&e1, &e2, sizeof e1) == 0);
        }
        ck_assert_uint_gt(mm_drift_count(d1), 0);
        /* a reset detector replays the same verdicts */
        MM_ASSERT_OK(mm_drift_reset(d1));
        MM_ASSERT_OK(mm_drift_reset(d2));
        ck_assert_uint_eq(mm_drift_samples(d1), 0);
        mm_drift_free(d1);
        mm_drift_free(d2);
    }
}
END_TEST

/* After DRIFT: PH, DDM, EDDM start from zero; ADWIN keeps the newer part of
 * its window, whose mean is the new rate. */
START_TEST(test_reset_after_drift) {
    for (size_t i = 0; i < 4; i++) {
        mm_drift *d;
        MM_ASSERT_OK(mm_drift_create(&d, all_kinds[i]));
        rng r = {5};
        int seen = 0;
        uint64_t before = 0;
        for (size_t t = 0; t < 10000 && !seen; t++) {
            double v = unif(&r) < (t < 3000 ? 0.1 : 0.6) ? 1.0 : 0.0;
            before = mm_drift_samples(d);
            double mean_before = mm_drift_estimate(d);
            mm_drift_state st;
            MM_ASSERT_OK(mm_drift_update(d, v, &st));
            if (st != MM_DRIFT_DRIFT) continue;
            seen = 1;
            ck_assert_uint_eq(mm_drift_count(d), 1);
            if (all_kinds[i] == MM_DRIFT_ADWIN) {
                uint64_t w = mm_drift_samples(d);
                ck_assert_msg(w > 0 && w < before + 1, "adwin window %llu after drift (was %llu)",
                              (unsigned long long)w, (unsigned long long)before);
                /* the cut drops old buckets until the rest no longer
                 * differs significantly: some old samples stay */
                ck_assert_msg(mm_drift_estimate(d) > mean_before + 0.05,
                              "adwin mean %g after drift, %g before", mm_drift_estimate(d),
                              mean_before);
            } else {
                ck_assert_uint_eq(mm_drift_samples(d), 0);
                ck_assert(mm_drift_estimate(d) == 0.0);
            }
        }
        ck_assert_msg(seen, "%s found no drift", mm_drift_kind_name(all_kinds[i]));
        mm_drift_free(d);
    }
}
END_TEST

/* DDM passes through WARNING before most drifts; EDDM's ratio often jumps
 * past both levels at one error, yet warns first in some runs (measured
 * 10 of 20). */
START_TEST(test_warning_precedes_drift) {
    const mm_drift_kind kinds[] = {MM_DRIFT_DDM, MM_DRIFT_EDDM};
    for (size_t i = 0; i < 2; i++) {
        int warned_first = 0;
        for (uint64_t seed = 1; seed <= 20; seed++) {
            mm_drift *d;
            MM_ASSERT_OK(mm_drift_create(&d, kinds[i]));
            rng r = {seed};
            int warned = 0;
            for (size_t t = 0; t < 10000; t++) {
                double v = unif(&r) < (t < 3000 ? 0.1 : 0.3) ? 1.0 : 0.0;
                mm_drift_state st;
                MM_ASSERT_OK(mm_drift_update(d, v, &st));
                if (t < 3000) continue;
                if (st == MM_DRIFT_WARNING) warned = 1;
                if (st == MM_DRIFT_DRIFT) {
                    warned_first += warned;
                    break;
                }
            }
            mm_drift_free(d);
        }
        ck_assert_msg(warned_first >= (kinds[i] == MM_DRIFT_DDM ? 15 : 5), "%s warned before only %d of 20 drifts",
                      mm_drift_kind_name(kinds[i]), warned_first);
    }
}
END_TEST

/* ADWIN keeps O(log W) buckets and the window's exact mean. */
START_TEST(test_adwin_memory) {
    mm_drift *d;
    MM_ASSERT_OK(mm_drift_create(&d, MM_DRIFT_ADWIN));
    rng r = {11};
    const size_t n = 200000;
    double sum = 0;
    for (size_t t = 0; t < n; t++) {
        double v = unif(&r);
        sum += v;
        mm_drift_state st;
        MM_ASSERT_OK(mm_drift_update(d, v, &st));
        ck_assert_int_eq(st, MM_DRIFT_STABLE);
    }
    ck_assert_uint_eq(mm_drift_samples(d), n);
    ck_assert_double_eq_tol(mm_drift_estimate(d), sum / (double)n, 1e-9);
    /* M = 5 buckets (+1 transiently) per row, rows up to log2(n / M) + 1 */
    size_t buckets = mm_drift_adwin_buckets(d);
    size_t bound = 6 * ((size_t)ceil(log2((double)n / 5.0)) + 2);
    ck_assert_msg(buckets <= bound && buckets >= 5, "%zu buckets for %zu samples (bound %zu)",
                  buckets, n, bound);
    mm_drift_free(d);
}
END_TEST

static Suite *drift_suite(void) {
    Suite *s = suite_create("drift");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_params);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("detection");
    tcase_set_timeout(td, 600);
    tcase_add_test(td, test_abrupt_bernoulli);
    tcase_add_test(td, test_gaussian_shift);
    tcase_add_test(td, test_gradual);
    tcase_add_test(td, test_false_alarms_page_hinkley);
    tcase_add_test(td, test_false_alarms_adwin);
    tcase_add_test(td, test_false_alarms_ddm_eddm);
    tcase_add_test(td, test_deterministic);
    tcase_add_test(td, test_reset_after_drift);
    tcase_add_test(td, test_warning_precedes_drift);
    tcase_add_test(td, test_adwin_memory);
    suite_add_tcase(s, td);
    return s;
}

int main(void) { return mm_test_run(drift_suite()); }
