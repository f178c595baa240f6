// A small conv net through faltung's C++ API, forward and backward, with no Python:
//   Conv2D(4 filters, 3x3, "same") -> ReLU -> MaxPooling2D(2x2) -> Dense(3) -> softmax
//   cross-entropy on integer labels.
// It checks its own backward pass against central finite differences (in double) on some
// weights of both layers, then trains a few SGD steps (in float, as faltung trains) and
// checks that the loss goes down. Exits 1 if either check fails.
//
// N batch, H/W image size, C in-channels, K filters, P pooled size, F = P*P*K features,
// U classes. Layouts as Keras: images (N,H,W,C), conv kernel (3,3,C,K), dense kernel (F,U).
#include <faltung/activations.hpp>
#include <faltung/conv.hpp>
#include <faltung/dense.hpp>
#include <faltung/pooling.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace fl = faltung;

constexpr int64_t N = 6, H = 8, W = 8, C = 2, K = 4, P = 4, F = P * P * K, U = 3;

template <typename T>
struct Net {
  std::vector<T> conv_w, conv_b, dense_w, dense_b;  // (3,3,C,K) (K) (F,U) (U)
  // what backward needs, saved by forward
  std::vector<T> conv_out, relu_out, pooled, logits;
  std::vector<int32_t> argmax;
  fl::Conv2dShape conv{N, H, W, C, K, 3, 3, H, W, 1, 1, 1, 1, 1, 1, 1};  // "same": pad 1
  fl::Pool2dShape pool = fl::pool2d_shape(N, H, W, K, 2, 2, 2, 2, "valid", "conv_net");

  // images (N,H,W,C), labels (N) -> mean cross-entropy
  T forward(const std::vector<T>& images, const std::vector<int32_t>& labels) {
    conv_out.resize(N * H * W * K);
    relu_out.resize(conv_out.size());
    pooled.resize(N * F);
    argmax.resize(N * F);
    logits.resize(N * U);
    fl::conv2d_forward(conv_out.data(), images.data(), conv_w.data(), conv_b.data(), conv);
    fl::act_forward(fl::Act::relu, relu_out.data(), conv_out.data(), N * H * W * K, fl::ActParams{});
    fl::max_pool2d_forward(pooled.data(), argmax.data(), relu_out.data(), pool);
    fl::dense_forward(logits.data(), pooled.data(), dense_w.data(), dense_b.data(), N, F, U);
    std::vector<T> loss(N);
    fl::sparse_softmax_xent<T>(loss.data(), nullptr, logits.data(), labels.data(), N, U, T(1));
    T mean = 0;
    for (T l : loss) mean += l / N;
    return mean;
  }

  // The gradients of the mean loss of the last forward: d(conv_w), d(conv_b), d(dense_w), d(dense_b).
  std::vector<std::vector<T>> backward(const std::vector<T>& images, const std::vector<int32_t>& labels) {
    std::vector<T> loss(N), dlogits(N * U), dpooled(N * F), drelu(N * H * W * K), dconv(N * H * W * K);
    std::vector<T> dconv_w(conv_w.size()), dconv_b(K), ddense_w(dense_w.size()), ddense_b(U);
    fl::sparse_softmax_xent<T>(loss.data(), dlogits.data(), logits.data(), labels.data(), N, U, T(1) / N);
    fl::dense_backward(dpooled.data(), ddense_w.data(), ddense_b.data(), dlogits.data(), pooled.data(),
                       dense_w.data(), N, F, U);
    fl::max_pool2d_scatter(drelu.data(), dpooled.data(), argmax.data(), pool);
    fl::act_backward(fl::Act::relu, dconv.data(), drelu.data(), conv_out.data(), relu_out.data(),
                     N * H * W * K, fl::ActParams{});
    fl::conv2d_backward<T>(nullptr, dconv_w.data(), dconv_b.data(), dconv.data(), images.data(),
                           conv_w.data(), conv);
    return {dconv_w, dconv_b, ddense_w, ddense_b};
  }
};

template <typename T>
Net<T> make_net(std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 0.3);
  Net<T> net;
  for (int64_t i = 0; i < 3 * 3 * C * K; ++i) net.conv_w.push_back(T(normal(rng)));
  for (int64_t i = 0; i < K; ++i) net.conv_b.push_back(T(0.1));
  for (int64_t i = 0; i < F * U; ++i) net.dense_w.push_back(T(normal(rng)));
  net.dense_b.assign(U, T(0));
  return net;
}

int main() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> images(N * H * W * C);
  for (double& x : images) x = uniform(rng);
  std::vector<int32_t> labels(N);
  for (int64_t n = 0; n < N; ++n) labels[n] = int32_t(n % U);

  // 1. backward against central finite differences, in double.
  Net<double> net = make_net<double>(rng);
  net.forward(images, labels);
  std::vector<std::vector<double>> grads = net.backward(images, labels);
  std::vector<double>* params[] = {&net.conv_w, &net.conv_b, &net.dense_w, &net.dense_b};
  const char* names[] = {"conv kernel", "conv bias", "dense kernel", "dense bias"};
  const double eps = 1e-6;
  double worst = 0;
  for (int p = 0; p < 4; ++p) {
    std::vector<double>& w = *params[p];
    for (size_t i = 0; i < w.size(); i += 1 + w.size() / 7) {  // about 8 entries of each
      const double saved = w[i];
      w[i] = saved + eps;
      const double up = net.forward(images, labels);
      w[i] = saved - eps;
      const double down = net.forward(images, labels);
      w[i] = saved;
      const double numeric = (up - down) / (2 * eps);
      const double err = std::fabs(numeric - grads[p][i]) / std::fmax(1e-3, std::fabs(numeric));
      worst = std::fmax(worst, err);
      std::printf("%-12s [%3zu]  backward % .8f  finite difference % .8f\n", names[p], i,
                  grads[p][i], numeric);
    }
  }
  std::printf("gradient check: worst relative error %.2e\n", worst);

  // 2. SGD in float: the loss on this batch must fall.
  Net<float> fnet = make_net<float>(rng);
  std::vector<float> fimages(images.begin(), images.end());
  std::vector<float*> fparams = {fnet.conv_w.data(), fnet.conv_b.data(), fnet.dense_w.data(),
                                 fnet.dense_b.data()};
  float first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    last = fnet.forward(fimages, labels);
    if (step == 0) first = last;
    std::vector<std::vector<float>> g = fnet.backward(fimages, labels);
    for (int p = 0; p < 4; ++p)
      for (size_t i = 0; i < g[p].size(); ++i) fparams[p][i] -= 0.5f * g[p][i];
  }
  std::printf("SGD, 20 steps: loss %.4f -> %.4f\n", first, last);

  const bool ok = worst < 1e-5 && last < 0.5f * first;
  std::printf("%s\n", ok ? "conv_net: OK" : "conv_net: FAILED");
  return ok ? 0 : 1;
}
