//! Progress of long work on stderr: a live line on a terminal, one line per epoch otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    tokens: usize,
    /// The mean loss as last reported by the caller (the loss lives on the device and is read
    /// back only now and then).
    loss_mean: f64,
    started: Instant,
    last_draw: Instant,
    live: bool,
}

/// How often the loss is read back and the live line redrawn.
pub const REFRESH: Duration = Duration::from_millis(200);

impl Progress {
    pub fn new(label: String, total: usize) -> Self {
        let now = Instant::now();
        Progress {
            label,
            total,
            done: 0,
            tokens: 0,
            loss_mean: 0.0,
            started: now,
            last_draw: now,
            live: std::io::stderr().is_terminal(),
        }
    }

    /// One step done, with the number of target tokens it trained on.
    pub fn step(&mut self, tokens: usize) {
        self.done += 1;
        self.tokens += tokens;
    }

    /// Whether the caller should read the loss back and call [`Progress::report_loss`] now:
    /// every [`REFRESH`], so a reading costs one host sync per refresh, not one per step.
    pub fn due(&self) -> bool {
        self.last_draw.elapsed() >= REFRESH
    }

    /// The mean loss of the steps done so far; redraws the live line.
    pub fn report_loss(&mut self, mean: f64) {
        self.loss_mean = mean;
        self.last_draw = Instant::now();
        if self.live {
            self.draw();
        }
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_mean
    }

    pub fn tokens_per_sec(&self) -> f64 {
        self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn line(&self) -> String {
        const W: usize = 24;
        let frac = self.done as f64 / self.total.max(1) as f64;
        let filled = (frac * W as f64) as usize;
        let el = self.elapsed().as_secs_f64();
        let eta = if self.done > 0 { el / frac - el } else { 0.0 };
        format!(
            "{} [{}{}] {}/{} loss {:.4} {:.0} tok/s {:.1}s eta {:.0}s",
            self.label,
            "#".repeat(filled),
            ".".repeat(W - filled),
            self.done,
            self.total,
            self.mean_loss(),
            self.tokens_per_sec(),
            el,
            eta
        )
    }

    fn draw(&self) {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{}", self.line());
        let _ = e.flush();
    }

    /// Finish the line (kept on screen, or printed once when stderr is not a terminal).
    pub fn finish(&self) {
        let mut e = std::io::stderr().lock();
        if self.live {
            let _ = writeln!(e, "\r\x1b[2K{}", self.line());
        } else {
            let _ = writeln!(e, "{}", self.line());
        }
    }
}
