//! The picture d2l's `Animator` draws during `train_ch6`: train loss, train acc and test acc
//! against epoch, written as SVG.

use crate::error::Result;
use plotters::prelude::*;
use std::path::Path;

/// One point of the training curves, as d2l's `animator.add` receives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CurvePoint {
    /// `animator.add(epoch + (i + 1) / num_batches, (train_l, train_acc, None))`.
    Train { x: f64, loss: f64, acc: f64 },
    /// `animator.add(epoch + 1, (None, None, test_acc))`.
    Test { x: f64, acc: f64 },
}

/// Matplotlib's default first colour (d2l's `'-'` format) and the `'m'` and `'g'` of its
/// other two formats.
const TRAIN_LOSS_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const TRAIN_ACC_COLOR: RGBColor = RGBColor(0xbf, 0x00, 0xbf);
const TEST_ACC_COLOR: RGBColor = RGBColor(0x00, 0x80, 0x00);

/// Renders the curves as an SVG document. The x axis runs from 0 to `num_epochs` (d2l sets
/// `xlim=[1, num_epochs]`, which hides the fractional points of the first epoch; we show
/// them). The y axis starts at 0 and reaches at least 1.
pub fn render_svg(points: &[CurvePoint], num_epochs: usize) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420)).into_drawing_area();
        draw(&root, points, num_epochs)
            .map_err(|e| crate::cli_err!("cannot draw the plot: {e}"))?;
        root.present()
            .map_err(|e| crate::cli_err!("cannot draw the plot: {e}"))?;
    }
    Ok(svg)
}

/// Renders the curves and writes them to `path` atomically.
pub fn write_svg(path: &Path, points: &[CurvePoint], num_epochs: usize) -> Result<()> {
    let svg = render_svg(points, num_epochs)?;
    crate::output::write_file(path, svg.as_bytes())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    points: &[CurvePoint],
    num_epochs: usize,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut train_loss = Vec::new();
    let mut train_acc = Vec::new();
    let mut test_acc = Vec::new();
    for p in points {
        match *p {
            CurvePoint::Train { x, loss, acc } => {
                if loss.is_finite() {
                    train_loss.push((x, loss));
                }
                train_acc.push((x, acc));
            }
            CurvePoint::Test { x, acc } => test_acc.push((x, acc)),
        }
    }
    let y_max = train_loss
        .iter()
        .chain(&train_acc)
        .chain(&test_acc)
        .map(|p| p.1)
        .fold(1.0f64, f64::max)
        * 1.05;
    let x_max = num_epochs.max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .x_labels(num_epochs.clamp(2, 11))
        .y_labels(8)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            train_loss,
            TRAIN_LOSS_COLOR.stroke_width(2),
        ))?
        .label("train loss")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_LOSS_COLOR.stroke_width(2))
        });
    chart
        .draw_series(DashedLineSeries::new(
            train_acc,
            6,
            4,
            TRAIN_ACC_COLOR.stroke_width(2),
        ))?
        .label("train acc")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], TRAIN_ACC_COLOR.stroke_width(2))
        });
    chart
        .draw_series(LineSeries::new(
            test_acc.clone(),
            TEST_ACC_COLOR.stroke_width(2),
        ))?
        .label("test acc")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], TEST_ACC_COLOR.stroke_width(2))
        });
    chart.draw_series(
        test_acc
            .iter()
            .map(|&p| Circle::new(p, 3, TEST_ACC_COLOR.filled())),
    )?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_the_three_curves_and_the_axis_label() {
        let pts = vec![
            CurvePoint::Train {
                x: 0.5,
                loss: 2.3,
                acc: 0.1,
            },
            CurvePoint::Train {
                x: 1.0,
                loss: 1.2,
                acc: 0.5,
            },
            CurvePoint::Test { x: 1.0, acc: 0.6 },
            CurvePoint::Train {
                x: 1.5,
                loss: 0.8,
                acc: 0.7,
            },
            CurvePoint::Train {
                x: 2.0,
                loss: 0.6,
                acc: 0.75,
            },
            CurvePoint::Test { x: 2.0, acc: 0.74 },
        ];
        let svg = render_svg(&pts, 2).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for label in ["train loss", "train acc", "test acc", "epoch"] {
            assert!(svg.contains(label), "missing {label}");
        }
        assert!(svg.matches("<polyline").count() >= 3);
    }
}
