//! [`ServerSpec`]: which server to run and how, in domain terms.

use std::time::Duration;

use echo_core::{Backend, Mode, ServerConfig};

use crate::backends::{BackendName, Poller};

/// A server as `echo-bench serve` runs it: a backend and what it serves
/// with. It builds the backend in this process ([`ServerSpec::build`],
/// [`ServerSpec::config`]) or renders the `echo-bench serve` arguments that
/// start the same server as a child process ([`ServerSpec::serve_args`]),
/// which is how `load`, `soak`, `compare` and the tests start theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The backend.
    pub backend: BackendName,
    /// backend-select's readiness call; `Poll` also forces uring's basic
    /// design, and the other backends ignore it.
    pub poller: Poller,
    /// How replies are formed.
    pub mode: Mode,
    /// Largest piece answered at once in `got` mode.
    pub read_size: usize,
    /// Longest line answered whole in `line` mode.
    pub max_line: usize,
    /// Threads the backend may use.
    pub threads: usize,
    /// Connections served at once, or `None` for the default derived from
    /// the server's own descriptor limit (which it raises at start, so it
    /// is not this process's to compute).
    pub max_connections: Option<usize>,
    /// Close connections idle for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// The server-wide budget of buffered reply bytes (`--max-buffered`).
    pub max_buffered: usize,
}

impl ServerSpec {
    /// `backend` with every option at its default.
    pub fn new(backend: BackendName) -> ServerSpec {
        ServerSpec {
            backend,
            poller: Poller::default(),
            mode: Mode::Got,
            read_size: echo_core::protocol::DEFAULT_READ_SIZE,
            max_line: echo_core::protocol::DEFAULT_MAX_LINE,
            threads: 1,
            max_connections: None,
            idle_timeout: None,
            max_buffered: echo_core::budget::DEFAULT_MAX_BUFFERED,
        }
    }

    /// The same, with `poller`.
    pub fn with_poller(self, poller: Poller) -> ServerSpec {
        ServerSpec { poller, ..self }
    }

    /// The same, in `mode`.
    pub fn with_mode(self, mode: Mode) -> ServerSpec {
        ServerSpec { mode, ..self }
    }

    /// The same, with `threads`.
    pub fn with_threads(self, threads: usize) -> ServerSpec {
        ServerSpec { threads, ..self }
    }

    /// The configuration the backend is spawned with.
    pub fn config(&self) -> ServerConfig {
        let defaults = ServerConfig::default();
        ServerConfig {
            mode: self.mode,
            read_size: self.read_size,
            max_line: self.max_line,
            threads: self.threads,
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            idle_timeout: self.idle_timeout,
            max_buffered: self.max_buffered,
            ..defaults
        }
    }

    /// Builds the backend.
    pub fn build(&self) -> Box<dyn Backend> {
        self.backend.build(self.poller)
    }

    /// The `echo-bench serve` arguments (after `serve`) that start this
    /// server; the caller adds `--addr`, `--drain`, `--cpu` as it needs.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = vec![
            "--backend".to_owned(),
            self.backend.as_str().to_owned(),
            "--mode".to_owned(),
            self.mode.to_string(),
            "--read-size".to_owned(),
            self.read_size.to_string(),
            "--max-line".to_owned(),
            self.max_line.to_string(),
            "--threads".to_owned(),
            self.threads.to_string(),
            "--poller".to_owned(),
            self.poller.to_string(),
            "--max-buffered".to_owned(),
            self.max_buffered.to_string(),
        ];
        if let Some(max) = self.max_connections {
            args.extend(["--max-connections".to_owned(), max.to_string()]);
        }
        if let Some(idle) = self.idle_timeout {
            args.extend(["--idle-timeout".to_owned(), humantime::format_duration(idle).to_string()]);
        }
        args
    }

    /// How `load`, `soak` and `compare` name it: the backend's name, with
    /// the poller for `select`, `uring (basic)` for uring's fallback design.
    pub fn label(&self) -> String {
        match (self.backend, self.poller) {
            (BackendName::Select, poller) => format!("{} ({poller})", self.backend),
            (BackendName::Uring, Poller::Poll) => format!("{} (basic)", self.backend),
            (other, _) => other.to_string(),
        }
    }
}
