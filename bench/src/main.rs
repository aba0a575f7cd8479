//! The `echo-bench` binary; see the `echo_bench` library for what it does.

use std::process::ExitCode;

use clap::Parser;
use echo_bench::cli::{Cli, Command};
use echo_bench::{check, compare, list, load, logging, merge, serve, soak};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let result = match &cli.command {
        None => serve::run(&cli.serve.to_serve()).map(|()| true),
        Some(Command::Serve(args)) => serve::run(&args.to_serve()).map(|()| true),
        Some(Command::Check(args)) => check::run(args.addr, &args.server.spec(), args.case.as_deref()),
        Some(Command::Load(args)) => load::command::run(&args.job()),
        Some(Command::Soak(args)) => soak::run(&args.soak()),
        Some(Command::Merge(args)) => merge::run(&args.reports, args.server_stats.as_deref(), args.json),
        Some(Command::Compare(args)) => args
            .settings(load::pinning(args.client.pin, args.client.spin))
            .and_then(|settings| compare::run(&settings, args.out.as_deref())),
        Some(Command::List) => {
            list::run();
            Ok(true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            // One line a user can act on: the error and its causes, joined.
            eprintln!("echo-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
