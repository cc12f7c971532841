// A tiny host emulation of the CUDA features the tinycnn kernels use, so the kernels run on
// a machine without a GPU: by kernels-cuda/emu/check.cpp (scripts/gen-ptx.sh --emulate) and
// by tinycnn-cuda's emulated device (feature `emu`, kernels-cuda/emu/entries.cpp).
//
// Blocks run one after another on the calling OS thread. The threads of a block are fibers
// (ucontext) sharing that OS thread: __syncthreads and the warp shuffles switch to a small
// scheduler that resumes a warp once all its live lanes wait at a shuffle and the block once
// all its live threads wait at the barrier. A context switch costs far less than waking 256
// OS threads at every barrier, which is what made the first version (one std::thread per
// CUDA thread) too slow for more than a handful of launches.
//
// Kernels with neither barriers nor shuffles can run `serial`: each thread of a block runs to
// completion in turn on the caller's stack, with no context switch at all. A serial launch of
// a kernel that does synchronise aborts with a message instead of computing garbage.
//
// Everything the emulation keeps (gridDim, blockDim, the scheduler, __shared__ arrays) is
// thread_local, so different OS threads (cargo's test threads) run launches independently.
// Correctness only; nothing about speed carries over.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static thread_local
using std::max;
using std::min;

namespace emu {

enum class Wait : unsigned char { Runnable, Warp, Block, Done };

// Stack of one emulated thread. The kernels keep little on the stack (register tiles of at
// most 4 x 4 floats); 64 KiB leaves room for unoptimised builds.
constexpr size_t FIBER_STACK = 64 * 1024;

struct Scheduler {
    ucontext_t main;
    std::vector<ucontext_t> ctx;
    std::vector<Wait> wait;
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<unsigned> shfl;  // one 32-bit slot per thread for shuffles
    unsigned cur = 0;
    bool serial = false;
    const char* kernel = "?";
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
};
inline thread_local Scheduler* tl_sched = nullptr;

inline Scheduler& sched() {
    if (!tl_sched) tl_sched = new Scheduler();  // one per OS thread, kept for its lifetime
    return *tl_sched;
}

[[noreturn]] inline void die(const char* what) {
    std::fprintf(stderr, "cuda_emu: kernel %s: %s\n", tl_sched ? tl_sched->kernel : "?", what);
    std::abort();
}

inline void yield(Wait w) {
    Scheduler& s = *tl_sched;
    if (s.serial) die("synchronises (__syncthreads or a warp shuffle) but was launched serial");
    const unsigned me = s.cur;
    s.wait[me] = w;
    swapcontext(&s.ctx[me], &s.main);
}

inline void fiber_main() {
    Scheduler& s = *tl_sched;
    s.body(s.body_arg);
    s.wait[s.cur] = Wait::Done;
    // Returning resumes uc_link, the scheduler.
}

// Runs one block of `threads` fibers until every thread has returned.
inline void run_block_fibers(Scheduler& s, unsigned threads) {
    if (s.stacks.size() < threads) {
        s.stacks.resize(threads);
        s.ctx.resize(threads);
    }
    s.wait.assign(threads, Wait::Runnable);
    s.shfl.assign(threads, 0);
    for (unsigned t = 0; t < threads; ++t) {
        if (!s.stacks[t]) s.stacks[t].reset(new char[FIBER_STACK]);
        getcontext(&s.ctx[t]);
        s.ctx[t].uc_stack.ss_sp = s.stacks[t].get();
        s.ctx[t].uc_stack.ss_size = FIBER_STACK;
        s.ctx[t].uc_link = &s.main;
        makecontext(&s.ctx[t], fiber_main, 0);
    }
    const unsigned warps = (threads + 31) / 32;
    for (;;) {
        for (unsigned t = 0; t < threads; ++t) {
            if (s.wait[t] != Wait::Runnable) continue;
            s.cur = t;
            threadIdx = dim3{t, 0, 0};
            swapcontext(&s.main, &s.ctx[t]);
        }
        // Every thread now waits or is done: release what can go on.
        bool released = false, live = false, all_at_block = true;
        for (unsigned w = 0; w < warps; ++w) {
            const unsigned lo = w * 32, hi = std::min(threads, lo + 32);
            bool warp_live = false, warp_ready = true;
            for (unsigned t = lo; t < hi; ++t) {
                if (s.wait[t] == Wait::Done) continue;
                warp_live = true;
                if (s.wait[t] != Wait::Warp) warp_ready = false;
                if (s.wait[t] != Wait::Block) all_at_block = false;
            }
            live |= warp_live;
            if (warp_live && warp_ready) {
                for (unsigned t = lo; t < hi; ++t)
                    if (s.wait[t] == Wait::Warp) s.wait[t] = Wait::Runnable;
                released = true;
            }
        }
        if (!live) return;
        if (released) continue;
        if (!all_at_block) die("threads of a block wait at different barriers (divergent __syncthreads)");
        for (unsigned t = 0; t < threads; ++t)
            if (s.wait[t] == Wait::Block) s.wait[t] = Wait::Runnable;
    }
}

template <class F>
void trampoline(void* f) {
    (*static_cast<F*>(f))();
}

}  // namespace emu

inline void __syncthreads() { emu::yield(emu::Wait::Block); }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

template <class T>
T emu_shfl(T v, int src_of_lane(int lane, int arg), int arg) {
    static_assert(sizeof(T) == 4, "shuffles move 32-bit values");
    emu::Scheduler& s = *emu::tl_sched;
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    unsigned bits;
    std::memcpy(&bits, &v, 4);
    s.shfl[t] = bits;
    emu::yield(emu::Wait::Warp);  // every lane has written its value
    bits = s.shfl[warp * 32 + src_of_lane(lane, arg)];
    emu::yield(emu::Wait::Warp);  // every lane has read before the slots are reused
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

// Runs `kernel` (a callable running one CUDA thread's body) over `grid` blocks of `threads`
// threads (1-D blocks). `serial`: the kernel neither syncs nor shuffles (checked).
template <class F>
void emu_launch(dim3 grid, unsigned threads, F kernel, bool serial = false, const char* name = "?") {
    emu::Scheduler& s = emu::sched();
    s.kernel = name;
    s.serial = serial;
    s.body = &emu::trampoline<F>;
    s.body_arg = &kernel;
    gridDim = grid;
    blockDim = dim3{threads, 1, 1};
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3{x, y, z};
                if (serial) {
                    for (unsigned t = 0; t < threads; ++t) {
                        threadIdx = dim3{t, 0, 0};
                        kernel();
                    }
                } else {
                    emu::run_block_fibers(s, threads);
                }
            }
}
