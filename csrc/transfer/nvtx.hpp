// NVTX ranges in the "kvoffload" domain. KVO_SCOPED_RANGE(name) opens a range until the end
// of the enclosing scope; without KVOFFLOAD_NVTX it compiles to nothing and does not evaluate
// its argument (so building the name costs nothing either).
#pragma once

#ifdef KVOFFLOAD_NVTX
#include <nvtx3/nvToolsExt.h>

#include <string>

namespace kvoffload::transfer::detail {

class ScopedRange {
 public:
  explicit ScopedRange(const std::string& name) noexcept {
    nvtxEventAttributes_t attributes{};
    attributes.version       = NVTX_VERSION;
    attributes.size          = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType   = NVTX_MESSAGE_TYPE_ASCII;
    attributes.message.ascii = name.c_str();
    nvtxDomainRangePushEx(domain(), &attributes);
  }
  ~ScopedRange() { nvtxDomainRangePop(domain()); }
  ScopedRange(const ScopedRange&)            = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  static nvtxDomainHandle_t domain() noexcept {
    static const nvtxDomainHandle_t handle = nvtxDomainCreateA("kvoffload");
    return handle;
  }
};

}  // namespace kvoffload::transfer::detail

#define KVO_NVTX_CONCAT_(a, b) a##b
#define KVO_NVTX_CONCAT(a, b) KVO_NVTX_CONCAT_(a, b)
#define KVO_SCOPED_RANGE(name)                                                             \
  const ::kvoffload::transfer::detail::ScopedRange KVO_NVTX_CONCAT(kvo_range_, __LINE__) { \
    name                                                                                   \
  }
#else
#define KVO_SCOPED_RANGE(name) static_cast<void>(0)
#endif
