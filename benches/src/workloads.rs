//! Workloads shared by the `conv_large`, `pool`, `lenet` criterion benches and the
//! `bench-screen` binary (included with `#[path]`, so the benches' library stays untouched):
//! the shapes, their flop counts, batch-parallel drivers over the single-thread kernels, and
//! a LeNet forward pass built only from the naive `reference` loops.
#![allow(dead_code)] // each includer uses a different subset

use rayon::prelude::*;
use tinycnn_kernels::{
    avg_pool2d_forward, conv2d_forward, conv2d_workspace_len, max_pool2d_forward, reference,
    Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, Transpose,
};

/// Deterministic values in [-1, 1) (a multiplicative hash of the index and a seed).
pub fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// A convolution case: its name, full shape, and the batch the naive loop runs at.
pub struct ConvCase {
    pub name: &'static str,
    pub shape: Conv2dShape,
    /// The naive loops run on this many images; rates are per image, so they compare.
    pub naive_batch: usize,
}

fn lenet1(batch: usize) -> Conv2dShape {
    Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        batch,
        28,
        28,
    )
}

fn lenet2(batch: usize) -> Conv2dShape {
    Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), batch, 14, 14)
}

/// LeNet's two convolutions at batch 1 and 256, and a ResNet-style 64->64 3x3 layer.
pub fn conv_cases() -> Vec<ConvCase> {
    vec![
        ConvCase {
            name: "lenet1 b1 1x28x28->6 k5 p2",
            shape: lenet1(1),
            naive_batch: 1,
        },
        ConvCase {
            name: "lenet1 b256 1x28x28->6 k5 p2",
            shape: lenet1(256),
            naive_batch: 16,
        },
        ConvCase {
            name: "lenet2 b1 6x14x14->16 k5",
            shape: lenet2(1),
            naive_batch: 1,
        },
        ConvCase {
            name: "lenet2 b256 6x14x14->16 k5",
            shape: lenet2(256),
            naive_batch: 16,
        },
        ConvCase {
            name: "c64 b32 64x56x56->64 k3 p1",
            shape: Conv2dShape::new(
                Conv2dParams::new(64, 64, (3, 3)).with_padding((1, 1)),
                32,
                56,
                56,
            ),
            naive_batch: 1,
        },
    ]
}

/// Flops of one forward pass: 2 per multiply-add.
pub fn conv_flops(s: &Conv2dShape) -> u64 {
    2 * s.output_len().unwrap() as u64 * s.col_rows().unwrap() as u64
}

/// Images per chunk when `batch` images are split over `threads` workers.
pub fn chunk_images(batch: usize, threads: usize) -> usize {
    batch.div_ceil(threads.max(1)).max(1)
}

/// Buffers for one convolution problem, with one workspace per parallel chunk.
pub struct ConvBufs {
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub y: Vec<f32>,
    pub ws: Vec<f32>,
    pub chunk: usize,
    pub ws_len: usize,
}

impl ConvBufs {
    pub fn new(s: &Conv2dShape, threads: usize) -> ConvBufs {
        let chunk = chunk_images(s.batch, threads);
        let ws_len = conv2d_workspace_len(&s.with_batch(chunk))
            .max(conv2d_workspace_len(s))
            .max(1);
        let chunks = s.batch.div_ceil(chunk);
        ConvBufs {
            x: data(s.input_len().unwrap(), 1),
            w: data(s.weight_len(), 2),
            b: data(s.params.out_channels, 3),
            y: vec![0.0; s.output_len().unwrap()],
            ws: vec![0.0; ws_len * chunks],
            chunk,
            ws_len,
        }
    }

    /// The naive reference loop on the first `batch` images.
    pub fn naive(&mut self, s: &Conv2dShape, batch: usize) {
        let small = s.with_batch(batch);
        let (xn, yn) = (small.input_len().unwrap(), small.output_len().unwrap());
        reference::conv2d(
            &small,
            &self.x[..xn],
            &self.w,
            Some(&self.b),
            &mut self.y[..yn],
        )
        .unwrap();
    }

    /// The fast kernel over the whole batch on the calling thread.
    pub fn simd(&mut self, s: &Conv2dShape) {
        conv2d_forward(
            s,
            &self.x,
            &self.w,
            Some(&self.b),
            &mut self.y,
            &mut self.ws[..self.ws_len],
        )
        .unwrap();
    }

    /// The fast kernel with the batch split into chunks run on `pool`.
    pub fn simd_parallel(&mut self, s: &Conv2dShape, pool: &rayon::ThreadPool) {
        let in_img = s.in_channels_len();
        let out_img = s.output_len().unwrap() / s.batch;
        let (w, b, chunk, ws_len) = (&self.w, &self.b, self.chunk, self.ws_len);
        pool.install(|| {
            self.x
                .par_chunks(chunk * in_img)
                .zip(self.y.par_chunks_mut(chunk * out_img))
                .zip(self.ws.par_chunks_mut(ws_len))
                .for_each(|((x, y), ws)| {
                    let cs = s.with_batch(x.len() / in_img);
                    conv2d_forward(&cs, x, w, Some(b), y, ws).unwrap();
                })
        });
    }
}

/// Extension: elements of one input image.
pub trait ConvShapeExt {
    fn in_channels_len(&self) -> usize;
}

impl ConvShapeExt for Conv2dShape {
    fn in_channels_len(&self) -> usize {
        self.params.in_channels * self.in_h * self.in_w
    }
}

/// A pooling case (2x2, stride 2 as in LeNet).
pub struct PoolCase {
    pub name: &'static str,
    pub shape: Pool2dShape,
}

pub fn pool_cases() -> Vec<PoolCase> {
    let p = Pool2dParams::new(2).with_stride((2, 2));
    vec![
        PoolCase {
            name: "lenet pool1 b256 6x28x28 k2 s2",
            shape: Pool2dShape::new(p, 256, 6, 28, 28),
        },
        PoolCase {
            name: "lenet pool2 b256 16x10x10 k2 s2",
            shape: Pool2dShape::new(p, 256, 16, 10, 10),
        },
    ]
}

/// Operations of one pooling pass: one compare (max) or add (avg) per window element.
pub fn pool_ops(s: &Pool2dShape) -> u64 {
    let (kh, kw) = s.params.kernel;
    (s.output_len().unwrap() * kh * kw) as u64
}

/// Buffers for one pooling problem (max pooling also keeps its argmax).
pub struct PoolBufs {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub argmax: Vec<u32>,
}

impl PoolBufs {
    pub fn new(s: &Pool2dShape) -> PoolBufs {
        let n = s.output_len().unwrap();
        PoolBufs {
            x: data(s.input_len().unwrap(), 4),
            y: vec![0.0; n],
            argmax: vec![0; n],
        }
    }

    pub fn naive(&mut self, s: &Pool2dShape, max: bool) {
        if max {
            reference::max_pool2d(s, &self.x, &mut self.y, &mut self.argmax).unwrap();
        } else {
            reference::avg_pool2d(s, &self.x, &mut self.y).unwrap();
        }
    }

    pub fn simd(&mut self, s: &Pool2dShape, max: bool) {
        if max {
            max_pool2d_forward(s, &self.x, &mut self.y, &mut self.argmax).unwrap();
        } else {
            avg_pool2d_forward(s, &self.x, &mut self.y).unwrap();
        }
    }

    /// The fast kernel with the batch split into one chunk per thread of `pool`.
    pub fn simd_parallel(&mut self, s: &Pool2dShape, max: bool, pool: &rayon::ThreadPool) {
        let chunk = chunk_images(s.batch, pool.current_num_threads());
        let in_img = s.channels * s.in_h * s.in_w;
        let out_img = s.output_len().unwrap() / s.batch;
        pool.install(|| {
            self.x
                .par_chunks(chunk * in_img)
                .zip(self.y.par_chunks_mut(chunk * out_img))
                .zip(self.argmax.par_chunks_mut(chunk * out_img))
                .for_each(|((x, y), a)| {
                    let cs = Pool2dShape {
                        batch: x.len() / in_img,
                        ..*s
                    };
                    if max {
                        max_pool2d_forward(&cs, x, y, a).unwrap();
                    } else {
                        avg_pool2d_forward(&cs, x, y).unwrap();
                    }
                })
        });
    }
}

/// LeNet's (d2l) weights in PyTorch layout, for the naive forward pass.
pub struct LenetWeights {
    pub c1w: Vec<f32>,
    pub c1b: Vec<f32>,
    pub c2w: Vec<f32>,
    pub c2b: Vec<f32>,
    pub f1w: Vec<f32>,
    pub f1b: Vec<f32>,
    pub f2w: Vec<f32>,
    pub f2b: Vec<f32>,
    pub f3w: Vec<f32>,
    pub f3b: Vec<f32>,
}

impl LenetWeights {
    pub fn new() -> LenetWeights {
        let scaled = |len: usize, seed: u32, fan_in: usize| {
            let k = 1.0 / (fan_in as f32).sqrt();
            data(len, seed)
                .into_iter()
                .map(|v| v * k)
                .collect::<Vec<_>>()
        };
        LenetWeights {
            c1w: scaled(6 * 25, 10, 25),
            c1b: scaled(6, 11, 25),
            c2w: scaled(16 * 6 * 25, 12, 150),
            c2b: scaled(16, 13, 150),
            f1w: scaled(120 * 400, 14, 400),
            f1b: scaled(120, 15, 400),
            f2w: scaled(84 * 120, 16, 120),
            f2b: scaled(84, 17, 120),
            f3w: scaled(10 * 84, 18, 84),
            f3b: scaled(10, 19, 84),
        }
    }
}

impl Default for LenetWeights {
    fn default() -> Self {
        Self::new()
    }
}

/// Flops of one LeNet forward pass per image (convolutions and linear layers; the
/// activations and pooling are left out, as is usual).
pub fn lenet_forward_flops_per_image() -> u64 {
    conv_flops(&lenet1(1)) + conv_flops(&lenet2(1)) + 2 * (400 * 120 + 120 * 84 + 84 * 10)
}

/// d2l's LeNet forward pass (sigmoid, average pooling) from the naive `reference` loops
/// only, on `x` = `[batch, 1, 28, 28]`; returns the `[batch, 10]` logits.
pub fn lenet_forward_naive(wt: &LenetWeights, batch: usize, x: &[f32]) -> Vec<f32> {
    let sigmoid = |v: Vec<f32>| {
        let mut o = vec![0.0; v.len()];
        reference::sigmoid(&v, &mut o).unwrap();
        o
    };
    let pool = |s: Pool2dShape, v: &[f32]| {
        let mut o = vec![0.0; s.output_len().unwrap()];
        reference::avg_pool2d(&s, v, &mut o).unwrap();
        o
    };
    let linear = |v: &[f32], w: &[f32], b: &[f32], n_in: usize, n_out: usize| {
        let g = GemmShape::new(batch, n_out, n_in).with_transpose(Transpose::No, Transpose::Yes);
        let mut o = vec![0.0; batch * n_out];
        reference::sgemm(&g, 1.0, v, w, 0.0, &mut o).unwrap();
        reference::bias_add(batch, n_out, 1, b, &mut o).unwrap();
        o
    };
    let p2 = Pool2dParams::new(2).with_stride((2, 2));
    let s1 = lenet1(batch);
    let mut y1 = vec![0.0; s1.output_len().unwrap()];
    reference::conv2d(&s1, x, &wt.c1w, Some(&wt.c1b), &mut y1).unwrap();
    let p1 = pool(Pool2dShape::new(p2, batch, 6, 28, 28), &sigmoid(y1));
    let s2 = lenet2(batch);
    let mut y2 = vec![0.0; s2.output_len().unwrap()];
    reference::conv2d(&s2, &p1, &wt.c2w, Some(&wt.c2b), &mut y2).unwrap();
    let p2o = pool(Pool2dShape::new(p2, batch, 16, 10, 10), &sigmoid(y2));
    let h1 = sigmoid(linear(&p2o, &wt.f1w, &wt.f1b, 400, 120));
    let h2 = sigmoid(linear(&h1, &wt.f2w, &wt.f2b, 120, 84));
    linear(&h2, &wt.f3w, &wt.f3b, 84, 10)
}

/// A rayon pool of `n` threads for the "all threads" rows.
pub fn thread_pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// d2l's LeNet in the tinycnn runtime (autograd, nn, SGD lr 0.9) on one fixed batch.
pub struct RuntimeLenet {
    pub net: tinycnn::nn::Sequential,
    pub opt: tinycnn::optim::Sgd,
    pub x: tinycnn::Tensor,
    pub labels: Vec<u32>,
}

impl RuntimeLenet {
    pub fn new(batch: usize) -> RuntimeLenet {
        use tinycnn::nn::Module;
        let net = tinycnn_models::lenet();
        let opt = tinycnn::optim::Sgd::new(net.parameters(), 0.9).unwrap();
        let x = tinycnn::Tensor::rand(&[batch, 1, 28, 28]);
        let labels = (0..batch as u32).map(|i| i % 10).collect();
        RuntimeLenet {
            net,
            opt,
            x,
            labels,
        }
    }

    /// Inference: no autograd graph is recorded.
    pub fn forward(&self) -> tinycnn::Tensor {
        use tinycnn::nn::Module;
        let _guard = tinycnn::no_grad_guard();
        self.net.forward(&self.x).unwrap()
    }

    /// Forward, cross-entropy, backward, SGD update.
    pub fn train_step(&mut self) -> f32 {
        use tinycnn::nn::Module;
        use tinycnn::optim::Optimizer;
        self.opt.zero_grad();
        let loss = self
            .net
            .forward(&self.x)
            .unwrap()
            .cross_entropy(&self.labels)
            .unwrap();
        loss.backward().unwrap();
        self.opt.step().unwrap();
        loss.to_vec()[0]
    }
}

/// Peers: candle-core on the CPU (its own thread pool: all cores).
#[cfg(feature = "peers")]
pub mod candle {
    use candle_core::{DType, Device, Result, Tensor, Var};

    /// `x [N, C, H, W] * w [O, C, kh, kw] + b` with candle's CPU conv2d.
    pub struct CandleConv {
        pub x: Tensor,
        pub w: Tensor,
        pub b: Tensor,
        pub padding: usize,
    }

    impl CandleConv {
        pub fn new(s: &tinycnn_kernels::Conv2dShape) -> CandleConv {
            let p = &s.params;
            let dev = Device::Cpu;
            let (kh, kw) = p.kernel;
            let x = Tensor::from_vec(
                super::data(s.input_len().unwrap(), 1),
                (s.batch, p.in_channels, s.in_h, s.in_w),
                &dev,
            )
            .unwrap();
            let w = Tensor::from_vec(
                super::data(s.weight_len(), 2),
                (p.out_channels, p.in_channels, kh, kw),
                &dev,
            )
            .unwrap();
            let b = Tensor::from_vec(
                super::data(p.out_channels, 3),
                (1, p.out_channels, 1, 1),
                &dev,
            )
            .unwrap();
            CandleConv {
                x,
                w,
                b,
                padding: p.padding.0,
            }
        }

        pub fn forward(&self) -> Tensor {
            self.x
                .conv2d(&self.w, self.padding, 1, 1, 1)
                .and_then(|y| y.broadcast_add(&self.b))
                .unwrap()
        }
    }

    fn sigmoid(x: &Tensor) -> Result<Tensor> {
        x.neg()?.exp()?.affine(1.0, 1.0)?.recip()
    }

    /// d2l's LeNet written with candle-core ops (candle-nn is not pulled in): uniform
    /// PyTorch-style init, cross-entropy via log-sum-exp and gather, plain SGD.
    pub struct CandleLenet {
        params: Vec<Var>,
        x: Tensor,
        labels: Tensor,
        lr: f64,
    }

    impl CandleLenet {
        pub fn new(batch: usize) -> CandleLenet {
            let dev = Device::Cpu;
            let var = |shape: &[usize], fan_in: usize| {
                let k = 1.0 / (fan_in as f64).sqrt();
                Var::rand(-k as f32, k as f32, shape, &dev).unwrap()
            };
            let params = vec![
                var(&[6, 1, 5, 5], 25),
                var(&[1, 6, 1, 1], 25),
                var(&[16, 6, 5, 5], 150),
                var(&[1, 16, 1, 1], 150),
                var(&[120, 400], 400),
                var(&[120], 400),
                var(&[84, 120], 120),
                var(&[84], 120),
                var(&[10, 84], 84),
                var(&[10], 84),
            ];
            let x = Tensor::rand(0f32, 1f32, (batch, 1, 28, 28), &dev).unwrap();
            let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
            let labels = Tensor::from_vec(labels, (batch, 1), &dev).unwrap();
            CandleLenet {
                params,
                x,
                labels,
                lr: 0.9,
            }
        }

        pub fn forward(&self) -> Result<Tensor> {
            let p: Vec<&Tensor> = self.params.iter().map(|v| v.as_tensor()).collect();
            let h =
                sigmoid(&self.x.conv2d(p[0], 2, 1, 1, 1)?.broadcast_add(p[1])?)?.avg_pool2d(2)?;
            let h = sigmoid(&h.conv2d(p[2], 0, 1, 1, 1)?.broadcast_add(p[3])?)?.avg_pool2d(2)?;
            let h = h.flatten_from(1)?;
            let h = sigmoid(&h.matmul(&p[4].t()?)?.broadcast_add(p[5])?)?;
            let h = sigmoid(&h.matmul(&p[6].t()?)?.broadcast_add(p[7])?)?;
            h.matmul(&p[8].t()?)?.broadcast_add(p[9])
        }

        pub fn train_step(&mut self) -> Result<f32> {
            let logits = self.forward()?;
            let log_probs = logits.broadcast_sub(&logits.log_sum_exp(1)?.unsqueeze(1)?)?;
            let loss = log_probs.gather(&self.labels, 1)?.mean_all()?.neg()?;
            let grads = loss.backward()?;
            for v in &self.params {
                if let Some(g) = grads.get(v.as_tensor()) {
                    v.set(&(v.as_tensor() - (g * self.lr)?)?)?;
                }
            }
            loss.to_dtype(DType::F32)?.to_scalar::<f32>()
        }
    }
}
