//! The no_std LeNets against independent reference computations: the f32 model against the
//! kernel crate's naive loops (layer by layer, as PyTorch's `nn.Sequential` runs it), and
//! the int8 model against the int8 twins, exactly.

use tinycnn_kernels::int8::{self, reference as qref, ActRange, QLinearShape, Requant};
use tinycnn_kernels::reference as fref;
use tinycnn_kernels::{Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, Transpose};
use tinycnn_mcu::host::{self, aligned_copy, random_f32, Calibration};
use tinycnn_mcu::lenet::{argmax, I8Kernels, I8_WORKSPACE, IMAGE_PIXELS};
use tinycnn_mcu::{F32Scratch, I8Scratch, LenetF32, LenetI8, Safetensors, Variant};

fn images() -> Vec<[u8; IMAGE_PIXELS]> {
    // The embedded test images, plus two synthetic extremes.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/test-images.idx3"
    ))
    .unwrap();
    let mut v = tinycnn_mcu::idx::images(&bytes).unwrap().to_vec();
    v.push([0; IMAGE_PIXELS]);
    v.push([255; IMAGE_PIXELS]);
    v
}

fn act(variant: Variant, x: &mut Vec<f32>) {
    let src = x.clone();
    match variant {
        Variant::Relu => fref::relu(&src, x).unwrap(),
        Variant::Sigmoid => fref::sigmoid(&src, x).unwrap(),
    }
}

fn pool(variant: Variant, c: usize, hw: usize, x: &[f32]) -> Vec<f32> {
    let s = Pool2dShape::new(Pool2dParams::new(2), 1, c, hw, hw);
    let mut y = vec![0.0; s.output_len().unwrap()];
    match variant {
        Variant::Relu => {
            let mut am = vec![0; y.len()];
            fref::max_pool2d(&s, x, &mut y, &mut am).unwrap()
        }
        Variant::Sigmoid => fref::avg_pool2d(&s, x, &mut y).unwrap(),
    }
    y
}

fn linear(x: &[f32], (w, b): (&[f32], &[f32])) -> Vec<f32> {
    let (o, i) = (b.len(), x.len());
    let mut y = b.to_vec();
    let g = GemmShape::new(1, o, i).with_transpose(Transpose::No, Transpose::Yes);
    fref::sgemm(&g, 1.0, x, w, 1.0, &mut y).unwrap();
    y
}

/// LeNet with the naive reference loops, step by step.
fn reference_f32(m: &LenetF32<'_>, img: &[u8; IMAGE_PIXELS]) -> Vec<f32> {
    let v = m.variant;
    let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
    let s1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        1,
        28,
        28,
    );
    let mut y = vec![0.0; 6 * 28 * 28];
    fref::conv2d(&s1, &x, m.conv1.0, Some(m.conv1.1), &mut y).unwrap();
    act(v, &mut y);
    let p = pool(v, 6, 28, &y);
    let s2 = Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 1, 14, 14);
    let mut y = vec![0.0; 16 * 10 * 10];
    fref::conv2d(&s2, &p, m.conv2.0, Some(m.conv2.1), &mut y).unwrap();
    act(v, &mut y);
    let p = pool(v, 16, 10, &y);
    let mut h = linear(&p, m.fc1);
    act(v, &mut h);
    let mut h = linear(&h, m.fc2);
    act(v, &mut h);
    linear(&h, m.fc3)
}

#[test]
fn f32_matches_reference_loops() {
    for (variant, seed) in [(Variant::Relu, 1), (Variant::Sigmoid, 2)] {
        let bytes = random_f32(variant, seed);
        let al = aligned_copy(&bytes);
        let st = Safetensors::parse(al.bytes()).unwrap();
        let m = LenetF32::from_safetensors(&st, variant).unwrap();
        let mut s = Box::new(F32Scratch::new());
        for img in images() {
            let got = m.logits(&img, &mut s).unwrap();
            let want = reference_f32(&m, &img);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{variant:?}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

/// The int8 LeNet recomputed from the file's raw tensors with the naive twins.
fn reference_i8(st: &Safetensors<'_>, variant: Variant, img: &[u8; IMAGE_PIXELS]) -> [i32; 10] {
    let range = if variant == Variant::Relu {
        ActRange::RELU
    } else {
        ActRange::FULL
    };
    let in_s = st.scale("input.scale").unwrap();
    let mut x: Vec<i8> = img
        .iter()
        .map(|&p| int8::quantize_one(p as f32 / 255.0, in_s))
        .collect();
    let mut s_in = in_s;
    let layers: [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ); 4] = [
        (
            "0.weight",
            "0.weight_scale",
            "0.bias",
            "0.out_scale",
            "0.act_scale",
        ),
        (
            "3.weight",
            "3.weight_scale",
            "3.bias",
            "3.out_scale",
            "3.act_scale",
        ),
        (
            "7.weight",
            "7.weight_scale",
            "7.bias",
            "7.out_scale",
            "7.act_scale",
        ),
        (
            "9.weight",
            "9.weight_scale",
            "9.bias",
            "9.out_scale",
            "9.act_scale",
        ),
    ];
    let shapes: [&[usize]; 4] = [&[6, 1, 5, 5], &[16, 6, 5, 5], &[120, 400], &[84, 120]];
    for (i, ((wn, wsn, bn, on, an), shape)) in layers.into_iter().zip(shapes).enumerate() {
        let w = st.i8(wn, shape).unwrap();
        let ws = st.f32(wsn, &shape[..1]).unwrap();
        let b = st.i32(bn, &shape[..1]).unwrap();
        let (out_s, act_s) = (st.scale(on).unwrap(), st.scale(an).unwrap());
        let rq: Vec<Requant> = ws
            .iter()
            .map(|&w| Requant::from_scale(w * s_in / out_s).unwrap())
            .collect();
        let mut y = match i {
            0 | 1 => {
                let s = if i == 0 {
                    Conv2dShape::new(
                        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
                        1,
                        28,
                        28,
                    )
                } else {
                    Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 1, 14, 14)
                };
                let mut y = vec![0i8; s.output_len().unwrap()];
                qref::qconv2d(&s, &x, w, Some(b), &rq, range, &mut y).unwrap();
                y
            }
            _ => {
                let s = QLinearShape::new(1, shape[1], shape[0]);
                let mut y = vec![0i8; shape[0]];
                qref::qlinear(&s, &x, w, Some(b), &rq, range, &mut y).unwrap();
                y
            }
        };
        if variant == Variant::Sigmoid {
            let t = int8::sigmoid_lut(out_s, act_s).unwrap();
            let src = y.clone();
            int8::qlut_forward(&t, &src, &mut y).unwrap();
        }
        x = if i < 2 {
            let (c, hw) = if i == 0 { (6, 28) } else { (16, 10) };
            let s = Pool2dShape::new(Pool2dParams::new(2), 1, c, hw, hw);
            let mut p = vec![0i8; s.output_len().unwrap()];
            qref::qpool2d(&s, variant == Variant::Sigmoid, &y, &mut p).unwrap();
            p
        } else {
            y
        };
        s_in = act_s;
    }
    let mut acc = [0i32; 10];
    let w = st.i8("11.weight", &[10, 84]).unwrap();
    let b = st.i32("11.bias", &[10]).unwrap();
    qref::qlinear_i32(&QLinearShape::new(1, 84, 10), &x, w, Some(b), &mut acc).unwrap();
    acc
}

#[test]
fn int8_matches_naive_twins_exactly_and_tracks_f32() {
    let imgs = images();
    for (variant, seed) in [(Variant::Relu, 5), (Variant::Sigmoid, 6)] {
        let fb = random_f32(variant, seed);
        let fal = aligned_copy(&fb);
        let fst = Safetensors::parse(fal.bytes()).unwrap();
        let f = LenetF32::from_safetensors(&fst, variant).unwrap();
        let cal: Calibration = host::calibrate(&f, &imgs).unwrap();
        let qb = host::quantize(&f, &cal).unwrap();
        let qal = aligned_copy(&qb);
        let qst = Safetensors::parse(qal.bytes()).unwrap();
        let q = LenetI8::from_safetensors(&qst, variant).unwrap();
        let (mut fs, mut qs) = (Box::new(F32Scratch::new()), Box::new(I8Scratch::new()));
        for img in &imgs {
            let acc = q.logits_i32(img, &mut qs).unwrap();
            assert_eq!(acc, reference_i8(&qst, variant, img), "{variant:?}");
            // Both kernel sets (the SMLAD ones with emulated instructions on the host).
            for k in [I8Kernels::Plain, I8Kernels::Dsp] {
                assert_eq!(
                    q.logits_i32_with(img, &mut qs, k).unwrap(),
                    acc,
                    "{variant:?} {k:?}"
                );
            }
            // Dequantized logits stay near the f32 ones (random weights: small logits).
            let lf = f.logits(img, &mut fs).unwrap();
            let lq = q.logits(img, &mut qs).unwrap();
            let span = lf.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
            for (a, b) in lq.iter().zip(&lf) {
                assert!(
                    (a - b).abs() <= 0.1 * span + 0.02,
                    "{variant:?}: {lq:?} vs {lf:?}"
                );
            }
            assert_eq!(argmax(&lq), q.predict(img, &mut qs).unwrap());
        }
        // Wrong variant, missing format tag, and a zero scale are refused.
        assert!(LenetI8::from_safetensors(
            &qst,
            if variant == Variant::Relu {
                Variant::Sigmoid
            } else {
                Variant::Relu
            }
        )
        .is_err());
        assert!(LenetI8::from_safetensors(&fst, variant).is_err());
    }
}

#[test]
fn int8_rejects_bad_scales() {
    use tinycnn_mcu::host::{safetensors_bytes, TensorOut};
    let fb = random_f32(Variant::Relu, 8);
    let fal = aligned_copy(&fb);
    let f = LenetF32::from_safetensors(&Safetensors::parse(fal.bytes()).unwrap(), Variant::Relu)
        .unwrap();
    let cal = host::calibrate(&f, &images()).unwrap();
    let qb = host::quantize(&f, &cal).unwrap();
    let qal = aligned_copy(&qb);
    let st = Safetensors::parse(qal.bytes()).unwrap();
    // Rebuild the file with one scale replaced.
    let rebuild = |name: &str, value: f32| {
        let mut ts = Vec::new();
        for t in st.tensors() {
            let shape: Vec<usize> = t.shape.iter().copied().collect();
            let mut out = TensorOut {
                name: t.name.to_string(),
                dtype: t.dtype,
                shape,
                data: t.data.to_vec(),
            };
            if t.name == name {
                out = TensorOut::f32(name, &[1], &[value]);
            }
            ts.push(out);
        }
        safetensors_bytes(
            &ts,
            &[("format", "tinycnn-lenet-int8"), ("variant", "lenet-relu")],
        )
    };
    for (name, v) in [
        ("input.scale", 0.0),
        ("3.out_scale", f32::NAN),
        ("7.act_scale", 0.5),
        ("0.out_scale", 1e-30),
    ] {
        let b = rebuild(name, v);
        let al = aligned_copy(&b);
        let st2 = Safetensors::parse(al.bytes()).unwrap();
        assert!(
            LenetI8::from_safetensors(&st2, Variant::Relu).is_err(),
            "{name} = {v} accepted"
        );
    }
}

/// The firmware's static conv workspace fits both LeNet convolutions of the SMLAD kernels,
/// exactly (no slack in a 12 KiB RAM budget).
#[test]
fn i8_workspace_is_the_larger_conv_need() {
    let conv1 = Conv2dShape::new(
        Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
        1,
        28,
        28,
    );
    let conv2 = Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 1, 14, 14);
    let need = int8::dsp::qconv2d_workspace_len(&conv1)
        .unwrap()
        .max(int8::dsp::qconv2d_workspace_len(&conv2).unwrap());
    assert_eq!(I8_WORKSPACE, need);
}
