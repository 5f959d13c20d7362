//! Progress of long work on stderr: a live line on a terminal, one line per epoch otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    tokens: usize,
    loss_sum: f64,
    loss_count: usize,
    started: Instant,
    last_draw: Instant,
    live: bool,
}

impl Progress {
    pub fn new(label: String, total: usize) -> Self {
        let now = Instant::now();
        Progress {
            label,
            total,
            done: 0,
            tokens: 0,
            loss_sum: 0.0,
            loss_count: 0,
            started: now,
            last_draw: now - Duration::from_secs(1),
            live: std::io::stderr().is_terminal(),
        }
    }

    /// One step done, with its loss and the number of target tokens it trained on.
    pub fn step(&mut self, loss: f32, tokens: usize) {
        self.done += 1;
        self.tokens += tokens;
        if loss.is_finite() {
            self.loss_sum += loss as f64;
            self.loss_count += 1;
        }
        if self.live && self.last_draw.elapsed() >= Duration::from_millis(200) {
            self.last_draw = Instant::now();
            self.draw();
        }
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.loss_count.max(1) as f64
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
