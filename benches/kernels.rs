//! Kernel benches: each SIMD kernel beside its scalar twin, the blocked matrix product, top-k,
//! the HNSW navigation kernels beside simsimd's.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vellum::linalg::gemm::{matmul_nt, matmul_nt_scalar};
use vellum::linalg::similarity::{scalar, similarity, PreparedQuery};
use vellum::search::topk::{Candidate, TopK};
use vellum::{DType, Metric, VectorRef};

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 2000) as f32 / 1000.0
                - 1.0
        })
        .collect()
}

fn aligned(dtype: DType, values: &[f32]) -> Vec<u64> {
    let mut bytes = Vec::new();
    dtype.encode_into(values, &mut bytes);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    words
}

fn similarity_kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("similarity");
    for dim in [128usize, 384, 768] {
        let q = data(dim, 1);
        let x = data(dim, 2);
        g.throughput(Throughput::Elements(dim as u64));
        for dtype in [DType::F32, DType::F16, DType::Bf16] {
            let words = aligned(dtype, &x);
            let view =
                VectorRef::from_bytes(dtype, &bytemuck::cast_slice(&words)[..dim * dtype.size()])
                    .unwrap();
            let pq = PreparedQuery::new(&q, dtype);
            for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
                g.bench_with_input(
                    BenchmarkId::new(format!("simd/{dtype}/{metric}"), dim),
                    &dim,
                    |b, _| b.iter(|| similarity(metric, black_box(&pq), black_box(view))),
                );
            }
        }
        for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
            g.bench_with_input(
                BenchmarkId::new(format!("scalar/f32/{metric}"), dim),
                &dim,
                |b, _| b.iter(|| scalar::similarity(metric, black_box(&q), black_box(&x))),
            );
        }
    }
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_nt");
    let (m, n, d) = (256, 1024, 384);
    let q = data(m * d, 3);
    let x = data(n * d, 4);
    let mut out = vec![0.0; m * n];
    g.throughput(Throughput::Elements((2 * m * n * d) as u64));
    g.bench_function("gemm/256x1024x384", |b| {
        b.iter(|| matmul_nt(black_box(&q), m, black_box(&x), n, d, &mut out))
    });
    let (m, n) = (16, 64);
    g.throughput(Throughput::Elements((2 * m * n * d) as u64));
    g.bench_function("gemm/16x64x384", |b| {
        b.iter(|| matmul_nt(black_box(&q), m, black_box(&x), n, d, &mut out))
    });
    {
        use vellum::linalg::tile::{
            pack_panels, pack_queries, pairs, tile, tile_scalar, Affine, MR, NR,
        };
        let (mut packed, mut qp) = (Vec::new(), Vec::new());
        pack_panels(&x, NR, d, &mut packed);
        pack_queries(&q, MR, d, &mut qp);
        let mut out = [0.0f32; MR * NR];
        g.throughput(Throughput::Elements((2 * MR * NR * d) as u64));
        let map = Affine {
            scale: &[1.0; NR],
            bias: &[0.0; NR],
            weight: &[0.0; NR],
            q_bias: &[0.0; MR],
            q_weight: &[0.0; MR],
        };
        if vellum::linalg::tile::available() {
            g.bench_function("screen_bf16/8x32x384", |b| {
                b.iter(|| {
                    tile(
                        black_box(&qp),
                        pairs(d),
                        black_box(&packed),
                        map,
                        &[0.0; MR],
                        &mut out,
                    )
                })
            });
        }
        g.bench_function("screen_bf16_scalar/8x32x384", |b| {
            b.iter(|| {
                tile_scalar(
                    black_box(&qp),
                    pairs(d),
                    black_box(&packed),
                    map,
                    &[0.0; MR],
                    &mut out,
                )
            })
        });
    }
    g.bench_function("scalar/16x64x384", |b| {
        b.iter(|| matmul_nt_scalar(black_box(&q), m, black_box(&x), n, d, &mut out))
    });
    g.finish();
}

fn topk(c: &mut Criterion) {
    let scores = data(100_000, 5);
    let mut g = c.benchmark_group("topk");
    g.throughput(Throughput::Elements(scores.len() as u64));
    for k in [10usize, 100, 1000] {
        g.bench_with_input(BenchmarkId::new("push", k), &k, |b, &k| {
            b.iter(|| {
                let mut t = TopK::new(k);
                for (i, s) in scores.iter().enumerate() {
                    if *s >= t.threshold() {
                        t.push(Candidate {
                            score: *s,
                            segment_ord: 0,
                            row: i as u32,
                        });
                    }
                }
                t.into_sorted()
            })
        });
    }
    g.finish();
}

/// The screening-code kernels at every level this CPU has: one i16 query against 4096 rows
/// (single-query search) and 64 u8 queries against 256 rows (batches; row-major and packed in
/// panels), 384 dimensions.
fn code_kernels(c: &mut Criterion) {
    use vellum::linalg::codes::{dot_block_at, dot_rows_at, max_query_value, MAX_U8_QUERY};
    use vellum::linalg::packed_codes::{dot_block_packed_at, pack_panels};
    use vellum::linalg::simd::available_levels;
    let dim = 384;
    let bytes = |n: usize, seed: u32| -> Vec<i8> {
        data(n, seed).iter().map(|v| (v * 127.0) as i8).collect()
    };
    let mut g = c.benchmark_group("codes");
    let (rows, codes) = (4096, bytes(4096 * dim, 3));
    let m = max_query_value(dim) as f32;
    let q: Vec<i16> = data(dim, 5).iter().map(|v| (v * m) as i16).collect();
    let mut out = vec![0i32; rows];
    g.throughput(Throughput::Elements((rows * dim) as u64));
    for level in available_levels() {
        g.bench_function(format!("dot_rows/{}", level.name()), |b| {
            b.iter(|| dot_rows_at(level, black_box(&q), &codes, &mut out))
        });
    }
    let (nq, n) = (64, 256);
    let qs: Vec<u8> = data(nq * dim, 7)
        .iter()
        .map(|v| ((v + 1.0) / 2.0 * MAX_U8_QUERY as f32) as u8)
        .collect();
    let block = bytes(n * dim, 9);
    let mut out = vec![0i32; nq * n];
    g.throughput(Throughput::Elements((nq * n * dim) as u64));
    for level in available_levels() {
        g.bench_function(format!("dot_block/{}", level.name()), |b| {
            b.iter(|| dot_block_at(level, black_box(&qs), &block, dim, &mut out))
        });
    }
    // The same products over panel-packed codes (packing timed apart: once per block of a batch).
    let mut packed = Vec::new();
    // Packed here too: a filter may skip the packing bench below.
    pack_panels(&block, dim, &mut packed);
    g.throughput(Throughput::Bytes((n * dim) as u64));
    g.bench_function("pack_panels", |b| {
        b.iter(|| pack_panels(black_box(&block), dim, &mut packed))
    });
    g.throughput(Throughput::Elements((nq * n * dim) as u64));
    for level in available_levels() {
        g.bench_function(format!("dot_block_packed/{}", level.name()), |b| {
            b.iter(|| dot_block_packed_at(level, black_box(&qs), &packed, dim, n, &mut out))
        });
    }
    g.finish();
}

/// The HNSW navigation kernels at every level this CPU has, beside simsimd's i8 kernels (which
/// they replace on the graph search's hot path): one query row against 4096 rows of 384
/// dimensions (1.5 MiB: L2 and L3), one call per row as a traversal makes them.
fn nav_kernels(c: &mut Criterion) {
    use simsimd::SpatialSimilarity;
    use vellum::linalg::nav::Kernel;
    use vellum::linalg::simd::available_levels;
    let dim = 384;
    let rows = 4096;
    let bytes = |n: usize, seed: u32| -> Vec<i8> {
        data(n, seed).iter().map(|v| (v * 127.0) as i8).collect()
    };
    let (q, codes) = (bytes(dim, 11), bytes(rows * dim, 13));
    let mut g = c.benchmark_group("nav_l2sq_i8");
    g.throughput(Throughput::Elements(rows as u64));
    for level in available_levels() {
        let k = Kernel::at(level);
        g.bench_function(level.name(), |b| {
            b.iter(|| {
                codes
                    .chunks_exact(dim)
                    .map(|x| k.l2sq(black_box(&q), x))
                    .fold(0u32, u32::wrapping_add)
            })
        });
    }
    g.bench_function("simsimd", |b| {
        b.iter(|| {
            codes
                .chunks_exact(dim)
                .map(|x| <i8 as SpatialSimilarity>::l2sq(black_box(&q), x).unwrap_or(0.0) as u32)
                .fold(0u32, u32::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    similarity_kernels,
    matmul,
    topk,
    code_kernels,
    nav_kernels
);
criterion_main!(benches);
