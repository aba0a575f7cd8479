//! The shortest honest echo server on tokio, in the seed's `got` protocol:
//! a task per connection on a current-thread runtime (one thread), each
//! reading at most 1,000 bytes and answering `GOT:` + exactly those bytes,
//! every byte written, TCP_NODELAY. `--addr HOST:PORT` (port 0 picks one);
//! the bound address is printed on stdout as `listening on ADDR`.
//!
//! It is the yardstick for `--backend tokio` (`compare --server
//! bare-tokio=...`) and leaves out what the backend adds to the engine: the
//! shared connection loop and sans-IO session (`line` and `raw` modes,
//! `--read-size`), output watermarks (here a reply is written whole before
//! the next read, which bounds memory as well), the fairness budget (tokio's
//! own cooperative budget still applies), the connection limit and
//! RLIMIT_NOFILE raise, the back-off when `accept` runs out of descriptors
//! (here an error is printed and `accept` tried again at once, which spins
//! on EMFILE), idle timeouts, counters and log lines, `--threads`, and the
//! drain on SIGTERM (here the process just dies).

#[path = "bare/mod.rs"]
mod bare;

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let addr = bare::addr("bare-tokio")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                // A connection's error ends that connection alone.
                Ok((stream, _)) => drop(tokio::spawn(echo(stream))),
                Err(err) => eprintln!("accept: {err}"),
            }
        }
    })
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // The prefix stays in front; each read lands right after it, so a reply
    // is one write with no copy.
    let mut buf = [0; 4 + 1000];
    buf[..4].copy_from_slice(b"GOT:");
    loop {
        let n = stream.read(&mut buf[4..]).await?;
        if n == 0 {
            return Ok(());
        }
        // write_all continues partial writes until every byte is gone.
        stream.write_all(&buf[..4 + n]).await?;
    }
}
