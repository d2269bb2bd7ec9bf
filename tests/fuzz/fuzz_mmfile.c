/* Model files (doc/FORMAT.md): the input is a whole .mmf file.
 *
 * mm_model_load_buffer, then mm_model_load of the same bytes from a file
 * (the statuses must agree), use of the loaded model (fuzz_use_model),
 * mm_optimizer_load of the file's optimizer state and one optimizer step
 * with it. A checksum mismatch is repaired once (fuzz_patch_checksum) so
 * that mutations reach the checks behind the CRC; the corpus holds the
 * repaired files' originals, which replay the same way in every build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static void step_once(mm_optimizer *o, mm_model *m) {
    size_t in = mm_model_input_dim(m), out = mm_model_output_dim(m);
    if (in == 0 || out == 0 || in > FUZZ_MAX_ELEMS || out > FUZZ_MAX_ELEMS) return;
    float *x = calloc(in, sizeof *x), *t = calloc(out, sizeof *t);
    int32_t label = (int32_t)(out - 1);
    if (x && t) {
        for (size_t j = 0; j < in; j++) x[j] = (float)((int)(j % 5) - 2) * 0.5f;
        double loss;
        mm_clear_error();
        mm_status st = mm_model_loss(m) == MM_LOSS_MSE
                           ? mm_optimizer_step(o, x, NULL, t, 1, &loss)
                           : mm_optimizer_step(o, x, &label, NULL, 1, &loss);
        fuzz_check_call("mm_optimizer_step", st);
    }
    free(x);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);

    mm_model *m = NULL;
    mm_clear_error();
    mm_status st = mm_model_load_buffer(&m, buf, size);
    if (st == MM_E_CHECKSUM && fuzz_patch_checksum(buf, size)) {
        mm_clear_error();
        st = mm_model_load_buffer(&m, buf, size);
    }
    fuzz_check_new("mm_model_load_buffer", st, m);
    mm_model_free(m);
    m = NULL;

    const char *path = fuzz_file(0, buf, size);
    if (path) {
        mm_clear_error();
        mm_status fst = mm_model_load(&m, path);
        fuzz_check_new("mm_model_load", fst, m);
        if (fst != st) {
            fprintf(stderr, "mm_model_load gave %s but mm_model_load_buffer %s on the same bytes (%s)\n",
                    mm_status_name(fst), mm_status_name(st), mm_last_error_message());
            abort();
        }
    }
    if (m) {
        fuzz_use_model(m);
        mm_optimizer *o = NULL;
        mm_clear_error();
        st = mm_optimizer_load(&o, m, path);
        fuzz_check_new("mm_optimizer_load", st, o);
        if (o) step_once(o, m);
        mm_optimizer_free(o);
    }
    mm_model_free(m);
    free(buf);
    return 0;
}
