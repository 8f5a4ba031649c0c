"""kvoffload policies inside vLLM 0.33's scheduler-side CPU offloading manager (the real vLLM
classes, built from an OffloadingConfig as vLLM's CPUOffloadingSpec builds them, our policy
loaded through ``cache_policy_module_path``). scripts/vllm-test.sh runs these in a venv that has
vLLM; without vLLM the module is skipped."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("vllm", reason="vLLM 0.33 is not installed (scripts/vllm-test.sh installs it)")

from conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import vllm_policy as harness  # noqa: E402

import kvoffload.vllm as kvllm  # noqa: E402
from vllm.v1.kv_offload.base import LookupResult, ReqContext, make_offload_key  # noqa: E402

SUBSET = 8000  # first requests of the Mooncake trace: the full trace takes minutes per policy


@pytest.fixture(scope="module")
def requests(mooncake_trace):
    return [list(r) for r in mooncake_trace.requests][:SUBSET]


def capacity_of(requests, text):
    from kvoffload import replay

    return replay.parse_capacity(text, harness.distinct_blocks(requests))


@pytest.fixture(scope="module")
def vllm_lru_rates(requests):
    rates = {}
    for text in ("1%", "5%"):
        capacity = capacity_of(requests, text)
        rates[text] = harness.drive(harness.vllm_manager(capacity, "lru"), requests).hit_rate
    return rates


@pytest.mark.parametrize("text", ["1%", "5%"])
def test_the_harness_with_vllms_lru_reproduces_kvoffload_replays_lru(requests, vllm_lru_rates, text):
    capacity = capacity_of(requests, text)
    reference = harness.reference_hit_rate(requests, "lru", capacity)
    assert reference > 0.01, "the subset must have reuse for the comparison to mean anything"
    assert abs(vllm_lru_rates[text] - reference) <= 0.005, (vllm_lru_rates[text], reference)


def test_our_policy_is_loaded_by_module_path():
    manager = harness.vllm_manager(64, "kvoffload_density", "kvoffload.vllm")
    assert isinstance(manager._policy, kvllm.kvoffload_density)
    assert manager._policy.kvoffload_stats().capacity == 64


@pytest.mark.parametrize("text", ["1%", "5%"])
def test_density_through_vllm_keeps_most_of_its_replay_margin_over_lru(requests, vllm_lru_rates, text):
    capacity = capacity_of(requests, text)
    manager = harness.vllm_manager(capacity, "kvoffload_density", "kvoffload.vllm")
    ours = harness.drive(manager, requests).hit_rate
    # The target: at least 80% of the margin density (with admission, as kvoffload-replay
    # runs it) has over LRU in the replay, on the same requests.
    replay_margin = harness.reference_hit_rate(requests, "density", capacity) - harness.reference_hit_rate(
        requests, "lru", capacity
    )
    assert replay_margin > 0.01
    assert ours - vllm_lru_rates[text] >= 0.8 * replay_margin, (ours, vllm_lru_rates[text], replay_margin)
    policy = manager._policy
    # Every chunk vLLM holds is one the policy tracks, and no more than the capacity.
    assert len(policy._entries) <= capacity
    assert policy.kvoffload_stats().ready + policy.num_unmanaged == len(policy._entries)
    assert policy.evictions_refused == 0  # no admission: no store is ever refused for it


@pytest.mark.parametrize(
    "name", ["kvoffload_lru", "kvoffload_arc", "kvoffload_weighted", "kvoffload_density_admission"]
)
def test_every_policy_runs_through_vllm_and_keeps_its_books(requests, name):
    capacity = capacity_of(requests[:2000], "5%")
    manager = harness.vllm_manager(capacity, name, "kvoffload.vllm")
    result = harness.drive(manager, requests[:2000])
    assert result.hits > 0
    policy = manager._policy
    assert len(policy._entries) <= capacity
    assert policy.kvoffload_stats().ready + policy.num_unmanaged == len(policy._entries)


def test_kvoffload_lru_through_vllm_is_close_to_vllms_lru(requests, vllm_lru_rates):
    capacity = capacity_of(requests, "5%")
    ours = harness.drive(harness.vllm_manager(capacity, "kvoffload_lru", "kvoffload.vllm"), requests)
    assert abs(ours.hit_rate - vllm_lru_rates["5%"]) <= 0.01, (ours.hit_rate, vllm_lru_rates["5%"])


class _RecordingManager:
    """Stands in for a policy's kvoffload manager and records every hash it is touched with."""

    def __init__(self, inner):
        self._inner = inner
        self.touched = []

    def touch(self, hashes):
        self.touched.extend(hashes)
        return self._inner.touch(hashes)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_each_block_is_referenced_once_per_request_however_often_vllm_touches_it():
    manager = harness.vllm_manager(64, "kvoffload_density", "kvoffload.vllm")
    policy = manager._policy
    policy._manager = recorder = _RecordingManager(policy._manager)
    old, new = harness.offload_keys([1, 2, 3]), harness.offload_keys([4, 5])
    first = ReqContext(req_id="first")
    store(manager, old, first)
    manager.on_request_finished(first)
    recorder.touched.clear()

    second = ReqContext(req_id="second")
    keys = old + new
    for position, key in enumerate(keys):
        second.set_offload_key_position(key, (position + 1) * 16)
    manager.on_new_request(second)
    assert all(manager.lookup(k, second) is LookupResult.HIT for k in old)
    manager.prepare_load(old, second)
    manager.complete_load(old, second)
    for _ in range(7):  # vLLM touches per decoded block
        manager.touch(keys, second)
    store(manager, new, second)
    for _ in range(3):
        manager.touch(keys, second)
    manager.on_request_finished(second)
    hashes = [policy._hash(k) for k in keys]
    # One reference per block for this request, in token order, whatever vLLM did.
    assert sorted(recorder.touched) == sorted(hashes), recorder.touched
    assert recorder.touched == hashes


class CollidingDensity(kvllm.kvoffload_density):
    """Every key hashes to the same 64-bit value."""

    hash_function = staticmethod(lambda key: 42)


def store(manager, keys, context):
    out = manager.prepare_store(keys, context)
    assert out is not None
    manager.complete_store(out.keys_to_store, context, True)
    return out


def test_keys_with_the_same_64_bit_hash_never_return_each_others_block(monkeypatch):
    monkeypatch.setattr(kvllm, "CollidingDensity", CollidingDensity, raising=False)
    manager = harness.vllm_manager(8, "CollidingDensity", "kvoffload.vllm")
    first, second = make_offload_key(b"A" * 16, 0), make_offload_key(b"B" * 16, 0)
    context = ReqContext(req_id="one")
    store(manager, [first], context)
    # The second key is a miss although the manager knows its 64-bit hash.
    assert manager.lookup(second, context) is LookupResult.MISS
    policy = manager._policy
    assert policy.collision_misses >= 1
    store(manager, [second], context)
    assert policy.collisions == 1
    spec_first = manager.prepare_load([first], context)
    spec_second = manager.prepare_load([second], context)
    assert policy.get(first) is not policy.get(second)
    assert list(spec_first.block_ids) != list(spec_second.block_ids)
    manager.complete_load([first, second], context)
    # Evicting one leaves the other's chunk where it was.
    kept = policy.get(first).chunk_id
    evicted = policy.evict(1, set())
    assert evicted is not None and len(evicted) == 1
    remaining = first if evicted[0][0] == second else second
    assert policy.get(remaining) is not None and policy.get(evicted[0][0]) is None
    if remaining == first:
        assert policy.get(first).chunk_id == kept


def test_evict_is_all_or_nothing_and_skips_protected_and_pinned():
    manager = harness.vllm_manager(4, "kvoffload_lru", "kvoffload.vllm")
    policy = manager._policy
    keys = [make_offload_key(bytes([i]) * 16, 0) for i in range(4)]
    context = ReqContext(req_id="fill")
    store(manager, keys, context)
    manager.prepare_load(keys[:1], context)  # pinned
    before = {k: policy.get(k) for k in keys}
    assert policy.evict(3, {keys[1]}) is None  # only keys[2], keys[3] are evictable
    assert {k: policy.get(k) for k in keys} == before
    evicted = policy.evict(2, {keys[1]})
    assert sorted(k for k, _ in evicted) == sorted(keys[2:])
    assert policy.get(keys[0]) is not None and policy.get(keys[1]) is not None
    manager.complete_load(keys[:1], context)


class CollidingLru(kvllm.kvoffload_lru):
    hash_function = staticmethod(lambda key: 7)


def test_a_refused_evict_keeps_the_victims_it_had_picked(monkeypatch):
    monkeypatch.setattr(kvllm, "CollidingLru", CollidingLru, raising=False)
    manager = harness.vllm_manager(4, "CollidingLru", "kvoffload.vllm")
    policy = manager._policy
    keys = [make_offload_key(bytes([i]) * 16, 0) for i in range(4)]
    context = ReqContext(req_id="fill")
    store(manager, keys, context)  # keys[0] in the kvoffload manager, the rest colliding
    assert policy.num_unmanaged == 3
    manager.prepare_load(keys[1:2], context)  # pinned
    before = {k: policy.get(k) for k in keys}
    # keys[3] (unmanaged) and keys[0] are the only evictable, unprotected chunks.
    assert policy.evict(3, {keys[2]}) is None
    assert policy.evictions_refused == 1
    assert {k: policy.get(k) for k in keys} == before
    evicted = policy.evict(2, {keys[2]})
    assert sorted(k for k, _ in evicted) == sorted([keys[0], keys[3]])
    manager.complete_load(keys[1:2], context)


def test_a_failed_store_frees_the_chunk_in_both_books():
    manager = harness.vllm_manager(2, "kvoffload_density", "kvoffload.vllm")
    policy = manager._policy
    key = make_offload_key(b"x" * 16, 0)
    context = ReqContext(req_id="fail")
    out = manager.prepare_store([key], context)
    manager.complete_store(out.keys_to_store, context, False)
    assert manager.lookup(key, context) is LookupResult.MISS
    assert policy.kvoffload_stats().pending == 0 and not policy._entries


def test_misuse_raises_with_the_offending_value():
    with pytest.raises(ValueError, match="cache_capacity must be a positive int, got 0"):
        kvllm.kvoffload_density(0)
    policy = kvllm.kvoffload_lru(4)
    with pytest.raises(KeyError, match="not present"):
        policy.remove(make_offload_key(b"q" * 16, 0))
    with pytest.raises(ValueError, match="evict of -1 chunks"):
        policy.evict(-1, set())
    with pytest.raises(TypeError, match="neither bytes nor int"):
        kvllm.key_hash64(1.5)
    with pytest.raises(ValueError, match="negative offload key -3"):
        kvllm.key_hash64(-3)
    assert kvllm.key_hash64(7) == kvllm.key_hash64(b"\x07")
    with pytest.raises(ValueError, match="Unknown cache policy"):
        harness.vllm_manager(4, "kvoffload_nonesuch")
    with pytest.raises(AttributeError):
        harness.vllm_manager(4, "kvoffload_nonesuch", "kvoffload.vllm")
