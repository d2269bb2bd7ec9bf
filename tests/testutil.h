/* Small helpers shared by the Check suites. */
#ifndef MM_TESTUTIL_H
#define MM_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run one suite and return the process exit code. */
int mm_test_run(Suite *s);

/* Fill with uniform values in [lo, hi) from a simple deterministic LCG. */
void mm_test_fill(float *x, size_t n, uint64_t seed, float lo, float hi);

/* Max |a-b| over n values. */
double mm_test_max_abs_diff(const float *a, const float *b, size_t n);

/* A temporary file path (unique per process) under TMPDIR; caller frees. */
char *mm_test_tmp_path(const char *suffix);

/* Fashion-MNIST directory if its files are present, else NULL. */
const char *mm_test_fashion_dir(void);

#define MM_ASSERT_OK(expr)                                                                  \
    do {                                                                                   \
        mm_status st_ = (expr);                                                            \
        ck_assert_msg(st_ == MM_OK, "%s -> %s: %s", #expr, mm_status_name(st_),            \
                      mm_last_error_message());                                            \
    } while (0)

#define MM_ASSERT_STATUS(expr, want)                                                        \
    do {                                                                                   \
        mm_status st_ = (expr);                                                            \
        ck_assert_msg(st_ == (want), "%s -> %s (want %s): %s", #expr, mm_status_name(st_), \
                      mm_status_name(want), mm_last_error_message());                      \
    } while (0)

#endif
