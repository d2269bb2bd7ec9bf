/* mmaint — import and export of model weights as plain safetensors files
 * (migration to and from PyTorch and other tools).
 *
 * A safetensors file is an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, and the raw
 * little-endian data (doc/FORMAT.md §1-2 describes the container and every
 * check the reader makes). mmaint's own model files are safetensors files
 * too; these functions are for files that other tools read or wrote.
 *
 * Tensor names (doc/FORMAT.md §9). Each layer has two tensors, "<prefix>.weight"
 * (shape [out, in], row-major: PyTorch nn.Linear's layout, so nothing is ever
 * transposed) and "<prefix>.bias" ([out], or [out, 1]). The layer prefixes
 * are given by a `names` string:
 *   - NULL or "": on export "layers.{i}" (mmaint's own names); on import,
 *     the prefixes recorded in the file's metadata by mm_safetensors_export,
 *     else mmaint's names if the file has them for every layer, else one
 *     family "<p><number>" of 2-d ".weight" tensors with exactly one per
 *     layer, taken in increasing numeric order (PyTorch nn.Sequential:
 *     "0.weight", "2.weight", "4.weight"; also "model.0.weight", ...). Any
 *     other situation (no family, or several that fit) is MM_E_FORMAT
 *     asking for explicit names;
 *   - a pattern containing "{i}" (the layer's 0-based index) and/or "{seq}"
 *     (the index of the layer's nn.Linear in a PyTorch nn.Sequential of
 *     Linear and activation modules: each layer with a non-identity
 *     activation takes two places), e.g. "layers.{i}", "net.{seq}";
 *   - a comma-separated list of one prefix per layer, e.g. "fc1,fc2,out".
 *
 * Dtypes. Import reads F32, and F16 and BF16 (widened exactly). F64 is
 * read only if every value is exactly a float (else MM_E_OUT_OF_RANGE
 * naming the tensor and element) unless MM_SAFETENSORS_ROUND_F64 is given.
 * Other dtypes are MM_E_UNSUPPORTED. NaN or infinite values are
 * MM_E_NUMERIC. Export always writes F32.
 *
 * Thread safety: import creates a new model (any number at once); export
 * only reads the model, like mm_model_save.
 */
#ifndef MM_SAFETENSORS_H
#define MM_SAFETENSORS_H

#include "mm_common.h"
#include "mm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags of mm_safetensors_import (bitwise or). Values are never renumbered. */
typedef enum mm_safetensors_flag {
    MM_SAFETENSORS_DEFAULT = 0,
    /* Ignore tensors that no layer uses. Default: MM_E_FORMAT naming the
     * first one, so that a wrong mapping cannot silently drop weights. */
    MM_SAFETENSORS_ALLOW_EXTRA = 1,
    /* Round F64 values to the nearest float (values beyond the float range
     * are still MM_E_OUT_OF_RANGE). Default: only exact values. */
    MM_SAFETENSORS_ROUND_F64 = 2
} mm_safetensors_flag;

/* Build a model from the weights in a safetensors file.
 *
 * `arch` is a model spec as for mm_model_create_from_spec
 * ("784-256-128-10:relu"), or NULL to take the architecture from the
 * file's metadata (written by mm_safetensors_export, or an mmaint model
 * file): MM_E_INVALID_ARGUMENT if the file has none. An explicit `arch`
 * takes precedence over the metadata. `names` maps tensors to layers (see
 * above). `flags` is a combination of mm_safetensors_flag.
 *
 * An mmaint model file (.mmf) given with arch and names NULL is loaded as
 * mm_model_load does (any layer kinds, lineage kept); otherwise every layer
 * becomes a dense layer. Every tensor is checked (present, 2-d weight
 * [out, in], bias [out] or [out, 1], dtype) before anything is allocated.
 * Errors: MM_E_IO, MM_E_FORMAT (malformed container, missing or misshapen
 * tensor, unused tensors without MM_SAFETENSORS_ALLOW_EXTRA, ambiguous
 * names), MM_E_UNSUPPORTED (dtype), MM_E_OUT_OF_RANGE (inexact F64),
 * MM_E_NUMERIC (NaN, infinity), MM_E_INVALID_ARGUMENT (bad arch or names),
 * MM_E_CHECKSUM / MM_E_VERSION (a corrupt mmaint file); the message names
 * the file and the tensor. The new model's lineage is the file's (if it
 * has one) plus an "import" event. The caller owns *out (NULL on error). */
MM_API mm_status mm_safetensors_import(mm_model **out, const char *path, const char *arch,
                                       const char *names, unsigned flags);

/* Same from a memory buffer (borrowed for the call only). */
MM_API mm_status mm_safetensors_import_buffer(mm_model **out, const void *data, size_t len,
                                              const char *arch, const char *names,
                                              unsigned flags);

/* Write every layer's weights and biases as F32 tensors named by `names`
 * (NULL: "layers.{i}"), in layer order, with __metadata__ holding
 * "architecture" (the model's architecture in the JSON of doc/FORMAT.md
 * §4.1, every layer "dense"), "layer_names" (the prefixes, comma-separated)
 * and "lineage", so that mm_safetensors_import rebuilds the model from the
 * file alone. The file has no mmaint format tag or checksum: it is a plain
 * safetensors file for other tools (use mm_model_save for mmaint files).
 *
 * Layers of other kinds are written as the dense layer they compute:
 * pruned (masked or sparse) layers with zeros at pruned positions,
 * quantized layers (int8, fp16, bf16) with their dequantized weights (their
 * float master weights when they keep them); the integer weights and
 * scales are not exported. Saving is atomic (temporary file, fsync,
 * rename). MM_E_INVALID_ARGUMENT for bad names (a prefix that repeats, or
 * a list of the wrong length), MM_E_IO, MM_E_NUMERIC for non-finite
 * weights. */
MM_API mm_status mm_safetensors_export(const mm_model *model, const char *path,
                                       const char *names);

#ifdef __cplusplus
}
#endif
#endif /* MM_SAFETENSORS_H */
