# The broker's shared-memory engine; cimport it for C-level publishing from other Cython modules.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef class SharedState:
    cdef unsigned char* _base
    cdef uint64_t _size
    cdef str _name
    cdef str _path
    cdef list _fifos
    cdef list _fifo_bytes
    cdef bint _creator
    cdef int _index           # worker index, -1 for the supervisor and observers
    cdef int _producer        # lane this process writes: its index, `workers` for the supervisor, -1 observer
    cdef int _workers
    cdef int _lanes
    cdef uint64_t _uid_slots
    cdef uint64_t _max_key
    cdef uint64_t _max_live
    cdef uint64_t _ring_bytes
    cdef uint64_t _slot_stride
    cdef uint64_t _lane_stride
    cdef uint64_t _inbox_stride
    cdef Py_ssize_t _max_payload
    cdef unsigned char* _slots
    cdef uint64_t* _cols
    cdef unsigned char* _inboxes
    cdef int _rfd
    cdef int _wfd[32]
    cdef int _rr
    cdef int _crash_after
    cdef uint64_t _pid

    cdef _map(self, int fd, uint64_t size)
    cdef _validate(self, str path, uint64_t size)
    cdef _setup(self, str name, str path, int index, bint creator)
    cdef uint64_t* _pidp(self, int index) noexcept
    cdef _release(self)
    cdef int _check(self) except -1
    cdef int _check_worker(self) except -1
    cdef int _check_connection(self, int transport) except -1
    cdef unsigned char* _slot(self, uint64_t s) noexcept
    cdef uint64_t* _col(self, int w, uint64_t s) noexcept
    cdef int64_t _lookup(self, const unsigned char* k, uint32_t klen, uint64_t h, uint64_t* mout) noexcept
    cdef int _lock(self) except -1
    cdef void _unlock(self) noexcept
    cdef int _crash(self, int step) except -1
    cdef int64_t _insert(self, const unsigned char* k, uint32_t klen, uint64_t h) except -2
    cdef int _key(self, object key, const unsigned char** kp, uint32_t* klen) except -1
    cdef bint _drop_holder(self, uint64_t s, uint64_t bit) noexcept
    cdef void _changed(self) noexcept
    cdef void _settle_reservations(self, int producer) noexcept
    cdef uint64_t _count_records(self, unsigned char* lane, uint64_t h, uint64_t t) noexcept
    cdef unsigned char* _inbox(self, int consumer) noexcept
    cdef unsigned char* _lane(self, int consumer, int producer) noexcept
    # Append one message to worker `dest`'s inbox; 1 committed, 0 dropped (lane full). The caller has
    # checked that this is a producer, dest is in range, kind <= 0xFFFE, klen <= max_key and
    # plen <= max_payload (the Python `publish` does exactly these checks).
    cdef int publish_raw(self, int dest, int kind, const unsigned char* k, Py_ssize_t klen,
                         const unsigned char* pl, Py_ssize_t plen, bint commit, bint count_drop=*) except -1
    cdef void _wake(self, int dest) noexcept
    cdef void _signal(self, int dest) noexcept
    cdef const char* _fifo_c(self, int dest) noexcept
    cdef int _payload_args(self, int dest, int kind, object key, object payload, Py_buffer* kb,
                           Py_buffer* pb) except -1
    cdef int _check_producer(self, int dest) except -1
    cdef Py_ssize_t _drain_lane(self, unsigned char* lane, list out, Py_ssize_t room_left) except -1
    cdef bint _pending(self) noexcept
    cdef _open_reader(self)
