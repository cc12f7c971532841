//! d2l "Padding and Stride" (填充和步幅) with tinycnn: the output shapes of four
//! `nn.Conv2d` layers on an 8x8 input, printed as PyTorch prints them (`torch.Size([8, 8])`).
//!
//! Run: `cargo run --release -p tinycnn --example padding_stride`

use tinycnn::nn::{Conv2d, Module};
use tinycnn::{size_string, Result, Tensor};

/// `comp_conv2d(conv2d, X)`: adds the batch and channel dimensions (both 1), applies the
/// layer, and drops them again.
pub fn comp_conv2d(conv2d: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1, 1];
    shape.extend_from_slice(x.shape()); // X.reshape((1, 1) + X.shape)
    let y = conv2d.forward(&x.reshape(shape)?)?;
    y.reshape(y.shape()[2..].to_vec()) // Y.reshape(Y.shape[2:])
}

/// The four layers of the section, in order, with what each demonstrates.
pub fn layers() -> Result<Vec<(&'static str, Conv2d)>> {
    Ok(vec![
        // Padding 1 on every side keeps a 3x3 kernel's output at 8x8.
        (
            "nn.Conv2d(1, 1, kernel_size=3, padding=1)",
            Conv2d::new(1, 1, 3)?.padding(1)?,
        ),
        (
            "nn.Conv2d(1, 1, kernel_size=(5, 3), padding=(2, 1))",
            Conv2d::new(1, 1, (5, 3))?.padding((2, 1))?,
        ),
        // Stride 2 halves each side: floor((8 - 3 + 2 + 2) / 2) = 4.
        (
            "nn.Conv2d(1, 1, kernel_size=3, padding=1, stride=2)",
            Conv2d::new(1, 1, 3)?.padding(1)?.stride(2)?,
        ),
        (
            "nn.Conv2d(1, 1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4))",
            Conv2d::new(1, 1, (3, 5))?.padding((0, 1))?.stride((3, 4))?,
        ),
    ])
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let x = Tensor::rand(&[8, 8]); // X = torch.rand(size=(8, 8))
    for (python, conv2d) in layers()? {
        println!("conv2d = {python}");
        println!("{}", conv2d.repr());
        println!(
            "comp_conv2d(conv2d, X).shape -> {}\n",
            size_string(comp_conv2d(&conv2d, &x)?.shape())
        );
    }
    Ok(())
}
