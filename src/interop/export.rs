//! `export`: a dense or tensor field's live values as one `.npy` array plus an id file (one id per
//! line, row i ↔ line i), streamed, so memory stays flat whatever the collection size. A tensor
//! field (cached image features, say) is the feature cache a training job reads.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::collection::Collection;
use crate::dtype::VectorRef;
use crate::error::{Error, Result};
use crate::ingest::array::npy_header;
use crate::schema::FieldKind;

/// What [`export_dense`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportStats {
    /// Rows (live documents) written.
    pub rows: u64,
    /// Values per row (the dense dimension, or the tensor's element count).
    pub dim: usize,
    /// The `.npy` shape written: `[rows, dim]` for a dense field, `[rows, *shape]` for a tensor.
    pub shape: Vec<usize>,
}

/// Writes the live documents' values of dense or tensor field `field` to `vectors` (`.npy`,
/// `[N, dim]` or `[N, *shape]`; `<f4` for f32 and bf16 fields, `<f2` for f16) and their ids to
/// `ids`, in storage order.
///
/// ```
/// # use vellum::*;
/// # let dir = tempfile::tempdir().unwrap();
/// # let db = Database::create(dir.path().join("db")).unwrap();
/// # let mut w = db.writer().unwrap();
/// # w.create_collection("c", Schema::new().with_field(FieldSpec::parse("e:dense:2:f32:ip").unwrap())).unwrap();
/// # w.add("c", Document::new("a").with_dense("e", vec![1.0, 2.0])).unwrap();
/// # w.commit().unwrap();
/// let snap = db.snapshot().unwrap();
/// let (npy, ids) = (dir.path().join("e.npy"), dir.path().join("ids.txt"));
/// let stats = vellum::interop::export_dense(snap.collection("c").unwrap(), "e", &npy, &ids).unwrap();
/// assert_eq!((stats.rows, stats.dim), (1, 2));
/// assert_eq!(std::fs::read_to_string(&ids).unwrap(), "a\n");
/// ```
pub fn export_dense(
    c: &Collection,
    field: &str,
    vectors: &Path,
    ids: &Path,
) -> Result<ExportStats> {
    let fi = c.field_index(field)?;
    let (row_shape, dtype): (Vec<usize>, _) = match &c.schema().fields[fi].kind {
        FieldKind::Dense { dim, dtype, .. } => (vec![*dim as usize], *dtype),
        FieldKind::Tensor { shape, dtype } => (shape.iter().map(|&d| d as usize).collect(), *dtype),
        FieldKind::Multi { .. } => {
            return Err(Error::wrong_kind(
                c.name(),
                field,
                "multi",
                "export writes dense and tensor fields (one fixed-size row per document)",
            ))
        }
    };
    let dim: usize = row_shape.iter().product();
    let descr = if dtype == crate::dtype::DType::F16 {
        "<f2"
    } else {
        "<f4"
    };
    let rows = c.len();
    let create = |p: &Path| {
        std::fs::File::create(p)
            .map(BufWriter::new)
            .map_err(|e| Error::io(p, e))
    };
    let (mut vout, mut iout) = (create(vectors)?, create(ids)?);
    let vio = |e| Error::io(vectors, e);
    let mut shape = vec![rows as usize];
    shape.extend(&row_shape);
    vout.write_all(&npy_header(descr, &shape)).map_err(vio)?;
    let mut written = 0u64;
    c.for_each_live(|d| {
        let values = match row_shape.len() {
            1 if matches!(c.schema().fields[fi].kind, FieldKind::Dense { .. }) => d.dense(field)?,
            _ => d.tensor(field)?.data,
        };
        match values {
            VectorRef::F16(v) => vout.write_all(bytemuck::cast_slice(v)),
            other => vout.write_all(bytemuck::cast_slice(&other.to_f32_vec())),
        }
        .map_err(vio)?;
        writeln!(iout, "{}", d.id()?).map_err(|e| Error::io(ids, e))?;
        written += 1;
        Ok(())
    })?;
    debug_assert_eq!(written, rows);
    vout.flush().map_err(vio)?;
    iout.flush().map_err(|e| Error::io(ids, e))?;
    Ok(ExportStats {
        rows: written,
        dim,
        shape,
    })
}
