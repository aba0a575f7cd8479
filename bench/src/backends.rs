//! The backends this binary knows: the one list of them, and what is
//! derived from it.
//!
//! Adding a backend means writing its crate, adding its dependency lines to
//! the workspace's and this package's `Cargo.toml`, and adding one entry to
//! [`for_each_backend!`](crate::for_each_backend). The command line's
//! `--backend` values, `list`, the log targets of `-v`, `compare`'s rows
//! and every test that runs across the backends (conformance, lifecycle,
//! faults, scale, thread exit, the CLI's lists, through
//! [`every_backend!`](crate::every_backend)) follow from that entry.

pub use backend_select::Poller;
use echo_core::Backend;

/// The one list of backends, handed to `$callback` after `$args`.
///
/// Each entry, in the order `list`, `compare` and the tests show them:
///
/// - `Variant`: the [`BackendName`] variant;
/// - `name`: the command-line name, which `Backend::name` also returns;
/// - `module`: the name of the test module the backend's tests live in
///   (`cargo test mio::` filters on it);
/// - `krate`: its crate, also its log target (`-v` turns it to debug);
/// - `build`: how it is built, given the select backend's `Poller`, which
///   also picks uring's design (see [`uring_design`]);
/// - `threads`: whether `--threads` above 1 changes anything;
/// - `thread_prefix`: what the name of every thread it starts begins with,
///   and no other thread's (the thread-exit test counts them by it);
/// - `tests`: the variants the shared test suites run it in, each
///   `module_name(Poller, threads)`;
/// - `engine`, `threading`, `threads_flag`: what `echo-bench list` says.
///
/// ```
/// macro_rules! names {
///     ($($variant:ident { name: $name:literal, $($rest:tt)* })*) => { [$($name),*] };
/// }
/// let names = echo_bench::for_each_backend!(names! {});
/// assert!(names.contains(&"mio"));
/// ```
#[macro_export]
macro_rules! for_each_backend {
    ($($callback:ident)::+ ! { $($args:tt)* }) => {
        $($callback)::+! { $($args)*
            Threads {
                name: "threads", module: threads, krate: backend_threads,
                build: |_poller| backend_threads::ThreadsBackend,
                threads: false, thread_prefix: "echo-threads",
                tests: [threads1(Select, 1)],
                engine: "blocking std sockets, one OS thread per connection plus the acceptor",
                threading: "a thread per connection",
                threads_flag: "ignored: one thread per connection",
            }
            Select {
                name: "select", module: select, krate: backend_select,
                build: |poller| backend_select::SelectBackend { poller },
                threads: false, thread_prefix: "echo-select",
                tests: [select(Select, 1), poll(Poll, 1)],
                engine: "the seed's scheduler: async fn tasks parked until select(2) or poll(2) (--poller)",
                threading: "one thread",
                threads_flag: "ignored: always one thread",
            }
            Mio {
                name: "mio", module: mio, krate: backend_mio,
                build: |_poller| backend_mio::MioBackend,
                threads: true, thread_prefix: "echo-mio-",
                tests: [threads1(Select, 1), threads2(Select, 2)],
                engine: "mio event loop (epoll), a slab of connections",
                threading: "one event loop per thread",
                threads_flag: "number of event loops",
            }
            Tokio {
                name: "tokio", module: tokio, krate: backend_tokio,
                build: |_poller| backend_tokio::TokioBackend,
                threads: true, thread_prefix: "echo-tokio",
                tests: [threads1(Select, 1), threads2(Select, 2)],
                engine: "tokio, a task per connection",
                threading: "current-thread runtime at 1, multi-thread runtime above",
                threads_flag: "runtime worker threads",
            }
            AsyncStd {
                name: "async-std", module: async_std, krate: backend_async_std,
                build: |_poller| backend_async_std::AsyncStdBackend,
                threads: true, thread_prefix: "echo-async-std",
                tests: [threads1(Select, 1), threads2(Select, 2)],
                engine: "async-std, a task per connection (async-std is discontinued upstream; smol succeeds it)",
                threading: "async-std sockets and timers on the server's own executor",
                threads_flag: "executor threads (async-io's one reactor thread is shared and extra)",
            }
            Smol {
                name: "smol", module: smol, krate: backend_smol,
                build: |_poller| backend_smol::SmolBackend,
                threads: true, thread_prefix: "echo-smol",
                tests: [threads1(Select, 1), threads2(Select, 2)],
                engine: "smol, a task per connection (async-std's successor)",
                threading: "the server's own executor",
                threads_flag: "executor threads (async-io's one reactor thread is shared and extra)",
            }
            Uring {
                name: "uring", module: uring, krate: backend_uring,
                build: |poller| backend_uring::UringBackend { design: uring_design(poller) },
                threads: true, thread_prefix: "echo-uring-",
                tests: [threads1(Select, 1), threads2(Select, 2), basic(Poll, 1)],
                engine: "io_uring, completion-based accept/recv/send, batched submissions; multishot accept and receive from provided buffers where the kernel has them (--uring-basic: single-shot)",
                threading: "one ring per thread",
                threads_flag: "number of rings",
            }
        }
    };
}

/// Expands a test suite once per variant of every backend, in a module per
/// backend: `$suite!(variant, BackendName::X, Poller::Y, threads)`, so that
/// test names read `backend::variant::...` and `cargo test mio::` runs one
/// backend's part. The variants are each entry's `tests` in
/// [`for_each_backend!`](crate::for_each_backend): a backend whose
/// `--threads` changes nothing runs with one thread, the others with one
/// and two, select with each poller.
///
/// `every_backend!(one_thread $suite)` expands only the one-thread
/// variants, for suites too heavy to run twice per backend.
///
/// Either form also writes `every_backend_is_expanded`, a test that the
/// expansion has a module for every backend of [`BackendName::ALL`].
#[macro_export]
macro_rules! every_backend {
    ($suite:ident) => {
        $crate::for_each_backend!($crate::every_backend! { @expand all $suite; });
    };
    (one_thread $suite:ident) => {
        $crate::for_each_backend!($crate::every_backend! { @expand one_thread $suite; });
    };
    (@expand $which:ident $suite:ident;
        $($backend:ident {
            name: $name:literal, module: $module:ident,
            krate: $krate:ident, build: |$poller:ident| $build:expr,
            threads: $threads_flag:literal, thread_prefix: $prefix:literal,
            tests: [$($test:ident($test_poller:ident, $test_threads:tt)),* $(,)?],
            $($rest:tt)*
        })*
    ) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $(
                    $crate::every_backend!(@variant $which $test_threads; $suite!(
                        $test,
                        $crate::backends::BackendName::$backend,
                        $crate::backends::Poller::$test_poller,
                        $test_threads
                    ););
                )*
            }
        )*

        #[test]
        fn every_backend_is_expanded() {
            let expanded: &[&str] = &[$($name),*];
            let registry: Vec<_> = $crate::backends::BackendName::ALL.iter().map(|b| b.as_str()).collect();
            assert_eq!(expanded, registry, "the expansion and BackendName::ALL differ");
        }
    };
    (@variant all $threads:tt; $($expansion:tt)*) => { $($expansion)* };
    (@variant one_thread 1; $($expansion:tt)*) => { $($expansion)* };
    (@variant one_thread $threads:tt; $($expansion:tt)*) => {};
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

/// Writes [`BackendName`] and its tables from the list.
macro_rules! registry {
    ($($variant:ident {
        name: $name:literal, module: $module:ident, krate: $krate:ident,
        build: |$poller:ident| $build:expr,
        threads: $threads:literal, thread_prefix: $prefix:literal,
        tests: [$($tests:tt)*],
        engine: $engine:literal, threading: $threading:literal, threads_flag: $threads_flag:literal $(,)?
    })*) => {
        /// A backend, by its command-line name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum BackendName {
            $(
                #[doc = concat!("`", $name, "`: ", $engine, ".")]
                $variant,
            )*
        }

        impl BackendName {
            /// Every backend, in the order `list`, `compare` and the tests
            /// show them.
            pub const ALL: [BackendName; [$($name),*].len()] = [$(BackendName::$variant),*];

            /// The name used on the command line, which the backend's
            /// `Backend::name` returns too.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(BackendName::$variant => $name,)*
                }
            }

            /// Whether `--threads` above 1 changes anything.
            pub const fn has_threads(self) -> bool {
                match self {
                    $(BackendName::$variant => $threads,)*
                }
            }

            /// What the name of every thread the backend starts begins
            /// with, and no other thread's.
            pub const fn thread_prefix(self) -> &'static str {
                match self {
                    $(BackendName::$variant => $prefix,)*
                }
            }

            /// The backend's log target: its crate's name.
            pub const fn log_target(self) -> &'static str {
                match self {
                    $(BackendName::$variant => stringify!($krate),)*
                }
            }

            /// What `echo-bench list` says of it.
            pub const fn describe(self) -> Description {
                match self {
                    $(BackendName::$variant => Description {
                        krate: stringify!($krate),
                        engine: $engine,
                        threading: $threading,
                        threads_flag: $threads_flag,
                    },)*
                }
            }

            /// Builds the backend; `poller` matters only to `select`.
            pub fn build(self, poller: Poller) -> Box<dyn Backend> {
                match self {
                    $(BackendName::$variant => {
                        let $poller = poller;
                        Box::new($build)
                    })*
                }
            }
        }
    };
}

for_each_backend!(registry! {});

/// The uring backend's design for a `--poller` value: `poll` forces the
/// basic ring (single-shot operations, a read buffer per connection), the
/// fallback it uses by itself on a kernel without the newer features, so
/// that the tests, `serve --poller poll` and `compare`'s `uring-basic` row
/// exercise it on any kernel. Riding on the poller keeps one variant knob
/// for every test suite, which all expand per `Poller`.
pub fn uring_design(poller: Poller) -> backend_uring::Design {
    match poller {
        Poller::Select => backend_uring::Design::Full,
        Poller::Poll => backend_uring::Design::Basic,
    }
}

impl BackendName {
    /// The backend called `name` on the command line.
    pub fn from_name(name: &str) -> Option<BackendName> {
        BackendName::ALL.iter().copied().find(|b| b.as_str() == name)
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

    #[test]
    fn registry_names_match_backend_names() {
        for name in BackendName::ALL {
            for poller in Poller::ALL {
                assert_eq!(name.build(poller).name(), name.as_str());
            }
            assert_eq!(BackendName::from_name(name.as_str()), Some(name));
            assert!(name.log_target().starts_with("backend_"), "{name}: {}", name.log_target());
            assert_eq!(name.describe().krate, name.log_target());
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = BackendName::ALL.iter().map(|b| b.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BackendName::ALL.len());
    }

    mod expansion {
        /// Collects the variants each backend's module expanded.
        macro_rules! variant {
            ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
                #[test]
                fn $variant() {
                    let backend: crate::backends::BackendName = $backend;
                    let threads: usize = $threads;
                    assert!(threads == 1 || backend.has_threads(), "{backend} runs at {threads} threads");
                    assert_eq!(backend.build($poller).name(), backend.as_str());
                }
            };
        }
        every_backend!(variant);

        mod one_thread {
            macro_rules! one_thread_variant {
                ($variant:ident, $backend:expr, $poller:expr, $threads:expr) => {
                    #[test]
                    fn $variant() {
                        assert_eq!($threads, 1, "{} expanded with more threads", $backend);
                    }
                };
            }
            every_backend!(one_thread one_thread_variant);
        }
    }
}
