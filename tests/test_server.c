/* mm_server: hot swap while serving. Single-thread semantics (versions,
 * acquire/release lifetimes, snapshots outliving their publication, errors),
 * then reader threads predicting continuously while a writer publishes new
 * versions: each version's model is known in advance, so a reader checks
 * that the outputs it got are bit-identical to those of the version it was
 * told (a half-updated or freed model would give other numbers). Dense,
 * pruned (sparse layers) and quantized (int8) models. Meant to run under
 * ThreadSanitizer too (scripts/test.sh). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mm/mm.h"
#include "testutil.h"

#define IN 12
#define OUT 5
#define NX 4 /* samples per predict */

static mm_model *make_model(uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "12-24-16-5:relu", seed));
    return m;
}

/* A model whose single dense layer outputs v on every output: weights 0,
 * biases v. */
static mm_model *const_model(float v) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, IN, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, OUT, MM_ACT_IDENTITY));
    float w[IN * OUT] = {0}, b[OUT];
    for (int i = 0; i < OUT; i++) b[i] = v;
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, IN * OUT, b, OUT));
    return m;
}

static mm_model *pruned_model(uint64_t seed) {
    mm_model *m = make_model(seed);
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.8));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    mm_pruner_free(p);
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_msg(strcmp(kind, "dense") != 0, "pruned layer 0 is still %s", kind);
    return m;
}

static mm_model *quantized_model(uint64_t seed, const float *calib, size_t n) {
    mm_model *m = make_model(seed);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, calib, n));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    mm_quantizer_free(q);
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_msg(strcmp(kind, "dense") != 0, "quantized layer 0 is still %s", kind);
    return m;
}

/* ---- single thread ------------------------------------------------------ */

START_TEST(test_versions_and_lifetimes) {
    mm_model *a = const_model(1.0f), *b = const_model(2.0f);
    mm_server *s;
    MM_ASSERT_OK(mm_server_create(&s, a));
    ck_assert_uint_eq(mm_server_version(s), 1);
    mm_model_free(a); /* the server has its own clone */

    float x[IN] = {0}, out[OUT];
    const mm_model *m1;
    uint64_t v;
    MM_ASSERT_OK(mm_server_acquire(s, &m1, &v));
    ck_assert_uint_eq(v, 1);
    ck_assert_uint_eq(mm_server_outstanding(s), 1);

    uint64_t pv;
    MM_ASSERT_OK(mm_server_publish(s, b, &pv));
    ck_assert_uint_eq(pv, 2);
    ck_assert_uint_eq(mm_server_version(s), 2);
    ck_assert_uint_eq(mm_server_live_snapshots(s), 2); /* v1 is held */
    /* the held snapshot still works and still is version 1 */
    MM_ASSERT_OK(mm_model_forward(m1, x, 1, out));
    ck_assert_float_eq(out[0], 1.0f);
    MM_ASSERT_OK(mm_server_forward(s, x, 1, out, &v));
    ck_assert_uint_eq(v, 2);
    ck_assert_float_eq(out[0], 2.0f);
    /* changing the published source afterwards changes nothing served */
    float w[IN * OUT] = {0}, bias[OUT] = {7, 7, 7, 7, 7};
    MM_ASSERT_OK(mm_model_set_weights(b, 0, w, IN * OUT, bias, OUT));
    MM_ASSERT_OK(mm_server_forward(s, x, 1, out, &v));
    ck_assert_float_eq(out[0], 2.0f);

    mm_server_release(s, m1); /* the last reader of v1: freed now */
    ck_assert_uint_eq(mm_server_live_snapshots(s), 1);
    ck_assert_uint_eq(mm_server_outstanding(s), 0);

    /* unheld snapshots are freed at publish */
    MM_ASSERT_OK(mm_server_publish(s, b, &pv));
    ck_assert_uint_eq(pv, 3);
    ck_assert_uint_eq(mm_server_live_snapshots(s), 1);

    int32_t labels[2];
    float x2[2 * IN] = {0};
    MM_ASSERT_OK(mm_server_predict(s, x2, 2, labels, &v));
    ck_assert_uint_eq(v, 3);
    mm_model_free(b);
    mm_server_free(s);
}
END_TEST

START_TEST(test_errors) {
    mm_model *a = const_model(1.0f);
    mm_server *s;
    MM_ASSERT_STATUS(mm_server_create(NULL, a), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_server_create(&s, NULL), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(s);
    mm_model *empty;
    MM_ASSERT_OK(mm_model_create(&empty, IN, 1));
    MM_ASSERT_STATUS(mm_server_create(&s, empty), MM_E_STATE);
    MM_ASSERT_OK(mm_server_create(&s, a));
    MM_ASSERT_STATUS(mm_server_publish(s, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_server_publish(s, empty, NULL), MM_E_STATE);
    mm_model *wide;
    MM_ASSERT_OK(mm_model_create_from_spec(&wide, "13-5", 1));
    MM_ASSERT_STATUS(mm_server_publish(s, wide, NULL), MM_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "13 inputs"));
    ck_assert_uint_eq(mm_server_version(s), 1); /* nothing published */
    const mm_model *m;
    MM_ASSERT_STATUS(mm_server_acquire(s, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_server_acquire(NULL, &m, NULL), MM_E_INVALID_ARGUMENT);
    /* releasing a foreign model is ignored and reported */
    mm_clear_error();
    mm_server_release(s, a);
    ck_assert_int_eq(mm_last_error(), MM_E_INVALID_ARGUMENT);
    mm_server_release(s, NULL);
    ck_assert_uint_eq(mm_server_outstanding(s), 0);
    /* predict errors are the model's, and release the snapshot */
    int32_t labels[1];
    MM_ASSERT_STATUS(mm_server_predict(s, NULL, 1, labels, NULL), MM_E_INVALID_ARGUMENT);
    ck_assert_uint_eq(mm_server_outstanding(s), 0);
    /* a NaN feature: MM_E_NUMERIC naming it, nothing written, snapshot released */
    float xs[IN] = {0}, ys[OUT] = {-7, -7, -7, -7, -7};
    xs[4] = NAN;
    labels[0] = -7;
    uint64_t ver = 0;
    MM_ASSERT_STATUS(mm_server_predict(s, xs, 1, labels, &ver), MM_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "input sample 0, feature 4 is NaN"));
    ck_assert_int_eq(labels[0], -7);
    MM_ASSERT_STATUS(mm_server_forward(s, xs, 1, ys, &ver), MM_E_NUMERIC);
    ck_assert(ys[0] == -7 && ys[OUT - 1] == -7);
    ck_assert_uint_eq(mm_server_outstanding(s), 0);
    xs[4] = 0;
    MM_ASSERT_OK(mm_server_predict(s, xs, 1, labels, &ver));
    ck_assert_uint_eq(mm_server_version(NULL), 0);
    mm_server_free(NULL);
    mm_server_free(s);
    mm_model_free(a);
    mm_model_free(empty);
    mm_model_free(wide);
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

#define N_MODELS 4
#define MAX_READERS 4

typedef struct shared {
    mm_server *server;
    mm_model *models[N_MODELS]; /* version v serves models[(v - 1) % N_MODELS] */
    float x[NX * IN];
    float expect[N_MODELS][NX * OUT];
    int32_t expect_labels[N_MODELS][NX];
    atomic_int stop;
    atomic_uint_fast64_t reads; /* by all readers */
} shared;

typedef struct reader_result {
    shared *sh;
    uint64_t reads, mismatches, versions_seen_max, non_monotonic, errors;
    int hold; /* 1: use acquire/forward/release and hold across a yield */
} reader_result;

static void *reader_main(void *arg) {
    reader_result *r = arg;
    shared *sh = r->sh;
    uint64_t last = 0;
    float out[NX * OUT];
    int32_t labels[NX];
    while (!atomic_load(&sh->stop)) {
        uint64_t v;
        int k;
        if (r->hold) {
            const mm_model *m;
            if (mm_server_acquire(sh->server, &m, &v) != MM_OK) {
                r->errors++;
                continue;
            }
            if (mm_model_forward(m, sh->x, NX, out) != MM_OK) r->errors++;
            k = (int)((v - 1) % N_MODELS);
            if (memcmp(out, sh->expect[k], sizeof out) != 0) r->mismatches++;
            if (mm_model_predict(m, sh->x, NX, labels) != MM_OK) r->errors++;
            if (memcmp(labels, sh->expect_labels[k], sizeof labels) != 0) r->mismatches++;
            mm_server_release(sh->server, m);
        } else {
            if (mm_server_predict(sh->server, sh->x, NX, labels, &v) != MM_OK) {
                r->errors++;
                continue;
            }
            k = (int)((v - 1) % N_MODELS);
            if (memcmp(labels, sh->expect_labels[k], sizeof labels) != 0) r->mismatches++;
            if (mm_server_forward(sh->server, sh->x, NX, out, &v) != MM_OK) r->errors++;
            k = (int)((v - 1) % N_MODELS);
            if (memcmp(out, sh->expect[k], sizeof out) != 0) r->mismatches++;
        }
        if (v < last) r->non_monotonic++;
        last = v;
        r->reads++;
        atomic_fetch_add(&sh->reads, 1);
    }
    r->versions_seen_max = last;
    return NULL;
}

static void run_concurrent(mm_model *models[N_MODELS], int n_readers, uint64_t publishes) {
    shared *sh = calloc(1, sizeof *sh);
    ck_assert_ptr_nonnull(sh);
    mm_test_fill(sh->x, NX * IN, 99, -1.0f, 1.0f);
    for (int k = 0; k < N_MODELS; k++) {
        sh->models[k] = models[k];
        MM_ASSERT_OK(mm_model_forward(models[k], sh->x, NX, sh->expect[k]));
        MM_ASSERT_OK(mm_model_predict(models[k], sh->x, NX, sh->expect_labels[k]));
    }
    /* the models must be told apart by their outputs */
    for (int a = 0; a < N_MODELS; a++)
        for (int b = a + 1; b < N_MODELS; b++)
            ck_assert_msg(memcmp(sh->expect[a], sh->expect[b], sizeof sh->expect[a]) != 0,
                          "models %d and %d give the same outputs", a, b);
    MM_ASSERT_OK(mm_server_create(&sh->server, models[0]));
    atomic_init(&sh->stop, 0);
    atomic_init(&sh->reads, 0);
    pthread_t th[MAX_READERS];
    reader_result res[MAX_READERS];
    for (int i = 0; i < n_readers; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].sh = sh;
        res[i].hold = i % 2;
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &res[i]), 0);
    }
    /* Publish at least `publishes` versions, and go on until the readers
     * have done min_reads reads in all (threads may start late). */
    const uint64_t min_reads = 20 * publishes;
    uint64_t p = 0;
    time_t t0 = time(NULL);
    while (p < publishes || atomic_load(&sh->reads) < min_reads) {
        p++;
        uint64_t v;
        MM_ASSERT_OK(mm_server_publish(sh->server, models[p % N_MODELS], &v));
        ck_assert_uint_eq(v, p + 1);
        ck_assert_msg(time(NULL) - t0 < 120, "readers made only %llu reads in 2 minutes",
                      (unsigned long long)atomic_load(&sh->reads));
    }
    publishes = p;
    atomic_store(&sh->stop, 1);
    uint64_t reads = 0;
    for (int i = 0; i < n_readers; i++) {
        pthread_join(th[i], NULL);
        ck_assert_uint_eq(res[i].errors, 0);
        ck_assert_msg(res[i].mismatches == 0, "reader %d saw %llu outputs that are not its version's",
                      i, (unsigned long long)res[i].mismatches);
        ck_assert_uint_eq(res[i].non_monotonic, 0);
        reads += res[i].reads;
    }
    ck_assert_uint_gt(reads, 0);
    ck_assert_uint_eq(mm_server_version(sh->server), publishes + 1);
    ck_assert_uint_eq(mm_server_outstanding(sh->server), 0);
    ck_assert_uint_eq(mm_server_live_snapshots(sh->server), 1);
    mm_server_free(sh->server);
    free(sh);
}

START_TEST(test_concurrent_dense) {
    mm_model *m[N_MODELS];
    for (int k = 0; k < N_MODELS; k++) m[k] = make_model(100 + (uint64_t)k);
    run_concurrent(m, 3, 300);
    for (int k = 0; k < N_MODELS; k++) mm_model_free(m[k]);
}
END_TEST

START_TEST(test_concurrent_pruned_and_quantized) {
    float calib[64 * IN];
    mm_test_fill(calib, 64 * IN, 5, -1.0f, 1.0f);
    mm_model *m[N_MODELS];
    m[0] = pruned_model(200);
    m[1] = quantized_model(201, calib, 64);
    m[2] = pruned_model(202);
    m[3] = quantized_model(203, calib, 64);
    run_concurrent(m, 3, 200);
    for (int k = 0; k < N_MODELS; k++) mm_model_free(m[k]);
}
END_TEST

/* The reclamation window itself: readers that only acquire and release, as
 * fast as they can, against a writer publishing a tiny model (cheap clones)
 * as fast as it can. Removing the writer's wait for the readers' epoch
 * (server.c) makes this fail under ThreadSanitizer or AddressSanitizer
 * (checked when writing this test). */
typedef struct stress {
    mm_server *server;
    atomic_int stop;
    uint64_t acquires, bad;
} stress;

static void *stress_reader(void *arg) {
    stress *st = arg;
    float x[2] = {0, 0}, out[2];
    while (!atomic_load(&st->stop)) {
        const mm_model *m;
        uint64_t v;
        if (mm_server_acquire(st->server, &m, &v) != MM_OK) {
            st->bad++;
            continue;
        }
        /* version v was published from a model whose biases are v */
        if (mm_model_forward(m, x, 1, out) != MM_OK || out[0] != (float)v) st->bad++;
        mm_server_release(st->server, m);
        st->acquires++;
    }
    return NULL;
}

START_TEST(test_reclamation_stress) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 2, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_IDENTITY));
    float w[4] = {0}, b[2] = {1, 1};
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 4, b, 2));
    stress st;
    memset(&st, 0, sizeof st);
    MM_ASSERT_OK(mm_server_create(&st.server, m));
    atomic_init(&st.stop, 0);
    stress rs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        rs[i] = st;
        rs[i].server = st.server;
        ck_assert_int_eq(pthread_create(&th[i], NULL, stress_reader, &rs[i]), 0);
    }
    for (uint64_t v = 2; v <= 20000; v++) {
        b[0] = b[1] = (float)v;
        MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 4, b, 2));
        uint64_t got;
        MM_ASSERT_OK(mm_server_publish(st.server, m, &got));
        ck_assert_uint_eq(got, v);
    }
    for (int i = 0; i < 2; i++) atomic_store(&rs[i].stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_uint_eq(rs[i].bad, 0);
    }
    ck_assert_uint_gt(rs[0].acquires + rs[1].acquires, 0);
    ck_assert_uint_eq(mm_server_live_snapshots(st.server), 1);
    mm_server_free(st.server);
    mm_model_free(m);
}
END_TEST

static Suite *server_suite(void) {
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("single");
    tcase_add_test(tc, test_versions_and_lifetimes);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("threads");
    tcase_set_timeout(tt, 600);
    tcase_add_test(tt, test_concurrent_dense);
    tcase_add_test(tt, test_concurrent_pruned_and_quantized);
    tcase_add_test(tt, test_reclamation_stress);
    suite_add_tcase(s, tt);
    return s;
}

int main(void) { return mm_test_run(server_suite()); }
