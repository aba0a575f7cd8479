//! Every thread the backend started has exited once `shutdown` returns,
//! including connection threads that were blocked in a read.
//!
//! Alone in its own test binary, so no other server's threads are counted.

mod common;

use std::io::{self, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, connect, ensure, read_len, start, wait_until};
use echo_core::Mode;

/// The backend's thread name, as Linux's `comm` shows it.
const THREAD_NAME: &str = "echo-threads";

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
    let server = start(&config(Mode::Got))?;
    let mut client = connect(&server)?;
    client.write_all(b"Hello")?;
    ensure(read_len(&mut client, 9)? == b"GOT:Hello", "wrong reply to Hello")?;
    let _quiet = connect(&server)?;
    wait_until("both connections to be accepted", || server.stats().active == 2)?;
    let running = backend_threads()?;
    ensure(running == 3, format!("expected the acceptor and two connection threads, found {running}"))?;

    let started = Instant::now();
    server.shutdown(Duration::from_secs(30));
    ensure(started.elapsed() < Duration::from_secs(3), "shutdown waited for idle clients")?;
    // Every thread was joined. The kernel wakes a joiner as the thread
    // exits, a moment before it removes the thread from /proc, so allow
    // that moment, and no more.
    let gone = Instant::now() + Duration::from_millis(500);
    let mut left = backend_threads()?;
    while left > 0 && Instant::now() < gone {
        thread::sleep(Duration::from_millis(5));
        left = backend_threads()?;
    }
    ensure(left == 0, format!("{left} of {running} backend threads still running after shutdown"))
}
