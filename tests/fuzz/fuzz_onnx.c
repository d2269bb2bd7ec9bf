/* ONNX import (mm_onnx_import_buffer, doc/ONNX.md): the input is a whole
 * .onnx file (a protobuf ModelProto). The imported model is used
 * (fuzz_use_model). Built only with ONNX support. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mm_model *m = NULL;
    mm_clear_error();
    mm_status st = mm_onnx_import_buffer(&m, data, size);
    fuzz_check_new("mm_onnx_import_buffer", st, m);
    if (m) fuzz_use_model(m);
    mm_model_free(m);
    return 0;
}
