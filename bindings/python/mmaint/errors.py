"""Exceptions raised by the mmaint bindings.

Every non-OK ``mm_status`` returned by libmmaint becomes an instance of one
subclass of :class:`Error`, one subclass per status code. The message is the
library's detail message for the failing call (``mm_last_error_message()``),
or the status's short description when the library left none. Each class
also derives from the closest built-in exception, so ``except ValueError``
catches a bad shape as a Python programmer expects.

Errors found by the binding itself before calling the library (a float64
array where float32 is required, a closed object) are plain ``TypeError`` /
``ValueError``, except shape mismatches, which are :class:`ShapeError` like
the library's own.
"""

__all__ = [
    "Error", "InvalidArgumentError", "OutOfMemoryError", "ShapeError", "OutOfRangeError",
    "InputOutputError", "FormatError", "UnsupportedError", "StateError", "NumericError",
    "CancelledError", "ChecksumError", "VersionError", "NotFoundError", "InternalError",
    "error_class",
]


class Error(Exception):
    """A libmmaint call failed.

    Attributes: ``status`` (the negative mm_status code), ``name`` (its
    symbolic name such as ``"MM_E_SHAPE"``) and ``detail`` (the message).
    """

    status = None
    name = "MM_E_UNKNOWN"

    def __init__(self, detail, status=None, name=None):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if name is not None:
            self.name = name

    def __str__(self):
        return self.detail


class InvalidArgumentError(Error, ValueError):
    status, name = -1, "MM_E_INVALID_ARGUMENT"


class OutOfMemoryError(Error, MemoryError):
    status, name = -2, "MM_E_OUT_OF_MEMORY"


class ShapeError(Error, ValueError):
    status, name = -3, "MM_E_SHAPE"


class OutOfRangeError(Error, ValueError):
    status, name = -4, "MM_E_OUT_OF_RANGE"


class InputOutputError(Error, OSError):
    status, name = -5, "MM_E_IO"


class FormatError(Error, ValueError):
    status, name = -6, "MM_E_FORMAT"


class UnsupportedError(Error, NotImplementedError):
    status, name = -7, "MM_E_UNSUPPORTED"


class StateError(Error, RuntimeError):
    status, name = -8, "MM_E_STATE"


class NumericError(Error, ArithmeticError):
    status, name = -9, "MM_E_NUMERIC"


class CancelledError(Error):
    status, name = -10, "MM_E_CANCELLED"


class ChecksumError(Error, ValueError):
    status, name = -11, "MM_E_CHECKSUM"


class VersionError(Error, ValueError):
    status, name = -12, "MM_E_VERSION"


class NotFoundError(Error, LookupError):
    status, name = -13, "MM_E_NOT_FOUND"


class InternalError(Error, RuntimeError):
    status, name = -14, "MM_E_INTERNAL"


_BY_STATUS = {c.status: c for c in (
    InvalidArgumentError, OutOfMemoryError, ShapeError, OutOfRangeError, InputOutputError,
    FormatError, UnsupportedError, StateError, NumericError, CancelledError, ChecksumError,
    VersionError, NotFoundError, InternalError)}


def error_class(status):
    """The exception class for an mm_status code (Error for unknown codes)."""
    return _BY_STATUS.get(status, Error)
