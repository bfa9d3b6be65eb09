//! Segment decoding of hostile bytes: open, every accessor, lookups and the full verify must
//! return errors, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::format::segment::Segment;
use vellum::FieldKind;

fuzz_target!(|data: &[u8]| {
    let Ok(seg) = Segment::from_bytes(Path::new("fuzz.vseg"), 0, data) else {
        return;
    };
    let _ = seg.verify();
    let _ = seg.find("doc-1");
    for row in 0..seg.rows().min(64) {
        let _ = (seg.doc_id(row), seg.text(row), seg.metadata(row));
        for (fi, f) in seg.schema().fields.iter().enumerate() {
            match f.kind {
                FieldKind::Multi { .. } => {
                    let _ = seg.multi_row(fi, row);
                }
                _ => {
                    let _ = seg.fixed_row(fi, row).first_non_finite();
                }
            }
        }
    }
});
