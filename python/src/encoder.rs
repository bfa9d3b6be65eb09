//! `_vellum.NativeEncoder`: a built-in encoder used on its own (no database).

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyList;
use vellum::encode::{Encoder, EncoderOptions, ModelDir, OutputKind};

use crate::arrays::f32_array;
use crate::errors::IntoPy;

/// A loaded encoder (wrapped by `vellum.Encoder`).
#[pyclass(module = "vellum._vellum", frozen)]
pub struct NativeEncoder {
    encoder: Box<dyn Encoder>,
}

#[pymethods]
impl NativeEncoder {
    /// Loads the model folder (or Hugging Face cache id) `source` with `options`
    /// (`pooling`, `normalize`, `prefix`, `max_length`, `dims`, `batch_size`, ...).
    #[new]
    #[pyo3(signature = (source, options))]
    fn new(py: Python<'_>, source: String, options: HashMap<String, String>) -> PyResult<Self> {
        let encoder = py
            .detach(|| -> vellum::Result<Box<dyn Encoder>> {
                let mut o = EncoderOptions::default();
                for (k, v) in &options {
                    o.set(k, v)?;
                }
                vellum::encode::load(&ModelDir::resolve(&source)?, &o)
            })
            .py()?;
        Ok(NativeEncoder { encoder })
    }

    /// Encodes texts: a float32 array `[n, dims]` for a dense encoder, a list of `[tokens_i,
    /// dims]` arrays for a multi-vector one.
    fn encode<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let e = &*self.encoder;
        let out = py
            .detach(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                e.encode_texts(&refs)
            })
            .py()?;
        encoded_to_py(py, self.encoder.output(), out)
    }

    /// Values per output vector.
    #[getter]
    fn dims(&self) -> usize {
        self.encoder.dims()
    }

    /// `"dense"` or `"multi"`.
    #[getter]
    fn output(&self) -> &'static str {
        self.encoder.output().field_kind_name()
    }

    /// The record a field would keep for this encoder (source, fingerprint, options), as JSON.
    fn record_json(&self) -> String {
        serde_json::to_string(self.encoder.record()).expect("records serialize")
    }
}

/// An encoder's output as NumPy: `[n, dims]` for dense output, a list of `[tokens_i, dims]`
/// arrays for multi-vector output.
pub fn encoded_to_py(
    py: Python<'_>,
    output: OutputKind,
    out: vellum::encode::Encoded,
) -> PyResult<Bound<'_, PyAny>> {
    let dims = out.dims;
    match output {
        OutputKind::Dense => {
            let n = out.rows.len();
            Ok(f32_array(py, out.values, &[n, dims])?.into_any())
        }
        _ => {
            let list = PyList::empty(py);
            for (v, &r) in out.per_input().zip(&out.rows) {
                list.append(f32_array(py, v.to_vec(), &[r, dims])?)?;
            }
            Ok(list.into_any())
        }
    }
}
