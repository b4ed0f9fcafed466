# cython: boundscheck=False, wraparound=False
"""Reading transit: the layer both encodings share (transit_json_reader and transit_msgpack_reader
tokenize; this module gives the strings, cache codes and tags they find their values).

Everything the JVM may send is read, caches included; a value that is not valid transit is a
DecodeError naming where it starts. Python sequences are only indexed below their checked length, so
bounds checking and wraparound are off module-wide.
"""

import base64
import datetime as _dt
import re
import uuid as _uuid
from decimal import Decimal
from fractions import Fraction

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t

from csente.transit_rules cimport CACHE_DIGITS, MIN_CACHEABLE, u16len
from csente.types cimport Char, TaggedValue, keyword, symbol

from csente.transit_rules import EPOCH, URI
from csente.types import DecodeError, FrozenDict, List

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    int PyUnicode_4BYTE_KIND

_UTC = _dt.timezone.utc
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")

MARK = object()
"""What the string "^ " stands for: it opens a map written as an array (only at the head of one)."""


cdef class Tag:
    """A ``"~#tag"`` string just read: only meaningful at the head of an array or a one-entry object."""

    def __cinit__(self, str tag):
        self.tag = tag


cdef object _int_text(str text, bint allow_plus):
    if _INT_RE.match(text) is None or (not allow_plus and text.startswith("+")):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


cdef object _from_millis(object ms):
    try:
        return EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        raise ValueError(f"instant out of range: {ms}") from None


cdef class Reader:
    """The transit layer of reading, under either encoding: the read cache, what a string stands for
    (``~`` scalars, ``^`` cache codes, ``~#`` tags) and tagged values. Subclasses tokenize."""

    def __cinit__(self):
        self.cache = []
        self.cache_n = 0

    cdef object fail(self, str msg):
        raise DecodeError(msg, self.tok)

    cdef object lookup(self, str code, bint head):
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(code), idx = -1
        cdef uint32_t a, b
        if n == 2:
            a = PyUnicode_READ(PyUnicode_KIND(code), PyUnicode_DATA(code), 1) - 48
            if a < CACHE_DIGITS:
                idx = a
        elif n == 3:
            a = PyUnicode_READ(PyUnicode_KIND(code), PyUnicode_DATA(code), 1) - 48
            b = PyUnicode_READ(PyUnicode_KIND(code), PyUnicode_DATA(code), 2) - 48
            if a < CACHE_DIGITS and b < CACHE_DIGITS:
                idx = a * CACHE_DIGITS + b
        if idx < 0 or idx >= self.cache_n:
            return self.fail(f"unknown cache code {code!r}")
        v = self.cache[idx]
        if type(v) is Tag and not head:
            return self.fail(f"tag {(<Tag>v).tag!r} outside of a tagged value")
        return v

    cdef object string(self, str s, bint key, bint head):
        """The value a transit string stands for; ``key`` in map-key position, ``head`` first in an array."""
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
        cdef int kind
        cdef void* data
        cdef uint32_t c0, c1
        if n == 0:
            return s
        kind = PyUnicode_KIND(s)
        data = PyUnicode_DATA(s)
        c0 = PyUnicode_READ(kind, data, 0)
        if c0 == ord("^"):
            if n == 2 and PyUnicode_READ(kind, data, 1) == ord(" "):
                if head:
                    return MARK
                return self.fail("map marker '^ ' outside of the head of an array")
            return self.lookup(s, head)
        if c0 != ord("~") or n == 1:
            if key and (n >= MIN_CACHEABLE or (kind == PyUnicode_4BYTE_KIND and u16len(s) >= MIN_CACHEABLE)):
                self.remember(s)
            return s
        c1 = PyUnicode_READ(kind, data, 1)
        v = self.tilde(s, c1, head)
        if (key or c1 == ord(":") or c1 == ord("$") or c1 == ord("#")) and u16len(s) >= MIN_CACHEABLE:
            self.remember(v)
        return v

    cdef object tilde(self, str s, uint32_t c1, bint head):
        rest = s[2:]
        try:
            if self.handlers is not None and c1 != ord("#") and s[1] in self.handlers:
                return self.scalar(s[1], rest)
            if c1 == ord(":"):
                return keyword(rest)
            if c1 == ord("$"):
                return symbol(rest)
            if c1 == ord("#"):
                if not head:
                    return self.fail(f"tag {rest!r} outside of a tagged value")
                return Tag(rest)
            if c1 == ord("~") or c1 == ord("^") or c1 == ord("`"):
                return s[1:]
            return self.scalar(s[1], rest)
        except (ValueError, TypeError, ArithmeticError) as e:
            if isinstance(e, DecodeError):
                raise
            return self.fail(f"bad transit value {s[:40]!r}: {e}")

    cdef object scalar(self, str tag, str rest):
        """A scalar tag's value from its string rep (``~i``, ``~u``, ...) or a handler for ``tag``."""
        cdef PyObject* h
        cdef double d
        if self.handlers is not None:
            h = PyDict_GetItem(self.handlers, tag)
            if h != NULL:
                return (<object>h)(rest)
        if tag == "i":
            return _int_text(rest, False)
        if tag == "n":
            return _int_text(rest, True)
        if tag == "d":
            return self.double_text(rest)
        if tag == "f":
            if _DECIMAL_RE.match(rest) is None:
                raise ValueError("not a decimal")
            return Decimal(rest)
        if tag == "z":
            if rest == "NaN":
                return float("nan")
            if rest == "INF":
                return float("inf")
            if rest == "-INF":
                return float("-inf")
            raise ValueError("not NaN, INF or -INF")
        if tag == "c":
            return Char(rest)
        if tag == "_" and not rest:
            return None
        if tag == "?":
            if rest == "t":
                return True
            if rest == "f":
                return False
            raise ValueError("not t or f")
        if tag == "u":
            if len(rest) != 36:
                raise ValueError("not a UUID")
            return _uuid.UUID(rest)
        if tag == "m":
            return _from_millis(_int_text(rest, False))
        if tag == "t":
            t = _dt.datetime.fromisoformat(rest)
            return t.replace(tzinfo=_UTC) if t.tzinfo is None else t
        if tag == "r":
            return URI(rest)
        if tag == "b":
            return base64.b64decode(rest, validate=True)
        return self.fail(f"unknown scalar tag {tag!r}")

    cdef double double_text(self, str text) except? -1.0:
        cdef bytes b = text.encode("ascii", "replace")
        cdef char* end
        cdef double d = PyOS_string_to_double(b, &end, NULL)
        if end != PyBytes_AS_STRING(b) + PyBytes_GET_SIZE(b) or PyBytes_GET_SIZE(b) == 0:
            raise ValueError("not a double")
        return d

    cdef object finish(self, str tag, object rep, bint hashable):
        """A tagged value from its rep, which was read in the way ``_rep_mode(tag)`` asks."""
        cdef PyObject* h
        cdef Py_ssize_t n
        if self.handlers is not None:
            h = PyDict_GetItem(self.handlers, tag)
            if h != NULL:
                try:
                    return (<object>h)(rep)
                except (ValueError, TypeError, ArithmeticError) as e:
                    if isinstance(e, DecodeError):
                        raise
                    return self.fail(f"the handler for tag {tag!r} refused its value: {e}")
        t = type(rep)
        if tag == "'":
            return rep
        if tag == "set":
            if t is tuple:
                return frozenset(rep)
        elif tag == "list":
            if t is list or t is tuple:
                return List(rep)
        elif tag == "cmap":
            n = len(rep)
            if n % 2 == 0:
                m = {}
                for i in range(0, n, 2):
                    m[rep[i]] = rep[i + 1]
                return FrozenDict(m) if hashable else m
        elif tag == "ratio":
            if t is tuple and len(rep) == 2 and type(rep[0]) is int and type(rep[1]) is int and rep[1] != 0:
                return Fraction(rep[0], rep[1])
        elif len(tag) == 1:
            try:
                if t is str:
                    return self.scalar(tag, rep)
                if tag == "m" and t is int:
                    return _from_millis(rep)
                if tag == "u" and (t is list or t is tuple) and len(rep) == 2 \
                        and type(rep[0]) is int and type(rep[1]) is int:
                    return _uuid.UUID(int=((rep[0] & 0xFFFFFFFFFFFFFFFF) << 64) | (rep[1] & 0xFFFFFFFFFFFFFFFF))
            except (ValueError, TypeError, ArithmeticError) as e:
                if isinstance(e, DecodeError):
                    raise
                return self.fail(f"bad {tag!r} value: {e}")
            if tag not in "inrdfzc_?umtb":
                return TaggedValue(tag, rep)
        else:
            return TaggedValue(tag, rep)
        return self.fail(f"bad representation for tag {tag!r}: {t.__name__}")

    cdef int deeper(self, int depth) except -1:
        if depth > self.max_depth:
            self.fail(f"nesting deeper than max_depth={self.max_depth}")
        return 0

    cdef int setup(self, handlers, int max_depth) except -1:
        if max_depth < 0 or max_depth > MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}")
        self.max_depth = max_depth
        self.handlers = dict(handlers) if handlers else None
        self.kw_fast = self.handlers is None or ":" not in self.handlers
        return 0


cdef int check_size(Py_ssize_t size, Py_ssize_t max_size) except -1:
    if size > max_size:
        raise DecodeError(f"input longer than max_size={max_size}", max_size)
    return 0
