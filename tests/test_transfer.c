/* Retraining and transfer learning: frozen layers stay bit-identical under
 * every optimizer (weights and optimizer state, fused SGD path and fit),
 * unfreezing trains them again, backward of the trainable part equals the
 * full backward, new heads of another size train after mm_optimizer_sync,
 * per-layer learning rates (scale 0 = frozen), numeric trouble (huge
 * learning rate, weight decay overflow, exploding gradients) refused with
 * MM_E_NUMERIC and nothing changed, and save/load keeps flags, scales and
 * per-parameter step counters. Links the internals to compare optimizer
 * state directly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"
#include "optim/optim_internal.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct snap {
    float *w[8], *b[8];
    size_t wn[8], bn[8], L;
} snap;

static void snap_take(const mm_model *m, snap *s) {
    memset(s, 0, sizeof *s);
    s->L = mm_model_num_layers(m);
    ck_assert(s->L <= 8);
    for (size_t l = 0; l < s->L; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        s->wn[l] = in * out;
        s->bn[l] = out;
        s->w[l] = malloc(in * out * sizeof(float));
        s->b[l] = malloc(out * sizeof(float));
        MM_ASSERT_OK(mm_model_get_weights(m, l, s->w[l], s->wn[l], s->b[l], s->bn[l]));
    }
}

static void snap_free(snap *s) {
    for (size_t l = 0; l < s->L; l++) {
        free(s->w[l]);
        free(s->b[l]);
    }
}

/* 1 if layer l of m equals the snapshot bit for bit. */
static int layer_same(const mm_model *m, const snap *s, size_t l) {
    float *w = malloc(s->wn[l] * sizeof(float)), *b = malloc(s->bn[l] * sizeof(float));
    MM_ASSERT_OK(mm_model_get_weights(m, l, w, s->wn[l], b, s->bn[l]));
    int same = memcmp(w, s->w[l], s->wn[l] * sizeof(float)) == 0 &&
               memcmp(b, s->b[l], s->bn[l] * sizeof(float)) == 0;
    free(w);
    free(b);
    return same;
}

static int model_same(const mm_model *m, const snap *s) {
    for (size_t l = 0; l < s->L; l++)
        if (!layer_same(m, s, l)) return 0;
    return 1;
}

/* A copy of every state tensor and counter of the optimizer. */
typedef struct opt_snap {
    float *state[16][MM_OPTIM_MAX_STATE];
    uint64_t t[16];
    size_t n_slots;
    uint64_t step, gcount;
    double gavg;
} opt_snap;

static void opt_snap_take(const mm_optimizer *o, opt_snap *s) {
    memset(s, 0, sizeof *s);
    ck_assert(o->n_slots <= 16);
    s->n_slots = o->n_slots;
    s->step = o->step;
    s->gcount = o->gnorm_count;
    s->gavg = o->gnorm_avg;
    for (size_t i = 0; i < o->n_slots; i++) {
        const mm_opt_slot *sl = &o->slots[i];
        s->t[i] = sl->t;
        for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++) {
            if (!sl->state[k]) continue;
            size_t n = sl->rows * sl->cols;
            s->state[i][k] = malloc(n * sizeof(float));
            memcpy(s->state[i][k], sl->state[k], n * sizeof(float));
        }
    }
}

static void opt_snap_free(opt_snap *s) {
    for (size_t i = 0; i < s->n_slots; i++)
        for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++) free(s->state[i][k]);
}

/* 1 if slot i's state and counter equal the snapshot (state never allocated
 * counts as equal to a zero snapshot). */
static int slot_same(const mm_optimizer *o, const opt_snap *s, size_t i) {
    const mm_opt_slot *sl = &o->slots[i];
    if (sl->t != s->t[i]) return 0;
    const size_t n = sl->rows * sl->cols;
    for (size_t k = 0; k < MM_OPTIM_MAX_STATE; k++) {
        const float *now = sl->state[k], *then = s->state[i][k];
        if (!now && !then) continue;
        for (size_t e = 0; e < n; e++) {
            float a = now ? now[e] : 0.0f, b = then ? then[e] : 0.0f;
            if (memcmp(&a, &b, sizeof a) != 0) return 0;
        }
    }
    return 1;
}

static int opt_same(const mm_optimizer *o, const opt_snap *s) {
    if (o->n_slots != s->n_slots || o->step != s->step || o->gnorm_count != s->gcount ||
        memcmp(&o->gnorm_avg, &s->gavg, sizeof s->gavg) != 0)
        return 0;
    for (size_t i = 0; i < o->n_slots; i++)
        if (!slot_same(o, s, i)) return 0;
    return 1;
}

/* Blobs: class k centred at 2.5 on axis k (mod dim), uniform noise. */
static void make_blobs(float *x, int32_t *y, size_t n, size_t dim, size_t classes,
                       uint64_t seed) {
    mm_test_fill(x, n * dim, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % classes);
        x[i * dim + (size_t)y[i] % dim] += 2.5f;
    }
}

#define DIM 8
#define NS 64
static float X[NS * DIM];
static int32_t Y[NS];

static void setup(void) { make_blobs(X, Y, NS, DIM, 3, 11); }

static mm_model *model3(uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "8-16-12-3:relu", seed));
    return m;
}

typedef struct algo_case {
    mm_optim_kind kind;
    double lr, momentum, nesterov, wd;
    const char *name;
} algo_case;

static const algo_case algos[] = {
    {MM_OPTIM_SGD, 0.05, 0.0, 0, 0.0, "sgd (fused)"},
    {MM_OPTIM_SGD, 0.05, 0.9, 0, 1e-2, "sgd+momentum+wd"},
    {MM_OPTIM_SGD, 0.05, 0.9, 1, 1e-2, "sgd+nesterov+wd"},
    {MM_OPTIM_ADAM, 1e-2, 0.0, 0, 1e-2, "adam+l2"},
    {MM_OPTIM_ADAMW, 1e-2, 0.0, 0, 0.1, "adamw"},
};
#define N_ALGOS (sizeof algos / sizeof algos[0])

static mm_optimizer *make_opt(mm_model *m, const algo_case *a) {
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, a->kind));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, a->lr));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_WEIGHT_DECAY, a->wd));
    if (a->kind == MM_OPTIM_SGD) {
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, a->momentum));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_NESTEROV, a->nesterov));
    }
    return o;
}

static void train(mm_optimizer *o, int steps) {
    for (int s = 0; s < steps; s++) {
        size_t start = (size_t)(s * 4) % NS;
        MM_ASSERT_OK(mm_optimizer_step(o, X + start * DIM, Y + start, NULL, 4, NULL));
    }
}

/* ---- freezing ---------------------------------------------------------- */

START_TEST(frozen_layers_stay_bit_identical) {
    for (size_t a = 0; a < N_ALGOS; a++) {
        for (size_t frozen_upto = 1; frozen_upto <= 2; frozen_upto++) {
            mm_model *m = model3(3);
            mm_optimizer *o = make_opt(m, &algos[a]);
            train(o, 5); /* state exists for every layer before freezing */
            for (size_t l = 0; l < frozen_upto; l++) MM_ASSERT_OK(mm_model_set_trainable(m, l, 0));
            ck_assert_int_eq(mm_model_layer_trainable(m, 0), 0);
            ck_assert_int_eq(mm_model_layer_trainable(m, 2), 1);
            snap s;
            opt_snap os;
            snap_take(m, &s);
            opt_snap_take(o, &os);
            train(o, 60);
            for (size_t l = 0; l < 3; l++)
                ck_assert_msg(layer_same(m, &s, l) == (l < frozen_upto), "%s: layer %zu %s",
                              algos[a].name, l, l < frozen_upto ? "changed" : "did not train");
            for (size_t i = 0; i < o->n_slots; i++)
                ck_assert_msg(slot_same(o, &os, i) == (o->slots[i].layer < frozen_upto),
                              "%s: slot %zu state", algos[a].name, i);
            ck_assert_uint_eq(o->step, os.step + 60);
            /* unfreeze: the layers train again */
            for (size_t l = 0; l < frozen_upto; l++) MM_ASSERT_OK(mm_model_set_trainable(m, l, 1));
            train(o, 10);
            for (size_t l = 0; l < frozen_upto; l++)
                ck_assert_msg(!layer_same(m, &s, l), "%s: unfrozen layer %zu did not train",
                              algos[a].name, l);
            ck_assert_uint_eq(o->slots[0].t, os.t[0] + 10);
            snap_free(&s);
            opt_snap_free(&os);
            mm_optimizer_free(o);
            mm_model_free(m);
        }
    }
}
END_TEST

START_TEST(fit_keeps_frozen_layers) {
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, X, Y, NS, DIM));
    for (size_t a = 0; a < N_ALGOS; a++) {
        mm_model *m = model3(4);
        MM_ASSERT_OK(mm_model_set_trainable(m, 1, 0));
        mm_optimizer *o = make_opt(m, &algos[a]);
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 5));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 8));
        snap s;
        snap_take(m, &s);
        MM_ASSERT_OK(mm_optimizer_fit(o, ds, ds, NULL, NULL, NULL));
        ck_assert_msg(layer_same(m, &s, 1), "%s: fit changed a frozen layer", algos[a].name);
        ck_assert(!layer_same(m, &s, 0) && !layer_same(m, &s, 2));
        snap_free(&s);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    mm_dataset_free(ds);
}
END_TEST

START_TEST(all_frozen_is_refused) {
    mm_model *m = model3(5);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    for (size_t l = 0; l < 3; l++) MM_ASSERT_OK(mm_model_set_trainable(m, l, 0));
    MM_ASSERT_STATUS(mm_optimizer_step(o, X, Y, NULL, 4, NULL), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "frozen"));
    MM_ASSERT_STATUS(mm_model_set_trainable(m, 3, 0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_model_set_trainable(NULL, 0, 0), MM_E_INVALID_ARGUMENT);
    ck_assert_int_eq(mm_model_layer_trainable(m, 3), -1);
    ck_assert_int_eq(mm_model_layer_trainable(NULL, 0), -1);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* Backward with frozen lower layers gives the same gradients for the
 * trainable layers as the full backward, bit for bit (the same kernels on
 * the same deltas), and zeros for the frozen ones. */
START_TEST(trainable_gradients_equal_full_backward) {
    mm_model *m = model3(6);
    double loss_full, loss_part;
    MM_ASSERT_OK(mm_model_backward(m, X, Y, NULL, 16, &loss_full));
    float full_w[3][16 * 12], full_b[3][16], w[16 * 12], b[16];
    size_t wn[3], bn[3];
    for (size_t l = 0; l < 3; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        wn[l] = in * out;
        bn[l] = out;
        MM_ASSERT_OK(mm_model_get_gradients(m, l, full_w[l], wn[l], full_b[l], bn[l]));
    }
    for (size_t lo = 1; lo <= 2; lo++) {
        for (size_t l = 0; l < 3; l++) MM_ASSERT_OK(mm_model_set_trainable(m, l, l >= lo));
        MM_ASSERT_OK(mm_model_backward(m, X, Y, NULL, 16, &loss_part));
        ck_assert(loss_full == loss_part);
        for (size_t l = 0; l < 3; l++) {
            MM_ASSERT_OK(mm_model_get_gradients(m, l, w, wn[l], b, bn[l]));
            if (l >= lo) {
                ck_assert_msg(memcmp(w, full_w[l], wn[l] * sizeof(float)) == 0 &&
                                  memcmp(b, full_b[l], bn[l] * sizeof(float)) == 0,
                              "layer %zu gradient differs with layers < %zu frozen", l, lo);
            } else {
                for (size_t i = 0; i < wn[l]; i++) ck_assert(w[i] == 0.0f);
            }
        }
    }
    /* a frozen middle layer still passes the gradient down to a trainable
     * layer below it */
    MM_ASSERT_OK(mm_model_set_trainable(m, 0, 1));
    MM_ASSERT_OK(mm_model_set_trainable(m, 1, 0));
    MM_ASSERT_OK(mm_model_backward(m, X, Y, NULL, 16, NULL));
    MM_ASSERT_OK(mm_model_get_gradients(m, 0, w, wn[0], b, bn[0]));
    ck_assert(memcmp(w, full_w[0], wn[0] * sizeof(float)) == 0);
    mm_model_free(m);
}
END_TEST

/* ---- heads, truncation, sync ------------------------------------------- */

START_TEST(replace_head_then_train) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "8-16-12-10:relu", 7));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    int32_t y10[NS];
    for (size_t i = 0; i < NS; i++) y10[i] = (int32_t)(i % 10);
    MM_ASSERT_OK(mm_optimizer_step(o, X, y10, NULL, 8, NULL));
    float *body_m = o->slots[0].state[0];
    const uint64_t body_t = o->slots[0].t;

    /* a new head of another size: the optimizer notices */
    MM_ASSERT_STATUS(mm_model_replace_head(m, 0, MM_ACT_IDENTITY, 1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_model_replace_head(m, 3, MM_ACT_IDENTITY, 99));
    ck_assert_uint_eq(mm_model_output_dim(m), 3);
    ck_assert_uint_eq(mm_model_num_layers(m), 3);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(m), "replace_head"));
    MM_ASSERT_STATUS(mm_optimizer_step(o, X, Y, NULL, 8, NULL), MM_E_STATE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "mm_optimizer_sync"));
    MM_ASSERT_OK(mm_optimizer_sync(o));
    ck_assert_ptr_eq(o->slots[0].state[0], body_m); /* body state kept */
    ck_assert_uint_eq(o->slots[0].t, body_t);
    ck_assert_uint_eq(o->slots[4].t, 0); /* fresh head */
    for (size_t e = 0; e < 3 * 12; e++) ck_assert(o->slots[4].state[0][e] == 0.0f);

    /* the head is seeded: the same seed gives the same head */
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(m, &c));
    MM_ASSERT_OK(mm_model_replace_head(c, 3, MM_ACT_IDENTITY, 99));
    snap sm;
    snap_take(m, &sm);
    ck_assert(model_same(c, &sm));
    snap_free(&sm);
    mm_model_free(c);

    /* a new head of the SAME size is another layer too */
    MM_ASSERT_OK(mm_model_replace_head(m, 3, MM_ACT_IDENTITY, 100));
    MM_ASSERT_STATUS(mm_optimizer_step(o, X, Y, NULL, 8, NULL), MM_E_STATE);
    MM_ASSERT_OK(mm_optimizer_sync(o));

    /* train the new task with the body frozen */
    MM_ASSERT_OK(mm_model_set_trainable(m, 0, 0));
    MM_ASSERT_OK(mm_model_set_trainable(m, 1, 0));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.02));
    double acc0, acc1;
    MM_ASSERT_OK(mm_model_evaluate(m, X, Y, NULL, NS, NULL, &acc0));
    for (int ep = 0; ep < 60; ep++) train(o, NS / 4);
    MM_ASSERT_OK(mm_model_evaluate(m, X, Y, NULL, NS, NULL, &acc1));
    ck_assert_msg(acc1 >= 0.9 && acc1 > acc0, "head-only training: %.3f -> %.3f", acc0, acc1);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

START_TEST(truncate_and_add_layers) {
    mm_model *m = model3(8);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
    train(o, 3);
    MM_ASSERT_OK(mm_optimizer_set_layer_lr_scale(o, 0, 0.25));
    MM_ASSERT_STATUS(mm_model_truncate(m, 4), MM_E_OUT_OF_RANGE);
    MM_ASSERT_OK(mm_model_truncate(m, 3)); /* no-op */
    MM_ASSERT_OK(mm_model_truncate(m, 2));
    ck_assert_uint_eq(mm_model_output_dim(m), 12);
    MM_ASSERT_STATUS(mm_optimizer_step(o, X, Y, NULL, 4, NULL), MM_E_STATE);
    MM_ASSERT_OK(mm_model_add_dense(m, 6, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_IDENTITY));
    MM_ASSERT_STATUS(mm_optimizer_set_layer_lr_scale(o, 0, 1.0), MM_E_STATE);
    MM_ASSERT_OK(mm_optimizer_sync(o));
    ck_assert_uint_eq(o->n_slots, 8);
    double scale;
    MM_ASSERT_OK(mm_optimizer_get_layer_lr_scale(o, 0, &scale));
    ck_assert(scale == 0.25);
    MM_ASSERT_OK(mm_optimizer_get_layer_lr_scale(o, 3, &scale));
    ck_assert(scale == 1.0);
    train(o, 5);
    MM_ASSERT_OK(mm_model_truncate(m, 0));
    MM_ASSERT_STATUS(mm_optimizer_sync(o), MM_E_STATE);
    MM_ASSERT_STATUS(mm_optimizer_step(o, X, Y, NULL, 4, NULL), MM_E_STATE);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* ---- per-layer learning rates ------------------------------------------ */

START_TEST(lr_scale_zero_equals_frozen) {
    for (size_t a = 0; a < N_ALGOS; a++) {
        mm_model *fz = model3(9), *sc = model3(9);
        mm_optimizer *of = make_opt(fz, &algos[a]), *osc = make_opt(sc, &algos[a]);
        MM_ASSERT_OK(mm_model_set_trainable(fz, 0, 0));
        MM_ASSERT_OK(mm_optimizer_set_layer_lr_scale(osc, 0, 0.0));
        train(of, 40);
        train(osc, 40);
        snap s;
        snap_take(fz, &s);
        ck_assert_msg(model_same(sc, &s), "%s: lr scale 0 differs from frozen", algos[a].name);
        snap_free(&s);
        mm_optimizer_free(of);
        mm_optimizer_free(osc);
        mm_model_free(fz);
        mm_model_free(sc);
    }
    /* a scale changes the update: 0.5 moves less than 1 in the first step */
    mm_model *a = model3(10), *b = model3(10);
    mm_optimizer *oa, *ob;
    MM_ASSERT_OK(mm_optimizer_create(&oa, a, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_create(&ob, b, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set_layer_lr_scale(ob, 2, 0.5));
    snap s0;
    snap_take(a, &s0);
    MM_ASSERT_OK(mm_optimizer_step(oa, X, Y, NULL, 4, NULL));
    MM_ASSERT_OK(mm_optimizer_step(ob, X, Y, NULL, 4, NULL));
    float wa[3 * 12], wb[3 * 12];
    MM_ASSERT_OK(mm_model_get_weights(a, 2, wa, 36, NULL, 0));
    MM_ASSERT_OK(mm_model_get_weights(b, 2, wb, 36, NULL, 0));
    for (size_t i = 0; i < 36; i++) {
        double da = wa[i] - s0.w[2][i], db = wb[i] - s0.w[2][i];
        ck_assert_msg(fabs(db - 0.5 * da) <= 1e-6, "%zu: %g vs %g", i, da, db);
        if (fabs(da) > 1e-3) ck_assert(fabs(db) < 0.6 * fabs(da));
    }
    snap_free(&s0);
    double v;
    MM_ASSERT_STATUS(mm_optimizer_set_layer_lr_scale(ob, 3, 1.0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_optimizer_set_layer_lr_scale(ob, 0, -1.0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_optimizer_set_layer_lr_scale(ob, 0, NAN), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_optimizer_get_layer_lr_scale(ob, 0, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_optimizer_get_layer_lr_scale(NULL, 0, &v), MM_E_INVALID_ARGUMENT);
    mm_optimizer_free(oa);
    mm_optimizer_free(ob);
    mm_model_free(a);
    mm_model_free(b);
}
END_TEST

/* Adam counts updates per parameter: a layer unfrozen after 10 steps gets a
 * bias-corrected first update (its t starts at 0), like a fresh Adam. */
START_TEST(adam_counts_steps_per_parameter) {
    mm_model *m = model3(12), *ref = model3(12);
    MM_ASSERT_OK(mm_model_set_trainable(m, 0, 0));
    mm_optimizer *o, *r;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    train(o, 10);
    ck_assert_uint_eq(o->slots[0].t, 0);
    ck_assert_uint_eq(o->slots[2].t, 10);
    MM_ASSERT_OK(mm_model_set_trainable(m, 0, 1));
    /* freeze everything above, so layer 0's first update depends only on its
     * own fresh state: it must equal a fresh Adam's first step on layer 0 of
     * a model with the same upper layers */
    MM_ASSERT_OK(mm_model_set_trainable(m, 1, 0));
    MM_ASSERT_OK(mm_model_set_trainable(m, 2, 0));
    snap s;
    snap_take(m, &s);
    for (size_t l = 0; l < 3; l++)
        MM_ASSERT_OK(mm_model_set_weights(ref, l, s.w[l], s.wn[l], s.b[l], s.bn[l]));
    MM_ASSERT_OK(mm_model_set_trainable(ref, 1, 0));
    MM_ASSERT_OK(mm_model_set_trainable(ref, 2, 0));
    MM_ASSERT_OK(mm_optimizer_create(&r, ref, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_step(o, X, Y, NULL, 4, NULL));
    MM_ASSERT_OK(mm_optimizer_step(r, X, Y, NULL, 4, NULL));
    snap_free(&s);
    snap_take(ref, &s);
    ck_assert_msg(model_same(m, &s), "late-unfrozen layer's first Adam step is not bias-corrected");
    snap_free(&s);
    mm_optimizer_free(o);
    mm_optimizer_free(r);
    mm_model_free(m);
    mm_model_free(ref);
}
END_TEST

/* ---- numeric trouble ---------------------------------------------------- */

/* Steps until one fails; the failing step must be MM_E_NUMERIC, leave model
 * and optimizer exactly as before it, and give guidance. */
static void expect_refusal(mm_model *m, mm_optimizer *o, const float *x, const int32_t *y,
                           size_t n, int max_steps, const char *what) {
    for (int s = 0; s < max_steps; s++) {
        snap ms;
        opt_snap os;
        snap_take(m, &ms);
        opt_snap_take(o, &os);
        mm_status st = mm_optimizer_step(o, x, y, NULL, n, NULL);
        if (st != MM_OK) {
            ck_assert_msg(st == MM_E_NUMERIC, "%s: step %d -> %s: %s", what, s,
                          mm_status_name(st), mm_last_error_message());
            const char *msg = mm_last_error_message();
            if (getenv("MM_TEST_VERBOSE")) fprintf(stderr, "%s: step %d: %s\n", what, s, msg);
            ck_assert_msg(strstr(msg, "learning rate") && strstr(msg, "MM_OPT_CLIP_NORM"),
                          "%s: no guidance in '%s'", what, msg);
            ck_assert_msg(model_same(m, &ms), "%s: failed step changed the model", what);
            ck_assert_msg(opt_same(o, &os), "%s: failed step changed the optimizer", what);
            snap_free(&ms);
            opt_snap_free(&os);
            return;
        }
        /* every accepted step leaves finite weights */
        snap now;
        snap_take(m, &now);
        for (size_t l = 0; l < now.L; l++)
            for (size_t i = 0; i < now.wn[l]; i++)
                ck_assert_msg(isfinite(now.w[l][i]), "%s: step %d made a weight %g", what, s,
                              (double)now.w[l][i]);
        snap_free(&now);
        snap_free(&ms);
        opt_snap_free(&os);
    }
    ck_abort_msg("%s: no step was refused in %d steps", what, max_steps);
}

START_TEST(huge_lr_and_decay_are_refused_unchanged) {
    /* weight decay on ever larger weights: lr*wd = 1e4, every step
     * multiplies weights by about -1e4 until they would overflow */
    const algo_case cases[] = {
        {MM_OPTIM_SGD, 1e3, 0.0, 0, 10.0, "sgd wd"},
        {MM_OPTIM_SGD, 1e3, 0.9, 1, 10.0, "sgd nesterov wd"},
        {MM_OPTIM_ADAMW, 1e3, 0.0, 0, 10.0, "adamw"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mm_model *m = model3(13);
        mm_optimizer *o = make_opt(m, &cases[c]);
        expect_refusal(m, o, X, Y, 4, 200, cases[c].name);
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    /* Adam normalises its steps, so only a gradient whose square
     * overflows the second moment can hurt it */
    float huge[4 * DIM];
    for (size_t i = 0; i < 4 * DIM; i++) huge[i] = X[i] * 1e21f;
    {
        const algo_case adam = {MM_OPTIM_ADAM, 1e-3, 0.0, 0, 0.0, "adam"};
        mm_model *m = model3(13);
        mm_optimizer *o = make_opt(m, &adam);
        train(o, 2);
        expect_refusal(m, o, huge, Y, 4, 1, "adam huge gradient");
        mm_optimizer_free(o);
        mm_model_free(m);
    }
    /* fused plain SGD with a huge learning rate on large inputs */
    float big[4 * DIM];
    for (size_t i = 0; i < 4 * DIM; i++) big[i] = X[i] * 1e12f;
    mm_model *m = model3(14);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e3));
    expect_refusal(m, o, big, Y, 4, 50, "fused sgd");
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* Weight decay on a huge weight: the loss is fine (the weight's inputs are
 * dead relu units), but wd * p * lr overflows. Refused by the overflow
 * guard before anything is written; a small lr is accepted. */
START_TEST(decay_on_huge_weight_is_refused) {
    const algo_case cases[] = {
        {MM_OPTIM_SGD, 1e3, 0.0, 0, 10.0, "sgd wd"},
        {MM_OPTIM_SGD, 1e3, 0.9, 0, 10.0, "sgd momentum wd"},
        {MM_OPTIM_ADAMW, 1e3, 0.0, 0, 10.0, "adamw"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mm_model *m = model3(18);
        mm_optimizer *o = make_opt(m, &cases[c]);
        /* a few normal steps first: the guard then carries its bounds, and
         * the write below must make it measure again */
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
        train(o, 3);
        float dead[12], w2[3 * 12];
        for (size_t i = 0; i < 12; i++) dead[i] = -1e3f;
        for (size_t i = 0; i < 36; i++) w2[i] = (i % 2 ? -1 : 1) * 1e35f;
        MM_ASSERT_OK(mm_model_set_weights(m, 1, NULL, 0, dead, 12));
        MM_ASSERT_OK(mm_model_set_weights(m, 2, w2, 36, NULL, 0));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, cases[c].lr));
        expect_refusal(m, o, X, Y, 4, 1, cases[c].name);
        ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "layer 2 weight could overflow"));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-3));
        MM_ASSERT_OK(mm_optimizer_step(o, X, Y, NULL, 4, NULL));
        mm_optimizer_free(o);
        mm_model_free(m);
    }
}
END_TEST

/* fit stops at the refused mini-batch with MM_E_NUMERIC (naming it); the
 * model keeps the finite updates of the batches before it. */
START_TEST(fit_stops_on_numeric_trouble) {
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, X, Y, NS, DIM));
    const algo_case adamw = {MM_OPTIM_ADAMW, 1e3, 0.0, 0, 10.0, "adamw"};
    mm_model *m = model3(19);
    mm_optimizer *o = make_opt(m, &adamw);
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 50));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_BATCH_SIZE, 8));
    MM_ASSERT_STATUS(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL), MM_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "batch"));
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "learning rate"));
    snap s;
    snap_take(m, &s);
    for (size_t l = 0; l < s.L; l++)
        for (size_t i = 0; i < s.wn[l]; i++) ck_assert(isfinite(s.w[l][i]));
    snap_free(&s);
    mm_optimizer_free(o);
    mm_model_free(m);
    mm_dataset_free(ds);
}
END_TEST

START_TEST(exploding_gradients_are_refused) {
    float big[4 * DIM];
    for (size_t i = 0; i < 4 * DIM; i++) big[i] = X[i] * 1e5f;
    /* a fixed limit */
    mm_model *m = model3(15);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_MAX_GRAD_NORM, 1e3));
    train(o, 3);
    expect_refusal(m, o, big, Y, 4, 1, "max_grad_norm");
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "max_grad_norm"));
    mm_optimizer_free(o);
    mm_model_free(m);
    /* a spike over the running average, also with plain SGD (which then
     * leaves the fused path) */
    for (int k = 0; k < 2; k++) {
        m = model3(16);
        MM_ASSERT_OK(mm_optimizer_create(&o, m, k ? MM_OPTIM_SGD : MM_OPTIM_ADAMW));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_GRAD_SPIKE, 100));
        train(o, 20);
        ck_assert_uint_eq(o->gnorm_count, 20);
        ck_assert(o->gnorm_avg > 0.0);
        expect_refusal(m, o, big, Y, 4, 1, "grad_spike");
        ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "running average"));
        train(o, 2); /* normal data still trains */
        mm_optimizer_free(o);
        mm_model_free(m);
    }
}
END_TEST

/* ---- save / load -------------------------------------------------------- */

START_TEST(save_load_keeps_flags_and_scales) {
    char *path = mm_test_tmp_path(".mmf");
    mm_model *m = model3(17);
    MM_ASSERT_OK(mm_model_set_trainable(m, 1, 0));
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *l;
    MM_ASSERT_OK(mm_model_load(&l, path));
    ck_assert_int_eq(mm_model_layer_trainable(l, 0), 1);
    ck_assert_int_eq(mm_model_layer_trainable(l, 1), 0);
    ck_assert_int_eq(mm_model_layer_trainable(l, 2), 1);
    mm_model *c;
    MM_ASSERT_OK(mm_model_clone(l, &c));
    ck_assert_int_eq(mm_model_layer_trainable(c, 1), 0);
    mm_model_free(c);
    mm_model_free(l);

    /* optimizer state: scales and per-parameter counters, then the
     * resumed run continues bit-identically */
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set_layer_lr_scale(o, 2, 0.3));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_GRAD_SPIKE, 1e3));
    train(o, 7);
    MM_ASSERT_OK(mm_model_set_trainable(m, 1, 1));
    train(o, 3);
    MM_ASSERT_OK(mm_optimizer_save(o, path));
    MM_ASSERT_OK(mm_model_load(&l, path));
    mm_optimizer *ol;
    MM_ASSERT_OK(mm_optimizer_load(&ol, l, path));
    double scale;
    MM_ASSERT_OK(mm_optimizer_get_layer_lr_scale(ol, 2, &scale));
    ck_assert(scale == (double)0.3);
    ck_assert_uint_eq(ol->slots[2].t, 3);
    ck_assert_uint_eq(ol->slots[0].t, 10);
    ck_assert_uint_eq(ol->gnorm_count, o->gnorm_count);
    ck_assert(ol->gnorm_avg == o->gnorm_avg);
    train(o, 5);
    train(ol, 5);
    snap s;
    snap_take(m, &s);
    ck_assert(model_same(l, &s));
    snap_free(&s);
    mm_optimizer_free(ol);
    mm_optimizer_free(o);
    mm_model_free(l);
    mm_model_free(m);
    unlink(path);
    free(path);
}
END_TEST

int main(void) {
    Suite *s = suite_create("transfer");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, frozen_layers_stay_bit_identical);
    tcase_add_test(tc, fit_keeps_frozen_layers);
    tcase_add_test(tc, all_frozen_is_refused);
    tcase_add_test(tc, trainable_gradients_equal_full_backward);
    tcase_add_test(tc, replace_head_then_train);
    tcase_add_test(tc, truncate_and_add_layers);
    tcase_add_test(tc, lr_scale_zero_equals_frozen);
    tcase_add_test(tc, adam_counts_steps_per_parameter);
    tcase_add_test(tc, huge_lr_and_decay_are_refused_unchanged);
    tcase_add_test(tc, decay_on_huge_weight_is_refused);
    tcase_add_test(tc, fit_stops_on_numeric_trouble);
    tcase_add_test(tc, exploding_gradients_are_refused);
    tcase_add_test(tc, save_load_keeps_flags_and_scales);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
