//! The task that serves one connection on a [`Runtime`]: it moves bytes
//! between the socket and a [`Connection`], which decides everything else.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Runtime, race};
use crate::buffer::with_read_buffer;
use crate::connection::{READ_BUFFER, READS_BEFORE_WRITE};
use crate::{CloseReason, Connection, Linger, LingerStep, ShutdownSignal, TaskToken};

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
pub(super) async fn serve<R: Runtime>(
    mut stream: R::Stream,
    mut conn: Connection,
    idle: Option<Duration>,
    shutdown: Arc<ShutdownSignal>,
    _token: TaskToken,
) {
    // Shutdown is polled first on every turn, so it wins even while the
    // socket is busy. Leaving `pump` when it does is safe: bytes move only
    // inside a `Ready` poll, and their outcome is in `conn` before the next
    // await.
    let stopping = pump::<R>(&mut stream, &mut conn, idle, Some(&shutdown)).await;
    if stopping && !conn.is_finished() {
        // Answer what was already read, but only until the drain deadline.
        conn.drain();
        let deadline = shutdown.deadline().unwrap_or_else(Instant::now);
        let flushed = race(
            async {
                pump::<R>(&mut stream, &mut conn, None, None).await;
                true
            },
            async {
                R::sleep_until(deadline).await;
                false
            },
        )
        .await;
        if !flushed {
            conn.abort(CloseReason::Shutdown);
        }
        if conn.lingers() {
            linger::<R>(&mut stream, deadline).await;
        }
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

/// Why [`pump`]'s turn of steps ended.
enum Event {
    /// The connection is finished.
    Finished,
    /// [`TURN_BUDGET`] steps in a row moved bytes: time to yield.
    Spent,
    /// The socket failed: this connection closes.
    Failed(io::Error),
    /// Nothing was read or written for the idle timeout.
    Idle,
    /// The server began to shut down.
    Stop,
}

/// Reads and writes until `conn` is finished, or, with `idle` set, until
/// nothing was read or written for that long, or, with `shutdown` set, until it is
/// triggered; returns whether shutdown ended it.
///
/// One poll runs steps until the socket would block, so a round trip (a
/// read, its reply's write, the read that finds nothing) is one poll of
/// one closure. Shutdown is checked in it in two parts: its flag, one load,
/// before every step; its waker, a registration, only when the poll is
/// about to wait. The task polls about once per round trip, and each layer
/// of futures or waker bookkeeping on that path costs the whole server.
async fn pump<R: Runtime>(
    stream: &mut R::Stream,
    conn: &mut Connection,
    idle: Option<Duration>,
    shutdown: Option<&ShutdownSignal>,
) -> bool {
    let mut stop = pin!(shutdown.map(ShutdownSignal::triggered));
    // Each step that moves bytes moves the idle deadline, which costs a
    // clock read; the timer itself is re-armed only when it fires before the
    // deadline, so there is one timer per idle period rather than one per
    // step. An idle timeout too long to add to the clock never fires.
    let mut idle_at = idle.and_then(|idle| Instant::now().checked_add(idle));
    let mut timer = pin!(idle_at.map(R::sleep_until));
    // Steps left before yielding; a wait starts a new run.
    let mut budget = TURN_BUDGET;
    // Set after a short read: see `poll_step`.
    let mut await_input = false;
    // This task's place among the budget's waiters: see below.
    let mut budget_key = None;
    loop {
        let event = poll_fn(|cx| {
            'turn: loop {
                loop {
                    if conn.is_finished() {
                        return Poll::Ready(Event::Finished);
                    }
                    if shutdown.is_some_and(ShutdownSignal::is_triggered) {
                        return Poll::Ready(Event::Stop);
                    }
                    let mut reads = 0;
                    match poll_step::<R>(stream, conn, &mut await_input, &mut reads, cx) {
                        Poll::Ready(Ok(progress)) => {
                            // Input read or replies written: either way the
                            // peer is there, so a client that reads slowly what
                            // it asked for is not idle (like nginx's
                            // `send_timeout`).
                            if let (true, Some(idle)) = (progress, idle) {
                                idle_at = Instant::now().checked_add(idle);
                            }
                            // Each read counts, so reading on before a
                            // write does not lengthen a turn.
                            budget = budget.saturating_sub(reads.max(1));
                            if budget == 0 {
                                budget = TURN_BUDGET;
                                return Poll::Ready(Event::Spent);
                            }
                        }
                        Poll::Ready(Err(err)) => return Poll::Ready(Event::Failed(err)),
                        Poll::Pending => break,
                    }
                }
                budget = TURN_BUDGET;
                // Stopped reading because other connections spent the server's
                // budget: their writes free it with no event on this socket, so
                // the budget itself wakes the task. Room that came back in the
                // meantime means another turn now.
                if conn.waits_for_budget() && conn.poll_budget(&mut budget_key, cx).is_ready() {
                    continue 'turn;
                }
                // About to wait: a trigger must wake the task as well.
                if stop.as_mut().as_pin_mut().is_some_and(|stop| stop.poll(cx).is_ready()) {
                    return Poll::Ready(Event::Stop);
                }
                // Only looked at when the socket has nothing to do: while bytes
                // move, input keeps coming or the peer is reading its replies.
                while let Some(sleep) = timer.as_mut().as_pin_mut() {
                    if sleep.poll(cx).is_pending() {
                        break;
                    }
                    let Some(mut at) = idle_at else { break };
                    let now = Instant::now();
                    if now >= at {
                        // Replies the peer made room for, without telling us.
                        match conn.write_if_idle(&*stream) {
                            Ok(false) => return Poll::Ready(Event::Idle),
                            Err(err) => return Poll::Ready(Event::Failed(err)),
                            Ok(true) => {
                                let Some(next) = idle.and_then(|idle| now.checked_add(idle)) else { break };
                                (idle_at, at) = (Some(next), next);
                            }
                        }
                    }
                    timer.set(Some(R::sleep_until(at)));
                }
                return Poll::Pending;
            }
        })
        .await;
        match event {
            Event::Finished => return false,
            Event::Spent => R::yield_now().await,
            Event::Failed(err) => conn.abort(CloseReason::Error(err.kind())),
            Event::Idle => conn.abort(CloseReason::Idle),
            Event::Stop => return true,
        }
    }
}

/// Reads (on, while reads come back full: see [`READS_BEFORE_WRITE`]), then
/// writes, as far as the connection wants and the socket allows now.
/// Returns `Ready` with whether bytes moved either way (not merely an
/// interrupted call) once anything moved, so the caller looks at the
/// connection again; `Pending` once every wanted direction would block,
/// with the task's waker registered for each. `reads` counts the reads the
/// step made, for the turn's budget.
///
/// Waiting for either direction, not one then the other, is what keeps a
/// client that writes a lot before it reads from deadlocking against us;
/// reading only while [`Connection::wants_read`] is what bounds the output.
/// Writing straight after the reads sends the replies just made at once.
///
/// A read shorter than asked for found the kernel's buffer empty, so the
/// next read would most likely only say `WouldBlock`: a system call per
/// message for nothing. `await_input` then makes the next step wait for
/// readability first ([`Runtime::poll_readable`]), which reports input
/// that came in the meantime at once.
fn poll_step<R: Runtime>(
    stream: &mut R::Stream,
    conn: &mut Connection,
    await_input: &mut bool,
    reads: &mut u32,
    cx: &mut Context<'_>,
) -> Poll<io::Result<bool>> {
    let mut moved = false;
    let mut progress = false;
    if conn.wants_read() && *await_input {
        match R::poll_readable(stream, cx) {
            Poll::Ready(Ok(())) => *await_input = false,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {}
        }
    }
    // A read that filled its buffer most likely left more behind (a client
    // with many messages in flight): read on, up to READS_BEFORE_WRITE
    // reads, so that one write answers them all instead of one write each.
    while *reads < READS_BEFORE_WRITE && conn.wants_read() && !*await_input {
        *reads += 1;
        let limit = conn.read_limit();
        let read = with_read_buffer(limit, |buf| {
            R::poll_read(stream, cx, buf).map_ok(|n| {
                conn.received(&buf[..n]);
                n
            })
        });
        match read {
            Poll::Ready(Ok(n)) => {
                (moved, progress) = (true, true);
                *await_input = n > 0 && n < limit;
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
        let stats = Arc::new(Stats::default());
        let peer = "127.0.0.1:4000".parse().unwrap();
        let conn = Connection::admit(peer, &ServerConfig::default(), &stats).unwrap();
        let shutdown = Arc::new(ShutdownSignal::default());
        let tracker = TaskTracker::default();
        let stream = Busy(File::open("/dev/null").unwrap().into());
        let mut task =
            Box::pin(serve::<AlwaysReady>(stream, conn, None, Arc::clone(&shutdown), tracker.token()));

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
        let stats = Arc::new(Stats::default());
        let peer = "127.0.0.1:4000".parse().unwrap();
        let conn = Connection::admit(peer, &ServerConfig::default(), &stats).unwrap();
        let read_size = ServerConfig::default().read_size as u64;
        let shutdown = Arc::new(ShutdownSignal::default());
        let tracker = TaskTracker::default();
        let stream = Busy(File::open("/dev/null").unwrap().into());
        let mut task =
            Box::pin(serve::<Pipelined>(stream, conn, None, Arc::clone(&shutdown), tracker.token()));

        assert!(poll_once(&mut task).is_pending());
        assert_eq!(READS.get(), 8);
        assert_eq!(WRITES.get(), 1, "eight full reads, one write answering them all");
        let s = stats.snapshot();
        assert_eq!((s.bytes_in, s.bytes_out), (8 * read_size, 8 * (4 + read_size)));
    }
}
