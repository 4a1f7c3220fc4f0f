// Launch helpers shared by the CUDA kernels of wsss ops.
#pragma once

#include <algorithm>
#include <cstdint>

namespace wsss {

constexpr int kThreadsPerBlock = 256;
// Propagation kernels run on 2D tiles of 32 x 8 pixels (one warp per tile row): the horizontal neighbours
// of a warp and the vertical ones at small dilations / radii are then loaded by the same block, so many
// neighbour reads hit L1 instead of L2.
constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int64_t kMaxGridYZ = 65535;
// Enough threads to fill an H100 (132 SMs x 2048 threads) about once; below this many pixels the
// propagation kernels split the channels over threads as well.
constexpr int64_t kTargetThreads = int64_t(1) << 18;

// Grid-stride loops cover whatever a capped grid does not.
inline unsigned int blocks_for(int64_t items) {
  const int64_t blocks = (items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 30)));
}

// Channels per thread for a propagation launch over `pixels` pixels and `channels` channels: all of them
// when the pixels alone fill the GPU (weights are then read once per pixel), otherwise chunks of `chunk`
// channels so that small grids (IRN's 128 x 128 feature map) still launch enough threads.
inline int channels_per_thread(int64_t pixels, int64_t channels, int chunk) {
  const int64_t chunks = (channels + chunk - 1) / chunk;
  const int64_t want_groups = std::max<int64_t>(1, (kTargetThreads + pixels - 1) / std::max<int64_t>(pixels, 1));
  const int64_t groups = std::min<int64_t>(chunks, want_groups);
  const int64_t chunks_per_group = (chunks + groups - 1) / groups;
  return static_cast<int>(std::max<int64_t>(1, chunks_per_group * chunk));
}

// Grid of a 2D-tiled launch: x over tile columns, y over tile rows, z over (batch item, channel group).
// Returns false when the image is too tall for one launch (more than 65535 * 8 rows).
inline bool tiled_grid(int height, int width, int64_t batch_groups, dim3* grid) {
  const int64_t tiles_y = (height + kTileH - 1) / kTileH;
  if (tiles_y > kMaxGridYZ || batch_groups > kMaxGridYZ) return false;
  *grid = dim3(static_cast<unsigned int>((width + kTileW - 1) / kTileW), static_cast<unsigned int>(tiles_y),
               static_cast<unsigned int>(batch_groups));
  return true;
}

}  // namespace wsss
