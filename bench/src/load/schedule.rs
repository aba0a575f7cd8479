//! The open-loop send schedule of one client thread: when each message is
//! due, which connection takes it, the timer that wakes the thread for it,
//! and where a message's latency starts.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::LoadConfig;

/// The poll token of the schedule's timer.
pub(super) const TIMER: Token = Token(usize::MAX);

/// How early an open-loop send may go out to share a wake-up with others.
pub(super) const SEND_AHEAD: Duration = Duration::from_micros(50);

/// This thread's share of an open-loop rate, as one schedule of send times
/// spread over its connections in turn.
///
/// Message `g` of the thread is due at `first_due + g * interval` and goes
/// to connection `g % conns`, so the `n`-th message of connection `c` is
/// message `n * conns + c`: a due time is arithmetic, never stored, and a
/// connection whose server stalls owes a count of messages, not a queue of
/// times that grows with the rate and the stall.
pub(super) struct Schedule {
    /// When the thread's first message is due.
    first_due: Instant,
    /// Time between two messages of this thread.
    interval: Duration,
    /// The thread's next message.
    next: u64,
    /// Wakes the thread at the next send time; `None` when it busy-polls
    /// and looks at the schedule on every pass anyway.
    timer: Option<TimerFd>,
}

impl Schedule {
    /// The schedule of thread `thread_index`, which holds `conns` of the
    /// run's connections; `None` in a closed loop.
    pub(super) fn new(
        config: &LoadConfig,
        conns: usize,
        thread_index: usize,
        start: Instant,
        poll: &Poll,
    ) -> io::Result<Option<Schedule>> {
        let Some(rate) = config.rate else { return Ok(None) };
        // The thread's share of the rate follows its share of the
        // connections, so every connection is loaded alike when they do not
        // divide evenly across threads.
        let share = conns as f64 / config.connections.max(1) as f64;
        let interval = Duration::from_secs_f64(1.0 / (rate * share).max(1e-3));
        // A precise timer (timerfd, nanoseconds): poll's own timeout counts
        // in milliseconds, which would add up to 1 ms to every latency.
        let timer = if config.spin {
            None
        } else {
            let _ = nix::sys::prctl::set_timerslack(1_000);
            let fd =
                TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).map_err(io::Error::from)?;
            poll.registry().register(&mut SourceFd(&fd.as_fd().as_raw_fd()), TIMER, Interest::READABLE)?;
            Some(fd)
        };
        // Threads start their schedules staggered so their sends interleave.
        let threads = config.client_threads.max(1) as f64;
        let first_due = start + interval.mul_f64(thread_index as f64 / threads);
        Ok(Some(Schedule { first_due, interval, next: 0, timer }))
    }

    /// When the thread's message `g` is due.
    fn due(&self, g: u64) -> Instant {
        let ns = (self.interval.as_nanos() as u64).saturating_mul(g);
        self.first_due + Duration::from_nanos(ns)
    }

    /// When the `n`-th message (from 0) of connection `conn`, one of
    /// `conns`, is due.
    pub(super) fn due_of(&self, conn: usize, n: u64, conns: usize) -> Instant {
        self.due(n * conns as u64 + conn as u64)
    }

    /// Takes the next message if it is due by `now` (or within
    /// [`SEND_AHEAD`] of it, so that one wake-up serves a batch instead of
    /// one timer interrupt per message) and names its connection, in turn,
    /// and its due time.
    pub(super) fn take_one(&mut self, now: Instant, conns: usize) -> Option<(usize, Instant)> {
        let due = self.due(self.next);
        if conns == 0 || due > now + SEND_AHEAD {
            return None;
        }
        let conn = (self.next % conns as u64) as usize;
        self.next += 1;
        Some((conn, due))
    }

    /// Arms the timer for the next send time. Arming it resets its count of
    /// expirations, so each expiry is a new edge for mio.
    pub(super) fn arm(&self) -> io::Result<()> {
        let Some(timer) = &self.timer else { return Ok(()) };
        let wait =
            self.due(self.next).saturating_duration_since(Instant::now()).max(Duration::from_micros(1));
        timer
            .set(Expiration::OneShot(TimeSpec::from_duration(wait)), TimerSetTimeFlags::empty())
            .map_err(io::Error::from)
    }
}

/// Where an open-loop message's latency starts, for a message due at `due`
/// and sent at `sent`: a message sent late counts from when it was due, so
/// the time it waited behind a stalled server shows in the percentiles (the
/// coordinated-omission correction); one sent a little early, to share a
/// wake-up with others, counts from when it was sent, or its reply could
/// come back "before" it started.
pub(super) fn counted_from(due: Instant, sent: Instant) -> Instant {
    due.min(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_message_counts_from_when_it_was_due_an_early_one_from_when_it_was_sent() {
        let due = Instant::now();
        let late = due + Duration::from_millis(300);
        assert_eq!(counted_from(due, late), due, "the wait behind a stall must count");
        let early = due - SEND_AHEAD;
        assert_eq!(counted_from(due, early), early, "a reply cannot come before its message was sent");
    }

    fn config(rate: f64, connections: usize, client_threads: usize) -> LoadConfig {
        LoadConfig {
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rate: Some(rate),
            client_threads,
            spin: true,
            ..LoadConfig::new("127.0.0.1:1".parse().unwrap(), echo_core::Mode::Got, connections, 64)
        }
    }

    /// Every message due by `now`, as [`Schedule::take_one`] takes them.
    fn take_due(schedule: &mut Schedule, now: Instant, conns: usize) -> Vec<(usize, Instant)> {
        std::iter::from_fn(|| schedule.take_one(now, conns)).collect()
    }

    #[test]
    fn messages_go_to_the_connections_in_turn_at_the_rate() {
        let poll = Poll::new().unwrap();
        let start = Instant::now();
        // 1,000/s over 3 connections on one thread: one message a millisecond.
        let mut schedule = Schedule::new(&config(1000.0, 3, 1), 3, 0, start, &poll).unwrap().unwrap();
        let due = take_due(&mut schedule, start + Duration::from_millis(4), 3);
        let ms = |n: u64| start + Duration::from_millis(n);
        assert_eq!(due, [(0, ms(0)), (1, ms(1)), (2, ms(2)), (0, ms(3)), (1, ms(4))]);
        assert_eq!(take_due(&mut schedule, ms(4), 3).len(), 0, "nothing is due twice");
        assert_eq!(schedule.due_of(1, 1, 3), ms(4), "connection 1's second message is the thread's fifth");
        assert!(
            Schedule::new(&LoadConfig { rate: None, ..config(1.0, 3, 1) }, 3, 0, start, &poll)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_thread_with_more_connections_takes_more_of_the_rate() {
        let poll = Poll::new().unwrap();
        let start = Instant::now();
        // 3,000/s over 3 connections on 2 threads: the one with 2 of them
        // sends 2,000/s, staggered by half its interval.
        let mut two = Schedule::new(&config(3000.0, 3, 2), 2, 1, start, &poll).unwrap().unwrap();
        let sent = take_due(&mut two, start + Duration::from_millis(10), 2).len();
        assert_eq!(sent, 20, "2,000/s for 10 ms, the first due at 0.25 ms");
    }
}
