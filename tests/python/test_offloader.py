"""The Offloader from Python over the host engine: bytes through host slots and back."""

from __future__ import annotations

import ctypes
import os

import pytest

from kvoffload import LogicError, StoreOutcome, make_offloader

LAYERS, BLOCKS, CHUNK = 2, 16, 200  # 200: not a multiple of 16


@pytest.fixture
def kv():
    """K and V per layer, as host memory standing in for the GPU (the host engine's case)."""
    tensors = [ctypes.create_string_buffer(BLOCKS * CHUNK) for _ in range(2 * LAYERS)]
    layout = [(ctypes.addressof(t), CHUNK, CHUNK, i // 2) for i, t in enumerate(tensors)]
    return tensors, layout


def block(tensor, b):
    return tensor.raw[b * CHUNK:(b + 1) * CHUNK]


def test_blocks_round_trip_through_the_host_slots(kv):
    tensors, layout = kv
    for t in tensors:
        ctypes.memmove(t, os.urandom(BLOCKS * CHUNK), BLOCKS * CHUNK)
    o = make_offloader("lru", layout, BLOCKS, host_slots=8, force_host=True)
    assert "host engine" in o.description

    ticket = o.store([10, 11, 12, 13], [0, 1, 2, 3])
    assert ticket.outcome == StoreOutcome.SUBMITTED
    assert ticket.stored == [10, 11, 12, 13]
    assert o.lookup([10]) == 0  # pending until the job is reported
    done = o.wait(ticket.job)
    assert done.ok and done.is_store and done.hashes == [10, 11, 12, 13]
    assert o.lookup([10, 11, 12, 13, 99]) == 4

    for t in tensors:  # poison the destination blocks
        ctypes.memset(ctypes.addressof(t) + 8 * CHUNK, 0xAB, 4 * CHUNK)
    job = o.load([13, 11, 10, 12], [8, 9, 10, 11])
    assert o.stats().pinned == 4
    finished = o.wait_all()
    assert [j.job for j in finished] == [job] and finished[0].ok
    assert finished[0].gpu_blocks == [8, 9, 10, 11]
    assert o.stats().pinned == 0
    for t in tensors:
        assert [block(t, b) for b in (8, 9, 10, 11)] == [block(t, b) for b in (3, 1, 0, 2)]
    text = o.metrics_text()
    assert "kvoffload_loads_total" in text
    assert 'kvoffload_offloader_job_latency_seconds_count{manager="default",job="store"} 1\n' in text
    assert 'kvoffload_offloader_job_latency_seconds_bucket{manager="default",job="load",le="+Inf"} 1\n' in text
    stats = o.offloader_stats()
    assert stats["bytes_loaded"] == 4 * 2 * LAYERS * CHUNK
    latency = stats["store_latency"]
    assert latency["count"] == 1 and sum(latency["buckets"]) == 1
    assert len(latency["buckets"]) == len(latency["bounds_seconds"]) + 1


def test_metrics_text_takes_managers_and_offloaders_together(kv):
    from kvoffload import make_manager, metrics_text

    _, layout = kv
    o = make_offloader("lru", layout, BLOCKS, host_slots=2, force_host=True)
    o.wait(o.store([1], [0]).job)
    text = metrics_text({"gpu": o, "other": make_manager("arc", 4)})
    assert 'kvoffload_capacity_blocks{manager="gpu"} 2\n' in text
    assert 'kvoffload_capacity_blocks{manager="other"} 4\n' in text
    assert 'kvoffload_offloader_job_latency_seconds_count{manager="gpu",job="store"} 1\n' in text
    assert 'manager="other",job=' not in text
    with pytest.raises(TypeError, match="'x' is a <class 'int'>, neither a Manager nor an Offloader"):
        metrics_text({"x": 3})  # names the key and the type


def test_present_blocks_are_not_stored_again_and_a_full_cache_evicts(kv):
    _, layout = kv
    o = make_offloader("lru", layout, BLOCKS, host_slots=2, force_host=True)
    first = o.store([1, 2], [0, 1])
    o.wait(first.job)
    again = o.store([1, 2], [0, 1])
    assert again.outcome == StoreOutcome.NOTHING_TO_STORE
    third = o.store([3], [2])
    assert third.evicted == [1] and third.stored == [3]
    o.wait_all()
    assert o.lookup([2]) == 1 and o.lookup([1]) == 0
    assert o.jobs_in_flight == 0


def test_misuse_raises_the_cpp_message_and_leaves_nothing_pinned(kv):
    _, layout = kv
    o = make_offloader("arc", layout, BLOCKS, host_slots=4, force_host=True)
    with pytest.raises(LogicError, match="block hash 77 is not stored"):
        o.load([77], [0])
    o.wait(o.store([5], [0]).job)
    with pytest.raises(LogicError, match=r"needs 1 GPU blocks \(1 per hash\), got 2"):
        o.load([5], [0, 1])  # one GPU block per hash here
    assert o.stats().pinned == 0
    with pytest.raises(LogicError, match="tiered"):
        make_offloader("tiered", layout, BLOCKS, host_slots=4, force_host=True)
    with pytest.raises(LogicError):
        make_offloader("lru", [(0, CHUNK, CHUNK, 0)], BLOCKS, host_slots=4)  # null base
