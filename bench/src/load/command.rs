//! `echo-bench load` on the command line: start the server if asked, run,
//! print the report.

use std::time::Duration;

use anyhow::Context;

use super::{LoadConfig, LoadError, Observed};
use crate::child::ServerProcess;
use crate::cli::LoadArgs;

/// Runs `echo-bench load`; returns whether the run was valid (no mismatch,
/// no error).
pub fn run(args: &LoadArgs) -> anyhow::Result<bool> {
    let pin = super::pinning(args.pin, args.spin);
    let server = match args.addr {
        Some(_) => None,
        None => {
            let mut serve_args = args.server.to_args();
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
    let config = LoadConfig {
        addr,
        mode: args.server.mode.into(),
        connections: args.connections,
        size: args.size,
        duration: args.duration,
        warmup: args.warmup,
        pipeline: args.pipeline,
        rate: args.rate,
        client_threads: args.client_threads,
        client_cpu: pin.then_some(0),
        spin: args.spin,
        progress: !args.json,
        sample_every: None,
    };
    let outcome = super::run(&config, server.as_ref().map(|s| s as &dyn Observed));
    if let Some(server) = server {
        let status = server.stop(Duration::from_secs(10))?;
        if !status.success() {
            tracing::warn!(%status, "the server exited abnormally");
        }
    }
    match outcome {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            if report.errors.total() > 0 {
                eprintln!("echo-bench: load saw {} connection errors", report.errors.total());
            }
            Ok(report.errors.total() == 0)
        }
        Err(LoadError::Mismatch { connection, mismatch }) => {
            eprintln!("echo-bench: load FAILED, no figures reported: the server sent a wrong reply");
            eprintln!("  connection {connection}: {mismatch}");
            Ok(false)
        }
        Err(LoadError::Other(err)) => Err(err),
    }
}
