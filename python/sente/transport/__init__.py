"""Transports: the WebSocket bridge (picows in uvicorn's ws slot) and frame building."""
