//! Samples of a long run (`echo-bench soak`): progress, errors, and the
//! server's descriptors and memory over time, so that a leak shows as drift.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::Shared;
use crate::procfs;

/// One look at a run in progress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started (warm-up included).
    pub elapsed_s: f64,
    /// Round trips completed so far, every one verified.
    pub round_trips: u64,
    /// Connection errors so far.
    pub errors: u64,
    /// Descriptors the server has open, when it is our child.
    pub server_fds: Option<usize>,
    /// The server's resident memory, KiB, when it is our child.
    pub server_rss_kib: Option<u64>,
}

/// Takes a [`Sample`] every `every` and prints it on stderr.
#[derive(Debug)]
pub(super) struct Sampler {
    every: Duration,
    start: Instant,
    next: Instant,
    server: Option<u32>,
    samples: Vec<Sample>,
}

impl Sampler {
    pub(super) fn new(every: Duration, start: Instant, server: Option<u32>) -> Self {
        Sampler { every, start, next: start, server, samples: Vec::new() }
    }

    /// Takes a sample if one is due; returns when the next one is.
    pub(super) fn poll(&mut self, now: Instant, shared: &Shared) -> io::Result<Instant> {
        if now >= self.next {
            self.take(now, shared)?;
            self.next += self.every;
        }
        Ok(self.next)
    }

    /// Returns the samples. None is taken now: the run has ended and the
    /// clients are closing their connections, which a sample would count as
    /// drift.
    pub(super) fn finish(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.samples)
    }

    fn take(&mut self, now: Instant, shared: &Shared) -> io::Result<()> {
        let sample = Sample {
            elapsed_s: now.saturating_duration_since(self.start).as_secs_f64(),
            round_trips: shared.progress.load(Relaxed),
            errors: shared.errors.load(Relaxed),
            server_fds: self.server.map(procfs::fd_count).transpose()?,
            server_rss_kib: self.server.map(|pid| procfs::status_kib(pid, "VmRSS")).transpose()?,
        };
        let server = match (sample.server_fds, sample.server_rss_kib) {
            (Some(fds), Some(rss)) => {
                format!(", server: {fds} descriptors, RSS {:.1} MiB", rss as f64 / 1024.0)
            }
            _ => String::new(),
        };
        eprintln!(
            "[{:>7.1} s] {} round trips verified, {} errors{server}",
            sample.elapsed_s, sample.round_trips, sample.errors
        );
        self.samples.push(sample);
        Ok(())
    }
}
