//! Neural-network modules in PyTorch's shape: the [`Module`] trait, layers, [`Sequential`],
//! state dicts and weight initialisation ([`init`]).
//!
//! A user-written module implements [`Module::forward`], lists its own parameters in
//! [`Module::own_parameters`] and its sub-modules in [`Module::children`]; names, state
//! dicts, `apply`, `zero_grad` and the PyTorch-like repr then come for free.
//!
//! ```
//! use tinycnn::nn::{Linear, Module};
//! use tinycnn::{Result, Tensor};
//!
//! /// d2l's MLP: a hidden layer and an output layer.
//! struct Mlp { hidden: Linear, out: Linear }
//!
//! impl Module for Mlp {
//!     fn forward(&self, x: &Tensor) -> Result<Tensor> {
//!         self.out.forward(&self.hidden.forward(x)?.relu()?)
//!     }
//!     fn children(&self) -> Vec<(String, &dyn Module)> {
//!         vec![("hidden".into(), &self.hidden), ("out".into(), &self.out)]
//!     }
//! }
//!
//! let net = Mlp { hidden: Linear::new(20, 256), out: Linear::new(256, 10) };
//! assert_eq!(net.forward(&Tensor::rand(&[2, 20])).unwrap().shape(), &[2, 10]);
//! let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]);
//! assert_eq!(net.repr(), "Mlp(\n  (hidden): Linear(in_features=20, out_features=256, bias=True)\n  (out): Linear(in_features=256, out_features=10, bias=True)\n)");
//! ```

pub mod arch;
mod graph;
pub mod init;
mod layers;
mod norm;
mod sequential;
mod state;

pub(crate) use graph::reshape_dims;
pub use graph::{Graph, Reshape};
pub use layers::{
    AvgPool2d, Conv2d, Flatten, Identity, Linear, MaxPool2d, Pair, ReLU, Sigmoid, Softmax, Tanh,
};
pub use norm::{depthwise_separable, AdaptiveAvgPool2d, BatchNorm2d, Dropout, ReLU6, Residual};
pub use sequential::Sequential;
pub use state::StateDict;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::any::Any;
use std::collections::HashSet;
use std::fmt;

/// Casts every module implements automatically (blanket impl); lets `&dyn Module` be
/// downcast and lets provided methods hand `self` to callbacks.
pub trait ModuleCast {
    /// `self` as `Any`, for [`dyn Module::downcast_ref`](trait.Module.html#method.downcast_ref).
    fn as_any(&self) -> &dyn Any;
    /// `self` as a trait object.
    fn as_module(&self) -> &dyn Module;
}

impl<T: Module> ModuleCast for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_module(&self) -> &dyn Module {
        self
    }
}

/// A network layer or a whole network (PyTorch's `nn.Module`).
pub trait Module: ModuleCast + Send + Sync + 'static {
    /// The computation (`__call__` / `forward` in PyTorch).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The parameters this module owns directly, by local name (`"weight"`, `"bias"`).
    fn own_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The buffers this module owns directly, by local name: state that is saved in the state
    /// dict and moved by [`Module::to`] but is not a parameter, so no optimizer sees it
    /// (PyTorch's `register_buffer`; `BatchNorm2d`'s `running_mean`, `running_var`,
    /// `num_batches_tracked`).
    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The direct sub-modules, by name (`"0"`, `"hidden"`), in registration order.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    /// The name in the repr; the Rust type name by default.
    fn type_name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// What goes between the parentheses of the repr (`in_features=4, out_features=8, bias=True`).
    fn extra_repr(&self) -> String {
        String::new()
    }

    /// Called by [`Module::train`] / [`Module::eval`] on every module; modules whose forward
    /// differs between training and evaluation override it.
    fn set_training(&self, _training: bool) {}

    // ----- provided -------------------------------------------------------------------------

    /// Every parameter with its dotted path (`"0.weight"`, `"0.block1.0.bias"`); a parameter
    /// reachable twice is listed once, as in PyTorch.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        collect_parameters(self.as_module(), "", &mut out, &mut Some(&mut seen));
        out
    }

    /// Every parameter (deduplicated), for an optimizer.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Every buffer with its dotted path (`"1.running_mean"`), deduplicated like
    /// [`Module::named_parameters`] (`net.named_buffers()`).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        collect_state(
            self.as_module(),
            "",
            &mut out,
            &mut Some(&mut seen),
            Include::Buffers,
        );
        out
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Every module below and including this one, with its dotted path (`""` for this one).
    fn named_modules(&self) -> Vec<(String, &dyn Module)> {
        let mut out = vec![(String::new(), self.as_module())];
        let mut i = 0;
        while i < out.len() {
            let (prefix, m) = (out[i].0.clone(), out[i].1);
            for (j, (name, c)) in (i + 1..).zip(m.children()) {
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                out.insert(j, (path, c));
            }
            i += 1;
        }
        out
    }

    /// Calls `f` on every sub-module, children first, then on this module (`net.apply(f)`).
    ///
    /// ```
    /// use tinycnn::nn::{init, Linear, Module, ReLU, Sequential};
    /// let net = Sequential::new().append(Linear::new(4, 8)).append(ReLU).append(Linear::new(8, 1));
    /// net.apply(&mut |m| {
    ///     if let Some(l) = m.downcast_ref::<Linear>() {
    ///         init::constant_(&l.weight, 42.0)?;
    ///     }
    ///     Ok(())
    /// }).unwrap();
    /// assert_eq!(net.get::<Linear>(2).unwrap().weight.to_vec(), vec![42.0; 8]);
    /// ```
    fn apply(&self, f: &mut dyn FnMut(&dyn Module) -> Result<()>) -> Result<()> {
        for (_, c) in self.children() {
            c.apply(f)?;
        }
        f(self.as_module())
    }

    /// Moves every parameter and buffer to `device` in place (`net.to(device)`): the tensors
    /// keep their identity, so an optimizer built before or after sees the moved parameters.
    /// Gradients are dropped.
    ///
    /// ```
    /// use tinycnn::nn::{Linear, Module};
    /// use tinycnn::Device;
    /// let net = Linear::new(3, 2);
    /// net.to(&Device::Cpu).unwrap();
    /// assert_eq!(net.weight.device(), Device::Cpu);
    /// ```
    fn to(&self, device: &crate::Device) -> Result<()> {
        for p in self.parameters() {
            p.move_to_(*device)?;
        }
        for (_, b) in self.named_buffers() {
            b.move_to_(*device)?;
        }
        Ok(())
    }

    /// Drops the gradient of every parameter.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Training mode on every module (`net.train()`).
    fn train(&self) {
        for (_, m) in self.named_modules() {
            m.set_training(true);
        }
    }

    /// Evaluation mode on every module (`net.eval()`).
    fn eval(&self) {
        for (_, m) in self.named_modules() {
            m.set_training(false);
        }
    }

    /// The parameters and buffers by dotted name, as detached tensors sharing storage
    /// (`net.state_dict()`), in PyTorch's order: each module's parameters, then its buffers,
    /// then its children's entries.
    ///
    /// ```
    /// use tinycnn::nn::{BatchNorm2d, Conv2d, Module, Sequential};
    /// let net = Sequential::new().append(Conv2d::new(1, 2, 3).unwrap()).append(BatchNorm2d::new(2));
    /// let sd = net.state_dict();
    /// assert_eq!(sd.keys().collect::<Vec<_>>(), [
    ///     "0.weight", "0.bias", "1.weight", "1.bias",
    ///     "1.running_mean", "1.running_var", "1.num_batches_tracked",
    /// ]);
    /// ```
    fn state_dict(&self) -> StateDict {
        let mut out = Vec::new();
        collect_state(self.as_module(), "", &mut out, &mut None, Include::Both);
        StateDict::from_entries(out.into_iter().map(|(k, t)| (k, t.detach())).collect())
    }

    /// Copies `state` into the parameters and buffers. Every key must exist with the same
    /// shape, and every parameter and buffer must be given (PyTorch's `strict=True`); nothing
    /// is changed on error.
    fn load_state_dict(&self, state: &StateDict) -> Result<()> {
        let mut own = Vec::new();
        collect_state(self.as_module(), "", &mut own, &mut None, Include::Both);
        let missing: Vec<&str> = own
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| state.get(k).is_none())
            .collect();
        if let Some(first) = missing.first() {
            return Err(Error::StateDict {
                key: first.to_string(),
                msg: format!(
                    "missing from the state dict (missing keys: {})",
                    key_list(&missing)
                ),
            });
        }
        let own_keys: HashSet<&str> = own.iter().map(|(k, _)| k.as_str()).collect();
        let unexpected: Vec<&str> = state.keys().filter(|k| !own_keys.contains(k)).collect();
        if let Some(first) = unexpected.first() {
            return Err(Error::StateDict {
                key: first.to_string(),
                msg: format!(
                    "not a parameter or buffer of {} (unexpected keys: {})",
                    self.type_name(),
                    key_list(&unexpected)
                ),
            });
        }
        for (k, p) in &own {
            let src = state.get(k).expect("checked above");
            if src.shape() != p.shape() {
                return Err(Error::StateDict {
                    key: k.clone(),
                    msg: format!(
                        "shape {:?} in the state dict, {:?} in the module",
                        src.shape(),
                        p.shape()
                    ),
                });
            }
        }
        crate::no_grad(|| {
            for (k, p) in &own {
                p.copy_(state.get(k).expect("checked above"))?;
            }
            Ok(())
        })
    }

    /// The PyTorch-style repr (also what `Display` prints for modules).
    fn repr(&self) -> String {
        let children = self.children();
        let extra = self.extra_repr();
        let mut lines: Vec<String> = Vec::new();
        if !extra.is_empty() {
            lines.extend(extra.lines().map(String::from));
        }
        for (name, c) in &children {
            let r = c.repr().replace('\n', "\n  ");
            lines.push(format!("({name}): {r}"));
        }
        let mut s = format!("{}(", self.type_name());
        if !lines.is_empty() {
            if lines.len() == 1 && children.is_empty() {
                s.push_str(&lines[0]);
            } else {
                s.push_str("\n  ");
                s.push_str(&lines.join("\n  "));
                s.push('\n');
            }
        }
        s.push(')');
        s
    }
}

impl dyn Module {
    /// The concrete module, if it is a `T` (PyTorch's `type(m) == nn.Linear`).
    pub fn downcast_ref<T: Module>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
    /// Whether this module is a `T`.
    pub fn is<T: Module>(&self) -> bool {
        self.as_any().is::<T>()
    }
}

impl fmt::Display for dyn Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}

impl fmt::Debug for dyn Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}

/// Quoted keys for an error message, at most five, the rest counted, so that a state dict
/// with 100,000 stray keys still gives a one-line error.
fn key_list(keys: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut s = keys
        .iter()
        .take(SHOWN)
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(" ... and {} more", keys.len() - SHOWN));
    }
    s
}

fn collect_parameters(
    m: &dyn Module,
    prefix: &str,
    out: &mut Vec<(String, Tensor)>,
    seen: &mut Option<&mut HashSet<usize>>,
) {
    collect_state(m, prefix, out, seen, Include::Parameters);
}

/// Which of a module's tensors [`collect_state`] lists.
#[derive(Clone, Copy, PartialEq)]
enum Include {
    Parameters,
    Buffers,
    Both,
}

/// The tensors of `m` and its descendants with dotted names, in the order of PyTorch's
/// `_save_to_state_dict`: a module's parameters, then its buffers, then each child's.
/// With `seen`, a tensor reachable twice is listed once.
fn collect_state(
    m: &dyn Module,
    prefix: &str,
    out: &mut Vec<(String, Tensor)>,
    seen: &mut Option<&mut HashSet<usize>>,
    include: Include,
) {
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let mut own = Vec::new();
    if include != Include::Buffers {
        own.extend(m.own_parameters());
    }
    if include != Include::Parameters {
        own.extend(m.own_buffers());
    }
    for (name, t) in own {
        if let Some(seen) = seen.as_mut() {
            if !seen.insert(t.id()) {
                continue;
            }
        }
        out.push((join(&name), t));
    }
    for (name, c) in m.children() {
        collect_state(c, &join(&name), out, seen, include);
    }
}

/// Number of rows of `logits` `[N, C]` whose arg-max equals the label (d2l's `accuracy`).
pub fn accuracy(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    if logits.rank() != 2 || logits.shape()[0] != labels.len() {
        return Err(Error::mismatch(
            "accuracy (logits vs labels)",
            logits.shape(),
            &[labels.len()],
        ));
    }
    let pred = logits.argmax(1, false)?;
    let pred = pred.data();
    Ok(pred
        .iter()
        .zip(labels)
        .filter(|(p, &l)| **p as u32 == l)
        .count())
}
