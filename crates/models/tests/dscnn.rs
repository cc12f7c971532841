//! The zoo's DS-CNN: its layout against the same network built in PyTorch (keys, shapes,
//! parameter count from `crates/tinycnn/tests/fixtures/make_layer_fixtures.py`), its
//! training recipe and initialisation, and one batch of training.

use tinycnn::nn::{BatchNorm2d, Module, Sequential};
use tinycnn::optim::{Adam, Optimizer};
use tinycnn::Tensor;
use tinycnn_models::{by_name, dscnn, Augmentation, Model, Momentum, OptimizerKind, ScheduleKind};

#[test]
fn state_dict_matches_pytorch() {
    const PYTORCH_KEYS: &str =
        "0.weight:32x1x3x3 1.weight:32 1.bias:32 1.running_mean:32 1.running_var:32 \
        1.num_batches_tracked: 3.0.weight:32x1x3x3 3.1.weight:32 3.1.bias:32 \
        3.1.running_mean:32 3.1.running_var:32 3.1.num_batches_tracked: \
        3.3.weight:64x32x1x1 3.4.weight:64 3.4.bias:64 3.4.running_mean:64 \
        3.4.running_var:64 3.4.num_batches_tracked: 4.0.weight:64x1x3x3 4.1.weight:64 \
        4.1.bias:64 4.1.running_mean:64 4.1.running_var:64 4.1.num_batches_tracked: \
        4.3.weight:128x64x1x1 4.4.weight:128 4.4.bias:128 4.4.running_mean:128 \
        4.4.running_var:128 4.4.num_batches_tracked: 5.0.weight:128x1x3x3 5.1.weight:128 \
        5.1.bias:128 5.1.running_mean:128 5.1.running_var:128 5.1.num_batches_tracked: \
        5.3.weight:128x128x1x1 5.4.weight:128 5.4.bias:128 5.4.running_mean:128 \
        5.4.running_var:128 5.4.num_batches_tracked: 6.0.weight:128x1x3x3 6.1.weight:128 \
        6.1.bias:128 6.1.running_mean:128 6.1.running_var:128 6.1.num_batches_tracked: \
        6.3.weight:128x128x1x1 6.4.weight:128 6.4.bias:128 6.4.running_mean:128 \
        6.4.running_var:128 6.4.num_batches_tracked: 9.weight:10x128 9.bias:10";
    let net = dscnn();
    let ours: Vec<String> = net
        .state_dict()
        .iter()
        .map(|(k, t)| {
            let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
            format!("{k}:{}", dims.join("x"))
        })
        .collect();
    assert_eq!(ours.join(" "), PYTORCH_KEYS);
    assert_eq!(net.num_parameters(), 49_418);
    assert!(net.num_parameters() <= 100_000);
}

#[test]
fn recipe_names_and_init() {
    let m = by_name("dscnn").unwrap();
    assert_eq!(m, Model::Dscnn);
    assert!(Model::ALL.contains(&m));
    assert_eq!(m.to_string(), "dscnn");
    assert_eq!(m.default_optimizer(), OptimizerKind::Adam);
    assert_eq!(m.default_lr(OptimizerKind::Adam), 0.005);
    assert_eq!(m.default_lr(OptimizerKind::Sgd), 0.1);
    assert_eq!(m.default_batch_size(), 128);
    assert_eq!(
        m.default_schedule(OptimizerKind::Adam),
        ScheduleKind::OneCycle
    );
    assert_eq!(
        m.default_schedule(OptimizerKind::Sgd),
        ScheduleKind::Cosine { min_lr: 0.0 }
    );
    assert_eq!(m.default_weight_decay(OptimizerKind::Adam), 0.0);
    assert_eq!(m.default_weight_decay(OptimizerKind::Sgd), 5e-4);
    assert_eq!(m.default_momentum(OptimizerKind::Adam), Momentum::default());
    let nesterov = Momentum {
        momentum: 0.9,
        nesterov: true,
    };
    assert_eq!(m.default_momentum(OptimizerKind::Sgd), nesterov);
    let flip = Augmentation {
        crop_padding: None,
        flip: true,
    };
    assert_eq!(m.default_augmentation(), flip);
    // The LeNets keep d2l's plain recipe.
    for lenet in [Model::LeNet, Model::LeNetRelu] {
        assert_eq!(lenet.default_batch_size(), 256);
        assert_eq!(lenet.default_optimizer(), OptimizerKind::Sgd);
        assert_eq!(lenet.default_lr(OptimizerKind::Sgd), 0.9);
        assert_eq!(lenet.default_lr(OptimizerKind::Adam), 0.001);
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
            assert_eq!(lenet.default_schedule(kind), ScheduleKind::Constant);
            assert_eq!(lenet.default_weight_decay(kind), 0.0);
            assert_eq!(lenet.default_momentum(kind), Momentum::default());
        }
        assert_eq!(lenet.default_augmentation(), Augmentation::default());
    }
    // dscnn keeps PyTorch's default init: `init` changes nothing.
    tinycnn::manual_seed(4);
    let a = m.build();
    tinycnn::manual_seed(4);
    let b = m.build();
    m.init(&b).unwrap();
    for ((k, x), (_, y)) in a.state_dict().iter().zip(b.state_dict().iter()) {
        assert!(x.equal(y), "{k}");
    }
    // Batch norm starts at weight 1, bias 0, running mean 0 and variance 1.
    let bn = a.get::<BatchNorm2d>(1).unwrap();
    assert_eq!(bn.weight.as_ref().unwrap().to_vec(), vec![1.0; 32]);
    assert_eq!(bn.running_var.as_ref().unwrap().to_vec(), vec![1.0; 32]);
    // The LeNets get d2l's Xavier init on top of the default one.
    tinycnn::manual_seed(4);
    let l = Model::LeNet.build();
    let before = l.state_dict().get("0.weight").unwrap().deep_clone();
    Model::LeNet.init(&l).unwrap();
    assert!(!l.state_dict().get("0.weight").unwrap().equal(&before));
}

#[test]
fn one_batch_trains_and_evaluates_one_image() {
    tinycnn::manual_seed(2);
    let net = dscnn();
    let x = Tensor::rand(&[32, 1, 28, 28]);
    let labels: Vec<u32> = (0..32).map(|i| i % 10).collect();
    let mut opt = Adam::new(net.parameters(), 0.01).unwrap();
    let mut losses = Vec::new();
    for _ in 0..8 {
        opt.zero_grad();
        let loss = net.forward(&x).unwrap().cross_entropy(&labels).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.item().unwrap());
    }
    assert!(losses[7] < 0.7 * losses[0], "{losses:?}");
    // Eight steps were counted by every batch norm.
    let block = net.get::<Sequential>(3).unwrap();
    let bn = block.get::<BatchNorm2d>(1).unwrap();
    assert_eq!(
        bn.num_batches_tracked.as_ref().unwrap().item().unwrap(),
        8.0
    );
    // Evaluation mode uses the running statistics, so one image is fine and the output
    // does not depend on the rest of the batch.
    net.eval();
    let one = net.forward(&x.narrow(0, 0, 1).unwrap()).unwrap();
    let all = net.forward(&x).unwrap();
    assert!(one.allclose(&all.narrow(0, 0, 1).unwrap(), 1e-5, 1e-5));
}
