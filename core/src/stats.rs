//! Counters every backend keeps the same way, so that the same number means
//! the same thing whichever backend produced it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::budget::Budget;

/// Live counters of one server, shared by its threads.
///
/// Backends never touch these fields directly: [`crate::Connection`] counts
/// connections and bytes, [`crate::AcceptBackoff`] counts accept failures,
/// and refusals go through [`Stats::record_refused`].
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    active: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: AtomicU64,
    accept_errors: AtomicU64,
    /// Reply bytes buffered across the server's connections, against
    /// `--max-buffered`: shared through the `Arc<Stats>` every backend
    /// already hands each connection.
    budget: Budget,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections admitted and served.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections closed, for any reason.
    pub closed: u64,
    /// Connections closed at once without being served: over the connection
    /// limit, or a descriptor select(2) cannot watch.
    pub refused: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Connections that ended with an I/O error (a reset, a broken pipe).
    pub errors: u64,
    /// `accept` calls that failed, descriptor exhaustion included.
    pub accept_errors: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            active: self.active.load(Relaxed),
            closed: self.closed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            errors: self.errors.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
        }
    }

    /// The server-wide count of buffered reply bytes.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Counts a connection closed at once without being served.
    pub fn record_refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// Counts a connection open if fewer than `limit` are, in one atomic
    /// step: threads admitting at the same moment (one ring or event loop per
    /// thread, say) can never together pass the limit, as a read followed by
    /// an increment could. Returns whether the connection was admitted.
    pub(crate) fn try_open(&self, limit: u64) -> bool {
        let admitted =
            self.active.fetch_update(Relaxed, Relaxed, |active| (active < limit).then_some(active + 1));
        if admitted.is_ok() {
            self.accepted.fetch_add(1, Relaxed);
        }
        admitted.is_ok()
    }

    pub(crate) fn record_close(&self, failed: bool) {
        self.active.fetch_sub(1, Relaxed);
        self.closed.fetch_add(1, Relaxed);
        if failed {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn record_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn record_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn record_accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }
}
