//! A run's latency plot: every client operation's latency over time, as a
//! self-contained SVG, in the spirit of Jepsen's latency plots. Answered operations are
//! dots (by latency, on a log scale); operations that got no answer (failed, or of
//! unknown outcome) are marks on a band above the plot at their invocation time; the
//! windows in which a fault was in force are shaded and labelled, and leader changes are
//! vertical lines. Nothing here needs a plotting library: a scatter plot is a few
//! hundred lines of SVG text, and the points are one path each, so a run of 100,000
//! operations stays a few megabytes.

use crate::linearizability::{Operation, Outcome};
use std::fmt::Write as _;

/// What came of one operation, as the plot shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotOutcome {
    /// Answered, after this many nanoseconds.
    Ok {
        /// Latency, nanoseconds.
        latency_ns: u64,
    },
    /// Refused or never sent: it did not take effect.
    Failed,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

/// One client operation: when it was invoked (nanoseconds since the run began) and
/// what came of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlotOp {
    /// Invocation time, nanoseconds since the run began.
    pub invoked_ns: u64,
    /// Its outcome.
    pub outcome: PlotOutcome,
}

impl PlotOp {
    /// How the plot shows `operation` (its times in nanoseconds since the run began).
    ///
    /// ```
    /// use ballot_tests::latency_plot::{PlotOp, PlotOutcome};
    /// use ballot_tests::linearizability::Operation;
    /// let op = Operation::ok(0, 1_000, 3_000, "w", ());
    /// assert_eq!(PlotOp::of(&op).outcome, PlotOutcome::Ok { latency_ns: 2_000 });
    /// ```
    pub fn of<O, R>(operation: &Operation<O, R>) -> PlotOp {
        PlotOp {
            invoked_ns: operation.invoked,
            outcome: match operation.outcome {
                Outcome::Ok { completed, .. } => PlotOutcome::Ok {
                    latency_ns: completed.saturating_sub(operation.invoked),
                },
                Outcome::Failed => PlotOutcome::Failed,
                Outcome::Unknown => PlotOutcome::Unknown,
            },
        }
    }
}

/// A window in which a fault was in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// Its name.
    pub label: String,
    /// Start, nanoseconds since the run began.
    pub from_ns: u64,
    /// End (healed), nanoseconds since the run began.
    pub to_ns: u64,
}

/// A node that was seen leading from some moment on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// When it was first seen leading, nanoseconds since the run began.
    pub at_ns: u64,
    /// The new leader.
    pub leader: usize,
}

/// Everything one plot shows.
#[derive(Clone, Debug, Default)]
pub struct LatencyPlot {
    /// The title line.
    pub title: String,
    /// Every operation.
    pub ops: Vec<PlotOp>,
    /// Fault windows.
    pub faults: Vec<FaultWindow>,
    /// Leader changes.
    pub leaders: Vec<LeaderChange>,
}

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Height of the band above the plot for operations without an answer.
const BAND: f64 = 28.0;
/// The latency axis spans 0.1 ms to 10 s; faster or slower answers sit on its edges.
const LATENCY_MIN_MS: f64 = 0.1;
const LATENCY_MAX_MS: f64 = 10_000.0;

impl LatencyPlot {
    /// The plot as an SVG document.
    ///
    /// ```
    /// use ballot_tests::latency_plot::{LatencyPlot, PlotOp, PlotOutcome};
    /// let plot = LatencyPlot {
    ///     title: "one op".into(),
    ///     ops: vec![PlotOp { invoked_ns: 5_000_000, outcome: PlotOutcome::Ok { latency_ns: 2_000_000 } }],
    ///     ..LatencyPlot::default()
    /// };
    /// let svg = plot.to_svg();
    /// assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    /// ```
    pub fn to_svg(&self) -> String {
        let end_ns = self
            .ops
            .iter()
            .map(|op| match op.outcome {
                PlotOutcome::Ok { latency_ns } => op.invoked_ns.saturating_add(latency_ns),
                _ => op.invoked_ns,
            })
            .chain(self.faults.iter().map(|f| f.to_ns))
            .chain(self.leaders.iter().map(|l| l.at_ns))
            .max()
            .unwrap_or(0)
            .max(1_000_000_000);
        let plot_top = TOP + BAND;
        let plot_height = HEIGHT - plot_top - BOTTOM;
        let plot_width = WIDTH - LEFT - RIGHT;
        let x = |ns: u64| LEFT + plot_width * (ns as f64 / end_ns as f64);
        let (log_min, log_max) = (LATENCY_MIN_MS.log10(), LATENCY_MAX_MS.log10());
        let y = |latency_ms: f64| {
            let clamped = latency_ms.clamp(LATENCY_MIN_MS, LATENCY_MAX_MS);
            plot_top + plot_height * (1.0 - (clamped.log10() - log_min) / (log_max - log_min))
        };

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
            escape(&self.title)
        );

        // Fault windows, under everything else.
        for (i, fault) in self.faults.iter().enumerate() {
            let (from, to) = (x(fault.from_ns), x(fault.to_ns.max(fault.from_ns)));
            let _ = writeln!(
                svg,
                r##"<rect x="{from:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f4a261" fill-opacity="0.18"><title>{}</title></rect>"##,
                (to - from).max(1.0),
                HEIGHT - TOP - BOTTOM,
                escape(&fault.label)
            );
            // Labels alternate between two rows so that neighbours do not overlap.
            let row = HEIGHT - BOTTOM + 30.0 + 13.0 * (i % 2) as f64;
            let _ = writeln!(
                svg,
                r##"<text x="{from:.1}" y="{row}" font-size="10" fill="#b5651d">{}</text>"##,
                escape(&fault.label)
            );
        }

        // Axes, grid and labels.
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{plot_top}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#444"/>"##
        );
        let mut decade = LATENCY_MIN_MS;
        while decade <= LATENCY_MAX_MS * 1.0001 {
            let at = y(decade);
            let label = if decade >= 1000.0 {
                format!("{} s", decade / 1000.0)
            } else {
                format!("{decade} ms")
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                LEFT + plot_width,
                LEFT - 6.0,
                at + 4.0
            );
            decade *= 10.0;
        }
        let seconds = end_ns as f64 / 1e9;
        let step = nice_step(seconds);
        let mut tick = 0.0;
        while tick <= seconds + 1e-9 {
            let at = x((tick * 1e9) as u64);
            let _ = writeln!(
                svg,
                r##"<line x1="{at:.1}" x2="{at:.1}" y1="{:.1}" y2="{:.1}" stroke="#444"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{tick} s</text>"##,
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 5.0,
                HEIGHT - BOTTOM + 18.0
            );
            tick += step;
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">no answer</text>"##,
            LEFT - 64.0,
            TOP + BAND / 2.0 + 4.0
        );

        // Leader changes.
        for change in &self.leaders {
            let at = x(change.at_ns);
            let _ = writeln!(
                svg,
                r##"<line x1="{at:.1}" x2="{at:.1}" y1="{TOP}" y2="{:.1}" stroke="#6a4c93" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#6a4c93">leader {}</text>"##,
                HEIGHT - BOTTOM,
                at + 3.0,
                TOP + 10.0,
                change.leader
            );
        }

        // Operations: one path per outcome, a zero-length round-capped segment per point.
        let mut ok = String::new();
        let mut failed = String::new();
        let mut unknown = String::new();
        let (mut n_ok, mut n_failed, mut n_unknown) = (0usize, 0usize, 0usize);
        for op in &self.ops {
            let px = x(op.invoked_ns);
            match op.outcome {
                PlotOutcome::Ok { latency_ns } => {
                    n_ok += 1;
                    let _ = write!(ok, "M{px:.1} {:.1}h0", y(latency_ns as f64 / 1e6));
                }
                PlotOutcome::Failed => {
                    n_failed += 1;
                    let _ = write!(failed, "M{px:.1} {:.1}h0", TOP + BAND * 0.35);
                }
                PlotOutcome::Unknown => {
                    n_unknown += 1;
                    let _ = write!(unknown, "M{px:.1} {:.1}h0", TOP + BAND * 0.7);
                }
            }
        }
        for (path, colour, width) in [
            (&ok, "#2a9d8f", 2.5),
            (&failed, "#e63946", 4.0),
            (&unknown, "#f4a100", 4.0),
        ] {
            if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    r#"<path d="{path}" stroke="{colour}" stroke-width="{width}" stroke-linecap="round" stroke-opacity="0.6" fill="none"/>"#
                );
            }
        }

        // Legend.
        let legend_y = 38.0;
        let mut legend_x = LEFT + 420.0;
        for (colour, label) in [
            ("#2a9d8f", format!("ok ({n_ok})")),
            ("#e63946", format!("failed ({n_failed})")),
            ("#f4a100", format!("unknown ({n_unknown})")),
        ] {
            let _ = writeln!(
                svg,
                r#"<circle cx="{legend_x:.1}" cy="{:.1}" r="4" fill="{colour}"/><text x="{:.1}" y="{legend_y}">{label}</text>"#,
                legend_y - 4.0,
                legend_x + 8.0
            );
            legend_x += 130.0;
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{legend_x:.1}" y="{:.1}" width="12" height="10" fill="#f4a261" fill-opacity="0.4"/><text x="{:.1}" y="{legend_y}">fault</text>"##,
            legend_y - 9.0,
            legend_x + 16.0
        );
        legend_x += 70.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{legend_x:.1}" x2="{legend_x:.1}" y1="{:.1}" y2="{legend_y}" stroke="#6a4c93" stroke-dasharray="4 3"/><text x="{:.1}" y="{legend_y}">leader change</text>"##,
            legend_y - 10.0,
            legend_x + 6.0
        );
        let _ = writeln!(svg, "</svg>");
        svg
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about 12 ticks.
fn nice_step(span: f64) -> f64 {
    let raw = (span / 12.0).max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Text safe inside SVG elements and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot() -> LatencyPlot {
        LatencyPlot {
            title: "run <0> & \"friends\"".into(),
            ops: vec![
                PlotOp {
                    invoked_ns: 1_000_000_000,
                    outcome: PlotOutcome::Ok {
                        latency_ns: 1_000_000,
                    },
                },
                PlotOp {
                    invoked_ns: 2_000_000_000,
                    outcome: PlotOutcome::Ok {
                        latency_ns: 100_000_000,
                    },
                },
                PlotOp {
                    invoked_ns: 3_000_000_000,
                    outcome: PlotOutcome::Unknown,
                },
                PlotOp {
                    invoked_ns: 3_500_000_000,
                    outcome: PlotOutcome::Failed,
                },
            ],
            faults: vec![FaultWindow {
                label: "kill-leader".into(),
                from_ns: 2_500_000_000,
                to_ns: 4_000_000_000,
            }],
            leaders: vec![LeaderChange {
                at_ns: 2_800_000_000,
                leader: 2,
            }],
        }
    }

    #[test]
    fn every_operation_fault_and_leader_change_is_drawn_and_text_is_escaped() {
        let svg = plot().to_svg();
        assert_eq!(svg.matches("h0").count(), 4, "{svg}");
        assert!(
            svg.contains("ok (2)") && svg.contains("failed (1)") && svg.contains("unknown (1)")
        );
        assert!(svg.contains("<title>kill-leader</title>"));
        assert!(svg.contains("leader 2"));
        assert!(svg.contains("run &lt;0&gt; &amp; &quot;friends&quot;"));
        assert!(!svg.contains("<0>"));
        // Well formed enough for a browser: every element opened is closed.
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn a_slower_answer_is_drawn_higher() {
        let svg = plot().to_svg();
        // The two ok points, in order: `M{x} {y}h0`; a larger latency has a smaller y.
        let path = svg
            .lines()
            .find(|l| l.contains("#2a9d8f") && l.starts_with("<path"))
            .expect("the ok path");
        let ys: Vec<f64> = path
            .split('M')
            .skip(1)
            .map(|point| {
                point
                    .split(['h', ' '])
                    .nth(1)
                    .and_then(|y| y.parse().ok())
                    .expect("a y coordinate")
            })
            .collect();
        assert_eq!(ys.len(), 2);
        assert!(ys[1] < ys[0], "{ys:?}");
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(nice_step(60.0), 5.0);
        assert_eq!(nice_step(20.0), 2.0);
        assert_eq!(nice_step(8.0), 1.0);
    }
}
