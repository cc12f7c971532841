//! d2l "Multiple Input and Multiple Output Channels" (多输入多输出通道) with tinycnn:
//! summing per-channel cross-correlations, stacking one result per output kernel, and the
//! 1x1 convolution as a matrix product.
//!
//! Run: `cargo run --release -p tinycnn --example channels`

use tinycnn::{size_string, Error, Result, Tensor};

/// `sum(d2l.corr2d(x, k) for x, k in zip(X, K))`: one cross-correlation per input channel,
/// added up. `X` is `[c_i, h, w]`, `K` is `[c_i, kh, kw]`.
pub fn corr2d_multi_in(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    if x.rank() != 3 || k.rank() != 3 || x.shape()[0] != k.shape()[0] || x.shape()[0] == 0 {
        return Err(Error::ShapeMismatch {
            op: "corr2d_multi_in (X [c_i, h, w] vs K [c_i, kh, kw])",
            lhs: x.shape().to_vec(),
            rhs: k.shape().to_vec(),
        });
    }
    let mut sum = x.select(0, 0)?.corr2d(&k.select(0, 0)?)?;
    for c in 1..x.shape()[0] {
        sum = (&sum + &x.select(0, c)?.corr2d(&k.select(0, c)?)?)?;
    }
    Ok(sum)
}

/// `torch.stack([corr2d_multi_in(X, k) for k in K], 0)`: `K` is `[c_o, c_i, kh, kw]`.
pub fn corr2d_multi_in_out(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let outs = (0..k.shape().first().copied().unwrap_or(0))
        .map(|o| corr2d_multi_in(x, &k.select(0, o)?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::stack(&outs, 0)
}

/// The 1x1 convolution as a fully connected layer over channels: `K [c_o, c_i] @ X [c_i, h*w]`.
pub fn corr2d_multi_in_out_1x1(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let &[c_i, h, w] = x.shape() else {
        return Err(Error::invalid_argument(
            "corr2d_multi_in_out_1x1",
            "X must be [c_i, h, w]",
        ));
    };
    let c_o = k.shape().first().copied().unwrap_or(0);
    let x = x.reshape([c_i, h * w])?;
    let k = k.reshape([c_o, c_i])?;
    let y = k.matmul(&x)?;
    y.reshape([c_o, h, w])
}

/// The two-channel `X` and `K` of d2l.
pub fn two_channel_x_k() -> (Tensor, Tensor) {
    (
        Tensor::new([
            [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
        ]),
        Tensor::new([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]]),
    )
}

/// `torch.stack((K, K + 1, K + 2), 0)`: three output channels.
pub fn three_kernels(k: &Tensor) -> Result<Tensor> {
    Tensor::stack(&[k.clone(), k + 1.0, k + 2.0], 0)
}

/// The three-channel 2x3 input and 2x2 kernels of the first seed notebook.
pub fn three_channel_x_k() -> (Tensor, Tensor) {
    (
        Tensor::new([
            [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]],
            [[3.0, 4.0, 5.0], [4.0, 5.0, 6.0]],
            [[6.0, 7.0, 8.0], [7.0, 8.0, 9.0]],
        ]),
        Tensor::new([
            [[0.0, 1.0], [2.0, 3.0]],
            [[1.0, 2.0], [3.0, 4.0]],
            [[2.0, 3.0], [4.0, 5.0]],
        ]),
    )
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);

    println!("## Multiple input channels (多输入通道)");
    let (x, k) = two_channel_x_k();
    println!("{}", corr2d_multi_in(&x, &k)?);

    println!("\n## Multiple output channels (多输出通道)");
    let k3 = three_kernels(&k)?;
    println!("{}", size_string(k3.shape()));
    println!("{}", corr2d_multi_in_out(&x, &k3)?);

    println!("\n(three input channels, 2x3 images)");
    let (x3, kk) = three_channel_x_k();
    println!("{}", size_string(corr2d_multi_in(&x3, &kk)?.shape()));
    println!("{}", corr2d_multi_in_out(&x3, &three_kernels(&kk)?)?);

    println!("\n## 1x1 convolutional layer (1×1 卷积层)");
    let x = Tensor::normal(0.0, 1.0, &[3, 3, 3])?;
    let k = Tensor::normal(0.0, 1.0, &[2, 3, 1, 1])?;
    println!("{}", size_string(x.reshape([3, 9])?.shape()));
    println!("{}", size_string(k.reshape([2, 3])?.shape()));
    let y1 = corr2d_multi_in_out_1x1(&x, &k)?;
    let y2 = corr2d_multi_in_out(&x, &k)?;
    let diff = (&y1 - &y2)?.abs().sum_all().item()?;
    assert!(
        diff < 1e-6,
        "1x1 as matmul differs from the general form by {diff}"
    );
    println!("float(torch.abs(Y1 - Y2).sum()) = {diff:e} < 1e-6");
    Ok(())
}
