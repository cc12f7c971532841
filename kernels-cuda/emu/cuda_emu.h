// A tiny host emulation of the CUDA features the tinycnn kernels use, so the kernels'
// index arithmetic can be checked on a machine without a GPU: each block runs as
// blockDim.x std::threads, __syncthreads is a std::barrier, warp shuffles go through a
// per-warp buffer and barrier, __shared__ becomes `static` (blocks run one at a time).
// Correctness only; nothing about speed carries over. See check.cpp.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct BlockSync {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<unsigned> buf;  // one 32-bit slot per thread
};
inline thread_local BlockSync* tl_sync = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
using std::max;
using std::min;

inline void __syncthreads() { tl_sync->block->arrive_and_wait(); }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

template <class T>
T emu_shfl(T v, int src_of_lane(int lane, int arg), int arg) {
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    unsigned bits;
    std::memcpy(&bits, &v, 4);
    tl_sync->buf[t] = bits;
    tl_sync->warps[warp]->arrive_and_wait();
    bits = tl_sync->buf[warp * 32 + src_of_lane(lane, arg)];
    tl_sync->warps[warp]->arrive_and_wait();
    T r;
    std::memcpy(&r, &bits, 4);
    return r;
}
inline int emu_xor(int lane, int m) { return lane ^ m; }
inline int emu_down(int lane, int d) { return lane + d < 32 ? lane + d : lane; }
template <class T>
T __shfl_xor_sync(unsigned, T v, int m) { return emu_shfl<T>(v, emu_xor, m); }
template <class T>
T __shfl_down_sync(unsigned, T v, int d) { return emu_shfl<T>(v, emu_down, d); }

// Runs `kernel` over `grid` blocks of `threads` threads (1-D blocks, a multiple of 32).
template <class F>
void emu_launch(dim3 grid, unsigned threads, F kernel) {
    gridDim = grid;
    blockDim = dim3{threads, 1, 1};
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                BlockSync sync;
                sync.block = std::make_unique<std::barrier<>>(threads);
                for (unsigned w = 0; w < threads / 32; ++w) sync.warps.push_back(std::make_unique<std::barrier<>>(32));
                sync.buf.assign(threads, 0);
                std::vector<std::thread> pool;
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t] {
                        threadIdx = dim3{t, 0, 0};
                        blockIdx = dim3{x, y, z};
                        tl_sync = &sync;
                        kernel();
                    });
                for (auto& th : pool) th.join();
            }
}
