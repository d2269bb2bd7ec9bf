/* Save -> load -> continue training is bit-identical to never stopping.
 *
 * For SGD with momentum, Adam and AdamW, each with a cosine schedule (with
 * warmup, and with the horizon derived by fit): model A trains with fit for
 * 2 epochs plus some online steps, is saved with mm_optimizer_save, and both
 * A and a fresh model + optimizer B loaded from the file continue with the
 * same online steps and fits. All weights must match with memcmp, as must
 * the settings, the step counter and the learning rate. Also a save from
 * inside a fit callback at an epoch boundary, and the load error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"
#include "testutil.h"

static size_t get_params(const mm_model *m, float *buf) {
    size_t total = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        if (buf)
            MM_ASSERT_OK(mm_model_get_weights(m, l, buf + total, in * out, buf + total + in * out,
                                              out));
        total += in * out + out;
    }
    return total;
}

static void assert_same_weights(const mm_model *a, const mm_model *b, const char *when) {
    size_t na = get_params(a, NULL), nb = get_params(b, NULL);
    ck_assert_uint_eq(na, nb);
    float *pa = malloc(na * sizeof *pa), *pb = malloc(nb * sizeof *pb);
    get_params(a, pa);
    get_params(b, pb);
    ck_assert_msg(memcmp(pa, pb, na * sizeof(float)) == 0, "%s: weights differ (max %g)", when,
                  mm_test_max_abs_diff(pa, pb, na));
    free(pa);
    free(pb);
}

static void assert_same_settings(const mm_optimizer *a, const mm_optimizer *b) {
    ck_assert_int_eq(mm_optimizer_kind(a), mm_optimizer_kind(b));
    ck_assert_uint_eq(mm_optimizer_steps(a), mm_optimizer_steps(b));
    ck_assert(mm_optimizer_current_lr(a) == mm_optimizer_current_lr(b));
    for (int p = 1; p <= 20; p++) {
        double va, vb;
        mm_status sa = mm_optimizer_get(a, (mm_opt_param)p, &va);
        mm_status sb = mm_optimizer_get(b, (mm_opt_param)p, &vb);
        ck_assert_int_eq(sa, sb);
        if (sa == MM_OK)
            ck_assert_msg(va == vb, "setting %s: %.17g vs %.17g", mm_opt_param_name((mm_opt_param)p),
                          va, vb);
    }
}

static mm_dataset *make_data(size_t n, size_t dim, size_t classes, uint64_t seed) {
    float *x = malloc(n * dim * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    mm_test_fill(x, n * dim, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)((i * 7 + seed) % classes);
        x[i * dim + (size_t)y[i] % dim] += 1.5f;
    }
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, n, dim));
    free(x);
    free(y);
    return ds;
}

/* Online steps on generated samples; `offset` picks which ones. */
static void online_steps(mm_optimizer *o, int count, int offset) {
    float x[3 * 8];
    int32_t y[3];
    for (int s = 0; s < count; s++) {
        size_t n = 1 + (size_t)(s + offset) % 3;
        mm_test_fill(x, n * 8, 500 + (uint64_t)(s + offset), -1.5f, 1.5f);
        for (size_t i = 0; i < n; i++) y[i] = (int32_t)((s + offset + (int)i) % 3);
        MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, n, NULL));
    }
}

typedef struct resume_case {
    mm_optim_kind kind;
    double lr, total_steps;
} resume_case;

static void configure(mm_optimizer *o, const resume_case *rc) {
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, rc->lr));
    if (rc->kind == MM_OPTIM_SGD) {
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, 1e-3));
    } else {
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BETA2, 0.99));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, 0.02));
    }
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SCHEDULE, MM_SCHEDULE_COSINE));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WARMUP_STEPS, 4));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_TOTAL_STEPS, rc->total_steps));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MIN_LR, rc->lr / 20));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 7));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 2));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_SEED, 12345));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_CLIP_NORM, 5.0));
}

static void run_resume(const resume_case *rc) {
    char *path = mm_test_tmp_path(".mmf");
    mm_model *a;
    MM_ASSERT_OK(mm_model_create_from_spec(&a, "8-16-12-3", 77));
    mm_dataset *train = make_data(45, 8, 3, 1), *more = make_data(30, 8, 3, 2);
    mm_optimizer *oa;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, rc->kind));
    configure(oa, rc);

    MM_ASSERT_OK(mm_optimizer_fit(oa, train, NULL, NULL, NULL, NULL));
    online_steps(oa, 5, 0);
    MM_ASSERT_OK(mm_optimizer_save(oa, path));

    mm_model *b;
    mm_optimizer *ob;
    MM_ASSERT_OK(mm_model_load(&b, path));
    MM_ASSERT_OK(mm_optimizer_load(&ob, b, path));
    assert_same_weights(a, b, "after load");
    assert_same_settings(oa, ob);

    /* the same continuation on both */
    mm_optimizer *os[2] = {oa, ob};
    for (int k = 0; k < 2; k++) {
        online_steps(os[k], 6, 100);
        MM_ASSERT_OK(mm_optimizer_fit(os[k], more, NULL, NULL, NULL, NULL));
        online_steps(os[k], 4, 200);
        MM_ASSERT_OK(mm_optimizer_fit(os[k], train, NULL, NULL, NULL, NULL));
    }
    assert_same_weights(a, b, "after continuing");
    assert_same_settings(oa, ob);

    mm_optimizer_free(oa);
    mm_optimizer_free(ob);
    mm_model_free(a);
    mm_model_free(b);
    mm_dataset_free(train);
    mm_dataset_free(more);
    unlink(path);
    free(path);
}

START_TEST(resume_sgd_momentum) {
    resume_case rc = {MM_OPTIM_SGD, 0.05, 0};
    run_resume(&rc);
    rc.total_steps = 40;
    run_resume(&rc);
}
END_TEST

START_TEST(resume_adam) {
    resume_case rc = {MM_OPTIM_ADAM, 0.01, 0};
    run_resume(&rc);
    rc.total_steps = 40;
    run_resume(&rc);
}
END_TEST

START_TEST(resume_adamw) {
    resume_case rc = {MM_OPTIM_ADAMW, 0.01, 0};
    run_resume(&rc);
    rc.total_steps = 40;
    run_resume(&rc);
}
END_TEST

/* Save from the fit callback at the end of epoch 1 of a 3-epoch fit; a
 * loaded copy that fits 1 epoch ends where the uninterrupted fit ends (the
 * derived cosine horizon and the epoch counter agree). */
typedef struct save_at {
    mm_optimizer *opt;
    const char *path;
    int saved;
} save_at;

static int save_cb(const mm_fit_progress *p, void *user) {
    save_at *s = user;
    if (p->event == MM_FIT_EPOCH_END && p->epoch == 1) {
        MM_ASSERT_OK(mm_optimizer_save(s->opt, s->path));
        s->saved++;
    }
    return 0;
}

START_TEST(resume_from_fit_callback) {
    const mm_optim_kind kinds[] = {MM_OPTIM_SGD, MM_OPTIM_ADAM, MM_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        char *path = mm_test_tmp_path(".mmf");
        mm_model *a, *b;
        MM_ASSERT_OK(mm_model_create_from_spec(&a, "8-10-3:tanh", 5));
        mm_dataset *train = make_data(40, 8, 3, 3);
        mm_optimizer *oa, *ob;
        MM_ASSERT_OK(mm_optimizer_create(&oa, a, kinds[k]));
        resume_case rc = {kinds[k], kinds[k] == MM_OPTIM_SGD ? 0.05 : 0.01, 0};
        configure(oa, &rc);
        MM_ASSERT_OK(mm_optimizer_set(oa, MM_OPT_EPOCHS, 3));
        save_at s = {oa, path, 0};
        MM_ASSERT_OK(mm_optimizer_fit(oa, train, NULL, save_cb, &s, NULL));
        ck_assert_int_eq(s.saved, 1);

        MM_ASSERT_OK(mm_model_load(&b, path));
        MM_ASSERT_OK(mm_optimizer_load(&ob, b, path));
        MM_ASSERT_OK(mm_optimizer_set(ob, MM_OPT_EPOCHS, 1));
        MM_ASSERT_OK(mm_optimizer_fit(ob, train, NULL, NULL, NULL, NULL));
        assert_same_weights(a, b, "fit resumed from callback save");
        ck_assert_uint_eq(mm_optimizer_steps(oa), mm_optimizer_steps(ob));
        ck_assert(mm_optimizer_current_lr(oa) == mm_optimizer_current_lr(ob));

        mm_optimizer_free(oa);
        mm_optimizer_free(ob);
        mm_model_free(a);
        mm_model_free(b);
        mm_dataset_free(train);
        unlink(path);
        free(path);
    }
}
END_TEST

/* SGD without momentum has no state tensors; it still round-trips. */
START_TEST(resume_plain_sgd_without_state) {
    char *path = mm_test_tmp_path(".mmf");
    mm_model *a, *b;
    MM_ASSERT_OK(mm_model_create_from_spec(&a, "8-6-3", 9));
    mm_optimizer *oa, *ob;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, MM_OPTIM_SGD));
    online_steps(oa, 3, 0);
    MM_ASSERT_OK(mm_optimizer_save(oa, path));
    MM_ASSERT_OK(mm_model_load(&b, path));
    MM_ASSERT_OK(mm_optimizer_load(&ob, b, path));
    assert_same_settings(oa, ob);
    online_steps(oa, 3, 10);
    online_steps(ob, 3, 10);
    assert_same_weights(a, b, "plain sgd");
    mm_optimizer_free(oa);
    mm_optimizer_free(ob);
    mm_model_free(a);
    mm_model_free(b);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(load_errors) {
    char *path = mm_test_tmp_path(".mmf");
    mm_model *a, *other;
    MM_ASSERT_OK(mm_model_create_from_spec(&a, "8-6-3", 9));
    MM_ASSERT_OK(mm_model_create_from_spec(&other, "8-7-3", 9));
    mm_optimizer *o = (mm_optimizer *)1;
    /* a plain model file holds no optimizer state */
    MM_ASSERT_OK(mm_model_save(a, path));
    MM_ASSERT_STATUS(mm_optimizer_load(&o, a, path), MM_E_NOT_FOUND);
    ck_assert_ptr_null(o);
    /* state for a different architecture */
    mm_optimizer *oa;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, MM_OPTIM_ADAM));
    online_steps(oa, 2, 0);
    MM_ASSERT_OK(mm_optimizer_save(oa, path));
    MM_ASSERT_STATUS(mm_optimizer_load(&o, other, path), MM_E_SHAPE);
    ck_assert_ptr_null(o);
    /* argument checks, a missing file */
    MM_ASSERT_STATUS(mm_optimizer_load(NULL, a, path), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_load(&o, NULL, path), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_load(&o, a, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_save(NULL, path), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_save(oa, NULL), MM_E_INVALID_ARGUMENT);
    unlink(path);
    ck_assert_int_ne(mm_optimizer_load(&o, a, path), MM_OK);
    ck_assert_ptr_null(o);
    /* a save into a directory that does not exist fails cleanly */
    ck_assert_int_ne(mm_optimizer_save(oa, "/nonexistent-dir/x.mmf"), MM_OK);
    mm_optimizer_free(oa);
    mm_model_free(a);
    mm_model_free(other);
    free(path);
}
END_TEST

int main(void) {
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, resume_sgd_momentum);
    tcase_add_test(tc, resume_adam);
    tcase_add_test(tc, resume_adamw);
    tcase_add_test(tc, resume_from_fit_callback);
    tcase_add_test(tc, resume_plain_sgd_without_state);
    tcase_add_test(tc, load_errors);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
