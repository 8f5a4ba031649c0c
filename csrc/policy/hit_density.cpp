#include "hit_density.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <bit>
#include <stdexcept>
#include <string>

namespace kvoffload::detail {

RefClass reference_class(unsigned prior, std::size_t from_end, bool continuation) noexcept {
  if (prior == 0) {
    if (from_end == 0) return kNewLast;
    if (from_end == 1) return kNewSecondLast;
    return continuation ? kNewDeepContinuation : kNewDeep;
  }
  if (prior == 1) return kSeenOnce;
  if (prior == 2) return kSeenTwice;
  return prior < 8 ? kSeenFew : kSeenMany;
}

std::uint64_t bin_start(int bin) noexcept {
  if (bin <= 0) return 0;
  const int e = (bin - 1) / 4;
  const int k = (bin - 1) % 4;
  return static_cast<std::uint64_t>(4 + k) << (e + 2);
}

namespace {
const HitDensityModel::Options& validated(const HitDensityModel::Options& o) {
  KVO_EXPECTS(
      o.horizon >= 16 && o.horizon <= (std::uint64_t{1} << 30),
      "density: horizon must be in [16, 2^30] references, got " + std::to_string(o.horizon));
  KVO_EXPECTS(o.sample_shift >= 0 && o.sample_shift <= 16,
              "density: sample_shift must be in [0, 16], got " + std::to_string(o.sample_shift));
  KVO_EXPECTS(
      o.update_interval >= 1 && o.update_interval <= o.horizon,  // ages < 2^31
      "density: update_interval must be in [1, horizon], got " + std::to_string(o.update_interval));
  KVO_EXPECTS((o.horizon >> o.sample_shift) <= (std::uint64_t{1} << 28),
              "density: horizon / 2^sample_shift must be at most 2^28 samples");
  return o;
}

std::size_t sample_capacity(const HitDensityModel::Options& o) {
  // One sample per sampled hash referenced within the horizon (samples past it leave at each
  // update): at most the sampled references of horizon + interval, which average
  // (horizon + interval) / 2^shift since hashes are sampled by their bits. A table that fills
  // anyway re-checks the horizon at once, and if still full skips the sample (add_sample).
  const std::uint64_t live = (o.horizon + o.update_interval) >> o.sample_shift;
  return static_cast<std::size_t>(live + 64);
}
}  // namespace

HitDensityModel::HitDensityModel(const Options& options)
    : options_{options},
      bins_{static_cast<std::size_t>(age_bin(options.horizon > 0 ? options.horizon - 1 : 0)) + 1},
      samples_(sample_capacity(validated(options))),
      index_{samples_.size(), samples_.data(), sizeof(Sample), 2},
      reused_(kRefClasses * bins_, 0.0),
      expired_(kRefClasses, 0.0),
      pending_(kRefClasses * bins_, 0.0),
      density_(kRefClasses * bins_, 0.0F),
      next_update_{options.update_interval},
      next_decay_{options.horizon} {
  free_.reserve(samples_.size());
  for (std::size_t i = samples_.size(); i-- > 0;)
    free_.push_back(static_cast<std::uint32_t>(i));
  for (std::size_t c = 0; c < kRefClasses; ++c)
    for (std::size_t b = 0; b < bins_; ++b)
      density_[c * bins_ + b] = 1.0F / static_cast<float>(1 + b);
}

void HitDensityModel::observe(BlockHash hash, RefClass cls, std::uint64_t now, bool is_sampled) {
  if (is_sampled) {
    const std::uint32_t id = index_.find(hash);
    if (id == kNil) {
      add_sample(hash, cls, now);
    } else {
      Sample& s               = samples_[id];
      const std::uint64_t gap = age_of(s, now);
      if (gap < options_.horizon) {
        reused_[s.cls * bins_ + static_cast<std::size_t>(age_bin(gap))] += 1.0;
      } else {
        expired_[s.cls] += 1.0;
      }
      s.stamp = static_cast<std::uint32_t>(now);
      s.cls   = cls;
    }
  }
  if (now >= next_decay_) {
    for (double& v : reused_)
      v *= 0.5;
    for (double& v : expired_)
      v *= 0.5;
    next_decay_ = now + options_.horizon;
  }
  if (now >= next_update_) update(now);
}

void HitDensityModel::add_sample(BlockHash hash, RefClass cls, std::uint64_t now) {
  if (free_.empty()) update(now);  // expire what has passed the horizon
  if (free_.empty()) {             // more distinct sampled hashes than the average allows: skip one
    ++dropped_;
    return;
  }
  const std::uint32_t id = free_.back();
  free_.pop_back();
  samples_[id] = Sample{hash, static_cast<std::uint32_t>(now), cls};
  index_.insert(hash, id);
}

void HitDensityModel::update(std::uint64_t now) {
  std::fill(pending_.begin(), pending_.end(), 0.0);
  for (std::size_t id = 0; id < samples_.size(); ++id) {
    Sample& s = samples_[id];
    if (s.cls == kFreeSample) continue;
    const std::uint64_t age = age_of(s, now);
    if (age >= options_.horizon) {
      expired_[s.cls] += 1.0;
      index_.erase(s.hash, static_cast<std::uint32_t>(id));
      s.cls = kFreeSample;
      free_.push_back(static_cast<std::uint32_t>(id));
    } else {
      pending_[s.cls * bins_ + static_cast<std::size_t>(age_bin(age))] += 1.0;
    }
  }
  estimate();
  next_update_ = now + options_.update_interval;
  ++updates_;
}

void HitDensityModel::estimate() {
  // Kaplan-Meier per class: hazard of reuse in bin b = reuses in b / references that reached
  // age bin_start(b) (reused there or later, expired, or still waiting at that age or older).
  // Sparse bins (old ages, rare classes) shrink towards the hazard of all classes pooled, with
  // the weight of kPrior references: an unseen age is not taken for a dead one.
  constexpr double kPrior = 32.0;
  risk_.assign(kRefClasses * bins_, 0.0);
  std::vector<double> pool_reused(bins_, 0.0), pool_risk(bins_, 0.0);
  for (std::size_t c = 0; c < kRefClasses; ++c) {
    double at_risk = expired_[c];
    for (std::size_t b = bins_; b-- > 0;) {
      at_risk += reused_[c * bins_ + b] + pending_[c * bins_ + b];
      risk_[c * bins_ + b] = at_risk;
      pool_reused[b] += reused_[c * bins_ + b];
      pool_risk[b] += at_risk;
    }
  }
  std::vector<double> hit(bins_), alive(bins_);
  for (std::size_t c = 0; c < kRefClasses; ++c) {
    double survive = 1.0;
    for (std::size_t b = 0; b < bins_; ++b) {
      const double pooled = pool_risk[b] > 0 ? pool_reused[b] / pool_risk[b] : 0.0;
      const double hazard =
          (reused_[c * bins_ + b] + kPrior * pooled) / (risk_[c * bins_ + b] + kPrior);
      alive[b] = survive;
      hit[b]   = survive * hazard;
      survive *= 1.0 - hazard;
    }
    // density at the start of bin b: hits from b on over the cache time from b on (a block
    // reused inside a bin is counted as staying half of it).
    double hits = 0, time = 0;
    for (std::size_t b = bins_; b-- > 0;) {
      const std::uint64_t lo = std::min(bin_start(static_cast<int>(b)), options_.horizon);
      const std::uint64_t hi = std::min(bin_start(static_cast<int>(b) + 1), options_.horizon);
      hits += hit[b];
      time += (alive[b] - 0.5 * hit[b]) * static_cast<double>(hi - lo);
      density_[c * bins_ + b] = static_cast<float>((hits + 1e-9) / (time + 1e-9));
    }
  }
}

std::size_t HitDensityModel::memory_bytes() const noexcept {
  return samples_.capacity() * sizeof(Sample) + index_.memory_bytes() +
         free_.capacity() * sizeof(std::uint32_t) +
         (reused_.capacity() + expired_.capacity() + pending_.capacity() + risk_.capacity()) *
             sizeof(double) +
         density_.capacity() * sizeof(float);
}

void HitDensityModel::check_invariants() const {
  auto fail = [](const char* what) {
    throw std::logic_error(std::string{"kvoffload invariant broken: density model "} + what);
  };
  std::size_t live = 0;
  for (std::size_t id = 0; id < samples_.size(); ++id) {
    const Sample& s = samples_[id];
    if (s.cls == kFreeSample) continue;
    ++live;
    if (s.cls >= kRefClasses) fail("sample of an unknown class");
    if (index_.find(s.hash) != id) fail("sample not indexed");
    if (!sampled(s.hash)) fail("sample of an unsampled hash");
  }
  if (live != index_.size() || live + free_.size() != samples_.size()) fail("sample count drifted");
  for (double v : reused_)
    if (v < 0) fail("negative count");
  for (float d : density_)
    if (!(d >= 0.0F)) fail("negative or NaN density");
}

}  // namespace kvoffload::detail
