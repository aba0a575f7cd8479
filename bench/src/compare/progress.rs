//! What `echo-bench compare` says on stderr while it runs: a line per run,
//! under a progress bar when stderr is a terminal.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::matrix::{Cell, Settings};
use crate::load::Report;

/// Progress over all the runs of one comparison.
#[derive(Debug)]
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    repeat: usize,
}

impl Progress {
    /// Announces `total` runs and how long they should take.
    pub(super) fn new(settings: &Settings, total: usize) -> Progress {
        let estimate = settings
            .run_estimate()
            .checked_mul(u32::try_from(total).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX);
        eprintln!(
            "compare: {total} runs ({} cells × {} repeats), about {}",
            total / settings.repeat.max(1),
            settings.repeat,
            humantime::format_duration(Duration::from_secs(estimate.as_secs().max(1)))
        );
        let bar = io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} runs, ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, total, repeat: settings.repeat }
    }

    /// A run of `cell` is starting.
    pub(super) fn start(&self, cell: &Cell) {
        if let Some(bar) = &self.bar {
            bar.set_message(describe(cell));
        }
    }

    /// Run number `index` (from 0), repeat `repeat` of `cell`, ended with
    /// `outcome`.
    pub(super) fn finish(
        &self,
        index: usize,
        repeat: usize,
        cell: &Cell,
        outcome: Result<&Report, &anyhow::Error>,
    ) {
        let what = match outcome {
            Ok(r) => {
                let server = r
                    .server
                    .as_ref()
                    .map(|s| format!(", server {:.2} µs/rt", s.cpu_us_per_round_trip))
                    .unwrap_or_default();
                let saturated = if r.client_saturated { " (client saturated)" } else { "" };
                format!("{:.0} rt/s, p99 {:.1} µs{server}{saturated}", r.round_trips_per_s, r.latency_us.p99)
            }
            Err(err) => format!("FAILED: {err:#}"),
        };
        let width = self.total.to_string().len();
        let line = format!(
            "[{:>width$}/{}] {}, run {}/{}: {what}",
            index + 1,
            self.total,
            describe(cell),
            repeat + 1,
            self.repeat
        );
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Every run is done: the bar goes away.
    pub(super) fn done(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `mio, 50 conns, 64 B, 1 thread, pipeline 1`
pub(super) fn describe(cell: &Cell) -> String {
    format!(
        "{}, {} conns, {} B, {} thread{}, pipeline {}",
        cell.backend,
        cell.connections,
        cell.size,
        cell.threads,
        if cell.threads == 1 { "" } else { "s" },
        cell.pipeline
    )
}
