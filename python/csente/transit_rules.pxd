# What transit's writers and reader share (transit_rules.pyx): the write cache's sizes and codes, the
# WriteHandler type, and which values are written as one string. cimported by transit_json_writer,
# transit_msgpack_writer and transit_reader.

from libc.stdint cimport uint32_t

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    uint32_t PyUnicode_MAX_CHAR_VALUE(object)

cdef enum:
    CACHE_DIGITS = 44
    CACHE_MAX = 44 * 44        # transit's cache holds 1936 entries, then starts over
    MIN_CACHEABLE = 4          # in UTF-16 units, as Java counts String.length()


cdef class WriteHandler:
    cdef readonly str tag
    cdef readonly object rep
    cdef readonly object string_rep

    cdef str scalar_text(self, object o)


# How a writer handles a value of a type its fast path does not know (see resolve_other).
cdef enum Other:
    OTHER_HANDLER      # the WriteHandler returned, registered for a base class
    OTHER_MAP          # a Mapping: written as a map
    OTHER_ITEMS        # a list or tuple subclass: as an array
    OTHER_SET          # a set or frozenset subclass: as a "set" tagged value
    OTHER_VALUE        # the built-in value returned (a subclass instance rebased): write that instead


cdef inline Py_ssize_t u16len(str s):
    """Length in UTF-16 code units, which is what Java's cache-size rule counts."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i, extra = 0
    cdef void* data
    if PyUnicode_MAX_CHAR_VALUE(s) > 0xFFFF:
        data = PyUnicode_DATA(s)
        for i in range(n):
            if PyUnicode_READ(4, data, i) > 0xFFFF:
                extra += 1
    return n + extra


cdef inline bint needs_escape(str s):
    """Whether a string starts with one of transit's sigils (``~ ^ ```), so is written with a ``~`` before it."""
    cdef uint32_t c
    if PyUnicode_GET_LENGTH(s) == 0:
        return False
    c = PyUnicode_READ(PyUnicode_KIND(s), PyUnicode_DATA(s), 0)
    return c == 126 or c == 94 or c == 96


cdef bint all_stringable(object m, dict handlers)
cdef bint is_scalar(object o, dict handlers)
cdef long long millis(object d) except? -1
cdef object scalar_text(object o, type t, bint verbose)
cdef str special_double(double d)
cdef dict handler_dict(handlers)
cdef object resolve_other(object o, dict handlers, Other* kind)
