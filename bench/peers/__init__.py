"""Servers the fan-out benchmark (:mod:`bench.fanout`) compares csente with, plus csente's own bench app.

Each one broadcasts what a publisher client sends to every connected client; they differ only in the stack:

* :mod:`bench.peers.picows_server`: raw picows, one ``send`` per client per message (the practical ceiling of a
  Python WebSocket server);
* :mod:`bench.peers.socketio_app`: python-socketio on uvicorn (what a Python developer reaches for by default);
* :mod:`bench.peers.sente_app`: the csente app served by ``sente serve`` (one process, or ``--workers N``).
"""
