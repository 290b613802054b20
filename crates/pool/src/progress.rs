//! A progress bar for long maps, in the style of tqdm's `process_map` (feature
//! `progress-bar`), drawn by `indicatif`.
//!
//! The count moves per item, not per chunk: a worker marks in its control block every item it
//! starts (the word the pool reads after a death to know which item was running), so the
//! bar's ticker adds, several times a second, the items finished inside the chunks that are
//! running now to the items of the chunks already returned. The map itself pays nothing for
//! it: the mark was already stored per item, and the ticker reads it on its own thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressDrawTarget, ProgressStyle};

use crate::api::pool_api;
use crate::result::Progress;
use crate::{Data, PoolError};

/// How often the count is refreshed while a map runs.
const TICK: Duration = Duration::from_millis(100);

/// A progress bar on standard error: `label  62%|██████████▌      | 620/1000 [00:01<00:00,
/// 516.7/s]`, with a steady rate and ETA. When standard error is not a terminal (a log file,
/// a pipe, CI) it draws nothing at all, instead of a flood of lines.
///
/// [`Pool::map_with_bar`](crate::Pool::map_with_bar) drives one, counting each item as it
/// finishes; feed one yourself from
/// [`Pool::map_with_progress`](crate::Pool::map_with_progress)'s callback (per chunk) with
/// [`update`](Self::update).
///
/// ```
/// let bar = multiproc::pool::ProgressBar::new("demo");
/// bar.update(5, 10);
/// assert_eq!((bar.position(), bar.length()), (5, 10));
/// bar.update(10, 10); // done: the bar is finished and stays on screen
/// ```
#[derive(Debug, Clone)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    /// A bar labelled `label`, drawn on standard error if it is a terminal; its clock starts
    /// now.
    pub fn new(label: &str) -> ProgressBar {
        ProgressBar::with_target(label, ProgressDrawTarget::stderr())
    }

    /// A bar that is never drawn (it still counts): for tests, or output that must stay clean.
    ///
    /// ```
    /// let bar = multiproc::pool::ProgressBar::hidden("quiet");
    /// bar.update(3, 4);
    /// assert_eq!(bar.position(), 3);
    /// ```
    pub fn hidden(label: &str) -> ProgressBar {
        ProgressBar::with_target(label, ProgressDrawTarget::hidden())
    }

    fn with_target(label: &str, target: ProgressDrawTarget) -> ProgressBar {
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed}<{eta}, {per_sec}]",
            )
            .expect("the template is valid")
            .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        bar.set_prefix(label.to_string());
        ProgressBar { bar }
    }

    /// Record that `done` of `total` items are finished (the count never goes back); at
    /// `done >= total` the bar is finished.
    pub fn update(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        if done as u64 > self.bar.position() {
            self.bar.set_position(done as u64);
        }
        if done >= total && !self.bar.is_finished() {
            self.bar.finish();
        }
    }

    /// The items counted so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The items in all, as last told.
    pub fn length(&self) -> u64 {
        self.bar.length().unwrap_or(0)
    }

    /// Whether the bar is drawn nowhere (standard error is not a terminal, or [`hidden`](Self::hidden)).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

pool_api! {
    #[thread_pool = "[`Pool::map_with_bar`](crate::Pool::map_with_bar) over threads \
        (feature `progress-bar`)."]
    /// [`map`](Self::map) with a progress bar on standard error, like tqdm's `process_map`: the
    /// count moves per item as workers finish them (refreshed ten times a second), not per
    /// chunk. Nothing is drawn when standard error is not a terminal.
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
        self.map_with_this_bar(f, items, chunksize, &ProgressBar::new(label))
    }

    #[thread_pool = "[`Pool::map_with_this_bar`](crate::Pool::map_with_this_bar) over threads \
        (feature `progress-bar`)."]
    /// [`map_with_bar`](Self::map_with_bar) drawing on a bar of your own (for example
    /// [`ProgressBar::hidden`]); the bar holds the final count afterwards.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = multiproc::ThreadPool::new(2).unwrap();
    /// let bar = multiproc::pool::ProgressBar::hidden("squares");
    /// pool.map_with_this_bar(square, 0..1000u64, None, &bar).unwrap();
    /// assert_eq!(bar.position(), 1000);
    /// ```
    pub fn map_with_this_bar<A: Data, R: Data>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        bar: &ProgressBar,
    ) -> Result<Vec<R>, PoolError> {
        // The total is known before the first chunk returns (as tqdm wants it).
        let items: Vec<A> = items.into_iter().collect();
        bar.update(0, items.len());
        // Items of returned chunks, and the total, from the per-chunk hook.
        let returned = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(items.len()));
        let hook: Progress = {
            let (returned, total, bar) = (returned.clone(), total.clone(), bar.clone());
            Arc::new(move |done, all| {
                returned.store(done, Ordering::Release);
                total.store(all, Ordering::Release);
                bar.update(done, all);
            })
        };
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let ticker = s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(TICK);
                    let all = total.load(Ordering::Acquire);
                    if all == 0 {
                        continue;
                    }
                    let done = returned.load(Ordering::Acquire) + self.items_running(&hook);
                    // (a chunk's items are counted by its worker's mark or by its reply, never
                    // both: the lane forgets the chunk before its reply is delivered)
                    if done < all {
                        bar.update(done, all);
                    }
                }
            });
            let out = self.map_with_hook(f, items, chunksize, hook.clone());
            stop.store(true, Ordering::Release);
            ticker.thread().unpark();
            let _ = ticker.join();
            if let Ok(v) = &out {
                bar.update(v.len(), v.len());
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThreadPool;

    fn slow(x: u32) -> u32 {
        std::thread::sleep(Duration::from_millis(15));
        x
    }

    /// One worker, one chunk of 40 items of 15 ms: a per-chunk count would sit at 0 for the
    /// whole 600 ms and jump to 40; counted per item, it moves while the chunk runs.
    #[test]
    fn the_count_moves_inside_a_chunk() {
        let pool = ThreadPool::new(1).unwrap();
        let bar = ProgressBar::hidden("test");
        let seen = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(20));
                    let p = bar.position();
                    seen.lock().unwrap().push(p);
                    if p >= 40 {
                        break;
                    }
                }
            });
            let v = pool.map_with_this_bar(slow, 0..40, Some(40), &bar).unwrap();
            assert_eq!(v, (0..40).collect::<Vec<_>>());
        });
        assert_eq!((bar.position(), bar.length()), (40, 40));
        let seen = seen.into_inner().unwrap();
        assert!(
            seen.iter().any(|&p| p > 0 && p < 40),
            "no count between 0 and 40 while the only chunk ran: {seen:?}"
        );
    }

    /// Drawn only on a terminal: a log or a pipe gets no lines at all (it used to get one
    /// `\r`-line per redraw).
    #[test]
    fn drawn_only_when_stderr_is_a_terminal() {
        use std::io::IsTerminal;
        let bar = ProgressBar::new("t");
        assert_eq!(bar.is_hidden(), !std::io::stderr().is_terminal());
        assert!(ProgressBar::hidden("h").is_hidden());
    }

    #[test]
    fn the_count_never_goes_back_and_finishes() {
        let bar = ProgressBar::hidden("x");
        bar.update(5, 10);
        bar.update(3, 10);
        assert_eq!(bar.position(), 5);
        bar.update(10, 10);
        assert!(bar.bar.is_finished());
    }
}
