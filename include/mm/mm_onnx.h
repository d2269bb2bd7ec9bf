/* mmaint — ONNX export and import of feed-forward models.
 *
 * ONNX is mmaint's second migration format (the native one is the model file
 * of mm_model_save): import models trained elsewhere (PyTorch's
 * torch.onnx.export) to keep maintaining them here, and export mmaint models
 * to run them in other ONNX runtimes. doc/ONNX.md lists the mapping in full.
 *
 * Export (opset 13, IR version 7, initializers as raw little-endian data):
 *   - each dense layer is a Gemm (transB = 1, W as [out, in] like
 *     mm_model_get_weights) followed by its activation node (Relu, Tanh,
 *     Sigmoid, LeakyRelu with the model's leaky slope; none for identity);
 *   - a model whose loss is MM_LOSS_SOFTMAX_XENT ends with Softmax(axis = 1):
 *     the graph output "probabilities" equals mm_model_predict_proba. A
 *     model with MM_LOSS_MSE has no Softmax: the output "output" equals
 *     mm_model_forward;
 *   - int8 layers (mm_quantizer's weight-only, dynamic and static kinds)
 *     export as QDQ: their int8 weights and per-channel or per-tensor scales
 *     feed DequantizeLinear before the Gemm, and static layers quantize
 *     their input with QuantizeLinear/DequantizeLinear using the calibrated
 *     activation scale. Sparse, masked, fp16 and bf16 layers export as the
 *     equivalent dense float Gemm (their effective float weights);
 *   - the graph input "input" is [batch, input_dim] with a symbolic batch.
 *
 * Import accepts a single-input, single-output chain of Gemm (or MatMul
 * optionally followed by Add of a bias), Relu, Tanh, Sigmoid, LeakyRelu,
 * a final Softmax over the last axis, and harmless Flatten / Reshape /
 * Identity, in float32, opset 13 to 21. A final Softmax gives a model with
 * loss MM_LOSS_SOFTMAX_XENT (mm_model_forward returns the logits before it,
 * mm_model_predict_proba the ONNX output); without it the loss is
 * MM_LOSS_MSE, so both mm_model_forward and mm_model_predict_proba return the
 * ONNX output (call mm_model_set_loss to train it as a classifier). A QDQ
 * graph written by mm_onnx_export comes back as the same int8 layer kinds.
 * Anything that cannot be run exactly is refused with MM_E_UNSUPPORTED and a
 * message naming the node (name and op_type) and the reason: other ops,
 * Gemm alpha/beta other than an exactly foldable power of two, transA = 1,
 * non-float32 tensors, shapes it cannot resolve, several inputs or
 * outputs, LeakyRelu slopes that differ between nodes (a model has one
 * leaky slope), nodes that do not lie on the chain. A malformed file
 * (corrupt protobuf, raw data not matching the dims, negative or
 * overflowing dims, missing initializers, cycles) gives MM_E_FORMAT; it
 * never crashes. The imported model's lineage records "imported from onnx"
 * with the producer's name and version.
 *
 * When the library is built without ONNX support (meson option -Donnx=
 * disabled, or protobuf-c / onnx.proto missing), every function below still
 * exists and returns MM_E_UNSUPPORTED with a message saying so;
 * mm_onnx_available() tells which build this is.
 *
 * Thread safety: export only reads the model (as mm_model_forward); import
 * creates a new model. Both may run from many threads at once.
 */
#ifndef MM_ONNX_H
#define MM_ONNX_H

#include "mm_common.h"
#include "mm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if this library was built with ONNX support, 0 otherwise. */
MM_API int mm_onnx_available(void);

/* Write `model` as an ONNX model file at `path`. Atomic: written to a
 * temporary file in the same directory, fsynced and renamed over `path`, so
 * a crash never leaves a half-written file. The model is borrowed.
 * MM_E_STATE for a model without layers, MM_E_UNSUPPORTED for a layer kind
 * with no ONNX equivalent (or a build without ONNX), MM_E_IO. */
MM_API mm_status mm_onnx_export(const mm_model *model, const char *path);

/* Read an ONNX model file into a new model. The caller owns *out (freed
 * with mm_model_free); *out is NULL on error. Errors as described above:
 * MM_E_IO, MM_E_FORMAT, MM_E_UNSUPPORTED, MM_E_NUMERIC (NaN/Inf weights),
 * MM_E_OUT_OF_MEMORY. */
MM_API mm_status mm_onnx_import(mm_model **out, const char *path);

/* Same, from `len` bytes at `data` (borrowed, not kept). */
MM_API mm_status mm_onnx_import_buffer(mm_model **out, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* MM_ONNX_H */
