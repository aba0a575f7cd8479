//! Helpers shared by the test files: start a server, connect with deadlines,
//! read `got`-mode replies back into the input.

#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use backend_uring::UringBackend;
use echo_core::{Backend, Mode, Server, ServerConfig};

/// Every blocking read or write in the tests gives up after this.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 with a free port.
#[track_caller]
pub fn serve(config: ServerConfig) -> io::Result<Server> {
    let listener = echo_core::bind("127.0.0.1:0".parse().expect("a valid address"))?;
    UringBackend.spawn(listener, &config)
}

/// The default configuration in `mode`.
pub fn config(mode: Mode) -> ServerConfig {
    ServerConfig { mode, ..ServerConfig::default() }
}

/// A client whose reads and writes time out instead of hanging the test.
#[track_caller]
pub fn connect(server: &Server) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(server.local_addr())?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    Ok(stream)
}

/// `Hello` in, `GOT:Hello` out, on `client`.
#[track_caller]
pub fn hello_on(client: &mut TcpStream) -> io::Result<()> {
    use std::io::Write;
    client.write_all(b"Hello")?;
    let mut reply = [0; 9];
    client.read_exact(&mut reply)?;
    if &reply != b"GOT:Hello" {
        return Err(io::Error::other(format!("got {:?}", String::from_utf8_lossy(&reply))));
    }
    Ok(())
}

/// A fresh client that has had `Hello` answered.
#[track_caller]
pub fn hello(server: &Server) -> io::Result<TcpStream> {
    let mut client = connect(server)?;
    hello_on(&mut client)?;
    Ok(client)
}

/// Reads `got`-mode replies until `expected` bytes of payload came back and
/// returns the payload with every `GOT:` stripped. The payload must not hold
/// a `G`, so a prefix can never be mistaken for data.
#[track_caller]
pub fn read_got(stream: &mut TcpStream, expected: usize) -> io::Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(expected);
    // How much of the `GOT:` prefix the previous read ended inside of.
    let mut in_prefix = 0;
    let mut buf = vec![0; 64 * 1024];
    while payload.len() < expected {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed early"));
        }
        for &byte in &buf[..n] {
            if in_prefix > 0 {
                if byte != b"GOT:"[in_prefix] {
                    return Err(io::Error::other("broken GOT: prefix"));
                }
                in_prefix = (in_prefix + 1) % 4;
            } else if byte == b'G' {
                in_prefix = 1;
            } else {
                payload.push(byte);
            }
        }
    }
    Ok(payload)
}

/// `len` bytes of a pattern with no `G` in it.
pub fn pattern(len: usize) -> Vec<u8> {
    (b'a'..=b'z').cycle().take(len).collect()
}

/// Reads until the server closes; a reset counts as closed.
#[track_caller]
pub fn expect_closed(client: &mut TcpStream) -> io::Result<()> {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(err) => Err(err),
    }
}

/// Waits, up to [`DEADLINE`], for `condition` to hold.
#[track_caller]
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) -> io::Result<()> {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > DEADLINE {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
