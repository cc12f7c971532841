//! The emulated device's side of the FFI: the kernels of `kernels-cuda/*.cu` compiled for
//! the host by build.rs (with `kernels-cuda/emu/cuda_emu.h`), one `extern "C"` entry each
//! (`kernels-cuda/emu/entries.cpp`).

use std::collections::HashMap;
use std::ffi::c_void;

use crate::error::{BackendError, CudaError, Result};
use crate::launch::LaunchShape;

#[repr(C)]
pub(crate) struct EmuLaunch {
    grid: [u32; 3],
    block: [u32; 3],
}

/// An emulator entry: launch shape, pointers to the argument values, their count and sizes.
pub(crate) type Entry =
    unsafe extern "C" fn(*const EmuLaunch, *const *mut c_void, u32, *const u32) -> i32;

extern "C" {
    fn tinycnn_emu_find(name: *const u8, len: usize) -> Option<Entry>;
}

/// Looks up every kernel of `kernels` in the emulator, as the real device loads them from PTX.
pub(crate) fn load(
    kernels: &[(&'static str, &'static str)],
) -> Result<HashMap<&'static str, Entry>> {
    kernels
        .iter()
        .map(|&(module, kernel)| {
            // SAFETY: the name is passed with its length; the lookup only reads it.
            match unsafe { tinycnn_emu_find(kernel.as_ptr(), kernel.len()) } {
                Some(entry) => Ok((kernel, entry)),
                None => Err(CudaError::Module {
                    module,
                    kernel,
                    source: BackendError::Emulator(
                        "no such entry in kernels-cuda/emu/entries.cpp".into(),
                    ),
                }),
            }
        })
        .collect()
}

pub(crate) fn function(
    functions: &HashMap<&'static str, Entry>,
    kernel: &'static str,
) -> Result<Entry> {
    functions
        .get(kernel)
        .copied()
        .ok_or_else(|| CudaError::Invalid(format!("kernel `{kernel}` is not in the kernel table")))
}

/// Runs one launch to completion.
///
/// # Safety
/// `args[i]` must point at a live value of `sizes[i]` bytes of the kernel's i-th parameter
/// type, and every buffer pointer among them must be valid for what the kernel accesses.
pub(crate) unsafe fn launch(
    entry: Entry,
    shape: LaunchShape,
    args: &[*mut c_void],
    sizes: &[u32],
) -> std::result::Result<(), BackendError> {
    let l = EmuLaunch {
        grid: [shape.grid.0, shape.grid.1, shape.grid.2],
        block: [shape.block.0, shape.block.1, shape.block.2],
    };
    // SAFETY: forwarded from the caller; `l`, `args` and `sizes` outlive the call.
    let status = unsafe { entry(&l, args.as_ptr(), args.len() as u32, sizes.as_ptr()) };
    match status {
        0 => Ok(()),
        1000 => Err(BackendError::Emulator(format!(
            "the kernel table passes {} arguments, the kernel's C signature has another count",
            args.len()
        ))),
        1001 => Err(BackendError::Emulator(format!(
            "block {:?} is not 1-D",
            shape.block
        ))),
        s if s >= 2000 => Err(BackendError::Emulator(format!(
            "argument {} is {} bytes in the kernel table, another size in the kernel's C signature",
            s - 2000,
            sizes.get((s - 2000) as usize).copied().unwrap_or(0)
        ))),
        s => Err(BackendError::Emulator(format!("unknown status {s}"))),
    }
}
