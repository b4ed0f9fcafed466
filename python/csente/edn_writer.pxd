# What the EDN reader takes from the writer (edn_writer.pyx).

cdef enum:
    # The deepest nesting either direction will go: both are recursive C code, using up to ~0.5 KB of C
    # stack per level, and a C stack is finite (8 MB on a main or default Linux thread).
    HARD_MAX_DEPTH = 10000
