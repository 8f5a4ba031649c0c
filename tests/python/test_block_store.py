"""kvoffload.BlockStore from Python: the disk tier's store with buffers passed by the buffer
protocol (what kvoffload.vllm's disk tier uses on vLLM's CPU-tier memory)."""

from __future__ import annotations

import mmap

import pytest

import kvoffload

BLOCK = 4096


def block(i: int) -> bytes:
    return bytes([i % 251]) * 100 + i.to_bytes(8, "little") * ((BLOCK - 100) // 8) + bytes((BLOCK - 100) % 8)


@pytest.fixture
def directory(tmp_path):
    return str(tmp_path)


def open_store(directory, **options):
    options.setdefault("direct_io", False)
    return kvoffload.BlockStore([directory], BLOCK, 64 * BLOCK, **options)


def test_blocks_round_trip_between_buffers_and_disk_slots(directory):
    with open_store(directory) as store:
        source = bytearray(b"".join(block(i) for i in range(4)))
        job = store.submit_write([5, 6, 9], [50, 60, 90], source, [0, 1, 3])
        assert store.wait(job).state == kvoffload.DiskJobState.DONE
        target = mmap.mmap(-1, 8 * BLOCK)  # page-aligned, like vLLM's CPU tier
        job = store.submit_read([9, 5], [90, 50], target, [7, 2])
        status = store.wait(job)
        assert status.state == kvoffload.DiskJobState.DONE and status.lost == []
        assert target[7 * BLOCK : 8 * BLOCK] == block(3) and target[2 * BLOCK : 3 * BLOCK] == block(0)
        stats = store.stats()
        assert stats["bytes_written"] == 3 * BLOCK and stats["bytes_read"] == 2 * BLOCK
        target.close()


def test_a_block_read_under_the_wrong_hash_is_lost_not_served(directory):
    with open_store(directory) as store:
        store.wait(store.submit_write([1], [11], bytearray(block(1)), [0]))
        target = bytearray(BLOCK)
        status = store.wait(store.submit_read([1], [12], target, [0]))
        assert status.lost == [1] and store.stats()["blocks_lost"] == 1


def test_a_stride_spaces_the_buffer_slots(directory):
    with open_store(directory) as store:
        stride = BLOCK + 512
        source = bytearray(3 * stride)
        source[2 * stride : 2 * stride + BLOCK] = block(7)
        store.wait(store.submit_write([0], [70], source, [2], stride))
        target = bytearray(2 * stride)
        store.wait(store.submit_read([0], [70], target, [1], stride))
        assert target[stride : stride + BLOCK] == block(7)


def test_misuse_names_the_offending_value_and_changes_nothing(directory):
    store = open_store(directory)
    buffer = bytearray(2 * BLOCK)
    with pytest.raises(kvoffload.LogicError, match="buffer slot 2 .* past the buffer's 8192 bytes"):
        store.submit_write([0], [1], buffer, [2])
    with pytest.raises(kvoffload.LogicError, match="disk slot 64 is out of range"):
        store.submit_write([64], [1], buffer, [0])
    with pytest.raises(kvoffload.LogicError, match="2 slots, 1 hashes and 2 buffer slots"):
        store.submit_write([0, 1], [1], buffer, [0, 1])
    with pytest.raises(kvoffload.LogicError, match="stride 100 is below the block size 4096"):
        store.submit_write([0], [1], buffer, [0], 100)
    with pytest.raises(TypeError, match="writable"):
        store.submit_read([0], [1], bytes(BLOCK), [0])
    with pytest.raises(kvoffload.LogicError, match="backend 'nvme'"):
        kvoffload.BlockStore([directory + "/x"], BLOCK, 64 * BLOCK, backend="nvme")
    assert store.jobs_outstanding == 0 and store.stats()["write_jobs"] == 0
    store.close()
    with pytest.raises(kvoffload.LogicError, match="used after close"):
        store.stats()


def test_a_buffer_stays_exported_until_its_job_is_reported(directory):
    with open_store(directory) as store:
        buffer = bytearray(block(3))
        job = store.submit_write([3], [33], buffer, [0])
        with pytest.raises(BufferError):
            buffer.extend(b"x")  # resizing would move the bytes under the I/O
        store.wait(job)
        buffer.extend(b"x")  # free again


def test_a_persistent_store_recovers_its_blocks_and_locks_its_directory(directory):
    first = open_store(directory, persistent=True)
    first.wait(first.submit_write([2, 4], [20, 40], bytearray(block(2) + block(4)), [0, 1]))
    with pytest.raises(kvoffload.RuntimeFailure, match="lock|another"):
        open_store(directory, persistent=True)
    first.close()
    with open_store(directory, persistent=True) as second:
        assert second.recovered == [(2, 20), (4, 40)]
        target = bytearray(BLOCK)
        assert second.wait(second.submit_read([4], [40], target, [0])).lost == []
        assert target == block(4)


def test_close_waits_for_a_call_another_thread_is_making(directory):
    import threading
    import time

    store = open_store(directory, completion_delay_us=300_000)
    job = store.submit_write([0], [1], bytearray(block(0)), [0])
    outcome = {}

    def waiter():
        try:
            outcome["state"] = store.wait(job).state  # the GIL is released meanwhile
        except Exception as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)  # the waiter is inside wait()
    store.close()  # must not destroy the store under it
    thread.join()
    assert outcome == {"state": kvoffload.DiskJobState.DONE}
    with pytest.raises(kvoffload.LogicError, match="used after close"):
        store.poll(job)
