//! Reading and writing f32 safetensors files with metadata, the format of both the weight
//! files (PyTorch state-dict names such as `0.weight`) and the training checkpoints.

use crate::error::{Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tinycnn::nn::StateDict;
use tinycnn::Tensor;

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

/// Serializes tensors and metadata to safetensors bytes (through `tinycnn::io`, the one
/// safetensors writer).
pub fn to_bytes(tensors: &[NamedTensor], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(tensors.len());
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
        let tensor =
            Tensor::from_vec(t.data.clone(), &t.shape).context(|| format!("tensor {}", t.name))?;
        entries.push((t.name.clone(), tensor));
    }
    tinycnn::io::to_bytes_with_metadata(&StateDict::from_entries(entries), metadata)
        .context(|| "cannot serialize tensors".to_string())
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

/// Parses safetensors bytes; `origin` names the source in error messages. F32 tensors are
/// read, and I64 ones (PyTorch's batch-norm `num_batches_tracked`) as f32, as `tinycnn::io`
/// reads them.
pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<TensorFile> {
    let (state, metadata) = tinycnn::io::from_bytes_with_metadata(bytes)
        .context(|| format!("{origin} is not a valid safetensors file"))?;
    let mut tensors: Vec<NamedTensor> = state
        .iter()
        .map(|(name, t)| NamedTensor {
            name: name.to_string(),
            shape: t.shape().to_vec(),
            data: t.to_vec(),
        })
        .collect();
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
    fn pytorch_batch_norm_counters_in_i64_read_as_f32() {
        use safetensors::tensor::{Dtype, TensorView};
        // What `safetensors.torch.save_file(bn.state_dict(), f)` writes for
        // `num_batches_tracked`: a 0-d int64 tensor.
        let count = 469i64.to_le_bytes();
        let weight: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = vec![
            (
                "bn.num_batches_tracked".to_string(),
                TensorView::new(Dtype::I64, vec![], &count).unwrap(),
            ),
            (
                "bn.weight".to_string(),
                TensorView::new(Dtype::F32, vec![2], &weight).unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        let file = from_bytes(&bytes, "bn.safetensors").unwrap();
        let count = file.get("bn.num_batches_tracked").unwrap();
        assert_eq!(
            (count.shape.as_slice(), count.data.as_slice()),
            (&[][..], &[469.0][..])
        );
        assert_eq!(file.get("bn.weight").unwrap().data, [1.5, -2.0]);
        assert!(file.metadata.is_empty());
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
