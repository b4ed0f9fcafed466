# cython: boundscheck=False, wraparound=False
"""Transit-json and json-verbose, written exactly as transit-clj 1.1.357 writes them (``dumps``).

Sente's transit packer hands whole envelopes to transit-clj, so a Python peer must produce the same
bytes: write cache codes, quoting, Jackson's escaping and Java's double formatting. The JSON is emitted
here directly as UTF-8 into one reused buffer (bytebuf.pxd); what counts as a scalar, and the user's
WriteHandlers, are transit_rules'.

Checks: the output buffer is reserved before every direct write, and Python sequences are only indexed
below their checked length, so bounds checking and wraparound are off module-wide.
"""

from fractions import Fraction

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport isfinite
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from csente cimport bytebuf
from csente.bytebuf cimport Buffer
from csente.numbers cimport JAVA_DOUBLE_MAX, LONG_MAX_TEXT, java_double, write_long
from csente.transit_rules cimport (CACHE_MAX, MIN_CACHEABLE, OTHER_HANDLER, OTHER_ITEMS, OTHER_MAP, OTHER_SET,
                                   Other, WriteHandler, all_stringable, handler_dict, is_scalar, needs_escape,
                                   resolve_other, scalar_text, special_double, u16len)
from csente.types cimport Keyword, Symbol, TaggedValue

from csente.transit_rules import CACHE_CODES
from csente.types import FrozenDict, List

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    bint PyUnicode_IS_ASCII(object)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int* overflow) except? -1

cdef long long JSON_INT_MAX = 9007199254740991  # 2**53 - 1: beyond it transit-json writes "~i..."


cdef str _java_double_str(double d):
    cdef char buf[JAVA_DOUBLE_MAX]
    cdef Py_ssize_t n = java_double(d, buf)
    return buf[:n].decode("ascii")


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
cdef tuple _CODE_JSON = tuple(('"' + c + '"').encode("ascii") for c in CACHE_CODES)


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
    cdef Buffer out
    cdef bint caching      # False in verbose mode, which writes no cache codes
    cdef dict cache        # cache codes of strings and tags (and of keywords off the table); made when needed
    cdef Py_ssize_t count  # cache codes handed out since the last reset
    cdef unsigned long long gen
    cdef bint use_table
    cdef bint verbose
    cdef dict handlers

    def __cinit__(self):
        bytebuf.init(&self.out, 1024)

    def __dealloc__(self):
        bytebuf.release(&self.out)

    cdef str result(self):
        return PyUnicode_DecodeUTF8(self.out.data, self.out.len, NULL)

    cdef int body(self, str s) except -1:
        """The JSON string contents of ``s``, escaped like Jackson's UTF-8 generator."""
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, j
        cdef int kind
        cdef void* data
        cdef const unsigned char* a
        cdef uint32_t c, hi
        cdef char* out
        if PyUnicode_IS_ASCII(s):
            bytebuf.reserve(&self.out, n * 6)
            a = <const unsigned char*>PyUnicode_DATA(s)
            out = self.out.data
            j = self.out.len
            for i in range(n):
                c = a[i]
                if _JSON_ESC[c]:
                    j += _escape(out + j, c)
                else:
                    out[j] = <char>c
                    j += 1
            self.out.len = j
            return 0
        try:
            a = <const unsigned char*>PyUnicode_AsUTF8AndSize(s, &n)
        except UnicodeEncodeError:  # lone surrogates: escaped one code point at a time below
            return self.body_ucs(s)
        # UTF-8 passes through except the escapes and 4-byte sequences, which become surrogate pair escapes
        bytebuf.reserve(&self.out, n * 6)
        out = self.out.data
        j = self.out.len
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
        self.out.len = j
        return 0

    cdef int body_ucs(self, str s) except -1:
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, j
        cdef int kind
        cdef void* data
        cdef uint32_t c, hi
        cdef char* out
        bytebuf.reserve(&self.out, n * 12)
        kind = PyUnicode_KIND(s)
        data = PyUnicode_DATA(s)
        out = self.out.data
        j = self.out.len
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
        self.out.len = j
        return 0

    cdef int string(self, const char* prefix, Py_ssize_t plen, str s) except -1:
        bytebuf.reserve(&self.out, plen + 2)
        self.out.data[self.out.len] = c'"'
        memcpy(self.out.data + self.out.len + 1, prefix, plen)
        self.out.len += plen + 1
        self.body(s)
        return bytebuf.putc(&self.out, c'"')

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
        return bytebuf.put(&self.out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

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
        if key and self.caching and u16len(enc) >= MIN_CACHEABLE and self.cached(enc):
            return 0
        return self.string(b"", 0, enc)

    cdef int named(self, object o, const char* prefix, str text) except -1:
        cdef _NamedSlot* slot
        cdef Py_ssize_t start
        if self.use_table:
            slot = _named_slot(o, self.gen)
            if slot != NULL:
                if slot.named == NULL:
                    start = self.out.len
                    self.string(prefix, 2, text)
                    json = PyBytes_FromStringAndSize(self.out.data + start, self.out.len - start)
                    Py_INCREF(json)
                    slot.json = <PyObject*>json
                    Py_INCREF(o)
                    slot.named = <PyObject*>o
                    slot.cacheable = u16len(text) + 2 >= MIN_CACHEABLE
                    slot.gen = 0
                    self.out.len = start
                if slot.cacheable:
                    if slot.gen == self.gen:
                        return self.code(slot.code)
                    slot.code = self.next_code()
                    slot.gen = self.gen  # after next_code, which may have started a new generation
                return bytebuf.put(&self.out, PyBytes_AS_STRING(<object>slot.json), PyBytes_GET_SIZE(<object>slot.json))
        if self.caching and u16len(text) + 2 >= MIN_CACHEABLE and self.cached(o):
            return 0
        return self.string(prefix, 2, text)

    cdef int plain_string(self, str s, bint key) except -1:
        cdef bint esc = needs_escape(s)
        if key and self.caching and u16len(s) + esc >= MIN_CACHEABLE:
            if self.cached(("~" + s) if esc else s):
                return 0
        if esc:
            return self.string(b"~", 1, s)
        return self.string(b"", 0, s)

    cdef int tag_open(self, str tag) except -1:
        if self.verbose:
            bytebuf.putc(&self.out, c'{')
            self.string(b"~#", 2, tag)
            return bytebuf.putc(&self.out, c':')
        bytebuf.putc(&self.out, c'[')
        if not (u16len(tag) >= 2 and self.cached("~#" + tag)):
            self.string(b"~#", 2, tag)
        return bytebuf.putc(&self.out, c',')

    cdef int tag_close(self) except -1:
        return bytebuf.putc(&self.out, c'}' if self.verbose else c']')

    cdef int items(self, object seq) except -1:
        cdef Py_ssize_t i, n
        bytebuf.putc(&self.out, c'[')
        if type(seq) is list:
            n = PyList_GET_SIZE(seq)
            for i in range(n):
                if i:
                    bytebuf.putc(&self.out, c',')
                self.emit(<object>PyList_GET_ITEM(seq, i), False)
        elif isinstance(seq, tuple):
            n = PyTuple_GET_SIZE(seq)
            for i in range(n):
                if i:
                    bytebuf.putc(&self.out, c',')
                self.emit(<object>PyTuple_GET_ITEM(seq, i), False)
        else:
            first = True
            for x in seq:
                if not first:
                    bytebuf.putc(&self.out, c',')
                first = False
                self.emit(x, False)
        return bytebuf.putc(&self.out, c']')

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
        if not all_stringable(m, self.handlers):
            self.tag_open("cmap")
            bytebuf.putc(&self.out, c'[')
            for key, val in m.items():
                if not first:
                    bytebuf.putc(&self.out, c',')
                first = False
                self.emit(key, False)
                bytebuf.putc(&self.out, c',')
                self.emit(val, False)
            bytebuf.putc(&self.out, c']')
            return self.tag_close()
        if self.verbose:
            bytebuf.putc(&self.out, c'{')
            for key, val in m.items():
                if not first:
                    bytebuf.putc(&self.out, c',')
                first = False
                self.emit(key, True)
                bytebuf.putc(&self.out, c':')
                self.emit(val, False)
            return bytebuf.putc(&self.out, c'}')
        bytebuf.put(&self.out, b'["^ "', 5)
        if is_dict:
            while PyDict_Next(m, &pos, &k, &v):
                bytebuf.putc(&self.out, c',')
                self.emit(<object>k, True)
                bytebuf.putc(&self.out, c',')
                self.emit(<object>v, False)
        else:
            for key, val in m.items():
                bytebuf.putc(&self.out, c',')
                self.emit(key, True)
                bytebuf.putc(&self.out, c',')
                self.emit(val, False)
        return bytebuf.putc(&self.out, c']')

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
            return bytebuf.put(&self.out, buf, k)
        bytebuf.put(&self.out, b'"~i', 3)
        bytebuf.put(&self.out, buf, k)
        return bytebuf.putc(&self.out, c'"')

    cdef int double(self, double d, bint key) except -1:
        cdef char buf[JAVA_DOUBLE_MAX]
        if not isfinite(d):
            return self.encoded(special_double(d), key)
        if key:
            return self.encoded("~d" + _java_double_str(d), key)
        return bytebuf.put(&self.out, buf, java_double(d, buf))

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
            return self.encoded("~_", True) if key else bytebuf.put(&self.out, b"null", 4)
        if t is bool:
            if key:
                return self.encoded("~?t" if o else "~?f", True)
            return bytebuf.put(&self.out, b"true", 4) if o else bytebuf.put(&self.out, b"false", 5)
        if t is Symbol:
            return self.named(o, b"~$", (<Symbol>o).text)
        if t is List:
            return self.tagged_items("list", o)
        if t is frozenset or t is set:
            return self.tagged_items("set", o)
        text = scalar_text(o, t, self.verbose)
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
        bytebuf.putc(&self.out, c'[')
        self.encoded("~n" + str(o.numerator), False)
        bytebuf.putc(&self.out, c',')
        self.encoded("~n" + str(o.denominator), False)
        bytebuf.putc(&self.out, c']')
        return self.tag_close()

    cdef int emit_other(self, object o, bint key) except -1:
        """Subclasses of the supported types, and handlers registered for a base class."""
        cdef Other kind
        x = resolve_other(o, self.handlers, &kind)
        if kind == OTHER_HANDLER:
            return self.handled(<WriteHandler>x, o, key)
        if kind == OTHER_MAP:
            return self.map(o)
        if kind == OTHER_ITEMS:
            return self.items(o)
        if kind == OTHER_SET:
            return self.tagged_items("set", o)
        return self.emit(x, key)


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


cdef _JsonWriter _spare_writer = _JsonWriter()


def dumps(value, *, bint verbose=False, handlers=None):
    """``value`` as transit-json (or json-verbose) text, byte for byte what transit-clj writes."""
    global _table_busy, _generation
    cdef _JsonWriter w
    cdef bint owner = not _table_busy
    if owner:  # the common, non-nested call reuses one writer and the keyword table
        _table_busy = True
        w = _spare_writer
    else:
        w = _JsonWriter()
    try:
        _generation += 1
        w.gen = _generation
        w.count = 0
        w.verbose = verbose
        w.caching = not verbose
        w.cache = None
        w.handlers = handler_dict(handlers) if handlers else None
        w.use_table = owner and not verbose
        if is_scalar(value, w.handlers):
            bytebuf.put(&w.out, b"{\"~#'\":" if verbose else b"[\"~#'\",", 7)
            w.emit(value, False)
            bytebuf.putc(&w.out, c'}' if verbose else c']')
        else:
            w.emit(value, False)
        return w.result()
    finally:
        if owner:
            w.handlers = None
            w.cache = None
            bytebuf.trim(&w.out, 1 << 20, 1024)  # empty, and not keeping a huge buffer around
            _table_busy = False
