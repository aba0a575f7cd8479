//! System calls on a connected socket. Two that no safe crate wraps: how
//! much of a socket's send queue the peer has not yet acknowledged, which
//! tells [`Linger`](crate::Linger) that every reply has arrived; and how
//! much input waits unread, which tells a blocking reader that one more
//! read will not block. And the round trip's own `recv` and `send`, for the
//! backends that make them themselves.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::net::{RecvFlags, SendFlags};

/// One `recv` into `buf`, straight to the kernel (rustix) rather than
/// through glibc, as [`send`]: every echo-bench server runs on threads of
/// its own beside its caller's, and in a process of several threads glibc
/// switches thread cancellation on and off around each call, an atomic
/// update of the calling thread's descriptor each way. A bare server of one
/// thread never pays that. Measured side by side: 0.990 (middle half
/// 0.989-0.998) of the CPU of the same tokio server calling through glibc
/// at 50 connections, and 0.940 (0.930-0.964) for the thread per connection
/// at 500, where with hundreds of threads taking turns on a core that
/// descriptor is rarely in the cache when its thread wakes.
pub fn recv(socket: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(socket, buf, RecvFlags::empty())?.0)
}

/// One `send` of `buf` (see [`recv`]), with `MSG_NOSIGNAL` as std's own
/// writes: a peer that reset gives `EPIPE`, not `SIGPIPE`.
pub fn send(socket: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(socket, buf, SendFlags::NOSIGNAL)?)
}

/// Bytes in `socket`'s send queue not yet acknowledged by the peer
/// (`ioctl(SIOCOUTQ)`, `TIOCOUTQ` on Linux), or `None` if the kernel does not
/// say (not a TCP socket, or a platform without it).
pub fn unacked_send_queue(socket: BorrowedFd<'_>) -> Option<usize> {
    ioctl_count(socket, libc::TIOCOUTQ)
}

/// Bytes of input waiting in `socket`'s receive queue
/// (`ioctl(FIONREAD)`), or `None` if the kernel does not say.
pub fn unread_input(socket: BorrowedFd<'_>) -> Option<usize> {
    ioctl_count(socket, libc::FIONREAD)
}

/// The count `request` reports for `socket`: one of the ioctls above, each
/// of which writes a single `int`.
fn ioctl_count(socket: BorrowedFd<'_>, request: libc::Ioctl) -> Option<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: both requests used here (TIOCOUTQ, FIONREAD) write one `int`
    // through the pointer, which points to `count`, alive and writable for
    // the call; a descriptor they do not apply to only makes the call fail.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, &mut count) };
    if rc == 0 { usize::try_from(count).ok() } else { None }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    use super::{unacked_send_queue, unread_input};

    /// Calls `check` until it holds or five seconds pass.
    #[track_caller]
    fn wait_for(what: &str, mut check: impl FnMut() -> io::Result<bool>) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check()? {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
        Ok(())
    }

    #[test]
    fn counts_bytes_until_the_peer_reads_them() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let sender = TcpStream::connect(listener.local_addr()?)?;
        let (mut receiver, _) = listener.accept()?;
        assert_eq!(unacked_send_queue(sender.as_fd()), Some(0), "nothing sent yet");

        // Write until the socket takes no more: the receiver's buffer is
        // full (a zero window) and what it has no room for waits in the
        // sender's queue, unacknowledged.
        sender.set_nonblocking(true)?;
        let chunk = [7u8; 64 * 1024];
        let mut sent = 0;
        let mut writer = &sender;
        loop {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
            assert!(sent < 1 << 30, "the peer's window never closed");
        }
        assert!(unacked_send_queue(sender.as_fd()).unwrap_or(0) > 0, "bytes the peer has no room for");

        // Read everything: the queue empties as the peer acknowledges.
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < sent {
            got += receiver.read(&mut buf)?;
        }
        wait_for("the queue to empty", || Ok(unacked_send_queue(sender.as_fd()) == Some(0)))?;
        Ok(())
    }

    #[test]
    fn says_nothing_for_a_file() -> io::Result<()> {
        let file = std::fs::File::open("/dev/null")?;
        assert_eq!(unacked_send_queue(file.as_fd()), None);
        Ok(())
    }

    #[test]
    fn counts_input_until_it_is_read() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut sender = TcpStream::connect(listener.local_addr()?)?;
        let (mut receiver, _) = listener.accept()?;
        assert_eq!(unread_input(receiver.as_fd()), Some(0), "nothing sent yet");
        sender.write_all(&[1u8; 100])?;
        wait_for("the input to arrive", || Ok(unread_input(receiver.as_fd()) == Some(100)))?;
        let mut buf = [0u8; 60];
        receiver.read_exact(&mut buf)?;
        assert_eq!(unread_input(receiver.as_fd()), Some(40), "what is left after a read");
        Ok(())
    }
}
