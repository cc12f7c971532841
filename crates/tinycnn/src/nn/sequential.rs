//! `nn.Sequential`: modules applied in order, nestable, indexable, printable.

use super::Module;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::ops::Index;

/// Modules applied one after the other (`nn.Sequential`). Children are named `"0"`, `"1"`,
/// ... unless added with [`Sequential::add_module`].
///
/// ```
/// use tinycnn::nn::{Linear, Module, ReLU, Sequential};
/// let net = Sequential::new().append(Linear::new(4, 8)).append(ReLU).append(Linear::new(8, 1));
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert_eq!(net[2].downcast_ref::<Linear>().unwrap().weight.shape(), &[1, 8]);
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Sequential {
        Sequential::default()
    }
    /// Builder: appends `m` under the next index.
    pub fn append(mut self, m: impl Module) -> Sequential {
        self.push(m);
        self
    }
    /// Appends `m` under the next index.
    pub fn push(&mut self, m: impl Module) {
        self.push_boxed(Box::new(m));
    }
    /// Appends an already boxed module.
    pub fn push_boxed(&mut self, m: Box<dyn Module>) {
        let name = self.layers.len().to_string();
        self.layers.push((name, m));
    }
    /// Appends `m` under `name` (`net.add_module(f'block{i}', block1())`); names must be unique.
    pub fn add_module(&mut self, name: impl Into<String>, m: impl Module) -> Result<()> {
        let name = name.into();
        if name.is_empty() || name.contains('.') || self.layers.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(
                "add_module",
                format!("module name `{name}` is empty, dotted or taken"),
            ));
        }
        self.layers.push((name, Box::new(m)));
        Ok(())
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
    /// Layer `i` as a trait object.
    pub fn layer(&self, i: usize) -> Option<&dyn Module> {
        self.layers.get(i).map(|(_, m)| m.as_ref())
    }
    /// Layer `i` as its concrete type (`net[0]` when you know it is a `Linear`).
    pub fn get<T: Module>(&self, i: usize) -> Option<&T> {
        self.layer(i)?.downcast_ref::<T>()
    }
    /// `(name, layer)` pairs in order (`for layer in net:`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.layers.iter().map(|(n, m)| (n.as_str(), m.as_ref()))
    }
    /// Runs the layers in order and returns every intermediate output (layer-by-layer shapes).
    pub fn forward_trace(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(self.layers.len());
        let mut cur = x.clone();
        for (_, m) in &self.layers {
            cur = m.forward(&cur)?;
            outs.push(cur.clone());
        }
        Ok(outs)
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut cur = x.clone();
        for (_, m) in &self.layers {
            cur = m.forward(&cur)?;
        }
        Ok(cur)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers
            .iter()
            .map(|(n, m)| (n.clone(), m.as_ref()))
            .collect()
    }
    fn type_name(&self) -> String {
        "Sequential".into()
    }
}

impl Index<usize> for Sequential {
    type Output = dyn Module;
    /// Layer `i`; panics when out of range, like `Vec` (use [`Sequential::layer`] to check).
    fn index(&self, i: usize) -> &dyn Module {
        self.layers[i].1.as_ref()
    }
}

impl std::fmt::Display for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repr())
    }
}

/// Builds a [`Sequential`] from modules: `sequential![Linear::new(4, 8), ReLU]`.
#[macro_export]
macro_rules! sequential {
    ($($m:expr),* $(,)?) => {{
        let mut s = $crate::nn::Sequential::new();
        $( s.push($m); )*
        s
    }};
}
