//! Every thread the backend started has exited once `shutdown` returns.
//!
//! Alone in its own test binary, so no other server's threads are counted.

mod common;

use std::io::{self, Write};
use std::time::Duration;

use common::{config, connect, ensure, read_len, start, wait_until};
use echo_core::Mode;

/// The backend's thread name, as Linux's `comm` shows it (15 bytes at most).
const THREAD_NAME: &str = "echo-async-std";

/// How many of this process's threads carry the backend's thread name.
fn backend_threads() -> io::Result<usize> {
    let mut count = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        // A thread may exit between listing and reading: not an error.
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        count += usize::from(comm.trim_end() == THREAD_NAME);
    }
    Ok(count)
}

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "reads /proc")]
fn every_thread_exits_on_shutdown() -> io::Result<()> {
    let server = start(&config(Mode::Got, 2))?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    // A thread names itself once it runs, which may lag under load.
    wait_until("the server's threads to be listed", || backend_threads().is_ok_and(|n| n >= 2))?;

    server.shutdown(Duration::from_secs(1));
    // `shutdown` has joined every thread, but the kernel may list a joined
    // thread for a moment longer while it reaps it.
    wait_until("every backend thread to be gone", || backend_threads().is_ok_and(|left| left == 0))
}
