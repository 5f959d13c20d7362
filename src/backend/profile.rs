//! Timing the named ranges of [`Memory::range_push`](super::Memory::range_push) (the unit of
//! `pasa bench --profile`): what the backends share.
//!
//! A backend that profiles keeps a [`Spans`] while profiling is on: each push opens a span at a
//! mark, each pop closes the innermost open one at another. A mark is whatever the backend can
//! measure time between: an `Instant` on the CPU, a recorded CUDA event on the GPU (whose times
//! are only known once the stream has reached it, so resolving waits until the profile is
//! taken). [`Spans::times`] turns the closed spans into one [`RangeTime`] per name.
//!
//! Ranges nest (an op inside "backward" inside "step"), so a name's `total_ms` includes the
//! ranges opened inside it, and `self_ms` does not: the self times of every range add up to the
//! time of the outermost ones, with nothing counted twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A backend's profiling state: off (one relaxed load per range, nothing else) until
/// [`Profiler::start`], then the [`Spans`] of the ranges since.
pub struct Profiler<M> {
    on: AtomicBool,
    spans: Mutex<Spans<M>>,
}

impl<M> Default for Profiler<M> {
    fn default() -> Self {
        Profiler {
            on: AtomicBool::new(false),
            spans: Mutex::new(Spans::default()),
        }
    }
}

impl<M> std::fmt::Debug for Profiler<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Profiler(on: {})", self.is_on())
    }
}

impl<M> Profiler<M> {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Forgets any earlier spans and turns profiling on.
    pub fn start(&self) {
        *self.lock() = Spans::default();
        self.on.store(true, Ordering::Relaxed);
    }

    /// Turns profiling off and hands over the spans recorded since [`Profiler::start`].
    pub fn take(&self) -> Spans<M> {
        self.on.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.lock())
    }

    /// The spans, to push or pop (only while profiling is on).
    pub fn lock(&self) -> MutexGuard<'_, Spans<M>> {
        // A panic while the lock was held left the spans consistent (each change is one push
        // or pop): carry on with them.
        self.spans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The time spent in every range of one name while profiling was on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RangeTime {
    pub name: &'static str,
    /// Ranges of this name closed.
    pub calls: u64,
    /// Their total duration, ranges nested inside included, in milliseconds.
    pub total_ms: f64,
    /// The same without the ranges nested inside (exclusive time).
    pub self_ms: f64,
    /// Whether some range of this name had another range inside it (an enclosing range, such
    /// as "step" or "backward", rather than a single op).
    pub encloses: bool,
}

struct Span<M> {
    name: &'static str,
    parent: Option<usize>,
    start: M,
    end: Option<M>,
}

/// The ranges of one profile, with their marks.
pub struct Spans<M> {
    spans: Vec<Span<M>>,
    open: Vec<usize>,
}

impl<M> Default for Spans<M> {
    fn default() -> Self {
        Spans {
            spans: Vec::new(),
            open: Vec::new(),
        }
    }
}

impl<M> Spans<M> {
    /// Opens a range `name` at mark `at`, inside the innermost open one.
    pub fn push(&mut self, name: &'static str, at: M) {
        self.open.push(self.spans.len());
        self.spans.push(Span {
            name,
            parent: self.open.iter().rev().nth(1).copied(),
            start: at,
            end: None,
        });
    }

    /// Whether a range is open: a pop with none open closes a range opened before profiling
    /// started, which the profile leaves out.
    pub fn any_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Closes the innermost open range at mark `at`; nothing when none is open.
    pub fn pop(&mut self, at: M) {
        if let Some(i) = self.open.pop() {
            self.spans[i].end = Some(at);
        }
    }

    /// Every mark, in the order they were made.
    pub fn marks(&self) -> impl Iterator<Item = &M> {
        self.spans
            .iter()
            .flat_map(|s| std::iter::once(&s.start).chain(s.end.as_ref()))
    }

    /// One entry per name, sorted by total time (longest first; ties by name), with
    /// `elapsed_ms(start, end)` the duration between two marks. Ranges still open are left out.
    pub fn times(&self, mut elapsed_ms: impl FnMut(&M, &M) -> f64) -> Vec<RangeTime> {
        let ms: Vec<Option<f64>> = self
            .spans
            .iter()
            .map(|s| s.end.as_ref().map(|e| elapsed_ms(&s.start, e).max(0.0)))
            .collect();
        let mut inner = vec![0.0; self.spans.len()];
        let mut encloses = vec![false; self.spans.len()];
        for (s, t) in self.spans.iter().zip(&ms) {
            if let (Some(p), Some(t)) = (s.parent, t) {
                inner[p] += t;
                encloses[p] = true;
            }
        }
        let mut by_name: HashMap<&'static str, RangeTime> = HashMap::new();
        for (i, s) in self.spans.iter().enumerate() {
            let Some(t) = ms[i] else { continue };
            let r = by_name.entry(s.name).or_insert(RangeTime {
                name: s.name,
                calls: 0,
                total_ms: 0.0,
                self_ms: 0.0,
                encloses: false,
            });
            r.calls += 1;
            r.total_ms += t;
            // Marks are read with a finite resolution: never let the children exceed the parent.
            r.self_ms += (t - inner[i]).max(0.0);
            r.encloses |= encloses[i];
        }
        let mut out: Vec<RangeTime> = by_name.into_values().collect();
        out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.name.cmp(b.name)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_ranges_give_inclusive_and_exclusive_times() {
        // step [0, 10): matmul [1, 3), backward [4, 9) holding matmul.bwd [5, 8).
        let mut s = Spans::default();
        s.pop(0.0); // a range opened before profiling: ignored
        s.push("step", 0.0);
        s.push("matmul", 1.0);
        s.pop(3.0);
        s.push("backward", 4.0);
        s.push("matmul.bwd", 5.0);
        s.pop(8.0);
        s.pop(9.0);
        s.pop(10.0);
        s.push("step", 20.0); // left open: not counted
        assert_eq!(s.marks().count(), 9);
        let t = s.times(|a, b| b - a);
        let row = |n: &str| t.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(
            t.iter().map(|r| r.name).collect::<Vec<_>>(),
            ["step", "backward", "matmul.bwd", "matmul"]
        );
        let step = row("step");
        assert_eq!((step.calls, step.total_ms, step.self_ms), (1, 10.0, 3.0));
        assert!(step.encloses);
        let bwd = row("backward");
        assert_eq!((bwd.total_ms, bwd.self_ms, bwd.encloses), (5.0, 2.0, true));
        let mm = row("matmul");
        assert_eq!((mm.total_ms, mm.self_ms, mm.encloses), (2.0, 2.0, false));
        let total_self: f64 = t.iter().map(|r| r.self_ms).sum();
        assert_eq!(
            total_self, step.total_ms,
            "self times add up to the outermost range"
        );
    }
}
