//! `echo-bench soak`: many connections for a long time, every byte
//! verified, with the server's descriptors and memory printed as it goes,
//! then the drift between the start and the end.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::child::ServerProcess;
use crate::load::{self, Checks, LoadConfig, LoadError, Observed};
use crate::procfs;
use crate::spec::ServerSpec;

/// One `echo-bench soak` as the command line asks for it.
#[derive(Clone, Debug)]
pub struct Soak {
    /// The server to start, as a child process.
    pub spec: ServerSpec,
    /// The load; its `addr` is filled in once the server listens. Its
    /// `sample_every` is how often a status line is printed.
    pub config: LoadConfig,
    /// The grace after the soak.
    pub grace: Duration,
}

/// Runs a soak; returns whether it was clean: no mismatch, no connection
/// error, and every server descriptor given back once the clients left.
pub fn run(soak: &Soak) -> anyhow::Result<bool> {
    let spec = &soak.spec;
    let checks = Checks { grace: soak.grace, read_size: spec.read_size, max_line: spec.max_line };
    let config = |addr| LoadConfig { addr, ..soak.config.clone() };
    // Checked before the server is started: a bad option costs nothing.
    load::validate(&config(([127, 0, 0, 1], 0).into()), &checks)?;
    let exe = std::env::current_exe().context("cannot find the echo-bench executable")?;
    let server = ServerProcess::start(&exe, &spec.serve_args())?;
    let fds_before = procfs::fd_count(server.pid())?;
    println!(
        "soak: backend {} ({} connections, {} B messages, pipeline {}) for {}",
        spec.label(),
        soak.config.connections,
        soak.config.size,
        soak.config.pipeline,
        humantime::format_duration(soak.config.duration)
    );
    let outcome = load::run_measured(&config(server.addr()), &checks, None, Some(&server as &dyn Observed));

    // The clients are gone: every descriptor they cost must come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after = procfs::fd_count(server.pid())?;
    while fds_after > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        fds_after = procfs::fd_count(server.pid())?;
    }
    let status = server.stop(Duration::from_secs(10))?;

    let (report, grace) = match outcome {
        Ok(measured) => (measured.report, measured.grace),
        Err(LoadError::Mismatch { connection, mismatch }) => {
            eprintln!("echo-bench: soak FAILED: connection {connection}: {mismatch}");
            return Ok(false);
        }
        Err(LoadError::Other(err)) => return Err(err),
    };
    print!("{report}{grace}");
    let warm = soak.config.warmup.as_secs_f64();
    let first = report.samples.iter().find(|s| s.elapsed_s >= warm).or(report.samples.first());
    let last = report.samples.last();
    if let (Some(first), Some(last)) = (first, last) {
        let fds = |s: &load::Sample| s.server_fds.unwrap_or(0) as i64;
        let rss = |s: &load::Sample| s.server_rss_kib.unwrap_or(0) as i64;
        println!(
            "  drift           descriptors {:+} ({} -> {}), RSS {:+} KiB ({} -> {} KiB) from {:.0} s to {:.0} s",
            fds(last) - fds(first),
            fds(first),
            fds(last),
            rss(last) - rss(first),
            rss(first),
            rss(last),
            first.elapsed_s,
            last.elapsed_s
        );
    }
    let leaked = fds_after.saturating_sub(fds_before);
    println!(
        "  descriptors leaked: {leaked} (server had {fds_before} before the clients, {fds_after} after)"
    );
    if !status.success() {
        eprintln!("echo-bench: the server exited with {status}");
    }
    Ok(report.errors.total() == 0 && leaked == 0 && status.success())
}
