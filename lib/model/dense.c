/* The dense (fully connected) layer kind: y = act(x W^T + b), W is out x in
 * row-major (nn.Linear's layout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mmfile.h"
#include "model/model_internal.h"

typedef struct dense_layer {
    mm_layer base;
    float *w, *b;   /* parameters */
    float *dw, *db; /* gradients */
} dense_layer;

static void dense_destroy(mm_layer *layer) {
    dense_layer *d = (dense_layer *)layer;
    mm_free_floats(d->w);
    mm_free_floats(d->b);
    mm_free_floats(d->dw);
    mm_free_floats(d->db);
    for (size_t j = 0; j < d->base.n_params; j++) free(d->base.params[j].mask);
    free(d);
}

/* Bias add and activation in one pass over the output. */
static void add_bias_activate(const mm_layer *l, const float *b, float *y, size_t n) {
    const size_t out = l->out;
    for (size_t i = 0; i < n; i++) {
        float *row = y + i * out;
        switch (l->act) {
        case MM_ACT_RELU:
            /* written so NaN propagates (as in PyTorch) and it still
             * vectorises to a max instruction */
            for (size_t j = 0; j < out; j++) {
                float v = row[j] + b[j];
                row[j] = v < 0.0f ? 0.0f : v;
            }
            break;
        case MM_ACT_IDENTITY:
            for (size_t j = 0; j < out; j++) row[j] += b[j];
            break;
        default:
            for (size_t j = 0; j < out; j++) row[j] += b[j];
            mm_activation_forward(l->act, l->leaky_slope, row, out);
            break;
        }
    }
}

static void dense_forward(const mm_layer *layer, const mm_kernels *k, const float *x, float *y,
                          size_t n) {
    const dense_layer *d = (const dense_layer *)layer;
    const size_t in = layer->in, out = layer->out;
    if (n == 1)
        k->sgemv(false, out, in, 1.0f, d->w, in, x, 0.0f, y);
    else
        k->sgemm(false, true, n, out, in, 1.0f, x, in, d->w, in, 0.0f, y, out);
    add_bias_activate(layer, d->b, y, n);
}

/* db (=|+=) alpha * column sums of dZ */
static void bias_grad(float *db, const float *dz, size_t n, size_t out, float alpha,
                      bool accumulate) {
    for (size_t i = 0; i < n; i++) {
        const float *row = dz + i * out;
        if (i == 0 && !accumulate)
            for (size_t j = 0; j < out; j++) db[j] = alpha * row[j];
        else
            for (size_t j = 0; j < out; j++) db[j] += alpha * row[j];
    }
}

static void dense_backward(mm_layer *layer, const mm_kernels *k, const float *x, const float *y,
                           float *dy, float *dx, size_t n, bool param_grads) {
    dense_layer *d = (dense_layer *)layer;
    const size_t in = layer->in, out = layer->out;
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * out);
    /* dX = dZ W (n x in), with W before any update */
    if (dx) {
        if (n == 1)
            k->sgemv(true, out, in, 1.0f, d->w, in, dy, 0.0f, dx);
        else
            k->sgemm(false, false, n, in, out, 1.0f, dy, out, d->w, in, 0.0f, dx, in);
    }
    if (param_grads) {
        bias_grad(d->db, dy, n, out, 1.0f, false);
        /* dW = dZ^T X (out x in) */
        k->sgemm(true, false, out, in, n, 1.0f, dy, out, x, in, 0.0f, d->dw, in);
    }
}

/* W += neg_lr * dZ^T X and b += neg_lr * colsum(dZ), in one pass over W. */
static void dense_apply_sgd(mm_layer *layer, const mm_kernels *k, const float *x,
                            const float *delta, size_t n, float neg_lr) {
    dense_layer *d = (dense_layer *)layer;
    const size_t in = layer->in, out = layer->out;
    if (n == 1)
        k->sger(out, in, neg_lr, delta, x, d->w, in);
    else
        k->sgemm(true, false, out, in, n, neg_lr, delta, out, x, in, 1.0f, d->w, in);
    bias_grad(d->b, delta, n, out, neg_lr, true);
}

static size_t dense_param_bytes(const mm_layer *layer) {
    return (layer->out * layer->in + layer->out) * sizeof(float);
}

static mm_status dense_alloc(dense_layer **out, size_t in, size_t units);

static mm_status dense_clone(const mm_layer *layer, mm_layer **out) {
    const dense_layer *src = (const dense_layer *)layer;
    dense_layer *d;
    mm_status st = dense_alloc(&d, layer->in, layer->out);
    if (st != MM_OK) return st;
    d->base.act = layer->act;
    d->base.leaky_slope = layer->leaky_slope;
    memcpy(d->w, src->w, layer->in * layer->out * sizeof(float));
    memcpy(d->b, src->b, layer->out * sizeof(float));
    for (size_t j = 0; j < layer->n_params; j++) {
        const uint8_t *mask = layer->params[j].mask;
        if (!mask) continue;
        const size_t n = mm_param_count(&layer->params[j]);
        d->base.params[j].mask = malloc(n);
        if (!d->base.params[j].mask) {
            dense_destroy(&d->base);
            return mm_oom("pruning mask");
        }
        memcpy(d->base.params[j].mask, mask, n);
    }
    *out = &d->base;
    return MM_OK;
}

/* Pruning masks (mm_pruner) are U8 tensors "layers.<i>.<param>_mask" of the
 * parameter's file shape: [out, in] for the weight, [out] for the bias;
 * 1 keeps the value, 0 marks it pruned (and it is 0). */
#define MASK_NAME_CAP 96

static void mask_shape(const mm_param *p, uint64_t shape[2], size_t *ndim) {
    shape[0] = p->rows;
    shape[1] = p->cols;
    *ndim = (p->cols == 1 && strcmp(p->name, "weight") != 0) ? 1 : 2;
}

/* Model files: no fields beyond the generic ones; tensors
 * layers.<i>.weight [out, in] and layers.<i>.bias [out], F32, plus the
 * masks of a pruned layer. */
static mm_status dense_save(const mm_layer *layer, size_t index, json_t *entry,
                            mm_file_writer *w) {
    (void)entry;
    mm_status st = mm_file_save_params(layer, index, w);
    for (size_t j = 0; j < layer->n_params && st == MM_OK; j++) {
        const mm_param *p = &layer->params[j];
        if (!p->mask) continue;
        char name[MASK_NAME_CAP];
        uint64_t shape[2];
        size_t ndim;
        mask_shape(p, shape, &ndim);
        snprintf(name, sizeof name, "layers.%zu.%s_mask", index, p->name);
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U8, p->mask, shape, ndim);
    }
    return st;
}

/* Read the masks present in the file into a loaded layer: U8, exactly the
 * parameter's shape, values 0 or 1, and every masked value 0. */
static mm_status load_masks(const mm_file *f, size_t index, mm_layer *l) {
    for (size_t j = 0; j < l->n_params; j++) {
        mm_param *p = &l->params[j];
        char name[MASK_NAME_CAP];
        snprintf(name, sizeof name, "layers.%zu.%s_mask", index, p->name);
        if (!mm_file_has_tensor(f, name)) continue;
        uint64_t shape[2];
        size_t ndim;
        mask_shape(p, shape, &ndim);
        const size_t n = mm_param_count(p);
        /* bounded by the parameter, which the file holds */
        p->mask = malloc(n ? n : 1);
        if (!p->mask) return mm_oom("pruning mask");
        mm_status st = mm_file_read_tensor(f, name, MM_DTYPE_U8, shape, ndim, p->mask);
        if (st != MM_OK) return st;
        for (size_t i = 0; i < n; i++) {
            if (p->mask[i] > 1)
                return mm_error(MM_E_FORMAT, "tensor %s: element %zu is %u (a mask holds 0 or 1)",
                                name, i, (unsigned)p->mask[i]);
            if (!p->mask[i] && p->data[i] != 0.0f)
                return mm_error(MM_E_FORMAT,
                                "tensor %s: element %zu is pruned but layers.%zu.%s[%zu] is %g",
                                name, i, index, p->name, i, (double)p->data[i]);
        }
    }
    return MM_OK;
}

static mm_status dense_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                            size_t out, mm_activation act, float leaky_slope, mm_layer **res) {
    (void)entry;
    *res = NULL;
    const mm_param_shape shapes[] = {{"weight", out, in}, {"bias", out, 1}};
    mm_status st = mm_file_check_params_shape(f, index, "dense", shapes, 2);
    if (st != MM_OK) return st; /* checked before allocating */
    mm_layer *l = NULL;
    st = mm_dense_create(&l, in, out, act, leaky_slope, MM_INIT_AUTO, NULL);
    if (st != MM_OK) return st;
    st = mm_file_load_params(f, index, l);
    if (st == MM_OK) st = load_masks(f, index, l);
    if (st != MM_OK) {
        dense_destroy(l);
        return st;
    }
    *res = l;
    return MM_OK;
}

const mm_layer_kind mm_dense_kind = {.kind = "dense", .load = dense_load};

static const mm_layer_vtable dense_vtable = {
    .kind = "dense",
    .destroy = dense_destroy,
    .clone = dense_clone,
    .forward = dense_forward,
    .backward = dense_backward,
    .apply_sgd = dense_apply_sgd,
    .param_bytes = dense_param_bytes,
    .save = dense_save,
};

static mm_status dense_alloc(dense_layer **out, size_t in, size_t units) {
    size_t count;
    if (!mm_mul_ok(in, units, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "dense layer %zu x %zu is too large", units, in);
    dense_layer *d = calloc(1, sizeof *d);
    if (!d) return mm_oom("dense layer");
    d->w = mm_alloc_floats_zero(count);
    d->dw = mm_alloc_floats_zero(count);
    d->b = mm_alloc_floats_zero(units);
    d->db = mm_alloc_floats_zero(units);
    if (!d->w || !d->dw || !d->b || !d->db) {
        dense_destroy(&d->base);
        return mm_oom("dense layer parameters");
    }
    d->base.vt = &dense_vtable;
    d->base.in = in;
    d->base.out = units;
    d->base.params[0] = (mm_param){"weight", d->w, d->dw, units, in, true, NULL};
    d->base.params[1] = (mm_param){"bias", d->b, d->db, units, 1, false, NULL};
    d->base.n_params = 2;
    *out = d;
    return MM_OK;
}

mm_status mm_dense_create(mm_layer **out, size_t in, size_t units, mm_activation act,
                          float leaky_slope, mm_init init, mm_rng *rng) {
    if (in == 0 || units == 0)
        return mm_error(MM_E_INVALID_ARGUMENT, "dense layer needs at least one input and output");
    if (!mm_activation_name(act))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown activation %d", (int)act);
    if (init != MM_INIT_AUTO && init != MM_INIT_HE && init != MM_INIT_XAVIER)
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown initialisation %d", (int)init);
    dense_layer *d;
    mm_status st = dense_alloc(&d, in, units);
    if (st != MM_OK) return st;
    d->base.act = act;
    d->base.leaky_slope = leaky_slope;
    if (rng) {
        if (init == MM_INIT_AUTO)
            init = (act == MM_ACT_RELU || act == MM_ACT_LEAKY_RELU) ? MM_INIT_HE : MM_INIT_XAVIER;
        size_t count = in * units;
        if (init == MM_INIT_HE) {
            double sd = sqrt(2.0 / (double)in);
            for (size_t i = 0; i < count; i++) d->w[i] = (float)(sd * mm_rng_normal(rng));
        } else {
            float a = (float)sqrt(6.0 / (double)(in + units));
            for (size_t i = 0; i < count; i++) d->w[i] = a * (2.0f * mm_rng_uniform(rng) - 1.0f);
        }
        /* biases start at zero */
    }
    *out = &d->base;
    return MM_OK;
}
