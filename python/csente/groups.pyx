# cython: boundscheck=False, wraparound=False
"""The push path's loops over uids, once per flush: grouping recipients by the batch they get, and collecting
the connections a batch goes to (for :mod:`sente.protocol.push`).

A flush holds per-uid pushes (``private``: uid -> ``[(seq, encoded), ...]``) and broadcasts (``[(seq, encoded,
targets), ...]``, ``targets`` a frozenset of uids or None for everyone). Every uid must get exactly its own
pushes and the broadcasts it is a target of, in seq order, and each distinct list must be packed once. Sente
apps push to a uid list (``broadcast(event, connected_uids.any)``, or a ``send`` per uid), so the uid loop
runs over every connected uid: here it is C, with one set lookup per uid and distinct target set.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject


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
