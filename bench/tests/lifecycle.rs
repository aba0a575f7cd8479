//! The shared lifecycle suite (`echo_core::conformance::lifecycle`),
//! expanded for every backend and thread count, so that a failure names
//! both and `cargo test --test lifecycle mio::` runs one backend's part.
//!
//! Test names read `backend::variant::case`, e.g.
//! `mio::threads2::drain_deadline_cuts_a_client_that_never_reads`. The
//! thread-exit case is not here: it counts every thread of the process, so
//! it has a test binary of its own, `threads_exit.rs`.

use echo_bench::backends::{BackendName, Poller};
use echo_core::Backend;
use echo_core::conformance::Failure;
use echo_core::conformance::lifecycle::{self, CASES};

/// Runs one lifecycle case against a fresh instance of the backend.
fn check(
    backend: BackendName,
    poller: Poller,
    threads: usize,
    case: fn(&dyn Backend, usize) -> Result<(), Failure>,
) -> Result<(), Failure> {
    case(&*backend.build(poller), threads)
}

/// A module per variant, with one `#[test]` per case from the one list in
/// echo-core ([`echo_core::for_each_lifecycle_case!`]), and a test that the
/// expansion holds every case in `lifecycle::CASES`, in its order.
macro_rules! cases {
    ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
        mod $variant {
            use super::*;
            echo_core::for_each_lifecycle_case!(cases! { @each $backend, $poller, $threads; });

            #[test]
            fn every_case_is_expanded() {
                let names: Vec<_> = CASES.iter().map(|c| c.name).collect();
                assert_eq!(names, EXPANDED, "the expansion and lifecycle::CASES differ");
            }
        }
    };
    (@each $backend:expr, $poller:expr, $threads:expr; $($case:ident),* $(,)?) => {
        /// The cases expanded here, in order.
        const EXPANDED: &[&str] = &[$(stringify!($case)),*];
        $(
            #[test]
            fn $case() -> Result<(), Failure> {
                check($backend, $poller, $threads, lifecycle::$case)
            }
        )*
    };
}

echo_bench::every_backend!(cases);
