// Shared helpers for the wsss ops: compiled by g++ (CPU twin) and by nvcc (CUDA kernels).
//
// Everything per-pixel lives in __host__ __device__ inline functions (WSSS_HD) so the CPU loops in
// *_cpu.cpp and the CUDA kernels in *_cuda.cu run the same arithmetic; the CPU parity tests therefore
// exercise the kernel indexing even on machines without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define WSSS_HD __host__ __device__ __forceinline__
#else
#define WSSS_HD inline
#endif

namespace wsss {

// Replicate padding == clamping the neighbour coordinate to the grid.
WSSS_HD int clamp_index(int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

WSSS_HD bool inside_grid(int y, int x, int height, int width) {
  return y >= 0 && y < height && x >= 0 && x < width;
}

// Overloads so templated code picks the float or double libm / CUDA math function.
WSSS_HD float math_exp(float v) { return expf(v); }
WSSS_HD double math_exp(double v) { return exp(v); }
WSSS_HD float math_sqrt(float v) { return sqrtf(v); }
WSSS_HD double math_sqrt(double v) { return sqrt(v); }
WSSS_HD float math_pow(float a, float b) { return powf(a, b); }
WSSS_HD double math_pow(double a, double b) { return pow(a, b); }
WSSS_HD float math_abs(float v) { return fabsf(v); }
WSSS_HD double math_abs(double v) { return fabs(v); }

}  // namespace wsss
