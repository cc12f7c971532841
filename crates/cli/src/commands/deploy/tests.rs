use super::*;
use tinycnn::nn::arch::Node;
use tinycnn::nn::{Graph, Module};
use tinycnn::Tensor;

fn conv(i: usize, o: usize, k: usize, s: usize, p: usize, d: usize, g: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        dilation: (d, d),
        groups: g,
        bias: true,
    }
}

fn bn(c: usize) -> LayerSpec {
    LayerSpec::BatchNorm2d {
        num_features: c,
        eps: 1e-5,
        momentum: Some(0.1),
        affine: true,
        track_running_stats: true,
    }
}

/// Every supported layer: BN folded and standalone, depthwise + dilation, a residual,
/// ReLU6/ReLU/tanh/sigmoid, max/avg/global pooling, flatten, dropout, linear.
fn zoo_of_layers() -> Architecture {
    let n = |name: &str, l: LayerSpec, i: Vec<usize>| Node::new(name, l, i);
    Architecture {
        input: vec![1, 12, 12],
        nodes: vec![
            n("c0", conv(1, 4, 3, 1, 1, 1, 1), vec![0]),
            n("b0", bn(4), vec![1]),
            n("r0", LayerSpec::ReLU6, vec![2]),
            n("dw", conv(4, 4, 3, 1, 2, 2, 4), vec![3]),
            n("r1", LayerSpec::ReLU, vec![4]),
            n("add", LayerSpec::Add, vec![5, 3]),
            n("b1", bn(4), vec![6]),
            n("t", LayerSpec::Tanh, vec![7]),
            n("c1", conv(4, 6, 3, 2, 0, 1, 1), vec![8]),
            n("s", LayerSpec::Sigmoid, vec![9]),
            n(
                "mp",
                LayerSpec::MaxPool2d {
                    kernel: (2, 2),
                    stride: (1, 1),
                    padding: (0, 0),
                },
                vec![10],
            ),
            n(
                "ap",
                LayerSpec::AvgPool2d {
                    kernel: (2, 2),
                    stride: (2, 2),
                    padding: (1, 1),
                    count_include_pad: false,
                },
                vec![11],
            ),
            n(
                "gap",
                LayerSpec::AdaptiveAvgPool2d { output: (1, 1) },
                vec![12],
            ),
            n(
                "fl",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![13],
            ),
            n("dr", LayerSpec::Dropout { p: 0.5 }, vec![14]),
            n(
                "fc",
                LayerSpec::Linear {
                    in_features: 6,
                    out_features: 5,
                    bias: true,
                },
                vec![15],
            ),
        ],
    }
}

/// The architecture's graph with its initial weights and non-trivial BN statistics.
fn network(arch: &Architecture) -> (Graph, Vec<NamedTensor>) {
    let g = Graph::new(arch).unwrap();
    let mut params = super::super::model::params(&g).unwrap();
    for t in &mut params {
        let n = t.data.len() as f32;
        if t.name.ends_with("running_mean") {
            t.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 0.1 * i as f32 - 0.1);
        } else if t.name.ends_with("running_var") {
            t.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 0.5 + i as f32 / n);
        } else if t.name.starts_with('b') && t.name.ends_with(".weight") {
            t.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = 1.5 - 0.2 * i as f32);
        }
    }
    super::super::model::load_params(&g, &params).unwrap();
    g.eval();
    (g, params)
}

fn images(count: usize, per: usize) -> Vec<f32> {
    let mut s = 12345u32;
    (0..count * per)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 256) as f32 / 255.0
        })
        .collect()
}

#[test]
fn f32_plan_matches_the_runtime_forward() {
    let arch = zoo_of_layers();
    let (g, params) = network(&arch);
    let ir = lower(&arch, &params, false).unwrap();
    // BN b0 folded into c0, the activations fused, b1 a depthwise 1x1 conv after the
    // add (tanh fused into it), flatten and dropout dropped.
    let names: Vec<&str> = ir.ops.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["c0+b0+r0", "dw+r1", "add", "b1+t", "c1+s", "mp", "ap", "gap", "fc"]
    );
    let bytes = build_plan(&ir, None, Layout::Planned).unwrap();
    let al = AlignedPlan::new(&bytes);
    let plan = al.plan().unwrap();
    let x = images(16, 144);
    let got = run_all(&plan, &x, Int8Kernels::Plain).unwrap();
    let _guard = tinycnn::no_grad_guard();
    let want = g
        .forward(&Tensor::from_vec(x.clone(), &[16, 1, 12, 12]).unwrap())
        .unwrap()
        .to_vec();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn int8_plan_is_exact_on_every_kernel_set() {
    let arch = zoo_of_layers();
    let (_, params) = network(&arch);
    let ir = lower(&arch, &params, true).unwrap();
    // tanh and sigmoid stay ops of their own (tables) in int8.
    assert!(ir
        .ops
        .iter()
        .any(|o| o.kind == IrKind::Act && o.act == Act::Tanh));
    let x = images(24, 144);
    let q = calibrate(&ir, &x[..8 * 144]).unwrap();
    let bytes = build_plan(&ir, Some(&q), Layout::Planned).unwrap();
    let al = AlignedPlan::new(&bytes);
    let plan = al.plan().unwrap();
    assert_eq!(plan.output_value().dtype, DType::I32);
    let reference = run_all(&plan, &x, Int8Kernels::Reference).unwrap();
    for k in [Int8Kernels::Plain, Int8Kernels::Dsp] {
        assert_eq!(run_all(&plan, &x, k).unwrap(), reference, "{k:?}");
    }
    // And close to the f32 network (a loose sanity bound on the quantization).
    let f = lower(&arch, &params, false).unwrap();
    let fb = build_plan(&f, None, Layout::Planned).unwrap();
    let fa = AlignedPlan::new(&fb);
    let fl = run_all(&fa.plan().unwrap(), &x, Int8Kernels::Plain).unwrap();
    let max = fl.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in reference.iter().zip(&fl) {
        assert!((a - b).abs() <= 0.1 * max + 0.05, "{a} vs {b}");
    }
}

/// Sigmoid and tanh before average pooling (LeNet's 2x2, and a padded 3x3 with stride 2
/// counting the padding), one sigmoid read twice (not fusable), and a sigmoid before max
/// pooling (not fused).
fn tables_before_pooling() -> Architecture {
    let n = |name: &str, l: LayerSpec, i: Vec<usize>| Node::new(name, l, i);
    let avg = |k: usize, s: usize, p: usize| LayerSpec::AvgPool2d {
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        count_include_pad: true,
    };
    Architecture {
        input: vec![1, 12, 12],
        nodes: vec![
            n("c0", conv(1, 4, 3, 1, 1, 1, 1), vec![0]),
            n("s0", LayerSpec::Sigmoid, vec![1]),
            n("p0", avg(2, 2, 0), vec![2]),
            n("c1", conv(4, 4, 3, 1, 1, 1, 1), vec![3]),
            n("t1", LayerSpec::Tanh, vec![4]),
            n("p1", avg(3, 2, 1), vec![5]),
            n("s2", LayerSpec::Sigmoid, vec![6]),
            n("p2", avg(1, 1, 0), vec![7]),
            n("add", LayerSpec::Add, vec![8, 7]),
            n("s3", LayerSpec::Sigmoid, vec![9]),
            n(
                "mp",
                LayerSpec::MaxPool2d {
                    kernel: (3, 3),
                    stride: (3, 3),
                    padding: (0, 0),
                },
                vec![10],
            ),
            n(
                "fl",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![11],
            ),
            n(
                "fc",
                LayerSpec::Linear {
                    in_features: 4,
                    out_features: 3,
                    bias: true,
                },
                vec![12],
            ),
        ],
    }
}

/// A table op folded into the average pooling after it computes, on every kernel set,
/// exactly what the two ops compute one after the other (and on no other pattern).
#[test]
fn tables_fused_into_pooling_are_exact() {
    let arch = tables_before_pooling();
    let (_, params) = network(&arch);
    let ir = lower(&arch, &params, true).unwrap();
    let x = images(24, 144);
    let q = calibrate(&ir, &x[..8 * 144]).unwrap();
    let (fused, fq) = fuse_tables(&ir, &q);
    let names: Vec<&str> = fused.ops.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["c0", "s0+p0", "c1", "t1+p1", "s2", "p2", "add", "s3", "mp", "fc"]
    );
    assert_eq!(fused.values.len(), ir.values.len() - 2);
    assert_eq!(fq.scales.len(), fused.values.len());
    let unfused = AlignedPlan::new(&build_plan(&ir, Some(&q), Layout::Planned).unwrap());
    let reference = run_all(&unfused.plan().unwrap(), &x, Int8Kernels::Reference).unwrap();
    let bytes = build_plan(&fused, Some(&fq), Layout::Planned).unwrap();
    let al = AlignedPlan::new(&bytes);
    let plan = al.plan().unwrap();
    let tables: Vec<Act> = (0..plan.ops())
        .map(|k| plan.op(k))
        .filter(|o| o.kind == OpKind::AvgPool)
        .map(|o| o.act)
        .collect();
    assert_eq!(tables, [Act::Sigmoid, Act::Tanh, Act::None]);
    for k in [Int8Kernels::Reference, Int8Kernels::Plain, Int8Kernels::Dsp] {
        assert_eq!(run_all(&plan, &x, k).unwrap(), reference, "{k:?}");
    }
    // An f32 plan has no tables to fuse.
    let e = build_plan(&fused, None, Layout::Planned)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`s0+p0`") && e.contains("int8"), "{e}");
}

/// Writes the fuzz seeds of `fuzz/corpus/deploy_plan` (small f32 and int8 plans of
/// every op kind) when `TINYCNN_WRITE_DEPLOY_SEEDS` names a directory.
#[test]
fn fuzz_seeds() {
    let Some(dir) = std::env::var_os("TINYCNN_WRITE_DEPLOY_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let arch = zoo_of_layers();
    let (_, params) = network(&arch);
    let f = lower(&arch, &params, false).unwrap();
    let fb = build_plan(&f, None, Layout::Planned).unwrap();
    std::fs::write(dir.join("layers-f32.plan"), fb).unwrap();
    let ir = lower(&arch, &params, true).unwrap();
    let q = calibrate(&ir, &images(8, 144)).unwrap();
    let qb = build_plan(&ir, Some(&q), Layout::Planned).unwrap();
    std::fs::write(dir.join("layers-int8.plan"), qb).unwrap();
    // Tables fused into average pooling (AvgPool records with a table).
    let arch = tables_before_pooling();
    let (_, params) = network(&arch);
    let ir = lower(&arch, &params, true).unwrap();
    let q = calibrate(&ir, &images(8, 144)).unwrap();
    let (fused, fq) = fuse_tables(&ir, &q);
    let tb = build_plan(&fused, Some(&fq), Layout::Planned).unwrap();
    std::fs::write(dir.join("tables-int8.plan"), tb).unwrap();
}

/// The zoo's DS-CNN (BatchNorm after every convolution, stride-2 depthwise convolutions,
/// global pooling), with its initial weights: f32 like the runtime, int8 exact.
#[test]
fn zoo_dscnn_deploys() {
    let spec = super::super::model::ModelSpec::zoo(tinycnn_models::Model::Dscnn).unwrap();
    let net = spec.build().unwrap();
    net.eval();
    let params = super::super::model::params(net.as_ref()).unwrap();
    let ir = lower(&spec.arch, &params, false).unwrap();
    assert!(ir
        .ops
        .iter()
        .all(|o| !o.name.contains('.') || o.name.contains('+')));
    let bytes = build_plan(&ir, None, Layout::Planned).unwrap();
    let al = AlignedPlan::new(&bytes);
    let x = images(4, 784);
    let got = run_all(&al.plan().unwrap(), &x, Int8Kernels::Plain).unwrap();
    let _guard = tinycnn::no_grad_guard();
    let want = net
        .forward(&Tensor::from_vec(x.clone(), &[4, 1, 28, 28]).unwrap())
        .unwrap()
        .to_vec();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let qir = lower(&spec.arch, &params, true).unwrap();
    let q = calibrate(&qir, &x).unwrap();
    let qb = build_plan(&qir, Some(&q), Layout::Planned).unwrap();
    let qa = AlignedPlan::new(&qb);
    let plan = qa.plan().unwrap();
    let reference = run_all(&plan, &x, Int8Kernels::Reference).unwrap();
    assert_eq!(run_all(&plan, &x, Int8Kernels::Dsp).unwrap(), reference);
    assert_eq!(run_all(&plan, &x, Int8Kernels::Plain).unwrap(), reference);
}

#[test]
fn unsupported_layers_are_named() {
    let arch = Architecture {
        input: vec![4],
        nodes: vec![
            Node::new(
                "fc",
                LayerSpec::Linear {
                    in_features: 4,
                    out_features: 3,
                    bias: false,
                },
                vec![0],
            ),
            Node::new("sm", LayerSpec::Softmax { dim: 1 }, vec![1]),
        ],
    };
    let g = Graph::new(&arch).unwrap();
    let params = super::super::model::params(&g).unwrap();
    let e = lower(&arch, &params, false).unwrap_err().to_string();
    assert!(e.contains("`sm` (Softmax)"), "{e}");
}
