//! d2l "Pooling" (汇聚层) with tinycnn: a hand-written `pool2d` (max and average), then
//! `nn::MaxPool2d` with PyTorch's defaults (stride = kernel), padding, strides, and two
//! channels.
//!
//! Run: `cargo run --release -p tinycnn --example pooling`

use tinycnn::nn::{MaxPool2d, Module};
use tinycnn::{Error, Result, Tensor};

/// Which reduction `pool2d` applies to each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Max,
    Avg,
}

/// `pool2d(X, pool_size, mode)`: no padding, stride 1, on a 2-D `X`.
pub fn pool2d(x: &Tensor, pool_size: (usize, usize), mode: Mode) -> Result<Tensor> {
    let (p_h, p_w) = pool_size;
    let &[h, w] = x.shape() else {
        return Err(Error::invalid_argument(
            "pool2d",
            format!("X must be 2-D, got {:?}", x.shape()),
        ));
    };
    if p_h == 0 || p_w == 0 || p_h > h || p_w > w {
        return Err(Error::invalid_argument(
            "pool2d",
            format!(
                "window {pool_size:?} does not fit in X of shape {:?}",
                x.shape()
            ),
        ));
    }
    let (oh, ow) = (h - p_h + 1, w - p_w + 1);
    let mut cells = Vec::with_capacity(oh * ow);
    for i in 0..oh {
        for j in 0..ow {
            let window = x.narrow(0, i, p_h)?.narrow(1, j, p_w)?;
            cells.push(match mode {
                Mode::Max => window.max_all()?,
                Mode::Avg => window.mean_all(),
            });
        }
    }
    Tensor::stack(&cells, 0)?.reshape([oh, ow])
}

/// `torch.arange(16, dtype=torch.float32).reshape((1, 1, 4, 4))`.
pub fn arange_4x4() -> Result<Tensor> {
    Tensor::arange(16).reshape([1, 1, 4, 4])
}

/// The `nn.MaxPool2d` layers of the section, with their Python spelling.
pub fn layers() -> Vec<(&'static str, MaxPool2d)> {
    vec![
        ("nn.MaxPool2d(3)", MaxPool2d::new(3)),
        (
            "nn.MaxPool2d(3, padding=1, stride=2)",
            MaxPool2d::new(3).padding(1).stride(2),
        ),
        (
            "nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))",
            MaxPool2d::new((2, 3)).stride((2, 3)).padding((0, 1)),
        ),
        (
            "nn.MaxPool2d((2, 3), padding=(1, 1), stride=(2, 3))",
            MaxPool2d::new((2, 3)).padding((1, 1)).stride((2, 3)),
        ),
    ]
}

/// `torch.cat((X, X + 1), 1)`: a second channel.
pub fn two_channels(x: &Tensor) -> Result<Tensor> {
    Tensor::cat(&[x.clone(), x + 1.0], 1)
}

fn main() -> Result<()> {
    println!("## Maximum and average pooling (最大汇聚层和平均汇聚层)");
    let x = Tensor::new([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]);
    println!("{}", pool2d(&x, (2, 2), Mode::Max)?);
    println!("{}", pool2d(&x, (2, 2), Mode::Avg)?);

    println!("\n## Padding and stride (填充和步幅)");
    let x = arange_4x4()?;
    println!("{x}");
    for (python, pool) in layers() {
        println!("pool2d = {python}  # {}", pool.repr());
        println!("{}", pool.forward(&x)?);
    }

    println!("\n## Multiple channels (多个通道)");
    let x = two_channels(&x)?;
    println!("{x}");
    let pool = MaxPool2d::new(3).padding(1).stride(2);
    println!("{}", pool.forward(&x)?);
    Ok(())
}
