/* The graph inside mm_model (model_internal.h): nodes in topological order
 * reading and writing named tensors, a plan that gives inference one arena
 * reused by tensors whose lifetimes do not overlap, and the training pass:
 * forward into per-tensor caches, backward in reverse order, adding a
 * node's gradient contribution to a tensor that fans out into several
 * consumers. A chain of layers (every model built with the layer API) is
 * the special case whose plan is the old pair of ping-pong buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* ---- tensors --------------------------------------------------------------- */

static mm_status add_tensor(mm_model *m, const char *name, const mm_shape *shape,
                            uint32_t producer, uint32_t *id) {
    if (m->n_tensors >= UINT32_MAX - 1) return mm_error(MM_E_OUT_OF_RANGE, "too many tensors");
    char gen[32];
    if (!name) {
        snprintf(gen, sizeof gen, "t%zu", m->n_tensors);
        name = gen;
    }
    if (mm_graph_find(m, name) != MM_NO_NODE)
        return mm_error(MM_E_INVALID_ARGUMENT, "a tensor named '%s' exists already", name);
    if (m->n_tensors == m->cap_tensors) {
        const size_t cap = m->cap_tensors ? 2 * m->cap_tensors : 8;
        mm_tensor *t = realloc(m->tensors, cap * sizeof *t);
        if (!t) return mm_oom("tensor list");
        m->tensors = t;
        m->cap_tensors = cap;
    }
    mm_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = mm_strdup(name);
    if (!t->name) return mm_oom("tensor name");
    t->shape = *shape;
    t->size = 1;
    for (uint32_t d = 0; d < shape->rank; d++) t->size *= shape->dims[d];
    t->producer = producer;
    *id = (uint32_t)m->n_tensors++;
    return MM_OK;
}

uint32_t mm_graph_find(const mm_model *m, const char *name) {
    for (size_t t = 0; t < m->n_tensors; t++)
        if (strcmp(m->tensors[t].name, name) == 0) return (uint32_t)t;
    return MM_NO_NODE;
}

mm_status mm_graph_init(mm_model *m, size_t input_dim) {
    const mm_shape s = {1, {input_dim}};
    uint32_t id;
    mm_status st = add_tensor(m, "x", &s, MM_NO_NODE, &id);
    if (st != MM_OK) return st;
    m->inputs[0] = m->outputs[0] = id;
    m->n_inputs = m->n_outputs = 1;
    return MM_OK;
}

void mm_graph_free(mm_model *m) {
    for (size_t i = 0; i < m->n_nodes; i++) m->nodes[i]->vt->destroy(m->nodes[i]);
    free(m->nodes);
    free(m->layers);
    for (size_t t = 0; t < m->n_tensors; t++) free(m->tensors[t].name);
    free(m->tensors);
    m->nodes = m->layers = NULL;
    m->tensors = NULL;
    m->n_nodes = m->n_layers = m->n_tensors = 0;
}

/* ---- the plan -------------------------------------------------------------- */

static bool is_graph_input(const mm_model *m, uint32_t t) {
    for (size_t i = 0; i < m->n_inputs; i++)
        if (m->inputs[i] == t) return true;
    return false;
}

/* Lifetimes and arena offsets: a tensor lives from its producer to its last
 * reader; it may take the place of any tensor whose last reader came
 * before its producer (a node never writes over its own inputs). Graph
 * inputs are the caller's; graph output 0 is the caller's out buffer. */
static mm_status plan_arena(mm_model *m) {
    const size_t T = m->n_tensors;
    for (size_t t = 0; t < T; t++) m->tensors[t].last_use = m->tensors[t].producer;
    for (size_t i = 0; i < m->n_nodes; i++)
        for (uint32_t j = 0; j < m->nodes[i]->n_inputs; j++)
            m->tensors[m->nodes[i]->inputs[j]].last_use = (uint32_t)i;
    /* blocks: [off, off + size) per sample, free after node `until` */
    typedef struct block {
        size_t off, size;
        uint32_t until;
    } block;
    block *used = mm_malloc_array(T ? T : 1, sizeof *used);
    if (!used) return mm_oom("graph plan");
    size_t n_used = 0, top = 0;
    for (size_t i = 0; i < m->n_nodes; i++) {
        mm_tensor *t = &m->tensors[m->nodes[i]->output];
        if (m->nodes[i]->output == m->outputs[0]) continue; /* the caller's buffer */
        /* first fit among the gaps left by blocks dead before node i */
        size_t off = 0;
        for (;;) {
            bool moved = false;
            for (size_t b = 0; b < n_used; b++)
                if (used[b].until >= i && off < used[b].off + used[b].size &&
                    used[b].off < off + t->size) {
                    off = used[b].off + used[b].size;
                    moved = true;
                }
            if (!moved) break;
        }
        t->arena_off = off;
        used[n_used++] = (block){off, t->size, t->last_use == MM_NO_NODE ? (uint32_t)i : t->last_use};
        if (off + t->size > top) top = off + t->size;
    }
    free(used);
    m->arena_floats = top;
    return MM_OK;
}

mm_status mm_graph_replan(mm_model *m) {
    mm_model_drop_caches(m);
    /* sizes follow the producers (structured pruning changes widths) */
    for (size_t i = 0; i < m->n_nodes; i++) {
        mm_tensor *t = &m->tensors[m->nodes[i]->output];
        if (t->shape.rank == 1) t->shape.dims[0] = m->nodes[i]->out;
        t->size = m->nodes[i]->out;
    }
    m->input_dim = m->tensors[m->inputs[0]].size;
    /* the layer view */
    if (m->cap_layers < m->n_nodes) {
        mm_layer **v = realloc(m->layers, (m->n_nodes ? m->n_nodes : 1) * sizeof *v);
        if (!v) return mm_oom("layer list");
        m->layers = v;
        m->cap_layers = m->n_nodes;
    }
    m->n_layers = 0;
    for (size_t i = 0; i < m->n_nodes; i++)
        if (mm_layer_has(m->nodes[i], MM_CAP_LAYER)) m->layers[m->n_layers++] = m->nodes[i];
    return plan_arena(m);
}

mm_status mm_graph_append(mm_model *m, mm_layer *node, const uint32_t *inputs, size_t n_inputs,
                          const char *output, const mm_shape *shape) {
    if (n_inputs == 0 || n_inputs > MM_NODE_MAX_INPUTS)
        return mm_error(MM_E_INVALID_ARGUMENT, "a node reads 1 to %d tensors, not %zu",
                        MM_NODE_MAX_INPUTS, n_inputs);
    for (size_t j = 0; j < n_inputs; j++)
        if (inputs[j] >= m->n_tensors)
            return mm_error(MM_E_INVALID_ARGUMENT, "input %zu is not a tensor of the model", j);
    if (node->in != m->tensors[inputs[0]].size)
        return mm_error(MM_E_SHAPE, "%s node %zu expects %zu inputs, tensor '%s' holds %zu",
                        node->vt->kind, m->n_nodes, node->in, m->tensors[inputs[0]].name,
                        m->tensors[inputs[0]].size);
    if (m->n_nodes == m->cap_nodes) {
        const size_t cap = m->cap_nodes ? 2 * m->cap_nodes : 4;
        mm_layer **p = realloc(m->nodes, cap * sizeof *p);
        if (!p) return mm_oom("node list");
        m->nodes = p;
        m->cap_nodes = cap;
    }
    const mm_shape flat = {1, {node->out}};
    uint32_t out_id;
    mm_status st = add_tensor(m, output, shape ? shape : &flat, (uint32_t)m->n_nodes, &out_id);
    if (st != MM_OK) return st;
    if (m->tensors[out_id].size != node->out) {
        free(m->tensors[out_id].name);
        m->n_tensors--;
        return mm_error(MM_E_SHAPE, "%s node: output shape of %zu values, the node writes %zu",
                        node->vt->kind, m->tensors[out_id].size, node->out);
    }
    node->n_inputs = (uint32_t)n_inputs;
    for (size_t j = 0; j < n_inputs; j++) node->inputs[j] = inputs[j];
    node->output = out_id;
    mm_layer_uid(node);
    m->nodes[m->n_nodes++] = node;
    m->outputs[0] = out_id;
    st = mm_graph_replan(m);
    if (st != MM_OK) { /* undo: the caller keeps the node */
        m->n_nodes--;
        free(m->tensors[out_id].name);
        m->n_tensors--;
        m->outputs[0] = inputs[0];
        (void)mm_graph_replan(m);
    }
    return st;
}

mm_status mm_graph_replace(mm_model *m, size_t index, mm_layer *node) {
    mm_layer *old = m->nodes[index];
    if (node->in != m->tensors[old->inputs[0]].size)
        return mm_error(MM_E_SHAPE, "the replacement of node %zu reads %zu values, its input "
                        "holds %zu", index, node->in, m->tensors[old->inputs[0]].size);
    node->n_inputs = old->n_inputs;
    memcpy(node->inputs, old->inputs, sizeof node->inputs);
    node->output = old->output;
    node->uid = old->uid;
    node->frozen = old->frozen;
    m->nodes[index] = node;
    old->vt->destroy(old);
    return mm_graph_replan(m);
}

mm_layer *mm_graph_swap_layer(mm_model *m, size_t l, mm_layer *node) {
    const size_t i = mm_graph_node_of_layer(m, l);
    mm_layer *old = m->nodes[i];
    if (old == node) return old;
    mm_model_drop_caches(m);
    node->n_inputs = old->n_inputs;
    memcpy(node->inputs, old->inputs, sizeof node->inputs);
    node->output = old->output;
    node->uid = old->uid;
    node->frozen = old->frozen;
    m->nodes[i] = m->layers[l] = node;
    return old;
}

bool mm_graph_is_chain(const mm_model *m) {
    uint32_t prev = m->inputs[0];
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *n = m->nodes[i];
        if (!mm_layer_has(n, MM_CAP_LAYER) || n->n_inputs != 1 || n->inputs[0] != prev) return false;
        prev = n->output;
    }
    return m->n_outputs == 1 && m->outputs[0] == prev;
}

size_t mm_graph_node_of_layer(const mm_model *m, size_t l) {
    for (size_t i = 0, k = 0; i < m->n_nodes; i++)
        if (mm_layer_has(m->nodes[i], MM_CAP_LAYER) && k++ == l) return i;
    return m->n_nodes;
}

/* ---- inference ------------------------------------------------------------- */

void mm_graph_forward(const mm_model *m, const mm_kernels *k, const float *x, size_t n,
                      float *out, float *scratch) {
    const float *xs[MM_NODE_MAX_INPUTS];
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *node = m->nodes[i];
        for (uint32_t j = 0; j < node->n_inputs; j++) {
            const uint32_t t = node->inputs[j];
            xs[j] = t == m->inputs[0]    ? x
                    : t == m->outputs[0] ? out
                                         : scratch + n * m->tensors[t].arena_off;
        }
        float *y = node->output == m->outputs[0] ? out
                                                 : scratch + n * m->tensors[node->output].arena_off;
        node->vt->forward(node, k, xs, y, n);
    }
}

/* ---- training -------------------------------------------------------------- */

mm_status mm_graph_ensure_caches(mm_model *m, size_t n) {
    if (m->acts && m->cache_n >= n) return MM_OK;
    mm_model_drop_caches(m);
    const size_t T = m->n_tensors;
    m->acts = calloc(T, sizeof *m->acts);
    m->grads = calloc(T, sizeof *m->grads);
    m->grad_need = calloc(T, sizeof *m->grad_need);
    m->grad_have = calloc(T, sizeof *m->grad_have);
    if (!m->acts || !m->grads || !m->grad_need || !m->grad_have) {
        mm_model_drop_caches(m);
        return mm_oom("training caches");
    }
    size_t widest = 0;
    for (size_t t = 0; t < T; t++) {
        const size_t sz = m->tensors[t].size;
        widest = sz > widest ? sz : widest;
        if (is_graph_input(m, (uint32_t)t)) continue; /* the caller's x; no gradient */
        m->acts[t] = mm_alloc_floats(n * sz);
        m->grads[t] = mm_alloc_floats(n * sz);
        if (!m->acts[t] || !m->grads[t]) {
            mm_model_drop_caches(m);
            return mm_oom("training caches");
        }
    }
    /* a second contribution to a tensor read more than once goes through
     * tmp[j] (input j of the node): one buffer per input position, when
     * some tensor fans out */
    size_t *readers = calloc(T, sizeof *readers);
    if (!readers) {
        mm_model_drop_caches(m);
        return mm_oom("training caches");
    }
    bool fans_out = false;
    uint32_t max_inputs = 0;
    readers[m->outputs[0]]++;
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *node = m->nodes[i];
        max_inputs = node->n_inputs > max_inputs ? node->n_inputs : max_inputs;
        for (uint32_t j = 0; j < node->n_inputs; j++) fans_out |= ++readers[node->inputs[j]] > 1;
    }
    free(readers);
    for (uint32_t j = 0; fans_out && j < max_inputs; j++)
        if (!(m->tmp[j] = mm_alloc_floats(n * widest))) {
            mm_model_drop_caches(m);
            return mm_oom("training caches");
        }
    m->cache_n = n;
    return MM_OK;
}

void mm_graph_forward_cached(mm_model *m, const mm_kernels *k, const float *x, size_t n) {
    m->acts[m->inputs[0]] = (float *)(uintptr_t)x; /* read only; never freed */
    const float *xs[MM_NODE_MAX_INPUTS];
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *node = m->nodes[i];
        for (uint32_t j = 0; j < node->n_inputs; j++) xs[j] = m->acts[node->inputs[j]];
        node->vt->forward(node, k, xs, m->acts[node->output], n);
    }
}

static bool trains(const mm_layer *node) { return !node->frozen && node->n_params > 0; }

void mm_graph_backward(mm_model *m, const mm_kernels *k, size_t n, bool param_grads) {
    const size_t T = m->n_tensors;
    /* which tensors need a gradient: those downstream of a trainable node
     * (nothing below the lowest trainable layer of a chain: a frozen body
     * costs its forward pass only); which have one so far */
    bool *need = m->grad_need, *have = m->grad_have;
    for (size_t t = 0; t < T; t++) need[t] = have[t] = false;
    for (size_t i = 0; i < m->n_nodes; i++) {
        const mm_layer *node = m->nodes[i];
        bool nd = trains(node);
        for (uint32_t j = 0; j < node->n_inputs; j++) nd = nd || need[node->inputs[j]];
        need[node->output] = nd;
    }
    have[m->outputs[0]] = true; /* from the loss */
    const float *xs[MM_NODE_MAX_INPUTS];
    float *dxs[MM_NODE_MAX_INPUTS];
    for (size_t i = m->n_nodes; i-- > 0;) {
        mm_layer *node = m->nodes[i];
        if (!have[node->output] || !need[node->output]) continue;
        bool claimed[MM_NODE_MAX_INPUTS] = {false};
        for (uint32_t j = 0; j < node->n_inputs; j++) {
            const uint32_t t = node->inputs[j];
            xs[j] = m->acts[t];
            dxs[j] = NULL;
            if (is_graph_input(m, t) || !need[t]) continue;
            bool taken = have[t];
            for (uint32_t q = 0; q < j; q++) taken = taken || (claimed[q] && node->inputs[q] == t);
            dxs[j] = taken ? m->tmp[j] : m->grads[t];
            claimed[j] = true;
        }
        node->vt->backward(node, k, xs, m->acts[node->output], m->grads[node->output], dxs, n,
                           param_grads && trains(node));
        for (uint32_t j = 0; j < node->n_inputs; j++) {
            if (!dxs[j]) continue;
            const uint32_t t = node->inputs[j];
            if (dxs[j] == m->tmp[j]) {
                float *g = m->grads[t];
                const size_t cnt = n * m->tensors[t].size;
                for (size_t e = 0; e < cnt; e++) g[e] += dxs[j][e];
            }
            have[t] = true;
        }
    }
}

const float *mm_model_layer_input(const mm_model *m, size_t l) {
    return m->acts[m->layers[l]->inputs[0]];
}

const float *mm_model_layer_delta(const mm_model *m, size_t l) {
    return m->grads[m->layers[l]->output];
}

const float *mm_model_cached_output(const mm_model *m) {
    return m->acts ? m->acts[m->outputs[0]] : NULL;
}
