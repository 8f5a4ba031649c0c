/**
 * @file intrusive_list.hpp
 * @brief Doubly linked lists threaded through a shared array of 32-bit links.
 *
 * Several lists (LRU order, ARC's T1/T2, ...) may share one links array as long as each id
 * is in at most one of them. Front = oldest (eviction end), back = most recent.
 */
#pragma once

#include "flat_index.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace kvoffload::detail {

struct Links {
  std::uint32_t prev{kNil};
  std::uint32_t next{kNil};
};

class IntrusiveList {
 public:
  explicit IntrusiveList(std::vector<Links>* links) noexcept : links_{links} {}

  [[nodiscard]] std::uint32_t front() const noexcept { return head_; }
  [[nodiscard]] std::uint32_t back() const noexcept { return tail_; }
  [[nodiscard]] std::uint32_t next(std::uint32_t id) const noexcept { return (*links_)[id].next; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  void push_back(std::uint32_t id) noexcept {
    Links& l = (*links_)[id];
    l.prev   = tail_;
    l.next   = kNil;
    if (tail_ != kNil) {
      (*links_)[tail_].next = id;
    } else {
      head_ = id;
    }
    tail_ = id;
    ++size_;
  }

  /// Link `id` just before `pos` (which is in this list).
  void insert_before(std::uint32_t id, std::uint32_t pos) noexcept {
    Links& l = (*links_)[id];
    Links& p = (*links_)[pos];
    l.prev   = p.prev;
    l.next   = pos;
    if (p.prev != kNil) {
      (*links_)[p.prev].next = id;
    } else {
      head_ = id;
    }
    p.prev = id;
    ++size_;
  }
  void remove(std::uint32_t id) noexcept {
    Links& l = (*links_)[id];
    if (l.prev != kNil) {
      (*links_)[l.prev].next = l.next;
    } else {
      head_ = l.next;
    }
    if (l.next != kNil) {
      (*links_)[l.next].prev = l.prev;
    } else {
      tail_ = l.prev;
    }
    l.prev = l.next = kNil;
    --size_;
  }

  void move_to_back(std::uint32_t id) noexcept {
    if (tail_ == id) return;
    remove(id);
    push_back(id);
  }

  /// Unlink and return the oldest id (kNil if empty).
  std::uint32_t pop_front() noexcept {
    const std::uint32_t id = head_;
    if (id != kNil) remove(id);
    return id;
  }

  void clear() noexcept {
    head_ = tail_ = kNil;
    size_         = 0;
  }

  /// For invariant checks: walks the list front to back, calling visit(id) on each id, and
  /// returns whether its links hold (every id's prev is the id before it, the count is size()
  /// and back() is the last id). The caller throws in its own words.
  template <class Visit>
  [[nodiscard]] bool check(Visit&& visit) const {
    std::size_t n          = 0;
    std::uint32_t previous = kNil;
    for (std::uint32_t id = head_; id != kNil; id = next(id)) {
      if ((*links_)[id].prev != previous || ++n > size_) return false;
      visit(id);
      previous = id;
    }
    return n == size_ && tail_ == previous;
  }

 private:
  std::vector<Links>* links_;
  std::uint32_t head_{kNil};
  std::uint32_t tail_{kNil};
  std::size_t size_{0};
};

/// N lists over one links array (e.g. one per frequency level or class).
template <std::size_t N>
std::array<IntrusiveList, N> make_lists(std::vector<Links>* links) {
  return [links]<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<IntrusiveList, N>{((void)I, IntrusiveList{links})...};
  }
  (std::make_index_sequence<N>{});
}

}  // namespace kvoffload::detail
