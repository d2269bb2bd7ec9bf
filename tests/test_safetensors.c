/* safetensors import/export (include/mm/mm_safetensors.h): bit-exact round
 * trips for several architectures, an independent parse of exported files,
 * the tensor-name conventions (mmaint, PyTorch nn.Sequential, explicit
 * patterns and lists), dtype conversion, pruned and quantized exports, and
 * hostile files (truncation at every offset, bad lengths and offsets,
 * overlaps, gaps, overflow, bad JSON, duplicates, missing and extra
 * tensors) that must give errors, never crashes. The files under test are
 * built here byte by byte, independently of the library's writer. */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm/mm.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

/* A model from a spec, with weights that are not the initialiser's and a
 * few awkward values (-0, a subnormal). */
static mm_model *make_model(const char *spec, uint64_t seed) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, spec, seed));
    for (size_t i = 0; i < mm_model_num_layers(m); i++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, i, NULL, &in, &out, NULL));
        float *w = malloc(in * out * sizeof *w), *b = malloc(out * sizeof *b);
        mm_test_fill(w, in * out, seed + 31 * i, -1.0f, 1.0f);
        mm_test_fill(b, out, seed + 31 * i + 7, -0.5f, 0.5f);
        if (in * out > 2) {
            w[0] = -0.0f;
            w[1] = 1e-40f;
        }
        MM_ASSERT_OK(mm_model_set_weights(m, i, w, in * out, b, out));
        free(w);
        free(b);
    }
    return m;
}

/* Weights and biases of every layer identical bit for bit, same
 * architecture and loss. */
static void assert_same_weights(const mm_model *a, const mm_model *b) {
    ck_assert_uint_eq(mm_model_input_dim(a), mm_model_input_dim(b));
    ck_assert_uint_eq(mm_model_num_layers(a), mm_model_num_layers(b));
    ck_assert_int_eq(mm_model_loss(a), mm_model_loss(b));
    for (size_t i = 0; i < mm_model_num_layers(a); i++) {
        size_t ia, oa, ib, ob;
        mm_activation aa, ab;
        MM_ASSERT_OK(mm_model_layer_info(a, i, NULL, &ia, &oa, &aa));
        MM_ASSERT_OK(mm_model_layer_info(b, i, NULL, &ib, &ob, &ab));
        ck_assert_uint_eq(ia, ib);
        ck_assert_uint_eq(oa, ob);
        ck_assert_int_eq(aa, ab);
        float *wa = malloc(ia * oa * 4), *wb = malloc(ia * oa * 4), *ba = malloc(oa * 4),
              *bb = malloc(oa * 4);
        MM_ASSERT_OK(mm_model_get_weights(a, i, wa, ia * oa, ba, oa));
        MM_ASSERT_OK(mm_model_get_weights(b, i, wb, ia * oa, bb, oa));
        ck_assert_msg(memcmp(wa, wb, ia * oa * 4) == 0, "layer %zu weights differ", i);
        ck_assert_msg(memcmp(ba, bb, oa * 4) == 0, "layer %zu biases differ", i);
        free(wa);
        free(wb);
        free(ba);
        free(bb);
    }
}

/* Max |difference| of the outputs of two models on n pseudo-random inputs
 * (and whether they are bit-identical). */
static double output_diff(const mm_model *a, const mm_model *b, size_t n, bool *identical) {
    size_t d = mm_model_input_dim(a), c = mm_model_output_dim(a);
    ck_assert_uint_eq(c, mm_model_output_dim(b));
    float *x = malloc(n * d * 4), *ya = malloc(n * c * 4), *yb = malloc(n * c * 4);
    mm_test_fill(x, n * d, 99, -2.0f, 2.0f);
    MM_ASSERT_OK(mm_model_forward(a, x, n, ya));
    MM_ASSERT_OK(mm_model_forward(b, x, n, yb));
    if (identical) *identical = memcmp(ya, yb, n * c * 4) == 0;
    double diff = mm_test_max_abs_diff(ya, yb, n * c);
    free(x);
    free(ya);
    free(yb);
    return diff;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* One tensor of a hand-built file. */
typedef struct tspec {
    const char *name;
    const char *dtype;
    size_t ndim;
    uint64_t shape[4];
    const void *data;
    size_t nbytes;
} tspec;

/* A safetensors file: 8-byte length, header (metadata object text or NULL,
 * tensors at contiguous offsets in the order given, padded to 8), data. */
static unsigned char *build_file(const tspec *t, size_t n, const char *meta, size_t *len) {
    size_t cap = 4096 + n * 256 + (meta ? strlen(meta) : 0);
    char *h = malloc(cap);
    size_t hl = 0, off = 0, total = 0;
    hl += (size_t)snprintf(h + hl, cap - hl, "{");
    if (meta) hl += (size_t)snprintf(h + hl, cap - hl, "\"__metadata__\":%s", meta);
    for (size_t i = 0; i < n; i++) {
        hl += (size_t)snprintf(h + hl, cap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               (meta || i) ? "," : "", t[i].name, t[i].dtype);
        for (size_t d = 0; d < t[i].ndim; d++)
            hl += (size_t)snprintf(h + hl, cap - hl, "%s%llu", d ? "," : "",
                                   (unsigned long long)t[i].shape[d]);
        hl += (size_t)snprintf(h + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", off,
                               off + t[i].nbytes);
        off += t[i].nbytes;
    }
    hl += (size_t)snprintf(h + hl, cap - hl, "}");
    while (hl % 8) h[hl++] = ' ';
    total = 8 + hl + off;
    unsigned char *buf = malloc(total ? total : 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    size_t pos = 8 + hl;
    for (size_t i = 0; i < n; i++) {
        if (t[i].nbytes) memcpy(buf + pos, t[i].data, t[i].nbytes);
        pos += t[i].nbytes;
    }
    free(h);
    *len = total;
    return buf;
}

/* A file from raw header text and data bytes (header length as given). */
static unsigned char *build_raw(const char *header, const void *data, size_t dlen, size_t *len) {
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (dlen) memcpy(buf + 8 + hl, data, dlen);
    *len = 8 + hl + dlen;
    return buf;
}

/* The tensors of a 4-5-3 model, named prefix0.weight ... as given. */
typedef struct small_model {
    float w0[5 * 4], b0[5], w1[3 * 5], b1[3];
} small_model;

static void small_fill(small_model *s) {
    mm_test_fill(s->w0, 20, 1, -1, 1);
    mm_test_fill(s->b0, 5, 2, -1, 1);
    mm_test_fill(s->w1, 15, 3, -1, 1);
    mm_test_fill(s->b1, 3, 4, -1, 1);
}

static void small_tensors(const small_model *s, tspec t[4], const char *n0w, const char *n0b,
                          const char *n1w, const char *n1b) {
    t[0] = (tspec){n0w, "F32", 2, {5, 4}, s->w0, sizeof s->w0};
    t[1] = (tspec){n0b, "F32", 1, {5}, s->b0, sizeof s->b0};
    t[2] = (tspec){n1w, "F32", 2, {3, 5}, s->w1, sizeof s->w1};
    t[3] = (tspec){n1b, "F32", 1, {3}, s->b1, sizeof s->b1};
}

/* The small model's weights landed in the right layers. */
static void assert_small(const mm_model *m, const small_model *s) {
    ck_assert_uint_eq(mm_model_num_layers(m), 2);
    small_model g;
    MM_ASSERT_OK(mm_model_get_weights(m, 0, g.w0, 20, g.b0, 5));
    MM_ASSERT_OK(mm_model_get_weights(m, 1, g.w1, 15, g.b1, 3));
    ck_assert(memcmp(&g, s, sizeof g) == 0);
}

static mm_status import_small(const tspec *t, size_t n, const char *meta, const char *arch,
                              const char *names, unsigned flags, mm_model **out) {
    size_t len;
    unsigned char *buf = build_file(t, n, meta, &len);
    mm_status st = mm_safetensors_import_buffer(out, buf, len, arch, names, flags);
    /* the same through a file (tensors read from it when used): same result */
    char *path = mm_test_tmp_path(".safetensors");
    write_file(path, buf, len);
    mm_model *m2 = NULL;
    mm_status st2 = mm_safetensors_import(&m2, path, arch, names, flags);
    ck_assert_msg(st2 == st, "file: %s, buffer: %s", mm_status_name(st2), mm_status_name(st));
    if (st == MM_OK) {
        assert_same_weights(*out, m2);
    }
    mm_model_free(m2);
    unlink(path);
    free(path);
    if (st != MM_OK) mm_safetensors_import_buffer(out, buf, len, arch, names, flags); /* its message */
    free(buf);
    return st;
}

/* ------------------------------------------------------------------------
 * round trips
 * ---------------------------------------------------------------------- */

static const char *const specs[] = {
    "784-256-128-10:relu", "4-8-3:tanh", "5-7-7-7-2:leaky_relu,mse", "3-1:sigmoid",
    "6-6-6-6-6-6-6-4:identity",
};

START_TEST(test_round_trip) {
    const char *spec = specs[_i];
    mm_model *m = make_model(spec, 40 + (uint64_t)_i);
    if (strstr(spec, "leaky")) MM_ASSERT_OK(mm_model_set_leaky_slope(m, 0.2f));
    MM_ASSERT_OK(mm_model_add_lineage(m, "train", "{\"epochs\":2}"));
    char *path = mm_test_tmp_path(".safetensors");
    MM_ASSERT_OK(mm_safetensors_export(m, path, NULL));

    /* from the file alone (architecture metadata) */
    mm_model *r = NULL;
    MM_ASSERT_OK(mm_safetensors_import(&r, path, NULL, NULL, 0));
    assert_same_weights(m, r);
    bool same = false;
    ck_assert(output_diff(m, r, 17, &same) == 0.0);
    ck_assert_msg(same, "%s: outputs not bit-identical", spec);
    /* lineage kept, plus the import event */
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(r), "\"train\""));
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(r), "\"import\""));
    /* the leaky slope travels in the metadata */
    if (strstr(spec, "leaky")) {
        mm_model *ref = make_model(spec, 40 + (uint64_t)_i);
        ck_assert(output_diff(ref, r, 5, NULL) > 0.0); /* default slope 0.01 differs */
        mm_model_free(ref);
    }
    mm_model_free(r);

    /* with the architecture given explicitly */
    if (!strstr(spec, "leaky")) {
        MM_ASSERT_OK(mm_safetensors_import(&r, path, spec, NULL, 0));
        assert_same_weights(m, r);
        ck_assert(output_diff(m, r, 9, &same) == 0.0 && same);
        mm_model_free(r);
    }

    /* export of the import is the same file apart from the lineage */
    MM_ASSERT_OK(mm_safetensors_import(&r, path, NULL, NULL, 0));
    char *path2 = mm_test_tmp_path(".safetensors");
    MM_ASSERT_OK(mm_safetensors_export(r, path2, NULL));
    mm_model *r2 = NULL;
    MM_ASSERT_OK(mm_safetensors_import(&r2, path2, NULL, NULL, 0));
    assert_same_weights(m, r2);
    mm_model_free(r2);
    mm_model_free(r);
    unlink(path2);
    free(path2);

    /* an mmaint model file imports like mm_model_load */
    char *mmf = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, mmf));
    MM_ASSERT_OK(mm_safetensors_import(&r, mmf, NULL, NULL, 0));
    assert_same_weights(m, r);
    mm_model_free(r);
    /* ... and with explicit names it is read as a plain file */
    MM_ASSERT_OK(mm_safetensors_import(&r, mmf, NULL, "layers.{i}", 0));
    assert_same_weights(m, r);
    mm_model_free(r);
    unlink(mmf);
    free(mmf);

    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* The exported file read by an independent parser: a plain safetensors
 * file (no format tag, no checksum), F32 tensors at contiguous aligned
 * offsets, values equal to the model's as little-endian floats. */
START_TEST(test_export_layout) {
    mm_model *m = make_model("6-5-4-3:relu", 7);
    char *path = mm_test_tmp_path(".safetensors");
    MM_ASSERT_OK(mm_safetensors_export(m, path, "net.{seq}"));
    size_t len;
    unsigned char *buf = read_file(path, &len);
    ck_assert_uint_ge(len, 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    ck_assert_uint_le(8 + hl, len);
    ck_assert_uint_eq((8 + hl) % 8, 0);
    json_error_t jerr;
    json_t *h = json_loadb((const char *)buf + 8, hl, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_msg(h != NULL, "%s", jerr.text);
    json_t *meta = json_object_get(h, "__metadata__");
    ck_assert(json_is_object(meta));
    ck_assert_ptr_null(json_object_get(meta, "checksum"));
    ck_assert_ptr_null(json_object_get(meta, "format"));
    ck_assert_str_eq(json_string_value(json_object_get(meta, "layer_names")), "net.0,net.2,net.4");
    json_t *arch = json_loads(json_string_value(json_object_get(meta, "architecture")), 0, &jerr);
    ck_assert_ptr_nonnull(arch);
    ck_assert_int_eq(json_integer_value(json_object_get(arch, "input_dim")), 6);
    ck_assert_uint_eq(json_array_size(json_object_get(arch, "layers")), 3);
    json_decref(arch);
    ck_assert_uint_eq(json_object_size(h), 7);
    const char *names[6] = {"net.0.weight", "net.0.bias", "net.2.weight",
                            "net.2.bias",   "net.4.weight", "net.4.bias"};
    uint64_t expect_off = 0;
    for (size_t k = 0; k < 6; k++) {
        json_t *t = json_object_get(h, names[k]);
        ck_assert_msg(t != NULL, "%s missing", names[k]);
        ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "F32");
        json_t *sh = json_object_get(t, "shape"), *off = json_object_get(t, "data_offsets");
        size_t layer = k / 2, in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, layer, NULL, &in, &out, NULL));
        size_t count = k % 2 ? out : in * out;
        ck_assert_uint_eq(json_array_size(sh), k % 2 ? 1 : 2);
        ck_assert_int_eq(json_integer_value(json_array_get(sh, 0)), (json_int_t)out);
        if (k % 2 == 0) ck_assert_int_eq(json_integer_value(json_array_get(sh, 1)), (json_int_t)in);
        uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 0));
        uint64_t e = (uint64_t)json_integer_value(json_array_get(off, 1));
        ck_assert_uint_eq(b, expect_off); /* written in layer order, contiguous */
        ck_assert_uint_eq(e - b, count * 4);
        expect_off = e;
        float *want = malloc(in * out * 4), *wb = malloc(out * 4);
        MM_ASSERT_OK(mm_model_get_weights(m, layer, want, in * out, wb, out));
        const float *src = k % 2 ? wb : want;
        for (size_t j = 0; j < count; j++) {
            const unsigned char *p = buf + 8 + hl + b + 4 * j;
            uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                         ((uint32_t)p[3] << 24);
            uint32_t v;
            memcpy(&v, &src[j], 4);
            ck_assert_uint_eq(u, v);
        }
        free(want);
        free(wb);
    }
    ck_assert_uint_eq(8 + hl + expect_off, len);
    json_decref(h);
    free(buf);
    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* Pruned (sparse kind and masked dense) and quantized models export as the
 * dense layers they compute. */
START_TEST(test_export_optimized) {
    char *path = mm_test_tmp_path(".safetensors");
    for (int fmt = 0; fmt < 2; fmt++) {
        mm_model *m = make_model("20-16-8-4:relu", 5);
        mm_pruner *p;
        MM_ASSERT_OK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.75));
        MM_ASSERT_OK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT,
                                   fmt ? MM_PRUNE_FORMAT_SPARSE : MM_PRUNE_FORMAT_DENSE));
        MM_ASSERT_OK(mm_pruner_apply(p, m));
        MM_ASSERT_OK(mm_pruner_finalize(p, m, NULL));
        mm_pruner_free(p);
        if (fmt) {
            const char *kind;
            MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
            ck_assert_str_eq(kind, "sparse");
        }
        MM_ASSERT_OK(mm_safetensors_export(m, path, NULL));
        mm_model *r = NULL;
        MM_ASSERT_OK(mm_safetensors_import(&r, path, NULL, NULL, 0));
        const char *kind;
        MM_ASSERT_OK(mm_model_layer_info(r, 0, &kind, NULL, NULL, NULL));
        ck_assert_str_eq(kind, "dense");
        ck_assert(output_diff(m, r, 11, NULL) < 1e-5);
        /* pruned weights are zeros: 75% of each layer's weights */
        size_t nz = mm_model_num_nonzero(r), all = mm_model_num_params(r);
        ck_assert_msg(nz < all / 2, "%zu of %zu non-zero", nz, all);
        mm_model_free(r);
        mm_model_free(m);
    }
    const mm_quant_scheme schemes[] = {MM_QUANT_INT8_WEIGHT_ONLY, MM_QUANT_FP16, MM_QUANT_BF16};
    for (int s = 0; s < 3; s++) {
        for (int master = 0; master < 2; master++) {
            mm_model *m = make_model("20-16-8-4:relu", 6);
            mm_model *orig = make_model("20-16-8-4:relu", 6);
            mm_quantizer *q;
            MM_ASSERT_OK(mm_quantizer_create(&q, schemes[s]));
            MM_ASSERT_OK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, master));
            MM_ASSERT_OK(mm_quantizer_apply(q, m));
            mm_quantizer_free(q);
            MM_ASSERT_OK(mm_safetensors_export(m, path, NULL));
            mm_model *r = NULL;
            MM_ASSERT_OK(mm_safetensors_import(&r, path, NULL, NULL, 0));
            if (master) {
                /* the float master weights: the original model */
                assert_same_weights(orig, r);
            } else {
                /* the dequantized weights: what the quantized model computes */
                double d = output_diff(m, r, 11, NULL);
                ck_assert_msg(d < 1e-4, "scheme %d: %g", (int)schemes[s], d);
                ck_assert(output_diff(orig, r, 11, NULL) > 0.0);
            }
            mm_model_free(r);
            mm_model_free(orig);
            mm_model_free(m);
        }
    }
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_export_errors) {
    mm_model *m = make_model("4-5-3:relu", 1);
    char *path = mm_test_tmp_path(".safetensors");
    MM_ASSERT_STATUS(mm_safetensors_export(NULL, path, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "a,b,c"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "a"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "a,a"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "a,"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "x.{j}"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "same"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_export(m, path, "{i},x"), MM_E_INVALID_ARGUMENT);
    ck_assert_int_ne(access(path, F_OK), 0); /* nothing written */
    /* a directory: MM_E_IO, and nothing left behind */
    char *dir = mm_test_tmp_path("-dir");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    MM_ASSERT_STATUS(mm_safetensors_export(m, dir, NULL), MM_E_IO);
    rmdir(dir);
    free(dir);
    /* explicit lists and patterns are used as given */
    MM_ASSERT_OK(mm_safetensors_export(m, path, "fc1,out"));
    mm_model *r = NULL;
    MM_ASSERT_OK(mm_safetensors_import(&r, path, NULL, NULL, 0)); /* recorded names */
    assert_same_weights(m, r);
    mm_model_free(r);
    MM_ASSERT_OK(mm_safetensors_import(&r, path, "4-5-3:relu", "fc1,out", 0));
    assert_same_weights(m, r);
    mm_model_free(r);
    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * tensor names
 * ---------------------------------------------------------------------- */

START_TEST(test_names_conventions) {
    small_model s;
    small_fill(&s);
    tspec t[6];
    mm_model *m = NULL;
    /* mmaint's own names, no metadata: needs the architecture */
    small_tensors(&s, t, "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias");
    MM_ASSERT_STATUS(import_small(t, 4, NULL, NULL, NULL, 0, &m), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "architecture"));
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* PyTorch nn.Sequential(Linear, ReLU, Linear) */
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* a prefix, and numeric (not lexicographic) order: 9 before 10 */
    small_tensors(&s, t, "model.9.weight", "model.9.bias", "model.10.weight", "model.10.bias");
    MM_ASSERT_OK(import_small(t, 4, "{\"format\":\"pt\"}", "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* the same with an explicit pattern {seq} and list */
    small_tensors(&s, t, "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias");
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", "net.{seq}", 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", "net.0,net.2", 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* {seq} with an identity hidden layer: no activation module */
    small_tensors(&s, t, "net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias");
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:identity", "net.{seq}", 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* named modules */
    small_tensors(&s, t, "fc1.weight", "fc1.bias", "head.weight", "head.bias");
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", "fc1,head", 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* ... which the automatic convention cannot pair up */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "tensor names"));
    /* explicit names that do not exist */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "fc1,fc2", 0, &m), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "fc2.weight"));
    /* a list of the wrong length, a bad placeholder, duplicates */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "fc1", 0, &m), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "fc{k}", 0, &m),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "fc1,fc1", 0, &m),
                     MM_E_INVALID_ARGUMENT);
    /* two families that fit: ambiguous */
    float extra_w0[20], extra_b0[5], extra_w1[15], extra_b1[3];
    memcpy(extra_w0, s.w0, sizeof extra_w0);
    memcpy(extra_b0, s.b0, sizeof extra_b0);
    memcpy(extra_w1, s.w1, sizeof extra_w1);
    memcpy(extra_b1, s.b1, sizeof extra_b1);
    tspec t8[8];
    small_tensors(&s, t8, "a.0.weight", "a.0.bias", "a.1.weight", "a.1.bias");
    t8[4] = (tspec){"b.0.weight", "F32", 2, {5, 4}, extra_w0, sizeof extra_w0};
    t8[5] = (tspec){"b.0.bias", "F32", 1, {5}, extra_b0, sizeof extra_b0};
    t8[6] = (tspec){"b.1.weight", "F32", 2, {3, 5}, extra_w1, sizeof extra_w1};
    t8[7] = (tspec){"b.1.bias", "F32", 1, {3}, extra_b1, sizeof extra_b1};
    MM_ASSERT_STATUS(import_small(t8, 8, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "several"));
    /* explicit names resolve it; the other family is extra */
    MM_ASSERT_STATUS(import_small(t8, 8, NULL, "4-5-3:relu", "a.{i}", 0, &m), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "b.0.bias"));
    MM_ASSERT_OK(import_small(t8, 8, NULL, "4-5-3:relu", "a.{i}", MM_SAFETENSORS_ALLOW_EXTRA, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* a family with the wrong count (three numbered weights, two layers) */
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    float w4[3 * 3];
    mm_test_fill(w4, 9, 5, -1, 1);
    t[4] = (tspec){"4.weight", "F32", 2, {3, 3}, w4, sizeof w4};
    MM_ASSERT_STATUS(import_small(t, 5, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_FORMAT);
    /* a 1-d numbered .weight (e.g. a norm layer) is not a Linear */
    float norm[5] = {1, 1, 1, 1, 1};
    t[4] = (tspec){"1.weight", "F32", 1, {5}, norm, sizeof norm};
    MM_ASSERT_STATUS(import_small(t, 5, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_FORMAT);
    MM_ASSERT_OK(import_small(t, 5, NULL, "4-5-3:relu", NULL, MM_SAFETENSORS_ALLOW_EXTRA, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* bias stored [out, 1] */
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    t[1].ndim = 2;
    t[1].shape[1] = 1;
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * dtypes
 * ---------------------------------------------------------------------- */

static uint16_t f32_to_bf16_trunc(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

START_TEST(test_dtypes) {
    small_model s;
    small_fill(&s);
    tspec t[5];
    mm_model *m = NULL;
    /* BF16: values with 8 significant bits widen exactly */
    uint16_t bw0[20];
    small_model sb = s;
    for (int i = 0; i < 20; i++) {
        bw0[i] = f32_to_bf16_trunc(s.w0[i]);
        uint32_t u = (uint32_t)bw0[i] << 16;
        memcpy(&sb.w0[i], &u, 4);
    }
    small_tensors(&sb, t, "0.weight", "0.bias", "2.weight", "2.bias");
    t[0] = (tspec){"0.weight", "BF16", 2, {5, 4}, bw0, sizeof bw0};
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &sb);
    mm_model_free(m);
    /* F16: known bit patterns */
    static const struct {
        uint16_t h;
        float f;
    } halves[] = {{0x3c00, 1.0f},     {0xc000, -2.0f},         {0x3555, 0.333251953125f},
                  {0x7bff, 65504.0f}, {0x0001, 5.9604645e-8f}, {0x8000, -0.0f},
                  {0x0400, 6.1035156e-5f}, {0x3800, 0.5f}};
    uint16_t hb[5];
    small_model sh = s;
    for (int i = 0; i < 5; i++) {
        hb[i] = halves[i].h;
        sh.b0[i] = halves[i].f;
    }
    small_tensors(&sh, t, "0.weight", "0.bias", "2.weight", "2.bias");
    t[1] = (tspec){"0.bias", "F16", 1, {5}, hb, sizeof hb};
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &sh);
    mm_model_free(m);
    for (int i = 0; i < 3; i++) hb[i] = halves[5 + i].h;
    for (int i = 0; i < 3; i++) sh.b0[i] = halves[5 + i].f;
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &sh);
    mm_model_free(m);
    hb[4] = 0x7c00; /* +inf */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_NUMERIC);
    hb[4] = 0x7e00; /* NaN */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_NUMERIC);
    /* F64: exact values are accepted */
    double d1[15];
    for (int i = 0; i < 15; i++) d1[i] = (double)s.w1[i];
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    t[2] = (tspec){"2.weight", "F64", 2, {3, 5}, d1, sizeof d1};
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m));
    assert_small(m, &s);
    mm_model_free(m);
    /* inexact: refused unless rounding is allowed */
    d1[7] += 1e-12;
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "2.weight"));
    MM_ASSERT_OK(import_small(t, 4, NULL, "4-5-3:relu", NULL, MM_SAFETENSORS_ROUND_F64, &m));
    assert_small(m, &s);
    mm_model_free(m);
    d1[7] = 1e300; /* beyond float: refused even when rounding */
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, MM_SAFETENSORS_ROUND_F64, &m),
                     MM_E_OUT_OF_RANGE);
    d1[7] = NAN;
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, MM_SAFETENSORS_ROUND_F64, &m),
                     MM_E_NUMERIC);
    /* F32 NaN / infinity */
    small_model sn = s;
    sn.w1[3] = INFINITY;
    small_tensors(&sn, t, "0.weight", "0.bias", "2.weight", "2.bias");
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_NUMERIC);
    sn.w1[3] = NAN;
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 0, &m), MM_E_NUMERIC);
    /* integer and other dtypes are not weights */
    int32_t iw[20] = {0};
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    t[0] = (tspec){"0.weight", "I32", 2, {5, 4}, iw, sizeof iw};
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "{seq}", 0, &m), MM_E_UNSUPPORTED);
    t[0] = (tspec){"0.weight", "F8_E4M3", 2, {5, 4}, iw, 20};
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "{seq}", 0, &m), MM_E_UNSUPPORTED);
    t[0] = (tspec){"0.weight", "F128", 2, {5, 4}, iw, 20};
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", "{seq}", 0, &m), MM_E_UNSUPPORTED);
    /* unknown flags */
    small_tensors(&s, t, "0.weight", "0.bias", "2.weight", "2.bias");
    MM_ASSERT_STATUS(import_small(t, 4, NULL, "4-5-3:relu", NULL, 64, &m), MM_E_INVALID_ARGUMENT);
}
END_TEST

/* ------------------------------------------------------------------------
 * hostile files
 * ---------------------------------------------------------------------- */

/* Must fail (any error) without crashing; *out stays NULL. */
static void expect_fail_buf(const void *buf, size_t len, const char *arch, const char *what) {
    mm_model *m = (mm_model *)1;
    mm_status st = mm_safetensors_import_buffer(&m, buf, len, arch, NULL, 0);
    ck_assert_msg(st != MM_OK, "%s: accepted", what);
    ck_assert_ptr_null(m);
    ck_assert_msg(mm_last_error_message()[0] != '\0', "%s: no message", what);
}

static void expect_status_raw(const char *header, const void *data, size_t dlen, const char *arch,
                              mm_status want, const char *what) {
    size_t len;
    unsigned char *buf = build_raw(header, data, dlen, &len);
    mm_model *m = NULL;
    mm_status st = mm_safetensors_import_buffer(&m, buf, len, arch, NULL, 0);
    ck_assert_msg(st == want, "%s: %s (want %s): %s", what, mm_status_name(st),
                  mm_status_name(want), mm_last_error_message());
    if (want != MM_OK) ck_assert_ptr_null(m);
    mm_model_free(m);
    free(buf);
}

START_TEST(test_truncation) {
    mm_model *m = make_model("4-5-3:relu", 3);
    char *path = mm_test_tmp_path(".safetensors");
    MM_ASSERT_OK(mm_safetensors_export(m, path, NULL));
    size_t len;
    unsigned char *buf = read_file(path, &len);
    mm_model *r = NULL;
    MM_ASSERT_OK(mm_safetensors_import_buffer(&r, buf, len, NULL, NULL, 0));
    mm_model_free(r);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        expect_fail_buf(copy, cut, NULL, "truncated");
        expect_fail_buf(copy, cut, "4-5-3:relu", "truncated, arch given");
        free(copy);
    }
    /* the same through a file */
    write_file(path, buf, len / 2);
    MM_ASSERT_STATUS(mm_safetensors_import(&r, path, NULL, NULL, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), path));
    /* a trailing byte */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    expect_fail_buf(longer, len + 1, NULL, "trailing byte");
    free(longer);
    MM_ASSERT_STATUS(mm_safetensors_import(&r, "/nonexistent/x.safetensors", NULL, NULL, 0),
                     MM_E_IO);
    free(buf);
    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* Every header byte replaced by a few values: errors or a valid model,
 * never a crash (run under ASan/UBSan). */
START_TEST(test_header_mutations) {
    mm_model *m = make_model("4-5-3:relu", 3);
    char *path = mm_test_tmp_path(".safetensors");
    MM_ASSERT_OK(mm_safetensors_export(m, path, NULL));
    size_t len;
    unsigned char *buf = read_file(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    static const unsigned char vals[] = {'0', '9', '"', '{', ']', ',', 0, 0xff, '-', 'e'};
    unsigned char *copy = malloc(len);
    size_t ok = 0;
    for (size_t pos = 0; pos < 8 + hl; pos++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(copy, buf, len);
            if (copy[pos] == vals[v]) continue;
            copy[pos] = vals[v];
            mm_model *r = NULL;
            if (mm_safetensors_import_buffer(&r, copy, len, NULL, NULL, 0) == MM_OK) ok++;
            else ck_assert_ptr_null(r);
            mm_model_free(r);
        }
    ck_assert_uint_lt(ok, (8 + hl) * sizeof vals / 4);
    free(copy);
    free(buf);
    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

START_TEST(test_hostile_container) {
    float d[8] = {0};
    const char *arch = "2-2:relu";
    /* header length larger than the file */
    unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    expect_fail_buf(big, 10, arch, "header length past the end");
    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    expect_fail_buf(huge, 10, arch, "header length 2^63");
    /* non-object JSON */
    expect_status_raw("[]", NULL, 0, arch, MM_E_FORMAT, "array header");
    expect_status_raw("\"x\"", NULL, 0, arch, MM_E_FORMAT, "string header");
    expect_status_raw("12", NULL, 0, arch, MM_E_FORMAT, "number header");
    expect_status_raw("{\"a\":", NULL, 0, arch, MM_E_FORMAT, "cut JSON");
    expect_status_raw("{\"__metadata__\":[1]}", NULL, 0, arch, MM_E_FORMAT, "metadata array");
    expect_status_raw("{\"__metadata__\":{\"a\":1}}", NULL, 0, arch, MM_E_FORMAT,
                      "metadata value not a string");
    /* offsets past the end */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 16, arch, MM_E_FORMAT, "offsets past the end");
    /* overlapping tensors */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                      d, 16, arch, MM_E_FORMAT, "overlap");
    /* a gap */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]}}",
                      d, 28, arch, MM_E_FORMAT, "gap");
    /* reversed offsets, size not matching the shape */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "reversed");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "size vs shape");
    /* huge dims: the element count overflows */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "overflow");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "negative dim");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                      "\"data_offsets\":[0,99999999999999999999]}}",
                      d, 16, arch, MM_E_FORMAT, "offset beyond 64 bits");
    /* duplicate names */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "duplicate");
    /* a valid file of the right tensors is accepted (control) */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_OK, "control");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, "3-2:relu", MM_E_FORMAT, "shape vs architecture");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, "2-3:relu", MM_E_FORMAT, "shape vs architecture (out)");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, "2-2-2:relu", MM_E_FORMAT, "fewer tensors than layers");
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, "2-2:relu,bogus", MM_E_INVALID_ARGUMENT, "bad spec");
    /* missing bias */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                      d, 16, arch, MM_E_FORMAT, "missing bias");
    /* extra tensor */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                      "\"step\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[24,28]}}",
                      d, 28, arch, MM_E_FORMAT, "extra tensor");
    /* a scalar named like a weight */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      d, 12, arch, MM_E_FORMAT, "scalar weight");
    /* hostile metadata */
    expect_status_raw("{\"__metadata__\":{\"layer_names\":\"a,b,c\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "layer_names count");
    expect_status_raw("{\"__metadata__\":{\"architecture\":\"{\\\"input_dim\\\":2}\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, NULL, MM_E_FORMAT, "architecture incomplete");
    expect_status_raw("{\"__metadata__\":{\"architecture\":\"[\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, NULL, MM_E_FORMAT, "architecture not JSON");
    expect_status_raw("{\"__metadata__\":{\"lineage\":\"{}\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "lineage not an array");
    expect_status_raw("{\"__metadata__\":{\"format\":\"mmaint\"},"
                      "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, arch, MM_E_FORMAT, "mmaint tag without checksum");
    /* a small file cannot make the importer allocate a huge layer */
    expect_status_raw("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                      d, 24, "16777216-16777216:relu", MM_E_FORMAT, "huge architecture");
    /* NULL arguments */
    mm_model *m = NULL;
    MM_ASSERT_STATUS(mm_safetensors_import(NULL, "x", NULL, NULL, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_import(&m, NULL, NULL, NULL, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_safetensors_import_buffer(&m, NULL, 10, NULL, NULL, 0),
                     MM_E_INVALID_ARGUMENT);
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("round trip");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_round_trip, 0, (int)(sizeof specs / sizeof specs[0]));
    tcase_add_test(tc, test_export_layout);
    tcase_add_test(tc, test_export_optimized);
    tcase_add_test(tc, test_export_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("names and dtypes");
    tcase_add_test(tc, test_names_conventions);
    tcase_add_test(tc, test_dtypes);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_header_mutations);
    tcase_add_test(tc, test_hostile_container);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(safetensors_suite()); }
