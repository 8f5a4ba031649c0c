"""kvoffload's disk tier inside vLLM 0.33: vLLM's own TieringOffloadingManager, built from
kv_connector_extra_config by its TieringOffloadingSpec with our tier as a ``secondary_tiers``
entry loaded by module path, driven as the scheduler drives it. scripts/vllm-test.sh runs these
in the venv that has vLLM; without vLLM the module is skipped."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vllm", reason="vLLM 0.33 is not installed (scripts/vllm-test.sh installs it)")

from conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import vllm_disk_tier as bench  # noqa: E402
import vllm_policy  # noqa: E402

import kvoffload  # noqa: E402
import kvoffload.vllm as kvllm  # noqa: E402
import kvoffload.vllm_disk_tier as disk_tier  # noqa: E402
from vllm.v1.kv_offload.base import LookupResult, make_offload_key  # noqa: E402

BLOCK = vllm_policy.KV_BYTES_PER_BLOCK
_engines = itertools.count()


def tier_config(directory, capacity_blocks=64, **options):
    # Capacity in bytes: the store's slots plus its record file and headers.
    return dict(bench.TIER, root_dir=str(directory), capacity_bytes=capacity_blocks * (BLOCK + 64) + 3 * 4096,
                **options)


def harness(directory, cpu_chunks=8, **options):
    return bench.TieredHarness(cpu_chunks, [tier_config(directory, **options)],
                               f"kvoffload-test-{os.getpid()}-{next(_engines)}")


def keys_of(*names):
    return [make_offload_key(n.encode().ljust(32, b"."), 0) for n in names]


def store_each(h, keys):
    """One request per key, each left to reach the disk (the cascade pins its CPU chunk until
    then, and the CPU tier has only 8)."""
    for key in keys:
        assert h.store([key]) == [key]
        h.settle()


def push_out_of_cpu(h, count=16):
    """Store enough other blocks that the CPU tier (8 chunks) evicts everything it held."""
    fillers = keys_of(*(f"filler{next(_engines)}-{i}" for i in range(count)))
    for key in fillers:
        h.store([key])
        h.settle()  # the cascade to disk pins the CPU chunk until it is written
    return fillers


@pytest.fixture
def disk(tmp_path):
    return tmp_path / "disk"


@pytest.fixture(autouse=True)
def _make_disk(disk):
    disk.mkdir()


def test_the_tier_is_built_from_vllms_config_by_module_path(disk):
    h = harness(disk)
    try:
        (tier,) = h.tiers
        assert isinstance(tier, kvllm.KvoffloadDiskTier)
        assert tier.store.block_bytes == BLOCK and tier.num_slots >= 64
        # Namespaced by the run's model and layout, beside a config vLLM's fs tier would write.
        (namespace,) = list(disk.iterdir())
        assert namespace.name.startswith("mooncake-trace_") and namespace.name.endswith(".kvoffload")
        assert (namespace / "config.json").exists() and (namespace / disk_tier.KEY_FILE).exists()
    finally:
        h.shutdown()


def test_bytes_round_trip_through_the_disk_tier(disk):
    h = harness(disk)
    try:
        keys = keys_of("a", "b", "c")
        assert h.store(keys) == keys
        h.settle()
        push_out_of_cpu(h)
        context = h.context(keys)
        with h.manager.lock:
            h.manager.on_new_request(context)
            prefix, results = h.lookup_prefix(keys, context)
        assert prefix == 0 and all(r is LookupResult.HIT_PENDING for r in results), results
        h.settle()
        with h.manager.lock:
            prefix, _ = h.lookup_prefix(keys, context)
            assert prefix == 3
            h.load(keys, context)
            h.manager.on_request_finished(context)
        assert h.loaded == 3 and h.wrong_bytes == 0
        assert h.tiers[0].store.stats()["bytes_read"] >= 3 * BLOCK
    finally:
        h.shutdown()


@pytest.mark.parametrize("backend", ["auto", "thread_pool"])
def test_both_io_back_ends_carry_the_bytes(disk, backend):
    # auto is io_uring wherever the kernel allows it (the store's description says which).
    h = harness(disk, backend=backend)
    try:
        keys = keys_of(*(f"k{i}" for i in range(5)))
        store_each(h, keys)
        push_out_of_cpu(h)
        cpu, promoted, _ = h.request(keys)
        assert (cpu, promoted) == (0, 5) and h.wrong_bytes == 0 and h.loaded == 5
        if backend == "thread_pool":
            assert "io_uring" not in h.tiers[0].store.description
    finally:
        h.shutdown()


def test_capacity_is_held_and_the_recent_blocks_stay(disk):
    h = harness(disk, capacity_blocks=64)
    try:
        tier = h.tiers[0]
        keys = keys_of(*(f"block{i}" for i in range(300)))
        for key in keys:
            assert h.store([key]) == [key]
            h.settle()
        assert tier.num_resident == tier.num_slots
        assert tier.num_slots * BLOCK <= tier_config(disk)["capacity_bytes"] < (tier.num_slots + 4) * BLOCK
        assert tier.counters["blocks_evicted"] == 300 - tier.num_slots
        files = [p for p in disk.rglob("kvoffload-blocks*") if p.is_file()]
        assert files and sum(p.stat().st_size for p in files) <= tier_config(disk)["capacity_bytes"]
        # The newest blocks are on disk and come back right; the oldest are gone.
        push_out_of_cpu(h)
        cpu, promoted, _ = h.request(keys[-8:])
        assert promoted == 8 and h.wrong_bytes == 0
        with h.manager.lock:
            assert tier.lookup(keys[0], h.context(keys[:1])) is LookupResult.MISS
    finally:
        h.shutdown()


def data_file(disk):
    (path,) = [p for p in disk.rglob("kvoffload-blocks.data")]
    return path


def corrupt(disk, key):
    """Flip one byte of ``key``'s block in the tier's data file (found by its pattern)."""
    path = data_file(disk)
    raw = bytearray(path.read_bytes())
    at = raw.find(bench.pattern(key, BLOCK).tobytes())
    assert at >= 0, "the block's bytes are not in the data file"
    raw[at + 100] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_corrupted_block_is_refused_and_dropped(disk):
    h = harness(disk, direct_io=False)  # buffered, so the rewritten file is what is read
    try:
        keys = keys_of("good0", "bad", "good1")
        h.store(keys)
        h.settle()
        push_out_of_cpu(h)
        corrupt(disk, keys[1])
        tier = h.tiers[0]
        cpu, promoted, stored = h.request(keys)
        # The bad block fails its promotion, so the loaded prefix ends before it: the request
        # loads good0 only (bytes checked) and recomputes and stores the rest.
        assert (h.loaded, h.wrong_bytes) == (1, 0)
        assert promoted == 2 and stored == 1  # good1 came up; the bad one is stored anew
        assert tier.counters["blocks_lost"] == 1
        stats = tier.get_stats()
        assert stats.data["data"][disk_tier.DiskTierMetrics.BLOCKS_LOST][()] == 1
        # The recomputed block replaced the bad one on disk.
        h.settle()
        push_out_of_cpu(h)
        cpu, promoted, _ = h.request(keys)
        assert promoted == 3 and (h.loaded, h.wrong_bytes) == (4, 0)
    finally:
        h.shutdown()


def test_blocks_survive_the_tier_being_created_again_on_the_same_directory(disk):
    keys = keys_of(*(f"kept{i}" for i in range(10)))
    first = harness(disk, direct_io=False)
    store_each(first, keys)
    first.shutdown()

    corrupt(disk, keys[3])  # while no process has it open
    second = harness(disk, direct_io=False)
    try:
        tier = second.tiers[0]
        assert tier.counters["blocks_recovered"] == 10 and tier.num_resident == 10
        cpu, promoted, _ = second.request(keys[:3])
        assert (cpu, promoted) == (0, 3) and second.wrong_bytes == 0
        second.request(keys[3:4])
        assert tier.counters["blocks_lost"] == 1 and second.wrong_bytes == 0
        cpu, promoted, _ = second.request(keys[4:])
        assert promoted == 6 and second.wrong_bytes == 0
    finally:
        second.shutdown()


def test_a_lost_key_file_recovers_nothing(disk):
    keys = keys_of("x", "y")
    first = harness(disk)
    store_each(first, keys)
    first.shutdown()
    (key_file,) = list(disk.rglob(disk_tier.KEY_FILE))
    key_file.unlink()
    second = harness(disk)
    try:
        tier = second.tiers[0]
        assert tier.num_resident == 0 and tier.counters["recovered_discarded"] == 2
        with second.manager.lock:
            assert tier.lookup(keys[0], second.context(keys)) is LookupResult.MISS
    finally:
        second.shutdown()


def test_a_second_tier_on_the_same_directory_is_refused_while_the_first_is_open(disk):
    first = harness(disk)
    try:
        with pytest.raises(kvoffload.RuntimeFailure, match="lock|another"):
            harness(disk)
    finally:
        first.shutdown()
    harness(disk).shutdown()  # free again once the first is gone


def test_a_changed_capacity_starts_the_tier_empty_instead_of_failing(disk, caplog):
    keys = keys_of("p", "q")
    first = harness(disk, capacity_blocks=16)
    store_each(first, keys)
    first.shutdown()
    second = harness(disk, capacity_blocks=32)
    try:
        assert second.tiers[0].num_resident == 0 and second.tiers[0].num_slots > 16
        assert "previous blocks are discarded" in caplog.text and "another geometry" in caplog.text
        store_each(second, keys)  # and it works
    finally:
        second.shutdown()
    third = harness(disk, capacity_blocks=32)  # the same geometry again: recovered
    try:
        assert third.tiers[0].num_resident == 2
    finally:
        third.shutdown()


class CollidingDiskTier(kvllm.KvoffloadDiskTier):
    """Every key hashes to the same 64-bit value."""

    hash_function = staticmethod(lambda key: 99)


def test_keys_with_the_same_64_bit_hash_never_serve_each_others_bytes(disk, monkeypatch):
    monkeypatch.setattr(kvllm, "CollidingDiskTier", CollidingDiskTier, raising=False)
    config = dict(tier_config(disk, capacity_blocks=4), type="CollidingDiskTier", direct_io=False)
    engine = f"kvoffload-collide-{os.getpid()}"
    h = bench.TieredHarness(8, [config], engine)
    keys = keys_of(*(f"same{i}" for i in range(6)))  # more than the 4 slots: slots are reused
    for key in keys:
        assert h.store([key]) == [key]
        h.settle()
    tier = h.tiers[0]
    # Slots were reused, and each reused slot's old record had the same 64-bit hash.
    assert tier.counters["collisions"] == 2 and tier.num_resident == tier.num_slots == 4
    h.shutdown()
    # Created again (an empty CPU tier): every block comes back under its own key only.
    again = bench.TieredHarness(8, [config], engine + "b")
    try:
        assert again.tiers[0].num_resident == 4
        cpu, promoted, _ = again.request(keys[2:])
        assert (cpu, promoted) == (0, 4) and (again.loaded, again.wrong_bytes) == (4, 0)
        with again.manager.lock:
            for evicted in keys[:2]:
                assert again.tiers[0].lookup(evicted, again.context(keys)) is LookupResult.MISS
    finally:
        again.shutdown()


class _Died(BaseException):
    """Not an Exception, so that nothing catches it: the process is gone."""


@pytest.mark.parametrize("tier_type", ["KvoffloadDiskTier", "CollidingDiskTier"])
def test_a_process_killed_while_reusing_a_slot_never_serves_the_old_bytes(disk, monkeypatch, tier_type):
    """A full tier reuses its oldest block's slot for a new key, and the process dies after the
    key file names the new key but before the store wrote anything. The slot must not come
    back: its old record is intact, and (with colliding hashes) would even pass the hash check
    under the new key."""
    monkeypatch.setattr(kvllm, "CollidingDiskTier", CollidingDiskTier, raising=False)
    config = dict(tier_config(disk, capacity_blocks=4), type=tier_type, direct_io=False)
    engine = f"kvoffload-killed-{os.getpid()}-{tier_type}"
    h = bench.TieredHarness(8, [config], engine)
    tier = h.tiers[0]
    keys = keys_of(*(f"full{i}" for i in range(tier.num_slots)))
    store_each(h, keys)
    store = tier.store

    def die(*args, **kwargs):
        raise _Died  # nothing reaches the disk after this point

    monkeypatch.setattr(tier, "_store", type("Dying", (), {
        "submit_write": staticmethod(die),
        "discard": staticmethod(store.discard),
    })())
    newcomer = keys_of("newcomer")
    with pytest.raises(_Died):
        h.store(newcomer)
        h.settle()
        raise AssertionError("the cascade never reached the disk tier")
    store.close()  # the process is gone: no further I/O, the lock is released
    tier._keys.close()
    monkeypatch.setattr(tier, "_store", None)
    h.kv = None

    again = bench.TieredHarness(8, [config], engine + "b")
    try:
        with again.manager.lock:
            assert again.tiers[0].lookup(newcomer[0], again.context(newcomer)) is LookupResult.MISS
        cpu, promoted, _ = again.request(keys[1:])
        assert promoted == len(keys) - 1 and again.wrong_bytes == 0
    finally:
        again.shutdown()


def test_blocks_being_read_are_never_evicted(disk):
    from vllm.v1.kv_offload.base import ReqContext
    from vllm.v1.kv_offload.tiering.base import TransferJob

    config = tier_config(disk, capacity_blocks=4, direct_io=False)
    tier, kv, region = bench.standalone_tier(config, str(disk), 16, BLOCK, f"kvoffload-pin-{os.getpid()}")
    try:
        slots = tier.num_slots
        keys = keys_of(*(f"old{i}" for i in range(slots)))
        newer = keys_of(*(f"new{i}" for i in range(slots)))
        for i, key in enumerate(keys + newer):
            kv[i] = bench.pattern(key, BLOCK)
        context = ReqContext(req_id="pins")

        def job(job_id, job_keys, chunks, promotion):
            return TransferJob(job_id=job_id, keys=job_keys, chunk_ids=np.asarray(chunks),
                               is_promotion=promotion, req_context=context)

        tier.submit_store(job(1, keys, list(range(slots)), False))
        tier.drain_jobs()
        assert [r.success for r in tier.get_finished_jobs()] == [True]
        # A read of the oldest block is in flight (not yet reported) while the disk is full.
        tier.submit_load(job(2, keys[:1], [15], True))
        tier.submit_store(job(3, newer, list(range(slots, 2 * slots)), False))
        tier.drain_jobs()
        results = {r.job_id: r for r in tier.get_finished_jobs()}
        assert results[2].success and np.array_equal(kv[15], bench.pattern(keys[0], BLOCK))
        # Every other block made room; the one being read could not, so one new block is dropped.
        assert not results[3].success and tier.counters["stores_dropped"] == 1
        assert tier.counters["failed_jobs"] == 0
        assert tier.lookup(keys[0], context) is LookupResult.HIT
    finally:
        tier.shutdown()
        del kv


class _SteeredStore:
    """The tier's real store, with reads steered: those in ``hold`` stay pending, those in
    ``lose`` finish with every slot lost (a checksum failure), ``refuse_writes`` makes the next
    submit_write raise as a rejected job would."""

    def __init__(self, real):
        self.real, self.hold, self.lose, self.refuse_writes, self._slots = real, set(), set(), False, {}

    def submit_read(self, slots, *args):
        job = self.real.submit_read(slots, *args)
        self._slots[job] = list(slots)
        return job

    def submit_write(self, *args):
        if self.refuse_writes:
            self.refuse_writes = False
            raise kvoffload.LogicError("refused by the test")
        return self.real.submit_write(*args)

    def poll(self, job):
        if job in self.hold:
            return type("Pending", (), {"state": kvoffload.DiskJobState.PENDING, "error": "", "lost": []})()
        status = self.real.wait(job)
        if job in self.lose:
            return type("Lost", (), {"state": kvoffload.DiskJobState.DONE, "error": "", "lost": self._slots[job]})()
        return status

    wait = poll

    def __getattr__(self, name):
        return getattr(self.real, name)


def assert_every_slot_accounted_once(tier):
    free = list(tier._free)
    assert len(free) == len(set(free)), f"a slot is free twice: {sorted(free)}"
    resident, pending = set(tier._resident.values()), set(tier._pending.values())
    dropped_but_read = set(tier._pins) - resident
    parts = [set(free), resident, pending, dropped_but_read]
    assert sum(map(len, parts)) == len(set().union(*parts)) == tier.num_slots, parts


def tier_job(job_id, keys, chunks, promotion):
    from vllm.v1.kv_offload.base import ReqContext
    from vllm.v1.kv_offload.tiering.base import TransferJob

    return TransferJob(job_id=job_id, keys=keys, chunk_ids=np.asarray(chunks, dtype=np.int64),
                       is_promotion=promotion, req_context=ReqContext(req_id="steered"))


def disk_job_of(tier, vllm_job):
    return next(d for d, j in tier._jobs.items() if j.vllm_job == vllm_job)


def results_until(tier, vllm_job, results=None):
    """get_finished_jobs() until ``vllm_job`` is reported (held reads stay pending)."""
    results = {} if results is None else results
    for _ in range(10_000):
        results.update((r.job_id, r.success) for r in tier.get_finished_jobs())
        if vllm_job in results:
            return results
    raise AssertionError(f"job {vllm_job} was never reported")


def test_a_block_lost_twice_while_an_older_read_runs_leaks_no_slot(disk):
    config = tier_config(disk, capacity_blocks=4, direct_io=False)
    tier, kv, region = bench.standalone_tier(config, str(disk), 16, BLOCK, f"kvoffload-lost2-{os.getpid()}")
    try:
        store = tier._store = _SteeredStore(tier._store)
        (key,) = keys_of("twice-lost")
        kv[0] = bench.pattern(key, BLOCK)
        tier.submit_store(tier_job(1, [key], [0], False))
        results = results_until(tier, 1)
        tier.submit_load(tier_job(2, [key], [10], True))  # a slow read of the first copy
        store.hold.add(disk_job_of(tier, 2))
        tier.submit_load(tier_job(3, [key], [11], True))  # lost: the key is dropped
        store.lose.add(disk_job_of(tier, 3))
        results_until(tier, 3, results)
        tier.submit_store(tier_job(4, [key], [0], False))  # recomputed and stored again
        results_until(tier, 4, results)
        tier.submit_load(tier_job(5, [key], [12], True))  # the new copy is lost too
        store.lose.add(disk_job_of(tier, 5))
        results_until(tier, 5, results)
        store.hold.clear()
        results_until(tier, 2, results)
        assert results == {1: True, 2: True, 3: False, 4: True, 5: False}
        assert not tier._pins and tier.num_resident == 0
        assert_every_slot_accounted_once(tier)
        assert len(tier._free) == tier.num_slots
    finally:
        tier.shutdown()
        del kv


def test_a_refused_write_keeps_the_slots_old_record_for_the_collision_check(disk, monkeypatch):
    """Slot S keeps the record of an evicted block when the write that evicted it is refused;
    a later key with that block's very hash must still discard S before using it."""
    class HalfColliding(kvllm.KvoffloadDiskTier):
        # "refused" has a hash of its own; every other key collides with every other.
        hash_function = staticmethod(lambda key: 2 if key.startswith(b"refused") else 99)

    monkeypatch.setattr(kvllm, "HalfColliding", HalfColliding, raising=False)
    config = dict(tier_config(disk, capacity_blocks=4), type="HalfColliding", direct_io=False)
    engine = f"kvoffload-refused-{os.getpid()}"
    tier, kv, region = bench.standalone_tier(config, str(disk), 16, BLOCK, engine)
    first = keys_of(*(f"old{i}" for i in range(tier.num_slots)))
    for i, key in enumerate(first):
        kv[i] = bench.pattern(key, BLOCK)
    tier.submit_store(tier_job(1, first, list(range(tier.num_slots)), False))
    tier.drain_jobs()
    tier.get_finished_jobs()
    store = tier._store = _SteeredStore(tier._store)
    store.refuse_writes = True
    (refused,) = keys_of("refused")
    tier.submit_store(tier_job(2, [refused], [8], False))  # evicts old0, then the store refuses
    assert [r.success for r in tier.get_finished_jobs()] == [False]
    assert_every_slot_accounted_once(tier)
    discards = []
    monkeypatch.setattr(type(store), "discard", lambda self, slot: (discards.append(slot), self.real.discard(slot)),
                        raising=False)
    (newcomer,) = keys_of("newcomer")
    kv[9] = bench.pattern(newcomer, BLOCK)
    tier.submit_store(tier_job(3, [newcomer], [9], False))  # takes old0's slot: same hash
    assert discards, "the slot with the evicted block's record was reused without a discard"
    tier.shutdown()
    del kv


def test_misconfiguration_names_the_offending_value(disk):
    with pytest.raises(ValueError, match="capacity_bytes must be a positive int.*got None"):
        bench.TieredHarness(8, [dict(bench.TIER, root_dir=str(disk))], "kvoffload-bad-1")
    with pytest.raises(ValueError, match="exactly one of root_dir.*directories"):
        bench.TieredHarness(8, [dict(bench.TIER, capacity_bytes=1 << 20)], "kvoffload-bad-2")
    with pytest.raises(FileNotFoundError, match="directory .*no/such' does not exist"):
        bench.TieredHarness(8, [dict(bench.TIER, directories=[str(disk / "no" / "such")],
                                     capacity_bytes=1 << 20)], "kvoffload-bad-3")


def test_the_mooncake_trace_through_cpu_and_disk(mooncake_trace):
    requests = [list(r) for r in mooncake_trace.requests][:1500]
    distinct = vllm_policy.distinct_blocks(requests)
    cpu_chunks = max(8, distinct // 100)  # 1% in the CPU tier
    disk_blocks = distinct // 10  # 10% on disk
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        h = bench.TieredHarness(cpu_chunks, [tier_config(Path(root), disk_blocks)], f"kvoffload-trace-{os.getpid()}")
        try:
            with_disk = bench.drive_trace(h, requests)
            assert h.tiers[0].num_resident <= h.tiers[0].num_slots
        finally:
            h.shutdown()
    cpu_only = vllm_policy.drive(vllm_policy.vllm_manager(cpu_chunks, "lru"), requests)
    assert with_disk.disk_hits > 0 and h.wrong_bytes == 0 and h.loaded > 0
    assert with_disk.hit_rate > cpu_only.hit_rate + 0.02, (with_disk, cpu_only.hit_rate)


def readme_kv_transfer_configs():
    """The JSON of every --kv-transfer-config in the README's "Use with vLLM" section."""
    import json
    import re

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Use with vLLM") : text.index("## Policies and managers")]
    return [json.loads(m) for m in re.findall(r"--kv-transfer-config '(\{.*?\})'", section, re.S)]


def test_the_readmes_vllm_configs_build_vllms_managers_as_written(tmp_path):
    configs = readme_kv_transfer_configs()
    assert len(configs) == 2
    from vllm.v1.kv_offload.factory import OffloadingSpecFactory

    for number, config in enumerate(configs):
        assert config["kv_connector"] == "OffloadingConnector"
        extra = config["kv_connector_extra_config"]
        extra["cpu_bytes_to_use"] = 64 * BLOCK  # the README's sizes are a server's
        for tier in extra.get("secondary_tiers", []):
            tier.update(root_dir=str(tmp_path), capacity_bytes=1 << 20)
        spec_class = OffloadingSpecFactory._registry[extra.get("spec_name", "CPUOffloadingSpec")]()
        spec = spec_class(vllm_policy.offloading_config(extra, f"kvoffload-readme-{os.getpid()}-{number}"))
        manager = spec.get_manager()
        try:
            policy = getattr(manager, "primary_tier", manager)._policy
            assert isinstance(policy, kvllm.kvoffload_density)
            if "secondary_tiers" in extra:
                assert isinstance(manager.secondary_tiers[0], kvllm.KvoffloadDiskTier)
        finally:
            if hasattr(manager, "secondary_tiers"):
                manager.shutdown()
