"""torch.mm at the sizes of `examples/isa_compare.rs`, timed the same way, for the ratio.

512^3 on one thread (torch.set_num_threads(1)), 1024^3 on two; each sample is the best of
3 calls (wall clock), the figure the median of ROUNDS samples (default 7).

    python3 benches/torch_mm.py [ROUNDS]
"""
import statistics
import sys
import time

import torch


def best_of_3(f):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    print(f"torch {torch.__version__}, cpu capability {cap}")
    for n, threads in [(512, 1), (1024, 2)]:
        torch.set_num_threads(threads)
        g = torch.Generator().manual_seed(1)
        a = torch.rand(n, n, generator=g) - 0.5
        b = torch.rand(n, n, generator=g) - 0.5
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        samples = [2 * n**3 / best_of_3(lambda: torch.mm(a, b, out=c)) / 1e9 for _ in range(rounds)]
        print(f"torch.mm {n}^3 {threads} thr: {statistics.median(samples):7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
