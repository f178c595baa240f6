// faltung._core_<level>: the pybind11 module, built once per CPU level (CMakeLists.txt) under
// the name FALTUNG_MODULE_NAME; faltung._core picks one at import. Each kernel family
// registers itself in its own file.
#include <omp.h>

extern "C" {
#include <cblas.h>
}

#include "common.hpp"

#ifndef FALTUNG_VERSION
#define FALTUNG_VERSION "dev"
#endif
#ifndef FALTUNG_MODULE_NAME
#define FALTUNG_MODULE_NAME _core_baseline
#define FALTUNG_CPU_LEVEL "baseline"
#endif

namespace faltung::py_binding {
void bind_rnn(py::module_& m);  // cpp/bindings/rnn.cpp
void bind_ctc(py::module_& m);  // cpp/bindings/ctc.cpp
void bind_image_transform(py::module_& m);  // cpp/bindings/image_transform.cpp
}  // namespace faltung::py_binding

namespace fb = faltung::py_binding;
namespace py = pybind11;

PYBIND11_MODULE(FALTUNG_MODULE_NAME, m) {
  m.doc() = "faltung C++ core";
  // OpenBLAS runs single-threaded: faltung splits GEMMs over its own OpenMP pool, so that
  // two thread pools never fight over the two cores.
  scipy_openblas_set_num_threads(1);

  m.def("set_num_threads", &faltung::set_num_threads, py::arg("n"),
        "Set the number of OpenMP threads faltung's kernels use.");
  m.def("get_num_threads", &faltung::get_num_threads);
  m.def("release_workspaces", []() {
        py::gil_scoped_release nogil;
        faltung::release_workspaces();
      },
      "Free the kernels' scratch buffers held by this thread and its OpenMP threads (they grow "
      "back on the next call).");
  m.def("workspace_bytes", &faltung::workspace_bytes,
        "Bytes held by the kernels' scratch buffers of all threads.");
  m.def("build_info", []() {
    py::dict d;
    d["version"] = FALTUNG_VERSION;
    d["openmp"] = true;
    d["openmp_version"] = _OPENMP;
    d["num_threads"] = faltung::get_num_threads();
#ifdef FALTUNG_WITH_CUDA
    d["cuda"] = true;
#else
    d["cuda"] = false;
#endif
    d["blas"] = std::string("OpenBLAS (scipy-openblas32) ") + scipy_openblas_get_config();
    d["blas_core"] = std::string(scipy_openblas_get_corename());
    d["cpu_level"] = FALTUNG_CPU_LEVEL;
    return d;
  });

  fb::bind_dense(m);
  fb::bind_activations(m);
  fb::bind_conv(m);
  fb::bind_conv_transpose(m);
  fb::bind_pooling(m);
  fb::bind_normalization(m);
  fb::bind_resampling(m);
  fb::bind_conv_winograd(m);
  fb::bind_optim(m);
  fb::bind_embedding(m);
  fb::bind_rnn(m);
  fb::bind_ctc(m);
  fb::bind_image_transform(m);
}
