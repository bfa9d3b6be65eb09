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
