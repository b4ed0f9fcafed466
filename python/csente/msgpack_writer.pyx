# cython: boundscheck=False, wraparound=False
"""MessagePack writing exactly as Sente's msgpack packer (1.21+, ``taoensso.msgpack``) writes it: ``dumps``,
and ``encode_event``/``pack_batch`` for push batches (the map-key cache spans the whole envelope).

Written only (beside what csente.msgpack's reader gives back): List, tuple, set and other Mappings/Sets
(as their kind), Decimal (as a float64, as BigDecimal is), Fraction with denominator 1 (an int). Anything
else is an :class:`EncodeError`, raised before any output exists. The output is built in bytebuf.pxd's
buffer, reserved before every direct write, hence no bounds checks.
"""

cimport cython

import collections.abc
import datetime as _dt
import sys
from array import array
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

from cpython.object cimport Py_TYPE
from libc.stdint cimport int8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from csente cimport bytebuf
from csente.bytebuf cimport Buffer
from csente.types cimport Char, Keyword, Symbol

from csente.types import FrozenDict, List

cdef extern from "Python.h":
    ctypedef struct PyObject
    int PyUnicode_IS_ASCII(object) noexcept
    void* PyUnicode_DATA(object) noexcept
    Py_ssize_t PyUnicode_GET_LENGTH(object) noexcept
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) noexcept
    object PyBytes_FromStringAndSize(const char*, Py_ssize_t)
    char* PyBytes_AS_STRING(object) noexcept
    Py_ssize_t PyBytes_GET_SIZE(object) noexcept
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    double PyFloat_AS_DOUBLE(object) noexcept
    int PyDict_Next(object, Py_ssize_t*, PyObject**, PyObject**) noexcept
    Py_ssize_t PyDict_GET_SIZE(object) noexcept
    Py_hash_t PyObject_Hash(object) except -1
    bint PyUnicode_Check(object) noexcept
    int PyUnicode_Compare(object, object) except? -1
    Py_ssize_t PyList_GET_SIZE(object) noexcept
    PyObject* PyList_GET_ITEM(object, Py_ssize_t) noexcept
    int PyList_Append(object, object) except -1
    Py_ssize_t PyTuple_GET_SIZE(object) noexcept
    PyObject* PyTuple_GET_ITEM(object, Py_ssize_t) noexcept
    void PyErr_Clear() noexcept

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_LITTLE = sys.byteorder == "little"
_Mapping = collections.abc.Mapping
_Set = collections.abc.Set
cdef dict _TYPED = {"i": 5, "f": 6, "d": 7}           # array typecode -> ext type (when the item size fits)
TYPED_SIZE = {"i": 4, "f": 4, "d": 8}
"""The item size of each typed array's elements (Java's int[], float[], double[]), by array typecode."""
cdef dict _TYPED_SIZE = TYPED_SIZE
cdef object _FROZEN_DICT = FrozenDict  # C globals: no module dict lookup on the writer's path
cdef object _LIST = List


class EncodeError(TypeError):
    """A value Sente's msgpack packer cannot write: an unsupported type, or an int outside 64 bits.

    Raised before any output is produced, so a refused push never becomes a partial frame.
    """


cdef class Ext:
    """An ext value of a type Sente does not define (its ``PackableExt``): the signed type and raw payload."""

    def __init__(self, int type, bytes data):
        if not -128 <= type <= 127:
            raise ValueError("an ext type is a signed byte (-128..127)")
        self.type = type
        self.data = data

    def __eq__(self, other):
        if type(other) is Ext:
            return self.type == (<Ext>other).type and self.data == (<Ext>other).data
        return NotImplemented

    def __hash__(self):
        return hash((Ext, self.type, self.data))

    def __repr__(self):
        return f"Ext({self.type}, {self.data!r})"

    def __reduce__(self):
        return (Ext, (self.type, self.data))


cdef bytes _jvm_utf8(str s):
    """UTF-8 as Java's ``String.getBytes``: a surrogate pair is one character, a lone surrogate is ``?``."""
    cdef list out = []
    cdef Py_ssize_t i = 0, n = len(s)
    cdef long c, d
    while i < n:
        c = ord(s[i])
        d = ord(s[i + 1]) if i + 1 < n else 0
        if 0xD800 <= c <= 0xDBFF and 0xDC00 <= d <= 0xDFFF:
            out.append(chr(0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00)))
            i += 2
            continue
        out.append("?" if 0xD800 <= c <= 0xDFFF else s[i])
        i += 1
    return "".join(out).encode("utf-8")


cdef inline void _be16(char* p, uint16_t v) noexcept:
    p[0] = <char>(v >> 8)
    p[1] = <char>v


cdef inline void _be32(char* p, uint32_t v) noexcept:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef inline void _be64(char* p, uint64_t v) noexcept:
    _be32(p, <uint32_t>(v >> 32))
    _be32(p + 4, <uint32_t>v)


cdef inline Py_ssize_t _ext_head(char* out, unsigned char kind, Py_ssize_t n) noexcept:
    """Writes an ext header for a payload of ``n`` bytes (at most 4 GiB, checked by the caller); its length.

    fixext d4..d8 for payloads of exactly 1/2/4/8/16 bytes, else ext8/16/32 with the length.
    """
    cdef Py_ssize_t h
    if n == 1 or n == 2 or n == 4 or n == 8 or n == 16:
        out[0] = <char>(0xD4 + (0 if n == 1 else 1 if n == 2 else 2 if n == 4 else 3 if n == 8 else 4))
        h = 1
    elif n <= 0xFF:
        out[0] = <char>0xC7
        out[1] = <char>n
        h = 2
    elif n <= 0xFFFF:
        out[0] = <char>0xC8
        _be16(out + 1, <uint16_t>n)
        h = 3
    else:
        out[0] = <char>0xC9
        _be32(out + 1, <uint32_t>n)
        h = 5
    out[h] = <char>kind
    return h + 1


cdef struct _Slot:
    PyObject* key      # borrowed: the writer's ``keys`` list holds it
    Py_hash_t hash
    uint32_t gen       # the slot is in use for the writer generation it names
    unsigned char index


cdef enum:
    SLOTS = 2 * CACHE_SIZE  # open addressing at most half full


@cython.final
cdef class _Writer:
    """One message being written. The map-key cache is a table of the keys written so far, by identity
    (keywords are interned) or, for strings, by value; a new generation empties it without clearing."""

    cdef Buffer out
    cdef list keys     # the cached keys, in index order (and the references the table borrows)
    cdef _Slot slots[SLOTS]
    cdef uint32_t gen
    cdef int depth
    cdef bint busy

    def __cinit__(self):
        bytebuf.init(&self.out, 256)
        self.keys = []
        self.gen = 1

    def __dealloc__(self):
        bytebuf.release(&self.out)

    cdef void reset(self) noexcept:
        """Ready for the next message: empty buffer, empty cache (a new generation)."""
        self.out.len = 0
        self.depth = 0
        if self.keys:
            self.keys = []
        self.gen += 1
        if self.gen == 0:  # wrapped: old generations could match again
            memset(self.slots, 0, sizeof(self.slots))
            self.gen = 1

    cdef int load_cache(self, list keys) except -1:
        """Continue from another writer's cache (the keys it numbered, in order)."""
        for k in keys:
            self.cached(k)
        return 0

    cdef Py_ssize_t cached(self, object k) except -2:
        """The cache index of keyword/string key ``k``, or -1 after numbering it (while there is room)."""
        cdef Py_hash_t h = (<Keyword>k)._hash if type(k) is Keyword else PyObject_Hash(k)
        cdef size_t i = <size_t>h % SLOTS
        cdef _Slot* slot
        cdef Py_ssize_t n
        cdef bint text = PyUnicode_Check(k)
        while True:
            slot = &self.slots[i]
            if slot.gen != self.gen:
                break
            if slot.key == <PyObject*>k or (
                    text and slot.hash == h and PyUnicode_Check(<object>slot.key)
                    and PyUnicode_Compare(<object>slot.key, k) == 0):
                return slot.index
            i = (i + 1) % SLOTS
        n = PyList_GET_SIZE(self.keys)
        if n < CACHE_SIZE:
            PyList_Append(self.keys, k)
            slot.key = <PyObject*>k
            slot.hash = h
            slot.gen = self.gen
            slot.index = <unsigned char>n
        return -1

    cdef inline int put_head(self, unsigned char tag, uint64_t v, int width) except -1:
        """``tag`` then ``v`` big-endian in ``width`` (1, 2, 4 or 8) bytes."""
        cdef char* p
        bytebuf.reserve(&self.out, 9)
        p = self.out.data + self.out.len
        p[0] = <char>tag
        if width == 1:
            p[1] = <char>v
        elif width == 2:
            _be16(p + 1, <uint16_t>v)
        elif width == 4:
            _be32(p + 1, <uint32_t>v)
        else:
            _be64(p + 1, v)
        self.out.len += 1 + width
        return 0

    cdef int put_long(self, long long v) except -1:
        """Sente's widths: fixint, then the narrowest of cc/cd/ce (d0/d1/d2) that holds it, else d3; never cf."""
        if v >= 0:
            if v <= 0x7F:
                return bytebuf.putc(&self.out, <unsigned char>v)
            if v <= 0xFF:
                return self.put_head(0xCC, <uint64_t>v, 1)
            if v <= 0xFFFF:
                return self.put_head(0xCD, <uint64_t>v, 2)
            if v <= 0xFFFFFFFFLL:
                return self.put_head(0xCE, <uint64_t>v, 4)
            return self.put_head(0xD3, <uint64_t>v, 8)
        if v >= -32:
            return bytebuf.putc(&self.out, <unsigned char>(<int8_t>v))
        if v >= -128:
            return self.put_head(0xD0, <uint64_t>v, 1)
        if v >= -32768:
            return self.put_head(0xD1, <uint64_t>v, 2)
        if v >= -2147483648:
            return self.put_head(0xD2, <uint64_t>v, 4)
        return self.put_head(0xD3, <uint64_t>v, 8)

    cdef int put_int(self, object x) except -1:
        cdef int overflow = 0
        cdef long long v = PyLong_AsLongLongAndOverflow(x, &overflow)
        if overflow:
            raise EncodeError(f"Pack failed: {x} is outside the 64-bit range Sente's msgpack writes "
                              "(BigInteger out of long range)")
        return self.put_long(v)

    cdef int put_double(self, double d) except -1:
        cdef F64 f
        f.d = d
        return self.put_head(0xCB, f.u, 8)

    cdef int put_sized(self, unsigned char fix, unsigned int fixmax, unsigned char base, Py_ssize_t n) except -1:
        """An array/map header: ``fix | n`` up to ``fixmax``, else :meth:`put_wide`."""
        if n <= fixmax:
            return bytebuf.putc(&self.out, fix | <unsigned char>n)
        return self.put_wide(base, n)

    cdef int put_wide(self, unsigned char base, Py_ssize_t n) except -1:
        """``base`` with a 16-bit length, or ``base + 1`` with a 32-bit one (str16/32, bin16/32, ...)."""
        if n <= 0xFFFF:
            return self.put_head(base, <uint64_t>n, 2)
        if n > 0xFFFFFFFFLL:
            raise EncodeError("Pack failed: more than 2^32-1 elements or bytes")
        return self.put_head(base + 1, <uint64_t>n, 4)

    cdef int put_utf8(self, str s, unsigned char kind) except -1:
        """``s`` as UTF-8 (Java's encoder: a lone surrogate is ``?``): a str (kind 255) or an ext payload."""
        cdef Py_ssize_t n, h
        cdef const char* p
        cdef char* out
        cdef bytes b
        if PyUnicode_IS_ASCII(s):
            p = <const char*>PyUnicode_DATA(s)
            n = PyUnicode_GET_LENGTH(s)
        else:
            p = PyUnicode_AsUTF8AndSize(s, &n)
            if p == NULL:
                PyErr_Clear()
                b = _jvm_utf8(s)
                p = PyBytes_AS_STRING(b)
                n = PyBytes_GET_SIZE(b)
        if n > 0xFFFFFFFFLL:
            raise EncodeError("Pack failed: a string over 4 GiB")
        bytebuf.reserve(&self.out, n + EXT_RESERVE)
        out = self.out.data + self.out.len
        if kind != 255:
            h = _ext_head(out, kind, n)
        elif n <= 31:
            out[0] = <char>(0xA0 | n)
            h = 1
        elif n <= 0xFF:
            out[0] = <char>0xD9
            out[1] = <char>n
            h = 2
        elif n <= 0xFFFF:
            out[0] = <char>0xDA
            _be16(out + 1, <uint16_t>n)
            h = 3
        else:
            out[0] = <char>0xDB
            _be32(out + 1, <uint32_t>n)
            h = 5
        memcpy(out + h, p, n)
        self.out.len += h + n
        return 0

    cdef int put_ext_head(self, unsigned char kind, Py_ssize_t n) except -1:
        if n > 0xFFFFFFFFLL:
            raise EncodeError("Pack failed: an ext payload over 4 GiB")
        bytebuf.reserve(&self.out, EXT_RESERVE)
        self.out.len += _ext_head(self.out.data + self.out.len, kind, n)
        return 0

    cdef Py_ssize_t open_ext(self) except -1:
        """Start an ext whose payload is written next (a set's array, a ratio's two ints)."""
        cdef Py_ssize_t start = self.out.len
        bytebuf.reserve(&self.out, EXT_RESERVE)
        self.out.len += EXT_RESERVE
        return start

    cdef int close_ext(self, Py_ssize_t start, unsigned char kind) except -1:
        """Put the header of the ext opened at ``start`` before its payload, now that its length is known."""
        cdef Py_ssize_t n = self.out.len - start - EXT_RESERVE, h
        self.out.len = start
        self.put_ext_head(kind, n)
        h = self.out.len - start
        memmove(self.out.data + start + h, self.out.data + start + EXT_RESERVE, n)
        self.out.len = start + h + n
        return 0

    cdef int enter(self) except -1:
        self.depth += 1
        if self.depth > HARD_MAX_DEPTH:
            raise EncodeError(f"Pack failed: nesting deeper than {HARD_MAX_DEPTH} (a circular structure?)")
        return 0

    cdef int put_key(self, object k) except -1:
        cdef type t = type(k)
        cdef Py_ssize_t index
        if t is Keyword or t is str or isinstance(k, str):
            index = self.cached(k)
            if index < 0:
                return self.write(k)
            return self.put_head(0xD4, (0x08 << 8) | <uint64_t>index, 2)  # d4 08 <index>
        return self.write(k)

    cdef int put_map(self, object m) except -1:
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        self.enter()
        if type(m) is dict or type(m) is FrozenDict:
            self.put_sized(0x80, 15, 0xDE, PyDict_GET_SIZE(m))
            while PyDict_Next(m, &pos, &k, &v):
                self.put_key(<object>k)
                self.write(<object>v)
        else:
            items = list(m.items())
            self.put_sized(0x80, 15, 0xDE, len(items))
            for key, value in items:
                self.put_key(key)
                self.write(value)
        self.depth -= 1
        return 0

    cdef int put_seq(self, object seq) except -1:
        cdef Py_ssize_t i, n
        self.enter()
        if type(seq) is list:
            n = PyList_GET_SIZE(seq)
            self.put_sized(0x90, 15, 0xDC, n)
            for i in range(n):
                # the list may change size under a __eq__/__hash__ call; re-read its length
                if i >= PyList_GET_SIZE(seq):
                    raise EncodeError("Pack failed: a list changed size while being written")
                self.write(<object>PyList_GET_ITEM(seq, i))
        elif isinstance(seq, tuple):
            n = PyTuple_GET_SIZE(seq)
            self.put_sized(0x90, 15, 0xDC, n)
            for i in range(n):
                self.write(<object>PyTuple_GET_ITEM(seq, i))
        else:
            items = list(seq)
            self.put_sized(0x90, 15, 0xDC, len(items))
            for x in items:
                self.write(x)
        self.depth -= 1
        return 0

    cdef int put_set(self, object s) except -1:
        cdef Py_ssize_t start = self.open_ext()
        self.put_seq(list(s))  # in the set's own iteration order
        return self.close_ext(start, 4)

    cdef int put_ratio(self, object x) except -1:
        cdef Py_ssize_t start
        if x.denominator == 1:  # a Clojure ratio is never whole: n/1 is the integer n
            return self.put_int(x.numerator)
        start = self.open_ext()
        self.put_int(x.numerator)
        self.put_int(x.denominator)
        return self.close_ext(start, 3)

    cdef int put_inst(self, object x) except -1:
        """ext -1, always 12 bytes: u32 nanoseconds then i64 epoch seconds (Instant's normalised form)."""
        cdef char* p
        if x.tzinfo is None or x.utcoffset() is None:
            raise EncodeError("Pack failed: a naive datetime has no instant (give it a tzinfo)")
        delta = x - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        self.put_ext_head(0xFF, 12)
        bytebuf.reserve(&self.out, 12)
        p = self.out.data + self.out.len
        _be32(p, <uint32_t>(delta.microseconds * 1000))
        _be64(p + 4, <uint64_t>(<long long>seconds))
        self.out.len += 12
        return 0

    cdef int put_typed(self, object a) except -1:
        """array.array of typecode i/f/d (int[]/float[]/double[]) as ext 5/6/7, big-endian elements."""
        code = a.typecode
        if code not in _TYPED or a.itemsize != _TYPED_SIZE[code]:
            raise EncodeError(f"Pack failed: unsupported type (array of typecode {code!r}; "
                              "only 'i', 'f' and 'd' arrays are Java int[], float[], double[])")
        if _LITTLE:
            a = array(code, a)
            a.byteswap()
        payload = a.tobytes()
        self.put_ext_head(<unsigned char>(<int>_TYPED[code]), len(payload))
        return bytebuf.put(&self.out, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))

    cdef int put_bin(self, object b) except -1:
        cdef bytes data = b if type(b) is bytes else bytes(b)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if n <= 0xFF:
            self.put_head(0xC4, <uint64_t>n, 1)
        else:
            self.put_wide(0xC5, n)
        return bytebuf.put(&self.out, PyBytes_AS_STRING(data), n)

    cdef int write(self, object x) except -1:
        # the type as a raw pointer: no reference counting of shared type objects on the hottest path
        cdef PyObject* t = <PyObject*>Py_TYPE(x)
        if t == <PyObject*>str:
            return self.put_utf8(x, 255)
        if t == <PyObject*>Keyword:
            return self.put_utf8((<Keyword>x).text, 0)
        if t == <PyObject*>int:
            return self.put_int(x)
        if t == <PyObject*>dict:
            return self.put_map(x)
        if t == <PyObject*>list or t == <PyObject*>tuple:
            return self.put_seq(x)
        if t == <PyObject*>float:
            return self.put_double(PyFloat_AS_DOUBLE(x))
        if x is None:
            return bytebuf.putc(&self.out, 0xC0)
        if x is True:
            return bytebuf.putc(&self.out, 0xC3)
        if x is False:
            return bytebuf.putc(&self.out, 0xC2)
        if t == <PyObject*>frozenset or t == <PyObject*>set:
            return self.put_set(x)
        if t == <PyObject*>Symbol:
            return self.put_utf8((<Symbol>x).text, 1)
        if t == <PyObject*>_FROZEN_DICT:
            return self.put_map(x)
        if t == <PyObject*>_LIST:
            return self.put_seq(x)
        if t == <PyObject*>Char:
            return self.put_utf8((<Char>x).char, 2)
        return self.write_other(x, type(x))

    cdef int write_other(self, object x, type t) except -1:
        """The rarer types, then subclasses of the ones above."""
        if t is UUID or isinstance(x, UUID):
            return self.put_utf8(str(x), 9)
        if isinstance(x, _dt.datetime):
            return self.put_inst(x)
        if isinstance(x, Fraction):
            return self.put_ratio(x)
        if isinstance(x, Decimal):
            if not x.is_finite():
                raise EncodeError(f"Pack failed: BigDecimal has no {x}")
            return self.put_double(0.0 if x.is_zero() else float(x))
        if isinstance(x, (bytes, bytearray, memoryview)):
            return self.put_bin(x)
        if isinstance(x, array):
            return self.put_typed(x)
        if t is Ext:
            if (<Ext>x).type == 8:
                raise EncodeError("Pack failed: ext type 8 is the map-key cache's own")
            self.put_ext_head(<unsigned char>(<int8_t>(<Ext>x).type), len((<Ext>x).data))
            return bytebuf.put(&self.out, PyBytes_AS_STRING((<Ext>x).data), PyBytes_GET_SIZE((<Ext>x).data))
        if isinstance(x, int):
            return self.put_int(int(x))
        if isinstance(x, float):
            return self.put_double(float(x))
        if isinstance(x, str):
            return self.put_utf8(str(x), 255)
        if isinstance(x, (list, tuple)):
            return self.put_seq(x)
        if isinstance(x, _Mapping):
            return self.put_map(x)
        if isinstance(x, _Set):
            return self.put_set(x)
        raise EncodeError(f"Pack failed: unsupported type ({t.__module__}.{t.__qualname__})")

    cdef bytes result(self):
        return PyBytes_FromStringAndSize(self.out.data, self.out.len)


cdef _Writer _spare = _Writer()


cdef _Writer _writer():
    """The module's writer, or a new one while it is in use (a value's own Python code may call dumps)."""
    cdef _Writer w = _spare if not _spare.busy else _Writer()
    w.reset()
    w.busy = True
    return w


cdef void _done(_Writer w) noexcept:
    w.busy = False
    w.keys = []
    bytebuf.trim(&w.out, 65536, 256)  # do not keep a big message's buffer


def dumps(value):
    """``value`` as the bytes Sente's msgpack packer writes for the corresponding Clojure value.

    One fresh map-key cache spans the whole value. Raises :class:`EncodeError` for values Sente's packer
    refuses or Python has no msgpack form for (before any output exists).
    """
    cdef _Writer w = _writer()
    try:
        w.write(value)
        return w.result()
    finally:
        _done(w)


cdef class EncodedEvent:
    """An event packed alone, for :func:`pack_batch`; opaque to callers, reusable across batches."""

    cdef readonly object event
    cdef readonly bytes data
    cdef list cache  # the keys it numbered, in order; None when it wrote no cacheable key

    def __repr__(self):
        return f"EncodedEvent({self.event!r}, {self.data.hex()})"


def encode_event(event):
    """Pack ``event`` once (an :class:`EncodeError` here refuses it before it joins any batch)."""
    cdef _Writer w = _writer()
    cdef EncodedEvent e = EncodedEvent.__new__(EncodedEvent)
    try:
        w.write(event)
        e.event = event
        e.data = w.result()
        e.cache = w.keys if w.keys else None
    finally:
        _done(w)
    return e


def pack_batch(events):
    """The envelope ``[[ev1 ev2 ...] nil]`` for events from :func:`encode_event`, with one key cache.

    Exactly the bytes of ``dumps([[ev1, ev2, ...], None])``. An event's own bytes are reused while the
    cache before it is empty (it then writes the same) or when it writes no cacheable key (the cache
    does not touch it); only keyed events after the first keyed one are written again, with the cache.
    """
    cdef EncodedEvent e
    cdef bint keyed = False
    cdef Py_ssize_t n = len(events)
    for item in events:
        if type(item) is not EncodedEvent:
            raise TypeError(f"pack_batch takes events from encode_event, got {type(item).__name__}")
    cdef _Writer w = _writer()
    try:
        bytebuf.putc(&w.out, 0x92)
        w.put_sized(0x90, 15, 0xDC, n)
        for item in events:
            e = <EncodedEvent>item
            if e.cache is None or not keyed:
                bytebuf.put(&w.out, PyBytes_AS_STRING(e.data), PyBytes_GET_SIZE(e.data))
                if e.cache is not None:
                    w.load_cache(e.cache)
                    keyed = True
            else:
                w.write(e.event)
        bytebuf.putc(&w.out, 0xC0)
        return w.result()
    finally:
        _done(w)
