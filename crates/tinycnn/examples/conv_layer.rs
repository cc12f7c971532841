//! d2l "Convolutions for Images" (图像卷积) with tinycnn, cell by cell:
//! the cross-correlation `corr2d`, a hand-written `Conv2D` module, edge detection with the
//! `[1, -1]` kernel and with the first seed notebook's `[-1, 1]` (both on `X` and on `X.t()`),
//! and learning a kernel from (X, Y) with `nn::Conv2d` and hand-written SGD at lr 3e-2:
//! 10 steps back to `[1, -1]` (d2l), 100 steps toward another target, the first notebook's
//! `[[1, 1, 0, 0, 0, 0, 1]] * 6` (its `batch N, loss` lines; the kernel that makes it is
//! `[1, 0]`), and 100 steps back to `[1, -1]`, ending at `tensor([[ 1.0000, -1.0000]])`.
//!
//! Run: `cargo run --release -p tinycnn --example conv_layer`
//!
//! The functions are `pub` so that `tests/d2l_ch6.rs` checks exactly this code.

use tinycnn::nn::{Conv2d, Module};
use tinycnn::{no_grad, Conv2dParams, Error, Result, Rng, Tensor};

/// `corr2d(X, K)`: the notebook's double loop, written with differentiable tensor ops
/// (`narrow` is `X[i:i + h, j:j + w]`), so autograd flows through it as through PyTorch's
/// `Y[i, j] = (...).sum()` assignments.
pub fn corr2d(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let &[h, w] = k.shape() else {
        return Err(Error::BadShape {
            op: "corr2d",
            shape: k.shape().to_vec(),
            msg: format!("the kernel must be 2-D [h, w], got {}-D", k.rank()),
        });
    };
    let &[xh, xw] = x.shape() else {
        return Err(Error::BadShape {
            op: "corr2d",
            shape: x.shape().to_vec(),
            msg: format!(
                "the input must be 2-D [H, W], got {}-D; for batched [N, C, H, W] input use nn::Conv2d",
                x.rank()
            ),
        });
    };
    if h == 0 || w == 0 || h > xh || w > xw {
        return Err(Error::ShapeMismatch {
            op: "corr2d (kernel larger than the input)",
            lhs: x.shape().to_vec(),
            rhs: k.shape().to_vec(),
        });
    }
    let (oh, ow) = (xh - h + 1, xw - w + 1);
    let mut cells = Vec::with_capacity(oh * ow);
    for i in 0..oh {
        for j in 0..ow {
            let window = x.narrow(0, i, h)?.narrow(1, j, w)?;
            cells.push((&window * k)?.sum_all());
        }
    }
    Tensor::stack(&cells, 0)?.reshape([oh, ow])
}

/// The notebook's `class Conv2D(nn.Module)`: a random `[kh, kw]` kernel and a zero bias.
pub struct Conv2D {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv2D {
    /// `Conv2D(kernel_size)`: `weight = torch.rand(kernel_size)`, `bias = torch.zeros(1)`.
    pub fn new(kernel_size: (usize, usize)) -> Result<Conv2D> {
        Ok(Conv2D {
            weight: Tensor::rand(&[kernel_size.0, kernel_size.1]).requires_grad_(true)?,
            bias: Tensor::zeros(&[1]).requires_grad_(true)?,
        })
    }
}

impl Module for Conv2D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        corr2d(x, &self.weight)? + &self.bias
    }
    fn own_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
    fn type_name(&self) -> String {
        "Conv2D".into()
    }
}

/// The 3x3 input and 2x2 kernel of the figure (`fig_correlation`).
pub fn figure_x_k() -> (Tensor, Tensor) {
    (
        Tensor::new([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]),
        Tensor::new([[0.0, 1.0], [2.0, 3.0]]),
    )
}

/// `X = torch.ones((6, 8)); X[:, 2:6] = 0`: white, a black band, white.
pub fn edge_image() -> Result<Tensor> {
    let x = Tensor::ones(&[6, 8]);
    x.slice_fill_(1, 2..6, 0.0)?;
    Ok(x)
}

/// `K = torch.tensor([[1.0, -1.0]])`: 1 where white turns black, -1 where black turns white.
pub fn edge_kernel() -> Tensor {
    Tensor::new([[1.0, -1.0]])
}

/// `K = torch.tensor([[-1, 1],])` of the first seed notebook: the `[1, -1]` kernel negated,
/// so the edges come out with the opposite signs (-1 where white turns black).
pub fn reversed_edge_kernel() -> Tensor {
    Tensor::new([[-1.0, 1.0]])
}

/// The first seed notebook's other target, `torch.tensor([[1., 1., 0., 0., 0., 0., 1.]] * 6)`:
/// each output is the input pixel under the kernel's left tap, so the kernel that produces
/// it from `X` is `[1, 0]`.
pub fn other_target() -> Tensor {
    let row = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    Tensor::new([row; 6])
}

/// What "learning the kernel" prints and ends with.
pub struct LearnedKernel {
    /// `l.sum()` of every iteration (computed before that iteration's update).
    pub losses: Vec<f32>,
    /// `conv2d.weight.data.reshape((1, 2))` after the last update.
    pub kernel: Tensor,
}

/// `conv2d = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)` trained by hand-written SGD on
/// `(X, Y)`, 2-D `[h, w]` and `[h, w - 1]`, reshaped to `[1, 1, h, w]` / `[1, 1, h, w - 1]`
/// (`[1, 1, 6, 8]` / `[1, 1, 6, 7]` in the notebooks). The initial weight has the layer's
/// default distribution, `U(-1/sqrt(2), 1/sqrt(2))`, drawn from `Rng::seed_from(seed)` so a
/// run is reproducible even while other threads use the global generator.
pub fn learn_kernel(
    x: &Tensor,
    y: &Tensor,
    steps: usize,
    lr: f32,
    seed: u64,
) -> Result<LearnedKernel> {
    let conv2d = Conv2d::with(Conv2dParams::new(1, 1, (1, 2)), false)?;
    let bound = 1.0 / 2f32.sqrt();
    let init = Tensor::uniform_with(-bound, bound, &[1, 1, 1, 2], &mut Rng::seed_from(seed))?;
    no_grad(|| conv2d.weight.copy_(&init))?;

    let (&[h, w], &[yh, yw]) = (x.shape(), y.shape()) else {
        return Err(Error::ShapeMismatch {
            op: "learn_kernel (X [h, w] vs Y [h, w - 1])",
            lhs: x.shape().to_vec(),
            rhs: y.shape().to_vec(),
        });
    };
    if w < 2 || yh != h || yw != w - 1 {
        return Err(Error::ShapeMismatch {
            op: "learn_kernel (X [h, w] vs Y [h, w - 1])",
            lhs: x.shape().to_vec(),
            rhs: y.shape().to_vec(),
        });
    }
    let x = x.reshape([1, 1, h, w])?; // batch size, channels, height, width
    let y = y.reshape([1, 1, yh, yw])?;
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let y_hat = conv2d.forward(&x)?;
        let l = (&y_hat - &y)?.pow(2.0);
        conv2d.zero_grad();
        l.sum_all().backward()?;
        // conv2d.weight.data[:] -= lr * conv2d.weight.grad
        let grad = conv2d
            .weight
            .grad()
            .ok_or_else(|| Error::Autograd("the kernel got no gradient".into()))?;
        no_grad(|| conv2d.weight.sub_(&(grad * lr)))?;
        losses.push(l.sum_all().item()?);
    }
    Ok(LearnedKernel {
        losses,
        kernel: conv2d.weight.detach().reshape([1, 2])?,
    })
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);

    println!("## Cross-correlation (互相关运算)");
    let (x, k) = figure_x_k();
    println!("{}", corr2d(&x, &k)?);
    // The runtime's kernel-backed version gives the same numbers.
    assert!(x.corr2d(&k)?.equal(&corr2d(&x, &k)?));

    println!("\n## Convolutional layer (卷积层)");
    let layer = Conv2D::new((1, 2))?;
    println!("Conv2D weight: {}", layer.weight);
    println!("Conv2D bias: {}", layer.bias);

    println!("\n## Edge detection (图像中目标的边缘检测)");
    let x = edge_image()?;
    println!("{x}");
    let k = edge_kernel();
    println!("{k}");
    let y = corr2d(&x, &k)?;
    println!("{y}");
    println!("corr2d(X.t(), K):");
    println!("{}", corr2d(&x.t()?, &k)?);
    println!(
        "Conv2D(1, 2) on X, output shape: {}",
        tinycnn::size_string(layer.forward(&x)?.shape())
    );
    // The first seed notebook's kernel is the negation: the same edges, opposite signs,
    // and again nothing in the transposed image.
    let k_reversed = reversed_edge_kernel();
    println!("K = {k_reversed}");
    println!("{}", corr2d(&x, &k_reversed)?);
    println!("corr2d(X.t(), K):");
    println!("{}", corr2d(&x.t()?, &k_reversed)?);

    println!("\n## Learning a kernel (学习卷积核)");
    let learned = learn_kernel(&x, &y, 10, 3e-2, 0)?;
    for (i, l) in learned.losses.iter().enumerate() {
        if (i + 1) % 2 == 0 {
            println!("epoch {}, loss {l:.3}", i + 1);
        }
    }
    println!("{}", learned.kernel);

    // The first seed notebook learns toward another target (the kernel [1, 0]) for 100
    // steps and prints every second one.
    println!("\nY = torch.tensor([[1., 1., 0., 0., 0., 0., 1.]] * 6), 100 steps:");
    let learned = learn_kernel(&x, &other_target(), 100, 3e-2, 1)?;
    for (i, l) in learned.losses.iter().enumerate() {
        if (i + 1) % 2 == 0 {
            println!("batch {}, loss {l:.3}", i + 1);
        }
    }
    println!("{}", learned.kernel);

    // The third seed notebook trains on the edges for 100 steps and prints every 20th.
    println!("\nY = corr2d(X, K) again, 100 steps:");
    let learned = learn_kernel(&x, &y, 100, 3e-2, 2)?;
    for (i, l) in learned.losses.iter().enumerate() {
        if (i + 1) % 20 == 0 {
            println!("epoch {}, loss {l:.3}", i + 1);
        }
    }
    println!("{}", learned.kernel);
    Ok(())
}
