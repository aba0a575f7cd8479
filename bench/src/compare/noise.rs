//! Telling a run disturbed by other load on the machine from a clean one.
//!
//! Noise on a shared machine comes in episodes: for a few seconds or a few
//! minutes, something else (another process, or another guest on the same
//! host) slows every process down, and a server's CPU time per round trip
//! goes up by as much as a third. Interleaving the backends spreads an
//! episode over all of them, but an episode that covers several repeats of
//! a cell still moves its median.
//!
//! Noise only ever adds CPU time: nothing else on the machine makes a round
//! trip cheaper. So among a cell's runs the cheapest is the least disturbed,
//! and a run that cost clearly more than it was disturbed. A run's cost here
//! is the server's plus the client's CPU time per round trip: an episode on
//! either CPU shows, and the client, the same program in every run, acts as
//! a thermometer for the CPU it runs on. A disturbed run is kept in
//! results.json but left out of the figures, and its cell runs again.
//!
//! The one exception to "cheapest is cleanest": a server reading far under
//! the rest of its cell is not a quieter run but a failed reading (once, of
//! a thread per connection at 500 connections: 3 ms of CPU read over 2 s of
//! 46,000 round trips a second). Taken as the cheapest it would mark every
//! other run of its cell disturbed and spend the rerun budget on them; it is
//! set aside as disturbed itself instead (see [`IMPLAUSIBLY_CHEAP`]).

use std::collections::HashMap;

use super::matrix::{Cell, Settings};
use super::results::{Failure, Run};
use super::stats::Spread;
use crate::load::Report;

/// What a run cost: CPU time per round trip, server and client together.
pub fn cost(report: &Report) -> f64 {
    report.client_cpu_us_per_round_trip + report.server.as_ref().map_or(0.0, |s| s.cpu_us_per_round_trip)
}

/// A server's CPU per round trip under this share of its cell's median is
/// a failed reading, not a cleaner run: noise adds a third at most, and a
/// quiet machine does not halve a server's cost.
pub const IMPLAUSIBLY_CHEAP: f64 = 0.5;

/// Marks each run disturbed or not: disturbed when its cost is more than
/// `tolerance` (a fraction) above the cheapest run of its cell, or when its
/// server reading is [implausibly cheap](IMPLAUSIBLY_CHEAP), in which case
/// it is not taken as the cheapest either.
pub fn mark(runs: &mut [Run], tolerance: f64) {
    let medians = server_medians(runs);
    let implausible = |run: &Run| {
        run.report
            .server
            .as_ref()
            .is_some_and(|s| s.cpu_us_per_round_trip < IMPLAUSIBLY_CHEAP * medians[&run.cell])
    };
    let mut cheapest: HashMap<Cell, f64> = HashMap::new();
    for run in runs.iter().filter(|run| !implausible(run)) {
        let best = cheapest.entry(run.cell).or_insert(f64::INFINITY);
        *best = best.min(cost(&run.report));
    }
    for run in runs.iter_mut() {
        let bar = cheapest.get(&run.cell).copied().unwrap_or(f64::INFINITY);
        run.disturbed = implausible(run) || cost(&run.report) > bar * (1.0 + tolerance);
    }
}

/// The median server CPU per round trip of each cell's runs (those with a
/// server reading; 0 for a cell with none).
fn server_medians(runs: &[Run]) -> HashMap<Cell, f64> {
    let mut by_cell: HashMap<Cell, Vec<f64>> = HashMap::new();
    for run in runs {
        let costs = by_cell.entry(run.cell).or_default();
        costs.extend(run.report.server.as_ref().map(|s| s.cpu_us_per_round_trip));
    }
    by_cell.into_iter().map(|(cell, costs)| (cell, Spread::of(costs).map_or(0.0, |s| s.median))).collect()
}

/// How many runs one cell may make again: half its repeats. A cell whose
/// runs keep differing by more than the tolerance is not being disturbed,
/// it varies by itself (a thread per connection at 500 connections does),
/// and chasing a cheaper run for it would spend every other cell's budget.
pub fn reruns_per_cell(settings: &Settings) -> usize {
    settings.repeat.div_ceil(2)
}

/// How many runs of `cell` were made so far, failed ones included: the
/// repeat number of its next run.
pub fn runs_made(cell: Cell, runs: &[Run], failures: &[Failure]) -> usize {
    runs.iter().filter(|r| r.cell == cell).count() + failures.iter().filter(|f| f.cell == cell).count()
}

/// The cells that need another run, in the order of the table (so a rerun
/// pass interleaves the backends too): those with fewer than `repeat`
/// clean runs that have not yet been run again [`reruns_per_cell`] times.
/// Failed runs count as done: a failure is reported, not retried.
pub fn cells_to_rerun(settings: &Settings, runs: &[Run], failures: &[Failure]) -> Vec<Cell> {
    settings
        .cells()
        .into_iter()
        .filter(|cell| {
            if cell.not_possible().is_some() {
                return false;
            }
            let clean = runs.iter().filter(|r| r.cell == *cell && !r.disturbed).count();
            let failed = failures.iter().filter(|f| f.cell == *cell).count();
            clean + failed < settings.repeat
                && runs_made(*cell, runs, failures) < settings.repeat + reruns_per_cell(settings)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::args::parse_for_tests as settings;
    use crate::load::{Errors, Latency, ServerFigures};
    use crate::procfs::CpuTime;

    /// A report of which only the CPU figures matter.
    fn report(server: Option<f64>, client: f64) -> Report {
        Report {
            addr: "127.0.0.1:1".into(),
            mode: "got".into(),
            connections: 50,
            size: 64,
            pipeline: 1,
            rate: None,
            client_threads: 1,
            spin: false,
            duration_s: 1.0,
            round_trips: 1000,
            unanswered: 50,
            round_trips_per_s: 1000.0,
            mb_per_s_out: 0.0,
            mb_per_s_in: 0.0,
            latency_us: Latency::default(),
            slowest_connection: 20,
            fastest_connection: 20,
            errors: Errors::default(),
            client_cpu: CpuTime::default(),
            client_idle_polling_s: 0.0,
            client_cpu_us_per_round_trip: client,
            client_cpu_utilization: 0.5,
            client_polls_per_round_trip: 1.0,
            client_saturated: false,
            server: server.map(|cpu| ServerFigures {
                cpu: CpuTime::default(),
                cpu_us_per_round_trip: cpu,
                cpu_utilization: 0.5,
                peak_rss_kib: None,
            }),
            samples: Vec::new(),
        }
    }

    fn run(cell: Cell, repeat: usize, server: f64, client: f64) -> Run {
        Run { cell, repeat, report: report(Some(server), client), churn: None, disturbed: false }
    }

    #[test]
    fn a_run_costing_more_than_the_tolerance_above_the_cheapest_is_disturbed() {
        let s = settings(&["--backends", "mio", "--connections", "50"]);
        let cell = s.cells()[0];
        // Costs 10.0, 10.4 (+4 %), 10.6 (+6 %: the server's CPU alone),
        // 10.6 (the client's alone), 13.0 (both).
        let costs = [(5.0, 5.0), (5.2, 5.2), (5.6, 5.0), (5.0, 5.6), (6.5, 6.5)];
        let mut runs: Vec<Run> = costs
            .iter()
            .enumerate()
            .map(|(repeat, &(server, client))| run(cell, repeat, server, client))
            .collect();
        mark(&mut runs, 0.05);
        let disturbed: Vec<bool> = runs.iter().map(|r| r.disturbed).collect();
        assert_eq!(disturbed, [false, false, true, true, true]);
        assert_eq!(cells_to_rerun(&s, &runs, &[]), [cell]);
    }

    #[test]
    fn an_implausibly_cheap_reading_is_set_aside_and_sets_no_bar() {
        let s = settings(&["--backends", "threads", "--connections", "500", "--repeat", "3"]);
        let cell = s.cells()[0];
        // Two readings of about 19 µs, and one of 0.03 µs: a failed reading.
        let mut runs = vec![run(cell, 0, 19.0, 14.0), run(cell, 1, 19.4, 14.0), run(cell, 2, 0.03, 14.0)];
        mark(&mut runs, 0.05);
        let disturbed: Vec<bool> = runs.iter().map(|r| r.disturbed).collect();
        assert_eq!(disturbed, [false, false, true], "the failed reading, and only it, is set aside");
        assert_eq!(cells_to_rerun(&s, &runs, &[]), [cell]);
        // Half the median is the line: a run that cheap counts, and is the bar.
        let mut runs = vec![run(cell, 0, 20.0, 10.0), run(cell, 1, 20.0, 10.0), run(cell, 2, 10.0, 10.0)];
        mark(&mut runs, 0.05);
        assert_eq!(runs.iter().map(|r| r.disturbed).collect::<Vec<_>>(), [true, true, false]);
    }

    #[test]
    fn a_cell_is_run_again_at_most_half_its_repeats() {
        let s = settings(&["--backends", "mio", "--connections", "500", "--repeat", "4"]);
        let cell = s.cells()[0];
        // Every run cheaper than the last: each new one leaves the others
        // disturbed, as a cell that varies by itself does.
        let mut runs: Vec<Run> = (0..5).map(|i| run(cell, i, 10.0 - i as f64, 10.0 - i as f64)).collect();
        mark(&mut runs, 0.05);
        assert_eq!(cells_to_rerun(&s, &runs, &[]), [cell], "4 repeats + 1 rerun so far");
        runs.push(run(cell, 5, 4.0, 4.0));
        mark(&mut runs, 0.05);
        assert!(cells_to_rerun(&s, &runs, &[]).is_empty(), "2 reruns: the cap for 4 repeats");
    }

    #[test]
    fn cells_are_compared_only_with_themselves() {
        let s = settings(&["--backends", "select,mio", "--connections", "50", "--repeat", "1"]);
        let (select, mio) = (s.cells()[0], s.cells()[1]);
        let mut runs = vec![run(select, 0, 4.0, 4.0), run(mio, 0, 6.0, 6.0)];
        mark(&mut runs, 0.05);
        assert!(runs.iter().all(|r| !r.disturbed));
        assert!(cells_to_rerun(&s, &runs, &[]).is_empty());
    }

    #[test]
    fn reruns_go_in_table_order_and_failures_are_not_retried() {
        let s = settings(&["--backends", "select,select-poll,mio", "--connections", "50", "--repeat", "2"]);
        let [first, second, third] = [s.cells()[0], s.cells()[1], s.cells()[2]];
        let mut runs = vec![
            run(third, 0, 9.0, 9.0),
            run(third, 1, 4.0, 4.0),
            run(first, 0, 4.0, 4.0),
            run(second, 0, 4.0, 4.0),
            run(first, 1, 4.0, 4.0),
        ];
        let failures = [Failure { cell: second, repeat: 1, error: "reset".into() }];
        mark(&mut runs, 0.05);
        assert_eq!(cells_to_rerun(&s, &runs, &failures), [third]);
        assert_eq!(cells_to_rerun(&s, &runs, &[]), [second, third]);
    }

    #[test]
    fn cost_adds_server_and_client() {
        assert_eq!(cost(&report(Some(3.0), 2.5)), 5.5);
        assert_eq!(cost(&report(None, 2.5)), 2.5);
    }
}
