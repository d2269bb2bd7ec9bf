/* The model file container (doc/FORMAT.md): safetensors with mmaint's
 * architecture, optimizer state and lineage in __metadata__, plus a CRC-32.
 * Shared by mm_model_save/load and mm_optimizer_save/load. Never installed. */
#ifndef MM_MMFILE_H
#define MM_MMFILE_H

#include "model/model_internal.h"

/* ---- reading: the whole file is read and validated up front ---- */
typedef struct mm_file mm_file;

mm_status mm_file_open(mm_file **out, const char *path);
mm_status mm_file_open_buffer(mm_file **out, const void *data, size_t len);
void mm_file_close(mm_file *f);

/* Value of a __metadata__ key (borrowed), or NULL. */
const char *mm_file_meta(const mm_file *f, const char *key);

/* True if a tensor of that name exists. */
bool mm_file_has_tensor(const mm_file *f, const char *name);

/* Copy an F32 tensor into dst, checking that its shape is exactly
 * rows x cols (cols == 1 also accepts a 1-d tensor of rows elements).
 * Converts from little-endian. MM_E_NOT_FOUND / MM_E_FORMAT / MM_E_SHAPE. */
mm_status mm_file_read_f32(const mm_file *f, const char *name, size_t rows, size_t cols,
                           float *dst);

/* Build the model the file describes. */
mm_status mm_file_build_model(const mm_file *f, mm_model **out);

/* ---- writing ---- */
typedef struct mm_file_writer mm_file_writer;

mm_status mm_file_writer_create(mm_file_writer **out);
void mm_file_writer_free(mm_file_writer *w);
/* The data is borrowed until commit. Names must be unique. */
mm_status mm_file_writer_add_f32(mm_file_writer *w, const char *name, const float *data,
                                 size_t rows, size_t cols, bool vector);
/* Copies key and value. */
mm_status mm_file_writer_add_meta(mm_file_writer *w, const char *key, const char *value);
/* Architecture metadata, lineage and every layer's parameters. */
mm_status mm_file_writer_add_model(mm_file_writer *w, const mm_model *model);
/* Write atomically: temp file in the same directory, fsync, rename. */
mm_status mm_file_writer_commit(mm_file_writer *w, const char *path);

#endif
