/* ONNX export/import (include/mm/mm_onnx.h). Built with -DMM_TEST_HAVE_ONNX
 * when the library has the onnx feature: round trips (bit-exact), the
 * PyTorch fixtures on Fashion-MNIST, hostile files built with the
 * generated protobuf code (links the internal object library). Without the
 * feature it checks that the API exists and refuses with MM_E_UNSUPPORTED. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "testutil.h"

#ifdef MM_TEST_HAVE_ONNX
#include "onnx.pb-c.h"

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static char *data_path(const char *name) {
    const char *dir = getenv("MM_TEST_DATA");
    ck_assert_msg(dir != NULL, "MM_TEST_DATA not set");
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A model with non-trivial weights (awkward values included). */
static mm_model *make_model(const char *spec, mm_loss loss, float slope, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, spec, seed));
    MM_ASSERT_OK(mm_model_set_loss(m, loss));
    MM_ASSERT_OK(mm_model_set_leaky_slope(m, slope));
    for (size_t i = 0; i < mm_model_num_layers(m); i++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, i, NULL, &in, &out, NULL));
        float *w = malloc(in * out * sizeof *w), *b = malloc(out * sizeof *b);
        mm_test_fill(w, in * out, seed + 7 * i, -1.0f, 1.0f);
        mm_test_fill(b, out, seed + 7 * i + 3, -0.5f, 0.5f);
        w[0] = -0.0f;
        if (in * out > 2) w[1] = 1e-40f; /* subnormal */
        MM_ASSERT_OK(mm_model_set_weights(m, i, w, in * out, b, out));
        free(w);
        free(b);
    }
    return m;
}

/* Export to a temporary file and import it back. */
static mm_model *round_trip(const mm_model *m) {
    char *path = mm_test_tmp_path(".onnx");
    MM_ASSERT_OK(mm_onnx_export(m, path));
    mm_model *got = NULL;
    MM_ASSERT_OK(mm_onnx_import(&got, path));
    ck_assert_ptr_nonnull(got);
    remove(path);
    free(path);
    return got;
}

/* Same outputs, bit for bit (forward and predict_proba). */
static void assert_same_outputs(const mm_model *a, const mm_model *b, size_t n) {
    const size_t in = mm_model_input_dim(a), out = mm_model_output_dim(a);
    ck_assert_uint_eq(mm_model_input_dim(b), in);
    ck_assert_uint_eq(mm_model_output_dim(b), out);
    float *x = malloc(n * in * sizeof *x), *ya = malloc(n * out * sizeof *ya),
          *yb = malloc(n * out * sizeof *yb);
    mm_test_fill(x, n * in, 99, -2.0f, 2.0f);
    MM_ASSERT_OK(mm_model_forward(a, x, n, ya));
    MM_ASSERT_OK(mm_model_forward(b, x, n, yb));
    ck_assert_msg(memcmp(ya, yb, n * out * sizeof *ya) == 0, "forward differs (max %g)",
                  mm_test_max_abs_diff(ya, yb, n * out));
    MM_ASSERT_OK(mm_model_predict_proba(a, x, n, ya));
    MM_ASSERT_OK(mm_model_predict_proba(b, x, n, yb));
    ck_assert_msg(memcmp(ya, yb, n * out * sizeof *ya) == 0, "predict_proba differs (max %g)",
                  mm_test_max_abs_diff(ya, yb, n * out));
    free(x);
    free(ya);
    free(yb);
}

static void assert_same_weights(const mm_model *a, const mm_model *b) {
    ck_assert_uint_eq(mm_model_num_layers(a), mm_model_num_layers(b));
    for (size_t i = 0; i < mm_model_num_layers(a); i++) {
        size_t in, out, in2, out2;
        mm_activation act, act2;
        MM_ASSERT_OK(mm_model_layer_info(a, i, NULL, &in, &out, &act));
        MM_ASSERT_OK(mm_model_layer_info(b, i, NULL, &in2, &out2, &act2));
        ck_assert_uint_eq(in, in2);
        ck_assert_uint_eq(out, out2);
        ck_assert_int_eq(act, act2);
        float *w1 = malloc(in * out * 4), *w2 = malloc(in * out * 4), *b1 = malloc(out * 4),
              *b2 = malloc(out * 4);
        MM_ASSERT_OK(mm_model_get_weights(a, i, w1, in * out, b1, out));
        MM_ASSERT_OK(mm_model_get_weights(b, i, w2, in * out, b2, out));
        ck_assert_msg(memcmp(w1, w2, in * out * 4) == 0, "layer %zu weights differ", i);
        ck_assert_msg(memcmp(b1, b2, out * 4) == 0, "layer %zu biases differ", i);
        free(w1);
        free(w2);
        free(b1);
        free(b2);
    }
}

/* ------------------------------------------------------------------------
 * round trips
 * ---------------------------------------------------------------------- */

static const struct {
    const char *spec;
    mm_loss loss;
    float slope;
} rt_cases[] = {
    {"12-9-7-4:identity", MM_LOSS_SOFTMAX_XENT, 0.01f},
    {"12-9-7-4:relu", MM_LOSS_SOFTMAX_XENT, 0.01f},
    {"12-9-7-4:leaky_relu", MM_LOSS_SOFTMAX_XENT, 0.2f},
    {"12-9-7-4:tanh", MM_LOSS_MSE, 0.01f},
    {"12-9-7-4:sigmoid", MM_LOSS_MSE, 0.01f},
    {"12-9-4:leaky_relu", MM_LOSS_MSE, 0.0f},
    {"5-1", MM_LOSS_MSE, 0.3f},
};

START_TEST(test_round_trip_dense) {
    ck_assert_int_eq(mm_onnx_available(), 1);
    for (size_t c = 0; c < sizeof rt_cases / sizeof rt_cases[0]; c++) {
        mm_model *m = make_model(rt_cases[c].spec, rt_cases[c].loss, rt_cases[c].slope, 10 + c);
        MM_ASSERT_OK(mm_model_add_lineage(m, "train", "{\"note\":\"before export\"}"));
        mm_model *got = round_trip(m);
        ck_assert_int_eq(mm_model_loss(got), rt_cases[c].loss);
        assert_same_weights(m, got);
        assert_same_outputs(m, got, 17);
        const char *lin = mm_model_lineage(got);
        ck_assert_msg(strstr(lin, "\"before export\"") != NULL, "%s", lin);
        ck_assert_msg(strstr(lin, "\"import\"") && strstr(lin, "\"onnx\"") &&
                          strstr(lin, "\"mmaint\""),
                      "%s", lin);
        /* and again: export of the import is the same model */
        mm_model *again = round_trip(got);
        assert_same_weights(m, again);
        assert_same_outputs(m, again, 5);
        mm_model_free(again);
        mm_model_free(got);
        mm_model_free(m);
    }
}
END_TEST

static mm_model *quantized(mm_quant_scheme scheme, int per_channel, int wsym, int asym_act,
                           int keep_master) {
    mm_model *m = make_model("16-12-8-5:relu", MM_LOSS_SOFTMAX_XENT, 0.01f, 3);
    mm_quantizer *q;
    MM_ASSERT_OK(mm_quantizer_create(&q, scheme));
    if (scheme != MM_QUANT_FP16 && scheme != MM_QUANT_BF16) {
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, per_channel));
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, wsym));
    }
    if (scheme == MM_QUANT_INT8_STATIC) {
        MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, asym_act));
        float x[64 * 16];
        mm_test_fill(x, 64 * 16, 5, -2.0f, 2.0f);
        MM_ASSERT_OK(mm_quantizer_calibrate(q, m, x, 64));
    }
    MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, keep_master));
    MM_ASSERT_OK(mm_quantizer_apply(q, m));
    mm_quantizer_free(q);
    return m;
}

START_TEST(test_round_trip_int8) {
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_INT8_DYNAMIC,
                                       MM_QUANT_INT8_STATIC};
    for (size_t s = 0; s < 3; s++)
        for (int variant = 0; variant < 4; variant++) {
            const int pc = variant & 1, wsym = !(variant & 2);
            mm_model *m = quantized(schemes[s], pc, wsym, variant == 3, variant == 1);
            mm_model *got = round_trip(m);
            for (size_t i = 0; i < mm_model_num_layers(got); i++) {
                const char *kind;
                MM_ASSERT_OK(mm_model_layer_info(got, i, &kind, NULL, NULL, NULL));
                ck_assert_str_eq(kind, "int8");
            }
            /* the same int8 layers: the same outputs, bit for bit */
            assert_same_outputs(m, got, 9);
            /* and the native file of the import equals the original's layers */
            mm_model *again = round_trip(got);
            assert_same_outputs(m, again, 3);
            mm_model_free(again);
            mm_model_free(got);
            mm_model_free(m);
        }
}
END_TEST

/* fp16 / bf16 / sparse export as dense float Gemm: same outputs up to the
 * float kernels' summation order, dense kind after import. */
START_TEST(test_export_as_dense) {
    for (int k = 0; k < 3; k++) {
        mm_model *m;
        if (k < 2) {
            m = quantized(k == 0 ? MM_QUANT_FP16 : MM_QUANT_BF16, 1, 1, 0, k == 0);
        } else {
            m = make_model("30-20-10-4:tanh", MM_LOSS_SOFTMAX_XENT, 0.01f, 8);
            mm_pruner *p;
            MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
            MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.8));
            MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
            MM_ASSERT_OK(mm_pruner_apply(p, m));
            MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
            mm_pruner_free(p);
            const char *kind;
            MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
            ck_assert_str_eq(kind, "sparse");
        }
        mm_model *got = round_trip(m);
        const size_t in = mm_model_input_dim(m), out = mm_model_output_dim(m), n = 11;
        float *x = malloc(n * in * 4), *ya = malloc(n * out * 4), *yb = malloc(n * out * 4);
        mm_test_fill(x, n * in, 4, -1.0f, 1.0f);
        MM_ASSERT_OK(mm_model_forward(m, x, n, ya));
        MM_ASSERT_OK(mm_model_forward(got, x, n, yb));
        ck_assert_msg(mm_test_max_abs_diff(ya, yb, n * out) < 1e-5, "kind %d: max diff %g", k,
                      mm_test_max_abs_diff(ya, yb, n * out));
        const char *kind;
        MM_ASSERT_OK(mm_model_layer_info(got, 0, &kind, NULL, NULL, NULL));
        ck_assert_str_eq(kind, "dense");
        free(x);
        free(ya);
        free(yb);
        mm_model_free(got);
        mm_model_free(m);
    }
}
END_TEST

START_TEST(test_export_errors) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 4, 1));
    char *path = mm_test_tmp_path(".onnx");
    MM_ASSERT_STATUS(mm_onnx_export(m, path), MM_E_STATE);
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_RELU));
    MM_ASSERT_STATUS(mm_onnx_export(NULL, path), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_onnx_export(m, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_onnx_export(m, "/nonexistent-dir/x.onnx"), MM_E_IO);
    /* a failed export leaves an existing file as it was */
    FILE *f = fopen(path, "wb");
    fputs("keep", f);
    fclose(f);
    MM_ASSERT_STATUS(mm_onnx_export(m, "/"), MM_E_IO);
    size_t len;
    unsigned char *buf = read_file(path, &len);
    ck_assert_uint_eq(len, 4);
    free(buf);
    MM_ASSERT_OK(mm_onnx_export(m, path));
    mm_model *got = NULL;
    MM_ASSERT_OK(mm_onnx_import(&got, path));
    mm_model_free(got);
    MM_ASSERT_STATUS(mm_onnx_import(&got, "/nonexistent-dir/x.onnx"), MM_E_IO);
    ck_assert_ptr_null(got);
    MM_ASSERT_STATUS(mm_onnx_import(NULL, path), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_onnx_import_buffer(&got, NULL, 3), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_onnx_import_buffer(&got, "", 0), MM_E_FORMAT);
    remove(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * PyTorch fixtures (tests/golden/make_onnx_fixture.py)
 * ---------------------------------------------------------------------- */

static void check_fixture(const char *name, mm_loss want_loss, size_t want_layers) {
    const char *dir = mm_test_fashion_dir();
    if (!dir) {
        fprintf(stderr, "SKIP %s: Fashion-MNIST not installed\n", name);
        return;
    }
    char file[256];
    snprintf(file, sizeof file, "%s.onnx", name);
    char *onnx = data_path(file);
    snprintf(file, sizeof file, "%s.expected", name);
    char *exp_path = data_path(file);
    mm_model *m = NULL;
    MM_ASSERT_OK(mm_onnx_import(&m, onnx));
    ck_assert_int_eq(mm_model_loss(m), want_loss);
    ck_assert_uint_eq(mm_model_num_layers(m), want_layers);
    ck_assert_uint_eq(mm_model_input_dim(m), 784);
    ck_assert_uint_eq(mm_model_output_dim(m), 10);
    ck_assert_msg(strstr(mm_model_lineage(m), "pytorch") != NULL, "%s", mm_model_lineage(m));

    char images[4096];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_load_idx(&ds, images, NULL));
    size_t len;
    float *expected = (float *)read_file(exp_path, &len);
    const size_t n = len / (10 * sizeof(float));
    ck_assert_uint_eq(n, 256);
    float *y = malloc(n * 10 * sizeof *y);
    MM_ASSERT_OK(mm_model_predict_proba(m, mm_dataset_features(ds), n, y));
    const double diff = mm_test_max_abs_diff(y, expected, n * 10);
    fprintf(stderr, "%s: max |mmaint - torch| over %zu test images = %.3g\n", name, n, diff);
    ck_assert_msg(diff <= 1e-5, "%s: max abs diff %g > 1e-5", name, diff);
    /* and the arg-max agrees everywhere */
    int32_t *lab = malloc(n * sizeof *lab);
    MM_ASSERT_OK(mm_model_predict(m, mm_dataset_features(ds), n, lab));
    for (size_t i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t c = 1; c < 10; c++)
            if (expected[i * 10 + c] > expected[i * 10 + best]) best = c;
        ck_assert_int_eq(lab[i], (int32_t)best);
    }
    /* the imported model keeps learning here: Adam steps on the first 64
     * test images (with their labels) lower the loss on them */
    char labels[4096];
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    mm_dataset *dl;
    MM_ASSERT_OK(mm_dataset_load_idx(&dl, images, labels));
    const float *x64 = mm_dataset_features(dl);
    const int32_t *l64 = mm_dataset_labels(dl);
    double before, after;
    MM_ASSERT_OK(mm_model_evaluate(m, x64, l64, NULL, 64, &before, NULL));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    for (int it = 0; it < 20; it++) MM_ASSERT_OK(mm_optimizer_step(o, x64, l64, NULL, 64, NULL));
    MM_ASSERT_OK(mm_model_evaluate(m, x64, l64, NULL, 64, &after, NULL));
    ck_assert_msg(after < before, "%s: loss %g -> %g after 20 Adam steps", name, before, after);
    mm_optimizer_free(o);
    mm_dataset_free(dl);
    free(lab);
    free(y);
    free(expected);
    mm_dataset_free(ds);
    mm_model_free(m);
    free(onnx);
    free(exp_path);
}

START_TEST(test_torch_mlp) { check_fixture("onnx_torch_mlp", MM_LOSS_SOFTMAX_XENT, 4); }
END_TEST

START_TEST(test_torch_matmul) { check_fixture("onnx_torch_matmul", MM_LOSS_MSE, 2); }
END_TEST

/* ------------------------------------------------------------------------
 * hostile files: an exported model, edited with the generated code
 * ---------------------------------------------------------------------- */

typedef struct edit {
    unsigned char *bytes;
    size_t len;
} edit;

/* A small exported model (relu, leaky relu, softmax) unpacked for editing. */
static Onnx__ModelProto *base_proto(const char *spec) {
    mm_model *m = make_model(spec, MM_LOSS_SOFTMAX_XENT, 0.1f, 2);
    char *path = mm_test_tmp_path(".onnx");
    MM_ASSERT_OK(mm_onnx_export(m, path));
    size_t len;
    unsigned char *buf = read_file(path, &len);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(mp);
    free(buf);
    remove(path);
    free(path);
    mm_model_free(m);
    return mp;
}

/* Pack, import, expect `want` and n1, n2 (unless NULL) in the message. */
static void expect_refusal(const Onnx__ModelProto *mp, mm_status want, const char *n1,
                           const char *n2) {
    size_t len = onnx__model_proto__get_packed_size(mp);
    unsigned char *buf = malloc(len + 1);
    onnx__model_proto__pack(mp, buf);
    mm_model *got = (mm_model *)buf; /* must be reset to NULL */
    mm_status st = mm_onnx_import_buffer(&got, buf, len);
    const char *msg = mm_last_error_message();
    ck_assert_msg(st == want, "got %s (want %s): %s", mm_status_name(st), mm_status_name(want),
                  msg);
    if (want == MM_OK) mm_model_free(got);
    else ck_assert_ptr_null(got);
    ck_assert_msg(!n1 || strstr(msg, n1), "message lacks '%s': %s", n1, msg);
    ck_assert_msg(!n2 || strstr(msg, n2), "message lacks '%s': %s", n2, msg);
    free(buf);
}

static Onnx__NodeProto *find_node(Onnx__ModelProto *mp, const char *name) {
    for (size_t i = 0; i < mp->graph->n_node; i++)
        if (strcmp(mp->graph->node[i]->name, name) == 0) return mp->graph->node[i];
    ck_abort_msg("no node %s", name);
    return NULL;
}

static Onnx__TensorProto *find_init(Onnx__ModelProto *mp, const char *name) {
    for (size_t i = 0; i < mp->graph->n_initializer; i++)
        if (strcmp(mp->graph->initializer[i]->name, name) == 0) return mp->graph->initializer[i];
    ck_abort_msg("no initializer %s", name);
    return NULL;
}

static Onnx__AttributeProto *find_attr(Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
    return NULL;
}

START_TEST(test_hostile_tensors) {
    Onnx__ModelProto *mp = base_proto("6-5-3:relu");
    Onnx__TensorProto *w = find_init(mp, "layers.0.weight");
    /* raw_data length not matching the dims */
    w->raw_data.len -= 4;
    expect_refusal(mp, MM_E_FORMAT, "layers.0.weight", "raw data");
    w->raw_data.len += 4;
    /* negative dim */
    w->dims[0] = -5;
    expect_refusal(mp, MM_E_FORMAT, "layers.0.weight", "negative");
    /* dims that overflow */
    w->dims[0] = INT64_MAX / 2;
    expect_refusal(mp, MM_E_FORMAT, "layers.0.weight", "overflow");
    /* huge dims that do not overflow: the data length catches them */
    w->dims[0] = 1 << 30;
    expect_refusal(mp, MM_E_FORMAT, "layers.0.weight", NULL);
    w->dims[0] = 5;
    /* wrong dtype */
    w->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.0.weight", "double");
    w->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    /* NaN weight */
    float nan = NAN;
    unsigned char saved[4];
    memcpy(saved, w->raw_data.data, 4);
    memcpy(w->raw_data.data, &nan, 4);
    expect_refusal(mp, MM_E_NUMERIC, "layers.0.gemm", "not finite");
    memcpy(w->raw_data.data, saved, 4);
    /* missing initializer */
    char *keep = w->name;
    w->name = (char *)"renamed";
    expect_refusal(mp, MM_E_FORMAT, "layers.0.gemm", "layers.0.weight");
    w->name = keep;
    /* weights that do not match the input width */
    Onnx__TensorShapeProto *sh = mp->graph->input[0]->type->tensor_type->shape;
    sh->dim[1]->dim_value = 7;
    expect_refusal(mp, MM_E_FORMAT, "layers.0.gemm", "expect 6 inputs");
    sh->dim[1]->dim_value = 6;
    /* a symbolic feature dimension */
    sh->dim[1]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    sh->dim[1]->dim_param = (char *)"features";
    expect_refusal(mp, MM_E_UNSUPPORTED, "symbolic", "features");
    sh->dim[1]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    sh->dim[1]->dim_value = 6;
    /* a non-float input */
    mp->graph->input[0]->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    expect_refusal(mp, MM_E_UNSUPPORTED, "input", "int64");
    mp->graph->input[0]->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    /* still fine after all that */
    expect_refusal(mp, MM_OK, NULL, NULL);
    onnx__model_proto__free_unpacked(mp, NULL);
}
END_TEST

START_TEST(test_hostile_graph) {
    Onnx__ModelProto *mp = base_proto("6-5-4-3:leaky_relu");
    Onnx__NodeProto *g0 = find_node(mp, "layers.0.gemm"), *g1 = find_node(mp, "layers.1.gemm");
    Onnx__NodeProto *a0 = find_node(mp, "layers.0.activation");
    /* unsupported op */
    char *op = a0->op_type;
    a0->op_type = (char *)"Elu";
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.0.activation", "Elu");
    a0->op_type = op;
    /* Gemm attributes */
    Onnx__AttributeProto *tb = find_attr(g0, "transB");
    char *tb_name = tb->name;
    tb->name = (char *)"transA";
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.0.gemm", "transA");
    tb->name = tb_name;
    Onnx__AttributeProto alpha = ONNX__ATTRIBUTE_PROTO__INIT;
    alpha.name = (char *)"alpha";
    alpha.has_type = 1;
    alpha.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    alpha.has_f = 1;
    alpha.f = 0.7f;
    Onnx__AttributeProto *attrs[2] = {tb, &alpha};
    Onnx__AttributeProto **old_attrs = g1->attribute;
    g1->attribute = attrs;
    g1->n_attribute = 2;
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.1.gemm", "alpha");
    alpha.f = 2.0f; /* a power of two folds exactly */
    expect_refusal(mp, MM_OK, NULL, NULL);
    alpha.name = (char *)"gamma";
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.1.gemm", "gamma");
    g1->attribute = old_attrs;
    g1->n_attribute = 1;
    /* LeakyRelu alphas that differ */
    Onnx__NodeProto *a1 = find_node(mp, "layers.1.activation");
    find_attr(a1, "alpha")->f = 0.25f;
    expect_refusal(mp, MM_E_UNSUPPORTED, "layers.1.activation", "one leaky slope");
    find_attr(a1, "alpha")->f = 0.1f;
    /* a cycle: layer 1's Gemm reads layer 1's output */
    char *in = g1->input[0];
    g1->input[0] = (char *)"layers.1.output";
    expect_refusal(mp, MM_E_FORMAT, NULL, NULL);
    g1->input[0] = in;
    /* an unused node */
    Onnx__NodeProto extra = ONNX__NODE_PROTO__INIT;
    char *ein[1] = {(char *)"layers.0.weight"}, *eout[1] = {(char *)"dangling"};
    extra.name = (char *)"stray";
    extra.op_type = (char *)"Relu";
    extra.n_input = 1;
    extra.input = ein;
    extra.n_output = 1;
    extra.output = eout;
    Onnx__NodeProto **nodes = malloc((mp->graph->n_node + 1) * sizeof *nodes);
    memcpy(nodes, mp->graph->node, mp->graph->n_node * sizeof *nodes);
    nodes[mp->graph->n_node] = &extra;
    Onnx__NodeProto **old_nodes = mp->graph->node;
    mp->graph->node = nodes;
    mp->graph->n_node++;
    expect_refusal(mp, MM_E_UNSUPPORTED, "stray", "not on the path");
    /* a branch: the stray node reads the chain */
    ein[0] = (char *)"layers.0.output";
    expect_refusal(mp, MM_E_UNSUPPORTED, "stray", "chain");
    mp->graph->n_node--;
    mp->graph->node = old_nodes;
    free(nodes);
    /* two inputs / outputs */
    Onnx__ValueInfoProto *ins[2] = {mp->graph->input[0], mp->graph->input[0]};
    Onnx__ValueInfoProto **old_in = mp->graph->input;
    mp->graph->input = ins;
    mp->graph->n_input = 2;
    expect_refusal(mp, MM_E_UNSUPPORTED, "2 inputs", NULL);
    mp->graph->input = old_in;
    mp->graph->n_input = 1;
    Onnx__ValueInfoProto *outs[2] = {mp->graph->output[0], mp->graph->output[0]};
    Onnx__ValueInfoProto **old_out = mp->graph->output;
    mp->graph->output = outs;
    mp->graph->n_output = 2;
    expect_refusal(mp, MM_E_UNSUPPORTED, "2 outputs", NULL);
    mp->graph->output = old_out;
    mp->graph->n_output = 1;
    /* opset outside the supported range */
    mp->opset_import[0]->version = 9;
    expect_refusal(mp, MM_E_UNSUPPORTED, "opset 9", NULL);
    mp->opset_import[0]->version = 13;
    /* Softmax that is not last: move it before layer 2 is not a chain;
     * instead drop the graph's softmax and check the loss becomes MSE */
    expect_refusal(mp, MM_OK, NULL, NULL);
    onnx__model_proto__free_unpacked(mp, NULL);
}
END_TEST

/* ---- equivalent graphs in other shapes ---- */

static void set_str(char **field, const char *v) {
    free(*field);
    *field = strdup(v);
}

/* Append a node (all memory malloc'ed: free_unpacked frees it). */
static Onnx__NodeProto *add_node(Onnx__ModelProto *mp, const char *name, const char *op,
                                 const char *const *in, size_t n_in, const char *out) {
    Onnx__GraphProto *g = mp->graph;
    g->node = realloc(g->node, (g->n_node + 1) * sizeof *g->node);
    Onnx__NodeProto *n = malloc(sizeof *n);
    onnx__node_proto__init(n);
    n->name = strdup(name);
    n->op_type = strdup(op);
    n->input = malloc(n_in * sizeof *n->input);
    for (size_t i = 0; i < n_in; i++) n->input[i] = strdup(in[i]);
    n->n_input = n_in;
    n->output = malloc(sizeof *n->output);
    n->output[0] = strdup(out);
    n->n_output = 1;
    g->node[g->n_node++] = n;
    return n;
}

static void add_attr_i(Onnx__NodeProto *n, const char *name, int64_t v) {
    n->attribute = realloc(n->attribute, (n->n_attribute + 1) * sizeof *n->attribute);
    Onnx__AttributeProto *a = malloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = strdup(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    n->attribute[n->n_attribute++] = a;
}

static void add_attr_f(Onnx__NodeProto *n, const char *name, float v) {
    n->attribute = realloc(n->attribute, (n->n_attribute + 1) * sizeof *n->attribute);
    Onnx__AttributeProto *a = malloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = strdup(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    n->attribute[n->n_attribute++] = a;
}

/* A tensor with raw data (little-endian host assumed, as the test machine). */
static Onnx__TensorProto *new_tensor(const char *name, int32_t dtype, const int64_t *dims,
                                     size_t ndim, const void *data, size_t bytes) {
    Onnx__TensorProto *t = malloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = strdup(name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->dims = malloc((ndim ? ndim : 1) * sizeof *t->dims);
    memcpy(t->dims, dims, ndim * sizeof *dims);
    t->n_dims = ndim;
    t->has_raw_data = 1;
    t->raw_data.data = malloc(bytes ? bytes : 1);
    memcpy(t->raw_data.data, data, bytes);
    t->raw_data.len = bytes;
    return t;
}

static void add_init(Onnx__ModelProto *mp, Onnx__TensorProto *t) {
    Onnx__GraphProto *g = mp->graph;
    g->initializer = realloc(g->initializer, (g->n_initializer + 1) * sizeof *g->initializer);
    g->initializer[g->n_initializer++] = t;
}

/* Import mp and compare with model m: same outputs bit for bit. */
static void expect_same_model(const Onnx__ModelProto *mp, const mm_model *m, const char *what) {
    size_t len = onnx__model_proto__get_packed_size(mp);
    unsigned char *buf = malloc(len);
    onnx__model_proto__pack(mp, buf);
    mm_model *got = NULL;
    mm_status st = mm_onnx_import_buffer(&got, buf, len);
    ck_assert_msg(st == MM_OK, "%s: %s: %s", what, mm_status_name(st), mm_last_error_message());
    assert_same_weights(m, got);
    assert_same_outputs(m, got, 7);
    mm_model_free(got);
    free(buf);
}

START_TEST(test_import_variants) {
    mm_model *m = make_model("6-5-3:relu", MM_LOSS_SOFTMAX_XENT, 0.1f, 2);
    float w0[30], b0[5], w1[15], b1[3];
    MM_ASSERT_OK(mm_model_get_weights(m, 0, w0, 30, b0, 5));
    MM_ASSERT_OK(mm_model_get_weights(m, 1, w1, 15, b1, 3));

    /* transB = 0 with B = W^T; beta = 0.5 with C = 2 b; alpha = 1/4 with 4 W
     * (exact even for the subnormal weight) */
    Onnx__ModelProto *mp = base_proto("6-5-3:relu");
    Onnx__TensorProto *t = find_init(mp, "layers.0.weight");
    float wt[30], c2[3], w4[15];
    for (int o = 0; o < 5; o++)
        for (int i = 0; i < 6; i++) wt[i * 5 + o] = w0[o * 6 + i];
    memcpy(t->raw_data.data, wt, sizeof wt);
    t->dims[0] = 6;
    t->dims[1] = 5;
    find_attr(find_node(mp, "layers.0.gemm"), "transB")->i = 0;
    for (int o = 0; o < 3; o++) c2[o] = 2.0f * b1[o];
    memcpy(find_init(mp, "layers.1.bias")->raw_data.data, c2, sizeof c2);
    for (int k = 0; k < 15; k++) w4[k] = w1[k] * 4.0f;
    memcpy(find_init(mp, "layers.1.weight")->raw_data.data, w4, sizeof w4);
    add_attr_f(find_node(mp, "layers.1.gemm"), "beta", 0.5f);
    add_attr_f(find_node(mp, "layers.1.gemm"), "alpha", 0.25f);
    expect_same_model(mp, m, "transB 0, beta, alpha");
    onnx__model_proto__free_unpacked(mp, NULL);

    /* input [batch, 2, 3] -> Reshape(Constant [-1, 6]) -> Identity -> ... */
    mp = base_proto("6-5-3:relu");
    Onnx__TensorShapeProto *sh = mp->graph->input[0]->type->tensor_type->shape;
    sh->dim = realloc(sh->dim, 3 * sizeof *sh->dim);
    sh->dim[2] = malloc(sizeof *sh->dim[2]);
    onnx__tensor_shape_proto__dimension__init(sh->dim[2]);
    sh->dim[2]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    sh->dim[2]->dim_value = 3;
    sh->dim[1]->dim_value = 2;
    sh->n_dim = 3;
    const int64_t shape[2] = {-1, 6}, d2[1] = {2};
    Onnx__NodeProto *c = add_node(mp, "shape_const", "Constant", NULL, 0, "shape");
    c->attribute = malloc(sizeof *c->attribute);
    c->attribute[0] = malloc(sizeof *c->attribute[0]);
    onnx__attribute_proto__init(c->attribute[0]);
    c->attribute[0]->name = strdup("value");
    c->attribute[0]->has_type = 1;
    c->attribute[0]->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    c->attribute[0]->t = new_tensor("", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, d2, 1, shape,
                                    sizeof shape);
    c->n_attribute = 1;
    const char *r_in[2] = {"input", "shape"}, *i_in[1] = {"flat"};
    add_node(mp, "reshape", "Reshape", r_in, 2, "flat");
    add_node(mp, "identity", "Identity", i_in, 1, "flat2");
    set_str(&find_node(mp, "layers.0.gemm")->input[0], "flat2");
    expect_same_model(mp, m, "Reshape, Constant, Identity");
    /* the same with Flatten */
    Onnx__NodeProto *r = find_node(mp, "reshape");
    set_str(&r->op_type, "Flatten");
    r->n_input = 1; /* input[1] stays allocated: free_unpacked frees n_input entries */
    free(r->input[1]);
    add_attr_i(r, "axis", 1);
    find_node(mp, "shape_const")->n_output = 1;
    set_str(&find_node(mp, "shape_const")->name, "unused_const");
    expect_refusal(mp, MM_E_UNSUPPORTED, "unused_const", "not on the path");
    onnx__model_proto__free_unpacked(mp, NULL);

    /* layer 1 as MatMul(x, W^T) + Add(b) */
    mp = base_proto("6-5-3:relu");
    Onnx__NodeProto *g1 = find_node(mp, "layers.1.gemm");
    set_str(&g1->op_type, "MatMul");
    g1->n_input = 2;
    free(g1->input[2]);
    for (size_t k = 0; k < g1->n_attribute; k++) onnx__attribute_proto__free_unpacked(g1->attribute[k], NULL);
    g1->n_attribute = 0;
    float w1t[15];
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 5; i++) w1t[i * 3 + o] = w1[o * 5 + i];
    const int64_t dt[2] = {5, 3};
    add_init(mp, new_tensor("w1t", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dt, 2, w1t, sizeof w1t));
    set_str(&g1->input[1], "w1t");
    char *final = strdup(g1->output[0]);
    set_str(&g1->output[0], "mm1");
    const char *a_in[2] = {"layers.1.bias", "mm1"}; /* bias first: either order */
    add_node(mp, "bias_add", "Add", a_in, 2, final);
    free(final);
    expect_same_model(mp, m, "MatMul + Add");
    onnx__model_proto__free_unpacked(mp, NULL);
    mm_model_free(m);
}
END_TEST

/* A static int8 graph without mmaint's metadata (as another tool would
 * write it) still comes back as the same static layers. */
START_TEST(test_static_qdq_without_metadata) {
    for (int sym = 0; sym < 2; sym++) {
        mm_model *m = quantized(MM_QUANT_INT8_STATIC, 1, 1, sym, 0);
        char *path = mm_test_tmp_path(".onnx");
        MM_ASSERT_OK(mm_onnx_export(m, path));
        size_t len;
        unsigned char *buf = read_file(path, &len);
        Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
        ck_assert_ptr_nonnull(mp);
        for (size_t i = 0; i < mp->n_metadata_props; i++)
            onnx__string_string_entry_proto__free_unpacked(mp->metadata_props[i], NULL);
        mp->n_metadata_props = 0;
        size_t len2 = onnx__model_proto__get_packed_size(mp);
        unsigned char *buf2 = malloc(len2);
        onnx__model_proto__pack(mp, buf2);
        mm_model *got = NULL;
        MM_ASSERT_OK(mm_onnx_import_buffer(&got, buf2, len2));
        assert_same_outputs(m, got, 13);
        mm_model_free(got);
        free(buf2);
        onnx__model_proto__free_unpacked(mp, NULL);
        free(buf);
        remove(path);
        free(path);
        mm_model_free(m);
    }
}
END_TEST

START_TEST(test_corrupt_bytes) {
    mm_model *m = make_model("7-6-5-3:relu", MM_LOSS_SOFTMAX_XENT, 0.01f, 4);
    char *path = mm_test_tmp_path(".onnx");
    MM_ASSERT_OK(mm_onnx_export(m, path));
    size_t len;
    unsigned char *buf = read_file(path, &len);
    /* every truncation: an error (never a crash), or -- where the cut
     * falls between fields -- a model the checks accept */
    size_t refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        mm_model *got = NULL;
        mm_status st = mm_onnx_import_buffer(&got, buf, cut);
        if (st != MM_OK) {
            refused++;
            ck_assert_ptr_null(got);
            ck_assert_msg(*mm_last_error_message() != '\0', "no message at cut %zu", cut);
        }
        mm_model_free(got);
    }
    ck_assert_uint_ge(refused, len - 8);
    /* random byte flips */
    unsigned char *copy = malloc(len);
    uint64_t s = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, buf, len);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            copy[(s >> 33) % len] ^= (unsigned char)(1u << ((s >> 20) & 7));
        }
        mm_model *got = NULL;
        mm_status st = mm_onnx_import_buffer(&got, copy, len);
        if (st == MM_OK) {
            float x[7] = {0}, y[3];
            MM_ASSERT_OK(mm_model_forward(got, x, 1, y));
        }
        mm_model_free(got);
    }
    /* deeply nested messages: refused before protobuf-c recurses */
    /* (a nest of 3000 graphs, each inside a node's attribute) */
    Onnx__GraphProto *inner = NULL;
    for (int d = 0; d < 3000; d++) {
        Onnx__GraphProto *g = calloc(1, sizeof *g);
        onnx__graph_proto__init(g);
        if (inner) {
            Onnx__NodeProto *n = calloc(1, sizeof *n);
            onnx__node_proto__init(n);
            Onnx__AttributeProto *a = calloc(1, sizeof *a);
            onnx__attribute_proto__init(a);
            a->g = inner;
            n->n_attribute = 1;
            n->attribute = calloc(1, sizeof *n->attribute);
            n->attribute[0] = a;
            g->n_node = 1;
            g->node = calloc(1, sizeof *g->node);
            g->node[0] = n;
        }
        inner = g;
    }
    Onnx__ModelProto deepm = ONNX__MODEL_PROTO__INIT;
    deepm.graph = inner;
    expect_refusal(&deepm, MM_E_FORMAT, "nested", NULL);
    /* free the nest (packing only read it) */
    while (inner) {
        Onnx__GraphProto *next = inner->n_node ? inner->node[0]->attribute[0]->g : NULL;
        if (inner->n_node) {
            free(inner->node[0]->attribute[0]);
            free(inner->node[0]->attribute);
            free(inner->node[0]);
            free(inner->node);
        }
        free(inner);
        inner = next;
    }
    free(copy);
    free(buf);
    remove(path);
    free(path);
    mm_model_free(m);
}
END_TEST

#else /* built without ONNX */

START_TEST(test_unavailable) {
    ck_assert_int_eq(mm_onnx_available(), 0);
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "4-3-2:relu", 1));
    MM_ASSERT_STATUS(mm_onnx_export(m, "unused.onnx"), MM_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "without ONNX support"));
    mm_model *got = m;
    MM_ASSERT_STATUS(mm_onnx_import(&got, "unused.onnx"), MM_E_UNSUPPORTED);
    ck_assert_ptr_null(got);
    got = m;
    MM_ASSERT_STATUS(mm_onnx_import_buffer(&got, "x", 1), MM_E_UNSUPPORTED);
    ck_assert_ptr_null(got);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "without ONNX support"));
    mm_model_free(m);
}
END_TEST
#endif

static Suite *onnx_suite(void) {
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("api");
#ifdef MM_TEST_HAVE_ONNX
    tcase_add_test(tc, test_round_trip_dense);
    tcase_add_test(tc, test_round_trip_int8);
    tcase_add_test(tc, test_export_as_dense);
    tcase_add_test(tc, test_export_errors);
    tcase_add_test(tc, test_torch_mlp);
    tcase_add_test(tc, test_torch_matmul);
    tcase_add_test(tc, test_hostile_tensors);
    tcase_add_test(tc, test_hostile_graph);
    tcase_add_test(tc, test_import_variants);
    tcase_add_test(tc, test_static_qdq_without_metadata);
    tcase_add_test(tc, test_corrupt_bytes);
#else
    tcase_add_test(tc, test_unavailable);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(onnx_suite()); }
