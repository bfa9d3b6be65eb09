//! Screening-codes sections (kind 21) from hostile bytes: open, verify and the code kernels must
//! return errors, never panic. Rows, dimension and metric are taken from the section's own header
//! (so the golden section is a valid seed), capped to keep runs fast.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::dtype::Metric;
use vellum::format::screen::ScreenView;
use vellum::linalg::codes::{dot_rows, max_query_value};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let dim = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    let rows = u64::from_le_bytes(data[8..16].try_into().unwrap());
    if dim > 4096 || rows > 1 << 16 {
        return;
    }
    let metric = match data[4] {
        2 => Metric::Cosine,
        3 => Metric::L2,
        _ => Metric::Ip,
    };
    // Sections are 64-aligned in the mapped file: copy into an 8-aligned buffer.
    let mut buf = vec![0u64; data.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..data.len()].copy_from_slice(data);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..data.len()];
    if let Ok(view) = ScreenView::open(bytes, Path::new("x.vseg"), 0, rows, dim, metric) {
        let row = |r: usize| Ok((0..dim).map(|j| ((r * 31 + j * 7) % 13) as f32 - 6.0).collect());
        let _ = view.verify(Path::new("x.vseg"), 0, &row);
        let m = max_query_value(dim) as i16;
        let q: Vec<i16> = (0..dim).map(|j| if j % 2 == 0 { m } else { -m }).collect();
        let mut out = vec![0i32; rows as usize];
        dot_rows(&q, view.codes, &mut out);
    }
});
