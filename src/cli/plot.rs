//! PNG plots (plotters, bitmap backend) and markdown helpers for run reports.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (`src/cli/plot/DejaVuSans.ttf`,
//! Bitstream Vera licence, see `src/cli/plot/DejaVuSans-LICENSE.txt`) through plotters'
//! `ab_glyph` renderer, so plots have labels on any machine, with or without fontconfig
//! or system fonts, and nothing is fetched at run time.

use crate::law::LawFit;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// The font family name the plots use (registered on first use).
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("plot/DejaVuSans.ttf");

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The drawing backend failed (I/O or encoding), naming the output file.
    #[error("{path}: cannot draw plot: {message}")]
    Draw {
        /// The PNG being written.
        path: String,
        /// The backend's message.
        message: String,
    },
    /// Nothing to plot.
    #[error("{path}: no data points to plot")]
    Empty {
        /// The PNG that was not written.
        path: String,
    },
}

/// One named curve: `(x, y)` points in drawing order, with an optional spread band.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)`: a band drawn under the line in its colour (the spread of several
    /// runs around their mean); empty for none.
    pub spread: Vec<(f64, f64, f64)>,
}

/// Colours of successive series (colour-blind-safe Okabe–Ito hues).
const COLOURS: [RGBColor; 6] = [
    RGBColor(213, 94, 0),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

fn register_font() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // The bundled font is valid by construction; a failure here is a build defect.
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("bundled DejaVuSans.ttf is not a valid font"));
    });
}

/// `[lo, hi]` covering `values` with a 5% margin (a unit span around a single value).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    (lo - 0.05 * span, hi + 0.05 * span)
}

fn draw_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> ReportError + '_ {
    move |e| ReportError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Draws `series` as lines (y against x) with a legend into a 900×560 PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), ReportError> {
    chart(path, title, x_desc, y_desc, series, None)
}

/// Draws each run's `(entropy, performance)` points and the fitted law
/// `R = -a·exp(H) + b` as a black curve into a PNG at `path`.
pub fn law_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    law: &LawFit,
) -> Result<(), ReportError> {
    chart(path, title, "policy entropy H", y_desc, series, Some(law))
}

fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    law: Option<&LawFit>,
) -> Result<(), ReportError> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(ReportError::Empty {
            path: path.display().to_string(),
        });
    }
    register_font();
    let err = draw_err(path);
    let points = || {
        series.iter().flat_map(|s| {
            s.points
                .iter()
                .copied()
                .chain(s.spread.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
        })
    };
    let (mut x0, mut x1) = range(points().map(|p| p.0));
    // Steps are whole numbers: integer bounds and integer labels.
    let steps = x_desc == "step";
    if steps {
        (x0, x1) = (x0.floor().max(0.0), x1.ceil());
    }
    let (y0, y1) = {
        let curve_ys = law
            .into_iter()
            .flat_map(|l| [l.predict(x0.max(0.0)), l.predict(x1)]);
        range(points().map(|p| p.1).chain(curve_ys))
    };
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    let x_labels = if steps {
        ((x1 - x0) as usize + 1).clamp(2, 11)
    } else {
        10
    };
    chart
        .configure_mesh()
        .x_labels(x_labels)
        .x_label_formatter(&|x| {
            if steps {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        })
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let style = ShapeStyle::from(&colour).stroke_width(2);
        if !s.spread.is_empty() {
            let outline: Vec<(f64, f64)> = s
                .spread
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(s.spread.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    colour.mix(0.2).filled(),
                )))
                .map_err(|e| err(&e))?;
        }
        if law.is_some() {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
                )
                .map_err(|e| err(&e))?
                .label(&s.label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        } else {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(|e| err(&e))?
                .label(&s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    if let Some(law) = law {
        let steps = 100;
        let curve = (0..=steps).map(|i| {
            let h = x0 + (x1 - x0) * i as f64 / steps as f64;
            (h, law.predict(h))
        });
        let style = ShapeStyle::from(&BLACK).stroke_width(2);
        chart
            .draw_series(LineSeries::new(curve, style))
            .map_err(|e| err(&e))?
            .label(format!("fit: R = -{:.3}·exp(H) + {:.3}", law.a, law.b))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A GitHub-flavoured markdown table.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    out.push_str(&"---|".repeat(headers.len()));
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_pngs_with_text_and_law() {
        let dir = tempfile::tempdir().unwrap();
        let a = Series {
            label: "GRPO".into(),
            points: (0..20)
                .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                .collect(),
            spread: (0..20)
                .map(|i| (i as f64, 0.9 / (1.0 + i as f64), 1.1 / (1.0 + i as f64)))
                .collect(),
        };
        let b = Series {
            label: "KL-Cov".into(),
            points: (0..20).map(|i| (i as f64, 0.8 - 0.01 * i as f64)).collect(),
            ..Series::default()
        };
        let line = dir.path().join("line.png");
        line_chart(&line, "entropy", "step", "H", &[a.clone(), b]).unwrap();
        let law = LawFit {
            a: 0.3,
            b: 0.9,
            rmse: 0.0,
            n: 20,
        };
        let scatter = dir.path().join("law.png");
        law_chart(&scatter, "law", "accuracy", &[a], &law).unwrap();
        for p in [line, scatter] {
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", p.display());
            assert!(bytes.len() > 5_000, "{} suspiciously small", p.display());
        }
        let empty = Series {
            label: "none".into(),
            points: vec![],
            ..Series::default()
        };
        let err = line_chart(&dir.path().join("x.png"), "t", "x", "y", &[empty]).unwrap_err();
        assert!(matches!(err, ReportError::Empty { .. }));
    }

    #[test]
    fn markdown_table_shape() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
