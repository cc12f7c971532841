// The kernels of kernels-cuda/*.cu compiled for the host (cuda_emu.h), with one extern "C"
// entry per kernel for tinycnn-cuda's emulated device (crates/cuda, feature `emu`).
//
// An entry takes the launch shape and the kernel's arguments the way cuLaunchKernel does:
// an array of pointers to the argument values. The Rust kernel table passes the size of each
// value too, and the entry compares them with the kernel's C signature (deduced here from the
// kernel itself), so a table that drifts from a .cu file fails its launch instead of passing
// garbage.
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cuda_emu.h"
#include "../gemm.cu"
#include "../conv.cu"
#include "../pool.cu"
#include "../elementwise.cu"
#include "../loss.cu"
#include "../norm.cu"

struct EmuLaunch {
    unsigned grid[3];
    unsigned block[3];
};

// Status codes, decoded by crates/cuda/src/emu.rs.
enum : int { EMU_OK = 0, EMU_BAD_ARITY = 1000, EMU_BAD_BLOCK = 1001, EMU_BAD_SIZE = 2000 };

typedef int (*EmuEntry)(const EmuLaunch*, void* const*, unsigned, const unsigned*);

namespace {

template <class... A, size_t... I>
void call(void (*kernel)(A...), void* const* args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <class... A>
int run(const char* name, bool serial, void (*kernel)(A...), const EmuLaunch* l, void* const* args, unsigned nargs,
        const unsigned* sizes) {
    if (nargs != sizeof...(A)) return EMU_BAD_ARITY;
    const unsigned want[] = {(unsigned)sizeof(A)...};
    for (unsigned i = 0; i < nargs; ++i)
        if (sizes[i] != want[i]) return EMU_BAD_SIZE + (int)i;
    if (l->block[1] != 1 || l->block[2] != 1 || l->block[0] == 0) return EMU_BAD_BLOCK;
    emu_launch(dim3{l->grid[0], l->grid[1], l->grid[2]}, l->block[0],
               [&] { call(kernel, args, std::index_sequence_for<A...>{}); }, serial, name);
    return EMU_OK;
}

struct Entry {
    const char* name;
    EmuEntry entry;
};

}  // namespace

// SERIAL: the kernel has no __syncthreads and no shuffle (checked at run time: a serial
// kernel that synchronises aborts). FIBERS: it does.
#define SERIAL true
#define FIBERS false
#define EMU_KERNEL(NAME, MODE)                                                                          \
    extern "C" int tinycnn_emu_##NAME(const EmuLaunch* l, void* const* a, unsigned n, const unsigned* s) { \
        return run(#NAME, MODE, &NAME, l, a, n, s);                                                     \
    }
#define EMU_KERNELS(X)                   \
    X(sgemm_nn, FIBERS)                  \
    X(sgemm_nt, FIBERS)                  \
    X(sgemm_tn, FIBERS)                  \
    X(sgemm_tt, FIBERS)                  \
    X(conv2d_forward_t64, FIBERS)        \
    X(conv2d_forward_t16, FIBERS)        \
    X(conv2d_backward_input_t64, FIBERS) \
    X(conv2d_backward_input_t16, FIBERS) \
    X(conv2d_backward_weight_t64, FIBERS) \
    X(conv2d_backward_weight_t16, FIBERS) \
    X(sum_splits, SERIAL)                \
    X(max_pool2d_forward, SERIAL)        \
    X(max_pool2d_backward, SERIAL)       \
    X(avg_pool2d_forward, SERIAL)        \
    X(avg_pool2d_backward, SERIAL)       \
    X(adaptive_avg_pool2d_forward, SERIAL) \
    X(adaptive_avg_pool2d_backward, SERIAL) \
    X(relu_forward, SERIAL)              \
    X(relu_backward, SERIAL)             \
    X(relu6_forward, SERIAL)             \
    X(relu6_backward, SERIAL)            \
    X(sigmoid_forward, SERIAL)           \
    X(sigmoid_backward, SERIAL)          \
    X(tanh_forward, SERIAL)              \
    X(tanh_backward, SERIAL)             \
    X(bias_add, SERIAL)                  \
    X(bias_backward, FIBERS)             \
    X(sgd_step, SERIAL)                  \
    X(adam_step, SERIAL)                 \
    X(gather_batch, SERIAL)              \
    X(augment_batch, SERIAL)             \
    X(add_inplace, SERIAL)               \
    X(axpby, SERIAL)                     \
    X(scale, SERIAL)                     \
    X(fill, SERIAL)                      \
    X(mul, SERIAL)                       \
    X(softmax_forward, FIBERS)           \
    X(log_softmax_forward, FIBERS)       \
    X(softmax_xent_forward, FIBERS)      \
    X(softmax_xent_backward, FIBERS)     \
    X(argmax_rows, FIBERS)               \
    X(correct_rows, FIBERS)              \
    X(reduce_sum, FIBERS)                \
    X(batch_norm_stats, FIBERS)          \
    X(batch_norm_forward, SERIAL)        \
    X(batch_norm_backward_reduce, FIBERS) \
    X(batch_norm_backward_input, SERIAL)

EMU_KERNELS(EMU_KERNEL)

#define EMU_TABLE_ROW(NAME, MODE) {#NAME, &tinycnn_emu_##NAME},

// The entry of kernel `name` (`len` bytes, not NUL-terminated), or null: the emulated device
// looks every kernel up once at creation, as the real one loads them from the PTX.
extern "C" EmuEntry tinycnn_emu_find(const char* name, size_t len) {
    static const Entry table[] = {EMU_KERNELS(EMU_TABLE_ROW)};
    for (const Entry& e : table)
        if (std::strlen(e.name) == len && std::memcmp(e.name, name, len) == 0) return e.entry;
    return nullptr;
}
