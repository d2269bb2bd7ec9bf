/* ONNX export and import of feed-forward models (include/mm/mm_onnx.h,
 * doc/ONNX.md). The protobuf codec is generated at build time by protoc-c
 * from the system's onnx.proto (lib/migrate/meson.build); this file maps
 * between ONNX graphs and mmaint layers.
 *
 * Export builds an Onnx__ModelProto whose strings and arrays live in an
 * arena (freed in one go), packs it and writes it with the model file's
 * atomic writer (mm_file_write_atomic).
 *
 * Import never trusts the file: before protobuf-c sees it, a walk over the
 * wire format guided by the generated descriptors bounds the nesting depth
 * (protobuf-c recurses once per nested message, so a file of nested
 * messages could otherwise exhaust the stack); then every initializer's
 * dims, dtype and data length are checked before anything is read, the
 * graph must be one chain from the input to the output (found with sorted
 * name tables, so hostile node counts cost n log n), and each node is
 * mapped or refused with a message naming it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "mm/mm_onnx.h"

#ifdef MM_HAVE_ONNX

#include <jansson.h>

#include "model/mmfile.h"
#include "model/model_internal.h"
#include "onnx.pb-c.h"
#include "quant/quant_internal.h" /* int8 / fp16 / bf16 layer kinds */

/* What export writes and import accepts. */
#define OX_EXPORT_OPSET 13
#define OX_EXPORT_IR 7
#define OX_MIN_OPSET 13
#define OX_MAX_OPSET 21
#define OX_MAX_DEPTH 64  /* protobuf nesting; our graphs need 7 */
#define OX_MAX_DIMS 8
#define OX_NAME_CAP 96

enum {
    OX_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
    OX_UINT8 = ONNX__TENSOR_PROTO__DATA_TYPE__UINT8,
    OX_INT8 = ONNX__TENSOR_PROTO__DATA_TYPE__INT8,
    OX_INT32 = ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
    OX_INT64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
};

static const char *dtype_name(int32_t t) {
    switch (t) {
    case 1: return "float";
    case 2: return "uint8";
    case 3: return "int8";
    case 4: return "uint16";
    case 5: return "int16";
    case 6: return "int32";
    case 7: return "int64";
    case 8: return "string";
    case 9: return "bool";
    case 10: return "float16";
    case 11: return "double";
    case 12: return "uint32";
    case 13: return "uint64";
    case 16: return "bfloat16";
    default: return "an unknown type";
    }
}

static bool host_is_le(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ------------------------------------------------------------------------
 * export
 * ---------------------------------------------------------------------- */

/* Every allocation of the message being built; freed together. */
typedef struct arena {
    void **p;
    size_t n, cap;
    bool failed;
} arena;

static void *a_alloc(arena *a, size_t count, size_t size) {
    if (a->failed) return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        void **p = mm_malloc_array(cap, sizeof *p);
        if (!p) {
            a->failed = true;
            return NULL;
        }
        if (a->n) memcpy(p, a->p, a->n * sizeof *p);
        free(a->p);
        a->p = p;
        a->cap = cap;
    }
    void *x = mm_calloc_array(count ? count : 1, size);
    if (!x) {
        a->failed = true;
        return NULL;
    }
    a->p[a->n++] = x;
    return x;
}

static char *a_printf(arena *a, const char *fmt, ...) MM_PRINTF(2, 3);
static char *a_printf(arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        a->failed = true;
        return NULL;
    }
    char *s = a_alloc(a, (size_t)n + 1, 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void a_free(arena *a) {
    for (size_t i = 0; i < a->n; i++) free(a->p[i]);
    free(a->p);
}

/* Growable pointer list inside the arena (nodes, initializers, ...). */
typedef struct plist {
    void **v;
    size_t n, cap;
} plist;

static bool pl_push(arena *a, plist *l, void *x) {
    if (!x) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void **v = a_alloc(a, cap, sizeof *v);
        if (!v) return false;
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

typedef struct exporter {
    arena a;
    plist nodes, inits, meta;
} exporter;

/* An initializer with raw little-endian data (count elements of elsize
 * bytes from host memory). */
static bool ex_tensor(exporter *e, const char *name, int32_t dtype, const void *data,
                      size_t elsize, const int64_t *dims, size_t ndim) {
    Onnx__TensorProto *t = a_alloc(&e->a, 1, sizeof *t);
    if (!t) return false;
    onnx__tensor_proto__init(t);
    size_t count = 1;
    for (size_t i = 0; i < ndim; i++) count *= (size_t)dims[i];
    t->name = a_printf(&e->a, "%s", name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = ndim;
    t->dims = a_alloc(&e->a, ndim, sizeof *t->dims);
    unsigned char *raw = a_alloc(&e->a, count * elsize, 1);
    if (!t->name || !t->dims || !raw) return false;
    if (ndim) memcpy(t->dims, dims, ndim * sizeof *dims);
    const unsigned char *src = data;
    if (elsize == 1 || host_is_le()) {
        memcpy(raw, src, count * elsize);
    } else {
        for (size_t i = 0; i < count; i++)
            for (size_t b = 0; b < elsize; b++) raw[i * elsize + b] = src[i * elsize + elsize - 1 - b];
    }
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = count * elsize;
    return pl_push(&e->a, &e->inits, t);
}

static Onnx__AttributeProto *ex_attr_i(exporter *e, const char *name, int64_t v) {
    Onnx__AttributeProto *at = a_alloc(&e->a, 1, sizeof *at);
    if (!at) return NULL;
    onnx__attribute_proto__init(at);
    at->name = a_printf(&e->a, "%s", name);
    at->has_type = 1;
    at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    at->has_i = 1;
    at->i = v;
    return at->name ? at : NULL;
}

static Onnx__AttributeProto *ex_attr_f(exporter *e, const char *name, float v) {
    Onnx__AttributeProto *at = a_alloc(&e->a, 1, sizeof *at);
    if (!at) return NULL;
    onnx__attribute_proto__init(at);
    at->name = a_printf(&e->a, "%s", name);
    at->has_type = 1;
    at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    at->has_f = 1;
    at->f = v;
    return at->name ? at : NULL;
}

/* A node with n_in inputs (NULL entries allowed at the end: dropped), one
 * output and up to two attributes. */
static bool ex_node(exporter *e, const char *name, const char *op, const char *const *in,
                    size_t n_in, const char *out, Onnx__AttributeProto *a0,
                    Onnx__AttributeProto *a1) {
    Onnx__NodeProto *nd = a_alloc(&e->a, 1, sizeof *nd);
    if (!nd) return false;
    onnx__node_proto__init(nd);
    while (n_in > 0 && !in[n_in - 1]) n_in--;
    nd->name = a_printf(&e->a, "%s", name);
    nd->op_type = a_printf(&e->a, "%s", op);
    nd->input = a_alloc(&e->a, n_in, sizeof(char *));
    nd->output = a_alloc(&e->a, 1, sizeof(char *));
    nd->attribute = a_alloc(&e->a, 2, sizeof(Onnx__AttributeProto *));
    if (!nd->name || !nd->op_type || !nd->input || !nd->output || !nd->attribute) return false;
    for (size_t i = 0; i < n_in; i++)
        if (!(nd->input[i] = a_printf(&e->a, "%s", in[i]))) return false;
    nd->n_input = n_in;
    if (!(nd->output[0] = a_printf(&e->a, "%s", out))) return false;
    nd->n_output = 1;
    if (a0) nd->attribute[nd->n_attribute++] = a0;
    if (a1) nd->attribute[nd->n_attribute++] = a1;
    return pl_push(&e->a, &e->nodes, nd);
}

static bool ex_meta(exporter *e, const char *key, const char *value) {
    if (!value) return false; /* a value that could not be built: out of memory */
    Onnx__StringStringEntryProto *m = a_alloc(&e->a, 1, sizeof *m);
    if (!m) return false;
    onnx__string_string_entry_proto__init(m);
    m->key = a_printf(&e->a, "%s", key);
    m->value = a_printf(&e->a, "%s", value);
    return m->key && m->value && pl_push(&e->a, &e->meta, m);
}

/* A float [batch, width] tensor type. */
static Onnx__ValueInfoProto *ex_value_info(exporter *e, const char *name, size_t width) {
    Onnx__ValueInfoProto *vi = a_alloc(&e->a, 1, sizeof *vi);
    Onnx__TypeProto *tp = a_alloc(&e->a, 1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = a_alloc(&e->a, 1, sizeof *tt);
    Onnx__TensorShapeProto *sh = a_alloc(&e->a, 1, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = a_alloc(&e->a, 2, sizeof *dims);
    Onnx__TensorShapeProto__Dimension *d0 = a_alloc(&e->a, 1, sizeof *d0);
    Onnx__TensorShapeProto__Dimension *d1 = a_alloc(&e->a, 1, sizeof *d1);
    if (!vi || !tp || !tt || !sh || !dims || !d0 || !d1) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    onnx__tensor_shape_proto__dimension__init(d0);
    onnx__tensor_shape_proto__dimension__init(d1);
    d0->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    d0->dim_param = a_printf(&e->a, "batch");
    d1->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d1->dim_value = (int64_t)width;
    dims[0] = d0;
    dims[1] = d1;
    sh->n_dim = 2;
    sh->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = OX_FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = a_printf(&e->a, "%s", name);
    vi->type = tp;
    return vi->name && d0->dim_param ? vi : NULL;
}

/* The float weights a layer's forward pass uses, as a dense [out, in]
 * matrix (zeros where a sparse layer stores nothing), and its bias. */
static mm_status effective_dense(const mm_layer *l, size_t index, float *w, float *b) {
    if (mm_layer_has(l, MM_CAP_TRAINING_FORM)) /* float weights, fake-quantized outputs */
        return mm_error(MM_E_UNSUPPORTED, "layer %zu: kind %s has no ONNX form (finish "
                        "quantization-aware training with mm_quantizer_apply first)",
                        index, l->vt->kind);
    mm_status st = mm_layer_effective_weights(l, w, b);
    return st == MM_OK ? MM_OK : mm_error_prefix(st, "layer %zu: no ONNX form: ", index);
}

static bool check_finite_all(const float *v, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            *bad = i;
            return false;
        }
    return true;
}

/* Append the nodes of layer `i` reading tensor `x`, producing `y`. */
static mm_status export_layer(exporter *e, const mm_model *m, size_t i, const char *x,
                              const char *y) {
    const mm_layer *l = m->layers[i];
    const size_t in = l->in, out = l->out;
    char n_w[OX_NAME_CAP], n_b[OX_NAME_CAP], n_lin[OX_NAME_CAP], n_node[OX_NAME_CAP];
    snprintf(n_w, sizeof n_w, "layers.%zu.weight", i);
    snprintf(n_b, sizeof n_b, "layers.%zu.bias", i);
    snprintf(n_lin, sizeof n_lin, "layers.%zu.linear", i);
    const int64_t d_w[2] = {(int64_t)out, (int64_t)in}, d_b[1] = {(int64_t)out};
    const char *gemm_x = x;
    char n_xq[OX_NAME_CAP], n_xdq[OX_NAME_CAP];
    mm_status st = MM_OK;
    bool ok = true;
    size_t bad;

    if (mm_qlayer_has_int8(l)) {
        mm_qlayer_int8 d;
        st = mm_qlayer_int8_describe(l, &d);
        if (st != MM_OK) return mm_error_prefix(st, "layer %zu", i);
        if (!check_finite_all(d.bias, out, &bad))
            return mm_error(MM_E_NUMERIC, "layer %zu bias[%zu] is not finite", i, bad);
        char n_q[OX_NAME_CAP], n_s[OX_NAME_CAP], n_z[OX_NAME_CAP], key[OX_NAME_CAP];
        snprintf(n_q, sizeof n_q, "layers.%zu.weight_q", i);
        snprintf(n_s, sizeof n_s, "layers.%zu.weight_scale", i);
        snprintf(n_z, sizeof n_z, "layers.%zu.weight_zero_point", i);
        const size_t ns = d.per_channel ? out : 1;
        ok = ex_tensor(e, n_q, OX_INT8, d.weight_q, 1, d_w, 2) &&
             ex_tensor(e, n_s, OX_FLOAT, d.weight_scale, 4, d_b, d.per_channel ? 1 : 0);
        if (ok && !d.weight_symmetric) {
            int8_t *zp = a_alloc(&e->a, ns, 1);
            ok = zp != NULL;
            for (size_t o = 0; ok && o < ns; o++) zp[o] = (int8_t)d.weight_zp[o];
            ok = ok && ex_tensor(e, n_z, OX_INT8, zp, 1, d_b, d.per_channel ? 1 : 0);
        }
        const char *dq_in[3] = {n_q, n_s, d.weight_symmetric ? NULL : n_z};
        snprintf(n_node, sizeof n_node, "layers.%zu.dequantize_weight", i);
        ok = ok && ex_node(e, n_node, "DequantizeLinear", dq_in, 3, n_w,
                           d.per_channel ? ex_attr_i(e, "axis", 0) : NULL, NULL);
        ok = ok && ex_tensor(e, n_b, OX_FLOAT, d.bias, 4, d_b, 1);
        const char *scheme = d.scheme == MM_QUANT_INT8_WEIGHT_ONLY ? "weight_only"
                             : d.scheme == MM_QUANT_INT8_DYNAMIC   ? "dynamic"
                                                                   : "static";
        snprintf(key, sizeof key, "mmaint.layers.%zu.scheme", i);
        ok = ok && ex_meta(e, key, scheme);
        if (ok && d.scheme == MM_QUANT_INT8_STATIC) {
            char n_xs[OX_NAME_CAP], n_xz[OX_NAME_CAP], val[96];
            snprintf(n_xs, sizeof n_xs, "layers.%zu.input_scale", i);
            snprintf(n_xz, sizeof n_xz, "layers.%zu.input_zero_point", i);
            snprintf(n_xq, sizeof n_xq, "layers.%zu.input_q", i);
            snprintf(n_xdq, sizeof n_xdq, "layers.%zu.input_dq", i);
            const uint8_t xz = (uint8_t)d.x_zp;
            ok = ex_tensor(e, n_xs, OX_FLOAT, &d.x_scale, 4, NULL, 0) &&
                 ex_tensor(e, n_xz, OX_UINT8, &xz, 1, NULL, 0);
            const char *q_in[3] = {x, n_xs, n_xz}, *dq2_in[3] = {n_xq, n_xs, n_xz};
            snprintf(n_node, sizeof n_node, "layers.%zu.quantize_input", i);
            ok = ok && ex_node(e, n_node, "QuantizeLinear", q_in, 3, n_xq, NULL, NULL);
            snprintf(n_node, sizeof n_node, "layers.%zu.dequantize_input", i);
            ok = ok && ex_node(e, n_node, "DequantizeLinear", dq2_in, 3, n_xdq, NULL, NULL);
            gemm_x = n_xdq;
            /* the calibrated range, so that import rebuilds the same layer */
            snprintf(key, sizeof key, "mmaint.layers.%zu.input_range", i);
            snprintf(val, sizeof val, "%a,%a", (double)d.in_lo, (double)d.in_hi);
            ok = ok && ex_meta(e, key, val);
            snprintf(key, sizeof key, "mmaint.layers.%zu.act_symmetric", i);
            ok = ok && ex_meta(e, key, d.act_symmetric ? "true" : "false");
        }
    } else {
        float *w = a_alloc(&e->a, in * out, sizeof *w), *b = a_alloc(&e->a, out, sizeof *b);
        if (!w || !b) return mm_oom("layer weights");
        st = effective_dense(l, i, w, b);
        if (st != MM_OK) return st;
        if (!check_finite_all(w, in * out, &bad))
            return mm_error(MM_E_NUMERIC, "layer %zu weight[%zu] is not finite", i, bad);
        if (!check_finite_all(b, out, &bad))
            return mm_error(MM_E_NUMERIC, "layer %zu bias[%zu] is not finite", i, bad);
        ok = ex_tensor(e, n_w, OX_FLOAT, w, 4, d_w, 2) && ex_tensor(e, n_b, OX_FLOAT, b, 4, d_b, 1);
    }

    const char *op = NULL;
    switch (l->act) {
    case MM_ACT_IDENTITY: break;
    case MM_ACT_RELU: op = "Relu"; break;
    case MM_ACT_LEAKY_RELU: op = "LeakyRelu"; break;
    case MM_ACT_TANH: op = "Tanh"; break;
    case MM_ACT_SIGMOID: op = "Sigmoid"; break;
    }
    const char *g_in[3] = {gemm_x, n_w, n_b};
    snprintf(n_node, sizeof n_node, "layers.%zu.gemm", i);
    ok = ok && ex_node(e, n_node, "Gemm", g_in, 3, op ? n_lin : y, ex_attr_i(e, "transB", 1), NULL);
    if (ok && op) {
        const char *a_in[1] = {n_lin};
        snprintf(n_node, sizeof n_node, "layers.%zu.activation", i);
        ok = ex_node(e, n_node, op, a_in, 1, y,
                     l->act == MM_ACT_LEAKY_RELU ? ex_attr_f(e, "alpha", l->leaky_slope) : NULL,
                     NULL);
    }
    return ok ? MM_OK : mm_oom("ONNX graph");
}

typedef struct buf_ctx {
    const void *p;
    size_t n;
} buf_ctx;

static mm_status buf_fill(FILE *fp, const char *tmp, void *ctx) {
    const buf_ctx *b = ctx;
    return mm_file_write_all(fp, b->p, b->n, tmp);
}

static mm_status export_model(const mm_model *m, const char *path) {
    if (m->n_layers == 0) return mm_error(MM_E_STATE, "model has no layers");
    exporter e = {0};
    mm_status st = MM_OK;
    const bool softmax = m->loss == MM_LOSS_SOFTMAX_XENT;
    const char *out_name = softmax ? "probabilities" : "output";
    char prev[OX_NAME_CAP] = "input", cur[OX_NAME_CAP];
    for (size_t i = 0; i < m->n_layers && st == MM_OK; i++) {
        if (i + 1 == m->n_layers && !softmax) snprintf(cur, sizeof cur, "%s", out_name);
        else snprintf(cur, sizeof cur, "layers.%zu.output", i);
        st = export_layer(&e, m, i, prev, cur);
        memcpy(prev, cur, sizeof prev);
    }
    if (st == MM_OK && softmax) {
        const char *s_in[1] = {prev};
        if (!ex_node(&e, "softmax", "Softmax", s_in, 1, out_name, ex_attr_i(&e, "axis", 1), NULL))
            st = mm_oom("ONNX graph");
    }
    char slope[64];
    snprintf(slope, sizeof slope, "%a", (double)m->leaky_slope);
    if (st == MM_OK &&
        !(ex_meta(&e, "mmaint.leaky_slope", slope) &&
          ex_meta(&e, "mmaint.loss", mm_loss_name(m->loss)) &&
          ex_meta(&e, "mmaint.lineage", mm_lineage_text(m))))
        st = mm_oom("ONNX metadata");

    unsigned char *packed = NULL;
    if (st == MM_OK) {
        Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
        opset.domain = (char *)"";
        opset.has_version = 1;
        opset.version = OX_EXPORT_OPSET;
        Onnx__OperatorSetIdProto *opsets[1] = {&opset};
        Onnx__ValueInfoProto *vin = ex_value_info(&e, "input", m->input_dim);
        Onnx__ValueInfoProto *vout = ex_value_info(&e, out_name, mm_model_output_dim(m));
        Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
        g.name = (char *)"mmaint";
        g.n_node = e.nodes.n;
        g.node = (Onnx__NodeProto **)e.nodes.v;
        g.n_initializer = e.inits.n;
        g.initializer = (Onnx__TensorProto **)e.inits.v;
        g.n_input = 1;
        g.input = &vin;
        g.n_output = 1;
        g.output = &vout;
        Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
        mp.has_ir_version = 1;
        mp.ir_version = OX_EXPORT_IR;
        mp.n_opset_import = 1;
        mp.opset_import = opsets;
        mp.producer_name = (char *)"mmaint";
        mp.producer_version = (char *)MM_VERSION_STRING;
        mp.doc_string = (char *)(softmax ? "mmaint feed-forward model; output: class probabilities "
                                           "(softmax of the logits)"
                                         : "mmaint feed-forward model; output: raw outputs");
        mp.graph = &g;
        mp.n_metadata_props = e.meta.n;
        mp.metadata_props = (Onnx__StringStringEntryProto **)e.meta.v;
        if (!vin || !vout || e.a.failed) {
            st = mm_oom("ONNX graph");
        } else {
            size_t size = onnx__model_proto__get_packed_size(&mp);
            if (size > (size_t)INT32_MAX) {
                st = mm_error(MM_E_UNSUPPORTED,
                              "the ONNX file would take %zu bytes, beyond protobuf's 2 GB limit "
                              "(external data is not supported)",
                              size);
            } else if (!(packed = malloc(size ? size : 1))) {
                st = mm_oom("ONNX file buffer");
            } else {
                onnx__model_proto__pack(&mp, packed);
                buf_ctx c = {packed, size};
                st = mm_file_write_atomic(path, buf_fill, &c);
            }
        }
    }
    free(packed);
    a_free(&e.a);
    return st;
}

/* ------------------------------------------------------------------------
 * import: wire-format depth check
 * ---------------------------------------------------------------------- */

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return false;
        const uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* 0 ok, 1 malformed, 2 too deep. Recursion is bounded by OX_MAX_DEPTH. */
static int wire_check(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
                      int depth) {
    if (depth > OX_MAX_DEPTH) return 2;
    while (p < end) {
        uint64_t key, len;
        if (!wire_varint(&p, end, &key)) return 1;
        switch (key & 7) {
        case 0:
            if (!wire_varint(&p, end, &len)) return 1;
            break;
        case 1:
            if ((size_t)(end - p) < 8) return 1;
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4) return 1;
            p += 4;
            break;
        case 2: {
            if (!wire_varint(&p, end, &len) || len > (uint64_t)(end - p)) return 1;
            const uint64_t field = key >> 3;
            const ProtobufCFieldDescriptor *f =
                field <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(d, (unsigned)field)
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int r = wire_check(p, p + len, f->descriptor, depth + 1);
                if (r) return r;
            }
            p += len;
            break;
        }
        default:
            return 1; /* groups (3, 4) and invalid wire types */
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * import: tensors
 * ---------------------------------------------------------------------- */

/* A checked constant tensor: dims valid, data present and of the right
 * length for its dtype. */
typedef struct ctensor {
    const char *name;
    int32_t dtype;
    size_t ndim;
    size_t dims[OX_MAX_DIMS];
    size_t count;
    const Onnx__TensorProto *t;
} ctensor;

static size_t dtype_size(int32_t t) {
    switch (t) {
    case OX_FLOAT: case OX_INT32: return 4;
    case OX_INT8: case OX_UINT8: return 1;
    case OX_INT64: return 8;
    default: return 0;
    }
}

/* `what` describes the tensor in messages ("initializer 'w'", "attribute
 * 'value' of node 'c' (Constant)"). */
static mm_status ctensor_check(const Onnx__TensorProto *t, const char *what, ctensor *c) {
    memset(c, 0, sizeof *c);
    c->t = t;
    c->name = t->name ? t->name : "";
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return mm_error(MM_E_UNSUPPORTED, "%s: external data is not supported", what);
    if (t->n_external_data) return mm_error(MM_E_UNSUPPORTED, "%s: external data is not supported", what);
    if (t->segment) return mm_error(MM_E_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (!t->has_data_type) return mm_error(MM_E_FORMAT, "%s has no data type", what);
    c->dtype = t->data_type;
    const size_t es = dtype_size(c->dtype);
    if (!es)
        return mm_error(MM_E_UNSUPPORTED, "%s has data type %s (%d): not supported", what,
                        dtype_name(c->dtype), (int)c->dtype);
    if (t->n_dims > OX_MAX_DIMS)
        return mm_error(MM_E_UNSUPPORTED, "%s has %zu dimensions (at most %d)", what, t->n_dims,
                        OX_MAX_DIMS);
    c->ndim = t->n_dims;
    size_t count = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0)
            return mm_error(MM_E_FORMAT, "%s: dimension %zu is negative (%lld)", what, i,
                            (long long)t->dims[i]);
        if ((uint64_t)t->dims[i] > SIZE_MAX || !mm_mul_ok(count, (size_t)t->dims[i], &count) ||
            count > SIZE_MAX / 8)
            return mm_error(MM_E_FORMAT, "%s: dimensions overflow", what);
        c->dims[i] = (size_t)t->dims[i];
    }
    c->count = count;
    size_t have;
    const char *src;
    if (t->has_raw_data) {
        if (t->raw_data.len != count * es)
            return mm_error(MM_E_FORMAT,
                            "%s: raw data holds %zu bytes, its dims need %zu (%zu x %zu bytes)",
                            what, t->raw_data.len, count * es, count, es);
        if (t->n_float_data || t->n_int32_data || t->n_int64_data)
            return mm_error(MM_E_FORMAT, "%s holds both raw and typed data", what);
        return MM_OK;
    }
    switch (c->dtype) {
    case OX_FLOAT: have = t->n_float_data; src = "float_data"; break;
    case OX_INT64: have = t->n_int64_data; src = "int64_data"; break;
    default: have = t->n_int32_data; src = "int32_data"; break;
    }
    if (have != count)
        return mm_error(MM_E_FORMAT, "%s: %s holds %zu values, its dims need %zu", what, src, have,
                        count);
    return MM_OK;
}

static uint64_t rd_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t b = 0; b < n; b++) v |= (uint64_t)p[b] << (8 * b);
    return v;
}

static float ct_f32(const ctensor *c, size_t i) {
    if (!c->t->has_raw_data) return c->t->float_data[i];
    uint32_t u = (uint32_t)rd_le(c->t->raw_data.data + 4 * i, 4);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int64_t ct_int(const ctensor *c, size_t i) {
    const bool raw = c->t->has_raw_data;
    switch (c->dtype) {
    case OX_INT8: return raw ? (int8_t)c->t->raw_data.data[i] : (int8_t)c->t->int32_data[i];
    case OX_UINT8: return raw ? c->t->raw_data.data[i] : (uint8_t)c->t->int32_data[i];
    case OX_INT32: return raw ? (int32_t)(uint32_t)rd_le(c->t->raw_data.data + 4 * i, 4)
                              : c->t->int32_data[i];
    case OX_INT64: return raw ? (int64_t)rd_le(c->t->raw_data.data + 8 * i, 8)
                              : c->t->int64_data[i];
    default: return 0;
    }
}

/* ------------------------------------------------------------------------
 * import: the graph
 * ---------------------------------------------------------------------- */

typedef struct name_ref {
    const char *name;
    size_t idx;
} name_ref;

static int name_ref_cmp(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* First entry named `name` in a sorted table, or NULL. */
static const name_ref *nr_find(const name_ref *v, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].name, name) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && strcmp(v[lo].name, name) == 0 ? &v[lo] : NULL;
}

/* One layer being assembled. */
typedef struct plan_layer {
    size_t in, out;
    float *w; /* float layers: out x in */
    float *b; /* out */
    bool has_bias;
    mm_activation act;
    bool act_set;
    bool int8;
    mm_qlayer_int8 q; /* int8: weight_q etc. point into the owned arrays below */
    int8_t *wq;
    float *ws;
    int32_t *wz;
    bool in_quant; /* static: input QuantizeLinear/DequantizeLinear */
    float xs;
    int32_t xz;
    const Onnx__NodeProto *node; /* the Gemm/MatMul, for messages */
} plan_layer;

typedef struct importer {
    const Onnx__ModelProto *mp;
    const Onnx__GraphProto *g;
    int64_t opset;
    name_ref *inits;    /* initializers by name */
    size_t n_inits;
    name_ref *producers; /* node outputs by name */
    size_t n_prod;
    name_ref *consumers; /* node inputs by name */
    size_t n_cons;
    bool *used;
    plan_layer *layers;
    size_t n_layers, cap_layers;
    bool softmax;
    bool have_slope;
    float slope;
    const Onnx__NodeProto *slope_node;
    /* feature shape of the current tensor (batch excluded) */
    size_t rank;
    size_t dims[OX_MAX_DIMS];
    bool pending_q; /* a QuantizeLinear/DequantizeLinear pair awaits its Gemm */
    float pq_scale;
    int32_t pq_zp;
    const Onnx__NodeProto *pq_node;
} importer;

static const char *nname(const Onnx__NodeProto *n) { return n->name && *n->name ? n->name : "(unnamed)"; }
static const char *nop(const Onnx__NodeProto *n) { return n->op_type ? n->op_type : "(no op_type)"; }

#define NODE_FMT "node '%s' (%s)"
#define NODE_ARGS(n) nname(n), nop(n)

static size_t feat_width(const importer *im) {
    size_t w = 1;
    for (size_t i = 0; i < im->rank; i++) w *= im->dims[i];
    return w;
}

static const Onnx__AttributeProto *attr_find(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

/* Integer attribute with a default; MM_E_FORMAT when of another type. */
static mm_status attr_int(const Onnx__NodeProto *n, const char *name, int64_t def, int64_t *v) {
    const Onnx__AttributeProto *a = attr_find(n, name);
    *v = def;
    if (!a) return MM_OK;
    if (!a->has_i || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
        return mm_error(MM_E_FORMAT, NODE_FMT ": attribute %s is not an integer", NODE_ARGS(n),
                        name);
    *v = a->i;
    return MM_OK;
}

static mm_status attr_float(const Onnx__NodeProto *n, const char *name, float def, float *v) {
    const Onnx__AttributeProto *a = attr_find(n, name);
    *v = def;
    if (!a) return MM_OK;
    if (!a->has_f || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
        return mm_error(MM_E_FORMAT, NODE_FMT ": attribute %s is not a float", NODE_ARGS(n),
                        name);
    *v = a->f;
    return MM_OK;
}

/* Attributes other than `known` (NULL-terminated) are refused: a
 * semantic we do not model must not be ignored. */
static mm_status attrs_only(const Onnx__NodeProto *n, const char *const *known) {
    for (size_t i = 0; i < n->n_attribute; i++) {
        const char *an = n->attribute[i]->name ? n->attribute[i]->name : "";
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, an) == 0;
        if (!ok)
            return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": attribute '%s' is not supported",
                            NODE_ARGS(n), an);
    }
    return MM_OK;
}

/* A constant input of node n: an initializer or the output of a Constant
 * node (marked used). MM_E_UNSUPPORTED when it is computed at run time,
 * MM_E_FORMAT when it does not exist. */
static mm_status const_input(importer *im, const Onnx__NodeProto *n, size_t k, ctensor *c) {
    if (k >= n->n_input || !n->input[k] || !*n->input[k])
        return mm_error(MM_E_FORMAT, NODE_FMT ": input %zu is missing", NODE_ARGS(n), k);
    const char *name = n->input[k];
    char what[256];
    const name_ref *r = nr_find(im->inits, im->n_inits, name);
    if (r) {
        snprintf(what, sizeof what, "initializer '%.200s'", name);
        return ctensor_check(im->g->initializer[r->idx], what, c);
    }
    const name_ref *pr = nr_find(im->producers, im->n_prod, name);
    if (pr) {
        const Onnx__NodeProto *p = im->g->node[pr->idx];
        if (p->op_type && strcmp(p->op_type, "Constant") == 0) {
            const Onnx__AttributeProto *a = attr_find(p, "value");
            if (!a || !a->t || p->n_attribute != 1)
                return mm_error(MM_E_UNSUPPORTED,
                                NODE_FMT ": only Constant nodes with a 'value' tensor are supported",
                                NODE_ARGS(p));
            im->used[pr->idx] = true;
            snprintf(what, sizeof what, "value of node '%.100s' (Constant)", nname(p));
            return ctensor_check(a->t, what, c);
        }
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": input '%s' is computed at run time by node '%s' (%s); only "
                        "constant weights are supported",
                        NODE_ARGS(n), name, NODE_ARGS(p));
    }
    return mm_error(MM_E_FORMAT,
                    NODE_FMT ": input '%s' is neither an initializer nor produced by a node",
                    NODE_ARGS(n), name);
}

static mm_status want_dtype(const Onnx__NodeProto *n, const ctensor *c, int32_t dtype) {
    if (c->dtype != dtype)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": tensor '%s' is %s, expected %s",
                        NODE_ARGS(n), c->name, dtype_name(c->dtype), dtype_name(dtype));
    return MM_OK;
}

static mm_status want_finite(const Onnx__NodeProto *n, const ctensor *c) {
    for (size_t i = 0; i < c->count; i++)
        if (!isfinite(ct_f32(c, i)))
            return mm_error(MM_E_NUMERIC, NODE_FMT ": tensor '%s' element %zu is not finite",
                            NODE_ARGS(n), c->name, i);
    return MM_OK;
}

/* A scalar (rank 0 or a single element) of the given dtype. */
static mm_status scalar_input(importer *im, const Onnx__NodeProto *n, size_t k, int32_t dtype,
                              ctensor *c) {
    mm_status st = const_input(im, n, k, c);
    if (st == MM_OK) st = want_dtype(n, c, dtype);
    if (st == MM_OK && (c->count != 1 || c->ndim > 1))
        st = mm_error(MM_E_UNSUPPORTED, NODE_FMT ": '%s' must be a scalar", NODE_ARGS(n), c->name);
    return st;
}

static plan_layer *last_layer(importer *im) {
    return im->n_layers ? &im->layers[im->n_layers - 1] : NULL;
}

static mm_status new_layer(importer *im, const Onnx__NodeProto *n, size_t in, size_t out,
                           plan_layer **res) {
    if (im->rank != 1)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": input has %zu feature dimensions; flatten it to [batch, "
                        "features] first",
                        NODE_ARGS(n), im->rank);
    if (im->dims[0] != in)
        return mm_error(MM_E_FORMAT, NODE_FMT ": weights expect %zu inputs, the tensor has %zu",
                        NODE_ARGS(n), in, im->dims[0]);
    if (in == 0 || out == 0)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": a layer with %zu inputs and %zu outputs",
                        NODE_ARGS(n), in, out);
    if (im->n_layers == im->cap_layers) {
        size_t cap = im->cap_layers ? 2 * im->cap_layers : 8;
        plan_layer *v = realloc(im->layers, cap * sizeof *v);
        if (!v) return mm_oom("layers");
        im->layers = v;
        im->cap_layers = cap;
    }
    plan_layer *l = &im->layers[im->n_layers++];
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->node = n;
    l->act = MM_ACT_IDENTITY;
    l->b = mm_alloc_floats_zero(out);
    if (!l->b) return mm_oom("bias");
    im->dims[0] = out;
    *res = l;
    return MM_OK;
}

/* Is v a power of two (so that scaling by it is exact)? */
static bool pow2(float v) {
    int e;
    return isfinite(v) && v > 0.0f && frexpf(v, &e) == 0.5f;
}

/* B of a Gemm produced by DequantizeLinear(int8 weights, scale[, zp]):
 * the layer becomes int8. `transB` must be 1 (our export's form). */
static mm_status int8_weights(importer *im, const Onnx__NodeProto *gemm,
                              const Onnx__NodeProto *dq, size_t dq_idx, plan_layer **res) {
    static const char *const dq_attrs[] = {"axis", NULL};
    mm_status st = attrs_only(dq, dq_attrs);
    if (st != MM_OK) return st;
    im->used[dq_idx] = true;
    ctensor wq, ws, wz = {0};
    st = const_input(im, dq, 0, &wq);
    if (st == MM_OK) st = want_dtype(dq, &wq, OX_INT8);
    if (st == MM_OK && wq.ndim != 2)
        st = mm_error(MM_E_UNSUPPORTED, NODE_FMT ": weights '%s' must be 2-d", NODE_ARGS(dq),
                      wq.name);
    if (st == MM_OK) st = const_input(im, dq, 1, &ws);
    if (st == MM_OK) st = want_dtype(dq, &ws, OX_FLOAT);
    if (st == MM_OK) st = want_finite(dq, &ws);
    const bool has_zp = dq->n_input > 2 && dq->input[2] && *dq->input[2];
    if (st == MM_OK && has_zp) st = const_input(im, dq, 2, &wz);
    if (st == MM_OK && has_zp) st = want_dtype(dq, &wz, OX_INT8);
    if (st != MM_OK) return st;
    const size_t out = wq.dims[0], in = wq.dims[1];
    int64_t axis;
    st = attr_int(dq, "axis", 1, &axis);
    if (st != MM_OK) return st;
    const bool per_channel = ws.count != 1 || ws.ndim == 1;
    if (per_channel && (ws.ndim != 1 || ws.count != out || (axis != 0 && axis != -2)))
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": scales must be one per output row (axis 0, %zu values) or "
                        "one per tensor",
                        NODE_ARGS(dq), out);
    if (has_zp && (wz.count != ws.count || wz.ndim != ws.ndim))
        return mm_error(MM_E_FORMAT, NODE_FMT ": zero point and scale shapes differ",
                        NODE_ARGS(dq));
    int64_t trans_b;
    st = attr_int(gemm, "transB", 0, &trans_b);
    if (st != MM_OK) return st;
    if (trans_b != 1)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": quantized weights must be [out, in] with transB = 1",
                        NODE_ARGS(gemm));
    plan_layer *l;
    st = new_layer(im, gemm, in, out, &l);
    if (st != MM_OK) return st;
    l->int8 = true;
    const size_t ns = per_channel ? out : 1;
    l->wq = malloc(in * out + 1);
    l->ws = mm_malloc_array(ns, sizeof *l->ws);
    l->wz = mm_calloc_array(ns, sizeof *l->wz);
    if (!l->wq || !l->ws || !l->wz) return mm_oom("int8 weights");
    for (size_t i = 0; i < in * out; i++) l->wq[i] = (int8_t)ct_int(&wq, i);
    bool zero_zp = true;
    for (size_t o = 0; o < ns; o++) {
        l->ws[o] = ct_f32(&ws, o);
        l->wz[o] = has_zp ? (int32_t)ct_int(&wz, o) : 0;
        zero_zp = zero_zp && l->wz[o] == 0;
    }
    l->q = (mm_qlayer_int8){.scheme = MM_QUANT_INT8_WEIGHT_ONLY,
                            .per_channel = per_channel,
                            .weight_symmetric = zero_zp,
                            .weight_q = l->wq,
                            .weight_scale = l->ws,
                            .weight_zp = zero_zp ? NULL : l->wz,
                            .bias = l->b};
    /* symmetric int8 weights use [-127, 127]; -128 needs the asymmetric form */
    for (size_t i = 0; zero_zp && i < in * out; i++)
        if (l->wq[i] == -128) {
            l->q.weight_symmetric = false;
            l->q.weight_zp = l->wz;
        }
    *res = l;
    return MM_OK;
}

/* Gemm(A, B[, C]) with A the current tensor. */
static mm_status do_gemm(importer *im, const Onnx__NodeProto *n) {
    static const char *const known[] = {"alpha", "beta", "transA", "transB", NULL};
    mm_status st = attrs_only(n, known);
    if (st != MM_OK) return st;
    int64_t ta, tb;
    float alpha, beta;
    if ((st = attr_int(n, "transA", 0, &ta)) != MM_OK) return st;
    if ((st = attr_int(n, "transB", 0, &tb)) != MM_OK) return st;
    if ((st = attr_float(n, "alpha", 1.0f, &alpha)) != MM_OK) return st;
    if ((st = attr_float(n, "beta", 1.0f, &beta)) != MM_OK) return st;
    if (ta != 0)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": transA = %lld is not supported",
                        NODE_ARGS(n), (long long)ta);
    if (tb != 0 && tb != 1)
        return mm_error(MM_E_FORMAT, NODE_FMT ": transB = %lld", NODE_ARGS(n), (long long)tb);
    if (n->n_input < 2 || n->n_input > 3)
        return mm_error(MM_E_FORMAT, NODE_FMT ": Gemm takes 2 or 3 inputs, has %zu",
                        NODE_ARGS(n), n->n_input);
    if (alpha != 1.0f && !pow2(alpha))
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": alpha = %g cannot be folded into the weights exactly (only "
                        "powers of two can)",
                        NODE_ARGS(n), (double)alpha);
    if (!isfinite(beta))
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": beta = %g", NODE_ARGS(n), (double)beta);

    plan_layer *l = NULL;
    const name_ref *pr = nr_find(im->producers, im->n_prod, n->input[1] ? n->input[1] : "");
    const Onnx__NodeProto *bp = pr ? im->g->node[pr->idx] : NULL;
    if (bp && bp->op_type && strcmp(bp->op_type, "DequantizeLinear") == 0 &&
        !nr_find(im->inits, im->n_inits, n->input[1])) {
        if (alpha != 1.0f)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": alpha = %g with quantized weights is not supported",
                            NODE_ARGS(n), (double)alpha);
        st = int8_weights(im, n, bp, pr->idx, &l);
        if (st != MM_OK) return st;
    } else {
        ctensor b;
        st = const_input(im, n, 1, &b);
        if (st == MM_OK) st = want_dtype(n, &b, OX_FLOAT);
        if (st == MM_OK && b.ndim != 2)
            st = mm_error(MM_E_UNSUPPORTED, NODE_FMT ": B must be 2-d, is %zu-d", NODE_ARGS(n),
                          b.ndim);
        if (st == MM_OK) st = want_finite(n, &b);
        if (st != MM_OK) return st;
        const size_t out = tb ? b.dims[0] : b.dims[1], in = tb ? b.dims[1] : b.dims[0];
        st = new_layer(im, n, in, out, &l);
        if (st != MM_OK) return st;
        l->w = mm_alloc_floats(in * out);
        if (!l->w) return mm_oom("weights");
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++) {
                const float v = ct_f32(&b, tb ? o * in + i : i * out + o) * alpha;
                if (alpha != 1.0f && (!isfinite(v) || v / alpha != ct_f32(&b, tb ? o * in + i
                                                                                  : i * out + o)))
                    return mm_error(MM_E_UNSUPPORTED,
                                    NODE_FMT ": alpha = %g cannot be folded into weight [%zu, "
                                    "%zu] exactly",
                                    NODE_ARGS(n), (double)alpha, o, i);
                l->w[o * in + i] = v;
            }
    }
    if (im->pending_q) {
        if (!l->int8)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": a quantized input needs quantized (DequantizeLinear) "
                            "weights",
                            NODE_ARGS(n));
        l->in_quant = true;
        l->xs = im->pq_scale;
        l->xz = im->pq_zp;
        im->pending_q = false;
    }
    if (n->n_input == 3 && n->input[2] && *n->input[2]) {
        ctensor c;
        st = const_input(im, n, 2, &c);
        if (st == MM_OK) st = want_dtype(n, &c, OX_FLOAT);
        if (st == MM_OK) st = want_finite(n, &c);
        if (st != MM_OK) return st;
        /* C broadcasts to [batch, out]: [out], [1, out], [1] or a scalar */
        const bool row = (c.ndim == 1 && c.dims[0] == l->out) ||
                         (c.ndim == 2 && c.dims[0] == 1 && c.dims[1] == l->out);
        const bool one = c.count == 1 && c.ndim <= 2;
        if (!row && !one)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": bias '%s' does not broadcast as one value per output",
                            NODE_ARGS(n), c.name);
        for (size_t o = 0; o < l->out; o++) {
            l->b[o] = beta * ct_f32(&c, row ? o : 0);
            if (!isfinite(l->b[o]))
                return mm_error(MM_E_NUMERIC, NODE_FMT ": beta * C[%zu] is not finite",
                                NODE_ARGS(n), o);
        }
        l->has_bias = true;
    }
    return MM_OK;
}

/* MatMul(A, B) with B [in, out]; an Add may follow with the bias. */
static mm_status do_matmul(importer *im, const Onnx__NodeProto *n) {
    static const char *const known[] = {NULL};
    mm_status st = attrs_only(n, known);
    if (st != MM_OK) return st;
    if (n->n_input != 2)
        return mm_error(MM_E_FORMAT, NODE_FMT ": MatMul takes 2 inputs", NODE_ARGS(n));
    if (im->pending_q)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": quantized inputs are supported before Gemm only",
                        NODE_ARGS(n));
    ctensor b;
    st = const_input(im, n, 1, &b);
    if (st == MM_OK) st = want_dtype(n, &b, OX_FLOAT);
    if (st == MM_OK && b.ndim != 2)
        st = mm_error(MM_E_UNSUPPORTED, NODE_FMT ": B must be 2-d, is %zu-d", NODE_ARGS(n),
                      b.ndim);
    if (st == MM_OK) st = want_finite(n, &b);
    if (st != MM_OK) return st;
    const size_t in = b.dims[0], out = b.dims[1];
    plan_layer *l;
    st = new_layer(im, n, in, out, &l);
    if (st != MM_OK) return st;
    l->w = mm_alloc_floats(in * out);
    if (!l->w) return mm_oom("weights");
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++) l->w[o * in + i] = ct_f32(&b, i * out + o);
    return MM_OK;
}

/* Add(current, bias) right after a MatMul / Gemm without bias. */
static mm_status do_add(importer *im, const Onnx__NodeProto *n, const char *cur) {
    plan_layer *l = last_layer(im);
    if (!l || l->has_bias || l->act_set || n->n_input != 2)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": Add is supported only as the bias right after MatMul",
                        NODE_ARGS(n));
    /* the walk checked that cur is one of the two inputs, not both */
    const size_t k = strcmp(n->input[0] ? n->input[0] : "", cur) == 0 ? 1 : 0;
    ctensor c;
    mm_status st = const_input(im, n, k, &c);
    if (st == MM_OK) st = want_dtype(n, &c, OX_FLOAT);
    if (st == MM_OK) st = want_finite(n, &c);
    if (st != MM_OK) return st;
    const bool row = (c.ndim == 1 && c.dims[0] == l->out) ||
                     (c.ndim == 2 && c.dims[0] == 1 && c.dims[1] == l->out);
    if (!row)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": bias '%s' is not one value per output",
                        NODE_ARGS(n), c.name);
    for (size_t o = 0; o < l->out; o++) l->b[o] = ct_f32(&c, o);
    l->has_bias = true;
    return MM_OK;
}

static mm_status do_activation(importer *im, const Onnx__NodeProto *n, mm_activation act) {
    plan_layer *l = last_layer(im);
    static const char *const none[] = {NULL}, *const leaky[] = {"alpha", NULL};
    mm_status st = attrs_only(n, act == MM_ACT_LEAKY_RELU ? leaky : none);
    if (st != MM_OK) return st;
    if (!l || l->act_set || im->pending_q)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": an activation is supported only right after a Gemm/MatMul "
                        "(and its bias)",
                        NODE_ARGS(n));
    if (act == MM_ACT_LEAKY_RELU) {
        float alpha;
        if ((st = attr_float(n, "alpha", 0.01f, &alpha)) != MM_OK) return st;
        if (!(alpha >= 0.0f && alpha < 1.0f))
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": LeakyRelu alpha = %g is outside [0, 1), which mmaint's "
                            "leaky slope takes",
                            NODE_ARGS(n), (double)alpha);
        if (im->have_slope && memcmp(&alpha, &im->slope, sizeof alpha) != 0)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": LeakyRelu alpha = %.9g differs from alpha = %.9g of node "
                            "'%s'; an mmaint model has one leaky slope",
                            NODE_ARGS(n), (double)alpha, (double)im->slope,
                            nname(im->slope_node));
        im->have_slope = true;
        im->slope = alpha;
        im->slope_node = n;
    }
    l->act = act;
    l->act_set = true;
    l->has_bias = true; /* no Add after the activation */
    return MM_OK;
}

/* Flatten(axis = 1) and Reshape to [batch, features]. */
static mm_status do_flatten(importer *im, const Onnx__NodeProto *n, bool reshape) {
    mm_status st;
    if (im->pending_q || (last_layer(im) && im->rank != 1))
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": not supported at this place",
                        NODE_ARGS(n));
    const size_t width = feat_width(im);
    if (!reshape) {
        static const char *const known[] = {"axis", NULL};
        int64_t axis;
        if ((st = attrs_only(n, known)) != MM_OK) return st;
        if ((st = attr_int(n, "axis", 1, &axis)) != MM_OK) return st;
        if (axis != 1 && axis != -(int64_t)im->rank)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": Flatten axis %lld would mix the batch with the "
                            "features; only axis 1 is supported",
                            NODE_ARGS(n), (long long)axis);
    } else {
        static const char *const known[] = {"allowzero", NULL};
        int64_t allowzero;
        if ((st = attrs_only(n, known)) != MM_OK) return st;
        if ((st = attr_int(n, "allowzero", 0, &allowzero)) != MM_OK) return st;
        ctensor s;
        st = const_input(im, n, 1, &s);
        if (st == MM_OK) st = want_dtype(n, &s, OX_INT64);
        if (st != MM_OK) return st;
        const int64_t s0 = s.count == 2 ? ct_int(&s, 0) : 0, s1 = s.count == 2 ? ct_int(&s, 1) : 0;
        const bool batch_ok = s0 == -1 || (s0 == 0 && allowzero == 0);
        const bool feat_ok = s1 == (int64_t)width || (s1 == -1 && s0 != -1);
        if (s.ndim != 1 || s.count != 2 || !batch_ok || !feat_ok)
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": only a reshape to [-1, %zu] (batch, features) is "
                            "supported",
                            NODE_ARGS(n), width);
    }
    im->rank = 1;
    im->dims[0] = width;
    return MM_OK;
}

static mm_status do_softmax(importer *im, const Onnx__NodeProto *n, bool last) {
    static const char *const known[] = {"axis", NULL};
    mm_status st = attrs_only(n, known);
    if (st != MM_OK) return st;
    int64_t axis;
    if ((st = attr_int(n, "axis", im->opset >= 13 ? -1 : 1, &axis)) != MM_OK) return st;
    if (!last_layer(im) || !last || im->pending_q)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": Softmax is supported only as the last node, after a layer",
                        NODE_ARGS(n));
    if (axis != 1 && axis != -1)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": Softmax over axis %lld (need the last axis)",
                        NODE_ARGS(n), (long long)axis);
    im->softmax = true;
    last_layer(im)->has_bias = last_layer(im)->act_set = true;
    return MM_OK;
}

/* QuantizeLinear(x, scale, uint8 zp) followed by DequantizeLinear with the
 * same parameters: the static int8 input of the next Gemm. */
static mm_status do_quantize(importer *im, const Onnx__NodeProto *n, const Onnx__NodeProto *next) {
    static const char *const known[] = {"axis", NULL};
    mm_status st = attrs_only(n, known);
    if (st != MM_OK) return st;
    if (im->pending_q || im->rank != 1)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": not supported at this place",
                        NODE_ARGS(n));
    if (n->n_input < 3)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": an explicit uint8 zero point is required",
                        NODE_ARGS(n));
    ctensor s, z;
    st = scalar_input(im, n, 1, OX_FLOAT, &s);
    if (st == MM_OK) st = scalar_input(im, n, 2, OX_UINT8, &z);
    if (st != MM_OK) return st;
    const float scale = ct_f32(&s, 0);
    if (!(scale > 0.0f) || !isfinite(scale))
        return mm_error(MM_E_FORMAT, NODE_FMT ": scale %g", NODE_ARGS(n), (double)scale);
    if (!next || !next->op_type || strcmp(next->op_type, "DequantizeLinear") != 0)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": QuantizeLinear must be followed by DequantizeLinear",
                        NODE_ARGS(n));
    im->pending_q = true;
    im->pq_scale = scale;
    im->pq_zp = (int32_t)ct_int(&z, 0);
    im->pq_node = n;
    return MM_OK;
}

static mm_status do_dequantize_input(importer *im, const Onnx__NodeProto *n) {
    static const char *const known[] = {"axis", NULL};
    mm_status st = attrs_only(n, known);
    if (st != MM_OK) return st;
    if (!im->pending_q)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": DequantizeLinear on activations is supported only after "
                        "QuantizeLinear",
                        NODE_ARGS(n));
    ctensor s, z;
    st = scalar_input(im, n, 1, OX_FLOAT, &s);
    if (st == MM_OK) st = scalar_input(im, n, 2, OX_UINT8, &z);
    if (st != MM_OK) return st;
    const float scale = ct_f32(&s, 0);
    if (memcmp(&scale, &im->pq_scale, sizeof scale) != 0 || ct_int(&z, 0) != im->pq_zp)
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": scale or zero point differ from node '%s' (QuantizeLinear)",
                        NODE_ARGS(n), nname(im->pq_node));
    return MM_OK;
}

/* The single graph input that is not an initializer, and its shape. */
static mm_status graph_io(importer *im, const char **in_name, const char **out_name) {
    const Onnx__GraphProto *g = im->g;
    const Onnx__ValueInfoProto *vin = NULL;
    size_t n_in = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const char *nm = g->input[i]->name;
        if (!nm || !*nm) return mm_error(MM_E_FORMAT, "graph input %zu has no name", i);
        if (nr_find(im->inits, im->n_inits, nm)) continue;
        vin = g->input[i];
        n_in++;
    }
    if (n_in != 1)
        return mm_error(MM_E_UNSUPPORTED, "the graph has %zu inputs (besides initializers); "
                                          "exactly one is supported",
                        n_in);
    if (g->n_output != 1)
        return mm_error(MM_E_UNSUPPORTED, "the graph has %zu outputs; exactly one is supported",
                        g->n_output);
    if (!g->output[0]->name || !*g->output[0]->name)
        return mm_error(MM_E_FORMAT, "the graph output has no name");
    *in_name = vin->name;
    *out_name = g->output[0]->name;
    const Onnx__ValueInfoProto *vo = g->output[0];
    for (int k = 0; k < 2; k++) {
        const Onnx__ValueInfoProto *v = k ? vo : vin;
        const char *what = k ? "output" : "input";
        const Onnx__TypeProto *tp = v->type;
        if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
            return mm_error(MM_E_UNSUPPORTED, "graph %s '%s' is not a tensor", what, v->name);
        const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
        if (!tt->has_elem_type || tt->elem_type != OX_FLOAT)
            return mm_error(MM_E_UNSUPPORTED, "graph %s '%s' is %s, only float is supported",
                            what, v->name, tt->has_elem_type ? dtype_name(tt->elem_type) : "untyped");
        if (k) continue; /* the output's shape is checked after the walk */
        const Onnx__TensorShapeProto *sh = tt->shape;
        if (!sh || sh->n_dim < 2)
            return mm_error(MM_E_UNSUPPORTED,
                            "graph input '%s' needs a known shape [batch, features...] (has %s)",
                            v->name, sh ? "rank < 2" : "none");
        if (sh->n_dim - 1 > OX_MAX_DIMS)
            return mm_error(MM_E_UNSUPPORTED, "graph input '%s' has %zu dimensions", v->name,
                            sh->n_dim);
        im->rank = sh->n_dim - 1;
        size_t width = 1;
        for (size_t d = 1; d < sh->n_dim; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = sh->dim[d];
            if (dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                return mm_error(MM_E_UNSUPPORTED,
                                "graph input '%s' dimension %zu is symbolic ('%s'): cannot be "
                                "resolved",
                                v->name, d,
                                dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                                        dm->dim_param
                                    ? dm->dim_param
                                    : "");
            if (dm->dim_value <= 0)
                return mm_error(MM_E_FORMAT, "graph input '%s' dimension %zu is %lld", v->name, d,
                                (long long)dm->dim_value);
            if ((uint64_t)dm->dim_value > SIZE_MAX ||
                !mm_mul_ok(width, (size_t)dm->dim_value, &width) || width > ((size_t)1 << 40))
                return mm_error(MM_E_FORMAT, "graph input '%s': dimensions overflow", v->name);
            im->dims[d - 1] = (size_t)dm->dim_value;
        }
    }
    return MM_OK;
}

static mm_status build_tables(importer *im) {
    const Onnx__GraphProto *g = im->g;
    im->inits = mm_malloc_array(g->n_initializer ? g->n_initializer : 1, sizeof *im->inits);
    im->used = mm_calloc_array(g->n_node ? g->n_node : 1, sizeof *im->used);
    size_t n_in = 0, n_out = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        n_in += g->node[i]->n_input;
        n_out += g->node[i]->n_output;
    }
    im->producers = mm_malloc_array(n_out ? n_out : 1, sizeof *im->producers);
    im->consumers = mm_malloc_array(n_in ? n_in : 1, sizeof *im->consumers);
    if (!im->inits || !im->used || !im->producers || !im->consumers) return mm_oom("graph tables");
    for (size_t i = 0; i < g->n_initializer; i++) {
        const char *nm = g->initializer[i]->name;
        if (!nm || !*nm) return mm_error(MM_E_FORMAT, "initializer %zu has no name", i);
        im->inits[im->n_inits++] = (name_ref){nm, i};
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (!nd->op_type || !*nd->op_type)
            return mm_error(MM_E_FORMAT, "node %zu ('%s') has no op_type", i, nname(nd));
        for (size_t k = 0; k < nd->n_output; k++) {
            if (!nd->output[k] || !*nd->output[k]) continue;
            im->producers[im->n_prod++] = (name_ref){nd->output[k], i};
        }
        for (size_t k = 0; k < nd->n_input; k++)
            if (nd->input[k] && *nd->input[k])
                im->consumers[im->n_cons++] = (name_ref){nd->input[k], i};
    }
    qsort(im->inits, im->n_inits, sizeof *im->inits, name_ref_cmp);
    qsort(im->producers, im->n_prod, sizeof *im->producers, name_ref_cmp);
    qsort(im->consumers, im->n_cons, sizeof *im->consumers, name_ref_cmp);
    for (size_t i = 1; i < im->n_inits; i++)
        if (strcmp(im->inits[i].name, im->inits[i - 1].name) == 0)
            return mm_error(MM_E_FORMAT, "two initializers are named '%s'", im->inits[i].name);
    for (size_t i = 1; i < im->n_prod; i++)
        if (strcmp(im->producers[i].name, im->producers[i - 1].name) == 0)
            return mm_error(MM_E_FORMAT, "nodes '%s' and '%s' both produce '%s'",
                            nname(g->node[im->producers[i - 1].idx]),
                            nname(g->node[im->producers[i].idx]), im->producers[i].name);
    for (size_t i = 0; i < im->n_prod; i++)
        if (nr_find(im->inits, im->n_inits, im->producers[i].name))
            return mm_error(MM_E_FORMAT, NODE_FMT " overwrites initializer '%s'",
                            NODE_ARGS(g->node[im->producers[i].idx]), im->producers[i].name);
    return MM_OK;
}

static mm_status check_opset(importer *im) {
    const Onnx__ModelProto *mp = im->mp;
    im->opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        const char *d = o->domain ? o->domain : "";
        if (*d && strcmp(d, "ai.onnx") != 0) continue;
        if (!o->has_version) return mm_error(MM_E_FORMAT, "the default opset has no version");
        im->opset = o->version;
    }
    if (im->opset < 0) return mm_error(MM_E_FORMAT, "the model imports no default (ai.onnx) opset");
    if (im->opset < OX_MIN_OPSET || im->opset > OX_MAX_OPSET)
        return mm_error(MM_E_UNSUPPORTED,
                        "opset %lld is not supported (opsets %d to %d are; re-export with e.g. "
                        "opset_version=%d)",
                        (long long)im->opset, OX_MIN_OPSET, OX_MAX_OPSET, OX_EXPORT_OPSET);
    return MM_OK;
}

/* Walk the chain from the input to the output, mapping each node. */
static mm_status walk(importer *im, const char *in_name, const char *out_name) {
    const Onnx__GraphProto *g = im->g;
    const char *cur = in_name;
    while (strcmp(cur, out_name) != 0) {
        const name_ref *c = nr_find(im->consumers, im->n_cons, cur);
        if (!c)
            return mm_error(MM_E_FORMAT,
                            "tensor '%s' is used by no node and is not the graph output '%s'",
                            cur, out_name);
        /* one consumer (a node may name the tensor twice: refused below) */
        const name_ref *end = im->consumers + im->n_cons;
        const name_ref *c2 = c + 1;
        while (c2 < end && strcmp(c2->name, cur) == 0 && c2->idx == c->idx) c2++;
        if (c2 < end && strcmp(c2->name, cur) == 0)
            return mm_error(MM_E_UNSUPPORTED,
                            "tensor '%s' feeds both node '%s' (%s) and node '%s' (%s); only a "
                            "chain of nodes is supported",
                            cur, NODE_ARGS(g->node[c->idx]), NODE_ARGS(g->node[c2->idx]));
        const Onnx__NodeProto *n = g->node[c->idx];
        if (im->used[c->idx])
            return mm_error(MM_E_FORMAT, NODE_FMT " is reached twice: the graph has a cycle",
                            NODE_ARGS(n));
        im->used[c->idx] = true;
        if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
            return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": operator domain '%s' is not supported",
                            NODE_ARGS(n), n->domain);
        if (n->n_output != 1 || !n->output[0] || !*n->output[0])
            return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": nodes with %zu outputs are not supported",
                            NODE_ARGS(n), n->n_output);
        const char *op = n->op_type;
        size_t uses = 0;
        for (size_t k = 0; k < n->n_input; k++)
            uses += n->input[k] && strcmp(n->input[k], cur) == 0;
        const bool is_add = strcmp(op, "Add") == 0;
        if (uses != 1 || (!is_add && strcmp(n->input[0] ? n->input[0] : "", cur) != 0) ||
            (is_add && n->n_input != 2))
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT ": tensor '%s' must be its data input (the first), once",
                            NODE_ARGS(n), cur);
        const bool last = strcmp(n->output[0], out_name) == 0;
        mm_status st;
        if (strcmp(op, "Gemm") == 0) st = do_gemm(im, n);
        else if (strcmp(op, "MatMul") == 0) st = do_matmul(im, n);
        else if (is_add) st = do_add(im, n, cur); else if (strcmp(op, "Relu") == 0) st = do_activation(im, n, MM_ACT_RELU);
        else if (strcmp(op, "LeakyRelu") == 0) st = do_activation(im, n, MM_ACT_LEAKY_RELU);
        else if (strcmp(op, "Tanh") == 0) st = do_activation(im, n, MM_ACT_TANH);
        else if (strcmp(op, "Sigmoid") == 0) st = do_activation(im, n, MM_ACT_SIGMOID);
        else if (strcmp(op, "Softmax") == 0) st = do_softmax(im, n, last);
        else if (strcmp(op, "Flatten") == 0) st = do_flatten(im, n, false);
        else if (strcmp(op, "Reshape") == 0) st = do_flatten(im, n, true);
        else if (strcmp(op, "Identity") == 0) st = n->n_attribute ? mm_error(MM_E_UNSUPPORTED,
                                                   NODE_FMT ": unexpected attributes", NODE_ARGS(n))
                                                                  : MM_OK;
        else if (strcmp(op, "QuantizeLinear") == 0) {
            const name_ref *nc = nr_find(im->consumers, im->n_cons, n->output[0]);
            st = do_quantize(im, n, nc ? g->node[nc->idx] : NULL);
        } else if (strcmp(op, "DequantizeLinear") == 0) st = do_dequantize_input(im, n);
        else
            st = mm_error(MM_E_UNSUPPORTED, NODE_FMT ": operator %s is not supported",
                          NODE_ARGS(n), op);
        if (st != MM_OK) return st;
        cur = n->output[0];
    }
    if (im->pending_q)
        return mm_error(MM_E_UNSUPPORTED, NODE_FMT ": quantized input not followed by a Gemm",
                        NODE_ARGS(im->pq_node));
    if (im->n_layers == 0)
        return mm_error(MM_E_UNSUPPORTED, "the graph has no Gemm or MatMul: nothing to import");
    if (im->rank != 1)
        return mm_error(MM_E_UNSUPPORTED, "the graph output is not [batch, features]");
    for (size_t i = 0; i < g->n_node; i++)
        if (!im->used[i])
            return mm_error(MM_E_UNSUPPORTED,
                            NODE_FMT " is not on the path from the input to the output",
                            NODE_ARGS(g->node[i]));
    /* a declared output width must match */
    const Onnx__TensorShapeProto *sh = g->output[0]->type->tensor_type->shape;
    if (sh && sh->n_dim >= 1) {
        const Onnx__TensorShapeProto__Dimension *dm = sh->dim[sh->n_dim - 1];
        if (sh->n_dim != 2 ||
            (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
             dm->dim_value != (int64_t)im->dims[0]))
            return mm_error(MM_E_FORMAT, "graph output '%s' is declared with another shape than "
                                         "[batch, %zu]",
                            out_name, im->dims[0]);
    }
    return MM_OK;
}

/* mmaint's own metadata, from files this library wrote: the value or NULL. */
static const char *meta_get(const importer *im, const char *key) {
    for (size_t i = 0; i < im->mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = im->mp->metadata_props[i];
        if (e->key && e->value && strcmp(e->key, key) == 0) return e->value;
    }
    return NULL;
}

static bool parse_hex_float(const char *s, float *v, char stop) {
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end != stop) return false;
    *v = (float)d;
    return (double)*v == d && isfinite(*v);
}

/* Int8 layer settings only our metadata carries: the dynamic scheme
 * (which ONNX expresses as weight-only QDQ) and the static input range. */
static mm_status int8_meta(const importer *im, size_t i, plan_layer *l) {
    char key[OX_NAME_CAP];
    snprintf(key, sizeof key, "mmaint.layers.%zu.scheme", i);
    const char *scheme = meta_get(im, key);
    if (l->in_quant) {
        l->q.scheme = MM_QUANT_INT8_STATIC;
        snprintf(key, sizeof key, "mmaint.layers.%zu.input_range", i);
        const char *range = meta_get(im, key);
        snprintf(key, sizeof key, "mmaint.layers.%zu.act_symmetric", i);
        const char *sym = meta_get(im, key);
        /* candidate ranges: the calibrated one our export records, else the
         * ranges whose parameters are the file's (symmetric: zero point 128
         * and +-127.5 steps; asymmetric: the range the uint8 codes cover) */
        float lo[3], hi[3];
        bool sym_c[3];
        size_t nc = 0;
        const char *comma = range ? strchr(range, ',') : NULL;
        if (range && comma && sym && parse_hex_float(range, &lo[nc], ',') &&
            parse_hex_float(comma + 1, &hi[nc], '\0'))
            sym_c[nc++] = strcmp(sym, "true") == 0;
        if (l->xz == 128) {
            lo[nc] = -127.5f * l->xs;
            hi[nc] = 127.5f * l->xs;
            sym_c[nc++] = true;
        }
        lo[nc] = -(float)l->xz * l->xs;
        hi[nc] = (float)(255 - l->xz) * l->xs;
        sym_c[nc++] = false;
        for (size_t k = 0; k < nc; k++) {
            float s;
            int32_t z;
            if (mm_int8_choose_params(lo[k], hi[k], sym_c[k], &s, &z) == MM_OK &&
                memcmp(&s, &l->xs, sizeof s) == 0 && z == l->xz) {
                l->q.in_lo = lo[k];
                l->q.in_hi = hi[k];
                l->q.act_symmetric = sym_c[k];
                return MM_OK;
            }
        }
        return mm_error(MM_E_UNSUPPORTED,
                        NODE_FMT ": input quantization (scale %g, zero point %d) cannot be "
                        "reproduced by an mmaint int8 layer",
                        NODE_ARGS(l->node), (double)l->xs, (int)l->xz);
    } else if (scheme && strcmp(scheme, "dynamic") == 0) {
        l->q.scheme = MM_QUANT_INT8_DYNAMIC;
    } else if (scheme && strcmp(scheme, "weight_only") != 0) {
        return mm_error(MM_E_FORMAT, "metadata %s = '%s' does not match the graph", key, scheme);
    }
    return MM_OK;
}

static mm_status build_model(importer *im, mm_model **out) {
    const size_t input_dim = im->layers[0].in;
    mm_model *m = NULL;
    mm_status st = mm_model_create(&m, input_dim, 0);
    if (st != MM_OK) return st;
    float slope = 0.01f;
    if (im->have_slope) {
        slope = im->slope;
    } else {
        const char *s = meta_get(im, "mmaint.leaky_slope");
        float v;
        if (s && parse_hex_float(s, &v, '\0') && v >= 0.0f && v < 1.0f) slope = v;
    }
    st = mm_model_set_leaky_slope(m, slope);
    if (st == MM_OK) st = mm_model_set_loss(m, im->softmax ? MM_LOSS_SOFTMAX_XENT : MM_LOSS_MSE);
    for (size_t i = 0; i < im->n_layers && st == MM_OK; i++) {
        plan_layer *l = &im->layers[i];
        mm_layer *layer = NULL;
        if (l->int8) {
            st = int8_meta(im, i, l);
            if (st == MM_OK) st = mm_qlayer_int8_create(&l->q, l->in, l->out, l->act, slope, &layer);
            if (st != MM_OK) st = mm_error_prefix(st, NODE_FMT, NODE_ARGS(l->node));
        } else {
            st = mm_dense_create(&layer, l->in, l->out, l->act, slope, MM_INIT_AUTO, NULL);
            if (st == MM_OK) {
                memcpy(layer->params[0].data, l->w, l->in * l->out * sizeof(float));
                memcpy(layer->params[1].data, l->b, l->out * sizeof(float));
                mm_layer_params_changed(layer);
            }
        }
        if (st == MM_OK) {
            st = mm_model_push_layer(m, layer);
            if (st != MM_OK) layer->vt->destroy(layer);
        }
    }
    /* lineage: the history an mmaint export carried, then this import */
    const char *lin = meta_get(im, "mmaint.lineage");
    if (st == MM_OK && lin) {
        st = mm_lineage_set(m, lin);
        if (st != MM_OK) st = mm_error_prefix(MM_E_FORMAT, "metadata mmaint.lineage");
    }
    if (st == MM_OK) {
        json_t *d = json_pack("{s:s, s:s, s:s, s:I, s:I}", "format", "onnx", "producer_name",
                              im->mp->producer_name ? im->mp->producer_name : "",
                              "producer_version",
                              im->mp->producer_version ? im->mp->producer_version : "",
                              "ir_version", (json_int_t)im->mp->ir_version, "opset",
                              (json_int_t)im->opset);
        char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
        st = text ? mm_lineage_append(m, "import", text) : mm_oom("lineage");
        free(text);
        json_decref(d);
    }
    if (st != MM_OK) {
        mm_model_free(m);
        return st;
    }
    *out = m;
    return MM_OK;
}

static void importer_free(importer *im) {
    for (size_t i = 0; i < im->n_layers; i++) {
        mm_free_floats(im->layers[i].w);
        mm_free_floats(im->layers[i].b);
        free(im->layers[i].wq);
        free(im->layers[i].ws);
        free(im->layers[i].wz);
    }
    free(im->layers);
    free(im->inits);
    free(im->producers);
    free(im->consumers);
    free(im->used);
}

static mm_status import_buffer(mm_model **out, const void *data, size_t len) {
    const uint8_t *p = data;
    int w = wire_check(p, p + len, &onnx__model_proto__descriptor, 0);
    if (w == 2)
        return mm_error(MM_E_FORMAT, "not a usable ONNX file: messages nested deeper than %d",
                        OX_MAX_DEPTH);
    if (w == 1)
        return mm_error(MM_E_FORMAT, "not an ONNX file: the protobuf is truncated or corrupt");
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, p);
    if (!mp) return mm_error(MM_E_FORMAT, "not an ONNX file: the protobuf is truncated or corrupt");
    importer im = {.mp = mp, .g = mp->graph};
    mm_status st = MM_OK;
    const char *in_name = NULL, *out_name = NULL;
    if (!mp->graph) st = mm_error(MM_E_FORMAT, "not an ONNX model: it has no graph");
    if (st == MM_OK) st = check_opset(&im);
    if (st == MM_OK && mp->graph->n_sparse_initializer)
        st = mm_error(MM_E_UNSUPPORTED, "sparse initializers are not supported");
    if (st == MM_OK && mp->n_functions)
        st = mm_error(MM_E_UNSUPPORTED, "model-local functions are not supported");
    if (st == MM_OK) st = build_tables(&im);
    if (st == MM_OK) st = graph_io(&im, &in_name, &out_name);
    if (st == MM_OK) st = walk(&im, in_name, out_name);
    if (st == MM_OK) st = build_model(&im, out);
    importer_free(&im);
    onnx__model_proto__free_unpacked(mp, NULL);
    return st;
}

/* ------------------------------------------------------------------------
 * public API
 * ---------------------------------------------------------------------- */

int mm_onnx_available(void) { return 1; }

mm_status mm_onnx_export(const mm_model *model, const char *path) {
    if (!model) return mm_null_arg("model");
    if (!path) return mm_null_arg("path");
    mm_status st = export_model(model, path);
    return st == MM_OK ? MM_OK : mm_error_prefix(st, "exporting ONNX %s", path);
}

mm_status mm_onnx_import_buffer(mm_model **out, const void *data, size_t len) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!data && len) return mm_null_arg("data");
    return import_buffer(out, data ? data : "", len);
}

mm_status mm_onnx_import(mm_model **out, const char *path) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!path) return mm_null_arg("path");
    unsigned char *buf = NULL;
    size_t len = 0;
    mm_status st = mm_file_read_all(path, &buf, &len);
    if (st != MM_OK) return st;
    st = import_buffer(out, buf, len);
    free(buf);
    return st == MM_OK ? MM_OK : mm_error_prefix(st, "importing ONNX %s", path);
}

#else /* built without ONNX */

static mm_status onnx_unavailable(void) {
    return mm_error(MM_E_UNSUPPORTED,
                    "this libmmaint was built without ONNX support (meson option -Donnx, "
                    "needs protobuf-c, protoc-c and onnx.proto from libonnx-dev)");
}

int mm_onnx_available(void) { return 0; }

mm_status mm_onnx_export(const mm_model *model, const char *path) {
    (void)model;
    (void)path;
    return onnx_unavailable();
}

mm_status mm_onnx_import(mm_model **out, const char *path) {
    if (out) *out = NULL;
    (void)path;
    return onnx_unavailable();
}

mm_status mm_onnx_import_buffer(mm_model **out, const void *data, size_t len) {
    if (out) *out = NULL;
    (void)data;
    (void)len;
    return onnx_unavailable();
}

#endif
