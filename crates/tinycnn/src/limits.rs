//! The size bound tensor-creating operations check before they allocate.
//!
//! Shapes come from callers (and from files), so an op that builds a new tensor first
//! multiplies the sizes with checked arithmetic and compares the count with
//! [`MAX_NUMEL`]: an absurd shape is an [`Error`] naming the op and the shape, not an
//! overflow panic or an aborting allocation. Below the bound, the allocation itself is
//! made with `try_reserve`, so a machine without that much memory also gets an error.

use crate::error::{Error, Result};

/// The most elements one tensor (or one scratch buffer of an op) may hold: 2^31, i.e.
/// 8 GiB of f32. Every op that returns `Result` and allocates checks against it.
pub const MAX_NUMEL: usize = 1 << 31;

/// The element count of `shape`, or an error when the product overflows or exceeds
/// [`MAX_NUMEL`].
pub(crate) fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .ok_or_else(|| Error::bad_shape(op, shape, "element count overflows usize"))?;
    check_count(op, shape, n)?;
    Ok(n)
}

/// Errors when `n` elements (of a tensor shaped `shape`, or a buffer for it) exceed
/// [`MAX_NUMEL`].
pub(crate) fn check_count(op: &'static str, shape: &[usize], n: usize) -> Result<()> {
    if n > MAX_NUMEL {
        return Err(Error::bad_shape(
            op,
            shape,
            format!("needs {n} elements, more than the limit of {MAX_NUMEL} (tinycnn::limits::MAX_NUMEL)"),
        ));
    }
    Ok(())
}

/// An empty vector with room for `n` elements, or an error when `n` is over the bound or
/// the allocator refuses.
pub(crate) fn try_with_capacity<T>(op: &'static str, shape: &[usize], n: usize) -> Result<Vec<T>> {
    check_count(op, shape, n)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|e| Error::bad_shape(op, shape, format!("cannot allocate {n} elements: {e}")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_over_the_bound_or_overflowing_are_errors() {
        assert_eq!(checked_numel("t", &[2, 3, 4]).unwrap(), 24);
        assert_eq!(checked_numel("t", &[]).unwrap(), 1);
        assert_eq!(checked_numel("t", &[1 << 31]).unwrap(), MAX_NUMEL);
        assert!(checked_numel("t", &[(1 << 31) + 1]).is_err());
        let e = checked_numel("t", &[usize::MAX, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows"), "{e}");
        assert!(try_with_capacity::<f32>("t", &[5], 5).unwrap().capacity() >= 5);
        let e = try_with_capacity::<f32>("t", &[usize::MAX], usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
    }
}
