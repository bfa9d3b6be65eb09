//! Progress on stderr: a spinner or a bar on a terminal; in logs (stderr not a terminal: CI,
//! nohup, cron) one plain line every few seconds instead (`VELLUM_PROGRESS_SECS`, default 5).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

/// A progress display: indicatif on a terminal, periodic lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    log: Option<Arc<Log>>,
}

struct Log {
    state: Mutex<LogState>,
    every: Duration,
    done: AtomicBool,
}

struct LogState {
    message: String,
    what: String,
    position: u64,
    length: Option<u64>,
    started: Instant,
    last: Instant,
}

impl Log {
    fn line(&self, s: &LogState) -> String {
        let secs = s.started.elapsed().as_secs_f64();
        match s.length {
            Some(len) => format!(
                "vellum: {}{}/{len} {} ({:.0}/s, {secs:.0} s)",
                if s.message.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", s.message)
                },
                s.position,
                s.what,
                s.position as f64 / secs.max(1e-9)
            ),
            None => format!("vellum: {} ({secs:.0} s)", s.message),
        }
    }

    /// Prints a line if the interval has passed since the last one.
    fn tick(&self) {
        let mut s = self.state.lock();
        if s.last.elapsed() >= self.every {
            s.last = Instant::now();
            eprintln!("{}", self.line(&s));
        }
    }
}

fn interval() -> Duration {
    let secs = std::env::var("VELLUM_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

impl Progress {
    fn logged(message: &str, what: &str, length: Option<u64>, ticking: bool) -> Self {
        let log = Arc::new(Log {
            state: Mutex::new(LogState {
                message: message.to_string(),
                what: what.to_string(),
                position: 0,
                length,
                started: Instant::now(),
                last: Instant::now(),
            }),
            every: interval(),
            done: AtomicBool::new(false),
        });
        if ticking {
            // Nothing reports positions to a spinner: a thread says it is still working.
            let log = log.clone();
            std::thread::spawn(move || {
                while !log.done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if !log.done.load(Ordering::Relaxed) {
                        log.tick();
                    }
                }
            });
        }
        Progress {
            bar: None,
            log: Some(log),
        }
    }

    /// Moves to `position`.
    pub fn set_position(&self, position: u64) {
        if let Some(b) = &self.bar {
            b.set_position(position);
        }
        if let Some(l) = &self.log {
            l.state.lock().position = position;
            l.tick();
        }
    }

    /// Changes the total.
    pub fn set_length(&self, length: u64) {
        if let Some(b) = &self.bar {
            b.set_length(length);
        }
        if let Some(l) = &self.log {
            l.state.lock().length = Some(length);
        }
    }

    /// Changes the message (what is being done now).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(b) = &self.bar {
            b.set_message(message.clone());
        }
        if let Some(l) = &self.log {
            l.state.lock().message = message;
        }
    }

    /// Removes the display (the command prints its own summary).
    pub fn finish_and_clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(l) = &self.log {
            l.done.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_and_clear();
    }
}

/// A spinner with a message, ticking on its own.
pub fn spinner(msg: &str) -> Progress {
    if !std::io::stderr().is_terminal() {
        return Progress::logged(msg, "", None, true);
    }
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    Progress {
        bar: Some(pb),
        log: None,
    }
}

/// A bar counting `len` items of `what`.
pub fn counter(len: u64, what: &str) -> Progress {
    if !std::io::stderr().is_terminal() {
        return Progress::logged("", what, Some(len), false);
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    Progress {
        bar: Some(pb),
        log: None,
    }
}
