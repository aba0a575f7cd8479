//! The shared conformance suite, expanded for every backend, thread count
//! and mode, so that a failure names all three and `cargo test mio::`
//! runs one backend's part.
//!
//! Test names read `backend::variant::mode::case`, e.g.
//! `select::poll::line::large_stream` or `mio::threads2::raw::half_close`.

use std::time::Duration;

use echo_bench::backends::{BackendName, Poller};
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

/// One `#[test]` per case, from the one list of cases in echo-core
/// ([`echo_core::for_each_case!`]), and `EXPANDED`, the names this
/// expansion wrote, which the variant's `every_case_is_expanded` compares
/// with `conformance::CASES`.
macro_rules! cases {
    ($backend:expr, $poller:expr, $threads:expr, $mode:expr; $($case:ident),* $(,)?) => {
        /// The cases expanded here, in order.
        pub(super) const EXPANDED: &[&str] = &[$(stringify!($case)),*];
        $(
            #[test]
            fn $case() -> Result<(), Failure> {
                check($backend, $poller, $threads, $mode, conformance::$case)
            }
        )*
    };
    ($backend:expr, $poller:expr, $threads:expr, $mode:expr) => {
        echo_core::for_each_case!(cases! { $backend, $poller, $threads, $mode; });
    };
}

/// A module per mode, each with every case, and a test that each mode
/// expanded every case in `CASES`, in its order.
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

            #[test]
            fn every_case_is_expanded() {
                expanded_every_case(&[
                    ("got", got::EXPANDED),
                    ("line", line::EXPANDED),
                    ("raw", raw::EXPANDED),
                ]);
            }
        }
    };
}

echo_bench::every_backend!(modes);

/// Checks that each mode's expansion wrote a test for every case in
/// `CASES`, and for nothing else.
#[track_caller]
fn expanded_every_case(modes: &[(&str, &[&str])]) {
    let names: Vec<_> = CASES.iter().map(|c| c.name).collect();
    for &(mode, expanded) in modes {
        assert_eq!(expanded, names, "{mode}: the tests expanded differ from conformance::CASES");
    }
}
