// Operator registration (torch.ops.wsss_ops.*), detectron2's vision.cpp in TORCH_LIBRARY form: one
// schema per op, a CPU implementation, and a CUDA one when built with WSSS_WITH_CUDA. The dispatcher
// picks the implementation from the tensors' device. No pybind11: the library is loaded with
// torch.ops.load_library, which keeps the build to a few seconds.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "ops.h"

namespace {
// Whether this build carries the CUDA kernels (the Python side checks it before using them).
bool has_cuda() {
#ifdef WSSS_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

TORCH_LIBRARY(wsss_ops, m) {
  m.def("par_weights(Tensor image, Tensor(a!) weights, int[] dilations, float w1, float w2) -> ()");
  m.def("par_propagate(Tensor weights, Tensor(a!) x, Tensor(b!) tmp, int[] dilations, int num_iter) -> ()");
  m.def("rw_prepare(Tensor affinity, Tensor(a!) weights, Tensor(b!) inv_degree, int[] offsets, float beta) -> ()");
  m.def("rw_propagate(Tensor weights, Tensor inv_degree, Tensor(a!) x, Tensor(b!) tmp, int[] offsets, "
        "int num_steps) -> ()");
  m.def("has_cuda() -> bool", &has_cuda);
}

TORCH_LIBRARY_IMPL(wsss_ops, CPU, m) {
  m.impl("par_weights", &wsss::par_weights_cpu);
  m.impl("par_propagate", &wsss::par_propagate_cpu);
  m.impl("rw_prepare", &wsss::rw_prepare_cpu);
  m.impl("rw_propagate", &wsss::rw_propagate_cpu);
}

#ifdef WSSS_WITH_CUDA
TORCH_LIBRARY_IMPL(wsss_ops, CUDA, m) {
  m.impl("par_weights", &wsss::par_weights_cuda);
  m.impl("par_propagate", &wsss::par_propagate_cuda);
  m.impl("rw_prepare", &wsss::rw_prepare_cuda);
  m.impl("rw_propagate", &wsss::rw_propagate_cuda);
}
#endif
