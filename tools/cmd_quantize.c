/* mmaint quantize — make a model smaller and faster with mm_quantizer, and
 * show what it cost: test accuracy, parameter bytes, file size and inference
 * speed before and after, and what became of every layer (the quantizer's
 * per-layer report: kind, quantized or kept in float, and why).
 *
 * Plain (mm_quantizer_apply) or accuracy-aware (--max-drop:
 * mm_quantizer_apply_with_tolerance returns the most sensitive layers to
 * float until the drop is met). int8-static calibrates its activation
 * ranges on training samples first. The result is saved without float
 * master weights unless --keep-master (the smallest file; with masters the
 * model can still learn online, at about 5x the int8 size). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    OPT_SCHEME = CLI_OPT_CMD_BASE,
    OPT_PER_TENSOR,
    OPT_PER_CHANNEL,
    OPT_ASYM_WEIGHTS,
    OPT_SYM_ACTS,
    OPT_OBSERVER,
    OPT_PERCENTILE,
    OPT_CAL_SAMPLES,
    OPT_MAX_DROP,
    OPT_RELATIVE,
    OPT_KEEP_MASTER,
    OPT_NO_MASTER,
    OPT_FLOAT_LAYER,
};

#define DEFAULT_CAL_SAMPLES 512
#define MAX_FLOAT_LAYERS 64

static void quantize_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"scheme", required_argument, OPT_SCHEME, "NAME",
         "int8-static (default: int8 weights and activations, activation ranges from "
         "calibration), int8-dynamic (activations quantized per batch at run time), "
         "int8-weight-only, fp16, bf16 (16-bit weight storage)"},
        {"per-tensor", no_argument, OPT_PER_TENSOR, NULL,
         "int8: one weight scale per layer (default: one per output channel)"},
        {"per-channel", no_argument, OPT_PER_CHANNEL, NULL, NULL}, /* the default, hidden */
        {"asymmetric-weights", no_argument, OPT_ASYM_WEIGHTS, NULL,
         "int8: weights with a zero point (default: symmetric)"},
        {"symmetric-activations", no_argument, OPT_SYM_ACTS, NULL,
         "int8-static: symmetric activation ranges (default: asymmetric, with a zero point)"},
        {"observer", required_argument, OPT_OBSERVER, "NAME",
         "int8-static calibration: minmax (default), moving-minmax, percentile, mse, entropy"},
        {"percentile", required_argument, OPT_PERCENTILE, "P",
         "--observer percentile: the percentile kept, in (50, 100] (default 99.99)"},
        {"calibration-samples", required_argument, OPT_CAL_SAMPLES, "N",
         "int8-static: training samples for calibration, spread evenly over the training "
         "data (default 512)"},
        {"max-drop", required_argument, OPT_MAX_DROP, "D",
         "accuracy-aware: tolerate a test-accuracy drop of D (0.003 = 0.3 points) and keep "
         "the most sensitive layers in float until it is met; measured on the validation "
         "data (--val-*, --val-split) if given, else on the test data"},
        {"relative", no_argument, OPT_RELATIVE, NULL,
         "--max-drop is a fraction of the float accuracy, not absolute"},
        {"keep-master", no_argument, OPT_KEEP_MASTER, NULL,
         "keep float master weights in the quantized layers (and the file) so that the model "
         "can still be updated (mmaint update); default: no master, the smallest file"},
        {"no-master", no_argument, OPT_NO_MASTER, NULL,
         "no float master weights (the default)"},
        {"float-layer", required_argument, OPT_FLOAT_LAYER, "I",
         "keep layer I (0-based) in float (repeatable)"},
    };
    cli_opts_init(o);
    cli_opts_add_out(o, "write the quantized model here (required; may equal MODEL)");
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_data(o,
                      CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_VAL) |
                          CLI_ROLE_BIT(CLI_ROLE_TEST),
                      CLI_ROLE_TEST);
    cli_opts_add_common(o, true);
}

void help_quantize(FILE *f) {
    cli_opts o;
    quantize_opts(&o);
    fprintf(f,
            "Usage: mmaint quantize MODEL --out FILE [--scheme NAME] [options]\n"
            "Quantize a model's dense layers to int8 (or fp16/bf16) layers with their own\n"
            "kernels. Prints test accuracy, parameter bytes, file size and inference\n"
            "samples/s (batch 1 and 256, 1 thread unless --threads) before and after, and\n"
            "for every layer its kind, whether it was quantized and why (or why not).\n\n"
            "With --max-drop the quantization is accuracy-aware: every layer is quantized,\n"
            "then the layer whose float version recovers most accuracy goes back to float,\n"
            "one at a time, until the drop is at most D.\n\n"
            "Float master weights: not kept by default, so the file reflects int8 (or\n"
            "16-bit) storage. A model saved without them is for inference: online updates\n"
            "need --keep-master (each update then re-quantizes the layer).\n\n"
            "Data: test data (--test-*, or --images/--labels/--csv) for accuracy and speed;\n"
            "training data (--train-*) for int8-static calibration, loaded only then;\n"
            "validation data (--val-*, or --val-split F of the training data) for\n"
            "--max-drop if given, else the test data.\n"
            "Default (no data file given, or --data-dir): Fashion-MNIST from\n%s.\n\n"
            "Options:\n",
            CLI_DEFAULT_FASHION_DIR);
    cli_opts_print_help(&o, f);
    fprintf(f, "\nExamples:\n"
               "  mmaint quantize model.mmf --out model-int8.mmf\n"
               "  mmaint quantize model.mmf --scheme int8-static --observer percentile \\\n"
               "      --percentile 99.99 --calibration-samples 512 --max-drop 0.003 \\\n"
               "      --out model-int8.mmf\n"
               "  mmaint quantize model.mmf --scheme bf16 --keep-master --out model-bf16.mmf\n");
}

/* ---- arguments ------------------------------------------------------------ */

typedef struct quantize_args {
    const char *model, *out;
    mm_quant_scheme scheme;
    bool per_tensor, per_channel_given, asym_weights, sym_acts;
    bool observer_given;
    mm_quant_observer observer;
    double percentile; /* NAN: default */
    size_t cal_samples;
    bool cal_given;
    double max_drop; /* NAN: plain apply */
    bool relative;
    bool keep_master;
    size_t float_layers[MAX_FLOAT_LAYERS];
    size_t n_float;
    cli_data_cfg data;
} quantize_args;

/* "int8-static" -> "int8_static" (the library's names use '_'). */
static void underscores(const char *text, char *name, size_t cap) {
    size_t len = strlen(text);
    if (len >= cap) len = cap - 1;
    for (size_t i = 0; i < len; i++) name[i] = text[i] == '-' ? '_' : text[i];
    name[len] = '\0';
}

static int parse_scheme(const cli *c, const char *text, mm_quant_scheme *out) {
    char name[64];
    underscores(text, name, sizeof name);
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (strcmp(name, "int8") == 0) snprintf(name, sizeof name, "int8_static");
    if (mm_quant_scheme_from_name(name, out) != MM_OK) {
        mm_clear_error();
        return cli_usage_error(c,
                               "--scheme: '%s' is not a quantization scheme (int8-static, "
                               "int8-dynamic, int8-weight-only, fp16, bf16)",
                               text);
    }
    return 0;
}

static int parse_observer(const cli *c, const char *text, mm_quant_observer *out) {
    char name[64];
    underscores(text, name, sizeof name);
    if (strcasecmp(name, "moving") == 0 || strcasecmp(name, "moving_average") == 0)
        snprintf(name, sizeof name, "moving_minmax");
    if (strcasecmp(name, "min_max") == 0) snprintf(name, sizeof name, "minmax");
    if (strcasecmp(name, "kl") == 0) snprintf(name, sizeof name, "entropy");
    if (mm_quant_observer_from_name(name, out) != MM_OK) {
        mm_clear_error();
        return cli_usage_error(c,
                               "--observer: '%s' is not an observer (minmax, moving-minmax, "
                               "percentile, mse, entropy)",
                               text);
    }
    return 0;
}

static const char *dashed(const char *name, char *buf, size_t cap) {
    size_t len = strlen(name);
    if (len >= cap) len = cap - 1;
    for (size_t i = 0; i < len; i++) buf[i] = name[i] == '_' ? '-' : name[i];
    buf[len] = '\0';
    return buf;
}

/* Configure a quantizer from the arguments. Settings a scheme does not read
 * are usage errors naming the flag (the library says which scheme reads it). */
static int configure(const cli *c, const quantize_args *a, mm_quantizer **out) {
    mm_quantizer *q = NULL;
    mm_status st = mm_quantizer_create(&q, a->scheme);
    if (st != MM_OK) return cli_lib_error(c, st, "creating the quantizer");
    char sname[32];
    dashed(mm_quant_scheme_name(a->scheme), sname, sizeof sname);
    const bool int8 = a->scheme == MM_QUANT_INT8_STATIC || a->scheme == MM_QUANT_INT8_DYNAMIC ||
                      a->scheme == MM_QUANT_INT8_WEIGHT_ONLY;
    const bool stat = a->scheme == MM_QUANT_INT8_STATIC;
    int rc = 0;
#define NEEDS(cond, flag, what)                                                                 \
    if (rc == 0 && !(cond))                                                                     \
    rc = cli_usage_error(c, "%s applies to %s, not to --scheme %s", flag, what, sname)
    NEEDS(!a->per_tensor || int8, "--per-tensor", "the int8 schemes");
    NEEDS(!a->per_channel_given || int8, "--per-channel", "the int8 schemes");
    NEEDS(!a->asym_weights || int8, "--asymmetric-weights", "the int8 schemes");
    NEEDS(!a->sym_acts || stat, "--symmetric-activations", "int8-static");
    NEEDS(!a->observer_given || stat, "--observer", "int8-static");
    NEEDS(isnan(a->percentile) || stat, "--percentile", "int8-static");
    NEEDS(!a->cal_given || stat, "--calibration-samples", "int8-static (the only scheme that calibrates)");
#undef NEEDS
    if (rc == 0 && !isnan(a->percentile) && a->observer != MM_OBSERVER_PERCENTILE)
        rc = cli_usage_error(c, "--percentile needs --observer percentile");
    if (rc == 0 && a->relative && isnan(a->max_drop))
        rc = cli_usage_error(c, "--relative needs --max-drop");
    const char *flag = NULL;
    if (rc == 0 && int8) {
        flag = "--per-tensor";
        st = mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, a->per_tensor ? 0 : 1);
        if (st == MM_OK) flag = "--asymmetric-weights";
        if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_WEIGHT_SYMMETRIC, a->asym_weights ? 0 : 1);
    }
    if (rc == 0 && st == MM_OK && stat) {
        flag = "--symmetric-activations";
        st = mm_quantizer_set(q, MM_QUANT_ACT_SYMMETRIC, a->sym_acts ? 1 : 0);
        if (st == MM_OK) flag = "--observer";
        if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_OBSERVER, a->observer);
        if (st == MM_OK && !isnan(a->percentile)) {
            flag = "--percentile";
            st = mm_quantizer_set(q, MM_QUANT_PERCENTILE, a->percentile);
        }
    }
    if (rc == 0 && st == MM_OK) {
        flag = "--keep-master";
        st = mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, a->keep_master ? 1 : 0);
    }
    if (rc == 0 && st == MM_OK && !isnan(a->max_drop)) {
        flag = "--max-drop";
        st = mm_quantizer_set(q, MM_QUANT_MAX_DROP, a->max_drop);
        if (st == MM_OK) flag = "--relative";
        if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_DROP_RELATIVE, a->relative ? 1 : 0);
    }
    for (size_t i = 0; rc == 0 && st == MM_OK && i < a->n_float; i++) {
        flag = "--float-layer";
        st = mm_quantizer_set_layer(q, a->float_layers[i], 0);
    }
    if (rc == 0 && st != MM_OK) rc = cli_lib_usage_error(c, st, "%s", flag);
    if (rc) {
        mm_quantizer_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

/* ---- measurements ---------------------------------------------------------- */

/* The per-layer lines for --json: the quantizer's report entries plus the
 * layer's shape. */
static json_t *layers_json(const mm_model *m, const json_t *report) {
    json_t *out = json_array();
    const json_t *layers = json_object_get(report, "layers");
    size_t i;
    const json_t *e;
    json_array_foreach(layers, i, e) {
        json_t *o = json_deep_copy(e);
        json_int_t idx = json_integer_value(json_object_get(e, "index"));
        size_t in = 0, outs = 0;
        if (idx >= 0 && mm_model_layer_info(m, (size_t)idx, NULL, &in, &outs, NULL) == MM_OK) {
            json_object_set_new(o, "inputs", json_integer((json_int_t)in));
            json_object_set_new(o, "outputs", json_integer((json_int_t)outs));
        }
        json_array_append_new(out, o);
    }
    mm_clear_error();
    return out;
}

static void print_table(FILE *f, const cli_model_stats *b, const cli_model_stats *a) {
    char x[32], y[32], ch[48];
    fprintf(f, "\n%-22s %14s %14s  %s\n", "", "before", "after", "change");
    if (isfinite(b->accuracy)) {
        fprintf(f, "%-22s %14.4f %14.4f  %+.2f points\n", "test accuracy", b->accuracy,
                a->accuracy, 100.0 * (a->accuracy - b->accuracy));
        fprintf(f, "%-22s %14.4f %14.4f\n", "test loss", b->loss, a->loss);
    }
    cli_format_bytes(b->bytes, x, sizeof x);
    cli_format_bytes(a->bytes, y, sizeof y);
    snprintf(ch, sizeof ch, "%.1f%% of before",
             b->bytes ? 100.0 * (double)a->bytes / (double)b->bytes : 0.0);
    fprintf(f, "%-22s %14s %14s  %s\n", "parameter bytes", x, y, ch);
    cli_format_bytes(b->file_size < 0 ? 0 : (uint64_t)b->file_size, x, sizeof x);
    cli_format_bytes(a->file_size < 0 ? 0 : (uint64_t)a->file_size, y, sizeof y);
    snprintf(ch, sizeof ch, "%.1f%% of before",
             b->file_size > 0 ? 100.0 * (double)a->file_size / (double)b->file_size : 0.0);
    fprintf(f, "%-22s %14s %14s  %s\n", "file size", x, y, ch);
    fprintf(f, "%-22s %14.0f %14.0f  %.2fx\n", "batch 1 samples/s", b->b1, a->b1, a->b1 / b->b1);
    fprintf(f, "%-22s %14.0f %14.0f  %.2fx\n", "batch 256 samples/s", b->b256, a->b256,
            a->b256 / b->b256);
}

static void print_layers(FILE *f, const json_t *layers) {
    fprintf(f, "\n%-6s %-6s %-9s %-10s %s\n", "layer", "kind", "shape", "", "parameter bytes");
    size_t i;
    const json_t *e;
    json_array_foreach(layers, i, e) {
        char shape[48], bytes[64], b0[24], b1[24];
        snprintf(shape, sizeof shape, "%lldx%lld",
                 (long long)json_integer_value(json_object_get(e, "inputs")),
                 (long long)json_integer_value(json_object_get(e, "outputs")));
        cli_format_bytes((uint64_t)json_integer_value(json_object_get(e, "bytes_before")), b0,
                         sizeof b0);
        cli_format_bytes((uint64_t)json_integer_value(json_object_get(e, "bytes_after")), b1,
                         sizeof b1);
        snprintf(bytes, sizeof bytes, "%s -> %s", b0, b1);
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *reason = json_string_value(json_object_get(e, "reason"));
        fprintf(f, "%-6lld %-6s %-9s %-10s %s\n",
                (long long)json_integer_value(json_object_get(e, "index")), kind ? kind : "?",
                shape, json_is_true(json_object_get(e, "quantized")) ? "quantized" : "float", bytes);
        if (reason && *reason) {
            fprintf(f, "       ");
            cli_print_wrapped(f, reason, 7, 7);
        }
    }
}

/* `k` samples spread evenly over ds (the first one included), as one
 * contiguous buffer; *out is malloc'ed. */
static int spread_samples(const cli *c, const mm_dataset *ds, size_t k, float **out) {
    const size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    if (k > n) k = n;
    float *x = malloc(k * dim * sizeof *x);
    if (!x) return cli_runtime_error(c, "out of memory");
    const float *src = mm_dataset_features(ds);
    for (size_t i = 0; i < k; i++) {
        size_t j = (size_t)(((unsigned long long)i * n) / k);
        memcpy(x + i * dim, src + j * dim, dim * sizeof *x);
    }
    *out = x;
    return 0;
}

/* ---- the command -------------------------------------------------------------- */

static int run_quantize(cli *c, quantize_args *a) {
    int rc = 0;
    mm_model *model = NULL, *orig = NULL;
    mm_dataset *train = NULL, *test = NULL, *val = NULL;
    mm_quantizer *q = NULL;
    float *calx = NULL;
    json_t *result = json_object(), *report = NULL, *layers = NULL;
    char train_desc[1200] = "", test_desc[1200] = "", val_desc[1200] = "";
    const bool stat = a->scheme == MM_QUANT_INT8_STATIC;
    const bool tolerance = !isnan(a->max_drop);
    const bool need_train = stat || a->data.val_split > 0;
    size_t cal_n = 0;
    double acc_tol = NAN;
    mm_status st;

    /* Quantizer settings first: usage errors before any loading. */
    if ((rc = configure(c, a, &q))) goto done;
    if (cli_data_given(&a->data, CLI_ROLE_VAL) && a->data.val_split > 0) {
        rc = cli_usage_error(c, "give either --val-split or validation files, not both");
        goto done;
    }
    if (!tolerance && (cli_data_given(&a->data, CLI_ROLE_VAL) || a->data.val_split > 0)) {
        rc = cli_usage_error(c, "validation data is for --max-drop (accuracy-aware "
                                "quantization); give --max-drop D");
        goto done;
    }

    if ((rc = cli_load_model(c, a->model, &model))) goto done;
    for (size_t i = 0; i < a->n_float; i++)
        if (a->float_layers[i] >= mm_model_num_layers(model)) {
            rc = cli_usage_error(c, "--float-layer %zu: %s has layers 0..%zu", a->float_layers[i],
                                 a->model, mm_model_num_layers(model) - 1);
            goto done;
        }
    st = mm_model_clone(model, &orig);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "copying the model");
        goto done;
    }

    if (need_train &&
        (rc = cli_data_require(c, &a->data, CLI_ROLE_TRAIN,
                               stat ? "int8-static calibration" : "--val-split", NULL, NULL)))
        goto done;

    /* Data: test data by default only when no data flag at all. */
    bool defaults = !cli_data_given(&a->data, CLI_ROLE_TRAIN) &&
                    !cli_data_given(&a->data, CLI_ROLE_TEST) &&
                    !cli_data_given(&a->data, CLI_ROLE_VAL);
    if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TEST, defaults, &test, test_desc,
                            sizeof test_desc)))
        goto done;
    if (test && (rc = cli_check_data_fits(c, model, test, test_desc))) goto done;
    if (need_train) {
        if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TRAIN, true, &train, train_desc,
                                sizeof train_desc)))
            goto done;
        if ((rc = cli_check_data_fits(c, model, train, train_desc))) goto done;
        if (a->data.val_split > 0) {
            /* The last fraction of the training data checks the drop; the
             * rest calibrates. */
            size_t n = mm_dataset_size(train);
            size_t nv = (size_t)floor(a->data.val_split * (double)n + 0.5);
            if (nv == 0 || nv >= n) {
                rc = cli_usage_error(c, "--val-split %g leaves no %s data (%zu samples)",
                                     a->data.val_split, nv == 0 ? "validation" : "training", n);
                goto done;
            }
            mm_dataset *head = NULL;
            st = mm_dataset_slice(train, n - nv, nv, &val);
            if (st == MM_OK) st = mm_dataset_slice(train, 0, n - nv, &head);
            if (st != MM_OK) {
                mm_dataset_free(head);
                rc = cli_lib_error(c, st, "splitting %s", train_desc);
                goto done;
            }
            snprintf(val_desc, sizeof val_desc, "%.1100s[%zu:%zu]", train_desc, n - nv, n);
            size_t len = strlen(train_desc);
            snprintf(train_desc + len, sizeof train_desc - len, "[0:%zu]", n - nv);
            mm_dataset_free(train);
            train = head;
        }
    }
    if (tolerance && !val) {
        if ((rc = cli_data_load(c, &a->data, CLI_ROLE_VAL, false, &val, val_desc,
                                sizeof val_desc)))
            goto done;
        if (val && (rc = cli_check_data_fits(c, model, val, val_desc))) goto done;
    }
    const mm_dataset *tol_set = tolerance ? (val ? val : test) : NULL;
    const char *tol_desc = val ? val_desc : test_desc;
    if (tolerance && !tol_set) {
        rc = cli_usage_error(c, "--max-drop needs labelled evaluation data: give test or "
                                "validation data");
        goto done;
    }

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    cli_say(c, "model: %s (%s), %zu parameters\n", a->model, arch, mm_model_num_params(model));
    if (test) cli_say(c, "test: %s, %zu samples\n", test_desc, mm_dataset_size(test));
    if (train) cli_say(c, "train: %s, %zu samples\n", train_desc, mm_dataset_size(train));
    if (val) cli_say(c, "validation: %s, %zu samples\n", val_desc, mm_dataset_size(val));

    cli_model_stats before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    if ((rc = cli_measure_model(c, model, test, &before))) goto done;
    before.file_size = cli_file_size(a->model);

    /* Calibration (int8-static). */
    if (stat) {
        cal_n = a->cal_samples < mm_dataset_size(train) ? a->cal_samples : mm_dataset_size(train);
        if ((rc = spread_samples(c, train, cal_n, &calx))) goto done;
        double t0 = cli_now();
        st = mm_quantizer_calibrate(q, model, calx, cal_n);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "calibrating on %zu samples of %s", cal_n, train_desc);
            goto done;
        }
        cli_say(c, "calibrated activation ranges on %zu samples of %s (%.2f s)\n", cal_n,
                train_desc, cli_now() - t0);
    }

    const char *scheme_name = mm_quant_scheme_name(a->scheme);
    double tq = cli_now();
    if (tolerance) {
        st = mm_quantizer_apply_with_tolerance(q, model, mm_dataset_features(tol_set),
                                               mm_dataset_labels(tol_set),
                                               mm_dataset_size(tol_set), &acc_tol);
    } else {
        st = mm_quantizer_apply(q, model);
    }
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "quantizing %s", a->model);
        goto done;
    }
    tq = cli_now() - tq;
    json_error_t jerr;
    report = json_loads(mm_quantizer_report(q), 0, &jerr);
    if (!report) {
        rc = cli_runtime_error(c, "the quantizer's report does not parse: %s", jerr.text);
        goto done;
    }
    layers = layers_json(model, report);
    size_t nq = 0, nl = json_array_size(layers);
    for (size_t i = 0; i < nl; i++)
        if (json_is_true(json_object_get(json_array_get(layers, i), "quantized"))) nq++;
    if (tolerance) {
        double af = json_number_value(json_object_get(report, "float_accuracy"));
        double aq = json_number_value(json_object_get(report, "quantized_accuracy"));
        cli_say(c,
                "accuracy-aware (%s, tolerated drop %g%s) on %s: float %.4f, every layer "
                "quantized %.4f, final %.4f with %zu of %zu layers quantized (%.2f s)\n",
                scheme_name, a->max_drop, a->relative ? " of the float accuracy" : "", tol_desc,
                af, aq, acc_tol, nq, nl, tq);
    } else {
        cli_say(c, "quantized (%s): %zu of %zu layers (%.2f s)\n", scheme_name, nq, nl, tq);
    }
    if ((rc = cli_measure_model(c, model, test, &after))) goto done;

    /* Lineage: the library recorded the quantization; add where it came
     * from and what it cost. Then save. */
    json_t *ev = json_object();
    json_object_set_new(ev, "parent", json_string(a->model));
    json_object_set_new(ev, "scheme", json_string(scheme_name));
    if (stat) {
        json_object_set_new(ev, "calibration_data", json_string(train_desc));
        json_object_set_new(ev, "calibration_samples", json_integer((json_int_t)cal_n));
    }
    if (tolerance) {
        json_object_set_new(ev, "max_drop", cli_json_num(a->max_drop));
        json_object_set_new(ev, "drop_relative", json_boolean(a->relative));
        json_object_set_new(ev, "tolerance_data", json_string(tol_desc));
    }
    json_object_set_new(ev, "layers_quantized", json_integer((json_int_t)nq));
    if ((rc = cli_save_summary(c, model, orig, ev, "quantize_summary", a->out, test ? test_desc : NULL,
                               test ? test : train, &before, &after)))
        goto done;

    print_table(c->out, &before, &after);
    print_layers(c->out, layers);
    if (!a->keep_master)
        fprintf(c->out, "\nsaved %s (no float master weights: for inference; --keep-master to "
                        "keep updating it)\n",
                a->out);
    else
        fprintf(c->out, "\nsaved %s (with float master weights: can still be updated)\n", a->out);

    json_object_set_new(result, "command", json_string("quantize"));
    json_object_set_new(result, "model", json_string(a->model));
    json_object_set_new(result, "out", json_string(a->out));
    json_object_set_new(result, "scheme", json_string(scheme_name));
    json_object_set_new(result, "mode", json_string(tolerance ? "accuracy_aware" : "apply"));
    json_t *settings = json_object();
    {
        /* The settings in effect, read back from the quantizer. */
        static const mm_quant_param ps[] = {MM_QUANT_PER_CHANNEL, MM_QUANT_WEIGHT_SYMMETRIC,
                                            MM_QUANT_ACT_SYMMETRIC, MM_QUANT_OBSERVER,
                                            MM_QUANT_PERCENTILE, MM_QUANT_KEEP_MASTER,
                                            MM_QUANT_MAX_DROP, MM_QUANT_DROP_RELATIVE};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            double v;
            if (mm_quantizer_get(q, ps[i], &v) != MM_OK) continue;
            if (ps[i] == MM_QUANT_MAX_DROP && !tolerance) continue;
            if (ps[i] == MM_QUANT_DROP_RELATIVE && !tolerance) continue;
            if (ps[i] == MM_QUANT_PERCENTILE && a->observer != MM_OBSERVER_PERCENTILE) continue;
            const char *name = mm_quant_param_name(ps[i]);
            if (ps[i] == MM_QUANT_OBSERVER)
                json_object_set_new(settings, name,
                                    json_string(mm_quant_observer_name((mm_quant_observer)v)));
            else if (ps[i] == MM_QUANT_PERCENTILE || ps[i] == MM_QUANT_MAX_DROP)
                json_object_set_new(settings, name, cli_json_num(v));
            else
                json_object_set_new(settings, name, json_boolean(v != 0.0));
        }
        mm_clear_error();
        if (stat) json_object_set_new(settings, "calibration_samples", json_integer((json_int_t)cal_n));
    }
    json_object_set_new(result, "settings", settings);
    json_object_set_new(result, "test_data", test ? json_string(test_desc) : json_null());
    json_object_set_new(result, "calibration_data", stat ? json_string(train_desc) : json_null());
    json_object_set_new(result, "tolerance_data", tolerance ? json_string(tol_desc) : json_null());
    if (tolerance) {
        json_object_set_new(result, "float_accuracy",
                            json_deep_copy(json_object_get(report, "float_accuracy")));
        json_object_set_new(result, "quantized_accuracy",
                            json_deep_copy(json_object_get(report, "quantized_accuracy")));
        json_object_set_new(result, "final_accuracy", cli_json_num(acc_tol));
    }
    json_object_set_new(result, "layers_quantized", json_integer((json_int_t)nq));
    json_object_set_new(result, "before", cli_model_stats_json(&before));
    json_object_set_new(result, "after", cli_model_stats_json(&after));
    json_object_set_new(result, "accuracy_change", cli_json_num(after.accuracy - before.accuracy));
    json_object_set_new(result, "speedup_batch1", cli_json_num(after.b1 / before.b1));
    json_object_set_new(result, "speedup_batch256", cli_json_num(after.b256 / before.b256));
    json_object_set_new(result, "param_bytes_ratio",
                        cli_json_num(before.bytes ? (double)after.bytes / (double)before.bytes : NAN));
    json_object_set_new(result, "file_size_ratio",
                        cli_json_num(before.file_size > 0
                                         ? (double)after.file_size / (double)before.file_size
                                         : NAN));
    json_object_set_new(result, "layers", layers);
    layers = NULL;
    json_object_set_new(result, "report", report);
    report = NULL;
    if (c->json) {
        cli_json_print(result);
        result = NULL;
    }

done:
    json_decref(result);
    json_decref(report);
    json_decref(layers);
    free(calx);
    mm_quantizer_free(q);
    mm_model_free(orig);
    mm_model_free(model);
    mm_dataset_free(train);
    mm_dataset_free(val);
    mm_dataset_free(test);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    cli c;
    cli_init(&c, "quantize");
    quantize_args a;
    memset(&a, 0, sizeof a);
    a.scheme = MM_QUANT_INT8_STATIC;
    a.observer = MM_OBSERVER_MINMAX;
    a.percentile = NAN;
    a.max_drop = NAN;
    a.cal_samples = DEFAULT_CAL_SAMPLES;
    cli_data_init(&a.data, CLI_ROLE_TEST);
    cli_opts o;
    quantize_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_quantize(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &a.data, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        const char *flag = cli_current_flag();
        switch (id) {
        case CLI_OPT_OUT: a.out = arg; break;
        case OPT_SCHEME:
            if ((r = parse_scheme(&c, arg, &a.scheme))) return r;
            break;
        case OPT_PER_TENSOR: a.per_tensor = cli_bool_arg(arg); break;
        case OPT_PER_CHANNEL:
            a.per_tensor = !cli_bool_arg(arg);
            a.per_channel_given = true;
            break;
        case OPT_ASYM_WEIGHTS: a.asym_weights = cli_bool_arg(arg); break;
        case OPT_SYM_ACTS: a.sym_acts = cli_bool_arg(arg); break;
        case OPT_OBSERVER:
            if ((r = parse_observer(&c, arg, &a.observer))) return r;
            a.observer_given = true;
            break;
        case OPT_PERCENTILE: {
            double lo = 0, hi = 0;
            if ((r = cli_parse_double(&c, flag, arg, &a.percentile))) return r;
            mm_quant_param_bounds(MM_QUANT_PERCENTILE, &lo, &hi);
            if (!(a.percentile > 50 && a.percentile <= hi))
                return cli_usage_error(&c, "%s: '%s' is out of range (50, %g]", flag, arg, hi);
            break;
        }
        case OPT_CAL_SAMPLES:
            if ((r = cli_parse_size(&c, flag, arg, &a.cal_samples))) return r;
            if (a.cal_samples == 0) return cli_usage_error(&c, "%s: needs at least 1 sample", flag);
            a.cal_given = true;
            break;
        case OPT_MAX_DROP:
            if ((r = cli_parse_double(&c, flag, arg, &a.max_drop))) return r;
            if (!(a.max_drop >= 0 && a.max_drop <= 1))
                return cli_usage_error(&c, "%s: '%s' is out of range [0, 1] (0.003 = 0.3 points)",
                                       flag, arg);
            break;
        case OPT_RELATIVE: a.relative = cli_bool_arg(arg); break;
        case OPT_KEEP_MASTER: a.keep_master = cli_bool_arg(arg); break;
        case OPT_NO_MASTER: a.keep_master = !cli_bool_arg(arg); break;
        case OPT_FLOAT_LAYER: {
            size_t k;
            if ((r = cli_parse_size(&c, flag, arg, &k))) return r;
            if (a.n_float >= MAX_FLOAT_LAYERS)
                return cli_usage_error(&c, "%s: at most %d layers", flag, MAX_FLOAT_LAYERS);
            a.float_layers[a.n_float++] = k;
            break;
        }
        default: return cli_usage_error(&c, "unhandled option %s", flag);
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc)
        return cli_usage_error(&c, "which model? (mmaint quantize MODEL --out FILE)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    a.model = argv[optind];
    if (!a.out) return cli_usage_error(&c, "--out FILE is required");
    return run_quantize(&c, &a);
}
