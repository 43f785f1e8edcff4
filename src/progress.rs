//! Per-blob progress on stderr: one line per blob, redrawn with `\r` at most a few times a
//! second, finished with a newline. It is drawn whether or not stderr is a terminal, because
//! Concourse renders carriage returns in its build log. Drawing never blocks on anything but
//! the write itself, and holds no lock while the download waits, so it cannot hang a step.
//! With `debug: true` there are no bars, only debug log lines.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(250);
const WIDTH: usize = 30;

/// Progress of one blob.
pub struct Bar {
    label: String,
    total: u64,
    draw: bool,
    /// When the bar was last drawn, and how far it was then.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Bar {
    /// A bar for `total` bytes labelled `label`; `draw: false` (debug mode) logs instead.
    #[must_use]
    pub fn new(label: String, total: u64, draw: bool) -> Self {
        if !draw {
            tracing::debug!("{label}: fetching {}", human(total));
        }
        Self {
            label,
            total,
            draw,
            last: Mutex::new(None),
        }
    }

    /// Records `done` bytes, redrawing when enough time has passed.
    pub fn update(&self, done: u64) {
        if !self.draw {
            return;
        }
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|(t, _)| t.elapsed() < REDRAW_EVERY) && done < self.total {
            return;
        }
        *last = Some((Instant::now(), done));
        self.render(done, false);
    }

    /// Draws the bar complete and ends its line.
    pub fn finish(&self, summary: &str) {
        if self.draw {
            let drawn_complete = self
                .last
                .lock()
                .is_ok_and(|l| l.is_some_and(|(_, d)| d >= self.total));
            if drawn_complete {
                let _ = std::io::stderr().write_all(b"\n");
            } else {
                self.render(self.total, true);
            }
        }
        tracing::debug!("{}: done, {summary}", self.label);
    }

    fn render(&self, done: u64, end: bool) {
        let filled = (done.min(self.total) * WIDTH as u64)
            .checked_div(self.total)
            .map_or(WIDTH, |f| usize::try_from(f).unwrap_or(WIDTH));
        let bar: String = "=".repeat(filled) + &" ".repeat(WIDTH - filled);
        let line = format!("\r{} [{bar}] {} / {}", self.label, human(done), human(self.total));
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        if end {
            let _ = err.write_all(b"\n");
        }
        let _ = err.flush();
    }
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
