/* mm_optimizer_fit: epochs of seeded-shuffled mini-batches, progress
 * callbacks, validation and early stopping.
 *
 * Shuffling: epoch number e of the optimizer's life (opt->epoch, counting
 * completed epochs across fits and saved with the state) is shuffled with an
 * RNG seeded from (MM_OPT_SEED, e) alone, starting from the identity order,
 * so resumed training reshuffles exactly as uninterrupted training would.
 *
 * Mini-batches are gathered into one contiguous buffer allocated once per
 * fit (without shuffling the dataset's rows are used in place). The last
 * batch of an epoch may be smaller (PyTorch's drop_last=False).
 *
 * Early stopping (val given, MM_OPT_PATIENCE > 0): an epoch improves when its
 * validation loss is strictly below the best so far; after `patience`
 * epochs without improvement fitting stops (MM_OK), and with
 * MM_OPT_RESTORE_BEST the parameters of the best epoch are copied back
 * (optimizer moments and counters are not rewound).
 *
 * Labels are required: softmax cross-entropy needs them, and MSE models
 * train on their one-hot encoding (a dataset holds no float targets). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_internal.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void epoch_order(uint32_t *idx, size_t n, uint64_t seed, uint64_t epoch, bool shuffle) {
    for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
    if (!shuffle) return;
    mm_rng rng;
    mm_rng_seed(&rng, seed ^ mix64(epoch + 0x9E3779B97F4A7C15ULL));
    mm_rng_shuffle_u32(&rng, idx, n);
}

static size_t count_correct(const float *logits, const int32_t *labels, size_t n, size_t c) {
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * c;
        size_t best = 0;
        for (size_t j = 1; j < c; j++)
            if (z[j] > z[best]) best = j;
        if ((size_t)labels[i] == best) hits++;
    }
    return hits;
}

static mm_status check_dataset(const mm_model *m, const mm_dataset *ds, const char *what) {
    size_t n = mm_dataset_size(ds);
    if (n == 0) return mm_error(MM_E_INVALID_ARGUMENT, "the %s set is empty", what);
    if (n > UINT32_MAX)
        return mm_error(MM_E_UNSUPPORTED, "the %s set has %zu samples; at most %u are supported",
                        what, n, (unsigned)UINT32_MAX);
    if (mm_dataset_dim(ds) != m->input_dim)
        return mm_error(MM_E_SHAPE, "the %s set has %zu features per sample, the model takes %zu",
                        what, mm_dataset_dim(ds), m->input_dim);
    if (!mm_dataset_labels(ds))
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "the %s set has no labels (softmax cross-entropy needs them; MSE models "
                        "train on one-hot labels)",
                        what);
    mm_status st = mm_check_targets(m, mm_dataset_labels(ds), NULL, n);
    if (st != MM_OK) return mm_error_prefix(st, "%s set", what);
    return MM_OK;
}

static size_t total_param_floats(const mm_optimizer *opt) {
    size_t total = 0;
    for (size_t i = 0; i < opt->n_slots; i++)
        total += mm_param_count(mm_opt_slot_param(opt, &opt->slots[i]));
    return total;
}

static void copy_params(const mm_optimizer *opt, float *buf, bool to_model) {
    for (size_t i = 0; i < opt->n_slots; i++) {
        mm_param *p = mm_opt_slot_param(opt, &opt->slots[i]);
        size_t count = mm_param_count(p);
        if (to_model)
            memcpy(p->data, buf, count * sizeof(float));
        else
            memcpy(buf, p->data, count * sizeof(float));
        buf += count;
    }
}

/* Append {"optimizer": ..., ...} to the model's lineage as op "fit". */
static mm_status record_lineage(mm_optimizer *opt, uint64_t epochs, uint64_t steps,
                                uint64_t samples, size_t batch_size, const mm_fit_progress *pr,
                                const char *stopped) {
    char detail[768];
    int len = snprintf(detail, sizeof detail,
                       "{\"optimizer\":\"%s\",\"epochs\":%llu,\"steps\":%llu,\"samples\":%llu,"
                       "\"batch_size\":%zu,\"learning_rate\":%.17g,\"total_steps\":%llu",
                       opt->algo->name, (unsigned long long)epochs, (unsigned long long)steps,
                       (unsigned long long)samples, batch_size, opt->set[MM_OPT_LEARNING_RATE],
                       (unsigned long long)opt->step);
    const struct {
        const char *key;
        double value;
    } extra[] = {{"train_loss", pr->train_loss},
                 {"train_accuracy", pr->train_accuracy},
                 {"val_loss", pr->val_loss},
                 {"val_accuracy", pr->val_accuracy}};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        if (isfinite(extra[i].value) && len > 0 && (size_t)len < sizeof detail)
            len += snprintf(detail + len, sizeof detail - (size_t)len, ",\"%s\":%.9g",
                            extra[i].key, extra[i].value);
    if (stopped && len > 0 && (size_t)len < sizeof detail)
        len += snprintf(detail + len, sizeof detail - (size_t)len, ",\"stopped\":\"%s\"", stopped);
    if (len > 0 && (size_t)len < sizeof detail)
        len += snprintf(detail + len, sizeof detail - (size_t)len, "}");
    if (len <= 0 || (size_t)len >= sizeof detail)
        return mm_error(MM_E_INTERNAL, "lineage detail too long");
    return mm_lineage_append(opt->model, "fit", detail);
}

mm_status mm_optimizer_fit(mm_optimizer *opt, const mm_dataset *train, const mm_dataset *val,
                           mm_fit_callback cb, void *user, mm_fit_progress *result) {
    if (!opt) return mm_null_arg("optimizer");
    if (!train) return mm_null_arg("train");
    mm_model *m = opt->model;
    mm_status st = mm_opt_check_model(opt);
    if (st != MM_OK) return st;
    if ((st = check_dataset(m, train, "training")) != MM_OK) return st;
    if (val && (st = check_dataset(m, val, "validation")) != MM_OK) return st;
    if (opt->algo->validate && (st = opt->algo->validate(opt)) != MM_OK) return st;

    const size_t n = mm_dataset_size(train), dim = m->input_dim;
    const size_t classes = mm_model_output_dim(m);
    const float *X = mm_dataset_features(train);
    const int32_t *Y = mm_dataset_labels(train);
    const size_t bs = (size_t)opt->set[MM_OPT_BATCH_SIZE] < n ? (size_t)opt->set[MM_OPT_BATCH_SIZE]
                                                                : n;
    const uint64_t batches = (n + bs - 1) / bs;
    const uint32_t epochs = (uint32_t)opt->set[MM_OPT_EPOCHS];
    const bool shuffle = opt->set[MM_OPT_SHUFFLE] != 0.0;
    const uint64_t seed = (uint64_t)opt->set[MM_OPT_SEED];
    const uint64_t patience = (uint64_t)opt->set[MM_OPT_PATIENCE];
    const bool early = val && patience > 0;
    const bool keep_best = early && opt->set[MM_OPT_RESTORE_BEST] != 0.0;

    uint32_t *idx = NULL;
    float *bx = NULL, *best = NULL;
    int32_t *by = NULL;
    if (shuffle) {
        idx = mm_malloc_array(n, sizeof *idx);
        bx = mm_alloc_floats(bs * dim); /* bs*dim <= n*dim, which the dataset holds */
        by = mm_malloc_array(bs, sizeof *by);
        if (!idx || !bx || !by) {
            st = mm_oom("mini-batch buffers");
            goto out;
        }
    }
    if (keep_best && !(best = mm_alloc_floats(total_param_floats(opt)))) {
        st = mm_oom("best-weights copy");
        goto out;
    }

    /* The cosine horizon ends with this fit unless total_steps is set. */
    opt->sched_total = opt->step + (uint64_t)epochs * batches;

    mm_fit_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.struct_size = (uint32_t)sizeof pr;
    pr.epochs = epochs;
    pr.batches = batches;
    pr.step = opt->step;
    pr.train_loss = pr.train_accuracy = pr.val_loss = pr.val_accuracy = NAN;
    pr.learning_rate = mm_opt_schedule_lr(opt, opt->step);

    const double t0 = mm_now_seconds();
    const uint64_t step0 = opt->step;
    uint64_t samples = 0, epochs_done = 0, bad_epochs = 0;
    double best_loss = INFINITY;
    bool have_best = false;
    const char *stopped = NULL;

    for (uint32_t e = 0; e < epochs; e++) {
        if (shuffle) epoch_order(idx, n, seed, opt->epoch, true);
        double loss_sum = 0.0;
        size_t seen = 0, correct = 0;
        pr.epoch = e;
        pr.val_loss = pr.val_accuracy = NAN;
        for (uint64_t b = 0; b < batches; b++) {
            const size_t start = (size_t)b * bs;
            const size_t cnt = n - start < bs ? n - start : bs;
            const float *xb = X + start * dim;
            const int32_t *yb = Y + start;
            if (shuffle) {
                for (size_t r = 0; r < cnt; r++) {
                    size_t src = idx[start + r];
                    memcpy(bx + r * dim, X + src * dim, dim * sizeof(float));
                    by[r] = Y[src];
                }
                xb = bx;
                yb = by;
            }
            pr.learning_rate = mm_opt_schedule_lr(opt, opt->step);
            double loss = NAN;
            st = mm_opt_step_impl(opt, xb, yb, NULL, cnt, &loss);
            if (st != MM_OK) {
                stopped = "error";
                mm_error_prefix(st, "epoch %u, batch %llu", (unsigned)e,
                                (unsigned long long)b);
                goto finish;
            }
            loss_sum += loss * (double)cnt;
            seen += cnt;
            samples += cnt;
            if (mm_model_cached_output(m))
                correct += count_correct(mm_model_cached_output(m), yb, cnt, classes);
            pr.event = MM_FIT_BATCH;
            pr.batch = b + 1;
            pr.step = opt->step;
            pr.train_loss = loss_sum / (double)seen;
            pr.train_accuracy = (double)correct / (double)seen;
            pr.elapsed_seconds = mm_now_seconds() - t0;
            pr.samples_per_second =
                pr.elapsed_seconds > 0 ? (double)samples / pr.elapsed_seconds : 0.0;
            if (cb && cb(&pr, user)) {
                stopped = "cancelled";
                st = mm_error(MM_E_CANCELLED, "fit cancelled by the callback in epoch %u",
                              (unsigned)e);
                goto finish;
            }
        }
        opt->epoch++;
        epochs_done++;

        bool stop = false;
        if (val) {
            st = mm_model_evaluate(m, mm_dataset_features(val), mm_dataset_labels(val), NULL,
                                   mm_dataset_size(val), &pr.val_loss, &pr.val_accuracy);
            if (st != MM_OK) {
                stopped = "error";
                mm_error_prefix(st, "validation after epoch %u", (unsigned)e);
                goto finish;
            }
            if (early) {
                if (pr.val_loss < best_loss) {
                    best_loss = pr.val_loss;
                    bad_epochs = 0;
                    if (keep_best) {
                        copy_params(opt, best, false);
                        have_best = true;
                    }
                } else if (++bad_epochs >= patience) {
                    stop = true;
                }
            }
        }
        pr.event = MM_FIT_EPOCH_END;
        pr.batch = batches;
        pr.step = opt->step;
        pr.elapsed_seconds = mm_now_seconds() - t0;
        pr.samples_per_second =
            pr.elapsed_seconds > 0 ? (double)samples / pr.elapsed_seconds : 0.0;
        if (stop) {
            stopped = "early";
            if (have_best) {
                copy_params(opt, best, true);
                /* masks may have grown since the best epoch (gradual pruning) */
                mm_opt_apply_masks(opt, false);
                for (size_t l = 0; l < opt->model->n_layers; l++)
                    mm_layer_params_changed(opt->model->layers[l]);
            }
        }
        if (cb && cb(&pr, user)) {
            if (!stop) stopped = "cancelled";
            st = mm_error(MM_E_CANCELLED, "fit cancelled by the callback after epoch %u",
                          (unsigned)e);
            goto finish;
        }
        if (stop) break;
    }

finish:
    if (samples > 0) {
        /* Keep the primary error (and its message) if there is one. */
        mm_status lst = record_lineage(opt, epochs_done, opt->step - step0, samples, bs, &pr,
                                       stopped);
        if (st == MM_OK) st = lst;
    }
    if (result) *result = pr;
out:
    free(idx);
    mm_free_floats(bx);
    free(by);
    mm_free_floats(best);
    return st;
}
