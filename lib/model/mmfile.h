/* The model file container (doc/FORMAT.md): safetensors with mmaint's
 * architecture, optimizer state and lineage in __metadata__, plus a CRC-32.
 * Shared by mm_model_save/load and mm_optimizer_save/load. Never installed. */
#ifndef MM_MMFILE_H
#define MM_MMFILE_H

#include <stdio.h>

#include "model/model_internal.h"

/* Tensor element types mmaint reads and writes, with their safetensors
 * names ("F32", "F16", "BF16", "I8", "U8", "I16", "U16", "I32", "U32").
 * In memory, F16 and BF16 elements are raw uint16_t bit patterns; every
 * type is in host byte order in memory and little-endian in files. Values
 * are never renumbered; new ones are appended. */
typedef enum mm_dtype {
    MM_DTYPE_F32,
    MM_DTYPE_F16,
    MM_DTYPE_BF16,
    MM_DTYPE_I8,
    MM_DTYPE_U8,
    MM_DTYPE_I16,
    MM_DTYPE_U16,
    MM_DTYPE_I32,
    MM_DTYPE_U32,
} mm_dtype;

#define MM_FILE_MAX_DIMS 8

/* "F32" etc., or NULL for a value outside the enum. */
const char *mm_dtype_name(mm_dtype dtype);
/* Bytes per element (1, 2 or 4), or 0 for a value outside the enum. */
size_t mm_dtype_size(mm_dtype dtype);

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

/* dtype and shape of a tensor (each output may be NULL; shape gets *ndim
 * <= MM_FILE_MAX_DIMS values). Costs nothing: use it to check a tensor
 * before allocating room for it. MM_E_NOT_FOUND if absent,
 * MM_E_UNSUPPORTED if its dtype is valid safetensors but not an mm_dtype
 * (e.g. F64, BOOL). */
mm_status mm_file_tensor_info(const mm_file *f, const char *name, mm_dtype *dtype,
                              uint64_t shape[MM_FILE_MAX_DIMS], size_t *ndim);

/* Copy a tensor into dst (host byte order), checking that its dtype is
 * `dtype` and its shape exactly shape[0..ndim) (no 1-d / 2-d leniency).
 * MM_E_NOT_FOUND; MM_E_UNSUPPORTED (dtype not an mm_dtype); MM_E_FORMAT
 * naming the tensor and both dtypes or shapes on a mismatch. dst may be
 * NULL for an empty tensor. */
mm_status mm_file_read_tensor(const mm_file *f, const char *name, mm_dtype dtype,
                              const uint64_t *shape, size_t ndim, void *dst);

/* ---- layer parameters (the common case of the per-kind hooks) ---- */

/* One F32 parameter tensor a layer kind expects: "layers.<index>.<name>",
 * rows x cols (cols == 1 also accepts a 1-d [rows]). */
typedef struct mm_param_shape {
    const char *name;
    size_t rows, cols;
} mm_param_shape;

/* Check, without allocating, that every listed tensor of layer `index` is
 * present (MM_E_FORMAT), F32 (MM_E_UNSUPPORTED) and of its shape
 * (MM_E_FORMAT). `kind` names the layer in messages. */
mm_status mm_file_check_params_shape(const mm_file *f, size_t index, const char *kind,
                                     const mm_param_shape *params, size_t n);

/* Read every mm_param of an allocated layer from "layers.<index>.<name>":
 * MM_E_FORMAT if missing or misshapen, MM_E_UNSUPPORTED if not F32,
 * MM_E_NUMERIC naming tensor and element for a NaN or infinity. */
mm_status mm_file_load_params(const mm_file *f, size_t index, mm_layer *layer);

/* Add every mm_param of a layer as an F32 tensor "layers.<index>.<name>"
 * ([rows, cols]; a column vector not named "weight" 1-d [rows]), data
 * borrowed until commit. MM_E_NUMERIC for a NaN or infinity (a file the
 * loader would refuse is never written). */
mm_status mm_file_save_params(const mm_layer *layer, size_t index, mm_file_writer *w);

/* Check a 1-d tensor: present, dtype `want` or `alt`, and exactly (exact)
 * or at most len_or_max elements; *dtype and *len (may be NULL) receive
 * what the file holds. MM_E_FORMAT naming the tensor otherwise. */
mm_status mm_file_check_vector(const mm_file *f, const char *name, mm_dtype want, mm_dtype alt,
                               uint64_t len_or_max, bool exact, mm_dtype *dtype, uint64_t *len);

/* A CSR weight matrix (out rows, in columns) stored as
 * layers.<index>.weight_values (F32 [nnz]), weight_indices (U16 or U32
 * [nnz]) and weight_offsets (U32 [out+1]), as the sparse kind and masked
 * dense layers write it. Shapes and dtypes are checked before anything is
 * allocated; then offsets run from 0 to nnz without decreasing, a row holds
 * at most `in` entries, its columns are below `in` and increasing, and the
 * values are finite (MM_E_FORMAT / MM_E_NUMERIC naming the tensor). On
 * error nothing needs freeing beyond mm_file_csr_free, which is always
 * safe on a zeroed struct. */
typedef struct mm_file_csr {
    size_t nnz;
    uint32_t *offsets; /* out + 1 */
    uint32_t *indices; /* nnz */
    float *values;     /* nnz, 64-byte aligned */
} mm_file_csr;
mm_status mm_file_read_csr(const mm_file *f, size_t index, size_t in, size_t out,
                           mm_file_csr *csr);
void mm_file_csr_free(mm_file_csr *csr);

/* Build the model the file describes. */
mm_status mm_file_build_model(const mm_file *f, mm_model **out);

/* The "architecture" metadata (doc/FORMAT.md §4.1), parsed and checked as
 * mm_file_build_model checks it (generic fields, widths chaining, kinds
 * known), without building anything. Works on any file that has the key
 * (mm_safetensors_export writes it into plain safetensors files). */
typedef struct mm_file_arch_layer {
    const mm_layer_vtable *kind;
    const json_t *entry; /* inside mm_file_arch.root */
    size_t in, out;
    mm_activation act;
    bool frozen; /* "trainable": false (transfer learning) */
} mm_file_arch_layer;

typedef struct mm_file_arch {
    json_t *root; /* the parsed architecture (owned): the entries point into it */
    size_t input_dim;
    mm_loss loss;
    float leaky_slope;
    uint64_t seed;
    bool have_rng;
    mm_rng rng;
    mm_file_arch_layer *layers;
    size_t n_layers;
} mm_file_arch;

/* MM_E_FORMAT (missing or invalid) / MM_E_UNSUPPORTED (unknown kind);
 * on error *a needs no freeing. */
mm_status mm_file_parse_architecture(const mm_file *f, mm_file_arch *a);
void mm_file_arch_free(mm_file_arch *a);

/* The architecture JSON text of a model (doc/FORMAT.md §4.1), every layer
 * described as kind "dense" (what it computes), without any tensor: for
 * exports that write every layer as dense weights. Caller frees *out. */
mm_status mm_file_dense_architecture(const mm_model *model, char **out);

/* ---- tensors of any dtype (foreign files) ---- */

/* Number of tensors, and the name of the i-th in ascending byte order of
 * names (borrowed; NULL if i is out of range). */
size_t mm_file_tensor_count(const mm_file *f);
const char *mm_file_tensor_name(const mm_file *f, size_t i);

/* dtype name ("F64", "BOOL", ...: any safetensors dtype) and shape of a
 * tensor; each output may be NULL. MM_E_NOT_FOUND if absent. */
mm_status mm_file_tensor_shape(const mm_file *f, const char *name, const char **dtype,
                               uint64_t shape[MM_FILE_MAX_DIMS], size_t *ndim);

/* A floating-point tensor of shape rows x cols (cols == 1 also accepts a
 * 1-d [rows]) read as F32 into dst: F32 as is, F16 and BF16 widened
 * (exactly), F64 only when every value is exactly a float unless
 * round_f64 (then rounded to nearest; beyond the float range still
 * refused). dst NULL checks presence, dtype and shape only (do it before
 * allocating). MM_E_NOT_FOUND; MM_E_UNSUPPORTED for another dtype;
 * MM_E_SHAPE; MM_E_OUT_OF_RANGE for an inexact or too large F64;
 * MM_E_NUMERIC for NaN or infinity; each naming tensor and element. */
mm_status mm_file_read_float(const mm_file *f, const char *name, size_t rows, size_t cols,
                             bool round_f64, float *dst);

/* ---- writing ---- */
typedef struct mm_file_writer mm_file_writer;

mm_status mm_file_writer_create(mm_file_writer **out);
void mm_file_writer_free(mm_file_writer *w);
/* Add a tensor of ndim (0..MM_FILE_MAX_DIMS) dimensions, outermost first;
 * shape may be NULL when ndim is 0. The data (host byte order, C order) is
 * borrowed until commit and written little-endian. Names must be unique
 * and not "__metadata__". */
mm_status mm_file_writer_add_tensor(mm_file_writer *w, const char *name, mm_dtype dtype,
                                    const void *data, const uint64_t *shape, size_t ndim);
/* An F32 tensor [rows, cols], or [rows] when vector (then cols must be 1).
 * Same rules as mm_file_writer_add_tensor. */
mm_status mm_file_writer_add_f32(mm_file_writer *w, const char *name, const float *data,
                                 size_t rows, size_t cols, bool vector);
/* Copies key and value. */
mm_status mm_file_writer_add_meta(mm_file_writer *w, const char *key, const char *value);
/* Architecture metadata, lineage and every layer's tensors (through each
 * layer's vtable save hook). */
mm_status mm_file_writer_add_model(mm_file_writer *w, const mm_model *model);
/* Plain mode: commit writes no format, format_version or checksum
 * metadata, so the result is a plain safetensors file (for other tools;
 * the model loader refuses it). Default: an mmaint file. */
void mm_file_writer_set_plain(mm_file_writer *w, bool plain);
/* Write atomically: temp file in the same directory, fsync, rename. */
mm_status mm_file_writer_commit(mm_file_writer *w, const char *path);

/* ---- plain files (shared with the other formats, e.g. ONNX) ---- */

/* Writes a file's content to fp; `tmp` names the file in messages. */
typedef mm_status (*mm_file_fill_fn)(FILE *fp, const char *tmp, void *ctx);
/* Write `path` atomically: fill() writes a temporary file in the same
 * directory, which is fsynced and renamed over `path`, then the directory
 * is fsynced. On any error the temporary file is removed and `path` is
 * untouched. Keeps the mode of a file it replaces. */
mm_status mm_file_write_atomic(const char *path, mm_file_fill_fn fill, void *ctx);
/* fwrite all n bytes or MM_E_IO naming tmp. */
mm_status mm_file_write_all(FILE *fp, const void *p, size_t n, const char *tmp);
/* Read a whole regular file into a malloc'ed buffer (freed by the caller);
 * MM_E_IO naming the path on failure. */
mm_status mm_file_read_all(const char *path, unsigned char **out, size_t *out_len);

#endif
