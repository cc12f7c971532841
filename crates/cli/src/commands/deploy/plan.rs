//! The plan bytes of a lowered network (f32, or int8 with calibrated scales), and running
//! a plan on the host with the firmware's executor.

use super::*;

/// Appends data to the blob at a 4-byte boundary.
struct Blob(Vec<u8>);

impl Blob {
    fn push(&mut self, bytes: &[u8]) -> Span {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        let span = Span {
            offset: self.0.len() as u32,
            len: bytes.len() as u32,
        };
        self.0.extend_from_slice(bytes);
        span
    }
    fn f32s(&mut self, v: &[f32]) -> Span {
        self.push(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }
    fn i32s(&mut self, v: &[i32]) -> Span {
        self.push(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| crate::cli_err!("{what} {v} does not fit the plan format"))
}

fn pair(v: (usize, usize), what: &str) -> Result<[u32; 2]> {
    Ok([u32_of(v.0, what)?, u32_of(v.1, what)?])
}

/// How the arena is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// By lifetime ([`deploy::plan_arena`]): what the firmware gets.
    Planned,
    /// Every value at its own offset, so all of them can be read after a run (calibration).
    Separate,
}

/// int8 choices: a scale per IR value (its calibrated maximum / 127).
pub struct Quantization {
    pub scales: Vec<f32>,
}

fn quant_err(what: &str, e: impl std::fmt::Display) -> crate::error::CliError {
    crate::cli_err!("cannot quantize {what}: {e}")
}

/// The plan bytes of `ir`: f32 when `quant` is `None`, else int8 with its scales.
pub fn build_plan(ir: &Ir, quant: Option<&Quantization>, layout: Layout) -> Result<Vec<u8>> {
    let precision = if quant.is_some() {
        Precision::Int8
    } else {
        Precision::F32
    };
    let n = ir.values.len();
    if n > MAX_VALUES {
        return Err(crate::cli_err!(
            "cannot deploy: {} ops (at most {})",
            n - 1,
            MAX_VALUES - 1
        ));
    }
    // The final linear layer of an int8 plan keeps its i32 accumulators as logits.
    // (A network of only dropped layers, e.g. Flatten alone, lowers to no op at all.)
    let last = ir.ops.last().ok_or_else(|| {
        crate::cli_err!("cannot deploy: the network has no layer that computes anything")
    })?;
    let i32_out =
        quant.is_some() && matches!(last.kind, IrKind::Linear { .. }) && last.act == Act::None;
    let dtype = |v: usize| match (quant, v == n - 1 && i32_out) {
        (None, _) => DType::F32,
        (Some(_), true) => DType::I32,
        (Some(_), false) => DType::I8,
    };
    let mut values: Vec<ValueRecord> = ir
        .values
        .iter()
        .enumerate()
        .map(|(v, iv)| {
            Ok(ValueRecord {
                dtype: dtype(v),
                shape: [
                    u32_of(iv.shape[0], "channel count")?,
                    u32_of(iv.shape[1], "height")?,
                    u32_of(iv.shape[2], "width")?,
                ],
                offset: 0,
                scale: match quant {
                    Some(q) if dtype(v) == DType::I8 => q.scales[v],
                    _ => 0.0,
                },
            })
        })
        .collect::<Result<_>>()?;
    let sizes: Vec<usize> = values.iter().map(ValueRecord::bytes).collect();
    let mut offsets = vec![0usize; n];
    let arena = match layout {
        Layout::Planned => deploy::plan_arena(&sizes, &lifetimes(ir), &mut offsets)
            .map_err(|e| crate::cli_err!("{e}"))?,
        Layout::Separate => {
            let mut end = 0;
            for (o, s) in offsets.iter_mut().zip(&sizes) {
                *o = end;
                end += s.div_ceil(4) * 4;
            }
            end
        }
    };
    for (v, o) in values.iter_mut().zip(&offsets) {
        v.offset = u32_of(*o, "arena offset")?;
    }
    let mut blob = Blob(Vec::new());
    let mut ops = Vec::with_capacity(ir.ops.len());
    let (mut workspace, mut macs) = (0usize, 0u64);
    for (k, op) in ir.ops.iter().enumerate() {
        let (x, y) = (op.inputs[0], k + 1);
        let mut rec = OpRecord::new(OpKind::Act, x as u32, y as u32);
        rec.act = op.act;
        let kind_and_data = |rec: &mut OpRecord, blob: &mut Blob| -> Result<()> {
            match &op.kind {
                IrKind::Conv { weight, bias, .. } | IrKind::Linear { weight, bias } => {
                    let out = ir.values[y].shape[0];
                    match quant {
                        None => {
                            rec.weight = blob.f32s(weight);
                            if let Some(b) = bias {
                                rec.bias = blob.f32s(b);
                            }
                        }
                        Some(q) => {
                            let mut ws = vec![0.0f32; out];
                            let mut wq = vec![0i8; weight.len()];
                            int8::quantize_per_channel(weight, out, &mut ws, &mut wq)
                                .map_err(|e| quant_err(&op.name, e))?;
                            rec.weight =
                                blob.push(&wq.iter().map(|&v| v as u8).collect::<Vec<_>>());
                            let in_s = q.scales[x];
                            if let Some(b) = bias {
                                let mut bq = vec![0i32; out];
                                int8::quantize_bias(b, &ws, in_s, &mut bq)
                                    .map_err(|e| quant_err(&op.name, e))?;
                                rec.bias = blob.i32s(&bq);
                            }
                            if dtype(y) == DType::I32 {
                                let deq: Vec<f32> = ws.iter().map(|w| w * in_s).collect();
                                rec.aux = blob.f32s(&deq);
                            } else {
                                let mut bytes = Vec::with_capacity(out * 8);
                                for w in &ws {
                                    let r = Requant::from_scale(w * in_s / q.scales[y])
                                        .map_err(|e| quant_err(&op.name, e))?;
                                    bytes.extend_from_slice(&deploy::requant_bytes(r));
                                }
                                rec.aux = blob.push(&bytes);
                            }
                        }
                    }
                    Ok(())
                }
                IrKind::Add => {
                    rec.inputs[1] = op.inputs[1] as u32;
                    if let Some(q) = quant {
                        let mut bytes = Vec::new();
                        for &v in &op.inputs {
                            let r = Requant::from_scale(q.scales[v] / q.scales[y])
                                .map_err(|e| quant_err(&op.name, e))?;
                            bytes.extend_from_slice(&deploy::requant_bytes(r));
                        }
                        rec.aux = blob.push(&bytes);
                    }
                    Ok(())
                }
                IrKind::Act => {
                    if let (Some(q), Act::Sigmoid | Act::Tanh) = (quant, op.act) {
                        rec.kind = OpKind::Lut;
                        let table = act_table(op.act, q.scales[x], q.scales[y])
                            .map_err(|e| quant_err(&op.name, e))?;
                        rec.aux = blob.push(&table.map(|v| v as u8));
                    }
                    Ok(())
                }
                IrKind::AvgPool { input_act, .. } if *input_act != Act::None => {
                    let Some(q) = quant else {
                        return Err(crate::cli_err!(
                            "cannot deploy layer `{}`: an activation before a pooling is an int8 table",
                            op.name
                        ));
                    };
                    rec.act = *input_act;
                    let table = act_table(*input_act, q.scales[x], q.scales[y])
                        .map_err(|e| quant_err(&op.name, e))?;
                    rec.aux = blob.push(&table.map(|v| v as u8));
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        rec.kind = match &op.kind {
            IrKind::Conv {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                rec.dilation = pair(*dilation, "dilation")?;
                rec.groups = u32_of(*groups, "groups")?;
                OpKind::Conv
            }
            IrKind::Linear { .. } => OpKind::Linear,
            IrKind::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                OpKind::MaxPool
            }
            IrKind::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
                ..
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                rec.flags = *count_include_pad as u32;
                OpKind::AvgPool
            }
            IrKind::Add => OpKind::Add,
            IrKind::Act => OpKind::Act,
        };
        kind_and_data(&mut rec, &mut blob)?;
        let (ws, m) = deploy::op_cost(precision, &rec, &values[x], &values[y])
            .map_err(|e| crate::cli_err!("cannot deploy layer `{}`: {e}", op.name))?;
        workspace = workspace.max(ws);
        macs += m;
        ops.push(rec);
    }
    // Pooling and clamps keep their input's scale (the reader checks it).
    let tables = HEADER_LEN + n * VALUE_LEN + ops.len() * OP_LEN;
    let header = Header {
        precision,
        values: n as u32,
        ops: ops.len() as u32,
        arena_bytes: u32_of(arena, "arena size")?,
        workspace_words: u32_of(workspace, "workspace size")?,
        data_offset: tables as u32,
        data_len: u32_of(blob.0.len(), "data size")?,
        macs,
    };
    let mut bytes = Vec::with_capacity(tables + blob.0.len());
    bytes.extend_from_slice(&header.to_bytes());
    for v in &values {
        bytes.extend_from_slice(&v.to_bytes());
    }
    for o in &ops {
        bytes.extend_from_slice(&o.to_bytes());
    }
    bytes.extend_from_slice(&blob.0);
    Ok(bytes)
}

/// The int8 table of `act` (sigmoid or tanh) from `in_s` to `out_s`.
fn act_table(act: Act, in_s: f32, out_s: f32) -> tinycnn_kernels::Result<[i8; 256]> {
    if act == Act::Sigmoid {
        return int8::sigmoid_lut(in_s, out_s);
    }
    let mut t = [0i8; 256];
    for (i, o) in t.iter_mut().enumerate() {
        let r = (i as i32 - 128) as f32 * in_s;
        *o = int8::quantize_one(r.tanh(), out_s);
    }
    Ok(t)
}

/// A plan's bytes in 4-byte aligned memory (what `Plan::parse` needs).
pub struct AlignedPlan(Vec<u32>, usize);

impl AlignedPlan {
    pub fn new(bytes: &[u8]) -> AlignedPlan {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedPlan(words, bytes.len())
    }
    pub fn plan(&self) -> Result<Plan<'_>> {
        Plan::parse(&deploy::words_as_bytes(&self.0)[..self.1])
            .map_err(|e| crate::cli_err!("the plan does not read back: {e}"))
    }
}

/// Runs `plan` on each `[c, h, w]` image of `images` (threads over chunks), giving every
/// image's logits.
pub fn run_all(plan: &Plan<'_>, images: &[f32], kernels: Int8Kernels) -> Result<Vec<f32>> {
    let per = plan.input().elements();
    let classes = plan.output_value().elements();
    let count = images.len() / per;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    let chunk = count.div_ceil(threads).max(1);
    let mut out = vec![0.0f32; count * classes];
    std::thread::scope(|s| {
        let jobs: Vec<_> = images
            .chunks(chunk * per)
            .zip(out.chunks_mut(chunk * classes))
            .map(|(imgs, outs)| {
                s.spawn(move || -> std::result::Result<(), deploy::DeployError> {
                    let mut arena = vec![0u32; plan.arena_words()];
                    let mut ws = vec![0u32; plan.workspace_words()];
                    for (img, o) in imgs.chunks_exact(per).zip(outs.chunks_exact_mut(classes)) {
                        deploy::run(plan, Input::F32(img), &mut arena, &mut ws, kernels)?;
                        deploy::logits(plan, &arena, o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| crate::cli_err!("an inference thread panicked"))?
                .map_err(|e| crate::cli_err!("running the plan: {e}"))?;
        }
        Ok::<(), crate::error::CliError>(())
    })?;
    Ok(out)
}

/// Calibrates int8 scales: the largest magnitude of every value over `images`, / 127.
/// Pooling, flatten and clamps keep their input's scale.
pub fn calibrate(ir: &Ir, images: &[f32]) -> Result<Quantization> {
    let bytes = build_plan(ir, None, Layout::Separate)?;
    let aligned = AlignedPlan::new(&bytes);
    let plan = aligned.plan()?;
    let per = plan.input().elements();
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut max = vec![0.0f32; ir.values.len()];
    for img in images.chunks_exact(per) {
        deploy::run(
            &plan,
            Input::F32(img),
            &mut arena,
            &mut ws,
            Int8Kernels::Plain,
        )
        .map_err(|e| crate::cli_err!("calibration run: {e}"))?;
        let all = deploy::words_as_bytes(&arena);
        for (v, m) in max.iter_mut().enumerate() {
            let r = plan.value(v);
            let b = &all[r.offset as usize..r.offset as usize + r.bytes()];
            for c in b.chunks_exact(4) {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]).abs();
                if x > *m {
                    *m = x;
                }
            }
        }
    }
    let mut scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    for (k, op) in ir.ops.iter().enumerate() {
        let keeps = matches!(op.kind, IrKind::MaxPool { .. } | IrKind::AvgPool { .. })
            || (op.kind == IrKind::Act && matches!(op.act, Act::Relu | Act::Relu6));
        if keeps {
            scales[k + 1] = scales[op.inputs[0]];
        }
    }
    Ok(Quantization { scales })
}
