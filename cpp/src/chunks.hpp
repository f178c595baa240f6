// Internal: handing out the chunks [0, n) of a loop to the threads of a team, each thread
// first the chunks of its own contiguous share, in order, and then, when its share is done,
// the last chunks left in the others' shares (taken from their ends).
//
// Why not schedule(dynamic): its chunks alternate between the threads, so neighbouring chunks
// run on different cores, and what they share (a conv's overlapping input windows, the rows
// of one image) is fetched into both cores' caches. Why not schedule(static): when a
// neighbour on a shared host slows one core for a while, the other core sat idle for up to a
// third of the call. Measured on the stride-2 conv 64->64 @32 (batch 64, 2 threads, AVX-512
// Xeon, paired in one process): this queue 0.934 of dynamic,1's time (static 0.925, dynamic in
// whole-image chunks 0.928), and as fast as dynamic next to a busy process (bench/RESULTS.md,
// 2026-12-04).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

namespace faltung {

class ChunkQueue {
 public:
  // n chunks, 0 <= n < 2^31, for a team of nt threads (a smaller team than nt is fine: its
  // threads take the missing threads' shares too).
  ChunkQueue(int64_t n, int nt) : nt_(nt < 1 ? 1 : nt), q_(new Slot[nt_]) {
    for (int k = 0; k < nt_; ++k) q_[k].v.store(pack(n * k / nt_, n * (k + 1) / nt_), std::memory_order_relaxed);
  }
  // The next chunk for thread k of the team into *c; false when none is left.
  bool next(int k, int64_t* c) {
    if (take(k, false, c)) return true;
    for (int i = 1; i < nt_; ++i)
      if (take((k + i) % nt_, true, c)) return true;
    return false;
  }

 private:
  // A share is [front, back): the owner takes its front, the others its back; one 64-bit word
  // holds both, so a compare-and-swap settles who gets the last chunk.
  struct alignas(64) Slot {
    std::atomic<uint64_t> v;
  };
  static uint64_t pack(int64_t front, int64_t back) { return uint64_t(front) | (uint64_t(back) << 32); }
  bool take(int k, bool from_back, int64_t* c) {
    std::atomic<uint64_t>& v = q_[k].v;
    uint64_t cur = v.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t front = int64_t(cur & 0xffffffffu), back = int64_t(cur >> 32);
      if (front >= back) return false;
      const uint64_t want = from_back ? pack(front, back - 1) : pack(front + 1, back);
      if (v.compare_exchange_weak(cur, want, std::memory_order_relaxed)) {
        *c = from_back ? back - 1 : front;
        return true;
      }
    }
  }
  int nt_;
  std::unique_ptr<Slot[]> q_;
};

}  // namespace faltung
