// PAR (pixel-adaptive refinement, as in AFA / ToCo): per-pixel math shared by the CPU twin and CUDA.
//
// Neighbourhood of pixel p=(y, x): for each dilation d (in the given order) the 8 pixels of the 3x3
// stencil scaled by d, row-major without the centre: (-d,-d) (-d,0) (-d,d) (0,-d) (0,d) (d,-d) (d,0) (d,d).
// Coordinates outside the image are clamped (replicate padding). N = 8 * num_dilations neighbours.
//
//   std_c(p)   = unbiased std over the N neighbours of image channel c        (torch.std over the window)
//   a_n(p)     = -mean_c ( |I_c(n) - I_c(p)| / (std_c(p) + 1e-8) / w1 )^2
//   g_n        = -( dist_n / (std(dist) + 1e-8) / w1 )^2     dist_n = d or d*sqrt(2) on diagonals
//   W_n(p)     = softmax_n(a(p))_n + w2 * softmax_n(g)_n       (g, and its softmax, are the same for all p)
//   M'_k(p)    = sum_n W_n(p) * M_k(n)                           one propagation step, repeated num_iter times
#pragma once

#include "common.h"

namespace wsss {

constexpr int kParMaxDilations = 16;
constexpr int kParMaxNeighbors = 8 * kParMaxDilations;
constexpr int kParMaxImageChannels = 8;

struct ParParams {
  int num_dilations;
  int max_dilation;  // pixels at least this far from every border never clamp (fast path)
  int dilations[kParMaxDilations];
  double pos_weight[kParMaxNeighbors];  // w2 * softmax(g)_n, identical for every pixel
  double w1;
};

WSSS_HD int par_num_neighbors(const ParParams& p) { return 8 * p.num_dilations; }

// Offset of neighbour n: dilation p.dilations[n / 8], stencil slot n % 8 (centre skipped).
WSSS_HD void par_neighbor_offset(const ParParams& p, int n, int* dy, int* dx) {
  const int d = p.dilations[n / 8];
  int slot = n % 8;
  if (slot >= 4) slot += 1;  // slot 4 of the 3x3 stencil is the centre
  *dy = (slot / 3 - 1) * d;
  *dx = (slot % 3 - 1) * d;
}

// Host only: fill the constant position term. Returns false if an argument is out of range.
inline bool par_make_params(const int64_t* dilations, int num_dilations, double w1, double w2,
                            ParParams* out) {
  if (num_dilations < 1 || num_dilations > kParMaxDilations || !(w1 > 0.0)) return false;
  out->num_dilations = num_dilations;
  out->w1 = w1;
  out->max_dilation = 0;
  for (int i = 0; i < num_dilations; ++i) {
    if (dilations[i] < 1 || dilations[i] > (1 << 20)) return false;
    out->dilations[i] = static_cast<int>(dilations[i]);
    out->max_dilation = out->dilations[i] > out->max_dilation ? out->dilations[i] : out->max_dilation;
  }
  const int n_total = 8 * num_dilations;
  double dist[kParMaxNeighbors];
  double mean = 0.0;
  for (int n = 0; n < n_total; ++n) {
    int dy, dx;
    par_neighbor_offset(*out, n, &dy, &dx);
    const double d = static_cast<double>(out->dilations[n / 8]);
    dist[n] = (dy != 0 && dx != 0) ? d * std::sqrt(2.0) : d;
    mean += dist[n];
  }
  mean /= n_total;
  double var = 0.0;
  for (int n = 0; n < n_total; ++n) var += (dist[n] - mean) * (dist[n] - mean);
  const double scale = 1.0 / ((std::sqrt(var / (n_total - 1)) + 1e-8) * w1);
  double logit_max = -1e300;
  double logits[kParMaxNeighbors];
  for (int n = 0; n < n_total; ++n) {
    const double z = dist[n] * scale;
    logits[n] = -z * z;
    logit_max = logits[n] > logit_max ? logits[n] : logit_max;
  }
  double sum = 0.0;
  for (int n = 0; n < n_total; ++n) sum += std::exp(logits[n] - logit_max);
  for (int n = 0; n < n_total; ++n) out->pos_weight[n] = w2 * std::exp(logits[n] - logit_max) / sum;
  return true;
}

// Affinity weights of one pixel. image: [C, H, W] plane of one batch item (contiguous);
// weights_out points at weights[b, 0, y, x] of a [B, N, H, W] tensor, neighbour n at weights_out[n * plane].
template <typename T>
WSSS_HD void par_pixel_weights(const T* image, int channels, int height, int width, int y, int x,
                               const ParParams& p, T* weights_out, int64_t plane) {
  const int n_total = par_num_neighbors(p);
  const int64_t hw = static_cast<int64_t>(height) * width;
  T center[kParMaxImageChannels];
  T mean[kParMaxImageChannels];
  T scale[kParMaxImageChannels];
  for (int c = 0; c < channels; ++c) {
    center[c] = image[c * hw + static_cast<int64_t>(y) * width + x];
    mean[c] = T(0);
    scale[c] = T(0);  // holds the sum of squared deviations until it becomes the scale
  }
  for (int n = 0; n < n_total; ++n) {
    int dy, dx;
    par_neighbor_offset(p, n, &dy, &dx);
    const int64_t idx = static_cast<int64_t>(clamp_index(y + dy, height)) * width + clamp_index(x + dx, width);
    for (int c = 0; c < channels; ++c) mean[c] += image[c * hw + idx];
  }
  for (int c = 0; c < channels; ++c) mean[c] /= T(n_total);
  for (int n = 0; n < n_total; ++n) {
    int dy, dx;
    par_neighbor_offset(p, n, &dy, &dx);
    const int64_t idx = static_cast<int64_t>(clamp_index(y + dy, height)) * width + clamp_index(x + dx, width);
    for (int c = 0; c < channels; ++c) {
      const T dev = image[c * hw + idx] - mean[c];
      scale[c] += dev * dev;
    }
  }
  const T w1 = static_cast<T>(p.w1);
  for (int c = 0; c < channels; ++c) {
    const T std_c = math_sqrt(scale[c] / T(n_total - 1));
    scale[c] = T(1) / ((std_c + T(1e-8)) * w1);
  }
  // Colour logits, kept in registers / local memory for the softmax.
  T logits[kParMaxNeighbors];
  T logit_max = T(-1e30);
  for (int n = 0; n < n_total; ++n) {
    int dy, dx;
    par_neighbor_offset(p, n, &dy, &dx);
    const int64_t idx = static_cast<int64_t>(clamp_index(y + dy, height)) * width + clamp_index(x + dx, width);
    T acc = T(0);
    for (int c = 0; c < channels; ++c) {
      const T z = math_abs(image[c * hw + idx] - center[c]) * scale[c];
      acc += z * z;
    }
    logits[n] = -acc / T(channels);
    logit_max = logits[n] > logit_max ? logits[n] : logit_max;
  }
  T sum = T(0);
  for (int n = 0; n < n_total; ++n) {
    logits[n] = math_exp(logits[n] - logit_max);
    sum += logits[n];
  }
  for (int n = 0; n < n_total; ++n) {
    weights_out[n * plane] = logits[n] / sum + static_cast<T>(p.pos_weight[n]);
  }
}

// Channels handled together per pass over the neighbourhood: the neighbour's weight and address are
// computed once and reused for kChannelChunk channels (registers on the GPU).
constexpr int kChannelChunk = 8;

// One propagation step for channels [k_begin, k_end) of one pixel; kClamp = false skips the border clamp
// (valid only when every neighbour is inside the image).
template <typename T, bool kClamp>
WSSS_HD void par_propagate_pixel_impl(const T* weights, const T* src, T* dst, int k_begin, int k_end, int height,
                                      int width, int y, int x, const ParParams& p, int64_t plane) {
  const int n_total = par_num_neighbors(p);
  const int64_t here = static_cast<int64_t>(y) * width + x;
  for (int k0 = k_begin; k0 < k_end; k0 += kChannelChunk) {
    const int kc = (k_end - k0) < kChannelChunk ? (k_end - k0) : kChannelChunk;
    const T* src_k = src + k0 * plane;
    T acc[kChannelChunk];
    for (int kk = 0; kk < kChannelChunk; ++kk) acc[kk] = T(0);
    for (int n = 0; n < n_total; ++n) {
      int dy, dx;
      par_neighbor_offset(p, n, &dy, &dx);
      const int64_t idx = kClamp ? static_cast<int64_t>(clamp_index(y + dy, height)) * width +
                                       clamp_index(x + dx, width)
                                 : here + static_cast<int64_t>(dy) * width + dx;
      const T w = weights[n * plane];
#if defined(__CUDACC__)
#pragma unroll
#endif
      for (int kk = 0; kk < kChannelChunk; ++kk) {
        if (kk < kc) acc[kk] += w * src_k[kk * plane + idx];
      }
    }
    for (int kk = 0; kk < kc; ++kk) dst[(k0 + kk) * plane + here] = acc[kk];
  }
}

// One propagation step for channels [k_begin, k_end) of one pixel.
// weights points at weights[b, 0, y, x] (neighbour n at n * plane); src / dst point at x[b, 0, 0, 0] of
// [B, K, H, W] tensors (channel k at k * plane).
template <typename T>
WSSS_HD void par_propagate_pixel(const T* weights, const T* src, T* dst, int k_begin, int k_end, int height,
                                 int width, int y, int x, const ParParams& p, int64_t plane) {
  const int r = p.max_dilation;
  if (y >= r && y + r < height && x >= r && x + r < width) {
    par_propagate_pixel_impl<T, false>(weights, src, dst, k_begin, k_end, height, width, y, x, p, plane);
  } else {
    par_propagate_pixel_impl<T, true>(weights, src, dst, k_begin, k_end, height, width, y, x, p, plane);
  }
}

}  // namespace wsss
