"""mockllm.lazyseq: a sequence made block by block, only as far as it is read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mockllm.lazyseq import LazyList, Repeat, float_store


def counting_blocks(log: list[int], size: int = 3) -> Iterator[list[int]]:
    start = 0
    while True:
        log.append(start)
        yield list(range(start, start + size))
        start += size


def test_items_are_made_only_as_far_as_read() -> None:
    log: list[int] = []
    seq = LazyList(10, counting_blocks(log))
    assert len(seq) == 10 and seq.made == 0 and log == []
    assert seq[0] == 0 and seq.made == 3
    assert seq[1:5] == [1, 2, 3, 4] and seq.made == 6
    assert seq[-1] == 9 and seq.made == 10
    assert log == [0, 3, 6, 9]  # the last block was cut to the length
    assert list(seq) == list(range(10))


def test_behaves_as_a_read_only_sequence() -> None:
    seq = LazyList(5, counting_blocks([], size=2))
    assert seq == [0, 1, 2, 3, 4] and seq == (0, 1, 2, 3, 4) and seq != [0, 1]
    assert seq[::2] == [0, 2, 4] and seq[3:100] == [3, 4] and seq[4:1] == []
    assert 3 in seq and seq.index(2) == 2
    with pytest.raises(IndexError):
        seq[5]
    with pytest.raises(IndexError):
        seq[-6]
    assert not LazyList(0, counting_blocks([]))


def test_iterating_makes_blocks_as_it_goes() -> None:
    log: list[int] = []
    seq = LazyList(9, counting_blocks(log))
    it = iter(seq)
    assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
    assert log == [0, 3]


def test_on_complete_gets_the_whole_store_once() -> None:
    done: list[list[int]] = []
    seq = LazyList(4, counting_blocks([]), on_complete=lambda made: done.append(list(made)))
    seq[1]
    assert done == []
    seq[3]
    seq[0:4]
    assert done == [[0, 1, 2, 3]]


def test_blocks_that_run_out_say_so() -> None:
    seq = LazyList(5, iter([[1, 2]]))
    with pytest.raises(ValueError, match="ran out at 2 of 5"):
        seq[4]


def test_floats_keep_their_exact_value_in_a_float_store() -> None:
    values = [0.1, 1 / 3, 2.000000000000001e-3]
    seq = LazyList(3, iter([values]), float_store())
    assert list(seq) == values and seq[0:3] == values


def test_repeat_is_one_item_many_times() -> None:
    seq = Repeat(0.25, 4)
    assert len(seq) == 4 and seq[0] == seq[-1] == 0.25
    assert seq[1:3] == [0.25, 0.25] and seq[::3] == [0.25, 0.25] and seq[5:9] == []
    assert seq == [0.25] * 4 and seq != [0.25] * 3 and list(seq) == [0.25] * 4
    with pytest.raises(IndexError):
        seq[4]
    assert not Repeat(1, 0)
