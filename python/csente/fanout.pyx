# cython: boundscheck=False, wraparound=False
"""The fan-out write loop: one prebuilt frame to many WebSocket connections, in one C loop.

A flush packs its batch once and builds its frame once; what is left per recipient is handing the same
``bytes`` to each connection's transport and checking that connection's outbound cap. Doing that loop
here keeps the per-recipient cost to the transport's own ``write`` (uvloop's, itself C: a ``send`` when its
buffer is empty) plus two attribute reads, with no interpreter work per connection. Connections are the
picows bridge's: ``_raw`` is the asyncio transport, ``_closing``/``closed`` say whether to skip them.
"""


def write_frame(list conns, bytes frame, Py_ssize_t cap):
    """Write ``frame`` to every open connection in ``conns``; the connections now holding more than ``cap``
    unsent bytes (slow consumers), in order, or None when there are none."""
    cdef Py_ssize_t i, n = len(conns)
    cdef list slow = None
    cdef object conn, transport
    for i in range(n):
        conn = conns[i]
        if conn._closing or conn.closed:
            continue
        transport = conn._raw
        transport.write(frame)
        if transport.get_write_buffer_size() > cap:
            if slow is None:
                slow = []
            slow.append(conn)
    return slow

