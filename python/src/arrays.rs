//! NumPy inputs read in place when they can be, and outputs built without per-element calls.

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// An `f32` array given by Python: borrowed in place when it is a C-contiguous float32 array,
/// else converted once (`numpy.ascontiguousarray(x, dtype=float32)` semantics).
pub struct F32Input<'py> {
    array: PyReadonlyArrayDyn<'py, f32>,
    /// Whether reading the input needed a copy.
    pub copied: bool,
}

impl<'py> F32Input<'py> {
    /// Reads `obj` (any array-like of numbers). A C-contiguous, aligned float32 array is
    /// borrowed; anything else goes through `numpy.require(obj, float32, ["C", "A"])` once.
    pub fn new(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
            if a.is_c_contiguous() {
                let array = a.readonly();
                // `as_slice` also refuses misaligned data (a view at an odd byte offset).
                if array.as_slice().is_ok() {
                    return Ok(F32Input {
                        array,
                        copied: false,
                    });
                }
            }
        }
        let py = obj.py();
        let np = py.import("numpy")?;
        let converted = np
            .getattr("require")?
            .call1((obj, np.getattr("float32")?, vec!["C", "A"]))
            .map_err(|e| {
                if e.is_instance_of::<PyTypeError>(py) || e.is_instance_of::<PyValueError>(py) {
                    crate::errors::invalid(format!(
                        "expected an array of numbers (convertible to float32): {e}"
                    ))
                } else {
                    e
                }
            })?;
        let a = converted.cast_into::<PyArrayDyn<f32>>()?;
        Ok(F32Input {
            array: a.readonly(),
            copied: true,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        self.array.as_slice().expect("C-contiguous by construction")
    }
}

/// How the binding reads an array: `("borrowed" | "copied", address of the values read)`. The
/// same path every search and add takes; tests compare the address with
/// `array.ctypes.data` to check that a C-contiguous float32 input is read without a copy.
#[pyfunction]
pub fn matrix_source(obj: &Bound<'_, PyAny>) -> PyResult<(&'static str, usize)> {
    let input = F32Input::new(obj)?;
    let kind = if input.copied { "copied" } else { "borrowed" };
    Ok((kind, input.values().as_ptr() as usize))
}

/// A float32 NumPy array of `shape` from row-major `values`.
pub fn f32_array<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let flat = numpy::PyArray1::from_vec(py, values);
    flat.reshape(shape.to_vec())
}
