/* mm_model: a graph of nodes (graph.c) plus a loss; the layer-index API is
 * the view of its layers. The model code only talks to nodes through their
 * vtables. */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pmath.h"
#include "model/model_internal.h"
#include "mm/mm_pruner.h" /* mm_model_num_nonzero, mm_model_layer_sparsity */

#define CHECK_MODEL(m)                                   \
    do {                                                 \
        if (!(m)) return mm_null_arg("model");           \
    } while (0)

/* Widest layer is capped so n * width products stay far from overflow. */
#define MM_MAX_WIDTH ((size_t)1 << 24)

mm_status mm_model_create(mm_model **out, size_t input_dim, uint64_t seed) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (input_dim == 0 || input_dim > MM_MAX_WIDTH)
        return mm_error(MM_E_INVALID_ARGUMENT, "input_dim must be in [1, %zu], got %zu",
                        MM_MAX_WIDTH, input_dim);
    mm_model *m = calloc(1, sizeof *m);
    if (!m) return mm_oom("model");
    m->input_dim = input_dim;
    m->loss = MM_LOSS_SOFTMAX_XENT;
    m->leaky_slope = 0.01f;
    m->seed = seed;
    mm_rng_seed(&m->init_rng, seed);
    atomic_init(&m->lineage_view, NULL);
    m->lineage = mm_strdup("[]");
    mm_status st = m->lineage ? mm_graph_init(m, input_dim) : mm_oom("model lineage");
    if (st != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

void mm_model_drop_caches(mm_model *m) {
    for (size_t t = 0; t < m->n_tensors; t++) {
        if (m->acts && t != m->inputs[0]) mm_free_floats(m->acts[t]);
        if (m->grads) mm_free_floats(m->grads[t]);
    }
    free(m->acts);
    free(m->grads);
    free(m->grad_need);
    free(m->grad_have);
    for (size_t j = 0; j < MM_NODE_MAX_INPUTS; j++) {
        mm_free_floats(m->tmp[j]);
        m->tmp[j] = NULL;
    }
    m->acts = m->grads = NULL;
    m->grad_need = m->grad_have = NULL;
    m->cache_n = 0;
}

void mm_model_free(mm_model *m) {
    if (!m) return;
    mm_model_drop_caches(m);
    mm_graph_free(m);
    mm_lineage_drop_view(m);
    free(m->lineage);
    free(m);
}

mm_status mm_model_push_layer(mm_model *m, mm_layer *layer) {
    CHECK_MODEL(m);
    size_t want_in = mm_model_output_dim(m);
    if (layer->in != want_in)
        return mm_error(MM_E_SHAPE, "layer %zu expects %zu inputs, the previous layer gives %zu",
                        m->n_layers, layer->in, want_in);
    return mm_graph_append(m, layer, &m->outputs[0], 1, NULL, NULL);
}

uint64_t mm_layer_uid(mm_layer *layer) {
    static _Atomic uint64_t next_uid = 1;
    if (layer->uid == 0) layer->uid = atomic_fetch_add_explicit(&next_uid, 1, memory_order_relaxed);
    return layer->uid;
}

size_t mm_model_lowest_trainable(const mm_model *m) {
    size_t l = 0;
    while (l < m->n_layers && m->layers[l]->frozen) l++;
    return l;
}

/* Nodes reading several tensors, or tensors read by several nodes, are
 * wired by name: the same names in the copy. */
static mm_status clone_graph(const mm_model *src, mm_model *m) {
    for (size_t i = 0; i < src->n_nodes; i++) {
        const mm_layer *sn = src->nodes[i];
        mm_layer *node;
        mm_status st = sn->vt->clone(sn, &node);
        if (st != MM_OK) return st;
        node->frozen = sn->frozen;
        node->uid = 0; /* a new identity in the copy */
        uint32_t in[MM_NODE_MAX_INPUTS];
        for (uint32_t j = 0; j < sn->n_inputs; j++)
            in[j] = mm_graph_find(m, src->tensors[sn->inputs[j]].name);
        const mm_tensor *t = &src->tensors[sn->output];
        st = mm_graph_append(m, node, in, sn->n_inputs, t->name, &t->shape);
        if (st != MM_OK) {
            node->vt->destroy(node);
            return st;
        }
    }
    m->n_outputs = src->n_outputs;
    for (size_t o = 0; o < src->n_outputs; o++)
        m->outputs[o] = mm_graph_find(m, src->tensors[src->outputs[o]].name);
    return mm_graph_replan(m);
}

mm_status mm_model_add_dense_init(mm_model *m, size_t units, mm_activation act, mm_init init) {
    CHECK_MODEL(m);
    if (units == 0 || units > MM_MAX_WIDTH)
        return mm_error(MM_E_INVALID_ARGUMENT, "units must be in [1, %zu], got %zu", MM_MAX_WIDTH,
                        units);
    mm_layer *layer;
    mm_status st = mm_dense_create(&layer, mm_model_output_dim(m), units, act, m->leaky_slope,
                                   init, &m->init_rng);
    if (st != MM_OK) return st;
    st = mm_model_push_layer(m, layer);
    if (st != MM_OK) layer->vt->destroy(layer);
    return st;
}

mm_status mm_model_add_dense(mm_model *m, size_t units, mm_activation act) {
    return mm_model_add_dense_init(m, units, act, MM_INIT_AUTO);
}

mm_status mm_model_clone(const mm_model *src, mm_model **out) {
    if (!src) return mm_null_arg("model");
    if (!out) return mm_null_arg("out");
    *out = NULL;
    mm_model *m;
    mm_status st = mm_model_create(&m, src->input_dim, src->seed);
    if (st != MM_OK) return st;
    m->loss = src->loss;
    m->leaky_slope = src->leaky_slope;
    m->init_rng = src->init_rng;
    /* the copy's lineage includes an open run of online steps, closed */
    const char *lineage = mm_lineage_text(src);
    free(m->lineage);
    m->lineage = lineage ? mm_strdup(lineage) : NULL;
    m->online_pos = src->online_pos;
    if (!m->lineage) {
        mm_model_free(m);
        return mm_oom("model lineage");
    }
    if ((st = clone_graph(src, m)) != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

mm_status mm_model_set_loss(mm_model *m, mm_loss loss) {
    CHECK_MODEL(m);
    if (!mm_loss_name(loss)) return mm_error(MM_E_INVALID_ARGUMENT, "unknown loss %d", (int)loss);
    m->loss = loss;
    return MM_OK;
}

mm_loss mm_model_loss(const mm_model *m) { return m ? m->loss : MM_LOSS_SOFTMAX_XENT; }

mm_status mm_model_set_leaky_slope(mm_model *m, float slope) {
    CHECK_MODEL(m);
    if (!(slope >= 0.0f && slope < 1.0f))
        return mm_error(MM_E_OUT_OF_RANGE, "leaky slope must be in [0, 1), got %g", (double)slope);
    m->leaky_slope = slope;
    for (size_t i = 0; i < m->n_nodes; i++) m->nodes[i]->leaky_slope = slope;
    return MM_OK;
}

size_t mm_model_input_dim(const mm_model *m) { return m ? m->input_dim : 0; }

size_t mm_model_output_dim(const mm_model *m) {
    return m ? m->tensors[m->outputs[0]].size : 0;
}

size_t mm_model_num_layers(const mm_model *m) { return m ? m->n_layers : 0; }

size_t mm_model_num_params(const mm_model *m) {
    size_t total = 0;
    if (!m) return 0;
    for (size_t i = 0; i < m->n_nodes; i++)
        for (size_t j = 0; j < m->nodes[i]->n_params; j++)
            total += mm_param_count(&m->nodes[i]->params[j]);
    return total;
}

size_t mm_model_param_bytes(const mm_model *m) {
    size_t total = 0;
    if (!m) return 0;
    for (size_t i = 0; i < m->n_nodes; i++) total += m->nodes[i]->vt->param_bytes(m->nodes[i]);
    return total;
}

size_t mm_model_max_width(const mm_model *m) {
    size_t w = 0;
    for (size_t t = 0; t < m->n_tensors; t++)
        if (m->tensors[t].size > w) w = m->tensors[t].size;
    return w;
}

static mm_status get_layer(const mm_model *m, size_t index, mm_layer **out) {
    CHECK_MODEL(m);
    if (index >= m->n_layers)
        return mm_error(MM_E_OUT_OF_RANGE, "layer index %zu out of range (model has %zu layers)",
                        index, m->n_layers);
    *out = m->layers[index];
    return MM_OK;
}

/* The kept weights and the biases of a layer: its count_nonzero hook, or
 * every stored value (mm_layer_vtable). */
static void count_nonzero(const mm_layer *l, size_t *weights, size_t *biases) {
    if (l->vt->count_nonzero) {
        l->vt->count_nonzero(l, weights, biases);
        return;
    }
    *weights = *biases = 0;
    for (size_t j = 0; j < l->n_params; j++)
        *(strcmp(l->params[j].name, "bias") == 0 ? biases : weights) +=
            mm_param_count(&l->params[j]);
    if (l->n_params == 0) { /* nothing trainable: the layer stores them all */
        *weights = l->in * l->out;
        *biases = l->out;
    }
}

size_t mm_model_num_nonzero(const mm_model *m) {
    size_t total = 0;
    if (!m) return 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t w, b;
        count_nonzero(m->layers[l], &w, &b);
        total += w + b;
    }
    return total;
}

mm_status mm_model_layer_sparsity(const mm_model *m, size_t index, double *sparsity) {
    mm_layer *l = NULL;
    mm_status st = get_layer(m, index, &l);
    if (st != MM_OK) return st;
    if (!sparsity) return mm_null_arg("sparsity");
    const double total = (double)l->in * (double)l->out;
    size_t kept, biases;
    count_nonzero(l, &kept, &biases);
    double s = total > 0 ? 1.0 - (double)kept / total : 0.0;
    *sparsity = s < 0.0 ? 0.0 : s;
    return MM_OK;
}

mm_status mm_model_layer_info(const mm_model *m, size_t index, const char **kind, size_t *inputs,
                              size_t *outputs, mm_activation *act) {
    mm_layer *l = NULL;
    mm_status st = get_layer(m, index, &l);
    if (st != MM_OK) return st;
    if (kind) *kind = l->vt->kind;
    if (inputs) *inputs = l->in;
    if (outputs) *outputs = l->out;
    if (act) *act = l->act;
    return MM_OK;
}

/* True when params[0] of a layer is its out x in weight matrix, W[o*in+i]
 * (dense, qat, quantized layers with float master weights). */

static mm_status check_finite(const float *v, size_t n, size_t index, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return mm_error(MM_E_NUMERIC, "layer %zu %s[%zu] is not finite", index, what, i);
    return MM_OK;
}

/* The out x in weights of a layer whose parameters are another form of
 * them (sparse: stored values; quantized without master weights: none):
 * read as the dense matrix it computes with (mm_dense_view: zeros where a
 * sparse layer pruned, dequantized int8/fp16/bf16 weights); a sparse
 * layer's values and gradients are also written / read at their dense
 * positions (its pruned positions are not stored: written values there are
 * dropped, as masked weights of a dense layer stay 0, and read as 0). */
static mm_status dense_form_io(mm_layer *l, size_t index, size_t count, float *w, size_t wlen,
                               float *b, size_t blen, bool grads, bool write) {
    if (w && wlen != count)
        return mm_error(MM_E_SHAPE, "layer %zu has %zu x %zu weights, buffer holds %zu", index,
                        l->out, l->in, wlen);
    if (b && blen != l->out)
        return mm_error(MM_E_SHAPE, "layer %zu has %zu biases, buffer holds %zu", index, l->out,
                        blen);
    mm_status st;
    if (!write && !grads) {
        mm_dense_view v;
        if ((st = mm_dense_view_get(l, &v)) != MM_OK)
            return mm_error_prefix(st, "layer %zu: ", index);
        if (w) memcpy(w, v.weight, count * sizeof(float));
        if (b) memcpy(b, v.bias, l->out * sizeof(float));
        mm_dense_view_free(&v);
        return MM_OK;
    }
    if (l->n_params < 2)
        return mm_error(MM_E_UNSUPPORTED,
                        "layer %zu (%s) keeps no float parameters (inference only): it has no "
                        "weights to %s",
                        index, l->vt->kind, write ? "set" : "take gradients of");
    mm_param *vals = &l->params[0], *bias = &l->params[1];
    const size_t nnz = mm_param_count(vals);
    size_t *pos = mm_malloc_array(nnz ? nnz : 1, sizeof *pos);
    if (!pos) return mm_oom("weight positions");
    if (!mm_layer_has(l, MM_CAP_STORED_WEIGHTS) || l->vt->positions(l, pos) != MM_OK) {
        free(pos);
        return mm_error(MM_E_UNSUPPORTED,
                        "layer %zu (%s) cannot %s its weights as a dense matrix (get_weights "
                        "reads them)",
                        index, l->vt->kind, write ? "set" : "give the gradients of");
    }
    if (write) {
        st = w ? check_finite(w, count, index, "weight") : MM_OK;
        if (st == MM_OK && b) st = check_finite(b, l->out, index, "bias");
        if (st == MM_OK) {
            if (w)
                for (size_t k = 0; k < nnz; k++) vals->data[k] = w[pos[k]];
            if (b) memcpy(bias->data, b, l->out * sizeof(float));
            mm_layer_params_changed(l);
        }
    } else {
        st = MM_OK;
        if (w) {
            memset(w, 0, count * sizeof(float));
            for (size_t k = 0; k < nnz; k++) w[pos[k]] = vals->grad[k];
        }
        if (b) memcpy(b, bias->grad, l->out * sizeof(float));
    }
    free(pos);
    return st;
}

/* Weights and biases are params[0] and params[1] of a dense layer; check the
 * caller's buffer sizes against them. Other layer kinds go through their
 * dense form (dense_form_io). */
static mm_status param_io(const mm_model *m, size_t index, float *w, size_t wlen, float *b,
                          size_t blen, bool grads, bool write) {
    mm_layer *l = NULL;
    mm_status st = get_layer(m, index, &l);
    if (st != MM_OK) return st;
    size_t dense_count;
    if (!mm_mul_ok(l->in, l->out, &dense_count)) return mm_oom("layer weights");
    /* A buffer of a sparse layer's stored-value count (not out*in) still
     * reads and writes the stored values in the layer's own order, as it
     * did before the dense form existed. */
    const bool stored = w && l->n_params >= 2 && wlen == mm_param_count(&l->params[0]) &&
                        wlen != dense_count;
    if ((w || b) && !mm_layer_holds_matrix(l) && !stored)
        return dense_form_io(l, index, dense_count, w, wlen, b, blen, grads, write);
    if (l->n_params < 2)
        return mm_error(MM_E_UNSUPPORTED, "layer %zu (%s) has no dense weights", index,
                        l->vt->kind);
    float *bufs[2] = {w, b};
    size_t lens[2] = {wlen, blen};
    for (int j = 0; j < 2; j++) {
        size_t count = mm_param_count(&l->params[j]);
        if (bufs[j] && lens[j] != count)
            return mm_error(MM_E_SHAPE, "layer %zu %s has %zu values, buffer holds %zu", index,
                            l->params[j].name, count, lens[j]);
    }
    if (write) {
        for (int j = 0; j < 2; j++)
            if (bufs[j])
                for (size_t i = 0; i < lens[j]; i++)
                    if (!isfinite(bufs[j][i]))
                        return mm_error(MM_E_NUMERIC, "layer %zu %s[%zu] is not finite", index,
                                        l->params[j].name, i);
    }
    for (int j = 0; j < 2; j++) {
        if (!bufs[j]) continue;
        float *p = grads ? l->params[j].grad : l->params[j].data;
        if (write) {
            memcpy(p, bufs[j], lens[j] * sizeof(float));
            /* pruned weights stay pruned: masked entries remain 0 */
            const uint8_t *mask = l->params[j].mask;
            if (mask)
                for (size_t i = 0; i < lens[j]; i++)
                    if (!mask[i]) p[i] = 0.0f;
        } else {
            memcpy(bufs[j], p, lens[j] * sizeof(float));
        }
    }
    if (write && !grads) mm_layer_params_changed(l);
    return MM_OK;
}

mm_status mm_model_get_weights(const mm_model *m, size_t index, float *w, size_t wlen, float *b,
                               size_t blen) {
    return param_io(m, index, w, wlen, b, blen, false, false);
}

mm_status mm_model_set_weights(mm_model *m, size_t index, const float *w, size_t wlen,
                               const float *b, size_t blen) {
    /* param_io only reads the buffers when writing into the model. */
    return param_io(m, index, (float *)(uintptr_t)w, wlen, (float *)(uintptr_t)b, blen, false,
                    true);
}

mm_status mm_model_get_gradients(const mm_model *m, size_t index, float *dw, size_t wlen,
                                 float *db, size_t blen) {
    return param_io(m, index, dw, wlen, db, blen, true, false);
}

static mm_status check_batch(const mm_model *m, const float *x, size_t n, const void *out) {
    CHECK_MODEL(m);
    if (!x) return mm_null_arg("x");
    if (!out) return mm_null_arg("output buffer");
    if (n == 0) return mm_error(MM_E_INVALID_ARGUMENT, "batch size n must be at least 1");
    if (m->n_nodes == 0) return mm_error(MM_E_STATE, "model has no layers");
    size_t total;
    if (!mm_mul_ok(n, mm_model_max_width(m), &total) || total > (SIZE_MAX / 4) / sizeof(float))
        return mm_error(MM_E_OUT_OF_RANGE, "batch of %zu samples is too large", n);
    return MM_OK;
}

/* Inference with caller-local scratch (no model-owned state, so concurrent
 * readers are safe): the tensors between the input and the output live in
 * an arena of n * arena_floats floats that the graph's plan reuses across
 * tensors whose lifetimes do not overlap (a chain: two ping-pong buffers).
 * Up to MM_STACK_SCRATCH floats (32 KB) of scratch live on the stack, so
 * small batches allocate nothing. */
#define MM_STACK_SCRATCH 8192

/* NaN and infinity in the caller's samples are refused before anything is
 * computed: a NaN need not reach the outputs (relu maps it to 0, a sparse
 * layer skips a pruned column), and when it does, argmax and the loss turn
 * it into a plausible class or a NaN metric without a word. */
static mm_status check_inputs(const mm_model *m, const float *x, size_t n) {
    return mm_check_samples(x, n, m->input_dim, "input sample",
                            "inputs must be finite; nothing was computed");
}

mm_status mm_model_forward(const mm_model *m, const float *x, size_t n, float *out) {
    mm_status st = check_batch(m, x, n, out);
    if (st == MM_OK) st = check_inputs(m, x, n);
    if (st != MM_OK) return st;
    const size_t need = n * m->arena_floats;
    float stack_buf[MM_STACK_SCRATCH];
    float *heap = NULL;
    if (need > MM_STACK_SCRATCH && !(heap = mm_alloc_floats(need)))
        return mm_oom("forward scratch");
    mm_graph_forward(m, mm_kernels_get(), x, n, out, heap ? heap : stack_buf);
    mm_free_floats(heap);
    return MM_OK;
}

static void softmax_rows(float *z, size_t n, size_t c) {
    for (size_t i = 0; i < n; i++) {
        float *row = z + i * c;
        float zmax = row[0];
        for (size_t j = 1; j < c; j++) zmax = row[j] > zmax ? row[j] : zmax;
        float sum = 0.0f;
        for (size_t j = 0; j < c; j++) {
            row[j] = mm_pexpf(row[j] - zmax);
            sum += row[j];
        }
        for (size_t j = 0; j < c; j++) row[j] /= sum;
    }
}

mm_status mm_model_predict_proba(const mm_model *m, const float *x, size_t n, float *out) {
    mm_status st = mm_model_forward(m, x, n, out);
    if (st != MM_OK) return st;
    if (m->loss == MM_LOSS_SOFTMAX_XENT) softmax_rows(out, n, mm_model_output_dim(m));
    return MM_OK;
}

/* predict and evaluate run forward over chunks of at most MM_EVAL_CHUNK
 * samples into logits they throw away. When a chunk's logits and scratch
 * fit in MM_STACK_SCRATCH floats they live on the stack (batch 1 and other
 * small batches allocate nothing: predict is called per sample by online
 * loops); otherwise one block is allocated for the whole call. */
#define MM_EVAL_CHUNK 256

typedef struct eval_buf {
    float stack[MM_STACK_SCRATCH];
    float *heap;
    float *logits, *scratch;
    size_t chunk;
} eval_buf;

static mm_status eval_buf_init(eval_buf *b, const mm_model *m, size_t n) {
    const size_t per = mm_model_output_dim(m) + m->arena_floats; /* floats per sample */
    size_t chunk = n < MM_EVAL_CHUNK ? n : MM_EVAL_CHUNK;
    b->heap = NULL;
    float *base = b->stack;
    if (chunk * per > MM_STACK_SCRATCH) {
        base = b->heap = mm_alloc_floats(chunk * per);
        if (!b->heap) return mm_oom("logits");
    }
    b->chunk = chunk;
    b->logits = base;
    b->scratch = base + chunk * mm_model_output_dim(m);
    return MM_OK;
}

mm_status mm_model_predict(const mm_model *m, const float *x, size_t n, int32_t *labels) {
    mm_status st = check_batch(m, x, n, labels);
    if (st == MM_OK) st = check_inputs(m, x, n);
    if (st != MM_OK) return st;
    eval_buf b;
    if ((st = eval_buf_init(&b, m, n)) != MM_OK) return st;
    const mm_kernels *k = mm_kernels_get();
    const size_t c = mm_model_output_dim(m);
    for (size_t start = 0; start < n; start += b.chunk) {
        size_t cnt = n - start < b.chunk ? n - start : b.chunk;
        mm_graph_forward(m, k, x + start * m->input_dim, cnt, b.logits, b.scratch);
        for (size_t i = 0; i < cnt; i++) {
            const float *row = b.logits + i * c;
            size_t best = 0;
            for (size_t j = 1; j < c; j++)
                if (row[j] > row[best]) best = j;
            labels[start + i] = (int32_t)best;
        }
    }
    mm_free_floats(b.heap);
    return MM_OK;
}

mm_status mm_check_targets(const mm_model *m, const int32_t *labels, const float *targets,
                           size_t n) {
    size_t c = mm_model_output_dim(m);
    if (m->loss == MM_LOSS_SOFTMAX_XENT && !labels)
        return mm_error(MM_E_INVALID_ARGUMENT, "softmax cross-entropy needs labels");
    if (m->loss == MM_LOSS_SOFTMAX_XENT && c < 2)
        return mm_error(MM_E_STATE, "softmax cross-entropy needs at least 2 outputs, model has %zu",
                        c);
    if (m->loss == MM_LOSS_MSE && !labels && !targets)
        return mm_error(MM_E_INVALID_ARGUMENT, "mean squared error needs targets or labels");
    if (labels && !(m->loss == MM_LOSS_MSE && targets)) {
        for (size_t i = 0; i < n; i++)
            if (labels[i] < 0 || (size_t)labels[i] >= c)
                return mm_error(MM_E_OUT_OF_RANGE,
                                "label %d of sample %zu is outside [0, %zu) for a model with %zu "
                                "outputs",
                                (int)labels[i], i, c, c);
    }
    return MM_OK;
}

mm_status mm_model_evaluate(const mm_model *m, const float *x, const int32_t *labels,
                            const float *targets, size_t n, double *loss, double *accuracy) {
    mm_status st = check_batch(m, x, n, x);
    if (st == MM_OK) st = mm_check_targets(m, labels, targets, n);
    if (st == MM_OK) st = check_inputs(m, x, n);
    if (st != MM_OK) return st;
    eval_buf b;
    if ((st = eval_buf_init(&b, m, n)) != MM_OK) return st;
    const mm_kernels *k = mm_kernels_get();
    const size_t c = mm_model_output_dim(m);
    double total = 0.0;
    size_t correct = 0;
    for (size_t start = 0; start < n; start += b.chunk) {
        size_t cnt = n - start < b.chunk ? n - start : b.chunk;
        mm_graph_forward(m, k, x + start * m->input_dim, cnt, b.logits, b.scratch);
        size_t hits = 0;
        total += mm_loss_compute(m->loss, b.logits, labels ? labels + start : NULL,
                                 targets ? targets + start * c : NULL, cnt, c, NULL, &hits) *
                 (double)cnt;
        correct += hits;
    }
    mm_free_floats(b.heap);
    if (loss) *loss = total / (double)n;
    if (accuracy) *accuracy = labels ? (double)correct / (double)n : NAN;
    return MM_OK;
}

mm_status mm_model_backprop(mm_model *m, const float *x, const int32_t *labels,
                            const float *targets, size_t n, bool param_grads, double *loss) {
    mm_status st = check_batch(m, x, n, x);
    if (st != MM_OK) return st;
    st = mm_check_targets(m, labels, targets, n);
    if (st != MM_OK) return st;
    st = mm_graph_ensure_caches(m, n);
    if (st != MM_OK) return st;
    const mm_kernels *k = mm_kernels_get();
    mm_graph_forward_cached(m, k, x, n);
    const uint32_t out = m->outputs[0];
    double value = mm_loss_compute(m->loss, m->acts[out], labels, targets, n,
                                   m->tensors[out].size, m->grads[out], NULL);
    if (loss) *loss = value;
    if (!isfinite(value))
        return mm_error(MM_E_NUMERIC, "loss is not finite (%g): the weights or inputs are too "
                                      "large or not finite",
                        value);
    /* the gradient of each tensor, in reverse order, down to what the
     * trainable layers need; frozen layers need no parameter gradients
     * (transfer learning: a frozen body costs one forward pass only) */
    mm_graph_backward(m, k, n, param_grads);
    return MM_OK;
}

mm_status mm_model_backward(mm_model *m, const float *x, const int32_t *labels,
                            const float *targets, size_t n, double *loss) {
    mm_status st = check_batch(m, x, n, x);
    if (st == MM_OK) st = check_inputs(m, x, n);
    if (st != MM_OK) return st;
    return mm_model_backprop(m, x, labels, targets, n, true, loss);
}

bool mm_model_can_apply_sgd(const mm_model *m) {
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *node = m->nodes[i];
        if (!node->frozen && node->n_params > 0 && !node->vt->apply_sgd) return false;
    }
    return true;
}

/* ---- transfer learning ------------------------------------------------- */

mm_status mm_model_set_trainable(mm_model *m, size_t index, int trainable) {
    mm_layer *l = NULL;
    mm_status st = get_layer(m, index, &l);
    if (st != MM_OK) return st;
    const bool frozen = trainable == 0;
    if (frozen && !l->frozen)
        for (size_t j = 0; j < l->n_params; j++)
            if (l->params[j].grad)
                memset(l->params[j].grad, 0, mm_param_count(&l->params[j]) * sizeof(float));
    l->frozen = frozen;
    return MM_OK;
}

int mm_model_layer_trainable(const mm_model *m, size_t index) {
    mm_layer *l = NULL;
    if (get_layer(m, index, &l) != MM_OK) return -1;
    return l->frozen ? 0 : 1;
}

mm_status mm_model_truncate(mm_model *m, size_t n_layers) {
    CHECK_MODEL(m);
    if (n_layers > m->n_layers)
        return mm_error(MM_E_OUT_OF_RANGE, "cannot truncate a model of %zu layers to %zu",
                        m->n_layers, n_layers);
    if (n_layers == m->n_layers) return MM_OK;
    if (!mm_graph_is_chain(m))
        return mm_error(MM_E_UNSUPPORTED, "truncation keeps the first layers of a chain of "
                        "layers; this model is a graph with branches or other nodes");
    /* a chain: node i is layer i, its output tensor i + 1 */
    mm_model_drop_caches(m); /* cache layout depends on the layer list */
    for (size_t i = n_layers; i < m->n_nodes; i++) {
        free(m->tensors[m->nodes[i]->output].name);
        m->nodes[i]->vt->destroy(m->nodes[i]);
    }
    m->n_tensors = n_layers ? m->nodes[n_layers - 1]->output + 1 : m->inputs[0] + 1;
    m->n_nodes = n_layers;
    m->outputs[0] = n_layers ? m->nodes[n_layers - 1]->output : m->inputs[0];
    return mm_graph_replan(m);
}

mm_status mm_model_replace_head(mm_model *m, size_t units, mm_activation act, uint64_t seed) {
    CHECK_MODEL(m);
    if (m->n_layers == 0) return mm_error(MM_E_STATE, "the model has no layer to replace");
    if (units == 0 || units > MM_MAX_WIDTH)
        return mm_error(MM_E_INVALID_ARGUMENT, "units must be in [1, %zu], got %zu", MM_MAX_WIDTH,
                        units);
    if (!mm_activation_name(act))
        return mm_error(MM_E_INVALID_ARGUMENT, "unknown activation %d", (int)act);
    const size_t last = m->n_layers - 1;
    mm_layer *old = m->layers[last];
    mm_rng rng;
    mm_rng_seed(&rng, seed);
    mm_layer *head;
    mm_status st = mm_dense_create(&head, old->in, units, act, m->leaky_slope, MM_INIT_AUTO, &rng);
    if (st != MM_OK) return st;
    char detail[160];
    snprintf(detail, sizeof detail,
             "{\"layer\":%zu,\"old_units\":%zu,\"units\":%zu,\"activation\":\"%s\","
             "\"seed\":%llu}",
             last, old->out, units, mm_activation_name(act), (unsigned long long)seed);
    st = mm_lineage_append(m, "replace_head", detail);
    if (st != MM_OK) {
        head->vt->destroy(head);
        return st;
    }
    if ((st = mm_graph_replace(m, mm_graph_node_of_layer(m, last), head)) != MM_OK) {
        head->vt->destroy(head);
        return st;
    }
    head->uid = 0; /* a new layer: optimizers must not carry the old one's state */
    head->frozen = false;
    mm_layer_uid(head);
    return MM_OK;
}

/* snprintf into a growing position, counting what the full text needs. */
typedef struct text_sink {
    char *buf;
    size_t cap, len;
} text_sink;

static void sink_printf(text_sink *s, const char *fmt, ...) MM_PRINTF(2, 3);
static void sink_printf(text_sink *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = s->len < s->cap ? s->buf + s->len : NULL;
    size_t room = s->len < s->cap ? s->cap - s->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0) s->len += (size_t)n;
}

mm_status mm_model_describe(const mm_model *m, char *buf, size_t cap, size_t *needed) {
    CHECK_MODEL(m);
    if (!buf && cap) return mm_null_arg("buf");
    text_sink s = {buf, cap, 0};
    if (buf && cap) buf[0] = '\0';
    sink_printf(&s, "mmaint model: %zu inputs, %zu layers, loss %s\n", m->input_dim,
                m->n_layers, mm_loss_name(m->loss));
    for (size_t l = 0; l < m->n_layers; l++) {
        const mm_layer *ly = m->layers[l];
        size_t params = 0;
        for (size_t j = 0; j < ly->n_params; j++) params += mm_param_count(&ly->params[j]);
        sink_printf(&s, "  %zu: %-6s %6zu -> %-6zu %-10s %9zu params %10zu bytes%s\n", l,
                    ly->vt->kind, ly->in, ly->out, mm_activation_name(ly->act), params,
                    ly->vt->param_bytes(ly), ly->frozen ? "  frozen" : "");
    }
    sink_printf(&s, "  total: %zu params, %zu bytes\n", mm_model_num_params(m),
                mm_model_param_bytes(m));
    if (needed) *needed = s.len;
    return MM_OK;
}
