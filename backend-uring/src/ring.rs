//! The only module with `unsafe` code: one io_uring, the submissions pushed
//! into it, and every byte of memory the kernel may read or write while an
//! operation is in flight.
//!
//! Pushing a submission is `unsafe` in the `io-uring` crate because the
//! kernel keeps raw pointers (a receive buffer, a `sockaddr` to fill, a
//! timespec) until the operation's completion is reaped. The rule kept here
//! is that such memory is owned by this module and is never handed back to
//! the rest of the crate while the kernel may still use it:
//!
//! - the ring's own buffers (the accept address, the wake-up counter, the
//!   timer timespecs) live in boxes owned by [`Ring`], one per kind of
//!   operation, with a flag saying whether that operation is in flight;
//! - a connection's buffers live in an [`IoBuffers`], which gives access to
//!   them only once the matching [`Completion`] is presented, and which leaks
//!   them rather than free them if it is dropped with an operation still in
//!   flight;
//! - the provided buffers of multishot receives (full design) live in the
//!   ring's [`BufRing`], under a strict rule of ownership: the kernel's while
//!   published; lent to us by the completion that names one, only for as
//!   long as [`Ring::with_received`] hands its bytes to the connection,
//!   which copies them into its `Connection` (replies are built in the
//!   `Connection`'s own output, never pointing into the buffer) or into its
//!   stash; then published again at once, before the pass goes on. A
//!   completion nobody takes gives its buffer back unread
//!   ([`Ring::recycle`]), so no buffer outlives the pass that reaped it, on
//!   close, reset and shutdown alike;
//! - [`Ring`] leaks its own buffers the same way if it is dropped before
//!   every completion was reaped.
//!
//! The event loop waits for every completion before it drops either, so the
//! leaks are a last line of defence, not a path taken.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

use crate::token::{Op, Timer, Token};

/// The most reply bytes copied into a connection's send buffer at once:
/// memory on top of the connection's watermarked output (and, in the full
/// design, of its stash), so kept to half the default high watermark.
const SEND_CHUNK: usize = 32 * 1024;

/// A send buffer larger than this is freed once all of it was sent, so a
/// connection that once sent a lot does not keep the copy while idle.
const SEND_KEEP: usize = 4 * 1024;

/// One reaped completion. It cannot be copied or made outside this module,
/// so presenting one is proof that the kernel is done with its operation.
#[derive(Debug)]
pub(crate) struct Completion {
    token: Token,
    result: i32,
    /// For an accept: the peer's address, read from the ring's buffer when
    /// the completion was reaped, before the next accept can overwrite it.
    /// A multishot accept has no such buffer and leaves it `None`.
    peer: Option<SocketAddr>,
    /// A multishot operation stays armed after this completion
    /// (`IORING_CQE_F_MORE`); without it, it has ended and must be posted
    /// again to go on.
    more: bool,
    /// The provided buffer a receive filled, lent to this completion until
    /// [`Ring::with_received`] or [`Ring::recycle`] gives it back.
    buf: Option<u16>,
}

impl Completion {
    /// Whose completion this is.
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// The result: a count (or descriptor), or the error the kernel gave.
    pub(crate) fn result(&self) -> io::Result<usize> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as usize)
        }
    }

    /// Whether the operation stays armed (multishot) after this completion.
    pub(crate) fn more(&self) -> bool {
        self.more
    }

    /// The accepted socket and its peer, taken once: the completion is
    /// consumed so the descriptor cannot be owned twice.
    pub(crate) fn into_accepted(self) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
        if self.token.op() != Some(Op::Accept) {
            return Err(io::Error::other("not an accept completion"));
        }
        let fd = self.result()? as i32;
        // SAFETY: a successful accept's result is a new descriptor that
        // nothing else owns; `self` is consumed, so this happens once.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok((fd, self.peer))
    }
}

/// Where the byte cap of a multishot receive (`optlen`, the same four bytes
/// as `file_index`) sits in a submission entry: fixed by the kernel's ABI,
/// `struct io_uring_sqe`. The `io-uring` crate has no setter for it.
const SQE_OPTLEN: usize = 44;

/// `entry`, a multishot receive, with a cap of `cap` bytes over its life:
/// the kernel ends it (a completion without `IORING_CQE_F_MORE`) once it
/// delivered that many.
fn with_receive_cap(entry: squeue::Entry, cap: u32) -> squeue::Entry {
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's 64-byte
    // `io_uring_sqe`, plain integers and unions of them: every byte
    // pattern is a valid value, and the sizes are checked at compile time.
    let mut bytes: [u8; 64] = unsafe { mem::transmute(entry) };
    bytes[SQE_OPTLEN..SQE_OPTLEN + 4].copy_from_slice(&cap.to_ne_bytes());
    // SAFETY: as above.
    unsafe { mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}

/// Where the kernel writes the address of an accepted peer.
struct AcceptAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// One io_uring and the ring-wide buffers its operations use.
pub(crate) struct Ring {
    uring: IoUring,
    /// Made with `IORING_SETUP_R_DISABLED`, not yet enabled by its thread.
    disabled: bool,
    /// Submissions pushed whose last completion has not been reaped. A
    /// single-shot operation has one completion; a multishot one, many, the
    /// last without `IORING_CQE_F_MORE`.
    in_flight: usize,
    /// The provided buffers multishot receives fill: present in the full
    /// design (multishot operations, see [`Ring::full`]) only.
    provided: Option<BufRing>,
    /// The kernel ends a multishot receive once it delivered the bytes it
    /// was armed for (see [`Ring::push_recv`]); found by [`Ring::enable`].
    caps_receives: bool,
    accept_addr: Box<AcceptAddr>,
    accept_busy: bool,
    /// The eventfd counter read by the wake-up operation.
    wake_buf: Box<[u8; 8]>,
    wake_busy: bool,
    /// One timespec per [`Timer`], in a box each so the address is stable.
    timespecs: [Box<types::Timespec>; Timer::COUNT],
    timer_busy: [bool; Timer::COUNT],
    /// Submissions that did not fit in the submission queue yet.
    backlog: VecDeque<squeue::Entry>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

/// The opcodes this backend uses; a kernel without any of them is refused
/// at `spawn`, not discovered mid-run.
const NEEDED: [(u8, &str); 7] = [
    (opcode::Accept::CODE, "accept"),
    (opcode::Recv::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::Read::CODE, "read"),
    (opcode::Close::CODE, "close"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::AsyncCancel::CODE, "async-cancel"),
];

/// The first of the [`NEEDED`] opcodes `uring`'s kernel lacks, if any.
fn missing_op(uring: &IoUring) -> io::Result<Option<&'static str>> {
    let mut probe = Probe::new();
    uring.submitter().register_probe(&mut probe)?;
    Ok(NEEDED.iter().find(|(code, _)| !probe.is_supported(*code)).map(|(_, name)| *name))
}

impl Ring {
    /// The plain ring any io_uring kernel offers, with room for `entries`
    /// queued submissions, or a clear error where the kernel has no (usable)
    /// io_uring.
    pub(crate) fn basic(entries: u32) -> io::Result<Ring> {
        let uring = IoUring::new(entries).map_err(|err| match err.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring is not available on this kernel ({err}): use another backend"),
            ),
            _ => io::Error::new(err.kind(), format!("cannot create an io_uring: {err}")),
        })?;
        let unsupported = |what: String| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring on this kernel lacks {what}: use another backend"),
            )
        };
        if let Some(name) = missing_op(&uring).map_err(|e| unsupported(format!("probing ({e})")))? {
            return Err(unsupported(format!("the {name} operation")));
        }
        Ok(Ring::with(uring, false))
    }

    /// The ring of the full design, or what this kernel lacks for it.
    ///
    /// `IORING_SETUP_SINGLE_ISSUER` lets the kernel skip the locking a ring
    /// shared between threads needs; `IORING_SETUP_DEFER_TASKRUN` runs the
    /// completion work of this ring's operations only when the loop asks
    /// for completions (inside its `io_uring_enter` with `GETEVENTS`, which
    /// [`Ring::submit_and_wait`] always passes), in one batch, instead of
    /// interrupting the thread whenever a socket becomes ready. Both need
    /// every submission to come from one thread: the ring is made here
    /// disabled (`IORING_SETUP_R_DISABLED`) and [`Ring::enable`]d by the
    /// thread that then owns it, which the kernel takes as its one issuer.
    ///
    /// It also registers a ring of provided buffers of `buf_len` bytes each,
    /// shared by every connection of the ring (see [`BufRing`]).
    pub(crate) fn full(entries: u32, buf_len: usize) -> Result<Ring, String> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(entries)
            .map_err(|e| {
                format!("IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (Linux 6.1): {e}")
            })?;
        match missing_op(&uring) {
            Ok(None) => {}
            Ok(Some(name)) => return Err(format!("the {name} operation")),
            Err(e) => return Err(format!("probing ({e})")),
        }
        let provided = BufRing::register(&uring, buf_len)
            .map_err(|e| format!("a provided buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): {e}"))?;
        let mut ring = Ring::with(uring, true);
        ring.provided = Some(provided);
        Ok(ring)
    }

    fn with(uring: IoUring, disabled: bool) -> Ring {
        Ring {
            uring,
            disabled,
            in_flight: 0,
            provided: None,
            caps_receives: false,
            accept_addr: Box::new(AcceptAddr {
                // SAFETY: `sockaddr_storage` is plain old data; all zeroes
                // is a valid (unspecified-family) value.
                storage: unsafe { mem::zeroed() },
                len: 0,
            }),
            accept_busy: false,
            wake_buf: Box::new([0; 8]),
            wake_busy: false,
            timespecs: [(); Timer::COUNT].map(|()| Box::new(types::Timespec::new())),
            timer_busy: [false; Timer::COUNT],
            backlog: VecDeque::new(),
        }
    }

    /// Makes the calling thread the ring's one issuer (full design); the
    /// first thing its loop does, before anything else is in flight.
    /// Nothing for a basic ring.
    pub(crate) fn enable(&mut self) -> io::Result<()> {
        if self.disabled {
            self.uring.submitter().register_enable_rings()?;
            self.disabled = false;
            self.caps_receives = self.probe_receive_cap()?;
        }
        Ok(())
    }

    /// Whether this kernel takes a byte cap for a multishot receive
    /// (`optlen`): a receive on no socket, with a cap, fails with `EBADF`
    /// where the cap is understood and `EINVAL` (refused before the socket
    /// is looked at) where it is not. Kernels without it still serve, with
    /// a connection's stash bounded by the ring's pool instead.
    fn probe_receive_cap(&mut self) -> io::Result<bool> {
        let entry = with_receive_cap(opcode::RecvMulti::new(types::Fd(-1), BUF_GROUP).build(), 1)
            .user_data(Token::ring(Op::Cancel).user_data());
        // SAFETY: a receive on no descriptor fails before it takes a buffer
        // or touches memory of ours.
        unsafe { self.push(entry) };
        let mut done = Vec::new();
        while done.is_empty() {
            self.submit_and_wait()?;
            self.reap(&mut done);
        }
        for completion in &mut done {
            self.recycle(completion);
        }
        Ok(done.iter().any(|c| c.result == -libc::EBADF))
    }

    /// Whether multishot receives end by themselves at their `limit`.
    pub(crate) fn caps_receives(&self) -> bool {
        self.caps_receives
    }

    /// Stops capping multishot receives, as on a kernel without the cap:
    /// for the test that shows what the cap prevents.
    #[cfg(test)]
    pub(crate) fn stop_capping_receives(&mut self) {
        self.caps_receives = false;
    }

    /// Operations submitted (or queued) whose completion is not reaped yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether an accept is in flight.
    pub(crate) fn accept_busy(&self) -> bool {
        self.accept_busy
    }

    /// Whether the wake-up read is in flight.
    pub(crate) fn wake_busy(&self) -> bool {
        self.wake_busy
    }

    /// Whether `timer` is in flight.
    pub(crate) fn timer_busy(&self, timer: Timer) -> bool {
        self.timer_busy[timer as usize]
    }

    /// Queues `entry`. The caller has made sure that everything it points
    /// to outlives the operation.
    ///
    /// A full submission queue is handed to the kernel to make room: the
    /// only time a pass over completions costs a second system call. If the
    /// kernel takes nothing (its completion queue is full), the entry waits
    /// in `backlog` for the next [`Ring::submit_and_wait`], after the pass
    /// has reaped; it is counted in flight from now, as its buffers are lent.
    ///
    /// # Safety
    ///
    /// Every buffer `entry` points to must stay valid, and not be accessed
    /// by this process, until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        self.in_flight += 1;
        // SAFETY: passed on from this function's contract.
        if self.backlog.is_empty() && unsafe { self.uring.submission().push(&entry) }.is_ok() {
            return;
        }
        self.backlog.push_back(entry);
        self.flush_backlog();
    }

    /// Moves the backlog into the submission queue, submitting to make room.
    fn flush_backlog(&mut self) {
        while let Some(entry) = self.backlog.front() {
            // SAFETY: every entry in the backlog was pushed through `push`,
            // whose contract keeps its buffers valid until its completion.
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                self.backlog.pop_front();
                continue;
            }
            match self.uring.submit() {
                Ok(n) if n > 0 => {}
                // Nothing taken (EBUSY/EAGAIN: the completion queue is
                // full): try again after the caller's next reap.
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// Accepts on `listener`. Does nothing if an accept is already armed.
    ///
    /// A full ring posts one multishot accept, which completes once per
    /// connection and stays armed until it fails or is cancelled (a
    /// completion without [`Completion::more`]); it writes no peer address,
    /// so the caller asks the socket. A basic ring accepts one connection,
    /// writing the peer's address into the ring's buffer.
    ///
    /// The caller keeps `listener` open until the last completion; closing
    /// it early is not a memory error (the kernel holds its own reference
    /// once submitted) but would make the accept act on whatever took its
    /// number.
    pub(crate) fn push_accept(&mut self, listener: BorrowedFd<'_>) {
        if self.accept_busy {
            return;
        }
        let user_data = Token::ring(Op::Accept).user_data();
        if self.provided.is_some() {
            let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data);
            // SAFETY: a multishot accept points to no memory of ours.
            unsafe { self.push(entry) };
            self.accept_busy = true;
            return;
        }
        let addr = &mut *self.accept_addr;
        addr.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let entry = opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            (&raw mut addr.storage).cast::<libc::sockaddr>(),
            &raw mut addr.len,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(user_data);
        // SAFETY: `accept_addr` is a box owned by the ring: its address is
        // stable, and it is neither read nor written while `accept_busy`
        // (cleared only when the completion is reaped). If the ring is
        // dropped first, `Drop` leaks the box.
        unsafe { self.push(entry) };
        self.accept_busy = true;
    }

    /// Reads the shutdown eventfd `fd`: completes when `wake` writes it.
    pub(crate) fn push_wake(&mut self, fd: BorrowedFd<'_>) {
        if self.wake_busy {
            return;
        }
        let entry = opcode::Read::new(types::Fd(fd.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(Token::ring(Op::Wake).user_data());
        // SAFETY: `wake_buf` is a box owned by the ring, never read, and not
        // reused until the completion clears `wake_busy`; `Drop` leaks it
        // if the ring goes first.
        unsafe { self.push(entry) };
        self.wake_busy = true;
    }

    /// Completes after `after`, with `-ETIME`. Does nothing if `timer` is
    /// already in flight.
    pub(crate) fn push_timer(&mut self, timer: Timer, after: Duration) {
        let i = timer as usize;
        if self.timer_busy[i] {
            return;
        }
        *self.timespecs[i] = types::Timespec::from(after);
        let entry =
            opcode::Timeout::new(&*self.timespecs[i]).build().user_data(Token::timer(timer).user_data());
        // SAFETY: the timespec is in a box owned by the ring, one per timer,
        // rewritten only when that timer is not in flight (the kernel copies
        // it at submission anyway); `Drop` leaks it if the ring goes first.
        unsafe { self.push(entry) };
        self.timer_busy[i] = true;
    }

    /// Asks the kernel to cancel the operation `target`. Its completion then
    /// comes with `-ECANCELED` (or normally, if it was already done).
    pub(crate) fn push_cancel(&mut self, target: Token) {
        let entry = opcode::AsyncCancel::new(target.user_data())
            .build()
            .user_data(Token::ring(Op::Cancel).user_data());
        // SAFETY: a cancel points to no memory; it names its target by
        // user data.
        unsafe { self.push(entry) };
    }

    /// Closes `fd` in the kernel, batched with the other submissions.
    pub(crate) fn push_close(&mut self, fd: OwnedFd) {
        let entry = opcode::Close::new(types::Fd(fd.into_raw_fd()))
            .build()
            .user_data(Token::ring(Op::Close).user_data());
        // SAFETY: a close points to no memory; the descriptor was owned and
        // is given up (`into_raw_fd`), so nothing else uses or closes it.
        unsafe { self.push(entry) };
    }

    /// Arms a receive on `fd` for `bufs`' connection. Does nothing if one is
    /// already in flight.
    ///
    /// A full ring posts a multishot receive from the provided buffers: one
    /// completion per buffer filled, until end of input, an error, no free
    /// buffer (`ENOBUFS`), a cancel, or (where the kernel
    /// [caps receives](Ring::caps_receives)) `limit` bytes delivered ends
    /// it; the kernel may fill one buffer past `limit` before it stops. The
    /// caller hands what arrives to the connection in `limit` slices, and
    /// arms the receive again, with the limit of the moment, once it ended.
    /// A basic ring receives at most `limit` bytes once, into the
    /// connection's buffer.
    pub(crate) fn push_recv(&mut self, fd: BorrowedFd<'_>, bufs: &mut IoBuffers, limit: usize) {
        if bufs.recv_busy {
            return;
        }
        if self.provided.is_some() {
            let mut entry = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), BUF_GROUP).build();
            // A cap of 0 is none: a limit too large to say is no limit.
            let cap = u32::try_from(limit).unwrap_or(0);
            if self.caps_receives && cap > 0 {
                entry = with_receive_cap(entry, cap);
            }
            let entry = entry.user_data(bufs.token(Op::Recv).user_data());
            // SAFETY: the kernel writes only into provided buffers, which
            // the ring owns for its whole life (see `BufRing`) and hands out
            // only once a completion names them.
            unsafe { self.push(entry) };
            bufs.recv_busy = true;
            return;
        }
        let len = u32::try_from(bufs.recv.len().min(limit)).unwrap_or(u32::MAX);
        let entry = opcode::Recv::new(types::Fd(fd.as_raw_fd()), bufs.recv.as_mut_ptr(), len)
            .build()
            .user_data(bufs.token(Op::Recv).user_data());
        // SAFETY: the read buffer is a heap allocation owned by `bufs`; it
        // does not move when `bufs` does, is not handed out while
        // `recv_busy`, and is leaked, not freed, if `bufs` is dropped first.
        unsafe { self.push(entry) };
        bufs.recv_busy = true;
    }

    /// Whether receives use the ring's provided buffers (multishot) rather
    /// than a buffer per connection.
    pub(crate) fn provides_buffers(&self) -> bool {
        self.provided.is_some()
    }

    /// Hands the bytes that `done` carries in a provided buffer to `f`, then
    /// gives the buffer back to the kernel at once: the ownership rule of
    /// [`BufRing`]. `None` if `done` carries no buffer.
    pub(crate) fn with_received<R>(
        &mut self,
        done: &mut Completion,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        let bid = done.buf.take()?;
        let provided = self.provided.as_mut()?;
        let len = usize::try_from(done.result).unwrap_or(0).min(provided.buf_len);
        // SAFETY: buffer `bid` was taken by the kernel from the ring and
        // handed to us by this completion; the kernel does not touch it again
        // until `give_back` below republishes it, and `len` is within it.
        let data = unsafe { std::slice::from_raw_parts(provided.buffer(bid), len) };
        let out = f(data);
        provided.give_back(bid);
        Some(out)
    }

    /// Gives back the provided buffer `done` carries, unread, if any: for a
    /// completion nobody wants (a connection gone or failed).
    pub(crate) fn recycle(&mut self, done: &mut Completion) {
        self.with_received(done, |_| ());
    }

    /// Sends what is left of `bufs`' send buffer, with `MSG_NOSIGNAL` so a
    /// peer that has gone away gives `EPIPE`, not a process-killing SIGPIPE.
    /// Does nothing if a send is in flight or nothing is left to send.
    pub(crate) fn push_send(&mut self, fd: BorrowedFd<'_>, bufs: &mut IoBuffers) {
        if bufs.send_busy || bufs.unsent().is_empty() {
            return;
        }
        let unsent = &bufs.send[bufs.sent..];
        let len = u32::try_from(unsent.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(fd.as_raw_fd()), unsent.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(bufs.token(Op::Send).user_data());
        // SAFETY: the send buffer is a heap allocation owned by `bufs`; it
        // is not changed (so not reallocated) while `send_busy`, and is
        // leaked, not freed, if `bufs` is dropped first.
        unsafe { self.push(entry) };
        bufs.send_busy = true;
    }

    /// Submits everything queued and waits for at least one completion:
    /// the one system call of a pass. `EINTR` (a signal arrived) is not an
    /// error: the caller reaps whatever there is and comes back.
    pub(crate) fn submit_and_wait(&mut self) -> io::Result<()> {
        self.flush_backlog();
        match self.uring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(err) => match err.raw_os_error() {
                // EBUSY/EAGAIN: the completion queue is full; reaping makes
                // room and the queued submissions go with the next call.
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(err),
            },
        }
    }

    /// Moves every completion now in the queue into `out`, marking the
    /// ring's own buffers free again.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.uring.completion() {
            let more = cqueue::more(cqe.flags());
            if !more {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            let token = Token::from_user_data(cqe.user_data());
            let mut peer = None;
            match token.op() {
                Some(Op::Accept) if more => {}
                Some(Op::Accept) => {
                    self.accept_busy = false;
                    if cqe.result() >= 0 && self.provided.is_none() {
                        peer = decode(&self.accept_addr);
                    }
                }
                Some(Op::Wake) => self.wake_busy = false,
                Some(Op::Timer) => {
                    if let Some(timer) = token.timer_kind() {
                        self.timer_busy[timer as usize] = false;
                    }
                }
                _ => {}
            }
            let buf = cqueue::buffer_select(cqe.flags());
            if buf.is_some() && self.provided.is_some() {
                LENT.fetch_add(1, Ordering::Relaxed);
                TAKEN.fetch_add(1, Ordering::Relaxed);
            }
            out.push(Completion { token, result: cqe.result(), peer, more, buf });
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // Closing the ring cancels what is left, but asynchronously: the
            // kernel may still write into these buffers after we return, so
            // they must not be freed.
            tracing::error!(in_flight = self.in_flight, "io_uring dropped with operations in flight");
            mem::forget(mem::replace(
                &mut self.accept_addr,
                Box::new(AcceptAddr {
                    // SAFETY: plain old data, as in `new`.
                    storage: unsafe { mem::zeroed() },
                    len: 0,
                }),
            ));
            mem::forget(mem::replace(&mut self.wake_buf, Box::new([0; 8])));
            // A `BufRing` dropped without `free` leaks its memory.
            self.provided = None;
            for timespec in &mut self.timespecs {
                mem::forget(mem::replace(timespec, Box::new(types::Timespec::new())));
            }
        } else if let Some(mut provided) = self.provided.take() {
            // Nothing in flight takes a buffer any more; once unregistered
            // the kernel forgets the memory too. If it will not let go, the
            // memory is leaked (dropping a `BufRing` without `free` does).
            if self.uring.submitter().unregister_buf_ring(BUF_GROUP).is_ok() {
                provided.free();
            }
        }
    }
}

/// The peer address the kernel wrote into `addr`, if it is IPv4 or IPv6.
fn decode(addr: &AcceptAddr) -> Option<SocketAddr> {
    let storage = &addr.storage;
    match i32::from(storage.ss_family) {
        libc::AF_INET if addr.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, the
            // kernel wrote at least that many bytes, and `sockaddr_storage`
            // is large and aligned enough for any socket address.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if addr.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The buffer group of a ring's provided buffers (one group per ring).
const BUF_GROUP: u16 = 0;

/// The bytes of provided buffers per ring. A pass gives back every buffer
/// it was handed, so this bounds what one `io_uring_enter` can receive, for
/// all connections of the ring together, before a receive ends with
/// `ENOBUFS` (and is re-armed). Where the kernel cannot cap a receive, it
/// also bounds what a connection can be handed in the pass in which it
/// pauses, and so its stash: see `Conn::stash`.
const POOL_BYTES: usize = 256 * 1024;

/// The largest provided buffer: in `line` and `raw` mode, where a basic ring
/// reads up to 64 KiB at once, a large transfer arrives in several
/// completions instead (16 KiB: with 2 KiB buffers a 1 MiB stream was 512
/// completions and copies, and cost 2.5× the basic design's CPU per MB in
/// paired turns, against 1.6× with 16 KiB); in `got`
/// mode buffers are `read_size` bytes (up to this), so one completion is at
/// most one read of the seed's protocol.
pub(crate) const BUF_MAX: usize = 16 * 1024;

/// Buffers lent to completions and not yet given back, across every ring
/// of the process: zero whenever no pass is running, which the tests check.
static LENT: AtomicUsize = AtomicUsize::new(0);

/// Buffers ever lent, across every ring: the tests check they were used.
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// Provided buffers ever lent to completions, across every ring.
#[cfg(test)]
pub(crate) fn buffers_taken() -> usize {
    TAKEN.load(Ordering::Relaxed)
}

/// Provided buffers lent to completions now, across every ring.
#[cfg(test)]
pub(crate) fn buffers_lent() -> usize {
    LENT.load(Ordering::Relaxed)
}

/// A ring of provided buffers (`IORING_REGISTER_PBUF_RING`) from which
/// every multishot receive of one io_uring takes its buffers.
///
/// # Ownership of a provided buffer
///
/// - While its id is between the kernel's head and our tail, the buffer is
///   the kernel's: any receive of the group may fill it; we never read it.
/// - A completion that names it (`IORING_CQE_F_BUFFER`) lends it to us: the
///   kernel has moved its head past it and will not touch it.
///   [`Ring::with_received`] hands its bytes to the connection, which copies
///   them into its `Connection` (`Connection::received` appends the reply
///   to its own output buffer; bytes that cannot be fed yet, while reading
///   is paused, are copied into the connection's stash), so no reply and no
///   pending input points into the buffer afterwards.
/// - Then, before the pass goes on, the buffer goes back to the kernel:
///   written at our tail, the tail published. A completion for a connection
///   that is gone or failed gives its buffer back unread
///   ([`Ring::recycle`]), so every buffer is back after each pass, on close,
///   reset and shutdown alike.
///
/// The memory itself (entries and buffers) lives as long as the io_uring: it
/// is freed when the [`Ring`] is dropped with nothing in flight, and leaked
/// otherwise, as the ring's other buffers are.
struct BufRing {
    /// `count` entries shared with the kernel, page-aligned; the tail is
    /// the reserved field of the first.
    entries: NonNull<types::BufRingEntry>,
    /// The buffers, `count * buf_len` bytes, from a `Box<[u8]>`.
    memory: NonNull<u8>,
    buf_len: usize,
    /// How many buffers: a power of two.
    count: u16,
    /// Our tail: the next entry we write.
    tail: u16,
}

// SAFETY: a `BufRing` is plain memory reached through its pointers, owned
// by one `Ring`, which moves to its thread once and is used there only.
unsafe impl Send for BufRing {}

impl BufRing {
    fn entries_layout(count: u16) -> Layout {
        let size = usize::from(count) * mem::size_of::<types::BufRingEntry>();
        // A constant size and a power-of-two alignment: this cannot fail.
        Layout::from_size_align(size, 4096).expect("a valid layout")
    }

    /// Allocates [`POOL_BYTES`] of buffers of `buf_len` bytes (a power of
    /// two of them, as the kernel wants, 16 to 1024), registers them with
    /// `uring` as group [`BUF_GROUP`] and publishes them all.
    fn register(uring: &IoUring, buf_len: usize) -> io::Result<BufRing> {
        let buf_len = buf_len.clamp(1, BUF_MAX);
        let count = (POOL_BYTES / buf_len).next_power_of_two().clamp(16, 1024);
        let count = u16::try_from(count).unwrap_or(1024);
        let layout = BufRing::entries_layout(count);
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        let entries = NonNull::new(entries).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // Zeroed, so the kernel's untouched pages cost nothing until used.
        let memory = Box::into_raw(vec![0u8; usize::from(count) * buf_len].into_boxed_slice());
        // SAFETY: `Box::into_raw` never returns null.
        let memory = unsafe { NonNull::new_unchecked(memory.cast::<u8>()) };
        let mut ring = BufRing { entries, memory, buf_len, count, tail: 0 };
        // SAFETY: the entries are page-aligned, `count` long and live
        // until the io_uring is gone (`Drop` frees them only after it, or
        // leaks them); the kernel reads only the entries we publish.
        let registered = unsafe {
            uring.submitter().register_buf_ring_with_flags(entries.as_ptr() as u64, count, BUF_GROUP, 0)
        };
        if let Err(err) = registered {
            ring.free();
            return Err(err);
        }
        for bid in 0..count {
            ring.publish(bid);
        }
        Ok(ring)
    }

    /// The start of buffer `bid`.
    fn buffer(&self, bid: u16) -> *mut u8 {
        let bid = usize::from(bid % self.count);
        // SAFETY: `bid < count`, so the offset is within `memory`.
        unsafe { self.memory.as_ptr().add(bid * self.buf_len) }
    }

    /// Writes buffer `bid` at our tail and moves the tail past it, which
    /// gives it to the kernel.
    fn publish(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`; the kernel reads only entries before
        // the published tail, and this one is past it until the store below.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(u32::try_from(self.buf_len).unwrap_or(u32::MAX));
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the reserved `u16` of the first entry, aligned
        // for an atomic; the kernel reads it with acquire ordering, so this
        // release store makes the entry written above visible first.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// A buffer lent to a completion comes back.
    fn give_back(&mut self, bid: u16) {
        LENT.fetch_sub(1, Ordering::Relaxed);
        self.publish(bid);
    }

    /// Frees the memory. Only once the kernel can no longer use it: the
    /// io_uring is closed or the group never registered.
    fn free(&mut self) {
        let len = usize::from(self.count) * self.buf_len;
        // SAFETY: `memory` came from `Box::into_raw` of a slice of `len`
        // bytes and `entries` from `alloc_zeroed` with this layout; `free`
        // is called once, on a `BufRing` dropped right after (it has no
        // `Drop` of its own).
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.memory.as_ptr(), len)));
            alloc::dealloc(self.entries.as_ptr().cast::<u8>(), BufRing::entries_layout(self.count));
        }
    }
}

/// A new eventfd for waking a ring. Blocking on purpose: io_uring may
/// complete a read of a descriptor opened `O_NONBLOCK` at once with `EAGAIN`
/// instead of waiting for it to become readable. (The sockets stay blocking
/// for the same reason; io_uring never blocks a thread on them anyway.)
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `eventfd` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One connection's buffers: the kernel receives into `recv` and sends from
/// `send` while the matching operation is in flight.
///
/// Replies are copied from the connection's [`echo_core::Connection`] into
/// `send` before a send is posted, rather than sent from
/// `Connection::pending` directly: `Connection::received` appends to that
/// buffer and may reallocate it, and a receive can complete (and must be
/// handed over) while a send is still in flight. The copy is one `memcpy`
/// per send, far cheaper than the system calls it rides along with.
#[derive(Debug)]
pub(crate) struct IoBuffers {
    key: u32,
    generation: u32,
    recv: Box<[u8]>,
    recv_busy: bool,
    /// Reply bytes lent to the kernel; those before `sent` were sent.
    send: Vec<u8>,
    sent: usize,
    send_busy: bool,
}

impl IoBuffers {
    /// Buffers for the connection in slab slot `key`, reading at most
    /// `read_limit` bytes at once into a buffer of its own, or into the
    /// ring's provided buffers if `provided` (then it has none).
    pub(crate) fn new(key: u32, generation: u32, read_limit: usize, provided: bool) -> IoBuffers {
        let recv_len = if provided { 0 } else { read_limit.max(1) };
        IoBuffers {
            key,
            generation,
            recv: vec![0; recv_len].into_boxed_slice(),
            recv_busy: false,
            send: Vec::new(),
            sent: 0,
            send_busy: false,
        }
    }

    /// The token of this connection's `op`.
    pub(crate) fn token(&self, op: Op) -> Token {
        Token::conn(self.key, self.generation, op)
    }

    /// Whether a receive is in flight.
    pub(crate) fn recv_busy(&self) -> bool {
        self.recv_busy
    }

    /// Whether a send is in flight.
    pub(crate) fn send_busy(&self) -> bool {
        self.send_busy
    }

    /// Reply bytes copied in but not yet sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.send[self.sent..]
    }

    /// Copies `replies` in for the next send. Does nothing while a send is in
    /// flight or earlier bytes are still unsent: those come first.
    pub(crate) fn load(&mut self, replies: &[u8]) {
        if self.send_busy || !self.unsent().is_empty() {
            return;
        }
        // At most one chunk at a time: the copy is memory the connection
        // holds on top of its watermarked output, so it is kept small.
        self.send.clear();
        self.send.extend_from_slice(&replies[..replies.len().min(SEND_CHUNK)]);
        self.sent = 0;
    }

    /// Forgets unsent bytes: the connection failed or was aborted.
    pub(crate) fn discard(&mut self) {
        if !self.send_busy {
            self.send.clear();
            self.sent = 0;
        }
    }

    /// Takes a completion of this connection's receive: false if it is not
    /// ours. The receive stays in flight while a multishot one is armed.
    pub(crate) fn recv_done(&mut self, done: &Completion) -> bool {
        if done.token != self.token(Op::Recv) || !self.recv_busy {
            return false;
        }
        if !done.more {
            self.recv_busy = false;
        }
        true
    }

    /// The first `n` bytes of the connection's own read buffer (basic
    /// design), once its receive completed with `n`.
    pub(crate) fn received(&self, n: usize) -> &[u8] {
        &self.recv[..n.min(self.recv.len())]
    }

    /// Takes the completion of this connection's send and returns how many
    /// bytes went out. `None` if it is not ours.
    pub(crate) fn send_done(&mut self, done: &Completion) -> Option<io::Result<usize>> {
        if done.token != self.token(Op::Send) || !self.send_busy {
            return None;
        }
        self.send_busy = false;
        Some(done.result().map(|n| {
            let n = n.min(self.send.len() - self.sent);
            self.sent += n;
            if self.sent == self.send.len() && self.send.capacity() > SEND_KEEP {
                // All sent: an idle connection keeps no large copy.
                self.send = Vec::new();
                self.sent = 0;
            }
            n
        }))
    }
}

impl Drop for IoBuffers {
    fn drop(&mut self) {
        // The kernel may still write into (or read from) a buffer whose
        // operation was never reaped; leaking it is the sound choice.
        if self.recv_busy {
            mem::forget(mem::take(&mut self.recv));
        }
        if self.send_busy {
            mem::forget(mem::take(&mut self.send));
        }
    }
}
