//! `export`: a dense field's live vectors as one `.npy` matrix plus an id file (one id per line,
//! row i ↔ line i), streamed, so memory stays flat whatever the collection size.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::collection::Collection;
use crate::dtype::VectorRef;
use crate::error::{Error, Result};
use crate::ingest::array::npy_header;
use crate::schema::FieldKind;

/// What [`export_dense`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    /// Rows (live documents) written.
    pub rows: u64,
    /// Vector dimension.
    pub dim: usize,
}

/// Writes the live documents' vectors of dense field `field` to `vectors` (`.npy`, `[N, dim]`;
/// `<f4` for f32 and bf16 fields, `<f2` for f16) and their ids to `ids`, in storage order.
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
    let (dim, dtype) = match &c.schema().fields[fi].kind {
        FieldKind::Dense { dim, dtype, .. } => (*dim as usize, *dtype),
        other => {
            return Err(Error::InvalidInput(format!(
                "field {field:?} is {other:?}; export writes dense fields"
            )))
        }
    };
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
    vout.write_all(&npy_header(descr, &[rows as usize, dim]))
        .map_err(vio)?;
    let mut written = 0u64;
    c.for_each_live(|d| {
        match d.dense(field)? {
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
    Ok(ExportStats { rows: written, dim })
}
