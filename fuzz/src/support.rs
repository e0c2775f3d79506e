//! Small readers of fuzz input shared by the targets.

use std::borrow::Cow;

/// `data` split at `sep` into at most `n` fields (the last one keeps any further `sep`).
pub fn fields(data: &[u8], sep: u8, n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == sep).collect()
}

/// The bytes as text, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// A number from up to eight bytes (little-endian).
pub fn num(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .enumerate()
        .fold(0u64, |n, (i, x)| n | (u64::from(*x) << (8 * i)))
}

/// Whether `s` holds an ASCII control character (a line break among them).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}
