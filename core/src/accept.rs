//! What every backend does with an accepted socket and when `accept`
//! fails: one policy, here, for every engine.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::stats::Stats;

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Sets TCP_NODELAY on an accepted socket, so that each reply leaves at once
/// instead of waiting for the previous one's acknowledgement.
///
/// A failure is logged at debug level and the connection is served anyway:
/// only latency suffers, and a socket reset while it was queued fails here
/// and then again, for real, at its first read, which closes it through
/// [`crate::Connection`] like any other error.
pub fn set_nodelay(socket: &impl AsFd, peer: SocketAddr) {
    if let Err(err) = socket2::SockRef::from(socket).set_nodelay(true) {
        tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
    }
}

/// What an `accept` error means for the accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcceptError {
    /// A signal interrupted the call: nothing failed.
    Interrupted,
    /// That one queued connection failed (reset or aborted before it was
    /// accepted; Linux also passes on some network errors here): the next
    /// connection is unaffected.
    Connection,
    /// The process or system is out of descriptors or memory.
    Exhaustion,
    /// Anything else, which may well repeat (a listener in a bad state).
    Other,
}

impl AcceptError {
    fn of(err: &io::Error) -> Self {
        if err.kind() == io::ErrorKind::Interrupted {
            return AcceptError::Interrupted;
        }
        match err.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhaustion,
            // accept(2): "Linux accept() passes already-pending network
            // errors on the new socket as an error code from accept()";
            // they concern that connection only.
            Some(
                libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM,
            ) => AcceptError::Connection,
            _ => AcceptError::Other,
        }
    }
}

/// The accept loop's error policy, one per accept loop.
///
/// - `EINTR`: retried at once, not counted.
/// - An error of that one queued connection (`ECONNABORTED` and the like):
///   counted, logged at debug level, retried at once.
/// - Out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`,
///   `ENOMEM`): retrying at once would spin a CPU, since the pending
///   connection stays in the backlog and the listener stays readable. The
///   loop stops accepting for [`AcceptBackoff::failed`]'s delay (5 ms,
///   doubling to 1 s) and keeps serving its open connections meanwhile.
/// - Any other error is retried at once the first time; if it comes again
///   before an `accept` succeeds it backs off like exhaustion, so that a
///   lasting error never spins either.
///
/// Pauses are logged at warn level, at most about once a second, with the
/// count of those not logged.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    /// An error of the `Other` kind came since the last success.
    other_seen: bool,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { delay: FIRST_DELAY, other_seen: false, last_log: None, suppressed: 0 }
    }
}

impl AcceptBackoff {
    /// An `accept` succeeded: the next failure starts over.
    pub fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
        self.other_seen = false;
    }

    /// An `accept` failed with `err`. Returns how long to stop accepting, or
    /// `None` to accept again at once. Counts the error (unless it was
    /// `EINTR`) and logs as the type's documentation says.
    pub fn failed(&mut self, err: &io::Error, stats: &Stats) -> Option<Duration> {
        let kind = AcceptError::of(err);
        if kind == AcceptError::Interrupted {
            return None;
        }
        stats.record_accept_error();
        let first_other = kind == AcceptError::Other && !std::mem::replace(&mut self.other_seen, true);
        if kind == AcceptError::Connection || first_other {
            tracing::debug!(error = %err, "accept failed");
            return None;
        }
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            tracing::warn!(
                error = %err,
                retry_in = ?self.delay,
                suppressed = self.suppressed,
                "accept keeps failing; pausing accept"
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_doubles_to_one_second() {
        let stats = Stats::default();
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<_> = (0..10).map(|_| backoff.failed(&emfile, &stats).unwrap()).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile, &stats), Some(Duration::from_millis(5)));
        assert_eq!(stats.snapshot().accept_errors, 11);
    }

    /// What `failed` returns for `n` failures with `errno` in a row (delays
    /// in ms), and how many accept errors it counted.
    fn in_a_row(errno: i32, n: usize) -> (Vec<Option<u128>>, u64) {
        let stats = Stats::default();
        let mut backoff = AcceptBackoff::default();
        let err = io::Error::from_raw_os_error(errno);
        let delays = (0..n).map(|_| backoff.failed(&err, &stats).map(|d| d.as_millis())).collect();
        (delays, stats.snapshot().accept_errors)
    }

    #[test]
    fn per_connection_errors_do_not_pause() {
        assert_eq!(in_a_row(libc::ECONNABORTED, 3), (vec![None; 3], 3));
    }

    #[test]
    fn interrupted_is_retried_and_not_counted() {
        assert_eq!(in_a_row(libc::EINTR, 2), (vec![None; 2], 0));
    }

    #[test]
    fn another_error_that_repeats_backs_off() {
        assert_eq!(in_a_row(libc::EINVAL, 3), (vec![None, Some(5), Some(10)], 3));
        let stats = Stats::default();
        let mut backoff = AcceptBackoff::default();
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        backoff.failed(&einval, &stats);
        backoff.succeeded();
        assert_eq!(backoff.failed(&einval, &stats), None, "a success starts over");
    }
}
