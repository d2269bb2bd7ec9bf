"""Enum-keyed settings (optimizer, pruner, quantizer, maintainer) by keyword name."""

from ctypes import byref, c_double, c_int

from ._lib import lib
from .errors import UnsupportedError


class Settings:
    """How one object kind maps setting names to the C enum and values.

    `aliases` maps short names (lr) to the library's names. Values of
    enum-valued settings may be given by name (schedule="cosine"): the
    library's `value_from_name` / `value_name` pair (mm_opt_value_from_name,
    ...) maps them, so the binding keeps no name tables of its own.
    """

    def __init__(self, from_name, name_of, bounds, setter, getter, aliases=None,
                 value_from_name=None, value_name=None):
        self._setter = setter
        self._getter = getter
        self._from_name = from_name
        self._name_of = name_of
        self._bounds = bounds
        self._aliases = aliases or {}
        self._value_from_name = value_from_name
        self._value_name = value_name
        self._cache = {}

    def key(self, name):
        """The C enum value of a setting name (raises InvalidArgumentError)."""
        k = self._cache.get(name)
        if k is None:
            if not isinstance(name, str):
                raise TypeError("setting names are str, got %s" % type(name).__name__)
            out = c_int()
            self._from_name(self._aliases.get(name, name).encode(), byref(out))
            k = self._cache[name] = out.value
        return k

    def canonical(self, name):
        return self._aliases.get(name, name)

    def value(self, name, value):
        """A setting value as the double the C setter takes. A str is the
        name of one of an enum-valued setting's values (InvalidArgumentError
        listing the valid names if it is none of them; TypeError for a
        setting that takes numbers)."""
        cname = self.canonical(name)
        if isinstance(value, str):
            if self._value_from_name is None:
                raise TypeError("setting %s takes a number, got %r" % (cname, value))
            out = c_double()
            try:
                self._value_from_name(self.key(name), value.encode(), byref(out))
            except UnsupportedError:
                raise TypeError("setting %s takes a number, got %r" % (cname, value)) from None
            return out.value
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError("setting %s takes a number, got %s"
                            % (cname, type(value).__name__)) from None

    def decode(self, name, number):
        """The Python value of a setting read back: a name for enum settings."""
        if self._value_name is not None:
            n = self._value_name(self.key(name), number)
            if n:
                return n.decode()
        return number

    def apply(self, ptr, settings):
        for name, value in settings.items():
            self._setter(ptr, self.key(name), self.value(name, value))

    def get(self, ptr, name):
        out = c_double()
        self._getter(ptr, self.key(name), byref(out))
        return self.decode(name, out.value)

    def bounds(self, name):
        lo, hi = c_double(), c_double()
        self._bounds(self.key(name), byref(lo), byref(hi))
        return lo.value, hi.value

    def names(self, first=1, last=64):
        """The names of every setting the library knows."""
        out = []
        for k in range(first, last + 1):
            n = self._name_of(k)
            if n:
                out.append(n.decode())
        return out


class Configurable:
    """Settings by name for Optimizer, Pruner and Quantizer (class attribute
    _SETTINGS): ``obj.set(lr=0.1)``, ``obj.get("lr")``, ``obj["lr"]``,
    ``obj["lr"] = 0.1``, ``Cls.bounds("lr")``, ``Cls.setting_names()``."""

    _SETTINGS = None

    def set(self, **settings):
        """Change settings by name (see the class documentation). Out of
        range: OutOfRangeError; a setting this kind does not use:
        UnsupportedError; an unknown name: InvalidArgumentError. Returns self."""
        self._SETTINGS.apply(self._p(), settings)
        return self

    def get(self, name):
        """A setting's value (enum-valued settings as their name)."""
        return self._SETTINGS.get(self._p(), name)

    def __getitem__(self, name):
        return self.get(name)

    def __setitem__(self, name, value):
        self.set(**{name: value})

    @classmethod
    def bounds(cls, name):
        """The valid closed range (lo, hi) of a setting."""
        return cls._SETTINGS.bounds(name)

    @classmethod
    def setting_names(cls):
        """The names of every setting the library knows for this kind."""
        return cls._SETTINGS.names()
