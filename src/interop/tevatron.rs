//! Tevatron's encoded corpus shards: `pickle.dump((reps, lookup_indices), f)`, where `reps` is a
//! numpy array `[N, dim]` (float32 or float16) and `lookup_indices` the N document ids.
//!
//! Read with `serde-pickle` (no Python): numpy pickles an array as a call to a numpy global whose
//! state holds the shape, the dtype's byte order and the raw little-endian bytes (protocol ≤ 4:
//! `_reconstruct` + state `(1, shape, dtype, fortran, bytes)`; protocol 5: `_frombuffer(bytes,
//! dtype, shape, order)`). The pickle keeps the dtype's type code out of reach of a plain decoder,
//! so the element type is taken from the byte count per element: 4 → float32, 2 → float16,
//! 8 → float64 (encoders emit floats).

use std::path::Path;

use serde_pickle::{DeOptions, Value};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::ingest::array::ElemType;
use crate::ingest::Mode;
use crate::schema::FieldKind;
use crate::writer::Writer;

/// One decoded shard.
#[derive(Debug, Clone, PartialEq)]
pub struct TevatronShard {
    /// Document ids (integers become their decimal strings).
    pub ids: Vec<String>,
    /// Vector dimension.
    pub dim: usize,
    /// `ids.len() × dim` values, row-major.
    pub vectors: Vec<f32>,
}

fn bad(path: &Path, detail: impl Into<String>) -> Error {
    Error::bad_input(path, "pickle", detail.into())
}

fn as_usize(v: &Value) -> Option<usize> {
    match v {
        Value::I64(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn shape_of(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(t) | Value::List(t) => t.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// Shape and raw bytes of a pickled numpy array, in either layout numpy writes.
fn array_parts<'a>(path: &Path, v: &'a Value) -> Result<(Vec<usize>, &'a [u8])> {
    let Value::Tuple(t) = v else {
        return Err(bad(path, "the first element is not a numpy array"));
    };
    let byte_order_ok = |dtype: &Value| match dtype {
        Value::Tuple(d) => !matches!(d.get(1), Some(Value::String(o)) if o == ">"),
        _ => true,
    };
    let (shape, dtype, fortran, bytes) = match t.as_slice() {
        // protocol <= 4: (version, shape, dtype, is_fortran, raw bytes)
        [Value::I64(_), shape, dtype, Value::Bool(f), Value::Bytes(b)] => (shape, dtype, *f, b),
        // protocol 5: (raw bytes, dtype, shape, order)
        [Value::Bytes(b), dtype, shape, Value::String(order)] => (shape, dtype, order == "F", b),
        _ => return Err(bad(path, "the first element is not a numpy array")),
    };
    let shape =
        shape_of(shape).ok_or_else(|| bad(path, "array shape is not a tuple of integers"))?;
    if fortran {
        return Err(bad(path, "array is in Fortran order; expected C order"));
    }
    if !byte_order_ok(dtype) {
        return Err(bad(path, "array is big-endian; expected little-endian"));
    }
    Ok((shape, bytes.as_slice()))
}

/// Decodes one Tevatron pickle.
pub fn read_tevatron_pickle(path: &Path) -> Result<TevatronShard> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let value = serde_pickle::value_from_reader(
        std::io::BufReader::new(file),
        DeOptions::new()
            .replace_unresolved_globals()
            .keep_restore_state(),
    )
    .map_err(|e| bad(path, format!("not a readable pickle: {e}")))?;
    let Value::Tuple(top) = &value else {
        return Err(bad(path, "expected a tuple (reps, lookup_indices)"));
    };
    let [reps, lookup] = top.as_slice() else {
        return Err(bad(
            path,
            format!(
                "expected a tuple of 2 (reps, lookup_indices), found {} elements",
                top.len()
            ),
        ));
    };
    let (shape, bytes) = array_parts(path, reps)?;
    let [n, dim] = shape[..] else {
        return Err(bad(
            path,
            format!("reps must be a matrix [N, dim], found shape {shape:?}"),
        ));
    };
    let ids: Vec<String> = match lookup {
        Value::List(l) | Value::Tuple(l) => l
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::I64(x) => Ok(x.to_string()),
                other => Err(bad(
                    path,
                    format!("lookup index {i} is {other:?}, not a string or integer"),
                )),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad(path, "lookup_indices is not a list")),
    };
    if ids.len() != n {
        return Err(bad(
            path,
            format!("{} lookup indices for {n} vectors", ids.len()),
        ));
    }
    let count = n * dim;
    if count == 0 || bytes.len() % count != 0 {
        return Err(bad(
            path,
            format!(
                "{} data bytes do not fill a [{n}, {dim}] array",
                bytes.len()
            ),
        ));
    }
    // The pickle hides numpy's type code: the element type follows from bytes per element.
    let elem = match bytes.len() / count {
        4 => ElemType::F32,
        2 => ElemType::F16,
        8 => ElemType::F64,
        other => {
            return Err(bad(
                path,
                format!("{other} bytes per element; expected a float16, float32 or float64 array"),
            ))
        }
    };
    let mut vectors = vec![0f32; count];
    elem.decode_f32(bytes, &mut vectors);
    if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_input(
            path,
            format!("row {}", i / dim),
            format!(
                "document {:?}: element {} is {} (vectors must be finite)",
                ids[i / dim],
                i % dim,
                vectors[i]
            ),
        ));
    }
    Ok(TevatronShard { ids, dim, vectors })
}

/// Adds (or upserts) the documents of Tevatron pickles into `collection`, with their vectors in
/// dense field `field`; other fields of the schema must be absent (a collection made for it). Does
/// not commit. Returns the number of documents added.
pub fn import_tevatron(
    writer: &mut Writer,
    collection: &str,
    field: &str,
    paths: &[impl AsRef<Path>],
    mode: Mode,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let schema = writer.schema_of(collection)?;
    let spec = schema
        .fields
        .iter()
        .find(|f| f.name == field)
        .ok_or_else(|| Error::NoSuchField {
            collection: collection.into(),
            field: field.into(),
            available: schema.field_names(),
        })?;
    let dim = match spec.kind {
        FieldKind::Dense { dim, .. } => dim as usize,
        _ => {
            return Err(Error::InvalidInput(format!(
                "field {field:?} ({spec}) is not a dense field"
            )))
        }
    };
    let mut done = 0u64;
    for path in paths {
        let path = path.as_ref();
        let shard = read_tevatron_pickle(path)?;
        if shard.dim != dim {
            return Err(bad(
                path,
                format!(
                    "vectors have dimension {}, but field {field:?} ({spec}) has dimension {dim}",
                    shard.dim
                ),
            ));
        }
        for (i, id) in shard.ids.iter().enumerate() {
            let doc = Document::new(id.clone()).with_dense(
                field,
                shard.vectors[i * shard.dim..(i + 1) * shard.dim].to_vec(),
            );
            match mode {
                Mode::Add => writer.add(collection, doc),
                Mode::Upsert => writer.upsert(collection, doc),
            }
            .map_err(|e| Error::bad_input(path, format!("row {i}"), e.to_string()))?;
            done += 1;
            if done.is_multiple_of(4096) {
                progress(done);
            }
        }
    }
    progress(done);
    Ok(done)
}
