"""csente: the Cython hot path of Sente for Python (codecs, envelopes, frames, shared memory).

The public, typed API lives in the ``sente`` package; import from there.
"""
