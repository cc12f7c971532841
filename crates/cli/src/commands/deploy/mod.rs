//! `tinycnn deploy`: a trained network as a static plan for a microcontroller.
//!
//! The architecture is lowered to the ops of `tinycnn_kernels::deploy` (BatchNorm folded into
//! the convolution before it, or made a per-channel 1x1 depthwise convolution; activations
//! fused into the op before them; Flatten, Dropout and Identity dropped; int8: a sigmoid or
//! tanh table folded into the average pooling that alone reads it), the activations are
//! placed in one arena by lifetime, and for int8 the weights are quantized per output channel
//! and the activations per tensor with scales calibrated on training images. The plan is then
//! parsed back and run by the same executor the firmware uses, on the whole test set.

use crate::error::Result;
use crate::output::{check_outputs, write_file};
use crate::report::argmax;
use crate::tensorfile::NamedTensor;
use crate::DeployArgs;
use std::collections::HashMap;
use std::path::Path;
use tinycnn::nn::arch::{Architecture, LayerSpec};
use tinycnn_kernels::deploy::format::*;
use tinycnn_kernels::deploy::{self, Input, Int8Kernels, Lifetime, Plan};
use tinycnn_kernels::int8::{self, Requant};

mod fuse;
mod lower;
mod plan;
#[cfg(test)]
mod tests;

pub use fuse::*;
pub use lower::*;
pub use plan::*;

/// File name of the plan in the output directory.
pub const PLAN_FILE: &str = "plan.bin";
/// File name of the human-readable summary.
pub const SUMMARY_FILE: &str = "summary.txt";

/// The human-readable summary of a plan.
pub fn summary(ir: &Ir, plan: &Plan<'_>, plan_bytes: usize, label: &str) -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let h = plan.header();
    let w = |s: &mut String, t: std::fmt::Arguments| {
        let _ = s.write_fmt(t);
        s.push('\n');
    };
    w(
        &mut s,
        format_args!("model {label}, precision {}", plan.precision().name()),
    );
    w(&mut s, format_args!("op  kind     act      layer                          input(s)        output      offset    bytes  weights"));
    for k in 0..plan.ops() {
        let op = plan.op(k);
        let y = plan.value(k + 1);
        let inputs = op
            .inputs
            .iter()
            .filter(|&&v| v != NO_INPUT)
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let shape = format!("{}x{}x{}", y.shape[0], y.shape[1], y.shape[2]);
        w(
            &mut s,
            format_args!(
                "{k:<3} {:<8} {:<8} {:<30} {:<15} {:<11} {:>6} {:>8} {:>8}",
                op.kind.name(),
                op.act.name(),
                ir.ops[k].name,
                inputs,
                shape,
                y.offset,
                y.bytes(),
                op.weight.len + op.bias.len + op.aux.len
            ),
        );
    }
    let x = plan.input();
    w(
        &mut s,
        format_args!(
            "input v0: {}x{}x{} at offset {}, {} bytes",
            x.shape[0],
            x.shape[1],
            x.shape[2],
            x.offset,
            x.bytes()
        ),
    );
    let sizes: Vec<usize> = (0..plan.values()).map(|v| plan.value(v).bytes()).collect();
    let lives: Vec<Lifetime> = (0..plan.values()).map(|v| plan.lifetime(v)).collect();
    let peak = deploy::peak_live_bytes(&sizes, &lives).map_err(|e| crate::cli_err!("{e}"))?;
    w(&mut s, format_args!("arena (activations): {} bytes (largest set of live values: {peak} bytes; all values: {} bytes)", h.arena_bytes, sizes.iter().sum::<usize>()));
    w(
        &mut s,
        format_args!("workspace: {} bytes", 4 * h.workspace_words),
    );
    w(
        &mut s,
        format_args!(
            "peak RAM for buffers: {} bytes",
            h.arena_bytes as usize + 4 * h.workspace_words as usize
        ),
    );
    w(
        &mut s,
        format_args!(
            "flash for the plan: {plan_bytes} bytes ({} of weights and tables)",
            h.data_len
        ),
    );
    w(
        &mut s,
        format_args!("multiply-accumulates per inference: {}", h.macs),
    );
    Ok(s)
}

/// Accuracy of `logits` (rows of `classes`) against `labels`, in percent.
fn accuracy(logits: &[f32], classes: usize, labels: &[u8]) -> (usize, f64) {
    let correct = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count();
    (correct, 100.0 * correct as f64 / labels.len().max(1) as f64)
}

fn prepare_out(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(crate::cli_err!(
                "--out {}: exists and is not a directory",
                dir.display()
            ))
        }
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(dir)
            .map_err(|e| crate::cli_err!("--out {}: cannot create it: {e}", dir.display()))?,
    }
    check_outputs(&[
        ("--out", &dir.join(PLAN_FILE)),
        ("--out", &dir.join(SUMMARY_FILE)),
    ])
}

/// `tinycnn deploy`.
pub fn run(args: DeployArgs) -> Result<()> {
    if args.calibration == 0 {
        return Err(crate::cli_err!("--calibration must be at least 1"));
    }
    prepare_out(&args.out)?;
    let (spec, label, net, trained_on) = super::load_model(
        &args.weights,
        args.model.as_ref(),
        crate::DeviceName::Cpu,
        true,
    )?;
    let params = super::model::params(net.net())?;
    let int8 = args.int8;
    let ir = lower(&spec.arch, &params, int8)?;
    let dataset = args.dataset.or(trained_on).unwrap_or_default();
    let data = super::load_data(dataset, args.data.as_deref())?;
    let per: usize = spec.arch.input.iter().product();
    let (ir, quant) = if int8 {
        let n = args.calibration.min(data.train.len());
        let q = calibrate(&ir, &data.train.images[..n * per])?;
        let (ir, q) = fuse_tables(&ir, &q);
        (ir, Some(q))
    } else {
        (ir, None)
    };
    let bytes = build_plan(&ir, quant.as_ref(), Layout::Planned)?;
    let aligned = AlignedPlan::new(&bytes);
    let plan = aligned.plan()?;
    let text = summary(&ir, &plan, bytes.len(), &label)?;
    write_file(&args.out.join(PLAN_FILE), &bytes)?;
    write_file(&args.out.join(SUMMARY_FILE), text.as_bytes())?;
    crate::out!("{text}")?;
    crate::outln!(
        "wrote {} ({} bytes) and {}",
        args.out.join(PLAN_FILE).display(),
        bytes.len(),
        args.out.join(SUMMARY_FILE).display()
    )?;
    let test = &data.test;
    let classes = plan.output_value().elements();
    let logits = run_all(&plan, &test.images[..test.len() * per], Int8Kernels::Plain)?;
    let (correct, acc) = accuracy(&logits, classes, &test.labels);
    crate::outln!(
        "deployed {} on the host: test acc {:.2}% ({correct} of {})",
        plan.precision().name(),
        acc,
        test.len()
    )?;
    if int8 {
        // The same network in f32 through the same executor, for the quantization's cost.
        let f32_ir = lower(&spec.arch, &params, false)?;
        let fb = build_plan(&f32_ir, None, Layout::Planned)?;
        let fa = AlignedPlan::new(&fb);
        let fl = run_all(
            &fa.plan()?,
            &test.images[..test.len() * per],
            Int8Kernels::Plain,
        )?;
        let (fc, facc) = accuracy(&fl, classes, &test.labels);
        crate::outln!(
            "deployed f32 on the host: test acc {facc:.2}% ({fc} of {}); int8 - f32 = {:+.2} points",
            test.len(),
            acc - facc
        )?;
    }
    Ok(())
}
