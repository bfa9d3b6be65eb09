//! Command-line flags of the comparison harnesses (`--name value`), shared by `timing.rs` and
//! `hnsw_timing.rs`.

/// The value after `name`, else `default`; panics naming the flag when neither exists.
pub fn arg(args: &[String], name: &str, default: Option<&str>) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or(default.map(str::to_string))
        .unwrap_or_else(|| panic!("missing {name}"))
}
