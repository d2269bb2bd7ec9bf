/* mm_model through the public API: construction, specs, forward against a
 * hand computation, predict/evaluate, clone, weights access, describe, and
 * every error path. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "testutil.h"

/* Plain double-precision forward of a dense stack, for comparison. */
static void naive_forward(mm_model *m, const float *x, size_t n, double *result) {
    size_t L = mm_model_num_layers(m), width = 1024;
    double *cur = calloc(n * width, sizeof *cur), *nxt = calloc(n * width, sizeof *nxt);
    size_t in0 = mm_model_input_dim(m);
    for (size_t i = 0; i < n * in0; i++) cur[i] = x[i];
    for (size_t l = 0; l < L; l++) {
        size_t in, out;
        mm_activation act;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, &act));
        float *w = malloc(in * out * sizeof *w), *b = malloc(out * sizeof *b);
        MM_ASSERT_OK(mm_model_get_weights(m, l, w, in * out, b, out));
        for (size_t s = 0; s < n; s++)
            for (size_t o = 0; o < out; o++) {
                double z = b[o];
                for (size_t i = 0; i < in; i++) z += (double)w[o * in + i] * cur[s * in + i];
                switch (act) {
                case MM_ACT_RELU: z = z > 0 ? z : 0; break;
                case MM_ACT_LEAKY_RELU: z = z > 0 ? z : 0.01 * z; break;
                case MM_ACT_TANH: z = tanh(z); break;
                case MM_ACT_SIGMOID: z = 1 / (1 + exp(-z)); break;
                default: break;
                }
                nxt[s * out + o] = z;
            }
        free(w), free(b);
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    memcpy(result, cur, n * mm_model_output_dim(m) * sizeof *result);
    free(cur), free(nxt);
}

START_TEST(forward_matches_naive) {
    const char *specs[] = {"7-5-3", "7-16-9-4:tanh", "7-3:sigmoid", "7-20-20-2:leaky_relu",
                           "7-12-3:sigmoid,xavier"};
    size_t batches[] = {1, 2, 5, 33, 300};
    for (size_t si = 0; si < 5; si++) {
        mm_model *m;
        MM_ASSERT_OK(mm_model_create_from_spec(&m, specs[si], 42 + si));
        for (size_t bi = 0; bi < 5; bi++) {
            size_t n = batches[bi], c = mm_model_output_dim(m);
            float *x = malloc(n * 7 * sizeof *x), *y = malloc(n * c * sizeof *y);
            double *ref = malloc(n * c * sizeof *ref);
            mm_test_fill(x, n * 7, n + si, -2, 2);
            MM_ASSERT_OK(mm_model_forward(m, x, n, y));
            naive_forward(m, x, n, ref);
            for (size_t i = 0; i < n * c; i++)
                ck_assert_msg(fabs(y[i] - ref[i]) < 1e-4 * (1 + fabs(ref[i])),
                              "%s n=%zu [%zu]: %g vs %g", specs[si], n, i, y[i], ref[i]);
            free(x), free(y), free(ref);
        }
        mm_model_free(m);
    }
}
END_TEST

START_TEST(spec_parsing) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "784-256-128-10:relu", 1));
    ck_assert_uint_eq(mm_model_input_dim(m), 784);
    ck_assert_uint_eq(mm_model_output_dim(m), 10);
    ck_assert_uint_eq(mm_model_num_layers(m), 3);
    ck_assert_uint_eq(mm_model_num_params(m), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    ck_assert_uint_eq(mm_model_param_bytes(m), 4 * mm_model_num_params(m));
    mm_activation act;
    MM_ASSERT_OK(mm_model_layer_info(m, 2, NULL, NULL, NULL, &act));
    ck_assert_int_eq(act, MM_ACT_IDENTITY);
    mm_model_free(m);
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "4-3:tanh,mse", 1));
    ck_assert_int_eq(mm_model_loss(m), MM_LOSS_MSE);
    mm_model_free(m);
    const char *bad[] = {"", "784", "784-", "-10", "784-0-10", "784-abc", "784-10:swish",
                         "784-10 ", "99999999999999999999-3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (mm_model *)1;
        MM_ASSERT_STATUS(mm_model_create_from_spec(&m, bad[i], 1), MM_E_INVALID_ARGUMENT);
        ck_assert_ptr_null(m);
        ck_assert_msg(strlen(mm_last_error_message()) > 0, "no message for '%s'", bad[i]);
    }
}
END_TEST

START_TEST(same_seed_same_weights) {
    mm_model *a, *b, *c;
    MM_ASSERT_OK(mm_model_create_from_spec(&a, "30-20-5", 7));
    MM_ASSERT_OK(mm_model_create_from_spec(&b, "30-20-5", 7));
    MM_ASSERT_OK(mm_model_create_from_spec(&c, "30-20-5", 8));
    float wa[600], wb[600], wc[600];
    MM_ASSERT_OK(mm_model_get_weights(a, 0, wa, 600, NULL, 0));
    MM_ASSERT_OK(mm_model_get_weights(b, 0, wb, 600, NULL, 0));
    MM_ASSERT_OK(mm_model_get_weights(c, 0, wc, 600, NULL, 0));
    ck_assert_mem_eq(wa, wb, sizeof wa);
    ck_assert(memcmp(wa, wc, sizeof wa) != 0);
    /* He init for relu: std close to sqrt(2/30). */
    double s2 = 0;
    for (int i = 0; i < 600; i++) s2 += (double)wa[i] * wa[i];
    ck_assert_double_eq_tol(sqrt(s2 / 600), sqrt(2.0 / 30), 0.02);
    mm_model_free(a), mm_model_free(b), mm_model_free(c);
}
END_TEST

START_TEST(predict_and_evaluate) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "6-8-4", 3));
    enum { n = 300 };
    float *x = malloc(n * 6 * sizeof *x), *p = malloc(n * 4 * sizeof *p);
    int32_t *lab = malloc(n * sizeof *lab), *pred = malloc(n * sizeof *pred);
    mm_test_fill(x, n * 6, 9, -1, 1);
    MM_ASSERT_OK(mm_model_predict_proba(m, x, n, p));
    MM_ASSERT_OK(mm_model_predict(m, x, n, pred));
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        size_t best = 0;
        for (size_t j = 0; j < 4; j++) {
            sum += p[i * 4 + j];
            if (p[i * 4 + j] > p[i * 4 + best]) best = j;
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-5);
        ck_assert_int_eq(pred[i], (int32_t)best);
        lab[i] = i % 3 == 0 ? pred[i] : (pred[i] + 1) % 4; /* a third correct */
    }
    double loss, acc;
    MM_ASSERT_OK(mm_model_evaluate(m, x, lab, NULL, n, &loss, &acc));
    ck_assert_double_eq_tol(acc, 100.0 / 300.0, 1e-12);
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref -= log(p[i * 4 + lab[i]]);
    ck_assert_double_eq_tol(loss, ref / n, 1e-4);
    lab[17] = 4;
    MM_ASSERT_STATUS(mm_model_evaluate(m, x, lab, NULL, n, &loss, &acc), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "sample 17"));
    MM_ASSERT_STATUS(mm_model_evaluate(m, x, NULL, NULL, n, &loss, &acc), MM_E_INVALID_ARGUMENT);
    free(x), free(p), free(lab), free(pred);
    mm_model_free(m);
}
END_TEST

/* predict is the arg-max of forward and evaluate matches it, whichever
 * buffer the batch takes (stack for small batches, one heap block for large
 * ones, several chunks beyond 256 samples). */
START_TEST(predict_matches_forward_all_sizes) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "784-256-10", 8));
    enum { max_n = 300 };
    float *x = malloc(max_n * 784 * sizeof *x), *y = malloc(max_n * 10 * sizeof *y);
    int32_t *pred = malloc(max_n * sizeof *pred);
    mm_test_fill(x, max_n * 784, 4, 0, 1);
    const size_t sizes[] = {1, 2, 15, 16, 17, 40, 256, 257, 300};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const size_t n = sizes[t];
        MM_ASSERT_OK(mm_model_forward(m, x, n, y));
        MM_ASSERT_OK(mm_model_predict(m, x, n, pred));
        size_t hits = 0;
        for (size_t i = 0; i < n; i++) {
            size_t best = 0;
            for (size_t j = 1; j < 10; j++)
                if (y[i * 10 + j] > y[i * 10 + best]) best = j;
            ck_assert_msg(pred[i] == (int32_t)best, "n %zu sample %zu", n, i);
            hits += i % 2 == 0;
            pred[i] = i % 2 == 0 ? pred[i] : (pred[i] + 1) % 10; /* every other one right */
        }
        double loss, acc;
        MM_ASSERT_OK(mm_model_evaluate(m, x, pred, NULL, n, &loss, &acc));
        ck_assert_double_eq_tol(acc, (double)hits / (double)n, 1e-12);
        ck_assert(isfinite(loss));
    }
    free(x), free(y), free(pred);
    mm_model_free(m);
}
END_TEST

/* A NaN or infinite feature is refused by every inference call with
 * MM_E_NUMERIC naming the sample and feature, before anything is written;
 * mm_model_backward refuses it too. Before, predict answered class 0 and
 * evaluate (NaN, 0) with MM_OK. */
START_TEST(nonfinite_inputs_refused) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "6-8-3:relu", 2));
    enum { n = 300 };
    float *x = malloc(n * 6 * sizeof *x), *y = malloc(n * 3 * sizeof *y);
    int32_t *lab = malloc(n * sizeof *lab), *pred = malloc(n * sizeof *pred);
    mm_test_fill(x, n * 6, 5, -1, 1);
    for (size_t i = 0; i < n; i++) lab[i] = (int32_t)(i % 3);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"NaN", "inf", "-inf"};
    const size_t where[2] = {2 * 6 + 5, (n - 1) * 6}; /* sample 2 feature 5; the last sample */
    for (size_t b = 0; b < 3; b++)
        for (size_t w = 0; w < 2; w++) {
            const float keep = x[where[w]];
            x[where[w]] = bad[b];
            char want[96];
            snprintf(want, sizeof want, "input sample %zu, feature %zu is %s", where[w] / 6,
                     where[w] % 6, names[b]);
            for (size_t i = 0; i < n * 3; i++) y[i] = -7.0f;
            for (size_t i = 0; i < n; i++) pred[i] = -7;
            MM_ASSERT_STATUS(mm_model_forward(m, x, n, y), MM_E_NUMERIC);
            ck_assert_msg(strstr(mm_last_error_message(), want), "%s", mm_last_error_message());
            MM_ASSERT_STATUS(mm_model_predict_proba(m, x, n, y), MM_E_NUMERIC);
            ck_assert_msg(strstr(mm_last_error_message(), want), "%s", mm_last_error_message());
            for (size_t i = 0; i < n * 3; i++) ck_assert(y[i] == -7.0f); /* nothing written */
            MM_ASSERT_STATUS(mm_model_predict(m, x, n, pred), MM_E_NUMERIC);
            ck_assert_msg(strstr(mm_last_error_message(), want), "%s", mm_last_error_message());
            for (size_t i = 0; i < n; i++) ck_assert_int_eq(pred[i], -7);
            double loss = 42, acc = 42;
            MM_ASSERT_STATUS(mm_model_evaluate(m, x, lab, NULL, n, &loss, &acc), MM_E_NUMERIC);
            ck_assert_msg(strstr(mm_last_error_message(), want), "%s", mm_last_error_message());
            ck_assert(loss == 42 && acc == 42);
            MM_ASSERT_STATUS(mm_model_backward(m, x, lab, NULL, n, &loss), MM_E_NUMERIC);
            ck_assert_msg(strstr(mm_last_error_message(), want), "%s", mm_last_error_message());
            /* one sample alone, and the samples before the bad one still work */
            const size_t s = where[w] / 6;
            MM_ASSERT_STATUS(mm_model_predict(m, x + s * 6, 1, pred), MM_E_NUMERIC);
            ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "input sample 0,"));
            MM_ASSERT_OK(mm_model_predict(m, x, s, pred));
            x[where[w]] = keep;
        }
    MM_ASSERT_OK(mm_model_predict(m, x, n, pred));
    free(x), free(y), free(lab), free(pred);
    mm_model_free(m);
}
END_TEST

START_TEST(clone_is_deep) {
    mm_model *m, *c;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "5-4-3:tanh,mse", 11));
    MM_ASSERT_OK(mm_model_clone(m, &c));
    ck_assert_int_eq(mm_model_loss(c), MM_LOSS_MSE);
    float x[5] = {1, 2, 3, 4, 5}, ya[3], yb[3], w[20];
    MM_ASSERT_OK(mm_model_forward(m, x, 1, ya));
    MM_ASSERT_OK(mm_model_forward(c, x, 1, yb));
    ck_assert_mem_eq(ya, yb, sizeof ya);
    memset(w, 0, sizeof w);
    MM_ASSERT_OK(mm_model_set_weights(c, 0, w, 20, NULL, 0));
    MM_ASSERT_OK(mm_model_forward(m, x, 1, yb));
    ck_assert_mem_eq(ya, yb, sizeof ya); /* original untouched */
    ck_assert_str_eq(mm_model_lineage(m), mm_model_lineage(c));
    mm_model_free(m);
    mm_model_free(c);
}
END_TEST

START_TEST(weights_errors) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "3-2", 1));
    float w[6] = {0}, b[2] = {0};
    MM_ASSERT_STATUS(mm_model_set_weights(m, 0, w, 5, b, 2), MM_E_SHAPE);
    MM_ASSERT_STATUS(mm_model_set_weights(m, 1, w, 6, b, 2), MM_E_OUT_OF_RANGE);
    w[4] = NAN;
    MM_ASSERT_STATUS(mm_model_set_weights(m, 0, w, 6, b, 2), MM_E_NUMERIC);
    w[4] = INFINITY;
    MM_ASSERT_STATUS(mm_model_set_weights(m, 0, w, 6, NULL, 0), MM_E_NUMERIC);
    MM_ASSERT_STATUS(mm_model_add_dense(m, 0, MM_ACT_RELU), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_add_dense(m, 3, (mm_activation)99), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_set_loss(m, (mm_loss)7), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_set_leaky_slope(m, 1.5f), MM_E_OUT_OF_RANGE);
    ck_assert_uint_eq(mm_model_num_layers(m), 1);
    mm_model_free(m);
}
END_TEST

START_TEST(null_and_empty) {
    mm_model *m = NULL;
    mm_model_free(NULL);
    MM_ASSERT_STATUS(mm_model_create(NULL, 3, 1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_create(&m, 0, 1), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(m);
    MM_ASSERT_OK(mm_model_create(&m, 3, 1));
    float x[3] = {0}, y[3];
    int32_t lab = 0;
    MM_ASSERT_STATUS(mm_model_forward(m, x, 1, y), MM_E_STATE);
    MM_ASSERT_STATUS(mm_model_backward(m, x, &lab, NULL, 1, NULL), MM_E_STATE);
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_IDENTITY));
    MM_ASSERT_STATUS(mm_model_forward(m, NULL, 1, y), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_forward(m, x, 0, y), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_forward(NULL, x, 1, y), MM_E_INVALID_ARGUMENT);
    ck_assert_str_eq(mm_status_name(mm_last_error()), "MM_E_INVALID_ARGUMENT");
    ck_assert_str_eq(mm_status_string(MM_E_SHAPE), "shape mismatch");
    ck_assert_str_eq(mm_status_string((mm_status)-999), "unknown status");
    mm_model_free(m);
}
END_TEST

START_TEST(describe_text) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "784-256-10", 1));
    size_t need;
    MM_ASSERT_OK(mm_model_describe(m, NULL, 0, &need));
    char *buf = malloc(need + 1);
    size_t need2;
    MM_ASSERT_OK(mm_model_describe(m, buf, need + 1, &need2));
    ck_assert_uint_eq(need, need2);
    ck_assert_uint_eq(strlen(buf), need);
    ck_assert_ptr_nonnull(strstr(buf, "784 -> 256"));
    ck_assert_ptr_nonnull(strstr(buf, "203530 params"));
    char small[10];
    MM_ASSERT_OK(mm_model_describe(m, small, sizeof small, NULL));
    ck_assert_uint_eq(strlen(small), 9); /* truncated, terminated */
    free(buf);
    mm_model_free(m);
}
END_TEST

START_TEST(version_info) {
    ck_assert_uint_eq(mm_version_number(), MM_VERSION_NUMBER);
    ck_assert_str_eq(mm_version_string(), MM_VERSION_STRING);
}
END_TEST

/* Many threads run inference (forward, predict) on one shared model; each
 * must get exactly the single-threaded result (no shared scratch). */
typedef struct {
    const mm_model *m;
    const float *x;
    const float *want;
    const int32_t *want_label;
    size_t n;
    int ok;
} reader_arg;

static void *reader(void *p) {
    reader_arg *a = p;
    float *y = malloc(a->n * 10 * sizeof *y);
    a->ok = 1;
    for (int it = 0; it < 50; it++) {
        size_t n = 1 + (size_t)it % a->n;
        if (mm_model_forward(a->m, a->x, n, y) != MM_OK ||
            memcmp(y, a->want, n * 10 * sizeof *y) != 0)
            a->ok = 0;
        int32_t lab[16];
        if (mm_model_predict(a->m, a->x, n, lab) != MM_OK) a->ok = 0;
        for (size_t i = 0; i < n; i++)
            if (lab[i] != a->want_label[i]) a->ok = 0;
    }
    free(y);
    return NULL;
}

START_TEST(concurrent_inference) {
    mm_model *m;
    MM_ASSERT_OK(mm_backend_select(MM_BACKEND_REFERENCE));
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "50-40-10", 5));
    enum { n = 8 };
    float x[n * 50], want[n * 10];
    mm_test_fill(x, n * 50, 1, 0, 1);
    MM_ASSERT_OK(mm_model_forward(m, x, n, want));
    int32_t want_label[n];
    MM_ASSERT_OK(mm_model_predict(m, x, n, want_label));
    pthread_t th[4];
    reader_arg args[4];
    /* Row results do not depend on the batch size in the reference backend. */
    for (int i = 0; i < 4; i++) {
        args[i] = (reader_arg){m, x, want, want_label, n, 0};
        pthread_create(&th[i], NULL, reader, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert(args[i].ok);
    }
    mm_model_free(m);
}
END_TEST

static Suite *model_suite(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, forward_matches_naive);
    tcase_add_test(tc, spec_parsing);
    tcase_add_test(tc, same_seed_same_weights);
    tcase_add_test(tc, predict_and_evaluate);
    tcase_add_test(tc, predict_matches_forward_all_sizes);
    tcase_add_test(tc, nonfinite_inputs_refused);
    tcase_add_test(tc, clone_is_deep);
    tcase_add_test(tc, weights_errors);
    tcase_add_test(tc, null_and_empty);
    tcase_add_test(tc, describe_text);
    tcase_add_test(tc, version_info);
    tcase_add_test(tc, concurrent_inference);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(model_suite()); }
