//! How tasks learn that the server is stopping, and how the server learns
//! that every connection task has finished.

use std::sync::Arc;
use std::time::Instant;

use echo_core::{ShutdownSignal, Waker};
use tokio::sync::{mpsc, watch};

/// A task's view of the server's [`ShutdownSignal`].
///
/// The flag and deadline live in the core signal; the `watch` channel only
/// wakes tasks. A `watch` keeps its last value, so a task that starts waiting
/// after the wake-up still sees it at once: no wake-up can be lost, unlike a
/// bare `Notify::notify_waiters`.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    signal: Arc<ShutdownSignal>,
    woken: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown view of `signal` and the closure that wakes every holder.
    pub(crate) fn new(signal: Arc<ShutdownSignal>) -> (Self, Waker) {
        let (wake, woken) = watch::channel(false);
        let waker: Waker = Box::new(move || {
            // `send_replace` stores the value even when no task is waiting.
            wake.send_replace(true);
        });
        (Shutdown { signal, woken }, waker)
    }

    /// Resolves once shutdown has begun. Cancel-safe: it only waits on the
    /// channel, so it can sit in a `select!` branch.
    pub(crate) async fn triggered(&mut self) {
        if self.signal.is_triggered() {
            return;
        }
        // An error means the waker was dropped with the `Server`, which
        // triggers the signal first: either way, stop.
        let _ = self.woken.wait_for(|&stop| stop).await;
    }

    /// The drain deadline; "now" if asked before shutdown began.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.signal.deadline().unwrap_or_else(Instant::now))
    }
}

/// Counts live connection tasks without keeping their handles.
///
/// Each task holds a [`TaskToken`], a sender that never sends; once every
/// token is dropped the channel closes and [`Tracker::wait`] returns. This is
/// mini-redis's `shutdown_complete` channel.
#[derive(Debug)]
pub(crate) struct Tracker {
    token: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

/// Held by a connection task for as long as it runs.
pub(crate) type TaskToken = mpsc::Sender<()>;

impl Tracker {
    pub(crate) fn new() -> Self {
        let (token, closed) = mpsc::channel(1);
        Tracker { token, closed }
    }

    /// A token for one more task.
    pub(crate) fn token(&self) -> TaskToken {
        self.token.clone()
    }

    /// Waits until every task handed a token has finished.
    pub(crate) async fn wait(self) {
        let Tracker { token, mut closed } = self;
        drop(token);
        // Nothing is ever sent: `recv` returns `None` once every sender is gone.
        let _ = closed.recv().await;
    }
}
