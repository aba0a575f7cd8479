//! The two `io::Error`s an event loop treats as normal, not as failures.

use std::io;

/// The socket has nothing for us right now (or no room, when writing).
///
/// Every socket here is non-blocking, so this is the kernel's way of saying
/// "not ready": the readiness we acted on was used up, was spurious, or was
/// stale (an event for a token whose connection has since closed and whose
/// slab slot was reused). It is never an error: we stop and wait for the
/// poller's next event, which comes when the state changes.
pub(crate) fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived before the call did anything.
///
/// Nothing was read, written or accepted, so the call is simply made again;
/// on a non-blocking socket the retry cannot block.
pub(crate) fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}
