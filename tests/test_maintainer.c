/* mm_maintainer and mm_reservoir through the public API: rollback of a
 * poisoned window restores the last good checkpoint bit-exactly and reports
 * the window; a NaN loss rolls back; reservoir sampling is uniform
 * (chi-square); the checkpoint ring stays bounded in memory and on disk;
 * disk checkpoints are complete, loadable files with lineage; a challenger
 * is promoted only when it beats the champion on the holdout; int8 and
 * pruned deployed models stay int8/pruned; bad arguments. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm/mm.h"
#include "mm/mm_maintainer.h"
#include "testutil.h"

#define DIM 16
#define CLASSES 4

/* n samples in CLASSES gaussian-ish blobs; class k centred at +1.6 on
 * feature k + offset (offset shifts the blobs to other features: a
 * covariate drift the model has never seen). Labels cycle. */
static void make_data(float *x, int32_t *y, size_t n, uint64_t seed, size_t offset) {
    mm_test_fill(x, n * DIM, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)((i * 7 + seed) % CLASSES);
        x[i * DIM + ((size_t)y[i] + offset) % DIM] += 1.6f;
    }
}

/* A model trained on the offset-0 blobs. */
static mm_model *trained_model(void) {
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "16-24-4", 3));
    const size_t n = 2000;
    float *x = malloc(n * DIM * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    make_data(x, y, n, 101, 0);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, n, DIM));
    mm_optimizer *o;
    MM_ASSERT_OK(mm_optimizer_create(&o, m, MM_OPTIM_ADAM));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_LEARNING_RATE, 1e-2));
    MM_ASSERT_OK(mm_optimizer_set(o, MM_OPT_EPOCHS, 5));
    MM_ASSERT_OK(mm_optimizer_fit(o, ds, NULL, NULL, NULL, NULL));
    double acc;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, NULL, n, NULL, &acc));
    ck_assert_msg(acc > 0.9, "base model accuracy %g", acc);
    mm_optimizer_free(o);
    mm_dataset_free(ds);
    free(x);
    free(y);
    return m;
}

/* All weights and biases of a model, concatenated (caller frees). */
static float *all_params(const mm_model *m, size_t *count) {
    size_t total = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        total += in * out + out;
    }
    float *buf = malloc(total * sizeof *buf);
    size_t off = 0;
    for (size_t l = 0; l < mm_model_num_layers(m); l++) {
        size_t in, out;
        MM_ASSERT_OK(mm_model_layer_info(m, l, NULL, &in, &out, NULL));
        MM_ASSERT_OK(mm_model_get_weights(m, l, buf + off, in * out, buf + off + in * out, out));
        off += in * out + out;
    }
    *count = total;
    return buf;
}

static int same_params(const mm_model *a, const mm_model *b) {
    size_t na, nb;
    float *pa = all_params(a, &na), *pb = all_params(b, &nb);
    int same = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

/* A maintainer with a clean holdout of 400 samples, guard window `window`,
 * SGD at lr 0.05, no stream holdout, no detector. */
static mm_maintainer *guarded(const mm_model *m, size_t window) {
    mm_maintainer *mt;
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_WINDOW, (double)window));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_HOLDOUT_EVERY, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, 0.02));
    MM_ASSERT_OK(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 0.05));
    float hx[400 * DIM];
    int32_t hy[400];
    make_data(hx, hy, 400, 7, 0);
    MM_ASSERT_OK(mm_maintainer_set_holdout(mt, hx, hy, 400));
    return mt;
}

/* A maintainer (SGD) whose holdout comes from the stream: guard windows of
 * `window`, a ring of `size`, every `every`-th sample held out. */
static mm_maintainer *stream_holdout(const mm_model *m, size_t window, size_t size, size_t every) {
    mm_maintainer *mt;
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_WINDOW, (double)window));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_HOLDOUT_SIZE, (double)size));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_HOLDOUT_EVERY, (double)every));
    return mt;
}

/* ---- reservoir ---------------------------------------------------------- */

/* Every one of 1000 stream items must end up in a 100-slot reservoir with
 * probability 1/10: over 400 seeded runs, the counts of 10 buckets of 100
 * consecutive items (early vs late items) pass a chi-square test at
 * p = 0.001 (9 degrees of freedom: 27.88), and so do draws over the slots. */
START_TEST(reservoir_is_uniform) {
    const size_t cap = 100, stream = 1000, runs = 400;
    double bucket[10] = {0};
    for (size_t run = 0; run < runs; run++) {
        mm_reservoir *r;
        MM_ASSERT_OK(mm_reservoir_create(&r, cap, 1, 1000 + run));
        for (size_t i = 0; i < stream; i++) {
            float v = (float)i;
            size_t slot;
            MM_ASSERT_OK(mm_reservoir_offer(r, &v, (int32_t)i, &slot));
            if (i < cap) ck_assert_uint_eq(slot, i);
        }
        ck_assert_uint_eq(mm_reservoir_size(r), cap);
        ck_assert_uint_eq(mm_reservoir_seen(r), stream);
        for (size_t s = 0; s < cap; s++) {
            const float *x;
            int32_t label;
            MM_ASSERT_OK(mm_reservoir_get(r, s, &x, &label));
            ck_assert_int_eq((int)x[0], label);
            bucket[label / 100] += 1;
        }
        mm_reservoir_free(r);
    }
    const double expect = (double)runs * (double)cap / 10.0;
    double chi = 0;
    for (int b = 0; b < 10; b++) chi += (bucket[b] - expect) * (bucket[b] - expect) / expect;
    ck_assert_msg(chi < 27.88, "chi-square %g over buckets (first %g, last %g, expected %g)", chi,
                  bucket[0], bucket[9], expect);

    /* draws are uniform over the held samples */
    mm_reservoir *r;
    MM_ASSERT_OK(mm_reservoir_create(&r, 10, 1, 5));
    for (int i = 0; i < 10; i++) {
        float v = (float)i;
        MM_ASSERT_OK(mm_reservoir_offer(r, &v, i, NULL));
    }
    enum { K = 20000 };
    float *x = malloc(K * sizeof *x);
    int32_t *y = malloc(K * sizeof *y);
    MM_ASSERT_OK(mm_reservoir_draw(r, K, x, y));
    double cnt[10] = {0};
    for (int i = 0; i < K; i++) {
        ck_assert_int_eq((int)x[i], y[i]);
        cnt[y[i]] += 1;
    }
    chi = 0;
    for (int b = 0; b < 10; b++) chi += (cnt[b] - K / 10.0) * (cnt[b] - K / 10.0) / (K / 10.0);
    ck_assert_msg(chi < 27.88, "chi-square %g over draws", chi);
    free(x);
    free(y);
    mm_reservoir_free(r);

    /* a skewed sampler would fail: keeping only the first 100 items */
    ck_assert(((double)runs * cap - expect) * ((double)runs * cap - expect) / expect > 27.88);
}
END_TEST

START_TEST(reservoir_bad_arguments) {
    mm_reservoir *r;
    MM_ASSERT_STATUS(mm_reservoir_create(NULL, 1, 1, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_reservoir_create(&r, 0, 1, 0), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(r);
    MM_ASSERT_STATUS(mm_reservoir_create(&r, 1, 0, 0), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_reservoir_create(&r, SIZE_MAX / 2, 4, 0), MM_E_OUT_OF_RANGE);
    MM_ASSERT_OK(mm_reservoir_create(&r, 2, 3, 0));
    float x[3] = {1, 2, 3};
    int32_t y;
    MM_ASSERT_STATUS(mm_reservoir_draw(r, 1, x, &y), MM_E_STATE);
    MM_ASSERT_STATUS(mm_reservoir_offer(r, NULL, 0, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_reservoir_offer(r, x, 0, NULL));
    MM_ASSERT_STATUS(mm_reservoir_get(r, 1, NULL, NULL), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_reservoir_draw(r, 1, NULL, &y), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_reservoir_offer(NULL, x, 0, NULL), MM_E_INVALID_ARGUMENT);
    ck_assert_uint_eq(mm_reservoir_size(NULL), 0);
    mm_reservoir_free(r);
    mm_reservoir_free(NULL);
}
END_TEST

/* ---- guard and rollback -------------------------------------------------- */

/* Clean windows are accepted; a window of scrambled labels (a fixed label
 * permutation: the worst poison) is rolled back to the last good
 * checkpoint bit-exactly, reported as one quarantined range with the
 * accuracies compared, and never enters the replay reservoir. */
START_TEST(poisoned_window_rolls_back) {
    mm_model *m = trained_model();
    mm_maintainer *mt = guarded(m, 200);
    const size_t n = 200;
    float x[200 * DIM];
    int32_t y[200];
    mm_maint_report rep;
    for (int w = 0; w < 2; w++) {
        make_data(x, y, n, 200 + (uint64_t)w, 0);
        MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
        ck_assert_uint_eq(rep.events & MM_MAINT_EV_CHECKPOINT, MM_MAINT_EV_CHECKPOINT);
        ck_assert_uint_eq(rep.events & MM_MAINT_EV_ROLLBACK, 0);
    }
    ck_assert_uint_eq(rep.version, 3);
    ck_assert_uint_eq(rep.learned, 400);
    ck_assert(rep.rolling_accuracy > 0.85);
    ck_assert(rep.holdout_accuracy > 0.85);
    mm_model *good;
    MM_ASSERT_OK(mm_model_clone(mm_maintainer_model(mt), &good));

    make_data(x, y, n, 300, 0);
    for (size_t i = 0; i < n; i++) y[i] = (y[i] + 1) % CLASSES;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
    ck_assert_uint_eq(rep.events & MM_MAINT_EV_ROLLBACK, MM_MAINT_EV_ROLLBACK);
    ck_assert_uint_eq(rep.events & MM_MAINT_EV_CHECKPOINT, 0);
    ck_assert_uint_eq(rep.version, 3);
    ck_assert_uint_eq(rep.rollbacks, 1);
    ck_assert_uint_eq(rep.new_ranges, 1);
    ck_assert_uint_eq(rep.quarantined, 200);
    ck_assert_uint_eq(rep.learned, 400);
    ck_assert_msg(rep.rolling_accuracy < 0.7, "%g", rep.rolling_accuracy); /* progressive validation saw the poison */
    ck_assert_uint_eq(mm_maintainer_num_quarantined(mt), 1);
    mm_maint_range q;
    MM_ASSERT_OK(mm_maintainer_quarantined(mt, 0, &q));
    ck_assert_uint_eq(q.start, 400);
    ck_assert_uint_eq(q.end, 600);
    ck_assert_int_eq(q.reason, MM_MAINT_REASON_METRIC);
    ck_assert_msg(q.accuracy < q.good_accuracy - 0.02, "%g vs %g", q.accuracy, q.good_accuracy);
    ck_assert(same_params(mm_maintainer_working_model(mt), good));
    ck_assert(same_params(mm_maintainer_model(mt), good));
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(mm_maintainer_working_model(mt)), "\"rollback\""));
    MM_ASSERT_STATUS(mm_maintainer_quarantined(mt, 1, &q), MM_E_OUT_OF_RANGE);

    /* a second poisoned window: both rollbacks stay in the lineage */
    make_data(x, y, n, 350, 0);
    for (size_t i = 0; i < n; i++) y[i] = (y[i] + 1) % CLASSES;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
    ck_assert_uint_eq(rep.rollbacks, 2);

    /* clean data afterwards is learned again; the new version's lineage
     * records both rollbacks before its checkpoint */
    make_data(x, y, n, 400, 0);
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
    ck_assert_uint_eq(rep.events & MM_MAINT_EV_CHECKPOINT, MM_MAINT_EV_CHECKPOINT);
    ck_assert_uint_eq(rep.version, 4);
    ck_assert_uint_eq(rep.new_ranges, 0);
    ck_assert_uint_eq(rep.learned, 600);
    const char *lin = mm_model_lineage(mm_maintainer_model(mt));
    const char *r1 = strstr(lin, "\"window_start\":400,\"window_end\":600");
    const char *r2 = strstr(lin, "\"window_start\":600,\"window_end\":800");
    ck_assert_msg(r1 && r2 && r1 < r2, "lineage %s", lin);
    /* the windows' optimizer steps are on record in their checkpoint and
     * rollback events, not as online_steps events of their own */
    ck_assert_msg(!strstr(lin, "online_steps"), "lineage %s", lin);
    ck_assert_msg(!strstr(mm_model_lineage(mm_maintainer_working_model(mt)), "online_steps"),
                  "working lineage %s", mm_model_lineage(mm_maintainer_working_model(mt)));
    mm_model_free(good);
    mm_maintainer_free(mt);
    mm_model_free(m);
}
END_TEST

/* A sample whose loss is not finite (a NaN feature) rolls the window back at
 * once, with reason "numeric", and the range ends at that sample. */
START_TEST(nan_loss_rolls_back) {
    mm_model *m = trained_model();
    mm_maintainer *mt = guarded(m, 100);
    float x[150 * DIM];
    int32_t y[150];
    make_data(x, y, 150, 9, 0);
    x[120 * DIM + 3] = NAN;
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 150, &rep));
    ck_assert_uint_eq(rep.version, 2); /* the first 100 were accepted */
    ck_assert_uint_eq(rep.rollbacks, 1);
    ck_assert_uint_eq(rep.new_ranges, 1);
    mm_maint_range q;
    MM_ASSERT_OK(mm_maintainer_quarantined(mt, 0, &q));
    ck_assert_uint_eq(q.start, 100);
    ck_assert_uint_eq(q.end, 121);
    ck_assert_int_eq(q.reason, MM_MAINT_REASON_NUMERIC);
    ck_assert(isnan(q.accuracy));
    ck_assert(isfinite(rep.rolling_loss)); /* the NaN never entered the windows */
    MM_ASSERT_OK(mm_maintainer_flush(mt, &rep));
    ck_assert_uint_eq(rep.version, 3); /* samples 121..149 learned and accepted */
    ck_assert_uint_eq(rep.learned, 129);

    /* a learning rate that makes the optimizer refuse the update: numeric too */
    MM_ASSERT_OK(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 1e3));
    for (size_t i = 0; i < 10 * DIM; i++) x[i] = 1e30f;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 10, &rep));
    ck_assert_uint_ge(rep.rollbacks, 2);
    ck_assert(same_params(mm_maintainer_working_model(mt), mm_maintainer_model(mt)));
    mm_maintainer_free(mt);
    mm_model_free(m);
}
END_TEST

/* ---- checkpoints ----------------------------------------------------------- */

static size_t count_files(const char *dir, const char *prefix, size_t *others) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    *others = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
            strlen(e->d_name) > 4 && strcmp(e->d_name + strlen(e->d_name) - 4, ".mmf") == 0)
            n++;
        else
            (*others)++;
    }
    closedir(d);
    return n;
}

/* Ring of 3: after 6 accepted windows exactly 3 checkpoints remain, in
 * memory (versions 5, 6, 7, oldest first) and on disk; each file loads and
 * equals its memory copy, its lineage names the checkpoint; no temporary
 * file is left behind. */
START_TEST(ring_is_bounded_and_disk_checkpoints_load) {
    char *dir = mm_test_tmp_path("-ckpt");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    mm_model *m = trained_model();
    mm_maintainer *mt = guarded(m, 50);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_RING, 3)); /* a holdout does not fix sizes */
    MM_ASSERT_OK(mm_maintainer_set_checkpoint_dir(mt, dir));
    size_t others;
    ck_assert_uint_eq(count_files(dir, "ckpt-", &others), 1); /* version 1 */
    float x[300 * DIM];
    int32_t y[300];
    make_data(x, y, 300, 55, 0);
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 300, &rep));
    ck_assert_uint_eq(rep.version, 7);
    ck_assert_uint_eq(mm_maintainer_num_checkpoints(mt), 3);
    ck_assert_uint_eq(count_files(dir, "ckpt-", &others), 3);
    ck_assert_uint_eq(others, 0);
    for (size_t i = 0; i < 3; i++) {
        const mm_model *c;
        uint64_t v;
        MM_ASSERT_OK(mm_maintainer_checkpoint(mt, i, &c, &v));
        ck_assert_uint_eq(v, 5 + i);
        char path[4200];
        snprintf(path, sizeof path, "%s/ckpt-%08llu.mmf", dir, (unsigned long long)v);
        mm_model *loaded;
        MM_ASSERT_OK(mm_model_load(&loaded, path));
        ck_assert(same_params(loaded, c));
        char want[64];
        snprintf(want, sizeof want, "\"version\":%llu", (unsigned long long)v);
        ck_assert_ptr_nonnull(strstr(mm_model_lineage(loaded), "\"checkpoint\""));
        ck_assert_ptr_nonnull(strstr(mm_model_lineage(loaded), want));
        mm_model_free(loaded);
        unlink(path);
    }
    const mm_model *last;
    MM_ASSERT_OK(mm_maintainer_checkpoint(mt, 2, &last, NULL));
    ck_assert_ptr_eq(last, mm_maintainer_model(mt));
    MM_ASSERT_STATUS(mm_maintainer_checkpoint(mt, 3, &last, NULL), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_RING, 5), MM_E_STATE);
    mm_maintainer_free(mt);
    rmdir(dir);

    /* a directory that does not exist is refused at once */
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_STATUS(mm_maintainer_set_checkpoint_dir(mt, dir), MM_E_IO);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), dir));
    MM_ASSERT_OK(mm_maintainer_set_checkpoint_dir(mt, NULL));
    mm_maintainer_free(mt);
    mm_model_free(m);
    free(dir);
}
END_TEST

/* ---- champion / challenger --------------------------------------------------- */

/* The stream moves to blobs on other features (a covariate drift the
 * deployed model gets wrong). The detector fires and a challenger is
 * trained on the recent samples (no replay here). With a holdout of the new
 * distribution it beats the champion and is promoted (lineage "promote");
 * with a holdout of the old distribution it is worse (it forgot) and the
 * champion stays. */
static mm_maint_report drift_run(const mm_model *m, size_t holdout_offset, mm_maintainer **out) {
    mm_maintainer *mt;
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_WINDOW, 100));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_HOLDOUT_EVERY, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 3)); /* DDM */
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_RECENT_SIZE, 20));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_REPLAY_SIZE, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, 1)); /* the guard accepts */
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_CHALLENGER_EPOCHS, 30));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_CHALLENGER_LR, 0.01));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_CHALLENGER_DELAY, 0));
    float hx[400 * DIM];
    int32_t hy[400];
    make_data(hx, hy, 400, 77, holdout_offset);
    MM_ASSERT_OK(mm_maintainer_set_holdout(mt, hx, hy, 400));
    float x[300 * DIM];
    int32_t y[300];
    make_data(x, y, 300, 1, 0);
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 300, &rep));
    ck_assert_uint_eq(rep.drifts, 0);
    ck_assert_uint_eq(rep.version, 4);
    make_data(x, y, 300, 2, 4);
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 300, &rep));
    *out = mt;
    return rep;
}

START_TEST(challenger_promoted_only_when_better) {
    mm_model *m = trained_model();
    mm_maintainer *mt;
    mm_maint_report rep = drift_run(m, 4, &mt);
    ck_assert_uint_ge(rep.drifts, 1);
    ck_assert_uint_ge(rep.challengers, 1);
    ck_assert_msg(rep.promotions >= 1, "promotions %llu, holdout %g",
                  (unsigned long long)rep.promotions, rep.holdout_accuracy);
    ck_assert_uint_eq(rep.events & MM_MAINT_EV_PROMOTE, MM_MAINT_EV_PROMOTE);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(mm_maintainer_model(mt)), "\"promote\""));
    mm_maintainer_free(mt);

    rep = drift_run(m, 0, &mt);
    ck_assert_uint_ge(rep.drifts, 1);
    ck_assert_uint_ge(rep.challengers, 1);
    ck_assert_uint_eq(rep.promotions, 0);
    ck_assert_uint_eq(rep.events & MM_MAINT_EV_REJECT, MM_MAINT_EV_REJECT);
    ck_assert_ptr_null(strstr(mm_model_lineage(mm_maintainer_model(mt)), "\"promote\""));
    mm_maintainer_free(mt);
    mm_model_free(m);
}
END_TEST

/* A poisoned stretch five times longer than the stream holdout's span
 * (labels scrambled). Held-out samples of a quarantined window leave with
 * it, so the holdout stays clean (were it filled with scrambled labels, the
 * guard would compare two models on noise and let poison through), every
 * poisoned window is rolled back and the deployed version keeps its
 * accuracy. */
START_TEST(long_poison_never_enters_the_holdout) {
    mm_model *m = trained_model();
    mm_maintainer *mt = stream_holdout(m, 100, 100, 5);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_REPLAY_SIZE, 0));
    /* no tolerance: the default 0.01 would let each window lose up to a point */
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, 0));
    MM_ASSERT_OK(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 0.05));
    const size_t clean = 600, poison = 2500;
    float *x = malloc(poison * DIM * sizeof *x);
    int32_t *y = malloc(poison * sizeof *y);
    make_data(x, y, clean, 11, 0);
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, clean, &rep));
    const uint64_t rollbacks = rep.rollbacks, version = rep.version;
    make_data(x, y, poison, 12, 0);
    uint64_t h = 99;
    for (size_t i = 0; i < poison; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (int32_t)((h >> 33) % CLASSES);
    }
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, poison, &rep));
    MM_ASSERT_OK(mm_maintainer_flush(mt, &rep));
    ck_assert_msg(rep.version == version, "a poisoned window was accepted: version %llu -> %llu",
                  (unsigned long long)version, (unsigned long long)rep.version);
    ck_assert_uint_ge(rep.rollbacks - rollbacks, poison / 125 - 1);
    make_data(x, y, 400, 13, 0);
    double acc;
    MM_ASSERT_OK(mm_model_evaluate(mm_maintainer_model(mt), x, y, NULL, 400, NULL, &acc));
    ck_assert_msg(acc > 0.9, "deployed accuracy %g", acc);
    mm_maintainer_free(mt);
    mm_model_free(m);
    free(x);
    free(y);
}
END_TEST

/* The opposite case: from some point on the labels keep a new meaning
 * (every class renamed to the next: a concept drift, learnable). A window's
 * working copy is then much better than the deployed version on the
 * window's own held-out samples (one-sided sign test at 0.1%), though worse
 * on the older holdout, and is accepted: the maintainer follows. */
START_TEST(lasting_concept_change_is_followed) {
    mm_model *m = trained_model();
    mm_maintainer *mt = stream_holdout(m, 300, 1000, 3);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 0));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_REPLAY_SIZE, 0));
    MM_ASSERT_OK(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 0.05));
    const size_t n = 4000;
    float *x = malloc(n * DIM * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    /* a holdout ring of 1000 old-meaning samples; a window holds out 150 */
    make_data(x, y, 1000, 41, 0);
    MM_ASSERT_OK(mm_maintainer_set_holdout(mt, x, y, 1000));
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_status(mt, &rep));
    const uint64_t version = rep.version;
    make_data(x, y, n, 42, 0);
    for (size_t i = 0; i < n; i++) y[i] = (y[i] + 1) % CLASSES;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
    ck_assert_uint_gt(rep.version, version);
    make_data(x, y, 400, 43, 0);
    for (size_t i = 0; i < 400; i++) y[i] = (y[i] + 1) % CLASSES;
    double acc;
    MM_ASSERT_OK(mm_model_evaluate(mm_maintainer_model(mt), x, y, NULL, 400, NULL, &acc));
    ck_assert_msg(acc > 0.8, "deployed accuracy on the new labels %g", acc);
    mm_maintainer_free(mt);
    mm_model_free(m);
    free(x);
    free(y);
}
END_TEST

/* The inputs change gain and offset (x' = 1.5 + 0.5 x, a sensor
 * recalibration). After the drift signal the re-aligned challenger (first
 * layer folded with the affine map from the input statistics) is promoted
 * ("realigned": true in its lineage event) and serves the new inputs as
 * well as the old model served the old ones. */
#define GAIN_OFFSET(v) (1.5f + 0.5f * (v))
START_TEST(realigned_challenger_follows_gain_offset_drift) {
    mm_model *m = trained_model();
    mm_maintainer *mt = stream_holdout(m, 100, 300, 2);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_CHALLENGER_DELAY, 300));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_RECENT_SIZE, 300));
    MM_ASSERT_OK(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, 1e-4)); /* slow online */
    const size_t n = 1500;
    float *x = malloc(n * DIM * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    make_data(x, y, n, 21, 0);
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 600, &rep));
    ck_assert_uint_eq(rep.promotions, 0);
    for (size_t i = 600 * DIM; i < n * DIM; i++) x[i] = GAIN_OFFSET(x[i]);
    MM_ASSERT_OK(mm_maintainer_feed(mt, x + 600 * DIM, y + 600, n - 600, &rep));
    ck_assert_uint_ge(rep.drifts, 1);
    ck_assert_msg(rep.promotions >= 1, "no challenger promoted (%llu trained)",
                  (unsigned long long)rep.challengers);
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(mm_maintainer_model(mt)), "\"realigned\":true"));
    make_data(x, y, 400, 22, 0);
    double before, after;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, NULL, 400, NULL, &before));
    for (size_t i = 0; i < 400 * DIM; i++) x[i] = GAIN_OFFSET(x[i]);
    MM_ASSERT_OK(mm_model_evaluate(mm_maintainer_model(mt), x, y, NULL, 400, NULL, &after));
    ck_assert_msg(after >= before - 0.03, "accuracy on the new inputs %g, old model on old %g",
                  after, before);
    mm_maintainer_free(mt);
    mm_model_free(m);
    free(x);
    free(y);
}
END_TEST

/* A pruned model whose first layer is stored sparse takes the re-alignment
 * too: the fold goes through the layer's dense form (mm_model_get_weights /
 * set_weights), which is exact (pruned weights are 0 before and after), so
 * the re-aligned challenger follows a gain/offset drift and stays sparse
 * with the same pruned positions; feeding never fails. */
START_TEST(sparse_first_layer_drift_feeds_on) {
    mm_model *m = trained_model();
    mm_pruner *pr;
    MM_ASSERT_OK(mm_pruner_create(&pr, MM_PRUNE_MAGNITUDE));
    MM_ASSERT_OK(mm_pruner_set(pr, MM_PRUNE_SPARSITY, 0.5));
    MM_ASSERT_OK(mm_pruner_set(pr, MM_PRUNE_SPARSE_FORMAT, MM_PRUNE_FORMAT_SPARSE));
    MM_ASSERT_OK(mm_pruner_apply(pr, m));
    MM_ASSERT_OK(mm_pruner_finalize(pr, m, NULL));
    mm_pruner_free(pr);
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(m, 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "sparse");
    double sp_before;
    MM_ASSERT_OK(mm_model_layer_sparsity(m, 0, &sp_before));
    mm_maintainer *mt = stream_holdout(m, 100, 300, 2);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_CHALLENGER_DELAY, 300));
    const size_t n = 1500;
    float *x = malloc(n * DIM * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    make_data(x, y, n, 51, 0);
    for (size_t i = 600 * DIM; i < n * DIM; i++) x[i] = GAIN_OFFSET(x[i]);
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, n, &rep));
    ck_assert_uint_ge(rep.drifts, 1);
    ck_assert_uint_ge(rep.challengers, 1);
    /* the re-aligned challenger won, and its first layer is the same
     * sparse layer with re-aligned values */
    ck_assert_ptr_nonnull(strstr(mm_model_lineage(mm_maintainer_model(mt)), "\"realigned\":true"));
    MM_ASSERT_OK(mm_model_layer_info(mm_maintainer_model(mt), 0, &kind, NULL, NULL, NULL));
    ck_assert_str_eq(kind, "sparse");
    double sp_after;
    MM_ASSERT_OK(mm_model_layer_sparsity(mm_maintainer_model(mt), 0, &sp_after));
    ck_assert_double_eq(sp_after, sp_before);
    make_data(x, y, 400, 22, 0);
    double before, after;
    MM_ASSERT_OK(mm_model_evaluate(m, x, y, NULL, 400, NULL, &before));
    for (size_t i = 0; i < 400 * DIM; i++) x[i] = GAIN_OFFSET(x[i]);
    MM_ASSERT_OK(mm_model_evaluate(mm_maintainer_model(mt), x, y, NULL, 400, NULL, &after));
    ck_assert_msg(after >= before - 0.03, "accuracy on the new inputs %g, old model on old %g",
                  after, before);
    mm_maintainer_free(mt);
    mm_model_free(m);
    free(x);
    free(y);
}
END_TEST

/* ---- quantized and pruned deployed models ------------------------------------ */

START_TEST(int8_and_pruned_models_stay_so) {
    mm_model *base = trained_model();
    float cx[256 * DIM];
    int32_t cy[256];
    make_data(cx, cy, 256, 31, 0);

    mm_model *q;
    MM_ASSERT_OK(mm_model_clone(base, &q));
    mm_quantizer *qz;
    MM_ASSERT_OK(mm_quantizer_create(&qz, MM_QUANT_INT8_STATIC));
    MM_ASSERT_OK(mm_quantizer_set(qz, MM_QUANT_KEEP_MASTER, 1)); /* maintained: trainable */
    MM_ASSERT_OK(mm_quantizer_calibrate(qz, q, cx, 256));
    MM_ASSERT_OK(mm_quantizer_apply(qz, q));
    mm_quantizer_free(qz);
    const char *kind;
    MM_ASSERT_OK(mm_model_layer_info(q, 0, &kind, NULL, NULL, NULL));
    char qkind[32];
    snprintf(qkind, sizeof qkind, "%s", kind);

    mm_model *p;
    MM_ASSERT_OK(mm_model_clone(base, &p));
    mm_pruner *pr;
    MM_ASSERT_OK(mm_pruner_create(&pr, MM_PRUNE_MAGNITUDE));
    MM_ASSERT_OK(mm_pruner_set(pr, MM_PRUNE_SPARSITY, 0.5));
    MM_ASSERT_OK(mm_pruner_apply(pr, p));
    mm_pruner_free(pr);
    const size_t nz = mm_model_num_nonzero(p);

    mm_model *models[2] = {q, p};
    for (int k = 0; k < 2; k++) {
        mm_maintainer *mt = guarded(models[k], 100);
        MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_L2SP, 0.01));
        float x[400 * DIM];
        int32_t y[400];
        make_data(x, y, 400, 32, 0);
        mm_maint_report rep;
        MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 400, &rep));
        ck_assert_uint_eq(rep.version, 5);
        ck_assert_uint_eq(rep.rollbacks, 0);
        ck_assert(rep.holdout_accuracy > 0.85);
        const mm_model *dep = mm_maintainer_model(mt);
        ck_assert(!same_params(dep, models[k])); /* it did learn */
        if (k == 0) {
            MM_ASSERT_OK(mm_model_layer_info(dep, 0, &kind, NULL, NULL, NULL));
            ck_assert_str_eq(kind, qkind);
            ck_assert_str_ne(kind, "dense");
        } else {
            ck_assert_uint_le(mm_model_num_nonzero(dep), nz);
        }
        mm_maintainer_free(mt);
    }
    mm_model_free(q);
    mm_model_free(p);
    mm_model_free(base);
}
END_TEST


/* ---- serving ----------------------------------------------------------------- */

/* An attached server gets the deployed version at once and every accepted
 * version after it, never a rolled-back one; readers see the deployed
 * weights. */
START_TEST(attached_server_gets_accepted_versions) {
    mm_model *m = trained_model();
    mm_server *srv;
    MM_ASSERT_OK(mm_server_create(&srv, m));
    ck_assert_uint_eq(mm_server_version(srv), 1);
    mm_maintainer *mt = guarded(m, 100);
    MM_ASSERT_OK(mm_maintainer_attach_server(mt, srv));
    ck_assert_uint_eq(mm_server_version(srv), 2);
    float x[300 * DIM];
    int32_t y[300];
    make_data(x, y, 300, 61, 0);
    for (size_t i = 200; i < 300; i++) y[i] = (y[i] + 1) % CLASSES; /* last window poisoned */
    mm_maint_report rep;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 300, &rep));
    ck_assert_uint_eq(rep.version, 3);
    ck_assert_uint_eq(rep.rollbacks, 1);
    ck_assert_uint_eq(mm_server_version(srv), 4); /* initial + attach + 2 accepted */
    const mm_model *served;
    uint64_t v;
    MM_ASSERT_OK(mm_server_acquire(srv, &served, &v));
    ck_assert_uint_eq(v, 4);
    ck_assert(same_params(served, mm_maintainer_model(mt)));
    mm_server_release(srv, served);
    MM_ASSERT_OK(mm_maintainer_attach_server(mt, NULL));
    make_data(x, y, 100, 62, 0);
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 100, &rep));
    ck_assert_uint_eq(rep.version, 4);
    ck_assert_uint_eq(mm_server_version(srv), 4); /* detached */
    mm_maintainer_free(mt);
    mm_server_free(srv);
    mm_model_free(m);
}
END_TEST

/* ---- settings and bad arguments ---------------------------------------------- */

START_TEST(bad_arguments) {
    mm_model *m = trained_model();
    mm_maintainer *mt;
    MM_ASSERT_STATUS(mm_maintainer_create(NULL, m, MM_OPTIM_SGD), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_maintainer_create(&mt, NULL, MM_OPTIM_SGD), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(mt);
    MM_ASSERT_STATUS(mm_maintainer_create(&mt, m, (mm_optim_kind)9), MM_E_INVALID_ARGUMENT);
    mm_model *mse;
    MM_ASSERT_OK(mm_model_clone(m, &mse));
    MM_ASSERT_OK(mm_model_set_loss(mse, MM_LOSS_MSE));
    MM_ASSERT_STATUS(mm_maintainer_create(&mt, mse, MM_OPTIM_SGD), MM_E_UNSUPPORTED);
    mm_model_free(mse);
    mm_model *empty;
    MM_ASSERT_OK(mm_model_create(&empty, 4, 0));
    MM_ASSERT_STATUS(mm_maintainer_create(&mt, empty, MM_OPTIM_SGD), MM_E_INVALID_ARGUMENT);
    mm_model_free(empty);

    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_ADAM));
    /* names */
    for (int p = 1; p <= 15; p++) {
        const char *name = mm_maint_param_name((mm_maint_param)p);
        ck_assert_ptr_nonnull(name);
        mm_maint_param back;
        MM_ASSERT_OK(mm_maint_param_from_name(name, &back));
        ck_assert_int_eq((int)back, p);
        double v;
        MM_ASSERT_OK(mm_maintainer_get(mt, (mm_maint_param)p, &v));
    }
    ck_assert_ptr_null(mm_maint_param_name((mm_maint_param)16));
    mm_maint_param back;
    MM_ASSERT_STATUS(mm_maint_param_from_name("windowz", &back), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "windowz"));
    /* ranges */
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_WINDOW, 0), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "window"));
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, -0.1), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, NAN), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 5), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_BATCH, 1.5), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_maintainer_set(mt, (mm_maint_param)0, 1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_maintainer_set_optimizer(mt, MM_OPT_MOMENTUM, 0.9), MM_E_UNSUPPORTED);
    MM_ASSERT_STATUS(mm_maintainer_set_optimizer(mt, MM_OPT_LEARNING_RATE, -1), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_maintainer_set_detector(mt, "nonsense", 1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_maintainer_set_detector(mt, "delta", 0.01)); /* ADWIN, the default */
    /* samples */
    float x[2 * DIM] = {0};
    int32_t y[2] = {0, 4};
    mm_maint_report rep;
    rep.samples = 99;
    MM_ASSERT_STATUS(mm_maintainer_feed(mt, x, y, 2, &rep), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "sample 1"));
    ck_assert_uint_eq(rep.samples, 0);
    MM_ASSERT_STATUS(mm_maintainer_feed(mt, NULL, y, 2, &rep), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_maintainer_feed(mt, x, NULL, 2, &rep), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_maintainer_feed(NULL, x, y, 2, &rep), MM_E_INVALID_ARGUMENT);
    y[1] = -1;
    MM_ASSERT_STATUS(mm_maintainer_set_holdout(mt, x, y, 2), MM_E_OUT_OF_RANGE);
    y[1] = 1;
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 0, &rep));
    ck_assert_uint_eq(rep.samples, 0);
    ck_assert(isnan(rep.rolling_accuracy));
    MM_ASSERT_OK(mm_maintainer_feed(mt, x, y, 2, &rep));
    ck_assert_uint_eq(rep.samples, 2);
    /* sizes are fixed once fed */
    MM_ASSERT_STATUS(mm_maintainer_set(mt, MM_MAINT_WINDOW, 7), MM_E_STATE);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_GUARD_THRESHOLD, 0.05));
    MM_ASSERT_STATUS(mm_maintainer_status(mt, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_maintainer_status(mt, &rep));
    ck_assert_uint_eq(rep.struct_size, sizeof rep);
    ck_assert_ptr_null(mm_maintainer_model(NULL));
    ck_assert_uint_eq(mm_maintainer_num_checkpoints(NULL), 0);
    mm_maintainer_free(mt);
    mm_maintainer_free(NULL);

    /* holdout larger than its ring; no detector */
    MM_ASSERT_OK(mm_maintainer_create(&mt, m, MM_OPTIM_SGD));
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_HOLDOUT_SIZE, 1));
    MM_ASSERT_STATUS(mm_maintainer_set_holdout(mt, x, y, 2), MM_E_OUT_OF_RANGE);
    MM_ASSERT_OK(mm_maintainer_set(mt, MM_MAINT_DETECTOR, 0));
    MM_ASSERT_STATUS(mm_maintainer_set_detector(mt, "drift_level", 4), MM_E_STATE);
    mm_maintainer_free(mt);
    mm_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("maintainer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, reservoir_is_uniform);
    tcase_add_test(tc, reservoir_bad_arguments);
    tcase_add_test(tc, poisoned_window_rolls_back);
    tcase_add_test(tc, nan_loss_rolls_back);
    tcase_add_test(tc, ring_is_bounded_and_disk_checkpoints_load);
    tcase_add_test(tc, challenger_promoted_only_when_better);
    tcase_add_test(tc, long_poison_never_enters_the_holdout);
    tcase_add_test(tc, lasting_concept_change_is_followed);
    tcase_add_test(tc, sparse_first_layer_drift_feeds_on);
    tcase_add_test(tc, realigned_challenger_follows_gain_offset_drift);
    tcase_add_test(tc, int8_and_pruned_models_stay_so);
    tcase_add_test(tc, attached_server_gets_accepted_versions);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
