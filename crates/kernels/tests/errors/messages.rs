//! The error messages, and batch norm and adaptive pooling.

use super::*;

#[test]
fn display_messages_name_the_problem() {
    let cases: [(KernelError, &[&str]); 9] = [
        (KernelError::Zero { what: "stride" }, &["stride", "0"]),
        (
            KernelError::ChannelsNotDivisibleByGroups {
                what: "in_channels",
                channels: 3,
                groups: 2,
            },
            &["in_channels", "3", "groups", "2"],
        ),
        (
            KernelError::KernelTooLarge {
                axis: "width",
                kernel: 7,
                padded_input: 5,
            },
            &["kernel", "width", "7", "5"],
        ),
        (
            KernelError::PaddingTooLarge {
                axis: "height",
                padding: 2,
                kernel: 3,
            },
            &["padding", "height", "2", "3"],
        ),
        (
            KernelError::BufferLength {
                buffer: "weight",
                expected: 54,
                actual: 53,
            },
            &["weight", "54", "53"],
        ),
        (
            KernelError::LeadingDimension {
                matrix: "B",
                ld: 2,
                min: 3,
            },
            &["leading dimension", "B", "2", "3"],
        ),
        (
            KernelError::Overflow { what: "conv input" },
            &["conv input", "overflow"],
        ),
        (
            KernelError::LabelOutOfRange {
                row: 1,
                label: 10,
                classes: 10,
            },
            &["label", "10", "row 1"],
        ),
        (
            KernelError::InvalidArgument {
                what: "Adam betas must be in [0, 1)",
            },
            &["Adam betas"],
        ),
    ];
    for (e, words) in cases {
        let msg = e.to_string();
        for w in words {
            assert!(
                msg.contains(w),
                "{e:?} displays as {msg:?}, which lacks {w:?}"
            );
        }
        // Usable as a std error.
        let _: &dyn std::error::Error = &e;
    }
    // The errors a kernel returns carry the real numbers into the message.
    let s = Conv2dShape::new(Conv2dParams::new(2, 3, (3, 3)), 1, 5, 5);
    let msg = conv_fwd(&s, 50, 53, None, 27).unwrap_err().to_string();
    assert!(
        msg.contains("weight") && msg.contains("54") && msg.contains("53"),
        "{msg}"
    );
    let msg = shape(Conv2dParams::new(1, 1, (6, 3)))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("height") && msg.contains('6') && msg.contains('5'),
        "{msg}"
    );
}

#[test]
fn batch_norm_and_adaptive_pool_errors() {
    let s = BatchNormShape::new(2, 3, 4);
    let x = [0.0; 24];
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    assert!(matches!(
        batch_norm_stats(&s, &x[..23], &mut m, &mut v),
        Err(KernelError::BufferLength {
            buffer: "x",
            expected: 24,
            actual: 23
        })
    ));
    assert!(matches!(
        batch_norm_stats(&s, &x, &mut m[..2], &mut v),
        Err(KernelError::BufferLength { buffer: "mean", .. })
    ));
    assert!(matches!(
        batch_norm_stats(&BatchNormShape::new(0, 3, 4), &[], &mut m, &mut v),
        Err(KernelError::Zero { .. })
    ));
    let stats = BatchNormStats {
        mean: &[0.0; 3],
        var: &[1.0; 3],
        eps: 1e-5,
    };
    let mut y = [0.0; 24];
    assert!(matches!(
        batch_norm_forward(&s, &x, &stats, Some(&[1.0; 2]), None, &mut y),
        Err(KernelError::BufferLength {
            buffer: "weight",
            ..
        })
    ));
    assert!(matches!(
        batch_norm_forward(&s, &x, &stats, None, None, &mut y[..20]),
        Err(KernelError::BufferLength { buffer: "y", .. })
    ));
    let short = BatchNormStats {
        mean: &[0.0; 3],
        var: &[1.0; 4],
        eps: 1e-5,
    };
    assert!(matches!(
        batch_norm_forward(&s, &x, &short, None, None, &mut y),
        Err(KernelError::BufferLength { buffer: "var", .. })
    ));
    let mut gw = [0.0; 2];
    let grads = BatchNormGrads {
        weight: Some(&mut gw),
        ..Default::default()
    };
    assert!(matches!(
        batch_norm_backward(&s, &x, &x, &stats, None, true, grads),
        Err(KernelError::BufferLength {
            buffer: "grad_weight",
            ..
        })
    ));
    assert!(BatchNormShape::new(usize::MAX, 2, 2).len().is_err());

    let p = AdaptivePool2dShape::new(1, 1, (4, 4), (0, 2));
    assert!(matches!(
        adaptive_avg_pool2d_forward(&p, &[0.0; 16], &mut []),
        Err(KernelError::Zero {
            what: "output height"
        })
    ));
    let p = AdaptivePool2dShape::new(1, 1, (4, 4), (2, 2));
    assert!(matches!(
        adaptive_avg_pool2d_forward(&p, &[0.0; 16], &mut [0.0; 3]),
        Err(KernelError::BufferLength {
            buffer: "output",
            ..
        })
    ));
    assert!(matches!(
        adaptive_avg_pool2d_backward(&p, &[0.0; 4], &mut [0.0; 15]),
        Err(KernelError::BufferLength {
            buffer: "input",
            ..
        })
    ));
}
