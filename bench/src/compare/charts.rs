//! SVG charts of a comparison, one line per backend against the load
//! parameter the workload varies.
//!
//! plotters is built without its font features: the SVG backend writes text
//! as `<text>` elements for the viewer to render, so no system font is read
//! and the charts look the same wherever they are made.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::matrix::Cell;
use super::stats::Spread;
use super::summary::CellSummary;
use super::workload::{Axis, Figure, Workload};

const SIZE: (u32, u32) = (960, 540);
const LEGEND_WIDTH: u32 = 200;
const FONT: &str = "sans-serif";

/// Colour-blind-friendly colours (Okabe–Ito), one per series.
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// One line of a chart: a backend (with the load parameters that vary
/// besides the x axis's), and its median and min–max at each x value.
#[derive(Debug)]
struct Series {
    label: String,
    points: Vec<(f64, Spread)>,
}

/// Writes the charts of `workload` into `dir` (see [`Workload::charts`]):
/// each a figure against connections, message size or pipeline depth on a
/// log axis, one line per backend. Returns the paths written.
pub fn write_all(dir: &Path, workload: Workload, summaries: &[CellSummary]) -> anyhow::Result<Vec<PathBuf>> {
    let note = "median; bars: min–max";
    let mut written = Vec::new();
    for chart in workload.charts() {
        let x = chart.x;
        let xs: Vec<f64> = {
            let mut v: Vec<f64> = summaries.iter().map(|s| x_of(x, &s.cell) as f64).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let x_range = padded_log_range(xs.iter().copied(), 1.5);
        let figure = chart.figure;
        let lines = series(summaries, x, |s| figure.of(s));
        let title = format!("{} ({note})", figure.header());
        let svg = if figure == Figure::P99 {
            let range = padded_log_range(
                lines.iter().flat_map(|s| s.points.iter().flat_map(|(_, p)| [p.min, p.max])),
                1.5,
            );
            let ticks = log_ticks(&range);
            render(
                &title,
                figure.header(),
                x,
                &lines,
                &xs,
                x_range,
                range.log_scale().with_key_points(ticks),
            )?
        } else {
            render(&title, figure.header(), x, &lines, &xs, x_range, 0.0..top(&lines))?
        };
        let path = dir.join(chart.file);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The load parameter `axis` names, in `cell`.
fn x_of(axis: Axis, cell: &Cell) -> usize {
    match axis {
        Axis::Connections => cell.connections,
        Axis::Size => cell.size,
        Axis::Pipeline => cell.pipeline,
    }
}

/// The x axis's label.
fn x_desc(axis: Axis) -> &'static str {
    match axis {
        Axis::Connections => "connections",
        Axis::Size => "message size (bytes)",
        Axis::Pipeline => "pipeline depth",
    }
}

/// A load parameter of a cell, read for a line's label.
type Param = fn(&Cell) -> usize;

/// Groups the cells into lines: one per backend and combination of the
/// load parameters other than the x axis's.
fn series(
    summaries: &[CellSummary],
    x: Axis,
    figure: impl Fn(&CellSummary) -> Option<Spread>,
) -> Vec<Series> {
    let varies = |f: fn(&Cell) -> usize| summaries.iter().any(|s| f(&s.cell) != f(&summaries[0].cell));
    let mut labelled: Vec<(&str, Param, &str)> = Vec::new();
    if x != Axis::Connections && varies(|c| c.connections) {
        labelled.push(("", |c| c.connections, " conn"));
    }
    if x != Axis::Size && varies(|c| c.size) {
        labelled.push(("", |c| c.size, " B"));
    }
    if varies(|c| c.threads) {
        labelled.push(("", |c| c.threads, " thr"));
    }
    if x != Axis::Pipeline && varies(|c| c.pipeline) {
        labelled.push(("pipeline ", |c| c.pipeline, ""));
    }

    let mut lines: Vec<((String, Vec<usize>), Series)> = Vec::new();
    for s in summaries {
        let c = s.cell;
        let key = (c.backend.to_string(), labelled.iter().map(|(_, f, _)| f(&c)).collect::<Vec<_>>());
        let index = match lines.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let mut label = key.0.clone();
                for ((before, _, after), value) in labelled.iter().zip(&key.1) {
                    label.push_str(&format!(", {before}{value}{after}"));
                }
                lines.push((key, Series { label, points: Vec::new() }));
                lines.len() - 1
            }
        };
        if let Some(spread) = figure(s) {
            lines[index].1.points.push((x_of(x, &c) as f64, spread));
        }
    }
    let mut lines: Vec<Series> = lines.into_iter().map(|(_, s)| s).collect();
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// Draws one chart and returns the SVG text.
fn render<Y>(
    title: &str,
    y_desc: &str,
    x: Axis,
    series: &[Series],
    xs: &[f64],
    x_range: Range<f64>,
    y_spec: Y,
) -> anyhow::Result<String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_range.log_scale().with_key_points(xs.to_vec()), y_spec)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc(x))
            .y_desc(y_desc)
            .x_label_formatter(&|x| axis_label(*x))
            .y_label_formatter(&|y| axis_label(*y))
            .max_light_lines(1)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(plot_error)?;

        // Lines that share an x value are nudged apart a little
        // (on the log axis, a constant factor) so their bars don't overlap.
        let count = series.len() as f64;
        for (i, line) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let nudge = 1.04_f64.powf(i as f64 - (count - 1.0) / 2.0);
            let at = |x: f64| x * nudge;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().map(|(x, s)| (at(*x), s.median)),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?;
            chart
                .draw_series(
                    line.points.iter().map(|(x, s)| Circle::new((at(*x), s.median), 4, color.filled())),
                )
                .map_err(plot_error)?;
            chart
                .draw_series(line.points.iter().map(|(x, s)| {
                    PathElement::new(vec![(at(*x), s.min), (at(*x), s.max)], color.stroke_width(1))
                }))
                .map_err(plot_error)?;
            let y = 60 + 26 * i as i32;
            legend
                .draw(&PathElement::new(vec![(8, y), (36, y)], color.stroke_width(3)))
                .map_err(plot_error)?;
            legend.draw(&Circle::new((22, y), 4, color.filled())).map_err(plot_error)?;
            let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            legend.draw(&Text::new(line.label.clone(), (44, y), style)).map_err(plot_error)?;
        }
        if series.iter().all(|s| s.points.is_empty()) {
            let style = TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            let (w, h) = plot.dim_in_pixel();
            plot.draw(&Text::new("no data", (w as i32 / 2, h as i32 / 2), style)).map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(err: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw a chart: {err}")
}

/// A range around the positive `values`, `factor` wider on each side, for
/// a log axis; a default range when there are none.
fn padded_log_range(values: impl Iterator<Item = f64>, factor: f64) -> Range<f64> {
    let (min, max) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min.is_finite() { min / factor..max * factor } else { 1.0..10.0 }
}

/// Ticks for a log axis over `range`: 1, 2 and 5 times each power of ten
/// that falls in it, so that every decade is labelled, the lowest too; every
/// multiple when that gives fewer than three.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let ticks = |steps: &[f64]| {
        let mut ticks = Vec::new();
        let mut decade = 10f64.powf(range.start.log10().floor());
        while decade <= range.end {
            ticks.extend(steps.iter().map(|step| decade * step).filter(|tick| range.contains(tick)));
            decade *= 10.0;
        }
        ticks
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 { coarse } else { ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]) }
}

/// The top of a linear axis from zero: a tenth above the largest value.
fn top(series: &[Series]) -> f64 {
    let max = series.iter().flat_map(|s| s.points.iter().map(|(_, p)| p.max)).fold(0.0_f64, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// Short axis labels: 950, 1k, 1.5k, 12k, 1.5M, 20, 2.5, 0.25.
fn axis_label(v: f64) -> String {
    let scaled = |v: f64, unit: &str| {
        if v.fract() == 0.0 || v.abs() >= 10.0 { format!("{v:.0}{unit}") } else { format!("{v:.1}{unit}") }
    };
    match v.abs() {
        a if a >= 1e6 => scaled(v / 1e6, "M"),
        a if a >= 1e3 => scaled(v / 1e3, "k"),
        a if a >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_label_every_decade_in_range() {
        assert_eq!(log_ticks(&(13.0..1150.0)), [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(log_ticks(&(0.6..6.0)), [1.0, 2.0, 5.0]);
        assert_eq!(log_ticks(&(2.1..4.7)), [3.0, 4.0]);
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(axis_label(0.0), "0");
        assert_eq!(axis_label(0.25), "0.25");
        assert_eq!(axis_label(2.5), "2.5");
        assert_eq!(axis_label(20.0), "20");
        assert_eq!(axis_label(950.0), "950");
        assert_eq!(axis_label(1000.0), "1k");
        assert_eq!(axis_label(1500.0), "1.5k");
        assert_eq!(axis_label(12_345.0), "12k");
        assert_eq!(axis_label(1_500_000.0), "1.5M");
    }
}
