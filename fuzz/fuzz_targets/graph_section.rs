//! HNSW graph sections from hostile bytes: open, verify and search must return errors, never
//! panic or loop forever.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::dtype::Metric;
use vellum::hnsw::{search_graph, GraphView};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let rows = u64::from(u16::from_le_bytes([data[0], data[1]]));
    let metric = [Metric::Ip, Metric::Cosine, Metric::L2][data[2] as usize % 3];
    // Sections are 64-aligned in the mapped file: copy into an 8-aligned buffer.
    let body = &data[3..];
    let mut buf = vec![0u64; body.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..body.len()].copy_from_slice(body);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..body.len()];
    if let Ok(g) = GraphView::open(bytes, Path::new("x.vseg"), 0, rows, metric) {
        let _ = g.verify();
        let score = |r: u32| -((r as f32) - 17.0).abs();
        let _ = search_graph(&g, 5, 16, score, |r| r % 3 != 0);
    }
});
