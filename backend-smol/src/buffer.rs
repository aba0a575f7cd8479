//! The read buffer, one per thread rather than one per connection.
//!
//! A read is a plain non-blocking syscall made between two awaits, so the
//! buffer is borrowed for the length of that call only, never across an
//! `.await`; one buffer per executor thread then serves every connection the
//! thread runs, and an idle connection costs no buffer at all.

use std::cell::RefCell;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with this thread's read buffer, at least `len` bytes long.
pub(crate) fn with_read_buffer<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        // No re-entry: `f` does one read syscall and hands the bytes to the
        // sans-IO connection, neither of which can come back here.
        f(&mut buf[..len])
    })
}
