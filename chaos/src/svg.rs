//! The timeline picture of a run, as SVG written by hand: faults as shaded bands (one colour
//! per kind, labelled), successful operations and errors per second on the upper panel,
//! latency (p50 and p99 of the successful ones) on the lower panel, on one time axis.

use std::fmt::Write as _;

use crate::report::{Bucket, RunReport};

const WIDTH: f64 = 1_100.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const PANEL_HEIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;

fn kind_colour(kind: &str) -> &'static str {
    match kind {
        "kill" | "leader-kill" => "#e4572e",
        "pause" => "#f3a712",
        "rolling-restart" => "#a8c686",
        "partition" => "#669bbc",
        "lossy" => "#8e7dbe",
        "delay" => "#29335c",
        "flap" => "#2a9d8f",
        "full-disk" => "#6d597a",
        _ => "#999999",
    }
}

/// One line of the picture: its value per bucket, its panel's top, its scale's top, its colour
/// and its name.
type Series<'a> = (&'a dyn Fn(&Bucket) -> f64, f64, f64, &'a str, &'a str);

/// The SVG document of `report`'s timeline.
pub fn timeline(report: &RunReport) -> String {
    let end_s = report
        .timeline
        .last()
        .map_or(1.0, |bucket| bucket.t as f64 + 1.0)
        .max(report.faults.last().map_or(1.0, |f| f.fault.heal_s + 1.0));
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_width * (t / end_s).clamp(0.0, 1.0);
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14">{} (seed {}): {} faults, {} anomalies</text>"#,
        escape(&report.scenario),
        report.seed,
        report.faults.len(),
        report.anomalies
    );
    let panels = [
        (TOP, "operations / s"),
        (TOP + PANEL_HEIGHT + GAP, "latency ms (ok)"),
    ];
    for fault in &report.faults {
        let (x0, x1) = (
            x(fault.fault.start_s),
            x(fault.fault.heal_s).max(x(fault.fault.start_s) + 1.0),
        );
        for (top, _) in panels {
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL_HEIGHT}" fill="{}" fill-opacity="0.22"><title>{}</title></rect>"#,
                x1 - x0,
                kind_colour(&fault.fault.kind),
                escape(&fault.fault.description)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{x0:.1}" y="{}" font-size="9" fill="{}">{}</text>"#,
            TOP - 4.0,
            kind_colour(&fault.fault.kind),
            escape(&fault.fault.kind)
        );
    }
    let ops_max = report
        .timeline
        .iter()
        .map(|b| b.ok + b.fail + b.unknown)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let latency_max = report.timeline.iter().map(|b| b.p99_ms).fold(1.0, f64::max);
    for (top, label) in panels {
        let bottom = top + PANEL_HEIGHT;
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL_HEIGHT}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{label}</text>"#,
            top + PANEL_HEIGHT / 2.0,
            top + PANEL_HEIGHT / 2.0
        );
        let top_value = if top == TOP { ops_max } else { latency_max };
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{top_value:.0}</text>"#,
            LEFT - 4.0,
            top + 10.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{bottom:.1}" text-anchor="end">0</text>"#,
            LEFT - 4.0
        );
    }
    let series = |value: &dyn Fn(&Bucket) -> f64, top: f64, max: f64| -> String {
        report
            .timeline
            .iter()
            .map(|bucket| {
                let y = top + PANEL_HEIGHT - PANEL_HEIGHT * (value(bucket) / max).clamp(0.0, 1.0);
                format!("{:.1},{y:.1}", x(bucket.t as f64 + 0.5))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lines: [Series<'_>; 4] = [
        (&|b| b.ok as f64, TOP, ops_max, "#2a9d8f", "ok"),
        (
            &|b| (b.fail + b.unknown) as f64,
            TOP,
            ops_max,
            "#e63946",
            "errors (refused + unknown)",
        ),
        (
            &|b| b.p50_ms,
            TOP + PANEL_HEIGHT + GAP,
            latency_max,
            "#457b9d",
            "p50",
        ),
        (
            &|b| b.p99_ms,
            TOP + PANEL_HEIGHT + GAP,
            latency_max,
            "#e76f51",
            "p99",
        ),
    ];
    for (index, (value, top, max, colour, name)) in lines.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{}"/>"#,
            series(*value, *top, *max)
        );
        let legend_x = LEFT + 10.0 + (index % 2) as f64 * 190.0;
        let legend_y = top + 14.0;
        let _ = writeln!(
            svg,
            r#"<text x="{legend_x:.1}" y="{legend_y:.1}" fill="{colour}">{name}</text>"#
        );
    }
    let axis_y = TOP + 2.0 * PANEL_HEIGHT + GAP;
    let step = nice_step(end_s / 10.0);
    let mut t = 0.0;
    while t <= end_s {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            axis_y + 14.0
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the start</text>"#,
        LEFT + plot_width / 2.0,
        axis_y + 32.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.max(1e-3).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(3.3), 5.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
