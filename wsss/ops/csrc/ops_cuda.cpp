// CUDA host side of the wsss ops: at::Tensor checks, device guard, current stream, dtype dispatch and the
// ping-pong iteration loop around the launchers of par_cuda.cu / random_walk_cuda.cu. Built only in the
// CUDA variant (WSSS_WITH_CUDA); compiled by the host compiler, so nvcc never sees torch headers.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <utility>

#include "cuda_kernels.h"
#include "ops.h"

namespace wsss {

void par_weights_cuda(const at::Tensor& image, const at::Tensor& weights, at::IntArrayRef dilations, double w1,
                      double w2) {
  const ParParams p = check_par_weights(image, weights, dilations, w1, w2);
  TORCH_CHECK(image.is_cuda(), "wsss ops: par_weights_cuda needs CUDA tensors");
  const c10::cuda::CUDAGuard guard(image.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "wsss_par_weights_cuda", [&] {
    C10_CUDA_CHECK(launch_par_weights<scalar_t>(image.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                                image.size(0), static_cast<int>(image.size(1)),
                                                static_cast<int>(image.size(2)), static_cast<int>(image.size(3)),
                                                p, stream));
  });
}

void par_propagate_cuda(const at::Tensor& weights, const at::Tensor& x, const at::Tensor& tmp,
                        at::IntArrayRef dilations, int64_t num_iter) {
  const ParParams p = check_par_propagate(weights, x, tmp, dilations, num_iter);
  TORCH_CHECK(x.is_cuda(), "wsss ops: par_propagate_cuda needs CUDA tensors");
  const c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wsss_par_propagate_cuda", [&] {
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = tmp.data_ptr<scalar_t>();
    for (int64_t it = 0; it < num_iter; ++it) {
      C10_CUDA_CHECK(launch_par_propagate<scalar_t>(w, src, dst, x.size(0), static_cast<int>(x.size(1)),
                                                    static_cast<int>(x.size(2)), static_cast<int>(x.size(3)), p,
                                                    stream));
      std::swap(src, dst);
    }
  });
  if (num_iter % 2 == 1) x.copy_(tmp);  // the last step wrote into tmp (same stream, stays async)
}

void rw_prepare_cuda(const at::Tensor& affinity, const at::Tensor& weights, const at::Tensor& inv_degree,
                     at::IntArrayRef offsets, double beta) {
  const RwParams p = check_rw_prepare(affinity, weights, inv_degree, offsets, beta);
  TORCH_CHECK(affinity.is_cuda(), "wsss ops: rw_prepare_cuda needs CUDA tensors");
  const c10::cuda::CUDAGuard guard(affinity.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(affinity.scalar_type(), "wsss_rw_prepare_cuda", [&] {
    C10_CUDA_CHECK(launch_rw_prepare<scalar_t>(affinity.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                               inv_degree.data_ptr<scalar_t>(), affinity.size(0),
                                               static_cast<int>(affinity.size(2)),
                                               static_cast<int>(affinity.size(3)), p, stream));
  });
}

void rw_propagate_cuda(const at::Tensor& weights, const at::Tensor& inv_degree, const at::Tensor& x,
                       const at::Tensor& tmp, at::IntArrayRef offsets, int64_t num_steps) {
  const RwParams p = check_rw_propagate(weights, inv_degree, x, tmp, offsets, num_steps);
  TORCH_CHECK(x.is_cuda(), "wsss ops: rw_propagate_cuda needs CUDA tensors");
  const c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "wsss_rw_propagate_cuda", [&] {
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* inv = inv_degree.data_ptr<scalar_t>();
    scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = tmp.data_ptr<scalar_t>();
    for (int64_t step = 0; step < num_steps; ++step) {
      C10_CUDA_CHECK(launch_rw_step<scalar_t>(w, inv, src, dst, x.size(0), static_cast<int>(x.size(1)),
                                              static_cast<int>(x.size(2)), static_cast<int>(x.size(3)), p,
                                              stream));
      std::swap(src, dst);
    }
  });
  if (num_steps % 2 == 1) x.copy_(tmp);  // the last step wrote into tmp (same stream, stays async)
}

}  // namespace wsss
