"""The experimental KvoffloadOffloadingSpec: vLLM 0.33's CPU offloading with kvoffload's
transfer engine as the worker, built by vLLM's OffloadingSpecFactory from a spec loaded by
module path. Without a GPU the engine is the host engine and CPU tensors stand in for vLLM's GPU
KV cache: this checks the adapter (block and slot mapping, job reports), not the CUDA path,
which scripts/gpu-check.sh owes."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("vllm", reason="vLLM 0.33 is not installed (scripts/vllm-test.sh installs it)")

import torch  # noqa: E402

from conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import vllm_policy  # noqa: E402

import kvoffload.vllm as kvllm  # noqa: E402
from vllm.v1.kv_offload.base import (  # noqa: E402
    CanonicalKVCacheRef,
    CanonicalKVCaches,
    CanonicalKVCacheTensor,
    GPULoadStoreSpec,
    ReqContext,
    make_offload_key,
)
from vllm.v1.kv_offload.factory import OffloadingSpecFactory  # noqa: E402

PAGE, LAYERS, GPU_BLOCKS, CHUNKS = 4096, 2, 16, 8


def kv_caches(groups=1):
    generator = torch.Generator().manual_seed(7)
    tensors = [
        CanonicalKVCacheTensor(
            tensor=torch.randint(-128, 127, (GPU_BLOCKS, PAGE), dtype=torch.int8, generator=generator),
            page_size_bytes=PAGE,
        )
        for _ in range(LAYERS)
    ]
    refs = [CanonicalKVCacheRef(tensor_idx=t, page_size_bytes=PAGE) for t in range(LAYERS)]
    return CanonicalKVCaches(tensors=tensors, group_data_refs=[refs] * groups)


def spec(**extra):
    config = {
        "spec_name": "KvoffloadOffloadingSpec",
        "spec_module_path": "kvoffload.vllm",
        "cpu_bytes_to_use": CHUNKS * LAYERS * PAGE,
        "eviction_policy": "kvoffload_lru",
        "cache_policy_module_path": "kvoffload.vllm",
        **extra,
    }
    return OffloadingSpecFactory.create_spec(
        vllm_policy.offloading_config(config, f"kvoffload-worker-{os.getpid()}", LAYERS * PAGE))


def finished(worker, job_id):
    for _ in range(100_000):
        for result in worker.get_finished():
            if result.job_id == job_id:
                return result
    raise AssertionError(f"job {job_id} was never reported")


def test_blocks_go_to_cpu_chunks_and_back_to_other_gpu_blocks_exactly():
    s = spec()
    assert isinstance(s, kvllm.KvoffloadOffloadingSpec) and s.num_chunks == CHUNKS
    caches = kv_caches()
    original = [t.tensor.clone() for t in caches.tensors]
    manager = s.get_manager()
    worker = s.create_worker(caches)
    assert worker.engine.is_host_fallback and worker.engine.num_host_slots == CHUNKS
    keys = [make_offload_key(bytes([i]) * 32, 0) for i in range(3)]
    context = ReqContext(req_id="r")
    out = manager.prepare_store(keys, context)
    assert worker.submit_store(1, GPULoadStoreSpec([3, 5, 7], [3], [0]), out.store_spec)
    worker.wait({1})
    result = finished(worker, 1)
    assert result.success and result.transfer_size == 3 * LAYERS * PAGE
    manager.complete_store(out.keys_to_store, context, True)

    for t in caches.tensors:
        t.tensor[10:13] = 0
    load = manager.prepare_load(keys[::-1], context)  # in another order
    assert worker.submit_load(2, load, GPULoadStoreSpec([10, 11, 12], [3], [0]))
    assert finished(worker, 2).success
    manager.complete_load(keys[::-1], context)
    for t, before in zip(caches.tensors, original):
        assert torch.equal(t.tensor[10], before[7]) and torch.equal(t.tensor[12], before[3])
        assert torch.equal(t.tensor[11], before[5])
    worker.shutdown()


def test_a_job_the_engine_refuses_is_reported_as_not_submitted():
    s = spec()
    manager = s.get_manager()
    worker = s.create_worker(kv_caches())
    out = manager.prepare_store([make_offload_key(b"z" * 32, 0)], ReqContext(req_id="r"))
    assert not worker.submit_store(1, GPULoadStoreSpec([GPU_BLOCKS + 5], [1], [0]), out.store_spec)
    assert worker.get_finished() == []
    worker.shutdown()


def test_what_it_cannot_do_yet_is_refused_at_start_naming_it():
    with pytest.raises(NotImplementedError, match="2 KV cache groups"):
        spec().create_worker(kv_caches(groups=2))
    s = spec()
    s.blocks_per_chunk = 2  # as a larger offloaded block size would set it
    with pytest.raises(NotImplementedError, match="blocks_per_chunk 2"):
        s.create_worker(kv_caches())
    with pytest.raises(NotImplementedError, match="secondary_tiers are not supported yet"):
        spec(secondary_tiers=[{"type": "KvoffloadDiskTier", "module_path": "kvoffload.vllm"}])
