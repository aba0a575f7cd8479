//! The shared conformance suite, expanded for every backend, thread count
//! and mode, so that a failure names all three and `cargo test mio::`
//! runs one backend's part.
//!
//! Test names read `backend::variant::mode::case`, e.g.
//! `select::poll::line::large_stream` or `tokio::threads2::raw::half_close`.

#[macro_use]
mod common;

use std::time::Duration;

use backend_select::Poller;
use echo_bench::backends::BackendName;
use echo_core::conformance::{self, CASES, Failure, Target};
use echo_core::{Mode, ServerConfig};

/// Starts the backend on a free loopback port, runs one case against it,
/// then shuts it down and checks it let go of every connection.
fn check(
    backend: BackendName,
    poller: Poller,
    threads: usize,
    mode: Mode,
    case: fn(&Target) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let io = |step: &str| {
        let step = step.to_owned();
        move |source| Failure::Io { step, source }
    };
    let config = ServerConfig { mode, threads, ..ServerConfig::default() };
    let listener =
        echo_core::bind("127.0.0.1:0".parse().expect("valid address")).map_err(|e| io("bind")(e.into()))?;
    let server = backend.build(poller).spawn(listener, &config).map_err(io("spawn"))?;
    let target = Target::new(server.local_addr(), mode);
    let result = case(&target);
    let stats = server.stats();
    server.shutdown(Duration::from_secs(1));
    result?;
    if stats.accepted == 0 {
        return Err(Failure::Mismatch("the server counted no accepted connection".into()));
    }
    Ok(())
}

/// One `#[test]` per case. The list must name every case in
/// `conformance::CASES`; `every_case_is_expanded` below checks it does.
macro_rules! cases {
    ($backend:expr, $poller:expr, $threads:expr, $mode:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() -> Result<(), Failure> {
                check($backend, $poller, $threads, $mode, conformance::$case)
            }
        )*
    };
    ($backend:expr, $poller:expr, $threads:expr, $mode:expr) => {
        cases!($backend, $poller, $threads, $mode;
            seed_transcript,
            many_clients,
            every_byte_value,
            large_stream,
            slow_reader,
            half_close,
            half_close_backed_up,
            empty_connection,
            chunking_independence,
            long_lines,
            got_piece_sizes,
            reset_mid_stream,
        );
    };
}

/// A module per mode, each with every case.
macro_rules! modes {
    ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
        mod $variant {
            use super::*;
            mod got {
                use super::*;
                cases!($backend, $poller, $threads, Mode::Got);
            }
            mod line {
                use super::*;
                cases!($backend, $poller, $threads, Mode::Line);
            }
            mod raw {
                use super::*;
                cases!($backend, $poller, $threads, Mode::Raw);
            }
        }
    };
}

every_backend!(modes);

#[test]
fn every_case_is_expanded() {
    let expanded = [
        "seed_transcript",
        "many_clients",
        "every_byte_value",
        "large_stream",
        "slow_reader",
        "half_close",
        "half_close_backed_up",
        "empty_connection",
        "chunking_independence",
        "long_lines",
        "got_piece_sizes",
        "reset_mid_stream",
    ];
    let names: Vec<_> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(names, expanded, "update the case list in cases!() to match conformance::CASES");
}
