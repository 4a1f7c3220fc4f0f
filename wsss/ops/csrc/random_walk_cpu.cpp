// Random walk on the CPU: loops over pixels calling the same per-pixel functions as the CUDA kernels
// (random_walk.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <utility>

#include "ops.h"

namespace wsss {

void rw_prepare_cpu(const at::Tensor& affinity, const at::Tensor& weights, const at::Tensor& inv_degree,
                    at::IntArrayRef offsets, double beta) {
  const RwParams p = check_rw_prepare(affinity, weights, inv_degree, offsets, beta);
  const int64_t batch = affinity.size(0);
  const int height = static_cast<int>(affinity.size(2));
  const int width = static_cast<int>(affinity.size(3));
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t edges = p.num_offsets;
  AT_DISPATCH_FLOATING_TYPES(affinity.scalar_type(), "wsss_rw_prepare_cpu", [&] {
    const scalar_t* aff = affinity.data_ptr<scalar_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* inv_deg = inv_degree.data_ptr<scalar_t>();
    const int64_t grain = cpu_grain(static_cast<int64_t>(width) * edges * 4);
    at::parallel_for(0, batch * height, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / height;
        const int y = static_cast<int>(row % height);
        for (int x = 0; x < width; ++x) {
          inv_deg[b * plane + static_cast<int64_t>(y) * width + x] = rw_pixel_prepare<scalar_t>(
              aff + b * edges * plane, height, width, y, x, p, w + b * edges * plane, plane);
        }
      }
    });
  });
}

void rw_propagate_cpu(const at::Tensor& weights, const at::Tensor& inv_degree, const at::Tensor& x,
                      const at::Tensor& tmp, at::IntArrayRef offsets, int64_t num_steps) {
  const RwParams p = check_rw_propagate(weights, inv_degree, x, tmp, offsets, num_steps);
  const int64_t batch = x.size(0);
  const int64_t channels = x.size(1);
  const int height = static_cast<int>(x.size(2));
  const int width = static_cast<int>(x.size(3));
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t edges = p.num_offsets;
  // One task per (batch item, chunk of kRwChannelChunk channels, row), as in par_cpu.cpp.
  const int64_t groups = (channels + kRwChannelChunk - 1) / kRwChannelChunk;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wsss_rw_propagate_cpu", [&] {
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* inv_deg = inv_degree.data_ptr<scalar_t>();
    scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = tmp.data_ptr<scalar_t>();
    const int64_t grain = cpu_grain(static_cast<int64_t>(width) * 2 * edges * kRwChannelChunk);
    for (int64_t step = 0; step < num_steps; ++step) {
      at::parallel_for(0, batch * groups * height, grain, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int y = static_cast<int>(task % height);
          const int64_t g = (task / height) % groups;
          const int64_t b = task / (height * groups);
          const int c_begin = static_cast<int>(g * kRwChannelChunk);
          const int c_end = static_cast<int>(std::min<int64_t>(channels, (g + 1) * kRwChannelChunk));
          for (int xx = 0; xx < width; ++xx) {
            const int64_t here = b * plane + static_cast<int64_t>(y) * width + xx;
            rw_step_pixel<scalar_t>(w + b * edges * plane, src + b * channels * plane,
                                    dst + b * channels * plane, inv_deg[here], c_begin, c_end, height, width,
                                    y, xx, p, plane);
          }
        }
      });
      std::swap(src, dst);
    }
    if (num_steps % 2 == 1) x.copy_(tmp);  // the last step wrote into tmp
  });
}

}  // namespace wsss
