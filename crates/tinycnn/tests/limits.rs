//! Absurd sizes are errors, not panics or aborting allocations (issue 12, bounds): every op
//! that returns `Result` and builds a tensor checks its element count (checked products,
//! at most `tinycnn::limits::MAX_NUMEL`) before it allocates. Expected values by hand.

use tinycnn::limits::MAX_NUMEL;
use tinycnn::Tensor;

fn err_text<T: std::fmt::Debug>(r: tinycnn::Result<T>) -> String {
    r.expect_err("absurd size must be an error").to_string()
}

#[test]
fn arange_step_with_a_tiny_step_is_an_error() {
    // 1e18 elements: before, the count saturated in `as usize` and the collect aborted.
    let e = err_text(Tensor::arange_step(0.0, 1e9, 1e-9));
    assert!(e.contains("arange") && e.contains("limit"), "{e}");
    assert!(Tensor::arange_step(0.0, 1.0, f32::MIN_POSITIVE).is_err());
    // Just over the bound, and the reverse direction.
    assert!(Tensor::arange_step(0.0, (MAX_NUMEL as f32) * 2.0, 1.0).is_err());
    assert!(Tensor::arange_step(1e9, 0.0, -1e-9).is_err());
    // Ordinary ranges still work (hand values).
    let t = Tensor::arange_step(0.0, 1.0, 0.25).unwrap();
    assert_eq!(t.to_vec(), [0.0, 0.25, 0.5, 0.75]);
    assert_eq!(
        Tensor::arange_step(3.0, 0.0, -1.0).unwrap().to_vec(),
        [3.0, 2.0, 1.0]
    );
    assert_eq!(Tensor::arange_step(1.0, 1.0, 1.0).unwrap().numel(), 0);
}

#[test]
fn broadcast_to_an_enormous_shape_is_an_error() {
    let one = Tensor::ones(&[1]);
    let e = err_text(one.broadcast_to(&[1 << 20, 1 << 20]));
    assert!(e.contains("broadcast_to") && e.contains("limit"), "{e}");
    // The product overflows usize: an error, not the overflow panic in `numel_of`.
    let e = err_text(one.broadcast_to(&[usize::MAX, 2]));
    assert!(e.contains("overflows"), "{e}");
    // Broadcasting binary ops and matmul go through the same check.
    let col = Tensor::zeros(&[1 << 17, 1]);
    let row = Tensor::zeros(&[1, 1 << 17]);
    assert!(col.add(&row).is_err());
    assert!(col.matmul(&row).is_err());
    // linear: [2^17, 1] rows times 2^17 output features.
    let w = Tensor::zeros(&[1 << 17, 1]);
    assert!(col.linear(&w, None).is_err());
    // Within the bound it still works: [2, 1] + [1, 3] by hand.
    let a = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
    let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[1, 3]).unwrap();
    assert_eq!(
        a.add(&b).unwrap().to_vec(),
        [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]
    );
}

#[test]
fn conv2d_with_enormous_padding_is_an_error() {
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let w = Tensor::ones(&[1, 1, 1, 1]);
    // The output alone overflows usize.
    let big = 1usize << 40;
    let e = err_text(x.conv2d(&w, None, (1, 1), (big, big), (1, 1), 1));
    assert!(e.contains("conv2d"), "{e}");
    // A 3x3 output, but the zero-padded scratch copy would be (2^21 + 2)^2 elements.
    let p = 1usize << 20;
    let e = err_text(x.conv2d(&w, None, (p, p), (p, p), (1, 1), 1));
    assert!(e.contains("conv2d") && e.contains("limit"), "{e}");
    // Padding near usize::MAX / 2 (the kernel crate's overflow case).
    let half = usize::MAX / 2 - 7;
    assert!(x
        .conv2d(&w, None, (1, usize::MAX), (0, half), (1, 1), 1)
        .is_err());
    // Channels times groups overflowing: an empty weight with a huge channel count.
    let w_empty = Tensor::from_vec(vec![], &[0, 1 << 62, 1, 1]).unwrap();
    let x4 = Tensor::zeros(&[1, 4, 1, 1]);
    assert!(x4
        .conv2d(&w_empty, None, (1, 1), (0, 0), (1, 1), 4)
        .is_err());
    // An ordinary padding still works: 1x1 kernel of 1 with padding 1 frames x in zeros.
    let y = x.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.shape(), &[1, 1, 4, 4]);
    #[rustfmt::skip]
    let want = [
        0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 2.0, 0.0,
        0.0, 3.0, 4.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(y.to_vec(), want);
}

#[test]
fn random_tensors_of_absurd_shape_are_errors() {
    assert!(Tensor::normal(0.0, 1.0, &[usize::MAX, 2]).is_err());
    assert!(Tensor::uniform(0.0, 1.0, &[1 << 20, 1 << 20]).is_err());
    assert_eq!(Tensor::normal(0.0, 1.0, &[2, 3]).unwrap().numel(), 6);
}
