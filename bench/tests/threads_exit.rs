//! Every thread a backend started has exited once `Server::shutdown`
//! returns: the shared `lifecycle::every_thread_exits`, for every backend
//! and thread count.
//!
//! It counts this process's threads by name, so it has a test binary of its
//! own (no other test's servers run here) and its tests take turns through
//! [`ALONE`]: libtest would otherwise run them side by side, and a backend's
//! threads could be counted while another test of the same backend runs.

use std::sync::{Mutex, PoisonError};

use echo_bench::backends::{BackendName, Poller};
use echo_core::conformance::Failure;
use echo_core::conformance::lifecycle;

/// Held by the test that runs; the others wait their turn.
static ALONE: Mutex<()> = Mutex::new(());

/// Runs the case alone.
fn check(backend: BackendName, poller: Poller, threads: usize) -> Result<(), Failure> {
    // A failed test returns an error rather than panicking; should one
    // panic all the same, the others still run.
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    lifecycle::every_thread_exits(&*backend.build(poller), threads, backend.thread_prefix())
}

/// One test per backend variant, named after it: `mio::threads2`.
macro_rules! every_thread_exits {
    ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
        #[test]
        #[cfg_attr(not(target_os = "linux"), ignore = "reads /proc")]
        fn $variant() -> Result<(), Failure> {
            check($backend, $poller, $threads)
        }
    };
}

echo_bench::every_backend!(every_thread_exits);
