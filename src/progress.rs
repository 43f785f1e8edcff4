//! Per-blob progress bars on stderr, one line each, for the blobs of one step.
//!
//! All bars of a step live on one board. A bar appears when its transfer starts; while it
//! runs, its line is rewritten in place (cursor up, rewrite) with the other running bars',
//! at most four times a second; when it is done, its final line is written once above the
//! running ones and never again. So the output grows with the number of blobs plus the
//! running time, never with their product: 2,000 layers print about 2,000 final lines. A
//! last redraw happens when the board goes away (the step ends). They are drawn whether
//! or not stderr is a terminal, because Concourse renders these ANSI sequences in its build
//! log. Drawing holds the board's lock only to format and write, never while a transfer
//! waits, so it cannot hang a step. With `debug: true` there are no bars, only debug log
//! lines.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fastest the running bars are redrawn.
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);
const WIDTH: usize = 30;

/// The bars of one step.
pub struct Board {
    draw: bool,
    state: Mutex<State>,
}

struct BarState {
    label: String,
    done: u64,
    total: u64,
    started: bool,
    finished: bool,
    /// Its final line has been written.
    settled: bool,
}

#[derive(Default)]
struct State {
    bars: Vec<BarState>,
    /// Lines of running bars on screen, rewritten by the next draw.
    drawn: usize,
    last: Option<Instant>,
    /// Something changed since the last draw.
    dirty: bool,
}

impl State {
    fn draw(&mut self) {
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for bar in self.bars.iter_mut().filter(|b| b.finished && !b.settled) {
            let _ = writeln!(out, "\r\x1b[2K{}", line(&bar.label, bar.done, bar.total));
            bar.settled = true;
        }
        let mut running = 0;
        for bar in self.bars.iter().filter(|b| b.started && !b.finished) {
            let _ = writeln!(out, "\r\x1b[2K{}", line(&bar.label, bar.done, bar.total));
            running += 1;
        }
        // every line drawn last time was a running bar, which is now settled above or
        // running below: the new lines cover all the old ones
        self.drawn = running;
        self.last = Some(Instant::now());
        self.dirty = false;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
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

    /// Adds a bar for `total` bytes; it is drawn once its transfer starts.
    #[must_use]
    pub fn bar(self: &Arc<Self>, label: String, total: u64) -> Bar {
        if !self.draw {
            tracing::debug!("{label}: {}", human(total));
        }
        let index = match self.state.lock() {
            Ok(mut s) => {
                s.bars.push(BarState {
                    label: label.clone(),
                    done: 0,
                    total,
                    started: false,
                    finished: false,
                    settled: false,
                });
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

    fn set(&self, index: usize, done: u64, finished: bool) {
        if !self.draw {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(bar) = s.bars.get_mut(index) {
            bar.done = done;
            bar.started = true;
            bar.finished |= finished;
        }
        s.dirty = true;
        if s.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        s.draw();
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let (true, Ok(s)) = (self.draw, self.state.get_mut()) {
            if s.dirty {
                s.draw();
            }
        }
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
