//! `vellum._vellum`: the native half of the `vellum` Python package.
//!
//! The Python modules in `python/vellum/` are the public API (docstrings, defaults, NumPy
//! conveniences, the Arrow form, Ray); this crate is the thin layer that moves data between NumPy
//! and the Rust library and releases the GIL around every long call. Errors become the Python
//! exceptions of `vellum.errors` ([`errors`]).

mod arrays;
mod database;
mod encoder;
mod errors;
mod eval;
mod merge;
mod shards;
mod train;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _vellum(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<database::NativeDatabase>()?;
    m.add_class::<encoder::NativeEncoder>()?;
    m.add_class::<shards::NativeShardSet>()?;
    m.add_function(wrap_pyfunction!(eval::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(eval::write_run, m)?)?;
    m.add_function(wrap_pyfunction!(merge::merge_shard_results, m)?)?;
    m.add_function(wrap_pyfunction!(arrays::matrix_source, m)?)?;
    m.add_function(wrap_pyfunction!(database::verify, m)?)?;
    m.add_function(wrap_pyfunction!(database::field_specs, m)?)?;
    m.add_function(wrap_pyfunction!(database::encoder_differences, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
