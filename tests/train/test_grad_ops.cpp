// Every backward of train/grad_ops.h (and the transposed product over stored
// weights) against central finite differences in double on random inputs.
// The worst relative error of each op is printed (and bounded).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <tuple>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "train/attention.h"
#include "train/grad_ops.h"
#include "train/linear_grad.h"
#include "train/moe_ops.h"
#include "train/optim.h"

namespace slm::train {
namespace {

using Vec = std::vector<double>;

Vec random_vec(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (double& x : v) x = d(rng);
  return v;
}

// Worst |analytic - numeric| / max(|numeric| over the vector, tiny) over
// every input coordinate of f: R^n -> R, f = dot(upstream, op(x)).
double check(Vec& x, const std::function<double(const Vec&)>& f, const Vec& analytic) {
  const double h = 1e-6;
  Vec num(x.size());
  double scale = 1e-12;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f(x);
    x[i] = keep - h;
    const double fm = f(x);
    x[i] = keep;
    num[i] = (fp - fm) / (2 * h);
    scale = std::max(scale, std::fabs(num[i]));
  }
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::fabs(analytic[i] - num[i]) / scale);
  return worst;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void report(const char* op, double err) {
  std::printf("[ fd       ] %-22s worst relative error %.3g\n", op, err);
  EXPECT_LT(err, 1e-6) << op;
}

TEST(GradOps, RmsNorm) {
  std::mt19937 rng(1);
  const int64_t n = 37;
  Vec x = random_vec(n, rng), dy = random_vec(n, rng);
  std::vector<float> w(n);
  for (float& v : w) v = static_cast<float>(std::uniform_real_distribution<double>(0.5, 1.5)(rng));
  const auto f = [&](const Vec& in) {
    Vec y(n);
    rms_norm_fwd(in.data(), w.data(), n, 1e-5f, y.data());
    return dot(dy, y);
  };
  Vec dx(n);
  rms_norm_bwd(x.data(), w.data(), n, 1e-5f, dy.data(), dx.data());
  report("rms_norm", check(x, f, dx));
}

TEST(GradOps, Rope) {
  std::mt19937 rng(2);
  for (const bool neox : {false, true}) {
    const int64_t n_rot = 16;
    std::vector<float> inv(n_rot / 2), cs(n_rot);
    for (int64_t i = 0; i < n_rot / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / n_rot);
    for (int64_t i = 0; i < n_rot / 2; ++i) {
      cs[i] = std::cos(7.0f * inv[i]) * 1.1f;  // a LongRoPE-style magnitude too
      cs[n_rot / 2 + i] = std::sin(7.0f * inv[i]) * 1.1f;
    }
    Vec x = random_vec(n_rot, rng), dy = random_vec(n_rot, rng);
    const auto f = [&](const Vec& in) {
      Vec y = in;
      rope(y.data(), n_rot, cs.data(), neox, false);
      return dot(dy, y);
    };
    Vec dx = dy;
    rope(dx.data(), n_rot, cs.data(), neox, true);
    report(neox ? "rope (neox)" : "rope (normal)", check(x, f, dx));
  }
}

TEST(GradOps, SwiGlu) {
  std::mt19937 rng(3);
  const int64_t n = 29;
  Vec gu = random_vec(2 * n, rng, 2.0), dh = random_vec(n, rng);
  const auto f = [&](const Vec& in) {
    Vec h(n);
    swiglu_fwd(in.data(), in.data() + n, n, h.data());
    return dot(dh, h);
  };
  Vec d(2 * n);
  swiglu_bwd(gu.data(), gu.data() + n, dh.data(), n, d.data(), d.data() + n);
  report("swiglu", check(gu, f, d));
}

// Top-k routing: f(z) = dot(dw, w(softmax(z))) with the chosen set fixed at
// z (random logits are far from ties, so +-h never changes the choice).
TEST(GradOps, MoeRouting) {
  std::mt19937 rng(9);
  const int64_t n = 8, k = 3;
  for (const bool renorm : {true, false}) {
    Vec z = random_vec(n, rng, 2.0), dw = random_vec(k, rng);
    const auto route = [&](const Vec& in, std::vector<int32_t>& chosen, Vec& p, Vec& w) {
      p = in;
      double mx = *std::max_element(p.begin(), p.end()), sum = 0;
      for (double& v : p) sum += (v = std::exp(v - mx));
      for (double& v : p) v /= sum;
      std::vector<int32_t> order(n);
      chosen.resize(k);
      w.resize(k);
      moe_route_fwd(p.data(), n, k, renorm, order.data(), chosen.data(), w.data());
    };
    std::vector<int32_t> chosen0;
    Vec p0, w0;
    route(z, chosen0, p0, w0);
    const auto f = [&](const Vec& in) {
      std::vector<int32_t> chosen;
      Vec p, w;
      route(in, chosen, p, w);
      EXPECT_EQ(chosen, chosen0);
      return dot(dw, w);
    };
    Vec dp(n), dz(n);
    moe_route_bwd(p0.data(), n, chosen0.data(), w0.data(), k, renorm, dw.data(), dp.data(),
                  dz.data());
    report(renorm ? "moe routing (renorm)" : "moe routing", check(z, f, dz));
    if (renorm) {
      double s = 0;
      for (const double v : w0) s += v;
      EXPECT_NEAR(s, 1.0, 1e-12);
    }
  }
}

TEST(GradOps, Attention) {
  std::mt19937 rng(4);
  const AttnShape s{6, 4, 2, 5, 0.37f};
  const int64_t qn = s.n * s.n_head * s.hd, kn = s.n * s.n_head_kv * s.hd;
  Vec all = random_vec(static_cast<size_t>(qn + 2 * kn), rng),
      dout = random_vec(static_cast<size_t>(qn), rng);
  Vec p(s.n);
  const auto f = [&](const Vec& in) {
    Vec out(qn), pp(s.n);
    attention_fwd(s, in.data(), in.data() + qn, in.data() + qn + kn, out.data(), 0, s.n_head,
                  pp.data());
    return dot(dout, out);
  };
  Vec out(qn), d(all.size());
  attention_fwd(s, all.data(), all.data() + qn, all.data() + qn + kn, out.data(), 0, s.n_head,
                p.data());
  attention_bwd(s, all.data(), all.data() + qn, all.data() + qn + kn, out.data(), dout.data(),
                d.data(), d.data() + qn, d.data() + qn + kn, 0, s.n_head_kv, p.data());
  report("attention (causal gqa)", check(all, f, d));
}

// The trainer's blocked float attention (attention.h) against the reference
// templates in double: outputs and every input gradient, on shapes with one
// partial block, several blocks and a tail, with and without grouping.
TEST(GradOps, BlockedAttentionEqualsReference) {
  std::mt19937 rng(14);
  for (const AttnShape s : {AttnShape{7, 6, 3, 5, 0.4f}, AttnShape{64, 2, 1, 16, 0.25f},
                            AttnShape{150, 4, 2, 64, 0.125f}}) {
    const int64_t qn = s.n * s.n_head * s.hd, kn = s.n * s.n_head_kv * s.hd;
    const Vec all = random_vec(static_cast<size_t>(qn + 2 * kn), rng),
              dout = random_vec(static_cast<size_t>(qn), rng);
    Vec out(qn), d(all.size()), p(s.n);
    attention_fwd(s, all.data(), all.data() + qn, all.data() + qn + kn, out.data(), 0, s.n_head,
                  p.data());
    attention_bwd(s, all.data(), all.data() + qn, all.data() + qn + kn, out.data(), dout.data(),
                  d.data(), d.data() + qn, d.data() + qn + kn, 0, s.n_head_kv, p.data());
    const std::vector<float> allf(all.begin(), all.end()), doutf(dout.begin(), dout.end());
    std::vector<float> outf(static_cast<size_t>(qn)), df(all.size(), 1e30f);
    AttnScratch w;
    w.reserve(s.n, s.hd);
    for (int64_t h = 0; h < s.n_head; ++h)
      attention_fwd_blocks(s, allf.data(), allf.data() + qn, allf.data() + qn + kn, outf.data(), h,
                           w);
    for (int64_t g = 0; g < s.n_head_kv; ++g)
      attention_bwd_blocks(s, allf.data(), allf.data() + qn, allf.data() + qn + kn, outf.data(),
                           doutf.data(), df.data(), df.data() + qn, df.data() + qn + kn, g, w);
    // Each part against its largest reference value: float sums of n terms.
    const auto worst = [](const double* want, const float* got, int64_t len) {
      double mx = 1e-30, err = 0;
      for (int64_t i = 0; i < len; ++i) mx = std::max(mx, std::fabs(want[i]));
      for (int64_t i = 0; i < len; ++i)
        err = std::max(err, std::fabs(want[i] - static_cast<double>(got[i])));
      return err / mx;
    };
    const double e_out = worst(out.data(), outf.data(), qn);
    const double e_dq = worst(d.data(), df.data(), qn);
    const double e_dk = worst(d.data() + qn, df.data() + qn, kn);
    const double e_dv = worst(d.data() + qn + kn, df.data() + qn + kn, kn);
    std::printf("[ blocked attention ] n %lld: out %.3g dq %.3g dk %.3g dv %.3g\n",
                static_cast<long long>(s.n), e_out, e_dq, e_dk, e_dv);
    EXPECT_LT(e_out, 1e-5);
    EXPECT_LT(e_dq, 1e-5);
    EXPECT_LT(e_dk, 1e-5);
    EXPECT_LT(e_dv, 1e-5);
  }
}

TEST(GradOps, CrossEntropy) {
  std::mt19937 rng(5);
  const int64_t n = 50;
  Vec z = random_vec(n, rng, 3.0);
  const auto f = [&](const Vec& in) {
    return cross_entropy(in.data(), n, 17, 1.0, static_cast<double*>(nullptr));
  };
  Vec dz(n);
  cross_entropy(z.data(), n, 17, 1.0, dz.data());
  report("cross_entropy", check(z, f, dz));
}

// The transposed product over stored weights, per type: against the
// dequantized matrix (the op is linear, so the finite difference of
// dot(dx, W^T dy) is exact; this checks the stripe/row-block bookkeeping),
// on every instruction-set path of its inner step (kernels::axpy_rows).
TEST(GradOps, InputGradOverStoredTypes) {
  ThreadPool pool(2);
  const kernels::Isa keep = kernels::active_isa();
  for (const kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    std::mt19937 rng(6);
    for (const DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
      const int64_t rows = 13, cols = 512, n = 5;
      std::vector<float> wf(rows * cols), deq(rows * cols);
      for (float& v : wf) v = std::normal_distribution<float>(0, 1)(rng);
      const int64_t rb = row_bytes(t, cols);
      std::vector<uint8_t> wq(static_cast<size_t>(rows * rb));
      const kernels::TypeTraits& tr = kernels::traits(t);
      for (int64_t r = 0; r < rows; ++r) {
        if (t == DType::F32)
          std::memcpy(&wq[r * rb], &wf[r * cols], cols * 4);
        else
          tr.quantize_row(&wf[r * cols], &wq[r * rb], cols);
        if (t == DType::F32)
          std::memcpy(&deq[r * cols], &wf[r * cols], cols * 4);
        else
          tr.dequantize_row(&wq[r * rb], &deq[r * cols], cols);
      }
      std::vector<float> dy(n * rows), dx(n * cols);
      for (float& v : dy) v = std::normal_distribution<float>(0, 1)(rng);
      input_grad({t, wq.data(), rows, cols}, dy.data(), n, dx.data(), false, pool);
      double worst = 0, mx = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < cols; ++c) {
          double ref = 0;
          for (int64_t r = 0; r < rows; ++r)
            ref += static_cast<double>(dy[i * rows + r]) * deq[r * cols + c];
          worst = std::max(worst, std::fabs(ref - dx[i * cols + c]));
          mx = std::max(mx, std::fabs(ref));
        }
      std::printf("[ fd       ] input_grad %-6s %-11s worst relative error %.3g\n",
                  std::string(kernels::isa_name(isa)).c_str(), std::string(dtype_name(t)).c_str(),
                  worst / mx);
      EXPECT_LT(worst / mx, 1e-5) << dtype_name(t) << " " << kernels::isa_name(isa);
    }
  }
  kernels::set_active_isa(keep);
}

// The norm weight's gradient: f(w) = dot(dy, rms_norm(x) * w) in double.
TEST(GradOps, RmsNormWeight) {
  std::mt19937 rng(11);
  const int64_t n = 37;
  const Vec x = random_vec(n, rng), dy = random_vec(n, rng);
  Vec w = random_vec(n, rng);
  const auto f = [&](const Vec& wv) {
    std::vector<float> wf(wv.begin(), wv.end());
    Vec y(n);
    rms_norm_fwd(x.data(), wf.data(), n, 1e-5f, y.data());
    return dot(dy, y);
  };
  Vec dw(n, 0.0);
  rms_norm_bwd_w(x.data(), n, 1e-5f, dy.data(), dw.data());
  // The forward takes w as float: w and w +- h are kept exact in float (w on
  // a 1/1024 grid, h = 1/4), and f is linear in w, so the difference is exact.
  const double h = 0.25;
  double worst = 0, scale = 1e-12;
  for (int64_t i = 0; i < n; ++i) {
    w[i] = std::round(w[i] * 1024) / 1024;  // exactly representable in float, also +- h
    const double keep = w[i];
    w[i] = keep + h;
    const double fp = f(w);
    w[i] = keep - h;
    const double fm = f(w);
    w[i] = keep;
    const double num = (fp - fm) / (2 * h);
    scale = std::max(scale, std::fabs(num));
    worst = std::max(worst, std::fabs(num - dw[i]));
  }
  report("rms_norm weight", worst / scale);
}

// dW = dy^T x over a sequence (full training) against a double loop, on
// every instruction-set path of its inner step and on odd sizes (rows not a
// multiple of the task size, all-zero gradient rows skipped).
TEST(GradOps, WeightGrad) {
  ThreadPool pool(2);
  const kernels::Isa keep = kernels::active_isa();
  for (const kernels::Isa isa : kernels::available_isas()) {
    ASSERT_TRUE(kernels::set_active_isa(isa));
    std::mt19937 rng(12);
    for (const auto& [rows, cols, n] :
         {std::tuple{37, 67, 9}, std::tuple{5, 512, 1}, std::tuple{64, 16, 33}}) {
      std::vector<float> dy(static_cast<size_t>(n * rows)), x(static_cast<size_t>(n * cols));
      std::vector<float> dw(static_cast<size_t>(rows * cols));
      for (float& v : dy) v = std::normal_distribution<float>(0, 1)(rng);
      for (float& v : x) v = std::normal_distribution<float>(0, 1)(rng);
      for (float& v : dw) v = std::normal_distribution<float>(0, 1)(rng);  // accumulates onto this
      for (int t = 0; t < n; ++t)
        dy[static_cast<size_t>(t * rows + 3)] = 0;  // a row with no gradient
      const std::vector<float> before = dw;
      std::vector<float> tmp;
      weight_grad(dy.data(), x.data(), n, rows, cols, dw.data(), tmp, pool);
      double worst = 0, mx = 0;
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
          double ref = before[static_cast<size_t>(r * cols + c)];
          for (int t = 0; t < n; ++t)
            ref += static_cast<double>(dy[static_cast<size_t>(t * rows + r)]) *
                   x[static_cast<size_t>(t * cols + c)];
          worst = std::max(worst, std::fabs(ref - dw[static_cast<size_t>(r * cols + c)]));
          mx = std::max(mx, std::fabs(ref));
        }
      std::printf("[ fd       ] weight_grad %-6s %dx%d n=%d worst relative error %.3g\n",
                  std::string(kernels::isa_name(isa)).c_str(), rows, cols, n, worst / mx);
      EXPECT_LT(worst / mx, 1e-5) << kernels::isa_name(isa);
    }
  }
  kernels::set_active_isa(keep);
}

TEST(Optim, ScheduleAndClip) {
  EXPECT_NEAR(lr_at(0, 100, 10, 1.0), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(9, 100, 10, 1.0), 1.0, 1e-12);
  EXPECT_NEAR(lr_at(10, 100, 10, 1.0), 1.0, 1e-12);
  EXPECT_NEAR(lr_at(99, 100, 10, 1.0), 0.0, 1e-12);
  EXPECT_NEAR(lr_at(99, 100, 10, 1.0, 0.1), 0.1, 1e-12);
  std::vector<float> g = {3, 4};
  std::vector<std::span<float>> gs = {std::span<float>(g)};
  EXPECT_NEAR(clip_grad_norm(gs, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(g[0], 0.6f, 1e-6);
  // AdamW's first step moves each coordinate by lr against its gradient's sign.
  std::vector<float> p = {1, 1};
  std::vector<std::span<float>> ps = {std::span<float>(p)};
  g = {0.5f, -2.0f};
  AdamW opt({});
  opt.step(ps, gs, 0.1f);
  EXPECT_NEAR(p[0], 0.9f, 1e-5);
  EXPECT_NEAR(p[1], 1.1f, 1e-5);
}

}  // namespace
}  // namespace slm::train
