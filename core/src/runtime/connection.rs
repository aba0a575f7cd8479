//! The task that serves one connection on a [`Runtime`]: it moves bytes
//! between the socket and a [`Connection`], which decides everything else.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Runtime;
use crate::buffer::with_read_buffer;
use crate::connection::{READ_BUFFER, READS_BEFORE_WRITE};
use crate::protocol::PREFIX;
use crate::{CloseReason, Connection, Linger, LingerStep, ShutdownSignal, TaskToken, Triggered};

/// Steps (a read and a write, or either) a connection may take in a row
/// without waiting before it yields to the runtime. A client that keeps the
/// socket busy both ways never makes the task wait; without this it would
/// starve every other task on its thread, the accept loop included.
/// Runtimes' own budgets do not cover it: one runtime's cooperative budget
/// is not spent by every socket call, and some executors have none.
const TURN_BUDGET: u32 = 32;

/// Serves `conn` on `stream` until the peer is done, the connection fails or
/// idles out, or the server shuts down; then closes the socket.
///
/// `_token` is held only so the server knows when this task has ended.
///
/// One loop serves the connection from start to end, the drain included:
/// the task's future is this function's state and [`Pump`]'s, with no
/// future nested in it while serving, so a poll dispatches on one state
/// and loads no references a nested future kept. (Nested, as a `pump`
/// function awaited here and raced against the drain's deadline, the loop
/// took about 80 more instructions a round trip, and each connection's
/// task 1,632 bytes on tokio rather than 976.)
pub(super) async fn serve<R: Runtime>(
    stream: R::Stream,
    conn: Connection,
    idle: Option<Duration>,
    shutdown: Arc<ShutdownSignal>,
    _token: TaskToken,
) {
    let mut pump = Pump::<R>::new(stream, conn, idle, &shutdown);
    // The idle timer while serving; the drain's deadline once it began.
    let mut timer = pin!(pump.idle_at.map(R::sleep_until));
    let deadline = loop {
        match poll_fn(|cx| pump.poll_turn(timer.as_mut(), cx)).await {
            Event::Finished => return,
            Event::Spent => R::yield_now().await,
            Event::Failed(err) => pump.conn.abort(CloseReason::Error(err.kind())),
            Event::Idle => pump.conn.abort(CloseReason::Idle),
            Event::Stop => {
                // Answer what was already read, but only until the drain
                // deadline. Leaving the turn when shutdown won was safe:
                // bytes move only inside a `Ready` poll, and their outcome
                // is in `conn` before the next await.
                let deadline = shutdown.deadline().unwrap_or_else(Instant::now);
                pump.drain(deadline);
                timer.set(Some(R::sleep_until(deadline)));
            }
            Event::Deadline => {
                pump.conn.abort(CloseReason::Shutdown);
                return;
            }
            Event::Rearm(at) => timer.set(Some(R::sleep_until(at))),
            Event::Drained(deadline) => break deadline,
        }
    };
    if pump.conn.lingers() {
        linger::<R>(&mut pump.stream, deadline).await;
    }
    // Every reply is written (or given up): dropping the stream closes it,
    // with a FIN after end of input. The kernel sends a reset instead if
    // input is still unread, as after an idle close or an error; a drain
    // lingers first so that it does not.
    // Dropping `conn` counts and logs the close.
}

/// After a drain wrote every reply: shuts down the write side, then reads
/// and drops input until the peer has acknowledged everything, closes, or
/// fails, or the deadline passes. See [`Linger`] for why.
async fn linger<R: Runtime>(stream: &mut R::Stream, deadline: Instant) {
    let Some(mut linger) = Linger::begin(&*stream, deadline) else { return };
    let LingerStep::CheckAt(first) = linger.poll(&*stream, Instant::now()) else { return };
    let mut timer = pin!(R::sleep_until(first));
    poll_fn(|cx| {
        let mut budget = TURN_BUDGET;
        loop {
            // A peer that keeps sending must not hold the thread.
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Read through the runtime, so that input (or the FIN) wakes us.
            let read = with_read_buffer(READ_BUFFER, |buf| R::poll_read(stream, cx, buf));
            match read {
                Poll::Ready(Ok(0)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {}
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match linger.poll(&*stream, Instant::now()) {
                LingerStep::Close => return Poll::Ready(()),
                LingerStep::CheckAt(at) => timer.set(R::sleep_until(at)),
            }
        }
    })
    .await;
}

/// Why a turn of steps ([`Pump::poll_turn`]) ended.
enum Event {
    /// The connection is finished.
    Finished,
    /// A drain wrote every reply before its deadline, which it hands back.
    Drained(Instant),
    /// [`TURN_BUDGET`] steps in a row moved bytes: time to yield.
    Spent,
    /// The socket failed: this connection closes.
    Failed(io::Error),
    /// Nothing was read or written for the idle timeout.
    Idle,
    /// The server began to shut down.
    Stop,
    /// The drain's deadline passed with replies still unwritten.
    Deadline,
    /// The idle timer fired before the connection's idle deadline, which
    /// steps have moved since: set it again for this instant.
    Rearm(Instant),
}

/// A connection's socket, its [`Connection`] and the loop's own state, in
/// one place: everything a round trip reads or writes.
///
/// `repr(C)` keeps the fields in the order written: what every round trip
/// uses first, next to the part of [`Connection`] it uses (which comes
/// first in it), and what only an idle timeout or a spent budget needs
/// last. With a few hundred connections their states no longer all stay
/// in the core's caches between two round trips of one connection, so
/// each cache line a round trip touches is likely a miss: in this order
/// the fields used span four cache lines, laid out by rustc's own rules six.
#[repr(C)]
struct Pump<'s, R: Runtime> {
    stream: R::Stream,
    /// Steps left before yielding; a wait starts a new run.
    budget: u32,
    /// Set after a short read: see [`Pump::poll_step`].
    await_input: bool,
    /// The server's shutdown signal; `None` once the drain began, which no
    /// second trigger interrupts.
    shutdown: Option<&'s ShutdownSignal>,
    idle: Option<Duration>,
    /// The drain's deadline, once it began.
    deadline: Option<Instant>,
    /// The signal's waker registration, made only when the task is about
    /// to wait: its flag alone is checked before every step.
    stop: Triggered<'s>,
    conn: Connection,
    /// When the connection idles out, moved by every step that moves
    /// bytes; the timer is re-armed only when it fires before this.
    idle_at: Option<Instant>,
    /// This task's place among the budget's waiters: see `poll_turn`.
    budget_key: Option<u64>,
}

impl<'s, R: Runtime> Pump<'s, R> {
    fn new(
        stream: R::Stream,
        conn: Connection,
        idle: Option<Duration>,
        shutdown: &'s ShutdownSignal,
    ) -> Self {
        Pump {
            stream,
            conn,
            shutdown: Some(shutdown),
            stop: shutdown.triggered(),
            idle,
            // An idle timeout too long to add to the clock never fires.
            idle_at: idle.and_then(|idle| Instant::now().checked_add(idle)),
            deadline: None,
            budget: TURN_BUDGET,
            await_input: false,
            budget_key: None,
        }
    }

    /// Shutdown began: from now on the connection only writes what it
    /// already owes, until `deadline`; no idle timer, no second stop.
    fn drain(&mut self, deadline: Instant) {
        self.conn.drain();
        self.shutdown = None;
        (self.idle, self.idle_at, self.deadline) = (None, None, Some(deadline));
    }

    /// Reads and writes until the connection is finished, or, while
    /// serving, nothing was read or written for the idle timeout or
    /// shutdown began, or, in a drain, its deadline (`timer`) passed.
    ///
    /// One poll runs steps until the socket would block, so a round trip
    /// (a read, its reply's write, the read that finds nothing) is one call.
    /// Shutdown is checked in two parts: its flag, one load, before every
    /// step; its waker, a registration, only when the poll is about to
    /// wait. Each step that moves bytes moves the idle deadline, which
    /// costs a clock read; the timer itself is re-armed only when it fires
    /// before the deadline, so there is one timer per idle period rather
    /// than one per step.
    fn poll_turn<S: Future<Output = ()>>(
        &mut self,
        mut timer: Pin<&mut Option<S>>,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        'turn: loop {
            loop {
                if self.conn.is_finished() {
                    return Poll::Ready(match self.deadline {
                        Some(deadline) => Event::Drained(deadline),
                        None => Event::Finished,
                    });
                }
                if self.shutdown.is_some_and(ShutdownSignal::is_triggered) {
                    return Poll::Ready(Event::Stop);
                }
                let mut reads = 0;
                match self.poll_step(&mut reads, cx) {
                    Poll::Ready(Ok(progress)) => {
                        // Input read or replies written: either way the
                        // peer is there, so a client that reads slowly what
                        // it asked for is not idle (like nginx's
                        // `send_timeout`).
                        if let (true, Some(idle)) = (progress, self.idle) {
                            self.idle_at = Instant::now().checked_add(idle);
                        }
                        // Each read counts, so reading on before a write
                        // does not lengthen a turn.
                        self.budget = self.budget.saturating_sub(reads.max(1));
                        if self.budget == 0 {
                            self.budget = TURN_BUDGET;
                            // A drain that keeps the socket busy must still
                            // end at its deadline.
                            if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                                return Poll::Ready(Event::Deadline);
                            }
                            return Poll::Ready(Event::Spent);
                        }
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Event::Failed(err)),
                    Poll::Pending => break,
                }
            }
            self.budget = TURN_BUDGET;
            // Stopped reading because other connections spent the server's
            // budget: their writes free it with no event on this socket, so
            // the budget itself wakes the task. Room that came back in the
            // meantime means another turn now.
            if self.conn.waits_for_budget() && self.conn.poll_budget(&mut self.budget_key, cx).is_ready() {
                continue 'turn;
            }
            // About to wait: a trigger must wake the task as well.
            if self.shutdown.is_some() && Pin::new(&mut self.stop).poll(cx).is_ready() {
                return Poll::Ready(Event::Stop);
            }
            if self.deadline.is_some() {
                // Draining: the timer holds the deadline.
                let fired = timer.as_mut().as_pin_mut().is_none_or(|sleep| sleep.poll(cx).is_ready());
                return if fired { Poll::Ready(Event::Deadline) } else { Poll::Pending };
            }
            // Only looked at when the socket has nothing to do: while bytes
            // move, input keeps coming or the peer is reading its replies.
            let Some(at) = self.idle_at else { return Poll::Pending };
            let Some(sleep) = timer.as_mut().as_pin_mut() else { return Poll::Pending };
            if sleep.poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now < at {
                // Fired for a deadline that steps have moved since.
                return Poll::Ready(Event::Rearm(at));
            }
            // Replies the peer made room for, without telling us.
            return match self.conn.write_if_idle(&self.stream) {
                Ok(false) => Poll::Ready(Event::Idle),
                Err(err) => Poll::Ready(Event::Failed(err)),
                Ok(true) => {
                    self.idle_at = self.idle.and_then(|idle| now.checked_add(idle));
                    match self.idle_at {
                        Some(next) => Poll::Ready(Event::Rearm(next)),
                        None => Poll::Pending,
                    }
                }
            };
        }
    }

    /// Reads (on, while reads come back full: see [`READS_BEFORE_WRITE`]),
    /// then writes, as far as the connection wants and the socket allows
    /// now. Returns `Ready` with whether bytes moved either way (not merely
    /// an interrupted call) once anything moved, so the caller looks at the
    /// connection again; `Pending` once every wanted direction would block,
    /// with the task's waker registered for each. `reads` counts the reads
    /// the step made, for the turn's budget.
    ///
    /// Waiting for either direction, not one then the other, is what keeps
    /// a client that writes a lot before it reads from deadlocking against
    /// us; reading only while [`Connection::wants_read`] is what bounds the
    /// output. Writing straight after the reads sends the replies just made
    /// at once.
    ///
    /// A read shorter than asked for found the kernel's buffer empty, so
    /// the next read would most likely only say `WouldBlock`: a system call
    /// per message for nothing. `await_input` then makes the next step wait
    /// for readability first ([`Runtime::poll_readable`]), which reports
    /// input that came in the meantime at once.
    fn poll_step(&mut self, reads: &mut u32, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let (stream, conn) = (&mut self.stream, &mut self.conn);
        let mut moved = false;
        let mut progress = false;
        if self.await_input && conn.wants_read() {
            match R::poll_readable(stream, cx) {
                Poll::Ready(Ok(())) => self.await_input = false,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        // A read that filled its buffer most likely left more behind (a
        // client with many messages in flight): read on, up to
        // READS_BEFORE_WRITE reads, so that one write answers them all
        // instead of one write each.
        while *reads < READS_BEFORE_WRITE && !self.await_input && conn.wants_read() {
            *reads += 1;
            let limit = conn.read_limit();
            let direct = conn.answers_directly();
            let read = with_read_buffer(PREFIX.len() + limit, |buf| {
                R::poll_read(stream, cx, &mut buf[PREFIX.len()..]).map_ok(|n| {
                    // The usual round trip: one short read, one reply, no
                    // reply pending. Written straight from this buffer,
                    // after the prefix put in front of the bytes read; a
                    // write that blocks, fails or falls short leaves the
                    // rest queued in `conn`, for the write below to retry
                    // (and report the error). A full read most likely left
                    // more behind: queued, so that one write answers it and
                    // the reads after it.
                    if direct && n > 0 && n < limit {
                        buf[..PREFIX.len()].copy_from_slice(PREFIX);
                        let reply = &buf[..PREFIX.len() + n];
                        let written = match R::poll_write(stream, cx, reply) {
                            Poll::Ready(Ok(written)) => written,
                            _ => 0,
                        };
                        conn.answered(reply, written);
                    } else {
                        conn.received(&buf[PREFIX.len()..PREFIX.len() + n]);
                    }
                    n
                })
            });
            match read {
                Poll::Ready(Ok(n)) => {
                    (moved, progress) = (true, true);
                    self.await_input = n > 0 && n < limit;
                    if n < limit {
                        break;
                    }
                }
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => moved = true,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => break,
            }
        }
        if conn.wants_write() {
            match R::poll_write(stream, cx, conn.pending()) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    conn.wrote(n);
                    (moved, progress) = (true, true);
                }
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => moved = true,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if moved { Poll::Ready(Ok(progress)) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fs::File;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use super::*;
    use crate::tasks::test_executor::poll_once;
    use crate::{ServerConfig, Stats, TaskTracker};

    thread_local! {
        static READS: Cell<u32> = const { Cell::new(0) };
        static YIELDS: Cell<u32> = const { Cell::new(0) };
        static WRITES: Cell<u32> = const { Cell::new(0) };
    }

    /// A socket that always has input and always takes output: a client
    /// streaming both ways at full speed. The descriptor is only there for
    /// `AsFd`; nothing reads it.
    struct Busy(OwnedFd);

    impl AsFd for Busy {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    /// A connection task on runtime `R` with the default configuration,
    /// counted in `stats` and `tracker`, stopped by `shutdown`.
    fn start<R: Runtime<Stream = Busy>>(
        stats: &Arc<Stats>,
        shutdown: &Arc<ShutdownSignal>,
        tracker: &TaskTracker,
    ) -> Pin<Box<impl Future<Output = ()>>> {
        let peer = "127.0.0.1:4000".parse().unwrap();
        let conn = Connection::admit(peer, &ServerConfig::default(), stats).unwrap();
        let stream = Busy(File::open("/dev/null").unwrap().into());
        Box::pin(serve::<R>(stream, conn, None, Arc::clone(shutdown), tracker.token()))
    }

    /// A runtime whose socket is always ready and whose timers never fire.
    struct AlwaysReady;

    impl Runtime for AlwaysReady {
        type Listener = ();
        type Stream = Busy;

        fn accept(_: &()) -> impl Future<Output = io::Result<(Busy, SocketAddr)>> + Send {
            std::future::pending()
        }

        fn poll_read(_: &mut Busy, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            // Busy for a while, so that a loop that never yields fails the
            // test below instead of hanging it. No waker: nothing wakes it.
            if READS.get() == 1000 {
                return Poll::Pending;
            }
            READS.set(READS.get() + 1);
            // Short, as most reads are: the loop then asks poll_readable.
            let n = buf.len().min(10);
            buf[..n].fill(b'a');
            Poll::Ready(Ok(n))
        }

        fn poll_write(_: &mut Busy, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_readable(_: &mut Busy, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn sleep_until(_: Instant) -> impl Future<Output = ()> + Send {
            std::future::pending()
        }

        fn yield_now() -> impl Future<Output = ()> + Send {
            YIELDS.set(YIELDS.get() + 1);
            let mut yielded = false;
            poll_fn(move |cx| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            })
        }

        fn spawn(&self, _: impl Future<Output = ()> + Send + 'static) {}
    }

    #[test]
    fn a_busy_socket_yields_after_each_turn_and_shutdown_still_wins() {
        let (stats, shutdown, tracker) = (Arc::default(), Arc::default(), TaskTracker::default());
        let mut task = start::<AlwaysReady>(&stats, &shutdown, &tracker);

        // Each poll runs one turn of steps, then gives the thread back.
        assert!(poll_once(&mut task).is_pending());
        assert_eq!((READS.get(), YIELDS.get()), (TURN_BUDGET, 1));
        assert!(poll_once(&mut task).is_pending());
        assert_eq!((READS.get(), YIELDS.get()), (2 * TURN_BUDGET, 2));

        shutdown.trigger(Duration::from_secs(1));
        assert!(poll_once(&mut task).is_ready(), "every reply was written: the drain ends at once");
        assert_eq!(READS.get(), 2 * TURN_BUDGET, "nothing more is read once shutdown began");
        drop(task);
        assert_eq!(tracker.live(), 0);
        // 64 reads of 10 bytes, each answered with `GOT:` and those bytes.
        let s = stats.snapshot();
        assert_eq!((s.closed, s.bytes_in, s.bytes_out), (1, 640, 896));
    }

    /// A socket holding eight reads' worth of pipelined messages, each read
    /// filling the buffer it is given, then nothing; it takes any write.
    struct Pipelined;

    impl Runtime for Pipelined {
        type Listener = ();
        type Stream = Busy;

        fn accept(_: &()) -> impl Future<Output = io::Result<(Busy, SocketAddr)>> + Send {
            std::future::pending()
        }

        fn poll_read(_: &mut Busy, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            if READS.get() == 8 {
                return Poll::Pending;
            }
            READS.set(READS.get() + 1);
            buf.fill(b'p');
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write(_: &mut Busy, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            WRITES.set(WRITES.get() + 1);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_readable(_: &mut Busy, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }

        fn sleep_until(_: Instant) -> impl Future<Output = ()> + Send {
            std::future::pending()
        }

        fn yield_now() -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }

        fn spawn(&self, _: impl Future<Output = ()> + Send + 'static) {}
    }

    #[test]
    fn full_reads_are_answered_by_one_write() {
        let read_size = ServerConfig::default().read_size as u64;
        let (stats, shutdown, tracker) = (Arc::default(), Arc::default(), TaskTracker::default());
        let mut task = start::<Pipelined>(&stats, &shutdown, &tracker);

        assert!(poll_once(&mut task).is_pending());
        assert_eq!(READS.get(), 8);
        assert_eq!(WRITES.get(), 1, "eight full reads, one write answering them all");
        let s = stats.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out), (8 * read_size, 8 * (4 + read_size)));
    }

    thread_local! {
        /// The most bytes a write of [`OneMessage`] takes: 0 blocks.
        static TAKES: Cell<usize> = const { Cell::new(0) };
        /// What writes of [`OneMessage`] took, in order.
        static WIRE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A socket that delivers one message, `ping`, then nothing, and takes
    /// at most [`TAKES`] bytes a write. Its timers fire at once.
    struct OneMessage;

    impl Runtime for OneMessage {
        type Listener = ();
        type Stream = Busy;

        fn accept(_: &()) -> impl Future<Output = io::Result<(Busy, SocketAddr)>> + Send {
            std::future::pending()
        }

        fn poll_read(_: &mut Busy, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            if READS.get() == 1 {
                return Poll::Pending;
            }
            READS.set(1);
            buf[..4].copy_from_slice(b"ping");
            Poll::Ready(Ok(4))
        }

        fn poll_write(_: &mut Busy, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(TAKES.get());
            if n == 0 {
                return Poll::Pending;
            }
            WIRE.with_borrow_mut(|wire| wire.extend_from_slice(&buf[..n]));
            Poll::Ready(Ok(n))
        }

        fn poll_readable(_: &mut Busy, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }

        fn sleep_until(_: Instant) -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }

        fn yield_now() -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }

        fn spawn(&self, _: impl Future<Output = ()> + Send + 'static) {}
    }

    #[test]
    fn a_drain_ends_at_its_deadline_when_the_peer_takes_nothing() {
        let (stats, shutdown, tracker) = (Arc::default(), Arc::default(), TaskTracker::default());
        let mut task = start::<OneMessage>(&stats, &shutdown, &tracker);

        assert!(poll_once(&mut task).is_pending(), "a reply is owed and the socket takes nothing");
        shutdown.trigger(Duration::from_secs(60));
        // The drain's timer (here firing at once) ends it, replies unsent;
        // the server's own deadline is not needed to stop this task.
        assert!(poll_once(&mut task).is_ready(), "the drain ends at its deadline");
        assert_eq!(tracker.live(), 0);
        let s = stats.snapshot();
        assert_eq!((s.closed, s.bytes_in, s.bytes_out), (1, 4, 0));
    }

    #[test]
    fn a_reply_written_in_part_from_the_read_buffer_is_finished_from_the_queue() {
        let (stats, shutdown, tracker) = (Arc::default(), Arc::default(), TaskTracker::default());
        TAKES.set(3);
        let mut task = start::<OneMessage>(&stats, &shutdown, &tracker);
        assert!(poll_once(&mut task).is_pending());
        assert_eq!(WIRE.with_borrow(|wire| wire.clone()), b"GOT:ping", "the whole reply, once, in order");
        let s = stats.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out), (4, 8));
    }
}
