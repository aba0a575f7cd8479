//! One load-generator thread: a mio event loop over its share of the
//! connections. It does not share a runtime with any server it measures.
//!
//! A thread loads its connections until the run ends, then sends nothing
//! new and waits, up to the grace, for the replies still owed. Any
//! connection the server closes, half-closes or resets while the thread
//! holds it fails the run: connections are the client's to close.
//!
//! With churn (`--churn N`) a connection is retired once its N-th reply
//! is verified: the client shuts down its write side and the server must
//! answer with its end of stream, and nothing else, within the grace. A
//! new connection, with a new id and so a stream of its own, takes the
//! retired one's place at once, connecting without blocking; the place
//! keeps its open-loop schedule and its round-trip count.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::pattern::{Checker, Mismatch, Pattern};
use super::schedule::{Schedule, TIMER, counted_from};
use super::{Checks, Errors, LoadConfig};
use crate::procfs::{self, CpuTime};

/// What every thread of one run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// When measuring starts (the warm-up ends).
    pub(crate) measure_from: Instant,
    /// When the run ends: nothing new is sent after it.
    pub(crate) end: Instant,
    /// When the grace ends: a reply still owed then fails the run.
    pub(crate) grace_end: Instant,
    /// Set on the first failure: every thread stops, the run is void.
    pub(crate) abort: AtomicBool,
    /// Round trips completed so far, warm-up included, for the progress bar.
    pub(crate) progress: AtomicU64,
    /// Connection errors so far, warm-up included, for status lines.
    pub(crate) errors: AtomicU64,
}

/// What one thread measured, between `measure_from` and `end`, and what it
/// saw in the grace after.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    pub(crate) latency_ns: Histogram<u64>,
    /// Churn: connect latencies of the connections established in the
    /// window.
    pub(crate) connect_ns: Histogram<u64>,
    /// Churn: connection lifetimes completed in the window (N round trips,
    /// then the client's half-close answered by the server's close).
    pub(crate) lifetimes: u64,
    /// Churn: connections established in the window.
    pub(crate) connects: u64,
    pub(crate) per_connection: Vec<u64>,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) errors: Errors,
    pub(crate) cpu: CpuTime,
    /// Calls to poll.
    pub(crate) polls: u64,
    /// Busy-polling: time spent in polls that found nothing to do.
    pub(crate) idle: Duration,
    /// Messages sent or due and still unanswered at the end of the window.
    pub(crate) unanswered: u64,
    /// Of those, the ones due (open loop) but never sent: the server held
    /// the pipeline full until the end.
    pub(crate) unsent: u64,
    /// Replies that completed after the window, in the grace: in the
    /// latency with their true latency, not in the round trips.
    pub(crate) answered_in_grace: u64,
    /// Messages sent and still unanswered when the grace ended, and the
    /// connections that owed them.
    pub(crate) owed_after_grace: u64,
    pub(crate) owing_connections: u64,
    /// The connections, kept open until the server's CPU time has been
    /// read (one closed at the end would end a thread-per-connection
    /// server's thread, and its run time with it, before the reading), and
    /// then checked for bytes beyond the last reply.
    pub(crate) connections: Vec<Closing>,
    /// The first failure: the connection and what went wrong.
    pub(crate) failure: Option<(usize, Mismatch)>,
}

/// A connection at the end of its run, and where its reply stream stood.
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) id: usize,
    pub(crate) stream: TcpStream,
    /// The checker, to place a failure after the last reply.
    pub(crate) checker: Checker,
    /// Request bytes sent (or queued): what the server owes an echo of.
    pub(crate) sent: u64,
}

/// The poll tokens of retired connections start here: below are the
/// places of the live ones, and `TIMER` is above.
const RETIRED: usize = usize::MAX / 2;

/// Where a connection stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A non-blocking connect started at this time and not yet
    /// established: nothing is sent.
    Connecting(Instant),
    /// Established: loaded and checked.
    Open,
    /// Churn: its round trips done, the client has shut its write side
    /// down; the server must close its own by this deadline, sending
    /// nothing more.
    HalfClosed(Instant),
    /// Its life is over: both sides closed.
    Done,
}

/// One connection of the load generator.
struct Conn {
    stream: TcpStream,
    state: State,
    /// Churn: round trips after which the connection is retired.
    churn: Option<u64>,
    /// Global connection number, for reports.
    id: usize,
    /// Its index in this thread's connections, and so in the schedule.
    slot: usize,
    pattern: Pattern,
    checker: Checker,
    /// Request bytes queued but not yet written, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Messages queued so far.
    queued: u64,
    /// Messages whose reply was fully verified.
    completed: u64,
    /// Start time of each message in flight: when it was sent (closed loop)
    /// or when it was due (open loop), oldest first. At most `pipeline`.
    in_flight: VecDeque<Instant>,
    /// Open loop: messages the schedule gave this connection so far.
    due_taken: u64,
    /// Of those, the ones waiting for a free slot in the pipeline: the
    /// oldest `overdue`. Their due times follow from the schedule, so a
    /// stalled server costs a count, not memory. Their latency counts from
    /// when they were due.
    overdue: u64,
    /// Round trips completed inside the measured window.
    measured: u64,
    alive: bool,
    /// Messages kept in flight.
    pipeline: usize,
}

impl Conn {
    /// Queues messages while the pipeline has room: as many as it takes in
    /// a closed loop, the overdue ones in an open loop (`schedule`, shared
    /// by `conns` connections).
    fn fill(&mut self, now: Instant, schedule: Option<&Schedule>, conns: usize) {
        if self.state != State::Open {
            return;
        }
        while self.in_flight.len() < self.pipeline && self.churn.is_none_or(|n| self.queued < n) {
            let start = match schedule {
                Some(schedule) => {
                    if self.overdue == 0 {
                        break;
                    }
                    let due = schedule.due_of(self.slot, self.due_taken - self.overdue, conns);
                    self.overdue -= 1;
                    counted_from(due, now)
                }
                None => now,
            };
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            self.pattern.message(self.queued, &mut self.out);
            self.queued += 1;
            self.in_flight.push_back(start);
        }
    }

    /// Writes what it can; `WouldBlock` leaves the rest for the next
    /// writable event.
    fn flush(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// A failure of this connection's reply stream where it stands: the
    /// server ended it (`how`) while replies were still owed.
    fn ended(&self, how: &io::Error) -> Mismatch {
        let owed = self.queued * self.pattern.size() - self.checker.verified();
        let what = match how.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the end of the stream: the server closed or half-closed the connection".to_owned()
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                "a reset: the server dropped the connection".to_owned()
            }
            _ => format!("an error: {how}"),
        };
        self.checker.failure(
            format!(
                "the connection to stay open ({} messages, {owed} request bytes unanswered)",
                self.in_flight.len()
            ),
            what,
        )
    }
}

/// Whether the thread still sends (the run) or only collects what it is
/// owed (the grace).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Run,
    Grace,
}

/// One thread's event loop and what it has measured so far.
struct Thread<'a> {
    config: &'a LoadConfig,
    checks: &'a Checks,
    /// Churn: round trips per connection.
    churn: Option<u64>,
    /// Churn: connections retired from their place and waiting for the
    /// server's end of stream, under the tokens from `RETIRED` on.
    retired: Slab<Conn>,
    /// Churn: the deadline of each retired connection (with its slab key
    /// and id, as a key may be reused), oldest first.
    retired_deadlines: VecDeque<(Instant, usize, usize)>,
    /// Churn: the id of this thread's next new connection, and the step
    /// to the one after (the threads' ids interleave, so every connection
    /// of the run has its own).
    next_id: usize,
    id_step: usize,
    shared: &'a Shared,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    schedule: Option<Schedule>,
    result: ThreadResult,
    measuring: bool,
    /// Whether bytes written count: from the start of the measured window
    /// to its end (the grace only finishes writes already begun).
    counting_out: bool,
    cpu_start: CpuTime,
    buf: Vec<u8>,
    /// Round trips not yet added to `shared.progress`: once per wake-up is
    /// often enough for a progress bar, and cheaper than once per read.
    progressed: u64,
}

/// Runs one thread's connections until `shared.end`, then through the
/// grace.
pub(crate) fn run(
    config: &LoadConfig,
    checks: &Checks,
    churn: Option<u64>,
    streams: Vec<(usize, std::net::TcpStream)>,
    thread_index: usize,
    shared: &Arc<Shared>,
) -> io::Result<ThreadResult> {
    if let Some(cpu) = config.client_cpu {
        procfs::pin_current_thread(cpu)?;
    }
    let poll = Poll::new()?;
    let conns = connections(config, checks, churn, streams, &poll)?;
    let start = Instant::now();
    let schedule = Schedule::new(config, conns.len(), thread_index, start, &poll)?;
    let mut thread = Thread {
        config,
        checks,
        churn,
        retired: Slab::new(),
        retired_deadlines: VecDeque::new(),
        next_id: config.connections + thread_index,
        id_step: config.client_threads.max(1),
        shared,
        poll,
        events: Events::with_capacity(1024),
        conns,
        schedule,
        result: ThreadResult::new(latency_histogram(config, checks)?),
        measuring: false,
        counting_out: false,
        cpu_start: CpuTime::default(),
        buf: vec![0u8; 64 * 1024],
        progressed: 0,
    };
    for slot in 0..thread.conns.len() {
        thread.fill_and_send(slot, start);
    }
    thread.load()?;
    thread.end_window()?;
    thread.grace()?;
    Ok(thread.finish())
}

/// The thread's connections, non-blocking and registered with `poll`.
fn connections(
    config: &LoadConfig,
    checks: &Checks,
    churn: Option<u64>,
    streams: Vec<(usize, std::net::TcpStream)>,
    poll: &Poll,
) -> io::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(streams.len());
    for (slot, (id, stream)) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        // Both interests once: mio is edge-triggered, and a writable edge
        // only comes after a write that did not fit, so this costs nothing
        // while writes succeed at once.
        poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(new_conn(config, checks, churn, id, slot, stream, State::Open));
    }
    Ok(conns)
}

/// Connection `id` in place `slot`, on `stream`, registered already.
fn new_conn(
    config: &LoadConfig,
    checks: &Checks,
    churn: Option<u64>,
    id: usize,
    slot: usize,
    stream: TcpStream,
    state: State,
) -> Conn {
    // The pattern's start follows from the id: a new connection's stream
    // differs from every other live one's (see `pattern`).
    let pattern = Pattern::new(id as u64, config.size, config.mode);
    Conn {
        stream,
        state,
        churn,
        id,
        slot,
        pattern,
        checker: Checker::new(pattern, config.mode, checks.read_size, checks.max_line),
        out: Vec::new(),
        out_pos: 0,
        queued: 0,
        completed: 0,
        in_flight: VecDeque::new(),
        due_taken: 0,
        overdue: 0,
        measured: 0,
        alive: true,
        pipeline: config.pipeline.max(1),
    }
}

/// A latency histogram that holds any latency the run can see: none is
/// longer than the whole run and its grace, and the bound leaves twice
/// that and a minute more. A value beyond it is an error, never clipped.
fn latency_histogram(config: &LoadConfig, checks: &Checks) -> io::Result<Histogram<u64>> {
    let longest = config.warmup + config.duration + checks.grace;
    let highest = longest.saturating_mul(2).saturating_add(Duration::from_secs(60));
    Histogram::new_with_bounds(1, highest.as_nanos().min(u64::MAX as u128 / 2) as u64, 3)
        .map_err(io::Error::other)
}

impl ThreadResult {
    fn new(latency_ns: Histogram<u64>) -> Self {
        ThreadResult {
            connect_ns: latency_ns.clone(),
            lifetimes: 0,
            connects: 0,
            latency_ns,
            per_connection: Vec::new(),
            bytes_out: 0,
            bytes_in: 0,
            errors: Errors::default(),
            cpu: CpuTime::default(),
            polls: 0,
            idle: Duration::ZERO,
            unanswered: 0,
            unsent: 0,
            answered_in_grace: 0,
            owed_after_grace: 0,
            owing_connections: 0,
            connections: Vec::new(),
            failure: None,
        }
    }

    /// Records one latency; one beyond the histogram's bound is a bug of
    /// the bound, reported rather than clipped.
    fn record(&mut self, latency: Duration) -> io::Result<()> {
        let ns = latency.as_nanos().max(1) as u64;
        self.latency_ns
            .record(ns)
            .map_err(|e| io::Error::other(format!("latency {latency:?} beyond the histogram: {e}")))
    }
}

impl Thread<'_> {
    /// The run: sends and checks until `shared.end` (or an abort).
    fn load(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= self.shared.end || self.shared.abort.load(Relaxed) {
                return Ok(());
            }
            if !self.measuring && now >= self.shared.measure_from {
                self.measuring = true;
                self.counting_out = true;
                self.cpu_start = procfs::thread_cpu()?;
            }
            self.expire_retired(now);
            // Whether this pass sent on schedule before polling: work, not idle.
            let sent = self.send_due(now)?;
            let mut timeout = self.shared.end.saturating_duration_since(now);
            if let Some(&(deadline, _, _)) = self.retired_deadlines.front() {
                timeout = timeout.min(deadline.saturating_duration_since(now));
            }
            if !self.measuring {
                timeout = timeout.min(self.shared.measure_from.saturating_duration_since(now));
            }
            // Busy-polling: a pass whose poll finds nothing was idle from its
            // start, or, if it sent on schedule first, from after the sends.
            let mut idle_from = now;
            if self.config.spin {
                timeout = Duration::ZERO;
                if sent {
                    idle_from = Instant::now();
                }
            }
            self.poll_and_serve(timeout, idle_from, Phase::Run)?;
        }
    }

    /// Open loop: hands each message now due to its connection, which
    /// sends it if its pipeline has room and otherwise counts it overdue.
    /// Returns whether any was due.
    fn send_due(&mut self, now: Instant) -> io::Result<bool> {
        let conns = self.conns.len();
        let mut sent = false;
        while let Some((slot, _due)) = self.schedule.as_mut().and_then(|s| s.take_one(now, conns)) {
            sent = true;
            let conn = &mut self.conns[slot];
            conn.due_taken += 1;
            conn.overdue += 1;
            if conn.alive {
                self.fill_and_send(slot, now);
            }
        }
        if let Some(schedule) = &self.schedule {
            schedule.arm()?;
        }
        Ok(sent)
    }

    /// The end of the window: the CPU reading, and what is still owed then.
    /// Messages due but never sent count in the latency with their age now,
    /// a lower bound, so a server that stalls the pipeline to the end shows
    /// in the percentiles.
    fn end_window(&mut self) -> io::Result<()> {
        self.counting_out = false;
        if !self.measuring {
            return Ok(());
        }
        self.result.cpu = procfs::thread_cpu()?.since(self.cpu_start);
        // A thread that shares its CPU with another waits in its polls
        // while the other runs: that wall-clock time was never its CPU time.
        self.result.idle = self.result.idle.min(self.result.cpu.total());
        let end = self.shared.end;
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            let (in_flight, overdue) = (conn.in_flight.len() as u64, conn.overdue);
            self.result.unanswered += in_flight + overdue;
            self.result.unsent += overdue;
            if let (Some(schedule), true) = (&self.schedule, conn.alive) {
                let oldest = conn.due_taken - overdue;
                let ages: Vec<Duration> = (oldest..conn.due_taken)
                    .map(|n| end.saturating_duration_since(schedule.due_of(conn.slot, n, self.conns.len())))
                    .collect();
                for age in ages {
                    self.result.record(age)?;
                }
            }
        }
        Ok(())
    }

    /// The grace: sends nothing new (what was queued still goes out) and
    /// waits, up to `shared.grace_end`, for every reply still owed.
    fn grace(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            self.expire_retired(now);
            let owed = self.conns.iter().any(|c| c.alive && !c.in_flight.is_empty());
            // Churn: a server's close after the client's is owed too.
            let closing = !self.retired.is_empty()
                || self.conns.iter().any(|c| c.alive && matches!(c.state, State::HalfClosed(_)));
            if !(owed || closing) || now >= self.shared.grace_end || self.shared.abort.load(Relaxed) {
                return Ok(());
            }
            let mut timeout = if self.config.spin {
                Duration::ZERO
            } else {
                self.shared.grace_end.saturating_duration_since(now)
            };
            if let Some(&(deadline, _, _)) = self.retired_deadlines.front() {
                timeout = timeout.min(deadline.saturating_duration_since(now));
            }
            self.poll_and_serve(timeout, now, Phase::Grace)?;
        }
    }

    /// Polls once and serves every event.
    fn poll_and_serve(&mut self, timeout: Duration, idle_from: Instant, phase: Phase) -> io::Result<()> {
        if self.progressed > 0 {
            self.shared.progress.fetch_add(self.progressed, Relaxed);
            self.progressed = 0;
        }
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        // One clock read serves every reply of this wake-up, each of which
        // arrived before it, and stamps the messages sent in answer (up to
        // one batch's processing early); a read of the clock per reply
        // would cost the client as much as a percent of its CPU time per
        // round trip.
        let woke = Instant::now();
        if self.measuring && phase == Phase::Run {
            self.result.polls += 1;
            if self.config.spin && self.events.is_empty() {
                self.result.idle += woke - idle_from;
            }
        }
        // The events are taken out for the loop, which needs all of `self`,
        // and put back: an empty Events holds no allocation.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            // Nothing to read on the timer: arming it again resets its
            // expiration count, and its next expiry is a new edge.
            let slot = event.token().0;
            if event.token() == TIMER {
                continue;
            }
            if slot >= RETIRED {
                self.retired_event(slot - RETIRED, woke);
                continue;
            }
            let Some(conn) = self.conns.get(slot) else { continue };
            if !conn.alive {
                continue;
            }
            match conn.state {
                State::Connecting(started) => self.connecting(slot, started, woke, phase),
                State::HalfClosed(_) => self.half_closed_slot(slot, woke),
                State::Done => {}
                State::Open => {
                    if readable(event) {
                        // A closed read side or an error: the end of the stream (or
                        // the error) waits behind the data, and must be read.
                        let to_eof = event.is_read_closed() || event.is_error();
                        self.read(slot, woke, to_eof, phase)?;
                    }
                    if self.conns[slot].alive {
                        self.send(slot);
                    }
                    let conn = &self.conns[slot];
                    if conn.alive && self.churn.is_some_and(|n| conn.completed >= n) {
                        self.retire(slot, woke, phase);
                    }
                }
            }
        }
        self.events = events;
        Ok(())
    }

    /// Reads and checks a connection's replies; a failure fails the run.
    fn read(&mut self, slot: usize, woke: Instant, to_eof: bool, phase: Phase) -> io::Result<()> {
        match self.read_replies(slot, woke, to_eof, phase) {
            Ok(done) => self.progressed += done,
            Err(ReadFailure::Io(e)) => {
                let failure = self.conns[slot].ended(&e);
                self.result.errors.record(&e);
                self.shared.errors.fetch_add(1, Relaxed);
                self.fail(slot, failure);
            }
            Err(ReadFailure::Mismatch(m)) => self.fail(slot, m),
            Err(ReadFailure::Histogram(e)) => return Err(e),
        }
        Ok(())
    }

    /// Fails the run on `slot`'s connection: the first failure of the
    /// thread is the one reported, and every thread stops.
    fn fail(&mut self, slot: usize, failure: Mismatch) {
        let conn = &mut self.conns[slot];
        conn.alive = false;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let id = conn.id;
        self.fail_with(id, failure);
    }

    /// Fails the run on connection `id`.
    fn fail_with(&mut self, id: usize, failure: Mismatch) {
        self.result.failure.get_or_insert((id, failure));
        self.shared.abort.store(true, Relaxed);
    }

    /// Churn: `slot`'s connection has lived its round trips. Anything the
    /// server sent beyond the last reply, or a close of its own before the
    /// client's, fails the run; otherwise the client shuts its write side
    /// down and, in the run, a new connection takes the place at once
    /// while the old one waits for the server's end of stream.
    fn retire(&mut self, slot: usize, now: Instant, phase: Phase) {
        let deadline = now + self.checks.grace;
        let conn = &mut self.conns[slot];
        match half_closed_read(conn, &mut self.buf) {
            Ok(false) => {}
            Ok(true) => {
                let failure = conn.checker.failure(
                    "the connection open until the client closed it".to_owned(),
                    "the end of the stream: the server closed the connection first".to_owned(),
                );
                return self.fail(slot, failure);
            }
            Err(failure) => return self.fail(slot, failure),
        }
        // An error here is a connection already gone, which the next read
        // shows.
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        conn.state = State::HalfClosed(deadline);
        if phase != Phase::Run || now >= self.shared.end || self.shared.abort.load(Relaxed) {
            // Nothing new once the window has closed: the place stays
            // with the old connection until the server closes it.
            return;
        }
        let id = self.next_id;
        self.next_id += self.id_step;
        let started = Instant::now();
        let stream = TcpStream::connect(self.config.addr).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => return self.connect_failed(slot, &e),
        };
        let mut new =
            new_conn(self.config, self.checks, self.churn, id, slot, stream, State::Connecting(started));
        let old = &self.conns[slot];
        (new.due_taken, new.overdue, new.measured) = (old.due_taken, old.overdue, old.measured);
        let mut old = std::mem::replace(&mut self.conns[slot], new);
        let entry = self.retired.vacant_entry();
        let key = entry.key();
        if self.poll.registry().reregister(&mut old.stream, Token(RETIRED + key), Interest::READABLE).is_err()
        {
            // Gone already: its end of stream is no longer the server's to give.
            return;
        }
        self.retired_deadlines.push_back((deadline, key, old.id));
        entry.insert(old);
    }

    /// A connect that failed fails the run, with the error.
    fn connect_failed(&mut self, slot: usize, e: &io::Error) {
        self.result.errors.record(e);
        self.shared.errors.fetch_add(1, Relaxed);
        let failure = self.conns[slot]
            .checker
            .failure(format!("a new connection to {}", self.config.addr), format!("an error: {e}"));
        self.fail(slot, failure);
    }

    /// Churn: an event on `slot`'s connection while it connects. Mio's
    /// contract: a writable (or error) event means the connect finished,
    /// one way or the other, which `take_error` and `peer_addr` tell; a
    /// spurious wake-up finds it still connecting (`NotConnected`).
    fn connecting(&mut self, slot: usize, started: Instant, woke: Instant, phase: Phase) {
        let conn = &mut self.conns[slot];
        let established = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => conn.stream.set_nodelay(true).map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match established {
            Ok(false) => {}
            Ok(true) => {
                conn.state = State::Open;
                if self.measuring && woke < self.shared.end {
                    self.result.connects += 1;
                    let ns = woke.saturating_duration_since(started).as_nanos().max(1) as u64;
                    // Beyond the bound only if the connect took longer than
                    // the run: then it is left out, as it is of no window.
                    let _ = self.result.connect_ns.record(ns);
                }
                if phase == Phase::Run && woke < self.shared.end {
                    self.fill_and_send(slot, woke);
                }
            }
            Err(e) => self.connect_failed(slot, &e),
        }
    }

    /// Churn: an event on a connection retired in the grace, still in its
    /// place.
    fn half_closed_slot(&mut self, slot: usize, woke: Instant) {
        match half_closed_read(&mut self.conns[slot], &mut self.buf) {
            Ok(false) => {}
            Ok(true) => {
                let conn = &mut self.conns[slot];
                conn.state = State::Done;
                let _ = self.poll.registry().deregister(&mut conn.stream);
                if self.measuring && woke < self.shared.end {
                    self.result.lifetimes += 1;
                }
            }
            Err(failure) => self.fail(slot, failure),
        }
    }

    /// Churn: an event on retired connection `key`: its end of stream
    /// completes its life; bytes fail the run.
    fn retired_event(&mut self, key: usize, woke: Instant) {
        let Some(conn) = self.retired.get_mut(key) else { return };
        let failure = match half_closed_read(conn, &mut self.buf) {
            Ok(false) => return,
            Ok(true) => None,
            Err(failure) => Some(failure),
        };
        let mut conn = self.retired.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        match failure {
            None if self.measuring && woke < self.shared.end => self.result.lifetimes += 1,
            None => {}
            Some(failure) => self.fail_with(conn.id, failure),
        }
    }

    /// Churn: fails the run on the first retired connection whose server
    /// has not closed its side within the grace after the client did.
    fn expire_retired(&mut self, now: Instant) {
        while let Some(&(deadline, key, id)) = self.retired_deadlines.front() {
            if deadline > now {
                return;
            }
            self.retired_deadlines.pop_front();
            if self.retired.get(key).is_none_or(|c| c.id != id) {
                continue;
            }
            let mut conn = self.retired.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let failure = conn.checker.failure(
                format!(
                    "the server's end of stream within the {} grace after the client half-closed",
                    humantime::format_duration(self.checks.grace)
                ),
                "nothing".to_owned(),
            );
            self.fail_with(id, failure);
        }
    }

    /// Queues what the pipeline has room for (never in the grace) and
    /// writes it.
    fn fill_and_send(&mut self, slot: usize, now: Instant) {
        let conns = self.conns.len();
        self.conns[slot].fill(now, self.schedule.as_ref(), conns);
        self.send(slot);
    }

    /// Writes what is queued, counting the bytes if measuring; a failed
    /// write fails the run.
    fn send(&mut self, slot: usize) {
        if self.conns[slot].state != State::Open {
            return;
        }
        match self.conns[slot].flush() {
            Ok(n) if self.counting_out => self.result.bytes_out += n as u64,
            Ok(_) => {}
            Err(e) => {
                let failure = self.conns[slot].ended(&e);
                self.result.errors.record(&e);
                self.shared.errors.fetch_add(1, Relaxed);
                self.fail(slot, failure);
            }
        }
    }

    /// Reads and checks every reply byte available, completing round trips;
    /// returns how many it completed. `to_eof`: the event said the server
    /// closed its side, so read on past a short read to see the end.
    fn read_replies(
        &mut self,
        slot: usize,
        now: Instant,
        to_eof: bool,
        phase: Phase,
    ) -> Result<u64, ReadFailure> {
        let mut done = 0;
        let conns = self.conns.len();
        loop {
            let conn = &mut self.conns[slot];
            let n = match conn.stream.read(&mut self.buf) {
                Ok(0) => return Err(ReadFailure::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadFailure::Io(e)),
            };
            conn.checker.feed(&self.buf[..n]).map_err(ReadFailure::Mismatch)?;
            let size = conn.pattern.size();
            if conn.checker.verified() > conn.queued * size {
                let sent = conn.queued * size;
                return Err(ReadFailure::Mismatch(conn.checker.failure(
                    format!("replies to the {sent} request bytes sent"),
                    "replies to more bytes than were sent".to_owned(),
                )));
            }
            let in_window = now < self.shared.end;
            if self.measuring && in_window {
                self.result.bytes_in += n as u64;
            }
            let before = done;
            while conn.checker.verified() >= (conn.completed + 1) * size {
                conn.completed += 1;
                done += 1;
                let started = conn.in_flight.pop_front().unwrap_or(now);
                if self.measuring {
                    // A reply of the grace counts its true latency, but not
                    // as a round trip of the window.
                    if in_window {
                        conn.measured += 1;
                    } else {
                        self.result.answered_in_grace += 1;
                    }
                    let latency = now.saturating_duration_since(started);
                    self.result.record(latency).map_err(ReadFailure::Histogram)?;
                }
            }
            // Nothing new once the window has closed, even from the pass that
            // first sees it closed: the grace only collects what is owed.
            if done > before && phase == Phase::Run && in_window {
                conn.fill(now, self.schedule.as_ref(), conns);
            }
            // A short read means the socket is drained; another read would
            // only return WouldBlock, which costs a system call per message.
            // Unless the server closed its side: then the end of the stream
            // waits behind the data, and must be seen.
            if n < self.buf.len() && !to_eof {
                return Ok(done);
            }
        }
    }

    /// The thread's result: what it measured, and its connections, still
    /// open, with what they still owe.
    fn finish(mut self) -> ThreadResult {
        // Churn: a retired connection still waiting for the server's close
        // once its deadline has passed fails the run, as in the run; one
        // retired in the grace, with time left, is only waited for, as the
        // closing check waits for the others.
        self.expire_retired(Instant::now());
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            let conn = &mut self.conns[slot];
            match conn.state {
                State::HalfClosed(deadline) if conn.alive && deadline <= now => {
                    let failure = conn.checker.failure(
                        format!(
                            "the server's end of stream within the {} grace after the client half-closed",
                            humantime::format_duration(self.checks.grace)
                        ),
                        "nothing".to_owned(),
                    );
                    self.fail(slot, failure);
                }
                // Never established, or its life over: nothing to check.
                State::Connecting(_) | State::HalfClosed(_) | State::Done if conn.alive => {
                    conn.alive = false;
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
                _ => {}
            }
        }
        for conn in &self.conns {
            if conn.alive && !conn.in_flight.is_empty() {
                self.result.owed_after_grace += conn.in_flight.len() as u64;
                self.result.owing_connections += 1;
            }
        }
        self.result.per_connection = self.conns.iter().map(|c| c.measured).collect();
        // Handed over to another poll for the closing check, so out of this
        // one (a dead connection is out already).
        for conn in self.conns.iter_mut().filter(|c| c.alive) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        // The live ones only: a churned place whose last connection never
        // connected, or whose life is over, has nothing left to check.
        self.result.connections = self
            .conns
            .into_iter()
            .filter(|c| c.alive)
            .map(|c| Closing {
                id: c.id,
                sent: c.queued * c.pattern.size(),
                stream: c.stream,
                checker: c.checker,
            })
            .collect();
        self.result
    }
}

/// Reads a connection the client has half-closed (or is about to): whether
/// the server's end of stream has come. A reset counts as one: the client
/// has closed its side, and how the server closes its own is its business,
/// as in the closing check. A byte is one beyond the last reply, and fails
/// the run.
fn half_closed_read(conn: &mut Conn, buf: &mut [u8]) -> Result<bool, Mismatch> {
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                return Err(conn.checker.failure(
                    "nothing after the last reply".to_owned(),
                    format!("{n} more bytes, starting {:?}", String::from_utf8_lossy(&buf[..n.min(16)])),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(true),
        }
    }
}

/// Whether an event may carry data: mio's readable, or an end of stream or
/// error, which a read reports.
fn readable(event: &Event) -> bool {
    event.is_readable() || event.is_read_closed() || event.is_error()
}

enum ReadFailure {
    Io(io::Error),
    Mismatch(Mismatch),
    Histogram(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_histogram_holds_the_longest_latency_a_run_can_see() {
        let config = LoadConfig {
            // A soak's default length: more than the old fixed 60 s bound.
            duration: Duration::from_secs(600),
            warmup: Duration::from_secs(2),
            ..LoadConfig::new("127.0.0.1:1".parse().unwrap(), echo_core::Mode::Got, 1, 64)
        };
        let checks = Checks { grace: Duration::from_secs(2), ..Checks::default() };
        let mut result = ThreadResult::new(latency_histogram(&config, &checks).unwrap());
        let longest = config.warmup + config.duration + checks.grace;
        result.record(longest).unwrap();
        assert_eq!(result.latency_ns.max(), result.latency_ns.highest_equivalent(longest.as_nanos() as u64));
        assert!(
            result.record(Duration::from_secs(100_000)).is_err(),
            "out of range is an error, never clipped"
        );
    }
}
