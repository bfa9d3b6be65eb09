//! PLAID sections (kind 22) from hostile bytes: open, verify and the candidate stages must return
//! errors, never panic. Dimension, rows and tokens come from the section's own header (so the
//! golden section is a valid seed), capped to keep runs fast; each row gets an equal share of
//! the tokens.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::format::plaid::PlaidView;
use vellum::plaid::search::candidates;
use vellum::plaid::PlaidSearch;

fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let dim = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    let rows = u64::from_le_bytes(data[16..24].try_into().unwrap());
    let tokens = u64::from_le_bytes(data[24..32].try_into().unwrap());
    if dim == 0 || dim > 1024 || rows == 0 || rows > 1 << 12 || tokens > 1 << 16 {
        return;
    }
    // Sections are 64-aligned in the mapped file: copy into an 8-aligned buffer.
    let mut buf = vec![0u64; data.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..data.len()].copy_from_slice(data);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..data.len()];
    let Ok(view) = PlaidView::open(bytes, Path::new("x.vseg"), 0, rows, tokens, dim) else {
        return;
    };
    let per = tokens as usize / rows as usize;
    let range = |r: usize| {
        let end = if r + 1 == rows as usize { tokens as usize } else { (r + 1) * per };
        Ok(r * per..end)
    };
    let _ = view.verify(Path::new("x.vseg"), 0, rows as usize, &range);
    let q: Vec<f32> = (0..2 * dim).map(|j| ((j * 7) % 5) as f32 - 2.0).collect();
    let p = PlaidSearch::for_k(3);
    let _ = candidates(&view, Path::new("x.vseg"), &q, &p, 3, &|r| range(r as usize), &|_| true);
});
