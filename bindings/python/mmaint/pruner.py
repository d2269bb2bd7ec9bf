"""mmaint.Pruner: make a model smaller and faster (mm_pruner.h)."""

from ctypes import byref, c_double

from . import _buffers as B
from ._handle import Owner
from ._lib import enum_from_name, lib, new_handle, text
from ._settings import Configurable, Settings

SETTINGS = Settings(lib.mm_prune_param_from_name, lib.mm_prune_param_name,
                    lib.mm_prune_param_bounds, lib.mm_pruner_set, lib.mm_pruner_get,
                    value_from_name=lib.mm_prune_value_from_name,
                    value_name=lib.mm_prune_value_name)


class Pruner(Configurable, Owner):
    """``Pruner("magnitude_global", sparsity=0.9)``.

    Criteria: magnitude, magnitude_global, random, neuron_l1, neuron_l2,
    neuron_activation (calibrate first), user, neuron_user (set_scores).
    Settings (keywords, :meth:`set`): sparsity, schedule ('one_shot',
    'polynomial'), initial_sparsity, begin_step, end_step, frequency, power,
    seed, output_layer, sparse_format ('auto', 'sparse', 'dense').

    Thread safety: a pruner is used by one thread at a time; apply, finalize
    and attached optimizer steps need exclusive access to the model.
    """

    _SETTINGS = SETTINGS

    def __init__(self, criterion="magnitude_global", **settings):
        c = enum_from_name(lib.mm_prune_criterion_from_name, criterion, "criterion")
        h = new_handle()
        lib.mm_pruner_create(byref(h), c)
        self._own(h.value, lib.mm_pruner_free)
        self._attached = None
        if settings:
            self.set(**settings)


    @property
    def criterion(self):
        return text(lib.mm_prune_criterion_name(lib.mm_pruner_criterion(self._p())))

    def set_layer_sparsity(self, index, sparsity):
        """Per-layer target overriding `sparsity` (0 leaves the layer alone)."""
        lib.mm_pruner_set_layer_sparsity(self._p(), index, sparsity)

    def set_scores(self, index, scores):
        """Importance scores of layer `index` (criteria user / neuron_user):
        one per weight (outputs x inputs) or per neuron. Copied."""
        b = B.buf(scores, "f", "scores")
        lib.mm_pruner_set_scores(self._p(), index, b.addr, b.count)

    def calibrate(self, model, x):
        """Mean activations over samples x (criterion neuron_activation)."""
        xa, n, xk = B.samples(x, model.input_dim)
        lib.mm_pruner_calibrate(self._p(), model._p(), xa, n)

    def apply(self, model):
        """Prune `model` to the target sparsity now (masks)."""
        lib.mm_pruner_apply(self._p(), model._p())

    def attach(self, optimizer):
        """Gradual pruning: every step of `optimizer` updates the masks on
        this pruner's schedule. The optimizer keeps the pruner alive."""
        lib.mm_pruner_attach(self._p(), optimizer._p())
        self._forget()
        if optimizer._pruner is not None:  # the library detached the previous one
            optimizer._pruner._attached = None
        optimizer._pruner = self
        self._attached = optimizer

    def detach(self):
        """Stop gradual pruning (no-op when not attached)."""
        opt = self._attached
        if opt is not None and not opt.closed and opt._pruner is self:
            lib.mm_pruner_attach(None, opt._p())
        self._forget()

    def _forget(self):
        if self._attached is not None:
            if self._attached._pruner is self:
                self._attached._pruner = None
            self._attached = None

    def sparsity_at(self, step):
        """Target sparsity of the schedule at optimizer step `step`."""
        out = c_double()
        lib.mm_pruner_sparsity_at(self._p(), step, byref(out))
        return out.value

    def finalize(self, model, optimizer=None):
        """Make the pruning physical (smaller dense layers or sparse layers).
        Pass the optimizer training the model so it can go on training."""
        lib.mm_pruner_finalize(self._p(), model._p(),
                               None if optimizer is None else optimizer._p())
        self._forget()

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Pruner (closed)>"
        return "<mmaint.Pruner %s sparsity=%g>" % (self.criterion, self.get("sparsity"))
