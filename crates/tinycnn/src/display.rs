//! `Display` for tensors, following PyTorch's `torch/_tensor_str.py` (precision 4, line
//! width 80, summarised above 1000 elements with 3 edge items).

use crate::tensor::Tensor;
use std::fmt;

const PRECISION: usize = 4;
const LINEWIDTH: usize = 80;
const THRESHOLD: usize = 1000;
const EDGEITEMS: usize = 3;

/// Python's `'{:.{p}e}'.format(v)`: mantissa with `p` decimals, exponent signed, two digits at least.
pub(crate) fn sci(v: f64, p: usize) -> String {
    if !v.is_finite() {
        return nonfinite(v);
    }
    let s = format!("{v:.p$e}");
    let (mant, exp) = s.split_once('e').expect("`{:e}` always has an exponent");
    let e: i32 = exp.parse().expect("integer exponent");
    let sign = if e < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", e.abs())
}

fn nonfinite(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// PyTorch's `_Formatter` for floating tensors.
struct Formatter {
    int_mode: bool,
    sci_mode: bool,
    width: usize,
}

impl Formatter {
    fn new(values: &[f32]) -> Formatter {
        let mut f = Formatter {
            int_mode: true,
            sci_mode: false,
            width: 1,
        };
        let vals: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite() && **v != 0.0)
            .map(|&v| v as f64)
            .collect();
        if vals.is_empty() {
            return f;
        }
        let min = vals.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
        let max = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        f.int_mode = vals.iter().all(|v| v.ceil() == *v);
        if f.int_mode {
            if max / min > 1000.0 || max > 1.0e8 {
                f.sci_mode = true;
                f.width = vals
                    .iter()
                    .map(|&v| sci(v, PRECISION).len())
                    .max()
                    .unwrap_or(1);
            } else {
                f.width = vals
                    .iter()
                    .map(|&v| format!("{v:.0}").len() + 1)
                    .max()
                    .unwrap_or(1);
            }
        } else if max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4 {
            f.sci_mode = true;
            f.width = vals
                .iter()
                .map(|&v| sci(v, PRECISION).len())
                .max()
                .unwrap_or(1);
        } else {
            f.width = vals
                .iter()
                .map(|&v| format!("{v:.PRECISION$}").len())
                .max()
                .unwrap_or(1);
        }
        f
    }

    fn format(&self, v: f32) -> String {
        let v = v as f64;
        let s = if self.sci_mode {
            sci(v, PRECISION)
        } else if self.int_mode {
            if v.is_finite() {
                format!("{v:.0}.")
            } else {
                nonfinite(v)
            }
        } else if v.is_finite() {
            format!("{v:.PRECISION$}")
        } else {
            nonfinite(v)
        };
        format!("{s:>w$}", w = self.width)
    }
}

/// Row-major index helpers over a shape.
struct View<'a> {
    data: &'a [f32],
    shape: &'a [usize],
}

impl View<'_> {
    fn stride(&self, d: usize) -> usize {
        self.shape[d + 1..].iter().product()
    }

    /// The values PyTorch's `get_summarized_data` keeps (for the formatter's width).
    fn summarized(&self, offset: usize, d: usize, summarize: bool, out: &mut Vec<f32>) {
        if d == self.shape.len() {
            out.push(self.data[offset]);
            return;
        }
        let n = self.shape[d];
        let st = self.stride(d);
        for i in Self::kept(n, summarize) {
            self.summarized(offset + i * st, d + 1, summarize, out);
        }
    }

    fn kept(n: usize, summarize: bool) -> Vec<usize> {
        if summarize && n > 2 * EDGEITEMS {
            (0..EDGEITEMS).chain(n - EDGEITEMS..n).collect()
        } else {
            (0..n).collect()
        }
    }

    fn render(
        &self,
        offset: usize,
        d: usize,
        indent: usize,
        summarize: bool,
        f: &Formatter,
    ) -> String {
        let rank = self.shape.len();
        if d == rank {
            return f.format(self.data[offset]);
        }
        let n = self.shape[d];
        let st = self.stride(d);
        let cut = summarize && n > 2 * EDGEITEMS;
        if d == rank - 1 {
            let element_len = f.width + 2;
            let per_line = ((LINEWIDTH.saturating_sub(indent)) / element_len).max(1);
            let mut items: Vec<String> = Vec::new();
            for i in Self::kept(n, summarize) {
                if cut && i == n - EDGEITEMS {
                    // PyTorch's vector summary item has a leading space.
                    items.push(" ...".into());
                }
                items.push(f.format(self.data[offset + i]));
            }
            let lines: Vec<String> = items.chunks(per_line).map(|c| c.join(", ")).collect();
            return format!(
                "[{}]",
                lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
            );
        }
        let mut slices: Vec<String> = Vec::new();
        for i in Self::kept(n, summarize) {
            if cut && i == n - EDGEITEMS {
                slices.push("...".into());
            }
            slices.push(self.render(offset + i * st, d + 1, indent + 1, summarize, f));
        }
        let sep = format!(",{}{}", "\n".repeat(rank - d - 1), " ".repeat(indent + 1));
        format!("[{}]", slices.join(&sep))
    }
}

/// The body PyTorch prints between `tensor(` and the suffixes, for `indent` columns of prefix.
pub(crate) fn tensor_body(data: &[f32], shape: &[usize], indent: usize) -> String {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return "[]".into();
    }
    let summarize = numel > THRESHOLD;
    let view = View { data, shape };
    let mut kept = Vec::new();
    view.summarized(0, 0, summarize, &mut kept);
    let f = Formatter::new(&kept);
    if shape.is_empty() {
        // A scalar is printed without padding.
        return f.format(data[0]).trim_start().to_string();
    }
    view.render(0, 0, indent, summarize, &f)
}

/// PyTorch's `_add_suffixes`: `full` is prefix + body.
fn add_suffixes(full: String, suffixes: &[String], indent: usize) -> String {
    let mut out = full;
    // Python: len(s) - s.rfind("\n") + 1, where rfind gives -1 when there is no newline.
    let mut last_line_len = match out.rfind('\n') {
        Some(p) => out.len() - p + 1,
        None => out.len() + 2,
    };
    for s in suffixes {
        if last_line_len + s.len() + 2 > LINEWIDTH {
            out.push_str(&format!(",\n{}{}", " ".repeat(indent), s));
            last_line_len = indent + s.len();
        } else {
            out.push_str(", ");
            out.push_str(s);
            last_line_len += s.len() + 2;
        }
    }
    out.push(')');
    out
}

impl fmt::Display for Tensor {
    /// Prints like PyTorch: `tensor([[19., 25.],\n        [37., 43.]])`, with
    /// `requires_grad=True` on parameters and `grad_fn=<..>` on results of recorded ops.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = "tensor(";
        let indent = prefix.len();
        let data = self.data();
        let body = tensor_body(&data, self.shape(), indent);
        let mut suffixes = Vec::new();
        if self.numel() == 0 && self.shape() != [0] {
            suffixes.push(format!("size=({})", shape_tuple(self.shape())));
        }
        if let Some(name) = self.grad_fn() {
            suffixes.push(format!("grad_fn=<{name}>"));
        } else if self.requires_grad() {
            suffixes.push("requires_grad=True".into());
        }
        write!(
            f,
            "{}",
            add_suffixes(format!("{prefix}{body}"), &suffixes, indent)
        )
    }
}

fn shape_tuple(shape: &[usize]) -> String {
    let items: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if items.len() == 1 {
        format!("{},", items[0])
    } else {
        items.join(", ")
    }
}

/// `torch.Size([2, 3])`, as PyTorch prints a shape.
pub fn size_string(shape: &[usize]) -> String {
    let items: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("torch.Size([{}])", items.join(", "))
}
