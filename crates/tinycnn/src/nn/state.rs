//! Named tensors in order: a module's or an optimizer's state (PyTorch's `OrderedDict`).

use crate::tensor::Tensor;
use std::fmt;

/// Tensors by name, in insertion order (`net.state_dict()`), saved and loaded as
/// safetensors by [`crate::io`].
///
/// ```
/// use tinycnn::{nn::StateDict, Tensor};
/// let mut sd = StateDict::new();
/// sd.insert("bias", Tensor::new([-0.3315]));
/// assert_eq!(sd.to_string(), "OrderedDict([('bias', tensor([-0.3315]))])");
/// ```
#[derive(Clone, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
}

impl StateDict {
    /// An empty dict.
    pub fn new() -> StateDict {
        StateDict::default()
    }
    /// A dict holding `entries` in order (a later duplicate key replaces the earlier one).
    pub fn from_entries(entries: Vec<(String, Tensor)>) -> StateDict {
        let mut sd = StateDict::new();
        for (k, v) in entries {
            sd.insert(k, v);
        }
        sd
    }
    /// Sets `key` (keeps its position if it already exists).
    pub fn insert(&mut self, key: impl Into<String>, value: Tensor) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }
    /// The tensor under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Removes and returns the tensor under `key`.
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }
    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
    /// `(key, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The entries whose key starts with `prefix.`, with the prefix removed (the state dict
    /// of a sub-module, `net[2].state_dict()` from `net.state_dict()`).
    pub fn sub(&self, prefix: &str) -> StateDict {
        let p = format!("{prefix}.");
        StateDict::from_entries(
            self.entries
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&p).map(|r| (r.to_string(), v.clone())))
                .collect(),
        )
    }
    /// Every key prefixed with `prefix.`.
    pub fn prefixed(&self, prefix: &str) -> StateDict {
        StateDict::from_entries(
            self.entries
                .iter()
                .map(|(k, v)| (format!("{prefix}.{k}"), v.clone()))
                .collect(),
        )
    }
}

impl IntoIterator for StateDict {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl fmt::Display for StateDict {
    /// `OrderedDict([('weight', tensor([...])), ('bias', tensor([...]))])`, as `print` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OrderedDict([")?;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "('{k}', {v})")?;
        }
        f.write_str("])")
    }
}

impl fmt::Debug for StateDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
