/**
 * @file transfer_engine.hpp
 * @brief Moves batches of scattered KV blocks between the GPU and host slots.
 *
 * Ordering contract (for every engine):
 * - submit() validates the request, enqueues the work and returns; it never waits for the GPU
 *   or for worker threads. A request it rejects throws and leaves the engine as it was.
 * - A store reads its GPU blocks only after the request's wait_event (if any) has completed,
 *   and owns the destination host slots until its job completes. A load writes its GPU blocks
 *   only after the request's wait_event (if any) has completed.
 * - Stores run on a dedicated store stream, loads on a dedicated load stream (the CUDA
 *   engine), so a store and a load overlap. Jobs of one direction complete in submission
 *   order on the CUDA engine; the host engine promises no order between jobs.
 * - The engine does not order jobs against each other: a caller must not load a slot whose
 *   store has not completed, or store into a slot a pending load reads.
 * - poll() and wait() report each job's terminal state (done or failed, with the error) once:
 *   after that the job is retired, its id is unknown, and its events may be reused.
 */
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_request.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvoffload::transfer {

/// Construction options of an engine (designated initializers welcome).
struct TransferEngineOptions {
  int device{0};             ///< CUDA device of the KV cache
  bool force_host{false};    ///< use the host engine even when a CUDA device exists
  unsigned host_threads{2};  ///< worker threads of the host engine
  /// SM budget of the kernel method when a request says 0, in SMs' worth of CTAs (see
  /// TransferRequest::sm_budget).
  int default_sm_budget{16};
  /// Staged method: bytes of one piece of the device staging ring (rounded down to whole
  /// slots, at least one).
  std::size_t staging_piece_bytes{std::size_t{8} << 20};
  std::size_t staging_pieces{4};  ///< pieces in the ring (gather of one overlaps DMA of another)
  /// Threads per CTA of the copy kernel (kernel method and staged gather / scatter): a multiple
  /// of 32 in [32, 1024]. Small CTAs start on an SM that compute only partly fills; a CTA of
  /// 1024 needs a whole SM's register file, so it waits for compute to drain one.
  int cta_threads{256};
};

/**
 * @brief The engine interface. Not thread-safe across callers beyond what each method says:
 * every method takes an internal lock, so calls from several threads are serialized.
 */
class TransferEngine {
 public:
  virtual ~TransferEngine()                        = default;
  TransferEngine(const TransferEngine&)            = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  /**
   * @brief Enqueue one batch.
   * @return the job's id
   * @throws logic_error naming the offending value: mismatched list lengths, an out-of-range
   *         GPU block or host slot id, duplicate destinations (host slots of a store, GPU
   *         blocks of a load), a method this engine cannot run, a negative SM budget
   */
  [[nodiscard]] virtual JobId submit(const TransferRequest& request) = 0;

  /**
   * @brief The job's state without blocking. A terminal state is reported once (see the
   * ordering contract).
   * @throws logic_error for an unknown or already retired id
   */
  virtual JobStatus poll(JobId job) = 0;

  /**
   * @brief Block until the job is done or failed, and report it (it is then retired). Other
   * threads may submit and poll meanwhile, but one job is waited on or polled by one thread.
   * @throws logic_error for an unknown or already retired id
   */
  virtual JobStatus wait(JobId job) = 0;

  /**
   * @brief CUDA events of a pending job, for a runtime's streams to wait on: one per layer
   * for a load submitted with per_layer_events (event l completes when layer l's blocks are
   * written), else one for the whole job. Empty on the host engine.
   * Valid until the job is retired.
   * @throws logic_error for an unknown or already retired id
   */
  [[nodiscard]] virtual std::vector<cudaEvent_t> completion_events(JobId job) = 0;

  /// True when this engine moves bytes with memcpy on host threads (no CUDA device used).
  [[nodiscard]] virtual bool is_host_fallback() const noexcept = 0;

  /// What this engine runs on, in words (device name, or "host engine, no CUDA device: ...").
  [[nodiscard]] virtual std::string description() const = 0;

  /// The layout this engine was built for.
  [[nodiscard]] virtual const KvLayout& layout() const noexcept = 0;

  /// The host slots this engine was built for.
  [[nodiscard]] virtual const HostSlots& host_slots() const noexcept = 0;

 protected:
  TransferEngine() = default;
};

/**
 * @brief The CUDA engine when a CUDA device is usable (and force_host is false); the host
 * engine (whose "GPU" tensors are ordinary host memory) when there is no NVIDIA driver or no
 * GPU (cuda_environment() says kNoDevice). description() says which, and why.
 * @param layout the GPU KV cache (device memory for the CUDA engine)
 * @param host the host slots; pinned (e.g. a PinnedHostPool) for the CUDA engine
 * @throws logic_error when a host slot is smaller than layout.host_slot_bytes() or the host
 *         slots are not pinned on the CUDA engine
 * @throws logic_error when a KV tensor is not device memory of `options.device`
 * @throws runtime_error when a driver is installed but unusable (too old for this build's CUDA
 *         runtime: the message names the version found and the one needed; another CUDA error:
 *         its name), or when the CUDA runtime fails
 */
std::unique_ptr<TransferEngine> make_transfer_engine(const KvLayout& layout,
                                                     const HostSlots& host,
                                                     const TransferEngineOptions& options = {});

/**
 * @brief The host engine, always (what make_transfer_engine returns without a device).
 * @throws logic_error when a host slot is smaller than layout.host_slot_bytes()
 */
std::unique_ptr<TransferEngine> make_host_transfer_engine(
    const KvLayout& layout, const HostSlots& host, const TransferEngineOptions& options = {});

/// Whether this process can use a CUDA device.
enum class CudaAvailability : std::uint8_t {
  kUsable,    ///< a GPU is visible and the driver suits this build's CUDA runtime
  kNoDevice,  ///< no NVIDIA driver at all, or the driver sees no GPU: the host engine runs
  kUnusable,  ///< a driver is installed but CUDA cannot use it (e.g. too old): an error
};

/// What cuda_environment() found, with a message in the user's terms.
struct CudaEnvironment {
  CudaAvailability availability{CudaAvailability::kNoDevice};
  /// kNoDevice: "no NVIDIA driver or GPU found"; kUnusable: the driver version found and the
  /// one needed, or the CUDA error; kUsable: the device count and the driver's CUDA version.
  std::string message;
};

/// @brief Probe the CUDA runtime, the driver and /proc/driver/nvidia/version. Never throws.
CudaEnvironment cuda_environment();

/// @brief Whether a CUDA device can be used here; `reason` gets why not (if non-null): the
/// message of cuda_environment(). False for kUnusable too (make_transfer_engine then throws).
bool cuda_device_available(std::string* reason = nullptr);

/// What choose_method() decides from.
struct MethodInputs {
  std::size_t chunk_bytes{0};    ///< smallest chunk of the layout
  std::size_t total_bytes{0};    ///< bytes the request moves
  bool gpu_busy{false};          ///< the caller runs compute beside the transfer
  bool chunks_aligned_16{true};  ///< every chunk address and size is a multiple of 16
  bool kernel_available{true};   ///< the host slots are mapped into the device
};

/**
 * @brief The auto rule, from the anchors file's measured H100 data (docs/transfer.md):
 * GPU busy: chunks of 1 MiB and more -> kBatchMemcpy, else kStaged (the copy engines cost the
 * SMs nothing; the staged gather occupies them for a few percent of the transfer); GPU idle:
 * kKernel when the chunks are 16-byte aligned and the kernel can map the host slots, else
 * kStaged.
 */
Method choose_method(const MethodInputs& inputs) noexcept;

}  // namespace kvoffload::transfer
