"""mmaint.Optimizer: online and batch learning (mm_optimizer.h)."""

import math
import sys
from ctypes import addressof, byref, c_double, c_int32

from . import _buffers as B
from ._handle import Owner
from ._lib import (FIT_CALLBACK, FitProgressStruct, enum_from_name, fspath, lib, new_handle,
                   raise_status, text, unchecked)
from ._settings import Configurable, Settings
from .dataset import Dataset
from .errors import CancelledError
from .model import Model

SETTINGS = Settings(lib.mm_opt_param_from_name, lib.mm_opt_param_name, lib.mm_opt_param_bounds,
                    lib.mm_optimizer_set, lib.mm_optimizer_get,
                    aliases={"lr": "learning_rate"},
                    value_from_name=lib.mm_opt_value_from_name,
                    value_name=lib.mm_opt_value_name)

_EVENTS = {0: "batch", 1: "epoch_end"}
_step = unchecked("mm_optimizer_step")


class FitProgress:
    """A progress report of Optimizer.fit (a copy of mm_fit_progress).

    ``event`` is 'batch' or 'epoch_end'; ``epoch`` is 0-based; validation
    fields are NaN unless a validation set was given (at epoch ends).
    ``stopped`` (in fit's result) is True when the callback stopped fitting.
    """

    __slots__ = ("event", "epoch", "epochs", "batch", "batches", "step", "train_loss",
                 "train_accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "elapsed_seconds", "samples_per_second", "stopped")

    def __init__(self, s, stopped=False):
        self.event = _EVENTS.get(s.event, s.event)
        for f in self.__slots__[1:-1]:
            setattr(self, f, getattr(s, f))
        self.stopped = stopped

    def __repr__(self):
        return ("FitProgress(%s, epoch %d/%d, batch %d/%d, step %d, train_loss %.4f, "
                "val_accuracy %s%s)" % (self.event, self.epoch + 1, self.epochs, self.batch,
                                        self.batches, self.step, self.train_loss,
                                        "%.4f" % self.val_accuracy
                                        if not math.isnan(self.val_accuracy) else "nan",
                                        ", stopped" if self.stopped else ""))


def _dataset(data, labels, what, dim):
    """A Dataset and whether it was made here (and must be closed here)."""
    if isinstance(data, Dataset):
        if labels is not None:
            raise TypeError("%s: labels come from the Dataset; do not pass them too" % what)
        return data, False
    return Dataset(data, labels, dim), True


_hook_installed = False


def _install_unraisable_hook():
    """Route exceptions escaping a fit callback (only possible before its
    try: block, e.g. KeyboardInterrupt at entry) to that fit, which raises
    them when the library returns. Other unraisable exceptions go to the hook
    that was installed before."""
    global _hook_installed
    if _hook_installed:
        return
    previous = sys.unraisablehook

    def hook(u):
        state = getattr(u.object, "_mm_fit_state", None)
        if state is not None and u.exc_value is not None:
            if state["exc"] is None:
                state["exc"] = u.exc_value
            return
        previous(u)

    sys.unraisablehook = hook
    _hook_installed = True


class Optimizer(Configurable, Owner):
    """Updates a model's parameters: ``Optimizer(model, "adam", lr=1e-3)``.

    `kind` is 'sgd', 'adam' or 'adamw'; keyword arguments are settings:
    lr / learning_rate, momentum, nesterov, weight_decay, beta1, beta2,
    epsilon, clip_norm, schedule ('constant', 'step', 'exponential',
    'cosine'), step_size, gamma, warmup_steps, total_steps, min_lr,
    batch_size, epochs, seed, shuffle, patience, restore_best,
    max_grad_norm, grad_spike (also :meth:`set`, ``opt["lr"]``). The
    optimizer keeps its model alive.

    Thread safety: an optimizer and its model are used by one thread at a
    time (the model must not be read by other threads during step/fit).
    """

    _SETTINGS = SETTINGS

    def __init__(self, model, kind="adam", **settings):
        if not isinstance(model, Model):
            raise TypeError("Optimizer(model, ...): expected an mmaint.Model, got %s"
                            % type(model).__name__)
        k = enum_from_name(lib.mm_optim_kind_from_name, kind, "kind")
        h = new_handle()
        lib.mm_optimizer_create(byref(h), model._p(), k)
        self._init(h.value, model)
        if settings:
            self.set(**settings)

    def _init(self, ptr, model):
        self._own(ptr, lib.mm_optimizer_free, deps=(model._h,))
        self._model = model
        self._dim = lib.mm_model_input_dim(model._p())
        self._pruner = None
        # Scratch for step(): one label and the loss (an optimizer is used by
        # one thread at a time, as in C).
        self._label = c_int32()
        self._label_addr = addressof(self._label)
        self._loss = c_double()
        self._loss_ref = byref(self._loss)

    @classmethod
    def load(cls, model, path):
        """Restore optimizer state saved by :meth:`save` for `model` (typically
        Model.load(path) of the same file): continuing is bit-identical."""
        h = new_handle()
        lib.mm_optimizer_load(byref(h), model._p(), fspath(path))
        self = cls.__new__(cls)
        self._init(h.value, model)
        return self

    def save(self, path):
        """Save model + optimizer state in one model file, atomically."""
        lib.mm_optimizer_save(self._p(), fspath(path))

    # ---- settings ---------------------------------------------------------------

    def set_layer_lr_scale(self, layer, scale):
        """Layer `layer` learns with the scheduled rate times `scale` (in
        [0, 1e3], default 1; 0 leaves the layer unchanged). Saved with the
        optimizer state."""
        lib.mm_optimizer_set_layer_lr_scale(self._p(), self._model._index(layer), scale)

    def get_layer_lr_scale(self, layer):
        out = c_double()
        lib.mm_optimizer_get_layer_lr_scale(self._p(), self._model._index(layer), byref(out))
        return out.value

    def sync(self):
        """Adopt the model's layers after a structure change (replace_head,
        truncate, add_dense): state of kept layers stays, new layers start
        fresh. Returns self."""
        lib.mm_optimizer_sync(self._p())
        return self

    @property
    def kind(self):
        return text(lib.mm_optim_kind_name(lib.mm_optimizer_kind(self._p())))

    @property
    def model(self):
        """The Model this optimizer updates."""
        self._p()
        return self._model

    @property
    def steps(self):
        """Updates done so far."""
        return lib.mm_optimizer_steps(self._p())

    @property
    def current_lr(self):
        """The learning rate the next step will use (after the schedule)."""
        return lib.mm_optimizer_current_lr(self._p())

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Optimizer (closed)>"
        return "<mmaint.Optimizer %s lr=%g, %d steps>" % (self.kind, self.current_lr, self.steps)

    # ---- learning -----------------------------------------------------------------

    def step(self, x, labels=None, targets=None):
        """Online learning: one forward/backward pass over the samples in x
        (one or a few) and one update. `labels` is an int for one sample or
        int32 data; MSE models may give `targets`. Returns the mean loss
        before the update. NaN/Inf anywhere: NumericError and no update."""
        p = self._ptr
        if p is None:
            self._p()
        xa, n, xk = B.samples(x, self._dim)
        if type(labels) is int and n == 1:  # the common online case, no allocation
            if not -0x80000000 <= labels <= 0x7FFFFFFF:
                raise OverflowError("label %d does not fit in int32" % labels)
            self._label.value = labels
            laddr = self._label_addr
        else:
            lb = B.labels(labels, n)
            laddr = lb and lb.addr
        tb = None if targets is None else B.targets(
            targets, n, lib.mm_model_output_dim(self._model._p()))  # kept alive until the call
        taddr = tb and tb.addr
        st = _step(p, xa, laddr, taddr, n, self._loss_ref)
        if st:
            raise_status(st)
        return self._loss.value

    def fit(self, x, labels=None, *, validation=None, callback=None, **settings):
        """Batch learning: epochs of shuffled mini-batches.

        `x` is a Dataset, or feature data with `labels` (copied into a
        temporary Dataset). `validation` is a Dataset or an (x, labels) pair;
        with it each epoch ends with an evaluation (and patience= enables
        early stopping). Keyword settings (epochs=, batch_size=, lr=, seed=,
        ...) are applied first and stay set.

        `callback(progress)` is called after every mini-batch and epoch with a
        :class:`FitProgress`; returning True stops fitting (the updates done so
        far are kept; the result has ``stopped=True``). An exception raised by
        the callback stops fitting and propagates. Returns the last
        FitProgress.
        """
        p = self._p()
        if settings:
            self.set(**settings)
        made = []
        try:
            train, own = _dataset(x, labels, "x", self._dim)
            if own:
                made.append(train)
            val = None
            if validation is not None:
                if isinstance(validation, Dataset):
                    val = validation
                else:
                    try:
                        vx, vy = validation
                    except (TypeError, ValueError):
                        raise TypeError("validation: expected a Dataset or an (x, labels) "
                                        "pair") from None
                    val = Dataset(vx, vy, self._dim)
                    made.append(val)
            state = {"exc": None, "stopped": False}

            def on_progress(pp, user):
                if state["exc"] is not None:
                    return 1
                try:
                    if callback is not None and callback(FitProgress(pp.contents)):
                        state["stopped"] = True
                        return 1
                    return 0
                except BaseException as e:  # propagates after the C call returns
                    state["exc"] = e
                    return 1

            # A callback is always installed, so that Ctrl-C (KeyboardInterrupt)
            # is noticed between mini-batches even without a user callback. An
            # exception raised before the try above (a signal handler running at
            # the function's entry) reaches _unraisable instead.
            on_progress._mm_fit_state = state
            _install_unraisable_hook()
            cb = FIT_CALLBACK(on_progress)
            result = FitProgressStruct()
            try:
                lib.mm_optimizer_fit(p, train._p(), val._p() if val is not None else None, cb,
                                     None, byref(result))
            except CancelledError:
                if state["exc"] is None and not state["stopped"]:
                    raise
            if state["exc"] is not None:
                raise state["exc"]
            return FitProgress(result, state["stopped"])
        finally:
            for d in made:
                d.close()
