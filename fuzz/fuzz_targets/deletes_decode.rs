//! Tombstone-file decoding of hostile bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::format::deletes::DeleteBitmap;

fuzz_target!(|data: &[u8]| {
    let rows = data.first().map_or(0, |b| *b as u32 * 3);
    let rest = data.get(1..).unwrap_or(&[]);
    for full in [false, true] {
        if let Ok(bm) = DeleteBitmap::decode(Path::new("x.vdel"), rest, 0, rows, full) {
            for r in 0..rows + 2 {
                let _ = bm.contains(r);
            }
        }
    }
});
