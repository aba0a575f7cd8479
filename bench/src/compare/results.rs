//! results.json: every run, every failure, the medians and the machine.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::env::Environment;
use super::matrix::{Cell, Settings};
use super::summary::CellSummary;
use crate::load::{ChurnFigures, Report};

/// One successful run: its cell, which repeat it was, and its full report.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The cell it belongs to.
    #[serde(flatten)]
    pub cell: Cell,
    /// Which repeat, from 0; runs made again after a disturbed one carry
    /// on from the last.
    pub repeat: usize,
    /// Everything the load measured.
    pub report: Report,
    /// With `--churn`, its figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnFigures>,
    /// Whether other load on the machine disturbed it (see
    /// [`super::noise`]): then it is left out of the figures.
    pub disturbed: bool,
}

/// One failed run: a wrong reply, a server that did not start or that
/// exited badly, connection errors. Its figures are counted nowhere.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The cell it belongs to.
    #[serde(flatten)]
    pub cell: Cell,
    /// Which repeat, from 0.
    pub repeat: usize,
    /// What went wrong, with its causes.
    pub error: String,
}

/// Everything one comparison found, as written to results.json.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The machine, the build, the date and the command line.
    pub env: Environment,
    /// What every run shared.
    pub settings: Settings,
    /// Each cell's median and min–max, in the order of the table.
    pub medians: Vec<CellSummary>,
    /// Every successful run, in the order they ran, disturbed ones too.
    pub runs: Vec<Run>,
    /// Every failed run, in the order they ran.
    pub failures: Vec<Failure>,
}

impl Results {
    /// Writes the results, pretty-printed, to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("cannot serialise the results")?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
    }
}
