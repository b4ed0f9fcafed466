# cython: boundscheck=False, wraparound=False
"""Reading transit-json and json-verbose (``loads``): a tokenizer straight over the UTF-8 input.

msgspec cannot read the lone surrogates transit-clj writes for chars, so the JSON is read here; what the
strings it finds stand for is transit_reader's.

Checks: every raw buffer access is guarded by an explicit ``i < n`` test (the buffers are bytes objects,
NUL terminated), so bounds checking and wraparound are off module-wide.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from csente.numbers cimport exact_double, scan_digits
from csente.transit_reader cimport REP_CMAP, REP_HASHABLE, Reader, RepMode, Tag, check_size, rep_mode
from csente.transit_rules cimport MIN_CACHEABLE
from csente.types cimport Keyword, keyword

from csente.transit_reader import MARK
from csente.types import DecodeError, FrozenDict

cdef extern from "Python.h":
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_New(Py_ssize_t size, uint32_t maxchar)
    object PyUnicode_FromKindAndData(int kind, const void* buf, Py_ssize_t size)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t* size) except NULL
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    int PyUnicode_4BYTE_KIND

cdef object _MARK = MARK


# Keywords read from JSON are found by their bytes in a fixed table (FNV-1a hash -> interned Keyword), which
# spares building and hashing two strings per keyword; a collision just replaces the entry.
cdef struct _ReadSlot:
    PyObject* kw         # owned reference
    unsigned long long h

cdef enum:
    READ_SLOTS = 4096

cdef _ReadSlot _read_table[READ_SLOTS]


cdef class JsonReader(Reader):
    # the input: a NUL-terminated UTF-8 buffer owned by ``src``
    cdef object src
    cdef const unsigned char* s
    cdef Py_ssize_t n, i

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

    cdef inline bint next_item(self, unsigned char close, str what) except -1:
        """After an item of an array or object: True at ',' (another follows), False at its ``close``."""
        cdef unsigned char c
        self.ws()
        self.tok = self.i
        if self.i < self.n:
            c = self.s[self.i]
            self.i += 1
            if c == ord(","):
                return True
            if c == close:
                return False
        return self.bad_item(close, what)

    cdef int bad_item(self, unsigned char close, str what) except -1:
        """next_item's errors, kept out of its inlined path."""
        if self.tok >= self.n:
            self.fail(f"truncated input: unterminated {what}")
        self.fail(f"expected ',' or '{chr(close)}' in {what}")
        return -1  # not reached: fail raises

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
        if type(first) is Tag:
            self.expect(ord(","), "',' after a tag")
            v = self.tagged((<Tag>first).tag, hashable, depth)
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
        cdef RepMode mode = rep_mode(tag)
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
            if first and type(k) is Tag:
                self.expect(ord(":"), "':' after a key")
                v = self.tagged((<Tag>k).tag, hashable, depth)
                self.expect(ord("}"), "'}' closing a tagged value")
                return v
            first = False
            self.expect(ord(":"), "':' after a key")
            m[k] = self.value(False, hashable, False, depth)
            if not self.next_item(ord("}"), "object"):
                return FrozenDict(m) if hashable else m


def loads(data, *, handlers=None, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """The value of transit-json or json-verbose text (str or UTF-8 bytes); DecodeError if it is not valid.

    ``handlers`` maps tags to functions of the rep; ``pos`` of an error counts characters for str input
    and bytes for bytes input.
    """
    cdef JsonReader r = JsonReader()
    cdef Py_ssize_t size
    cdef const char* utf8
    r.setup(handlers, max_depth)
    is_text = isinstance(data, str)
    if is_text:
        check_size(len(data), max_size)
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
    check_size(size, max_size)
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
