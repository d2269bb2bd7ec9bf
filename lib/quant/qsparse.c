/* The int8 sparse layer kind ("sparse_int8"): a pruned layer (kind
 * "sparse") quantized, y = act(s_r * sum_k q_k x[col_k] + b), for models
 * that are both pruned and quantized ("Deep Compression"). The quantizer
 * builds it from a sparse layer under every int8 scheme; the contract is
 * quant/quant_internal.h, the file form doc/FORMAT.md (`sparse_int8`).
 *
 * Weights. Symmetric int8 with one scale per output row (per channel,
 * default) or one for the layer: s = max|w| / 127 over the row's stored
 * weights, q = rne(w / s) in [-127, 127]; pruned weights stay exact zeros
 * (they are not stored). Activations stay float under every int8 scheme:
 * a sparse step holds one weight of 16 different rows, not the 4
 * consecutive inputs of one row that an int8 dot-product instruction
 * needs, so integer activations would buy nothing here; what int8 buys is
 * bytes (2 per stored weight in memory instead of 5, about 2 in files
 * instead of 6) and, through the packed words below, no lost speed.
 *
 * Memory. The tiled layout of the float kind (kernels/sparse_layout.h),
 * and per stored weight one 16-bit word (q << 8) | column-in-block: the
 * kernels widen it once and use it both as the table index and, shifted,
 * as the weight, so a step costs what a float step costs (measurements in
 * benchmarks/RESULTS.md, "Pruned and quantized").
 *
 * Files: CSR with the columns as gaps, not indices: per row the distance
 * to the previous stored column minus one (the first: the column), each
 * written as k bytes 255 and a last byte below 255 (gap = 255 k + last).
 * At 90% sparsity a gap is one byte, against 2 for a U16 index: the
 * demo's pruned model is 5.6% of its fp32 file instead of 8.1%.
 *
 * Master weights (keep_master): float copies of the stored weights
 * (storage order) are the layer's trainable "weight_values", as in the
 * float kind; forward uses the int8 weights, backward the master (straight-
 * through estimator), after_update re-quantizes. Without a master the
 * layer is inference-only (n_params = 0); backward still propagates dx
 * through the dequantized weights so that layers below it can train.
 *
 * Concurrency: forward reads only. Save and mm_qlayer_int8_describe fill
 * caches (the file form; the dense int8 matrix for ONNX) under a spin lock;
 * exclusive calls (backward, updates) drop them. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sparse_layout.h"
#include "model/mmfile.h"
#include "prune/prune_internal.h" /* mm_sparse_positions */
#include "quant/quant_internal.h"

#define QS_NAME_CAP 96

typedef struct qs_file_form {
    int8_t *q;         /* nnz, CSR order */
    uint8_t *gaps;     /* ngaps */
    size_t ngaps;
    uint32_t *offsets; /* out + 1 */
    float *master;     /* nnz, CSR order; with a master */
    int8_t *dense_q;   /* out x in, for mm_qlayer_int8_describe */
} qs_file_form;

typedef struct qsparse {
    mm_layer base;
    mm_sp_layout *lay;
    mm_sp_matrix m;          /* lay's view with qw and qscale */
    int16_t *qw;             /* nnz + MM_SP_PAD packed words */
    float *scale;            /* out */
    float *b, *db;           /* bias (a parameter with a master) and its gradient */
    float *master, *gmaster; /* nnz + MM_SP_PAD, storage order; NULL without */
    bool per_channel;
    atomic_int cache_lock;
    qs_file_form cache;
} qsparse;

static const mm_layer_vtable qsparse_vtable;

bool mm_layer_is_qsparse(const mm_layer *layer) { return layer && layer->vt == &qsparse_vtable; }

static void cache_free(qs_file_form *c) {
    free(c->q);
    free(c->gaps);
    free(c->offsets);
    mm_free_floats(c->master);
    free(c->dense_q);
    memset(c, 0, sizeof *c);
}

static void cache_lock(qsparse *s) {
    int expected = 0;
    while (!atomic_compare_exchange_weak_explicit(&s->cache_lock, &expected, 1,
                                                  memory_order_acquire, memory_order_relaxed))
        expected = 0;
}

static void cache_unlock(qsparse *s) {
    atomic_store_explicit(&s->cache_lock, 0, memory_order_release);
}

static void qs_destroy(mm_layer *layer) {
    qsparse *s = (qsparse *)layer;
    if (!s) return;
    mm_sp_layout_free(s->lay);
    free(s->qw);
    mm_free_floats(s->scale);
    mm_free_floats(s->b);
    mm_free_floats(s->db);
    mm_free_floats(s->master);
    mm_free_floats(s->gmaster);
    cache_free(&s->cache);
    free(s);
}

/* A layer over the layout `lay` (taken over, also on error) with zeroed
 * weights. */
static mm_status qs_alloc(qsparse **out, mm_sp_layout *lay, mm_activation act, float slope,
                          bool per_channel, bool master) {
    *out = NULL;
    qsparse *s = calloc(1, sizeof *s);
    if (!s) {
        mm_sp_layout_free(lay);
        return mm_oom("int8 sparse layer");
    }
    atomic_init(&s->cache_lock, 0);
    s->lay = lay;
    const size_t nnz = lay->m.nnz, out_dim = lay->m.rows;
    s->qw = calloc(nnz + MM_SP_PAD, sizeof *s->qw);
    s->scale = mm_alloc_floats_zero(out_dim);
    s->b = mm_alloc_floats_zero(out_dim);
    bool ok = s->qw && s->scale && s->b;
    if (ok && master) {
        s->master = mm_alloc_floats_zero(nnz + MM_SP_PAD);
        s->gmaster = mm_alloc_floats_zero(nnz + MM_SP_PAD);
        s->db = mm_alloc_floats_zero(out_dim);
        ok = s->master && s->gmaster && s->db;
    }
    if (!ok) {
        qs_destroy(&s->base);
        return mm_oom("int8 sparse layer weights");
    }
    s->base.vt = &qsparse_vtable;
    s->base.in = lay->m.cols;
    s->base.out = out_dim;
    s->base.act = act;
    s->base.leaky_slope = slope;
    s->per_channel = per_channel;
    if (master) {
        s->base.params[0] = (mm_param){"weight_values", s->master, s->gmaster, nnz, 1, true, NULL};
        s->base.params[1] = (mm_param){"bias", s->b, s->db, out_dim, 1, false, NULL};
        s->base.n_params = 2;
    }
    s->m = lay->m;
    s->m.qw = s->qw;
    s->m.qscale = s->scale;
    *out = s;
    return MM_OK;
}

/* The float view of the master weights (training). */
static mm_sp_matrix master_view(const qsparse *s) {
    mm_sp_matrix v = s->lay->m;
    v.values = s->master;
    return v;
}

/* ---- quantization --------------------------------------------------------- */

/* max|w| / 127 as a scale that keeps every |w / s| <= 127.5; 1 for zeros. */
static float symmetric_scale(float maxabs) {
    float sf = (float)((double)maxabs / 127.0);
    if (!(sf > 0.0f)) sf = maxabs > 0.0f ? FLT_TRUE_MIN : 1.0f;
    while ((double)sf * 127.5 < (double)maxabs) sf = nextafterf(sf, INFINITY);
    return sf;
}

/* Scales and packed words from float weights v (storage order, finite). */
static void quantize_from(qsparse *s, const float *v) {
    const mm_sp_matrix *m = &s->lay->m;
    const size_t rows = m->rows;
    for (size_t r = 0; r < rows; r++) s->scale[r] = 0.0f;
    MM_SP_FOR_EACH(m, {
        const float a = fabsf(v[k]);
        if (a > s->scale[row]) s->scale[row] = a;
    });
    if (!s->per_channel) {
        float mx = 0.0f;
        for (size_t r = 0; r < rows; r++) mx = s->scale[r] > mx ? s->scale[r] : mx;
        for (size_t r = 0; r < rows; r++) s->scale[r] = mx;
    }
    for (size_t r = 0; r < rows; r++) s->scale[r] = symmetric_scale(s->scale[r]);
    MM_SP_FOR_EACH(m, {
        float q = nearbyintf(v[k] / s->scale[row]);
        q = q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q;
        s->qw[k] = mm_sp_qword((int)q, m->lcol[k]);
    });
}

static float dequant(const qsparse *s, size_t k, size_t row) {
    return s->scale[row] * (float)mm_sp_qword_weight(s->qw[k]);
}

mm_status mm_qsparse_from_sparse(const mm_layer *sparse, const mm_qlayer_config *cfg,
                                 mm_layer **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!sparse || !cfg) return mm_null_arg(!sparse ? "sparse" : "cfg");
    if (!mm_layer_is_sparse(sparse) || sparse->n_params < 2)
        return mm_error(MM_E_INVALID_ARGUMENT, "a %s layer is not a sparse layer",
                        sparse->vt->kind);
    const mm_param *pv = &sparse->params[0], *pb = &sparse->params[1];
    const size_t nnz = mm_param_count(pv), rows = sparse->out, cols = sparse->in;
    for (int j = 0; j < 2; j++) {
        const mm_param *p = &sparse->params[j];
        for (size_t i = 0; i < mm_param_count(p); i++)
            if (!isfinite(p->data[i]))
                return mm_error(MM_E_NUMERIC, "%s[%zu] is %g: cannot quantize NaN or infinity",
                                p->name, i, (double)p->data[i]);
    }
    /* the pattern, from the dense positions of the stored weights: one
     * row's positions ascend in storage order, so a stable placement by
     * row is CSR (where[k]: entry k's CSR index) */
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    size_t *off = calloc(rows + 1, sizeof *off);
    size_t *fill = mm_malloc_array(rows + 1, sizeof *fill);
    uint32_t *idx = mm_malloc_array(nnz ? nnz : 1, sizeof *idx);
    size_t *where = mm_malloc_array(nnz ? nnz : 1, sizeof *where);
    float *csr_vals = mm_alloc_floats(nnz + MM_SP_PAD);
    mm_sp_layout *lay = NULL;
    qsparse *s = NULL;
    mm_status st = pos && off && fill && idx && where && csr_vals
                       ? mm_sparse_positions(sparse, pos)
                       : mm_oom("int8 sparse conversion");
    if (st == MM_OK) {
        for (size_t k = 0; k < nnz; k++) off[pos[k] / cols + 1]++;
        for (size_t r = 0; r < rows; r++) off[r + 1] += off[r];
        memcpy(fill, off, (rows + 1) * sizeof *fill);
        for (size_t k = 0; k < nnz; k++) {
            const size_t e = fill[pos[k] / cols]++;
            idx[e] = (uint32_t)(pos[k] % cols);
            csr_vals[e] = pv->data[k];
        }
        const mm_sp_csr pattern = {rows, cols, nnz, off, idx};
        st = mm_sp_layout_build(&pattern, &lay);
    }
    if (st == MM_OK)
        st = qs_alloc(&s, lay, sparse->act, sparse->leaky_slope, cfg->per_channel,
                      cfg->keep_master);
    /* the weights in the new layout's storage order (where: its CSR order) */
    float *v = s ? (s->master ? s->master : mm_alloc_floats(nnz + MM_SP_PAD)) : NULL;
    if (st == MM_OK && !v) st = mm_oom("int8 sparse conversion");
    if (st == MM_OK) st = mm_sp_layout_csr_order(s->lay, where);
    if (st == MM_OK) {
        for (size_t k = 0; k < nnz; k++) v[k] = csr_vals[where[k]];
        quantize_from(s, v);
        memcpy(s->b, pb->data, rows * sizeof *s->b);
    }
    if (s && v != s->master) mm_free_floats(v);
    free(fill);
    free(pos);
    free(off);
    free(idx);
    free(where);
    mm_free_floats(csr_vals);
    if (st != MM_OK) {
        if (s) qs_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return MM_OK;
}

/* ---- the vtable --------------------------------------------------------- */

static void qs_forward(const mm_layer *layer, const mm_kernels *k, const float *x, float *y,
                       size_t n) {
    (void)k;
    const qsparse *s = (const qsparse *)layer;
    mm_sparse_kernels_get()->forward_q8(&s->m, s->b, x, y, n);
    mm_activation_forward(layer->act, layer->leaky_slope, y, n * layer->out);
}

/* db = column sums of dz (overwrite), or b += alpha * rows of dz. */
static void bias_rows(float *dst, const float *dz, size_t n, size_t out, float alpha,
                      bool accumulate) {
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < out; j++)
            dst[j] = i == 0 && !accumulate ? alpha * dz[j] : dst[j] + alpha * dz[i * out + j];
}

/* dx = dz W through the dequantized weights (inference-only layers: rare,
 * so scalar and allocation-free). */
static void dx_dequant(const qsparse *s, const float *dz, float *dx, size_t n) {
    const mm_sp_matrix *m = &s->lay->m;
    const size_t rows = m->rows, cols = m->cols;
    memset(dx, 0, n * cols * sizeof *dx);
    for (size_t i = 0; i < n; i++) {
        const float *d = dz + i * rows;
        float *o = dx + i * cols;
        MM_SP_FOR_EACH(m, o[col] += dequant(s, k, row) * d[row]);
    }
}

static void qs_backward(mm_layer *layer, const mm_kernels *k, const float *x, const float *y,
                        float *dy, float *dx, size_t n, bool param_grads) {
    (void)k;
    qsparse *s = (qsparse *)layer;
    cache_free(&s->cache); /* exclusive access: nobody borrows it */
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * layer->out);
    const mm_sparse_kernels *sk = mm_sparse_kernels_get();
    if (!s->master) {
        if (dx) dx_dequant(s, dy, dx, n);
        return;
    }
    const mm_sp_matrix mv = master_view(s);
    if (dx) sk->backward_x(&mv, dy, dx, n);
    if (param_grads) {
        bias_rows(s->db, dy, n, layer->out, 1.0f, false);
        sk->grad_values(&mv, dy, x, n, 1.0f, false, s->gmaster);
    }
}

static void qs_apply_sgd(mm_layer *layer, const mm_kernels *k, const float *x, const float *delta,
                         size_t n, float neg_lr) {
    (void)k;
    qsparse *s = (qsparse *)layer;
    if (!s->master) return;
    cache_free(&s->cache);
    const mm_sp_matrix mv = master_view(s);
    mm_sparse_kernels_get()->grad_values(&mv, delta, x, n, neg_lr, true, s->master);
    bias_rows(s->b, delta, n, layer->out, neg_lr, true);
}

/* The optimizer moved the master: quantize it again. */
static void qs_after_update(mm_layer *layer) {
    qsparse *s = (qsparse *)layer;
    cache_free(&s->cache);
    if (s->master) quantize_from(s, s->master);
}

/* Words, layout, scales and bias, and the master when kept. */
static size_t qs_param_bytes(const mm_layer *layer) {
    const qsparse *s = (const qsparse *)layer;
    const size_t nnz = s->lay->m.nnz;
    return nnz * sizeof(int16_t) + mm_sp_layout_bytes(s->lay) + 2 * layer->out * sizeof(float) +
           (s->master ? nnz * sizeof(float) : 0);
}

static mm_status qs_clone(const mm_layer *layer, mm_layer **out) {
    const qsparse *src = (const qsparse *)layer;
    mm_sp_layout *lay;
    mm_status st = mm_sp_layout_clone(src->lay, &lay);
    if (st != MM_OK) return st;
    qsparse *s;
    st = qs_alloc(&s, lay, layer->act, layer->leaky_slope, src->per_channel, src->master != NULL);
    if (st != MM_OK) return st;
    const size_t nnz = lay->m.nnz, rows = layer->out;
    memcpy(s->qw, src->qw, nnz * sizeof *s->qw);
    memcpy(s->scale, src->scale, rows * sizeof *s->scale);
    memcpy(s->b, src->b, rows * sizeof *s->b);
    if (s->master) memcpy(s->master, src->master, nnz * sizeof *s->master);
    *out = &s->base;
    return MM_OK;
}

static mm_status qs_file_order(const mm_layer *layer, size_t param, size_t *pos) {
    const qsparse *s = (const qsparse *)layer;
    if (param != 0) {
        for (size_t j = 0; j < layer->out; j++) pos[j] = j;
        return MM_OK;
    }
    return mm_sp_layout_csr_order(s->lay, pos);
}

/* ---- model files ---------------------------------------------------------- */

static void tname(char name[QS_NAME_CAP], size_t index, const char *suffix) {
    snprintf(name, QS_NAME_CAP, "layers.%zu.%s", index, suffix);
}

/* Bytes of the gap code of a row's columns. */
static size_t gap_bytes(size_t gap) { return gap / 255 + 1; }

/* Build the file form (CSR order, gap-coded columns) into the cache. */
static mm_status build_file_form(qsparse *s) {
    qs_file_form *c = &s->cache;
    if (c->offsets) return MM_OK;
    const mm_sp_matrix *m = &s->lay->m;
    const size_t nnz = m->nnz, rows = m->rows;
    uint32_t *off = NULL, *idx = NULL;
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    int8_t *q = malloc(nnz ? nnz : 1);
    float *mv = s->master ? mm_alloc_floats(nnz ? nnz : 1) : NULL;
    mm_status st = pos && q && (mv || !s->master) ? mm_sp_layout_csr_order(s->lay, pos)
                                                  : mm_oom("int8 sparse file form");
    if (st == MM_OK) st = mm_sp_layout_to_csr(s->lay, &off, &idx);
    uint8_t *gaps = NULL;
    size_t ngaps = 0;
    if (st == MM_OK) {
        for (size_t r = 0; r < rows; r++)
            for (size_t e = off[r], prev = 0; e < off[r + 1]; e++) {
                ngaps += gap_bytes(idx[e] - prev);
                prev = idx[e] + 1;
            }
        gaps = malloc(ngaps ? ngaps : 1);
        if (!gaps) st = mm_oom("int8 sparse file form");
    }
    if (st == MM_OK) {
        size_t g = 0;
        for (size_t r = 0; r < rows; r++)
            for (size_t e = off[r], prev = 0; e < off[r + 1]; e++) {
                size_t gap = idx[e] - prev;
                for (; gap >= 255; gap -= 255) gaps[g++] = 255;
                gaps[g++] = (uint8_t)gap;
                prev = idx[e] + 1;
            }
        for (size_t k = 0; k < nnz; k++) {
            q[pos[k]] = (int8_t)mm_sp_qword_weight(s->qw[k]);
            if (mv) mv[pos[k]] = s->master[k];
        }
    }
    free(pos);
    free(idx);
    if (st != MM_OK) {
        free(q);
        mm_free_floats(mv);
        free(off);
        free(gaps);
        return st;
    }
    c->q = q;
    c->master = mv;
    c->offsets = off;
    c->gaps = gaps;
    c->ngaps = ngaps;
    return MM_OK;
}

static mm_status check_finite(const float *v, size_t n, size_t index, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return mm_error(MM_E_NUMERIC,
                            "layer %zu %s[%zu] is not finite; refusing to save a model that "
                            "could not be loaded",
                            index, what, i);
    return MM_OK;
}

/* Entry fields "nnz", "per_channel", "keep_master"; tensors
 * layers.<i>.weight_q I8 [nnz], weight_gaps U8, weight_offsets U32
 * [out + 1], weight_scale F32 [out], bias F32 [out] and, with a master,
 * weight_values F32 [nnz] (doc/FORMAT.md). The writer borrows the cache
 * until commit; it lives until the next exclusive call. */
static mm_status qs_save(const mm_layer *layer, size_t index, json_t *entry, mm_file_writer *w) {
    qsparse *s = (qsparse *)(uintptr_t)layer; /* fills the cache only */
    const size_t nnz = s->lay->m.nnz, out = layer->out;
    mm_status st = check_finite(s->b, out, index, "bias");
    if (st == MM_OK && s->master) st = check_finite(s->master, nnz, index, "weight_values");
    if (st != MM_OK) return st;
    if (json_object_set_new(entry, "nnz", json_integer((json_int_t)nnz)) != 0 ||
        json_object_set_new(entry, "per_channel", json_boolean(s->per_channel)) != 0 ||
        json_object_set_new(entry, "keep_master", json_boolean(s->master != NULL)) != 0)
        return mm_oom("architecture entry");
    cache_lock(s);
    st = build_file_form(s);
    cache_unlock(s);
    if (st != MM_OK) return st;
    const qs_file_form *c = &s->cache;
    char name[QS_NAME_CAP];
    const uint64_t s_nnz[1] = {nnz}, s_gaps[1] = {c->ngaps}, s_off[1] = {(uint64_t)out + 1},
                   s_out[1] = {out};
    tname(name, index, "weight_q");
    st = mm_file_writer_add_tensor(w, name, MM_DTYPE_I8, c->q, s_nnz, 1);
    tname(name, index, "weight_gaps");
    if (st == MM_OK) st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U8, c->gaps, s_gaps, 1);
    tname(name, index, "weight_offsets");
    if (st == MM_OK) st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U32, c->offsets, s_off, 1);
    tname(name, index, "weight_scale");
    if (st == MM_OK) st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, s->scale, s_out, 1);
    tname(name, index, "bias");
    if (st == MM_OK) st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, s->b, s_out, 1);
    tname(name, index, "weight_values");
    if (st == MM_OK && s->master)
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, c->master, s_nnz, 1);
    return st;
}

static mm_status entry_bool(const json_t *entry, size_t index, const char *key, bool *out) {
    const json_t *v = json_object_get(entry, key);
    if (!v || !json_is_boolean(v))
        return mm_error(MM_E_FORMAT, "architecture: layer %zu: \"%s\" must be true or false",
                        index, key);
    *out = json_is_true(v);
    return MM_OK;
}

/* Read a 1-d tensor of `len` elements after checking its dtype and shape
 * (mm_file_check_vector has bounded its size by the file's). */
static mm_status read_vector(const mm_file *f, const char *name, mm_dtype dt, uint64_t len,
                             void *dst) {
    const uint64_t shape[1] = {len};
    return mm_file_read_tensor(f, name, dt, shape, 1, dst);
}

/* Decode the gap code into CSR columns, checking every bound. */
static mm_status decode_gaps(const uint8_t *gaps, size_t ngaps, const uint32_t *off, size_t rows,
                             size_t cols, uint32_t *idx, const char *name) {
    size_t g = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t e = off[r], next = 0; e < off[r + 1]; e++) {
            size_t gap = 0;
            while (g < ngaps && gaps[g] == 255) {
                gap += 255;
                g++;
            }
            if (g >= ngaps)
                return mm_error(MM_E_FORMAT, "tensor %s ends inside row %zu", name, r);
            gap += gaps[g++];
            if (gap >= cols || next + gap >= cols)
                return mm_error(MM_E_FORMAT,
                                "tensor %s: row %zu has a column beyond the layer's %zu inputs",
                                name, r, cols);
            idx[e] = (uint32_t)(next + gap);
            next += gap + 1;
        }
    if (g != ngaps)
        return mm_error(MM_E_FORMAT, "tensor %s has %zu bytes after the last stored weight", name,
                        ngaps - g);
    return MM_OK;
}

static mm_status qs_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                         size_t out, mm_activation act, float leaky_slope, mm_layer **res) {
    *res = NULL;
    bool pc = true, master = false;
    mm_status st = entry_bool(entry, index, "per_channel", &pc);
    if (st == MM_OK) st = entry_bool(entry, index, "keep_master", &master);
    if (st != MM_OK) return st;
    char nq[QS_NAME_CAP], ng[QS_NAME_CAP], no[QS_NAME_CAP], ns[QS_NAME_CAP], nb[QS_NAME_CAP],
        nv[QS_NAME_CAP];
    tname(nq, index, "weight_q");
    tname(ng, index, "weight_gaps");
    tname(no, index, "weight_offsets");
    tname(ns, index, "weight_scale");
    tname(nb, index, "bias");
    tname(nv, index, "weight_values");
    size_t count;
    const uint64_t max_nnz = mm_mul_ok(in, out, &count) && count < UINT32_MAX ? count : UINT32_MAX;
    uint64_t nnz64 = 0, ngaps64 = 0;
    /* shapes and dtypes before any allocation */
    st = mm_file_check_vector(f, nq, MM_DTYPE_I8, MM_DTYPE_I8, max_nnz, false, NULL, &nnz64);
    if (st == MM_OK)
        st = mm_file_check_vector(f, ng, MM_DTYPE_U8, MM_DTYPE_U8, UINT64_MAX, false, NULL,
                                  &ngaps64);
    if (st == MM_OK)
        st = mm_file_check_vector(f, no, MM_DTYPE_U32, MM_DTYPE_U32, (uint64_t)out + 1, true,
                                  NULL, NULL);
    if (st == MM_OK)
        st = mm_file_check_vector(f, ns, MM_DTYPE_F32, MM_DTYPE_F32, out, true, NULL, NULL);
    if (st == MM_OK)
        st = mm_file_check_vector(f, nb, MM_DTYPE_F32, MM_DTYPE_F32, out, true, NULL, NULL);
    if (st == MM_OK && master)
        st = mm_file_check_vector(f, nv, MM_DTYPE_F32, MM_DTYPE_F32, nnz64, true, NULL, NULL);
    if (st != MM_OK) return st;
    const size_t nnz = (size_t)nnz64, ngaps = (size_t)ngaps64;
    const json_t *jn = json_object_get(entry, "nnz");
    if (!jn || !json_is_integer(jn) || json_integer_value(jn) < 0 ||
        (uint64_t)json_integer_value(jn) != nnz64)
        return mm_error(MM_E_FORMAT,
                        "architecture: layer %zu: \"nnz\" must be the number of stored weights "
                        "(%zu)",
                        index, nnz);
    if (ngaps < nnz)
        return mm_error(MM_E_FORMAT, "tensor %s has %zu bytes for %zu stored weights", ng, ngaps,
                        nnz);
    uint32_t *off32 = mm_malloc_array(out + 1, sizeof *off32);
    size_t *off = mm_malloc_array(out + 1, sizeof *off);
    uint32_t *idx = mm_malloc_array(nnz ? nnz : 1, sizeof *idx);
    uint8_t *gaps = malloc(ngaps ? ngaps : 1);
    int8_t *q = malloc(nnz ? nnz : 1);
    float *mv = master ? mm_alloc_floats(nnz ? nnz : 1) : NULL;
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    mm_sp_layout *lay = NULL;
    qsparse *s = NULL;
    if (!off32 || !off || !idx || !gaps || !q || (master && !mv) || !pos)
        st = mm_oom("int8 sparse layer");
    if (st == MM_OK) st = read_vector(f, no, MM_DTYPE_U32, out + 1, off32);
    if (st == MM_OK) st = read_vector(f, ng, MM_DTYPE_U8, ngaps, gaps);
    if (st == MM_OK) st = read_vector(f, nq, MM_DTYPE_I8, nnz, q);
    if (st == MM_OK && master) st = read_vector(f, nv, MM_DTYPE_F32, nnz, mv);
    if (st == MM_OK && (off32[0] != 0 || off32[out] != nnz))
        st = mm_error(MM_E_FORMAT, "tensor %s must run from 0 to %zu (the number of stored "
                      "weights), not %u .. %u", no, nnz, (unsigned)off32[0], (unsigned)off32[out]);
    for (size_t r = 0; st == MM_OK && r < out; r++) {
        if (off32[r + 1] < off32[r] || off32[r + 1] - off32[r] > in)
            st = mm_error(MM_E_FORMAT, "tensor %s: row %zu holds %lld weights (the layer has "
                          "%zu inputs)", no, r, (long long)off32[r + 1] - (long long)off32[r], in);
        off[r] = off32[r];
    }
    if (st == MM_OK) {
        off[out] = off32[out];
        st = decode_gaps(gaps, ngaps, off32, out, in, idx, ng);
    }
    for (size_t k = 0; st == MM_OK && k < nnz; k++)
        if (q[k] == -128)
            st = mm_error(MM_E_FORMAT, "tensor %s: element %zu is -128 (symmetric int8 weights "
                          "are in [-127, 127])", nq, k);
    for (size_t k = 0; st == MM_OK && mv && k < nnz; k++)
        if (!isfinite(mv[k]))
            st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is not finite", nv, k);
    if (st == MM_OK) {
        const mm_sp_csr pattern = {out, in, nnz, off, idx};
        st = mm_sp_layout_build(&pattern, &lay);
    }
    if (st == MM_OK) st = qs_alloc(&s, lay, act, leaky_slope, pc, master);
    if (st == MM_OK) st = read_vector(f, ns, MM_DTYPE_F32, out, s->scale);
    if (st == MM_OK) st = read_vector(f, nb, MM_DTYPE_F32, out, s->b);
    for (size_t r = 0; st == MM_OK && r < out; r++) {
        if (!(s->scale[r] > 0.0f) || !isfinite(s->scale[r]))
            st = mm_error(MM_E_FORMAT, "tensor %s: element %zu is %g (scales must be finite and "
                          "> 0)", ns, r, (double)s->scale[r]);
        else if (!isfinite(s->b[r]))
            st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is not finite", nb, r);
    }
    if (st == MM_OK) st = mm_sp_layout_csr_order(s->lay, pos);
    if (st == MM_OK) {
        const mm_sp_matrix *m = &s->lay->m;
        MM_SP_FOR_EACH(m, {
            s->qw[k] = mm_sp_qword(q[pos[k]], m->lcol[k]);
            if (mv) s->master[k] = mv[pos[k]];
        });
    }
    free(off32);
    free(off);
    free(idx);
    free(gaps);
    free(q);
    mm_free_floats(mv);
    free(pos);
    if (st != MM_OK) {
        if (s) qs_destroy(&s->base);
        return st;
    }
    *res = &s->base;
    return MM_OK;
}

const mm_layer_kind mm_qsparse_kind = {.kind = "sparse_int8", .load = qs_load};

static const mm_layer_vtable qsparse_vtable = {
    .kind = "sparse_int8",
    .destroy = qs_destroy,
    .clone = qs_clone,
    .forward = qs_forward,
    .backward = qs_backward,
    .apply_sgd = qs_apply_sgd,
    .param_bytes = qs_param_bytes,
    .save = qs_save,
    .after_update = qs_after_update,
    .file_order = qs_file_order,
};

/* ---- other forms (quant_internal.h) ------------------------------------------ */

mm_status mm_qsparse_effective_weights(const mm_layer *layer, bool master, float *w, float *b) {
    const qsparse *s = (const qsparse *)layer;
    const mm_sp_matrix *m = &s->lay->m;
    const size_t in = layer->in;
    memset(w, 0, layer->out * in * sizeof *w);
    if (master && s->master) MM_SP_FOR_EACH(m, w[row * in + col] = s->master[k]);
    else MM_SP_FOR_EACH(m, w[row * in + col] = dequant(s, k, row));
    memcpy(b, s->b, layer->out * sizeof *b);
    return MM_OK;
}

mm_status mm_qsparse_int8_describe(const mm_layer *layer, mm_qlayer_int8 *d) {
    qsparse *s = (qsparse *)(uintptr_t)layer; /* fills the cache only */
    const mm_sp_matrix *m = &s->lay->m;
    const size_t in = layer->in;
    size_t count;
    if (!mm_mul_ok(in, layer->out, &count)) return mm_oom("int8 weights");
    mm_status st = MM_OK;
    cache_lock(s);
    if (!s->cache.dense_q) {
        int8_t *dq = calloc(count ? count : 1, 1);
        if (dq) {
            MM_SP_FOR_EACH(m, dq[row * in + col] = (int8_t)mm_sp_qword_weight(s->qw[k]));
            s->cache.dense_q = dq;
        } else {
            st = mm_oom("int8 weights");
        }
    }
    cache_unlock(s);
    if (st != MM_OK) return st;
    *d = (mm_qlayer_int8){.scheme = MM_QUANT_INT8_WEIGHT_ONLY,
                          .per_channel = true, /* one scale per row as stored */
                          .weight_symmetric = true,
                          .weight_q = s->cache.dense_q,
                          .weight_scale = s->scale,
                          .bias = s->b};
    return MM_OK;
}
