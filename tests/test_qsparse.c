/* The int8 sparse layer kind (lib/quant/qsparse.c) and its kernels
 * (forward_q8 in lib/kernels/sparse_kernels.c): quantization error bounds
 * and exact zeros where pruned; forward on every kernel set this CPU has
 * against a double-precision reference of the dequantized weights; the
 * gap-coded file form (gaps of 255 and more, wide layers) round trip and
 * hostile files; float masters re-quantized after optimizer steps;
 * inference-only backward; the quantizer taking pruned models under every
 * int8 scheme (and leaving them float under fp16); sizes. Links the
 * internal object library. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/int8.h"
#include "kernels/sparse_kernels.h"
#include "model/mmfile.h"
#include "model/model_internal.h"
#include "mm/mm.h"
#include "prune/prune_internal.h"
#include "quant/quant_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

static uint32_t next_u32(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 32);
}

/* A sparse layer: random dense weights with `sparsity` of them zeroed
 * (every row keeps at least one when keep_rows). */
static mm_layer *make_sparse(size_t in, size_t out, mm_activation act, double sparsity,
                             uint64_t seed) {
    mm_layer *d;
    mm_rng rng;
    mm_rng_seed(&rng, seed);
    MM_ASSERT_OK(mm_dense_create(&d, in, out, act, 0.1f, MM_INIT_XAVIER, &rng));
    mm_test_fill(d->params[1].data, out, seed + 1, -0.5f, 0.5f);
    float *w = d->params[0].data;
    uint64_t s = seed * 7 + 3;
    for (size_t i = 0; i < in * out; i++)
        if ((double)next_u32(&s) / 4294967296.0 < sparsity) w[i] = 0.0f;
    mm_layer *sp = NULL;
    MM_ASSERT_OK(mm_sparse_from_dense(d, &sp));
    d->vt->destroy(d);
    return sp;
}

static const mm_quant_scheme all_schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                              MM_QUANT_INT8_STATIC};
#define N_SCHEMES 3

static mm_qlayer_config cfg_of(mm_quant_scheme scheme, bool per_channel, bool master) {
    mm_qlayer_config c;
    memset(&c, 0, sizeof c);
    c.scheme = scheme;
    c.per_channel = per_channel;
    c.weight_symmetric = true;
    c.keep_master = master;
    c.in_lo = -0.8f; /* static: inputs beyond it saturate */
    c.in_hi = 0.9f;
    return c;
}

static mm_layer *quantize_as(const mm_layer *sp, mm_quant_scheme scheme, bool per_channel,
                             bool master) {
    const mm_qlayer_config c = cfg_of(scheme, per_channel, master);
    mm_layer *q = NULL;
    MM_ASSERT_OK(mm_qsparse_from_sparse(sp, &c, &q));
    ck_assert_str_eq(q->vt->kind, "sparse_int8");
    ck_assert(mm_layer_has(q, MM_CAP_QUANTIZED));
    ck_assert(mm_qlayer_has_int8(q));
    ck_assert_uint_eq(q->in, sp->in);
    ck_assert_uint_eq(q->out, sp->out);
    ck_assert_uint_eq(q->n_params, master ? 2 : 0);
    return q;
}

static mm_layer *quantize(const mm_layer *sp, bool per_channel, bool master) {
    return quantize_as(sp, MM_QUANT_INT8_WEIGHT_ONLY, per_channel, master);
}

/* Dense out x in weights of a layer's forward pass. */
static float *effective(const mm_layer *l) {
    float *w = malloc(l->in * l->out * sizeof *w), *b = malloc(l->out * sizeof *b);
    MM_ASSERT_OK(mm_layer_effective_weights(l, w, b));
    free(b);
    return w;
}

static float *dense_of_sparse(const mm_layer *sp) {
    const size_t nnz = sp->params[0].rows;
    size_t *pos = malloc((nnz ? nnz : 1) * sizeof *pos);
    MM_ASSERT_OK(mm_sparse_positions(sp, pos));
    float *w = calloc(sp->in * sp->out, sizeof *w);
    for (size_t k = 0; k < nnz; k++) w[pos[k]] = sp->params[0].data[k];
    free(pos);
    return w;
}

static double act_d(mm_activation a, double v) {
    switch (a) {
    case MM_ACT_RELU: return v < 0 ? 0 : v;
    case MM_ACT_LEAKY_RELU: return v > 0 ? v : 0.1 * v;
    case MM_ACT_TANH: return tanh(v);
    case MM_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    default: return v;
    }
}

/* y against act(x W^T + b) in double, W the layer's effective weights;
 * with int8 activations (dynamic, static) x is first quantized as the
 * scheme says, with the kernels' own activation quantizer (tested in
 * test_int8), and dequantized. */
static void check_forward(const mm_layer *q, const float *x, const float *y, size_t n) {
    const size_t in = q->in, out = q->out;
    float *w = effective(q), *b = malloc(out * sizeof *b), *xd = malloc(n * in * sizeof *xd);
    MM_ASSERT_OK(mm_layer_effective_weights(q, w, b));
    mm_qlayer_int8 d;
    MM_ASSERT_OK(mm_qlayer_int8_describe(q, &d));
    uint8_t *xq = malloc(in);
    for (size_t s = 0; s < n; s++) {
        float xs = 1.0f;
        int32_t zp = 0;
        if (d.scheme == MM_QUANT_INT8_WEIGHT_ONLY) {
            memcpy(xd + s * in, x + s * in, in * sizeof *xd);
            continue;
        }
        if (d.scheme == MM_QUANT_INT8_DYNAMIC) {
            MM_ASSERT_OK(mm_int8_quantize_dynamic(x + s * in, 1, in, true, xq, &xs, &zp));
        } else {
            MM_ASSERT_OK(mm_int8_choose_params(d.in_lo, d.in_hi, d.act_symmetric, &xs, &zp));
            MM_ASSERT_OK(mm_int8_quantize_rows(x + s * in, 1, in, xs, zp, xq));
        }
        for (size_t i = 0; i < in; i++) xd[s * in + i] = (float)((double)xs * (xq[i] - zp));
    }
    free(xq);
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < out; o++) {
            double acc = b[o], mag = fabs(b[o]);
            for (size_t i = 0; i < in; i++) {
                acc += (double)w[o * in + i] * xd[s * in + i];
                mag += fabs((double)w[o * in + i] * xd[s * in + i]);
            }
            const double want = act_d(q->act, acc), got = y[s * out + o];
            ck_assert_msg(fabs(got - want) <= 1e-6 + 2e-6 * mag,
                          "sample %zu row %zu: %.9g vs %.9g", s, o, got, want);
        }
    free(w);
    free(b);
    free(xd);
}

/* Every kernel set of this CPU, in turn. */
#define FOR_EACH_KERNEL_SET(BODY)                                                          \
    do {                                                                                   \
        for (int isa_ = 0; isa_ <= 2; isa_++) {                                            \
            const mm_sparse_kernels *ks_ = mm_sparse_kernels_for((mm_sparse_isa)isa_);     \
            if (!ks_) continue;                                                            \
            mm_sparse_kernels_override(ks_);                                               \
            BODY;                                                                          \
        }                                                                                  \
        mm_sparse_kernels_override(NULL);                                                  \
    } while (0)

/* ------------------------------------------------------------------------
 * quantization and forward
 * ---------------------------------------------------------------------- */

START_TEST(error_bounds_and_zeros) {
    for (int pc = 0; pc <= 1; pc++) {
        mm_layer *sp = make_sparse(100, 37, MM_ACT_IDENTITY, 0.9, 11);
        mm_layer *q = quantize(sp, pc, false);
        float *ws = dense_of_sparse(sp), *wq = effective(q);
        const size_t n = sp->in * sp->out;
        /* the scale of each row: max |w| / 127 over the row (or the layer) */
        double smax = 0;
        for (size_t i = 0; i < n; i++) smax = fmax(smax, fabs(ws[i]));
        for (size_t o = 0; o < sp->out; o++) {
            double rmax = 0;
            for (size_t i = 0; i < sp->in; i++) rmax = fmax(rmax, fabs(ws[o * sp->in + i]));
            const double s = (pc ? rmax : smax) / 127.0;
            for (size_t i = 0; i < sp->in; i++) {
                const size_t e = o * sp->in + i;
                if (ws[e] == 0.0f) ck_assert_msg(wq[e] == 0.0f, "pruned weight %zu is %g", e,
                                                 (double)wq[e]);
                else ck_assert_msg(fabs(wq[e] - ws[e]) <= s * 0.5 * (1 + 1e-6) + 1e-12,
                                   "weight %zu: %g vs %g (scale %g)", e, (double)wq[e],
                                   (double)ws[e], s);
            }
        }
        free(ws);
        free(wq);
        q->vt->destroy(q);
        sp->vt->destroy(sp);
    }
}
END_TEST

START_TEST(forward_every_kernel_set) {
    static const struct {
        size_t in, out;
        double sparsity;
        mm_activation act;
    } shapes[] = {{784, 256, 0.9, MM_ACT_RELU},  {256, 128, 0.9, MM_ACT_TANH},
                  {128, 10, 0.9, MM_ACT_IDENTITY}, {33, 17, 0.5, MM_ACT_LEAKY_RELU},
                  {5, 3, 0.0, MM_ACT_SIGMOID},   {70, 40, 0.99, MM_ACT_IDENTITY}};
    static const size_t batches[] = {1, 2, 3, 4, 5, 17, 40};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (size_t sc = 0; sc < N_SCHEMES; sc++) {
            mm_layer *sp = make_sparse(shapes[c].in, shapes[c].out, shapes[c].act,
                                       shapes[c].sparsity, 100 + c);
            mm_layer *q = quantize_as(sp, all_schemes[sc], c % 2 == 0, false);
            const size_t nmax = 40, in = q->in, out = q->out;
            float *x = malloc(nmax * in * sizeof *x), *y = malloc(nmax * out * sizeof *y);
            float *y1 = malloc(nmax * out * sizeof *y1), *yref = malloc(nmax * out * sizeof *yref);
            mm_test_fill(x, nmax * in, 7 + c, -1.0f, 1.0f);
            bool first = true;
            FOR_EACH_KERNEL_SET({
                for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                    const size_t n = batches[b];
                    mm_layer_forward1(q, mm_kernels_get(), x, y, n);
                    check_forward(q, x, y, n);
                    /* a sample's output does not depend on its batch's size
                     * beyond rounding (int8 activations: not at all) */
                    for (size_t s = 0; s < n; s++)
                        mm_layer_forward1(q, mm_kernels_get(), x + s * in, y1 + s * out, 1);
                    if (all_schemes[sc] == MM_QUANT_INT8_WEIGHT_ONLY)
                        ck_assert(mm_test_max_abs_diff(y, y1, n * out) < 1e-4);
                    else
                        ck_assert(memcmp(y, y1, n * out * sizeof *y) == 0);
                }
                /* integer sums: every kernel set gives the same outputs */
                if (all_schemes[sc] != MM_QUANT_INT8_WEIGHT_ONLY) {
                    if (first) memcpy(yref, y, nmax * out * sizeof *y);
                    else ck_assert(memcmp(yref, y, nmax * out * sizeof *y) == 0);
                }
                first = false;
            });
            free(x);
            free(y);
            free(y1);
            free(yref);
            q->vt->destroy(q);
            sp->vt->destroy(sp);
        }
}
END_TEST

/* The packed word keeps both halves for every weight and column. */
START_TEST(packed_words) {
    for (int q = -127; q <= 127; q++)
        for (unsigned lc = 0; lc < MM_SP_BLOCK; lc++) {
            const int16_t w = mm_sp_qword(q, lc);
            ck_assert_int_eq(mm_sp_qword_weight(w), q);
            ck_assert_uint_eq((unsigned)(w & 31), lc);
        }
}
END_TEST

/* ------------------------------------------------------------------------
 * training: masters and inference-only layers
 * ---------------------------------------------------------------------- */

static mm_model *model_with(mm_layer *layer, size_t in) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, in, 1));
    MM_ASSERT_OK(mm_model_push_layer(m, layer));
    return m;
}

START_TEST(master_requantized_after_steps) {
    mm_layer *sp = make_sparse(60, 12, MM_ACT_IDENTITY, 0.8, 5);
    mm_layer *q = quantize_as(sp, all_schemes[_i], true, true);
    mm_model *m = model_with(q, 60);
    MM_ASSERT_OK(mm_model_set_loss(m, MM_LOSS_SOFTMAX_XENT));
    float *before = effective(q);
    float x[4 * 60];
    int32_t labels[4] = {1, 5, 7, 11};
    mm_test_fill(x, sizeof x / sizeof x[0], 3, -1.0f, 1.0f);
    mm_optimizer *o;
    for (int fused = 0; fused <= 1; fused++) {
        MM_ASSERT_OK(mm_optimizer_create(&o, m, fused ? MM_OPTIM_SGD : MM_OPTIM_ADAM));
        MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.05));
        double loss;
        for (int i = 0; i < 5; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, labels, NULL, 4, &loss));
        mm_optimizer_free(o);
    }
    /* the int8 weights follow the master: re-quantizing it gives them */
    float *after = effective(q);
    mm_layer *d = NULL;
    MM_ASSERT_OK(mm_qlayer_to_dense(q, &d)); /* the master, dense */
    const float *master = d->params[0].data;
    size_t moved = 0;
    for (size_t o2 = 0; o2 < 12; o2++) {
        double rmax = 0;
        for (size_t i = 0; i < 60; i++) rmax = fmax(rmax, fabs(master[o2 * 60 + i]));
        for (size_t i = 0; i < 60; i++) {
            const size_t e = o2 * 60 + i;
            if (before[e] == 0.0f) {
                ck_assert(after[e] == 0.0f && master[e] == 0.0f); /* pattern kept */
                continue;
            }
            moved += after[e] != before[e];
            ck_assert(fabs(after[e] - master[e]) <= rmax / 127.0 * 0.5 * (1 + 1e-5));
        }
    }
    ck_assert_uint_gt(moved, 0);
    d->vt->destroy(d);
    free(before);
    free(after);
    mm_model_free(m);
    sp->vt->destroy(sp);
}
END_TEST

/* Without a master the layer trains nothing but passes gradients down
 * through its dequantized weights. */
START_TEST(inference_only_backward) {
    mm_layer *sp = make_sparse(20, 9, MM_ACT_IDENTITY, 0.7, 8);
    mm_layer *q = quantize_as(sp, all_schemes[_i], false, false);
    float dy[3 * 9], dx[3 * 20], x[3 * 20], y[3 * 9];
    mm_test_fill(dy, 27, 1, -1.0f, 1.0f);
    mm_test_fill(x, 60, 2, -1.0f, 1.0f);
    mm_layer_forward1(q, mm_kernels_get(), x, y, 3);
    float dy0[27];
    memcpy(dy0, dy, sizeof dy);
    mm_layer_backward1(q, mm_kernels_get(), x, y, dy, dx, 3, true);
    float *w = effective(q);
    for (size_t s = 0; s < 3; s++)
        for (size_t i = 0; i < 20; i++) {
            double want = 0;
            for (size_t o = 0; o < 9; o++) want += (double)dy0[s * 9 + o] * w[o * 20 + i];
            ck_assert(fabs(dx[s * 20 + i] - want) < 1e-5);
        }
    free(w);
    q->vt->destroy(q);
    sp->vt->destroy(sp);
}
END_TEST

START_TEST(clone_and_describe) {
    mm_layer *sp = make_sparse(40, 20, MM_ACT_RELU, 0.85, 9);
    mm_layer *q = quantize_as(sp, all_schemes[_i], true, true), *c = NULL;
    MM_ASSERT_OK(q->vt->clone(q, &c));
    float *wq = effective(q), *wc = effective(c);
    ck_assert(memcmp(wq, wc, 800 * sizeof(float)) == 0);
    /* the clone is deep: training the original leaves it alone */
    q->params[0].data[0] += 1.0f;
    mm_layer_params_changed(q);
    float *wq2 = effective(q), *wc2 = effective(c);
    ck_assert(memcmp(wq2, wq, 800 * sizeof(float)) != 0);
    ck_assert(memcmp(wc2, wc, 800 * sizeof(float)) == 0);
    mm_qlayer_int8 d;
    MM_ASSERT_OK(mm_qlayer_int8_describe(c, &d));
    ck_assert_int_eq(d.scheme, all_schemes[_i]);
    for (size_t o = 0; o < 20; o++)
        for (size_t i = 0; i < 40; i++)
            ck_assert(fabsf(d.weight_scale[o] * d.weight_q[o * 40 + i] - wc[o * 40 + i]) == 0.0f);
    free(wq);
    free(wc);
    free(wq2);
    free(wc2);
    c->vt->destroy(c);
    q->vt->destroy(q);
    sp->vt->destroy(sp);
}
END_TEST

/* ------------------------------------------------------------------------
 * files
 * ---------------------------------------------------------------------- */

static mm_model *load_back(const mm_model *m) {
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *back = NULL;
    MM_ASSERT_OK(mm_model_load(&back, path));
    unlink(path);
    free(path);
    return back;
}

START_TEST(save_load_bit_exact) {
    /* wide and very sparse: gaps of 255 and more (several escape bytes) */
    static const struct {
        size_t in, out;
        double sparsity;
    } shapes[] = {{784, 64, 0.9}, {3000, 8, 0.995}, {70000, 2, 0.9995}, {7, 5, 0.0}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (int master = 0; master <= 1; master++) {
            if (shapes[c].in > MM_INT8_MAX_IN) continue; /* the quantizer keeps those float */
            mm_layer *sp = make_sparse(shapes[c].in, shapes[c].out, MM_ACT_RELU,
                                       shapes[c].sparsity, 40 + c);
            mm_model *m = model_with(quantize_as(sp, all_schemes[(c + master) % N_SCHEMES],
                                                 c % 2 == 0, master),
                                     shapes[c].in);
            mm_model *back = load_back(m);
            ck_assert_str_eq(back->layers[0]->vt->kind, "sparse_int8");
            ck_assert_uint_eq(back->layers[0]->n_params, master ? 2 : 0);
            const size_t in = shapes[c].in, out = shapes[c].out;
            float *x = malloc(3 * in * sizeof *x), *y0 = malloc(3 * out * sizeof *y0),
                  *y1 = malloc(3 * out * sizeof *y1);
            mm_test_fill(x, 3 * in, c, -1.0f, 1.0f);
            MM_ASSERT_OK(mm_model_forward(m, x, 3, y0));
            MM_ASSERT_OK(mm_model_forward(back, x, 3, y1));
            ck_assert(memcmp(y0, y1, 3 * out * sizeof *y0) == 0);
            if (master)
                ck_assert(memcmp(m->layers[0]->params[0].data, back->layers[0]->params[0].data,
                                 m->layers[0]->params[0].rows * sizeof(float)) == 0);
            free(x);
            free(y0);
            free(y1);
            mm_model_free(back);
            mm_model_free(m);
            sp->vt->destroy(sp);
        }
}
END_TEST

/* A file of one sparse_int8 layer 4 -> 2 with hand-written tensors. */
typedef struct hostile {
    const char *entry_extra; /* JSON after the generic fields */
    int8_t q[8];
    size_t nq;
    uint8_t gaps[12];
    size_t ngaps;
    uint32_t off[3];
    float scale[2];
} hostile;

static void write_hostile(const char *path, const hostile *h) {
    char arch[512];
    snprintf(arch, sizeof arch,
             "{\"format\":\"mmaint-model\",\"version\":1,\"input_dim\":4,\"loss\":\"mse\","
             "\"leaky_slope\":0.01,\"seed\":\"1\",\"layers\":[{\"kind\":\"sparse_int8\",\"in\":4,"
             "\"out\":2,\"activation\":\"identity\"%s}]}",
             h->entry_extra);
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "architecture", arch));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "lineage", "[]"));
    static const float bias[2] = {0.5f, -0.5f};
    const uint64_t s_q[1] = {h->nq}, s_g[1] = {h->ngaps}, s_o[1] = {3}, s_2[1] = {2};
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_q", MM_DTYPE_I8, h->q, s_q, 1));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_gaps", MM_DTYPE_U8, h->gaps, s_g, 1));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_offsets", MM_DTYPE_U32, h->off, s_o, 1));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_scale", MM_DTYPE_F32, h->scale, s_2, 1));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.bias", MM_DTYPE_F32, bias, s_2, 1));
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);
}

#define GOOD_FIELDS ",\"scheme\":\"weight_only\",\"nnz\":3,\"per_channel\":true,\"keep_master\":false"
/* row 0: columns 1, 3; row 1: column 0 */
static const hostile good = {GOOD_FIELDS, {5, -7, 127}, 3, {1, 1, 0}, 3, {0, 2, 3}, {0.1f, 0.2f}};

static void expect(const hostile *h, mm_status want, const char *msg) {
    char *path = mm_test_tmp_path(".mmf");
    write_hostile(path, h);
    mm_model *m = NULL;
    mm_status st = mm_model_load(&m, path);
    unlink(path);
    free(path);
    if (want == MM_OK) {
        MM_ASSERT_OK(st);
        const float x[4] = {1, 2, 3, 4};
        float y[2];
        MM_ASSERT_OK(mm_model_forward(m, x, 1, y));
        ck_assert_float_eq_tol(y[0], 0.1f * (5 * 2 - 7 * 4) + 0.5f, 1e-5f);
        ck_assert_float_eq_tol(y[1], 0.2f * 127 * 1 - 0.5f, 1e-5f);
        mm_model_free(m);
        return;
    }
    ck_assert_msg(st == want, "got %s (%s), want %s", mm_status_name(st),
                  mm_last_error_message(), mm_status_name(want));
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(mm_last_error_message(), msg), "message '%s' lacks '%s'",
                  mm_last_error_message(), msg);
}

START_TEST(hostile_files) {
    expect(&good, MM_OK, NULL);
    hostile h = good;
    h.ngaps = 2; /* fewer bytes than weights */
    expect(&h, MM_E_FORMAT, "has 2 bytes for 3 stored weights");
    h = good;
    h.gaps[2] = 255; /* an escape (the code would end inside row 1): beyond 4 inputs */
    expect(&h, MM_E_FORMAT, "row 1 has a column beyond the layer's 4 inputs");
    h = good;
    h.gaps[3] = 0;
    h.ngaps = 4; /* a byte after the last weight */
    expect(&h, MM_E_FORMAT, "after the last stored weight");
    h = good;
    h.gaps[1] = 2; /* row 0: columns 1 and 4 >= 4 inputs */
    expect(&h, MM_E_FORMAT, "beyond the layer's 4 inputs");
    h = good;
    h.gaps[0] = 255;
    h.gaps[1] = 255;
    h.gaps[2] = 0; /* one huge gap: 510 + ... */
    h.gaps[3] = 0;
    h.ngaps = 4;
    expect(&h, MM_E_FORMAT, "beyond the layer's 4 inputs");
    h = good;
    memset(h.gaps, 255, sizeof h.gaps); /* a long run of escapes: refused at once */
    h.ngaps = sizeof h.gaps;
    expect(&h, MM_E_FORMAT, "beyond the layer's 4 inputs");
    h = good;
    h.off[1] = 3;
    h.off[2] = 2; /* decreasing */
    expect(&h, MM_E_FORMAT, "weight_offsets");
    h = good;
    h.off[2] = 2; /* does not end at nnz */
    expect(&h, MM_E_FORMAT, "must run from 0 to 3");
    h = good;
    h.q[1] = -128;
    expect(&h, MM_E_FORMAT, "-128");
    h = good;
    h.scale[1] = 0.0f;
    expect(&h, MM_E_FORMAT, "scales must be finite and > 0");
    h = good;
    h.scale[0] = NAN;
    expect(&h, MM_E_FORMAT, "scales must be finite and > 0");
    h = good;
    h.entry_extra = ",\"scheme\":\"weight_only\",\"nnz\":4,\"per_channel\":true,\"keep_master\":false";
    expect(&h, MM_E_FORMAT, "\"nnz\" must be the number of stored weights");
    h = good;
    h.entry_extra = ",\"scheme\":\"weight_only\",\"nnz\":3,\"keep_master\":false";
    expect(&h, MM_E_FORMAT, "\"per_channel\" must be true or false");
    h = good;
    h.entry_extra = ",\"scheme\":\"weight_only\",\"nnz\":3,\"per_channel\":true,\"keep_master\":true"; /* no master tensor */
    expect(&h, MM_E_FORMAT, "weight_values");
    h = good;
    h.entry_extra = ",\"scheme\":\"static\",\"nnz\":3,\"per_channel\":true,"
                    "\"keep_master\":false,\"act_symmetric\":false"; /* no input_range */
    expect(&h, MM_E_FORMAT, "input_range");
    h = good;
    h.entry_extra = ",\"scheme\":\"int4\",\"nnz\":3,\"per_channel\":true,\"keep_master\":false";
    expect(&h, MM_E_FORMAT, "\"scheme\" must be");
    h = good;
    h.nq = 2; /* fewer weights than gaps say */
    h.entry_extra = ",\"scheme\":\"weight_only\",\"nnz\":2,\"per_channel\":true,\"keep_master\":false";
    expect(&h, MM_E_FORMAT, "weight_offsets");
}
END_TEST

/* ------------------------------------------------------------------------
 * the quantizer on pruned models (public API)
 * ---------------------------------------------------------------------- */

static mm_model *pruned_model(void) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "64-48-32-10:relu", 3));
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE_GLOBAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.9));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    mm_pruner_free(p);
    for (size_t l = 0; l < 3; l++) ck_assert_str_eq(m->layers[l]->vt->kind, "sparse");
    return m;
}

START_TEST(quantizer_takes_pruned_models) {
    static const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                              MM_QUANT_INT8_STATIC, MM_QUANT_FP16};
    float x[32 * 64], y0[32 * 10], y1[32 * 10];
    mm_test_fill(x, sizeof x / sizeof x[0], 4, 0.0f, 1.0f);
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        mm_model *m = pruned_model();
        MM_ASSERT_OK(mm_model_forward(m, x, 32, y0));
        const size_t bytes_before = mm_model_param_bytes(m), nz_before = mm_model_num_nonzero(m);
        mm_quantizer *q;
        MM_ASSERT_OK(mm_quantizer_create(&q, schemes[i]));
        if (schemes[i] == MM_QUANT_INT8_STATIC) MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 32));
        MM_ASSERT_OK(mm_quantizer_apply(q, m));
        const char *report = mm_quantizer_report(q);
        for (size_t l = 0; l < 3; l++) {
            if (schemes[i] == MM_QUANT_FP16) {
                ck_assert_str_eq(m->layers[l]->vt->kind, "sparse");
                ck_assert_msg(strstr(report, "sparse layers have no fp16 form"), "%s", report);
            } else {
                ck_assert_str_eq(m->layers[l]->vt->kind, "sparse_int8");
            }
        }
        MM_ASSERT_OK(mm_model_forward(m, x, 32, y1));
        ck_assert(mm_test_max_abs_diff(y0, y1, 32 * 10) < 0.05);
        /* still as sparse as before (it used to read 0% without masters) */
        for (size_t l = 0; l < 3; l++) {
            double sp;
            MM_ASSERT_OK(mm_model_layer_sparsity(m, l, &sp));
            ck_assert_msg(sp > 0.8, "layer %zu sparsity %g", l, sp);
        }
        if (schemes[i] != MM_QUANT_FP16) {
            /* tiny layers: the layout's per-tile bytes dominate (the big
             * model's figures are in file_size_fraction and RESULTS.md) */
            ck_assert_uint_lt(mm_model_param_bytes(m), bytes_before);
            ck_assert_uint_eq(mm_model_num_nonzero(m), nz_before);
            /* the default keeps no master: nothing left to train */
            mm_optimizer *o = NULL;
            ck_assert(mm_optimizer_create(&o, m, MM_OPTIM_SGD) != MM_OK);
        }
        mm_quantizer_free(q);
        mm_model_free(m);
    }
}
END_TEST

/* Static quantization-aware training of a partly pruned model: the qat
 * layers observe their ranges, the sparse layer does not, so the apply
 * that ends training keeps it float (with the reason) instead of failing;
 * calibrated, the next apply quantizes it. */
START_TEST(static_qat_keeps_sparse_until_calibrated) {
    mm_model *m = model_with(make_sparse(64, 48, MM_ACT_RELU, 0.9, 21), 64);
    MM_ASSERT_OK(mm_model_add_dense(m, 10, MM_ACT_IDENTITY));
    MM_ASSERT_OK(mm_model_set_loss(m, MM_LOSS_SOFTMAX_XENT));
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_prepare_qat(q, m));
    ck_assert_str_eq(m->layers[0]->vt->kind, "sparse");
    ck_assert_str_eq(m->layers[1]->vt->kind, "qat");
    float x[16 * 64];
    int32_t y[16];
    mm_test_fill(x, sizeof x / sizeof x[0], 5, 0.0f, 1.0f);
    for (int i = 0; i < 16; i++) y[i] = i % 10;
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    for (int i = 0; i < 5; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, y, NULL, 16, NULL));
    mm_optimizer_free(o);
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    ck_assert_str_eq(m->layers[0]->vt->kind, "sparse");
    ck_assert_str_eq(m->layers[1]->vt->kind, "int8");
    ck_assert_ptr_nonnull(strstr(mm_quantizer_report(q), "calibrate before apply"));
    MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 16));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    ck_assert_str_eq(m->layers[0]->vt->kind, "sparse_int8");
    mm_quantizer_free(q);
    mm_model_free(m);
}
END_TEST

/* act_symmetric survives save/load under every scheme. */
START_TEST(act_symmetric_survives_files) {
    mm_layer *sp = make_sparse(30, 8, MM_ACT_RELU, 0.8, 22);
    mm_qlayer_config c = cfg_of(all_schemes[_i], true, false);
    c.act_symmetric = true;
    mm_layer *ql = NULL;
    MM_ASSERT_OK(mm_qsparse_from_sparse(sp, &c, &ql));
    mm_model *m = model_with(ql, 30), *back = load_back(m);
    mm_qlayer_int8 d0, d1;
    MM_ASSERT_OK(mm_qlayer_int8_describe(m->layers[0], &d0));
    MM_ASSERT_OK(mm_qlayer_int8_describe(back->layers[0], &d1));
    ck_assert(d0.act_symmetric && d1.act_symmetric);
    mm_model_free(back);
    mm_model_free(m);
    sp->vt->destroy(sp);
}
END_TEST

/* The demo's model shape: the 90% pruned model's sparse_int8 file is a
 * small fraction of the float file. */
START_TEST(file_size_fraction) {
    mm_model *dense, *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&dense, "784-256-128-10:relu", 1));
    MM_ASSERT_OK(mm_model_clone(dense, &m));
    mm_pruner *p;
    MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE_GLOBAL));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.9));
    MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_apply(p, m));
    MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, MM_QUANT_INT8_DYNAMIC));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    char *pd = mm_test_tmp_path(".mmf"), *pq = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(dense, pd));
    MM_ASSERT_OK(mm_model_save(m, pq));
    FILE *f1 = fopen(pd, "rb"), *f2 = fopen(pq, "rb");
    fseek(f1, 0, SEEK_END);
    fseek(f2, 0, SEEK_END);
    const long s1 = ftell(f1), s2 = ftell(f2);
    fclose(f1);
    fclose(f2);
    ck_assert_msg(s2 * 100 <= s1 * 7, "sparse_int8 file %ld bytes, float %ld", s2, s1);
    unlink(pd);
    unlink(pq);
    free(pd);
    free(pq);
    mm_quantizer_free(q);
    mm_pruner_free(p);
    mm_model_free(m);
    mm_model_free(dense);
}
END_TEST

int main(void) {
    Suite *s = suite_create("qsparse");
    TCase *tc = tcase_create("qsparse");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, error_bounds_and_zeros);
    tcase_add_test(tc, forward_every_kernel_set);
    tcase_add_test(tc, packed_words);
    tcase_add_loop_test(tc, master_requantized_after_steps, 0, N_SCHEMES);
    tcase_add_loop_test(tc, inference_only_backward, 0, N_SCHEMES);
    tcase_add_loop_test(tc, clone_and_describe, 0, N_SCHEMES);
    tcase_add_test(tc, save_load_bit_exact);
    tcase_add_test(tc, hostile_files);
    tcase_add_test(tc, quantizer_takes_pruned_models);
    tcase_add_test(tc, static_qat_keeps_sparse_until_calibrated);
    tcase_add_loop_test(tc, act_symmetric_survives_files, 0, N_SCHEMES);
    tcase_add_test(tc, file_size_fraction);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
