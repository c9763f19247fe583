//! The latency plot, drawn with plotters' SVG backend: two panels, saga
//! latency over the run (one dot per order, SHIPPED blue, CANCELLED orange,
//! dashed p50/p99 lines) and the latency CDF of the SHIPPED orders.

use plotters::prelude::*;

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

const SIZE: (u32, u32) = (960, 860);
/// At most this many dots are drawn (evenly strided) to keep the file small.
pub const MAX_DOTS: usize = 6000;
const SHIPPED: RGBColor = RGBColor(0x2e, 0x86, 0xde);
const CANCELLED: RGBColor = RGBColor(0xe6, 0x7e, 0x22);
const PERCENTILE: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);

/// The end of an axis that starts at 0 and covers `max`: the next
/// 1, 2, 2.5 or 5 × 10^k multiple of a step that gives about `ticks`
/// ticks, so the last tick is labelled. 1 for an empty or invalid range.
pub fn nice_max(max: f64, ticks: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (max / step).ceil() * step
}

/// A tick label: whole numbers without decimals.
fn label(v: &f64) -> String {
    if *v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Renders the plot. `saga` are the percentiles of the SHIPPED orders'
/// latency (drawn as reference lines); `title` goes on top.
pub fn render(points: &[Point], saga: Option<&Percentiles>, title: &str) -> String {
    let mut out = String::new();
    if let Err(e) = draw(&mut out, points, saga, title) {
        // Drawing into a string does no I/O; a layout error still leaves a
        // readable file.
        out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><text y=\"20\">the plot failed: {}</text></svg>\n",
            e.to_string().replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    out
}

fn draw(
    out: &mut String,
    points: &[Point],
    saga: Option<&Percentiles>,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 15))?;
    let (over_time, distribution) = root.split_vertically(SIZE.1 / 2 - 20);

    // Panel 1: latency over time.
    let x_max = nice_max(points.iter().map(|p| p.at_s).fold(0.0, f64::max), 10);
    let y_max = nice_max(points.iter().map(|p| p.latency_ms).fold(0.0, f64::max), 6);
    let mut chart = ChartBuilder::on(&over_time)
        .caption(
            "saga latency per order (blue: SHIPPED, orange: CANCELLED)",
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .x_labels(11)
        .y_labels(7)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .x_desc("send time since start (s)")
        .y_desc("latency (ms)")
        .draw()?;
    let stride = points.len().div_ceil(MAX_DOTS).max(1);
    chart.draw_series(points.iter().step_by(stride).map(|p| {
        let color = if p.cancelled { CANCELLED } else { SHIPPED };
        Circle::new((p.at_s, p.latency_ms), 2, color.mix(0.5).filled())
    }))?;
    if let Some(s) = saga {
        for (name, v) in [("p50", s.p50), ("p99", s.p99)] {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, v), (x_max, v)],
                    5,
                    4,
                    PERCENTILE.into(),
                ))?
                .label(format!("{name} {} ms", label(&v)))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], PERCENTILE));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(0x99, 0x99, 0x99))
            .draw()?;
    }

    // Panel 2: CDF of the SHIPPED orders' latency.
    let mut shipped: Vec<f64> = points
        .iter()
        .filter(|p| !p.cancelled)
        .map(|p| p.latency_ms)
        .collect();
    shipped.sort_by(f64::total_cmp);
    let mut cdf = ChartBuilder::on(&distribution)
        .caption("CDF of saga latency (SHIPPED orders)", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0.0..nice_max(shipped.last().copied().unwrap_or(0.0), 10),
            0.0..100.0,
        )?;
    cdf.configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .x_labels(11)
        .y_labels(6)
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .x_desc("latency (ms)")
        .y_desc("orders at or below (%)")
        .draw()?;
    if !shipped.is_empty() {
        let steps = 400.min(shipped.len());
        cdf.draw_series(LineSeries::new(
            (0..=steps).map(|i| {
                let q = i as f64 / steps as f64;
                (nearest_rank(&shipped, q).unwrap_or(0.0), q * 100.0)
            }),
            SHIPPED.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn axes_end_on_a_round_number_past_the_data() {
        assert_eq!(nice_max(100.0, 5), 100.0);
        assert_eq!(nice_max(59.9, 10), 60.0);
        assert_eq!(nice_max(237.0, 6), 250.0);
        assert_eq!(nice_max(1_850.0, 10), 2_000.0);
        assert_eq!(nice_max(0.0, 5), 1.0);
        assert_eq!(nice_max(f64::NAN, 5), 1.0);
        assert_eq!(nice_max(f64::INFINITY, 5), 1.0);
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
        assert!(svg.starts_with("<svg"), "{svg:.200}");
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, "<svg"), 1);
        assert_eq!(count(&svg, "<circle"), 100);
        assert_eq!(count(&svg, "<g"), count(&svg, "</g>"));
        assert_eq!(count(&svg, "<text"), count(&svg, "</text>"));
        assert!(svg.contains("rate 500/s &lt;&amp;&gt; test"));
        assert!(!svg.contains("<&>"));
        assert!(svg.contains("p50 150 ms") && svg.contains("p99 199 ms"));
        assert!(svg.contains("<polyline"), "the CDF");
        assert!(!svg.contains("NaN"));
        // Every attribute quote is closed.
        assert_eq!(count(&svg, "\"") % 2, 0);
    }

    #[test]
    fn empty_and_huge_inputs_stay_valid() {
        let svg = render(&[], None, "nothing");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("the plot failed"), "{svg}");
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
