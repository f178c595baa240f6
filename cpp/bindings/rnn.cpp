// Bindings of the recurrent family: rnn_forward_f32/_f64 and rnn_backward_f32/_f64, one pair
// for SimpleRNN, LSTM and GRU (cell = "simple_rnn", "lstm", "gru").
// B batch, T steps, F features, U units, GU = gates * U.
// Each call checks every shape, makes the plan, takes its workspace (the size the kernel
// states) from a per-thread buffer that grows and is reused, and releases the GIL around the
// kernel.
#include "common.hpp"
#include "faltung/rnn.hpp"

namespace faltung::py_binding {

namespace {

// (name, negative_slope, threshold, max_value or None, alpha) -> kind and parameters
void parse_activation(const py::tuple& spec, Act& a, ActParams& p) {
  if (spec.size() != 5)
    throw py::value_error("rnn: expected an activation spec (name, negative_slope, threshold, "
                          "max_value, alpha)");
  a = act_from_name(spec[0].cast<std::string>());
  p.negative_slope = spec[1].cast<double>();
  p.threshold = spec[2].cast<double>();
  p.has_max = !spec[3].is_none();
  if (p.has_max) p.max_value = spec[3].cast<double>();
  p.alpha = spec[4].cast<double>();
}

RnnCell parse_cell(const std::string& cell) {
  if (cell == "simple_rnn") return RnnCell::simple_rnn;
  if (cell == "lstm") return RnnCell::lstm;
  if (cell == "gru") return RnnCell::gru;
  throw py::value_error("rnn: unknown cell '" + cell + "', expected simple_rnn, lstm or gru");
}

// The checked arguments of one call (the arrays are kept alive here).
template <typename Real>
struct Call {
  std::string op;
  RnnConfig c;
  Arr<Real> x, kernel, rkernel, bias, h0, c0, rmask;
  Arr<uint8_t> mask;
  bool has_h0 = false, has_c0 = false, has_mask = false;

  RnnWeights<Real> weights() const {
    RnnWeights<Real> w;
    w.kernel = kernel.data();
    w.recurrent_kernel = rkernel.data();
    w.bias = c.has_bias ? bias.data() : nullptr;
    w.recurrent_mask = c.has_recurrent_mask ? rmask.data() : nullptr;
    return w;
  }
  const uint8_t* mask_ptr() const { return has_mask ? mask.data() : nullptr; }
  const Real* h0_ptr() const { return has_h0 ? h0.data() : nullptr; }
  const Real* c0_ptr() const { return has_c0 ? c0.data() : nullptr; }
};

std::string gates_str(int64_t G) { return G == 1 ? "units" : std::to_string(G) + "*units"; }

template <typename Real>
Call<Real> make_call(const std::string& cell, const std::string& suffix, const Arr<Real>& x,
                     const Arr<Real>& kernel, const Arr<Real>& rkernel, const py::object& bias,
                     const py::object& h0, const py::object& c0, const py::object& mask,
                     const py::object& rmask, bool go_backwards, bool reset_after,
                     const py::tuple& activation, const py::tuple& recurrent_activation,
                     bool zero_output_for_mask) {
  Call<Real> k;
  RnnConfig& c = k.c;
  c.cell = parse_cell(cell);
  k.op = cell + suffix;
  const std::string& op = k.op;
  k.x = x, k.kernel = kernel, k.rkernel = rkernel;
  if (x.ndim() != 3)
    throw py::value_error(op + ": expected `x` of rank 3 (batch, time, features), received shape " +
                          shape_str(shape_of(x)));
  const int64_t G = c.gates();
  if (rkernel.ndim() != 2 || rkernel.shape(0) <= 0 || rkernel.shape(1) != G * rkernel.shape(0))
    throw py::value_error(op + ": expected `recurrent_kernel` of shape (units, " + gates_str(G) +
                          ") with units > 0, received shape " + shape_str(shape_of(rkernel)));
  c.B = x.shape(0), c.T = x.shape(1), c.F = x.shape(2), c.U = rkernel.shape(0);
  const int64_t B = c.B, T = c.T, F = c.F, U = c.U, GU = c.GU();
  check_shape(kernel, {F, GU}, op, "kernel");
  c.reset_after = reset_after;
  c.go_backwards = go_backwards;
  c.zero_output_for_mask = zero_output_for_mask;
  parse_activation(activation, c.act, c.act_params);
  parse_activation(recurrent_activation, c.rec_act, c.rec_act_params);
  if (!bias.is_none()) {
    k.bias = bias.cast<Arr<Real>>();
    if (c.cell == RnnCell::gru && reset_after)
      check_shape(k.bias, {2, GU}, op, "bias");
    else
      check_shape(k.bias, {GU}, op, "bias");
    c.has_bias = true;
  }
  if (!h0.is_none()) {
    k.h0 = h0.cast<Arr<Real>>();
    check_shape(k.h0, {B, U}, op, "h0");
    k.has_h0 = true;
  }
  if (!c0.is_none()) {
    if (c.cell != RnnCell::lstm) throw py::value_error(op + ": `c0` is for LSTM only");
    k.c0 = c0.cast<Arr<Real>>();
    check_shape(k.c0, {B, U}, op, "c0");
    k.has_c0 = true;
  }
  if (!mask.is_none()) {
    k.mask = mask.cast<Arr<uint8_t>>();
    check_shape(k.mask, {B, T}, op, "mask");
    k.has_mask = true;
  }
  if (!rmask.is_none()) {
    k.rmask = rmask.cast<Arr<Real>>();
    check_shape(k.rmask, {B, U}, op, "recurrent_mask");
    c.has_recurrent_mask = true;
  }
  rnn_check(c);
  return k;
}

// -> (hs (B,T,U), h_T (B,U), c_T (B,U) | None, saved (flat) | None)
template <typename Real>
py::tuple rnn_forward_py(const std::string& cell, const Arr<Real>& x, const Arr<Real>& kernel,
                         const Arr<Real>& rkernel, const py::object& bias, const py::object& h0,
                         const py::object& c0, const py::object& mask, const py::object& rmask,
                         bool go_backwards, bool reset_after, const py::tuple& activation,
                         const py::tuple& recurrent_activation, bool zero_output_for_mask,
                         bool training, bool reference) {
  const Call<Real> k = make_call<Real>(cell, "_forward", x, kernel, rkernel, bias, h0, c0, mask,
                                       rmask, go_backwards, reset_after, activation,
                                       recurrent_activation, zero_output_for_mask);
  const RnnConfig& c = k.c;
  const bool lstm = c.cell == RnnCell::lstm;
  Arr<Real> hs = empty<Real>({c.B, c.T, c.U}), h_T = empty<Real>({c.B, c.U});
  Arr<Real> c_T = empty<Real>({lstm ? c.B : 0, c.U});
  Real *hs_p = hs.mutable_data(), *h_T_p = h_T.mutable_data(), *c_T_p = lstm ? c_T.mutable_data() : nullptr;
  const RnnWeights<Real> w = k.weights();
  py::object saved = py::none();
  if (reference) {
    py::gil_scoped_release nogil;
    rnn_forward_reference<Real>(c, w, k.x.data(), k.mask_ptr(), k.h0_ptr(), k.c0_ptr(), hs_p,
                                h_T_p, c_T_p);
  } else {
    RnnPlan plan;
    {
      py::gil_scoped_release nogil;
      plan = rnn_plan(c, k.mask_ptr());
    }
    Real* saved_p = nullptr;
    if (training) {
      Arr<Real> s = empty<Real>({rnn_saved_size(c, plan)});
      saved_p = s.mutable_data();
      saved = s;
    }
    unsigned char* ws = call_buffer<unsigned char>(rnn_forward_workspace_size<Real>(c, plan, training));
    py::gil_scoped_release nogil;
    rnn_forward<Real>(c, plan, w, k.x.data(), k.h0_ptr(), k.c0_ptr(), hs_p, h_T_p, c_T_p,
                      saved_p, ws);
  }
  return py::make_tuple(hs, h_T, lstm ? py::object(c_T) : py::none(), saved);
}

// -> (dx (B,T,F), dkernel (F,GU), drecurrent_kernel (U,GU), dbias | None, dh0 (B,U),
//     dc0 (B,U) | None); None where not needed.
template <typename Real>
py::tuple rnn_backward_py(const std::string& cell, const Arr<Real>& x, const Arr<Real>& kernel,
                          const Arr<Real>& rkernel, const py::object& bias, const py::object& h0,
                          const py::object& c0, const py::object& mask, const py::object& rmask,
                          bool go_backwards, bool reset_after, const py::tuple& activation,
                          const py::tuple& recurrent_activation, bool zero_output_for_mask,
                          const py::object& saved, const py::object& dhs, const py::object& dh_T,
                          const py::object& dc_T, bool need_dx, bool need_dweights,
                          bool reference) {
  const Call<Real> k = make_call<Real>(cell, "_backward", x, kernel, rkernel, bias, h0, c0, mask,
                                       rmask, go_backwards, reset_after, activation,
                                       recurrent_activation, zero_output_for_mask);
  const RnnConfig& c = k.c;
  const std::string& op = k.op;
  const int64_t B = c.B, T = c.T, F = c.F, U = c.U, GU = c.GU();
  const bool lstm = c.cell == RnnCell::lstm;
  Arr<Real> dhs_a, dh_T_a, dc_T_a, saved_a;
  if (!dhs.is_none()) {
    dhs_a = dhs.cast<Arr<Real>>();
    check_shape(dhs_a, {B, T, U}, op, "dhs");
  }
  if (!dh_T.is_none()) {
    dh_T_a = dh_T.cast<Arr<Real>>();
    check_shape(dh_T_a, {B, U}, op, "dh_T");
  }
  if (!dc_T.is_none()) {
    if (!lstm) throw py::value_error(op + ": `dc_T` is for LSTM only");
    dc_T_a = dc_T.cast<Arr<Real>>();
    check_shape(dc_T_a, {B, U}, op, "dc_T");
  }
  const Real* dhs_p = dhs.is_none() ? nullptr : dhs_a.data();
  const Real* dh_T_p = dh_T.is_none() ? nullptr : dh_T_a.data();
  const Real* dc_T_p = dc_T.is_none() ? nullptr : dc_T_a.data();

  py::object dx = py::none(), dW = py::none(), dR = py::none(), db = py::none(), dh0, dc0 = py::none();
  Real *dx_p = nullptr, *dW_p = nullptr, *dR_p = nullptr, *db_p = nullptr, *dc0_p = nullptr;
  if (need_dx) {
    auto a = empty<Real>({B, T, F});
    dx_p = a.mutable_data(), dx = a;
  }
  if (need_dweights) {
    auto a = empty<Real>({F, GU}), r = empty<Real>({U, GU});
    dW_p = a.mutable_data(), dW = a;
    dR_p = r.mutable_data(), dR = r;
    if (c.has_bias) {
      auto bb = c.cell == RnnCell::gru && c.reset_after ? empty<Real>({2, GU}) : empty<Real>({GU});
      db_p = bb.mutable_data(), db = bb;
    }
  }
  auto dh0_a = empty<Real>({B, U});
  Real* dh0_p = dh0_a.mutable_data();
  dh0 = dh0_a;
  if (lstm) {
    auto a = empty<Real>({B, U});
    dc0_p = a.mutable_data(), dc0 = a;
  }
  const RnnWeights<Real> w = k.weights();
  if (reference) {
    py::gil_scoped_release nogil;
    rnn_backward_reference<Real>(c, w, k.x.data(), k.mask_ptr(), k.h0_ptr(), k.c0_ptr(), dhs_p,
                                 dh_T_p, dc_T_p, dx_p, dW_p, dR_p, db_p, dh0_p, dc0_p);
  } else {
    RnnPlan plan;
    {
      py::gil_scoped_release nogil;
      plan = rnn_plan(c, k.mask_ptr());
    }
    if (saved.is_none())
      throw py::value_error(op + ": expected the `saved` values of a forward with training=True");
    saved_a = saved.cast<Arr<Real>>();
    check_shape(saved_a, {rnn_saved_size(c, plan)}, op, "saved");
    unsigned char* ws = call_buffer<unsigned char>(rnn_backward_workspace_size<Real>(c, plan, need_dx, need_dweights));
    const Real* saved_p = saved_a.data();
    py::gil_scoped_release nogil;
    rnn_backward<Real>(c, plan, w, k.x.data(), saved_p, dhs_p, dh_T_p, dc_T_p, dx_p, dW_p, dR_p,
                       db_p, dh0_p, dc0_p, ws);
  }
  return py::make_tuple(dx, dW, dR, db, dh0, dc0);
}

template <typename Real>
void bind_typed(py::module_& m, const std::string& sfx) {
  m.def(("rnn_forward" + sfx).c_str(), &rnn_forward_py<Real>, py::arg("cell"), py::arg("x"),
        py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"), py::arg("h0"),
        py::arg("c0"), py::arg("mask"), py::arg("recurrent_mask"), py::arg("go_backwards"),
        py::arg("reset_after"), py::arg("activation"), py::arg("recurrent_activation"),
        py::arg("zero_output_for_mask"), py::arg("training"), py::arg("reference") = false,
        "cell 'simple_rnn' | 'lstm' | 'gru'; x (B,T,F) -> (hs (B,T,U), h_T (B,U), c_T | None, "
        "saved | None)");
  m.def(("rnn_backward" + sfx).c_str(), &rnn_backward_py<Real>, py::arg("cell"), py::arg("x"),
        py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"), py::arg("h0"),
        py::arg("c0"), py::arg("mask"), py::arg("recurrent_mask"), py::arg("go_backwards"),
        py::arg("reset_after"), py::arg("activation"), py::arg("recurrent_activation"),
        py::arg("zero_output_for_mask"), py::arg("saved"), py::arg("dhs"), py::arg("dh_T"),
        py::arg("dc_T"), py::arg("need_dx") = true, py::arg("need_dweights") = true,
        py::arg("reference") = false,
        "-> (dx, dkernel, drecurrent_kernel, dbias, dh0, dc0); None where not needed");
}

}  // namespace

void bind_rnn(py::module_& m) {
  bind_typed<float>(m, "_f32");
  bind_typed<double>(m, "_f64");
  m.def("rnn_set_row_split_bytes", &rnn_set_row_split_bytes, py::arg("bytes"),
        "split a step's rows between the threads when the packed recurrent kernel has at most "
        "this many bytes (0: the default, half the L2); for tests and tuning");
  m.def("rnn_get_row_split_bytes", &rnn_get_row_split_bytes);
  m.def(
      "lstm_forward_in_lanes",
      [](int64_t B, int64_t T, int64_t F, int64_t U, bool training, bool float32) {
        RnnConfig c;
        c.cell = RnnCell::lstm, c.B = B, c.T = T, c.F = F, c.U = U, c.has_bias = true;
        const RnnPlan plan = rnn_plan(c, nullptr);
        return float32 ? rnn_forward_in_lanes<float>(c, plan, training)
                       : rnn_forward_in_lanes<double>(c, plan, training);
      },
      py::arg("B"), py::arg("T"), py::arg("F"), py::arg("U"), py::arg("training") = false,
      py::arg("float32") = true,
      "whether an unmasked LSTM call of these sizes (Keras's activations) runs the forward with "
      "the batch in the vector lanes; for tests");
}

}  // namespace faltung::py_binding
