//! Logging to stderr through `tracing`: quiet by default so benchmarks pay
//! nothing for it; `-v` adds a line per connection, `RUST_LOG` overrides.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber for `verbose` (the count of `-v`).
pub fn init(verbose: u8) {
    // `-v` is for this project's own lines (one per connection opened and
    // closed); the engines' internal debug logs would drown them, so they
    // come only with `-vv`.
    let default = match verbose {
        0 => "warn",
        1 => {
            "warn,echo_core=debug,echo_bench=debug,backend_select=debug,backend_mio=debug,\
              backend_tokio=debug,backend_async_std=debug,backend_threads=debug,backend_smol=debug,\
              backend_uring=debug"
        }
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
