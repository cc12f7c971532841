//! Invalid parameters and wrongly sized buffers come back as the right `KernelError`,
//! never as a panic, and the messages name the problem.

use tinycnn_kernels::*;

fn conv_fwd(s: &Conv2dShape, x: usize, w: usize, b: Option<usize>, y: usize) -> Result<()> {
    let bias = b.map(|n| vec![0.0f32; n]);
    let mut ws = vec![0.0f32; conv2d_workspace_len(s)];
    conv2d_forward(
        s,
        &vec![0.0; x],
        &vec![0.0; w],
        bias.as_deref(),
        &mut vec![0.0; y],
        &mut ws,
    )
}

/// Runs every conv entry point (forward with each algorithm, the three backward kernels and
/// the reference) on correctly sized buffers where the shape allows, expecting `err` from all.
#[track_caller]
fn assert_conv_rejects(s: &Conv2dShape, err: KernelError) {
    // Buffer sizes cannot be computed for an invalid shape; any small ones will do, the
    // shape must be rejected first.
    let (x, w, y) = (
        s.input_len().unwrap_or(4).min(1 << 16),
        s.weight_len().min(1 << 16),
        s.output_len().unwrap_or(4).min(1 << 16),
    );
    let (xv, wv, mut yv) = (vec![0.0f32; x], vec![0.0f32; w], vec![0.0f32; y]);
    // Workspace queries must not panic on a bad shape.
    let ws_len = conv2d_workspace_len(s)
        .max(conv2d_backward_input_workspace_len(s))
        .max(conv2d_backward_weight_workspace_len(s));
    let mut ws = vec![0.0f32; ws_len.min(1 << 20)];
    for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm] {
        assert_eq!(
            conv2d_forward_with(algo, s, &xv, &wv, None, &mut yv, &mut ws),
            Err(err),
            "forward {algo:?}"
        );
        assert_eq!(
            conv2d_backward_input_with(algo, s, &yv.clone(), &wv, &mut xv.clone(), &mut ws),
            Err(err),
            "backward input {algo:?}"
        );
        assert_eq!(
            conv2d_backward_weight_with(algo, s, &xv, &yv.clone(), &mut wv.clone(), &mut ws),
            Err(err),
            "backward weight {algo:?}"
        );
    }
    assert_eq!(
        conv2d_backward_input(s, &yv.clone(), &wv, &mut xv.clone(), &mut ws),
        Err(err),
        "backward input"
    );
    assert_eq!(
        conv2d_backward_weight(s, &xv, &yv.clone(), &mut wv.clone(), &mut ws),
        Err(err),
        "backward weight"
    );
    assert_eq!(
        conv2d_backward_bias(s, &yv, &mut vec![0.0; s.params.out_channels.min(1 << 16)]),
        Err(err),
        "backward bias"
    );
    assert_eq!(
        reference::conv2d(s, &xv, &wv, None, &mut yv),
        Err(err),
        "reference"
    );
}

fn shape(p: Conv2dParams) -> Conv2dShape {
    Conv2dShape::new(p, 1, 5, 5)
}

mod conv;
mod elementwise;
mod gemm;
mod messages;
mod optim;
mod pool;
