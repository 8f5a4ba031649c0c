"""kvoffload's disk tier as a vLLM 0.33 secondary tier (below vLLM's CPU tier).

Configure it in ``kv_connector_extra_config`` of the ``TieringOffloadingSpec``::

    "secondary_tiers": [{
        "type": "KvoffloadDiskTier", "module_path": "kvoffload.vllm",
        "root_dir": "/nvme/kv",            # or "directories": ["/nvme0/kv", "/nvme1/kv"]
        "capacity_bytes": 500000000000     # hard limit on the tier's files, all together
    }]

Blocks (vLLM's CPU-tier chunks) go to a :class:`kvoffload.BlockStore`: preallocated files that
never grow past ``capacity_bytes``, O_DIRECT with io_uring where the file system and kernel
allow it, a CRC32C of every block checked on every read, and ``persistent`` (the default)
recovery of every completed block when the tier is created again on the same directories. Reads
and writes go straight between vLLM's CPU-tier memory (the ``memoryview`` vLLM hands the tier)
and the files, without a Python copy, on the store's I/O threads.

Keys: vLLM's keys are bytes; the store records a 64-bit hash of each (BLAKE2b). The tier finds
blocks by the full key only, and keeps every slot's full key in a key file beside the store
(``kvoffload-vllm-keys``), written before the block's bytes, so a block comes back after a
restart only under the key it was written with: two keys with the same 64-bit hash never serve
each other's bytes, within a run or across one.

Eviction: least recently used (a lookup hit, a load or a ``touch`` makes a block recent);
blocks being read or written are never evicted. A read whose block fails its checksum, or
cannot be read, fails for that block only (vLLM recomputes it) and the block is dropped.

Directories are namespaced like vLLM's ``fs`` tier (model, dtype, block layout, parallel
sizes: ``<root>/<model>_<digest>.kvoffload``), so two models never share files. A second
process opening the same directories gets a clear error (the store's lock) instead of sharing
them. Options: ``persistent`` (True), ``backend`` (``auto``, ``io_uring``, ``thread_pool``),
``direct_io`` (True), ``queue_depth`` (32), ``io_threads`` (4), ``enable_kv_events`` (False).
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vllm.v1.kv_offload.base import (
    Locality,
    LookupResult,
    Medium,
    OffloadingCounterMetadata,
    OffloadingEvent,
    OffloadingGaugeMetadata,
    OffloadingMetricMetadata,
    OffloadKey,
    ReqContext,
    RequestOffloadingContext,
)
from vllm.v1.kv_offload.file_mapper import FileMapper
from vllm.v1.kv_offload.tiering.base import JobResult, SecondaryTierManager, TransferJob

from ._kvoffload import BlockStore, DiskJobState, RuntimeFailure
from ._vllm_keys import key_hash64

if TYPE_CHECKING:
    from vllm.v1.kv_offload.base import OffloadingSpec
    from vllm.v1.kv_offload.tiering.backpressure import BackpressureDetector

__all__ = ["KvoffloadDiskTier", "DiskTierMetrics"]

logger = logging.getLogger(__name__)

KEY_FILE = "kvoffload-vllm-keys"
_DATA_FILE, _META_FILE = "kvoffload-blocks.data", "kvoffload-blocks.meta"  # the store's (docs/storage.md)
_RECORD = 128  # bytes per slot in the key file: hash (8), key length (2), key
_MAX_KEY = _RECORD - 10
_MASK64 = (1 << 64) - 1


class DiskTierMetrics:
    """Names of the tier's own metrics in vLLM's offloading stats (beside vLLM's tiering
    metrics, which it fills from our JobResults: bytes and time read and written)."""

    BLOCKS_LOST = "vllm:kv_offload_kvoffload_disk_blocks_lost"
    BLOCKS_EVICTED = "vllm:kv_offload_kvoffload_disk_blocks_evicted"
    STORES_DROPPED = "vllm:kv_offload_kvoffload_disk_stores_dropped"
    COLLISIONS = "vllm:kv_offload_kvoffload_disk_hash_collisions"
    FAILED_JOBS = "vllm:kv_offload_kvoffload_disk_failed_jobs"
    RESIDENT_BLOCKS = "vllm:kv_offload_kvoffload_disk_resident_blocks"
    CAPACITY_BLOCKS = "vllm:kv_offload_kvoffload_disk_capacity_blocks"


_COUNTERS = {
    DiskTierMetrics.BLOCKS_LOST: ("blocks_lost", "Blocks whose read failed its checksum or I/O; dropped."),
    DiskTierMetrics.BLOCKS_EVICTED: ("blocks_evicted", "Blocks evicted to make room."),
    DiskTierMetrics.STORES_DROPPED: (
        "stores_dropped",
        "Blocks not stored: no slot free of reads and writes, or a key over 118 bytes.",
    ),
    DiskTierMetrics.COLLISIONS: (
        "collisions",
        "Stores whose 64-bit key hash equalled the slot's previous block's (slot discarded first).",
    ),
    DiskTierMetrics.FAILED_JOBS: ("failed_jobs", "Disk jobs that failed (errno in the log)."),
}


class _KeyFile:
    """The full key of every slot, in a file beside the store (or in memory when the store is
    not persistent). Written before the slot's bytes; read once, at recovery."""

    def __init__(self, path: str | None, num_slots: int) -> None:
        size = num_slots * _RECORD
        self._file = None
        if path is None:
            self._map: mmap.mmap | bytearray = bytearray(size)
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, 0)  # another geometry: no key is trusted
            # Allocated now, so that a full disk fails here, not as SIGBUS at a later write.
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise OSError(error.errno, f"KvoffloadDiskTier: allocating the key file {path}: {error.strerror}") from error
                os.ftruncate(fd, size)  # a file system without fallocate
                os.pwrite(fd, bytes(size), 0)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._file = path

    def write(self, slot: int, key: bytes, hash64: int) -> None:
        at = slot * _RECORD
        record = hash64.to_bytes(8, "little") + len(key).to_bytes(2, "little") + key
        self._map[at : at + len(record)] = record

    def read(self, slot: int) -> tuple[int, bytes] | None:
        at = slot * _RECORD
        length = int.from_bytes(self._map[at + 8 : at + 10], "little")
        if length == 0 or length > _MAX_KEY:
            return None
        return int.from_bytes(self._map[at : at + 8], "little"), bytes(self._map[at + 10 : at + 10 + length])

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.flush()
            self._map.close()


@dataclass(slots=True)
class _DiskJob:
    vllm_job: int
    is_load: bool
    keys: list[bytes]
    slots: list[int]
    hashes: list[int]
    started: float
    all_keys_handled: bool  # False: some keys of a store were dropped, or of a load missing


@dataclass
class _Counters:
    blocks_lost: int = 0
    blocks_evicted: int = 0
    stores_dropped: int = 0
    collisions: int = 0
    failed_jobs: int = 0
    blocks_recovered: int = 0
    recovered_discarded: int = 0
    reported: dict[str, int] = field(default_factory=dict)  # what get_stats last sent


class KvoffloadDiskTier(SecondaryTierManager):
    """A vLLM secondary tier on kvoffload's block store (see the module docstring)."""

    medium: ClassVar[Medium] = Medium.STORAGE
    hash_function = staticmethod(key_hash64)  # tests replace it to force collisions

    def __init__(
        self,
        offloading_spec: "OffloadingSpec",
        primary_kv_view: memoryview,
        tier_type: str,
        capacity_bytes: int | None = None,
        root_dir: str | None = None,
        directories: list[str] | None = None,
        persistent: bool = True,
        backend: str = "auto",
        direct_io: bool = True,
        queue_depth: int = 32,
        io_threads: int = 4,
        enable_kv_events: bool = False,
        locality: str | None = None,
        backpressure_detector: "BackpressureDetector | None" = None,
    ) -> None:
        super().__init__(offloading_spec, primary_kv_view, tier_type, backpressure_detector)
        if not isinstance(capacity_bytes, int) or isinstance(capacity_bytes, bool) or capacity_bytes <= 0:
            raise ValueError(
                f"KvoffloadDiskTier: capacity_bytes must be a positive int (bytes of the tier's "
                f"files), got {capacity_bytes!r}"
            )
        if (root_dir is None) == (directories is None):
            raise ValueError(
                "KvoffloadDiskTier: give exactly one of root_dir (a directory) and directories "
                f"(a list), got root_dir={root_dir!r}, directories={directories!r}"
            )
        roots = [root_dir] if root_dir is not None else list(directories)
        if not roots or not all(isinstance(r, str) and r for r in roots):
            raise ValueError(f"KvoffloadDiskTier: directories must be non-empty paths, got {roots!r}")
        for root in roots:
            # Never created here: a mistyped mount point would put the tier on the wrong disk.
            if not os.path.isdir(root):
                raise FileNotFoundError(f"KvoffloadDiskTier: directory {root!r} does not exist")
        self.locality = Locality(locality) if locality is not None else None
        self._view = primary_kv_view

        store_dirs = [self._namespace(root, offloading_spec) for root in roots]

        def open_store() -> BlockStore:
            return BlockStore(
                store_dirs,
                self.block_size_bytes,
                capacity_bytes,
                persistent=persistent,
                backend=backend,
                direct_io=direct_io,
                queue_depth=queue_depth,
                io_threads=io_threads,
            )

        # The block store takes the directories' locks: a second process fails here, before the
        # key file is touched.
        try:
            self._store = open_store()
        except RuntimeFailure as error:
            # Files of another capacity, block size, directory count or format: this tier's own
            # files (the lock was free, so no process uses them); a cache starts empty instead.
            if "has another geometry" not in str(error) and "has format version" not in str(error):
                raise
            logger.warning(
                "KvoffloadDiskTier: %s; its previous blocks are discarded and the files made anew", error
            )
            for directory in store_dirs:
                for name in (_DATA_FILE, _META_FILE, KEY_FILE):
                    path = os.path.join(directory, name)
                    if os.path.exists(path):
                        os.unlink(path)
            self._store = open_store()
        num_slots = self._store.num_slots
        try:
            self._keys = _KeyFile(os.path.join(store_dirs[0], KEY_FILE) if persistent else None, num_slots)
        except BaseException:
            self._store.close()
            raise
        self._num_slots = num_slots
        self._resident: OrderedDict[bytes, int] = OrderedDict()  # ready blocks, oldest first
        self._pending: dict[bytes, int] = {}  # stores in flight
        self._pins: dict[int, int] = {}  # disk slot -> loads in flight reading it
        self._slot_hash: list[int | None] = [None] * num_slots  # the hash a slot's record holds
        self._free: list[int] = []
        self._jobs: dict[int, _DiskJob] = {}
        self._finished: list[JobResult] = []
        self._counters = _Counters()
        self.events: list[OffloadingEvent] | None = None
        if enable_kv_events and offloading_spec.kv_events_config.enable_kv_cache_events:
            self.events = []
        self._recover()
        logger.info(
            "KvoffloadDiskTier: %d slots of %d bytes (%d recovered); %s",
            num_slots,
            self.block_size_bytes,
            len(self._resident),
            self._store.description,
        )

    # --- set-up ---

    @staticmethod
    def _namespace(root: str, offloading_spec: "OffloadingSpec") -> str:
        """<root>/<model>_<digest of the run's layout>.kvoffload, created with its config."""
        mapper = FileMapper.from_offloading_spec(
            root_dir=root,
            offloading_spec=offloading_spec,
            blocks_per_file=offloading_spec.blocks_per_chunk,
        )
        path = mapper.base_path + ".kvoffload"
        os.makedirs(path, mode=0o700, exist_ok=True)
        config = os.path.join(path, "config.json")
        if not os.path.exists(config):
            with open(config, "w") as out:
                json.dump(mapper.get_run_config(), out, indent=2, sort_keys=True)
        return path

    def _recover(self) -> None:
        """Adopt the blocks the store recovered whose key file entry names a key of the same
        hash; discard the others (and duplicates of one key)."""
        taken = set()
        for slot, stored_hash in self._store.recovered:
            entry = self._keys.read(slot)
            valid = (
                entry is not None
                and entry[0] == stored_hash
                and (self.hash_function(entry[1]) & _MASK64) == stored_hash
                and entry[1] not in self._resident
            )
            if not valid:
                self._store.discard(slot)
                self._counters.recovered_discarded += 1
                continue
            self._resident[entry[1]] = slot
            self._slot_hash[slot] = stored_hash
            taken.add(slot)
        self._counters.blocks_recovered = len(self._resident)
        self._free = [s for s in range(self._num_slots - 1, -1, -1) if s not in taken]
        if self.events is not None and self._resident:
            self.events.append(self._event(list(self._resident), removed=False))

    # --- helpers ---

    def _event(self, keys: list[bytes], removed: bool) -> OffloadingEvent:
        return OffloadingEvent(keys=keys, medium=self.medium, removed=removed, locality=self.locality)

    def _take_slot(self, hash64: int) -> int | None:
        """A free slot, else the least recently used block's that no load reads (evicted); None
        when every block is being read. A slot whose record still holds this very hash (another
        key's: a 64-bit collision) is discarded first, so a crash mid-write can never leave it
        readable under the new key."""
        if not self._free:
            victim = next((k for k, s in self._resident.items() if s not in self._pins), None)
            if victim is None:
                return None
            self._free.append(self._resident.pop(victim))
            self._counters.blocks_evicted += 1
            if self.events is not None:
                self.events.append(self._event([victim], removed=True))
        slot = self._free.pop()
        if self._slot_hash[slot] == hash64:
            try:
                self._store.discard(slot)
            except Exception:  # the record could not be cleared: this key may not go there
                logger.exception("KvoffloadDiskTier: discarding slot %d failed", slot)
                self._free.append(slot)
                return None
            self._slot_hash[slot] = None
            self._counters.collisions += 1
        return slot

    def _finish(self, vllm_job: int, success: bool, **kwargs: Any) -> None:
        self._finished.append(JobResult(job_id=vllm_job, success=success, **kwargs))

    @staticmethod
    def _chunks(chunk_ids) -> np.ndarray:
        return np.asarray(chunk_ids, dtype=np.uint64)

    # --- SecondaryTierManager ---

    def lookup(self, key: OffloadKey, req_context: ReqContext) -> LookupResult:
        if key in self._resident:
            self._resident.move_to_end(key)
            return LookupResult.HIT
        return LookupResult.MISS

    def touch(self, keys, req_context: ReqContext) -> None:
        for key in keys:
            if key in self._resident:
                self._resident.move_to_end(key)

    def submit_store(self, job_metadata: TransferJob) -> None:
        keys, slots, hashes, chunks = [], [], [], []
        handled = True
        try:
            for key, chunk in zip(job_metadata.keys, self._chunks(job_metadata.chunk_ids).tolist()):
                key = bytes(key)
                if key in self._resident or key in self._pending:
                    continue  # already here, or on its way
                if len(key) > _MAX_KEY:
                    self._counters.stores_dropped += 1
                    handled = False
                    continue
                hash64 = self.hash_function(key) & _MASK64
                slot = self._take_slot(hash64)
                if slot is None:
                    self._counters.stores_dropped += 1
                    handled = False
                    continue
                self._pending[key] = slot
                keys.append(key)
                slots.append(slot)
                hashes.append(hash64)
                chunks.append(chunk)
                self._keys.write(slot, key, hash64)  # before the store may write the bytes
            if keys:
                disk_job = self._store.submit_write(slots, hashes, self._view, chunks, self.block_size_bytes)
        except Exception:
            # Nothing reached the store: the slots keep their records (and _slot_hash) as they were.
            logger.exception("KvoffloadDiskTier: a write of %d blocks could not be submitted", len(keys))
            for key, slot in zip(keys, slots):
                del self._pending[key]
                self._free.append(slot)
            self._counters.failed_jobs += 1
            self._finish(job_metadata.job_id, False)
            return
        if not keys:
            self._finish(job_metadata.job_id, handled, transfer_time=0.0, transfer_bytes=0)
            return
        for slot in slots:
            self._slot_hash[slot] = None  # the store clears each record before the new payload
        self._jobs[disk_job] = _DiskJob(job_metadata.job_id, False, keys, slots, hashes, time.monotonic(), handled)

    def submit_load(self, job_metadata: TransferJob) -> None:
        keys, slots, hashes, chunks = [], [], [], []
        handled = True
        for key, chunk in zip(job_metadata.keys, self._chunks(job_metadata.chunk_ids).tolist()):
            key = bytes(key)
            slot = self._resident.get(key)
            if slot is None or slot in slots:
                handled = False  # evicted since its lookup (vLLM recomputes it), or twice here
                continue
            self._resident.move_to_end(key)
            self._pins[slot] = self._pins.get(slot, 0) + 1
            keys.append(key)
            slots.append(slot)
            hashes.append(self._slot_hash[slot])
            chunks.append(chunk)
        if not keys:
            self._finish(job_metadata.job_id, False)
            return
        try:
            disk_job = self._store.submit_read(slots, hashes, self._view, chunks, self.block_size_bytes)
        except Exception:
            logger.exception("KvoffloadDiskTier: a read of %d blocks could not be submitted", len(keys))
            for key, slot in zip(keys, slots):
                self._unpin(key, slot)
            self._counters.failed_jobs += 1
            self._finish(job_metadata.job_id, False)
            return
        self._jobs[disk_job] = _DiskJob(job_metadata.job_id, True, keys, slots, hashes, time.monotonic(), handled)

    def _unpin(self, key: bytes, slot: int) -> None:
        count = self._pins[slot] - 1
        if count:
            self._pins[slot] = count
            return
        del self._pins[slot]
        if self._resident.get(key) == slot:
            return
        # The block was dropped while being read: its slot is free now.
        try:
            self._store.discard(slot)
            self._slot_hash[slot] = None
        except Exception:  # its record stays (and _slot_hash with it); a write clears it later
            logger.exception("KvoffloadDiskTier: discarding slot %d failed", slot)
        self._free.append(slot)

    def _drop_lost(self, key: bytes, slot: int) -> None:
        if self._resident.get(key) == slot:  # not a newer copy of the key elsewhere
            del self._resident[key]
            self._counters.blocks_lost += 1
            if self.events is not None:
                self.events.append(self._event([key], removed=True))

    def _complete(self, disk_job: int, status) -> None:
        job = self._jobs.pop(disk_job)
        elapsed = time.monotonic() - job.started
        failed = status.state == DiskJobState.FAILED
        if failed:
            self._counters.failed_jobs += 1
            logger.warning("KvoffloadDiskTier: %s job failed: %s", "read" if job.is_load else "write", status.error)
        if not job.is_load:
            for key, slot, hash64 in zip(job.keys, job.slots, job.hashes):
                del self._pending[key]
                if failed:
                    self._free.append(slot)  # a failed write leaves its slots empty
                else:
                    self._slot_hash[slot] = hash64
                    self._resident[key] = slot
            if self.events is not None and not failed:
                self.events.append(self._event(job.keys, removed=False))
            self._finish(
                job.vllm_job,
                job.all_keys_handled and not failed,
                transfer_time=elapsed,
                transfer_bytes=0 if failed else len(job.keys) * self.block_size_bytes,
            )
            return
        lost = set(job.keys) if failed else {job.keys[job.slots.index(s)] for s in status.lost}
        for key, slot in zip(job.keys, job.slots):
            if key in lost:
                self._drop_lost(key, slot)
            self._unpin(key, slot)
        good = [k for k in job.keys if k not in lost]
        success = job.all_keys_handled and not lost
        self._finish(
            job.vllm_job,
            success,
            successful_keys=None if success else tuple(good),
            transfer_time=elapsed,
            transfer_bytes=len(good) * self.block_size_bytes,
        )

    def get_finished_jobs(self) -> Iterable[JobResult]:
        for disk_job in list(self._jobs):
            status = self._store.poll(disk_job)
            if status.state != DiskJobState.PENDING:
                self._complete(disk_job, status)
        finished, self._finished = self._finished, []
        return finished

    def has_pending_work(self) -> bool:
        return bool(self._jobs)

    def take_events(self) -> Iterable[OffloadingEvent]:
        if self.events:
            events, self.events = self.events, []
            return events
        return ()

    def on_new_request(self, req_context: ReqContext) -> RequestOffloadingContext:
        return RequestOffloadingContext()

    def drain_jobs(self) -> None:
        for disk_job in list(self._jobs):
            self._complete(disk_job, self._store.wait(disk_job))

    def shutdown(self) -> None:
        if self._store is None:
            return
        self.drain_jobs()
        self._store.close()
        self._keys.close()
        self._store = None

    # --- metrics ---

    @classmethod
    def build_metric_definitions(cls, extra_config: dict[str, Any]) -> dict[str, OffloadingMetricMetadata]:
        metrics: dict[str, OffloadingMetricMetadata] = {
            name: OffloadingCounterMetadata(documentation=doc) for name, (_, doc) in _COUNTERS.items()
        }
        metrics[DiskTierMetrics.RESIDENT_BLOCKS] = OffloadingGaugeMetadata(
            documentation="Blocks held by the kvoffload disk tier."
        )
        metrics[DiskTierMetrics.CAPACITY_BLOCKS] = OffloadingGaugeMetadata(
            documentation="Slots of the kvoffload disk tier (its capacity in blocks)."
        )
        return metrics

    def get_stats(self):
        from vllm.distributed.kv_transfer.kv_connector.v1.offloading.metrics import (
            OffloadingConnectorStats,
        )

        stats = OffloadingConnectorStats()
        for name, (attribute, _) in _COUNTERS.items():
            value = getattr(self._counters, attribute)
            increase = value - self._counters.reported.get(name, 0)
            if increase:
                stats.increase_counter(name, increase)
                self._counters.reported[name] = value
        stats.set_gauge(DiskTierMetrics.RESIDENT_BLOCKS, len(self._resident))
        stats.set_gauge(DiskTierMetrics.CAPACITY_BLOCKS, self._num_slots)
        return stats

    # --- figures, for tests and operators ---

    @property
    def num_slots(self) -> int:
        return self._num_slots

    @property
    def num_resident(self) -> int:
        return len(self._resident)

    @property
    def counters(self) -> dict[str, int]:
        c = self._counters
        return {
            "blocks_lost": c.blocks_lost,
            "blocks_evicted": c.blocks_evicted,
            "stores_dropped": c.stores_dropped,
            "collisions": c.collisions,
            "failed_jobs": c.failed_jobs,
            "blocks_recovered": c.blocks_recovered,
            "recovered_discarded": c.recovered_discarded,
        }

    @property
    def store(self) -> BlockStore:
        return self._store
