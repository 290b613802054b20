//! A text progress bar for long maps, in the style of tqdm's `process_map` (feature
//! `progress-bar`).

use std::io::Write;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{Data, Pool, PoolError};

/// Redraw at most this often (and always at the end).
const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 30;

/// A progress bar drawn on standard error: `label  62%|██████████▌      | 620/1000 [1.2s<0.7s, 516.7/s]`.
///
/// Feed it from [`Pool::map_with_progress`]'s callback, or let [`Pool::map_with_bar`] do it.
///
/// ```
/// let bar = multiproc::pool::ProgressBar::new("demo");
/// assert_eq!(bar.render(5, 10, 1.0), "demo  50%|███████████████               | 5/10 [1.0s<1.0s, 5.0/s]");
/// ```
#[derive(Debug)]
pub struct ProgressBar {
    label: String,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl ProgressBar {
    /// A bar labelled `label`; its clock starts now.
    pub fn new(label: &str) -> ProgressBar {
        ProgressBar {
            label: label.to_string(),
            start: Instant::now(),
            last: Mutex::new(None),
        }
    }

    /// The bar's text for `done` of `total` after `elapsed` seconds.
    pub fn render(&self, done: usize, total: usize, elapsed: f64) -> String {
        let frac = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let eighths = (frac * (WIDTH * 8) as f64).round() as usize;
        let mut bar = "█".repeat(eighths / 8);
        if eighths % 8 > 0 {
            bar.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
        }
        let pad = WIDTH - bar.chars().count();
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let left = if rate > 0.0 {
            (total - done) as f64 / rate
        } else {
            0.0
        };
        format!(
            "{} {:3.0}%|{bar}{}| {done}/{total} [{elapsed:.1}s<{left:.1}s, {rate:.1}/s]",
            self.label,
            frac * 100.0,
            " ".repeat(pad),
        )
    }

    /// Record progress; redraws when enough time has passed, and at the end (with a newline).
    pub fn update(&self, done: usize, total: usize) {
        let now = Instant::now();
        let mut last = self.last.lock();
        let finished = done >= total;
        if !finished && last.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        *last = Some(now);
        let line = self.render(done, total, (now - self.start).as_secs_f64());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", if finished { "\n" } else { "" });
        let _ = err.flush();
    }
}

impl Pool {
    /// [`map`](Self::map) with a progress bar on standard error, like tqdm's `process_map`.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::init(); // first thing in main
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let v = pool.map_with_bar(square, 0..1000u64, Some(10), "squares").unwrap();
    /// assert_eq!(v.len(), 1000);
    /// ```
    pub fn map_with_bar<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        label: &str,
    ) -> Result<Vec<R>, PoolError> {
        let bar = ProgressBar::new(label);
        self.map_with_progress(f, items, chunksize, move |done, total| {
            bar.update(done, total)
        })
    }
}
