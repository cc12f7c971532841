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
#include "../norm.cu"

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

// relu6 and its gradient, including NaN, -0.0 and the kinks 0 and 6.
static void test_relu6() {
    const size_t n = 1000;
    auto x = rnd(n), gy = rnd(n);
    for (auto& v : x) v *= 8.0f;
    x[0] = NAN, x[1] = -0.0f, x[2] = 0.0f, x[3] = 6.0f, x[4] = 6.5f;
    std::vector<float> want(n), gwant(n), got(n, 7.0f), ggot(n, 7.0f);
    for (size_t i = 0; i < n; ++i) {
        want[i] = std::isnan(x[i]) ? x[i] : std::min(std::max(x[i], 0.0f), 6.0f);
        if (x[i] == 0.0f) want[i] = x[i];  // -0.0 stays -0.0
        gwant[i] = (x[i] <= 0.0f || x[i] >= 6.0f) ? 0.0f : gy[i];
    }
    emu_launch(dim3{2, 1, 1}, 256, [&] { relu6_forward((int)n, x.data(), got.data()); });
    check("relu6 forward", got, want, 1e-7f);
    if (!std::signbit(got[1])) {
        ++failures;
        std::printf("FAIL relu6 forward of -0.0 is not -0.0\n");
    }
    emu_launch(dim3{2, 1, 1}, 256, [&] { relu6_backward((int)n, x.data(), gy.data(), ggot.data()); });
    check("relu6 backward", ggot, gwant, 1e-7f);
}

// Crop offsets and flips of tinycnn::data::SampleTransform applied to a batch.
static void test_augment() {
    const int batch = 4, c = 2, h = 5, w = 6;
    const size_t len = (size_t)batch * c * h * w;
    auto x = rnd(len);
    const int t[batch][3] = {{0, 0, 0}, {1, -2, 1}, {-3, 4, 0}, {2, 2, 1}};
    std::vector<u32> packed;
    for (auto& s : t)
        for (int v : s) packed.push_back((u32)v);
    std::vector<float> want(len), got(len, 7.0f);
    for (int s = 0; s < batch; ++s)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xo = 0; xo < w; ++xo) {
                    const int xs = (t[s][2] ? w - 1 - xo : xo) + t[s][1], ys = y + t[s][0];
                    const size_t o = (((size_t)s * c + ch) * h + y) * w + xo;
                    want[o] = (ys >= 0 && ys < h && xs >= 0 && xs < w) ? x[(((size_t)s * c + ch) * h + ys) * w + xs] : 0.0f;
                }
    emu_launch(dim3{1, 1, 1}, 256, [&] { augment_batch(batch, c, h, w, packed.data(), x.data(), got.data()); });
    check("augment_batch", got, want, 0.0f + 1e-9f);
}

// Adaptive average pooling with PyTorch's windows, equal and overlapping.
static void test_adaptive_pool() {
    struct Case { int planes, h, w, oh, ow; };
    for (Case cs : {Case{3, 6, 6, 2, 3}, Case{2, 5, 7, 3, 4}, Case{4, 5, 5, 1, 1}, Case{2, 3, 4, 5, 6}}) {
        const size_t xl = (size_t)cs.planes * cs.h * cs.w, yl = (size_t)cs.planes * cs.oh * cs.ow;
        auto x = rnd(xl), gy = rnd(yl);
        std::vector<float> want(yl), gwant(xl, 0.0f), got(yl, 7.0f), ggot(xl, 7.0f);
        for (int p = 0; p < cs.planes; ++p)
            for (int oy = 0; oy < cs.oh; ++oy)
                for (int ox = 0; ox < cs.ow; ++ox) {
                    const int r0 = oy * cs.h / cs.oh, r1 = ((oy + 1) * cs.h + cs.oh - 1) / cs.oh;
                    const int c0 = ox * cs.w / cs.ow, c1 = ((ox + 1) * cs.w + cs.ow - 1) / cs.ow;
                    const float area = (float)((r1 - r0) * (c1 - c0));
                    const size_t o = ((size_t)p * cs.oh + oy) * cs.ow + ox;
                    float acc = 0.0f;
                    for (int r = r0; r < r1; ++r)
                        for (int c = c0; c < c1; ++c) {
                            acc += x[((size_t)p * cs.h + r) * cs.w + c];
                            gwant[((size_t)p * cs.h + r) * cs.w + c] += gy[o] / area;
                        }
                    want[o] = acc / area;
                }
        const std::string name = "adaptive avg pool " + std::to_string(cs.h) + "x" + std::to_string(cs.w) + " -> " +
                                 std::to_string(cs.oh) + "x" + std::to_string(cs.ow);
        emu_launch(dim3{cdiv(yl, 256), 1, 1}, 256, [&] { adaptive_avg_pool2d_forward(cs.planes, cs.h, cs.w, cs.oh, cs.ow, x.data(), got.data()); });
        check(name + " forward", got, want);
        emu_launch(dim3{cdiv(xl, 256), 1, 1}, 256, [&] { adaptive_avg_pool2d_backward(cs.planes, cs.h, cs.w, cs.oh, cs.ow, gy.data(), ggot.data()); });
        check(name + " backward", ggot, gwant);
    }
}

// Batch-norm statistics, forward and backward (training and constant statistics) against
// the formulas of tinycnn_kernels::batch_norm_*, in double. (With two values per channel the
// training input gradient is 0 up to rounding, which a relative check cannot judge: 3 is the
// smallest case.)
static void test_batch_norm() {
    struct Case { int batch, channels, spatial; };
    for (Case cs : {Case{3, 3, 1}, Case{4, 5, 49}, Case{3, 2, 300}}) {
        const int n = cs.batch, cc = cs.channels, sp = cs.spatial, count = n * sp;
        const size_t len = (size_t)n * cc * sp;
        auto x = rnd(len), gy = rnd(len), weight = rnd(cc), bias = rnd(cc);
        for (auto& v : x) v = 3.0f * v + 2.0f;
        const float eps = 1e-5f;
        auto at = [&](int b, int c, int i) { return ((size_t)b * cc + c) * sp + i; };
        std::vector<float> mean(cc), var(cc), y(len), gx_train(len), gx_eval(len), gw(cc), gb(cc);
        for (int c = 0; c < cc; ++c) {
            double s = 0, q = 0, a = 0, d = 0;
            for (int b = 0; b < n; ++b)
                for (int i = 0; i < sp; ++i) s += x[at(b, c, i)];
            const double m = s / count;
            for (int b = 0; b < n; ++b)
                for (int i = 0; i < sp; ++i) q += (x[at(b, c, i)] - m) * (x[at(b, c, i)] - m);
            const double v = q / count, invstd = 1.0 / std::sqrt(v + eps);
            mean[c] = (float)m, var[c] = (float)v;
            for (int b = 0; b < n; ++b)
                for (int i = 0; i < sp; ++i) {
                    a += gy[at(b, c, i)];
                    d += gy[at(b, c, i)] * (x[at(b, c, i)] - m);
                }
            gw[c] = (float)(d * invstd), gb[c] = (float)a;
            for (int b = 0; b < n; ++b)
                for (int i = 0; i < sp; ++i) {
                    const size_t e = at(b, c, i);
                    y[e] = (float)((x[e] - m) * invstd * weight[c] + bias[c]);
                    gx_train[e] = (float)((gy[e] - a / count - (x[e] - m) * invstd * invstd * d / count) * invstd * weight[c]);
                    gx_eval[e] = (float)(gy[e] * invstd * weight[c]);
                }
        }
        const std::string name = "batch norm " + std::to_string(n) + "x" + std::to_string(cc) + "x" + std::to_string(sp);
        std::vector<float> gmean(cc, NAN), gvar(cc, NAN), gyv(len, NAN), sdy(cc, NAN), sdx(cc, NAN), ggw(cc, NAN), ggb(cc, NAN);
        emu_launch(dim3{(unsigned)cc, 1, 1}, 256, [&] { batch_norm_stats(n, cc, sp, x.data(), gmean.data(), gvar.data()); });
        check(name + " mean", gmean, mean);
        check(name + " var", gvar, var);
        emu_launch(dim3{cdiv(len, 256), 1, 1}, 256,
                   [&] { batch_norm_forward(n, cc, sp, x.data(), mean.data(), var.data(), eps, weight.data(), bias.data(), gyv.data()); });
        check(name + " forward", gyv, y);
        emu_launch(dim3{(unsigned)cc, 1, 1}, 256, [&] {
            batch_norm_backward_reduce(n, cc, sp, x.data(), gy.data(), mean.data(), var.data(), eps, sdy.data(), sdx.data(), ggw.data(), ggb.data());
        });
        check(name + " grad weight", ggw, gw);
        check(name + " grad bias", ggb, gb);
        std::vector<float> ggx(len, NAN);
        emu_launch(dim3{cdiv(len, 256), 1, 1}, 256, [&] {
            batch_norm_backward_input(n, cc, sp, x.data(), gy.data(), mean.data(), var.data(), eps, weight.data(), sdy.data(), sdx.data(), ggx.data());
        });
        check(name + " grad input (batch statistics)", ggx, gx_train);
        emu_launch(dim3{cdiv(len, 256), 1, 1}, 256, [&] {
            batch_norm_backward_input(n, cc, sp, x.data(), gy.data(), mean.data(), var.data(), eps, weight.data(), nullptr, nullptr, ggx.data());
        });
        check(name + " grad input (constant statistics)", ggx, gx_eval);
    }
}

int main() {
    test_sgemm();
    test_conv();
    test_pool();
    test_rows_and_reductions();
    test_vector_ops();
    test_relu6();
    test_augment();
    test_adaptive_pool();
    test_batch_norm();
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "all kernels match", failures);
    return failures ? 1 : 0;
}
