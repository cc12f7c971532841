//! Seeded augmentation (random crop with zero padding, horizontal flip) and the training
//! recipes inside `Trainer` (schedules, clipping), on the CPU and the emulated CUDA device.
//! Expected images are worked out by hand from torchvision's definitions: `RandomCrop(3,
//! padding=1)` pads with zeros and cuts at top-left `(i, j)`, `RandomHorizontalFlip` mirrors
//! the columns.

use tinycnn::data::{Augment, ResidentData, SampleTransform};
use tinycnn::nn::{Conv2d, Flatten, Linear, Module, ReLU, Sequential};
use tinycnn::optim::{LrScheduler, OneCycleConfig, OneCycleLR, Optimizer, Sgd, SgdConfig, StepLR};
use tinycnn::train::{ScheduleEvery, Trainer};
use tinycnn::{Device, Rng, Tensor};

/// 1 2 3 / 4 5 6 / 7 8 9
const IMAGE: [f32; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

fn apply(t: SampleTransform, image: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let mut out = vec![f32::NAN; image.len()];
    t.apply(image, shape, &mut out);
    out
}

#[test]
fn crop_from_padding_and_flip_by_hand() {
    let s = [1, 3, 3];
    // Crop at (i, j) = (0, 0) of the image padded by 1: one zero row on top, one zero column
    // on the left.
    let t = SampleTransform {
        dy: -1,
        dx: -1,
        flip: false,
    };
    assert_eq!(apply(t, &IMAGE, s), [0., 0., 0., 0., 1., 2., 0., 4., 5.]);
    // At (2, 1): one row down, zero row at the bottom.
    let t = SampleTransform {
        dy: 1,
        dx: 0,
        flip: false,
    };
    assert_eq!(apply(t, &IMAGE, s), [4., 5., 6., 7., 8., 9., 0., 0., 0.]);
    // Flip only.
    let t = SampleTransform {
        dy: 0,
        dx: 0,
        flip: true,
    };
    assert_eq!(apply(t, &IMAGE, s), [3., 2., 1., 6., 5., 4., 9., 8., 7.]);
    // Crop at (1, 2) (one column right, zero column at the right), then flip: the zero
    // column comes first.
    let t = SampleTransform {
        dy: 0,
        dx: 1,
        flip: true,
    };
    assert_eq!(apply(t, &IMAGE, s), [0., 3., 2., 0., 6., 5., 0., 9., 8.]);
    // Every channel moves alike.
    let two: Vec<f32> = IMAGE
        .iter()
        .chain(IMAGE.iter().map(|v| -v).collect::<Vec<_>>().iter())
        .copied()
        .collect();
    let t = SampleTransform {
        dy: -1,
        dx: -1,
        flip: false,
    };
    assert_eq!(
        apply(t, &two, [2, 3, 3]),
        [0., 0., 0., 0., 1., 2., 0., 4., 5., 0., 0., 0., 0., -1., -2., 0., -4., -5.]
    );
    assert!(SampleTransform::default().is_identity());
    assert_eq!(apply(SampleTransform::default(), &IMAGE, s), IMAGE);
}

#[test]
fn transforms_are_seeded_per_epoch_and_cover_the_range() {
    let aug = Augment {
        crop_padding: Some(2),
        flip: true,
        seed: 7,
    };
    let a = aug.epoch_transforms(3, 4000);
    assert_eq!(
        a,
        aug.epoch_transforms(3, 4000),
        "same seed and epoch: same choices"
    );
    assert_ne!(
        a,
        aug.epoch_transforms(4, 4000),
        "another epoch: other choices"
    );
    let other = Augment { seed: 8, ..aug };
    assert_ne!(
        a,
        other.epoch_transforms(3, 4000),
        "another seed: other choices"
    );
    // A prefix does not depend on the length asked for.
    assert_eq!(aug.epoch_transforms(3, 10), a[..10]);
    let mut seen = [[0u32; 5]; 5];
    for t in &a {
        seen[(t.dy + 2) as usize][(t.dx + 2) as usize] += 1;
    }
    // 4000 draws over 25 offsets: 160 expected each.
    assert!(seen.iter().flatten().all(|&n| n > 100), "{seen:?}");
    let flips = a.iter().filter(|t| t.flip).count();
    assert!((1800..2200).contains(&flips), "{flips} flips of 4000");
    // Flip only: no crop offsets; crop only: no flips; nothing: identity.
    let flip = Augment {
        crop_padding: None,
        ..aug
    }
    .epoch_transforms(0, 50);
    assert!(flip.iter().all(|t| t.dy == 0 && t.dx == 0) && flip.iter().any(|t| t.flip));
    let crop = Augment { flip: false, ..aug }.epoch_transforms(0, 50);
    assert!(crop.iter().all(|t| !t.flip) && crop.iter().any(|t| t.dx != 0));
    assert!(!Augment::default().is_active());
}

fn batch_on(dev: Device) {
    // Four 1x3x3 images: image k is IMAGE + 10 k.
    let images: Vec<f32> = (0..4)
        .flat_map(|k| IMAGE.map(|v| v + 10.0 * k as f32))
        .collect();
    let data = ResidentData::new(&images, &[4, 1, 3, 3], &[0, 1, 2, 3], &dev).unwrap();
    let order = data.order(&[2, 0, 3, 1]).unwrap();
    let ts = [
        SampleTransform {
            dy: -1,
            dx: -1,
            flip: false,
        },
        SampleTransform {
            dy: 0,
            dx: 0,
            flip: true,
        },
    ];
    // Samples 0 and 3 (positions 1, 2 of the order).
    let (x, y) = data.batch_augmented(&order, 1, 2, &ts).unwrap();
    assert_eq!(x.device(), dev);
    assert_eq!(x.shape(), [2, 1, 3, 3]);
    assert_eq!(y.to_vec().unwrap(), [0, 3]);
    assert_eq!(
        x.to_host().unwrap(),
        [0., 0., 0., 0., 1., 2., 0., 4., 5., 33., 32., 31., 36., 35., 34., 39., 38., 37.]
    );
    assert!(data.batch_augmented(&order, 1, 2, &ts[..1]).is_err());
    let flat = ResidentData::new(&images, &[4, 9], &[0, 1, 2, 3], &dev).unwrap();
    let order = flat.order(&[0]).unwrap();
    let e = flat.batch_augmented(&order, 0, 1, &ts[..1]).unwrap_err();
    assert!(e.to_string().contains("not images"), "{e}");
}

#[test]
fn augmented_batch_on_cpu() {
    batch_on(Device::Cpu);
}

#[test]
fn augmented_batch_on_emulated_cuda() {
    tinycnn::cuda::emulate(true);
    batch_on(Device::Cuda(0));
}

const N: usize = 20;
const BATCH: usize = 8;

fn data(dev: Device) -> ResidentData {
    let x = Tensor::rand_with(&[N, 1, 6, 6], &mut Rng::seed_from(5)).to_vec();
    let y: Vec<u32> = (0..N as u32).map(|i| i % 3).collect();
    ResidentData::new(&x, &[N, 1, 6, 6], &y, &dev).unwrap()
}

fn net() -> Sequential {
    tinycnn::manual_seed(11);
    Sequential::new()
        .append(Conv2d::new(1, 2, 3).unwrap())
        .append(ReLU)
        .append(Flatten::new())
        .append(Linear::new(2 * 4 * 4, 3))
}

fn sgd(net: &Sequential) -> Sgd {
    let config = SgdConfig {
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::new(0.05)
    };
    Sgd::with_config(net.parameters(), config).unwrap()
}

fn order(epoch: usize) -> Vec<usize> {
    (0..N).map(|i| (i * 7 + epoch * 3) % N).collect()
}

/// Trains epochs `epochs` with momentum, one-cycle, clipping and crop+flip; `from` is a
/// (weights, optimizer state, schedule state) to resume from.
fn train(
    dev: Device,
    epochs: std::ops::Range<usize>,
    from: Option<&(
        Vec<Vec<f32>>,
        tinycnn::nn::StateDict,
        tinycnn::optim::ScheduleState,
    )>,
) -> (
    Vec<Vec<f32>>,
    tinycnn::nn::StateDict,
    tinycnn::optim::ScheduleState,
    f32,
) {
    let net = net();
    let mut opt = sgd(&net);
    let total = 3 * N.div_ceil(BATCH) as u64;
    let mut sched = OneCycleLR::new(&mut opt, OneCycleConfig::new(0.1, total)).unwrap();
    if let Some((w, o, s)) = from {
        for (p, v) in net.parameters().iter().zip(w) {
            tinycnn::no_grad(|| p.copy_(&Tensor::from_vec(v.clone(), p.shape()).unwrap())).unwrap();
        }
        opt.load_state_dict(o).unwrap();
        sched.load_state(s, &mut opt).unwrap();
    }
    let aug = Augment {
        crop_padding: Some(1),
        flip: true,
        seed: 3,
    };
    let mut t = Trainer::new(&net, Box::new(opt), dev, BATCH)
        .unwrap()
        .lr_scheduler(Box::new(sched), ScheduleEvery::Batch)
        .clip_grad_norm(0.5)
        .unwrap()
        .augment(aug);
    let d = data(dev);
    for e in epochs {
        t.train_epoch(&d, &order(e), e, &mut |_, _| {}).unwrap();
    }
    let weights = net
        .parameters()
        .iter()
        .map(|p| p.to_host().unwrap())
        .collect();
    let state = t.scheduler().unwrap().state();
    (
        weights,
        t.optimizer().state_dict(),
        state,
        t.optimizer().lr(),
    )
}

#[test]
fn resumed_training_with_recipes_is_bit_identical() {
    let straight = train(Device::Cpu, 0..2, None);
    let first = train(Device::Cpu, 0..1, None);
    let resumed = train(Device::Cpu, 1..2, Some(&(first.0, first.1, first.2)));
    assert_eq!(straight.0, resumed.0, "weights");
    assert_eq!(straight.2, resumed.2, "schedule state");
    assert_eq!(straight.3, resumed.3, "learning rate");
    assert_eq!(straight.2.last_epoch, 2 * 3, "one schedule step per batch");
}

#[test]
fn cpu_and_emulated_cuda_train_alike_with_recipes() {
    tinycnn::cuda::emulate(true);
    let cpu = train(Device::Cpu, 0..2, None);
    let gpu = train(Device::Cuda(0), 0..2, None);
    assert_eq!(cpu.2, gpu.2);
    for (a, b) in cpu.0.iter().flatten().zip(gpu.0.iter().flatten()) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn an_epoch_schedule_steps_once_per_epoch() {
    let net = net();
    let mut opt = sgd(&net);
    let sched = StepLR::new(&mut opt, 1, 0.5).unwrap();
    let mut t = Trainer::new(&net, Box::new(opt), Device::Cpu, BATCH)
        .unwrap()
        .lr_scheduler(Box::new(sched), ScheduleEvery::Epoch);
    let d = data(Device::Cpu);
    for e in 0..3 {
        t.train_epoch(&d, &order(e), e, &mut |_, _| {}).unwrap();
    }
    assert_eq!(t.optimizer().lr(), 0.05 * 0.125);
    assert_eq!(t.scheduler().unwrap().state().last_epoch, 3);
    assert!(Trainer::new(&net, Box::new(sgd(&net)), Device::Cpu, 1)
        .unwrap()
        .clip_grad_norm(f32::NAN)
        .is_err());
}
