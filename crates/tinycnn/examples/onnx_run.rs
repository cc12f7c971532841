//! ONNX in and out of tinycnn: what `scripts/onnx-check.py` drives to compare tinycnn with
//! onnxruntime.
//!
//! ```text
//! cargo run --release -p tinycnn --example onnx_run                      # demo on a fixture
//! cargo run --release -p tinycnn --example onnx_run -- summary MODEL.onnx
//! cargo run --release -p tinycnn --example onnx_run -- export MODEL.onnx OUT.onnx
//! ```
//!
//! `summary` prints the imported layers and tensors; `export` reads a model and writes it
//! back with tinycnn's writer (what onnxruntime must then run with the same outputs).

use std::path::Path;
use std::process::ExitCode;
use tinycnn::onnx::{self, OnnxModel};

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
        _ => Err(tinycnn::Error::Msg(
            "usage: onnx_run [summary MODEL.onnx | export MODEL.onnx OUT.onnx]".into(),
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
