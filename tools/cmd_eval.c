/* mmaint eval — loss, accuracy, throughput and confusion matrix of a model. */
#include "cli.h"

#include <string.h>

static void eval_opts(cli_opts *o) {
    cli_opts_init(o);
    cli_opts_add_data(o, CLI_ROLE_BIT(CLI_ROLE_TEST), CLI_ROLE_TEST);
    cli_opts_add_common(o, true);
}

void help_eval(FILE *f) {
    cli_opts o;
    eval_opts(&o);
    fprintf(f,
            "Usage: mmaint eval MODEL [options]\n"
            "Evaluate a model file: loss, accuracy, samples/s and the confusion matrix.\n\n"
            "Data: --test-images/--test-labels (or --images/--labels), --test-csv (or --csv);\n"
            "default: the Fashion-MNIST test set from %s.\n\n"
            "Options:\n",
            CLI_DEFAULT_FASHION_DIR);
    cli_opts_print_help(&o, f);
}

int cmd_eval(int argc, char **argv) {
    cli c;
    cli_init(&c, "eval");
    cli_data_cfg data;
    cli_data_init(&data, CLI_ROLE_TEST);
    cli_opts o;
    eval_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_eval(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r) || cli_data_option(&c, &data, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(&c, "which model? (mmaint eval MODEL)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    mm_model *model = NULL;
    mm_dataset *ds = NULL;
    cli_eval_result r;
    memset(&r, 0, sizeof r);
    char desc[1200];
    if ((rc = cli_load_model(&c, path, &model))) goto done;
    if ((rc = cli_data_load(&c, &data, CLI_ROLE_TEST, true, &ds, desc, sizeof desc))) goto done;
    if ((rc = cli_check_data_fits(&c, model, ds, desc))) goto done;
    if ((rc = cli_evaluate(&c, model, ds, true, &r))) goto done;

    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    if (c.json) {
        json_t *j = json_object();
        json_object_set_new(j, "command", json_string("eval"));
        json_object_set_new(j, "model", json_string(path));
        json_object_set_new(j, "arch", json_string(arch));
        json_t *d = json_object();
        json_object_set_new(d, "source", json_string(desc));
        json_object_set_new(d, "samples", json_integer((json_int_t)r.n));
        json_object_set_new(j, "data", d);
        json_object_set_new(j, "samples", json_integer((json_int_t)r.n));
        json_object_set_new(j, "loss", cli_json_num(r.loss));
        json_object_set_new(j, "accuracy", cli_json_num(r.accuracy));
        json_object_set_new(j, "samples_per_second", cli_json_num(r.samples_per_second));
        json_object_set_new(j, "seconds", cli_json_num(r.seconds));
        json_object_set_new(j, "confusion", cli_confusion_json(&r));
        cli_json_print(j);
    } else {
        printf("model:    %s (%s)\n", path, arch);
        printf("data:     %s, %zu samples\n", desc, r.n);
        printf("loss:     %.4f\n", r.loss);
        printf("accuracy: %.4f\n", r.accuracy);
        printf("speed:    %.0f samples/s (%s kernels)\n\n", r.samples_per_second, mm_backend_name());
        cli_print_confusion(stdout, &r);
    }

done:
    cli_eval_result_free(&r);
    mm_dataset_free(ds);
    mm_model_free(model);
    return rc;
}
