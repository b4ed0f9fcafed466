# cython: boundscheck=False, wraparound=False
"""What transit's two writers (transit_json_writer, transit_msgpack_writer) and its reader share.

The cache codes, the ``URI`` and ``WriteHandler`` types, and transit-clj's rules for which values are
written as one string (so quoted alone, and usable as plain map keys), with their string forms. The
C-level part is declared in transit_rules.pxd; :mod:`csente.transit` is the Python face.
"""

import base64
import datetime as _dt
import uuid as _uuid
from collections.abc import Mapping
from decimal import Decimal

from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.object cimport PyObject
from libc.math cimport isnan

from csente.types cimport Char, Keyword, Symbol

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
"""The instant transit's ``~m`` milliseconds count from."""


def _code(Py_ssize_t i):
    if i < CACHE_DIGITS:
        return "^" + chr(48 + i)
    return "^" + chr(48 + i // CACHE_DIGITS) + chr(48 + i % CACHE_DIGITS)


CACHE_CODES = tuple(_code(i) for i in range(CACHE_MAX))
"""The cache codes in the order they are handed out: "^0", "^1", ... "^[[" (CACHE_MAX of them)."""


class URI(str):
    """A transit ``~r`` value (java.net.URI on the JVM): the URI text, kept apart from plain strings."""

    __slots__ = ()

    def __repr__(self):
        return f"URI({str.__repr__(self)})"


cdef class WriteHandler:
    """How to write values of one Python type, like transit-clj's ``write-handler``.

    ``tag`` of one character makes a scalar, written as the string ``"~<tag><string_rep(x)>"``
    (``string_rep`` defaults to ``rep``, which must then return a str); a longer tag makes a tagged
    value ``["~#<tag>", rep(x)]`` whose rep may be any encodable value.
    """

    def __init__(self, str tag, rep, string_rep=None):
        if not tag:
            raise ValueError("a transit tag needs at least one character")
        self.tag = tag
        self.rep = rep
        self.string_rep = string_rep

    def __repr__(self):
        return f"WriteHandler({self.tag!r}, {self.rep!r}, {self.string_rep!r})"

    cdef str scalar_text(self, object o):
        fn = self.string_rep if self.string_rep is not None else self.rep
        text = fn(o)
        if type(text) is not str:
            raise TypeError(f"the handler for scalar tag {self.tag!r} must give a str, got {type(text).__name__}")
        return "~" + self.tag + <str>text


cdef object _NONE_TYPE = type(None)
# types written as one string (or JSON scalar): their maps use "^ " / objects, and alone they are quoted
cdef frozenset _SCALAR_TYPES = frozenset(
    [str, Keyword, Symbol, int, float, bool, _NONE_TYPE, Char, _uuid.UUID, _dt.datetime, Decimal, URI, bytes])
cdef tuple _SCALAR_BASES = (str, int, float, _uuid.UUID, _dt.datetime, Decimal, bytes)



cdef inline bint _stringable(object k, dict handlers):
    """Whether transit-clj writes this map key as a string (else the map becomes a ``cmap``)."""
    cdef type t = type(k)
    cdef PyObject* h
    if t is str or t is Keyword:
        return True
    if handlers is not None:
        h = PyDict_GetItem(handlers, t)
        if h != NULL:
            return len((<WriteHandler>h).tag) == 1
    if t in _SCALAR_TYPES:
        return True
    return isinstance(k, _SCALAR_BASES)


cdef bint all_stringable(object m, dict handlers):
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    if isinstance(m, dict):
        while PyDict_Next(m, &pos, &k, &v):
            if not _stringable(<object>k, handlers):
                return False
        return True
    for key in m:
        if not _stringable(key, handlers):
            return False
    return True


cdef long long millis(object d) except? -1:
    if d.tzinfo is None or d.utcoffset() is None:
        raise ValueError("transit writes instants: a naive datetime has no time zone")
    delta = d - EPOCH
    return <long long>delta.days * 86400000 + <long long>delta.seconds * 1000 + delta.microseconds // 1000


cdef str _verbose_time(object d):
    millis(d)  # the same naive check
    u = d.astimezone(_dt.timezone.utc)
    return (f"~t{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f".{u.microsecond // 1000:03d}Z")


cdef str _decimal_text(object d):
    if not d.is_finite():
        raise ValueError(f"transit has no BigDecimal for {d!r}")
    return "~f" + str(d)  # Python and BigDecimal.toString follow the same scientific-notation rules


cdef object scalar_text(object o, type t, bint verbose):
    """The transit string of a scalar written as one string, or None when ``o`` is not such a scalar."""
    if t is Char:
        return "~c" + (<Char>o).char
    if t is _uuid.UUID:
        return "~u" + str(o)
    if t is _dt.datetime:
        return _verbose_time(o) if verbose else f"~m{millis(o)}"
    if t is Decimal:
        return _decimal_text(o)
    if t is URI:
        return "~r" + str.__str__(o)
    if t is bytes:
        return "~b" + base64.b64encode(o).decode("ascii")
    return None


cdef str special_double(double d):
    if isnan(d):
        return "~zNaN"
    return "~zINF" if d > 0 else "~z-INF"


cdef WriteHandler _handler_for(dict handlers, object o):
    """The user handler for ``o``'s type or, failing that, for one of its base classes."""
    cdef PyObject* h
    if handlers is None:
        return None
    h = PyDict_GetItem(handlers, type(o))
    if h != NULL:
        return <WriteHandler>h
    for t, handler in handlers.items():
        if isinstance(o, t):
            return <WriteHandler>handler
    return None


cdef object _plain(object o):
    """A subclass instance of a built-in type as the built-in value, or None if there is none."""
    if isinstance(o, str):
        return str.__str__(o)
    if isinstance(o, int):
        return int.__index__(o)
    if isinstance(o, float):
        return float.__float__(o)
    return None


cdef dict handler_dict(handlers):
    if not handlers:
        return None
    result = dict(handlers)
    for t, h in result.items():
        if not isinstance(t, type) or not isinstance(h, WriteHandler):
            raise TypeError("handlers maps types to WriteHandler instances")
    return result


cdef bint is_scalar(object o, dict handlers):
    """Whether transit-clj would quote ``o`` at the top level (``["~#'", o]``)."""
    cdef type t = type(o)
    if (t is list or t is dict) and handlers is None:
        return False
    return _stringable(o, handlers)


cdef object resolve_other(object o, dict handlers, Other* kind):
    """How both writers write a value of a type their fast path does not know: a subclass of a supported
    type, or a type with a handler registered for a base class. Sets ``*kind``; returns the handler
    (OTHER_HANDLER), the built-in value to write instead (OTHER_VALUE), or None."""
    cdef WriteHandler h = _handler_for(handlers, o)
    if h is not None:
        kind[0] = OTHER_HANDLER
        return h
    if isinstance(o, Mapping):
        kind[0] = OTHER_MAP
        return None
    if isinstance(o, (list, tuple)):
        kind[0] = OTHER_ITEMS
        return None
    if isinstance(o, (set, frozenset)):
        kind[0] = OTHER_SET
        return None
    kind[0] = OTHER_VALUE
    for base in (_dt.datetime, _uuid.UUID, Decimal, bytes):
        if isinstance(o, base):
            return _rebase(o, base)
    plain = _plain(o)
    if plain is not None:
        return plain
    raise TypeError(f"transit cannot write a value of type {type(o).__module__}.{type(o).__qualname__}")


cdef object _rebase(object o, type base):
    """An instance of exactly ``base`` equal to the subclass instance ``o``."""
    if base is _dt.datetime:
        return _dt.datetime(o.year, o.month, o.day, o.hour, o.minute, o.second, o.microsecond, o.tzinfo, fold=o.fold)
    if base is _uuid.UUID:
        return _uuid.UUID(int=o.int)
    if base is bytes:
        return bytes(o)
    return Decimal(str(o))
