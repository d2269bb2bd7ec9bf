/* The dense (fully connected) layer kind: y = act(x W^T + b), W is out x in
 * row-major (nn.Linear's layout). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mmfile.h"
#include "model/model_internal.h"

/* The compact file form of masked weights (CSR of the kept positions),
 * built by save and borrowed by the writer until commit (see dense_save). */
typedef struct compact_cache {
    float *values;
    void *indices; /* uint16_t when in <= 65536, else uint32_t */
    uint32_t *offsets;
    size_t nnz;
} compact_cache;

typedef struct dense_layer {
    mm_layer base;
    float *w, *b;   /* parameters */
    float *dw, *db; /* gradients */
    /* save cache, guarded by save_lock */
    atomic_int save_lock;
    compact_cache cc;
} dense_layer;

static void compact_free(compact_cache *c) {
    mm_free_floats(c->values);
    free(c->indices);
    free(c->offsets);
    memset(c, 0, sizeof *c);
}

static void dense_destroy(mm_layer *layer) {
    dense_layer *d = (dense_layer *)layer;
    compact_free(&d->cc);
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

static void dense_forward(const mm_layer *layer, const mm_kernels *k, const float *const *xs, float *y,
                          size_t n) {
    const float *x = xs[0];
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

static void dense_backward(mm_layer *layer, const mm_kernels *k, const float *const *xs, const float *y,
                           float *dy, float *const *dxs, size_t n, bool param_grads) {
    const float *x = xs[0];
    float *dx = dxs[0];
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

/* Largest input count written with 16-bit column indices. */
#define COMPACT_MAX_COLS16 65536u

static void save_lock(dense_layer *d) {
    int expected = 0;
    while (!atomic_compare_exchange_weak_explicit(&d->save_lock, &expected, 1,
                                                  memory_order_acquire, memory_order_relaxed))
        expected = 0;
}

static void save_unlock(dense_layer *d) {
    atomic_store_explicit(&d->save_lock, 0, memory_order_release);
}

/* Build the compact form of a masked weight into d->cc. A fresh form is
 * built and compared with the cached one, which is kept when equal, so that
 * saves running at the same time (both only reading the model) never write
 * what another one reads. Called with the save lock held. */
static mm_status compact_refresh(dense_layer *d, size_t nnz) {
    const size_t out = d->base.out, in = d->base.in;
    const uint8_t *mask = d->base.params[0].mask;
    const bool wide = in > COMPACT_MAX_COLS16;
    const size_t isz = wide ? sizeof(uint32_t) : sizeof(uint16_t);
    compact_cache c = {0};
    c.nnz = nnz;
    c.offsets = mm_malloc_array(out + 1, sizeof *c.offsets);
    c.indices = mm_malloc_array(nnz ? nnz : 1, isz);
    c.values = mm_alloc_floats(nnz ? nnz : 1);
    if (!c.offsets || !c.indices || !c.values) {
        compact_free(&c);
        return mm_oom("dense layer file form");
    }
    size_t q = 0;
    c.offsets[0] = 0;
    for (size_t r = 0; r < out; r++) {
        const float *wr = d->w + r * in;
        const uint8_t *mr = mask + r * in;
        for (size_t i = 0; i < in; i++) {
            if (!mr[i]) continue;
            if (wide) ((uint32_t *)c.indices)[q] = (uint32_t)i;
            else ((uint16_t *)c.indices)[q] = (uint16_t)i;
            c.values[q++] = wr[i];
        }
        c.offsets[r + 1] = (uint32_t)q;
    }
    compact_cache *old = &d->cc;
    if (old->offsets && old->nnz == nnz &&
        memcmp(old->offsets, c.offsets, (out + 1) * sizeof *c.offsets) == 0 &&
        memcmp(old->indices, c.indices, nnz * isz) == 0 &&
        memcmp(old->values, c.values, nnz * sizeof(float)) == 0) {
        compact_free(&c);
        return MM_OK;
    }
    compact_free(old);
    *old = c;
    return MM_OK;
}

/* A masked weight in the compact form: layers.<i>.weight_values F32 [nnz]
 * (the kept weights, row-major), weight_indices U16 (in <= 65536) or U32
 * [nnz] (their columns, increasing within a row) and weight_offsets U32
 * [out + 1]; the mask is implied. Then the bias as usual. */
static mm_status save_compact(const mm_layer *layer, size_t index, mm_file_writer *w, size_t nnz) {
    /* the cache is the only thing save writes; see compact_refresh */
    dense_layer *d = (dense_layer *)(uintptr_t)layer;
    const size_t out = layer->out, count = layer->in * layer->out;
    for (size_t k = 0; k < count; k++)
        if (!isfinite(d->w[k]))
            return mm_error(MM_E_NUMERIC,
                            "layer %zu weight element %zu is %s; refusing to save a model "
                            "that could not be loaded",
                            index, k, isnan(d->w[k]) ? "NaN" : "infinite");
    for (size_t j = 0; j < out; j++)
        if (!isfinite(d->b[j]))
            return mm_error(MM_E_NUMERIC,
                            "layer %zu bias element %zu is %s; refusing to save a model "
                            "that could not be loaded",
                            index, j, isnan(d->b[j]) ? "NaN" : "infinite");
    save_lock(d);
    mm_status st = compact_refresh(d, nnz);
    save_unlock(d);
    if (st != MM_OK) return st;
    char name[MASK_NAME_CAP];
    const uint64_t shape_nnz[1] = {nnz}, shape_off[1] = {(uint64_t)out + 1};
    snprintf(name, sizeof name, "layers.%zu.weight_values", index);
    st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, d->cc.values, shape_nnz, 1);
    if (st == MM_OK) {
        snprintf(name, sizeof name, "layers.%zu.weight_indices", index);
        st = mm_file_writer_add_tensor(
            w, name, layer->in > COMPACT_MAX_COLS16 ? MM_DTYPE_U32 : MM_DTYPE_U16,
            d->cc.indices, shape_nnz, 1);
    }
    if (st == MM_OK) {
        snprintf(name, sizeof name, "layers.%zu.weight_offsets", index);
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U32, d->cc.offsets, shape_off, 1);
    }
    if (st == MM_OK) {
        snprintf(name, sizeof name, "layers.%zu.bias", index);
        st = mm_file_writer_add_f32(w, name, d->b, out, 1, true);
    }
    return st;
}

/* Model files: no fields beyond the generic ones; tensors
 * layers.<i>.weight [out, in] and layers.<i>.bias [out], F32. A layer with
 * a weight mask stores its weight in the compact form instead (see
 * save_compact; the full form plus a weight_mask only when the kept count
 * does not fit U32), and a bias mask as layers.<i>.bias_mask. */
static mm_status dense_save(const mm_layer *layer, size_t index, json_t *entry,
                            mm_file_writer *w) {
    (void)entry;
    const mm_param *wp = &layer->params[0];
    bool compact = false;
    size_t nnz = 0;
    if (wp->mask) {
        const size_t n = mm_param_count(wp);
        for (size_t i = 0; i < n; i++) nnz += wp->mask[i] != 0;
        compact = nnz <= UINT32_MAX;
    }
    mm_status st = compact ? save_compact(layer, index, w, nnz)
                           : mm_file_save_params(layer, index, w);
    for (size_t j = 0; j < layer->n_params && st == MM_OK; j++) {
        const mm_param *p = &layer->params[j];
        if (!p->mask || (compact && j == 0)) continue;
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

/* The compact weight form (mm_file_read_csr); a separate weight mask
 * beside it would be ambiguous. */
static mm_status read_compact(const mm_file *f, size_t index, size_t in, size_t out,
                              mm_file_csr *c) {
    char nm[MASK_NAME_CAP];
    snprintf(nm, sizeof nm, "layers.%zu.weight_mask", index);
    if (mm_file_has_tensor(f, nm))
        return mm_error(MM_E_FORMAT,
                        "tensor %s: a weight stored compactly (layers.%zu.weight_values) "
                        "implies its mask",
                        nm, index);
    return mm_file_read_csr(f, index, in, out, c);
}

/* The weight either in full (layers.<i>.weight, with an optional
 * weight_mask) or compact (weight_values, weight_indices, weight_offsets:
 * the mask is implied), never both. */
static mm_status dense_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                            size_t out, mm_activation act, float leaky_slope, mm_layer **res) {
    (void)entry;
    *res = NULL;
    char nw[MASK_NAME_CAP], nv[MASK_NAME_CAP], ni[MASK_NAME_CAP], no[MASK_NAME_CAP];
    snprintf(nw, sizeof nw, "layers.%zu.weight", index);
    snprintf(nv, sizeof nv, "layers.%zu.weight_values", index);
    snprintf(ni, sizeof ni, "layers.%zu.weight_indices", index);
    snprintf(no, sizeof no, "layers.%zu.weight_offsets", index);
    const bool has_compact =
        mm_file_has_tensor(f, nv) || mm_file_has_tensor(f, ni) || mm_file_has_tensor(f, no);
    if (!has_compact || mm_file_has_tensor(f, nw)) {
        if (has_compact)
            return mm_error(MM_E_FORMAT,
                            "layer %zu stores its weight twice (%s and the compact form %s)",
                            index, nw, nv);
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
    /* compact: every tensor checked and validated before the layer exists */
    const mm_param_shape bshape[] = {{"bias", out, 1}};
    mm_status st = mm_file_check_params_shape(f, index, "dense", bshape, 1);
    if (st != MM_OK) return st;
    size_t count;
    if (!mm_mul_ok(in, out, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "dense layer %zu x %zu is too large", out, in);
    mm_file_csr c = {0};
    st = read_compact(f, index, in, out, &c);
    mm_layer *l = NULL;
    if (st == MM_OK) st = mm_dense_create(&l, in, out, act, leaky_slope, MM_INIT_AUTO, NULL);
    if (st == MM_OK) {
        dense_layer *d = (dense_layer *)l;
        mm_param *wp = &l->params[0];
        wp->mask = calloc(count ? count : 1, 1);
        if (!wp->mask) st = mm_oom("pruning mask");
        else {
            /* d->w starts at zero: the pruned weights */
            for (size_t r = 0; r < out; r++)
                for (size_t k = c.offsets[r]; k < c.offsets[r + 1]; k++) {
                    d->w[r * in + c.indices[k]] = c.values[k];
                    wp->mask[r * in + c.indices[k]] = 1;
                }
            char nb[MASK_NAME_CAP];
            snprintf(nb, sizeof nb, "layers.%zu.bias", index);
            st = mm_file_read_f32(f, nb, out, 1, d->b);
            for (size_t j = 0; j < out && st == MM_OK; j++)
                if (!isfinite(d->b[j]))
                    st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", nb, j,
                                  isnan(d->b[j]) ? "NaN" : "infinite");
        }
        if (st == MM_OK) st = load_masks(f, index, l); /* the bias mask */
    }
    mm_file_csr_free(&c);
    if (st != MM_OK) {
        if (l) dense_destroy(l);
        return st;
    }
    *res = l;
    return MM_OK;
}


/* Non-zero, unmasked values: what pruning left (masks may keep a zero). */
static size_t nonzero_of(const mm_param *p) {
    size_t nz = 0;
    const size_t n = mm_param_count(p);
    for (size_t i = 0; i < n; i++) nz += p->data[i] != 0.0f && (!p->mask || p->mask[i]);
    return nz;
}

static void dense_count_nonzero(const mm_layer *layer, size_t *weights, size_t *biases) {
    *weights = nonzero_of(&layer->params[0]);
    *biases = nonzero_of(&layer->params[1]);
}

const mm_layer_vtable mm_dense_kind = {
    .kind = "dense",
    .caps = MM_CAP_LAYER | MM_CAP_DENSE_WEIGHTS,
    .load = dense_load,
    .destroy = dense_destroy,
    .clone = dense_clone,
    .forward = dense_forward,
    .backward = dense_backward,
    .apply_sgd = dense_apply_sgd,
    .param_bytes = dense_param_bytes,
    .save = dense_save,
    .count_nonzero = dense_count_nonzero,
};

static mm_status dense_alloc(dense_layer **out, size_t in, size_t units) {
    size_t count;
    if (!mm_mul_ok(in, units, &count))
        return mm_error(MM_E_OUT_OF_RANGE, "dense layer %zu x %zu is too large", units, in);
    dense_layer *d = calloc(1, sizeof *d);
    if (!d) return mm_oom("dense layer");
    atomic_init(&d->save_lock, 0);
    d->w = mm_alloc_floats_zero(count);
    d->dw = mm_alloc_floats_zero(count);
    d->b = mm_alloc_floats_zero(units);
    d->db = mm_alloc_floats_zero(units);
    if (!d->w || !d->dw || !d->b || !d->db) {
        dense_destroy(&d->base);
        return mm_oom("dense layer parameters");
    }
    d->base.vt = &mm_dense_kind;
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
