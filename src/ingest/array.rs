//! Numeric arrays from `.npy` files and safetensors tensors, memory-mapped and read row by row.

use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::storage::{self, MappedFile};

/// Element types accepted in input arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16 (safetensors only).
    Bf16,
    /// 64-bit float.
    F64,
    /// Unsigned byte (e.g. pixels).
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit unsigned integer.
    U64,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 => 1,
            ElemType::F16 | ElemType::Bf16 => 2,
            ElemType::F32 | ElemType::I32 | ElemType::U32 => 4,
            ElemType::F64 | ElemType::I64 | ElemType::U64 => 8,
        }
    }

    /// Converts little-endian elements of a float type (or `U8`) to f32: `out.len()` elements
    /// from the start of `bytes`. Returns `false`, converting nothing, for integer types.
    pub fn decode_f32(self, bytes: &[u8], out: &mut [f32]) -> bool {
        let size = self.size();
        assert!(bytes.len() >= out.len() * size, "decode_f32: too few bytes");
        let chunks = bytes.chunks_exact(size).zip(out.iter_mut());
        match self {
            ElemType::F32 => {
                chunks.for_each(|(c, o)| *o = f32::from_le_bytes(c.try_into().expect("4")))
            }
            ElemType::F16 => {
                chunks.for_each(|(c, o)| *o = f16::from_le_bytes([c[0], c[1]]).to_f32())
            }
            ElemType::Bf16 => {
                chunks.for_each(|(c, o)| *o = bf16::from_le_bytes([c[0], c[1]]).to_f32())
            }
            ElemType::F64 => {
                chunks.for_each(|(c, o)| *o = f64::from_le_bytes(c.try_into().expect("8")) as f32)
            }
            ElemType::U8 => chunks.for_each(|(c, o)| *o = c[0] as f32),
            _ => return false,
        }
        true
    }

    fn is_float(self) -> bool {
        matches!(
            self,
            ElemType::F32 | ElemType::F16 | ElemType::Bf16 | ElemType::F64 | ElemType::U8
        )
    }

    fn is_int(self) -> bool {
        matches!(
            self,
            ElemType::I32 | ElemType::I64 | ElemType::U32 | ElemType::U64 | ElemType::U8
        )
    }
}

/// A memory-mapped input array.
#[derive(Debug)]
pub struct Array {
    path: PathBuf,
    label: String,
    map: MappedFile,
    data: Range<usize>,
    elem: ElemType,
    shape: Vec<usize>,
}

impl Array {
    /// Opens `path`: a `.npy` file, or a tensor of a `.safetensors` file (`tensor` names it).
    pub fn open(path: &Path, tensor: Option<&str>) -> Result<Self> {
        let is_st = path.extension().is_some_and(|e| e == "safetensors");
        match (is_st, tensor) {
            (true, Some(t)) => Self::open_safetensors(path, t),
            (true, None) => Err(Error::bad_input(
                path,
                "tensor",
                "a safetensors file needs a tensor name (FIELD=FILE.safetensors:TENSOR)",
            )),
            (false, None) => Self::open_npy(path),
            (false, Some(_)) => Err(Error::bad_input(
                path,
                "tensor",
                "a tensor name is only valid with a .safetensors file",
            )),
        }
    }

    /// Opens a `.npy` file (format versions 1.0, 2.0 and 3.0; little-endian, C order).
    pub fn open_npy(path: &Path) -> Result<Self> {
        let map = storage::map_file(path)?;
        let b = map.bytes();
        let bad = |detail: String| Error::bad_input(path, "npy header", detail);
        if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file (missing \\x93NUMPY magic)".into()));
        }
        let (header_len, start) = match b[6] {
            1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize),
            2 | 3 => {
                if b.len() < 12 {
                    return Err(bad("truncated header".into()));
                }
                (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
            }
            v => return Err(bad(format!("unsupported .npy format version {v}"))),
        };
        let end = start
            .checked_add(header_len)
            .filter(|&e| e <= b.len())
            .ok_or_else(|| bad("header runs past the end of the file".into()))?;
        let header =
            std::str::from_utf8(&b[start..end]).map_err(|_| bad("header is not text".into()))?;
        let descr = dict_value(header, "descr")
            .ok_or_else(|| bad(format!("no 'descr' in header {header:?}")))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let elem = match descr {
            "<f4" => ElemType::F32,
            "<f2" => ElemType::F16,
            "<f8" => ElemType::F64,
            "|u1" | "<u1" => ElemType::U8,
            "<i4" => ElemType::I32,
            "<i8" => ElemType::I64,
            "<u4" => ElemType::U32,
            "<u8" => ElemType::U64,
            other => return Err(bad(format!("element type {other:?} is not supported: use little-endian float32/float16/float64, uint8 or int32/int64 (big-endian arrays must be converted)"))),
        };
        if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
            return Err(bad(
                "array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
            ));
        }
        let shape_text =
            dict_value(header, "shape").ok_or_else(|| bad("no 'shape' in header".into()))?;
        let inner = shape_text
            .trim()
            .trim_start_matches('(')
            .split(')')
            .next()
            .unwrap_or("");
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim_end_matches('L')
                    .parse::<usize>()
                    .map_err(|_| bad(format!("bad shape {shape_text:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let label = path.display().to_string();
        Self::finish(path, label, map, end, elem, shape)
    }

    fn open_safetensors(path: &Path, tensor: &str) -> Result<Self> {
        let map = storage::map_file(path)?;
        let (header_len, meta) =
            safetensors::SafeTensors::read_metadata(map.bytes()).map_err(|e| {
                Error::bad_input(path, "header", format!("invalid safetensors file: {e}"))
            })?;
        let info = meta.info(tensor).ok_or_else(|| {
            let mut names: Vec<String> = meta.tensors().keys().cloned().collect();
            names.sort();
            Error::bad_input(
                path,
                format!("tensor {tensor:?}"),
                format!("no such tensor (the file has: {})", names.join(", ")),
            )
        })?;
        use safetensors::Dtype;
        let elem = match info.dtype {
            Dtype::F32 => ElemType::F32,
            Dtype::F16 => ElemType::F16,
            Dtype::BF16 => ElemType::Bf16,
            Dtype::F64 => ElemType::F64,
            Dtype::U8 => ElemType::U8,
            Dtype::I32 => ElemType::I32,
            Dtype::I64 => ElemType::I64,
            Dtype::U32 => ElemType::U32,
            Dtype::U64 => ElemType::U64,
            other => {
                return Err(Error::bad_input(
                    path,
                    format!("tensor {tensor:?}"),
                    format!("element type {other:?} is not supported"),
                ))
            }
        };
        let base = 8 + header_len;
        let (s, e) = info.data_offsets;
        let label = format!("{}:{tensor}", path.display());
        let map_len = map.bytes().len();
        if base + e > map_len || s > e {
            return Err(Error::bad_input(
                path,
                format!("tensor {tensor:?}"),
                "data offsets run past the end of the file (truncated?)",
            ));
        }
        let arr = Self::finish(path, label, map, base + s, elem, info.shape.clone())?;
        if arr.data.end != base + e {
            return Err(Error::bad_input(
                path,
                format!("tensor {tensor:?}"),
                format!(
                    "shape {:?} does not match its {} data bytes",
                    info.shape,
                    e - s
                ),
            ));
        }
        Ok(arr)
    }

    fn finish(
        path: &Path,
        label: String,
        map: MappedFile,
        start: usize,
        elem: ElemType,
        shape: Vec<usize>,
    ) -> Result<Self> {
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let need = count
            .and_then(|c| c.checked_mul(elem.size()))
            .and_then(|n| n.checked_add(start));
        let have = map.bytes().len();
        match need {
            Some(n) if n <= have => Ok(Array {
                path: path.to_path_buf(),
                label,
                map,
                data: start..n,
                elem,
                shape,
            }),
            _ => Err(Error::bad_input(
                path,
                "data",
                format!(
                    "truncated: shape {shape:?} of {elem:?} needs {} data bytes, the file has {}",
                    need.map_or("too many".into(), |n| (n - start).to_string()),
                    have.saturating_sub(start)
                ),
            )),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` or `path:tensor`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The array shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn elem(&self) -> ElemType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts `out.len()` elements starting at element `start` to f32.
    pub fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        if !self.elem.is_float() {
            return Err(Error::bad_input(
                &self.path,
                "data",
                format!(
                    "{} holds {:?} values; vectors must be floating point",
                    self.label, self.elem
                ),
            ));
        }
        let size = self.elem.size();
        let b = &self.map.bytes()
            [self.data.start + start * size..self.data.start + (start + out.len()) * size];
        let converted = self.elem.decode_f32(b, out);
        debug_assert!(converted, "float types checked above");
        Ok(())
    }

    /// Reads a 1-D integer array (e.g. per-document token counts).
    pub fn read_u64s(&self) -> Result<Vec<u64>> {
        if !self.elem.is_int() || self.shape.len() != 1 {
            return Err(Error::bad_input(
                &self.path,
                "data",
                format!(
                    "{}: expected a 1-D integer array, found shape {:?} of {:?}",
                    self.label, self.shape, self.elem
                ),
            ));
        }
        let b = &self.map.bytes()[self.data.clone()];
        let neg = |i: usize| Error::bad_input(&self.path, format!("element {i}"), "negative count");
        match self.elem {
            ElemType::U8 => Ok(b.iter().map(|&v| v as u64).collect()),
            ElemType::U32 => Ok(b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4")) as u64)
                .collect()),
            ElemType::U64 => Ok(b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect()),
            ElemType::I32 => b
                .chunks_exact(4)
                .enumerate()
                .map(|(i, c)| {
                    u64::try_from(i32::from_le_bytes(c.try_into().expect("4"))).map_err(|_| neg(i))
                })
                .collect(),
            ElemType::I64 => b
                .chunks_exact(8)
                .enumerate()
                .map(|(i, c)| {
                    u64::try_from(i64::from_le_bytes(c.try_into().expect("8"))).map_err(|_| neg(i))
                })
                .collect(),
            _ => unreachable!("checked above"),
        }
    }
}

/// The text after `'key':` in a numpy header dict, up to the end of the dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}':");
    let pat2 = format!("\"{key}\":");
    let at = header
        .find(&pat1)
        .map(|i| i + pat1.len())
        .or_else(|| header.find(&pat2).map(|i| i + pat2.len()))?;
    let rest = header[at..].trim_start();
    if rest.starts_with('(') {
        return Some(&rest[..rest.find(')')? + 1]);
    }
    Some(rest.split(',').next()?.trim())
}

/// Writes a little-endian C-order `.npy` file (format 1.0) of f32 values, or of another numpy
/// `descr` with raw bytes. Used by `export`-style tools and by tests.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let mut out = npy_header(descr, shape);
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// The magic, version and header of a little-endian C-order `.npy` file (format 1.0) holding
/// `shape` values of numpy type `descr`; the raw data follows it.
pub fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Writes an f32 matrix as `.npy`.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_npy(path, "<f4", shape, bytemuck::cast_slice(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let a = Array::open(&p, None).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        let mut row = [0.0; 3];
        a.read_f32(3, &mut row).unwrap();
        assert_eq!(row, [4.0, 5.0, 6.0]);

        let bytes = std::fs::read(&p).unwrap();
        let t = dir.path().join("t.npy");
        std::fs::write(&t, &bytes[..bytes.len() - 4]).unwrap();
        let err = Array::open(&t, None).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("t.npy"), "{err}");

        let big = dir.path().join("b.npy");
        write_npy(&big, ">f4", &[1], &[0, 0, 0, 0]).unwrap();
        assert!(Array::open(&big, None)
            .unwrap_err()
            .to_string()
            .contains("big-endian"));

        let l = dir.path().join("l.npy");
        write_npy(&l, "<i8", &[2], bytemuck::cast_slice(&[3i64, 1])).unwrap();
        assert_eq!(
            Array::open(&l, None).unwrap().read_u64s().unwrap(),
            vec![3, 1]
        );
    }
}
