"""Transit (json, json-verbose and msgpack) exactly as transit-clj 1.1.357 writes and reads it."""

from csente.transit_json_reader import loads as loads
from csente.transit_json_writer import dumps as dumps
from csente.transit_msgpack_reader import loads_msgpack as loads_msgpack
from csente.transit_msgpack_writer import dumps_msgpack as dumps_msgpack
from csente.transit_rules import URI as URI
from csente.transit_rules import WriteHandler as WriteHandler

__all__ = ["URI", "WriteHandler", "dumps", "dumps_msgpack", "loads", "loads_msgpack"]
