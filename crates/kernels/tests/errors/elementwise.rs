//! Activations, bias, softmax and cross-entropy.

use super::*;

#[test]
fn activation_length_mismatch() {
    type Fwd = fn(&[f32], &mut [f32]) -> Result<()>;
    type Bwd = fn(&[f32], &[f32], &mut [f32]) -> Result<()>;
    let fwd: [Fwd; 4] = [relu_forward, relu6_forward, sigmoid_forward, tanh_forward];
    let bwd: [Bwd; 4] = [
        relu_backward,
        relu6_backward,
        sigmoid_backward,
        tanh_backward,
    ];
    for f in fwd {
        assert!(matches!(
            f(&[0.0; 5], &mut [0.0; 4]),
            Err(KernelError::BufferLength {
                expected: 5,
                actual: 4,
                ..
            })
        ));
        assert_eq!(f(&[], &mut []), Ok(()));
    }
    for b in bwd {
        assert!(matches!(
            b(&[0.0; 5], &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength { .. })
        ));
        assert!(matches!(
            b(&[0.0; 5], &[0.0; 4], &mut [0.0; 5]),
            Err(KernelError::BufferLength {
                expected: 5,
                actual: 4,
                ..
            })
        ));
    }
}

#[test]
fn bias_errors() {
    assert_eq!(bias_add(2, 3, 4, &[0.0; 3], &mut [0.0; 24]), Ok(()));
    assert_eq!(
        bias_add(2, 3, 4, &[0.0; 2], &mut [0.0; 24]),
        Err(KernelError::BufferLength {
            buffer: "bias",
            expected: 3,
            actual: 2
        })
    );
    assert!(matches!(
        bias_add(2, 3, 4, &[0.0; 3], &mut [0.0; 23]),
        Err(KernelError::BufferLength {
            expected: 24,
            actual: 23,
            ..
        })
    ));
    assert!(matches!(
        bias_backward(2, 3, 4, &[0.0; 24], &mut [0.0; 4]),
        Err(KernelError::BufferLength {
            expected: 3,
            actual: 4,
            ..
        })
    ));
    assert!(matches!(
        bias_backward(2, 3, 4, &[0.0; 25], &mut [0.0; 3]),
        Err(KernelError::BufferLength {
            expected: 24,
            actual: 25,
            ..
        })
    ));
    assert!(matches!(
        bias_add(usize::MAX, 2, 2, &[0.0; 2], &mut [0.0; 4]),
        Err(KernelError::Overflow { .. })
    ));
}

#[test]
fn softmax_errors() {
    type Fwd = fn(usize, usize, &[f32], &mut [f32]) -> Result<()>;
    type Bwd = fn(usize, usize, &[f32], &[f32], &mut [f32]) -> Result<()>;
    let fwd: [Fwd; 2] = [softmax_forward, log_softmax_forward];
    let bwd: [Bwd; 2] = [softmax_backward, log_softmax_backward];
    for f in fwd {
        assert_eq!(
            f(0, 3, &[], &mut []),
            Err(KernelError::Zero { what: "rows" })
        );
        assert_eq!(
            f(2, 0, &[], &mut []),
            Err(KernelError::Zero { what: "cols" })
        );
        assert!(matches!(
            f(2, 3, &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 5,
                ..
            })
        ));
        assert!(matches!(
            f(2, 3, &[0.0; 6], &mut [0.0; 7]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 7,
                ..
            })
        ));
        assert!(matches!(
            f(usize::MAX, 3, &[0.0; 6], &mut [0.0; 6]),
            Err(KernelError::Overflow { .. })
        ));
    }
    for b in bwd {
        assert!(matches!(
            b(2, 3, &[0.0; 6], &[0.0; 5], &mut [0.0; 6]),
            Err(KernelError::BufferLength {
                expected: 6,
                actual: 5,
                ..
            })
        ));
        assert!(matches!(
            b(2, 3, &[0.0; 6], &[0.0; 6], &mut [0.0; 5]),
            Err(KernelError::BufferLength { .. })
        ));
    }
}

#[test]
fn cross_entropy_errors() {
    let x = [0.0f32; 6];
    assert!(cross_entropy_forward(2, 3, &x, &[0, 2]).is_ok());
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[0, 3]),
        Err(KernelError::LabelOutOfRange {
            row: 1,
            label: 3,
            classes: 3
        })
    );
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[u32::MAX, 0]),
        Err(KernelError::LabelOutOfRange {
            row: 0,
            label: u32::MAX as usize,
            classes: 3
        })
    );
    assert_eq!(
        cross_entropy_forward(2, 3, &x, &[0]),
        Err(KernelError::BufferLength {
            buffer: "labels",
            expected: 2,
            actual: 1
        })
    );
    assert!(matches!(
        cross_entropy_forward(2, 3, &x[..5], &[0, 0]),
        Err(KernelError::BufferLength {
            expected: 6,
            actual: 5,
            ..
        })
    ));
    assert_eq!(
        cross_entropy_forward(0, 3, &[], &[]),
        Err(KernelError::Zero { what: "rows" })
    );
    let mut g = [0.0f32; 6];
    assert_eq!(
        cross_entropy_backward(2, 3, &x, &[3, 0], 1.0, &mut g),
        Err(KernelError::LabelOutOfRange {
            row: 0,
            label: 3,
            classes: 3
        })
    );
    assert!(matches!(
        cross_entropy_backward(2, 3, &x, &[0, 0], 1.0, &mut g[..5]),
        Err(KernelError::BufferLength {
            expected: 6,
            actual: 5,
            ..
        })
    ));
    assert!(matches!(
        cross_entropy_backward(2, 3, &x, &[0, 0, 0], 1.0, &mut g),
        Err(KernelError::BufferLength {
            expected: 2,
            actual: 3,
            ..
        })
    ));
}
