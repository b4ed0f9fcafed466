# Shared value types of the edn and transit codecs; cimported by both for C-level field access.

cdef class Named:
    cdef readonly object ns      # str or None
    cdef readonly str name
    cdef readonly str text       # "ns/name" or "name", exactly as printed after the sigil
    cdef Py_hash_t _hash

cdef class Keyword(Named):
    pass

cdef class Symbol(Named):
    pass

cdef class Char:
    cdef readonly str char

cdef class TaggedValue:
    cdef readonly str tag
    cdef readonly object value

cpdef Keyword keyword(str text)
cpdef Symbol symbol(str text)
cpdef str jvm_text(str s)
