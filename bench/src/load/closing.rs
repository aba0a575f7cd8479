//! The end of a run whose replies all came: the client closes its side of
//! every connection and reads each to the server's end of stream. A byte
//! before it is one the server sent beyond its last reply; an end of
//! stream already there before the client closed is a connection the
//! server closed while the run held it. Both fail the run.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Interest, Poll, Token};

use super::LoadError;
use super::client::Closing;

/// What a non-blocking read to the end found on a connection.
enum Found {
    /// Nothing yet.
    Nothing,
    /// Bytes: how many, and the first of them.
    Bytes(usize, Vec<u8>),
    /// The end of the stream.
    End,
    /// An error (a reset).
    Error(io::Error),
}

/// Reads `conn` until it would block; what it found first.
fn drain(conn: &mut Closing, buf: &mut [u8]) -> Found {
    let mut bytes = (0, Vec::new());
    loop {
        match conn.stream.read(buf) {
            Ok(0) if bytes.0 > 0 => break,
            Ok(0) => return Found::End,
            Ok(n) => {
                if bytes.1.is_empty() {
                    bytes.1 = buf[..n.min(16)].to_vec();
                }
                bytes.0 += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Found::Error(e),
        }
    }
    if bytes.0 > 0 { Found::Bytes(bytes.0, bytes.1) } else { Found::Nothing }
}

/// The failure of a connection that sent `n` bytes beyond its last reply,
/// starting with `first`.
fn extra(conn: &Closing, n: usize, first: &[u8]) -> LoadError {
    let mismatch = conn.checker.failure(
        "nothing after the last reply".to_owned(),
        format!("{n} more bytes, starting {:?}", String::from_utf8_lossy(first)),
    );
    LoadError::Mismatch { connection: conn.id, mismatch }
}

/// Closes the client's side of every connection and reads each to its
/// end, for at most `within`: bytes found fail the run, and so does a
/// connection the server had closed or reset before the client closed it.
/// A server that does not close its side in time is not failed: only
/// waited for.
pub(super) fn check(mut conns: Vec<&mut Closing>, within: Duration) -> Result<(), LoadError> {
    let mut poll = Poll::new().context("closing check")?;
    let mut buf = vec![0u8; 64 * 1024];
    for (index, conn) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(&mut conn.stream, Token(index), Interest::READABLE)
            .context("closing check")?;
        let ended = match drain(conn, &mut buf) {
            Found::Nothing => None,
            Found::Bytes(n, first) => return Err(extra(conn, n, &first)),
            Found::End => Some("the end of the stream: the server closed or half-closed it".to_owned()),
            Found::Error(e) => Some(format!("an error: {e}")),
        };
        if let Some(got) = ended {
            let mismatch =
                conn.checker.failure("the connection open until the client closed it".to_owned(), got);
            return Err(LoadError::Mismatch { connection: conn.id, mismatch });
        }
        // An error here is a connection already gone, which the read
        // above or the end-of-stream wait below reports.
        let _ = conn.stream.shutdown(Shutdown::Write);
    }
    let mut open = vec![true; conns.len()];
    let mut left = conns.len();
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + within;
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match poll.poll(&mut events, Some(deadline - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::from(e).context("closing check").into()),
        }
        for event in events.iter() {
            let index = event.token().0;
            if !open[index] {
                continue;
            }
            match drain(conns[index], &mut buf) {
                Found::Nothing => {}
                Found::Bytes(n, first) => return Err(extra(conns[index], n, &first)),
                // The client closed its side first: how the server closes
                // its own is its business.
                Found::End | Found::Error(_) => {
                    open[index] = false;
                    left -= 1;
                }
            }
        }
    }
    Ok(())
}
