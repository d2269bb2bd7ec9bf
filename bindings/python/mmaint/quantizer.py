"""mmaint.Quantizer: int8 / fp16 / bf16 models (mm_quantizer.h)."""

import json
from ctypes import byref, c_double

from . import _buffers as B
from ._handle import Owner
from ._lib import enum_from_name, lib, new_handle, text
from ._settings import Configurable, Settings

SETTINGS = Settings(lib.mm_quant_param_from_name, lib.mm_quant_param_name,
                    lib.mm_quant_param_bounds, lib.mm_quantizer_set, lib.mm_quantizer_get,
                    value_from_name=lib.mm_quant_value_from_name,
                    value_name=lib.mm_quant_value_name)


class Quantizer(Configurable, Owner):
    """``Quantizer("int8_static", observer="percentile")``.

    Schemes: int8_weight_only, int8_dynamic, int8_static (calibrate first),
    fp16, bf16. Settings (keywords, :meth:`set`): per_channel,
    weight_symmetric, act_symmetric, observer ('minmax', 'moving_minmax',
    'percentile', 'mse', 'entropy'), percentile, averaging, bins,
    keep_master, max_drop, drop_relative.

    Thread safety: a quantizer is used by one thread at a time; apply
    mutates the model (exclusive access).
    """

    _SETTINGS = SETTINGS

    def __init__(self, scheme="int8_static", **settings):
        s = enum_from_name(lib.mm_quant_scheme_from_name, scheme, "scheme")
        h = new_handle()
        lib.mm_quantizer_create(byref(h), s)
        self._own(h.value, lib.mm_quantizer_free)
        if settings:
            self.set(**settings)


    @property
    def scheme(self):
        return text(lib.mm_quant_scheme_name(lib.mm_quantizer_scheme(self._p())))

    def set_layer(self, index, enabled=True):
        """Quantize layer `index` (True, default) or keep it in float."""
        lib.mm_quantizer_set_layer(self._p(), index, 1 if enabled else 0)

    def calibrate(self, model, x):
        """Feed calibration samples through the float model (int8_static)."""
        xa, n, xk = B.samples(x, model.input_dim)
        lib.mm_quantizer_calibrate(self._p(), model._p(), xa, n)

    def apply(self, model):
        """Quantize the enabled layers of `model` in place. Optimizers made
        before must be recreated."""
        lib.mm_quantizer_apply(self._p(), model._p())

    def apply_with_tolerance(self, model, x, labels):
        """Quantize, then return layers to float until the accuracy drop on
        (x, labels) is within max_drop. Returns the final accuracy."""
        xa, n, xk = B.samples(x, model.input_dim)
        if labels is None:
            raise TypeError("apply_with_tolerance needs labels")
        lb = B.labels(labels, n)
        acc = c_double()
        lib.mm_quantizer_apply_with_tolerance(self._p(), model._p(), xa, lb.addr, n,
                                              byref(acc))
        return acc.value

    def prepare_qat(self, model):
        """Quantization-aware training: fake-quantize the enabled layers."""
        lib.mm_quantizer_prepare_qat(self._p(), model._p())

    @property
    def report_json(self):
        """The per-layer report of the last apply (JSON text, '' before)."""
        return text(lib.mm_quantizer_report(self._p()))

    @property
    def report(self):
        """The report as a dict (None before any apply)."""
        r = self.report_json
        return json.loads(r) if r else None

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Quantizer (closed)>"
        return "<mmaint.Quantizer %s>" % self.scheme
