/* CSV datasets (mm_dataset_load_csv).
 *
 * Input: one flags byte, then the file. Flags: bits 0-1 the label column
 * (-1 none, 0 first, -2 last, 1 second), bit 2 gzip the file in the
 * harness. The loaded dataset is used (queries, slice, standardize). */
#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int label_column[4] = {-1, 0, -2, 1};
    unsigned flags = data[0];
    const unsigned char *text = data + 1;
    size_t n = size - 1;
    const char *path;
    if (flags & 4) {
        size_t zn;
        unsigned char *z = fuzz_gzip(text, n, &zn);
        if (!z) return 0;
        path = fuzz_file(0, z, zn);
        free(z);
    } else {
        path = fuzz_file(0, text, n);
    }
    if (!path) return 0;
    mm_dataset *ds = NULL;
    mm_clear_error();
    mm_status st = mm_dataset_load_csv(&ds, path, label_column[flags & 3]);
    fuzz_check_new("mm_dataset_load_csv", st, ds);
    if (ds) {
        size_t rows = mm_dataset_size(ds);
        (void)mm_dataset_dim(ds);
        (void)mm_dataset_num_classes(ds);
        mm_dataset *s = NULL;
        mm_clear_error();
        st = mm_dataset_slice(ds, rows - 1, 1, &s);
        fuzz_check_new("mm_dataset_slice", st, s);
        mm_clear_error();
        if (s) fuzz_check_call("mm_dataset_standardize", mm_dataset_standardize(s, ds));
        mm_dataset_free(s);
    }
    mm_dataset_free(ds);
    return 0;
}
