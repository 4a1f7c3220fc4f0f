// Launchers of the CUDA kernels (par_cuda.cu, random_walk_cuda.cu). Plain pointers and sizes, no torch
// types: the .cu files then include only the CUDA runtime and the per-pixel headers, so nvcc compiles
// them in seconds. ops_cuda.cpp wraps them for at::Tensor (device guard, stream, dtype dispatch).
// Each launcher returns cudaGetLastError() after its launch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "par.h"
#include "random_walk.h"

namespace wsss {

// image [B, C, H, W] -> weights [B, 8 * num_dilations, H, W].
template <typename T>
cudaError_t launch_par_weights(const T* image, T* weights, int64_t batch, int channels, int height, int width,
                               const ParParams& p, cudaStream_t stream);

// One PAR propagation step: dst[b, k] = sum_n weights[b, n] * src[b, k] at neighbour n. src != dst.
template <typename T>
cudaError_t launch_par_propagate(const T* weights, const T* src, T* dst, int64_t batch, int classes, int height,
                                 int width, const ParParams& p, cudaStream_t stream);

// affinity [B, E, H, W] -> powered forward weights [B, E, H, W] and 1 / degree [B, H, W].
template <typename T>
cudaError_t launch_rw_prepare(const T* affinity, T* weights, T* inv_degree, int64_t batch, int height, int width,
                              const RwParams& p, cudaStream_t stream);

// One random-walk step on [B, C, H, W]. src != dst.
template <typename T>
cudaError_t launch_rw_step(const T* weights, const T* inv_degree, const T* src, T* dst, int64_t batch,
                           int channels, int height, int width, const RwParams& p, cudaStream_t stream);

}  // namespace wsss
