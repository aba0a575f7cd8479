//! The server's own figures over its whole life, written by `echo-bench
//! serve --stats-json FILE` when it exits and read by `echo-bench merge
//! --server-stats FILE`: what a load generator on another machine cannot
//! read from `/proc`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use echo_core::StatsSnapshot;
use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};

use crate::spec::ServerSpec;

/// What `serve --stats-json` writes. Every figure covers the process's
/// whole life, from its start to the end of its drain: nothing is
/// subtracted, so it holds warm-ups, graces, connection set-up and idle
/// time as well as the measured windows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// The backend that served.
    pub backend: String,
    /// The mode it answered in.
    pub mode: String,
    /// Its `--threads`.
    pub threads: usize,
    /// The address it listened on.
    pub addr: String,
    /// When it started serving and when it stopped, seconds since the Unix
    /// epoch by its machine's clock.
    pub started_unix_s: f64,
    /// See `started_unix_s`.
    pub stopped_unix_s: f64,
    /// CPU time of the whole process (every thread, exited ones too) in
    /// user space, seconds (getrusage RUSAGE_SELF, to the microsecond).
    pub cpu_user_s: f64,
    /// CPU time in the kernel, seconds.
    pub cpu_system_s: f64,
    /// Peak resident memory, KiB (ru_maxrss).
    pub peak_rss_kib: u64,
    /// Connections admitted and served.
    pub connections_accepted: u64,
    /// Connections closed at once: over the limit, or a descriptor the
    /// poller cannot watch.
    pub connections_refused: u64,
    /// Connections closed, for any reason.
    pub connections_closed: u64,
    /// Connections that ended with an I/O error.
    pub connection_errors: u64,
    /// `accept` calls that failed.
    pub accept_errors: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
}

impl ServerStats {
    /// The figures of this process, a server of `spec` on `addr` that
    /// started serving at `started` and has stopped with counters `stats`.
    pub fn of_this_process(
        spec: &ServerSpec,
        addr: SocketAddr,
        started: SystemTime,
        stats: &StatsSnapshot,
    ) -> ServerStats {
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let (user, system, peak_rss_kib) = match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(usage) => {
                let secs = |tv: nix::sys::time::TimeVal| {
                    (Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64))
                        .as_secs_f64()
                };
                // Linux gives ru_maxrss in KiB.
                (secs(usage.user_time()), secs(usage.system_time()), usage.max_rss().max(0) as u64)
            }
            Err(err) => {
                tracing::warn!(error = %err, "getrusage failed: the server's CPU time is written as 0");
                (0.0, 0.0, 0)
            }
        };
        let config = spec.config();
        ServerStats {
            backend: spec.backend.as_str().to_owned(),
            mode: config.mode.to_string(),
            threads: config.threads,
            addr: addr.to_string(),
            started_unix_s: unix(started),
            stopped_unix_s: unix(SystemTime::now()),
            cpu_user_s: user,
            cpu_system_s: system,
            peak_rss_kib,
            connections_accepted: stats.accepted,
            connections_refused: stats.refused,
            connections_closed: stats.closed,
            connection_errors: stats.errors,
            accept_errors: stats.accept_errors,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
        }
    }

    /// The CPU time, user and system, seconds.
    pub fn cpu_s(&self) -> f64 {
        self.cpu_user_s + self.cpu_system_s
    }

    /// How long the server served, seconds.
    pub fn lifetime_s(&self) -> f64 {
        (self.stopped_unix_s - self.started_unix_s).max(0.0)
    }

    /// Fails now if [`ServerStats::write`] could not write to `path` at
    /// the end, so that a server does not serve a whole benchmark only to
    /// lose its figures.
    pub fn check_writable(path: &Path) -> anyhow::Result<()> {
        let partial = partial_path(path);
        std::fs::write(&partial, b"")
            .and_then(|()| std::fs::remove_file(&partial))
            .with_context(|| format!("cannot write the server's figures beside {}", path.display()))
    }

    /// Writes the figures to `path`, whole or not at all: to a file beside
    /// it first, then renamed over it, so a reader never sees half.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let partial = partial_path(path);
        std::fs::write(&partial, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::rename(&partial, path)?;
        Ok(())
    }

    /// Reads the figures a server wrote to `path`.
    pub fn read(path: &Path) -> anyhow::Result<ServerStats> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {} (the server writes it when it exits: stop it with SIGINT or SIGTERM first)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not the JSON of `serve --stats-json`", path.display()))
    }
}

/// Where [`ServerStats::write`] writes before renaming: beside `path`.
fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    partial.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_back_whole_and_a_missing_file_says_how_to_get_it() {
        let dir = std::env::temp_dir().join(format!("echo-bench-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.json");
        let spec = ServerSpec::new(crate::backends::BackendName::ALL[0]);
        let stats = ServerStats::of_this_process(
            &spec,
            "127.0.0.1:1".parse().unwrap(),
            SystemTime::now(),
            &StatsSnapshot::default(),
        );
        assert!(stats.cpu_s() > 0.0 && stats.peak_rss_kib > 0, "{stats:?}");
        ServerStats::check_writable(&path).unwrap();
        stats.write(&path).unwrap();
        let back = ServerStats::read(&path).unwrap();
        // JSON numbers come back to within a unit of the last place.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        assert!(
            close(back.cpu_s(), stats.cpu_s()) && close(back.started_unix_s, stats.started_unix_s),
            "{back:?}"
        );
        let floats = |s: &ServerStats| ServerStats {
            cpu_user_s: 0.0,
            cpu_system_s: 0.0,
            started_unix_s: 0.0,
            stopped_unix_s: 0.0,
            ..s.clone()
        };
        assert_eq!(floats(&back), floats(&stats));
        let missing = ServerStats::read(&dir.join("missing.json")).unwrap_err();
        assert!(format!("{missing:#}").contains("stop it with SIGINT or SIGTERM first"), "{missing:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
