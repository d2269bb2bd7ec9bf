/* mmaint — serving a model while it is being updated (hot swap).
 *
 * An mm_server holds the model currently served as an immutable, reference-
 * counted snapshot with a version number. Readers (inference threads) take a
 * snapshot with mm_server_acquire, use it as a const model for as long as
 * they like, and give it back with mm_server_release; mm_server_predict does
 * the three steps for one batch. A writer (the maintenance loop) builds a new
 * model on the side and calls mm_server_publish, which clones it and swaps the
 * clone in atomically as the next version. Readers that hold the old snapshot
 * keep using it; it is freed when the last of them releases it.
 *
 * Guarantees:
 *   - readers never block: acquire and release take no lock and never wait
 *     for a writer or for other readers (they are lock-free: a reader retries
 *     a few instructions only when a publish flips the reader epoch at the
 *     same moment);
 *   - a reader never sees a half-updated model: a snapshot is a complete
 *     clone made before it is published and is never written afterwards;
 *   - the version a reader gets is the version of the snapshot it uses;
 *     versions increase by one with each publish (the initial model is 1).
 * Writers: mm_server_publish may be called from any thread; concurrent
 * publishes are serialised by a mutex inside the server (writers may wait for
 * each other, and briefly for readers that are in the middle of the few
 * instructions of an acquire — never for readers that hold a snapshot).
 * How memory is reclaimed safely is described in doc/API.md ("Serving while
 * updating") and in lib/maintain/server.c.
 *
 * Any model kind can be served: dense, pruned (sparse layers), quantized
 * (int8 layers). Inference on a const model is thread-safe
 * (include/mm/mm_model.h), so many readers may use the same snapshot.
 */
#ifndef MM_SERVER_H
#define MM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "mm_common.h"
#include "mm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_server mm_server;

/* A new server that publishes a clone of `initial` (borrowed; the caller
 * keeps it and may change or free it afterwards) as version 1. The caller
 * owns *out. MM_E_INVALID_ARGUMENT for NULL arguments, MM_E_OUT_OF_MEMORY. */
MM_API mm_status mm_server_create(mm_server **out, const mm_model *initial);

/* Free the server and its current snapshot. Call it only after every reader
 * has released every snapshot it acquired and no other thread uses the
 * server; snapshots still held are leaked rather than freed under a reader
 * (mm_server_outstanding tells how many there are). NULL is a no-op. */
MM_API void mm_server_free(mm_server *s);

/* Clone `model` (borrowed) and publish the clone atomically as the next
 * version, written to *version (may be NULL). Readers that acquire after
 * this call returns get the new version; the previous snapshot is freed
 * when its last reader releases it (at once if it has none). On error
 * (MM_E_INVALID_ARGUMENT for NULL, MM_E_SHAPE if the new model's input or
 * output width differs from the served one, MM_E_OUT_OF_MEMORY) nothing is
 * published. Thread-safe (writers are serialised). */
MM_API mm_status mm_server_publish(mm_server *s, const mm_model *model, uint64_t *version);

/* Take the current snapshot: *model is a const model the caller may use
 * (forward, predict, evaluate, save, clone, describe — read-only calls)
 * until it passes it to mm_server_release, and *version (may be NULL) its
 * version. Never blocks. Thread-safe. Every successful acquire must be
 * matched by exactly one release. */
MM_API mm_status mm_server_acquire(mm_server *s, const mm_model **model, uint64_t *version);

/* Give back a snapshot obtained from mm_server_acquire on this server.
 * Never blocks. Thread-safe. NULL model is a no-op; a model that did not
 * come from this server is ignored (and recorded as an MM_E_INVALID_ARGUMENT
 * detail message). */
MM_API void mm_server_release(mm_server *s, const mm_model *model);

/* acquire + mm_model_predict(x, n, labels) + release: labels[n] receive the
 * arg-max classes computed by one snapshot, whose version goes to *version
 * (may be NULL). Errors as mm_model_predict (MM_E_NUMERIC naming sample and
 * feature for a NaN or infinite input; no label written). Never blocks on the server
 * (inference itself allocates scratch for large batches). Thread-safe. */
MM_API mm_status mm_server_predict(mm_server *s, const float *x, size_t n, int32_t *labels,
                                   uint64_t *version);

/* acquire + mm_model_forward + release: out[n x output_dim] raw outputs of
 * one snapshot. Errors as mm_model_forward. Thread-safe. */
MM_API mm_status mm_server_forward(mm_server *s, const float *x, size_t n, float *out,
                                   uint64_t *version);

/* The version currently published (0 for NULL). Thread-safe. */
MM_API uint64_t mm_server_version(const mm_server *s);

/* Snapshots acquired and not yet released, over all versions (0 for NULL).
 * Thread-safe; the value may be stale by the time it is read. */
MM_API uint64_t mm_server_outstanding(const mm_server *s);

/* Snapshots currently alive (the published one plus old ones still held by
 * readers; 0 for NULL). Thread-safe; may be stale. */
MM_API uint64_t mm_server_live_snapshots(const mm_server *s);

#ifdef __cplusplus
}
#endif
#endif /* MM_SERVER_H */
