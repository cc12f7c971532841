"""PyTorch side of tests/pytorch_interop.rs (run by that #[ignore]d test; needs torch and safetensors).

Checks that a tinycnn LeNet state dict loads into d2l's PyTorch LeNet with strict=True and gives
the same outputs, loss and gradients; then writes a PyTorch LeNet, an input/output pair and some
tensors with their str() for the Rust side to check.
"""
import json
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def close(name, a, b, tol):
    err = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1e-3)
    if err > tol * scale:
        raise SystemExit(f"{name}: max abs error {err} (scale {scale})")
    print(f"{name}: ok (max abs error {err:.3g})")


def main(d):
    torch.set_num_threads(1)
    net = lenet()
    net.load_state_dict(load_file(f"{d}/net_rs.safetensors"), strict=True)
    io = load_file(f"{d}/io_rs.safetensors")
    x, labels = io["x"], io["labels"].long()
    y = net(x)
    close("forward", y, io["y"], 1e-4)
    loss = nn.functional.cross_entropy(y, labels)
    close("loss", loss, io["loss"], 1e-5)
    loss.backward()
    for name, p in net.named_parameters():
        close(f"grad {name}", p.grad, io[f"grad.{name}"], 1e-3)

    torch.manual_seed(0)
    theirs = lenet()
    save_file(theirs.state_dict(), f"{d}/net_torch.safetensors")
    x2 = torch.rand(3, 1, 28, 28)
    save_file({"x": x2, "y": theirs(x2).detach()}, f"{d}/io_torch.safetensors")

    samples = {
        "small": torch.randn(3, 4) * 1e-5,
        "mixed": torch.tensor([1e-3, 1.0, 250.0]),
        "ints": torch.tensor([[1.0, -20.0], [300.0, 4.0]]),
        "big_ints": torch.tensor([1.0, 1e5]),
        "wide": torch.randn(2, 13),
        "cube": torch.randn(2, 2, 3),
        "scalar": torch.tensor(-2.5),
        "long": torch.randn(1200),
        "rows": torch.randn(50, 30),
        "nonfinite": torch.tensor([float("nan"), -float("inf"), 0.5]),
    }
    save_file({k: v.contiguous() for k, v in samples.items()}, f"{d}/formats.safetensors")
    with open(f"{d}/formats.json", "w") as f:
        json.dump({k: str(v) for k, v in samples.items()}, f)


if __name__ == "__main__":
    main(sys.argv[1])
