// What a job's wait blocks on, written once for the CUDA engine's poll() and wait(): a job whose
// submit failed before its first event (cudaSetDevice, event creation) has an error and may
// have no events at all, so the error is checked before any event is read.
#pragma once

namespace kvoffload::transfer::detail {

/// Address of the job's completion event (events[0]), or null when the job already failed in
/// submit (then its status is the recorded error, and there is nothing to wait on).
template <typename Job>
auto completion_event_of(const Job& job) -> decltype(job.events.data()) {
  if (!job.error.empty() || job.events.empty()) return nullptr;
  return job.events.data();
}

}  // namespace kvoffload::transfer::detail
