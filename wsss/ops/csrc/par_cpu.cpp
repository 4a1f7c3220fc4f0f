// PAR on the CPU: loops over pixels calling the same per-pixel functions as the CUDA kernels (par.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <utility>

#include "ops.h"

namespace wsss {

void par_weights_cpu(const at::Tensor& image, const at::Tensor& weights, at::IntArrayRef dilations, double w1,
                     double w2) {
  const ParParams p = check_par_weights(image, weights, dilations, w1, w2);
  const int64_t batch = image.size(0);
  const int channels = static_cast<int>(image.size(1));
  const int height = static_cast<int>(image.size(2));
  const int width = static_cast<int>(image.size(3));
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t n_total = par_num_neighbors(p);
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "wsss_par_weights_cpu", [&] {
    const scalar_t* img = image.data_ptr<scalar_t>();
    scalar_t* out = weights.data_ptr<scalar_t>();
    const int64_t grain = cpu_grain(static_cast<int64_t>(width) * n_total * channels * 4);
    at::parallel_for(0, batch * height, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / height;
        const int y = static_cast<int>(row % height);
        for (int x = 0; x < width; ++x) {
          par_pixel_weights<scalar_t>(img + b * channels * plane, channels, height, width, y, x, p,
                                      out + b * n_total * plane + static_cast<int64_t>(y) * width + x, plane);
        }
      }
    });
  });
}

void par_propagate_cpu(const at::Tensor& weights, const at::Tensor& x, const at::Tensor& tmp,
                       at::IntArrayRef dilations, int64_t num_iter) {
  const ParParams p = check_par_propagate(weights, x, tmp, dilations, num_iter);
  const int64_t batch = x.size(0);
  const int64_t classes = x.size(1);
  const int height = static_cast<int>(x.size(2));
  const int width = static_cast<int>(x.size(3));
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t n_total = par_num_neighbors(p);
  // One task per (batch item, chunk of kChannelChunk classes, row): the same channel split as a CUDA
  // launch with few pixels, so partial chunks (K not a multiple of 8) are exercised here too.
  const int64_t groups = (classes + kChannelChunk - 1) / kChannelChunk;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wsss_par_propagate_cpu", [&] {
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = tmp.data_ptr<scalar_t>();
    const int64_t grain = cpu_grain(static_cast<int64_t>(width) * n_total * kChannelChunk);
    for (int64_t it = 0; it < num_iter; ++it) {
      at::parallel_for(0, batch * groups * height, grain, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int y = static_cast<int>(task % height);
          const int64_t g = (task / height) % groups;
          const int64_t b = task / (height * groups);
          const int k_begin = static_cast<int>(g * kChannelChunk);
          const int k_end = static_cast<int>(std::min<int64_t>(classes, (g + 1) * kChannelChunk));
          const scalar_t* w_b = w + b * n_total * plane + static_cast<int64_t>(y) * width;
          for (int xx = 0; xx < width; ++xx) {
            par_propagate_pixel<scalar_t>(w_b + xx, src + b * classes * plane, dst + b * classes * plane,
                                          k_begin, k_end, height, width, y, xx, p, plane);
          }
        }
      });
      std::swap(src, dst);
    }
    if (num_iter % 2 == 1) x.copy_(tmp);  // the last step wrote into tmp
  });
}

}  // namespace wsss
