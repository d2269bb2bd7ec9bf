/* mm_server: hot swap of a served model with reference-counted snapshots.
 *
 * Safe memory reclamation (why a reader never has its snapshot freed under
 * it, and why readers never block):
 *
 * A snapshot is {model, version, refs}. `refs` counts the published slot
 * (1 while it is the current snapshot) plus every reader holding it. The
 * snapshot is freed by whoever brings refs to 0: a reader's release, or the
 * writer when it unpublishes a snapshot nobody holds.
 *
 * The only danger is the window in acquire between loading the `current`
 * pointer and incrementing that snapshot's refs: a writer could unpublish
 * and drop the slot's reference in between, and the reader would then
 * increment freed memory. The window is guarded by a two-phase reader epoch
 * (a minimal form of epoch-based reclamation):
 *
 *   acquire:  e = epoch; entering[e & 1]++; if (epoch != e) { entering[e & 1]--; retry; }
 *             snap = current; snap->refs++; entering[e & 1]--;
 *   publish:  (writers serialised by a mutex) new->refs = 1;
 *             old = exchange(current, new); e = epoch++;
 *             wait until entering[e & 1] == 0;        // only readers in the window
 *             if (--old->refs == 0) free(old);        // drop the slot's reference
 *
 * All these atomics are sequentially consistent. A reader that loaded `old`
 * did so before the exchange, so its second epoch read (which is before its
 * load of `current`) saw the epoch before the writer's increment, i.e. e:
 * it is counted in entering[e & 1] until it has incremented old->refs, and
 * the writer waits for that counter to drain before dropping the slot's
 * reference. (A reader that saw an older epoch finished before the previous
 * publish returned, since that publish waited for it.) Readers arriving after
 * the increment use the other counter, so the writer's wait ends after at
 * most the few instructions of the readers already in the window; a reader
 * that read a stale epoch increments and immediately decrements. Readers
 * never wait for anything: acquire is lock-free (it retries only when a
 * publish increments the epoch at that very moment) and release is one
 * atomic decrement. Old snapshots live exactly as long as their last reader.
 *
 * The model of a snapshot points back to it (mm_model.snapshot), so release
 * finds it from the const model pointer the reader was given. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "mm/mm_server.h"
#include "model/model_internal.h"

typedef struct snapshot {
    mm_model *model;
    uint64_t version;
    mm_server *server;
    atomic_int_fast64_t refs;
} snapshot;

struct mm_server {
    _Atomic(snapshot *) current;
    atomic_uint_fast64_t epoch;
    atomic_int_fast64_t entering[2];
    atomic_uint_fast64_t version;     /* of `current`, for mm_server_version */
    atomic_int_fast64_t outstanding;  /* acquired, not released */
    atomic_int_fast64_t live;         /* snapshots not yet freed */
    size_t input_dim, output_dim;
    pthread_mutex_t write_lock;
};

static void snapshot_free(snapshot *snap) {
    atomic_fetch_sub(&snap->server->live, 1);
    mm_model_free(snap->model);
    free(snap);
}

/* Drop one reference; free on the last. */
static void snapshot_unref(snapshot *snap) {
    if (atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) == 1) snapshot_free(snap);
}

static mm_status snapshot_new(mm_server *s, const mm_model *model, uint64_t version,
                              snapshot **out) {
    snapshot *snap = malloc(sizeof *snap);
    if (!snap) return mm_oom("served snapshot");
    mm_status st = mm_model_clone(model, &snap->model);
    if (st != MM_OK) {
        free(snap);
        return mm_error_prefix(st, "publishing a model");
    }
    snap->model->snapshot = snap;
    snap->version = version;
    snap->server = s;
    atomic_init(&snap->refs, 1); /* the published slot's reference */
    atomic_fetch_add(&s->live, 1);
    *out = snap;
    return MM_OK;
}

mm_status mm_server_create(mm_server **out, const mm_model *initial) {
    if (!out) return mm_null_arg("out");
    *out = NULL;
    if (!initial) return mm_null_arg("initial model");
    if (mm_model_num_layers(initial) == 0)
        return mm_error(MM_E_STATE, "cannot serve a model without layers");
    mm_server *s = calloc(1, sizeof *s);
    if (!s) return mm_oom("server");
    if (pthread_mutex_init(&s->write_lock, NULL) != 0) {
        free(s);
        return mm_error(MM_E_INTERNAL, "server: cannot initialise the writer mutex");
    }
    atomic_init(&s->epoch, 0);
    atomic_init(&s->entering[0], 0);
    atomic_init(&s->entering[1], 0);
    atomic_init(&s->outstanding, 0);
    atomic_init(&s->live, 0);
    s->input_dim = mm_model_input_dim(initial);
    s->output_dim = mm_model_output_dim(initial);
    snapshot *snap;
    mm_status st = snapshot_new(s, initial, 1, &snap);
    if (st != MM_OK) {
        pthread_mutex_destroy(&s->write_lock);
        free(s);
        return st;
    }
    atomic_init(&s->current, snap);
    atomic_init(&s->version, 1);
    *out = s;
    return MM_OK;
}

void mm_server_free(mm_server *s) {
    if (!s) return;
    snapshot *snap = atomic_load(&s->current);
    /* Snapshots still held by readers would be freed under them: leak them
     * (and this server, which they point to) instead, as documented. */
    if (atomic_load(&s->outstanding) != 0) return;
    snapshot_unref(snap);
    pthread_mutex_destroy(&s->write_lock);
    free(s);
}

mm_status mm_server_publish(mm_server *s, const mm_model *model, uint64_t *version) {
    if (!s) return mm_null_arg("server");
    if (!model) return mm_null_arg("model");
    if (mm_model_num_layers(model) == 0)
        return mm_error(MM_E_STATE, "cannot serve a model without layers");
    if (mm_model_input_dim(model) != s->input_dim || mm_model_output_dim(model) != s->output_dim)
        return mm_error(MM_E_SHAPE,
                        "published model maps %zu inputs to %zu outputs, the served one %zu to %zu",
                        mm_model_input_dim(model), mm_model_output_dim(model), s->input_dim,
                        s->output_dim);
    pthread_mutex_lock(&s->write_lock);
    uint64_t v = atomic_load(&s->version) + 1;
    snapshot *snap;
    mm_status st = snapshot_new(s, model, v, &snap); /* clone outside the readers' view */
    if (st != MM_OK) {
        pthread_mutex_unlock(&s->write_lock);
        return st;
    }
    snapshot *old = atomic_exchange(&s->current, snap);
    atomic_store(&s->version, v);
    uint_fast64_t e = atomic_fetch_add(&s->epoch, 1);
    /* Wait for the readers between "load current" and "refs++" (see top). */
    while (atomic_load(&s->entering[e & 1]) != 0) sched_yield();
    snapshot_unref(old);
    pthread_mutex_unlock(&s->write_lock);
    if (version) *version = v;
    return MM_OK;
}

static snapshot *acquire(mm_server *s) {
    uint_fast64_t e;
    for (;;) {
        e = atomic_load(&s->epoch);
        atomic_fetch_add(&s->entering[e & 1], 1);
        if (atomic_load(&s->epoch) == e) break;
        atomic_fetch_sub(&s->entering[e & 1], 1);
    }
    snapshot *snap = atomic_load(&s->current);
    atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
    atomic_fetch_sub(&s->entering[e & 1], 1);
    atomic_fetch_add_explicit(&s->outstanding, 1, memory_order_relaxed);
    return snap;
}

static void release(mm_server *s, snapshot *snap) {
    atomic_fetch_sub_explicit(&s->outstanding, 1, memory_order_relaxed);
    snapshot_unref(snap);
}

mm_status mm_server_acquire(mm_server *s, const mm_model **model, uint64_t *version) {
    if (!s) return mm_null_arg("server");
    if (!model) return mm_null_arg("model");
    snapshot *snap = acquire(s);
    *model = snap->model;
    if (version) *version = snap->version;
    return MM_OK;
}

void mm_server_release(mm_server *s, const mm_model *model) {
    if (!s || !model) return;
    snapshot *snap = model->snapshot;
    if (!snap || snap->server != s || snap->model != model) {
        mm_error(MM_E_INVALID_ARGUMENT, "mm_server_release: the model was not acquired from "
                                        "this server; ignored");
        return;
    }
    release(s, snap);
}

mm_status mm_server_predict(mm_server *s, const float *x, size_t n, int32_t *labels,
                            uint64_t *version) {
    if (!s) return mm_null_arg("server");
    snapshot *snap = acquire(s);
    mm_status st = mm_model_predict(snap->model, x, n, labels);
    if (st == MM_OK && version) *version = snap->version;
    release(s, snap);
    return st;
}

mm_status mm_server_forward(mm_server *s, const float *x, size_t n, float *out,
                            uint64_t *version) {
    if (!s) return mm_null_arg("server");
    snapshot *snap = acquire(s);
    mm_status st = mm_model_forward(snap->model, x, n, out);
    if (st == MM_OK && version) *version = snap->version;
    release(s, snap);
    return st;
}

uint64_t mm_server_version(const mm_server *s) {
    return s ? (uint64_t)atomic_load(&((mm_server *)s)->version) : 0;
}

uint64_t mm_server_outstanding(const mm_server *s) {
    if (!s) return 0;
    int_fast64_t v = atomic_load(&((mm_server *)s)->outstanding);
    return v > 0 ? (uint64_t)v : 0;
}

uint64_t mm_server_live_snapshots(const mm_server *s) {
    if (!s) return 0;
    int_fast64_t v = atomic_load(&((mm_server *)s)->live);
    return v > 0 ? (uint64_t)v : 0;
}
