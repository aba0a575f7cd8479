//! How tasks learn that the server is stopping, and how the server learns
//! that every connection task has finished.

use std::sync::Arc;
use std::time::Instant;

use echo_core::{ShutdownSignal, Waker};
use smol::channel::{self, Receiver, Sender};

/// A task's view of the server's [`ShutdownSignal`].
///
/// The flag and deadline live in the core signal; a channel on which nothing
/// is ever sent only wakes tasks: the waker closes it. Closing is a state,
/// not an event, so a task that starts waiting after the wake-up still sees
/// it at once and no wake-up can be lost.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    signal: Arc<ShutdownSignal>,
    closed: Receiver<()>,
}

impl Shutdown {
    /// A shutdown view of `signal` and the closure that wakes every holder.
    pub(crate) fn new(signal: Arc<ShutdownSignal>) -> (Self, Waker) {
        let (wake, closed) = channel::bounded(1);
        let waker: Waker = Box::new(move || {
            wake.close();
        });
        (Shutdown { signal, closed }, waker)
    }

    /// Resolves once shutdown has begun. Cancel-safe: dropping a pending
    /// `recv` only unregisters its listener.
    pub(crate) async fn triggered(&self) {
        if self.signal.is_triggered() {
            return;
        }
        // Returns `Err` once the channel is closed (or its sender dropped
        // with the `Server`, which triggers the signal first).
        let _ = self.closed.recv().await;
    }

    /// The drain deadline; "now" if asked before shutdown began.
    pub(crate) fn deadline(&self) -> Instant {
        self.signal.deadline().unwrap_or_else(Instant::now)
    }
}

/// Counts live connection tasks without keeping their handles.
///
/// Each task holds a [`TaskToken`], a sender that never sends; once every
/// token is dropped the channel closes and [`Tracker::wait`] returns. This is
/// mini-redis's `shutdown_complete` channel.
#[derive(Debug)]
pub(crate) struct Tracker {
    token: Sender<()>,
    closed: Receiver<()>,
}

/// Held by a connection task for as long as it runs.
pub(crate) type TaskToken = Sender<()>;

impl Tracker {
    pub(crate) fn new() -> Self {
        let (token, closed) = channel::bounded(1);
        Tracker { token, closed }
    }

    /// A token for one more task.
    pub(crate) fn token(&self) -> TaskToken {
        self.token.clone()
    }

    /// Waits until every task handed a token has finished.
    pub(crate) async fn wait(self) {
        let Tracker { token, closed } = self;
        drop(token);
        // Nothing is ever sent: `recv` errs once every sender is gone.
        let _ = closed.recv().await;
    }
}
