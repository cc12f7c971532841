//! Short training runs on the GPU against a CPU executor built from the reference kernels
//! of tinycnn-kernels (same layers, same state dict, same batches). Skipped without a GPU.

mod common;

use std::sync::Arc;

use common::{assert_close, Rng};
use tinycnn_cuda::CudaDevice;

/// One `#[test]` per check and device: `emu::<check>` and `gpu::<check>`.
macro_rules! on_every_device {
    ($($check:ident),* $(,)?) => {
        mod emu {
            $( #[test] fn $check() { super::$check(&super::common::emu_device()) } )*
        }
        mod gpu {
            $(
                #[test]
                fn $check() {
                    if let Some(dev) = super::common::device() {
                        super::$check(&dev)
                    }
                }
            )*
        }
    };
}

on_every_device!(
    lenet_state_dict_names_follow_pytorch,
    training_steps_match_cpu_reference,
    train_epoch_equals_host_steps_and_learns,
    bad_networks_and_data_are_refused,
    optimizer_state_round_trip_resumes_identically,
    train_batches_in_slices_equal_one_epoch_and_counted_steps
);
use tinycnn_cuda::net::{lenet, CudaSequential, GpuDataset, Layer, Optimizer};
use tinycnn_kernels::{
    reference, AdamConfig, Conv2dShape, GemmShape, Pool2dShape, SgdConfig, Transpose,
};

type StateDict = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Forward + backward of a sequential net on the CPU with the naive reference kernels.
/// Returns the mean cross-entropy and the parameter gradients in state-dict order.
fn cpu_forward_backward(
    layers: &[Layer],
    params: &StateDict,
    input: [usize; 3],
    x: &[f32],
    labels: &[u32],
) -> (f32, Vec<Vec<f32>>) {
    let batch = labels.len();
    let mut shapes = vec![input.to_vec()];
    let mut acts = vec![x.to_vec()];
    let mut argmaxes = vec![Vec::new(); layers.len()];
    let mut slots = Vec::new(); // (weight index, bias index) per layer
    let mut next = 0;
    for (i, layer) in layers.iter().enumerate() {
        let cur = shapes[i].clone();
        let xin = &acts[i];
        let (y, out): (Vec<f32>, Vec<usize>) = match *layer {
            Layer::Conv2d { params: p, bias } => {
                let s = Conv2dShape::new(p, batch, cur[1], cur[2]);
                let (oh, ow) = s.out_hw().unwrap();
                let w = &params[next].2;
                let b = bias.then(|| &params[next + 1].2[..]);
                slots.push((next, bias.then_some(next + 1)));
                next += 1 + bias as usize;
                let mut y = vec![0.0; s.output_len().unwrap()];
                reference::conv2d(&s, xin, w, b, &mut y).unwrap();
                (y, vec![p.out_channels, oh, ow])
            }
            Layer::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let g = GemmShape::new(batch, out_features, in_features)
                    .with_transpose(Transpose::No, Transpose::Yes);
                let mut y = vec![0.0; batch * out_features];
                reference::sgemm(&g, 1.0, xin, &params[next].2, 0.0, &mut y).unwrap();
                if bias {
                    reference::bias_add(batch, out_features, 1, &params[next + 1].2, &mut y)
                        .unwrap();
                }
                slots.push((next, bias.then_some(next + 1)));
                next += 1 + bias as usize;
                (y, vec![out_features])
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                slots.push((usize::MAX, None));
                let s = Pool2dShape::new(p, batch, cur[0], cur[1], cur[2]);
                let (oh, ow) = s.out_hw().unwrap();
                let mut y = vec![0.0; s.output_len().unwrap()];
                if matches!(layer, Layer::MaxPool2d(_)) {
                    let mut am = vec![0u32; y.len()];
                    reference::max_pool2d(&s, xin, &mut y, &mut am).unwrap();
                    argmaxes[i] = am;
                } else {
                    reference::avg_pool2d(&s, xin, &mut y).unwrap();
                }
                (y, vec![cur[0], oh, ow])
            }
            Layer::ReLU | Layer::Sigmoid | Layer::Tanh => {
                slots.push((usize::MAX, None));
                let mut y = vec![0.0; xin.len()];
                match layer {
                    Layer::ReLU => reference::relu(xin, &mut y),
                    Layer::Sigmoid => reference::sigmoid(xin, &mut y),
                    _ => reference::tanh(xin, &mut y),
                }
                .unwrap();
                (y, cur.clone())
            }
            Layer::Flatten => {
                slots.push((usize::MAX, None));
                (xin.clone(), vec![cur.iter().product()])
            }
        };
        acts.push(y);
        shapes.push(out);
    }
    let classes = shapes.last().unwrap()[0];
    let logits = acts.last().unwrap();
    let loss = reference::cross_entropy(batch, classes, logits, labels).unwrap();
    let mut g = vec![0.0; logits.len()];
    reference::cross_entropy_backward(batch, classes, logits, labels, 1.0, &mut g).unwrap();
    let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.2.len()]).collect();
    for i in (0..layers.len()).rev() {
        let cur = &shapes[i];
        let (x, y) = (&acts[i], &acts[i + 1]);
        let mut gx = vec![0.0; x.len()];
        match layers[i] {
            Layer::Conv2d { params: p, .. } => {
                let s = Conv2dShape::new(p, batch, cur[1], cur[2]);
                let (w, b) = slots[i];
                reference::conv2d_backward_input(&s, &g, &params[w].2, &mut gx).unwrap();
                reference::conv2d_backward_weight(&s, x, &g, &mut grads[w]).unwrap();
                if let Some(b) = b {
                    reference::conv2d_backward_bias(&s, &g, &mut grads[b]).unwrap();
                }
            }
            Layer::Linear {
                in_features,
                out_features,
                ..
            } => {
                let (w, b) = slots[i];
                reference::sgemm(
                    &GemmShape::new(batch, in_features, out_features),
                    1.0,
                    &g,
                    &params[w].2,
                    0.0,
                    &mut gx,
                )
                .unwrap();
                let gw = GemmShape::new(out_features, in_features, batch)
                    .with_transpose(Transpose::Yes, Transpose::No);
                reference::sgemm(&gw, 1.0, &g, x, 0.0, &mut grads[w]).unwrap();
                if let Some(b) = b {
                    reference::bias_backward(batch, out_features, 1, &g, &mut grads[b]).unwrap();
                }
            }
            Layer::MaxPool2d(p) => {
                let s = Pool2dShape::new(p, batch, cur[0], cur[1], cur[2]);
                reference::max_pool2d_backward(&s, &g, &argmaxes[i], &mut gx).unwrap();
            }
            Layer::AvgPool2d(p) => {
                let s = Pool2dShape::new(p, batch, cur[0], cur[1], cur[2]);
                reference::avg_pool2d_backward(&s, &g, &mut gx).unwrap();
            }
            Layer::ReLU => reference::relu_backward(x, &g, &mut gx).unwrap(),
            Layer::Sigmoid => reference::sigmoid_backward(y, &g, &mut gx).unwrap(),
            Layer::Tanh => reference::tanh_backward(y, &g, &mut gx).unwrap(),
            Layer::Flatten => gx.copy_from_slice(&g),
        }
        g = gx;
    }
    (loss, grads)
}

fn small_cnn() -> Vec<Layer> {
    use tinycnn_kernels::{Conv2dParams, Pool2dParams};
    vec![
        Layer::Conv2d {
            params: Conv2dParams::new(1, 4, (3, 3)).with_padding((1, 1)),
            bias: true,
        },
        Layer::ReLU,
        Layer::MaxPool2d(Pool2dParams::new(2)),
        Layer::Conv2d {
            params: Conv2dParams::new(4, 8, (3, 3))
                .with_stride((2, 2))
                .with_groups(2),
            bias: false,
        },
        Layer::Tanh,
        Layer::AvgPool2d(
            Pool2dParams::new(3)
                .with_stride((1, 1))
                .with_padding((1, 1))
                .with_count_include_pad(false),
        ),
        Layer::Flatten,
        Layer::Linear {
            in_features: 8 * 3 * 3,
            out_features: 10,
            bias: true,
        },
    ]
}

fn random_batch(rng: &mut Rng, batch: usize, sample: usize) -> (Vec<f32>, Vec<u32>) {
    (
        rng.vec(batch * sample),
        (0..batch).map(|_| rng.below(10)).collect(),
    )
}

fn lenet_state_dict_names_follow_pytorch(dev: &Arc<CudaDevice>) {
    let net = CudaSequential::new(dev, lenet(), [1, 28, 28], 4).unwrap();
    let specs = net.param_specs();
    let want: Vec<(String, Vec<usize>)> = [
        ("0.weight", vec![6, 1, 5, 5]),
        ("0.bias", vec![6]),
        ("3.weight", vec![16, 6, 5, 5]),
        ("3.bias", vec![16]),
        ("7.weight", vec![120, 400]),
        ("7.bias", vec![120]),
        ("9.weight", vec![84, 120]),
        ("9.bias", vec![84]),
        ("11.weight", vec![10, 84]),
        ("11.bias", vec![10]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(specs, want);
}

/// Gradients and several SGD steps (d2l's recipe: lr 0.9) of LeNet and of a CNN with
/// every other layer kind, GPU vs CPU reference from the same state dict.
fn training_steps_match_cpu_reference(dev: &Arc<CudaDevice>) {
    for (layers, input, opt) in [
        (
            lenet(),
            [1usize, 28, 28],
            Optimizer::Sgd(SgdConfig::new(0.9)),
        ),
        (
            small_cnn(),
            [1, 16, 16],
            Optimizer::Sgd(SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.0,
                weight_decay: 1e-3,
                nesterov: false,
            }),
        ),
        (
            small_cnn(),
            [1, 16, 16],
            Optimizer::Adam(AdamConfig::new(1e-2)),
        ),
    ] {
        let mut rng = Rng(11);
        let batch = 32;
        let sample: usize = input.iter().product();
        let mut net = CudaSequential::new(dev, layers.clone(), input, batch).unwrap();
        net.init_xavier(7).unwrap();
        let mut cpu: StateDict = net.export_state_dict().unwrap();
        let zeros = |cpu: &StateDict| -> Vec<Vec<f32>> {
            cpu.iter().map(|p| vec![0.0; p.2.len()]).collect()
        };
        let (mut sgd_bufs, mut adam_m, mut adam_v) = (zeros(&cpu), zeros(&cpu), zeros(&cpu));
        for step in 1..=5u32 {
            let (x, labels) = random_batch(&mut rng, batch, sample);
            let (want_loss, want_grads) = cpu_forward_backward(&layers, &cpu, input, &x, &labels);
            let loss = net.forward_backward(&x, &labels).unwrap();
            // Identical parameters at step 1; after that the two runs drift by rounding only.
            let tol = if step == 1 { 1e-4 } else { 1e-3 };
            assert_close(&format!("step {step} loss"), &[loss], &[want_loss], tol);
            for ((name, _, g), want) in net.export_grads().unwrap().iter().zip(&want_grads) {
                assert_close(&format!("step {step} grad {name}"), g, want, 1e-3);
            }
            net.step(&opt).unwrap();
            for (i, p) in cpu.iter_mut().enumerate() {
                match &opt {
                    Optimizer::Sgd(cfg) => reference::sgd_step(
                        cfg,
                        &mut p.2,
                        &want_grads[i],
                        &mut sgd_bufs[i],
                        step == 1,
                    )
                    .unwrap(),
                    Optimizer::Adam(cfg) => reference::adam_step(
                        cfg,
                        step,
                        &mut p.2,
                        &want_grads[i],
                        &mut adam_m[i],
                        &mut adam_v[i],
                    )
                    .unwrap(),
                }
            }
        }
        for ((name, _, got), (_, _, want)) in net.export_state_dict().unwrap().iter().zip(&cpu) {
            assert_close(&format!("params {name} after 5 steps"), got, want, 1e-3);
        }
    }
}

/// `train_epoch` on a GPU-resident data set is the same computation as host-fed
/// `train_step`s in the permutation's order (the last batch smaller), and `evaluate`
/// agrees with `forward` on the host.
fn train_epoch_equals_host_steps_and_learns(dev: &Arc<CudaDevice>) {
    let mut rng = Rng(12);
    let (n, batch, input) = (300usize, 64usize, [1usize, 16, 16]);
    let sample: usize = input.iter().product();
    // Class c lights up row c of the image: learnable quickly.
    let labels: Vec<u32> = (0..n).map(|_| rng.below(10)).collect();
    let mut images = rng
        .vec(n * sample)
        .iter()
        .map(|v| v * 0.3)
        .collect::<Vec<_>>();
    for (i, &l) in labels.iter().enumerate() {
        for c in 0..16 {
            images[i * sample + l as usize * 16 + c] += 1.0;
        }
    }
    let data = GpuDataset::upload(dev, &images, &labels, input, 10).unwrap();
    let opt = Optimizer::Sgd(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::new(0.1)
    });
    let mut a = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
    a.init_xavier(3).unwrap();
    let mut b = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
    b.import_state_dict(&a.export_state_dict().unwrap())
        .unwrap();

    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let stats = a.train_epoch(&data, &perm, batch, &opt).unwrap();
    let mut loss_sum = 0.0f64;
    for chunk in perm.chunks(batch) {
        let x: Vec<f32> = chunk
            .iter()
            .flat_map(|&i| {
                images[i as usize * sample..(i as usize + 1) * sample]
                    .iter()
                    .copied()
            })
            .collect();
        let y: Vec<u32> = chunk.iter().map(|&i| labels[i as usize]).collect();
        loss_sum += b.train_step(&x, &y, &opt).unwrap() as f64 * chunk.len() as f64;
    }
    assert_close(
        "epoch loss",
        &[stats.loss],
        &[(loss_sum / n as f64) as f32],
        1e-5,
    );
    for ((name, _, pa), (_, _, pb)) in a
        .export_state_dict()
        .unwrap()
        .iter()
        .zip(&b.export_state_dict().unwrap())
    {
        assert_close(&format!("{name} after an epoch"), pa, pb, 1e-6);
    }
    for _ in 0..4 {
        a.train_epoch(&data, &perm, batch, &opt).unwrap();
    }
    let eval = a.evaluate(&data, batch).unwrap();
    assert!(
        eval.loss < stats.loss,
        "loss did not fall: {} -> {}",
        stats.loss,
        eval.loss
    );
    let logits = a.forward(&images[..batch * sample]).unwrap();
    let hits = (0..batch)
        .filter(|&r| {
            let row = &logits[r * 10..(r + 1) * 10];
            let best = (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            best as u32 == labels[r]
        })
        .count();
    let first = a
        .evaluate(
            &GpuDataset::upload(dev, &images[..batch * sample], &labels[..batch], input, 10)
                .unwrap(),
            batch,
        )
        .unwrap();
    assert_close(
        "accuracy of the first batch",
        &[first.accuracy],
        &[hits as f32 / batch as f32],
        1e-6,
    );
    assert!(
        eval.accuracy > 0.5,
        "accuracy {} after 5 epochs on a trivial task",
        eval.accuracy
    );
}

fn bad_networks_and_data_are_refused(dev: &Arc<CudaDevice>) {
    // Linear straight after a conv (no Flatten).
    let mut layers = lenet();
    layers.remove(6);
    let err = CudaSequential::new(dev, layers, [1, 28, 28], 8)
        .err()
        .unwrap();
    assert!(err.to_string().contains("Flatten"), "{err}");
    let err = CudaSequential::new(dev, lenet(), [3, 28, 28], 8)
        .err()
        .unwrap();
    assert!(err.to_string().contains("input channels"), "{err}");
    let err = GpuDataset::upload(dev, &[0.0; 784], &[10], [1, 28, 28], 10)
        .err()
        .unwrap();
    assert!(err.to_string().contains("label 10"), "{err}");
    let mut net = CudaSequential::new(dev, lenet(), [1, 28, 28], 8).unwrap();
    let mut sd = net.export_state_dict().unwrap();
    sd[0].1 = vec![6, 1, 5, 4];
    assert!(net
        .import_state_dict(&sd)
        .unwrap_err()
        .to_string()
        .contains("0.weight"));
    sd.pop();
    sd[0].1 = vec![6, 1, 5, 5];
    assert!(net
        .import_state_dict(&sd)
        .unwrap_err()
        .to_string()
        .contains("missing parameter `11.bias`"));
    let data = GpuDataset::upload(dev, &vec![0.0; 2 * 784], &[1, 2], [1, 28, 28], 10).unwrap();
    let opt = Optimizer::Sgd(SgdConfig::new(0.1));
    assert!(net
        .train_epoch(&data, &[0, 2], 2, &opt)
        .unwrap_err()
        .to_string()
        .contains("permutation"));
    assert!(net
        .train_epoch(&data, &[0, 1], 9, &opt)
        .unwrap_err()
        .to_string()
        .contains("batch of 9"));
}

/// The CPU executor above is the yardstick of the GPU tests, so it is checked itself
/// (host only, runs everywhere): its gradients against central differences of its loss.
#[test]
fn cpu_reference_executor_gradients_match_finite_differences() {
    let mut rng = Rng(13);
    let layers = small_cnn();
    let input = [1usize, 16, 16];
    let shapes: [(&str, Vec<usize>); 4] = [
        ("0.weight", vec![4, 1, 3, 3]),
        ("0.bias", vec![4]),
        ("3.weight", vec![8, 2, 3, 3]),
        ("7.weight", vec![10, 72]),
    ];
    let mut params: StateDict = shapes
        .iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                s.clone(),
                rng.vec(s.iter().product())
                    .iter()
                    .map(|v| v * 0.5)
                    .collect(),
            )
        })
        .collect();
    params.push(("7.bias".into(), vec![10], rng.vec(10)));
    let (x, labels) = random_batch(&mut rng, 3, 256);
    let (_, grads) = cpu_forward_backward(&layers, &params, input, &x, &labels);
    let h = 1e-3f32; // small enough not to cross ReLU and max-pool kinks often
    for p in 0..params.len() {
        for _ in 0..4 {
            let i = rng.below(params[p].2.len() as u32) as usize;
            let orig = params[p].2[i];
            params[p].2[i] = orig + h;
            let (lp, _) = cpu_forward_backward(&layers, &params, input, &x, &labels);
            params[p].2[i] = orig - h;
            let (lm, _) = cpu_forward_backward(&layers, &params, input, &x, &labels);
            params[p].2[i] = orig;
            let numeric = (lp - lm) / (2.0 * h);
            let g = grads[p][i];
            assert!(
                (numeric - g).abs() <= 2e-2 * g.abs().max(0.05),
                "{} [{i}]: analytic {g}, numeric {numeric}",
                params[p].0
            );
        }
    }
}

/// Counting hits, and saving then restoring the optimizer state, resume training exactly.
fn optimizer_state_round_trip_resumes_identically(dev: &Arc<CudaDevice>) {
    let input = [1usize, 16, 16];
    let mut rng = Rng(14);
    for opt in [
        Optimizer::Adam(AdamConfig::new(1e-2)),
        Optimizer::Sgd(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.05)
        }),
    ] {
        let mut a = CudaSequential::new(dev, small_cnn(), input, 16).unwrap();
        a.init_xavier(5).unwrap();
        let batches: Vec<_> = (0..4).map(|_| random_batch(&mut rng, 16, 256)).collect();
        for (x, y) in &batches[..2] {
            let logits = a.forward(x).unwrap();
            let want = (0..16)
                .filter(|&r| {
                    let row = &logits[r * 10..(r + 1) * 10];
                    (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b }) as u32 == y[r]
                })
                .count();
            let (_, hits) = a.train_step_counted(x, y, &opt).unwrap();
            assert_eq!(hits, want);
        }
        let mut b = CudaSequential::new(dev, small_cnn(), input, 16).unwrap();
        b.import_state_dict(&a.export_state_dict().unwrap())
            .unwrap();
        b.import_optimizer_state(&a.export_optimizer_state().unwrap())
            .unwrap();
        for (x, y) in &batches[2..] {
            a.train_step(x, y, &opt).unwrap();
            b.train_step(x, y, &opt).unwrap();
        }
        for ((name, _, pa), (_, _, pb)) in a
            .export_state_dict()
            .unwrap()
            .iter()
            .zip(&b.export_state_dict().unwrap())
        {
            assert_eq!(pa, pb, "{name} after resuming {opt:?}");
        }
    }
}

/// `train_batches` over slices of a permutation cut at batch boundaries is the same
/// training as one `train_epoch` over the whole permutation, and its per-batch figures are
/// those of host-fed counted steps on the same batches.
fn train_batches_in_slices_equal_one_epoch_and_counted_steps(dev: &Arc<CudaDevice>) {
    let mut rng = Rng(15);
    let (n, batch, input) = (200usize, 16usize, [1usize, 16, 16]); // 13 batches, last of 8
    let sample: usize = input.iter().product();
    let (images, labels) = random_batch(&mut rng, n, sample);
    let data = GpuDataset::upload(dev, &images, &labels, input, 10).unwrap();
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i as u32 + 1) as usize);
    }
    for opt in [
        Optimizer::Adam(AdamConfig::new(1e-2)),
        Optimizer::Sgd(SgdConfig::new(0.1)),
    ] {
        let mut whole = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
        whole.init_xavier(9).unwrap();
        let init = whole.export_state_dict().unwrap();
        let mut sliced = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
        sliced.import_state_dict(&init).unwrap();
        let mut host = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
        host.import_state_dict(&init).unwrap();

        let stats = whole.train_epoch(&data, &perm, batch, &opt).unwrap();
        let mut figures = Vec::new();
        // Slices of 3 batches (48 samples), the last one 56 samples.
        for rows in [0..48, 48..96, 96..144, 144..200] {
            figures.extend(
                sliced
                    .train_batches(&data, &perm[rows], batch, &opt)
                    .unwrap(),
            );
        }
        assert_eq!(figures.len(), 13);
        assert_eq!(figures[12].examples, 8);
        assert!(figures[..12].iter().all(|b| b.examples == batch));
        let mut loss_sum = 0.0f64;
        let mut hits = 0usize;
        for (k, (fig, rows)) in figures.iter().zip(perm.chunks(batch)).enumerate() {
            let x: Vec<f32> = rows
                .iter()
                .flat_map(|&i| images[i as usize * sample..(i as usize + 1) * sample].to_vec())
                .collect();
            let y: Vec<u32> = rows.iter().map(|&i| labels[i as usize]).collect();
            let (loss, correct) = host.train_step_counted(&x, &y, &opt).unwrap();
            assert_close(
                &format!("{opt:?} batch {k} loss"),
                &[fig.loss],
                &[loss],
                1e-5,
            );
            assert_eq!(fig.correct, correct, "{opt:?} batch {k} hits");
            loss_sum += fig.loss as f64 * fig.examples as f64;
            hits += fig.correct;
        }
        assert_close(
            "epoch loss from batch figures",
            &[(loss_sum / n as f64) as f32],
            &[stats.loss],
            1e-5,
        );
        assert_close(
            "epoch accuracy from batch figures",
            &[hits as f32 / n as f32],
            &[stats.accuracy],
            1e-6,
        );
        for ((name, _, a), (_, _, b)) in whole
            .export_state_dict()
            .unwrap()
            .iter()
            .zip(&sliced.export_state_dict().unwrap())
        {
            assert_close(&format!("{opt:?} {name}: slices vs one epoch"), b, a, 1e-6);
        }
        assert_eq!(
            whole.export_optimizer_state().unwrap().adam_steps,
            sliced.export_optimizer_state().unwrap().adam_steps
        );
    }
    let mut net = CudaSequential::new(dev, small_cnn(), input, batch).unwrap();
    let opt = Optimizer::Sgd(SgdConfig::new(0.1));
    assert!(net
        .train_batches(&data, &[], batch, &opt)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(net
        .train_batches(&data, &[0, 200], batch, &opt)
        .unwrap_err()
        .to_string()
        .contains("200"));
}
