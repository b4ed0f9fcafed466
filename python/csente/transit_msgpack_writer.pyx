# cython: boundscheck=False, wraparound=False
"""Transit over MessagePack, as transit-clj 1.1.357's ``:msgpack`` writer produces it (``dumps_msgpack``).

The value becomes a tree of plain lists, dicts, strings and numbers, with transit's tags, quoting and
write cache applied (the rules are transit_rules'); msgspec.msgpack packs the tree.
"""

import datetime as _dt
import uuid as _uuid
from fractions import Fraction

import msgspec

from cpython.dict cimport PyDict_GetItem
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.object cimport PyObject
from libc.math cimport isfinite

from csente.transit_rules cimport (CACHE_MAX, MIN_CACHEABLE, OTHER_HANDLER, OTHER_ITEMS, OTHER_MAP, OTHER_SET,
                                   Other, WriteHandler, all_stringable, handler_dict, is_scalar, millis,
                                   needs_escape, resolve_other, scalar_text, special_double, u16len)
from csente.types cimport Keyword, Symbol, TaggedValue, jvm_text

from csente.transit_rules import CACHE_CODES
from csente.types import FrozenDict, List

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int* overflow) except? -1

cdef tuple _CODES = CACHE_CODES
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()


cdef class _MsgpackWriter:
    cdef dict cache
    cdef dict handlers

    cdef object cached(self, object ckey, str enc):
        cdef PyObject* code = PyDict_GetItem(self.cache, ckey)
        if code != NULL:
            return <object>code
        if len(self.cache) == CACHE_MAX:
            self.cache.clear()
        self.cache[ckey] = _CODES[len(self.cache)]
        return enc

    cdef object encoded(self, str enc, bint key):
        if key and u16len(enc) >= MIN_CACHEABLE:
            return self.cached(enc, enc)
        return enc

    cdef object named(self, object o, str prefix, str text):
        if u16len(text) + 2 >= MIN_CACHEABLE:
            return self.cached(o, prefix + text)
        return prefix + text

    cdef list tag(self, str tag, object rep):
        enc = "~#" + tag
        head = self.cached(enc, enc) if u16len(tag) >= 2 else enc
        return [head, rep]

    cdef object tagged_items(self, str tag, object seq):
        head = self.tag(tag, None)  # the tag is cached before its items, as the reader will see it
        head[1] = self.items(seq)
        return head

    cdef list items(self, object seq):
        return [self.build(x, False) for x in seq]

    cdef object map(self, object m):
        if all_stringable(m, self.handlers):
            result = {}
            for k, v in m.items():
                bk = self.build(k, True)
                result[bk] = self.build(v, False)
            return result
        head = self.tag("cmap", None)
        flat = []
        for k, v in m.items():
            flat.append(self.build(k, False))
            flat.append(self.build(v, False))
        head[1] = flat
        return head

    cdef object tagged(self, str tag, object rep):
        head = self.tag(tag, None)  # the tag is cached before its rep, as the reader will see it
        head[1] = self.build(rep, False)
        return head

    cdef object handled(self, WriteHandler h, object o, bint key):
        if len(h.tag) == 1:
            return self.encoded(h.scalar_text(o), key)
        return self.tagged(h.tag, h.rep(o))

    cdef object build(self, object o, bint key):
        cdef type t = type(o)
        cdef PyObject* h
        cdef int overflow = 0
        cdef double d
        if self.handlers is not None:
            h = PyDict_GetItem(self.handlers, t)
            if h != NULL:
                return self.handled(<WriteHandler>h, o, key)
        if t is str:
            if needs_escape(o):
                return self.encoded("~" + o, key)
            return self.encoded(o, key)
        if t is Keyword:
            return self.named(o, "~:", (<Keyword>o).text)
        if t is int:
            PyLong_AsLongLongAndOverflow(o, &overflow)
            return self.encoded("~n" + str(o), key) if overflow else o
        if t is float:
            d = PyFloat_AS_DOUBLE(o)
            return o if isfinite(d) else self.encoded(special_double(d), key)
        if t is dict or t is FrozenDict:
            return self.map(o)
        if t is list or t is tuple:
            return self.items(o)
        if o is None or t is bool:
            return o
        if t is Symbol:
            return self.named(o, "~$", (<Symbol>o).text)
        if t is List:
            return self.tagged_items("list", o)
        if t is frozenset or t is set:
            return self.tagged_items("set", o)
        if t is _uuid.UUID and not key:
            hi, lo = divmod(o.int, 1 << 64)
            return ["~#u", [hi - (1 << 64) if hi >= 1 << 63 else hi, lo - (1 << 64) if lo >= 1 << 63 else lo]]
        if t is _dt.datetime and not key:
            return ["~#m", millis(o)]
        text = scalar_text(o, t, False)
        if text is not None:
            return self.encoded(<str>text, key)
        if t is Fraction:
            return self.tag("ratio", ["~n" + str(o.numerator), "~n" + str(o.denominator)])
        if t is TaggedValue:
            return self.tagged((<TaggedValue>o).tag, (<TaggedValue>o).value)
        return self.build_other(o, key)

    cdef object build_other(self, object o, bint key):
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
        return self.build(x, key)


def dumps_msgpack(value, *, handlers=None):
    """``value`` as transit over MessagePack, as transit-clj's ``:msgpack`` writer produces it."""
    cdef _MsgpackWriter w = _MsgpackWriter()
    w.cache = {}
    w.handlers = handler_dict(handlers)
    if is_scalar(value, w.handlers):
        tree = ["~#'", w.build(value, False)]
    else:
        tree = w.build(value, False)
    try:
        return _MSGPACK_ENCODER.encode(tree)
    except UnicodeEncodeError:  # a lone surrogate: written as the JVM's encoder writes it (jvm_text)
        return _MSGPACK_ENCODER.encode(_jvm_strings(tree))


cdef object _jvm_strings(object x):
    """The msgpack tree with every string (keys included) passed through :func:`jvm_text`."""
    if type(x) is str:
        return jvm_text(x)
    if type(x) is list:
        return [_jvm_strings(v) for v in x]
    if type(x) is dict:
        return {_jvm_strings(k): _jvm_strings(v) for k, v in x.items()}
    return x
