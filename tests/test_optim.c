/* mm_optimizer through the public API: names and bounds, every setter range
 * check, PyTorch golden trajectories (tests/data/optim_golden.txt, written by
 * tests/golden/make_optim_golden.py), schedules against their closed forms,
 * NaN guards, model-change and Nesterov checks, and fit: progress, cancel,
 * early stopping with restore-best, determinism, and accuracy on a separable
 * problem. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mm/mm.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

/* All parameters of a model, layer by layer (W then b), into buf (may be
 * NULL to count). Returns the count. */
static size_t get_params(const mm_model *m, float *buf) {
    size_t total = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        if (buf) MM_ASSERT_OK(mm_model_get_weights(m, l, buf + total, in * out, buf + total + in * out, out));
        total += in * out + out;
    }
    return total;
}

static void set_params(mm_model *m, const float *buf) {
    size_t total = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        MM_ASSERT_OK(mm_model_set_weights(m, l, buf + total, in * out, buf + total + in * out, out));
        total += in * out + out;
    }
}

static mm_model *small_model(const char *spec, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, spec, seed));
    return m;
}

/* n samples of `dim` features in `classes` blobs: class k is centred at 2.5
 * on axis k (k < dim) with uniform noise in [-1, 1). Labels cycle. */
static void make_blobs(float *x, int32_t *y, size_t n, size_t dim, size_t classes,
                       uint64_t seed) {
    mm_test_fill(x, n * dim, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % classes);
        x[i * dim + (size_t)y[i] % dim] += 2.5f;
    }
}

static mm_dataset *blob_dataset(size_t n, size_t dim, size_t classes, uint64_t seed) {
    float *x = malloc(n * dim * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    make_blobs(x, y, n, dim, classes, seed);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, n, dim));
    free(x);
    free(y);
    return ds;
}

/* ---- names and bounds -------------------------------------------------- */

START_TEST(names_round_trip) {
    static const char *expect[] = {NULL,           "learning_rate", "momentum",     "nesterov",
                                   "weight_decay", "beta1",         "beta2",        "epsilon",
                                   "clip_norm",    "schedule",      "step_size",    "gamma",
                                   "warmup_steps", "total_steps",   "min_lr",       "batch_size",
                                   "epochs",       "seed",          "shuffle",      "patience",
                                   "restore_best", "max_grad_norm", "grad_spike",  "l2sp",
                                   "lineage"};
    for (int p = 1; p <= 24; p++) {
        const char *name = mm_opt_param_name((mm_opt_param)p);
        ck_assert_ptr_nonnull(name);
        ck_assert_str_eq(name, expect[p]);
        mm_opt_param back;
        MM_ASSERT_OK(mm_opt_param_from_name(name, &back));
        ck_assert_int_eq((int)back, p);
    }
    ck_assert_ptr_null(mm_opt_param_name((mm_opt_param)0));
    ck_assert_ptr_null(mm_opt_param_name((mm_opt_param)25));
    mm_opt_param p;
    MM_ASSERT_STATUS(mm_opt_param_from_name("lr", &p), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "lr"));
    MM_ASSERT_STATUS(mm_opt_param_from_name(NULL, &p), MM_E_INVALID_ARGUMENT);

    const char *kinds[] = {"sgd", "adam", "adamw"};
    for (int k = 1; k <= 3; k++) {
        ck_assert_str_eq(mm_optim_kind_name((mm_optim_kind)k), kinds[k - 1]);
        mm_optim_kind back;
        MM_ASSERT_OK(mm_optim_kind_from_name(kinds[k - 1], &back));
        ck_assert_int_eq((int)back, k);
    }
    ck_assert_ptr_null(mm_optim_kind_name((mm_optim_kind)0));
    ck_assert_ptr_null(mm_optim_kind_name((mm_optim_kind)4));
    mm_optim_kind k;
    MM_ASSERT_STATUS(mm_optim_kind_from_name("rmsprop", &k), MM_E_INVALID_ARGUMENT);
}
END_TEST

/* Enum-valued settings take names from the library (mm_*_value_from_name),
 * for every object with settings, so that no binding keeps a table of its
 * own: each name maps to its enum value and back, an unknown name is
 * refused with a message listing the valid ones, and a setting that takes
 * plain numbers says so. */
static void check_named(mm_status (*from)(int, const char *, double *),
                        const char *(*name_of)(int, double), int param, const char *const *names,
                        const int *values, size_t n, const char *valid_list) {
    for (size_t i = 0; i < n; i++) {
        double v = -1;
        MM_ASSERT_OK(from(param, names[i], &v));
        ck_assert_double_eq(v, values[i]);
        ck_assert_str_eq(name_of(param, values[i]), names[i]);
    }
    double v = 42;
    MM_ASSERT_STATUS(from(param, "no_such_value", &v), MM_E_INVALID_ARGUMENT);
    ck_assert_double_eq(v, 42);
    ck_assert_msg(strstr(mm_last_error_message(), "no_such_value") &&
                      strstr(mm_last_error_message(), valid_list),
                  "%s", mm_last_error_message());
    ck_assert_ptr_null(name_of(param, 99));
    ck_assert_ptr_null(name_of(param, 0.5));
    MM_ASSERT_STATUS(from(param, NULL, &v), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(from(param, names[0], NULL), MM_E_INVALID_ARGUMENT);
}

#define ADAPT(obj, param_t)                                                                   \
    static mm_status obj##_from(int p, const char *name, double *v) {                         \
        return mm_##obj##_value_from_name((param_t)p, name, v);                               \
    }                                                                                         \
    static const char *obj##_name(int p, double v) { return mm_##obj##_value_name((param_t)p, v); }
ADAPT(opt, mm_opt_param)
ADAPT(prune, mm_prune_param)
ADAPT(quant, mm_quant_param)
ADAPT(maint, mm_maint_param)
#undef ADAPT

START_TEST(value_names_of_every_object) {
    check_named(opt_from, opt_name, MM_OPT_SCHEDULE,
                (const char *const[]){"constant", "step", "exponential", "cosine"},
                (const int[]){MM_SCHEDULE_CONSTANT, MM_SCHEDULE_STEP, MM_SCHEDULE_EXPONENTIAL,
                              MM_SCHEDULE_COSINE},
                4, "constant, step, exponential, cosine");
    check_named(prune_from, prune_name, MM_PRUNE_SCHEDULE,
                (const char *const[]){"one_shot", "polynomial"},
                (const int[]){MM_PRUNE_ONE_SHOT, MM_PRUNE_POLYNOMIAL}, 2, "one_shot, polynomial");
    check_named(prune_from, prune_name, MM_PRUNE_SPARSE_FORMAT,
                (const char *const[]){"auto", "sparse", "dense"},
                (const int[]){MM_PRUNE_FORMAT_AUTO, MM_PRUNE_FORMAT_SPARSE, MM_PRUNE_FORMAT_DENSE},
                3, "auto, sparse, dense");
    check_named(quant_from, quant_name, MM_QUANT_OBSERVER,
                (const char *const[]){"minmax", "moving_minmax", "percentile", "mse", "entropy"},
                (const int[]){MM_OBSERVER_MINMAX, MM_OBSERVER_MOVING_MINMAX,
                              MM_OBSERVER_PERCENTILE, MM_OBSERVER_MSE, MM_OBSERVER_ENTROPY},
                5, "minmax, moving_minmax, percentile, mse, entropy");
    check_named(maint_from, maint_name, MM_MAINT_DETECTOR,
                (const char *const[]){"none", "adwin", "page_hinkley", "ddm", "eddm"},
                (const int[]){0, MM_DRIFT_ADWIN, MM_DRIFT_PAGE_HINKLEY, MM_DRIFT_DDM,
                              MM_DRIFT_EDDM},
                5, "none, adwin, page_hinkley, ddm, eddm");
    double v;
    MM_ASSERT_OK(mm_maint_value_from_name(MM_MAINT_DETECTOR, "ph", &v)); /* drift's alias */
    ck_assert_double_eq(v, MM_DRIFT_PAGE_HINKLEY);

    /* settings that take numbers, and unknown settings */
    MM_ASSERT_STATUS(mm_opt_value_from_name(MM_OPT_LEARNING_RATE, "fast", &v), MM_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "learning_rate"));
    ck_assert_ptr_null(mm_opt_value_name(MM_OPT_LEARNING_RATE, 0));
    MM_ASSERT_STATUS(mm_opt_value_from_name(MM_OPT_SEED, "x", &v), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_prune_value_from_name(MM_PRUNE_SPARSITY, "x", &v), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_quant_value_from_name(MM_QUANT_BINS, "x", &v), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_maint_value_from_name(MM_MAINT_WINDOW, "x", &v), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_opt_value_from_name((mm_opt_param)0, "x", &v), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_prune_value_from_name((mm_prune_param)99, "x", &v),
                     MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(mm_quant_value_name((mm_quant_param)99, 0));
    ck_assert_ptr_null(mm_maint_value_name((mm_maint_param)0, 0));

    /* the numbers are the setters' values */
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "4-3", 1));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_opt_value_from_name(MM_OPT_SCHEDULE, "cosine", &v));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SCHEDULE, v));
    MM_ASSERT_OK(mm_optimizer_get(o, MM_OPT_SCHEDULE, &v));
    ck_assert_str_eq(mm_opt_value_name(MM_OPT_SCHEDULE, v), "cosine");
    mm_maintainer *mt;
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_maint_value_from_name(MM_MAINT_DETECTOR, "eddm", &v));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, v));
    MM_ASSERT_OK(mm_maintainer_get(mt, MM_MAINT_DETECTOR, &v));
    ck_assert_str_eq(mm_maint_value_name(MM_MAINT_DETECTOR, v), "eddm");
    mm_maintainer_free(mt);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* The documented ranges: lo, hi, open ends, integer-ness, default per kind
 * (sgd, adam, adamw) or NAN when the setting does not apply. */
typedef struct range_case {
    mm_opt_param p;
    double lo, hi;
    int lo_open, hi_open, integer;
    double def[3];
} range_case;

static const range_case ranges[] = {
    {MM_OPT_LEARNING_RATE, 0, 1e3, 1, 0, 0, {1e-2, 1e-3, 1e-3}},
    {MM_OPT_MOMENTUM, 0, 1, 0, 1, 0, {0, NAN, NAN}},
    {MM_OPT_NESTEROV, 0, 1, 0, 0, 1, {0, NAN, NAN}},
    {MM_OPT_WEIGHT_DECAY, 0, 10, 0, 0, 0, {0, 0, 1e-2}},
    {MM_OPT_BETA1, 0, 1, 0, 1, 0, {NAN, 0.9, 0.9}},
    {MM_OPT_BETA2, 0, 1, 0, 1, 0, {NAN, 0.999, 0.999}},
    {MM_OPT_EPSILON, 0, 1, 1, 0, 0, {NAN, 1e-8, 1e-8}},
    {MM_OPT_CLIP_NORM, 0, 1e9, 0, 0, 0, {0, 0, 0}},
    {MM_OPT_SCHEDULE, 0, 3, 0, 0, 1, {0, 0, 0}},
    {MM_OPT_STEP_SIZE, 1, 1e12, 0, 0, 1, {1000, 1000, 1000}},
    {MM_OPT_GAMMA, 0, 1, 1, 0, 0, {0.1, 0.1, 0.1}},
    {MM_OPT_WARMUP_STEPS, 0, 1e12, 0, 0, 1, {0, 0, 0}},
    {MM_OPT_TOTAL_STEPS, 0, 1e12, 0, 0, 1, {0, 0, 0}},
    {MM_OPT_MIN_LR, 0, 1e3, 0, 0, 0, {0, 0, 0}},
    {MM_OPT_BATCH_SIZE, 1, 1e7, 0, 0, 1, {64, 64, 64}},
    {MM_OPT_EPOCHS, 1, 1e6, 0, 0, 1, {1, 1, 1}},
    {MM_OPT_SEED, 0, 9007199254740992.0, 0, 0, 1, {0, 0, 0}},
    {MM_OPT_SHUFFLE, 0, 1, 0, 0, 1, {1, 1, 1}},
    {MM_OPT_PATIENCE, 0, 1e6, 0, 0, 1, {0, 0, 0}},
    {MM_OPT_RESTORE_BEST, 0, 1, 0, 0, 1, {1, 1, 1}},
    {MM_OPT_MAX_GRAD_NORM, 0, 1e30, 0, 0, 0, {0, 0, 0}},
    {MM_OPT_GRAD_SPIKE, 0, 1e9, 0, 0, 0, {0, 0, 0}},
    {MM_OPT_L2SP, 0, 1e6, 0, 0, 0, {0, 0, 0}},
    {MM_OPT_LINEAGE, 0, 1, 0, 0, 1, {1, 1, 1}},
};
#define N_RANGES (sizeof ranges / sizeof ranges[0])

START_TEST(bounds_are_closed_ranges) {
    for (size_t i = 0; i < N_RANGES; i++) {
        const range_case *r = &ranges[i];
        double lo, hi;
        MM_ASSERT_OK(mm_opt_param_bounds(r->p, &lo, &hi));
        ck_assert(lo == (r->lo_open ? nextafter(r->lo, INFINITY) : r->lo));
        ck_assert(hi == (r->hi_open ? nextafter(r->hi, -INFINITY) : r->hi));
    }
    double lo, hi;
    MM_ASSERT_STATUS(mm_opt_param_bounds((mm_opt_param)0, &lo, &hi), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_opt_param_bounds((mm_opt_param)25, &lo, &hi), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_opt_param_bounds(MM_OPT_GAMMA, NULL, NULL));
}
END_TEST

static void expect_out_of_range(mm_optimizer *o, const range_case *r, double v) {
    MM_ASSERT_STATUS(mm_optimizer_set(o, r->p, v), MM_E_OUT_OF_RANGE);
    const char *msg = mm_last_error_message();
    ck_assert_msg(strstr(msg, mm_opt_param_name(r->p)) != NULL, "message '%s' lacks the name", msg);
    ck_assert_msg(strchr(msg, r->lo_open ? '(' : '[') && strchr(msg, r->hi_open ? ')' : ']'),
                  "message '%s' lacks the range", msg);
}

START_TEST(setters_check_every_range) {
    mm_model *m = small_model("3-2", 1);
    for (int kind = 1; kind <= 3; kind++) {
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, (mm_optim_kind)kind));
        ck_assert_int_eq((int)mm_optimizer_kind(o), kind);
        ck_assert_ptr_eq(mm_optimizer_model(o), m);
        for (size_t i = 0; i < N_RANGES; i++) {
            const range_case *r = &ranges[i];
            double def = r->def[kind - 1], v;
            if (isnan(def)) {
                MM_ASSERT_STATUS(mm_optimizer_set(o, r->p, r->lo_open ? 0.5 : r->lo),
                                 MM_E_UNSUPPORTED);
                ck_assert(strstr(mm_last_error_message(), mm_opt_param_name(r->p)));
                MM_ASSERT_STATUS(mm_optimizer_get(o, r->p, &v), MM_E_UNSUPPORTED);
                continue;
            }
            MM_ASSERT_OK(mm_optimizer_get(o, r->p, &v));
            ck_assert_msg(v == def, "%s default %g, want %g", mm_opt_param_name(r->p), v, def);
            double lo, hi;
            MM_ASSERT_OK(mm_opt_param_bounds(r->p, &lo, &hi));
            /* both closed ends are accepted */
            if (!r->integer || lo == floor(lo)) {
                MM_ASSERT_OK(mm_optimizer_set(o, r->p, r->integer ? ceil(lo) : lo));
                MM_ASSERT_OK(mm_optimizer_get(o, r->p, &v));
                ck_assert(v == (r->integer ? ceil(lo) : lo));
            }
            MM_ASSERT_OK(mm_optimizer_set(o, r->p, hi));
            MM_ASSERT_OK(mm_optimizer_get(o, r->p, &v));
            ck_assert(v == hi);
            /* just outside, far outside, NaN and infinities are not */
            expect_out_of_range(o, r, r->lo_open ? r->lo : nextafter(r->lo, -INFINITY));
            expect_out_of_range(o, r, r->hi_open ? r->hi : nextafter(r->hi, INFINITY));
            expect_out_of_range(o, r, -1e300);
            expect_out_of_range(o, r, 1e300);
            expect_out_of_range(o, r, NAN);
            expect_out_of_range(o, r, INFINITY);
            expect_out_of_range(o, r, -INFINITY);
            /* a failed set leaves the value alone */
            MM_ASSERT_OK(mm_optimizer_get(o, r->p, &v));
            ck_assert(v == hi);
            if (r->integer) {
                MM_ASSERT_STATUS(mm_optimizer_set(o, r->p, r->lo + 0.5), MM_E_INVALID_ARGUMENT);
                ck_assert(strstr(mm_last_error_message(), "integer"));
            }
            MM_ASSERT_OK(mm_optimizer_set(o, r->p, def));
        }
        double v;
        MM_ASSERT_STATUS(mm_optimizer_set(o, (mm_opt_param)0, 1), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_STATUS(mm_optimizer_set(o, (mm_opt_param)25, 1), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_STATUS(mm_optimizer_get(o, (mm_opt_param)25, &v), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_STATUS(mm_optimizer_get(o, MM_OPT_LEARNING_RATE, NULL), MM_E_INVALID_ARGUMENT);
        MM_ASSERT_STATUS(mm_optimizer_set(NULL, MM_OPT_LEARNING_RATE, 1), MM_E_INVALID_ARGUMENT);
        mm_optimizer_free(o);
    }
    mm_model_free(m);
}
END_TEST

START_TEST(create_errors_and_null_safety) {
    mm_optimizer *o = (mm_optimizer *)1;
    MM_ASSERT_STATUS(mm_optimizer_create(&o, NULL, MM_OPTIM_SGD), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(o);
    MM_ASSERT_STATUS(mm_optimizer_create(NULL, NULL, MM_OPTIM_SGD), MM_E_INVALID_ARGUMENT);
    mm_model *empty;
    MM_ASSERT_OK(mm_model_create(&empty, 4, 0));
    MM_ASSERT_STATUS(mm_optimizer_create(&o, empty, MM_OPTIM_ADAM), MM_E_INVALID_ARGUMENT);
    mm_model *m = small_model("4-3", 0);
    MM_ASSERT_STATUS(mm_optimizer_create(&o, m, (mm_optim_kind)0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_create(&o, m, (mm_optim_kind)9), MM_E_INVALID_ARGUMENT);
    mm_optimizer_free(NULL);
    ck_assert_uint_eq(mm_optimizer_steps(NULL), 0);
    ck_assert_ptr_null(mm_optimizer_model(NULL));
    ck_assert(isnan(mm_optimizer_current_lr(NULL)));

    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    float x[4] = {1, 2, 3, 4};
    int32_t y = 1;
    double loss = 0;
    MM_ASSERT_STATUS(mm_optimizer_step(NULL, x, &y, NULL, 1, &loss), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_step(o, NULL, &y, NULL, 1, &loss), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, &y, NULL, 0, &loss), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, NULL, NULL, 1, &loss), MM_E_INVALID_ARGUMENT);
    y = 3;
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, &y, NULL, 1, &loss), MM_E_OUT_OF_RANGE);
    ck_assert_uint_eq(mm_optimizer_steps(o), 0);
    y = 2;
    MM_ASSERT_OK(mm_optimizer_step(o, x, &y, NULL, 1, NULL));
    ck_assert_uint_eq(mm_optimizer_steps(o), 1);
    /* free in any state: fresh, stepped (state allocated) */
    mm_optimizer_free(o);
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_model_free(empty);
}
END_TEST

/* ---- golden trajectories from PyTorch --------------------------------- */

#define G_MAX_CASES 16
#define G_MAX_SET 16
#define G_MAX_STEPS 8
#define G_NP 39 /* 5-4-3: 20 + 4 + 12 + 3 */

typedef struct gcase {
    char name[64], kind[16];
    int n_set;
    char set_name[G_MAX_SET][64];
    double set_value[G_MAX_SET];
    int steps;
    double loss[G_MAX_STEPS];
    float params[G_MAX_STEPS][G_NP];
} gcase;

typedef struct golden {
    float x[30];
    int32_t labels[6];
    float init[G_NP];
    int n_cases;
    gcase cases[G_MAX_CASES];
} golden;

static void expect_word(FILE *f, const char *want) {
    char w[64];
    ck_assert_msg(fscanf(f, "%63s", w) == 1 && strcmp(w, want) == 0, "golden: expected '%s'",
                  want);
}

static void read_floats(FILE *f, float *dst, int n) {
    for (int i = 0; i < n; i++) ck_assert_msg(fscanf(f, "%f", &dst[i]) == 1, "golden: float %d", i);
}

static golden *load_golden(void) {
    const char *dir = getenv("MM_TEST_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/optim_golden.txt", dir ? dir : "tests/data");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    golden *g = calloc(1, sizeof *g);
    int version, a, b, c, n;
    expect_word(f, "mmaint-optim-golden");
    ck_assert(fscanf(f, "%d", &version) == 1 && version == 1);
    expect_word(f, "arch");
    ck_assert(fscanf(f, "%d %d %d", &a, &b, &c) == 3 && a == 5 && b == 4 && c == 3);
    expect_word(f, "samples");
    ck_assert(fscanf(f, "%d", &n) == 1 && n == 6);
    expect_word(f, "x");
    read_floats(f, g->x, 30);
    expect_word(f, "labels");
    for (int i = 0; i < 6; i++) ck_assert(fscanf(f, "%d", &g->labels[i]) == 1);
    expect_word(f, "init");
    read_floats(f, g->init, G_NP);
    expect_word(f, "cases");
    ck_assert(fscanf(f, "%d", &g->n_cases) == 1 && g->n_cases > 0 && g->n_cases <= G_MAX_CASES);
    for (int k = 0; k < g->n_cases; k++) {
        gcase *gc = &g->cases[k];
        expect_word(f, "case");
        ck_assert(fscanf(f, "%63s %15s %d", gc->name, gc->kind, &gc->n_set) == 3);
        ck_assert(gc->n_set >= 0 && gc->n_set <= G_MAX_SET);
        for (int s = 0; s < gc->n_set; s++)
            ck_assert(fscanf(f, "%63s %lf", gc->set_name[s], &gc->set_value[s]) == 2);
        expect_word(f, "steps");
        ck_assert(fscanf(f, "%d", &gc->steps) == 1 && gc->steps > 0 && gc->steps <= G_MAX_STEPS);
        for (int s = 0; s < gc->steps; s++) {
            ck_assert(fscanf(f, "%lf", &gc->loss[s]) == 1);
            read_floats(f, gc->params[s], G_NP);
        }
    }
    fclose(f);
    return g;
}

static mm_model *golden_model(const golden *g) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 5, 99));
    MM_ASSERT_OK(mm_model_add_dense(m, 4, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_IDENTITY));
    set_params(m, g->init);
    return m;
}

static mm_optimizer *golden_optimizer(mm_model *m, const gcase *gc) {
    mm_optim_kind kind;
    MM_ASSERT_OK(mm_optim_kind_from_name(gc->kind, &kind));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, kind));
    if (kind == MM_OPTIM_ADAMW) { /* the script uses torch's AdamW default */
        double wd;
        MM_ASSERT_OK(mm_optimizer_get(o, MM_OPT_WEIGHT_DECAY, &wd));
        ck_assert(wd == 1e-2);
    }
    for (int s = 0; s < gc->n_set; s++) {
        mm_opt_param p;
        MM_ASSERT_OK(mm_opt_param_from_name(gc->set_name[s], &p));
        MM_ASSERT_OK(mm_optimizer_set(o, p, gc->set_value[s]));
    }
    return o;
}

static void run_golden(void) {
    golden *g = load_golden();
    double worst = 0;
    for (int k = 0; k < g->n_cases; k++) {
        const gcase *gc = &g->cases[k];
        mm_model *m = golden_model(g);
        mm_optimizer *o = golden_optimizer(m, gc);
        for (int s = 0; s < gc->steps; s++) {
            double loss;
            MM_ASSERT_OK(mm_optimizer_step(o, g->x, g->labels, NULL, 6, &loss));
            ck_assert_msg(fabs(loss - gc->loss[s]) <= 1e-6 * fabs(gc->loss[s]),
                          "%s step %d: loss %.9g, torch %.9g", gc->name, s, loss, gc->loss[s]);
            float got[G_NP];
            get_params(m, got);
            for (int i = 0; i < G_NP; i++) {
                double want = gc->params[s][i], d = fabs((double)got[i] - want);
                /* relative 2e-6, with a floor for values near zero. PyTorch's own
                 * float32 trajectory differs from float64 by up to 4.6e-7 here
                 * (adam_wd: L2 cancels part of the gradient), so float rounding
                 * differences alone reach a few 1e-7. */
                double tol = 2e-6 * fmax(fabs(want), 0.1);
                if (d / fmax(fabs(want), 0.1) > worst) worst = d / fmax(fabs(want), 0.1);
                ck_assert_msg(d <= tol, "%s step %d param %d: %.9g, torch %.9g", gc->name, s, i,
                              got[i], want);
            }
        }
        ck_assert_uint_eq(mm_optimizer_steps(o), (unsigned)gc->steps);
        if (getenv("MM_TEST_VERBOSE"))
            fprintf(stderr, "golden %-16s worst relative deviation so far %.3g\n", gc->name, worst);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    if (getenv("MM_TEST_VERBOSE")) fprintf(stderr, "golden: worst relative deviation %.3g\n", worst);
    free(g);
}

START_TEST(golden_matches_pytorch) { run_golden(); }
END_TEST

/* The portable loops (MM_OPT_SIMD=0) and the SIMD ones give bit-identical
 * weights. Runs the same training in a forked child with SIMD off. Tensor
 * sizes are chosen to exercise the vector tails. */
static void simd_sequence(float *out, size_t count) {
    static const mm_optim_kind kinds[] = {MM_OPTIM_SGD, MM_OPTIM_SGD, MM_OPTIM_ADAM,
                                          MM_OPTIM_ADAMW};
    size_t pos = 0;
    for (size_t k = 0; k < 4; k++) {
        mm_model *m = small_model("13-37-21-5", 5 + k);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, kinds[k]));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, 0.05));
        if (k == 0) MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_CLIP_NORM, 0.5));
        if (k == 1) {
            MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
            MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_NESTEROV, 1));
        }
        float x[7 * 13];
        int32_t y[7];
        for (int s = 0; s < 20; s++) {
            mm_test_fill(x, 7 * 13, 100 + s, -2, 2);
            for (int i = 0; i < 7; i++) y[i] = (int32_t)((s + i) % 5);
            MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1 + (size_t)s % 7, NULL));
        }
        pos += get_params(m, out + pos);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    ck_assert_uint_eq(pos, count);
}

START_TEST(simd_and_portable_loops_agree) {
    mm_model *probe = small_model("13-37-21-5", 0);
    size_t count = 4 * get_params(probe, NULL);
    mm_model_free(probe);
    float *mine = malloc(count * sizeof *mine), *theirs = malloc(count * sizeof *theirs);
    int fds[2];
    ck_assert(pipe(fds) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        setenv("MM_OPT_SIMD", "0", 1);
        simd_sequence(theirs, count);
        size_t off = 0, bytes = count * sizeof(float);
        while (off < bytes) {
            ssize_t w = write(fds[1], (char *)theirs + off, bytes - off);
            if (w <= 0) _exit(2);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    size_t off = 0, bytes = count * sizeof(float);
    while (off < bytes) {
        ssize_t r = read(fds[0], (char *)theirs + off, bytes - off);
        ck_assert_msg(r > 0, "child died");
        off += (size_t)r;
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    simd_sequence(mine, count);
    ck_assert_msg(memcmp(mine, theirs, count * sizeof(float)) == 0,
                  "portable and SIMD loops differ (max diff %g)",
                  mm_test_max_abs_diff(mine, theirs, count));
    free(mine);
    free(theirs);
}
END_TEST

/* ---- schedules --------------------------------------------------------- */

static double closed_form(int sched, double lr, double gamma, double step_size, double warmup,
                          double total, double min_lr, double s) {
    switch (sched) {
    case MM_SCHEDULE_STEP: return lr * pow(gamma, floor(s / step_size));
    case MM_SCHEDULE_EXPONENTIAL: return lr * pow(gamma, s);
    case MM_SCHEDULE_COSINE:
        if (s < warmup) return lr * (s + 1) / warmup;
        if (total == 0) return lr;
        if (s >= total) return min_lr;
        return min_lr + 0.5 * (lr - min_lr) * (1 + cos(M_PI * (s - warmup) / (total - warmup)));
    default: return lr;
    }
}

START_TEST(schedules_follow_closed_forms) {
    struct {
        int sched;
        double gamma, step_size, warmup, total, min_lr;
    } cases[] = {
        {MM_SCHEDULE_CONSTANT, 0.1, 1000, 0, 0, 0},   {MM_SCHEDULE_STEP, 0.5, 4, 0, 0, 0},
        {MM_SCHEDULE_EXPONENTIAL, 0.9, 1000, 0, 0, 0}, {MM_SCHEDULE_COSINE, 0.1, 1000, 3, 10, 0.001},
        {MM_SCHEDULE_COSINE, 0.1, 1000, 0, 7, 0},      {MM_SCHEDULE_COSINE, 0.1, 1000, 4, 0, 0},
        {MM_SCHEDULE_COSINE, 0.1, 1000, 5, 3, 0.002},
    };
    const double lr = 0.05;
    float x[3] = {0.5f, -0.25f, 1.0f};
    int32_t y = 1;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mm_model *m = small_model("3-2", 3);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, lr));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SCHEDULE, cases[c].sched));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_GAMMA, cases[c].gamma));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_STEP_SIZE, cases[c].step_size));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WARMUP_STEPS, cases[c].warmup));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_TOTAL_STEPS, cases[c].total));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MIN_LR, cases[c].min_lr));
        for (int s = 0; s < 14; s++) {
            double want = closed_form(cases[c].sched, lr, cases[c].gamma, cases[c].step_size,
                                      cases[c].warmup, cases[c].total, cases[c].min_lr, s);
            double got = mm_optimizer_current_lr(o);
            ck_assert_msg(fabs(got - want) <= 1e-15 + 1e-12 * want,
                          "case %zu step %d: lr %.17g, want %.17g", c, s, got, want);
            MM_ASSERT_OK(mm_optimizer_step(o, x, &y, NULL, 1, NULL));
        }
        mm_optimizer_free(o);
        mm_model_free(m);
    }
}
END_TEST

/* With total_steps 0, fit derives the cosine horizon so the decay ends with
 * the fit; online steps afterwards stay at min_lr. */
START_TEST(cosine_horizon_from_fit) {
    mm_model *m = small_model("4-8-3", 4);
    mm_dataset *ds = blob_dataset(40, 4, 3, 4);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SCHEDULE, MM_SCHEDULE_COSINE));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WARMUP_STEPS, 2));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MIN_LR, 1e-4));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 16)); /* 3 batches */
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 4));
    ck_assert(mm_optimizer_current_lr(o) == 1e-3 / 2);
    mm_fit_progress pr;
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, &pr));
    ck_assert_uint_eq(mm_optimizer_steps(o), 12);
    ck_assert_uint_eq(pr.step, 12);
    /* last step used lr at step 11 of a 12-step horizon */
    double want = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + cos(M_PI * 9.0 / 10.0));
    ck_assert_msg(fabs(pr.learning_rate - want) < 1e-15, "lr %.17g want %.17g", pr.learning_rate,
                  want);
    ck_assert(mm_optimizer_current_lr(o) == 1e-4);
    mm_optimizer_free(o);
    mm_dataset_free(ds);
    mm_model_free(m);
}
END_TEST

/* ---- numeric guards ---------------------------------------------------- */

START_TEST(nan_input_changes_nothing) {
    for (int kind = 1; kind <= 3; kind++) {
        mm_model *m = small_model("4-6-3", 8);
        size_t np = get_params(m, NULL);
        float *before = malloc(np * sizeof *before), *after = malloc(np * sizeof *after);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, (mm_optim_kind)kind));
        float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, NAN, 0.7f, 0.8f};
        int32_t y[2] = {0, 2};
        MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1, NULL)); /* first sample is fine */
        get_params(m, before);
        double loss = 0;
        MM_ASSERT_STATUS(mm_optimizer_step(o, x, y, NULL, 2, &loss), MM_E_NUMERIC);
        ck_assert(strstr(mm_last_error_message(), "sample 1"));
        x[5] = INFINITY;
        MM_ASSERT_STATUS(mm_optimizer_step(o, x, y, NULL, 2, &loss), MM_E_NUMERIC);
        get_params(m, after);
        ck_assert(memcmp(before, after, np * sizeof(float)) == 0);
        ck_assert_uint_eq(mm_optimizer_steps(o), 1);
        mm_optimizer_free(o);
        mm_model_free(m);
        free(before);
        free(after);
    }
}
END_TEST

/* A finite loss with an infinite gradient: an input of 3e38 whose weight is
 * 0 leaves the forward pass finite, but dW = sum dz * x overflows. The
 * update must be refused (with and without clipping) and must not touch
 * weights or optimizer state: the later trajectory equals one that never saw
 * the bad batch. */
START_TEST(nonfinite_gradient_is_refused) {
    for (int clip = 0; clip <= 1; clip++)
        for (int kind = 1; kind <= 3; kind++) {
            mm_model *a, *b;
            MM_ASSERT_OK(mm_model_create(&a, 2, 0));
            MM_ASSERT_OK(mm_model_add_dense(a, 1, MM_ACT_IDENTITY));
            MM_ASSERT_OK(mm_model_set_loss(a, MM_LOSS_MSE));
            float w[2] = {1.0f, 0.0f}, bias = 1000.0f;
            MM_ASSERT_OK(mm_model_set_weights(a, 0, w, 2, &bias, 1));
            MM_ASSERT_OK(mm_model_clone(a, &b));
            mm_optimizer *oa, *ob;
            MM_ASSERT_OK(mm_optimizer_create(&oa, a, (mm_optim_kind)kind));
            MM_ASSERT_OK(mm_optimizer_create(&ob, b, (mm_optim_kind)kind));
            if (kind == MM_OPTIM_SGD) {
                MM_ASSERT_OK(mm_optimizer_set(oa, MM_OPT_MOMENTUM, 0.9));
                MM_ASSERT_OK(mm_optimizer_set(ob, MM_OPT_MOMENTUM, 0.9));
            }
            if (clip) {
                MM_ASSERT_OK(mm_optimizer_set(oa, MM_OPT_CLIP_NORM, 1.0));
                MM_ASSERT_OK(mm_optimizer_set(ob, MM_OPT_CLIP_NORM, 1.0));
            }
            /* the second input stays 0 in good samples, so its weight stays 0 */
            float good[2] = {0.5f, 0.0f}, t = 0.0f;
            float bad[4] = {1.0f, 3e38f, 1.0f, 3e38f}, tb[2] = {0, 0};
            MM_ASSERT_OK(mm_optimizer_step(oa, good, NULL, &t, 1, NULL));
            MM_ASSERT_OK(mm_optimizer_step(ob, good, NULL, &t, 1, NULL));
            float pa[3], pb[3];
            get_params(a, pa);
            double loss;
            MM_ASSERT_STATUS(mm_optimizer_step(oa, bad, NULL, tb, 2, &loss), MM_E_NUMERIC);
            ck_assert_msg(isfinite(loss), "the loss itself should be finite here");
            get_params(a, pb);
            ck_assert(memcmp(pa, pb, sizeof pa) == 0);
            ck_assert_uint_eq(mm_optimizer_steps(oa), 1);
            for (int s = 0; s < 3; s++) {
                MM_ASSERT_OK(mm_optimizer_step(oa, good, NULL, &t, 1, NULL));
                MM_ASSERT_OK(mm_optimizer_step(ob, good, NULL, &t, 1, NULL));
            }
            get_params(a, pa);
            get_params(b, pb);
            ck_assert_msg(memcmp(pa, pb, sizeof pa) == 0, "kind %d clip %d: state polluted", kind,
                          clip);
            mm_optimizer_free(oa);
            mm_optimizer_free(ob);
            mm_model_free(a);
            mm_model_free(b);
        }
}
END_TEST

START_TEST(nesterov_needs_momentum) {
    mm_model *m = small_model("3-2", 2);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_NESTEROV, 1)); /* any order is fine */
    float x[3] = {1, 2, 3};
    int32_t y = 0;
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, &y, NULL, 1, NULL), MM_E_STATE);
    ck_assert(strstr(mm_last_error_message(), "momentum"));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.5));
    MM_ASSERT_OK(mm_optimizer_step(o, x, &y, NULL, 1, NULL));
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

START_TEST(model_change_is_detected) {
    mm_model *m = small_model("3-4", 2);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_IDENTITY));
    float x[3] = {1, 2, 3};
    int32_t y = 0;
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, &y, NULL, 1, NULL), MM_E_STATE);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* Changing the learning rate between steps takes effect at once. */
START_TEST(settings_change_between_steps) {
    mm_model *a = small_model("3-2", 6), *b;
    MM_ASSERT_OK(mm_model_clone(a, &b));
    mm_optimizer *oa, *ob;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_create(&ob, b, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(oa, MM_OPT_LEARNING_RATE, 0.3));
    float x[3] = {1, -1, 0.5f};
    int32_t y = 1;
    MM_ASSERT_OK(mm_optimizer_step(oa, x, &y, NULL, 1, NULL));
    MM_ASSERT_OK(mm_optimizer_step(ob, x, &y, NULL, 1, NULL));
    float pa[8], pb[8];
    get_params(a, pa);
    get_params(b, pb);
    ck_assert(memcmp(pa, pb, sizeof pa) != 0);
    ck_assert(mm_optimizer_current_lr(oa) == 0.3);
    mm_optimizer_free(oa);
    mm_optimizer_free(ob);
    mm_model_free(a);
    mm_model_free(b);
}
END_TEST

/* ---- fit --------------------------------------------------------------- */

typedef struct fit_log {
    int batches, epoch_ends;
    int cancel_at_batch;  /* cancel when this many batches have been seen (0 = never) */
    int cancel_at_epoch;  /* cancel at this EPOCH_END (1-based count, 0 = never) */
    uint64_t last_step;
    int bad;
    mm_model *model;
    float *snapshot; /* params at the end of epoch 0 */
    double val_loss[64];
} fit_log;

static int fit_cb(const mm_fit_progress *p, void *user) {
    fit_log *log = user;
    if (p->struct_size != sizeof(mm_fit_progress)) log->bad++;
    if (p->step < log->last_step) log->bad++;
    log->last_step = p->step;
    if (p->event == MM_FIT_BATCH) {
        log->batches++;
        if (p->batch < 1 || p->batch > p->batches) log->bad++;
        if (!isfinite(p->train_loss) || !(p->train_accuracy >= 0 && p->train_accuracy <= 1))
            log->bad++;
        if (!isnan(p->val_loss)) log->bad++;
        return log->cancel_at_batch && log->batches == log->cancel_at_batch;
    }
    if (p->epoch < 64) log->val_loss[p->epoch] = p->val_loss;
    if (p->epoch == 0 && log->snapshot) get_params(log->model, log->snapshot);
    log->epoch_ends++;
    if (p->batch != p->batches) log->bad++;
    return log->cancel_at_epoch && log->epoch_ends == log->cancel_at_epoch;
}

START_TEST(fit_reports_progress) {
    mm_model *m = small_model("4-8-3", 11);
    mm_dataset *ds = blob_dataset(50, 4, 3, 11);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 8)); /* 7 batches, the last of 2 */
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 3));
    fit_log log = {0};
    mm_fit_progress pr;
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, fit_cb, &log, &pr));
    ck_assert_int_eq(log.bad, 0);
    ck_assert_int_eq(log.batches, 21);
    ck_assert_int_eq(log.epoch_ends, 3);
    ck_assert_int_eq(pr.event, MM_FIT_EPOCH_END);
    ck_assert_uint_eq(pr.epoch, 2);
    ck_assert_uint_eq(pr.epochs, 3);
    ck_assert_uint_eq(pr.batches, 7);
    ck_assert_uint_eq(pr.step, 21);
    ck_assert(isnan(pr.val_loss) && isnan(pr.val_accuracy));
    ck_assert(pr.elapsed_seconds >= 0 && pr.samples_per_second >= 0);
    ck_assert_uint_eq(mm_optimizer_steps(o), 21);
    /* lineage records the fit */
    const char *lin = mm_model_lineage(m);
    ck_assert_ptr_nonnull(strstr(lin, "\"fit\""));
    ck_assert_ptr_nonnull(strstr(lin, "\"optimizer\":\"sgd\""));
    ck_assert_ptr_nonnull(strstr(lin, "\"samples\":150"));
    /* a batch larger than the set is one batch per epoch */
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 1000));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 1));
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, &pr));
    ck_assert_uint_eq(pr.batches, 1);
    ck_assert_uint_eq(mm_optimizer_steps(o), 22);
    mm_optimizer_free(o);
    mm_dataset_free(ds);
    mm_model_free(m);
}
END_TEST

START_TEST(fit_argument_errors) {
    mm_model *m = small_model("4-8-3", 12);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    mm_dataset *good = blob_dataset(20, 4, 3, 1), *wide = blob_dataset(20, 5, 3, 1);
    float x[8] = {0};
    int32_t bad_labels[2] = {0, 7};
    mm_dataset *nolabels, *badlabels;
    MM_ASSERT_OK(mm_dataset_create(&nolabels, x, NULL, 2, 4));
    MM_ASSERT_OK(mm_dataset_create(&badlabels, x, bad_labels, 2, 4));
    MM_ASSERT_STATUS(mm_optimizer_fit(NULL, good, NULL, NULL, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, NULL, NULL, NULL, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, wide, NULL, NULL, NULL, NULL), MM_E_SHAPE);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, good, wide, NULL, NULL, NULL), MM_E_SHAPE);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, nolabels, NULL, NULL, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, good, nolabels, NULL, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_fit(o, badlabels, NULL, NULL, NULL, NULL), MM_E_OUT_OF_RANGE);
    ck_assert_uint_eq(mm_optimizer_steps(o), 0);
    /* MSE models train on one-hot labels */
    MM_ASSERT_OK(mm_model_set_loss(m, MM_LOSS_MSE));
    MM_ASSERT_OK(mm_optimizer_fit(o, good, good, NULL, NULL, NULL));
    ck_assert_uint_eq(mm_optimizer_steps(o), 1);
    mm_dataset_free(good);
    mm_dataset_free(wide);
    mm_dataset_free(nolabels);
    mm_dataset_free(badlabels);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

START_TEST(fit_cancel_by_callback) {
    mm_model *m = small_model("4-8-3", 13);
    mm_dataset *ds = blob_dataset(64, 4, 3, 13);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAMW));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 8));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 5));
    fit_log log = {0};
    log.cancel_at_batch = 3;
    mm_fit_progress pr;
    MM_ASSERT_STATUS(mm_optimizer_fit(o, ds, NULL, fit_cb, &log, &pr), MM_E_CANCELLED);
    ck_assert_uint_eq(mm_optimizer_steps(o), 3); /* the updates done so far stay */
    ck_assert_uint_eq(pr.batch, 3);
    ck_assert_int_eq(log.epoch_ends, 0);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "cancelled"));
    /* cancel at the end of the second epoch */
    memset(&log, 0, sizeof log);
    log.cancel_at_epoch = 2;
    MM_ASSERT_STATUS(mm_optimizer_fit(o, ds, NULL, fit_cb, &log, &pr), MM_E_CANCELLED);
    ck_assert_uint_eq(mm_optimizer_steps(o), 3 + 16);
    ck_assert_int_eq(log.epoch_ends, 2);
    mm_optimizer_free(o);
    mm_dataset_free(ds);
    mm_model_free(m);
}
END_TEST

/* Validation labels are the training labels rotated by one class, so every
 * epoch that fits the training set better makes the validation loss worse:
 * the best epoch is the first, and patience 2 stops after epoch 2. */
START_TEST(early_stopping_restores_best) {
    for (int restore = 0; restore <= 1; restore++) {
        mm_model *m = small_model("4-16-3", 21);
        const size_t n = 90;
        float *x = malloc(n * 4 * sizeof *x);
        int32_t *y = malloc(n * sizeof *y), *yv = malloc(n * sizeof *yv);
        make_blobs(x, y, n, 4, 3, 21);
        for (size_t i = 0; i < n; i++) yv[i] = (y[i] + 1) % 3;
        mm_dataset *train, *val;
        MM_ASSERT_OK(mm_dataset_create(&train, x, y, n, 4));
        MM_ASSERT_OK(mm_dataset_create(&val, x, yv, n, 4));
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.02));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 10));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 30));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_PATIENCE, 2));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_RESTORE_BEST, restore));
        size_t np = get_params(m, NULL);
        fit_log log = {0};
        log.model = m;
        log.snapshot = malloc(np * sizeof(float));
        mm_fit_progress pr;
        MM_ASSERT_OK(mm_optimizer_fit(o, train, val, fit_cb, &log, &pr));
        ck_assert_int_eq(log.bad, 0);
        ck_assert_msg(log.epoch_ends == 3, "stopped after %d epochs (val %g %g %g %g)",
                      log.epoch_ends, log.val_loss[0], log.val_loss[1], log.val_loss[2],
                      log.val_loss[3]);
        ck_assert_uint_eq(pr.epoch, 2);
        ck_assert(isfinite(pr.val_loss) && isfinite(pr.val_accuracy));
        ck_assert(log.val_loss[1] >= log.val_loss[0] && log.val_loss[2] >= log.val_loss[0]);
        float *now = malloc(np * sizeof(float));
        get_params(m, now);
        if (restore)
            ck_assert(memcmp(now, log.snapshot, np * sizeof(float)) == 0);
        else
            ck_assert(memcmp(now, log.snapshot, np * sizeof(float)) != 0);
        ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "\"stopped\":\"early\""));
        free(now);
        free(log.snapshot);
        free(x);
        free(y);
        free(yv);
        mm_dataset_free(train);
        mm_dataset_free(val);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
}
END_TEST

START_TEST(fit_is_deterministic) {
    float *p[3];
    size_t np = 0;
    for (int run = 0; run < 3; run++) {
        mm_model *m = small_model("4-8-3", 31);
        mm_dataset *ds = blob_dataset(37, 4, 3, 31);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 5));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 2));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SEED, run == 2 ? 8 : 7));
        MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL));
        np = get_params(m, NULL);
        p[run] = malloc(np * sizeof(float));
        get_params(m, p[run]);
        mm_optimizer_free(o);
        mm_dataset_free(ds);
        mm_model_free(m);
    }
    ck_assert(memcmp(p[0], p[1], np * sizeof(float)) == 0);
    ck_assert(memcmp(p[0], p[2], np * sizeof(float)) != 0);
    for (int run = 0; run < 3; run++) free(p[run]);
}
END_TEST

START_TEST(fit_learns_separable_problem) {
    for (int kind = 1; kind <= 3; kind++) {
        mm_model *m = small_model("6-16-4", 41);
        mm_dataset *train = blob_dataset(400, 6, 4, 41), *test = blob_dataset(200, 6, 4, 42);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, (mm_optim_kind)kind));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, kind == MM_OPTIM_SGD ? 0.1 : 0.01));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 16));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 10));
        mm_fit_progress pr;
        MM_ASSERT_OK(mm_optimizer_fit(o, train, test, NULL, NULL, &pr));
        double acc;
        MM_ASSERT_OK(mm_model_evaluate(m, mm_dataset_features(test), mm_dataset_labels(test), NULL,
                                       200, NULL, &acc));
        ck_assert_msg(acc >= 0.95, "kind %d: test accuracy %.3f", kind, acc);
        ck_assert(pr.val_accuracy == acc);
        ck_assert_msg(pr.train_accuracy >= 0.9, "train accuracy %.3f", pr.train_accuracy);
        mm_optimizer_free(o);
        mm_dataset_free(train);
        mm_dataset_free(test);
        mm_model_free(m);
    }
}
END_TEST

/* The fused plain-SGD path checks deltas instead of gradients: an update
 * that would blow the weights up is refused and leaves them unchanged, and
 * an ordinary step equals W - lr * gradient from mm_model_backward. */
START_TEST(fused_sgd_guards_and_matches) {
    mm_model *m, *ref;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "2-2:identity", 1));
    float w0[4] = {0, 0, 0, 0}, b0[2] = {0, 0};
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w0, 4, b0, 2));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1000));
    float x[2] = {1e30f, 0};
    int32_t y = 1;
    MM_ASSERT_STATUS(mm_optimizer_step(o, x, &y, NULL, 1, NULL), MM_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "overflow"));
    float w[4], b[2];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 4, b, 2));
    ck_assert_mem_eq(w, w0, sizeof w);
    ck_assert_uint_eq(mm_optimizer_steps(o), 0);
    mm_optimizer_free(o);
    mm_model_free(m);

    MM_ASSERT_OK(mm_model_create_from_spec(&m, "6-5-3:tanh", 3));
    MM_ASSERT_OK(mm_model_clone(m, &ref));
    float xs[12];
    int32_t ys[2] = {0, 2};
    mm_test_fill(xs, 12, 5, -1, 1);
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.1));
    MM_ASSERT_OK(mm_optimizer_step(o, xs, ys, NULL, 2, NULL));
    MM_ASSERT_OK(mm_model_backward(ref, xs, ys, NULL, 2, NULL));
    for (size_t l = 0; l < 2; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(ref, l, NULL, &in, &out, NULL));
        float rw[30], rb[5], gw[30], gb[5], fw[30], fb[5];
        MM_ASSERT_OK(mm_model_get_weights(ref, l, rw, in * out, rb, out));
        MM_ASSERT_OK(mm_model_get_gradients(ref, l, gw, in * out, gb, out));
        MM_ASSERT_OK(mm_model_get_weights(m, l, fw, in * out, fb, out));
        for (size_t i = 0; i < in * out; i++)
            ck_assert_float_eq_tol(fw[i], rw[i] - 0.1f * gw[i], 1e-6f);
        for (size_t i = 0; i < out; i++) ck_assert_float_eq_tol(fb[i], rb[i] - 0.1f * gb[i], 1e-6f);
    }
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_model_free(ref);
}
END_TEST

/* ---- L2-SP ------------------------------------------------------------- */

/* Gradients of every layer (W then b) into buf. */
static void get_grads(const mm_model *m, float *buf) {
    size_t off = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        MM_ASSERT_OK(mm_model_get_gradients(m, l, buf + off, in * out, buf + off + in * out, out));
        off += in * out + out;
    }
}

/* One SGD step with L2-SP against its closed form
 * w2 = w1 - lr * (g(w1) + alpha * (w1 - w0)), g from a separate
 * mm_model_backward at w1; for SGD and Adam the gradient buffers hold that
 * penalised gradient; a strong pull brings the weights back towards w0;
 * no anchor -> MM_E_STATE. */
START_TEST(l2sp_closed_form) {
    const size_t dim = 6, n = 8;
    float x[8 * 6];
    int32_t y[8];
    make_blobs(x, y, n, dim, 3, 7);
    const double lr = 0.05, alpha = 0.7;
    for (int kind = MM_OPTIM_SGD; kind <= MM_OPTIM_ADAM; kind++) {
        mm_model *m = small_model("6-5-3:tanh", 11);
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, (mm_optim_kind)kind));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, lr));
        ck_assert_int_eq(mm_optimizer_has_anchor(o), 0);
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_L2SP, alpha));
        MM_ASSERT_STATUS(mm_optimizer_step(o, x, y, NULL, n, NULL), MM_E_STATE);
        ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "anchor"));
        const size_t np = get_params(m, NULL);
        float *w0 = malloc(np * sizeof *w0), *w1 = malloc(np * sizeof *w1);
        float *g = malloc(np * sizeof *g), *w2 = malloc(np * sizeof *w2);
        float *gp = malloc(np * sizeof *gp);
        get_params(m, w0);
        MM_ASSERT_OK(mm_optimizer_set_anchor(o));
        ck_assert_int_eq(mm_optimizer_has_anchor(o), 1);
        /* move away from the anchor without the penalty */
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_L2SP, 0));
        for (int i = 0; i < 3; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
        get_params(m, w1);
        ck_assert(mm_test_max_abs_diff(w0, w1, np) > 1e-3);
        MM_ASSERT_OK(mm_model_backward(m, x, y, NULL, n, NULL));
        get_grads(m, g);
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_L2SP, alpha));
        MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
        get_params(m, w2);
        get_grads(m, gp);
        for (size_t i = 0; i < np; i++) {
            const double want_g = (double)g[i] + alpha * ((double)w1[i] - (double)w0[i]);
            ck_assert_msg(fabs(gp[i] - want_g) < 1e-5, "param %zu: grad %g want %g", i, gp[i],
                          want_g);
            if (kind == MM_OPTIM_SGD) {
                const double want_w = (double)w1[i] - lr * want_g;
                ck_assert_msg(fabs(w2[i] - want_w) < 1e-5, "param %zu: w %g want %g", i, w2[i],
                              want_w);
            }
        }
        /* a strong pull wins over the data gradient */
        const double before = mm_test_max_abs_diff(w0, w2, np);
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_L2SP, 100));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, kind == MM_OPTIM_SGD ? 5e-3 : 1e-3));
        for (int i = 0; i < 400; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
        get_params(m, w2);
        const double after = mm_test_max_abs_diff(w0, w2, np);
        ck_assert_msg(after < 0.3 * before, "kind %d: %g -> %g", kind, before, after);
        mm_optimizer_clear_anchor(o);
        ck_assert_int_eq(mm_optimizer_has_anchor(o), 0);
        MM_ASSERT_STATUS(mm_optimizer_step(o, x, y, NULL, n, NULL), MM_E_STATE);
        free(w0);
        free(w1);
        free(w2);
        free(g);
        free(gp);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    MM_ASSERT_STATUS(mm_optimizer_set_anchor(NULL), MM_E_INVALID_ARGUMENT);
    mm_optimizer_clear_anchor(NULL);
    ck_assert_int_eq(mm_optimizer_has_anchor(NULL), 0);
}
END_TEST

/* An anchor with alpha 0 changes nothing (plain SGD stays on its fused
 * path, bit-identical); a structure change drops the anchor. */
START_TEST(l2sp_zero_is_plain_and_sync_drops) {
    float x[4 * 6];
    int32_t y[4];
    make_blobs(x, y, 4, 6, 3, 3);
    mm_model *a = small_model("6-5-3", 5), *b = small_model("6-5-3", 5);
    mm_optimizer *oa, *ob;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_create(&ob, b, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set_anchor(ob));
    for (int i = 0; i < 5; i++) {
        MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, 4, NULL));
        MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, 4, NULL));
    }
    const size_t np = get_params(a, NULL);
    float *pa = malloc(np * sizeof *pa), *pb = malloc(np * sizeof *pb);
    get_params(a, pa);
    get_params(b, pb);
    ck_assert(memcmp(pa, pb, np * sizeof *pa) == 0);
    MM_ASSERT_OK(mm_model_replace_head(b, 3, MM_ACT_IDENTITY, 9));
    MM_ASSERT_OK(mm_optimizer_sync(ob));
    ck_assert_int_eq(mm_optimizer_has_anchor(ob), 0);
    MM_ASSERT_OK(mm_optimizer_set(ob, MM_OPT_L2SP, 0.1));
    MM_ASSERT_STATUS(mm_optimizer_step(ob, x, y, NULL, 4, NULL), MM_E_STATE);
    MM_ASSERT_OK(mm_optimizer_set_anchor(ob));
    MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, 4, NULL));
    free(pa);
    free(pb);
    mm_optimizer_free(oa);
    mm_optimizer_free(ob);
    mm_model_free(a);
    mm_model_free(b);
}
END_TEST

/* ---- lineage of online steps ------------------------------------------ */

/* Occurrences of `needle` in `hay`. */
static size_t count_of(const char *hay, const char *needle) {
    size_t k = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) k++;
    return k;
}

#define ONLINE "\"op\":\"online_steps\""

/* N consecutive steps are one online_steps event (count N, first and last
 * sample position), not N events; batches count their samples. Before,
 * online steps left no lineage at all. */
START_TEST(online_steps_coalesce_in_lineage) {
    mm_model *m = small_model("4-6-3", 1);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.05));
    float x[8 * 4];
    int32_t y[8];
    make_blobs(x, y, 8, 4, 3, 2);
    for (int i = 0; i < 50; i++) MM_ASSERT_OK(mm_optimizer_step(o, x + (i % 8) * 4, y + i % 8, NULL, 1, NULL));
    const char *lin = mm_model_lineage(m);
    ck_assert_uint_eq(count_of(lin, "\"op\":"), 1);
    ck_assert_uint_eq(count_of(lin, ONLINE), 1);
    ck_assert_msg(strstr(lin, "\"optimizer\":\"sgd\",\"steps\":50,\"samples\":50,\"first\":0,"
                              "\"last\":49,\"lr\":0.05,\"last_time\":"), "%s", lin);
    ck_assert_ptr_null(strstr(lin, "lr_last")); /* constant schedule */
    /* the text is stable while nothing changes (readers share one copy) */
    ck_assert_ptr_eq(mm_model_lineage(m), lin);
    /* a batch of 3 is one step of 3 samples */
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 3, NULL));
    lin = mm_model_lineage(m);
    ck_assert_uint_eq(count_of(lin, ONLINE), 1);
    ck_assert_msg(strstr(lin, "\"steps\":51,\"samples\":53,\"first\":0,\"last\":52,"), "%s", lin);
    /* refused steps are not counted */
    float bad[4] = {1, NAN, 0, 0};
    MM_ASSERT_STATUS(mm_optimizer_step(o, bad, y, NULL, 1, NULL), MM_E_NUMERIC);
    ck_assert_msg(strstr(mm_model_lineage(m), "\"steps\":51,"), "%s", mm_model_lineage(m));
    /* a clone carries the run */
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(m, &c));
    ck_assert_str_eq(mm_model_lineage(c), mm_model_lineage(m));
    mm_model_free(c);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* A fit in between splits the steps into two runs (positions continue); a
 * settings change, a second optimizer and any other event end a run too;
 * a schedule's lr shows as lr_last. MM_OPT_LINEAGE 0 records nothing. */
START_TEST(online_runs_split_on_events_and_settings) {
    mm_model *m = small_model("4-6-3", 1);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.01));
    enum { n = 64 };
    float x[n * 4];
    int32_t y[n];
    make_blobs(x, y, n, 4, 3, 3);
    for (int i = 0; i < 10; i++) MM_ASSERT_OK(mm_optimizer_step(o, x + i * 4, y + i, NULL, 1, NULL));
    mm_dataset *ds = blob_dataset(n, 4, 3, 4);
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL));
    for (int i = 0; i < 7; i++) MM_ASSERT_OK(mm_optimizer_step(o, x + i * 4, y + i, NULL, 1, NULL));
    const char *lin = mm_model_lineage(m);
    ck_assert_uint_eq(count_of(lin, ONLINE), 2);
    const char *r1 = strstr(lin, "\"optimizer\":\"adam\",\"steps\":10,\"samples\":10,\"first\":0,\"last\":9,");
    const char *f = strstr(lin, "\"op\":\"fit\"");
    const char *r2 = strstr(lin, "\"steps\":7,\"samples\":7,\"first\":10,\"last\":16,");
    ck_assert_msg(r1 && f && r2 && r1 < f && f < r2, "%s", lin);
    /* a settings change starts a new run */
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.02));
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1, NULL));
    lin = mm_model_lineage(m);
    ck_assert_uint_eq(count_of(lin, ONLINE), 3);
    ck_assert_msg(strstr(lin, "\"steps\":1,\"samples\":1,\"first\":17,\"last\":17,\"lr\":0.02,"), "%s", lin);
    /* setting the same value again does not */
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.02));
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1, NULL));
    ck_assert_uint_eq(count_of(mm_model_lineage(m), ONLINE), 3);
    /* an event of the caller ends it */
    MM_ASSERT_OK(mm_model_add_lineage(m, "note", NULL));
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1, NULL));
    ck_assert_uint_eq(count_of(mm_model_lineage(m), ONLINE), 4);
    /* another optimizer: a new run, with its schedule's first and last lr */
    mm_optimizer *o2;
    MM_ASSERT_OK(mm_optimizer_create(&o2, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o2, MM_OPT_LEARNING_RATE, 0.1));
    MM_ASSERT_OK(mm_optimizer_set(o2, MM_OPT_SCHEDULE, MM_SCHEDULE_EXPONENTIAL));
    MM_ASSERT_OK(mm_optimizer_set(o2, MM_OPT_GAMMA, 0.5));
    for (int i = 0; i < 3; i++) MM_ASSERT_OK(mm_optimizer_step(o2, x, y, NULL, 1, NULL));
    lin = mm_model_lineage(m);
    ck_assert_uint_eq(count_of(lin, ONLINE), 5);
    ck_assert_msg(strstr(lin, "\"optimizer\":\"sgd\",\"steps\":3,\"samples\":3,\"first\":20,"
                              "\"last\":22,\"lr\":0.1,\"lr_last\":0.025,"), "%s", lin);
    /* not recorded when switched off */
    MM_ASSERT_OK(mm_optimizer_set(o2, MM_OPT_LINEAGE, 0));
    const size_t before = strlen(mm_model_lineage(m));
    for (int i = 0; i < 5; i++) MM_ASSERT_OK(mm_optimizer_step(o2, x, y, NULL, 1, NULL));
    ck_assert_uint_eq(strlen(mm_model_lineage(m)), before);
    double v;
    MM_ASSERT_OK(mm_optimizer_get(o2, MM_OPT_LINEAGE, &v));
    ck_assert(v == 0.0);
    mm_optimizer_free(o2);
    mm_optimizer_free(o);
    mm_dataset_free(ds);
    mm_model_free(m);
}
END_TEST

/* Save and load keep the run as one event, byte for byte; steps after the
 * load start a new run whose positions continue; the MM_OPT_LINEAGE
 * setting is not part of the saved optimizer state. */
START_TEST(online_runs_survive_save_load) {
    mm_model *m = small_model("4-6-3", 1);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    float x[4 * 4];
    int32_t y[4];
    make_blobs(x, y, 4, 4, 3, 5);
    for (int i = 0; i < 12; i++) MM_ASSERT_OK(mm_optimizer_step(o, x + (i % 4) * 4, y + i % 4, NULL, 1, NULL));
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    /* saving does not end the run */
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 1, NULL));
    ck_assert_uint_eq(count_of(mm_model_lineage(m), ONLINE), 1);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "\"steps\":13,"));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LINEAGE, 0));
    MM_ASSERT_OK(mm_optimizer_save(o, path));
    mm_model *back;
    MM_ASSERT_OK(mm_model_load(&back, path));
    ck_assert_str_eq(mm_model_lineage(back), mm_model_lineage(m));
    mm_optimizer *ob;
    MM_ASSERT_OK(mm_optimizer_load(&ob, back, path));
    double v;
    MM_ASSERT_OK(mm_optimizer_get(ob, MM_OPT_LINEAGE, &v));
    ck_assert(v == 1.0); /* the default again */
    for (int i = 0; i < 4; i++) MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, 1, NULL));
    const char *lin = mm_model_lineage(back);
    ck_assert_uint_eq(count_of(lin, ONLINE), 2);
    ck_assert_msg(strstr(lin, "\"steps\":13,\"samples\":13,\"first\":0,\"last\":12,"), "%s", lin);
    ck_assert_msg(strstr(lin, "\"steps\":4,\"samples\":4,\"first\":13,\"last\":16,"), "%s", lin);
    /* and that is what the next save writes */
    MM_ASSERT_OK(mm_model_save(back, path));
    mm_model *again;
    MM_ASSERT_OK(mm_model_load(&again, path));
    ck_assert_str_eq(mm_model_lineage(again), lin);
    unlink(path);
    free(path);
    mm_model_free(again);
    mm_optimizer_free(ob);
    mm_model_free(back);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* Readers on many threads see the same lineage text of an open run (its
 * text is built once, on demand, by whichever reader comes first). */
typedef struct {
    const mm_model *m;
    const char *want;
    int ok;
} lineage_reader;

static void *read_lineage(void *p) {
    lineage_reader *r = p;
    r->ok = 1;
    for (int i = 0; i < 200; i++) {
        const char *t = mm_model_lineage(r->m);
        if (!t || strcmp(t, r->want) != 0) r->ok = 0;
    }
    return NULL;
}

START_TEST(online_run_read_from_threads) {
    mm_model *m = small_model("4-6-3", 1);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    float x[4] = {1, 0, 0, 1};
    int32_t y = 1;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 3; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, &y, NULL, 1, NULL));
        mm_model *c;
        MM_ASSERT_OK(mm_model_clone(m, &c)); /* an independent copy of the expected text */
        pthread_t th[4];
        lineage_reader r[4];
        for (int t = 0; t < 4; t++) {
            r[t] = (lineage_reader){m, mm_model_lineage(c), 0};
            pthread_create(&th[t], NULL, read_lineage, &r[t]);
        }
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            ck_assert(r[t].ok);
        }
        mm_model_free(c);
    }
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "\"steps\":15,"));
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, names_round_trip);
    tcase_add_test(tc, value_names_of_every_object);
    tcase_add_test(tc, bounds_are_closed_ranges);
    tcase_add_test(tc, setters_check_every_range);
    tcase_add_test(tc, create_errors_and_null_safety);
    tcase_add_test(tc, golden_matches_pytorch);
    tcase_add_test(tc, simd_and_portable_loops_agree);
    tcase_add_test(tc, schedules_follow_closed_forms);
    tcase_add_test(tc, cosine_horizon_from_fit);
    tcase_add_test(tc, nan_input_changes_nothing);
    tcase_add_test(tc, nonfinite_gradient_is_refused);
    tcase_add_test(tc, nesterov_needs_momentum);
    tcase_add_test(tc, model_change_is_detected);
    tcase_add_test(tc, settings_change_between_steps);
    tcase_add_test(tc, fit_reports_progress);
    tcase_add_test(tc, fit_argument_errors);
    tcase_add_test(tc, fit_cancel_by_callback);
    tcase_add_test(tc, early_stopping_restores_best);
    tcase_add_test(tc, fit_is_deterministic);
    tcase_add_test(tc, fit_learns_separable_problem);
    tcase_add_test(tc, fused_sgd_guards_and_matches);
    tcase_add_test(tc, l2sp_closed_form);
    tcase_add_test(tc, l2sp_zero_is_plain_and_sync_drops);
    tcase_add_test(tc, online_steps_coalesce_in_lineage);
    tcase_add_test(tc, online_runs_split_on_events_and_settings);
    tcase_add_test(tc, online_runs_survive_save_load);
    tcase_add_test(tc, online_run_read_from_threads);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
