/* mmaint update — online learning: one sample at a time, predict-then-learn. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_EVERY = CLI_OPT_CMD_BASE,
    OPT_REPORT_EVERY,
    OPT_WINDOW,
    OPT_FRESH_OPTIMIZER,
    OPT_SAVE_OPTIMIZER,
};

static void update_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"every", required_argument, OPT_EVERY, "N",
         "also save --out every N samples (each save is a version in the lineage)"},
        {"report-every", required_argument, OPT_REPORT_EVERY, "N",
         "print rolling accuracy every N samples (default 1000, 0 = only at the end)"},
        {"window", required_argument, OPT_WINDOW, "N", "rolling accuracy over the last N samples (default 1000)"},
        {"fresh-optimizer", no_argument, OPT_FRESH_OPTIMIZER, NULL,
         "ignore optimizer state stored in MODEL and start a new optimizer"},
        {"save-optimizer", no_argument, OPT_SAVE_OPTIMIZER, NULL,
         "store the optimizer state in --out (automatic when MODEL had one)"},
    };
    cli_opts_init(o);
    cli_opts_add_out(o, "write the updated model here (required; may equal MODEL)");
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_optimizer(o, false);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_TEST), CLI_ROLE_TRAIN);
    cli_opts_add_common(o, true);
}

void help_update(FILE *f) {
    cli_opts o;
    update_opts(&o);
    fprintf(f,
            "Usage: mmaint update MODEL --out FILE [options]\n"
            "Online learning: for each new sample, predict it first (progressive validation),\n"
            "then take one optimizer step on it. Prints rolling accuracy and samples/s, and\n"
            "saves the updated model with its lineage. If MODEL holds optimizer state, the\n"
            "update continues from it (same algorithm; flags such as --lr override settings);\n"
            "otherwise a new optimizer is used (default: sgd, lr 0.001: one-sample steps are\n"
            "much noisier than mini-batch ones, so online learning wants a smaller rate).\n\n"
            "Data (the stream of new samples): --train-images/--train-labels (or --images/\n"
            "--labels) or --train-csv (or --csv), in file order; --offset/--limit select a\n"
            "range. Default (no data files, or --data-dir): the Fashion-MNIST training set.\n"
            "--test-* data, if given, is evaluated before and after the update.\n\n"
            "Options:\n");
    cli_opts_print_help(&o, f);
    fputc('\n', f);
    cli_print_optimizer_settings(f);
    fprintf(f, "\nExample:\n"
               "  mmaint update model.mmf --csv new.csv --optimizer sgd --lr 0.001 --out model-v2.mmf\n");
}

int cli_record_update(const cli *c, mm_model *model, const mm_optimizer *opt, const char *parent,
                      const char *data_desc, size_t first, size_t samples,
                      const cli_online_stats *st, size_t window) {
    json_t *ev = json_object();
    if (parent) json_object_set_new(ev, "parent", json_string(parent));
    json_object_set_new(ev, "mode", json_string("predict-then-learn"));
    json_object_set_new(ev, "data", json_string(data_desc ? data_desc : ""));
    json_object_set_new(ev, "first_sample", json_integer((json_int_t)first));
    json_object_set_new(ev, "samples", json_integer((json_int_t)samples));
    json_object_set_new(ev, "total_samples", json_integer((json_int_t)st->seen));
    json_t *oj = cli_optimizer_json(opt);
    json_object_update(ev, oj);
    json_decref(oj);
    json_object_set_new(ev, "rolling_accuracy", cli_json_num(cli_online_rolling(st)));
    json_object_set_new(ev, "window", json_integer((json_int_t)window));
    json_object_set_new(ev, "progressive_accuracy", cli_json_num(cli_online_progressive(st)));
    if (st->skipped) json_object_set_new(ev, "skipped_updates", json_integer((json_int_t)st->skipped));
    json_object_set_new(ev, "tool", json_string("mmaint " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    mm_status s = mm_model_add_lineage(model, "online_update", detail);
    free(detail);
    if (s != MM_OK) return cli_lib_error(c, s, "recording lineage");
    return 0;
}

typedef struct update_run {
    const cli *c;
    mm_model *model;
    mm_optimizer *opt;
    const char *out, *parent, *desc;
    bool save_optimizer;
    size_t window, offset, last_saved;
    json_t *checkpoints;
} update_run;

static int update_save(update_run *u, const cli_online_stats *st) {
    int rc = cli_record_update(u->c, u->model, u->opt, u->parent, u->desc, u->offset + u->last_saved,
                               st->seen - u->last_saved, st, u->window);
    if (rc) return rc;
    mm_status s = u->save_optimizer ? mm_optimizer_save(u->opt, u->out) : mm_model_save(u->model, u->out);
    if (s != MM_OK) return cli_lib_error(u->c, s, "saving %s", u->out);
    u->last_saved = st->seen;
    u->parent = u->out;
    json_t *cp = json_object();
    json_object_set_new(cp, "path", json_string(u->out));
    json_object_set_new(cp, "samples", json_integer((json_int_t)st->seen));
    json_object_set_new(cp, "rolling_accuracy", cli_json_num(cli_online_rolling(st)));
    json_array_append_new(u->checkpoints, cp);
    return 0;
}

static int update_checkpoint(void *user, const cli_online_stats *st) {
    update_run *u = user;
    int rc = update_save(u, st);
    if (rc == 0) cli_say(u->c, "saved %s after %zu samples\n", u->out, st->seen);
    return rc;
}

int cmd_update(int argc, char **argv) {
    cli c;
    cli_init(&c, "update");
    cli_optim_cfg optim;
    cli_optim_init(&optim, MM_OPTIM_SGD);
    cli_data_cfg data;
    cli_data_init(&data, CLI_ROLE_TRAIN);
    const char *out = NULL;
    size_t every = 0, report_every = 1000, window = 1000;
    bool fresh = false, save_opt = false;
    cli_opts o;
    update_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_update(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &data, id, arg, &r) ||
            cli_optim_option(&c, &optim, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        switch (id) {
        case CLI_OPT_OUT: out = arg; break;
        case OPT_EVERY: r = cli_parse_size(&c, "--every", arg, &every); break;
        case OPT_REPORT_EVERY: r = cli_parse_size(&c, "--report-every", arg, &report_every); break;
        case OPT_WINDOW:
            r = cli_parse_size(&c, "--window", arg, &window);
            if (!r && window == 0) r = cli_usage_error(&c, "--window must be at least 1");
            break;
        case OPT_FRESH_OPTIMIZER: fresh = cli_bool_arg(arg); break;
        case OPT_SAVE_OPTIMIZER: save_opt = cli_bool_arg(arg); break;
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
        if (r) return r;
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(&c, "which model? (mmaint update MODEL --out FILE)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return cli_usage_error(&c, "--out FILE is required");
    const char *in = argv[optind];

    mm_model *model = NULL;
    mm_optimizer *opt = NULL;
    mm_dataset *ds = NULL, *test = NULL;
    json_t *checkpoints = json_array();
    char desc[1200], test_desc[1200];
    bool resumed = false;
    double before = NAN, after = NAN;

    if ((rc = cli_data_require(&c, &data, CLI_ROLE_TRAIN, "online learning", NULL, NULL))) goto done;
    if ((rc = cli_load_model(&c, in, &model))) goto done;
    if (!fresh) {
        mm_status s = mm_optimizer_load(&opt, model, in);
        if (s == MM_OK && optim.kind_given && mm_optimizer_kind(opt) != optim.kind) {
            fprintf(stderr, "%s: note: %s holds %s optimizer state; --optimizer %s starts a new optimizer\n",
                    c.prog, in, mm_optim_kind_name(mm_optimizer_kind(opt)), mm_optim_kind_name(optim.kind));
            mm_optimizer_free(opt);
            opt = NULL;
        } else if (s == MM_OK) {
            resumed = true;
        } else if (s != MM_E_NOT_FOUND) {
            rc = cli_lib_error(&c, s, "loading the optimizer state of %s", in);
            goto done;
        }
        mm_clear_error();
    }
    if (!opt) {
        mm_status s = mm_optimizer_create(&opt, model, optim.kind);
        if (s == MM_OK) s = mm_optimizer_set(opt, MM_OPT_LEARNING_RATE, 1e-3);
        if (s != MM_OK) {
            rc = cli_lib_error(&c, s, "creating the %s optimizer", mm_optim_kind_name(optim.kind));
            goto done;
        }
    }
    if ((rc = cli_optim_apply(&c, &optim, opt))) goto done;

    if ((rc = cli_data_load(&c, &data, CLI_ROLE_TRAIN, true, &ds, desc, sizeof desc))) goto done;
    if ((rc = cli_check_data_fits(&c, model, ds, desc))) goto done;
    if ((rc = cli_data_load(&c, &data, CLI_ROLE_TEST, false, &test, test_desc, sizeof test_desc)))
        goto done;
    if (test && (rc = cli_check_data_fits(&c, model, test, test_desc))) goto done;

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    cli_say(&c, "model: %s (%s)\n", in, arch);
    if (resumed)
        cli_say(&c, "optimizer: continuing %s state from %s (%llu steps), lr %g\n",
                mm_optim_kind_name(mm_optimizer_kind(opt)), in,
                (unsigned long long)mm_optimizer_steps(opt), cli_base_lr(opt));
    else
        cli_say(&c, "optimizer: new %s, lr %g\n", mm_optim_kind_name(mm_optimizer_kind(opt)), cli_base_lr(opt));
    cli_say(&c, "data: %s, %zu samples, one at a time (predict, then learn)\n", desc, mm_dataset_size(ds));
    if (test) {
        cli_eval_result r;
        if ((rc = cli_evaluate(&c, model, test, false, &r))) goto done;
        before = r.accuracy;
        cli_say(&c, "test: %s, %zu samples, accuracy %.4f before the update\n", test_desc, r.n, before);
    }

    update_run u = {&c, model, opt, out, in, desc, save_opt || resumed, window, data.offset, 0,
                    checkpoints};
    cli_online_cfg cfg = {window, report_every, every, update_checkpoint, &u, "update"};
    cli_online_stats st;
    if ((rc = cli_online(&c, opt, ds, 0, mm_dataset_size(ds), &cfg, &st))) goto done;
    if (u.last_saved != st.seen || st.seen == 0) {
        if ((rc = update_save(&u, &st))) goto done;
    }
    if (test) {
        cli_eval_result r;
        if ((rc = cli_evaluate(&c, model, test, false, &r))) goto done;
        after = r.accuracy;
        fprintf(c.out, "test accuracy: %.4f before, %.4f after (%+.4f)\n", before, after, after - before);
    }
    long long fsize = cli_file_size(out);
    char fbytes[32];
    cli_format_bytes(fsize < 0 ? 0 : (uint64_t)fsize, fbytes, sizeof fbytes);
    fprintf(c.out, "online: %zu samples, progressive accuracy %.4f, rolling accuracy %.4f (last %zu), %.0f samples/s\n",
            st.seen, cli_online_progressive(&st), cli_online_rolling(&st), st.window_fill, st.seconds > 0 ? (double)st.seen / st.seconds : 0.0);
    fprintf(c.out, "saved %s (%s%s)\n", out, fbytes, u.save_optimizer ? ", with optimizer state" : "");

    if (c.json) {
        json_t *j = json_object();
        json_object_set_new(j, "command", json_string("update"));
        json_object_set_new(j, "model_in", json_string(in));
        json_object_set_new(j, "model", json_string(out));
        json_object_set_new(j, "file_size", json_integer(fsize));
        json_object_set_new(j, "arch", json_string(arch));
        json_object_set_new(j, "optimizer", cli_optimizer_json(opt));
        json_object_set_new(j, "resumed_optimizer_state", json_boolean(resumed));
        json_object_set_new(j, "optimizer_state_saved", json_boolean(u.save_optimizer));
        json_t *d = json_object();
        json_object_set_new(d, "source", json_string(desc));
        json_object_set_new(d, "samples", json_integer((json_int_t)mm_dataset_size(ds)));
        json_object_set_new(j, "data", d);
        json_object_set_new(j, "online", cli_online_json(&st, window));
        json_object_set_new(j, "test_accuracy_before", cli_json_num(before));
        json_object_set_new(j, "test_accuracy_after", cli_json_num(after));
        json_object_set_new(j, "saves", checkpoints);
        checkpoints = NULL;
        cli_json_print(j);
    }

done:
    json_decref(checkpoints);
    mm_optimizer_free(opt);
    mm_model_free(model);
    mm_dataset_free(ds);
    mm_dataset_free(test);
    return rc;
}
