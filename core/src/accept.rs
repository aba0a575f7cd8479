//! What every backend does when `accept` fails.

use std::io;
use std::time::{Duration, Instant};

use crate::stats::Stats;

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Back-off for `accept` when the process or system is out of descriptors or
/// memory.
///
/// Retrying at once would spin a CPU: the pending connection stays in the
/// backlog, so the listener stays readable. Instead the backend stops
/// accepting for [`AcceptBackoff::failed`]'s delay (5 ms, doubling to 1 s)
/// and keeps serving its open connections meanwhile.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { delay: FIRST_DELAY, last_log: None, suppressed: 0 }
    }
}

/// Whether an `accept` error means "out of resources": the process or system
/// descriptor table is full, or the kernel lacks memory.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl AcceptBackoff {
    /// An `accept` succeeded: the next failure starts over at 5 ms.
    pub fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// An `accept` failed with `err`. Returns how long to stop accepting, or
    /// `None` when the error concerned only that one connection (it was reset
    /// while queued, say) and accepting can go on at once. Counts the error
    /// and logs at most about once a second.
    pub fn failed(&mut self, err: &io::Error, stats: &Stats) -> Option<Duration> {
        stats.record_accept_error();
        if !is_resource_exhaustion(err) {
            tracing::debug!(error = %err, "accept failed");
            return None;
        }
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            tracing::warn!(
                error = %err,
                retry_in = ?self.delay,
                suppressed = self.suppressed,
                "accept failed for lack of resources; pausing accept"
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

    #[test]
    fn per_connection_errors_do_not_pause() {
        let stats = Stats::default();
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(backoff.failed(&aborted, &stats), None);
    }
}
