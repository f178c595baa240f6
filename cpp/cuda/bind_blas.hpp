// cpp/cuda/bind_blas.hpp — the Python face of blas.hpp, in faltung._cuda and faltung._cuda_host:
//   blas_info(dirs)   opens the process's cuBLAS once (the first call's dirs win) and reports it;
//   blas_probe(env, dirs)  the same search, from scratch and closed again: the search order
//                     under test, whatever the process loaded;
//   blas_row_gemm(...)  a row-major GEMM mapped to its column-major call (to_col_major) and run
//                     by the column-major reference (ref_gemm), with the call's arguments.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "blas.hpp"

namespace faltung::cuda::binding {

inline pybind11::dict blas_dict(const blas::Library& lib) {
  pybind11::dict d;
  d["found"] = lib.ok;
  d["path"] = lib.ok ? lib.path : std::string();
  d["version"] = lib.version;
  d["error"] = lib.error;
  return d;
}

inline void bind_blas(pybind11::module_& m) {
  namespace py = pybind11;
  using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
  m.def("blas_info", [](const std::vector<std::string>& dirs) { return blas_dict(blas::load(dirs)); },
        py::arg("dirs"), "Open the process's cuBLAS (once; the first call's dirs win) and report it: "
        "{found, path, version, error}.");
  m.def("blas_probe", [](const std::optional<std::string>& env, const std::vector<std::string>& dirs) {
          blas::Library lib = blas::open(env ? env->c_str() : nullptr, dirs);
          py::dict d = blas_dict(lib);
          if (lib.dl) dlclose(lib.dl);
          return d;
        }, py::arg("env"), py::arg("dirs"),
        "The cuBLAS search with FALTUNG_CUBLAS = env (None: unset) and dirs, from scratch; closes what it opened.");
  m.def("blas_row_gemm", [](const F64& a, const F64& b, const F64& c, int64_t M, int64_t N, int64_t K, bool ta,
                            bool tb, double alpha, double beta) {
          if (a.ndim() != 2 || b.ndim() != 2 || c.ndim() != 2)
            throw std::invalid_argument("blas_row_gemm: expected 2D a, b and c (their rows are lda, ldb, ldc long)");
          F64 out(std::vector<py::ssize_t>{c.shape(0), c.shape(1)});
          std::copy(c.data(), c.data() + c.size(), out.mutable_data());
          const blas::ColGemm<double> cg = blas::to_col_major(blas::RowGemm<double>{
              ta, tb, M, N, K, alpha, a.data(), a.shape(1), b.data(), b.shape(1), beta, out.mutable_data(), c.shape(1)});
          blas::ref_gemm(cg);  // std::invalid_argument (ValueError) when BLAS would refuse the call
          py::dict args;
          args["transa"] = cg.transa;
          args["transb"] = cg.transb;
          args["m"] = cg.m;
          args["n"] = cg.n;
          args["k"] = cg.k;
          args["lda"] = cg.lda;
          args["ldb"] = cg.ldb;
          args["ldc"] = cg.ldc;
          args["a_is_b"] = cg.A == b.data();
          return py::make_tuple(out, args);
        }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("M"), py::arg("N"), py::arg("K"), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("alpha"), py::arg("beta"),
        "Row-major C (M,N) = alpha op(a) op(b) + beta C (rows of a, b, c are lda, ldb, ldc long) through "
        "the column-major call cuBLAS gets -> (C, that call's arguments).");
}

}  // namespace faltung::cuda::binding
