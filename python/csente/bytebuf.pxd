# The growable byte buffer every writer (edn, transit, msgpack) builds its output in.
#
# A struct and inline functions, like numbers.pxd: no .pyx, so each codec compiles its own copy and the
# hot puts stay inlined into the writer's loops. A writer embeds one ``Buffer`` (``cdef Buffer out``) and
# writes either through ``put``/``putc`` or, after ``reserve(b, k)``, straight into ``b.data + b.len``.
# PyMem allocations: every writer holds the GIL.

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy


cdef struct Buffer:
    char* data
    Py_ssize_t len     # bytes written
    Py_ssize_t cap     # bytes allocated


cdef inline int init(Buffer* b, Py_ssize_t cap) except -1:
    """An empty buffer of ``cap`` bytes (``b`` holds nothing yet)."""
    b.data = <char*>PyMem_Malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.len = 0
    b.cap = cap
    return 0


cdef inline void release(Buffer* b) noexcept:
    PyMem_Free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline void trim(Buffer* b, Py_ssize_t limit, Py_ssize_t cap) noexcept:
    """Empty; and back to ``cap`` bytes if it grew past ``limit`` (a big message's buffer is not kept)."""
    cdef char* smaller
    b.len = 0
    if b.cap > limit:
        smaller = <char*>PyMem_Realloc(b.data, cap)
        if smaller != NULL:
            b.data = smaller
            b.cap = cap


cdef inline int grow(Buffer* b, Py_ssize_t extra) except -1:
    """Room for ``extra`` more bytes: at least double, so appending stays amortised O(1)."""
    cdef Py_ssize_t cap = max(2 * b.cap, b.len + extra)
    cdef char* grown = <char*>PyMem_Realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef inline int reserve(Buffer* b, Py_ssize_t extra) except -1:
    """Room for ``extra`` more bytes at ``b.data + b.len``."""
    if b.len + extra > b.cap:
        return grow(b, extra)
    return 0


cdef inline int put(Buffer* b, const char* p, Py_ssize_t k) except -1:
    if b.len + k > b.cap:
        grow(b, k)
    memcpy(b.data + b.len, p, k)
    b.len += k
    return 0


cdef inline int putc(Buffer* b, unsigned char c) except -1:
    if b.len >= b.cap:
        grow(b, 1)
    b.data[b.len] = <char>c
    b.len += 1
    return 0
