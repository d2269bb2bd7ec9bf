/* mm_quantizer through the public API: settings and names, observers on
 * crafted data (ranges read back from the report), calibration and apply
 * errors, every scheme on a small trained model, accuracy-aware fallback,
 * quantization-aware training, save/load of quantized models, and
 * Fashion-MNIST (skipped when the dataset package is absent). */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

/* The "input_range" of layer `index` in the report; false if absent. */
static bool report_range(const mm_quantizer *q, size_t index, double *lo, double *hi) {
    const char *r = mm_quantizer_report(q);
    char key[48];
    snprintf(key, sizeof key, "{\"index\":%zu,", index);
    const char *e = strstr(r, key);
    if (!e) return false;
    const char *next = strstr(e + 1, "{\"index\":");
    const char *ir = strstr(e, "\"input_range\":[");
    if (!ir || (next && ir > next)) return false;
    return sscanf(ir + strlen("\"input_range\":["), "%lf,%lf", lo, hi) == 2;
}

/* The value of "key":<number> in a JSON text (first occurrence). */
static double json_number(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    if (!p) return NAN;
    return strtod(p + strlen(k), NULL);
}

/* The report's entry of layer `index` (a pointer into the text and its
 * length). */
static const char *report_layer(const mm_quantizer *q, size_t index, size_t *len) {
    const char *r = mm_quantizer_report(q);
    char key[48];
    snprintf(key, sizeof key, "{\"index\":%zu,", index);
    const char *e = strstr(r, key);
    ck_assert_msg(e != NULL, "layer %zu not in report %s", index, r);
    const char *end = strchr(e, '}');
    *len = end ? (size_t)(end - e) : strlen(e);
    return e;
}

static bool layer_text_has(const mm_quantizer *q, size_t index, const char *needle) {
    size_t len;
    const char *e = report_layer(q, index, &len);
    char *copy = strndup(e, len);
    bool has = strstr(copy, needle) != NULL;
    free(copy);
    return has;
}

static const char *kind_of(const mm_model *m, size_t l) {
    const char *kind = NULL;
    MM_ASSERT_OK(mm_model_layer_info(m, l, &kind, NULL, NULL, NULL));
    return kind;
}

/* One dense layer dim -> 2: the quantizer observes its input, which is x. */
static mm_model *probe_model(size_t dim) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, dim, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_IDENTITY));
    return m;
}

/* Apply static quantization to a clone of m with q's current observer and
 * return the range observed for layer 0. */
static void observed_range(mm_quantizer *q, const mm_model *m, double *lo, double *hi) {
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(m, &c));
    MM_ASSERT_OK(mm_quantizer_apply(q, c));
    ck_assert_msg(report_range(q, 0, lo, hi), "no range in %s", mm_quantizer_report(q));
    mm_model_free(c);
}

/* Deterministic normal-ish values: sum of 4 uniforms, scaled to unit variance. */
static void fill_normal(float *x, size_t n, uint64_t seed) {
    float *u = malloc(4 * n * sizeof *u);
    mm_test_fill(u, 4 * n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++)
        x[i] = (u[4 * i] + u[4 * i + 1] + u[4 * i + 2] + u[4 * i + 3]) * 0.8660254f;
    free(u);
}

/* ---- a small problem: 16 features (the last always 0), 4 classes ------------------ */

#define P_DIM 16
#define P_CLASSES 4

static void make_problem(size_t n, uint64_t seed, float *x, int32_t *y) {
    float proj[P_CLASSES * P_DIM];
    mm_test_fill(proj, P_CLASSES * P_DIM, 7, -1.0f, 1.0f);
    mm_test_fill(x, n * P_DIM, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * P_DIM;
        row[P_DIM - 1] = 0.0f;
        int best = 0;
        float bv = -INFINITY;
        for (int c = 0; c < P_CLASSES; c++) {
            float s = 0.0f;
            for (int j = 0; j < P_DIM; j++) s += proj[c * P_DIM + j] * row[j];
            if (s > bv) {
                bv = s;
                best = c;
            }
        }
        y[i] = best;
    }
}

#define N_TRAIN 4000
#define N_TEST 2000

typedef struct problem {
    float *xtr, *xte;
    int32_t *ytr, *yte;
} problem;

static problem prob;

static void problem_setup(void) {
    prob.xtr = malloc(N_TRAIN * P_DIM * sizeof(float));
    prob.ytr = malloc(N_TRAIN * sizeof(int32_t));
    prob.xte = malloc(N_TEST * P_DIM * sizeof(float));
    prob.yte = malloc(N_TEST * sizeof(int32_t));
    make_problem(N_TRAIN, 11, prob.xtr, prob.ytr);
    make_problem(N_TEST, 12, prob.xte, prob.yte);
}

static void problem_teardown(void) {
    free(prob.xtr);
    free(prob.ytr);
    free(prob.xte);
    free(prob.yte);
}

static void fit(mm_model *m, int epochs) {
    mm_dataset *ds;
    mm_optimizer *o;
    MM_ASSERT_OK(mm_dataset_create(&ds, prob.xtr, prob.ytr, N_TRAIN, P_DIM));
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 3e-3));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 32));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, epochs));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SEED, 3));
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL));
    mm_optimizer_free(o);
    mm_dataset_free(ds);
}

static mm_model *trained_model(void) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "16-32-4:relu", 5));
    fit(m, 15);
    return m;
}

static double test_acc(const mm_model *m) {
    double acc;
    MM_ASSERT_OK(mm_model_evaluate(m, prob.xte, prob.yte, NULL, N_TEST, NULL, &acc));
    return acc;
}

/* ---- settings and names ------------------------------------------------------------- */

START_TEST(settings_and_names) {
    mm_quantizer *q;
    MM_ASSERT_STATUS(mm_quantizer_create(&q, (mm_quant_scheme)99), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(q);
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    ck_assert_int_eq(mm_quantizer_scheme(q), MM_QUANT_INT8_STATIC);
    ck_assert_str_eq(mm_quantizer_report(q), "");

    const struct {
        mm_quant_param p;
        const char *name;
        double def;
    } defs[] = {{MM_QUANT_PER_CHANNEL, "per_channel", 1},
                {MM_QUANT_WEIGHT_SYMMETRIC, "weight_symmetric", 1},
                {MM_QUANT_ACT_SYMMETRIC, "act_symmetric", 0},
                {MM_QUANT_OBSERVER, "observer", MM_OBSERVER_MINMAX},
                {MM_QUANT_PERCENTILE, "percentile", 99.99},
                {MM_QUANT_AVERAGING, "averaging", 0.01},
                {MM_QUANT_BINS, "bins", 2048},
                {MM_QUANT_KEEP_MASTER, "keep_master", 0},
                {MM_QUANT_MAX_DROP, "max_drop", 0.003},
                {MM_QUANT_DROP_RELATIVE, "drop_relative", 0}};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        double v;
        MM_ASSERT_OK(mm_quantizer_get(q, defs[i].p, &v));
        ck_assert_double_eq(v, defs[i].def);
        ck_assert_str_eq(mm_quant_param_name(defs[i].p), defs[i].name);
        mm_quant_param back;
        MM_ASSERT_OK(mm_quant_param_from_name(defs[i].name, &back));
        ck_assert_int_eq(back, defs[i].p);
        double lo, hi;
        MM_ASSERT_OK(mm_quant_param_bounds(defs[i].p, &lo, &hi));
        ck_assert(lo <= defs[i].def && defs[i].def <= hi);
        MM_ASSERT_OK(mm_quantizer_set(q, defs[i].p, lo));
        MM_ASSERT_OK(mm_quantizer_set(q, defs[i].p, hi));
        MM_ASSERT_OK(mm_quantizer_set(q, defs[i].p, defs[i].def));
    }
    ck_assert_ptr_null(mm_quant_param_name((mm_quant_param)0));
    ck_assert_ptr_null(mm_quant_param_name((mm_quant_param)11));
    mm_quant_param pp;
    MM_ASSERT_STATUS(mm_quant_param_from_name("nope", &pp), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quant_param_bounds((mm_quant_param)42, NULL, NULL),
                     MM_E_INVALID_ARGUMENT);

    /* bounds: the message names the setting and its range */
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 50), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "percentile"));
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "(50, 100]"));
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_BINS, 127), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "bins"));
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_BINS, 65537), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_AVERAGING, 0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_MAX_DROP, NAN), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_OBSERVER, 5), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_BINS, 1000.5), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 0.5), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quantizer_set(q, (mm_quant_param)0, 1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 99.9));
    double v;
    MM_ASSERT_OK(mm_quantizer_get(q, MM_QUANT_PERCENTILE, &v));
    ck_assert_double_eq(v, 99.9);
    MM_ASSERT_STATUS(mm_quantizer_set_layer(q, 0, 2), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_quantizer_set_layer(q, 3, 0));
    MM_ASSERT_STATUS(mm_quantizer_set(NULL, MM_QUANT_BINS, 256), MM_E_INVALID_ARGUMENT);
    mm_quantizer_free(q);
    mm_quantizer_free(NULL);

    /* settings a scheme does not read are refused */
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_WEIGHT_ONLY));
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_OBSERVER, 1), MM_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "observer"));
    MM_ASSERT_STATUS(mm_quantizer_get(q, MM_QUANT_BINS, &v), MM_E_UNSUPPORTED);
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 0));
    mm_quantizer_free(q);
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_BF16));
    MM_ASSERT_STATUS(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 0), MM_E_UNSUPPORTED);
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, 0));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_MAX_DROP, 0.01));
    mm_quantizer_free(q);

    /* names */
    const mm_quant_scheme sch[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                   MM_QUANT_INT8_STATIC, MM_QUANT_FP16, MM_QUANT_BF16};
    const char *sn[] = {"int8_weight_only", "int8_dynamic", "int8_static", "fp16", "bf16"};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(mm_quant_scheme_name(sch[i]), sn[i]);
        mm_quant_scheme s;
        MM_ASSERT_OK(mm_quant_scheme_from_name(sn[i], &s));
        ck_assert_int_eq(s, sch[i]);
    }
    mm_quant_scheme s;
    MM_ASSERT_OK(mm_quant_scheme_from_name("static", &s));
    ck_assert_int_eq(s, MM_QUANT_INT8_STATIC);
    MM_ASSERT_STATUS(mm_quant_scheme_from_name("int4", &s), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(mm_quant_scheme_name((mm_quant_scheme)0));
    const char *on[] = {"minmax", "moving_minmax", "percentile", "mse", "entropy"};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(mm_quant_observer_name((mm_quant_observer)i), on[i]);
        mm_quant_observer o;
        MM_ASSERT_OK(mm_quant_observer_from_name(on[i], &o));
        ck_assert_int_eq(o, i);
    }
    mm_quant_observer o;
    MM_ASSERT_STATUS(mm_quant_observer_from_name("kl", &o), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(mm_quant_observer_name((mm_quant_observer)5));
}
END_TEST

/* ---- observers ---------------------------------------------------------------------- */

START_TEST(observer_minmax_exact) {
    const size_t dim = 8, n = 300;
    float *x = malloc(n * dim * sizeof *x);
    mm_test_fill(x, n * dim, 3, -2.0f, 5.0f);
    x[17] = -3.5f;
    x[n * dim - 5] = 7.25f;
    mm_model *m = probe_model(dim);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 100));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x + 100 * dim, n - 100)); /* accumulates */
    double lo, hi;
    observed_range(q, m, &lo, &hi);
    ck_assert_double_eq(lo, -3.5);
    ck_assert_double_eq(hi, 7.25);
    mm_quantizer_free(q);
    mm_model_free(m);
    free(x);
}
END_TEST

START_TEST(observer_percentile) {
    const size_t dim = 100, n = 1000;
    float *x = malloc(n * dim * sizeof *x);
    mm_quantizer *q;
    double lo, hi;

    /* uniform [0, 1): the central 99 % is [0.005, 0.995] */
    mm_test_fill(x, n * dim, 5, 0.0f, 1.0f);
    mm_model *m = probe_model(dim);
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, MM_OBSERVER_PERCENTILE));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 99));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, n));
    observed_range(q, m, &lo, &hi);
    ck_assert_msg(fabs(lo - 0.005) < 0.002 && fabs(hi - 0.995) < 0.002, "range [%g, %g]", lo, hi);
    /* 100 is min/max exactly */
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 100));
    observed_range(q, m, &lo, &hi);
    float mn = x[0], mx = x[0];
    for (size_t i = 0; i < n * dim; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    ck_assert_float_eq((float)lo, mn);
    ck_assert_float_eq((float)hi, mx);
    mm_quantizer_free(q);

    /* symmetric: the 90th percentile of |x| for x uniform on [-1, 3) is 2.6
     * (|x| <= t holds 2t/4 of the mass for t <= 1, (t + 1)/4 above) */
    mm_test_fill(x, n * dim, 6, -1.0f, 3.0f);
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, MM_OBSERVER_PERCENTILE));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 90));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, 1));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, n));
    observed_range(q, m, &lo, &hi);
    ck_assert_msg(fabs(hi - 2.6) < 0.01 && lo >= -1.0 && lo < -0.99, "range [%g, %g]", lo, hi);
    mm_quantizer_free(q);
    mm_model_free(m);
    free(x);
}
END_TEST

/* Two huge outliers in 2M roughly normal values. MSE weighs rounding error
 * over the bulk (about N (R/255)^2 / 12 for a range R) against the outliers'
 * clipping error (sum (o - R)^2): with these counts the optimum clips them
 * to a few hundred. Percentile cuts them off entirely, entropy as far as
 * its histogram resolves (a window of at least 256 bins). */
START_TEST(observer_mse_entropy_outliers) {
    const size_t dim = 256, n = 8192;
    float *x = malloc(n * dim * sizeof *x);
    fill_normal(x, n * dim, 9);
    x[12345] = 1000.0f;
    x[n * dim - 777] = 950.0f;
    mm_model *m = probe_model(dim);
    for (int sym = 0; sym <= 1; sym++) {
        mm_quantizer *q;
        MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, sym));
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PERCENTILE, 99.9)); /* 6 outliers: 0.02 % */
        MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, n));
        double lo, hi, mlo, mhi;
        observed_range(q, m, &mlo, &mhi);
        ck_assert_double_eq(mhi, 1000.0);
        const mm_quant_observer obs[] = {MM_OBSERVER_MSE, MM_OBSERVER_ENTROPY,
                                         MM_OBSERVER_PERCENTILE};
        for (int k = 0; k < 3; k++) {
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, obs[k])); /* no recalibration */
            observed_range(q, m, &lo, &hi);
            printf("outliers, %s %s: [%g, %g] (minmax [%g, %g])\n",
                   sym ? "symmetric" : "asymmetric", mm_quant_observer_name(obs[k]), lo, hi,
                   mlo, mhi);
            /* entropy's window is at least 256 of the 2048 bins */
            const double limit = obs[k] == MM_OBSERVER_MSE       ? 0.5 * mhi
                                 : obs[k] == MM_OBSERVER_ENTROPY ? 0.25 * mhi
                                                                 : 0.05 * mhi;
            ck_assert_msg(hi < limit, "%s: hi %g not narrower than min-max %g",
                          mm_quant_observer_name(obs[k]), hi, mhi);
            ck_assert_msg(hi > 2.0 && lo < -2.0 && lo >= mlo, "%s: range [%g, %g] cuts the bulk",
                          mm_quant_observer_name(obs[k]), lo, hi);
        }
        mm_quantizer_free(q);
    }
    mm_model_free(m);
    free(x);
}
END_TEST

START_TEST(observer_moving_average_converges) {
    const size_t dim = 64;
    float x[64];
    mm_model *m = probe_model(dim);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, MM_OBSERVER_MOVING_MINMAX));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_AVERAGING, 0.05));
    /* first batch far wider than the rest */
    mm_test_fill(x, dim, 1, -10.0f, 10.0f);
    x[0] = -10.0f;
    x[1] = 10.0f;
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 1));
    double lo, hi;
    for (int b = 0; b < 400; b++) {
        mm_test_fill(x, dim, 100 + b, -1.0f, 2.0f);
        MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 1)); /* one batch per call */
        if (b == 10) {
            observed_range(q, m, &lo, &hi);
            ck_assert_msg(lo < -5.0 && hi > 6.0, "after 11 batches [%g, %g]", lo, hi);
        }
    }
    observed_range(q, m, &lo, &hi);
    ck_assert_msg(lo > -1.0 && lo < -0.9 && hi < 2.0 && hi > 1.9, "converged to [%g, %g]", lo, hi);
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, MM_OBSERVER_MINMAX));
    observed_range(q, m, &lo, &hi);
    ck_assert_double_eq(lo, -10.0);
    ck_assert_double_eq(hi, 10.0);
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */

START_TEST(calibrate_errors) {
    mm_model *m, *other;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "8-6-3", 1));
    MM_ASSERT_OK(mm_model_create_from_spec(&other, "8-5-3", 1));
    float x[8 * 4];
    mm_test_fill(x, 32, 2, -1.0f, 1.0f);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, m, x, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, m, NULL, 4), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, NULL, x, 4), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_quantizer_calibrate(NULL, m, x, 4), MM_E_INVALID_ARGUMENT);
    x[13] = NAN;
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, m, x, 4), MM_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "sample 1"));
    x[13] = INFINITY;
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, m, x, 4), MM_E_NUMERIC);
    x[13] = 0.5f;
    /* nothing was calibrated by the failures */
    MM_ASSERT_STATUS(mm_quantizer_apply(q, m), MM_E_STATE);
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 4));
    MM_ASSERT_STATUS(mm_quantizer_calibrate(q, other, x, 4), MM_E_STATE);
    /* a model of another shape cannot use this calibration */
    MM_ASSERT_STATUS(mm_quantizer_apply(q, other), MM_E_STATE);
    ck_assert_str_eq(kind_of(other, 0), "dense");
    /* changing the histogram's bins discards the calibration */
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_BINS, 512));
    MM_ASSERT_STATUS(mm_quantizer_apply(q, m), MM_E_STATE);
    MM_ASSERT_OK(mm_quantizer_calibrate(q, other, x, 4));
    MM_ASSERT_OK(mm_quantizer_apply(q, other));
    ck_assert_str_eq(kind_of(other, 0), "int8");
    mm_quantizer_free(q);
    mm_model_free(m);
    mm_model_free(other);
}
END_TEST

START_TEST(static_needs_calibration) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "8-6-3", 1));
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_STATUS(mm_quantizer_apply(q, m), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "calibrate"));
    ck_assert_str_eq(kind_of(m, 0), "dense");
    ck_assert_str_eq(kind_of(m, 1), "dense");
    ck_assert_str_eq(mm_quantizer_report(q), "");
    /* other schemes need none */
    mm_quantizer_free(q);
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_DYNAMIC));
    MM_ASSERT_OK(mm_quantizer_set_layer(q, 5, 0));
    MM_ASSERT_STATUS(mm_quantizer_apply(q, m), MM_E_OUT_OF_RANGE); /* no layer 5 */
    MM_ASSERT_OK(mm_quantizer_set_layer(q, 5, 1));
    MM_ASSERT_OK(mm_quantizer_set_layer(q, 1, 0));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    ck_assert_str_eq(kind_of(m, 0), "int8");
    ck_assert_str_eq(kind_of(m, 1), "dense");
    ck_assert(layer_text_has(q, 1, "disabled"));
    ck_assert(layer_text_has(q, 0, "\"quantized\":true"));
    ck_assert(layer_text_has(q, 1, "\"quantized\":false"));
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "\"op\":\"quantize\""));
    /* applying again leaves quantized layers alone */
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    ck_assert(layer_text_has(q, 0, "already quantized"));
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

/* Make one weight of layer 0 non-finite through the public API: a weight of
 * 3e38 on an input that is always 0 keeps the loss finite, and SGD's weight
 * decay then overflows it to -Inf. Returns false if the library refuses
 * (then the test has nothing to check). */
static bool poison_weights(mm_model *m) {
    const size_t in = 8, out = 6;
    float w[48], b[6];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, in * out, b, out));
    w[0] = 3e38f;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, in * out, b, out));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1000));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, 10));
    float x[8] = {0, 0.5f, -0.5f, 0.25f, 0, 0, 0, 0};
    int32_t y = 1;
    mm_status st = mm_optimizer_step(o, x, &y, NULL, 1, NULL);
    mm_optimizer_free(o);
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, in * out, b, out));
    return st == MM_OK && !isfinite(w[0]);
}

/* A pruned model quantizes: its sparse layer becomes sparse_int8 (it was
 * refused before), or stays as it is when disabled. */
START_TEST(sparse_layers_quantize) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "16-32-4", 1));
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.9));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 0));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    mm_pruner_free(p);
    const char *k0 = kind_of(m, 0);
    if (strcmp(k0, "dense") == 0) {
        printf("SKIP sparse_layers_quantize: the pruner kept layer 0 dense\n");
        mm_model_free(m);
        return;
    }
    /* a pruned layer becomes sparse_int8; disabled, it stays as it is */
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_DYNAMIC));
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(m, &c));
    MM_ASSERT_OK(mm_quantizer_apply(q, c));
    ck_assert_str_eq(kind_of(c, 0), "sparse_int8");
    ck_assert_str_eq(kind_of(c, 1), "int8");
    mm_model_free(c);
    MM_ASSERT_OK(mm_quantizer_set_layer(q, 0, 0));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    ck_assert_str_eq(kind_of(m, 0), k0);
    ck_assert_str_eq(kind_of(m, 1), "int8");
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

START_TEST(nan_weights_refused) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "8-6-3", 1));
    if (!poison_weights(m)) {
        printf("SKIP nan_weights_refused: the public API gives no way to a non-finite weight\n");
        mm_model_free(m);
        return;
    }
    char before[2048], after[2048];
    MM_ASSERT_OK(mm_model_describe(m, before, sizeof before, NULL));
    char *lineage = strdup(mm_model_lineage(m));
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_FP16, MM_QUANT_BF16};
    for (int i = 0; i < 4; i++) {
        mm_quantizer *q;
        MM_ASSERT_OK(mm_quantizer_create(&q, schemes[i]));
        MM_ASSERT_STATUS(mm_quantizer_apply(q, m), MM_E_NUMERIC);
        ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "layer 0 weight"));
        MM_ASSERT_STATUS(mm_quantizer_prepare_qat(q, m), MM_E_NUMERIC);
        mm_quantizer_free(q);
    }
    MM_ASSERT_OK(mm_model_describe(m, after, sizeof after, NULL));
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(lineage, mm_model_lineage(m));
    ck_assert_str_eq(kind_of(m, 0), "dense");
    ck_assert_str_eq(kind_of(m, 1), "dense");
    free(lineage);
    mm_model_free(m);
}
END_TEST

/* ---- every scheme on a small trained model ------------------------------------------ */

START_TEST(every_scheme_small_model) {
    mm_model *base = trained_model();
    const double acc_f = test_acc(base);
    printf("16-32-4 float accuracy %.4f\n", acc_f);
    ck_assert_msg(acc_f > 0.9, "float model only reaches %.4f", acc_f);
    const size_t fbytes = mm_model_param_bytes(base);
    struct {
        mm_quant_scheme s;
        int observer; /* -1: none */
        int per_channel, wsym, asym;
    } cases[] = {
        {MM_QUANT_INT8_WEIGHT_ONLY, -1, 1, 1, 0}, {MM_QUANT_INT8_WEIGHT_ONLY, -1, 0, 0, 0},
        {MM_QUANT_INT8_DYNAMIC, -1, 1, 1, 0},     {MM_QUANT_INT8_DYNAMIC, -1, 0, 1, 0},
        {MM_QUANT_INT8_STATIC, 0, 1, 1, 0},       {MM_QUANT_INT8_STATIC, 0, 1, 0, 1},
        {MM_QUANT_INT8_STATIC, 1, 1, 1, 0},       {MM_QUANT_INT8_STATIC, 2, 1, 1, 0},
        {MM_QUANT_INT8_STATIC, 3, 1, 1, 0},       {MM_QUANT_INT8_STATIC, 4, 1, 1, 0},
        {MM_QUANT_INT8_STATIC, 3, 0, 1, 1},       {MM_QUANT_INT8_STATIC, 4, 1, 1, 1},
        {MM_QUANT_FP16, -1, 0, 0, 0},             {MM_QUANT_BF16, -1, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mm_model *m;
        MM_ASSERT_OK(mm_model_clone(base, &m));
        mm_quantizer *q;
        MM_ASSERT_OK(mm_quantizer_create(&q, cases[c].s));
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, 0));
        if (cases[c].s <= MM_QUANT_INT8_STATIC) {
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, cases[c].per_channel));
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, cases[c].wsym));
        }
        if (cases[c].observer >= 0) {
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, cases[c].observer));
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, cases[c].asym));
            MM_ASSERT_OK(mm_quantizer_calibrate(q, m, prob.xtr, 512));
        }
        MM_ASSERT_OK(mm_quantizer_apply(q, m));
        const char *want = cases[c].s == MM_QUANT_FP16   ? "fp16"
                           : cases[c].s == MM_QUANT_BF16 ? "bf16"
                                                         : "int8";
        ck_assert_str_eq(kind_of(m, 0), want);
        ck_assert_str_eq(kind_of(m, 1), want);
        const double acc = test_acc(m);
        const size_t qbytes = mm_model_param_bytes(m);
        printf("16-32-4 %-16s %-13s pc=%d wsym=%d asym=%d: accuracy %.4f (drop %+.4f), "
               "%zu -> %zu bytes\n",
               mm_quant_scheme_name(cases[c].s),
               cases[c].observer >= 0 ? mm_quant_observer_name(cases[c].observer) : "-",
               cases[c].per_channel, cases[c].wsym, cases[c].asym, acc, acc_f - acc, fbytes,
               qbytes);
        ck_assert_msg(acc_f - acc <= 0.02, "%s: accuracy %.4f vs float %.4f",
                      mm_quant_scheme_name(cases[c].s), acc, acc_f);
        ck_assert_msg(qbytes < fbytes, "%zu bytes quantized vs %zu float", qbytes, fbytes);
        /* lineage records the scheme and per-layer bytes */
        const char *lin = mm_model_lineage(m);
        ck_assert_ptr_nonnull(strstr(lin, mm_quant_scheme_name(cases[c].s)));
        ck_assert_ptr_nonnull(strstr(lin, "\"bytes_after\""));
        mm_quantizer_free(q);
        mm_model_free(m);
    }
    mm_model_free(base);
}
END_TEST

/* ---- accuracy-aware fallback --------------------------------------------------------- */

START_TEST(fallback_stops_at_target) {
    mm_model *m = trained_model();
    /* A huge weight on input 15, which is always 0: the float model does
     * not notice, but a per-tensor int8 scale for layer 0 becomes so coarse
     * that every other weight of the layer rounds to 0. */
    float w[32 * 16], b[32];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 32 * 16, b, 32));
    w[3 * 16 + 15] = 5000.0f;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 32 * 16, b, 32));
    const double acc_f = test_acc(m);

    mm_model *plain;
    MM_ASSERT_OK(mm_model_clone(m, &plain));
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_DYNAMIC));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 0));
    MM_ASSERT_OK(mm_quantizer_apply(q, plain));
    const double acc_plain = test_acc(plain);
    ck_assert_msg(acc_plain < acc_f - 0.2, "layer 0 not hurt: %.4f vs %.4f", acc_plain, acc_f);
    ck_assert_ptr_nonnull(strstr(mm_quantizer_report(q), "\"float_accuracy\":null"));

    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_MAX_DROP, 0.02));
    double acc;
    MM_ASSERT_OK(mm_quantizer_apply_with_tolerance(q, m, prob.xte, prob.yte, N_TEST, &acc));
    const char *rep = mm_quantizer_report(q);
    printf("fallback: float %.4f, all quantized %.4f, final %.4f\nreport %s\n", acc_f, acc_plain,
           acc, rep);
    ck_assert_str_eq(kind_of(m, 0), "dense");
    ck_assert_str_eq(kind_of(m, 1), "int8");
    ck_assert_double_eq_tol(acc, test_acc(m), 1e-12);
    ck_assert_msg(acc_f - acc <= 0.02, "final %.4f vs float %.4f", acc, acc_f);
    ck_assert(layer_text_has(q, 0, "\"quantized\":false"));
    ck_assert(layer_text_has(q, 0, "fallback: accuracy"));
    ck_assert(layer_text_has(q, 0, "with layer 0 in float"));
    ck_assert(layer_text_has(q, 1, "\"quantized\":true"));
    ck_assert(layer_text_has(q, 1, "\"accuracy_if_float\":"));
    ck_assert_double_eq_tol(json_number(rep, "float_accuracy"), acc_f, 1e-9);
    ck_assert_double_eq_tol(json_number(rep, "quantized_accuracy"), acc_plain, 1e-9);
    ck_assert_double_eq_tol(json_number(rep, "final_accuracy"), acc, 1e-9);
    /* layer 0's accuracy with it in float is what the model now has */
    size_t len;
    const char *e0 = report_layer(q, 0, &len);
    ck_assert_double_eq_tol(json_number(e0, "accuracy_if_float"), acc, 1e-9);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "accuracy_aware"));

    /* a target that all-quantized already meets: nothing falls back */
    mm_model *easy = trained_model();
    mm_quantizer *q2;
    MM_ASSERT_OK(mm_quantizer_create(&q2, MM_QUANT_INT8_DYNAMIC));
    MM_ASSERT_OK(mm_quantizer_set(q2, MM_QUANT_MAX_DROP, 0.05));
    MM_ASSERT_OK(mm_quantizer_set(q2, MM_QUANT_DROP_RELATIVE, 1));
    MM_ASSERT_OK(mm_quantizer_apply_with_tolerance(q2, easy, prob.xte, prob.yte, N_TEST, &acc));
    ck_assert_str_eq(kind_of(easy, 0), "int8");
    ck_assert_str_eq(kind_of(easy, 1), "int8");
    ck_assert(layer_text_has(q2, 0, "\"accuracy_if_float\":null"));
    /* a zero tolerance that cannot be met returns everything to float */
    mm_model *strict;
    MM_ASSERT_OK(mm_model_clone(m, &strict));
    mm_quantizer_free(q2);
    MM_ASSERT_OK(mm_quantizer_create(&q2, MM_QUANT_INT8_DYNAMIC));
    MM_ASSERT_OK(mm_quantizer_set(q2, MM_QUANT_PER_CHANNEL, 0));
    MM_ASSERT_OK(mm_quantizer_set(q2, MM_QUANT_MAX_DROP, 0));
    mm_model *fresh = trained_model();
    MM_ASSERT_OK(mm_model_get_weights(fresh, 0, w, 32 * 16, b, 32));
    w[3 * 16 + 15] = 5000.0f;
    MM_ASSERT_OK(mm_model_set_weights(fresh, 0, w, 32 * 16, b, 32));
    MM_ASSERT_OK(mm_quantizer_apply_with_tolerance(q2, fresh, prob.xte, prob.yte, N_TEST, &acc));
    ck_assert_msg(acc >= acc_f - 1e-12, "zero tolerance: %.4f vs %.4f", acc, acc_f);
    MM_ASSERT_STATUS(mm_quantizer_apply_with_tolerance(q2, fresh, prob.xte, prob.yte, 0, &acc),
                     MM_E_INVALID_ARGUMENT);
    mm_quantizer_free(q2);
    mm_model_free(fresh);
    mm_model_free(strict);
    mm_model_free(easy);
    mm_quantizer_free(q);
    mm_model_free(plain);
    mm_model_free(m);
}
END_TEST

/* ---- quantization-aware training ----------------------------------------------------- */

START_TEST(qat_train_convert) {
    mm_model *ref = trained_model();
    const double acc_ref = test_acc(ref);
    mm_model_free(ref);

    /* static twice: input ranges seeded by calibration, and observed in
     * training only */
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_STATIC, MM_QUANT_INT8_STATIC,
                                       MM_QUANT_INT8_DYNAMIC, MM_QUANT_INT8_WEIGHT_ONLY,
                                       MM_QUANT_BF16};
    for (int s = 0; s < 5; s++) {
        mm_model *m;
        MM_ASSERT_OK(mm_model_create_from_spec(&m, "16-32-4:relu", 5));
        fit(m, 5); /* float warm-up */
        mm_quantizer *q;
        MM_ASSERT_OK(mm_quantizer_create(&q, schemes[s]));
        if (schemes[s] == MM_QUANT_INT8_STATIC) {
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_AVERAGING, 0.05));
            if (s == 0) MM_ASSERT_OK(mm_quantizer_calibrate(q, m, prob.xtr, 256));
        }
        MM_ASSERT_OK(mm_quantizer_prepare_qat(q, m));
        ck_assert_str_eq(kind_of(m, 0), "qat");
        ck_assert_str_eq(kind_of(m, 1), "qat");
        ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "qat_prepare"));
        MM_ASSERT_OK(mm_quantizer_prepare_qat(q, m)); /* idempotent */
        fit(m, 10);
        const double acc_qat = test_acc(m);
        MM_ASSERT_OK(mm_quantizer_apply(q, m));
        const char *want = schemes[s] == MM_QUANT_BF16 ? "bf16" : "int8";
        ck_assert_str_eq(kind_of(m, 0), want);
        ck_assert_str_eq(kind_of(m, 1), want);
        const double acc = test_acc(m);
        printf("QAT %s%s: fake-quant accuracy %.4f, converted %.4f, float reference %.4f\n",
               mm_quant_scheme_name(schemes[s]), s == 0 ? " (calibrated)" : "", acc_qat, acc,
               acc_ref);
        if (schemes[s] == MM_QUANT_INT8_STATIC)
            ck_assert(layer_text_has(q, 1, "\"range_from\":\"qat\""));
        ck_assert_msg(fabs(acc - acc_qat) <= 0.01, "converted %.4f vs QAT %.4f", acc, acc_qat);
        ck_assert_msg(acc >= acc_ref - 0.02, "converted %.4f vs float %.4f", acc, acc_ref);
        mm_quantizer_free(q);
        mm_model_free(m);
    }
}
END_TEST

/* A checkpoint taken during QAT loads as the float master. */
START_TEST(qat_save_clone) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "16-32-4:relu", 5));
    fit(m, 2);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_DYNAMIC));
    /* an optimizer created before keeps working, and its updates reach
     * the fake-quantized weights */
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.5));
    MM_ASSERT_OK(mm_quantizer_prepare_qat(q, m));
    float before[4 * 8], after_step[4 * 8];
    MM_ASSERT_OK(mm_model_forward(m, prob.xte, 8, before));
    MM_ASSERT_OK(mm_optimizer_step(o, prob.xtr, prob.ytr, NULL, 32, NULL));
    MM_ASSERT_OK(mm_model_forward(m, prob.xte, 8, after_step));
    ck_assert(memcmp(before, after_step, sizeof before) != 0);
    ck_assert_str_eq(kind_of(m, 0), "qat");
    mm_optimizer_free(o);
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(m, &c));
    ck_assert_str_eq(kind_of(c, 0), "qat");
    float out1[4 * 8], out2[4 * 8];
    MM_ASSERT_OK(mm_model_forward(m, prob.xte, 8, out1));
    MM_ASSERT_OK(mm_model_forward(c, prob.xte, 8, out2));
    ck_assert_mem_eq(out1, out2, sizeof out1);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *back;
    MM_ASSERT_OK(mm_model_load(&back, path));
    ck_assert_str_eq(kind_of(back, 0), "dense");
    float w1[32 * 16], w2[32 * 16];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w1, 512, NULL, 0));
    MM_ASSERT_OK(mm_model_get_weights(back, 0, w2, 512, NULL, 0));
    ck_assert_mem_eq(w1, w2, sizeof w1);
    unlink(path);
    free(path);
    mm_model_free(back);
    mm_model_free(c);
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

/* ---- save / load ------------------------------------------------------------------------ */

START_TEST(save_load_bit_exact) {
    mm_model *base = trained_model();
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_STATIC, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_FP16, MM_QUANT_BF16};
    for (int s = 0; s < 5; s++)
        for (int keep = 0; keep <= 1; keep++) {
            mm_model *m;
            MM_ASSERT_OK(mm_model_clone(base, &m));
            mm_quantizer *q;
            MM_ASSERT_OK(mm_quantizer_create(&q, schemes[s]));
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, keep));
            if (schemes[s] == MM_QUANT_INT8_STATIC)
                MM_ASSERT_OK(mm_quantizer_calibrate(q, m, prob.xtr, 300));
            MM_ASSERT_OK(mm_quantizer_apply(q, m));
            char *path = mm_test_tmp_path(".mmf");
            MM_ASSERT_OK(mm_model_save(m, path));
            mm_model *back;
            MM_ASSERT_OK(mm_model_load(&back, path));
            const size_t n = 64;
            float *o1 = malloc(n * 4 * sizeof *o1), *o2 = malloc(n * 4 * sizeof *o2);
            MM_ASSERT_OK(mm_model_forward(m, prob.xte, n, o1));
            MM_ASSERT_OK(mm_model_forward(back, prob.xte, n, o2));
            ck_assert_msg(memcmp(o1, o2, n * 4 * sizeof *o1) == 0, "%s keep=%d: outputs differ",
                          mm_quant_scheme_name(schemes[s]), keep);
            ck_assert_str_eq(kind_of(back, 1), kind_of(m, 1));
            ck_assert_str_eq(mm_model_lineage(back), mm_model_lineage(m));
            free(o1);
            free(o2);
            unlink(path);
            free(path);
            mm_model_free(back);
            mm_quantizer_free(q);
            mm_model_free(m);
        }
    mm_model_free(base);
}
END_TEST

/* ---- Fashion-MNIST --------------------------------------------------------------------- */

START_TEST(fashion_mnist_int8) {
    const char *dir = mm_test_fashion_dir();
    if (!dir) {
        printf("SKIP fashion_mnist_int8: dataset-fashion-mnist is not installed\n");
        return;
    }
    char a[4096], b[4096];
    mm_dataset *train, *test;
    snprintf(a, sizeof a, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(b, sizeof b, "%s/train-labels-idx1-ubyte.gz", dir);
    MM_ASSERT_OK(mm_dataset_load_idx(&train, a, b));
    snprintf(a, sizeof a, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(b, sizeof b, "%s/t10k-labels-idx1-ubyte.gz", dir);
    MM_ASSERT_OK(mm_dataset_load_idx(&test, a, b));
    mm_model *m;
    mm_optimizer *o;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "784-256-128-10:relu", 42));
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 64));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 2));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SEED, 1));
    MM_ASSERT_OK(mm_optimizer_fit(o, train, NULL, NULL, NULL, NULL));
    mm_optimizer_free(o);
    const float *xt = mm_dataset_features(test);
    const int32_t *yt = mm_dataset_labels(test);
    const size_t nt = mm_dataset_size(test);
    double acc_f;
    MM_ASSERT_OK(mm_model_evaluate(m, xt, yt, NULL, nt, NULL, &acc_f));
    printf("fashion-mnist float: %.4f\n", acc_f);

    /* 512 calibration samples from the training set; one calibration
     * serves every observer */
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, mm_dataset_features(train), 512));
    double acc_static = NAN;
    for (int obs = 0; obs <= 4; obs++) {
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_OBSERVER, obs));
        mm_model *c;
        MM_ASSERT_OK(mm_model_clone(m, &c));
        MM_ASSERT_OK(mm_quantizer_apply(q, c));
        double acc;
        MM_ASSERT_OK(mm_model_evaluate(c, xt, yt, NULL, nt, NULL, &acc));
        printf("fashion-mnist int8_static per-channel %-13s: %.4f (drop %+.2f points)\n",
               mm_quant_observer_name(obs), acc, 100 * (acc_f - acc));
        if (obs == MM_OBSERVER_MINMAX) acc_static = acc;
        mm_model_free(c);
    }
    mm_quantizer_free(q);
    const mm_quant_scheme others[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                      MM_QUANT_FP16, MM_QUANT_BF16};
    for (int s = 0; s < 4; s++) {
        MM_ASSERT_OK(mm_quantizer_create(&q, others[s]));
        mm_model *c;
        MM_ASSERT_OK(mm_model_clone(m, &c));
        MM_ASSERT_OK(mm_quantizer_apply(q, c));
        double acc;
        MM_ASSERT_OK(mm_model_evaluate(c, xt, yt, NULL, nt, NULL, &acc));
        printf("fashion-mnist %-16s: %.4f (drop %+.2f points)\n",
               mm_quant_scheme_name(others[s]), acc, 100 * (acc_f - acc));
        ck_assert_msg(acc_f - acc <= 0.005, "%s loses %.2f points",
                      mm_quant_scheme_name(others[s]), 100 * (acc_f - acc));
        mm_model_free(c);
        mm_quantizer_free(q);
    }
    ck_assert_msg(acc_f - acc_static <= 0.005, "int8 static per-channel loses %.2f points",
                  100 * (acc_f - acc_static));
    mm_model_free(m);
    mm_dataset_free(train);
    mm_dataset_free(test);
}
END_TEST

static Suite *quant_suite(void) {
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, settings_and_names);
    tcase_add_test(tc, calibrate_errors);
    tcase_add_test(tc, static_needs_calibration);
    tcase_add_test(tc, nan_weights_refused);
    tcase_add_test(tc, sparse_layers_quantize);
    suite_add_tcase(s, tc);
    tc = tcase_create("observers");
    tcase_add_test(tc, observer_minmax_exact);
    tcase_add_test(tc, observer_percentile);
    tcase_add_test(tc, observer_mse_entropy_outliers);
    tcase_add_test(tc, observer_moving_average_converges);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_add_checked_fixture(tc, problem_setup, problem_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, every_scheme_small_model);
    tcase_add_test(tc, fallback_stops_at_target);
    tcase_add_test(tc, qat_train_convert);
    tcase_add_test(tc, qat_save_clone);
    tcase_add_test(tc, save_load_bit_exact);
    suite_add_tcase(s, tc);
    tc = tcase_create("fashion-mnist");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fashion_mnist_int8);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(quant_suite()); }
