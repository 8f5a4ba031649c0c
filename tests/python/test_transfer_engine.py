"""kvoffload.TransferEngine from Python over the host engine: GPU blocks into its own host
slots and back, block-major, and misuse named."""

from __future__ import annotations

import ctypes
import os

import pytest

from kvoffload import LogicError, TransferState, make_transfer_engine

LAYERS, BLOCKS, CHUNK = 2, 8, 256


@pytest.fixture
def kv():
    tensors = [ctypes.create_string_buffer(os.urandom(BLOCKS * CHUNK), BLOCKS * CHUNK) for _ in range(LAYERS)]
    layout = [(ctypes.addressof(t), CHUNK, CHUNK, layer) for layer, t in enumerate(tensors)]
    return tensors, layout


def block(tensor, b):
    return tensor.raw[b * CHUNK : (b + 1) * CHUNK]


def test_blocks_round_trip_through_the_engines_host_slots(kv):
    tensors, layout = kv
    engine = make_transfer_engine(layout, BLOCKS, host_slots=4, force_host=True)
    assert engine.is_host_fallback and engine.num_host_slots == 4
    assert engine.host_slot_bytes == LAYERS * CHUNK
    before = [[block(t, b) for b in range(BLOCKS)] for t in tensors]
    job = engine.store([6, 1], [2, 0])
    assert engine.wait(job).state == TransferState.DONE
    # Host slot s holds each tensor's chunk at tensor_offset(t).
    host = engine.host_address
    for slot, gpu_block in ((2, 6), (0, 1)):
        for t in range(LAYERS):
            at = host + slot * engine.host_slot_bytes + engine.tensor_offset(t)
            assert ctypes.string_at(at, CHUNK) == before[t][gpu_block]
    job = engine.load([3, 4], [0, 2])
    status = engine.wait(job)
    assert status.state == TransferState.DONE and status.error == ""
    for t, tensor in enumerate(tensors):
        assert block(tensor, 3) == before[t][1] and block(tensor, 4) == before[t][6]


def test_misuse_names_the_offending_value(kv):
    _, layout = kv
    engine = make_transfer_engine(layout, BLOCKS, host_slots=2, force_host=True)
    with pytest.raises(LogicError, match="9"):
        engine.store([9], [0])  # no GPU block 9
    with pytest.raises(LogicError, match="5"):
        engine.store([0], [5])  # no host slot 5
    with pytest.raises(LogicError):
        engine.poll(12345)  # no such job
    with pytest.raises(LogicError, match="host_slots is 0"):
        make_transfer_engine(layout, BLOCKS, host_slots=0, force_host=True)
