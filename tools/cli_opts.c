/* mmaint CLI — option tables for getopt_long, data flags and loading,
 * optimizer settings.
 *
 * Optimizer flags are generated from the library's own setting names
 * (mm_opt_param_name: "weight_decay" becomes --weight-decay), so a setting
 * added to the library is usable from the command line without new code here;
 * `--set name=value` reaches the same settings, and --lr is a friendly alias.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- option tables ----------------------------------------------------- */

void cli_opts_init(cli_opts *o) { memset(o, 0, sizeof *o); }

/* Yes/no flags: every flag that does not require a value, except --help.
 * They are registered with an optional value, so that --shuffle,
 * --shuffle=0 and (see cli_getopt) --shuffle 0 all work. */
static bool def_is_bool(const cli_optdef *d) {
    return d->id != CLI_OPT_HELP && d->has_arg != required_argument;
}

/* A word cli_parse_bool accepts: only such a word after a bare yes/no flag
 * is taken as its value (anything else stays a positional argument). */
static bool is_bool_word(const char *s) {
    static const char *words[] = {"1", "0", "true", "false", "yes", "no", "on", "off"};
    for (size_t i = 0; s && i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return false;
}

bool cli_bool_arg(const char *arg) { return !arg || strcmp(arg, "0") != 0; }

static bool opts_has(const cli_opts *o, const char *name) {
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->defs[i].name, name) == 0) return true;
    return false;
}

void cli_opts_add(cli_opts *o, const cli_optdef *defs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (opts_has(o, defs[i].name)) continue;
        if (o->n >= CLI_MAX_OPTS) {
            fprintf(stderr, "mmaint: internal error: too many options\n");
            return;
        }
        o->defs[o->n] = defs[i];
        o->longopts[o->n] = (struct option){
            defs[i].name, def_is_bool(&defs[i]) ? optional_argument : defs[i].has_arg, NULL,
            defs[i].id};
        o->n++;
        o->longopts[o->n] = (struct option){NULL, 0, NULL, 0};
    }
}

void cli_opts_add_common(cli_opts *o, bool with_json) {
    static const cli_optdef common[] = {
        {"help", no_argument, CLI_OPT_HELP, NULL, "show this help and exit"},
        {"quiet", no_argument, CLI_OPT_QUIET, NULL, "no progress output, results only"},
        {"threads", required_argument, CLI_OPT_THREADS, "N", "threads for the BLIS kernels (default 1)"},
    };
    static const cli_optdef json[] = {
        {"json", no_argument, CLI_OPT_JSON, NULL, "print the results as one JSON object on stdout"},
    };
    cli_opts_add(o, common, sizeof common / sizeof common[0]);
    if (with_json) cli_opts_add(o, json, 1);
}

void cli_opts_add_out(cli_opts *o, const char *help) {
    cli_optdef d = {"out", required_argument, CLI_OPT_OUT, "FILE", help};
    cli_opts_add(o, &d, 1);
}

void cli_opts_add_data(cli_opts *o, unsigned roles, int primary) {
    static const cli_optdef train[] = {
        {"train-images", required_argument, CLI_OPT_TRAIN_IMAGES, "FILE", "training images (IDX, plain or .gz)"},
        {"train-labels", required_argument, CLI_OPT_TRAIN_LABELS, "FILE", "training labels (IDX)"},
        {"train-csv", required_argument, CLI_OPT_TRAIN_CSV, "FILE", "training data as CSV (see --label-column)"},
    };
    static const cli_optdef val[] = {
        {"val-images", required_argument, CLI_OPT_VAL_IMAGES, "FILE", "validation images (IDX)"},
        {"val-labels", required_argument, CLI_OPT_VAL_LABELS, "FILE", "validation labels (IDX)"},
        {"val-csv", required_argument, CLI_OPT_VAL_CSV, "FILE", "validation data as CSV"},
        {"val-split", required_argument, CLI_OPT_VAL_SPLIT, "F",
         "hold back the last fraction F of the training data for validation"},
    };
    static const cli_optdef test[] = {
        {"test-images", required_argument, CLI_OPT_TEST_IMAGES, "FILE", "test images (IDX)"},
        {"test-labels", required_argument, CLI_OPT_TEST_LABELS, "FILE", "test labels (IDX)"},
        {"test-csv", required_argument, CLI_OPT_TEST_CSV, "FILE", "test data as CSV"},
    };
    static const cli_optdef any[] = {
        {"images", required_argument, CLI_OPT_IMAGES, "FILE", "images (IDX) of the main data set"},
        {"labels", required_argument, CLI_OPT_LABELS, "FILE", "labels (IDX) of the main data set"},
        {"csv", required_argument, CLI_OPT_CSV, "FILE", "main data set as CSV"},
        {"label-column", required_argument, CLI_OPT_LABEL_COLUMN, "K",
         "CSV label column: 'last' (default), 'none' (no labels), or a 0-based index "
         "(negative counts from the end: -1 = last)"},
        {"offset", required_argument, CLI_OPT_OFFSET, "N", "skip the first N samples of the main data set"},
        {"limit", required_argument, CLI_OPT_LIMIT, "N", "use at most N samples of the main data set"},
        {"data-dir", required_argument, CLI_OPT_DATA_DIR, "DIR",
         "Fashion-MNIST directory for the default data (env MM_FASHION_DIR, default "
         CLI_DEFAULT_FASHION_DIR ")"},
    };
    (void)primary;
    if (roles & CLI_ROLE_BIT(CLI_ROLE_TRAIN)) cli_opts_add(o, train, sizeof train / sizeof train[0]);
    if (roles & CLI_ROLE_BIT(CLI_ROLE_VAL)) cli_opts_add(o, val, sizeof val / sizeof val[0]);
    if (roles & CLI_ROLE_BIT(CLI_ROLE_TEST)) cli_opts_add(o, test, sizeof test / sizeof test[0]);
    cli_opts_add(o, any, sizeof any / sizeof any[0]);
}

/* Settings that act as switches: a bare --nesterov means 1. */
static bool param_is_switch(const char *name) {
    return strcmp(name, "nesterov") == 0 || strcmp(name, "shuffle") == 0 ||
           strcmp(name, "restore_best") == 0;
}

#define CLI_MAX_PARAM 256

void cli_opts_add_optimizer(cli_opts *o, bool fit_flags) {
#define P(x) (CLI_OPT_PARAM_BASE + (x))
    static const cli_optdef friendly[] = {
        {"optimizer", required_argument, CLI_OPT_OPTIMIZER, "NAME", "sgd, adam or adamw"},
        {"lr", required_argument, CLI_OPT_LR, "X", "learning rate (= --learning-rate)"},
        {"momentum", required_argument, P(MM_OPT_MOMENTUM), "M", "momentum (sgd)"},
        {"nesterov", optional_argument, P(MM_OPT_NESTEROV), "0|1", "Nesterov momentum (sgd)"},
        {"weight-decay", required_argument, P(MM_OPT_WEIGHT_DECAY), "W", "weight decay"},
        {"clip-norm", required_argument, P(MM_OPT_CLIP_NORM), "C", "clip gradients to global L2 norm C"},
        {"schedule", required_argument, P(MM_OPT_SCHEDULE), "NAME",
         "learning-rate schedule: constant, step, exponential, cosine"},
        {"warmup-steps", required_argument, P(MM_OPT_WARMUP_STEPS), "N", "linear warmup steps (cosine)"},
        {"step-size", required_argument, P(MM_OPT_STEP_SIZE), "N", "steps between decays (step)"},
        {"gamma", required_argument, P(MM_OPT_GAMMA), "G", "decay factor (step, exponential)"},
        {"min-lr", required_argument, P(MM_OPT_MIN_LR), "X", "final learning rate (cosine)"},
    };
    static const cli_optdef fit[] = {
        {"epochs", required_argument, P(MM_OPT_EPOCHS), "N", "passes over the training data (default 3)"},
        {"batch-size", required_argument, P(MM_OPT_BATCH_SIZE), "N", "mini-batch size (default 64)"},
        {"seed", required_argument, P(MM_OPT_SEED), "N", "seed for initialisation and shuffling (default 42)"},
        {"patience", required_argument, P(MM_OPT_PATIENCE), "P",
         "stop after P epochs without validation improvement (0 = never)"},
    };
    static const cli_optdef set[] = {
        {"set", required_argument, CLI_OPT_SET, "NAME=VALUE",
         "any optimizer setting by its library name (repeatable; see below)"},
    };
#undef P
    cli_opts_add(o, friendly, sizeof friendly / sizeof friendly[0]);
    if (fit_flags) cli_opts_add(o, fit, sizeof fit / sizeof fit[0]);
    cli_opts_add(o, set, 1);
    /* One hidden flag per remaining library setting: beta1 -> --beta1. */
    for (int p = 0; p < CLI_MAX_PARAM; p++) {
        const char *name = mm_opt_param_name((mm_opt_param)p);
        if (!name || !*name || o->n >= CLI_MAX_OPTS) continue;
        char *buf = o->namebuf[o->n];
        size_t len = strlen(name);
        if (len >= sizeof o->namebuf[0]) continue;
        for (size_t i = 0; i <= len; i++) buf[i] = name[i] == '_' ? '-' : name[i];
        cli_optdef d = {buf, param_is_switch(name) ? optional_argument : required_argument,
                        CLI_OPT_PARAM_BASE + p, param_is_switch(name) ? "0|1" : "X", NULL};
        cli_opts_add(o, &d, 1);
    }
    mm_clear_error();
}

static char g_flag[64];

const char *cli_current_flag(void) { return g_flag; }

int cli_getopt(const cli *c, int argc, char **argv, const cli_opts *o, int *id,
               const char **arg) {
    opterr = 0;
    int longindex = -1;
    int r = getopt_long(argc, argv, ":h", o->longopts, &longindex);
    if (r == -1) return 0;
    if (longindex >= 0 && (size_t)longindex < o->n)
        snprintf(g_flag, sizeof g_flag, "--%s", o->longopts[longindex].name);
    else
        snprintf(g_flag, sizeof g_flag, "-%c", r > 0 && r < 128 ? r : '?');
    if (r == '?') {
        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (strncmp(bad, "--", 2) == 0 && optopt == 0)
            cli_usage_error(c, "unknown or ambiguous option '%s'", bad);
        else if (strncmp(bad, "--", 2) == 0) /* "--help=yes" (optopt is 'h') */
            cli_usage_error(c, "option '%s' takes no value", bad);
        else if (optopt && optopt < 256)
            cli_usage_error(c, "unknown option '-%c'", optopt);
        else
            cli_usage_error(c, "option '%s' takes no value", bad);
        return -1;
    }
    if (r == ':') {
        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        cli_usage_error(c, "option '%s' needs a value", bad);
        return -1;
    }
    *id = r;
    *arg = optarg;
    if (longindex >= 0 && (size_t)longindex < o->n && def_is_bool(&o->defs[longindex])) {
        /* "--shuffle 0": the next word is the flag's value only if it is a
         * yes/no word, so "--quiet model.mmf" keeps its positional. */
        if (!*arg && optind < argc && is_bool_word(argv[optind])) *arg = argv[optind++];
        bool b;
        if (cli_parse_bool(c, g_flag, *arg, &b)) return -1;
        *arg = b ? "1" : "0"; /* handlers see "1" or "0" (cli_bool_arg) */
    }
    return 1;
}

void cli_opts_print_help(const cli_opts *o, FILE *f) {
    bool any_bool = false;
    for (size_t i = 0; i < o->n; i++) {
        const cli_optdef *d = &o->defs[i];
        if (!d->help) continue;
        char left[64];
        if (def_is_bool(d)) {
            any_bool = true;
            if (d->arg)
                snprintf(left, sizeof left, "--%s [%s]", d->name, d->arg);
            else
                snprintf(left, sizeof left, "--%s", d->name);
        } else if (d->arg)
            snprintf(left, sizeof left, "--%s %s", d->name, d->arg);
        else
            snprintf(left, sizeof left, "--%s", d->name);
        if (strlen(left) > 22)
            fprintf(f, "  %s\n  %-22s  ", left, "");
        else
            fprintf(f, "  %-22s  ", left);
        cli_print_wrapped(f, d->help, 26, 26);
    }
    if (any_bool) {
        fputc('\n', f);
        cli_print_wrapped(f, "A yes/no flag (such as --quiet) alone means yes; it also takes a "
                             "value: --FLAG 0|1 (or true|false, yes|no, on|off) or --FLAG=VALUE.",
                          0, 0);
    }
}

void cli_print_optimizer_settings(FILE *f) {
    fprintf(f, "Optimizer settings (as --NAME VALUE with '-' for '_', or --set NAME=VALUE;\n"
               "yes/no settings, marked 'yes/no', also as a bare --NAME, meaning 1):\n");
    for (int p = 0; p < CLI_MAX_PARAM; p++) {
        const char *name = mm_opt_param_name((mm_opt_param)p);
        if (!name) continue;
        double lo = 0, hi = 0;
        char flag[48];
        size_t len = strlen(name);
        if (len >= sizeof flag) continue;
        for (size_t i = 0; i <= len; i++) flag[i] = name[i] == '_' ? '-' : name[i];
        /* Open bounds are reported as the nearest representable value. */
        if (mm_opt_param_bounds((mm_opt_param)p, &lo, &hi) == MM_OK)
            fprintf(f, "  --%-22s  %s%g, %g]%s\n", flag, lo > 0 && lo < 1e-300 ? "(" : "[",
                    lo > 0 && lo < 1e-300 ? 0.0 : lo, hi,
                    p == MM_OPT_SCHEDULE     ? "  constant|step|exponential|cosine"
                    : param_is_switch(name) ? "  yes/no"
                                            : "");
        else
            fprintf(f, "  --%s\n", flag);
    }
    mm_clear_error();
}

int cli_common_option(cli *c, int id, const char *arg, int *rc) {
    *rc = 0;
    switch (id) {
    case CLI_OPT_JSON:
        c->json = cli_bool_arg(arg);
        c->out = c->json ? stderr : stdout;
        return 1;
    case CLI_OPT_QUIET:
        c->quiet = cli_bool_arg(arg);
        return 1;
    case CLI_OPT_THREADS: {
        size_t n;
        if ((*rc = cli_parse_size(c, "--threads", arg, &n)) != 0) return 1;
        if (n < 1 || n > 1024) {
            *rc = cli_usage_error(c, "--threads: '%s' is out of range [1, 1024]", arg);
            return 1;
        }
        mm_status st = mm_set_num_threads((int)n);
        if (st != MM_OK) *rc = cli_lib_usage_error(c, st, "--threads");
        return 1;
    }
    default:
        return 0;
    }
}

/* ---- data -------------------------------------------------------------- */

void cli_data_init(cli_data_cfg *d, int primary) {
    memset(d, 0, sizeof *d);
    d->primary = primary;
    d->label_column = MM_CSV_LABEL_LAST;
}

int cli_data_option(const cli *c, cli_data_cfg *d, int id, const char *arg, int *rc) {
    *rc = 0;
    cli_data_src *p = &d->src[d->primary];
    switch (id) {
    case CLI_OPT_TRAIN_IMAGES: d->src[CLI_ROLE_TRAIN].images = arg; return 1;
    case CLI_OPT_TRAIN_LABELS: d->src[CLI_ROLE_TRAIN].labels = arg; return 1;
    case CLI_OPT_TRAIN_CSV: d->src[CLI_ROLE_TRAIN].csv = arg; return 1;
    case CLI_OPT_VAL_IMAGES: d->src[CLI_ROLE_VAL].images = arg; return 1;
    case CLI_OPT_VAL_LABELS: d->src[CLI_ROLE_VAL].labels = arg; return 1;
    case CLI_OPT_VAL_CSV: d->src[CLI_ROLE_VAL].csv = arg; return 1;
    case CLI_OPT_TEST_IMAGES: d->src[CLI_ROLE_TEST].images = arg; return 1;
    case CLI_OPT_TEST_LABELS: d->src[CLI_ROLE_TEST].labels = arg; return 1;
    case CLI_OPT_TEST_CSV: d->src[CLI_ROLE_TEST].csv = arg; return 1;
    case CLI_OPT_IMAGES: p->images = arg; return 1;
    case CLI_OPT_LABELS: p->labels = arg; return 1;
    case CLI_OPT_CSV: p->csv = arg; return 1;
    case CLI_OPT_DATA_DIR: d->data_dir = arg; return 1;
    case CLI_OPT_LABEL_COLUMN: {
        if (strcasecmp(arg, "last") == 0 || strcasecmp(arg, "none") == 0) {
            d->label_column = strcasecmp(arg, "last") == 0 ? MM_CSV_LABEL_LAST : MM_CSV_NO_LABELS;
            return 1;
        }
        long k;
        if ((*rc = cli_parse_long(c, "--label-column", arg, &k)) != 0) return 1;
        if (k > 1000000 || k < -1000000) {
            *rc = cli_usage_error(c, "--label-column: '%s' is out of range", arg);
            return 1;
        }
        /* Ours: -1 is the last column (as in Python and Lua). The
         * library's: MM_CSV_NO_LABELS (-1) is "no label column" and
         * MM_CSV_LABEL_LAST (-2) the last one. */
        d->label_column = k >= 0 ? (int)k : (int)k - 1;
        return 1;
    }
    case CLI_OPT_VAL_SPLIT: {
        double f;
        if ((*rc = cli_parse_double(c, "--val-split", arg, &f)) != 0) return 1;
        if (!(f >= 0 && f < 1)) {
            *rc = cli_usage_error(c, "--val-split: '%s' must be in [0, 1)", arg);
            return 1;
        }
        d->val_split = f;
        return 1;
    }
    case CLI_OPT_OFFSET:
        *rc = cli_parse_size(c, "--offset", arg, &d->offset);
        return 1;
    case CLI_OPT_LIMIT:
        *rc = cli_parse_size(c, "--limit", arg, &d->limit);
        return 1;
    default:
        return 0;
    }
}

bool cli_data_given(const cli_data_cfg *d, int role) {
    const cli_data_src *s = &d->src[role];
    return s->images || s->labels || s->csv;
}

int cli_data_require(const cli *c, const cli_data_cfg *d, int role, const char *purpose,
                     const cli_data_cfg *other, const char *other_name) {
    static const char *role_flag[] = {"train", "val", "test"};
    static const char *role_name[] = {"training", "validation", "test"};
    if (cli_data_given(d, role) || d->data_dir) return 0;
    /* the first data that was given: a role of d, else `other` */
    const cli_data_src *given = NULL;
    char what[64] = "";
    for (int r = 0; r < CLI_ROLE_COUNT && !given; r++)
        if (r != role && cli_data_given(d, r)) {
            given = &d->src[r];
            snprintf(what, sizeof what, "%s data", role_name[r]);
        }
    for (int r = 0; other && r < CLI_ROLE_COUNT && !given; r++)
        if (cli_data_given(other, r)) {
            given = &other->src[r];
            snprintf(what, sizeof what, "%s data", other_name ? other_name : "other");
        }
    if (!given) return 0; /* no data flag at all: the Fashion-MNIST default */
    const char *file = given->csv ? given->csv : given->images ? given->images : given->labels;
    char flag[96];
    if (given->csv && role == d->primary)
        snprintf(flag, sizeof flag, "--csv FILE (or --%s-csv FILE)", role_flag[role]);
    else if (given->csv)
        snprintf(flag, sizeof flag, "--%s-csv FILE", role_flag[role]);
    else if (role == d->primary)
        snprintf(flag, sizeof flag, "--images FILE --labels FILE");
    else
        snprintf(flag, sizeof flag, "--%s-images FILE --%s-labels FILE", role_flag[role],
                 role_flag[role]);
    return cli_usage_error(c,
                           "%s %s was given but no %s data: %s needs %s; Fashion-MNIST is the "
                           "default only when no data file is given at all (or with --data-dir DIR)",
                           what, file, role_name[role], purpose, flag);
}

const char *cli_fashion_dir(const cli_data_cfg *d) {
    if (d && d->data_dir) return d->data_dir;
    const char *env = getenv("MM_FASHION_DIR");
    return env && *env ? env : CLI_DEFAULT_FASHION_DIR;
}

int cli_load_fashion(const cli *c, const char *dir, const char *split, mm_dataset **out) {
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    /* Accept uncompressed copies too. */
    if (!cli_file_exists(images)) snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte", dir, split);
    if (!cli_file_exists(labels)) snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte", dir, split);
    if (!cli_file_exists(images) || !cli_file_exists(labels))
        return cli_runtime_error(
            c,
            "Fashion-MNIST not found in %s (%s-images-idx3-ubyte.gz missing): install Debian's "
            "dataset-fashion-mnist package, point --data-dir or MM_FASHION_DIR at a copy, or give "
            "data files (see 'mmaint %s --help')",
            dir, split, c->cmd);
    mm_status st = mm_dataset_load_idx(out, images, labels);
    if (st != MM_OK) return cli_lib_error(c, st, "loading %s", images);
    return 0;
}

static int apply_slice(const cli *c, const cli_data_cfg *d, mm_dataset **ds) {
    size_t n = mm_dataset_size(*ds);
    if (d->offset == 0 && (d->limit == 0 || d->limit >= n)) return 0;
    if (d->offset >= n)
        return cli_usage_error(c, "--offset %zu is past the end of the data (%zu samples)", d->offset, n);
    size_t count = n - d->offset;
    if (d->limit && d->limit < count) count = d->limit;
    mm_dataset *part = NULL;
    mm_status st = mm_dataset_slice(*ds, d->offset, count, &part);
    if (st != MM_OK) return cli_lib_error(c, st, "selecting samples");
    mm_dataset_free(*ds);
    *ds = part;
    return 0;
}

int cli_data_load(const cli *c, const cli_data_cfg *d, int role, bool use_default,
                  mm_dataset **out, char *desc, size_t desc_cap) {
    static const char *role_flag[] = {"train", "val", "test"};
    const cli_data_src *s = &d->src[role];
    *out = NULL;
    if (desc_cap) desc[0] = '\0';
    mm_status st;
    if (s->csv) {
        if (s->images || s->labels)
            return cli_usage_error(c, "give either --%s-csv or --%s-images/--%s-labels, not both",
                                   role_flag[role], role_flag[role], role_flag[role]);
        st = mm_dataset_load_csv(out, s->csv, d->label_column);
        if (st != MM_OK) return cli_lib_error(c, st, "loading %s", s->csv);
        snprintf(desc, desc_cap, "%s", s->csv);
    } else if (s->images || s->labels) {
        if (!s->images)
            return cli_usage_error(c, "--%s-labels needs --%s-images", role_flag[role], role_flag[role]);
        if (!s->labels)
            return cli_usage_error(c, "--%s-images needs --%s-labels", role_flag[role], role_flag[role]);
        st = mm_dataset_load_idx(out, s->images, s->labels);
        if (st != MM_OK) return cli_lib_error(c, st, "loading %s", s->images);
        snprintf(desc, desc_cap, "%s", s->images);
    } else if (use_default) {
        const char *dir = cli_fashion_dir(d);
        const char *split = role == CLI_ROLE_TEST ? "t10k" : "train";
        int rc = cli_load_fashion(c, dir, split, out);
        if (rc) return rc;
        snprintf(desc, desc_cap, "fashion-mnist/%s", split);
    } else {
        return 0;
    }
    if (role == d->primary) {
        int rc = apply_slice(c, d, out);
        if (rc) {
            mm_dataset_free(*out);
            *out = NULL;
            return rc;
        }
        if (d->offset || d->limit) {
            size_t len = strlen(desc);
            if (len < desc_cap)
                snprintf(desc + len, desc_cap - len, "[%zu:%zu]", d->offset,
                         d->offset + mm_dataset_size(*out));
        }
    }
    if (mm_dataset_size(*out) == 0) {
        mm_dataset_free(*out);
        *out = NULL;
        return cli_runtime_error(c, "%s: no samples", desc);
    }
    return 0;
}

int cli_check_data_fits(const cli *c, const mm_model *m, const mm_dataset *ds, const char *what) {
    size_t in = mm_model_input_dim(m), dim = mm_dataset_dim(ds);
    if (in != dim)
        return cli_runtime_error(c, "%s has %zu features per sample but the model takes %zu inputs",
                                 what, dim, in);
    if (!mm_dataset_labels(ds))
        return cli_runtime_error(c, "%s has no labels", what);
    size_t classes = mm_dataset_num_classes(ds), outs = mm_model_output_dim(m);
    if (classes > outs)
        return cli_runtime_error(c, "%s has labels up to %zu but the model has only %zu outputs",
                                 what, classes - 1, outs);
    const int32_t *lab = mm_dataset_labels(ds);
    for (size_t i = 0, n = mm_dataset_size(ds); i < n; i++)
        if (lab[i] < 0)
            return cli_runtime_error(c, "%s: sample %zu has a negative label (%d)", what, i,
                                     (int)lab[i]);
    return 0;
}

/* ---- optimizer settings ------------------------------------------------ */

void cli_optim_init(cli_optim_cfg *oc, mm_optim_kind default_kind) {
    memset(oc, 0, sizeof *oc);
    oc->kind = default_kind;
}

static int add_setting(const cli *c, cli_optim_cfg *oc, mm_opt_param p, const char *flag,
                       const char *text) {
    double v;
    const char *name = mm_opt_param_name(p);
    if (p == MM_OPT_SCHEDULE && text) {
        static const char *names[] = {"constant", "step", "exponential", "cosine"};
        static const mm_schedule vals[] = {MM_SCHEDULE_CONSTANT, MM_SCHEDULE_STEP,
                                           MM_SCHEDULE_EXPONENTIAL, MM_SCHEDULE_COSINE};
        bool found = false;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcasecmp(text, names[i]) == 0) {
                v = (double)vals[i];
                found = true;
            }
        if (!found) {
            /* a schedule number is accepted too; parsed quietly so a bad
             * value gets one message */
            char *end = NULL;
            v = strtod(text, &end);
            if (end == text || *end != '\0')
                return cli_usage_error(c, "%s: '%s' is not a schedule (constant, step, exponential, cosine)",
                                       flag, text);
        }
    } else if (name && param_is_switch(name) && (!text || strspn(text, "0123456789.") != strlen(text))) {
        bool b;
        int rc = cli_parse_bool(c, flag, text, &b);
        if (rc) return rc;
        v = b ? 1.0 : 0.0;
    } else {
        int rc = cli_parse_double(c, flag, text, &v);
        if (rc) return rc;
    }
    if (oc->n >= CLI_MAX_SETTINGS) return cli_usage_error(c, "too many optimizer settings");
    cli_setting *s = &oc->set[oc->n++];
    s->param = p;
    s->value = v;
    snprintf(s->flag, sizeof s->flag, "%s", flag);
    return 0;
}

int cli_optim_option(const cli *c, cli_optim_cfg *oc, int id, const char *arg, int *rc) {
    *rc = 0;
    if (id == CLI_OPT_OPTIMIZER) {
        mm_status st = mm_optim_kind_from_name(arg, &oc->kind);
        if (st != MM_OK) {
            *rc = cli_usage_error(c, "--optimizer: '%s' is not an optimizer (sgd, adam, adamw)", arg);
            mm_clear_error();
            return 1;
        }
        oc->kind_given = true;
        return 1;
    }
    if (id == CLI_OPT_LR) {
        *rc = add_setting(c, oc, MM_OPT_LEARNING_RATE, "--lr", arg);
        return 1;
    }
    if (id == CLI_OPT_SET) {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            *rc = cli_usage_error(c, "--set: '%s' is not NAME=VALUE", arg);
            return 1;
        }
        char name[40];
        size_t len = (size_t)(eq - arg);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, arg, len);
        name[len] = '\0';
        for (char *q = name; *q; q++)
            if (*q == '-') *q = '_';
        mm_opt_param p;
        if (mm_opt_param_from_name(name, &p) != MM_OK) {
            mm_clear_error();
            *rc = cli_usage_error(c, "--set: unknown optimizer setting '%s' (see 'mmaint %s --help')",
                                  name, c->cmd);
            return 1;
        }
        char flag[sizeof oc->set[0].flag];
        snprintf(flag, sizeof flag, "--set %s", name);
        *rc = add_setting(c, oc, p, flag, eq + 1);
        return 1;
    }
    if (id >= CLI_OPT_PARAM_BASE && id < CLI_OPT_PARAM_BASE + CLI_MAX_PARAM) {
        mm_opt_param p = (mm_opt_param)(id - CLI_OPT_PARAM_BASE);
        *rc = add_setting(c, oc, p, cli_current_flag(), arg);
        return 1;
    }
    return 0;
}

bool cli_optim_lookup(const cli_optim_cfg *oc, mm_opt_param p, double *value) {
    bool found = false;
    for (size_t i = 0; i < oc->n; i++)
        if (oc->set[i].param == p) {
            *value = oc->set[i].value;
            found = true;
        }
    return found;
}

void cli_optim_remove(cli_optim_cfg *oc, mm_opt_param p) {
    size_t j = 0;
    for (size_t i = 0; i < oc->n; i++)
        if (oc->set[i].param != p) oc->set[j++] = oc->set[i];
    oc->n = j;
}

int cli_optim_apply(const cli *c, const cli_optim_cfg *oc, mm_optimizer *opt) {
    /* Setting order, not command-line order, so --nesterov --momentum 0.9
     * works; for a setting given twice the last value wins. */
    bool done[CLI_MAX_SETTINGS] = {false};
    for (size_t k = 0; k < oc->n; k++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < oc->n; i++) {
            if (done[i]) continue;
            if (best == SIZE_MAX || oc->set[i].param < oc->set[best].param) best = i;
        }
        done[best] = true;
        const cli_setting *s = &oc->set[best];
        bool later = false;
        for (size_t i = best + 1; i < oc->n; i++)
            if (oc->set[i].param == s->param) later = true;
        if (later) continue;
        mm_status st = mm_optimizer_set(opt, s->param, s->value);
        if (st != MM_OK) return cli_lib_usage_error(c, st, "%s", s->flag);
    }
    return 0;
}

double cli_base_lr(const mm_optimizer *opt) {
    double lr;
    if (mm_optimizer_get(opt, MM_OPT_LEARNING_RATE, &lr) != MM_OK) {
        mm_clear_error();
        return mm_optimizer_current_lr(opt);
    }
    return lr;
}

json_t *cli_optimizer_json(const mm_optimizer *opt) {
    json_t *o = json_object();
    mm_optim_kind kind = mm_optimizer_kind(opt);
    const char *kname = mm_optim_kind_name(kind);
    json_object_set_new(o, "optimizer", json_string(kname ? kname : "?"));
    json_object_set_new(o, "learning_rate", cli_json_num(cli_base_lr(opt)));
    /* Only the settings that are in effect, with natural types. */
    double v;
    if (kind == MM_OPTIM_SGD && mm_optimizer_get(opt, MM_OPT_MOMENTUM, &v) == MM_OK && v > 0) {
        json_object_set_new(o, "momentum", cli_json_num(v));
        if (mm_optimizer_get(opt, MM_OPT_NESTEROV, &v) == MM_OK && v > 0)
            json_object_set_new(o, "nesterov", json_true());
    }
    if (mm_optimizer_get(opt, MM_OPT_WEIGHT_DECAY, &v) == MM_OK && v > 0)
        json_object_set_new(o, "weight_decay", cli_json_num(v));
    if (mm_optimizer_get(opt, MM_OPT_CLIP_NORM, &v) == MM_OK && v > 0)
        json_object_set_new(o, "clip_norm", cli_json_num(v));
    if (mm_optimizer_get(opt, MM_OPT_SCHEDULE, &v) == MM_OK && v != MM_SCHEDULE_CONSTANT) {
        static const char *names[] = {"constant", "step", "exponential", "cosine"};
        size_t i = (size_t)v;
        json_object_set_new(o, "schedule", i < 4 && (double)i == v ? json_string(names[i]) : cli_json_num(v));
    }
    mm_clear_error();
    return o;
}
