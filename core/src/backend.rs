//! The [`Backend`] trait every I/O engine implements, the [`ServerConfig`] it
//! serves with, and the [`Server`] handle it returns.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{self, Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::{DEFAULT_MAX_LINE, DEFAULT_READ_SIZE, Mode};
use crate::stats::{Stats, StatsSnapshot};
use crate::tasks::WakerSet;

/// An I/O engine that serves the echo protocol.
///
/// The trait is synchronous at the edge so that every backend, async or not,
/// fits behind it: `spawn` starts the backend's own threads (and runtime, if
/// it has one) and returns at once.
pub trait Backend: Send + Sync {
    /// The stable name used on the command line: `select`, `mio`, ...
    fn name(&self) -> &'static str;

    /// Serves an already-bound listener on background threads.
    fn spawn(&self, listener: TcpListener, config: &ServerConfig) -> io::Result<Server>;
}

/// What every backend serves with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How replies are formed.
    pub mode: Mode,
    /// Largest piece answered at once in `got` mode (the seed's `recv(1000)`).
    pub read_size: usize,
    /// Longest line answered whole in `line` mode.
    pub max_line: usize,
    /// Threads (event loops, runtime workers) the backend may use.
    pub threads: usize,
    /// Connections served at once; past it new ones are closed and counted.
    pub max_connections: usize,
    /// Close connections that sent nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Stop reading a connection whose buffered output exceeds this.
    pub high_watermark: usize,
    /// Resume reading once buffered output falls to this.
    pub low_watermark: usize,
    /// Bytes held for replies across all connections (every thread) past
    /// which connections with replies pending stop reading: see
    /// [`crate::budget`]. At least `high_watermark` makes sense; the
    /// command line refuses less.
    pub max_buffered: usize,
}

/// Descriptors kept back from the connection limit for the listener, the
/// backend's own pollers and pipes, logs and the like.
pub const DESCRIPTOR_RESERVE: u64 = 64;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            mode: Mode::Got,
            read_size: DEFAULT_READ_SIZE,
            max_line: DEFAULT_MAX_LINE,
            threads: 1,
            max_connections: default_max_connections(),
            idle_timeout: None,
            high_watermark: 64 * 1024,
            low_watermark: 32 * 1024,
            max_buffered: crate::budget::DEFAULT_MAX_BUFFERED,
        }
    }
}

/// The connection limit that fits the process's descriptor limit: each
/// connection costs one descriptor, less a reserve for everything else.
pub fn default_max_connections() -> usize {
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    soft.saturating_sub(DESCRIPTOR_RESERVE).max(1) as usize
}

/// Raises the soft descriptor limit to the hard one, as servers do at start,
/// and returns the new soft limit.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The shared "stop now" flag of one server, with its drain deadline.
///
/// Set once by [`Server::shutdown`]; backends check it after every wake-up.
/// Async backends can also await [`ShutdownSignal::triggered`], which
/// [`ShutdownSignal::trigger`] wakes by itself.
#[derive(Debug, Default)]
pub struct ShutdownSignal {
    deadline: OnceLock<Instant>,
    /// Tasks parked in [`Triggered`], woken by `trigger`.
    waiting: Mutex<WakerSet>,
}

impl ShutdownSignal {
    /// Asks the server to stop accepting and to drain until `now + drain`.
    /// Later calls keep the first deadline. Wakes every task awaiting
    /// [`ShutdownSignal::triggered`]; threads blocked elsewhere still need
    /// the backend's [`WakeFn`].
    pub fn trigger(&self, drain: Duration) {
        let now = Instant::now();
        // A drain too long to add to the clock (the CLI refuses one) waits
        // as long as the clock allows instead of panicking.
        let deadline =
            now.checked_add(drain).or_else(|| now.checked_add(Duration::from_secs(u32::MAX.into())));
        let _ = self.deadline.set(deadline.unwrap_or(now));
        // The flag is set before the wakers are taken: a `Triggered` that
        // registers after this sees the flag on its re-check instead.
        let wakers = crate::tasks::lock(&self.waiting).take();
        wakers.into_iter().for_each(task::Waker::wake);
    }

    /// The drain deadline, once shutdown has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.deadline.get().is_some()
    }

    /// Time left until the drain deadline: zero once it has passed, and
    /// zero if asked before shutdown began.
    pub fn time_left(&self) -> Duration {
        self.deadline().map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the drain deadline has passed: close everything now.
    pub fn is_expired(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Resolves once [`ShutdownSignal::trigger`] has been called (at once if
    /// it already was). It needs no runtime, so it runs on any executor.
    ///
    /// Cancel-safe: dropping it only unregisters its waker, so it can sit in
    /// a branch of `or` / `select!` that is rebuilt on every loop.
    pub fn triggered(&self) -> Triggered<'_> {
        Triggered { signal: self, key: None, registered: None }
    }
}

/// The future of [`ShutdownSignal::triggered`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Triggered<'a> {
    signal: &'a ShutdownSignal,
    /// Where this future's waker sits in the signal's set, once registered.
    key: Option<u64>,
    /// A copy of the waker registered under `key`. A connection task polls
    /// this future on every turn of its loop; while the task's waker is
    /// still the one registered, nothing needs to change in the set, so the
    /// poll skips its lock (a lock and a hash lookup per round trip, a
    /// third of what core's loop added to a bare server's user time).
    registered: Option<task::Waker>,
}

impl Future for Triggered<'_> {
    type Output = ();

    /// Inlined up to the registration: a connection task polls this about
    /// once per round trip, and while its waker is already registered the
    /// poll is two checks, cheaper than the call it would otherwise be.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.signal.is_triggered() {
            return Poll::Ready(());
        }
        // Our waker is in the set and only `trigger` takes it out, after
        // setting the flag just checked: the trigger that comes after that
        // check still finds it and wakes this same task.
        if this.key.is_some() && this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        this.register(cx)
    }
}

impl Triggered<'_> {
    /// Puts the task's waker in the signal's set (replacing the one
    /// registered before, if any), then checks the flag once more.
    fn register(&mut self, cx: &Context<'_>) -> Poll<()> {
        let mut waiting = crate::tasks::lock(&self.signal.waiting);
        waiting.register(&mut self.key, cx);
        self.registered = Some(cx.waker().clone());
        // Checked again after registering: `trigger` sets the flag and then
        // takes the wakers under this lock, so either it took ours or the
        // flag is visible now. Without this a trigger between the first
        // check and the registration would be lost.
        if self.signal.is_triggered() {
            waiting.remove(self.key.take());
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Triggered<'_> {
    fn drop(&mut self) {
        if self.key.is_some() {
            crate::tasks::lock(&self.signal.waiting).remove(self.key.take());
        }
    }
}

/// A function that wakes a backend's threads, wherever they are blocked, so
/// they notice a triggered [`ShutdownSignal`]. (Not a `std::task::Waker`:
/// it wakes threads, not tasks.)
pub type WakeFn = Box<dyn Fn() + Send + Sync>;

/// The [`WakeFn`] of a backend whose threads wait only in futures:
/// [`ShutdownSignal::trigger`] itself wakes every task awaiting
/// [`ShutdownSignal::triggered`], and the threads running those tasks wake
/// with them, so nothing else is blocked.
pub fn nothing_to_wake() -> WakeFn {
    Box::new(|| {})
}

/// A running server. Dropping it shuts it down with no drain time.
pub struct Server {
    local_addr: SocketAddr,
    stats: Arc<Stats>,
    signal: Arc<ShutdownSignal>,
    wake: WakeFn,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Wraps a backend's threads. `wake` must make every thread look at
    /// `signal` soon, whatever it is blocked on.
    pub fn new(
        local_addr: SocketAddr,
        stats: Arc<Stats>,
        signal: Arc<ShutdownSignal>,
        wake: WakeFn,
        threads: Vec<JoinHandle<()>>,
    ) -> Self {
        Server { local_addr, stats, signal, wake, threads }
    }

    /// Starts one thread per worker, named `{name}-{i}`, and wraps them as
    /// [`Server::new`] does. If a thread cannot be started, the ones already
    /// running are stopped (through `signal` and `wake`) and joined, and the
    /// error is returned: a backend never leaves threads behind.
    pub fn start_threads<F>(
        local_addr: SocketAddr,
        stats: Arc<Stats>,
        signal: Arc<ShutdownSignal>,
        wake: WakeFn,
        name: &str,
        workers: impl IntoIterator<Item = F>,
    ) -> io::Result<Self>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut threads = Vec::new();
        for (i, worker) in workers.into_iter().enumerate() {
            match std::thread::Builder::new().name(format!("{name}-{i}")).spawn(worker) {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // Workers not yet started were dropped with the iterator.
                    signal.trigger(Duration::ZERO);
                    wake();
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(err);
                }
            }
        }
        Ok(Server::new(local_addr, stats, signal, wake, threads))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops accepting at once, lets connections flush what they have already
    /// read until `drain` has passed, closes the rest, and returns once every
    /// thread of the backend has exited. Returns the counters then: the
    /// server's final statistics, the drained connections' bytes and closes
    /// included.
    pub fn shutdown(mut self, drain: Duration) -> StatsSnapshot {
        self.stop(drain);
        self.stats.snapshot()
    }

    fn stop(&mut self, drain: Duration) {
        self.signal.trigger(drain);
        (self.wake)();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a server thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats.snapshot())
            .field("threads", &self.threads.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::ShutdownSignal;
    use crate::tasks::test_executor::{block_on, poll_once};

    #[test]
    fn triggered_is_ready_once_triggered() {
        let signal = ShutdownSignal::default();
        signal.trigger(Duration::from_secs(1));
        block_on(signal.triggered());
        assert!(signal.deadline().is_some());
    }

    #[test]
    fn triggered_waits_for_trigger() {
        let signal = ShutdownSignal::default();
        let mut triggered = signal.triggered();
        assert!(poll_once(&mut triggered).is_pending());
        assert!(poll_once(&mut triggered).is_pending());
        // Repeated polls replace the waker instead of piling up.
        assert_eq!(crate::tasks::lock(&signal.waiting).take().len(), 1);
        signal.trigger(Duration::ZERO);
        assert!(poll_once(&mut triggered).is_ready());
    }

    #[test]
    fn dropping_a_pending_triggered_unregisters_it() {
        let signal = ShutdownSignal::default();
        let mut triggered = signal.triggered();
        assert!(poll_once(&mut triggered).is_pending());
        drop(triggered);
        assert!(crate::tasks::lock(&signal.waiting).take().is_empty());
    }

    #[test]
    fn trigger_from_another_thread_wakes_every_waiter() {
        let signal = Arc::new(ShutdownSignal::default());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let signal = Arc::clone(&signal);
                std::thread::spawn(move || block_on(signal.triggered()))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        signal.trigger(Duration::ZERO);
        for waiter in waiters {
            waiter.join().unwrap();
        }
    }
}
