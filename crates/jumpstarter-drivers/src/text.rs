//! Text from byte streams.

/// Incremental UTF-8 decoding: complete characters out, an incomplete tail kept for the next
/// chunk, invalid bytes replaced by U+FFFD.
#[derive(Default)]
pub struct Utf8Text {
    pending: Vec<u8>,
}

impl Utf8Text {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = after.get(n..).unwrap_or(&[]);
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The end of the input: an incomplete tail becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let tail = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&tail).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_text_is_independent_of_chunking() {
        let bytes = "héllo wörld ✓ 🎉".as_bytes();
        for split in 1..bytes.len() {
            let mut d = Utf8Text::default();
            let mut s = String::new();
            for c in bytes.chunks(split) {
                s.push_str(&d.push(c));
            }
            s.push_str(&d.finish());
            assert_eq!(s, "héllo wörld ✓ 🎉", "split {split}");
        }
        let mut d = Utf8Text::default();
        let mut s = d.push(b"a\xffb\xe2\x9c");
        s.push_str(&d.finish());
        assert_eq!(s, "a\u{FFFD}b\u{FFFD}");
    }
}
