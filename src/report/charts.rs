//! SVG charts of a phase report, drawn with plotters:
//!
//! - `time_<axis>.svg`: median step time (with its interval) against a numeric matrix
//!   axis, one line per workload that varies along it, so a workload and its reference
//!   share a chart; log-log when the axis spans more than a factor of 4.
//! - `check_<id>.svg`: the observed ratio of a paired-ratio check at each of its
//!   points, as bars with their interval, and the threshold as a line.
//!
//! Charts are a pure function of the report (the SVG text is deterministic). Only
//! finite values set an axis (a ratio over a zero time is infinite), and a chart whose
//! axes would have no finite, non-empty range is left out: plotters never finishes
//! laying out the ticks of such an axis.

use plotters::prelude::*;

use crate::report::{PhaseReport, RunReport};
use crate::spec::Mode;
use crate::verdict::{Method, Verdict};

/// A chart: its file name in the phase directory, a title, and the SVG text.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub svg: String,
}

const SIZE: (u32, u32) = (720, 420);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn render(report: &PhaseReport) -> Vec<Chart> {
    let mut charts = Vec::new();
    for axis in numeric_axes(&report.runs) {
        if let Some(chart) = time_chart(report, &axis) {
            charts.push(chart);
        }
    }
    let mut checks: Vec<&str> = Vec::new();
    for verdict in &report.verdicts {
        let paired = verdict.measured.as_ref().is_some_and(|measured| measured.method == Method::PairedRatio);
        if paired && !checks.contains(&verdict.check.as_str()) {
            checks.push(&verdict.check);
        }
    }
    for check in checks {
        let verdicts: Vec<&Verdict> = report.verdicts.iter().filter(|verdict| verdict.check == check).collect();
        if let Some(chart) = check_chart(check, &verdicts) {
            charts.push(chart);
        }
    }
    charts
}

/// Matrix axes with at least two numeric values within one workload.
fn numeric_axes(runs: &[RunReport]) -> Vec<String> {
    let mut axes: Vec<String> = Vec::new();
    for run in runs {
        for (name, value) in &run.coords {
            if !value.is_number() || axes.contains(name) {
                continue;
            }
            let mut values: Vec<f64> = runs
                .iter()
                .filter(|other| other.workload == run.workload)
                .filter_map(|other| other.coords.get(name).and_then(serde_json::Value::as_f64))
                .collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            if values.len() >= 2 {
                axes.push(name.clone());
            }
        }
    }
    axes
}

/// (axis value, median, low, high) points of one workload along `axis`, at fixed
/// other coordinates (the first combination seen).
type Series = (String, Vec<(f64, f64, f64, f64)>);

fn time_chart(report: &PhaseReport, axis: &str) -> Option<Chart> {
    let mut series: Vec<Series> = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for run in &report.runs {
        if !workloads.contains(&run.workload.as_str()) {
            workloads.push(&run.workload);
        }
    }
    for workload in workloads {
        let runs: Vec<&RunReport> = report.runs.iter().filter(|run| run.workload == workload).collect();
        // Other axes split a workload into several lines.
        let mut groups: Vec<(String, Vec<&RunReport>)> = Vec::new();
        for run in runs {
            let Some(_) = run.coords.get(axis).and_then(serde_json::Value::as_f64) else { continue };
            let rest: Vec<String> = run
                .point
                .split(',')
                .filter(|part| !part.is_empty() && !part.starts_with(&format!("{axis}=")))
                .map(str::to_owned)
                .collect();
            let label = if rest.is_empty() { workload.to_owned() } else { format!("{workload} [{}]", rest.join(",")) };
            match groups.iter_mut().find(|(existing, _)| *existing == label) {
                Some((_, members)) => members.push(run),
                None => groups.push((label, vec![run])),
            }
        }
        for (label, members) in groups {
            let mut points: Vec<(f64, f64, f64, f64)> = members
                .iter()
                .filter_map(|run| {
                    let x = run.coords.get(axis)?.as_f64()?;
                    let time = run.summary(Mode::Warm, "time").or_else(|| run.summary(Mode::Cold, "time"))?;
                    // The time axis is logarithmic, so a point needs a positive median;
                    // an interval end it cannot show collapses onto the median.
                    let usable = |value: f64| value.is_finite() && value > 0.0;
                    if !x.is_finite() || !usable(time.median) {
                        return None;
                    }
                    let end = |value: f64| if usable(value) { value } else { time.median };
                    Some((x, time.median, end(time.ci_low), end(time.ci_high)))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if points.len() >= 2 {
                series.push((label, points));
            }
        }
    }
    if series.is_empty() {
        return None;
    }
    let xs = series.iter().flat_map(|(_, points)| points.iter().map(|point| point.0));
    let (x_min, x_max) = bounds(xs)?;
    let ys = series.iter().flat_map(|(_, points)| points.iter().flat_map(|point| [point.2, point.3]));
    let (y_min, y_max) = bounds(ys)?;
    let log_x = x_min > 0.0 && x_max / x_min > 4.0;
    let x_range = if log_x {
        span(x_min * 0.8, x_max * 1.25, true)?
    } else {
        let pad = (x_max - x_min).max(1.0) * 0.05;
        span(x_min - pad, x_max + pad, false)?
    };
    let y_range = span(y_min / 1.5, y_max * 1.5, true)?;
    let title = format!("step time against {axis}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(&title, ("sans-serif", 18)).margin(12).x_label_area_size(40).y_label_area_size(70);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(axis)
                    .y_desc("seconds per step")
                    .y_label_formatter(&|value| crate::stats::format_seconds(*value))
                    .draw()
                    .ok()?;
                for (index, (label, points)) in series.iter().enumerate() {
                    let color = PALETTE[index % PALETTE.len()];
                    chart
                        .draw_series(LineSeries::new(
                            points.iter().map(|point| (point.0, point.1)),
                            color.stroke_width(2),
                        ))
                        .ok()?
                        .label(label.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                    chart
                        .draw_series(points.iter().map(|point| Circle::new((point.0, point.1), 3, color.filled())))
                        .ok()?;
                    chart
                        .draw_series(
                            points
                                .iter()
                                .map(|point| PathElement::new(vec![(point.0, point.2), (point.0, point.3)], color)),
                        )
                        .ok()?;
                }
                chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().ok()?;
            }};
        }
        match log_x {
            true => draw!(builder.build_cartesian_2d(x_range.log_scale(), y_range.log_scale()).ok()?),
            false => draw!(builder.build_cartesian_2d(x_range, y_range.log_scale()).ok()?),
        }
        root.present().ok()?;
    }
    Some(Chart { file: format!("time_{axis}.svg"), title, svg })
}

fn check_chart(check: &str, verdicts: &[&Verdict]) -> Option<Chart> {
    let bars: Vec<(String, f64, f64, f64, f64)> = verdicts
        .iter()
        .filter_map(|verdict| {
            let measured = verdict.measured.as_ref()?;
            let (low, high) = measured.interval.unwrap_or((measured.observed, measured.observed));
            let label = if verdict.point.is_empty() { check.to_owned() } else { verdict.point.clone() };
            Some((label, measured.observed, low, high, measured.threshold))
        })
        .collect();
    if !bars.iter().any(|bar| bar.1.is_finite()) {
        return None;
    }
    let threshold = bars[0].4;
    let (_, highest) = bounds(bars.iter().flat_map(|bar| [bar.1, bar.2, bar.3, bar.4]))?;
    let top = span(0.0, if highest > 0.0 { highest * 1.2 } else { 1.0 }, false)?.end;
    // Infinite ends are drawn to the top of the chart; a NaN is not drawn.
    let clamp = |value: f64| (!value.is_nan()).then(|| value.clamp(0.0, top));
    let title =
        format!("{check}: paired ratio per point (line: threshold {})", crate::verdict::format_number(threshold));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let count = bars.len();
        let labels: Vec<String> = bars.iter().map(|bar| bar.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(count as f64 - 0.5), 0.0f64..top)
            .ok()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(count)
            .x_label_formatter(&|value| {
                let index = value.round();
                if (value - index).abs() < 1e-6 && index >= 0.0 {
                    labels.get(index as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("ratio")
            .draw()
            .ok()?;
        let color = PALETTE[0];
        for (index, bar) in bars.iter().enumerate() {
            let x = index as f64;
            let fill = if bar.2 >= bar.4 || bar.3 <= bar.4 { color.mix(0.7) } else { PALETTE[1].mix(0.7) };
            if let Some(height) = clamp(bar.1) {
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x - 0.3, 0.0), (x + 0.3, height)], fill.filled())))
                    .ok()?;
            }
            if let (Some(low), Some(high)) = (clamp(bar.2), clamp(bar.3)) {
                chart
                    .draw_series(std::iter::once(PathElement::new(vec![(x, low), (x, high)], BLACK.stroke_width(2))))
                    .ok()?;
            }
        }
        if let Some(level) = clamp(threshold) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(-0.5, level), (count as f64 - 0.5, level)],
                    PALETTE[3].stroke_width(2),
                )))
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(Chart { file: format!("check_{check}.svg"), title, svg })
}

/// The smallest and largest finite values; `None` when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for value in values.filter(|value| value.is_finite()) {
        low = low.min(value);
        high = high.max(value);
    }
    low.is_finite().then_some((low, high))
}

/// `low..high` as an axis range, widened around a single value; `None` when it is not
/// finite (or, for a logarithmic axis, not positive).
fn span(low: f64, high: f64, logarithmic: bool) -> Option<std::ops::Range<f64>> {
    let (low, high) = if low == high {
        let pad = if low == 0.0 { 1.0 } else { 0.1 * low.abs() };
        (low - pad, high + pad)
    } else {
        (low, high)
    };
    let usable = low.is_finite() && high.is_finite() && low < high && (!logarithmic || low > 0.0);
    usable.then_some(low..high)
}
