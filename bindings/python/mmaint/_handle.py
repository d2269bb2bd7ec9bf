"""Ownership of C handles.

Each Python object that owns a C handle (Model, Optimizer, ...) keeps it in a
:class:`Handle`. The C object is freed exactly once, when both

- its owner is done with it: ``close()``, the end of a ``with`` block, or the
  owner being garbage collected (``weakref.finalize``, which also runs at
  interpreter exit, in reverse order of creation); and
- nothing borrows it any more: an optimizer borrows its model, a zero-copy
  view borrows its dataset.

So ``model.close()`` while an optimizer still uses the model makes the Python
Model unusable at once but frees the C model only after the optimizer is
freed, whatever order the garbage collector picks.
"""

import threading
import weakref

_lock = threading.RLock()


class Handle:
    __slots__ = ("ptr", "_free", "_deps", "_borrowers", "_released", "__weakref__")

    def __init__(self, ptr, free, deps=()):
        self.ptr = ptr
        self._free = free
        self._deps = tuple(deps)
        self._borrowers = 0
        self._released = False
        for d in self._deps:
            d.borrow()

    def borrow(self):
        with _lock:
            self._borrowers += 1

    def unborrow(self):
        with _lock:
            self._borrowers -= 1
            self._maybe_free()

    def release(self):
        with _lock:
            self._released = True
            self._maybe_free()

    def _maybe_free(self):
        if self._released and self._borrowers == 0 and self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self._free(ptr)
            for d in self._deps:
                d.unborrow()


class Borrow:
    """Borrows a handle for as long as this object lives."""

    __slots__ = ("__weakref__",)

    def __init__(self, handle):
        handle.borrow()
        weakref.finalize(self, handle.unborrow)


class Owner:
    """Base of the classes that own a C handle."""

    _ptr = None
    _h = None
    _finalizer = None

    def _own(self, ptr, free, deps=()):
        self._h = Handle(ptr, free, deps)
        self._finalizer = weakref.finalize(self, self._h.release)
        self._ptr = ptr

    def close(self):
        """Free the C object (deferred while something still borrows it).
        Idempotent; the object is unusable afterwards."""
        self._ptr = None
        if self._finalizer is not None:
            self._finalizer()

    @property
    def closed(self):
        return self._ptr is None

    def _p(self):
        p = self._ptr
        if p is None:
            raise ValueError("%s is closed" % type(self).__name__)
        return p

    def __enter__(self):
        self._p()
        return self

    def __exit__(self, *exc):
        self.close()
        return False
