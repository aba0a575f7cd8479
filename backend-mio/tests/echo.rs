//! What the shared suites cannot aim at: two paths of `conn.rs` that only
//! particular timing reaches. Everything else (every case in every mode,
//! with one loop or several, shutdown, faults) is run for this backend by
//! `bench/tests/conformance.rs`, `lifecycle.rs` and `faults.rs`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use backend_mio::MioBackend;
use echo_core::conformance::harness::{connect, start};
use echo_core::conformance::{self, Target};
use echo_core::{Mode, ServerConfig};

/// Data and FIN arriving in the same edge: the short read that takes the
/// data does not mean "drained" then, and the loop must read on to the end
/// of input, since no new edge will come. Repeated so the timing is hit.
#[test]
fn half_close_with_the_fin_in_the_same_edge_flushes_every_reply() -> io::Result<()> {
    let server = start(&MioBackend, &ServerConfig { mode: Mode::Line, ..ServerConfig::default() })?;
    for _ in 0..20 {
        let mut client = connect(server.local_addr())?;
        client.write_all(b"abc\nxyz")?;
        client.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        client.read_to_end(&mut reply)?;
        if reply != b"GOT:abc\nGOT:xyz" {
            return Err(io::Error::other(format!("wrong replies: {:?}", String::from_utf8_lossy(&reply))));
        }
    }
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

/// Watermarks above the per-turn read budget: reading stops for the budget
/// long before the watermark, and must resume without a new event. (The
/// default watermarks reach the budget only by reading and writing in turns,
/// which the conformance suite covers.) The shared `large_stream` case,
/// against a server configured so.
#[test]
fn a_large_stream_past_the_read_budget_comes_back_exactly() -> io::Result<()> {
    let mib = 1 << 20;
    let config = ServerConfig {
        mode: Mode::Raw,
        high_watermark: 4 * mib,
        low_watermark: 2 * mib,
        ..ServerConfig::default()
    };
    let server = start(&MioBackend, &config)?;
    conformance::large_stream(&Target::new(server.local_addr(), Mode::Raw))?;
    server.shutdown(Duration::from_secs(1));
    Ok(())
}
