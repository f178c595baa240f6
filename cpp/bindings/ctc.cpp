// Bindings of the CTC family: ctc_loss_f32/_f64, ctc_greedy_decode_f32/_f64,
// ctc_beam_search_decode_f32/_f64. B batch, T steps, C classes, S label slots.
// Integer arguments must already be int32 (the ops layer converts them with a range check, so
// that a cast never wraps a large value into a valid one). Each loss call takes a workspace of
// the size the kernel states from a per-thread buffer that grows and is reused, and releases
// the GIL around the kernel.
#include <vector>

#include "common.hpp"
#include "faltung/ctc.hpp"

namespace faltung::py_binding {

namespace {

using I32 = py::array_t<int32_t, py::array::c_style>;

I32 as_int32(const py::array& a, const std::string& op, const std::string& what) {
  if (!a.dtype().is(py::dtype::of<int32_t>()))
    throw py::type_error(op + ": expected `" + what + "` of dtype int32, received dtype " +
                         std::string(py::str(a.dtype())));
  return I32::ensure(a);
}


// x (B,T,C), labels (B,S), label_lengths (B), input_lengths (B) -> (loss (B), grad (B,T,C) or None)
template <typename Real>
py::tuple ctc_loss_py(const Arr<Real>& x, const py::array& labels_a,
                      const py::array& label_lengths_a, const py::array& input_lengths_a,
                      int64_t blank, bool log_probs, bool zero_infinity, bool need_grad) {
  const std::string op = "ctc_loss";
  check_rank(x, 3, op, "output");
  const I32 labels = as_int32(labels_a, op, "target");
  const I32 label_lengths = as_int32(label_lengths_a, op, "target_length");
  const I32 input_lengths = as_int32(input_lengths_a, op, "output_length");
  check_rank(labels, 2, op, "target");
  CtcConfig c;
  c.B = x.shape(0);
  c.T = x.shape(1);
  c.C = x.shape(2);
  c.S = labels.shape(1);
  c.blank = blank;
  c.log_probs = log_probs;
  c.zero_infinity = zero_infinity;
  if (labels.shape(0) != c.B)
    throw py::value_error(op + ": expected `target` of shape (" + std::to_string(c.B) +
                          ", max_label_length) for output.shape=" + shape_str(shape_of(x)) +
                          ", received shape " + shape_str(shape_of(labels)));
  check_shape(label_lengths, {c.B}, op, "target_length");
  check_shape(input_lengths, {c.B}, op, "output_length");
  Arr<Real> loss = empty<Real>({c.B});
  Arr<Real> grad = need_grad ? empty<Real>({c.B, c.T, c.C}) : empty<Real>({0});
  Real* ws = call_buffer<Real>(size_t(ctc_workspace_size(c, need_grad)));
  const Real* xp = x.data();
  const int32_t *lp = labels.data(), *llp = label_lengths.data(), *ilp = input_lengths.data();
  Real* lossp = loss.mutable_data();
  Real* gradp = need_grad ? grad.mutable_data() : nullptr;
  {
    py::gil_scoped_release nogil;  // ctc_check throws with the GIL released; the guard
                                   // takes it back while the exception unwinds
    ctc_loss<Real>(c, xp, lp, llp, ilp, lossp, gradp, ws);
  }
  if (!need_grad) return py::make_tuple(loss, py::none());
  return py::make_tuple(loss, grad);
}

// x (B,T,C), lengths (B) -> (decoded (B,T) int32, score (B))
template <typename Real>
py::tuple greedy_py(const Arr<Real>& x, const py::array& lengths_a, int64_t blank,
                    bool merge_repeated) {
  const std::string op = "ctc_decode";
  check_rank(x, 3, op, "inputs");
  const I32 lengths = as_int32(lengths_a, op, "sequence_lengths");
  const int64_t B = x.shape(0), T = x.shape(1), C = x.shape(2);
  check_shape(lengths, {B}, op, "sequence_lengths");
  Arr<int32_t> decoded = empty<int32_t>({B, T});
  Arr<Real> score = empty<Real>({B});
  const Real* xp = x.data();
  const int32_t* lp = lengths.data();
  int32_t* dp = decoded.mutable_data();
  Real* sp = score.mutable_data();
  {
    py::gil_scoped_release nogil;
    ctc_greedy_decode<Real>(xp, lp, B, T, C, blank, merge_repeated, dp, sp);
  }
  return py::make_tuple(decoded, score);
}

// x (B,T,C), lengths (B) -> (decoded (top_paths,B,T) int32, log_prob (B,top_paths))
template <typename Real>
py::tuple beam_py(const Arr<Real>& x, const py::array& lengths_a, int64_t blank,
                  int64_t beam_width, int64_t top_paths) {
  const std::string op = "ctc_decode";
  check_rank(x, 3, op, "inputs");
  const I32 lengths = as_int32(lengths_a, op, "sequence_lengths");
  const int64_t B = x.shape(0), T = x.shape(1), C = x.shape(2);
  check_shape(lengths, {B}, op, "sequence_lengths");
  if (top_paths < 1)  // checked again in the kernel; here so that the shapes below are valid
    throw py::value_error(op + ": expected top_paths >= 1, received " + std::to_string(top_paths));
  Arr<int32_t> decoded = empty<int32_t>({top_paths, B, T});
  Arr<Real> log_prob = empty<Real>({B, top_paths});
  const Real* xp = x.data();
  const int32_t* lp = lengths.data();
  int32_t* dp = decoded.mutable_data();
  Real* pp = log_prob.mutable_data();
  {
    py::gil_scoped_release nogil;
    ctc_beam_search_decode<Real>(xp, lp, B, T, C, blank, beam_width, top_paths, dp, pp);
  }
  return py::make_tuple(decoded, log_prob);
}

template <typename Real>
void bind_typed(py::module_& m, const std::string& sfx) {
  m.def(("ctc_loss" + sfx).c_str(), &ctc_loss_py<Real>, py::arg("x"), py::arg("labels"),
        py::arg("label_lengths"), py::arg("input_lengths"), py::arg("blank") = 0,
        py::arg("log_probs") = false, py::arg("zero_infinity") = false,
        py::arg("need_grad") = false,
        "x (B,T,C) logits (or log-probabilities), labels (B,S) int32, label_lengths (B), "
        "input_lengths (B) -> (loss (B), grad (B,T,C) or None): -log P(labels|x) and its "
        "gradient with respect to x.");
  m.def(("ctc_greedy_decode" + sfx).c_str(), &greedy_py<Real>, py::arg("x"),
        py::arg("lengths"), py::arg("blank") = 0, py::arg("merge_repeated") = true,
        "x (B,T,C), lengths (B) int32 -> (decoded (B,T) int32 padded with -1, score (B)).");
  m.def(("ctc_beam_search_decode" + sfx).c_str(), &beam_py<Real>, py::arg("x"),
        py::arg("lengths"), py::arg("blank") = 0, py::arg("beam_width") = 100,
        py::arg("top_paths") = 1,
        "x (B,T,C) logits, lengths (B) int32 -> (decoded (top_paths,B,T) int32 padded with -1, "
        "log_prob (B,top_paths)).");
}

}  // namespace

void bind_ctc(py::module_& m) {
  bind_typed<float>(m, "_f32");
  bind_typed<double>(m, "_f64");
}

}  // namespace faltung::py_binding
