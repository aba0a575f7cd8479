//! Runtime-free async building blocks the async backends share: a set of
//! parked task wakers, and a [`TaskTracker`] that tells when every
//! connection task has ended.
//!
//! They use only `std`, so a future from here runs on any executor and
//! core stays free of runtimes.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// The wakers of the futures waiting on one event, each under its own key.
///
/// Keyed rather than a plain list so that a future polled many times (as the
/// shutdown branch of an `or` / `select!` is, on every poll of its busy
/// neighbour) replaces its entry instead of growing the list, and removes it
/// when dropped before the event.
#[derive(Debug, Default)]
pub(crate) struct WakerSet {
    next_key: u64,
    wakers: HashMap<u64, Waker>,
}

impl WakerSet {
    /// Stores `cx`'s waker under `key`, taking a fresh key if `key` is none
    /// or was already woken (and so removed).
    pub(crate) fn register(&mut self, key: &mut Option<u64>, cx: &Context<'_>) {
        if let Some(waker) = key.and_then(|k| self.wakers.get_mut(&k)) {
            // Cloning a waker can cost an allocation; skip it when the task
            // is the same one as last time, which is the usual case.
            if !waker.will_wake(cx.waker()) {
                waker.clone_from(cx.waker());
            }
            return;
        }
        let k = self.next_key;
        self.next_key += 1;
        self.wakers.insert(k, cx.waker().clone());
        *key = Some(k);
    }

    /// Forgets the waker under `key`, if it is still there.
    pub(crate) fn remove(&mut self, key: Option<u64>) {
        if let Some(k) = key {
            self.wakers.remove(&k);
        }
    }

    /// Takes every waker out, for the caller to wake once the lock is
    /// released (a woken task may poll again at once, on another thread).
    pub(crate) fn take(&mut self) -> Vec<Waker> {
        self.wakers.drain().map(|(_, waker)| waker).collect()
    }
}

/// Locks `mutex`, ignoring poison: the data behind every lock here (counts
/// and wakers) is valid after any panic, and a shutdown must not fail.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts live tasks (typically one per connection) without keeping their
/// handles, so that a server can wait for all of them to end.
///
/// Each task holds a [`TaskToken`] from [`TaskTracker::token`] for as long as
/// it runs; [`TaskTracker::all_done`] resolves once no token is alive.
///
/// ```
/// use echo_core::tasks::TaskTracker;
///
/// let tracker = TaskTracker::default();
/// let token = tracker.token();
/// assert_eq!(tracker.live(), 1);
/// drop(token);
/// assert_eq!(tracker.live(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TaskTracker {
    state: Arc<Mutex<TrackerState>>,
}

#[derive(Debug, Default)]
struct TrackerState {
    live: usize,
    waiting: WakerSet,
}

impl TaskTracker {
    /// A token for one more task; the task is counted until it is dropped.
    pub fn token(&self) -> TaskToken {
        lock(&self.state).live += 1;
        TaskToken { state: Arc::clone(&self.state) }
    }

    /// How many tokens are alive now.
    pub fn live(&self) -> usize {
        lock(&self.state).live
    }

    /// Resolves once no token is alive. Tokens handed out while it waits are
    /// waited for too. Cancel-safe: dropping it only unregisters its waker.
    pub fn all_done(&self) -> AllDone<'_> {
        AllDone { tracker: self, key: None }
    }
}

/// Held by a task for as long as it runs; see [`TaskTracker`].
pub struct TaskToken {
    state: Arc<Mutex<TrackerState>>,
}

impl fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskToken").finish_non_exhaustive()
    }
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.live -= 1;
            if state.live > 0 {
                return;
            }
            state.waiting.take()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The future of [`TaskTracker::all_done`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct AllDone<'a> {
    tracker: &'a TaskTracker,
    key: Option<u64>,
}

impl Future for AllDone<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // The count is checked and the waker stored under one lock, which
        // the last token's drop also takes: no wake-up can fall between.
        let mut state = lock(&this.tracker.state);
        if state.live == 0 {
            state.waiting.remove(this.key.take());
            return Poll::Ready(());
        }
        state.waiting.register(&mut this.key, cx);
        Poll::Pending
    }
}

impl Drop for AllDone<'_> {
    fn drop(&mut self) {
        if self.key.is_some() {
            lock(&self.tracker.state).waiting.remove(self.key.take());
        }
    }
}

/// A minimal executor for the unit tests: core must not depend on a runtime.
#[cfg(test)]
pub(crate) mod test_executor {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    /// Wakes the blocked thread by unparking it.
    struct Unparker(Thread);

    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `future` on this thread until it completes, parking between
    /// polls. Spurious unparks only cost an extra poll.
    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(Unparker(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            thread::park();
        }
    }

    /// Polls `future` once with a waker that does nothing.
    pub(crate) fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_executor::{block_on, poll_once};
    use super::*;

    #[test]
    fn all_done_is_ready_with_no_tokens() {
        let tracker = TaskTracker::default();
        block_on(tracker.all_done());
    }

    #[test]
    fn all_done_waits_for_every_token() {
        let tracker = TaskTracker::default();
        let first = tracker.token();
        let second = tracker.token();
        let mut done = tracker.all_done();
        assert!(poll_once(&mut done).is_pending());
        drop(first);
        assert!(poll_once(&mut done).is_pending());
        drop(second);
        assert!(poll_once(&mut done).is_ready());
    }

    #[test]
    fn repeated_polls_keep_one_waker() {
        let tracker = TaskTracker::default();
        let _token = tracker.token();
        let mut done = tracker.all_done();
        for _ in 0..10 {
            assert!(poll_once(&mut done).is_pending());
        }
        assert_eq!(lock(&tracker.state).waiting.wakers.len(), 1);
        drop(done);
        assert!(lock(&tracker.state).waiting.wakers.is_empty());
    }

    #[test]
    fn last_token_dropped_on_another_thread_wakes_the_waiter() {
        let tracker = TaskTracker::default();
        let tokens: Vec<_> = (0..8).map(|_| tracker.token()).collect();
        let threads: Vec<_> = tokens
            .into_iter()
            .map(|token| {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    drop(token);
                })
            })
            .collect();
        block_on(tracker.all_done());
        assert_eq!(tracker.live(), 0);
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
