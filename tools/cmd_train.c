/* mmaint train — batch training of a new (or existing) model. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_ARCH = CLI_OPT_CMD_BASE,
    OPT_FROM,
    OPT_LOSS,
    OPT_SAVE_OPTIMIZER,
};

static void train_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"arch", required_argument, OPT_ARCH, "SPEC",
         "architecture, e.g. 784-256-128-10:relu (default IN-256-128-CLASSES:relu)"},
        {"from", required_argument, OPT_FROM, "FILE",
         "continue training this model file instead of creating one (with its optimizer state if present)"},
        {"loss", required_argument, OPT_LOSS, "NAME", "softmax_xent (default) or mse"},
        {"save-optimizer", no_argument, OPT_SAVE_OPTIMIZER, NULL,
         "store the optimizer state in the model file (for exact resumption)"},
    };
    cli_opts_init(o);
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_out(o, "write the trained model here (required)");
    cli_opts_add_optimizer(o, true);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TRAIN) | CLI_ROLE_BIT(CLI_ROLE_VAL) |
                             CLI_ROLE_BIT(CLI_ROLE_TEST),
                      CLI_ROLE_TRAIN);
    cli_opts_add_common(o, true);
}

void help_train(FILE *f) {
    cli_opts o;
    train_opts(&o);
    fprintf(f,
            "Usage: mmaint train --out FILE [options]\n"
            "Train a feed-forward network with mini-batch gradient descent.\n\n"
            "Data: IDX files (--train-images/--train-labels) or CSV (--train-csv), optionally\n"
            "validation (--val-split or --val-*) and test data (--test-*). With no data files\n"
            "(or with --data-dir), Fashion-MNIST (train + test) from\n%s.\n"
            "--images/--labels/--csv/--offset/--limit refer to the training data.\n\n"
            "Options:\n",
            CLI_DEFAULT_FASHION_DIR);
    cli_opts_print_help(&o, f);
    fputc('\n', f);
    cli_print_optimizer_settings(f);
    fprintf(f,
            "\nExample:\n"
            "  mmaint train --arch 784-256-128-10:relu --optimizer adam --lr 1e-3 --epochs 3 \\\n"
            "      --batch-size 64 --val-split 0.1 --patience 2 --out model.mmf\n");
}

typedef struct train_args {
    const char *arch, *from, *out, *loss;
    bool save_optimizer;
    cli_optim_cfg optim;
    cli_data_cfg data;
} train_args;

static void dataset_json(json_t *parent, const char *key, const mm_dataset *ds, const char *desc) {
    if (!ds) {
        json_object_set_new(parent, key, json_null());
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "source", json_string(desc));
    json_object_set_new(o, "samples", json_integer((json_int_t)mm_dataset_size(ds)));
    json_object_set_new(o, "features", json_integer((json_int_t)mm_dataset_dim(ds)));
    json_object_set_new(o, "classes", json_integer((json_int_t)mm_dataset_num_classes(ds)));
    json_object_set_new(parent, key, o);
}

static int build_model(const cli *c, const train_args *a, const mm_dataset *train, uint64_t seed,
                       mm_model **model, mm_optimizer **opt) {
    *model = NULL;
    *opt = NULL;
    mm_status st;
    if (a->from) {
        int rc = cli_load_model(c, a->from, model);
        if (rc) return rc;
        /* Continue with the stored optimizer state unless another algorithm
         * was asked for. */
        mm_optimizer *prev = NULL;
        st = mm_optimizer_load(&prev, *model, a->from);
        if (st == MM_OK && (!a->optim.kind_given || mm_optimizer_kind(prev) == a->optim.kind)) {
            *opt = prev;
            cli_say(c, "continuing the optimizer state stored in %s (%llu steps)\n", a->from,
                    (unsigned long long)mm_optimizer_steps(prev));
        } else if (st == MM_OK) {
            mm_optimizer_free(prev);
        } else if (st != MM_E_NOT_FOUND) {
            return cli_lib_error(c, st, "loading the optimizer state of %s", a->from);
        }
        mm_clear_error();
    } else {
        char spec[256];
        if (a->arch) {
            snprintf(spec, sizeof spec, "%s", a->arch);
        } else {
            snprintf(spec, sizeof spec, "%zu-256-128-%zu:relu", mm_dataset_dim(train),
                     mm_dataset_num_classes(train) < 2 ? (size_t)2 : mm_dataset_num_classes(train));
        }
        st = mm_model_create_from_spec(model, spec, seed);
        if (st != MM_OK) return cli_lib_usage_error(c, st, "--arch '%s'", spec);
    }
    if (a->loss) {
        mm_loss loss;
        st = mm_loss_from_name(a->loss, &loss);
        if (st != MM_OK) return cli_lib_usage_error(c, st, "--loss");
        st = mm_model_set_loss(*model, loss);
        if (st != MM_OK) return cli_lib_error(c, st, "--loss");
    }
    if (!*opt) {
        st = mm_optimizer_create(opt, *model, a->optim.kind);
        if (st != MM_OK) return cli_lib_error(c, st, "creating the %s optimizer",
                                              mm_optim_kind_name(a->optim.kind));
    }
    return cli_optim_apply(c, &a->optim, *opt);
}

static int run_train(cli *c, train_args *a) {
    int rc = 0;
    mm_dataset *train = NULL, *val = NULL, *test = NULL;
    mm_model *model = NULL;
    mm_optimizer *opt = NULL;
    json_t *result = json_object();
    cli_fit_summary fs;
    memset(&fs, 0, sizeof fs);
    fs.epochs = json_array();
    char train_desc[1200], val_desc[1300], test_desc[1200];

    /* Model and optimizer. --seed seeds both initialisation and shuffling. */
    double seedv = 42;
    if (!cli_optim_lookup(&a->optim, MM_OPT_SEED, &seedv) && a->optim.n < CLI_MAX_SETTINGS) {
        cli_setting *s = &a->optim.set[a->optim.n++];
        *s = (cli_setting){MM_OPT_SEED, seedv, "--seed"};
    }
    if (!(seedv >= 0 && seedv <= 9007199254740992.0 && seedv == floor(seedv))) {
        rc = cli_usage_error(c, "--seed: '%g' is not a whole number >= 0", seedv);
        goto done;
    }
    double epochs = 3;
    if (!cli_optim_lookup(&a->optim, MM_OPT_EPOCHS, &epochs) && a->optim.n < CLI_MAX_SETTINGS) {
        cli_setting *s = &a->optim.set[a->optim.n++];
        *s = (cli_setting){MM_OPT_EPOCHS, epochs, "--epochs"};
    }
    uint64_t seed = (uint64_t)seedv;
    /* With --arch or --from the model does not depend on the data: build it
     * (and check the optimizer settings) before loading anything, so that
     * usage errors come first. */
    if ((a->arch || a->from) && (rc = build_model(c, a, NULL, seed, &model, &opt))) goto done;

    /* Data. Fashion-MNIST (train and test) when no data flag at all. */
    bool defaults = !cli_data_given(&a->data, CLI_ROLE_TRAIN) &&
                    !cli_data_given(&a->data, CLI_ROLE_VAL) &&
                    !cli_data_given(&a->data, CLI_ROLE_TEST);
    if (cli_data_given(&a->data, CLI_ROLE_VAL) && a->data.val_split > 0) {
        rc = cli_usage_error(c, "give either --val-split or --val-images/--val-csv, not both");
        goto done;
    }
    if ((rc = cli_data_require(c, &a->data, CLI_ROLE_TRAIN, "training", NULL, NULL))) goto done;
    if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TRAIN, true, &train, train_desc, sizeof train_desc)))
        goto done;
    if (a->data.val_split > 0) {
        size_t n = mm_dataset_size(train);
        size_t nv = (size_t)floor(a->data.val_split * (double)n + 0.5);
        if (nv < 1 || nv >= n) {
            rc = cli_usage_error(c, "--val-split %g leaves no %s data (%zu samples)", a->data.val_split,
                                 nv < 1 ? "validation" : "training", n);
            goto done;
        }
        mm_dataset *head = NULL;
        mm_status st = mm_dataset_slice(train, n - nv, nv, &val);
        if (st == MM_OK) st = mm_dataset_slice(train, 0, n - nv, &head);
        if (st != MM_OK) {
            mm_dataset_free(head);
            rc = cli_lib_error(c, st, "splitting off validation data");
            goto done;
        }
        mm_dataset_free(train);
        train = head;
        snprintf(val_desc, sizeof val_desc, "last %zu of %s", nv, train_desc);
    } else if ((rc = cli_data_load(c, &a->data, CLI_ROLE_VAL, false, &val, val_desc, sizeof val_desc))) {
        goto done;
    }
    if ((rc = cli_data_load(c, &a->data, CLI_ROLE_TEST, defaults, &test, test_desc, sizeof test_desc)))
        goto done;
    if (!mm_dataset_labels(train)) {
        rc = cli_runtime_error(c, "%s has no labels", train_desc);
        goto done;
    }

    if (!model && (rc = build_model(c, a, train, seed, &model, &opt))) goto done;
    if ((rc = cli_check_data_fits(c, model, train, train_desc))) goto done;
    if (val && (rc = cli_check_data_fits(c, model, val, val_desc))) goto done;
    if (test && (rc = cli_check_data_fits(c, model, test, test_desc))) goto done;

    char arch[256], bytes[32];
    cli_arch_string(model, arch, sizeof arch);
    cli_format_bytes(mm_model_param_bytes(model), bytes, sizeof bytes);
    cli_say(c, "train: %s, %zu samples x %zu features, %zu classes\n", train_desc,
            mm_dataset_size(train), mm_dataset_dim(train), mm_dataset_num_classes(train));
    if (val) cli_say(c, "validation: %s, %zu samples\n", val_desc, mm_dataset_size(val));
    if (test) cli_say(c, "test: %s, %zu samples\n", test_desc, mm_dataset_size(test));
    double lr = cli_base_lr(opt), bs = 0, ep = 0;
    mm_optimizer_get(opt, MM_OPT_BATCH_SIZE, &bs);
    mm_optimizer_get(opt, MM_OPT_EPOCHS, &ep);
    mm_clear_error();
    cli_say(c, "model: %s, %zu parameters (%s); %s lr %g, batch %.0f, %.0f epoch(s), %s kernels\n", arch,
            mm_model_num_params(model), bytes, mm_optim_kind_name(mm_optimizer_kind(opt)), lr, bs, ep,
            mm_backend_name());

    if ((rc = cli_fit(c, opt, train, val, &fs))) goto done;
    if (fs.stopped_early)
        cli_say(c, "stopped early after %u epoch(s): no validation improvement\n", fs.epochs_run);

    cli_eval_result tr;
    memset(&tr, 0, sizeof tr);
    tr.loss = tr.accuracy = NAN;
    if (test) {
        if ((rc = cli_evaluate(c, model, test, false, &tr))) goto done;
        fprintf(c->out, "test: loss %.4f  accuracy %.4f  (%zu samples)\n", tr.loss, tr.accuracy, tr.n);
    }

    /* Lineage, then save. The library's fit records the optimizer and the
     * training statistics itself; add what only the tool knows. */
    json_t *ev = json_object();
    json_object_set_new(ev, "data", json_string(train_desc));
    json_object_set_new(ev, "samples", json_integer((json_int_t)mm_dataset_size(train)));
    if (val) json_object_set_new(ev, "validation", json_string(val_desc));
    if (test) {
        json_object_set_new(ev, "test_data", json_string(test_desc));
        json_object_set_new(ev, "test_accuracy", cli_json_num(tr.accuracy));
    }
    if (a->from) json_object_set_new(ev, "parent", json_string(a->from));
    json_object_set_new(ev, "tool", json_string("mmaint " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    mm_status st = mm_model_add_lineage(model, "train", detail);
    free(detail);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "recording lineage");
        goto done;
    }
    st = a->save_optimizer ? mm_optimizer_save(opt, a->out) : mm_model_save(model, a->out);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "saving %s", a->out);
        goto done;
    }
    long long fsize = cli_file_size(a->out);
    char fbytes[32];
    cli_format_bytes(fsize < 0 ? 0 : (uint64_t)fsize, fbytes, sizeof fbytes);
    fprintf(c->out, "saved %s (%s%s)\n", a->out, fbytes, a->save_optimizer ? ", with optimizer state" : "");

    json_object_set_new(result, "command", json_string("train"));
    json_object_set_new(result, "model", json_string(a->out));
    json_object_set_new(result, "file_size", json_integer(fsize));
    json_object_set_new(result, "arch", json_string(arch));
    json_object_set_new(result, "params", json_integer((json_int_t)mm_model_num_params(model)));
    json_object_set_new(result, "optimizer", cli_optimizer_json(opt));
    json_t *data = json_object();
    dataset_json(data, "train", train, train_desc);
    dataset_json(data, "val", val, val_desc);
    dataset_json(data, "test", test, test_desc);
    json_object_set_new(result, "data", data);
    json_object_set_new(result, "epochs", fs.epochs);
    fs.epochs = NULL;
    json_object_set_new(result, "epochs_run", json_integer(fs.epochs_run));
    json_object_set_new(result, "stopped_early", json_boolean(fs.stopped_early));
    json_object_set_new(result, "steps", json_integer((json_int_t)fs.steps));
    json_object_set_new(result, "train_loss", cli_json_num(fs.train_loss));
    json_object_set_new(result, "train_accuracy", cli_json_num(fs.train_accuracy));
    json_object_set_new(result, "val_loss", cli_json_num(fs.val_loss));
    json_object_set_new(result, "val_accuracy", cli_json_num(fs.val_accuracy));
    json_object_set_new(result, "test_loss", cli_json_num(tr.loss));
    json_object_set_new(result, "test_accuracy", cli_json_num(tr.accuracy));
    json_object_set_new(result, "samples_per_second", cli_json_num(fs.samples_per_second));
    json_object_set_new(result, "seconds", cli_json_num(fs.seconds));
    json_object_set_new(result, "optimizer_state_saved", json_boolean(a->save_optimizer));
    if (c->json) {
        cli_json_print(result);
        result = NULL;
    }

done:
    json_decref(result);
    json_decref(fs.epochs);
    mm_optimizer_free(opt);
    mm_model_free(model);
    mm_dataset_free(train);
    mm_dataset_free(val);
    mm_dataset_free(test);
    return rc;
}

int cmd_train(int argc, char **argv) {
    cli c;
    cli_init(&c, "train");
    train_args a;
    memset(&a, 0, sizeof a);
    cli_optim_init(&a.optim, MM_OPTIM_ADAM);
    cli_data_init(&a.data, CLI_ROLE_TRAIN);
    cli_opts o;
    train_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_train(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &a.data, id, arg, &r) ||
            cli_optim_option(&c, &a.optim, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        switch (id) {
        case OPT_ARCH: a.arch = arg; break;
        case OPT_FROM: a.from = arg; break;
        case OPT_LOSS: a.loss = arg; break;
        case OPT_SAVE_OPTIMIZER: a.save_optimizer = cli_bool_arg(arg); break;
        case CLI_OPT_OUT: a.out = arg; break;
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
    if (!a.out) return cli_usage_error(&c, "--out FILE is required");
    if (a.arch && a.from) return cli_usage_error(&c, "give --arch or --from, not both");
    return run_train(&c, &a);
}
