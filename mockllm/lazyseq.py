"""A sequence of known length whose items are made on first use, block by block (pure).

An answer's tokens and due times are decided by seeded generators that run in order; a
stream needs the first few of them at once and the rest only as its schedule reaches them.
:class:`LazyList` runs such a generator only as far as an index or a slice asks, keeps what it
made (a list, or an ``array`` of doubles for times: 8 bytes an item instead of a float
object), and behaves as a read-only sequence otherwise.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, MutableSequence, Sequence
from typing import TypeVar, overload

__all__ = ["LazyList", "Repeat", "float_store"]

T = TypeVar("T")


class LazyList(Sequence[T]):
    """``length`` items taken from ``blocks`` (iterables of items, in order) when first read.

    ``blocks`` must give at least ``length`` items in all; more are ignored. ``store`` keeps
    them (a new list by default; ``array("d")`` for floats). ``on_complete`` is called with
    the store once all ``length`` items are made.
    """

    __slots__ = ("_blocks", "_length", "_made", "_on_complete")

    def __init__(
        self,
        length: int,
        blocks: Iterator[Iterable[T]],
        store: MutableSequence[T] | None = None,
        on_complete: Callable[[MutableSequence[T]], None] | None = None,
    ):
        self._length = max(0, length)
        self._blocks: Iterator[Iterable[T]] | None = blocks
        self._made: MutableSequence[T] = [] if store is None else store
        self._on_complete = on_complete
        if self._length == 0:
            self._finish()

    def _finish(self) -> None:
        self._blocks = None
        del self._made[self._length :]
        if self._on_complete is not None:
            self._on_complete(self._made)
            self._on_complete = None

    def _fill(self, upto: int) -> None:
        """Make items until there are at least ``upto`` (at most ``length``)."""
        made = self._made
        blocks = self._blocks
        if blocks is None:
            return
        target = min(upto, self._length)
        while len(made) < target:
            block = next(blocks, None)
            if block is None:
                raise ValueError(f"LazyList: its blocks ran out at {len(made)} of {self._length}")
            made.extend(block)
        if len(made) >= self._length:
            self._finish()

    @property
    def made(self) -> int:
        """How many items exist so far (for tests: the laziness is observable)."""
        return min(len(self._made), self._length)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step != 1:
                self._fill(self._length)
            else:
                self._fill(stop)
            made = self._made
            if isinstance(made, list):
                return made[start:stop:step]
            return list(made[start:stop:step])
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("LazyList index out of range")
        self._fill(index + 1)
        return self._made[index]

    def __iter__(self) -> Iterator[T]:
        i = 0
        while i < self._length:
            if i >= len(self._made):
                self._fill(i + 1)
            stop = min(len(self._made), self._length)
            while i < stop:
                yield self._made[i]
                i += 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyList({self.made} of {self._length} made)"


class Repeat(Sequence[T]):
    """``length`` times the same item (every token of an ``instant`` answer is due at once)."""

    __slots__ = ("_length", "value")

    def __init__(self, value: T, length: int):
        self.value = value
        self._length = max(0, length)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self.value] * len(range(*index.indices(self._length)))
        if not -self._length <= index < self._length:
            raise IndexError("Repeat index out of range")
        return self.value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(item == self.value for item in other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Repeat({self.value!r}, {self._length})"


def float_store() -> MutableSequence[float]:
    """A store for floats that keeps 8 bytes an item (exactly the same doubles)."""
    return array("d")
