/* The sparse layer kind: y = act(x W^T + b) with only the stored weights of
 * a pruned dense layer (kind "sparse"). The kernels are in
 * lib/kernels/sparse_kernels.c; the layout in sparse_kernels.h.
 *
 * FORMAT. In memory a tiled "sliced ELL with register tables" layout; in
 * files plain CSR (values F32, uint16 column indices when in <= 65536, U32
 * row offsets; doc/FORMAT.md). Why not CSR in memory too: measured on the
 * development machine (AMD EPYC Zen 4, AVX-512, 2 cores, noisy; interleaved
 * min-of-N timings), batch 1, the 784x256 layer at 90% sparsity, 20k
 * stored weights, against the dense layer (BLIS sgemv, ~7.7-8.4 us, bound
 * by L2 bandwidth on its 800 KB of weights):
 *   - CSR, scalar dot products: 0.43 ns per stored weight (three loads
 *     each, ~1.5 cycles): 8.7 us, no faster than dense. vgatherdps is no
 *     help on Zen 4 (~1.3 cycles per element: 0.35-0.5 ns per weight with
 *     16 or 8 lanes). CSR cannot reach the 3x target here.
 *   - a per-row bitmap with vexpandps: vexpandps alone costs ~4.4 cycles
 *     per 16 lanes on Zen 4, and the work no longer shrinks with sparsity.
 *   - tiled (this layout): rows in slices of 16, columns in blocks of 32;
 *     in each tile the rows are ranked by entry count and step i holds the
 *     i-th entry of every row that has one, in 16 lanes that are always a
 *     prefix. A step is one 64-byte load of values, 16 column bytes
 *     widened, one vpermi2ps from the 32-float window of x (two registers
 *     loaded per tile: no gathers) and a masked FMA; a vpermps per tile puts
 *     the lanes back in row order. 2.36 us: 3.4x dense. Tried and dropped:
 *     64-column blocks (fewer steps, 58% instead of 50% of lanes used, but
 *     2.87 us against 2.58 us at the time), padded values (no masks; +70%
 *     bytes), bitmap lanes with expand or popcount-permute compaction (4.9
 *     and 5.3 us), one step loop per slice with per-step window loads (5.5
 *     us), interleaved index bytes loaded without widening (cache-line
 *     splits: 3.6 us), sorting tiles by step count (no change).
 *   Bytes at 90%: values 4 B and a column byte per stored weight, a count
 *   per step, 37 B per tile: 119.7 KB for 784x256 = 14.9% of dense (CSR
 *   with uint16 indices would be 15.0%). The whole 784-256-128-10 model:
 *   param_bytes 14.8%, model file 145,680 of 941,600 bytes (15.5%).
 *   Without AVX-512 the same layout runs on AVX2 (four vpermps + blends per
 *   8 lanes: ~dense speed at batch 1, 2x faster at batch 256) and in
 *   portable C (the scalar walk: 0.7x dense at batch 1).
 *   One layout for every ISA keeps the order of the stored values (the
 *   "weight_values" parameter, and so optimizer state in files) the same on
 *   every machine; mm_sparse_positions maps it to dense positions.
 *
 * SPEED (same machine, 90% sparsity, AVX-512 kernels; dense = BLIS):
 *   forward      batch 1            batch 256
 *   784x256      2.4 us vs 7.7-8.4  430 us vs 1106 (2.6x)
 *   256x128      0.41 vs 1.36       70 vs 194 (2.8x)
 *   128x10       0.03 vs 0.09       4.1 vs 11.0 (2.7x)
 *   784-256-128-10 model (mm_model_forward, per sample): batch 1 2.93 us vs
 *   10.45 (3.6x), batch 256 2.01 vs 4.87 (2.4x). Batch n uses the batch-1
 *   loop for 4 samples at once (shared index and value loads); transposing
 *   x into [cols x 16] blocks and one 16-wide axpy per weight (the AVX2 and
 *   portable way) measured 560 us against 430.
 *   Training: backward (delta, dx and gradients) batch 1 16 vs 24 us,
 *   batch 256 1.0 vs 2.0 ms; the fused SGD update batch 1 4.7 vs 11.3 us,
 *   batch 256 0.37 vs 1.04 ms (784x256). Batch-1 dx is a scalar
 *   scatter-add; gradients never read back what the previous step wrote
 *   (overlapping masked load after masked store stalls ~20 cycles on Zen
 *   4: the update pass is separate).
 *   Magnitude pruning leaves rows with very unlike entry counts (the
 *   benchmark's 784x256 layer at 92%: a third of the lanes used), and a
 *   tile takes as many steps as its fullest row. mm_pruner_finalize
 *   therefore reorders hidden neurons (mm_sparse_group_rows, at the end of
 *   this file) so that like rows share slices: 3011 -> 2259 steps there,
 *   the 90% model 3.79 -> 3.16 us per sample at batch 1 (3.27x dense) and
 *   2.65 -> 2.16 at batch 256 (in-process comparison, same weights).
 *
 * POLICY (mm_sparse_worthwhile, MM_PRUNE_FORMAT_AUTO): sparse where the
 * forward pass at batch 1 and at batch 256 and the batch-1 backward pass
 * (online learning) are all faster than dense, from these speedups over
 * the three layer shapes (worst shape; AVX-512 / AVX2 / portable):
 *   sparsity   fwd b1           fwd b256          bwd b1
 *   60%        1.29/0.39/0.25   1.02/0.50/0.40    0.37/0.31/0.20
 *   80%        1.91/0.63/0.41   1.64/0.64/0.55    0.78/0.62/0.39
 *   85%        1.98/0.75/0.50   1.86/0.65/0.58    1.02/0.81/0.50
 *   90%        2.54/0.95/0.67   2.57/0.75/0.69    1.48/1.15/0.73
 *   93%        2.89/1.16/0.85   2.80/0.78/0.75    1.87/1.47/0.95
 *   96%        3.21/1.52/1.05   2.68/0.75/0.66    2.37/2.06/1.36
 * so the largest stored fraction is 15% with AVX-512, 7% with AVX2 and 4%
 * with portable C (the kernel table's max_density). The worst case at
 * batch 256 with AVX2 or portable C is always the 128x10 output layer
 * (the other two: >= 1.6x at 96%), which stays slower than dense there,
 * as does its batch-256 backward with any set (~36 vs 18 us: transposing
 * x costs more than its 128 weights); microseconds next to the big
 * layers.
 *
 * CONVERSION (mm_sparse_from_dense): with a mask, exactly the unmasked
 * positions are stored, including kept weights that happen to be 0 (they
 * stay trainable, and the pruner counts by mask); without one, the
 * non-zero weights. The structure never changes afterwards: training moves
 * the stored values only, so pruned weights stay zero by construction.
 *
 * THREADS: forward uses no layer-owned scratch (batched kernels allocate
 * per call). save is a reading call but builds the CSR arrays it hands to
 * the writer (which borrows them until commit) into a cache on the layer,
 * under a spinlock, writing only values that changed: concurrent saves of
 * an unchanged model write nothing another one reads. The cache is dropped
 * by the next backward or fused update (exclusive calls). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sparse_layout.h"
#include "model/mmfile.h"
#include "prune/prune_internal.h"

/* Largest input count written with 16-bit column indices. */
#define CSR_MAX_COLS16 65536u

/* The CSR form written to model files, built on demand by save (see
 * sparse_save). */
typedef struct csr_cache {
    float *values;
    void *indices; /* uint16_t when in <= 65536, else uint32_t */
    uint32_t *offsets;
} csr_cache;

typedef struct sparse_layer {
    mm_layer base;
    mm_sp_layout *lay; /* structure, immutable after creation */
    mm_sp_matrix m;    /* lay's view with the values */
    /* parameters and gradients */
    float *values, *gvalues; /* nnz + MM_SP_PAD */
    float *b, *db;
    /* save cache, guarded by save_lock */
    atomic_int save_lock;
    csr_cache csr;
} sparse_layer;


static bool is_sparse(const mm_layer *l) { return l && l->vt == &mm_sparse_kind; }


static void csr_cache_free(csr_cache *c) {
    mm_free_floats(c->values);
    free(c->indices);
    free(c->offsets);
    memset(c, 0, sizeof *c);
}

static void sparse_destroy(mm_layer *layer) {
    sparse_layer *s = (sparse_layer *)layer;
    if (!s) return;
    mm_sp_layout_free(s->lay);
    mm_free_floats(s->values);
    mm_free_floats(s->gvalues);
    mm_free_floats(s->b);
    mm_free_floats(s->db);
    csr_cache_free(&s->csr);
    free(s);
}

/* ---- building the tiled layout from CSR -------------------------------- */

/* Entries in CSR form: row r holds cols[off[r] .. off[r+1]) (strictly
 * increasing) with values vals[...] (NULL: zeros). */
typedef struct csr_view {
    size_t rows, cols, nnz;
    const size_t *off;
    const uint32_t *idx;
    const float *vals;
} csr_view;

/* Allocate a layer with its parameters (values zeroed) but no structure. */
static mm_status sparse_alloc(sparse_layer **out, size_t in, size_t units, size_t nnz,
                              mm_activation act, float slope) {
    *out = NULL;
    sparse_layer *s = calloc(1, sizeof *s);
    if (!s) return mm_oom("sparse layer");
    atomic_init(&s->save_lock, 0);
    s->values = mm_alloc_floats_zero(nnz + MM_SP_PAD);
    s->gvalues = mm_alloc_floats_zero(nnz + MM_SP_PAD);
    s->b = mm_alloc_floats_zero(units);
    s->db = mm_alloc_floats_zero(units);
    if (!s->values || !s->gvalues || !s->b || !s->db) {
        sparse_destroy(&s->base);
        return mm_oom("sparse layer parameters");
    }
    s->base.vt = &mm_sparse_kind;
    s->base.in = in;
    s->base.out = units;
    s->base.act = act;
    s->base.leaky_slope = slope;
    s->base.params[0] = (mm_param){"weight_values", s->values, s->gvalues, nnz, 1, true, NULL};
    s->base.params[1] = (mm_param){"bias", s->b, s->db, units, 1, false, NULL};
    s->base.n_params = 2;
    s->m.rows = units;
    s->m.cols = in;
    s->m.nnz = nnz;
    *out = s;
    return MM_OK;
}

/* Point the kernel view at the layout and the values. */
static void sparse_bind(sparse_layer *s) {
    s->m = s->lay->m;
    s->m.values = s->values;
}

/* A sparse layer with the entries of v (validated by the caller: rows,
 * offsets, increasing columns < cols). */
static mm_status sparse_build(const csr_view *v, mm_activation act, float slope,
                              const float *bias, sparse_layer **out) {
    *out = NULL;
    sparse_layer *s;
    mm_status st = sparse_alloc(&s, v->cols, v->rows, v->nnz, act, slope);
    if (st != MM_OK) return st;
    const mm_sp_csr pattern = {v->rows, v->cols, v->nnz, v->off, v->idx};
    st = mm_sp_layout_build(&pattern, MM_SP_BLOCK, 1, &s->lay);
    size_t *pos = NULL;
    if (st == MM_OK && v->vals) {
        pos = mm_malloc_array(v->nnz ? v->nnz : 1, sizeof *pos);
        st = pos ? mm_sp_layout_csr_order(s->lay, pos) : mm_oom("sparse layer");
        if (st == MM_OK)
            for (size_t k = 0; k < v->nnz; k++) s->values[k] = v->vals[pos[k]];
    }
    free(pos);
    if (st != MM_OK) {
        sparse_destroy(&s->base);
        return st;
    }
    if (bias) memcpy(s->b, bias, v->rows * sizeof *s->b);
    sparse_bind(s);
    *out = s;
    return MM_OK;
}

mm_status mm_sparse_positions(const mm_layer *layer, size_t *pos) {
    if (!is_sparse(layer))
        return mm_error(MM_E_INVALID_ARGUMENT, "not a sparse layer");
    const sparse_layer *s = (const sparse_layer *)layer;
    const size_t in = layer->in;
    MM_SP_FOR_EACH(&s->m, pos[k] = row * in + col);
    return MM_OK;
}

/* Entry k of the values goes to CSR position pos[k] (rows in order,
 * columns increasing: the file's weight_values); the bias is in order. */
static mm_status sparse_file_order(const mm_layer *layer, size_t param, size_t *pos) {
    const sparse_layer *s = (const sparse_layer *)layer;
    if (param != 0) {
        for (size_t j = 0; j < layer->out; j++) pos[j] = j;
        return MM_OK;
    }
    return mm_sp_layout_csr_order(s->lay, pos);
}

size_t mm_sparse_steps(const mm_layer *layer) {
    return is_sparse(layer) ? ((const sparse_layer *)layer)->m.nsteps : 0;
}

/* ---- the vtable ------------------------------------------------------- */

static void sparse_forward(const mm_layer *layer, const mm_kernels *k, const float *const *xs, float *y,
                           size_t n) {
    const float *x = xs[0];
    (void)k;
    const sparse_layer *s = (const sparse_layer *)layer;
    mm_sparse_kernels_get()->forward(&s->m, s->b, x, y, n);
    mm_activation_forward(layer->act, layer->leaky_slope, y, n * layer->out);
}

/* db = column sums of dz (alpha 1, overwrite) or b += alpha * rows of dz. */
static void bias_update(float *db, const float *dz, size_t n, size_t out, float alpha,
                        bool accumulate) {
    for (size_t i = 0; i < n; i++) {
        const float *row = dz + i * out;
        if (i == 0 && !accumulate)
            for (size_t j = 0; j < out; j++) db[j] = alpha * row[j];
        else
            for (size_t j = 0; j < out; j++) db[j] += alpha * row[j];
    }
}

static void sparse_backward(mm_layer *layer, const mm_kernels *k, const float *const *xs, const float *y,
                            float *dy, float *const *dxs, size_t n, bool param_grads) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)k;
    sparse_layer *s = (sparse_layer *)layer;
    const mm_sparse_kernels *sk = mm_sparse_kernels_get();
    /* training: the values will change, drop the file form (exclusive
     * access, so no save is borrowing it) */
    csr_cache_free(&s->csr);
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * layer->out);
    if (dx) sk->backward_x(&s->m, dy, dx, n);
    if (param_grads) {
        bias_update(s->db, dy, n, layer->out, 1.0f, false);
        sk->grad_values(&s->m, dy, x, n, 1.0f, false, s->gvalues);
    }
}

/* values += neg_lr * dLoss/dvalues and b += neg_lr * colsum(delta), from
 * the deltas; the gradient of the values is the same sum as backward's, so
 * this equals backward + plain SGD bit for bit for the values. */
static void sparse_apply_sgd(mm_layer *layer, const mm_kernels *k, const float *x,
                             const float *delta, size_t n, float neg_lr) {
    (void)k;
    sparse_layer *s = (sparse_layer *)layer;
    csr_cache_free(&s->csr);
    mm_sparse_kernels_get()->grad_values(&s->m, delta, x, n, neg_lr, true, s->values);
    bias_update(s->b, delta, n, layer->out, neg_lr, true);
}

/* The bytes the layer really keeps: per stored weight its value and
 * column byte, per step a count, per tile a block number, a step count and
 * two 16-byte lane permutations, slice offsets and the bias (allocation
 * slack not counted). */
static size_t sparse_param_bytes(const mm_layer *layer) {
    const sparse_layer *s = (const sparse_layer *)layer;
    return s->m.nnz * sizeof(float) + mm_sp_layout_bytes(s->lay) + layer->out * sizeof(float);
}

static mm_status sparse_clone(const mm_layer *layer, mm_layer **out) {
    const sparse_layer *src = (const sparse_layer *)layer;
    const mm_sp_matrix *m = &src->m;
    sparse_layer *s;
    mm_status st = sparse_alloc(&s, layer->in, layer->out, m->nnz, layer->act,
                                layer->leaky_slope);
    if (st != MM_OK) return st;
    if ((st = mm_sp_layout_clone(src->lay, &s->lay)) != MM_OK) {
        sparse_destroy(&s->base);
        return st;
    }
    memcpy(s->values, src->values, m->nnz * sizeof *s->values);
    memcpy(s->b, src->b, layer->out * sizeof *s->b);
    sparse_bind(s);
    *out = &s->base;
    return MM_OK;
}

/* ---- conversion from a dense layer ------------------------------------ */

/* CSR arrays of the entries to keep: mask == 1 where the weight has a mask,
 * else value != 0. */
static mm_status dense_to_csr(const mm_param *w, size_t rows, size_t cols, size_t **off_out,
                              uint32_t **idx_out, float **val_out, size_t *nnz_out) {
    size_t nnz = 0;
    const size_t count = rows * cols;
    for (size_t i = 0; i < count; i++)
        nnz += w->mask ? (w->mask[i] != 0) : (w->data[i] != 0.0f);
    size_t *off = mm_malloc_array(rows + 1, sizeof *off);
    uint32_t *idx = mm_malloc_array(nnz ? nnz : 1, sizeof *idx);
    float *val = mm_alloc_floats(nnz);
    if (!off || !idx || !val) {
        free(off);
        free(idx);
        mm_free_floats(val);
        return mm_oom("sparse conversion");
    }
    size_t k = 0;
    for (size_t r = 0; r < rows; r++) {
        off[r] = k;
        for (size_t c = 0; c < cols; c++) {
            const size_t i = r * cols + c;
            if (w->mask ? w->mask[i] != 0 : w->data[i] != 0.0f) {
                idx[k] = (uint32_t)c;
                val[k] = w->data[i];
                k++;
            }
        }
    }
    off[rows] = k;
    *off_out = off;
    *idx_out = idx;
    *val_out = val;
    *nnz_out = nnz;
    return MM_OK;
}

mm_status mm_sparse_from_dense(const mm_layer *dense, mm_layer **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!dense) return mm_null_arg("dense");
    if (!mm_layer_has(dense, MM_CAP_DENSE_WEIGHTS) || !mm_layer_holds_matrix(dense))
        return mm_error(MM_E_UNSUPPORTED, "only dense layers convert to the sparse kind, not %s",
                        dense->vt->kind);
    if (dense->in > UINT32_MAX)
        return mm_error(MM_E_OUT_OF_RANGE, "dense layer with %zu inputs is too wide", dense->in);
    size_t *off = NULL, nnz = 0;
    uint32_t *idx = NULL;
    float *val = NULL;
    mm_status st = dense_to_csr(&dense->params[0], dense->out, dense->in, &off, &idx, &val, &nnz);
    if (st != MM_OK) return st;
    const csr_view v = {dense->out, dense->in, nnz, off, idx, val};
    sparse_layer *s;
    st = sparse_build(&v, dense->act, dense->leaky_slope, dense->params[1].data, &s);
    free(off);
    free(idx);
    mm_free_floats(val);
    if (st != MM_OK) return st;
    *out = &s->base;
    return MM_OK;
}

/* ---- model files ------------------------------------------------------ */

#define NAME_CAP 64

static void tensor_name(char buf[NAME_CAP], size_t index, const char *what) {
    snprintf(buf, NAME_CAP, "layers.%zu.%s", index, what);
}

static void save_lock(sparse_layer *s) {
    int expected = 0;
    while (!atomic_compare_exchange_weak_explicit(&s->save_lock, &expected, 1,
                                                  memory_order_acquire, memory_order_relaxed))
        expected = 0;
}

static void save_unlock(sparse_layer *s) {
    atomic_store_explicit(&s->save_lock, 0, memory_order_release);
}

/* Bring the CSR form up to date: the structure is built once, the values
 * are rewritten only where they differ, so that saves running at the same
 * time (both only reading the model) never write what another one reads. */
static mm_status csr_refresh(sparse_layer *s) {
    const mm_sp_matrix *m = &s->m;
    const size_t rows = m->rows, nnz = m->nnz;
    const bool wide = m->cols > CSR_MAX_COLS16;
    csr_cache *c = &s->csr;
    if (!c->offsets) {
        uint32_t *off = calloc(rows + 1, sizeof *off);
        void *idx = malloc((nnz ? nnz : 1) * (wide ? sizeof(uint32_t) : sizeof(uint16_t)));
        float *val = mm_alloc_floats_zero(nnz);
        size_t *cursor = mm_malloc_array(rows + 1, sizeof *cursor);
        if (!off || !idx || !val || !cursor) {
            free(off);
            free(idx);
            mm_free_floats(val);
            free(cursor);
            return mm_oom("sparse layer file form");
        }
        MM_SP_FOR_EACH(m, off[row + 1]++);
        for (size_t r = 0; r < rows; r++) off[r + 1] += off[r];
        for (size_t r = 0; r <= rows; r++) cursor[r] = off[r];
        /* a row's entries come in increasing column order */
        MM_SP_FOR_EACH(m, {
            const size_t q = cursor[row]++;
            if (wide) ((uint32_t *)idx)[q] = (uint32_t)col;
            else ((uint16_t *)idx)[q] = (uint16_t)col;
            val[q] = m->values[k];
        });
        free(cursor);
        c->offsets = off;
        c->indices = idx;
        c->values = val;
        return MM_OK;
    }
    /* values only; the position of entry k is its row's cursor */
    size_t *cursor = mm_malloc_array(rows + 1, sizeof *cursor);
    if (!cursor) return mm_oom("sparse layer file form");
    for (size_t r = 0; r <= rows; r++) cursor[r] = c->offsets[r];
    MM_SP_FOR_EACH(m, {
        const size_t q = cursor[row]++;
        if (memcmp(&c->values[q], &m->values[k], sizeof(float)) != 0) c->values[q] = m->values[k];
    });
    free(cursor);
    return MM_OK;
}

/* Entry field "nnz"; tensors layers.<i>.weight_values F32 [nnz],
 * weight_indices U16 (in <= 65536) or U32 [nnz], weight_offsets U32
 * [out + 1] and bias F32 [out]: plain CSR, whatever the layout in memory
 * (doc/FORMAT.md). The CSR arrays stay with the layer until its next
 * training step or its end, since the writer borrows them until commit. */
static mm_status sparse_save(const mm_layer *layer, size_t index, json_t *entry,
                             mm_file_writer *w) {
    /* the cache is the only thing save writes; see csr_refresh */
    sparse_layer *s = (sparse_layer *)(uintptr_t)layer;
    const size_t nnz = s->m.nnz, out = layer->out;
    for (size_t k = 0; k < nnz; k++)
        if (!isfinite(s->values[k]))
            return mm_error(MM_E_NUMERIC,
                            "layer %zu weight_values element %zu is not finite; refusing to "
                            "save a model that could not be loaded",
                            index, k);
    for (size_t j = 0; j < out; j++)
        if (!isfinite(s->b[j]))
            return mm_error(MM_E_NUMERIC, "layer %zu bias element %zu is not finite", index, j);
    if (json_object_set_new(entry, "nnz", json_integer((json_int_t)nnz)) != 0)
        return mm_oom("architecture entry");
    save_lock(s);
    mm_status st = csr_refresh(s);
    save_unlock(s);
    if (st != MM_OK) return st;
    char name[NAME_CAP];
    const uint64_t shape_nnz[1] = {nnz}, shape_off[1] = {(uint64_t)out + 1}, shape_b[1] = {out};
    tensor_name(name, index, "weight_values");
    st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, s->csr.values, shape_nnz, 1);
    if (st == MM_OK) {
        tensor_name(name, index, "weight_indices");
        st = mm_file_writer_add_tensor(
            w, name, layer->in > CSR_MAX_COLS16 ? MM_DTYPE_U32 : MM_DTYPE_U16,
            s->csr.indices, shape_nnz, 1);
    }
    if (st == MM_OK) {
        tensor_name(name, index, "weight_offsets");
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_U32, s->csr.offsets, shape_off, 1);
    }
    if (st == MM_OK) {
        tensor_name(name, index, "bias");
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, s->b, shape_b, 1);
    }
    return st;
}

static mm_status sparse_load(const mm_file *f, size_t index, const json_t *entry, size_t in,
                             size_t out, mm_activation act, float leaky_slope, mm_layer **res) {
    *res = NULL;
    char nb[NAME_CAP];
    tensor_name(nb, index, "bias");
    /* the bias's shape first; mm_file_read_csr checks its own before
     * allocating */
    mm_status st = mm_file_check_vector(f, nb, MM_DTYPE_F32, MM_DTYPE_F32, out, true, NULL, NULL);
    if (st != MM_OK) return st;
    mm_file_csr c = {0};
    size_t *off = NULL;
    float *bias = NULL;
    sparse_layer *s = NULL;
    if ((st = mm_file_read_csr(f, index, in, out, &c)) != MM_OK) goto done;
    const size_t nnz = c.nnz;
    const json_t *jn = json_object_get(entry, "nnz");
    if (!jn || !json_is_integer(jn) || json_integer_value(jn) < 0 ||
        (uint64_t)json_integer_value(jn) != (uint64_t)nnz) {
        st = mm_error(MM_E_FORMAT,
                      "architecture: layer %zu: \"nnz\" must be the number of stored weights "
                      "(%zu)",
                      index, nnz);
        goto done;
    }
    off = mm_malloc_array(out + 1, sizeof *off);
    bias = mm_alloc_floats(out);
    if (!off || !bias) {
        st = mm_oom("sparse layer");
        goto done;
    }
    for (size_t r = 0; r <= out; r++) off[r] = c.offsets[r];
    if ((st = mm_file_read_f32(f, nb, out, 1, bias)) != MM_OK) goto done;
    for (size_t j = 0; j < out; j++)
        if (!isfinite(bias[j])) {
            st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is %s", nb, j,
                          isnan(bias[j]) ? "NaN" : "infinite");
            goto done;
        }
    const csr_view v = {out, in, nnz, off, c.indices, c.values};
    st = sparse_build(&v, act, leaky_slope, bias, &s);
done:
    mm_file_csr_free(&c);
    free(off);
    mm_free_floats(bias);
    if (st != MM_OK) return st;
    *res = &s->base;
    return MM_OK;
}


const mm_layer_vtable mm_sparse_kind = {
    .kind = "sparse",
    .caps = MM_CAP_LAYER | MM_CAP_STORED_WEIGHTS,
    .load = sparse_load,
    .positions = mm_sparse_positions,
    .destroy = sparse_destroy,
    .clone = sparse_clone,
    .forward = sparse_forward,
    .backward = sparse_backward,
    .apply_sgd = sparse_apply_sgd,
    .param_bytes = sparse_param_bytes,
    .save = sparse_save,
    .file_order = sparse_file_order,
};

/* ---- policy ----------------------------------------------------------- */

/* The threshold belongs to the kernel set this process uses (the top of
 * this file has the measurements): with AVX-512 at most 15% of the weights
 * stored (85% sparsity), with AVX2 7%, portable C 4%. */
bool mm_sparse_worthwhile(size_t in, size_t out, size_t nnz) {
    size_t count;
    if (!mm_mul_ok(in, out, &count) || count == 0 || nnz > count) return false;
    return (double)nnz <= mm_sparse_kernels_get()->max_density * (double)count;
}

/* ---- neuron order (finalize) -------------------------------------------- */

/* A tile costs its step count (the most entries any of its 16 rows has in
 * the block) plus a fixed overhead (window loads, the lane permutation, the
 * loop exit): about this many steps' worth on the development machine. */
#define TILE_COST 3
/* Budget of the local search, in (row, block) count visits. */
#define GROUP_WORK 40000000u

/* Cost of the rows at order[0..n) sharing a slice. */
static size_t slice_cost(const uint8_t *cnt, size_t nb, const size_t *order, size_t n) {
    size_t cost = 0;
    for (size_t b = 0; b < nb; b++) {
        unsigned mx = 0;
        for (size_t j = 0; j < n; j++) {
            const unsigned c = cnt[order[j] * nb + b];
            mx = c > mx ? c : mx;
        }
        cost += mx ? mx + TILE_COST : 0;
    }
    return cost;
}

static size_t total_cost(const uint8_t *cnt, size_t nb, const size_t *order, size_t rows,
                         size_t *per_slice) {
    size_t total = 0;
    for (size_t r0 = 0; r0 < rows; r0 += MM_SP_SLICE) {
        const size_t n = rows - r0 < MM_SP_SLICE ? rows - r0 : MM_SP_SLICE;
        const size_t c = slice_cost(cnt, nb, order + r0, n);
        if (per_slice) per_slice[r0 / MM_SP_SLICE] = c;
        total += c;
    }
    return total;
}

typedef struct row_total {
    size_t total, row;
} row_total;

static int by_total_desc(const void *a, const void *b) {
    const row_total *x = a, *y = b;
    if (x->total != y->total) return x->total > y->total ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Rows sorted by entry count, then a local search swapping rows between
 * slices while the cost (steps plus tile overhead) does not grow. On the
 * benchmark's 784x256 layer at 92% this takes 3011 steps to ~2250. The
 * search is seeded with a constant (integer arithmetic only): the same
 * pattern gives the same order on every machine. */
mm_status mm_sparse_group_rows(const mm_layer *dense, const size_t *rows, size_t nrows,
                               const size_t *cols, size_t ncols, size_t **order_out) {
    *order_out = NULL;
    const mm_param *w = &dense->params[0];
    const size_t in = dense->in, nb = (ncols + MM_SP_BLOCK - 1) / MM_SP_BLOCK;
    size_t cells;
    if (nrows <= MM_SP_SLICE || !mm_mul_ok(nrows, nb, &cells) || cells > GROUP_WORK)
        return MM_OK;
    const size_t nslices = (nrows + MM_SP_SLICE - 1) / MM_SP_SLICE;
    uint8_t *cnt = calloc(cells, 1);
    row_total *totals = mm_calloc_array(nrows, sizeof *totals);
    size_t *order = mm_malloc_array(nrows, sizeof *order);
    size_t *cost = mm_malloc_array(nslices, sizeof *cost);
    if (!cnt || !totals || !order || !cost) {
        free(cnt);
        free(totals);
        free(order);
        free(cost);
        return mm_oom("neuron order");
    }
    for (size_t i = 0; i < nrows; i++) {
        const size_t r = rows ? rows[i] : i;
        for (size_t c = 0; c < ncols; c++) {
            const size_t e = r * in + (cols ? cols[c] : c);
            if (w->mask ? w->mask[e] != 0 : w->data[e] != 0.0f) {
                cnt[i * nb + c / MM_SP_BLOCK]++;
                totals[i].total++;
            }
        }
        totals[i].row = i;
        order[i] = i;
    }
    const size_t before = total_cost(cnt, nb, order, nrows, NULL);
    qsort(totals, nrows, sizeof *totals, by_total_desc);
    for (size_t i = 0; i < nrows; i++) order[i] = totals[i].row;
    size_t after = total_cost(cnt, nb, order, nrows, cost);
    mm_rng rng;
    mm_rng_seed(&rng, 0x5eed);
    const size_t budget = GROUP_WORK / (2 * MM_SP_SLICE * nb);
    const size_t iters = budget < 64 * nrows ? budget : 64 * nrows;
    for (size_t it = 0; it < iters; it++) {
        const size_t a = (size_t)mm_rng_below(&rng, nrows), b = (size_t)mm_rng_below(&rng, nrows);
        const size_t sa = a / MM_SP_SLICE, sb = b / MM_SP_SLICE;
        if (sa == sb) continue;
        const size_t t = order[a];
        order[a] = order[b];
        order[b] = t;
        const size_t na = nrows - sa * MM_SP_SLICE, nbr = nrows - sb * MM_SP_SLICE;
        const size_t ca = slice_cost(cnt, nb, order + sa * MM_SP_SLICE,
                                     na < MM_SP_SLICE ? na : MM_SP_SLICE);
        const size_t cb = slice_cost(cnt, nb, order + sb * MM_SP_SLICE,
                                     nbr < MM_SP_SLICE ? nbr : MM_SP_SLICE);
        if (ca + cb <= cost[sa] + cost[sb]) {
            after = after - cost[sa] - cost[sb] + ca + cb;
            cost[sa] = ca;
            cost[sb] = cb;
        } else {
            order[b] = order[a];
            order[a] = t;
        }
    }
    free(cnt);
    free(totals);
    free(cost);
    if (after >= before) {
        free(order);
        return MM_OK;
    }
    *order_out = order;
    return MM_OK;
}
