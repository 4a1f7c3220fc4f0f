// Host entry points of the wsss ops (CPU twin and CUDA), and the argument checks both share.
//
// Every op writes into tensors the Python wrapper allocated (wsss/ops/par.py, random_walk.py), so this
// code needs no allocation headers and compiles in seconds. All tensors of one call share one dtype
// (float32 or float64), one device, and are contiguous.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>

#include "par.h"
#include "random_walk.h"

namespace wsss {

inline void check_tensor(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& like) {
  TORCH_CHECK(t.dim() == dim, "wsss ops: ", name, " must have ", dim, " dims, got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "wsss ops: ", name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "wsss ops: ", name, " has dtype ", t.scalar_type(),
              ", expected ", like.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "wsss ops: ", name, " is on ", t.device(), ", expected ",
              like.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "wsss ops: ", name, " must be float32 or float64 (the wrapper casts half inputs)");
}

inline ParParams par_params_from(at::IntArrayRef dilations, double w1, double w2) {
  ParParams p;
  TORCH_CHECK(par_make_params(dilations.data(), static_cast<int>(dilations.size()), w1, w2, &p),
              "wsss ops: PAR needs 1..", kParMaxDilations, " positive dilations and w1 > 0, got dilations ",
              dilations, ", w1=", w1);
  return p;
}

inline RwParams rw_params_from(at::IntArrayRef offsets_flat, double beta) {
  RwParams p;
  TORCH_CHECK(offsets_flat.size() % 2 == 0, "wsss ops: offsets must be flattened (dy, dx) pairs");
  TORCH_CHECK(rw_make_params(offsets_flat.data(), static_cast<int>(offsets_flat.size() / 2), beta, &p),
              "wsss ops: random walk needs at most ", kRwMaxOffsets,
              " half-set offsets (dy > 0, or dy == 0 and dx > 0) and beta > 0, got beta=", beta);
  return p;
}

// image [B, C, H, W] (C <= 8) -> weights [B, 8 * len(dilations), H, W].
inline ParParams check_par_weights(const at::Tensor& image, const at::Tensor& weights,
                                   at::IntArrayRef dilations, double w1, double w2) {
  check_tensor(image, "image", 4, image);
  check_tensor(weights, "weights", 4, image);
  ParParams p = par_params_from(dilations, w1, w2);
  TORCH_CHECK(image.size(1) >= 1 && image.size(1) <= kParMaxImageChannels, "wsss ops: PAR image needs 1..",
              kParMaxImageChannels, " channels, got ", image.size(1));
  TORCH_CHECK(weights.size(0) == image.size(0) && weights.size(1) == par_num_neighbors(p) &&
                  weights.size(2) == image.size(2) && weights.size(3) == image.size(3),
              "wsss ops: PAR weights must be [B, 8 * len(dilations), H, W], got ", weights.sizes());
  return p;
}

// weights [B, N, H, W]; x, tmp [B, K, H, W].
inline ParParams check_par_propagate(const at::Tensor& weights, const at::Tensor& x, const at::Tensor& tmp,
                                     at::IntArrayRef dilations, int64_t num_iter) {
  check_tensor(weights, "weights", 4, weights);
  check_tensor(x, "x", 4, weights);
  check_tensor(tmp, "tmp", 4, weights);
  ParParams p = par_params_from(dilations, 1.0, 0.0);  // w1, w2 are baked into the weights
  TORCH_CHECK(num_iter >= 0, "wsss ops: num_iter must be >= 0");
  TORCH_CHECK(weights.size(1) == par_num_neighbors(p), "wsss ops: weights have ", weights.size(1),
              " neighbours, dilations give ", par_num_neighbors(p));
  TORCH_CHECK(x.size(0) == weights.size(0) && x.size(2) == weights.size(2) && x.size(3) == weights.size(3),
              "wsss ops: masks ", x.sizes(), " do not match weights ", weights.sizes());
  TORCH_CHECK(tmp.sizes() == x.sizes(), "wsss ops: tmp must have the shape of x");
  return p;
}

// affinity [B, E, H, W] -> weights [B, E, H, W], inv_degree [B, H, W].
inline RwParams check_rw_prepare(const at::Tensor& affinity, const at::Tensor& weights,
                                 const at::Tensor& inv_degree, at::IntArrayRef offsets_flat, double beta) {
  check_tensor(affinity, "affinity", 4, affinity);
  check_tensor(weights, "weights", 4, affinity);
  check_tensor(inv_degree, "inv_degree", 3, affinity);
  RwParams p = rw_params_from(offsets_flat, beta);
  TORCH_CHECK(affinity.size(1) == p.num_offsets, "wsss ops: affinity has ", affinity.size(1),
              " edges per pixel, offsets give ", p.num_offsets);
  TORCH_CHECK(weights.sizes() == affinity.sizes(), "wsss ops: weights must have the shape of affinity");
  TORCH_CHECK(inv_degree.size(0) == affinity.size(0) && inv_degree.size(1) == affinity.size(2) &&
                  inv_degree.size(2) == affinity.size(3),
              "wsss ops: inv_degree must be [B, H, W]");
  return p;
}

// weights [B, E, H, W], inv_degree [B, H, W]; x, tmp [B, C, H, W].
inline RwParams check_rw_propagate(const at::Tensor& weights, const at::Tensor& inv_degree, const at::Tensor& x,
                                   const at::Tensor& tmp, at::IntArrayRef offsets_flat, int64_t num_steps) {
  check_tensor(weights, "weights", 4, weights);
  check_tensor(inv_degree, "inv_degree", 3, weights);
  check_tensor(x, "x", 4, weights);
  check_tensor(tmp, "tmp", 4, weights);
  RwParams p = rw_params_from(offsets_flat, 1.0);  // beta is baked into the weights
  TORCH_CHECK(num_steps >= 0, "wsss ops: num_steps must be >= 0");
  TORCH_CHECK(weights.size(1) == p.num_offsets, "wsss ops: weights / offsets mismatch");
  TORCH_CHECK(x.size(0) == weights.size(0) && x.size(2) == weights.size(2) && x.size(3) == weights.size(3),
              "wsss ops: x ", x.sizes(), " does not match weights ", weights.sizes());
  TORCH_CHECK(inv_degree.size(0) == weights.size(0) && inv_degree.size(1) == weights.size(2) &&
                  inv_degree.size(2) == weights.size(3),
              "wsss ops: inv_degree must be [B, H, W]");
  TORCH_CHECK(tmp.sizes() == x.sizes(), "wsss ops: tmp must have the shape of x");
  return p;
}

// CPU twin (par_cpu.cpp, random_walk_cpu.cpp).

// at::parallel_for grain: at least this many inner multiply-adds per task, so that small grids (a 24 x 24
// random walk step) run on one thread instead of paying a parallel region per step.
constexpr int64_t kCpuTaskWork = int64_t(1) << 20;

inline int64_t cpu_grain(int64_t work_per_item) {
  return std::max<int64_t>(1, kCpuTaskWork / std::max<int64_t>(1, work_per_item));
}

void par_weights_cpu(const at::Tensor& image, const at::Tensor& weights, at::IntArrayRef dilations, double w1,
                     double w2);
void par_propagate_cpu(const at::Tensor& weights, const at::Tensor& x, const at::Tensor& tmp,
                       at::IntArrayRef dilations, int64_t num_iter);
void rw_prepare_cpu(const at::Tensor& affinity, const at::Tensor& weights, const at::Tensor& inv_degree,
                    at::IntArrayRef offsets, double beta);
void rw_propagate_cpu(const at::Tensor& weights, const at::Tensor& inv_degree, const at::Tensor& x,
                      const at::Tensor& tmp, at::IntArrayRef offsets, int64_t num_steps);

#ifdef WSSS_WITH_CUDA
// CUDA kernels (par_cuda.cu, random_walk_cuda.cu).
void par_weights_cuda(const at::Tensor& image, const at::Tensor& weights, at::IntArrayRef dilations, double w1,
                      double w2);
void par_propagate_cuda(const at::Tensor& weights, const at::Tensor& x, const at::Tensor& tmp,
                        at::IntArrayRef dilations, int64_t num_iter);
void rw_prepare_cuda(const at::Tensor& affinity, const at::Tensor& weights, const at::Tensor& inv_degree,
                     at::IntArrayRef offsets, double beta);
void rw_propagate_cuda(const at::Tensor& weights, const at::Tensor& inv_degree, const at::Tensor& x,
                       const at::Tensor& tmp, at::IntArrayRef offsets, int64_t num_steps);
#endif

}  // namespace wsss
