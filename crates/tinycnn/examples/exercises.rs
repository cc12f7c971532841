//! The exercises of d2l "Convolutions for Images" (图像卷积 练习) with tinycnn:
//! 1. a diagonal-edge image, transposing X and K;
//! 2. what autograd says about the hand-written `Conv2D` given a 3-D input;
//! 3. cross-correlation as a matrix product (im2col / `F.unfold`);
//! 4. hand-designed kernels: the Laplacian (second derivative) and the box (integral).
//!
//! Run: `cargo run --release -p tinycnn --example exercises`

use tinycnn::nn::{Conv2d, Module};
use tinycnn::{no_grad, size_string, Conv2dParams, Error, Result, Tensor};

#[allow(dead_code)]
#[path = "conv_layer.rs"]
mod conv_layer;
pub use conv_layer::Conv2D;

/// The 6x6 image of exercise 1: ones in the top-left and bottom-right 3x3 blocks, as
/// `[1, 1, 6, 6]`.
pub fn diagonal_image() -> Result<Tensor> {
    let top = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
    let bottom = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    Tensor::new([top, top, top, bottom, bottom, bottom]).view([1, 1, 6, 6])
}

/// The vertical-edge kernel `[[1, 0, -1]] * 3` as `[1, 1, 3, 3]`.
pub fn vertical_edge_kernel() -> Result<Tensor> {
    let row = [1.0, 0.0, -1.0];
    Tensor::new([row, row, row]).view([1, 1, 3, 3])
}

/// `nn.Conv2d(1, 1, kernel_size=3, bias=False)` with `conv.weight.data = K`.
pub fn conv_with_kernel(k: &Tensor) -> Result<Conv2d> {
    let conv = Conv2d::with(Conv2dParams::new(1, 1, (3, 3)), false)?;
    no_grad(|| conv.weight.copy_(k))?;
    Ok(conv)
}

/// `output.squeeze()` of a `[1, 1, H, W]` result.
pub fn squeeze2(t: &Tensor) -> Result<Tensor> {
    t.squeeze(0)?.squeeze(0)
}

/// Exercise 2: the hand-written `Conv2D((3, 3))` on `torch.rand(1, 5, 5)`. PyTorch fails
/// inside `corr2d` ("Trying to create tensor with negative dimension -1"); here the forward
/// pass returns an error that names the problem, before any backward.
pub fn conv2d_on_3d_input() -> Result<Tensor> {
    let conv_layer = Conv2D::new((3, 3))?;
    let x = Tensor::rand(&[1, 5, 5]);
    let output = conv_layer.forward(&x)?;
    output.sum_all().backward()?;
    Ok(output)
}

/// `F.unfold(X, kernel_size, padding)` with stride 1: `[N, C, H, W]` becomes
/// `[N, C*kh*kw, L]`. Row `(c, ky, kx)` holds, for each of the `L = oh*ow` output pixels
/// (row-major), the input that kernel tap reads, zero in the padding: the column matrix of
/// the kernel crate's im2col convolution (`tinycnn_kernels::conv`, `Im2colGemm`).
pub fn unfold(x: &Tensor, kernel: (usize, usize), padding: (usize, usize)) -> Result<Tensor> {
    let &[n, c, h, w] = x.shape() else {
        return Err(Error::invalid_argument(
            "unfold",
            format!("X must be [N, C, H, W], got {:?}", x.shape()),
        ));
    };
    let (kh, kw) = kernel;
    let (ph, pw) = padding;
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if kh == 0 || kw == 0 || kh > hp || kw > wp {
        return Err(Error::invalid_argument(
            "unfold",
            format!("kernel {kernel:?} does not fit the padded input {hp}x{wp}"),
        ));
    }
    let mut x = x.clone();
    if ph > 0 {
        let z = Tensor::zeros(&[n, c, ph, w]);
        x = Tensor::cat(&[z.clone(), x, z], 2)?;
    }
    if pw > 0 {
        let z = Tensor::zeros(&[n, c, hp, pw]);
        x = Tensor::cat(&[z.clone(), x, z], 3)?;
    }
    let (oh, ow) = (hp - kh + 1, wp - kw + 1);
    let mut taps = Vec::with_capacity(kh * kw);
    for ky in 0..kh {
        for kx in 0..kw {
            taps.push(x.narrow(2, ky, oh)?.narrow(3, kx, ow)?); // [N, C, oh, ow]
        }
    }
    // [N, C, kh*kw, oh, ow]: channel-major rows, as F.unfold and im2col order them.
    Tensor::stack(&taps, 2)?.reshape([n, c * kh * kw, oh * ow])
}

/// The notebook's `conv2d_via_matmul(X, K)`: unfold, one matrix product, fold back.
pub fn conv2d_via_matmul(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let (&[batch, _, height, width], &[out_channels, _, kh, kw]) = (x.shape(), k.shape()) else {
        return Err(Error::invalid_argument(
            "conv2d_via_matmul",
            "X and K must both be 4-D",
        ));
    };
    let (out_h, out_w) = (height + 1 - kh, width + 1 - kw);
    let l = (out_h * out_w) as isize;
    // (kh*kw*C, N*L): the columns of every image side by side.
    let x_col = unfold(x, (kh, kw), (0, 0))?
        .reshape([batch as isize, -1, l])?
        .permute(&[1, 0, 2])?
        .reshape([-1, batch as isize * l])?;
    let k_row = k.reshape([out_channels as isize, -1])?;
    let y_col = k_row.matmul(&x_col)?; // (O, N*L)
    y_col
        .reshape([out_channels, batch, out_h, out_w])?
        .permute(&[1, 0, 2, 3])
}

/// The second-derivative (Laplacian) kernel, `[1, 1, 3, 3]`.
pub fn laplacian() -> Result<Tensor> {
    Tensor::new([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view([1, 1, 3, 3])
}

/// The integral (3x3 box mean) kernel, `torch.ones(1, 1, 3, 3) / 9`.
pub fn integral() -> Tensor {
    Tensor::ones(&[1, 1, 3, 3]) / 9.0
}

/// `F.conv2d(X, kernel, padding=1)` squeezed to 2-D.
pub fn apply_padded(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    squeeze2(&x.conv2d(kernel, None, (1, 1), (1, 1), (1, 1), 1)?)
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);

    println!("## 1. A diagonal edge");
    let x = diagonal_image()?;
    let k = vertical_edge_kernel()?;
    let conv = conv_with_kernel(&k)?;
    println!(
        "Original output (原始输出):\n {}",
        squeeze2(&conv.forward(&x)?)?
    );
    let x_t = x.transpose(2, 3)?;
    println!(
        "Transposed X (转置X后的输出):\n {}",
        squeeze2(&conv.forward(&x_t)?)?
    );
    // The notebook computes K^T but applies the old kernel again; X is symmetric, so all three
    // outputs agree. With K^T really in place, the edge map is the transpose.
    println!(
        "Transposed X, same K (notebook cell):\n {}",
        squeeze2(&conv.forward(&x_t)?)?
    );
    let conv_t = conv_with_kernel(&k.transpose(2, 3)?)?;
    println!(
        "Transposed X and K:\n {}",
        squeeze2(&conv_t.forward(&x_t)?)?
    );
    let a = Tensor::rand(&[1, 3, 1, 2]);
    println!("{}", size_string(a.shape()));
    println!("{}", size_string(a.squeeze(2)?.squeeze(0)?.shape()));

    println!("\n## 2. Autograd through the hand-written Conv2D on a 3-D input");
    match conv2d_on_3d_input() {
        Ok(y) => println!("unexpectedly worked: {y}"),
        Err(e) => println!("Error: {e}"),
    }

    println!("\n## 3. Cross-correlation as a matrix product");
    let x = Tensor::new([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).view([1, 1, 3, 3])?;
    let k = Tensor::new([[1.0, 0.0], [0.0, -1.0]]).view([1, 1, 2, 2])?;
    let y_matmul = conv2d_via_matmul(&x, &k)?;
    println!("Matmul output (矩阵乘法输出):\n {y_matmul}");
    let y_conv = x.conv2d(&k, None, (1, 1), (0, 0), (1, 1), 1)?;
    println!("conv2d output (卷积输出):\n {y_conv}");
    let same = if y_matmul.allclose(&y_conv, 1e-5, 1e-6) {
        "True"
    } else {
        "False"
    };
    println!("Same result (结果是否一致): {same}");

    let x = Tensor::arange_step(1.0, 17.0, 1.0)?.view([1, 1, 4, 4])?;
    let unfolded = unfold(&x, (2, 2), (0, 0))?;
    println!("{}", size_string(unfolded.shape()));
    println!("{}", unfolded.select(0, 0)?.select(1, 0)?);

    println!("\n## 4. Hand-designed kernels");
    let x = diagonal_image()?;
    println!(
        "Second derivative (二阶导数结果):\n {}",
        apply_padded(&x, &laplacian()?)?
    );
    println!(
        "\nIntegral (积分结果):\n {}",
        apply_padded(&x, &integral())?
    );
    Ok(())
}
