/* int8 kernels (lib/kernels/int8.c): every ISA variant the machine has
 * against a naive int64 reference and against each other (bit-exact int32
 * accumulators, bit-exact quantized and dequantized outputs), tails of
 * every kind, extreme values, rounding and saturation at the uint8 edges,
 * NaN/Inf handling, packing, ISA selection. Buffers are allocated with
 * their exact sizes so AddressSanitizer sees any read or write past them. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/mm_internal.h"
#include "common/pmath.h"
#include "kernels/int8.h"
#include "testutil.h"

static const mm_int8_isa all_isas[] = {MM_INT8_ISA_PORTABLE, MM_INT8_ISA_AVX2,
                                       MM_INT8_ISA_AVX512VNNI};
#define N_ISAS 3

/* ---- helpers ------------------------------------------------------------- */

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill_w(mm_rng *r, int8_t *w, size_t count) {
    for (size_t i = 0; i < count; i++) w[i] = (int8_t)((int)mm_rng_below(r, 256) - 128);
}

static void fill_x(mm_rng *r, uint8_t *x, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] = (uint8_t)mm_rng_below(r, 256);
}

/* acc[s, o] = sum_i (x[s, i] - zp[s]) * w[o, i] in 64 bits. */
static void ref_gemm(const uint8_t *x, size_t n, size_t in, const int32_t *zp, size_t zstep,
                     const int8_t *w, size_t out, int64_t *acc) {
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < out; o++) {
            int64_t a = 0;
            for (size_t i = 0; i < in; i++)
                a += ((int64_t)x[s * in + i] - zp[s * zstep]) * (int64_t)w[o * in + i];
            acc[s * out + o] = a;
        }
}

/* Run mm_int8_gemm (zstep 0) or mm_int8_gemm_zp_rows (1) with every
 * available variant and compare with the reference. */
static void check_gemm(const uint8_t *x, size_t n, size_t in, const int32_t *zp, size_t zstep,
                       const int8_t *w, size_t out) {
    int64_t *ref = xmalloc(n * out * sizeof *ref);
    int32_t *acc = xmalloc(n * out * sizeof *acc);
    ref_gemm(x, n, in, zp, zstep, w, out, ref);
    mm_int8_packed *p = NULL;
    MM_ASSERT_OK(mm_int8_pack_weights(w, out, in, &p));
    for (int k = 0; k < N_ISAS; k++) {
        if (!mm_int8_isa_available(all_isas[k])) continue;
        MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
        memset(acc, 0x5a, n * out * sizeof *acc);
        if (zstep == 0) mm_int8_gemm(x, n, in, zp[0], p, acc);
        else mm_int8_gemm_zp_rows(x, n, in, zp, p, acc);
        for (size_t j = 0; j < n * out; j++) {
            ck_assert_msg(ref[j] >= INT32_MIN && ref[j] <= INT32_MAX, "reference overflows");
            if ((int64_t)acc[j] != ref[j])
                ck_abort_msg("%s: n=%zu in=%zu out=%zu zp=%d: acc[%zu,%zu] = %d, want %lld",
                             mm_int8_isa_name(all_isas[k]), n, in, out, (int)zp[0], j / out,
                             j % out, (int)acc[j], (long long)ref[j]);
        }
    }
    MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
    mm_int8_packed_free(p);
    free(ref);
    free(acc);
}

static void random_gemm(mm_rng *r, size_t n, size_t in, size_t out, bool per_row) {
    uint8_t *x = xmalloc(n * in);
    int8_t *w = xmalloc(out * in);
    int32_t *zp = xmalloc(n * sizeof *zp);
    fill_x(r, x, n * in);
    fill_w(r, w, out * in);
    for (size_t s = 0; s < n; s++) zp[s] = (int32_t)mm_rng_below(r, 256);
    check_gemm(x, n, in, zp, per_row ? 1 : 0, w, out);
    free(x);
    free(w);
    free(zp);
}

/* ---- ISA selection --------------------------------------------------------- */

START_TEST(test_isa_selection) {
    mm_int8_isa best = mm_int8_isa_best();
    ck_assert(mm_int8_isa_available(MM_INT8_ISA_PORTABLE));
    ck_assert(mm_int8_isa_available(best));
    ck_assert(!mm_int8_isa_available((mm_int8_isa)3));
    ck_assert(!mm_int8_isa_available((mm_int8_isa)-1));
    fprintf(stderr, "int8: best variant here: %s\n", mm_int8_isa_name(best));
#if defined(__x86_64__)
    __builtin_cpu_init();
    ck_assert_int_eq(mm_int8_isa_available(MM_INT8_ISA_AVX2),
                     __builtin_cpu_supports("avx2") ? 1 : 0);
#endif
    for (int k = 0; k < N_ISAS; k++) {
        mm_int8_isa parsed;
        MM_ASSERT_OK(mm_int8_isa_parse(mm_int8_isa_name(all_isas[k]), &parsed));
        ck_assert_int_eq(parsed, all_isas[k]);
        if (mm_int8_isa_available(all_isas[k])) {
            MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
            ck_assert_int_eq(mm_int8_isa_current(), all_isas[k]);
        } else {
            MM_ASSERT_STATUS(mm_int8_set_isa(all_isas[k]), MM_E_UNSUPPORTED);
        }
    }
    mm_int8_isa parsed;
    MM_ASSERT_STATUS(mm_int8_isa_parse("sse9", &parsed), MM_E_NOT_FOUND);
    MM_ASSERT_STATUS(mm_int8_set_isa((mm_int8_isa)7), MM_E_UNSUPPORTED);
    ck_assert_str_eq(mm_int8_isa_name((mm_int8_isa)7), "?");
}
END_TEST

/* MM_INT8_ISA caps the automatic choice (checked in a child process so the
 * environment change cannot leak). */
static int env_child(const char *value, mm_int8_isa want) {
    pid_t pid = fork();
    if (pid == 0) {
        if (value) setenv("MM_INT8_ISA", value, 1);
        else unsetenv("MM_INT8_ISA");
        mm_int8_isa_reset();
        _exit(mm_int8_isa_current() == want ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

START_TEST(test_isa_env) {
    mm_int8_isa best = mm_int8_isa_best();
    ck_assert_int_eq(env_child(NULL, best), 0);
    ck_assert_int_eq(env_child("portable", MM_INT8_ISA_PORTABLE), 0);
    ck_assert_int_eq(
        env_child("avx2", best < MM_INT8_ISA_AVX2 ? best : MM_INT8_ISA_AVX2), 0);
    ck_assert_int_eq(env_child("avx512vnni", best), 0);
    ck_assert_int_eq(env_child("nonsense", best), 0); /* ignored */
}
END_TEST

/* ---- packing --------------------------------------------------------------- */

START_TEST(test_pack) {
    mm_rng r;
    mm_rng_seed(&r, 1);
    static const size_t outs[] = {1, 3, 16, 17, 256};
    static const size_t ins[] = {1, 3, 4, 5, 784};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++) {
            size_t out = outs[a], in = ins[b];
            int8_t *w = xmalloc(out * in), *back = xmalloc(out * in);
            fill_w(&r, w, out * in);
            mm_int8_packed *p = NULL;
            MM_ASSERT_OK(mm_int8_pack_weights(w, out, in, &p));
            ck_assert_uint_eq(mm_int8_packed_out(p), out);
            ck_assert_uint_eq(mm_int8_packed_in(p), in);
            size_t pad_out = (out + 15) / 16 * 16, pad_in = (in + 3) / 4 * 4;
            ck_assert_uint_ge(mm_int8_packed_bytes(p), pad_out * pad_in + pad_out * 4);
            ck_assert_uint_le(mm_int8_packed_bytes(p), pad_out * pad_in + pad_out * 4 + 256);
            mm_int8_unpack_weights(p, back);
            ck_assert_mem_eq(w, back, out * in);
            for (size_t o = 0; o < out; o++) {
                int32_t sum = 0;
                for (size_t i = 0; i < in; i++) sum += w[o * in + i];
                ck_assert_int_eq(mm_int8_packed_row_sum(p, o), sum);
            }
            mm_int8_packed_free(p);
            free(w);
            free(back);
        }
    /* The model's first layer: 784 x 256 is 200704 bytes of weights. */
    int8_t *w = calloc(256 * 784, 1);
    mm_int8_packed *p = NULL;
    MM_ASSERT_OK(mm_int8_pack_weights(w, 256, 784, &p));
    ck_assert_uint_ge(mm_int8_packed_bytes(p), 256 * 784 + 256 * 4);
    ck_assert_uint_le(mm_int8_packed_bytes(p), 256 * 784 + 256 * 4 + 256);
    mm_int8_packed_free(p);
    /* Errors. */
    MM_ASSERT_STATUS(mm_int8_pack_weights(w, 0, 784, &p), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(p);
    MM_ASSERT_STATUS(mm_int8_pack_weights(w, 3, 0, &p), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_pack_weights(NULL, 3, 3, &p), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_pack_weights(w, 3, 3, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_pack_weights(w, 1, MM_INT8_MAX_IN + 1, &p), MM_E_OUT_OF_RANGE);
    mm_int8_packed_free(NULL);
    ck_assert_uint_eq(mm_int8_packed_bytes(NULL), 0);
    free(w);
}
END_TEST

/* ---- GEMM -------------------------------------------------------------------- */

static const size_t shape_dims[] = {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 127, 128, 255};
#define N_SHAPE_DIMS (sizeof shape_dims / sizeof shape_dims[0])
static const size_t batch_dims[] = {1, 2, 3, 5, 6, 7, 12, 13};
#define N_BATCH_DIMS (sizeof batch_dims / sizeof batch_dims[0])

/* Every (in, out) pair of the list with a few batch sizes each. */
START_TEST(test_gemm_shapes) {
    mm_rng r;
    mm_rng_seed(&r, 42 + (uint64_t)_i);
    size_t in = shape_dims[_i];
    for (size_t a = 0; a < N_SHAPE_DIMS; a++)
        for (size_t b = 0; b < N_BATCH_DIMS; b++)
            random_gemm(&r, batch_dims[b], in, shape_dims[a], (a + b) % 3 == 0);
}
END_TEST

/* The model's shapes (784-256-128-10) at batch 1, 7 and 256, and odd
 * widths around them. */
START_TEST(test_gemm_model_shapes) {
    mm_rng r;
    mm_rng_seed(&r, 7);
    static const size_t layers[][2] = {{784, 256}, {256, 128}, {128, 10},
                                       {785, 255}, {783, 129}, {1000, 33}};
    static const size_t ns[] = {1, 7, 256};
    for (size_t l = 0; l < 6; l++)
        for (size_t k = 0; k < 3; k++) {
            if (l >= 3 && ns[k] == 256) continue;
            random_gemm(&r, ns[k], layers[l][0], layers[l][1], k == 1);
        }
}
END_TEST

/* Extreme values: every product at its largest magnitude, zero points at
 * the edges, and the widest input the int32 accumulators allow. */
START_TEST(test_gemm_extremes) {
    static const size_t ins[] = {1, 3, 64, 785, MM_INT8_MAX_IN};
    static const int8_t wv[] = {-128, 127, 0, -1};
    static const uint8_t xv[] = {0, 255, 128, 1};
    static const int32_t zps[] = {0, 255, 128, 1};
    for (size_t a = 0; a < 5; a++) {
        size_t in = ins[a], out = a == 4 ? 17 : 33, n = 3;
        uint8_t *x = xmalloc(n * in);
        int8_t *w = xmalloc(out * in);
        for (size_t i = 0; i < 4; i++)
            for (size_t j = 0; j < 4; j++)
                for (size_t z = 0; z < 4; z++) {
                    if (in == MM_INT8_MAX_IN && (i + j + z) % 4 != 0) continue; /* time */
                    /* Rows of W alternate between constant rows of the edge
                     * values; samples are constant rows as well. */
                    for (size_t o = 0; o < out; o++)
                        memset(w + o * in, (unsigned char)wv[(i + o) % 4], in);
                    for (size_t s = 0; s < n; s++) memset(x + s * in, xv[(j + s) % 4], in);
                    int32_t zp = zps[z];
                    check_gemm(x, n, in, &zp, 0, w, out);
                }
        free(x);
        free(w);
    }
    /* The two largest magnitudes explicitly. */
    {
        size_t in = MM_INT8_MAX_IN, out = 2, n = 2;
        uint8_t *x = xmalloc(n * in);
        int8_t *w = xmalloc(out * in);
        memset(x, 255, in);
        memset(x + in, 0, in);
        memset(w, (unsigned char)(int8_t)-128, in);
        memset(w + in, 127, in);
        mm_int8_packed *p = NULL;
        MM_ASSERT_OK(mm_int8_pack_weights(w, out, in, &p));
        int32_t acc[4];
        for (int k = 0; k < N_ISAS; k++) {
            if (!mm_int8_isa_available(all_isas[k])) continue;
            MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
            mm_int8_gemm(x, n, in, 0, p, acc);
            ck_assert_int_eq(acc[0], -255 * 128 * 65536);
            ck_assert_int_eq(acc[1], 255 * 127 * 65536);
            ck_assert_int_eq(acc[2], 0);
            mm_int8_gemm(x, n, in, 255, p, acc);
            ck_assert_int_eq(acc[0], 0);
            ck_assert_int_eq(acc[2], 255 * 128 * 65536); /* (0 - 255) * -128 */
            ck_assert_int_eq(acc[3], -255 * 127 * 65536);
        }
        MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
        mm_int8_packed_free(p);
        free(x);
        free(w);
    }
}
END_TEST

/* n == 0 writes nothing; the output rows past out are never touched. */
START_TEST(test_gemm_bounds) {
    mm_rng r;
    mm_rng_seed(&r, 3);
    size_t in = 37, out = 21, n = 9;
    uint8_t *x = xmalloc(n * in);
    int8_t *w = xmalloc(out * in);
    fill_x(&r, x, n * in);
    fill_w(&r, w, out * in);
    mm_int8_packed *p = NULL;
    MM_ASSERT_OK(mm_int8_pack_weights(w, out, in, &p));
    int32_t *acc = xmalloc((n * out + 64) * sizeof *acc);
    for (int k = 0; k < N_ISAS; k++) {
        if (!mm_int8_isa_available(all_isas[k])) continue;
        MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
        for (size_t j = 0; j < n * out + 64; j++) acc[j] = 0x12345678;
        mm_int8_gemm(x, 0, in, 7, p, acc);
        ck_assert_int_eq(acc[0], 0x12345678);
        mm_int8_gemm(x, n, in, 7, p, acc);
        for (size_t j = n * out; j < n * out + 64; j++) ck_assert_int_eq(acc[j], 0x12345678);
    }
    MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
    mm_int8_packed_free(p);
    free(acc);
    free(x);
    free(w);
}
END_TEST

/* ---- quantization -------------------------------------------------------------- */

/* Quantize with every variant; all must agree; returns the status of the
 * portable one (all must return the same). */
static mm_status quant_all(const float *x, size_t n, size_t in, float scale, int32_t zp,
                           uint8_t *q) {
    size_t cnt = n * in;
    uint8_t *other = xmalloc(cnt);
    MM_ASSERT_OK(mm_int8_set_isa(MM_INT8_ISA_PORTABLE));
    mm_status st = mm_int8_quantize_rows(x, n, in, scale, zp, q);
    for (int k = 1; k < N_ISAS; k++) {
        if (!mm_int8_isa_available(all_isas[k])) continue;
        MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
        memset(other, 0xA5, cnt);
        ck_assert_int_eq(mm_int8_quantize_rows(x, n, in, scale, zp, other), st);
        for (size_t i = 0; i < cnt; i++)
            if (other[i] != q[i])
                ck_abort_msg("%s: quantize(%a / %g + %d) = %u, portable %u",
                             mm_int8_isa_name(all_isas[k]), (double)x[i], (double)scale,
                             (int)zp, other[i], q[i]);
    }
    MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
    free(other);
    return st;
}

START_TEST(test_quantize_rounding) {
    /* scale 1: round half to even, then + zp, then clamp. */
    const float x[] = {0.0f, -0.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f,
                       126.5f, 127.5f, -127.5f, -128.5f, 254.5f, 255.5f, 1e30f, -1e30f, 3.0f};
    const size_t cnt = sizeof x / sizeof x[0];
    uint8_t q[sizeof x / sizeof x[0]];
    MM_ASSERT_OK(quant_all(x, 1, cnt, 1.0f, 0, q));
    const uint8_t want0[] = {0, 0, 0, 2, 2, 0, 0, 0, 0, 126, 128, 0, 0, 254, 255, 255, 0, 3};
    ck_assert_mem_eq(q, want0, cnt);
    MM_ASSERT_OK(quant_all(x, 1, cnt, 1.0f, 128, q));
    const uint8_t want128[] = {128, 128, 128, 130, 130, 128, 126, 126, 128,
                               254, 255, 0,   0,   255, 255, 255, 0,   131};
    ck_assert_mem_eq(q, want128, cnt);
    MM_ASSERT_OK(quant_all(x, 1, cnt, 1.0f, 255, q));
    const uint8_t want255[] = {255, 255, 255, 255, 255, 255, 253, 253, 255,
                               255, 255, 127, 127, 255, 255, 255, 0,   255};
    ck_assert_mem_eq(q, want255, cnt);
    /* scale 0.5: x / 0.5 = 2x, exact; 0.25 -> 0.5 -> 0; 0.75 -> 1.5 -> 2. */
    const float y[] = {0.25f, 0.75f, 1.25f, -0.25f, -0.75f, 63.75f};
    uint8_t qy[6];
    MM_ASSERT_OK(quant_all(y, 2, 3, 0.5f, 10, qy));
    const uint8_t wanty[] = {10, 12, 12, 10, 8, 138};
    ck_assert_mem_eq(qy, wanty, 6);
}
END_TEST

START_TEST(test_quantize_nonfinite) {
    float x[37];
    for (size_t i = 0; i < 37; i++) x[i] = (float)i - 18.0f;
    uint8_t q[37];
    MM_ASSERT_OK(quant_all(x, 1, 37, 1.0f, 100, q));
    /* One non-finite value at each position in turn, in a row with a tail
     * for every vector width. */
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    const uint8_t want[] = {100, 100, 255, 0};
    for (size_t b = 0; b < 4; b++)
        for (size_t pos = 0; pos < 37; pos += 6) {
            float y[37];
            memcpy(y, x, sizeof x);
            y[pos] = bad[b];
            uint8_t qb[37];
            MM_ASSERT_STATUS(quant_all(y, 1, 37, 1.0f, 100, qb), MM_E_NUMERIC);
            for (size_t i = 0; i < 37; i++)
                ck_assert_uint_eq(qb[i], i == pos ? want[b] : q[i]);
        }
}
END_TEST

START_TEST(test_quantize_random_agree) {
    mm_rng r;
    mm_rng_seed(&r, 11);
    static const size_t lens[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 784, 4099};
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        size_t cnt = lens[l];
        float *x = xmalloc(cnt * sizeof *x);
        uint8_t *q = xmalloc(cnt);
        for (int rep = 0; rep < 4; rep++) {
            float scale = 0.013f * (float)(rep + 1);
            int32_t zp = (int32_t)mm_rng_below(&r, 256);
            for (size_t i = 0; i < cnt; i++) {
                /* Many exact half-way points, values out of range too. */
                float k = (float)((int)mm_rng_below(&r, 1200) - 600) * 0.5f;
                x[i] = (i % 3 == 0) ? k * scale : (mm_rng_uniform(&r) - 0.5f) * 800.0f * scale;
            }
            MM_ASSERT_OK(quant_all(x, 1, cnt, scale, zp, q));
            /* Against the definition (x * (1/scale) rounded half to even). */
            float inv = 1.0f / scale;
            for (size_t i = 0; i < cnt; i++) {
                float v = nearbyintf(x[i] * inv) + (float)zp;
                int want = v < 0 ? 0 : v > 255 ? 255 : (int)v;
                ck_assert_int_eq(q[i], want);
            }
        }
        free(x);
        free(q);
    }
}
END_TEST

START_TEST(test_quantize_args) {
    float x[2] = {1, 2};
    uint8_t q[2] = {9, 9};
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, 0.0f, 0, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, -1.0f, 0, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, NAN, 0, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, INFINITY, 0, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, 1e-45f, 0, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, 1.0f, -1, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(x, 1, 2, 1.0f, 256, q), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_quantize_rows(NULL, 1, 2, 1.0f, 0, q), MM_E_INVALID_ARGUMENT);
    ck_assert_uint_eq(q[0], 9);
    MM_ASSERT_OK(mm_int8_quantize_rows(x, 0, 2, 1.0f, 0, q));
    ck_assert_uint_eq(q[0], 9);
}
END_TEST

START_TEST(test_choose_params) {
    float s;
    int32_t zp;
    MM_ASSERT_OK(mm_int8_choose_params(0.0f, 0.0f, false, &s, &zp));
    ck_assert(s == 1.0f && zp == 0);
    MM_ASSERT_OK(mm_int8_choose_params(-0.0f, 0.0f, true, &s, &zp));
    ck_assert(s == 1.0f && zp == 128);
    MM_ASSERT_OK(mm_int8_choose_params(-1.0f, 1.0f, false, &s, &zp));
    ck_assert(s == (float)(2.0 / 255.0) && zp == (int)nearbyintf(1.0f / s));
    MM_ASSERT_OK(mm_int8_choose_params(2.0f, 5.1f, false, &s, &zp));
    ck_assert(s == (float)(5.1f / 255.0) && zp == 0);   /* widened to [0, 5.1] */
    MM_ASSERT_OK(mm_int8_choose_params(-5.1f, -2.0f, false, &s, &zp));
    ck_assert(s == (float)(5.1f / 255.0) && zp == 255); /* [-5.1, 0] */
    MM_ASSERT_OK(mm_int8_choose_params(-3.0f, 1.0f, false, &s, &zp));
    ck_assert_int_eq(zp, (int)nearbyintf(3.0f / s));
    MM_ASSERT_OK(mm_int8_choose_params(-3.0f, 1.0f, true, &s, &zp));
    ck_assert(s == (float)(3.0 / 127.5) && zp == 128);
    MM_ASSERT_OK(mm_int8_choose_params(-FLT_MAX, FLT_MAX, false, &s, &zp));
    ck_assert(isfinite(s) && s > 0 && (zp == 127 || zp == 128));
    MM_ASSERT_OK(mm_int8_choose_params(0.0f, 1e-40f, false, &s, &zp)); /* 1/scale overflows */
    ck_assert(s == 1.0f && zp == 0);
    MM_ASSERT_STATUS(mm_int8_choose_params(NAN, 1.0f, false, &s, &zp), MM_E_NUMERIC);
    MM_ASSERT_STATUS(mm_int8_choose_params(0.0f, INFINITY, false, &s, &zp), MM_E_NUMERIC);
    MM_ASSERT_STATUS(mm_int8_choose_params(2.0f, 1.0f, false, &s, &zp), MM_E_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_quantize_dynamic) {
    mm_rng r;
    mm_rng_seed(&r, 5);
    static const size_t shapes[][2] = {{1, 1}, {1, 784}, {3, 17}, {256, 784}, {5, 10}};
    for (size_t t = 0; t < 5; t++) {
        size_t n = shapes[t][0], in = shapes[t][1], cnt = n * in;
        float *x = xmalloc(cnt * sizeof *x);
        uint8_t *q = xmalloc(cnt), *q2 = xmalloc(cnt);
        float *sc = xmalloc(n * sizeof *sc), *sc2 = xmalloc(n * sizeof *sc2);
        int32_t *zp = xmalloc(n * sizeof *zp), *zp2 = xmalloc(n * sizeof *zp2);
        for (size_t i = 0; i < cnt; i++)
            x[i] = (mm_rng_uniform(&r) - 0.3f) * (float)(1 + (i / in) % 4);
        for (int per_row = 0; per_row < 2; per_row++) {
            size_t np = per_row ? n : 1;
            MM_ASSERT_OK(mm_int8_set_isa(MM_INT8_ISA_PORTABLE));
            MM_ASSERT_OK(mm_int8_quantize_dynamic(x, n, in, per_row, q, sc, zp));
            for (int k = 1; k < N_ISAS; k++) {
                if (!mm_int8_isa_available(all_isas[k])) continue;
                MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
                MM_ASSERT_OK(mm_int8_quantize_dynamic(x, n, in, per_row, q2, sc2, zp2));
                ck_assert_mem_eq(q, q2, cnt);
                ck_assert_mem_eq(sc, sc2, np * sizeof *sc);
                ck_assert_mem_eq(zp, zp2, np * sizeof *zp);
            }
            /* Same as choose_params + quantize_rows on the observed range;
             * the round trip error is at most half a step. */
            for (size_t s = 0; s < np; s++) {
                const float *xs = x + s * (per_row ? in : 0);
                size_t len = per_row ? in : cnt;
                float lo = xs[0], hi = xs[0];
                for (size_t i = 0; i < len; i++) {
                    lo = fminf(lo, xs[i]);
                    hi = fmaxf(hi, xs[i]);
                }
                float s1;
                int32_t z1;
                MM_ASSERT_OK(mm_int8_choose_params(lo, hi, false, &s1, &z1));
                ck_assert(s1 == sc[s] && z1 == zp[s]);
                MM_ASSERT_OK(mm_int8_quantize_rows(xs, 1, len, s1, z1, q2));
                ck_assert_mem_eq(q2, q + s * (per_row ? in : 0), len);
                for (size_t i = 0; i < len; i++) {
                    float back = s1 * (float)((int)q2[i] - z1);
                    ck_assert_msg(fabsf(back - xs[i]) <= 0.5001f * s1 + 1e-7f,
                                  "round trip %g -> %g (scale %g)", (double)xs[i],
                                  (double)back, (double)s1);
                }
            }
        }
        /* A NaN or Inf anywhere: refused, nothing written. */
        x[cnt / 2] = t % 2 ? NAN : -INFINITY;
        for (int k = 0; k < N_ISAS; k++) {
            if (!mm_int8_isa_available(all_isas[k])) continue;
            MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
            for (int per_row = 0; per_row < 2; per_row++) {
                memset(q2, 0xA5, cnt);
                sc2[0] = 42.0f;
                zp2[0] = 42;
                MM_ASSERT_STATUS(mm_int8_quantize_dynamic(x, n, in, per_row, q2, sc2, zp2),
                                 MM_E_NUMERIC);
                for (size_t i = 0; i < cnt; i++) ck_assert_uint_eq(q2[i], 0xA5);
                ck_assert(sc2[0] == 42.0f && zp2[0] == 42);
            }
        }
        MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
        free(x);
        free(q);
        free(q2);
        free(sc);
        free(sc2);
        free(zp);
        free(zp2);
    }
}
END_TEST

/* ---- output stage ----------------------------------------------------------------- */

static float ref_out(int32_t acc, float xs, float ws, const float *b, size_t o,
                     mm_activation act, float slope) {
    float s = xs * ws;
    float t = (float)acc * s;
    if (b) t = t + b[o];
    switch (act) {
    case MM_ACT_IDENTITY:
        break;
    case MM_ACT_RELU:
        t = t < 0.0f ? 0.0f : t;
        break;
    case MM_ACT_LEAKY_RELU:
        t = t > 0.0f ? t : slope * t;
        break;
    case MM_ACT_TANH:
        t = mm_ptanhf(t);
        break;
    case MM_ACT_SIGMOID:
        t = 1.0f / (1.0f + mm_pexpf(-t));
        break;
    }
    return t;
}

START_TEST(test_dequant_requant) {
    mm_rng r;
    mm_rng_seed(&r, 9);
    static const size_t outs[] = {1, 7, 8, 9, 15, 16, 17, 33, 256, 300};
    const size_t n = 3;
    for (size_t oi = 0; oi < 10; oi++) {
        size_t out = outs[oi], cnt = n * out;
        int32_t *acc = xmalloc(cnt * sizeof *acc);
        float *ws = xmalloc(out * sizeof *ws), *b = xmalloc(out * sizeof *b);
        float *y = xmalloc(cnt * sizeof *y), *y2 = xmalloc(cnt * sizeof *y2);
        uint8_t *yq = xmalloc(cnt), *yq2 = xmalloc(cnt);
        float xs[3] = {0.02f, 0.013f, 1e-3f};
        for (size_t j = 0; j < cnt; j++)
            acc[j] = (int32_t)mm_rng_below(&r, 400001) - 200000 + (j % 11 == 0 ? 1 << 28 : 0);
        acc[0] = INT32_MIN;
        if (cnt > 1) acc[1] = INT32_MAX;
        for (size_t o = 0; o < out; o++) {
            ws[o] = 1e-3f * (1.0f + mm_rng_uniform(&r));
            b[o] = mm_rng_uniform(&r) - 0.5f;
        }
        for (int act = MM_ACT_IDENTITY; act <= MM_ACT_SIGMOID; act++)
            for (int variant = 0; variant < 4; variant++) {
                mm_int8_epilogue e = {variant & 1 ? xs : xs + 1, variant & 1 ? n : 1, ws,
                                      variant & 2 ? b : NULL, (mm_activation)act, 0.1f};
                float ys = 0.05f;
                int32_t yzp = act == MM_ACT_RELU ? 0 : 128;
                for (int k = 0; k < N_ISAS; k++) {
                    if (!mm_int8_isa_available(all_isas[k])) continue;
                    MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
                    MM_ASSERT_OK(mm_int8_dequant_bias_act(acc, n, out, &e, y));
                    for (size_t j = 0; j < cnt; j++) {
                        size_t s = j / out, o = j % out;
                        float want = ref_out(acc[j], e.x_scale[e.x_scale_count == 1 ? 0 : s],
                                             ws[o], e.bias, o, e.act, e.slope);
                        if (memcmp(&want, &y[j], sizeof want) != 0)
                            ck_abort_msg("%s act %d variant %d out %zu: y[%zu] = %a, want %a",
                                         mm_int8_isa_name(all_isas[k]), act, variant, out, j,
                                         (double)y[j], (double)want);
                    }
                    /* requantize == quantize(dequant) bit for bit */
                    MM_ASSERT_OK(mm_int8_requantize(acc, n, out, &e, ys, yzp, yq));
                    MM_ASSERT_OK(mm_int8_quantize_rows(y, n, out, ys, yzp, yq2));
                    ck_assert_mem_eq(yq, yq2, cnt);
                    if (k == 0) {
                        memcpy(y2, y, cnt * sizeof *y);
                    } else {
                        ck_assert_mem_eq(y, y2, cnt * sizeof *y);
                    }
                }
            }
        /* Saturation of requantize: huge accumulators clamp to 0 / 255. */
        {
            mm_int8_epilogue e = {xs, 1, ws, NULL, MM_ACT_IDENTITY, 0.0f};
            for (int k = 0; k < N_ISAS; k++) {
                if (!mm_int8_isa_available(all_isas[k])) continue;
                MM_ASSERT_OK(mm_int8_set_isa(all_isas[k]));
                MM_ASSERT_OK(mm_int8_requantize(acc, n, out, &e, 1e-6f, 3, yq));
                ck_assert_uint_eq(yq[0], 0);
                if (cnt > 1) ck_assert_uint_eq(yq[1], 255);
                /* A NaN scale product gives NaN outputs: zero point, MM_E_NUMERIC. */
                float nan_ws = NAN;
                mm_int8_epilogue en = {xs, 1, &nan_ws, NULL, MM_ACT_IDENTITY, 0.0f};
                MM_ASSERT_STATUS(mm_int8_requantize(acc, 1, 1, &en, 1.0f, 3, yq), MM_E_NUMERIC);
                ck_assert_uint_eq(yq[0], 3);
                /* ... and NaN passes through relu and leaky relu, as in the model. */
                en.act = MM_ACT_RELU;
                MM_ASSERT_OK(mm_int8_dequant_bias_act(acc, 1, 1, &en, y));
                ck_assert(isnan(y[0]));
                en.act = MM_ACT_LEAKY_RELU;
                MM_ASSERT_OK(mm_int8_dequant_bias_act(acc, 1, 1, &en, y));
                ck_assert(isnan(y[0]));
            }
            MM_ASSERT_OK(mm_int8_set_isa(mm_int8_isa_best()));
        }
        free(acc);
        free(ws);
        free(b);
        free(y);
        free(y2);
        free(yq);
        free(yq2);
    }
    /* Argument errors. */
    int32_t a1 = 1;
    float one = 1.0f, y1;
    uint8_t q1;
    mm_int8_epilogue e = {&one, 2, &one, NULL, MM_ACT_IDENTITY, 0.0f};
    MM_ASSERT_STATUS(mm_int8_dequant_bias_act(&a1, 1, 1, &e, &y1), MM_E_INVALID_ARGUMENT);
    e.x_scale_count = 1;
    e.act = (mm_activation)9;
    MM_ASSERT_STATUS(mm_int8_dequant_bias_act(&a1, 1, 1, &e, &y1), MM_E_INVALID_ARGUMENT);
    e.act = MM_ACT_IDENTITY;
    e.w_scale = NULL;
    MM_ASSERT_STATUS(mm_int8_dequant_bias_act(&a1, 1, 1, &e, &y1), MM_E_INVALID_ARGUMENT);
    e.w_scale = &one;
    MM_ASSERT_STATUS(mm_int8_dequant_bias_act(&a1, 1, 1, NULL, &y1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_requantize(&a1, 1, 1, &e, 0.0f, 0, &q1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_int8_requantize(&a1, 1, 1, &e, 1.0f, 256, &q1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_int8_dequant_bias_act(&a1, 1, 1, &e, &y1));
    ck_assert(y1 == 1.0f);
    MM_ASSERT_OK(mm_int8_requantize(&a1, 1, 1, &e, 0.5f, 7, &q1));
    ck_assert_uint_eq(q1, 9);
}
END_TEST

/* ---- a whole quantized layer ------------------------------------------------------ */

/* float layer vs the int8 pipeline (per-channel symmetric weights, dynamic
 * activations): the error stays within the quantization error bound. */
START_TEST(test_quantized_layer_accuracy) {
    mm_rng r;
    mm_rng_seed(&r, 77);
    const size_t n = 8, in = 784, out = 256;
    float *x = xmalloc(n * in * sizeof *x), *w = xmalloc(out * in * sizeof *w);
    float *b = xmalloc(out * sizeof *b), *ws = xmalloc(out * sizeof *ws);
    float *y = xmalloc(n * out * sizeof *y);
    int8_t *wq = xmalloc(out * in);
    uint8_t *xq = xmalloc(n * in);
    int32_t *acc = xmalloc(n * out * sizeof *acc);
    for (size_t i = 0; i < n * in; i++) x[i] = mm_rng_uniform(&r); /* like pixels */
    for (size_t i = 0; i < out * in; i++) w[i] = (float)mm_rng_normal(&r) * 0.05f;
    for (size_t o = 0; o < out; o++) {
        b[o] = 0.1f * (mm_rng_uniform(&r) - 0.5f);
        float m = 0;
        for (size_t i = 0; i < in; i++) m = fmaxf(m, fabsf(w[o * in + i]));
        ws[o] = m / 127.0f;
        for (size_t i = 0; i < in; i++) wq[o * in + i] = (int8_t)nearbyintf(w[o * in + i] / ws[o]);
    }
    mm_int8_packed *p = NULL;
    MM_ASSERT_OK(mm_int8_pack_weights(wq, out, in, &p));
    float xs;
    int32_t zp;
    MM_ASSERT_OK(mm_int8_quantize_dynamic(x, n, in, false, xq, &xs, &zp));
    mm_int8_gemm(xq, n, in, zp, p, acc);
    mm_int8_epilogue e = {&xs, 1, ws, b, MM_ACT_RELU, 0.0f};
    MM_ASSERT_OK(mm_int8_dequant_bias_act(acc, n, out, &e, y));
    double max_err = 0, max_ref = 0;
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < out; o++) {
            double ref = b[o], bound = 0;
            for (size_t i = 0; i < in; i++) {
                ref += (double)x[s * in + i] * w[o * in + i];
                bound += 0.5 * xs * fabs(w[o * in + i]) + 0.5 * ws[o] * fabs(x[s * in + i]);
            }
            ref = ref < 0 ? 0 : ref;
            double err = fabs(ref - y[s * out + o]);
            ck_assert_msg(err <= bound * 1.01 + 1e-5, "error %g > bound %g", err, bound);
            max_err = fmax(max_err, err);
            max_ref = fmax(max_ref, fabs(ref));
        }
    ck_assert_msg(max_err < 0.05 * max_ref, "max error %g vs max output %g", max_err, max_ref);
    mm_int8_packed_free(p);
    free(x);
    free(w);
    free(b);
    free(ws);
    free(y);
    free(wq);
    free(xq);
    free(acc);
}
END_TEST

static Suite *int8_suite(void) {
    Suite *s = suite_create("int8");
    TCase *tc = tcase_create("isa");
    tcase_add_test(tc, test_isa_selection);
    tcase_add_test(tc, test_isa_env);
    suite_add_tcase(s, tc);
    tc = tcase_create("pack");
    tcase_add_test(tc, test_pack);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemm");
    tcase_add_loop_test(tc, test_gemm_shapes, 0, (int)N_SHAPE_DIMS);
    tcase_add_test(tc, test_gemm_model_shapes);
    tcase_add_test(tc, test_gemm_extremes);
    tcase_add_test(tc, test_gemm_bounds);
    suite_add_tcase(s, tc);
    tc = tcase_create("quantize");
    tcase_add_test(tc, test_quantize_rounding);
    tcase_add_test(tc, test_quantize_nonfinite);
    tcase_add_test(tc, test_quantize_random_agree);
    tcase_add_test(tc, test_quantize_args);
    tcase_add_test(tc, test_choose_params);
    tcase_add_test(tc, test_quantize_dynamic);
    suite_add_tcase(s, tc);
    tc = tcase_create("output");
    tcase_add_test(tc, test_dequant_requant);
    tcase_add_test(tc, test_quantized_layer_accuracy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(int8_suite()); }
