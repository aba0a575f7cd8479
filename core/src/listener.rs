//! Binding, done once here for every backend.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog. The seed's 5 drops connections under any burst; the
/// kernel caps this at `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// Why a listener could not be made, naming the address.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket already listens there.
    #[error("address {0} is already in use")]
    InUse(SocketAddr),
    /// The address is not one of this machine's.
    #[error("address {0} is not available on this machine")]
    NotAvailable(SocketAddr),
    /// Any other failure.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

impl From<BindError> for io::Error {
    fn from(err: BindError) -> Self {
        let kind = match &err {
            BindError::InUse(_) => io::ErrorKind::AddrInUse,
            BindError::NotAvailable(_) => io::ErrorKind::AddrNotAvailable,
            BindError::Other { source, .. } => source.kind(),
        };
        io::Error::new(kind, err)
    }
}

/// Binds a blocking TCP listener on `addr` with `SO_REUSEADDR` (so a
/// restarted server does not wait out TIME_WAIT) and a real backlog. Port 0
/// picks a free port; read it back with `local_addr`.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let classify = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse(addr),
        io::ErrorKind::AddrNotAvailable => BindError::NotAvailable(addr),
        _ => BindError::Other { addr, source },
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(classify)?;
    socket.set_reuse_address(true).map_err(classify)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(classify)?;
    }
    socket.bind(&addr.into()).map_err(classify)?;
    socket.listen(BACKLOG).map_err(classify)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_picks_a_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn port_in_use_names_the_address() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert!(matches!(err, BindError::InUse(a) if a == addr));
        assert_eq!(err.to_string(), format!("address {addr} is already in use"));
    }
}
