/* Gradient checks: analytic gradients from mm_model_backward against central
 * finite differences of the loss, for every activation and loss, on both
 * kernel backends. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "mm/mm.h"
#include "testutil.h"

enum { N = 4, IN = 5, H = 6, OUT = 3 };

/* Loss of the model as a function of one parameter, in double via evaluate. */
static double loss_at(mm_model *m, const float *x, const int32_t *y, const float *t) {
    double loss;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, t, N, &loss, NULL));
    return loss;
}

static void check_model(mm_activation act, mm_loss lossk, bool use_targets, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, IN, seed));
    MM_ASSERT_OK(mm_model_add_dense(m, H, act));
    MM_ASSERT_OK(mm_model_add_dense(m, H, act));
    MM_ASSERT_OK(mm_model_add_dense(m, OUT, lossk == MM_LOSS_MSE ? act : MM_ACT_IDENTITY));
    MM_ASSERT_OK(mm_model_set_loss(m, lossk));
    if (act == MM_ACT_LEAKY_RELU) MM_ASSERT_OK(mm_model_set_leaky_slope(m, 0.1f));

    float x[N * IN], t[N * OUT];
    int32_t y[N] = {0, 2, 1, 2};
    mm_test_fill(x, N * IN, seed + 1, -1.5f, 1.5f);
    mm_test_fill(t, N * OUT, seed + 2, -0.5f, 0.5f);
    const float *targets = use_targets ? t : NULL;

    /* Biases away from zero so relu kinks are rarely within eps. */
    for (size_t l = 0; l < 3; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        float b[H];
        mm_test_fill(b, out, seed + 10 + l, -0.3f, 0.3f);
        MM_ASSERT_OK(mm_model_set_weights(m, l, NULL, 0, b, out));
    }

    double loss;
    MM_ASSERT_OK(mm_model_backward(m, x, y, targets, N, &loss));
    ck_assert(isfinite(loss));
    ck_assert_double_eq_tol(loss, loss_at(m, x, y, targets), 1e-6);

    const double eps = 1e-3;
    size_t checked = 0, bad = 0;
    for (size_t l = 0; l < 3; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        size_t wn = in * out;
        float *w = malloc(wn * sizeof *w), *b = malloc(out * sizeof *b);
        float *dw = malloc(wn * sizeof *dw), *db = malloc(out * sizeof *db);
        MM_ASSERT_OK(mm_model_get_weights(m, l, w, wn, b, out));
        MM_ASSERT_OK(mm_model_get_gradients(m, l, dw, wn, db, out));
        for (int which = 0; which < 2; which++) {
            float *p = which ? b : w, *g = which ? db : dw;
            size_t cnt = which ? out : wn;
            for (size_t i = 0; i < cnt; i++) {
                float orig = p[i];
                p[i] = (float)(orig + eps);
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, wn, b, out));
                double lp = loss_at(m, x, y, targets);
                p[i] = (float)(orig - eps);
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, wn, b, out));
                double lm = loss_at(m, x, y, targets);
                p[i] = orig;
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, wn, b, out));
                double num = (lp - lm) / (2 * eps);
                double err = fabs(num - g[i]) / fmax(1e-2, fabs(num) + fabs(g[i]));
                checked++;
                if (err > 2e-2) bad++;
            }
        }
        free(w), free(b), free(dw), free(db);
    }
    /* A relu kink inside +-eps can spoil a rare entry; nothing more. */
    ck_assert_msg(bad <= checked / 100, "act %s loss %s: %zu of %zu gradients disagree",
                  mm_activation_name(act), mm_loss_name(lossk), bad, checked);
    mm_model_free(m);
}

static void all_backends(void (*fn)(mm_backend)) {
    fn(MM_BACKEND_REFERENCE);
    if (mm_backend_select(MM_BACKEND_BLIS) == MM_OK) fn(MM_BACKEND_BLIS);
    mm_clear_error();
}

static void xent_all_activations(mm_backend b) {
    MM_ASSERT_OK(mm_backend_select(b));
    for (int a = MM_ACT_IDENTITY; a <= MM_ACT_SIGMOID; a++)
        check_model((mm_activation)a, MM_LOSS_SOFTMAX_XENT, false, 100 + (uint64_t)a);
}

static void mse_all_activations(mm_backend b) {
    MM_ASSERT_OK(mm_backend_select(b));
    for (int a = MM_ACT_IDENTITY; a <= MM_ACT_SIGMOID; a++) {
        check_model((mm_activation)a, MM_LOSS_MSE, true, 200 + (uint64_t)a);
        check_model((mm_activation)a, MM_LOSS_MSE, false, 300 + (uint64_t)a); /* one-hot labels */
    }
}

START_TEST(gradcheck_softmax_xent) { all_backends(xent_all_activations); }
END_TEST

START_TEST(gradcheck_mse) { all_backends(mse_all_activations); }
END_TEST

/* Softmax cross-entropy stays finite for huge logits (log-sum-exp). */
START_TEST(xent_stable_for_large_logits) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 2, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_IDENTITY));
    float w[4] = {1000, 0, 0, 1000}, x[2] = {1, 0}, b[2] = {0, 0};
    MM_ASSERT_OK(mm_model_set_weights(m, 0, w, 4, b, 2));
    int32_t y = 1;
    double loss;
    MM_ASSERT_OK(mm_model_backward(m, x, &y, NULL, 1, &loss));
    ck_assert_double_eq_tol(loss, 1000.0, 1e-3);
    float dw[4];
    MM_ASSERT_OK(mm_model_get_gradients(m, 0, dw, 4, NULL, 0));
    ck_assert_float_eq_tol(dw[0], 1.0f, 1e-6f);  /* p0 - 0 for x0 = 1 */
    ck_assert_float_eq_tol(dw[2], -1.0f, 1e-6f); /* p1 - 1 */
    mm_model_free(m);
}
END_TEST

static Suite *gradcheck_suite(void) {
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("finite differences");
    tcase_add_test(tc, gradcheck_softmax_xent);
    tcase_add_test(tc, gradcheck_mse);
    tcase_add_test(tc, xent_stable_for_large_logits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(gradcheck_suite()); }
