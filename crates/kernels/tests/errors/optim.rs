//! SGD and Adam, and outputs left untouched by a failed call.

use super::*;

#[test]
fn sgd_errors() {
    let mut p = [0.0f32; 4];
    let g = [0.0f32; 4];
    let bad_lr = [-0.1, f32::NAN, f32::INFINITY];
    for lr in bad_lr {
        let r = sgd_step(&SgdConfig::new(lr), &mut p, &g, &mut [], true);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "lr {lr}: {r:?}"
        );
    }
    for cfg in [
        SgdConfig {
            momentum: -0.5,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            weight_decay: -1.0,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1)
        },
        SgdConfig {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..SgdConfig::new(0.1)
        },
    ] {
        let r = sgd_step(&cfg, &mut p, &g, &mut [0.0; 4], true);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "{cfg:?}: {r:?}"
        );
    }
    assert!(matches!(
        sgd_step(&SgdConfig::new(0.1), &mut p, &g[..3], &mut [], true),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    let momentum = SgdConfig {
        momentum: 0.9,
        ..SgdConfig::new(0.1)
    };
    assert!(matches!(
        sgd_step(&momentum, &mut p, &g, &mut [0.0; 3], true),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    // Without momentum the buffer is not used and may be empty.
    assert_eq!(
        sgd_step(&SgdConfig::new(0.1), &mut p, &g, &mut [], true),
        Ok(())
    );
}

#[test]
fn adam_errors() {
    let mut p = [0.0f32; 4];
    let g = [0.0f32; 4];
    let (mut m, mut v) = ([0.0f32; 4], [0.0f32; 4]);
    for cfg in [
        AdamConfig::new(-1.0),
        AdamConfig::new(f32::NAN),
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            beta2: 1.5,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            beta1: -0.1,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            eps: -1e-8,
            ..AdamConfig::new(0.1)
        },
        AdamConfig {
            weight_decay: -0.1,
            ..AdamConfig::new(0.1)
        },
    ] {
        let r = adam_step(&cfg, 1, &mut p, &g, &mut m, &mut v);
        assert!(
            matches!(r, Err(KernelError::InvalidArgument { .. })),
            "{cfg:?}: {r:?}"
        );
    }
    let cfg = AdamConfig::new(0.1);
    assert!(matches!(
        adam_step(&cfg, 0, &mut p, &g, &mut m, &mut v),
        Err(KernelError::Zero { .. })
    ));
    assert!(matches!(
        adam_step(&cfg, 1, &mut p, &g[..3], &mut m, &mut v),
        Err(KernelError::BufferLength {
            expected: 4,
            actual: 3,
            ..
        })
    ));
    assert_eq!(
        adam_step(&cfg, 1, &mut p, &g, &mut m[..3], &mut v),
        Err(KernelError::BufferLength {
            buffer: "m",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        adam_step(&cfg, 1, &mut p, &g, &mut m, &mut [0.0; 5]),
        Err(KernelError::BufferLength {
            buffer: "v",
            expected: 4,
            actual: 5
        })
    );
    assert_eq!(adam_step(&cfg, 1, &mut p, &g, &mut m, &mut v), Ok(()));
}

#[test]
fn failed_calls_leave_outputs_untouched() {
    // A refused call must not have written half its output.
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
    let mut y = [7.0f32; 4];
    let mut ws = vec![0.0; conv2d_workspace_len(&s)];
    assert!(conv2d_forward(&s, &[0.0; 8], &[0.0; 4], None, &mut y, &mut ws).is_err());
    assert_eq!(y, [7.0; 4]);
    let mut p = [1.0f32; 3];
    assert!(sgd_step(&SgdConfig::new(0.1), &mut p, &[1.0; 2], &mut [], true).is_err());
    assert_eq!(p, [1.0; 3]);
    let mut c = [7.0f32; 4];
    let mut ws = vec![0.0; sgemm_workspace_len(2, 2, 2)];
    assert!(sgemm(
        &GemmShape::new(2, 2, 2),
        1.0,
        &[0.0; 3],
        &[0.0; 4],
        0.0,
        &mut c,
        &mut ws
    )
    .is_err());
    assert_eq!(c, [7.0; 4]);
}
