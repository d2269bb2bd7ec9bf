/* Check suite for mm_dataset: create/slice/normalise, IDX and CSV loaders
 * (valid, truncated, bit-flipped and absurd files), real Fashion-MNIST.
 * Fixtures are written to temporary files by the tests themselves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* The suite links only libmmaint, Check and libm, so it writes gzip files
 * itself: deflate "stored" blocks (RFC 1951 BTYPE 00) of at most `block`
 * bytes in a gzip member (RFC 1952) with its CRC-32 and length. zlib must
 * still parse the gzip framing, check the CRC and notice cut streams; real
 * deflate-compressed data is exercised with the Fashion-MNIST files. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_le32(FILE *f, uint32_t v) {
    for (int i = 0; i < 4; i++) fputc((int)((v >> (8 * i)) & 0xff), f);
}

static void write_gz(const char *path, const void *data, size_t len) {
    const size_t block = 16; /* several blocks even for small fixtures */
    const unsigned char *p = data;
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    fwrite(hdr, 1, sizeof hdr, f);
    size_t o = 0;
    do {
        size_t n = len - o < block ? len - o : block;
        int final = o + n == len;
        fputc(final ? 1 : 0, f);
        fputc((int)(n & 0xff), f);
        fputc((int)(n >> 8), f);
        fputc((int)(~n & 0xff), f);
        fputc((int)((~n >> 8) & 0xff), f);
        if (n) fwrite(p + o, 1, n, f);
        o += n;
    } while (o < len);
    put_le32(f, crc32_update(0, p, len));
    put_le32(f, (uint32_t)len);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static size_t put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

/* Build an IDX file in memory: header for `ndim` dims, then `data`. */
static size_t make_idx(unsigned char *buf, unsigned type, unsigned ndim, const uint32_t *dims,
                       const void *data, size_t data_len) {
    size_t o = 0;
    buf[o++] = 0;
    buf[o++] = 0;
    buf[o++] = (unsigned char)type;
    buf[o++] = (unsigned char)ndim;
    for (unsigned i = 0; i < ndim; i++) o += put_be32(buf + o, dims[i]);
    if (data_len) memcpy(buf + o, data, data_len);
    return o + data_len;
}

/* A small valid image set: 5 images of 3x2 bytes, labels 0..4 reversed. */
enum { SN = 5, SH = 3, SW = 2, SD = SH * SW };
static unsigned char small_pixels[SN * SD];
static unsigned char small_labels[SN];
static unsigned char small_img_file[256];
static size_t small_img_len;
static unsigned char small_lab_file[64];
static size_t small_lab_len;

static void make_small(void) {
    for (int i = 0; i < SN * SD; i++) small_pixels[i] = (unsigned char)(i * 37 % 256);
    small_pixels[0] = 0;
    small_pixels[1] = 255;
    for (int i = 0; i < SN; i++) small_labels[i] = (unsigned char)(SN - 1 - i);
    uint32_t d3[3] = {SN, SH, SW}, d1[1] = {SN};
    small_img_len = make_idx(small_img_file, 0x08, 3, d3, small_pixels, sizeof small_pixels);
    small_lab_len = make_idx(small_lab_file, 0x08, 1, d1, small_labels, sizeof small_labels);
}

static void check_small(const mm_dataset *ds, int with_labels) {
    ck_assert_uint_eq(mm_dataset_size(ds), SN);
    ck_assert_uint_eq(mm_dataset_dim(ds), SD);
    const float *x = mm_dataset_features(ds);
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq((uintptr_t)x % 64, 0);
    for (int i = 0; i < SN * SD; i++) ck_assert_float_eq_tol(x[i], small_pixels[i] / 255.0, 1e-7);
    ck_assert_float_eq(x[0], 0.0f);
    ck_assert_float_eq(x[1], 1.0f);
    if (with_labels) {
        const int32_t *y = mm_dataset_labels(ds);
        ck_assert_ptr_nonnull(y);
        for (int i = 0; i < SN; i++) ck_assert_int_eq(y[i], small_labels[i]);
        ck_assert_uint_eq(mm_dataset_num_classes(ds), SN);
    } else {
        ck_assert_ptr_null(mm_dataset_labels(ds));
        ck_assert_uint_eq(mm_dataset_num_classes(ds), 0);
    }
}

/* Load an images file (and the small labels file) expecting `want`; the
 * dataset pointer must stay NULL on failure. */
static mm_status load_bytes(const void *img, size_t img_len, const void *lab, size_t lab_len,
                            int gz) {
    char *ip = mm_test_tmp_path(gz ? "-img.gz" : "-img");
    char *lp = mm_test_tmp_path(gz ? "-lab.gz" : "-lab");
    if (gz) {
        write_gz(ip, img, img_len);
        if (lab) write_gz(lp, lab, lab_len);
    } else {
        write_file(ip, img, img_len);
        if (lab) write_file(lp, lab, lab_len);
    }
    mm_dataset *ds = (mm_dataset *)&ds; /* must be reset to NULL on failure */
    mm_status st = mm_dataset_load_idx(&ds, ip, lab ? lp : NULL);
    if (st == MM_OK) {
        ck_assert_ptr_nonnull(ds);
        mm_dataset_free(ds);
    } else {
        ck_assert_ptr_null(ds);
        ck_assert_str_ne(mm_last_error_message(), "");
    }
    unlink(ip);
    unlink(lp);
    free(ip);
    free(lp);
    return st;
}

/* ---- create / accessors / slice ----------------------------------------- */

START_TEST(test_create_and_accessors) {
    float x[12];
    int32_t y[4] = {0, 3, 1, 3};
    mm_test_fill(x, 12, 1, -1, 1);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, 4, 3));
    x[0] = 99; /* the dataset holds copies */
    y[0] = 7;
    ck_assert_uint_eq(mm_dataset_size(ds), 4);
    ck_assert_uint_eq(mm_dataset_dim(ds), 3);
    ck_assert_uint_eq(mm_dataset_num_classes(ds), 4);
    ck_assert_float_ne(mm_dataset_features(ds)[0], 99);
    ck_assert_int_eq(mm_dataset_labels(ds)[0], 0);
    ck_assert_uint_eq((uintptr_t)mm_dataset_features(ds) % 64, 0);
    mm_dataset_free(ds);

    MM_ASSERT_OK(mm_dataset_create(&ds, x, NULL, 4, 3));
    ck_assert_ptr_null(mm_dataset_labels(ds));
    ck_assert_uint_eq(mm_dataset_num_classes(ds), 0);
    mm_dataset_free(ds);

    mm_dataset_free(NULL);
    ck_assert_uint_eq(mm_dataset_size(NULL), 0);
    ck_assert_uint_eq(mm_dataset_dim(NULL), 0);
    ck_assert_ptr_null(mm_dataset_features(NULL));

    MM_ASSERT_STATUS(mm_dataset_create(NULL, x, y, 4, 3), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_dataset_create(&ds, NULL, y, 4, 3), MM_E_INVALID_ARGUMENT);
    ck_assert_ptr_null(ds);
    MM_ASSERT_STATUS(mm_dataset_create(&ds, x, y, 4, 0), MM_E_INVALID_ARGUMENT);
    y[2] = -1;
    MM_ASSERT_STATUS(mm_dataset_create(&ds, x, y, 4, 3), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_null(ds);
    MM_ASSERT_STATUS(mm_dataset_create(&ds, x, NULL, SIZE_MAX / 2, 3), MM_E_OUT_OF_RANGE);
    /* An empty dataset is valid. */
    MM_ASSERT_OK(mm_dataset_create(&ds, NULL, NULL, 0, 3));
    ck_assert_uint_eq(mm_dataset_size(ds), 0);
    mm_dataset_free(ds);
}
END_TEST

START_TEST(test_slice) {
    enum { N = 7, D = 3 };
    float x[N * D];
    int32_t y[N];
    for (int i = 0; i < N * D; i++) x[i] = (float)i;
    for (int i = 0; i < N; i++) y[i] = i % 3 == 0 ? 5 : i % 3;
    mm_dataset *ds, *s;
    MM_ASSERT_OK(mm_dataset_create(&ds, x, y, N, D));
    MM_ASSERT_OK(mm_dataset_slice(ds, 2, 3, &s));
    ck_assert_uint_eq(mm_dataset_size(s), 3);
    ck_assert_uint_eq(mm_dataset_dim(s), D);
    for (int i = 0; i < 3 * D; i++) ck_assert_float_eq(mm_dataset_features(s)[i], x[2 * D + i]);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(mm_dataset_labels(s)[i], y[2 + i]);
    ck_assert_uint_eq(mm_dataset_num_classes(s), 6); /* labels 2, 5, 1 */
    ck_assert_uint_eq((uintptr_t)mm_dataset_features(s) % 64, 0);
    mm_dataset_free(s);

    MM_ASSERT_OK(mm_dataset_slice(ds, 0, N, &s)); /* whole */
    ck_assert_double_eq(mm_test_max_abs_diff(mm_dataset_features(s), x, N * D), 0);
    mm_dataset_free(s);
    MM_ASSERT_OK(mm_dataset_slice(ds, N, 0, &s)); /* empty at the end */
    ck_assert_uint_eq(mm_dataset_size(s), 0);
    mm_dataset_free(s);

    s = (mm_dataset *)&s;
    MM_ASSERT_STATUS(mm_dataset_slice(ds, N + 1, 0, &s), MM_E_OUT_OF_RANGE);
    ck_assert_ptr_null(s);
    MM_ASSERT_STATUS(mm_dataset_slice(ds, 5, 3, &s), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_dataset_slice(ds, 1, SIZE_MAX, &s), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_dataset_slice(ds, SIZE_MAX, 2, &s), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(mm_dataset_slice(NULL, 0, 1, &s), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_dataset_slice(ds, 0, 1, NULL), MM_E_INVALID_ARGUMENT);
    mm_dataset_free(ds);
}
END_TEST

/* ---- normalisation ------------------------------------------------------ */

/* Per-feature mean and population std of a dataset, in double. */
static void column_stats(const mm_dataset *ds, size_t j, double *mean, double *sd, double *lo,
                         double *hi) {
    size_t n = mm_dataset_size(ds), d = mm_dataset_dim(ds);
    const float *x = mm_dataset_features(ds);
    double s = 0, ss = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = x[i * d + j];
        s += v;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) {
        double t = x[i * d + j] - *mean;
        ss += t * t;
    }
    *sd = sqrt(ss / (double)n);
}

enum { NN = 500, ND = 5 };
static void make_norm_data(float *x, uint64_t seed) {
    mm_test_fill(x, NN * ND, seed, 0, 1);
    for (int i = 0; i < NN; i++) {
        x[i * ND + 0] = 1000.0f + 50.0f * x[i * ND + 0]; /* large offset */
        x[i * ND + 1] = 1e-3f * x[i * ND + 1];          /* tiny scale */
        x[i * ND + 2] = -7.0f * x[i * ND + 2] + 3.0f;
        x[i * ND + 3] = 4.25f;                          /* constant */
    }
}

START_TEST(test_standardize) {
    float *x = malloc(NN * ND * sizeof(float)), *t = malloc(NN * ND * sizeof(float));
    make_norm_data(x, 11);
    make_norm_data(t, 12);
    mm_dataset *train, *test, *orig;
    MM_ASSERT_OK(mm_dataset_create(&train, x, NULL, NN, ND));
    MM_ASSERT_OK(mm_dataset_create(&orig, x, NULL, NN, ND));
    MM_ASSERT_OK(mm_dataset_create(&test, t, NULL, NN, ND));
    /* Normalise the test set with the training statistics (before train changes). */
    MM_ASSERT_OK(mm_dataset_standardize(test, train));
    MM_ASSERT_OK(mm_dataset_standardize(train, train));
    for (size_t j = 0; j < ND; j++) {
        double m, sd, lo, hi, om, osd;
        column_stats(train, j, &m, &sd, &lo, &hi);
        ck_assert_double_le(fabs(m), 1e-5);
        if (j == 3) {
            ck_assert_double_eq(sd, 0); /* constant feature: only centred */
            ck_assert_double_eq(lo, 0);
            ck_assert_double_eq(hi, 0);
        } else {
            ck_assert_double_le(fabs(sd - 1), 1e-5);
        }
        column_stats(orig, j, &om, &osd, &lo, &hi);
        if (osd == 0) osd = 1;
        for (size_t i = 0; i < NN; i++) {
            double want = (t[i * ND + j] - om) / osd;
            ck_assert_double_le(fabs(mm_dataset_features(test)[i * ND + j] - want),
                                1e-4 * (1 + fabs(want)));
        }
    }
    mm_dataset *other;
    MM_ASSERT_OK(mm_dataset_create(&other, x, NULL, NN / ND, ND * ND));
    MM_ASSERT_STATUS(mm_dataset_standardize(train, other), MM_E_SHAPE);
    MM_ASSERT_STATUS(mm_dataset_standardize(train, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_dataset_standardize(NULL, train), MM_E_INVALID_ARGUMENT);
    mm_dataset_free(other);
    /* NaN in the reference: error, and the target is left unchanged. */
    x[7 * ND + 2] = NAN;
    MM_ASSERT_OK(mm_dataset_create(&other, x, NULL, NN, ND));
    memcpy(t, mm_dataset_features(test), NN * ND * sizeof(float));
    MM_ASSERT_STATUS(mm_dataset_standardize(test, other), MM_E_NUMERIC);
    ck_assert_double_eq(mm_test_max_abs_diff(t, mm_dataset_features(test), NN * ND), 0);
    MM_ASSERT_STATUS(mm_dataset_minmax(test, other), MM_E_NUMERIC);
    mm_dataset_free(other);
    mm_dataset *empty;
    MM_ASSERT_OK(mm_dataset_create(&empty, NULL, NULL, 0, ND));
    MM_ASSERT_STATUS(mm_dataset_standardize(train, empty), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_OK(mm_dataset_standardize(empty, train));
    mm_dataset_free(empty);
    mm_dataset_free(train);
    mm_dataset_free(test);
    mm_dataset_free(orig);
    free(x);
    free(t);
}
END_TEST

START_TEST(test_minmax) {
    float *x = malloc(NN * ND * sizeof(float)), *t = malloc(NN * ND * sizeof(float));
    make_norm_data(x, 21);
    make_norm_data(t, 22);
    mm_dataset *train, *test, *orig;
    MM_ASSERT_OK(mm_dataset_create(&train, x, NULL, NN, ND));
    MM_ASSERT_OK(mm_dataset_create(&orig, x, NULL, NN, ND));
    MM_ASSERT_OK(mm_dataset_create(&test, t, NULL, NN, ND));
    MM_ASSERT_OK(mm_dataset_minmax(test, train));
    MM_ASSERT_OK(mm_dataset_minmax(train, train));
    for (size_t j = 0; j < ND; j++) {
        double m, sd, lo, hi, olo, ohi;
        column_stats(train, j, &m, &sd, &lo, &hi);
        ck_assert_double_eq(lo, 0);
        ck_assert_double_eq(hi, j == 3 ? 0 : 1);
        column_stats(orig, j, &m, &sd, &olo, &ohi);
        double range = ohi > olo ? ohi - olo : 1;
        for (size_t i = 0; i < NN; i++) {
            double want = (t[i * ND + j] - olo) / range;
            ck_assert_double_le(fabs(mm_dataset_features(test)[i * ND + j] - want),
                                1e-5 * (1 + fabs(want)));
        }
    }
    mm_dataset *other;
    MM_ASSERT_OK(mm_dataset_create(&other, x, NULL, NN / 2, ND * 2));
    MM_ASSERT_STATUS(mm_dataset_minmax(train, other), MM_E_SHAPE);
    mm_dataset_free(other);
    mm_dataset_free(train);
    mm_dataset_free(test);
    mm_dataset_free(orig);
    free(x);
    free(t);
}
END_TEST

/* ---- IDX ---------------------------------------------------------------- */

START_TEST(test_idx_plain_and_gzip) {
    make_small();
    for (int gz = 0; gz < 2; gz++) {
        char *ip = mm_test_tmp_path(gz ? "-img.gz" : "-img");
        char *lp = mm_test_tmp_path(gz ? "-lab.gz" : "-lab");
        if (gz) {
            write_gz(ip, small_img_file, small_img_len);
            write_gz(lp, small_lab_file, small_lab_len);
        } else {
            write_file(ip, small_img_file, small_img_len);
            write_file(lp, small_lab_file, small_lab_len);
        }
        mm_dataset *ds;
        MM_ASSERT_OK(mm_dataset_load_idx(&ds, ip, lp));
        check_small(ds, 1);
        mm_dataset_free(ds);
        MM_ASSERT_OK(mm_dataset_load_idx(&ds, ip, NULL));
        check_small(ds, 0);
        mm_dataset_free(ds);
        /* Swapped roles: a 1-d file is not an images file, a 3-d not labels. */
        MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, lp, NULL), MM_E_FORMAT);
        MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, ip, ip), MM_E_FORMAT);
        unlink(ip);
        unlink(lp);
        free(ip);
        free(lp);
    }
}
END_TEST

START_TEST(test_idx_other_types) {
    /* float32 features (0x0d) and int32 labels (0x0c), big-endian. */
    float vals[6] = {-1.5f, 0, 3.25f, 1e-3f, 1e20f, -2};
    unsigned char data[24], file[64], lfile[64], ldata[12];
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        put_be32(data + 4 * i, u);
    }
    uint32_t d2[2] = {3, 2}, d1[1] = {3};
    size_t len = make_idx(file, 0x0D, 2, d2, data, sizeof data);
    put_be32(ldata, 7);
    put_be32(ldata + 4, 0);
    put_be32(ldata + 8, 0x7fffffff);
    size_t llen = make_idx(lfile, 0x0C, 1, d1, ldata, sizeof ldata);
    char *ip = mm_test_tmp_path("-f32"), *lp = mm_test_tmp_path("-i32");
    write_file(ip, file, len);
    write_file(lp, lfile, llen);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_load_idx(&ds, ip, lp));
    ck_assert_uint_eq(mm_dataset_size(ds), 3);
    ck_assert_uint_eq(mm_dataset_dim(ds), 2);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(mm_dataset_features(ds)[i], vals[i]);
    ck_assert_int_eq(mm_dataset_labels(ds)[0], 7);
    ck_assert_int_eq(mm_dataset_labels(ds)[2], INT32_MAX);
    ck_assert_uint_eq(mm_dataset_num_classes(ds), (size_t)INT32_MAX + 1);
    mm_dataset_free(ds);
    /* A negative int32 label. */
    put_be32(ldata + 4, 0xffffffffu);
    llen = make_idx(lfile, 0x0C, 1, d1, ldata, sizeof ldata);
    write_file(lp, lfile, llen);
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, ip, lp), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "negative"));
    /* A NaN feature. */
    put_be32(data + 8, 0x7fc00000u);
    len = make_idx(file, 0x0D, 2, d2, data, sizeof data);
    write_file(ip, file, len);
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, ip, NULL), MM_E_NUMERIC);
    ck_assert_ptr_null(ds);
    unlink(ip);
    unlink(lp);
    free(ip);
    free(lp);
}
END_TEST

START_TEST(test_idx_truncated_every_offset) {
    make_small();
    /* Every proper prefix of the images file, plain and gzip-compressed. */
    for (size_t len = 0; len < small_img_len; len++) {
        MM_ASSERT_STATUS(load_bytes(small_img_file, len, NULL, 0, 0), MM_E_FORMAT);
        MM_ASSERT_STATUS(load_bytes(small_img_file, len, NULL, 0, 1), MM_E_FORMAT);
    }
    for (size_t len = 0; len < small_lab_len; len++)
        MM_ASSERT_STATUS(load_bytes(small_img_file, small_img_len, small_lab_file, len, 0),
                         MM_E_FORMAT);
    /* Every proper prefix of the gzip file itself (a cut compressed stream). */
    char *gp = mm_test_tmp_path("-full.gz");
    write_gz(gp, small_img_file, small_img_len);
    size_t glen;
    unsigned char *gzbytes = read_file(gp, &glen);
    for (size_t len = 0; len < glen; len++) {
        mm_status st = load_bytes(gzbytes, len, NULL, 0, 0);
        ck_assert_msg(st == MM_E_FORMAT, "gzip cut at %zu of %zu: %s: %s", len, glen,
                      mm_status_name(st), mm_last_error_message());
    }
    ck_assert_int_eq(load_bytes(gzbytes, glen, NULL, 0, 0), MM_OK);
    unlink(gp);
    free(gp);
    free(gzbytes);
}
END_TEST

START_TEST(test_idx_bit_flips) {
    /* Every single-bit flip of the plain and the gzip file: an error or a
     * dataset, never a crash (ASan/UBSan runs make this meaningful). */
    make_small();
    unsigned char buf[256];
    int ok = 0, bad = 0;
    for (size_t bit = 0; bit < small_img_len * 8; bit++) {
        memcpy(buf, small_img_file, small_img_len);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        mm_status st = load_bytes(buf, small_img_len, small_lab_file, small_lab_len, 0);
        st == MM_OK ? ok++ : bad++;
    }
    char *gp = mm_test_tmp_path("-flip.gz");
    write_gz(gp, small_img_file, small_img_len);
    size_t glen;
    unsigned char *gzbytes = read_file(gp, &glen);
    for (size_t bit = 0; bit < glen * 8; bit++) {
        unsigned char *b = malloc(glen);
        memcpy(b, gzbytes, glen);
        b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        mm_status st = load_bytes(b, glen, NULL, 0, 0);
        st == MM_OK ? ok++ : bad++;
        free(b);
    }
    ck_assert_int_gt(bad, 0);
    ck_assert_int_gt(ok, 0); /* flips in pixel bytes give valid files */
    unlink(gp);
    free(gp);
    free(gzbytes);
}
END_TEST

START_TEST(test_idx_bad_headers) {
    make_small();
    unsigned char buf[512];
    size_t len;
    /* wrong magic */
    memcpy(buf, small_img_file, small_img_len);
    buf[0] = 1;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "magic"));
    memcpy(buf, small_img_file, small_img_len);
    buf[1] = 8;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_FORMAT);
    /* a text file */
    MM_ASSERT_STATUS(load_bytes("hello, world\n", 13, NULL, 0, 0), MM_E_FORMAT);
    /* unknown type code, and a valid IDX type this loader does not read */
    memcpy(buf, small_img_file, small_img_len);
    buf[2] = 0x42;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "type"));
    buf[2] = 0x0B;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_UNSUPPORTED);
    /* labels of float type */
    memcpy(buf, small_lab_file, small_lab_len);
    buf[2] = 0x0D;
    MM_ASSERT_STATUS(load_bytes(small_img_file, small_img_len, buf, small_lab_len, 0),
                     MM_E_UNSUPPORTED);
    /* dimension count 0 and 5 */
    memcpy(buf, small_img_file, small_img_len);
    buf[3] = 0;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_FORMAT);
    buf[3] = 5;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len, NULL, 0, 0), MM_E_FORMAT);
    /* trailing garbage (plain and gzip) */
    memcpy(buf, small_img_file, small_img_len);
    buf[small_img_len] = 0;
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len + 1, NULL, 0, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "after"));
    MM_ASSERT_STATUS(load_bytes(buf, small_img_len + 1, NULL, 0, 1), MM_E_FORMAT);
    memcpy(buf, small_lab_file, small_lab_len);
    MM_ASSERT_STATUS(load_bytes(small_img_file, small_img_len, buf, small_lab_len + 1, 0),
                     MM_E_FORMAT);
    /* label count differs from image count */
    uint32_t d1b[1] = {SN - 1};
    len = make_idx(buf, 0x08, 1, d1b, small_labels, SN - 1);
    MM_ASSERT_STATUS(load_bytes(small_img_file, small_img_len, buf, len, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "labels"));
    /* zero-sized feature dimension; zero samples is a valid empty set */
    uint32_t dz[3] = {SN, 0, SW};
    len = make_idx(buf, 0x08, 3, dz, NULL, 0);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    uint32_t d0[3] = {0, SH, SW}, d0l[1] = {0};
    len = make_idx(buf, 0x08, 3, d0, NULL, 0);
    unsigned char lbuf[16];
    size_t llen = make_idx(lbuf, 0x08, 1, d0l, NULL, 0);
    MM_ASSERT_STATUS(load_bytes(buf, len, lbuf, llen, 0), MM_OK);
}
END_TEST

START_TEST(test_idx_huge_dims) {
    unsigned char buf[256], data[100];
    memset(data, 7, sizeof data);
    /* 2^32-1 items claimed, 100 bytes present: no huge allocation, clear error. */
    uint32_t d1[2] = {0xffffffffu, 1};
    size_t len = make_idx(buf, 0x08, 2, d1, data, sizeof data);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    ck_assert_msg(strstr(mm_last_error_message(), "file ends after 100 of 4294967295 items"),
                  "message: %s", mm_last_error_message());
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 1), MM_E_FORMAT);
    /* 2^60 items: fits in size_t but not in memory. */
    uint32_t d2[4] = {1u << 15, 1u << 15, 1u << 15, 1u << 15};
    len = make_idx(buf, 0x08, 4, d2, data, sizeof data);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    /* product overflows size_t */
    uint32_t d3[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    len = make_idx(buf, 0x08, 4, d3, data, sizeof data);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "overflow"));
    uint32_t d4[4] = {0, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    len = make_idx(buf, 0x08, 4, d4, NULL, 0);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    /* float32: items * 4 overflows even when the item count does not */
    uint32_t d5[2] = {0x80000000u, 0x80000000u};
    len = make_idx(buf, 0x0D, 2, d5, data, sizeof data);
    MM_ASSERT_STATUS(load_bytes(buf, len, NULL, 0, 0), MM_E_FORMAT);
    /* labels claiming 2^32-1 entries */
    uint32_t d6[1] = {0xffffffffu};
    len = make_idx(buf, 0x08, 1, d6, data, sizeof data);
    make_small();
    MM_ASSERT_STATUS(load_bytes(small_img_file, small_img_len, buf, len, 0), MM_E_FORMAT);
}
END_TEST

START_TEST(test_idx_io_errors) {
    mm_dataset *ds = (mm_dataset *)&ds;
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, "/nonexistent/dir/images.idx", NULL), MM_E_IO);
    ck_assert_ptr_null(ds);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "/nonexistent/dir/images.idx"));
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "No such file"));
    const char *tmp = getenv("TMPDIR");
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, tmp && *tmp ? tmp : "/tmp", NULL), MM_E_IO);
    make_small();
    char *ip = mm_test_tmp_path("-io");
    write_file(ip, small_img_file, small_img_len);
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, ip, "/nonexistent/labels.idx"), MM_E_IO);
    ck_assert_ptr_null(ds);
    MM_ASSERT_STATUS(mm_dataset_load_idx(&ds, NULL, NULL), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_dataset_load_idx(NULL, ip, NULL), MM_E_INVALID_ARGUMENT);
    unlink(ip);
    free(ip);
}
END_TEST

/* ---- CSV ---------------------------------------------------------------- */

/* Load CSV text; on success compare with want_x/want_y (n x dim). */
static mm_status csv_case(const char *text, int label_col, size_t n, size_t dim,
                          const float *want_x, const int32_t *want_y) {
    char *p = mm_test_tmp_path(".csv");
    write_text(p, text);
    mm_dataset *ds = (mm_dataset *)&ds;
    mm_status st = mm_dataset_load_csv(&ds, p, label_col);
    if (st == MM_OK) {
        ck_assert_uint_eq(mm_dataset_size(ds), n);
        ck_assert_uint_eq(mm_dataset_dim(ds), dim);
        ck_assert_uint_eq((uintptr_t)mm_dataset_features(ds) % 64, 0);
        if (want_x)
            ck_assert_double_eq_tol(mm_test_max_abs_diff(mm_dataset_features(ds), want_x, n * dim),
                                    0, 1e-6);
        if (want_y) {
            ck_assert_ptr_nonnull(mm_dataset_labels(ds));
            for (size_t i = 0; i < n; i++) ck_assert_int_eq(mm_dataset_labels(ds)[i], want_y[i]);
        } else {
            ck_assert_ptr_null(mm_dataset_labels(ds));
        }
        mm_dataset_free(ds);
    } else {
        ck_assert_ptr_null(ds);
    }
    unlink(p);
    free(p);
    return st;
}

START_TEST(test_csv_valid) {
    const float x3[] = {1, 2.5f, -3, 4e-2f, 0, 1e3f};
    const int32_t y2[] = {2, 0};
    /* label last (-2), with header */
    MM_ASSERT_OK(csv_case("a,b,c,label\n1,2.5,-3,2\n0.04,0,1e3,0\n", -2, 2, 3, x3, y2));
    /* label first (0), no header, CRLF, spaces, trailing blank lines */
    MM_ASSERT_OK(csv_case("2 , 1,2.5 ,\t-3\r\n0,0.04,0,1e3\r\n\r\n  \n\n", 0, 2, 3, x3, y2));
    /* label by positive index of the last column */
    MM_ASSERT_OK(csv_case("1,2.5,-3,2\n0.04,0,1e3,0", 3, 2, 3, x3, y2));
    /* -3 counts from the end: the middle column of three */
    const float x2[] = {1, -3, 0.04f, 1e3f};
    MM_ASSERT_OK(csv_case("1,2,-3\n0.04,0,1e3\n", -3, 2, 2, x2, (const int32_t[]){2, 0}));
    /* no labels */
    MM_ASSERT_OK(csv_case("x,y,z\n1,2.5,-3\n0.04,0,1e3\n", -1, 2, 3, x3, NULL));
    /* UTF-8 BOM + header; "3.0" is an integer label; '+' signs */
    MM_ASSERT_OK(csv_case("\xEF\xBB\xBFu,v,w,l\n+1,2.5,-3,3.0\n0.04,0,1e3,+1\n", -2, 2, 3, x3,
                          (const int32_t[]){3, 1}));
    /* a single column, no newline at the end */
    MM_ASSERT_OK(csv_case("7", -1, 1, 1, (const float[]){7}, NULL));
    /* a quoted header that does not parse as numbers */
    MM_ASSERT_OK(csv_case("\"f1\",\"f2\"\n1,2\n", -1, 1, 2, (const float[]){1, 2}, NULL));
    /* the named special columns keep the values C callers have always passed */
    ck_assert_int_eq(MM_CSV_LABEL_LAST, -2);
    ck_assert_int_eq(MM_CSV_NO_LABELS, -1);
    MM_ASSERT_OK(csv_case("a,b,c,label\n1,2.5,-3,2\n0.04,0,1e3,0\n", MM_CSV_LABEL_LAST, 2, 3, x3,
                          y2));
    MM_ASSERT_OK(csv_case("1,2,-3\n0.04,0,1e3\n", MM_CSV_LABEL_LAST - 1, 2, 2, x2,
                          (const int32_t[]){2, 0}));
    MM_ASSERT_OK(csv_case("x,y,z\n1,2.5,-3\n0.04,0,1e3\n", MM_CSV_NO_LABELS, 2, 3, x3, NULL));
}
END_TEST

START_TEST(test_csv_errors) {
    /* ragged rows */
    MM_ASSERT_STATUS(csv_case("1,2,3\n4,5\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "line 2 has 2 columns, expected 3"));
    MM_ASSERT_STATUS(csv_case("a,b\n1,2\n3,4,5\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "line 3"));
    /* non-numeric cell: names line and column (both from 1) */
    MM_ASSERT_STATUS(csv_case("a,b\n1,2\n3,x4\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_msg(strstr(mm_last_error_message(), "line 3, column 2"), "%s",
                  mm_last_error_message());
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "x4"));
    MM_ASSERT_STATUS(csv_case("1,2\n3,4abc\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("1,2\n3,\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "empty"));
    MM_ASSERT_STATUS(csv_case("1;2\n3;4\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    /* NaN / Inf / overflow */
    MM_ASSERT_STATUS(csv_case("1,2\n3,nan\n", -1, 0, 0, NULL, NULL), MM_E_NUMERIC);
    ck_assert_msg(strstr(mm_last_error_message(), "line 2, column 2"), "%s",
                  mm_last_error_message());
    MM_ASSERT_STATUS(csv_case("h1,h2\n1,2\nNaN,4\n", -1, 0, 0, NULL, NULL), MM_E_NUMERIC);
    MM_ASSERT_STATUS(csv_case("1,-inf\n", -1, 0, 0, NULL, NULL), MM_E_NUMERIC);
    MM_ASSERT_STATUS(csv_case("1,1e39\n", -1, 0, 0, NULL, NULL), MM_E_NUMERIC);
    MM_ASSERT_OK(csv_case("1,1e-50\n", -1, 1, 2, (const float[]){1, 0}, NULL)); /* underflow */
    /* labels: negative, fractional, too large, text */
    MM_ASSERT_STATUS(csv_case("1,2\n3,-1\n", -2, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "label"));
    MM_ASSERT_STATUS(csv_case("1,2.5\n", -2, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("1,3000000000\n", -2, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("1,2\n1,cat\n", -2, 0, 0, NULL, NULL), MM_E_FORMAT);
    /* label column outside the file; no feature column left */
    MM_ASSERT_STATUS(csv_case("1,2\n", 2, 0, 0, NULL, NULL), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(csv_case("1,2\n", -4, 0, 0, NULL, NULL), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(csv_case("1,2\n", INT32_MIN, 0, 0, NULL, NULL), MM_E_OUT_OF_RANGE);
    MM_ASSERT_STATUS(csv_case("1\n2\n", 0, 0, 0, NULL, NULL), MM_E_FORMAT);
    /* empty file, header only, blank line in the middle, NUL byte */
    MM_ASSERT_STATUS(csv_case("", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("\n\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("a,b\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    MM_ASSERT_STATUS(csv_case("1,2\n\n3,4\n", -1, 0, 0, NULL, NULL), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "line 2"));
    char *p = mm_test_tmp_path(".csv");
    write_file(p, "1,2\n3,\0004\n", 9);
    mm_dataset *ds;
    MM_ASSERT_STATUS(mm_dataset_load_csv(&ds, p, -1), MM_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "NUL"));
    unlink(p);
    free(p);
    /* I/O */
    MM_ASSERT_STATUS(mm_dataset_load_csv(&ds, "/nonexistent/x.csv", -1), MM_E_IO);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "/nonexistent/x.csv"));
    MM_ASSERT_STATUS(mm_dataset_load_csv(&ds, NULL, -1), MM_E_INVALID_ARGUMENT);
    MM_ASSERT_STATUS(mm_dataset_load_csv(NULL, "x.csv", -1), MM_E_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_csv_gzip_and_larger) {
    /* A larger generated file (gzip-compressed), compared value by value. */
    enum { R = 3000, C = 9 };
    float *x = malloc(R * (C - 1) * sizeof(float));
    int32_t y[R];
    mm_test_fill(x, R * (C - 1), 5, -100, 100);
    size_t cap = (size_t)R * C * 24 + 64, o = 0;
    char *text = malloc(cap);
    o += (size_t)snprintf(text + o, cap - o, "label");
    for (int j = 1; j < C; j++) o += (size_t)snprintf(text + o, cap - o, ",f%d", j);
    o += (size_t)snprintf(text + o, cap - o, "\r\n");
    for (int i = 0; i < R; i++) {
        y[i] = (i * 7) % 13;
        o += (size_t)snprintf(text + o, cap - o, "%d", (int)y[i]);
        for (int j = 0; j < C - 1; j++)
            o += (size_t)snprintf(text + o, cap - o, ",%.9g", (double)x[i * (C - 1) + j]);
        o += (size_t)snprintf(text + o, cap - o, "\r\n");
    }
    char *p = mm_test_tmp_path(".csv.gz");
    write_gz(p, text, o);
    mm_dataset *ds;
    MM_ASSERT_OK(mm_dataset_load_csv(&ds, p, 0));
    ck_assert_uint_eq(mm_dataset_size(ds), R);
    ck_assert_uint_eq(mm_dataset_dim(ds), C - 1);
    ck_assert_uint_eq(mm_dataset_num_classes(ds), 13);
    ck_assert_double_eq(mm_test_max_abs_diff(mm_dataset_features(ds), x, R * (C - 1)), 0);
    for (int i = 0; i < R; i++) ck_assert_int_eq(mm_dataset_labels(ds)[i], y[i]);
    mm_dataset_free(ds);
    unlink(p);
    free(p);
    free(text);
    free(x);
}
END_TEST

/* ---- real data ---------------------------------------------------------- */

START_TEST(test_fashion_mnist) {
    const char *dir = mm_test_fashion_dir();
    if (!dir) {
        printf("test_fashion_mnist: SKIPPED: Fashion-MNIST not found (set MM_FASHION_DIR or "
               "install dataset-fashion-mnist)\n");
        return;
    }
    char ip[4096], lp[4096];
    struct { const char *prefix; size_t n; int32_t first; } sets[2] = {
        {"train", 60000, 9}, /* first labels checked with python: 9 (train), 9 (t10k) */
        {"t10k", 10000, 9}};
    for (int s = 0; s < 2; s++) {
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, sets[s].prefix);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, sets[s].prefix);
        mm_dataset *ds;
        MM_ASSERT_OK(mm_dataset_load_idx(&ds, ip, lp));
        ck_assert_uint_eq(mm_dataset_size(ds), sets[s].n);
        ck_assert_uint_eq(mm_dataset_dim(ds), 784);
        ck_assert_uint_eq(mm_dataset_num_classes(ds), 10);
        ck_assert_int_eq(mm_dataset_labels(ds)[0], sets[s].first);
        const float *x = mm_dataset_features(ds);
        float lo = 1, hi = 0;
        for (size_t i = 0; i < sets[s].n * 784; i++) {
            if (x[i] < lo) lo = x[i];
            if (x[i] > hi) hi = x[i];
        }
        ck_assert_float_eq(lo, 0.0f);
        ck_assert_float_eq(hi, 1.0f);
        size_t counts[10] = {0};
        for (size_t i = 0; i < sets[s].n; i++) {
            int32_t y = mm_dataset_labels(ds)[i];
            ck_assert(y >= 0 && y < 10);
            counts[y]++;
        }
        for (int c = 0; c < 10; c++) ck_assert_uint_eq(counts[c], sets[s].n / 10); /* balanced */
        if (s == 0) {
            /* Sum of the first training image's bytes is 76247 (python). */
            double sum = 0;
            for (int i = 0; i < 784; i++) sum += x[i];
            ck_assert_double_eq_tol(sum, 76247.0 / 255.0, 1e-3);
        }
        mm_dataset_free(ds);
    }
}
END_TEST

START_TEST(test_idx_real_deflate_cuts) {
    /* Real deflate data: every proper prefix of Fashion-MNIST's gzip-compressed
     * t10k labels (paired with a generated 10000-sample images file) must give
     * MM_E_FORMAT; bit flips must give an error or a dataset, never a crash. */
    const char *dir = mm_test_fashion_dir();
    if (!dir) {
        printf("test_idx_real_deflate_cuts: SKIPPED: Fashion-MNIST not found\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    size_t glen;
    unsigned char *gzbytes = read_file(path, &glen);
    enum { N = 10000 };
    unsigned char *img = malloc(16 + N);
    uint32_t dims[3] = {N, 1, 1};
    size_t ilen = make_idx(img, 0x08, 3, dims, NULL, 0);
    memset(img + ilen, 128, N);
    ilen += N;
    char *ip = mm_test_tmp_path("-rimg"), *lp = mm_test_tmp_path("-rlab.gz");
    write_file(ip, img, ilen);
    mm_dataset *ds;
    write_file(lp, gzbytes, glen);
    MM_ASSERT_OK(mm_dataset_load_idx(&ds, ip, lp));
    ck_assert_int_eq(mm_dataset_labels(ds)[0], 9);
    mm_dataset_free(ds);
    for (size_t len = 0; len < glen; len++) {
        write_file(lp, gzbytes, len);
        mm_status st = mm_dataset_load_idx(&ds, ip, lp);
        ck_assert_msg(st == MM_E_FORMAT, "cut at %zu of %zu: %s: %s", len, glen,
                      mm_status_name(st), mm_last_error_message());
    }
    int bad = 0;
    for (size_t bit = 0; bit < glen * 8; bit += 13) {
        gzbytes[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        write_file(lp, gzbytes, glen);
        mm_status st = mm_dataset_load_idx(&ds, ip, lp);
        gzbytes[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        if (st == MM_OK)
            mm_dataset_free(ds);
        else
            bad++;
    }
    ck_assert_int_gt(bad, 0);
    unlink(ip);
    unlink(lp);
    free(ip);
    free(lp);
    free(img);
    free(gzbytes);
}
END_TEST

static Suite *dataset_suite(void) {
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_create_and_accessors);
    tcase_add_test(tc, test_slice);
    tcase_add_test(tc, test_standardize);
    tcase_add_test(tc, test_minmax);
    suite_add_tcase(s, tc);
    tc = tcase_create("idx");
    tcase_add_test(tc, test_idx_plain_and_gzip);
    tcase_add_test(tc, test_idx_other_types);
    tcase_add_test(tc, test_idx_truncated_every_offset);
    tcase_add_test(tc, test_idx_bit_flips);
    tcase_add_test(tc, test_idx_bad_headers);
    tcase_add_test(tc, test_idx_huge_dims);
    tcase_add_test(tc, test_idx_io_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("csv");
    tcase_add_test(tc, test_csv_valid);
    tcase_add_test(tc, test_csv_errors);
    tcase_add_test(tc, test_csv_gzip_and_larger);
    suite_add_tcase(s, tc);
    tc = tcase_create("fashion");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fashion_mnist);
    tcase_add_test(tc, test_idx_real_deflate_cuts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(dataset_suite()); }
