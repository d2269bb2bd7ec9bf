/* common/: status list, thread-local messages, checked allocation, PRNG,
 * portable math. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/mm_internal.h"
#include "common/pmath.h"
#include "testutil.h"

START_TEST(status_names_and_strings) {
#define CHECK_ONE(name, value, msg)                      \
    ck_assert_str_eq(mm_status_name(name), #name);       \
    ck_assert_str_eq(mm_status_string(name), msg);       \
    ck_assert_int_eq((int)name, value);
    MM_STATUS_LIST(CHECK_ONE)
#undef CHECK_ONE
    ck_assert_str_eq(mm_status_name((mm_status)12345), "MM_E_UNKNOWN");
}
END_TEST

START_TEST(error_messages) {
    mm_clear_error();
    ck_assert_str_eq(mm_last_error_message(), "");
    ck_assert_int_eq(mm_last_error(), MM_OK);
    ck_assert_int_eq(mm_error(MM_E_SHAPE, "layer %d expects %d inputs, got %d", 2, 256, 255),
                     MM_E_SHAPE);
    ck_assert_str_eq(mm_last_error_message(), "layer 2 expects 256 inputs, got 255");
    ck_assert_int_eq(mm_error_prefix(MM_E_FORMAT, "loading %s", "a.mmf"), MM_E_FORMAT);
    ck_assert_str_eq(mm_last_error_message(), "loading a.mmf: layer 2 expects 256 inputs, got 255");
    ck_assert_int_eq(mm_last_error(), MM_E_FORMAT);
    /* Very long messages are truncated, not overflowed. */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mm_error(MM_E_IO, "%s", big);
    mm_error_prefix(MM_E_IO, "%s", big);
    ck_assert_uint_lt(strlen(mm_last_error_message()), 1024);
}
END_TEST

static void *other_thread(void *arg) {
    (void)arg;
    /* A fresh thread sees no error, and its error does not leak out. */
    int clean = strcmp(mm_last_error_message(), "") == 0;
    mm_error(MM_E_IO, "thread error");
    return clean ? (void *)1 : NULL;
}

START_TEST(messages_are_thread_local) {
    mm_error(MM_E_SHAPE, "main thread error");
    pthread_t t;
    void *ret;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &ret);
    ck_assert_ptr_nonnull(ret);
    ck_assert_str_eq(mm_last_error_message(), "main thread error");
}
END_TEST

START_TEST(checked_allocation) {
    ck_assert_ptr_null(mm_malloc_array(SIZE_MAX / 2, 4));
    ck_assert_ptr_null(mm_alloc_floats(SIZE_MAX / 2));
    float *p = mm_alloc_floats_zero(17);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 17; i++) ck_assert_float_eq(p[i], 0.0f);
    mm_free_floats(p);
    size_t out;
    ck_assert(!mm_mul_ok(SIZE_MAX, 2, &out));
    ck_assert(mm_mul_ok(3, 5, &out) && out == 15);
}
END_TEST

/* The PRNG stream is part of the file/seed contract: same seed, same
 * weights on every platform. Golden values of xoshiro256** seeded by
 * splitmix64(0), computed independently. */
START_TEST(rng_golden_stream) {
    mm_rng r;
    mm_rng_seed(&r, 0);
    /* splitmix64 from 0 gives the state; verify the state words too. */
    ck_assert_uint_eq(r.s[0], 0xE220A8397B1DCDAFULL);
    ck_assert_uint_eq(r.s[1], 0x6E789E6AA1B965F4ULL);
    ck_assert_uint_eq(r.s[2], 0x06C45D188009454FULL);
    ck_assert_uint_eq(r.s[3], 0xF88BB8A8724C81ECULL);
    /* First outputs, from a Python transcription of the reference code. */
    ck_assert_uint_eq(mm_rng_next(&r), 0x99EC5F36CB75F2B4ULL);
    ck_assert_uint_eq(mm_rng_next(&r), 0xBF6E1F784956452AULL);
    ck_assert_uint_eq(mm_rng_next(&r), 0x1A5F849D4933E6E0ULL);
    mm_rng a, b;
    mm_rng_seed(&a, 42);
    mm_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(mm_rng_next(&a), mm_rng_next(&b));
}
END_TEST

START_TEST(rng_distributions) {
    mm_rng r;
    mm_rng_seed(&r, 7);
    double sum = 0, sum2 = 0;
    int counts[10] = {0};
    enum { N = 200000 };
    for (int i = 0; i < N; i++) {
        float u = mm_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        double z = mm_rng_normal(&r);
        sum += z;
        sum2 += z * z;
        counts[mm_rng_below(&r, 10)]++;
    }
    ck_assert_double_eq_tol(sum / N, 0.0, 0.01);
    ck_assert_double_eq_tol(sum2 / N, 1.0, 0.02);
    for (int i = 0; i < 10; i++) ck_assert_int_gt(counts[i], N / 10 - 1500);
    uint32_t idx[100];
    for (uint32_t i = 0; i < 100; i++) idx[i] = i;
    mm_rng_shuffle_u32(&r, idx, 100);
    int seen[100] = {0}, moved = 0;
    for (uint32_t i = 0; i < 100; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 100; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_int_gt(moved, 50);
}
END_TEST

/* Portable math (common/pmath.h): accuracy against libm's double functions
 * over a sweep, special values, and fixed bit patterns (the same on every
 * platform: scripts/cross-test.sh checks them through whole models). */
static double ulps_from(float got, double want) {
    float w = (float)want;
    float step = nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / (double)step;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

START_TEST(portable_math) {
    double worst_exp = 0, worst_tanh = 0;
    for (float x = -87.0f; x < 88.5f; x += 0.0123f) {
        double u = ulps_from(mm_pexpf(x), exp((double)x));
        worst_exp = u > worst_exp ? u : worst_exp;
    }
    for (float x = -12.0f; x < 12.0f; x += 0.00037f) {
        float t = mm_ptanhf(x);
        double u = ulps_from(t, tanh((double)x));
        worst_tanh = u > worst_tanh ? u : worst_tanh;
        ck_assert(bits_of(mm_ptanhf(-x)) == bits_of(-t)); /* odd */
    }
    for (float x = 1e-9f; x < 1.0f; x *= 1.07f) {
        double u = ulps_from(mm_ptanhf(x), tanh((double)x));
        worst_tanh = u > worst_tanh ? u : worst_tanh;
    }
    ck_assert_double_le(worst_exp, 0.501);
    ck_assert_double_le(worst_tanh, 0.501);
    for (double t = 0.0; t <= 1.0; t += 1.0 / 4096 + 1e-7)
        ck_assert_double_eq_tol(mm_pcos2pi(t), cos(6.283185307179586 * t), 1e-15);
    for (double x = 1e-300; x < 1e300; x *= 1.93)
        ck_assert_double_eq_tol(mm_plog(x) / log(x), 1.0, 1e-15);
    ck_assert(mm_plog(1.0) == 0.0);
    for (double x = 0.01; x < 1.0; x += 0.0137) /* Adam bias corrections, schedules */
        for (double y = 1; y < 20000; y *= 1.7) {
            double want = pow(x, y), got = mm_ppow(x, y);
            if (want < 1e-290) ck_assert(got < 1e-280);
            else ck_assert_double_eq_tol(got / want, 1.0, 1e-15 * (1.0 + fabs(y * log(x))));
        }
    ck_assert(mm_ppow(0.0, 3.0) == 0.0 && mm_ppow(0.0, 0.0) == 1.0 && mm_ppow(0.5, 0.0) == 1.0);
    ck_assert(mm_ppow(1.0, 12345.0) == 1.0 && mm_ppow(2.0, 10.0) == 1024.0);

    /* special values */
    ck_assert(isnan(mm_pexpf(NAN)) && isnan(mm_ptanhf(NAN)) && isnan(mm_pexp(NAN)));
    ck_assert(mm_pexpf(INFINITY) == INFINITY && mm_pexpf(-INFINITY) == 0.0f);
    ck_assert(mm_pexpf(88.8f) == INFINITY && mm_pexpf(-104.0f) == 0.0f);
    ck_assert(mm_pexpf(-103.0f) > 0.0f); /* subnormal, not flushed */
    ck_assert(mm_pexpf(0.0f) == 1.0f && mm_pexp(0.0) == 1.0);
    ck_assert(mm_ptanhf(INFINITY) == 1.0f && mm_ptanhf(-INFINITY) == -1.0f);
    ck_assert(mm_ptanhf(9.5f) == 1.0f && mm_ptanhf(8.0f) < 1.0f);
    ck_assert(bits_of(mm_ptanhf(-0.0f)) == bits_of(-0.0f));
    ck_assert(mm_plog(0.0) == -INFINITY && isnan(mm_plog(-1.0)) && mm_plog(INFINITY) == INFINITY);

    /* fixed results (correctly rounded values) */
    ck_assert_uint_eq(bits_of(mm_pexpf(1.0f)), 0x402df854u);   /* e */
    ck_assert_uint_eq(bits_of(mm_pexpf(-1.0f)), 0x3ebc5ab2u);  /* 1/e */
    ck_assert_uint_eq(bits_of(mm_ptanhf(0.5f)), 0x3eec9a9fu);
    ck_assert_uint_eq(bits_of(mm_ptanhf(-3.0f)), 0xbf7ebbe9u);
    /* pinned (glibc's values too): these feed the weight initialisation, so
     * a change here would change the weights of new models */
    ck_assert(mm_plog(0.1) == -0x1.26bb1bbb55515p+1);
    ck_assert(mm_pcos2pi(0.3) == -0x1.3c6ef372fe94ep-2);
}
END_TEST

static Suite *common_suite(void) {
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("common");
    tcase_add_test(tc, status_names_and_strings);
    tcase_add_test(tc, error_messages);
    tcase_add_test(tc, messages_are_thread_local);
    tcase_add_test(tc, checked_allocation);
    tcase_add_test(tc, rng_golden_stream);
    tcase_add_test(tc, rng_distributions);
    tcase_add_test(tc, portable_math);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(common_suite()); }
