// Elementwise activations: forward and backward by kind.
// N elements (flat). Softmax, dropout and cross-entropy are in softmax_dropout.cpp.
// GCC turns the clamps of the float kernels into branches and refuses to if-convert them
// under its default -ftrapping-math; nothing here reads floating-point exception flags, so
// this file opts out. The pragma precedes every include so that all inlined functions share
// the option (GCC does not inline across differing optimize options).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "faltung/activations.hpp"

#include "elementwise.hpp"

namespace faltung {

using namespace elementwise;

namespace {

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2 = 1.4142135623730950488;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;
// Beyond +-kFlat the derivatives of gelu, silu, mish and hard_silu are exactly 0 or 1 in
// float and double; their backward clamps x there so that inf * 0 does not give NaN.
constexpr double kFlat = 1e4;

// The slope part that relu subtracts, s max(th - x, 0); zero (not 0 * inf = NaN) when s = 0.
template <typename T> inline T relu_negative(T v, T s, T th) {
  return s == T(0) ? T(0) : s * std::max(th - v, T(0));
}

struct NameAct {
  const char* name;
  Act act;
};
constexpr NameAct kActs[] = {
    {"linear", Act::linear},       {"relu", Act::relu},
    {"sigmoid", Act::sigmoid},     {"tanh", Act::tanh},
    {"softplus", Act::softplus},   {"softsign", Act::softsign},
    {"elu", Act::elu},             {"selu", Act::selu},
    {"gelu", Act::gelu},           {"gelu_approximate", Act::gelu_approx},
    {"silu", Act::silu},           {"exponential", Act::exponential},
    {"hard_sigmoid", Act::hard_sigmoid}, {"hard_silu", Act::hard_silu},
    {"mish", Act::mish},
};

}  // namespace

Act act_from_name(const std::string& name) {
  std::string valid;
  for (const auto& na : kActs) {
    if (name == na.name) return na.act;
    valid += std::string(valid.empty() ? "" : ", ") + na.name;
  }
  throw std::invalid_argument("Unknown activation kernel '" + name + "'. Expected one of: " + valid);
}

const char* act_name(Act a) {
  for (const auto& na : kActs)
    if (na.act == a) return na.name;
  return "?";
}

// x (N) -> y (N)
template <typename T>
void act_forward(Act a, T* y, const T* x, int64_t N, const ActParams& p) {
  switch (a) {
    case Act::linear:
      if (y != x) map_x(y, x, N, kCheap, [](T v) { return v; });
      break;
    case Act::relu: {
      const T s = T(p.negative_slope), th = T(p.threshold), mx = T(p.max_value);
      // NaN propagates (std::max(v, 0) returns v when v is NaN), as in Keras and PyTorch
      if (s == T(0) && th == T(0) && !p.has_max) {
        map_x(y, x, N, kCheap, [](T v) { return std::max(v, T(0)); });
      } else if (!p.has_max) {
        map_x(y, x, N, kCheap, [=](T v) {
          return v == v ? (v > th ? v : T(0)) - relu_negative(v, s, th) : v;
        });
      } else {
        map_x(y, x, N, kCheap, [=](T v) {
          const T pos = std::min(std::max(v > th ? v : T(0), T(0)), mx);
          return v == v ? pos - relu_negative(v, s, th) : v;
        });
      }
      break;
    }
    case Act::sigmoid: map_x(y, x, N, kCostly, [](T v) { return sigmoid(v); }); break;
    case Act::tanh: map_x(y, x, N, kCostly, [](T v) { return vtanh(v); }); break;
    case Act::softplus: map_x(y, x, N, kCostly, [](T v) { return softplus(v); }); break;
    case Act::softsign:  // +-inf -> +-1 (inf / inf would be NaN)
      map_x(y, x, N, kCheap, [](T v) {
        const T c = clamp_nan(v, std::numeric_limits<T>::max());
        return c / (T(1) + std::abs(c));
      });
      break;
    case Act::elu: {
      const T al = T(p.alpha);
      map_x(y, x, N, kCostly, [=](T v) { return std::max(v, T(0)) + al * vexpm1(std::min(v, T(0))); });
      break;
    }
    case Act::selu: {
      const T sc = T(kSeluScale), sa = T(kSeluScale * kSeluAlpha);
      map_x(y, x, N, kCostly,
            [=](T v) { return sc * std::max(v, T(0)) + sa * vexpm1(std::min(v, T(0))); });
      break;
    }
    case Act::gelu:
      map_x(y, x, N, kCostly, [](T v) {
        const T u = finite_below(v);
        return T(0.5) * u * (T(1) + verf(u / T(kSqrt2)));
      });
      break;
    case Act::gelu_approx:
      map_x(y, x, N, kCostly, [](T v) {
        const T u = finite_below(v);
        return T(0.5) * u * (T(1) + vtanh(T(kSqrt2OverPi) * (u + T(kGeluC) * u * u * u)));
      });
      break;
    case Act::silu: map_x(y, x, N, kCostly, [](T v) { return finite_below(v) * sigmoid(v); }); break;
    case Act::exponential: map_x(y, x, N, kCostly, [](T v) { return vexp(v); }); break;
    case Act::hard_sigmoid:
      map_x(y, x, N, kCheap, [](T v) { return std::min(std::max(v / T(6) + T(0.5), T(0)), T(1)); });
      break;
    case Act::hard_silu:
      map_x(y, x, N, kCheap,
            [](T v) { return finite_below(v) * std::min(std::max(v / T(6) + T(0.5), T(0)), T(1)); });
      break;
    case Act::mish:
      map_x(y, x, N, kCostly, [](T v) { return finite_below(v) * vtanh(softplus(v)); });
      break;
  }
}

// dy (N), x (N), y (N) -> dx (N)
template <typename T>
void act_backward(Act a, T* dx, const T* dy, const T* x, const T* y, int64_t N,
                  const ActParams& p) {
  switch (a) {
    case Act::linear:
      if (dx != dy) map_x(dx, dy, N, kCheap, [](T v) { return v; });
      break;
    case Act::relu: {
      // y = clip(x > th ? x : 0, 0, max) - s * max(th - x, 0)
      // dy/dx = [x > th] (and 0 < x < max when clipped) + s [x < th]
      const T s = T(p.negative_slope), th = T(p.threshold), mx = T(p.max_value);
      if (!p.has_max)
        map_dv(dx, dy, x, N, kCheap,
               [=](T d, T v) { return d * (T(v > th) + s * T(v < th)); });
      else
        map_dv(dx, dy, x, N, kCheap, [=](T d, T v) {
          return d * (T(v > th && v > T(0) && v < mx) + s * T(v < th));
        });
      break;
    }
    case Act::sigmoid:  // y = sigmoid(x): dy/dx = y (1 - y)
      map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * w * (T(1) - w); });
      break;
    case Act::tanh:  // dy/dx = 1 - y^2
      map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * (T(1) - w * w); });
      break;
    case Act::softplus:  // dy/dx = sigmoid(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T v) { return d * sigmoid(v); });
      break;
    case Act::softsign:  // dy/dx = 1 / (1 + |x|)^2
      map_dv(dx, dy, x, N, kCheap, [](T d, T v) {
        const T q = T(1) + std::abs(v);
        return d / (q * q);
      });
      break;
    case Act::elu: {  // x <= 0: y = a (e^x - 1), dy/dx = a e^x
      const T al = T(p.alpha);
      map_dv(dx, dy, x, N, kCostly, [=](T d, T v) {
        return d * (T(v > T(0)) + T(v <= T(0)) * al * vexp(std::min(v, T(0))));
      });
      break;
    }
    case Act::selu: {
      const T sc = T(kSeluScale), sa = T(kSeluScale * kSeluAlpha);
      map_dv(dx, dy, x, N, kCostly,
             [=](T d, T v) { return d * (T(v > T(0)) * sc + T(v <= T(0)) * sa * vexp(std::min(v, T(0)))); });
      break;
    }
    case Act::gelu:  // y = x Phi(x): dy/dx = Phi(x) + x phi(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T x_) {
        const T v = clamp_nan(x_, T(kFlat));
        const T cdf = T(0.5) * (T(1) + verf(v / T(kSqrt2)));
        const T pdf = T(kInvSqrt2Pi) * vexp(T(-0.5) * v * v);
        return d * (cdf + v * pdf);
      });
      break;
    case Act::gelu_approx:  // y = x/2 (1 + tanh(u)), u = c1 (x + c2 x^3)
      map_dv(dx, dy, x, N, kCostly, [](T d, T x_) {
        const T v = clamp_nan(x_, T(kFlat));
        const T t = vtanh(T(kSqrt2OverPi) * (v + T(kGeluC) * v * v * v));
        const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluC) * v * v);
        return d * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
      });
      break;
    case Act::silu:  // y = x s(x): dy/dx = s (1 + x (1 - s))
      map_dv(dx, dy, x, N, kCostly, [](T d, T x_) {
        const T v = clamp_nan(x_, T(kFlat));
        const T s = sigmoid(v);
        return d * s * (T(1) + v * (T(1) - s));
      });
      break;
    case Act::exponential: map_dv(dx, dy, y, N, kCheap, [](T d, T w) { return d * w; }); break;
    case Act::hard_sigmoid:
      map_dv(dx, dy, x, N, kCheap,
             [](T d, T v) { return d * T(v > T(-3) && v < T(3)) / T(6); });
      break;
    case Act::hard_silu:  // y = x h(x): dy/dx = h(x) + x h'(x)
      map_dv(dx, dy, x, N, kCheap, [](T d, T x_) {
        const T v = clamp_nan(x_, T(kFlat));
        const T h = std::min(std::max(v / T(6) + T(0.5), T(0)), T(1));
        return d * (h + T(v > T(-3) && v < T(3)) * v / T(6));
      });
      break;
    case Act::mish:  // y = x tanh(sp(x)): dy/dx = t + x (1 - t^2) sigmoid(x)
      map_dv(dx, dy, x, N, kCostly, [](T d, T x_) {
        const T v = clamp_nan(x_, T(kFlat));
        const T t = vtanh(softplus(v));
        return d * (t + v * (T(1) - t * t) * sigmoid(v));
      });
      break;
  }
}


#define FALTUNG_ACT_INSTANTIATE(T)                                                             \
  template void act_forward<T>(Act, T*, const T*, int64_t, const ActParams&);                  \
  template void act_backward<T>(Act, T*, const T*, const T*, const T*, int64_t,                \
                                const ActParams&);
FALTUNG_ACT_INSTANTIATE(float)
FALTUNG_ACT_INSTANTIATE(double)
#undef FALTUNG_ACT_INSTANTIATE

}  // namespace faltung
