//! The shortest honest echo server on mio, in the seed's `got` protocol: one
//! event loop on one thread, a slab of connections, each read of at most
//! 1,000 bytes answered with `GOT:` + exactly those bytes, every byte written
//! (what the socket refuses waits for it to be writable, and the connection
//! is not read meanwhile), TCP_NODELAY. `--addr HOST:PORT` (port 0 picks
//! one); prints `listening on ADDR`.
//!
//! The yardstick for `--backend mio` (`compare --server bare-mio=...`), it
//! leaves out what the backend adds to the engine: the sans-IO session
//! (`line`, `raw`, `--read-size`), output watermarks, a fairness budget (a
//! connection is read until it would block), the connection limit and
//! RLIMIT_NOFILE raise, the back-off when `accept` runs out of descriptors
//! (an error is printed and the loop goes on, spinning on EMFILE), idle
//! timeouts, counters and log lines, `--threads`, the drain on SIGTERM.

#[path = "bare/mod.rs"]
mod bare;

use std::io::{self, ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const SERVER: Token = Token(usize::MAX);

fn main() -> io::Result<()> {
    let mut listener = TcpListener::bind(bare::addr("bare-mio")?)?;
    println!("listening on {}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, SERVER, Interest::READABLE)?;
    let (mut events, mut connections) = (Events::with_capacity(1024), slab::Slab::new());
    // The prefix stays in front; each read lands right after it.
    let mut buf = [0; 4 + 1000];
    buf[..4].copy_from_slice(b"GOT:");
    loop {
        match poll.poll(&mut events, None) {
            Err(err) if err.kind() != ErrorKind::Interrupted => return Err(err),
            _ => {} // Interrupted by a signal: the events are just empty.
        }
        for event in &events {
            let token = event.token();
            // Edge-triggered: accept until the queue is empty (or fails).
            if token == SERVER {
                loop {
                    let (mut stream, _) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                        Err(err) => {
                            eprintln!("accept: {err}");
                            break;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let entry = connections.vacant_entry();
                    // The kernel signals room to write only after a write found none,
                    // so WRITABLE interest costs no wake-ups while nothing waits.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut stream, Token(entry.key()), interest)?;
                    entry.insert((stream, Vec::new()));
                }
            }
            // A spurious event finds nothing to do and costs one WouldBlock.
            if let Some((stream, pending)) = connections.get_mut(token.0) {
                if !serve(stream, pending, &mut buf).unwrap_or(false) {
                    // Closed, reset or failed: dropping the stream deregisters it.
                    connections.remove(token.0);
                }
            }
        }
    }
}

/// Writes what is pending, then reads and answers until the socket would
/// block; returns whether the connection stays open. A reply goes through
/// `pending` (one copy; its capacity is kept), so what a partial write
/// leaves stays there, and nothing is read while it is not empty.
fn serve(stream: &mut TcpStream, pending: &mut Vec<u8>, buf: &mut [u8; 1004]) -> io::Result<bool> {
    loop {
        let result = match pending.is_empty() {
            false => stream.write(pending).map(|n| drop(pending.drain(..n))),
            true => match stream.read(&mut buf[4..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    pending.extend_from_slice(&buf[..4 + n]);
                    Ok(())
                }
                Err(err) => Err(err),
            },
        };
        match result {
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(true),
            // Ok, or interrupted by a signal with nothing done: go on.
            Err(err) if err.kind() != ErrorKind::Interrupted => return Err(err),
            _ => {}
        }
    }
}
