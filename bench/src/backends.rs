//! The backends this binary knows, by their command-line names.

use backend_select::{Poller, SelectBackend};
use echo_core::Backend;

/// A backend's command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum BackendName {
    /// The seed's scheduler: select(2) or poll(2), one thread.
    Select,
    /// A mio event loop per thread.
    Mio,
    /// tokio, a task per connection.
    Tokio,
    /// async-std, a task per connection.
    AsyncStd,
    /// Blocking std sockets, one OS thread per connection.
    Threads,
    /// smol, a task per connection.
    Smol,
    /// io_uring, completion-based, one ring per thread.
    Uring,
}

/// What `echo-bench list` says of one backend.
#[derive(Clone, Copy, Debug)]
pub struct Description {
    /// The crate that holds it.
    pub krate: &'static str,
    /// The engine underneath.
    pub engine: &'static str,
    /// How it uses threads.
    pub threading: &'static str,
    /// What `--threads N` changes.
    pub threads_flag: &'static str,
}

impl BackendName {
    /// Every backend, in the order `list` and `compare` show them.
    pub const ALL: [BackendName; 7] = [
        BackendName::Threads,
        BackendName::Select,
        BackendName::Mio,
        BackendName::Tokio,
        BackendName::AsyncStd,
        BackendName::Smol,
        BackendName::Uring,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Select => "select",
            BackendName::Mio => "mio",
            BackendName::Tokio => "tokio",
            BackendName::AsyncStd => "async-std",
            BackendName::Threads => "threads",
            BackendName::Smol => "smol",
            BackendName::Uring => "uring",
        }
    }

    /// Whether `--threads` above 1 changes anything.
    pub fn has_threads(self) -> bool {
        !matches!(self, BackendName::Select | BackendName::Threads)
    }

    /// What `echo-bench list` says of it.
    pub fn describe(self) -> Description {
        match self {
            BackendName::Select => Description {
                krate: "backend-select",
                engine: "the seed's scheduler: async fn tasks parked until select(2) or poll(2) (--poller)",
                threading: "one thread",
                threads_flag: "ignored: always one thread",
            },
            BackendName::Mio => Description {
                krate: "backend-mio",
                engine: "mio event loop (epoll), a slab of connections",
                threading: "one event loop per thread",
                threads_flag: "number of event loops",
            },
            BackendName::Tokio => Description {
                krate: "backend-tokio",
                engine: "tokio, a task per connection",
                threading: "current-thread runtime at 1, multi-thread runtime above",
                threads_flag: "runtime worker threads",
            },
            BackendName::AsyncStd => Description {
                krate: "backend-async-std",
                engine: "async-std, a task per connection (async-std is discontinued upstream; smol succeeds it)",
                threading: "async-std sockets and timers on the server's own executor",
                threads_flag: "executor threads (async-io's one reactor thread is shared and extra)",
            },
            BackendName::Threads => Description {
                krate: "backend-threads",
                engine: "blocking std sockets, one OS thread per connection plus the acceptor",
                threading: "a thread per connection",
                threads_flag: "ignored: one thread per connection",
            },
            BackendName::Smol => Description {
                krate: "backend-smol",
                engine: "smol, a task per connection (async-std's successor)",
                threading: "the server's own executor",
                threads_flag: "executor threads (async-io's one reactor thread is shared and extra)",
            },
            BackendName::Uring => Description {
                krate: "backend-uring",
                engine: "io_uring, completion-based accept/recv/send, batched submissions",
                threading: "one ring per thread",
                threads_flag: "number of rings",
            },
        }
    }

    /// Builds the backend; `poller` matters only to `select`.
    pub fn build(self, poller: Poller) -> Box<dyn Backend> {
        match self {
            BackendName::Select => Box::new(SelectBackend { poller }),
            BackendName::Mio => Box::new(backend_mio::MioBackend),
            BackendName::Tokio => Box::new(backend_tokio::TokioBackend),
            BackendName::AsyncStd => Box::new(backend_async_std::AsyncStdBackend),
            BackendName::Threads => Box::new(backend_threads::ThreadsBackend),
            BackendName::Smol => Box::new(backend_smol::SmolBackend),
            BackendName::Uring => Box::new(backend_uring::UringBackend),
        }
    }
}

impl std::fmt::Display for BackendName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn cli_names_match_backend_names() {
        for name in BackendName::ALL {
            assert_eq!(name.build(Poller::Select).name(), name.as_str());
            assert_eq!(name.to_possible_value().unwrap().get_name(), name.as_str());
        }
    }
}
