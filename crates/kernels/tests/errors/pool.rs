//! Pooling parameters and buffers.

use super::*;

fn pool_all(s: &Pool2dShape, x: usize, y: usize, arg: usize) -> [Result<()>; 4] {
    let xv = vec![0.0f32; x];
    let mut yv = vec![0.0f32; y];
    let mut av = vec![0u32; arg];
    [
        max_pool2d_forward(s, &xv, &mut yv, &mut av),
        max_pool2d_backward(s, &yv.clone(), &av, &mut xv.clone()),
        avg_pool2d_forward(s, &xv, &mut yv),
        avg_pool2d_backward(s, &yv.clone(), &mut xv.clone()),
    ]
}

#[test]
fn pool_invalid_parameters() {
    let ok = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 4, 4);
    assert_eq!(pool_all(&ok, 16, 4, 4), [Ok(()), Ok(()), Ok(()), Ok(())]);
    let cases = [
        (
            Pool2dParams {
                kernel: (0, 2),
                ..Pool2dParams::new(2)
            },
            KernelError::Zero { what: "kernel" },
        ),
        (
            Pool2dParams::new(2).with_stride((2, 0)),
            KernelError::Zero { what: "stride" },
        ),
        (
            Pool2dParams::new(3).with_padding((2, 1)),
            KernelError::PaddingTooLarge {
                axis: "height",
                padding: 2,
                kernel: 3,
            },
        ),
        (
            Pool2dParams::with_kernel((2, 3)).with_padding((1, 2)),
            KernelError::PaddingTooLarge {
                axis: "width",
                padding: 2,
                kernel: 3,
            },
        ),
        (
            Pool2dParams::new(1).with_padding((0, 1)),
            KernelError::PaddingTooLarge {
                axis: "width",
                padding: 1,
                kernel: 1,
            },
        ),
        (
            Pool2dParams::new(5),
            KernelError::KernelTooLarge {
                axis: "height",
                kernel: 5,
                padded_input: 4,
            },
        ),
    ];
    for (p, err) in cases {
        let s = Pool2dShape::new(p, 1, 1, 4, 4);
        for r in pool_all(&s, 16, 4, 4) {
            assert_eq!(r, Err(err), "{p:?}");
        }
    }
    for (b, c) in [(0, 1), (1, 0)] {
        let s = Pool2dShape::new(Pool2dParams::new(2), b, c, 4, 4);
        for r in pool_all(&s, 16, 4, 4) {
            assert!(matches!(r, Err(KernelError::Zero { .. })), "{r:?}");
        }
    }
}

#[test]
fn pool_sizes_that_overflow() {
    let big = usize::MAX / 2;
    let s = Pool2dShape::new(Pool2dParams::new(2), big, 4, 2, 2);
    for r in pool_all(&s, 16, 4, 4) {
        assert!(matches!(r, Err(KernelError::Overflow { .. })), "{r:?}");
    }
    // A plane with more than u32::MAX elements cannot be indexed by a u32 argmax.
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, 1, 1 << 17, 1 << 17);
    for r in pool_all(&s, 16, 4, 4) {
        assert!(matches!(r, Err(KernelError::Overflow { .. })), "{r:?}");
    }
}

#[test]
fn pool_wrong_buffer_lengths() {
    let s = Pool2dShape::new(Pool2dParams::new(2), 2, 3, 4, 4); // x 96, y 24
    let len = |r: &Result<()>| match *r {
        Err(KernelError::BufferLength {
            expected, actual, ..
        }) => Some((expected, actual)),
        _ => None,
    };
    for r in pool_all(&s, 95, 24, 24) {
        assert_eq!(len(&r), Some((96, 95)), "{r:?}");
    }
    for r in pool_all(&s, 96, 25, 25) {
        assert_eq!(len(&r), Some((24, 25)), "{r:?}");
    }
    // argmax must match the output.
    let [fwd, bwd, _, _] = pool_all(&s, 96, 24, 23);
    assert_eq!(len(&fwd), Some((24, 23)), "{fwd:?}");
    assert_eq!(len(&bwd), Some((24, 23)), "{bwd:?}");
    // An argmax outside its plane (a corrupted index) is refused, not written out of bounds.
    let mut arg = vec![0u32; 24];
    arg[5] = 16;
    let r = max_pool2d_backward(&s, &[1.0; 24], &arg, &mut [0.0; 96]);
    assert!(
        matches!(r, Err(KernelError::InvalidArgument { .. })),
        "{r:?}"
    );
    arg[5] = u32::MAX;
    let r = max_pool2d_backward(&s, &[1.0; 24], &arg, &mut [0.0; 96]);
    assert!(
        matches!(r, Err(KernelError::InvalidArgument { .. })),
        "{r:?}"
    );
}
