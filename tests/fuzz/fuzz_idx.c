/* IDX datasets (mm_dataset_load_idx): images and, optionally, labels.
 *
 * Input: one flags byte, the images part's length (4 bytes,
 * little-endian; clamped to what follows), the images file, then the
 * labels file. Flags: bit 0 load labels too (else NULL), bit 1 / bit 2
 * gzip the images / labels file in the harness (so that mutations of the
 * plain bytes reach the header checks through zlib); files that are
 * already gzip streams (in the corpus) are read as they are. The loaded
 * dataset is used (queries, slice, standardize, minmax). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static const char *put(int slot, const unsigned char *p, size_t n, int gz) {
    if (!gz) return fuzz_file(slot, p, n);
    size_t zn;
    unsigned char *z = fuzz_gzip(p, n, &zn);
    if (!z) return NULL;
    const char *path = fuzz_file(slot, z, zn);
    free(z);
    return path;
}

static void use_dataset(mm_dataset *ds) {
    size_t n = mm_dataset_size(ds), dim = mm_dataset_dim(ds);
    (void)mm_dataset_num_classes(ds);
    const float *x = mm_dataset_features(ds);
    const int32_t *y = mm_dataset_labels(ds);
    volatile float sink = 0;
    if (n && dim) sink += x[0] + x[n * dim - 1];
    if (n && y) sink += (float)y[0] + (float)y[n - 1];
    (void)sink;
    mm_dataset *s = NULL;
    mm_clear_error();
    mm_status st = mm_dataset_slice(ds, n / 2, n - n / 2, &s);
    fuzz_check_new("mm_dataset_slice", st, s);
    if (s) {
        mm_clear_error();
        fuzz_check_call("mm_dataset_standardize", mm_dataset_standardize(s, ds));
        mm_clear_error();
        fuzz_check_call("mm_dataset_minmax", mm_dataset_minmax(s, s));
    }
    mm_dataset_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    unsigned flags = data[0];
    size_t rest = size - 5;
    size_t ilen = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 |
                  (size_t)data[4] << 24;
    if (ilen > rest) ilen = rest;
    const unsigned char *images = data + 5, *labels = images + ilen;
    size_t llen = rest - ilen;

    const char *ipath = put(0, images, ilen, flags & 2);
    const char *lpath = (flags & 1) ? put(1, labels, llen, flags & 4) : NULL;
    if (!ipath || ((flags & 1) && !lpath)) return 0;
    mm_dataset *ds = NULL;
    mm_clear_error();
    mm_status st = mm_dataset_load_idx(&ds, ipath, lpath);
    fuzz_check_new("mm_dataset_load_idx", st, ds);
    if (ds) use_dataset(ds);
    mm_dataset_free(ds);
    return 0;
}
