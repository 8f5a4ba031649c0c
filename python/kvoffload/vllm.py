"""kvoffload's eviction policies and disk tier inside vLLM 0.33's CPU KV offloading.

The disk tier, :class:`KvoffloadDiskTier`, is a ``secondary_tiers`` entry
(``"type": "KvoffloadDiskTier", "module_path": "kvoffload.vllm"``): see
:mod:`kvoffload.vllm_disk_tier`. EXPERIMENTAL (never run on a GPU yet):
:class:`KvoffloadOffloadingSpec` (``"spec_name": "KvoffloadOffloadingSpec", "spec_module_path":
"kvoffload.vllm"``) moves the blocks with kvoffload's transfer engine; see
:mod:`kvoffload.vllm_worker`.

Load one with ``"eviction_policy": "kvoffload_density"`` (or ``kvoffload_arc``,
``kvoffload_weighted``, ``kvoffload_lru``; ``kvoffload_density_admission`` for comparison) and ``"cache_policy_module_path": "kvoffload.vllm"``
in ``kv_connector_extra_config``. vLLM's ``CPUOffloadingManager`` keeps its chunk pool,
ref-counts and events; the policy (a :class:`KvoffloadCachePolicy`) mirrors every chunk it is
given into a kvoffload manager (C++ core) and lets that manager choose the victims.

How vLLM's calls map onto the kvoffload manager:

- references: each request's keys are touched once per request (``on_store_miss`` touches the
  request's keys seen so far, in token order, before the store; ``on_request_finished`` touches
  the keys not yet touched), so density sees one reference per block per request, as in
  ``kvoffload-replay``, not one per decoded block. ``touch`` (vLLM's per-call recency) is
  ignored on purpose.
- ``insert``: ``prepare_store`` of the key's 64-bit hash; ``mark_evictable`` after a store:
  ``complete_store``; ``remove`` (failed store): ``complete_store(..., False)``;
  ``mark_non_evictable``/``mark_evictable`` around loads: ``prepare_load``/``complete_load``.
- ``evict(n, protected)``: first chunks vLLM holds but kvoffload does not ("unmanaged": declined
  by density's admission, dropped by the kvoffload manager, or colliding), oldest first; then
  the victims of a kvoffload ``prepare_store`` of the keys about to be stored (the protected
  ready keys named in it, so it never picks them); when no store miss was announced (a retried
  store), placeholder hashes stored and dropped at once make it choose. All or nothing: when
  fewer than ``n`` victims exist (including when its admission declined keys it would have to
  evict for), the kvoffload allocation is rolled back, whatever it evicted becomes unmanaged
  (vLLM still holds the bytes), ``evictions_refused`` counts it, and ``None`` is returned with
  vLLM's state untouched, so vLLM skips that store.

Keys: vLLM's ``OffloadKey`` is bytes (block hash plus group index); ints are accepted too. The
64-bit hash given to the C++ manager is derived from the full key (BLAKE2b, 8 bytes). Chunks are
always found by the full key, never by the 64-bit hash, so a collision cannot serve another
block's bytes: the second key of a colliding pair stays unmanaged (vLLM may still hit it by its
own key) and ``collisions`` counts it; ``collision_misses`` counts lookups of an absent key
whose hash another resident key owns.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

try:
    from vllm.v1.kv_offload.base import ReqContext
    from vllm.v1.kv_offload.cpu.policies.base import CachePolicy, ChunkStatus
except ImportError as error:  # pragma: no cover - exercised only without vLLM
    raise ImportError(
        "kvoffload.vllm needs vLLM 0.33 (pip install vllm==0.33.0); "
        f"importing its CachePolicy failed: {error}"
    ) from error

from ._kvoffload import make_manager
from ._vllm_keys import key_hash64
from .vllm_disk_tier import KvoffloadDiskTier
from .vllm_worker import KvoffloadOffloadingSpec

__all__ = [
    "KvoffloadCachePolicy",
    "KvoffloadDiskTier",
    "KvoffloadOffloadingSpec",
    "kvoffload_arc",
    "kvoffload_density",
    "kvoffload_density_admission",
    "kvoffload_lru",
    "kvoffload_weighted",
    "key_hash64",
]

_MASK64 = (1 << 64) - 1


# Where a chunk stands in the kvoffload manager.
_PENDING, _READY, _UNMANAGED = 0, 1, 2


@dataclass(slots=True)
class _Entry:
    chunk: ChunkStatus
    hash64: int
    state: int
    pins: int = 0  # prepare_load calls made in the kvoffload manager


@dataclass(slots=True)
class _RequestReferences:
    owner: object
    touched: set = field(default_factory=set)  # keys already referenced for this request
    pending: list = field(default_factory=list)  # keys accessed, not yet referenced


class KvoffloadCachePolicy(CachePolicy):
    """A vLLM ``CachePolicy`` whose eviction decisions come from a kvoffload manager.

    Subclasses set ``spec`` (a ``make_manager`` spec). ``hash_function`` maps a full key to the
    64-bit BlockHash (tests replace it to force collisions).
    """

    spec: str = "lru"
    hash_function = staticmethod(key_hash64)

    def __init__(self, cache_capacity: int) -> None:
        if not isinstance(cache_capacity, int) or cache_capacity <= 0:
            raise ValueError(
                f"kvoffload.vllm: cache_capacity must be a positive int, got {cache_capacity!r}"
            )
        super().__init__(cache_capacity)
        self._manager = make_manager(self.spec, cache_capacity, 0, False)
        self._entries: dict[bytes, _Entry] = {}
        self._owner: dict[int, bytes] = {}  # hash64 -> the full key the manager knows it as
        self._unmanaged: OrderedDict[bytes, None] = OrderedDict()  # oldest first
        self._upcoming: dict[bytes, int] = {}  # store misses not yet inserted -> hash64
        self._preadmitted: dict[bytes, int] = {}  # allocated by evict(), awaiting insert()
        self._filler_seed = 0
        # Hashes of keys seen lately: a request's keys are hashed at its lookups, its store
        # miss and its references; BLAKE2b each time was a quarter of the scheduler's time.
        self._hash_cache: dict[bytes, int] = {}
        self._hash_cache_limit = 2 * cache_capacity + 4096
        self.collisions = 0
        self.evictions_refused = 0
        self.collision_misses = 0

    # --- helpers ---

    def _hash(self, key: bytes) -> int:
        h = self._hash_cache.get(key)
        if h is None:
            if len(self._hash_cache) >= self._hash_cache_limit:
                self._hash_cache.clear()  # bounded: a few times the capacity in keys
            h = self._hash_cache[key] = self.hash_function(key) & _MASK64
        return h

    def _make_unmanaged(self, key: bytes, entry: _Entry) -> None:
        if entry.state != _UNMANAGED:
            if self._owner.get(entry.hash64) == key:
                del self._owner[entry.hash64]
            entry.state = _UNMANAGED
            entry.pins = 0
        self._unmanaged[key] = None

    def _drop_evicted(self, hashes: Iterable[int]) -> list[bytes]:
        """Hashes the kvoffload manager evicted: their keys, now unmanaged (vLLM holds them)."""
        keys = []
        for h in hashes:
            key = self._owner.get(h)
            if key is None:
                continue
            self._make_unmanaged(key, self._entries[key])
            keys.append(key)
        return keys

    def _release_preadmitted(self) -> None:
        """Roll back allocations evict() made for keys vLLM then did not insert."""
        if not self._preadmitted:
            return
        self._manager.complete_store(list(self._preadmitted.values()), False)
        for h in self._preadmitted.values():
            del self._owner[h]
        self._preadmitted.clear()

    def _touch_request(self, keys: Iterable[bytes], req_context: ReqContext) -> None:
        state = req_context.get_state(_RequestReferences)
        if state is None or state.owner is not self:
            state = _RequestReferences(self)
            req_context.set_state(state)
        fresh = [k for k in dict.fromkeys(keys) if k not in state.touched]
        if not fresh:
            return
        positions = [req_context.get_offload_key_position(k) for k in fresh]
        if all(p is not None for p in positions):
            fresh = [k for _, k in sorted(zip(positions, fresh), key=lambda pk: pk[0])]
        state.touched.update(fresh)
        hashes = []
        for k in fresh:
            owner = self._owner.get(h := self._hash(k))
            if owner is None or owner == k:
                hashes.append(h)
        if hashes:
            self._manager.touch(hashes)

    # --- CachePolicy ---

    def get(self, key: bytes) -> ChunkStatus | None:
        entry = self._entries.get(key)
        if entry is not None:
            return entry.chunk
        if self._owner and self._hash(key) in self._owner:
            self.collision_misses += 1
        return None

    def insert(self, key: bytes, chunk: ChunkStatus, req_context: ReqContext) -> None:
        if key in self._entries:
            raise ValueError(f"kvoffload.vllm: insert of key {key!r}, which is already present")
        h = self._preadmitted.pop(key, None)
        if h is None:
            h = self._upcoming.pop(key, None)
        else:
            self._upcoming.pop(key, None)
        if h is None:
            h = self._hash(key)
        entry = _Entry(chunk, h, _PENDING)
        self._entries[key] = entry
        owner = self._owner.get(h)
        if owner is not None and owner != key:
            self.collisions += 1
            self._make_unmanaged(key, entry)
        elif owner == key:
            pass  # admitted already by evict()'s prepare_store
        else:
            out = self._manager.prepare_store([h])
            if out is None:
                self._make_unmanaged(key, entry)
                return
            self._drop_evicted(out.block_hashes_evicted)
            if h in out.block_hashes_to_store:
                self._owner[h] = key
            else:
                self._make_unmanaged(key, entry)  # declined by admission
        if chunk.ref_cnt == 0:
            self.mark_evictable(key)

    def remove(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            raise KeyError(f"kvoffload.vllm: remove of key {key!r}, which is not present")
        self._unmanaged.pop(key, None)
        if entry.state == _PENDING:
            self._manager.complete_store([entry.hash64], False)
            del self._owner[entry.hash64]
        elif entry.state == _READY:
            raise ValueError(f"kvoffload.vllm: remove of key {key!r}, whose store completed")

    def touch(self, keys: Iterable[bytes], req_context: ReqContext) -> None:
        # vLLM's touches come per decoded block; references are counted per request instead.
        return

    def on_store_miss(self, keys: Iterable[bytes], req_context: ReqContext) -> None:
        keys = list(keys)
        self._release_preadmitted()
        self._upcoming = {k: self._hash(k) for k in keys if k not in self._entries}
        state = req_context.get_state(_RequestReferences)
        seen = list(state.pending) if state is not None and state.owner is self else []
        self._touch_request(seen + keys, req_context)

    def on_request_access(self, keys: Iterable[bytes], req_context: ReqContext) -> None:
        state = req_context.get_state(_RequestReferences)
        if state is None or state.owner is not self:
            state = _RequestReferences(self)
            req_context.set_state(state)
        state.pending.extend(k for k in keys if k not in state.touched)

    def on_request_finished(
        self,
        key_groups: Sequence[Sequence[bytes]],
        insertion_only_keys: set[bytes],
        reused_keys: set[bytes],
        req_context: ReqContext,
    ) -> None:
        self._touch_request((k for group in key_groups for k in group), req_context)

    def _allocate_upcoming(self, guard: list[int], victims: list[bytes], n: int) -> list[int]:
        """prepare_store of the keys about to be inserted: the kvoffload manager picks victims
        (appended to ``victims`` up to ``n``) and admits some keys; returns their hashes."""
        upcoming = [h for h in self._upcoming.values() if self._owner.get(h) is None]
        if not upcoming:
            return []
        out = self._manager.prepare_store(list(dict.fromkeys(upcoming + guard)))
        if out is None:
            return []
        evicted = self._drop_evicted(out.block_hashes_evicted)
        victims.extend(evicted[: n - len(victims)])
        admitted = list(out.block_hashes_to_store)
        admitted_set = set(admitted)
        for key, h in self._upcoming.items():
            if h in admitted_set and self._owner.get(h) is None:
                self._owner[h] = key
                self._preadmitted[key] = h
        return admitted

    def _evict_with_fillers(self, guard: list[int], victims: list[bytes], n: int) -> None:
        """Make the kvoffload manager choose ``n - len(victims)`` more victims: prepare_store
        of placeholder hashes (enough to fill its free slots and then evict), then
        complete_store(..., False) of them, which frees their slots again."""
        stats = self._manager.stats()
        if n - len(victims) > stats.evictable:
            return  # it cannot free that many
        count = stats.free_slots + (n - len(victims))
        fillers = []
        while len(fillers) < count:
            self._filler_seed += 1
            h = key_hash64(b"kvoffload.vllm filler %d" % self._filler_seed)
            if h not in self._owner:
                fillers.append(h)
        out = self._manager.prepare_store(fillers + guard)
        if out is None:
            return
        evicted = self._drop_evicted(out.block_hashes_evicted)
        if out.block_hashes_to_store:
            self._manager.complete_store(list(out.block_hashes_to_store), False)
        victims.extend(evicted[: n - len(victims)])

    def evict(self, n: int, protected: set[bytes]) -> list[tuple[bytes, ChunkStatus]] | None:
        if n < 0:
            raise ValueError(f"kvoffload.vllm: evict of {n} chunks")
        if n == 0:
            return []
        self._release_preadmitted()
        victims = []
        for key in self._unmanaged:
            if len(victims) == n:
                break
            if key not in protected and self._entries[key].chunk.ref_cnt == 0:
                victims.append(key)
        if len(victims) < n:
            guard = [
                self._entries[k].hash64
                for k in protected
                if k in self._entries and self._entries[k].state != _UNMANAGED
            ]
            admitted = self._allocate_upcoming(guard, victims, n)
            if len(victims) < n and not self._upcoming:
                # No store miss announced this eviction (a retried store): make the kvoffload
                # manager choose. With announced keys, a shortfall means its admission
                # declined keys it would have to evict for, and the store is refused instead.
                self._evict_with_fillers(guard, victims, n)
            if len(victims) < n:
                # Not enough idle chunks: undo the allocation; what the kvoffload manager
                # evicted on the way stays in vLLM as unmanaged (first victims next time).
                if admitted:
                    self._manager.complete_store(admitted, False)
                    for h in admitted:
                        self._preadmitted.pop(self._owner.pop(h), None)
                self.evictions_refused += 1
                return None
        result = []
        for key in victims:
            entry = self._entries.pop(key)
            del self._unmanaged[key]
            result.append((key, entry.chunk))
        return result

    def clear(self) -> None:
        self._manager.clear()
        self._entries.clear()
        self._owner.clear()
        self._unmanaged.clear()
        self._upcoming.clear()
        self._preadmitted.clear()
        self._hash_cache.clear()

    def mark_evictable(self, key: bytes) -> None:
        entry = self._entries[key]
        if entry.state == _PENDING:
            self._manager.complete_store([entry.hash64], True)
            entry.state = _READY
        elif entry.state == _READY and entry.pins > 0:
            self._manager.complete_load([entry.hash64] * entry.pins)
            entry.pins = 0

    def mark_non_evictable(self, key: bytes) -> None:
        entry = self._entries[key]
        if entry.state == _READY:
            self._manager.prepare_load([entry.hash64])
            entry.pins += 1

    # --- figures ---

    def kvoffload_stats(self):
        """The kvoffload manager's stats (hits, evictions, stores declined, ...)."""
        return self._manager.stats()

    @property
    def num_unmanaged(self) -> int:
        return len(self._unmanaged)


class kvoffload_density(KvoffloadCachePolicy):  # noqa: N801 - named as the config names it
    """Learned hit density (kvoffload's ``density``), ranking victims only.

    Inside vLLM it runs with ``admission=0``: vLLM's manager stores every block it is offered
    (a CachePolicy cannot decline one), so an admission decline could only refuse the whole
    store, losing the blocks density did want. Without admission, density's own replay loses
    almost nothing (Mooncake trace: 0.1033 / 0.2245 against 0.1057 / 0.2246 at 1% / 5%), and
    through vLLM it reaches 0.1035 / 0.2240 where the admitting variant reaches 0.0916 / 0.2054
    (bench/RESULTS.md, "Inside vLLM 0.33").
    """

    spec = "density:admission=0"


class kvoffload_density_admission(KvoffloadCachePolicy):  # noqa: N801
    """kvoffload's ``density`` with its admission on. A decline can only refuse vLLM's whole
    store (``evictions_refused`` counts them), which costs more hits than admission saves
    inside vLLM; kept for comparison. Prefer :class:`kvoffload_density`."""

    spec = "density"


class kvoffload_arc(KvoffloadCachePolicy):  # noqa: N801
    """kvoffload's ARC."""

    spec = "arc"


class kvoffload_weighted(KvoffloadCachePolicy):  # noqa: N801
    """kvoffload's frequency-weighted LRU."""

    spec = "weighted"


class kvoffload_lru(KvoffloadCachePolicy):  # noqa: N801
    """kvoffload's LRU."""

    spec = "lru"
