/* ABI probe of the libmmaint 0.1.0 public headers, written by
 * tests/abi/gen_probe.py (scripts/abi-baseline.sh); do not edit. The abi
 * test compiles it against the current headers and compares it with
 * probe-0.1.0.abi (doc/ABI.md). */
#include <mm/mm.h>
#include <mm/mm_common.h>
#include <mm/mm_dataset.h>
#include <mm/mm_drift.h>
#include <mm/mm_maintainer.h>
#include <mm/mm_model.h>
#include <mm/mm_onnx.h>
#include <mm/mm_optimizer.h>
#include <mm/mm_pruner.h>
#include <mm/mm_quantizer.h>
#include <mm/mm_safetensors.h>
#include <mm/mm_server.h>

/* The integer macros of the public headers, as enumerators. */
enum mm_abi_probe_macro {
    MM_ABI_PROBE_MM_MAINT_EV_CHECKPOINT = MM_MAINT_EV_CHECKPOINT,
    MM_ABI_PROBE_MM_MAINT_EV_DRIFT = MM_MAINT_EV_DRIFT,
    MM_ABI_PROBE_MM_MAINT_EV_PROMOTE = MM_MAINT_EV_PROMOTE,
    MM_ABI_PROBE_MM_MAINT_EV_REJECT = MM_MAINT_EV_REJECT,
    MM_ABI_PROBE_MM_MAINT_EV_ROLLBACK = MM_MAINT_EV_ROLLBACK,
    MM_ABI_PROBE_MACRO_END_ = 0
};

struct mm_abi_probe {
    enum mm_status mm_status;
    enum mm_backend mm_backend;
    enum mm_activation mm_activation;
    enum mm_loss mm_loss;
    enum mm_init mm_init;
    enum mm_optim_kind mm_optim_kind;
    enum mm_schedule mm_schedule;
    enum mm_opt_param mm_opt_param;
    enum mm_fit_event mm_fit_event;
    enum mm_prune_criterion mm_prune_criterion;
    enum mm_prune_schedule mm_prune_schedule;
    enum mm_prune_sparse_format mm_prune_sparse_format;
    enum mm_prune_param mm_prune_param;
    enum mm_quant_scheme mm_quant_scheme;
    enum mm_quant_observer mm_quant_observer;
    enum mm_quant_param mm_quant_param;
    enum mm_safetensors_flag mm_safetensors_flag;
    enum mm_drift_kind mm_drift_kind;
    enum mm_drift_state mm_drift_state;
    enum mm_maint_param mm_maint_param;
    enum mm_maint_reason mm_maint_reason;
    enum mm_abi_probe_macro macros;
};

MM_API void mm_abi_probe(const struct mm_abi_probe *p);
void mm_abi_probe(const struct mm_abi_probe *p) { (void)p; }
