//! The IDX format (LeCun's MNIST container): a 4-byte magic `00 00 <type> <ndims>`, `ndims`
//! big-endian `u32` dimensions, then the elements in row-major order. Files are often gzipped.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::{DataError, Result};

/// The IDX type code for unsigned bytes, the only element type this reader accepts.
const TYPE_UBYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const MAX_DIMS: usize = 3;

/// The largest payload (in bytes, i.e. elements) a header may declare: 1 GiB.
///
/// Fashion-MNIST's largest file holds 47 MB; the cap turns a corrupt or hostile header into an
/// error instead of a huge allocation.
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// A decoded IDX array of unsigned bytes: its dimensions and row-major elements.
///
/// The element count always equals the product of the dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    dims: Vec<usize>,
    data: Vec<u8>,
}

impl IdxArray {
    /// The dimensions, outermost first (`[count, rows, cols]` for an image file).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the elements, dropping the dimensions.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Splits into dimensions and elements.
    pub fn into_parts(self) -> (Vec<usize>, Vec<u8>) {
        (self.dims, self.data)
    }
}

/// Encodes unsigned bytes as an uncompressed IDX file (type `0x08`).
///
/// Errors when there are not 1 to 3 dimensions, a dimension is zero or exceeds `u32`, or
/// `data.len()` differs from the product of `dims`.
///
/// ```
/// let bytes = tinycnn::data::encode_idx(&[2], &[5, 6]).unwrap();
/// assert_eq!(bytes, [0, 0, 8, 1, 0, 0, 0, 2, 5, 6]);
/// ```
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let invalid = |reason: String| DataError::InvalidArgument(format!("encode_idx: {reason}"));
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(invalid(format!(
            "{} dimensions, expected 1 to {MAX_DIMS}",
            dims.len()
        )));
    }
    let mut count: usize = 1;
    for &d in dims {
        if d == 0 || u32::try_from(d).is_err() {
            return Err(invalid(format!("dimension {d} outside 1..=u32::MAX")));
        }
        count = count
            .checked_mul(d)
            .ok_or_else(|| invalid(format!("dimensions {dims:?} overflow usize")))?;
    }
    if count != data.len() {
        return Err(invalid(format!(
            "dimensions {dims:?} hold {count} elements, data has {}",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_UBYTE, dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Parses IDX bytes held in memory, raw or gzip-compressed (detected by the `1f 8b` magic).
///
/// Errors name the input `<memory>`; use [`parse_idx_named`] to name it yourself.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    parse_idx_named(bytes, "<memory>")
}

/// Like [`parse_idx`], with `name` used in error messages.
pub fn parse_idx_named(bytes: &[u8], name: &str) -> Result<IdxArray> {
    parse_stream(bytes, name)
}

/// Reads an IDX file, raw or gzip-compressed (detected by content, not by file name).
///
/// The file is streamed: no more than the header's declared payload (plus one byte, to detect
/// trailing data) is ever decompressed or held in memory.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_stream(
        BufReader::with_capacity(1 << 16, file),
        &path.display().to_string(),
    )
}

fn parse_stream<R: BufRead>(mut input: R, name: &str) -> Result<IdxArray> {
    let is_gzip = {
        let head = input.fill_buf().map_err(|e| io_to_idx(name, e, false))?;
        head.starts_with(&GZIP_MAGIC)
    };
    if is_gzip {
        parse_decoded(MultiGzDecoder::new(input), name, true)
    } else {
        parse_decoded(input, name, false)
    }
}

fn parse_decoded<R: Read>(mut input: R, name: &str, gzip: bool) -> Result<IdxArray> {
    let invalid = |reason: String| DataError::InvalidIdx {
        name: name.to_string(),
        reason,
    };

    let mut magic = [0u8; 4];
    read_header_part(
        &mut input,
        &mut magic,
        name,
        gzip,
        "the 4-byte magic number",
    )?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(invalid(format!(
            "bad magic number {:02x} {:02x} {:02x} {:02x} (an IDX file starts with 00 00 <type> <ndims>)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != TYPE_UBYTE {
        let kind = match magic[2] {
            0x09 => "signed byte",
            0x0B => "i16",
            0x0C => "i32",
            0x0D => "f32",
            0x0E => "f64",
            _ => "unknown",
        };
        return Err(invalid(format!(
            "data type 0x{:02x} ({kind}) is not supported; only 0x08 (unsigned byte) is",
            magic[2]
        )));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 || ndims > MAX_DIMS {
        return Err(invalid(format!(
            "{ndims} dimensions; expected 1 to {MAX_DIMS}"
        )));
    }

    let mut dim_bytes = [0u8; 4 * MAX_DIMS];
    let what = format!("the {ndims} dimension sizes of the header");
    read_header_part(&mut input, &mut dim_bytes[..4 * ndims], name, gzip, &what)?;
    let dims: Vec<u64> = dim_bytes[..4 * ndims]
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    if let Some(axis) = dims.iter().position(|&d| d == 0) {
        return Err(invalid(format!("dimension {axis} is zero (dims {dims:?})")));
    }
    // Each factor is below 2^32, so a product past the cap is detected before it can overflow.
    let mut count: u64 = 1;
    for &d in &dims {
        count = count.saturating_mul(d);
        if count > MAX_IDX_BYTES {
            return Err(invalid(format!(
                "header declares dims {dims:?}, more than the {MAX_IDX_BYTES}-element limit"
            )));
        }
    }
    let count =
        usize::try_from(count).map_err(|_| invalid(format!("dims {dims:?} exceed memory")))?;

    // Growing with the bytes actually present bounds memory by the input, not by the claim;
    // the extra byte reveals trailing data (or a decompression bomb) without reading it all.
    let mut data = Vec::with_capacity(count.min(1 << 24));
    let limit = count as u64 + 1;
    input
        .by_ref()
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|e| io_to_idx(name, e, gzip))?;
    if data.len() < count {
        return Err(invalid(format!(
            "truncated: header declares {count} data bytes (dims {dims:?}) but only {} follow",
            data.len()
        )));
    }
    if data.len() > count {
        return Err(invalid(format!(
            "trailing data after the {count} data bytes declared by the header (dims {dims:?})"
        )));
    }
    if gzip {
        // Reading on to the end of the gzip stream checks its CRC and rejects garbage after it.
        let mut probe = [0u8; 1];
        match input.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "trailing data after the {count} data bytes declared by the header"
                )))
            }
            Err(e) => return Err(io_to_idx(name, e, gzip)),
        }
    }
    let dims = dims.into_iter().map(|d| d as usize).collect();
    Ok(IdxArray { dims, data })
}

fn read_header_part<R: Read>(
    input: &mut R,
    buf: &mut [u8],
    name: &str,
    gzip: bool,
    what: &str,
) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            DataError::InvalidIdx {
                name: name.to_string(),
                reason: format!("truncated: input ends inside {what}"),
            }
        } else {
            io_to_idx(name, e, gzip)
        }
    })
}

fn io_to_idx(name: &str, err: std::io::Error, gzip: bool) -> DataError {
    let reason = match (gzip, err.kind()) {
        (true, ErrorKind::UnexpectedEof) => "truncated gzip stream".to_string(),
        (true, ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
            format!("corrupt gzip stream: {err}")
        }
        _ => format!("read error: {err}"),
    };
    DataError::InvalidIdx {
        name: name.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn reason(err: DataError) -> String {
        match err {
            DataError::InvalidIdx { reason, .. } => reason,
            other => panic!("expected InvalidIdx, got {other:?}"),
        }
    }

    #[test]
    fn parses_raw_and_gzip_with_all_dim_counts() {
        let one = [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
        let arr = parse_idx(&one).unwrap();
        assert_eq!(arr.dims(), &[3]);
        assert_eq!(arr.data(), &[1, 2, 3]);
        assert_eq!(parse_idx(&gzip(&one)).unwrap(), arr);

        let two = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 1, 9, 8];
        assert_eq!(parse_idx(&two).unwrap().dims(), &[2, 1]);

        let mut three = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        three.extend(0..6u8);
        let arr = parse_idx(&gzip(&three)).unwrap();
        assert_eq!(arr.dims(), &[1, 2, 3]);
        assert_eq!(arr.data(), &[0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn encode_round_trips_and_validates() {
        let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(&bytes[..12], &[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
        let arr = parse_idx(&bytes).unwrap();
        assert_eq!(arr.into_parts(), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        assert!(encode_idx(&[2, 2], &[1, 2, 3]).is_err());
        assert!(encode_idx(&[], &[]).is_err());
        assert!(encode_idx(&[1, 1, 1, 1], &[1]).is_err());
        assert!(encode_idx(&[0], &[]).is_err());
    }

    #[test]
    fn rejects_bad_magic_type_and_dims() {
        assert!(reason(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 1, 5]).unwrap_err()).contains("bad magic"));
        assert!(
            reason(parse_idx(&[0, 0, 0x0D, 1, 0, 0, 0, 1, 5, 5, 5, 5]).unwrap_err())
                .contains("0x0d (f32)")
        );
        assert!(reason(parse_idx(&[0, 0, 8, 0]).unwrap_err()).contains("0 dimensions"));
        assert!(reason(parse_idx(&[0, 0, 8, 4, 0, 0, 0, 1]).unwrap_err()).contains("4 dimensions"));
        assert!(
            reason(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err())
                .contains("dimension 1 is zero")
        );
    }

    #[test]
    fn rejects_truncation_and_trailing_data() {
        assert!(reason(parse_idx(&[]).unwrap_err()).contains("magic"));
        assert!(reason(parse_idx(&[0, 0, 8]).unwrap_err()).contains("truncated"));
        assert!(
            reason(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1]).unwrap_err()).contains("dimension sizes")
        );
        let short = [0, 0, 8, 1, 0, 0, 0, 3, 1, 2];
        assert!(reason(parse_idx(&short).unwrap_err()).contains("only 2 follow"));
        assert!(reason(parse_idx(&gzip(&short)).unwrap_err()).contains("only 2 follow"));
        let long = [0, 0, 8, 1, 0, 0, 0, 1, 1, 2];
        assert!(reason(parse_idx(&long).unwrap_err()).contains("trailing data"));
        assert!(reason(parse_idx(&gzip(&long)).unwrap_err()).contains("trailing data"));
    }

    #[test]
    fn rejects_damaged_gzip() {
        let good = gzip(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]);
        let cut = &good[..good.len() - 6];
        let msg = reason(parse_idx(cut).unwrap_err());
        assert!(msg.contains("gzip"), "{msg}");
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        assert!(reason(parse_idx(&bad_crc).unwrap_err()).contains("gzip"));
        let mut garbage_after = good;
        garbage_after.extend_from_slice(b"garbage!");
        assert!(parse_idx(&garbage_after).is_err());
    }

    #[test]
    fn huge_header_claims_fail_before_allocating() {
        // 2^32-1 cubed is about 2^96 elements; 2^20 * 2^20 = 2^40 is past the cap too.
        let huge = [
            0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(reason(parse_idx(&huge).unwrap_err()).contains("limit"));
        let big = [0, 0, 8, 2, 0, 0x10, 0, 0, 0, 0x10, 0, 0];
        assert!(reason(parse_idx(&gzip(&big)).unwrap_err()).contains("limit"));
    }

    #[test]
    fn gzip_bomb_stops_one_byte_past_the_declared_size() {
        // Declares 4 bytes, then inflates to 64 MiB of zeros: rejected as trailing data.
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&[0, 0, 8, 1, 0, 0, 0, 4]).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert!(reason(parse_idx(&bomb).unwrap_err()).contains("trailing data"));
    }

    #[test]
    fn read_idx_names_the_file() {
        let dir = std::env::temp_dir().join(format!("tinycnn-idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("short-idx1-ubyte");
        std::fs::write(&path, [0, 0, 8, 1, 0, 0, 0, 9, 1]).unwrap();
        let msg = read_idx(&path).unwrap_err().to_string();
        assert!(
            msg.contains("short-idx1-ubyte") && msg.contains("truncated"),
            "{msg}"
        );
        let missing = read_idx(dir.join("missing")).unwrap_err();
        assert!(matches!(missing, DataError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
