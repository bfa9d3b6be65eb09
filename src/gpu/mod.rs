//! NVIDIA GPUs (feature `cuda`): the device, its memory, cuBLAS products and vellum's own kernels
//! (`kernels.cu`: top-k selection, MaxSim), compiled by NVRTC for the device at first use.
//!
//! Everything CUDA is loaded at run time (cudarc's dynamic loading): a build with the feature
//! needs no CUDA toolkit, and on a machine without the driver, cuBLAS or NVRTC, [`Gpu::open`]
//! returns [`Error::Device`] naming the missing library, never a crash. Needed at run time:
//! `libcuda.so.1` (the driver), `libcublas.so.13` / `libcublasLt.so.13` and `libnvrtc.so.13`
//! (CUDA 13; the PyPI wheels `nvidia-cublas` and `nvidia-cuda-nvrtc` ship them).
//!
//! This layer knows devices and matrices, not collections: [`crate::search`] uploads fields and
//! turns what the kernels select into exact results.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use parking_lot::Mutex;

use crate::error::{Error, Result};

mod staging;

/// The kernels' source (CUDA C, no headers).
pub const KERNELS: &str = include_str!("kernels.cu");

/// Threads per block of the selection kernel.
const SELECT_THREADS: u32 = 256;
/// Longest running list of the selection kernel: its buffer (`CAP` = 4096 entries in
/// `kernels.cu`) minus what one pass of a block adds (256 threads × 2).
pub const MAX_LIST: usize = 2048;
/// Threads per block of the MaxSim kernels.
const MAXSIM_THREADS: u32 = 128;
/// Shared memory a MaxSim block may use without opting in (every CUDA device); [`Gpu::open`]
/// raises the MaxSim kernels' limit to the device's opt-in maximum ([`Gpu::maxsim_shared`]).
pub const MAXSIM_SHARED: usize = 48 * 1024;

/// Element type of a matrix on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuType {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl GpuType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            GpuType::F32 => 4,
            GpuType::F16 | GpuType::Bf16 => 2,
        }
    }

    fn cuda(self) -> blas_sys::cudaDataType_t {
        match self {
            GpuType::F32 => blas_sys::cudaDataType_t::CUDA_R_32F,
            GpuType::F16 => blas_sys::cudaDataType_t::CUDA_R_16F,
            GpuType::Bf16 => blas_sys::cudaDataType_t::CUDA_R_16BF,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One GPU, opened once per process and shared ([`Gpu::open`]).
pub struct Gpu {
    ordinal: usize,
    name: String,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    select: CudaFunction,
    clear: CudaFunction,
    maxsim_all: [CudaFunction; 3],
    maxsim_pairs: [CudaFunction; 3],
    /// One f32 of device memory: the affine arguments of a selection without affine map.
    dummy: CudaSlice<f32>,
    /// Dynamic shared memory a MaxSim block may use on this device.
    maxsim_shared: usize,
    module: Arc<cudarc::driver::CudaModule>,
    /// Page-locked staging buffers ([`Gpu::upload_staged`], [`Gpu::download_staged`]).
    staging: Staging,
}

/// Page-locked staging buffers of both directions ([`staging`]).
struct Staging {
    /// Host → device (write-combined: the host only writes them). A pass uploads six arrays,
    /// and two passes may be in flight.
    up: staging::Pool<u32>,
    /// Device → host.
    down: staging::Pool<f32>,
}

impl Staging {
    fn new() -> Self {
        Staging {
            up: staging::Pool::new(16, cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED),
            down: staging::Pool::new(4, 0),
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{} {})", self.ordinal, self.name)
    }
}

fn device_error(ordinal: usize, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device(format!("cuda:{ordinal}: {what}: {e}"))
}

/// Whether the CUDA driver library can be loaded on this machine (always true in a build that
/// links CUDA: such a binary does not start without it).
pub fn driver_present() -> bool {
    #[cfg(feature = "cuda")]
    // SAFETY: opens the shared library (dlopen) and reports whether it was found; no CUDA call.
    return unsafe { cudarc::driver::sys::is_culib_present() };
    #[cfg(not(feature = "cuda"))]
    true
}

/// Whether NVRTC (the run-time compiler of vellum's kernels) can be loaded on this machine.
pub fn nvrtc_present() -> bool {
    #[cfg(feature = "cuda")]
    // SAFETY: as in `driver_present`.
    return unsafe { cudarc::nvrtc::sys::is_culib_present() };
    #[cfg(not(feature = "cuda"))]
    true
}

/// Whether cuBLAS can be loaded on this machine.
fn cublas_present() -> bool {
    #[cfg(feature = "cuda")]
    // SAFETY: as in `driver_present`.
    return unsafe { cudarc::cublas::sys::is_culib_present() };
    #[cfg(not(feature = "cuda"))]
    true
}

/// Compiles the kernels for `arch` (for example `compute_90`) to PTX without a device: what
/// [`Gpu::open`] does with the device's own architecture. Needs NVRTC only.
pub fn compile_kernels(arch: &str) -> Result<String> {
    if !nvrtc_present() {
        return Err(Error::Device(
            "NVRTC (libnvrtc.so) not found: it compiles vellum's GPU kernels; install the CUDA runtime compiler (for example `pip install nvidia-cuda-nvrtc`) and put its lib folder on LD_LIBRARY_PATH".into(),
        ));
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("vellum_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(KERNELS, opts)
        .map(|p| p.to_src())
        .map_err(|e| Error::Device(format!("compiling vellum's kernels for {arch}: {e}")))
}

impl Gpu {
    /// Device `ordinal`, opened at first use (context, stream, cuBLAS, kernels compiled for its
    /// architecture) and shared by every later call in the process.
    ///
    /// Errors: [`Error::Device`] when the driver, cuBLAS or NVRTC cannot be loaded, when the
    /// driver sees no device `ordinal`, or when a CUDA call fails.
    pub fn open(ordinal: usize) -> Result<Arc<Gpu>> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Default::default).lock();
        if let Some(g) = open.get(&ordinal) {
            return Ok(g.clone());
        }
        let g = Arc::new(Gpu::start(ordinal)?);
        open.insert(ordinal, g.clone());
        Ok(g)
    }

    fn start(ordinal: usize) -> Result<Gpu> {
        if !driver_present() {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: no CUDA driver found (libcuda.so.1 could not be loaded): this machine has no NVIDIA driver; use device cpu"
            )));
        }
        let count = CudaContext::device_count()
            .map_err(|e| device_error(ordinal, "counting devices", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: the driver sees {count} GPU(s){}",
                if count > 0 {
                    format!(" (cuda:0 .. cuda:{})", count - 1)
                } else {
                    String::new()
                }
            )));
        }
        if !cublas_present() {
            return Err(Error::Device(format!(
                "cuda:{ordinal}: cuBLAS (libcublas.so.13) not found: install the CUDA 13 libraries (for example `pip install nvidia-cublas`) and put their lib folder on LD_LIBRARY_PATH"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| device_error(ordinal, "opening", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| device_error(ordinal, "reading the compute capability", e))?;
        let ptx = compile_kernels(&format!("compute_{major}{minor}"))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| {
                device_error(
                    ordinal,
                    "loading the kernels (an NVRTC newer than the driver makes PTX the driver cannot read: use the NVRTC of the driver's CUDA version)",
                    e,
                )
            })?;
        let module = &module;
        let f = |n: &str| {
            module
                .load_function(n)
                .map_err(|e| device_error(ordinal, &format!("kernel {n}"), e))
        };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| device_error(ordinal, "cuBLAS", e))?;
        // The MaxSim kernels hold a query's tokens in shared memory: opt in to all of it.
        let optin = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map(|v| v.max(0) as usize)
            .unwrap_or(MAXSIM_SHARED)
            .max(MAXSIM_SHARED);
        let maxsim_all = [
            f("maxsim_all_f32")?,
            f("maxsim_all_f16")?,
            f("maxsim_all_bf16")?,
        ];
        let maxsim_pairs = [
            f("maxsim_pairs_f32")?,
            f("maxsim_pairs_f16")?,
            f("maxsim_pairs_bf16")?,
        ];
        let mut maxsim_shared = optin;
        for k in maxsim_all.iter().chain(&maxsim_pairs) {
            if k.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                optin as i32,
            )
            .is_err()
            {
                maxsim_shared = MAXSIM_SHARED;
            }
        }
        Ok(Gpu {
            ordinal,
            name,
            select: f("select_topk")?,
            clear: f("clear_top")?,
            maxsim_all,
            maxsim_pairs,
            maxsim_shared,
            dummy: stream
                .alloc_zeros(1)
                .map_err(|e| device_error(ordinal, "allocating", e))?,
            stream,
            blas: Mutex::new(blas),
            module: module.clone(),
            staging: Staging::new(),
        })
    }

    /// The device's number (`cuda:N`).
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Dynamic shared memory a MaxSim block may use here (bytes; see [`maxsim_shared_bytes`]).
    pub fn maxsim_shared(&self) -> usize {
        self.maxsim_shared
    }

    /// The device's name, as the driver reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        device_error(self.ordinal, what, e)
    }

    /// The stream every call of this process runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Kernel `name` of `kernels.cu`.
    pub fn function(&self, name: &str) -> Result<CudaFunction> {
        self.module
            .load_function(name)
            .map_err(|e| self.err(&format!("kernel {name}"), e))
    }

    /// An error of this device: `what` failed with `e`.
    pub fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        self.err(what, e)
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.stream
            .context()
            .mem_get_info()
            .map_err(|e| self.err("reading free memory", e))
    }

    /// Copies `values` to new device memory.
    pub fn upload<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        values: &[T],
    ) -> Result<CudaSlice<T>> {
        if values.is_empty() {
            // CUDA refuses zero-byte allocations; an unused element stands in.
            return self.zeros(1);
        }
        self.stream
            .clone_htod(values)
            .map_err(|e| self.err("copying to the device", e))
    }

    /// Copies `values` into `dst` at element `offset`.
    pub fn upload_into<T: cudarc::driver::DeviceRepr>(
        &self,
        values: &[T],
        dst: &mut CudaSlice<T>,
        offset: usize,
    ) -> Result<()> {
        let mut view = dst.slice_mut(offset..offset + values.len());
        self.stream
            .memcpy_htod(values, &mut view)
            .map_err(|e| self.err("copying to the device", e))
    }

    /// [`Gpu::upload`] of `u32` values through a page-locked buffer (reused; its own event guards it): the copy
    /// waits for nothing but its place in the stream. The device slice may be longer than
    /// `values` (its length rounded up to a power of two); the values beyond are zeros or left
    /// from an earlier use, and no kernel reads them.
    pub fn upload_staged(&self, values: &[u32]) -> Result<CudaSlice<u32>> {
        let len = values.len().max(1).next_power_of_two();
        let ctx = self.stream.context();
        let mut st = (self.staging.up)
            .take(ctx, len)
            .map_err(|e| self.err("allocating page-locked memory", e))?;
        st.values_mut()
            .map_err(|e| self.err("waiting for a staging buffer", e))?[..values.len()]
            .copy_from_slice(values);
        // SAFETY: the copy below writes all `len` values before any kernel reads them.
        let mut dst = unsafe { self.stream.alloc::<u32>(len) }
            .map_err(|e| self.err(&format!("allocating {} bytes", len * 4), e))?;
        self.stream
            .memcpy_htod(st.buffer(), &mut dst)
            .map_err(|e| self.err("copying to the device", e))?;
        st.copied(&self.stream)
            .map_err(|e| self.err("recording a copy", e))?;
        self.staging.up.put(st);
        Ok(dst)
    }

    /// The first `n` values of `src`, copied back through a page-locked buffer (reused; its own event guards it):
    /// waits for the stream's work queued before the copy, not for what other threads queue
    /// after it.
    pub fn download_staged(&self, src: &CudaSlice<f32>, n: usize) -> Result<Vec<f32>> {
        if n > src.len() {
            return Err(self.err("copying from the device", "more values asked than held"));
        }
        let len = src.len().max(1).next_power_of_two();
        let ctx = self.stream.context();
        let mut st = (self.staging.down)
            .take(ctx, len)
            .map_err(|e| self.err("allocating page-locked memory", e))?;
        let host = st
            .values_mut()
            .map_err(|e| self.err("waiting for a staging buffer", e))?;
        // Exactly src.len() values: cudarc copies as many bytes as the destination holds.
        self.stream
            .memcpy_dtoh(src, &mut host[..src.len()])
            .map_err(|e| self.err("copying from the device", e))?;
        st.copied(&self.stream)
            .map_err(|e| self.err("recording a copy", e))?;
        let out = st
            .values()
            .map_err(|e| self.err("copying from the device", e))?[..n]
            .to_vec();
        self.staging.down.put(st);
        Ok(out)
    }

    /// Device memory for `n` values, zeroed.
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros(n.max(1)).map_err(|e| {
            self.err(
                &format!("allocating {} bytes", n * std::mem::size_of::<T>()),
                e,
            )
        })
    }

    /// Copies device memory back.
    pub fn download<T: cudarc::driver::DeviceRepr>(&self, src: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(src)
            .map_err(|e| self.err("copying from the device", e))
    }

    /// `out[j · m + i] = Σ_e a[i][e] · b[j][e]`: rows `a_row0 .. a_row0 + m` of `a` against the
    /// `n` rows of `b`, both row-major with `k` values per row of element type `t`, into `n × m`
    /// f32 scores (a row per row of `b`). One cuBLAS `GemmEx` with f32 accumulation (tensor cores
    /// for 16-bit types; `tf32` lets f32 inputs use them too, rounded to 10-bit mantissas).
    #[allow(clippy::too_many_arguments)]
    pub fn scores(
        &self,
        a: &CudaSlice<u8>,
        a_row0: usize,
        m: usize,
        b: &CudaSlice<u8>,
        n: usize,
        k: usize,
        t: GpuType,
        tf32: bool,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let row = k * t.size();
        let a_view = a.slice(a_row0 * row..(a_row0 + m) * row);
        let b_view = b.slice(..n * row);
        let (pa, _ga) = a_view.device_ptr(&self.stream);
        let (pb, _gb) = b_view.device_ptr(&self.stream);
        let (pc, _gc) = out.device_ptr_mut(&self.stream);
        // SAFETY: the slicing above checked that `a` and `b` hold m·k and n·k elements of type
        // `t`; the callers allocate `out` for m·n f32 values.
        unsafe { self.gemm_nt(pa, pb, pc, m, n, k, t, tf32) }
    }

    /// [`Gpu::scores`] on raw device pointers: `c[j · m + i] = Σ_e a[i][e] · b[j][e]`.
    ///
    /// # Safety
    /// `a`, `b` and `c` must address device memory of this GPU holding at least `m·k` and
    /// `n·k` elements of type `t` and `m·n` f32 values, alive until the stream has run the
    /// product.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_nt(
        &self,
        a: u64,
        b: u64,
        c: u64,
        m: usize,
        n: usize,
        k: usize,
        t: GpuType,
        tf32: bool,
    ) -> Result<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let compute = if tf32 && t == GpuType::F32 {
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let dims = |v: usize| i32::try_from(v).map_err(|_| self.err("matrix size", "above 2^31"));
        let (m32, n32, k32) = (dims(m)?, dims(n)?, dims(k)?);
        // cuBLAS calls the runtime on this thread's current context.
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| self.err("binding the context", e))?;
        let blas_handle = self.blas.lock();
        // SAFETY: the caller guarantees the buffers; alpha and beta live for the call; the
        // handle is bound to this device's stream.
        unsafe {
            blas::gemm_ex(
                *blas_handle.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m32,
                n32,
                k32,
                &alpha as *const f32 as *const c_void,
                a as *const c_void,
                t.cuda(),
                k32,
                b as *const c_void,
                t.cuda(),
                k32,
                &beta as *const f32 as *const c_void,
                c as *mut c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                m32,
                compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| self.err("cuBLAS GemmEx", e))
    }

    /// Empties `queries` running lists of `list` entries each (scores −∞, rows `u32::MAX`).
    pub fn clear_lists(
        &self,
        scores: &mut CudaSlice<f32>,
        rows: &mut CudaSlice<u32>,
        n: usize,
    ) -> Result<()> {
        let n32 = i32::try_from(n).map_err(|_| self.err("clear_top", "above 2^31 entries"))?;
        let mut launch = self.stream.launch_builder(&self.clear);
        launch.arg(&n32).arg(scores).arg(rows);
        // SAFETY: `clear_top(int n, float*, u32*)` writes n entries of each list; both hold n.
        unsafe { launch.launch(LaunchConfig::for_num_elems(n32 as u32)) }
            .map(|_| ())
            .map_err(|e| self.err("kernel clear_top", e))
    }

    /// Merges a tile of scores into each query's running list: `scores` holds `ncols` values per
    /// query (row stride `ld`) for global rows `row0 ..`; with `affine`, a row's score becomes
    /// `score · scale[row] + bias[row]`; rows set in `deleted` (a bit per global row) are
    /// skipped. `lists` are `queries × list` entries, best first.
    #[allow(clippy::too_many_arguments)]
    pub fn select(
        &self,
        scores: &CudaSlice<f32>,
        queries: usize,
        ld: usize,
        ncols: usize,
        affine: Option<(&CudaSlice<f32>, &CudaSlice<f32>)>,
        deleted: &CudaSlice<u32>,
        row0: usize,
        list: usize,
        list_scores: &mut CudaSlice<f32>,
        list_rows: &mut CudaSlice<u32>,
    ) -> Result<()> {
        if list == 0 || list > MAX_LIST {
            return Err(self.err(
                "select_topk",
                format!("list length {list} (1..={MAX_LIST})"),
            ));
        }
        let (ld, ncols, row0) = (ld as i64, ncols as i32, row0 as i64);
        // Without an affine map the kernel reads neither array; any device memory will do.
        let (flag, (scale, bias)) = match affine {
            Some(a) => (1i32, a),
            None => (0i32, (&self.dummy, &self.dummy)),
        };
        let kk = list as i32;
        let mut launch = self.stream.launch_builder(&self.select);
        launch
            .arg(scores)
            .arg(&ld)
            .arg(&ncols)
            .arg(&flag)
            .arg(scale)
            .arg(bias)
            .arg(deleted)
            .arg(&row0)
            .arg(&kk)
            .arg(list_scores)
            .arg(list_rows);
        let cfg = LaunchConfig {
            grid_dim: (queries as u32, 1, 1),
            block_dim: (SELECT_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the argument list matches `select_topk`'s signature; `scores` holds
        // `queries · ld` values, the affine arrays and `deleted` cover every global row the tile
        // addresses (the caller's uploads), and the lists hold `queries · list` entries.
        unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(|e| self.err("kernel select_topk", e))
    }

    /// MaxSim of every query against documents `doc0 .. doc0 + docs`, into `out[q · ld + d]`.
    /// See [`MaxSimInputs`].
    pub fn maxsim_all(
        &self,
        inputs: &MaxSimInputs<'_>,
        doc0: usize,
        docs: usize,
        ld: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (doc0, ld) = (doc0 as i64, ld as i64);
        let f = &self.maxsim_all[inputs.dtype.index()];
        let mut launch = self.stream.launch_builder(f);
        inputs.push(&mut launch);
        launch.arg(&doc0).arg(&ld).arg(out);
        let cfg = LaunchConfig {
            grid_dim: (docs as u32, inputs.queries as u32, 1),
            block_dim: (MAXSIM_THREADS, 1, 1),
            shared_mem_bytes: inputs.shared as u32,
        };
        // SAFETY: the arguments match `maxsim_all_*`; every document index addresses the
        // offsets array and every token the token matrix (the caller's uploads); `out` holds
        // `queries · ld` values with docs <= ld.
        unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(|e| self.err("kernel maxsim_all", e))
    }

    /// MaxSim of listed (query, document) pairs into `out[pair]`. See [`MaxSimInputs`].
    pub fn maxsim_pairs(
        &self,
        inputs: &MaxSimInputs<'_>,
        pair_query: &CudaSlice<i32>,
        pair_doc: &CudaSlice<u32>,
        pairs: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let f = &self.maxsim_pairs[inputs.dtype.index()];
        let mut launch = self.stream.launch_builder(f);
        inputs.push(&mut launch);
        launch.arg(pair_query).arg(pair_doc).arg(out);
        let cfg = LaunchConfig {
            grid_dim: (pairs as u32, 1, 1),
            block_dim: (MAXSIM_THREADS, 1, 1),
            shared_mem_bytes: inputs.shared as u32,
        };
        // SAFETY: as in `maxsim_all`; the pair lists hold `pairs` entries of valid query and
        // document indexes and `out` holds `pairs` values.
        unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(|e| self.err("kernel maxsim_pairs", e))
    }

    /// Waits for everything queued on the device.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronizing", e))
    }
}

/// What the MaxSim kernels read: a field's tokens and a batch of queries.
pub struct MaxSimInputs<'a> {
    /// Document tokens, `tokens × dim` values of `dtype`.
    pub tokens: &'a CudaSlice<u8>,
    /// Their element type.
    pub dtype: GpuType,
    /// Token offsets of the documents (`docs + 1` values).
    pub doc_offsets: &'a CudaSlice<i64>,
    /// Per document token: inverse norm (cosine), squared norm (L2), unused (inner product).
    pub token_aux: &'a CudaSlice<f32>,
    /// Query tokens, stacked, f32, prepared (normalised for cosine).
    pub query_tokens: &'a CudaSlice<f32>,
    /// Token offsets of the queries (`queries + 1` values).
    pub query_offsets: &'a CudaSlice<i32>,
    /// Squared norms of the query tokens (L2).
    pub query_sq: &'a CudaSlice<f32>,
    /// Number of queries.
    pub queries: usize,
    /// Values per token.
    pub dim: i32,
    /// 0 inner product, 1 cosine, 2 L2.
    pub metric: i32,
    /// Shared memory per block in bytes ([`maxsim_shared_bytes`] of the longest query).
    pub shared: usize,
}

impl MaxSimInputs<'_> {
    fn push<'b>(&'b self, launch: &mut cudarc::driver::LaunchArgs<'b>) {
        launch
            .arg(self.tokens)
            .arg(self.doc_offsets)
            .arg(self.token_aux)
            .arg(self.query_tokens)
            .arg(self.query_offsets)
            .arg(self.query_sq)
            .arg(&self.dim)
            .arg(&self.metric);
    }
}

/// Shared memory a MaxSim block needs for a query of `tokens` tokens of `dim` values: the tokens
/// padded to whole groups of 32, and a partial maximum per token and warp.
pub fn maxsim_shared_bytes(tokens: usize, dim: usize) -> usize {
    let padded = tokens.div_ceil(32) * 32;
    (padded * dim + tokens * (MAXSIM_THREADS as usize / 32)) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compile for Hopper (and the oldest architecture vellum supports) wherever
    /// NVRTC is installed; no GPU needed. `tools/gpu/nvrtc.sh` fetches NVRTC for CI.
    #[test]
    fn kernels_compile_with_nvrtc() {
        if !nvrtc_present() {
            eprintln!("skipped: NVRTC (libnvrtc.so.13) not found on LD_LIBRARY_PATH");
            return;
        }
        for arch in ["compute_75", "compute_90"] {
            let ptx = compile_kernels(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            for kernel in [
                "embed_ln",
                "layer_norm",
                "residual_add",
                "bias_residual_ln",
                "bias_act",
                "attention",
                "to_half",
                "select_topk",
                "clear_top",
                "maxsim_all_f32",
                "maxsim_all_f16",
                "maxsim_all_bf16",
                "maxsim_pairs_f32",
                "maxsim_pairs_f16",
                "maxsim_pairs_bf16",
            ] {
                assert!(
                    ptx.contains(&format!(".entry {kernel}(")),
                    "{arch}: no {kernel}"
                );
            }
        }
    }

    /// Without a driver, opening a GPU is an error that says so, not a crash.
    #[test]
    fn no_driver_is_a_clear_error() {
        if driver_present() {
            eprintln!("skipped: this machine has a CUDA driver");
            return;
        }
        let e = Gpu::open(0).unwrap_err();
        assert!(
            matches!(&e, Error::Device(m) if m.contains("no CUDA driver found")),
            "{e}"
        );
    }

    #[test]
    fn shared_memory_of_a_maxsim_block() {
        // 32 tokens × 128 values, plus 32 tokens × 4 warps of maxima.
        assert_eq!(maxsim_shared_bytes(32, 128), (32 * 128 + 32 * 4) * 4);
        // Padded to whole groups of 32 tokens.
        assert_eq!(maxsim_shared_bytes(33, 128), (64 * 128 + 33 * 4) * 4);
    }
}
