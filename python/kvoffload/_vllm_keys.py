"""The 64-bit kvoffload BlockHash of a vLLM offload key (shared by kvoffload.vllm's policies and
its disk tier; needs no vLLM)."""

from __future__ import annotations

import hashlib


def key_hash64(key: bytes | int) -> int:
    """The 64-bit kvoffload BlockHash of a vLLM offload key (bytes, or a non-negative int):
    the first 8 bytes of its BLAKE2b digest, little-endian."""
    if isinstance(key, int):
        if key < 0:
            raise ValueError(f"kvoffload.vllm: negative offload key {key}")
        key = key.to_bytes(max(1, (key.bit_length() + 7) // 8), "big")
    elif not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"kvoffload.vllm: offload key {key!r} is neither bytes nor int")
    return int.from_bytes(hashlib.blake2b(bytes(key), digest_size=8).digest(), "little")
