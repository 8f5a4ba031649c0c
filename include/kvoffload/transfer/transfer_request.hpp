/**
 * @file transfer_request.hpp
 * @brief One batch of KV blocks to move, and what the engine reports about it.
 */
#pragma once

#include <kvoffload/types.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvoffload::transfer {

/// Which way the bytes go.
enum class Direction : std::uint8_t {
  kStore,  ///< GPU blocks -> host slots (device to host)
  kLoad,   ///< host slots -> GPU blocks (host to device)
};

/// How the bytes are moved (see docs/transfer.md for the measured trade-offs).
enum class Method : std::uint8_t {
  kAuto,            ///< chosen by choose_method() from chunk size, batch size and gpu_busy
  kKernel,          ///< our SM copy kernel, zero-copy on mapped pinned memory, SM budget
  kStaged,          ///< gather/scatter kernel into a device staging ring + copy-engine DMA
  kBatchMemcpy,     ///< copy engines through one cudaMemcpyBatchAsync
  kPerChunkMemcpy,  ///< one cudaMemcpyAsync per chunk (the historical baseline)
};

/// @brief Name of a direction ("store", "load").
const char* to_string(Direction direction) noexcept;
/// @brief Name of a method ("auto", "kernel", "staged", "batch", "per-chunk").
const char* to_string(Method method) noexcept;

/// Identity of a submitted job; never reused by one engine.
using JobId = std::uint64_t;

/**
 * @brief One batch of blocks to move.
 *
 * `host_slots[i]` holds the GPU blocks `gpu_blocks[i * k .. i * k + k - 1]`, with
 * k = KvLayout::gpu_blocks_per_slot(), in that order.
 */
struct TransferRequest {
  Direction direction{Direction::kStore};
  std::vector<BlockId> gpu_blocks;  ///< GPU block ids, k per host slot
  std::vector<BlockId> host_slots;  ///< host slot ids
  Method method{Method::kAuto};
  /// SMs' worth of CTAs the kernel method may occupy (budget x the CTAs of
  /// TransferEngineOptions::cta_threads that fit one SM); 0 = the engine's default. Small jobs
  /// use fewer. The CTAs may land on more SMs than the budget (the scheduler spreads them), but
  /// never hold more than that many SMs' worth of registers and threads.
  int sm_budget{0};
  /// The caller is running compute on the GPU: prefer methods that leave the SMs alone.
  bool gpu_busy{false};
  /// Stores: the engine waits for this event (e.g. recorded on the compute stream) before it
  /// reads GPU blocks. Loads: waited before the GPU blocks are written. Null: no wait.
  cudaEvent_t wait_event{nullptr};
  /// Loads: record one event per layer (TransferEngine::completion_events).
  bool per_layer_events{false};
};

/// Where a job is.
enum class JobState : std::uint8_t { kPending, kDone, kFailed };

/// What poll() and wait() report.
struct JobStatus {
  JobState state{JobState::kPending};
  Method method{Method::kAuto};  ///< the method that ran (never kAuto once submitted)
  std::string error;             ///< why the job failed (kFailed only)
};

}  // namespace kvoffload::transfer
