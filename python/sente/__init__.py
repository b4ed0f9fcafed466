"""Sente for Python: a realtime channel-socket server and client, wire-compatible with Clojure's Sente."""

__version__ = "0.1.0"
