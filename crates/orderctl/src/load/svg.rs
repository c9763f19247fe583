//! The latency plot: a hand-written SVG with two panels, saga latency over
//! the run (one dot per order, SHIPPED blue, CANCELLED orange, dashed
//! p50/p99 lines) and the latency CDF of the SHIPPED orders.

use std::fmt::Write as _;

use super::stats::{nearest_rank, Percentiles};

/// One order on the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the first send.
    pub at_s: f64,
    /// Saga latency, ms.
    pub latency_ms: f64,
    /// Whether the order ended CANCELLED (else SHIPPED/DELIVERED).
    pub cancelled: bool,
}

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 330.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const GAP: f64 = 70.0;
/// At most this many dots are drawn (evenly strided) to keep the file small.
pub const MAX_DOTS: usize = 6000;

/// "Nice" axis ticks (1, 2, 2.5 or 5 × 10^k steps) covering `0..=max`,
/// about `target` of them. Returns the ticks, the last one ≥ `max`.
pub fn nice_ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

fn fmt_num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.1}")
    }
}

/// Escapes text for SVG content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

struct Panel {
    top: f64,
    x_max: f64,
    y_max: f64,
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
}

impl Panel {
    fn new(top: f64, x_max: f64, y_max: f64) -> Self {
        let x_ticks = nice_ticks(x_max, 10);
        let y_ticks = nice_ticks(y_max, 6);
        Panel {
            top,
            x_max: x_ticks
                .last()
                .copied()
                .unwrap_or(1.0)
                .max(f64::MIN_POSITIVE),
            y_max: y_ticks
                .last()
                .copied()
                .unwrap_or(1.0)
                .max(f64::MIN_POSITIVE),
            x_ticks,
            y_ticks,
        }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + (v / self.x_max).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        self.top + PANEL_H - (v / self.y_max).clamp(0.0, 1.0) * PANEL_H
    }

    fn axes(&self, out: &mut String, title: &str, x_label: &str, y_label: &str) {
        let bottom = self.top + PANEL_H;
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            self.top - 12.0,
            escape(title)
        );
        for &t in &self.y_ticks {
            let y = self.y(t);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                fmt_num(t)
            );
        }
        for &t in &self.x_ticks {
            let x = self.x(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                bottom + 5.0,
                bottom + 18.0,
                fmt_num(t)
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL_H}" fill="none" stroke="#666"/>"##,
            self.top,
            WIDTH - LEFT - RIGHT
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            bottom + 36.0,
            escape(x_label)
        );
        let _ = writeln!(
            out,
            r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            self.top + PANEL_H / 2.0,
            self.top + PANEL_H / 2.0,
            escape(y_label)
        );
    }
}

/// Renders the plot. `saga` are the percentiles of the SHIPPED orders'
/// latency (drawn as reference lines); `title` goes on top.
pub fn render(points: &[Point], saga: Option<&Percentiles>, title: &str) -> String {
    let height = TOP + 2.0 * PANEL_H + GAP + 60.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15">{}</text>"#,
        escape(title)
    );

    // Panel 1: latency over time.
    let x_max = points.iter().map(|p| p.at_s).fold(0.0, f64::max);
    let y_max = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    let scatter = Panel::new(TOP + 20.0, x_max, y_max);
    scatter.axes(
        &mut out,
        "saga latency per order (blue: SHIPPED, orange: CANCELLED)",
        "send time since start (s)",
        "latency (ms)",
    );
    let stride = points.len().div_ceil(MAX_DOTS).max(1);
    let _ = writeln!(out, r#"<g fill-opacity="0.5">"#);
    for p in points.iter().step_by(stride) {
        let color = if p.cancelled { "#e67e22" } else { "#2e86de" };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}"/>"#,
            scatter.x(p.at_s),
            scatter.y(p.latency_ms)
        );
    }
    let _ = writeln!(out, "</g>");
    if let Some(s) = saga {
        for (label, v) in [("p50", s.p50), ("p99", s.p99)] {
            let y = scatter.y(v);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#c0392b" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#c0392b" text-anchor="end">{label} {} ms</text>"##,
                WIDTH - RIGHT,
                WIDTH - RIGHT - 4.0,
                y - 4.0,
                fmt_num(v)
            );
        }
    }

    // Panel 2: CDF of the SHIPPED orders' latency.
    let mut shipped: Vec<f64> = points
        .iter()
        .filter(|p| !p.cancelled)
        .map(|p| p.latency_ms)
        .collect();
    shipped.sort_by(f64::total_cmp);
    let cdf = Panel::new(
        TOP + 20.0 + PANEL_H + GAP,
        shipped.last().copied().unwrap_or(1.0),
        100.0,
    );
    cdf.axes(
        &mut out,
        "CDF of saga latency (SHIPPED orders)",
        "latency (ms)",
        "orders at or below (%)",
    );
    if !shipped.is_empty() {
        let mut path = String::new();
        let steps = 400.min(shipped.len());
        for i in 0..=steps {
            let q = i as f64 / steps as f64;
            let v = nearest_rank(&shipped, q).unwrap_or(0.0);
            let cmd = if i == 0 { 'M' } else { 'L' };
            let _ = write!(path, "{cmd}{:.1},{:.1} ", cdf.x(v), cdf.y(q * 100.0));
        }
        let _ = writeln!(
            out,
            r##"<path d="{}" fill="none" stroke="#2e86de" stroke-width="2"/>"##,
            path.trim_end()
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(nice_ticks(100.0, 5), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(
            nice_ticks(60.0, 10),
            [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        );
        let t = nice_ticks(237.0, 6);
        assert_eq!(t[1], 50.0);
        assert!(*t.last().expect("ticks") >= 237.0);
        assert_eq!(nice_ticks(0.0, 5).last().copied(), Some(1.0));
        assert_eq!(nice_ticks(f64::NAN, 5).last().copied(), Some(1.0));
    }

    #[test]
    fn renders_well_formed_svg() {
        let points: Vec<Point> = (0..100)
            .map(|i| Point {
                at_s: f64::from(i) * 0.1,
                latency_ms: 100.0 + f64::from(i),
                cancelled: i % 10 == 0,
            })
            .collect();
        let p = Percentiles {
            count: 90,
            min: 101.0,
            mean: 150.0,
            p50: 150.0,
            p95: 195.0,
            p99: 199.0,
            max: 199.0,
        };
        let svg = render(&points, Some(&p), "rate 500/s <&> test");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, "<svg"), 1);
        assert_eq!(count(&svg, "<circle"), 100);
        assert_eq!(count(&svg, "<g"), count(&svg, "</g>"));
        assert_eq!(count(&svg, "<text"), count(&svg, "</text>"));
        assert!(svg.contains("rate 500/s &lt;&amp;&gt; test"));
        assert!(!svg.contains("<&>"));
        assert!(svg.contains("p99 199 ms"));
        assert!(svg.contains("<path d=\"M"));
        assert!(!svg.contains("NaN"));
        // Every attribute quote is closed.
        assert_eq!(count(&svg, "\"") % 2, 0);
    }

    #[test]
    fn empty_and_huge_inputs_stay_valid() {
        let svg = render(&[], None, "nothing");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, "<circle"), 0);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let many: Vec<Point> = (0..30_000)
            .map(|i| Point {
                at_s: f64::from(i) / 500.0,
                latency_ms: 50.0,
                cancelled: false,
            })
            .collect();
        let svg = render(&many, None, "many");
        assert!(count(&svg, "<circle") <= MAX_DOTS);
        assert!(count(&svg, "<circle") >= MAX_DOTS / 2);
    }
}
