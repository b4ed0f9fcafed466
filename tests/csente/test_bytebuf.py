"""The writers' shared output buffer (csente/bytebuf.pxd), through every writer that builds in it: it grows
past any size in one value, is reused for the next one, and gives back a big message's memory without
losing a byte of either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from csente import edn, msgpack, transit
from csente.types import Keyword

WRITERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "edn": (edn.dumps, edn.loads),
    "transit-json": (transit.dumps, transit.loads),
    "transit-json-verbose": (lambda v: transit.dumps(v, verbose=True), transit.loads),
    "msgpack": (msgpack.dumps, msgpack.loads),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_value_larger_than_any_buffer_and_the_small_one_after_it_are_written_whole(writer: str) -> None:
    dumps, loads = WRITERS[writer]
    small = [Keyword("a"), 1, "x"]
    big = ["é" * 700_000, [i * 1.5 for i in range(20_000)], {Keyword(f"k{i}"): "v" * 100 for i in range(2000)}]
    before = dumps(small)
    for _ in range(2):  # the second big value starts from the buffer the first one gave back
        assert loads(dumps(big)) == big
        assert dumps(small) == before
    assert loads(before) == small


@pytest.mark.parametrize("writer", WRITERS)
def test_a_value_written_from_inside_another_write_gets_its_own_buffer(writer: str) -> None:
    dumps, loads = WRITERS[writer]
    nested = []

    class Late(Mapping[str, str]):
        """A map whose iteration writes another value while the outer write is half done."""

        def __iter__(self) -> Iterator[str]:
            nested.append(dumps(["inner" * 1000]))
            return iter(["outer"])

        def __getitem__(self, key: str) -> str:
            return "o" * 5000

        def __len__(self) -> int:
            return 1

    assert loads(dumps([Late()])) == [{"outer": "o" * 5000}]
    assert nested
    assert all(loads(text) == ["inner" * 1000] for text in nested)
