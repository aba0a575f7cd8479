//! A blocking client that does one verified-length round trip at a time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a reply may take before the benchmark gives up on a backend
/// instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A message of `size` bytes with no `G` in it, so that the `GOT:` prefixes
/// of the reply can be counted without knowing how the server split it.
pub(crate) fn message(size: usize) -> Vec<u8> {
    b"abcdefghijklmnopqrstuvwxyz".iter().copied().cycle().take(size).collect()
}

/// Connects with TCP_NODELAY and a read timeout.
pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Sends `msg` and reads its whole reply.
pub(crate) fn round_trip(stream: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> io::Result<()> {
    stream.write_all(msg)?;
    read_reply(stream, msg.len(), buf)
}

/// Reads the `got`-mode reply to a message of `len` bytes: `GOT:` before
/// each piece the server read, however many pieces that was. The message
/// has no `G`, so every `G` starts a prefix, and the reply is whole once it
/// holds `len` bytes plus four per prefix.
pub(crate) fn read_reply(stream: &mut TcpStream, len: usize, buf: &mut [u8]) -> io::Result<()> {
    let (mut received, mut prefixes) = (0, 0);
    while received == 0 || received < len + 4 * prefixes {
        let n = stream.read(buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        received += n;
        prefixes += buf[..n].iter().filter(|&&b| b == b'G').count();
    }
    if received == len + 4 * prefixes {
        Ok(())
    } else {
        Err(io::Error::other(format!("reply of {received} bytes to a {len}-byte message")))
    }
}
