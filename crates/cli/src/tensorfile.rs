//! Reading and writing f32 safetensors files with metadata, the format of both the weight
//! files (PyTorch state-dict names such as `0.weight`) and the training checkpoints.

use crate::error::{Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// One named f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Key in the file (`0.weight`, `optimizer.0.weight.m`, ...).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values; `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

/// The contents of a safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors in the order the file lists them (sorted by name).
    pub tensors: Vec<NamedTensor>,
    /// The `__metadata__` string map.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The tensor called `name`, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

struct F32View<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serializes tensors and metadata to safetensors bytes.
pub fn to_bytes(tensors: &[NamedTensor], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(crate::cli_err!(
                "tensor {} has {} values but shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            ));
        }
        let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((
            t.name.clone(),
            F32View {
                shape: &t.shape,
                bytes,
            },
        ));
    }
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    safetensors::tensor::serialize(views, meta).context(|| "cannot serialize tensors".to_string())
}

/// Writes tensors and metadata to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes = to_bytes(tensors, metadata)?;
    crate::output::write_file(path, &bytes)
}

/// Parses safetensors bytes; `origin` names the source in error messages. Only f32 tensors
/// are accepted.
pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<TensorFile> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .context(|| format!("{origin} is not a valid safetensors file"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes)
        .context(|| format!("{origin} is not a valid safetensors file"))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(crate::cli_err!(
                "{origin}: tensor {name} has dtype {:?}; only F32 is supported",
                view.dtype()
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TensorFile { tensors, metadata })
}

/// Reads a safetensors file (see [`from_bytes`]).
pub fn load(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path).context(|| format!("cannot read {}", path.display()))?;
    from_bytes(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_shapes_and_metadata() {
        let tensors = vec![
            NamedTensor {
                name: "0.weight".into(),
                shape: vec![2, 1, 1, 2],
                data: vec![1.0, -2.5, 3.25, 0.0],
            },
            NamedTensor {
                name: "0.bias".into(),
                shape: vec![2],
                data: vec![f32::MIN_POSITIVE, 7.0],
            },
        ];
        let mut meta = HashMap::new();
        meta.insert("model".to_string(), "lenet".to_string());
        let bytes = to_bytes(&tensors, &meta).unwrap();
        // The header length prefix is the first 8 bytes, little-endian.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 8 + n + 6 * 4);
        let back = from_bytes(&bytes, "mem").unwrap();
        assert_eq!(back.metadata, meta);
        assert_eq!(back.get("0.weight").unwrap(), &tensors[0]);
        assert_eq!(back.get("0.bias").unwrap(), &tensors[1]);
    }

    #[test]
    fn garbage_and_wrong_sizes_are_errors() {
        assert!(from_bytes(b"not a safetensors file", "x")
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors"));
        let bad = vec![NamedTensor {
            name: "w".into(),
            shape: vec![3],
            data: vec![1.0],
        }];
        assert!(to_bytes(&bad, &HashMap::new()).is_err());
    }
}
