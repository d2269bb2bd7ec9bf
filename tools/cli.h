/* mmaint command-line tool — shared declarations.
 *
 * The tool uses only the public API of libmmaint (<mm/mm.h>). Each subcommand
 * lives in its own cmd_*.c file; this header holds what they share: error
 * reporting with the exit-code convention, strict number parsing, option
 * tables for getopt_long (common, data and optimizer flags), data loading with
 * the Fashion-MNIST default, the progress bar, and the training / online
 * learning / evaluation loops that `demo` reuses.
 *
 * Exit codes: 0 success, 1 runtime error (missing file, corrupt model, numeric
 * failure), 2 usage error (unknown flag, bad number, bad value).
 */
#ifndef MMAINT_CLI_H
#define MMAINT_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* JSON output and lineage pretty-printing use jansson: libmmaint already
 * depends on it (so the tool adds no dependency), and it gets string escaping,
 * UTF-8 validation and number formatting right, which hand-written JSON
 * output tends not to. */
#include <jansson.h>

#include <mm/mm.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_RUNTIME = 1, CLI_EXIT_USAGE = 2 };

#define CLI_DEFAULT_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- per-invocation context ------------------------------------------- */
typedef struct cli {
    const char *cmd; /* "train" */
    char prog[48];   /* "mmaint train": prefix of every message */
    bool json;       /* --json: one JSON object on stdout, human text on stderr */
    bool quiet;      /* --quiet: no progress, no per-epoch lines */
    bool tty;        /* stderr is a terminal: draw a progress bar */
    FILE *out;       /* human-readable results: stdout, or stderr with --json */
} cli;

void cli_init(cli *c, const char *cmd);

/* Messages on stderr, prefixed with c->prog. They return the exit code. */
int cli_usage_error(const cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int cli_runtime_error(const cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "<prog>: <context>: <library detail message>"; exit 1 (runtime) or 2 (usage). */
int cli_lib_error(const cli *c, mm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cli_lib_usage_error(const cli *c, mm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Detail message of the last library error, or the status text. */
const char *cli_lib_message(mm_status st);
/* Human lines (progress, notes) unless --quiet. Goes to c->out. */
void cli_say(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- strict number parsing: 0 on success, else prints and returns 2 ---- */
int cli_parse_double(const cli *c, const char *flag, const char *text, double *out);
int cli_parse_size(const cli *c, const char *flag, const char *text, size_t *out);
int cli_parse_long(const cli *c, const char *flag, const char *text, long *out);
/* "1", "0", "true", "false", "yes", "no", "on", "off"; NULL (bare flag) is 1. */
int cli_parse_bool(const cli *c, const char *flag, const char *text, bool *out);

/* ---- small utilities --------------------------------------------------- */
double cli_now(void); /* monotonic seconds */
void cli_format_duration(double seconds, char *buf, size_t cap); /* "1:05", "1:02:03" */
void cli_format_bytes(uint64_t bytes, char *buf, size_t cap);     /* "1.2 MiB" */
/* Size of a file in bytes, or -1. */
long long cli_file_size(const char *path);
bool cli_file_exists(const char *path);
/* JSON helpers: NaN/Inf become null (jansson refuses them). */
json_t *cli_json_num(double v);
/* Print a JSON value (pretty) and a newline to stdout; decrefs it. */
void cli_json_print(json_t *value);
/* Ctrl-C: the first SIGINT sets a flag that loops poll; the second kills. */
void cli_install_sigint(void);
bool cli_interrupted(void);

/* ---- option tables ----------------------------------------------------- */
typedef struct cli_optdef {
    const char *name; /* long name without "--" */
    int has_arg;      /* no_argument, required_argument, optional_argument */
    int id;           /* value returned for it */
    const char *arg;  /* "N", "FILE" (for help), NULL if none */
    const char *help; /* one line; NULL hides it from the help text */
} cli_optdef;

#define CLI_MAX_OPTS 160

typedef struct cli_opts {
    struct option longopts[CLI_MAX_OPTS + 1];
    cli_optdef defs[CLI_MAX_OPTS];
    size_t n;
    char namebuf[CLI_MAX_OPTS][40]; /* storage for generated names */
} cli_opts;

/* Option ids shared by several commands. Optimizer settings generated from
 * the library's setting names use CLI_OPT_PARAM_BASE + mm_opt_param. */
enum {
    CLI_OPT_HELP = 'h',
    CLI_OPT_JSON = 1000,
    CLI_OPT_QUIET,
    CLI_OPT_THREADS,
    CLI_OPT_OUT,
    /* data */
    CLI_OPT_TRAIN_IMAGES,
    CLI_OPT_TRAIN_LABELS,
    CLI_OPT_TRAIN_CSV,
    CLI_OPT_VAL_IMAGES,
    CLI_OPT_VAL_LABELS,
    CLI_OPT_VAL_CSV,
    CLI_OPT_TEST_IMAGES,
    CLI_OPT_TEST_LABELS,
    CLI_OPT_TEST_CSV,
    CLI_OPT_IMAGES,
    CLI_OPT_LABELS,
    CLI_OPT_CSV,
    CLI_OPT_LABEL_COLUMN,
    CLI_OPT_VAL_SPLIT,
    CLI_OPT_OFFSET,
    CLI_OPT_LIMIT,
    CLI_OPT_DATA_DIR,
    /* optimizer */
    CLI_OPT_OPTIMIZER,
    CLI_OPT_SET,
    CLI_OPT_LR,
    /* first id of commands' own options */
    CLI_OPT_CMD_BASE = 1100,
    CLI_OPT_PARAM_BASE = 2000
};

void cli_opts_init(cli_opts *o);
/* Append definitions; a name already present is skipped (first wins). */
void cli_opts_add(cli_opts *o, const cli_optdef *defs, size_t n);
void cli_opts_add_common(cli_opts *o, bool with_json);
void cli_opts_add_out(cli_opts *o, const char *help);
/* Data flags. `roles` is a bit set of (1 << CLI_ROLE_*); `primary` is the role
 * that --images/--labels/--csv, --offset/--limit refer to. */
void cli_opts_add_data(cli_opts *o, unsigned roles, int primary);
/* --optimizer, --lr, friendly flags with help (with fit_flags also --epochs,
 * --batch-size, --seed, --patience), --set, and a hidden --<name> flag for
 * every other library setting. */
void cli_opts_add_optimizer(cli_opts *o, bool fit_flags);
/* Parse the next option: 1 = got one (*id, *arg set), 0 = done (positional
 * arguments are argv[optind..argc)), -1 = error (message printed; exit 2).
 * Yes/no flags (every flag that takes no required value, except --help)
 * accept --FLAG, --FLAG=VALUE and --FLAG VALUE, the last only when VALUE is
 * a word cli_parse_bool knows (so a bare flag before a positional argument
 * still works); their *arg is then "1" or "0" (see cli_bool_arg). */
int cli_getopt(const cli *c, int argc, char **argv, const cli_opts *o, int *id,
               const char **arg);
/* The value of a yes/no flag as cli_getopt passes it: false only for "0". */
bool cli_bool_arg(const char *arg);
/* The flag cli_getopt returned last, as spelled in full ("--epochs"). */
const char *cli_current_flag(void);
/* Print the option list of `o` for help texts. */
void cli_opts_print_help(const cli_opts *o, FILE *f);
/* List the library's optimizer settings (names and ranges). */
void cli_print_optimizer_settings(FILE *f);
/* Handle options every command shares (--json, --quiet, --threads):
 * 1 if handled (then *rc is 0, or 2 after a usage error), 0 if not. */
int cli_common_option(cli *c, int id, const char *arg, int *rc);

/* ---- data -------------------------------------------------------------- */
enum { CLI_ROLE_TRAIN = 0, CLI_ROLE_VAL = 1, CLI_ROLE_TEST = 2, CLI_ROLE_COUNT = 3 };
#define CLI_ROLE_BIT(r) (1u << (r))

typedef struct cli_data_src {
    const char *images, *labels, *csv;
} cli_data_src;

typedef struct cli_data_cfg {
    cli_data_src src[CLI_ROLE_COUNT];
    int primary;            /* role of --images/--labels/--csv/--offset/--limit */
    int label_column;       /* library convention (MM_CSV_LABEL_LAST, MM_CSV_NO_LABELS, ...) */
    double val_split;       /* 0 = none */
    size_t offset, limit;   /* slice of the primary dataset; limit 0 = all */
    const char *data_dir;   /* Fashion-MNIST directory */
} cli_data_cfg;

void cli_data_init(cli_data_cfg *d, int primary);
/* 1 if the option was a data option (then *rc is 0 or 2), 0 otherwise. */
int cli_data_option(const cli *c, cli_data_cfg *d, int id, const char *arg, int *rc);
/* True if any source was given for a role. */
bool cli_data_given(const cli_data_cfg *d, int role);
/* A role about to be loaded with the Fashion-MNIST default while data files
 * were given for other roles of d (or of `other`, e.g. a holdout, named
 * `other_name`) is a usage error naming the missing flag: a --test-csv
 * without --train-csv must not train on Fashion-MNIST. 0 when the role has
 * data, no data flag was given at all, or --data-dir asks for Fashion-MNIST;
 * else the exit code. `purpose` starts the message's reason ("fine-tuning"). */
int cli_data_require(const cli *c, const cli_data_cfg *d, int role, const char *purpose,
                     const cli_data_cfg *other, const char *other_name);
/* Load the dataset of a role. With no source for the role and use_default,
 * load the Fashion-MNIST split (train for CLI_ROLE_TRAIN/VAL, t10k for TEST).
 * *out is NULL (and 0 returned) when the role has no source and no default.
 * Applies --offset/--limit to the primary role. `desc` receives a short
 * description for messages and lineage. Returns an exit code. */
int cli_data_load(const cli *c, const cli_data_cfg *d, int role, bool use_default,
                  mm_dataset **out, char *desc, size_t desc_cap);
/* Fashion-MNIST files of a split ("train" or "t10k") in dir; exit code. */
int cli_load_fashion(const cli *c, const char *dir, const char *split, mm_dataset **out);
const char *cli_fashion_dir(const cli_data_cfg *d);
/* Check that a labelled dataset fits a model: width and label range. */
int cli_check_data_fits(const cli *c, const mm_model *m, const mm_dataset *ds,
                        const char *what);

/* ---- optimizer settings ------------------------------------------------ */
#define CLI_MAX_SETTINGS 64

typedef struct cli_setting {
    mm_opt_param param;
    double value;
    char flag[48]; /* as the user spelled it, for messages: "--momentum" */
} cli_setting;

typedef struct cli_optim_cfg {
    bool kind_given;
    mm_optim_kind kind;
    cli_setting set[CLI_MAX_SETTINGS];
    size_t n;
} cli_optim_cfg;

void cli_optim_init(cli_optim_cfg *oc, mm_optim_kind default_kind);
/* 1 if the option was an optimizer option (then *rc is 0 or 2), 0 otherwise. */
int cli_optim_option(const cli *c, cli_optim_cfg *oc, int id, const char *arg, int *rc);
/* The last value given for a setting. */
bool cli_optim_lookup(const cli_optim_cfg *oc, mm_opt_param p, double *value);
/* Remove a setting (so that a command can handle it itself). */
void cli_optim_remove(cli_optim_cfg *oc, mm_opt_param p);
/* Apply every setting in setting order (so momentum precedes nesterov).
 * Errors are usage errors (2) naming the flag. */
int cli_optim_apply(const cli *c, const cli_optim_cfg *oc, mm_optimizer *opt);
/* The configured (base) learning rate; the schedule scales it per step. */
double cli_base_lr(const mm_optimizer *opt);
/* JSON object of an optimizer's kind and current settings (for lineage). */
json_t *cli_optimizer_json(const mm_optimizer *opt);

/* ---- progress bar ------------------------------------------------------ */
typedef struct cli_progress {
    const cli *c;
    double last_draw;
    bool drawn;
    int last_width;
} cli_progress;

void cli_progress_init(cli_progress *p, const cli *c);
/* Draw "label [#####.....]  42%  ETA 0:12  1234 samples/s  extra" on stderr
 * if it is a terminal, at most ~10 times per second (force draws anyway),
 * fitted to the terminal's width (cli_terminal_width) so it never wraps. */
void cli_progress_draw(cli_progress *p, const char *label, double fraction, double elapsed,
                       double rate, const char *extra, bool force);
/* Columns of the terminal on fd (TIOCGWINSZ), else $COLUMNS, else 80. */
int cli_terminal_width(int fd);
/* Erase the bar so that a normal line can be printed. */
void cli_progress_clear(cli_progress *p);

/* ---- training, evaluation and online learning (shared with demo) ------- */
typedef struct cli_fit_summary {
    unsigned epochs_run;
    double train_loss, train_accuracy, val_loss, val_accuracy;
    double learning_rate, samples_per_second, seconds;
    uint64_t steps;
    bool stopped_early;
    json_t *epochs; /* array of per-epoch objects (owned; may be NULL) */
} cli_fit_summary;

/* Run mm_optimizer_fit with the progress bar and per-epoch lines. */
int cli_fit(const cli *c, mm_optimizer *opt, const mm_dataset *train, const mm_dataset *val,
            cli_fit_summary *summary);

typedef struct cli_eval_result {
    double loss, accuracy, samples_per_second, seconds;
    size_t n, classes;
    uint64_t *confusion; /* classes*classes, row = true label, col = predicted; owned */
} cli_eval_result;

/* Loss, accuracy and (with want_confusion) the confusion matrix. */
int cli_evaluate(const cli *c, const mm_model *m, const mm_dataset *ds, bool want_confusion,
                 cli_eval_result *r);
void cli_eval_result_free(cli_eval_result *r);
void cli_print_confusion(FILE *f, const cli_eval_result *r);
json_t *cli_confusion_json(const cli_eval_result *r);

typedef struct cli_online_stats {
    size_t seen;            /* samples processed (predicted, then learned from) */
    size_t correct;         /* predictions that were right, all samples */
    size_t window_correct;  /* right predictions among the last `window` */
    size_t window_fill;     /* samples in the window (<= window) */
    size_t skipped;         /* updates refused as non-finite */
    double loss_sum;        /* sum of per-sample losses before each update */
    double seconds;
} cli_online_stats;

/* Called every `every` samples (and not at the end): return an exit code,
 * non-zero stops the run. */
typedef int (*cli_online_checkpoint_fn)(void *user, const cli_online_stats *st);

typedef struct cli_online_cfg {
    size_t window;        /* rolling accuracy window, default 1000 */
    size_t report_every;  /* print a line every N samples; 0 = never */
    size_t every;         /* checkpoint callback every N samples; 0 = never */
    cli_online_checkpoint_fn checkpoint;
    void *user;
    const char *label;    /* progress bar label */
} cli_online_cfg;

/* Predict-then-learn over samples [start, start+count) of ds, one at a time. */
int cli_online(const cli *c, mm_optimizer *opt, const mm_dataset *ds, size_t start,
               size_t count, const cli_online_cfg *cfg, cli_online_stats *st);
double cli_online_rolling(const cli_online_stats *st);
double cli_online_progressive(const cli_online_stats *st);
json_t *cli_online_json(const cli_online_stats *st, size_t window);

/* Append an "online_update" lineage event for samples [first, first+samples)
 * of the stream, with the running statistics. Exit code. */
int cli_record_update(const cli *c, mm_model *model, const mm_optimizer *opt, const char *parent,
                      const char *data_desc, size_t first, size_t samples,
                      const cli_online_stats *st, size_t window);

/* "784-256-128-10:relu" for uniform models, else per-layer activations. */
void cli_arch_string(const mm_model *m, char *buf, size_t cap);
/* Load a model file (exit code, message names the file). */
int cli_load_model(const cli *c, const char *path, mm_model **out);

/* Transfer learning (cmd_transfer.c, shared with demo): parse a label map
 * ("0,1,0,...", '-' drops a label, or a preset name such as
 * "tops-bottoms-shoes") into map[] (cap entries; *n entries, *classes new
 * classes); then build the dataset of the mapped labels, with at most
 * per_class samples per new class (0 = all) chosen by a seeded shuffle.
 * Exit codes. */
int cli_parse_label_map(const cli *c, const char *text, int32_t *map, size_t cap, size_t *n,
                        size_t *classes);
int cli_transfer_subset(const cli *c, const mm_dataset *ds, const int32_t *map, size_t map_n,
                        size_t per_class, uint64_t seed, size_t classes, mm_dataset **out);

/* ---- guarded maintenance (cmd_maintain.c, shared with demo) ------------ */

/* The drift scenario over a stream of `length` samples drawn (seeded
 * shuffle, cycling) from a labelled pool: normal until shift_at, then a
 * class mix where the first half of the classes make ~70%, from drift_at on
 * brightened images (0.25 + 0.75 x), and labels scrambled (uniform random)
 * in [poison_at, poison_end). */
typedef struct cli_maint_plan {
    size_t length, shift_at, drift_at, poison_at, poison_end;
} cli_maint_plan;
void cli_maint_plan_for(size_t length, cli_maint_plan *p);
int cli_maint_scenario(const cli *c, const mm_dataset *pool, size_t length, uint64_t seed,
                       mm_dataset **out, cli_maint_plan *plan);
/* A copy of `ds` with the scenario's brightened images (labels kept), so a
 * fixed test set can be shown as the stream shows it after the drift. */
int cli_maint_brighten(const cli *c, const mm_dataset *ds, mm_dataset **out);

typedef enum { CLI_MAINT_NEVER = 0, CLI_MAINT_NAIVE = 1, CLI_MAINT_GUARDED = 2 } cli_maint_mode;
const char *cli_maint_mode_name(cli_maint_mode m);

/* Samples per series point: plot_every if not 0, else from the stream's
 * length, at least CLI_MAINT_MIN_POINTS points and at most 500 samples
 * apart (1 for streams shorter than CLI_MAINT_MIN_POINTS). */
#define CLI_MAINT_MIN_POINTS 50
size_t cli_maint_plot_every(size_t plot_every, size_t length);

typedef struct cli_maint_run_cfg {
    cli_maint_mode mode;
    size_t plot_every;   /* samples per series point; 0: cli_maint_plot_every */
    size_t status_every; /* status line period without a terminal; 0 = none */
    const char *label;   /* progress bar label */
    mm_optimizer *opt;   /* naive mode: predict, then step this optimizer per sample */
    /* Optional fixed test sets: at every series point the served model is
     * also evaluated on probe[0] up to stream position probe_switch and on
     * probe[1] after it (the scenario: normal, then brightened test
     * images). Unlike progressive accuracy, which is measured on different
     * samples at every point, this compares models on the same images. */
    const mm_dataset *probe[2];
    size_t probe_switch;
} cli_maint_run_cfg;

typedef struct cli_maint_result {
    cli_maint_mode mode;
    mm_maint_report rep; /* the last report */
    size_t samples;
    uint64_t correct;
    double seconds;
    uint64_t *pos;       /* series: accuracy of (pos[i-1], pos[i]] */
    double *acc;
    double *probe;       /* test-set accuracy of the served model at pos[i] (NaN: no probe) */
    size_t n, cap;
    uint64_t *ev_pos;    /* events: 'd' drift, 'p' promote, 'r' challenger rejected */
    char *ev_kind;
    size_t n_ev, cap_ev;
    mm_maint_range *ranges; /* quarantined windows */
    size_t n_ranges;
} cli_maint_result;

/* Feed the whole stream to mt (guarded), or predict-then-learn with
 * cfg->opt (naive, mt NULL), or only predict with `model` (never updated),
 * in chunks of 100 with the status line; ends the last window. Exit code. */
int cli_maint_run(const cli *c, mm_maintainer *mt, const mm_model *model, const mm_dataset *ds,
                  const cli_maint_run_cfg *cfg, cli_maint_result *r);
void cli_maint_result_free(cli_maint_result *r);
/* Accuracy over the series points that lie inside [from, to). */
double cli_maint_accuracy_between(const cli_maint_result *r, uint64_t from, uint64_t to);
json_t *cli_maint_json(const cli_maint_result *r);
/* The benchmark's measures of a scenario run.
 * Progressive (on the stream): accuracy over the 2000 samples before the
 * drift, over the 1000 ending 5000 after it, the first point after the drift
 * where the last 1000 samples are within 2 points of the pre-drift accuracy
 * (-1: never before the poison), and accuracy over the 2000 samples before /
 * after the poisoned segment.
 * Test set (when the run had a probe; NaN / -1 otherwise): the served
 * model's accuracy at the drift (normal images), 5000 samples after it
 * (brightened; or at the last point before, on shorter streams), the first
 * point after the drift within 2 points of the pre-drift accuracy, at the
 * start of the poisoned segment, and the worst point from there to 2000
 * samples after its end; poison cost = start - worst. Each at the last
 * series point at or before the position. */
typedef struct cli_maint_metrics {
    double before_drift, after_5k, recovered_after, before_poison, after_poison, poison_cost;
    double t_before_drift, t_after_5k, t_recovered_after, t_before_poison, t_worst_poison,
        t_poison_cost;
} cli_maint_metrics;
void cli_maint_scenario_metrics(const cli_maint_result *r, const cli_maint_plan *p,
                                cli_maint_metrics *m);
json_t *cli_maint_metrics_json(const cli_maint_metrics *m);
void cli_maint_print_report(FILE *f, const cli_maint_result *r);
/* Line chart of one or more runs, SVG or PNG by the name's extension
 * (atomic write). Exit code; any other extension is a usage error. */
int cli_maint_plot(const cli *c, const char *path, const cli_maint_result *const *runs,
                   size_t n_runs, const cli_maint_plan *plan);
/* 0 if `path` names a plot format cli_maint_plot writes (.svg, .png, any
 * case), else the usage error's exit code (the message printed). */
int cli_maint_plot_check(const cli *c, const char *path);

/* ---- raster canvas and PNG (cli_png.c) --------------------------------- */
/* Coordinates as in SVG: pixel (i, j) covers [i, i+1) x [j, j+1); colours
 * 0xRRGGBB. */
typedef struct cli_canvas {
    int w, h;
    uint8_t *rgb; /* w * h pixels, 3 bytes each, rows top to bottom */
} cli_canvas;
/* 0, or -1 when out of memory. */
int cli_canvas_init(cli_canvas *cv, int w, int h, uint32_t bg);
void cli_canvas_free(cli_canvas *cv);
/* alpha blends over what is there (1 = opaque). */
void cli_canvas_rect(cli_canvas *cv, double x, double y, double w, double h, uint32_t rgb,
                     double alpha);
void cli_canvas_line(cli_canvas *cv, double x0, double y0, double x1, double y1, double width,
                     uint32_t rgb, bool dashed);
void cli_canvas_disc(cli_canvas *cv, double cx, double cy, double r, uint32_t rgb);
/* Built-in 5x7 font, 6 px a character; y is the baseline; anchor -1 start,
 * 0 middle, 1 end (SVG's text-anchor). */
int cli_canvas_text_width(const char *s);
void cli_canvas_text(cli_canvas *cv, double x, double y, int anchor, uint32_t rgb,
                     const char *s);
/* The canvas as an 8-bit RGB PNG. 0, or -1 with errno set. */
int cli_canvas_write_png(const cli_canvas *cv, FILE *f);

/* Print text wrapped at 80 columns; the first line starts at column `col`,
 * continuation lines are indented by `indent` spaces. Ends with a newline. */
void cli_print_wrapped(FILE *f, const char *text, int col, int indent);

/* Pretty-print a lineage JSON array (text) as a numbered list. */
void cli_print_lineage(FILE *f, const char *lineage_json, const char *indent);

/* ---- subcommands ------------------------------------------------------- */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_transfer(int argc, char **argv);
int cmd_maintain(int argc, char **argv);

void help_train(FILE *f);
void help_eval(FILE *f);
void help_update(FILE *f);
void help_info(FILE *f);
void help_demo(FILE *f);
void help_prune(FILE *f);
void help_quantize(FILE *f);
void help_convert(FILE *f);
void help_transfer(FILE *f);
void help_maintain(FILE *f);

/* Inference samples/s at batch 1 and batch 256 of each of `nmodels` models
 * (same input width), timed on inputs from ds (cycled; a fixed pseudo-random
 * pattern if ds is NULL) in chunks of a fixed number of forwards, the models
 * interleaved, median chunk (cli_run.c). Exit code. */
int cli_infer_speed(const cli *c, const mm_model *const *models, size_t nmodels,
                    const mm_dataset *ds, double *b1, double *b256);

/* What prune and quantize report before and after (cli_run.c). */
typedef struct cli_model_stats {
    double loss, accuracy; /* NaN without test data */
    size_t params, nonzero, bytes;
    long long file_size;   /* filled by the caller */
    double b1, b256;       /* filled by the caller (cli_infer_speed) */
} cli_model_stats;

/* Parameters, non-zeros, bytes, and test loss/accuracy when test != NULL.
 * Exit code. */
int cli_measure_model(const cli *c, const mm_model *m, const mm_dataset *test,
                      cli_model_stats *s);
/* The stats as a JSON object (new reference). */
json_t *cli_model_stats_json(const cli_model_stats *s);

/* The common end of prune and quantize: finish the summary lineage event
 * ev (consumed; test_data and the accuracies when test_desc is not NULL,
 * then the tool) as `op`, save `model` to `out`, and fill after->file_size
 * and both models' batch-1/256 speeds (timed on speed_data). Exit code. */
int cli_save_summary(const cli *c, mm_model *model, const mm_model *orig, json_t *ev,
                     const char *op, const char *out, const char *test_desc,
                     const mm_dataset *speed_data, cli_model_stats *before,
                     cli_model_stats *after);

#endif /* MMAINT_CLI_H */
