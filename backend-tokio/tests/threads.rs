//! The backend serves the same on one thread and on several.

mod common;

use std::io::{self, Write};
use std::thread;
use std::time::Duration;

use common::{config, connect, ensure, finish, read_len, start};
use echo_core::Mode;

/// Hello on one connection, then lines on several at once.
fn serves_on(threads: usize) -> io::Result<()> {
    let server = start(&config(Mode::Line, threads))?;
    let mut hello = connect(&server)?;
    hello.write_all(b"Hello\n")?;
    ensure(read_len(&mut hello, 10)? == b"GOT:Hello\n", "wrong reply to Hello")?;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let mut client = connect(&server)?;
            Ok(thread::spawn(move || -> io::Result<()> {
                let input: String = (0..100).map(|j| format!("{i}:{j}\n")).collect();
                client.write_all(input.as_bytes())?;
                let expected: String = input.lines().map(|l| format!("GOT:{l}\n")).collect();
                ensure(finish(&mut client)? == expected.as_bytes(), format!("client {i}: wrong replies"))
            }))
        })
        .collect::<io::Result<_>>()?;
    for client in clients {
        client.join().map_err(|_| io::Error::other("client thread panicked"))??;
    }
    server.shutdown(Duration::from_secs(1));
    Ok(())
}

#[test]
fn one_thread() -> io::Result<()> {
    serves_on(1)
}

#[test]
fn two_threads() -> io::Result<()> {
    serves_on(2)
}
