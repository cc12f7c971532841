//! Times each tinycnn-cuda kernel at LeNet's shapes (batch 256), printing one `JSON {...}`
//! line per measurement for
//! `scripts/torch_lenet_bench.py --tinycnn-json`, which lays them next to PyTorch's.
//!
//! `cargo run --release -p tinycnn-cuda --example gpu_bench` (needs a GPU; exits 0 with a
//! message without one). Data are random: the kernels' speed does not depend on values.
//! LeNet's training throughput through the runtime is `tinycnn`'s `train_bench` example.

use std::sync::Arc;
use std::time::Instant;

use tinycnn_cuda::{launch, CudaBuffer, CudaDevice, Result};
use tinycnn_kernels::{
    Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, SgdConfig, Transpose,
};

fn rand_vec(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Median milliseconds of `f` over `reps` synchronized runs, after warm-up.
fn time(dev: &CudaDevice, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..10 {
            f()?;
        }
        dev.synchronize()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3 / 10.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(samples[samples.len() / 2])
}

fn report(kernel: &str, ms: f64, flops: f64, bytes: f64) {
    println!("JSON {{\"kernel\": \"{kernel}\", \"ms\": {ms:.6}, \"flops\": {flops:.0}, \"bytes\": {bytes:.0}}}");
}

fn tensor(dev: &CudaDevice, seed: &mut u64, n: usize) -> Result<CudaBuffer> {
    dev.upload(&rand_vec(seed, n))
}

fn conv_bench(dev: &Arc<CudaDevice>, seed: &mut u64, name: &str, s: &Conv2dShape) -> Result<()> {
    let (xl, wl, yl) = (
        s.input_len().unwrap(),
        s.weight_len(),
        s.output_len().unwrap(),
    );
    let (x, w, b, gy) = (
        tensor(dev, seed, xl)?,
        tensor(dev, seed, wl)?,
        tensor(dev, seed, s.params.out_channels)?,
        tensor(dev, seed, yl)?,
    );
    let (mut y, mut gx, mut gw) = (dev.zeros(yl)?, dev.zeros(xl)?, dev.zeros(wl)?);
    let mut ws = dev.zeros(launch::conv2d_backward_weight_workspace_len(s)?.max(1))?;
    let flops =
        2.0 * yl as f64 * (s.params.in_per_group() * s.params.kernel.0 * s.params.kernel.1) as f64;
    let ms = time(dev, 20, || {
        dev.conv2d_forward(s, &x.view(), &w.view(), Some(&b), &mut y.view_mut())
    })?;
    report(&format!("{name}_forward"), ms, flops, 0.0);
    let ms = time(dev, 20, || {
        dev.conv2d_backward_input(s, &gy.view(), &w.view(), &mut gx.view_mut())
    })?;
    report(&format!("{name}_backward_input"), ms, flops, 0.0);
    let ms = time(dev, 20, || {
        dev.conv2d_backward_weight(
            s,
            &x.view(),
            &gy.view(),
            &mut gw.view_mut(),
            Some(&mut ws.view_mut()),
        )
    })?;
    report(&format!("{name}_backward_weight"), ms, flops, 0.0);
    Ok(())
}

fn main() {
    let dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e @ (tinycnn_cuda::CudaError::NoDriver | tinycnn_cuda::CudaError::NoDevice { .. })) => {
            eprintln!("skipping: {e}");
            return;
        }
        Err(e) => {
            eprintln!("gpu_bench: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&dev) {
        eprintln!("gpu_bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(dev: &Arc<CudaDevice>) -> Result<()> {
    eprintln!(
        "device: {} (sm_{:?})",
        dev.name()?,
        dev.compute_capability()?
    );
    let mut seed = 42u64;
    let b = 256;

    for &(m, n, k, ta, tb, name) in &[
        (
            b,
            120,
            400,
            Transpose::No,
            Transpose::Yes,
            "sgemm_fc1_forward_256x120x400",
        ),
        (
            120,
            400,
            b,
            Transpose::Yes,
            Transpose::No,
            "sgemm_fc1_weight_grad_120x400x256",
        ),
        (2048, 2048, 2048, Transpose::No, Transpose::No, "sgemm_2048"),
    ] {
        let g = GemmShape::new(m, n, k).with_transpose(ta, tb);
        let (a, bm) = (
            tensor(dev, &mut seed, m * k)?,
            tensor(dev, &mut seed, k * n)?,
        );
        let mut c = dev.zeros(m * n)?;
        let ms = time(dev, 20, || {
            dev.sgemm(&g, 1.0, &a.view(), &bm.view(), 0.0, &mut c.view_mut())
        })?;
        report(name, ms, 2.0 * (m * n * k) as f64, 0.0);
    }

    conv_bench(
        dev,
        &mut seed,
        "conv1",
        &Conv2dShape::new(
            Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
            b,
            28,
            28,
        ),
    )?;
    conv_bench(
        dev,
        &mut seed,
        "conv2",
        &Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), b, 14, 14),
    )?;

    let s = Pool2dShape::new(Pool2dParams::new(2), b, 6, 28, 28);
    let (xl, yl) = (s.input_len().unwrap(), s.output_len().unwrap());
    let (x, gy) = (tensor(dev, &mut seed, xl)?, tensor(dev, &mut seed, yl)?);
    let (mut y, mut gx) = (dev.zeros(yl)?, dev.zeros(xl)?);
    let mut am = dev.alloc_zeros::<u32>(yl)?;
    let fwd_bytes = 4.0 * (xl + yl) as f64;
    let ms = time(dev, 20, || {
        dev.avg_pool2d_forward(&s, &x.view(), &mut y.view_mut())
    })?;
    report("avg_pool2d_forward", ms, 0.0, fwd_bytes);
    let ms = time(dev, 20, || {
        dev.avg_pool2d_backward(&s, &gy.view(), &mut gx.view_mut())
    })?;
    report("avg_pool2d_backward", ms, 0.0, fwd_bytes);
    let ms = time(dev, 20, || {
        dev.max_pool2d_forward(&s, &x.view(), &mut y.view_mut(), &mut am.view_mut())
    })?;
    report("max_pool2d_forward", ms, 0.0, fwd_bytes + 4.0 * yl as f64);
    let ms = time(dev, 20, || {
        dev.max_pool2d_backward(&s, &gy.view(), &am.view(), &mut gx.view_mut())
    })?;
    report("max_pool2d_backward", ms, 0.0, fwd_bytes + 4.0 * yl as f64);

    let mut act = dev.zeros(xl)?;
    let ms = time(dev, 20, || {
        dev.sigmoid_forward(&x.view(), &mut act.view_mut())
    })?;
    report("sigmoid_forward", ms, 0.0, 8.0 * xl as f64);
    let ms = time(dev, 20, || {
        dev.sigmoid_backward(&x.view(), &x.view(), &mut act.view_mut())
    })?;
    report("sigmoid_backward", ms, 0.0, 12.0 * xl as f64);

    let logits = tensor(dev, &mut seed, b * 10)?;
    let labels = dev.upload_u32(&(0..b as u32).map(|i| i % 10).collect::<Vec<_>>())?;
    let mut g = dev.zeros(b * 10)?;
    let ms = time(dev, 20, || {
        dev.softmax_xent_backward(
            b,
            10,
            &logits.view(),
            &labels.view(),
            1.0,
            &mut g.view_mut(),
        )
    })?;
    report("cross_entropy_backward", ms, 0.0, 8.0 * (b * 10) as f64);

    let n = 61_706; // LeNet's parameter count
    let (mut p, gp) = (tensor(dev, &mut seed, n)?, tensor(dev, &mut seed, n)?);
    let cfg = SgdConfig::new(1e-6);
    let ms = time(dev, 20, || {
        dev.sgd_step(&cfg, &mut p.view_mut(), &gp.view(), None, true)
    })?;
    report("sgd_step_61706", ms, 0.0, 12.0 * n as f64);

    Ok(())
}
