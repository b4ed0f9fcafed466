# cython: boundscheck=False, wraparound=False
"""The fan-out write loop: one prebuilt frame to many WebSocket connections, in one C loop.

A flush packs its batch once and builds its frame once; what is left per recipient is getting the same bytes
onto each connection's socket and checking that connection's outbound cap. Where the transport has nothing
queued, the frame goes straight to the socket with one ``send`` from here (as picows's own writer does), skipping
the transport's ``write`` and its buffer bookkeeping; whatever the kernel does not take at once (a short write,
``EAGAIN``, an error) is handed to the transport's ``write``, which queues it, or meets the error and closes the
connection the usual way. Nothing is ever written to a socket behind bytes the transport still holds, nor to one
it is closing (its descriptor may already be closed and reused).

Connections are the picows bridge's: ``_raw`` is the asyncio transport, ``_fd`` its socket's descriptor (-1: always
through the transport, e.g. under TLS), ``_closing`` says whether to skip it (a closed connection is closing too).
Three attribute reads and the transport's two cheap queries are all the interpreter does per connection.
"""

from cpython.ref cimport PyObject
from cpython.sequence cimport PySequence_Fast

cdef extern from "Python.h":
    Py_ssize_t PySequence_Fast_GET_SIZE(object seq)
    PyObject* PySequence_Fast_GET_ITEM(object seq, Py_ssize_t i)


cdef extern from *:
    """
    #ifdef _WIN32
    static Py_ssize_t csente_send(int fd, const char *data, Py_ssize_t size) { return 0; }
    #else
    #include <sys/socket.h>
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0
    #endif
    /* Bytes the kernel took (0 on EAGAIN/EINTR or an error: the transport's write then queues or fails). */
    static Py_ssize_t csente_send(int fd, const char *data, Py_ssize_t size) {
        Py_ssize_t sent = send(fd, data, (size_t)size, MSG_NOSIGNAL | MSG_DONTWAIT);
        return sent > 0 ? sent : 0;
    }
    #endif
    """
    Py_ssize_t csente_send(int fd, const char *data, Py_ssize_t size) nogil


def write_frame(conns, bytes frame, Py_ssize_t cap):
    """Write ``frame`` to every open connection in ``conns`` (a list or tuple: a Send's handles, not copied); the
    connections now holding more than ``cap`` unsent bytes (slow consumers), in order, or None when there are none."""
    cdef object seq = PySequence_Fast(conns, "write_frame: conns must be a sequence")
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq), size = len(frame), sent
    cdef const char *data = frame
    cdef int fd
    cdef list slow = None
    cdef object conn, transport
    for i in range(n):
        conn = <object>PySequence_Fast_GET_ITEM(seq, i)
        if conn._closing:
            continue
        transport = conn._raw
        fd = conn._fd
        if fd >= 0 and not transport.is_closing() and not transport.get_write_buffer_size():
            sent = csente_send(fd, data, size)
            if sent == size:
                continue  # all of it in the kernel: nothing buffered, under any cap
            transport.write(frame[sent:] if sent else frame)
        else:
            transport.write(frame)
        if transport.get_write_buffer_size() > cap:
            if slow is None:
                slow = []
            slow.append(conn)
    return slow
