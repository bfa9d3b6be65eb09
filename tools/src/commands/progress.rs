//! Progress display on stderr: a spinner or a bar on a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with a message, ticking on its own.
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

/// A bar counting `len` items of `what`.
pub fn counter(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    pb
}
