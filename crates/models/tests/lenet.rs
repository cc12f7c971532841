//! LeNet's layers, keys, parameter shapes and layer-by-layer output shapes (d2l 6.6).

use tinycnn::nn::{AvgPool2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sigmoid};
use tinycnn::Tensor;
use tinycnn_models::{by_name, lenet, lenet_relu, Model};

const KEYS: [&str; 10] = [
    "0.weight",
    "0.bias",
    "3.weight",
    "3.bias",
    "7.weight",
    "7.bias",
    "9.weight",
    "9.bias",
    "11.weight",
    "11.bias",
];

#[test]
fn keys_and_shapes() {
    for net in [lenet(), lenet_relu()] {
        let sd = net.state_dict();
        assert_eq!(sd.keys().collect::<Vec<_>>(), KEYS);
        let shapes: Vec<Vec<usize>> = sd.iter().map(|(_, t)| t.shape().to_vec()).collect();
        assert_eq!(
            shapes,
            [
                vec![6, 1, 5, 5],
                vec![6],
                vec![16, 6, 5, 5],
                vec![16],
                vec![120, 400],
                vec![120],
                vec![84, 120],
                vec![84],
                vec![10, 84],
                vec![10]
            ]
        );
        assert_eq!(net.num_parameters(), 61_706);
    }
}

#[test]
fn layer_by_layer_output_shapes() {
    let expected: [&[usize]; 12] = [
        &[1, 6, 28, 28],
        &[1, 6, 28, 28],
        &[1, 6, 14, 14],
        &[1, 16, 10, 10],
        &[1, 16, 10, 10],
        &[1, 16, 5, 5],
        &[1, 400],
        &[1, 120],
        &[1, 120],
        &[1, 84],
        &[1, 84],
        &[1, 10],
    ];
    let names = [
        "Conv2d",
        "Sigmoid",
        "AvgPool2d",
        "Conv2d",
        "Sigmoid",
        "AvgPool2d",
        "Flatten",
        "Linear",
        "Sigmoid",
        "Linear",
        "Sigmoid",
        "Linear",
    ];
    let x = Tensor::rand(&[1, 1, 28, 28]);
    let net = lenet();
    let outs = net.forward_trace(&x).unwrap();
    for (i, ((o, e), (_, layer))) in outs.iter().zip(expected).zip(net.iter()).enumerate() {
        assert_eq!(o.shape(), e, "layer {i}");
        assert_eq!(layer.type_name(), names[i], "layer {i}");
    }
    let outs = lenet_relu().forward_trace(&x).unwrap();
    for (o, e) in outs.iter().zip(expected) {
        assert_eq!(o.shape(), e);
    }
}

#[test]
fn layer_types() {
    let net = lenet();
    assert!(
        net[0].is::<Conv2d>()
            && net[1].is::<Sigmoid>()
            && net[2].is::<AvgPool2d>()
            && net[11].is::<Linear>()
    );
    let c = net.get::<Conv2d>(0).unwrap();
    assert_eq!(c.params.padding, (2, 2));
    let r = lenet_relu();
    assert!(r[1].is::<ReLU>() && r[2].is::<MaxPool2d>());
    assert!(net.to_string().starts_with(
        "Sequential(\n  (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))\n  (1): Sigmoid()\n  (2): AvgPool2d(kernel_size=2, stride=2, padding=0)\n"
    ));
}

#[test]
fn names() {
    assert_eq!(by_name("lenet").unwrap(), Model::LeNet);
    assert_eq!("lenet-relu".parse::<Model>().unwrap(), Model::LeNetRelu);
    assert!(by_name("alexnet").is_err());
    for m in Model::ALL {
        assert_eq!(by_name(m.name()).unwrap(), m);
        assert_eq!(
            m.build()
                .forward(&Tensor::zeros(&[2, 1, 28, 28]))
                .unwrap()
                .shape(),
            &[2, m.classes()]
        );
    }
}

#[test]
fn one_batch_trains() {
    // A few SGD steps on one batch lower its loss (the d2l recipe: xavier init, lr 0.9).
    use tinycnn::optim::{Optimizer, Sgd};
    tinycnn::manual_seed(1);
    let net = lenet_relu();
    tinycnn_models::init_weights(&net).unwrap();
    let x = Tensor::rand(&[16, 1, 28, 28]);
    let labels: Vec<u32> = (0..16).map(|i| i % 10).collect();
    let mut opt = Sgd::new(net.parameters(), 0.1).unwrap();
    let first = net
        .forward(&x)
        .unwrap()
        .cross_entropy(&labels)
        .unwrap()
        .item()
        .unwrap();
    for _ in 0..15 {
        opt.zero_grad();
        let l = net.forward(&x).unwrap().cross_entropy(&labels).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
    }
    let last = net
        .forward(&x)
        .unwrap()
        .cross_entropy(&labels)
        .unwrap()
        .item()
        .unwrap();
    assert!(last < first, "{first} -> {last}");
}
