/* Cross-platform check (doc/PORTABILITY.md, scripts/cross-test.sh).
 *
 *   cross_check write  DIR FASHION_DIR   build every case, save DIR/<case>.mmf
 *                                        and its outputs DIR/<case>.out
 *   cross_check verify DIR FASHION_DIR   on another platform: load each file,
 *                                        compare outputs bit for bit; build
 *                                        each case again here and compare
 *   cross_check roundtrip DIR FASHION_DIR  write, then verify (one platform)
 *
 * A case is a model made the way users make them (train a few Adam steps
 * on Fashion-MNIST from a fixed seed, then prune or quantize it), saved
 * with mm_model_save or mm_optimizer_save (one case: mm_safetensors_export). Outputs are the forward pass
 * on 200 real test images, stored as little-endian float bit patterns, and
 * compared as bit patterns: "identical" means every bit.
 *
 * verify reports two checks per case:
 *   resave     the file written elsewhere, loaded and saved again here, is
 *              the same file byte for byte (little-endian on every host);
 *   load       the file written elsewhere, loaded here, gives the writer's
 *              outputs (resume cases: after 5 more optimizer steps here);
 *   reproduce  building the case here from the same seed and data (training,
 *              pruning, calibration, quantization) gives the same outputs
 *              outputs;
 *   params     ... and the same float parameters (layers that have them).
 * All must be bit-identical; any difference fails (exit 1), with the
 * number of differing values and the largest distance in units in the last
 * place. FASHION_DIR missing: exit 77 (skip).
 *
 * Every platform uses the portable kernels (reference backend; portable
 * sparse, quantized-layer and optimizer loops): the x86 SIMD kernels sum in
 * other orders. The MM_* variables are set unless already set, so a run can
 * compare them deliberately. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mm/mm.h>

#define HIDDEN1 32
#define HIDDEN2 16
#define CLASSES 10
#define TRAIN_N 320 /* first test images: training batches and calibration */
#define BATCH 32
#define STEPS 10
#define RESUME_STEPS 5
#define EVAL_OFF 1000 /* outputs are compared on images 1000..1199 */
#define EVAL_N 200

typedef struct data {
    const float *x;       /* test images, 784 floats each, in [0, 1] */
    const int32_t *y;
    size_t dim, n;
} data;

typedef enum kind {
    K_DENSE,    /* trained dense model, activation act on the hidden layers */
    K_PROBA,    /* dense relu; outputs are mm_model_predict_proba (softmax) */
    K_RESUME,   /* optimizer file (state included); outputs after more steps */
    K_PRUNE,    /* pruned with criterion, finalized or not */
    K_QUANT,    /* quantized with scheme */
    K_EXPORT,   /* dense model written as plain safetensors (mm_safetensors_export) */
    K_PRUNE_QUANT, /* pruned 80% (magnitude, sparse format), then quantized with scheme */
} kind;

typedef struct test_case {
    const char *name;
    kind kind;
    mm_activation act;
    int param;      /* K_RESUME: optimizer kind; K_PRUNE: criterion; K_QUANT: scheme */
    double amount;  /* K_PRUNE: sparsity; K_QUANT: 1 = per tensor asymmetric with the
                       MSE observer, 2 = per channel with the entropy observer */
    int format;     /* K_PRUNE: -1 = not finalized, else mm_prune_sparse_format;
                       K_QUANT: keep master */
} test_case;

static const test_case cases[] = {
    {"dense_identity", K_DENSE, MM_ACT_IDENTITY, 0, 0, 0},
    {"dense_relu", K_DENSE, MM_ACT_RELU, 0, 0, 0},
    {"dense_leaky_relu", K_DENSE, MM_ACT_LEAKY_RELU, 0, 0, 0},
    {"dense_tanh", K_DENSE, MM_ACT_TANH, 0, 0, 0},
    {"dense_sigmoid", K_DENSE, MM_ACT_SIGMOID, 0, 0, 0},
    {"proba_relu", K_PROBA, MM_ACT_RELU, 0, 0, 0},
    {"resume_adam", K_RESUME, MM_ACT_RELU, MM_OPTIM_ADAM, 0, 0},
    {"resume_sgd_momentum", K_RESUME, MM_ACT_TANH, MM_OPTIM_SGD, 0, 0},
    {"pruned_masked", K_PRUNE, MM_ACT_RELU, MM_PRUNE_MAGNITUDE_GLOBAL, 0.7, -1},
    {"pruned_sparse", K_PRUNE, MM_ACT_RELU, MM_PRUNE_MAGNITUDE, 0.8, MM_PRUNE_FORMAT_SPARSE},
    {"pruned_neurons", K_PRUNE, MM_ACT_LEAKY_RELU, MM_PRUNE_NEURON_L2, 0.5,
     MM_PRUNE_FORMAT_AUTO},
    {"int8_static", K_QUANT, MM_ACT_RELU, MM_QUANT_INT8_STATIC, 0, 0},
    {"int8_static_asym_mse", K_QUANT, MM_ACT_RELU, MM_QUANT_INT8_STATIC, 1, 0},
    {"int8_static_entropy", K_QUANT, MM_ACT_LEAKY_RELU, MM_QUANT_INT8_STATIC, 2, 0},
    {"int8_dynamic", K_QUANT, MM_ACT_RELU, MM_QUANT_INT8_DYNAMIC, 0, 1},
    {"int8_weight_only", K_QUANT, MM_ACT_SIGMOID, MM_QUANT_INT8_WEIGHT_ONLY, 0, 0},
    {"fp16", K_QUANT, MM_ACT_RELU, MM_QUANT_FP16, 0, 0},
    {"bf16", K_QUANT, MM_ACT_TANH, MM_QUANT_BF16, 0, 1},
    {"safetensors_export", K_EXPORT, MM_ACT_SIGMOID, 0, 0, 0},
    {"sp_int8_static", K_PRUNE_QUANT, MM_ACT_RELU, MM_QUANT_INT8_STATIC, 0, 0},
    {"sp_int8_dyn_master", K_PRUNE_QUANT, MM_ACT_RELU, MM_QUANT_INT8_DYNAMIC, 0, 1},
    {"sp_int8_weight_only", K_PRUNE_QUANT, MM_ACT_TANH, MM_QUANT_INT8_WEIGHT_ONLY, 0, 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

static int fail(const char *what, mm_status st) {
    fprintf(stderr, "cross_check: %s: %s (%s)\n", what, mm_status_name(st),
            mm_last_error_message());
    return -1;
}
#define TRY(what, call)                                   \
    do {                                                  \
        mm_status st_ = (call);                           \
        if (st_ != MM_OK) return fail((what), st_);       \
    } while (0)

/* ---- little-endian float bit patterns --------------------------------- */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static int write_bits(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cross_check: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f2u(v[i]);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                              (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        fwrite(b, 1, 4, f);
    }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "cross_check: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* Reads exactly n values; anything else is an error. */
static int read_bits(const char *path, float *v, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cross_check: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) {
            rc = -1;
            break;
        }
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        memcpy(&v[i], &u, sizeof u);
    }
    if (rc == 0 && fgetc(f) != EOF) rc = -1;
    fclose(f);
    if (rc) fprintf(stderr, "cross_check: %s does not hold exactly %zu floats\n", path, n);
    return rc;
}

/* Distance in units in the last place (floats mapped to a monotonic
 * integer line); NaN against non-NaN counts as the maximum. */
static uint64_t ulp_distance(float a, float b) {
    if ((a != a) != (b != b)) return UINT32_MAX;
    int64_t ia = (int32_t)f2u(a), ib = (int32_t)f2u(b);
    if (ia < 0) ia = (int64_t)INT32_MIN - ia;
    if (ib < 0) ib = (int64_t)INT32_MIN - ib;
    return (uint64_t)(ia > ib ? ia - ib : ib - ia);
}

/* Bitwise comparison; prints one line, returns the number of differences. */
static size_t compare(const char *name, const char *check, const float *got,
                      const float *want, size_t n) {
    size_t diff = 0, first = 0;
    uint64_t max_ulp = 0;
    for (size_t i = 0; i < n; i++) {
        if (f2u(got[i]) == f2u(want[i])) continue;
        if (diff++ == 0) first = i;
        uint64_t d = ulp_distance(got[i], want[i]);
        if (d > max_ulp) max_ulp = d;
    }
    if (diff == 0)
        printf("  %-22s %-9s identical (%zu values)\n", name, check, n);
    else
        printf("  %-22s %-9s DIFFERENT: %zu of %zu values, max %" PRIu64
               " ulp (first at %zu: %.9g here, %.9g there)\n",
               name, check, diff, n, max_ulp, first, (double)got[first], (double)want[first]);
    return diff;
}

/* ---- building the cases ------------------------------------------------ */

static int train_steps(mm_optimizer *o, const data *d, size_t first_batch, size_t nbatches) {
    for (size_t b = first_batch; b < first_batch + nbatches; b++) {
        size_t off = (b * BATCH) % TRAIN_N;
        double loss;
        TRY("optimizer step",
            mm_optimizer_step(o, d->x + off * d->dim, d->y + off, NULL, BATCH, &loss));
    }
    return 0;
}

/* The trained model every case starts from: 784-32-16-10, seed 42. */
static int base_model(const test_case *c, const data *d, int optim, mm_model **mout,
                      mm_optimizer **oout) {
    mm_model *m = NULL;
    mm_optimizer *o = NULL;
    TRY("model create", mm_model_create(&m, d->dim, 42));
    int rc = -1;
    mm_status st;
    if ((st = mm_model_add_dense(m, HIDDEN1, c->act)) != MM_OK ||
        (st = mm_model_add_dense(m, HIDDEN2, c->act)) != MM_OK ||
        (st = mm_model_add_dense(m, CLASSES, MM_ACT_IDENTITY)) != MM_OK ||
        (st = mm_optimizer_create(&o, m, (mm_optim_kind)optim)) != MM_OK) {
        fail("building the model", st);
        goto out;
    }
    /* resume cases also run a learning-rate schedule: cosine (SGD) and
     * exponential (Adam), through the resumed step counter */
    if (optim == MM_OPTIM_SGD &&
        ((st = mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 0.05)) != MM_OK ||
         (st = mm_optimizer_set(o, MM_OPT_MOMENTUM, 0.9)) != MM_OK ||
         (st = mm_optimizer_set(o, MM_OPT_SCHEDULE, MM_SCHEDULE_COSINE)) != MM_OK ||
         (st = mm_optimizer_set(o, MM_OPT_WARMUP_STEPS, 2)) != MM_OK ||
         (st = mm_optimizer_set(o, MM_OPT_TOTAL_STEPS, STEPS + RESUME_STEPS + 3)) != MM_OK)) {
        fail("optimizer settings", st);
        goto out;
    }
    if (optim == MM_OPTIM_ADAM && c->kind == K_RESUME &&
        ((st = mm_optimizer_set(o, MM_OPT_SCHEDULE, MM_SCHEDULE_EXPONENTIAL)) != MM_OK ||
         (st = mm_optimizer_set(o, MM_OPT_GAMMA, 0.93)) != MM_OK)) {
        fail("optimizer settings", st);
        goto out;
    }
    if (train_steps(o, d, 0, STEPS) != 0) goto out;
    *mout = m;
    m = NULL;
    if (oout) {
        *oout = o;
        o = NULL;
    }
    rc = 0;
out:
    mm_optimizer_free(o);
    mm_model_free(m);
    return rc;
}

static int prune(const test_case *c, mm_model *m) {
    mm_pruner *p;
    TRY("pruner create", mm_pruner_create(&p, (mm_prune_criterion)c->param));
    mm_status st = mm_pruner_set(p, MM_PRUNE_SPARSITY, c->amount);
    if (st == MM_OK && c->format >= 0)
        st = mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, c->format);
    if (st == MM_OK) st = mm_pruner_apply(p, m);
    if (st == MM_OK && c->format >= 0) st = mm_pruner_finalize(p, m, NULL);
    mm_pruner_free(p);
    return st == MM_OK ? 0 : fail("pruning", st);
}

static int quantize(const test_case *c, const data *d, mm_model *m) {
    mm_quantizer *q;
    TRY("quantizer create", mm_quantizer_create(&q, (mm_quant_scheme)c->param));
    bool int8 = c->param != MM_QUANT_FP16 && c->param != MM_QUANT_BF16;
    mm_status st = mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, c->format);
    if (st == MM_OK && int8 && c->amount == 1)
        st = mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 0);
    if (st == MM_OK && int8 && c->amount == 1)
        st = mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, 0);
    if (st == MM_OK && int8 && c->amount == 1)
        st = mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, 1);
    if (st == MM_OK && c->param == MM_QUANT_INT8_STATIC && c->amount != 0)
        st = mm_quantizer_set(q, MM_QUANT_OBSERVER,
                              c->amount == 1 ? MM_OBSERVER_MSE : MM_OBSERVER_ENTROPY);
    if (st == MM_OK && c->param == MM_QUANT_INT8_STATIC)
        st = mm_quantizer_calibrate(q, m, d->x, TRAIN_N);
    if (st == MM_OK) st = mm_quantizer_apply(q, m);
    mm_quantizer_free(q);
    return st == MM_OK ? 0 : fail("quantizing", st);
}

/* The outputs compared for a case: forward (or softmax) on the eval images. */
static int outputs(const test_case *c, const data *d, const mm_model *m, float *out) {
    const float *x = d->x + (size_t)EVAL_OFF * d->dim;
    if (c->kind == K_PROBA)
        TRY("predict_proba", mm_model_predict_proba(m, x, EVAL_N, out));
    else
        TRY("forward", mm_model_forward(m, x, EVAL_N, out));
    return 0;
}

/* The float parameters of the model, layer after layer (weights then
 * biases, as mm_model_get_weights gives them), into *buf. Layers without
 * dense float weights (sparse, int8 or fp16 without master) are left out
 * and counted in *skipped: their outputs and re-saved file cover them. */
static int params(const mm_model *m, float **buf, size_t *len, size_t *skipped) {
    size_t total = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        TRY("layer info", mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        total += in * out + out;
    }
    float *p = malloc((total ? total : 1) * sizeof *p);
    if (!p) return fail("params", MM_E_OUT_OF_MEMORY);
    size_t at = 0;
    *skipped = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        mm_model_layer_info(m, l, NULL, &in, &out, NULL);
        if (mm_model_get_weights(m, l, p + at, in * out, p + at + in * out, out) == MM_OK)
            at += in * out + out;
        else
            ++*skipped;
    }
    *buf = p;
    *len = at;
    return 0;
}

/* Whole-file comparison: 0 if identical, 1 if not, -1 on an error. */
static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int rc = -1;
    if (fa && fb) {
        int ca, cb;
        do {
            ca = fgetc(fa);
            cb = fgetc(fb);
        } while (ca == cb && ca != EOF);
        rc = ca == cb ? 0 : 1;
    } else {
        fprintf(stderr, "cross_check: cannot open %s or %s\n", a, b);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return rc;
}

/* Build case c here; on success *m is the model whose file is saved (and,
 * for resume cases, *o its optimizer, before the extra steps). */
static int build(const test_case *c, const data *d, mm_model **m, mm_optimizer **o) {
    *m = NULL;
    *o = NULL;
    int optim = c->kind == K_RESUME ? c->param : MM_OPTIM_ADAM;
    if (base_model(c, d, optim, m, c->kind == K_RESUME ? o : NULL) != 0) return -1;
    int rc = 0;
    if (c->kind == K_PRUNE) rc = prune(c, *m);
    if (c->kind == K_QUANT) rc = quantize(c, d, *m);
    if (c->kind == K_PRUNE_QUANT) {
        const test_case p = {c->name, K_PRUNE, c->act, MM_PRUNE_MAGNITUDE, 0.8,
                             MM_PRUNE_FORMAT_SPARSE};
        rc = prune(&p, *m);
        if (rc == 0) rc = quantize(c, d, *m);
    }
    if (rc) {
        mm_model_free(*m);
        *m = NULL;
    }
    return rc;
}

static void case_path(char *buf, size_t cap, const char *dir, const char *name,
                      const char *ext) {
    snprintf(buf, cap, "%s/%s%s", dir, name, ext);
}

/* ---- write / verify ---------------------------------------------------- */

static int write_case(const test_case *c, const data *d, const char *dir) {
    mm_model *m;
    mm_optimizer *o;
    if (build(c, d, &m, &o) != 0) return -1;
    char path[4096];
    case_path(path, sizeof path, dir, c->name, ".mmf");
    int rc = -1;
    float *out = malloc((size_t)EVAL_N * CLASSES * sizeof *out), *p = NULL;
    size_t plen, skipped;
    mm_status st = o                     ? mm_optimizer_save(o, path)
                   : c->kind == K_EXPORT ? mm_safetensors_export(m, path, NULL)
                                         : mm_model_save(m, path);
    if (st != MM_OK) {
        fail(path, st);
        goto out;
    }
    if (o && train_steps(o, d, STEPS, RESUME_STEPS) != 0) goto out;
    if (!out || outputs(c, d, m, out) != 0 || params(m, &p, &plen, &skipped) != 0) goto out;
    case_path(path, sizeof path, dir, c->name, ".out");
    if (write_bits(path, out, (size_t)EVAL_N * CLASSES) != 0) goto out;
    case_path(path, sizeof path, dir, c->name, ".params");
    if (write_bits(path, p, plen) != 0) goto out;
    printf("  %-22s written (%zu float parameters", c->name, plen);
    if (skipped) printf("; %zu layers without float weights", skipped);
    printf(")\n");
    rc = 0;
out:
    free(out);
    free(p);
    mm_optimizer_free(o);
    mm_model_free(m);
    return rc;
}

/* Returns the number of failed checks, or -1 on an error. */
static int verify_case(const test_case *c, const data *d, const char *dir) {
    const size_t nout = (size_t)EVAL_N * CLASSES;
    float *want = malloc(nout * sizeof *want), *got = malloc(nout * sizeof *got);
    float *p = NULL, *wantp = NULL;
    size_t plen, skipped;
    mm_model *m = NULL;
    mm_optimizer *o = NULL;
    int rc = -1, failed = 0;
    char path[4096];
    case_path(path, sizeof path, dir, c->name, ".out");
    if (!want || !got || read_bits(path, want, nout) != 0) goto out;

    /* load: the file from the other platform */
    case_path(path, sizeof path, dir, c->name, ".mmf");
    mm_status st = c->kind == K_EXPORT ? mm_safetensors_import(&m, path, NULL, NULL, 0)
                                       : mm_model_load(&m, path);
    if (st == MM_OK && c->kind == K_RESUME) st = mm_optimizer_load(&o, m, path);
    if (st != MM_OK) {
        fail(path, st);
        goto out;
    }
    /* resave: written here, the file is the same, byte for byte (the
     * lineage is restored verbatim, so even its time stamps agree; import
     * adds an event, so exported files are compared through outputs) */
    char again[4200];
    if (c->kind == K_EXPORT) goto compare_outputs;
    snprintf(again, sizeof again, "%s.resaved", path);
    st = o ? mm_optimizer_save(o, again) : mm_model_save(m, again);
    if (st != MM_OK) {
        fail(again, st);
        goto out;
    }
    int same = same_file(path, again);
    remove(again);
    if (same < 0) goto out;
    printf("  %-22s %-9s %s\n", c->name, "resave", same ? "DIFFERENT bytes" : "identical bytes");
    failed += same;
compare_outputs:
    if (o && train_steps(o, d, STEPS, RESUME_STEPS) != 0) goto out;
    if (outputs(c, d, m, got) != 0) goto out;
    failed += compare(c->name, "load", got, want, nout) != 0;
    mm_optimizer_free(o);
    mm_model_free(m);
    o = NULL;
    m = NULL;

    /* reproduce: the same case built here */
    if (build(c, d, &m, &o) != 0) goto out;
    if (o && train_steps(o, d, STEPS, RESUME_STEPS) != 0) goto out;
    if (outputs(c, d, m, got) != 0 || params(m, &p, &plen, &skipped) != 0) goto out;
    failed += compare(c->name, "reproduce", got, want, nout) != 0;
    wantp = malloc((plen ? plen : 1) * sizeof *wantp);
    case_path(path, sizeof path, dir, c->name, ".params");
    if (!wantp || read_bits(path, wantp, plen) != 0) goto out;
    failed += compare(c->name, "params", p, wantp, plen) != 0;
    rc = failed;
out:
    free(want);
    free(got);
    free(p);
    free(wantp);
    mm_optimizer_free(o);
    mm_model_free(m);
    return rc;
}

static void describe_platform(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    printf("platform: %s-endian, %zu-bit pointers, FLT_EVAL_METHOD %d, mmaint %s, backend %s\n",
           first ? "little" : "big", sizeof(void *) * 8, (int)__FLT_EVAL_METHOD__,
           mm_version_string(), mm_backend_name());
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "verify") != 0 &&
                      strcmp(argv[1], "roundtrip") != 0)) {
        fprintf(stderr, "usage: %s write|verify|roundtrip DIR FASHION_DIR\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2], *fashion = argv[3];
    /* Portable loops everywhere (read by the library on first use). */
    setenv("MM_BACKEND", "reference", 0);
    setenv("MM_SPARSE_SIMD", "portable", 0);
    setenv("MM_QL_SIMD", "0", 0);
    setenv("MM_OPT_SIMD", "0", 0);
    setenv("MM_INT8_ISA", "portable", 0);

    char img[4096], lab[4096];
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", fashion);
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", fashion);
    FILE *probe = fopen(img, "rb");
    if (!probe) {
        printf("SKIP: Fashion-MNIST not found at %s\n", img);
        return 77;
    }
    fclose(probe);
    mm_dataset *ds;
    mm_status st = mm_dataset_load_idx(&ds, img, lab);
    if (st != MM_OK) return fail(img, st) ? 1 : 1;
    data d = {mm_dataset_features(ds), mm_dataset_labels(ds), mm_dataset_dim(ds),
              mm_dataset_size(ds)};
    describe_platform();
    int status = 0;
    char path[4096];
    case_path(path, sizeof path, dir, "inputs", ".f32");
    const size_t nin = (size_t)(EVAL_OFF + EVAL_N) * d.dim;

    if (strcmp(mode, "verify") != 0) {
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "cross_check: cannot create %s: %s\n", dir, strerror(errno));
            status = 1;
            goto done;
        }
        /* the decoded images, to check the IDX reader on the other side */
        if (write_bits(path, d.x, nin) != 0) {
            status = 1;
            goto done;
        }
        printf("writing %zu cases to %s\n", NCASES, dir);
        for (size_t i = 0; i < NCASES; i++)
            if (write_case(&cases[i], &d, dir) != 0) status = 1;
        if (status || strcmp(mode, "write") == 0) goto done;
    }

    printf("verifying %s\n", dir);
    float *in = malloc(nin * sizeof *in);
    if (!in || read_bits(path, in, nin) != 0) {
        free(in);
        status = 1;
        goto done;
    }
    if (compare("fashion-mnist images", "decode", d.x, in, nin) != 0) status = 1;
    free(in);
    size_t failed = 0;
    for (size_t i = 0; i < NCASES; i++) {
        int r = verify_case(&cases[i], &d, dir);
        if (r < 0) status = 1;
        else failed += (size_t)r;
    }
    if (failed) status = 1;
    printf("%s: %zu cases, %zu checks different%s\n", status ? "FAIL" : "OK", NCASES, failed,
           status && !failed ? " (errors above)" : "");
done:
    mm_dataset_free(ds);
    return status;
}
