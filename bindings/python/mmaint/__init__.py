"""mmaint: maintain deployed neural-network models (Python bindings).

Pure ctypes over libmmaint: every computation happens in the C library; this
package translates types, ownership and errors.

    import mmaint
    model = mmaint.Model("784-256-128-10:relu", seed=42)
    opt = mmaint.Optimizer(model, "adam", lr=1e-3)
    opt.fit(x_train, y_train, epochs=3, batch_size=64)
    opt.step(x_new, label_new)          # online: one new sample
    model.save("model.mmf")
    back = mmaint.Model.load("model.mmf")

See doc/python.md for the full guide.
"""

from . import _lib
from ._buffers import HAVE_NUMPY
from .dataset import Dataset
from .errors import (CancelledError, ChecksumError, Error, FormatError, InputOutputError,
                     InternalError, InvalidArgumentError, NotFoundError, NumericError,
                     OutOfMemoryError, OutOfRangeError, ShapeError, StateError,
                     UnsupportedError, VersionError)
from .maintain import Drift, MaintReport, Maintainer, Reservoir, Server, Snapshot
from .model import Layer, Model
from .optimizer import FitProgress, Optimizer
from .pruner import Pruner
from .quantizer import Quantizer

__version__ = "0.1.0"

__all__ = [
    "Model", "Optimizer", "Pruner", "Quantizer", "Dataset", "Layer", "FitProgress",
    "Drift", "Server", "Snapshot", "Maintainer", "MaintReport", "Reservoir",
    "Error", "InvalidArgumentError", "OutOfMemoryError", "ShapeError", "OutOfRangeError",
    "InputOutputError", "FormatError", "UnsupportedError", "StateError", "NumericError",
    "CancelledError", "ChecksumError", "VersionError", "NotFoundError", "InternalError",
    "version", "version_number", "library_path", "backend", "set_backend",
    "set_num_threads", "onnx_available", "HAVE_NUMPY",
]

_lib_ = _lib.lib


def version():
    """Version string of the loaded libmmaint ("0.1.0")."""
    return _lib_.mm_version_string().decode()


def version_number():
    """MM_VERSION_NUMBER of the loaded libmmaint (major*10000 + minor*100 + patch)."""
    return _lib_.mm_version_number()


def library_path():
    """The path the shared library was loaded from."""
    return _lib.path


def backend():
    """Name of the kernel backend in use ("blis" or "reference")."""
    return _lib_.mm_backend_name().decode()


_BACKENDS = {"reference": 1, "blis": 2}


def set_backend(name):
    """Select the kernel backend, process-wide ("blis" or "reference");
    UnsupportedError if the library was built without it. Do it while no
    other thread runs mmaint computations."""
    if name not in _BACKENDS:
        raise ValueError("backend must be 'blis' or 'reference', got %r" % (name,))
    _lib_.mm_backend_select(_BACKENDS[name])


def set_num_threads(n):
    """Threads the BLIS backend may use (>= 1), process-wide."""
    _lib_.mm_set_num_threads(n)


def onnx_available():
    """True if the loaded libmmaint was built with ONNX import/export."""
    return bool(_lib_.mm_onnx_available())
