//! Bounded capture of check output, with Consul's truncation texts.
use std::collections::VecDeque;
use std::fmt::Write;

/// Keeps the last `cap` bytes written and counts all of them, as a circular buffer does: a
/// script or HTTP body that prints a lot still ends with the lines that matter most.
#[derive(Debug)]
pub(crate) struct Tail {
    cap: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Tail {
        Tail {
            cap,
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.cap == 0 {
            return;
        }
        if data.len() >= self.cap {
            self.buf.clear();
            self.buf.extend(&data[data.len() - self.cap..]);
            return;
        }
        let excess = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..excess);
        self.buf.extend(data);
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes as text (invalid UTF-8 replaced, as JSON output would show it).
    pub(crate) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        if b.is_empty() {
            return String::from_utf8_lossy(a).into_owned();
        }
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The kept bytes, prefixed with Consul's "Captured N of M bytes" note when some were lost.
    pub(crate) fn text_with_note(&self) -> String {
        let text = self.text();
        if self.total > self.cap as u64 {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                self.cap, self.total, text
            )
        } else {
            text
        }
    }
}

/// Cuts a TTL update's output the way Consul does: the first `max` bytes and a note.
pub(crate) fn truncate_ttl_output(output: String, max: usize) -> String {
    let total = output.len();
    if total <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {} of {} bytes)",
        &output[..cut],
        max,
        total
    )
}

/// Quotes like Go's `%q` for the texts Consul formats with it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_bytes_and_counts_all() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        assert_eq!(t.text_with_note(), "ab");
        t.push(b"cde");
        assert_eq!(t.text(), "bcde");
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
        assert_eq!(t.total(), 15);
        assert_eq!(t.text_with_note(), "Captured 4 of 15 bytes\n...\n6789");
    }

    #[test]
    fn ttl_truncation_respects_char_boundaries() {
        assert_eq!(truncate_ttl_output("abc".into(), 3), "abc");
        assert_eq!(
            truncate_ttl_output("abcdef".into(), 4),
            "abcd ... (captured 4 of 6 bytes)"
        );
        // 'é' is two bytes: the cut backs off to a boundary.
        assert_eq!(
            truncate_ttl_output("aé".into(), 2),
            "a ... (captured 2 of 3 bytes)"
        );
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
