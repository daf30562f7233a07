//! Plain-text tables for the commands that print what a run recorded: a header, a rule, and
//! columns padded to their widest cell (text left, numbers right).

use std::fmt::Write;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table being built row by row.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            header: columns.iter().map(|(t, _)| t.to_string()).collect(),
            align: columns.iter().map(|&(_, a)| a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, each line indented by `indent` spaces, trailing spaces trimmed.
    pub fn render(&self, indent: usize) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header[c])
                    .chain(self.rows.iter().map(|r| &r[c]))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = " ".repeat(indent);
            for (c, cell) in cells.iter().enumerate() {
                if c > 0 {
                    out.push_str("  ");
                }
                let pad = widths[c] - cell.chars().count();
                match self.align[c] {
                    Align::Left => {
                        out.push_str(cell);
                        out.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(cell);
                    }
                }
            }
            out.trim_end().to_string()
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}", line(&self.header));
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        let _ = writeln!(out, "{}{}", " ".repeat(indent), "-".repeat(total));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out
    }
}

/// Significant digits of a number shown to a person ([`human`]), as Keras's progress bar shows
/// metrics (`%.4f` there; four significant digits here, so small values keep their digits).
pub const SIGNIFICANT: usize = 4;

/// `x` to [`SIGNIFICANT`] significant digits, trailing zeros dropped: `0.9440000000000001` →
/// `0.944`, `0.00030000000000000003` → `0.0003`, `123456.0` → `123500`, `1e-7` → `1e-7`.
/// JSON output keeps the exact value; this is for tables and pages.
pub fn human(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return x.to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-4..=15).contains(&magnitude) {
        let text = format!("{x:.prec$e}", prec = SIGNIFICANT - 1);
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (SIGNIFICANT as i32 - 1 - magnitude).max(0) as usize;
    let text = format!("{x:.decimals$}");
    // Rounding can carry into a new digit (9.9996 → 10.000): one decimal fewer then.
    let text = match text.trim_start_matches('-').find('.') {
        Some(point) if point > (magnitude + 1).max(1) as usize && decimals > 0 => {
            format!("{x:.prec$}", prec = decimals - 1)
        }
        _ => text,
    };
    if magnitude >= SIGNIFICANT as i32 {
        // Whole numbers past the digits kept: 123456 → 123500.
        let scale = 10f64.powi(magnitude + 1 - SIGNIFICANT as i32);
        return format!("{:.0}", (x / scale).round() * scale);
    }
    trim_zeros(&text).to_string()
}

/// `0.9400` → `0.94`, `3.000` → `3`; a number without a point is left as it is.
fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people_have_four_significant_digits() {
        for (x, shown) in [
            (0.9440000000000001, "0.944"),
            (0.1 + 0.2, "0.3"),
            (0.00030000000000000003, "0.0003"),
            (0.001, "0.001"),
            (1e-3 * 3.0, "0.003"),
            (0.97960001, "0.9796"),
            (0.123456, "0.1235"),
            (9.99996, "10"),
            (0.099996, "0.1"),
            (32.0, "32"),
            (512.0, "512"),
            (1234.5678, "1235"),
            (123456.0, "123500"),
            (-0.5, "-0.5"),
            (-1.23456, "-1.235"),
            (1e-7, "1e-7"),
            (1.2346e-5, "1.235e-5"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(human(x), shown, "{x}");
        }
    }

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut table = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        table.row(vec!["a".into(), "100".into()]);
        table.row(vec!["long name".into(), "7".into()]);
        assert_eq!(
            table.render(2),
            "  name         n\n  --------------\n  a          100\n  long name    7\n"
        );
    }
}
