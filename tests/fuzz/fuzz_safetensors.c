/* safetensors import (mm_safetensors_import*, doc/FORMAT.md §9).
 *
 * Input: one flags byte, the `arch` string, NUL, the `names` string, NUL,
 * then the file (an empty string passes NULL). Flags: bit 0
 * MM_SAFETENSORS_ALLOW_EXTRA, bit 1 MM_SAFETENSORS_ROUND_F64, bit 2 import
 * from a file (the lazy, read-as-used path of mm_file_open) instead of the
 * buffer. An mmaint file's checksum mismatch is repaired once
 * (fuzz_patch_checksum). The imported model is used (fuzz_use_model). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MAX_STRING 256 /* arch and names beyond this are not interesting */

static mm_status import(mm_model **m, int from_file, const unsigned char *file, size_t n,
                        const char *arch, const char *names, unsigned flags) {
    mm_clear_error();
    if (!from_file) return mm_safetensors_import_buffer(m, file, n, arch, names, flags);
    const char *path = fuzz_file(0, file, n);
    if (!path) {
        *m = NULL;
        return MM_E_IO;
    }
    return mm_safetensors_import(m, path, arch, names, flags);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    unsigned mode = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *nul1 = memchr(p, '\0', (size_t)(end - p) < MAX_STRING ? (size_t)(end - p) : MAX_STRING);
    if (!nul1) return 0;
    const char *q = nul1 + 1;
    const char *nul2 = memchr(q, '\0', (size_t)(end - q) < MAX_STRING ? (size_t)(end - q) : MAX_STRING);
    if (!nul2) return 0;
    char arch[MAX_STRING], names[MAX_STRING];
    memcpy(arch, p, (size_t)(nul1 - p) + 1);
    memcpy(names, q, (size_t)(nul2 - q) + 1);
    size_t n = (size_t)(end - (nul2 + 1));
    unsigned char *file = malloc(n ? n : 1);
    if (!file) return 0;
    if (n) memcpy(file, nul2 + 1, n);
    unsigned flags = mode & 3u;
    int from_file = (mode >> 2) & 1;
    const char *a = arch[0] ? arch : NULL, *nm = names[0] ? names : NULL;

    mm_model *m = NULL;
    mm_status st = import(&m, from_file, file, n, a, nm, flags);
    if (st == MM_E_CHECKSUM && fuzz_patch_checksum(file, n))
        st = import(&m, from_file, file, n, a, nm, flags);
    fuzz_check_new(from_file ? "mm_safetensors_import" : "mm_safetensors_import_buffer", st, m);
    if (m) fuzz_use_model(m);
    mm_model_free(m);
    free(file);
    return 0;
}
