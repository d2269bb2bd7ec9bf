/* Writes the seed corpora of the harnesses (tests/fuzz/README.md):
 *
 *   make_corpus OUT_DIR TEST_DATA_DIR
 *
 * creates OUT_DIR/{mmfile,safetensors,onnx,idx,csv}/ with small files
 * made with the library itself (every layer kind, optimizer state, each
 * export) and hand-written ones (PyTorch-style safetensors in every dtype,
 * IDX and CSV variants), plus the real files of tests/data that are small
 * enough, each with the harness's input prefix. The committed corpus is
 * this output after fuzzing and `-merge=1`; rerun it only to reseed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static const char *out_root, *data_dir;
static char tmp_dir[] = "/tmp/mmaint-corpus-XXXXXX";

#define CHECK(expr)                                                                         \
    do {                                                                                    \
        mm_status st_ = (expr);                                                             \
        if (st_ != MM_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,                   \
                    mm_last_error_message());                                               \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* printf into one of 16 rotating buffers (valid for the next 15 calls). */
static char *path_of(const char *fmt, ...) {
    static char buf[16][1024];
    static int k;
    char *p = buf[k++ & 15];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, 1024, fmt, ap);
    va_end(ap);
    return p;
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = b ? fread(b, 1, (size_t)len, fp) : 0;
    fclose(fp);
    return b;
}

/* OUT_DIR/harness/name: prefix bytes, then the body. */
static void put(const char *harness, const char *name, const void *prefix, size_t plen,
                const void *body, size_t blen) {
    char *dir = path_of("%s/%s", out_root, harness);
    mkdir(dir, 0777);
    char *path = path_of("%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(prefix, 1, plen, fp) != plen || fwrite(body, 1, blen, fp) != blen ||
        fclose(fp) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* A file written by the library (tmp/name) into the corpus. */
static void put_written(const char *harness, const char *name, const void *prefix, size_t plen,
                        const char *written) {
    size_t n;
    unsigned char *b = read_file(written, &n);
    if (!b) {
        fprintf(stderr, "cannot read %s\n", written);
        exit(1);
    }
    put(harness, name, prefix, plen, b, n);
    free(b);
}

/* safetensors harness prefix: flags, arch, NUL, names, NUL. */
static size_t st_prefix(unsigned char *p, unsigned flags, const char *arch, const char *names) {
    size_t k = 0;
    p[k++] = (unsigned char)flags;
    size_t a = strlen(arch), b = strlen(names);
    memcpy(p + k, arch, a + 1);
    k += a + 1;
    memcpy(p + k, names, b + 1);
    return k + b + 1;
}

static void put_st(const char *name, unsigned flags, const char *arch, const char *names,
                   const void *body, size_t n) {
    unsigned char pre[600];
    size_t k = st_prefix(pre, flags, arch, names);
    put("safetensors", name, pre, k, body, n);
}

static void put_st_written(const char *name, unsigned flags, const char *arch, const char *names,
                           const char *written) {
    unsigned char pre[600];
    size_t k = st_prefix(pre, flags, arch, names);
    put_written("safetensors", name, pre, k, written);
}

/* ---- models ---- */

static float calib[16 * 6];

static mm_model *spec_model(const char *spec, uint64_t seed) {
    mm_model *m;
    CHECK(mm_model_create_from_spec(&m, spec, seed));
    return m;
}

static void quantize(mm_model *m, mm_quant_scheme scheme, int per_channel, int keep_master) {
    mm_quantizer *q;
    CHECK(mm_quantizer_create(&q, scheme));
    if (scheme != MM_QUANT_FP16 && scheme != MM_QUANT_BF16) {
        CHECK(mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, per_channel));
        CHECK(mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, per_channel));
    }
    CHECK(mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, keep_master));
    if (scheme == MM_QUANT_INT8_STATIC) CHECK(mm_quantizer_calibrate(q, m, calib, 16));
    CHECK(mm_quantizer_apply(q, m));
    mm_quantizer_free(q);
}

static void prune(mm_model *m, mm_prune_sparse_format format, int finalize) {
    mm_pruner *p;
    CHECK(mm_pruner_create(&p, MM_PRUNE_MAGNITUDE));
    CHECK(mm_pruner_set(p, MM_PRUNE_SPARSITY, 0.6));
    CHECK(mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, format));
    CHECK(mm_pruner_apply(p, m));
    if (finalize) CHECK(mm_pruner_finalize(p, m, NULL));
    mm_pruner_free(p);
}

typedef struct named_model {
    const char *name;
    mm_model *m;
} named_model;

static size_t make_models(named_model *out) {
    size_t n = 0;
    out[n++] = (named_model){"dense_relu", spec_model("6-8-3:relu", 1)};
    out[n++] = (named_model){"tanh_mse", spec_model("6-5-2:tanh,xavier,mse", 2)};
    out[n++] = (named_model){"sigmoid_deep", spec_model("6-4-4-3:sigmoid", 3)};
    mm_model *lk = spec_model("6-7-3:leaky_relu", 4);
    CHECK(mm_model_set_leaky_slope(lk, 0.125f));
    out[n++] = (named_model){"leaky", lk};
    mm_model *fr = spec_model("6-8-3:relu", 5);
    CHECK(mm_model_set_trainable(fr, 0, 0));
    out[n++] = (named_model){"frozen", fr};
    mm_model *mk = spec_model("6-8-3:relu", 6);
    prune(mk, MM_PRUNE_FORMAT_DENSE, 0);
    out[n++] = (named_model){"masked", mk};
    mm_model *sp = spec_model("6-8-3:relu", 7);
    prune(sp, MM_PRUNE_FORMAT_SPARSE, 1);
    out[n++] = (named_model){"sparse", sp};
    mm_model *qs = spec_model("6-8-3:relu", 8);
    quantize(qs, MM_QUANT_INT8_STATIC, 1, 1);
    out[n++] = (named_model){"int8_static", qs};
    mm_model *qt = spec_model("6-8-3:relu", 9);
    quantize(qt, MM_QUANT_INT8_STATIC, 0, 0);
    out[n++] = (named_model){"int8_static_tensor", qt};
    mm_model *qd = spec_model("6-8-3:relu", 10);
    quantize(qd, MM_QUANT_INT8_DYNAMIC, 1, 0);
    out[n++] = (named_model){"int8_dynamic", qd};
    mm_model *qw = spec_model("6-8-3:relu", 11);
    quantize(qw, MM_QUANT_INT8_WEIGHT_ONLY, 1, 0);
    out[n++] = (named_model){"int8_weight_only", qw};
    mm_model *si = spec_model("6-8-3:relu", 14);
    prune(si, MM_PRUNE_FORMAT_SPARSE, 1);
    quantize(si, MM_QUANT_INT8_STATIC, 1, 0);
    out[n++] = (named_model){"sparse_int8", si};
    mm_model *h = spec_model("6-8-3:relu", 12);
    quantize(h, MM_QUANT_FP16, 1, 1);
    out[n++] = (named_model){"fp16", h};
    mm_model *bf = spec_model("6-8-3:relu", 13);
    quantize(bf, MM_QUANT_BF16, 1, 0);
    out[n++] = (named_model){"bf16", bf};
    return n;
}

enum { PREP_NONE, PREP_SPARSE, PREP_MASKED, PREP_FROZEN, PREP_INT8, PREP_FP16, PREP_SPARSE_INT8 };

static void optimizer_files(void) {
    static const struct {
        const char *name, *spec;
        mm_optim_kind kind;
        int prep;
    } cases[] = {
        {"sgd_momentum", "6-8-3:relu", MM_OPTIM_SGD, PREP_NONE},
        {"adam", "6-5-2:tanh,mse", MM_OPTIM_ADAM, PREP_NONE},
        {"adamw_sparse", "6-8-3:relu", MM_OPTIM_ADAMW, PREP_SPARSE},
        {"sgd_plain", "6-4-3:relu", MM_OPTIM_SGD, PREP_NONE},
        {"sgd_sparse", "6-8-3:relu", MM_OPTIM_SGD, PREP_SPARSE},
        {"adam_masked", "6-8-3:relu", MM_OPTIM_ADAM, PREP_MASKED},
        {"adam_frozen", "6-8-4-3:relu", MM_OPTIM_ADAM, PREP_FROZEN},
        {"adam_int8", "6-8-3:relu", MM_OPTIM_ADAM, PREP_INT8},
        {"sgd_fp16", "6-8-3:relu", MM_OPTIM_SGD, PREP_FP16},
        {"adam_sparse_int8", "6-8-3:relu", MM_OPTIM_ADAM, PREP_SPARSE_INT8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mm_model *m = spec_model(cases[i].spec, 20 + i);
        switch (cases[i].prep) {
        case PREP_SPARSE: prune(m, MM_PRUNE_FORMAT_SPARSE, 1); break;
        case PREP_MASKED: prune(m, MM_PRUNE_FORMAT_DENSE, 0); break;
        case PREP_FROZEN: CHECK(mm_model_set_trainable(m, 0, 0)); break;
        case PREP_INT8: quantize(m, MM_QUANT_INT8_STATIC, 1, 1); break;
        case PREP_FP16: quantize(m, MM_QUANT_FP16, 1, 1); break;
        case PREP_SPARSE_INT8:
            prune(m, MM_PRUNE_FORMAT_SPARSE, 1);
            quantize(m, MM_QUANT_INT8_DYNAMIC, 1, 1);
            break;
        }
        mm_optimizer *o = NULL;
        mm_status st = mm_optimizer_create(&o, m, cases[i].kind);
        if (st != MM_OK) { /* a kind that does not train is left out */
            fprintf(stderr, "make_corpus: no optimizer seed %s: %s\n", cases[i].name,
                    mm_last_error_message());
            mm_model_free(m);
            continue;
        }
        if (i == 0 || i == 4) CHECK(mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9));
        if (i == 1) CHECK(mm_optimizer_set_layer_lr_scale(o, 0, 0.5));
        float x[6] = {0.5f, -1, 0.25f, 2, -0.75f, 1};
        int32_t label = 1;
        float t[3] = {0.5f, -0.5f, 0};
        for (int k = 0; k < (i == 3 ? 0 : 3) && st == MM_OK; k++) {
            double loss;
            st = mm_model_loss(m) == MM_LOSS_MSE ? mm_optimizer_step(o, x, NULL, t, 1, &loss)
                                                 : mm_optimizer_step(o, x, &label, NULL, 1, &loss);
        }
        if (st == MM_OK) {
            char *p = path_of("%s/opt_%s.mmf", tmp_dir, cases[i].name);
            CHECK(mm_optimizer_save(o, p));
            put_written("mmfile", path_of("opt_%s.mmf", cases[i].name), "", 0, p);
            unlink(p);
        } else {
            fprintf(stderr, "make_corpus: no optimizer seed %s: %s\n", cases[i].name,
                    mm_last_error_message());
        }
        mm_optimizer_free(o);
        mm_model_free(m);
    }
}

/* ---- hand-written safetensors ---- */

typedef struct raw_tensor {
    const char *name, *dtype;
    size_t rows, cols; /* cols 0: 1-d */
    const void *data;
    size_t bytes;
} raw_tensor;

static unsigned char *raw_safetensors(const raw_tensor *t, size_t nt, const char *meta,
                                      size_t *n) {
    char header[4096];
    size_t hl = 0, off = 0, data = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{");
    if (meta) hl += (size_t)snprintf(header + hl, sizeof header - hl, "\"__metadata__\":%s,", meta);
    for (size_t i = 0; i < nt; i++) {
        char shape[64];
        if (t[i].cols)
            snprintf(shape, sizeof shape, "[%zu,%zu]", t[i].rows, t[i].cols);
        else
            snprintf(shape, sizeof shape, "[%zu]", t[i].rows);
        hl += (size_t)snprintf(header + hl, sizeof header - hl,
                               "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", t[i].name, t[i].dtype, shape, off, off + t[i].bytes);
        off += t[i].bytes;
    }
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "}");
    data = off;
    unsigned char *b = malloc(8 + hl + data);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    off = 8 + hl;
    for (size_t i = 0; i < nt; i++) {
        memcpy(b + off, t[i].data, t[i].bytes);
        off += t[i].bytes;
    }
    *n = 8 + hl + data;
    return b;
}

/* Little-endian encodings of small values in each float dtype. */
static void enc_f32(unsigned char *o, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) o[i] = (unsigned char)(u >> (8 * i));
}
static void enc_f64(unsigned char *o, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)(u >> (8 * i));
}
static void enc_bf16(unsigned char *o, float v) { /* exact for the values used */
    uint32_t u;
    memcpy(&u, &v, 4);
    o[0] = (unsigned char)(u >> 16);
    o[1] = (unsigned char)(u >> 24);
}
static void enc_f16(unsigned char *o, float v) { /* values k/8, |k| < 64: exact */
    uint16_t h = 0;
    if (v != 0) {
        uint32_t u;
        memcpy(&u, &v, 4);
        int e = (int)((u >> 23) & 0xff) - 127 + 15;
        h = (uint16_t)((u >> 16 & 0x8000) | (unsigned)e << 10 | (u >> 13 & 0x3ff));
    }
    o[0] = (unsigned char)h;
    o[1] = (unsigned char)(h >> 8);
}

/* A PyTorch nn.Sequential(Linear(3,4), ReLU, Linear(4,2)) state dict in `dtype`. */
static void torch_style(const char *name, const char *dtype, int inexact) {
    size_t es = strcmp(dtype, "F32") == 0 ? 4 : strcmp(dtype, "F64") == 0 ? 8 : 2;
    unsigned char w0[12 * 8], b0[4 * 8], w2[8 * 8], b2[2 * 8];
    unsigned char *bufs[4] = {w0, b0, w2, b2};
    size_t counts[4] = {12, 4, 8, 2};
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < counts[t]; i++) {
            float v = (float)((int)((i * 7 + (size_t)t * 3) % 17) - 8) / 8.0f;
            unsigned char *o = bufs[t] + i * es;
            if (es == 4) enc_f32(o, v);
            else if (es == 8) enc_f64(o, inexact ? (double)v + 1e-12 : (double)v);
            else if (strcmp(dtype, "F16") == 0) enc_f16(o, v);
            else enc_bf16(o, v);
        }
    raw_tensor ts[4] = {
        {"0.weight", dtype, 4, 3, w0, 12 * es}, {"0.bias", dtype, 4, 0, b0, 4 * es},
        {"2.weight", dtype, 2, 4, w2, 8 * es},  {"2.bias", dtype, 2, 0, b2, 2 * es},
    };
    size_t n;
    unsigned char *b = raw_safetensors(ts, 4, NULL, &n);
    put_st(name, inexact ? 2 : 0, "3-4-2:relu", "", b, n);
    free(b);
}

/* ---- IDX and CSV ---- */

static size_t idx_header(unsigned char *h, unsigned type, unsigned ndim, const uint32_t *dims) {
    h[0] = h[1] = 0;
    h[2] = (unsigned char)type;
    h[3] = (unsigned char)ndim;
    for (unsigned i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++) h[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    return 4 + 4 * ndim;
}

/* harness input: flags, images length (LE), images, labels */
static void put_idx(const char *name, unsigned flags, const unsigned char *im, size_t in,
                    const unsigned char *lb, size_t ln) {
    unsigned char *b = malloc(5 + in + ln);
    b[0] = (unsigned char)flags;
    for (int k = 0; k < 4; k++) b[1 + k] = (unsigned char)(in >> (8 * k));
    memcpy(b + 5, im, in);
    if (ln) memcpy(b + 5 + in, lb, ln);
    put("idx", name, "", 0, b, 5 + in + ln);
    free(b);
}

static void idx_files(void) {
    unsigned char im[256], lb[64];
    uint32_t d3[3] = {4, 3, 3}, d1[1] = {4};
    size_t h = idx_header(im, 0x08, 3, d3);
    for (int i = 0; i < 36; i++) im[h + i] = (unsigned char)(i * 37);
    size_t hl = idx_header(lb, 0x08, 1, d1);
    for (int i = 0; i < 4; i++) lb[hl + i] = (unsigned char)(i % 3);
    put_idx("u8_u8", 1, im, h + 36, lb, hl + 4);
    put_idx("u8_images_only", 0, im, h + 36, NULL, 0);
    put_idx("u8_u8_gz", 7, im, h + 36, lb, hl + 4);

    size_t zn, zl;
    unsigned char *z = fuzz_gzip(im, h + 36, &zn), *zlb = fuzz_gzip(lb, hl + 4, &zl);
    unsigned char both[512];
    memcpy(both, z, zn);
    memcpy(both + zn, zlb, zl);
    put_idx("u8_u8_pregz", 1, both, zn, both + zn, zl);
    free(z);
    free(zlb);

    uint32_t d2[2] = {3, 2}, d1b[1] = {3};
    unsigned char fi[64], li[64];
    size_t hf = idx_header(fi, 0x0D, 2, d2);
    for (int i = 0; i < 6; i++) {
        float v = (float)(i - 2) * 0.5f;
        uint32_t u;
        memcpy(&u, &v, 4);
        for (int k = 0; k < 4; k++) fi[hf + 4 * i + k] = (unsigned char)(u >> (24 - 8 * k));
    }
    size_t hli = idx_header(li, 0x0C, 1, d1b);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) li[hli + 4 * i + k] = (unsigned char)(k == 3 ? i * 2 : 0);
    put_idx("f32_i32", 1, fi, hf + 24, li, hli + 12);
    put_idx("f32_i32_gz_labels", 5, fi, hf + 24, li, hli + 12);
}

static void put_csv(const char *name, unsigned flags, const char *text) {
    unsigned char f = (unsigned char)flags;
    put("csv", name, &f, 1, text, strlen(text));
}

static void csv_files(void) {
    put_csv("header_label_first", 1, "label,a,b,c\n0,0.5,1,-2\n2,1e-3,2.5e2,3\n1,-0,.25,7\n");
    put_csv("plain_no_label", 0, "1,2,3\n4,5,6\n");
    put_csv("label_last_crlf", 2, "x, y ,label\r\n0.1,0.2,1\r\n 0.3 ,\t0.4,0\r\n");
    put_csv("bom_blank_end", 3, "\xEF\xBB\xBF" "1.5,3,2\n-1,4.0,0\n\n\n");
    put_csv("gzip_label_float", 5, "3.0,1,1\n1,2,2\n");
    put_csv("exponents", 0, "-1.5e+3,0x1p-2,1E-7\n1e38,-0.0,2\n");
    put_csv("not_finite", 0, "1,2,3\nINF,1,2\n");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUT_DIR TEST_DATA_DIR\n", argv[0]);
        return 2;
    }
    out_root = argv[1];
    data_dir = argv[2];
    mkdir(out_root, 0777);
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    for (size_t i = 0; i < sizeof calib / sizeof calib[0]; i++)
        calib[i] = (float)((int)(i * 11 % 23) - 11) / 8.0f;

    named_model models[32];
    size_t nm = make_models(models);
    for (size_t i = 0; i < nm; i++) {
        const char *name = models[i].name;
        mm_model *m = models[i].m;
        char *p = path_of("%s/%s.mmf", tmp_dir, name);
        CHECK(mm_model_save(m, p));
        put_written("mmfile", path_of("%s.mmf", name), "", 0, p);
        if (i == 0 || i == 6 || i == 7) /* an mmaint file through the import */
            put_st_written(path_of("mmf_%s", name), 0, "", "", p);
        unlink(p);

        p = path_of("%s/%s.safetensors", tmp_dir, name);
        CHECK(mm_safetensors_export(m, p, NULL));
        put_st_written(path_of("export_%s", name), (unsigned)i & 7, "", "", p);
        unlink(p);

        if (mm_onnx_available()) {
            p = path_of("%s/%s.onnx", tmp_dir, name);
            if (mm_onnx_export(m, p) == MM_OK) put_written("onnx", path_of("%s.onnx", name), "", 0, p);
            unlink(p);
        }
    }
    /* explicit names and arch */
    char *p = path_of("%s/seq.safetensors", tmp_dir);
    CHECK(mm_safetensors_export(models[0].m, p, "net.{seq}"));
    put_st_written("names_seq", 4, "6-8-3:relu", "net.{seq}", p);
    CHECK(mm_safetensors_export(models[1].m, p, "fc1,out"));
    put_st_written("names_list", 1, "", "fc1,out", p);
    unlink(p);
    for (size_t i = 0; i < nm; i++) mm_model_free(models[i].m);

    optimizer_files();

    torch_style("torch_f32", "F32", 0);
    torch_style("torch_f16", "F16", 0);
    torch_style("torch_bf16", "BF16", 0);
    torch_style("torch_f64", "F64", 0);
    torch_style("torch_f64_round", "F64", 1);
    size_t n;
    unsigned char *b = read_file(path_of("%s/torch_fashion_mlp.safetensors", data_dir), &n);
    if (b) put_st("torch_fashion_mlp", 0, "784-32-16-10:relu", "", b, n);
    free(b);
    b = read_file(path_of("%s/torch_fashion_mlp_ref.safetensors", data_dir), &n);
    if (b) put_st("torch_fashion_ref", 1, "", "", b, n);
    free(b);
    if (mm_onnx_available()) {
        b = read_file(path_of("%s/onnx_torch_matmul.onnx", data_dir), &n);
        if (b) put("onnx", "torch_matmul.onnx", "", 0, b, n);
        free(b);
    }

    idx_files();
    csv_files();
    rmdir(tmp_dir);
    printf("corpus written to %s\n", out_root);
    return 0;
}
