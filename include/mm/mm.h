/* mmaint — umbrella header. Link with `pkg-config --cflags --libs mmaint`. */
#ifndef MM_MM_H
#define MM_MM_H

#include "mm_common.h"
#include "mm_version.h"
#include "mm_model.h"
#include "mm_dataset.h"
#include "mm_optimizer.h"
#include "mm_pruner.h"
#include "mm_quantizer.h"
#include "mm_onnx.h"
#include "mm_safetensors.h"
#include "mm_drift.h"
#include "mm_server.h"
#include "mm_maintainer.h"

#endif
