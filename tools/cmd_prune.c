/* mmaint prune — make a model smaller and faster with mm_pruner, and show
 * what it cost: accuracy, parameters, non-zeros, bytes, file size and
 * inference speed before and after, and what became of every layer.
 *
 * One shot (mm_pruner_apply, then optional fine-tuning with the masks
 * honoured) or gradual (the polynomial schedule of Zhu & Gupta, driven by
 * mm_optimizer_fit through mm_pruner_attach); then mm_pruner_finalize turns
 * the masks into smaller dense layers (structured) or sparse layers
 * (unstructured) and the model is saved. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    OPT_CRITERION = CLI_OPT_CMD_BASE,
    OPT_SPARSITY,
    OPT_SCHEDULE,
    OPT_INITIAL_SPARSITY,
    OPT_BEGIN_STEP,
    OPT_END_STEP,
    OPT_FREQUENCY,
    OPT_POWER,
    OPT_FT_EPOCHS,
    OPT_FORMAT,
    OPT_CAL_SAMPLES,
    OPT_KEEP_ORDER,
};

#define DEFAULT_CAL_SAMPLES 1024

static void prune_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"criterion", required_argument, OPT_CRITERION, "NAME",
         "magnitude (per layer, default), global (magnitude ranked across layers), random, "
         "neuron-l1, neuron-l2, neuron-activation (structured: whole neurons)"},
        {"sparsity", required_argument, OPT_SPARSITY, "S",
         "target fraction of weights (or of hidden neurons) to remove, in [0, 1); default 0.5"},
        {"schedule", required_argument, OPT_SCHEDULE, "NAME",
         "one-shot (default) or polynomial (gradual, during --fine-tune-epochs)"},
        {"initial-sparsity", required_argument, OPT_INITIAL_SPARSITY, "S",
         "polynomial: sparsity at --begin-step (default 0)"},
        {"begin-step", required_argument, OPT_BEGIN_STEP, "N",
         "polynomial: first pruning step (optimizer updates; default 0)"},
        {"end-step", required_argument, OPT_END_STEP, "N",
         "polynomial: step at which the target is reached (default: half of the fine-tuning steps)"},
        {"frequency", required_argument, OPT_FREQUENCY, "N",
         "polynomial: steps between mask updates (default: 10 updates from begin to end)"},
        {"power", required_argument, OPT_POWER, "P", "polynomial: exponent (default 3)"},
        {"fine-tune-epochs", required_argument, OPT_FT_EPOCHS, "N",
         "train N epochs on the training data after one-shot pruning, or while pruning "
         "gradually (default 0; polynomial needs N >= 1)"},
        {"epochs", required_argument, OPT_FT_EPOCHS, "N", NULL}, /* alias */
        {"format", required_argument, OPT_FORMAT, "NAME",
         "unstructured result: auto (sparse layers where faster than dense, default), sparse "
         "(every pruned layer sparse: smallest file), dense (dense layers with zeros)"},
        {"keep-neuron-order", no_argument, OPT_KEEP_ORDER, NULL,
         "do not reorder hidden neurons of sparse layers for speed (they stay at their "
         "indices; the reordered model computes the same function)"},
        {"calibration-samples", required_argument, OPT_CAL_SAMPLES, "N",
         "neuron-activation: training samples for the mean activations (default 1024)"},
        {"lr-schedule", required_argument, CLI_OPT_PARAM_BASE + MM_OPT_SCHEDULE, "NAME",
         "fine-tuning learning-rate schedule: constant, step, exponential, cosine"},
    };
    cli_opts_init(o);
    cli_opts_add_out(o, "write the pruned model here (required; may equal MODEL)");
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_optimizer(o, true);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_TEST), CLI_ROLE_TEST);
    cli_opts_add_common(o, true);
}

void help_prune(FILE *f) {
    cli_opts o;
    prune_opts(&o);
    fprintf(f,
            "Usage: mmaint prune MODEL --out FILE [options]\n"
            "Prune a model: remove the least important weights (unstructured) or hidden\n"
            "neurons (structured), optionally fine-tune, and make it physical: structured\n"
            "pruning leaves smaller dense layers, unstructured pruning sparse layers. Prints\n"
            "test accuracy, parameters, non-zeros, bytes, file size and inference samples/s\n"
            "(batch 1 and 256, 1 thread unless --threads) before and after, and the kind and\n"
            "sparsity of every layer.\n\n"
            "Data: test data (--test-*, or --images/--labels/--csv) for accuracy and speed;\n"
            "training data (--train-*) for fine-tuning and calibration, loaded only when\n"
            "needed. Default (no data file given, or --data-dir): Fashion-MNIST from\n"
            "%s.\n"
            "Fine-tuning uses a new optimizer (default adam, lr 0.001, batch 64, seed 42);\n"
            "the optimizer flags are those of 'mmaint train' (--schedule is the pruning\n"
            "schedule here: use --lr-schedule for the learning rate's).\n\n"
            "Options:\n",
            CLI_DEFAULT_FASHION_DIR);
    cli_opts_print_help(&o, f);
    fputc('\n', f);
    cli_print_optimizer_settings(f);
    fprintf(f, "\nExamples:\n"
               "  mmaint prune model.mmf --criterion global --sparsity 0.9 --schedule polynomial \\\n"
               "      --fine-tune-epochs 2 --out model-pruned.mmf\n"
               "  mmaint prune model.mmf --criterion neuron-l1 --sparsity 0.5 --fine-tune-epochs 2 \\\n"
               "      --out model-small.mmf\n");
}

/* ---- arguments ------------------------------------------------------------ */

typedef struct prune_args {
    const char *model, *out;
    mm_prune_criterion criterion;
    double sparsity;
    bool polynomial;
    /* polynomial settings given on the command line (NAN = default) */
    double initial, begin, end, frequency, power;
    size_t ft_epochs;
    bool ft_given;
    int format;
    bool keep_order;
    size_t cal_samples;
    bool cal_given;
    cli_optim_cfg optim;
    cli_data_cfg data;
} prune_args;

static int parse_criterion(const cli *c, const char *text, mm_prune_criterion *out) {
    char name[64];
    size_t len = strlen(text);
    if (len >= sizeof name) len = sizeof name - 1;
    for (size_t i = 0; i < len; i++) name[i] = text[i] == '-' ? '_' : text[i];
    name[len] = '\0';
    if (strcasecmp(name, "global") == 0) snprintf(name, sizeof name, "magnitude_global");
    if (strcasecmp(name, "l1") == 0) snprintf(name, sizeof name, "magnitude");
    if (strcmp(name, "user") == 0 || strcmp(name, "neuron_user") == 0)
        return cli_usage_error(c, "--criterion: '%s' needs importance scores from a program "
                                  "(mm_pruner_set_scores); not available here",
                               text);
    if (mm_prune_criterion_from_name(name, out) != MM_OK) {
        mm_clear_error();
        return cli_usage_error(c,
                               "--criterion: '%s' is not a criterion (magnitude, global, random, "
                               "neuron-l1, neuron-l2, neuron-activation)",
                               text);
    }
    return 0;
}

static bool is_structured(mm_prune_criterion k) {
    return k == MM_PRUNE_NEURON_L1 || k == MM_PRUNE_NEURON_L2 || k == MM_PRUNE_NEURON_ACTIVATION ||
           k == MM_PRUNE_NEURON_USER;
}

/* Parse a number for a pruner setting and check it against the library's
 * bounds now, so that a bad value is a usage error before any work. */
static int parse_prune_setting(const cli *c, const char *flag, const char *text, mm_prune_param p,
                               double *out) {
    int rc = cli_parse_double(c, flag, text, out);
    if (rc) return rc;
    mm_pruner *probe = NULL;
    mm_status st = mm_pruner_create(&probe, MM_PRUNE_MAGNITUDE);
    if (st == MM_OK) st = mm_pruner_set(probe, p, *out);
    mm_pruner_free(probe);
    if (st != MM_OK) return cli_lib_usage_error(c, st, "%s", flag);
    return 0;
}

/* ---- measurements ---------------------------------------------------------- */

static json_t *layers_json(const mm_model *m) {
    json_t *a = json_array();
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        const char *kind = NULL;
        size_t in = 0, out = 0;
        double sp = NAN;
        mm_model_layer_info(m, l, &kind, &in, &out, NULL);
        mm_model_layer_sparsity(m, l, &sp);
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(kind ? kind : "?"));
        json_object_set_new(o, "inputs", json_integer((json_int_t)in));
        json_object_set_new(o, "outputs", json_integer((json_int_t)out));
        json_object_set_new(o, "sparsity", cli_json_num(sp));
        json_array_append_new(a, o);
    }
    mm_clear_error();
    return a;
}

static json_t *stats_json(const cli_model_stats *s, const mm_model *m) {
    json_t *o = cli_model_stats_json(s);
    json_object_set_new(o, "layers", layers_json(m));
    return o;
}

static void pct_change(char *buf, size_t cap, double before, double after) {
    if (before > 0 && isfinite(after))
        snprintf(buf, cap, "%+.1f%%", 100.0 * (after - before) / before);
    else
        snprintf(buf, cap, "-");
}

static void print_table(FILE *f, const cli_model_stats *b, const cli_model_stats *a,
                        const mm_model *mb, const mm_model *ma) {
    char x[32], y[32], ch[48];
    fprintf(f, "\n%-22s %14s %14s  %s\n", "", "before", "after", "change");
    if (isfinite(b->accuracy)) {
        fprintf(f, "%-22s %14.4f %14.4f  %+.2f points\n", "test accuracy", b->accuracy,
                a->accuracy, 100.0 * (a->accuracy - b->accuracy));
        fprintf(f, "%-22s %14.4f %14.4f\n", "test loss", b->loss, a->loss);
    }
    pct_change(ch, sizeof ch, (double)b->params, (double)a->params);
    fprintf(f, "%-22s %14zu %14zu  %s\n", "parameters", b->params, a->params, ch);
    pct_change(ch, sizeof ch, (double)b->nonzero, (double)a->nonzero);
    fprintf(f, "%-22s %14zu %14zu  %s\n", "non-zeros", b->nonzero, a->nonzero, ch);
    cli_format_bytes(b->bytes, x, sizeof x);
    cli_format_bytes(a->bytes, y, sizeof y);
    snprintf(ch, sizeof ch, "%.1f%% of before", b->bytes ? 100.0 * (double)a->bytes / (double)b->bytes : 0.0);
    fprintf(f, "%-22s %14s %14s  %s\n", "parameter bytes", x, y, ch);
    cli_format_bytes(b->file_size < 0 ? 0 : (uint64_t)b->file_size, x, sizeof x);
    cli_format_bytes(a->file_size < 0 ? 0 : (uint64_t)a->file_size, y, sizeof y);
    snprintf(ch, sizeof ch, "%.1f%% of before",
             b->file_size > 0 ? 100.0 * (double)a->file_size / (double)b->file_size : 0.0);
    fprintf(f, "%-22s %14s %14s  %s\n", "file size", x, y, ch);
    fprintf(f, "%-22s %14.0f %14.0f  %.2fx\n", "batch 1 samples/s", b->b1, a->b1, a->b1 / b->b1);
    fprintf(f, "%-22s %14.0f %14.0f  %.2fx\n", "batch 256 samples/s", b->b256, a->b256,
            a->b256 / b->b256);
    fprintf(f, "\n%-6s %-28s %s\n", "layer", "before", "after");
    for (size_t l = 0; l < mm_model_num_layers(mb); l++) {
        char col[2][40];
        const mm_model *ms[2] = {mb, ma};
        for (int k = 0; k < 2; k++) {
            const char *kind = NULL;
            size_t in = 0, out = 0;
            double sp = NAN;
            if (mm_model_layer_info(ms[k], l, &kind, &in, &out, NULL) != MM_OK ||
                mm_model_layer_sparsity(ms[k], l, &sp) != MM_OK) {
                snprintf(col[k], sizeof col[k], "?");
                continue;
            }
            char shape[24];
            snprintf(shape, sizeof shape, "%zux%zu", in, out);
            snprintf(col[k], sizeof col[k], "%-6s %-9s %5.1f%%", kind ? kind : "?", shape,
                     100.0 * sp);
        }
        fprintf(f, "%-6zu %-28s %s\n", l, col[0], col[1]);
    }
    mm_clear_error();
}

/* ---- the command -------------------------------------------------------------- */

static int run_prune(cli *c, prune_args *a) {
    int rc = 0;
    mm_model *model = NULL, *orig = NULL;
    mm_dataset *train = NULL, *test = NULL;
    mm_pruner *p = NULL;
    mm_optimizer *opt = NULL;
    json_t *result = json_object(), *sched = NULL;
    cli_fit_summary fs;
    memset(&fs, 0, sizeof fs);
    fs.epochs = json_array();
    char train_desc[1200] = "", test_desc[1200] = "";
    const bool structured = is_structured(a->criterion);
    const bool need_train = a->ft_epochs > 0 || a->criterion == MM_PRUNE_NEURON_ACTIVATION;
    double acc_pruned = NAN;
    mm_status st;

    /* Pruner settings first: usage errors before any loading. */
    st = mm_pruner_create(&p, a->criterion);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_SPARSITY, a->sparsity);
    if (st != MM_OK) {
        rc = cli_lib_usage_error(c, st, "--sparsity");
        goto done;
    }
    double seedv = 42;
    cli_optim_lookup(&a->optim, MM_OPT_SEED, &seedv);
    if (!(seedv >= 0 && seedv <= 9007199254740992.0 && seedv == floor(seedv))) {
        rc = cli_usage_error(c, "--seed: '%g' is not a whole number >= 0", seedv);
        goto done;
    }
    if (!cli_optim_lookup(&a->optim, MM_OPT_SEED, &seedv) && a->optim.n < CLI_MAX_SETTINGS)
        a->optim.set[a->optim.n++] = (cli_setting){MM_OPT_SEED, seedv, "--seed"};
    mm_pruner_set(p, MM_PRUNE_SEED, seedv);
    mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, a->format);
    mm_pruner_set(p, MM_PRUNE_REORDER_NEURONS, a->keep_order ? 0 : 1);
    if (need_train &&
        (rc = cli_data_require(c, &a->data, CLI_ROLE_TRAIN,
                               a->ft_epochs > 0 ? "--fine-tune-epochs" : "--criterion neuron-activation",
                               NULL, NULL)))
        goto done;

    if ((rc = cli_load_model(c, a->model, &model))) goto done;
    st = mm_model_clone(model, &orig);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "copying the model");
        goto done;
    }

    /* Data: test data by default only when no data flag at all. */
    bool defaults = !cli_data_given(&a->data, CLI_ROLE_TRAIN) &&
                    !cli_data_given(&a->data, CLI_ROLE_TEST);
    if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TEST, defaults, &test, test_desc, sizeof test_desc)))
        goto done;
    if (test && (rc = cli_check_data_fits(c, model, test, test_desc))) goto done;
    if (need_train) {
        if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TRAIN, true, &train, train_desc,
                                sizeof train_desc)))
            goto done;
        if ((rc = cli_check_data_fits(c, model, train, train_desc))) goto done;
    }

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    cli_say(c, "model: %s (%s), %zu parameters\n", a->model, arch, mm_model_num_params(model));
    if (test) cli_say(c, "test: %s, %zu samples\n", test_desc, mm_dataset_size(test));
    if (train) cli_say(c, "train: %s, %zu samples\n", train_desc, mm_dataset_size(train));

    cli_model_stats before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    if ((rc = cli_measure_model(c, model, test, &before))) goto done;
    before.file_size = cli_file_size(a->model);

    /* Calibration for the activation criterion. */
    if (a->criterion == MM_PRUNE_NEURON_ACTIVATION) {
        size_t n = mm_dataset_size(train);
        size_t k = a->cal_samples < n ? a->cal_samples : n;
        st = mm_pruner_calibrate(p, model, mm_dataset_features(train), k);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "calibrating on %zu samples of %s", k, train_desc);
            goto done;
        }
        cli_say(c, "calibrated mean activations on %zu samples of %s\n", k, train_desc);
    }

    /* Optimizer for fine-tuning. */
    double batch = 64;
    uint64_t steps_total = 0;
    if (a->ft_epochs > 0) {
        st = mm_optimizer_create(&opt, model, a->optim.kind);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "creating the %s optimizer", mm_optim_kind_name(a->optim.kind));
            goto done;
        }
        if ((rc = cli_optim_apply(c, &a->optim, opt))) goto done;
        st = mm_optimizer_set(opt, MM_OPT_EPOCHS, (double)a->ft_epochs);
        if (st != MM_OK) {
            rc = cli_lib_usage_error(c, st, "--fine-tune-epochs");
            goto done;
        }
        mm_optimizer_get(opt, MM_OPT_BATCH_SIZE, &batch);
        size_t b = batch >= 1 ? (size_t)batch : 1;
        steps_total = (uint64_t)a->ft_epochs * ((mm_dataset_size(train) + b - 1) / b);
    }

    const char *crit_name = mm_prune_criterion_name(a->criterion);
    sched = json_object();
    if (a->polynomial) {
        /* Defaults: prune over the first half of fine-tuning, then recover;
         * about ten mask updates on the way. */
        double t0 = isnan(a->begin) ? 0 : a->begin;
        double t1 = isnan(a->end) ? floor((double)steps_total / 2) : a->end;
        if (t1 <= t0) t1 = t0 + 1;
        double freq = isnan(a->frequency) ? fmax(1, floor((t1 - t0) / 10)) : a->frequency;
        if (t1 >= (double)steps_total) {
            rc = cli_usage_error(c,
                                 "--end-step %.0f must be below the %llu steps of fine-tuning "
                                 "(%zu epoch(s)): the target sparsity holds from the step after "
                                 "it; use a smaller --end-step or more --fine-tune-epochs",
                                 t1, (unsigned long long)steps_total, a->ft_epochs);
            goto done;
        }
        st = mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL);
        if (st == MM_OK && !isnan(a->initial)) st = mm_pruner_set(p, MM_PRUNE_INITIAL_SPARSITY, a->initial);
        if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_BEGIN_STEP, t0);
        if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_END_STEP, t1);
        if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_FREQUENCY, freq);
        if (st == MM_OK && !isnan(a->power)) st = mm_pruner_set(p, MM_PRUNE_POWER, a->power);
        if (st != MM_OK) {
            rc = cli_lib_usage_error(c, st, "pruning schedule");
            goto done;
        }
        double si = 0, pw = 3;
        mm_pruner_get(p, MM_PRUNE_INITIAL_SPARSITY, &si);
        mm_pruner_get(p, MM_PRUNE_POWER, &pw);
        json_object_set_new(sched, "schedule", json_string("polynomial"));
        json_object_set_new(sched, "initial_sparsity", cli_json_num(si));
        json_object_set_new(sched, "begin_step", json_integer((json_int_t)t0));
        json_object_set_new(sched, "end_step", json_integer((json_int_t)t1));
        json_object_set_new(sched, "frequency", json_integer((json_int_t)freq));
        json_object_set_new(sched, "power", cli_json_num(pw));
        cli_say(c,
                "pruning (%s) gradually to %.4g over steps %.0f..%.0f of %llu (every %.0f steps, "
                "power %g) while fine-tuning %zu epoch(s)\n",
                crit_name, a->sparsity, t0, t1, (unsigned long long)steps_total, freq, pw,
                a->ft_epochs);
        st = mm_pruner_attach(p, opt);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "pruning %s", a->model);
            goto done;
        }
        rc = cli_fit(c, opt, train, NULL, &fs);
        mm_pruner_attach(NULL, opt);
        if (rc) goto done;
    } else {
        json_object_set_new(sched, "schedule", json_string("one-shot"));
        st = mm_pruner_apply(p, model);
        if (st != MM_OK) {
            rc = cli_lib_error(c, st, "pruning %s", a->model);
            goto done;
        }
        if (test) {
            cli_eval_result r;
            if ((rc = cli_evaluate(c, model, test, false, &r))) goto done;
            acc_pruned = r.accuracy;
        }
        cli_say(c, "pruned (%s, one shot) to %.4g: %zu non-zeros left%s", crit_name, a->sparsity,
                mm_model_num_nonzero(model), isfinite(acc_pruned) ? "" : "\n");
        if (isfinite(acc_pruned)) cli_say(c, ", test accuracy %.4f\n", acc_pruned);
        if (a->ft_epochs > 0) {
            cli_say(c, "fine-tuning %zu epoch(s) with the masks in place\n", a->ft_epochs);
            if ((rc = cli_fit(c, opt, train, NULL, &fs))) goto done;
        }
    }

    /* Make it physical. The optimizer is not saved, so it need not follow. */
    st = mm_pruner_finalize(p, model, NULL);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "finalizing the pruned model");
        goto done;
    }
    if ((rc = cli_measure_model(c, model, test, &after))) goto done;

    /* Lineage (the library recorded the pruning, fine-tuning and
     * finalization; add where it came from and what it cost), then save. */
    json_t *ev = json_object();
    json_object_set_new(ev, "parent", json_string(a->model));
    json_object_set_new(ev, "criterion", json_string(crit_name));
    json_object_set_new(ev, "sparsity", cli_json_num(a->sparsity));
    json_object_update(ev, sched);
    json_object_set_new(ev, "fine_tune_epochs", json_integer((json_int_t)a->ft_epochs));
    if (train) json_object_set_new(ev, "data", json_string(train_desc));
    if ((rc = cli_save_summary(c, model, orig, ev, "prune_summary", a->out, test ? test_desc : NULL,
                               test ? test : train, &before, &after)))
        goto done;

    print_table(c->out, &before, &after, orig, model);
    fprintf(c->out, "\nsaved %s\n", a->out);

    json_object_set_new(result, "command", json_string("prune"));
    json_object_set_new(result, "model", json_string(a->model));
    json_object_set_new(result, "out", json_string(a->out));
    json_object_set_new(result, "criterion", json_string(crit_name));
    json_object_set_new(result, "structured", json_boolean(structured));
    json_object_set_new(result, "sparsity", cli_json_num(a->sparsity));
    json_object_update(result, sched);
    static const char *fmt_names[] = {"auto", "sparse", "dense"};
    json_object_set_new(result, "format", json_string(fmt_names[a->format]));
    json_object_set_new(result, "fine_tune_epochs", json_integer((json_int_t)a->ft_epochs));
    if (a->ft_epochs > 0) {
        json_object_set_new(result, "optimizer", cli_optimizer_json(opt));
        json_object_set_new(result, "fine_tune", fs.epochs);
        fs.epochs = NULL;
        json_object_set_new(result, "steps", json_integer((json_int_t)steps_total));
    }
    json_object_set_new(result, "test_data", test ? json_string(test_desc) : json_null());
    json_object_set_new(result, "train_data", train ? json_string(train_desc) : json_null());
    json_object_set_new(result, "test_accuracy_pruned", cli_json_num(acc_pruned));
    json_object_set_new(result, "before", stats_json(&before, orig));
    json_object_set_new(result, "after", stats_json(&after, model));
    json_object_set_new(result, "speedup_batch1", cli_json_num(after.b1 / before.b1));
    json_object_set_new(result, "speedup_batch256", cli_json_num(after.b256 / before.b256));
    json_object_set_new(result, "file_size_ratio",
                        cli_json_num(before.file_size > 0
                                         ? (double)after.file_size / (double)before.file_size
                                         : NAN));
    if (c->json) {
        cli_json_print(result);
        result = NULL;
    }

done:
    json_decref(result);
    json_decref(sched);
    json_decref(fs.epochs);
    mm_optimizer_free(opt); /* before the pruner it may borrow */
    mm_pruner_free(p);
    mm_model_free(orig);
    mm_model_free(model);
    mm_dataset_free(train);
    mm_dataset_free(test);
    return rc;
}

int cmd_prune(int argc, char **argv) {
    cli c;
    cli_init(&c, "prune");
    prune_args a;
    memset(&a, 0, sizeof a);
    a.criterion = MM_PRUNE_MAGNITUDE;
    a.sparsity = 0.5;
    a.initial = a.begin = a.end = a.frequency = a.power = NAN;
    a.format = MM_PRUNE_FORMAT_AUTO;
    a.cal_samples = DEFAULT_CAL_SAMPLES;
    cli_optim_init(&a.optim, MM_OPTIM_ADAM);
    cli_data_init(&a.data, CLI_ROLE_TEST);
    cli_opts o;
    prune_opts(&o);
    bool sched_flag = false;
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_prune(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &a.data, id, arg, &r) ||
            cli_optim_option(&c, &a.optim, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        const char *flag = cli_current_flag();
        switch (id) {
        case CLI_OPT_OUT: a.out = arg; break;
        case OPT_CRITERION:
            if ((r = parse_criterion(&c, arg, &a.criterion))) return r;
            break;
        case OPT_SPARSITY:
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_SPARSITY, &a.sparsity))) return r;
            break;
        case OPT_SCHEDULE:
            if (strcasecmp(arg, "one-shot") == 0 || strcasecmp(arg, "one_shot") == 0 ||
                strcasecmp(arg, "oneshot") == 0)
                a.polynomial = false;
            else if (strcasecmp(arg, "polynomial") == 0 || strcasecmp(arg, "gradual") == 0)
                a.polynomial = true;
            else
                return cli_usage_error(&c, "--schedule: '%s' is not a pruning schedule (one-shot, "
                                           "polynomial; --lr-schedule sets the learning rate's)",
                                       arg);
            break;
        case OPT_INITIAL_SPARSITY:
            sched_flag = true;
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_INITIAL_SPARSITY, &a.initial))) return r;
            break;
        case OPT_BEGIN_STEP:
            sched_flag = true;
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_BEGIN_STEP, &a.begin))) return r;
            break;
        case OPT_END_STEP:
            sched_flag = true;
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_END_STEP, &a.end))) return r;
            break;
        case OPT_FREQUENCY:
            sched_flag = true;
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_FREQUENCY, &a.frequency))) return r;
            break;
        case OPT_POWER:
            sched_flag = true;
            if ((r = parse_prune_setting(&c, flag, arg, MM_PRUNE_POWER, &a.power))) return r;
            break;
        case OPT_FT_EPOCHS: {
            long n;
            if ((r = cli_parse_long(&c, flag, arg, &n))) return r;
            if (n < 0 || n > 1000000)
                return cli_usage_error(&c, "%s: '%s' is out of range [0, 1000000]", flag, arg);
            a.ft_epochs = (size_t)n;
            a.ft_given = true;
            break;
        }
        case OPT_FORMAT:
            if (strcasecmp(arg, "auto") == 0) a.format = MM_PRUNE_FORMAT_AUTO;
            else if (strcasecmp(arg, "sparse") == 0) a.format = MM_PRUNE_FORMAT_SPARSE;
            else if (strcasecmp(arg, "dense") == 0) a.format = MM_PRUNE_FORMAT_DENSE;
            else return cli_usage_error(&c, "--format: '%s' is not auto, sparse or dense", arg);
            break;
        case OPT_KEEP_ORDER: a.keep_order = cli_bool_arg(arg); break;
        case OPT_CAL_SAMPLES:
            if ((r = cli_parse_size(&c, flag, arg, &a.cal_samples))) return r;
            if (a.cal_samples == 0)
                return cli_usage_error(&c, "%s: needs at least 1 sample", flag);
            a.cal_given = true;
            break;
        default: return cli_usage_error(&c, "unhandled option %s", flag);
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(&c, "which model? (mmaint prune MODEL --out FILE)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    a.model = argv[optind];
    if (!a.out) return cli_usage_error(&c, "--out FILE is required");
    if (a.polynomial && a.ft_epochs == 0)
        return cli_usage_error(&c, "--schedule polynomial prunes while fine-tuning: give "
                                   "--fine-tune-epochs N (N >= 1)");
    if (!a.polynomial && sched_flag)
        return cli_usage_error(&c, "--initial-sparsity, --begin-step, --end-step, --frequency and "
                                   "--power need --schedule polynomial");
    if (a.cal_given && a.criterion != MM_PRUNE_NEURON_ACTIVATION)
        return cli_usage_error(&c, "--calibration-samples applies to --criterion neuron-activation");
    return run_prune(&c, &a);
}
