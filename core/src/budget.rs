//! The server-wide budget of buffered reply bytes (`--max-buffered`): one
//! counter shared by every connection of a server, on every thread.
//!
//! The watermarks bound each connection's pending replies, but not their
//! sum: with the default connection limit (the descriptor limit, often
//! hundreds of thousands) that sum is gigabytes. The budget bounds it. Each
//! [`Connection`](crate::Connection) counts here the memory that holds its
//! replies, its output buffer's capacity, as replies are queued and written
//! and the buffer grows or is given back, and gives it all back when it is
//! aborted or dropped, so the count cannot leak. Reading is limited by the
//! room left (see [`Connection::read_limit`](crate::Connection::read_limit)
//! for the exact worst case: about the budget plus [`FLOOR`] bytes per
//! connection).
//!
//! A connection that stopped reading because the budget is spent gets no
//! readiness event when other connections free it. The task-per-connection
//! loop parks its waker here ([`Budget::poll_room`]), and a release that
//! leaves room wakes every parked task; the event loops, which have no
//! wakers, look again on a short timer ([`RECHECK`]) while such connections
//! exist.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::tasks::{WakerSet, lock};

/// The default `--max-buffered`, 256 MiB: every one of about 2,000
/// connections holding its 128 KiB worst case at the default watermarks.
/// Past that, clients that do not read only push the server toward the
/// out-of-memory killer.
pub const DEFAULT_MAX_BUFFERED: usize = 256 << 20;

/// The reply bytes a connection with nothing pending may always read for,
/// budget or not, so that clients that never read cannot starve every other
/// connection of the server for ever. So the budget's worst case is
/// `max_buffered + connections × FLOOR` (plus the races described at
/// [`Connection::read_limit`](crate::Connection::read_limit)).
pub const FLOOR: usize = 64;

/// How often an event loop (mio, select) looks again at the connections it
/// stopped reading for want of budget, while there are any: they get no
/// readiness event when other connections free some. One wake-up per loop
/// per period and a single atomic load while the budget stays spent. (For
/// select, each wake-up is a readiness call over every descriptor, so its
/// scheduler doubles the period, up to 80 ms, while the budget stays spent.)
pub const RECHECK: Duration = Duration::from_millis(5);

/// The bytes held for replies across a server's connections, and the tasks
/// waiting for some of them to be freed.
///
/// The limit is not stored here: every connection of a server carries the
/// same one, from [`ServerConfig::max_buffered`](crate::ServerConfig).
#[derive(Debug, Default)]
pub struct Budget {
    /// Bytes held for replies (output buffers' capacity), summed over
    /// connections.
    used: AtomicUsize,
    /// Whether `waiting` may hold a waker: lets a release skip the lock in
    /// the usual case, where nobody waits.
    has_waiters: AtomicBool,
    /// Tasks that stopped reading for want of room, woken by a release.
    waiting: Mutex<WakerSet>,
}

impl Budget {
    /// Bytes held for replies now.
    pub fn used(&self) -> usize {
        self.used.load(SeqCst)
    }

    /// The bytes left under `limit`.
    pub fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.used())
    }

    /// Counts `n` more bytes buffered.
    pub(crate) fn take(&self, n: usize) {
        if n > 0 {
            self.used.fetch_add(n, SeqCst);
        }
    }

    /// Counts `n` bytes no longer buffered and wakes the tasks waiting for
    /// room, if any. Every release wakes them: it costs one atomic load when
    /// nobody waits, and a woken task that finds no room parks again.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, SeqCst);
        debug_assert!(before >= n, "released {n} of {before} buffered bytes");
        // Paired with the store in `poll_room`: either this load sees the
        // waiter, or the waiter's re-check sees the bytes released.
        if self.has_waiters.load(SeqCst) {
            let wakers = {
                let mut waiting = lock(&self.waiting);
                self.has_waiters.store(false, SeqCst);
                waiting.take()
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    /// `Ready` when there is room under `limit`; otherwise registers `cx`'s
    /// waker (under `key`, kept by the caller between polls) to be woken by
    /// the next release, and returns `Pending`.
    ///
    /// A waker stays registered until the next release wakes it, even if its
    /// task ends first: waking a finished task does nothing.
    pub fn poll_room(&self, limit: usize, key: &mut Option<u64>, cx: &Context<'_>) -> Poll<()> {
        if self.room(limit) > 0 {
            return Poll::Ready(());
        }
        {
            let mut waiting = lock(&self.waiting);
            waiting.register(key, cx);
            self.has_waiters.store(true, SeqCst);
        }
        // A release between the first look and the registration saw no
        // waiter: look again now that it would.
        if self.room(limit) > 0 { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicU32);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_release_wakes_the_tasks_waiting_for_room() {
        let budget = Budget::default();
        budget.take(100);
        let count = Arc::new(Count(AtomicU32::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let mut key = None;
        assert!(budget.poll_room(100, &mut key, &cx).is_pending());
        assert!(budget.poll_room(100, &mut key, &cx).is_pending(), "polled again: one entry");
        budget.release(1);
        assert_eq!(count.0.load(SeqCst), 1);
        assert!(budget.poll_room(100, &mut key, &cx).is_ready());
        budget.release(99);
        assert_eq!(count.0.load(SeqCst), 1, "nobody waits any more");
        assert_eq!(budget.used(), 0);
    }
}
