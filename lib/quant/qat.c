/* The "qat" layer kind: a dense layer in quantization-aware training.
 *
 *   forward   y = act(fq_x(x) fq_w(W)^T + b) where fq_w(W) is W quantized
 *             and dequantized with the scheme's weight convention (int8
 *             per-channel or per-tensor, symmetric or asymmetric; fp16 or
 *             bf16 rounding), cached in `wq`, and fq_x fake-quantizes the
 *             input onto uint8 (int8_static: with the layer's observed
 *             input range; int8_dynamic: each sample with its own range, as
 *             the dynamic int8 layer does; otherwise the identity). The
 *             weight convention is qlayer.c's (symmetric s = max|w| / 127,
 *             asymmetric zero point rne(-128 - lo / s)), so a converted
 *             layer computes with the weights QAT trained. The cache is
 *             refreshed after every optimizer update (the after_update
 *             slot) and whenever the layer is built. Forward allocates its
 *             own scratch (stack, heap for large batches; if the heap
 *             allocation fails it runs without input fake-quantization)
 *             and never touches layer-owned memory, so concurrent
 *             inference is safe.
 *   backward  straight-through: the parameter gradients are those of a
 *             dense layer whose weights are fq_w(W) and whose input is
 *             fq_x(x), applied to the float master W; dx = delta fq_w(W),
 *             zeroed (static only) where x lies outside the representable
 *             range [-zp s, (255 - zp) s] (the clipping-aware STE of
 *             PyTorch's FakeQuantize). int8_static also updates the input
 *             range here, from the forward input x: an exponential moving
 *             average of each training batch's min and max with constant
 *             MM_QUANT_AVERAGING (the first batch is taken as is, unless
 *             the range was seeded by calibration). Evaluation (forward
 *             only) never changes it.
 *
 * mm_model_set_weights (and any other parameter write that calls
 * mm_layer_params_changed) refreshes the fake-quantized cache too.
 *
 * Model files: a qat layer saves as the dense layer of its master weights
 * (kind "dense", with pruning masks), so a checkpoint taken during QAT
 * loads as a float model; prepare it again to continue QAT.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mmfile.h"
#include "quant/quantizer_internal.h"

typedef struct qat_layer {
    mm_layer base;
    float *w, *b, *dw, *db; /* master parameters and their gradients */
    float *wq;              /* fake-quantized weights */
    mm_qat_config cfg;
    bool have_range; /* static: in_lo / in_hi observed */
    float in_lo, in_hi;
    float *scratch; /* backward only: fake-quantized input */
    size_t scratch_cap;
} qat_layer;

static const mm_layer_vtable qat_vtable;

bool mm_layer_is_qat(const mm_layer *layer) { return layer && layer->vt == &qat_vtable; }

/* ---- fake quantization -------------------------------------------------------- */

float mm_qat_round_bf16(float x) {
    if (isnan(x)) return x;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u); /* ties to even; overflow rounds to Inf */
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

float mm_qat_round_fp16(float x) {
    if (!isfinite(x) || x == 0.0f) return x;
    int e;
    frexpf(x, &e); /* |x| = m 2^e, m in [0.5, 1) */
    int exp = e - 1 < -14 ? -14 : e - 1;  /* subnormals share 2^-14's spacing */
    const float spacing = ldexpf(1.0f, exp - 10);
    float r = nearbyintf(x / spacing) * spacing; /* exact: powers of two */
    if (fabsf(r) > 65504.0f) r = copysignf(INFINITY, x);
    return r;
}

static void fake_row_symmetric(const float *w, size_t n, float amax, float *out) {
    const float scale = (float)((double)amax / 127.0);
    if (!(scale > 0.0f) || !isfinite(1.0f / scale)) {
        for (size_t i = 0; i < n; i++) out[i] = 0.0f;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float qv = nearbyintf(w[i] / scale);
        qv = qv < -127.0f ? -127.0f : qv > 127.0f ? 127.0f : qv;
        out[i] = qv * scale;
    }
}

static void fake_row_asymmetric(const float *w, size_t n, float lo, float hi, float *out) {
    lo = lo < 0.0f ? lo : 0.0f;
    hi = hi > 0.0f ? hi : 0.0f;
    const float scale = (float)(((double)hi - (double)lo) / 255.0);
    if (!(scale > 0.0f) || !isfinite(1.0f / scale)) {
        for (size_t i = 0; i < n; i++) out[i] = 0.0f;
        return;
    }
    float zp = nearbyintf(-128.0f - lo / scale);
    zp = zp < -128.0f ? -128.0f : zp > 127.0f ? 127.0f : zp;
    for (size_t i = 0; i < n; i++) {
        float qv = nearbyintf(w[i] / scale) + zp;
        qv = qv < -128.0f ? -128.0f : qv > 127.0f ? 127.0f : qv;
        out[i] = (qv - zp) * scale;
    }
}

void mm_qat_fake_weights(const float *w, size_t rows, size_t cols, bool per_channel,
                         bool symmetric, float *wq) {
    const size_t groups = per_channel ? rows : 1, len = per_channel ? cols : rows * cols;
    for (size_t g = 0; g < groups; g++) {
        const float *src = w + g * len;
        float *dst = wq + g * len;
        float lo = 0.0f, hi = 0.0f, amax = 0.0f;
        for (size_t i = 0; i < len; i++) {
            lo = src[i] < lo ? src[i] : lo;
            hi = src[i] > hi ? src[i] : hi;
        }
        amax = -lo > hi ? -lo : hi;
        if (symmetric)
            fake_row_symmetric(src, len, amax, dst);
        else
            fake_row_asymmetric(src, len, lo, hi, dst);
    }
}

static void refresh_weights(qat_layer *q) {
    const size_t out = q->base.out, in = q->base.in, count = out * in;
    switch (q->cfg.scheme) {
    case MM_QUANT_FP16:
        for (size_t i = 0; i < count; i++) q->wq[i] = mm_qat_round_fp16(q->w[i]);
        break;
    case MM_QUANT_BF16:
        for (size_t i = 0; i < count; i++) q->wq[i] = mm_qat_round_bf16(q->w[i]);
        break;
    default:
        mm_qat_fake_weights(q->w, out, in, q->cfg.per_channel, q->cfg.weight_symmetric, q->wq);
        break;
    }
}

/* x -> dequantize(quantize(x)) with the kernels' rounding (x * (1/scale),
 * ties to even, saturating; NaN to the zero point). */
static void fake_quant_values(const float *x, size_t count, float scale, int32_t zp, float *out) {
    const float inv = 1.0f / scale, z = (float)zp;
    for (size_t i = 0; i < count; i++) {
        float v = x[i] * inv;
        float qv = v != v ? z : nearbyintf(v < -1e9f ? -1e9f : v > 1e9f ? 1e9f : v) + z;
        qv = qv < 0.0f ? 0.0f : qv > 255.0f ? 255.0f : qv;
        out[i] = (qv - z) * scale;
    }
}

/* int8_static: the input's quantization parameters, if a range is known. */
static bool static_params(const qat_layer *q, float *scale, int32_t *zp) {
    return q->cfg.scheme == MM_QUANT_INT8_STATIC && q->have_range &&
           mm_int8_choose_params(q->in_lo, q->in_hi, q->cfg.act_symmetric, scale, zp) == MM_OK;
}

static bool quantizes_input(const qat_layer *q) {
    return (q->cfg.scheme == MM_QUANT_INT8_STATIC && q->have_range) ||
           q->cfg.scheme == MM_QUANT_INT8_DYNAMIC;
}

/* The fake-quantized input (n x in) as the int8 layer would see it:
 * static with the layer's range, dynamic with each row's own asymmetric
 * range (as the dynamic kernels do; a row holding NaN or Inf is copied). */
static void fake_input(const qat_layer *q, const float *x, size_t n, float *out) {
    const size_t in = q->base.in;
    float scale;
    int32_t zp;
    if (static_params(q, &scale, &zp)) {
        fake_quant_values(x, n * in, scale, zp, out);
        return;
    }
    for (size_t s = 0; s < n; s++) {
        const float *row = x + s * in;
        float lo = row[0], hi = row[0];
        for (size_t i = 1; i < in; i++) {
            lo = row[i] < lo ? row[i] : lo;
            hi = row[i] > hi ? row[i] : hi;
        }
        if (isfinite(lo) && isfinite(hi) && mm_int8_choose_params(lo, hi, false, &scale, &zp) == MM_OK)
            fake_quant_values(row, in, scale, zp, out + s * in);
        else
            memcpy(out + s * in, row, in * sizeof *out);
    }
}

/* ---- the vtable ------------------------------------------------------------------ */

static void qat_destroy(mm_layer *layer) {
    qat_layer *q = (qat_layer *)layer;
    mm_free_floats(q->w);
    mm_free_floats(q->b);
    mm_free_floats(q->dw);
    mm_free_floats(q->db);
    mm_free_floats(q->wq);
    mm_free_floats(q->scratch);
    for (size_t j = 0; j < q->base.n_params; j++) free(q->base.params[j].mask);
    free(q);
}

static mm_status qat_alloc(qat_layer **out, size_t in, size_t units) {
    size_t count;
    if (!mm_mul_ok(in, units, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "layer %zu x %zu is too large", units, in);
    qat_layer *q = calloc(1, sizeof *q);
    if (!q) return mm_oom("qat layer");
    q->w = mm_alloc_floats_zero(count);
    q->dw = mm_alloc_floats_zero(count);
    q->wq = mm_alloc_floats_zero(count);
    q->b = mm_alloc_floats_zero(units);
    q->db = mm_alloc_floats_zero(units);
    q->base.vt = &qat_vtable;
    q->base.in = in;
    q->base.out = units;
    q->base.params[0] = (mm_param){"weight", q->w, q->dw, units, in, true, NULL};
    q->base.params[1] = (mm_param){"bias", q->b, q->db, units, 1, false, NULL};
    q->base.n_params = 2;
    if (!q->w || !q->dw || !q->wq || !q->b || !q->db) {
        qat_destroy(&q->base);
        return mm_oom("qat layer parameters");
    }
    *out = q;
    return MM_OK;
}

static mm_status copy_masks(const mm_layer *src, mm_layer *dst) {
    for (size_t j = 0; j < src->n_params && j < dst->n_params; j++) {
        const uint8_t *mask = src->params[j].mask;
        if (!mask) continue;
        const size_t n = mm_param_count(&src->params[j]);
        dst->params[j].mask = malloc(n ? n : 1);
        if (!dst->params[j].mask) return mm_oom("pruning mask");
        memcpy(dst->params[j].mask, mask, n);
    }
    return MM_OK;
}

static mm_status qat_clone(const mm_layer *layer, mm_layer **out) {
    const qat_layer *src = (const qat_layer *)layer;
    qat_layer *q;
    mm_status st = qat_alloc(&q, layer->in, layer->out);
    if (st != MM_OK) return st;
    q->base.act = layer->act;
    q->base.leaky_slope = layer->leaky_slope;
    q->cfg = src->cfg;
    q->have_range = src->have_range;
    q->in_lo = src->in_lo;
    q->in_hi = src->in_hi;
    const size_t count = layer->in * layer->out;
    memcpy(q->w, src->w, count * sizeof *q->w);
    memcpy(q->wq, src->wq, count * sizeof *q->wq);
    memcpy(q->b, src->b, layer->out * sizeof *q->b);
    st = copy_masks(layer, &q->base);
    if (st != MM_OK) {
        qat_destroy(&q->base);
        return st;
    }
    *out = &q->base;
    return MM_OK;
}

static void bias_activate(const mm_layer *l, const float *b, float *y, size_t n) {
    const size_t out = l->out;
    for (size_t i = 0; i < n; i++) {
        float *row = y + i * out;
        for (size_t j = 0; j < out; j++) row[j] += b[j];
    }
    mm_activation_forward(l->act, l->leaky_slope, y, n * out);
}

#define QAT_STACK 4096

static void qat_forward(const mm_layer *layer, const mm_kernels *k, const float *const *xs, float *y,
                        size_t n) {
    const float *x = xs[0];
    const qat_layer *q = (const qat_layer *)layer;
    const size_t in = layer->in, out = layer->out, count = n * in;
    float stack[QAT_STACK];
    float *heap = NULL;
    const float *xin = x;
    if (quantizes_input(q)) {
        float *buf = count <= QAT_STACK ? stack : (heap = mm_alloc_floats(count));
        if (buf) {
            fake_input(q, x, n, buf);
            xin = buf;
        }
    }
    if (n == 1)
        k->sgemv(false, out, in, 1.0f, q->wq, in, xin, 0.0f, y);
    else
        k->sgemm(false, true, n, out, in, 1.0f, xin, in, q->wq, in, 0.0f, y, out);
    bias_activate(layer, q->b, y, n);
    mm_free_floats(heap);
}

static void observe_range(qat_layer *q, const float *x, size_t count) {
    if (count == 0) return;
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < count; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (!isfinite(lo) || !isfinite(hi)) return;
    if (!q->have_range) {
        q->in_lo = lo;
        q->in_hi = hi;
        q->have_range = true;
        return;
    }
    const float c = (float)q->cfg.averaging;
    q->in_lo += c * (lo - q->in_lo);
    q->in_hi += c * (hi - q->in_hi);
}

static void qat_backward(mm_layer *layer, const mm_kernels *k, const float *const *xs, const float *y,
                         float *dy, float *const *dxs, size_t n, bool param_grads) {
    const float *x = xs[0];
    float *dx = dxs[0];
    qat_layer *q = (qat_layer *)layer;
    const size_t in = layer->in, out = layer->out, count = n * in;
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * out);
    float scale;
    int32_t zp;
    const bool clip = static_params(q, &scale, &zp);
    if (dx) {
        if (n == 1)
            k->sgemv(true, out, in, 1.0f, q->wq, in, dy, 0.0f, dx);
        else
            k->sgemm(false, false, n, in, out, 1.0f, dy, out, q->wq, in, 0.0f, dx, in);
        if (clip) {
            const float qmin = (0.0f - (float)zp) * scale, qmax = (255.0f - (float)zp) * scale;
            for (size_t i = 0; i < count; i++)
                if (!(x[i] >= qmin && x[i] <= qmax)) dx[i] = 0.0f;
        }
    }
    if (param_grads) {
        const float *xin = x;
        if (quantizes_input(q)) {
            if (q->scratch_cap < count) {
                mm_free_floats(q->scratch);
                q->scratch = mm_alloc_floats(count);
                q->scratch_cap = q->scratch ? count : 0;
            }
            if (q->scratch) {
                fake_input(q, x, n, q->scratch);
                xin = q->scratch;
            }
        }
        for (size_t j = 0; j < out; j++) q->db[j] = 0.0f;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < out; j++) q->db[j] += dy[i * out + j];
        k->sgemm(true, false, out, in, n, 1.0f, dy, out, xin, in, 0.0f, q->dw, in);
    }
    if (q->cfg.scheme == MM_QUANT_INT8_STATIC) observe_range(q, x, count);
}

static void qat_after_update(mm_layer *layer) { refresh_weights((qat_layer *)layer); }

static size_t qat_param_bytes(const mm_layer *layer) {
    return (layer->out * layer->in + layer->out) * sizeof(float);
}

#define MASK_NAME_CAP 96

/* Saved as the dense layer of the master weights (see the top). */
static mm_status qat_save(const mm_layer *layer, size_t index, json_t *entry,
                          mm_file_writer *w) {
    if (json_object_set_new(entry, "kind", json_string("dense")) != 0)
        return mm_oom("architecture entry");
    mm_status st = mm_file_save_params(layer, index, w);
    for (size_t j = 0; j < layer->n_params && st == MM_OK; j++) {
        const mm_param *p = &layer->params[j];
        if (!p->mask) continue;
        char name[MASK_NAME_CAP];
        uint64_t shape[2] = {p->rows, p->cols};
        const size_t ndim = strcmp(p->name, "weight") == 0 ? 2 : 1;
        snprintf(name, sizeof name, "layers.%zu.%s_mask", index, p->name);
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U8, p->mask, shape, ndim);
    }
    return st;
}

static const mm_layer_vtable qat_vtable = {
    .kind = "qat",
    .caps = MM_CAP_LAYER | MM_CAP_TRAINING_FORM,
    .destroy = qat_destroy,
    .clone = qat_clone,
    .forward = qat_forward,
    .backward = qat_backward,
    .apply_sgd = NULL, /* the fused path would bypass after_update's bookkeeping */
    .param_bytes = qat_param_bytes,
    .save = qat_save,
    .after_update = qat_after_update,
};

/* ---- construction and conversion ------------------------------------------------ */

mm_status mm_qat_from_dense(const mm_layer *dense, const mm_qat_config *cfg, mm_layer **out) {
    *out = NULL;
    if (dense->n_params < 2 || dense->params[0].rows != dense->out ||
        dense->params[0].cols != dense->in || dense->params[1].rows != dense->out)
        return mm_error(MM_E_UNSUPPORTED, "a %s layer cannot be prepared for quantization-aware "
                                          "training",
                        dense->vt->kind);
    qat_layer *q;
    mm_status st = qat_alloc(&q, dense->in, dense->out);
    if (st != MM_OK) return st;
    q->base.act = dense->act;
    q->base.leaky_slope = dense->leaky_slope;
    q->cfg = *cfg;
    q->have_range = cfg->have_range;
    q->in_lo = cfg->in_lo;
    q->in_hi = cfg->in_hi;
    memcpy(q->w, dense->params[0].data, dense->in * dense->out * sizeof *q->w);
    memcpy(q->b, dense->params[1].data, dense->out * sizeof *q->b);
    st = copy_masks(dense, &q->base);
    if (st != MM_OK) {
        qat_destroy(&q->base);
        return st;
    }
    refresh_weights(q);
    *out = &q->base;
    return MM_OK;
}

mm_status mm_qat_to_dense(const mm_layer *layer, mm_layer **out) {
    *out = NULL;
    const qat_layer *q = (const qat_layer *)layer;
    mm_layer *d;
    mm_status st =
        mm_dense_create(&d, layer->in, layer->out, layer->act, layer->leaky_slope, MM_INIT_AUTO,
                        NULL);
    if (st != MM_OK) return st;
    memcpy(d->params[0].data, q->w, layer->in * layer->out * sizeof *q->w);
    memcpy(d->params[1].data, q->b, layer->out * sizeof *q->b);
    st = copy_masks(layer, d);
    if (st != MM_OK) {
        d->vt->destroy(d);
        return st;
    }
    *out = d;
    return MM_OK;
}

bool mm_qat_input_range(const mm_layer *layer, float *lo, float *hi) {
    const qat_layer *q = (const qat_layer *)layer;
    if (!mm_layer_is_qat(layer) || !q->have_range) return false;
    *lo = q->in_lo < q->in_hi ? q->in_lo : q->in_hi;
    *hi = q->in_hi;
    return true;
}
