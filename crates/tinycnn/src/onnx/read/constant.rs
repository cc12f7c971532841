//! Constants: initializers and Constant nodes' values, decoded and checked.

use super::*;

impl Const {
    pub(super) fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }
    pub(super) fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }
    pub(super) fn scalar_f32(&self) -> Option<f32> {
        match self.floats()? {
            [v] => Some(*v),
            _ => None,
        }
    }
    pub(super) fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }
}

pub(super) fn data_type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("data type {t}"))
}

/// Decodes a tensor's values, checking its size against the bytes present before any
/// allocation (the element count comes from `dims`, which a file can inflate at will).
pub(super) fn decode_tensor(t: &TensorProto, what: &str) -> Result<Const> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return fail(format!(
            "{what}: external data (a separate weights file) is not supported; save the model \
             with its weights inside (onnx.save(model, path, save_as_external_data=False))"
        ));
    }
    if t.segment.is_some() {
        return fail(format!("{what}: segmented tensors are not supported"));
    }
    let mut dims = Vec::with_capacity(t.dims.len().min(16));
    for &d in &t.dims {
        match usize::try_from(d) {
            Ok(d) => dims.push(d),
            Err(_) => return fail(format!("{what}: negative dimension in {:?}", t.dims)),
        }
    }
    let Some(numel) = dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d)) else {
        return fail(format!("{what}: shape {dims:?} overflows"));
    };
    let dtype = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let size_err = |have: usize, unit: &str| {
        fail(format!(
            "{what}: shape {dims:?} needs {numel} values, the file holds {have} {unit}"
        ))
    };
    let data = match DataType::try_from(dtype) {
        Ok(DataType::Float) => ConstData::F32(match raw {
            Some(b) => {
                if numel.checked_mul(4) != Some(b.len()) {
                    return size_err(b.len(), "bytes");
                }
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            None if t.float_data.len() == numel => t.float_data.clone(),
            None => return size_err(t.float_data.len(), "floats"),
        }),
        Ok(DataType::Int64) => ConstData::I64(match raw {
            Some(b) => {
                if numel.checked_mul(8) != Some(b.len()) {
                    return size_err(b.len(), "bytes");
                }
                b.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect()
            }
            None if t.int64_data.len() == numel => t.int64_data.clone(),
            None => return size_err(t.int64_data.len(), "integers"),
        }),
        Ok(DataType::Int32) | Ok(DataType::Bool) => {
            let width = if dtype == DataType::Bool as i32 { 1 } else { 4 };
            ConstData::I64(match raw {
                Some(b) => {
                    if numel.checked_mul(width) != Some(b.len()) {
                        return size_err(b.len(), "bytes");
                    }
                    if width == 1 {
                        b.iter().map(|&v| i64::from(v)).collect()
                    } else {
                        b.chunks_exact(4)
                            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                            .collect()
                    }
                }
                None if t.int32_data.len() == numel => {
                    t.int32_data.iter().map(|&v| i64::from(v)).collect()
                }
                None => return size_err(t.int32_data.len(), "integers"),
            })
        }
        _ => {
            return fail(format!(
                "{what}: element type {} is not supported (FLOAT weights, INT64/INT32/BOOL \
                 shapes and flags)",
                data_type_name(dtype)
            ))
        }
    };
    Ok(Const {
        dims,
        data,
        initializer: None,
    })
}
