/**
 * @file offloader.hpp
 * @brief A manager and a transfer engine kept in step: offload and bring back KV blocks by
 * hash, without handling slots, pending states or pins by hand.
 *
 * The manager decides and the engine moves bytes. Between them sit rules a runtime would
 * otherwise have to get right: copy exactly the blocks `prepare_store` names, into the slots
 * it names; confirm a store only once its bytes have landed, and abandon it if the copy
 * failed; keep a block pinned until its load has finished reading the host slot, so no store
 * reuses the slot underneath it. The Offloader does all of that:
 * - store(): prepare_store, then one store job for the new blocks. They stay pending (no hit,
 *   not loadable) until the job finishes; then poll() or wait() confirms them, or drops them
 *   if the job failed.
 * - load(): prepare_load (pins), then one load job. poll() or wait() unpins once the job has
 *   finished, whether it succeeded or not.
 * - A call the engine rejects rolls the manager back (the store is abandoned, the pins are
 *   dropped) and rethrows, so nothing stays pending or pinned.
 *
 * Because pending blocks are not loadable and pinned blocks are not evictable, the engine's
 * ordering rule (never load a slot whose store is running, never store into a slot a load is
 * reading) holds by construction.
 *
 * Managers: any single-medium manager (every policy of make_manager except tiered, with or
 * without decorators); its slot ids are the engine's host slots. Not thread-safe: call one
 * Offloader from one thread at a time, like a manager.
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>
#include <kvoffload/transfer/transfer_request.hpp>
#include <kvoffload/types.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvoffload {

/// How one job moves its bytes: the transfer request's options (designated initializers).
struct TransferOptions {
  transfer::Method method{transfer::Method::kAuto};
  int sm_budget{0};      ///< CTAs of the kernel method; 0 = the engine's default
  bool gpu_busy{false};  ///< compute runs beside the transfer: spare the SMs
  /// Stores: read the GPU blocks only after this event (e.g. the compute stream's, recorded
  /// after the KV was written). Loads: write the GPU blocks only after it. Null: no wait.
  cudaEvent_t wait_event{nullptr};
  bool per_layer_events{false};  ///< loads: one completion event per layer
};

/// What store() did.
struct StoreTicket {
  enum class Outcome : std::uint8_t {
    kSubmitted,       ///< a job copies `stored`; they are pending until it finishes
    kNothingToStore,  ///< every block was present already (or declined): no job
    kNoRoom,          ///< the manager could not make room; nothing changed, no job
  };
  Outcome outcome{Outcome::kNothingToStore};
  transfer::JobId job{0};          ///< kSubmitted only
  std::vector<BlockHash> stored;   ///< hashes the job writes, in call order
  std::vector<BlockHash> evicted;  ///< hashes evicted to make room
};

/// A finished job, reported once, after the manager has been told.
struct FinishedJob {
  transfer::JobId job{0};
  transfer::Direction direction{transfer::Direction::kStore};
  transfer::Method method{transfer::Method::kAuto};  ///< the method that ran
  bool ok{false};
  std::string error;  ///< why it failed (ok == false)
  /// Stores: the blocks written, now ready (ok) or dropped (failed). Loads: the blocks read,
  /// now unpinned (on failure the GPU blocks hold undefined bytes: recompute them).
  std::vector<BlockHash> hashes;
  /// The GPU blocks the job read (store) or wrote (load), k per hash in `hashes` order. Only
  /// now may the caller reuse or free them.
  std::vector<BlockId> gpu_blocks;
};

/**
 * @brief Offloads KV blocks to host slots and loads them back (see the file comment).
 */
class Offloader {
 public:
  /**
   * @param manager decides; its slot ids must be host slots of `engine`
   * @param engine moves bytes
   * @param host_memory optional owner of the host slots' memory, released after the engine
   * @throws logic_error if manager or engine is null, the manager plans transfers of its own
   *         (tiered), or it has more slots than the engine's host slots
   */
  Offloader(std::unique_ptr<OffloadingManager> manager,
            std::unique_ptr<transfer::TransferEngine> engine,
            std::shared_ptr<void> host_memory = nullptr);
  /// Waits for every job still running (their bytes must not outlive the engine).
  ~Offloader();
  Offloader(const Offloader&)            = delete;
  Offloader& operator=(const Offloader&) = delete;

  /// The manager's lookup: leading hashes ready on the host (`nullopt`: retry later).
  [[nodiscard]] std::optional<std::size_t> lookup(std::span<const BlockHash> hashes);

  /// The manager's touch: mark a request's blocks recently used.
  void touch(std::span<const BlockHash> hashes);

  /**
   * @brief Load ready blocks into GPU blocks: `gpu_blocks[i * k .. i * k + k - 1]` receive
   * `hashes[i]`, with k = layout().gpu_blocks_per_slot(). The blocks stay pinned until
   * poll() or wait() reports the job; the GPU blocks must not be read before that (or before
   * the job's completion events).
   * @return the job's id; `nullopt` for no hashes (nothing to do)
   * @throws logic_error if gpu_blocks.size() != hashes.size() * k, a hash is not ready
   *         (naming it), or the engine rejects the request (duplicate GPU blocks, a wait_event
   *         on the host engine, ...): the pins are dropped again
   */
  std::optional<transfer::JobId> load(std::span<const BlockHash> hashes,
                                      std::span<const BlockId> gpu_blocks,
                                      const TransferOptions& options = {});

  /**
   * @brief Offload the GPU blocks of the hashes not yet present: `gpu_blocks[i * k ..
   * i * k + k - 1]` hold `hashes[i]`. All or nothing, like prepare_store; a policy with
   * admission may leave some out (they are not in `stored`). The job reads the GPU blocks of
   * `stored` until poll() or wait() reports it: do not overwrite or free them before.
   * @throws logic_error if gpu_blocks.size() != hashes.size() * k, or the engine rejects the
   *         request (the store is abandoned again; evictions it made stay made)
   */
  StoreTicket store(std::span<const BlockHash> hashes,
                    std::span<const BlockId> gpu_blocks,
                    const TransferOptions& options = {});

  /// Jobs finished since the last report, oldest first, each already confirmed to the
  /// manager. Never blocks. If telling the manager throws, the jobs stay and a later call
  /// reports them; none is lost.
  std::vector<FinishedJob> poll();

  /**
   * @brief Block until `job` finishes; confirm it to the manager and report it.
   * @throws logic_error for an id this Offloader is not running (or has reported)
   */
  FinishedJob wait(transfer::JobId job);

  /// Block until every running job finishes; report them, oldest first.
  std::vector<FinishedJob> wait_all();

  /// The engine's completion events of a running job (per layer for a per-layer load). They
  /// are valid until the job is reported (the engine reuses them afterwards).
  /// @throws logic_error for an id this Offloader is not running
  [[nodiscard]] std::vector<cudaEvent_t> completion_events(transfer::JobId job);

  /// Jobs submitted and not yet reported.
  [[nodiscard]] std::size_t jobs_in_flight() const noexcept { return jobs_.size(); }

  /// The manager's events (stored / removed hashes), when it was built with events on.
  [[nodiscard]] std::vector<OffloadingEvent> take_events() { return manager_->take_events(); }

  /// The manager, read-only (stats()): its state changes only through this class.
  [[nodiscard]] const OffloadingManager& manager() const noexcept { return *manager_; }
  /// The engine, read-only (description(), layout(), host_slots()): its jobs are this
  /// class's to poll and wait for.
  [[nodiscard]] const transfer::TransferEngine& engine() const noexcept { return *engine_; }

 private:
  struct Job {
    transfer::Direction direction{transfer::Direction::kStore};
    std::vector<BlockHash> hashes;
    std::vector<BlockId> gpu_blocks;
    std::optional<transfer::JobStatus> status;  // the engine's report, once it came
    bool settled{false};                        // the manager has been told
  };
  void check_gpu_blocks(const char* what, std::size_t hashes, std::size_t gpu_blocks) const;
  transfer::TransferRequest request(transfer::Direction direction,
                                    const TransferOptions& options) const;
  transfer::JobId submit(const transfer::TransferRequest& request, Job job);
  void roll_back(const Job& job);
  void settle(Job& job);
  std::vector<FinishedJob> take_settled();
  static FinishedJob report(transfer::JobId id, Job& job);

  std::shared_ptr<void> host_memory_;  // first: outlives the engine that copies into it
  std::unique_ptr<OffloadingManager> manager_;
  std::unique_ptr<transfer::TransferEngine> engine_;
  std::map<transfer::JobId, Job> jobs_;  // ordered by id: reports come oldest first
};

/**
 * @brief An Offloader over `host` with a manager from `policy_spec` (make_manager's specs:
 * "lru", "density", "arc+filter:threshold=2", ...): one manager slot per host slot, events
 * off (build the manager with make_manager and use the constructor to have them), and the engine
 * make_transfer_engine gives (the CUDA engine when a device is usable, else the host engine;
 * engine().description() says which).
 * @throws logic_error for a bad spec (naming the offending part) or a tiered policy
 */
std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          const transfer::HostSlots& host,
                                          const transfer::TransferEngineOptions& options = {});

/**
 * @brief The same with host memory of its own: `host_slots` slots of layout.host_slot_bytes()
 * in a PinnedHostPool (mmap'ed, touched by several threads, registered with CUDA when the
 * engine is the CUDA engine), owned by the Offloader.
 * @throws logic_error for a bad spec, a tiered policy or zero slots
 * @throws runtime_error when the memory cannot be allocated or registered
 */
std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          std::size_t host_slots,
                                          const transfer::TransferEngineOptions& options = {});

}  // namespace kvoffload
