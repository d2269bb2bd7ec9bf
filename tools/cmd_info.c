/* mmaint info — what a model file holds: architecture, size, optimizer
 * state and lineage. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void info_opts(cli_opts *o) {
    cli_opts_init(o);
    cli_opts_add_common(o, true);
}

void help_info(FILE *f) {
    cli_opts o;
    info_opts(&o);
    fprintf(f, "Usage: mmaint info MODEL [--json]\n"
               "Show a model file: architecture, parameter count and bytes, file size,\n"
               "whether it holds optimizer state, and its lineage (what was done to it).\n\n"
               "Options:\n");
    cli_opts_print_help(&o, f);
}

int cmd_info(int argc, char **argv) {
    cli c;
    cli_init(&c, "info");
    cli_opts o;
    info_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_info(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind >= argc) return cli_usage_error(&c, "which model? (mmaint info MODEL)");
    if (optind + 1 < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    mm_model *model = NULL;
    mm_optimizer *opt = NULL;
    char *desc = NULL;
    if ((rc = cli_load_model(&c, path, &model))) goto done;

    /* Optimizer state: present, absent, or unreadable (reported, not fatal). */
    const char *opt_problem = NULL;
    mm_status st = mm_optimizer_load(&opt, model, path);
    if (st != MM_OK && st != MM_E_NOT_FOUND) opt_problem = cli_lib_message(st);
    char opt_problem_buf[512] = "";
    if (opt_problem) snprintf(opt_problem_buf, sizeof opt_problem_buf, "%s", opt_problem);
    mm_clear_error();

    /* Describe into a small buffer first, then a big enough one. */
    size_t needed = 0, cap = 4096;
    for (int attempt = 0; attempt < 2; attempt++) {
        free(desc);
        desc = malloc(cap);
        if (!desc) {
            rc = cli_runtime_error(&c, "out of memory");
            goto done;
        }
        st = mm_model_describe(model, desc, cap, &needed);
        if (st != MM_OK) {
            rc = cli_lib_error(&c, st, "describing %s", path);
            goto done;
        }
        if (needed < cap) break;
        cap = needed + 1;
    }
    needed = strlen(desc);
    char arch[256];
    cli_arch_string(model, arch, sizeof arch);
    long long fsize = cli_file_size(path);
    const char *lineage = mm_model_lineage(model);
    const char *loss = mm_loss_name(mm_model_loss(model));

    if (c.json) {
        json_t *j = json_object();
        json_object_set_new(j, "command", json_string("info"));
        json_object_set_new(j, "file", json_string(path));
        json_object_set_new(j, "file_size", json_integer(fsize));
        json_object_set_new(j, "arch", json_string(arch));
        json_object_set_new(j, "input_dim", json_integer((json_int_t)mm_model_input_dim(model)));
        json_object_set_new(j, "output_dim", json_integer((json_int_t)mm_model_output_dim(model)));
        json_t *layers = json_array();
        for (size_t i = 0; i < mm_model_num_layers(model); i++) {
            const char *kind = NULL;
            size_t in = 0, outs = 0;
            mm_activation act = MM_ACT_IDENTITY;
            if (mm_model_layer_info(model, i, &kind, &in, &outs, &act) != MM_OK) continue;
            json_t *l = json_object();
            json_object_set_new(l, "kind", json_string(kind ? kind : "?"));
            json_object_set_new(l, "inputs", json_integer((json_int_t)in));
            json_object_set_new(l, "outputs", json_integer((json_int_t)outs));
            const char *an = mm_activation_name(act);
            json_object_set_new(l, "activation", an ? json_string(an) : json_null());
            json_object_set_new(l, "trainable", json_boolean(mm_model_layer_trainable(model, i) == 1));
            json_array_append_new(layers, l);
        }
        json_object_set_new(j, "layers", layers);
        json_object_set_new(j, "params", json_integer((json_int_t)mm_model_num_params(model)));
        json_object_set_new(j, "nonzero", json_integer((json_int_t)mm_model_num_nonzero(model)));
        json_object_set_new(j, "param_bytes", json_integer((json_int_t)mm_model_param_bytes(model)));
        json_object_set_new(j, "loss", loss ? json_string(loss) : json_null());
        json_object_set_new(j, "description", json_string(desc));
        json_t *oj = json_object();
        json_object_set_new(oj, "present", json_boolean(opt != NULL));
        if (opt) {
            json_t *settings = cli_optimizer_json(opt);
            json_object_update(oj, settings);
            json_decref(settings);
            json_object_set_new(oj, "steps", json_integer((json_int_t)mm_optimizer_steps(opt)));
        }
        if (opt_problem) json_object_set_new(oj, "error", json_string(opt_problem_buf));
        json_object_set_new(j, "optimizer_state", oj);
        json_error_t jerr;
        json_t *lj = json_loads(lineage, 0, &jerr);
        json_object_set_new(j, "lineage", lj ? lj : json_string(lineage));
        cli_json_print(j);
    } else {
        char fbytes[32], pbytes[32];
        cli_format_bytes(fsize < 0 ? 0 : (uint64_t)fsize, fbytes, sizeof fbytes);
        cli_format_bytes(mm_model_param_bytes(model), pbytes, sizeof pbytes);
        printf("file:        %s (%s, %lld bytes)\n", path, fbytes, fsize);
        printf("model:       %s, loss %s\n", arch, loss ? loss : "?");
        /* trainable floats, and the weights and biases the model keeps:
         * a quantized model without master weights trains none */
        printf("parameters:  %zu trainable, %zu non-zero (%s as stored)\n",
               mm_model_num_params(model), mm_model_num_nonzero(model), pbytes);
        if (opt)
            printf("optimizer:   %s state present (%llu steps, lr %g)\n",
                   mm_optim_kind_name(mm_optimizer_kind(opt)),
                   (unsigned long long)mm_optimizer_steps(opt), cli_base_lr(opt));
        else if (opt_problem)
            printf("optimizer:   state present but unreadable: %s\n", opt_problem_buf);
        else
            printf("optimizer:   no state stored\n");
        printf("\n%s", desc);
        if (needed && desc[needed - 1] != '\n') putchar('\n');
        printf("\nlineage:\n");
        cli_print_lineage(stdout, lineage, "  ");
    }

done:
    free(desc);
    mm_optimizer_free(opt);
    mm_model_free(model);
    return rc;
}
