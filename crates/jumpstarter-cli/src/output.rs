//! Output helpers shared by the commands.

/// Formats a float the way Python's `repr(float)` does (`5.0`, `0.1`, `1e-05`, `1e+16`), so
/// readings print exactly as upstream's `j` prints them.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Shortest round-trip digits and exponent, e.g. "1.5e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// Prints a JSON result for a human: strings raw, null as nothing, the rest as JSON.
pub fn print_value(v: &serde_json::Value) {
    match v {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => println!("{s}"),
        other => println!("{other}"),
    }
}

/// A table as upstream's Rich table without borders prints one: upper-case headers, columns
/// two spaces apart, every cell padded to its column's width. Empty: `No resources found.`
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(headers, rows));
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
    use super::py_float;

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

    #[test]
    fn python_float_repr() {
        for (x, want) in [
            (5.0, "5.0"),
            (0.0, "0.0"),
            (10.0, "10.0"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (-3.25, "-3.25"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e300, "1e+300"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(py_float(x), want, "{x}");
        }
    }
}
