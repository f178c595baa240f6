// Bindings of the conv family: conv2d_forward / conv2d_backward (float32 and float64, by
// the dtype of x). Shapes: x (N,H,W,C), w (KH,KW,C/groups,K), b (K) or None,
// dout (N,OH,OW,K). Padding is given explicitly (pad_top, pad_left; the bottom/right pad
// follows from OH/OW); the ops layer turns "valid"/"same"/"causal"/"full" into numbers.
#include <string>

#include "common.hpp"
#include "faltung/conv.hpp"

namespace faltung::py_binding {

namespace {

Conv2dShape make_shape(const py::array& x, const py::array& w, int64_t OH, int64_t OW, int64_t sh,
                       int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw, int64_t groups,
                       const std::string& op) {
  check_rank(x, 4, op, "x");
  check_rank(w, 4, op, "w");
  const auto xs = shape_of(x), ws = shape_of(w);
  if (groups <= 0) throw py::value_error(op + ": groups must be positive, received groups=" + std::to_string(groups));
  if (ws[2] * groups != xs[3])
    throw py::value_error(op + ": `w` of shape " + shape_str(ws) + " with groups=" + std::to_string(groups) +
                          " expects " + std::to_string(ws[2] * groups) + " input channels, but `x` of shape " +
                          shape_str(xs) + " has " + std::to_string(xs[3]));
  Conv2dShape s{xs[0], xs[1], xs[2], xs[3], ws[3], ws[0], ws[1], OH, OW, sh, sw, dh, dw, pt, pl, groups};
  check_conv2d_shape(s);
  return s;
}

template <typename T>
py::tuple forward_impl(const py::array& x_, const py::array& w_, const py::object& b_, const Conv2dShape& s,
                       ConvAlgo algo, bool relu) {
  Arr<T> x = Arr<T>::ensure(x_), w = Arr<T>::ensure(w_);
  Arr<T> b;
  const T* bp = nullptr;
  if (!b_.is_none()) {
    b = Arr<T>::ensure(b_);
    if (!b) throw py::value_error("conv2d_forward: `b` must be an array or None");
    check_shape(b, {s.K}, "conv2d_forward", "b");
    bp = b.data();
  }
  Arr<T> out = empty<T>({s.N, s.OH, s.OW, s.K});
  T* op = out.mutable_data();
  ConvAlgo ran;
  {
    py::gil_scoped_release nogil;
    ran = conv2d_forward<T>(op, x.data(), w.data(), bp, s, algo, relu);
  }
  return py::make_tuple(out, std::string(conv_algo_name(ran)));
}

template <typename T>
py::tuple backward_impl(const py::array& dout_, const py::array& x_, const py::array& w_, const Conv2dShape& s,
                        bool need_dx, bool need_dw, bool need_db, ConvAlgo algo) {
  Arr<T> dout = Arr<T>::ensure(dout_), x = Arr<T>::ensure(x_), w = Arr<T>::ensure(w_);
  py::object dx = py::none(), dw = py::none(), db = py::none();
  T *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
  if (need_dx) {
    Arr<T> a = empty<T>({s.N, s.H, s.W, s.C});
    dxp = a.mutable_data();
    dx = a;
  }
  if (need_dw) {
    Arr<T> a = empty<T>({s.KH, s.KW, s.C / s.groups, s.K});
    dwp = a.mutable_data();
    dw = a;
  }
  if (need_db) {
    Arr<T> a = empty<T>({s.K});
    dbp = a.mutable_data();
    db = a;
  }
  {
    py::gil_scoped_release nogil;
    conv2d_backward<T>(dxp, dwp, dbp, dout.data(), x.data(), w.data(), s, algo);
  }
  return py::make_tuple(dx, dw, db);
}

bool is_f64(const py::array& x) { return x.dtype().is(py::dtype::of<double>()); }

}  // namespace

void bind_conv(py::module_& m) {
  m.def(
      "conv2d_forward",
      [](const py::array& x, const py::array& w, const py::object& b, int64_t stride_h, int64_t stride_w,
         int64_t pad_top, int64_t pad_left, int64_t OH, int64_t OW, int64_t dil_h, int64_t dil_w,
         int64_t groups, const std::string& algorithm, bool relu) {
        const Conv2dShape s = make_shape(x, w, OH, OW, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
                                         groups, "conv2d_forward");
        const ConvAlgo algo = conv_algo_from_name(algorithm);
        return is_f64(x) ? forward_impl<double>(x, w, b, s, algo, relu) : forward_impl<float>(x, w, b, s, algo, relu);
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"),
      py::arg("pad_left"), py::arg("OH"), py::arg("OW"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"),
      py::arg("algorithm") = "auto", py::arg("relu") = false,
      "x (N,H,W,C), w (KH,KW,C/groups,K), b (K)|None -> (out (N,OH,OW,K), algorithm name). "
      "float64 if x is float64, else float32. relu fuses max(0, .) after the bias.");
  m.def(
      "conv2d_backward",
      [](const py::array& dout, const py::array& x, const py::array& w, int64_t stride_h, int64_t stride_w,
         int64_t pad_top, int64_t pad_left, int64_t dil_h, int64_t dil_w, int64_t groups, bool need_dx,
         bool need_dw, bool need_db, const std::string& algorithm) {
        check_rank(dout, 4, "conv2d_backward", "dout");
        const auto ds = shape_of(dout);
        const Conv2dShape s = make_shape(x, w, ds[1], ds[2], stride_h, stride_w, pad_top, pad_left, dil_h, dil_w,
                                         groups, "conv2d_backward");
        check_shape(dout, {s.N, s.OH, s.OW, s.K}, "conv2d_backward", "dout");
        const ConvAlgo algo = conv_algo_from_name(algorithm);
        return is_f64(x) ? backward_impl<double>(dout, x, w, s, need_dx, need_dw, need_db, algo)
                         : backward_impl<float>(dout, x, w, s, need_dx, need_dw, need_db, algo);
      },
      py::arg("dout"), py::arg("x"), py::arg("w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"),
      py::arg("pad_left"), py::arg("dil_h"), py::arg("dil_w"), py::arg("groups"), py::arg("need_dx") = true,
      py::arg("need_dw") = true, py::arg("need_db") = true, py::arg("algorithm") = "auto",
      "dout (N,OH,OW,K), x (N,H,W,C), w (KH,KW,C/groups,K) -> (dx|None, dw|None, db|None).");
  m.def(
      "conv2d_choose_algorithm",
      [](int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t KH, int64_t KW, int64_t OH, int64_t OW,
         int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t dil_h, int64_t dil_w,
         int64_t groups) {
        Conv2dShape s{N, H, W, C, K, KH, KW, OH, OW, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, groups};
        check_conv2d_shape(s);
        return std::string(conv_algo_name(choose_conv_algo(s)));
      },
      "Name of the algorithm conv2d_forward(algorithm='auto') runs for this geometry.");
  m.def("conv_set_im2col_tuning", &conv_set_im2col_tuning, py::arg("tile_rows") = 0,
        py::arg("tile_parallel") = true, "Benchmark knob: im2col rows per tile (0 = auto) and the split.");
}

}  // namespace faltung::py_binding
