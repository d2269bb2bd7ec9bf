/* mmaint convert — move a model between formats: mmaint model files (.mmf),
 * plain safetensors weights (.safetensors, mm_safetensors.h) and ONNX
 * (.onnx, mm_onnx.h). The formats come from the file extensions unless
 * --from / --to say otherwise. After writing, the output is read back and
 * its outputs compared with the input model's on pseudo-random inputs, so
 * the report says how faithful the conversion is (0 for an exact one; a
 * quantized model written as float weights differs by its quantization
 * error). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    OPT_FROM = CLI_OPT_CMD_BASE,
    OPT_TO,
    OPT_ARCH,
    OPT_NAMES,
    OPT_OUT_NAMES,
    OPT_ALLOW_EXTRA,
    OPT_ROUND_F64,
    OPT_SEED,
};

typedef enum fmt { FMT_NONE = 0, FMT_MMF, FMT_SAFETENSORS, FMT_ONNX } fmt;

static const char *fmt_name(fmt f) {
    switch (f) {
    case FMT_MMF: return "mmf";
    case FMT_SAFETENSORS: return "safetensors";
    case FMT_ONNX: return "onnx";
    default: return "?";
    }
}

static fmt fmt_from_name(const char *s) {
    if (strcasecmp(s, "mmf") == 0 || strcasecmp(s, "mmaint") == 0) return FMT_MMF;
    if (strcasecmp(s, "safetensors") == 0 || strcasecmp(s, "st") == 0) return FMT_SAFETENSORS;
    if (strcasecmp(s, "onnx") == 0) return FMT_ONNX;
    return FMT_NONE;
}

static fmt fmt_from_path(const char *path) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return FMT_NONE;
    return fmt_from_name(dot + 1);
}

static void convert_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"from", required_argument, OPT_FROM, "FMT",
         "format of INPUT: mmf, safetensors or onnx (default: from its extension)"},
        {"to", required_argument, OPT_TO, "FMT",
         "format of OUTPUT: mmf, safetensors or onnx (default: from its extension)"},
        {"arch", required_argument, OPT_ARCH, "SPEC",
         "safetensors input: the architecture, e.g. 784-256-128-10:relu (needed when the file "
         "does not record one; overrides the one it records)"},
        {"names", required_argument, OPT_NAMES, "NAMES",
         "safetensors: the layers' tensor-name prefixes, of the input (or of the output when "
         "only the output is safetensors): a pattern with {i} (layer index) or {seq} "
         "(nn.Sequential index), e.g. \"layers.{i}\", \"{seq}\", or a list \"fc1,fc2,out\". "
         "Default: input recognised (recorded names, mmaint's, or nn.Sequential's 0.weight, "
         "2.weight, ...), output layers.{i}"},
        {"out-names", required_argument, OPT_OUT_NAMES, "NAMES",
         "safetensors output when the input is safetensors too: its tensor names"},
        {"allow-extra", no_argument, OPT_ALLOW_EXTRA, NULL,
         "safetensors input: ignore tensors that no layer uses (default: an error)"},
        {"round-f64", no_argument, OPT_ROUND_F64, NULL,
         "safetensors input: round F64 weights to float (default: only exact values)"},
    };
    cli_opts_init(o);
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_common(o, true);
}

void help_convert(FILE *f) {
    cli_opts o;
    convert_opts(&o);
    fprintf(f,
            "Usage: mmaint convert INPUT OUTPUT [options]\n"
            "Convert a model between mmaint model files (.mmf), plain safetensors weights\n"
            "(.safetensors) and ONNX (.onnx). Formats come from the extensions unless\n"
            "--from/--to are given. Writing is atomic (no half-written OUTPUT).\n\n"
            "safetensors files hold each layer as <prefix>.weight [out, in] and\n"
            "<prefix>.bias [out] (PyTorch nn.Linear's layout) plus, when written by mmaint,\n"
            "the architecture; files from other tools need --arch. Pruned and quantized\n"
            "layers are written as the float layers they compute (mmf keeps them as they\n"
            "are). After writing, OUTPUT is read back and its outputs compared with\n"
            "INPUT's on 64 pseudo-random samples (max_abs_diff in the report).\n\n"
            "Options:\n");
    cli_opts_print_help(&o, f);
    fprintf(f, "\nExamples:\n"
               "  mmaint convert weights.safetensors --arch 784-256-128-10:relu model.mmf\n"
               "  mmaint convert model.mmf model.safetensors --names '{seq}'\n"
               "  mmaint convert model.mmf model.onnx\n"
               "  mmaint convert mlp.onnx model.mmf\n"
               "\nExit status: 0 converted, 1 runtime error (unreadable or unsupported input,\n"
               "write failure), 2 usage error.\n");
}

typedef struct convert_args {
    const char *in, *out, *arch, *names, *out_names;
    fmt from, to;
    unsigned flags;
} convert_args;

static int read_model(const cli *c, const convert_args *a, fmt f, const char *path,
                      const char *names, mm_model **m) {
    mm_status st;
    switch (f) {
    case FMT_MMF: st = mm_model_load(m, path); break;
    case FMT_SAFETENSORS: st = mm_safetensors_import(m, path, a->arch, names, a->flags); break;
    default:
        if (!mm_onnx_available())
            return cli_runtime_error(c, "this mmaint was built without ONNX support");
        st = mm_onnx_import(m, path);
        break;
    }
    if (st != MM_OK) return cli_lib_error(c, st, "reading %s (%s)", path, fmt_name(f));
    return 0;
}

static int write_model(const cli *c, const mm_model *m, fmt f, const char *path,
                       const char *names) {
    mm_status st;
    switch (f) {
    case FMT_MMF: st = mm_model_save(m, path); break;
    case FMT_SAFETENSORS: st = mm_safetensors_export(m, path, names); break;
    default:
        if (!mm_onnx_available())
            return cli_runtime_error(c, "this mmaint was built without ONNX support");
        st = mm_onnx_export(m, path);
        break;
    }
    if (st != MM_OK) return cli_lib_error(c, st, "writing %s (%s)", path, fmt_name(f));
    return 0;
}

/* Max |difference| between the two models' outputs on n fixed
 * pseudo-random samples in [-1, 1) (a model without layers: 0). */
static int compare_outputs(const cli *c, const mm_model *a, const mm_model *b, double *diff) {
    *diff = 0;
    size_t d = mm_model_input_dim(a), k = mm_model_output_dim(a), n = 64;
    if (mm_model_num_layers(a) == 0) return 0;
    if (mm_model_input_dim(b) != d || mm_model_output_dim(b) != k)
        return cli_runtime_error(c, "the written model has %zu inputs and %zu outputs, the "
                                    "input model %zu and %zu",
                                 mm_model_input_dim(b), mm_model_output_dim(b), d, k);
    float *x = malloc(n * d * sizeof *x), *ya = malloc(n * k * sizeof *ya),
          *yb = malloc(n * k * sizeof *yb);
    int rc = 0;
    if (!x || !ya || !yb) {
        rc = cli_runtime_error(c, "out of memory");
        goto done;
    }
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n * d; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((double)(s >> 40) / (double)(1ULL << 23) - 1.0);
    }
    mm_status st = mm_model_forward(a, x, n, ya);
    if (st == MM_OK) st = mm_model_forward(b, x, n, yb);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "comparing outputs");
        goto done;
    }
    for (size_t i = 0; i < n * k; i++) {
        double e = fabs((double)ya[i] - (double)yb[i]);
        if (isnan(e)) e = INFINITY;
        if (e > *diff) *diff = e;
    }
done:
    free(x);
    free(ya);
    free(yb);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    cli c;
    cli_init(&c, "convert");
    cli_opts o;
    convert_opts(&o);
    convert_args a = {0};
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_convert(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        switch (id) {
        case OPT_FROM:
        case OPT_TO: {
            fmt f = fmt_from_name(arg);
            if (f == FMT_NONE)
                return cli_usage_error(&c, "%s: unknown format '%s' (mmf, safetensors, onnx)",
                                       cli_current_flag(), arg);
            if (id == OPT_FROM) a.from = f;
            else a.to = f;
            break;
        }
        case OPT_ARCH: a.arch = arg; break;
        case OPT_NAMES: a.names = arg; break;
        case OPT_OUT_NAMES: a.out_names = arg; break;
        case OPT_ALLOW_EXTRA:
            if (cli_bool_arg(arg)) a.flags |= MM_SAFETENSORS_ALLOW_EXTRA;
            else a.flags &= ~(unsigned)MM_SAFETENSORS_ALLOW_EXTRA;
            break;
        case OPT_ROUND_F64:
            if (cli_bool_arg(arg)) a.flags |= MM_SAFETENSORS_ROUND_F64;
            else a.flags &= ~(unsigned)MM_SAFETENSORS_ROUND_F64;
            break;
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (argc - optind < 2)
        return cli_usage_error(&c, "need INPUT and OUTPUT (mmaint convert INPUT OUTPUT)");
    if (argc - optind > 2) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 2]);
    a.in = argv[optind];
    a.out = argv[optind + 1];
    if (!a.from) a.from = fmt_from_path(a.in);
    if (!a.to) a.to = fmt_from_path(a.out);
    if (!a.from)
        return cli_usage_error(&c, "cannot tell the format of %s from its extension: use --from "
                                   "mmf|safetensors|onnx",
                               a.in);
    if (!a.to)
        return cli_usage_error(&c, "cannot tell the format of %s from its extension: use --to "
                                   "mmf|safetensors|onnx",
                               a.out);
    bool st_in = a.from == FMT_SAFETENSORS, st_out = a.to == FMT_SAFETENSORS;
    if ((a.arch || a.flags) && !st_in)
        return cli_usage_error(&c, "--arch, --allow-extra and --round-f64 apply to safetensors "
                                   "input only (%s is %s)",
                               a.in, fmt_name(a.from));
    if (a.names && !st_in && !st_out)
        return cli_usage_error(&c, "--names applies to safetensors files only");
    if (a.out_names && !(st_in && st_out))
        return cli_usage_error(&c, "--out-names applies when both files are safetensors (use "
                                   "--names)");
    if (strcmp(a.in, a.out) == 0 && a.from != a.to)
        return cli_usage_error(&c, "INPUT and OUTPUT are the same file");
    const char *in_names = st_in ? a.names : NULL;
    const char *out_names = st_in && st_out ? a.out_names : (st_out ? a.names : NULL);

    double t0 = cli_now();
    mm_model *m = NULL, *back = NULL;
    double diff = 0;
    if ((rc = read_model(&c, &a, a.from, a.in, in_names, &m))) goto done;
    if ((rc = write_model(&c, m, a.to, a.out, out_names))) goto done;
    double seconds = cli_now() - t0;
    /* read back as written: explicit names and the architecture are in the
     * file's metadata for safetensors */
    if ((rc = read_model(&c, &(convert_args){.flags = 0}, a.to, a.out, NULL, &back))) goto done;
    if ((rc = compare_outputs(&c, m, back, &diff))) goto done;

    char arch[256];
    cli_arch_string(m, arch, sizeof arch);
    long long in_size = cli_file_size(a.in), out_size = cli_file_size(a.out);
    if (c.json) {
        json_t *j = json_object();
        json_object_set_new(j, "command", json_string("convert"));
        json_object_set_new(j, "input", json_string(a.in));
        json_object_set_new(j, "input_format", json_string(fmt_name(a.from)));
        json_object_set_new(j, "input_size", json_integer(in_size));
        json_object_set_new(j, "output", json_string(a.out));
        json_object_set_new(j, "output_format", json_string(fmt_name(a.to)));
        json_object_set_new(j, "output_size", json_integer(out_size));
        json_object_set_new(j, "arch", json_string(arch));
        json_object_set_new(j, "layers", json_integer((json_int_t)mm_model_num_layers(m)));
        json_object_set_new(j, "params", json_integer((json_int_t)mm_model_num_params(m)));
        json_object_set_new(j, "max_abs_diff", cli_json_num(diff));
        json_object_set_new(j, "seconds", cli_json_num(seconds));
        cli_json_print(j);
    } else {
        char ib[32], ob[32];
        cli_format_bytes(in_size < 0 ? 0 : (uint64_t)in_size, ib, sizeof ib);
        cli_format_bytes(out_size < 0 ? 0 : (uint64_t)out_size, ob, sizeof ob);
        printf("%s (%s, %s) -> %s (%s, %s) in %.3f s\n", a.in, fmt_name(a.from), ib, a.out,
               fmt_name(a.to), ob, seconds);
        printf("model: %s, %zu parameters; read back: max |output difference| %g\n", arch,
               mm_model_num_params(m), diff);
    }
done:
    mm_model_free(back);
    mm_model_free(m);
    return rc;
}
