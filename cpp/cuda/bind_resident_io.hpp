// cpp/cuda/bind_resident_io.hpp — what goes in and out of a device-resident training step
// (issue 14: "fit copies each batch in once and only losses and metrics out"), as `resident`
// entry points over DeviceArrays:
//  - stats(n): a float64 vector of n slots; row_stats(out, slot, kind, pred, ...) reduces a
//    loss's per-row values or a compiled metric (metrics.cuh) into out[slot], out[slot + 1]
//    (sum v w, sum c w), so a batch downloads one small vector instead of its predictions
//    (faltung.models.resident_metrics).
//  - Prefetcher(slots=2).upload(arrays): a batch's arrays copied into pinned host staging
//    buffers (Backend::Staging: cudaHostAlloc) and from there into new DeviceArrays with
//    cudaMemcpyAsync on a copy stream of its own, so that uploading batch i + 1 overlaps the
//    kernels of batch i (double buffering); the kernels' stream waits for the copies (an event)
//    before anything it queues later. On the host harness the same calls copy synchronously.
// Registered by BindResident::bind as ResidentIo<BindResident<Backend>>, whose checks it uses.
// R rows, K the last axis.
#pragma once
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bind_kernels.hpp"
#include "device_array.hpp"
#include "loss_kernels.hpp"
#include "metric_kernels.hpp"

namespace faltung::cuda::binding {

template <class DA> struct backend_of;
template <class B> struct backend_of<DeviceArray<B>> { using type = B; };

// The pinned memory every Prefetcher of a backend holds (memory_stats' pinned_bytes and
// pinned_allocations, bind_resident.hpp).
template <class Backend>
struct PinnedStats {
  static std::atomic<int64_t>& bytes() {
    static std::atomic<int64_t> n{0};
    return n;
  }
  static std::atomic<int64_t>& allocations() {
    static std::atomic<int64_t> n{0};
    return n;
  }
};

// Double-buffered uploads through pinned staging memory (see the file's comment). Each upload
// takes the next of `slots` slots; a slot's pinned blocks are reused (grown only for a larger
// array), after the copies that last read them are done.
// Ordering, with the kernels and the buffer pool on the legacy default stream ("compute"):
//   1. the host waits for the slot's previous copies (its pinned blocks are free again);
//   2. the copy stream waits for the work compute has queued so far: the new arrays' blocks
//      come from the pool, which may have handed back a block that queued work still reads;
//   3. array -> pinned (memcpy on the host), pinned -> device (cudaMemcpyAsync, copy stream);
//   4. compute waits for the copies (an event) before anything it queues later.
// So a batch uploaded before the previous batch's kernels are queued overlaps them.
template <class Backend>
class Prefetcher {
 public:
  using DA = DeviceArray<Backend>;
  using St = typename Backend::Staging;

  explicit Prefetcher(int64_t slots) {
    if (slots < 1) throw py::value_error("Prefetcher: expected slots >= 1, received " + std::to_string(slots));
    slots_.resize(size_t(slots));
    try {
      stream_ = St::create_stream();
      queued_ = St::create_event();
      for (Slot& s : slots_) s.done = St::create_event();
    } catch (...) {  // no GPU or driver: what was made is released, the error goes on
      destroy();
      throw;
    }
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() { destroy(); }

  // arrays (float32, float64, int32 or uint8; made C-contiguous) -> one new DeviceArray each
  std::vector<DA> upload(const std::vector<py::array>& arrays) {
    Slot& slot = slots_[next_];
    next_ = (next_ + 1) % slots_.size();
    std::vector<py::array> src;
    std::vector<DA> out;
    std::vector<void*> dst;
    std::vector<size_t> bytes;
    for (const py::array& a : arrays) {
      const py::dtype dt = a.dtype();
      if (dt.is(py::dtype::of<float>())) add<float>(a, src, out, dst, bytes);
      else if (dt.is(py::dtype::of<double>())) add<double>(a, src, out, dst, bytes);
      else if (dt.is(py::dtype::of<int32_t>())) add<int32_t>(a, src, out, dst, bytes);
      else if (dt.is(py::dtype::of<uint8_t>())) add<uint8_t>(a, src, out, dst, bytes);
      else
        throw py::type_error("Prefetcher.upload: expected arrays of dtype float32, float64, int32 or uint8, "
                             "received dtype " + std::string(py::str(dt)));
    }
    St::host_wait(slot.done);  // 1.
    if (slot.blocks.size() < src.size()) slot.blocks.resize(src.size());
    for (size_t k = 0; k < src.size(); ++k) {
      Block& b = slot.blocks[k];
      if (b.bytes < bytes[k]) {
        release(b);
        const size_t want = Backend::Pool::size_class(bytes[k]);
        b.p = St::host_alloc(want);
        b.bytes = want;
        PinnedStats<Backend>::bytes() += int64_t(want);
        ++PinnedStats<Backend>::allocations();
      }
    }
    St::record(queued_, nullptr);  // 2.
    St::stream_wait(stream_, queued_);
    {
      py::gil_scoped_release nogil;  // src holds the arrays alive
      for (size_t k = 0; k < src.size(); ++k) {  // 3.
        if (bytes[k] == 0) continue;
        std::memcpy(slot.blocks[k].p, src[k].data(), bytes[k]);
        St::copy_in_async(dst[k], slot.blocks[k].p, bytes[k], stream_);
      }
    }
    St::record(slot.done, stream_);  // 4.
    St::stream_wait(nullptr, slot.done);
    return out;
  }

 private:
  struct Block {
    void* p = nullptr;
    size_t bytes = 0;
  };
  struct Slot {
    std::vector<Block> blocks;
    void* done = nullptr;
  };
  void destroy() noexcept {
    for (Slot& s : slots_) {  // (the host harness's events and stream are null)
      try {
        if (s.done) St::host_wait(s.done);  // no copy may still read a block freed here
      } catch (...) {
      }
      for (Block& b : s.blocks) release(b);
      if (s.done) St::destroy_event(s.done);
    }
    if (queued_) St::destroy_event(queued_);
    if (stream_) St::destroy_stream(stream_);
  }
  static void release(Block& b) noexcept {
    if (!b.p) return;
    St::host_free(b.p);
    PinnedStats<Backend>::bytes() -= int64_t(b.bytes);
    b = Block{};
  }
  template <typename T>
  static void add(const py::array& a, std::vector<py::array>& src, std::vector<DA>& out, std::vector<void*>& dst,
                  std::vector<size_t>& bytes) {
    auto c = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
    DA d = DA::template empty<T>(std::vector<int64_t>(c.shape(), c.shape() + c.ndim()));
    dst.push_back(d.template data<T>());
    bytes.push_back(size_t(c.size()) * sizeof(T));
    src.push_back(std::move(c));
    out.push_back(std::move(d));
  }

  void* stream_ = nullptr;
  void* queued_ = nullptr;
  std::vector<Slot> slots_;
  size_t next_ = 0;
};

template <class Res>
struct ResidentIo {
  using DA = typename Res::DA;
  using MK = MetricKernels<typename exec_of<typename Res::Kn>::type>;
  template <typename T> using Buf = typename Res::template Buf<T>;
  using Shape = std::vector<int64_t>;

  static metric::Kind stats_kind(const std::string& name) {
    const std::pair<const char*, metric::Kind> kinds[] = {
        {"value", metric::Kind::value},
        {"sparse_categorical_accuracy", metric::Kind::sparse_accuracy},
        {"categorical_accuracy", metric::Kind::categorical_accuracy},
        {"binary_accuracy", metric::Kind::binary_accuracy},
        {"mean_squared_error", metric::Kind::mse},
        {"mean_absolute_error", metric::Kind::mae}};
    for (const auto& [n, k] : kinds)
      if (name == n) return k;
    throw py::value_error("row_stats: unknown kind '" + name +
                          "'. Expected one of: value, sparse_categorical_accuracy, categorical_accuracy, "
                          "binary_accuracy, mean_squared_error, mean_absolute_error");
  }

  static DA stats(int64_t n) {
    Res::expect(n >= 0, "stats: expected n >= 0, received " + std::to_string(n));
    return DA::template empty<double>({n});
  }

  // out (float64, >= slot + 2), pred (..., K) (kind "value": (R,) values); target (pred's shape)
  // or labels (pred's shape without K, int32; sparse_categorical_accuracy), weight (R) or None
  // -> out[slot] = sum_r v_r w_r, out[slot + 1] = sum_r c_r w_r (metrics.cuh)
  static void row_stats(const DA& out, int64_t slot, const std::string& kind_name, const DA& pred,
                        const std::optional<DA>& target, const std::optional<DA>& labels,
                        const std::optional<DA>& weight, double threshold, int64_t block) {
    const metric::Kind kind = stats_kind(kind_name);
    const std::string op = "row_stats(" + kind_name + ")";
    check_block(block, op);
    double* pout = Res::template ptr<double>(out, op, "out");
    Res::expect(slot >= 0 && slot + 2 <= out.size(), op + ": slot " + std::to_string(slot) +
                                                         " is out of range for `out` of shape " +
                                                         dims_text(out.shape()));
    Res::expect(!pred.shape().empty(), op + ": expected `pred` of rank >= 1, received a scalar");
    const bool values = kind == metric::Kind::value, sparse = kind == metric::Kind::sparse_accuracy;
    const int64_t K = values ? 1 : pred.shape().back(), R = K ? pred.size() / K : 0;
    const Shape rows = values ? pred.shape() : Shape(pred.shape().begin(), pred.shape().end() - 1);
    if (values) Res::expect_rank(pred, 1, op, "pred");
    Res::expect(sparse == labels.has_value() && (values || sparse) != target.has_value(),
                op + ": expected " + (sparse ? "`labels` and no `target`" : values ? "neither `target` nor `labels`"
                                                                                   : "`target` and no `labels`"));
    if (labels) Res::expect_shape(*labels, rows, op, "labels");
    if (target) Res::expect_shape(*target, pred.shape(), op, "target");
    if (weight) Res::expect_shape(*weight, {R}, op, "weight");
    Res::dispatch(pred, op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t S = metric::stats_parts(R);
      Buf<double> part = Buf<double>::alloc(2 * S);
      const metric::RowStats<T> body{part.get(),
                                     Res::template ptr<T>(pred, op, "pred"),
                                     Res::template opt_ptr<T>(target, op, "target"),
                                     Res::template opt_ptr<int32_t>(labels, op, "labels"),
                                     Res::template opt_ptr<T>(weight, op, "weight"),
                                     T(threshold), R, K, S, kind};
      py::gil_scoped_release nogil;
      MK::row_stats(pout + slot, body, block);
    });
  }

  static void bind(py::module_& m) {
    using Backend = typename backend_of<DA>::type;
    using P = Prefetcher<Backend>;
    py::class_<P>(m, "Prefetcher",
                  "Double-buffered uploads through pinned host memory on a copy stream "
                  "(cpp/cuda/bind_resident_io.hpp); synchronous copies on the host harness.")
        .def(py::init<int64_t>(), py::arg("slots") = 2)
        .def("upload", &P::upload, py::arg("arrays"),
             "One new DeviceArray per array (float32, float64, int32 or uint8), copied in through this "
             "prefetcher's next slot of pinned buffers.");
    const auto blk = py::arg("block") = 128;
    m.def("stats", &stats, py::arg("n"), "A float64 DeviceArray of n slots for row_stats (uninitialized).");
    m.def("row_stats", &row_stats, py::arg("out"), py::arg("slot"), py::arg("kind"), py::arg("pred"),
          py::arg("target") = py::none(), py::arg("labels") = py::none(), py::arg("weight") = py::none(),
          py::arg("threshold") = 0.5, blk);
  }
};

}  // namespace faltung::cuda::binding
