# cython: boundscheck=False, wraparound=False
"""Reading transit over MessagePack (``loads_msgpack``): msgspec unpacks the bytes, and this walks the
plain tree it gives, with transit_reader's rules for strings, cache codes and tags.
"""

import msgspec

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from csente.transit_reader cimport REP_CMAP, REP_HASHABLE, Reader, RepMode, Tag, check_size, rep_mode

from csente.transit_reader import MARK
from csente.types import DecodeError, FrozenDict

cdef object _MARK = MARK
_MSGPACK_DECODER = msgspec.msgpack.Decoder()


cdef class MsgpackReader(Reader):

    cdef object walk(self, object o, bint key, bint hashable, bint head, int depth):
        cdef type t = type(o)
        cdef Py_ssize_t n, i
        if t is str:
            return self.string(o, key, head)
        if t is list:
            self.deeper(depth + 1)
            n = PyList_GET_SIZE(o)
            if n == 0:
                return () if hashable else []
            first = self.walk(<object>PyList_GET_ITEM(o, 0), False, hashable, True, depth + 1)
            if first is _MARK:
                if n % 2 == 0:
                    return self.fail("odd number of map entries")
                m = {}
                for i in range(1, n, 2):
                    k = self.walk(<object>PyList_GET_ITEM(o, i), True, True, False, depth + 1)
                    m[k] = self.walk(<object>PyList_GET_ITEM(o, i + 1), False, hashable, False, depth + 1)
                return FrozenDict(m) if hashable else m
            if type(first) is Tag:
                if n != 2:
                    return self.fail("a tagged value is a tag and one rep")
                return self.walk_tagged((<Tag>first).tag, <object>PyList_GET_ITEM(o, 1), hashable, depth + 1)
            items = [first]
            for i in range(1, n):
                items.append(self.walk(<object>PyList_GET_ITEM(o, i), False, hashable, False, depth + 1))
            return tuple(items) if hashable else items
        if t is dict:
            self.deeper(depth + 1)
            m = {}
            first_entry = True
            for k, v in (<dict>o).items():
                wk = self.walk(k, True, True, first_entry and len(<dict>o) == 1, depth + 1)
                if type(wk) is Tag:
                    return self.walk_tagged((<Tag>wk).tag, v, hashable, depth + 1)
                first_entry = False
                m[wk] = self.walk(v, False, hashable, False, depth + 1)
            return FrozenDict(m) if hashable else m
        if o is None or t is bool or t is int or t is float or t is bytes:
            return o
        return self.fail(f"msgpack value of type {t.__name__} has no transit meaning")

    cdef object walk_tagged(self, str tag, object rep, bint hashable, int depth):
        cdef RepMode mode = rep_mode(tag)
        if mode == REP_CMAP:
            if type(rep) is not list:
                return self.fail("a cmap needs an array")
            self.deeper(depth + 1)
            flat = [self.walk(x, False, i % 2 == 0 or hashable, False, depth + 1) for i, x in enumerate(rep)]
            return self.finish(tag, flat, hashable)
        return self.finish(tag, self.walk(rep, False, hashable or mode == REP_HASHABLE, False, depth), hashable)


def loads_msgpack(data, *, handlers=None, int max_depth=256, Py_ssize_t max_size=64 * 1024 * 1024):
    """The value of transit msgpack bytes; DecodeError if they are not valid."""
    cdef MsgpackReader r = MsgpackReader()
    r.setup(handlers, max_depth)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"transit loads_msgpack reads bytes, not {type(data).__name__}")
    check_size(len(data), max_size)
    try:
        raw = _MSGPACK_DECODER.decode(data)
    except RecursionError:
        raise DecodeError(f"nesting deeper than max_depth={max_depth}") from None
    except (msgspec.DecodeError, TypeError, ValueError) as e:
        raise DecodeError(f"invalid msgpack: {e}") from None
    r.tok = -1
    try:
        return r.walk(raw, False, False, False, 0)
    except DecodeError as e:
        raise DecodeError(e.msg, None) from None
