# cython: boundscheck=False, wraparound=False
"""MessagePack reading exactly as Sente's msgpack packer (1.21+, ``taoensso.msgpack``) reads it: ``loads``.

Reading is for untrusted input: every length is checked against the bytes left before anything is
allocated, nesting is bounded, and every malformed input is a DecodeError. One value is read; trailing
bytes are ignored (browsers send padded Ajax bodies). No buffer index here is computed from input without
a bounds test, hence no bounds checks.
"""

cimport cython

import codecs
import datetime as _dt
import sys
from array import array
from fractions import Fraction
from uuid import UUID

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t

from csente.msgpack_writer cimport CACHE_SIZE, F64, HARD_MAX_DEPTH, Ext
from csente.types cimport Char, keyword, symbol

from csente.msgpack_writer import TYPED_SIZE
from csente.types import DecodeError, FrozenDict

cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    object PyBytes_FromStringAndSize(const char*, Py_ssize_t)
    char* PyBytes_AS_STRING(object) noexcept
    Py_ssize_t PyBytes_GET_SIZE(object) noexcept
    object PyLong_FromLongLong(long long)
    object PyLong_FromUnsignedLongLong(unsigned long long)
    object PyFloat_FromDouble(double)
    int PyDict_SetItem(object, object, object) except -1
    int PyDict_Contains(object, object) except -1
    int PySet_Add(object, object) except -1
    int PySet_Contains(object, object) except -1
    int PyList_Append(object, object) except -1
    object PyList_AsTuple(object)

cdef long long INSTANT_MIN = -31557014167219200   # java.time.Instant's range, in epoch seconds
cdef long long INSTANT_MAX = 31556889864403199

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_LITTLE = sys.byteorder == "little"
cdef tuple _TYPECODES = (None, None, None, None, None, "i", "f", "d")
cdef dict _TYPED_SIZE = TYPED_SIZE


def _jvm_replace(e):
    """Malformed UTF-8 -> U+FFFD as the JVM's decoder does: an encoded surrogate (ed a0..bf xx) is one
    replacement, where Python's own "replace" gives three."""
    cdef bytes b = e.object[e.start:e.start + 3]
    if len(b) == 3 and b[0] == 0xED and 0xA0 <= b[1] <= 0xBF and 0x80 <= b[2] <= 0xBF:
        return "\ufffd", e.start + 3
    return "\ufffd", e.end


codecs.register_error("csente.msgpack.jvm", _jvm_replace)


cdef class CachedKey:
    """A cache reference (ext 8) read outside a map-key position: Sente reads it as a raw ``CachedKey``.

    ``key`` is the key it refers to, or None when the cache has no such entry.
    """

    cdef readonly object key

    def __init__(self, key):
        self.key = key

    def __eq__(self, other):
        if type(other) is CachedKey:
            return self.key == (<CachedKey>other).key
        return NotImplemented

    def __hash__(self):
        return hash((CachedKey, self.key))

    def __repr__(self):
        return f"CachedKey({self.key!r})"

    def __reduce__(self):
        return (CachedKey, (self.key,))


cdef union _F32:
    float f
    uint32_t u


cdef inline uint16_t _rd16(const unsigned char* p) noexcept:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t _rd32(const unsigned char* p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t _rd64(const unsigned char* p) noexcept:
    return (<uint64_t>_rd32(p) << 32) | _rd32(p + 4)


cdef object _java_uuid(str text):
    """``java.util.UUID.fromString``: five dash-separated hex groups, each masked to its field's width
    (so ``1-2-3-4-5`` is accepted, 32 bare hex digits are not)."""
    if len(text) > 36:
        raise ValueError(f"UUID string too large: {text!r}")
    parts = text.split("-")
    if len(parts) != 5:
        raise ValueError(f"Invalid UUID string: {text!r}")
    values = []
    for p in parts:
        if not p or len(p) > 16 or not all(c in "0123456789abcdefABCDEF" for c in p):
            raise ValueError(f"Invalid UUID string: {text!r}")
        values.append(int(p, 16))
    msb = ((values[0] & 0xFFFFFFFF) << 32) | ((values[1] & 0xFFFF) << 16) | (values[2] & 0xFFFF)
    lsb = ((values[3] & 0xFFFF) << 48) | (values[4] & 0xFFFFFFFFFFFF)
    return UUID(int=(msb << 64) | lsb)


cdef object _instant(long long seconds, long long nanos):
    """An aware UTC datetime from Instant.ofEpochSecond(seconds, nanos); below a microsecond is dropped."""
    total = <object>seconds * 1000000000 + nanos  # a Python int: no C overflow
    if not <object>INSTANT_MIN * 1000000000 <= total <= <object>INSTANT_MAX * 1000000000 + 999999999:
        raise ValueError("Instant exceeds minimum or maximum instant")
    try:
        return _EPOCH + _dt.timedelta(microseconds=total // 1000)
    except OverflowError:
        raise ValueError("the instant is outside Python datetime's years 1..9999") from None


@cython.final
cdef class _Reader:
    cdef const unsigned char* s
    cdef Py_ssize_t i
    cdef Py_ssize_t n      # end of what may be read now (a payload's end while reading inside an ext)
    cdef list cache        # keys read in full in map-key position, the first CACHE_SIZE of them
    cdef int max_depth

    cdef int fail(self, str msg) except -1:
        raise DecodeError(msg, self.i)

    cdef inline const unsigned char* take(self, Py_ssize_t k) except NULL:
        """The next ``k`` bytes (checked against what is left before anything is built from them)."""
        cdef const unsigned char* p
        if k > self.n - self.i:
            raise DecodeError(f"truncated input: {k} bytes announced, {self.n - self.i} left", self.i)
        p = self.s + self.i
        self.i += k
        return p

    cdef Py_ssize_t length(self, int width) except -1:
        cdef const unsigned char* p = self.take(width)
        if width == 1:
            return p[0]
        if width == 2:
            return _rd16(p)
        return <Py_ssize_t>_rd32(p)

    cdef str text(self, Py_ssize_t k):
        cdef const unsigned char* p = self.take(k)
        return PyUnicode_DecodeUTF8(<const char*>p, k, "csente.msgpack.jvm")

    cdef object read(self, int depth, bint hashable, bint key):
        cdef unsigned char b
        cdef const unsigned char* p
        cdef _F32 f32
        cdef F64 f64
        if self.i >= self.n:
            self.fail("truncated input: a value was expected")
        b = self.s[self.i]
        self.i += 1
        if b <= 0x7F:
            return PyLong_FromLongLong(b)
        if b >= 0xE0:
            return PyLong_FromLongLong(<int8_t>b)
        if 0xA0 <= b <= 0xBF:
            return self.read_string(b & 0x1F, key)
        if 0x90 <= b <= 0x9F:
            return self.read_array(b & 0x0F, depth, hashable)
        if 0x80 <= b <= 0x8F:
            return self.read_map(b & 0x0F, depth, hashable)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b == 0xCC:
            return PyLong_FromLongLong(self.take(1)[0])
        if b == 0xCD:
            return PyLong_FromLongLong(_rd16(self.take(2)))
        if b == 0xCE:
            return PyLong_FromLongLong(_rd32(self.take(4)))
        if b == 0xCF:
            return PyLong_FromUnsignedLongLong(_rd64(self.take(8)))
        if b == 0xD0:
            return PyLong_FromLongLong(<int8_t>self.take(1)[0])
        if b == 0xD1:
            return PyLong_FromLongLong(<int16_t>_rd16(self.take(2)))
        if b == 0xD2:
            return PyLong_FromLongLong(<int32_t>_rd32(self.take(4)))
        if b == 0xD3:
            return PyLong_FromLongLong(<int64_t>_rd64(self.take(8)))
        if b == 0xCA:
            f32.u = _rd32(self.take(4))
            return PyFloat_FromDouble(f32.f)
        if b == 0xCB:
            f64.u = _rd64(self.take(8))
            return PyFloat_FromDouble(f64.d)
        if b == 0xD9 or b == 0xDA or b == 0xDB:
            return self.read_string(self.length(1 << (b - 0xD9)), key)
        if b == 0xC4 or b == 0xC5 or b == 0xC6:
            k = self.length(1 << (b - 0xC4))
            p = self.take(k)
            return PyBytes_FromStringAndSize(<const char*>p, k)
        if b == 0xDC or b == 0xDD:
            return self.read_array(self.length(2 if b == 0xDC else 4), depth, hashable)
        if b == 0xDE or b == 0xDF:
            return self.read_map(self.length(2 if b == 0xDE else 4), depth, hashable)
        if 0xD4 <= b <= 0xD8:
            return self.read_ext(1 << (b - 0xD4), depth, key)
        if b == 0xC7 or b == 0xC8 or b == 0xC9:
            return self.read_ext(self.length(1 << (b - 0xC7)), depth, key)
        self.i -= 1
        self.fail(f"unexpected byte 0x{b:02x} (reserved)")

    cdef object read_string(self, Py_ssize_t k, bint key):
        s = self.text(k)
        if key and len(self.cache) < CACHE_SIZE:
            self.cache.append(s)
        return s

    cdef int enter(self, int depth) except -1:
        if depth >= self.max_depth:
            self.fail(f"nesting deeper than max_depth={self.max_depth}")
        return 0

    cdef object read_array(self, Py_ssize_t count, int depth, bint hashable):
        cdef list out = []
        cdef Py_ssize_t j
        self.enter(depth)
        if count > self.n - self.i:  # every element takes a byte at least
            self.fail(f"truncated input: an array of {count} elements in {self.n - self.i} bytes")
        for j in range(count):
            PyList_Append(out, self.read(depth + 1, hashable, False))
        return PyList_AsTuple(out) if hashable else out

    cdef object read_map(self, Py_ssize_t count, int depth, bint hashable):
        cdef dict out = {}
        cdef Py_ssize_t j
        self.enter(depth)
        if count > (self.n - self.i) // 2:
            self.fail(f"truncated input: a map of {count} entries in {self.n - self.i} bytes")
        for j in range(count):
            k = self.read(depth + 1, True, True)
            v = self.read(depth + 1, hashable, False)
            try:
                if PyDict_Contains(out, k):
                    self.duplicate(out, k)
                PyDict_SetItem(out, k, v)  # an exact duplicate: the last one wins, as on the JVM
            except TypeError:
                self.fail(f"a map key of type {type(k).__name__} is not hashable in Python")
        return FrozenDict(out) if hashable else out

    cdef int duplicate(self, object container, object k) except -1:
        """Keys Python finds equal but Clojure does not (1, 1.0, true) would merge: refuse them."""
        for other in container:
            if other == k and type(other) is not type(k):
                self.fail(f"{other!r} and {k!r} are distinct in Clojure but equal in Python")
        return 0

    cdef object read_ext(self, Py_ssize_t k, int depth, bint key):
        cdef int8_t kind
        cdef Py_ssize_t end, saved_n
        cdef const unsigned char* p
        if self.i >= self.n:
            self.fail("truncated input: an ext type byte was expected")
        kind = <int8_t>self.s[self.i]
        self.i += 1
        if k > self.n - self.i:
            self.fail(f"truncated input: an ext of {k} bytes in {self.n - self.i}")
        if kind == 4 or kind == 3:  # payloads that are msgpack themselves: read in place, sharing the cache
            end = self.i + k
            saved_n = self.n
            self.n = end
            try:
                x = self.read_set(depth) if kind == 4 else self.read_ratio(depth)
            finally:
                self.n = saved_n
            self.i = end
            return x
        p = self.take(k)
        if kind == 0 or kind == 1:
            text = PyUnicode_DecodeUTF8(<const char*>p, k, "csente.msgpack.jvm")
            if not text:
                self.fail("an empty keyword or symbol has no Python value")
            x = keyword(text) if kind == 0 else symbol(text)
            if kind == 0 and key and len(self.cache) < CACHE_SIZE:
                self.cache.append(x)
            return x
        if kind == 8:
            if k == 0:
                self.fail("a cache reference without its index")
            found = self.cache[p[0]] if p[0] < len(self.cache) else None
            return found if key else CachedKey(found)
        if kind == 2:
            text = PyUnicode_DecodeUTF8(<const char*>p, k, "csente.msgpack.jvm")
            if not text:
                self.fail("an empty char")
            c = ord(text[0])
            return Char(chr(0xD800 + ((c - 0x10000) >> 10)) if c > 0xFFFF else text[0])
        if kind == 9:
            try:
                return _java_uuid(PyUnicode_DecodeUTF8(<const char*>p, k, "csente.msgpack.jvm"))
            except ValueError as e:
                self.fail(str(e))
        if kind == -1:
            if k < 12:
                self.fail(f"a timestamp needs the 12-byte form, got {k} bytes")
            try:
                return _instant(<int64_t>_rd64(p + 4), <int32_t>_rd32(p))
            except ValueError as e:
                self.fail(str(e))
        if 5 <= kind <= 7:
            code = _TYPECODES[kind]
            size = _TYPED_SIZE[code]
            a = array(code, PyBytes_FromStringAndSize(<const char*>p, k - k % size))
            if _LITTLE:
                a.byteswap()
            if key:
                self.fail("a typed array is not hashable in Python: it cannot be a map key or set member")
            return a
        return Ext(kind, PyBytes_FromStringAndSize(<const char*>p, k))

    cdef object read_set(self, int depth):
        """ext 4: an array header (dc/dd, or any other byte's low 4 bits as the count) and the members."""
        cdef set out = set()
        cdef Py_ssize_t count, j
        cdef unsigned char b
        self.enter(depth)
        if self.i >= self.n:
            self.fail("truncated input: a set without its array header")
        b = self.s[self.i]
        self.i += 1
        if b == 0xDC or b == 0xDD:
            count = self.length(2 if b == 0xDC else 4)
        else:
            count = b & 0x0F
        if count > self.n - self.i:
            self.fail(f"truncated input: a set of {count} members in {self.n - self.i} bytes")
        for j in range(count):
            x = self.read(depth + 1, True, False)
            try:
                if PySet_Contains(out, x):
                    self.duplicate(out, x)
                PySet_Add(out, x)
            except TypeError:
                self.fail(f"a set member of type {type(x).__name__} is not hashable in Python")
        return frozenset(out)

    cdef object read_ratio(self, int depth):
        """ext 3: numerator and denominator, divided as Clojure's ``/`` does (n/1 is the integer n)."""
        self.enter(depth)
        num = self.read(depth + 1, False, False)
        den = self.read(depth + 1, False, False)
        if type(num) not in (int, float) or type(den) not in (int, float):
            self.fail("a ratio of non-numbers")
        if type(num) is int and type(den) is int:
            if den == 0:
                self.fail("a ratio with denominator 0 (divide by zero)")
            r = Fraction(num, den)
            return r.numerator if r.denominator == 1 else r
        return PyFloat_FromDouble(<double>num / <double>den)  # IEEE division: x/0.0 is ±Inf or NaN, as in Clojure


def loads(data, *, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """The value of the first msgpack object in ``data`` (trailing bytes are ignored, as Sente does).

    Anything malformed, truncated, nested deeper than ``max_depth`` or longer than ``max_size`` bytes is a
    :class:`DecodeError`; no length read from the input is trusted before the bytes are there.
    """
    cdef _Reader r = _Reader.__new__(_Reader)
    cdef bytes owner
    if not 0 <= max_depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be between 0 and {HARD_MAX_DEPTH}")
    if type(data) is bytes:
        owner = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        owner = bytes(data)
    else:
        raise TypeError(f"msgpack loads() needs bytes, not {type(data).__name__}")
    if PyBytes_GET_SIZE(owner) > max_size:
        raise DecodeError(f"input longer than max_size={max_size}", max_size)
    r.s = <const unsigned char*>PyBytes_AS_STRING(owner)
    r.n = PyBytes_GET_SIZE(owner)
    r.cache = []
    r.max_depth = max_depth
    return r.read(0, False, False)
