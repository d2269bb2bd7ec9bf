/* Kernel backend selection and the public backend API of mm_common.h.
 *
 * The current table is one atomic pointer. It is chosen on first use:
 * BLIS when built with it, overridden by MM_BACKEND=blis|reference (an
 * unknown value, or "blis" in a build without BLIS, keeps the default; the
 * library never prints). Threads racing on first use agree through a
 * compare-and-swap. Switching later (mm_backend_select) is a plain atomic
 * store: safe to race with readers, though a computation already running
 * finishes on the table it started with. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/mm_internal.h"
#include "kernels/kernels.h"

#define MM_MAX_THREADS 1024

static _Atomic(const mm_kernels *) g_current;
static atomic_int g_num_threads = 1;

const mm_kernels *mm_kernels_for(mm_backend backend) {
    switch (backend) {
    case MM_BACKEND_REFERENCE:
        return &mm_kernels_reference;
    case MM_BACKEND_BLIS:
#ifdef MM_HAVE_BLIS
        return &mm_kernels_blis;
#else
        return NULL;
#endif
    }
    return NULL;
}

static const mm_kernels *default_kernels(void) {
    const char *env = getenv("MM_BACKEND");
    if (env != NULL) {
        const mm_kernels *t = NULL;
        if (strcmp(env, "reference") == 0) t = mm_kernels_for(MM_BACKEND_REFERENCE);
        else if (strcmp(env, "blis") == 0) t = mm_kernels_for(MM_BACKEND_BLIS);
        if (t != NULL) return t;
    }
#ifdef MM_HAVE_BLIS
    return &mm_kernels_blis;
#else
    return &mm_kernels_reference;
#endif
}

/* Prepare a table for use before publishing it. For BLIS this applies our
 * thread count (default 1), so BLIS does not silently follow OMP_NUM_THREADS
 * or BLIS_NUM_THREADS from the environment. */
static void activate(const mm_kernels *t) {
#ifdef MM_HAVE_BLIS
    if (t->backend == MM_BACKEND_BLIS) mm_blis_set_threads(atomic_load(&g_num_threads));
#else
    (void)t;
#endif
}

const mm_kernels *mm_kernels_get(void) {
    const mm_kernels *t = atomic_load_explicit(&g_current, memory_order_acquire);
    if (t != NULL) return t;
    t = default_kernels();
    activate(t);
    const mm_kernels *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&g_current, &expected, t, memory_order_acq_rel,
                                                memory_order_acquire))
        return t;
    return expected; /* another thread (or mm_backend_select) got there first */
}

mm_status mm_backend_select(mm_backend backend) {
    if (backend != MM_BACKEND_REFERENCE && backend != MM_BACKEND_BLIS)
        return mm_error(MM_E_INVALID_ARGUMENT,
                        "unknown kernel backend %d (expected MM_BACKEND_REFERENCE=%d or "
                        "MM_BACKEND_BLIS=%d)",
                        (int)backend, (int)MM_BACKEND_REFERENCE, (int)MM_BACKEND_BLIS);
    const mm_kernels *t = mm_kernels_for(backend);
    if (t == NULL)
        return mm_error(MM_E_UNSUPPORTED,
                        "kernel backend \"blis\" is not available: mmaint was built without BLIS");
    activate(t);
    atomic_store_explicit(&g_current, t, memory_order_release);
    return MM_OK;
}

mm_backend mm_backend_current(void) { return mm_kernels_get()->backend; }

const char *mm_backend_name(void) { return mm_kernels_get()->name; }

mm_status mm_set_num_threads(int n) {
    if (n < 1 || n > MM_MAX_THREADS)
        return mm_error(MM_E_OUT_OF_RANGE, "number of threads must be in [1, %d], got %d",
                        MM_MAX_THREADS, n);
    atomic_store(&g_num_threads, n);
#ifdef MM_HAVE_BLIS
    mm_blis_set_threads(n);
#endif
    return MM_OK;
}
