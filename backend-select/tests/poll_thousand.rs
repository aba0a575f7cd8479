//! poll(2) has no limit on descriptor numbers: a thousand clients at once,
//! whose server-side descriptors run well past 1024, are all served.

use std::io;
use std::time::Duration;

use backend_select::{Poller, SelectBackend};
use echo_core::ServerConfig;
use echo_core::conformance::harness::{connect, round_trip, start, wait_for_stats};

const CLIENTS: usize = 1000;

#[test]
fn a_thousand_clients_at_once_are_all_served_with_poll() -> io::Result<()> {
    // Clients and server share this process's descriptor table: about two
    // descriptors per connection.
    let limit = echo_core::backend::raise_descriptor_limit()?;
    assert!(limit > 2 * CLIENTS as u64 + 100, "descriptor limit {limit} is too low for this test");
    let server = start(&SelectBackend { poller: Poller::Poll }, &ServerConfig::default())?;
    let mut clients = (0..CLIENTS).map(|_| connect(server.local_addr())).collect::<Result<Vec<_>, _>>()?;
    wait_for_stats(&server, "every connection accepted", |s| s.active == CLIENTS as u64)?;
    for (i, client) in clients.iter_mut().enumerate() {
        round_trip(client, format!("{i:04}").as_bytes(), format!("GOT:{i:04}").as_bytes())?;
    }
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.refused, stats.errors), (CLIENTS as u64, 0, 0));
    drop(clients);
    wait_for_stats(&server, "every connection closed", |s| s.active == 0)?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
