//! The exercises of d2l "Convolutions for Images" (the fifth seed notebook), checked on the
//! code of the example `exercises`: the diagonal-edge image, the error of the hand-written
//! `Conv2D` on a 3-D input, cross-correlation as a matrix product over `unfold`, and the
//! Laplacian and integral kernels.

#[allow(dead_code)]
#[path = "../examples/exercises.rs"]
mod exercises;

use tinycnn::nn::Module;
use tinycnn::{size_string, Rng, Tensor};

const EDGE_MAP: &str = "tensor([[ 0.,  3.,  3.,  0.],
        [ 0.,  1.,  1.,  0.],
        [ 0., -1., -1.,  0.],
        [ 0., -3., -3.,  0.]]";

#[test]
fn diagonal_edge_with_x_and_k_transposed() {
    let x = exercises::diagonal_image().unwrap();
    let k = exercises::vertical_edge_kernel().unwrap();
    let conv = exercises::conv_with_kernel(&k).unwrap();
    let expected = [
        0., 3., 3., 0., 0., 1., 1., 0., 0., -1., -1., 0., 0., -3., -3., 0.,
    ];
    let y = exercises::squeeze2(&conv.forward(&x).unwrap()).unwrap();
    assert_eq!(y.to_vec(), expected);
    // The weight requires grad, so PyTorch prints a grad_fn suffix after the same body.
    assert!(y.to_string().starts_with(EDGE_MAP), "{y}");
    assert_eq!(y.detach().to_string(), format!("{EDGE_MAP})"));
    // The image is symmetric: transposing X alone changes nothing.
    let x_t = x.transpose(2, 3).unwrap();
    assert!(x_t.equal(&x));
    let y_t = exercises::squeeze2(&conv.forward(&x_t).unwrap()).unwrap();
    assert_eq!(y_t.to_vec(), expected);
    // Transposing K as well (the notebook forgets to use it) transposes the edge map.
    let conv_t = exercises::conv_with_kernel(&k.transpose(2, 3).unwrap()).unwrap();
    let y_tt = exercises::squeeze2(&conv_t.forward(&x_t).unwrap()).unwrap();
    assert!(y_tt.equal(&y.t().unwrap()));
    assert_eq!(
        y_tt.to_vec(),
        [0., 0., 0., 0., 3., 1., -1., -3., 3., 1., -1., -3., 0., 0., 0., 0.]
    );
}

#[test]
fn squeeze_drops_unit_dimensions() {
    let a = Tensor::rand_with(&[1, 3, 1, 2], &mut Rng::seed_from(0));
    assert_eq!(size_string(a.shape()), "torch.Size([1, 3, 1, 2])");
    assert_eq!(
        size_string(a.squeeze(2).unwrap().squeeze(0).unwrap().shape()),
        "torch.Size([3, 2])"
    );
}

#[test]
fn hand_written_conv2d_on_a_3d_input_is_an_error_not_a_panic() {
    let err = exercises::conv2d_on_3d_input().expect_err("a [1, 5, 5] input cannot work");
    let msg = err.to_string();
    assert!(msg.contains("corr2d"), "{msg}");
    assert!(msg.contains("2-D") && msg.contains("3-D"), "{msg}");
    assert!(msg.contains("[1, 5, 5]"), "{msg}");
    // The runtime's own corr2d refuses it too, with the shapes in the message.
    let x = Tensor::rand_with(&[1, 5, 5], &mut Rng::seed_from(1));
    let msg = x.corr2d(&Tensor::ones(&[3, 3])).unwrap_err().to_string();
    assert!(
        msg.contains("corr2d") && msg.contains("2-D") && msg.contains("[1, 5, 5]"),
        "{msg}"
    );
    // And backward from a non-scalar output says what to do.
    let w = Tensor::ones(&[2]).requires_grad_(true).unwrap();
    let msg = (&w * 2.0).backward().unwrap_err().to_string();
    assert!(msg.contains("scalar"), "{msg}");
}

#[test]
fn conv_through_matmul_equals_conv2d() {
    let x = Tensor::new([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
        .view([1, 1, 3, 3])
        .unwrap();
    let k = Tensor::new([[1.0, 0.0], [0.0, -1.0]])
        .view([1, 1, 2, 2])
        .unwrap();
    let y = exercises::conv2d_via_matmul(&x, &k).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec(), [-4.0; 4]);
    assert_eq!(
        y.to_string(),
        "tensor([[[[-4., -4.],\n          [-4., -4.]]]])"
    );
    let y_conv = x.conv2d(&k, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
    assert!(y.allclose(&y_conv, 0.0, 1e-6));
}

#[test]
fn conv_through_matmul_equals_conv2d_for_batches_and_channels() {
    let mut rng = Rng::seed_from(2);
    for (n, c, o, h, w, kh, kw) in [
        (2, 3, 4, 6, 5, 3, 2),
        (3, 1, 2, 4, 4, 1, 1),
        (1, 2, 3, 5, 7, 5, 3),
    ] {
        let x = Tensor::normal_with(0.0, 1.0, &[n, c, h, w], &mut rng).unwrap();
        let k = Tensor::normal_with(0.0, 1.0, &[o, c, kh, kw], &mut rng).unwrap();
        let y = exercises::conv2d_via_matmul(&x, &k).unwrap();
        let y_conv = x.conv2d(&k, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
        assert_eq!(y.shape(), y_conv.shape());
        assert!(y.allclose(&y_conv, 1e-5, 1e-5), "{y}\n{y_conv}");
    }
}

#[test]
fn unfold_of_a_4x4_image() {
    let x = Tensor::arange_step(1.0, 17.0, 1.0)
        .unwrap()
        .view([1, 1, 4, 4])
        .unwrap();
    let u = exercises::unfold(&x, (2, 2), (0, 0)).unwrap();
    assert_eq!(size_string(u.shape()), "torch.Size([1, 4, 9])");
    let first = u.select(0, 0).unwrap().select(1, 0).unwrap();
    assert_eq!(first.to_vec(), [1.0, 2.0, 5.0, 6.0]);
    assert_eq!(first.to_string(), "tensor([1., 2., 5., 6.])");
    // Last column: the bottom-right window.
    assert_eq!(
        u.select(0, 0).unwrap().select(1, 8).unwrap().to_vec(),
        [11.0, 12.0, 15.0, 16.0]
    );
}

#[test]
fn unfold_with_padding_matches_padded_conv2d() {
    let mut rng = Rng::seed_from(4);
    let x = Tensor::normal_with(0.0, 1.0, &[2, 2, 5, 4], &mut rng).unwrap();
    let k = Tensor::normal_with(0.0, 1.0, &[3, 2, 3, 3], &mut rng).unwrap();
    let cols = exercises::unfold(&x, (3, 3), (1, 1)).unwrap(); // [2, 18, 20]
    assert_eq!(cols.shape(), &[2, 18, 20]);
    let y = k
        .reshape([3, 18])
        .unwrap()
        .matmul(&cols)
        .unwrap()
        .reshape([2, 3, 5, 4])
        .unwrap();
    let y_conv = x.conv2d(&k, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert!(y.allclose(&y_conv, 1e-5, 1e-5));
}

#[test]
fn laplacian_of_the_diagonal_image() {
    let x = exercises::diagonal_image().unwrap();
    let y = exercises::apply_padded(&x, &exercises::laplacian().unwrap()).unwrap();
    #[rustfmt::skip]
    let expected = [
        -2., -1., -2.,  1.,  0.,  0.,
        -1.,  0., -1.,  1.,  0.,  0.,
        -2., -1., -2.,  2.,  1.,  1.,
         1.,  1.,  2., -2., -1., -2.,
         0.,  0.,  1., -1.,  0., -1.,
         0.,  0.,  1., -2., -1., -2.,
    ];
    assert_eq!(y.shape(), &[6, 6]);
    assert_eq!(y.to_vec(), expected);
    assert_eq!(
        y.to_string(),
        "tensor([[-2., -1., -2.,  1.,  0.,  0.],
        [-1.,  0., -1.,  1.,  0.,  0.],
        [-2., -1., -2.,  2.,  1.,  1.],
        [ 1.,  1.,  2., -2., -1., -2.],
        [ 0.,  0.,  1., -1.,  0., -1.],
        [ 0.,  0.,  1., -2., -1., -2.]])"
    );
}

#[test]
fn integral_of_the_diagonal_image() {
    let x = exercises::diagonal_image().unwrap();
    let y = exercises::apply_padded(&x, &exercises::integral()).unwrap();
    #[rustfmt::skip]
    let ninths = [
        4., 6., 4., 2., 0., 0.,
        6., 9., 6., 3., 0., 0.,
        4., 6., 5., 4., 3., 2.,
        2., 3., 4., 5., 6., 4.,
        0., 0., 3., 6., 9., 6.,
        0., 0., 2., 4., 6., 4.,
    ];
    let expected = Tensor::from_vec(ninths.iter().map(|v| v / 9.0).collect(), &[6, 6]).unwrap();
    assert!(y.allclose(&expected, 0.0, 1e-6), "{y}");
    assert_eq!(
        y.to_string(),
        "tensor([[0.4444, 0.6667, 0.4444, 0.2222, 0.0000, 0.0000],
        [0.6667, 1.0000, 0.6667, 0.3333, 0.0000, 0.0000],
        [0.4444, 0.6667, 0.5556, 0.4444, 0.3333, 0.2222],
        [0.2222, 0.3333, 0.4444, 0.5556, 0.6667, 0.4444],
        [0.0000, 0.0000, 0.3333, 0.6667, 1.0000, 0.6667],
        [0.0000, 0.0000, 0.2222, 0.4444, 0.6667, 0.4444]])"
    );
}
