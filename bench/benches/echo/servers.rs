//! Every backend, serving in this process on its own loopback port.

use std::time::Duration;

use echo_bench::compare::Contender;
use echo_core::{Server, ServerConfig};

/// A running server, named as the benchmark reports name it.
pub(crate) struct Running {
    /// `select`, `select-poll`, `mio`, ...
    pub(crate) name: &'static str,
    pub(crate) server: Server,
}

/// Starts every backend (select with both pollers) in `got` mode, the
/// seed's, with default settings. A backend that cannot start ends the
/// benchmark run: its numbers would be missing without a word.
pub(crate) fn start_all() -> Vec<Running> {
    Contender::all()
        .into_iter()
        .map(|contender| {
            let backend = contender.backend.build(contender.poller);
            let listener = echo_core::bind(([127, 0, 0, 1], 0).into()).expect("cannot bind a loopback port");
            let server = backend
                .spawn(listener, &ServerConfig::default())
                .unwrap_or_else(|e| panic!("cannot start {contender}: {e}"));
            Running { name: contender.as_str(), server }
        })
        .collect()
}

/// Shuts every server down.
pub(crate) fn stop_all(servers: Vec<Running>) {
    for running in servers {
        running.server.shutdown(Duration::from_millis(100));
    }
}
