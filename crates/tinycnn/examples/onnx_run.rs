//! ONNX in and out of tinycnn: what `scripts/onnx-check.py` drives to compare tinycnn with
//! onnxruntime.
//!
//! ```text
//! cargo run --release -p tinycnn --example onnx_run                      # demo on a fixture
//! cargo run --release -p tinycnn --example onnx_run -- summary MODEL.onnx
//! cargo run --release -p tinycnn --example onnx_run -- export MODEL.onnx OUT.onnx
//! cargo run --release -p tinycnn --example onnx_run -- forward MODEL.onnx X.bin N,C,H,W Y.bin
//! cargo run --release -p tinycnn --example onnx_run -- accuracy MODEL.onnx [FASHION_MNIST_DIR]
//! ```
//!
//! `summary` prints the imported layers and tensors; `export` reads a model and writes it
//! back with tinycnn's writer (what onnxruntime must then run with the same outputs);
//! `forward` runs the model in tinycnn (`nn::Graph`, evaluation mode) on the batch in X.bin
//! (little-endian f32, row-major, of the given shape) and writes the output to Y.bin;
//! `accuracy` prints the model's accuracy on the 10 000 Fashion-MNIST test images (pixels
//! / 255, as PyTorch's fixture script feeds them; the IDX files in the directory given, else
//! the default places).

use std::path::Path;
use std::process::ExitCode;
use tinycnn::nn::{Graph, Module, StateDict};
use tinycnn::onnx::{self, OnnxModel};
use tinycnn::{Error, Tensor};

/// The model as a tinycnn network in evaluation mode with its weights.
fn network(m: &OnnxModel) -> tinycnn::Result<Graph> {
    let net = Graph::new(&m.architecture)?;
    let mut state = StateDict::new();
    for (name, s, d) in &m.tensors {
        state.insert(name.clone(), Tensor::from_vec(d.clone(), s)?);
    }
    net.load_state_dict(&state)?;
    net.eval();
    Ok(net)
}

fn accuracy(m: &OnnxModel, dir: Option<&Path>) -> tinycnn::Result<()> {
    let data = tinycnn::data::FashionMnist::load(dir).map_err(|e| Error::Msg(e.to_string()))?;
    let test = &data.test;
    let labels = test.labels_u32();
    let shape = test.sample_shape();
    let net = network(m)?;
    let mut correct = 0usize;
    for start in (0..test.len()).step_by(500) {
        let end = (start + 500).min(test.len());
        let mut x = Vec::with_capacity((end - start) * shape.iter().product::<usize>());
        for i in start..end {
            x.extend_from_slice(test.image(i).unwrap_or(&[]));
        }
        let batch = Tensor::from_vec(x, &[end - start, shape[0], shape[1], shape[2]])?;
        let logits = tinycnn::no_grad(|| net.forward(&batch))?;
        let classes = logits.shape()[1];
        for (row, &label) in logits.to_vec().chunks(classes).zip(&labels[start..end]) {
            // argmax, the first maximum on ties (torch.argmax)
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            correct += usize::from(best as u32 == label);
        }
    }
    println!(
        "accuracy {:.4} ({correct} of {})",
        correct as f64 / test.len() as f64,
        test.len()
    );
    Ok(())
}

fn forward(m: &OnnxModel, x: &Path, shape: &str, out: &Path) -> tinycnn::Result<()> {
    let shape: Vec<usize> = shape
        .split(',')
        .map(|d| d.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Msg(format!("shape `{shape}`: {e}")))?;
    let bytes = std::fs::read(x).map_err(|source| Error::Io {
        path: x.to_path_buf(),
        source,
    })?;
    if bytes.len() % 4 != 0 {
        return Err(Error::Msg(format!("{}: not whole f32 values", x.display())));
    }
    let data = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let net = network(m)?;
    let y = tinycnn::no_grad(|| net.forward(&Tensor::from_vec(data, &shape)?))?;
    let out_bytes: Vec<u8> = y.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
    tinycnn::io::write_atomic(out, &out_bytes)
}

fn summary(m: &OnnxModel) {
    let a = &m.architecture;
    println!("input [N, {}]", dims(&a.input));
    for n in &a.nodes {
        let ins: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
        println!(
            "  {:<16} {:<18} <- {}",
            n.name,
            n.layer.type_name(),
            ins.join(", ")
        );
    }
    let params: usize = m.tensors.iter().map(|(_, _, d)| d.len()).sum();
    println!("{} tensors, {params} values", m.tensors.len());
}

fn dims(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn run(args: &[String]) -> tinycnn::Result<()> {
    match args {
        [] => {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/small_bn.onnx");
            let m = onnx::load(&path)?;
            println!("{}:", path.display());
            summary(&m);
            let again = onnx::read(&onnx::write(&m.architecture, &m.tensors)?)?;
            assert_eq!(
                again, m,
                "a round trip through the writer changed the model"
            );
            println!("written back and read again: the same layers and tensors");
            Ok(())
        }
        [cmd, model] if cmd == "summary" => {
            summary(&onnx::load(model)?);
            Ok(())
        }
        [cmd, model, out] if cmd == "export" => {
            let m = onnx::load(model)?;
            onnx::save(out, &m.architecture, &m.tensors)
        }
        [cmd, model, x, shape, out] if cmd == "forward" => {
            forward(&onnx::load(model)?, Path::new(x), shape, Path::new(out))
        }
        [cmd, model, rest @ ..] if cmd == "accuracy" && rest.len() <= 1 => {
            accuracy(&onnx::load(model)?, rest.first().map(Path::new))
        }
        _ => Err(Error::Msg(
            "usage: onnx_run [summary MODEL.onnx | export MODEL.onnx OUT.onnx | forward \
             MODEL.onnx X.bin N,C,H,W Y.bin | accuracy MODEL.onnx [DIR]]"
                .into(),
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onnx_run: {e}");
            ExitCode::FAILURE
        }
    }
}
