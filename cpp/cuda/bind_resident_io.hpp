// cpp/cuda/bind_resident_io.hpp — what goes in and out of a device-resident training step
// (issue 14: "fit copies each batch in once and only losses and metrics out"), as `resident`
// entry points over DeviceArrays:
//  - stats(n): a float64 vector of n slots; row_stats(out, slot, kind, pred, ...) reduces a
//    loss's per-row values or a compiled metric (metrics.cuh) into out[slot], out[slot + 1]
//    (sum v w, sum c w), so a batch downloads one small vector instead of its predictions
//    (faltung.models.resident_metrics).
// Registered by BindResident::bind as ResidentIo<BindResident<Backend>>, whose checks it uses.
// R rows, K the last axis.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bind_kernels.hpp"
#include "device_array.hpp"
#include "loss_kernels.hpp"
#include "metric_kernels.hpp"

namespace faltung::cuda::binding {

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
    const auto blk = py::arg("block") = 128;
    m.def("stats", &stats, py::arg("n"), "A float64 DeviceArray of n slots for row_stats (uninitialized).");
    m.def("row_stats", &row_stats, py::arg("out"), py::arg("slot"), py::arg("kind"), py::arg("pred"),
          py::arg("target") = py::none(), py::arg("labels") = py::none(), py::arg("weight") = py::none(),
          py::arg("threshold") = 0.5, blk);
  }
};

}  // namespace faltung::cuda::binding
