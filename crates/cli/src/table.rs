//! Plain-text tables for people: a header row and left-aligned columns two spaces apart.
//! Scripts use `--json` instead.

use std::fmt::Write as _;

/// Renders `rows` under `headers`, each column as wide as its widest cell; the last column is
/// not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// The cell for an absent value.
pub const NONE: &str = "-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["wider key".to_owned(), "v".to_owned(), "é".to_owned()],
        ];
        let text = render(&["KEY", "VALUE", "Z"], &rows);
        assert_eq!(
            text,
            "KEY        VALUE       Z\na          long value  x\nwider key  v           é\n"
        );
    }
}
