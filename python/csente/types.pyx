# cython: boundscheck=False, wraparound=False
"""Value types shared by the edn and transit codecs.

Keywords and symbols are interned: ``Keyword("a/b") is Keyword("a/b")``. Equality and hashing
are by identity for them, which is what makes map lookups on keyword keys as cheap as on ints.
"""

import re

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object) noexcept
    int PyUnicode_KIND(object) noexcept
    int PyUnicode_1BYTE_KIND

cdef dict _keywords = {}
cdef dict _symbols = {}
cdef object _SURROGATES = re.compile(r"[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


class DecodeError(ValueError):
    """Input that is not valid for the codec; ``pos`` is the offset where reading failed."""

    def __init__(self, msg, pos=None):
        self.msg = msg
        self.pos = pos
        ValueError.__init__(self, msg if pos is None else f"{msg} (at position {pos})")

    def __reduce__(self):
        return (type(self), (self.msg, self.pos))


def _jvm_unit(m):
    t = m.group()
    if len(t) == 2:
        return chr(0x10000 + ((ord(t[0]) - 0xD800) << 10) + (ord(t[1]) - 0xDC00))
    return "?"


cpdef str jvm_text(str s):
    """``s`` as the JVM's UTF-8 encoder sees a UTF-16 string: a surrogate pair is its character, a lone
    surrogate becomes ``?`` (``String.getBytes``; see ../shared/vectors/msgpack/README.md). Sente's server
    writes text frames and Ajax bodies that way, so a lone surrogate in a value costs the wire one ``?``
    instead of an unencodable message. The codecs call it only for strings that have no UTF-8 form."""
    if PyUnicode_IS_ASCII(s) or PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND:
        return s
    return _SURROGATES.sub(_jvm_unit, s)


cdef inline tuple _split(str text):
    cdef Py_ssize_t i
    if not text:
        raise ValueError("a keyword or symbol needs a name")
    if text == "/":
        return None, text
    i = text.find("/")
    if i <= 0 or i == len(text) - 1:
        return None, text
    return text[:i], text[i + 1:]


cdef class Named:
    """Common base of Keyword and Symbol: an optional namespace and a name."""

    def __init__(self, str text):
        pass  # construction happens in the interning tp_new below

    def __reduce__(self):
        return (type(self), (self.text,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __lt__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.text < (<Named>other).text


cdef class Keyword(Named):
    """An EDN keyword ``:ns/name``; ``Keyword("ns/name")``."""

    def __repr__(self):
        return f"Keyword({self.text!r})"

    def __str__(self):
        return ":" + self.text


cdef class Symbol(Named):
    """An EDN symbol ``ns/name``; ``Symbol("ns/name")``."""

    def __repr__(self):
        return f"Symbol({self.text!r})"

    def __str__(self):
        return self.text


cdef Named _init_named(Named obj, str text):
    ns, name = _split(text)
    obj.ns = ns
    obj.name = name
    obj.text = text
    obj._hash = hash((type(obj).__name__, text))
    return obj


cpdef Keyword keyword(str text):
    """The interned keyword for ``text`` (``"ns/name"`` or ``"name"``, no leading colon)."""
    cdef object found = _keywords.get(text)
    if found is not None:
        return <Keyword>found
    kw = <Keyword>_init_named(Keyword.__new__(Keyword), text)
    _keywords[text] = kw
    return kw


cpdef Symbol symbol(str text):
    """The interned symbol for ``text``."""
    cdef object found = _symbols.get(text)
    if found is not None:
        return <Symbol>found
    sym = <Symbol>_init_named(Symbol.__new__(Symbol), text)
    _symbols[text] = sym
    return sym


# Route the public constructors through the intern tables: Cython has no __new__ for
# extension types, so the type slot is replaced once at import.
cdef extern from *:
    """
    static PyObject *(*__csente_interning_new)(PyTypeObject *, PyObject *, PyObject *);
    static PyObject *__csente_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds) {
        return __csente_interning_new(tp, args, kwds);
    }
    static void __csente_install_new(PyTypeObject *kw, PyTypeObject *sym, void *fn) {
        __csente_interning_new = (PyObject *(*)(PyTypeObject *, PyObject *, PyObject *))fn;
        kw->tp_new = __csente_tp_new;
        kw->tp_vectorcall = NULL;  /* else calls bypass tp_new */
        sym->tp_vectorcall = NULL;
        sym->tp_new = __csente_tp_new;
    }
    """
    void __csente_install_new(PyTypeObject* kw, PyTypeObject* sym, void* fn)


cdef PyObject* _interning_new(PyTypeObject* tp, PyObject* args, PyObject* kwds) except NULL:
    cdef tuple a = <tuple>args
    if (kwds != NULL and <dict>kwds) or len(a) != 1 or type(a[0]) is not str:
        raise TypeError("expected one str argument: 'name' or 'ns/name'")
    cdef Named result = keyword(a[0]) if tp == <PyTypeObject*>Keyword else symbol(a[0])
    Py_INCREF(result)
    return <PyObject*>result


__csente_install_new(<PyTypeObject*>Keyword, <PyTypeObject*>Symbol, <void*>_interning_new)


cdef class Char:
    """An EDN character ``\\a``; one code point (or one lone UTF-16 surrogate)."""

    def __init__(self, str char):
        if len(char) != 1:
            raise ValueError(f"Char takes exactly one character, got {char!r}")
        self.char = char

    def __eq__(self, other):
        if type(other) is Char:
            return self.char == (<Char>other).char
        return NotImplemented

    def __hash__(self):
        return hash((Char, self.char))

    def __repr__(self):
        return f"Char({self.char!r})"

    def __reduce__(self):
        return (Char, (self.char,))


cdef class TaggedValue:
    """A tagged value with no reader: edn ``#tag value`` or a transit tag with no handler."""

    def __init__(self, str tag, object value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        if type(other) is TaggedValue:
            return self.tag == (<TaggedValue>other).tag and self.value == (<TaggedValue>other).value
        return NotImplemented

    def __hash__(self):
        return hash((TaggedValue, self.tag, self.value))

    def __repr__(self):
        return f"TaggedValue({self.tag!r}, {self.value!r})"

    def __reduce__(self):
        return (TaggedValue, (self.tag, self.value))


class List(tuple):
    """An EDN list ``(1 2 3)``: immutable and hashable; equal to a vector with the same items, as in Clojure."""

    __slots__ = ()

    def __repr__(self):
        return f"List({list(self)!r})"


class FrozenDict(dict):
    """A hashable, read-only map: what a map becomes where Python needs a hashable value."""

    __slots__ = ("_hash",)

    def __hash__(self):
        try:
            return self._hash
        except AttributeError:
            self._hash = hash(frozenset(self.items()))
            return self._hash

    def _readonly(self, *args, **kwargs):
        raise TypeError("FrozenDict is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __repr__(self):
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self):
        return (FrozenDict, (dict(self),))
