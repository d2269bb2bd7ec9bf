/* mmaint CLI — the loops commands share: batch training with progress
 * (mm_optimizer_fit), evaluation with a confusion matrix, and online learning
 * one sample at a time with predict-then-learn (progressive validation). */
#include "cli.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- batch training ---------------------------------------------------- */

typedef struct fit_ctx {
    const cli *c;
    cli_progress bar;
    cli_fit_summary *s;
} fit_ctx;

/* A field of the progress report, or NaN if the library that filled it is
 * older than this tool and did not have the field yet. */
#define FIT_FIELD(p, field)                                                                     \
    ((p)->struct_size >= offsetof(mm_fit_progress, field) + sizeof((p)->field) ? (p)->field    \
                                                                                : NAN)

static int fit_callback(const mm_fit_progress *p, void *user) {
    fit_ctx *fc = user;
    const cli *c = fc->c;
    double rate = FIT_FIELD(p, samples_per_second);
    double elapsed = FIT_FIELD(p, elapsed_seconds);
    if (p->event == MM_FIT_BATCH) {
        double frac = 0;
        if (p->epochs && p->batches)
            frac = ((double)p->epoch + (double)p->batch / (double)p->batches) / (double)p->epochs;
        char label[32], extra[96];
        snprintf(label, sizeof label, "epoch %u/%u", p->epoch + 1, p->epochs);
        snprintf(extra, sizeof extra, "loss %.4f acc %.4f", p->train_loss, p->train_accuracy);
        cli_progress_draw(&fc->bar, label, frac, elapsed, rate, extra, false);
    } else if (p->event == MM_FIT_EPOCH_END) {
        cli_progress_clear(&fc->bar);
        cli_fit_summary *s = fc->s;
        s->epochs_run++;
        s->train_loss = p->train_loss;
        s->train_accuracy = p->train_accuracy;
        s->val_loss = FIT_FIELD(p, val_loss);
        s->val_accuracy = FIT_FIELD(p, val_accuracy);
        s->learning_rate = FIT_FIELD(p, learning_rate);
        s->samples_per_second = rate;
        s->seconds = elapsed;
        s->steps = p->step;
        char val[64] = "";
        if (isfinite(s->val_loss))
            snprintf(val, sizeof val, "  val loss %.4f acc %.4f", s->val_loss, s->val_accuracy);
        cli_say(c, "epoch %u/%u  train loss %.4f acc %.4f%s  lr %.3g  %.0f samples/s\n",
                p->epoch + 1, p->epochs, p->train_loss, p->train_accuracy, val,
                s->learning_rate, rate);
        if (s->epochs) {
            json_t *e = json_object();
            json_object_set_new(e, "epoch", json_integer(p->epoch + 1));
            json_object_set_new(e, "train_loss", cli_json_num(p->train_loss));
            json_object_set_new(e, "train_accuracy", cli_json_num(p->train_accuracy));
            json_object_set_new(e, "val_loss", cli_json_num(s->val_loss));
            json_object_set_new(e, "val_accuracy", cli_json_num(s->val_accuracy));
            json_object_set_new(e, "learning_rate", cli_json_num(s->learning_rate));
            json_object_set_new(e, "samples_per_second", cli_json_num(rate));
            json_object_set_new(e, "seconds", cli_json_num(elapsed));
            json_array_append_new(s->epochs, e);
        }
    }
    return cli_interrupted() ? 1 : 0;
}

int cli_fit(const cli *c, mm_optimizer *opt, const mm_dataset *train, const mm_dataset *val,
            cli_fit_summary *s) {
    json_t *epochs = s->epochs;
    memset(s, 0, sizeof *s);
    s->epochs = epochs;
    s->val_loss = s->val_accuracy = NAN;
    fit_ctx fc = {c, {0}, s};
    cli_progress_init(&fc.bar, c);
    mm_fit_progress result;
    memset(&result, 0, sizeof result);
    double planned = 0;
    mm_optimizer_get(opt, MM_OPT_EPOCHS, &planned);
    double t0 = cli_now();
    mm_status st = mm_optimizer_fit(opt, train, val, fit_callback, &fc, &result);
    cli_progress_clear(&fc.bar);
    if (!isfinite(s->seconds)) s->seconds = cli_now() - t0;
    if (st == MM_E_CANCELLED && cli_interrupted())
        return cli_runtime_error(c, "interrupted after %u epoch(s); nothing saved", s->epochs_run);
    if (st != MM_OK) return cli_lib_error(c, st, "training");
    if (s->epochs_run == 0) { /* a library that reports no epoch ends */
        s->train_loss = result.train_loss;
        s->train_accuracy = result.train_accuracy;
        s->learning_rate = result.learning_rate;
        s->epochs_run = result.epoch + 1;
    }
    s->steps = mm_optimizer_steps(opt);
    s->stopped_early = planned > 0 && (double)s->epochs_run < planned;
    return 0;
}

/* ---- evaluation -------------------------------------------------------- */

#define EVAL_CHUNK 2048

int cli_evaluate(const cli *c, const mm_model *m, const mm_dataset *ds, bool want_confusion,
                 cli_eval_result *r) {
    memset(r, 0, sizeof *r);
    size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    size_t classes = mm_model_output_dim(m);
    const float *x = mm_dataset_features(ds);
    const int32_t *y = mm_dataset_labels(ds);
    r->n = n;
    r->classes = classes;
    double loss_sum = 0, acc_sum = 0;
    double t0 = cli_now();
    for (size_t i = 0; i < n; i += EVAL_CHUNK) {
        size_t k = n - i < EVAL_CHUNK ? n - i : EVAL_CHUNK;
        double loss = NAN, acc = NAN;
        mm_status st = mm_model_evaluate(m, x + i * dim, y + i, NULL, k, &loss, &acc);
        if (st != MM_OK) return cli_lib_error(c, st, "evaluating samples %zu..%zu", i, i + k - 1);
        loss_sum += loss * (double)k;
        acc_sum += acc * (double)k;
    }
    r->seconds = cli_now() - t0;
    r->loss = n ? loss_sum / (double)n : NAN;
    r->accuracy = n ? acc_sum / (double)n : NAN;
    r->samples_per_second = r->seconds > 0 ? (double)n / r->seconds : NAN;
    if (!want_confusion) return 0;
    r->confusion = calloc(classes * classes, sizeof *r->confusion);
    int32_t *pred = malloc(EVAL_CHUNK * sizeof *pred);
    if (!r->confusion || !pred) {
        free(pred);
        cli_eval_result_free(r);
        return cli_runtime_error(c, "out of memory");
    }
    for (size_t i = 0; i < n; i += EVAL_CHUNK) {
        size_t k = n - i < EVAL_CHUNK ? n - i : EVAL_CHUNK;
        mm_status st = mm_model_predict(m, x + i * dim, k, pred);
        if (st != MM_OK) {
            free(pred);
            cli_eval_result_free(r);
            return cli_lib_error(c, st, "predicting samples %zu..%zu", i, i + k - 1);
        }
        for (size_t j = 0; j < k; j++) {
            int32_t t = y[i + j], p = pred[j];
            if (t >= 0 && (size_t)t < classes && p >= 0 && (size_t)p < classes)
                r->confusion[(size_t)t * classes + (size_t)p]++;
        }
    }
    free(pred);
    return 0;
}

void cli_eval_result_free(cli_eval_result *r) {
    free(r->confusion);
    r->confusion = NULL;
}

void cli_print_confusion(FILE *f, const cli_eval_result *r) {
    if (!r->confusion) return;
    size_t k = r->classes;
    uint64_t maxv = 0;
    for (size_t i = 0; i < k * k; i++)
        if (r->confusion[i] > maxv) maxv = r->confusion[i];
    int w = 3;
    for (uint64_t v = maxv; v >= 100; v /= 10) w++;
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class)\n");
    fprintf(f, "%6s", "");
    for (size_t j = 0; j < k; j++) fprintf(f, " %*zu", w, j);
    fprintf(f, "  %7s\n", "recall");
    for (size_t i = 0; i < k; i++) {
        uint64_t row = 0;
        for (size_t j = 0; j < k; j++) row += r->confusion[i * k + j];
        fprintf(f, "%6zu", i);
        for (size_t j = 0; j < k; j++)
            fprintf(f, " %*llu", w, (unsigned long long)r->confusion[i * k + j]);
        if (row)
            fprintf(f, "  %7.4f\n", (double)r->confusion[i * k + i] / (double)row);
        else
            fprintf(f, "  %7s\n", "-");
    }
}

json_t *cli_confusion_json(const cli_eval_result *r) {
    json_t *rows = json_array();
    if (!r->confusion) return rows;
    for (size_t i = 0; i < r->classes; i++) {
        json_t *row = json_array();
        for (size_t j = 0; j < r->classes; j++)
            json_array_append_new(row, json_integer((json_int_t)r->confusion[i * r->classes + j]));
        json_array_append_new(rows, row);
    }
    return rows;
}

/* ---- online learning --------------------------------------------------- */

double cli_online_rolling(const cli_online_stats *st) {
    return st->window_fill ? (double)st->window_correct / (double)st->window_fill : NAN;
}

double cli_online_progressive(const cli_online_stats *st) {
    return st->seen ? (double)st->correct / (double)st->seen : NAN;
}

json_t *cli_online_json(const cli_online_stats *st, size_t window) {
    json_t *o = json_object();
    json_object_set_new(o, "samples", json_integer((json_int_t)st->seen));
    json_object_set_new(o, "progressive_accuracy", cli_json_num(cli_online_progressive(st)));
    json_object_set_new(o, "rolling_accuracy", cli_json_num(cli_online_rolling(st)));
    json_object_set_new(o, "window", json_integer((json_int_t)window));
    json_object_set_new(o, "mean_loss",
                        cli_json_num(st->seen > st->skipped
                                         ? st->loss_sum / (double)(st->seen - st->skipped)
                                         : NAN));
    json_object_set_new(o, "skipped_updates", json_integer((json_int_t)st->skipped));
    json_object_set_new(o, "seconds", cli_json_num(st->seconds));
    json_object_set_new(o, "samples_per_second",
                        cli_json_num(st->seconds > 0 ? (double)st->seen / st->seconds : NAN));
    return o;
}

static void online_report(const cli *c, cli_progress *bar, const cli_online_stats *st,
                          size_t total, size_t window) {
    cli_progress_clear(bar);
    size_t learned = st->seen - st->skipped;
    cli_say(c, "%8zu/%zu  rolling acc %.4f (last %zu)  progressive acc %.4f  loss %.4f  %.0f samples/s\n",
            st->seen, total, cli_online_rolling(st), st->window_fill < window ? st->window_fill : window,
            cli_online_progressive(st), learned ? st->loss_sum / (double)learned : NAN,
            st->seconds > 0 ? (double)st->seen / st->seconds : 0.0);
}

int cli_online(const cli *c, mm_optimizer *opt, const mm_dataset *ds, size_t start,
               size_t count, const cli_online_cfg *cfg, cli_online_stats *st) {
    memset(st, 0, sizeof *st);
    mm_model *m = mm_optimizer_model(opt);
    size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    if (start > n || count > n - start)
        return cli_runtime_error(c, "samples %zu..%zu are past the end of the data (%zu)", start,
                                 start + count, n);
    const float *x = mm_dataset_features(ds);
    const int32_t *y = mm_dataset_labels(ds);
    if (!y) return cli_runtime_error(c, "online learning needs labels");
    /* The callers (update, demo) record these steps as their own
     * "online_update" lineage event (data, first sample, accuracies:
     * cli_record_update); the library's "online_steps" event for the same
     * steps would say it twice. */
    mm_status ls = mm_optimizer_set(opt, MM_OPT_LINEAGE, 0);
    if (ls != MM_OK) return cli_lib_error(c, ls, "setting up the optimizer");
    size_t window = cfg->window ? cfg->window : 1000;
    unsigned char *ring = calloc(window, 1);
    if (!ring) return cli_runtime_error(c, "out of memory");
    cli_progress bar;
    cli_progress_init(&bar, c);
    int rc = 0;
    double t0 = cli_now();
    for (size_t i = 0; i < count; i++) {
        const float *xi = x + (start + i) * dim;
        int32_t yi = y[start + i];
        int32_t pred = -1;
        /* Progressive validation: predict the sample before learning from it. */
        mm_status s = mm_model_predict(m, xi, 1, &pred);
        if (s != MM_OK) {
            rc = cli_lib_error(c, s, "predicting sample %zu", start + i);
            break;
        }
        unsigned char ok = pred == yi;
        size_t slot = st->seen % window;
        if (st->window_fill == window)
            st->window_correct -= ring[slot];
        else
            st->window_fill++;
        ring[slot] = ok;
        st->window_correct += ok;
        st->correct += ok;
        double loss = NAN;
        s = mm_optimizer_step(opt, xi, &yi, NULL, 1, &loss);
        if (s == MM_E_NUMERIC) {
            st->skipped++; /* the library refused a non-finite update: keep going */
            mm_clear_error();
        } else if (s != MM_OK) {
            rc = cli_lib_error(c, s, "learning from sample %zu", start + i);
            break;
        } else {
            st->loss_sum += loss;
        }
        st->seen++;
        st->seconds = cli_now() - t0;
        if (cfg->report_every && st->seen % cfg->report_every == 0)
            online_report(c, &bar, st, count, window);
        if (cfg->every && cfg->checkpoint && st->seen % cfg->every == 0) {
            cli_progress_clear(&bar);
            double tc = cli_now();
            if ((rc = cfg->checkpoint(cfg->user, st)) != 0) break;
            t0 += cli_now() - tc; /* samples/s counts learning, not saving */
        }
        if ((st->seen & 63) == 0 || st->seen == count) {
            char extra[64];
            snprintf(extra, sizeof extra, "rolling acc %.4f", cli_online_rolling(st));
            cli_progress_draw(&bar, cfg->label ? cfg->label : "online", (double)st->seen / (double)count,
                              st->seconds, st->seconds > 0 ? (double)st->seen / st->seconds : 0.0,
                              extra, false);
        }
        if (cli_interrupted()) {
            cli_progress_clear(&bar);
            rc = cli_runtime_error(c, "interrupted after %zu samples", st->seen);
            break;
        }
    }
    st->seconds = cli_now() - t0;
    cli_progress_clear(&bar);
    if (rc == 0 && cfg->report_every && st->seen % cfg->report_every != 0)
        online_report(c, &bar, st, count, window);
    free(ring);
    if (rc == 0 && st->skipped)
        fprintf(stderr, "%s: note: %zu update(s) skipped because the loss or gradient was not finite\n",
                c->prog, st->skipped);
    return rc;
}

/* ---- models ------------------------------------------------------------ */

void cli_arch_string(const mm_model *m, char *buf, size_t cap) {
    size_t layers = mm_model_num_layers(m);
    size_t len = 0;
    int w = snprintf(buf, cap, "%zu", mm_model_input_dim(m));
    if (w > 0) len = (size_t)w;
    bool uniform = true;
    mm_activation hidden = MM_ACT_RELU, last = MM_ACT_IDENTITY;
    for (size_t i = 0; i < layers; i++) {
        size_t outs = 0;
        mm_activation act = MM_ACT_IDENTITY;
        const char *kind = NULL;
        if (mm_model_layer_info(m, i, &kind, NULL, &outs, &act) != MM_OK) continue;
        if (i + 1 < layers) {
            if (i == 0) hidden = act;
            else if (act != hidden) uniform = false;
        } else {
            last = act;
        }
        if (len < cap) {
            w = snprintf(buf + len, cap - len, "-%zu", outs);
            if (w > 0) len += (size_t)w;
        }
    }
    if (last != MM_ACT_IDENTITY) uniform = false;
    if (layers > 1 && uniform && len < cap) {
        const char *an = mm_activation_name(hidden);
        snprintf(buf + len, cap - len, ":%s", an ? an : "?");
    } else if (!uniform && len < cap) {
        /* Spell out each layer's activation. */
        w = snprintf(buf + len, cap - len, " (");
        if (w > 0) len += (size_t)w;
        for (size_t i = 0; i < layers && len < cap; i++) {
            mm_activation act = MM_ACT_IDENTITY;
            if (mm_model_layer_info(m, i, NULL, NULL, NULL, &act) != MM_OK) continue;
            const char *an = mm_activation_name(act);
            w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", an ? an : "?");
            if (w > 0) len += (size_t)w;
        }
        if (len < cap) snprintf(buf + len, cap - len, ")");
    }
    mm_clear_error();
}

/* ---- what a file that is not a model file is ----------------------------- */

static bool read_varint(const unsigned char *b, size_t n, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *i < n; shift += 7) {
        const unsigned char byte = b[(*i)++];
        *v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return true;
    }
    return false;
}

/* An ONNX ModelProto: ir_version (field 1, a small varint) first, as every
 * exporter writes it, then only ModelProto's fields with their wire types,
 * up to the graph (field 7) or the end of what was read. */
static bool looks_like_onnx(const unsigned char *b, size_t n, bool whole) {
    size_t i = 0;
    int fields = 0;
    while (i < n) {
        uint64_t key, v;
        if (!read_varint(b, n, &i, &key)) return !whole && fields >= 2;
        const uint64_t field = key >> 3, wire = key & 7;
        const bool is_varint = field == 1 || field == 5;
        const bool is_bytes = (field >= 2 && field <= 8 && field != 5) || field == 14 ||
                              field == 20 || field == 25;
        if (fields == 0 && field != 1) return false;
        if (is_varint && wire == 0) {
            if (!read_varint(b, n, &i, &v)) return !whole && fields >= 1;
            if (field == 1 && (v < 1 || v > 100)) return false;
        } else if (is_bytes && wire == 2) {
            if (!read_varint(b, n, &i, &v)) return !whole && fields >= 1;
            if (field == 7) return true; /* the graph */
            if (v > n - i) return !whole && fields >= 1; /* runs past what was read */
            i += (size_t)v;
        } else {
            return false;
        }
        fields++;
    }
    return false; /* no graph */
}

static bool has_ext(const char *path, const char *ext) {
    const size_t n = strlen(path), e = strlen(ext);
    return n > e && strcasecmp(path + n - e, ext) == 0;
}

/* 'o' for an ONNX file, 's' for a safetensors file (a plausible header
 * length, then '{'), 0 for anything else. By content; a .onnx name counts
 * for ONNX when the content says nothing. */
static int sniff_model_format(const char *path) {
    unsigned char b[65536];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const size_t n = fread(b, 1, sizeof b, f);
    const bool whole = n < sizeof b;
    fclose(f);
    if (n >= 10 && b[8] == '{') {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = (len << 8) | b[i];
        const long long size = cli_file_size(path);
        if (len >= 2 && size >= 8 && len <= (uint64_t)size - 8) return 's';
    }
    if (looks_like_onnx(b, n, whole)) return 'o';
    return has_ext(path, ".onnx") ? 'o' : 0;
}

/* The command that imports `path` into an mmaint model file. */
static void convert_hint(const char *path, const char *ext, const char *fmt, char *buf,
                         size_t cap) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    const size_t stem = dot && dot != base ? (size_t)(dot - path) : strlen(path);
    if (has_ext(path, ext))
        snprintf(buf, cap, "mmaint convert %s %.*s.mmf", path, (int)stem, path);
    else /* convert goes by the extension: name the format */
        snprintf(buf, cap, "mmaint convert --from %s %s %.*s%s.mmf", fmt, path, (int)stem, path,
                 has_ext(path, ".mmf") ? "-imported" : "");
}

int cli_load_model(const cli *c, const char *path, mm_model **out) {
    *out = NULL;
    mm_status st = mm_model_load(out, path);
    if (st == MM_E_FORMAT) {
        /* Not an mmaint model file: if it is one that `mmaint convert`
         * imports, say so instead of what the loader found wrong. */
        char hint[3 * 1024 + 64];
        switch (sniff_model_format(path)) {
        case 'o':
            convert_hint(path, ".onnx", "onnx", hint, sizeof hint);
            mm_clear_error();
            return cli_runtime_error(c, "%s is an ONNX file; import it with: %s", path, hint);
        case 's':
            if (!strstr(cli_lib_message(st), "not an mmaint model file")) break;
            convert_hint(path, ".safetensors", "safetensors", hint, sizeof hint);
            mm_clear_error();
            return cli_runtime_error(c,
                                     "%s is a safetensors file without mmaint's model metadata; "
                                     "import it with: %s (weights from other tools also need "
                                     "--arch SPEC)",
                                     path, hint);
        default: {
            /* "text.mmf is not an mmaint model file (no safetensors header)" */
            const char *msg = cli_lib_message(st);
            const size_t n = strlen(path);
            if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
            if (strncmp(msg, "not an mmaint model file", 24) == 0) {
                int rc = cli_runtime_error(c, "%s is %s", path, msg);
                mm_clear_error();
                return rc;
            }
            break;
        }
        }
    }
    if (st != MM_OK) return cli_lib_error(c, st, "loading %s", path);
    return 0;
}

/* ---- inference speed -------------------------------------------------------- */

#define SPEED_BUF 2048    /* samples cycled through */
#define SPEED_REPS 9      /* interleaved chunks per model and batch size */
#define SPEED_B1 400      /* forwards per batch-1 chunk */
#define SPEED_B256 4      /* forwards per batch-256 chunk */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cli_infer_speed(const cli *c, const mm_model *const *models, size_t nmodels,
                    const mm_dataset *ds, double *b1, double *b256) {
    const size_t dim = mm_model_input_dim(models[0]);
    size_t outw = 0;
    for (size_t i = 0; i < nmodels; i++) {
        b1[i] = b256[i] = NAN;
        if (mm_model_output_dim(models[i]) > outw) outw = mm_model_output_dim(models[i]);
    }
    float *x = malloc((size_t)SPEED_BUF * dim * sizeof *x);
    float *y = malloc(256 * outw * sizeof *y);
    double *rates = malloc((size_t)nmodels * 2 * SPEED_REPS * sizeof *rates);
    if (!x || !y || !rates) {
        free(x);
        free(y);
        free(rates);
        return cli_runtime_error(c, "out of memory");
    }
    /* Real inputs cycled to fill the buffer, or a fixed pseudo-random
     * pattern in [0, 1) without data. */
    const float *src = ds && mm_dataset_dim(ds) == dim ? mm_dataset_features(ds) : NULL;
    const size_t n = src ? mm_dataset_size(ds) : 0;
    uint32_t r = 12345;
    for (size_t i = 0; i < SPEED_BUF; i++) {
        if (src && n) {
            memcpy(x + i * dim, src + (i % n) * dim, dim * sizeof *x);
        } else {
            for (size_t j = 0; j < dim; j++) {
                r = r * 1664525u + 1013904223u;
                x[i * dim + j] = (float)(r >> 8) / 16777216.0f;
            }
        }
    }
    int rc = 0;
    for (size_t i = 0; i < nmodels && rc == 0; i++) { /* warm-up */
        mm_status st = mm_model_forward(models[i], x, 256, y);
        if (st != MM_OK) rc = cli_lib_error(c, st, "inference");
    }
    size_t pos1 = 0, pos256 = 0;
    for (size_t rep = 0; rep < SPEED_REPS && rc == 0; rep++) {
        for (size_t k = 0; k < nmodels && rc == 0; k++) {
            const size_t i = (rep + k) % nmodels; /* rotate the order */
            double t0 = cli_now();
            for (size_t f = 0; f < SPEED_B1 && rc == 0; f++) {
                mm_status st = mm_model_forward(models[i], x + (pos1++ % SPEED_BUF) * dim, 1, y);
                if (st != MM_OK) rc = cli_lib_error(c, st, "inference");
            }
            double dt = cli_now() - t0;
            rates[(i * 2) * SPEED_REPS + rep] = SPEED_B1 / dt;
            t0 = cli_now();
            for (size_t f = 0; f < SPEED_B256 && rc == 0; f++) {
                const size_t off = (pos256++ * 256) % SPEED_BUF;
                mm_status st = mm_model_forward(models[i], x + off * dim, 256, y);
                if (st != MM_OK) rc = cli_lib_error(c, st, "inference");
            }
            dt = cli_now() - t0;
            rates[(i * 2 + 1) * SPEED_REPS + rep] = SPEED_B256 * 256.0 / dt;
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < nmodels; i++) {
            qsort(rates + (i * 2) * SPEED_REPS, SPEED_REPS, sizeof *rates, cmp_double);
            qsort(rates + (i * 2 + 1) * SPEED_REPS, SPEED_REPS, sizeof *rates, cmp_double);
            b1[i] = rates[(i * 2) * SPEED_REPS + SPEED_REPS / 2];
            b256[i] = rates[(i * 2 + 1) * SPEED_REPS + SPEED_REPS / 2];
        }
    }
    free(x);
    free(y);
    free(rates);
    return rc;
}

/* ---- before/after measurements (prune, quantize) ----------------------------- */

int cli_measure_model(const cli *c, const mm_model *m, const mm_dataset *test,
                      cli_model_stats *s) {
    s->loss = s->accuracy = NAN;
    s->params = mm_model_num_params(m);
    s->nonzero = mm_model_num_nonzero(m);
    s->bytes = mm_model_param_bytes(m);
    if (test) {
        cli_eval_result r;
        int rc = cli_evaluate(c, m, test, false, &r);
        if (rc) return rc;
        s->loss = r.loss;
        s->accuracy = r.accuracy;
    }
    return 0;
}

json_t *cli_model_stats_json(const cli_model_stats *s) {
    json_t *o = json_object();
    json_object_set_new(o, "test_accuracy", cli_json_num(s->accuracy));
    json_object_set_new(o, "test_loss", cli_json_num(s->loss));
    json_object_set_new(o, "params", json_integer((json_int_t)s->params));
    json_object_set_new(o, "nonzero", json_integer((json_int_t)s->nonzero));
    json_object_set_new(o, "param_bytes", json_integer((json_int_t)s->bytes));
    json_object_set_new(o, "file_size", json_integer(s->file_size));
    json_object_set_new(o, "infer_batch1_samples_per_second", cli_json_num(s->b1));
    json_object_set_new(o, "infer_batch256_samples_per_second", cli_json_num(s->b256));
    return o;
}

int cli_save_summary(const cli *c, mm_model *model, const mm_model *orig, json_t *ev,
                     const char *op, const char *out, const char *test_desc,
                     const mm_dataset *speed_data, cli_model_stats *before,
                     cli_model_stats *after) {
    if (test_desc) {
        json_object_set_new(ev, "test_data", json_string(test_desc));
        json_object_set_new(ev, "test_accuracy_before", cli_json_num(before->accuracy));
        json_object_set_new(ev, "test_accuracy_after", cli_json_num(after->accuracy));
    }
    json_object_set_new(ev, "tool", json_string("mmaint " MM_VERSION_STRING));
    char *detail = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    mm_status st = mm_model_add_lineage(model, op, detail);
    free(detail);
    if (st != MM_OK) return cli_lib_error(c, st, "recording lineage");
    if ((st = mm_model_save(model, out)) != MM_OK)
        return cli_lib_error(c, st, "saving %s", out);
    after->file_size = cli_file_size(out);
    /* speed of both, interleaved */
    const mm_model *pair[2] = {orig, model};
    double b1[2], b256[2];
    int rc = cli_infer_speed(c, pair, 2, speed_data, b1, b256);
    if (rc) return rc;
    before->b1 = b1[0];
    before->b256 = b256[0];
    after->b1 = b1[1];
    after->b256 = b256[1];
    return 0;
}
