//! NaN through the runtime's ops follows PyTorch (issue 12, NaN): relu keeps it and its
//! gradient passes where the input is NaN (`threshold_backward` is `x <= 0 ? 0 : g`),
//! max-pooling gives NaN at the window's last NaN and sends the gradient there, argmax
//! takes the first NaN as the maximum, and the cross-entropy of NaN logits is NaN. Expected
//! values from PyTorch's definitions, by hand.

use tinycnn::{Pool2dParams, Tensor};

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn relu_keeps_nan_and_passes_its_gradient() {
    let x = Tensor::from_vec(vec![NAN, -INF, INF, -1.0, 0.0, 2.0], &[6])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.relu().unwrap();
    let want = [NAN, 0.0, INF, 0.0, 0.0, 2.0];
    assert!(same(&y.to_vec(), &want), "{:?}", y.to_vec());
    // Weighted sum so each gradient is distinct: d/dx relu(x) * w.
    let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[6]).unwrap();
    y.mul(&w).unwrap().sum_all().backward().unwrap();
    let g = x.grad().unwrap().to_vec();
    assert_eq!(g, [1.0, 0.0, 3.0, 0.0, 0.0, 6.0]);
}

#[test]
fn max_pool_nan_wins_and_takes_the_gradient() {
    // One 2x2 window [[1, NaN], [3, NaN]]: NaN, from the last NaN (index 3).
    let x = Tensor::from_vec(vec![1.0, NAN, 3.0, NAN], &[1, 1, 2, 2])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.max_pool2d(Pool2dParams::new(2)).unwrap();
    assert!(y.to_vec()[0].is_nan());
    y.sum_all().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), [0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn argmax_takes_the_first_nan_and_losses_turn_nan() {
    let t = Tensor::from_vec(vec![1.0, NAN, 3.0, NAN, 0.0, 5.0], &[2, 3]).unwrap();
    // Row 0: [1, NaN, 3] -> 1; row 1: [NaN, 0, 5] -> 0.
    assert_eq!(t.argmax(1, false).unwrap().to_vec(), [1.0, 0.0]);
    assert!(t.max_all().unwrap().item().unwrap().is_nan());
    assert!(t.cross_entropy(&[2, 2]).unwrap().item().unwrap().is_nan());
    let s = t.softmax(1).unwrap().to_vec();
    assert!(s.iter().all(|v| v.is_nan()), "{s:?}");
    // A row without NaN stays finite.
    let u = Tensor::from_vec(vec![0.0, 0.0, NAN, 1.0], &[2, 2]).unwrap();
    let s = u.softmax(1).unwrap().to_vec();
    assert_eq!(&s[..2], &[0.5, 0.5]);
    assert!(s[2].is_nan() && s[3].is_nan());
}
