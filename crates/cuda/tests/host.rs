//! Host-only tests: they need no GPU and run everywhere.

use tinycnn_cuda::launch::{self, ConvGeom, LaunchShape, PoolGeom, Tile};
use tinycnn_cuda::{ptx, CudaDevice, CudaError};
use tinycnn_kernels::{
    Conv2dParams, Conv2dShape, GemmShape, KernelError, Pool2dParams, Pool2dShape, Transpose,
};

#[test]
fn every_launched_kernel_is_an_entry_of_its_ptx_module() {
    for &(module, kernel) in ptx::KERNELS {
        let m = ptx::module(module).unwrap_or_else(|| panic!("module {module} is not embedded"));
        let entries = ptx::entries(m.ptx);
        assert!(
            entries.contains(&kernel),
            "kernel {kernel} missing from {module}.ptx (entries: {entries:?})"
        );
    }
}

#[test]
fn every_ptx_entry_is_in_the_kernel_table_once() {
    let mut seen = std::collections::HashSet::new();
    for m in &ptx::MODULES {
        assert!(
            m.ptx.contains(".target sm_80"),
            "{} is not compiled for compute_80",
            m.name
        );
        for e in ptx::entries(m.ptx) {
            assert!(
                ptx::KERNELS.contains(&(m.name, e)),
                "{}.ptx defines {e}, which the Rust side never launches",
                m.name
            );
            assert!(seen.insert(e), "{e} defined twice");
        }
    }
    assert_eq!(seen.len(), ptx::KERNELS.len());
}

#[test]
fn ptx_entry_parser_reads_names() {
    let text = "//\n.visible .entry sgemm_nn(\n\t.param .u32 sgemm_nn_param_0\n)\n.visible .entry b()\n// .entry in comment (\n";
    assert_eq!(ptx::entries(text), vec!["sgemm_nn", "b", "in"]);
}

/// The #[repr(C)] argument structs must list the same int fields, in the same order, as
/// the C structs of kernels-cuda/common.cuh.
#[test]
fn argument_structs_match_the_cuda_header() {
    let header = include_str!("../../../kernels-cuda/common.cuh");
    let fields = |name: &str| -> Vec<String> {
        let start = header
            .find(&format!("struct {name} {{"))
            .expect("struct in header");
        let body = &header[start..start + header[start..].find("};").unwrap()];
        body.lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix("int "))
            .flat_map(|l| {
                l.trim_end_matches(';')
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let conv = [
        "batch", "cin", "h", "w", "cout", "oh", "ow", "kh", "kw", "sh", "sw", "ph", "pw", "dh",
        "dw", "groups", "cin_g", "cout_g",
    ];
    assert_eq!(fields("ConvGeom"), conv);
    assert_eq!(std::mem::size_of::<ConvGeom>(), conv.len() * 4);
    let pool = [
        "planes",
        "h",
        "w",
        "oh",
        "ow",
        "kh",
        "kw",
        "sh",
        "sw",
        "ph",
        "pw",
        "count_include_pad",
    ];
    assert_eq!(fields("PoolGeom"), pool);
    assert_eq!(std::mem::size_of::<PoolGeom>(), pool.len() * 4);
}

fn block() -> (u32, u32, u32) {
    (256, 1, 1)
}

#[test]
fn sgemm_launch_covers_c_with_64x64_tiles() {
    // LeNet's first linear layer: [256, 400] x [120, 400]^T.
    let g = GemmShape::new(256, 120, 400).with_transpose(Transpose::No, Transpose::Yes);
    let (kernel, shape) = launch::sgemm(&g, 256 * 400, 120 * 400, 256 * 120).unwrap();
    assert_eq!(kernel, "sgemm_nt");
    assert_eq!(
        shape,
        LaunchShape {
            grid: (2, 4, 1),
            block: block()
        }
    );
    let g = GemmShape::new(65, 1, 3).with_transpose(Transpose::Yes, Transpose::Yes);
    assert_eq!(
        launch::sgemm(&g, 3 * 65, 3, 65).unwrap(),
        (
            "sgemm_tt",
            LaunchShape {
                grid: (1, 2, 1),
                block: block()
            }
        )
    );
}

#[test]
fn lenet_conv_launches() {
    // conv1: 1 -> 6, 5x5, padding 2 on 28x28, batch 256: M = 6 (small tile), N = 256 * 784.
    let s1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        256,
        28,
        28,
    );
    let (kernel, geom, shape) = launch::conv2d_forward(&s1).unwrap();
    assert_eq!(kernel, "conv2d_forward_t16");
    assert_eq!((geom.oh, geom.ow, geom.cin_g, geom.cout_g), (28, 28, 1, 6));
    assert_eq!(
        shape,
        LaunchShape {
            grid: (3136, 1, 1),
            block: block()
        }
    );
    // Input gradient of conv1: M = cin_g = 1, N = 256 * 784.
    let (kernel, _, shape) = launch::conv2d_backward_input(&s1).unwrap();
    assert_eq!(kernel, "conv2d_backward_input_t16");
    assert_eq!(shape.grid, (3136, 1, 1));
    // Weight gradient: K = 200704 split 64 ways in chunks of 3136 (a multiple of 16).
    let plan = launch::conv2d_backward_weight(&s1).unwrap();
    assert_eq!(
        (plan.kernel, plan.splits, plan.k_chunk),
        ("conv2d_backward_weight_t16", 64, 3136)
    );
    assert_eq!(plan.launch.grid, (1, 1, 64));
    assert_eq!(
        launch::conv2d_backward_weight_workspace_len(&s1).unwrap(),
        64 * 150
    );
    // A wide layer takes the 64-row tile; groups go to grid.z.
    let s = Conv2dShape::new(Conv2dParams::new(64, 128, (3, 3)).with_groups(2), 2, 10, 10);
    let (kernel, _, shape) = launch::conv2d_forward(&s).unwrap();
    assert_eq!(kernel, "conv2d_forward_t64");
    // M = cout_g = 64: one row tile; N = 2 * 8 * 8 = 128: two column tiles.
    assert_eq!(shape.grid, (2, 1, 2));
}

#[test]
fn small_weight_gradient_needs_no_split() {
    let s = Conv2dShape::new(Conv2dParams::new(3, 4, (3, 3)), 2, 8, 8);
    let plan = launch::conv2d_backward_weight(&s).unwrap();
    assert_eq!((plan.splits, plan.k_chunk), (1, 80)); // K = 2 * 36 = 72 rounded up to 80
    assert_eq!(launch::conv2d_backward_weight_workspace_len(&s).unwrap(), 0);
}

#[test]
fn tiles_and_grid_stride_launches() {
    assert_eq!(Tile::for_rows(16), Tile::T16);
    assert_eq!(Tile::for_rows(17), Tile::T64);
    assert_eq!(
        launch::elementwise("relu_forward", 1000).unwrap().grid,
        (4, 1, 1)
    );
    assert_eq!(
        launch::elementwise("relu_forward", 1).unwrap().grid,
        (1, 1, 1)
    );
    assert_eq!(
        launch::elementwise("relu_forward", 1 << 30).unwrap().grid,
        (8192, 1, 1)
    );
    assert_eq!(
        launch::rows("softmax_forward", 256, 10).unwrap().grid,
        (32, 1, 1)
    );
    assert_eq!(
        launch::rows("softmax_forward", 9, 10).unwrap().grid,
        (2, 1, 1)
    );
    let (a, b) = launch::reduce_sum(60_000).unwrap();
    assert_eq!((a.grid, b.grid), ((235, 1, 1), (1, 1, 1)));
    let (a, _) = launch::reduce_sum(10_000_000).unwrap();
    assert_eq!(a.grid, (256, 1, 1));
}

#[test]
fn shape_errors_name_the_kernel_and_the_problem() {
    // C too short for a 4x3 output.
    let g = GemmShape::new(4, 3, 2);
    match launch::sgemm(&g, 8, 6, 11) {
        Err(CudaError::Shape {
            kernel: "sgemm_nn",
            source:
                KernelError::BufferLength {
                    buffer: "c",
                    expected: 12,
                    actual: 11,
                },
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    let err = launch::sgemm(&g.with_ld(1, 3, 3), 8, 6, 12).unwrap_err();
    assert!(
        err.to_string().contains("sgemm_nn") && err.to_string().contains("leading dimension of A"),
        "{err}"
    );

    let s = Conv2dShape::new(Conv2dParams::new(3, 4, (3, 3)).with_groups(2), 1, 8, 8);
    match launch::conv2d_forward(&s) {
        Err(CudaError::Shape {
            source:
                KernelError::ChannelsNotDivisibleByGroups {
                    channels: 3,
                    groups: 2,
                    ..
                },
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, (9, 9)), 1, 8, 8);
    assert!(matches!(
        launch::conv2d_backward_input(&s),
        Err(CudaError::Shape {
            source: KernelError::KernelTooLarge { .. },
            ..
        })
    ));

    let p = Pool2dShape::new(Pool2dParams::new(2).with_padding((2, 0)), 1, 1, 8, 8);
    let err = launch::pool_geom("max_pool2d_forward", &p).unwrap_err();
    assert!(matches!(
        err,
        CudaError::Shape {
            kernel: "max_pool2d_forward",
            source: KernelError::PaddingTooLarge { .. },
            ..
        }
    ));
    let p = Pool2dShape::new(Pool2dParams::new(2), 2, 3, 8, 8);
    assert!(launch::pool_lens("avg_pool2d_forward", &p, 2 * 3 * 64, 2 * 3 * 16).is_ok());
    assert!(matches!(
        launch::pool_lens("avg_pool2d_forward", &p, 2 * 3 * 64, 2 * 3 * 15),
        Err(CudaError::Shape {
            source: KernelError::BufferLength {
                buffer: "y",
                expected: 96,
                actual: 90
            },
            ..
        })
    ));
}

#[test]
fn problems_past_32_bit_indexing_are_refused() {
    let s = Conv2dShape::new(Conv2dParams::new(8, 8, (3, 3)), 1 << 16, 64, 64);
    match launch::conv2d_forward(&s) {
        Err(CudaError::TooLarge {
            kernel: "conv2d_forward_t64",
            limit,
            ..
        }) => assert_eq!(limit, i32::MAX as usize),
        other => panic!("unexpected {other:?}"),
    }
    let g = GemmShape::new(1 << 22, 1, 1);
    assert!(matches!(
        launch::sgemm(&g, 1 << 22, 1, 1 << 22),
        Err(CudaError::TooLarge {
            what: "row tiles (grid.y)",
            ..
        })
    ));
}

#[test]
fn conv_geometry_carries_every_option() {
    let p = Conv2dParams::new(4, 6, (3, 2))
        .with_stride((2, 1))
        .with_padding((1, 0))
        .with_dilation((2, 3))
        .with_groups(2);
    let g = launch::conv_geom("conv2d_forward_t16", &Conv2dShape::new(p, 3, 11, 9)).unwrap();
    // out h = (11 + 2 - 2 * 2 - 1) / 2 + 1 = 5; out w = (9 - 3 * 1 - 1) / 1 + 1 = 6.
    assert_eq!(
        g,
        ConvGeom {
            batch: 3,
            cin: 4,
            h: 11,
            w: 9,
            cout: 6,
            oh: 5,
            ow: 6,
            kh: 3,
            kw: 2,
            sh: 2,
            sw: 1,
            ph: 1,
            pw: 0,
            dh: 2,
            dw: 3,
            groups: 2,
            cin_g: 2,
            cout_g: 3,
        }
    );
}

#[test]
fn device_open_fails_cleanly_without_a_gpu() {
    match CudaDevice::new(0) {
        Ok(dev) => eprintln!("a GPU is present: {:?}", dev.name()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("no CUDA driver/GPU"), "{msg}");
            assert!(matches!(
                e,
                CudaError::NoDriver | CudaError::NoDevice { .. }
            ));
        }
    }
}

/// Sizes in bytes of the parameters of PTX entry `kernel`, from its `.param` declarations.
fn ptx_param_sizes(ptx: &str, kernel: &str) -> Vec<usize> {
    let start = ptx
        .find(&format!(".entry {kernel}("))
        .unwrap_or_else(|| panic!("no entry {kernel}"));
    let decl = &ptx[start..];
    let decl = &decl[..decl.find(')').expect("parameter list ends")];
    decl.lines()
        .filter_map(|line| {
            let line = line.trim().trim_end_matches(',');
            let rest = line.strip_prefix(".param")?;
            if let Some(open) = rest.find('[') {
                // `.align A .b8 name[N]`: a struct passed by value.
                return Some(rest[open + 1..rest.len() - 1].parse::<usize>().unwrap());
            }
            let ty = rest.split_whitespace().next()?;
            Some(ty[2..].parse::<usize>().unwrap() / 8)
        })
        .collect()
}

#[test]
fn kernel_table_argument_sizes_match_the_ptx_signatures() {
    // The launch builder passes one pointer per argument and the driver copies the
    // parameter's size from it: a table entry that drifts from its .cu signature would read
    // past a value or misplace every later argument. The emulator checks the same against
    // the C++ signature at each launch.
    assert_eq!(tinycnn_cuda::kernels::ARG_SIZES.len(), ptx::KERNELS.len());
    for &(module, kernel) in ptx::KERNELS {
        let ptx = ptx::module(module).unwrap().ptx;
        let (_, sizes) = tinycnn_cuda::kernels::ARG_SIZES
            .iter()
            .find(|(k, _)| *k == kernel)
            .unwrap();
        assert_eq!(
            ptx_param_sizes(ptx, kernel),
            sizes.to_vec(),
            "argument sizes of {kernel}: PTX vs kernel table"
        );
    }
}

#[test]
fn launch_and_fault_errors_name_kernel_shapes_and_launch() {
    let e = CudaError::Launch {
        kernel: "relu_forward",
        shapes: "x [10], y [10]".into(),
        grid: (1, 1, 1),
        block: (256, 1, 1),
        source: tinycnn_cuda::BackendError::Emulator("block is not 1-D".into()),
    };
    let msg = e.to_string();
    for part in [
        "relu_forward",
        "x [10], y [10]",
        "(1, 1, 1)",
        "(256, 1, 1)",
        "not 1-D",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    let e = CudaError::Fault {
        kernel: "conv2d_forward_t16",
        shapes: "w [150]".into(),
        source: tinycnn_cuda::BackendError::Emulator("boom".into()),
    };
    assert!(
        e.to_string().contains("conv2d_forward_t16 ")
            || e.to_string().contains("`conv2d_forward_t16`")
    );
    assert!(e.to_string().contains("w [150]"));
}
