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

/// The error and its causes on one line, with the command-line remedy where the library's error
/// has one (the library names remedies in API terms; the flags are the CLI's).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut hint = None;
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        if let Some(v) = c.downcast_ref::<vellum::Error>() {
            hint = hint.or_else(|| cli_hint(v));
        }
    }
    let mut line = parts.join(": ").replace('\n', " ");
    if let Some(h) = hint {
        line.push_str(&format!(" ({h})"));
    }
    line
}

/// The flags that fix a library error, if any.
fn cli_hint(e: &vellum::Error) -> Option<String> {
    use vellum::{Error, MissingInput};
    match e {
        Error::MissingInput { field, needed, .. } => Some(match needed {
            MissingInput::Vectors { encodable: true } => format!(
                "pass --vectors {field}=FILE, or bind an encoder to it (vellum create ... --encoder {field}=MODEL) to encode the documents' text"
            ),
            MissingInput::Lengths => format!("pass --lengths {field}=FILE"),
            _ => format!("pass --vectors {field}=FILE"),
        }),
        Error::NoEncoder { field, .. } => Some(format!(
            "pass vectors, or create the collection with --encoder {field}=MODEL"
        )),
        Error::Encoder { detail, .. } if detail.contains("is not available here") => Some(
            "create the collection with --embed-model so that the database carries its models"
                .into(),
        ),
        Error::NotADatabase { .. } => Some("create one with `vellum create`".into()),
        _ => None,
    }
}
