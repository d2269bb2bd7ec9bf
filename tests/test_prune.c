/* mm_pruner: exact masks for every criterion (against an independent
 * reference ranking), global vs layer-wise accounting, the optimizer never
 * reviving pruned weights (weights and state exactly 0, every algorithm and
 * the fused SGD path), the polynomial schedule and gradual pruning,
 * structured shrinking (identical outputs, training continues with the
 * remapped optimizer), save/load and clone of masked models, finalize, and
 * every error path. An internal suite: it reads masks and optimizer state
 * directly. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"
#include "model/mmfile.h"
#include "prune/pruner_internal.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static mm_model *model_from(const char *spec, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, spec, seed));
    return m;
}

static mm_pruner *pruner_new(mm_prune_criterion c, double sparsity) {
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, c));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, sparsity));
    return p;
}

static const uint8_t *wmask(const mm_model *m, size_t l) { return m->layers[l]->params[0].mask; }
static const uint8_t *bmask(const mm_model *m, size_t l) { return m->layers[l]->params[1].mask; }
static size_t wcount(const mm_model *m, size_t l) {
    return mm_param_count(&m->layers[l]->params[0]);
}

static size_t zeros_in(const uint8_t *mask, size_t n) {
    size_t z = 0;
    if (mask)
        for (size_t i = 0; i < n; i++) z += mask[i] == 0;
    return z;
}

static size_t pruned_weights(const mm_model *m, size_t l) {
    return zeros_in(wmask(m, l), wcount(m, l));
}

static size_t expect_count(double s, size_t n) { return (size_t)floor(s * (double)n + 0.5); }

/* Reference ranking: qsort of (score, index) pairs. */
typedef struct ref_key {
    double score;
    size_t index;
} ref_key;

static int ref_cmp(const void *a, const void *b) {
    const ref_key *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* expected mask (1 keep) for pruning the k lowest of scores[0..n) */
static uint8_t *ref_mask(const double *scores, size_t n, size_t k) {
    ref_key *keys = malloc(n * sizeof *keys);
    for (size_t i = 0; i < n; i++) keys[i] = (ref_key){scores[i], i};
    qsort(keys, n, sizeof *keys, ref_cmp);
    uint8_t *mask = malloc(n);
    memset(mask, 1, n);
    for (size_t i = 0; i < k; i++) mask[keys[i].index] = 0;
    free(keys);
    return mask;
}

static void check_masked_zero(const mm_model *m) {
    for (size_t l = 0; l < m->n_layers; l++)
        for (size_t j = 0; j < m->layers[l]->n_params; j++) {
            const mm_param *p = &m->layers[l]->params[j];
            if (!p->mask) continue;
            for (size_t i = 0; i < mm_param_count(p); i++)
                if (!p->mask[i])
                    ck_assert_msg(p->data[i] == 0.0f && !signbit(p->data[i]),
                                  "layer %zu %s[%zu] = %g is masked", l, p->name, i,
                                  (double)p->data[i]);
        }
}

static void make_data(float *x, int32_t *y, size_t n, size_t dim, size_t classes,
                      uint64_t seed) {
    mm_test_fill(x, n * dim, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % classes);
        x[i * dim + (size_t)y[i] % dim] += 2.0f;
    }
}

static bool lineage_has(const mm_model *m, const char *text) {
    return strstr(mm_model_lineage(m), text) != NULL;
}

/* ---- names, settings ------------------------------------------------------ */

START_TEST(names_and_settings) {
    static const char *names[] = {NULL,        "magnitude", "magnitude_global",  "random",
                                  "neuron_l1", "neuron_l2", "neuron_activation", "user",
                                  "neuron_user"};
    for (int c = 1; c <= 8; c++) {
        ck_assert_str_eq(mm_prune_criterion_name((mm_prune_criterion)c), names[c]);
        mm_prune_criterion back;
        MM_ASSERT_OK(mm_prune_criterion_from_name(names[c], &back));
        ck_assert_int_eq((int)back, c);
    }
    ck_assert_ptr_null(mm_prune_criterion_name((mm_prune_criterion)0));
    ck_assert_ptr_null(mm_prune_criterion_name((mm_prune_criterion)9));
    mm_prune_criterion c;
    MM_ASSERT_STATUS(mm_prune_criterion_from_name("taylor", &c), MM_E_INVALID_ARGUMENT);

    static const struct {
        const char *name;
        double lo, hi, def;
        int integer;
    } ps[] = {{NULL, 0, 0, 0, 0},
              {"sparsity", 0, 1, 0.5, 0},
              {"schedule", 0, 1, 0, 1},
              {"initial_sparsity", 0, 1, 0, 0},
              {"begin_step", 0, 1e12, 0, 1},
              {"end_step", 1, 1e12, 1000, 1},
              {"frequency", 1, 1e12, 100, 1},
              {"power", 1, 10, 3, 0},
              {"seed", 0, 9007199254740992.0, 0, 1},
              {"output_layer", 0, 1, 1, 1},
              {"sparse_format", 0, 2, 0, 1},
              {"reorder_neurons", 0, 1, 1, 1}};
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
    ck_assert_int_eq(mm_pruner_criterion(p), MM_PRUNE_MAGNITUDE);
    for (int i = 1; i <= 11; i++) {
        mm_prune_param pp = (mm_prune_param)i;
        ck_assert_str_eq(mm_prune_param_name(pp), ps[i].name);
        mm_prune_param back;
        MM_ASSERT_OK(mm_prune_param_from_name(ps[i].name, &back));
        ck_assert_int_eq((int)back, i);
        double lo, hi, v;
        MM_ASSERT_OK(mm_prune_param_bounds(pp, &lo, &hi));
        ck_assert(lo == ps[i].lo);
        if (i == MM_PRUNE_SPARSITY || i == MM_PRUNE_INITIAL_SPARSITY)
            ck_assert(hi < 1.0 && hi == nextafter(1.0, 0.0));
        else
            ck_assert(hi == ps[i].hi);
        MM_ASSERT_OK(mm_pruner_get(p, pp, &v));
        ck_assert(v == ps[i].def);
        MM_ASSERT_OK(mm_pruner_set(p, pp, lo));
        MM_ASSERT_OK(mm_pruner_set(p, pp, hi));
        MM_ASSERT_STATUS(mm_pruner_set(p, pp, lo - 1), MM_E_OUT_OF_RANGE);
        MM_ASSERT_STATUS(mm_pruner_set(p, pp, NAN), MM_E_OUT_OF_RANGE);
        if (ps[i].integer) MM_ASSERT_STATUS(mm_pruner_set(p, pp, lo + 0.5), MM_E_INVALID_ARGUMENT);
    }
    MM_ASSERT_STATUS(mm_pruner_set(p, MM_PRUNE_SPARSITY, 1.0), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "sparsity"));
    MM_ASSERT_STATUS(mm_pruner_set(p, MM_PRUNE_SPARSITY, -0.1), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_pruner_set(p, (mm_prune_param)0, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_pruner_set(p, (mm_prune_param)12, 0), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(mm_prune_param_name((mm_prune_param)12));
    MM_ASSERT_STATUS(mm_prune_param_bounds((mm_prune_param)12, NULL, NULL),
                     MM_E_INVALID_ARGUMENT);
    mm_prune_param pp;
    MM_ASSERT_STATUS(mm_prune_param_from_name("sparsity_target", &pp), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_pruner_set_layer_sparsity(p, 0, 1.0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_pruner_set_layer_sparsity(p, 0, -0.5), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_pruner_set_layer_sparsity(p, 0, NAN), MM_E_OUT_OF_RANGE);
    float s[2] = {1, 2};
    MM_ASSERT_STATUS(mm_pruner_set_scores(p, 0, s, 2), MM_E_UNSUPPORTED);
    mm_pruner_free(p);

    mm_pruner *bad;
    MM_ASSERT_STATUS(mm_pruner_create(&bad, (mm_prune_criterion)0), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(bad);
    MM_ASSERT_STATUS(mm_pruner_create(&bad, (mm_prune_criterion)9), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_pruner_create(NULL, MM_PRUNE_MAGNITUDE), MM_E_INVALID_ARGUMENT);
    mm_pruner_free(NULL);
    ck_assert_int_eq((int)mm_pruner_criterion(NULL), 0);
    MM_ASSERT_STATUS(mm_pruner_apply(NULL, NULL), MM_E_INVALID_ARGUMENT);

    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE_GLOBAL));
    MM_ASSERT_STATUS(mm_pruner_set_layer_sparsity(p, 0, 0.5), MM_E_UNSUPPORTED);
    mm_pruner_free(p);
}
END_TEST

/* ---- exact selection -------------------------------------------------------- */

/* mm_prune_select against a full sort, on inputs that break naive
 * quickselects: sorted, reversed, all equal, few distinct values, random. */
START_TEST(selection_matches_sort) {
    const size_t n = 5000;
    mm_prune_key *keys = malloc(n * sizeof *keys);
    ref_key *ref = malloc(n * sizeof *ref);
    float *vals = malloc(n * sizeof *vals);
    for (int pattern = 0; pattern < 5; pattern++) {
        mm_test_fill(vals, n, 100 + (uint64_t)pattern, -1.0f, 1.0f);
        for (size_t i = 0; i < n; i++) {
            float v = vals[i];
            if (pattern == 0) v = (float)i;
            if (pattern == 1) v = (float)(n - i);
            if (pattern == 2) v = 1.0f;
            if (pattern == 3) v = (float)((int)(v * 3.0f));
            vals[i] = v;
        }
        for (size_t k = 0; k <= n; k += (k < 10 ? 1 : 997)) {
            for (size_t i = 0; i < n; i++) {
                keys[i] = (mm_prune_key){vals[i], i};
                ref[i] = (ref_key){vals[i], i};
            }
            mm_prune_select(keys, n, k);
            qsort(ref, n, sizeof *ref, ref_cmp);
            uint8_t *got = calloc(n, 1), *want = calloc(n, 1);
            for (size_t i = 0; i < k; i++) {
                got[keys[i].index] = 1;
                want[ref[i].index] = 1;
            }
            ck_assert_msg(memcmp(got, want, n) == 0, "pattern %d k %zu", pattern, k);
            free(got);
            free(want);
        }
    }
    free(keys);
    free(ref);
    free(vals);
}
END_TEST

/* ---- unstructured criteria ---------------------------------------------- */

/* Layer-wise magnitude: every layer exactly round(s * count), the lowest
 * |w| with ties to the lower index, against the reference ranking. */
START_TEST(magnitude_layerwise_exact) {
    const double sparsities[] = {0.0, 0.1, 0.3, 0.5, 0.77, 0.9, 0.999};
    for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
        mm_model *m = model_from("13-7-5-3", 11);
        /* heavy ties in layer 1: only 5 distinct magnitudes */
        float w1[35], b1[5];
        for (size_t i = 0; i < 35; i++) w1[i] = (float)((int)(i % 5) - 2) * ((i & 1) ? 1.0f : -1.0f);
        for (size_t i = 0; i < 5; i++) b1[i] = 0.5f;
        MM_ASSERT_OK(mm_model_set_weights(m, 1, w1, 35, b1, 5));
        float *before[3];
        for (size_t l = 0; l < 3; l++) {
            size_t n = wcount(m, l);
            before[l] = malloc(n * sizeof(float));
            memcpy(before[l], m->layers[l]->params[0].data, n * sizeof(float));
        }
        mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, sparsities[si]);
        MM_ASSERT_OK(mm_pruner_apply(p, m));
        for (size_t l = 0; l < 3; l++) {
            size_t n = wcount(m, l);
            size_t k = expect_count(sparsities[si], n);
            double *sc = malloc(n * sizeof *sc);
            for (size_t i = 0; i < n; i++) sc[i] = fabs((double)before[l][i]);
            uint8_t *want = ref_mask(sc, n, k);
            if (k == 0) {
                ck_assert_ptr_null(wmask(m, l));
            } else {
                ck_assert_ptr_nonnull(wmask(m, l));
                ck_assert_uint_eq(pruned_weights(m, l), k);
                ck_assert_msg(memcmp(want, wmask(m, l), n) == 0, "layer %zu s=%g", l,
                              sparsities[si]);
            }
            ck_assert_ptr_null(bmask(m, l)); /* unstructured never masks biases */
            double sp;
            MM_ASSERT_OK(mm_model_layer_sparsity(m, l, &sp));
            ck_assert(sp >= (double)k / (double)n - 1e-12);
            free(sc);
            free(want);
            free(before[l]);
        }
        check_masked_zero(m);
        if (sparsities[si] > 0) ck_assert(lineage_has(m, "\"op\":\"prune\""));
        mm_pruner_free(p);
        mm_model_free(m);
    }
}
END_TEST

/* All weights equal: the first k indices go. */
START_TEST(ties_break_by_index) {
    mm_model *m = model_from("4-10-2", 1);
    float w[40], b[10] = {0};
    for (size_t i = 0; i < 40; i++) w[i] = (i & 1) ? 0.25f : -0.25f;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 40, b, 10));
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.3);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 0));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    for (size_t i = 0; i < 40; i++) ck_assert_int_eq(wmask(m, 0)[i], i >= 12);
    ck_assert_ptr_null(wmask(m, 1)); /* output layer excluded */
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

START_TEST(global_magnitude_exact) {
    mm_model *m = model_from("20-16-8-4", 5);
    /* make layer 1 small so that it loses more than the others */
    float w1[128], b1[8] = {0};
    MM_ASSERT_OK(mm_model_get_weights(m, 1, w1, 128, NULL, 0));
    for (size_t i = 0; i < 128; i++) w1[i] *= 0.05f;
    MM_ASSERT_OK(mm_model_set_weights(m, 1, w1, 128, b1, 8));
    size_t total = 0;
    double *all = malloc((320 + 128 + 32) * sizeof *all);
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; i < wcount(m, l); i++)
            all[total++] = fabs((double)m->layers[l]->params[0].data[i]);
    const double s = 0.6;
    size_t k = expect_count(s, total);
    uint8_t *want = ref_mask(all, total, k);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE_GLOBAL, s);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    size_t off = 0, pruned = 0;
    double sp[3];
    for (size_t l = 0; l < 3; l++) {
        size_t n = wcount(m, l);
        const uint8_t *mk = wmask(m, l);
        for (size_t i = 0; i < n; i++) ck_assert_int_eq(mk ? mk[i] : 1, want[off + i]);
        pruned += pruned_weights(m, l);
        off += n;
        MM_ASSERT_OK(mm_model_layer_sparsity(m, l, &sp[l]));
    }
    ck_assert_uint_eq(pruned, k); /* exact overall */
    ck_assert(sp[1] > 0.9 && sp[0] < s); /* per-layer counts differ */
    ck_assert(lineage_has(m, "magnitude_global"));
    check_masked_zero(m);

    /* output layer excluded: ranking over layers 0 and 1 only */
    mm_model *m2 = model_from("20-16-8-4", 5);
    mm_pruner_free(p);
    p = pruner_new(MM_PRUNE_MAGNITUDE_GLOBAL, 0.5);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 0));
    MM_ASSERT_OK(mm_pruner_apply(p, m2));
    ck_assert_ptr_null(wmask(m2, 2));
    ck_assert_uint_eq(pruned_weights(m2, 0) + pruned_weights(m2, 1), expect_count(0.5, 448));
    free(all);
    free(want);
    mm_pruner_free(p);
    mm_model_free(m);
    mm_model_free(m2);
}
END_TEST

START_TEST(per_layer_targets) {
    mm_model *m = model_from("10-8-6-4", 2);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.5);
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 0, 0.25));
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 1, 0.0)); /* untouched */
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 0, 0.75)); /* replaces */
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    ck_assert_uint_eq(pruned_weights(m, 0), 60);
    ck_assert_ptr_null(wmask(m, 1));
    ck_assert_uint_eq(pruned_weights(m, 2), 12);
    /* an explicit target on the output layer wins over output_layer = 0 */
    mm_model *m2 = model_from("10-8-6-4", 2);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 0));
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 2, 0.5));
    MM_ASSERT_OK(mm_pruner_apply(p, m2));
    ck_assert_uint_eq(pruned_weights(m2, 2), 12);
    /* a target for a layer the model lacks */
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 7, 0.5));
    mm_model *m3 = model_from("10-8-6-4", 2);
    MM_ASSERT_STATUS(mm_pruner_apply(p, m3), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "layer 7"));
    for (size_t l = 0; l < 3; l++) ck_assert_ptr_null(wmask(m3, l)); /* unchanged */
    mm_pruner_free(p);
    mm_model_free(m);
    mm_model_free(m2);
    mm_model_free(m3);
}
END_TEST

/* Masks only grow: pruning again to a lower target keeps the mask, to a
 * higher one adds to it. */
START_TEST(masks_are_monotone) {
    mm_model *m = model_from("12-9-3", 8);
    mm_pruner *p = pruner_new(MM_PRUNE_RANDOM, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    uint8_t first[108];
    memcpy(first, wmask(m, 0), 108);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.2));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    ck_assert(memcmp(first, wmask(m, 0), 108) == 0);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.8));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    ck_assert_uint_eq(pruned_weights(m, 0), expect_count(0.8, 108));
    for (size_t i = 0; i < 108; i++)
        if (!first[i]) ck_assert_int_eq(wmask(m, 0)[i], 0);
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

START_TEST(random_exact_and_seeded) {
    uint8_t masks[3][30 * 20];
    const double seeds[3] = {7, 7, 8};
    for (int r = 0; r < 3; r++) {
        mm_model *m = model_from("30-20-5", 3);
        mm_pruner *p = pruner_new(MM_PRUNE_RANDOM, 0.37);
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SEED, seeds[r]));
        MM_ASSERT_OK(mm_pruner_apply(p, m));
        ck_assert_uint_eq(pruned_weights(m, 0), expect_count(0.37, 600));
        ck_assert_uint_eq(pruned_weights(m, 1), expect_count(0.37, 100));
        memcpy(masks[r], wmask(m, 0), 600);
        /* the pruned set is not simply the smallest weights */
        mm_pruner_free(p);
        mm_model_free(m);
    }
    ck_assert(memcmp(masks[0], masks[1], 600) == 0);
    ck_assert(memcmp(masks[0], masks[2], 600) != 0);
}
END_TEST

START_TEST(user_scores) {
    mm_model *m = model_from("6-4-3", 4);
    mm_pruner *p = pruner_new(MM_PRUNE_USER, 0.5);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 0));
    /* no scores for layer 0 */
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "layer 0"));
    float s[24];
    for (size_t i = 0; i < 24; i++) s[i] = (float)((i * 7) % 24); /* a permutation */
    s[3] = NAN;
    MM_ASSERT_STATUS(mm_pruner_set_scores(p, 0, s, 24), MM_E_NUMERIC);
    s[3] = (float)((3 * 7) % 24);
    MM_ASSERT_STATUS(mm_pruner_set_scores(p, 0, NULL, 24), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_pruner_set_scores(p, 0, s, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_pruner_set_scores(p, 0, s, 23)); /* wrong length: found at apply */
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_SHAPE);
    MM_ASSERT_OK(mm_pruner_set_scores(p, 0, s, 24)); /* replaces */
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    for (size_t i = 0; i < 24; i++) ck_assert_int_eq(wmask(m, 0)[i], s[i] >= 12.0f);
    ck_assert_ptr_null(wmask(m, 1));
    /* with the output layer included, it needs scores too */
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_OUTPUT_LAYER, 1));
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_STATE);
    /* -inf and +inf are scores like any other */
    float s1[12];
    for (size_t i = 0; i < 12; i++) s1[i] = (i % 2) ? INFINITY : -INFINITY;
    MM_ASSERT_OK(mm_pruner_set_scores(p, 1, s1, 12));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    for (size_t i = 0; i < 12; i++) ck_assert_int_eq(wmask(m, 1)[i], (int)(i % 2));
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

/* ---- structured criteria -------------------------------------------------- */

/* 4 inputs, 4 hidden neurons whose L1 and L2 orders differ. */
static mm_model *norm_model(mm_activation hidden) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 4, 9));
    MM_ASSERT_OK(mm_model_add_dense(m, 4, hidden));
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_IDENTITY));
    const float w[16] = {3, 0, 0, 0,         /* L1 3,  L2 3     */
                         1, 1, 1, 1,         /* L1 4,  L2 2     */
                         -2, 2, -2, 2,       /* L1 8,  L2 4     */
                         0.5f, 0.5f, 0, 0};  /* L1 1,  L2 0.707 */
    const float b[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 16, b, 4));
    float w2[12], b2[3] = {0.5f, -0.5f, 0.25f};
    for (size_t i = 0; i < 12; i++) w2[i] = (float)i - 5.5f;
    MM_ASSERT_OK(mm_model_set_weights(m, 1, w2, 12, b2, 3));
    return m;
}

static void check_neurons(const mm_model *m, const int *pruned, size_t out) {
    const size_t in = m->layers[0]->in, out2 = m->layers[1]->out;
    for (size_t j = 0; j < out; j++) {
        ck_assert_int_eq(bmask(m, 0)[j], !pruned[j]);
        for (size_t i = 0; i < in; i++) ck_assert_int_eq(wmask(m, 0)[j * in + i], !pruned[j]);
        for (size_t o = 0; o < out2; o++) ck_assert_int_eq(wmask(m, 1)[o * out + j], !pruned[j]);
    }
    ck_assert_ptr_null(bmask(m, 1)); /* output neurons never go */
    check_masked_zero(m);
}

START_TEST(neuron_norms) {
    mm_model *m = norm_model(MM_ACT_RELU);
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L1, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    check_neurons(m, (const int[]){1, 0, 0, 1}, 4); /* L1 3 and 1 */
    ck_assert(lineage_has(m, "\"pruned_neurons\":2"));
    mm_pruner_free(p);
    mm_model_free(m);

    m = norm_model(MM_ACT_RELU);
    p = pruner_new(MM_PRUNE_NEURON_L2, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    check_neurons(m, (const int[]){0, 1, 0, 1}, 4); /* L2 2 and 0.707 */
    double sp;
    MM_ASSERT_OK(mm_model_layer_sparsity(m, 0, &sp));
    ck_assert(sp >= 0.5);
    mm_pruner_free(p);
    mm_model_free(m);

    m = norm_model(MM_ACT_RELU);
    p = pruner_new(MM_PRUNE_NEURON_USER, 0.25);
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_STATE);
    MM_ASSERT_OK(mm_pruner_set_scores(p, 0, (const float[]){5, 6, 1, 8}, 4));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    check_neurons(m, (const int[]){0, 0, 1, 0}, 4);
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

START_TEST(neuron_activation) {
    mm_model *m = norm_model(MM_ACT_RELU);
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_ACTIVATION, 0.5);
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "calibrate"));
    float x[8] = {1, 1, 1, 1, 2, 0, 0, 0};
    MM_ASSERT_STATUS(mm_pruner_calibrate(p, m, x, 0), MM_E_INVALID_ARGUMENT);
    float xnan[4] = {1, NAN, 0, 0};
    MM_ASSERT_STATUS(mm_pruner_calibrate(p, m, xnan, 1), MM_E_NUMERIC);
    /* calibrated on another shape */
    mm_model *other = model_from("4-5-3", 1);
    MM_ASSERT_OK(mm_pruner_calibrate(p, other, x, 2));
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "shape"));
    mm_model_free(other);
    /* hidden pre-activations: sample 1 (3.1, 4.2, 0.3, 1.4), sample 2 (6.1, 2.2, -3.7, 1.4);
     * relu means: 4.6, 3.2, 0.15, 1.4 -> prune neurons 2 and 3 */
    MM_ASSERT_OK(mm_pruner_calibrate(p, m, x, 2));
    ck_assert_msg(fabsf(p->cal_act[0][0] - 4.6f) < 1e-5f, "mean %g", (double)p->cal_act[0][0]);
    ck_assert(fabsf(p->cal_act[0][2] - 0.15f) < 1e-6f);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    check_neurons(m, (const int[]){0, 0, 1, 1}, 4);
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

START_TEST(structured_errors) {
    /* 3 hidden neurons, s = 0.9: round(2.7) = 3 = all of them */
    mm_model *m = model_from("5-3-2", 1);
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L1, 0.9);
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "layer 0"));
    ck_assert_ptr_null(wmask(m, 0));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.8)); /* round(2.4) = 2: fine */
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    ck_assert_uint_eq(zeros_in(bmask(m, 0), 3), 2);
    /* output neurons are never removed */
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 1, 0.5));
    MM_ASSERT_STATUS(mm_pruner_apply(p, m), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "output"));
    mm_pruner_free(p);
    mm_model_free(m);
    /* a single-layer model has no hidden neurons: nothing to do */
    m = model_from("5-2", 1);
    p = pruner_new(MM_PRUNE_NEURON_L2, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    ck_assert_ptr_null(wmask(m, 0));
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

/* ---- the optimizer honours masks ------------------------------------------- */

typedef struct opt_case {
    const char *name;
    mm_optim_kind kind;
    double momentum, nesterov, wd, clip;
    bool fused;
} opt_case;

static const opt_case opt_cases[] = {
    {"sgd", MM_OPTIM_SGD, 0, 0, 0, 0, true},
    {"sgd+clip", MM_OPTIM_SGD, 0, 0, 0, 0.5, false},
    {"sgd+wd", MM_OPTIM_SGD, 0, 0, 1e-2, 0, false},
    {"momentum", MM_OPTIM_SGD, 0.9, 0, 0, 0, false},
    {"nesterov+wd", MM_OPTIM_SGD, 0.9, 1, 1e-3, 0, false},
    {"adam", MM_OPTIM_ADAM, 0, 0, 0, 0, false},
    {"adam+l2", MM_OPTIM_ADAM, 0, 0, 1e-3, 0, false},
    {"adamw", MM_OPTIM_ADAMW, 0, 0, 1e-2, 0, false},
};

static mm_optimizer *make_opt(mm_model *m, const opt_case *c) {
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, c->kind));
    if (c->kind == MM_OPTIM_SGD) {
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.05));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, c->momentum));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_NESTEROV, c->nesterov));
    } else {
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.01));
    }
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, c->wd));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_CLIP_NORM, c->clip));
    return o;
}

/* weights and every state entry at masked positions are exactly +0 */
static void check_state_zero(const mm_optimizer *o, const char *what) {
    check_masked_zero(o->model);
    for (size_t i = 0; i < o->n_slots; i++) {
        const mm_opt_slot *s = &o->slots[i];
        const mm_param *p = mm_opt_slot_param(o, s);
        if (!p->mask || !o->has_state) continue;
        for (size_t k = 0; k < o->algo->n_state; k++) {
            if (!s->state[k]) continue;
            for (size_t e = 0; e < mm_param_count(p); e++)
                if (!p->mask[e])
                    ck_assert_msg(s->state[k][e] == 0.0f, "%s: state %zu of layer %zu %s[%zu] = %g",
                                  what, k, s->layer, p->name, e, (double)s->state[k][e]);
        }
    }
}

START_TEST(optimizer_never_revives) {
    const size_t n = 32, dim = 10;
    float x[32 * 10];
    int32_t y[32];
    make_data(x, y, n, dim, 4, 3);
    for (size_t c = 0; c < sizeof opt_cases / sizeof opt_cases[0]; c++) {
        const opt_case *oc = &opt_cases[c];
        for (int structured = 0; structured < 2; structured++) {
            mm_model *m = model_from("10-16-12-4", 21);
            mm_optimizer *o = make_opt(m, oc);
            /* train first so momentum / moments are non-zero everywhere */
            for (int t = 0; t < 5; t++) MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 8, NULL));
            mm_pruner *p = pruner_new(structured ? MM_PRUNE_NEURON_L2 : MM_PRUNE_MAGNITUDE, 0.5);
            MM_ASSERT_OK(mm_pruner_apply(p, m));
            float w_before[192];
            memcpy(w_before, m->layers[1]->params[0].data, sizeof w_before);
            for (int t = 0; t < 100; t++) {
                MM_ASSERT_OK(mm_optimizer_step(o, x + (size_t)(t % 4) * 8 * dim,
                                               y + (t % 4) * 8, NULL, (t % 3) ? 8 : 1, NULL));
                if (t % 25 == 0) check_state_zero(o, oc->name);
            }
            check_state_zero(o, oc->name);
            /* and the rest did train */
            size_t changed = 0;
            for (size_t i = 0; i < 192; i++)
                changed += m->layers[1]->params[0].data[i] != w_before[i];
            ck_assert_uint_eq(pruned_weights(m, 1), structured ? 144 : 96);
            const size_t live = 192 - pruned_weights(m, 1);
            ck_assert_msg(changed >= live / 3, "%s: only %zu of %zu weights changed", oc->name,
                          changed, live);
            mm_optimizer_free(o);
            mm_pruner_free(p);
            mm_model_free(m);
        }
    }
}
END_TEST

/* set_weights cannot revive a pruned weight either; fit's restore-best
 * re-applies masks added after the best epoch. */
START_TEST(set_weights_keeps_masks) {
    mm_model *m = model_from("6-4-2", 3);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    float w[24], b[4] = {1, 1, 1, 1};
    for (size_t i = 0; i < 24; i++) w[i] = 1.0f;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 24, b, 4));
    check_masked_zero(m);
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 24, NULL, 0));
    size_t zeros = 0;
    for (size_t i = 0; i < 24; i++) zeros += w[i] == 0.0f;
    ck_assert_uint_eq(zeros, 12);
    /* layer 0: 12 weights + 4 biases; layer 1: 8 - 4 masked weights, biases still 0 */
    ck_assert_uint_eq(mm_model_num_nonzero(m), 12 + 4 + 4);
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

/* ---- schedules --------------------------------------------------------------- */

static double closed_form(double si, double sf, double t0, double t1, double power, double t) {
    double tc = t < t0 ? t0 : (t > t1 ? t1 : t);
    if (tc == t0) return si; /* exactly s_i up to t0 */
    return sf + (si - sf) * pow(1.0 - (tc - t0) / (t1 - t0), power);
}

START_TEST(polynomial_schedule_values) {
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.9);
    double s;
    MM_ASSERT_OK(mm_pruner_sparsity_at(p, 12345, &s)); /* one shot: the target */
    ck_assert(s == 0.9);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_INITIAL_SPARSITY, 0.1));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, 100));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 1100));
    const double powers[] = {1, 2, 3, 5.5};
    for (size_t pi = 0; pi < 4; pi++) {
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_POWER, powers[pi]));
        for (uint64_t t = 0; t < 1300; t += 7) {
            MM_ASSERT_OK(mm_pruner_sparsity_at(p, t, &s));
            double want = closed_form(0.1, 0.9, 100, 1100, powers[pi], (double)t);
            ck_assert_msg(fabs(s - want) < 1e-15, "t=%llu: %.17g vs %.17g",
                          (unsigned long long)t, s, want);
        }
    }
    MM_ASSERT_OK(mm_pruner_sparsity_at(p, 0, &s));
    ck_assert(s == 0.1);
    MM_ASSERT_OK(mm_pruner_sparsity_at(p, 1100, &s));
    ck_assert(s == 0.9);
    MM_ASSERT_OK(mm_pruner_sparsity_at(p, UINT64_MAX, &s));
    ck_assert(s == 0.9);
    /* bad combinations */
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 100));
    MM_ASSERT_STATUS(mm_pruner_sparsity_at(p, 5, &s), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 200));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_INITIAL_SPARSITY, 0.95));
    MM_ASSERT_STATUS(mm_pruner_sparsity_at(p, 5, &s), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_pruner_sparsity_at(p, 5, NULL), MM_E_INVALID_ARGUMENT);
    mm_pruner_free(p);
}
END_TEST

/* Step by step: masks change only on schedule steps, to exactly
 * round(s_t * count) at the last one. */
START_TEST(gradual_masks_on_schedule) {
    const size_t n = 16, dim = 8;
    float x[16 * 8];
    int32_t y[16];
    make_data(x, y, n, dim, 3, 5);
    mm_model *m = model_from("8-20-10-3", 4);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.8);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_INITIAL_SPARSITY, 0.05));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, 3));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 20)); /* 17 not a multiple of 4 */
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_FREQUENCY, 4));
    MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 2, 0.5));
    MM_ASSERT_OK(mm_pruner_attach(p, o));
    double last_s = -1, last_s2 = -1;
    for (uint64_t t = 0; t < 30; t++) {
        ck_assert_uint_eq(mm_optimizer_steps(o), t);
        MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
        const bool sched = t >= 3 && t <= 20 && ((t - 3) % 4 == 0 || t == 20);
        if (sched) {
            MM_ASSERT_OK(mm_pruner_sparsity_at(p, t, &last_s));
            last_s2 = closed_form(0.05, 0.5, 3, 20, 3, (double)t);
        }
        for (size_t l = 0; l < 3; l++) {
            size_t want = 0;
            if (last_s >= 0) want = expect_count(l == 2 ? last_s2 : last_s, wcount(m, l));
            ck_assert_msg(pruned_weights(m, l) == want, "step %llu layer %zu: %zu pruned, want %zu",
                          (unsigned long long)t, l, pruned_weights(m, l), want);
        }
        check_state_zero(o, "gradual");
    }
    ck_assert_uint_eq(pruned_weights(m, 0), expect_count(0.8, 160));
    ck_assert_uint_eq(pruned_weights(m, 1), expect_count(0.8, 200));
    ck_assert_uint_eq(pruned_weights(m, 2), expect_count(0.5, 30));
    ck_assert(lineage_has(m, "\"mode\":\"gradual\""));
    ck_assert(lineage_has(m, "\"schedule\":\"polynomial\""));
    /* only one gradual record */
    const char *first = strstr(mm_model_lineage(m), "\"mode\":\"gradual\"");
    ck_assert_ptr_null(strstr(first + 1, "\"mode\":\"gradual\""));
    /* detach: no more pruning */
    MM_ASSERT_OK(mm_pruner_attach(NULL, o));
    ck_assert_ptr_null(p->opt);
    mm_pruner_free(p);
    MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

START_TEST(gradual_during_fit) {
    const size_t n = 256, dim = 12;
    float *x = malloc(n * dim * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    make_data(x, y, n, dim, 4, 9);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, n, dim));
    mm_model *m = model_from("12-32-16-4", 8);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 16));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 5)); /* 80 steps */
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE_GLOBAL, 0.9);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, 0));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 60));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_FREQUENCY, 10));
    MM_ASSERT_OK(mm_pruner_attach(p, o));
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL));
    size_t total = 0, pruned = 0;
    for (size_t l = 0; l < 3; l++) {
        total += wcount(m, l);
        pruned += pruned_weights(m, l);
    }
    ck_assert_uint_eq(pruned, expect_count(0.9, total));
    check_state_zero(o, "fit");
    double acc;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, NULL, n, NULL, &acc));
    ck_assert_msg(acc > 0.8, "accuracy %g after gradual pruning", acc);
    /* free the optimizer first: the pruner must notice */
    mm_optimizer_free(o);
    ck_assert_ptr_null(p->opt);
    mm_pruner_free(p);
    mm_dataset_free(ds);
    mm_model_free(m);
    free(x);
    free(y);
}
END_TEST

START_TEST(attach_errors) {
    mm_model *m = model_from("6-5-3", 1);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_ACTIVATION, 0.4);
    MM_ASSERT_STATUS(mm_pruner_attach(p, o), MM_E_STATE);
    ck_assert_ptr_null(o->hook.ctx);
    MM_ASSERT_STATUS(mm_pruner_attach(p, NULL), MM_E_INVALID_ARGUMENT);
    mm_pruner_free(p);
    p = pruner_new(MM_PRUNE_NEURON_L1, 0.95); /* all 5 neurons */
    MM_ASSERT_STATUS(mm_pruner_attach(p, o), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.4));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, 10));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 10));
    MM_ASSERT_STATUS(mm_pruner_attach(p, o), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_END_STEP, 20));
    MM_ASSERT_OK(mm_pruner_attach(p, o));
    ck_assert_ptr_eq(o->hook.ctx, p);
    /* attaching to another optimizer moves it */
    mm_optimizer *o2;
    MM_ASSERT_OK(mm_optimizer_create(&o2, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_pruner_attach(p, o2));
    ck_assert_ptr_null(o->hook.ctx);
    ck_assert_ptr_eq(o2->hook.ctx, p);
    /* a second pruner replaces the first on o2 */
    mm_pruner *q = pruner_new(MM_PRUNE_MAGNITUDE, 0.5);
    MM_ASSERT_OK(mm_pruner_attach(q, o2));
    ck_assert_ptr_null(p->opt);
    ck_assert_ptr_eq(o2->hook.ctx, q);
    mm_pruner_free(q); /* detaches */
    ck_assert_ptr_null(o2->hook.ctx);
    mm_pruner_free(p);
    mm_optimizer_free(o);
    mm_optimizer_free(o2);
    mm_model_free(m);
}
END_TEST

/* ---- finalize ---------------------------------------------------------------- */

static void forward(const mm_model *m, const float *x, size_t n, float *out) {
    MM_ASSERT_OK(mm_model_forward(m, x, n, out));
}

/* Shrinking gives the masked model's outputs, for relu and sigmoid hidden
 * layers (sigmoid(0) = 0.5 is folded into the next bias). */
START_TEST(structured_shrink_same_outputs) {
    const char *specs[] = {"16-24-12-5:relu", "16-24-12-5:sigmoid", "16-24-12-5:tanh"};
    const size_t n = 20, dim = 16;
    float x[20 * 16];
    mm_test_fill(x, n * dim, 77, -2.0f, 2.0f);
    for (size_t si = 0; si < 3; si++) {
        mm_model *m = model_from(specs[si], 12);
        float before[20 * 5], masked[20 * 5], shrunk[20 * 5];
        forward(m, x, n, before);
        mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L1, 0.5);
        MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 1, 0.25));
        const size_t params_before = mm_model_num_params(m);
        MM_ASSERT_OK(mm_pruner_apply(p, m));
        forward(m, x, n, masked);
        ck_assert(mm_test_max_abs_diff(before, masked, n * 5) > 1e-3); /* pruning did something */
        const size_t nz = mm_model_num_nonzero(m);
        MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
        forward(m, x, n, shrunk);
        ck_assert_msg(mm_test_max_abs_diff(masked, shrunk, n * 5) < 1e-6, "%s: %g", specs[si],
                      mm_test_max_abs_diff(masked, shrunk, n * 5));
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, 0, NULL, &in, &out, NULL));
        ck_assert_uint_eq(in, 16);
        ck_assert_uint_eq(out, 12);
        MM_ASSERT_OK(mm_model_layer_info(m, 1, NULL, &in, &out, NULL));
        ck_assert_uint_eq(in, 12);
        ck_assert_uint_eq(out, 9);
        MM_ASSERT_OK(mm_model_layer_info(m, 2, NULL, &in, &out, NULL));
        ck_assert_uint_eq(in, 9);
        ck_assert_uint_eq(out, 5);
        ck_assert_uint_eq(mm_model_num_params(m), 16 * 12 + 12 + 12 * 9 + 9 + 9 * 5 + 5);
        ck_assert(mm_model_num_params(m) < params_before);
        ck_assert_uint_le(mm_model_num_nonzero(m), nz + 5); /* + folded biases */
        for (size_t l = 0; l < 3; l++) {
            ck_assert_ptr_null(wmask(m, l));
            ck_assert_ptr_null(bmask(m, l));
        }
        ck_assert(lineage_has(m, "\"op\":\"prune_finalize\""));
        /* the model trains and saves as usual */
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
        int32_t y[20];
        for (size_t i = 0; i < n; i++) y[i] = (int32_t)(i % 5);
        MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
        mm_optimizer_free(o);
        mm_pruner_free(p);
        mm_model_free(m);
    }
}
END_TEST

/* The remapped optimizer continues exactly as the masked one would: a
 * masked model trained with optimizer A and its shrunk copy trained with
 * the remapped optimizer B stay equal. */
START_TEST(structured_shrink_optimizer_continues) {
    const opt_case *cases[] = {&opt_cases[3], &opt_cases[5], &opt_cases[7], &opt_cases[0]};
    const size_t n = 24, dim = 10;
    float x[24 * 10];
    int32_t y[24];
    make_data(x, y, n, dim, 4, 31);
    for (size_t c = 0; c < 4; c++) {
        /* a and b: the same model trained the same way (deterministic) */
        mm_model *a = model_from("10-20-14-4", 3), *b = model_from("10-20-14-4", 3);
        mm_optimizer *oa = make_opt(a, cases[c]), *ob = make_opt(b, cases[c]);
        for (int t = 0; t < 5; t++) {
            MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL));
            MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        }
        mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L2, 0.5);
        MM_ASSERT_OK(mm_pruner_apply(p, a));
        MM_ASSERT_OK(mm_pruner_apply(p, b));
        MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL)); /* masks into the state */
        MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        MM_ASSERT_OK(mm_pruner_finalize(p, b, ob));
        ck_assert_uint_eq(ob->slots[0].rows, 10);
        ck_assert_uint_eq(ob->slots[2].cols, 10);
        for (int t = 0; t < 10; t++) {
            MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL));
            MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        }
        float ya[24 * 4], yb[24 * 4];
        forward(a, x, n, ya);
        forward(b, x, n, yb);
        ck_assert_msg(mm_test_max_abs_diff(ya, yb, n * 4) < 1e-4, "%s: %g", cases[c]->name,
                      mm_test_max_abs_diff(ya, yb, n * 4));
        /* wrong optimizer for the model */
        MM_ASSERT_STATUS(mm_pruner_finalize(p, a, ob), MM_E_INVALID_ARGUMENT);
        mm_optimizer_free(oa);
        mm_optimizer_free(ob);
        mm_pruner_free(p);
        mm_model_free(a);
        mm_model_free(b);
    }
}
END_TEST

/* Layers finalize leaves dense keep their masks: later training cannot
 * revive pruned weights. */
START_TEST(finalize_dense_format_keeps_masks) {
    mm_model *m = model_from("8-6-3", 2);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.5);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_DENSE));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y1[3], y2[3];
    forward(m, x, 1, y1);
    const size_t nz = mm_model_num_nonzero(m);
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    forward(m, x, 1, y2);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    ck_assert_ptr_nonnull(wmask(m, 0));
    ck_assert_ptr_nonnull(wmask(m, 1));
    ck_assert_uint_eq(mm_model_num_nonzero(m), nz);
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "dense");
    mm_pruner_free(p);
    mm_model_free(m);
}
END_TEST

/* Unstructured finalize: masked layers become sparse layers with the same
 * outputs, and the remapped optimizer (state gathered at the stored
 * entries) continues exactly as the masked model's optimizer does. */
START_TEST(finalize_unstructured_sparse) {
    const opt_case *cases[] = {&opt_cases[0], &opt_cases[3], &opt_cases[5], &opt_cases[7]};
    const size_t n = 24, dim = 20;
    float x[24 * 20];
    int32_t y[24];
    make_data(x, y, n, dim, 4, 41);
    for (size_t c = 0; c < 4; c++) {
        mm_model *a = model_from("20-32-16-4", 13), *b = model_from("20-32-16-4", 13);
        mm_optimizer *oa = make_opt(a, cases[c]), *ob = make_opt(b, cases[c]);
        for (int t = 0; t < 3; t++) {
            MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL));
            MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        }
        mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.8);
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
        MM_ASSERT_OK(mm_pruner_set_layer_sparsity(p, 2, 0.0)); /* output layer stays dense */
        MM_ASSERT_OK(mm_pruner_apply(p, a));
        MM_ASSERT_OK(mm_pruner_apply(p, b));
        MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL));
        MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        const size_t nz = mm_model_num_nonzero(b), params = mm_model_num_params(b);
        const size_t bytes = mm_model_param_bytes(b);
        float ya[24 * 4], yb[24 * 4];
        forward(a, x, n, ya);
        MM_ASSERT_OK(mm_pruner_finalize(p, b, ob));
        forward(b, x, n, yb);
        ck_assert_msg(mm_test_max_abs_diff(ya, yb, n * 4) < 1e-5, "%g",
                      mm_test_max_abs_diff(ya, yb, n * 4));
        const char *kind;
        MM_ASSERT_OK(mm_model_layer_info(b, 0, &kind, NULL, NULL, NULL));
        ck_assert_str_eq(kind, "sparse");
        MM_ASSERT_OK(mm_model_layer_info(b, 1, &kind, NULL, NULL, NULL));
        ck_assert_str_eq(kind, "sparse");
        MM_ASSERT_OK(mm_model_layer_info(b, 2, &kind, NULL, NULL, NULL));
        ck_assert_str_eq(kind, "dense");
        double sp;
        MM_ASSERT_OK(mm_model_layer_sparsity(b, 0, &sp));
        ck_assert(fabs(sp - (double)expect_count(0.8, 640) / 640.0) < 1e-12);
        ck_assert_uint_le(mm_model_num_nonzero(b), nz + 48); /* + stored zeros of biases */
        ck_assert_uint_lt(mm_model_num_params(b), params);
        ck_assert_uint_lt(mm_model_param_bytes(b), bytes);
        ck_assert(lineage_has(b, "\"kind\":\"sparse\""));
        for (int t = 0; t < 10; t++) {
            MM_ASSERT_OK(mm_optimizer_step(oa, x, y, NULL, n, NULL));
            MM_ASSERT_OK(mm_optimizer_step(ob, x, y, NULL, n, NULL));
        }
        forward(a, x, n, ya);
        forward(b, x, n, yb);
        ck_assert_msg(mm_test_max_abs_diff(ya, yb, n * 4) < 1e-4, "%s: %g", cases[c]->name,
                      mm_test_max_abs_diff(ya, yb, n * 4));
        if (mm_layer_kind_find("sparse")) { /* the sparse kind saves and loads */
            char *path = mm_test_tmp_path(".mmf");
            MM_ASSERT_OK(mm_model_save(b, path));
            mm_model *back;
            MM_ASSERT_OK(mm_model_load(&back, path));
            float yc[24 * 4];
            forward(back, x, n, yc);
            ck_assert(mm_test_max_abs_diff(yb, yc, n * 4) == 0.0);
            mm_model_free(back);
            unlink(path);
            free(path);
        }
        mm_optimizer_free(oa);
        mm_optimizer_free(ob);
        mm_pruner_free(p);
        mm_model_free(a);
        mm_model_free(b);
    }
}
END_TEST

/* Dense weights (as a matrix) of layer l, whatever its kind. */
static float *dense_weights(const mm_model *m, size_t l) {
    const mm_layer *ly = m->layers[l];
    float *w = calloc(ly->in * ly->out, sizeof *w);
    if (strcmp(ly->vt->kind, "sparse") == 0) {
        const size_t nnz = ly->params[0].rows;
        size_t *pos = malloc(nnz * sizeof *pos);
        MM_ASSERT_OK(mm_sparse_positions(ly, pos));
        for (size_t k = 0; k < nnz; k++) w[pos[k]] = ly->params[0].data[k];
        free(pos);
    } else {
        memcpy(w, ly->params[0].data, ly->in * ly->out * sizeof *w);
    }
    return w;
}

/* mm_model_get_weights gives the dense out x in matrix of every layer kind:
 * a sparse layer's with zeros where it pruned (the masked dense layer it
 * was made from), an int8 layer without master weights its dequantized
 * weights; set_weights and get_gradients take the same layout for sparse
 * layers (pruned positions stay 0), and the stored-value count still reads
 * the stored values. */
START_TEST(weights_as_dense_for_every_kind) {
    mm_model *m = model_from("20-32-4", 21);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.75);
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_REORDER_NEURONS, 0));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    float masked[640], w[640], b[32], b0[32];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, masked, 640, b0, 32));
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "sparse");
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 640, b, 32));
    ck_assert_mem_eq(w, masked, sizeof w);
    ck_assert_mem_eq(b, b0, sizeof b);
    float *internal = dense_weights(m, 0);
    ck_assert_mem_eq(w, internal, sizeof w);
    free(internal);
    size_t zeros = 0;
    for (size_t i = 0; i < 640; i++) zeros += w[i] == 0.0f;
    ck_assert_uint_eq(zeros, expect_count(0.75, 640));
    /* the stored values as before */
    const size_t nnz = m->layers[0]->params[0].rows;
    float *vals = malloc(nnz * sizeof *vals);
    MM_ASSERT_OK(mm_model_get_weights(m, 0, vals, nnz, NULL, 0));
    ck_assert_mem_eq(vals, m->layers[0]->params[0].data, nnz * sizeof *vals);
    free(vals);
    /* wrong sizes name the dense shape */
    MM_ASSERT_STATUS(mm_model_get_weights(m, 0, w, 639, NULL, 0), MM_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "32 x 20"));
    MM_ASSERT_STATUS(mm_model_get_weights(m, 0, NULL, 0, b, 31), MM_E_SHAPE);
    /* set: every kept weight written, pruned ones stay 0; the layer computes with them */
    float w2[640], back[640];
    for (size_t i = 0; i < 640; i++) w2[i] = (float)i / 64.0f - 5.0f;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w2, 640, NULL, 0));
    MM_ASSERT_OK(mm_model_get_weights(m, 0, back, 640, NULL, 0));
    for (size_t i = 0; i < 640; i++) ck_assert_float_eq(back[i], masked[i] != 0.0f ? w2[i] : 0.0f);
    mm_model *ref = model_from("20-32-4", 21);
    MM_ASSERT_OK(mm_model_set_weights(ref, 0, back, 640, b0, 32));
    float w1[128], b1[4]; /* layer 1 is sparse too */
    MM_ASSERT_OK(mm_model_get_weights(m, 1, w1, 128, b1, 4));
    MM_ASSERT_OK(mm_model_set_weights(ref, 1, w1, 128, b1, 4));
    float x[20 * 3], ya[4 * 3], yb[4 * 3];
    mm_test_fill(x, 60, 5, -1, 1);
    forward(m, x, 3, ya);
    forward(ref, x, 3, yb);
    ck_assert_double_le(mm_test_max_abs_diff(ya, yb, 12), 1e-5);
    w2[7] = NAN;
    MM_ASSERT_STATUS(mm_model_set_weights(m, 0, w2, 640, NULL, 0), MM_E_NUMERIC);
    /* gradients in the same layout: zero where pruned */
    int32_t y[3] = {0, 1, 2};
    MM_ASSERT_OK(mm_model_backward(m, x, y, NULL, 3, NULL));
    float g[640], gb[32];
    MM_ASSERT_OK(mm_model_get_gradients(m, 0, g, 640, gb, 32));
    size_t nonzero_grads = 0;
    for (size_t i = 0; i < 640; i++) {
        if (back[i] == 0.0f) ck_assert_float_eq(g[i], 0.0f);
        nonzero_grads += g[i] != 0.0f;
    }
    ck_assert_uint_gt(nonzero_grads, 0);
    /* quantized, the sparse layer (sparse_int8) still reads as its dense
     * matrix: zeros where pruned, the dequantized stored weights elsewhere */
    mm_quantizer *qs;
    MM_ASSERT_OK(mm_quantizer_create(&qs, MM_QUANT_INT8_WEIGHT_ONLY));
    MM_ASSERT_OK(mm_quantizer_apply(qs, m));
    mm_quantizer_free(qs);
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "sparse_int8");
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 640, NULL, 0));
    for (size_t o = 0; o < 32; o++) {
        float amax = 0;
        for (size_t i = 0; i < 20; i++) amax = fmaxf(amax, fabsf(back[o * 20 + i]));
        for (size_t i = 0; i < 20; i++) {
            if (back[o * 20 + i] == 0.0f) ck_assert_float_eq(w[o * 20 + i], 0.0f);
            ck_assert_double_le(fabs(w[o * 20 + i] - back[o * 20 + i]), amax / 127.0 * 0.5 + 1e-6);
        }
    }
    mm_model_free(ref);
    mm_pruner_free(p);
    mm_model_free(m);

    /* int8 without float master weights: the dequantized weights */
    m = model_from("20-32-4", 22);
    float wf[640];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, wf, 640, NULL, 0));
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_WEIGHT_ONLY));
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, 0));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "int8");
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w, 640, b, 32));
    for (size_t o = 0; o < 32; o++) { /* per-channel symmetric: half a step of the row's scale */
        float amax = 0;
        for (size_t i = 0; i < 20; i++) amax = fmaxf(amax, fabsf(wf[o * 20 + i]));
        ck_assert_double_le(mm_test_max_abs_diff(w + o * 20, wf + o * 20, 20),
                            amax / 127.0 * 0.5 + 1e-7);
    }
    MM_ASSERT_STATUS(mm_model_set_weights(m, 0, w, 640, NULL, 0), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_model_get_gradients(m, 0, w, 640, NULL, 0), MM_E_UNSUPPORTED);
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

/* Finalize puts the hidden neurons of layers it makes sparse in the order
 * that needs fewest kernel steps: rows of W_l and b_l and columns of
 * W_{l+1} move together (the same function), the lineage records the
 * order, and MM_PRUNE_REORDER_NEURONS 0 keeps them in place. */
START_TEST(finalize_reorders_neurons) {
    const size_t n = 16, dim = 200;
    float *x = malloc(n * dim * sizeof *x);
    int32_t y[16];
    make_data(x, y, n, dim, 10, 51);
    mm_model *m[2];
    for (int v = 0; v < 2; v++) {
        m[v] = model_from("200-96-40-10", 17);
        /* rows of very different magnitude: magnitude pruning keeps very
         * different numbers of weights per neuron */
        float *w = m[v]->layers[0]->params[0].data;
        for (size_t r = 0; r < 96; r++)
            for (size_t c = 0; c < dim; c++) w[r * dim + c] *= (float)(1 + (r * 5) % 7);
    }
    float y0[16 * 10], y1[16 * 10];
    forward(m[0], x, n, y0);
    size_t steps[2];
    for (int v = 0; v < 2; v++) {
        mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.9);
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_REORDER_NEURONS, v));
        MM_ASSERT_OK(mm_pruner_apply(p, m[v]));
        if (v == 0) forward(m[0], x, n, y0); /* the masked model */
        MM_ASSERT_OK(mm_pruner_finalize(p, m[v], NULL));
        steps[v] = mm_sparse_steps(m[v]->layers[0]);
        mm_pruner_free(p);
    }
    ck_assert(!lineage_has(m[0], "neuron_order"));
    ck_assert(lineage_has(m[1], "neuron_order"));
    ck_assert_uint_lt(steps[1] * 10, steps[0] * 9); /* >= 10% fewer steps */
    /* the same function */
    forward(m[1], x, n, y1);
    ck_assert_msg(mm_test_max_abs_diff(y0, y1, n * 10) < 1e-4, "%g",
                  mm_test_max_abs_diff(y0, y1, n * 10));
    /* the recorded order maps neurons: layer 0 rows, biases and layer 1
     * columns of the reordered model are the plain model's, permuted */
    json_error_t je;
    json_t *lin = json_loads(mm_model_lineage(m[1]), 0, &je);
    ck_assert_ptr_nonnull(lin);
    json_t *ev = json_array_get(lin, json_array_size(lin) - 1);
    json_t *order = NULL, *order1 = NULL, *layers = json_object_get(ev, "layers");
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *e = json_array_get(layers, i);
        const json_int_t l = json_integer_value(json_object_get(e, "layer"));
        if (l == 0) order = json_object_get(e, "neuron_order");
        if (l == 1) order1 = json_object_get(e, "neuron_order"); /* its rows move too */
    }
    ck_assert_uint_eq(json_array_size(order), 96);
    ck_assert_uint_eq(json_array_size(order1), 40);
    float *a0 = dense_weights(m[0], 0), *b0 = dense_weights(m[1], 0);
    float *a1 = dense_weights(m[0], 1), *b1 = dense_weights(m[1], 1);
    for (size_t i = 0; i < 96; i++) {
        const size_t o = (size_t)json_integer_value(json_array_get(order, i));
        ck_assert(memcmp(b0 + i * dim, a0 + o * dim, dim * sizeof(float)) == 0);
        ck_assert(memcmp(&m[1]->layers[0]->params[1].data[i], &m[0]->layers[0]->params[1].data[o],
                         sizeof(float)) == 0);
        for (size_t r = 0; r < 40; r++) {
            const size_t o1 = (size_t)json_integer_value(json_array_get(order1, r));
            ck_assert(memcmp(&b1[r * 96 + i], &a1[o1 * 96 + o], sizeof(float)) == 0);
        }
    }
    json_decref(lin);
    free(a0), free(b0), free(a1), free(b1), free(x);
    mm_model_free(m[0]);
    mm_model_free(m[1]);
}
END_TEST

/* Auto: sparse exactly where mm_sparse_worthwhile says so; structured and
 * unstructured masks together (shrink, then sparse). */
START_TEST(finalize_auto_and_mixed) {
    const double targets[] = {0.3, 0.95};
    for (int ti = 0; ti < 2; ti++) {
        mm_model *m = model_from("30-40-20-5", 17);
        mm_pruner *ps = pruner_new(MM_PRUNE_NEURON_L1, 0.25);
        MM_ASSERT_OK(mm_pruner_apply(ps, m));
        mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, targets[ti]);
        MM_ASSERT_OK(mm_pruner_apply(p, m));
        float x[3 * 30], y1[15], y2[15];
        mm_test_fill(x, 90, 3, -1, 1);
        forward(m, x, 3, y1);
        size_t unmasked[3];
        for (size_t l = 0; l < 3; l++) unmasked[l] = wcount(m, l) - pruned_weights(m, l);
        MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
        forward(m, x, 3, y2);
        ck_assert_msg(mm_test_max_abs_diff(y1, y2, 15) < 1e-5, "%g",
                      mm_test_max_abs_diff(y1, y2, 15));
        for (size_t l = 0; l < 3; l++) {
            const char *kind;
            size_t in, out;
            MM_ASSERT_OK(mm_model_layer_info(m, l, &kind, &in, &out, NULL));
            ck_assert_str_eq(kind, mm_sparse_worthwhile(in, out, unmasked[l]) ? "sparse" : "dense");
        }
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, 1, NULL, &in, &out, NULL));
        ck_assert_uint_eq(in, 30);
        ck_assert_uint_eq(out, 15);
        mm_pruner_free(ps);
        mm_pruner_free(p);
        mm_model_free(m);
    }
}
END_TEST

/* ---- save / load / clone ---------------------------------------------------- */

/* Weights, biases and masks bit-identical. */
static void check_same_model(const mm_model *a, const mm_model *b) {
    ck_assert_uint_eq(a->n_layers, b->n_layers);
    for (size_t l = 0; l < a->n_layers; l++) {
        ck_assert_uint_eq(a->layers[l]->n_params, b->layers[l]->n_params);
        for (size_t j = 0; j < a->layers[l]->n_params; j++) {
            const mm_param *p = &a->layers[l]->params[j], *q = &b->layers[l]->params[j];
            const size_t n = mm_param_count(p);
            ck_assert_uint_eq(n, mm_param_count(q));
            ck_assert_msg(memcmp(p->data, q->data, n * sizeof(float)) == 0, "layer %zu %s", l,
                          p->name);
            ck_assert_int_eq(p->mask != NULL, q->mask != NULL);
            if (p->mask) ck_assert(memcmp(p->mask, q->mask, n) == 0);
        }
    }
}

/* Write a masked model the way earlier versions did: the full F32 weight
 * plus U8 "<param>_mask" tensors. */
static void save_full_form(mm_model *m, const char *path) {
    enum { MAXL = 8 };
    uint8_t *stash[MAXL][2];
    ck_assert_uint_le(m->n_layers, MAXL);
    for (size_t l = 0; l < m->n_layers; l++)
        for (size_t j = 0; j < 2; j++) {
            stash[l][j] = m->layers[l]->params[j].mask;
            m->layers[l]->params[j].mask = NULL;
        }
    mm_file_writer *wr;
    MM_ASSERT_OK(mm_file_writer_create(&wr));
    MM_ASSERT_OK(mm_file_writer_add_model(wr, m));
    for (size_t l = 0; l < m->n_layers; l++)
        for (size_t j = 0; j < 2; j++) {
            mm_param *p = &m->layers[l]->params[j];
            p->mask = stash[l][j];
            if (!p->mask) continue;
            char name[64];
            snprintf(name, sizeof name, "layers.%zu.%s_mask", l, p->name);
            const uint64_t shape[2] = {p->rows, p->cols};
            MM_ASSERT_OK(
                mm_file_writer_add_tensor(wr, name, MM_DTYPE_U8, p->mask, shape, j == 0 ? 2 : 1));
        }
    MM_ASSERT_OK(mm_file_writer_commit(wr, path));
    mm_file_writer_free(wr);
}

/* One extra tensor of layer 0 in a hand-built file. */
typedef struct tspec {
    const char *name;
    mm_dtype dtype;
    const void *data;
    uint64_t shape[2];
    size_t ndim;
} tspec;

/* The file of `plain` (unmasked) with layer 0's weight replaced by the
 * given tensors. */
static void write_layer0(const char *path, const mm_model *plain, const tspec *ts, size_t n) {
    MM_ASSERT_OK(mm_model_save(plain, path));
    mm_file *f;
    MM_ASSERT_OK(mm_file_open(&f, path));
    char *arch = strdup(mm_file_meta(f, "architecture"));
    char *lineage = strdup(mm_file_meta(f, "lineage"));
    mm_file_close(f);
    ck_assert(arch && lineage);
    mm_file_writer *wr;
    MM_ASSERT_OK(mm_file_writer_create(&wr));
    MM_ASSERT_OK(mm_file_writer_add_meta(wr, "architecture", arch));
    MM_ASSERT_OK(mm_file_writer_add_meta(wr, "lineage", lineage));
    for (size_t l = 0; l < plain->n_layers; l++) {
        const mm_layer *L = plain->layers[l];
        char name[64];
        if (l > 0) {
            snprintf(name, sizeof name, "layers.%zu.weight", l);
            MM_ASSERT_OK(mm_file_writer_add_f32(wr, name, L->params[0].data, L->out, L->in, false));
        }
        snprintf(name, sizeof name, "layers.%zu.bias", l);
        MM_ASSERT_OK(mm_file_writer_add_f32(wr, name, L->params[1].data, L->out, 1, true));
    }
    for (size_t k = 0; k < n; k++)
        MM_ASSERT_OK(mm_file_writer_add_tensor(wr, ts[k].name, ts[k].dtype, ts[k].data,
                                               ts[k].shape, ts[k].ndim));
    MM_ASSERT_OK(mm_file_writer_commit(wr, path));
    mm_file_writer_free(wr);
    free(arch);
    free(lineage);
}

START_TEST(masked_model_round_trip) {
    mm_model *m = model_from("9-7-5-3", 6);
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L1, 0.4);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    mm_pruner_free(p);
    p = pruner_new(MM_PRUNE_MAGNITUDE, 0.6);
    MM_ASSERT_OK(mm_pruner_apply(p, m)); /* unstructured on top */
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *back;
    MM_ASSERT_OK(mm_model_load(&back, path));
    mm_model *copy;
    MM_ASSERT_OK(mm_model_clone(m, &copy));
    const mm_model *models[2] = {back, copy};
    for (int k = 0; k < 2; k++) {
        const mm_model *o = models[k];
        for (size_t l = 0; l < 3; l++)
            for (size_t j = 0; j < 2; j++) {
                const mm_param *a = &m->layers[l]->params[j], *b = &o->layers[l]->params[j];
                ck_assert_int_eq(a->mask != NULL, b->mask != NULL);
                if (a->mask) ck_assert(memcmp(a->mask, b->mask, mm_param_count(a)) == 0);
            }
        ck_assert_uint_eq(mm_model_num_nonzero(o), mm_model_num_nonzero(m));
    }
    /* the loaded model keeps honouring its masks while training */
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, back, MM_OPTIM_ADAM));
    float x[4 * 9];
    int32_t y[4] = {0, 1, 2, 0};
    mm_test_fill(x, 36, 4, -1, 1);
    for (int t = 0; t < 20; t++) MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 4, NULL));
    check_state_zero(o, "loaded");
    mm_optimizer_free(o);

    /* the file holds the compact form: no full weight, no weight mask */
    {
        mm_file *f;
        MM_ASSERT_OK(mm_file_open(&f, path));
        for (size_t l = 0; l < 3; l++) {
            char name[64];
            snprintf(name, sizeof name, "layers.%zu.weight", l);
            ck_assert_int_eq(mm_file_has_tensor(f, name), wmask(m, l) == NULL);
            snprintf(name, sizeof name, "layers.%zu.weight_mask", l);
            ck_assert(!mm_file_has_tensor(f, name));
            snprintf(name, sizeof name, "layers.%zu.weight_indices", l);
            ck_assert_int_eq(mm_file_has_tensor(f, name), wmask(m, l) != NULL);
            if (wmask(m, l)) {
                mm_dtype dt;
                MM_ASSERT_OK(mm_file_tensor_info(f, name, &dt, NULL, NULL));
                ck_assert_int_eq(dt, MM_DTYPE_U16);
            }
            snprintf(name, sizeof name, "layers.%zu.bias_mask", l);
            ck_assert_int_eq(mm_file_has_tensor(f, name), bmask(m, l) != NULL);
        }
        mm_file_close(f);
    }
    {
        mm_model *fresh; /* back has trained since */
        MM_ASSERT_OK(mm_model_load(&fresh, path));
        check_same_model(m, fresh);
        mm_model_free(fresh);
    }

    /* a file in the full form (weight + weight_mask, as earlier versions
     * wrote) whose mask is not 0/1, or whose masked weight is non-zero, or
     * whose mask has the wrong dtype or shape, is refused */
    mm_param *w0 = &m->layers[0]->params[0];
    size_t pos = 0;
    while (w0->mask[pos]) pos++;
    mm_model *bad;
    w0->mask[pos] = 2;
    save_full_form(m, path);
    MM_ASSERT_STATUS(mm_model_load(&bad, path), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "weight_mask"));
    w0->mask[pos] = 0;
    w0->data[pos] = 0.5f;
    save_full_form(m, path);
    MM_ASSERT_STATUS(mm_model_load(&bad, path), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "pruned"));
    w0->data[pos] = 0.0f;
    mm_model *plain = model_from("9-7-5-3", 6);
    const float f32mask[63] = {0};
    const uint8_t u8mask[7] = {1, 1, 1, 1, 1, 1, 1};
    for (int variant = 0; variant < 2; variant++) {
        mm_file_writer *wr;
        MM_ASSERT_OK(mm_file_writer_create(&wr));
        MM_ASSERT_OK(mm_file_writer_add_model(wr, plain));
        if (variant == 0) {
            const uint64_t shape[2] = {7, 9};
            MM_ASSERT_OK(mm_file_writer_add_tensor(wr, "layers.0.weight_mask", MM_DTYPE_F32,
                                                   f32mask, shape, 2));
        } else {
            const uint64_t shape[1] = {7};
            MM_ASSERT_OK(mm_file_writer_add_tensor(wr, "layers.0.weight_mask", MM_DTYPE_U8,
                                                   u8mask, shape, 1));
        }
        MM_ASSERT_OK(mm_file_writer_commit(wr, path));
        mm_file_writer_free(wr);
        MM_ASSERT_STATUS(mm_model_load(&bad, path), MM_E_FORMAT);
    }
    mm_model_free(plain);
    mm_model_free(back);
    mm_model_free(copy);
    mm_pruner_free(p);
    mm_model_free(m);
    unlink(path);
    free(path);
}
END_TEST

/* Files written before the compact form (full weight + weight_mask) still
 * load, bit-exact, masks included. */
START_TEST(full_form_still_loads) {
    mm_model *m = model_from("9-7-5-3", 11);
    mm_pruner *p = pruner_new(MM_PRUNE_NEURON_L1, 0.3);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    mm_pruner_free(p);
    p = pruner_new(MM_PRUNE_MAGNITUDE, 0.5);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    mm_pruner_free(p);
    char *path = mm_test_tmp_path(".mmf");
    save_full_form(m, path);
    {
        mm_file *f;
        MM_ASSERT_OK(mm_file_open(&f, path));
        ck_assert(mm_file_has_tensor(f, "layers.0.weight"));
        ck_assert(mm_file_has_tensor(f, "layers.0.weight_mask"));
        ck_assert(!mm_file_has_tensor(f, "layers.0.weight_values"));
        mm_file_close(f);
    }
    mm_model *back, *again;
    MM_ASSERT_OK(mm_model_load(&back, path));
    check_same_model(m, back);
    /* saved again, it takes the compact form and still round-trips */
    MM_ASSERT_OK(mm_model_save(back, path));
    MM_ASSERT_OK(mm_model_load(&again, path));
    check_same_model(m, again);
    mm_model_free(again);
    mm_model_free(back);
    mm_model_free(m);
    unlink(path);
    free(path);
}
END_TEST

/* Layer 0 of 9-7-5-3 (out 7, in 9) in the compact form, each tensor
 * checked: every case is refused with the tensor named. */
START_TEST(compact_hostile_tensors) {
    mm_model *plain = model_from("9-7-5-3", 6);
    char *path = mm_test_tmp_path(".mmf");
    /* valid: every row keeps columns 2 and 5 */
    float val[64];
    uint16_t idx[64];
    uint32_t idx32[64], off[8];
    for (size_t k = 0; k < 64; k++) {
        val[k] = 0.25f + (float)k;
        idx[k] = (k % 2) ? 5 : 2;
        idx32[k] = idx[k];
    }
    for (size_t r = 0; r <= 7; r++) off[r] = (uint32_t)(2 * r);
    const uint8_t u8mask[63] = {0};
    const float fullw[63] = {0};
    enum { V, I, O };
#define TS(nm, dt, d, s0) {"layers.0." nm, dt, d, {s0, 0}, 1}
    struct {
        const char *what;
        tspec t[4];
        size_t n;
        mm_status want;
        const char *needle;
    } cases[] = {
        {"valid", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_OK, NULL},
        {"valid U32", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U32, idx32, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_OK, NULL},
        {"values F16", {TS("weight_values", MM_DTYPE_F16, idx, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_E_FORMAT, "weight_values"},
        {"indices I32", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_I32, idx32, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_E_FORMAT, "weight_indices"},
        {"offsets U16", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U16, idx, 8)}, 3, MM_E_FORMAT, "weight_offsets"},
        {"offsets short", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 7)}, 3, MM_E_FORMAT, "weight_offsets"},
        {"values 2-d", {{"layers.0.weight_values", MM_DTYPE_F32, val, {7, 2}, 2}, TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_E_FORMAT, "weight_values"},
        {"nnz > out*in", {TS("weight_values", MM_DTYPE_F32, val, 64), TS("weight_indices", MM_DTYPE_U16, idx, 64), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_E_FORMAT, "weight_values"},
        {"count mismatch", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 13), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 3, MM_E_FORMAT, "weight_indices"},
        {"offsets missing", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14)}, 2, MM_E_FORMAT, "weight_offsets"},
        {"values missing", {TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8)}, 2, MM_E_FORMAT, "weight_values"},
        {"with weight_mask", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8), {"layers.0.weight_mask", MM_DTYPE_U8, u8mask, {7, 9}, 2}}, 4, MM_E_FORMAT, "weight_mask"},
        {"with weight", {TS("weight_values", MM_DTYPE_F32, val, 14), TS("weight_indices", MM_DTYPE_U16, idx, 14), TS("weight_offsets", MM_DTYPE_U32, off, 8), {"layers.0.weight", MM_DTYPE_F32, fullw, {7, 9}, 2}}, 4, MM_E_FORMAT, "layers.0.weight"},
    };
#undef TS
    const size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t c = 0; c < ncases; c++) {
        write_layer0(path, plain, cases[c].t, cases[c].n);
        mm_model *back = NULL;
        mm_status st = mm_model_load(&back, path);
        ck_assert_msg(st == cases[c].want, "%s: %s (%s)", cases[c].what, mm_status_name(st),
                      mm_last_error_message());
        if (st != MM_OK) {
            ck_assert_ptr_null(back);
            ck_assert_msg(strstr(mm_last_error_message(), cases[c].needle), "%s: %s",
                          cases[c].what, mm_last_error_message());
            continue;
        }
        /* rebuilt: kept weights at columns 2 and 5, zeros elsewhere */
        const mm_param *w = &back->layers[0]->params[0];
        ck_assert_ptr_nonnull(w->mask);
        ck_assert_ptr_null(back->layers[0]->params[1].mask);
        for (size_t r = 0; r < 7; r++)
            for (size_t i = 0; i < 9; i++) {
                const bool kept = i == 2 || i == 5;
                ck_assert_int_eq(w->mask[r * 9 + i], kept);
                const float want = kept ? val[2 * r + (i == 5)] : 0.0f;
                ck_assert(memcmp(&w->data[r * 9 + i], &want, sizeof want) == 0);
            }
        mm_model_free(back);
    }

    /* value and structure corruptions of the valid case */
    struct {
        const char *what;
        int which; /* V, I or O */
        size_t at;
        double v;
        mm_status want;
        const char *needle;
    } edits[] = {
        {"offsets start at 1", O, 0, 1, MM_E_FORMAT, "weight_offsets"},
        {"offsets end short", O, 7, 13, MM_E_FORMAT, "weight_offsets"},
        {"offsets decrease", O, 3, 3, MM_E_FORMAT, "weight_offsets"},
        {"offsets jump", O, 1, 12, MM_E_FORMAT, "weight_offsets"},
        {"row too long", O, 99, 10, MM_E_FORMAT, "weight_offsets"}, /* row 0: 10 > 9 */
        {"index out of range", I, 1, 9, MM_E_FORMAT, "weight_indices"},
        {"index huge", I, 3, 65535, MM_E_FORMAT, "weight_indices"},
        {"indices repeat", I, 1, 2, MM_E_FORMAT, "weight_indices"},
        {"indices decrease", I, 0, 6, MM_E_FORMAT, "weight_indices"},
        {"value NaN", V, 4, NAN, MM_E_NUMERIC, "weight_values"},
        {"value infinite", V, 13, -INFINITY, MM_E_NUMERIC, "weight_values"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        float v2[14];
        uint16_t i2[14];
        uint32_t o2[8];
        memcpy(v2, val, sizeof v2);
        memcpy(i2, idx, sizeof i2);
        memcpy(o2, off, sizeof o2);
        if (edits[e].which == V) v2[edits[e].at] = (float)edits[e].v;
        if (edits[e].which == I) i2[edits[e].at] = (uint16_t)edits[e].v;
        if (edits[e].which == O && edits[e].at < 8) o2[edits[e].at] = (uint32_t)edits[e].v;
        if (edits[e].which == O && edits[e].at == 99)
            for (size_t r = 1; r < 7; r++) o2[r] = (uint32_t)edits[e].v; /* 0,10,..,10,14 */
        const tspec t[3] = {{"layers.0.weight_values", MM_DTYPE_F32, v2, {14, 0}, 1},
                            {"layers.0.weight_indices", MM_DTYPE_U16, i2, {14, 0}, 1},
                            {"layers.0.weight_offsets", MM_DTYPE_U32, o2, {8, 0}, 1}};
        write_layer0(path, plain, t, 3);
        mm_model *back = NULL;
        mm_status st = mm_model_load(&back, path);
        ck_assert_msg(st == edits[e].want, "%s: %s (%s)", edits[e].what, mm_status_name(st),
                      mm_last_error_message());
        ck_assert_ptr_null(back);
        ck_assert_msg(strstr(mm_last_error_message(), edits[e].needle), "%s: %s", edits[e].what,
                      mm_last_error_message());
    }
    mm_model_free(plain);
    unlink(path);
    free(path);
}
END_TEST

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* A 90%-pruned 784-256-128-10 model whose layers stay dense with masks
 * saves compactly: <= 20% of the dense file, and loads back bit-exact. */
START_TEST(masked_file_is_small) {
    mm_model *m = model_from("784-256-128-10", 3);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    const long dense = file_size(path);
    mm_pruner *p = pruner_new(MM_PRUNE_MAGNITUDE, 0.9);
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    mm_pruner_free(p);
    MM_ASSERT_OK(mm_model_save(m, path));
    const long masked = file_size(path);
    fprintf(stderr, "784-256-128-10: dense file %ld bytes, 90%% masked %ld bytes (%.1f%%)\n",
            dense, masked, 100.0 * (double)masked / (double)dense);
    ck_assert_int_le(masked * 5, dense);
    mm_model *back;
    MM_ASSERT_OK(mm_model_load(&back, path));
    check_same_model(m, back);
    /* saving twice gives the same bytes (the compact form is rebuilt) */
    char *path2 = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(back, path2));
    ck_assert_int_eq(file_size(path2), masked);
    mm_model_free(back);
    mm_model_free(m);
    unlink(path);
    unlink(path2);
    free(path);
    free(path2);
}
END_TEST

Suite *prune_suite(void);
Suite *prune_suite(void) {
    Suite *s = suite_create("prune");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, names_and_settings);
    tcase_add_test(tc, selection_matches_sort);
    tcase_add_test(tc, magnitude_layerwise_exact);
    tcase_add_test(tc, ties_break_by_index);
    tcase_add_test(tc, global_magnitude_exact);
    tcase_add_test(tc, per_layer_targets);
    tcase_add_test(tc, masks_are_monotone);
    tcase_add_test(tc, random_exact_and_seeded);
    tcase_add_test(tc, user_scores);
    tcase_add_test(tc, neuron_norms);
    tcase_add_test(tc, neuron_activation);
    tcase_add_test(tc, structured_errors);
    tcase_add_test(tc, optimizer_never_revives);
    tcase_add_test(tc, set_weights_keeps_masks);
    tcase_add_test(tc, polynomial_schedule_values);
    tcase_add_test(tc, gradual_masks_on_schedule);
    tcase_add_test(tc, gradual_during_fit);
    tcase_add_test(tc, attach_errors);
    tcase_add_test(tc, structured_shrink_same_outputs);
    tcase_add_test(tc, structured_shrink_optimizer_continues);
    tcase_add_test(tc, finalize_dense_format_keeps_masks);
    tcase_add_test(tc, finalize_unstructured_sparse);
    tcase_add_test(tc, weights_as_dense_for_every_kind);
    tcase_add_test(tc, finalize_reorders_neurons);
    tcase_add_test(tc, finalize_auto_and_mixed);
    tcase_add_test(tc, masked_model_round_trip);
    tcase_add_test(tc, full_form_still_loads);
    tcase_add_test(tc, compact_hostile_tensors);
    tcase_add_test(tc, masked_file_is_small);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(prune_suite()); }
