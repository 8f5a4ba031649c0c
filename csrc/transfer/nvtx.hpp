// NVTX ranges in the "kvoffload" domain. KVO_SCOPED_RANGE(name) opens a range until the end
// of the enclosing scope. The name expression is evaluated only while a tool (Nsight Systems,
// Nsight Compute) is attached: without one NVTX hands out a null domain, and building the
// name string, which costs more than the range itself, is skipped. Without KVOFFLOAD_NVTX
// the macro compiles to nothing.
#pragma once

#ifdef KVOFFLOAD_NVTX
#include <nvtx3/nvToolsExt.h>

#include <string>

namespace kvoffload::transfer::detail {

class ScopedRange {
 public:
  /// `make_name()` returns the range's name; called only when a tool listens.
  template <typename MakeName>
  explicit ScopedRange(MakeName&& make_name) : active_{domain() != nullptr} {
    if (!active_) return;
    const std::string name = make_name();
    nvtxEventAttributes_t attributes{};
    attributes.version       = NVTX_VERSION;
    attributes.size          = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType   = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = name.c_str();
    nvtxDomainRangePushEx(domain(), &attributes);
  }
  ~ScopedRange() {
    if (active_) nvtxDomainRangePop(domain());
  }
  ScopedRange(const ScopedRange&)            = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  static nvtxDomainHandle_t domain() noexcept {
    static const nvtxDomainHandle_t handle = nvtxDomainCreateA("kvoffload");
    return handle;
  }
  bool active_;
};

}  // namespace kvoffload::transfer::detail

#define KVO_NVTX_CONCAT_(a, b) a##b
#define KVO_NVTX_CONCAT(a, b) KVO_NVTX_CONCAT_(a, b)
#define KVO_SCOPED_RANGE(name)                                                             \
  const ::kvoffload::transfer::detail::ScopedRange KVO_NVTX_CONCAT(kvo_range_, __LINE__) { \
    [&]() -> std::string { return name; }                                                  \
  }
#else
#define KVO_SCOPED_RANGE(name) static_cast<void>(0)
#endif
