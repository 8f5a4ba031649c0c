"""What the tests share: one request served the way a runtime serves it."""

from __future__ import annotations


def serve(manager, hashes) -> int:
    """lookup, touch, load the ready prefix, store the rest (confirming a tiered manager's
    transfer plans at once, as an engine that finishes instantly would); returns the prefix."""
    hit = manager.lookup(hashes) or 0
    manager.touch(hashes)
    if hit:
        manager.prepare_load(hashes[:hit])
        manager.complete_load(hashes[:hit])
    out = manager.prepare_store(hashes[hit:])
    if manager.tiered and manager.plans_transfers:
        for plan in manager.take_transfer_plans():
            manager.complete_transfer(plan.id)
    if out is not None:
        manager.complete_store(out.block_hashes_to_store)
    return hit
