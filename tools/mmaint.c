/* mmaint — command-line tool for maintaining neural-network models with
 * libmmaint: train, evaluate, update online, inspect, and a demo.
 *
 * This file dispatches subcommands and prints the general help; each
 * subcommand is in cmd_<name>.c, shared code in cli_*.c (see cli.h).
 */
#include "cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(FILE *f);
    bool interruptible; /* Ctrl-C stops the loop cleanly */
} command;

static const command commands[] = {
    {"train", "train a model (mini-batch) and save it", cmd_train, help_train, true},
    {"eval", "loss, accuracy, speed and confusion matrix of a model", cmd_eval, help_eval, false},
    {"update", "online learning: one sample at a time, predict then learn", cmd_update, help_update, true},
    {"info", "architecture, size, optimizer state and lineage of a model file", cmd_info, help_info, false},
    {"prune", "remove weights or neurons, fine-tune, compare before/after", cmd_prune, help_prune, true},
    {"quantize", "int8 / fp16 / bf16 layers: calibrate, compare before/after", cmd_quantize, help_quantize, false},
    {"convert", "move a model between .mmf, safetensors and ONNX files", cmd_convert, help_convert, false},
    {"transfer", "re-use a model's body for a new task: freeze, new head, small labelled set", cmd_transfer, help_transfer, true},
    {"maintain", "guarded maintenance over a stream: rollback, replay, drift, challengers", cmd_maintain, help_maintain, true},
    {"demo", "train, deploy and keep updating a model on Fashion-MNIST", cmd_demo, help_demo, true},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "Usage: mmaint COMMAND [options]\n"
               "Maintain neural-network models after deployment.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-8s  %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-8s  %s\n", "help", "help on a command (mmaint help train)");
    fprintf(f, "\nOptions:\n  --version  show the version and exit\n  --help     show this help and exit\n"
               "\nExit status: 0 success, 1 runtime error, 2 usage error.\n"
               "Environment: MM_BACKEND=blis|reference selects the kernels; MM_FASHION_DIR the\n"
               "Fashion-MNIST directory.\n");
}

static void version(void) {
    printf("mmaint %s (libmmaint %s, %s kernels)\n", MM_VERSION_STRING, mm_version_string(),
           mm_backend_name());
    if (mm_version_number() != MM_VERSION_NUMBER)
        printf("warning: built against libmmaint %s but running with %s\n", MM_VERSION_STRING,
               mm_version_string());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0) {
        version();
        return 0;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const command *cmd = find_command(argv[2]);
        if (!cmd) {
            fprintf(stderr, "mmaint help: unknown command '%s'\n", argv[2]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        cmd->help(stdout);
        return 0;
    }
    const command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "mmaint: unknown command '%s'\nTry 'mmaint help'.\n", name);
        return CLI_EXIT_USAGE;
    }
    if (cmd->interruptible) cli_install_sigint();
    /* The subcommand sees argv[0] = its name; getopt starts after it. */
    optind = 0;
    return cmd->run(argc - 1, argv + 1);
}
