# What the msgpack reader shares with the writer (msgpack_writer.pyx).

from libc.stdint cimport uint64_t

cdef enum:
    CACHE_SIZE = 256          # keys the map-key cache numbers (0..255); later keys are written in full
    HARD_MAX_DEPTH = 10000    # recursive C code on both sides: bounded by the C stack
    EXT_RESERVE = 6           # the longest ext header: c9 len32 type


cdef union F64:               # a float64 and its bits
    double d
    uint64_t u


cdef class Ext:
    """An ext value of a type Sente does not define (its ``PackableExt``): the signed type and raw payload."""

    cdef readonly int type
    cdef readonly bytes data
