//! `echo-bench soak`: many connections for a long time, every byte
//! verified, with the server's descriptors and memory printed as it goes,
//! then the drift between the start and the end.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::child::ServerProcess;
use crate::cli::SoakArgs;
use crate::load::{self, Checks, LoadConfig, LoadError, Observed};
use crate::procfs;

/// Runs a soak; returns whether it was clean: no mismatch, no connection
/// error, and every server descriptor given back once the clients left.
pub fn run(args: &SoakArgs) -> anyhow::Result<bool> {
    let spec = args.server.spec();
    let checks = Checks { grace: args.grace, read_size: spec.read_size, max_line: spec.max_line };
    let config = |addr| LoadConfig {
        duration: args.duration,
        warmup: args.warmup,
        pipeline: args.pipeline,
        rate: args.rate,
        sample_every: Some(args.every),
        ..LoadConfig::new(addr, spec.mode, args.connections, args.size)
    };
    // Checked before the server is started: a bad option costs nothing.
    load::validate(&config(([127, 0, 0, 1], 0).into()), &checks)?;
    let exe = std::env::current_exe().context("cannot find the echo-bench executable")?;
    let server = ServerProcess::start(&exe, &spec.serve_args())?;
    let fds_before = procfs::fd_count(server.pid())?;
    println!(
        "soak: backend {} ({} connections, {} B messages, pipeline {}) for {}",
        spec.label(),
        args.connections,
        args.size,
        args.pipeline,
        humantime::format_duration(args.duration)
    );
    let outcome = load::run_checked(&config(server.addr()), &checks, Some(&server as &dyn Observed));

    // The clients are gone: every descriptor they cost must come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after = procfs::fd_count(server.pid())?;
    while fds_after > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        fds_after = procfs::fd_count(server.pid())?;
    }
    let status = server.stop(Duration::from_secs(10))?;

    let (report, grace) = match outcome {
        Ok(outcome) => outcome,
        Err(LoadError::Mismatch { connection, mismatch }) => {
            eprintln!("echo-bench: soak FAILED: connection {connection}: {mismatch}");
            return Ok(false);
        }
        Err(LoadError::Other(err)) => return Err(err),
    };
    print!("{report}{grace}");
    let warm = args.warmup.as_secs_f64();
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
