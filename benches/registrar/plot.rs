//! The chart: p99 latency against offered rate, both axes logarithmic, one line per system
//! and driver, one panel per round (no authentication, digest), and the clean-step bound.

use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::driver::DriverKind;
use crate::series::StepRecord;
use crate::system::{Auth, SystemKind};

/// Latencies below this are drawn on it: the axis is logarithmic and SIPp reports whole ms.
const P99_FLOOR_MS: f64 = 0.1;
const P99_CEILING_MS: f64 = 20_000.0;
const PANEL_WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// Draws `steps` into an SVG file at `path`.
pub fn draw(
    steps: &[StepRecord],
    auths: &[Auth],
    p99_max_ms: f64,
    path: &Path,
) -> anyhow::Result<()> {
    let rates = || steps.iter().map(|s| f64::from(s.rate_offered));
    let (Some(rate_min), Some(rate_max)) = (rates().reduce(f64::min), rates().reduce(f64::max))
    else {
        return Ok(());
    };
    let width = PANEL_WIDTH * u32::try_from(auths.len().max(1)).unwrap_or(1);
    let root = SVGBackend::new(path, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((1, auths.len().max(1)));
    for (panel, &auth) in panels.iter().zip(auths) {
        let title = match auth {
            Auth::None => "p99 of REGISTER, no authentication",
            Auth::Digest => "p99 of REGISTER, digest (challenge included)",
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (rate_min / 1.3..rate_max * 1.3).log_scale(),
                (P99_FLOOR_MS..P99_CEILING_MS).log_scale(),
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(12)
            .x_label_formatter(&|rate| format!("{rate:.0}"))
            .y_label_formatter(&|ms| {
                if *ms < 1.0 {
                    format!("{ms:.1}")
                } else {
                    format!("{ms:.0}")
                }
            })
            .x_desc("offered REGISTER/s")
            .y_desc("p99 ms")
            .draw()
            .map_err(plot_error)?;
        let bound = vec![(rate_min / 1.3, p99_max_ms), (rate_max * 1.3, p99_max_ms)];
        chart
            .draw_series(LineSeries::new(bound, BLACK.mix(0.7)))
            .map_err(plot_error)?
            .label(format!("{p99_max_ms} ms bound"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.7)));
        for system in [
            SystemKind::KamailioSingle,
            SystemKind::KamailioDmq,
            SystemKind::Roster,
        ] {
            for driver in [DriverKind::Sipp, DriverKind::RosterLoad] {
                let points: Vec<(f64, f64)> = steps
                    .iter()
                    .filter(|s| s.system == system && s.driver == driver && s.auth == auth)
                    .map(|s| {
                        let p99 = s.p99_ms.clamp(P99_FLOOR_MS, P99_CEILING_MS);
                        (f64::from(s.rate_offered), p99)
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let style = ShapeStyle::from(&color(system)).stroke_width(2);
                let label = format!("{} / {}", system.name(), driver.name());
                // SIPp dashed, roster load solid; one colour per system.
                match driver {
                    DriverKind::Sipp => chart
                        .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                        .map_err(plot_error)?
                        .label(label)
                        .legend(move |(x, y)| {
                            DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, style)
                        }),
                    DriverKind::RosterLoad => chart
                        .draw_series(LineSeries::new(points.clone(), style))
                        .map_err(plot_error)?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)),
                };
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|point| Circle::new(point, 3, style.filled())),
                    )
                    .map_err(plot_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}

fn color(system: SystemKind) -> RGBColor {
    match system {
        SystemKind::KamailioSingle => RGBColor(230, 120, 0),
        SystemKind::KamailioDmq => RGBColor(200, 30, 30),
        SystemKind::Roster => RGBColor(20, 90, 200),
    }
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error}")
}
