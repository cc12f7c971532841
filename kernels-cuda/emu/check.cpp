// Checks the kernels of kernels-cuda/*.cu on the host through cuda_emu.h against naive
// loops written from tinycnn_kernels::reference (the same definitions the GPU tests use).
// No GPU needed:
//   g++ -std=c++20 -O1 kernels-cuda/emu/check.cpp -o /tmp/check && /tmp/check
// Grids mirror crates/cuda/src/launch.rs. Exit status 1 on any mismatch.
#include <cstdio>
#include <cstdint>
#include <random>
#include <string>

#include "cuda_emu.h"
#include "../gemm.cu"
#include "../conv.cu"
#include "../pool.cu"
#include "../elementwise.cu"
#include "../loss.cu"

static int failures = 0;
static std::mt19937 rng(7);
static std::vector<float> rnd(size_t n) {
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
static void check(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-4f) {
    float scale = 1e-6f, diff = 0.0f;
    for (size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, std::fabs(want[i]));
        if (std::isnan(got[i]) != std::isnan(want[i])) diff = INFINITY;
        else if (!std::isnan(want[i])) diff = std::max(diff, std::fabs(got[i] - want[i]));
    }
    const bool ok = diff / scale < tol;
    if (!ok) ++failures;
    std::printf("%-4s %-60s rel err %.2e\n", ok ? "ok" : "FAIL", what.c_str(), diff / scale);
}
static unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

static void test_sgemm() {
    for (auto [m, n, k] : {std::tuple{7, 5, 3}, {65, 130, 33}, {64, 64, 16}}) {
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb) {
                const int pad = 2;
                const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                auto a = rnd((size_t)(ta ? k : m) * lda), b = rnd((size_t)(tb ? n : k) * ldb), c = rnd((size_t)m * ldc);
                const float alpha = 0.5f, beta = -1.5f;
                auto want = c;
                for (int i = 0; i < m; ++i)
                    for (int j = 0; j < n; ++j) {
                        float acc = 0;
                        for (int p = 0; p < k; ++p) acc += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
                        want[i * ldc + j] = alpha * acc + beta * c[i * ldc + j];
                    }
                auto got = c;
                auto f = ta ? (tb ? sgemm_tt : sgemm_tn) : (tb ? sgemm_nt : sgemm_nn);
                emu_launch(dim3{cdiv(n, 64), cdiv(m, 64), 1}, 256, [&] { f(m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, got.data(), ldc); });
                check("sgemm " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " ta" + std::to_string(ta) + " tb" + std::to_string(tb), got, want);
            }
    }
}

static int outsz(int in, int k, int s, int p, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

static void test_conv() {
    struct Case { int batch, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups; };
    for (Case c : {Case{2, 1, 8, 8, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1}, Case{3, 4, 11, 9, 6, 3, 2, 2, 1, 1, 0, 2, 3, 2},
                   Case{2, 8, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8}, Case{2, 3, 12, 13, 70, 3, 3, 3, 2, 0, 0, 2, 2, 1}}) {
        ConvGeom g{c.batch, c.cin, c.h, c.w, c.cout, outsz(c.h, c.kh, c.sh, c.ph, c.dh), outsz(c.w, c.kw, c.sw, c.pw, c.dw),
                   c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.groups, c.cin / c.groups, c.cout / c.groups};
        const size_t xl = (size_t)g.batch * g.cin * g.h * g.w, wl = (size_t)g.cout * g.cin_g * g.kh * g.kw,
                     yl = (size_t)g.batch * g.cout * g.oh * g.ow;
        auto x = rnd(xl), w = rnd(wl), bias = rnd(g.cout), gy = rnd(yl);
        std::vector<float> y_ref(yl), gx_ref(xl, 0.0f), gw_ref(wl, 0.0f);
        for (int n = 0; n < g.batch; ++n)
            for (int oc = 0; oc < g.cout; ++oc) {
                const int grp = oc / g.cout_g;
                for (int oy = 0; oy < g.oh; ++oy)
                    for (int ox = 0; ox < g.ow; ++ox) {
                        const size_t yi = (((size_t)n * g.cout + oc) * g.oh + oy) * g.ow + ox;
                        float acc = bias[oc];
                        for (int ic = 0; ic < g.cin_g; ++ic)
                            for (int ky = 0; ky < g.kh; ++ky)
                                for (int kx = 0; kx < g.kw; ++kx) {
                                    const int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
                                    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                                    const size_t xi = (((size_t)n * g.cin + grp * g.cin_g + ic) * g.h + iy) * g.w + ix;
                                    const size_t wi = (((size_t)oc * g.cin_g + ic) * g.kh + ky) * g.kw + kx;
                                    acc += x[xi] * w[wi];
                                    gx_ref[xi] += gy[yi] * w[wi];
                                    gw_ref[wi] += gy[yi] * x[xi];
                                }
                        y_ref[yi] = acc;
                    }
            }
        const std::string name = "conv cin" + std::to_string(c.cin) + " cout" + std::to_string(c.cout) + " g" + std::to_string(c.groups);
        for (int t16 = 0; t16 < 2; ++t16) {
            const int bm = t16 ? 16 : 64;
            std::vector<float> y(yl, NAN), gx(xl, NAN), gw(wl, NAN);
            emu_launch(dim3{cdiv((size_t)g.batch * g.oh * g.ow, 64), cdiv(g.cout_g, bm), (unsigned)g.groups}, 256,
                       [&] { (t16 ? conv2d_forward_t16 : conv2d_forward_t64)(g, x.data(), w.data(), bias.data(), y.data()); });
            check(name + (t16 ? " forward t16" : " forward t64"), y, y_ref);
            emu_launch(dim3{cdiv((size_t)g.batch * g.h * g.w, 64), cdiv(g.cin_g, bm), (unsigned)g.groups}, 256,
                       [&] { (t16 ? conv2d_backward_input_t16 : conv2d_backward_input_t64)(g, gy.data(), w.data(), gx.data()); });
            check(name + (t16 ? " backward input t16" : " backward input t64"), gx, gx_ref);
            // Three K splits (chunks a multiple of 16), then sum_splits.
            const int K = g.batch * g.oh * g.ow, splits = 3, chunk = ((K + splits - 1) / splits + 15) / 16 * 16;
            const int used = (K + chunk - 1) / chunk;
            std::vector<float> partials((size_t)used * wl, NAN);
            emu_launch(dim3{cdiv((size_t)g.cin_g * g.kh * g.kw, 64), cdiv(g.cout_g, bm), (unsigned)(g.groups * used)}, 256, [&] {
                (t16 ? conv2d_backward_weight_t16 : conv2d_backward_weight_t64)(g, x.data(), gy.data(), partials.data(), used, chunk);
            });
            emu_launch(dim3{cdiv(wl, 256), 1, 1}, 256, [&] { sum_splits((int)wl, used, partials.data(), gw.data()); });
            check(name + (t16 ? " backward weight t16 split" : " backward weight t64 split") + std::to_string(used), gw, gw_ref);
        }
    }
}

static void test_pool() {
    struct Case { int planes, h, w, kh, kw, sh, sw, ph, pw, cip; };
    for (Case c : {Case{4, 28, 28, 2, 2, 2, 2, 0, 0, 1}, Case{3, 9, 10, 3, 3, 2, 2, 1, 1, 1}, Case{3, 7, 5, 3, 3, 1, 1, 1, 1, 0},
                   Case{2, 5, 8, 2, 3, 1, 2, 0, 0, 1}, Case{1, 5, 5, 2, 2, 2, 2, 0, 0, 1}}) {
        PoolGeom g{c.planes, c.h, c.w, outsz(c.h, c.kh, c.sh, c.ph, 1), outsz(c.w, c.kw, c.sw, c.pw, 1), c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.cip};
        const size_t xl = (size_t)g.planes * g.h * g.w, yl = (size_t)g.planes * g.oh * g.ow;
        auto x = rnd(xl), gy = rnd(yl);
        x[xl / 2] = NAN;
        std::vector<float> ymax(yl), yavg(yl), gxmax(xl, 0.0f), gxavg(xl, 0.0f);
        std::vector<u32> am_ref(yl);
        for (int pl = 0; pl < g.planes; ++pl)
            for (int oy = 0; oy < g.oh; ++oy)
                for (int ox = 0; ox < g.ow; ++ox) {
                    // reference::pool_window, in padded coordinates.
                    const int hs = oy * g.sh, ws = ox * g.sw;
                    const int he = std::min(hs + g.kh, g.h + 2 * g.ph), we = std::min(ws + g.kw, g.w + 2 * g.pw);
                    const int h0 = std::max(hs, g.ph) - g.ph, w0 = std::max(ws, g.pw) - g.pw;
                    const int h1 = std::max(std::min(he, g.h + g.ph) - g.ph, 0), w1 = std::max(std::min(we, g.w + g.pw) - g.pw, 0);
                    const int div = g.count_include_pad ? (he - hs) * (we - ws) : (h1 - h0) * (w1 - w0);
                    float best = -INFINITY, acc = 0;
                    int idx = h0 * g.w + w0;
                    bool stop = false;
                    for (int iy = h0; iy < h1; ++iy)
                        for (int ix = w0; ix < w1; ++ix) {
                            const float v = x[(size_t)pl * g.h * g.w + iy * g.w + ix];
                            acc += v;
                            if (!stop && (v > best || std::isnan(v))) {
                                best = v;
                                idx = iy * g.w + ix;
                                if (std::isnan(v)) stop = true;
                            }
                        }
                    const size_t o = ((size_t)pl * g.oh + oy) * g.ow + ox;
                    ymax[o] = best;
                    am_ref[o] = idx;
                    yavg[o] = acc / (float)div;
                    gxmax[(size_t)pl * g.h * g.w + idx] += gy[o];
                    for (int iy = h0; iy < h1; ++iy)
                        for (int ix = w0; ix < w1; ++ix) gxavg[(size_t)pl * g.h * g.w + iy * g.w + ix] += gy[o] / (float)div;
                }
        const std::string name = "pool " + std::to_string(c.h) + "x" + std::to_string(c.w) + " k" + std::to_string(c.kh) + " s" +
                                 std::to_string(c.sh) + " p" + std::to_string(c.ph) + " cip" + std::to_string(c.cip);
        std::vector<float> y(yl, 7.0f), gx(xl, 7.0f);
        std::vector<u32> am(yl, 99);
        emu_launch(dim3{cdiv(yl, 256), 1, 1}, 256, [&] { max_pool2d_forward(g, x.data(), y.data(), am.data()); });
        check(name + " max forward", y, ymax);
        if (am != am_ref) {
            ++failures;
            std::printf("FAIL %s argmax\n", name.c_str());
        }
        emu_launch(dim3{cdiv(xl, 256), 1, 1}, 256, [&] { max_pool2d_backward(g, gy.data(), am.data(), gx.data()); });
        check(name + " max backward", gx, gxmax);
        std::vector<float> xa = x;
        xa[xl / 2] = 0.25f;  // the NaN would make every covering average NaN in both
        // Recompute the average reference without the NaN.
        for (size_t i = 0; i < yl; ++i) yavg[i] = 0;
        for (int pl = 0; pl < g.planes; ++pl)
            for (int oy = 0; oy < g.oh; ++oy)
                for (int ox = 0; ox < g.ow; ++ox) {
                    const int hs = oy * g.sh, ws = ox * g.sw;
                    const int he = std::min(hs + g.kh, g.h + 2 * g.ph), we = std::min(ws + g.kw, g.w + 2 * g.pw);
                    const int h0 = std::max(hs, g.ph) - g.ph, w0 = std::max(ws, g.pw) - g.pw;
                    const int h1 = std::max(std::min(he, g.h + g.ph) - g.ph, 0), w1 = std::max(std::min(we, g.w + g.pw) - g.pw, 0);
                    const int div = g.count_include_pad ? (he - hs) * (we - ws) : (h1 - h0) * (w1 - w0);
                    float acc = 0;
                    for (int iy = h0; iy < h1; ++iy)
                        for (int ix = w0; ix < w1; ++ix) acc += xa[(size_t)pl * g.h * g.w + iy * g.w + ix];
                    yavg[((size_t)pl * g.oh + oy) * g.ow + ox] = acc / (float)div;
                }
        emu_launch(dim3{cdiv(yl, 256), 1, 1}, 256, [&] { avg_pool2d_forward(g, xa.data(), y.data()); });
        check(name + " avg forward", y, yavg);
        emu_launch(dim3{cdiv(xl, 256), 1, 1}, 256, [&] { avg_pool2d_backward(g, gy.data(), gx.data()); });
        check(name + " avg backward", gx, gxavg);
    }
}

static void test_rows_and_reductions() {
    for (auto [rows, cols] : {std::pair{37, 10}, {5, 100}, {3, 1}}) {
        auto x = rnd((size_t)rows * cols);
        for (auto& v : x) v *= 10;
        std::vector<u32> labels(rows);
        for (auto& l : labels) l = rng() % cols;
        std::vector<float> sm(x.size()), lsm(x.size()), loss(rows), grad(x.size()), corr(rows);
        std::vector<u32> arg(rows);
        for (int r = 0; r < rows; ++r) {
            const float* xr = &x[(size_t)r * cols];
            float m = -INFINITY, s = 0;
            int best = 0;
            for (int c = 0; c < cols; ++c) {
                m = std::max(m, xr[c]);
                if (xr[c] > xr[best]) best = c;
            }
            for (int c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
            const float lse = m + std::log(s);
            for (int c = 0; c < cols; ++c) {
                sm[(size_t)r * cols + c] = std::exp(xr[c] - m) / s;
                lsm[(size_t)r * cols + c] = xr[c] - lse;
                grad[(size_t)r * cols + c] = (std::exp(xr[c] - lse) - (c == (int)labels[r])) * 0.5f / rows;
            }
            loss[r] = lse - xr[labels[r]];
            arg[r] = best;
            corr[r] = best == (int)labels[r];
        }
        const unsigned blocks = cdiv(rows, 8);
        std::vector<float> out(x.size()), out_rows(rows);
        std::vector<u32> out_arg(rows);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { softmax_forward(rows, cols, x.data(), out.data()); });
        check("softmax " + std::to_string(cols), out, sm);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { log_softmax_forward(rows, cols, x.data(), out.data()); });
        check("log_softmax", out, lsm);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { softmax_xent_forward(rows, cols, x.data(), labels.data(), out_rows.data()); });
        check("cross-entropy rows", out_rows, loss);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { softmax_xent_backward(rows, cols, x.data(), labels.data(), 0.5f / rows, out.data()); });
        check("cross-entropy backward", out, grad);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { argmax_rows(rows, cols, x.data(), out_arg.data()); });
        if (out_arg != arg) {
            ++failures;
            std::printf("FAIL argmax_rows\n");
        }
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { correct_rows(rows, cols, x.data(), labels.data(), out_rows.data()); });
        check("correct_rows", out_rows, corr);
    }
    for (size_t n : {1, 255, 257, 70000}) {
        auto v = rnd(n);
        double want = 0;
        for (float a : v) want += a;
        const unsigned parts = std::min<unsigned>(cdiv(n, 256), 256);
        std::vector<float> partials(256), out(1);
        emu_launch(dim3{parts, 1, 1}, 256, [&] { reduce_sum((int)n, v.data(), 1.0f, partials.data()); });
        emu_launch(dim3{1, 1, 1}, 256, [&] { reduce_sum((int)parts, partials.data(), 2.0f, out.data()); });
        check("reduce_sum " + std::to_string(n), out, {(float)(2 * want)}, 1e-4f * (float)std::sqrt((double)n));
    }
    for (auto [outer, ch, inner] : {std::tuple{5, 6, 49}, {7, 120, 1}}) {
        auto gy = rnd((size_t)outer * ch * inner);
        std::vector<float> want(ch, 0.0f), got(ch);
        for (int o = 0; o < outer; ++o)
            for (int c = 0; c < ch; ++c)
                for (int i = 0; i < inner; ++i) want[c] += gy[((size_t)o * ch + c) * inner + i];
        emu_launch(dim3{(unsigned)ch, 1, 1}, 256, [&] { bias_backward(outer, ch, inner, gy.data(), got.data()); });
        check("bias_backward " + std::to_string(inner), got, want);
    }
}

static void test_vector_ops() {
    for (size_t n : {1, 255, 1000, 70000}) {
        auto x = rnd(n), y = rnd(n);
        std::vector<float> want(n), got;
        const unsigned blocks = std::min<unsigned>(cdiv(n, 256), 8192);
        const std::string sz = " " + std::to_string(n);
        for (size_t i = 0; i < n; ++i) want[i] = y[i] + x[i];
        got = y;
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { add_inplace((int)n, x.data(), got.data()); });
        check("add_inplace" + sz, got, want);
        for (size_t i = 0; i < n; ++i) want[i] = 0.5f * x[i] - 2.0f * y[i];
        got = y;
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { axpby((int)n, 0.5f, x.data(), -2.0f, got.data()); });
        check("axpby" + sz, got, want);
        for (size_t i = 0; i < n; ++i) want[i] = 3.0f * x[i];
        got.assign(n, NAN);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { axpby((int)n, 3.0f, x.data(), 0.0f, got.data()); });
        check("axpby beta 0 over NaN" + sz, got, want);
        for (size_t i = 0; i < n; ++i) want[i] = -0.25f * y[i];
        got = y;
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { scale((int)n, -0.25f, got.data()); });
        check("scale" + sz, got, want);
        want.assign(n, 1.5f);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { fill((int)n, 1.5f, got.data()); });
        check("fill" + sz, got, want);
        for (size_t i = 0; i < n; ++i) want[i] = x[i] * y[i];
        got.assign(n, NAN);
        emu_launch(dim3{blocks, 1, 1}, 256, [&] { mul((int)n, x.data(), y.data(), got.data()); });
        check("mul" + sz, got, want);
    }
}

int main() {
    test_sgemm();
    test_conv();
    test_pool();
    test_rows_and_reductions();
    test_vector_ops();
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "all kernels match", failures);
    return failures ? 1 : 0;
}
