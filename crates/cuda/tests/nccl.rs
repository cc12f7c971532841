//! NCCL (feature `nccl`): `cargo test -p tinycnn-cuda --release --features nccl --test nccl`.
//! Without libnccl.so.2 or a GPU the errors must say so; with both, a one-rank group sums
//! in place (the identity), which runs NCCL's init and all-reduce for real.
#![cfg(feature = "nccl")]

use tinycnn_cuda::nccl::{self, NcclComm};
use tinycnn_cuda::{CudaDevice, CudaError};

#[test]
fn without_libnccl_the_error_names_it() {
    if nccl::is_available() {
        eprintln!("skipped: libnccl.so.2 is installed here, so there is no missing-library error");
        return;
    }
    let e = nccl::unique_id().unwrap_err();
    assert!(matches!(e, CudaError::Nccl { .. }), "{e}");
    assert!(e.to_string().contains("libnccl.so.2"), "{e}");
}

#[test]
fn the_emulated_device_has_no_nccl() {
    let dev = CudaDevice::emulated().unwrap();
    let e = NcclComm::new(&dev, 0, 1, &[0; nccl::ID_BYTES])
        .err()
        .expect("NCCL on the emulated device");
    let msg = e.to_string();
    assert!(
        msg.contains("libnccl.so.2") || msg.contains("emulated"),
        "{msg}"
    );
}

#[test]
fn one_rank_all_reduce_on_a_gpu() {
    if !nccl::is_available() {
        eprintln!("skipped: libnccl.so.2 cannot be loaded (NCCL not installed)");
        return;
    }
    let dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no GPU ({e})");
            return;
        }
    };
    let id = nccl::unique_id().unwrap();
    let comm = NcclComm::new(&dev, 0, 1, &id).unwrap();
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    let mut buf = dev.upload(&data).unwrap();
    comm.all_reduce_sum(&mut buf).unwrap();
    assert_eq!(dev.download(&buf).unwrap(), data);
}
