//! int8 only: a sigmoid or tanh table op fused into the average pooling that alone reads
//! its output, so the table's output is never stored (one op and one activation less, and
//! each input value looked up as its window sums it: `tinycnn_kernels::int8::qlut_avg_pool2d_forward`).

use super::*;

/// `ir` and its scales with every table op whose output only an average pooling reads
/// (and which is not the network's output) folded into that pooling as its `input_act`.
/// The pooling's output keeps its scale: the table's output scale, which calibration gave
/// the pooling ([`calibrate`]: pooling keeps its input's scale), so the fused table maps
/// the table op's input scale to it, as the table op did.
pub fn fuse_tables(ir: &Ir, q: &Quantization) -> (Ir, Quantization) {
    let n = ir.values.len();
    let mut readers = vec![0usize; n];
    for op in &ir.ops {
        for &v in &op.inputs {
            readers[v] += 1;
        }
    }
    // fused[k]: op k is a table op folded into its reader.
    let fused: Vec<bool> = ir
        .ops
        .iter()
        .enumerate()
        .map(|(k, op)| {
            op.kind == IrKind::Act
                && matches!(op.act, Act::Sigmoid | Act::Tanh)
                && k + 1 != n - 1
                && readers[k + 1] == 1
                && ir.ops.iter().any(|r| {
                    r.inputs == [k + 1]
                        && matches!(
                            r.kind,
                            IrKind::AvgPool {
                                input_act: Act::None,
                                ..
                            }
                        )
                })
        })
        .collect();
    // New value indices: a folded op's output is its input's (never read by the new IR).
    let mut map: Vec<usize> = Vec::with_capacity(n);
    map.push(0);
    let mut out = Ir {
        values: vec![ir.values[0].clone()],
        ops: Vec::new(),
    };
    let mut scales = vec![q.scales[0]];
    for (k, op) in ir.ops.iter().enumerate() {
        if fused[k] {
            map.push(map[op.inputs[0]]);
            continue;
        }
        let mut new = op.clone();
        new.inputs = op.inputs.iter().map(|&v| map[v]).collect();
        if let IrKind::AvgPool { input_act, .. } = &mut new.kind {
            let x = op.inputs[0];
            if x > 0 && fused[x - 1] {
                let table = &ir.ops[x - 1];
                *input_act = table.act;
                new.name = format!("{}+{}", table.name, op.name);
            }
        }
        out.ops.push(new);
        out.values.push(ir.values[k + 1].clone());
        scales.push(q.scales[k + 1]);
        map.push(out.values.len() - 1);
    }
    (out, Quantization { scales })
}
