# cython: boundscheck=False, wraparound=False
"""EDN writing for Sente's default packer (``dumps``): exactly Clojure's ``pr-str``.

Every Sente message goes through here, so it is written against the C API: the writer appends UTF-8 to
one growing C buffer (bytebuf.pxd) and makes a single ``str`` at the end. Its only array index is a
byte (ESCAPE has 256 entries), hence no bounds checks.
"""

import collections.abc
import datetime as _dt
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

from libc.math cimport isinf, isnan
from libc.string cimport memcpy

from csente cimport bytebuf
from csente.bytebuf cimport Buffer
from csente.numbers cimport JAVA_DOUBLE_MAX, LONG_MAX_TEXT, java_double, write_long
from csente.types cimport Char, Keyword, Symbol, TaggedValue, jvm_text

from csente.types import FrozenDict, List

cdef extern from "Python.h":
    ctypedef struct PyObject
    int PyUnicode_IS_ASCII(object) noexcept
    void* PyUnicode_DATA(object) noexcept
    Py_ssize_t PyUnicode_GET_LENGTH(object) noexcept
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) noexcept
    object PyUnicode_AsEncodedString(object, const char*, const char*)
    char* PyBytes_AS_STRING(object) noexcept
    Py_ssize_t PyBytes_GET_SIZE(object) noexcept
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    double PyFloat_AS_DOUBLE(object) noexcept
    int PyDict_Next(object, Py_ssize_t*, PyObject**, PyObject**) noexcept
    Py_ssize_t PyList_GET_SIZE(object) noexcept
    PyObject* PyList_GET_ITEM(object, Py_ssize_t) noexcept
    Py_ssize_t PyTuple_GET_SIZE(object) noexcept
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t) noexcept
    void PyErr_Clear() noexcept

STRING_ESCAPES = (b'"\\\n\t\r\x0c\x08', b'"\\ntrfb')
"""Clojure's string escapes: each character of the first, written as a backslash and the letter below it."""

cdef unsigned char ESCAPE[256]   # UTF-8 byte of a string -> letter after the backslash, 0 = written raw
for _c, _e in zip(*STRING_ESCAPES):
    ESCAPE[_c] = _e

_UTC = _dt.timezone.utc
cdef dict _NAMED_CHARS = {"\n": "newline", " ": "space", "\t": "tab", "\b": "backspace",
                          "\f": "formfeed", "\r": "return"}
cdef object _Mapping = collections.abc.Mapping
cdef object _AbstractSet = collections.abc.Set
cdef object _datetime = _dt.datetime


cdef class _Writer:
    cdef Buffer out
    cdef object writers
    cdef bint namespace_maps
    cdef bint wire             # text for the wire: lone surrogates as the JVM encodes them (jvm_text)
    cdef int depth

    def __dealloc__(self):
        bytebuf.release(&self.out)

    cdef int put_text(self, str s) except -1:
        """The UTF-8 of ``s`` as is (lone surrogates pass through, to come back in the final str)."""
        cdef Py_ssize_t k
        cdef const char* p
        if PyUnicode_IS_ASCII(s):
            return bytebuf.put(&self.out, <const char*>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
        p = PyUnicode_AsUTF8AndSize(s, &k)
        if p != NULL:
            return bytebuf.put(&self.out, p, k)
        PyErr_Clear()
        b = self.surrogate_text(s)
        return bytebuf.put(&self.out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef bytes surrogate_text(self, str s):
        """The UTF-8 of a string holding surrogates: kept as is (pr-str), or as the JVM writes it (wire)."""
        if self.wire:
            return PyUnicode_AsEncodedString(jvm_text(s), "utf-8", "surrogatepass")
        return PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass")

    cdef int put_str(self, str s) except -1:
        """A string literal: escapes only " \\ and \\n \\t \\r \\f \\b, like Clojure's printer."""
        cdef Py_ssize_t k, n, run = 0
        cdef const unsigned char* p
        cdef unsigned char c
        cdef char* out
        if PyUnicode_IS_ASCII(s):
            p = <const unsigned char*>PyUnicode_DATA(s)
            n = PyUnicode_GET_LENGTH(s)
        else:
            p = <const unsigned char*>PyUnicode_AsUTF8AndSize(s, &n)
            if p == NULL:
                PyErr_Clear()
                b = self.surrogate_text(s)
                p = <const unsigned char*>PyBytes_AS_STRING(b)
                n = PyBytes_GET_SIZE(b)
        bytebuf.reserve(&self.out, 2 * n + 2)
        out = self.out.data + self.out.len
        out[0] = b'"'
        out += 1
        for k in range(n):
            c = ESCAPE[p[k]]
            if c:
                memcpy(out, p + run, k - run)
                out += k - run
                out[0] = b'\\'
                out[1] = c
                out += 2
                run = k + 1
        memcpy(out, p + run, n - run)
        out += n - run
        out[0] = b'"'
        self.out.len = out + 1 - self.out.data
        return 0

    cdef int put_long(self, long long v) except -1:
        bytebuf.reserve(&self.out, LONG_MAX_TEXT)
        self.out.len += write_long(v, self.out.data + self.out.len)
        return 0

    cdef int put_int(self, object x) except -1:
        cdef int overflow
        cdef long long v = PyLong_AsLongLongAndOverflow(x, &overflow)
        if not overflow:
            return self.put_long(v)
        self.put_text(str(x))
        return bytebuf.putc(&self.out, b'N')

    cdef int put_float(self, double v) except -1:
        """Java's Double.toString with shortest round-trip digits; Clojure's ##NaN ##Inf ##-Inf."""
        cdef char out[JAVA_DOUBLE_MAX]
        if isnan(v):
            return bytebuf.put(&self.out, b"##NaN", 5)
        if isinf(v):
            return bytebuf.put(&self.out, b"##-Inf", 6) if v < 0 else bytebuf.put(&self.out, b"##Inf", 5)
        return bytebuf.put(&self.out, out, java_double(v, out))

    cdef int put_char(self, str c) except -1:
        name = _NAMED_CHARS.get(c)
        bytebuf.putc(&self.out, b'\\')
        return self.put_text(c if name is None else <str>name)

    cdef int enter(self) except -1:
        self.depth += 1
        if self.depth > HARD_MAX_DEPTH:
            raise ValueError(f"EDN nesting deeper than {HARD_MAX_DEPTH} (a circular structure?)")
        return 0

    cdef int put_seq(self, object items, char open_, char close) except -1:
        """A vector or list from a list or tuple (by index, re-checking the length: writers may mutate)."""
        cdef Py_ssize_t k = 0
        cdef bint is_list = isinstance(items, list)
        self.enter()
        bytebuf.putc(&self.out, open_)
        while k < (PyList_GET_SIZE(items) if is_list else PyTuple_GET_SIZE(items)):
            if k:
                bytebuf.putc(&self.out, b' ')
            x = <object>(PyList_GET_ITEM(items, k) if is_list else PyTuple_GET_ITEM(items, k))
            self.write(x)
            k += 1
        self.depth -= 1
        return bytebuf.putc(&self.out, close)

    cdef int put_iter(self, object items, const char* open_, char close) except -1:
        cdef bint first = True
        self.enter()
        bytebuf.put(&self.out, open_, len(open_))
        for x in items:
            if not first:
                bytebuf.putc(&self.out, b' ')
            first = False
            self.write(x)
        self.depth -= 1
        return bytebuf.putc(&self.out, close)

    cdef int put_map(self, object m) except -1:
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef bint first = True
        cdef object ns = self.common_ns(m) if self.namespace_maps else None
        self.enter()
        if ns is not None:
            bytebuf.put(&self.out, b"#:", 2)
            self.put_text(ns)
        bytebuf.putc(&self.out, b'{')
        if type(m) is dict or type(m) is FrozenDict:
            while PyDict_Next(m, &pos, &k, &v):
                key = <object>k
                value = <object>v
                if not first:
                    bytebuf.put(&self.out, b", ", 2)
                first = False
                self.put_key(key, ns)
                bytebuf.putc(&self.out, b' ')
                self.write(value)
        else:
            for key, value in m.items():
                if not first:
                    bytebuf.put(&self.out, b", ", 2)
                first = False
                self.put_key(key, ns)
                bytebuf.putc(&self.out, b' ')
                self.write(value)
        self.depth -= 1
        return bytebuf.putc(&self.out, b'}')

    cdef int put_key(self, object key, object ns) except -1:
        if ns is None:
            return self.write(key)
        if type(key) is Keyword:
            bytebuf.putc(&self.out, b':')
        return self.put_text((<Symbol>key).name if type(key) is Symbol else (<Keyword>key).name)

    cdef object common_ns(self, object m):
        """Clojure's lift-ns: the namespace every key (keyword or symbol) shares, else None."""
        ns = None
        for key in m:
            if type(key) is Keyword:
                key_ns = (<Keyword>key).ns
            elif type(key) is Symbol:
                key_ns = (<Symbol>key).ns
            else:
                return None
            if key_ns is None or (ns is not None and key_ns != ns):
                return None
            ns = key_ns
        return ns

    cdef int put_tagged(self, str tag, object value) except -1:
        self.enter()
        bytebuf.putc(&self.out, b'#')
        self.put_text(tag)
        bytebuf.putc(&self.out, b' ')
        self.write(value)
        self.depth -= 1
        return 0

    cdef int write(self, object x) except -1:
        cdef type t = type(x)
        if t is str:
            return self.put_str(x)
        if t is Keyword:
            bytebuf.putc(&self.out, b':')
            return self.put_text((<Keyword>x).text)
        if t is int:
            return self.put_int(x)
        if t is dict:
            return self.put_map(x)
        if t is list:
            return self.put_seq(x, b'[', b']')
        if x is None:
            return bytebuf.put(&self.out, b"nil", 3)
        if x is True:
            return bytebuf.put(&self.out, b"true", 4)
        if x is False:
            return bytebuf.put(&self.out, b"false", 5)
        if t is float:
            return self.put_float(PyFloat_AS_DOUBLE(x))
        if t is tuple:
            return self.put_seq(x, b'[', b']')
        if t is Symbol:
            return self.put_text((<Symbol>x).text)
        if t is List:
            return self.put_seq(x, b'(', b')')
        if t is frozenset or t is set:
            return self.put_iter(x, b"#{", b'}')
        if t is FrozenDict:
            return self.put_map(x)
        if t is Char:
            return self.put_char((<Char>x).char)
        if t is TaggedValue:
            return self.put_tagged((<TaggedValue>x).tag, (<TaggedValue>x).value)
        return self.write_other(x, t)

    cdef int write_other(self, object x, type t) except -1:
        """Everything but the hot types: the other value types, then writers, then subclasses."""
        if t is UUID:
            return self.put_uuid(x)
        if t is _datetime:
            return self.put_inst(x)
        if t is Fraction:
            return self.put_ratio(x)
        if t is Decimal:
            return self.put_decimal(x)
        if self.writers is not None:
            writer = self.writers.get(t)
            if writer is None:
                for base in t.__mro__[1:]:
                    writer = self.writers.get(base)
                    if writer is not None:
                        break
            if writer is not None:
                tag, rep = writer(x)
                return self.put_tagged(tag, rep)
        if isinstance(x, int):
            return self.put_int(int(x))
        if isinstance(x, float):
            return self.put_float(float(x))
        if isinstance(x, str):
            return self.put_str(str(x))
        if isinstance(x, List):
            return self.put_seq(x, b'(', b')')
        if isinstance(x, (list, tuple)):
            return self.put_seq(x, b'[', b']')
        if isinstance(x, _Mapping):
            return self.put_map(x)
        if isinstance(x, _AbstractSet):
            return self.put_iter(x, b"#{", b'}')
        if isinstance(x, UUID):
            return self.put_uuid(x)
        if isinstance(x, _datetime):
            return self.put_inst(x)
        if isinstance(x, Fraction):
            return self.put_ratio(x)
        if isinstance(x, Decimal):
            return self.put_decimal(x)
        raise TypeError(f"EDN can't write {t.__module__}.{t.__qualname__} values "
                        f"(pass writers={{{t.__qualname__}: ...}} to give it a tag)")

    cdef int put_uuid(self, object x) except -1:
        bytebuf.put(&self.out, b'#uuid "', 7)
        self.put_text(str(x))
        return bytebuf.putc(&self.out, b'"')

    cdef int put_ratio(self, object x) except -1:
        """A clojure.lang.Ratio prints as n/d; one with denominator 1 can only be an integer in Clojure."""
        if x.denominator == 1:
            return self.put_int(int(x.numerator))
        self.put_text(str(x.numerator))
        bytebuf.putc(&self.out, b'/')
        return self.put_text(str(x.denominator))

    cdef int put_decimal(self, object x) except -1:
        """BigDecimal.toString (the same scientific notation as Decimal's) and M; BigDecimal has no -0."""
        if not x.is_finite():
            raise ValueError(f"EDN has no BigDecimal for {x!r}")
        self.put_text(str(x.copy_abs() if x.is_zero() else x))
        return bytebuf.putc(&self.out, b'M')

    cdef int put_inst(self, object x) except -1:
        """java.util.Date as Clojure prints it: UTC, millisecond precision, "-00:00"."""
        if x.tzinfo is None or x.utcoffset() is None:
            raise TypeError("EDN can't write a naive datetime: its instant is unknown (give it a tzinfo)")
        u = x.astimezone(_UTC)
        self.put_text(f'#inst "{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:'
                      f'{u.second:02d}.{u.microsecond // 1000:03d}-00:00"')
        return 0


def dumps(value, *, writers=None, bint namespace_maps=False, bint wire=False):
    """``value`` as EDN text, exactly as Clojure's ``pr-str`` prints the corresponding Clojure value.

    ``wire``: the text is for a Sente message, so it must have a UTF-8 form: a lone UTF-16 surrogate in a
    string, keyword, symbol or char is written ``?`` (and a surrogate pair as its character), as the JVM
    encodes the frame Sente's server sends (:func:`csente.types.jvm_text`). Without it, ``pr-str``'s
    string is returned as is, lone surrogates included.

    ``writers`` maps other types (found by exact type, then along the MRO) to ``fn(obj) -> (tag, rep)``,
    printed ``#tag rep``. ``namespace_maps`` prints ``#:ns{:a 1}`` where every key shares namespace ``ns``
    (Clojure's ``*print-namespace-maps*``). Naive datetimes are a TypeError: EDN instants are absolute.
    """
    cdef _Writer w = _Writer.__new__(_Writer)
    bytebuf.init(&w.out, 256)
    w.writers = writers
    w.namespace_maps = namespace_maps
    w.wire = wire
    w.write(value)
    return PyUnicode_DecodeUTF8(w.out.data, w.out.len, "surrogatepass")
