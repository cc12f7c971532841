/* LeNet's layer shapes through CMSIS-NN's int8 kernels, for scripts/cmsis-nn-compare.sh.

   conv 1->6 5x5 pad 2 on 28x28 (arm_convolve_s8), 2x2 max pooling (arm_max_pool_s8),
   conv 6->16 5x5 on 14x14, pooling, then fully connected 400->120, 120->84, 84->10
   (arm_fully_connected_s8); ReLU is each layer's activation clamp [0, 127], as in tinycnn's
   int8 LeNet. Tensors are NHWC and filters OHWI, CMSIS-NN's layout. The data are
   pseudo-random (a fixed xorshift sequence): the kernels' timing does not depend on the
   values, and the point is cycles, not accuracy. Zero points are 0 (tinycnn's symmetric
   scheme); convolutions are requantized per output channel, the fully connected layers
   per tensor (arm_fully_connected_s8's interface).

   Each inference runs between cycles_mark_inference_begin/_end, and each layer is a call of
   one CMSIS-NN function, so scripts/mcu-cycles.py --split cuts the inference into layers. The
   validation loop is the Rust firmware's (same instructions), so the estimator checks itself
   on this ELF too. */
#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"

void semihost_write(const char *s);

#define INFERENCES 2

static uint32_t rng = 0x2545F491u;
static int8_t next_i8(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (int8_t)(rng >> 24);
}

static void fill_i8(int8_t *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = next_i8();
}

static void fill_bias(int32_t *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (int32_t)next_i8() * 64;
}

static void fill_quant(int32_t *mult, int32_t *shift, int n, int32_t s)
{
    for (int i = 0; i < n; i++) {
        mult[i] = 0x40000000 + ((int32_t)(uint8_t)next_i8() << 22);
        shift[i] = s;
    }
}

static int8_t input[28 * 28];
static int8_t w1[6 * 5 * 5 * 1], w2[16 * 5 * 5 * 6], w3[120 * 400], w4[84 * 120], w5[10 * 84];
static int32_t b1[6], b2[16], b3[120], b4[84], b5[10];
static int32_t m1[6], s1[6], m2[16], s2[16];
static int8_t act_a[28 * 28 * 6], act_b[14 * 14 * 6];
static int8_t out[10];
static int16_t scratch[2048];

__attribute__((noinline)) void cycles_mark_inference_begin(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void cycles_mark_inference_end(void) { __asm__ volatile("nop\n nop"); }
__attribute__((noinline)) void cycles_mark_loop_begin(void) { __asm__ volatile("nop\n nop\n nop"); }
__attribute__((noinline)) void cycles_mark_loop_end(void) { __asm__ volatile("nop\n nop\n nop\n nop"); }

/* The TRM-timed loop of crates/mcu/src/main.rs (1 + N (8 + P) - P cycles). */
__attribute__((noinline)) void validation_loop(void)
{
    volatile uint32_t buf[3] = {3, 5, 0};
    uint32_t n, a, b, acc = 0, acc2 = 0;
    __asm__ volatile("mov %[n], %[count]\n"
                     "1:\n"
                     "ldr %[a], [%[p]]\n"
                     "ldr %[b], [%[p], #4]\n"
                     "smlad %[acc], %[a], %[b], %[acc]\n"
                     "mla %[acc2], %[a], %[b], %[acc2]\n"
                     "str %[acc], [%[p], #8]\n"
                     "subs %[n], %[n], #1\n"
                     "bne 1b\n"
                     : [n] "=&r"(n), [a] "=&r"(a), [b] "=&r"(b), [acc] "+r"(acc), [acc2] "+r"(acc2)
                     : [count] "r"(1000u), [p] "r"(buf)
                     : "cc", "memory");
}

static int conv(const cmsis_nn_dims *in_d, const int8_t *in, const cmsis_nn_dims *f_d, const int8_t *w,
                const int32_t *b, int32_t *mult, int32_t *shift, int pad, const cmsis_nn_dims *out_d,
                int8_t *o)
{
    cmsis_nn_context ctx = {scratch, sizeof scratch};
    if (arm_convolve_s8_get_buffer_size(in_d, f_d) > (int32_t)sizeof scratch)
        return -1;
    cmsis_nn_conv_params p = {0};
    p.stride.w = p.stride.h = 1;
    p.padding.w = p.padding.h = pad;
    p.dilation.w = p.dilation.h = 1;
    p.activation.min = 0;
    p.activation.max = 127;
    cmsis_nn_per_channel_quant_params q = {mult, shift};
    cmsis_nn_dims bias_d = {1, 1, 1, f_d->n}, up = {0};
    return arm_convolve_s8(&ctx, &p, &q, in_d, in, f_d, w, &bias_d, b, &up, out_d, o);
}

static int pool(int h, int w, int c, const int8_t *in, int8_t *o)
{
    cmsis_nn_context ctx = {0};
    cmsis_nn_pool_params p = {{2, 2}, {0, 0}, {-128, 127}};
    cmsis_nn_dims in_d = {1, h, w, c}, f_d = {1, 2, 2, 1}, out_d = {1, h / 2, w / 2, c};
    return arm_max_pool_s8(&ctx, &p, &in_d, in, &f_d, &out_d, o);
}

static int fc(int n_in, int n_out, const int8_t *in, const int8_t *w, const int32_t *b, int relu, int8_t *o)
{
    cmsis_nn_context ctx = {scratch, sizeof scratch};
    cmsis_nn_fc_params p = {0};
    p.activation.min = relu ? 0 : -128;
    p.activation.max = 127;
    cmsis_nn_per_tensor_quant_params q = {0x5A000000, -8};
    cmsis_nn_dims in_d = {1, 1, 1, n_in}, f_d = {n_in, 1, 1, n_out}, bias_d = {1, 1, 1, n_out},
                  out_d = {1, 1, 1, n_out};
    return arm_fully_connected_s8(&ctx, &p, &q, &in_d, in, &f_d, w, &bias_d, b, &out_d, o);
}

static int inference(void)
{
    cmsis_nn_dims in1 = {1, 28, 28, 1}, f1 = {6, 5, 5, 1}, o1 = {1, 28, 28, 6};
    cmsis_nn_dims in2 = {1, 14, 14, 6}, f2 = {16, 5, 5, 6}, o2 = {1, 10, 10, 16};
    int st = 0;
    st |= conv(&in1, input, &f1, w1, b1, m1, s1, 2, &o1, act_a);
    st |= pool(28, 28, 6, act_a, act_b);
    st |= conv(&in2, act_b, &f2, w2, b2, m2, s2, 0, &o2, act_a);
    st |= pool(10, 10, 16, act_a, act_b);
    st |= fc(400, 120, act_b, w3, b3, 1, act_a);
    st |= fc(120, 84, act_a, w4, b4, 1, act_b);
    st |= fc(84, 10, act_b, w5, b5, 0, out);
    return st;
}

static void put_hex(uint32_t v)
{
    char s[10];
    for (int i = 0; i < 8; i++)
        s[i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 15];
    s[8] = ' ';
    s[9] = 0;
    semihost_write(s);
}

int main(void)
{
    fill_i8(input, sizeof input);
    for (unsigned i = 0; i < sizeof input; i++)
        input[i] = (int8_t)((uint8_t)input[i] >> 1); /* pixel/255 at scale 1/127: 0..127 */
    fill_i8(w1, sizeof w1);
    fill_i8(w2, sizeof w2);
    fill_i8(w3, sizeof w3);
    fill_i8(w4, sizeof w4);
    fill_i8(w5, sizeof w5);
    fill_bias(b1, 6);
    fill_bias(b2, 16);
    fill_bias(b3, 120);
    fill_bias(b4, 84);
    fill_bias(b5, 10);
    fill_quant(m1, s1, 6, -6);
    fill_quant(m2, s2, 16, -9);
    semihost_write("model lenet-relu-shapes int8 cmsis-nn\n");
    int st = 0;
    for (int i = 0; i < INFERENCES; i++) {
        cycles_mark_inference_begin();
        st |= inference();
        cycles_mark_inference_end();
        semihost_write("logits ");
        for (int c = 0; c < 10; c++)
            put_hex((uint32_t)(int32_t)out[c]);
        semihost_write("\n");
    }
    cycles_mark_loop_begin();
    validation_loop();
    cycles_mark_loop_end();
    semihost_write("validation loop iterations 1000\n");
    if (st != 0) {
        semihost_write("error: a CMSIS-NN call failed\n");
        return 1;
    }
    semihost_write("done\n");
    return 0;
}
