"""Transit (json, json-verbose and msgpack) exactly as transit-clj 1.1.357 writes and reads it.

The Python face of the transit codec; each job is its own module:

* transit_json_writer: ``dumps``, transit-json and json-verbose text, byte for byte transit-clj's;
* transit_msgpack_writer: ``dumps_msgpack``, transit over MessagePack;
* transit_json_reader / transit_msgpack_reader: ``loads`` / ``loads_msgpack``, over transit_reader's
  shared transit layer (read cache, tags, scalars);
* transit_rules: what the writers and reader share (cache codes, ``URI``, ``WriteHandler``, which values
  are written as one string).
"""

from csente.transit_json_reader import loads
from csente.transit_json_writer import dumps
from csente.transit_msgpack_reader import loads_msgpack
from csente.transit_msgpack_writer import dumps_msgpack
from csente.transit_rules import URI, WriteHandler

__all__ = ["URI", "WriteHandler", "dumps", "dumps_msgpack", "loads", "loads_msgpack"]
