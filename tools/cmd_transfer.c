/* mmaint transfer — re-use a trained model's body for a new task: map the
 * labels to the new classes, take a small labelled set, freeze layers,
 * put on a new head, train, and compare before/after (and, with
 * --compare-scratch, against the same architecture trained from scratch on
 * the same small set). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_FROM = CLI_OPT_CMD_BASE,
    OPT_ARCH,
    OPT_FREEZE,
    OPT_HEAD,
    OPT_MAP,
    OPT_PER_CLASS,
    OPT_SCRATCH,
    OPT_HEAD_LR_SCALE,
};

/* Named label mappings (Fashion-MNIST class numbers). */
static const struct {
    const char *name, *map, *help;
} presets[] = {
    {"tops-bottoms-shoes", "0,1,0,1,0,2,0,2,2,2",
     "tops (T-shirt, pullover, coat, shirt) / bottoms+dresses (trouser, dress) / shoes+bags "
     "(sandal, sneaker, bag, ankle boot)"},
    {"without-shoes", "0,1,2,3,4,-,5,-,6,-", "the 7 classes that are not shoes (sandal, sneaker, "
                                              "ankle boot dropped; shirt and bag become 5 and 6)"},
    {"shoes", "-,-,-,-,-,0,-,1,-,2", "only sandal / sneaker / ankle boot, as 3 new classes"},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

static void transfer_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"from", required_argument, OPT_FROM, "FILE", "the trained model whose body is re-used"},
        {"arch", required_argument, OPT_ARCH, "SPEC",
         "instead of --from: a new model (e.g. 784-256-128-3:relu), trained from scratch"},
        {"freeze", required_argument, OPT_FREEZE, "SPEC",
         "layers to freeze: body (all but the head; default), none, or indices like 0,1"},
        {"head", required_argument, OPT_HEAD, "N",
         "replace the last layer by a new one with N outputs (default: the number of mapped "
         "classes when it differs from the model's outputs, or when --map is given)"},
        {"map", required_argument, OPT_MAP, "LIST|NAME",
         "new class of each old label, e.g. 0,1,0,1,0,2,0,2,2,2 ('-' drops the label), or a "
         "preset: tops-bottoms-shoes, without-shoes, shoes"},
        {"per-class", required_argument, OPT_PER_CLASS, "N",
         "train on N labelled samples per new class (seeded choice; default all)"},
        {"compare-scratch", no_argument, OPT_SCRATCH, NULL,
         "also train the same architecture from scratch on the same samples and compare"},
        {"head-lr-scale", required_argument, OPT_HEAD_LR_SCALE, "X",
         "learning-rate multiplier of the head relative to other trainable layers (default 1)"},
    };
    cli_opts_init(o);
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_out(o, "write the new model here (required)");
    cli_opts_add_optimizer(o, true);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_TEST),
                      CLI_ROLE_TRAIN);
    cli_opts_add_common(o, true);
}

void help_transfer(FILE *f) {
    cli_opts o;
    transfer_opts(&o);
    fprintf(f,
            "Usage: mmaint transfer --from FILE --out FILE [options]\n"
            "Transfer learning: keep a trained model's body (frozen), put a new head on it and\n"
            "train it for a new task from a small labelled set.\n\n"
            "Data: IDX (--train-images/--train-labels) or CSV (--train-csv), test data\n"
            "(--test-*); with no data files (or with --data-dir) Fashion-MNIST train/t10k\n"
            "from %s.\n"
            "Labels are translated with --map before anything else; samples whose label maps\n"
            "to '-' are dropped from training and test data.\n\nOptions:\n",
            CLI_DEFAULT_FASHION_DIR);
    cli_opts_print_help(&o, f);
    fprintf(f, "\nLabel presets (--map NAME):\n");
    for (size_t i = 0; i < N_PRESETS; i++)
        fprintf(f, "  %-20s %s\n    = %s\n", presets[i].name, presets[i].help, presets[i].map);
    fprintf(f,
            "\nExample:\n"
            "  mmaint train --epochs 2 --out base.mmf\n"
            "  mmaint transfer --from base.mmf --map tops-bottoms-shoes --per-class 100 \\\n"
            "      --freeze body --epochs 20 --lr 3e-3 --compare-scratch --out tbs.mmf\n");
}

/* ---- label mapping and the small labelled set (shared with demo) ------ */

int cli_parse_label_map(const cli *c, const char *text, int32_t *map, size_t cap, size_t *n,
                        size_t *classes) {
    for (size_t i = 0; i < N_PRESETS; i++)
        if (strcmp(text, presets[i].name) == 0) text = presets[i].map;
    *n = 0;
    int32_t top = -1;
    const char *p = text;
    while (*p) {
        if (*n == cap) return cli_usage_error(c, "--map: more than %zu entries", cap);
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            return cli_usage_error(c, "--map: empty or too long entry %zu in '%s'", *n, text);
        memcpy(item, p, len);
        item[len] = '\0';
        if (strcmp(item, "-") == 0) {
            map[(*n)++] = -1;
        } else {
            long v;
            int rc = cli_parse_long(c, "--map", item, &v);
            if (rc) return rc;
            if (v < 0 || v > 65535)
                return cli_usage_error(c, "--map: class %ld outside [0, 65535] (use '-' to drop)", v);
            map[(*n)++] = (int32_t)v;
            if ((int32_t)v > top) top = (int32_t)v;
        }
        p = end ? end + 1 : p + len;
    }
    if (top < 1)
        return cli_usage_error(c, "--map '%s' needs at least 2 new classes (0 and 1 at least)", text);
    *classes = (size_t)top + 1;
    return 0;
}

int cli_transfer_subset(const cli *c, const mm_dataset *ds, const int32_t *map, size_t map_n,
                        size_t per_class, uint64_t seed, size_t classes, mm_dataset **out) {
    *out = NULL;
    const size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    const int32_t *y = mm_dataset_labels(ds);
    const float *x = mm_dataset_features(ds);
    if (!y) return cli_runtime_error(c, "the data has no labels");
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *taken = calloc(classes, sizeof *taken);
    if (!order || !taken) {
        free(order);
        free(taken);
        return cli_runtime_error(c, "out of memory");
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (per_class) { /* seeded Fisher-Yates (splitmix64) */
        uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
        for (size_t i = n; i > 1; i--) {
            s += 0x9E3779B97F4A7C15ULL;
            uint64_t z = s;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            z ^= z >> 31;
            size_t j = (size_t)(z % i);
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
    }
    float *nx = malloc((n ? n : 1) * dim * sizeof *nx);
    int32_t *ny = malloc((n ? n : 1) * sizeof *ny);
    size_t k = 0;
    int rc = 0;
    if (!nx || !ny) {
        rc = cli_runtime_error(c, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const size_t r = order[i];
        if (y[r] < 0 || (size_t)y[r] >= map_n) {
            rc = cli_usage_error(c, "--map has %zu entries but the data has label %d", map_n,
                                 (int)y[r]);
            goto done;
        }
        const int32_t nl = map[y[r]];
        if (nl < 0 || (per_class && taken[nl] >= per_class)) continue;
        taken[nl]++;
        memcpy(nx + k * dim, x + r * dim, dim * sizeof *nx);
        ny[k++] = nl;
    }
    if (k == 0) {
        rc = cli_runtime_error(c, "no samples left after --map");
        goto done;
    }
    mm_status st = mm_dataset_create(out, nx, ny, k, dim);
    if (st != MM_OK) rc = cli_lib_error(c, st, "building the mapped dataset");
done:
    free(order);
    free(taken);
    free(nx);
    free(ny);
    return rc;
}

/* ---- the command -------------------------------------------------------- */

typedef struct transfer_args {
    const char *from, *arch, *out, *freeze, *map_text;
    size_t head, per_class;
    bool head_given, scratch;
    double head_lr_scale;
    cli_optim_cfg optim;
    cli_data_cfg data;
} transfer_args;

/* Freeze per spec: "body", "none", or a list of indices. */
static int apply_freeze(const cli *c, mm_model *m, const char *spec) {
    const size_t L = mm_model_num_layers(m);
    for (size_t l = 0; l < L; l++) {
        bool frozen = false;
        if (strcmp(spec, "body") == 0) {
            frozen = l + 1 < L;
        } else if (strcmp(spec, "none") != 0) {
            for (const char *p = spec; *p;) {
                char *end;
                unsigned long v = strtoul(p, &end, 10);
                if (end == p || (*end && *end != ','))
                    return cli_usage_error(c, "--freeze: '%s' is not body, none or a list of "
                                              "layer indices", spec);
                if (v >= L)
                    return cli_usage_error(c, "--freeze: layer %lu does not exist (the model has "
                                              "%zu layers)", v, L);
                if (v == l) frozen = true;
                p = *end ? end + 1 : end;
            }
        }
        mm_status st = mm_model_set_trainable(m, l, !frozen);
        if (st != MM_OK) return cli_lib_error(c, st, "--freeze");
    }
    return 0;
}

static double accuracy_of(const mm_model *m, const mm_dataset *ds) {
    double acc = NAN;
    if (mm_model_evaluate(m, mm_dataset_features(ds), mm_dataset_labels(ds), NULL,
                          mm_dataset_size(ds), NULL, &acc) != MM_OK)
        acc = NAN;
    return acc;
}

/* Create an optimizer for m with the user's settings, fit, time it. */
static int train_model(const cli *c, const transfer_args *a, mm_model *m, const mm_dataset *train,
                       double *seconds, cli_fit_summary *fs) {
    mm_optimizer *opt = NULL;
    mm_status st = mm_optimizer_create(&opt, m, a->optim.kind);
    if (st != MM_OK) return cli_lib_error(c, st, "creating the optimizer");
    int rc = cli_optim_apply(c, &a->optim, opt);
    if (!rc && a->head_lr_scale != 1.0) {
        st = mm_optimizer_set_layer_lr_scale(opt, mm_model_num_layers(m) - 1, a->head_lr_scale);
        if (st != MM_OK) rc = cli_lib_usage_error(c, st, "--head-lr-scale");
    }
    const double t0 = cli_now();
    if (!rc) rc = cli_fit(c, opt, train, NULL, fs);
    *seconds = cli_now() - t0;
    mm_optimizer_free(opt);
    return rc;
}

static int run_transfer(cli *c, transfer_args *a) {
    int rc = 0;
    mm_dataset *train_raw = NULL, *test_raw = NULL, *train = NULL, *test = NULL;
    mm_model *model = NULL, *scratch = NULL;
    json_t *result = json_object();
    cli_fit_summary fs, ss;
    memset(&fs, 0, sizeof fs);
    memset(&ss, 0, sizeof ss);
    char train_desc[1200], test_desc[1200];
    int32_t map[1024];
    size_t map_n = 0, classes = 0;

    double seedv = 42, epochs = 10;
    if (!cli_optim_lookup(&a->optim, MM_OPT_SEED, &seedv) && a->optim.n < CLI_MAX_SETTINGS)
        a->optim.set[a->optim.n++] = (cli_setting){MM_OPT_SEED, seedv, "--seed"};
    if (!cli_optim_lookup(&a->optim, MM_OPT_EPOCHS, &epochs) && a->optim.n < CLI_MAX_SETTINGS)
        a->optim.set[a->optim.n++] = (cli_setting){MM_OPT_EPOCHS, epochs, "--epochs"};
    const uint64_t seed = (uint64_t)seedv;
    if (a->map_text && (rc = cli_parse_label_map(c, a->map_text, map, 1024, &map_n, &classes)))
        goto done;

    if ((rc = cli_data_require(c, &a->data, CLI_ROLE_TRAIN, "training the new head", NULL, NULL)))
        goto done;
    if (a->from) {
        if ((rc = cli_load_model(c, a->from, &model))) goto done;
    } else {
        mm_status st = mm_model_create_from_spec(&model, a->arch, seed);
        if (st != MM_OK) {
            rc = cli_lib_usage_error(c, st, "--arch '%s'", a->arch);
            goto done;
        }
    }
    bool defaults = !cli_data_given(&a->data, CLI_ROLE_TRAIN) &&
                    !cli_data_given(&a->data, CLI_ROLE_TEST);
    if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TRAIN, true, &train_raw, train_desc,
                            sizeof train_desc)) ||
        (rc = cli_data_load(c, &a->data, CLI_ROLE_TEST, defaults, &test_raw, test_desc,
                            sizeof test_desc)))
        goto done;
    if (!a->map_text) { /* identity over the data's classes */
        classes = mm_dataset_num_classes(train_raw);
        map_n = classes < 1024 ? classes : 1024;
        for (size_t i = 0; i < map_n; i++) map[i] = (int32_t)i;
    }
    if ((rc = cli_transfer_subset(c, train_raw, map, map_n, a->per_class, seed, classes, &train)))
        goto done;
    if (test_raw && (rc = cli_transfer_subset(c, test_raw, map, map_n, 0, seed, classes, &test)))
        goto done;

    /* The new head. */
    size_t head = a->head_given ? a->head : classes;
    const bool replace = a->from && (a->head_given || a->map_text ||
                                     mm_model_output_dim(model) != head);
    if (head < classes) {
        rc = cli_usage_error(c, "--head %zu is smaller than the %zu mapped classes", head, classes);
        goto done;
    }
    const size_t old_out = mm_model_output_dim(model);
    if (replace) {
        mm_status st = mm_model_replace_head(model, head, MM_ACT_IDENTITY, seed);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "replacing the head");
            goto done;
        }
    }
    if ((rc = apply_freeze(c, model, a->from ? (a->freeze ? a->freeze : "body") : "none")))
        goto done;
    if ((rc = cli_check_data_fits(c, model, train, train_desc))) goto done;

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    size_t n_frozen = 0;
    for (size_t l = 0; l < mm_model_num_layers(model); l++)
        n_frozen += mm_model_layer_trainable(model, l) == 0;
    cli_say(c, "model: %s%s%s; %zu of %zu layers frozen%s\n", arch, a->from ? " from " : "",
            a->from ? a->from : " (new)", n_frozen, mm_model_num_layers(model),
            replace ? ", new head" : "");
    cli_say(c, "train: %zu samples in %zu classes (%s%s)\n", mm_dataset_size(train), classes,
            train_desc, a->per_class ? ", --per-class" : "");
    const double before = test ? accuracy_of(model, test) : NAN;
    if (test) fprintf(c->out, "before: test accuracy %.4f (%zu samples)\n", before, mm_dataset_size(test));

    double secs = 0;
    if ((rc = train_model(c, a, model, train, &secs, &fs))) goto done;
    const double after = test ? accuracy_of(model, test) : NAN;
    fprintf(c->out, "after:  test accuracy %.4f, trained in %.2f s (%u epochs)\n", after, secs,
            fs.epochs_run);

    double scratch_acc = NAN, scratch_secs = NAN;
    if (a->scratch) {
        /* the same architecture, new weights, nothing frozen */
        char spec[256];
        cli_arch_string(model, spec, sizeof spec);
        mm_status st = mm_model_create_from_spec(&scratch, spec, seed);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "building the from-scratch model %s", spec);
            goto done;
        }
        if ((rc = train_model(c, a, scratch, train, &scratch_secs, &ss))) goto done;
        scratch_acc = test ? accuracy_of(scratch, test) : NAN;
        fprintf(c->out, "scratch: test accuracy %.4f, trained in %.2f s (same data and settings)\n",
                scratch_acc, scratch_secs);
    }

    json_t *ev = json_object();
    if (a->from) json_object_set_new(ev, "parent", json_string(a->from));
    if (a->map_text) json_object_set_new(ev, "map", json_string(a->map_text));
    json_object_set_new(ev, "samples", json_integer((json_int_t)mm_dataset_size(train)));
    json_object_set_new(ev, "frozen_layers", json_integer((json_int_t)n_frozen));
    json_object_set_new(ev, "test_accuracy", cli_json_num(after));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    mm_status st = mm_model_add_lineage(model, "transfer", detail);
    free(detail);
    if (st == MM_OK) st = mm_model_save(model, a->out);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "saving %s", a->out);
        goto done;
    }
    fprintf(c->out, "saved %s\n", a->out);

    json_object_set_new(result, "command", json_string("transfer"));
    json_object_set_new(result, "model", json_string(a->out));
    json_object_set_new(result, "arch", json_string(arch));
    json_object_set_new(result, "old_outputs", json_integer((json_int_t)old_out));
    json_object_set_new(result, "classes", json_integer((json_int_t)classes));
    json_object_set_new(result, "frozen_layers", json_integer((json_int_t)n_frozen));
    json_object_set_new(result, "train_samples", json_integer((json_int_t)mm_dataset_size(train)));
    json_object_set_new(result, "test_samples",
                        json_integer(test ? (json_int_t)mm_dataset_size(test) : 0));
    json_object_set_new(result, "before_accuracy", cli_json_num(before));
    json_object_set_new(result, "test_accuracy", cli_json_num(after));
    json_object_set_new(result, "seconds", cli_json_num(secs));
    json_object_set_new(result, "scratch_accuracy", cli_json_num(scratch_acc));
    json_object_set_new(result, "scratch_seconds", cli_json_num(scratch_secs));
    if (c->json) {
        cli_json_print(result);
        result = NULL;
    }
done:
    json_decref(result);
    json_decref(fs.epochs);
    json_decref(ss.epochs);
    mm_model_free(model);
    mm_model_free(scratch);
    mm_dataset_free(train_raw);
    mm_dataset_free(test_raw);
    mm_dataset_free(train);
    mm_dataset_free(test);
    return rc;
}

int cmd_transfer(int argc, char **argv) {
    cli c;
    cli_init(&c, "transfer");
    transfer_args a;
    memset(&a, 0, sizeof a);
    a.head_lr_scale = 1.0;
    cli_optim_init(&a.optim, MM_OPTIM_ADAM);
    cli_data_init(&a.data, CLI_ROLE_TRAIN);
    cli_opts o;
    transfer_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_transfer(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &a.data, id, arg, &r) ||
            cli_optim_option(&c, &a.optim, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        switch (id) {
        case OPT_FROM: a.from = arg; break;
        case OPT_ARCH: a.arch = arg; break;
        case OPT_FREEZE: a.freeze = arg; break;
        case OPT_MAP: a.map_text = arg; break;
        case OPT_SCRATCH: a.scratch = cli_bool_arg(arg); break;
        case OPT_HEAD:
            if ((r = cli_parse_size(&c, "--head", arg, &a.head))) return r;
            if (a.head < 2) return cli_usage_error(&c, "--head must be at least 2");
            a.head_given = true;
            break;
        case OPT_PER_CLASS:
            if ((r = cli_parse_size(&c, "--per-class", arg, &a.per_class))) return r;
            break;
        case OPT_HEAD_LR_SCALE:
            if ((r = cli_parse_double(&c, "--head-lr-scale", arg, &a.head_lr_scale))) return r;
            break;
        case CLI_OPT_OUT: a.out = arg; break;
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
    if (!a.out) return cli_usage_error(&c, "--out FILE is required");
    if (!a.from == !a.arch) return cli_usage_error(&c, "give --from FILE (or --arch SPEC), exactly one");
    if (a.arch && a.freeze && strcmp(a.freeze, "none") != 0)
        return cli_usage_error(&c, "--freeze needs --from (a new --arch model trains every layer)");
    return run_transfer(&c, &a);
}
