#!/usr/bin/env python3
"""PyTorch side of the tinycnn-cuda benchmark (needs a CUDA GPU and PyTorch).

1. Times PyTorch eager equivalents of each tinycnn-cuda kernel at LeNet's shapes (batch 256).
2. Trains d2l's LeNet (sigmoid, avg-pool; batch 256, SGD lr 0.9, xavier init, 10 epochs)
   on Fashion-MNIST when it can be read (--data DIR with the four idx .gz files), else on
   random data of the same size (throughput only), and reports examples/sec.
3. With --tinycnn-json FILE (the `JSON {...}` lines of
   `cargo run --release -p tinycnn-cuda --example gpu_bench`), prints one table:
   per kernel time and GFLOP/s or GB/s for tinycnn-cuda and PyTorch, and LeNet training
   examples/sec of both.

Usage: python3 scripts/torch_lenet_bench.py [--tinycnn-json bench.jsonl] [--data data/] [--epochs 10]
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("PyTorch is not installed: pip install torch (CUDA build)")


def timed(fn, reps=20, inner=10):
    """Median milliseconds of fn() measured with CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / inner)
    samples.sort()
    return samples[len(samples) // 2]


def kernel_times(dev):
    """Same names, shapes and flop/byte counts as crates/cuda/examples/gpu_bench.rs."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    r = lambda *s: torch.rand(*s, device=dev) * 2 - 1
    out = {}
    b = 256
    for m, n, k, name, f in [
        (b, 120, 400, "sgemm_fc1_forward_256x120x400", lambda a, w: a @ w.t()),
        (120, 400, b, "sgemm_fc1_weight_grad_120x400x256", lambda g, x: g.t() @ x),
        (2048, 2048, 2048, "sgemm_2048", lambda a, w: a @ w),
    ]:
        if name.startswith("sgemm_fc1_forward"):
            a, w = r(m, k), r(n, k)
        elif name.startswith("sgemm_fc1_weight"):
            a, w = r(k, m), r(k, n)
        else:
            a, w = r(m, k), r(k, n)
        out[name] = (timed(lambda: f(a, w)), 2.0 * m * n * k, 0.0)

    for name, cin, cout, hw, pad in [("conv1", 1, 6, 28, 2), ("conv2", 6, 16, 14, 0)]:
        x, w, bias = r(b, cin, hw, hw), r(cout, cin, 5, 5), r(cout)
        y = F.conv2d(x, w, bias, padding=pad)
        gy = r(*y.shape)
        flops = 2.0 * y.numel() * cin * 25
        out[f"{name}_forward"] = (timed(lambda: F.conv2d(x, w, bias, padding=pad)), flops, 0.0)
        gi = lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, padding=pad)
        gw = lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=pad)
        out[f"{name}_backward_input"] = (timed(gi), flops, 0.0)
        out[f"{name}_backward_weight"] = (timed(gw), flops, 0.0)

    x = r(b, 6, 28, 28)
    xg = x.clone().requires_grad_(True)
    y = F.avg_pool2d(x, 2)
    gy = r(*y.shape)
    fwd_bytes = 4.0 * (x.numel() + y.numel())
    out["avg_pool2d_forward"] = (timed(lambda: F.avg_pool2d(x, 2)), 0.0, fwd_bytes)
    ya = F.avg_pool2d(xg, 2)
    out["avg_pool2d_backward"] = (timed(lambda: torch.autograd.grad(ya, xg, gy, retain_graph=True)), 0.0, fwd_bytes)
    out["max_pool2d_forward"] = (timed(lambda: F.max_pool2d(x, 2, return_indices=True)), 0.0, fwd_bytes + 4.0 * y.numel())
    ym = F.max_pool2d(xg, 2)
    out["max_pool2d_backward"] = (timed(lambda: torch.autograd.grad(ym, xg, gy, retain_graph=True)), 0.0, fwd_bytes + 4.0 * y.numel())
    out["sigmoid_forward"] = (timed(lambda: torch.sigmoid(x)), 0.0, 8.0 * x.numel())
    ys = torch.sigmoid(xg)
    out["sigmoid_backward"] = (timed(lambda: torch.autograd.grad(ys, xg, x, retain_graph=True)), 0.0, 12.0 * x.numel())
    logits = r(b, 10).requires_grad_(True)
    labels = torch.arange(b, device=dev) % 10
    loss = F.cross_entropy(logits, labels)
    out["cross_entropy_backward"] = (timed(lambda: torch.autograd.grad(loss, logits, retain_graph=True)), 0.0, 8.0 * b * 10)
    p, g = r(61706), r(61706)
    out["sgd_step_61706"] = (timed(lambda: p.add_(g, alpha=-1e-6)), 0.0, 12.0 * 61706)
    return out


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).reshape(n, 1, rows, cols).float() / 255.0
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def load_fashion(data_dir):
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for sub in ["", "FashionMNIST/raw", "fashion-mnist", "fashion_mnist"]:
        paths = [os.path.join(data_dir, sub, n) for n in names]
        if all(os.path.exists(p) for p in paths):
            return [read_idx(p) for p in paths]
    return None


def train_lenet(dev, data_dir, epochs):
    torch.backends.cudnn.benchmark = True
    loaded = load_fashion(data_dir) if data_dir else None
    if loaded:
        xtr, ytr, xte, yte = (t.to(dev) for t in loaded)
        source = "Fashion-MNIST"
    else:
        xtr, ytr = torch.rand(60000, 1, 28, 28, device=dev), torch.randint(0, 10, (60000,), device=dev)
        xte, yte = xtr[:10000], ytr[:10000]
        source = "random data (Fashion-MNIST not found)"
    net = lenet().to(dev)
    for m in net:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    opt = torch.optim.SGD(net.parameters(), lr=0.9)
    n = xtr.shape[0]
    times = []
    for epoch in range(epochs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        total, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
        for i in range(0, n, 256):
            idx = perm[i:i + 256]
            x, y = xtr[idx], ytr[idx]
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * x.shape[0]
            correct += (out.argmax(1) == y).sum()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        with torch.no_grad():
            test_acc = sum((net(xte[i:i + 256]).argmax(1) == yte[i:i + 256]).sum().item() for i in range(0, xte.shape[0], 256)) / xte.shape[0]
        print(f"epoch {epoch + 1}: loss {total.item() / n:.3f}, train acc {correct.item() / n:.3f}, test acc {test_acc:.3f}, {times[-1]:.2f} s", file=sys.stderr)
    steady = times[1:] if len(times) > 1 else times
    return n * len(steady) / sum(steady), source


def rate(ms, flops, nbytes):
    if flops:
        return f"{flops / ms / 1e6:9.1f} GFLOP/s"
    if nbytes:
        return f"{nbytes / ms / 1e6:9.1f} GB/s   "
    return " " * 17


def main():
    ap = argparse.ArgumentParser(description="PyTorch baseline for tinycnn-cuda")
    ap.add_argument("--tinycnn-json", help="gpu_bench output (lines starting with JSON)")
    ap.add_argument("--data", default="data", help="folder with Fashion-MNIST idx .gz files")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible to PyTorch")
    dev = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(0)}, PyTorch {torch.__version__}, TF32 off")
    ours = {}
    if args.tinycnn_json:
        with open(args.tinycnn_json) as f:
            for line in f:
                if line.startswith("JSON "):
                    rec = json.loads(line[5:])
                    ours[rec["kernel"]] = rec
    theirs = kernel_times(dev)
    print(f"{'kernel':38} {'tinycnn ms':>11} {'tinycnn rate':>17} {'torch ms':>10} {'torch rate':>17} {'speedup':>8}")
    for name, (ms, flops, nbytes) in theirs.items():
        o = ours.get(name)
        o_ms = f"{o['ms']:11.4f}" if o else f"{'-':>11}"
        o_rate = rate(o["ms"], o["flops"], o["bytes"]) if o else " " * 17
        speed = f"{ms / o['ms']:7.2f}x" if o else f"{'-':>8}"
        print(f"{name:38} {o_ms} {o_rate} {ms:10.4f} {rate(ms, flops, nbytes)} {speed}")
    eps, source = train_lenet(dev, args.data, args.epochs)
    o = ours.get("lenet_train_epoch")
    o_eps = f"{o['examples_per_sec']:.0f}" if o else "-"
    speed = f"{o['examples_per_sec'] / eps:.2f}x" if o else "-"
    print(f"LeNet training (batch 256, SGD lr 0.9): tinycnn-cuda {o_eps} examples/s, PyTorch eager {eps:.0f} examples/s ({source}); tinycnn/torch {speed}")


if __name__ == "__main__":
    main()
