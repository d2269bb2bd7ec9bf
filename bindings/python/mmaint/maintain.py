"""mmaint.Drift, mmaint.Server, mmaint.Maintainer and mmaint.Reservoir:
watching, serving and maintaining a deployed model (mm_drift.h, mm_server.h,
mm_maintainer.h)."""

import ctypes
from ctypes import Structure, byref, c_double, c_int, c_size_t, c_uint32, c_uint64, c_void_p

from . import _buffers as B
from ._handle import Borrow, Owner
from .errors import ShapeError
from ._lib import enum_from_name, fspath, lib, new_handle, text
from ._settings import Configurable, Settings
from .model import Model

_STATES = {0: "stable", 1: "warning", 2: "drift"}


class Drift(Owner):
    """A concept-drift detector: ``Drift("adwin", delta=0.002)``.

    Kinds: 'adwin' and 'page_hinkley' (feed a per-sample loss), 'ddm' and
    'eddm' (feed 1 for a wrong prediction, 0 for a right one). Keyword
    arguments are the detector's parameters (see mm_drift.h: delta, clock,
    max_buckets, min_window; lambda_ — or set("lambda", ...) —, alpha,
    min_samples; warning_level, drift_level). :meth:`update` returns
    'stable', 'warning' (DDM/EDDM) or 'drift'; after a drift the detector
    has reset itself for the next reference period.

    Thread safety: one thread at a time per detector.
    """

    def __init__(self, kind="adwin", **params):
        k = enum_from_name(lib.mm_drift_kind_from_name, kind, "kind")
        h = new_handle()
        lib.mm_drift_create(byref(h), k)
        self._own(h.value, lib.mm_drift_free)
        self._state = c_int()
        self._state_ref = byref(self._state)
        if params:
            self.set(**params)

    def set(self, **params):
        """Set parameters by name (a trailing underscore is dropped, so that
        Python keywords work: lambda_=50). Returns self."""
        p = self._p()
        for name, value in params.items():
            lib.mm_drift_set(p, name.rstrip("_").encode(), float(value))
        return self

    def get(self, name):
        out = c_double()
        lib.mm_drift_get(self._p(), name.rstrip("_").encode(), byref(out))
        return out.value

    def __getitem__(self, name):
        return self.get(name)

    def __setitem__(self, name, value):
        self.set(**{name: value})

    def update(self, value):
        """Feed one sample; returns 'stable', 'warning' or 'drift'."""
        lib.mm_drift_update(self._p(), value, self._state_ref)
        return _STATES.get(self._state.value, self._state.value)

    def reset(self):
        """Forget everything seen (parameters are kept)."""
        lib.mm_drift_reset(self._p())

    @property
    def kind(self):
        return text(lib.mm_drift_kind_name(lib.mm_drift_get_kind(self._p())))

    @property
    def samples(self):
        """Samples since the last reset or drift (ADWIN: the window length)."""
        return lib.mm_drift_samples(self._p())

    @property
    def estimate(self):
        """The current mean estimate (window mean, running mean, error rate...)."""
        return lib.mm_drift_estimate(self._p())

    @property
    def count(self):
        """Drifts reported since creation."""
        return lib.mm_drift_count(self._p())

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Drift (closed)>"
        return "<mmaint.Drift %s, %d samples, %d drifts>" % (self.kind, self.samples, self.count)


class Snapshot:
    """The model a Server serves at one moment, for a ``with`` block:

        with server.snapshot() as snap:
            snap.model.predict(x); snap.version

    ``snap.model`` is a read-only Model valid inside the block only."""

    def __init__(self, server):
        self._server = server
        self.model = None
        self.version = None
        self._ptr = None
        self._borrow = None

    def __enter__(self):
        s = self._server._p()
        ptr, ver = c_void_p(), c_uint64()
        lib.mm_server_acquire(s, byref(ptr), byref(ver))
        self._ptr = ptr.value
        self._borrow = Borrow(self._server._h)  # the server outlives the snapshot
        self.version = ver.value
        self.model = Model._wrap(self._ptr, free=_no_free)
        return self

    def __exit__(self, *exc):
        if self._ptr is not None:
            self.model.close()  # the Model object becomes unusable; nothing is freed
            lib.mm_server_release(self._server._h.ptr, self._ptr)
            self._ptr = None
            self._borrow = None
        return False


def _no_free(ptr):
    pass


class Server(Owner):
    """Serve a model while it is being updated (hot swap):
    ``Server(model)`` publishes a clone of `model` as version 1.

    Inference (:meth:`predict`, :meth:`forward`, :meth:`snapshot`) may run
    from many threads at once and never blocks; :meth:`publish` clones a new
    model and swaps it in atomically. The C server is freed once it is
    closed and every snapshot has been given back."""

    def __init__(self, model):
        h = new_handle()
        lib.mm_server_create(byref(h), model._p())
        self._own(h.value, lib.mm_server_free)
        self._dims = (model.input_dim, model.output_dim)

    def publish(self, model):
        """Publish a clone of `model` (same input and output widths, else
        ShapeError); returns its version."""
        ver = c_uint64()
        lib.mm_server_publish(self._p(), model._p(), byref(ver))
        return ver.value

    def predict(self, x, with_version=False):
        """Arg-max classes from one snapshot; with_version=True returns
        (labels, version)."""
        p = self._p()
        xa, n, xk = B.samples(x, self._dims[0])
        out, addr = B.new_ints(n)
        ver = c_uint64()
        lib.mm_server_predict(p, xa, n, addr, byref(ver))
        return (out, ver.value) if with_version else out

    def forward(self, x, with_version=False):
        """Raw outputs (n x outputs) from one snapshot."""
        p = self._p()
        xa, n, xk = B.samples(x, self._dims[0])
        out, addr = B.new_floats(n, self._dims[1])
        ver = c_uint64()
        lib.mm_server_forward(p, xa, n, addr, byref(ver))
        return (out, ver.value) if with_version else out

    def snapshot(self):
        """A context manager holding the current snapshot (see Snapshot)."""
        self._p()
        return Snapshot(self)

    @property
    def version(self):
        return lib.mm_server_version(self._p())

    @property
    def outstanding(self):
        """Snapshots acquired and not yet released."""
        return lib.mm_server_outstanding(self._p())

    @property
    def live_snapshots(self):
        return lib.mm_server_live_snapshots(self._p())

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Server (closed)>"
        return "<mmaint.Server version %d>" % self.version


class _ReportStruct(Structure):
    """mm_maint_report (mm_maintainer.h)."""
    _fields_ = [("struct_size", c_uint32), ("events", c_uint32), ("samples", c_uint64),
                ("version", c_uint64), ("rolling_accuracy", c_double),
                ("rolling_loss", c_double), ("holdout_accuracy", c_double),
                ("drift_state", c_int), ("drifts", c_uint64), ("rollbacks", c_uint64),
                ("promotions", c_uint64), ("challengers", c_uint64), ("learned", c_uint64),
                ("quarantined", c_uint64), ("new_ranges", c_size_t), ("correct", c_uint64)]


class _RangeStruct(Structure):
    """mm_maint_range (mm_maintainer.h)."""
    _fields_ = [("start", c_uint64), ("end", c_uint64), ("reason", c_int),
                ("accuracy", c_double), ("good_accuracy", c_double)]


_EVENTS = ((1, "checkpoint"), (2, "rollback"), (4, "drift"), (8, "promote"), (16, "reject"))


class MaintReport:
    """What a Maintainer call did (``events``: a set of 'checkpoint',
    'rollback', 'drift', 'promote', 'reject') and where it stands (the other
    fields of mm_maint_report; ``drift_state`` as 'stable'/'warning'/'drift')."""

    def __init__(self, s):
        self.events = {name for bit, name in _EVENTS if s.events & bit}
        for f, _ in _ReportStruct._fields_[2:]:
            setattr(self, f, getattr(s, f))
        self.drift_state = _STATES.get(s.drift_state, s.drift_state)

    def __repr__(self):
        return ("MaintReport(samples %d, version %d, rolling_accuracy %.4f, rollbacks %d, "
                "drifts %d, events %s)" % (self.samples, self.version, self.rolling_accuracy,
                                          self.rollbacks, self.drifts, sorted(self.events)))


class Maintainer(Configurable, Owner):
    """Guarded maintenance of a deployed model (mm_maintainer.h):
    ``Maintainer(model, "sgd", window=500, replay_size=2000)``.

    :meth:`feed` runs, per stream sample: progressive validation on the
    deployed version, then guarded learning on a working copy; windows whose
    holdout accuracy drops are rolled back and quarantined; drift can train
    and promote a challenger. `model` is copied (the Maintainer does not
    keep it). Settings by keyword (window, guard_threshold, ring, batch,
    replay_size, replay_mix, l2sp, detector ('none', 'adwin', 'page_hinkley',
    'ddm', 'eddm'; read back as a name), holdout_size, holdout_every,
    recent_size, challenger_epochs, seed, challenger_lr,
    challenger_delay); the online optimizer's settings with
    :meth:`set_optimizer`, the detector's with :meth:`set_detector`.

    Thread safety: one thread at a time; attach a Server to serve the
    deployed versions to other threads.
    """

    _SETTINGS = Settings(lib.mm_maint_param_from_name, lib.mm_maint_param_name,
                         None, lib.mm_maintainer_set, lib.mm_maintainer_get,
                         value_from_name=lib.mm_maint_value_from_name,
                         value_name=lib.mm_maint_value_name)

    def __init__(self, model, kind="sgd", **settings):
        k = enum_from_name(lib.mm_optim_kind_from_name, kind, "kind")
        h = new_handle()
        lib.mm_maintainer_create(byref(h), model._p(), k)
        self._own(h.value, lib.mm_maintainer_free)
        self._dim = model.input_dim
        self._server = None
        self._server_borrow = None
        if settings:
            self.set(**settings)

    @classmethod
    def bounds(cls, name):
        raise NotImplementedError("the library has no bounds query for maintainer settings")

    def set_optimizer(self, **settings):
        """Settings of the online optimizer and challengers (as Optimizer's)."""
        from .optimizer import SETTINGS as OPT
        p = self._p()
        for name, value in settings.items():
            lib.mm_maintainer_set_optimizer(p, OPT.key(name), OPT.value(name, value))
        return self

    def set_detector(self, **params):
        """Parameters of the drift detector (as Drift's; lambda_ for lambda)."""
        p = self._p()
        for name, value in params.items():
            lib.mm_maintainer_set_detector(p, name.rstrip("_").encode(), float(value))
        return self

    def set_holdout(self, x, labels):
        """Trusted samples the guard evaluates each window on (copied)."""
        xa, n, xk = B.samples(x, self._dim)
        lb = B.labels(labels, n)
        lib.mm_maintainer_set_holdout(self._p(), xa, lb.addr, n)

    def set_checkpoint_dir(self, path):
        """Also write a checkpoint file per accepted version into `path`."""
        lib.mm_maintainer_set_checkpoint_dir(self._p(), fspath(path))

    def attach_server(self, server):
        """Publish every new deployed version to `server` (kept alive: the C
        maintainer borrows it, so closing the Server while attached frees it
        only once this Maintainer is gone or attaches another server)."""
        lib.mm_maintainer_attach_server(self._p(), server._p())
        self._server = server
        self._server_borrow = Borrow(server._h)

    def feed(self, x, labels):
        """Feed stream samples with their labels; returns a MaintReport."""
        xa, n, xk = B.samples(x, self._dim)
        if type(labels) is int:
            labels = [labels]
        lb = B.labels(labels, n)
        r = _ReportStruct()
        lib.mm_maintainer_feed(self._p(), xa, lb.addr, n, byref(r))
        return MaintReport(r)

    def flush(self):
        """End the current window now (the guard runs); returns a MaintReport."""
        r = _ReportStruct()
        lib.mm_maintainer_flush(self._p(), byref(r))
        return MaintReport(r)

    @property
    def status(self):
        r = _ReportStruct()
        lib.mm_maintainer_status(self._p(), byref(r))
        return MaintReport(r)

    def deployed_model(self):
        """A copy of the deployed version (what serves)."""
        return self._copy(lib.mm_maintainer_model(self._p()))

    def working_model(self):
        """A copy of the working copy (what learns)."""
        return self._copy(lib.mm_maintainer_working_model(self._p()))

    @staticmethod
    def _copy(ptr):
        h = new_handle()
        lib.mm_model_clone(ptr, byref(h))
        return Model._wrap(h.value)

    @property
    def num_checkpoints(self):
        return lib.mm_maintainer_num_checkpoints(self._p())

    @property
    def num_quarantined(self):
        """Quarantined (rolled-back) windows."""
        return lib.mm_maintainer_num_quarantined(self._p())

    def quarantined(self):
        """The quarantined windows, oldest first: a list of dicts with
        ``start``, ``end`` (stream positions, 0-based, end exclusive),
        ``reason`` ('metric' or 'numeric'), ``accuracy`` and
        ``good_accuracy`` (the holdout accuracies compared; NaN for numeric
        trouble)."""
        p, out = self._p(), []
        for i in range(lib.mm_maintainer_num_quarantined(p)):
            r = _RangeStruct()
            lib.mm_maintainer_quarantined(p, i, byref(r))
            out.append({"start": r.start, "end": r.end,
                        "reason": "numeric" if r.reason == 2 else "metric",
                        "accuracy": r.accuracy, "good_accuracy": r.good_accuracy})
        return out

    def checkpoint(self, index):
        """(version, copy of the model) of checkpoint `index` in the memory
        ring, 0 = oldest; the last is the deployed version."""
        ptr, v = ctypes.c_void_p(), c_uint64()
        lib.mm_maintainer_checkpoint(self._p(), int(index), byref(ptr), byref(v))
        return v.value, self._copy(ptr)


_NOT_KEPT = ctypes.c_size_t(-1).value  # SIZE_MAX: mm_reservoir_offer did not keep the sample


def _count(value, what, lo=0):
    """An integer argument >= lo (TypeError / ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, got %s" % (what, type(value).__name__))
    if value < lo:
        raise ValueError("%s must be >= %d, got %d" % (what, lo, value))
    return value


class Reservoir(Owner):
    """A uniform sample of a stream (reservoir sampling, Vitter's algorithm
    R; mm_reservoir_* in mm_maintainer.h): ``Reservoir(capacity, dim,
    seed=0)`` holds up to `capacity` labelled samples of `dim` float32
    features; after ``seen`` offers each offered sample is held with
    probability capacity/seen. Deterministic for a seed. This is the
    Maintainer's replay memory, usable on its own.

    ``len(r)`` is the number of samples held (<= capacity).

    Thread safety: one thread at a time.
    """

    def __init__(self, capacity, dim, seed=0):
        _count(capacity, "capacity")
        _count(dim, "dim")
        _count(seed, "seed")
        h = new_handle()
        lib.mm_reservoir_create(byref(h), capacity, dim, seed)
        self._own(h.value, lib.mm_reservoir_free)
        self._dim = dim
        self._capacity = capacity
        self._slot = c_size_t()
        self._slot_ref = byref(self._slot)

    @property
    def dim(self):
        """Features per sample."""
        return self._dim

    @property
    def capacity(self):
        return self._capacity

    def offer(self, x, label):
        """Offer one sample (`dim` features) with its int label; the sample
        is copied if kept. Returns the slot it went to (0 <= slot <
        capacity), or None if it was not kept."""
        p = self._p()
        xa, n, xk = B.samples(x, self._dim)
        if n != 1:
            raise ShapeError("x: offer takes one sample of %d features, got %d samples"
                             % (self._dim, n))
        if isinstance(label, bool) or not isinstance(label, int):
            raise TypeError("label must be an int, got %s" % type(label).__name__)
        lib.mm_reservoir_offer(p, xa, label, self._slot_ref)
        slot = self._slot.value
        return None if slot == _NOT_KEPT else slot

    def __len__(self):
        return lib.mm_reservoir_size(self._p())

    size = property(__len__, doc="Samples held (<= capacity).")

    @property
    def seen(self):
        """Samples offered so far."""
        return lib.mm_reservoir_seen(self._p())

    def get(self, index):
        """(x, label) of held sample `index` (0 <= index < len; negative
        counts from the end): x is a copy of its `dim` features (a numpy
        float32 array, or array('f') without numpy). OutOfRangeError
        outside the held samples."""
        p = self._p()
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("index must be an int, got %s" % type(index).__name__)
        if index < 0:
            index += lib.mm_reservoir_size(p)
            if index < 0:
                raise IndexError("reservoir index out of range")
        ptr, label = c_void_p(), c_int()
        lib.mm_reservoir_get(p, index, byref(ptr), byref(label))
        x, addr = B.new_floats(self._dim)
        ctypes.memmove(addr, ptr.value, 4 * self._dim)
        return x, label.value

    def draw(self, k):
        """`k` samples drawn uniformly with replacement from the held ones:
        (x, labels) with x k x dim float32 and labels k int32 (numpy arrays,
        or flat array('f') / array('i') without numpy). StateError when the
        reservoir is empty."""
        p = self._p()
        _count(k, "k")
        x, xa = B.new_floats(k, self._dim)
        labels, la = B.new_ints(k)
        lib.mm_reservoir_draw(p, k, xa, la)
        return x, labels

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Reservoir (closed)>"
        return "<mmaint.Reservoir %d/%d samples of %d, %d seen>" % (
            len(self), self._capacity, self._dim, self.seen)
