// A tiny host emulation of the CUDA features the tinycnn kernels use, so the kernels run on
// a machine without a GPU: by kernels-cuda/emu/check.cpp (scripts/gen-ptx.sh --emulate) and
// by tinycnn-cuda's emulated device (feature `emu`, kernels-cuda/emu/entries.cpp).
//
// Blocks run one after another on the calling OS thread. The threads of a block are fibers
// sharing that OS thread: __syncthreads and the warp shuffles switch to a small
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
#include <cstdint>
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

// Context switch between fibers. glibc's swapcontext also saves the signal mask with a
// system call at every switch, which dominated the emulator's time; on x86-64 a hand-written
// switch saves only what the ABI says a call preserves (callee-saved registers, MXCSR and
// the x87 control word). Elsewhere ucontext is used.
#if defined(__x86_64__) && !defined(TINYCNN_EMU_UCONTEXT)
#define TINYCNN_EMU_ASM_SWITCH 1
extern "C" void tinycnn_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl tinycnn_emu_switch
    .weak tinycnn_emu_switch
    .type tinycnn_emu_switch, @function
tinycnn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size tinycnn_emu_switch, .-tinycnn_emu_switch
)");
#endif

namespace emu {

enum class Wait : unsigned char { Runnable, Warp, Block, Done };

// Stack of one emulated thread. The kernels keep little on the stack (register tiles of at
// most 4 x 4 floats); 64 KiB leaves room for unoptimised builds.
constexpr size_t FIBER_STACK = 64 * 1024;

struct Scheduler {
#ifdef TINYCNN_EMU_ASM_SWITCH
    void* main_sp = nullptr;
    std::vector<void*> sp;  // saved stack pointer of each fiber
#else
    ucontext_t main;
    std::vector<ucontext_t> ctx;
#endif
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
// Owns tl_sched: the fiber stacks (16 MiB for 256 threads) go when the OS thread ends,
// which matters under cargo test's thread per test.
inline thread_local std::unique_ptr<Scheduler> tl_sched_owner;

inline Scheduler& sched() {
    if (!tl_sched) {
        tl_sched_owner = std::make_unique<Scheduler>();
        tl_sched = tl_sched_owner.get();
    }
    return *tl_sched;
}

[[noreturn]] inline void die(const char* what) {
    std::fprintf(stderr, "cuda_emu: kernel %s: %s\n", tl_sched ? tl_sched->kernel : "?", what);
    std::abort();
}

inline void to_scheduler(Scheduler& s, unsigned me) {
#ifdef TINYCNN_EMU_ASM_SWITCH
    tinycnn_emu_switch(&s.sp[me], s.main_sp);
#else
    swapcontext(&s.ctx[me], &s.main);
#endif
}

inline void yield(Wait w) {
    Scheduler& s = *tl_sched;
    if (s.serial) die("synchronises (__syncthreads or a warp shuffle) but was launched serial");
    const unsigned me = s.cur;
    s.wait[me] = w;
    to_scheduler(s, me);
}

inline void fiber_main() {
    Scheduler& s = *tl_sched;
    s.body(s.body_arg);
    s.wait[s.cur] = Wait::Done;
#ifdef TINYCNN_EMU_ASM_SWITCH
    to_scheduler(s, s.cur);  // never resumed: the scheduler re-creates the fiber
    std::abort();
#endif
    // ucontext: returning resumes uc_link, the scheduler.
}

// Prepares fiber `t` to start at fiber_main on its own stack.
inline void make_fiber(Scheduler& s, unsigned t) {
#ifdef TINYCNN_EMU_ASM_SWITCH
    // The frame tinycnn_emu_switch pops: control words, six registers, return address.
    // After its `ret`, rsp must be 8 mod 16, as on entry to any function.
    auto top = reinterpret_cast<uintptr_t>(s.stacks[t].get() + FIBER_STACK) & ~uintptr_t(15);
    auto* frame = reinterpret_cast<uint64_t*>(top) - 9;
    uint32_t csr;
    uint16_t cw;
    asm volatile("stmxcsr %0" : "=m"(csr));
    asm volatile("fnstcw %0" : "=m"(cw));
    frame[0] = uint64_t(csr) | (uint64_t(cw) << 32);
    for (int r = 1; r <= 6; ++r) frame[r] = 0;
    frame[7] = reinterpret_cast<uint64_t>(&fiber_main);
    frame[8] = 0;  // fake return address of fiber_main, never used
    s.sp[t] = frame;
#else
    getcontext(&s.ctx[t]);
    s.ctx[t].uc_stack.ss_sp = s.stacks[t].get();
    s.ctx[t].uc_stack.ss_size = FIBER_STACK;
    s.ctx[t].uc_link = &s.main;
    makecontext(&s.ctx[t], fiber_main, 0);
#endif
}

inline void resume(Scheduler& s, unsigned t) {
#ifdef TINYCNN_EMU_ASM_SWITCH
    tinycnn_emu_switch(&s.main_sp, s.sp[t]);
#else
    swapcontext(&s.main, &s.ctx[t]);
#endif
}

// Runs one block of `threads` fibers until every thread has returned.
inline void run_block_fibers(Scheduler& s, unsigned threads) {
    if (s.stacks.size() < threads) {
        s.stacks.resize(threads);
#ifdef TINYCNN_EMU_ASM_SWITCH
        s.sp.resize(threads);
#else
        s.ctx.resize(threads);
#endif
    }
    s.wait.assign(threads, Wait::Runnable);
    s.shfl.assign(threads, 0);
    for (unsigned t = 0; t < threads; ++t) {
        if (!s.stacks[t]) s.stacks[t].reset(new char[FIBER_STACK]);
        make_fiber(s, t);
    }
    const unsigned warps = (threads + 31) / 32;
    for (;;) {
        for (unsigned t = 0; t < threads; ++t) {
            if (s.wait[t] != Wait::Runnable) continue;
            s.cur = t;
            threadIdx = dim3{t, 0, 0};
            resume(s, t);
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
