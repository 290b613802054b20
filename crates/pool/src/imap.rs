//! The iterator of `imap` and `imap_unordered`: reads its input a bounded distance ahead of
//! the results consumed.

use std::sync::Arc;

use crate::pool::{Data, Pool};
use crate::result::{Sink, StreamSink};
use crate::scheduler::Unit;
use crate::worker::{chunk_call, resplit};
use crate::PoolError;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: one `Result` per input item.
pub struct IMapIter<'p, A, R, I> {
    pub(crate) pool: &'p Pool,
    pub(crate) f: fn(A) -> R,
    pub(crate) input: Option<I>,
    pub(crate) chunksize: usize,
    pub(crate) sink: Arc<StreamSink<R>>,
    pub(crate) submitted_items: usize,
    /// Encoded bytes of the units submitted (for the look-ahead's byte budget).
    pub(crate) submitted_bytes: usize,
    pub(crate) yielded: usize,
    /// Units read ahead at most.
    pub(crate) window: usize,
    /// The chunk being read from the input (one buffer, reused).
    pub(crate) chunk: Vec<A>,
    pub(crate) failed: Option<PoolError>,
}

/// Encoded input an `imap` reads ahead at most (about: units of the average size so far).
const LOOKAHEAD_BYTES: usize = 16 << 20;

impl<A, R, I> std::fmt::Debug for IMapIter<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapIter")
            .field("submitted", &self.submitted_items)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<A: Data, R: Data, I: Iterator<Item = A>> IMapIter<'_, A, R, I> {
    /// Whether the look-ahead (items read and not yet yielded) is under `1/div` of its bounds
    /// with `items` more items of `bytes` more bytes read.
    fn under(&self, div: usize, items: usize, bytes: usize) -> bool {
        let all = self.submitted_items + items;
        let ahead = all - self.yielded;
        // Two chunks per worker are always allowed, however large: every worker busy.
        if ahead * div < 2 * self.pool.processes() * self.chunksize {
            return true;
        }
        let avg = (self.submitted_bytes + bytes).checked_div(all).unwrap_or(0);
        ahead * div < self.window * self.chunksize && ahead * avg * div < LOOKAHEAD_BYTES
    }

    fn top_up(&mut self) {
        // Refill only once half the window is free: fewer, larger submissions.
        if !self.under(2, 0, 0) {
            return;
        }
        let mut batch = Vec::new();
        let mut items = 0;
        let mut bytes = 0;
        while self.under(1, items, bytes) {
            let Some(input) = self.input.as_mut() else {
                break;
            };
            // Reading the input happens here, in the caller's thread: a panic in the
            // iterator propagates to the caller, as an exception would in Python.
            self.chunk.clear();
            self.chunk.extend(input.by_ref().take(self.chunksize));
            if self.chunk.is_empty() {
                self.input = None;
                break;
            }
            let n = self.chunk.len();
            let sink: Arc<dyn Sink> = self.sink.clone();
            match chunk_call(self.f, &self.chunk) {
                Ok((payload, handles)) => {
                    bytes += payload.len();
                    batch.push(Unit {
                        first: self.submitted_items + items,
                        n,
                        payload,
                        handles,
                        sink,
                        split: resplit::<A, R>,
                        retried: false,
                    });
                    items += n;
                }
                Err(e) => {
                    self.failed = Some(e);
                    self.input = None;
                    break;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        match self.pool.submit(batch) {
            Ok(()) => {
                self.submitted_items += items;
                self.submitted_bytes += bytes;
            }
            Err(e) => {
                self.failed = Some(e);
                self.input = None;
            }
        }
    }
}

impl<A: Data, R: Data, I: Iterator<Item = A>> Iterator for IMapIter<'_, A, R, I> {
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        let mut st = self.sink.st.lock();
        loop {
            let got = if st.unordered {
                st.arrived.pop_front()
            } else {
                st.ordered.remove(&self.yielded)
            };
            if let Some(r) = got {
                self.yielded += 1;
                drop(st);
                self.top_up();
                return Some(r);
            }
            if self.yielded >= self.submitted_items && self.input.is_none() {
                return self.failed.take().map(Err);
            }
            self.sink.cv.wait(&mut st);
        }
    }
}
