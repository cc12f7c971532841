//! d2l "File I/O" (读写文件) with tinycnn: saving and loading a tensor, a list and a dict
//! of tensors, and a model's state dict, then checking that the reloaded clone computes
//! the same outputs. Files are safetensors (F32), written atomically.
//!
//! Run: `cargo run --release -p tinycnn --example file_io`

use std::path::{Path, PathBuf};
use tinycnn::nn::{Linear, Module, StateDict};
use tinycnn::{io, Result, Tensor};

/// A comparison result printed the way PyTorch prints a bool tensor (`tensor([True, False])`):
/// the runtime's comparisons return 1.0 / 0.0 in an f32 tensor. Rank 1 and 2 only.
pub fn bool_string(t: &Tensor) -> String {
    let data = t.to_vec();
    let words: Vec<&str> = data
        .iter()
        .map(|&v| if v != 0.0 { "True" } else { "False" })
        .collect();
    let width = words.iter().map(|w| w.len()).max().unwrap_or(4);
    let indent = "tensor(".len();
    let row = |items: &[&str], depth: usize| {
        let per_line = ((80 - indent - depth) / (width + 2)).max(1);
        let cells: Vec<String> = items.iter().map(|w| format!("{w:>width$}")).collect();
        let lines: Vec<String> = cells.chunks(per_line).map(|c| c.join(", ")).collect();
        format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + depth + 1)))
        )
    };
    match t.shape() {
        [_] => format!("tensor({})", row(&words, 0)),
        [_, cols] if *cols > 0 => {
            let rows: Vec<String> = words.chunks(*cols).map(|r| row(r, 1)).collect();
            format!(
                "tensor([{}])",
                rows.join(&format!(",\n{}", " ".repeat(indent + 1)))
            )
        }
        _ => format!("{t}"),
    }
}

/// d2l's `MLP` with layers named `hidden` and `output`.
pub struct Mlp {
    pub hidden: Linear,
    pub output: Linear,
}

impl Mlp {
    pub fn new() -> Mlp {
        Mlp {
            hidden: Linear::new(20, 256),
            output: Linear::new(256, 10),
        }
    }
}

impl Default for Mlp {
    fn default() -> Mlp {
        Mlp::new()
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(&self.hidden.forward(x)?.relu()?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("hidden".into(), &self.hidden),
            ("output".into(), &self.output),
        ]
    }
    fn type_name(&self) -> String {
        "MLP".into()
    }
}

/// `torch.save(x, 'x-file'); x2 = torch.load('x-file')`.
pub fn tensor_round_trip(dir: &Path, x: &Tensor) -> Result<Tensor> {
    let path = dir.join("x-file");
    io::save_tensor(&path, x)?;
    io::load_tensor(&path)
}

/// `torch.save([x, y], 'x-files'); x2, y2 = torch.load('x-files')`.
pub fn list_round_trip(dir: &Path, xs: &[Tensor]) -> Result<Vec<Tensor>> {
    let path = dir.join("x-files");
    io::save_tensors(&path, xs)?;
    io::load_tensors(&path)
}

/// `torch.save(mydict, 'mydict'); torch.load('mydict')`.
pub fn dict_round_trip(dir: &Path, dict: &StateDict) -> Result<StateDict> {
    let path = dir.join("mydict");
    io::save(&path, dict)?;
    io::load(&path)
}

/// `torch.save(net.state_dict(), 'mlp.params')`, then a fresh `clone = MLP()` loads it.
pub fn model_round_trip(dir: &Path, net: &Mlp) -> Result<Mlp> {
    let path = dir.join("mlp.params");
    io::save(&path, &net.state_dict())?;
    let clone = Mlp::new();
    clone.load_state_dict(&io::load(&path)?)?;
    clone.eval();
    Ok(clone)
}

/// A fresh directory under the system temp dir for this run's files.
pub fn scratch_dir(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tinycnn-d2l-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| tinycnn::Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let dir = scratch_dir("file-io")?;

    println!("## Loading and saving tensors (加载和保存张量)");
    let x = Tensor::arange(4);
    let x2 = tensor_round_trip(&dir, &x)?;
    println!("{x2}");
    let y = Tensor::zeros(&[4]);
    let loaded = list_round_trip(&dir, &[x.clone(), y.clone()])?;
    println!("({}, {})", loaded[0], loaded[1]);
    let mydict = StateDict::from_entries(vec![("x".into(), x.clone()), ("y".into(), y.clone())]);
    let mydict2 = dict_round_trip(&dir, &mydict)?;
    // PyTorch prints a plain dict: {'x': tensor(...), 'y': tensor(...)}.
    let items: Vec<String> = mydict2.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    println!("{{{}}}", items.join(", "));

    println!("\n## Loading and saving model parameters (加载和保存模型参数)");
    let net = Mlp::new();
    let x = Tensor::randn(&[2, 20]);
    let y = net.forward(&x)?;
    let clone = model_round_trip(&dir, &net)?;
    println!("{}", clone.repr());
    let y_clone = clone.forward(&x)?;
    println!("{}", bool_string(&y_clone.eq_elem(&y)?));

    std::fs::remove_dir_all(&dir).map_err(|source| tinycnn::Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(())
}
