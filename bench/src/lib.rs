//! The `echo-bench` command: serve any backend, check any server against
//! the conformance suite, load it with verified round trips (`load`, `soak`),
//! compare every backend side by side (`compare`), and list the backends.
//!
//! The binary is a thin shell over this library so that the tests drive the
//! same code a user runs.
//!
//! ```no_run
//! use echo_bench::backends::BackendName;
//! use echo_bench::spec::ServerSpec;
//!
//! let spec = ServerSpec::new(BackendName::Mio).with_threads(2);
//! let server = spec.build().spawn(echo_core::bind("127.0.0.1:0".parse()?)?, &spec.config())?;
//! println!("serving on {}", server.local_addr());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod backends;
pub mod check;
pub mod child;
pub mod cli;
pub mod compare;
pub mod list;
pub mod load;
pub mod logging;
pub mod merge;
pub mod procfs;
pub mod serve;
pub mod soak;
pub mod spec;
