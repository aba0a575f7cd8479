//! The shortest honest echo server on blocking `std::net`, in the seed's
//! `got` protocol: a thread per connection (and the main thread accepting),
//! each reading at most 1,000 bytes and answering `GOT:` + exactly those
//! bytes, every byte written, TCP_NODELAY. `--addr HOST:PORT` (port 0 picks
//! one); the bound address is printed on stdout as `listening on ADDR`.
//!
//! It is the yardstick for `--backend threads` (`compare --server
//! bare-threads=...`) and leaves out what the backend adds: the shared
//! sans-IO session (`line` and `raw` modes, `--read-size`), output
//! watermarks (here a reply is written whole before the next read, which
//! bounds memory as well), the connection limit and RLIMIT_NOFILE raise, the
//! back-off when `accept` runs out of descriptors (here an error is printed
//! and `accept` tried again at once, which spins on EMFILE), idle timeouts,
//! counters and log lines, a smaller thread stack (here std's default,
//! 2 MiB of address space, touched only as far as used), and the drain on
//! SIGTERM (here the process just dies).

#[path = "bare/mod.rs"]
mod bare;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let listener = TcpListener::bind(bare::addr("bare-threads")?)?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            // A connection's error ends that connection's thread alone.
            Ok(stream) => drop(std::thread::spawn(move || echo(stream))),
            Err(err) => eprintln!("accept: {err}"),
        }
    }
    Ok(())
}

fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // The prefix stays in front; each read lands right after it, so a reply
    // is one write with no copy.
    let mut buf = [0; 4 + 1000];
    buf[..4].copy_from_slice(b"GOT:");
    loop {
        let n = match stream.read(&mut buf[4..]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A signal arrived: nothing was read, read again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        // write_all continues partial writes (and interrupted ones) until
        // every byte is gone.
        stream.write_all(&buf[..4 + n])?;
    }
}
