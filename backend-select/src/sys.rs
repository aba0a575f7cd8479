//! The system calls the scheduler makes, and the only module with `unsafe`.
//!
//! Every libc call goes through [`syscall`], which turns `-1` into
//! `io::Error::last_os_error()` and retries `EINTR`. Every `unsafe` block says
//! in a `// SAFETY:` comment why the call is sound. Sockets are passed as
//! [`BorrowedFd`], so the descriptor is open for the whole call.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr;
use std::time::{Duration, Instant};

/// Flags for every `send`: a peer that closed its side must give this
/// connection `EPIPE`, not kill the whole process with `SIGPIPE`.
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
/// Apple systems have no `MSG_NOSIGNAL`; Rust programs start there, as
/// everywhere, with `SIGPIPE` ignored.
#[cfg(any(target_os = "macos", target_os = "ios"))]
const SEND_FLAGS: libc::c_int = 0;

/// Runs one libc call, again while a signal interrupts it.
///
/// `EINTR` only says a signal handler ran before the call could finish; the
/// call itself is still wanted, so it is retried here, in one place, rather
/// than surfacing as an error every caller must remember to ignore. The call
/// is a closure so that a retry rebuilds its arguments (select(2) leaves its
/// descriptor sets and timeout undefined after an error).
fn syscall<T: Copy + PartialEq + From<i8>>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let ret = call();
        if ret != T::from(-1) {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads at most `buf.len()` bytes; `Ok(0)` is end of input.
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: `sock` is an open descriptor for the whole call, and the
        // kernel writes at most `buf.len()` bytes into `buf`, which we borrow
        // mutably.
        unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) }
    })?;
    // Not negative: -1 became an error above.
    Ok(n.unsigned_abs())
}

/// Writes some of `buf` and returns how much, without raising `SIGPIPE`.
pub(crate) fn send(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: `sock` is an open descriptor for the whole call, and the
        // kernel reads at most `buf.len()` bytes from `buf`, which we borrow.
        unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), SEND_FLAGS) }
    })?;
    Ok(n.unsigned_abs())
}

/// What the scheduler watches one descriptor for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    /// The descriptor; for select(2) it must pass [`fits_select`].
    pub(crate) fd: RawFd,
    /// Report it once a read would not block.
    pub(crate) read: bool,
    /// Report it once a write would not block.
    pub(crate) write: bool,
}

/// Whether select(2) can watch `fd`: an `fd_set` is a bitmap of
/// `FD_SETSIZE` (1024) bits, and setting a bit past its end is undefined
/// behaviour in C (a panic in recent `libc`).
pub(crate) fn fits_select(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < libc::FD_SETSIZE)
}

/// The time left until `deadline`, or `None` (wait for ever) with no deadline.
fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// An empty `fd_set`.
fn empty_fd_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO writes every byte of the set it is given, and the
    // pointer is to our own properly aligned storage.
    unsafe { libc::FD_ZERO(set.as_mut_ptr()) };
    // SAFETY: FD_ZERO above initialised the whole struct.
    unsafe { set.assume_init() }
}

/// Waits with select(2) until one of `interests` is ready or `timeout` has
/// passed, and appends every ready descriptor to `ready`, once each.
///
/// A descriptor that does not [`fits_select`] is refused with
/// `InvalidInput` before anything is touched: it can never reach an `fd_set`.
pub(crate) fn select(
    interests: &[Interest],
    timeout: Option<Duration>,
    ready: &mut Vec<RawFd>,
) -> io::Result<()> {
    if let Some(bad) = interests.iter().find(|i| !fits_select(i.fd)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {} is beyond select's FD_SETSIZE", bad.fd),
        ));
    }
    let nfds = interests.iter().map(|i| i.fd + 1).max().unwrap_or(0);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut reads = empty_fd_set();
    let mut writes = empty_fd_set();
    syscall(|| {
        reads = empty_fd_set();
        writes = empty_fd_set();
        for i in interests {
            // SAFETY: every descriptor was checked against FD_SETSIZE above,
            // so its bit lies inside the set, which we own.
            unsafe {
                if i.read {
                    libc::FD_SET(i.fd, &mut reads);
                }
                if i.write {
                    libc::FD_SET(i.fd, &mut writes);
                }
            }
        }
        let mut tv = remaining(deadline).map(|left| {
            // Rounded up: a deadline less than a microsecond away would
            // otherwise be a zero timeout, and the loop would spin until it.
            let micros = left.as_nanos().div_ceil(1000);
            libc::timeval {
                tv_sec: libc::time_t::try_from(micros / 1_000_000).unwrap_or(libc::time_t::MAX),
                // Below one million, so it fits any suseconds_t.
                tv_usec: (micros % 1_000_000) as libc::suseconds_t,
            }
        });
        let tv_ptr = tv.as_mut().map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
        // SAFETY: the sets are valid, initialised and hold only descriptors
        // below `nfds` <= FD_SETSIZE; `tv_ptr` is null or points to a timeval
        // that lives until the call returns.
        unsafe { libc::select(nfds, &mut reads, &mut writes, ptr::null_mut(), tv_ptr) }
    })?;
    for i in interests {
        // SAFETY: the descriptor is below FD_SETSIZE (checked above) and the
        // sets are initialised.
        let (r, w) = unsafe { (libc::FD_ISSET(i.fd, &reads), libc::FD_ISSET(i.fd, &writes)) };
        if (i.read && r) || (i.write && w) {
            ready.push(i.fd);
        }
    }
    Ok(())
}

/// Waits with poll(2), which has no limit on descriptor numbers, until one of
/// `interests` is ready or `timeout` has passed, and appends every ready
/// descriptor to `ready`, once each.
///
/// An error or hang-up on a descriptor counts as ready: the task's next read
/// or write then meets the error and ends that connection.
pub(crate) fn poll(
    interests: &[Interest],
    timeout: Option<Duration>,
    ready: &mut Vec<RawFd>,
) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = interests
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd,
            events: if i.read { libc::POLLIN } else { 0 } | if i.write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for poll"))?;
    let deadline = timeout.map(|t| Instant::now() + t);
    syscall(|| {
        // Whole milliseconds, rounded up for the same reason as select's.
        let ms = remaining(deadline)
            .map_or(-1, |left| i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX));
        // SAFETY: `fds` is a live, initialised array of exactly `nfds`
        // pollfd structs, which the kernel may write `revents` into.
        unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) }
    })?;
    ready.extend(fds.iter().filter(|p| p.revents != 0).map(|p| p.fd));
    Ok(())
}

/// The self-pipe that wakes the scheduler from another thread.
///
/// The scheduler always watches [`WakePipe::fd`]; [`WakePipe::wake`] makes it
/// readable, so a blocked select(2) or poll(2) returns and the scheduler looks
/// at the shutdown signal. A connected socket pair stands in for a pipe: std
/// makes it with no unsafe, and `send` can then use `MSG_NOSIGNAL`. Both ends
/// live in one struct, so the writing end never sees a closed reader.
#[derive(Debug)]
pub(crate) struct WakePipe {
    /// The end the scheduler watches and drains.
    rx: UnixStream,
    /// The end any thread writes a byte into.
    tx: UnixStream,
}

impl WakePipe {
    /// A new pair, both ends non-blocking so that neither waking nor
    /// draining can ever stall a thread.
    pub(crate) fn new() -> io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(WakePipe { rx, tx })
    }

    /// The descriptor the scheduler watches for reading.
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Makes the scheduler's next (or current) readiness call return.
    pub(crate) fn wake(&self) {
        // A full buffer (WouldBlock) means a wake-up is already pending,
        // which is all we want; nothing else can fail on a live pair.
        let _ = send(self.tx.as_fd(), &[1]);
    }

    /// Empties the pipe so that it stops being readable.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(recv(self.rx.as_fd(), &mut buf), Ok(n) if n > 0) {}
    }
}
