//! The `vellum` command-line tool. All logic lives in the `vellum_cli` library; this shell prints
//! errors once and sets the exit code.

use std::io::Write;
use std::process::ExitCode;

/// mimalloc: many small, short-lived allocations (ingest documents, training tensors) are packed
/// by size instead of scattered. (Measured when it came in, with the former `hnsw_rs` graph
/// builder: a 300,000 × 16 build went from 44 s to 35 s; not re-measured since.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = vellum_cli::run(std::env::args_os(), &mut out)
        .and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if vellum_cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                let _ = clap_err.print();
                return ExitCode::from(if clap_err.use_stderr() { 2 } else { 0 });
            }
            eprintln!("error: {}", vellum_cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
