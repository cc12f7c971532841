//! A `no_std`, allocation-free reader of the safetensors format.
//!
//! Layout of a file: an 8-byte little-endian header length `N`, `N` bytes of JSON, then the
//! data region. The JSON is one object: each key is a tensor name mapped to
//! `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` (offsets relative to the
//! data region), plus an optional `"__metadata__"` object of string values.
//!
//! [`Safetensors::parse`] walks the JSON once into fixed-capacity `heapless` tables of
//! borrowed slices (nothing is copied) and checks everything a reader later relies on:
//! valid UTF-8, well-formed JSON of exactly that schema, known dtypes, shapes whose byte size
//! fits `usize` and equals the offsets' span, offsets inside the data region, no duplicate
//! names, and tensors that tile the data region with no gap or overlap (the format's rule).
//! After that, the typed accessors ([`Safetensors::f32`], ...) hand out `&[f32]` views of the
//! blob itself (weights stay in flash), and fail with an error, never UB, when the bytes are
//! misaligned or the dtype or shape is not the one asked for.
//!
//! Strings are returned as their raw JSON text: a name that uses escapes is kept escaped, so
//! it simply does not match any expected name.

use crate::error::{Error, Result};
use heapless::Vec;

/// Most tensors one file may hold.
pub const MAX_TENSORS: usize = 32;
/// Most `__metadata__` entries.
pub const MAX_METADATA: usize = 8;
/// Highest tensor rank.
pub const MAX_RANK: usize = 4;
/// Largest header accepted (the LeNet headers are about 1-2 KiB).
pub const MAX_HEADER: usize = 64 * 1024;

#[cfg(target_endian = "big")]
compile_error!("safetensors data is little-endian; this reader casts it in place");

/// Element types of the format that this reader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I8,
    I32,
    U8,
    F16,
    BF16,
    F64,
    I16,
    I64,
    Bool,
}

impl Dtype {
    fn from_name(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "I8" => Dtype::I8,
            "I32" => Dtype::I32,
            "U8" => Dtype::U8,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            "I16" => Dtype::I16,
            "I64" => Dtype::I64,
            "BOOL" => Dtype::Bool,
            _ => return None,
        })
    }

    /// The format's name of this dtype.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::I8 => "I8",
            Dtype::I32 => "I32",
            Dtype::U8 => "U8",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F64 => "F64",
            Dtype::I16 => "I16",
            Dtype::I64 => "I64",
            Dtype::Bool => "BOOL",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }
}

/// One tensor of a parsed file: borrowed name, dtype, shape and bytes.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize, MAX_RANK>,
    pub data: &'a [u8],
}

/// A parsed, validated safetensors blob (see the module docs).
#[derive(Debug, Clone)]
pub struct Safetensors<'a> {
    tensors: Vec<TensorView<'a>, MAX_TENSORS>,
    metadata: Vec<(&'a str, &'a str), MAX_METADATA>,
}

impl<'a> Safetensors<'a> {
    /// Parses and validates `bytes` (the whole file).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let fmt = |what| Error::Format { what, at: 0 };
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(fmt("shorter than the 8-byte header length"))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER as u64 {
            return Err(fmt("header length over 64 KiB"));
        }
        let header_len = header_len as usize;
        let header = bytes
            .get(8..8 + header_len)
            .ok_or(fmt("header length past the end of the file"))?;
        let data = &bytes[8 + header_len..];
        let header = core::str::from_utf8(header).map_err(|e| Error::Format {
            what: "header is not UTF-8",
            at: e.valid_up_to(),
        })?;
        let mut out = Safetensors {
            tensors: Vec::new(),
            metadata: Vec::new(),
        };
        let mut spans: Vec<(usize, usize), MAX_TENSORS> = Vec::new();
        let mut p = Parser::new(header);
        p.expect(b'{')?;
        if !p.eat(b'}')? {
            loop {
                let key = p.string()?;
                p.expect(b':')?;
                if key == "__metadata__" {
                    if !out.metadata.is_empty() {
                        return Err(p.err("duplicate __metadata__"));
                    }
                    p.metadata(&mut out.metadata)?;
                } else {
                    if out.tensors.iter().any(|t| t.name == key) {
                        return Err(p.err("duplicate tensor name"));
                    }
                    let (dtype, shape, (begin, end)) = p.tensor_info()?;
                    let mut bytes_len = dtype.size();
                    for &d in &shape {
                        bytes_len = bytes_len
                            .checked_mul(d)
                            .ok_or(p.err("tensor size overflows usize"))?;
                    }
                    if begin > end || end > data.len() {
                        return Err(p.err("data_offsets outside the data region"));
                    }
                    if end - begin != bytes_len {
                        return Err(p.err("data_offsets span differs from dtype size x shape"));
                    }
                    let view = TensorView {
                        name: key,
                        dtype,
                        shape,
                        data: &data[begin..end],
                    };
                    out.tensors.push(view).map_err(|_| Error::Capacity {
                        what: "tensors",
                        max: MAX_TENSORS,
                    })?;
                    // Same capacity as `tensors`, so this push cannot fail after that one.
                    let _ = spans.push((begin, end));
                }
                if p.eat(b',')? {
                    continue;
                }
                p.expect(b'}')?;
                break;
            }
        }
        p.end()?;
        // The tensors must tile the data region exactly: sorted spans, each starting where
        // the previous one ended, the last ending at the end of the file.
        // Insertion sort: at most MAX_TENSORS spans, and far less code than `sort_unstable`.
        for i in 1..spans.len() {
            let mut j = i;
            while j > 0 && spans[j - 1] > spans[j] {
                spans.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut pos = 0;
        for &(b, e) in &spans {
            if b != pos {
                return Err(fmt(if b < pos {
                    "tensors overlap"
                } else {
                    "gap between tensors in the data region"
                }));
            }
            pos = e;
        }
        if pos != data.len() {
            return Err(fmt("bytes after the last tensor"));
        }
        Ok(out)
    }

    /// All tensors, in header order.
    pub fn tensors(&self) -> &[TensorView<'a>] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorView<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The `__metadata__` value of `key` (raw JSON string text).
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v)
    }

    /// The tensor `name`, checked to have `dtype` and exactly `shape`.
    pub fn tensor(
        &self,
        name: &'static str,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<&TensorView<'a>> {
        let t = self.get(name).ok_or(Error::MissingTensor { name })?;
        if t.dtype != dtype {
            return Err(Error::Dtype {
                name,
                expected: dtype.name(),
                found: t.dtype.name(),
            });
        }
        if t.shape.len() != shape.len() {
            return Err(Error::Shape {
                name,
                dim: usize::MAX,
                expected: shape.len(),
                found: t.shape.len(),
            });
        }
        for (dim, (&want, &got)) in shape.iter().zip(t.shape.iter()).enumerate() {
            if want != got {
                return Err(Error::Shape {
                    name,
                    dim,
                    expected: want,
                    found: got,
                });
            }
        }
        Ok(t)
    }

    /// An `F32` tensor of exactly `shape`, viewed in place.
    pub fn f32(&self, name: &'static str, shape: &[usize]) -> Result<&'a [f32]> {
        let t = self.tensor(name, Dtype::F32, shape)?;
        bytemuck::try_cast_slice(t.data).map_err(|_| Error::Misaligned { name })
    }

    /// An `I32` tensor of exactly `shape`, viewed in place.
    pub fn i32(&self, name: &'static str, shape: &[usize]) -> Result<&'a [i32]> {
        let t = self.tensor(name, Dtype::I32, shape)?;
        bytemuck::try_cast_slice(t.data).map_err(|_| Error::Misaligned { name })
    }

    /// An `I8` tensor of exactly `shape`, viewed in place.
    pub fn i8(&self, name: &'static str, shape: &[usize]) -> Result<&'a [i8]> {
        let t = self.tensor(name, Dtype::I8, shape)?;
        Ok(bytemuck::cast_slice(t.data))
    }

    /// A one-element `F32` tensor (shape `[1]`) that must be finite and positive: a scale.
    pub fn scale(&self, name: &'static str) -> Result<f32> {
        let v = self.f32(name, &[1])?[0];
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(Error::Value {
                name,
                what: "scale must be finite and positive",
            })
        }
    }

    /// Errors unless every tensor of the file is named in `expected`.
    pub fn only(&self, expected: &[&str]) -> Result<()> {
        if self.tensors.iter().all(|t| expected.contains(&t.name)) {
            Ok(())
        } else {
            Err(Error::UnexpectedTensor)
        }
    }
}

/// A cursor over the header JSON, for exactly the safetensors schema.
struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: 0,
        }
    }

    fn err(&self, what: &'static str) -> Error {
        Error::Format { what, at: self.pos }
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Consumes `c` (after whitespace) if it is next.
    fn eat(&mut self, c: u8) -> Result<bool> {
        self.skip_ws();
        match self.b.get(self.pos) {
            Some(&x) if x == c => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(self.err("unexpected end of header JSON")),
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c)? {
            Ok(())
        } else {
            Err(self.err(match c {
                b'{' => "expected `{`",
                b'}' => "expected `}` or `,`",
                b'[' => "expected `[`",
                b']' => "expected `]` or `,`",
                b':' => "expected `:`",
                _ => "unexpected character",
            }))
        }
    }

    /// Only trailing whitespace may follow the top-level object.
    fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(self.err("data after the header object"))
        }
    }

    /// A JSON string; returns its raw text between the quotes (escapes validated, kept).
    fn string(&mut self) -> Result<&'a str> {
        self.expect_quote()?;
        let start = self.pos;
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    // `get` cannot fail here (both ends sit next to ASCII quotes), and unlike
                    // indexing it links no panic-formatting code into the firmware.
                    let raw = self
                        .s
                        .get(start..self.pos)
                        .ok_or(self.err("string is not UTF-8"))?;
                    self.pos += 1;
                    return Ok(raw);
                }
                b'\\' => {
                    let esc = self.b.get(self.pos + 1).copied();
                    match esc {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.pos + 2..self.pos + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("bad \\u escape"));
                            }
                            self.pos += 6;
                        }
                        _ => return Err(self.err("bad escape in string")),
                    }
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => self.pos += 1,
            }
        }
    }

    fn expect_quote(&mut self) -> Result<()> {
        if self.eat(b'"')? {
            Ok(())
        } else {
            Err(self.err("expected a string"))
        }
    }

    /// A non-negative integer without sign, fraction or exponent.
    fn uint(&mut self) -> Result<usize> {
        self.skip_ws();
        let start = self.pos;
        let mut v: usize = 0;
        while let Some(&c) = self.b.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as usize))
                .ok_or(self.err("integer overflows usize"))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("expected a non-negative integer"));
        }
        if self.pos - start > 1 && self.b[start] == b'0' {
            return Err(self.err("integer with a leading zero"));
        }
        if matches!(self.b.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return Err(self.err("expected an integer, found a fraction or exponent"));
        }
        Ok(v)
    }

    /// `{"key": "value", ...}` into `out`.
    fn metadata(&mut self, out: &mut Vec<(&'a str, &'a str), MAX_METADATA>) -> Result<()> {
        self.expect(b'{')?;
        if self.eat(b'}')? {
            return Ok(());
        }
        loop {
            let k = self.string()?;
            self.expect(b':')?;
            let v = self.string()?;
            if out.iter().any(|(x, _)| *x == k) {
                return Err(self.err("duplicate metadata key"));
            }
            out.push((k, v)).map_err(|_| Error::Capacity {
                what: "metadata entries",
                max: MAX_METADATA,
            })?;
            if self.eat(b',')? {
                continue;
            }
            return self.expect(b'}');
        }
    }

    /// `{"dtype": .., "shape": [..], "data_offsets": [b, e]}` in any order, each key once.
    fn tensor_info(&mut self) -> Result<(Dtype, Vec<usize, MAX_RANK>, (usize, usize))> {
        self.expect(b'{')?;
        let mut dtype = None;
        let mut shape = None;
        let mut offsets = None;
        if !self.eat(b'}')? {
            loop {
                let k = self.string()?;
                self.expect(b':')?;
                match k {
                    "dtype" if dtype.is_none() => {
                        let name = self.string()?;
                        dtype = Some(Dtype::from_name(name).ok_or(self.err("unknown dtype"))?);
                    }
                    "shape" if shape.is_none() => {
                        let mut dims: Vec<usize, MAX_RANK> = Vec::new();
                        self.expect(b'[')?;
                        if !self.eat(b']')? {
                            loop {
                                let d = self.uint()?;
                                dims.push(d).map_err(|_| Error::Capacity {
                                    what: "tensor dimensions",
                                    max: MAX_RANK,
                                })?;
                                if self.eat(b',')? {
                                    continue;
                                }
                                self.expect(b']')?;
                                break;
                            }
                        }
                        shape = Some(dims);
                    }
                    "data_offsets" if offsets.is_none() => {
                        self.expect(b'[')?;
                        let b = self.uint()?;
                        self.expect(b',')?;
                        let e = self.uint()?;
                        self.expect(b']')?;
                        offsets = Some((b, e));
                    }
                    "dtype" | "shape" | "data_offsets" => {
                        return Err(self.err("duplicate key in tensor info"))
                    }
                    _ => return Err(self.err("unknown key in tensor info")),
                }
                if self.eat(b',')? {
                    continue;
                }
                self.expect(b'}')?;
                break;
            }
        }
        match (dtype, shape, offsets) {
            (Some(d), Some(s), Some(o)) => Ok((d, s, o)),
            _ => Err(self.err("tensor info lacks dtype, shape or data_offsets")),
        }
    }
}
