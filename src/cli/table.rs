//! Column alignment as Consul's CLI prints tables: each column padded to its widest
//! cell, columns joined by two spaces, the last column not padded.

/// Aligns rows of cells. Trailing whitespace is trimmed from each line.
pub fn columnize<S: AsRef<str>>(rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.as_ref().chars().count();
            if i >= widths.len() {
                widths.push(w);
            } else if w > widths[i] {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.as_ref();
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
    }
    out
}

/// Two-column "key value" block as Go's tabwriter prints it with padding 6
/// (`kv get -detailed`).
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 6;
    let mut out = String::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(k);
        out.extend(std::iter::repeat_n(' ', width - k.chars().count()));
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![
            vec!["Node", "Address", "Status"],
            vec!["a-long-name", "1.2.3.4:8301", "alive"],
        ];
        assert_eq!(
            columnize(&rows),
            "Node         Address       Status\na-long-name  1.2.3.4:8301  alive"
        );
    }

    #[test]
    fn trailing_empty_cells_leave_no_spaces() {
        let rows = vec![vec!["a", "b", "c"], vec!["x", "", ""]];
        assert_eq!(columnize(&rows), "a  b  c\nx");
    }

    #[test]
    fn key_value_block() {
        let rows = [("CreateIndex", "5".to_owned()), ("Key", "foo".to_owned())];
        assert_eq!(
            key_values(&rows),
            "CreateIndex      5\nKey              foo"
        );
    }
}
