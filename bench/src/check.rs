//! `echo-bench check`: the conformance suite against a live server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use echo_core::conformance::{CASES, Target};

use crate::spec::ServerSpec;

/// Runs every case (or those whose name contains `case`) against the
/// server at `addr`, or without one against `spec` started in this
/// process; prints one PASS/FAIL line each and a summary; returns whether
/// all passed. The mode, read size and line length to expect are `spec`'s
/// either way.
pub fn run(addr: Option<SocketAddr>, spec: &ServerSpec, case: Option<&str>) -> anyhow::Result<bool> {
    let config = spec.config();
    // Without an address, start the backend in this process on a free
    // port. It is shut down (and its threads joined) when `_server` drops.
    let (addr, _server) = match addr {
        Some(addr) => {
            println!("checking {addr} (mode {})", config.mode);
            (addr, None)
        }
        None => {
            let backend = spec.build();
            let listener = echo_core::bind("127.0.0.1:0".parse()?)?;
            let server = backend
                .spawn(listener, &config)
                .with_context(|| format!("cannot start the {} backend", backend.name()))?;
            println!("checking backend {} on {} (mode {})", backend.name(), server.local_addr(), config.mode);
            (server.local_addr(), Some(server))
        }
    };
    let target = Target { addr, mode: config.mode, read_size: config.read_size, max_line: config.max_line };

    let cases: Vec<_> =
        CASES.iter().filter(|c| case.is_none_or(|pattern| c.name.contains(pattern))).collect();
    anyhow::ensure!(!cases.is_empty(), "no case matches {:?}", case.unwrap_or(""));

    let (mut passed, mut failed) = (0, 0);
    for case in cases {
        let started = Instant::now();
        let result = (case.run)(&target);
        let took = millis(started.elapsed());
        match result {
            Ok(()) => {
                passed += 1;
                println!("PASS {:<24} {took:>6} ms", case.name);
            }
            Err(failure) => {
                failed += 1;
                println!("FAIL {:<24} {took:>6} ms  {failure}", case.name);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}
