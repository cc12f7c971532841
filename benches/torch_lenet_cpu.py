#!/usr/bin/env python3
"""PyTorch baseline for `tinycnn train`: d2l's LeNet (sigmoid, average pooling) trained on
Fashion-MNIST with d2l's train_ch6 recipe (xavier_uniform init, cross-entropy, SGD lr 0.9,
batch 256) on the CPU, timed the way d2l's Timer does (training steps only, not data loading
or test evaluation).

    python3 benches/torch_lenet_cpu.py [--epochs 1] [--threads N] [--data DIR]
        [--model lenet|lenet-relu] [--optimizer sgd|adam] [--lr 0.9] [--seed 0]
        [--init W.safetensors] [--in-order] [--losses FILE]

--init starts from a state dict written by tinycnn (needs the safetensors package),
--in-order visits the training set in file order instead of shuffling, and --losses writes
each batch's loss, one per line: with the example `same_start` this trains from the same
start on the same batches as tinycnn (benches/same-start.sh).

Reads the four IDX files (gzip or raw) from --data, $TINYCNN_DATA, ./data/fashion-mnist or
/usr/share/datasets/fashion-mnist; needs only torch and numpy (no torchvision, no d2l).
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
from torch import nn

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_data(explicit):
    candidates = [explicit, os.environ.get("TINYCNN_DATA"), "data/fashion-mnist",
                  "/usr/share/datasets/fashion-mnist"]
    for d in candidates:
        if not d:
            continue
        paths = {}
        for key, name in FILES.items():
            for cand in (os.path.join(d, name + ".gz"), os.path.join(d, name)):
                if os.path.isfile(cand):
                    paths[key] = cand
                    break
        if len(paths) == 4:
            return d, paths
    raise SystemExit("Fashion-MNIST not found (try --data DIR)")


def lenet(relu=False):
    """d2l's LeNet; with relu=True the ReLU / max-pool variant (`tinycnn train --model lenet-relu`)."""
    act = nn.ReLU if relu else nn.Sigmoid
    pool = nn.MaxPool2d if relu else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), act(),
        pool(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), act(),
        pool(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data")
    ap.add_argument("--model", choices=["lenet", "lenet-relu"], default="lenet")
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--init")
    ap.add_argument("--in-order", action="store_true")
    ap.add_argument("--losses")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data_dir, paths = find_data(args.data)
    x_train = torch.from_numpy(read_idx(paths["train_images"]).astype(np.float32) / 255).unsqueeze(1)
    y_train = torch.from_numpy(read_idx(paths["train_labels"]).astype(np.int64))
    x_test = torch.from_numpy(read_idx(paths["test_images"]).astype(np.float32) / 255).unsqueeze(1)
    y_test = torch.from_numpy(read_idx(paths["test_labels"]).astype(np.int64))

    net = lenet(relu=args.model == "lenet-relu")

    def init_weights(m):
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    if args.init:
        from safetensors.torch import load_file
        net.load_state_dict(load_file(args.init))
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    loss = nn.CrossEntropyLoss()
    print(f"torch {torch.__version__}, {args.threads} threads, data {data_dir}")
    print("training on cpu")

    n = x_train.shape[0]
    total_time, total_examples = 0.0, 0
    step_losses = []
    for epoch in range(args.epochs):
        net.train()
        order = torch.arange(n) if args.in_order else torch.randperm(n)
        l_sum, correct, seen, t_epoch = 0.0, 0, 0, 0.0
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            X, y = x_train[idx], y_train[idx]
            t0 = time.perf_counter()
            optimizer.zero_grad()
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                step_losses.append(float(l))
                l_sum += float(l) * X.shape[0]
                correct += int((y_hat.argmax(dim=1) == y).sum())
                seen += X.shape[0]
            t_epoch += time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            test_correct = sum(int((net(x_test[i:i + 256]).argmax(dim=1) == y_test[i:i + 256]).sum())
                               for i in range(0, x_test.shape[0], 256))
        test_acc = test_correct / x_test.shape[0]
        total_time += t_epoch
        total_examples += seen
        print(f"epoch {epoch + 1}: loss {l_sum / seen:.3f}, train acc {correct / seen:.3f}, "
              f"test acc {test_acc:.3f}, {seen / t_epoch:.1f} examples/sec")
    print(f"loss {l_sum / seen:.3f}, train acc {correct / seen:.3f}, test acc {test_acc:.3f}")
    print(f"{total_examples / total_time:.1f} examples/sec on cpu")
    if args.losses:
        with open(args.losses, "w") as f:
            f.writelines(f"{v:.7e}\n" for v in step_losses)


if __name__ == "__main__":
    main()
