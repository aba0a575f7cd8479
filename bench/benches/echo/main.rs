//! `cargo bench`: the backends side by side under criterion.
//!
//! One group per workload, one benchmark per backend in each
//! (`BenchmarkId::new(backend, parameter)`), so criterion's report compares
//! backends directly:
//!
//! - `round_trip`: one message and its reply on one open connection,
//!   64 B and 1000 B;
//! - `round_trip_50_connections`: one round trip on each of 50 open
//!   connections per iteration, the messages all sent before any reply is
//!   read;
//! - `connect`: connect, one 64 B round trip, half-close, wait for the
//!   server's close.
//!
//! Every server is started once, in this process, before anything is
//! timed. Servers and client share this process and the machine's cores:
//! `echo-bench compare` is the tool for CPU cost per round trip; these
//! benchmarks are for latency and for catching regressions.
//!
//! `cargo bench -p echo-bench -- --test` runs each benchmark once, as CI does.

mod client;
mod connect;
mod fan_out;
mod round_trip;
mod servers;

use std::time::Duration;

use criterion::Criterion;

fn main() {
    let servers = servers::start_all();
    // Kept short so the whole of `cargo bench` stays within a few minutes on
    // two cores; command-line options (--measurement-time ...) override.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    round_trip::bench(&mut c, &servers);
    fan_out::bench(&mut c, &servers);
    connect::bench(&mut c, &servers);
    c.final_summary();
    servers::stop_all(servers);
}
