//! Inline SVG charts: horizontal (stacked) bar charts and histograms. Every drawn mark
//! carries its number in `data-*` attributes (and a `<title>` for hover), so tests and the
//! browser check can read what is drawn.

use std::fmt::Write;

use crate::html::{esc, fmt_num};

/// Colour-blind-safe series colours (Okabe–Ito), used through CSS classes `s0`…`s5`.
pub(crate) const SERIES: usize = 6;

/// One bar of a bar chart: a label and its segments (series index, value).
pub(crate) struct Bar {
    pub label: String,
    pub segments: Vec<(usize, f64)>,
    /// Text after the bar (defaults to the total).
    pub note: Option<String>,
}

/// A horizontal bar chart (stacked when bars have several segments). `max` fixes the scale
/// (e.g. 1.0 for rates); otherwise the largest total.
pub(crate) fn bar_chart(
    name: &str,
    title: &str,
    series: &[&str],
    bars: &[Bar],
    max: Option<f64>,
) -> String {
    let label_w = 190.0;
    let note_w = 120.0;
    let width = 680.0;
    let row_h = 22.0;
    let top = if series.len() > 1 { 26.0 } else { 6.0 };
    let height = top + row_h * bars.len() as f64 + 6.0;
    let plot_w = width - label_w - note_w;
    let scale_max = max.unwrap_or_else(|| {
        bars.iter().map(|b| b.segments.iter().map(|s| s.1).sum::<f64>()).fold(0.0, f64::max)
    });
    let scale = if scale_max > 0.0 { plot_w / scale_max } else { 0.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart" data-chart="{}"><figcaption>{}</figcaption><svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{}">"#,
        esc(name),
        esc(title),
        esc(title)
    );
    if series.len() > 1 {
        let mut x = label_w;
        for (i, name) in series.iter().enumerate() {
            let _ = write!(
                s,
                r#"<rect class="s{} legend" x="{x}" y="6" width="12" height="12"></rect><text x="{}" y="16">{}</text>"#,
                i % SERIES,
                x + 16.0,
                esc(name)
            );
            x += 30.0 + 7.5 * name.len() as f64;
        }
    }
    for (r, bar) in bars.iter().enumerate() {
        let y = top + row_h * r as f64;
        let _ = write!(
            s,
            r#"<text class="label" x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + 15.0,
            esc(&ellipsize(&bar.label, 26))
        );
        let mut x = label_w;
        let mut total = 0.0;
        for (si, v) in &bar.segments {
            total += v;
            let w = (v * scale).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let sname = series.get(*si).copied().unwrap_or("");
            let _ = write!(
                s,
                r#"<rect class="bar s{}" x="{x:.2}" y="{}" width="{w:.2}" height="{}" data-key="{}" data-series="{}" data-value="{}"><title>{}: {} {}</title></rect>"#,
                si % SERIES,
                y + 3.0,
                row_h - 6.0,
                esc(&bar.label),
                esc(sname),
                v,
                esc(&bar.label),
                fmt_num(*v),
                esc(sname)
            );
            x += w;
        }
        let note = bar.note.clone().unwrap_or_else(|| fmt_num(total));
        let _ = write!(
            s,
            r#"<text class="note" x="{:.2}" y="{}">{}</text>"#,
            x + 5.0,
            y + 15.0,
            esc(&note)
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// A vertical histogram: bin i spans [edges[i], edges[i+1]).
pub(crate) fn histogram(
    name: &str,
    title: &str,
    edges: &[f64],
    counts: &[u64],
    x_label: &str,
    small: bool,
) -> String {
    let (width, height) = if small { (300.0, 120.0) } else { (680.0, 200.0) };
    let (left, bottom, top, right) = (44.0, 30.0, 10.0, 10.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let n = counts.len().max(1) as f64;
    let bw = plot_w / n;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart{}" data-chart="{}"><figcaption>{}</figcaption><svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{}">"#,
        if small { " small" } else { "" },
        esc(name),
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line class="axis" x1="{left}" y1="{}" x2="{}" y2="{}"></line><text class="tick" x="{}" y="{}" text-anchor="end">{}</text><text class="tick" x="{}" y="{}" text-anchor="end">0</text>"#,
        top + plot_h,
        left + plot_w,
        top + plot_h,
        left - 4.0,
        top + 9.0,
        fmt_num(max),
        left - 4.0,
        top + plot_h
    );
    for (i, c) in counts.iter().enumerate() {
        let (lo, hi) =
            (edges.get(i).copied().unwrap_or(0.0), edges.get(i + 1).copied().unwrap_or(0.0));
        let h = if max > 0.0 {
            (*c as f64 / max * plot_h).max(if *c > 0 { 1.0 } else { 0.0 })
        } else {
            0.0
        };
        let x = left + bw * i as f64;
        let _ = write!(
            s,
            r#"<rect class="bar s0" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" data-bin="{i}" data-lo="{lo}" data-hi="{hi}" data-value="{c}"><title>[{}, {}): {}</title></rect>"#,
            x + 0.5,
            top + plot_h - h,
            (bw - 1.0).max(0.5),
            fmt_num(lo),
            fmt_num(hi),
            fmt_num(*c as f64)
        );
    }
    // x ticks: first, middle and last edge; for one-value-wide integer bins, the values
    // under the middle of their bars.
    let unit =
        edges.windows(2).all(|w| w[1] - w[0] == 1.0) && edges.iter().all(|e| e.fract() == 0.0);
    let last_tick =
        if unit { counts.len().saturating_sub(1) } else { edges.len().saturating_sub(1) };
    let ticks = [0, last_tick / 2, last_tick];
    let mut last = None;
    for t in ticks {
        if Some(t) == last || edges.is_empty() {
            continue;
        }
        last = Some(t);
        let x = left + bw * t as f64 + if unit { bw / 2.0 } else { 0.0 };
        let _ = write!(
            s,
            r#"<text class="tick" x="{x:.2}" y="{}" text-anchor="middle">{}</text>"#,
            top + plot_h + 13.0,
            fmt_num(edges[t])
        );
    }
    if !x_label.is_empty() {
        let _ = write!(
            s,
            r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left + plot_w / 2.0,
            height - 3.0,
            esc(x_label)
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn ellipsize(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}
