/* mm_drift: the four detectors on streams with a known change point
 * (abrupt Bernoulli error-rate change, Gaussian loss mean shift, gradual
 * drift): each detects within a bounded delay, raises no more false alarms
 * on long stationary streams than a bound derived from its parameters,
 * is deterministic, resets as documented; parameter and input errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    suite_add_tcase(s, td);
    return s;
}

int main(void) { return mm_test_run(drift_suite()); }
