//! Client-given strings (selectors, names, identifiers) inside error messages: at most
//! [`CLIP_CHARS`] characters of one are echoed, then an ellipsis and the original length, so a
//! megabyte selector costs a megabyte once (on the way in), not again in every error.

use std::fmt;

/// How many characters of one client-given string an error message repeats.
pub const CLIP_CHARS: usize = 200;

/// A string shown clipped: `{}` writes it plain, `{:?}` quoted (the ellipsis and length after
/// the closing quote).
#[derive(Clone, Copy)]
pub struct Clipped<'a>(pub &'a str);

/// `s` for an error message.
pub fn clip(s: &str) -> Clipped<'_> {
    Clipped(s)
}

impl<'a> Clipped<'a> {
    /// The part shown and whether something was cut off.
    fn head(&self) -> (&'a str, bool) {
        match self.0.char_indices().nth(CLIP_CHARS) {
            Some((at, _)) => (&self.0[..at], true),
            None => (self.0, false),
        }
    }
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, cut) = self.head();
        f.write_str(head)?;
        if cut {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, cut) = self.head();
        write!(f, "{head:?}")?;
        if cut {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_unchanged_long_ones_clipped() {
        assert_eq!(clip("abc").to_string(), "abc");
        assert_eq!(format!("{:?}", clip("a\"b")), "\"a\\\"b\"");
        let long = "é".repeat(1000);
        let shown = clip(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(CLIP_CHARS)), "{shown}");
        assert!(shown.ends_with("… (2000 bytes)"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            CLIP_CHARS + "… (2000 bytes)".chars().count()
        );
        let dbg = format!("{:?}", clip(&long));
        assert!(dbg.ends_with("\"… (2000 bytes)"), "{dbg}");
        let exact = "x".repeat(CLIP_CHARS);
        assert_eq!(clip(&exact).to_string(), exact);
    }
}
