//! Thousands of connections held at once, each with a verified round trip,
//! and every descriptor given back after the clients close.
//!
//! The server runs as an `echo-bench serve` child so that its descriptors
//! and memory are its own, read from /proc.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use common::{ServerChild, wait_until};
use echo_bench::procfs::{fd_count, status_kib};

const CONNECTIONS: usize = 5000;

/// Connections made before waiting for the server to accept them: well
/// under the listen backlog.
const BATCH: usize = 1000;

/// The test process holds 5,000 client sockets per case; running the cases
/// one at a time keeps it far below the 20,000-descriptor limit.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn hold_many(args: &[&str]) -> io::Result<()> {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = ServerChild::start(&[args, &["--mode", "line"]].concat())?;
    let pid = server.pid();
    let baseline = fd_count(pid)?;

    // Connected in batches, each accepted before the next: a connect
    // returns once the kernel has queued the connection, and 5,000 at once
    // could overflow the listen backlog (4,096) of a server still busy
    // accepting, whose dropped handshakes the kernel would only retry
    // after seconds.
    let mut clients = Vec::with_capacity(CONNECTIONS);
    while clients.len() < CONNECTIONS {
        for _ in 0..BATCH.min(CONNECTIONS - clients.len()) {
            let stream = TcpStream::connect(server.addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            clients.push(stream);
        }
        // Every connection so far is open on the server side at once.
        wait_until(Duration::from_secs(20), "the server to hold every connection", || {
            Ok(fd_count(pid)? >= baseline + clients.len())
        })?;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        writeln!(client, "client {i}")?;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = format!("GOT:client {i}\n");
        let mut reply = vec![0; expected.len()];
        client.read_exact(&mut reply)?;
        assert_eq!(reply, expected.as_bytes(), "connection {i} got a wrong reply");
    }
    let peak_fds = fd_count(pid)?;
    let peak_rss = status_kib(pid, "VmHWM")?;
    eprintln!("{args:?}: {CONNECTIONS} connections, peak fds {peak_fds}, peak RSS {peak_rss} KiB");

    drop(clients);
    wait_until(Duration::from_secs(20), "the server's descriptors to return to baseline", || {
        Ok(fd_count(pid)? <= baseline)
    })?;
    server.signal("TERM")?;
    let status = server.wait_timeout(Duration::from_secs(10))?;
    assert!(status.success(), "server exited with {status}");
    Ok(())
}

/// One test per backend variant at one thread, `mio::threads1::holds_5000`;
/// select with select(2) has none: it cannot watch descriptors past 1023
/// (the fault suite's descriptor cases cover how it refuses them).
macro_rules! holds_5000 {
    (select, $($select_2:tt)*) => {};
    ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
        mod $variant {
            use super::*;

            #[test]
            fn holds_5000() -> io::Result<()> {
                let args = common::backend_args($backend, $poller, $threads);
                hold_many(&args.iter().map(String::as_str).collect::<Vec<_>>())
            }
        }
    };
}

echo_bench::every_backend!(one_thread holds_5000);
