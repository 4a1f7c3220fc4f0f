// PAR on the GPU: one thread per pixel (weights) and per pixel x channel group (propagation), running
// the per-pixel functions of par.h. The unfolded neighbourhood is never materialised: the only
// intermediate is the [B, 8 * len(dilations), H, W] weight tensor the wrapper allocates.
#include <cuda_runtime.h>

#include "cuda_kernels.h"
#include "cuda_launch.h"
#include "par.h"

namespace wsss {
namespace {

template <typename T>
__global__ void par_weights_kernel(const T* __restrict__ image, T* __restrict__ weights, int64_t batch,
                                   int channels, int height, int width, const ParParams p) {
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t n_total = par_num_neighbors(p);
  const int64_t total = batch * plane;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int x = static_cast<int>(i % width);
    const int y = static_cast<int>((i / width) % height);
    const int64_t b = i / plane;
    par_pixel_weights<T>(image + b * channels * plane, channels, height, width, y, x, p,
                         weights + b * n_total * plane + static_cast<int64_t>(y) * width + x, plane);
  }
}

// Block (bx, by, z) -> a 32 x 8 pixel tile of batch item b and channel group g (z = b * groups + g);
// thread (tx, ty) -> one pixel, channels [g * per_thread, (g + 1) * per_thread).
template <typename T>
__global__ void par_propagate_kernel(const T* __restrict__ weights, const T* __restrict__ src,
                                     T* __restrict__ dst, int classes, int per_thread, int groups, int height,
                                     int width, const ParParams p) {
  const int x = blockIdx.x * kTileW + threadIdx.x;
  const int y = blockIdx.y * kTileH + threadIdx.y;
  if (x >= width || y >= height) return;
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t n_total = par_num_neighbors(p);
  const int64_t b = blockIdx.z / groups;
  const int g = static_cast<int>(blockIdx.z % groups);
  const int k_begin = g * per_thread;
  const int k_end = min(classes, k_begin + per_thread);
  par_propagate_pixel<T>(weights + b * n_total * plane + static_cast<int64_t>(y) * width + x,
                         src + b * classes * plane, dst + b * classes * plane, k_begin, k_end, height, width, y,
                         x, p, plane);
}

}  // namespace

template <typename T>
cudaError_t launch_par_weights(const T* image, T* weights, int64_t batch, int channels, int height, int width,
                               const ParParams& p, cudaStream_t stream) {
  const int64_t total = batch * height * width;
  if (total == 0) return cudaSuccess;
  par_weights_kernel<T><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(image, weights, batch, channels,
                                                                              height, width, p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_par_propagate(const T* weights, const T* src, T* dst, int64_t batch, int classes, int height,
                                 int width, const ParParams& p, cudaStream_t stream) {
  const int64_t pixels = batch * height * width;
  if (pixels == 0 || classes == 0) return cudaSuccess;
  const int per_thread = channels_per_thread(pixels, classes, kChannelChunk);
  const int groups = (classes + per_thread - 1) / per_thread;
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t n_total = par_num_neighbors(p);
  const int64_t batch_per_launch = kMaxGridYZ / groups;  // gridDim.z limit
  for (int64_t b0 = 0; b0 < batch; b0 += batch_per_launch) {
    const int64_t nb = batch - b0 < batch_per_launch ? batch - b0 : batch_per_launch;
    dim3 grid;
    if (!tiled_grid(height, width, nb * groups, &grid)) return cudaErrorInvalidConfiguration;
    par_propagate_kernel<T><<<grid, dim3(kTileW, kTileH), 0, stream>>>(
        weights + b0 * n_total * plane, src + b0 * classes * plane, dst + b0 * classes * plane, classes,
        per_thread, groups, height, width, p);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template cudaError_t launch_par_weights<float>(const float*, float*, int64_t, int, int, int, const ParParams&,
                                               cudaStream_t);
template cudaError_t launch_par_weights<double>(const double*, double*, int64_t, int, int, int, const ParParams&,
                                                cudaStream_t);
template cudaError_t launch_par_propagate<float>(const float*, const float*, float*, int64_t, int, int, int,
                                                 const ParParams&, cudaStream_t);
template cudaError_t launch_par_propagate<double>(const double*, const double*, double*, int64_t, int, int, int,
                                                  const ParParams&, cudaStream_t);

}  // namespace wsss
