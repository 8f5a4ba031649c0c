// The disk tier's block store for Python: slots, hashes and host buffers (any object with the
// buffer protocol, e.g. a memoryview of vLLM's CPU-tier memory) in, job ids and statuses out.
#include "bindings.hpp"
#include "hashes.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/storage/block_store.hpp>

#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace kvoffload::python {
namespace {

using storage::BlockStore;
using storage::BlockStoreOptions;
using storage::DiskJobId;
using storage::DiskJobState;
using storage::DiskJobStatus;
using storage::IoBackend;

/// A Python buffer exported for as long as a job (or the store) reads or writes it.
class ExportedBuffer {
 public:
  /// @throws nb::type_error when `source` has no C-contiguous (writable, if asked) buffer
  ExportedBuffer(nb::handle source, bool writable) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(source.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw nb::type_error(writable ? "the buffer must be a writable, C-contiguous buffer "
                                      "(e.g. a memoryview of a bytearray or an mmap)"
                                    : "the buffer must be a C-contiguous buffer");
    }
  }
  ExportedBuffer(const ExportedBuffer&)            = delete;
  ExportedBuffer& operator=(const ExportedBuffer&) = delete;
  ~ExportedBuffer() { PyBuffer_Release(&view_); }  // always with the GIL held

  [[nodiscard]] std::byte* data() const noexcept { return static_cast<std::byte*>(view_.buf); }
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

IoBackend backend_of(const std::string& name) {
  if (name == "auto") return IoBackend::kAuto;
  if (name == "io_uring") return IoBackend::kIoUring;
  if (name == "thread_pool") return IoBackend::kThreadPool;
  KVO_EXPECTS(false, "block store: unknown backend '" + name + "' (auto, io_uring or thread_pool)");
  return IoBackend::kAuto;
}

/**
 * @brief A BlockStore as Python holds it: every buffer a job uses stays exported until the job
 * has been reported (poll/wait) or the store is closed, so its owner cannot free or resize it
 * under the I/O. Calls run without the GIL under a shared lock; close() takes it exclusively,
 * so a store is never destroyed under a call another thread is making.
 */
class PyBlockStore {
 public:
  explicit PyBlockStore(const BlockStoreOptions& options) {
    nb::gil_scoped_release unlocked;
    store_       = storage::make_block_store(options);
    block_bytes_ = store_->block_bytes();
    num_slots_   = store_->num_slots();
  }
  PyBlockStore(const PyBlockStore&)            = delete;
  PyBlockStore& operator=(const PyBlockStore&) = delete;
  ~PyBlockStore() { close(); }

  /// Run `work(store)` without the GIL, the store kept alive meanwhile.
  /// @throws logic_error after close()
  template <class Work>
  decltype(auto) run(Work&& work) const {
    nb::gil_scoped_release unlocked;
    std::shared_lock lock{lifetime_};
    KVO_EXPECTS(store_ != nullptr, "block store: used after close()");
    return std::forward<Work>(work)(*store_);
  }

  /// Waits for every job, then lets go of the files, the lock and every exported buffer.
  void close() {
    {
      nb::gil_scoped_release unlocked;
      std::unique_lock lock{lifetime_};  // waits for calls in other threads
      store_.reset();                    // finishes every queued I/O first
    }
    buffers_.clear();
    registered_.reset();
  }

  DiskJobId submit(bool write,
                   const HashArg& slots,
                   const HashArg& hashes,
                   nb::handle buffer,
                   const HashArg& buffer_slots,
                   std::optional<std::size_t> stride) {
    run([](BlockStore&) {});  // "used after close()" before any other complaint
    const auto disk_slots = slots.view();
    const auto keys       = hashes.view();
    const auto positions  = buffer_slots.view();
    KVO_EXPECTS(keys.size() == disk_slots.size() && positions.size() == disk_slots.size(),
                "block store: " + std::to_string(disk_slots.size()) + " slots, " +
                    std::to_string(keys.size()) + " hashes and " +
                    std::to_string(positions.size()) + " buffer slots: they must match");
    auto exported             = std::make_shared<ExportedBuffer>(buffer, !write);
    const std::size_t bytes   = block_bytes_;
    const std::size_t spacing = stride.value_or(bytes);
    KVO_EXPECTS(spacing >= bytes,
                "block store: stride " + std::to_string(spacing) + " is below the block size " +
                    std::to_string(bytes));
    // Buffer slot p covers bytes [p * spacing, p * spacing + bytes): the last one that fits.
    const std::uint64_t last_position =
        exported->size() < bytes ? 0 : (exported->size() - bytes) / spacing;
    for (const std::uint64_t position : positions) {
      KVO_EXPECTS(exported->size() >= bytes && position <= last_position,
                  "block store: buffer slot " + std::to_string(position) + " (stride " +
                      std::to_string(spacing) + ", block " + std::to_string(bytes) +
                      " bytes) lies past the buffer's " + std::to_string(exported->size()) +
                      " bytes");
    }
    for (const std::uint64_t slot : disk_slots)
      KVO_EXPECTS(slot < num_slots_,
                  "block store: disk slot " + std::to_string(slot) + " is out of range (" +
                      std::to_string(num_slots_) + " slots)");
    const DiskJobId job = run([&](BlockStore& store) {
      if (write) {
        std::vector<storage::DiskWrite> blocks(disk_slots.size());
        for (std::size_t i = 0; i < blocks.size(); ++i)
          blocks[i] = {static_cast<BlockId>(disk_slots[i]),
                       keys[i],
                       exported->data() + positions[i] * spacing};
        return store.submit_write(blocks);
      }
      std::vector<storage::DiskRead> blocks(disk_slots.size());
      for (std::size_t i = 0; i < blocks.size(); ++i)
        blocks[i] = {static_cast<BlockId>(disk_slots[i]),
                     keys[i],
                     exported->data() + positions[i] * spacing};
      return store.submit_read(blocks);
    });
    buffers_.emplace(job, std::move(exported));
    return job;
  }

  DiskJobStatus status(DiskJobId job, bool block) {
    DiskJobStatus status =
        run([&](BlockStore& store) { return block ? store.wait(job) : store.poll(job); });
    if (status.state != DiskJobState::kPending) buffers_.erase(job);
    return status;
  }

  void register_host_memory(nb::handle buffer) {
    auto exported = std::make_unique<ExportedBuffer>(buffer, true);
    run([&](BlockStore& store) {
      store.register_host_memory({exported->data(), exported->size()});
    });
    registered_ = std::move(exported);
  }

  [[nodiscard]] std::size_t jobs_outstanding() const noexcept { return buffers_.size(); }
  [[nodiscard]] std::size_t num_slots() const noexcept { return num_slots_; }
  [[nodiscard]] std::size_t block_bytes() const noexcept { return block_bytes_; }

 private:
  // Declared before store_, so the store (which finishes its I/O) goes first.
  std::unordered_map<DiskJobId, std::shared_ptr<ExportedBuffer>> buffers_;
  std::unique_ptr<ExportedBuffer> registered_;
  std::unique_ptr<BlockStore> store_;
  std::size_t block_bytes_{0}, num_slots_{0};
  mutable std::shared_mutex lifetime_;  // shared by calls, exclusive for close()
};

nb::dict stats_dict(const storage::BlockStoreStats& s) {
  nb::dict d;
  d["num_slots"]        = s.num_slots;
  d["bytes_written"]    = s.bytes_written;
  d["bytes_read"]       = s.bytes_read;
  d["write_jobs"]       = s.write_jobs;
  d["read_jobs"]        = s.read_jobs;
  d["failed_jobs"]      = s.failed_jobs;
  d["blocks_lost"]      = s.blocks_lost;
  d["blocks_recovered"] = s.blocks_recovered;
  d["blocks_discarded"] = s.blocks_discarded;
  d["io_operations"]    = s.io_operations;
  return d;
}

/// submit_write (write) or submit_read as a method of PyBlockStore.
auto submit_method(bool write) {
  return [write](PyBlockStore& self,
                 const HashArg& slots,
                 const HashArg& hashes,
                 nb::handle buffer,
                 const HashArg& buffer_slots,
                 std::optional<std::size_t> stride) {
    return self.submit(write, slots, hashes, buffer, buffer_slots, stride);
  };
}

}  // namespace

void bind_storage(nb::module_& m) {
  nb::enum_<DiskJobState>(m, "DiskJobState")
      .value("PENDING", DiskJobState::kPending)
      .value("DONE", DiskJobState::kDone)
      .value("FAILED", DiskJobState::kFailed);

  nb::class_<DiskJobStatus>(m, "DiskJobStatus", "A disk job's state (terminal ones once).")
      .def_ro("state", &DiskJobStatus::state)
      .def_ro("error", &DiskJobStatus::error, "Why it failed, with errno, slot and file.")
      .def_ro("lost",
              &DiskJobStatus::lost,
              "Reads: disk slots whose block failed the hash or CRC check or could not be read; "
              "their buffer bytes are undefined.")
      .def_prop_ro("done", [](const DiskJobStatus& s) { return s.state != DiskJobState::kPending; })
      .def("__repr__", [](const DiskJobStatus& s) {
        const char* state = s.state == DiskJobState::kPending ? "PENDING"
                            : s.state == DiskJobState::kDone  ? "DONE"
                                                              : "FAILED";
        return "DiskJobStatus(state=" + std::string{state} +
               ", lost=" + std::to_string(s.lost.size()) + " slots" +
               (s.error.empty() ? "" : ", error='" + s.error + "'") + ")";
      });

  nb::class_<PyBlockStore>(
      m,
      "BlockStore",
      "Fixed-size KV blocks in preallocated files (the disk tier): batched, checksummed\n"
      "(CRC32C of hash and payload), bounded by capacity_bytes, O_DIRECT with io_uring where\n"
      "available, and recovered after a restart when persistent. The caller names each block's\n"
      "disk slot; a read is DONE for a block only when its hash and CRC match, else the slot is\n"
      "in DiskJobStatus.lost. A buffer passed to a job stays exported (cannot be resized or\n"
      "freed) until poll/wait reported the job or close() ran. See docs/storage.md.")
      .def(
          "__init__",
          [](PyBlockStore* self,
             std::vector<std::filesystem::path> directories,
             std::size_t block_bytes,
             std::uint64_t capacity_bytes,
             bool persistent,
             const std::string& backend,
             bool direct_io,
             unsigned queue_depth,
             unsigned io_threads,
             bool verify_checksums,
             std::int64_t completion_delay_us) {
            new (self) PyBlockStore(BlockStoreOptions{
                .directories      = std::move(directories),
                .block_bytes      = block_bytes,
                .capacity_bytes   = capacity_bytes,
                .persistent       = persistent,
                .backend          = backend_of(backend),
                .direct_io        = direct_io,
                .queue_depth      = queue_depth,
                .io_threads       = io_threads,
                .verify_checksums = verify_checksums,
                .completion_delay = std::chrono::microseconds{completion_delay_us}});
          },
          "directories"_a,
          "block_bytes"_a,
          "capacity_bytes"_a,
          nb::kw_only(),
          "persistent"_a          = false,
          "backend"_a             = "auto",
          "direct_io"_a           = true,
          "queue_depth"_a         = 32u,
          "io_threads"_a          = 4u,
          "verify_checksums"_a    = true,
          "completion_delay_us"_a = 0,
          "Open (create, or with persistent=True reopen and recover) a store on the directories.\n"
          "backend: 'auto', 'io_uring' or 'thread_pool'. Raises LogicError for bad options and\n"
          "RuntimeFailure naming the path (missing directory, no space, another store holding\n"
          "the directory, another format or geometry). completion_delay_us is a test hook: every\n"
          "job completes no earlier than that after its submission.")
      .def("submit_write",
           submit_method(true),
           "slots"_a,
           "hashes"_a,
           "buffer"_a,
           "buffer_slots"_a,
           "stride"_a = nb::none(),
           "Write block i (buffer bytes [buffer_slots[i] * stride, + block_bytes)) to disk slot\n"
           "slots[i] as hashes[i]; stride defaults to block_bytes. Returns the job id at once.")
      .def("submit_read",
           submit_method(false),
           "slots"_a,
           "hashes"_a,
           "buffer"_a,
           "buffer_slots"_a,
           "stride"_a = nb::none(),
           "Read disk slot slots[i], expected to hold hashes[i], into the (writable) buffer at\n"
           "buffer_slots[i] * stride. Returns the job id at once.")
      .def(
          "poll",
          [](PyBlockStore& self, DiskJobId job) { return self.status(job, false); },
          "job"_a,
          "The job's state without waiting; a terminal state is reported once.")
      .def(
          "wait",
          [](PyBlockStore& self, DiskJobId job) { return self.status(job, true); },
          "job"_a,
          "Wait for the job to end and report it (once).")
      .def(
          "discard",
          [](PyBlockStore& self, std::int64_t slot) {
            self.run([&](BlockStore& s) { s.discard(static_cast<BlockId>(slot)); });
          },
          "slot"_a,
          "Forget a slot's block: it is invalidated on disk and never recovered.")
      .def(
          "flush",
          [](PyBlockStore& self) { self.run([](BlockStore& s) { s.flush(); }); },
          "Make completed writes durable against power loss too (fdatasync).")
      .def("register_host_memory",
           &PyBlockStore::register_host_memory,
           "buffer"_a,
           "Register the host memory later jobs use (io_uring fixed buffers); once, before the\n"
           "first job. The buffer stays exported until close().")
      .def("close",
           &PyBlockStore::close,
           "Finish every I/O, release the files, the directory lock and every buffer. A closed\n"
           "store raises LogicError on use.")
      .def_prop_ro(
          "recovered",
          [](const PyBlockStore& self) {
            std::vector<std::pair<std::int64_t, std::uint64_t>> out;
            for (const auto& b : self.run([](BlockStore& st) { return st.recovered(); }))
              out.emplace_back(b.slot, b.hash);
            return out;
          },
          "(slot, hash) of each block found at open (persistent stores).")
      .def_prop_ro("num_slots", &PyBlockStore::num_slots)
      .def_prop_ro("block_bytes", &PyBlockStore::block_bytes)
      .def_prop_ro("slot_bytes",
                   [](const PyBlockStore& s) {
                     return s.run([](BlockStore& st) { return st.slot_bytes(); });
                   })
      .def_prop_ro("jobs_outstanding",
                   &PyBlockStore::jobs_outstanding,
                   "Jobs submitted and not yet reported by poll or wait.")
      .def(
          "stats",
          [](PyBlockStore& self) {
            return stats_dict(self.run([](BlockStore& st) { return st.stats(); }));
          },
          "Counters and gauges as a dict.")
      .def_prop_ro("description",
                   [](const PyBlockStore& s) {
                     return s.run([](BlockStore& st) { return st.description(); });
                   })
      .def("__enter__", [](nb::handle self) { return self; })
      .def(
          "__exit__",
          [](PyBlockStore& self, nb::handle, nb::handle, nb::handle) { self.close(); },
          nb::arg().none(),
          nb::arg().none(),
          nb::arg().none());
}

}  // namespace kvoffload::python
