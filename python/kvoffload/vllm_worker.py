"""EXPERIMENTAL, never run on a GPU yet: a vLLM 0.33 ``OffloadingSpec`` whose worker moves
KV blocks between vLLM's GPU KV cache and CPU memory with kvoffload's transfer engine (our
gather/scatter kernels and pinned host pool) instead of vLLM's own copy path.

Select it with ``"spec_name": "KvoffloadOffloadingSpec", "spec_module_path": "kvoffload.vllm"``
in ``kv_connector_extra_config`` (with ``cpu_bytes_to_use``, and any ``eviction_policy``, ours
included). The scheduler side is vLLM's ``CPUOffloadingManager``, unchanged; each worker owns
its CPU chunks as kvoffload host slots (one chunk = one host slot), which only it reads and
writes, so their byte layout is kvoffload's (block-major), not vLLM's.

What it does not do yet, and refuses at start-up with a message saying so: more than one GPU
block per offloaded chunk (``blocks_per_chunk`` > 1, where a load may start inside a chunk),
more than one KV cache group (hybrid models), vLLM's canonical (parallelism-free) layout, and a
secondary tier below it (that needs vLLM's shared CPU region). Its CPU tests run the host
engine on CPU tensors standing in for the GPU; the CUDA path is owed a GPU run
(``scripts/gpu-check.sh``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from vllm.v1.kv_offload.base import (
    CanonicalKVCaches,
    GPULoadStoreSpec,
    LoadStoreSpec,
    OffloadingWorker,
    TransferResult,
)
from vllm.v1.kv_offload.cpu.spec import CPUOffloadingSpec

from ._kvoffload import TransferState, make_transfer_engine

__all__ = ["KvoffloadOffloadingSpec", "KvoffloadOffloadingWorker"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    vllm_job: int
    bytes: int
    started: float


class KvoffloadOffloadingWorker(OffloadingWorker):
    """vLLM's OffloadingWorker on a kvoffload TransferEngine (see the module docstring)."""

    def __init__(self, kv_caches: CanonicalKVCaches, blocks_per_chunk: int, num_cpu_chunks: int) -> None:
        if blocks_per_chunk != 1:
            raise NotImplementedError(
                f"KvoffloadOffloadingSpec: blocks_per_chunk {blocks_per_chunk} is not supported "
                "yet (one GPU block per offloaded chunk only); use vLLM's CPUOffloadingSpec"
            )
        if len(kv_caches.group_data_refs) != 1:
            raise NotImplementedError(
                f"KvoffloadOffloadingSpec: {len(kv_caches.group_data_refs)} KV cache groups are "
                "not supported yet (one group only); use vLLM's CPUOffloadingSpec"
            )
        if num_cpu_chunks <= 0:
            raise ValueError(f"KvoffloadOffloadingSpec: {num_cpu_chunks} CPU chunks: raise cpu_bytes_to_use")
        # One kvoffload tensor per vLLM tensor the group's layers use, in the refs' order.
        tensors, seen = [], {}  # vLLM tensor index -> the largest page a layer reads from it
        for ref in kv_caches.group_data_refs[0]:
            seen[ref.tensor_idx] = max(seen.get(ref.tensor_idx, 0), ref.page_size_bytes)
        num_blocks = None
        for layer, (t_idx, chunk) in enumerate(seen.items()):
            tensor = kv_caches.tensors[t_idx].tensor
            blocks = tensor.shape[0]
            if num_blocks is None:
                num_blocks = blocks
            elif blocks != num_blocks:
                raise ValueError(
                    f"KvoffloadOffloadingSpec: tensor {t_idx} has {blocks} blocks, tensor 0 "
                    f"{num_blocks}: every KV tensor must have the same block count"
                )
            stride = tensor.stride(0) * tensor.element_size()
            if stride < chunk or not tensor[0].is_contiguous():
                raise ValueError(
                    f"KvoffloadOffloadingSpec: tensor {t_idx}'s blocks are not contiguous pages "
                    f"(stride {stride} bytes, page {chunk})"
                )
            tensors.append((tensor.data_ptr(), stride, chunk, layer))
        # CPU tensors (the tests' stand-in for the GPU) need the host engine even beside a GPU.
        on_gpu = tensor.is_cuda
        device = (tensor.device.index or 0) if on_gpu else 0
        self._engine = make_transfer_engine(tensors, num_blocks, num_cpu_chunks, 1, not on_gpu, device)
        self._bytes_per_block = sum(t[2] for t in tensors)
        self._jobs: dict[int, _Job] = {}  # engine job -> vLLM job
        self._waited: list[TransferResult] = []  # finished inside wait(), reported next
        self._keep_alive = kv_caches  # the engine holds raw addresses into these tensors
        logger.info("KvoffloadOffloadingWorker (experimental): %s", self._engine.description)

    @property
    def engine(self):
        return self._engine

    def _submit(self, store: bool, job_id: int, gpu_spec: GPULoadStoreSpec, cpu_spec: LoadStoreSpec) -> bool:
        if len(gpu_spec.group_sizes) != 1:
            logger.error("KvoffloadOffloadingWorker: job %d has %d KV groups", job_id, len(gpu_spec.group_sizes))
            return False
        gpu_blocks = np.asarray(gpu_spec.block_ids, dtype=np.int64).tolist()
        host_slots = np.asarray(cpu_spec.block_ids, dtype=np.int64).tolist()
        try:
            submit = self._engine.store if store else self._engine.load
            engine_job = submit(gpu_blocks, host_slots)
        except Exception:
            logger.exception("KvoffloadOffloadingWorker: job %d was refused", job_id)
            return False
        self._jobs[engine_job] = _Job(job_id, len(gpu_blocks) * self._bytes_per_block, time.monotonic())
        return True

    def submit_store(self, job_id: int, src_spec: GPULoadStoreSpec, dst_spec: LoadStoreSpec) -> bool:
        return self._submit(True, job_id, src_spec, dst_spec)

    def submit_load(self, job_id: int, src_spec: LoadStoreSpec, dst_spec: GPULoadStoreSpec,
                    expedited: bool = False) -> bool:
        return self._submit(False, job_id, dst_spec, src_spec)

    def _result(self, engine_job: int, status) -> TransferResult:
        job = self._jobs.pop(engine_job)
        ok = status.state == TransferState.DONE
        if not ok:
            logger.warning("KvoffloadOffloadingWorker: job %d failed: %s", job.vllm_job, status.error)
        return TransferResult(job_id=job.vllm_job, success=ok, transfer_size=job.bytes if ok else 0,
                              transfer_time=time.monotonic() - job.started)

    def get_finished(self) -> list[TransferResult]:
        finished = []
        for engine_job in list(self._jobs):
            status = self._engine.poll(engine_job)
            if status.state != TransferState.PENDING:
                finished.append(self._result(engine_job, status))
        waited, self._waited = self._waited, []
        return waited + finished

    def wait(self, job_ids: set[int]) -> None:
        for engine_job in [e for e, j in self._jobs.items() if j.vllm_job in job_ids]:
            self._waited.append(self._result(engine_job, self._engine.wait(engine_job)))

    def shutdown(self) -> None:
        for engine_job in list(self._jobs):
            self._engine.wait(engine_job)
        self._jobs.clear()
        self._engine = None


class KvoffloadOffloadingSpec(CPUOffloadingSpec):
    """vLLM's CPU offloading with kvoffload's transfer engine as the worker (experimental)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        if self.extra_config.get("secondary_tiers"):
            raise NotImplementedError(
                "KvoffloadOffloadingSpec: secondary_tiers are not supported yet (they read vLLM's "
                "shared CPU region, which this worker does not use); use TieringOffloadingSpec"
            )

    def _uses_shared_region(self) -> bool:
        return False  # each worker owns its CPU chunks as kvoffload host slots

    def create_worker(self, kv_caches: CanonicalKVCaches) -> KvoffloadOffloadingWorker:
        if self.config.canonical_layout:
            raise NotImplementedError(
                "KvoffloadOffloadingSpec: canonical_layout is not supported yet; remove it from "
                "kv_connector_extra_config or use vLLM's CPUOffloadingSpec"
            )
        return KvoffloadOffloadingWorker(kv_caches, self.blocks_per_chunk, self.num_chunks)
