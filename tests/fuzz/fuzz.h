/* Shared helpers of the libFuzzer harnesses (tests/fuzz/README.md).
 *
 * Each fuzz_<loader>.c defines LLVMFuzzerTestOneInput. It is linked either
 * with libFuzzer (-Dfuzz=true, clang) or with replay.c, a main() that feeds
 * every file of a corpus to it (the replay tests of every build). */
#ifndef MM_FUZZ_H
#define MM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <mm/mm.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A file holding exactly these bytes, for loaders that take a path: a
 * memfd (or, without memfd_create, a temporary file removed at exit),
 * one per slot (0 or 1), reused by every input. Returns its path (static
 * storage), or NULL after printing why (a harness problem, not a finding). */
const char *fuzz_file(int slot, const void *data, size_t size);

/* gzip-compress (zlib, windowBits 31) into a malloc'ed buffer; NULL on
 * failure. */
unsigned char *fuzz_gzip(const void *data, size_t size, size_t *out_size);

/* After a load failed with MM_E_CHECKSUM: write the checksum the message
 * says the contents give over the one the file records, in buf (the
 * input's copy), so that mutated model files get past the CRC to the
 * checks behind it. Returns 1 if it patched, 0 if the message or the
 * stored value could not be found (then the input stays as it is). */
int fuzz_patch_checksum(unsigned char *buf, size_t size);

/* The library's error contract, checked after every call (a breach
 * aborts: a finding; `what` names the call). A failing call returns a
 * known status other than MM_E_INTERNAL and leaves a non-empty message
 * (clear it with mm_clear_error before the call). fuzz_check_new also
 * checks a constructor's out-parameter: an object on success, NULL on
 * failure, and with MM_FUZZ_VERBOSE set in the environment prints the
 * outcome (to see what a corpus reaches). */
void fuzz_check_call(const char *what, mm_status st);
void fuzz_check_new(const char *what, mm_status st, const void *out);

/* Use a loaded model the ways a host would right after loading (describe,
 * lineage, layer queries and weights, forward and predict on two samples,
 * clone), sizes permitting: a loader that accepts an inconsistent model
 * shows up here under the sanitizers. Does not free the model. */
void fuzz_use_model(mm_model *m);

/* mm_model_forward on two fixed samples (and mm_model_predict): a malloc'ed
 * array of *n_out outputs, or NULL (*n_out 0) if the model is too wide or
 * forward failed. */
float *fuzz_forward(const mm_model *m, size_t *n_out);

/* A directory for files the harness writes (a fresh one on /dev/shm, else
 * under TMPDIR or /tmp, removed at exit), or NULL after printing why. */
const char *fuzz_dir(void);

/* Elements a harness allocates for inputs or outputs of one model call. */
#define FUZZ_MAX_ELEMS ((size_t)1 << 20)

#endif
