"""kvoffload: offload the KV cache of LLM inference from GPU memory to host RAM, from Python.

Managers decide which KV blocks (identified by 64-bit block hashes) live in their slots and
which to evict; they implement vLLM v1's ``OffloadingManager`` contract and never move bytes:
the caller copies into the slots a manager hands out, then confirms. The policies run in C++
(kvoffload's core), called from Python with the GIL released.

Using a manager::

    import kvoffload

    cache = kvoffload.make_manager("arc", num_blocks=100_000, block_size=2 << 20)

    hashes = [...]                                # a request's prefix-chained block hashes
    hit = cache.lookup(hashes) or 0               # ready leading prefix; changes nothing
    cache.touch(hashes)                           # recency: hashes[0] ends most recent

    load = cache.prepare_load(hashes[:hit])       # pins; load.block_ids in input order
    # ... copy host slots load.block_ids -> GPU ...
    cache.complete_load(hashes[:hit])             # unpins

    store = cache.prepare_store(hashes[hit:])     # all or nothing: None when no room
    if store is not None:
        # ... copy GPU -> host slots store.store_spec.block_ids ...
        cache.complete_store(store.block_hashes_to_store, success=True)
    for event in cache.take_events():             # stored / removed hashes, for a router
        ...

A block is *pending* after ``prepare_store`` (not a hit, not loadable, not evictable), *ready*
after ``complete_store(..., True)``, and *pinned* while ``prepare_load`` references outnumber
``complete_load`` calls. A policy with admission (``density``, or ``+filter``) may leave new
hashes out of ``block_hashes_to_store``: copy exactly the blocks it names.

Hashes: an int, any iterable of ints, or a buffer of 64-bit integers (``array('Q')``, a
``memoryview``, a numpy ``uint64`` array), which is read in place without a copy; that is the
fast way to pass large batches. Negative values, values of 2**64 or more, and ``bytes`` are
refused.

Errors: misuse raises :class:`LogicError` (a ``ValueError``) carrying the C++ message, which
names the offending hash or value, and changes nothing; failures of the environment raise
:class:`RuntimeFailure` (a ``RuntimeError``).

Threads: every call releases the GIL while the C++ manager works, and calls on one manager are
serialised by a lock of its own, so several Python threads may share a manager.

Policies (``policy_specs()``; ``spec_help()`` lists every option): ``lru``, ``arc``,
``weighted:frequency_weight=0.5``, ``density`` (learned hit density with admission: touch each
request's hashes), ``tiered:hot=0.2,warm=0.3`` (tiers with transfer plans:
``take_transfer_plans``/``complete_transfer``), decorators ``+filter:threshold=2``, ``+mutex``,
``+sharded:shards=N``.

Metrics: ``manager.metrics_text()`` or ``metrics_text({"name": manager, ...})`` give every
counter and gauge in the Prometheus text format (``kvoffload_`` prefix).

Moving bytes: ``make_offloader(spec, tensors, num_gpu_blocks, host_slots)`` pairs a manager
with the transfer engine (the CUDA engine on a GPU, else the host engine): ``store``/``load`` by
hash and GPU block ids, ``poll``/``wait`` for finished jobs. GPU addresses (``tensor.data_ptr()``)
and CUDA events are passed as ints; the memory must outlive the Offloader.

The transfer engine alone: ``make_transfer_engine(tensors, num_gpu_blocks, host_slots)`` owns its
host slots (pinned with a GPU) and moves blocks by GPU block and host slot id
(``store``/``load``, ``poll``/``wait``); no manager. kvoffload.vllm's experimental worker uses it.

The disk tier: ``BlockStore(directories, block_bytes, capacity_bytes, persistent=True)`` keeps
fixed-size blocks in preallocated files (O_DIRECT and io_uring where available, CRC32C checked on
every read, recovered after a restart); ``submit_write``/``submit_read`` take disk slots, hashes
and a buffer (e.g. a memoryview of host memory) with the buffer slot of each block, and
``poll``/``wait`` report each job once. Inside vLLM, :mod:`kvoffload.vllm` offers it as a
``secondary_tiers`` entry (``KvoffloadDiskTier``).

Trace replay: :mod:`kvoffload.replay` reads Mooncake JSONL traces with the C++ reader of
``kvoffload-replay`` and runs its reference replay, to check a Python-driven replay against it.
"""

from ._kvoffload import (
    BlockStore,
    DiskJobState,
    DiskJobStatus,
    LoadStoreSpec,
    LogicError,
    Manager,
    FinishedJob,
    ManagerStats,
    Medium,
    Offloader,
    OffloadingEvent,
    PrepareStoreOutput,
    RuntimeFailure,
    StoreOutcome,
    StoreTicket,
    TieredStats,
    TierLocation,
    TransferEngine,
    TransferState,
    TransferStatus,
    TransferKind,
    TransferPlan,
    __version__,
    make_manager,
    make_offloader,
    make_transfer_engine,
    metrics_text,
    policy_specs,
    spec_help,
)
from . import replay

__all__ = [
    "BlockStore",
    "DiskJobState",
    "DiskJobStatus",
    "LoadStoreSpec",
    "FinishedJob",
    "LogicError",
    "Manager",
    "ManagerStats",
    "Medium",
    "OffloadingEvent",
    "Offloader",
    "PrepareStoreOutput",
    "RuntimeFailure",
    "StoreOutcome",
    "StoreTicket",
    "TierLocation",
    "TieredStats",
    "TransferEngine",
    "TransferKind",
    "TransferState",
    "TransferStatus",
    "TransferPlan",
    "__version__",
    "make_manager",
    "make_offloader",
    "make_transfer_engine",
    "metrics_text",
    "policy_specs",
    "replay",
    "spec_help",
]
