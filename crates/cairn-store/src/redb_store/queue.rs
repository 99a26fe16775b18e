//! The bounded queue between `submit` and the committer thread. Submitters block while it is
//! full (backpressure); the committer takes the oldest transactions in bounded batches.

use crate::Transaction;
use cairn_types::{Error, Result};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most transactions waiting for the committer; `submit` blocks beyond it.
pub const MAX_QUEUED_TXNS: usize = 4096;
/// Most payload bytes waiting for the committer; `submit` blocks beyond it (a larger single
/// transaction is still admitted into an empty queue).
pub const MAX_QUEUED_PAYLOAD_BYTES: u64 = 256 << 20;
/// Most transactions committed by one redb write transaction (one fsync).
pub const MAX_BATCH_TXNS: usize = 256;
/// Most payload bytes committed by one redb write transaction (a larger single transaction
/// forms a batch of its own).
pub const MAX_BATCH_PAYLOAD_BYTES: u64 = 64 << 20;

/// A submitted transaction and where its outcome goes.
pub(crate) struct Pending {
    pub txn: Transaction,
    pub payload_bytes: u64,
    pub done: oneshot::Sender<Result<()>>,
}

impl Pending {
    pub fn new(txn: Transaction) -> (Pending, oneshot::Receiver<Result<()>>) {
        let (done, rx) = oneshot::channel();
        let payload_bytes = crate::validate::payload_bytes(&txn);
        (Pending { txn, payload_bytes, done }, rx)
    }

    pub fn resolve(self, result: Result<()>) {
        // The submitter may have stopped waiting; the outcome stands regardless.
        let _ = self.done.send(result);
    }
}

#[derive(Default)]
struct State {
    items: VecDeque<Pending>,
    payload_bytes: u64,
    /// Set when the store closes or the committer stops; no more transactions are accepted.
    closed: Option<String>,
}

#[derive(Default)]
pub(crate) struct SubmitQueue {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
}

impl SubmitQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; recover the plain data if one ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the transactions in order, contiguously, blocking while the queue is full.
    pub fn push_all(&self, pending: Vec<Pending>) {
        let mut state = self.lock();
        for p in pending {
            loop {
                if let Some(why) = &state.closed {
                    let why = why.clone();
                    p.resolve(Err(Error::eio(format!("object store is closed: {why}"))));
                    break;
                }
                let full = !state.items.is_empty()
                    && (state.items.len() >= MAX_QUEUED_TXNS
                        || state.payload_bytes + p.payload_bytes > MAX_QUEUED_PAYLOAD_BYTES);
                if !full {
                    state.payload_bytes += p.payload_bytes;
                    state.items.push_back(p);
                    self.not_empty.notify_one();
                    break;
                }
                state = self.not_full.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// The next batch, oldest first, within the batch bounds and never empty; `None` once the
    /// queue is closed and drained.
    pub fn pop_batch(&self) -> Option<Vec<Pending>> {
        let mut state = self.lock();
        while state.items.is_empty() {
            if state.closed.is_some() {
                return None;
            }
            state = self.not_empty.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        while let Some(next) = state.items.front() {
            let fits = batch.is_empty()
                || (batch.len() < MAX_BATCH_TXNS
                    && batch_bytes + next.payload_bytes <= MAX_BATCH_PAYLOAD_BYTES);
            if !fits {
                break;
            }
            let Some(p) = state.items.pop_front() else {
                break;
            };
            batch_bytes += p.payload_bytes;
            state.payload_bytes -= p.payload_bytes;
            batch.push(p);
        }
        self.not_full.notify_all();
        Some(batch)
    }

    /// Refuses new transactions; queued ones are still handed out by `pop_batch`.
    pub fn close(&self, why: &str) {
        let mut state = self.lock();
        state.closed.get_or_insert_with(|| why.to_string());
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// Refuses new transactions and fails every queued one (the committer is gone).
    pub fn fail_all(&self, why: &str) {
        let drained: Vec<Pending> = {
            let mut state = self.lock();
            state.closed.get_or_insert_with(|| why.to_string());
            state.payload_bytes = 0;
            self.not_full.notify_all();
            state.items.drain(..).collect()
        };
        for p in drained {
            p.resolve(Err(Error::eio(format!("object store committer stopped: {why}"))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(payload_bytes: u64) -> (Pending, oneshot::Receiver<Result<()>>) {
        let (done, rx) = oneshot::channel();
        (Pending { txn: Transaction::new(), payload_bytes, done }, rx)
    }

    #[test]
    fn batches_respect_count_and_byte_bounds() {
        let queue = SubmitQueue::default();
        let mut rxs = Vec::new();
        let mut all = Vec::new();
        for _ in 0..MAX_BATCH_TXNS + 3 {
            let (p, rx) = pending(1);
            all.push(p);
            rxs.push(rx);
        }
        queue.push_all(all);
        assert_eq!(queue.pop_batch().map(|b| b.len()), Some(MAX_BATCH_TXNS));
        assert_eq!(queue.pop_batch().map(|b| b.len()), Some(3));

        let (big, _rx1) = pending(MAX_BATCH_PAYLOAD_BYTES + 1);
        let (small, _rx2) = pending(1);
        queue.push_all(vec![big, small]);
        assert_eq!(queue.pop_batch().map(|b| b.len()), Some(1), "oversized txn goes alone");
        assert_eq!(queue.pop_batch().map(|b| b.len()), Some(1));
    }

    #[test]
    fn closed_queue_drains_then_ends_and_refuses_new_work() {
        let queue = SubmitQueue::default();
        let (p, _rx) = pending(1);
        queue.push_all(vec![p]);
        queue.close("test");
        let (late, mut late_rx) = pending(1);
        queue.push_all(vec![late]);
        let refused = late_rx.try_recv().expect("resolved at once");
        assert_eq!(refused.map_err(|e| e.errno), Err(cairn_types::errno::EIO));
        assert_eq!(queue.pop_batch().map(|b| b.len()), Some(1));
        assert!(queue.pop_batch().is_none());
    }
}
