# cython: boundscheck=True, wraparound=True
"""Shared memory for the multi-worker broker: the uid registry, the delivery rings and their counters.

The supervisor creates one segment (a file in /dev/shm, mmapped ``MAP_SHARED``) before it starts the
workers; each worker attaches with its index. Everything on the hot path is a handful of loads, stores
and CASes on that mapping: no pickling, no syscalls except a coalesced wake-up, and no lock that a dead
process can leave held.

Layout (all offsets 64-byte aligned, regions 4 KiB aligned)::

    header   4 KiB   magic "CSENTSHM", version, geometry and region offsets (attach validates them),
                     the registry insert lock, live/refusal counters, one pid word per worker index
    slots    uid_slots × slot_stride     meta u64 · hash u32 · key length u32 · key bytes (≤ max_key)
    columns  workers × uid_slots × u64   col[w][s] = ws count (low 32 bits) | ajax count (high 32 bits)
    inboxes  workers × (64 + lanes × lane_stride)
             inbox: parked flag · wake count, then one lane per producer (every worker + the supervisor)
             lane:  producer line (tail, reserved, published, dropped, abandoned) · consumer line (head,
                    consumed, discarded) · ring_bytes of records (16-byte header, key, payload, 8-aligned)

Registry. Open addressing with linear probing over power-of-two ``uid_slots``, keyed by the uid's bytes.
A slot's ``meta`` word packs state (EMPTY/LIVE/TOMB/CLAIM, 2 bits), a 30-bit generation bumped on every
claim, and a 32-bit *holders* mask: bit w is set while worker w has at least one local connection for the
uid. The mask is the cluster-wide "connected anywhere" counter: it is changed only by CAS, so exactly
one ``uid_connect`` sees it go from 0 to non-zero and exactly one ``uid_disconnect`` (or reclaim) sees it
go back, and the CAS that empties it also tombstones the slot (a LIVE slot always has a holder, so a
connect can never add itself to a slot that is being deleted). Per-transport counts live in the worker's
own column, written only by that worker with a single store. Lookups and joins are lock-free; the
generation makes key reads a seqlock (key bytes are only rewritten after the generation changes) and
rules out ABA on the CAS. Inserting a uid that is nowhere in the broker takes the *insert lock*; that
serialises inserts so a uid can never get two slots (a lock-free insert with tombstone reuse cannot
guarantee that without much more machinery). The lock word holds the owner's pid and index: a waiter
that finds the owner's pid gone steals it, and ``reclaim_worker`` clears it. The insert itself is
crash-safe: the slot only becomes visible with the final release store of ``meta``. While it holds the
lock, an inserter turns tombstones that end a probe chain back into EMPTY slots.
Capacity policy: at most ``max_live = uid_slots - uid_slots // 4`` live uids; the next new uid raises
``RegistryFull`` (a ValueError) and is counted in ``registry_stats()["refusals"]``. Tombstones are
reused by later inserts.

Dead workers. Each step a worker takes is a single atomic word write, so a worker that dies between two
of them leaves at worst its own column and its own holder bit disagreeing; ``reclaim_worker`` zeroes the
column, clears the bit (tombstoning the slot if that emptied it) and reports the uids that left the whole
broker. A uid whose bit was never set was never reported as open, so nothing is reported for it. A worker
that dies after setting the bit but before its caller fired the open is indistinguishable from one that
died just after: reclaim reports the close (a close without an open is the harmless side to err on).
The ``live`` counter behind the capacity cap is bumped after an insert commits and decremented with
saturation, so a crash can only make it undercount by one per crash.

Rings: per-worker inboxes made of single-producer lanes. Every inbox has one lane per producer (each
worker, and the supervisor). A producer writes the record into free space and then commits it with one
release store of the lane's ``tail``; the consumer loads ``tail`` with acquire, copies the records out
and releases ``head``. We chose this over one multi-producer ring per inbox (atomic reserve on a shared
tail) and over one broadcast ring read by every worker: with a shared tail a producer that dies between
reserve and commit leaves a hole whose length only it knew, and with several writers dying at once the
repair is ambiguous; with a broadcast ring the slowest or a dead reader holds everyone back. With lanes a
producer that dies mid-write has committed nothing: its half-written bytes lie beyond ``tail`` and the
consumer never sees them, so nothing is wedged even before the supervisor notices. ``reserved`` records
the end of an uncommitted write; reclaim and re-attach count such a write as *abandoned*. The costs are
memory (lanes × ring_bytes per inbox, touched lazily by tmpfs) and no total order across producers
(there is none to keep: order is per producer, which is what per-connection order needs).
Policy when a lane is full: drop the newest message, return False and count it in the lane's
``dropped``. ``publish_all`` copies the payload into each other worker's inbox (memcpy is cheap next
to the socket writes it feeds). Records are at most ``ring_bytes // 2`` so one always fits an empty lane.

Wake-ups. Each worker has a FIFO ``<name>.wake<i>`` next to the segment (a pipe any process can open
by path, so workers started with 'spawn' need no fd passing). ``drain`` that finds the inbox empty sets
the inbox's ``parked`` flag, issues a full fence and looks again (Dekker); a producer commits, issues a
full fence and, if ``parked`` is set, exchanges it to 0 and, if it won, writes one byte. So a parked
consumer is signalled once, and a busy one never.

Memory ordering: CASes are seq_cst; commits (tail, head, meta) are release stores read with acquire
loads; single-writer counters are relaxed load+store; the two Dekker handshakes use seq_cst fences.
Concurrency inside a process: every method holds the GIL throughout, so Python threads cannot
interleave inside one operation. Do not fork a process that is attached.

Raw pointer access only: every offset into the mapping is derived from the geometry the header
validated and from indices checked on entry. Cython's bounds and wraparound checks stay on: they only
guard the few Python-list lookups and cost nothing on the pointer paths.
"""

import os
import re

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, ENXIO, EPIPE, ESRCH, errno
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from posix.fcntl cimport O_NONBLOCK, O_RDWR, O_WRONLY
from posix.fcntl cimport open as c_open
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.signal cimport kill
from posix.unistd cimport close as c_close
from posix.unistd cimport getpid
from posix.unistd cimport read as c_read
from posix.unistd cimport write as c_write

cdef extern from "<sched.h>":
    int sched_yield() nogil

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t cs_ld_acq(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline uint64_t cs_ld_rlx(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void cs_st_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void cs_st_rlx(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline void cs_st_sc(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
    static inline int cs_cas(uint64_t *p, uint64_t *expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    static inline uint64_t cs_xchg(uint64_t *p, uint64_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
    static inline uint64_t cs_add(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
    static inline void cs_fence_sc(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    static inline void cs_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
    static inline void cs_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
    /* one relaxed increment of a counter that has a single writer */
    static inline void cs_bump(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
    }
    static inline uint64_t cs_hash(const unsigned char *k, size_t n) {
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++) { h ^= k[i]; h *= 1099511628211ULL; }
        h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL; h ^= h >> 33;
        return h;
    }
    """
    uint64_t cs_ld_acq(uint64_t *p) noexcept nogil
    uint64_t cs_ld_rlx(uint64_t *p) noexcept nogil
    void cs_st_rel(uint64_t *p, uint64_t v) noexcept nogil
    void cs_st_rlx(uint64_t *p, uint64_t v) noexcept nogil
    void cs_st_sc(uint64_t *p, uint64_t v) noexcept nogil
    bint cs_cas(uint64_t *p, uint64_t *expected, uint64_t desired) noexcept nogil
    uint64_t cs_xchg(uint64_t *p, uint64_t v) noexcept nogil
    uint64_t cs_add(uint64_t *p, uint64_t v) noexcept nogil
    void cs_fence_sc() noexcept nogil
    void cs_fence_acq() noexcept nogil
    void cs_fence_rel() noexcept nogil
    void cs_bump(uint64_t *p, uint64_t v) noexcept nogil
    uint64_t cs_hash(const unsigned char *k, size_t n) noexcept nogil


VERSION = 1
MAX_WORKERS = 32
WS = 0
AJAX = 1
ANY = 2
KIND_PUSH = 1
KIND_BROADCAST = 2
KIND_CONTROL = 3
MAX_KIND = 0xFFFE

cdef uint64_t MAGIC = 0x4D4853544E455343ULL  # b"CSENTSHM" little-endian
cdef uint64_t C_VERSION = 1
cdef uint64_t HEADER_SIZE = 4096
cdef uint64_t REC_HDR = 16
cdef uint16_t PAD_KIND = 0xFFFF

# header byte offsets
cdef enum:
    H_MAGIC = 0
    H_VERSION = 8
    H_HEADER_SIZE = 16
    H_WORKERS = 24
    H_UID_SLOTS = 32
    H_MAX_KEY = 40
    H_RING_BYTES = 48
    H_SLOT_STRIDE = 56
    H_LANE_STRIDE = 64
    H_INBOX_STRIDE = 72
    H_SLOTS_OFF = 80
    H_COLS_OFF = 88
    H_INBOX_OFF = 96
    H_TOTAL = 104
    H_LOCK = 128        # own cache line
    H_LIVE = 192        # registry counters line
    H_REFUSALS = 200
    H_LOCK_STEALS = 208
    H_CHANGES = 216     # bumped after every change to who holds which uid (connected_uids caches on it)
    H_PIDS = 256        # MAX_WORKERS u64

# lane byte offsets
cdef enum:
    L_TAIL = 0
    L_RESERVED = 8
    L_PUBLISHED = 16
    L_DROPPED = 24
    L_ABANDONED = 32
    L_HEAD = 64
    L_CONSUMED = 72
    L_DISCARDED = 80
    L_DATA = 128

# inbox byte offsets
cdef enum:
    I_PARKED = 0
    I_WAKES = 8
    I_LANES = 64

# slot byte offsets
cdef enum:
    S_META = 0
    S_HASH = 8
    S_KLEN = 12
    S_KEY = 16

cdef uint64_t HOLDERS = 0xFFFFFFFFULL
cdef uint64_t GEN_MASK = ((1ULL << 30) - 1) << 32
cdef uint64_t GEN_ONE = 1ULL << 32
cdef uint64_t ST_EMPTY = 0
cdef uint64_t ST_LIVE = 1
cdef uint64_t ST_TOMB = 2
cdef uint64_t ST_CLAIM = 3
cdef uint64_t COUNT_MASK = 0xFFFFFFFFULL

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


class RegistryFull(ValueError):
    """The uid registry holds ``max_live`` uids already; the new uid was refused (and counted)."""


class LayoutError(ValueError):
    """The segment is not a csente shared-memory segment of this version and layout."""


class _SimulatedCrash(Exception):
    """Raised by the ``_crash_after`` test hook in place of the rest of an operation."""


cdef inline uint64_t _align(uint64_t n, uint64_t a) noexcept nogil:
    return (n + a - 1) & ~(a - 1)


cdef inline bint _pow2(uint64_t n) noexcept nogil:
    return n != 0 and (n & (n - 1)) == 0


cdef inline bint _pid_dead(uint64_t pid) noexcept:
    return pid == 0 or (kill(<int>pid, 0) != 0 and errno == ESRCH)


cdef inline void _dec_saturating(uint64_t* p) noexcept:
    cdef uint64_t v = cs_ld_rlx(p)
    while v != 0 and not cs_cas(p, &v, v - 1):
        pass


def _paths(str directory, str name):
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid shared-memory name {name!r}: letters, digits, '_', '.', '-' only")
    return os.path.join(directory, name)


cdef class SharedState:
    """One process's view of the broker's shared segment: the supervisor's (from ``create``), a
    worker's (``attach(name, i)``) or an observer's (``attach(name, None)``: read-only views)."""

    def __cinit__(self):
        self._base = NULL
        self._rfd = -1
        for i in range(MAX_WORKERS):
            self._wfd[i] = -1

    def __dealloc__(self):
        self._release()

    # ---- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def create(cls, str name, *, int workers, int uid_slots=65536, int ring_bytes=1 << 18,
               int max_key=112, str directory="/dev/shm"):
        """Create the segment and the workers' wake-up FIFOs (supervisor). Fails if ``name`` exists.

        ``uid_slots`` and ``ring_bytes`` (per producer lane) are powers of two; ``max_key`` bounds a
        uid's byte length. Memory: uid_slots × (slot_stride + 8 × workers) + workers × (workers + 1) ×
        ring_bytes, touched lazily."""
        cdef SharedState self = SharedState.__new__(SharedState)
        path = _paths(directory, name)
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}")
        if not _pow2(uid_slots) or not 8 <= uid_slots <= (1 << 24):
            raise ValueError("uid_slots must be a power of two in 8..2**24")
        if not _pow2(ring_bytes) or not 4096 <= ring_bytes <= (1 << 30):
            raise ValueError("ring_bytes must be a power of two in 4096..2**30")
        if not 1 <= max_key <= 4096:
            raise ValueError("max_key must be 1..4096")
        lanes = workers + 1
        slot_stride = _align(S_KEY + max_key, 64)
        lane_stride = L_DATA + ring_bytes
        inbox_stride = I_LANES + lanes * lane_stride
        slots_off = HEADER_SIZE
        cols_off = _align(slots_off + uid_slots * slot_stride, 4096)
        inbox_off = _align(cols_off + workers * uid_slots * 8, 4096)
        total = _align(inbox_off + workers * inbox_stride, 4096)
        fifos = [f"{path}.wake{i}" for i in range(workers)]
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, total)
            self._map(fd, total)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        try:
            for f in fifos:
                if os.path.exists(f):
                    os.unlink(f)
                os.mkfifo(f, 0o600)
        except BaseException:
            self._release()
            _unlink_all(path, fifos)
            raise
        cdef uint64_t* h = <uint64_t*>self._base
        h[H_VERSION // 8] = C_VERSION
        h[H_HEADER_SIZE // 8] = HEADER_SIZE
        h[H_WORKERS // 8] = workers
        h[H_UID_SLOTS // 8] = uid_slots
        h[H_MAX_KEY // 8] = max_key
        h[H_RING_BYTES // 8] = ring_bytes
        h[H_SLOT_STRIDE // 8] = slot_stride
        h[H_LANE_STRIDE // 8] = lane_stride
        h[H_INBOX_STRIDE // 8] = inbox_stride
        h[H_SLOTS_OFF // 8] = slots_off
        h[H_COLS_OFF // 8] = cols_off
        h[H_INBOX_OFF // 8] = inbox_off
        h[H_TOTAL // 8] = total
        cs_st_rel(&h[H_MAGIC // 8], MAGIC)  # last: an attacher never sees a half-written header
        self._setup(name, path, -1, True)
        return self

    @classmethod
    def attach(cls, str name, worker_index, *, str directory="/dev/shm"):
        """Map an existing segment as worker ``worker_index`` (or as a read-only observer with None).

        Raises FileNotFoundError if there is no such segment, LayoutError if it is not one of ours
        (magic, version or geometry), ValueError for an index out of range, RuntimeError if a live
        process is attached with that index already."""
        cdef SharedState self = SharedState.__new__(SharedState)
        path = _paths(directory, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"no csente shared-memory segment {path!r} (is the supervisor up?)") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise LayoutError(f"{path!r} is too small ({size} bytes) to be a csente segment")
            self._map(fd, size)
        finally:
            os.close(fd)
        try:
            self._validate(path, size)
            workers = (<uint64_t*>self._base)[H_WORKERS // 8]
            if worker_index is not None and not 0 <= worker_index < workers:
                raise ValueError(f"worker_index {worker_index} out of range 0..{workers - 1}")
            self._setup(name, path, -1 if worker_index is None else worker_index, False)
        except BaseException:
            self._release()
            raise
        return self

    cdef _map(self, int fd, uint64_t size):
        cdef void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, f"mmap failed: {os.strerror(errno)}")
        self._base = <unsigned char*>p
        self._size = size

    cdef _validate(self, str path, uint64_t size):
        cdef uint64_t* h = <uint64_t*>self._base
        if cs_ld_acq(&h[0]) != MAGIC:
            raise LayoutError(f"{path!r} has a bad magic number: not a csente segment (or not initialised)")
        if h[H_VERSION // 8] != C_VERSION:
            raise LayoutError(f"{path!r} has layout version {h[H_VERSION // 8]}, this build reads {C_VERSION}")
        workers, slots, max_key = h[H_WORKERS // 8], h[H_UID_SLOTS // 8], h[H_MAX_KEY // 8]
        ring = h[H_RING_BYTES // 8]
        ok = (h[H_HEADER_SIZE // 8] == HEADER_SIZE and 1 <= workers <= MAX_WORKERS and _pow2(slots)
              and _pow2(ring) and ring >= 4096 and 1 <= max_key <= 4096
              and h[H_SLOT_STRIDE // 8] == _align(S_KEY + max_key, 64)
              and h[H_LANE_STRIDE // 8] == L_DATA + ring
              and h[H_INBOX_STRIDE // 8] == I_LANES + (workers + 1) * (L_DATA + ring)
              and h[H_SLOTS_OFF // 8] == HEADER_SIZE
              and h[H_COLS_OFF // 8] == _align(HEADER_SIZE + slots * h[H_SLOT_STRIDE // 8], 4096)
              and h[H_INBOX_OFF // 8] == _align(h[H_COLS_OFF // 8] + workers * slots * 8, 4096)
              and h[H_TOTAL // 8] == _align(h[H_INBOX_OFF // 8] + workers * h[H_INBOX_STRIDE // 8], 4096)
              and h[H_TOTAL // 8] == size)
        if not ok:
            raise LayoutError(f"{path!r} has an inconsistent layout header (corrupt or truncated)")

    cdef _setup(self, str name, str path, int index, bint creator):
        cdef uint64_t* h = <uint64_t*>self._base
        cdef uint64_t pid, me
        self._name = name
        self._path = path
        self._workers = <int>h[H_WORKERS // 8]
        self._lanes = self._workers + 1
        self._uid_slots = h[H_UID_SLOTS // 8]
        self._max_key = h[H_MAX_KEY // 8]
        self._ring_bytes = h[H_RING_BYTES // 8]
        self._slot_stride = h[H_SLOT_STRIDE // 8]
        self._lane_stride = h[H_LANE_STRIDE // 8]
        self._inbox_stride = h[H_INBOX_STRIDE // 8]
        self._slots = self._base + h[H_SLOTS_OFF // 8]
        self._cols = <uint64_t*>(self._base + h[H_COLS_OFF // 8])
        self._inboxes = self._base + h[H_INBOX_OFF // 8]
        self._max_live = self._uid_slots - self._uid_slots // 4
        self._max_payload = <Py_ssize_t>((self._ring_bytes // 2 - REC_HDR - self._max_key) & ~7ULL)
        self._fifos = [f"{path}.wake{i}" for i in range(self._workers)]
        self._fifo_bytes = [os.fsencode(f) for f in self._fifos]
        self._creator = creator
        self._index = index
        self._producer = self._workers if creator else index
        self._rr = 0
        self._crash_after = 0
        self._pid = <uint64_t>getpid()
        if index >= 0:
            me = self._pid
            pid = cs_ld_acq(self._pidp(index))
            while True:
                if pid != 0 and pid != me and not _pid_dead(pid):
                    raise RuntimeError(f"worker index {index} is attached by live pid {pid}")
                if cs_cas(self._pidp(index), &pid, me):
                    break
            self._settle_reservations(index)

    cdef inline uint64_t* _pidp(self, int index) noexcept:
        return <uint64_t*>(self._base + H_PIDS) + index

    cdef _release(self):
        if self._rfd >= 0:
            c_close(self._rfd)
            self._rfd = -1
        for i in range(MAX_WORKERS):
            if self._wfd[i] >= 0:
                c_close(self._wfd[i])
                self._wfd[i] = -1
        if self._base != NULL:
            munmap(self._base, self._size)
            self._base = NULL

    def close(self):
        """Detach (a worker gives its index back) and unmap. Idempotent; the segment stays."""
        cdef uint64_t pid
        if self._base != NULL and self._index >= 0:
            pid = self._pid
            cs_cas(self._pidp(self._index), &pid, 0)
        self._release()

    def unlink(self):
        """Remove the segment file and the FIFOs (supervisor, at shutdown). Mappings stay valid."""
        _unlink_all(self._path, self._fifos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef inline int _check(self) except -1:
        if self._base == NULL:
            raise ValueError("SharedState is closed")
        return 0

    cdef inline int _check_worker(self) except -1:
        if self._base == NULL:
            raise ValueError("SharedState is closed")
        if self._index < 0:
            raise ValueError("only an attached worker can do this")
        return 0

    cdef inline int _check_connection(self, int transport) except -1:
        """uid_connect / uid_disconnect: an attached worker, and ``transport`` WS or AJAX."""
        self._check_worker()
        if transport != WS and transport != AJAX:
            raise ValueError("transport must be WS (0) or AJAX (1)")
        return 0

    @property
    def name(self):
        return self._name

    @property
    def path(self):
        return self._path

    @property
    def workers(self):
        return self._workers

    @property
    def worker_index(self):
        return None if self._index < 0 else self._index

    @property
    def uid_slots(self):
        return self._uid_slots

    @property
    def max_live(self):
        return self._max_live

    @property
    def max_key(self):
        return self._max_key

    @property
    def ring_bytes(self):
        return self._ring_bytes

    @property
    def max_payload(self):
        return self._max_payload

    @property
    def closed(self):
        return self._base == NULL

    # ---- uid registry ----------------------------------------------------------------------------

    cdef inline unsigned char* _slot(self, uint64_t s) noexcept:
        return self._slots + s * self._slot_stride

    cdef inline uint64_t* _col(self, int w, uint64_t s) noexcept:
        return self._cols + <uint64_t>w * self._uid_slots + s

    cdef int64_t _lookup(self, const unsigned char* k, uint32_t klen, uint64_t h, uint64_t* mout) noexcept:
        """The slot holding key k (LIVE when looked at; mout gets its meta), or -1."""
        cdef uint64_t mask = self._uid_slots - 1
        cdef uint64_t i = h & mask
        cdef uint64_t n = 0
        cdef uint64_t m1, m2, st
        cdef uint32_t h32 = <uint32_t>(h >> 32)
        cdef unsigned char* sp
        cdef int retries = 0
        while n < self._uid_slots:
            sp = self._slot(i)
            m1 = cs_ld_acq(<uint64_t*>sp)
            st = m1 >> 62
            if st == ST_EMPTY:
                return -1
            if (st == ST_LIVE and (<uint32_t*>(sp + S_HASH))[0] == h32
                    and (<uint32_t*>(sp + S_KLEN))[0] == klen and memcmp(sp + S_KEY, k, klen) == 0):
                cs_fence_acq()
                m2 = cs_ld_rlx(<uint64_t*>sp)
                if (m2 & GEN_MASK) == (m1 & GEN_MASK):
                    mout[0] = m2
                    return <int64_t>i
                retries += 1
                if retries < 1000:
                    continue  # the slot was reused while we read its key: look again
            i = (i + 1) & mask
            n += 1
        return -1

    cdef int _lock(self) except -1:
        cdef uint64_t* lp = <uint64_t*>(self._base + H_LOCK)
        cdef uint64_t mine = (self._pid << 8) | <uint64_t>(self._index + 1)
        cdef uint64_t exp
        cdef uint64_t spins = 0
        while True:
            exp = 0
            if cs_cas(lp, &exp, mine):
                return 0
            spins += 1
            if (spins & 63) == 0:
                sched_yield()
            if (spins & 4095) == 0 and _pid_dead(exp >> 8):
                if cs_cas(lp, &exp, mine):
                    cs_add(<uint64_t*>(self._base + H_LOCK_STEALS), 1)
                    return 0

    cdef void _unlock(self) noexcept:
        cs_st_rel(<uint64_t*>(self._base + H_LOCK), 0)

    cdef inline int _crash(self, int step) except -1:
        if self._crash_after == step:
            self._crash_after = 0
            raise _SimulatedCrash(step)
        return 0

    cdef int64_t _insert(self, const unsigned char* k, uint32_t klen, uint64_t h) except -2:
        """Under the insert lock: put key k in a fresh slot with only our holder bit. -1: it exists."""
        cdef uint64_t mask = self._uid_slots - 1
        cdef uint64_t home = h & mask
        cdef uint64_t i, n, m, st, s, target = 0, tm = 0
        cdef bint found = False
        cdef unsigned char* sp
        if self._lookup(k, klen, h, &m) >= 0:
            return -1
        # find the end of the probe chain; tombstones just before it go back to EMPTY
        n = 0
        i = home
        while n < self._uid_slots:
            if (cs_ld_acq(<uint64_t*>self._slot(i)) >> 62) == ST_EMPTY:
                break
            i = (i + 1) & mask
            n += 1
        if n < self._uid_slots:
            s = i
            while s != home:
                s = (s - 1) & mask
                m = cs_ld_acq(<uint64_t*>self._slot(s))
                st = m >> 62
                if st != ST_TOMB and st != ST_CLAIM:
                    break
                cs_cas(<uint64_t*>self._slot(s), &m, m & GEN_MASK)  # EMPTY, generation kept
        if cs_ld_rlx(<uint64_t*>(self._base + H_LIVE)) >= self._max_live:
            cs_add(<uint64_t*>(self._base + H_REFUSALS), 1)
            raise RegistryFull(f"uid registry full ({self._max_live} live uids of {self._uid_slots} slots)")
        n = 0
        i = home
        while n < self._uid_slots:
            m = cs_ld_acq(<uint64_t*>self._slot(i))
            if (m >> 62) != ST_LIVE:
                target = i
                tm = m
                found = True
                break
            i = (i + 1) & mask
            n += 1
        if not found:
            cs_add(<uint64_t*>(self._base + H_REFUSALS), 1)
            raise RegistryFull("uid registry has no free slot")
        sp = self._slot(target)
        m = ((tm + GEN_ONE) & GEN_MASK)
        if not cs_cas(<uint64_t*>sp, &tm, m | (ST_CLAIM << 62)):
            raise RuntimeError("uid registry: a free slot changed under the insert lock")
        cs_fence_rel()
        (<uint32_t*>(sp + S_HASH))[0] = <uint32_t>(h >> 32)
        (<uint32_t*>(sp + S_KLEN))[0] = klen
        memcpy(sp + S_KEY, k, klen)
        self._crash(3)
        cs_st_rel(<uint64_t*>sp, m | (ST_LIVE << 62) | (1ULL << self._index))
        # after the store: a crash between the two undercounts by one (the cap is soft), never over
        cs_add(<uint64_t*>(self._base + H_LIVE), 1)
        return <int64_t>target

    cdef int _key(self, object key, const unsigned char** kp, uint32_t* klen) except -1:
        if type(key) is not bytes:
            raise TypeError(f"uid keys are bytes, not {type(key).__name__}")
        cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
        if <uint64_t>n > self._max_key:
            raise ValueError(f"uid key of {n} bytes is longer than max_key={self._max_key}")
        kp[0] = <const unsigned char*>PyBytes_AS_STRING(key)
        klen[0] = <uint32_t>n
        return 0

    def uid_connect(self, key, int transport):
        """Count one more local connection of uid ``key`` (bytes) on ``transport`` (WS or AJAX).

        Call it for every connection that opens. True exactly when this made the uid go from nowhere in
        the broker to somewhere: the caller fires :chsk/uidport-open. (Internally: when this worker's
        own count for the uid goes 0 → 1 it sets its holder bit; True iff no other bit was set.)"""
        self._check_connection(transport)
        cdef const unsigned char* k
        cdef uint32_t klen
        self._key(key, &k, &klen)
        cdef uint64_t h = cs_hash(k, klen)
        cdef uint64_t inc = 1 if transport == WS else (1ULL << 32)
        cdef uint64_t bit = 1ULL << self._index
        cdef uint64_t m, g, c
        cdef uint64_t* col
        cdef int64_t s
        while True:
            s = self._lookup(k, klen, h, &m)
            if s >= 0:
                col = self._col(self._index, s)
                c = col[0]
                if c != 0:  # we hold it already: the slot cannot go away under us
                    if ((c >> (32 if transport == AJAX else 0)) & COUNT_MASK) == COUNT_MASK:
                        raise OverflowError("connection count overflow")
                    cs_st_rlx(col, c + inc)
                    self._changed()
                    return False
                g = m & GEN_MASK
                while (m >> 62) == ST_LIVE and (m & GEN_MASK) == g:
                    if cs_cas(<uint64_t*>self._slot(s), &m, m | bit):
                        self._crash(1)
                        cs_st_rlx(col, inc)
                        self._changed()
                        return (m & HOLDERS) == 0
                continue  # tombstoned (and maybe reused) meanwhile: start over
            self._lock()
            try:
                s = self._insert(k, klen, h)
            except _SimulatedCrash:
                raise  # a real crash would leave the lock held too
            except BaseException:
                self._unlock()
                raise
            self._unlock()
            if s >= 0:
                self._crash(2)
                cs_st_rlx(self._col(self._index, s), inc)
                self._changed()
                return True

    def uid_disconnect(self, key, int transport):
        """Count one local connection of ``key`` on ``transport`` gone. True exactly when the uid thereby
        left the whole broker: the caller fires :chsk/uidport-close. ValueError if not connected here."""
        self._check_connection(transport)
        cdef const unsigned char* k
        cdef uint32_t klen
        self._key(key, &k, &klen)
        cdef uint64_t h = cs_hash(k, klen)
        cdef int shift = 0 if transport == WS else 32
        cdef uint64_t bit = 1ULL << self._index
        cdef uint64_t m, nm, c
        cdef int64_t s = self._lookup(k, klen, h, &m)
        if s < 0:
            raise ValueError(f"uid {key!r} is not connected on worker {self._index}")
        cdef uint64_t* col = self._col(self._index, s)
        c = col[0]
        if ((c >> shift) & COUNT_MASK) == 0:
            raise ValueError(f"uid {key!r} has no {('ws', 'ajax')[transport]} connection on worker {self._index}")
        c -= (1ULL << shift)
        cs_st_rlx(col, c)
        if c != 0:
            self._changed()
            return False
        self._crash(1)
        left = self._drop_holder(<uint64_t>s, bit)
        self._changed()
        return left

    cdef void _changed(self) noexcept:
        cs_add(<uint64_t*>(self._base + H_CHANGES), 1)

    def changes(self):
        """A counter bumped after every connect, disconnect and reclaim anywhere in the broker: a connected-uids
        scan read after it saw value ``n`` stays true while ``changes()`` is still ``n``."""
        self._check()
        return cs_ld_acq(<uint64_t*>(self._base + H_CHANGES))

    cdef bint _drop_holder(self, uint64_t s, uint64_t bit) noexcept:
        """Clear a holder bit with CAS; tombstone the slot if that emptied it. True if it did."""
        cdef uint64_t* mp = <uint64_t*>self._slot(s)
        cdef uint64_t m = cs_ld_acq(mp)
        cdef uint64_t nm
        while (m >> 62) == ST_LIVE and (m & bit):
            nm = m & ~bit
            if (nm & HOLDERS) == 0:
                nm = (m & GEN_MASK) | (ST_TOMB << 62)
            if cs_cas(mp, &m, nm):
                if (nm >> 62) == ST_TOMB:
                    _dec_saturating(<uint64_t*>(self._base + H_LIVE))
                    return True
                return False
        return False

    def uid_counts(self, key):
        """(ws connections, ajax connections) of ``key`` over all workers."""
        self._check()
        cdef const unsigned char* k
        cdef uint32_t klen
        cdef uint64_t m, c, ws = 0, ajax = 0
        self._key(key, &k, &klen)
        cdef int64_t s = self._lookup(k, klen, cs_hash(k, klen), &m)
        if s < 0:
            return (0, 0)
        for w in range(self._workers):
            c = cs_ld_rlx(self._col(w, s))
            ws += c & COUNT_MASK
            ajax += c >> 32
        return (ws, ajax)

    def holders(self, key, int transport=ANY):
        """Bit mask of the workers with a connection of ``key`` on ``transport`` (WS, AJAX or ANY): where a
        batch for that uid must go."""
        self._check()
        cdef const unsigned char* k
        cdef uint32_t klen
        cdef uint64_t m, c, mask = 0
        self._key(key, &k, &klen)
        cdef int64_t s = self._lookup(k, klen, cs_hash(k, klen), &m)
        if s < 0:
            return 0
        for w in range(self._workers):
            c = cs_ld_rlx(self._col(w, s))
            if (transport == WS and c & COUNT_MASK) or (transport == AJAX and c >> 32) or (transport == ANY and c):
                mask |= 1ULL << w
        return mask

    def holds(self, key):
        """Whether any worker holds ``key`` (has at least one connection for it)."""
        self._check()
        cdef const unsigned char* k
        cdef uint32_t klen
        cdef uint64_t m
        self._key(key, &k, &klen)
        return self._lookup(k, klen, cs_hash(k, klen), &m) >= 0 and (m & HOLDERS) != 0

    def connected_uids(self, int transport=ANY):
        """Every uid with a connection of ``transport`` (WS, AJAX or ANY) somewhere: a full scan."""
        self._check()
        if transport not in (WS, AJAX, ANY):
            raise ValueError("transport must be WS, AJAX or ANY")
        cdef list out = []
        cdef uint64_t s, m1, m2, c, total
        cdef uint32_t klen
        cdef unsigned char* sp
        cdef int w
        for s in range(self._uid_slots):
            sp = self._slot(s)
            m1 = cs_ld_acq(<uint64_t*>sp)
            if (m1 >> 62) != ST_LIVE:
                continue
            if transport != ANY:
                total = 0
                for w in range(self._workers):
                    c = cs_ld_rlx(self._col(w, s))
                    total += (c & COUNT_MASK) if transport == WS else (c >> 32)
                if total == 0:
                    continue
            klen = (<uint32_t*>(sp + S_KLEN))[0]
            if klen > self._max_key:
                continue
            key = PyBytes_FromStringAndSize(<char*>sp + S_KEY, klen)
            cs_fence_acq()
            m2 = cs_ld_rlx(<uint64_t*>sp)
            if (m2 & GEN_MASK) == (m1 & GEN_MASK):
                out.append(key)
        return out

    def registry_stats(self):
        """live uids, tombstones, refusals (RegistryFull), insert-lock steals, capacity."""
        self._check()
        cdef uint64_t tombs = 0, s, m
        for s in range(self._uid_slots):
            m = cs_ld_rlx(<uint64_t*>self._slot(s)) >> 62
            if m == ST_TOMB or m == ST_CLAIM:
                tombs += 1
        return {
            "live": cs_ld_rlx(<uint64_t*>(self._base + H_LIVE)),
            "tombstones": tombs,
            "refusals": cs_ld_rlx(<uint64_t*>(self._base + H_REFUSALS)),
            "lock_steals": cs_ld_rlx(<uint64_t*>(self._base + H_LOCK_STEALS)),
            "max_live": self._max_live,
            "slots": self._uid_slots,
        }

    # ---- dead worker reclamation -----------------------------------------------------------------

    def reclaim_worker(self, int worker_index, *, bint force=False):
        """Take back everything worker ``worker_index`` owned after it exited (supervisor; the process
        must be gone, and reaped). Zeroes its registry column and holder bits and returns the uids that
        thereby left the whole broker, for a live worker to fire :chsk/uidport-close. Releases the insert
        lock if it held it, counts its uncommitted ring writes as abandoned, discards its inbox (those
        messages were for connections that died with it) and frees its index. Idempotent. ``force`` skips
        the liveness check (tests that simulate a crash in-process; a supervisor that knows better)."""
        self._check()
        if not 0 <= worker_index < self._workers:
            raise ValueError(f"worker_index {worker_index} out of range")
        if worker_index == self._index:
            raise ValueError("a worker cannot reclaim itself")
        cdef uint64_t pid = cs_ld_acq(self._pidp(worker_index))
        if pid != 0 and not force and not _pid_dead(pid):
            raise RuntimeError(f"worker {worker_index} (pid {pid}) is still alive")
        cdef uint64_t bit = 1ULL << worker_index
        cdef uint64_t s, m
        cdef uint64_t* col
        cdef unsigned char* sp
        cdef list left = []
        for s in range(self._uid_slots):
            col = self._col(worker_index, s)
            sp = self._slot(s)
            m = cs_ld_acq(<uint64_t*>sp)
            if cs_ld_rlx(col) == 0 and not ((m >> 62) == ST_LIVE and (m & bit)):
                continue
            cs_st_rlx(col, 0)
            if (m >> 62) == ST_LIVE and (m & bit):
                # our bit keeps the slot LIVE, so its key cannot change while we read it
                key = PyBytes_FromStringAndSize(<char*>sp + S_KEY, (<uint32_t*>(sp + S_KLEN))[0])
                if self._drop_holder(s, bit):
                    left.append(key)
        self._changed()
        cdef uint64_t* lp = <uint64_t*>(self._base + H_LOCK)
        m = cs_ld_acq(lp)
        if m != 0 and (m & 0xFF) == <uint64_t>(worker_index + 1):
            cs_cas(lp, &m, 0)
        self._settle_reservations(worker_index)
        cdef unsigned char* inbox = self._inbox(worker_index)
        cdef unsigned char* lane
        cdef uint64_t t, hd
        for p in range(self._lanes):
            lane = inbox + I_LANES + <uint64_t>p * self._lane_stride
            t = cs_ld_acq(<uint64_t*>(lane + L_TAIL))
            hd = cs_ld_rlx(<uint64_t*>(lane + L_HEAD))
            if t != hd:
                cs_bump(<uint64_t*>(lane + L_DISCARDED), self._count_records(lane, hd, t))
                cs_st_rel(<uint64_t*>(lane + L_HEAD), t)
        cs_st_rlx(<uint64_t*>(inbox + I_PARKED), 0)
        pid = cs_ld_acq(self._pidp(worker_index))
        if pid != 0 and (force or _pid_dead(pid)):
            cs_cas(self._pidp(worker_index), &pid, 0)
        return left

    cdef void _settle_reservations(self, int producer) noexcept:
        """Count and forget uncommitted writes by ``producer`` (dead, or this process re-attaching)."""
        cdef unsigned char* lane
        cdef uint64_t t
        for c in range(self._workers):
            lane = self._lane(c, producer)
            t = cs_ld_acq(<uint64_t*>(lane + L_TAIL))
            if cs_ld_rlx(<uint64_t*>(lane + L_RESERVED)) != t:
                cs_bump(<uint64_t*>(lane + L_ABANDONED), 1)
                cs_st_rlx(<uint64_t*>(lane + L_RESERVED), t)

    cdef uint64_t _count_records(self, unsigned char* lane, uint64_t h, uint64_t t) noexcept:
        cdef uint64_t mask = self._ring_bytes - 1
        cdef uint64_t n = 0, off, room, rec
        cdef unsigned char* p
        while h < t:
            off = h & mask
            room = self._ring_bytes - off
            if room < REC_HDR:
                h += room
                continue
            p = lane + L_DATA + off
            rec = (<uint32_t*>p)[0]
            if rec < REC_HDR or rec > room or (rec & 7):
                break
            if (<uint16_t*>(p + 4))[0] != PAD_KIND:
                n += 1
            h += rec
        return n

    # ---- delivery rings --------------------------------------------------------------------------

    cdef inline unsigned char* _inbox(self, int consumer) noexcept:
        return self._inboxes + <uint64_t>consumer * self._inbox_stride

    cdef inline unsigned char* _lane(self, int consumer, int producer) noexcept:
        return self._inbox(consumer) + I_LANES + <uint64_t>producer * self._lane_stride

    cdef int publish_raw(self, int dest, int kind, const unsigned char* k, Py_ssize_t klen,
                         const unsigned char* pl, Py_ssize_t plen, bint commit, bint count_drop=True) except -1:
        """Append one record to lane (dest ← us). 1: committed (or written, if not commit); 0: no room
        (counted as dropped when ``count_drop``). The caller has checked dest, kind and the sizes."""
        cdef unsigned char* lane = self._lane(dest, self._producer)
        cdef unsigned char* data = lane + L_DATA
        cdef uint64_t size = self._ring_bytes
        cdef uint64_t rec = (REC_HDR + <uint64_t>klen + <uint64_t>plen + 7) & ~7ULL
        cdef uint64_t t = cs_ld_rlx(<uint64_t*>(lane + L_TAIL))
        cdef uint64_t hd = cs_ld_acq(<uint64_t*>(lane + L_HEAD))
        cdef uint64_t off = t & (size - 1)
        cdef uint64_t room = size - off
        cdef uint64_t need = rec if rec <= room else rec + room
        cdef unsigned char* p
        if t + need - hd > size:
            if count_drop:
                cs_bump(<uint64_t*>(lane + L_DROPPED), 1)
            return 0
        cs_st_rlx(<uint64_t*>(lane + L_RESERVED), t + need)
        if rec > room:
            if room >= REC_HDR:
                p = data + off
                (<uint32_t*>p)[0] = <uint32_t>room
                (<uint16_t*>(p + 4))[0] = PAD_KIND
            off = 0
        p = data + off
        (<uint32_t*>p)[0] = <uint32_t>rec
        (<uint16_t*>(p + 4))[0] = <uint16_t>kind
        (<uint16_t*>(p + 6))[0] = <uint16_t>klen
        (<uint32_t*>(p + 8))[0] = <uint32_t>plen
        (<uint32_t*>(p + 12))[0] = 0
        if klen:
            memcpy(p + REC_HDR, k, klen)
        if plen:
            memcpy(p + REC_HDR + klen, pl, plen)
        if not commit:
            return 1
        cs_st_rel(<uint64_t*>(lane + L_TAIL), t + need)
        cs_bump(<uint64_t*>(lane + L_PUBLISHED), 1)
        self._wake(dest)
        return 1

    cdef void _wake(self, int dest) noexcept:
        cdef uint64_t* parked = <uint64_t*>(self._inbox(dest) + I_PARKED)
        cs_fence_sc()
        if cs_ld_rlx(parked) != 0 and cs_xchg(parked, 0) != 0:
            cs_add(<uint64_t*>(self._inbox(dest) + I_WAKES), 1)
            self._signal(dest)

    cdef void _signal(self, int dest) noexcept:
        cdef char one = 1
        cdef int fd
        cdef int attempt
        for attempt in range(2):
            fd = self._wfd[dest]
            if fd < 0:
                fd = c_open(self._fifo_c(dest), O_WRONLY | O_NONBLOCK)
                if fd < 0:
                    return  # ENXIO: nobody has the FIFO open, so nobody is waiting on it
                self._wfd[dest] = fd
            if c_write(fd, &one, 1) >= 0 or errno == EAGAIN:
                return  # a full FIFO is readable already
            c_close(fd)  # EPIPE: the reader went away; reopen once in case a new one is there
            self._wfd[dest] = -1

    cdef const char* _fifo_c(self, int dest) noexcept:
        return PyBytes_AS_STRING(self._fifo_bytes[dest])

    cdef int _payload_args(self, int dest, int kind, object key, object payload, Py_buffer* kb,
                           Py_buffer* pb) except -1:
        if not 0 <= kind <= MAX_KIND:
            raise ValueError(f"kind must be 0..{MAX_KIND}")
        PyObject_GetBuffer(key, kb, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(payload, pb, PyBUF_SIMPLE)
        except BaseException:
            PyBuffer_Release(kb)
            raise
        if <uint64_t>kb.len > self._max_key or pb.len > self._max_payload:
            PyBuffer_Release(kb)
            PyBuffer_Release(pb)
            raise ValueError(f"message too large: key {kb.len} bytes (max {self._max_key}), "
                             f"payload {pb.len} bytes (max {self._max_payload})")
        return 0

    cdef int _check_producer(self, int dest) except -1:
        self._check()
        if self._producer < 0:
            raise ValueError("an observer cannot publish")
        if not 0 <= dest < self._workers:
            raise ValueError(f"dest worker {dest} out of range")
        return 0

    def publish(self, int dest, int kind, key, payload, bint count_drop=True):
        """Put (kind, key, payload) in worker ``dest``'s inbox. False if that lane is full: the message
        is dropped and counted (policy: drop newest), or with ``count_drop=False`` only refused (the caller
        keeps it to try again, and counts it with :meth:`count_drops` if it gives up). key and payload are
        bytes-like."""
        self._check_producer(dest)
        cdef Py_buffer kb
        cdef Py_buffer pb
        cdef int r
        if type(key) is bytes and type(payload) is bytes and 0 <= kind <= MAX_KIND:
            if <uint64_t>PyBytes_GET_SIZE(key) <= self._max_key and PyBytes_GET_SIZE(payload) <= self._max_payload:
                return self.publish_raw(dest, kind, <const unsigned char*>PyBytes_AS_STRING(key),
                                        PyBytes_GET_SIZE(key), <const unsigned char*>PyBytes_AS_STRING(payload),
                                        PyBytes_GET_SIZE(payload), True, count_drop) == 1
        self._payload_args(dest, kind, key, payload, &kb, &pb)
        try:
            r = self.publish_raw(dest, kind, <const unsigned char*>kb.buf, kb.len,
                                 <const unsigned char*>pb.buf, pb.len, True, count_drop)
        finally:
            PyBuffer_Release(&kb)
            PyBuffer_Release(&pb)
        return r == 1

    def publish_all(self, int kind, key, payload):
        """``publish`` to every worker but this one (every worker, from the supervisor). Returns how many
        inboxes took it."""
        self._check_producer(0)
        cdef Py_buffer kb
        cdef Py_buffer pb
        cdef int n = 0
        self._payload_args(0, kind, key, payload, &kb, &pb)
        try:
            for d in range(self._workers):
                if d != self._index:
                    n += self.publish_raw(d, kind, <const unsigned char*>kb.buf, kb.len,
                                          <const unsigned char*>pb.buf, pb.len, True)
        finally:
            PyBuffer_Release(&kb)
            PyBuffer_Release(&pb)
        return n

    def count_drops(self, int dest, int n):
        """Count ``n`` messages for worker ``dest`` as dropped (in ``stats(dest)["dropped"]``): ones this
        producer held back after a refused ``publish(..., count_drop=False)`` and then gave up on."""
        self._check_producer(dest)
        if n > 0:
            cs_bump(<uint64_t*>(self._lane(dest, self._producer) + L_DROPPED), <uint64_t>n)

    def _reserve_only(self, int dest, int kind, key, payload):
        """TEST HOOK: write a record into the lane but never commit it, as a producer that dies between
        reserve and commit would. Not for production use."""
        self._check_producer(dest)
        cdef Py_buffer kb
        cdef Py_buffer pb
        self._payload_args(dest, kind, key, payload, &kb, &pb)
        try:
            return self.publish_raw(dest, kind, <const unsigned char*>kb.buf, kb.len,
                                    <const unsigned char*>pb.buf, pb.len, False) == 1
        finally:
            PyBuffer_Release(&kb)
            PyBuffer_Release(&pb)

    cdef Py_ssize_t _drain_lane(self, unsigned char* lane, list out, Py_ssize_t room_left) except -1:
        cdef uint64_t mask = self._ring_bytes - 1
        cdef uint64_t t = cs_ld_acq(<uint64_t*>(lane + L_TAIL))
        cdef uint64_t hd = cs_ld_rlx(<uint64_t*>(lane + L_HEAD))
        cdef uint64_t off, room, rec, klen, plen
        cdef unsigned char* p
        cdef Py_ssize_t n = 0
        if hd == t:
            return 0
        while hd < t and n < room_left:
            off = hd & mask
            room = self._ring_bytes - off
            if room < REC_HDR:
                hd += room
                continue
            p = lane + L_DATA + off
            rec = (<uint32_t*>p)[0]
            klen = (<uint16_t*>(p + 6))[0]
            plen = (<uint32_t*>(p + 8))[0]
            if rec < REC_HDR or rec > room or (rec & 7) or (
                    (<uint16_t*>(p + 4))[0] != PAD_KIND and REC_HDR + klen + plen > rec):
                # cannot happen with well-behaved producers; never loop on garbage
                cs_bump(<uint64_t*>(lane + L_DISCARDED), 1)
                hd = t
                break
            if (<uint16_t*>(p + 4))[0] != PAD_KIND:
                out.append(((<uint16_t*>(p + 4))[0],
                            PyBytes_FromStringAndSize(<char*>p + REC_HDR, <Py_ssize_t>klen),
                            PyBytes_FromStringAndSize(<char*>p + REC_HDR + klen, <Py_ssize_t>plen)))
                n += 1
            hd += rec
        cs_st_rel(<uint64_t*>(lane + L_HEAD), hd)
        cs_bump(<uint64_t*>(lane + L_CONSUMED), <uint64_t>n)
        return n

    cdef bint _pending(self) noexcept:
        cdef unsigned char* lane
        for p in range(self._lanes):
            lane = self._lane(self._index, p)
            if cs_ld_acq(<uint64_t*>(lane + L_TAIL)) != cs_ld_rlx(<uint64_t*>(lane + L_HEAD)):
                return True
        return False

    def drain(self, int max_messages=256):
        """Take up to ``max_messages`` messages, as (kind, key, payload) tuples, out of this worker's
        inbox: each producer's in the order it published them, producers taken round-robin.

        When fewer than ``max_messages`` come back the inbox was seen empty and the consumer is parked:
        the next publish makes ``wakeup_fd()`` readable. When exactly ``max_messages`` come back, call
        again soon (no wake-up is armed)."""
        self._check_worker()
        if max_messages <= 0:
            raise ValueError("max_messages must be positive")
        cdef list out = []
        cdef Py_ssize_t got
        cdef uint64_t* parked = <uint64_t*>(self._inbox(self._index) + I_PARKED)
        cdef int j
        if self._rfd < 0:
            self._open_reader()
        while True:
            got = 0
            for j in range(self._lanes):
                got += self._drain_lane(self._lane(self._index, (self._rr + j) % self._lanes), out,
                                        max_messages - len(out))
                if len(out) >= max_messages:
                    break
            self._rr = (self._rr + 1) % self._lanes
            if len(out) >= max_messages:
                cs_st_rlx(parked, 0)
                return out
            if got == 0:
                cs_st_sc(parked, 1)
                cs_fence_sc()
                if not self._pending():
                    return out
                cs_st_rlx(parked, 0)

    cdef _open_reader(self):
        fd = c_open(os.fsencode(self._fifos[self._index]), O_RDWR | O_NONBLOCK)
        if fd < 0:
            raise OSError(errno, f"cannot open wake-up FIFO {self._fifos[self._index]!r}: {os.strerror(errno)}")
        self._rfd = fd

    def wakeup_fd(self, worker_index=None):
        """This worker's wake-up fd (a FIFO read end, non-blocking): readable after a publish found this
        worker parked. Give it to ``loop.add_reader``; in the callback call ``clear_wakeup()`` and then
        ``drain()``. Only the owner can ask for it (``worker_index`` must be None or its own index)."""
        self._check_worker()
        if worker_index is not None and worker_index != self._index:
            raise ValueError("a worker can only wait on its own inbox")
        if self._rfd < 0:
            self._open_reader()
        return self._rfd

    def clear_wakeup(self):
        """Empty the wake-up FIFO (call before ``drain`` when the fd was readable). Returns bytes read."""
        self._check_worker()
        if self._rfd < 0:
            self._open_reader()
        cdef char buf[256]
        cdef Py_ssize_t n, total = 0
        while True:
            n = c_read(self._rfd, buf, 256)
            if n > 0:
                total += n
                continue
            if n < 0 and errno == EINTR:
                continue
            return total

    def _crash_after_step(self, int step):
        """TEST HOOK: make the next registry operation stop at ``step`` as if the process died there
        (raises _SimulatedCrash; 1: after the holder-bit CAS of a join or the column store of a leave,
        2: after an insert, before the column store, 3: inside an insert, before the slot goes LIVE,
        with the insert lock left held)."""
        self._crash_after = step

    def worker_pid(self, int worker_index):
        """The pid attached as worker ``worker_index`` (0: none since its reclaim)."""
        self._check()
        if not 0 <= worker_index < self._workers:
            raise ValueError(f"worker_index {worker_index} out of range")
        return cs_ld_acq(self._pidp(worker_index))

    def stats(self, int worker_index):
        """Counters of worker ``worker_index``'s inbox (sums over its lanes) and of what it published."""
        self._check()
        if not 0 <= worker_index < self._workers:
            raise ValueError(f"worker_index {worker_index} out of range")
        cdef unsigned char* lane
        cdef dict d = dict.fromkeys(("received", "dropped", "consumed", "discarded", "abandoned",
                                     "published", "dropped_out", "pending_bytes"), 0)
        for p in range(self._lanes):
            lane = self._lane(worker_index, p)
            d["received"] += cs_ld_rlx(<uint64_t*>(lane + L_PUBLISHED))
            d["dropped"] += cs_ld_rlx(<uint64_t*>(lane + L_DROPPED))
            d["consumed"] += cs_ld_rlx(<uint64_t*>(lane + L_CONSUMED))
            d["discarded"] += cs_ld_rlx(<uint64_t*>(lane + L_DISCARDED))
            d["pending_bytes"] += (cs_ld_acq(<uint64_t*>(lane + L_TAIL)) - cs_ld_acq(<uint64_t*>(lane + L_HEAD)))
        for c in range(self._workers):
            lane = self._lane(c, worker_index)
            d["published"] += cs_ld_rlx(<uint64_t*>(lane + L_PUBLISHED))
            d["dropped_out"] += cs_ld_rlx(<uint64_t*>(lane + L_DROPPED))
            d["abandoned"] += cs_ld_rlx(<uint64_t*>(lane + L_ABANDONED))
        cdef unsigned char* inbox = self._inbox(worker_index)
        d["wakes"] = cs_ld_rlx(<uint64_t*>(inbox + I_WAKES))
        d["parked"] = cs_ld_rlx(<uint64_t*>(inbox + I_PARKED))
        d["pid"] = cs_ld_rlx(self._pidp(worker_index))
        return d


def _unlink_all(path, fifos):
    for p in [path, *fifos]:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
