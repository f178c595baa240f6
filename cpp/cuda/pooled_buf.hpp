// cpp/cuda/pooled_buf.hpp — the memory of both backends: PooledBuf<T, Raw>, a typed buffer whose
// block comes from BufferPool<Raw>, a cache of freed blocks by size class. A training step's
// outputs and workspaces then reuse the previous step's blocks instead of calling cudaMalloc and
// cudaFree (which waits for the whole device) for each of them.
// Raw is the only part the backends write themselves: cudaMalloc/cudaFree/cudaMemcpy
// (cuda_module.cpp) or the host's (host_harness.cpp), so every test run exercises the pool.
// Reuse is safe because every kernel and copy runs on the legacy default stream, in order: a
// block given back while a kernel still reads it is written only by work queued after it. A
// block exported through DLPack comes back only after the consumer's deleter ran.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <utility>

namespace faltung::cuda {

// Raw: static int device() (where allocate puts memory now: cached blocks are kept per device);
// static void* allocate(size_t bytes) (std::bad_alloc when out of memory); static void
// release(void*) noexcept; static void copy_in(void* dst, const void* src, size_t bytes);
// static void copy_out(void* dst, const void* src, size_t bytes); template <typename T> static
// void fresh(T* p, int64_t n), what a fresh buffer holds (the host harness: NaN).
template <class Raw>
class BufferPool {
 public:
  struct Stats {
    int64_t in_use_bytes = 0, cached_bytes = 0, raw_allocations = 0;
  };
  // The process's pool, never destroyed: blocks cached at exit are left to the process's end
  // (cudaFree after the CUDA runtime shut down would fail).
  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();
    return *pool;
  }
  // Powers of two from 512 bytes to 1 MiB, then whole MiB: the same shapes find their blocks
  // again step after step, and no block is more than twice (above 1 MiB, 1 MiB more than) asked.
  static size_t size_class(size_t bytes) {
    constexpr size_t kMiB = size_t(1) << 20;
    if (bytes > kMiB) return (bytes + kMiB - 1) / kMiB * kMiB;
    size_t c = 512;
    while (c < bytes) c <<= 1;
    return c;
  }
  // A block of `bytes` (a size class) on `device`: a cached one, else a new one; out of memory,
  // the cache is released and the allocation tried once more before std::bad_alloc (MemoryError).
  void* acquire(int device, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find({device, bytes});
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        stats_.cached_bytes -= int64_t(bytes);
        stats_.in_use_bytes += int64_t(bytes);
        return p;
      }
    }
    void* p = nullptr;
    try {
      p = Raw::allocate(bytes);
    } catch (const std::bad_alloc&) {
      release_cached();
      p = Raw::allocate(bytes);
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.in_use_bytes += int64_t(bytes);
    ++stats_.raw_allocations;
    return p;
  }
  void give_back(int device, void* p, size_t bytes) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.in_use_bytes -= int64_t(bytes);
    try {
      free_.emplace(std::make_pair(device, bytes), p);
      stats_.cached_bytes += int64_t(bytes);
    } catch (...) {  // no host memory for the map node: release the block instead
      Raw::release(p);
    }
  }
  // Release every cached block to Raw (faltung._cuda.empty_cache()).
  void release_cached() noexcept {
    std::multimap<std::pair<int, size_t>, void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      drop.swap(free_);
      stats_.cached_bytes = 0;
    }
    for (auto& entry : drop) Raw::release(entry.second);
  }
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  BufferPool() = default;
  mutable std::mutex mu_;
  std::multimap<std::pair<int, size_t>, void*> free_;  // (device, size class) -> cached block
  Stats stats_;
};

// n elements of T in Raw's memory, from the pool; move-only, the block goes back when it dies.
template <typename T, class Raw>
class PooledBuf {
 public:
  static PooledBuf alloc(int64_t n) {
    PooledBuf b;
    if (n > 0) {
      b.device_ = Raw::device();
      b.bytes_ = BufferPool<Raw>::size_class(size_t(n) * sizeof(T));
      b.p_ = static_cast<T*>(BufferPool<Raw>::instance().acquire(b.device_, b.bytes_));
      Raw::fresh(b.p_, n);
    }
    return b;
  }
  static PooledBuf upload(const T* src, int64_t n) {
    PooledBuf b = alloc(n);
    if (n > 0) Raw::copy_in(b.p_, src, size_t(n) * sizeof(T));
    return b;
  }
  void download(T* dst, int64_t n) const {
    if (n > 0) Raw::copy_out(dst, p_, size_t(n) * sizeof(T));
  }
  T* get() { return p_; }

  PooledBuf() = default;
  PooledBuf(PooledBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_), device_(o.device_) {}
  PooledBuf& operator=(PooledBuf&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    std::swap(device_, o.device_);
    return *this;
  }
  PooledBuf(const PooledBuf&) = delete;
  PooledBuf& operator=(const PooledBuf&) = delete;
  ~PooledBuf() {
    if (p_) BufferPool<Raw>::instance().give_back(device_, p_, bytes_);
  }

 private:
  T* p_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

}  // namespace faltung::cuda
