# The transit layer of reading (transit_reader.pyx), which the JSON and msgpack readers subclass.

from libc.stdint cimport uint32_t

from csente.transit_rules cimport CACHE_MAX

cdef enum:
    MAX_DEPTH_LIMIT = 5000     # the C stack bounds how deep recursive descent may go


cdef class Tag:
    """A ``"~#tag"`` string just read: only meaningful at the head of an array or a one-entry object."""
    cdef readonly str tag


cdef enum RepMode:
    REP_SAME = 0      # the rep is read like the tagged value's position
    REP_HASHABLE = 1  # set members and ratio parts must be hashable
    REP_CMAP = 2      # alternating keys (hashable) and values


cdef inline RepMode rep_mode(str tag):
    if tag == "set" or tag == "ratio":
        return REP_HASHABLE
    if tag == "cmap":
        return REP_CMAP
    return REP_SAME


cdef class Reader:
    cdef list cache
    cdef Py_ssize_t cache_n
    cdef dict handlers
    cdef bint kw_fast      # no handler overrides the ':' tag
    cdef int max_depth
    cdef Py_ssize_t tok    # where the value being read starts, for errors (-1: no position)

    cdef int setup(self, handlers, int max_depth) except -1
    cdef object fail(self, str msg)
    cdef inline void remember(self, object v):
        """Enter a value read into the read cache (inline here: both tokenizers call it per cached key)."""
        if self.cache_n == CACHE_MAX:
            self.cache_n = 0
        if self.cache_n < len(self.cache):
            self.cache[self.cache_n] = v
        else:
            self.cache.append(v)
        self.cache_n += 1

    cdef object lookup(self, str code, bint head)
    cdef object string(self, str s, bint key, bint head)
    cdef object tilde(self, str s, uint32_t c1, bint head)
    cdef object scalar(self, str tag, str rest)
    cdef double double_text(self, str text) except? -1.0
    cdef object finish(self, str tag, object rep, bint hashable)
    cdef int deeper(self, int depth) except -1


cdef int check_size(Py_ssize_t size, Py_ssize_t max_size) except -1
