"""Local-affinity ops with a PyTorch reference, a C++ CPU twin and CUDA kernels.

- :func:`par`: pixel-adaptive refinement of masks with image-colour affinities over dilated 8-neighbourhoods
  (AFA / ToCo's PAR).
- :func:`random_walk`: t steps of a random walk whose transition is a learned local affinity within a radius
  (AffinityNet / IRN), without the hw x hw matrix; :func:`radius_offsets` gives IRN's offsets.

Backends (``WSSS_OPS=auto|torch|cuda|cpp`` or ``backend=``): see :mod:`wsss.ops.backend`; the self-check of
each CUDA kernel before its first use: :mod:`wsss.ops.selfcheck`. Formulas, parity tests and benchmark:
docs/ops.md.
"""

from wsss.ops.backend import resolve_backend
from wsss.ops.extension import ExtensionBuildError, load_extension
from wsss.ops.par_op import par
from wsss.ops.par_ref import par_affinity_reference, par_neighbor_offsets, par_reference
from wsss.ops.random_walk_op import random_walk
from wsss.ops.random_walk_ref import radius_offsets, random_walk_dense, random_walk_reference, transition_matrix_dense
from wsss.ops.selfcheck import KernelSelfCheckError

__all__ = ["par", "random_walk", "radius_offsets", "par_reference", "par_affinity_reference",
           "par_neighbor_offsets", "random_walk_reference", "random_walk_dense", "transition_matrix_dense",
           "resolve_backend", "load_extension", "ExtensionBuildError", "KernelSelfCheckError"]
