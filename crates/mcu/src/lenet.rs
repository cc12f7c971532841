//! d2l's LeNet on 28x28 Fashion-MNIST images, f32 and int8, with static buffers only.
//!
//! ```text
//! key  layer                                   output
//!  0   Conv2d(1, 6, 5, padding=2) + act        6 x 28 x 28
//!  2   pool 2x2 / 2                            6 x 14 x 14
//!  3   Conv2d(6, 16, 5) + act                  16 x 10 x 10
//!  5   pool 2x2 / 2, flatten                   400
//!  7   Linear(400, 120) + act                  120
//!  9   Linear(120, 84) + act                   84
//! 11   Linear(84, 10)                          10 logits
//! ```
//! `lenet` (the book's original) uses sigmoid and average pooling, `lenet-relu` ReLU and max
//! pooling. The state-dict keys are PyTorch's `nn.Sequential` indices, weights in PyTorch
//! layout (conv `[out, in, kh, kw]`, linear `[out, in]`). Input pixels are `u8 / 255`
//! (torchvision's `ToTensor`, no normalisation).
//!
//! Both models borrow their weights from the safetensors blob (in flash on the device) and
//! run in a caller-provided scratch struct whose buffers are fixed-size arrays, so the
//! firmware can put it in `.bss` and the host in a `Box` or on the stack.

use crate::error::{Error, Result};
use crate::safetensors::Safetensors;
use tinycnn_kernels::int8::{self, ActRange, QLinearShape, Requant};
use tinycnn_kernels::{
    avg_pool2d_forward, conv2d_forward_with, conv2d_workspace_len_for, max_pool2d_forward,
    relu_forward, sigmoid_forward, Conv2dParams, Conv2dShape, ConvAlgo, Pool2dParams, Pool2dShape,
};

pub use crate::idx::IMAGE_PIXELS;
/// Output classes.
pub const CLASSES: usize = 10;
/// Fashion-MNIST class names, by label.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

const C1: usize = 6;
const C2: usize = 16;
const CONV1_OUT: usize = C1 * 28 * 28;
const POOL1_OUT: usize = C1 * 14 * 14;
const CONV2_OUT: usize = C2 * 10 * 10;
const FLAT: usize = C2 * 5 * 5;
const FC1: usize = 120;
const FC2: usize = 84;

const CONV1: Conv2dShape = Conv2dShape::new(
    Conv2dParams::new(1, C1, (5, 5)).with_padding((2, 2)),
    1,
    28,
    28,
);
const CONV2: Conv2dShape = Conv2dShape::new(Conv2dParams::new(C1, C2, (5, 5)), 1, 14, 14);
const POOL1: Pool2dShape = Pool2dShape::new(Pool2dParams::new(2), 1, C1, 28, 28);
const POOL2: Pool2dShape = Pool2dShape::new(Pool2dParams::new(2), 1, C2, 10, 10);
/// A linear layer as a 1x1 convolution over a 1x1 image: the direct algorithm needs no
/// workspace for it on any target.
const fn linear_as_conv(i: usize, o: usize) -> Conv2dShape {
    Conv2dShape::new(Conv2dParams::new(i, o, (1, 1)), 1, 1, 1)
}
const FC1_SHAPE: Conv2dShape = linear_as_conv(FLAT, FC1);
const FC2_SHAPE: Conv2dShape = linear_as_conv(FC1, FC2);
const FC3_SHAPE: Conv2dShape = linear_as_conv(FC2, CLASSES);

/// Conv workspace (f32 elements): the zero-padded 32x32 input of the direct conv1.
pub const F32_WORKSPACE: usize = 32 * 32;

/// The state-dict keys of both variants.
pub const F32_KEYS: [&str; 10] = [
    "0.weight",
    "0.bias",
    "3.weight",
    "3.bias",
    "7.weight",
    "7.bias",
    "9.weight",
    "9.bias",
    "11.weight",
    "11.bias",
];

/// Which of d2l's two LeNets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `lenet`: sigmoid activations, average pooling (the book's original).
    Sigmoid,
    /// `lenet-relu`: ReLU activations, max pooling.
    Relu,
}

impl Variant {
    /// The model name used by the CLI and in file metadata.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Sigmoid => "lenet",
            Variant::Relu => "lenet-relu",
        }
    }

    /// Parses `lenet` / `lenet-relu`.
    pub fn from_name(s: &str) -> Option<Variant> {
        match s {
            "lenet" | "lenet-sigmoid" => Some(Variant::Sigmoid),
            "lenet-relu" => Some(Variant::Relu),
            _ => None,
        }
    }

    /// Errors when the file's metadata (`model` or `variant`) names another model.
    /// Files without such metadata are accepted: the caller chose the variant.
    pub fn check_metadata(self, st: &Safetensors<'_>) -> Result<()> {
        for key in ["model", "variant"] {
            if let Some(v) = st.metadata(key) {
                if Variant::from_name(v) != Some(self) {
                    return Err(Error::Variant {
                        expected: self.name(),
                        found_other: true,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax<T: PartialOrd + Copy>(logits: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best
}

/// The f32 LeNet, its weights borrowed from a safetensors blob.
#[derive(Debug, Clone, Copy)]
pub struct LenetF32<'a> {
    pub variant: Variant,
    pub conv1: (&'a [f32], &'a [f32]),
    pub conv2: (&'a [f32], &'a [f32]),
    pub fc1: (&'a [f32], &'a [f32]),
    pub fc2: (&'a [f32], &'a [f32]),
    pub fc3: (&'a [f32], &'a [f32]),
}

/// Buffers of one f32 inference (about 32 KiB).
pub struct F32Scratch {
    /// conv outputs and odd layers: 6 x 28 x 28.
    a: [f32; CONV1_OUT],
    /// input image, pool outputs and even layers: 6 x 14 x 14.
    b: [f32; POOL1_OUT],
    /// conv1's padded input, and staging for in-place activations.
    ws: [f32; F32_WORKSPACE],
    /// max pooling's argmax output (not needed for inference, but the kernel writes it).
    argmax: [u32; POOL1_OUT],
}

impl F32Scratch {
    /// All zeros (a `const fn`, so a `static` of it lands in `.bss`).
    pub const fn new() -> Self {
        F32Scratch {
            a: [0.0; CONV1_OUT],
            b: [0.0; POOL1_OUT],
            ws: [0.0; F32_WORKSPACE],
            argmax: [0; POOL1_OUT],
        }
    }
}

impl Default for F32Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> LenetF32<'a> {
    /// Takes the weights of `variant` from `st`, checking names, dtypes and shapes.
    pub fn from_safetensors(st: &Safetensors<'a>, variant: Variant) -> Result<Self> {
        variant.check_metadata(st)?;
        st.only(&F32_KEYS)?;
        Ok(LenetF32 {
            variant,
            conv1: (
                st.f32("0.weight", &[C1, 1, 5, 5])?,
                st.f32("0.bias", &[C1])?,
            ),
            conv2: (
                st.f32("3.weight", &[C2, C1, 5, 5])?,
                st.f32("3.bias", &[C2])?,
            ),
            fc1: (st.f32("7.weight", &[FC1, FLAT])?, st.f32("7.bias", &[FC1])?),
            fc2: (st.f32("9.weight", &[FC2, FC1])?, st.f32("9.bias", &[FC2])?),
            fc3: (
                st.f32("11.weight", &[CLASSES, FC2])?,
                st.f32("11.bias", &[CLASSES])?,
            ),
        })
    }

    /// The logits of one image of `u8` pixels.
    pub fn logits(&self, image: &[u8; IMAGE_PIXELS], s: &mut F32Scratch) -> Result<[f32; CLASSES]> {
        self.forward(image, s, |_, _, _| {})
    }

    /// [`LenetF32::logits`], calling `observe(layer, activated, values)` with every hidden
    /// layer's output before (`activated == false`) and after its activation; `layer` is
    /// 0..4 for conv1, conv2, fc1, fc2. The quantizer calibrates its scales with it.
    pub fn forward<F: FnMut(usize, bool, &[f32])>(
        &self,
        image: &[u8; IMAGE_PIXELS],
        s: &mut F32Scratch,
        mut observe: F,
    ) -> Result<[f32; CLASSES]> {
        for (o, &p) in s.b[..IMAGE_PIXELS].iter_mut().zip(image) {
            *o = p as f32 / 255.0;
        }
        let direct = ConvAlgo::Direct;
        let need = conv2d_workspace_len_for(direct, &CONV1);
        if need > s.ws.len() {
            return Err(Error::Kernel(tinycnn_kernels::KernelError::BufferLength {
                buffer: "workspace",
                expected: need,
                actual: s.ws.len(),
            }));
        }
        let (w, b) = self.conv1;
        conv2d_forward_with(
            direct,
            &CONV1,
            &s.b[..IMAGE_PIXELS],
            w,
            Some(b),
            &mut s.a,
            &mut s.ws,
        )?;
        self.activate(0, &mut s.a, &mut s.ws, &mut observe)?;
        self.pool(&POOL1, &s.a, &mut s.b, &mut s.argmax)?;
        let (w, b) = self.conv2;
        conv2d_forward_with(
            direct,
            &CONV2,
            &s.b,
            w,
            Some(b),
            &mut s.a[..CONV2_OUT],
            &mut [],
        )?;
        self.activate(1, &mut s.a[..CONV2_OUT], &mut s.ws, &mut observe)?;
        self.pool(
            &POOL2,
            &s.a[..CONV2_OUT],
            &mut s.b[..FLAT],
            &mut s.argmax[..FLAT],
        )?;
        let (w, b) = self.fc1;
        conv2d_forward_with(
            direct,
            &FC1_SHAPE,
            &s.b[..FLAT],
            w,
            Some(b),
            &mut s.a[..FC1],
            &mut [],
        )?;
        self.activate(2, &mut s.a[..FC1], &mut s.ws, &mut observe)?;
        let (w, b) = self.fc2;
        conv2d_forward_with(
            direct,
            &FC2_SHAPE,
            &s.a[..FC1],
            w,
            Some(b),
            &mut s.b[..FC2],
            &mut [],
        )?;
        self.activate(3, &mut s.b[..FC2], &mut s.ws, &mut observe)?;
        let (w, b) = self.fc3;
        let mut logits = [0.0f32; CLASSES];
        conv2d_forward_with(
            direct,
            &FC3_SHAPE,
            &s.b[..FC2],
            w,
            Some(b),
            &mut logits,
            &mut [],
        )?;
        Ok(logits)
    }

    /// The predicted class of one image.
    pub fn predict(&self, image: &[u8; IMAGE_PIXELS], s: &mut F32Scratch) -> Result<usize> {
        Ok(argmax(&self.logits(image, s)?))
    }

    /// The activation in place, staged through `tmp` (the kernels take separate in and out).
    fn activate<F: FnMut(usize, bool, &[f32])>(
        &self,
        layer: usize,
        x: &mut [f32],
        tmp: &mut [f32],
        observe: &mut F,
    ) -> Result<()> {
        observe(layer, false, x);
        for chunk in x.chunks_mut(tmp.len()) {
            let t = &mut tmp[..chunk.len()];
            t.copy_from_slice(chunk);
            match self.variant {
                Variant::Relu => relu_forward(t, chunk)?,
                Variant::Sigmoid => sigmoid_forward(t, chunk)?,
            }
        }
        observe(layer, true, x);
        Ok(())
    }

    fn pool(&self, s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) -> Result<()> {
        match self.variant {
            Variant::Relu => max_pool2d_forward(s, x, y, argmax)?,
            Variant::Sigmoid => avg_pool2d_forward(s, x, y)?,
        }
        Ok(())
    }
}

/// Tensor names of an int8 file (see [`LenetI8`]).
pub const I8_KEYS: [&str; 24] = [
    "input.scale",
    "0.weight",
    "0.weight_scale",
    "0.bias",
    "0.out_scale",
    "0.act_scale",
    "3.weight",
    "3.weight_scale",
    "3.bias",
    "3.out_scale",
    "3.act_scale",
    "7.weight",
    "7.weight_scale",
    "7.bias",
    "7.out_scale",
    "7.act_scale",
    "9.weight",
    "9.weight_scale",
    "9.bias",
    "9.out_scale",
    "9.act_scale",
    "11.weight",
    "11.weight_scale",
    "11.bias",
];

/// Metadata `format` value of int8 files.
pub const I8_FORMAT: &str = "tinycnn-lenet-int8";

/// One quantized layer: int8 weights, i32 bias, and what its output needs.
#[derive(Debug, Clone, Copy)]
pub struct QLayer<'a, const N: usize> {
    pub weight: &'a [i8],
    pub weight_scale: &'a [f32],
    pub bias: &'a [i32],
    /// `weight_scale[c] * in_scale / out_scale` per output channel, in fixed point.
    pub requant: [Requant; N],
}

/// The int8 LeNet: symmetric int8 weights per output channel, int8 activations per tensor,
/// i32 biases and accumulators.
///
/// File layout (all names in [`I8_KEYS`], metadata `format` = [`I8_FORMAT`] and `variant`):
/// `input.scale` is the scale of the quantized input; each hidden layer `L` has `L.weight`
/// (I8, PyTorch layout), `L.weight_scale` (F32 `[out]`), `L.bias` (I32 `[out]`, at scale
/// `weight_scale * in_scale`), `L.out_scale` (F32 `[1]`, its requantized output) and
/// `L.act_scale` (F32 `[1]`, after the activation: equal to `out_scale` for ReLU, which is
/// the clamp at 0; for sigmoid a 256-entry table maps one to the other). Pooling keeps the
/// scale, so a layer's input scale is the previous layer's `act_scale`. The last layer `11`
/// has no output scale: its i32 accumulators are the logits, at `weight_scale[o] * in_scale`.
#[derive(Debug, Clone)]
pub struct LenetI8<'a> {
    pub variant: Variant,
    pub input_scale: f32,
    /// `u8` pixel -> quantized `pixel / 255`.
    pub input_table: [i8; 256],
    pub conv1: QLayer<'a, C1>,
    pub conv2: QLayer<'a, C2>,
    pub fc1: QLayer<'a, FC1>,
    pub fc2: QLayer<'a, FC2>,
    pub fc3: (&'a [i8], &'a [f32], &'a [i32]),
    /// Scale of the last layer's input (for dequantizing the logits).
    pub fc3_in_scale: f32,
    /// Sigmoid tables after conv1, conv2, fc1, fc2 (unused for ReLU).
    pub tables: [[i8; 256]; 4],
}

/// int8 conv workspace of the DSP kernels, in words: the larger of conv1's (35) and conv2's
/// (190) [`int8::dsp::qconv2d_workspace_len`] (checked by the host tests).
pub const I8_WORKSPACE: usize = 190;

/// Which int8 kernels run the convolutions and linear layers. Both give the same logits,
/// bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Kernels {
    /// `tinycnn_kernels::int8`: plain Rust, the fast choice wherever `SMLAD` is missing.
    Plain,
    /// `tinycnn_kernels::int8::dsp`: `SMLAD`/`SXTB16` on a Cortex-M4 (emulated elsewhere).
    Dsp,
}

impl I8Kernels {
    /// `Dsp` where the instructions are native (thumbv7em), else `Plain`.
    pub const NATIVE_BEST: I8Kernels = if int8::dsp::NATIVE {
        I8Kernels::Dsp
    } else {
        I8Kernels::Plain
    };

    /// `plain` or `dsp`.
    pub fn name(self) -> &'static str {
        match self {
            I8Kernels::Plain => "plain",
            I8Kernels::Dsp => "dsp",
        }
    }
}

/// Buffers of one int8 inference (about 6 KiB).
pub struct I8Scratch {
    a: [i8; CONV1_OUT],
    b: [i8; POOL1_OUT],
    ws: [u32; I8_WORKSPACE],
}

impl I8Scratch {
    pub const fn new() -> Self {
        I8Scratch {
            a: [0; CONV1_OUT],
            b: [0; POOL1_OUT],
            ws: [0; I8_WORKSPACE],
        }
    }

    /// The three buffers as plain slices (`CONV1_OUT` and `POOL1_OUT` bytes, [`I8_WORKSPACE`]
    /// words), e.g. for a self-test before the first inference. Their contents do not carry
    /// over into an inference.
    pub fn buffers(&mut self) -> (&mut [i8], &mut [i8], &mut [u32]) {
        (&mut self.a, &mut self.b, &mut self.ws)
    }
}

impl Default for I8Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// `requant[c]` for every output channel (one non-generic function: flash is scarce).
fn fill_requants(
    name: &'static str,
    ws: &[f32],
    in_s: f32,
    out_s: f32,
    out: &mut [Requant],
) -> Result<()> {
    for (o, &w) in out.iter_mut().zip(ws) {
        *o = Requant::from_scale(requant_factor(w, in_s, out_s)).map_err(|_| Error::Value {
            name,
            what: "weight_scale * in_scale / out_scale is outside [2^-32, 2^30)",
        })?;
    }
    Ok(())
}

/// The real factor from a layer's accumulator to its output scale, computed the same way
/// (in f32) by the quantizer and by every reader.
pub fn requant_factor(weight_scale: f32, in_scale: f32, out_scale: f32) -> f32 {
    weight_scale * in_scale / out_scale
}

fn check_scales(name: &'static str, s: &[f32]) -> Result<()> {
    if s.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(())
    } else {
        Err(Error::Value {
            name,
            what: "scales must be finite and positive",
        })
    }
}

impl<'a> LenetI8<'a> {
    /// Takes the int8 model of `variant` from `st`, checking every name, dtype, shape and
    /// scale, and precomputes the requantization factors and tables.
    pub fn from_safetensors(st: &Safetensors<'a>, variant: Variant) -> Result<Self> {
        if st.metadata("format") != Some(I8_FORMAT) {
            return Err(Error::Format {
                what: "metadata `format` is not tinycnn-lenet-int8",
                at: 0,
            });
        }
        variant.check_metadata(st)?;
        st.only(&I8_KEYS)?;
        let input_scale = st.scale("input.scale")?;
        macro_rules! layer {
            ($l:literal, $in_s:expr, $out:expr, $shape:expr) => {{
                let weight = st.i8(concat!($l, ".weight"), &$shape)?;
                let weight_scale = st.f32(concat!($l, ".weight_scale"), &[$out])?;
                check_scales(concat!($l, ".weight_scale"), weight_scale)?;
                let bias = st.i32(concat!($l, ".bias"), &[$out])?;
                let out_s = st.scale(concat!($l, ".out_scale"))?;
                let act_s = st.scale(concat!($l, ".act_scale"))?;
                if variant == Variant::Relu && act_s != out_s {
                    return Err(Error::Value {
                        name: concat!($l, ".act_scale"),
                        what: "must equal out_scale for ReLU",
                    });
                }
                let mut requant = [Requant {
                    multiplier: 1 << 30,
                    shift: 31,
                }; $out];
                fill_requants(
                    concat!($l, ".weight_scale"),
                    weight_scale,
                    $in_s,
                    out_s,
                    &mut requant,
                )?;
                let table = match variant {
                    Variant::Sigmoid => int8::sigmoid_lut(out_s, act_s)?,
                    Variant::Relu => [0; 256],
                };
                (
                    QLayer {
                        weight,
                        weight_scale,
                        bias,
                        requant,
                    },
                    act_s,
                    table,
                )
            }};
        }
        let (conv1, s1, t1) = layer!("0", input_scale, C1, [C1, 1, 5, 5]);
        let (conv2, s2, t2) = layer!("3", s1, C2, [C2, C1, 5, 5]);
        let (fc1, s3, t3) = layer!("7", s2, FC1, [FC1, FLAT]);
        let (fc2, s4, t4) = layer!("9", s3, FC2, [FC2, FC1]);
        let fc3_ws = st.f32("11.weight_scale", &[CLASSES])?;
        check_scales("11.weight_scale", fc3_ws)?;
        let fc3 = (
            st.i8("11.weight", &[CLASSES, FC2])?,
            fc3_ws,
            st.i32("11.bias", &[CLASSES])?,
        );
        let mut input_table = [0i8; 256];
        for (p, q) in input_table.iter_mut().enumerate() {
            *q = int8::quantize_one(p as f32 / 255.0, input_scale);
        }
        Ok(LenetI8 {
            variant,
            input_scale,
            input_table,
            conv1,
            conv2,
            fc1,
            fc2,
            fc3,
            fc3_in_scale: s4,
            tables: [t1, t2, t3, t4],
        })
    }

    fn range(&self) -> ActRange {
        match self.variant {
            Variant::Relu => ActRange::RELU,
            Variant::Sigmoid => ActRange::FULL,
        }
    }

    fn activate(&self, layer: usize, x: &mut [i8]) {
        if self.variant == Variant::Sigmoid {
            int8::qlut_inplace(&self.tables[layer], x);
        }
    }

    fn pool(&self, s: &Pool2dShape, x: &[i8], y: &mut [i8]) -> Result<()> {
        match self.variant {
            Variant::Relu => int8::qmax_pool2d_forward(s, x, y)?,
            Variant::Sigmoid => int8::qavg_pool2d_forward(s, x, y)?,
        }
        Ok(())
    }

    /// The raw i32 logits (accumulators of the last layer) of one image. Exact integer
    /// arithmetic: the same on every target. Runs [`I8Kernels::NATIVE_BEST`].
    pub fn logits_i32(
        &self,
        image: &[u8; IMAGE_PIXELS],
        s: &mut I8Scratch,
    ) -> Result<[i32; CLASSES]> {
        self.logits_i32_with(image, s, I8Kernels::NATIVE_BEST)
    }

    fn conv(
        &self,
        kernels: I8Kernels,
        shape: &Conv2dShape,
        (w, b, rq): (&[i8], &[i32], &[Requant]),
        x: &[i8],
        y: &mut [i8],
        ws: &mut [u32],
    ) -> Result<()> {
        let range = self.range();
        match kernels {
            I8Kernels::Plain => int8::qconv2d_forward(shape, x, w, Some(b), rq, range, y)?,
            I8Kernels::Dsp => int8::dsp::qconv2d_forward(shape, x, w, Some(b), rq, range, y, ws)?,
        }
        Ok(())
    }

    fn linear(
        &self,
        kernels: I8Kernels,
        shape: &QLinearShape,
        (w, b, rq): (&[i8], &[i32], &[Requant]),
        x: &[i8],
        y: &mut [i8],
    ) -> Result<()> {
        let range = self.range();
        let f = match kernels {
            I8Kernels::Plain => int8::qlinear_forward,
            I8Kernels::Dsp => int8::dsp::qlinear_forward,
        };
        f(shape, x, w, Some(b), rq, range, y)?;
        Ok(())
    }

    /// [`LenetI8::logits_i32`] with the given kernels.
    pub fn logits_i32_with(
        &self,
        image: &[u8; IMAGE_PIXELS],
        s: &mut I8Scratch,
        kernels: I8Kernels,
    ) -> Result<[i32; CLASSES]> {
        for (o, &p) in s.b[..IMAGE_PIXELS].iter_mut().zip(image) {
            *o = self.input_table[p as usize];
        }
        let k = kernels;
        let (c1, c2, f1, f2) = (&self.conv1, &self.conv2, &self.fc1, &self.fc2);
        let (a, b) = (&mut s.a, &mut s.b);
        let l1 = (c1.weight, c1.bias, &c1.requant[..]);
        self.conv(k, &CONV1, l1, &b[..IMAGE_PIXELS], a, &mut s.ws)?;
        self.activate(0, a);
        self.pool(&POOL1, a, b)?;
        let l2 = (c2.weight, c2.bias, &c2.requant[..]);
        self.conv(k, &CONV2, l2, b, &mut a[..CONV2_OUT], &mut s.ws)?;
        self.activate(1, &mut a[..CONV2_OUT]);
        self.pool(&POOL2, &a[..CONV2_OUT], &mut b[..FLAT])?;
        let l3 = (f1.weight, f1.bias, &f1.requant[..]);
        let sh = QLinearShape::new(1, FLAT, FC1);
        self.linear(k, &sh, l3, &b[..FLAT], &mut a[..FC1])?;
        self.activate(2, &mut a[..FC1]);
        let l4 = (f2.weight, f2.bias, &f2.requant[..]);
        let sh = QLinearShape::new(1, FC1, FC2);
        self.linear(k, &sh, l4, &a[..FC1], &mut b[..FC2])?;
        self.activate(3, &mut b[..FC2]);
        let x = &b[..FC2];
        let (w, _, b) = self.fc3;
        let mut acc = [0i32; CLASSES];
        let f = match kernels {
            I8Kernels::Plain => int8::qlinear_forward_i32,
            I8Kernels::Dsp => int8::dsp::qlinear_forward_i32,
        };
        f(&QLinearShape::new(1, FC2, CLASSES), x, w, Some(b), &mut acc)?;
        Ok(acc)
    }

    /// The logits dequantized to f32 (`acc * weight_scale[o] * in_scale`).
    pub fn logits(&self, image: &[u8; IMAGE_PIXELS], s: &mut I8Scratch) -> Result<[f32; CLASSES]> {
        let acc = self.logits_i32(image, s)?;
        let mut out = [0.0f32; CLASSES];
        for ((o, &a), &ws) in out.iter_mut().zip(&acc).zip(self.fc3.1) {
            *o = a as f32 * ws * self.fc3_in_scale;
        }
        Ok(out)
    }

    /// The predicted class of one image (argmax of the dequantized logits, since the
    /// per-channel scales differ).
    pub fn predict(&self, image: &[u8; IMAGE_PIXELS], s: &mut I8Scratch) -> Result<usize> {
        Ok(argmax(&self.logits(image, s)?))
    }
}
