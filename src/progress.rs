//! Per-blob progress bars on stderr, one line each, for the blobs of one step.
//!
//! All bars of a step live on one board, redrawn together (cursor up, rewrite each line) at
//! most four times a second and whenever a bar completes, so parallel uploads do not write
//! over each other. They are drawn whether or not stderr is a terminal, because Concourse
//! renders these ANSI sequences in its build log. Drawing holds the board's lock only to
//! format and write, never while a transfer waits, so it cannot hang a step. With
//! `debug: true` there are no bars, only debug log lines.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(250);
const WIDTH: usize = 30;

/// The bars of one step.
pub struct Board {
    draw: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bars: Vec<(String, u64, u64)>,
    drawn: usize,
    last: Option<Instant>,
}

impl Board {
    /// A board; `draw: false` (debug mode) logs instead of drawing.
    #[must_use]
    pub fn new(draw: bool) -> Arc<Self> {
        Arc::new(Self {
            draw,
            state: Mutex::new(State::default()),
        })
    }

    /// Adds a bar for `total` bytes.
    #[must_use]
    pub fn bar(self: &Arc<Self>, label: String, total: u64) -> Bar {
        if !self.draw {
            tracing::debug!("{label}: {}", human(total));
        }
        let index = match self.state.lock() {
            Ok(mut s) => {
                s.bars.push((label.clone(), 0, total));
                s.bars.len() - 1
            }
            Err(_) => usize::MAX,
        };
        Bar {
            board: self.clone(),
            index,
            label,
        }
    }

    fn set(&self, index: usize, done: u64, force: bool) {
        if !self.draw {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(bar) = s.bars.get_mut(index) {
            bar.1 = done;
        }
        if !force && s.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        s.last = Some(Instant::now());
        let mut out = String::new();
        if s.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", s.drawn);
        }
        for (label, done, total) in &s.bars {
            let _ = writeln!(out, "\r\x1b[2K{}", line(label, *done, *total));
        }
        s.drawn = s.bars.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

/// One blob's bar.
pub struct Bar {
    board: Arc<Board>,
    index: usize,
    label: String,
}

impl Bar {
    /// Records `done` bytes.
    pub fn update(&self, done: u64) {
        self.board.set(self.index, done, false);
    }

    /// Marks the bar complete.
    pub fn finish(&self, total: u64, summary: &str) {
        self.board.set(self.index, total, true);
        tracing::debug!("{}: done, {summary}", self.label);
    }
}

fn line(label: &str, done: u64, total: u64) -> String {
    let filled = (done.min(total) * WIDTH as u64)
        .checked_div(total)
        .map_or(WIDTH, |f| usize::try_from(f).unwrap_or(WIDTH));
    format!(
        "{label} [{}{}] {} / {}",
        "=".repeat(filled),
        " ".repeat(WIDTH - filled),
        human(done),
        human(total)
    )
}

/// `12.3 MiB`
#[must_use]
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(40 * 1024 * 1024), "40.0 MiB");
    }
}
