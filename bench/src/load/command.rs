//! `echo-bench load` on the command line: start the server if asked, run,
//! print the report.

use std::time::Duration;

use anyhow::Context;

use super::{Checks, LoadConfig, LoadError, Observed};
use crate::child::ServerProcess;
use crate::spec::ServerSpec;

/// One `echo-bench load` as the command line asks for it, in domain terms.
#[derive(Clone, Debug)]
pub struct Job {
    /// The server to load: one listening there, or, with `None`, `spec`
    /// started as a child process (whose CPU time and memory are reported).
    pub addr: Option<std::net::SocketAddr>,
    /// The server to start without `addr`, and the mode, read size and
    /// line length its replies are checked against either way.
    pub spec: ServerSpec,
    /// The run; its `addr` is filled in once the server is known, and
    /// `client_cpu` when `pin` can be honoured.
    pub config: LoadConfig,
    /// The grace after the window.
    pub grace: Duration,
    /// Close each connection after this many round trips and open another.
    pub churn: Option<u64>,
    /// Server on CPU 1, client on CPU 0.
    pub pin: bool,
    /// One JSON object instead of the text report.
    pub json: bool,
}

/// Runs `echo-bench load`; returns whether the run was valid (every reply
/// byte verified, every connection held to the end).
///
/// A failed run prints one `echo-bench: load FAILED` line on stderr saying
/// why, then where, and nothing on stdout: no figure of a void run is ever
/// presented, not even with `--json`.
pub fn run(job: &Job) -> anyhow::Result<bool> {
    let pin = super::pinning(job.pin, job.config.spin);
    let spec = &job.spec;
    let checks = Checks { grace: job.grace, read_size: spec.read_size, max_line: spec.max_line };
    let config = |addr| LoadConfig { addr, client_cpu: pin.then_some(0), ..job.config.clone() };
    // Checked before a server is started: a bad option costs nothing.
    super::validate(&config(job.addr.unwrap_or(([127, 0, 0, 1], 0).into())), &checks)?;
    let server = match job.addr {
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
    let addr = match (&job.addr, &server) {
        (Some(addr), _) => *addr,
        (None, Some(server)) => server.addr(),
        (None, None) => unreachable!("a server is started when no address is given"),
    };
    let outcome =
        super::run_measured(&config(addr), &checks, job.churn, server.as_ref().map(|s| s as &dyn Observed));
    if let Some(server) = server {
        let status = server.stop(Duration::from_secs(10))?;
        if !status.success() {
            tracing::warn!(%status, "the server exited abnormally");
        }
    }
    match outcome {
        Ok(measured) => {
            if job.json {
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
