//! The read buffer of the task-per-connection backends (those that run
//! [`crate::runtime`]'s loop): one per thread rather than one per connection.
//!
//! Their shared connection loop ([`crate::runtime`]) reads with one
//! non-blocking syscall made inside a single poll
//! ([`Runtime::poll_read`](crate::Runtime::poll_read)) and hands the bytes
//! to the sans-IO [`Connection`](crate::Connection) before the next
//! `.await` (in `got` mode, usually by writing the reply straight from the
//! buffer, in the same poll). The buffer is therefore borrowed for the
//! length of those system calls only, never across an `.await`; one buffer per runtime thread then serves every connection the
//! thread runs, and an idle connection costs no buffer at all. It lives here,
//! not in each backend, because it needs no runtime: a thread-local is all.

use std::cell::RefCell;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with this thread's read buffer, at least `len` bytes long.
///
/// `f` must not call `with_read_buffer` again (the buffer is borrowed and a
/// nested call panics) and must not keep the slice past its return: do one
/// read into it and hand the bytes on.
///
/// ```
/// let first = echo_core::buffer::with_read_buffer(4, |buf| {
///     buf.copy_from_slice(b"ping");
///     buf[0]
/// });
/// assert_eq!(first, b'p');
/// ```
pub fn with_read_buffer<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        f(&mut buf[..len])
    })
}
