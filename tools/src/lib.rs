//! The `vellum` command-line tool as a library: [`run`] parses arguments and executes a command,
//! writing results to `out` (progress and messages go to stderr).

mod args;
mod commands;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

pub use args::Cli;
pub use args::RunFormat;

/// Parses `args` (the first is the program name) and runs the command.
pub fn run<I, T>(args: I, out: &mut dyn Write) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    commands::execute(cli, out)
}

/// True when the error is a closed output pipe (`vellum search ... | head`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
