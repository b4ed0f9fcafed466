# cython: boundscheck=False, wraparound=False
"""EDN reading for Sente's default packer (``loads``): what tools.reader reads, as Python values.

Every Sente message goes through here, so it is written against the C API: the reader scans UTF-8 bytes
(a str's own ASCII data when it has no other characters) and only builds Python objects for the values.

Reading follows ``clojure.tools.reader.edn`` 1.3.6 (the reader Sente's packer calls), including its
quirks: the first form is read and the rest ignored, characters are UTF-16 units (so ``\\😀`` is not a
character literal), whitespace is Java's ``Character.isWhitespace`` plus the comma, and a form under
``#_`` is read with the built-in ``#inst``/``#uuid`` readers only. Where Python's values can't say what
Clojure's can, the reader refuses rather than guesses: map keys or set members that are equal in
Python (``1`` and ``1.0``, ``1`` and ``true``) are duplicates. No array index here is computed from
input without a bounds test, hence no bounds checks.
"""

import datetime as _dt
import re
import sys
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from csente cimport bytebuf
from csente.bytebuf cimport Buffer
from csente.edn_writer cimport HARD_MAX_DEPTH
from csente.numbers cimport exact_double, scan_digits
from csente.types cimport Char, Keyword, Symbol, keyword, symbol

from csente.edn_writer import STRING_ESCAPES, dumps
from csente.types import DecodeError, FrozenDict, List

cdef extern from "Python.h":
    ctypedef struct PyObject
    void Py_INCREF(object) noexcept
    void Py_XDECREF(PyObject*) noexcept
    int PyUnicode_IS_ASCII(object) noexcept
    void* PyUnicode_DATA(object) noexcept
    Py_ssize_t PyUnicode_GET_LENGTH(object) noexcept
    object PyUnicode_New(Py_ssize_t, Py_UCS4)
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    object PyUnicode_AsEncodedString(object, const char*, const char*)
    char* PyBytes_AS_STRING(object) noexcept
    Py_ssize_t PyBytes_GET_SIZE(object) noexcept
    int Py_UNICODE_ISDECIMAL(unsigned int) noexcept
    int Py_UNICODE_TODECIMAL(unsigned int) noexcept
    double PyOS_string_to_double(const char*, char**, PyObject*) except? -1.0
    object PyLong_FromLongLong(long long)
    object PyFloat_FromDouble(double)
    int _dict_set "PyDict_SetItem"(object, object, object) noexcept
    int _set_add "PySet_Add"(object, object) noexcept
    Py_ssize_t PyDict_GET_SIZE(object) noexcept
    Py_ssize_t PySet_GET_SIZE(object) noexcept
    int PyErr_ExceptionMatches(object) noexcept
    Py_ssize_t PyDict_Size(object) except -1
    int PyList_Append(object, object) except -1
    object PyList_AsTuple(object)
    void PyErr_Clear() noexcept

# ---------------------------------------------------------------------------------------------
# Character classes (ASCII; the few non-ASCII whitespace characters are tested in _uws)

cdef enum:
    WS = 1         # Character.isWhitespace, or ','
    MACRO = 2      # starts a reader macro: " : ; ^ ( ) [ ] { } \ #
    TERM = 4       # ends a token: whitespace or a macro other than # : (tools.reader's macro-terminating?)
    NOTCONST = 8   # @ ` ~ may not appear in a token

cdef unsigned char CLS[128]
cdef unsigned char UNESCAPE[128]  # letter after a backslash in a string -> character, 0 = not simple

cdef _init_tables():
    cdef int c
    for c in range(128):
        CLS[c] = UNESCAPE[c] = 0
    for c in (9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 44):
        CLS[c] = WS | TERM
    for c in b'";^()[]{}\\':
        CLS[c] = MACRO | TERM
    CLS[b'#'] = CLS[b':'] = MACRO
    for c in b'@`~':
        CLS[c] = NOTCONST
    for c, e in zip(*STRING_ESCAPES):
        UNESCAPE[e] = c

_init_tables()


cdef inline int _uws(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Length of the non-ASCII Java whitespace character at s[i] (all are 3 UTF-8 bytes), else 0."""
    cdef unsigned char b1, b2
    if i + 2 >= n:
        return 0
    b1 = s[i + 1]
    b2 = s[i + 2]
    if s[i] == 0xE1:
        return 3 if b1 == 0x9A and b2 == 0x80 else 0                       # U+1680
    if s[i] == 0xE2:
        if b1 == 0x80:
            return 3 if (0x80 <= b2 <= 0x8A and b2 != 0x87) or b2 == 0xA8 or b2 == 0xA9 else 0
        return 3 if b1 == 0x81 and b2 == 0x9F else 0                       # U+205F
    if s[i] == 0xE3:
        return 3 if b1 == 0x80 and b2 == 0x80 else 0                       # U+3000
    return 0


cdef inline int _utf8_len(unsigned char lead) noexcept:
    return 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


cdef inline unsigned int _decode_at(const unsigned char* s, Py_ssize_t i, int* width) noexcept:
    """The code point at s[i]; the buffer is valid UTF-8 (surrogates allowed) by construction."""
    cdef unsigned char c = s[i]
    if c < 0x80:
        width[0] = 1
        return c
    if c < 0xE0:
        width[0] = 2
        return ((c & 0x1F) << 6) | (s[i + 1] & 0x3F)
    if c < 0xF0:
        width[0] = 3
        return ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F)
    width[0] = 4
    return ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F)


cdef inline bint _java_is_digit(unsigned int cp) noexcept:
    """Character.isDigit on one UTF-16 unit: a decimal digit of the BMP."""
    if cp < 0x80:
        return 48 <= cp <= 57
    return cp <= 0xFFFF and Py_UNICODE_ISDECIMAL(cp)


cdef inline int _java_digit(unsigned int cp, int radix) noexcept:
    """Character.digit(cp, radix): ASCII and fullwidth letters, and any decimal digit of the BMP."""
    cdef int v
    if 48 <= cp <= 57:
        v = cp - 48
    elif 97 <= cp <= 122:
        v = cp - 87
    elif 65 <= cp <= 90:
        v = cp - 55
    elif 0xFF21 <= cp <= 0xFF3A:
        v = cp - 0xFF21 + 10
    elif 0xFF41 <= cp <= 0xFF5A:
        v = cp - 0xFF41 + 10
    elif 0x80 <= cp <= 0xFFFF and Py_UNICODE_ISDECIMAL(cp):
        v = Py_UNICODE_TODECIMAL(cp)
    else:
        return -1
    return v if v < radix else -1


cdef bint _valid_symbol(const unsigned char* p, Py_ssize_t n) noexcept:
    """tools.reader's parse-symbol: may ``p[:n]`` be read as a symbol or keyword name?"""
    cdef Py_ssize_t slash = -1, k
    cdef int width
    if n == 0 or p[n - 1] == b':' or (n >= 2 and p[0] == b':' and p[1] == b':'):
        return False
    for k in range(n):
        if p[k] == b'/':
            slash = k
            break
    if slash <= 0:
        return slash < 0 or n == 1
    if slash + 1 == n or p[slash - 1] == b':' or _java_is_digit(_decode_at(p, slash + 1, &width)):
        return False
    if n - slash == 2 and p[slash + 1] == b'/':
        return True
    for k in range(slash + 1, n):
        if p[k] == b'/':
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Reading

cdef object _EOF = object()  # read() found the end of the input instead of a form
cdef object _END = object()  # read() found the closing delimiter it was asked to stop at

cdef tuple _CHARS = tuple([Char(chr(c)) for c in range(128)])
cdef dict _CHAR_NAMES = {"newline": "\n", "space": " ", "tab": "\t", "backspace": "\b",
                         "formfeed": "\f", "return": "\r"}
cdef dict _SYMBOLIC = {"Inf": float("inf"), "-Inf": float("-inf"), "NaN": float("nan")}
cdef tuple _IMETA = (Symbol, list, tuple, dict, frozenset)  # what Clojure lets metadata attach to
cdef object _INST = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})"
    r"(?:\.([0-9]+))?)?)?)?)?)?(?:Z|([-+])([0-9]{2}):([0-9]{2}))?")
cdef object _UTC = _dt.timezone.utc


cdef class _Reader:
    cdef const unsigned char* s
    cdef Py_ssize_t n
    cdef Py_ssize_t i
    cdef object owner          # keeps s alive
    cdef object tag_readers
    cdef object default
    cdef int max_depth
    cdef int discarding        # > 0 inside #_: tools.reader drops :readers and :default there
    cdef Buffer tmp            # scratch for strings with escapes

    def __dealloc__(self):
        bytebuf.release(&self.tmp)

    cdef Py_ssize_t charpos(self, Py_ssize_t at) noexcept:
        """Byte offset -> character offset (continuation bytes don't start a character)."""
        cdef Py_ssize_t k, count = 0
        for k in range(min(at, self.n)):
            if (self.s[k] & 0xC0) != 0x80:
                count += 1
        return count

    cdef fail(self, str msg, Py_ssize_t at):
        raise DecodeError(msg, self.charpos(at))

    cdef str text(self, Py_ssize_t a, Py_ssize_t b):
        cdef Py_ssize_t k
        cdef object out
        for k in range(a, b):
            if self.s[k] >= 0x80:
                return PyUnicode_DecodeUTF8(<const char*>self.s + a, b - a, "surrogatepass")
        out = PyUnicode_New(b - a, 127)
        memcpy(PyUnicode_DATA(out), self.s + a, b - a)
        return out

    cdef object read(self, int depth, bint hashable, int close):
        """The next form; skips whitespace, comments and #_ forms. ``close`` is the delimiter
        that ends the enclosing collection (-1: none, then every closing delimiter is an error)."""
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t n = self.n, start
        cdef unsigned char c, d
        cdef int w
        cdef object x
        while True:
            while self.i < n:
                c = s[self.i]
                if c < 0x80:
                    if not (CLS[c] & WS):
                        break
                    self.i += 1
                else:
                    w = _uws(s, self.i, n)
                    if not w:
                        break
                    self.i += w
            if self.i >= n:
                return _EOF
            start = self.i
            if c == close:
                self.i += 1
                return _END
            if c < 0x80 and CLS[c] & MACRO:
                self.i += 1
                if c == b'"':
                    return self.read_string()
                if c == b':':
                    return self.read_keyword(start)
                if c == b'[':
                    return self.read_vector(start, depth, hashable)
                if c == b'{':
                    return self.read_map(start, depth, hashable)
                if c == b'(':
                    return self.read_list(start, depth, hashable)
                if c == b';':
                    self.skip_line()
                    continue
                if c == b'\\':
                    return self.read_char(start)
                if c == b'^':
                    return self.read_meta(start, depth, hashable)
                if c != b'#':
                    self.fail(f"Unmatched delimiter {chr(c)}.", start)
                # dispatch macros
                if self.i >= n:
                    self.fail("Unexpected EOF while reading dispatch character.", n)
                d = s[self.i]
                if d == b'_':
                    self.i += 1
                    self.discarding += 1
                    self.read_one(start, depth, False)
                    self.discarding -= 1
                    continue
                if d == b'!':
                    self.skip_line()
                    continue
                if d == b'{':
                    self.i += 1
                    return self.read_set(start, depth)
                if d == b':':
                    self.i += 1
                    return self.read_namespaced_map(start, depth, hashable)
                if d == b'#':
                    self.i += 1
                    x = self.read_one(start, depth, False)
                    if type(x) is Symbol and (<Symbol>x).text in _SYMBOLIC:  # a new NaN each time: NaN != NaN
                        return PyFloat_FromDouble(_SYMBOLIC[(<Symbol>x).text])
                    self.fail(f"Invalid token: ##{_pr(x)}", start)
                if d == b'^':
                    self.i += 1
                    return self.read_meta(start, depth, hashable)
                if d == b'<':
                    self.fail("Unreadable form", start)
                return self.read_tagged(start, depth, hashable)
            if 48 <= c <= 57:
                return self.read_number(start)
            if (c == b'+' or c == b'-') and self.i + 1 < n and _java_is_digit(_decode_at(s, self.i + 1, &w)):
                return self.read_number(start)
            if c >= 0x80 and _java_is_digit(_decode_at(s, self.i, &w)):
                return self.read_number(start)
            return self.read_symbol(start)

    cdef object read_one(self, Py_ssize_t start, int depth, bint hashable):
        """A form that must follow (a tag, its value, metadata, a discarded form)."""
        if depth >= self.max_depth:
            self.too_deep(start)
        x = self.read(depth + 1, hashable, -1)
        if x is _EOF:
            self.fail("EOF while reading.", self.n)
        return x

    cdef too_deep(self, Py_ssize_t start):
        self.fail(f"Nesting deeper than max_depth={self.max_depth}", start)

    cdef skip_line(self):
        while self.i < self.n and self.s[self.i] != b'\n':
            self.i += 1

    cdef Py_ssize_t token_end(self, str kind):
        """Where the token starting at self.i ends (tools.reader's read-token, leading char already checked)."""
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t j = self.i, n = self.n
        cdef unsigned char c
        while j < n:
            c = s[j]
            if c < 0x80:
                if CLS[c] & TERM:
                    break
                if CLS[c] & NOTCONST:
                    self.fail(f"Invalid character: {chr(c)} found while reading {kind}.", j)
                j += 1
            elif _uws(s, j, n):
                break
            else:
                j += _utf8_len(c)
        return j

    cdef object read_symbol(self, Py_ssize_t start):
        cdef const unsigned char* p = self.s + start
        cdef Py_ssize_t n
        if p[0] < 0x80 and CLS[p[0]] & NOTCONST:
            self.fail(f"Invalid character: {chr(p[0])} found while reading symbol.", start)
        self.i = self.token_end("symbol")
        n = self.i - start
        if n == 3 and p[0] == b'n' and p[1] == b'i' and p[2] == b'l':
            return None
        if n == 4 and p[0] == b't' and p[1] == b'r' and p[2] == b'u' and p[3] == b'e':
            return True
        if n == 5 and p[0] == b'f' and p[1] == b'a' and p[2] == b'l' and p[3] == b's' and p[4] == b'e':
            return False
        if not _valid_symbol(p, n):
            self.fail(f"Invalid symbol: {self.text(start, self.i)}.", start)
        return symbol(self.text(start, self.i))

    cdef object read_keyword(self, Py_ssize_t start):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t a = self.i, k
        cdef unsigned char c
        if a >= self.n:
            self.fail("Unexpected EOF while reading start of keyword.", a)
        c = s[a]
        if (c < 0x80 and CLS[c] & WS) or (c >= 0x80 and _uws(s, a, self.n)):
            self.fail("Invalid token: :", start)
        if c < 0x80 and CLS[c] & NOTCONST:
            self.fail(f"Invalid character: {chr(c)} found while reading keyword.", a)
        self.i = self.token_end("keyword")
        cached = _cached_keyword(s + a, self.i - a)
        if cached != NULL:
            return <object>cached
        if not _valid_symbol(s + a, self.i - a) or s[a] == b':':
            self.fail(f"Invalid keyword: :{self.text(a, self.i)}.", start)
        for k in range(a, self.i - 1):
            if s[k] == b':' and s[k + 1] == b':':
                self.fail(f"Invalid keyword: :{self.text(a, self.i)}.", start)
        return _cache_keyword(s + a, self.i - a, keyword(self.text(a, self.i)))

    cdef list read_items(self, Py_ssize_t start, int depth, bint hashable, int close, str kind, bint pairs):
        """The forms up to the ``close`` delimiter; with ``pairs`` (a map's) every other one is a key."""
        cdef list items = []
        if depth >= self.max_depth:
            self.too_deep(start)
        while True:
            x = self.read(depth + 1, hashable or (pairs and len(items) % 2 == 0), close)
            if x is _END:
                return items
            if x is _EOF:
                self.fail(f"Unexpected EOF while reading item {len(items)} of {kind}.", self.n)
            PyList_Append(items, x)

    cdef object read_vector(self, Py_ssize_t start, int depth, bint hashable):
        items = self.read_items(start, depth, hashable, b']', "vector", False)
        return PyList_AsTuple(items) if hashable else items

    cdef object read_list(self, Py_ssize_t start, int depth, bint hashable):
        return List(self.read_items(start, depth, hashable, b')', "list", False))

    cdef object read_set(self, Py_ssize_t start, int depth):
        cdef object items = set()
        cdef Py_ssize_t size, at
        if depth >= self.max_depth:
            self.too_deep(start)
        while True:
            at = self.i
            x = self.read(depth + 1, True, b'}')
            if x is _END:
                return frozenset(items)
            if x is _EOF:
                self.fail(f"Unexpected EOF while reading item {len(items)} of set.", self.n)
            size = PySet_GET_SIZE(items)
            if _set_add(items, x) < 0:
                self.insert_failed(at)
            if PySet_GET_SIZE(items) == size:
                self.fail(f"Duplicate key: {_pr(x)}", at)

    cdef int insert(self, object d, object key, object value, Py_ssize_t at) except -1:
        """d[key] = value, also into a FrozenDict under construction; an existing key is an error."""
        cdef Py_ssize_t size = PyDict_GET_SIZE(d)
        if _dict_set(d, key, value) < 0:
            return self.insert_failed(at)
        if PyDict_GET_SIZE(d) == size:
            self.fail(f"Duplicate key: {_pr(key)}", at)
        return 0

    cdef int insert_failed(self, Py_ssize_t at) except -1:
        """An unhashable key (only a tag reader's value can be one) is bad input; other errors pass on."""
        if PyErr_ExceptionMatches(TypeError):
            PyErr_Clear()
            self.fail("Unhashable map key or set member", at)
        return -1

    cdef list read_pairs(self, Py_ssize_t start, int depth, bint hashable, str kind):
        """The forms of a map literal up to the closing brace, as [key, value, key, value...]."""
        cdef list items = self.read_items(start, depth, hashable, b'}', kind, True)
        if len(items) % 2:
            self.fail(f"The map literal starting with {_pr(items[0])} contains {len(items)} form(s). "
                      "Map literals must contain an even number of forms.", start)
        return items

    cdef object read_map(self, Py_ssize_t start, int depth, bint hashable):
        cdef object d = FrozenDict() if hashable else {}
        cdef Py_ssize_t at
        if depth >= self.max_depth:
            self.too_deep(start)
        while True:
            at = self.i
            k = self.read(depth + 1, True, b'}')
            if k is _END:
                return d
            if k is _EOF:
                self.fail(f"Unexpected EOF while reading item {2 * PyDict_Size(d)} of map.", self.n)
            v = self.read(depth + 1, hashable, b'}')
            if v is _END:
                self.fail(f"The map literal starting with {_pr(k)} contains {2 * PyDict_Size(d) + 1} "
                          "form(s). Map literals must contain an even number of forms.", start)
            if v is _EOF:
                self.fail(f"Unexpected EOF while reading item {2 * PyDict_Size(d) + 1} of map.", self.n)
            self.insert(d, k, v, at)

    cdef object read_namespaced_map(self, Py_ssize_t start, int depth, bint hashable):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t a = self.i
        cdef int w
        cdef unsigned char c
        if a >= self.n:
            self.fail("Unexpected EOF while reading start of namespaced-map.", a)
        if s[a] < 0x80 and CLS[s[a]] & NOTCONST:
            self.fail(f"Invalid character: {chr(s[a])} found while reading namespaced-map.", a)
        self.i = self.token_end("namespaced-map")
        token = self.text(a, self.i)
        if not _valid_symbol(s + a, self.i - a):
            self.fail(f"Invalid value used as namespace in namespaced map: {token}.", start)
        ns = token.partition("/")[2] or token if token != "/" else token
        while self.i < self.n:  # whitespace only: a comment here is an error, as in tools.reader
            c = s[self.i]
            w = (1 if CLS[c] & WS else 0) if c < 0x80 else _uws(s, self.i, self.n)
            if not w:
                break
            self.i += w
        if self.i >= self.n or s[self.i] != b'{':
            self.fail(f"Namespaced map with namespace {token} does not specify a map.", start)
        self.i += 1
        items = self.read_pairs(start, depth, hashable, "namespaced-map")
        d = FrozenDict() if hashable else {}
        for j in range(0, len(items), 2):
            self.insert(d, _qualify(ns, items[j]), items[j + 1], start)
        return d

    cdef object read_meta(self, Py_ssize_t start, int depth, bint hashable):
        m = self.read_one(start, depth, False)
        if not (type(m) is Keyword or type(m) is Symbol or type(m) is str or isinstance(m, dict)):
            self.fail("Metadata must be Symbol, Keyword, String or Map", start)
        x = self.read_one(start, depth, hashable)
        if not isinstance(x, _IMETA):
            self.fail("Metadata can only be applied to IMetas", start)
        return x

    cdef object read_tagged(self, Py_ssize_t start, int depth, bint hashable):
        tag = self.read_one(start, depth, False)
        value = self.read_one(start, depth, hashable)
        if type(tag) is not Symbol:
            self.fail("Reader tag must be a symbol", start)
        name = (<Symbol>tag).text
        if not self.discarding and self.tag_readers is not None:
            reader = self.tag_readers.get(name)
            if reader is not None:
                return reader(value)
        if name == "inst" or name == "uuid":
            try:
                return _read_inst(value) if name == "inst" else _read_uuid(value)
            except (ValueError, TypeError, OverflowError) as e:
                raise DecodeError(str(e), self.charpos(start)) from e
        if not self.discarding and self.default is not None:
            return self.default(name, value)
        self.fail(f"No reader function for tag {name}.", start)

    cdef object read_number(self, Py_ssize_t start):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t j = start, n = self.n, k
        cdef unsigned char c
        while j < n:  # a number token ends at whitespace or any macro character (# and : too)
            c = s[j]
            if c < 0x80:
                if CLS[c] & (WS | MACRO):
                    break
                j += 1
            elif _uws(s, j, n):
                break
            else:
                j += _utf8_len(c)
        self.i = j
        x = _fast_number(s + start, j - start)
        if x is not None:
            return x
        try:
            x = _match_number(self.s + start, j - start)
        except (ValueError, ZeroDivisionError, ArithmeticError) as e:
            raise DecodeError(f"{e} in number {self.text(start, j)}", self.charpos(start)) from e
        if x is None:
            self.fail(f"Invalid number: {self.text(start, j)}.", start)
        return x

    cdef put_cp(self, unsigned int cp):
        """Append a UTF-16 unit or code point; a low surrogate after a high one makes a pair, as in Java."""
        cdef unsigned char b[4]
        cdef unsigned char* t = <unsigned char*>self.tmp.data + self.tmp.len - 3
        if 0xDC00 <= cp <= 0xDFFF and self.tmp.len >= 3 and t[0] == 0xED and 0xA0 <= t[1] <= 0xAF:
            cp = 0x10000 + (((0xD000 | ((t[1] & 0x3F) << 6) | (t[2] & 0x3F)) - 0xD800) << 10) + (cp - 0xDC00)
            self.tmp.len -= 3
        if cp < 0x80:
            b[0] = cp
            bytebuf.put(&self.tmp, <const char*>b, 1)
        elif cp < 0x800:
            b[0] = 0xC0 | (cp >> 6)
            b[1] = 0x80 | (cp & 0x3F)
            bytebuf.put(&self.tmp, <const char*>b, 2)
        elif cp < 0x10000:
            b[0] = 0xE0 | (cp >> 12)
            b[1] = 0x80 | ((cp >> 6) & 0x3F)
            b[2] = 0x80 | (cp & 0x3F)
            bytebuf.put(&self.tmp, <const char*>b, 3)
        else:
            b[0] = 0xF0 | (cp >> 18)
            b[1] = 0x80 | ((cp >> 12) & 0x3F)
            b[2] = 0x80 | ((cp >> 6) & 0x3F)
            b[3] = 0x80 | (cp & 0x3F)
            bytebuf.put(&self.tmp, <const char*>b, 4)

    cdef object read_string(self):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t a = self.i, j = self.i, n = self.n
        cdef unsigned char c, high = 0
        while j < n:
            c = s[j]
            if c == b'"':
                self.i = j + 1
                if high < 0x80:
                    out = PyUnicode_New(j - a, 127)
                    memcpy(PyUnicode_DATA(out), s + a, j - a)
                    return out
                return PyUnicode_DecodeUTF8(<const char*>s + a, j - a, "surrogatepass")
            if c == b'\\':
                return self.read_escaped_string(a, j)
            high |= c
            j += 1
        self.fail("Unexpected EOF reading string.", n)

    cdef object read_escaped_string(self, Py_ssize_t a, Py_ssize_t j):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t n = self.n, run, esc
        cdef unsigned char c
        cdef unsigned int cp
        cdef int w, d
        self.tmp.len = 0
        bytebuf.put(&self.tmp, <const char*>(s + a), j - a)
        self.i = j
        while True:
            if self.i >= n:
                self.fail("Unexpected EOF reading string.", n)
            c = s[self.i]
            if c == b'"':
                self.i += 1
                return PyUnicode_DecodeUTF8(self.tmp.data, self.tmp.len, "surrogatepass")
            if c != b'\\':
                run = self.i
                while self.i < n and s[self.i] != b'"' and s[self.i] != b'\\':
                    self.i += 1
                bytebuf.put(&self.tmp, <const char*>(s + run), self.i - run)
                continue
            esc = self.i
            self.i += 1
            if self.i >= n:
                self.fail("Unexpected EOF reading string.", n)
            cp = _decode_at(s, self.i, &w)
            self.i += w
            if cp < 0x80 and UNESCAPE[cp]:
                bytebuf.put(&self.tmp, <const char*>&UNESCAPE[cp], 1)
            elif cp == 117:  # u
                if self.i >= n:
                    self.fail("Unexpected EOF reading string.", n)
                cp = _decode_at(s, self.i, &w)
                d = _java_digit(cp, 16)
                if d < 0:
                    self.fail(f"Invalid unicode escape: \\u{chr(cp)}.", esc)
                self.i += w
                self.put_cp(self.read_code(d, 16, 4, True, esc))
            elif _java_is_digit(cp):
                d = _java_digit(cp, 8)
                if d < 0:
                    self.fail(f"Invalid digit {chr(cp)} in unicode character.", esc)
                cp = self.read_code(d, 8, 3, False, esc)
                if cp > 0o377:
                    self.fail("Octal escape sequence must be in range [0, 377].", esc)
                self.put_cp(cp)
            else:
                self.fail(f"Unsupported escape character: \\{chr(cp)}.", esc)

    cdef unsigned int read_code(self, int value, int base, int length, bint exact, Py_ssize_t at) except? 0xFFFFFFFF:
        """tools.reader's read-unicode-char on the stream: up to ``length`` digits in ``base``."""
        cdef int k = 1, w, d
        cdef unsigned int cp
        while k < length:
            if self.i >= self.n:
                cp = 0
            else:
                cp = _decode_at(self.s, self.i, &w)
            if self.i >= self.n or (cp < 0x80 and CLS[cp] & (WS | MACRO)) or (cp >= 0x80 and _uws(self.s, self.i, self.n)):
                if exact:
                    self.fail(f"Invalid unicode literal. Unicode literals should be {length} characters long. "
                              f"Value supplied is {k} characters long.", at)
                break
            d = _java_digit(cp, base)
            self.i += w
            if d < 0:
                self.fail(f"Invalid digit {chr(cp)} in unicode character.", at)
            value = value * base + d
            k += 1
        return value

    cdef object read_char(self, Py_ssize_t start):
        cdef const unsigned char* s = self.s
        cdef Py_ssize_t a = self.i
        cdef unsigned char c
        if a >= self.n:
            self.fail("EOF while reading character.", a)
        c = s[a]
        if c < 0x80 and CLS[c] & (TERM | NOTCONST):  # a delimiter or whitespace stands for itself
            self.i = a + 1
            return _CHARS[c]
        if c >= 0x80 and _uws(s, a, self.n):
            self.i = a + 3
            return Char(self.text(a, a + 3))
        self.i = self.token_end("character")
        if self.i - a == 1:
            return _CHARS[c]
        return self.char_token(self.text(a, self.i), start)

    cdef object char_token(self, str token, Py_ssize_t start):
        cdef Py_ssize_t units = len(token) + sum([1 for ch in token if ord(ch) > 0xFFFF])
        if units == 1:
            return Char(token)
        if token in _CHAR_NAMES:
            return _CHARS[ord(_CHAR_NAMES[token])]
        if token[0] == "u":
            code = self.token_code(token, 16, start) if units == 5 else -1
            if code < 0:
                self.fail(f"Invalid unicode character: \\{token}.", start)
            if 0xD7FF < code < 0xE000:
                self.fail(f"Invalid character literal \\u{code:x}.", start)
            return Char(chr(code))
        if token[0] == "o":
            if units > 4:
                self.fail(f"Invalid octal escape sequence in a character literal: {token}. "
                          "Octal escape sequences must be 3 or fewer digits.", start)
            code = self.token_code(token, 8, start)
            if code < 0 or code > 0o377:
                self.fail("Octal escape sequence must be in range [0, 377].", start)
            return Char(chr(code))
        self.fail(f"Unsupported character: \\{token}.", start)

    cdef long token_code(self, str token, int base, Py_ssize_t start) except? -2:
        cdef long code = 0
        cdef int d
        for ch in token[1:]:
            d = _java_digit(ord(ch), base)
            if d < 0:
                self.fail(f"Invalid digit {ch} in unicode character \\{token}.", start)
            code = code * base + d
        return code


# Keywords read lately, by a hash of their token: one memcmp instead of making a str and interning it.
# Entries are strong references to interned keywords; a slot is overwritten by the next token that hashes to it.
cdef enum:
    KEYWORD_CACHE_SIZE = 2048  # a power of two
    KEYWORD_CACHE_MAX_LEN = 64
cdef PyObject* _keyword_cache[KEYWORD_CACHE_SIZE]


cdef inline uint32_t _token_hash(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef uint32_t h = 2166136261u  # FNV-1a
    cdef Py_ssize_t k
    for k in range(n):
        h = (h ^ p[k]) * 16777619u
    return h & (KEYWORD_CACHE_SIZE - 1)


cdef inline PyObject* _cached_keyword(const unsigned char* p, Py_ssize_t n) noexcept:
    """The keyword whose text is the ASCII token p[:n], if the cache holds it."""
    cdef PyObject* found
    cdef str text
    if n > KEYWORD_CACHE_MAX_LEN:
        return NULL
    found = _keyword_cache[_token_hash(p, n)]
    if found == NULL:
        return NULL
    text = (<Keyword>found).text
    if PyUnicode_GET_LENGTH(text) == n and PyUnicode_IS_ASCII(text) and memcmp(PyUnicode_DATA(text), p, n) == 0:
        return found
    return NULL


cdef object _cache_keyword(const unsigned char* p, Py_ssize_t n, Keyword kw):
    cdef uint32_t slot
    if n <= KEYWORD_CACHE_MAX_LEN:
        slot = _token_hash(p, n)
        Py_INCREF(kw)
        Py_XDECREF(_keyword_cache[slot])
        _keyword_cache[slot] = <PyObject*>kw
    return kw


cdef object _qualify(str ns, object key):
    """tools.reader's namespace-keys: the key a #:ns{...} map really has."""
    if type(key) is Keyword or type(key) is Symbol:
        if key.ns is None:
            text = f"{ns}/{key.name}"
        elif key.ns == "_":
            text = key.name
        else:
            return key
        return keyword(text) if type(key) is Keyword else symbol(text)
    return key


cdef str _pr(object x):
    """A value as error messages show it."""
    try:
        return dumps(x)
    except (TypeError, ValueError):
        return repr(x)


cdef bint _all_in(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, int radix) noexcept:
    cdef Py_ssize_t k
    if a >= b:
        return False
    for k in range(a, b):
        if _java_digit(p[k], radix) < 0 or p[k] >= 0x80:
            return False
    return True


cdef object _match_number(const unsigned char* p, Py_ssize_t n):
    """tools.reader's match-number: int, then float, then ratio pattern; None when none matches."""
    cdef Py_ssize_t k, j, body, end
    cdef bint neg
    cdef char* stop
    cdef double dv
    for k in range(n):
        if p[k] >= 0x80:
            return None
    token = p[:n].decode("ascii")
    neg = p[0] == b'-'
    body = 1 if neg or p[0] == b'+' else 0
    end = n - 1 if n > body and p[n - 1] == b'N' else n  # (N)? suffix
    # int-pattern: ([-+]?)(?:(0)|([1-9][0-9]*)|0[xX]([0-9A-Fa-f]+)|0([0-7]+)|([1-9][0-9]?)[rR]([0-9A-Za-z]+)|0[0-9]+)(N)?
    if body < n and p[body] == b'0':
        if end == body + 1:
            return 0
        if p[body + 1] == b'x' or p[body + 1] == b'X':
            if _all_in(p, body + 2, end, 16):
                return _signed(int(token[body + 2:end], 16), neg)
        elif _all_in(p, body + 1, end, 10):
            if _all_in(p, body + 1, end, 8):
                return _signed(int(token[body + 1:end], 8), neg)
            return None  # 0[0-9]+ matches the int pattern but means nothing: "08" is invalid
    elif body < n and 49 <= p[body] <= 57:
        if _all_in(p, body, end, 10):
            return _signed(int(token[body:end]), neg)
        for k in range(body + 1, min(body + 3, n)):
            if p[k] == b'r' or p[k] == b'R':
                if _all_in(p, body, k, 10) and _all_in(p, k + 1, n, 36):
                    radix = int(token[body:k])
                    if not 2 <= radix <= 36:
                        raise ValueError("Radix out of range")
                    if not _all_in(p, k + 1, n, radix):
                        raise ValueError(f"For input string: \"{token[k + 1:]}\" under radix {radix}")
                    return _signed(int(token[k + 1:], radix), neg)
                break
    # float-pattern: ([-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)(M)?
    k = body
    while k < n and 48 <= p[k] <= 57:
        k += 1
    if k > body:
        if k < n and p[k] == b'.':
            k += 1
            while k < n and 48 <= p[k] <= 57:
                k += 1
        if k < n and (p[k] == b'e' or p[k] == b'E'):
            j = k + 1
            if j < n and (p[j] == b'+' or p[j] == b'-'):
                j += 1
            if _all_in(p, j, n - 1 if p[n - 1] == b'M' else n, 10):
                k = n - 1 if p[n - 1] == b'M' else n
        if k == n - 1 and p[k] == b'M':
            return _big_decimal(token[:k])
        if k == n:
            dv = PyOS_string_to_double(<const char*>p, &stop, NULL)
            if stop == <char*>p + n:
                return dv
    # ratio-pattern: ([-+]?[0-9]+)/([0-9]+)
    k = body
    while k < n and 48 <= p[k] <= 57:
        k += 1
    if body < k < n - 1 and p[k] == b'/' and _all_in(p, k + 1, n, 10):
        value = Fraction(int(token[:k]), int(token[k + 1:]))
        return value.numerator if value.denominator == 1 else value
    return None


cdef object _fast_number(const unsigned char* p, Py_ssize_t n):
    """The common numbers without the general matcher: a decimal long, or a double that Clinger's fast path
    gets exactly (at most 15 significant digits and a power of ten up to 22: one exact IEEE operation).
    None: leave it to _match_number."""
    cdef Py_ssize_t k = 0, a
    cdef bint neg = p[0] == b'-'
    cdef uint64_t m = 0
    cdef int digits = 0, exp10 = 0, e = 0
    cdef bint neg_e = False
    cdef double v
    if neg or p[0] == b'+':
        k = 1
    a = k
    k = scan_digits(p, k, n, &m, &digits)
    if k == a or (p[a] == b'0' and k - a > 1):  # no digits, or a leading zero ("08" is no number)
        return None
    if k == n:
        return PyLong_FromLongLong(-<long long>m if neg else <long long>m) if digits <= 18 else None
    if p[k] == b'.':
        a = k + 1
        k = scan_digits(p, a, n, &m, &digits)
        exp10 = <int>(a - k)
    if k < n and (p[k] == b'e' or p[k] == b'E'):
        k += 1
        if k < n and (p[k] == b'+' or p[k] == b'-'):
            neg_e = p[k] == b'-'
            k += 1
        a = k
        while k < n and 48 <= p[k] <= 57 and k - a < 4:
            e = e * 10 + (p[k] - 48)
            k += 1
        if k == a:
            return None
        exp10 += -e if neg_e else e
    if k != n or not exact_double(m, digits, exp10, &v):
        return None
    return PyFloat_FromDouble(-v if neg else v)


cdef object _signed(object value, bint neg):
    # Python writes integers of at most sys.get_int_max_str_digits() decimal digits (4300 by default; 0: no limit)
    # and reads decimal ones only up to it, but hex, octal and radix ones of any size: one of those could be read
    # and then never written back (a handler echoing it would fail). Refused here instead, like a decimal one.
    if value.bit_length() > 2126:  # 640 digits, the lowest limit Python allows
        limit = sys.get_int_max_str_digits()
        if limit and value.bit_length() > int(limit * 3.321928094887362):  # log2(10): at most `limit` digits
            raise ValueError(f"integer too large: over {limit} decimal digits")
    return -value if neg else value


cdef object _big_decimal(str text):
    """java.math.BigDecimal(text): no negative zero, and the scale must fit in an int."""
    value = Decimal(text)
    if not -2**31 <= -value.as_tuple().exponent < 2**31:
        raise ValueError("Exponent overflow")
    return value.copy_abs() if value.is_zero() else value


cdef object _read_inst(object text):
    """clojure.instant/read-instant-date: RFC 3339-like text -> a UTC datetime with ms precision."""
    if type(text) is not str:
        raise TypeError(f"#inst needs a string, got {_pr(text)}")
    m = _INST.fullmatch(text)
    if m is None:
        raise ValueError(f"Unrecognized date/time syntax: {text}")
    year, month, day, hour, minute, sec, frac, sign, off_h, off_m = m.groups()
    fields = [int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(sec or 0)]
    millis = int((frac or "0").ljust(9, "0")[:9]) // 1000000
    offset = (-1 if sign == "-" else 1) * (int(off_h or 0) * 60 + int(off_m or 0))
    year_, month_, day_, hour_, minute_, sec_ = fields
    leap = year_ % 4 == 0 and (year_ % 100 != 0 or year_ % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not (1 <= month_ <= 12 and 1 <= day_ <= days[month_ - 1] and hour_ <= 23 and minute_ <= 59
            and sec_ <= (60 if minute_ == 59 else 59) and int(off_h or 0) <= 23 and int(off_m or 0) <= 59):
        raise ValueError(f"Invalid date/time fields: {text}")
    base = _dt.datetime(year_, month_, day_, hour_, minute_, tzinfo=_UTC)
    return base + _dt.timedelta(seconds=sec_, milliseconds=millis, minutes=-offset)


cdef object _java_parse_hex(str text):
    """Long.parseLong(text, 16): an optional sign, then at least one hex digit; must fit in a long."""
    cdef int d
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body:
        raise ValueError(f"Invalid UUID string: {text}")
    value = 0
    for ch in body:
        d = _java_digit(ord(ch), 16)
        if d < 0:
            raise ValueError(f"Invalid UUID string: {text}")
        value = value * 16 + d
    value = -value if text[:1] == "-" else value
    if not -2**63 <= value < 2**63:
        raise ValueError(f"Invalid UUID string: {text}")
    return value


cdef object _read_uuid(object text):
    """java.util.UUID.fromString (Java 17): five dash-separated hex fields, masked to their widths."""
    if type(text) is not str:
        raise TypeError(f"#uuid needs a string, got {_pr(text)}")
    parts = text.split("-")
    if len(text) > 36 or len(parts) != 5:
        raise ValueError(f"Invalid UUID string: {text}")
    a, b, c, d, e = [_java_parse_hex(part) for part in parts]
    high = ((a & 0xFFFFFFFF) << 32) | ((b & 0xFFFF) << 16) | (c & 0xFFFF)
    low = ((d & 0xFFFF) << 48) | (e & 0xFFFFFFFFFFFF)
    return UUID(int=(high << 64) | low)


def loads(data, *, tag_readers=None, default=None, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """Read the first EDN form of ``data`` (str, or UTF-8 bytes) as tools.reader would; None if there is none.

    ``#inst`` gives an aware UTC datetime and ``#uuid`` a UUID; any other tag goes to
    ``tag_readers[tag](value)``, else ``default(tag, value)``, else is a DecodeError. Nesting deeper than
    ``max_depth`` and input longer than ``max_size`` (characters for str, bytes for bytes) are errors too.
    Each level of nesting takes up to about 0.5 KB of C stack: the default fits any thread, the most
    (10000) needs the 8 MB a main thread or a default Linux thread has.
    """
    cdef _Reader r = _Reader.__new__(_Reader)
    cdef Py_ssize_t bad
    if not 0 <= max_depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be between 0 and {HARD_MAX_DEPTH}")
    if type(data) is str:
        if PyUnicode_GET_LENGTH(data) > max_size:
            raise DecodeError(f"Input longer than max_size={max_size}", max_size)
        if PyUnicode_IS_ASCII(data):
            r.owner = data
            r.s = <const unsigned char*>PyUnicode_DATA(data)
            r.n = PyUnicode_GET_LENGTH(data)
        else:
            r.owner = PyUnicode_AsEncodedString(data, "utf-8", "surrogatepass")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        r.owner = bytes(data)
        if PyBytes_GET_SIZE(r.owner) > max_size:
            raise DecodeError(f"Input longer than max_size={max_size}", max_size)
        bad = _invalid_utf8(<const unsigned char*>PyBytes_AS_STRING(r.owner), PyBytes_GET_SIZE(r.owner))
        if bad >= 0:
            r.s = <const unsigned char*>PyBytes_AS_STRING(r.owner)
            r.n = bad
            raise DecodeError("Invalid UTF-8", r.charpos(bad))
    else:
        raise TypeError(f"loads() needs str or bytes, not {type(data).__name__}")
    if r.s == NULL:
        r.s = <const unsigned char*>PyBytes_AS_STRING(r.owner)
        r.n = PyBytes_GET_SIZE(r.owner)
    r.tag_readers = tag_readers
    r.default = default
    r.max_depth = max_depth
    x = r.read(0, False, -1)
    return None if x is _EOF else x


cdef Py_ssize_t _invalid_utf8(const unsigned char* s, Py_ssize_t n) noexcept:
    """Offset of the first byte that is not well-formed UTF-8 (no surrogates, no overlongs), or -1."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c, c1
    cdef int k, w
    cdef uint64_t word
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            while i + 8 <= n:  # eight ASCII bytes at a time
                memcpy(&word, s + i, 8)
                if word & 0x8080808080808080u:
                    break
                i += 8
            continue
        if 0xC2 <= c <= 0xDF:
            w = 2
        elif 0xE0 <= c <= 0xEF:
            w = 3
        elif 0xF0 <= c <= 0xF4:
            w = 4
        else:
            return i
        if i + w > n:
            return i
        c1 = s[i + 1]
        if ((c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F) or (c == 0xF0 and c1 < 0x90)
                or (c == 0xF4 and c1 > 0x8F)):
            return i
        for k in range(1, w):
            if (s[i + k] & 0xC0) != 0x80:
                return i
        i += w
    return -1
