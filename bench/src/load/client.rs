//! One load-generator thread: a mio event loop over its share of the
//! connections. It does not share a runtime with any server it measures.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::pattern::{Checker, Mismatch, Pattern};
use super::schedule::{Schedule, TIMER, counted_from};
use super::{Errors, LoadConfig};
use crate::procfs::{self, CpuTime};

/// What every thread of one run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// When measuring starts (the warm-up ends).
    pub(crate) measure_from: Instant,
    /// When the run ends.
    pub(crate) end: Instant,
    /// Set on the first mismatch: every thread stops, the run is void.
    pub(crate) abort: AtomicBool,
    /// Round trips completed so far, warm-up included, for the progress bar.
    pub(crate) progress: AtomicU64,
    /// Connection errors so far, warm-up included, for status lines.
    pub(crate) errors: AtomicU64,
}

/// What one thread measured, between `measure_from` and `end`.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    pub(crate) latency_ns: Histogram<u64>,
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
    /// The connections, kept open until the server's CPU time has been
    /// read: one closed at the end would end a thread-per-connection
    /// server's thread, and its run time with it, before the reading.
    pub(crate) connections: Vec<TcpStream>,
    pub(crate) mismatch: Option<(usize, Mismatch)>,
}

/// One connection of the load generator.
struct Conn {
    stream: TcpStream,
    /// Global connection number, for reports.
    id: usize,
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
    /// or when it was due (open loop), oldest first.
    in_flight: VecDeque<Instant>,
    /// Open loop: messages already due that wait for a free slot in the
    /// pipeline. Their latency counts from when they were due.
    overdue: VecDeque<Instant>,
    /// Round trips completed inside the measured window.
    measured: u64,
    alive: bool,
    /// Messages kept in flight.
    pipeline: usize,
    /// Whether messages go out on a schedule (`--rate`) rather than as
    /// soon as a reply frees a slot.
    open_loop: bool,
}

impl Conn {
    /// Queues messages while the pipeline has room.
    fn fill(&mut self, now: Instant) {
        while self.in_flight.len() < self.pipeline {
            let start = if self.open_loop {
                match self.overdue.pop_front() {
                    Some(due) => counted_from(due, now),
                    None => break,
                }
            } else {
                now
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

    /// Writes what is queued, counting the bytes if `measuring`; a failed
    /// write ends the connection.
    fn send(&mut self, poll: &Poll, measuring: bool, shared: &Shared, result: &mut ThreadResult) {
        match self.flush() {
            Ok(n) if measuring => result.bytes_out += n as u64,
            Ok(_) => {}
            Err(e) => {
                record_error(result, shared, &e);
                self.close(poll);
            }
        }
    }

    /// Stops serving the connection: its events are no longer asked for.
    fn close(&mut self, poll: &Poll) {
        self.alive = false;
        let _ = poll.registry().deregister(&mut self.stream);
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
}

/// Runs one thread's connections until `shared.end`.
pub(crate) fn run(
    config: &LoadConfig,
    streams: Vec<(usize, std::net::TcpStream)>,
    thread_index: usize,
    shared: &Arc<Shared>,
) -> io::Result<ThreadResult> {
    if let Some(cpu) = config.client_cpu {
        procfs::pin_current_thread(cpu)?;
    }
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (slot, (id, stream)) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        // Both interests once: mio is edge-triggered, and a writable edge
        // only comes after a write that did not fit, so this costs nothing
        // while writes succeed at once.
        poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)?;
        let pattern = Pattern::new(id as u64, config.size, config.mode);
        conns.push(Conn {
            stream,
            id,
            pattern,
            checker: Checker::new(pattern, config.mode),
            out: Vec::new(),
            out_pos: 0,
            queued: 0,
            completed: 0,
            in_flight: VecDeque::new(),
            overdue: VecDeque::new(),
            measured: 0,
            alive: true,
            pipeline: config.pipeline.max(1),
            open_loop: config.rate.is_some(),
        });
    }

    let start = Instant::now();
    let mut schedule = Schedule::new(config, conns.len(), thread_index, start, &poll)?;

    let mut result = ThreadResult {
        latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(io::Error::other)?,
        per_connection: Vec::new(),
        bytes_out: 0,
        bytes_in: 0,
        errors: Errors::default(),
        cpu: CpuTime::default(),
        polls: 0,
        idle: Duration::ZERO,
        unanswered: 0,
        connections: Vec::new(),
        mismatch: None,
    };
    let mut measuring = false;
    let mut cpu_start = CpuTime::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    // Round trips not yet added to `shared.progress`: once per wake-up is
    // often enough for a progress bar, and cheaper than once per read.
    let mut progressed = 0;

    for conn in conns.iter_mut() {
        conn.fill(start);
        conn.send(&poll, measuring, shared, &mut result);
    }

    loop {
        let now = Instant::now();
        if now >= shared.end || shared.abort.load(Relaxed) {
            break;
        }
        if !measuring && now >= shared.measure_from {
            measuring = true;
            cpu_start = procfs::thread_cpu()?;
        }
        // Whether this pass sent on schedule before polling: work, not idle.
        let mut sent = false;
        if let Some(schedule) = schedule.as_mut() {
            // A connection whose pipeline is full keeps its message as
            // overdue, to send as soon as a reply frees a slot.
            for (index, due) in schedule.take_due(now, conns.len()) {
                sent = true;
                let conn = &mut conns[index];
                conn.overdue.push_back(due);
                if conn.alive {
                    conn.fill(now);
                    conn.send(&poll, measuring, shared, &mut result);
                }
            }
            schedule.arm()?;
        }

        let mut timeout = shared.end.saturating_duration_since(now);
        if !measuring {
            timeout = timeout.min(shared.measure_from.saturating_duration_since(now));
        }
        // Busy-polling: a pass whose poll finds nothing was idle from its
        // start, or, if it sent on schedule first, from after the sends.
        let mut idle_from = now;
        if config.spin {
            timeout = Duration::ZERO;
            if sent {
                idle_from = Instant::now();
            }
        }
        if progressed > 0 {
            shared.progress.fetch_add(progressed, Relaxed);
            progressed = 0;
        }
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // One clock read serves every reply of this wake-up, each of which
        // arrived before it, and stamps the messages sent in answer (up to
        // one batch's processing early); a read of the clock per reply
        // would cost the client as much as a percent of its CPU time per
        // round trip.
        let woke = Instant::now();
        if measuring {
            result.polls += 1;
            if config.spin && events.is_empty() {
                result.idle += woke - idle_from;
            }
        }
        for event in events.iter() {
            if event.token() == TIMER {
                // Nothing to read: arming the timer again (above) resets its
                // expiration count, and its next expiry is a new edge.
                continue;
            }
            let Some(conn) = conns.get_mut(event.token().0) else { continue };
            if !conn.alive {
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let failed = match read_replies(conn, &mut buf, woke, measuring, shared, &mut result) {
                    Ok(done) => {
                        progressed += done;
                        false
                    }
                    Err(ReadFailure::Io(e)) => {
                        record_error(&mut result, shared, &e);
                        true
                    }
                    Err(ReadFailure::Mismatch(m)) => {
                        result.mismatch = Some((conn.id, m));
                        shared.abort.store(true, Relaxed);
                        true
                    }
                };
                if failed {
                    conn.close(&poll);
                    continue;
                }
            }
            conn.send(&poll, measuring, shared, &mut result);
        }
    }

    if measuring {
        result.cpu = procfs::thread_cpu()?.since(cpu_start);
        // A thread that shares its CPU with another waits in its polls
        // while the other runs: that wall-clock time was never its CPU time.
        result.idle = result.idle.min(result.cpu.total());
        unanswered(&conns, shared, &mut result);
    }
    result.per_connection = conns.iter().map(|c| c.measured).collect();
    result.connections = conns.into_iter().map(|c| c.stream).collect();
    Ok(result)
}

/// Counts the messages still unanswered at the end of the window, and puts
/// those of live connections in the latency figures with their age then, a
/// lower bound of their latency: a server that stops answering near the end
/// shows in the percentiles instead of leaving them. (A dead connection's
/// messages are already counted among the errors.)
fn unanswered(conns: &[Conn], shared: &Shared, result: &mut ThreadResult) {
    for conn in conns {
        for &start in conn.in_flight.iter().chain(&conn.overdue) {
            result.unanswered += 1;
            if conn.alive {
                let ns = shared.end.saturating_duration_since(start).as_nanos() as u64;
                result.latency_ns.saturating_record(ns.max(1));
            }
        }
    }
}

/// Counts a connection error for the report and for live status lines.
fn record_error(result: &mut ThreadResult, shared: &Shared, err: &io::Error) {
    result.errors.record(err);
    shared.errors.fetch_add(1, Relaxed);
}

enum ReadFailure {
    Io(io::Error),
    Mismatch(Mismatch),
}

/// Reads and checks every reply byte available, completing round trips;
/// returns how many it completed.
fn read_replies(
    conn: &mut Conn,
    buf: &mut [u8],
    now: Instant,
    measuring: bool,
    shared: &Shared,
    result: &mut ThreadResult,
) -> Result<u64, ReadFailure> {
    let mut done = 0;
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Err(ReadFailure::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadFailure::Io(e)),
        };
        conn.checker.feed(&buf[..n]).map_err(ReadFailure::Mismatch)?;
        if measuring {
            result.bytes_in += n as u64;
        }
        let size = conn.pattern.size();
        let before = done;
        while conn.checker.verified() >= (conn.completed + 1) * size {
            conn.completed += 1;
            done += 1;
            let started = conn.in_flight.pop_front().unwrap_or(now);
            if measuring && now < shared.end {
                conn.measured += 1;
                let ns = now.saturating_duration_since(started).as_nanos() as u64;
                result.latency_ns.saturating_record(ns.max(1));
            }
        }
        if done > before {
            conn.fill(now);
        }
        // A short read means the socket is drained; another read would only
        // return WouldBlock, which costs a system call per message.
        if n < buf.len() {
            return Ok(done);
        }
    }
}
