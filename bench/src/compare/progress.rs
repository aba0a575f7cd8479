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
    /// Runs finished so far.
    done: std::cell::Cell<usize>,
    /// Runs planned so far: reruns add to it.
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
            "compare: {total} runs ({} cells × {} repeats), about {}, and up to {} more in place of \
             runs that other load on the machine disturbs",
            total / settings.repeat.max(1),
            settings.repeat,
            humantime::format_duration(Duration::from_secs(estimate.as_secs().max(1))),
            settings.reruns
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
        Progress { bar, done: std::cell::Cell::new(0), total, repeat: settings.repeat }
    }

    /// A run of `cell` is starting.
    pub(super) fn start(&self, cell: &Cell) {
        if let Some(bar) = &self.bar {
            bar.set_message(describe(cell));
        }
    }

    /// `more` runs are planned on top of those announced.
    pub(super) fn extend(&mut self, more: usize) {
        self.total += more;
        if let Some(bar) = &self.bar {
            bar.set_length(self.total as u64);
        }
    }

    /// A line of its own between the runs' lines.
    pub(super) fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Repeat `repeat` (from 0) of `cell` ended with `outcome`.
    pub(super) fn finish(&self, repeat: usize, cell: &Cell, outcome: Result<&Report, &anyhow::Error>) {
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
        self.done.set(self.done.get() + 1);
        let width = self.total.to_string().len();
        let which = match repeat < self.repeat {
            true => format!("run {}/{}", repeat + 1, self.repeat),
            false => format!("run {} (again)", repeat + 1),
        };
        let line =
            format!("[{:>width$}/{}] {}, {which}: {what}", self.done.get(), self.total, describe(cell));
        self.note(&line);
        if let Some(bar) = &self.bar {
            bar.inc(1);
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
