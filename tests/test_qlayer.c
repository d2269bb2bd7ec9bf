/* The quantized layer kinds (lib/quant/qlayer.c): "int8" (weight-only,
 * dynamic, static; per-channel / per-tensor, symmetric / asymmetric
 * weights), "fp16" and "bf16". Quantize/dequantize error bounds, outputs
 * against the float dense layer within bounds derived from the scales,
 * static saturation, identical outputs on every int8 kernel ISA (forked
 * children), re-quantization after optimizer steps on float masters,
 * save/load round trips, hostile files, refusals, sizes. Links the
 * internal object library. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/int8.h"
#include "model/mmfile.h"
#include "model/model_internal.h"
#include "mm/mm.h"
#include "quant/quant_internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static mm_layer *make_dense(size_t in, size_t out, mm_activation act, uint64_t seed) {
    mm_layer *d;
    mm_rng rng;
    mm_rng_seed(&rng, seed);
    MM_ASSERT_OK(mm_dense_create(&d, in, out, act, 0.1f, MM_INIT_XAVIER, &rng));
    mm_test_fill(d->params[1].data, out, seed + 1, -0.3f, 0.3f);
    return d;
}

static mm_qlayer_config make_cfg(mm_quant_scheme scheme, bool pc, bool wsym, bool asym,
                                 bool master) {
    mm_qlayer_config c;
    memset(&c, 0, sizeof c);
    c.scheme = scheme;
    c.per_channel = pc;
    c.weight_symmetric = wsym;
    c.act_symmetric = asym;
    c.keep_master = master;
    c.in_lo = -1.0f;
    c.in_hi = 1.0f;
    return c;
}

static mm_layer *quantize(const mm_layer *d, const mm_qlayer_config *c) {
    mm_layer *q = NULL;
    MM_ASSERT_OK(mm_qlayer_from_dense(d, c, &q));
    ck_assert_ptr_nonnull(q);
    ck_assert(mm_layer_has(q, MM_CAP_QUANTIZED));
    ck_assert_uint_eq(q->in, d->in);
    ck_assert_uint_eq(q->out, d->out);
    return q;
}

static void fwd(const mm_layer *l, const float *x, float *y, size_t n) {
    mm_layer_forward1(l, mm_kernels_get(), x, y, n);
}

static void free_layer(mm_layer *l) {
    if (l) l->vt->destroy(l);
}

/* The dequantized (or master) weights through mm_qlayer_to_dense. */
static float *weights_of(const mm_layer *q) {
    mm_layer *d = NULL;
    MM_ASSERT_OK(mm_qlayer_to_dense(q, &d));
    ck_assert_str_eq(d->vt->kind, "dense");
    const size_t n = q->in * q->out;
    float *w = xmalloc(n * sizeof *w);
    memcpy(w, d->params[0].data, n * sizeof *w);
    free_layer(d);
    return w;
}

/* The test's own weight quantizer (the documented formulas). */
static void ref_params(const float *w, size_t n, bool sym, float *scale, int32_t *zp) {
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < n; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    double s = sym ? fmax(-(double)lo, (double)hi) / 127.0 : ((double)hi - (double)lo) / 255.0;
    *scale = s > 0 ? (float)s : 1.0f;
    *zp = 0;
    if (!sym) {
        float z = nearbyintf(-128.0f - lo / *scale);
        *zp = (int32_t)fminf(fmaxf(z, -128.0f), 127.0f);
    }
}

static int8_t ref_q(float w, float s, int32_t zp, bool sym) {
    float v = nearbyintf(w / s);
    if (sym) return (int8_t)fminf(fmaxf(v, -127.0f), 127.0f);
    return (int8_t)fminf(fmaxf(v + (float)zp, -128.0f), 127.0f);
}

/* Scale (and zero point) of row o of W under a config. */
static void ref_row_params(const float *w, size_t out, size_t in, size_t o, bool pc, bool sym,
                           float *s, int32_t *zp) {
    if (pc) ref_params(w + o * in, in, sym, s, zp);
    else ref_params(w, out * in, sym, s, zp);
}

static mm_model *small_model(size_t in, size_t h, size_t out, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, in, seed));
    MM_ASSERT_OK(mm_model_add_dense(m, h, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, out, MM_ACT_IDENTITY));
    for (size_t l = 0; l < 2; l++)
        mm_test_fill(m->layers[l]->params[1].data, m->layers[l]->out, seed + l, -0.2f, 0.2f);
    return m;
}

/* Replace layer i of a model by its quantized version. */
static void swap_in(mm_model *m, size_t i, const mm_qlayer_config *c) {
    mm_layer *q = quantize(m->layers[i], c);
    MM_ASSERT_OK(mm_graph_replace(m, mm_graph_node_of_layer(m, i), q));
}

/* ------------------------------------------------------------------------
 * quantize / dequantize
 * ---------------------------------------------------------------------- */

START_TEST(roundtrip_error_bounds) {
    const size_t in = 37, out = 19;
    mm_layer *d = make_dense(in, out, MM_ACT_IDENTITY, 11);
    float *w = d->params[0].data;
    w[3] = 0.0f;
    w[5 * in + 2] = 2.5f; /* a larger value in one row */
    for (size_t i = 0; i < in; i++) w[7 * in + i] = 0.0f; /* an all-zero row */
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC};
    for (int sc = 0; sc < 2; sc++)
        for (int pc = 0; pc < 2; pc++)
            for (int sym = 0; sym < 2; sym++) {
                mm_qlayer_config c = make_cfg(schemes[sc], pc, sym, false, false);
                mm_layer *q = quantize(d, &c);
                float *dq = weights_of(q);
                for (size_t o = 0; o < out; o++) {
                    float s;
                    int32_t zp;
                    ref_row_params(w, out, in, o, pc, sym, &s, &zp);
                    for (size_t i = 0; i < in; i++) {
                        const size_t k = o * in + i;
                        /* the dequantized value is exactly s * (q - zp) */
                        const int8_t qv = ref_q(w[k], s, zp, sym);
                        ck_assert_msg(dq[k] == s * (float)((int32_t)qv - zp),
                                      "sc %d pc %d sym %d: w[%zu] = %g -> %g, want q %d", sc, pc,
                                      sym, k, (double)w[k], (double)dq[k], (int)qv);
                        ck_assert_msg(fabsf(w[k] - dq[k]) <= s * 0.5f * (1.0f + 1e-5f),
                                      "|w - dq| = %g > s/2 = %g", (double)fabsf(w[k] - dq[k]),
                                      (double)(s * 0.5f));
                        if (w[k] == 0.0f) ck_assert(dq[k] == 0.0f); /* zero is exact */
                    }
                }
                free(dq);
                free_layer(q);
            }
    /* fp16 / bf16: relative error <= 2^-11 / 2^-8 (normal range) */
    for (int h = 0; h < 2; h++) {
        mm_qlayer_config c = make_cfg(h ? MM_QUANT_BF16 : MM_QUANT_FP16, true, true, false, false);
        mm_layer *q = quantize(d, &c);
        float *dq = weights_of(q);
        const float rel = h ? 0x1p-8f : 0x1p-11f;
        for (size_t k = 0; k < in * out; k++)
            ck_assert_msg(fabsf(w[k] - dq[k]) <= fabsf(w[k]) * rel, "%s: %g -> %g",
                          h ? "bf16" : "fp16", (double)w[k], (double)dq[k]);
        free(dq);
        free_layer(q);
    }
    free_layer(d);
}
END_TEST

/* Exact 16-bit conversions at the edges (through a 1 x 8 layer). */
START_TEST(half_conversion_edges) {
    const float vals[8] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1.8p-25f, 1.0f + 0x1p-11f,
                           1.0f + 0x1.8p-11f, 0x1p-14f};
    /* fp16: 2^-25 * 1.5 rounds up to 2^-24; 1 + 2^-11 is a tie -> 1;
     * 1 + 1.5 * 2^-11 rounds to 1 + 2^-10 */
    const float want16[8] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1p-24f, 1.0f, 1.0f + 0x1p-10f,
                             0x1p-14f};
    mm_layer *d = make_dense(8, 1, MM_ACT_IDENTITY, 1);
    memcpy(d->params[0].data, vals, sizeof vals);
    mm_qlayer_config c = make_cfg(MM_QUANT_FP16, true, true, false, false);
    mm_layer *q = quantize(d, &c);
    float *dq = weights_of(q);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(dq[i] == want16[i], "fp16 %d: %a -> %a, want %a", i, (double)vals[i],
                      (double)dq[i], (double)want16[i]);
    free(dq);
    free_layer(q);
    /* bf16: 1 + 2^-8 is a tie -> 1; 1 + 3 * 2^-8 tie -> 1 + 2^-6 (even) */
    const float bv[4] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -3.0f, 1e-30f};
    memcpy(d->params[0].data, bv, sizeof bv);
    c.scheme = MM_QUANT_BF16;
    q = quantize(d, &c);
    dq = weights_of(q);
    ck_assert(dq[0] == 1.0f);
    ck_assert(dq[1] == 1.0f + 0x1p-6f);
    ck_assert(dq[2] == -3.0f);
    ck_assert(fabsf(dq[3] - 1e-30f) <= 1e-30f * 0x1p-8f);
    free(dq);
    free_layer(q);
    free_layer(d);
}
END_TEST

START_TEST(per_channel_beats_per_tensor) {
    const size_t in = 64, out = 32, n = 16, outlier = 5;
    mm_layer *d = make_dense(in, out, MM_ACT_IDENTITY, 3);
    float *w = d->params[0].data;
    for (size_t i = 0; i < in; i++) w[outlier * in + i] *= 100.0f;
    float *x = xmalloc(n * in * sizeof *x), *yf = xmalloc(n * out * sizeof *yf),
          *y = xmalloc(n * out * sizeof *y);
    mm_test_fill(x, n * in, 4, -1.0f, 1.0f);
    fwd(d, x, yf, n);
    double err[2][2] = {{0}}; /* [per_channel][0: weights, 1: outputs], other channels */
    for (int pc = 0; pc < 2; pc++) {
        mm_qlayer_config c = make_cfg(MM_QUANT_INT8_WEIGHT_ONLY, pc, true, false, false);
        mm_layer *q = quantize(d, &c);
        float *dq = weights_of(q);
        for (size_t o = 0; o < out; o++) {
            if (o == outlier) continue;
            for (size_t i = 0; i < in; i++) {
                double e = (double)w[o * in + i] - dq[o * in + i];
                err[pc][0] += e * e;
            }
        }
        fwd(q, x, y, n);
        for (size_t s = 0; s < n; s++)
            for (size_t o = 0; o < out; o++) {
                if (o == outlier) continue;
                double e = (double)y[s * out + o] - yf[s * out + o];
                err[pc][1] += e * e;
            }
        free(dq);
        free_layer(q);
    }
    const double rw = sqrt(err[0][0] / err[1][0]), ry = sqrt(err[0][1] / err[1][1]);
    fprintf(stderr, "outlier channel: per-tensor / per-channel RMS error: weights %.1fx, "
                    "outputs %.1fx\n",
            rw, ry);
    ck_assert_msg(rw >= 20.0, "weight error ratio %.2f", rw);
    ck_assert_msg(ry >= 20.0, "output error ratio %.2f", ry);
    free(x);
    free(y);
    free(yf);
    free_layer(d);
}
END_TEST

/* ------------------------------------------------------------------------
 * outputs against the float layer
 * ---------------------------------------------------------------------- */

/* Check a quantized layer's outputs against the float layer's: per output
 * |yq - yf| <= ws/2 * sum|x| + xs/2 * sum|wdq| (+ float rounding), with xs
 * the activation scale of the sample (0 for float activations); 16-bit
 * kinds: rel * sum|x w|. Activations used here are 1-Lipschitz. */
static void check_vs_float(const mm_layer *d, const mm_qlayer_config *c, const float *x,
                           size_t n) {
    const size_t in = d->in, out = d->out;
    mm_layer *q = quantize(d, c);
    float *dq = weights_of(q);
    float *yf = xmalloc(n * out * sizeof *yf), *y = xmalloc(n * out * sizeof *y),
          *y1 = xmalloc(out * sizeof *y1);
    fwd(d, x, yf, n);
    fwd(q, x, y, n);
    const float *w = d->params[0].data;
    const bool i8 = c->scheme != MM_QUANT_FP16 && c->scheme != MM_QUANT_BF16;
    for (size_t s = 0; s < n; s++) {
        const float *xr = x + s * in;
        float xs = 0.0f;
        if (c->scheme == MM_QUANT_INT8_DYNAMIC || c->scheme == MM_QUANT_INT8_STATIC) {
            float lo = xr[0], hi = xr[0];
            for (size_t i = 1; i < in; i++) {
                lo = fminf(lo, xr[i]);
                hi = fmaxf(hi, xr[i]);
            }
            int32_t zp;
            if (c->scheme == MM_QUANT_INT8_DYNAMIC)
                MM_ASSERT_OK(mm_int8_choose_params(lo, hi, false, &xs, &zp));
            else
                MM_ASSERT_OK(mm_int8_choose_params(c->in_lo, c->in_hi, c->act_symmetric, &xs, &zp));
        }
        for (size_t o = 0; o < out; o++) {
            double sx = 0, swq = 0, sxw = 0;
            for (size_t i = 0; i < in; i++) {
                sx += fabs(xr[i]);
                swq += fabs(dq[o * in + i]);
                sxw += fabs((double)xr[i] * w[o * in + i]);
            }
            double bound;
            if (i8) {
                float ws;
                int32_t zp;
                ref_row_params(w, out, in, o, c->per_channel, c->weight_symmetric, &ws, &zp);
                bound = ws * 0.5 * sx + xs * 0.5 * swq;
            } else {
                bound = sxw * (c->scheme == MM_QUANT_FP16 ? 0x1p-11 : 0x1p-8);
            }
            bound = bound * (1 + 1e-4) + 1e-5 * (sxw + 1.0);
            const double e = fabs((double)y[s * out + o] - yf[s * out + o]);
            ck_assert_msg(e <= bound, "scheme %d pc %d wsym %d act %d n %zu: |y - yf|[%zu,%zu] = "
                                      "%g > bound %g",
                          (int)c->scheme, c->per_channel, c->weight_symmetric, (int)d->act, n, s,
                          o, e, bound);
        }
        /* int8 kernels: a sample's output does not depend on its batch */
        if (c->scheme == MM_QUANT_INT8_DYNAMIC || c->scheme == MM_QUANT_INT8_STATIC) {
            fwd(q, xr, y1, 1);
            ck_assert_msg(memcmp(y1, y + s * out, out * sizeof *y1) == 0,
                          "sample %zu differs between batch %zu and batch 1", s, n);
        }
    }
    free(y);
    free(y1);
    free(yf);
    free(dq);
    free_layer(q);
}

START_TEST(schemes_vs_float) {
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_STATIC, MM_QUANT_FP16, MM_QUANT_BF16};
    const mm_activation acts[] = {MM_ACT_IDENTITY, MM_ACT_RELU};
    const size_t ns[] = {1, 7, 100};
    const size_t dims[][2] = {{53, 21}, {300, 70}};
    for (size_t dd = 0; dd < 2; dd++)
        for (int a = 0; a < 2; a++) {
            const size_t in = dims[dd][0], out = dims[dd][1];
            mm_layer *d = make_dense(in, out, acts[a], 20 + dd);
            if (dd == 1) /* skewed weights: asymmetric zero points far from 0 */
                for (size_t i = 0; i < in * out; i++) d->params[0].data[i] += 0.1f;
            float *x = xmalloc(100 * in * sizeof *x);
            mm_test_fill(x, 100 * in, 21 + dd, -1.0f, 1.0f);
            for (size_t i = 0; i < 100 * in; i += 7) x[i] *= 0.25f;
            for (int sc = 0; sc < 5; sc++)
                for (int pc = 0; pc < 2; pc++)
                    for (int sym = 0; sym < 2; sym++)
                        for (int as = 0; as < 2; as++) {
                            if (sc >= 3 && (pc == 0 || sym == 0 || as)) continue;
                            if (sc != 2 && as) continue;
                            mm_qlayer_config c = make_cfg(schemes[sc], pc, sym, as, false);
                            for (size_t k = 0; k < 3; k++) check_vs_float(d, &c, x, ns[k]);
                        }
            free(x);
            free_layer(d);
        }
}
END_TEST

/* tanh, sigmoid, leaky relu through the int8 epilogue and the float path */
START_TEST(other_activations) {
    const mm_activation acts[] = {MM_ACT_TANH, MM_ACT_SIGMOID, MM_ACT_LEAKY_RELU};
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_STATIC, MM_QUANT_FP16};
    const size_t in = 40, out = 12, n = 5;
    float x[5 * 40], yf[5 * 12], y[5 * 12];
    mm_test_fill(x, n * in, 9, -1.0f, 1.0f);
    for (int a = 0; a < 3; a++) {
        mm_layer *d = make_dense(in, out, acts[a], 30 + a);
        fwd(d, x, yf, n);
        for (int sc = 0; sc < 4; sc++) {
            mm_qlayer_config c = make_cfg(schemes[sc], true, true, false, false);
            mm_layer *q = quantize(d, &c);
            fwd(q, x, y, n);
            ck_assert_msg(mm_test_max_abs_diff(y, yf, n * out) < 0.05, "act %d scheme %d: %g",
                          (int)acts[a], sc, mm_test_max_abs_diff(y, yf, n * out));
            fwd(q, x, y, 1);
            ck_assert_msg(mm_test_max_abs_diff(y, yf, out) < 0.05, "act %d scheme %d batch 1",
                          (int)acts[a], sc);
            free_layer(q);
        }
        free_layer(d);
    }
}
END_TEST

START_TEST(static_saturation) {
    const size_t in = 24, out = 9, n = 3;
    for (int as = 0; as < 2; as++) {
        mm_layer *d = make_dense(in, out, MM_ACT_IDENTITY, 40);
        mm_qlayer_config c = make_cfg(MM_QUANT_INT8_STATIC, true, true, as, false);
        c.in_lo = -0.5f;
        c.in_hi = 1.5f;
        mm_layer *q = quantize(d, &c);
        float xs;
        int32_t zp;
        MM_ASSERT_OK(mm_int8_choose_params(c.in_lo, c.in_hi, as, &xs, &zp));
        const float top = xs * (float)(255 - zp), bottom = xs * (float)(0 - zp);
        float xbig[3 * 24], xedge[3 * 24], y1[3 * 9], y2[3 * 9], yf[3 * 9];
        mm_test_fill(xbig, n * in, 41, -0.5f, 1.5f);
        memcpy(xedge, xbig, sizeof xbig);
        for (size_t i = 0; i < n * in; i += 3) {
            xbig[i] = (i % 2) ? 50.0f : 7.0f;
            xedge[i] = top;
        }
        for (size_t i = 1; i < n * in; i += 5) {
            xbig[i] = (i % 2) ? -40.0f : -3.0f;
            xedge[i] = bottom;
        }
        xbig[4] = INFINITY;
        xedge[4] = top;
        /* row 0 holds +Inf: NaN row (checked below), so compare rows 1, 2 */
        fwd(q, xbig, y1, n);
        fwd(q, xedge, y2, n);
        ck_assert_msg(memcmp(y1 + out, y2 + out, 2 * out * sizeof(float)) == 0,
                      "saturated inputs must equal the edge codes");
        for (size_t o = 0; o < out; o++) ck_assert(isnan(y1[o]));
        /* saturation really happened: the float layer sees the big values */
        fwd(d, xbig, yf, n);
        ck_assert(mm_test_max_abs_diff(y1 + out, yf + out, 2 * out) > 1.0);
        /* NaN input -> NaN row; the other rows are untouched */
        xedge[in + 2] = NAN;
        fwd(q, xedge, y1, n);
        for (size_t o = 0; o < out; o++) ck_assert(isnan(y1[out + o]));
        ck_assert(memcmp(y1, y2, out * sizeof(float)) == 0);
        ck_assert(memcmp(y1 + 2 * out, y2 + 2 * out, out * sizeof(float)) == 0);
        free_layer(q);
        free_layer(d);
    }
}
END_TEST

START_TEST(dynamic_nonfinite_rows) {
    const size_t in = 30, out = 6, n = 4;
    mm_layer *d = make_dense(in, out, MM_ACT_RELU, 50);
    mm_qlayer_config c = make_cfg(MM_QUANT_INT8_DYNAMIC, true, false, false, false);
    mm_layer *q = quantize(d, &c);
    float x[4 * 30], y[4 * 6], ref[4 * 6];
    mm_test_fill(x, n * in, 51, -2.0f, 2.0f);
    fwd(q, x, ref, n);
    x[2 * in + 7] = NAN;
    x[3 * in] = -INFINITY;
    fwd(q, x, y, n);
    ck_assert(memcmp(y, ref, 2 * out * sizeof(float)) == 0);
    for (size_t o = 0; o < 2 * out; o++) ck_assert(isnan(y[2 * out + o]));
    free_layer(q);
    free_layer(d);
}
END_TEST

/* ------------------------------------------------------------------------
 * ISA variants: identical outputs (each in a forked child)
 * ---------------------------------------------------------------------- */

#define ISA_N 37

typedef struct isa_case {
    mm_quant_scheme scheme;
    bool pc, wsym, asym;
    mm_activation act;
    size_t in, out;
} isa_case;

static const isa_case isa_cases[] = {
    {MM_QUANT_INT8_DYNAMIC, true, true, false, MM_ACT_RELU, 131, 45},
    {MM_QUANT_INT8_DYNAMIC, false, false, false, MM_ACT_IDENTITY, 64, 17},
    {MM_QUANT_INT8_STATIC, true, true, true, MM_ACT_TANH, 99, 33},
    {MM_QUANT_INT8_STATIC, true, false, false, MM_ACT_LEAKY_RELU, 7, 70},
    {MM_QUANT_INT8_WEIGHT_ONLY, true, false, false, MM_ACT_RELU, 50, 20},
    {MM_QUANT_INT8_WEIGHT_ONLY, false, true, false, MM_ACT_SIGMOID, 131, 9},
    {MM_QUANT_FP16, true, true, false, MM_ACT_IDENTITY, 77, 13},
    {MM_QUANT_BF16, true, true, false, MM_ACT_RELU, 64, 6},
};
#define N_ISA_CASES (sizeof isa_cases / sizeof isa_cases[0])

static size_t isa_total(void) {
    size_t t = 0;
    for (size_t k = 0; k < N_ISA_CASES; k++) t += (ISA_N + 4) * isa_cases[k].out;
    return t;
}

/* Outputs of every case at batch ISA_N, 1 and 3, under isa, with the
 * float loops capped by MM_QL_SIMD=simd ("0" portable, "1" AVX2; NULL: the
 * best). */
static void isa_outputs(mm_int8_isa isa, const char *simd, float *res) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    const size_t total = isa_total();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        setenv("MM_INT8_ISA", mm_int8_isa_name(isa), 1);
        if (simd) setenv("MM_QL_SIMD", simd, 1);
        else unsetenv("MM_QL_SIMD");
        mm_int8_isa_reset();
        if (mm_int8_isa_current() != isa) _exit(3);
        float *out = malloc(total * sizeof *out), *p = out;
        for (size_t k = 0; k < N_ISA_CASES; k++) {
            const isa_case *ic = &isa_cases[k];
            mm_layer *d = make_dense(ic->in, ic->out, ic->act, 60 + k), *q = NULL;
            mm_qlayer_config c = make_cfg(ic->scheme, ic->pc, ic->wsym, ic->asym, false);
            c.in_lo = -0.8f;
            c.in_hi = 0.9f;
            if (mm_qlayer_from_dense(d, &c, &q) != MM_OK) _exit(4);
            float *x = malloc(ISA_N * ic->in * sizeof *x);
            mm_test_fill(x, ISA_N * ic->in, 70 + k, -1.0f, 1.0f);
            fwd(q, x, p, ISA_N);
            p += ISA_N * ic->out;
            fwd(q, x + 5 * ic->in, p, 1);
            p += ic->out;
            fwd(q, x + 7 * ic->in, p, 3);
            p += 3 * ic->out;
            free(x);
            free_layer(q);
            free_layer(d);
        }
        const char *b = (const char *)out;
        size_t left = total * sizeof *out;
        while (left) {
            ssize_t w = write(fds[1], b, left);
            if (w <= 0) _exit(5);
            b += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    char *b = (char *)res;
    size_t left = total * sizeof *res;
    while (left) {
        ssize_t r = read(fds[0], b, left);
        ck_assert_int_gt(r, 0);
        b += r;
        left -= (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child for %s failed",
                  mm_int8_isa_name(isa));
}

/* int8-kernel cases: bit-identical; float-arithmetic cases: the SIMD
 * copies (FMA) bit-identical to each other, within float rounding of the
 * portable loop (exact where only widening differs: the batch-37 tiles). */
static void compare_outputs(const float *ref, const float *got, bool exact_float,
                            const char *what) {
    const float *a = ref, *b = got;
    for (size_t k = 0; k < N_ISA_CASES; k++) {
        const isa_case *ic = &isa_cases[k];
        const bool kernels = ic->scheme == MM_QUANT_INT8_DYNAMIC ||
                             ic->scheme == MM_QUANT_INT8_STATIC;
        const size_t tile = ISA_N * ic->out, small = 4 * ic->out;
        ck_assert_msg(memcmp(a, b, tile * sizeof *a) == 0, "%s: case %zu batch %d differs", what,
                      k, ISA_N);
        if (kernels || exact_float)
            ck_assert_msg(memcmp(a + tile, b + tile, small * sizeof *a) == 0,
                          "%s: case %zu batch 1/3 differs", what, k);
        else
            for (size_t i = tile; i < tile + small; i++)
                ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-5f * (1.0f + fabsf(a[i])),
                              "%s: case %zu: %g vs %g", what, k, (double)a[i], (double)b[i]);
        a += tile + small;
        b += tile + small;
    }
}

START_TEST(isas_identical) {
    const mm_int8_isa isas[] = {MM_INT8_ISA_PORTABLE, MM_INT8_ISA_AVX2, MM_INT8_ISA_AVX512VNNI};
    const size_t total = isa_total();
    float *ref = xmalloc(total * sizeof *ref), *got = xmalloc(total * sizeof *got),
          *simd = xmalloc(total * sizeof *simd);
    isa_outputs(MM_INT8_ISA_PORTABLE, "0", ref);
    isa_outputs(MM_INT8_ISA_PORTABLE, "1", simd);
    compare_outputs(ref, simd, false, "AVX2 float loops vs portable");
    isa_outputs(MM_INT8_ISA_PORTABLE, NULL, got);
    compare_outputs(simd, got, true, "best float loops vs AVX2");
    int compared = 0;
    for (int k = 1; k < 3; k++) {
        if (!mm_int8_isa_available(isas[k])) continue;
        isa_outputs(isas[k], NULL, got);
        compare_outputs(simd, got, true, mm_int8_isa_name(isas[k]));
        compared++;
    }
    fprintf(stderr, "qlayer: %d int8 ISA variant(s) compared with portable\n", compared);
    free(ref);
    free(got);
    free(simd);
}
END_TEST

/* ------------------------------------------------------------------------
 * training through float masters
 * ---------------------------------------------------------------------- */

/* Save a model and read one I8 tensor [out, in] of it. */
static int8_t *saved_weight_q(const mm_model *m, size_t layer) {
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_file *f;
    MM_ASSERT_OK(mm_file_open(&f, path));
    const mm_layer *l = m->layers[layer];
    int8_t *q = xmalloc(l->in * l->out);
    char name[64];
    snprintf(name, sizeof name, "layers.%zu.weight_q", layer);
    const uint64_t shape[2] = {l->out, l->in};
    MM_ASSERT_OK(mm_file_read_tensor(f, name, MM_DTYPE_I8, shape, 2, q));
    mm_file_close(f);
    unlink(path);
    free(path);
    return q;
}

/* The int8 weights of layer `layer` equal quantize(master) (the test's
 * own quantizer), and the outputs equal a fresh quantization's. */
static void check_requantized(mm_model *m, size_t layer, const mm_qlayer_config *c,
                              const float *x, size_t n) {
    const mm_layer *l = m->layers[layer];
    const size_t in = l->in, out = l->out;
    const float *mw = l->params[0].data;
    int8_t *q = saved_weight_q(m, layer);
    for (size_t o = 0; o < out; o++) {
        float s;
        int32_t zp;
        ref_row_params(mw, out, in, o, c->per_channel, c->weight_symmetric, &s, &zp);
        for (size_t i = 0; i < in; i++)
            ck_assert_msg(q[o * in + i] == ref_q(mw[o * in + i], s, zp, c->weight_symmetric),
                          "weight_q[%zu,%zu] = %d is not quantize(master)", o, i,
                          (int)q[o * in + i]);
    }
    free(q);
    mm_layer *d = NULL, *fresh = NULL;
    MM_ASSERT_OK(mm_qlayer_to_dense(l, &d));
    MM_ASSERT_OK(mm_qlayer_from_dense(d, c, &fresh));
    float *y1 = xmalloc(n * out * sizeof *y1), *y2 = xmalloc(n * out * sizeof *y2);
    fwd(l, x, y1, n);
    fwd(fresh, x, y2, n);
    ck_assert(memcmp(y1, y2, n * out * sizeof *y1) == 0);
    free(y1);
    free(y2);
    free_layer(d);
    free_layer(fresh);
}

START_TEST(sgd_requantizes_master) {
    const size_t in = 12, h = 10, out = 4, n = 6;
    float x[6 * 12], y0[6 * 10], y1[6 * 10];
    int32_t labels[6] = {0, 1, 2, 3, 1, 0};
    mm_test_fill(x, n * in, 80, -1.0f, 1.0f);
    const mm_optim_kind kinds[] = {MM_OPTIM_SGD, MM_OPTIM_ADAM};
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_DYNAMIC, MM_QUANT_INT8_WEIGHT_ONLY,
                                       MM_QUANT_INT8_STATIC};
    for (int k = 0; k < 2; k++)
        for (int sc = 0; sc < 3; sc++)
            for (int sym = 0; sym < 2; sym++) {
                mm_model *m = small_model(in, h, out, 81);
                mm_qlayer_config c = make_cfg(schemes[sc], sym, sym, false, true);
                swap_in(m, 0, &c);
                mm_qlayer_config c2 = make_cfg(MM_QUANT_FP16, true, true, false, true);
                swap_in(m, 1, &c2);
                ck_assert_uint_eq(m->layers[0]->n_params, 2);
                fwd(m->layers[0], x, y0, n);
                mm_optimizer *o;
                MM_ASSERT_OK(mm_optimizer_create(&o, m, kinds[k]));
                MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.05));
                for (int step = 0; step < 3; step++) {
                    double loss;
                    MM_ASSERT_OK(mm_optimizer_step(o, x, labels, NULL, step + 1, &loss));
                    ck_assert(isfinite(loss));
                }
                fwd(m->layers[0], x, y1, n);
                ck_assert_msg(memcmp(y0, y1, sizeof y0) != 0, "the step changed nothing");
                check_requantized(m, 0, &c, x, n);
                /* the fp16 layer follows its master too */
                mm_layer *d = NULL, *fresh = NULL;
                MM_ASSERT_OK(mm_qlayer_to_dense(m->layers[1], &d));
                MM_ASSERT_OK(mm_qlayer_from_dense(d, &c2, &fresh));
                float a[6 * 4], b[6 * 4];
                fwd(m->layers[1], y1, a, n);
                fwd(fresh, y1, b, n);
                ck_assert(memcmp(a, b, sizeof a) == 0);
                free_layer(d);
                free_layer(fresh);
                mm_optimizer_free(o);
                mm_model_free(m);
            }
}
END_TEST

/* A pruning mask on the dense layer is carried to the master: training
 * keeps pruned weights at 0, and the mask survives save/load. */
START_TEST(master_keeps_mask) {
    const size_t in = 8, h = 6, out = 3, n = 4;
    mm_model *m = small_model(in, h, out, 90);
    mm_layer *d = m->layers[0];
    uint8_t *mask = xmalloc(in * h);
    for (size_t i = 0; i < in * h; i++) {
        mask[i] = i % 3 != 0;
        if (!mask[i]) d->params[0].data[i] = 0.0f;
    }
    d->params[0].mask = mask;
    mm_qlayer_config c = make_cfg(MM_QUANT_INT8_DYNAMIC, true, true, false, true);
    swap_in(m, 0, &c);
    float x[4 * 8];
    int32_t labels[4] = {0, 1, 2, 1};
    mm_test_fill(x, n * in, 91, -1.0f, 1.0f);
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.1));
    MM_ASSERT_OK(mm_optimizer_step(o, x, labels, NULL, n, NULL));
    const mm_param *p = &m->layers[0]->params[0];
    ck_assert_ptr_nonnull(p->mask);
    for (size_t i = 0; i < in * h; i++)
        if (i % 3 == 0) ck_assert(p->data[i] == 0.0f);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *m2;
    MM_ASSERT_OK(mm_model_load(&m2, path));
    const mm_param *p2 = &m2->layers[0]->params[0];
    ck_assert_ptr_nonnull(p2->mask);
    ck_assert(memcmp(p->mask, p2->mask, in * h) == 0);
    mm_layer *back = NULL;
    MM_ASSERT_OK(mm_qlayer_to_dense(m2->layers[0], &back));
    ck_assert_ptr_nonnull(back->params[0].mask);
    free_layer(back);
    unlink(path);
    free(path);
    mm_model_free(m2);
    mm_optimizer_free(o);
    mm_model_free(m);
}
END_TEST

/* Without a master: no parameters, backward still gives dx (through the
 * dequantized weights), and the other layers train. */
START_TEST(inference_only_backward) {
    const size_t in = 9, h = 70, out = 5, n = 3;
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_BF16};
    for (int sc = 0; sc < 3; sc++) {
        mm_model *m = small_model(in, h, out, 100);
        mm_qlayer_config c = make_cfg(schemes[sc], true, sc != 1, false, false);
        swap_in(m, 1, &c);
        mm_layer *q = m->layers[1];
        ck_assert_uint_eq(q->n_params, 0);
        /* dx against the dense layer with the dequantized weights */
        mm_layer *d = NULL;
        MM_ASSERT_OK(mm_qlayer_to_dense(q, &d));
        float hx[3 * 70], y[3 * 5], dy1[3 * 5], dy2[3 * 5], dx1[3 * 70], dx2[3 * 70];
        mm_test_fill(hx, n * h, 101, 0.0f, 1.0f);
        mm_test_fill(dy1, n * out, 102, -1.0f, 1.0f);
        memcpy(dy2, dy1, sizeof dy1);
        fwd(q, hx, y, n);
        mm_layer_backward1(q, mm_kernels_get(), hx, y, dy1, dx1, n, true);
        mm_layer_backward1(d, mm_kernels_get(), hx, y, dy2, dx2, n, false);
        ck_assert_msg(mm_test_max_abs_diff(dx1, dx2, n * h) < 1e-5, "dx: %g",
                      mm_test_max_abs_diff(dx1, dx2, n * h));
        free_layer(d);
        /* layer 0 trains, layer 1 stays */
        float x[3 * 9], before[3 * 5], after[3 * 5];
        int32_t labels[3] = {0, 4, 2};
        mm_test_fill(x, n * in, 103, -1.0f, 1.0f);
        float w0 = m->layers[0]->params[0].data[0];
        fwd(q, hx, before, n);
        for (int k = 0; k < 2; k++) {
            mm_optimizer *o;
            MM_ASSERT_OK(mm_optimizer_create(&o, m, k ? MM_OPTIM_ADAM : MM_OPTIM_SGD));
            MM_ASSERT_OK(mm_optimizer_step(o, x, labels, NULL, n, NULL));
            mm_optimizer_free(o);
        }
        ck_assert(m->layers[0]->params[0].data[0] != w0);
        fwd(q, hx, after, n);
        ck_assert(memcmp(before, after, sizeof before) == 0);
        mm_model_free(m);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * save / load
 * ---------------------------------------------------------------------- */

static void roundtrip(const mm_qlayer_config *c0, const mm_qlayer_config *c1) {
    const size_t in = 23, h = 40, out = 7;
    mm_model *m = small_model(in, h, out, 110);
    swap_in(m, 0, c0);
    if (c1) swap_in(m, 1, c1);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *m2 = NULL;
    MM_ASSERT_OK(mm_model_load(&m2, path));
    ck_assert_str_eq(m2->layers[0]->vt->kind, m->layers[0]->vt->kind);
    ck_assert_uint_eq(m2->layers[0]->n_params, m->layers[0]->n_params);
    ck_assert_uint_eq(mm_model_param_bytes(m2), mm_model_param_bytes(m));
    mm_model *m3 = NULL;
    MM_ASSERT_OK(mm_model_clone(m, &m3));
    const size_t ns[] = {1, 9, 130};
    for (int k = 0; k < 3; k++) {
        const size_t n = ns[k];
        float *x = xmalloc(n * in * sizeof *x), *y1 = xmalloc(n * out * sizeof *y1),
              *y2 = xmalloc(n * out * sizeof *y2), *y3 = xmalloc(n * out * sizeof *y3);
        mm_test_fill(x, n * in, 111 + k, -1.2f, 1.2f);
        MM_ASSERT_OK(mm_model_forward(m, x, n, y1));
        MM_ASSERT_OK(mm_model_forward(m2, x, n, y2));
        MM_ASSERT_OK(mm_model_forward(m3, x, n, y3));
        ck_assert_msg(memcmp(y1, y2, n * out * sizeof *y1) == 0, "%s: load changed outputs",
                      m->layers[0]->vt->kind);
        ck_assert_msg(memcmp(y1, y3, n * out * sizeof *y1) == 0, "clone changed outputs");
        free(x);
        free(y1);
        free(y2);
        free(y3);
    }
    /* save of the loaded model: the same bytes */
    char *path2 = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m2, path2));
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
    ck_assert(f1 && f2);
    int a, b;
    do {
        a = fgetc(f1);
        b = fgetc(f2);
        ck_assert_int_eq(a, b);
    } while (a != EOF);
    fclose(f1);
    fclose(f2);
    unlink(path);
    unlink(path2);
    free(path);
    free(path2);
    mm_model_free(m);
    mm_model_free(m2);
    mm_model_free(m3);
}

START_TEST(save_load_bit_exact) {
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_STATIC};
    for (int sc = 0; sc < 3; sc++)
        for (int pc = 0; pc < 2; pc++)
            for (int sym = 0; sym < 2; sym++)
                for (int master = 0; master < 2; master++) {
                    mm_qlayer_config c = make_cfg(schemes[sc], pc, sym, !sym, master);
                    mm_qlayer_config c1 = make_cfg(MM_QUANT_INT8_STATIC, !pc, !sym, sym, !master);
                    roundtrip(&c, sc == 2 ? &c1 : NULL);
                }
    for (int h = 0; h < 2; h++)
        for (int master = 0; master < 2; master++) {
            mm_qlayer_config c = make_cfg(h ? MM_QUANT_BF16 : MM_QUANT_FP16, true, true, false,
                                          master);
            mm_qlayer_config c1 = make_cfg(MM_QUANT_INT8_DYNAMIC, true, true, false, false);
            roundtrip(&c, &c1);
        }
}
END_TEST

/* A hand-made file: one quantized layer, 3 inputs, 2 outputs. */
typedef struct hostile {
    const char *kind;   /* "int8", "fp16", "bf16" */
    const char *fields; /* the entry's extra fields, JSON text after a comma */
    mm_dtype wdt;       /* weight_q / weight_f16 dtype */
    uint64_t wshape[2];
    float scale[2];
    uint64_t nscale;
    bool with_zp;
    int32_t zp[2];
    bool no_bias;
    float bias0;
    bool with_range;
    float range[2];
    uint16_t half0;
} hostile;

static void write_hostile(const char *path, const hostile *h) {
    char arch[768];
    snprintf(arch, sizeof arch,
             "{\"input_dim\":3,\"loss\":\"mse\",\"leaky_slope\":0.01,\"seed\":\"1\","
             "\"layers\":[{\"kind\":\"%s\",\"in\":3,\"out\":2,\"activation\":\"identity\"%s%s}]}",
             h->kind, h->fields ? "," : "", h->fields ? h->fields : "");
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "architecture", arch));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "lineage", "[]"));
    static int8_t q[8] = {1, -2, 3, 127, -128, 0, 5, 6};
    static uint16_t hw[8];
    static float fw[8];
    const uint16_t one = strcmp(h->kind, "fp16") == 0 ? 0x3c00u : 0x3f80u;
    for (int i = 0; i < 8; i++) {
        hw[i] = one;
        fw[i] = 1.0f;
    }
    hw[0] = h->half0 ? h->half0 : one;
    const void *wdata = h->wdt == MM_DTYPE_I8 || h->wdt == MM_DTYPE_U8 ? (const void *)q
                        : h->wdt == MM_DTYPE_F32                       ? (const void *)fw
                                                                       : (const void *)hw;
    const bool i8 = strcmp(h->kind, "int8") == 0;
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, i8 ? "layers.0.weight_q" : "layers.0.weight_f16",
                                           h->wdt, wdata, h->wshape, 2));
    const uint64_t sb[1] = {2}, ss[1] = {h->nscale}, sr[1] = {2};
    if (i8) {
        MM_ASSERT_OK(
            mm_file_writer_add_tensor(w, "layers.0.weight_scale", MM_DTYPE_F32, h->scale, ss, 1));
        if (h->with_zp)
            MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.weight_zero_point", MM_DTYPE_I32,
                                                   h->zp, ss, 1));
        if (h->with_range)
            MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.input_range", MM_DTYPE_F32,
                                                   h->range, sr, 1));
    }
    static float bias[2];
    bias[0] = h->bias0;
    bias[1] = 0.25f;
    if (!h->no_bias)
        MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.bias", MM_DTYPE_F32, bias, sb, 1));
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);
}

#define I8_FIELDS(scheme, pc, wsym)                                                         \
    "\"scheme\":\"" scheme "\",\"per_channel\":" pc ",\"weight_symmetric\":" wsym          \
    ",\"act_symmetric\":false,\"keep_master\":false"

static const hostile good_i8 = {"int8", I8_FIELDS("weight_only", "true", "true"),
                                MM_DTYPE_I8, {2, 3}, {0.5f, 0.25f}, 2, false, {0, 0}, false,
                                -0.5f, false, {0, 0}, 0};

static void expect_hostile(const hostile *h, mm_status want, const char *msg) {
    char *path = mm_test_tmp_path(".mmf");
    write_hostile(path, h);
    mm_model *m = (mm_model *)(uintptr_t)1;
    mm_status st = mm_model_load(&m, path);
    ck_assert_msg(st == want, "want %s for \"%s\", got %s: %s", mm_status_name(want), msg,
                  mm_status_name(st), mm_last_error_message());
    if (want == MM_OK) {
        ck_assert_ptr_nonnull(m);
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
    /* a good file, and what it computes: W = [[1,-2,3],[127,-128,0]] scaled */
    {
        char *path = mm_test_tmp_path(".mmf");
        write_hostile(path, &good_i8);
        mm_model *m;
        MM_ASSERT_OK(mm_model_load(&m, path));
        const float x[3] = {1.0f, 2.0f, 4.0f};
        float y[2];
        MM_ASSERT_OK(mm_model_forward(m, x, 1, y));
        ck_assert_float_eq(y[0], 0.5f * (1 - 4 + 12) - 0.5f);
        ck_assert_float_eq(y[1], 0.25f * (127 - 256) + 0.25f);
        mm_model_free(m);
        unlink(path);
        free(path);
    }
    hostile h = good_i8;
    h.scale[1] = 0.0f;
    expect_hostile(&h, MM_E_FORMAT, "weight_scale: element 1 is 0");
    h = good_i8;
    h.scale[0] = -1.0f;
    expect_hostile(&h, MM_E_FORMAT, "weight_scale");
    h = good_i8;
    h.scale[0] = NAN;
    expect_hostile(&h, MM_E_NUMERIC, "weight_scale: element 0 is not finite");
    h = good_i8;
    h.scale[1] = INFINITY;
    expect_hostile(&h, MM_E_NUMERIC, "weight_scale");
    h = good_i8;
    h.wdt = MM_DTYPE_U8;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_q has dtype U8, expected I8");
    h = good_i8;
    h.wdt = MM_DTYPE_F32;
    expect_hostile(&h, MM_E_FORMAT, "dtype F32");
    h = good_i8;
    h.wshape[0] = 3;
    h.wshape[1] = 2;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_q has the wrong shape");
    h = good_i8;
    h.nscale = 1;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight_scale has the wrong shape");
    h = good_i8;
    h.no_bias = true;
    expect_hostile(&h, MM_E_FORMAT, "layers.0.bias is missing");
    h = good_i8;
    h.bias0 = NAN;
    expect_hostile(&h, MM_E_NUMERIC, "layers.0.bias: element 0");
    /* per tensor: one scale */
    h = good_i8;
    h.fields = I8_FIELDS("dynamic", "false", "true");
    h.nscale = 1;
    expect_hostile(&h, MM_OK, "");
    h.nscale = 2;
    expect_hostile(&h, MM_E_FORMAT, "weight_scale has the wrong shape");
    /* asymmetric: zero points */
    h = good_i8;
    h.fields = I8_FIELDS("dynamic", "true", "false");
    expect_hostile(&h, MM_E_FORMAT, "weight_zero_point is missing");
    h.with_zp = true;
    expect_hostile(&h, MM_OK, "");
    h.zp[1] = 200;
    expect_hostile(&h, MM_E_FORMAT, "weight_zero_point: element 1 is 200");
    /* static: the input range */
    h = good_i8;
    h.fields = I8_FIELDS("static", "true", "true");
    expect_hostile(&h, MM_E_FORMAT, "input_range is missing");
    h.with_range = true;
    h.range[0] = -1.0f;
    h.range[1] = 1.0f;
    expect_hostile(&h, MM_OK, "");
    h.range[1] = NAN;
    expect_hostile(&h, MM_E_NUMERIC, "input_range");
    h.range[0] = 2.0f;
    h.range[1] = 1.0f;
    expect_hostile(&h, MM_E_FORMAT, "input_range");
    /* entry fields */
    h = good_i8;
    h.fields = I8_FIELDS("bogus", "true", "true");
    expect_hostile(&h, MM_E_FORMAT, "\"scheme\" must be");
    h.fields = "\"scheme\":\"dynamic\",\"per_channel\":1,\"weight_symmetric\":true,"
               "\"act_symmetric\":false,\"keep_master\":false";
    expect_hostile(&h, MM_E_FORMAT, "\"per_channel\" must be true or false");
    h.fields = "\"scheme\":\"dynamic\",\"per_channel\":true,\"weight_symmetric\":true,"
               "\"act_symmetric\":false";
    expect_hostile(&h, MM_E_FORMAT, "\"keep_master\"");
    h.fields = I8_FIELDS("dynamic", "true", "true");
    h.fields = "\"scheme\":\"dynamic\",\"per_channel\":true,\"weight_symmetric\":true,"
               "\"act_symmetric\":false,\"keep_master\":true";
    expect_hostile(&h, MM_E_FORMAT, "layers.0.weight is missing");
    /* fp16 / bf16 */
    hostile g = good_i8;
    g.kind = "fp16";
    g.fields = "\"keep_master\":false";
    g.wdt = MM_DTYPE_F16;
    expect_hostile(&g, MM_OK, "");
    g.half0 = 0x7c00u; /* +Inf */
    expect_hostile(&g, MM_E_NUMERIC, "weight_f16: element 0 is not finite");
    g.half0 = 0xfe00u; /* NaN */
    expect_hostile(&g, MM_E_NUMERIC, "weight_f16: element 0");
    g.half0 = 0;
    g.wdt = MM_DTYPE_BF16;
    expect_hostile(&g, MM_E_FORMAT, "weight_f16 has dtype BF16, expected F16");
    g.kind = "bf16";
    expect_hostile(&g, MM_OK, "");
    g.half0 = 0x7fc0u;
    expect_hostile(&g, MM_E_NUMERIC, "weight_f16: element 0");
    g.half0 = 0;
    g.wshape[1] = 4;
    expect_hostile(&g, MM_E_FORMAT, "wrong shape");
    g.wshape[1] = 3;
    g.fields = NULL;
    expect_hostile(&g, MM_E_FORMAT, "\"keep_master\"");
}
END_TEST

/* ------------------------------------------------------------------------
 * refusals and sizes
 * ---------------------------------------------------------------------- */

START_TEST(refusals) {
    mm_layer *d = make_dense(6, 4, MM_ACT_RELU, 120), *q = (mm_layer *)(uintptr_t)1;
    mm_qlayer_config c = make_cfg(MM_QUANT_INT8_DYNAMIC, true, true, false, true);
    const mm_quant_scheme all[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                   MM_QUANT_INT8_STATIC, MM_QUANT_FP16, MM_QUANT_BF16};
    for (int s = 0; s < 5; s++) {
        c.scheme = all[s];
        d->params[0].data[7] = NAN;
        MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_NUMERIC);
        ck_assert_ptr_null(q);
        d->params[0].data[7] = 0.5f;
        d->params[1].data[2] = -INFINITY;
        MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_NUMERIC);
        d->params[1].data[2] = 0.0f;
    }
    c.scheme = MM_QUANT_FP16;
    d->params[0].data[3] = 1e5f;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_UNSUPPORTED);
    c.scheme = MM_QUANT_BF16;
    MM_ASSERT_OK(mm_qlayer_from_dense(d, &c, &q));
    free_layer(q);
    d->params[0].data[3] = 0.1f;
    c.scheme = MM_QUANT_INT8_STATIC;
    c.in_lo = NAN;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_NUMERIC);
    c.in_lo = 2.0f;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_INVALID_ARGUMENT);
    c.in_lo = -1.0f;
    c.scheme = (mm_quant_scheme)42;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_INVALID_ARGUMENT);
    c.scheme = MM_QUANT_INT8_DYNAMIC;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(NULL, &c, &q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, NULL, &q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, NULL), MM_E_INVALID_ARGUMENT);
    /* a quantized layer is not quantized again; to_dense wants one */
    q = quantize(d, &c);
    mm_layer *q2 = NULL;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(q, &c, &q2), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_qlayer_to_dense(d, &q2), MM_E_INVALID_ARGUMENT);
    ck_assert(!mm_layer_has(d, MM_CAP_QUANTIZED));
    ck_assert(!mm_layer_has(NULL, MM_CAP_QUANTIZED));
    free_layer(q);
    free_layer(d);
    /* too wide for the kernels */
    d = make_dense(MM_INT8_MAX_IN + 1, 1, MM_ACT_IDENTITY, 121);
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_UNSUPPORTED);
    c.scheme = MM_QUANT_FP16;
    MM_ASSERT_OK(mm_qlayer_from_dense(d, &c, &q));
    free_layer(q);
    free_layer(d);
    d = make_dense(40000, 1, MM_ACT_IDENTITY, 122);
    c.scheme = MM_QUANT_INT8_DYNAMIC;
    c.weight_symmetric = false;
    MM_ASSERT_STATUS(mm_qlayer_from_dense(d, &c, &q), MM_E_UNSUPPORTED);
    c.weight_symmetric = true;
    MM_ASSERT_OK(mm_qlayer_from_dense(d, &c, &q));
    free_layer(q);
    free_layer(d);
}
END_TEST

/* A model with a NaN weight: saving a quantized model with a NaN master
 * is refused as well. */
START_TEST(to_dense_and_master) {
    mm_layer *d = make_dense(10, 5, MM_ACT_RELU, 130);
    mm_qlayer_config c = make_cfg(MM_QUANT_INT8_STATIC, true, true, false, true);
    mm_layer *q = quantize(d, &c);
    float *w = weights_of(q);
    ck_assert(memcmp(w, d->params[0].data, 50 * sizeof(float)) == 0); /* the master */
    free(w);
    mm_layer *back = NULL;
    MM_ASSERT_OK(mm_qlayer_to_dense(q, &back));
    ck_assert(memcmp(back->params[1].data, d->params[1].data, 5 * sizeof(float)) == 0);
    ck_assert_int_eq(back->act, MM_ACT_RELU);
    free_layer(back);
    free_layer(q);
    free_layer(d);
}
END_TEST

START_TEST(sizes) {
    mm_layer *d = make_dense(784, 256, MM_ACT_RELU, 140);
    const size_t dense = d->vt->param_bytes(d);
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_STATIC};
    for (int sc = 0; sc < 3; sc++)
        for (int pc = 0; pc < 2; pc++) {
            mm_qlayer_config c = make_cfg(schemes[sc], pc, true, false, false);
            mm_layer *q = quantize(d, &c);
            const size_t b = q->vt->param_bytes(q);
            ck_assert_msg((double)b <= 0.27 * (double)dense, "int8 %zu of %zu bytes", b, dense);
            ck_assert_uint_ge(b, 784 * 256 + 256 * 4);
            free_layer(q);
            c.keep_master = true;
            q = quantize(d, &c);
            ck_assert_uint_ge(q->vt->param_bytes(q), b + 784 * 256 * 4);
            free_layer(q);
        }
    mm_qlayer_config c = make_cfg(MM_QUANT_BF16, true, true, false, false);
    mm_layer *q = quantize(d, &c);
    ck_assert_uint_eq(q->vt->param_bytes(q), 784 * 256 * 2 + 256 * 4);
    free_layer(q);
    free_layer(d);

    /* files: 784-256-128-10, every layer int8 without master */
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 784, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, 256, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 128, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 10, MM_ACT_IDENTITY));
    char *p32 = mm_test_tmp_path(".mmf"), *p8 = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, p32));
    const size_t dense_bytes = mm_model_param_bytes(m);
    mm_qlayer_config c8 = make_cfg(MM_QUANT_INT8_STATIC, true, true, false, false);
    for (size_t l = 0; l < 3; l++) swap_in(m, l, &c8);
    MM_ASSERT_OK(mm_model_save(m, p8));
    struct stat s32, s8;
    ck_assert_int_eq(stat(p32, &s32), 0);
    ck_assert_int_eq(stat(p8, &s8), 0);
    const double ratio = (double)s8.st_size / (double)s32.st_size;
    fprintf(stderr, "784-256-128-10 file: int8 %lld bytes, fp32 %lld (%.1f%%); param_bytes "
                    "%.1f%%\n",
            (long long)s8.st_size, (long long)s32.st_size, 100 * ratio,
            100.0 * (double)mm_model_param_bytes(m) / (double)dense_bytes);
    ck_assert(ratio <= 0.27);
    ck_assert((double)mm_model_param_bytes(m) <= 0.27 * (double)dense_bytes);
    unlink(p32);
    unlink(p8);
    free(p32);
    free(p8);
    mm_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("qlayer");
    TCase *tc = tcase_create("qlayer");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, roundtrip_error_bounds);
    tcase_add_test(tc, half_conversion_edges);
    tcase_add_test(tc, per_channel_beats_per_tensor);
    tcase_add_test(tc, schemes_vs_float);
    tcase_add_test(tc, other_activations);
    tcase_add_test(tc, static_saturation);
    tcase_add_test(tc, dynamic_nonfinite_rows);
    tcase_add_test(tc, isas_identical);
    tcase_add_test(tc, sgd_requantizes_master);
    tcase_add_test(tc, master_keeps_mask);
    tcase_add_test(tc, inference_only_backward);
    tcase_add_test(tc, save_load_bit_exact);
    tcase_add_test(tc, hostile_files);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, to_dense_and_master);
    tcase_add_test(tc, sizes);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
