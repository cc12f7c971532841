#!/usr/bin/env python3
"""PyTorch baseline for `infer-bench`: d2l's LeNet (or lenet-relu) forward in eager mode
under torch.inference_mode(), on random images, timed as infer-bench times tinycnn (median
per-call latency over 50 ms rounds, after a warm-up).

    python3 benches/torch_infer_cpu.py [--model lenet|lenet-relu] [--batch 256]
        [--threads 2] [--seconds 2]
"""
import argparse
import time

import torch
from torch import nn


def lenet(relu):
    act = nn.ReLU if relu else nn.Sigmoid
    pool = (lambda: nn.MaxPool2d(2, 2)) if relu else (lambda: nn.AvgPool2d(2, 2))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), act(), pool(),
        nn.Conv2d(6, 16, 5), act(), pool(), nn.Flatten(),
        nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="lenet", choices=["lenet", "lenet-relu"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net = lenet(a.model == "lenet-relu").eval()
    x = torch.rand(a.batch, 1, 28, 28)
    with torch.inference_mode():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.3:
            net(x)
        rounds = []
        start = time.perf_counter()
        while time.perf_counter() - start < a.seconds or len(rounds) < 5:
            t = time.perf_counter()
            calls = 0
            while time.perf_counter() - t < 0.05:
                net(x)
                calls += 1
            rounds.append((time.perf_counter() - t) / calls)
    rounds.sort()
    med = rounds[len(rounds) // 2]
    print(f"pytorch {a.model} batch {a.batch} threads {a.threads}: {med * 1e6:.1f} us/call, "
          f"{a.batch / med:.0f} img/s (torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()})")


if __name__ == "__main__":
    main()
