/* Allocations of the calls a host makes per sample: batch-1 (and other
 * small-batch) inference must not allocate (mm_model_predict used to
 * allocate its logits on every call). Heap calls are counted per thread by
 * interposing malloc and friends (glibc: this executable's definitions win
 * over libc's for libmmaint and BLIS too) or, under AddressSanitizer, with
 * its allocation hooks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "testutil.h"

static _Thread_local size_t tl_allocs;
static _Thread_local int tl_counting;

static inline void counted(void) {
    if (tl_counting) tl_allocs++;
}

#if defined(__SANITIZE_ADDRESS__)
#  define HAVE_COUNTER 1
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n) {
    (void)p, (void)n;
    counted();
}
static void on_free(const volatile void *p) { (void)p; }
static void install_counter(void) { __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free); }
#elif defined(__GLIBC__)
#  define HAVE_COUNTER 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
void *malloc(size_t n) {
    counted();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    counted();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    counted();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    counted();
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n); /* <malloc.h>, obsolete */
void *memalign(size_t align, size_t n) {
    counted();
    return __libc_memalign(align, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
    counted();
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
static void install_counter(void) {}
#else
#  define HAVE_COUNTER 0
static void install_counter(void) {}
#endif

/* Heap allocations made by `reps` calls of fn after a warm-up call. */
typedef mm_status (*call_fn)(const mm_model *m, const float *x, size_t n, void *out);

static mm_status do_predict(const mm_model *m, const float *x, size_t n, void *out) {
    return mm_model_predict(m, x, n, out);
}
static mm_status do_forward(const mm_model *m, const float *x, size_t n, void *out) {
    return mm_model_forward(m, x, n, out);
}
static mm_status do_proba(const mm_model *m, const float *x, size_t n, void *out) {
    return mm_model_predict_proba(m, x, n, out);
}
static const int32_t *eval_labels;
static mm_status do_evaluate(const mm_model *m, const float *x, size_t n, void *out) {
    double *r = out;
    return mm_model_evaluate(m, x, eval_labels, NULL, n, &r[0], &r[1]);
}

static size_t allocs_of(call_fn fn, const mm_model *m, const float *x, size_t n, void *out,
                        int reps) {
    MM_ASSERT_OK(fn(m, x, n, out)); /* warm-up: one-time kernel set-up may allocate */
    mm_status st = MM_OK;
    tl_allocs = 0;
    tl_counting = 1;
    /* no Check assertion in here: a passing one allocates too (mark point) */
    for (int i = 0; i < reps && st == MM_OK; i++) st = fn(m, x, n, out);
    tl_counting = 0;
    MM_ASSERT_OK(st);
    return tl_allocs;
}

/* predict, forward, predict_proba and evaluate of a 784-256-128-10 model
 * allocate nothing at batch 1 and for batches whose activations fit the
 * stack scratch (up to 15 samples here); a large batch allocates once per
 * call. Before, predict and evaluate allocated on every call. The reference
 * kernels allocate nothing themselves; with BLIS only batch 1 is checked:
 * Debian's BLIS (OpenMP build) allocates inside libgomp on every sgemm call,
 * even with one thread, which no caller of BLIS can avoid. */
START_TEST(small_batch_inference_does_not_allocate) {
#if !HAVE_COUNTER
    fprintf(stderr, "SKIP: no allocation counter on this platform\n");
    return;
#endif
    install_counter();
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "784-256-128-10:relu", 42));
    enum { big = 300 };
    float *x = malloc(big * 784 * sizeof *x), *out = malloc(big * 10 * sizeof *out);
    int32_t *lab = malloc(big * sizeof *lab);
    mm_test_fill(x, big * 784, 3, 0, 1);
    for (size_t i = 0; i < big; i++) lab[i] = (int32_t)(i % 10);
    eval_labels = lab;
    double res[2];
    const mm_backend backends[2] = {MM_BACKEND_REFERENCE, MM_BACKEND_BLIS};
    for (int b = 0; b < 2; b++) {
        if (mm_backend_select(backends[b]) != MM_OK) continue; /* built without BLIS */
        const char *name = mm_backend_name();
        const size_t sizes[] = {1, 2, 15};
        const size_t nsizes = backends[b] == MM_BACKEND_BLIS ? 1 : 3;
        for (size_t t = 0; t < nsizes; t++) {
            const size_t n = sizes[t];
            size_t a;
            ck_assert_msg((a = allocs_of(do_predict, m, x, n, out, 50)) == 0,
                          "%s predict n=%zu: %zu allocations in 50 calls", name, n, a);
            ck_assert_msg((a = allocs_of(do_forward, m, x, n, out, 50)) == 0,
                          "%s forward n=%zu: %zu allocations in 50 calls", name, n, a);
            ck_assert_msg((a = allocs_of(do_proba, m, x, n, out, 50)) == 0,
                          "%s predict_proba n=%zu: %zu allocations in 50 calls", name, n, a);
            ck_assert_msg((a = allocs_of(do_evaluate, m, x, n, res, 50)) == 0,
                          "%s evaluate n=%zu: %zu allocations in 50 calls", name, n, a);
        }
        if (backends[b] == MM_BACKEND_BLIS) continue;
        /* forward alone keeps up to 16 samples of 2 x 256 activations */
        size_t a = allocs_of(do_forward, m, x, 16, out, 20);
        ck_assert_msg(a == 0, "%s forward n=16: %zu allocations", name, a);
        /* beyond the stack: one block per call, not one per chunk */
        a = allocs_of(do_predict, m, x, big, out, 10);
        ck_assert_msg(a == 10, "%s predict n=%d: %zu allocations in 10 calls", name, (int)big, a);
    }
    mm_backend_select(MM_BACKEND_BLIS);
    mm_clear_error();
    free(x), free(out), free(lab);
    mm_model_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("inference");
    tcase_add_test(tc, small_batch_inference_does_not_allocate);
    suite_add_tcase(s, tc);
    return mm_test_run(s);
}
