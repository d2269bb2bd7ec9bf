/* Internals of mm_model shared by model/, optim/ and the file format.
 * Never installed. */
#ifndef MM_MODEL_INTERNAL_H
#define MM_MODEL_INTERNAL_H

#include <jansson.h> /* json_t in the save/load hooks (internal header only) */
#include <stdatomic.h>
#include <stdbool.h>

#include "common/mm_internal.h"
#include "kernels/kernels.h"
#include "mm/mm_model.h"

typedef struct mm_layer mm_layer;
/* The model file (model/mmfile.h), for the save/load hooks. */
typedef struct mm_file mm_file;
typedef struct mm_file_writer mm_file_writer;

/* One trainable tensor of a layer. The optimizer walks these; `grad` has the
 * same shape as `data` and is overwritten by each backward pass. */
typedef struct mm_param {
    const char *name; /* "weight", "bias": the suffix of its tensor name in files */
    float *data;
    float *grad;
    size_t rows, cols; /* shape; a vector has rows = count, cols = 1 */
    bool decay;        /* weight decay applies (weights yes, biases no) */
    uint8_t *mask;     /* pruning mask (1 keep, 0 pruned) or NULL; owned by the layer's
                          param, freed with it; optimizers keep masked entries at 0 */
} mm_param;

static inline size_t mm_param_count(const mm_param *p) { return p->rows * p->cols; }

#define MM_LAYER_MAX_PARAMS 4

/* What a layer kind can do, for the code that transforms models (the
 * pruner, the quantizer, exporters, weight I/O) so that it asks for a
 * capability instead of a kind's name. */
enum {
    /* params[0] is the trainable weight matrix "weight" [out, in] (with an
     * optional pruning mask) and params[1] the bias [out]: prunable,
     * shrinkable, quantizable to int8 / fp16 / bf16 */
    MM_CAP_DENSE_WEIGHTS = 1u << 0,
    /* params[0] holds only the stored weights of an out x in matrix, at the
     * dense positions the positions hook gives; params[1] the bias:
     * quantizable to sparse_int8 */
    MM_CAP_STORED_WEIGHTS = 1u << 1,
    /* already quantized: the quantizer leaves it alone; its dense weights
     * come from the effective_weights hook */
    MM_CAP_QUANTIZED = 1u << 2,
    /* a transient training form (quantization-aware training: it holds
     * float weights but computes with fake-quantized ones): formats that
     * must reproduce its outputs refuse it until it is converted */
    MM_CAP_TRAINING_FORM = 1u << 3,
    /* a layer of the layer-index API (mm_model_layer_info, set_trainable,
     * get_weights...): a node with weights, as opposed to the graph's
     * parameterless operators (add, standalone activations) */
    MM_CAP_LAYER = 1u << 4,
};

/* A layer kind: the vtable of its layers and its entry in the registry of
 * kinds model files may name (lib/registry.c). A pruned or quantized layer
 * is a new table, not a new `if`. */
typedef struct mm_layer_vtable {
    const char *kind; /* "dense"; written to model files */
    unsigned caps;    /* MM_CAP_* */
    /* Build layer `index` from its architecture entry (borrowed; the
     * generic fields are already checked and passed as in, out, act and
     * the model's leaky_slope) and its tensors in f. A loader checks the
     * presence, dtype and shape of every tensor it needs
     * (mm_file_tensor_info) BEFORE allocating, so that allocations are
     * bounded by the file's size; MM_E_FORMAT for a missing or misshapen
     * tensor or entry field, MM_E_NUMERIC for non-finite values. On error
     * *out_layer is NULL and nothing is leaked. NULL: the kind is not
     * saved (qat). */
    mm_status (*load)(const mm_file *f, size_t index, const json_t *entry, size_t in, size_t out,
                      mm_activation act, float leaky_slope, mm_layer **out_layer);
    void (*destroy)(mm_layer *layer);
    mm_status (*clone)(const mm_layer *layer, mm_layer **out);
    /* y[n x out] from the inputs x[0 .. n_inputs) (each n x its tensor's
     * size per sample; layers: act(x[0] W^T + b)). Must not touch
     * layer-owned scratch (concurrent inference); y never aliases an
     * input. */
    void (*forward)(const mm_layer *layer, const mm_kernels *k, const float *const *x, float *y,
                    size_t n);
    /* Given the forward inputs x, output y and dy = dLoss/dy (n x out, may
     * be overwritten, e.g. with the delta dLoss/dpre-activation), write
     * dx[i] = dLoss/dx[i] (overwriting) for every input i whose dx[i] is not
     * NULL, and overwrite the parameter gradients when param_grads. */
    void (*backward)(mm_layer *layer, const mm_kernels *k, const float *const *x, const float *y,
                     float *dy, float *const *dx, size_t n, bool param_grads);
    /* Optional (NULL = not supported): plain SGD straight from the deltas,
     * params += neg_lr * dLoss/dparams, without writing gradient buffers:
     * one pass over the weights instead of three for online learning.
     * Layers with one input only. */
    void (*apply_sgd)(mm_layer *layer, const mm_kernels *k, const float *x, const float *delta,
                      size_t n, float neg_lr);
    /* Bytes the parameters take as stored. */
    size_t (*param_bytes)(const mm_layer *layer);
    /* Model files (doc/FORMAT.md): add the kind's own fields to the layer's
     * architecture entry `entry` (which already holds kind, in, out and
     * activation) and the layer's tensors, named "layers.<index>.<name>",
     * to w (their data borrowed until the writer commits). The kind's
     * load reads them back. */
    mm_status (*save)(const mm_layer *layer, size_t index, json_t *entry, mm_file_writer *w);
    /* Optional (NULL = nothing to do): called after an optimizer changed
     * the layer's parameters (every successful step, fused SGD or not), with
     * the same exclusive access. Layers that serve from a form derived from
     * float master parameters (the quantized kinds: int8 weights, packed)
     * re-derive it here. Code that writes mm_params behind the optimizer's
     * back must call it too. */
    void (*after_update)(mm_layer *layer);
    /* Optional (NULL = the order in memory): where each element of
     * params[param] goes in the file's form of that tensor, pos[k] for
     * element k, so that per-parameter tensors saved beside the model
     * (optimizer state) line up with the saved weights. Kinds whose memory
     * layout differs from the file's (sparse: tiled vs CSR) provide it. */
    mm_status (*file_order)(const mm_layer *layer, size_t param, size_t *pos);
    /* Optional (NULL: every value of every parameter counts, "bias" as
     * biases, the rest as weights; a layer without parameters counts
     * in x out weights and out biases): the weights the layer keeps (not
     * pruned, not zero where the kind can tell) and its biases, for
     * mm_model_num_nonzero and mm_model_layer_sparsity. */
    void (*count_nonzero)(const mm_layer *layer, size_t *weights, size_t *biases);
    /* MM_CAP_STORED_WEIGHTS: the dense position (row * in + column) of every
     * value of params[0], pos[k] for value k. */
    mm_status (*positions)(const mm_layer *layer, size_t *pos);
    /* MM_CAP_QUANTIZED: the dense out x in weights and the bias the forward
     * pass computes with (dequantized, widened), or with `master` the float
     * master weights when the layer keeps them. */
    mm_status (*effective_weights)(const mm_layer *layer, bool master, float *w, float *b);
} mm_layer_vtable;

/* The kind of that name, or NULL if this library does not know it
 * (lib/registry.c: every module's kinds). */
const mm_layer_vtable *mm_layer_kind_find(const char *kind);

/* Graph limits: inputs of one node, graph inputs/outputs, dimensions of a
 * tensor's per-sample shape. */
#define MM_NODE_MAX_INPUTS 4
#define MM_GRAPH_MAX_IO 8
#define MM_MAX_RANK 4
#define MM_NO_NODE UINT32_MAX

/* A tensor's per-sample shape: {784}, {1, 28, 28} (C x H x W), {T, D}. */
typedef struct mm_shape {
    uint32_t rank;
    size_t dims[MM_MAX_RANK];
} mm_shape;

/* A value flowing between nodes: a graph input or a node's output. */
typedef struct mm_tensor {
    char *name;        /* unique in the model: "x", "h1", or the builder's */
    mm_shape shape;    /* per sample */
    size_t size;       /* elements per sample */
    uint32_t producer; /* node index, MM_NO_NODE for a graph input */
    /* the plan (graph.c): index of the last node reading it, and its
     * offset in the inference arena, in floats per sample */
    uint32_t last_use;
    size_t arena_off;
} mm_tensor;

/* A node of the graph. Layers (MM_CAP_LAYER) are the nodes with weights;
 * the historical name stays for them and for every node. */
struct mm_layer {
    const mm_layer_vtable *vt;
    size_t in, out; /* per sample: elements of input 0 and of the output */
    mm_activation act;
    float leaky_slope;
    mm_param params[MM_LAYER_MAX_PARAMS];
    size_t n_params;
    /* Owned by the model, not the kind (kind constructors leave them 0):
     * frozen = excluded from training (mm_model_set_trainable); uid = a
     * process-unique identity given when the layer joins a model (0 = none
     * yet), so an optimizer can tell "the same layer" from "a new layer of
     * the same shape" (mm_layer_uid). */
    bool frozen;
    uint64_t uid;
    /* Counts mm_layer_params_changed calls: a write to the parameters. */
    uint64_t version;
    /* Owned by the model: the tensors the node reads and the one it
     * writes (graph.c wires them when the node joins). */
    uint32_t n_inputs;
    uint32_t inputs[MM_NODE_MAX_INPUTS];
    uint32_t output;
};

/* A one-input node's forward and backward with plain pointers (the graph
 * passes arrays of them). */
static inline void mm_layer_forward1(const mm_layer *l, const mm_kernels *k, const float *x,
                                     float *y, size_t n) {
    l->vt->forward(l, k, &x, y, n);
}
static inline void mm_layer_backward1(mm_layer *l, const mm_kernels *k, const float *x,
                                      const float *y, float *dy, float *dx, size_t n,
                                      bool param_grads) {
    l->vt->backward(l, k, &x, y, dy, &dx, n, param_grads);
}

/* Does the layer's kind have capability `cap` (MM_CAP_*)? */
static inline bool mm_layer_has(const mm_layer *l, unsigned cap) {
    return l && (l->vt->caps & cap) != 0;
}

/* The layer's uid, assigning a fresh one first if it has none. */
uint64_t mm_layer_uid(mm_layer *layer);

/* Index of the lowest trainable layer, or n_layers if all are frozen. */
size_t mm_model_lowest_trainable(const mm_model *model);

/* A run of consecutive online steps (mm_optimizer_step) by one optimizer
 * with unchanged settings: one "online_steps" lineage event, kept as plain
 * fields while it grows so that a step costs a few stores, not a JSON
 * round trip (lineage.c). */
typedef struct mm_online_run {
    uint64_t source;       /* the stepping optimizer's uid; 0 = no run open */
    uint64_t settings;     /* its settings generation when the run began */
    const char *optimizer; /* algorithm name (static) */
    uint64_t steps, samples;
    uint64_t first;        /* stream position of the run's first sample */
    double lr, lr_last;    /* scheduled learning rate of the first / last step */
    int64_t t_first, t_last; /* time(NULL) of the first / last step */
} mm_online_run;

struct mm_model {
    size_t input_dim; /* elements per sample of graph input 0 */
    /* The graph (graph.c): every node in topological order, the tensors,
     * the graph's inputs and outputs; layers is the view of the nodes that
     * are layers (MM_CAP_LAYER), in the same order: the layer-index API. */
    mm_layer **nodes;
    size_t n_nodes, cap_nodes;
    mm_layer **layers;
    size_t n_layers, cap_layers;
    mm_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t inputs[MM_GRAPH_MAX_IO], outputs[MM_GRAPH_MAX_IO];
    size_t n_inputs, n_outputs;
    size_t arena_floats; /* per sample: the inference arena of the plan */
    mm_loss loss;
    float leaky_slope;
    uint64_t seed;
    mm_rng init_rng; /* continues across add_dense calls */
    char *lineage;   /* JSON array text of the closed events, never NULL */
    /* The open run of online steps (run.source != 0) is not in `lineage`
     * yet: readers see lineage + run through mm_lineage_text, which caches
     * the combined text in lineage_view (built on demand by const readers,
     * so atomic; freed by whoever mutates the lineage or the run, who has
     * exclusive access). online_pos counts the samples of all online steps
     * recorded so far (from the lineage's last online_steps event on load). */
    mm_online_run run;
    uint64_t online_pos;
    _Atomic(char *) lineage_view;
    /* The mm_server snapshot this model is the content of (set once by
     * lib/maintain/server.c on its own clones before publishing them, NULL
     * for every other model; clones do not copy it). */
    void *snapshot;

    /* Training caches (mm_model_backprop), per tensor t: acts[t] its value
     * (the caller's x for graph input 0), grads[t] dLoss/dt, left as the
     * delta of the node that produced it (dLoss/d(pre-activation) for
     * layers); tmp holds a node's second contribution to a tensor that
     * fans out. Sized for cache_n samples. */
    size_t cache_n;
    float **acts;
    float **grads;
    float *tmp[MM_NODE_MAX_INPUTS];
    bool *grad_need, *grad_have; /* per tensor, for one backward pass */
};

/* ---- the graph (graph.c) ---- */

/* Set up an empty graph with one input tensor "x" of input_dim values. */
mm_status mm_graph_init(mm_model *m, size_t input_dim);
void mm_graph_free(mm_model *m);

/* Append node `node` (owned by the model on success) reading the tensors
 * inputs[0 .. n_inputs) and writing a new tensor named `output` (NULL: a
 * generated name) of per-sample shape `shape` (NULL: {node->out}). The
 * new tensor becomes graph output 0. MM_E_SHAPE if node->in is not the
 * size of inputs[0]; MM_E_INVALID_ARGUMENT for a name in use. */
mm_status mm_graph_append(mm_model *m, mm_layer *node, const uint32_t *inputs, size_t n_inputs,
                          const char *output, const mm_shape *shape);

/* The tensor of that name, or MM_NO_NODE. */
uint32_t mm_graph_find(const mm_model *m, const char *name);

/* Replace node `index` by `node` (the rewrite transaction: quantization,
 * structured pruning, head replacement): the new node takes the old one's
 * wiring, uid and frozen flag, the old one is destroyed, caches dropped,
 * the plan redone (the output tensor's size follows node->out). node->in
 * must equal the size of its input tensor. */
mm_status mm_graph_replace(mm_model *m, size_t index, mm_layer *node);

/* Put `node` in the place of layer l (of the view) and give back the node
 * that was there, not destroyed: wiring, uid and frozen flag carry over
 * (the quantizer tries forms of a layer in turn). Same in and out widths;
 * caches dropped. */
mm_layer *mm_graph_swap_layer(mm_model *m, size_t l, mm_layer *node);

/* Redo the plan after widths changed (structured pruning): tensor sizes
 * from their producers, lifetimes, the arena, the layer view. */
mm_status mm_graph_replan(mm_model *m);

/* Is the graph a chain of layers, each reading the previous one's output
 * (every model built with the layer API)? Code that relates layer l to
 * layer l + 1 (structured pruning, truncation) needs one. */
bool mm_graph_is_chain(const mm_model *m);

/* Node index of layer `l` of the view. */
size_t mm_graph_node_of_layer(const mm_model *m, size_t l);

/* Inference over n samples into out (graph output 0), with scratch of
 * n * m->arena_floats floats. Cannot fail. */
void mm_graph_forward(const mm_model *m, const mm_kernels *k, const float *x, size_t n,
                      float *out, float *scratch);

/* Training: the forward pass into the caches (sized for n by
 * mm_graph_ensure_caches), then, given dLoss/d(graph output 0) in
 * m->grads[m->outputs[0]], the backward pass down to what trainable nodes
 * need; parameter gradients of trainable layers when param_grads. */
mm_status mm_graph_ensure_caches(mm_model *m, size_t n);
void mm_graph_forward_cached(mm_model *m, const mm_kernels *k, const float *x, size_t n);
void mm_graph_backward(mm_model *m, const mm_kernels *k, size_t n, bool param_grads);

/* After a training forward pass: the input of layer l and its delta (the
 * gradient of its output as backward left it), n x in / n x out; the
 * graph's output. */
const float *mm_model_layer_input(const mm_model *m, size_t l);
const float *mm_model_layer_delta(const mm_model *m, size_t l);
const float *mm_model_cached_output(const mm_model *m);

/* Dense layer constructor (weights uninitialised when rng is NULL). */
mm_status mm_dense_create(mm_layer **out, size_t in, size_t out_dim, mm_activation act,
                          float leaky_slope, mm_init init, mm_rng *rng);
/* The dense kind (dense.c), listed in lib/registry.c. */
extern const mm_layer_vtable mm_dense_kind;

/* ---- a layer as dense weights (weights.c): what weight I/O and the
 * exporters use, whatever the kind ---- */

/* params[0] is W [out, in] and params[1] the bias [out]. */
bool mm_layer_holds_matrix(const mm_layer *l);

/* Layer `l` as the dense layer it computes: weight [out x in] row-major and
 * bias [out], as floats. MM_CAP_DENSE_WEIGHTS layers (and others holding
 * the matrix, qat) lend their own parameters (pruned positions are already
 * 0); MM_CAP_STORED_WEIGHTS layers are scattered into a new zeroed matrix;
 * quantized layers give their float master weights when they keep them,
 * else their dequantized weights. Borrowed data stay valid while the layer
 * is not mutated. MM_E_UNSUPPORTED for a kind without dense weights. Free
 * with mm_dense_view_free (safe on a zeroed view and after an error). */
typedef struct mm_dense_view {
    const float *weight, *bias;
    float *owned; /* weight and bias buffer this view allocated, or NULL */
} mm_dense_view;

mm_status mm_dense_view_get(const mm_layer *l, mm_dense_view *v);
void mm_dense_view_free(mm_dense_view *v);

/* The weights the forward pass computes with into w (out x in) and b
 * (out): as the view, but quantized layers give their dequantized weights
 * even when they keep masters. */
mm_status mm_layer_effective_weights(const mm_layer *l, float *w, float *b);

/* Apply / differentiate an activation in place over count values. The
 * derivative is expressed through the activation's output y. */
void mm_activation_forward(mm_activation act, float slope, float *y, size_t count);
void mm_activation_backward(mm_activation act, float slope, const float *y, float *dy,
                            size_t count);

/* Largest layer width (including input_dim). */
size_t mm_model_max_width(const mm_model *model);

/* Validate targets for a loss and n samples; MM_E_* with a message. */
mm_status mm_check_targets(const mm_model *model, const int32_t *labels, const float *targets,
                           size_t n);

/* Loss over logits[n x c]: returns mean loss; when grad != NULL writes
 * dLoss/dlogits (already divided by n). Counts correct predictions into
 * *correct when labels given. */
double mm_loss_compute(mm_loss loss, const float *logits, const int32_t *labels,
                       const float *targets, size_t n, size_t c, float *grad, size_t *correct);

/* Append a lineage event built by the caller as a JSON object text without
 * time; "op" and "time" are added. */
mm_status mm_lineage_append(mm_model *model, const char *op, const char *detail_json);

/* Replace the lineage array wholesale (used by load); takes a JSON array
 * text. Drops an open run of online steps; online positions continue after
 * the text's last online_steps event. */
mm_status mm_lineage_set(mm_model *model, const char *array_json);

/* The whole lineage as JSON text: the closed events plus the open run of
 * online steps, if any, as its "online_steps" event. Owned by the model,
 * valid until the model is next mutated. Safe from many threads on a model
 * nobody mutates. NULL (MM_E_OUT_OF_MEMORY recorded) if building the text
 * of an open run fails. Every reader of the lineage goes through this. */
const char *mm_lineage_text(const mm_model *model);

/* Online steps (mm_optimizer_step). Before a step by optimizer `source`
 * (a process-unique id) whose settings generation is `settings`:
 * mm_lineage_begin_steps closes an open run of another optimizer or of other
 * settings (the only part that can fail: MM_E_OUT_OF_MEMORY, nothing
 * changed). After the step succeeded: mm_lineage_note_steps extends the
 * open run by one step of n samples at learning rate lr, or opens one
 * (cannot fail; a few stores). Any other event appended closes the run. */
mm_status mm_lineage_begin_steps(mm_model *model, uint64_t source, uint64_t settings);
void mm_lineage_note_steps(mm_model *model, uint64_t source, uint64_t settings,
                           const char *optimizer, double lr, size_t n);

/* Free the cached combined text (model.c's free; lineage.c's writers). */
void mm_lineage_drop_view(mm_model *model);

/* Forward and backward over a batch that leaves the deltas (and acts) in
 * the caches; with param_grads also the parameter gradients of trainable
 * layers. Deltas are computed down to the lowest trainable layer only
 * (mm_model_lowest_trainable); nothing below it. Loss as
 * mm_model_backward. */
mm_status mm_model_backprop(mm_model *model, const float *x, const int32_t *labels,
                            const float *targets, size_t n, bool param_grads, double *loss);

/* True if every trainable layer supports the fused SGD update. */
bool mm_model_can_apply_sgd(const mm_model *model);

/* Tell a layer its parameters were written (by an optimizer, set_weights,
 * a restore): kinds that serve from a derived form re-derive it. */
static inline void mm_layer_params_changed(mm_layer *layer) {
    layer->version++; /* optimizers re-measure cached weight bounds */
    if (layer->vt->after_update) layer->vt->after_update(layer);
}

/* Free the training caches (they are rebuilt on the next backward pass).
 * Whoever changes layer widths or swaps layers calls this. */
void mm_model_drop_caches(mm_model *model);

/* A model spec ("784-256-128-10:relu", mm_model_create_from_spec) parsed:
 * widths[0] is the input width, widths[1..count) the layers' widths; the
 * hidden layers use `act`, the last one identity. MM_E_INVALID_ARGUMENT
 * naming the offending part (spec.c). */
#define MM_SPEC_MAX_LAYERS 64
typedef struct mm_spec {
    size_t widths[MM_SPEC_MAX_LAYERS + 1];
    size_t count;
    mm_activation act;
    mm_init init;
    mm_loss loss;
} mm_spec;
mm_status mm_spec_parse(const char *spec, mm_spec *out);

/* Append a layer that is already built (takes ownership on success). */
mm_status mm_model_push_layer(mm_model *model, mm_layer *layer);

#endif
