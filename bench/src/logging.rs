//! Logging to stderr through `tracing`: quiet by default so benchmarks pay
//! nothing for it; `-v` adds a line per connection, `RUST_LOG` overrides.

use tracing_subscriber::EnvFilter;

use crate::backends::BackendName;

/// Installs the subscriber for `verbose` (the count of `-v`).
pub fn init(verbose: u8) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(verbose)));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// The filter used when `RUST_LOG` is not set.
fn default_filter(verbose: u8) -> String {
    match verbose {
        0 => "warn".to_owned(),
        // `-v` is for this project's own lines (one per connection opened
        // and closed); the engines' internal debug logs would drown them,
        // so they come only with `-vv`.
        1 => {
            let ours = ["echo_core", "echo_bench"]
                .into_iter()
                .chain(BackendName::ALL.iter().map(|b| b.log_target()));
            std::iter::once("warn".to_owned())
                .chain(ours.map(|target| format!("{target}=debug")))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => "trace".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_v_turns_every_backend_to_debug() {
        let filter = default_filter(1);
        for backend in BackendName::ALL {
            assert!(filter.contains(&format!("{}=debug", backend.log_target())), "{filter}");
        }
        EnvFilter::try_new(&filter).expect("a valid filter");
    }
}
