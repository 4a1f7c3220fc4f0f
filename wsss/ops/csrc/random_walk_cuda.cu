// Random walk on the GPU: one thread per pixel (prepare) and per pixel x channel group (steps), running
// the per-pixel functions of random_walk.h. Memory beyond the inputs: the powered weights
// [B, E, H, W], 1 / degree [B, H, W] and one ping-pong copy of x; never the HW x HW matrix.
#include <cuda_runtime.h>

#include "cuda_kernels.h"
#include "cuda_launch.h"
#include "random_walk.h"

namespace wsss {
namespace {

template <typename T>
__global__ void rw_prepare_kernel(const T* __restrict__ affinity, T* __restrict__ weights,
                                  T* __restrict__ inv_degree, int64_t batch, int height, int width,
                                  const RwParams p) {
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t edges = p.num_offsets;
  const int64_t total = batch * plane;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int x = static_cast<int>(i % width);
    const int y = static_cast<int>((i / width) % height);
    const int64_t b = i / plane;
    inv_degree[i] = rw_pixel_prepare<T>(affinity + b * edges * plane, height, width, y, x, p,
                                        weights + b * edges * plane, plane);
  }
}

// Block (bx, by, z) -> a 32 x 8 pixel tile of batch item b and channel group g (z = b * groups + g), as in
// par_cuda.cu; with IRN's radius 5 most neighbour reads of a block stay inside its tile plus a 4-pixel halo.
template <typename T>
__global__ void rw_step_kernel(const T* __restrict__ weights, const T* __restrict__ inv_degree,
                               const T* __restrict__ src, T* __restrict__ dst, int channels, int per_thread,
                               int groups, int height, int width, const RwParams p) {
  const int x = blockIdx.x * kTileW + threadIdx.x;
  const int y = blockIdx.y * kTileH + threadIdx.y;
  if (x >= width || y >= height) return;
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t edges = p.num_offsets;
  const int64_t b = blockIdx.z / groups;
  const int g = static_cast<int>(blockIdx.z % groups);
  const int c_begin = g * per_thread;
  const int c_end = min(channels, c_begin + per_thread);
  rw_step_pixel<T>(weights + b * edges * plane, src + b * channels * plane, dst + b * channels * plane,
                   inv_degree[b * plane + static_cast<int64_t>(y) * width + x], c_begin, c_end, height, width, y,
                   x, p, plane);
}

}  // namespace

template <typename T>
cudaError_t launch_rw_prepare(const T* affinity, T* weights, T* inv_degree, int64_t batch, int height, int width,
                              const RwParams& p, cudaStream_t stream) {
  const int64_t total = batch * height * width;
  if (total == 0) return cudaSuccess;
  rw_prepare_kernel<T><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(affinity, weights, inv_degree, batch,
                                                                             height, width, p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_rw_step(const T* weights, const T* inv_degree, const T* src, T* dst, int64_t batch,
                           int channels, int height, int width, const RwParams& p, cudaStream_t stream) {
  const int64_t pixels = batch * height * width;
  if (pixels == 0 || channels == 0) return cudaSuccess;
  const int per_thread = channels_per_thread(pixels, channels, kRwChannelChunk);
  const int groups = (channels + per_thread - 1) / per_thread;
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t edges = p.num_offsets;
  const int64_t batch_per_launch = kMaxGridYZ / groups;  // gridDim.z limit
  for (int64_t b0 = 0; b0 < batch; b0 += batch_per_launch) {
    const int64_t nb = batch - b0 < batch_per_launch ? batch - b0 : batch_per_launch;
    dim3 grid;
    if (!tiled_grid(height, width, nb * groups, &grid)) return cudaErrorInvalidConfiguration;
    rw_step_kernel<T><<<grid, dim3(kTileW, kTileH), 0, stream>>>(
        weights + b0 * edges * plane, inv_degree + b0 * plane, src + b0 * channels * plane,
        dst + b0 * channels * plane, channels, per_thread, groups, height, width, p);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template cudaError_t launch_rw_prepare<float>(const float*, float*, float*, int64_t, int, int, const RwParams&,
                                              cudaStream_t);
template cudaError_t launch_rw_prepare<double>(const double*, double*, double*, int64_t, int, int,
                                               const RwParams&, cudaStream_t);
template cudaError_t launch_rw_step<float>(const float*, const float*, const float*, float*, int64_t, int, int, int,
                                           const RwParams&, cudaStream_t);
template cudaError_t launch_rw_step<double>(const double*, const double*, const double*, double*, int64_t, int,
                                            int, int, const RwParams&, cudaStream_t);

}  // namespace wsss
