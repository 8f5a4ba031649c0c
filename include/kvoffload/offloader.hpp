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
 *
 * ## Host + disk (a TieredOffloadingManager and a storage::BlockStore)
 * The GPU KV cache is not a tier here: tier 0 is the host (Medium::kCpu, the engine's host
 * slots), tier 1 the disk (Medium::kDisk, the store's slots). Stores and loads still go GPU <->
 * host through the engine; the tiered manager's plans go host <-> disk through the store:
 * - A host victim is demoted (written to disk), not dropped; a disk victim is dropped. The host
 *   slot it leaves is handed to the store that needed room, but a job never writes a slot that
 *   an unfinished job reads: such a store is **deferred**, submitted to the engine by poll(),
 *   wait() or completion_events() once the demotion has read the slot (its job id is given at
 *   once; its GPU blocks stay the caller's to keep untouched until it is reported, as always).
 * - Disk work is bounded: while `max_disk_jobs` disk jobs are in flight, new demotions are
 *   dropped (the block leaves the cache, counted in OffloaderStats::demotions_dropped) and new
 *   promotions and prefetches abandoned, so stores never wait behind a slow disk for more than
 *   the jobs already in flight.
 * - lookup(): when the ready prefix reaches a block on disk, the disk blocks of the prefix are
 *   prefetched to the host and the answer is `nullopt` ("retry later"); it answers the host
 *   prefix instead when the first of them cannot move now (host tier pinned full, disk busy).
 *   load() of a block on disk throws. prefetch() brings up the blocks of requests a runtime
 *   knows are coming.
 * - A disk read that fails its hash or CRC check loses that block: removed event, counted in
 *   blocks_lost, its bytes never reach a GPU block. Other failed disk reads leave the block on
 *   disk; a failed demotion drops it.
 * - Restart: a persistent store's recovered blocks become ready in the disk tier at
 *   construction (stored events for Medium::kDisk when the manager has events on).
 * Disk jobs make progress in lookup(), poll(), wait() and wait_all(); wait_all() also finishes
 * every disk job, so afterwards nothing is in flight anywhere.
 */
#pragma once

#include <kvoffload/offloader_stats.hpp>
#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/storage/block_store.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>
#include <kvoffload/transfer/transfer_request.hpp>
#include <kvoffload/types.hpp>

#include <cuda_runtime_api.h>

#include <chrono>
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

namespace detail {
class DiskTier;  // csrc/disk_tier.hpp
}  // namespace detail

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

/// How a host + disk Offloader's disk tier is set up (make_offloader's last overload).
struct DiskTierOptions {
  /// Directories, capacity (the disk tier gets capacity_bytes / slot size slots),
  /// persistence, I/O back end; block_bytes is set to the layout's host slot size.
  storage::BlockStoreOptions store{};
  std::size_t max_disk_jobs{8};  ///< disk jobs in flight before new disk work is dropped
  bool enable_events{false};     ///< the manager's stored / removed events (take_events())
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
  /**
   * @brief A host + disk Offloader (see the file comment); adopts the store's recovered
   * blocks into the disk tier.
   * @param manager two tiers, Medium::kCpu then Medium::kDisk, built with
   *        stores_to_tier_zero_only; tier 0's slots are host slots of `engine`, tier 1's
   *        slots of `store`
   * @param max_disk_jobs disk jobs in flight before new disk work is dropped (at least 1)
   * @throws logic_error if an argument is null or the tiers, slot counts or block size do not
   *         fit the engine and the store (naming the value)
   */
  Offloader(std::unique_ptr<TieredOffloadingManager> manager,
            std::unique_ptr<transfer::TransferEngine> engine,
            std::unique_ptr<storage::BlockStore> store,
            std::size_t max_disk_jobs         = 8,
            std::shared_ptr<void> host_memory = nullptr);
  /// Waits for every job still running (their bytes must not outlive the engine).
  ~Offloader();
  Offloader(const Offloader&)            = delete;
  Offloader& operator=(const Offloader&) = delete;

  /// The manager's lookup: leading hashes ready on the host (`nullopt`: retry later). Host +
  /// disk: a prefix reaching the disk is brought up and answered `nullopt` (file comment).
  [[nodiscard]] std::optional<std::size_t> lookup(std::span<const BlockHash> hashes);

  /// Host + disk: start bringing these blocks up from disk (at most the manager's lookahead
  /// per call; the rest stay queued). Absent or host-resident ones are skipped. Single tier:
  /// nothing to do.
  void prefetch(std::span<const BlockHash> hashes);

  /// The manager's touch: mark a request's blocks recently used.
  void touch(std::span<const BlockHash> hashes);

  /**
   * @brief Load ready blocks into GPU blocks: `gpu_blocks[i * k .. i * k + k - 1]` receive
   * `hashes[i]`, with k = layout().gpu_blocks_per_slot(). The blocks stay pinned until
   * poll() or wait() reports the job; the GPU blocks must not be read before that (or before
   * the job's completion events).
   * @return the job's id; `nullopt` for no hashes (nothing to do)
   * @throws logic_error if gpu_blocks.size() != hashes.size() * k, a hash is not ready or is
   *         on disk (naming it), or the engine rejects the request (duplicate GPU blocks, a
   *         wait_event on the host engine, ...): the pins are dropped again
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
   *         request (the store is abandoned again; evictions it made stay made). Host + disk:
   *         a store deferred behind a demotion is submitted later; if the engine rejects it
   *         then, poll() or wait() reports it failed.
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

  /// Block until every running job finishes (and, host + disk, every disk job); report them,
  /// oldest first.
  std::vector<FinishedJob> wait_all();

  /// The engine's completion events of a running job (per layer for a per-layer load). They
  /// are valid until the job is reported (the engine reuses them afterwards). A deferred store
  /// is submitted first, after waiting for the disk jobs it waits for.
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
  /// The disk store (host + disk only; null otherwise), read-only (stats(), description()).
  [[nodiscard]] const storage::BlockStore* block_store() const noexcept;
  /// Gauges and counters, per tier and per medium.
  [[nodiscard]] OffloaderStats stats() const;

 private:
  struct Job {
    transfer::Direction direction{transfer::Direction::kStore};
    std::vector<BlockHash> hashes;
    std::vector<BlockId> gpu_blocks;
    std::optional<transfer::TransferRequest> deferred;  // a store not yet given to the engine
    transfer::JobId engine_job{0};                      // once given
    std::optional<transfer::JobStatus> status;          // the engine's report, once it came
    bool settled{false};                                // the manager has been told
    std::chrono::steady_clock::time_point started{};    // store() or load() was called
  };
  void check_gpu_blocks(const char* what, std::size_t hashes, std::size_t gpu_blocks) const;
  void run_plans(std::vector<TransferPlan> plans);
  void start_deferred();
  void start_now(Job& job);  // waits for the disk until a deferred store is given to the engine
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
  std::unique_ptr<detail::DiskTier> disk_;    // host + disk only; before the engine goes
  TieredOffloadingManager* tiered_{nullptr};  // manager_, host + disk only
  std::map<transfer::JobId, Job> jobs_;       // ordered by id: reports come oldest first
  transfer::JobId next_job_{1};
  std::uint64_t bytes_stored_{0}, bytes_loaded_{0}, lookups_deferred_{0}, lookups_disk_busy_{0},
      stores_deferred_{0};
  LatencyHistogram store_latency_, load_latency_;
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

/**
 * @brief A host + disk Offloader with host memory of its own (like the overload above) and a
 * disk tier on make_block_store(disk.store): `host_slots` host slots, and as many disk slots as
 * disk.store.capacity_bytes holds. `policy_spec` is "tiered" with its non-size options
 * ("tiered:promote=2,lookahead=64"); the tier sizes come from the memory and the disk, so
 * hot/warm/cold and media are refused. With disk.store.persistent the blocks of the previous
 * run on the same directories are ready on disk at once.
 * @throws logic_error for a spec that is not tiered or sizes its tiers, zero host slots, bad
 *         store options
 * @throws runtime_error for memory that cannot be allocated or a store that cannot be opened
 *         (naming the path)
 */
std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          std::size_t host_slots,
                                          const DiskTierOptions& disk,
                                          const transfer::TransferEngineOptions& options = {});

}  // namespace kvoffload
