//! `echo-bench load` on the command line: start the server if asked, run,
//! print the report.

use std::time::Duration;

use anyhow::Context;

use super::{Checks, LoadConfig, LoadError, Observed};
use crate::child::ServerProcess;
use crate::cli::LoadArgs;

/// Runs `echo-bench load`; returns whether the run was valid (every reply
/// byte verified, every connection held to the end).
///
/// A failed run prints one `echo-bench: load FAILED` line on stderr saying
/// why, then where, and nothing on stdout: no figure of a void run is ever
/// presented, not even with `--json`.
pub fn run(args: &LoadArgs) -> anyhow::Result<bool> {
    let pin = super::pinning(args.pin, args.spin);
    let spec = args.server.spec();
    let checks = Checks { grace: args.grace, read_size: spec.read_size, max_line: spec.max_line };
    // Checked before a server is started: a bad option costs nothing.
    super::validate(&config(args, args.addr.unwrap_or(([127, 0, 0, 1], 0).into()), pin), &checks)?;
    let server = match args.addr {
        Some(_) => None,
        None => {
            let mut serve_args = spec.serve_args();
            if pin {
                serve_args.extend(["--cpu".to_owned(), "1".to_owned()]);
            }
            let exe = std::env::current_exe().context("cannot find the echo-bench executable")?;
            Some(ServerProcess::start(&exe, &serve_args)?)
        }
    };
    let addr = match (&args.addr, &server) {
        (Some(addr), _) => *addr,
        (None, Some(server)) => server.addr(),
        (None, None) => unreachable!("a server is started when no address is given"),
    };
    let config = config(args, addr, pin);
    let outcome =
        super::run_measured(&config, &checks, args.churn, server.as_ref().map(|s| s as &dyn Observed));
    if let Some(server) = server {
        let status = server.stop(Duration::from_secs(10))?;
        if !status.success() {
            tracing::warn!(%status, "the server exited abnormally");
        }
    }
    match outcome {
        Ok(measured) => {
            if args.json {
                println!("{}", measured.to_json()?);
            } else {
                print!("{measured}");
            }
            Ok(true)
        }
        Err(LoadError::Mismatch { connection, mismatch }) => {
            eprintln!(
                "echo-bench: load FAILED, no figures reported: the replies of connection {connection} were not what the server owed"
            );
            eprintln!("  connection {connection}: {mismatch}");
            Ok(false)
        }
        Err(LoadError::Other(err)) => Err(err),
    }
}

/// The run `args` ask for, against `addr`.
fn config(args: &LoadArgs, addr: std::net::SocketAddr, pin: bool) -> LoadConfig {
    LoadConfig {
        duration: args.duration,
        warmup: args.warmup,
        pipeline: args.pipeline,
        rate: args.rate,
        client_threads: args.client_threads,
        client_cpu: pin.then_some(0),
        spin: args.spin,
        progress: !args.json,
        ..LoadConfig::new(addr, args.server.mode.into(), args.connections, args.size)
    }
}
