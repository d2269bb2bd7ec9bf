"""mmaint.Dataset: features and labels in library memory (mm_dataset.h)."""

import operator
from ctypes import byref

from . import _buffers as B
from ._handle import Borrow, Owner
from ._lib import fspath, lib, new_handle


# mm_dataset_load_csv's special label columns (mm_dataset.h)
_CSV_NO_LABELS, _CSV_LABEL_LAST = -1, -2


def _label_column(col):
    """A label_column argument as mm_dataset_load_csv's int."""
    if col is None:
        return _CSV_NO_LABELS
    if isinstance(col, str):
        if col == "last":
            return _CSV_LABEL_LAST
        if col == "none":
            return _CSV_NO_LABELS
        raise ValueError('label_column must be a column number, "last" or None ("none"), '
                         'got %r' % col)
    try:
        if isinstance(col, bool):
            raise TypeError
        col = operator.index(col)
    except TypeError:
        raise TypeError('label_column must be an int, "last" or None, got %s'
                        % type(col).__name__) from None
    if not -1000000 <= col <= 1000000:
        raise OverflowError("label_column %d is out of range" % col)
    # the library counts from the end from MM_CSV_LABEL_LAST (-2 is the last column)
    return col if col >= 0 else col - 1


class Dataset(Owner):
    """n samples of `dim` float32 features and optional int32 labels, held by
    the library (what Optimizer.fit consumes).

    Build one with :meth:`from_arrays` (copies the arrays), :meth:`load_idx`
    (MNIST's format, plain or gzip) or :meth:`load_csv`. :attr:`features` and
    :attr:`labels` are zero-copy read-only views of the library's memory; the
    C dataset lives as long as any view of it, even after close().

    Thread safety: read-only use from many threads is safe while nobody
    mutates it (standardize/minmax mutate).
    """

    def __init__(self, x, labels=None, dim=None):
        """Same as Dataset.from_arrays(x, labels, dim)."""
        if dim is None:
            shape = getattr(x, "shape", None)
            if shape is None and not isinstance(x, (list, tuple)):
                try:
                    shape = memoryview(x).shape
                except TypeError:
                    shape = None
            if shape is not None and len(shape) >= 2:
                dim = 1
                for s in shape[1:]:
                    dim *= s
            elif isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple)):
                dim = len(x[0])
            else:
                raise TypeError("Dataset: give dim= for flat feature data")
        xa, n, xk = B.samples(x, dim)
        lb = B.labels(labels, n)
        h = new_handle()
        lib.mm_dataset_create(byref(h), xa, lb and lb.addr, n, dim)
        self._own(h.value, lib.mm_dataset_free)

    @classmethod
    def from_arrays(cls, x, labels=None, dim=None):
        """Copy features x (n x dim float32, or flat with dim=) and labels (n
        int32, or None) into a new dataset."""
        return cls(x, labels, dim)

    @classmethod
    def _wrap(cls, ptr):
        self = cls.__new__(cls)
        self._own(ptr, lib.mm_dataset_free)
        return self

    @classmethod
    def load_idx(cls, images, labels=None):
        """Load IDX files (plain or gzip). Image bytes are scaled to [0, 1];
        28x28 images become 784 features."""
        h = new_handle()
        lib.mm_dataset_load_idx(byref(h), fspath(images),
                                None if labels is None else fspath(labels))
        return cls._wrap(h.value)

    @classmethod
    def load_csv(cls, path, label_column="last"):
        """Load a CSV file of numbers (a header line is skipped).
        `label_column`: "last" (the default) for labels in the last column,
        None (or "none") for no labels, else the 0-based column of the labels;
        a negative one counts from the end (-1 is the last column). The same
        convention as the CLI's --label-column."""
        h = new_handle()
        lib.mm_dataset_load_csv(byref(h), fspath(path), _label_column(label_column))
        return cls._wrap(h.value)

    def __len__(self):
        return lib.mm_dataset_size(self._p())

    size = property(__len__, doc="Number of samples.")

    @property
    def dim(self):
        return lib.mm_dataset_dim(self._p())

    @property
    def num_classes(self):
        """1 + the largest label, 0 without labels."""
        return lib.mm_dataset_num_classes(self._p())

    @property
    def features(self):
        """Read-only zero-copy view: n x dim float32 (numpy) or a flat
        memoryview of format 'f'. Keeps the C dataset alive."""
        p = self._p()
        n, dim = lib.mm_dataset_size(p), lib.mm_dataset_dim(p)
        return B.view(lib.mm_dataset_features(p), n * dim, "f", (n, dim), Borrow(self._h))

    @property
    def labels(self):
        """Read-only zero-copy view of the n int32 labels, or None."""
        p = self._p()
        addr = lib.mm_dataset_labels(p)
        if not addr:
            return None
        n = lib.mm_dataset_size(p)
        return B.view(addr, n, "i", None, Borrow(self._h))

    def slice(self, start, count):
        """A new dataset holding samples [start, start + count) (copies)."""
        h = new_handle()
        lib.mm_dataset_slice(self._p(), start, count, byref(h))
        return Dataset._wrap(h.value)

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("Dataset[...] takes a contiguous slice such as ds[100:200]")
        start, stop, _ = key.indices(len(self))
        return self.slice(start, max(0, stop - start))

    def standardize(self, reference=None):
        """Standardise each feature with the mean/std of `reference` (default
        this dataset). Mutates in place; returns self."""
        ref = self if reference is None else reference
        lib.mm_dataset_standardize(self._p(), ref._p())
        return self

    def minmax(self, reference=None):
        """Scale each feature to [0, 1] with the min/max of `reference`."""
        ref = self if reference is None else reference
        lib.mm_dataset_minmax(self._p(), ref._p())
        return self

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Dataset (closed)>"
        return "<mmaint.Dataset %d x %d, %d classes>" % (len(self), self.dim, self.num_classes)
