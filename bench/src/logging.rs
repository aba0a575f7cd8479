//! Logging to stderr through `tracing`: quiet by default so benchmarks pay
//! nothing for it; `-v` adds a line per connection, `RUST_LOG` overrides.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber for `verbose` (the count of `-v`).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
