//! GEMM leading dimensions, buffers and workspaces.

use super::*;

fn gemm(g: &GemmShape, a: usize, b: usize, c: usize) -> Result<()> {
    let mut ws = vec![0.0; sgemm_workspace_len(g.m, g.n, g.k).min(1 << 24)];
    sgemm(
        g,
        1.0,
        &vec![0.0; a],
        &vec![0.0; b],
        0.0,
        &mut vec![0.0; c],
        &mut ws,
    )
}

#[test]
fn sgemm_leading_dimensions() {
    let g = GemmShape::new(2, 3, 4); // A 2x4, B 4x3, C 2x3
    assert_eq!(gemm(&g, 8, 12, 6), Ok(()));
    assert_eq!(
        gemm(&g.with_ld(3, 3, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "A",
            ld: 3,
            min: 4
        })
    );
    assert_eq!(
        gemm(&g.with_ld(4, 2, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "B",
            ld: 2,
            min: 3
        })
    );
    assert_eq!(
        gemm(&g.with_ld(4, 3, 2), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "C",
            ld: 2,
            min: 3
        })
    );
    // Transposed A is stored k x m = 4 x 2, so lda >= 2; transposed B is 3 x 4, ldb >= 4.
    let gt = g.with_transpose(Transpose::Yes, Transpose::Yes);
    assert_eq!((gt.lda, gt.ldb), (2, 4));
    assert_eq!(gemm(&gt, 8, 12, 6), Ok(()));
    assert_eq!(
        gemm(&gt.with_ld(1, 4, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "A",
            ld: 1,
            min: 2
        })
    );
    assert_eq!(
        gemm(&gt.with_ld(2, 3, 3), 8, 12, 6),
        Err(KernelError::LeadingDimension {
            matrix: "B",
            ld: 3,
            min: 4
        })
    );
}

#[test]
fn sgemm_buffer_lengths() {
    let g = GemmShape::new(2, 3, 4);
    let len = |r: Result<()>| match r {
        Err(KernelError::BufferLength {
            buffer,
            expected,
            actual,
        }) => Some((buffer, expected, actual)),
        _ => None,
    };
    assert_eq!(len(gemm(&g, 7, 12, 6)), Some(("a", 8, 7)));
    assert_eq!(len(gemm(&g, 8, 11, 6)), Some(("b", 12, 11)));
    assert_eq!(len(gemm(&g, 8, 12, 5)), Some(("c", 6, 5)));
    // Longer slices are fine (sub-matrices of bigger buffers).
    assert_eq!(gemm(&g, 100, 100, 100), Ok(()));
    // With lda 10 the last row of A starts at 10 and needs 4 more: 14.
    assert_eq!(
        len(gemm(&g.with_ld(10, 3, 3), 13, 12, 6)),
        Some(("a", 14, 13))
    );
    assert_eq!(gemm(&g.with_ld(10, 3, 3), 14, 12, 6), Ok(()));
}

#[test]
fn sgemm_sizes_that_overflow() {
    let big = usize::MAX / 2;
    let g = GemmShape::new(big, 2, 4);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
    let g = GemmShape::new(2, 2, 2).with_ld(usize::MAX, 2, 2);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
    let g = GemmShape::new(2, 2, 2).with_ld(2, 2, usize::MAX);
    assert!(matches!(
        gemm(&g, 8, 8, 8),
        Err(KernelError::Overflow { .. })
    ));
}

#[test]
fn sgemm_short_workspace() {
    for (m, n, k) in [(64, 64, 64), (200, 300, 100), (1, 1, 1)] {
        let need = sgemm_workspace_len(m, n, k);
        if need == 0 {
            continue;
        }
        let g = GemmShape::new(m, n, k);
        let mut ws = vec![0.0; need - 1];
        let r = sgemm(
            &g,
            1.0,
            &vec![0.0; m * k],
            &vec![0.0; k * n],
            0.0,
            &mut vec![0.0; m * n],
            &mut ws,
        );
        assert!(
            matches!(
                r,
                Err(KernelError::BufferLength {
                    buffer: "workspace",
                    ..
                })
            ),
            "{m}x{n}x{k}: {r:?}"
        );
    }
}
