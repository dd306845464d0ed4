//! The report's chart as SVG: ratio against memory per connection.
//!
//! A small writer instead of a plotting crate: the chart is one scatter
//! plot, and plotters' SVG backend needs a font stack to lay out text. Every
//! setting is a point (x: memory per connection, KiB; y: ratio, wire bytes
//! per payload byte, lower is better); Pareto-front settings are filled,
//! the ratio/memory front is drawn as a step line through the settings no
//! other beats on both axes, and the recommended point is ringed and
//! labelled. Text is XML-escaped; the output is a standalone SVG document
//! (tests parse it as XML).

use crate::report::Report;
use std::fmt::Write as _;

const W: f64 = 860.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Escapes `&`, `<`, `>`, `"` and `'` for XML text and attributes, and
/// drops characters XML 1.0 cannot hold.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `n` ticks.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// Indices of rows on the two-axis (ratio, memory) front, by memory.
fn front_2d(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .partial_cmp(&points[b].0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(
                points[a]
                    .1
                    .partial_cmp(&points[b].1)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
    });
    let mut best = f64::INFINITY;
    let mut out = Vec::new();
    for i in idx {
        if points[i].1 < best {
            best = points[i].1;
            out.push(i);
        }
    }
    out
}

/// The chart of `report`.
pub fn chart(report: &Report) -> String {
    let pts: Vec<(f64, f64)> = report
        .rows
        .iter()
        .map(|r| (r.m.memory_per_conn_bytes() as f64 / 1024.0, r.m.ratio()))
        .collect();
    let (mut x_max, mut y_min, mut y_max) = (0f64, f64::INFINITY, 0f64);
    for &(x, y) in &pts {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if pts.is_empty() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let x_step = nice_step(x_max.max(1.0), 6.0);
    let x_hi = (x_max / x_step).ceil().max(1.0) * x_step;
    let y_step = nice_step((y_max - y_min).max(0.01), 6.0);
    let y_lo = ((y_min / y_step).floor() * y_step).max(0.0);
    let mut y_hi = (y_max / y_step).ceil() * y_step;
    if y_hi <= y_lo {
        y_hi = y_lo + y_step;
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_hi * pw;
    let sy = |y: f64| TOP + (y_hi - y) / (y_hi - y_lo) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let title = format!(
        "{} — {} messages: ratio against memory per connection",
        report.corpus["path"].as_str().unwrap_or("corpus"),
        report.corpus["messages"]
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    // Grid and ticks.
    let mut x = 0.0;
    while x <= x_hi + x_step / 2.0 {
        let px = sx(x);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            trim_num(x)
        );
        x += x_step;
    }
    let mut y = y_lo;
    while y <= y_hi + y_step / 2.0 {
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            trim_num(y)
        );
        y += y_step;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">memory per connection (KiB, compressor + decompressor)</text>"#,
        LEFT + pw / 2.0,
        H - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">ratio (wire bytes / payload bytes, lower is better)</text>"#,
        TOP + ph / 2.0
    );
    // The ratio/memory front as a step line.
    let front = front_2d(&pts);
    if front.len() > 1 {
        let mut d = String::new();
        for (k, &i) in front.iter().enumerate() {
            let (px, py) = (sx(pts[i].0), sy(pts[i].1));
            if k == 0 {
                let _ = write!(d, "M{px:.1},{py:.1}");
            } else {
                let prev_y = sy(pts[front[k - 1]].1);
                let _ = write!(d, " L{px:.1},{prev_y:.1} L{px:.1},{py:.1}");
            }
        }
        let _ = writeln!(
            s,
            r##"<path class="front" d="{d}" fill="none" stroke="#d62728" stroke-width="1.5"/>"##
        );
    }
    for (i, r) in report.rows.iter().enumerate() {
        let (px, py) = (sx(pts[i].0), sy(pts[i].1));
        let on_front = report.pareto.contains(&i);
        let fill = if on_front { "#1f77b4" } else { "white" };
        let _ = writeln!(
            s,
            r##"<circle class="{}" cx="{px:.1}" cy="{py:.1}" r="4" fill="{fill}" stroke="#1f77b4"><title>{}</title></circle>"##,
            if on_front { "pareto" } else { "setting" },
            escape(&format!(
                "{}: ratio {:.4}, {:.1} KiB, {:.2} µs/msg",
                r.setting.name,
                r.m.ratio(),
                pts[i].0,
                r.m.cpu_us_per_msg()
            ))
        );
    }
    if let Some(i) = report.recommended {
        let (px, py) = (sx(pts[i].0), sy(pts[i].1));
        let anchor = if px > LEFT + pw * 0.7 { "end" } else { "start" };
        let dx = if anchor == "end" { -12.0 } else { 12.0 };
        let _ = writeln!(
            s,
            r##"<circle class="recommended" cx="{px:.1}" cy="{py:.1}" r="9" fill="none" stroke="#2ca02c" stroke-width="2"/><text class="recommended-label" x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="#2ca02c" font-weight="bold">recommended: {}</text>"##,
            px + dx,
            py - 10.0,
            escape(&report.rows[i].setting.name)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">filled: Pareto front (ratio, memory, CPU); line: ratio/memory front</text>"##,
        LEFT + pw - 6.0,
        TOP + 16.0
    );
    s.push_str("</svg>\n");
    s
}

fn trim_num(x: f64) -> String {
    let t = format!("{x:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() || t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\u{1}y"), "xy");
    }

    #[test]
    fn steps_and_front() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(nice_step(0.0, 6.0), 1.0);
        let pts = [
            (0.0, 1.0),
            (10.0, 0.5),
            (5.0, 0.7),
            (20.0, 0.6),
            (30.0, 0.3),
        ];
        assert_eq!(front_2d(&pts), [0, 2, 1, 4]);
        assert_eq!(trim_num(2.5), "2.5");
        assert_eq!(trim_num(10.0), "10");
    }
}
