//! Training recipes against PyTorch: the learning-rate schedules of
//! `torch.optim.lr_scheduler` and `torch.nn.utils.clip_grad_norm_`. The expected numbers are
//! printed by `scripts/torch_recipes.py` (torch 2.x); clipping also runs on the emulated
//! CUDA device.

use tinycnn::optim::{
    clip_grad_norm_, Adam, Anneal, CosineAnnealingLR, LrScheduler, OneCycleConfig, OneCycleLR,
    Optimizer, ScheduleState, Sgd, StepLR,
};
use tinycnn::{Device, Tensor};

// StepLR(lr 0.5, step_size 3, gamma 0.1), 10 steps
const STEP_LR: [f64; 11] = [
    0.5,
    0.5,
    0.5,
    0.05,
    0.05,
    0.05,
    0.005000000000000001,
    0.005000000000000001,
    0.005000000000000001,
    0.0005000000000000001,
    0.0005000000000000001,
];
// CosineAnnealingLR(lr 0.125, T_max 5, eta_min 0.001), 13 steps (past T_max)
const COSINE_LR: [f64; 14] = [
    0.125,
    0.11315905365124675,
    0.08215905365124675,
    0.04384094634875326,
    0.012840946348753265,
    0.001,
    0.012840946348753258,
    0.043840946348753275,
    0.08215905365124677,
    0.1131590536512468,
    0.12500000000000006,
    0.11315905365124683,
    0.08215905365124679,
    0.043840946348753296,
];
// OneCycleLR(SGD, max_lr 0.1, total_steps 10), 10 steps: lr, momentum
const ONECYCLE_LR: [f64; 11] = [
    0.0040000000000000036,
    0.052000000000000005,
    0.1,
    0.09504846320134738,
    0.0811745653949763,
    0.06112620219362893,
    0.03887419780637107,
    0.0188258346050237,
    0.004951936798652629,
    4e-07,
    0.004951936798652624,
];
const ONECYCLE_MOMENTUM: [f64; 11] = [
    0.95,
    0.8999999999999999,
    0.85,
    0.854951556604879,
    0.8688255099070633,
    0.8888739533021842,
    0.9111260466978157,
    0.9311744900929366,
    0.945048443395121,
    0.95,
    0.945048443395121,
];
// OneCycleLR(Adam, max_lr 0.25, total_steps 9, pct_start 0.25, linear, three_phase)
const ONECYCLE3_LR: [f64; 10] = [
    0.01,
    0.202,
    0.10600000000000001,
    0.009091,
    0.007273,
    0.005455,
    0.0036369999999999996,
    0.0018189999999999994,
    9.999999999992654e-07,
    -0.001817000000000001,
];
const ONECYCLE3_BETA1: [f64; 10] = [
    0.95,
    0.87,
    0.9099999999999999,
    0.95,
    0.95,
    0.95,
    0.95,
    0.95,
    0.95,
    0.95,
];

/// Expected momenta and how to read the optimizer's.
type Momenta<'a> = Option<(&'a [f64], &'a dyn Fn(&dyn Optimizer) -> f32)>;

fn param() -> Tensor {
    Tensor::new([0.0]).requires_grad_(true).unwrap()
}

/// Equal to PyTorch's Python floats up to libm's last bits.
#[track_caller]
fn same(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-15 * want.abs().max(1e-3),
        "{what}: {got:e} vs PyTorch {want:e}"
    );
}

/// Steps `sched` after an optimizer step each time, checking the rate (and what `extra`
/// reads from the optimizer) against PyTorch's sequences.
fn follow(opt: &mut dyn Optimizer, sched: &mut dyn LrScheduler, lrs: &[f64], momenta: Momenta) {
    for (i, &want) in lrs.iter().enumerate() {
        if i > 0 {
            sched.step(opt).unwrap();
        }
        same(sched.last_lr(), want, &format!("lr after {i} steps"));
        assert_eq!(opt.lr(), want as f32, "the optimizer's lr after {i} steps");
        if let Some((ms, read)) = momenta {
            let m = sched.state().last_momentum.unwrap();
            same(m, ms[i], &format!("momentum after {i} steps"));
            assert_eq!(
                read(opt),
                ms[i] as f32,
                "the optimizer's momentum after {i} steps"
            );
        }
    }
}

#[test]
fn step_lr_matches_pytorch() {
    let mut opt = Sgd::new(vec![param()], 0.5).unwrap();
    let mut s = StepLR::new(&mut opt, 3, 0.1).unwrap();
    follow(&mut opt, &mut s, &STEP_LR, None);
    assert!(StepLR::new(&mut opt, 0, 0.1).is_err());
    assert!(StepLR::new(&mut opt, 1, f64::NAN).is_err());
}

#[test]
fn cosine_annealing_matches_pytorch_past_t_max() {
    let mut opt = Sgd::new(vec![param()], 0.125).unwrap();
    let mut s = CosineAnnealingLR::new(&mut opt, 5, 0.001).unwrap();
    follow(&mut opt, &mut s, &COSINE_LR, None);
    assert!(CosineAnnealingLR::new(&mut opt, 0, 0.0).is_err());
    assert!(CosineAnnealingLR::new(&mut opt, 3, -1.0).is_err());
}

#[test]
fn one_cycle_matches_pytorch_and_cycles_sgd_momentum() {
    // Momentum 0 in the optimizer: PyTorch's OneCycleLR overrides it (0.95 at the start).
    let mut opt = Sgd::new(vec![param()], 0.01).unwrap();
    let mut s = OneCycleLR::new(&mut opt, OneCycleConfig::new(0.1, 10)).unwrap();
    let read = |o: &dyn Optimizer| o.momentum().unwrap();
    follow(
        &mut opt,
        &mut s,
        &ONECYCLE_LR,
        Some((&ONECYCLE_MOMENTUM, &read)),
    );
    // PyTorch refuses to go past total_steps.
    let e = s.step(&mut opt).unwrap_err();
    assert!(e.to_string().contains("past total_steps 10"), "{e}");
}

#[test]
fn one_cycle_three_phase_linear_cycles_adam_beta1() {
    let mut opt = Adam::new(vec![param()], 0.01).unwrap();
    let config = OneCycleConfig {
        pct_start: 0.25,
        anneal: Anneal::Linear,
        three_phase: true,
        ..OneCycleConfig::new(0.25, 9)
    };
    let mut s = OneCycleLR::new(&mut opt, config).unwrap();
    let read = |o: &dyn Optimizer| o.momentum().unwrap();
    follow(
        &mut opt,
        &mut s,
        &ONECYCLE3_LR,
        Some((&ONECYCLE3_BETA1, &read)),
    );
}

#[test]
fn one_cycle_without_momentum_cycling_leaves_it() {
    let mut opt = Sgd::new(vec![param()], 0.01).unwrap();
    let config = OneCycleConfig {
        cycle_momentum: false,
        ..OneCycleConfig::new(0.1, 10)
    };
    let mut s = OneCycleLR::new(&mut opt, config).unwrap();
    for _ in 0..10 {
        s.step(&mut opt).unwrap();
    }
    assert_eq!(opt.momentum(), Some(0.0));
    assert_eq!(s.state().last_momentum, None);
    assert!(OneCycleLR::new(&mut opt, OneCycleConfig::new(0.1, 0)).is_err());
    assert!(OneCycleLR::new(&mut opt, OneCycleConfig::new(f64::INFINITY, 3)).is_err());
}

#[test]
fn a_schedule_resumed_from_its_state_continues_exactly() {
    let mut a = Sgd::new(vec![param()], 0.01).unwrap();
    let mut sa = OneCycleLR::new(&mut a, OneCycleConfig::new(0.1, 10)).unwrap();
    for _ in 0..4 {
        sa.step(&mut a).unwrap();
    }
    // Through the named-number form a checkpoint stores.
    let saved = ScheduleState::from_scalars(&sa.state().to_scalars()).unwrap();
    assert_eq!(saved, sa.state());
    let mut b = Sgd::new(vec![param()], 0.01).unwrap();
    let mut sb = OneCycleLR::new(&mut b, OneCycleConfig::new(0.1, 10)).unwrap();
    sb.load_state(&saved, &mut b).unwrap();
    assert_eq!((b.lr(), b.momentum()), (a.lr(), a.momentum()));
    for _ in 4..10 {
        sa.step(&mut a).unwrap();
        sb.step(&mut b).unwrap();
        assert_eq!(sa.last_lr().to_bits(), sb.last_lr().to_bits());
        assert_eq!(sa.state(), sb.state());
    }
    // A cosine schedule continues the recursion from the saved rate.
    let mut c = Sgd::new(vec![param()], 0.125).unwrap();
    let mut sc = CosineAnnealingLR::new(&mut c, 5, 0.001).unwrap();
    for _ in 0..7 {
        sc.step(&mut c).unwrap();
    }
    let mut d = Sgd::new(vec![param()], 0.125).unwrap();
    let mut sd = CosineAnnealingLR::new(&mut d, 5, 0.001).unwrap();
    sd.load_state(&sc.state(), &mut d).unwrap();
    for want in &COSINE_LR[8..] {
        sd.step(&mut d).unwrap();
        same(sd.last_lr(), *want, "resumed cosine");
    }
    // A cycling state does not fit a plain schedule, nor a bad one any.
    assert!(sd.load_state(&sa.state(), &mut d).is_err());
    let bad = [
        ("last_epoch".to_string(), 1.5),
        ("last_lr".to_string(), 0.1),
    ];
    assert!(ScheduleState::from_scalars(&bad).is_err());
    let unknown = [("epoch".to_string(), 1.0)];
    assert!(ScheduleState::from_scalars(&unknown).is_err());
}

// clip_grad_norm_([[0.5, -1.25, 2.0], [3.0, 0.75]], 1.0): total 3.9210968017578125
#[allow(clippy::excessive_precision)] // PyTorch's values as printed
const CLIPPED: [[f32; 3]; 2] = [
    [0.12751531600952148, -0.3187882900238037, 0.5100612640380859],
    [0.7650918960571289, 0.19127297401428223, 0.0],
];

fn clip_on(dev: Device) {
    let grads: [&[f32]; 2] = [&[0.5, -1.25, 2.0], &[3.0, 0.75]];
    let make = || -> Vec<Tensor> {
        grads
            .iter()
            .map(|g| {
                let p = Tensor::zeros(&[g.len()]).to(&dev).unwrap();
                let p = p.requires_grad_(true).unwrap();
                let g = Tensor::from_vec(g.to_vec(), &[g.len()]).unwrap();
                p.set_grad(Some(g.to(&dev).unwrap())).unwrap();
                p
            })
            .collect()
    };
    // Above the limit: scaled by max / (norm + 1e-6).
    let ps = make();
    let total = clip_grad_norm_(&ps, 1.0).unwrap();
    assert_eq!(total.device(), dev);
    assert_eq!(total.item().unwrap(), 3.921_096_8);
    for (p, want) in ps.iter().zip(&CLIPPED) {
        let g = p.grad().unwrap().to_host().unwrap();
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() <= 1e-7, "{a} vs PyTorch {b}");
        }
    }
    // Below it: untouched, bit for bit.
    let ps = make();
    assert_eq!(
        clip_grad_norm_(&ps, 10.0).unwrap().item().unwrap(),
        3.921_096_8
    );
    for (p, want) in ps.iter().zip(grads) {
        assert_eq!(p.grad().unwrap().to_host().unwrap(), want);
    }
}

#[test]
fn clip_grad_norm_matches_pytorch_on_cpu() {
    clip_on(Device::Cpu);
}

#[test]
fn clip_grad_norm_matches_pytorch_on_emulated_cuda() {
    tinycnn::cuda::emulate(true);
    clip_on(Device::Cuda(0));
}

#[test]
fn clip_grad_norm_with_an_infinite_gradient_makes_nans_as_pytorch() {
    // PyTorch: total inf, grads [[0.0, nan], [0.0]] (error_if_nonfinite=False).
    let a = Tensor::zeros(&[2]).requires_grad_(true).unwrap();
    let b = Tensor::zeros(&[1]).requires_grad_(true).unwrap();
    a.set_grad(Some(Tensor::new([1.0, f32::INFINITY]))).unwrap();
    b.set_grad(Some(Tensor::new([2.0]))).unwrap();
    let total = clip_grad_norm_(&[a.clone(), b.clone()], 1.0).unwrap();
    assert_eq!(total.item().unwrap(), f32::INFINITY);
    let ga = a.grad().unwrap().to_vec();
    assert_eq!(ga[0], 0.0);
    assert!(ga[1].is_nan());
    assert_eq!(b.grad().unwrap().to_vec(), [0.0]);
    // No gradients at all: norm 0, nothing to do; a bad limit is an error.
    let c = Tensor::zeros(&[1]).requires_grad_(true).unwrap();
    assert_eq!(
        clip_grad_norm_(std::slice::from_ref(&c), 1.0)
            .unwrap()
            .item()
            .unwrap(),
        0.0
    );
    assert!(clip_grad_norm_(std::slice::from_ref(&c), f32::NAN).is_err());
    assert!(clip_grad_norm_(&[c], -1.0).is_err());
}
