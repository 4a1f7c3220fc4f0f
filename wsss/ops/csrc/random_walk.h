// Random walk with a learned local affinity (AffinityNet / IRN): per-pixel math shared by the CPU twin
// and CUDA.
//
// Offsets o_e = (dy_e, dx_e), e < E, form a half set: dy > 0, or dy == 0 and dx > 0 (IRN's path
// destinations). affinity[b, e, y, x] = a(p, p + o_e) for p = (y, x); the graph is symmetric, so the same
// value is the weight of the mirrored edge p + o_e -> p. Neighbours outside the grid do not exist.
// Each pixel also has a self-loop with affinity 1 (IRN's affinity_sparse2dense puts ones on the diagonal).
//
//   A = symmetric affinity with unit diagonal,  T = D^-1 A^beta  (D = row sums of A^beta, so each row of T
//   sums to 1),  x <- T x  repeated num_steps times, per channel, never forming the HW x HW matrix:
//
//   x'(p) = ( x(p) + sum_e [p+o_e in grid] a(p,e)^beta x(p+o_e) + sum_e [p-o_e in grid] a(p-o_e,e)^beta x(p-o_e) )
//           / ( 1 + sum_e [p+o_e in grid] a(p,e)^beta + sum_e [p-o_e in grid] a(p-o_e,e)^beta )
#pragma once

#include "common.h"

namespace wsss {

constexpr int kRwMaxOffsets = 256;

struct RwParams {
  int num_offsets;
  int reach_y, reach_x;  // max |dy|, max |dx|: pixels this far from the borders have every neighbour
  int dy[kRwMaxOffsets];
  int dx[kRwMaxOffsets];
  double beta;
};

// Host only. offsets_flat = [dy0, dx0, dy1, dx1, ...]. Returns false unless it is a half set.
inline bool rw_make_params(const int64_t* offsets_flat, int num_offsets, double beta, RwParams* out) {
  if (num_offsets < 0 || num_offsets > kRwMaxOffsets || !(beta > 0.0)) return false;
  out->num_offsets = num_offsets;
  out->beta = beta;
  out->reach_y = 0;
  out->reach_x = 0;
  for (int e = 0; e < num_offsets; ++e) {
    const int64_t dy = offsets_flat[2 * e], dx = offsets_flat[2 * e + 1];
    if (!(dy > 0 || (dy == 0 && dx > 0)) || dy > (1 << 20) || dx > (1 << 20) || dx < -(1 << 20)) return false;
    out->dy[e] = static_cast<int>(dy);
    out->dx[e] = static_cast<int>(dx);
    out->reach_y = out->dy[e] > out->reach_y ? out->dy[e] : out->reach_y;
    const int adx = out->dx[e] < 0 ? -out->dx[e] : out->dx[e];
    out->reach_x = adx > out->reach_x ? adx : out->reach_x;
  }
  return true;
}

// Powered forward weights and inverse degree of one pixel.
// affinity / weights_out point at [b, 0, 0, 0] of [B, E, H, W] tensors (offset e at e * plane);
// weights_out[e] = a(p, e)^beta if p + o_e is inside the grid, else 0. Returns 1 / D(p).
template <typename T>
WSSS_HD T rw_pixel_prepare(const T* affinity, int height, int width, int y, int x, const RwParams& p,
                           T* weights_out, int64_t plane) {
  const T beta = static_cast<T>(p.beta);
  const int64_t here = static_cast<int64_t>(y) * width + x;
  T degree = T(1);  // self-loop
  for (int e = 0; e < p.num_offsets; ++e) {
    T w = T(0);
    if (inside_grid(y + p.dy[e], x + p.dx[e], height, width)) w = math_pow(affinity[e * plane + here], beta);
    weights_out[e * plane + here] = w;
    degree += w;
  }
  for (int e = 0; e < p.num_offsets; ++e) {
    const int sy = y - p.dy[e], sx = x - p.dx[e];
    if (inside_grid(sy, sx, height, width)) {
      degree += math_pow(affinity[e * plane + static_cast<int64_t>(sy) * width + sx], beta);
    }
  }
  return T(1) / degree;
}

// Channels handled together per pass over the edges (see par.h).
constexpr int kRwChannelChunk = 8;

// One step for channels [c_begin, c_end) of one pixel; kCheck = false skips the grid tests (valid only
// when every neighbour is inside the grid).
template <typename T, bool kCheck>
WSSS_HD void rw_step_pixel_impl(const T* weights, const T* src, T* dst, T inv_degree, int c_begin, int c_end,
                                int height, int width, int y, int x, const RwParams& p, int64_t plane) {
  const int64_t here = static_cast<int64_t>(y) * width + x;
  for (int c0 = c_begin; c0 < c_end; c0 += kRwChannelChunk) {
    const int cc = (c_end - c0) < kRwChannelChunk ? (c_end - c0) : kRwChannelChunk;
    const T* src_c = src + c0 * plane;
    T acc[kRwChannelChunk];
    for (int kk = 0; kk < kRwChannelChunk; ++kk) acc[kk] = kk < cc ? src_c[kk * plane + here] : T(0);
    for (int e = 0; e < p.num_offsets; ++e) {
      const int64_t shift = static_cast<int64_t>(p.dy[e]) * width + p.dx[e];
      if (!kCheck || inside_grid(y + p.dy[e], x + p.dx[e], height, width)) {  // edge p -> p + o_e, stored at p
        const T w = weights[e * plane + here];
        const int64_t there = here + shift;
#if defined(__CUDACC__)
#pragma unroll
#endif
        for (int kk = 0; kk < kRwChannelChunk; ++kk) {
          if (kk < cc) acc[kk] += w * src_c[kk * plane + there];
        }
      }
      if (!kCheck || inside_grid(y - p.dy[e], x - p.dx[e], height, width)) {  // mirrored edge, stored at p - o_e
        const int64_t there = here - shift;
        const T w = weights[e * plane + there];
#if defined(__CUDACC__)
#pragma unroll
#endif
        for (int kk = 0; kk < kRwChannelChunk; ++kk) {
          if (kk < cc) acc[kk] += w * src_c[kk * plane + there];
        }
      }
    }
    for (int kk = 0; kk < cc; ++kk) dst[(c0 + kk) * plane + here] = acc[kk] * inv_degree;
  }
}

// One step for channels [c_begin, c_end) of one pixel. weights: [b, 0, 0, 0] of the prepared
// [B, E, H, W] weights; src / dst: x[b, 0, 0, 0] of [B, C, H, W]; inv_degree: 1 / D(p).
template <typename T>
WSSS_HD void rw_step_pixel(const T* weights, const T* src, T* dst, T inv_degree, int c_begin, int c_end,
                           int height, int width, int y, int x, const RwParams& p, int64_t plane) {
  if (y >= p.reach_y && y + p.reach_y < height && x >= p.reach_x && x + p.reach_x < width) {
    rw_step_pixel_impl<T, false>(weights, src, dst, inv_degree, c_begin, c_end, height, width, y, x, p, plane);
  } else {
    rw_step_pixel_impl<T, true>(weights, src, dst, inv_degree, c_begin, c_end, height, width, y, x, p, plane);
  }
}

}  // namespace wsss
