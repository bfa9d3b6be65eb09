//! Helpers shared by the CLI test binaries: run the `vellum` binary and check its outcome.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `vellum ARGS` in `dir`.
pub fn vellum(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vellum"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Runs and expects success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vellum(dir, args);
    assert!(
        out.status.success(),
        "vellum {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects exit status 1 with a one-line error; returns stderr.
pub fn fail(dir: &Path, args: &[&str]) -> String {
    let out = vellum(dir, args);
    assert_eq!(out.status.code(), Some(1), "vellum {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    err
}

/// Runs `vellum` with a whitespace-separated command line (arguments without spaces) and
/// expects success; returns stdout.
pub fn ok_line(dir: &Path, line: &str) -> String {
    ok(dir, &line.split_whitespace().collect::<Vec<_>>())
}

/// Runs `vellum` with a whitespace-separated command line and expects a one-line error; returns
/// stderr.
pub fn fail_line(dir: &Path, line: &str) -> String {
    fail(dir, &line.split_whitespace().collect::<Vec<_>>())
}

/// Pseudo-random values in [-0.5, 0.5) (xorshift; no ties among scores in practice).
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
