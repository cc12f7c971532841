//! Work the runtime splits over threads (large GEMMs by rows of C, long elementwise ops by
//! chunks, buffers each worker zeroes itself) against the kernel crate's reference loops,
//! with two threads so that every split path runs.

use tinycnn::{Rng, Tensor};
use tinycnn_kernels::{reference, GemmShape, Transpose};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn_with(shape, &mut Rng::seed_from(seed))
}

/// `|got - want| <= tol * (1 + |want|)`: the GEMM sums run in another order than the
/// reference's, so sums that cancel to near zero keep an absolute error.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what} [{i}]: {g} vs reference {w}"
        );
    }
}

fn reference_gemm(g: GemmShape, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0; g.m * g.n];
    reference::sgemm(&g, 1.0, a, b, 0.0, &mut c).unwrap();
    c
}

#[test]
fn linear_forward_and_backward_split_by_rows_match_the_reference() {
    tinycnn::set_num_threads(2).unwrap();
    // LeNet's first linear layer at batch 256: 12M multiply-adds per product, all three split.
    let (rows, in_f, out_f) = (256, 400, 120);
    let x = randn(&[rows, in_f], 1).requires_grad_(true).unwrap();
    let w = randn(&[out_f, in_f], 2).requires_grad_(true).unwrap();
    let b = randn(&[out_f], 3).requires_grad_(true).unwrap();
    let r = randn(&[rows, out_f], 4);
    let y = x.linear(&w, Some(&b)).unwrap();
    let (xv, wv, bv, rv) = (x.to_vec(), w.to_vec(), b.to_vec(), r.to_vec());

    let mut want = reference_gemm(
        GemmShape::new(rows, out_f, in_f).with_transpose(Transpose::No, Transpose::Yes),
        &xv,
        &wv,
    );
    for row in want.chunks_mut(out_f) {
        row.iter_mut().zip(&bv).for_each(|(v, b)| *v += b);
    }
    assert_close("linear forward", &y.to_vec(), &want, 1e-4);

    // loss = sum(y * r), so dL/dy = r.
    y.mul(&r)
        .unwrap()
        .sum(&[0, 1], false)
        .unwrap()
        .backward()
        .unwrap();
    let gw = reference_gemm(
        GemmShape::new(out_f, in_f, rows).with_transpose(Transpose::Yes, Transpose::No),
        &rv,
        &xv,
    );
    assert_close("linear weight grad", &w.grad().unwrap().to_vec(), &gw, 1e-4);
    let gx = reference_gemm(GemmShape::new(rows, in_f, out_f), &rv, &wv);
    assert_close("linear input grad", &x.grad().unwrap().to_vec(), &gx, 1e-4);
    let gb: Vec<f32> = (0..out_f)
        .map(|j| rv.iter().skip(j).step_by(out_f).sum())
        .collect();
    assert_close("linear bias grad", &b.grad().unwrap().to_vec(), &gb, 1e-4);
}

#[test]
fn matmul_split_by_rows_matches_the_reference_and_a_ragged_last_block() {
    tinycnn::set_num_threads(2).unwrap();
    // 301 rows: blocks of 151 and 150.
    let (m, k, n) = (301, 200, 90);
    let (a, b) = (randn(&[m, k], 5), randn(&[k, n], 6));
    let want = reference_gemm(GemmShape::new(m, n, k), &a.to_vec(), &b.to_vec());
    assert_close("matmul", &a.matmul(&b).unwrap().to_vec(), &want, 1e-4);
}

#[test]
fn long_activations_split_in_chunks_match_the_reference() {
    tinycnn::set_num_threads(2).unwrap();
    // 100_003 elements: two chunks, the second not a whole number of vectors.
    let n = 100_003;
    let x = randn(&[n], 7).mul_scalar(4.0).requires_grad_(true).unwrap();
    let r = randn(&[n], 8);
    let xv = x.to_vec();

    let y = x.sigmoid().unwrap();
    let mut want = vec![0.0; n];
    reference::sigmoid(&xv, &mut want).unwrap();
    assert_close("sigmoid", &y.to_vec(), &want, 1e-6);
    y.mul(&r)
        .unwrap()
        .sum(&[0], false)
        .unwrap()
        .backward()
        .unwrap();
    let mut gx = vec![0.0; n];
    reference::sigmoid_backward(&y.to_vec(), &r.to_vec(), &mut gx).unwrap();
    assert_close("sigmoid backward", &x.grad().unwrap().to_vec(), &gx, 1e-6);

    let x = x.detach().requires_grad_(true).unwrap();
    let y = x.relu().unwrap();
    reference::relu(&xv, &mut want).unwrap();
    assert_eq!(y.to_vec(), want, "relu");
    y.mul(&r)
        .unwrap()
        .sum(&[0], false)
        .unwrap()
        .backward()
        .unwrap();
    reference::relu_backward(&xv, &r.to_vec(), &mut gx).unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), gx, "relu backward");
}

/// A thread count past the limit is refused before a single thread is spawned (100,000,000
/// used to spawn threads until the machine stalled), and the previous pool stays in use.
#[test]
fn thread_counts_past_the_limit_are_an_error() {
    tinycnn::set_num_threads(2).unwrap();
    for n in [1025usize, 100_000_000, usize::MAX] {
        let e = tinycnn::set_num_threads(n).unwrap_err().to_string();
        assert!(e.contains(&n.to_string()) && e.contains("1024"), "{e}");
    }
    assert_eq!(tinycnn::parallel::MAX_THREADS, 1024);
    assert_eq!(tinycnn::num_threads(), 2);
    assert!(tinycnn::set_num_threads(0).is_err());
}
