// cpp/cuda/bind_resident_losses.hpp — the `resident` entry points a functional model adds to
// bind_resident.hpp's, over DeviceArrays: the merge layers and Concatenate (merge.cuh), the sum
// of two gradients, the losses of faltung.losses (losses.cuh: per-row values and the gradient,
// sample weights as per-row scales) and the optimizer's gradient clipping (norms reduced on the
// device, gradients changed in place: nothing is downloaded). Targets, labels and sample weights
// come as numpy arrays, checked here and uploaded once. Registered by BindResident::bind as
// ResidentLosses<BindResident<Backend>>, whose checks (expect, ptr, dispatch) it uses.
// R rows, K classes (the last axis); n inputs of a merge.
#pragma once
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "bind_kernels.hpp"
#include "device_array.hpp"
#include "loss_kernels.hpp"

namespace faltung::cuda::binding {

template <class Res>
struct ResidentLosses {
  using DA = typename Res::DA;
  using Kn = typename Res::Kn;
  using LK = LossKernels<typename exec_of<Kn>::type>;
  template <typename T> using Buf = typename Res::template Buf<T>;
  using Shape = std::vector<int64_t>;

  // ---- the sum of two gradients -----------------------------------------------------------
  static DA add(const DA& a, const DA& b, int64_t block) {
    const std::string op = "add";
    Res::expect_shape(b, a.shape(), op, "b");
    check_block(block, op);
    return Res::dispatch(a, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>(a.shape());
      const T *pa = Res::template ptr<T>(a, op, "a"), *pb = Res::template ptr<T>(b, op, "b");
      T* py = y.template data<T>();
      py::gil_scoped_release nogil;
      LK::add(py, pa, pb, a.size(), block);
      return y;
    });
  }

  // ---- merge layers ---------------------------------------------------------------------------
  // The inputs' layout as the merge layers see it (merge.cuh's MergeShape; the rules of
  // bind_kernels.hpp's merge_layout): lower ranks get size-1 axes after the batch axis, each
  // axis equal to the output's or 1, equal batch sizes.
  struct Layout {
    Shape dims, in_dims, offsets{0};
    int64_t n = 0, D = 0, N = 1;
  };
  static Layout merge_layout(const std::vector<DA>& xs, const std::string& op) {
    Res::expect(!xs.empty(), op + ": expected a list of at least 1 input, received 0");
    Layout L;
    L.n = int64_t(xs.size());
    std::string shapes;
    for (const DA& x : xs) {
      Res::expect(!x.shape().empty(), op + ": every input needs a batch axis, received shape " + dims_text(x.shape()));
      L.D = std::max<int64_t>(L.D, int64_t(x.shape().size()));
      shapes += (shapes.empty() ? "" : ", ") + dims_text(x.shape());
    }
    L.dims.assign(size_t(L.D), 1);
    for (const DA& x : xs) {
      const int64_t r = int64_t(x.shape().size());
      for (int64_t d = 0; d < L.D; ++d)
        L.in_dims.push_back(d == 0 ? x.shape()[0] : d < L.D - r + 1 ? 1 : x.shape()[size_t(d - (L.D - r))]);
      Res::expect(x.shape()[0] == xs[0].shape()[0],
                  op + ": cannot merge tensors with different batch sizes. Received tensors with shapes " + shapes);
      Res::expect(x.dtype() == xs[0].dtype(), op + ": expected inputs of one dtype, received " +
                                                  dtype_name(xs[0].dtype()) + " and " + dtype_name(x.dtype()));
      L.offsets.push_back(L.offsets.back() + x.size());
    }
    for (int64_t d = 0; d < L.D; ++d)
      for (int64_t k = 0; k < L.n; ++k) {
        const int64_t v = L.in_dims[size_t(k * L.D + d)];
        if (v == 1) continue;
        Res::expect(L.dims[size_t(d)] == 1 || L.dims[size_t(d)] == v,
                    op + ": inputs have incompatible shapes. Received shapes " + shapes);
        L.dims[size_t(d)] = v;
      }
    for (int64_t d : L.dims) L.N *= d;
    return L;
  }
  // The inputs one after another in one buffer (the merge kernels read them so).
  template <typename T>
  static Buf<T> stack(const std::vector<DA>& xs, const Layout& L, const std::string& op, int64_t block) {
    Buf<T> all = Buf<T>::alloc(L.offsets.back());
    for (size_t k = 0; k < xs.size(); ++k) {
      const T* px = Res::template ptr<T>(xs[k], op, "inputs");
      py::gil_scoped_release nogil;
      LK::copy(all.get() + L.offsets[k], px, xs[k].size(), block);
    }
    return all;
  }
  static merge::MergeShape shape_of(const Layout& L, Buf<int64_t>& dims, Buf<int64_t>& in_dims, Buf<int64_t>& offs) {
    dims = Buf<int64_t>::upload(L.dims.data(), L.D);
    in_dims = Buf<int64_t>::upload(L.in_dims.data(), L.n * L.D);
    offs = Buf<int64_t>::upload(L.offsets.data(), L.n + 1);
    return merge::MergeShape{L.n, L.D, L.N, dims.get(), in_dims.get(), offs.get()};
  }
  static merge::Op checked_op(const std::string& name, size_t n, const std::string& op) {
    const merge::Op o = Res::Base::merge_op(name);
    Res::expect(o != merge::Op::subtract || n == 2, op + ": expected exactly 2 inputs, received " + std::to_string(n));
    return o;
  }
  static bool extreme(merge::Op o) { return o == merge::Op::maximum || o == merge::Op::minimum; }
  using Masks = std::optional<std::vector<std::optional<DA>>>;
  // The inputs' masks (merge.cuh: MergeShape's masks): None, or one per input, None or uint8 of
  // the input's shape without its last axis; the layers that use them only (multiply, maximum,
  // minimum). The n pointers are uploaded into `ptrs`; s.masks stays nullptr if none is given.
  static void set_masks(merge::MergeShape& s, Buf<const uint8_t*>& ptrs, const Masks& masks,
                        const std::vector<DA>& xs, merge::Op o, const std::string& op) {
    if (!masks) return;
    Res::expect(masks->size() == xs.size(), op + ": expected one mask (or None) per input, received " +
                                                std::to_string(masks->size()) + " for " + std::to_string(xs.size()) +
                                                " inputs");
    std::vector<const uint8_t*> p;
    for (size_t k = 0; k < xs.size(); ++k) {
      const std::optional<DA>& m = (*masks)[k];
      if (!m) {
        p.push_back(nullptr);
        continue;
      }
      Res::expect(o == merge::Op::multiply || extreme(o), op + ": masks are taken by multiply, maximum and minimum "
                                                               "only (the others ignore them)");
      Res::expect(m->dtype() == DType::u8, op + ": expected masks of dtype uint8, received " + dtype_name(m->dtype()));
      Shape want = xs[k].shape();
      want.pop_back();
      Res::expect_shape(*m, want, op, "mask " + std::to_string(k));
      p.push_back(m->template data<uint8_t>());
    }
    if (std::all_of(p.begin(), p.end(), [](const uint8_t* q) { return q == nullptr; })) return;
    ptrs = Buf<const uint8_t*>::upload(p.data(), int64_t(p.size()));
    s.masks = ptrs.get();
    s.all_masked = std::none_of(p.begin(), p.end(), [](const uint8_t* q) { return q == nullptr; });
  }

  // name (add, subtract, multiply, average, maximum, minimum), xs, masks (set_masks) -> (y, win
  // (int32, y's shape: the input each maximum/minimum came from) or None)
  static py::tuple merge_forward(const std::string& name, const std::vector<DA>& xs, const Masks& masks,
                                 int64_t block) {
    const std::string op = "merge(" + name + ")";
    const merge::Op o = checked_op(name, xs.size(), op);
    check_block(block, op);
    const Layout L = merge_layout(xs, op);
    return Res::dispatch(xs[0], op, [&](auto zero) {
      using T = decltype(zero);
      Buf<T> all = stack<T>(xs, L, op, block);
      Buf<int64_t> dims, in_dims, offs;
      Buf<const uint8_t*> ptrs;
      merge::MergeShape s = shape_of(L, dims, in_dims, offs);
      set_masks(s, ptrs, masks, xs, o, op);
      DA y = DA::template empty<T>(L.dims);
      std::optional<DA> win;
      if (extreme(o)) {
        win = DA::template empty<int32_t>(L.dims);
        win->index_bound = L.n;
      }
      T* py = y.template data<T>();
      int32_t* pw = win ? win->template data<int32_t>() : nullptr;
      {
        py::gil_scoped_release nogil;
        Kn::merge_forward(py, pw, all.get(), s, o, block);
      }
      return py::make_tuple(y, Res::opt(win));
    });
  }
  // dy (the output's shape), xs (the inputs: multiply reads them, the others their shapes), win
  // (maximum/minimum: merge_forward's), the forward's masks -> [the gradient of each input, in
  // its shape]
  static py::list merge_backward(const std::string& name, const DA& dy, const std::vector<DA>& xs,
                                 const std::optional<DA>& win, const Masks& masks, int64_t block) {
    const std::string op = "merge_backward(" + name + ")";
    const merge::Op o = checked_op(name, xs.size(), op);
    check_block(block, op);
    const Layout L = merge_layout(xs, op);
    Res::expect_shape(dy, L.dims, op, "dy");
    if (extreme(o)) {
      Res::expect(win.has_value(), op + ": needs `win` (the winners merge returned)");
      Res::expect_shape(*win, L.dims, op, "win");
      Res::expect(win->index_bound == L.n, op + ": `win` must be the winners of a merge of " + std::to_string(L.n) +
                                               " inputs (merge's second result)");
    }
    return Res::dispatch(dy, op, [&](auto zero) {
      using T = decltype(zero);
      Buf<T> all = o == merge::Op::multiply ? stack<T>(xs, L, op, block) : Buf<T>::alloc(0);
      Buf<int64_t> dims, in_dims, offs;
      Buf<const uint8_t*> ptrs;
      merge::MergeShape s = shape_of(L, dims, in_dims, offs);
      set_masks(s, ptrs, masks, xs, o, op);
      const int64_t total = L.offsets.back();
      Buf<T> g = Buf<T>::alloc(total);
      const T* pdy = Res::template ptr<T>(dy, op, "dy");
      const int32_t* pw = extreme(o) ? Res::template ptr<int32_t>(*win, op, "win") : nullptr;
      py::list out;
      {
        py::gil_scoped_release nogil;
        Kn::merge_backward(g.get(), pdy, o == merge::Op::multiply ? all.get() : nullptr, pw, s, o, total, block);
      }
      for (size_t k = 0; k < xs.size(); ++k) {
        DA dx = DA::template empty<T>(xs[k].shape());
        T* pdx = dx.template data<T>();
        {
          py::gil_scoped_release nogil;
          LK::copy(pdx, g.get() + L.offsets[k], xs[k].size(), block);
        }
        out.append(dx);
      }
      return out;
    });
  }

  // ---- Dot: batched products and the L2 normalization of rows ----------------------------------
  // a (B,M,K) (transpose_a: (B,K,M)), b (B,K,N) (transpose_b: (B,N,K)) -> (B,M,N), each product
  // op(a[i]) op(b[i]) (dense.cuh's Gemm over the batch).
  static DA batch_matmul(const DA& a, const DA& b, bool transpose_a, bool transpose_b) {
    const std::string op = "batch_matmul";
    Res::expect_rank(a, 3, op, "a");
    Res::expect_rank(b, 3, op, "b");
    const Shape &as = a.shape(), &bs = b.shape();
    const int64_t B = as[0], M = transpose_a ? as[2] : as[1], K = transpose_a ? as[1] : as[2];
    const int64_t N = transpose_b ? bs[1] : bs[2], Kb = transpose_b ? bs[2] : bs[1];
    Res::expect(bs[0] == B && Kb == K && a.dtype() == b.dtype(),
                op + ": expected a and b of one dtype, equal batch sizes and inner sizes, received a of shape " +
                    dims_text(as) + (transpose_a ? " (transposed)" : "") + " and b of shape " + dims_text(bs) +
                    (transpose_b ? " (transposed)" : ""));
    return Res::dispatch(a, op, [&](auto zero) {
      using T = decltype(zero);
      DA y = DA::template empty<T>({B, M, N});
      dense::Gemm<T> g{M, N, K, Res::template ptr<T>(a, op, "a"), as[2], transpose_a, Res::template ptr<T>(b, op, "b"),
                       bs[2], transpose_b, y.template data<T>(), N, T(1), T(0), nullptr, nullptr, dense::no_act<T>()};
      g.batch = B, g.sA = M * K, g.sB = K * N, g.sC = M * N;
      py::gil_scoped_release nogil;
      Kn::gemm(g);
      return y;
    });
  }
  // x (..., K) -> (x_hat (x's shape), inv (x's shape without K)): rows over the last axis
  // divided by max(their L2 norm, epsilon) (Dot's normalize=True).
  static py::tuple l2_normalize(const DA& x, double eps, int64_t block) {
    const std::string op = "l2_normalize";
    check_block(block, op);
    Res::expect(!x.shape().empty() && eps > 0, op + ": expected an input of rank >= 1 and epsilon > 0");
    Shape rows_shape = x.shape();
    const int64_t K = rows_shape.back();
    rows_shape.pop_back();
    return Res::dispatch(x, op, [&](auto zero) {
      using T = decltype(zero);
      DA x_hat = DA::template empty<T>(x.shape()), inv = DA::template empty<T>(rows_shape);
      const T* px = Res::template ptr<T>(x, op, "x");
      T *ph = x_hat.template data<T>(), *pi = inv.template data<T>();
      {
        py::gil_scoped_release nogil;
        Kn::l2_normalize(ph, pi, px, inv.size(), K, T(eps), block);
      }
      return py::make_tuple(x_hat, inv);
    });
  }
  // g = dL/dx_hat, l2_normalize's (x_hat, inv) -> dL/dx
  static DA l2_normalize_backward(const DA& g, const DA& x_hat, const DA& inv, double eps, int64_t block) {
    const std::string op = "l2_normalize_backward";
    check_block(block, op);
    Res::expect_shape(x_hat, g.shape(), op, "x_hat");
    Shape rows_shape = g.shape();
    Res::expect(!rows_shape.empty() && eps > 0, op + ": expected an input of rank >= 1 and epsilon > 0");
    const int64_t K = rows_shape.back();
    rows_shape.pop_back();
    Res::expect_shape(inv, rows_shape, op, "inv");
    return Res::dispatch(g, op, [&](auto zero) {
      using T = decltype(zero);
      DA dx = DA::template empty<T>(g.shape());
      const T *pg = Res::template ptr<T>(g, op, "g"), *ph = Res::template ptr<T>(x_hat, op, "x_hat"),
              *pi = Res::template ptr<T>(inv, op, "inv");
      T* pdx = dx.template data<T>();
      py::gil_scoped_release nogil;
      Kn::l2_normalize_backward(pdx, pg, ph, pi, inv.size(), K, T(eps), block);
      return dx;
    });
  }

  // ---- Concatenate ---------------------------------------------------------------------------
  static int64_t concat_axis(int64_t axis, int64_t ndim, const std::string& op) {
    Res::expect(ndim >= 1 && axis >= -ndim && axis < ndim, op + ": axis " + std::to_string(axis) +
                                                              " is out of bounds for inputs of rank " +
                                                              std::to_string(ndim));
    return axis < 0 ? axis + ndim : axis;
  }
  // outer (the axes before `axis`) and inner (after) sizes of `shape`
  static std::pair<int64_t, int64_t> outer_inner(const Shape& shape, int64_t ax) {
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < ax; ++d) outer *= shape[size_t(d)];
    for (int64_t d = ax + 1; d < int64_t(shape.size()); ++d) inner *= shape[size_t(d)];
    return {outer, inner};
  }
  // xs (equal shapes but along axis) -> y
  static DA concatenate(const std::vector<DA>& xs, int64_t axis, int64_t block) {
    const std::string op = "concatenate";
    check_block(block, op);
    Res::expect(!xs.empty(), op + ": expected a list of at least 1 input, received 0");
    const int64_t nd = int64_t(xs[0].shape().size()), ax = concat_axis(axis, nd, op);
    Shape starts{0};
    Layout L;  // only the offsets and n (stack's)
    L.n = int64_t(xs.size());
    for (size_t k = 0; k < xs.size(); ++k) {
      const Shape& s = xs[k].shape();
      bool ok = int64_t(s.size()) == nd && xs[k].dtype() == xs[0].dtype();
      for (int64_t d = 0; ok && d < nd; ++d) ok = d == ax || s[size_t(d)] == xs[0].shape()[size_t(d)];
      Res::expect(ok, op + ": expected inputs of one dtype and equal shapes except along axis " + std::to_string(ax) +
                          ", received " + dims_text(xs[0].shape()) + " and " + dims_text(s) + " at index " +
                          std::to_string(k));
      starts.push_back(starts.back() + s[size_t(ax)]);
      L.offsets.push_back(L.offsets.back() + xs[k].size());
    }
    Shape out_shape = xs[0].shape();
    out_shape[size_t(ax)] = starts.back();
    const auto [outer, inner] = outer_inner(out_shape, ax);
    return Res::dispatch(xs[0], op, [&, outer = outer, inner = inner](auto zero) {
      using T = decltype(zero);
      Buf<T> all = stack<T>(xs, L, op, block);
      Buf<int64_t> dstarts = Buf<int64_t>::upload(starts.data(), int64_t(starts.size()));
      DA y = DA::template empty<T>(out_shape);
      T* py = y.template data<T>();
      py::gil_scoped_release nogil;
      Kn::concat_forward(py, all.get(), merge::ConcatShape{outer, inner, starts.back(), L.n, dstarts.get()}, block);
      return y;
    });
  }
  // dy, the inputs' sizes along axis -> [their gradients]
  static py::list concatenate_backward(const DA& dy, const std::vector<int64_t>& sizes, int64_t axis, int64_t block) {
    const std::string op = "concatenate_backward";
    check_block(block, op);
    Res::expect(!sizes.empty(), op + ": expected at least 1 input size, received 0");
    const int64_t nd = int64_t(dy.shape().size()), ax = concat_axis(axis, nd, op);
    Shape starts{0};
    for (int64_t s : sizes) {
      Res::expect(s >= 0, op + ": expected sizes >= 0, received " + std::to_string(s));
      starts.push_back(starts.back() + s);
    }
    Res::expect(starts.back() == dy.shape()[size_t(ax)],
                op + ": the sizes sum to " + std::to_string(starts.back()) + ", but `dy` of shape " +
                    dims_text(dy.shape()) + " has " + std::to_string(dy.shape()[size_t(ax)]) + " along axis " +
                    std::to_string(ax));
    const auto [outer, inner] = outer_inner(dy.shape(), ax);
    return Res::dispatch(dy, op, [&, outer = outer, inner = inner](auto zero) {
      using T = decltype(zero);
      Buf<T> g = Buf<T>::alloc(dy.size());
      Buf<int64_t> dstarts = Buf<int64_t>::upload(starts.data(), int64_t(starts.size()));
      const T* pdy = Res::template ptr<T>(dy, op, "dy");
      {
        py::gil_scoped_release nogil;
        Kn::concat_backward(g.get(), pdy, merge::ConcatShape{outer, inner, starts.back(), int64_t(sizes.size()),
                                                             dstarts.get()},
                            block);
      }
      py::list out;
      int64_t off = 0;
      for (int64_t s : sizes) {
        Shape shape = dy.shape();
        shape[size_t(ax)] = s;
        DA dx = DA::template empty<T>(shape);
        T* pdx = dx.template data<T>();
        {
          py::gil_scoped_release nogil;
          LK::copy(pdx, g.get() + off, dx.size(), block);
        }
        off += dx.size();
        out.append(dx);
      }
      return out;
    });
  }

  // ---- losses --------------------------------------------------------------------------------
  static loss::Kind loss_kind(const std::string& name) {
    const std::pair<const char*, loss::Kind> kinds[] = {
        {"softmax_xent", loss::Kind::softmax_xent}, {"probs_xent", loss::Kind::probs_xent},
        {"bce_logits", loss::Kind::bce_logits},     {"bce_probs", loss::Kind::bce_probs},
        {"mse", loss::Kind::mse},                   {"mae", loss::Kind::mae},
        {"huber", loss::Kind::huber}};
    for (const auto& [n, k] : kinds)
      if (name == n) return k;
    throw py::value_error("loss: unknown kind '" + name +
                          "'. Expected one of: softmax_xent, probs_xent, bce_logits, bce_probs, mse, mae, huber");
  }
  // pred (..., K) on the device; target (pred's shape) or labels (pred's shape without K, int32),
  // exactly one, as numpy; row_scale (pred's shape without K) numpy or None -> (values (R,) with
  // R the rows, grad (pred's shape) | None): grad = d values / d pred times scale (and row_scale)
  // Each of target, labels and row_scale may also be a DeviceArray already uploaded (the batch's
  // targets shared with the device metrics, bind_resident_io.hpp): shapes and dtypes checked, the
  // labels' range not (the caller checked it before the upload; the body never indexes by them).
  static py::tuple row_loss(const std::string& kind_name, const DA& pred, const py::object& target,
                            const py::object& labels_a, const py::object& row_scale, double scale, double tmul,
                            double tadd, double delta, bool need_grad, int64_t block) {
    const loss::Kind kind = loss_kind(kind_name);
    const std::string op = "loss(" + kind_name + ")";
    check_block(block, op);
    Res::expect(!pred.shape().empty(), op + ": expected `pred` of rank >= 1, received a scalar");
    Res::expect(target.is_none() != labels_a.is_none(), op + ": expected exactly one of `target` and `labels`");
    const int64_t K = pred.shape().back(), R = K ? pred.size() / K : 0;
    const Shape rows(pred.shape().begin(), pred.shape().end() - 1);
    std::optional<DA> dlab;
    if (py::isinstance<DA>(labels_a)) {
      dlab = labels_a.cast<DA>();
      Res::expect_shape(*dlab, rows, op, "labels");
      Res::template ptr<int32_t>(*dlab, op, "labels");
    } else if (!labels_a.is_none()) {
      const I32 labels = as_int32(labels_a.cast<py::array>(), op, "labels");
      Res::expect(Shape(labels.shape(), labels.shape() + labels.ndim()) == rows,
                  op + ": expected `labels` of shape " + dims_text(rows) + ", received " + shape_str(labels));
      for (int64_t r = 0; r < R; ++r)
        Res::expect(labels.data()[r] >= 0 && labels.data()[r] < K,
                    op + ": label " + std::to_string(labels.data()[r]) + " at index " + std::to_string(r) +
                        " is out of range [0, " + std::to_string(K) + ")");
      dlab = DA::from_numpy(labels);
    }
    return Res::dispatch(pred, op, [&](auto zero) {
      using T = decltype(zero);
      using A = py::array_t<T, py::array::c_style | py::array::forcecast>;
      std::optional<DA> dt, dw;
      if (py::isinstance<DA>(target)) {
        dt = target.cast<DA>();
        Res::expect_shape(*dt, pred.shape(), op, "target");
      } else if (!target.is_none()) {
        const A t = A::ensure(target);
        Res::expect(t && Shape(t.shape(), t.shape() + t.ndim()) == pred.shape(),
                    op + ": expected `target` of shape " + dims_text(pred.shape()) + ", received " +
                        (t ? shape_str(t) : std::string("a non-numeric array")));
        dt = DA::from_numpy(t);
      }
      if (py::isinstance<DA>(row_scale)) {
        dw = row_scale.cast<DA>();
        Res::expect_shape(*dw, rows, op, "row_scale");
      } else if (!row_scale.is_none()) {
        const A w = A::ensure(row_scale);
        Res::expect(w && Shape(w.shape(), w.shape() + w.ndim()) == rows,
                    op + ": expected `row_scale` of shape " + dims_text(rows) + ", received " +
                        (w ? shape_str(w) : std::string("a non-numeric array")));
        dw = DA::from_numpy(w);
      }
      DA values = DA::template empty<T>({R});
      std::optional<DA> grad;
      if (need_grad) grad = DA::template empty<T>(pred.shape());
      const loss::RowLoss<T> body{values.template data<T>(),
                                  Res::template opt_ptr<T>(grad, op, "grad"),
                                  Res::template ptr<T>(pred, op, "pred"),
                                  Res::template opt_ptr<T>(dt, op, "target"),
                                  dlab ? dlab->template data<int32_t>() : nullptr,
                                  Res::template opt_ptr<T>(dw, op, "row_scale"),
                                  T(scale), T(tmul), T(tadd), T(delta), R, K, kind};
      {
        py::gil_scoped_release nogil;
        LK::row_loss(body, block);
      }
      return py::make_tuple(values, Res::opt(grad));
    });
  }

  // ---- gradient clipping (in place; the optimizer's clipnorm, global_clipnorm, clipvalue) -----
  static std::string clip_checks(const std::vector<DA>& grads, double c, const std::string& op, int64_t block) {
    check_block(block, op);
    Res::expect(c > 0, op + ": expected a clipping value > 0, received " + std::to_string(c));
    for (const DA& g : grads)
      Res::expect(g.dtype() == grads[0].dtype(), op + ": expected gradients of one dtype, received " +
                                                     dtype_name(grads[0].dtype()) + " and " + dtype_name(g.dtype()));
    return op;
  }
  // each gradient scaled to L2 norm <= clipnorm (when global: all of them together)
  static void clip_by_norm(const std::vector<DA>& grads, double c, bool global, int64_t block) {
    const std::string op = clip_checks(grads, c, global ? "clip_by_global_norm" : "clip_by_norm", block);
    if (grads.empty()) return;
    Res::dispatch(grads[0], op, [&](auto zero) {
      using T = decltype(zero);
      const int64_t m = int64_t(grads.size());
      int64_t parts = 1;
      std::vector<T*> ps;
      for (const DA& g : grads) {
        ps.push_back(Res::template ptr<T>(g, op, "grads"));
        parts = std::max(parts, loss::sumsq_parts(g.size()));
      }
      Buf<T> part = Buf<T>::alloc(parts), sumsq = Buf<T>::alloc(m), factor = Buf<T>::alloc(global ? 1 : m);
      py::gil_scoped_release nogil;
      for (int64_t i = 0; i < m; ++i) LK::sum_squares(sumsq.get() + i, part.get(), ps[size_t(i)], grads[size_t(i)].size(), block);
      if (global) LK::norm_factor(factor.get(), sumsq.get(), m, T(c), true);
      for (int64_t i = 0; i < m; ++i) {
        T* f = global ? factor.get() : factor.get() + i;
        if (!global) LK::norm_factor(f, sumsq.get() + i, 1, T(c), false);
        LK::scale_by(ps[size_t(i)], f, grads[size_t(i)].size(), block);
      }
    });
  }
  static void clip_by_value(const std::vector<DA>& grads, double c, int64_t block) {
    const std::string op = clip_checks(grads, c, "clip_by_value", block);
    if (grads.empty()) return;
    Res::dispatch(grads[0], op, [&](auto zero) {
      using T = decltype(zero);
      for (const DA& g : grads) {
        T* p = Res::template ptr<T>(g, op, "grads");
        py::gil_scoped_release nogil;
        LK::clip_value(p, T(c), g.size(), block);
      }
    });
  }

  static void bind(py::module_& m) {
    const auto blk = py::arg("block") = 128;
    m.def("add", &add, py::arg("a"), py::arg("b"), blk);
    m.def("merge", &merge_forward, py::arg("name"), py::arg("xs"), py::arg("masks") = py::none(), blk);
    m.def("merge_backward", &merge_backward, py::arg("name"), py::arg("dy"), py::arg("xs"), py::arg("win"),
          py::arg("masks") = py::none(), blk);
    m.def("batch_matmul", &batch_matmul, py::arg("a"), py::arg("b"), py::arg("transpose_a") = false,
          py::arg("transpose_b") = false);
    m.def("l2_normalize", &l2_normalize, py::arg("x"), py::arg("epsilon"), blk);
    m.def("l2_normalize_backward", &l2_normalize_backward, py::arg("g"), py::arg("x_hat"), py::arg("inv"),
          py::arg("epsilon"), blk);
    m.def("concatenate", &concatenate, py::arg("xs"), py::arg("axis"), blk);
    m.def("concatenate_backward", &concatenate_backward, py::arg("dy"), py::arg("sizes"), py::arg("axis"), blk);
    m.def("loss", &row_loss, py::arg("kind"), py::arg("pred"), py::arg("target") = py::none(),
          py::arg("labels") = py::none(), py::arg("row_scale") = py::none(), py::arg("scale") = 1.0,
          py::arg("tmul") = 1.0, py::arg("tadd") = 0.0, py::arg("delta") = 1.0, py::arg("need_grad") = true, blk);
    m.def("clip_by_norm", [](const std::vector<DA>& g, double c, int64_t block) { clip_by_norm(g, c, false, block); },
          py::arg("grads"), py::arg("clipnorm"), blk);
    m.def("clip_by_global_norm", [](const std::vector<DA>& g, double c, int64_t block) { clip_by_norm(g, c, true, block); },
          py::arg("grads"), py::arg("clipnorm"), blk);
    m.def("clip_by_value", &clip_by_value, py::arg("grads"), py::arg("clipvalue"), blk);
  }
};

}  // namespace faltung::cuda::binding
