/* The int8 sparse layer kind ("sparse_int8"): a pruned layer (kind
 * "sparse") quantized, for models that are both pruned and quantized
 * ("Deep Compression"). The quantizer builds it from a sparse layer under
 * every int8 scheme; the contract is quant/quant_internal.h, the file form
 * doc/FORMAT.md (`sparse_int8`).
 *
 * Weights. Symmetric int8 with one scale per output row (per channel,
 * default) or one for the layer: s = max|w| / 127 over the row's stored
 * weights, q = rne(w / s) in [-127, 127]; pruned weights stay exact zeros
 * (they are not stored).
 *
 * Schemes, as for dense int8 layers:
 *  - WEIGHT_ONLY: float activations, y = act(s_r sum_k q_k x[col_k] + b).
 *    The float kind's tiled layout (kernels/sparse_layout.h) with one
 *    16-bit word (q << 8) | column-in-block per stored weight: the kernels
 *    widen it once and use it both as the table index and, shifted, as the
 *    weight, so a step costs what a float step costs, from 2 bytes instead
 *    of 5.
 *  - DYNAMIC (per-sample asymmetric uint8 range at run time) and STATIC
 *    (calibrated range): the grouped layout (blocks of 64 columns, 4
 *    weights of a row per lane and step) and exact int32 sums: per step
 *    one vpermb gathers 64 activation bytes from the tile's window and one
 *    vpdpbusd adds 64 products, 4 times the work of a float step per
 *    shuffle (AVX-512 VNNI + VBMI; portable C elsewhere, with the same
 *    sums). acc - zx * rowsum(q), then the dense int8 layers' epilogue.
 *    A sample with NaN or Inf inputs gets a NaN output row.
 *  Measurements: benchmarks/RESULTS.md, "Pruned and quantized".
 *
 * Files: CSR with the columns as gaps, not indices (one byte per stored
 * weight at 90% sparsity, against 2 for U16 indices): the demo's pruned
 * model is ~6% of its fp32 file. The layout is rebuilt on load.
 *
 * Master weights (keep_master): float copies of the stored weights in the
 * float layout's order are the layer's trainable "weight_values", as in
 * the float kind; forward uses the int8 weights, backward the master
 * (straight-through estimator), after_update re-quantizes. Without a
 * master the layer is inference-only (n_params = 0); backward still
 * propagates dx through the dequantized weights so that layers below it
 * can train.
 *
 * Concurrency: forward reads only (scratch on the stack or malloc'ed per
 * call). Save and mm_qlayer_int8_describe fill caches (the file form; the
 * dense int8 matrix for ONNX) under a spin lock; exclusive calls
 * (backward, updates) drop them. */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sparse_layout.h"
#include "model/mmfile.h"
#include "quant/quant_internal.h"

#define QS_NAME_CAP 96
/* Stack scratch of the int8-activation forward (bytes), samples per chunk. */
#define QS_STACK_BYTES 16384u
#define QS_CHUNK 64u

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
    mm_quant_scheme scheme;
    bool per_channel, act_symmetric;
    float in_range[2]; /* static: the calibrated input range, */
    float x_scale;     /*   its scale and zero point */
    int32_t x_zp;
    /* float layout: the weight-only forward (qw) and the master's training */
    mm_sp_layout *lay;
    mm_sp_matrix m; /* lay's view with qw, qscale and the master as values */
    int16_t *qw;    /* weight-only: nnz + MM_SP_PAD words */
    /* grouped layout: the int8-activation forward */
    mm_sp_layout *glay;
    int8_t *q8;       /* nslots + MM_SP_PAD */
    int32_t *rowsum;  /* out: sum of a row's q */
    uint32_t *g_from_l; /* with both layouts: the float-layout entry of each slot */
    float *scale;     /* out */
    float *b, *db;    /* bias (a parameter with a master) and its gradient */
    float *master, *gmaster; /* nnz + MM_SP_PAD, float-layout order; NULL without */
    atomic_int cache_lock;
    qs_file_form cache;
} qsparse;


bool mm_layer_is_qsparse(const mm_layer *layer) { return layer && layer->vt == &mm_qsparse_kind; }

static bool int8_acts(mm_quant_scheme s) {
    return s == MM_QUANT_INT8_DYNAMIC || s == MM_QUANT_INT8_STATIC;
}

static const char *scheme_text(mm_quant_scheme s) {
    switch (s) {
    case MM_QUANT_INT8_WEIGHT_ONLY: return "weight_only";
    case MM_QUANT_INT8_DYNAMIC: return "dynamic";
    case MM_QUANT_INT8_STATIC: return "static";
    default: return NULL;
    }
}

/* The layout the master lives on when there is one, else the one the int8
 * weights live on: the order new weights are given in (fill_from_csr). */
static const mm_sp_layout *any_layout(const qsparse *s) { return s->lay ? s->lay : s->glay; }

/* The layout the int8 weights live on. */
static const mm_sp_layout *qlayout(const qsparse *s) { return s->qw ? s->lay : s->glay; }

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
    mm_sp_layout_free(s->glay);
    free(s->qw);
    free(s->q8);
    free(s->rowsum);
    free(s->g_from_l);
    mm_free_floats(s->scale);
    mm_free_floats(s->b);
    mm_free_floats(s->db);
    mm_free_floats(s->master);
    mm_free_floats(s->gmaster);
    cache_free(&s->cache);
    free(s);
}

/* What a layer is made of, before its weights. */
typedef struct qs_spec {
    size_t in, out;
    mm_activation act;
    float slope;
    mm_quant_scheme scheme;
    bool per_channel, act_symmetric, master;
    float in_lo, in_hi; /* static */
} qs_spec;

/* CSR order of every entry of a layout (pos: nslots entries, padding
 * slots left alone). */
static size_t *csr_order_of(const mm_sp_layout *lay, mm_status *st) {
    size_t *pos = mm_malloc_array(lay->m.nslots ? lay->m.nslots : 1, sizeof *pos);
    if (!pos) {
        *st = mm_oom("int8 sparse layer");
        return NULL;
    }
    *st = mm_sp_layout_csr_order(lay, pos);
    if (*st != MM_OK) {
        free(pos);
        return NULL;
    }
    return pos;
}

/* A layer of pattern `csr` with zeroed weights: the layouts and arrays its
 * scheme and master need. */
static mm_status qs_alloc(qsparse **out, const qs_spec *sp, const mm_sp_csr *csr) {
    *out = NULL;
    if (!scheme_text(sp->scheme))
        return mm_error(MM_E_INVALID_ARGUMENT, "scheme %d is not an int8 scheme", (int)sp->scheme);
    qsparse *s = calloc(1, sizeof *s);
    if (!s) return mm_oom("int8 sparse layer");
    atomic_init(&s->cache_lock, 0);
    s->base.vt = &mm_qsparse_kind;
    s->base.in = sp->in;
    s->base.out = sp->out;
    s->base.act = sp->act;
    s->base.leaky_slope = sp->slope;
    s->scheme = sp->scheme;
    s->per_channel = sp->per_channel;
    s->act_symmetric = sp->act_symmetric;
    const bool grouped = int8_acts(sp->scheme), flat = !grouped || sp->master;
    mm_status st = MM_OK;
    if (sp->scheme == MM_QUANT_INT8_STATIC) {
        if (!isfinite(sp->in_lo) || !isfinite(sp->in_hi) || sp->in_lo > sp->in_hi)
            st = mm_error(MM_E_INVALID_ARGUMENT, "static quantization: input range [%g, %g] is "
                          "not a finite range (lo <= hi)", (double)sp->in_lo, (double)sp->in_hi);
        else
            st = mm_int8_choose_params(sp->in_lo, sp->in_hi, sp->act_symmetric, &s->x_scale,
                                       &s->x_zp);
        s->in_range[0] = sp->in_lo;
        s->in_range[1] = sp->in_hi;
    }
    if (st == MM_OK && flat) st = mm_sp_layout_build(csr, MM_SP_BLOCK, 1, &s->lay);
    if (st == MM_OK && grouped)
        st = mm_sp_layout_build(csr, MM_SP_BLOCK_I8, MM_SP_GROUP_I8, &s->glay);
    const size_t nnz = csr->nnz, rows = sp->out;
    if (st == MM_OK) {
        s->scale = mm_alloc_floats_zero(rows);
        s->b = mm_alloc_floats_zero(rows);
        bool ok = s->scale && s->b;
        if (!grouped) {
            s->qw = calloc(nnz + MM_SP_PAD, sizeof *s->qw);
            ok = ok && s->qw;
        } else {
            s->q8 = calloc(s->glay->m.nslots + MM_SP_PAD, 1);
            s->rowsum = calloc(rows, sizeof *s->rowsum);
            ok = ok && s->q8 && s->rowsum;
        }
        if (ok && sp->master) {
            s->master = mm_alloc_floats_zero(nnz + MM_SP_PAD);
            s->gmaster = mm_alloc_floats_zero(nnz + MM_SP_PAD);
            s->db = mm_alloc_floats_zero(rows);
            ok = s->master && s->gmaster && s->db;
        }
        if (!ok) st = mm_oom("int8 sparse layer weights");
    }
    if (st == MM_OK && grouped && sp->master) {
        /* slot -> float-layout entry, through the CSR order of both
         * (nnz <= UINT32_MAX: the layout builder checked) */
        uint32_t *l_of_csr = mm_malloc_array(nnz ? nnz : 1, sizeof *l_of_csr);
        size_t *pl = l_of_csr ? csr_order_of(s->lay, &st) : NULL;
        if (pl) {
            for (size_t k = 0; k < nnz; k++) l_of_csr[pl[k]] = (uint32_t)k;
            free(pl);
        }
        size_t *pg = pl ? csr_order_of(s->glay, &st) : NULL;
        s->g_from_l = pg ? mm_malloc_array(s->glay->m.nslots + 1, sizeof *s->g_from_l) : NULL;
        if (st == MM_OK && !s->g_from_l) st = mm_oom("int8 sparse layer");
        if (st == MM_OK) {
            const mm_sp_matrix *gm = &s->glay->m;
            for (size_t k = 0; k < gm->nslots; k++) s->g_from_l[k] = UINT32_MAX;
            MM_SP_FOR_EACH(gm, s->g_from_l[k] = l_of_csr[pg[k]]);
        }
        free(pg);
        free(l_of_csr);
    }
    if (st != MM_OK) {
        qs_destroy(&s->base);
        return st;
    }
    if (sp->master) {
        s->base.params[0] = (mm_param){"weight_values", s->master, s->gmaster, nnz, 1, true, NULL};
        s->base.params[1] = (mm_param){"bias", s->b, s->db, rows, 1, false, NULL};
        s->base.n_params = 2;
    }
    if (s->lay) {
        s->m = s->lay->m;
        s->m.qw = s->qw;
        s->m.qscale = s->scale;
        s->m.values = s->master;
    }
    *out = s;
    return MM_OK;
}

/* ---- quantization --------------------------------------------------------- */

/* max|w| / 127 as a scale that keeps every |w / s| <= 127.5; 1 for zeros. */
static float symmetric_scale(float maxabs) {
    float sf = (float)((double)maxabs / 127.0);
    if (!(sf > 0.0f)) sf = maxabs > 0.0f ? FLT_TRUE_MIN : 1.0f;
    while ((double)sf * 127.5 < (double)maxabs) sf = nextafterf(sf, INFINITY);
    return sf;
}

static int quantize_one(float w, float scale) {
    const float q = nearbyintf(w / scale);
    if (q != q) return 0; /* NaN (never from finite weights): no UB in the cast */
    return q < -127.0f ? -127 : q > 127.0f ? 127 : (int)q;
}

/* Row scales from the weights w of `lay` (storage order). */
static void choose_scales(qsparse *s, const mm_sp_layout *lay, const float *w) {
    const size_t rows = s->base.out;
    for (size_t r = 0; r < rows; r++) s->scale[r] = 0.0f;
    MM_SP_FOR_EACH(&lay->m, {
        const float a = fabsf(w[k]);
        if (a > s->scale[row]) s->scale[row] = a;
    });
    if (!s->per_channel) {
        float mx = 0.0f;
        for (size_t r = 0; r < rows; r++) mx = s->scale[r] > mx ? s->scale[r] : mx;
        for (size_t r = 0; r < rows; r++) s->scale[r] = mx;
    }
    for (size_t r = 0; r < rows; r++) s->scale[r] = symmetric_scale(s->scale[r]);
}

/* The grouped weights' row sums (zero-point correction). */
static void sum_rows(qsparse *s) {
    memset(s->rowsum, 0, s->base.out * sizeof *s->rowsum);
    MM_SP_FOR_EACH(&s->glay->m, s->rowsum[row] += s->q8[k]);
}

/* Quantize float weights v given in the order of `src` (one of the
 * layer's layouts; with both, `src` is the float one and g_from_l maps). */
static void quantize_from(qsparse *s, const mm_sp_layout *src, const float *v) {
    choose_scales(s, src, v);
    if (s->qw) {
        const mm_sp_matrix *m = &s->lay->m;
        MM_SP_FOR_EACH(m, s->qw[k] = mm_sp_qword(quantize_one(v[k], s->scale[row]), m->lcol[k]));
    }
    if (s->q8) {
        const mm_sp_matrix *g = &s->glay->m;
        if (src == s->glay) MM_SP_FOR_EACH(g, s->q8[k] = (int8_t)quantize_one(v[k], s->scale[row]));
        else MM_SP_FOR_EACH(g, s->q8[k] = (int8_t)quantize_one(v[s->g_from_l[k]], s->scale[row]));
        sum_rows(s);
    }
}

/* The int8 weight of entry k of qlayout(s). */
static int weight_q(const qsparse *s, size_t k) {
    return s->qw ? mm_sp_qword_weight(s->qw[k]) : s->q8[k];
}

/* Fill a new layer's weights from float values in CSR order (v_csr) or its
 * int8 weights from int8 values in CSR order (q_csr; scales already set),
 * and its master from m_csr (CSR order) when it keeps one. */
static mm_status fill_from_csr(qsparse *s, const float *v_csr, const int8_t *q_csr,
                               const float *m_csr) {
    mm_status st = MM_OK;
    const mm_sp_layout *it = any_layout(s);
    size_t *pos = csr_order_of(it, &st);
    if (!pos) return st;
    if (v_csr) {
        /* the weights in the iteration layout's order, then quantized */
        float *v = s->master ? s->master : mm_alloc_floats(it->m.nslots + MM_SP_PAD);
        if (!v) {
            free(pos);
            return mm_oom("int8 sparse layer");
        }
        MM_SP_FOR_EACH(&it->m, v[k] = v_csr[pos[k]]);
        quantize_from(s, it, v);
        if (v != s->master) mm_free_floats(v);
    } else {
        if (s->master) MM_SP_FOR_EACH(&it->m, s->master[k] = m_csr[pos[k]]);
        if (s->qw)
            MM_SP_FOR_EACH(&s->lay->m, s->qw[k] = mm_sp_qword(q_csr[pos[k]], s->lay->m.lcol[k]));
        if (s->q8) {
            size_t *pg = it == s->glay ? pos : csr_order_of(s->glay, &st);
            if (pg) MM_SP_FOR_EACH(&s->glay->m, s->q8[k] = q_csr[pg[k]]);
            if (pg && pg != pos) free(pg);
            if (st == MM_OK) sum_rows(s);
        }
    }
    free(pos);
    return st;
}

/* The dequantized weight of entry k (row `row`) of qlayout(s). */
static float dequant(const qsparse *s, size_t k, size_t row) {
    return s->scale[row] * (float)weight_q(s, k);
}

mm_status mm_qsparse_from_sparse(const mm_layer *sparse, const mm_qlayer_config *cfg,
                                 mm_layer **out) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!sparse || !cfg) return mm_null_arg(!sparse ? "sparse" : "cfg");
    if (!mm_layer_has(sparse, MM_CAP_STORED_WEIGHTS) || mm_layer_has(sparse, MM_CAP_QUANTIZED) ||
        sparse->n_params < 2)
        return mm_error(MM_E_INVALID_ARGUMENT, "a %s layer is not a sparse layer",
                        sparse->vt->kind);
    const mm_param *pv = &sparse->params[0], *pb = &sparse->params[1];
    const size_t nnz = mm_param_count(pv), rows = sparse->out, cols = sparse->in;
    if (cols > MM_INT8_MAX_IN)
        return mm_error(MM_E_UNSUPPORTED, "int8 layers take at most %u inputs, this one has %zu",
                        MM_INT8_MAX_IN, cols);
    for (int j = 0; j < 2; j++) {
        const mm_param *p = &sparse->params[j];
        for (size_t i = 0; i < mm_param_count(p); i++)
            if (!isfinite(p->data[i]))
                return mm_error(MM_E_NUMERIC, "%s[%zu] is %g: cannot quantize NaN or infinity",
                                p->name, i, (double)p->data[i]);
    }
    /* the pattern, from the dense positions of the stored weights: one
     * row's positions ascend in storage order, so a stable placement by
     * row is CSR */
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    size_t *off = calloc(rows + 1, sizeof *off);
    size_t *fill = mm_malloc_array(rows + 1, sizeof *fill);
    uint32_t *idx = mm_malloc_array(nnz ? nnz : 1, sizeof *idx);
    float *csr_vals = mm_alloc_floats(nnz + MM_SP_PAD);
    qsparse *s = NULL;
    mm_status st = pos && off && fill && idx && csr_vals ? sparse->vt->positions(sparse, pos)
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
        const qs_spec spec = {cols, rows, sparse->act, sparse->leaky_slope, cfg->scheme,
                              cfg->per_channel, cfg->act_symmetric, cfg->keep_master,
                              cfg->in_lo, cfg->in_hi};
        st = qs_alloc(&s, &spec, &pattern);
    }
    if (st == MM_OK) st = fill_from_csr(s, csr_vals, NULL, NULL);
    if (st == MM_OK) memcpy(s->b, pb->data, rows * sizeof *s->b);
    free(fill);
    free(pos);
    free(off);
    free(idx);
    mm_free_floats(csr_vals);
    if (st != MM_OK) {
        if (s) qs_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return MM_OK;
}

/* ---- forward ------------------------------------------------------------ */

static size_t align64(size_t b) { return (b + 63u) & ~(size_t)63u; }

/* Bytes of a row of quantized activations: the columns rounded up to the
 * window, plus the window a last block may read past them. */
static size_t xq_stride(size_t cols) { return align64(cols) + MM_SP_BLOCK_I8; }

static size_t scratch_bytes(size_t r, size_t cols, size_t rows) {
    return r * xq_stride(cols) + align64(r * rows * sizeof(int32_t)) + 2 * align64(r * 4) +
           align64(r) + 64;
}

/* r samples through the integer path. */
static void int8_chunk(const qsparse *s, const float *x, float *y, size_t r, unsigned char *buf) {
    const size_t in = s->base.in, out = s->base.out, stride = xq_stride(in);
    unsigned char *p = (unsigned char *)(((uintptr_t)buf + 63u) & ~(uintptr_t)63u);
    uint8_t *xq = p;
    p += r * stride;
    int32_t *acc = (int32_t *)(void *)p;
    p += align64(r * out * sizeof(int32_t));
    float *xs = (float *)(void *)p;
    p += align64(r * 4);
    int32_t *xz = (int32_t *)(void *)p;
    p += align64(r * 4);
    uint8_t *bad = p;
    for (size_t i = 0; i < r; i++) {
        /* the quantizers report NaN and Inf: no scan of our own */
        uint8_t *row = xq + i * stride;
        const float *xi = x + i * in;
        if (s->scheme == MM_QUANT_INT8_DYNAMIC) {
            bad[i] = mm_int8_quantize_dynamic(xi, 1, in, true, row, &xs[i], &xz[i]) != MM_OK;
        } else {
            bad[i] = mm_int8_quantize_rows(xi, 1, in, s->x_scale, s->x_zp, row) != MM_OK;
            xs[i] = s->x_scale;
            xz[i] = s->x_zp;
        }
        if (bad[i]) { /* NaN out below; the sums only need defined bytes */
            memset(row, 0, in);
            xs[i] = 1.0f;
            xz[i] = 0;
        }
        memset(row + in, 0, stride - in); /* the last window's tail */
    }
    mm_sparse_kernels_get()->dot_u8s8(&s->glay->m, s->q8, xq, stride, r, acc);
    /* acc = sum (xq - zx) q: exact, |terms| <= 255 * 127 * 65536 < 2^31 */
    for (size_t i = 0; i < r; i++)
        for (size_t o = 0; o < out; o++) acc[i * out + o] -= xz[i] * s->rowsum[o];
    const mm_int8_epilogue e = {xs, r, s->scale, s->b, s->base.act, s->base.leaky_slope};
    (void)mm_int8_dequant_bias_act(acc, r, out, &e, y);
    for (size_t i = 0; i < r; i++)
        if (bad[i])
            for (size_t o = 0; o < out; o++) y[i * out + o] = NAN;
}

static void int8_forward(const qsparse *s, const float *x, float *y, size_t n) {
    const size_t in = s->base.in, out = s->base.out;
    _Alignas(64) unsigned char stack[QS_STACK_BYTES];
    size_t rows = n < QS_CHUNK ? n : QS_CHUNK;
    while (rows > 1 && scratch_bytes(rows, in, out) > sizeof stack && n <= 4) rows--;
    unsigned char *buf = stack, *heap = NULL;
    if (scratch_bytes(rows, in, out) > sizeof stack) {
        heap = malloc(scratch_bytes(rows, in, out));
        if (heap) {
            buf = heap;
        } else if (scratch_bytes(1, in, out) <= sizeof stack) {
            rows = 1; /* slower, but right */
        } else { /* forward cannot fail: the result says it went wrong */
            for (size_t i = 0; i < n * out; i++) y[i] = NAN;
            return;
        }
    }
    for (size_t s0 = 0; s0 < n; s0 += rows) {
        const size_t r = n - s0 < rows ? n - s0 : rows;
        int8_chunk(s, x + s0 * in, y + s0 * out, r, buf);
    }
    free(heap);
}

static void qs_forward(const mm_layer *layer, const mm_kernels *k, const float *const *xs, float *y,
                       size_t n) {
    const float *x = xs[0];
    (void)k;
    const qsparse *s = (const qsparse *)layer;
    if (n == 0) return;
    if (s->q8) {
        int8_forward(s, x, y, n); /* the epilogue applies the activation */
        return;
    }
    mm_sparse_kernels_get()->forward_q8(&s->m, s->b, x, y, n);
    mm_activation_forward(layer->act, layer->leaky_slope, y, n * layer->out);
}

/* ---- training ------------------------------------------------------------ */

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
    const mm_sp_matrix *m = &qlayout(s)->m;
    const size_t rows = m->rows, cols = m->cols;
    memset(dx, 0, n * cols * sizeof *dx);
    for (size_t i = 0; i < n; i++) {
        const float *d = dz + i * rows;
        float *o = dx + i * cols;
        MM_SP_FOR_EACH(m, o[col] += dequant(s, k, row) * d[row]);
    }
}

static void qs_backward(mm_layer *layer, const mm_kernels *k, const float *const *xs, const float *y,
                        float *dy, float *const *dxs, size_t n, bool param_grads) {
    const float *x = xs[0];
    float *dx = dxs[0];
    (void)k;
    qsparse *s = (qsparse *)layer;
    cache_free(&s->cache); /* exclusive access: nobody borrows it */
    mm_activation_backward(layer->act, layer->leaky_slope, y, dy, n * layer->out);
    if (!s->master) {
        if (dx) dx_dequant(s, dy, dx, n);
        return;
    }
    const mm_sparse_kernels *sk = mm_sparse_kernels_get();
    if (dx) sk->backward_x(&s->m, dy, dx, n);
    if (param_grads) {
        bias_rows(s->db, dy, n, layer->out, 1.0f, false);
        sk->grad_values(&s->m, dy, x, n, 1.0f, false, s->gmaster);
    }
}

static void qs_apply_sgd(mm_layer *layer, const mm_kernels *k, const float *x, const float *delta,
                         size_t n, float neg_lr) {
    (void)k;
    qsparse *s = (qsparse *)layer;
    if (!s->master) return;
    cache_free(&s->cache);
    mm_sparse_kernels_get()->grad_values(&s->m, delta, x, n, neg_lr, true, s->master);
    bias_rows(s->b, delta, n, layer->out, neg_lr, true);
}

/* The optimizer moved the master: quantize it again. */
static void qs_after_update(mm_layer *layer) {
    qsparse *s = (qsparse *)layer;
    cache_free(&s->cache);
    if (s->master) quantize_from(s, s->lay, s->master);
}

/* Weights and layouts, scales, row sums and bias, and the master. */
static size_t qs_param_bytes(const mm_layer *layer) {
    const qsparse *s = (const qsparse *)layer;
    const size_t out = layer->out;
    size_t b = 2 * out * sizeof(float);
    if (s->lay) b += mm_sp_layout_bytes(s->lay);
    if (s->qw) b += s->lay->m.nnz * sizeof(int16_t);
    if (s->glay) b += mm_sp_layout_bytes(s->glay) + s->glay->m.nslots + out * sizeof(int32_t);
    if (s->master) b += s->lay->m.nnz * sizeof(float);
    if (s->g_from_l) b += s->glay->m.nslots * sizeof *s->g_from_l;
    return b;
}

static mm_status qs_file_order(const mm_layer *layer, size_t param, size_t *pos) {
    const qsparse *s = (const qsparse *)layer;
    if (param != 0) {
        for (size_t j = 0; j < layer->out; j++) pos[j] = j;
        return MM_OK;
    }
    return mm_sp_layout_csr_order(s->lay, pos); /* only with a master: the float layout */
}

/* ---- the file form: CSR, gap-coded columns --------------------------------- */

static size_t gap_bytes(size_t gap) { return gap / 255 + 1; }

/* Build the file form into the cache. */
static mm_status build_file_form(qsparse *s) {
    qs_file_form *c = &s->cache;
    if (c->offsets) return MM_OK;
    const mm_sp_layout *it = qlayout(s);
    const size_t nnz = it->m.nnz, rows = it->m.rows;
    uint32_t *off = NULL, *idx = NULL;
    mm_status st = MM_OK;
    size_t *pos = csr_order_of(it, &st);
    size_t *mpos = pos && s->master ? csr_order_of(s->lay, &st) : NULL;
    int8_t *q = pos ? malloc(nnz ? nnz : 1) : NULL;
    float *mv = q && s->master ? mm_alloc_floats(nnz ? nnz : 1) : NULL;
    if (st == MM_OK && (!q || (s->master && (!mv || !mpos)))) st = mm_oom("int8 sparse file form");
    if (st == MM_OK) st = mm_sp_layout_to_csr(it, &off, &idx);
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
        MM_SP_FOR_EACH(&it->m, q[pos[k]] = (int8_t)weight_q(s, k));
        if (mv) MM_SP_FOR_EACH(&s->lay->m, mv[mpos[k]] = s->master[k]);
    }
    free(pos);
    free(mpos);
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

static mm_status qs_clone(const mm_layer *layer, mm_layer **out) {
    qsparse *src = (qsparse *)(uintptr_t)layer; /* fills the cache only */
    cache_lock(src);
    mm_status st = build_file_form(src);
    cache_unlock(src);
    if (st != MM_OK) return st;
    const qs_file_form *c = &src->cache;
    const size_t rows = layer->out, nnz = any_layout(src)->m.nnz;
    size_t *off = mm_malloc_array(rows + 1, sizeof *off);
    uint32_t *o32 = NULL, *idx = NULL;
    qsparse *s = NULL;
    if (!off) return mm_oom("int8 sparse layer");
    st = mm_sp_layout_to_csr(any_layout(src), &o32, &idx);
    if (st == MM_OK) {
        for (size_t r = 0; r <= rows; r++) off[r] = o32[r];
        const mm_sp_csr pattern = {rows, layer->in, nnz, off, idx};
        const qs_spec spec = {layer->in, rows, layer->act, layer->leaky_slope, src->scheme,
                              src->per_channel, src->act_symmetric, src->master != NULL,
                              src->in_range[0], src->in_range[1]};
        st = qs_alloc(&s, &spec, &pattern);
    }
    if (st == MM_OK) {
        memcpy(s->scale, src->scale, rows * sizeof *s->scale);
        memcpy(s->b, src->b, rows * sizeof *s->b);
        st = fill_from_csr(s, NULL, c->q, c->master);
    }
    free(off);
    free(o32);
    free(idx);
    if (st != MM_OK) {
        if (s) qs_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return MM_OK;
}

/* ---- model files ---------------------------------------------------------- */

static void tname(char name[QS_NAME_CAP], size_t index, const char *suffix) {
    snprintf(name, QS_NAME_CAP, "layers.%zu.%s", index, suffix);
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

/* Entry fields "scheme", "nnz", "per_channel", "keep_master" and, static,
 * "act_symmetric"; tensors layers.<i>.weight_q I8 [nnz], weight_gaps U8,
 * weight_offsets U32 [out + 1], weight_scale F32 [out], bias F32 [out],
 * static: input_range F32 [2], with a master: weight_values F32 [nnz]
 * (doc/FORMAT.md). The writer borrows the cache until commit; it lives
 * until the next exclusive call. */
static mm_status qs_save(const mm_layer *layer, size_t index, json_t *entry, mm_file_writer *w) {
    qsparse *s = (qsparse *)(uintptr_t)layer; /* fills the cache only */
    const size_t nnz = any_layout(s)->m.nnz, out = layer->out;
    mm_status st = check_finite(s->b, out, index, "bias");
    if (st == MM_OK && s->master) st = check_finite(s->master, nnz, index, "weight_values");
    if (st != MM_OK) return st;
    int bad = json_object_set_new(entry, "scheme", json_string(scheme_text(s->scheme)));
    bad |= json_object_set_new(entry, "nnz", json_integer((json_int_t)nnz));
    bad |= json_object_set_new(entry, "per_channel", json_boolean(s->per_channel));
    bad |= json_object_set_new(entry, "keep_master", json_boolean(s->master != NULL));
    bad |= json_object_set_new(entry, "act_symmetric", json_boolean(s->act_symmetric));
    if (bad) return mm_oom("architecture entry");
    cache_lock(s);
    st = build_file_form(s);
    cache_unlock(s);
    if (st != MM_OK) return st;
    const qs_file_form *c = &s->cache;
    char name[QS_NAME_CAP];
    const uint64_t s_nnz[1] = {nnz}, s_gaps[1] = {c->ngaps}, s_off[1] = {(uint64_t)out + 1},
                   s_out[1] = {out}, s_r[1] = {2};
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
    tname(name, index, "input_range");
    if (st == MM_OK && s->scheme == MM_QUANT_INT8_STATIC)
        st = mm_file_writer_add_tensor(w, name, MM_DTYPE_F32, s->in_range, s_r, 1);
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

/* Read a 1-d tensor of `len` elements (mm_file_check_vector has checked
 * it, so its size is bounded by the file's). */
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
                if (gap >= cols) /* at once: no wrap-around on 32-bit hosts */
                    return mm_error(MM_E_FORMAT,
                                    "tensor %s: row %zu has a column beyond the layer's %zu "
                                    "inputs", name, r, cols);
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
    qs_spec spec = {in, out, act, leaky_slope, MM_QUANT_INT8_WEIGHT_ONLY, true, false, false,
                    0.0f, 0.0f};
    const json_t *js = json_object_get(entry, "scheme");
    const char *text = js && json_is_string(js) ? json_string_value(js) : "";
    if (strcmp(text, "weight_only") == 0) spec.scheme = MM_QUANT_INT8_WEIGHT_ONLY;
    else if (strcmp(text, "dynamic") == 0) spec.scheme = MM_QUANT_INT8_DYNAMIC;
    else if (strcmp(text, "static") == 0) spec.scheme = MM_QUANT_INT8_STATIC;
    else
        return mm_error(MM_E_FORMAT, "architecture: layer %zu: \"scheme\" must be "
                        "\"weight_only\", \"dynamic\" or \"static\"", index);
    mm_status st = entry_bool(entry, index, "per_channel", &spec.per_channel);
    if (st == MM_OK) st = entry_bool(entry, index, "keep_master", &spec.master);
    /* act_symmetric: required for static (it sets the range's zero point),
     * informative otherwise */
    if (st == MM_OK && (spec.scheme == MM_QUANT_INT8_STATIC || json_object_get(entry, "act_symmetric")))
        st = entry_bool(entry, index, "act_symmetric", &spec.act_symmetric);
    if (st != MM_OK) return st;
    if (in > MM_INT8_MAX_IN)
        return mm_error(MM_E_UNSUPPORTED, "layer %zu: int8 layer with %zu inputs (at most %u)",
                        index, in, MM_INT8_MAX_IN);
    char nq[QS_NAME_CAP], ng[QS_NAME_CAP], no[QS_NAME_CAP], ns[QS_NAME_CAP], nb[QS_NAME_CAP],
        nv[QS_NAME_CAP], nr[QS_NAME_CAP];
    tname(nq, index, "weight_q");
    tname(ng, index, "weight_gaps");
    tname(no, index, "weight_offsets");
    tname(ns, index, "weight_scale");
    tname(nb, index, "bias");
    tname(nv, index, "weight_values");
    tname(nr, index, "input_range");
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
    if (st == MM_OK && spec.master)
        st = mm_file_check_vector(f, nv, MM_DTYPE_F32, MM_DTYPE_F32, nnz64, true, NULL, NULL);
    if (st == MM_OK && spec.scheme == MM_QUANT_INT8_STATIC) {
        float range[2] = {0.0f, 0.0f};
        st = mm_file_check_vector(f, nr, MM_DTYPE_F32, MM_DTYPE_F32, 2, true, NULL, NULL);
        if (st == MM_OK) st = read_vector(f, nr, MM_DTYPE_F32, 2, range);
        if (st == MM_OK && (!isfinite(range[0]) || !isfinite(range[1]) || range[0] > range[1]))
            st = mm_error(MM_E_FORMAT, "tensor %s: [%g, %g] is not a finite range", nr,
                          (double)range[0], (double)range[1]);
        spec.in_lo = range[0];
        spec.in_hi = range[1];
    }
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
    float *mv = spec.master ? mm_alloc_floats(nnz ? nnz : 1) : NULL;
    qsparse *s = NULL;
    if (!off32 || !off || !idx || !gaps || !q || (spec.master && !mv))
        st = mm_oom("int8 sparse layer");
    if (st == MM_OK) st = read_vector(f, no, MM_DTYPE_U32, out + 1, off32);
    if (st == MM_OK) st = read_vector(f, ng, MM_DTYPE_U8, ngaps, gaps);
    if (st == MM_OK) st = read_vector(f, nq, MM_DTYPE_I8, nnz, q);
    if (st == MM_OK && spec.master) st = read_vector(f, nv, MM_DTYPE_F32, nnz, mv);
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
        st = qs_alloc(&s, &spec, &pattern);
    }
    if (st == MM_OK) st = read_vector(f, ns, MM_DTYPE_F32, out, s->scale);
    if (st == MM_OK) st = read_vector(f, nb, MM_DTYPE_F32, out, s->b);
    for (size_t r = 0; st == MM_OK && r < out; r++) {
        if (!(s->scale[r] > 0.0f) || !isfinite(s->scale[r]))
            st = mm_error(MM_E_FORMAT, "tensor %s: element %zu is %g (scales must be finite and "
                          "> 0)", ns, r, (double)s->scale[r]);
        else if (!isfinite(s->b[r]))
            st = mm_error(MM_E_NUMERIC, "tensor %s: element %zu is not finite", nb, r);
    }
    if (st == MM_OK) st = fill_from_csr(s, NULL, q, mv);
    free(off32);
    free(off);
    free(idx);
    free(gaps);
    free(q);
    mm_free_floats(mv);
    if (st != MM_OK) {
        if (s) qs_destroy(&s->base);
        return st;
    }
    *res = &s->base;
    return MM_OK;
}

/* The stored weights, whether or not a master keeps float copies. */
static void qs_count_nonzero(const mm_layer *layer, size_t *weights, size_t *biases) {
    *weights = qlayout((const qsparse *)layer)->m.nnz;
    *biases = layer->out;
}

const mm_layer_vtable mm_qsparse_kind = {
    .kind = "sparse_int8",
    .caps = MM_CAP_LAYER | MM_CAP_QUANTIZED,
    .load = qs_load,
    .effective_weights = mm_qsparse_effective_weights,
    .destroy = qs_destroy,
    .clone = qs_clone,
    .forward = qs_forward,
    .backward = qs_backward,
    .apply_sgd = qs_apply_sgd,
    .param_bytes = qs_param_bytes,
    .save = qs_save,
    .after_update = qs_after_update,
    .file_order = qs_file_order,
    .count_nonzero = qs_count_nonzero,
};

/* ---- other forms (quant_internal.h) ------------------------------------------ */

mm_status mm_qsparse_effective_weights(const mm_layer *layer, bool master, float *w, float *b) {
    const qsparse *s = (const qsparse *)layer;
    const size_t in = layer->in;
    memset(w, 0, layer->out * in * sizeof *w);
    if (master && s->master) MM_SP_FOR_EACH(&s->lay->m, w[row * in + col] = s->master[k]);
    else MM_SP_FOR_EACH(&qlayout(s)->m, w[row * in + col] = dequant(s, k, row));
    memcpy(b, s->b, layer->out * sizeof *b);
    return MM_OK;
}

mm_status mm_qsparse_int8_describe(const mm_layer *layer, mm_qlayer_int8 *d) {
    qsparse *s = (qsparse *)(uintptr_t)layer; /* fills the cache only */
    const mm_sp_matrix *m = &qlayout(s)->m;
    const size_t in = layer->in;
    size_t count;
    if (!mm_mul_ok(in, layer->out, &count)) return mm_oom("int8 weights");
    mm_status st = MM_OK;
    cache_lock(s);
    if (!s->cache.dense_q) {
        int8_t *dq = calloc(count ? count : 1, 1);
        if (dq) {
            MM_SP_FOR_EACH(m, dq[row * in + col] = (int8_t)weight_q(s, k));
            s->cache.dense_q = dq;
        } else {
            st = mm_oom("int8 weights");
        }
    }
    cache_unlock(s);
    if (st != MM_OK) return st;
    *d = (mm_qlayer_int8){.scheme = s->scheme,
                          .per_channel = true, /* one scale per row as stored */
                          .weight_symmetric = true,
                          .act_symmetric = s->act_symmetric,
                          .weight_q = s->cache.dense_q,
                          .weight_scale = s->scale,
                          .bias = s->b,
                          .in_lo = s->in_range[0],
                          .in_hi = s->in_range[1],
                          .x_scale = s->x_scale,
                          .x_zp = s->x_zp};
    return MM_OK;
}
