//! The plan reader, the arena planner and the executor on hand-built plans.

extern crate std;
use super::format::*;
use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// A plan from records and data (tables, then the data at a 4-byte boundary), in words.
fn assemble(
    precision: Precision,
    values: &[ValueRecord],
    ops: &[OpRecord],
    data: &[u8],
) -> Vec<u32> {
    let tables = HEADER_LEN + values.len() * VALUE_LEN + ops.len() * OP_LEN;
    let arena = values
        .iter()
        .map(|v| v.offset as usize + v.bytes())
        .max()
        .unwrap_or(0)
        .div_ceil(4)
        * 4;
    let (mut ws, mut macs) = (0, 0);
    for o in ops {
        let (w, m) = op_cost(
            precision,
            o,
            &values[o.inputs[0] as usize],
            &values[o.output as usize],
        )
        .unwrap();
        ws = ws.max(w);
        macs += m;
    }
    let header = Header {
        precision,
        values: values.len() as u32,
        ops: ops.len() as u32,
        arena_bytes: arena as u32,
        workspace_words: ws as u32,
        data_offset: tables as u32,
        data_len: data.len() as u32,
        macs,
    };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&header.to_bytes());
    values
        .iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_bytes()));
    ops.iter()
        .for_each(|o| bytes.extend_from_slice(&o.to_bytes()));
    bytes.extend_from_slice(data);
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    words.push(bytes.len() as u32); // the length, popped by `bytes_of`
    words
}

fn bytes_of(words: &[u32]) -> &[u8] {
    let (len, body) = words.split_last().unwrap();
    &words_as_bytes(body)[..*len as usize]
}

fn f32_value(shape: [u32; 3], offset: u32) -> ValueRecord {
    ValueRecord {
        dtype: DType::F32,
        shape,
        offset,
        scale: 0.0,
    }
}

/// x [1, 4, 4] -> conv 3x3 pad 1 (2 channels) + ReLU -> maxpool 2 -> linear 8 -> 3.
fn small_f32_plan() -> Vec<u32> {
    let values = [
        f32_value([1, 4, 4], 0),
        f32_value([2, 4, 4], 64),
        f32_value([2, 2, 2], 0),
        f32_value([3, 1, 1], 32),
    ];
    let mut data = Vec::new();
    let mut push = |v: &[f32]| {
        let span = Span {
            offset: data.len() as u32,
            len: 4 * v.len() as u32,
        };
        v.iter()
            .for_each(|x| data.extend_from_slice(&x.to_le_bytes()));
        span
    };
    let w1: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect();
    let mut conv = OpRecord::new(OpKind::Conv, 0, 1);
    conv.kernel = [3, 3];
    conv.padding = [1, 1];
    conv.act = Act::Relu;
    conv.weight = push(&w1);
    conv.bias = push(&[0.5, -0.25]);
    let mut pool = OpRecord::new(OpKind::MaxPool, 1, 2);
    pool.kernel = [2, 2];
    pool.stride = [2, 2];
    let mut fc = OpRecord::new(OpKind::Linear, 2, 3);
    let w3: Vec<f32> = (0..24).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    fc.weight = push(&w3);
    assemble(Precision::F32, &values, &[conv, pool, fc], &data)
}

#[test]
fn small_f32_plan_runs_like_hand_computation() {
    let words = small_f32_plan();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    assert_eq!(plan.macs(), 2 * 16 * 9 + 24);
    let x: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    run(
        &plan,
        Input::F32(&x),
        &mut arena,
        &mut ws,
        Int8Kernels::Plain,
    )
    .unwrap();
    let mut y = [0.0f32; 3];
    logits(&plan, &arena, &mut y).unwrap();
    // The naive computation of the same network.
    let w1: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect();
    let b1 = [0.5f32, -0.25];
    let mut c = [[0.0f32; 16]; 2];
    for (o, co) in c.iter_mut().enumerate() {
        for oy in 0..4i32 {
            for ox in 0..4i32 {
                let mut acc = b1[o];
                for ky in 0..3i32 {
                    for kx in 0..3i32 {
                        let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                        if (0..4).contains(&iy) && (0..4).contains(&ix) {
                            acc += x[(iy * 4 + ix) as usize] * w1[o * 9 + (ky * 3 + kx) as usize];
                        }
                    }
                }
                co[(oy * 4 + ox) as usize] = acc.max(0.0);
            }
        }
    }
    let mut p = [0.0f32; 8];
    for o in 0..2 {
        for py in 0..2 {
            for px in 0..2 {
                let m = [0, 1, 4, 5]
                    .iter()
                    .map(|d| c[o][py * 8 + px * 2 + d])
                    .fold(f32::MIN, f32::max);
                p[o * 4 + py * 2 + px] = m;
            }
        }
    }
    let w3: Vec<f32> = (0..24).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    for (o, &got) in y.iter().enumerate() {
        let want: f32 = (0..8).map(|i| p[i] * w3[o * 8 + i]).sum();
        assert!((got - want).abs() < 1e-5, "{o}: {got} vs {want}");
    }
}

#[test]
fn overlapping_live_values_are_refused() {
    let mut words = small_f32_plan();
    // Put the pool output (value 2) on the conv output it reads.
    let at = HEADER_LEN + 2 * VALUE_LEN + 16;
    words_as_bytes_mut(&mut words)[at..at + 4].copy_from_slice(&64u32.to_le_bytes());
    let e = Plan::parse(bytes_of(&words)).unwrap_err();
    assert!(matches!(e, DeployError::Op { op: 1, .. }), "{e}");
}

#[test]
fn small_buffers_and_bad_headers_are_errors() {
    let words = small_f32_plan();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let x = [0.0f32; 16];
    let mut arena = vec![0u32; plan.arena_words() - 1];
    let mut ws = vec![0u32; plan.workspace_words()];
    let e = run(
        &plan,
        Input::F32(&x),
        &mut arena,
        &mut ws,
        Int8Kernels::Plain,
    )
    .unwrap_err();
    assert!(matches!(e, DeployError::Buffer { what: "arena", .. }));
    let b = bytes_of(&words);
    assert!(Plan::parse(&b[..b.len() - 1]).is_err());
    assert!(Plan::parse(&b[..10]).is_err());
    // The MAC count is part of what the reader checks.
    let mut w2 = words.clone();
    words_as_bytes_mut(&mut w2)[40] ^= 1;
    assert!(Plan::parse(bytes_of(&w2)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes: an error or a plan, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        let _ = Plan::parse(&words_as_bytes(&words)[..bytes.len()]);
        let mut magic = words.clone();
        let b = words_as_bytes_mut(&mut magic);
        if b.len() >= 12 {
            b[..8].copy_from_slice(&MAGIC);
            b[8..12].copy_from_slice(&VERSION.to_le_bytes());
            let _ = Plan::parse(&words_as_bytes(&magic)[..bytes.len()]);
        }
    }

    /// A valid plan with a few words changed: an error, or a plan that runs or refuses.
    #[test]
    fn mutated_plans_never_panic(edits in proptest::collection::vec((0usize..600, any::<u32>()), 1..4)) {
        let mut words = small_f32_plan();
        let n = words.len() - 1;
        for (at, v) in edits {
            words[at % n] = v;
        }
        if let Ok(plan) = Plan::parse(bytes_of(&words)) {
            let x = [0.5f32; 16];
            let mut arena = vec![0u32; plan.arena_words()];
            let mut ws = vec![0u32; plan.workspace_words()];
            if plan.input().elements() == 16 && plan.arena_words() < 1 << 16 && plan.workspace_words() < 1 << 16 {
                let _ = run(&plan, Input::F32(&x), &mut arena, &mut ws, Int8Kernels::Plain);
                let mut y = vec![0.0; plan.output_value().elements().min(1 << 16)];
                let _ = logits(&plan, &arena, &mut y);
            }
        }
    }

    /// The planner: values live at a common step never share bytes, the arena is at least
    /// the largest live set and every value fits.
    #[test]
    fn planned_arenas_never_overlap_live_values(
        spec in proptest::collection::vec((1usize..300, 0usize..6), 1..24)
    ) {
        let sizes: Vec<usize> = spec.iter().map(|s| s.0).collect();
        let lives: Vec<Lifetime> = spec
            .iter()
            .enumerate()
            .map(|(v, s)| Lifetime { def: v, last: v + s.1 })
            .collect();
        let mut off = vec![0; sizes.len()];
        let arena = plan_arena(&sizes, &lives, &mut off).unwrap();
        let peak = peak_live_bytes(&sizes, &lives).unwrap();
        prop_assert!(arena >= peak);
        for v in 0..sizes.len() {
            prop_assert!(off[v].is_multiple_of(ALIGN) && off[v] + sizes[v] <= arena);
            for u in v + 1..sizes.len() {
                if lives[u].overlaps(&lives[v]) {
                    prop_assert!(off[u] + sizes[u] <= off[v] || off[v] + sizes[v] <= off[u]);
                }
            }
        }
        // The peak is the largest sum of sizes live at one step (checked by brute force).
        let end = lives.iter().map(|l| l.last).max().unwrap();
        let brute = (0..=end)
            .map(|t| lives.iter().zip(&sizes).filter(|(l, _)| l.def <= t && t <= l.last).map(|(_, s)| s.div_ceil(4) * 4).sum::<usize>())
            .max()
            .unwrap();
        prop_assert_eq!(peak, brute);
    }
}

#[test]
fn chain_arena_is_the_largest_live_pair() {
    // LeNet's f32 activations: input, conv1, pool1, conv2, pool2, fc1, fc2, fc3.
    let sizes = [3136, 18816, 4704, 6400, 1600, 480, 336, 40];
    let lives: Vec<Lifetime> = (0..8)
        .map(|v| Lifetime {
            def: v,
            last: if v == 7 { 8 } else { v + 1 },
        })
        .collect();
    let mut off = [0; 8];
    let arena = plan_arena(&sizes, &lives, &mut off).unwrap();
    assert_eq!(peak_live_bytes(&sizes, &lives).unwrap(), 18816 + 4704);
    assert_eq!(arena, 18816 + 4704);
}

#[test]
fn residual_keeps_the_skip_value_alive() {
    // v0 input; v1 = conv(v0); v2 = conv(v1); v3 = conv(v2); v4 = v1 + v3 (skip from v1).
    let sizes = [100, 100, 100, 100, 100];
    let lives = [
        Lifetime { def: 0, last: 1 },
        Lifetime { def: 1, last: 4 },
        Lifetime { def: 2, last: 3 },
        Lifetime { def: 3, last: 4 },
        Lifetime { def: 4, last: 5 },
    ];
    let mut off = [0; 5];
    let arena = plan_arena(&sizes, &lives, &mut off).unwrap();
    // At step 3, v1 (the skip), v2 and v3 are live together.
    assert_eq!(peak_live_bytes(&sizes, &lives).unwrap(), 300);
    assert_eq!(arena, 300);
    for u in [2, 3, 4] {
        assert!(off[u] + 100 <= off[1] || off[1] + 100 <= off[u], "{off:?}");
    }
}

#[test]
fn int8_plan_matches_the_naive_arithmetic() {
    // x [1, 3, 3] -> conv 2x2 (1 channel, bias) + ReLU6 -> v1; clamp(v1) -> v2; v1 + v2.
    let sx = 0.05f32;
    let sy = 0.1f32;
    let values = [
        ValueRecord {
            dtype: DType::I8,
            shape: [1, 3, 3],
            offset: 0,
            scale: sx,
        },
        ValueRecord {
            dtype: DType::I8,
            shape: [1, 2, 2],
            offset: 12,
            scale: sy,
        },
        ValueRecord {
            dtype: DType::I8,
            shape: [1, 2, 2],
            offset: 16,
            scale: sy,
        },
        ValueRecord {
            dtype: DType::I8,
            shape: [1, 2, 2],
            offset: 0,
            scale: 0.2,
        },
    ];
    let mut data = Vec::new();
    let w: [i8; 4] = [10, -20, 30, 127];
    data.extend(w.map(|v| v as u8));
    let bias = 7i32;
    data.extend_from_slice(&bias.to_le_bytes());
    let r = int8::Requant::from_scale(0.5 * sx / sy).unwrap();
    data.extend_from_slice(&requant_bytes(r));
    let (ra, rb) = (
        int8::Requant::from_scale(sy / 0.2).unwrap(),
        int8::Requant::from_scale(sy / 0.2).unwrap(),
    );
    data.extend_from_slice(&requant_bytes(ra));
    data.extend_from_slice(&requant_bytes(rb));
    let mut conv = OpRecord::new(OpKind::Conv, 0, 1);
    conv.kernel = [2, 2];
    conv.act = Act::Relu6;
    conv.weight = Span { offset: 0, len: 4 };
    conv.bias = Span { offset: 4, len: 4 };
    conv.aux = Span { offset: 8, len: 8 };
    let mut clamp = OpRecord::new(OpKind::Act, 1, 2);
    clamp.act = Act::Relu;
    let mut add = OpRecord::new(OpKind::Add, 1, 3);
    add.inputs[1] = 2;
    add.aux = Span {
        offset: 16,
        len: 16,
    };
    let words = assemble(Precision::Int8, &values, &[conv, clamp, add], &data);
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let x = [0.0f32, 0.3, -0.5, 1.0, 2.0, 6.35, -6.35, 0.05, 0.1];
    let mut outs = Vec::new();
    for k in [Int8Kernels::Plain, Int8Kernels::Dsp, Int8Kernels::Reference] {
        let mut arena = vec![0u32; plan.arena_words()];
        let mut ws = vec![0u32; plan.workspace_words()];
        run(&plan, Input::F32(&x), &mut arena, &mut ws, k).unwrap();
        match output(&plan, &arena).unwrap() {
            Output::I8 { values, scale } => {
                assert_eq!(scale, 0.2);
                outs.push(values.to_vec());
            }
            _ => panic!("int8 output expected"),
        }
    }
    // By hand: q(x) = round(x / 0.05) clamped to 127.
    let q: Vec<i32> = x
        .iter()
        .map(|v| ((v / sx).round() as i32).clamp(-127, 127))
        .collect();
    let relu6_max = (6.0f32 / sy).round().min(127.0) as i64;
    let mut want = Vec::new();
    for (oy, ox) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let mut acc = bias;
        for (ky, kx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            acc += q[(oy + ky) * 3 + ox + kx] * w[ky * 2 + kx] as i32;
        }
        let c = r.apply(acc).clamp(0, relu6_max);
        let clamped = c.max(0);
        let s = ra.apply(c as i32) + rb.apply(clamped as i32);
        want.push(s.clamp(-127, 127) as i8);
    }
    for o in &outs {
        assert_eq!(o, &want);
    }
}

#[test]
fn link_set_of_a_plan_is_its_precision_and_op_kinds() {
    let words = small_f32_plan();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let set = link::needed_by(&plan);
    assert_eq!(
        set,
        link::F32 | link::op(OpKind::Conv) | link::op(OpKind::MaxPool) | link::op(OpKind::Linear)
    );
    for kind in [OpKind::AvgPool, OpKind::Add, OpKind::Act, OpKind::Lut] {
        assert!(!link::has(set, link::op(kind)), "{kind:?}");
    }
    assert!(!link::has(set, link::INT8));
    // Seven op kinds and two precisions, each its own bit.
    let bits = [
        OpKind::Conv,
        OpKind::Linear,
        OpKind::MaxPool,
        OpKind::AvgPool,
        OpKind::Add,
        OpKind::Act,
        OpKind::Lut,
    ]
    .map(link::op);
    let all = bits.iter().fold(link::F32 | link::INT8, |a, &b| {
        assert_eq!(a & b, 0);
        a | b
    });
    assert_eq!(all.count_ones(), 9);
    for part in [link::CONV_PATHS, link::AVG_POOL_TABLE] {
        assert_eq!(all & part, 0);
    }
}

#[test]
fn run_linked_runs_what_it_links_and_refuses_the_rest() {
    let words = small_f32_plan();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let x: Vec<f32> = (0..16).map(|i| (i as f32 - 5.0) / 8.0).collect();
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut want = vec![0u32; plan.arena_words()];
    run(
        &plan,
        Input::F32(&x),
        &mut want,
        &mut ws,
        Int8Kernels::Plain,
    )
    .unwrap();
    // The plan's own set (what a firmware's build script computes): the same output.
    const SET: u32 =
        link::F32 | link::op(OpKind::Conv) | link::op(OpKind::MaxPool) | link::op(OpKind::Linear);
    assert_eq!(SET, link::needed_by(&plan));
    let mut got = vec![0u32; plan.arena_words()];
    run_linked::<SET>(&plan, Input::F32(&x), &mut got, &mut ws, Int8Kernels::Plain).unwrap();
    let (mut a, mut b) = ([0.0f32; 3], [0.0f32; 3]);
    logits(&plan, &want, &mut a).unwrap();
    logits(&plan, &got, &mut b).unwrap();
    assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
    // Without the precision: refused before anything runs.
    const INT8_ONLY: u32 =
        link::INT8 | link::op(OpKind::Conv) | link::op(OpKind::MaxPool) | link::op(OpKind::Linear);
    let e = run_linked::<INT8_ONLY>(&plan, Input::F32(&x), &mut got, &mut ws, Int8Kernels::Plain)
        .unwrap_err();
    assert!(matches!(e, DeployError::Plan { .. }), "{e}");
    // Without max pooling: refused at that op (op 1).
    const NO_POOL: u32 = link::F32 | link::op(OpKind::Conv) | link::op(OpKind::Linear);
    let e = run_linked::<NO_POOL>(&plan, Input::F32(&x), &mut got, &mut ws, Int8Kernels::Plain)
        .unwrap_err();
    assert!(matches!(e, DeployError::Op { op: 1, .. }), "{e}");
}

/// x [1, 4, 4] -> a table fused into 2x2 average pooling -> [1, 2, 2] (int8), with the
/// pooling record changed by `edit`.
fn table_pool_plan(edit: impl Fn(&mut OpRecord)) -> Vec<u32> {
    let value = |shape, offset, scale| ValueRecord {
        dtype: DType::I8,
        shape,
        offset,
        scale,
    };
    let values = [value([1, 4, 4], 0, 0.1), value([1, 2, 2], 16, 0.01)];
    // table[v + 128] = v / 2 + 3 (any function will do: it is a lookup).
    let table: Vec<u8> = (-128i32..128).map(|v| (v / 2 + 3) as i8 as u8).collect();
    let mut pool = OpRecord::new(OpKind::AvgPool, 0, 1);
    pool.kernel = [2, 2];
    pool.stride = [2, 2];
    pool.act = Act::Sigmoid;
    pool.aux = Span {
        offset: 0,
        len: 256,
    };
    edit(&mut pool);
    assemble(Precision::Int8, &values, &[pool], &table)
}

#[test]
fn a_table_fused_into_average_pooling_runs_and_links_on_its_own() {
    let words = table_pool_plan(|_| {});
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    // Quantized at 0.1: the integers 0..16 minus 8.
    let x: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 10.0).collect();
    // By hand: windows of q = [[-8, -7, ...]] rows of 4; t(v) = v / 2 + 3 (toward zero).
    let t = |v: i32| v / 2 + 3;
    let q = |r: usize, c: usize| (r * 4 + c) as i32 - 8;
    let want: Vec<i8> = [(0, 0), (0, 2), (2, 0), (2, 2)]
        .iter()
        .map(|&(r, c)| {
            let sum = t(q(r, c)) + t(q(r, c + 1)) + t(q(r + 1, c)) + t(q(r + 1, c + 1));
            // Rounded half away from zero.
            let a = (sum.abs() + 2) / 4;
            (if sum < 0 { -a } else { a }) as i8
        })
        .collect();
    assert_eq!(want, [1, 2, 4, 5]); // sums 2, 6, 16, 20
    for k in [Int8Kernels::Plain, Int8Kernels::Dsp, Int8Kernels::Reference] {
        let mut arena = vec![0u32; plan.arena_words()];
        let mut ws = vec![0u32; plan.workspace_words()];
        run(&plan, Input::F32(&x), &mut arena, &mut ws, k).unwrap();
        match output(&plan, &arena).unwrap() {
            Output::I8 { values, scale } => {
                assert_eq!((values, scale), (&want[..], 0.01), "{k:?}");
            }
            _ => panic!("int8 output expected"),
        }
    }
    // Its own link bit: the plain average pooling is not linked, and without the bit the
    // executor refuses the op.
    const SET: u32 = link::INT8 | link::AVG_POOL_TABLE;
    assert_eq!(link::needed_by(&plan), SET);
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    run_linked::<SET>(&plan, Input::F32(&x), &mut arena, &mut ws, Int8Kernels::Dsp).unwrap();
    const PLAIN: u32 = link::INT8 | link::op(OpKind::AvgPool);
    let e = run_linked::<PLAIN>(&plan, Input::F32(&x), &mut arena, &mut ws, Int8Kernels::Dsp)
        .unwrap_err();
    assert!(matches!(e, DeployError::Op { op: 0, .. }), "{e}");
    // The reader refuses a table on max pooling, a short table and ReLU as a table.
    for edit in [
        (|o: &mut OpRecord| o.kind = OpKind::MaxPool) as fn(&mut OpRecord),
        |o| o.aux.len = 128,
        |o| o.act = Act::Relu,
        |o| o.aux = Span::default(),
    ] {
        let words = table_pool_plan(edit);
        assert!(Plan::parse(bytes_of(&words)).is_err());
    }
}

#[test]
fn prechecked_reads_what_parse_accepts_and_refuses_unreadable_bytes() {
    let words = small_f32_plan();
    let b = bytes_of(&words);
    let plan = Plan::parse_prechecked(b).unwrap();
    assert_eq!(plan.header(), Plan::parse(b).unwrap().header());
    assert_eq!(plan.ops(), 3);
    // Too short for its tables and data, or not a plan at all: refused.
    assert!(Plan::parse_prechecked(&b[..b.len() - 1]).is_err());
    assert!(Plan::parse_prechecked(&b[..10]).is_err());
    let mut w2 = words.clone();
    words_as_bytes_mut(&mut w2)[0] ^= 1;
    assert!(Plan::parse_prechecked(bytes_of(&w2)).is_err());
    // The per-op checks are `parse`'s alone: a wrong MAC count passes here.
    let mut w3 = words.clone();
    words_as_bytes_mut(&mut w3)[40] ^= 1;
    assert!(Plan::parse(bytes_of(&w3)).is_err());
    assert!(Plan::parse_prechecked(bytes_of(&w3)).is_ok());
}

/// Three int8 convolutions (5x5, padding 2, 16x16) in an arena where each leaves a value's
/// bytes free: v0 [1,16,16] at 2048, v1 = conv(v0) [4,16,16] at 0, v2 = conv(v1) [4,16,16]
/// at 1024, v3 = conv(v2) [2,16,16] at 0; 2,304 bytes.
fn three_convs() -> Vec<u32> {
    let value = |c: u32, offset: u32| ValueRecord {
        dtype: DType::I8,
        shape: [c, 16, 16],
        offset,
        scale: 0.05,
    };
    let values = [value(1, 2048), value(4, 0), value(4, 1024), value(2, 0)];
    let mut rng = 0x2545_f491_u32;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut data = Vec::new();
    let mut ops = Vec::new();
    for (k, (cin, cout)) in [(1u32, 4u32), (4, 4), (4, 2)].into_iter().enumerate() {
        let mut op = OpRecord::new(OpKind::Conv, k as u32, k as u32 + 1);
        op.kernel = [5, 5];
        op.padding = [2, 2];
        let taps = (cin * cout * 25) as usize;
        let at = data.len() as u32;
        data.extend((0..taps).map(|_| next() as u8));
        data.resize(data.len().next_multiple_of(4), 0);
        op.weight = Span {
            offset: at,
            len: taps as u32,
        };
        let at = data.len() as u32;
        for _ in 0..cout {
            data.extend_from_slice(&((next() % 2001) as i32 - 1000).to_le_bytes());
        }
        op.bias = Span {
            offset: at,
            len: 4 * cout,
        };
        let at = data.len() as u32;
        for _ in 0..cout {
            // Scales below 1/4: shifts from 33, the DSP window path's requantization.
            let scale = 0.002 + (next() % 1000) as f32 * 1e-5;
            data.extend_from_slice(&requant_bytes(int8::Requant::from_scale(scale).unwrap()));
        }
        op.aux = Span {
            offset: at,
            len: 8 * cout,
        };
        ops.push(op);
    }
    assemble(Precision::Int8, &values, &ops, &data)
}

#[test]
fn free_arena_range_is_the_largest_stretch_of_dead_or_unwritten_values() {
    let words = three_convs();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    assert_eq!(plan.arena_words(), 2304 / 4);
    // op 0 reads v0 (2048..2304) and writes v1 (0..1024): v2's bytes are not written yet.
    assert_eq!(exec::free_arena_range(&plan, 0, 2304), (1024, 2048));
    // op 1 reads v1 and writes v2: v0 is dead.
    assert_eq!(exec::free_arena_range(&plan, 1, 2304), (2048, 2304));
    // op 2 reads v2 (1024..2048) and writes v3 (0..512): v1's tail and v0 are free.
    assert_eq!(exec::free_arena_range(&plan, 2, 2304), (512, 1024));
    // A larger arena than the plan's: its tail is free too.
    assert_eq!(exec::free_arena_range(&plan, 2, 4000), (2048, 4000));
    // op 0's window path (one input channel: row pairs of 6 x 5 + 4 = 24 words) needs 5
    // widened rows per output row plus 3 x 5 weight words, 135 words: the free 256 words
    // hold bands of (256 - 15) / 24 - 4 = 6 rows, not half the output's (8 rows: 12 x 24
    // + 15 = 303 words). Ops 1 and 2 (two channel pairs: 10 pair rows of 24 words for the
    // first output row, 2 more per further row, 10 x 5 weight words) need 24 x 24 + 50 =
    // 626 words for bands of 8 rows; their free 64 and 128 words hold not even one row.
    // The fast workspace asks for the largest of those.
    assert_eq!(fast_workspace_words(&plan), 24 * 24 + 50);
}

#[test]
fn convolutions_in_free_arena_ranges_match_the_reference() {
    let words = three_convs();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let x: Vec<f32> = (0..256)
        .map(|i| ((i * 37) % 101) as f32 / 25.0 - 2.0)
        .collect();
    let mut want = None;
    // The reference, then the DSP kernels with the least workspace (op 0 in bands of 6 rows
    // in v2's bytes), a workspace between (op 0 in the larger workspace, no bands of one
    // row in the arena) and the fast one (whole images, no arena).
    for (kernels, ws) in [
        (Int8Kernels::Reference, plan.workspace_words()),
        (Int8Kernels::Dsp, plan.workspace_words()),
        (Int8Kernels::Dsp, 300),
        (Int8Kernels::Dsp, fast_workspace_words(&plan)),
        (Int8Kernels::Plain, plan.workspace_words()),
    ] {
        let mut arena = vec![0x5a5a_5a5au32; plan.arena_words()];
        let mut workspace = vec![0xa5a5_a5a5u32; ws];
        run(&plan, Input::F32(&x), &mut arena, &mut workspace, kernels).unwrap();
        let got = match output(&plan, &arena).unwrap() {
            Output::I8 { values, .. } => values.to_vec(),
            _ => panic!("int8 output expected"),
        };
        assert!(
            got.iter().any(|&v| v != got[0]),
            "a constant output tests little"
        );
        match &want {
            None => want = Some(got),
            Some(w) => assert_eq!(&got, w, "{kernels:?} with {ws} words"),
        }
        // The same arena ranges given up front (`run_linked_scratch`): the same arena.
        let table: Vec<(u32, u32)> = (0..plan.ops())
            .map(|k| dsp_conv_scratch(&plan, k, ws))
            .map(|(a, b)| (a as u32, b as u32))
            .collect();
        let mut given = vec![0x5a5a_5a5au32; plan.arena_words()];
        let mut workspace = vec![0xa5a5_a5a5u32; ws];
        let input = Input::F32(&x);
        run_linked_scratch::<{ link::ALL }>(
            &plan,
            input,
            &mut given,
            &mut workspace,
            kernels,
            &table,
        )
        .unwrap();
        assert_eq!(given, arena, "{kernels:?} with {ws} words, ranges given");
    }
    // With the least workspace, op 0 runs in v2's bytes (1024..2048, free before op 1
    // writes v2): the table says so, and a range over op 0's input is refused.
    let least = plan.workspace_words();
    assert_eq!(dsp_conv_scratch(&plan, 0, least), (1024, 2048));
    assert_eq!(dsp_conv_scratch(&plan, 1, 300), (0, 0));
    let mut arena = vec![0u32; plan.arena_words()];
    let mut workspace = vec![0u32; least];
    let over_input = [(2048u32, 2304u32)];
    let r = run_linked_scratch::<{ link::ALL }>(
        &plan,
        Input::F32(&x),
        &mut arena,
        &mut workspace,
        Int8Kernels::Dsp,
        &over_input,
    );
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn dsp_link_set_holds_the_conv_paths_the_workspace_takes() {
    let words = three_convs();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let base = link::INT8 | link::op(OpKind::Conv);
    assert_eq!(link::needed_by(&plan), base | link::CONV_PATHS);
    // The least workspace: op 0 in the arena's free 256 words (window), ops 1 and 2 have
    // no room for a band (general).
    let least = plan.workspace_words();
    assert!(least < 290);
    assert_eq!(
        link::needed_by_dsp(&plan, least),
        base | link::CONV_WINDOW | link::CONV_GENERAL
    );
    // 290 words hold one output row of ops 1 and 2 (10 pair rows x 24 + 50): all window.
    assert_eq!(link::needed_by_dsp(&plan, 290), base | link::CONV_WINDOW);
    assert_eq!(
        link::needed_by_dsp(&plan, 289),
        link::needed_by_dsp(&plan, least)
    );
    let fast = fast_workspace_words(&plan);
    const WINDOW_ONLY: u32 = link::INT8 | link::op(OpKind::Conv) | link::CONV_WINDOW;
    assert_eq!(link::needed_by_dsp(&plan, fast), WINDOW_ONLY);
    let x = [0.5f32; 256];
    let mut arena = vec![0u32; plan.arena_words()];
    let (mut ws, mut ws_all) = (vec![0u32; fast], vec![0u32; fast]);
    run_linked::<WINDOW_ONLY>(&plan, Input::F32(&x), &mut arena, &mut ws, Int8Kernels::Dsp)
        .unwrap();
    let i8_of = |arena: &[u32]| match output(&plan, arena).unwrap() {
        Output::I8 { values, .. } => values.to_vec(),
        _ => panic!("int8 output expected"),
    };
    let got = i8_of(&arena);
    let mut arena_all = vec![0u32; plan.arena_words()];
    run(
        &plan,
        Input::F32(&x),
        &mut arena_all,
        &mut ws_all,
        Int8Kernels::Reference,
    )
    .unwrap();
    assert_eq!(got, i8_of(&arena_all));
    // With less workspace ops 1 and 2 need the general path, which this set leaves out.
    let mut small = vec![0u32; least];
    assert!(run_linked::<WINDOW_ONLY>(
        &plan,
        Input::F32(&x),
        &mut arena,
        &mut small,
        Int8Kernels::Dsp
    )
    .is_err());
}

#[test]
fn pixels_in_the_arena_run_like_pixels_given() {
    // Bytes 0..=255 spread over the input, with repeats (the memo's second reads).
    let pixels: Vec<u8> = (0..256u32).map(|i| (i * 97 % 256) as u8).collect();
    for (words, n) in [(small_f32_plan(), 16), (three_convs(), 256)] {
        let plan = Plan::parse(bytes_of(&words)).unwrap();
        let px = &pixels[..n];
        let mut given = vec![0u32; plan.arena_words()];
        let mut ws = vec![0u32; plan.workspace_words()];
        let input = Input::U8 {
            pixels: px,
            divisor: 255.0,
        };
        run(&plan, input, &mut given, &mut ws, Int8Kernels::Plain).unwrap();
        let mut in_arena = vec![0u32; plan.arena_words()];
        input_pixels_mut(&plan, &mut in_arena)
            .unwrap()
            .copy_from_slice(px);
        let input = Input::U8InArena { divisor: 255.0 };
        run(&plan, input, &mut in_arena, &mut ws, Int8Kernels::Plain).unwrap();
        assert_eq!(in_arena, given);
        let x = plan.input();
        let at = x.offset as usize;
        if plan.precision() == Precision::Int8 {
            // Still there after the run (no op writes v0's bytes): round(p / 255 / 0.05).
            let q = &words_as_bytes(&in_arena)[at..at + n];
            for (&p, &q) in px.iter().zip(q) {
                let want = ((p as f64 / 255.0 / 0.05).round() as i32).min(127);
                assert_eq!(q as i8 as i32, want, "pixel {p}");
            }
        }
    }
    // An arena smaller than the plan's has no room for the pixels.
    let words = three_convs();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    assert!(input_pixels_mut(&plan, &mut [0u32; 16]).is_err());
}

#[test]
fn pixels_by_table_run_like_pixels_given() {
    // Every byte value, some twice, through an int8 plan (input scale 0.05).
    let pixels: Vec<u8> = (0..256u32).map(|i| (i * 97 % 256) as u8).collect();
    let words = three_convs();
    let plan = Plan::parse(bytes_of(&words)).unwrap();
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut given = vec![0u32; plan.arena_words()];
    let input = Input::U8 {
        pixels: &pixels,
        divisor: 255.0,
    };
    run(&plan, input, &mut given, &mut ws, Int8Kernels::Plain).unwrap();
    let mut table = PixelTable::EMPTY;
    table.fill(&plan, 255.0).unwrap();
    for p in 0..=255u8 {
        let want = ((p as f64 / 255.0 / 0.05).round() as i32).min(127);
        assert_eq!(table.value(p) as i32, want, "pixel {p}");
    }
    let mut by_table = vec![0u32; plan.arena_words()];
    input_pixels_mut(&plan, &mut by_table)
        .unwrap()
        .copy_from_slice(&pixels);
    let input = Input::U8InArenaTable(&table);
    run(&plan, input, &mut by_table, &mut ws, Int8Kernels::Plain).unwrap();
    assert_eq!(by_table, given);
    // A table for no plan, or for another input scale, is refused.
    let e = run(
        &plan,
        Input::U8InArenaTable(&PixelTable::EMPTY),
        &mut by_table,
        &mut ws,
        Int8Kernels::Plain,
    );
    assert!(matches!(e, Err(DeployError::Plan { .. })), "{e:?}");
    // An f32 plan takes no table.
    let words = small_f32_plan();
    let f32_plan = Plan::parse(bytes_of(&words)).unwrap();
    assert!(PixelTable::EMPTY.clone().fill(&f32_plan, 255.0).is_err());
    let mut arena = vec![0u32; f32_plan.arena_words()];
    let mut ws = vec![0u32; f32_plan.workspace_words()];
    let e = run(
        &f32_plan,
        Input::U8InArenaTable(&table),
        &mut arena,
        &mut ws,
        Int8Kernels::Plain,
    );
    assert!(matches!(e, Err(DeployError::Plan { .. })), "{e:?}");
}
