//! What every bare server shares and none of them measures: reading
//! `--addr` from the command line. (Not an example of its own: cargo builds
//! `examples/*.rs`, and each bare server includes this file with `#[path]`.)

use std::io;
use std::net::SocketAddr;

/// `--addr HOST:PORT` (port 0 picks one), or the seed's 127.0.0.1:25000;
/// `name` is the server's, for the usage line.
pub(crate) fn addr(name: &str) -> io::Result<SocketAddr> {
    let mut args = std::env::args().skip(1);
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(([127, 0, 0, 1], 25000).into()),
        (Some("--addr"), Some(addr), None) => {
            addr.parse().map_err(|e| invalid(format!("--addr {addr}: {e}")))
        }
        _ => Err(invalid(format!("usage: {name} [--addr HOST:PORT]"))),
    }
}
