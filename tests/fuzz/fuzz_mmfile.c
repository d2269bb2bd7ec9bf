/* Model files (doc/FORMAT.md): the input is a whole .mmf file.
 *
 * mm_model_load_buffer, then mm_model_load of the same bytes from a file
 * (the statuses must agree), use of the loaded model (fuzz_use_model), a
 * round trip (what loads must save, load again and compute bit-identical
 * outputs), mm_optimizer_load of the file's optimizer state, its round
 * trip through mm_optimizer_save, and one optimizer step with it. A checksum mismatch is repaired once (fuzz_patch_checksum) so
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

static void fail(const char *what) {
    fprintf(stderr, "%s (%s: %s)\n", what, mm_status_name(mm_last_error()),
            mm_last_error_message());
    abort();
}

/* Save, load again, compare the outputs bit for bit. */
static void model_round_trip(const mm_model *m) {
    const char *dir = fuzz_dir();
    if (!dir) return;
    char path[128];
    snprintf(path, sizeof path, "%s/model.mmf", dir);
    mm_clear_error();
    mm_status st = mm_model_save(m, path);
    if (st == MM_E_IO) return; /* the disk, not the model */
    if (st != MM_OK) fail("a model that loaded cannot be saved");
    mm_model *back = NULL;
    mm_clear_error();
    if (mm_model_load(&back, path) != MM_OK) fail("a model saved after loading does not load");
    size_t na, nb;
    float *ya = fuzz_forward(m, &na), *yb = fuzz_forward(back, &nb);
    if (na != nb || (na && memcmp(ya, yb, na * sizeof *ya) != 0))
        fail("a model saved and loaded again computes other outputs");
    free(ya);
    free(yb);
    mm_model_free(back);
}

/* Save the optimizer, load model and optimizer back. */
static void optimizer_round_trip(const mm_optimizer *o) {
    const char *dir = fuzz_dir();
    if (!dir) return;
    char path[128];
    snprintf(path, sizeof path, "%s/state.mmf", dir);
    mm_clear_error();
    mm_status st = mm_optimizer_save(o, path);
    if (st == MM_E_IO) return;
    if (st != MM_OK) fail("an optimizer state that loaded cannot be saved");
    mm_model *m = NULL;
    mm_optimizer *back = NULL;
    mm_clear_error();
    if (mm_model_load(&m, path) != MM_OK) fail("the model saved with an optimizer does not load");
    mm_clear_error();
    if (mm_optimizer_load(&back, m, path) != MM_OK)
        fail("an optimizer state saved after loading does not load");
    mm_optimizer_free(back);
    mm_model_free(m);
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
        model_round_trip(m);
        mm_optimizer *o = NULL;
        mm_clear_error();
        st = mm_optimizer_load(&o, m, path);
        fuzz_check_new("mm_optimizer_load", st, o);
        if (o) {
            optimizer_round_trip(o);
            step_once(o, m);
        }
        mm_optimizer_free(o);
    }
    mm_model_free(m);
    free(buf);
    return 0;
}
