// cpp/cuda/bind_resident_seq.hpp — the `resident` entry points of sequence models, over
// DeviceArrays (see bind_resident.hpp, whose checks these share): Embedding (indices checked on
// the host and uploaded with the batch, with the grouping its backward sums by), the masks of
// Masking and Embedding(mask_zero=True) as uint8 arrays (1 = keep), the masked mean over time of
// GlobalAveragePooling1D, RepeatVector, Permute.
// Registered by BindResident::bind as ResidentSeq<BindResident<Backend>>.
// N lookups, V vocabulary (input_dim), D embedding size; B batch, T steps, F features.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bind_kernels.hpp"
#include "device_array.hpp"
#include "loss_kernels.hpp"
#include "seq_kernels.hpp"

namespace faltung::cuda::binding {

template <class Res>
struct ResidentSeq {
  using DA = typename Res::DA;
  using SK = SeqKernels<typename exec_of<typename Res::Kn>::type>;
  using Shape = std::vector<int64_t>;

  template <typename T>
  static T* ptr(const DA& a, const std::string& op, const std::string& what) {
    return Res::template ptr<T>(a, op, what);
  }
  static py::array_t<int32_t> host_i32(int64_t n) { return py::array_t<int32_t>(py::ssize_t(n)); }

  // ---- Embedding ----------------------------------------------------------------------------
  // indices (...) int32 numpy, each in [0, V) -> (idx (...) int32, order (N), offsets (V+1)) on
  // the device: order lists the positions grouped by index (stably), offsets where each index's
  // group starts (a counting sort on the host, O(N + V)), for embedding_backward.
  static py::tuple indices(const py::array& a, int64_t V) {
    const std::string op = "embedding";  // the CPU kernel's wording
    Res::expect(V >= 1, op + ": expected input_dim >= 1, received " + std::to_string(V));
    const I32 idx = as_int32(a, op, "indices");
    const int64_t N = idx.size();
    Res::expect(N < (int64_t(1) << 31) - 1, op + ": more than 2**31 - 2 indices in one batch");
    const int32_t* p = idx.data();
    py::array_t<int32_t> order = host_i32(N), offsets = host_i32(V + 1);
    int32_t *po = order.mutable_data(), *pf = offsets.mutable_data();
    std::fill(pf, pf + V + 1, 0);
    for (int64_t i = 0; i < N; ++i) {
      Res::expect(p[i] >= 0 && p[i] < V, op + ": index " + std::to_string(p[i]) + " at position " +
                                             std::to_string(i) + " of `indices` is outside [0, input_dim=" +
                                             std::to_string(V) + ")");
      ++pf[p[i] + 1];
    }
    for (int64_t v = 0; v < V; ++v) pf[v + 1] += pf[v];
    std::vector<int32_t> next(pf, pf + V);
    for (int64_t i = 0; i < N; ++i) po[next[size_t(p[i])]++] = int32_t(i);
    DA d_idx = DA::from_numpy(idx), d_order = DA::from_numpy(order), d_offsets = DA::from_numpy(offsets);
    d_idx.index_bound = V, d_order.index_bound = N, d_offsets.index_bound = N + 1;
    return py::make_tuple(d_idx, d_order, d_offsets);
  }
  static void expect_indices(const DA& a, int64_t bound, const std::string& op, const std::string& what) {
    Res::expect(a.dtype() == DType::i32 && a.index_bound >= 0 && a.index_bound <= bound,
                op + ": `" + what + "` must come from `indices` (checked against the bound " +
                    std::to_string(bound) + ")");
  }
  // idx (...) from `indices`, table (V,D) -> out (..., D)
  static DA embedding(const DA& idx, const DA& table, int64_t block) {
    const std::string op = "embedding";
    Res::expect_rank(table, 2, op, "table");
    check_block(block, op);
    const int64_t V = table.shape()[0], D = table.shape()[1], N = idx.size();
    expect_indices(idx, V, op, "indices");
    Shape out_shape = idx.shape();
    out_shape.push_back(D);
    const int32_t* pi = idx.template data<int32_t>();
    return Res::unary_op(table, out_shape, op, "table", [&](auto* po, const auto* pt) {
      SK::gather(po, pt, pi, N, D, block);
    });
  }
  // dy (..., D) of N rows, order (N) and offsets (V+1) from `indices` -> dtable (V, D)
  static DA embedding_backward(const DA& dy, const DA& order, const DA& offsets, int64_t block) {
    const std::string op = "embedding_backward";
    Res::expect(!dy.shape().empty(), op + ": expected `dy` of rank >= 1, received a scalar");
    check_block(block, op);
    const int64_t D = dy.shape().back(), N = D ? dy.size() / D : 0;
    Res::expect_shape(order, {N}, op, "order");
    Res::expect_rank(offsets, 1, op, "offsets");
    const int64_t V = offsets.shape()[0] - 1;
    expect_indices(order, N, op, "order");
    expect_indices(offsets, N + 1, op, "offsets");
    Res::expect(V >= 1, op + ": expected `offsets` of V + 1 >= 2 entries, received shape " +
                            dims_text(offsets.shape()));
    const int32_t *po = order.template data<int32_t>(), *pf = offsets.template data<int32_t>();
    return Res::unary_op(dy, {V, D}, op, "dy", [&](auto* pd, const auto* pdy) {
      SK::scatter_add(pd, pdy, po, pf, V, D, block);
    });
  }

  // ---- masks (uint8, 1 = keep) ----------------------------------------------------------------
  // Masking: x (..., F) -> keep (...) = any(x != mask_value, axis=-1)
  static DA masking_mask(const DA& x, double mask_value, int64_t block) {
    const std::string op = "masking_mask";
    Res::expect(!x.shape().empty(), op + ": expected `x` of rank >= 1, received a scalar");
    check_block(block, op);
    const Shape rows(x.shape().begin(), x.shape().end() - 1);
    const int64_t F = x.shape().back(), R = F ? x.size() / F : 0;
    return Res::dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA keep = DA::template empty<uint8_t>(rows);
      const T* px = ptr<T>(x, op, "x");
      uint8_t* pk = keep.template data<uint8_t>();
      py::gil_scoped_release nogil;
      SK::keep_rows(pk, px, R, F, T(mask_value), block);
      return keep;
    });
  }
  // Embedding(mask_zero=True): idx (...) int32 -> keep (...) = idx != 0
  static DA nonzero_mask(const DA& idx, int64_t block) {
    const std::string op = "nonzero_mask";
    check_block(block, op);
    DA keep = DA::template empty<uint8_t>(idx.shape());
    const int32_t* pi = ptr<int32_t>(idx, op, "indices");
    uint8_t* pk = keep.template data<uint8_t>();
    py::gil_scoped_release nogil;
    SK::keep_rows(pk, pi, idx.size(), int64_t(1), int32_t(0), block);
    return keep;
  }
  static void expect_mask(const DA& keep, const Shape& shape, const std::string& op) {
    Res::expect(keep.dtype() == DType::u8, op + ": expected `mask` of dtype uint8, received " +
                                               dtype_name(keep.dtype()));
    Res::expect_shape(keep, shape, op, "mask");
  }
  // x (..., F), keep (...) -> x * keep[..., None] (Masking's output, and its backward on dy)
  static DA apply_mask(const DA& x, const DA& keep, int64_t block) {
    const std::string op = "apply_mask";
    Res::expect(!x.shape().empty(), op + ": expected `x` of rank >= 1, received a scalar");
    check_block(block, op);
    expect_mask(keep, Shape(x.shape().begin(), x.shape().end() - 1), op);
    const int64_t F = x.shape().back(), R = F ? x.size() / F : 0;
    const uint8_t* pk = keep.template data<uint8_t>();
    return Res::unary_op(x, x.shape(), op, "x", [&](auto* py, const auto* px) {
      SK::mask_rows(py, px, pk, R, F, block);
    });
  }
  // a, b masks of one shape -> a | b
  static DA mask_or(const DA& a, const DA& b, int64_t block) {
    const std::string op = "mask_or";
    check_block(block, op);
    expect_mask(a, a.shape(), op);
    expect_mask(b, a.shape(), op);
    DA out = DA::template empty<uint8_t>(a.shape());
    const uint8_t *pa = a.template data<uint8_t>(), *pb = b.template data<uint8_t>();
    uint8_t* po = out.template data<uint8_t>();
    py::gil_scoped_release nogil;
    SK::mask_or(po, pa, pb, a.size(), block);
    return out;
  }
  // keep (B,T) -> keep reversed in time (a go_backwards layer's)
  static DA reverse_mask(const DA& keep, int64_t block) {
    const std::string op = "reverse_mask";
    Res::expect_rank(keep, 2, op, "mask");
    check_block(block, op);
    expect_mask(keep, keep.shape(), op);
    DA out = DA::template empty<uint8_t>(keep.shape());
    const uint8_t* pk = keep.template data<uint8_t>();
    uint8_t* po = out.template data<uint8_t>();
    py::gil_scoped_release nogil;
    SK::reverse_mask(po, pk, keep.shape()[0], keep.shape()[1], block);
    return out;
  }

  // GlobalAveragePooling1D with a mask: x (B,T,F), keep (B,T) -> y (B,F), the mean over the kept
  // steps (NaN where none is)
  static DA masked_mean_time(const DA& x, const DA& keep, int64_t block) {
    const std::string op = "masked_mean_time";
    Res::expect_rank(x, 3, op, "x");
    check_block(block, op);
    const int64_t B = x.shape()[0], T_ = x.shape()[1], F = x.shape()[2];
    expect_mask(keep, {B, T_}, op);
    const uint8_t* pk = keep.template data<uint8_t>();
    return Res::unary_op(x, {B, F}, op, "x", [&](auto* py, const auto* px) {
      SK::masked_mean_time(py, px, pk, B, T_, F, block);
    });
  }
  // dy (B,F), keep (B,T) -> dx (B,T,F): dy / max(count, 1) at the kept steps, 0 elsewhere
  static DA masked_mean_time_backward(const DA& dy, const DA& keep, int64_t block) {
    const std::string op = "masked_mean_time_backward";
    Res::expect_rank(dy, 2, op, "dy");
    Res::expect_rank(keep, 2, op, "mask");
    check_block(block, op);
    const int64_t B = dy.shape()[0], T_ = keep.shape()[1], F = dy.shape()[1];
    expect_mask(keep, {B, T_}, op);
    const uint8_t* pk = keep.template data<uint8_t>();
    return Res::unary_op(dy, {B, T_, F}, op, "dy", [&](auto* pdx, const auto* pdy) {
      SK::masked_mean_time_backward(pdx, pdy, pk, B, T_, F, block);
    });
  }

  // ---- RepeatVector and Permute -----------------------------------------------------------------
  // x (B,F) -> (B,n,F)
  static DA repeat_vector(const DA& x, int64_t n, int64_t block) {
    const std::string op = "repeat_vector";
    Res::expect_rank(x, 2, op, "x");
    Res::expect(n >= 0, op + ": expected n >= 0, received n=" + std::to_string(n));
    check_block(block, op);
    const int64_t B = x.shape()[0], F = x.shape()[1];
    return Res::unary_op(x, {B, n, F}, op, "x", [&](auto* py, const auto* px) { SK::repeat(py, px, B, n, F, block); });
  }
  // dy (B,n,F) -> dx (B,F), the sums over the copies
  static DA repeat_vector_backward(const DA& dy, int64_t block) {
    const std::string op = "repeat_vector_backward";
    Res::expect_rank(dy, 3, op, "dy");
    check_block(block, op);
    const int64_t B = dy.shape()[0], n = dy.shape()[1], F = dy.shape()[2];
    return Res::unary_op(dy, {B, F}, op, "dy", [&](auto* pdx, const auto* pdy) {
      SK::sum_middle(pdx, pdy, B, n, F, block);
    });
  }
  // x of rank r <= 8, perm a permutation of 0..r-1 -> np.transpose(x, perm), contiguous
  static DA permute(const DA& x, const std::vector<int64_t>& perm, int64_t block) {
    const std::string op = "permute";
    const int64_t r = int64_t(x.shape().size());
    check_block(block, op);
    Res::expect(r <= seq::kMaxRank, op + ": expected `x` of rank <= " + std::to_string(seq::kMaxRank) +
                                        ", received shape " + dims_text(x.shape()));
    std::vector<int64_t> seen(size_t(r), 0);
    bool ok = int64_t(perm.size()) == r;
    for (int64_t p : perm) ok = ok && p >= 0 && p < r && !seen[size_t(p)]++;
    Res::expect(ok, op + ": expected `perm` a permutation of the " + std::to_string(r) + " axes of `x` (shape " +
                        dims_text(x.shape()) + "), received " + dims_text(perm));
    return Res::dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      seq::Permute<T> body{};
      Shape out_shape(static_cast<size_t>(r)), stride(static_cast<size_t>(r), 1);
      for (int64_t k = r - 2; k >= 0; --k) stride[size_t(k)] = stride[size_t(k + 1)] * x.shape()[size_t(k + 1)];
      for (int64_t k = 0; k < r; ++k) {
        out_shape[size_t(k)] = x.shape()[size_t(perm[size_t(k)])];
        body.out_dims[k] = out_shape[size_t(k)];
        body.in_stride[k] = stride[size_t(perm[size_t(k)])];
      }
      DA y = DA::template empty<T>(out_shape);
      body.out = y.template data<T>();
      body.inp = ptr<T>(x, op, "x");
      body.n = x.size(), body.rank = r;
      py::gil_scoped_release nogil;
      SK::permute(body, block);
      return y;
    });
  }

  static void bind(py::module_& m) {
    const auto blk = py::arg("block") = 128;
    m.def("indices", &indices, py::arg("indices"), py::arg("input_dim"));
    m.def("embedding", &embedding, py::arg("indices"), py::arg("table"), blk);
    m.def("embedding_backward", &embedding_backward, py::arg("dy"), py::arg("order"), py::arg("offsets"), blk);
    m.def("masking_mask", &masking_mask, py::arg("x"), py::arg("mask_value"), blk);
    m.def("nonzero_mask", &nonzero_mask, py::arg("indices"), blk);
    m.def("apply_mask", &apply_mask, py::arg("x"), py::arg("mask"), blk);
    m.def("reverse_mask", &reverse_mask, py::arg("mask"), blk);
    m.def("mask_or", &mask_or, py::arg("a"), py::arg("b"), blk);
    m.def("masked_mean_time", &masked_mean_time, py::arg("x"), py::arg("mask"), blk);
    m.def("masked_mean_time_backward", &masked_mean_time_backward, py::arg("dy"), py::arg("mask"), blk);
    m.def("repeat_vector", &repeat_vector, py::arg("x"), py::arg("n"), blk);
    m.def("repeat_vector_backward", &repeat_vector_backward, py::arg("dy"), blk);
    m.def("permute", &permute, py::arg("x"), py::arg("perm"), blk);
  }
};

}  // namespace faltung::cuda::binding
