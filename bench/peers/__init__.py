"""Servers the fan-out benchmark (:mod:`sente.bench`, ``sente bench``) compares csente with.

Each one broadcasts what a publisher client sends to every connected client; they differ only in the stack:

* :mod:`bench.peers.picows_server`: raw picows, one ``send`` per client per message (the practical ceiling of a
  Python WebSocket server);
* :mod:`bench.peers.socketio_app`: python-socketio on uvicorn (what a Python developer reaches for by default).

csente's own bench app ships with the package (:mod:`sente.bench.app`).
"""
