#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm/mm.h"

int mm_test_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void mm_test_fill(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 40) / (double)(1ULL << 24);
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

double mm_test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

char *mm_test_tmp_path(const char *suffix) {
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/mmtest-%ld-%u%s", dir, (long)getpid(), counter++, suffix ? suffix : "");
    return p;
}

const char *mm_test_fashion_dir(void) {
    const char *dir = getenv("MM_FASHION_DIR");
    if (!dir || !*dir) dir = "/usr/share/datasets/fashion-mnist";
    char path[4096];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    return access(path, R_OK) == 0 ? dir : NULL;
}
