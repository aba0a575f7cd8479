//! Inputs for the cases: deterministic, never periodic (so a dropped or
//! reordered block cannot line up with the expected bytes by chance) and
//! free of `G`, so that every `G` in a `got` reply starts a prefix.

use std::ops::RangeInclusive;

/// A xorshift64* generator: enough to make bytes look random, and the same
/// on every run so a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `len` bytes of any value but `G` and `\n`.
pub(crate) fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    for b in &mut out {
        if *b == b'G' || *b == b'\n' {
            *b ^= 0x80;
        }
    }
    out
}

/// About `len` bytes of lines whose lengths (`\n` included) are drawn from
/// `line_len`; the last line is cut short so that exactly `len` bytes come
/// out, always ending with `\n` (when `len` > 0). No `G`.
pub(crate) fn lines(len: usize, seed: u64, line_len: RangeInclusive<usize>) -> Vec<u8> {
    let mut out = bytes(len, seed);
    let mut rng = Rng::new(seed ^ 0x5555);
    let (low, high) = (*line_len.start(), *line_len.end());
    let mut at = 0;
    loop {
        at += low.max(1) + rng.below(high.saturating_sub(low) + 1);
        if at >= len {
            break;
        }
        out[at - 1] = b'\n';
    }
    if let Some(last) = out.last_mut() {
        *last = b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_asked_shape() {
        let text = lines(10_000, 7, 5..=20);
        assert_eq!(text.len(), 10_000);
        assert!(!text.contains(&b'G'));
        assert!(text.ends_with(b"\n"));
        for line in text.split_inclusive(|&b| b == b'\n') {
            assert!(line.len() <= 20, "{}", line.len());
        }
        assert_ne!(bytes(64, 1), bytes(64, 2));
        assert_eq!(bytes(64, 1), bytes(64, 1));
    }
}
