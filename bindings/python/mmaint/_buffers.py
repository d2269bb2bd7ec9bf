"""Array arguments and results.

Inputs are passed to the library without copying when they already hold the
right bytes:

- numpy arrays (if numpy is importable): C-contiguous float32 for features,
  int32 for labels, else a TypeError saying how to convert;
- ``array.array('f')`` / ``array.array('i')``, and any buffer (memoryview,
  bytearray, mmap, ...) with format ``'f'`` / ``'i'``, or raw bytes (format
  ``'B'``, read as native float32 / int32). Read-only buffers other than
  ``bytes`` are copied once (ctypes cannot point into them otherwise);
- lists / tuples of numbers (or of rows) are converted (a copy).

Results are numpy arrays when numpy is importable, else ``array.array``
(flat, row-major).
"""

import ctypes
from array import array

from .errors import ShapeError

try:  # numpy is optional
    import numpy as np
except ImportError:  # pragma: no cover - exercised by the numpy-less test run
    np = None

HAVE_NUMPY = np is not None
_ndarray = np.ndarray if HAVE_NUMPY else ()
_FORMATS = {"f": ("f", "=f", "<f", "@f"), "i": ("i", "=i", "<i", "@i")}
_NP_DTYPE = {"f": np.dtype(np.float32), "i": np.dtype(np.int32)} if HAVE_NUMPY else {}
_WHAT = {"f": "float32", "i": "int32"}
_F32 = _NP_DTYPE.get("f")


def _np_addr_ctypes(a):
    return a.ctypes.data


def _fast_np_addr():
    """A faster way to get a numpy array's data address than a.ctypes.data
    (which builds a helper object, ~2 us): read it from the array interface
    struct (numpy's __array_struct__ capsule; PyArrayInterface.data follows
    two ints, a char, two ints and two pointers: offset 40 on 64-bit). This
    relies on CPython's capsule layout, so it is used only if it gives the
    right address for test arrays here; otherwise a.ctypes.data is used."""
    if not HAVE_NUMPY or ctypes.sizeof(ctypes.c_void_p) != 8:
        return _np_addr_ctypes
    vp = ctypes.c_void_p
    off = ctypes.sizeof(ctypes.c_ssize_t) * 2  # PyObject_HEAD of the capsule

    def addr(a):
        cap = a.__array_struct__
        return vp.from_address(vp.from_address(id(cap) + off).value + 40).value

    try:
        base = np.arange(64, dtype=np.float32).reshape(8, 8)
        for t in (base, base[3], base[5:], np.zeros(3, np.int32), base[2:4].copy()):
            if addr(t) != t.ctypes.data:
                return _np_addr_ctypes
    except Exception:  # pragma: no cover - any surprise: the safe way
        return _np_addr_ctypes
    return addr


_np_addr = _fast_np_addr()


def _flatten(seq, code):
    if len(seq) and isinstance(seq[0], (list, tuple)):
        out = array(code)
        width = len(seq[0])
        for row in seq:
            if len(row) != width:
                raise ShapeError("rows of different lengths (%d and %d)" % (width, len(row)))
            out.extend(row)
        return out, (len(seq), width)
    return array(code, seq), None


class Buf:
    """An address the library may read (or write), its element count, the
    per-sample shape if known, and the object that keeps the memory alive."""

    __slots__ = ("addr", "count", "shape", "keep")

    def __init__(self, addr, count, shape, keep):
        self.addr = addr
        self.count = count
        self.shape = shape
        self.keep = keep


def buf(obj, code, what, writable=False):
    """Turn `obj` into a Buf of float32 (code 'f') or int32 ('i') elements.
    `what` names the argument in error messages."""
    t = type(obj)
    if t is array:
        if obj.typecode != code and not (code == "i" and obj.itemsize == 4
                                         and obj.typecode in "il"):
            raise TypeError("%s: expected array('%s') of %s, got array('%s')"
                            % (what, code, _WHAT[code], obj.typecode))
        return Buf(obj.buffer_info()[0], len(obj), None, obj)
    if t is _ndarray or isinstance(obj, _ndarray):
        if obj.dtype != _NP_DTYPE[code]:
            raise TypeError("%s: expected a numpy %s array, got %s (convert with "
                            ".astype(numpy.%s))" % (what, _WHAT[code], obj.dtype, _WHAT[code]))
        if not obj.flags.c_contiguous:
            raise TypeError("%s: expected a C-contiguous array (use numpy.ascontiguousarray)"
                            % what)
        if writable and not obj.flags.writeable:
            raise TypeError("%s: the array is read-only" % what)
        return Buf(_np_addr(obj), obj.size, obj.shape, obj)
    if t is list or t is tuple:
        a, shape = _flatten(obj, code)
        return Buf(a.buffer_info()[0], len(a), shape, a)
    if t is bytes and not writable:
        if len(obj) % 4:
            raise ShapeError("%s: %d bytes is not a whole number of 4-byte %s values"
                             % (what, len(obj), _WHAT[code]))
        return Buf(ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value, len(obj) // 4,
                   None, obj)
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError("%s: expected a numpy array, array('%s'), a buffer or a list, got %s"
                        % (what, code, t.__name__)) from None
    if mv.format in _FORMATS[code] and mv.itemsize == 4:
        count, shape = mv.nbytes // 4, (mv.shape if mv.ndim > 1 else None)
    elif mv.format in ("B", "b", "c"):
        if mv.nbytes % 4:
            raise ShapeError("%s: %d bytes is not a whole number of 4-byte %s values"
                             % (what, mv.nbytes, _WHAT[code]))
        count, shape = mv.nbytes // 4, None
    else:
        raise TypeError("%s: expected %s data (format '%s'), got buffer format '%s'"
                        % (what, _WHAT[code], code, mv.format))
    if not mv.c_contiguous:
        raise TypeError("%s: the buffer is not C-contiguous" % what)
    if mv.readonly:
        if writable:
            raise TypeError("%s: the buffer is read-only" % what)
        keep = (ctypes.c_char * mv.nbytes).from_buffer_copy(mv)
    else:
        keep = (ctypes.c_char * mv.nbytes).from_buffer(mv)
    return Buf(ctypes.addressof(keep), count, shape, keep)


def samples(obj, dim, what="x"):
    """A batch of samples of `dim` features: (address, n, keep-alive).

    The first branch is the per-sample hot path of online learning (a
    C-contiguous float32 numpy row); everything else goes through buf()."""
    if type(obj) is _ndarray and obj.dtype is _F32 and obj.flags.c_contiguous:
        nd = obj.ndim
        if nd == 1 or (nd == 2 and obj.shape[1] == dim):
            size = obj.size
            if size and dim and not size % dim:
                return _np_addr(obj), size // dim, obj
    b = buf(obj, "f", what)
    if dim == 0:
        raise ShapeError("%s: the model has no inputs" % what)
    if b.count % dim:
        raise ShapeError("%s: %d values is not a whole number of samples of %d features"
                         % (what, b.count, dim))
    shape = b.shape
    if shape is not None and len(shape) > 1:
        per = 1
        for s in shape[1:]:
            per *= s
        if per != dim:
            raise ShapeError("%s: samples of shape %s have %d features, the model takes %d"
                             % (what, tuple(shape[1:]), per, dim))
    n = b.count // dim
    if n == 0:
        raise ShapeError("%s: no samples" % what)
    return b.addr, n, b.keep


def labels(obj, n, what="labels"):
    """n int32 labels (an int is one label): Buf, or None for None."""
    if obj is None:
        return None
    if type(obj) is int:
        a = array("i", (obj,))
        b = Buf(a.buffer_info()[0], 1, None, a)
    else:
        b = buf(obj, "i", what)
    if b.count != n:
        raise ShapeError("%s: %d labels for %d samples" % (what, b.count, n))
    return b


def targets(obj, n, width, what="targets"):
    if obj is None:
        return None
    b = buf(obj, "f", what)
    if b.count != n * width:
        raise ShapeError("%s: %d values for %d samples of %d outputs"
                         % (what, b.count, n, width))
    return b


def new_floats(n, width=None):
    """A zeroed float32 result of n rows (n values if width is None)."""
    if HAVE_NUMPY:
        a = np.zeros((n,) if width is None else (n, width), np.float32)
        return a, _np_addr(a)
    a = array("f", bytes(4 * n * (1 if width is None else width)))
    return a, a.buffer_info()[0]


def new_ints(n):
    if HAVE_NUMPY:
        a = np.zeros(n, np.int32)
        return a, _np_addr(a)
    a = array("i", bytes(4 * n))
    return a, a.buffer_info()[0]


def view(addr, count, code, shape, owner):
    """A read-only zero-copy view of library memory; `owner` is kept alive as
    long as the view (and arrays made from it) exists."""
    carr = ((ctypes.c_float if code == "f" else ctypes.c_int32) * count).from_address(addr)
    carr._mm_owner = owner
    if HAVE_NUMPY:
        a = np.frombuffer(carr, dtype=_NP_DTYPE[code])
        if shape is not None:
            a = a.reshape(shape)
        a.flags.writeable = False
        return a
    mv = memoryview(carr).cast("B").cast(code)
    return mv.toreadonly()


def raw(obj, what):
    """(address, byte count, keep-alive) of any bytes-like object."""
    if type(obj) is bytes:
        return ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value, len(obj), obj
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError("%s: expected a bytes-like object, got %s"
                        % (what, type(obj).__name__)) from None
    if not mv.c_contiguous:
        raise TypeError("%s: the buffer is not C-contiguous" % what)
    if mv.readonly:
        keep = (ctypes.c_char * mv.nbytes).from_buffer_copy(mv)
    else:
        keep = (ctypes.c_char * mv.nbytes).from_buffer(mv)
    return ctypes.addressof(keep), mv.nbytes, keep
