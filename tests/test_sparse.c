/* The sparse layer kind (lib/prune/sparse.c) and its kernels
 * (lib/kernels/sparse_kernels.c): forward, backward and the fused SGD
 * update against double-precision references of the dense layer with the
 * same pruned weights, for every kernel set this CPU has; gradient checks
 * through a model; save/load round trips and hostile files; sizes. Links the
 * internal object library. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/sparse_kernels.h"
#include "model/mmfile.h"
#include "model/model_internal.h"
#include "optim/optim_internal.h"
#include "mm/mm.h"
#include "prune/prune_internal.h"
#include "testutil.h"

/* sparse.c: dense position of every stored weight, in storage order */
mm_status mm_sparse_positions(const mm_layer *layer, size_t *pos);

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

static uint32_t next_u32(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 32);
}

/* A dense layer with random weights and bias, `sparsity` of its weights
 * pruned: with a mask (pruned weights zeroed, and every 40th kept weight
 * set to exactly 0, which must still be stored) or, without one, zeroed. */
static mm_layer *pruned_dense(size_t in, size_t out, mm_activation act, double sparsity,
                              bool with_mask, uint64_t seed) {
    mm_layer *d;
    mm_rng rng;
    mm_rng_seed(&rng, seed);
    MM_ASSERT_OK(mm_dense_create(&d, in, out, act, 0.1f, MM_INIT_XAVIER, &rng));
    mm_test_fill(d->params[1].data, out, seed + 1, -0.5f, 0.5f);
    const size_t n = in * out;
    float *w = d->params[0].data;
    uint8_t *mask = NULL;
    if (with_mask) {
        mask = malloc(n);
        d->params[0].mask = mask;
    }
    uint64_t s = seed * 7 + 3;
    for (size_t i = 0; i < n; i++) {
        const bool keep = (double)next_u32(&s) / 4294967296.0 >= sparsity;
        if (mask) mask[i] = keep;
        if (!keep) w[i] = 0.0f;
        else if (mask && next_u32(&s) % 40 == 0) w[i] = 0.0f;
    }
    return d;
}

static size_t stored_count(const mm_layer *d) {
    const mm_param *w = &d->params[0];
    size_t c = 0;
    for (size_t i = 0; i < w->rows * w->cols; i++)
        c += w->mask ? w->mask[i] : (w->data[i] != 0.0f);
    return c;
}

static mm_layer *to_sparse(const mm_layer *d) {
    mm_layer *s = NULL;
    MM_ASSERT_OK(mm_sparse_from_dense(d, &s));
    ck_assert_str_eq(s->vt->kind, "sparse");
    ck_assert_uint_eq(s->in, d->in);
    ck_assert_uint_eq(s->out, d->out);
    ck_assert_int_eq(s->act, d->act);
    ck_assert_uint_eq(s->params[0].rows, stored_count(d));
    ck_assert_uint_eq(s->params[0].cols, 1);
    ck_assert_str_eq(s->params[0].name, "weight_values");
    ck_assert(s->params[0].decay);
    ck_assert_str_eq(s->params[1].name, "bias");
    return s;
}

static size_t *positions(const mm_layer *s) {
    size_t nnz = s->params[0].rows;
    size_t *pos = malloc((nnz ? nnz : 1) * sizeof *pos);
    MM_ASSERT_OK(mm_sparse_positions(s, pos));
    return pos;
}

static double act_d(mm_activation a, double slope, double v) {
    switch (a) {
    case MM_ACT_RELU: return v < 0 ? 0 : v;
    case MM_ACT_LEAKY_RELU: return v > 0 ? v : slope * v;
    case MM_ACT_TANH: return tanh(v);
    case MM_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    default: return v;
    }
}

/* The derivative through the (float) output y, as mm_activation_backward. */
static double dact_d(mm_activation a, double slope, float y) {
    switch (a) {
    case MM_ACT_RELU: return y > 0.0f ? 1 : 0;
    case MM_ACT_LEAKY_RELU: return y > 0.0f ? 1 : slope;
    case MM_ACT_TANH: return 1.0 - (double)y * y;
    case MM_ACT_SIGMOID: return (double)y * (1.0 - y);
    default: return 1;
    }
}

/* Rounding allowance for a float sum of terms whose absolute values add up
 * to `bound`, over `terms` terms. */
static double tol_for(double bound, size_t terms) {
    return 1e-6 + 4e-7 * sqrt((double)terms + 1) * bound;
}

/* y = act(x W^T + b) of the dense layer, in double, against got[]. */
static void check_forward(const mm_layer *d, const float *x, size_t n, const float *got,
                          const char *what) {
    const size_t in = d->in, out = d->out;
    const float *w = d->params[0].data, *b = d->params[1].data;
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < out; o++) {
            double v = b[o], bound = fabs(b[o]);
            for (size_t i = 0; i < in; i++) {
                v += (double)w[o * in + i] * x[s * in + i];
                bound += fabs((double)w[o * in + i] * x[s * in + i]);
            }
            const double want = act_d(d->act, d->leaky_slope, v);
            const double g = got[s * out + o];
            ck_assert_msg(fabs(g - want) <= tol_for(bound, in),
                          "%s: %zux%zu n=%zu sample %zu out %zu: got %.9g want %.9g (bound %g)",
                          what, in, out, n, s, o, g, want, bound);
        }
}

typedef struct kset {
    const mm_sparse_kernels *k;
    const char *name;
} kset;

/* The kernel sets this CPU has (portable first). */
static size_t kernel_sets(kset sets[3]) {
    size_t n = 0;
    for (int isa = MM_SPARSE_ISA_PORTABLE; isa <= MM_SPARSE_ISA_AVX512; isa++) {
        const mm_sparse_kernels *k = mm_sparse_kernels_for((mm_sparse_isa)isa);
        if (k) sets[n++] = (kset){k, k->name};
    }
    ck_assert_uint_ge(n, 1);
    return n;
}

static const size_t shapes[][2] = {{1, 1},   {1, 5},   {5, 1},   {3, 7},    {17, 33},
                                   {33, 17}, {31, 16}, {32, 48}, {100, 70}, {784, 40}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
static const double sparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};
#define N_SPARS (sizeof sparsities / sizeof sparsities[0])

/* ------------------------------------------------------------------------
 * forward
 * ---------------------------------------------------------------------- */

static void forward_case(size_t in, size_t out, mm_activation act, double sp, bool mask,
                         uint64_t seed, const size_t *batches, size_t nb, const kset *sets,
                         size_t nsets) {
    mm_layer *d = pruned_dense(in, out, act, sp, mask, seed);
    mm_layer *s = to_sparse(d);
    const mm_kernels *kref = mm_kernels_for(MM_BACKEND_REFERENCE);
    for (size_t bi = 0; bi < nb; bi++) {
        const size_t n = batches[bi];
        float *x = malloc(n * in * sizeof *x), *y = malloc(n * out * sizeof *y);
        float *yd = malloc(n * out * sizeof *yd);
        mm_test_fill(x, n * in, seed + 100 + n, -2.0f, 2.0f);
        mm_layer_forward1(d, kref, x, yd, n);
        char what[96];
        for (size_t k = 0; k < nsets; k++) {
            mm_sparse_kernels_override(sets[k].k);
            for (size_t i = 0; i < n * out; i++) y[i] = NAN;
            mm_layer_forward1(s, mm_kernels_get(), x, y, n);
            snprintf(what, sizeof what, "%s sparsity %g act %s%s", sets[k].name, sp,
                     mm_activation_name(act), mask ? " masked" : "");
            check_forward(d, x, n, y, what);
        }
        mm_sparse_kernels_override(NULL);
        free(x);
        free(y);
        free(yd);
    }
    s->vt->destroy(s);
    d->vt->destroy(d);
}

START_TEST(forward_matches_dense) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    static const size_t batches[] = {1, 2, 7, 64, 256};
    size_t c = 0;
    for (size_t si = 0; si < N_SHAPES; si++)
        for (size_t pi = 0; pi < N_SPARS; pi++, c++)
            forward_case(shapes[si][0], shapes[si][1], (mm_activation)(c % 5), sparsities[pi],
                         c % 2 == 0, 1000 + c, batches, 5, sets, nsets);
    /* random shapes and sparsities */
    uint64_t r = 99;
    for (int i = 0; i < 12; i++) {
        const size_t in = 1 + next_u32(&r) % 300, out = 1 + next_u32(&r) % 90;
        const double sp = (double)(next_u32(&r) % 1001) / 1000.0;
        forward_case(in, out, (mm_activation)(i % 5), sp, i % 3 == 0, 3000 + (uint64_t)i,
                     batches, 4, sets, nsets);
    }
}
END_TEST

/* Every activation on one shape; 32-bit column indices (more than 65536
 * inputs) and several column blocks that are partly filled. */
START_TEST(forward_activations_and_wide) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    static const size_t batches[] = {1, 3, 17};
    for (int a = MM_ACT_IDENTITY; a <= MM_ACT_SIGMOID; a++)
        for (size_t pi = 0; pi < N_SPARS; pi++)
            forward_case(45, 21, (mm_activation)a, sparsities[pi], a % 2, 50 + (uint64_t)a,
                         batches, 3, sets, nsets);
    forward_case(70001, 3, MM_ACT_TANH, 0.9, true, 7, batches, 2, sets, nsets);
    forward_case(66000, 17, MM_ACT_IDENTITY, 0.999, false, 8, batches, 3, sets, nsets);
}
END_TEST

/* A row or a column block with every weight, rows of the last slice only
 * partly present, one non-zero weight. */
START_TEST(forward_structures) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    static const size_t batches[] = {1, 5};
    /* dense rows next to empty ones */
    mm_layer *d = pruned_dense(40, 19, MM_ACT_IDENTITY, 0.0, true, 3);
    for (size_t o = 0; o < 19; o++)
        if (o % 3)
            for (size_t i = 0; i < 40; i++) d->params[0].mask[o * 40 + i] = 0,
                                            d->params[0].data[o * 40 + i] = 0.0f;
    mm_layer *s = to_sparse(d);
    float x[5 * 40], y[5 * 19];
    mm_test_fill(x, 5 * 40, 9, -1.0f, 1.0f);
    for (size_t k = 0; k < nsets; k++) {
        mm_sparse_kernels_override(sets[k].k);
        for (size_t b = 0; b < 2; b++) {
            mm_layer_forward1(s, mm_kernels_get(), x, y, batches[b]);
            check_forward(d, x, batches[b], y, sets[k].name);
        }
    }
    mm_sparse_kernels_override(NULL);
    s->vt->destroy(s);
    d->vt->destroy(d);
    /* a single weight */
    d = pruned_dense(300, 40, MM_ACT_SIGMOID, 1.0, false, 4);
    d->params[0].data[37 * 300 + 299] = 1.5f;
    s = to_sparse(d);
    ck_assert_uint_eq(s->params[0].rows, 1);
    float x2[300], y2[40];
    mm_test_fill(x2, 300, 10, -1.0f, 1.0f);
    for (size_t k = 0; k < nsets; k++) {
        mm_sparse_kernels_override(sets[k].k);
        mm_layer_forward1(s, mm_kernels_get(), x2, y2, 1);
        check_forward(d, x2, 1, y2, sets[k].name);
    }
    mm_sparse_kernels_override(NULL);
    s->vt->destroy(s);
    d->vt->destroy(d);
}
END_TEST

/* An infinite input reaches only the rows that store a weight in its
 * column (pruned weights are absent, not zeros), with every kernel set. */
START_TEST(forward_inf_input) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    mm_layer *d = pruned_dense(70, 40, MM_ACT_IDENTITY, 0.8, true, 5);
    mm_layer *s = to_sparse(d);
    float x[70], y[40];
    mm_test_fill(x, 70, 11, -1.0f, 1.0f);
    x[33] = INFINITY;
    for (size_t k = 0; k < nsets; k++) {
        mm_sparse_kernels_override(sets[k].k);
        mm_layer_forward1(s, mm_kernels_get(), x, y, 1);
        for (size_t o = 0; o < 40; o++) {
            const bool uses = d->params[0].mask[o * 70 + 33];
            const float w = d->params[0].data[o * 70 + 33];
            if (!uses) ck_assert_msg(isfinite(y[o]), "%s: row %zu", sets[k].name, o);
            else if (w != 0.0f) ck_assert_msg(isinf(y[o]), "%s: row %zu", sets[k].name, o);
            else ck_assert_msg(isnan(y[o]), "%s: row %zu (0 * inf)", sets[k].name, o);
        }
    }
    mm_sparse_kernels_override(NULL);
    s->vt->destroy(s);
    d->vt->destroy(d);
}
END_TEST

/* ------------------------------------------------------------------------
 * backward
 * ---------------------------------------------------------------------- */

static void backward_case(size_t in, size_t out, mm_activation act, double sp, bool mask,
                          uint64_t seed, size_t n, const kset *sets, size_t nsets) {
    mm_layer *d = pruned_dense(in, out, act, sp, mask, seed);
    mm_layer *s = to_sparse(d);
    const size_t nnz = s->params[0].rows;
    size_t *pos = positions(s);
    const mm_kernels *kref = mm_kernels_for(MM_BACKEND_REFERENCE);
    float *x = malloc(n * in * sizeof *x), *y = malloc(n * out * sizeof *y);
    float *dy0 = malloc(n * out * sizeof *dy0), *dy = malloc(n * out * sizeof *dy);
    float *dx = malloc(n * in * sizeof *dx);
    mm_test_fill(x, n * in, seed + 5, -2.0f, 2.0f);
    mm_test_fill(dy0, n * out, seed + 6, -1.0f, 1.0f);
    mm_layer_forward1(d, kref, x, y, n);
    /* references in double: delta, dx, dW at the stored positions, db */
    const float *w = d->params[0].data;
    double *delta = malloc(n * out * sizeof *delta), *dx_ref = calloc(n * in, sizeof *dx_ref);
    double *dx_bnd = calloc(n * in, sizeof *dx_bnd);
    double *g_ref = calloc(nnz + 1, sizeof *g_ref), *g_bnd = calloc(nnz + 1, sizeof *g_bnd);
    double *db_ref = calloc(out, sizeof *db_ref), *db_bnd = calloc(out, sizeof *db_bnd);
    for (size_t i = 0; i < n * out; i++)
        delta[i] = dy0[i] * dact_d(act, d->leaky_slope, y[i]);
    for (size_t sa = 0; sa < n; sa++)
        for (size_t o = 0; o < out; o++) {
            const double dz = delta[sa * out + o];
            db_ref[o] += dz;
            db_bnd[o] += fabs(dz);
            for (size_t i = 0; i < in; i++) {
                dx_ref[sa * in + i] += dz * w[o * in + i];
                dx_bnd[sa * in + i] += fabs(dz * w[o * in + i]);
            }
        }
    for (size_t k = 0; k < nnz; k++) {
        const size_t o = pos[k] / in, i = pos[k] % in;
        ck_assert_msg(memcmp(&s->params[0].data[k], &w[pos[k]], sizeof(float)) == 0,
                      "stored value %zu is not weight %zu", k, pos[k]);
        for (size_t sa = 0; sa < n; sa++) {
            g_ref[k] += delta[sa * out + o] * x[sa * in + i];
            g_bnd[k] += fabs(delta[sa * out + o] * x[sa * in + i]);
        }
    }
    for (size_t ks = 0; ks < nsets; ks++) {
        mm_sparse_kernels_override(sets[ks].k);
        memcpy(dy, dy0, n * out * sizeof *dy);
        for (size_t i = 0; i < n * in; i++) dx[i] = NAN;
        for (size_t k = 0; k < nnz; k++) s->params[0].grad[k] = NAN;
        mm_layer_backward1(s, mm_kernels_get(), x, y, dy, dx, n, true);
        for (size_t i = 0; i < n * out; i++)
            ck_assert_msg(fabs(dy[i] - delta[i]) <= 1e-6 * fabs(dy0[i]), "delta %zu", i);
        for (size_t i = 0; i < n * in; i++)
            ck_assert_msg(fabs(dx[i] - dx_ref[i]) <= tol_for(dx_bnd[i], out),
                          "%s %zux%zu sp %g n=%zu: dx[%zu] %.9g want %.9g", sets[ks].name, in,
                          out, sp, n, i, (double)dx[i], dx_ref[i]);
        for (size_t k = 0; k < nnz; k++)
            ck_assert_msg(fabs(s->params[0].grad[k] - g_ref[k]) <= tol_for(g_bnd[k], n),
                          "%s %zux%zu sp %g n=%zu: grad[%zu] %.9g want %.9g", sets[ks].name, in,
                          out, sp, n, k, (double)s->params[0].grad[k], g_ref[k]);
        for (size_t o = 0; o < out; o++)
            ck_assert(fabs(s->params[1].grad[o] - db_ref[o]) <= tol_for(db_bnd[o], n));
        /* without dx and parameter gradients: only the delta */
        memcpy(dy, dy0, n * out * sizeof *dy);
        mm_layer_backward1(s, mm_kernels_get(), x, y, dy, NULL, n, false);
    }
    mm_sparse_kernels_override(NULL);
    free(x), free(y), free(dy0), free(dy), free(dx), free(pos);
    free(delta), free(dx_ref), free(dx_bnd), free(g_ref), free(g_bnd), free(db_ref),
        free(db_bnd);
    s->vt->destroy(s);
    d->vt->destroy(d);
}

START_TEST(backward_matches_dense) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    static const size_t batches[] = {1, 2, 7, 64, 256};
    size_t c = 0;
    for (size_t si = 0; si < N_SHAPES; si++)
        for (size_t pi = 0; pi < N_SPARS; pi++, c++)
            backward_case(shapes[si][0], shapes[si][1], (mm_activation)(c % 5), sparsities[pi],
                          c % 2 == 1, 2000 + c, batches[c % 5], sets, nsets);
    uint64_t r = 98;
    for (int i = 0; i < 10; i++) {
        const size_t in = 1 + next_u32(&r) % 200, out = 1 + next_u32(&r) % 70;
        const double sp = (double)(next_u32(&r) % 1001) / 1000.0;
        backward_case(in, out, (mm_activation)(i % 5), sp, i % 2 == 0, 4000 + (uint64_t)i,
                      batches[i % 5], sets, nsets);
    }
    /* more than 64 samples (chunked gradient) on a mid-size layer, and wide */
    backward_case(100, 70, MM_ACT_RELU, 0.9, true, 77, 200, sets, nsets);
    backward_case(70001, 2, MM_ACT_SIGMOID, 0.99, false, 78, 3, sets, nsets);
}
END_TEST

/* ------------------------------------------------------------------------
 * fused SGD and training
 * ---------------------------------------------------------------------- */

/* apply_sgd equals backward + "p = p + (-lr) g" bit for bit for the stored
 * values (bias: equal for one sample, close for more: the fused update adds
 * sample by sample, as the dense layer's does). */
START_TEST(fused_sgd_matches_unfused) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    static const size_t batches[] = {1, 3, 4, 5, 64, 100};
    const float neg_lr = -0.0371f;
    for (size_t ks = 0; ks < nsets; ks++) {
        mm_sparse_kernels_override(sets[ks].k);
        for (size_t bi = 0; bi < 6; bi++) {
            const size_t n = batches[bi], in = 50, out = 37;
            mm_layer *d = pruned_dense(in, out, MM_ACT_TANH, 0.8, bi % 2, 300 + bi);
            mm_layer *a = to_sparse(d), *b;
            MM_ASSERT_OK(a->vt->clone(a, &b));
            const size_t nnz = a->params[0].rows;
            float *x = malloc(n * in * sizeof *x), *y = malloc(n * out * sizeof *y);
            float *dy = malloc(n * out * sizeof *dy), *dy2 = malloc(n * out * sizeof *dy2);
            mm_test_fill(x, n * in, 400 + bi, -1.0f, 1.0f);
            mm_test_fill(dy, n * out, 500 + bi, -1.0f, 1.0f);
            memcpy(dy2, dy, n * out * sizeof *dy);
            mm_layer_forward1(a, mm_kernels_get(), x, y, n);
            /* unfused */
            mm_layer_backward1(a, mm_kernels_get(), x, y, dy, NULL, n, true);
            for (size_t k = 0; k < nnz; k++)
                a->params[0].data[k] = a->params[0].data[k] + neg_lr * a->params[0].grad[k];
            for (size_t o = 0; o < out; o++)
                a->params[1].data[o] = a->params[1].data[o] + neg_lr * a->params[1].grad[o];
            /* fused */
            mm_layer_backward1(b, mm_kernels_get(), x, y, dy2, NULL, n, false);
            b->vt->apply_sgd(b, mm_kernels_get(), x, dy2, n, neg_lr);
            ck_assert_msg(memcmp(a->params[0].data, b->params[0].data, nnz * sizeof(float)) == 0,
                          "%s n=%zu: fused values differ", sets[ks].name, n);
            for (size_t o = 0; o < out; o++) {
                if (n == 1)
                    ck_assert(memcmp(&a->params[1].data[o], &b->params[1].data[o], 4) == 0);
                else
                    ck_assert_float_eq_tol(a->params[1].data[o], b->params[1].data[o], 1e-5f);
            }
            free(x), free(y), free(dy), free(dy2);
            a->vt->destroy(a);
            b->vt->destroy(b);
            d->vt->destroy(d);
        }
    }
    mm_sparse_kernels_override(NULL);
}
END_TEST

/* Replace layer l of a model by its sparse conversion. */
static void sparsify_layer(mm_model *m, size_t l, double sparsity, uint64_t seed) {
    mm_layer *d = m->layers[l];
    const size_t n = d->in * d->out;
    d->params[0].mask = malloc(n);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        d->params[0].mask[i] = (double)next_u32(&s) / 4294967296.0 >= sparsity;
        if (!d->params[0].mask[i]) d->params[0].data[i] = 0.0f;
    }
    mm_layer *sp;
    MM_ASSERT_OK(mm_sparse_from_dense(d, &sp));
    MM_ASSERT_OK(mm_graph_replace(m, mm_graph_node_of_layer(m, l), sp)); /* destroys d */
}

enum { GN = 4, GIN = 6, GH = 7, GOUT = 3 };

static double loss_at(mm_model *m, const float *x, const int32_t *y, const float *t) {
    double loss;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, t, GN, &loss, NULL));
    return loss;
}

static void gradcheck_model(mm_activation act, mm_loss lossk, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, GIN, seed));
    MM_ASSERT_OK(mm_model_set_leaky_slope(m, 0.1f));
    MM_ASSERT_OK(mm_model_add_dense(m, GH, act));
    MM_ASSERT_OK(mm_model_add_dense(m, GH, act));
    MM_ASSERT_OK(mm_model_add_dense(m, GOUT, lossk == MM_LOSS_MSE ? act : MM_ACT_IDENTITY));
    MM_ASSERT_OK(mm_model_set_loss(m, lossk));
    for (size_t l = 0; l < 3; l++) {
        float b[GH];
        mm_test_fill(b, m->layers[l]->out, seed + 10 + l, -0.3f, 0.3f);
        MM_ASSERT_OK(mm_model_set_weights(m, l, NULL, 0, b, m->layers[l]->out));
    }
    sparsify_layer(m, 0, 0.5, seed + 1);
    sparsify_layer(m, 2, 0.3, seed + 2); /* layer 1 stays dense */
    float x[GN * GIN], t[GN * GOUT];
    int32_t y[GN] = {0, 2, 1, 2};
    mm_test_fill(x, GN * GIN, seed + 3, -1.5f, 1.5f);
    mm_test_fill(t, GN * GOUT, seed + 4, -0.5f, 0.5f);
    const float *targets = lossk == MM_LOSS_MSE ? t : NULL;
    double loss;
    MM_ASSERT_OK(mm_model_backward(m, x, y, targets, GN, &loss));
    ck_assert_double_eq_tol(loss, loss_at(m, x, y, targets), 1e-6);
    const double eps = 1e-3;
    size_t checked = 0, bad = 0;
    for (size_t l = 0; l < 3; l += 2) {
        const size_t nnz = m->layers[l]->params[0].rows, out = m->layers[l]->out;
        float *w = malloc((nnz + 1) * sizeof *w), *b = malloc(out * sizeof *b);
        float *dw = malloc((nnz + 1) * sizeof *dw), *db = malloc(out * sizeof *db);
        MM_ASSERT_OK(mm_model_get_weights(m, l, w, nnz, b, out));
        MM_ASSERT_OK(mm_model_get_gradients(m, l, dw, nnz, db, out));
        for (int which = 0; which < 2; which++) {
            float *p = which ? b : w, *g = which ? db : dw;
            const size_t cnt = which ? out : nnz;
            for (size_t i = 0; i < cnt; i++) {
                const float orig = p[i];
                p[i] = (float)(orig + eps);
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, nnz, b, out));
                const double lp = loss_at(m, x, y, targets);
                p[i] = (float)(orig - eps);
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, nnz, b, out));
                const double lm = loss_at(m, x, y, targets);
                p[i] = orig;
                MM_ASSERT_OK(mm_model_set_weights(m, l, w, nnz, b, out));
                const double num = (lp - lm) / (2 * eps);
                const double err = fabs(num - g[i]) / fmax(1e-2, fabs(num) + fabs(g[i]));
                checked++;
                if (err > 2e-2) bad++;
            }
        }
        free(w), free(b), free(dw), free(db);
    }
    ck_assert_uint_gt(checked, 20);
    ck_assert_msg(bad <= checked / 50, "act %s loss %s: %zu of %zu gradients disagree",
                  mm_activation_name(act), mm_loss_name(lossk), bad, checked);
    mm_model_free(m);
}

START_TEST(gradcheck_in_model) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    for (size_t ks = 0; ks < nsets; ks++) {
        mm_sparse_kernels_override(sets[ks].k);
        for (int a = MM_ACT_IDENTITY; a <= MM_ACT_SIGMOID; a++) {
            gradcheck_model((mm_activation)a, MM_LOSS_SOFTMAX_XENT, 100 + (uint64_t)a);
            gradcheck_model((mm_activation)a, MM_LOSS_MSE, 200 + (uint64_t)a);
        }
    }
    mm_sparse_kernels_override(NULL);
}
END_TEST

/* An optimizer trains a model with a sparse layer: the loss falls and the
 * sparsity pattern stays (only stored values move; pruned weights cannot
 * come back since they are not stored). */
START_TEST(train_keeps_pattern) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 20, 5));
    MM_ASSERT_OK(mm_model_add_dense(m, 16, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 4, MM_ACT_IDENTITY));
    sparsify_layer(m, 0, 0.8, 9);
    const size_t nnz = m->layers[0]->params[0].rows;
    ck_assert_uint_eq(mm_model_num_params(m), nnz + 16 + 16 * 4 + 4);
    size_t *pos0 = positions(m->layers[0]);
    enum { NS = 64 };
    float x[NS * 20];
    int32_t lab[NS];
    mm_test_fill(x, NS * 20, 1, -1.0f, 1.0f);
    for (size_t i = 0; i < NS; i++) lab[i] = (x[i * 20] > 0) + 2 * (x[i * 20 + 1] > 0);
    for (int kind = 0; kind < 2; kind++) {
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, kind ? MM_OPTIM_ADAM : MM_OPTIM_SGD));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, kind ? 0.01 : 0.1));
        double first = 0, last = 0;
        for (int step = 0; step < 150; step++) {
            double loss;
            MM_ASSERT_OK(mm_optimizer_step(o, x, lab, NULL, NS, &loss));
            if (step == 0) first = loss;
            last = loss;
        }
        ck_assert_msg(last < 0.7 * first, "%s: loss %g -> %g", kind ? "adam" : "sgd", first, last);
        mm_optimizer_free(o);
    }
    size_t *pos1 = positions(m->layers[0]);
    ck_assert(memcmp(pos0, pos1, nnz * sizeof *pos0) == 0);
    free(pos0), free(pos1);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * conversion, clone, sizes, policy
 * ---------------------------------------------------------------------- */

START_TEST(conversion_rules) {
    /* with a mask: exactly the unmasked weights, zeros included */
    mm_layer *d = pruned_dense(30, 20, MM_ACT_RELU, 0.5, true, 21);
    size_t kept_zero = 0;
    for (size_t i = 0; i < 600; i++) kept_zero += d->params[0].mask[i] && d->params[0].data[i] == 0;
    ck_assert_uint_gt(kept_zero, 0);
    mm_layer *s = to_sparse(d);
    size_t *pos = positions(s);
    for (size_t k = 0; k < s->params[0].rows; k++) {
        ck_assert(d->params[0].mask[pos[k]]);
        if (k) ck_assert_uint_ne(pos[k], pos[k - 1]);
    }
    ck_assert(memcmp(s->params[1].data, d->params[1].data, 20 * sizeof(float)) == 0);
    ck_assert(s->params[0].mask == NULL && s->params[1].mask == NULL);
    free(pos);
    s->vt->destroy(s);
    /* without: the non-zero weights */
    free(d->params[0].mask);
    d->params[0].mask = NULL;
    s = to_sparse(d);
    ck_assert_uint_eq(s->params[0].rows, stored_count(d));
    s->vt->destroy(s);
    /* only dense layers convert; arguments */
    MM_ASSERT_STATUS(mm_sparse_from_dense(d, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_sparse_from_dense(NULL, &s), MM_E_INVALID_ARGUMENT);
    s = to_sparse(d);
    mm_layer *s2 = (mm_layer *)(uintptr_t)1;
    MM_ASSERT_STATUS(mm_sparse_from_dense(s, &s2), MM_E_UNSUPPORTED);
    ck_assert(s2 == NULL);
    size_t p1;
    MM_ASSERT_STATUS(mm_sparse_positions(d, &p1), MM_E_INVALID_ARGUMENT);
    s->vt->destroy(s);
    d->vt->destroy(d);
}
END_TEST

START_TEST(clone_is_deep) {
    mm_layer *d = pruned_dense(70, 33, MM_ACT_LEAKY_RELU, 0.7, true, 31);
    mm_layer *s = to_sparse(d), *c;
    MM_ASSERT_OK(s->vt->clone(s, &c));
    ck_assert_uint_eq(c->vt->param_bytes(c), s->vt->param_bytes(s));
    float x[3 * 70], y1[3 * 33], y2[3 * 33];
    mm_test_fill(x, 3 * 70, 3, -1.0f, 1.0f);
    mm_layer_forward1(s, mm_kernels_get(), x, y1, 3);
    mm_layer_forward1(c, mm_kernels_get(), x, y2, 3);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    size_t *p1 = positions(s), *p2 = positions(c);
    ck_assert(memcmp(p1, p2, s->params[0].rows * sizeof *p1) == 0);
    c->params[0].data[0] += 1.0f;
    mm_layer_forward1(s, mm_kernels_get(), x, y2, 3);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    free(p1), free(p2);
    c->vt->destroy(c);
    s->vt->destroy(s);
    d->vt->destroy(d);
}
END_TEST

/* 784-256-128-10 at 90%: every layer's bytes and the model file are at most
 * 20% of dense. */
static mm_model *fashion_shaped(double sparsity, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 784, seed));
    MM_ASSERT_OK(mm_model_add_dense(m, 256, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 128, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 10, MM_ACT_IDENTITY));
    if (sparsity > 0)
        for (size_t l = 0; l < 3; l++) sparsify_layer(m, l, sparsity, seed + l);
    return m;
}

static size_t file_size(const char *path) {
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

START_TEST(sizes_at_90_percent) {
    mm_model *d = fashion_shaped(0, 1), *s = fashion_shaped(0.9, 1);
    for (size_t l = 0; l < 3; l++) {
        const double ratio = (double)s->layers[l]->vt->param_bytes(s->layers[l]) /
                             (double)d->layers[l]->vt->param_bytes(d->layers[l]);
        ck_assert_msg(ratio <= 0.2, "layer %zu: %.3f of dense", l, ratio);
    }
    ck_assert_double_le((double)mm_model_param_bytes(s), 0.2 * (double)mm_model_param_bytes(d));
    char *pd = mm_test_tmp_path(".mmf"), *ps = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(d, pd));
    MM_ASSERT_OK(mm_model_save(s, ps));
    const size_t bd = file_size(pd), bs = file_size(ps);
    ck_assert_msg((double)bs <= 0.2 * (double)bd, "file %zu of %zu bytes", bs, bd);
    unlink(pd), unlink(ps);
    free(pd), free(ps);
    mm_model_free(d);
    mm_model_free(s);
}
END_TEST

START_TEST(worthwhile_policy) {
    static const size_t sh[][2] = {{784, 256}, {256, 128}, {128, 10}};
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    for (size_t ks = 0; ks < nsets; ks++) {
        mm_sparse_kernels_override(sets[ks].k);
        for (size_t i = 0; i < 3; i++) {
            const size_t in = sh[i][0], out = sh[i][1], all = in * out;
            ck_assert(!mm_sparse_worthwhile(in, out, all));
            ck_assert(!mm_sparse_worthwhile(in, out, all / 2));
            ck_assert(mm_sparse_worthwhile(in, out, all / 100)); /* 99% */
            ck_assert(mm_sparse_worthwhile(in, out, 0));
            ck_assert(!mm_sparse_worthwhile(in, out, all + 1));
            /* 90%: with AVX-512 */
            ck_assert(mm_sparse_worthwhile(in, out, all / 10) ==
                      (strcmp(sets[ks].name, "avx512") == 0));
            /* monotone in the number of stored weights */
            bool prev = true;
            for (size_t nnz = 0; nnz <= all; nnz += all / 50 + 1) {
                const bool w = mm_sparse_worthwhile(in, out, nnz);
                ck_assert(prev || !w);
                prev = w;
            }
        }
    }
    mm_sparse_kernels_override(NULL);
    ck_assert(!mm_sparse_worthwhile(0, 5, 0));
    ck_assert(!mm_sparse_worthwhile(SIZE_MAX, 3, 1));
}
END_TEST

/* MM_SPARSE_SIMD caps the kernel set chosen on first use. */
static const char *kernels_in_child(const char *env) {
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fd[0]);
        if (env) setenv("MM_SPARSE_SIMD", env, 1);
        else unsetenv("MM_SPARSE_SIMD");
        const char *name = mm_sparse_kernels_get()->name;
        ssize_t wr = write(fd[1], name, strlen(name) + 1);
        _exit(wr > 0 ? 0 : 1);
    }
    close(fd[1]);
    static char buf[32];
    memset(buf, 0, sizeof buf);
    ssize_t r = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return buf;
}

START_TEST(simd_env_switch) {
    kset sets[3];
    const size_t nsets = kernel_sets(sets);
    ck_assert_str_eq(kernels_in_child("0"), "portable");
    ck_assert_str_eq(kernels_in_child("portable"), "portable");
    ck_assert_str_eq(kernels_in_child(NULL), sets[nsets - 1].name);
    ck_assert_str_eq(kernels_in_child("avx2"), nsets >= 2 ? "avx2" : "portable");
    ck_assert(mm_sparse_kernels_for((mm_sparse_isa)7) == NULL);
    ck_assert(mm_sparse_kernels_for((mm_sparse_isa)-1) == NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * model files
 * ---------------------------------------------------------------------- */

static mm_model *mixed_model(size_t input, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, input, seed));
    MM_ASSERT_OK(mm_model_set_loss(m, MM_LOSS_SOFTMAX_XENT));
    MM_ASSERT_OK(mm_model_add_dense(m, 40, MM_ACT_TANH));
    MM_ASSERT_OK(mm_model_add_dense(m, 33, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 5, MM_ACT_IDENTITY));
    sparsify_layer(m, 0, 0.9, seed + 1);
    sparsify_layer(m, 2, 1.0, seed + 2); /* no weights at all: output = bias */
    return m;
}

/* Optimizer state of a sparse layer is saved in the file's order of the
 * weights (CSR), whatever the order in memory, and read back into memory
 * order. */
START_TEST(optimizer_state_in_file_order) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "300-64-5", 11));
    mm_layer *d = pruned_dense(300, 64, MM_ACT_RELU, 0.9, false, 12);
    MM_ASSERT_OK(mm_model_set_weights(m, 0, d->params[0].data, 300 * 64, NULL, 0));
    d->vt->destroy(d);
    mm_layer *sp;
    MM_ASSERT_OK(mm_sparse_from_dense(m->layers[0], &sp));
    MM_ASSERT_OK(mm_graph_replace(m, 0, sp));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    float x[4 * 300];
    int32_t lab[4] = {0, 1, 2, 3};
    mm_test_fill(x, 4 * 300, 13, -1.0f, 1.0f);
    for (int i = 0; i < 3; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, lab, NULL, 4, NULL));
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_optimizer_save(o, path));
    /* the file's m for weight_values, against the weights' CSR order */
    const size_t nnz = sp->params[0].rows;
    float *fm = malloc(nnz * sizeof *fm), *fv = malloc(nnz * sizeof *fv);
    mm_file *f;
    MM_ASSERT_OK(mm_file_open(&f, path));
    MM_ASSERT_OK(mm_file_read_f32(f, "optimizer.layers.0.weight_values.m", nnz, 1, fm));
    MM_ASSERT_OK(mm_file_read_f32(f, "layers.0.weight_values", nnz, 1, fv));
    mm_file_close(f);
    size_t *pos = positions(sp);
    /* CSR index of an entry = number of entries before it in row-major order */
    uint8_t *used = calloc(300 * 64, 1);
    for (size_t k = 0; k < nnz; k++) used[pos[k]] = 1;
    size_t *csr = malloc(300 * 64 * sizeof *csr), q = 0;
    for (size_t i = 0; i < 300 * 64; i++) csr[i] = used[i] ? q++ : 0;
    /* Adam's m is the first state tensor of every slot; slot 0 is layer 0's weight_values */
    float *mem_m = malloc(nnz * sizeof *mem_m);
    mm_optimizer *back;
    mm_model *m2;
    MM_ASSERT_OK(mm_model_load(&m2, path));
    MM_ASSERT_OK(mm_optimizer_load(&back, m2, path));
    size_t *pos2 = positions(m2->layers[0]);
    for (size_t k = 0; k < nnz; k++) {
        ck_assert(memcmp(&fv[csr[pos[k]]], &sp->params[0].data[k], sizeof(float)) == 0);
        ck_assert_uint_eq(pos2[k], pos[k]);
    }
    /* Adam's m of slot 0 (layer 0's weight_values) in memory order */
    memcpy(mem_m, o->slots[0].state[0], nnz * sizeof *mem_m);
    ck_assert_uint_eq(o->slots[0].layer, 0);
    ck_assert_uint_eq(o->slots[0].index, 0);
    for (size_t k = 0; k < nnz; k++) {
        ck_assert(memcmp(&fm[csr[pos[k]]], &mem_m[k], sizeof(float)) == 0);
        ck_assert(memcmp(&back->slots[0].state[0][k], &mem_m[k], sizeof(float)) == 0);
    }
    /* continuing from the file is bit-identical to never stopping */
    for (int i = 0; i < 2; i++) {
        MM_ASSERT_OK(mm_optimizer_step(o, x, lab, NULL, 4, NULL));
        MM_ASSERT_OK(mm_optimizer_step(back, x, lab, NULL, 4, NULL));
    }
    ck_assert(memcmp(m->layers[0]->params[0].data, m2->layers[0]->params[0].data,
                     nnz * sizeof(float)) == 0);
    free(fm), free(fv), free(pos), free(pos2), free(used), free(csr), free(mem_m);
    unlink(path);
    free(path);
    mm_optimizer_free(back);
    mm_optimizer_free(o);
    mm_model_free(m2);
    mm_model_free(m);
}
END_TEST

START_TEST(save_load_round_trip) {
    static const size_t inputs[] = {30, 70000};
    for (size_t ii = 0; ii < 2; ii++) {
        const size_t input = inputs[ii];
        mm_model *m = mixed_model(input, 40 + ii);
        char *path = mm_test_tmp_path(".mmf");
        MM_ASSERT_OK(mm_model_save(m, path));
        MM_ASSERT_OK(mm_model_save(m, path)); /* the file form is reused */
        mm_model *l;
        MM_ASSERT_OK(mm_model_load(&l, path));
        ck_assert_uint_eq(mm_model_num_layers(l), 3);
        for (size_t i = 0; i < 3; i++) {
            const mm_layer *a = m->layers[i], *b = l->layers[i];
            ck_assert_str_eq(a->vt->kind, b->vt->kind);
            ck_assert_uint_eq(a->vt->param_bytes(a), b->vt->param_bytes(b));
            for (size_t j = 0; j < a->n_params; j++) {
                ck_assert_uint_eq(a->params[j].rows, b->params[j].rows);
                ck_assert(memcmp(a->params[j].data, b->params[j].data,
                                 a->params[j].rows * a->params[j].cols * sizeof(float)) == 0);
            }
        }
        /* bit-exact outputs */
        float *x = malloc(9 * input * sizeof *x), y1[9 * 5], y2[9 * 5];
        mm_test_fill(x, 9 * input, 7, -1.0f, 1.0f);
        MM_ASSERT_OK(mm_model_forward(m, x, 9, y1));
        MM_ASSERT_OK(mm_model_forward(l, x, 9, y2));
        ck_assert(memcmp(y1, y2, sizeof y1) == 0);
        /* the file is plain CSR: 16-bit indices up to 65536 inputs */
        mm_file *f;
        MM_ASSERT_OK(mm_file_open(&f, path));
        mm_dtype dt;
        uint64_t shape[MM_FILE_MAX_DIMS];
        size_t ndim;
        MM_ASSERT_OK(mm_file_tensor_info(f, "layers.0.weight_indices", &dt, shape, &ndim));
        ck_assert_int_eq(dt, input > 65536 ? MM_DTYPE_U32 : MM_DTYPE_U16);
        ck_assert_uint_eq(shape[0], m->layers[0]->params[0].rows);
        MM_ASSERT_OK(mm_file_tensor_info(f, "layers.0.weight_offsets", &dt, shape, &ndim));
        ck_assert_int_eq(dt, MM_DTYPE_U32);
        ck_assert_uint_eq(shape[0], 41);
        MM_ASSERT_OK(mm_file_tensor_info(f, "layers.2.weight_values", &dt, shape, &ndim));
        ck_assert_uint_eq(shape[0], 0);
        ck_assert(mm_file_has_tensor(f, "layers.1.weight")); /* dense stays dense */
        /* CSR order: row-major, increasing columns, the stored values */
        const size_t nnz = m->layers[0]->params[0].rows;
        uint32_t *off = malloc(41 * sizeof *off);
        float *vals = malloc(nnz * sizeof *vals);
        uint32_t *idx = malloc(nnz * sizeof *idx);
        const uint64_t s41[1] = {41}, sn[1] = {nnz};
        MM_ASSERT_OK(mm_file_read_tensor(f, "layers.0.weight_offsets", MM_DTYPE_U32, s41, 1, off));
        MM_ASSERT_OK(mm_file_read_tensor(f, "layers.0.weight_values", MM_DTYPE_F32, sn, 1, vals));
        if (input > 65536) {
            MM_ASSERT_OK(mm_file_read_tensor(f, "layers.0.weight_indices", MM_DTYPE_U32, sn, 1, idx));
        } else {
            uint16_t *i16 = malloc(nnz * sizeof *i16);
            MM_ASSERT_OK(mm_file_read_tensor(f, "layers.0.weight_indices", MM_DTYPE_U16, sn, 1, i16));
            for (size_t k = 0; k < nnz; k++) idx[k] = i16[k];
            free(i16);
        }
        size_t *pos = positions(m->layers[0]);
        size_t *sorted = malloc(nnz * sizeof *sorted);
        float *byp = calloc(input * 40, sizeof *byp);
        for (size_t k = 0; k < nnz; k++) byp[pos[k]] = m->layers[0]->params[0].data[k];
        size_t q = 0;
        for (size_t r = 0; r < 40; r++) {
            ck_assert_uint_eq(off[r], q);
            for (size_t k = off[r]; k < off[r + 1]; k++, q++) {
                if (k > off[r]) ck_assert_uint_gt(idx[k], idx[k - 1]);
                ck_assert(memcmp(&vals[k], &byp[r * input + idx[k]], 4) == 0);
            }
        }
        ck_assert_uint_eq(q, nnz);
        free(off), free(vals), free(idx), free(pos), free(sorted), free(byp);
        mm_file_close(f);
        /* training drops the file form; saving again rebuilds it */
        int32_t lab[9] = {0, 1, 2, 3, 4, 0, 1, 2, 3};
        mm_optimizer *o;
        MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
        MM_ASSERT_OK(mm_optimizer_step(o, x, lab, NULL, 9, NULL));
        mm_optimizer_free(o);
        MM_ASSERT_OK(mm_model_save(m, path));
        mm_model_free(l);
        MM_ASSERT_OK(mm_model_load(&l, path));
        MM_ASSERT_OK(mm_model_forward(m, x, 9, y1));
        MM_ASSERT_OK(mm_model_forward(l, x, 9, y2));
        ck_assert(memcmp(y1, y2, sizeof y1) == 0);
        free(x);
        unlink(path);
        free(path);
        mm_model_free(m);
        mm_model_free(l);
    }
}
END_TEST

/* A hand-made file with one sparse layer (4 inputs, 3 outputs). */
typedef struct hostile {
    const char *arch_nnz; /* the "nnz" field text, NULL: absent */
    mm_dtype vdt, idt, odt;
    uint64_t vlen, ilen, olen;
    size_t vdims;
    uint32_t idx[16];
    uint32_t off[4];
    float vals[16];
    bool no_bias;
} hostile;

static void write_hostile(const char *path, const hostile *h) {
    char arch[512];
    snprintf(arch, sizeof arch,
             "{\"input_dim\":4,\"loss\":\"mse\",\"leaky_slope\":0.01,\"seed\":\"1\","
             "\"layers\":[{\"kind\":\"sparse\",\"in\":4,\"out\":3,\"activation\":\"identity\"%s%s}]}",
             h->arch_nnz ? ",\"nnz\":" : "", h->arch_nnz ? h->arch_nnz : "");
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "architecture", arch));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "lineage", "[]"));
    static uint16_t i16[16], o16[4];
    for (size_t i = 0; i < 16; i++) i16[i] = (uint16_t)h->idx[i];
    for (size_t i = 0; i < 4; i++) o16[i] = (uint16_t)h->off[i];
    static const float bias[3] = {0.5f, -0.25f, 1.0f};
    const uint64_t sv[2] = {h->vlen, 1}, si[1] = {h->ilen}, so[1] = {h->olen}, sb[1] = {3};
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_values", h->vdt, h->vals, sv,
                                           h->vdims));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_indices", h->idt,
                                           h->idt == MM_DTYPE_U16 ? (const void *)i16
                                                                  : (const void *)h->idx,
                                           si, 1));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_offsets", h->odt,
                                           h->odt == MM_DTYPE_U16 ? (const void *)o16
                                                                  : (const void *)h->off,
                                           so, 1));
    if (!h->no_bias)
        MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.bias", MM_DTYPE_F32, bias, sb, 1));
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);
}

/* rows: {0: cols 0, 2}, {1: none}, {2: cols 1, 2, 3} */
static const hostile good = {"5", MM_DTYPE_F32, MM_DTYPE_U16, MM_DTYPE_U32, 5, 5, 4, 1,
                             {0, 2, 1, 2, 3}, {0, 2, 2, 5}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f},
                             false};

static void expect_hostile(const hostile *h, mm_status want, const char *msg) {
    char *path = mm_test_tmp_path(".mmf");
    write_hostile(path, h);
    mm_model *m = (mm_model *)(uintptr_t)1;
    mm_status st = mm_model_load(&m, path);
    ck_assert_msg(st == want, "want %s for \"%s\", got %s: %s", mm_status_name(want), msg,
                  mm_status_name(st), mm_last_error_message());
    if (want == MM_OK) {
        const float x[4] = {1.0f, 10.0f, 100.0f, 1000.0f};
        float y[3];
        MM_ASSERT_OK(mm_model_forward(m, x, 1, y));
        ck_assert_float_eq(y[0], 0.5f + 1.0f + 200.0f);
        ck_assert_float_eq(y[1], -0.25f);
        ck_assert_float_eq(y[2], 1.0f + 30.0f + 400.0f + 5000.0f);
        mm_model_free(m);
    } else {
        ck_assert(m == NULL);
        ck_assert_msg(strstr(mm_last_error_message(), msg) != NULL, "want \"%s\" in: %s", msg,
                      mm_last_error_message());
    }
    unlink(path);
    free(path);
}

START_TEST(hostile_files) {
    hostile h = good;
    expect_hostile(&h, MM_OK, "");
    h.idt = MM_DTYPE_U32;
    expect_hostile(&h, MM_OK, "32-bit indices");

    h = good, h.idx[4] = 4;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_indices: element 4 (row 2) is 4");
    h = good, h.idx[4] = 65535;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_indices: element 4");
    h = good, h.idx[2] = 2, h.idx[3] = 1;
    expect_hostile(&h, MM_E_FORMAT, "columns of row 2 do not increase");
    h = good, h.idx[1] = 0;
    expect_hostile(&h, MM_E_FORMAT, "columns of row 0 do not increase");
    h = good, h.off[1] = 3, h.off[2] = 2;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_offsets decreases at row 2");
    h = good, h.off[0] = 1;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_offsets must start at 0");
    h = good, h.off[3] = 4;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_offsets must start at 0 and end at 5");
    h = good, h.off[3] = 6;
    expect_hostile(&h, MM_E_FORMAT, "end at 5");
    h = good, h.ilen = 4;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_indices has 4 elements but");
    h = good, h.olen = 3;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_offsets has 3 elements, expected 4");
    h = good, h.arch_nnz = "6";
    expect_hostile(&h, MM_E_FORMAT, "\"nnz\"");
    h = good, h.arch_nnz = NULL;
    expect_hostile(&h, MM_E_FORMAT, "\"nnz\"");
    h = good, h.arch_nnz = "\"5\"";
    expect_hostile(&h, MM_E_FORMAT, "\"nnz\"");
    h = good, h.odt = MM_DTYPE_U16;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_offsets has dtype U16, expected U32");
    h = good, h.idt = MM_DTYPE_I32;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_indices has dtype I32");
    h = good, h.vdt = MM_DTYPE_I32;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_values has dtype I32");
    h = good, h.vdims = 2;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_values has 2 dimensions");
    h = good, h.vals[3] = NAN;
    expect_hostile(&h, MM_E_NUMERIC, "layers.0.weight_values: element 3 is NaN");
    h = good, h.vals[0] = -INFINITY;
    expect_hostile(&h, MM_E_NUMERIC, "element 0 is infinite");
    h = good, h.no_bias = true;
    expect_hostile(&h, MM_E_FORMAT, "tensor layers.0.bias is missing");
    /* more stored weights than the layer has: 13 of 4 x 3 */
    h = good, h.vlen = h.ilen = 13, h.arch_nnz = "13";
    expect_hostile(&h, MM_E_FORMAT, "expected at most 12");
    /* a row with more weights than inputs */
    h = good, h.vlen = h.ilen = 5, h.off[1] = 5, h.off[2] = 5;
    h.idx[0] = 0, h.idx[1] = 1, h.idx[2] = 2, h.idx[3] = 3, h.idx[4] = 3;
    expect_hostile(&h, MM_E_FORMAT, "row 0 holds 5 weights");
    /* an empty layer is fine */
    h = good, h.vlen = h.ilen = 0, h.arch_nnz = "0", h.off[1] = h.off[2] = h.off[3] = 0;
    char *path = mm_test_tmp_path(".mmf");
    write_hostile(path, &h);
    mm_model *m;
    MM_ASSERT_OK(mm_model_load(&m, path));
    const float x[4] = {1, 2, 3, 4};
    float y[3];
    MM_ASSERT_OK(mm_model_forward(m, x, 1, y));
    ck_assert_float_eq(y[0], 0.5f);
    ck_assert_float_eq(y[2], 1.0f);
    mm_model_free(m);
    unlink(path);
    free(path);
}
END_TEST

/* Inference from several threads at once, and saves racing each other,
 * on one model nobody mutates. */
typedef struct conc_arg {
    const mm_model *m;
    const float *x;
    const float *want; /* 9 x 5 outputs */
    const char *path;  /* save instead when not NULL */
    int ok;
} conc_arg;

static void *conc_worker(void *p) {
    conc_arg *a = p;
    a->ok = 1;
    for (int rep = 0; rep < 40 && a->ok; rep++) {
        if (a->path) {
            if (mm_model_save(a->m, a->path) != MM_OK) a->ok = 0;
            continue;
        }
        float y[9 * 5];
        const size_t n = rep % 2 ? 9 : 1;
        if (mm_model_forward(a->m, a->x, n, y) != MM_OK ||
            memcmp(y, a->want, n * 5 * sizeof(float)) != 0)
            a->ok = 0;
    }
    return NULL;
}

START_TEST(concurrent_readers) {
    mm_model *m = mixed_model(300, 17);
    float *x = malloc(9 * 300 * sizeof *x), want[9 * 5];
    mm_test_fill(x, 9 * 300, 5, -1.0f, 1.0f);
    MM_ASSERT_OK(mm_model_forward(m, x, 9, want));
    char *paths[2] = {mm_test_tmp_path(".mmf"), mm_test_tmp_path(".mmf")};
    enum { NT = 5 };
    pthread_t th[NT];
    conc_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (conc_arg){m, x, want, i < 2 ? paths[i] : NULL, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(args[i].ok, "thread %d", i);
    }
    for (int i = 0; i < 2; i++) {
        mm_model *l;
        MM_ASSERT_OK(mm_model_load(&l, paths[i]));
        float y[9 * 5];
        MM_ASSERT_OK(mm_model_forward(l, x, 9, y));
        ck_assert(memcmp(y, want, sizeof y) == 0);
        mm_model_free(l);
        unlink(paths[i]);
        free(paths[i]);
    }
    free(x);
    mm_model_free(m);
}
END_TEST

/* Saving refuses non-finite values (the loader would refuse the file). */
START_TEST(save_refuses_nan) {
    mm_model *m = mixed_model(12, 3);
    m->layers[0]->params[0].data[0] = NAN;
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_STATUS(mm_model_save(m, path), MM_E_NUMERIC);
    ck_assert(access(path, F_OK) != 0);
    free(path);
    mm_model_free(m);
}
END_TEST

static Suite *sparse_suite(void) {
    Suite *s = suite_create("sparse");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, forward_matches_dense);
    tcase_add_test(tc, forward_activations_and_wide);
    tcase_add_test(tc, forward_structures);
    tcase_add_test(tc, forward_inf_input);
    tcase_add_test(tc, backward_matches_dense);
    tcase_add_test(tc, fused_sgd_matches_unfused);
    tcase_add_test(tc, simd_env_switch);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("layer");
    tcase_set_timeout(tl, 600);
    tcase_add_test(tl, gradcheck_in_model);
    tcase_add_test(tl, train_keeps_pattern);
    tcase_add_test(tl, conversion_rules);
    tcase_add_test(tl, clone_is_deep);
    tcase_add_test(tl, sizes_at_90_percent);
    tcase_add_test(tl, worthwhile_policy);
    suite_add_tcase(s, tl);
    TCase *tf = tcase_create("files");
    tcase_set_timeout(tf, 600);
    tcase_add_test(tf, save_load_round_trip);
    tcase_add_test(tf, optimizer_state_in_file_order);
    tcase_add_test(tf, hostile_files);
    tcase_add_test(tf, save_refuses_nan);
    tcase_add_test(tf, concurrent_readers);
    suite_add_tcase(s, tf);
    return s;
}

int main(void) { return mm_test_run(sparse_suite()); }
