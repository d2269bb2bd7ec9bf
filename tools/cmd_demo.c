/* mmaint demo — the model maintenance story on Fashion-MNIST, as a list of
 * steps: train and deploy v1, keep updating it online as new data arrives
 * (saving a new version every few thousand samples), prune a copy of the
 * latest version for small devices, quantize another copy to int8 and the
 * pruned copy too (pruned and int8: the smallest), re-use its body for a
 * new task (transfer learning), and summarise.
 *
 * Each step is a function over a shared context; adding a step (prune,
 * quantize, export...) means writing one function and one table row. Steps
 * that produce a model file call demo_add_version, and the summary table
 * lists every version whatever step made it.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { OPT_QUICK = CLI_OPT_CMD_BASE, OPT_SEED };

#define DEMO_MAX_VERSIONS 64

typedef struct demo_version {
    char name[16];         /* "v1" */
    char path[1100];       /* DIR/model-v1.mmf */
    char made_by[96];      /* "train adam, 3 epochs on 50000" */
    size_t online_samples; /* online samples learned so far */
    size_t samples_seen;   /* distinct samples learned from: training + online */
    double test_accuracy;
    long long file_size;
    double infer1; /* batch-1 inference samples/s (summary) */
} demo_version;

typedef struct demo_ctx {
    cli *c;
    const char *out_dir;
    const char *data_dir;
    bool quick;
    uint64_t seed;
    /* plan */
    size_t train_n;      /* the first train_n training images train v1 */
    size_t stream_start; /* images from here on are held back (50000) */
    size_t stream_n;     /* stream_n of them arrive one at a time */
    size_t every;     /* a new version every `every` samples */
    unsigned epochs;
    double online_lr;
    unsigned prune_epochs; /* fine-tuning epochs of the pruning step */
    double prune_sparsity;
    /* state */
    mm_dataset *all, *train, *stream, *test;
    mm_model *model; /* the deployed model, updated in place */
    demo_version versions[DEMO_MAX_VERSIONS];
    size_t nversions;
    cli_online_stats online;
    demo_version pruned; /* a branch off the latest version, not a deployed version */
    bool has_pruned;
    demo_version quant; /* int8 copy of the latest version (also a branch) */
    bool has_quant;
    demo_version pruned_quant; /* the pruned branch quantized: sparse_int8 layers */
    bool has_pruned_quant;
    /* transfer step: the deployed body re-used for a 3-way task */
    bool has_transfer;
    size_t transfer_n;
    double transfer_acc, transfer_s, scratch_acc, scratch_s;
    json_t *json;
} demo_ctx;

typedef struct demo_step {
    const char *name;
    const char *title;
    int (*run)(demo_ctx *d);
} demo_step;

/* ---- helpers ----------------------------------------------------------- */

static int mkdir_p(const cli *c, const char *dir) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return cli_usage_error(c, "--out: path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return cli_runtime_error(c, "creating %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return cli_runtime_error(c, "creating %s: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cli_runtime_error(c, "%s is not a directory", buf);
    return 0;
}

static int test_accuracy(demo_ctx *d, double *acc) {
    cli_eval_result r;
    int rc = cli_evaluate(d->c, d->model, d->test, false, &r);
    if (rc == 0) *acc = r.accuracy;
    return rc;
}

/* Save the deployed model as the next version and measure it. */
static int demo_add_version(demo_ctx *d, const char *made_by, demo_version **out) {
    if (d->nversions >= DEMO_MAX_VERSIONS) return cli_runtime_error(d->c, "too many versions");
    demo_version *v = &d->versions[d->nversions];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "v%zu", d->nversions + 1);
    snprintf(v->path, sizeof v->path, "%s/model-v%zu.mmf", d->out_dir, d->nversions + 1);
    snprintf(v->made_by, sizeof v->made_by, "%s", made_by);
    v->online_samples = d->online.seen;
    v->samples_seen = d->train_n + d->online.seen;
    mm_status st = mm_model_save(d->model, v->path);
    if (st != MM_OK) return cli_lib_error(d->c, st, "saving %s", v->path);
    v->file_size = cli_file_size(v->path);
    int rc = test_accuracy(d, &v->test_accuracy);
    if (rc) return rc;
    d->nversions++;
    if (out) *out = v;
    return 0;
}

static const char *last_version_path(const demo_ctx *d) {
    return d->nversions ? d->versions[d->nversions - 1].path : NULL;
}

/* Versions live side by side in one directory: lineage names the parent by
 * its file name, so the directory can move. */
static const char *last_version_file(const demo_ctx *d) {
    const char *p = last_version_path(d);
    const char *slash = p ? strrchr(p, '/') : NULL;
    return slash ? slash + 1 : p;
}

/* ---- steps ------------------------------------------------------------- */

static int step_data(demo_ctx *d) {
    int rc = cli_load_fashion(d->c, d->data_dir, "train", &d->all);
    if (rc) return rc;
    if ((rc = cli_load_fashion(d->c, d->data_dir, "t10k", &d->test))) return rc;
    size_t n = mm_dataset_size(d->all);
    if (n < d->stream_start + d->stream_n)
        return cli_runtime_error(d->c, "%s: only %zu training images, the demo needs %zu", d->data_dir, n,
                                 d->stream_start + d->stream_n);
    size_t held_back = n - d->stream_start;
    mm_status st = mm_dataset_slice(d->all, 0, d->train_n, &d->train);
    if (st == MM_OK) st = mm_dataset_slice(d->all, d->stream_start, d->stream_n, &d->stream);
    if (st != MM_OK) return cli_lib_error(d->c, st, "splitting the training set");
    mm_dataset_free(d->all); /* the slices are copies */
    d->all = NULL;
    cli_say(d->c,
            "Fashion-MNIST from %s: %zu training images, %zu test images.\n"
            "Training v1 on the first %zu; the last %zu are held back as \"new data arriving after\n"
            "deployment\"%s.\n",
            d->data_dir, n, mm_dataset_size(d->test), d->train_n, held_back,
            d->stream_n < held_back || d->train_n < d->stream_start ? " (--quick: a part of each)" : "");
    return 0;
}

static int step_train(demo_ctx *d) {
    const cli *c = d->c;
    mm_status st = mm_model_create_from_spec(&d->model, "784-256-128-10:relu", d->seed);
    if (st != MM_OK) return cli_lib_error(c, st, "creating the model");
    mm_optimizer *opt = NULL;
    st = mm_optimizer_create(&opt, d->model, MM_OPTIM_ADAM);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_LEARNING_RATE, 1e-3);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_BATCH_SIZE, 64);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_EPOCHS, d->epochs);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_SEED, (double)d->seed);
    if (st != MM_OK) {
        mm_optimizer_free(opt);
        return cli_lib_error(c, st, "setting up the optimizer");
    }
    cli_say(c, "784-256-128-10 relu, %zu parameters; Adam lr 1e-3, batch 64, %u epoch(s), %s kernels\n",
            mm_model_num_params(d->model), d->epochs, mm_backend_name());
    cli_fit_summary fs;
    memset(&fs, 0, sizeof fs);
    int rc = cli_fit(c, opt, d->train, NULL, &fs);
    if (rc) {
        mm_optimizer_free(opt);
        return rc;
    }
    mm_optimizer_free(opt);
    /* The library's fit event holds the optimizer and statistics. */
    json_t *ev = json_object();
    char data[64];
    snprintf(data, sizeof data, "fashion-mnist/train[0:%zu]", d->train_n);
    json_object_set_new(ev, "data", json_string(data));
    json_object_set_new(ev, "samples", json_integer((json_int_t)d->train_n));
    json_object_set_new(ev, "tool", json_string("mmaint demo " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    st = mm_model_add_lineage(d->model, "train", detail);
    free(detail);
    if (st != MM_OK) return cli_lib_error(c, st, "recording lineage");

    char made_by[96];
    snprintf(made_by, sizeof made_by, "train: adam, %u epoch(s)", fs.epochs_run);
    demo_version *v;
    if ((rc = demo_add_version(d, made_by, &v))) return rc;
    char size[32];
    cli_format_bytes((uint64_t)(v->file_size < 0 ? 0 : v->file_size), size, sizeof size);
    cli_say(c, "v1: test accuracy %.4f; deployed as %s (%s)\n", v->test_accuracy, v->path, size);
    json_t *tj = json_object();
    json_object_set_new(tj, "samples", json_integer((json_int_t)d->train_n));
    json_object_set_new(tj, "epochs", json_integer(fs.epochs_run));
    json_object_set_new(tj, "train_loss", cli_json_num(fs.train_loss));
    json_object_set_new(tj, "train_accuracy", cli_json_num(fs.train_accuracy));
    json_object_set_new(tj, "samples_per_second", cli_json_num(fs.samples_per_second));
    json_object_set_new(tj, "seconds", cli_json_num(fs.seconds));
    json_object_set_new(tj, "test_accuracy", cli_json_num(v->test_accuracy));
    json_object_set_new(d->json, "train", tj);
    return 0;
}

typedef struct online_ctx {
    demo_ctx *d;
    mm_optimizer *opt;
    size_t last; /* samples at the previous version */
} online_ctx;

static int online_checkpoint(void *user, const cli_online_stats *st) {
    online_ctx *oc = user;
    demo_ctx *d = oc->d;
    d->online = *st;
    char data[64];
    snprintf(data, sizeof data, "fashion-mnist/train[%zu:%zu]", d->stream_start, d->stream_start + d->stream_n);
    int rc = cli_record_update(d->c, d->model, oc->opt, last_version_file(d), data, d->stream_start + oc->last,
                               st->seen - oc->last, st, 1000);
    if (rc) return rc;
    char made_by[96];
    snprintf(made_by, sizeof made_by, "online update: sgd, +%zu", st->seen - oc->last);
    demo_version *v;
    if ((rc = demo_add_version(d, made_by, &v))) return rc;
    oc->last = st->seen;
    cli_say(d->c, "%s after %zu new samples: rolling acc %.4f, test accuracy %.4f -> %s\n", v->name, st->seen,
            cli_online_rolling(st), v->test_accuracy, v->path);
    return 0;
}

static int step_online(demo_ctx *d) {
    const cli *c = d->c;
    mm_optimizer *opt = NULL;
    mm_status st = mm_optimizer_create(&opt, d->model, MM_OPTIM_SGD);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_LEARNING_RATE, d->online_lr);
    if (st != MM_OK) {
        mm_optimizer_free(opt);
        return cli_lib_error(c, st, "setting up the online optimizer");
    }
    cli_say(c, "%zu new samples arrive one at a time; each is predicted, then learned from\n"
               "(SGD lr %g); a new version is saved every %zu samples.\n",
            d->stream_n, d->online_lr, d->every);
    online_ctx oc = {d, opt, 0};
    cli_online_cfg cfg = {1000, 0, d->every, online_checkpoint, &oc, "online"};
    cli_online_stats s;
    int rc = cli_online(c, opt, d->stream, 0, d->stream_n, &cfg, &s);
    if (rc == 0 && oc.last != s.seen) rc = online_checkpoint(&oc, &s);
    mm_optimizer_free(opt);
    if (rc) return rc;
    d->online = s;
    cli_say(c, "online: %zu samples, progressive accuracy %.4f, rolling accuracy (last 1000) %.4f, %.0f samples/s\n",
            s.seen, cli_online_progressive(&s), cli_online_rolling(&s),
            s.seconds > 0 ? (double)s.seen / s.seconds : 0.0);
    json_object_set_new(d->json, "online", cli_online_json(&s, 1000));
    return 0;
}

/* Guarded maintenance (issue 7): the held-back images become a stream that
 * drifts (a shifted class mix, then brightened images) and carries a
 * poisoned segment (labels scrambled). The deployed model meets it three
 * ways: never updated, naive online SGD (every sample learned at once), and
 * guarded maintenance (mm_maintainer: holdout-guarded windows with rollback
 * and quarantine, replay, champion/challenger on drift). The guarded result
 * becomes the next deployed version; maintain.svg plots the three. */
static int step_maintain(demo_ctx *d) {
    const cli *c = d->c;
    const size_t len = d->quick ? 6000 : 30000;
    cli_maint_plan plan;
    mm_dataset *ds = NULL;
    int rc = cli_maint_scenario(c, d->stream, len, d->seed, &ds, &plan);
    if (rc) return rc;
    cli_say(c,
            "A stream of %zu labelled samples drawn from the held-back images: normal, then a\n"
            "shifted class mix at %zu, brightened images from %zu, labels scrambled in\n"
            "[%zu, %zu). The deployed model meets it never updated, with naive online SGD\n"
            "(lr 1e-3), and under guarded maintenance (SGD lr 5e-4, replay, holdout-guarded\n"
            "windows of %d with rollback, ADWIN drift detection, fine-tuned and input\n"
            "re-aligned challengers).\n",
            len, plan.shift_at, plan.drift_at, plan.poison_at, plan.poison_end,
            d->quick ? 500 : 1000);
    cli_maint_result res[3];
    memset(res, 0, sizeof res);
    mm_dataset *bright = NULL; /* the test set as the stream shows it after the drift */
    if ((rc = cli_maint_brighten(c, d->test, &bright))) {
        mm_dataset_free(ds);
        return rc;
    }
    mm_model *nm = NULL;
    mm_optimizer *naive = NULL;
    mm_maintainer *mt = NULL;
    mm_model *kept = NULL;
    char ckpt[1100];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints", d->out_dir);
    cli_maint_run_cfg cfg = {CLI_MAINT_NEVER, 500, 0, "never", NULL, {d->test, bright}, plan.drift_at};
    rc = cli_maint_run(c, NULL, d->model, ds, &cfg, &res[0]);
    mm_status st = MM_OK;
    if (!rc) {
        st = mm_model_clone(d->model, &nm);
        if (st == MM_OK) st = mm_optimizer_create(&naive, nm, MM_OPTIM_SGD);
        if (st == MM_OK) st = mm_optimizer_set(naive, MM_OPT_LEARNING_RATE, 1e-3);
        if (st != MM_OK) rc = cli_lib_error(c, st, "naive online SGD");
    }
    if (!rc) {
        cli_maint_run_cfg ncfg = {CLI_MAINT_NAIVE, 500, 0, "naive", naive, {d->test, bright}, plan.drift_at};
        rc = cli_maint_run(c, NULL, NULL, ds, &ncfg, &res[1]);
    }
    if (!rc) {
        st = mm_maintainer_create(&mt, d->model, MM_OPTIM_SGD);
        if (st == MM_OK) st = mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 5e-4);
        if (st == MM_OK) st = mm_maintainer_set(mt, MM_MAINT_WINDOW, d->quick ? 500 : 1000);
        if (st == MM_OK) st = mm_maintainer_set(mt, MM_MAINT_SEED, (double)d->seed);
        if (st == MM_OK && (rc = mkdir_p(c, ckpt)) == 0) st = mm_maintainer_set_checkpoint_dir(mt, ckpt);
        if (!rc && st != MM_OK) rc = cli_lib_error(c, st, "setting up the maintainer");
    }
    if (!rc) {
        cli_maint_run_cfg gcfg = {CLI_MAINT_GUARDED, 500, 0, "guarded", NULL, {d->test, bright}, plan.drift_at};
        rc = cli_maint_run(c, mt, NULL, ds, &gcfg, &res[2]);
    }
    if (!rc) {
        FILE *f = c->out;
        fprintf(f, "%-8s %10s %9s %9s %8s %9s %9s %8s %9s %8s\n", "mode", "stream acc", "at drift",
                "+5000", "change", "at poison", "worst", "cost", "rollbacks", "version");
        json_t *mj = json_object();
        for (int k = 0; k < 3; k++) {
            cli_maint_metrics m;
            cli_maint_scenario_metrics(&res[k], &plan, &m);
            fprintf(f, "%-8s %10.4f %9.4f %9.4f %+8.2f %9.4f %9.4f %8.2f %9llu %8llu\n",
                    cli_maint_mode_name(res[k].mode),
                    res[k].samples ? (double)res[k].correct / (double)res[k].samples : NAN,
                    m.t_before_drift, m.t_after_5k, 100 * (m.t_after_5k - m.t_before_drift),
                    m.t_before_poison, m.t_worst_poison, 100 * m.t_poison_cost,
                    (unsigned long long)res[k].rep.rollbacks,
                    (unsigned long long)(res[k].mode == CLI_MAINT_GUARDED ? res[k].rep.version : 1));
            json_t *rj = cli_maint_json(&res[k]);
            json_object_set_new(rj, "metrics", cli_maint_metrics_json(&m));
            json_object_del(rj, "series");
            json_object_set_new(mj, cli_maint_mode_name(res[k].mode), rj);
        }
        fprintf(f, "(stream acc: progressive accuracy on the stream; the rest: the served model on the\n"
                   "test set, brightened after the drift: at the drift, 5000 samples later, when the\n"
                   "poison starts and the worst point until 2000 after it; cost = at poison - worst.\n"
                   "Guarded: %llu drift signal(s), %llu challenger(s), %llu promoted, %llu samples\n"
                   "quarantined)\n",
                (unsigned long long)res[2].rep.drifts, (unsigned long long)res[2].rep.challengers,
                (unsigned long long)res[2].rep.promotions, (unsigned long long)res[2].rep.quarantined);
        char svg[1100];
        snprintf(svg, sizeof svg, "%s/maintain.svg", d->out_dir);
        const cli_maint_result *runs[3] = {&res[0], &res[1], &res[2]};
        rc = cli_maint_plot(c, svg, runs, 3, &plan);
        if (!rc) cli_say(c, "plot: %s; checkpoints: %s/\n", svg, ckpt);
        json_object_set_new(mj, "plot", json_string(svg));
        json_object_set_new(d->json, "maintain", mj);
    }
    if (!rc) { /* the guarded result is the next deployed version */
        st = mm_model_clone(mm_maintainer_model(mt), &kept);
        if (st != MM_OK) rc = cli_lib_error(c, st, "copying the maintained model");
    }
    if (!rc) {
        mm_model_free(d->model);
        d->model = kept;
        char made_by[96];
        snprintf(made_by, sizeof made_by, "guarded: +%llu, %llu rollbacks",
                 (unsigned long long)res[2].rep.learned, (unsigned long long)res[2].rep.rollbacks);
        demo_version *v;
        if ((rc = demo_add_version(d, made_by, &v)) == 0)
            cli_say(c, "%s: the maintained deployed version, test accuracy %.4f (normal images) -> %s\n",
                    v->name, v->test_accuracy, v->path);
    }
    for (int k = 0; k < 3; k++) cli_maint_result_free(&res[k]);
    mm_dataset_free(bright);
    mm_maintainer_free(mt);
    mm_optimizer_free(naive);
    mm_model_free(nm);
    mm_dataset_free(ds);
    return rc;
}

/* Export the latest deployed version to ONNX (for other runtimes), when the
 * library was built with ONNX. */
static int step_export(demo_ctx *d) {
    const cli *c = d->c;
    if (!mm_onnx_available()) {
        cli_say(c, "skipped: this libmmaint was built without ONNX\n");
        return 0;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/model.onnx", d->out_dir);
    mm_status st = mm_onnx_export(d->model, path);
    if (st != MM_OK) return cli_lib_error(c, st, "exporting %s", path);
    mm_model *back = NULL;
    st = mm_onnx_import(&back, path);
    if (st != MM_OK) return cli_lib_error(c, st, "reading back %s", path);
    double acc = NAN;
    cli_eval_result r;
    int rc = cli_evaluate(c, back, d->test, false, &r);
    mm_model_free(back);
    if (rc) return rc;
    acc = r.accuracy;
    char size[32];
    long long fs = cli_file_size(path);
    cli_format_bytes((uint64_t)(fs < 0 ? 0 : fs), size, sizeof size);
    cli_say(c, "%s exported as %s (%s); read back: test accuracy %.4f\n", last_version_file(d), path,
            size, acc);
    json_t *ej = json_object();
    json_object_set_new(ej, "file", json_string(path));
    json_object_set_new(ej, "file_size", json_integer(fs));
    json_object_set_new(ej, "test_accuracy", cli_json_num(acc));
    json_object_set_new(d->json, "export", ej);
    return 0;
}

/* Prune a copy of the latest version to 90% sparsity, gradually (the
 * polynomial schedule over the first half of the fine-tuning, then recovery)
 * while fine-tuning on v1's training data; finalize every pruned layer to
 * the sparse kind; save model-pruned.mmf. The deployed model is unchanged.
 *
 * Choices, from benchmarks/RESULTS.md (issue 3): gradual and one shot +
 * fine-tuning score alike at 90% (0.8787 vs 0.8795), so the demo shows the
 * gradual schedule, which is what the library adds. MM_PRUNE_FORMAT_SPARSE
 * rather than auto: the copy is for inference only, and all-sparse layers
 * give the smaller file (16% vs 25% of dense) and faster batch-1 inference
 * (2.7x vs 2.0x dense); auto also weighs online-learning backward speed and
 * keeps the 79%-sparse second layer dense. */
static int step_prune(demo_ctx *d) {
    const cli *c = d->c;
    mm_model *m = NULL;
    mm_pruner *p = NULL;
    mm_optimizer *opt = NULL;
    demo_version *v = &d->pruned;
    memset(v, 0, sizeof *v);
    int rc = 0;
    mm_status st = mm_model_clone(d->model, &m);
    if (st != MM_OK) return cli_lib_error(c, st, "copying the model");
    const size_t params = mm_model_num_params(m);
    const uint64_t steps = (uint64_t)d->prune_epochs * ((mm_dataset_size(d->train) + 63) / 64);
    const double end = floor((double)steps / 2), freq = fmax(1, floor(end / 10));
    st = mm_pruner_create(&p, MM_PRUNE_MAGNITUDE_GLOBAL);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_SPARSITY, d->prune_sparsity);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_SCHEDULE, MM_PRUNE_POLYNOMIAL);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_END_STEP, end);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_FREQUENCY, freq);
    if (st == MM_OK) st = mm_pruner_set(p, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE);
    if (st == MM_OK) st = mm_optimizer_create(&opt, m, MM_OPTIM_ADAM);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_LEARNING_RATE, 1e-3);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_BATCH_SIZE, 64);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_EPOCHS, d->prune_epochs);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_SEED, (double)d->seed);
    if (st == MM_OK) st = mm_pruner_attach(p, opt);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "setting up pruning");
        goto done;
    }
    cli_say(c,
            "A copy of %s for small devices: remove %.0f%% of the weights (global magnitude),\n"
            "gradually over steps 0..%.0f of %llu while fine-tuning %u epoch(s) on the %zu\n"
            "training images (Adam lr 1e-3, batch 64).\n",
            last_version_file(d), 100 * d->prune_sparsity, end, (unsigned long long)steps,
            d->prune_epochs, mm_dataset_size(d->train));
    cli_fit_summary fs;
    memset(&fs, 0, sizeof fs);
    rc = cli_fit(c, opt, d->train, NULL, &fs);
    mm_pruner_attach(NULL, opt);
    if (rc) goto done;
    st = mm_pruner_finalize(p, m, NULL);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "finalizing the pruned model");
        goto done;
    }
    cli_eval_result er;
    if ((rc = cli_evaluate(c, m, d->test, false, &er))) goto done;
    snprintf(v->name, sizeof v->name, "pruned");
    snprintf(v->path, sizeof v->path, "%s/model-pruned.mmf", d->out_dir);
    snprintf(v->made_by, sizeof v->made_by, "prune %s: %.0f%%, %u epoch(s)",
             d->versions[d->nversions - 1].name, 100 * d->prune_sparsity, d->prune_epochs);
    v->online_samples = d->online.seen;
    v->samples_seen = d->train_n + d->online.seen;
    v->test_accuracy = er.accuracy;
    json_t *ev = json_object();
    json_object_set_new(ev, "parent", json_string(last_version_file(d)));
    json_object_set_new(ev, "criterion", json_string("magnitude_global"));
    json_object_set_new(ev, "sparsity", cli_json_num(d->prune_sparsity));
    json_object_set_new(ev, "schedule", json_string("polynomial"));
    json_object_set_new(ev, "fine_tune_epochs", json_integer(d->prune_epochs));
    char data[64];
    snprintf(data, sizeof data, "fashion-mnist/train[0:%zu]", d->train_n);
    json_object_set_new(ev, "data", json_string(data));
    json_object_set_new(ev, "test_accuracy_after", cli_json_num(er.accuracy));
    json_object_set_new(ev, "tool", json_string("mmaint demo " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    st = mm_model_add_lineage(m, "prune_summary", detail);
    free(detail);
    if (st == MM_OK) st = mm_model_save(m, v->path);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "saving %s", v->path);
        goto done;
    }
    v->file_size = cli_file_size(v->path);
    d->has_pruned = true;
    const demo_version *last = &d->versions[d->nversions - 1];
    char size[32], lsize[32];
    cli_format_bytes((uint64_t)(v->file_size < 0 ? 0 : v->file_size), size, sizeof size);
    cli_format_bytes((uint64_t)(last->file_size < 0 ? 0 : last->file_size), lsize, sizeof lsize);
    cli_say(c,
            "pruned: test accuracy %.4f (%s: %.4f); %zu of %zu parameters are non-zero;\n"
            "file %s (%s: %s) -> %s\n",
            v->test_accuracy, last->name, last->test_accuracy, mm_model_num_nonzero(m), params,
            size, last->name, lsize, v->path);
    json_t *pj = json_object();
    json_object_set_new(pj, "file", json_string(v->path));
    json_object_set_new(pj, "parent", json_string(last->path));
    json_object_set_new(pj, "sparsity", cli_json_num(d->prune_sparsity));
    json_object_set_new(pj, "fine_tune_epochs", json_integer(d->prune_epochs));
    json_object_set_new(pj, "params", json_integer((json_int_t)mm_model_num_params(m)));
    json_object_set_new(pj, "nonzero", json_integer((json_int_t)mm_model_num_nonzero(m)));
    json_object_set_new(pj, "param_bytes", json_integer((json_int_t)mm_model_param_bytes(m)));
    json_object_set_new(pj, "test_accuracy", cli_json_num(v->test_accuracy));
    json_object_set_new(pj, "file_size", json_integer(v->file_size));
    json_object_set_new(pj, "seconds", cli_json_num(fs.seconds));
    json_object_set_new(d->json, "pruned", pj);
done:
    mm_optimizer_free(opt);
    mm_pruner_free(p);
    mm_model_free(m);
    return rc;
}

/* Quantize `src` (the model of version `from`, only read) to int8 for fast
 * inference: static quantization with per-channel weight scales,
 * activation ranges calibrated (min-max) on 512 samples spread over v1's
 * training data, accuracy-aware with a tolerated drop of 0.3 points on the
 * test set against `from` (the layer that recovers most goes back to float
 * until the drop is met); no float master weights, so the file holds int8
 * weights (a pruned model's sparse layers become sparse_int8). Saves
 * DIR/model-<name>.mmf as version v, the summary under json_key. Choices
 * from benchmarks/RESULTS.md (issue 4). */
static int demo_quantize(demo_ctx *d, const mm_model *src, const demo_version *from,
                         demo_version *v, const char *name, const char *json_key) {
    const cli *c = d->c;
    mm_model *m = NULL;
    mm_quantizer *q = NULL;
    memset(v, 0, sizeof *v);
    const size_t cal = 512, n = mm_dataset_size(d->train), dim = mm_dataset_dim(d->train);
    const size_t k = cal < n ? cal : n;
    float *x = malloc(k * dim * sizeof *x);
    if (!x) return cli_runtime_error(c, "out of memory");
    for (size_t i = 0; i < k; i++) /* spread over the training data */
        memcpy(x + i * dim, mm_dataset_features(d->train) + (size_t)(((unsigned long long)i * n) / k) * dim,
               dim * sizeof *x);
    int rc = 0;
    const double max_drop = 0.003;
    const demo_version *last = from;
    mm_status st = mm_model_clone(src, &m);
    if (st == MM_OK) st = mm_quantizer_create(&q, MM_QUANT_INT8_STATIC);
    if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_PER_CHANNEL, 1);
    if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_KEEP_MASTER, 0);
    if (st == MM_OK) st = mm_quantizer_set(q, MM_QUANT_MAX_DROP, max_drop);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "setting up quantization");
        goto done;
    }
    cli_say(c,
            "An int8 copy of %s for fast inference: static quantization, per-channel\n"
            "weight scales, activation ranges calibrated on %zu training images; layers go\n"
            "back to float until the test accuracy is within %.1f points of %s.\n",
            strrchr(last->path, '/') ? strrchr(last->path, '/') + 1 : last->path, k, 100 * max_drop,
            last->name);
    double t0 = cli_now(), acc = NAN;
    st = mm_quantizer_calibrate(q, m, x, k);
    if (st == MM_OK)
        st = mm_quantizer_apply_with_tolerance(q, m, mm_dataset_features(d->test), mm_dataset_labels(d->test),
                                               mm_dataset_size(d->test), &acc);
    if (st != MM_OK) {
        rc = cli_lib_error(c, st, "quantizing");
        goto done;
    }
    const double seconds = cli_now() - t0;
    json_error_t jerr;
    json_t *rep = json_loads(mm_quantizer_report(q), 0, &jerr);
    json_t *layers = json_object_get(rep, "layers");
    size_t nq = 0, nl = json_array_size(layers);
    for (size_t i = 0; i < nl; i++)
        if (json_is_true(json_object_get(json_array_get(layers, i), "quantized"))) nq++;
    cli_eval_result er;
    if ((rc = cli_evaluate(c, m, d->test, false, &er))) {
        json_decref(rep);
        goto done;
    }
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->path, sizeof v->path, "%s/model-%s.mmf", d->out_dir, name);
    snprintf(v->made_by, sizeof v->made_by, "quantize %s: int8 static, %zu/%zu", last->name, nq, nl);
    v->online_samples = d->online.seen;
    v->samples_seen = d->train_n + d->online.seen;
    v->test_accuracy = er.accuracy;
    json_t *ev = json_object();
    json_object_set_new(ev, "parent", json_string(last->path));
    json_object_set_new(ev, "scheme", json_string("int8_static"));
    char data[64];
    snprintf(data, sizeof data, "fashion-mnist/train[0:%zu]", d->train_n);
    json_object_set_new(ev, "calibration_data", json_string(data));
    json_object_set_new(ev, "calibration_samples", json_integer((json_int_t)k));
    json_object_set_new(ev, "max_drop", cli_json_num(max_drop));
    json_object_set_new(ev, "tolerance_data", json_string("fashion-mnist/t10k"));
    json_object_set_new(ev, "layers_quantized", json_integer((json_int_t)nq));
    json_object_set_new(ev, "test_accuracy_after", cli_json_num(er.accuracy));
    json_object_set_new(ev, "tool", json_string("mmaint demo " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    st = mm_model_add_lineage(m, "quantize_summary", detail);
    free(detail);
    if (st == MM_OK) st = mm_model_save(m, v->path);
    if (st != MM_OK) {
        json_decref(rep);
        rc = cli_lib_error(c, st, "saving %s", v->path);
        goto done;
    }
    v->file_size = cli_file_size(v->path);
    char size[32], lsize[32];
    cli_format_bytes((uint64_t)(v->file_size < 0 ? 0 : v->file_size), size, sizeof size);
    cli_format_bytes((uint64_t)(last->file_size < 0 ? 0 : last->file_size), lsize, sizeof lsize);
    cli_say(c, "%s: test accuracy %.4f (%s: %.4f); %zu of %zu layers int8;\nfile %s (%s: %s) -> %s\n",
            v->name, v->test_accuracy, last->name, last->test_accuracy, nq, nl, size, last->name, lsize,
            v->path);
    for (size_t i = 0; i < nl; i++) {
        const json_t *e = json_array_get(layers, i);
        if (!json_is_true(json_object_get(e, "quantized")))
            cli_say(c, "  layer %lld in float: %s\n", (long long)json_integer_value(json_object_get(e, "index")),
                    json_string_value(json_object_get(e, "reason")));
    }
    json_t *qj = json_object();
    json_object_set_new(qj, "file", json_string(v->path));
    json_object_set_new(qj, "parent", json_string(last->path));
    json_object_set_new(qj, "scheme", json_string("int8_static"));
    json_object_set_new(qj, "calibration_samples", json_integer((json_int_t)k));
    json_object_set_new(qj, "max_drop", cli_json_num(max_drop));
    json_object_set_new(qj, "layers_quantized", json_integer((json_int_t)nq));
    json_object_set_new(qj, "param_bytes", json_integer((json_int_t)mm_model_param_bytes(m)));
    json_object_set_new(qj, "test_accuracy", cli_json_num(v->test_accuracy));
    json_object_set_new(qj, "parent_test_accuracy", cli_json_num(last->test_accuracy));
    json_object_set_new(qj, "file_size", json_integer(v->file_size));
    json_object_set_new(qj, "seconds", cli_json_num(seconds));
    json_object_set_new(qj, "layers", layers ? json_incref(layers) : json_array());
    json_object_set_new(d->json, json_key, qj);
    json_decref(rep);
done:
    free(x);
    mm_quantizer_free(q);
    mm_model_free(m);
    return rc;
}

static int step_quantize(demo_ctx *d) {
    int rc = demo_quantize(d, d->model, &d->versions[d->nversions - 1], &d->quant, "int8",
                           "quantized");
    d->has_quant = rc == 0;
    return rc;
}

/* Pruned and quantized ("Deep Compression"): the pruned branch to int8,
 * its sparse layers to sparse_int8: the smallest model of the demo. */
static int step_compress(demo_ctx *d) {
    if (!d->has_pruned) return 0;
    mm_model *pm = NULL;
    int rc = cli_load_model(d->c, d->pruned.path, &pm);
    if (rc == 0)
        rc = demo_quantize(d, pm, &d->pruned, &d->pruned_quant, "pruned-int8", "pruned_quantized");
    mm_model_free(pm);
    d->has_pruned_quant = rc == 0;
    return rc;
}

/* Batch-1 inference speed of every saved file, loaded back from disk. */
static int measure_speeds(demo_ctx *d) {
    /* The deployed versions, then the branches (pruned, int8) that exist. */
    demo_version *extra[3];
    size_t nextra = 0;
    if (d->has_pruned) extra[nextra++] = &d->pruned;
    if (d->has_quant) extra[nextra++] = &d->quant;
    if (d->has_pruned_quant) extra[nextra++] = &d->pruned_quant;
    size_t n = d->nversions + nextra;
    mm_model **ms = calloc(n, sizeof *ms);
    double *b1 = calloc(n, sizeof *b1), *b256 = calloc(n, sizeof *b256);
    int rc = 0;
    if (!ms || !b1 || !b256) rc = cli_runtime_error(d->c, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = cli_load_model(d->c, i < d->nversions ? d->versions[i].path : extra[i - d->nversions]->path, &ms[i]);
    if (rc == 0) rc = cli_infer_speed(d->c, (const mm_model *const *)ms, n, d->test, b1, b256);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) (i < d->nversions ? &d->versions[i] : extra[i - d->nversions])->infer1 = b1[i];
        if (ms) mm_model_free(ms[i]);
    }
    free(ms);
    free(b1);
    free(b256);
    return rc;
}

/* Transfer learning: the latest model's body (frozen) with a new 3-way head
 * (tops / bottoms+dresses / shoes+bags), trained on 100 labelled images per
 * class, against the same architecture from scratch on the same images. */
static int demo_fit_small(const cli *c, mm_model *m, const mm_dataset *train, double *secs) {
    mm_optimizer *opt = NULL;
    mm_status st = mm_optimizer_create(&opt, m, MM_OPTIM_ADAM);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_LEARNING_RATE, 3e-3);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_BATCH_SIZE, 32);
    if (st == MM_OK) st = mm_optimizer_set(opt, MM_OPT_EPOCHS, 15);
    const double t0 = cli_now();
    if (st == MM_OK) st = mm_optimizer_fit(opt, train, NULL, NULL, NULL, NULL);
    *secs = cli_now() - t0;
    mm_optimizer_free(opt);
    return st == MM_OK ? 0 : cli_lib_error(c, st, "transfer step: training");
}

static int step_transfer(demo_ctx *d) {
    const cli *c = d->c;
    int32_t map[16];
    size_t map_n = 0, classes = 0;
    mm_dataset *train = NULL, *test = NULL;
    mm_model *m = NULL, *scratch = NULL;
    int rc = cli_parse_label_map(c, "tops-bottoms-shoes", map, 16, &map_n, &classes);
    if (!rc) rc = cli_transfer_subset(c, d->train, map, map_n, 100, d->seed, classes, &train);
    if (!rc) rc = cli_transfer_subset(c, d->test, map, map_n, 0, d->seed, classes, &test);
    mm_status st = MM_OK;
    if (!rc) st = mm_model_clone(d->model, &m);
    if (!rc && st == MM_OK) st = mm_model_replace_head(m, classes, MM_ACT_IDENTITY, d->seed);
    for (size_t l = 0; !rc && st == MM_OK && l + 1 < mm_model_num_layers(m); l++)
        st = mm_model_set_trainable(m, l, 0);
    if (!rc && st == MM_OK) st = mm_model_create_from_spec(&scratch, "784-256-128-3:relu", d->seed);
    if (!rc && st != MM_OK) rc = cli_lib_error(c, st, "transfer step");
    if (!rc) rc = demo_fit_small(c, m, train, &d->transfer_s);
    if (!rc) rc = demo_fit_small(c, scratch, train, &d->scratch_s);
    if (!rc) {
        const float *x = mm_dataset_features(test);
        const int32_t *y = mm_dataset_labels(test);
        const size_t n = mm_dataset_size(test);
        st = mm_model_evaluate(m, x, y, NULL, n, NULL, &d->transfer_acc);
        if (st == MM_OK) st = mm_model_evaluate(scratch, x, y, NULL, n, NULL, &d->scratch_acc);
        if (st != MM_OK) rc = cli_lib_error(c, st, "transfer step: evaluating");
    }
    if (!rc) {
        d->has_transfer = true;
        d->transfer_n = mm_dataset_size(train);
        cli_say(c, "new task tops / bottoms+dresses / shoes+bags from %zu labelled images: re-used\n"
                   "body (frozen) + new head %.4f in %.2f s; same network from scratch %.4f in %.2f s\n",
                d->transfer_n, d->transfer_acc, d->transfer_s, d->scratch_acc, d->scratch_s);
        json_t *tj = json_object();
        json_object_set_new(tj, "task", json_string("tops-bottoms-shoes"));
        json_object_set_new(tj, "train_samples", json_integer((json_int_t)d->transfer_n));
        json_object_set_new(tj, "transfer_accuracy", cli_json_num(d->transfer_acc));
        json_object_set_new(tj, "transfer_seconds", cli_json_num(d->transfer_s));
        json_object_set_new(tj, "scratch_accuracy", cli_json_num(d->scratch_acc));
        json_object_set_new(tj, "scratch_seconds", cli_json_num(d->scratch_s));
        json_object_set_new(d->json, "transfer", tj);
    }
    mm_model_free(m);
    mm_model_free(scratch);
    mm_dataset_free(train);
    mm_dataset_free(test);
    return rc;
}

static void summary_row(FILE *f, const demo_version *v) {
    char size[32];
    cli_format_bytes((uint64_t)(v->file_size < 0 ? 0 : v->file_size), size, sizeof size);
    const char *base = strrchr(v->path, '/');
    base = base ? base + 1 : v->path;
    fprintf(f, "%-7s %-17s %7zu  %-32s %8.4f %10s %9.0f\n", v->name, base, v->samples_seen, v->made_by,
            v->test_accuracy, size, v->infer1);
}

static int step_summary(demo_ctx *d) {
    FILE *f = d->c->out;
    int rc = measure_speeds(d);
    if (rc) return rc;
    json_t *vs = json_array();
    fprintf(f, "%-7s %-17s %7s  %-32s %8s %10s %9s\n", "version", "file", "samples", "made by", "test acc",
            "size", "batch 1/s");
    for (size_t i = 0; i < d->nversions; i++) {
        const demo_version *v = &d->versions[i];
        summary_row(f, v);
        json_t *vj = json_object();
        json_object_set_new(vj, "version", json_string(v->name));
        json_object_set_new(vj, "file", json_string(v->path));
        json_object_set_new(vj, "made_by", json_string(v->made_by));
        json_object_set_new(vj, "samples_seen", json_integer((json_int_t)v->samples_seen));
        json_object_set_new(vj, "online_samples", json_integer((json_int_t)v->online_samples));
        json_object_set_new(vj, "test_accuracy", cli_json_num(v->test_accuracy));
        json_object_set_new(vj, "file_size", json_integer(v->file_size));
        json_object_set_new(vj, "infer_batch1_samples_per_second", cli_json_num(v->infer1));
        json_array_append_new(vs, vj);
    }
    json_object_set_new(d->json, "versions", vs);
    if (d->has_pruned) {
        summary_row(f, &d->pruned);
        json_t *pj = json_object_get(d->json, "pruned");
        if (pj) json_object_set_new(pj, "infer_batch1_samples_per_second", cli_json_num(d->pruned.infer1));
        const demo_version *last = &d->versions[d->nversions - 1];
        fprintf(f, "(batch 1/s: inference samples per second, 1 thread; the pruned model is %.1fx as\n"
                   "fast as %s, its file %.0f%% of the size)\n",
                d->pruned.infer1 / last->infer1, last->name,
                last->file_size > 0 ? 100.0 * (double)d->pruned.file_size / (double)last->file_size : 0.0);
    }
    if (d->has_quant) {
        summary_row(f, &d->quant);
        json_t *qj = json_object_get(d->json, "quantized");
        if (qj) json_object_set_new(qj, "infer_batch1_samples_per_second", cli_json_num(d->quant.infer1));
        const demo_version *last = &d->versions[d->nversions - 1];
        fprintf(f, "(the int8 model is %.1fx as fast as %s at batch 1, its file %.0f%% of the size,\n"
                   "test accuracy %+.2f points)\n",
                d->quant.infer1 / last->infer1, last->name,
                last->file_size > 0 ? 100.0 * (double)d->quant.file_size / (double)last->file_size : 0.0,
                100.0 * (d->quant.test_accuracy - last->test_accuracy));
    }
    if (d->has_pruned_quant) {
        summary_row(f, &d->pruned_quant);
        json_t *qj = json_object_get(d->json, "pruned_quantized");
        if (qj)
            json_object_set_new(qj, "infer_batch1_samples_per_second", cli_json_num(d->pruned_quant.infer1));
        const demo_version *last = &d->versions[d->nversions - 1], *pr = &d->pruned;
        fprintf(f, "(pruned and quantized: %.1fx as fast as %s at batch 1, its file %.1f%% of the size,\n"
                   "test accuracy %+.2f points against the pruned float model)\n",
                d->pruned_quant.infer1 / last->infer1, last->name,
                last->file_size > 0 ? 100.0 * (double)d->pruned_quant.file_size / (double)last->file_size : 0.0,
                100.0 * (d->pruned_quant.test_accuracy - pr->test_accuracy));
    }
    if (d->has_transfer)
        fprintf(f, "(transfer: a 3-way task from %zu labelled images, test accuracy %.4f with the\n"
                   "re-used body vs %.4f from scratch; %.2f s vs %.2f s of training)\n",
                d->transfer_n, d->transfer_acc, d->scratch_acc, d->transfer_s, d->scratch_s);
    const char *lineage = mm_model_lineage(d->model);
    {
        fprintf(f, "\nlineage of %s:\n", last_version_path(d) ? last_version_path(d) : "the model");
        cli_print_lineage(f, lineage, "  ");
    }
    json_error_t jerr;
    json_t *lj = json_loads(lineage, 0, &jerr);
    json_object_set_new(d->json, "lineage", lj ? lj : json_string(lineage));
    return 0;
}

static const demo_step demo_steps[] = {
    {"data", "Data", step_data},
    {"train", "Train and deploy v1", step_train},
    {"online", "Online updates on the held-back data", step_online},
    {"maintain", "Guarded maintenance on a drifting, poisoned stream", step_maintain},
    {"prune", "Prune a copy for small devices", step_prune},
    {"quantize", "Quantize a copy to int8 for fast inference", step_quantize},
    {"compress", "Quantize the pruned copy too: pruned and int8", step_compress},
    {"transfer", "Re-use the body for a new 3-way task", step_transfer},
    {"export", "Export the deployed version to ONNX", step_export},
    {"summary", "Summary", step_summary},
};

/* ---- command ----------------------------------------------------------- */

static void demo_opts(cli_opts *o) {
    static const cli_optdef own[] = {
        {"out", required_argument, CLI_OPT_OUT, "DIR", "directory for the model versions (default demo-out)"},
        {"quick", no_argument, OPT_QUICK, NULL, "a small, fast run (fewer samples, 1 epoch) for tests"},
        {"seed", required_argument, OPT_SEED, "N", "seed for initialisation and shuffling (default 42)"},
        {"data-dir", required_argument, CLI_OPT_DATA_DIR, "DIR",
         "Fashion-MNIST directory (env MM_FASHION_DIR, default " CLI_DEFAULT_FASHION_DIR ")"},
    };
    cli_opts_init(o);
    cli_opts_add(o, own, sizeof own / sizeof own[0]);
    cli_opts_add_common(o, true);
}

void help_demo(FILE *f) {
    cli_opts o;
    demo_opts(&o);
    fprintf(f, "Usage: mmaint demo [--out DIR] [--quick] [options]\n"
               "Model maintenance on Fashion-MNIST: train 784-256-128-10 (relu, Adam lr 1e-3,\n"
               "batch 64, 3 epochs) on the first 50000 training images and save it as\n"
               "DIR/model-v1.mmf; then update the deployed model online on the 10000 held-back\n"
               "images, one at a time (predict, then learn; SGD), saving model-v2.mmf, ...\n"
               "every 2500 samples with their lineage; then guarded maintenance on a 30000-sample\n"
               "stream that drifts (class mix, brightened images) and carries a poisoned\n"
               "segment, compared with no updates and naive online SGD (maintain.svg,\n"
               "checkpoints/, the maintained model as the next version); then prune a copy of\n"
               "the latest version\n"
               "to 90%% sparsity while fine-tuning 2 epochs (model-pruned.mmf); quantize\n"
               "another copy to int8 (static, per-channel, 512 calibration samples, at most\n"
               "0.3 points lost: model-int8.mmf); re-use the latest body (frozen) for a new\n"
               "3-way task (tops / bottoms+dresses / shoes+bags) from 100 labelled images per\n"
               "class and compare with the same network trained from scratch on them;\n"
               "finally a summary table with test accuracy, file size and batch-1 inference\n"
               "speed.\n\n"
               "Steps:");
    for (size_t i = 0; i < sizeof demo_steps / sizeof demo_steps[0]; i++)
        fprintf(f, "%s %s", i ? "," : "", demo_steps[i].name);
    fprintf(f, "\n\nOptions:\n");
    cli_opts_print_help(&o, f);
}

int cmd_demo(int argc, char **argv) {
    cli c;
    cli_init(&c, "demo");
    demo_ctx d;
    memset(&d, 0, sizeof d);
    d.c = &c;
    d.out_dir = "demo-out";
    d.seed = 42;
    cli_data_cfg data; /* only for --data-dir */
    cli_data_init(&data, CLI_ROLE_TRAIN);
    cli_opts o;
    demo_opts(&o);
    int id, rc;
    const char *arg;
    while ((rc = cli_getopt(&c, argc, argv, &o, &id, &arg)) == 1) {
        int r = 0;
        if (id == CLI_OPT_HELP) {
            help_demo(stdout);
            return 0;
        }
        if (cli_common_option(&c, id, arg, &r)) {
            if (r) return r;
            continue;
        }
        switch (id) {
        case CLI_OPT_OUT: d.out_dir = arg; break;
        case CLI_OPT_DATA_DIR: data.data_dir = arg; break;
        case OPT_QUICK: d.quick = cli_bool_arg(arg); break;
        case OPT_SEED: {
            size_t s;
            if ((r = cli_parse_size(&c, "--seed", arg, &s)) != 0) return r;
            d.seed = s;
            break;
        }
        default: return cli_usage_error(&c, "unhandled option %s", cli_current_flag());
        }
    }
    if (rc < 0) return CLI_EXIT_USAGE;
    if (optind < argc) return cli_usage_error(&c, "unexpected argument '%s'", argv[optind]);
    d.data_dir = cli_fashion_dir(&data);
    d.stream_start = 50000;
    if (d.quick) {
        d.train_n = 5000;
        d.stream_n = 2000;
        d.every = 500;
        d.epochs = 1;
        d.prune_epochs = 1;
    } else {
        d.train_n = 50000;
        d.stream_n = 10000;
        d.every = 2500;
        d.epochs = 3;
        d.prune_epochs = 2;
    }
    d.prune_sparsity = 0.9;
    d.online_lr = 1e-3; /* 0.01 degrades v1 here: one-sample steps are noisy */
    if ((rc = mkdir_p(&c, d.out_dir))) return rc;

    d.json = json_object();
    json_object_set_new(d.json, "command", json_string("demo"));
    json_object_set_new(d.json, "out_dir", json_string(d.out_dir));
    json_object_set_new(d.json, "quick", json_boolean(d.quick));
    size_t nsteps = sizeof demo_steps / sizeof demo_steps[0];
    double t0 = cli_now();
    for (size_t i = 0; i < nsteps && rc == 0; i++) {
        if (!c.quiet) fprintf(c.out, "%s== [%zu/%zu] %s ==\n", i ? "\n" : "", i + 1, nsteps, demo_steps[i].title);
        rc = demo_steps[i].run(&d);
    }
    if (rc == 0) {
        json_object_set_new(d.json, "seconds", cli_json_num(cli_now() - t0));
        cli_say(&c, "\ndone in %.1f s; models in %s/\n", cli_now() - t0, d.out_dir);
        if (c.json) {
            cli_json_print(d.json);
            d.json = NULL;
        }
    }
    json_decref(d.json);
    mm_model_free(d.model);
    mm_dataset_free(d.all);
    mm_dataset_free(d.train);
    mm_dataset_free(d.stream);
    mm_dataset_free(d.test);
    return rc;
}
