#!/usr/bin/env python3
"""Checks tinycnn's ONNX support against onnxruntime (CI runs it; needs numpy, onnx and
onnxruntime from PyPI, and cargo to build the runner example).

Usage:
  scripts/onnx-check.py --fixtures [DIR]
      Every model of DIR/manifest.json (default crates/tinycnn/tests/fixtures/onnx, made by
      scripts/onnx-fixtures.py): the checks below, with the fixture's input and expected
      output (PyTorch's, else onnxruntime's as recorded).
  scripts/onnx-check.py MODEL.onnx --input X.bin --shape N,C,H,W [--expected Y.bin]
      One model: X.bin holds the input batch (little-endian f32, row-major, of that shape);
      Y.bin the expected output (little-endian f32); without it onnxruntime's output on the
      original model is the reference.

For each model:
  1. onnxruntime runs MODEL on X; with an expected output, they must agree.
  2. tinycnn runs MODEL on X (`onnx_run forward`: nn::Graph in evaluation mode) and must agree
     with onnxruntime.
  3. tinycnn reads MODEL and writes it back (`onnx_run export`); the export must pass
     onnx.checker.check_model(full_check=True) and onnxruntime must give the same output on
     it as on MODEL.
"Agree": max |a - b| <= --tol (default 1e-4) over the whole output, same shape.
With --fixtures, a fixture recording PyTorch's "test_accuracy" (fmnist_dscnn) is also
evaluated by tinycnn (`onnx_run accuracy`) on the 10 000 Fashion-MNIST test images, which
must agree within 0.002, when the IDX files are in $FASHION_MNIST_DIR (default
/usr/share/datasets/fashion-mnist; skipped with a note otherwise).

The runner is the example `crates/tinycnn/examples/onnx_run.rs`, built here with
`cargo build --release -p tinycnn --example onnx_run` unless $TINYCNN_ONNX_RUN names a
built binary. Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FIXTURES = os.path.join(ROOT, "crates", "tinycnn", "tests", "fixtures", "onnx")


def runner():
    exe = os.environ.get("TINYCNN_ONNX_RUN")
    if exe:
        return exe
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "tinycnn", "--example", "onnx_run"],
        cwd=ROOT,
        check=True,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "examples", "onnx_run")


def read_f32(path, shape):
    data = np.fromfile(path, dtype="<f4")
    if data.size != int(np.prod(shape)):
        raise SystemExit(f"{path}: {data.size} floats, shape {shape} needs {int(np.prod(shape))}")
    return data.reshape(shape)


def ort_run(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def compare(what, got, want, tol):
    if got.shape != want.shape:
        print(f"FAIL {what}: shape {list(got.shape)} vs {list(want.shape)}")
        return False
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    ok = diff <= tol and not np.isnan(diff)
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| {diff:.2e}")
    return ok


def check_model(exe, path, x, expected, tol):
    import onnx

    name = os.path.relpath(path, ROOT)
    ok = True
    try:
        reference = ort_run(path, x)
    except Exception as e:  # onnxruntime raises its own error types
        print(f"FAIL {name}: onnxruntime cannot run it: {e}")
        return False
    if expected is not None:
        ok &= compare(f"{name}: onnxruntime vs expected", reference, expected, tol)
    with tempfile.TemporaryDirectory() as tmp:
        xin, yout = os.path.join(tmp, "x.bin"), os.path.join(tmp, "y.bin")
        x.astype("<f4").tofile(xin)
        shape = ",".join(str(d) for d in x.shape)
        r = subprocess.run([exe, "forward", path, xin, shape, yout], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: tinycnn forward: {r.stderr.strip()}")
            ok = False
        else:
            got = read_f32(yout, reference.shape)
            ok &= compare(f"{name}: tinycnn vs onnxruntime", got, reference, tol)
        out = os.path.join(tmp, "export.onnx")
        r = subprocess.run([exe, "export", path, out], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: tinycnn export: {r.stderr.strip()}")
            return False
        try:
            onnx.checker.check_model(onnx.load(out), full_check=True)
        except Exception as e:  # the checker raises its own ValidationError types
            print(f"FAIL {name}: tinycnn's export fails onnx.checker: {e}")
            return False
        ok &= compare(f"{name}: tinycnn's export in onnxruntime", ort_run(out, x), reference, tol)
    return ok


def check_accuracies(exe, fixtures, manifest):
    """tinycnn's test accuracy vs PyTorch's for fixtures that record one; the failure count."""
    data = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    failed = 0
    for name, e in sorted(manifest.items()):
        if "test_accuracy" not in e:
            continue
        if not os.path.exists(os.path.join(data, "t10k-images-idx3-ubyte.gz")):
            print(f"note: no Fashion-MNIST in {data}; {name}'s accuracy not checked")
            continue
        path = os.path.join(fixtures, e["onnx"])
        r = subprocess.run([exe, "accuracy", path, data], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: tinycnn accuracy: {r.stderr.strip()}")
            failed += 1
            continue
        acc = float(r.stdout.split()[1])
        ok = abs(acc - e["test_accuracy"]) <= 0.002
        print(f"{'ok  ' if ok else 'FAIL'} {name}: test accuracy tinycnn {acc:.4f}, PyTorch {e['test_accuracy']:.4f}")
        failed += 0 if ok else 1
    return failed


def main():
    ap = argparse.ArgumentParser(description="tinycnn vs onnxruntime on ONNX models")
    ap.add_argument("model", nargs="?", help="an .onnx file (else --fixtures)")
    ap.add_argument("--fixtures", nargs="?", const=DEFAULT_FIXTURES, help="check every fixture of DIR")
    ap.add_argument("--input", help="input batch, little-endian f32")
    ap.add_argument("--shape", help="input shape, e.g. 4,1,28,28")
    ap.add_argument("--expected", help="expected output, little-endian f32")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if (args.model is None) == (args.fixtures is None):
        ap.error("give either MODEL.onnx or --fixtures")

    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    exe = runner()

    cases = []
    if args.model:
        if not (args.input and args.shape):
            ap.error("MODEL needs --input and --shape")
        shape = [int(d) for d in args.shape.split(",")]
        x = read_f32(args.input, shape)
        cases.append((os.path.abspath(args.model), x, args.expected, None))
    else:
        with open(os.path.join(args.fixtures, "manifest.json")) as f:
            manifest = json.load(f)
        for name, e in sorted(manifest.items()):
            x = read_f32(os.path.join(args.fixtures, e["input"]), e["input_shape"])
            want = os.path.join(args.fixtures, e.get("torch", e["ort"]))
            cases.append((os.path.join(args.fixtures, e["onnx"]), x, want, e["output_shape"]))
    failed = 0
    accuracy_failed = check_accuracies(exe, args.fixtures, manifest) if args.fixtures else 0
    for path, x, expected, out_shape in cases:
        want = None
        if expected is not None:
            want = read_f32(expected, out_shape) if out_shape else np.fromfile(expected, dtype="<f4")
        if want is not None and out_shape is None:
            want = want.reshape(ort_run(path, x).shape)
        if not check_model(exe, path, x, want, args.tol):
            failed += 1
    print(f"{len(cases) - failed} of {len(cases)} models passed")
    return 1 if failed or accuracy_failed else 0


if __name__ == "__main__":
    sys.exit(main())
