# cython: boundscheck=False, wraparound=False
"""Transit (json, json-verbose and msgpack) exactly as transit-clj 1.1.357 writes and reads it.

Sente's transit packer hands whole envelopes to transit-clj, so a Python peer must produce the same
bytes (write cache codes, quoting, Jackson's escaping and Java's double formatting) and read whatever
the JVM sends, caches included. JSON is tokenized and emitted here directly from/to UTF-8 (msgspec
cannot read the lone surrogates transit-clj writes for chars); msgpack uses msgspec.msgpack for the
raw bytes and this module for the transit layer.

Checks: every raw buffer access is guarded by an explicit ``i < n`` test (the buffers are bytes
objects, NUL terminated), and Python sequences are only indexed below their checked length, so
bounds checking and wraparound are off module-wide.
"""

import base64
import datetime as _dt
import re
import uuid as _uuid
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport isfinite, isnan
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from csente.numbers cimport (JAVA_DOUBLE_MAX, LONG_MAX_TEXT, exact_double, java_double, scan_digits,
                             write_long)
from csente.types cimport Char, Keyword, Symbol, TaggedValue, jvm_text, keyword, symbol

from csente.types import DecodeError, FrozenDict, List

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    bint PyUnicode_IS_ASCII(object)
    uint32_t PyUnicode_MAX_CHAR_VALUE(object)
    object PyUnicode_New(Py_ssize_t size, uint32_t maxchar)
    object PyUnicode_FromKindAndData(int kind, const void* buf, Py_ssize_t size)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t* size) except NULL
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    long long PyLong_AsLongLongAndOverflow(object, int* overflow) except? -1
    int PyUnicode_4BYTE_KIND

cdef enum:
    CACHE_DIGITS = 44
    CACHE_MAX = 44 * 44        # transit's cache holds 1936 entries, then starts over
    MIN_CACHEABLE = 4          # in UTF-16 units, as Java counts String.length()
    MAX_DEPTH_LIMIT = 5000     # the C stack bounds how deep recursive descent may go

cdef long long JSON_INT_MAX = 9007199254740991  # 2**53 - 1: beyond it transit-json writes "~i..."

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_UTC = _dt.timezone.utc
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_MSGPACK_DECODER = msgspec.msgpack.Decoder()


def _code(Py_ssize_t i):
    if i < CACHE_DIGITS:
        return "^" + chr(48 + i)
    return "^" + chr(48 + i // CACHE_DIGITS) + chr(48 + i % CACHE_DIGITS)


cdef tuple _CODES = tuple(_code(i) for i in range(CACHE_MAX))


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

    cdef readonly str tag
    cdef readonly object rep
    cdef readonly object string_rep

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


# ---------------------------------------------------------------------------------------------
# Writing: shared rules


cdef object _NONE_TYPE = type(None)
# types written as one string (or JSON scalar): their maps use "^ " / objects, and alone they are quoted
cdef frozenset _SCALAR_TYPES = frozenset(
    [str, Keyword, Symbol, int, float, bool, _NONE_TYPE, Char, _uuid.UUID, _dt.datetime, Decimal, URI, bytes])
cdef tuple _SCALAR_BASES = (str, int, float, _uuid.UUID, _dt.datetime, Decimal, bytes)


cdef inline Py_ssize_t _u16len(str s):
    """Length in UTF-16 code units, which is what Java's cache-size rule counts."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, extra = 0
    cdef void* data
    if PyUnicode_MAX_CHAR_VALUE(s) > 0xFFFF:
        data = PyUnicode_DATA(s)
        for i in range(n):
            if PyUnicode_READ(4, data, i) > 0xFFFF:
                extra += 1
    return n + extra


cdef inline bint _needs_escape(str s):
    cdef uint32_t c
    if PyUnicode_GET_LENGTH(s) == 0:
        return False
    c = PyUnicode_READ(PyUnicode_KIND(s), PyUnicode_DATA(s), 0)
    return c == ord("~") or c == ord("^") or c == ord("`")


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


cdef bint _all_stringable(object m, dict handlers):
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


cdef long long _millis(object d) except? -1:
    if d.tzinfo is None or d.utcoffset() is None:
        raise ValueError("transit writes instants: a naive datetime has no time zone")
    delta = d - _EPOCH
    return <long long>delta.days * 86400000 + <long long>delta.seconds * 1000 + delta.microseconds // 1000


cdef str _verbose_time(object d):
    _millis(d)  # the same naive check
    u = d.astimezone(_UTC)
    return (f"~t{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f".{u.microsecond // 1000:03d}Z")


cdef str _decimal_text(object d):
    if not d.is_finite():
        raise ValueError(f"transit has no BigDecimal for {d!r}")
    return "~f" + str(d)  # Python and BigDecimal.toString follow the same scientific-notation rules


cdef object _scalar_text(object o, type t, bint verbose):
    """The transit string of a scalar written as one string, or None when ``o`` is not such a scalar."""
    if t is Char:
        return "~c" + (<Char>o).char
    if t is _uuid.UUID:
        return "~u" + str(o)
    if t is _dt.datetime:
        return _verbose_time(o) if verbose else f"~m{_millis(o)}"
    if t is Decimal:
        return _decimal_text(o)
    if t is URI:
        return "~r" + str.__str__(o)
    if t is bytes:
        return "~b" + base64.b64encode(o).decode("ascii")
    return None


cdef str _java_double_str(double d):
    cdef char buf[JAVA_DOUBLE_MAX]
    cdef Py_ssize_t n = java_double(d, buf)
    return buf[:n].decode("ascii")


cdef inline str _special_double(double d):
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


cdef dict _handler_dict(handlers):
    if not handlers:
        return None
    result = dict(handlers)
    for t, h in result.items():
        if not isinstance(t, type) or not isinstance(h, WriteHandler):
            raise TypeError("handlers maps types to WriteHandler instances")
    return result


# ---------------------------------------------------------------------------------------------
# Writing JSON


cdef unsigned char _JSON_ESC[128]
for _i in range(128):
    _JSON_ESC[_i] = 1 if _i < 0x20 or _i == ord('"') or _i == ord("\\") else 0
cdef const char* _HEX = b"0123456789ABCDEF"
cdef const char* _SHORT_ESC = b"btn?fr"  # escapes of \b \t \n (\v has none) \f \r


# Keywords and symbols are interned, so the writer can know them by address: a table from the object to its
# ready-made JSON text ('"~:ns/name"') and, stamped with the generation of the dumps call that set it, its
# cache code. One dumps call at a time owns the table (``_table_busy``); a nested call (from a handler, say)
# falls back to the cache dict. Entries of a finished generation are free for reuse, so the table never
# grows, and a full probe window also falls back to the dict.
cdef struct _NamedSlot:
    PyObject* named      # owned reference to a Keyword or Symbol
    PyObject* json       # owned bytes
    unsigned long long gen
    int code
    bint cacheable

cdef enum:
    NAMED_SLOTS = 8192
    NAMED_PROBE = 8

cdef _NamedSlot _named_table[NAMED_SLOTS]
cdef unsigned long long _generation = 0
cdef bint _table_busy = False
cdef tuple _CODE_JSON = tuple(('"' + c + '"').encode("ascii") for c in _CODES)


cdef inline _NamedSlot* _named_slot(object o, unsigned long long gen):
    """The slot holding ``o``, else a free one (emptied), else NULL."""
    cdef size_t h = ((<size_t><PyObject*>o) >> 4) * <size_t>0x9E3779B97F4A7C15ULL
    cdef size_t i = (h >> 40) & (NAMED_SLOTS - 1), k
    cdef _NamedSlot* slot
    cdef _NamedSlot* free = NULL
    for k in range(NAMED_PROBE):
        slot = &_named_table[(i + k) & (NAMED_SLOTS - 1)]
        if slot.named == <PyObject*>o:
            return slot
        if free == NULL and (slot.named == NULL or slot.gen != gen):
            free = slot
    if free != NULL and free.named != NULL:
        Py_XDECREF(free.named)
        Py_XDECREF(free.json)
        free.named = NULL
        free.json = NULL
    return free


cdef class _JsonWriter:
    cdef char* buf
    cdef Py_ssize_t n, cap
    cdef bint caching      # False in verbose mode, which writes no cache codes
    cdef dict cache        # cache codes of strings and tags (and of keywords off the table); made when needed
    cdef Py_ssize_t count  # cache codes handed out since the last reset
    cdef unsigned long long gen
    cdef bint use_table
    cdef bint verbose
    cdef dict handlers

    def __cinit__(self):
        self.cap = 1024
        self.n = 0
        self.buf = <char*>PyMem_Malloc(self.cap)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.buf)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.n + extra, cap = self.cap
        cdef char* grown
        if need <= cap:
            return 0
        while cap < need:
            cap *= 2
        grown = <char*>PyMem_Realloc(self.buf, cap)
        if grown == NULL:
            raise MemoryError()
        self.buf = grown
        self.cap = cap
        return 0

    cdef inline int put(self, char c) except -1:
        if self.n >= self.cap:
            self.reserve(1)
        self.buf[self.n] = c
        self.n += 1
        return 0

    cdef inline int raw(self, const char* s, Py_ssize_t k) except -1:
        self.reserve(k)
        memcpy(self.buf + self.n, s, k)
        self.n += k
        return 0

    cdef str result(self):
        return PyUnicode_DecodeUTF8(self.buf, self.n, NULL)

    cdef int body(self, str s) except -1:
        """The JSON string contents of ``s``, escaped like Jackson's UTF-8 generator."""
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, j
        cdef int kind
        cdef void* data
        cdef const unsigned char* a
        cdef uint32_t c, hi
        cdef char* out
        if PyUnicode_IS_ASCII(s):
            self.reserve(n * 6)
            a = <const unsigned char*>PyUnicode_DATA(s)
            out = self.buf
            j = self.n
            for i in range(n):
                c = a[i]
                if _JSON_ESC[c]:
                    j += _escape(out + j, c)
                else:
                    out[j] = <char>c
                    j += 1
            self.n = j
            return 0
        try:
            a = <const unsigned char*>PyUnicode_AsUTF8AndSize(s, &n)
        except UnicodeEncodeError:  # lone surrogates: escaped one code point at a time below
            return self.body_ucs(s)
        # UTF-8 passes through except the escapes and 4-byte sequences, which become surrogate pair escapes
        self.reserve(n * 6)
        out = self.buf
        j = self.n
        i = 0
        while i < n:
            c = a[i]
            if c < 0x80:
                if _JSON_ESC[c]:
                    j += _escape(out + j, c)
                else:
                    out[j] = <char>c
                    j += 1
                i += 1
            elif c >= 0xF0:
                c = ((c & 0x07) << 18) | ((a[i + 1] & 0x3F) << 12) | ((a[i + 2] & 0x3F) << 6) | (a[i + 3] & 0x3F)
                j += _uescape(out + j, 0xD800 + ((c - 0x10000) >> 10))
                j += _uescape(out + j, 0xDC00 + ((c - 0x10000) & 0x3FF))
                i += 4
            else:
                out[j] = <char>c
                j += 1
                i += 1
        self.n = j
        return 0

    cdef int body_ucs(self, str s) except -1:
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, j
        cdef int kind
        cdef void* data
        cdef uint32_t c, hi
        cdef char* out
        self.reserve(n * 12)
        kind = PyUnicode_KIND(s)
        data = PyUnicode_DATA(s)
        out = self.buf
        j = self.n
        for i in range(n):
            c = PyUnicode_READ(kind, data, i)
            if c < 0x80:
                if _JSON_ESC[c]:
                    j += _escape(out + j, c)
                else:
                    out[j] = <char>c
                    j += 1
            elif c < 0x800:
                out[j] = <char>(0xC0 | (c >> 6))
                out[j + 1] = <char>(0x80 | (c & 0x3F))
                j += 2
            elif 0xD800 <= c <= 0xDFFF:  # a lone surrogate (a Java char can be one)
                j += _uescape(out + j, c)
            elif c < 0x10000:
                out[j] = <char>(0xE0 | (c >> 12))
                out[j + 1] = <char>(0x80 | ((c >> 6) & 0x3F))
                out[j + 2] = <char>(0x80 | (c & 0x3F))
                j += 3
            else:  # outside the BMP: a surrogate pair of escapes, as transit-clj writes it
                hi = 0xD800 + ((c - 0x10000) >> 10)
                j += _uescape(out + j, hi)
                j += _uescape(out + j, 0xDC00 + ((c - 0x10000) & 0x3FF))
        self.n = j
        return 0

    cdef int string(self, const char* prefix, Py_ssize_t plen, str s) except -1:
        self.reserve(plen + 2)
        self.buf[self.n] = c'"'
        memcpy(self.buf + self.n + 1, prefix, plen)
        self.n += plen + 1
        self.body(s)
        return self.put(c'"')

    cdef int next_code(self) except -1:
        """Hand out the next cache code; after 44*44 of them the cache starts over, as transit's does."""
        global _generation
        if self.count == CACHE_MAX:
            if self.cache is not None:
                self.cache.clear()
            self.count = 0
            _generation += 1
            self.gen = _generation
        self.count += 1
        return self.count - 1

    cdef int code(self, Py_ssize_t index) except -1:
        cdef bytes b = <bytes>_CODE_JSON[index]
        return self.raw(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef bint cached(self, object ckey) except -1:
        """Write the cache code for ``ckey`` if it has one, else give it the next code; True if written."""
        cdef PyObject* code
        if self.cache is None:
            self.cache = {}
        code = PyDict_GetItem(self.cache, ckey)
        if code != NULL:
            self.code(<Py_ssize_t><object>code)
            return True
        self.cache[ckey] = self.next_code()
        return False

    cdef int encoded(self, str enc, bint key) except -1:
        """A scalar already in its transit string form; cacheable only as a map key."""
        if key and self.caching and _u16len(enc) >= MIN_CACHEABLE and self.cached(enc):
            return 0
        return self.string(b"", 0, enc)

    cdef int named(self, object o, const char* prefix, str text) except -1:
        cdef _NamedSlot* slot
        cdef Py_ssize_t start
        if self.use_table:
            slot = _named_slot(o, self.gen)
            if slot != NULL:
                if slot.named == NULL:
                    start = self.n
                    self.string(prefix, 2, text)
                    json = PyBytes_FromStringAndSize(self.buf + start, self.n - start)
                    Py_INCREF(json)
                    slot.json = <PyObject*>json
                    Py_INCREF(o)
                    slot.named = <PyObject*>o
                    slot.cacheable = _u16len(text) + 2 >= MIN_CACHEABLE
                    slot.gen = 0
                    self.n = start
                if slot.cacheable:
                    if slot.gen == self.gen:
                        return self.code(slot.code)
                    slot.code = self.next_code()
                    slot.gen = self.gen  # after next_code, which may have started a new generation
                return self.raw(PyBytes_AS_STRING(<object>slot.json), PyBytes_GET_SIZE(<object>slot.json))
        if self.caching and _u16len(text) + 2 >= MIN_CACHEABLE and self.cached(o):
            return 0
        return self.string(prefix, 2, text)

    cdef int plain_string(self, str s, bint key) except -1:
        cdef bint esc = _needs_escape(s)
        if key and self.caching and _u16len(s) + esc >= MIN_CACHEABLE:
            if self.cached(("~" + s) if esc else s):
                return 0
        if esc:
            return self.string(b"~", 1, s)
        return self.string(b"", 0, s)

    cdef int tag_open(self, str tag) except -1:
        if self.verbose:
            self.put(c'{')
            self.string(b"~#", 2, tag)
            return self.put(c':')
        self.put(c'[')
        if not (_u16len(tag) >= 2 and self.cached("~#" + tag)):
            self.string(b"~#", 2, tag)
        return self.put(c',')

    cdef int tag_close(self) except -1:
        return self.put(c'}' if self.verbose else c']')

    cdef int items(self, object seq) except -1:
        cdef Py_ssize_t i, n
        self.put(c'[')
        if type(seq) is list:
            n = PyList_GET_SIZE(seq)
            for i in range(n):
                if i:
                    self.put(c',')
                self.emit(<object>PyList_GET_ITEM(seq, i), False)
        elif isinstance(seq, tuple):
            n = PyTuple_GET_SIZE(seq)
            for i in range(n):
                if i:
                    self.put(c',')
                self.emit(<object>PyTuple_GET_ITEM(seq, i), False)
        else:
            first = True
            for x in seq:
                if not first:
                    self.put(c',')
                first = False
                self.emit(x, False)
        return self.put(c']')

    cdef int tagged(self, str tag, object rep) except -1:
        self.tag_open(tag)
        self.emit(rep, False)
        return self.tag_close()

    cdef int tagged_items(self, str tag, object seq) except -1:
        self.tag_open(tag)
        self.items(seq)
        return self.tag_close()

    cdef int map(self, object m) except -1:
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef bint first = True, is_dict = isinstance(m, dict)
        if not _all_stringable(m, self.handlers):
            self.tag_open("cmap")
            self.put(c'[')
            for key, val in m.items():
                if not first:
                    self.put(c',')
                first = False
                self.emit(key, False)
                self.put(c',')
                self.emit(val, False)
            self.put(c']')
            return self.tag_close()
        if self.verbose:
            self.put(c'{')
            for key, val in m.items():
                if not first:
                    self.put(c',')
                first = False
                self.emit(key, True)
                self.put(c':')
                self.emit(val, False)
            return self.put(c'}')
        self.raw(b'["^ "', 5)
        if is_dict:
            while PyDict_Next(m, &pos, &k, &v):
                self.put(c',')
                self.emit(<object>k, True)
                self.put(c',')
                self.emit(<object>v, False)
        else:
            for key, val in m.items():
                self.put(c',')
                self.emit(key, True)
                self.put(c',')
                self.emit(val, False)
        return self.put(c']')

    cdef int integer(self, object o, bint key) except -1:
        cdef int overflow = 0
        cdef long long v = PyLong_AsLongLongAndOverflow(o, &overflow)
        cdef char buf[LONG_MAX_TEXT]
        cdef Py_ssize_t k
        if overflow:
            return self.encoded("~n" + str(o), key)
        if key:
            return self.encoded("~i" + str(o), key)
        k = write_long(v, buf)
        if -JSON_INT_MAX <= v <= JSON_INT_MAX:
            return self.raw(buf, k)
        self.raw(b'"~i', 3)
        self.raw(buf, k)
        return self.put(c'"')

    cdef int double(self, double d, bint key) except -1:
        cdef char buf[JAVA_DOUBLE_MAX]
        if not isfinite(d):
            return self.encoded(_special_double(d), key)
        if key:
            return self.encoded("~d" + _java_double_str(d), key)
        return self.raw(buf, java_double(d, buf))

    cdef int handled(self, WriteHandler h, object o, bint key) except -1:
        if len(h.tag) == 1:
            return self.encoded(h.scalar_text(o), key)
        return self.tagged(h.tag, h.rep(o))

    cdef int emit(self, object o, bint key) except -1:
        cdef type t = type(o)
        cdef PyObject* h
        if self.handlers is not None:
            h = PyDict_GetItem(self.handlers, t)
            if h != NULL:
                return self.handled(<WriteHandler>h, o, key)
        if t is str:
            return self.plain_string(<str>o, key)
        if t is Keyword:
            return self.named(o, b"~:", (<Keyword>o).text)
        if t is int:
            return self.integer(o, key)
        if t is float:
            return self.double(PyFloat_AS_DOUBLE(o), key)
        if t is dict or t is FrozenDict:
            return self.map(o)
        if t is list or t is tuple:
            return self.items(o)
        if o is None:
            return self.encoded("~_", True) if key else self.raw(b"null", 4)
        if t is bool:
            if key:
                return self.encoded("~?t" if o else "~?f", True)
            return self.raw(b"true", 4) if o else self.raw(b"false", 5)
        if t is Symbol:
            return self.named(o, b"~$", (<Symbol>o).text)
        if t is List:
            return self.tagged_items("list", o)
        if t is frozenset or t is set:
            return self.tagged_items("set", o)
        text = _scalar_text(o, t, self.verbose)
        if text is not None:
            return self.encoded(<str>text, key)
        if t is Fraction:
            return self.ratio(o)
        if t is TaggedValue:
            return self.tagged((<TaggedValue>o).tag, (<TaggedValue>o).value)
        return self.emit_other(o, key)

    cdef int ratio(self, object o) except -1:
        # a Clojure Ratio's parts are BigIntegers, so both are written as "~n" strings
        self.tag_open("ratio")
        self.put(c'[')
        self.encoded("~n" + str(o.numerator), False)
        self.put(c',')
        self.encoded("~n" + str(o.denominator), False)
        self.put(c']')
        return self.tag_close()

    cdef int emit_other(self, object o, bint key) except -1:
        """Subclasses of the supported types, and handlers registered for a base class."""
        cdef WriteHandler h = _handler_for(self.handlers, o)
        if h is not None:
            return self.handled(h, o, key)
        if isinstance(o, Mapping):
            return self.map(o)
        if isinstance(o, (list, tuple)):
            return self.items(o)
        if isinstance(o, (set, frozenset)):
            return self.tagged_items("set", o)
        if isinstance(o, _dt.datetime):
            return self.encoded(_verbose_time(o) if self.verbose else f"~m{_millis(o)}", key)
        for base in (_uuid.UUID, Decimal, bytes):
            if isinstance(o, base):
                return self.encoded(_scalar_text(o, base, self.verbose), key)
        plain = _plain(o)
        if plain is not None:
            return self.emit(plain, key)
        raise TypeError(f"transit cannot write a value of type {type(o).__module__}.{type(o).__qualname__}")


cdef inline int _escape(char* out, uint32_t c):
    if c == ord('"') or c == ord("\\"):
        out[0] = c'\\'
        out[1] = <char>c
        return 2
    if c == 0x08 or c == 0x09 or c == 0x0A or c == 0x0C or c == 0x0D:
        out[0] = c'\\'
        out[1] = _SHORT_ESC[c - 8]
        return 2
    return _uescape(out, c)


cdef inline int _uescape(char* out, uint32_t c):
    out[0] = c'\\'
    out[1] = c'u'
    out[2] = _HEX[(c >> 12) & 0xF]
    out[3] = _HEX[(c >> 8) & 0xF]
    out[4] = _HEX[(c >> 4) & 0xF]
    out[5] = _HEX[c & 0xF]
    return 6


cdef bint _is_scalar(object o, dict handlers):
    """Whether transit-clj would quote ``o`` at the top level (``["~#'", o]``)."""
    cdef type t = type(o)
    if (t is list or t is dict) and handlers is None:
        return False
    return _stringable(o, handlers)


cdef _JsonWriter _spare_writer = _JsonWriter()


def dumps(value, *, bint verbose=False, handlers=None):
    """``value`` as transit-json (or json-verbose) text, byte for byte what transit-clj writes."""
    global _table_busy, _generation, _spare_writer
    cdef _JsonWriter w
    cdef bint owner = not _table_busy
    if owner:  # the common, non-nested call reuses one writer and the keyword table
        _table_busy = True
        w = _spare_writer
        w.n = 0
    else:
        w = _JsonWriter()
    try:
        _generation += 1
        w.gen = _generation
        w.count = 0
        w.verbose = verbose
        w.caching = not verbose
        w.cache = None
        w.handlers = _handler_dict(handlers) if handlers else None
        w.use_table = owner and not verbose
        if _is_scalar(value, w.handlers):
            w.raw(b"{\"~#'\":" if verbose else b"[\"~#'\",", 7)
            w.emit(value, False)
            w.put(c'}' if verbose else c']')
        else:
            w.emit(value, False)
        return w.result()
    finally:
        if owner:
            w.handlers = None
            w.cache = None
            if w.cap > 1 << 20:  # do not keep a huge buffer around
                _spare_writer = _JsonWriter()
            _table_busy = False


# ---------------------------------------------------------------------------------------------
# Writing msgpack: the value becomes plain lists/dicts/strings/numbers that msgspec packs


cdef class _MsgpackWriter:
    cdef dict cache
    cdef dict handlers

    cdef object cached(self, object ckey, str enc):
        cdef PyObject* code = PyDict_GetItem(self.cache, ckey)
        if code != NULL:
            return <object>code
        if len(self.cache) == CACHE_MAX:
            self.cache.clear()
        self.cache[ckey] = _CODES[len(self.cache)]
        return enc

    cdef object encoded(self, str enc, bint key):
        if key and _u16len(enc) >= MIN_CACHEABLE:
            return self.cached(enc, enc)
        return enc

    cdef object named(self, object o, str prefix, str text):
        if _u16len(text) + 2 >= MIN_CACHEABLE:
            return self.cached(o, prefix + text)
        return prefix + text

    cdef list tag(self, str tag, object rep):
        enc = "~#" + tag
        head = self.cached(enc, enc) if _u16len(tag) >= 2 else enc
        return [head, rep]

    cdef object tagged_items(self, str tag, object seq):
        head = self.tag(tag, None)  # the tag is cached before its items, as the reader will see it
        head[1] = self.items(seq)
        return head

    cdef list items(self, object seq):
        return [self.build(x, False) for x in seq]

    cdef object map(self, object m):
        if _all_stringable(m, self.handlers):
            result = {}
            for k, v in m.items():
                bk = self.build(k, True)
                result[bk] = self.build(v, False)
            return result
        head = self.tag("cmap", None)
        flat = []
        for k, v in m.items():
            flat.append(self.build(k, False))
            flat.append(self.build(v, False))
        head[1] = flat
        return head

    cdef object tagged(self, str tag, object rep):
        head = self.tag(tag, None)  # the tag is cached before its rep, as the reader will see it
        head[1] = self.build(rep, False)
        return head

    cdef object handled(self, WriteHandler h, object o, bint key):
        if len(h.tag) == 1:
            return self.encoded(h.scalar_text(o), key)
        return self.tagged(h.tag, h.rep(o))

    cdef object build(self, object o, bint key):
        cdef type t = type(o)
        cdef PyObject* h
        cdef int overflow = 0
        cdef double d
        if self.handlers is not None:
            h = PyDict_GetItem(self.handlers, t)
            if h != NULL:
                return self.handled(<WriteHandler>h, o, key)
        if t is str:
            if _needs_escape(o):
                return self.encoded("~" + o, key)
            return self.encoded(o, key)
        if t is Keyword:
            return self.named(o, "~:", (<Keyword>o).text)
        if t is int:
            PyLong_AsLongLongAndOverflow(o, &overflow)
            return self.encoded("~n" + str(o), key) if overflow else o
        if t is float:
            d = PyFloat_AS_DOUBLE(o)
            return o if isfinite(d) else self.encoded(_special_double(d), key)
        if t is dict or t is FrozenDict:
            return self.map(o)
        if t is list or t is tuple:
            return self.items(o)
        if o is None or t is bool:
            return o
        if t is Symbol:
            return self.named(o, "~$", (<Symbol>o).text)
        if t is List:
            return self.tagged_items("list", o)
        if t is frozenset or t is set:
            return self.tagged_items("set", o)
        if t is _uuid.UUID and not key:
            hi, lo = divmod(o.int, 1 << 64)
            return ["~#u", [hi - (1 << 64) if hi >= 1 << 63 else hi, lo - (1 << 64) if lo >= 1 << 63 else lo]]
        if t is _dt.datetime and not key:
            return ["~#m", _millis(o)]
        text = _scalar_text(o, t, False)
        if text is not None:
            return self.encoded(<str>text, key)
        if t is Fraction:
            return self.tag("ratio", ["~n" + str(o.numerator), "~n" + str(o.denominator)])
        if t is TaggedValue:
            return self.tagged((<TaggedValue>o).tag, (<TaggedValue>o).value)
        return self.build_other(o, key)

    cdef object build_other(self, object o, bint key):
        cdef WriteHandler h = _handler_for(self.handlers, o)
        if h is not None:
            return self.handled(h, o, key)
        if isinstance(o, Mapping):
            return self.map(o)
        if isinstance(o, (list, tuple)):
            return self.items(o)
        if isinstance(o, (set, frozenset)):
            return self.tagged_items("set", o)
        for base in (_dt.datetime, _uuid.UUID, Decimal, bytes):
            if isinstance(o, base):
                return self.build(_rebase(o, base), key)
        plain = _plain(o)
        if plain is not None:
            return self.build(plain, key)
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


def dumps_msgpack(value, *, handlers=None):
    """``value`` as transit over MessagePack, as transit-clj's ``:msgpack`` writer produces it."""
    cdef _MsgpackWriter w = _MsgpackWriter()
    w.cache = {}
    w.handlers = _handler_dict(handlers)
    if _is_scalar(value, w.handlers):
        tree = ["~#'", w.build(value, False)]
    else:
        tree = w.build(value, False)
    try:
        return _MSGPACK_ENCODER.encode(tree)
    except UnicodeEncodeError:  # a lone surrogate: written as the JVM's encoder writes it (jvm_text)
        return _MSGPACK_ENCODER.encode(_jvm_strings(tree))


cdef object _jvm_strings(object x):
    """The msgpack tree with every string (keys included) passed through :func:`jvm_text`."""
    if type(x) is str:
        return jvm_text(x)
    if type(x) is list:
        return [_jvm_strings(v) for v in x]
    if type(x) is dict:
        return {_jvm_strings(k): _jvm_strings(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------------------------------------
# Reading: shared transit layer


cdef class _Tag:
    """A ``"~#tag"`` string just read: only meaningful at the head of an array or a one-entry object."""
    cdef readonly str tag

    def __cinit__(self, str tag):
        self.tag = tag


cdef object _MARK = object()  # the "^ " that opens a map written as an array

cdef enum RepMode:
    REP_SAME = 0      # the rep is read like the tagged value's position
    REP_HASHABLE = 1  # set members and ratio parts must be hashable
    REP_CMAP = 2      # alternating keys (hashable) and values


cdef inline RepMode _rep_mode(str tag):
    if tag == "set" or tag == "ratio":
        return REP_HASHABLE
    if tag == "cmap":
        return REP_CMAP
    return REP_SAME


cdef object _int_text(str text, bint allow_plus):
    if _INT_RE.match(text) is None or (not allow_plus and text.startswith("+")):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


cdef object _from_millis(object ms):
    try:
        return _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        raise ValueError(f"instant out of range: {ms}") from None


# Keywords read from JSON are found by their bytes in a fixed table (FNV-1a hash -> interned Keyword), which
# spares building and hashing two strings per keyword; a collision just replaces the entry.
cdef struct _ReadSlot:
    PyObject* kw         # owned reference
    unsigned long long h

cdef enum:
    READ_SLOTS = 4096

cdef _ReadSlot _read_table[READ_SLOTS]


cdef class _Reader:
    cdef list cache
    cdef Py_ssize_t cache_n
    cdef dict handlers
    cdef bint kw_fast      # no handler overrides the ':' tag
    cdef int max_depth
    # JSON input: a NUL-terminated UTF-8 buffer owned by ``src``
    cdef object src
    cdef const unsigned char* s
    cdef Py_ssize_t n, i, tok

    def __cinit__(self):
        self.cache = []
        self.cache_n = 0

    cdef object fail(self, str msg):
        raise DecodeError(msg, self.tok)

    cdef inline void remember(self, object v):
        if self.cache_n == CACHE_MAX:
            self.cache_n = 0
        if self.cache_n < len(self.cache):
            self.cache[self.cache_n] = v
        else:
            self.cache.append(v)
        self.cache_n += 1

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
        if type(v) is _Tag and not head:
            return self.fail(f"tag {(<_Tag>v).tag!r} outside of a tagged value")
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
                    return _MARK
                return self.fail("map marker '^ ' outside of the head of an array")
            return self.lookup(s, head)
        if c0 != ord("~") or n == 1:
            if key and (n >= MIN_CACHEABLE or (kind == PyUnicode_4BYTE_KIND and _u16len(s) >= MIN_CACHEABLE)):
                self.remember(s)
            return s
        c1 = PyUnicode_READ(kind, data, 1)
        v = self.tilde(s, c1, head)
        if (key or c1 == ord(":") or c1 == ord("$") or c1 == ord("#")) and _u16len(s) >= MIN_CACHEABLE:
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
                return _Tag(rest)
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

    # -- JSON --------------------------------------------------------------------------------

    cdef inline void ws(self):
        cdef unsigned char c
        while self.i < self.n:
            c = self.s[self.i]
            if c == 32 or c == 10 or c == 13 or c == 9:
                self.i += 1
            else:
                break

    cdef inline int expect(self, unsigned char c, str what) except -1:
        self.ws()
        self.tok = self.i
        if self.i >= self.n:
            self.fail(f"truncated input: expected {what}")
        if self.s[self.i] != c:
            self.fail(f"expected {what}")
        self.i += 1
        return 0

    cdef object value(self, bint key, bint hashable, bint head, int depth):
        cdef unsigned char c
        self.ws()
        self.tok = self.i
        if self.i >= self.n:
            return self.fail("truncated input: expected a value")
        c = self.s[self.i]
        if c == ord('"'):
            if self.kw_fast and self.i + 2 < self.n and self.s[self.i + 1] == ord("~") and self.s[self.i + 2] == ord(":"):
                kw = self.fast_keyword()
                if kw is not None:
                    return kw
            return self.string(self.raw_string(), key, head)
        if c == ord("["):
            return self.array(hashable, depth + 1)
        if c == ord("{"):
            return self.obj(hashable, depth + 1)
        if c == ord("-") or ord("0") <= c <= ord("9"):
            return self.number()
        if c == ord("t") and self.literal(b"true", 4):
            return True
        if c == ord("f") and self.literal(b"false", 5):
            return False
        if c == ord("n") and self.literal(b"null", 4):
            return None
        return self.fail(f"unexpected character {chr(c)!r}" if c < 128 else "unexpected byte")

    cdef object fast_keyword(self):
        """The keyword ``"~:..."`` at ``self.i`` when its text is plain ASCII, else None (the slow path decides)."""
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t start = self.i + 3, j = start, length
        cdef unsigned long long h = 1469598103934665603ULL
        cdef unsigned char c
        cdef _ReadSlot* slot
        cdef object kw = None
        while j < self.n:
            c = s[j]
            if c == ord('"'):
                break
            if c < 0x20 or c >= 0x7F or c == ord("\\"):
                return None
            h = (h ^ c) * 1099511628211ULL
            j += 1
        length = j - start
        if j >= self.n or length == 0:
            return None
        slot = &_read_table[h & (READ_SLOTS - 1)]
        if slot.kw != NULL and slot.h == h:
            text = (<Keyword>slot.kw).text
            if PyUnicode_GET_LENGTH(text) == length and memcmp(PyUnicode_DATA(text), s + start, length) == 0:
                kw = <object>slot.kw
        if kw is None:
            text = PyUnicode_New(length, 127)
            memcpy(PyUnicode_DATA(text), s + start, length)
            kw = keyword(text)
            Py_INCREF(kw)
            Py_XDECREF(slot.kw)
            slot.kw = <PyObject*>kw
            slot.h = h
        self.i = j + 1
        if length + 2 >= MIN_CACHEABLE:
            self.remember(kw)
        return kw

    cdef bint literal(self, const char* word, Py_ssize_t k):
        cdef Py_ssize_t j
        if self.i + k > self.n:
            return False
        for j in range(k):
            if self.s[self.i + j] != <unsigned char>word[j]:
                return False
        self.i += k
        return True

    cdef object number(self):
        """A JSON number: int, or float (exact fast path for up to 15 digits and small exponents)."""
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t i = self.i, n = self.n, start = self.i, digits, frac = 0
        cdef bint is_float = False, neg = False, exp_neg = False
        cdef uint64_t mant = 0
        cdef int sig = 0, exp = 0
        cdef double d
        cdef char* end
        if s[i] == ord("-"):
            neg = True
            i += 1
        if i < n and s[i] == ord("0"):
            i += 1
        else:
            digits = i
            i = scan_digits(s, i, n, &mant, &sig)
            if i == digits:
                self.tok = i
                return self.fail("bad number")
        if i < n and s[i] == ord("."):
            is_float = True
            digits = i + 1
            i = scan_digits(s, digits, n, &mant, &sig)
            if i == digits:
                self.tok = i
                return self.fail("bad number")
            frac = i - digits
        if i < n and (s[i] == ord("e") or s[i] == ord("E")):
            is_float = True
            i += 1
            if i < n and (s[i] == ord("+") or s[i] == ord("-")):
                exp_neg = s[i] == ord("-")
                i += 1
            if not (i < n and ord("0") <= s[i] <= ord("9")):
                self.tok = i
                return self.fail("bad number")
            while i < n and ord("0") <= s[i] <= ord("9"):
                if exp < 100000:
                    exp = exp * 10 + (s[i] - ord("0"))
                i += 1
        self.i = i
        if not is_float:
            if sig <= 18:
                return -<long long>mant if neg else <long long>mant
            try:
                return int((<const char*>s)[start:i])
            except ValueError:  # beyond Python's digit limit for int()
                self.tok = start
                return self.fail("integer too long")
        if exact_double(mant, sig, (-exp if exp_neg else exp) - <int>frac, &d):
            return -d if neg else d
        return PyOS_string_to_double(<const char*>s + start, &end, NULL)  # sign included

    cdef str raw_string(self):
        """The JSON string at ``self.i`` (its opening quote), decoded; lone surrogate escapes are kept."""
        cdef Py_ssize_t start = self.i + 1, j = start
        cdef const unsigned char* s = self.s
        cdef bint ascii = True
        cdef unsigned char c
        cdef str out
        while j < self.n:
            c = s[j]
            if c == ord('"'):
                self.i = j + 1
                if ascii:
                    out = PyUnicode_New(j - start, 127)
                    memcpy(PyUnicode_DATA(out), s + start, j - start)
                    return out
                try:
                    return PyUnicode_DecodeUTF8(<const char*>s + start, j - start, NULL)
                except UnicodeDecodeError as e:
                    self.tok = start + e.start
                    return self.fail("invalid UTF-8")
            if c == ord("\\") or c < 0x20:
                break
            if c >= 0x80:
                ascii = False
            j += 1
        if j >= self.n:
            self.tok = j
            return self.fail("truncated input: unterminated string")
        return self.escaped_string(start)

    cdef str escaped_string(self, Py_ssize_t start):
        cdef uint32_t* buf = <uint32_t*>PyMem_Malloc((self.n - start + 1) * sizeof(uint32_t))
        if buf == NULL:
            raise MemoryError()
        try:
            return self.fill_escaped(start, buf)
        finally:
            PyMem_Free(buf)

    cdef str fill_escaped(self, Py_ssize_t j, uint32_t* buf):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t k = 0, need, m
        cdef unsigned char c
        cdef uint32_t cp, lo
        while True:
            if j >= self.n:
                self.tok = j
                return self.fail("truncated input: unterminated string")
            c = s[j]
            if c == ord('"'):
                self.i = j + 1
                return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, k)
            if c < 0x20:
                self.tok = j
                return self.fail("control character in string")
            if c == ord("\\"):
                self.tok = j
                if j + 1 >= self.n:
                    return self.fail("truncated input: unterminated string")
                c = s[j + 1]
                j += 2
                if c == ord("u"):
                    cp = self.hex4(j)
                    j += 4
                    if 0xD800 <= cp < 0xDC00 and j + 6 <= self.n and s[j] == ord("\\") and s[j + 1] == ord("u"):
                        lo = self.hex4(j + 2)
                        if 0xDC00 <= lo < 0xE000:
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                            j += 6
                    buf[k] = cp
                elif c == ord('"') or c == ord("\\") or c == ord("/"):
                    buf[k] = c
                elif c == ord("b"):
                    buf[k] = 8
                elif c == ord("f"):
                    buf[k] = 12
                elif c == ord("n"):
                    buf[k] = 10
                elif c == ord("r"):
                    buf[k] = 13
                elif c == ord("t"):
                    buf[k] = 9
                else:
                    return self.fail("bad escape in string")
                k += 1
                continue
            if c < 0x80:
                buf[k] = c
                k += 1
                j += 1
                continue
            # UTF-8 sequence: validate it (no overlongs, surrogates or values past U+10FFFF)
            self.tok = j
            if 0xC2 <= c <= 0xDF:
                need, cp = 1, c & 0x1F
            elif 0xE0 <= c <= 0xEF:
                need, cp = 2, c & 0x0F
            elif 0xF0 <= c <= 0xF4:
                need, cp = 3, c & 0x07
            else:
                return self.fail("invalid UTF-8")
            if j + need >= self.n:
                return self.fail("invalid UTF-8")
            for m in range(1, need + 1):
                if s[j + m] & 0xC0 != 0x80:
                    return self.fail("invalid UTF-8")
                cp = (cp << 6) | (s[j + m] & 0x3F)
            if (need == 2 and (cp < 0x800 or 0xD800 <= cp <= 0xDFFF)) or (need == 3 and not 0x10000 <= cp <= 0x10FFFF):
                return self.fail("invalid UTF-8")
            buf[k] = cp
            k += 1
            j += need + 1

    cdef uint32_t hex4(self, Py_ssize_t j) except? 0xFFFFFFFF:
        cdef uint32_t v = 0
        cdef unsigned char c
        cdef Py_ssize_t m
        if j + 4 > self.n:
            self.fail("truncated input: bad \\u escape")
        for m in range(4):
            c = self.s[j + m]
            if ord("0") <= c <= ord("9"):
                v = v * 16 + (c - ord("0"))
            elif ord("a") <= c <= ord("f"):
                v = v * 16 + (c - ord("a") + 10)
            elif ord("A") <= c <= ord("F"):
                v = v * 16 + (c - ord("A") + 10)
            else:
                self.fail("bad \\u escape")
        return v

    cdef int deeper(self, int depth) except -1:
        if depth > self.max_depth:
            self.fail(f"nesting deeper than max_depth={self.max_depth}")
        return 0

    cdef inline bint next_item(self, unsigned char close, str what) except -1:
        """After an item of an array or object: True at ',' (another follows), False at its ``close``."""
        cdef unsigned char c
        self.ws()
        self.tok = self.i
        if self.i >= self.n:
            self.fail(f"truncated input: unterminated {what}")
        c = self.s[self.i]
        self.i += 1
        if c == ord(","):
            return True
        if c != close:
            self.fail(f"expected ',' or '{chr(close)}' in {what}")
        return False

    cdef object array(self, bint hashable, int depth):
        self.deeper(depth)
        self.i += 1
        self.ws()
        if self.i < self.n and self.s[self.i] == ord("]"):
            self.i += 1
            return () if hashable else []
        first = self.value(False, hashable, True, depth)
        if first is _MARK:
            return self.map_rest(hashable, depth)
        if type(first) is _Tag:
            self.expect(ord(","), "',' after a tag")
            v = self.tagged((<_Tag>first).tag, hashable, depth)
            self.expect(ord("]"), "']' closing a tagged value")
            return v
        items = [first]
        while self.next_item(ord("]"), "array"):
            items.append(self.value(False, hashable, False, depth))
        return tuple(items) if hashable else items

    cdef object map_rest(self, bint hashable, int depth):
        m = {}
        while self.next_item(ord("]"), "map"):
            k = self.value(True, True, False, depth)
            self.expect(ord(","), "a value for the map key")
            m[k] = self.value(False, hashable, False, depth)
        return FrozenDict(m) if hashable else m

    cdef object tagged(self, str tag, bint hashable, int depth):
        cdef RepMode mode = _rep_mode(tag)
        if mode == REP_CMAP:
            self.ws()
            self.tok = self.i
            if self.i >= self.n or self.s[self.i] != ord("["):
                return self.fail("a cmap needs an array")
            self.deeper(depth + 1)
            self.i += 1
            flat = []
            self.ws()
            if self.i < self.n and self.s[self.i] == ord("]"):
                self.i += 1
            else:
                while True:
                    # cmap keys are array items to the cache: never in map-key position
                    flat.append(self.value(False, len(flat) % 2 == 0 or hashable, False, depth + 1))
                    if not self.next_item(ord("]"), "array"):
                        break
            rep = flat
        else:
            self.ws()
            rep_pos = self.i
            rep = self.value(False, hashable or mode == REP_HASHABLE, False, depth)
            self.tok = rep_pos  # a rep of the wrong shape is reported where it starts
        return self.finish(tag, rep, hashable)

    cdef object obj(self, bint hashable, int depth):
        self.deeper(depth)
        self.i += 1
        self.ws()
        self.tok = self.i
        if self.i < self.n and self.s[self.i] == ord("}"):
            self.i += 1
            return FrozenDict() if hashable else {}
        m = {}
        first = True
        while True:
            self.ws()
            self.tok = self.i
            if self.i >= self.n or self.s[self.i] != ord('"'):
                return self.fail("expected a string key in object")
            k = self.string(self.raw_string(), True, first)
            if first and type(k) is _Tag:
                self.expect(ord(":"), "':' after a key")
                v = self.tagged((<_Tag>k).tag, hashable, depth)
                self.expect(ord("}"), "'}' closing a tagged value")
                return v
            first = False
            self.expect(ord(":"), "':' after a key")
            m[k] = self.value(False, hashable, False, depth)
            if not self.next_item(ord("}"), "object"):
                return FrozenDict(m) if hashable else m

    # -- msgpack (already unpacked by msgspec) -------------------------------------------------

    cdef object walk(self, object o, bint key, bint hashable, bint head, int depth):
        cdef type t = type(o)
        cdef Py_ssize_t n, i
        if t is str:
            return self.string(o, key, head)
        if t is list:
            self.deeper(depth + 1)
            n = PyList_GET_SIZE(o)
            if n == 0:
                return () if hashable else []
            first = self.walk(<object>PyList_GET_ITEM(o, 0), False, hashable, True, depth + 1)
            if first is _MARK:
                if n % 2 == 0:
                    return self.fail("odd number of map entries")
                m = {}
                for i in range(1, n, 2):
                    k = self.walk(<object>PyList_GET_ITEM(o, i), True, True, False, depth + 1)
                    m[k] = self.walk(<object>PyList_GET_ITEM(o, i + 1), False, hashable, False, depth + 1)
                return FrozenDict(m) if hashable else m
            if type(first) is _Tag:
                if n != 2:
                    return self.fail("a tagged value is a tag and one rep")
                return self.walk_tagged((<_Tag>first).tag, <object>PyList_GET_ITEM(o, 1), hashable, depth + 1)
            items = [first]
            for i in range(1, n):
                items.append(self.walk(<object>PyList_GET_ITEM(o, i), False, hashable, False, depth + 1))
            return tuple(items) if hashable else items
        if t is dict:
            self.deeper(depth + 1)
            m = {}
            first_entry = True
            for k, v in (<dict>o).items():
                wk = self.walk(k, True, True, first_entry and len(<dict>o) == 1, depth + 1)
                if type(wk) is _Tag:
                    return self.walk_tagged((<_Tag>wk).tag, v, hashable, depth + 1)
                first_entry = False
                m[wk] = self.walk(v, False, hashable, False, depth + 1)
            return FrozenDict(m) if hashable else m
        if o is None or t is bool or t is int or t is float or t is bytes:
            return o
        return self.fail(f"msgpack value of type {t.__name__} has no transit meaning")

    cdef object walk_tagged(self, str tag, object rep, bint hashable, int depth):
        cdef RepMode mode = _rep_mode(tag)
        if mode == REP_CMAP:
            if type(rep) is not list:
                return self.fail("a cmap needs an array")
            self.deeper(depth + 1)
            flat = [self.walk(x, False, i % 2 == 0 or hashable, False, depth + 1) for i, x in enumerate(rep)]
            return self.finish(tag, flat, hashable)
        return self.finish(tag, self.walk(rep, False, hashable or mode == REP_HASHABLE, False, depth), hashable)


cdef _Reader _reader(handlers, max_depth):
    cdef _Reader r = _Reader()
    if max_depth < 0 or max_depth > MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}")
    r.max_depth = max_depth
    r.handlers = dict(handlers) if handlers else None
    r.kw_fast = r.handlers is None or ":" not in r.handlers
    return r


cdef int _fits(Py_ssize_t size, Py_ssize_t max_size) except -1:
    if size > max_size:
        raise DecodeError(f"input longer than max_size={max_size}", max_size)
    return 0


def loads(data, *, handlers=None, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """The value of transit-json or json-verbose text (str or UTF-8 bytes); DecodeError if it is not valid.

    ``handlers`` maps tags to functions of the rep; ``pos`` of an error counts characters for str input
    and bytes for bytes input.
    """
    cdef _Reader r = _reader(handlers, max_depth)
    cdef Py_ssize_t size
    cdef const char* utf8
    is_text = isinstance(data, str)
    if is_text:
        _fits(len(data), max_size)
        try:
            utf8 = PyUnicode_AsUTF8AndSize(data, &size)
        except UnicodeEncodeError as e:
            raise DecodeError("input contains a lone surrogate", e.start) from None
        r.src = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        r.src = bytes(data)
        utf8 = PyBytes_AS_STRING(r.src)
        size = PyBytes_GET_SIZE(r.src)
    else:
        raise TypeError(f"transit loads reads str or bytes, not {type(data).__name__}")
    _fits(size, max_size)
    r.s = <const unsigned char*>utf8
    r.n = size
    r.i = 0
    try:
        value = r.value(False, False, False, 0)
        r.ws()
        r.tok = r.i
        if r.i != r.n:
            r.fail("trailing data after the value")
    except DecodeError as e:
        if is_text and e.pos is not None:
            # report a character offset into the str the caller gave
            raise DecodeError(e.msg, len((<const char*>utf8)[:min(e.pos, size)].decode("utf-8", "ignore"))) from None
        raise
    return value


def loads_msgpack(data, *, handlers=None, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """The value of transit msgpack bytes; DecodeError if they are not valid."""
    cdef _Reader r = _reader(handlers, max_depth)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"transit loads_msgpack reads bytes, not {type(data).__name__}")
    _fits(len(data), max_size)
    try:
        raw = _MSGPACK_DECODER.decode(data)
    except RecursionError:
        raise DecodeError(f"nesting deeper than max_depth={max_depth}") from None
    except (msgspec.DecodeError, TypeError, ValueError) as e:
        raise DecodeError(f"invalid msgpack: {e}") from None
    r.tok = -1
    try:
        return r.walk(raw, False, False, False, 0)
    except DecodeError as e:
        raise DecodeError(e.msg, None) from None
