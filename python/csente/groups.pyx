# cython: boundscheck=False, wraparound=False
"""The push path's loops in C (for :mod:`sente.protocol.push`): grouping a flush's recipients by the batch they
get, collecting the connections a batch goes to, and telling that an event sent again is unchanged.

A flush holds per-uid pushes (``private``: uid -> ``[(seq, encoded), ...]``) and broadcasts (``[(seq, encoded,
targets), ...]``, ``targets`` a frozenset of uids or None for everyone). Every uid must get exactly its own
pushes and the broadcasts it is a target of, in seq order, and each distinct list must be packed once. Sente
apps push to a uid list (``broadcast(event, connected_uids.any)``, or a ``send`` per uid), so the uid loop
runs over every connected uid: here it is C, with one set lookup per uid and distinct target set.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from csente.types cimport Keyword, Symbol

DEF MAX_RECORD = 256  # objects: a bigger event is encoded again on every send rather than walked
DEF MAX_DEPTH = 16


def group(dict private, list broadcasts, dict by_uid):
    """Recipients here grouped by the exact events they get: ``[(events, uids), ...]``, each distinct list of
    events once, in the order first seen (uids with own pushes in send order, then the others).

    ``by_uid``: the uids with a client in this process (others are skipped: they are the backplane's).
    """
    cdef list groups = []
    cdef dict by_key = {}
    cdef list distinct = []  # the distinct target sets, by identity
    cdef list slots = []  # per broadcast: its index in ``distinct``, or -1 for everyone
    cdef bint everyone = False
    cdef Py_ssize_t i, n = len(broadcasts)
    cdef object targets, uid, key, entries
    cdef list uids
    for i in range(n):
        targets = (<tuple>broadcasts[i])[2]
        if targets is None:
            everyone = True
            slots.append(-1)
            continue
        for j, known in enumerate(distinct):
            if known is targets:
                slots.append(j)
                break
        else:
            slots.append(len(distinct))
            distinct.append(targets)

    for uid, entries in private.items():
        if uid not in by_uid:
            continue  # held only in other processes: the backplane's
        member = _membership(uid, distinct)
        key = (_seqs(entries), member)
        uids = <list>by_key.get(key)
        if uids is None:
            uids = []
            by_key[key] = uids
            groups.append((_merge(entries, broadcasts, slots, member, distinct), uids))
        uids.append(uid)
    if not n:
        return groups

    # The uids with no push of their own get the broadcasts they are targets of.
    cdef object source = by_uid
    cdef Py_ssize_t total = 0
    if not everyone:
        for targets in distinct:
            total += len(targets)
        if total < len(by_uid):
            source = distinct[0] if len(distinct) == 1 else _union(distinct)
    cdef object last = None
    uids = None
    for uid in source:
        if uid in private or (source is not by_uid and uid not in by_uid):
            continue
        member = _membership(uid, distinct)
        if not everyone and not member:
            continue  # a target of none of them
        if uids is None or member != last:
            key = ("b", member)
            uids = <list>by_key.get(key)
            if uids is None:
                uids = []
                by_key[key] = uids
                groups.append((_merge([], broadcasts, slots, member, distinct), uids))
            last = member
        uids.append(uid)
    return groups


cdef object _membership(object uid, list distinct):
    """Which of the distinct target sets hold ``uid``: a bit mask (a tuple of indexes past 62 sets)."""
    cdef Py_ssize_t i, n = len(distinct)
    cdef long long mask = 0
    if n <= 62:
        for i in range(n):
            if uid in <frozenset>distinct[i]:
                mask |= (<long long>1) << i
        return mask
    return tuple([i for i in range(n) if uid in <frozenset>distinct[i]])


cdef bint _applies(Py_ssize_t slot, object member):
    if slot < 0:
        return True
    if type(member) is int:
        return (<long long>member >> slot) & 1
    return slot in <tuple>member


cdef tuple _seqs(list entries):
    """A uid's own pushes as their seqs (the part of its group key they decide)."""
    cdef Py_ssize_t i, n = len(entries)
    return tuple([(<tuple>entries[i])[0] for i in range(n)])


cdef list _merge(list entries, list broadcasts, list slots, object member, list distinct):
    """A uid's own entries and the broadcasts that apply to it, merged by seq: the encoded events of its batch."""
    cdef list out = []
    cdef Py_ssize_t i = 0, j = 0, n = len(entries), m = len(broadcasts)
    cdef tuple entry, bcast
    while True:
        while j < m and not _applies(<Py_ssize_t>slots[j], member):
            j += 1
        if i < n and (j >= m or (<tuple>entries[i])[0] < (<tuple>broadcasts[j])[0]):
            out.append((<tuple>entries[i])[1])
            i += 1
        elif j < m:
            out.append((<tuple>broadcasts[j])[1])
            j += 1
        else:
            return out


cdef set _union(list distinct):
    cdef set out = set()
    for targets in distinct:
        out.update(targets)
    return out


def collect(dict by_uid, uids, bint ws):
    """The clients here of ``uids`` a batch goes to: the handles of live WebSockets (marked active), and the
    clients that take it another way (held, or an Ajax poll to answer), both in order.

    Clients whose poll another process holds are skipped: that process gets the batch too.
    """
    cdef list live = []
    cdef list others = []
    cdef PyObject* found
    for uid in uids:
        found = PyDict_GetItem(by_uid, uid)
        if found is NULL:
            continue
        for client in (<dict>found).values():
            if client.elsewhere is not None:
                continue
            handle = client.handle
            if ws and handle is not None and not client.pending and not client.handoffs_due:
                client.activity = True
                live.append(handle)
            else:
                others.append(client)
    return live, others


# ---------------------------------------------------------------------- an event sent again


def record(value):
    """What :func:`unchanged` compares ``value`` with later: every container and leaf in it (held, so no id is
    reused) and every container's length, in walk order. None when it holds anything whose change could not be
    seen from outside (a set, an object of the app's own type) or is too big to be worth walking."""
    cdef list out = []
    return out if _record(value, out, 0) else None


cdef bint _atom(object value):
    """Immutable leaves: equal objects now, equal encodings later."""
    t = type(value)
    return (value is None or t is str or t is int or t is float or t is bool or t is bytes
            or t is Keyword or t is Symbol)


cdef bint _record(object value, list out, int depth) except -1:
    if len(out) >= MAX_RECORD or depth > MAX_DEPTH:
        return False
    out.append(value)
    if _atom(value):
        return True
    t = type(value)
    if t is list or t is tuple:
        out.append(len(value))
        for item in value:
            if not _record(item, out, depth + 1):
                return False
        return True
    if t is dict:
        out.append(len(value))
        for key, item in (<dict>value).items():
            if not _record(key, out, depth + 1) or not _record(item, out, depth + 1):
                return False
        return True
    return False


def unchanged(value, list recorded):
    """Whether ``value`` is still what :func:`record` saw: the same objects in the same places, so it encodes the
    same (containers are compared by identity and length, leaves are immutable)."""
    cdef Py_ssize_t at = 0
    return _same(value, recorded, &at) and at == len(recorded)


cdef bint _same(object value, list recorded, Py_ssize_t* at) except -1:
    cdef Py_ssize_t i = at[0]
    if i >= len(recorded) or recorded[i] is not value:
        return False
    at[0] = i + 1
    if _atom(value):
        return True
    t = type(value)
    if t is list or t is tuple or t is dict:
        if at[0] >= len(recorded) or recorded[at[0]] != len(value):
            return False
        at[0] += 1
        if t is dict:
            for key, item in (<dict>value).items():
                if not _same(key, recorded, at) or not _same(item, recorded, at):
                    return False
        else:
            for item in value:
                if not _same(item, recorded, at):
                    return False
        return True
    return False
