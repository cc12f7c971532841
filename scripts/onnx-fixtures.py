#!/usr/bin/env python3
"""Makes the ONNX fixtures of crates/tinycnn/tests/fixtures/onnx/ from PyTorch.

    python3 scripts/onnx-fixtures.py            # all fixtures (trains fmnist_dscnn: 2 epochs, 36 min
                                                # on a busy 2-core machine)
    python3 scripts/onnx-fixtures.py --no-train # the small ones only (keeps fmnist_dscnn)

Needs torch, onnx and onnxruntime (pip). Fashion-MNIST is read from the IDX files in
$FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist).

Written into the fixture directory, for each fixture NAME:
  NAME.onnx              the model, exported by torch.onnx.export (TorchScript exporter,
                         dynamo=False; batch dimension dynamic, named N)
  NAME.input.bin         a fixed input batch, little-endian f32, row-major
  NAME.ort.bin           onnxruntime's output for it, little-endian f32
  NAME.torch.bin         PyTorch's output for it, little-endian f32
and manifest.json: {NAME: {"onnx", "input", "input_shape", "ort", "torch", "output_shape",
"opset", "folded", "layers": [PyTorch class names in order]}, ...}; for fmnist_dscnn also
"test_accuracy" (PyTorch's on all 10k test images) and "test_images": 16 (its input is the
first 16 test images, pixel / 255).

Fixtures:
  small_folded      a CNN with Conv+BatchNorm+ReLU6, a depthwise-separable block, MaxPool,
                    AvgPool (padding 1, count_include_pad=False), a residual Add,
                    AdaptiveAvgPool2d(1), Flatten, Dropout, Linear; exported in eval mode with
                    do_constant_folding=True: BatchNorm folded into the convolutions
  small_bn          the same weights exported with do_constant_folding=False and
                    training=TrainingMode.PRESERVE (model in eval mode): BatchNormalization
                    nodes appear on their own (EVAL mode fuses them whatever the folding flag)
  small_bn_opset9   as small_bn at opset 9 (Clip and Dropout with attributes, BatchNorm-9)
  seq_matmul        Linear on [N, 4, 6] (MatMul + Add), Tanh, a constant Reshape, Linear (Gemm),
                    Sigmoid, Softmax; opset 17
  crafted/*         graphs made with onnx.helper: valid ones in the manifest as "crafted/NAME"
                    (onnxruntime's output only), refused ones with the error text expected in
                    crafted/errors.json
  small.state.safetensors   the PyTorch state dict of the small_* model (all F32)
  fmnist_dscnn      a depthwise-separable CNN with BatchNorm, ReLU6, MaxPool, AvgPool and
                    global average pooling, trained 2 epochs on Fashion-MNIST (seed 0),
                    exported with constant folding off (BatchNormalization nodes kept)
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "tinycnn", "tests", "fixtures", "onnx")


def dw_separable(cin, cout):
    """Depthwise 3x3 (groups = channels) then pointwise 1x1, each with BatchNorm and ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.block = dw_separable(8, 12)
        self.pool1 = nn.MaxPool2d(2)
        self.res = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.pool2 = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.pool1(self.block(self.stem(x)))
        x = x + self.res(x)
        x = self.gap(self.pool2(x))
        return self.fc(self.drop(self.flatten(x)))


class SeqMatmul(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 5)
        self.act = nn.Tanh()
        self.head = nn.Linear(20, 3)
        self.gate = nn.Sigmoid()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = self.act(self.proj(x)).reshape(-1, 20)
        return self.softmax(self.gate(self.head(x)))


def dscnn():
    return nn.Sequential(
        nn.Conv2d(1, 24, 3, padding=1, bias=False),
        nn.BatchNorm2d(24),
        nn.ReLU6(),
        nn.MaxPool2d(2),  # 14x14
        dw_separable(24, 48),
        nn.AvgPool2d(2),  # 7x7
        dw_separable(48, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, 10),
    )


def randomize_bn(model, gen):
    """Running statistics and affine parameters away from their defaults, so BN matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.num_batches_tracked.fill_(7)


def export(model, example, path, opset, folded):
    model.eval()
    training = torch.onnx.TrainingMode.EVAL if folded else torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(
        model,
        (example,),
        path,
        dynamo=False,
        opset_version=opset,
        do_constant_folding=folded,
        training=training,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )


def layer_names(model):
    return [type(m).__name__ for m in model.modules() if len(list(m.children())) == 0]


def write_f32(path, array):
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def save_fixture(manifest, name, model, x, opset, folded, extra=None):
    import onnx
    import onnxruntime as ort

    path = os.path.join(OUT, f"{name}.onnx")
    export(model, x, path, opset, folded)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(got - want).max())
    assert diff < 1e-4, f"{name}: onnxruntime differs from PyTorch by {diff}"
    write_f32(os.path.join(OUT, f"{name}.input.bin"), x.numpy())
    write_f32(os.path.join(OUT, f"{name}.ort.bin"), got)
    write_f32(os.path.join(OUT, f"{name}.torch.bin"), want)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    entry = {
        "onnx": f"{name}.onnx",
        "input": f"{name}.input.bin",
        "input_shape": list(x.shape),
        "ort": f"{name}.ort.bin",
        "torch": f"{name}.torch.bin",
        "output_shape": list(got.shape),
        "opset": opset,
        "folded": folded,
        "layers": layer_names(model),
        "onnx_ops": ops,
    }
    entry.update(extra or {})
    manifest[name] = entry
    size = os.path.getsize(path)
    print(f"{name}: {size} bytes, ops {ops}, ort vs torch {diff:.2e}", file=sys.stderr)


def save_state(model, path):
    """The state dict as a safetensors file (all F32, as tinycnn reads them), written by hand:
    an 8-byte little-endian header length, the JSON header, the raw tensors."""
    header, blobs, offset = {}, [], 0
    for name, t in model.state_dict().items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def crafted_models():
    """Small graphs made with onnx.helper: valid ones the reader must take (operators and
    opsets PyTorch does not emit for the models above), and ones it must refuse with an error
    naming the node and the problem. Returns {name: (model, expected error or None)}."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    init = lambda name, a: numpy_helper.from_array(np.asarray(a), name)
    const = lambda out, a: helper.make_node("Constant", [], [out], name=f"{out}_const", value=numpy_helper.from_array(np.asarray(a)))

    def model(nodes, inits, opset, in_shape=("N", 2, 4, 4), out="y", domains=(), out_shape=None):
        g = helper.make_graph(
            nodes,
            "crafted",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            inits,
        )
        ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
        return helper.make_model(g, opset_imports=ops, ir_version=7 if opset <= 14 else 8)

    conv_w = init("conv.weight", f32(3, 2, 3, 3))
    conv_b = init("conv.bias", f32(3))
    out = {}
    # Valid: opset 12 Dropout with a ratio input fed by a Constant, Identity, VALID padding,
    # MatMul + Add (a Linear), Softmax on the last axis of a 2-D value.
    out["dropout_opset12"] = (model([
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv", auto_pad="VALID"),
        const("ratio", np.float32(0.3)),
        helper.make_node("Dropout", ["c", "ratio"], ["d"], name="drop"),
        helper.make_node("Identity", ["d"], ["i"], name="same"),
        helper.make_node("Flatten", ["i"], ["f"], name="flat", axis=1),
        helper.make_node("MatMul", ["f", "fc.w"], ["m"], name="fc/MatMul"),
        helper.make_node("Add", ["fc.b", "m"], ["a"], name="fc/Add"),
        helper.make_node("Softmax", ["a"], ["y"], name="prob"),
    ], [conv_w, conv_b, init("fc.w", f32(12, 5)), init("fc.b", f32(5)), init("unused", f32(2))], 12, out_shape=["N", 5]), None)
    # Valid: opset 10 Clip with attributes (ReLU6), Dropout with a ratio attribute, Gemm with
    # transB = 0 and a [1, out] bias, Softmax (old semantics) on the last axis.
    out["clip_attrs_opset10"] = (model([
        helper.make_node("Clip", ["x"], ["r"], name="relu6", min=0.0, max=6.0),
        helper.make_node("Dropout", ["r"], ["d"], name="drop", ratio=0.1),
        helper.make_node("Flatten", ["d"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "head.weight", "head.bias"], ["g"], name="head", transB=0),
        helper.make_node("Softmax", ["g"], ["y"], name="prob", axis=1),
    ], [init("head.weight", f32(32, 4)), init("head.bias", f32(1, 4))], 10, out_shape=["N", 4]), None)

    # Valid: a parameter shared through an Identity copy (as PyTorch exports it), AveragePool
    # with count_include_pad=1 and padding, a Reshape that is not a flatten, Softmax on a
    # middle axis (opset 13 semantics), Sigmoid.
    out["shared_weight_opset13"] = (model([
        helper.make_node("Conv", ["x", "shared.weight"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["shared.weight"], ["w2"], name="Identity_0"),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="/conv2/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["c2"], ["p"], name="/pool/AveragePool", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Reshape", ["p", "shape"], ["r"], name="/Reshape"),
        helper.make_node("Softmax", ["r"], ["s"], name="/softmax/Softmax", axis=1),
        helper.make_node("Sigmoid", ["s"], ["y"], name="/gate/Sigmoid"),
    ], [init("shared.weight", f32(2, 2, 3, 3)), init("shape", np.array([0, 2, -1], np.int64))], 13,
        out_shape=["N", 2, 16]), None)

    def refused(name, node, inits, error, opset=17, **kw):
        nodes = node if isinstance(node, list) else [node]
        out[name] = (model(nodes, inits, opset, **kw), error)

    refused("unsupported_op", helper.make_node("LeakyRelu", ["x"], ["y"], name="act"), [],
            "node `act` (LeakyRelu): unsupported operator `LeakyRelu`")
    refused("conv_same_upper", helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv", auto_pad="SAME_UPPER"),
            [conv_w], "node `conv` (Conv): auto_pad `SAME_UPPER` is not supported")
    refused("conv_asymmetric_pads", helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv", pads=[0, 0, 1, 1]),
            [conv_w], "node `conv` (Conv): pads [0, 0, 1, 1] are not supported")
    refused("maxpool_ceil", helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], ceil_mode=1), [],
            "node `pool` (MaxPool): ceil_mode 1 is not supported")
    refused("opset_6", helper.make_node("Relu", ["x"], ["y"], name="act"), [],
            "opset 6 of the default domain is not supported", opset=6)
    refused("opset_22", helper.make_node("Relu", ["x"], ["y"], name="act"), [],
            "opset 22 of the default domain is not supported", opset=22)
    refused("other_domain", helper.make_node("FusedConv", ["x", "conv.weight"], ["y"], name="fused", domain="com.microsoft"),
            [conv_w], "operator set domain `com.microsoft`", domains=("com.microsoft",))
    refused("clip_0_1", [const("lo", np.float32(0)), const("hi", np.float32(1)),
                         helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")], [],
            "node `clip` (Clip): clip range [0, 1] is not supported")
    bn = [init(n, np.ones(2, np.float32)) for n in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")]
    refused("bn_training", helper.make_node("BatchNormalization", ["x", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                                            ["y"], name="bn", training_mode=1), bn,
            "node `bn` (BatchNormalization): training_mode 1 is not supported")
    refused("gemm_alpha", [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                           helper.make_node("Gemm", ["f", "w"], ["y"], name="gemm", alpha=2.0, transB=1)],
            [init("w", f32(3, 32))], "node `gemm` (Gemm): alpha 2")
    refused("softmax_opset11_axis1", helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1), [],
            "node `sm` (Softmax): axis 1 on a rank-4 input under opset 11", opset=11)
    refused("dangling_input", helper.make_node("Add", ["x", "ghost"], ["y"], name="sum"), [],
            "node `sum` (Add): input `ghost` is neither")
    refused("constant_add", helper.make_node("Add", ["x", "c"], ["y"], name="shift"), [init("c", np.float32(1))],
            "node `shift` (Add): adding a constant is only supported as the bias")
    refused("flatten_axis2", helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=2), [],
            "node `flat` (Flatten): axis 2 on a rank-4 input is not supported")
    ext = init("conv.weight", f32(3, 2, 3, 3))
    ext.ClearField("raw_data")
    ext.data_location = TensorProto.EXTERNAL
    ext.external_data.add(key="location", value="weights.bin")
    refused("external_data", helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv"), [ext],
            "initializer `conv.weight`: external data")
    return out


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def fashion_mnist():
    d = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    load = lambda n: read_idx(os.path.join(d, n))
    to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
    return (
        to_x(load("train-images-idx3-ubyte.gz")),
        torch.from_numpy(load("train-labels-idx1-ubyte.gz").astype(np.int64)),
        to_x(load("t10k-images-idx3-ubyte.gz")),
        torch.from_numpy(load("t10k-labels-idx1-ubyte.gz").astype(np.int64)),
    )


def train_dscnn(epochs):
    xtr, ytr, xte, yte = fashion_mnist()
    torch.manual_seed(0)
    model = dscnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        start = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            if (i // 128) % 100 == 0:
                print(f"  batch {i // 128}: loss {loss.item():.3f} ({time.time() - start:.0f}s)", file=sys.stderr)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f} ({time.time() - start:.0f}s)", file=sys.stderr)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xte[i : i + 1000]).argmax(1) for i in range(0, len(xte), 1000)])
    acc = (pred == yte).double().mean().item()
    print(f"test accuracy {acc:.4f}", file=sys.stderr)
    return model, xte[:16], acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-train", action="store_true", help="keep fmnist_dscnn as it is")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    manifest_path = os.path.join(OUT, "manifest.json")
    manifest = {}
    if args.no_train and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = {k: v for k, v in json.load(f).items() if k == "fmnist_dscnn"}

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    small = Small()
    randomize_bn(small, gen)
    x = torch.rand(4, 1, 16, 16, generator=gen)
    save_fixture(manifest, "small_folded", small, x, 17, True)
    save_fixture(manifest, "small_bn", small, x, 17, False)
    save_fixture(manifest, "small_bn_opset9", small, x, 9, False)

    save_state(small, os.path.join(OUT, "small.state.safetensors"))

    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # no warning for the deliberately unused initializer
    errors = {}
    os.makedirs(os.path.join(OUT, "crafted"), exist_ok=True)
    for name, (m, error) in crafted_models().items():
        path = os.path.join(OUT, "crafted", f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        if error is not None:
            errors[name] = error
            continue
        import onnx

        onnx.checker.check_model(m, full_check=True)
        x = torch.rand(2, 2, 4, 4, generator=gen).numpy()
        y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        write_f32(os.path.join(OUT, "crafted", f"{name}.input.bin"), x)
        write_f32(os.path.join(OUT, "crafted", f"{name}.ort.bin"), y)
        manifest[f"crafted/{name}"] = {
            "onnx": f"crafted/{name}.onnx",
            "input": f"crafted/{name}.input.bin",
            "input_shape": list(x.shape),
            "ort": f"crafted/{name}.ort.bin",
            "output_shape": list(y.shape),
            "opset": m.opset_import[0].version,
        }
    with open(os.path.join(OUT, "crafted", "errors.json"), "w") as f:
        json.dump(errors, f, indent=1, sort_keys=True)
        f.write("\n")

    torch.manual_seed(1)
    seq = SeqMatmul()
    save_fixture(manifest, "seq_matmul", seq, torch.rand(3, 4, 6, generator=gen), 17, True)

    if not args.no_train:
        model, first16, acc = train_dscnn(args.epochs)
        save_fixture(
            manifest,
            "fmnist_dscnn",
            model,
            first16,
            17,
            False,
            {"test_accuracy": acc, "test_images": 16, "epochs": args.epochs},
        )
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
