"""Sente's server protocol without I/O: bytes, requests and clock readings in; actions out.

Nothing here touches a socket, a thread or an event loop. The transports feed it what happened
(a WebSocket opened, a frame arrived, an Ajax poll came in, the clock moved) and carry out the
actions it emits (write these bytes, answer this request, close that connection, route that event).
"""
