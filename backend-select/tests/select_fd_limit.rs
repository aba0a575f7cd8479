//! select(2) cannot watch descriptors numbered 1024 or more: such
//! connections are refused cleanly, counted, and the server serves on.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use backend_select::{Poller, SelectBackend};
use echo_core::ServerConfig;
use echo_core::conformance::harness::{connect, round_trip, start, wait_for_stats};

/// Enough clients that, with client and server sockets sharing this
/// process's descriptor table, many server-side descriptors pass 1024.
const CLIENTS: usize = 1100;

#[test]
fn descriptors_past_fd_setsize_are_refused_and_the_server_goes_on() -> io::Result<()> {
    let limit = echo_core::backend::raise_descriptor_limit()?;
    assert!(limit > 2 * CLIENTS as u64 + 100, "descriptor limit {limit} is too low for this test");
    let server = start(&SelectBackend { poller: Poller::Select }, &ServerConfig::default())?;
    let mut clients = (0..CLIENTS).map(|_| connect(server.local_addr())).collect::<Result<Vec<_>, _>>()?;
    let stats = wait_for_stats(&server, "every connection accepted or refused", |s| {
        s.accepted + s.refused == CLIENTS as u64
    })?;
    assert!(stats.refused > 0, "nothing was refused: {stats:?}");

    let (mut served, mut refused) = (0, 0);
    for (i, client) in clients.iter_mut().enumerate() {
        let message = format!("{i:04}");
        // A refused connection may already be reset when we write to it.
        match client.write_all(message.as_bytes()) {
            Ok(()) => {}
            Err(err) if matches!(err.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                refused += 1;
                continue;
            }
            Err(err) => return Err(err),
        }
        let mut first = [0];
        match client.read(&mut first) {
            Ok(0) => refused += 1,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => refused += 1,
            Ok(_) => {
                let mut rest = [0; 7];
                client.read_exact(&mut rest)?;
                let reply = [&first[..], &rest[..]].concat();
                assert_eq!(reply, format!("GOT:{message}").as_bytes(), "client {i}");
                served += 1;
            }
            Err(err) => return Err(err),
        }
    }
    let stats = server.stats();
    assert_eq!((served, refused), (stats.accepted, stats.refused), "{stats:?}");
    assert_eq!(stats.errors, 0);

    drop(clients);
    wait_for_stats(&server, "every connection closed", |s| s.active == 0)?;
    // Descriptors are free again, so a fresh client gets a low one.
    let mut fresh = connect(server.local_addr())?;
    round_trip(&mut fresh, b"Hello", b"GOT:Hello")?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
