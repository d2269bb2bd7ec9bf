/* The model file format (doc/FORMAT.md): round trips, independent
 * safetensors parsing, checksum, corruption, hostile files, atomic saves, a
 * mutation fuzz loop, tensor dtypes and the per-kind save/load hooks. Links
 * the internal object library. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "model/mmfile.h"
#include "model/model_internal.h"
#include "mm/mm.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------- */

typedef struct model_cfg {
    size_t input_dim;
    size_t widths[4];
    mm_activation acts[4];
    size_t n_layers;
    mm_loss loss;
    float slope;
    uint64_t seed;
} model_cfg;

static mm_model *make_model(const model_cfg *c) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, c->input_dim, c->seed));
    MM_ASSERT_OK(mm_model_set_leaky_slope(m, c->slope));
    MM_ASSERT_OK(mm_model_set_loss(m, c->loss));
    for (size_t i = 0; i < c->n_layers; i++) MM_ASSERT_OK(mm_model_add_dense(m, c->widths[i], c->acts[i]));
    /* weights that are not the initialiser's, with awkward values */
    for (size_t i = 0; i < c->n_layers; i++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, i, NULL, &in, &out, NULL));
        float *w = malloc(in * out * sizeof *w), *b = malloc(out * sizeof *b);
        mm_test_fill(w, in * out, c->seed + 17 * i, -3.0f, 3.0f);
        mm_test_fill(b, out, c->seed + 17 * i + 1, -1.0f, 1.0f);
        if (in * out > 2) {
            w[0] = -0.0f;
            w[1] = 1e-40f; /* subnormal */
            w[2] = 3.4028235e38f;
        }
        MM_ASSERT_OK(mm_model_set_weights(m, i, w, in * out, b, out));
        free(w);
        free(b);
    }
    MM_ASSERT_OK(mm_model_add_lineage(m, "create", "{\"spec\":\"test\"}"));
    MM_ASSERT_OK(mm_model_add_lineage(m, "train", "{\"epochs\":3,\"lr\":0.001,\"note\":\"\\u00e9t\\u00e9\"}"));
    return m;
}

static const model_cfg cfgs[] = {
    {3, {2}, {MM_ACT_IDENTITY}, 1, MM_LOSS_MSE, 0.01f, 1},
    {5, {7, 6, 4}, {MM_ACT_RELU, MM_ACT_TANH, MM_ACT_IDENTITY}, 3, MM_LOSS_SOFTMAX_XENT, 0.01f, 42},
    {4, {8, 3}, {MM_ACT_LEAKY_RELU, MM_ACT_SIGMOID}, 2, MM_LOSS_MSE, 0.2f, 0xfedcba9876543210ULL},
    {1, {1, 1}, {MM_ACT_SIGMOID, MM_ACT_LEAKY_RELU}, 2, MM_LOSS_SOFTMAX_XENT, 0.123456789f, 7},
    {64, {32, 10}, {MM_ACT_RELU, MM_ACT_IDENTITY}, 2, MM_LOSS_SOFTMAX_XENT, 0.01f, UINT64_MAX},
};
#define N_CFGS (sizeof cfgs / sizeof cfgs[0])

static void assert_models_equal(const mm_model *a, const mm_model *b) {
    ck_assert_uint_eq(mm_model_input_dim(a), mm_model_input_dim(b));
    ck_assert_uint_eq(mm_model_output_dim(a), mm_model_output_dim(b));
    ck_assert_uint_eq(mm_model_num_layers(a), mm_model_num_layers(b));
    ck_assert_int_eq(mm_model_loss(a), mm_model_loss(b));
    ck_assert_str_eq(mm_model_lineage(a), mm_model_lineage(b));
    ck_assert(memcmp(&a->leaky_slope, &b->leaky_slope, sizeof a->leaky_slope) == 0);
    ck_assert(a->seed == b->seed);
    ck_assert(memcmp(&a->init_rng, &b->init_rng, sizeof a->init_rng) == 0);
    for (size_t i = 0; i < mm_model_num_layers(a); i++) {
        const char *ka, *kb;
        size_t ia, oa, ib, ob;
        mm_activation aa, ab;
        MM_ASSERT_OK(mm_model_layer_info(a, i, &ka, &ia, &oa, &aa));
        MM_ASSERT_OK(mm_model_layer_info(b, i, &kb, &ib, &ob, &ab));
        ck_assert_str_eq(ka, kb);
        ck_assert_uint_eq(ia, ib);
        ck_assert_uint_eq(oa, ob);
        ck_assert_int_eq(aa, ab);
        ck_assert(memcmp(&a->layers[i]->leaky_slope, &b->layers[i]->leaky_slope, sizeof(float)) == 0);
        float *wa = malloc(ia * oa * 4), *wb = malloc(ia * oa * 4), *ba = malloc(oa * 4),
              *bb = malloc(oa * 4);
        MM_ASSERT_OK(mm_model_get_weights(a, i, wa, ia * oa, ba, oa));
        MM_ASSERT_OK(mm_model_get_weights(b, i, wb, ib * ob, bb, ob));
        ck_assert_msg(memcmp(wa, wb, ia * oa * 4) == 0, "layer %zu weights differ", i);
        ck_assert_msg(memcmp(ba, bb, oa * 4) == 0, "layer %zu biases differ", i);
        free(wa);
        free(wb);
        free(ba);
        free(bb);
    }
    if (mm_model_num_layers(a) > 0) {
        size_t n = 3, in = mm_model_input_dim(a), out = mm_model_output_dim(a);
        float *x = malloc(n * in * 4), *ya = malloc(n * out * 4), *yb = malloc(n * out * 4);
        mm_test_fill(x, n * in, 99, -1.0f, 1.0f);
        MM_ASSERT_OK(mm_model_forward(a, x, n, ya));
        MM_ASSERT_OK(mm_model_forward(b, x, n, yb));
        ck_assert(memcmp(ya, yb, n * out * 4) == 0);
        free(x);
        free(ya);
        free(yb);
    }
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "open %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    ck_assert(fread(buf, 1, (size_t)n, fp) == (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    ck_assert(fp != NULL);
    ck_assert(fwrite(buf, 1, len, fp) == len);
    fclose(fp);
}

static unsigned char *save_to_buffer(const mm_model *m, size_t *len) {
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    unsigned char *buf = slurp(path, len);
    unlink(path);
    free(path);
    return buf;
}

static uint64_t u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_u64le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- an independent safetensors reader / writer for the tests ---- */

typedef struct parsed {
    json_t *root;
    unsigned char *data;
    size_t data_len;
} parsed;

static void parse_file(const unsigned char *buf, size_t len, parsed *p) {
    ck_assert(len >= 8);
    uint64_t n = u64le(buf);
    ck_assert(n <= len - 8);
    json_error_t err;
    p->root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(p->root != NULL, "header JSON: %s", err.text);
    p->data_len = len - 8 - (size_t)n;
    p->data = malloc(p->data_len ? p->data_len : 1);
    memcpy(p->data, buf + 8 + n, p->data_len);
}

static void parsed_free(parsed *p) {
    json_decref(p->root);
    free(p->data);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The documented checksum, computed independently of the library. */
static char *checksum_of(const parsed *p) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const char *keys[256];
    size_t nk = 0;
    json_t *meta = json_object_get(p->root, "__metadata__");
    const char *k;
    json_t *v;
    if (json_is_object(meta)) {
        json_object_foreach(meta, k, v) {
            if (strcmp(k, "checksum") != 0) keys[nk++] = k;
        }
    }
    qsort(keys, nk, sizeof *keys, cmp_cstr);
    for (size_t i = 0; i < nk; i++) {
        const char *val = json_string_value(json_object_get(meta, keys[i]));
        if (!val) val = "";
        crc = crc32(crc, (const Bytef *)"M", 1);
        crc = crc32(crc, (const Bytef *)keys[i], (uInt)strlen(keys[i]) + 1);
        crc = crc32(crc, (const Bytef *)val, (uInt)strlen(val) + 1);
    }
    const char *names[256];
    size_t nt = 0;
    json_object_foreach(p->root, k, v) {
        if (strcmp(k, "__metadata__") != 0) names[nt++] = k;
    }
    qsort(names, nt, sizeof *names, cmp_cstr);
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_object_get(p->root, names[i]);
        const char *dtype = json_string_value(json_object_get(t, "dtype"));
        if (!dtype) dtype = ""; /* edits may break entries: never crash here */
        json_t *shape = json_object_get(t, "shape");
        json_t *off = json_object_get(t, "data_offsets");
        char dims[256] = "";
        size_t di;
        json_t *d;
        json_array_foreach(shape, di, d) {
            char one[32];
            snprintf(one, sizeof one, "%s%lld", di ? "," : "", (long long)json_integer_value(d));
            strcat(dims, one);
        }
        crc = crc32(crc, (const Bytef *)"T", 1);
        crc = crc32(crc, (const Bytef *)names[i], (uInt)strlen(names[i]) + 1);
        crc = crc32(crc, (const Bytef *)dtype, (uInt)strlen(dtype) + 1);
        crc = crc32(crc, (const Bytef *)dims, (uInt)strlen(dims) + 1);
        long long b = json_integer_value(json_array_get(off, 0));
        long long e = json_integer_value(json_array_get(off, 1));
        if (b >= 0 && e >= b && (size_t)e <= p->data_len)
            crc = crc32(crc, p->data + b, (uInt)(e - b));
    }
    char *out = malloc(16);
    snprintf(out, 16, "crc32:%08lx", (unsigned long)crc);
    return out;
}

/* Serialise a (possibly edited) parse, optionally recomputing the checksum
 * so that edits test the structural checks rather than the CRC. */
static unsigned char *emit_file(parsed *p, int fix_checksum, size_t *out_len) {
    json_t *meta = json_object_get(p->root, "__metadata__");
    if (fix_checksum && json_is_object(meta)) {
        char *ck = checksum_of(p);
        json_object_set_new(meta, "checksum", json_string(ck));
        free(ck);
    }
    char *text = json_dumps(p->root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;
    *out_len = 8 + padded + p->data_len;
    unsigned char *buf = malloc(*out_len);
    put_u64le(buf, padded);
    memcpy(buf + 8, text, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    memcpy(buf + 8 + padded, p->data, p->data_len);
    free(text);
    return buf;
}

static mm_model *small_model(void) { return make_model(&cfgs[1]); }

/* Load from a buffer, expecting `want`; checks *out is NULL on error and
 * that the message mentions `needle` (if given). */
static void expect_load(const unsigned char *buf, size_t len, mm_status want, const char *needle) {
    mm_model *m = (mm_model *)(uintptr_t)1;
    mm_status st = mm_model_load_buffer(&m, buf, len);
    ck_assert_msg(st == want, "got %s (want %s): %s", mm_status_name(st), mm_status_name(want),
                  mm_last_error_message());
    if (st != MM_OK) {
        ck_assert(m == NULL);
        ck_assert_msg(mm_last_error_message()[0] != '\0', "no error message");
        if (needle)
            ck_assert_msg(strstr(mm_last_error_message(), needle) != NULL,
                          "message \"%s\" lacks \"%s\"", mm_last_error_message(), needle);
    }
    mm_model_free(st == MM_OK ? m : NULL);
}

/* Edit the small model's file with `edit`, re-emit (checksum fixed), load. */
typedef void (*edit_fn)(parsed *p);
static void expect_edit(edit_fn edit, int fix_checksum, mm_status want, const char *needle) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    parsed p;
    parse_file(buf, len, &p);
    edit(&p);
    size_t len2;
    unsigned char *buf2 = emit_file(&p, fix_checksum, &len2);
    expect_load(buf2, len2, want, needle);
    parsed_free(&p);
    free(buf);
    free(buf2);
    mm_model_free(m);
}

static json_t *tensor(parsed *p, const char *name) {
    json_t *t = json_object_get(p->root, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    return t;
}

static json_t *arch_edit_begin(parsed *p) {
    json_t *meta = json_object_get(p->root, "__metadata__");
    return json_loads(json_string_value(json_object_get(meta, "architecture")), 0, NULL);
}

static void arch_edit_end(parsed *p, json_t *arch) {
    json_t *meta = json_object_get(p->root, "__metadata__");
    char *text = json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_object_set_new(meta, "architecture", json_string(text));
    free(text);
    json_decref(arch);
}

static size_t count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static char *make_tmp_dir(void) {
    char *p = mm_test_tmp_path("-dir-XXXXXX");
    ck_assert(mkdtemp(p) != NULL);
    return p;
}

static void rm_rf_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (rmdir(path) != 0) unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ------------------------------------------------------------------------
 * round trips
 * ---------------------------------------------------------------------- */

START_TEST(test_round_trip) {
    const model_cfg *c = &cfgs[_i];
    mm_model *m = make_model(c);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    mm_model *l;
    MM_ASSERT_OK(mm_model_load(&l, path));
    assert_models_equal(m, l);

    /* loading records nothing; saving the loaded model gives the same bytes */
    size_t len1, len2;
    unsigned char *b1 = slurp(path, &len1);
    MM_ASSERT_OK(mm_model_save(l, path));
    unsigned char *b2 = slurp(path, &len2);
    ck_assert_uint_eq(len1, len2);
    ck_assert(memcmp(b1, b2, len1) == 0);

    /* load_buffer gives the same model */
    mm_model *lb;
    MM_ASSERT_OK(mm_model_load_buffer(&lb, b1, len1));
    assert_models_equal(m, lb);

    /* the initialiser stream continues where it left off */
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_TANH));
    MM_ASSERT_OK(mm_model_add_dense(l, 3, MM_ACT_TANH));
    assert_models_equal(m, l);

    free(b1);
    free(b2);
    unlink(path);
    free(path);
    mm_model_free(m);
    mm_model_free(l);
    mm_model_free(lb);
}
END_TEST

START_TEST(test_empty_model_round_trip) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 6, 5));
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    mm_model *l;
    MM_ASSERT_OK(mm_model_load_buffer(&l, buf, len));
    assert_models_equal(m, l);
    ck_assert_str_eq(mm_model_lineage(l), "[]");
    free(buf);
    mm_model_free(m);
    mm_model_free(l);
}
END_TEST

/* ------------------------------------------------------------------------
 * the file is plain safetensors, readable without mmaint
 * ---------------------------------------------------------------------- */

START_TEST(test_valid_safetensors) {
    mm_model *m = make_model(&cfgs[1]);
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    uint64_t n = u64le(buf);
    ck_assert((8 + n) % 8 == 0);     /* data block 8-byte aligned */
    ck_assert(buf[8] == '{');         /* spec: header starts with '{' */
    for (uint64_t i = 0; i < n; i++) ck_assert(buf[8 + i] != 0);
    parsed p;
    parse_file(buf, len, &p);
    ck_assert(json_is_object(p.root));

    json_t *meta = json_object_get(p.root, "__metadata__");
    ck_assert(json_is_object(meta));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) ck_assert_msg(json_is_string(v), "metadata %s", k);
    ck_assert_str_eq(json_string_value(json_object_get(meta, "format")), "mmaint");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "format_version")), "1");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "lineage")), mm_model_lineage(m));

    json_t *arch = json_loads(json_string_value(json_object_get(meta, "architecture")), 0, NULL);
    ck_assert(arch != NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(arch, "input_dim")), 5);
    ck_assert_str_eq(json_string_value(json_object_get(arch, "loss")), "softmax_xent");
    ck_assert_str_eq(json_string_value(json_object_get(arch, "seed")), "42");
    json_t *layers = json_object_get(arch, "layers");
    ck_assert_uint_eq(json_array_size(layers), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(layers, 1), "activation")),
                     "tanh");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(layers, 1), "kind")), "dense");
    json_decref(arch);

    /* checksum matches the documented algorithm, computed independently */
    char *ck = checksum_of(&p);
    ck_assert_str_eq(json_string_value(json_object_get(meta, "checksum")), ck);
    free(ck);

    /* tensors: PyTorch nn.Sequential-style names, F32, contiguous in header
     * order, little-endian values equal to the weights */
    size_t expect_off = 0, nt = 0;
    json_object_foreach(p.root, k, v) {
        if (!strcmp(k, "__metadata__")) continue;
        size_t layer;
        char what[16];
        ck_assert(sscanf(k, "layers.%zu.%15s", &layer, what) == 2);
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, layer, NULL, &in, &out, NULL));
        ck_assert_str_eq(json_string_value(json_object_get(v, "dtype")), "F32");
        json_t *shape = json_object_get(v, "shape");
        json_t *off = json_object_get(v, "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0));
        size_t e = (size_t)json_integer_value(json_array_get(off, 1));
        ck_assert_uint_eq(b, expect_off);
        float *want = malloc(in * out * 4 + out * 4);
        MM_ASSERT_OK(mm_model_get_weights(m, layer, want, in * out, want + in * out, out));
        const float *src;
        size_t count;
        if (!strcmp(what, "weight")) {
            ck_assert_uint_eq(json_array_size(shape), 2);
            ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), (long long)out);
            ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), (long long)in);
            src = want;
            count = in * out;
        } else {
            ck_assert_str_eq(what, "bias");
            ck_assert_uint_eq(json_array_size(shape), 1);
            ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), (long long)out);
            src = want + in * out;
            count = out;
        }
        ck_assert_uint_eq(e - b, count * 4);
        for (size_t i = 0; i < count; i++) {
            const unsigned char *q = p.data + b + 4 * i;
            uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                         (uint32_t)q[3] << 24;
            uint32_t w;
            memcpy(&w, &src[i], 4);
            ck_assert_uint_eq(u, w);
        }
        free(want);
        expect_off = e;
        nt++;
    }
    ck_assert_uint_eq(nt, 6);
    ck_assert_uint_eq(expect_off, p.data_len);
    parsed_free(&p);
    free(buf);
    mm_model_free(m);
}
END_TEST

/* A file made by another safetensors writer (keys in another order,
 * pretty-printed header, data in another order) still loads: the checksum
 * is over content, not layout. */
START_TEST(test_rewritten_layout_loads) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    parsed p;
    parse_file(buf, len, &p);
    /* reverse the tensor order, both in the header and in the data block */
    json_t *root2 = json_object();
    const char *names[16];
    size_t nt = 0;
    const char *k;
    json_t *v;
    json_object_foreach(p.root, k, v) if (strcmp(k, "__metadata__")) names[nt++] = k;
    unsigned char *data2 = malloc(p.data_len);
    size_t pos = 0;
    for (size_t i = nt; i-- > 0;) {
        json_t *t = json_deep_copy(json_object_get(p.root, names[i]));
        json_t *off = json_object_get(t, "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0));
        size_t e = (size_t)json_integer_value(json_array_get(off, 1));
        memcpy(data2 + pos, p.data + b, e - b);
        json_array_set_new(off, 0, json_integer((json_int_t)pos));
        json_array_set_new(off, 1, json_integer((json_int_t)(pos + e - b)));
        pos += e - b;
        json_object_set_new(root2, names[i], t);
    }
    json_object_set(root2, "__metadata__", json_object_get(p.root, "__metadata__"));
    char *text = json_dumps(root2, JSON_INDENT(2));
    size_t hl = strlen(text);
    size_t len2 = 8 + hl + p.data_len;
    unsigned char *buf2 = malloc(len2);
    put_u64le(buf2, hl); /* unpadded, unaligned: still valid safetensors */
    memcpy(buf2 + 8, text, hl);
    memcpy(buf2 + 8 + hl, data2, p.data_len);
    mm_model *l;
    MM_ASSERT_OK(mm_model_load_buffer(&l, buf2, len2));
    assert_models_equal(m, l);
    mm_model_free(l);
    free(text);
    free(buf2);
    free(data2);
    json_decref(root2);
    parsed_free(&p);
    free(buf);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * corruption
 * ---------------------------------------------------------------------- */

START_TEST(test_truncation) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    size_t hend = 8 + (size_t)u64le(buf);
    for (size_t cut = 0; cut < len; cut++) {
        if (cut > hend && cut % 13 != 0 && cut < len - 8) continue; /* sample the data */
        unsigned char *t = malloc(cut ? cut : 1);
        memcpy(t, buf, cut);
        mm_model *l = (mm_model *)(uintptr_t)1;
        mm_status st = mm_model_load_buffer(&l, t, cut);
        ck_assert_msg(st == MM_E_FORMAT, "cut at %zu: %s %s", cut, mm_status_name(st),
                      mm_last_error_message());
        ck_assert(l == NULL);
        free(t);
    }
    /* and through a real file: message prefixed with the path */
    char *path = mm_test_tmp_path(".mmf");
    spit(path, buf, len - 3);
    mm_model *l;
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_FORMAT);
    ck_assert_msg(strncmp(mm_last_error_message(), path, strlen(path)) == 0, "%s",
                  mm_last_error_message());
    unlink(path);
    free(path);
    free(buf);
    mm_model_free(m);
}
END_TEST

START_TEST(test_header_flips) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    size_t hend = 8 + (size_t)u64le(buf);
    static const unsigned char masks[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff};
    unsigned char *t = malloc(len);
    size_t errors = 0, ok = 0;
    for (size_t i = 0; i < hend; i++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            memcpy(t, buf, len);
            t[i] ^= masks[k];
            mm_model *l = NULL;
            mm_status st = mm_model_load_buffer(&l, t, len);
            if (st == MM_OK) {
                /* only a flip that keeps the meaning may load */
                assert_models_equal(m, l);
                mm_model_free(l);
                ok++;
            } else {
                ck_assert(l == NULL);
                ck_assert(st == MM_E_FORMAT || st == MM_E_CHECKSUM || st == MM_E_VERSION ||
                          st == MM_E_UNSUPPORTED);
                ck_assert(mm_last_error_message()[0] != '\0');
                errors++;
            }
        }
    }
    ck_assert(errors > 0);
    ck_assert_msg(ok * 100 < errors, "%zu flips loaded, %zu failed", ok, errors);
    free(t);
    free(buf);
    mm_model_free(m);
}
END_TEST

START_TEST(test_data_flips) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    size_t hend = 8 + (size_t)u64le(buf);
    unsigned char *t = malloc(len);
    for (size_t i = hend; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += (i % 2 ? 7 : 3)) {
            memcpy(t, buf, len);
            t[i] ^= (unsigned char)(1u << bit);
            mm_model *l = NULL;
            mm_status st = mm_model_load_buffer(&l, t, len);
            ck_assert_msg(st == MM_E_CHECKSUM, "byte %zu bit %u: %s", i, bit, mm_status_name(st));
            ck_assert(strstr(mm_last_error_message(), "checksum") != NULL);
        }
    }
    free(t);
    free(buf);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * hostile headers
 * ---------------------------------------------------------------------- */

START_TEST(test_header_length) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    unsigned char *t = malloc(len);
    const uint64_t lens[] = {len - 7, len, (uint64_t)1 << 63, UINT64_MAX, 100000001, 0, 1,
                             (uint64_t)1 << 32};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memcpy(t, buf, len);
        put_u64le(t, lens[i]);
        expect_load(t, len, MM_E_FORMAT, "header length");
    }
    free(t);
    free(buf);
    mm_model_free(m);
}
END_TEST

static void edit_absurd_shape(parsed *p) {
    json_object_set_new(tensor(p, "layers.0.weight"), "shape",
                        json_pack("[II]", (json_int_t)4294967296LL, (json_int_t)4294967296LL));
}
static void edit_huge_shape_no_overflow(parsed *p) {
    json_object_set_new(tensor(p, "layers.0.weight"), "shape",
                        json_pack("[II]", (json_int_t)65536, (json_int_t)65536));
}
static void edit_past_end(parsed *p) {
    json_t *off = json_object_get(tensor(p, "layers.2.bias"), "data_offsets");
    json_array_set_new(off, 1, json_integer(99999));
}
static void edit_overlap(parsed *p) {
    /* layers.0.bias (7 floats) made to sit inside layers.0.weight */
    json_t *off = json_object_get(tensor(p, "layers.0.bias"), "data_offsets");
    json_array_set_new(off, 0, json_integer(4));
    json_array_set_new(off, 1, json_integer(32));
}
static void edit_gap(parsed *p) {
    p->data = realloc(p->data, p->data_len + 4);
    memset(p->data + p->data_len, 0, 4);
    p->data_len += 4;
}
static void edit_reversed(parsed *p) {
    json_t *off = json_object_get(tensor(p, "layers.0.bias"), "data_offsets");
    json_int_t b = json_integer_value(json_array_get(off, 0));
    json_int_t e = json_integer_value(json_array_get(off, 1));
    json_array_set_new(off, 0, json_integer(e));
    json_array_set_new(off, 1, json_integer(b));
}
static void edit_negative_offset(parsed *p) {
    json_array_set_new(json_object_get(tensor(p, "layers.0.weight"), "data_offsets"), 0,
                       json_integer(-8));
}
static void edit_real_shape(parsed *p) {
    json_array_set_new(json_object_get(tensor(p, "layers.0.bias"), "shape"), 0, json_real(7.0));
}
static void edit_size_mismatch(parsed *p) {
    json_array_set_new(json_object_get(tensor(p, "layers.0.bias"), "shape"), 0, json_integer(6));
}
static void edit_many_dims(parsed *p) {
    json_object_set_new(tensor(p, "layers.0.bias"), "shape", json_pack("[iiiiiiiii]", 1, 1, 1, 1, 1, 1, 1, 1, 7));
}
static void edit_unknown_field(parsed *p) {
    json_object_set_new(tensor(p, "layers.0.bias"), "strides", json_pack("[i]", 1));
}
static void edit_missing_dtype(parsed *p) { json_object_del(tensor(p, "layers.1.weight"), "dtype"); }
static void edit_tensor_not_object(parsed *p) {
    json_object_set_new(p->root, "layers.1.bias", json_string("x"));
}
static void edit_meta_not_string(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "epochs", json_integer(3));
}
static void edit_meta_not_object(parsed *p) {
    json_object_set_new(p->root, "__metadata__", json_pack("[]"));
}

START_TEST(test_hostile_tensors) {
    expect_edit(edit_absurd_shape, 1, MM_E_FORMAT, "layers.0.weight: shape [4294967296, 4294967296] is too large");
    expect_edit(edit_huge_shape_no_overflow, 1, MM_E_FORMAT, "layers.0.weight: data_offsets");
    expect_edit(edit_past_end, 1, MM_E_FORMAT, "layers.2.bias: data_offsets [");
    expect_edit(edit_past_end, 1, MM_E_FORMAT, "past end of data");
    expect_edit(edit_overlap, 1, MM_E_FORMAT, "overlap");
    expect_edit(edit_gap, 1, MM_E_FORMAT, "belong to no tensor");
    expect_edit(edit_reversed, 1, MM_E_FORMAT, "reversed");
    expect_edit(edit_negative_offset, 1, MM_E_FORMAT, "layers.0.weight");
    expect_edit(edit_real_shape, 1, MM_E_FORMAT, "shape[0]");
    expect_edit(edit_size_mismatch, 1, MM_E_FORMAT, "needs 24");
    expect_edit(edit_many_dims, 1, MM_E_UNSUPPORTED, "dimensions");
    expect_edit(edit_unknown_field, 1, MM_E_FORMAT, "strides");
    expect_edit(edit_missing_dtype, 1, MM_E_FORMAT, "dtype");
    expect_edit(edit_tensor_not_object, 1, MM_E_FORMAT, "layers.1.bias");
    expect_edit(edit_meta_not_string, 1, MM_E_FORMAT, "__metadata__.epochs");
    expect_edit(edit_meta_not_object, 1, MM_E_FORMAT, "__metadata__");
}
END_TEST

static void edit_missing_tensor(parsed *p) {
    /* rename a tensor: the data stay, the name the architecture needs goes */
    json_t *t = json_incref(tensor(p, "layers.1.bias"));
    json_object_del(p->root, "layers.1.bias");
    json_object_set_new(p->root, "layers.1.bias_old", t);
}
static void edit_dropped_tensor(parsed *p) {
    /* drop the last tensor (layers.2.bias) and its bytes */
    json_t *off = json_object_get(tensor(p, "layers.2.bias"), "data_offsets");
    p->data_len = (size_t)json_integer_value(json_array_get(off, 0));
    json_object_del(p->root, "layers.2.bias");
}
static void edit_extra_tensor(parsed *p) {
    json_object_set_new(p->root, "optimizer.state.extra",
                        json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F32", "shape", 2,
                                  "data_offsets", (json_int_t)p->data_len,
                                  (json_int_t)p->data_len + 8));
    p->data = realloc(p->data, p->data_len + 8);
    memset(p->data + p->data_len, 0, 8);
    p->data_len += 8;
}
static void edit_extra_f16_tensor(parsed *p) {
    json_object_set_new(p->root, "foreign.half",
                        json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F16", "shape", 3,
                                  "data_offsets", (json_int_t)p->data_len,
                                  (json_int_t)p->data_len + 6));
    p->data = realloc(p->data, p->data_len + 6);
    memset(p->data + p->data_len, 0x3c, 6);
    p->data_len += 6;
}
static void edit_dtype_i32(parsed *p) {
    json_object_set_new(tensor(p, "layers.1.weight"), "dtype", json_string("I32"));
}
static void edit_dtype_unknown(parsed *p) {
    json_object_set_new(tensor(p, "layers.1.weight"), "dtype", json_string("Q7"));
}
static void edit_dtype_f64(parsed *p) {
    json_object_set_new(tensor(p, "layers.1.weight"), "dtype", json_string("F64"));
}
static void set_float(parsed *p, const char *name, size_t index, uint32_t bits) {
    json_t *off = json_object_get(tensor(p, name), "data_offsets");
    size_t b = (size_t)json_integer_value(json_array_get(off, 0)) + 4 * index;
    for (int i = 0; i < 4; i++) p->data[b + i] = (unsigned char)(bits >> (8 * i));
}
static void edit_nan(parsed *p) { set_float(p, "layers.1.weight", 3, 0x7fc00000u); }
static void edit_inf(parsed *p) { set_float(p, "layers.2.bias", 1, 0xff800000u); }
static void edit_swap_weights_shape(parsed *p) {
    /* layers.1.weight is [6, 7]; claim [7, 6] (same size) */
    json_object_set_new(tensor(p, "layers.1.weight"), "shape", json_pack("[i,i]", 7, 6));
}

START_TEST(test_tensor_set) {
    expect_edit(edit_missing_tensor, 1, MM_E_FORMAT, "tensor layers.1.bias is missing");
    expect_edit(edit_dropped_tensor, 1, MM_E_FORMAT, "tensor layers.2.bias is missing");
    expect_edit(edit_extra_tensor, 1, MM_OK, NULL); /* allowed and ignored */
    expect_edit(edit_extra_f16_tensor, 1, MM_OK, NULL);
    expect_edit(edit_extra_tensor, 0, MM_E_CHECKSUM, "checksum");
    expect_edit(edit_dtype_i32, 1, MM_E_UNSUPPORTED, "layers.1.weight: dtype I32");
    expect_edit(edit_dtype_unknown, 1, MM_E_UNSUPPORTED, "layers.1.weight: unsupported dtype \"Q7\"");
    expect_edit(edit_dtype_f64, 1, MM_E_FORMAT, "layers.1.weight");
    expect_edit(edit_nan, 1, MM_E_NUMERIC, "layers.1.weight: element 3 is NaN");
    expect_edit(edit_inf, 1, MM_E_NUMERIC, "layers.2.bias: element 1 is infinite");
    expect_edit(edit_nan, 0, MM_E_CHECKSUM, "checksum");
    expect_edit(edit_swap_weights_shape, 1, MM_E_FORMAT, "layers.1.weight: shape [7, 6], expected [6, 7]");
}
END_TEST

/* Optimizer state values are checked on load (found by tests/fuzz/fuzz_mmfile:
 * a negative Adam second moment made the next step's update NaN, which a
 * sparse_int8 layer then converted to int). `bits` goes into element 2 of
 * the tensor `name` of a saved Adam state, checksum fixed. */
static void expect_state_edit(const char *name, uint32_t bits, mm_status want, const char *needle) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "5-4-3:relu", 3));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    const float x[5] = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f};
    const int32_t label = 1;
    double loss;
    for (int i = 0; i < 3; i++) MM_ASSERT_OK(mm_optimizer_step(o, x, &label, NULL, 1, &loss));
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_optimizer_save(o, path));
    size_t len, len2;
    unsigned char *buf = slurp(path, &len);
    parsed p;
    parse_file(buf, len, &p);
    set_float(&p, name, 2, bits);
    unsigned char *buf2 = emit_file(&p, 1, &len2);
    spit(path, buf2, len2);
    mm_model *back;
    MM_ASSERT_OK(mm_model_load(&back, path));
    mm_optimizer *ob = (mm_optimizer *)(uintptr_t)1;
    mm_status st = mm_optimizer_load(&ob, back, path);
    ck_assert_msg(st == want, "got %s (want %s): %s", mm_status_name(st), mm_status_name(want),
                  mm_last_error_message());
    if (st == MM_OK) {
        MM_ASSERT_OK(mm_optimizer_step(ob, x, &label, NULL, 1, &loss));
        mm_optimizer_free(ob);
    } else {
        ck_assert(ob == NULL);
        ck_assert_msg(strstr(mm_last_error_message(), needle) != NULL,
                      "message \"%s\" lacks \"%s\"", mm_last_error_message(), needle);
    }
    unlink(path);
    free(path);
    parsed_free(&p);
    free(buf);
    free(buf2);
    mm_model_free(back);
    mm_optimizer_free(o);
    mm_model_free(m);
}

START_TEST(test_optimizer_state_values) {
    expect_state_edit("optimizer.layers.0.weight.v", 0xbf000000u /* -0.5 */, MM_E_FORMAT,
                      "optimizer.layers.0.weight.v: element 2 is negative");
    expect_state_edit("optimizer.layers.1.bias.v", 0x7fc00000u /* NaN */, MM_E_NUMERIC,
                      "optimizer.layers.1.bias.v: element 2 is NaN");
    expect_state_edit("optimizer.layers.0.weight.m", 0xff800000u /* -inf */, MM_E_NUMERIC,
                      "optimizer.layers.0.weight.m: element 2 is infinite");
    /* a negative first moment is fine, and so is -0 as a second moment */
    expect_state_edit("optimizer.layers.0.weight.m", 0xbf000000u, MM_OK, NULL);
    expect_state_edit("optimizer.layers.0.weight.v", 0x80000000u, MM_OK, NULL);
}
END_TEST

static void edit_version2(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "format_version", json_string("2"));
}
static void edit_no_version(parsed *p) {
    json_object_del(json_object_get(p->root, "__metadata__"), "format_version");
}
static void edit_no_checksum(parsed *p) {
    json_object_del(json_object_get(p->root, "__metadata__"), "checksum");
}
static void edit_bad_checksum_text(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "checksum", json_string("md5:00"));
}
static void edit_not_mmaint(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "format", json_string("pt"));
}
static void edit_no_metadata(parsed *p) { json_object_del(p->root, "__metadata__"); }
static void edit_lineage_object(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "lineage", json_string("{}"));
}
static void edit_lineage_text(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "lineage",
                        json_string("[{\"op\":\"x\"},{\"op\":\"y\"}]"));
}
static void edit_lineage_huge(parsed *p) {
    size_t n = 600000;
    char *text = malloc(3 * n + 2);
    text[0] = '[';
    for (size_t i = 0; i < n; i++) memcpy(text + 1 + 3 * i, "{},", 3);
    text[3 * n] = ']';
    text[3 * n + 1] = '\0';
    json_object_set_new(json_object_get(p->root, "__metadata__"), "lineage", json_string(text));
    free(text);
}
static void edit_arch_huge(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_t *big = json_array();
    for (int i = 0; i < 1100000; i++) json_array_append_new(big, json_null());
    json_object_set_new(a, "padding", big);
    arch_edit_end(p, a);
}
static void edit_no_architecture(parsed *p) {
    json_object_del(json_object_get(p->root, "__metadata__"), "architecture");
}
static void edit_arch_not_json(parsed *p) {
    json_object_set_new(json_object_get(p->root, "__metadata__"), "architecture",
                        json_string("{\"input_dim\":5,"));
}
static void edit_arch_in_mismatch(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 1), "in", json_integer(8));
    arch_edit_end(p, a);
}
static void edit_arch_input_dim(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "input_dim", json_integer(4));
    arch_edit_end(p, a);
}
static void edit_arch_huge_dims(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "input_dim", json_integer((json_int_t)1 << 30));
    arch_edit_end(p, a);
}
static void edit_arch_budget(parsed *p) {
    /* dims within limits, but far more parameters than the file holds */
    json_t *a = arch_edit_begin(p);
    json_t *layers = json_object_get(a, "layers");
    json_object_set_new(json_array_get(layers, 0), "out", json_integer(1 << 24));
    json_object_set_new(json_array_get(layers, 1), "in", json_integer(1 << 24));
    arch_edit_end(p, a);
}
static void edit_arch_many_layers(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_t *layers = json_object_get(a, "layers");
    json_t *last = json_array_get(layers, 2);
    json_object_set_new(last, "out", json_integer(6));
    for (int i = 0; i < 100000; i++)
        json_array_append_new(layers, json_pack("{s:s,s:i,s:i,s:s}", "kind", "dense", "in", 6,
                                                "out", 6, "activation", "relu"));
    arch_edit_end(p, a);
}
static void edit_arch_kind(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "kind", json_string("conv2d"));
    arch_edit_end(p, a);
}
static void edit_arch_activation(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "activation",
                        json_string("gelu"));
    arch_edit_end(p, a);
}
static void edit_arch_trainable(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 0), "trainable",
                        json_string("no"));
    arch_edit_end(p, a);
}
static void edit_arch_slope(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "leaky_slope", json_real(1.5));
    arch_edit_end(p, a);
}
static void edit_arch_seed(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "seed", json_string("18446744073709551616"));
    arch_edit_end(p, a);
}
static void edit_arch_loss(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "loss", json_string("hinge"));
    arch_edit_end(p, a);
}
static void edit_arch_zero_out(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(json_array_get(json_object_get(a, "layers"), 2), "out", json_integer(0));
    arch_edit_end(p, a);
}
static void edit_arch_rng(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "init_rng", json_pack("[ssss]", "0000000000000000", "0000000000000000",
                                                 "0000000000000000", "0000000000000000"));
    arch_edit_end(p, a);
}
static void edit_arch_unknown_key(parsed *p) {
    json_t *a = arch_edit_begin(p);
    json_object_set_new(a, "comment", json_string("ignored"));
    arch_edit_end(p, a);
}

START_TEST(test_metadata) {
    expect_edit(edit_version2, 1, MM_E_VERSION, "format_version \"2\"");
    expect_edit(edit_version2, 0, MM_E_VERSION, "format_version"); /* checked before the CRC */
    expect_edit(edit_no_version, 1, MM_E_FORMAT, "format_version");
    expect_edit(edit_no_checksum, 0, MM_E_FORMAT, "checksum is missing");
    expect_edit(edit_bad_checksum_text, 0, MM_E_FORMAT, "malformed");
    expect_edit(edit_not_mmaint, 1, MM_E_FORMAT, "not an mmaint model file");
    expect_edit(edit_no_metadata, 0, MM_E_FORMAT, "not an mmaint model file");
    expect_edit(edit_lineage_object, 1, MM_E_FORMAT, "lineage");
    expect_edit(edit_lineage_text, 0, MM_E_CHECKSUM, "checksum");
    expect_edit(edit_lineage_huge, 1, MM_E_FORMAT, "lineage has more than");
    expect_edit(edit_arch_huge, 1, MM_E_FORMAT, "architecture has more than");
    expect_edit(edit_no_architecture, 1, MM_E_FORMAT, "architecture is missing");
    expect_edit(edit_arch_not_json, 1, MM_E_FORMAT, "architecture is not valid JSON");
    expect_edit(edit_arch_in_mismatch, 1, MM_E_FORMAT, "layer 1 takes 8 inputs");
    expect_edit(edit_arch_in_mismatch, 0, MM_E_CHECKSUM, "checksum");
    expect_edit(edit_arch_input_dim, 1, MM_E_FORMAT, "layer 0 takes 5 inputs but input_dim gives 4");
    expect_edit(edit_arch_huge_dims, 1, MM_E_FORMAT, "input_dim");
    /* the dense loader checks its tensors against the architecture before
     * allocating (was: a parameter budget over all layers) */
    expect_edit(edit_arch_budget, 1, MM_E_FORMAT,
                "layers.0.weight: shape [7, 5], expected [16777216, 5]");
    expect_edit(edit_arch_many_layers, 1, MM_E_FORMAT,
                "layers.2.weight: shape [4, 6], expected [6, 6]");
    expect_edit(edit_arch_kind, 1, MM_E_UNSUPPORTED, "conv2d");
    expect_edit(edit_arch_activation, 1, MM_E_FORMAT, "gelu");
    expect_edit(edit_arch_trainable, 1, MM_E_FORMAT, "\"trainable\" must be true or false");
    expect_edit(edit_arch_slope, 1, MM_E_FORMAT, "leaky_slope");
    expect_edit(edit_arch_seed, 1, MM_E_FORMAT, "seed");
    expect_edit(edit_arch_loss, 1, MM_E_FORMAT, "hinge");
    expect_edit(edit_arch_zero_out, 1, MM_E_FORMAT, "\"out\" is 0");
    expect_edit(edit_arch_rng, 1, MM_E_FORMAT, "init_rng");
    expect_edit(edit_arch_unknown_key, 1, MM_OK, NULL);
}
END_TEST

START_TEST(test_lineage_loaded_verbatim) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    parsed p;
    parse_file(buf, len, &p);
    edit_lineage_text(&p);
    size_t len2;
    unsigned char *buf2 = emit_file(&p, 1, &len2);
    mm_model *l;
    MM_ASSERT_OK(mm_model_load_buffer(&l, buf2, len2));
    ck_assert_str_eq(mm_model_lineage(l), "[{\"op\":\"x\"},{\"op\":\"y\"}]");
    mm_model_free(l);
    free(buf2);
    parsed_free(&p);
    free(buf);
    mm_model_free(m);
}
END_TEST

/* Hand-written headers: things a JSON library would not produce. */
static unsigned char *raw_file(const char *header, const void *data, size_t data_len,
                               size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    unsigned char *buf = malloc(*len);
    put_u64le(buf, hl);
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    return buf;
}

START_TEST(test_raw_headers) {
    static const unsigned char zeros[16];
    static const struct {
        const char *header;
        size_t data_len;
        mm_status want;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, MM_E_FORMAT, "duplicate"},
        {" {}", 0, MM_E_FORMAT, "no safetensors header"},
        {"[1,2]", 0, MM_E_FORMAT, "no safetensors header"},
        {"{\"x\":1} trailing", 0, MM_E_FORMAT, "not valid JSON"},
        {"{}", 0, MM_E_FORMAT, "not an mmaint model file"},
        {"{}      ", 0, MM_E_FORMAT, "not an mmaint model file"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, MM_E_FORMAT,
         "empty name"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
         MM_E_FORMAT, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MM_E_FORMAT,
         "two non-negative integers"},
        {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MM_E_FORMAT, "string"},
        {"{\"__metadata__\":{\"format\":\"mmaint\",\"format_version\":\"1\","
         "\"checksum\":\"crc32:00000000\"}}",
         0, MM_E_CHECKSUM, "checksum"},
        {"{\"__metadata__\":{\"format\":\"mmaint\",\"format_version\":\"1\","
         "\"checksum\":\"crc32:zz000000\"}}",
         0, MM_E_FORMAT, "malformed"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0,
         MM_E_FORMAT, "too large"},
        /* an empty tensor is valid safetensors (the product is 0 before it overflows) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
         MM_E_FORMAT, "not an mmaint model file"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, MM_E_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, MM_E_FORMAT,
         "no tensor"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        unsigned char *buf = raw_file(cases[i].header, zeros, cases[i].data_len, &len);
        expect_load(buf, len, cases[i].want, cases[i].needle);
        free(buf);
    }
    /* a header of a million tiny values: refused before parsing */
    {
        size_t nv = 1100000;
        char *h = malloc(2 * nv + 16);
        size_t pos = (size_t)sprintf(h, "{\"a\":[");
        for (size_t i = 0; i < nv; i++) {
            h[pos++] = '0';
            h[pos++] = ',';
        }
        strcpy(h + pos, "0]}");
        size_t hlen;
        unsigned char *hb = raw_file(h, NULL, 0, &hlen);
        expect_load(hb, hlen, MM_E_FORMAT, "JSON values");
        free(hb);
        free(h);
    }
    /* NUL inside the header */
    size_t len;
    unsigned char *buf = raw_file("{}      ", NULL, 0, &len);
    buf[8 + 3] = 0;
    expect_load(buf, len, MM_E_FORMAT, "NUL");
    free(buf);
}
END_TEST

/* ------------------------------------------------------------------------
 * the internal container API (used by the optimizer)
 * ---------------------------------------------------------------------- */

START_TEST(test_container_api) {
    mm_model *m = small_model();
    float extra[6] = {1, 2, 3, 4, 5, 6};
    float vec[3] = {-1, 0.5f, 7};
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_model(w, m));
    MM_ASSERT_OK(mm_file_writer_add_f32(w, "optim.m.layers.0.weight", extra, 2, 3, false));
    MM_ASSERT_OK(mm_file_writer_add_f32(w, "optim.v", vec, 3, 1, true));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "optimizer", "{\"kind\":\"adam\",\"step\":12}"));
    MM_ASSERT_STATUS(mm_file_writer_add_meta(w, "optimizer", "x"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_meta(w, "checksum", "x"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_meta(w, "format", "x"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_meta(w, "bad", "\xff\xfe"), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_f32(w, "optim.v", vec, 3, 1, true), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_f32(w, "__metadata__", vec, 3, 1, true),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_f32(w, "v2", vec, 3, 2, true), MM_E_INVALID_ARGUMENT);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);

    mm_file *f;
    MM_ASSERT_OK(mm_file_open(&f, path));
    ck_assert_str_eq(mm_file_meta(f, "optimizer"), "{\"kind\":\"adam\",\"step\":12}");
    ck_assert_str_eq(mm_file_meta(f, "format"), "mmaint");
    ck_assert(mm_file_meta(f, "nope") == NULL);
    ck_assert(mm_file_has_tensor(f, "optim.v"));
    ck_assert(mm_file_has_tensor(f, "layers.2.bias"));
    ck_assert(!mm_file_has_tensor(f, "layers.3.bias"));
    float got[6];
    MM_ASSERT_OK(mm_file_read_f32(f, "optim.m.layers.0.weight", 2, 3, got));
    ck_assert(memcmp(got, extra, sizeof extra) == 0);
    MM_ASSERT_OK(mm_file_read_f32(f, "optim.v", 3, 1, got));
    ck_assert(memcmp(got, vec, sizeof vec) == 0);
    MM_ASSERT_STATUS(mm_file_read_f32(f, "optim.v", 1, 3, got), MM_E_SHAPE);
    MM_ASSERT_STATUS(mm_file_read_f32(f, "optim.m.layers.0.weight", 3, 2, got), MM_E_SHAPE);
    ck_assert(strstr(mm_last_error_message(), path) != NULL);
    MM_ASSERT_STATUS(mm_file_read_f32(f, "missing", 1, 1, got), MM_E_NOT_FOUND);
    mm_model *l;
    MM_ASSERT_OK(mm_file_build_model(f, &l));
    assert_models_equal(m, l);
    mm_model_free(l);
    mm_file_close(f);
    /* the plain model loader ignores the extra tensors and metadata */
    MM_ASSERT_OK(mm_model_load(&l, path));
    assert_models_equal(m, l);
    mm_model_free(l);
    unlink(path);

    /* a foreign safetensors file opens as a container */
    static const unsigned char data[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}; /* 1.0f, -2.0f */
    size_t len;
    unsigned char *buf = raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                                  data, 8, &len);
    MM_ASSERT_OK(mm_file_open_buffer(&f, buf, len));
    MM_ASSERT_OK(mm_file_read_f32(f, "w", 2, 1, got));
    ck_assert(got[0] == 1.0f && got[1] == -2.0f);
    MM_ASSERT_STATUS(mm_file_build_model(f, &l), MM_E_FORMAT);
    ck_assert(l == NULL);
    mm_file_close(f);
    mm_file_close(NULL);
    mm_file_writer_free(NULL);
    free(buf);
    free(path);
    mm_model_free(m);
}
END_TEST

/* A model the loader would refuse (NaN weights, giant lineage) is refused at
 * save time. */
START_TEST(test_save_refuses_nan) {
    mm_model *m = small_model();
    m->layers[1]->params[0].data[2] = NAN;
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_STATUS(mm_model_save(m, path), MM_E_NUMERIC);
    ck_assert(access(path, F_OK) != 0);
    m->layers[1]->params[0].data[2] = 0.5f;
    /* a lineage too big for readers is refused too */
    size_t n = 600000;
    char *text = malloc(3 * n + 2);
    text[0] = '[';
    for (size_t i = 0; i < n; i++) memcpy(text + 1 + 3 * i, "{},", 3);
    text[3 * n] = ']';
    text[3 * n + 1] = '\0';
    MM_ASSERT_OK(mm_lineage_set(m, text));
    free(text);
    MM_ASSERT_STATUS(mm_model_save(m, path), MM_E_OUT_OF_RANGE);
    ck_assert(access(path, F_OK) != 0);
    free(path);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * lineage
 * ---------------------------------------------------------------------- */

START_TEST(test_lineage) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 3, 1));
    ck_assert_str_eq(mm_model_lineage(m), "[]");
    MM_ASSERT_OK(mm_model_add_lineage(m, "update", NULL));
    MM_ASSERT_OK(mm_model_add_lineage(m, "prune", "{\"sparsity\":0.5,\"op\":\"ignored\",\"x\":[1,2]}"));
    MM_ASSERT_STATUS(mm_model_add_lineage(m, "bad", "[1]"), MM_E_FORMAT);
    MM_ASSERT_STATUS(mm_model_add_lineage(m, "bad", "{nope"), MM_E_FORMAT);
    MM_ASSERT_STATUS(mm_model_add_lineage(m, "", NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_add_lineage(m, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_model_add_lineage(NULL, "x", NULL), MM_E_INVALID_ARGUMENT);
    json_t *arr = json_loads(mm_model_lineage(m), 0, NULL);
    ck_assert(json_is_array(arr));
    ck_assert_uint_eq(json_array_size(arr), 2);
    json_t *e0 = json_array_get(arr, 0), *e1 = json_array_get(arr, 1);
    ck_assert_str_eq(json_string_value(json_object_get(e0, "op")), "update");
    ck_assert_str_eq(json_string_value(json_object_get(e1, "op")), "prune");
    ck_assert(json_real_value(json_object_get(e1, "sparsity")) == 0.5);
    ck_assert_uint_eq(json_array_size(json_object_get(e1, "x")), 2);
    const char *t = json_string_value(json_object_get(e0, "time"));
    ck_assert(t != NULL);
    int y, mo, d, h, mi, s;
    char z;
    ck_assert_int_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z), 7);
    ck_assert(z == 'Z' && strlen(t) == 20 && y >= 2020);
    json_decref(arr);

    /* lineage survives save/load unchanged, and load adds nothing */
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    mm_model *l;
    MM_ASSERT_OK(mm_model_load_buffer(&l, buf, len));
    ck_assert_str_eq(mm_model_lineage(l), mm_model_lineage(m));
    free(buf);
    ck_assert(mm_model_lineage(NULL) == NULL);
    mm_model_free(l);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * atomic save
 * ---------------------------------------------------------------------- */

START_TEST(test_atomic_save_ok) {
    char *dir = make_tmp_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/model.mmf", dir);
    mm_model *a = make_model(&cfgs[0]), *b = make_model(&cfgs[2]);
    MM_ASSERT_OK(mm_model_save(a, path));
    ck_assert_uint_eq(count_tmp_files(dir), 0);
    MM_ASSERT_OK(mm_model_save(b, path)); /* replace */
    ck_assert_uint_eq(count_tmp_files(dir), 0);
    mm_model *l;
    MM_ASSERT_OK(mm_model_load(&l, path));
    assert_models_equal(b, l);
    mm_model_free(l);
    /* a relative path (no directory part) works too */
    char cwd[4096];
    ck_assert(getcwd(cwd, sizeof cwd) != NULL);
    ck_assert(chdir(dir) == 0);
    MM_ASSERT_OK(mm_model_save(a, "rel.mmf"));
    MM_ASSERT_OK(mm_model_load(&l, "rel.mmf"));
    assert_models_equal(a, l);
    mm_model_free(l);
    ck_assert(chdir(cwd) == 0);
    ck_assert_uint_eq(count_tmp_files(dir), 0);
    rm_rf_flat(dir);
    free(dir);
    mm_model_free(a);
    mm_model_free(b);
}
END_TEST

START_TEST(test_atomic_save_failures) {
    char *dir = make_tmp_dir();
    char path[4096], sub[4096], missing[4096];
    snprintf(path, sizeof path, "%s/model.mmf", dir);
    snprintf(sub, sizeof sub, "%s/adir", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/model.mmf", dir);
    mm_model *a = make_model(&cfgs[0]), *b = make_model(&cfgs[4]);
    MM_ASSERT_OK(mm_model_save(a, path));
    size_t len0;
    unsigned char *orig = slurp(path, &len0);

    /* the path is a directory */
    ck_assert(mkdir(sub, 0755) == 0);
    MM_ASSERT_STATUS(mm_model_save(b, sub), MM_E_IO);
    ck_assert(strstr(mm_last_error_message(), "directory") != NULL);
    struct stat st;
    ck_assert(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_uint_eq(count_tmp_files(dir), 0);

    /* the directory does not exist */
    MM_ASSERT_STATUS(mm_model_save(b, missing), MM_E_IO);
    ck_assert(strstr(mm_last_error_message(), "No such file") != NULL);

    /* loading a directory or a missing file */
    mm_model *l;
    MM_ASSERT_STATUS(mm_model_load(&l, sub), MM_E_IO);
    MM_ASSERT_STATUS(mm_model_load(&l, missing), MM_E_IO);
    ck_assert(strstr(mm_last_error_message(), missing) != NULL);

    /* an unwritable directory (not testable as root: root writes anyway) */
    ck_assert(chmod(dir, 0555) == 0);
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/probe", dir);
    FILE *pf = fopen(probe, "wb");
    if (pf) {
        fclose(pf);
        unlink(probe);
    } else {
        MM_ASSERT_STATUS(mm_model_save(b, path), MM_E_IO);
        ck_assert(strstr(mm_last_error_message(), "Permission denied") != NULL);
    }
    ck_assert(chmod(dir, 0755) == 0);

    /* a write that fails half way (file size limit: works as root too) */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 512;
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    mm_status sst = mm_model_save(b, path); /* b's file is > 512 bytes */
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mm_last_error_message());
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    ck_assert_msg(sst == MM_E_IO, "%s: %s", mm_status_name(sst), msg);
    ck_assert_msg(strstr(msg, "too large") != NULL, "%s", msg);

    /* whatever failed, the old file is untouched and no temp file is left */
    size_t len1;
    unsigned char *now = slurp(path, &len1);
    ck_assert_uint_eq(len0, len1);
    ck_assert(memcmp(orig, now, len0) == 0);
    ck_assert_uint_eq(count_tmp_files(dir), 0);
    MM_ASSERT_OK(mm_model_load(&l, path));
    assert_models_equal(a, l);
    mm_model_free(l);

    free(orig);
    free(now);
    rm_rf_flat(dir);
    free(dir);
    mm_model_free(a);
    mm_model_free(b);
}
END_TEST

/* ------------------------------------------------------------------------
 * fuzz: random mutations of a valid file never crash, and anything that
 * loads is the original model
 * ---------------------------------------------------------------------- */

static uint64_t fz_state = 0x9e3779b97f4a7c15ULL;
static uint64_t fz_next(void) {
    fz_state ^= fz_state << 13;
    fz_state ^= fz_state >> 7;
    fz_state ^= fz_state << 17;
    return fz_state;
}
static size_t fz_below(size_t n) { return n ? (size_t)(fz_next() % n) : 0; }

START_TEST(test_fuzz) {
    mm_model *m = make_model(&cfgs[3]);
    size_t len;
    unsigned char *orig = save_to_buffer(m, &len);
    size_t hend = 8 + (size_t)u64le(orig);
    static const unsigned char interesting[] = {0, 0xff, '0', '9', '-', '"', '{', '}', '[',
                                                ']', ',', ':', ' ', '\\', 'e', '.'};
    size_t loaded = 0;
    for (int iter = 0; iter < 2000; iter++) {
        size_t cap = len + 64;
        unsigned char *buf = malloc(cap);
        memcpy(buf, orig, len);
        size_t n = len;
        int muts = 1 + (int)fz_below(4);
        for (int k = 0; k < muts; k++) {
            /* bias towards the header, where the parsing happens */
            size_t pos = fz_below(4) ? fz_below(hend) : fz_below(n);
            if (pos >= n) pos = n ? n - 1 : 0;
            switch (fz_below(8)) {
            case 0: buf[pos] ^= (unsigned char)(1u << fz_below(8)); break;
            case 1: buf[pos] = interesting[fz_below(sizeof interesting)]; break;
            case 2: buf[pos] = (unsigned char)fz_next(); break;
            case 3: n = fz_below(n + 1); break; /* truncate */
            case 4: /* insert a byte */
                if (n < cap) {
                    memmove(buf + pos + 1, buf + pos, n - pos);
                    buf[pos] = interesting[fz_below(sizeof interesting)];
                    n++;
                }
                break;
            case 5: /* delete a byte */
                if (n > 0) {
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                }
                break;
            case 6: { /* header length */
                static const uint64_t lens[] = {0, 1, 7, 8, UINT64_MAX, (uint64_t)1 << 63, 100000000};
                uint64_t v = fz_below(2) ? lens[fz_below(7)] : u64le(orig) + fz_below(17) - 8;
                if (n >= 8) put_u64le(buf, v);
                break;
            }
            default: /* bump a digit (shapes, offsets, dims) */
                for (size_t j = 0; j < 64 && pos + j < hend && pos + j < n; j++) {
                    unsigned char c = buf[pos + j];
                    if (c >= '0' && c <= '9') {
                        buf[pos + j] = (unsigned char)('0' + fz_below(10));
                        break;
                    }
                }
                break;
            }
        }
        mm_model *l = NULL;
        mm_status st = mm_model_load_buffer(&l, buf, n);
        if (st == MM_OK) {
            assert_models_equal(m, l);
            mm_model_free(l);
            loaded++;
        } else {
            ck_assert(l == NULL);
            ck_assert(mm_last_error_message()[0] != '\0');
        }
        free(buf);
    }
    ck_assert_msg(loaded < 200, "%zu of 2000 mutants loaded", loaded);
    free(orig);
    mm_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------
 * tensor dtypes, layer-kind hooks
 * ---------------------------------------------------------------------- */

/* The bytes written for a dense model are pinned (length and CRC-32 of the
 * whole file, from the writer before layer kinds had save hooks). Weights
 * are set exactly, so no libm result enters the file. */
START_TEST(test_dense_bytes_unchanged) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 5, 42));
    MM_ASSERT_OK(mm_model_set_leaky_slope(m, 0.2f));
    MM_ASSERT_OK(mm_model_set_loss(m, MM_LOSS_MSE));
    MM_ASSERT_OK(mm_model_add_dense(m, 7, MM_ACT_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 1, MM_ACT_LEAKY_RELU));
    MM_ASSERT_OK(mm_model_add_dense(m, 3, MM_ACT_IDENTITY));
    for (size_t l = 0; l < 3; l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        float w[64], b[8];
        for (size_t i = 0; i < in * out; i++) w[i] = (float)i * 0.25f - (float)l;
        for (size_t i = 0; i < out; i++) b[i] = -0.5f * (float)i;
        MM_ASSERT_OK(mm_model_set_weights(m, l, w, in * out, b, out));
    }
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    ck_assert_uint_eq(len, 1176);
    ck_assert_uint_eq(crc32(crc32(0L, Z_NULL, 0), buf, (uInt)len), 0x9564d37aUL);
    free(buf);
    mm_model_free(m);
}
END_TEST

static const struct {
    mm_dtype dtype;
    const char *name;
    size_t size;
} dtypes[] = {
    {MM_DTYPE_F32, "F32", 4}, {MM_DTYPE_F16, "F16", 2}, {MM_DTYPE_BF16, "BF16", 2},
    {MM_DTYPE_I8, "I8", 1},   {MM_DTYPE_U8, "U8", 1},   {MM_DTYPE_I16, "I16", 2},
    {MM_DTYPE_U16, "U16", 2}, {MM_DTYPE_I32, "I32", 4}, {MM_DTYPE_U32, "U32", 4},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

/* The little-endian bytes of element i of a host-order array. */
static void le_bytes(const void *data, size_t elsize, size_t i, unsigned char *out) {
    const unsigned char *p = (const unsigned char *)data + i * elsize;
    uint32_t u = 0;
    if (elsize == 1) u = p[0];
    if (elsize == 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        u = h;
    }
    if (elsize == 4) memcpy(&u, p, 4);
    for (size_t k = 0; k < elsize; k++) out[k] = (unsigned char)(u >> (8 * k));
}

START_TEST(test_dtype_round_trip) {
    static const float f32[6] = {1.0f, -2.5f, -0.0f, 1e-40f, 3.4028235e38f, 0.1f};
    static const uint16_t f16[6] = {0x3c00, 0xc000, 0x8000, 0x0001, 0x7bff, 0x7e00};
    static const uint16_t bf16[6] = {0x3f80, 0xc020, 0x8000, 0x0001, 0x7f7f, 0xffc1};
    static const int8_t i8[6] = {-128, 127, 0, -1, 1, 42};
    static const uint8_t u8[6] = {0, 255, 1, 128, 127, 0x5a};
    static const int16_t i16[6] = {-32768, 32767, 0, -1, 0x0102, -300};
    static const uint16_t u16[6] = {0, 65535, 0x0102, 0x8000, 1, 0xabcd};
    static const int32_t i32[6] = {INT32_MIN, INT32_MAX, 0, -1, 0x01020304, -70000};
    static const uint32_t u32[6] = {0, UINT32_MAX, 0x01020304, 0x80000000u, 1, 0xdeadbeefu};
    const void *datas[N_DTYPES] = {f32, f16, bf16, i8, u8, i16, u16, i32, u32};
    static const uint64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s6[1] = {6}, s231[3] = {2, 3, 1};
    static const uint64_t s8d[8] = {1, 1, 2, 1, 1, 3, 1, 1}, s3d[3] = {3, 1, 2}, s03[2] = {0, 3};
    char name[64];

    for (size_t i = 0; i < N_DTYPES; i++) {
        ck_assert_str_eq(mm_dtype_name(dtypes[i].dtype), dtypes[i].name);
        ck_assert_uint_eq(mm_dtype_size(dtypes[i].dtype), dtypes[i].size);
    }
    ck_assert(mm_dtype_name((mm_dtype)99) == NULL);
    ck_assert_uint_eq(mm_dtype_size((mm_dtype)-1), 0);

    mm_model *m = small_model();
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_model(w, m));
    for (size_t i = 0; i < N_DTYPES; i++) {
        snprintf(name, sizeof name, "t.%s", dtypes[i].name);
        MM_ASSERT_OK(mm_file_writer_add_tensor(w, name, dtypes[i].dtype, datas[i], s23, 2));
    }
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "shape.scalar", MM_DTYPE_I32, &i32[4], NULL, 0));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "shape.8d", MM_DTYPE_U8, u8, s8d, 8));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "shape.3d", MM_DTYPE_I16, i16, s3d, 3));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "shape.empty", MM_DTYPE_F16, NULL, s03, 2));
    /* refused: the reader would refuse the file, or the call makes no sense */
    static const uint64_t s9d[9] = {1, 1, 1, 1, 1, 1, 1, 1, 6};
    static const uint64_t huge[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    static const uint64_t zero_huge[2] = {0, (uint64_t)1 << 63};
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", MM_DTYPE_U8, u8, s9d, 9),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", (mm_dtype)99, u8, s6, 1),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", MM_DTYPE_U8, u8, NULL, 1),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", MM_DTYPE_U8, NULL, s6, 1),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", MM_DTYPE_U32, u32, huge, 2),
                     MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "x", MM_DTYPE_U8, NULL, zero_huge, 2),
                     MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "t.I8", MM_DTYPE_I8, i8, s6, 1),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_writer_add_tensor(w, "__metadata__", MM_DTYPE_I8, i8, s6, 1),
                     MM_E_INVALID_ARGUMENT);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);

    /* the file, read independently: dtype names, little-endian bytes, the
     * documented checksum */
    size_t len;
    unsigned char *buf = slurp(path, &len);
    parsed p;
    parse_file(buf, len, &p);
    char *ck = checksum_of(&p);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p.root, "__metadata__"),
                                                       "checksum")),
                     ck);
    free(ck);
    for (size_t i = 0; i < N_DTYPES; i++) {
        snprintf(name, sizeof name, "t.%s", dtypes[i].name);
        json_t *t = tensor(&p, name);
        ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), dtypes[i].name);
        json_t *shape = json_object_get(t, "shape");
        ck_assert_uint_eq(json_array_size(shape), 2);
        ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), 2);
        ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), 3);
        json_t *off = json_object_get(t, "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0));
        size_t e = (size_t)json_integer_value(json_array_get(off, 1));
        ck_assert_uint_eq(e - b, 6 * dtypes[i].size);
        for (size_t k = 0; k < 6; k++) {
            unsigned char want[4];
            le_bytes(datas[i], dtypes[i].size, k, want);
            ck_assert_msg(memcmp(p.data + b + k * dtypes[i].size, want, dtypes[i].size) == 0,
                          "%s element %zu not little-endian", name, k);
        }
    }
    /* spelled out, whatever the host's order */
    json_t *off = json_object_get(tensor(&p, "t.U32"), "data_offsets");
    const unsigned char *q = p.data + json_integer_value(json_array_get(off, 0)) + 2 * 4;
    ck_assert(q[0] == 0x04 && q[1] == 0x03 && q[2] == 0x02 && q[3] == 0x01);
    off = json_object_get(tensor(&p, "t.BF16"), "data_offsets");
    q = p.data + json_integer_value(json_array_get(off, 0));
    ck_assert(q[0] == 0x80 && q[1] == 0x3f);
    ck_assert_uint_eq(json_array_size(json_object_get(tensor(&p, "shape.scalar"), "shape")), 0);
    parsed_free(&p);
    free(buf);

    /* the reader */
    mm_file *f;
    MM_ASSERT_OK(mm_file_open(&f, path));
    for (size_t i = 0; i < N_DTYPES; i++) {
        snprintf(name, sizeof name, "t.%s", dtypes[i].name);
        mm_dtype dt = (mm_dtype)-1;
        uint64_t shape[8];
        size_t nd = 99;
        MM_ASSERT_OK(mm_file_tensor_info(f, name, &dt, shape, &nd));
        ck_assert_int_eq(dt, dtypes[i].dtype);
        ck_assert_uint_eq(nd, 2);
        ck_assert(shape[0] == 2 && shape[1] == 3);
        unsigned char got[24];
        memset(got, 0xaa, sizeof got);
        MM_ASSERT_OK(mm_file_read_tensor(f, name, dtypes[i].dtype, s23, 2, got));
        ck_assert_msg(memcmp(got, datas[i], 6 * dtypes[i].size) == 0, "%s differs", name);
        /* every other dtype is refused, naming the tensor and both dtypes */
        for (size_t j = 0; j < N_DTYPES; j++) {
            if (j == i) continue;
            MM_ASSERT_STATUS(mm_file_read_tensor(f, name, dtypes[j].dtype, s23, 2, got),
                             MM_E_FORMAT);
            char want[96];
            snprintf(want, sizeof want, "tensor %s: dtype %s, expected %s", name, dtypes[i].name,
                     dtypes[j].name);
            ck_assert_msg(strstr(mm_last_error_message(), want) != NULL, "%s",
                          mm_last_error_message());
        }
        /* the shape must match exactly */
        MM_ASSERT_STATUS(mm_file_read_tensor(f, name, dtypes[i].dtype, s32, 2, got), MM_E_FORMAT);
        ck_assert_msg(strstr(mm_last_error_message(), "shape [2, 3], expected [3, 2]") != NULL,
                      "%s", mm_last_error_message());
        ck_assert(strstr(mm_last_error_message(), name) != NULL);
        ck_assert(strstr(mm_last_error_message(), path) != NULL);
        MM_ASSERT_STATUS(mm_file_read_tensor(f, name, dtypes[i].dtype, s6, 1, got), MM_E_FORMAT);
        MM_ASSERT_STATUS(mm_file_read_tensor(f, name, dtypes[i].dtype, s231, 3, got), MM_E_FORMAT);
        MM_ASSERT_STATUS(mm_file_read_tensor(f, name, dtypes[i].dtype, NULL, 0, got), MM_E_FORMAT);
    }
    /* other shapes */
    int32_t scalar = 0;
    size_t nd = 99;
    MM_ASSERT_OK(mm_file_tensor_info(f, "shape.scalar", NULL, NULL, &nd));
    ck_assert_uint_eq(nd, 0);
    MM_ASSERT_OK(mm_file_read_tensor(f, "shape.scalar", MM_DTYPE_I32, NULL, 0, &scalar));
    ck_assert_int_eq(scalar, 0x01020304);
    uint8_t g8[6];
    MM_ASSERT_OK(mm_file_read_tensor(f, "shape.8d", MM_DTYPE_U8, s8d, 8, g8));
    ck_assert(memcmp(g8, u8, 6) == 0);
    int16_t g16[6];
    MM_ASSERT_OK(mm_file_read_tensor(f, "shape.3d", MM_DTYPE_I16, s3d, 3, g16));
    ck_assert(memcmp(g16, i16, sizeof g16) == 0);
    MM_ASSERT_OK(mm_file_read_tensor(f, "shape.empty", MM_DTYPE_F16, s03, 2, NULL));
    MM_ASSERT_STATUS(mm_file_read_tensor(f, "shape.8d", MM_DTYPE_U8, s9d, 9, g8),
                     MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_file_tensor_info(f, "nope", NULL, NULL, NULL), MM_E_NOT_FOUND);
    MM_ASSERT_STATUS(mm_file_read_tensor(f, "nope", MM_DTYPE_U8, s6, 1, g8), MM_E_NOT_FOUND);
    /* the F32 reader and the model loader are unaffected by the extra tensors */
    float gf[6];
    MM_ASSERT_OK(mm_file_read_f32(f, "t.F32", 2, 3, gf));
    ck_assert(memcmp(gf, f32, sizeof gf) == 0);
    MM_ASSERT_STATUS(mm_file_read_f32(f, "t.I32", 2, 3, gf), MM_E_UNSUPPORTED);
    mm_model *l;
    MM_ASSERT_OK(mm_file_build_model(f, &l));
    assert_models_equal(m, l);
    mm_model_free(l);
    mm_file_close(f);

    /* safetensors dtypes outside mm_dtype open, but cannot be read */
    static const unsigned char zeros[16];
    buf = raw_file("{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", zeros, 16,
                   &len);
    MM_ASSERT_OK(mm_file_open_buffer(&f, buf, len));
    MM_ASSERT_STATUS(mm_file_tensor_info(f, "d", NULL, NULL, NULL), MM_E_UNSUPPORTED);
    ck_assert(strstr(mm_last_error_message(), "tensor d: dtype F64") != NULL);
    double gd[2];
    static const uint64_t s2[1] = {2};
    MM_ASSERT_STATUS(mm_file_read_tensor(f, "d", MM_DTYPE_U32, s2, 1, gd), MM_E_UNSUPPORTED);
    mm_file_close(f);
    free(buf);

    unlink(path);
    free(path);
    mm_model_free(m);
}
END_TEST

/* A layer kind this library cannot load: its save hook adds a field to the
 * architecture entry and an I8 tensor. */
typedef struct q_layer {
    mm_layer base;
    int8_t q[6];
} q_layer;

static void q_destroy(mm_layer *l) { free(l); }
static mm_status q_clone(const mm_layer *l, mm_layer **out) {
    q_layer *c = malloc(sizeof *c);
    memcpy(c, l, sizeof *c);
    *out = &c->base;
    return MM_OK;
}
static void q_forward(const mm_layer *l, const mm_kernels *k, const float *const *x, float *y,
                      size_t n) {
    (void)k;
    (void)x;
    memset(y, 0, n * l->out * sizeof *y);
}
static void q_backward(mm_layer *l, const mm_kernels *k, const float *const *x, const float *y,
                       float *dy, float *const *dx, size_t n, bool param_grads) {
    (void)k, (void)x, (void)y, (void)dy, (void)param_grads;
    if (dx[0]) memset(dx[0], 0, n * l->in * sizeof *dx[0]);
}
static size_t q_param_bytes(const mm_layer *l) { return l->in * l->out; }
static mm_status q_save(const mm_layer *l, size_t index, json_t *entry, mm_file_writer *w) {
    const q_layer *q = (const q_layer *)l;
    if (json_object_set_new(entry, "scale", json_real(0.5))) return MM_E_OUT_OF_MEMORY;
    char name[64];
    snprintf(name, sizeof name, "layers.%zu.q", index);
    const uint64_t shape[2] = {l->out, l->in};
    return mm_file_writer_add_tensor(w, name, MM_DTYPE_I8, q->q, shape, 2);
}
static const mm_layer_vtable q_vtable = {
    .kind = "int8_test",
    .caps = MM_CAP_LAYER,
    .destroy = q_destroy,
    .clone = q_clone,
    .forward = q_forward,
    .backward = q_backward,
    .param_bytes = q_param_bytes,
    .save = q_save,
};
static const mm_layer_vtable q_vtable_nosave = {
    .kind = "int8_nosave",
    .caps = MM_CAP_LAYER,
    .destroy = q_destroy,
    .clone = q_clone,
    .forward = q_forward,
    .backward = q_backward,
    .param_bytes = q_param_bytes,
};

static mm_model *model_with_q_layer(const mm_layer_vtable *vt) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create(&m, 3, 1));
    MM_ASSERT_OK(mm_model_add_dense(m, 2, MM_ACT_RELU));
    q_layer *q = calloc(1, sizeof *q);
    q->base.vt = vt;
    q->base.in = 2;
    q->base.out = 3;
    q->base.act = MM_ACT_IDENTITY;
    for (int i = 0; i < 6; i++) q->q[i] = (int8_t)(i * 50 - 128);
    MM_ASSERT_OK(mm_model_push_layer(m, &q->base));
    return m;
}

START_TEST(test_unknown_kind) {
    mm_model *m = model_with_q_layer(&q_vtable);
    char *path = mm_test_tmp_path(".mmf");
    MM_ASSERT_OK(mm_model_save(m, path));
    size_t len;
    unsigned char *buf = slurp(path, &len);
    parsed p;
    parse_file(buf, len, &p);
    /* the save hook's field and tensor are in the file */
    json_t *arch = arch_edit_begin(&p);
    json_t *e1 = json_array_get(json_object_get(arch, "layers"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(e1, "kind")), "int8_test");
    ck_assert_int_eq(json_integer_value(json_object_get(e1, "in")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(e1, "out")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(e1, "activation")), "identity");
    ck_assert(json_real_value(json_object_get(e1, "scale")) == 0.5);
    json_decref(arch);
    json_t *t = tensor(&p, "layers.1.q");
    ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "I8");
    ck_assert(tensor(&p, "layers.0.weight") != NULL);
    parsed_free(&p);

    /* this library does not know the kind: unsupported, naming it, with the
     * path prefixed once */
    mm_model *l = (mm_model *)(uintptr_t)1;
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_UNSUPPORTED);
    ck_assert(l == NULL);
    const char *msg = mm_last_error_message();
    ck_assert_msg(strstr(msg, "layer kind \"int8_test\" not supported") != NULL, "%s", msg);
    ck_assert_msg(strncmp(msg, path, strlen(path)) == 0, "%s", msg);
    ck_assert_msg(strstr(msg + strlen(path), path) == NULL, "path twice: %s", msg);
    expect_load(buf, len, MM_E_UNSUPPORTED, "int8_test");
    free(buf);

    /* a kind without a save hook cannot be saved */
    mm_model *n = model_with_q_layer(&q_vtable_nosave);
    char *path2 = mm_test_tmp_path(".mmf");
    MM_ASSERT_STATUS(mm_model_save(n, path2), MM_E_UNSUPPORTED);
    ck_assert(strstr(mm_last_error_message(), "int8_nosave") != NULL);
    ck_assert(access(path2, F_OK) != 0);

    unlink(path);
    free(path);
    free(path2);
    mm_model_free(m);
    mm_model_free(n);
}
END_TEST

/* Errors from a kind's loader carry the path once, too. */
START_TEST(test_loader_error_prefix) {
    mm_model *m = small_model();
    size_t len;
    unsigned char *buf = save_to_buffer(m, &len);
    parsed p;
    parse_file(buf, len, &p);
    edit_missing_tensor(&p);
    size_t len2;
    unsigned char *buf2 = emit_file(&p, 1, &len2);
    char *path = mm_test_tmp_path(".mmf");
    spit(path, buf2, len2);
    mm_model *l;
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_FORMAT);
    const char *msg = mm_last_error_message();
    ck_assert_msg(strncmp(msg, path, strlen(path)) == 0, "%s", msg);
    ck_assert_msg(strstr(msg + strlen(path), path) == NULL, "path twice: %s", msg);
    ck_assert_msg(strstr(msg, "tensor layers.1.bias is missing") != NULL, "%s", msg);
    unlink(path);
    free(path);
    free(buf2);
    parsed_free(&p);
    free(buf);
    mm_model_free(m);
}
END_TEST

/* A tiny file declaring a dense layer of 2^24 x 2^24 (2^48 weights) is
 * refused before anything is allocated for it: under AddressSanitizer an
 * attempt to allocate a petabyte would abort the test. */
static void write_huge_dense(const char *path, const char *weight_name, mm_dtype wdtype) {
    static const float tiny[2] = {0.5f, -0.5f};
    static const uint64_t s11[2] = {1, 1}, s1[1] = {1};
    mm_file_writer *w;
    MM_ASSERT_OK(mm_file_writer_create(&w));
    MM_ASSERT_OK(mm_file_writer_add_meta(
        w, "architecture",
        "{\"input_dim\":16777216,\"loss\":\"mse\",\"leaky_slope\":0.01,\"seed\":\"1\","
        "\"layers\":[{\"kind\":\"dense\",\"in\":16777216,\"out\":16777216,"
        "\"activation\":\"relu\"}]}"));
    MM_ASSERT_OK(mm_file_writer_add_meta(w, "lineage", "[]"));
    if (weight_name)
        MM_ASSERT_OK(mm_file_writer_add_tensor(w, weight_name, wdtype, tiny, s11, 2));
    MM_ASSERT_OK(mm_file_writer_add_tensor(w, "layers.0.bias", MM_DTYPE_F32, tiny, s1, 1));
    MM_ASSERT_OK(mm_file_writer_commit(w, path));
    mm_file_writer_free(w);
}

/* Files that are not safetensors at all (text, an ONNX protobuf, zeros):
 * their first 8 bytes read as an absurd or a plausible header length, but no
 * '{' follows. The message says what the file is not, not that a header
 * length "exceeds the limit"; through a path too (the loader reads only the
 * file's first bytes then). A damaged model file keeps its detailed message
 * (test_header_length). */
START_TEST(test_not_a_model_file) {
    static const char text[] = "hello world, this is a text file\nsecond line\n";
    /* ONNX: field 1 (ir_version, varint 8), field 2 (producer_name "pytorch") */
    static const unsigned char onnx[] = {0x08, 0x08, 0x12, 0x07, 'p', 'y', 't', 'o', 'r', 'c',
                                         'h', 0x1a, 0x03, '2', '.', '0', 0x3a, 0x00};
    unsigned char plausible[64] = {0};
    plausible[0] = 16; /* a header length that fits the file, then no '{' */
    memcpy(plausible + 8, "<html>  not json", 16);
    static const unsigned char zeros[9] = {0};
    static const unsigned char eight[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    const struct {
        const void *buf;
        size_t len;
    } cases[] = {{text, sizeof text - 1}, {onnx, sizeof onnx}, {plausible, sizeof plausible},
                 {zeros, sizeof zeros}, {eight, sizeof eight}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_load(cases[i].buf, cases[i].len, MM_E_FORMAT,
                    "not an mmaint model file (no safetensors header)");
        ck_assert_msg(strstr(mm_last_error_message(), "header length") == NULL, "case %zu: %s", i,
                      mm_last_error_message());
        char *path = mm_test_tmp_path(".mmf");
        spit(path, cases[i].buf, cases[i].len);
        mm_model *l = (mm_model *)(uintptr_t)1;
        MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_FORMAT);
        ck_assert(l == NULL);
        const char *msg = mm_last_error_message();
        ck_assert_msg(strncmp(msg, path, strlen(path)) == 0, "%s", msg);
        ck_assert_msg(strstr(msg, "not an mmaint model file (no safetensors header)") != NULL, "%s",
                      msg);
        unlink(path);
        free(path);
    }
}
END_TEST

START_TEST(test_hostile_huge_dense) {
    char *path = mm_test_tmp_path(".mmf");
    mm_model *l = (mm_model *)(uintptr_t)1;
    write_huge_dense(path, "layers.0.weight", MM_DTYPE_F32);
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_FORMAT);
    ck_assert(l == NULL);
    ck_assert_msg(strstr(mm_last_error_message(),
                         "tensor layers.0.weight: shape [1, 1], expected [16777216, 16777216]"),
                  "%s", mm_last_error_message());
    write_huge_dense(path, NULL, MM_DTYPE_F32);
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_FORMAT);
    ck_assert_msg(strstr(mm_last_error_message(), "tensor layers.0.weight is missing"), "%s",
                  mm_last_error_message());
    write_huge_dense(path, "layers.0.weight", MM_DTYPE_I8);
    MM_ASSERT_STATUS(mm_model_load(&l, path), MM_E_UNSUPPORTED);
    ck_assert_msg(strstr(mm_last_error_message(), "layers.0.weight: dtype I8"), "%s",
                  mm_last_error_message());
    unlink(path);
    free(path);
}
END_TEST

static Suite *mmfile_suite(void) {
    Suite *s = suite_create("mmfile");
    TCase *tc = tcase_create("round_trip");
    tcase_add_loop_test(tc, test_round_trip, 0, (int)N_CFGS);
    tcase_add_test(tc, test_empty_model_round_trip);
    tcase_add_test(tc, test_valid_safetensors);
    tcase_add_test(tc, test_rewritten_layout_loads);
    tcase_add_test(tc, test_lineage);
    tcase_add_test(tc, test_lineage_loaded_verbatim);
    tcase_add_test(tc, test_container_api);
    tcase_add_test(tc, test_save_refuses_nan);
    suite_add_tcase(s, tc);

    tc = tcase_create("kinds");
    tcase_add_test(tc, test_dense_bytes_unchanged);
    tcase_add_test(tc, test_dtype_round_trip);
    tcase_add_test(tc, test_unknown_kind);
    tcase_add_test(tc, test_loader_error_prefix);
    tcase_add_test(tc, test_hostile_huge_dense);
    suite_add_tcase(s, tc);

    tc = tcase_create("corruption");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_header_flips);
    tcase_add_test(tc, test_data_flips);
    tcase_add_test(tc, test_header_length);
    tcase_add_test(tc, test_not_a_model_file);
    tcase_add_test(tc, test_hostile_tensors);
    tcase_add_test(tc, test_tensor_set);
    tcase_add_test(tc, test_optimizer_state_values);
    tcase_add_test(tc, test_metadata);
    tcase_add_test(tc, test_raw_headers);
    tcase_add_test(tc, test_fuzz);
    suite_add_tcase(s, tc);

    tc = tcase_create("atomic");
    tcase_add_test(tc, test_atomic_save_ok);
    tcase_add_test(tc, test_atomic_save_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(mmfile_suite()); }
