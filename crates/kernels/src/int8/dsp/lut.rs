//! The table op: eight int8 values per pass through a 256-entry table.

use crate::error::{check_len, Result};

/// Four table lookups as the native loop of [`qlut_forward`] does them: each value `v`
/// (sign-extended, as `LDRSB` reads it) indexes the table's middle, `table[128 + v]`, and
/// the four results make one little-endian word.
#[cfg(not(tinycnn_arm_dsp))]
#[inline(always)]
fn lut4(table: &[i8; 256], c: &[i8]) -> u32 {
    let look = |v: i8| table[(128 + v as i32) as usize] as u8 as u32;
    look(c[0]) | look(c[1]) << 8 | look(c[2]) << 16 | look(c[3]) << 24
}

/// The table op, the same function as [`crate::int8::qlut_forward`] (bit for bit): on the
/// Cortex-M4 one loop of two groups of eight values per pass (an odd number of groups
/// enters the loop at its second), each value read sign-extended (`LDRSB`) and used as a
/// signed offset from the table's middle (no `+ 128`), all sixteen loads of a group in
/// one pipelined run (1 cycle each after the first), four results per word store (`STR`:
/// `y` need not be aligned); the last 1 to 7 values in Rust.
pub fn qlut_forward(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> Result<()> {
    check_len("output", y.len(), x.len())?;
    // SAFETY: `x` and `y` hold `x.len()` values each (checked).
    unsafe { lut_run(table, x.as_ptr(), y.as_mut_ptr(), x.len()) };
    Ok(())
}

/// [`qlut_forward`] in place: each value `v` of `v` becomes `table[128 + v]` (the
/// executor's pixel conversion, whose table is laid out for it).
pub fn qlut_in_place(table: &[i8; 256], v: &mut [i8]) {
    let p = v.as_mut_ptr();
    // SAFETY: `v` holds `v.len()` values; `lut_run` reads each before it writes it.
    unsafe { lut_run(table, p, p, v.len()) };
}

/// The table op on `n` values from `x` to `y`, which may be the same buffer (each pass
/// reads its eight values before it stores them; the tail reads each value before it
/// writes it).
///
/// # Safety
///
/// `x` valid for `n` reads, `y` for `n` writes; either the same pointer or not overlapping.
/// Not inlined: one copy of the loop for both callers (flash on a microcontroller).
#[inline(never)]
unsafe fn lut_run(table: &[i8; 256], x: *const i8, y: *mut i8, n: usize) {
    let passes = n / 8;
    let done = 8 * passes;
    if passes > 0 {
        #[cfg(tinycnn_arm_dsp)]
        // SAFETY: reads 8 * passes <= n bytes of `x` and writes as many of `y` (groups of
        // eight: passes / 2 rounded up loop passes, the first of them only its second
        // group where `passes` is odd); every table read is at 128 + v for an int8 v,
        // inside the table.
        unsafe {
            core::arch::asm!(
                // Two groups of eight per pass; an odd number of groups enters at the
                // second, with one more pass counted.
                "adds {n}, {n}, #1",
                "lsrs {n}, {n}, #1",
                "bcs 2f",
                "b 3f",
                "2:",
                "ldrsb {v0}, [{px}], #8",
                "ldrsb {v1}, [{px}, #-7]",
                "ldrsb {v2}, [{px}, #-6]",
                "ldrsb {v3}, [{px}, #-5]",
                "ldrb {v0}, [{mid}, {v0}]",
                "ldrb {v1}, [{mid}, {v1}]",
                "ldrb {v2}, [{mid}, {v2}]",
                "ldrb {v3}, [{mid}, {v3}]",
                "ldrsb {v4}, [{px}, #-4]",
                "ldrsb {v5}, [{px}, #-3]",
                "ldrsb {v6}, [{px}, #-2]",
                "ldrsb {v7}, [{px}, #-1]",
                "ldrb {v4}, [{mid}, {v4}]",
                "ldrb {v5}, [{mid}, {v5}]",
                "ldrb {v6}, [{mid}, {v6}]",
                "ldrb {v7}, [{mid}, {v7}]",
                "orr {v0}, {v0}, {v1}, lsl #8",
                "orr {v0}, {v0}, {v2}, lsl #16",
                "orr {v0}, {v0}, {v3}, lsl #24",
                "orr {v4}, {v4}, {v5}, lsl #8",
                "orr {v4}, {v4}, {v6}, lsl #16",
                "orr {v4}, {v4}, {v7}, lsl #24",
                "str {v0}, [{py}], #8",
                "str {v4}, [{py}, #-4]",
                "3:",
                "ldrsb {v0}, [{px}], #8",
                "ldrsb {v1}, [{px}, #-7]",
                "ldrsb {v2}, [{px}, #-6]",
                "ldrsb {v3}, [{px}, #-5]",
                "ldrb {v0}, [{mid}, {v0}]",
                "ldrb {v1}, [{mid}, {v1}]",
                "ldrb {v2}, [{mid}, {v2}]",
                "ldrb {v3}, [{mid}, {v3}]",
                "ldrsb {v4}, [{px}, #-4]",
                "ldrsb {v5}, [{px}, #-3]",
                "ldrsb {v6}, [{px}, #-2]",
                "ldrsb {v7}, [{px}, #-1]",
                "ldrb {v4}, [{mid}, {v4}]",
                "ldrb {v5}, [{mid}, {v5}]",
                "ldrb {v6}, [{mid}, {v6}]",
                "ldrb {v7}, [{mid}, {v7}]",
                "orr {v0}, {v0}, {v1}, lsl #8",
                "orr {v0}, {v0}, {v2}, lsl #16",
                "orr {v0}, {v0}, {v3}, lsl #24",
                "orr {v4}, {v4}, {v5}, lsl #8",
                "orr {v4}, {v4}, {v6}, lsl #16",
                "orr {v4}, {v4}, {v7}, lsl #24",
                "str {v0}, [{py}], #8",
                "str {v4}, [{py}, #-4]",
                "subs {n}, {n}, #1",
                "bne 2b",
                px = inout(reg) x => _,
                py = inout(reg) y => _,
                mid = in(reg) table.as_ptr().add(128),
                n = inout(reg) passes => _,
                v0 = out(reg) _,
                v1 = out(reg) _,
                v2 = out(reg) _,
                v3 = out(reg) _,
                v4 = out(reg) _,
                v5 = out(reg) _,
                v6 = out(reg) _,
                v7 = out(reg) _,
                options(nostack),
            );
        }
        #[cfg(not(tinycnn_arm_dsp))]
        for i in (0..done).step_by(4) {
            // SAFETY: `i + 4 <= done <= n`: inside both buffers; the four values are read
            // before the word is written, as the native loop does.
            unsafe {
                let c = core::ptr::read_unaligned(x.add(i) as *const [i8; 4]);
                let word = lut4(table, &c).to_le_bytes().map(|b| b as i8);
                core::ptr::write_unaligned(y.add(i) as *mut [i8; 4], word);
            }
        }
    }
    for i in done..n {
        // SAFETY: `i < n`: inside both buffers.
        unsafe { *y.add(i) = table[(128 + *x.add(i) as i32) as usize] };
    }
}
