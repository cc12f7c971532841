//! The node being converted: its attributes, read and checked.

use super::*;

impl<'a> Ctx<'a> {
    pub(super) fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        fail(format!("{}: {msg}", self.desc))
    }

    pub(super) fn check_attrs(&self, known: &[&str]) -> Result<()> {
        for a in &self.node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return self.err(format!(
                    "unsupported attribute `{name}` (this op supports {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            if a.ref_attr_name.is_some() {
                return self.err(format!(
                    "attribute `{name}` refers to a function's attribute, not supported"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn attr(
        &self,
        name: &str,
        want: AttributeType,
    ) -> Result<Option<&'a AttributeProto>> {
        let Some(a) = self
            .node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
        else {
            return Ok(None);
        };
        // Old files may leave `type` unset; then the field present decides.
        match a.r#type {
            None | Some(0) => Ok(Some(a)),
            Some(t) if t == want as i32 => Ok(Some(a)),
            Some(t) => self.err(format!(
                "attribute `{name}` has type {}, expected {}",
                AttributeType::try_from(t)
                    .map(|t| t.as_str_name())
                    .unwrap_or("unknown"),
                want.as_str_name()
            )),
        }
    }

    pub(super) fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .attr(name, AttributeType::Int)?
            .map(|a| a.i.unwrap_or(0))
            .unwrap_or(default))
    }

    pub(super) fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .attr(name, AttributeType::Float)?
            .map(|a| a.f.unwrap_or(0.0))
            .unwrap_or(default))
    }

    pub(super) fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self
            .attr(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<&'a [u8]>> {
        Ok(self
            .attr(name, AttributeType::String)?
            .map(|a| a.s.as_deref().unwrap_or(b"")))
    }

    /// A 2-D window attribute (`kernel_shape`, `strides`, `dilations`), all entries >= 1.
    pub(super) fn pair(
        &self,
        name: &str,
        default: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
        match (self.ints(name)?, default) {
            (Some([a, b]), _) if *a >= 1 && *b >= 1 => Ok((*a as usize, *b as usize)),
            (Some(v), _) => self.err(format!(
                "attribute `{name}` = {v:?}: only 2-D windows with entries >= 1 are supported"
            )),
            (None, Some(d)) => Ok(d),
            (None, None) => self.err(format!("missing attribute `{name}`")),
        }
    }

    /// `pads` as (height, width): symmetric only (PyTorch's padding).
    pub(super) fn pads(&self) -> Result<(usize, usize)> {
        match self.ints("pads")? {
            None => Ok((0, 0)),
            Some(&[t, l, b, r]) if t == b && l == r && t >= 0 && l >= 0 => {
                Ok((t as usize, l as usize))
            }
            Some(p) => self.err(format!(
                "pads {p:?} are not supported: only symmetric 2-D padding \
                 [top, left, bottom, right] with top == bottom and left == right"
            )),
        }
    }

    /// `auto_pad`: NOTSET (explicit pads) or VALID (no padding); SAME_* is refused.
    pub(super) fn check_auto_pad(&self) -> Result<bool> {
        match self.string("auto_pad")? {
            None | Some(b"NOTSET") => Ok(false),
            Some(b"VALID") => Ok(true),
            Some(v) => self.err(format!(
                "auto_pad `{}` is not supported (only NOTSET with explicit pads, or VALID)",
                String::from_utf8_lossy(v)
            )),
        }
    }

    /// The node's input `i`; `None` when absent or empty (an omitted optional input).
    pub(super) fn input_name(&self, i: usize) -> Option<&'a str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}
