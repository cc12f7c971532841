//! Tensor construction, shape ops, broadcasting, reductions and printing. Expected strings
//! and numbers are the seed notebooks' outputs or computed by hand.

use tinycnn::{Error, Pool2dParams, Rng, Tensor};

fn t2(rows: &[&[f32]]) -> Tensor {
    let cols = rows[0].len();
    Tensor::from_vec(
        rows.iter().flat_map(|r| r.iter().copied()).collect(),
        &[rows.len(), cols],
    )
    .unwrap()
}

#[test]
fn corr2d_prints_like_the_notebook() {
    let x = Tensor::new([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]);
    let k = Tensor::new([[0.0, 1.0], [2.0, 3.0]]);
    let y = x.corr2d(&k).unwrap();
    assert_eq!(y.to_string(), "tensor([[19., 25.],\n        [37., 43.]])");
    assert_eq!(
        x.to_string(),
        "tensor([[0., 1., 2.],\n        [3., 4., 5.],\n        [6., 7., 8.]])"
    );
}

#[test]
fn slice_assignment_and_edge_detection() {
    // X = torch.ones((6, 8)); X[:, 2:6] = 0
    let x = Tensor::ones(&[6, 8]);
    x.slice_fill_(1, 2..6, 0.0).unwrap();
    let row = "[1., 1., 0., 0., 0., 0., 1., 1.]";
    let expected = format!("tensor([{row},\n        {row},\n        {row},\n        {row},\n        {row},\n        {row}])");
    assert_eq!(x.to_string(), expected);
    let k = Tensor::new([[1.0, -1.0]]);
    assert_eq!(k.to_string(), "tensor([[ 1., -1.]])");
    let y = x.corr2d(&k).unwrap();
    let r = "[ 0.,  1.,  0.,  0.,  0., -1.,  0.]";
    assert_eq!(
        y.to_string(),
        format!(
            "tensor([{r},\n        {r},\n        {r},\n        {r},\n        {r},\n        {r}])"
        )
    );
    // corr2d(X.t(), K) is all zeros, 8 x 5.
    let z = x.t().unwrap().corr2d(&k).unwrap();
    assert_eq!(z.shape(), &[8, 5]);
    assert!(z.to_vec().iter().all(|&v| v == 0.0));
    assert!(z
        .to_string()
        .starts_with("tensor([[0., 0., 0., 0., 0.],\n        [0., 0."));
}

#[test]
fn multi_channel_correlation_and_stack() {
    let x = Tensor::new([
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
    ]);
    let k = Tensor::new([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]]);
    let multi_in = |x: &Tensor, k: &Tensor| -> Tensor {
        let mut acc = x
            .select(0, 0)
            .unwrap()
            .corr2d(&k.select(0, 0).unwrap())
            .unwrap();
        for c in 1..x.shape()[0] {
            acc = (&acc
                + &x.select(0, c)
                    .unwrap()
                    .corr2d(&k.select(0, c).unwrap())
                    .unwrap())
                .unwrap();
        }
        acc
    };
    assert_eq!(
        multi_in(&x, &k).to_string(),
        "tensor([[ 56.,  72.],\n        [104., 120.]])"
    );
    let k3 = Tensor::stack(&[k.clone(), &k + 1.0, &k + 2.0], 0).unwrap();
    assert_eq!(k3.shape(), &[3, 2, 2, 2]);
    let outs: Vec<Tensor> = (0..3)
        .map(|i| multi_in(&x, &k3.select(0, i).unwrap()))
        .collect();
    let y = Tensor::stack(&outs, 0).unwrap();
    assert_eq!(
        y.to_string(),
        "tensor([[[ 56.,  72.],\n         [104., 120.]],\n\n        [[ 76., 100.],\n         [148., 172.]],\n\n        [[ 96., 128.],\n         [192., 224.]]])"
    );
    // The same through conv2d with a batch of one.
    let y2 = x
        .unsqueeze(0)
        .unwrap()
        .conv2d(&k3, None, (1, 1), (0, 0), (1, 1), 1)
        .unwrap();
    assert_eq!(y2.squeeze(0).unwrap().to_vec(), y.to_vec());
}

#[test]
fn one_by_one_convolution_is_a_matmul() {
    let mut rng = Rng::seed_from(3);
    let x = Tensor::normal_with(0.0, 1.0, &[3, 3, 3], &mut rng).unwrap();
    let k = Tensor::normal_with(0.0, 1.0, &[2, 3, 1, 1], &mut rng).unwrap();
    let y1 = k
        .reshape([2, 3])
        .unwrap()
        .matmul(&x.reshape([3, 9]).unwrap())
        .unwrap()
        .reshape([2, 3, 3])
        .unwrap();
    let y2 = x
        .unsqueeze(0)
        .unwrap()
        .conv2d(&k, None, (1, 1), (0, 0), (1, 1), 1)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let diff = (&y1 - &y2).unwrap().abs().sum_all().item().unwrap();
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn pooling_prints_like_the_notebook() {
    let x = Tensor::arange(16).reshape([1, 1, 4, 4]).unwrap();
    assert_eq!(
        x.max_pool2d(Pool2dParams::new(3)).unwrap().to_string(),
        "tensor([[[[10.]]]])"
    );
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    assert_eq!(
        x.max_pool2d(p).unwrap().to_string(),
        "tensor([[[[ 5.,  7.],\n          [13., 15.]]]])"
    );
    let p = Pool2dParams::with_kernel((2, 3))
        .with_padding((0, 1))
        .with_stride((2, 3));
    assert_eq!(
        x.max_pool2d(p).unwrap().to_string(),
        "tensor([[[[ 5.,  7.],\n          [13., 15.]]]])"
    );
    let p = Pool2dParams::with_kernel((2, 3))
        .with_padding((1, 1))
        .with_stride((2, 3));
    assert_eq!(
        x.max_pool2d(p).unwrap().to_string(),
        "tensor([[[[ 1.,  3.],\n          [ 9., 11.],\n          [13., 15.]]]])"
    );
    let x2 = Tensor::cat(&[x.clone(), &x + 1.0], 1).unwrap();
    assert_eq!(
        x2.to_string(),
        "tensor([[[[ 0.,  1.,  2.,  3.],\n          [ 4.,  5.,  6.,  7.],\n          [ 8.,  9., 10., 11.],\n          [12., 13., 14., 15.]],\n\n         [[ 1.,  2.,  3.,  4.],\n          [ 5.,  6.,  7.,  8.],\n          [ 9., 10., 11., 12.],\n          [13., 14., 15., 16.]]]])"
    );
    let p = Pool2dParams::new(3)
        .with_padding((1, 1))
        .with_stride((2, 2));
    assert_eq!(
        x2.max_pool2d(p).unwrap().to_string(),
        "tensor([[[[ 5.,  7.],\n          [13., 15.]],\n\n         [[ 6.,  8.],\n          [14., 16.]]]])"
    );
    // d2l's pool2d(X, (2, 2)) and the 'avg' mode, as stride-1 pooling.
    let x = Tensor::new([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
        .reshape([1, 1, 3, 3])
        .unwrap();
    let p = Pool2dParams::new(2).with_stride((1, 1));
    assert_eq!(x.max_pool2d(p).unwrap().to_vec(), [4.0, 5.0, 7.0, 8.0]);
    assert_eq!(x.avg_pool2d(p).unwrap().to_vec(), [2.0, 3.0, 5.0, 6.0]);
}

#[test]
fn float_formatting_matches_pytorch() {
    assert_eq!(Tensor::new([-0.3315]).to_string(), "tensor([-0.3315])");
    assert_eq!(Tensor::scalar(0.0).to_string(), "tensor(0.)");
    assert_eq!(Tensor::scalar(0.1704).to_string(), "tensor(0.1704)");
    assert_eq!(
        Tensor::new([0.3672, -0.3124, -0.3113, -0.3251, -0.4771, -0.3622, 0.1464, -0.4632])
            .to_string(),
        "tensor([ 0.3672, -0.3124, -0.3113, -0.3251, -0.4771, -0.3622,  0.1464, -0.4632])"
    );
    assert_eq!(
        Tensor::new([[0.99999, -1.00001]]).to_string(),
        "tensor([[ 1.0000, -1.0000]])"
    );
    assert_eq!(
        Tensor::full(&[1, 8], 42.0).to_string(),
        "tensor([[42., 42., 42., 42., 42., 42., 42., 42.]])"
    );
    assert_eq!(
        Tensor::new([1e-5, 1.0]).to_string(),
        "tensor([1.0000e-05, 1.0000e+00])"
    );
    assert_eq!(
        Tensor::new([1.0, 10000.0]).to_string(),
        "tensor([1.0000e+00, 1.0000e+04])"
    );
    assert_eq!(
        Tensor::new([f32::NAN, 1.0, f32::INFINITY]).to_string(),
        "tensor([nan, 1., inf])"
    );
    assert_eq!(Tensor::zeros(&[0]).to_string(), "tensor([])");
    assert_eq!(
        Tensor::zeros(&[2, 0]).to_string(),
        "tensor([], size=(2, 0))"
    );
    // Summarised above 1000 elements: three edge items each side.
    assert_eq!(
        Tensor::arange(2000).to_string(),
        "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n        1.9990e+03])"
    );
}

#[test]
fn long_rows_wrap_and_suffixes_follow() {
    let vals = [
        0.0362, 0.0737, -0.0211, 0.0666, -0.1115, 0.0158, -0.1162, 0.0884, 0.1486, -0.1063, 0.1796,
        -0.0009, 0.1236, -0.0783, -0.0937, -0.0560, 0.0441, 0.0812, 0.2236, -0.0597,
    ];
    let x = Tensor::from_vec(vals.to_vec(), &[2, 10]).unwrap();
    // An identity Linear gives an exact copy with grad_fn AddmmBackward0.
    let eye = Tensor::zeros(&[10, 10]);
    for i in 0..10 {
        eye.update_(|d| d[i * 10 + i] = 1.0).unwrap();
    }
    let w = eye.requires_grad_(true).unwrap();
    let y = x.linear(&w, Some(&Tensor::zeros(&[10]))).unwrap();
    assert_eq!(
        y.to_string(),
        "tensor([[ 0.0362,  0.0737, -0.0211,  0.0666, -0.1115,  0.0158, -0.1162,  0.0884,\n          0.1486, -0.1063],\n        [ 0.1796, -0.0009,  0.1236, -0.0783, -0.0937, -0.0560,  0.0441,  0.0812,\n          0.2236, -0.0597]], grad_fn=<AddmmBackward0>)"
    );
    let b = Tensor::new([-0.3315]).requires_grad_(true).unwrap();
    assert_eq!(b.to_string(), "tensor([-0.3315], requires_grad=True)");
    assert_eq!(b.detach().to_string(), "tensor([-0.3315])");
    let s = (&b * 1.0).sum_all();
    assert_eq!(s.grad_fn(), Some("SumBackward0"));
}

#[test]
fn reshape_flatten_and_views() {
    let x = Tensor::arange(24);
    let y = x.reshape([2, -1, 4]).unwrap();
    assert_eq!(y.shape(), &[2, 3, 4]);
    assert_eq!(y.flatten(1, -1).unwrap().shape(), &[2, 12]);
    assert_eq!(y.flatten(0, 1).unwrap().shape(), &[6, 4]);
    // A reshape shares storage, like PyTorch's view.
    y.update_(|d| d[0] = 100.0).unwrap();
    assert_eq!(x.get(&[0]).unwrap(), 100.0);
    assert!(matches!(
        x.reshape([5, -1]),
        Err(Error::BadShape { op: "reshape", .. })
    ));
    assert!(x.reshape([-1, -1]).is_err());
    assert!(x.reshape([7usize, 3]).is_err());
    let y = x.reshape(vec![4usize, 6]).unwrap();
    assert_eq!(y.unsqueeze(0).unwrap().shape(), &[1, 4, 6]);
    assert_eq!(y.unsqueeze(-1).unwrap().shape(), &[4, 6, 1]);
    assert!(matches!(y.flatten(0, 5), Err(Error::DimOutOfRange { .. })));
}

#[test]
fn permute_transpose_narrow_cat() {
    let x = Tensor::arange(6).reshape([2, 3]).unwrap();
    assert_eq!(x.t().unwrap().to_vec(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let y = Tensor::arange(24).reshape([2, 3, 4]).unwrap();
    let p = y.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(p.get(&[3, 1, 2]).unwrap(), y.get(&[1, 2, 3]).unwrap());
    assert!(y.permute(&[0, 0, 1]).is_err());
    assert_eq!(x.slice(1, 1..3).unwrap().to_vec(), [1.0, 2.0, 4.0, 5.0]);
    assert!(matches!(
        x.narrow(1, 2, 2),
        Err(Error::IndexOutOfRange { .. })
    ));
    let c = Tensor::cat(&[x.clone(), x.clone()], 0).unwrap();
    assert_eq!(c.shape(), &[4, 3]);
    let c = Tensor::cat(&[x.clone(), Tensor::zeros(&[2, 1])], 1).unwrap();
    assert_eq!(c.to_vec(), [0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0]);
    assert!(matches!(
        Tensor::cat(&[x.clone(), Tensor::zeros(&[3, 1])], 1),
        Err(Error::ShapeMismatch { op: "cat", .. })
    ));
    assert!(Tensor::stack(&[x.clone(), Tensor::zeros(&[3, 2])], 0).is_err());
}

#[test]
fn broadcasting_arithmetic() {
    let a = Tensor::arange(3).reshape([3, 1]).unwrap();
    let b = Tensor::arange(2).reshape([1, 2]).unwrap();
    assert_eq!((&a + &b).unwrap().to_vec(), [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]);
    assert_eq!((&a * &b).unwrap().shape(), &[3, 2]);
    assert_eq!((&a - 1.0).to_vec(), [-1.0, 0.0, 1.0]);
    assert_eq!((1.0 - &a).to_vec(), [1.0, 0.0, -1.0]);
    assert_eq!((&a / 2.0).to_vec(), [0.0, 0.5, 1.0]);
    assert_eq!((-&a).to_vec(), [-0.0, -1.0, -2.0]);
    assert_eq!(a.pow(2.0).to_vec(), [0.0, 1.0, 4.0]);
    let err = (&Tensor::zeros(&[2, 3]) + &Tensor::zeros(&[4])).unwrap_err();
    assert_eq!(err.to_string(), "add: shape mismatch: [2, 3] vs [4]");
    let s = Tensor::scalar(2.0);
    assert_eq!((&Tensor::ones(&[2, 2]) * &s).unwrap().to_vec(), [2.0; 4]);
    assert_eq!(
        Tensor::new([1.0, 2.0])
            .eq_elem(&Tensor::new([1.0, 3.0]))
            .unwrap()
            .to_vec(),
        [1.0, 0.0]
    );
}

#[test]
fn reductions() {
    let x = Tensor::new([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]]);
    assert_eq!(x.sum_all().item().unwrap(), 21.0);
    assert_eq!(x.sum(&[0], false).unwrap().to_vec(), [5.0, 7.0, 9.0]);
    assert_eq!(x.sum(&[1], true).unwrap().shape(), &[2, 1]);
    assert_eq!(x.sum(&[-1], false).unwrap().to_vec(), [9.0, 12.0]);
    assert_eq!(x.mean(&[1], false).unwrap().to_vec(), [3.0, 4.0]);
    assert_eq!(x.mean_all().item().unwrap(), 3.5);
    let (v, i) = x.max(1, false).unwrap();
    assert_eq!(v.to_vec(), [5.0, 6.0]);
    assert_eq!(i.to_vec(), [1.0, 2.0]);
    assert_eq!(x.argmax(0, false).unwrap().to_vec(), [1.0, 0.0, 1.0]);
    assert_eq!(x.max_all().unwrap().item().unwrap(), 6.0);
    assert_eq!(x.min_all().unwrap().item().unwrap(), 1.0);
    assert!(x.sum(&[2], false).is_err());
    assert!(x.item().is_err());
}

#[test]
fn matmul_shapes() {
    let a = Tensor::arange(6).reshape([2, 3]).unwrap();
    let b = Tensor::arange(12).reshape([3, 4]).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[2, 4]);
    assert_eq!(c.to_vec(), [20.0, 23.0, 26.0, 29.0, 56.0, 68.0, 80.0, 92.0]);
    // Batched with broadcasting: [2, 2, 3] @ [3, 4].
    let ab = Tensor::stack(&[a.clone(), &a * 2.0], 0).unwrap();
    let cb = ab.matmul(&b).unwrap();
    assert_eq!(cb.shape(), &[2, 2, 4]);
    assert_eq!(cb.select(0, 1).unwrap().to_vec(), (&c * 2.0).to_vec());
    // Vectors.
    let v = Tensor::new([1.0, 1.0, 1.0]);
    assert_eq!(a.matmul(&v).unwrap().to_vec(), [3.0, 12.0]);
    assert_eq!(v.matmul(&v).unwrap().item().unwrap(), 3.0);
    let err = a.matmul(&a).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "matmul", .. }),
        "{err}"
    );
    assert!(a.mm(&v).is_err());
}

#[test]
fn conv_errors_name_the_problem() {
    let x = Tensor::zeros(&[1, 3, 8, 8]);
    let w = Tensor::zeros(&[2, 2, 3, 3]);
    let e = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap_err();
    assert!(e.to_string().contains("conv2d"), "{e}");
    let w = Tensor::zeros(&[2, 3, 9, 9]);
    let e = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap_err();
    assert!(matches!(e, Error::Kernel { op: "conv2d", .. }), "{e}");
    assert!(x
        .conv2d(
            &Tensor::zeros(&[2, 3, 3, 3]),
            Some(&Tensor::zeros(&[3])),
            (1, 1),
            (0, 0),
            (1, 1),
            1
        )
        .is_err());
    assert!(Tensor::zeros(&[3, 3])
        .max_pool2d(Pool2dParams::new(2))
        .is_err());
    assert!(Tensor::zeros(&[1, 1, 3, 3])
        .max_pool2d(Pool2dParams::new(4))
        .is_err());
}

#[test]
fn constructors_and_rng() {
    tinycnn::manual_seed(42);
    let a = Tensor::rand(&[4]);
    tinycnn::manual_seed(42);
    let b = Tensor::rand(&[4]);
    assert!(a.equal(&b));
    assert!(a.to_vec().iter().all(|&v| (0.0..1.0).contains(&v)));
    let n = Tensor::normal_with(1.0, 2.0, &[20000], &mut Rng::seed_from(1)).unwrap();
    let mean = n.mean_all().item().unwrap();
    let var = (&n - mean).pow(2.0).mean_all().item().unwrap();
    assert!((mean - 1.0).abs() < 0.05, "{mean}");
    assert!((var - 4.0).abs() < 0.2, "{var}");
    assert!(Tensor::normal(0.0, -1.0, &[2]).is_err());
    assert!(Tensor::from_vec(vec![1.0; 5], &[2, 3]).is_err());
    assert_eq!(
        Tensor::arange_step(0.0, 1.0, 0.25).unwrap().to_vec(),
        [0.0, 0.25, 0.5, 0.75]
    );
    assert!(t2(&[&[1.0, 2.0], &[3.0, 4.0]]).allclose(
        &Tensor::new([[1.0, 2.0], [3.0, 4.00001]]),
        1e-5,
        1e-5
    ));
}

#[test]
fn in_place_writes_respect_grad_mode() {
    let w = Tensor::ones(&[2]).requires_grad_(true).unwrap();
    assert!(matches!(w.fill_(0.0), Err(Error::Autograd(_))));
    tinycnn::no_grad(|| w.fill_(3.0)).unwrap();
    assert_eq!(w.to_vec(), [3.0, 3.0]);
    // `w.data[:] -= lr * grad` through detach().
    w.detach().sub_(&Tensor::new([1.0, 2.0])).unwrap();
    assert_eq!(w.to_vec(), [2.0, 1.0]);
    assert!(w.detach().sub_(&Tensor::ones(&[3])).is_err());
}

#[test]
fn max_along_a_dimension_of_an_empty_batch_is_empty() {
    let (v, i) = Tensor::zeros(&[0, 5]).max(1, false).unwrap();
    assert_eq!(v.shape(), &[0]);
    assert_eq!(i.shape(), &[0]);
    // Middle dimension (the strided path) and the last one (the kernel's rows) agree by hand.
    let x = Tensor::new([[[1.0, 7.0], [5.0, f32::NAN], [5.0, 2.0]]]);
    let (v, i) = x.max(1, false).unwrap();
    assert_eq!(v.to_vec()[0], 5.0);
    assert!(v.to_vec()[1].is_nan());
    assert_eq!(i.to_vec(), [1.0, 1.0]);
    let (v, i) = x.max(2, false).unwrap();
    assert_eq!(i.to_vec(), [1.0, 1.0, 0.0]);
    assert_eq!(v.to_vec()[0], 7.0);
}
