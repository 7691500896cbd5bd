//! Output helpers shared by the commands.

pub use jumpstarter_family::output::{print_value, py_float};

/// A table as upstream's Rich table without borders prints one: upper-case headers, columns
/// two spaces apart, every cell padded to its column's width. Empty: `No resources found.`
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    jumpstarter_core::out!("{}", table_text(headers, rows));
}

pub fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "No resources found.\n".into();
    }
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| width(c)))
                .chain([width(headers[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - width(c))))
            .collect();
        padded.join("  ") + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// JSON indented by four spaces (Rich's `print_json(indent=4)`).
pub fn json_indent4(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_like_rich() {
        let rows = vec![
            vec!["".to_owned(), "c2".into(), "ctl.example:1443".into()],
            vec!["*".to_owned(), "c1".into(), "ctl.example:443".into()],
        ];
        assert_eq!(
            super::table_text(&["CURRENT", "ALIAS", "ENDPOINT"], &rows),
            "CURRENT  ALIAS  ENDPOINT        \n         c2     ctl.example:1443\n*        c1     ctl.example:443 \n"
        );
        assert_eq!(super::table_text(&["A"], &[]), "No resources found.\n");
        assert_eq!(
            super::json_indent4(&serde_json::json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}"
        );
    }
}
