//! What the load generator sends, and how it checks what comes back.
//!
//! Every byte sent is a function of its offset in the connection's stream,
//! so a reply can be checked byte by byte without keeping a copy of what was
//! sent. Payloads are lowercase letters: they never contain `G`, so in the
//! `got` and `line` modes a `G` in the reply can only start a `GOT:` prefix,
//! and the prefixes parse without ambiguity.

use echo_core::Mode;
use echo_core::protocol::PREFIX;

/// The bytes of one connection's request stream.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    /// Mixed into every byte so that two connections send different streams
    /// and a reply delivered to the wrong connection is caught.
    seed: u64,
    /// Message size; in `line` mode its last byte is the `\n`.
    size: u64,
    line: bool,
}

impl Pattern {
    /// The stream of a connection that sends `size`-byte messages in `mode`.
    pub fn new(seed: u64, size: usize, mode: Mode) -> Self {
        Pattern { seed, size: size.max(1) as u64, line: mode == Mode::Line }
    }

    /// The byte at `offset` in the request stream.
    pub fn byte(&self, offset: u64) -> u8 {
        if self.line && offset % self.size == self.size - 1 {
            return b'\n';
        }
        let h = (offset ^ self.seed.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        b'a' + ((h >> 40) % 26) as u8
    }

    /// Appends message number `index` to `out`.
    pub fn message(&self, index: u64, out: &mut Vec<u8>) {
        let start = index * self.size;
        out.extend((start..start + self.size).map(|o| self.byte(o)));
    }

    /// The message size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The first reply byte that was not what the server should have sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// Offset in the request stream of the byte being answered.
    pub offset: u64,
    /// Offset in the reply stream of the wrong byte.
    pub reply_offset: u64,
    /// What was expected there.
    pub expected: String,
    /// What came instead.
    pub got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reply byte {} (answering request byte {}): expected {}, got {}",
            self.reply_offset, self.offset, self.expected, self.got
        )
    }
}

/// Checks a reply stream as it arrives, in any chunking.
#[derive(Debug)]
pub struct Checker {
    pattern: Pattern,
    /// Whether replies carry `GOT:` prefixes (`got` and `line` modes).
    prefixed: bool,
    /// How much of the current `GOT:` prefix has been seen; `PREFIX.len()`
    /// once inside a piece.
    prefix_seen: usize,
    /// Bytes of the current piece seen so far: a piece is never empty.
    piece_len: u64,
    /// Request bytes whose echo has been verified.
    verified: u64,
    /// Reply bytes consumed.
    reply_offset: u64,
}

impl Checker {
    /// A checker for replies to `pattern` in `mode`.
    pub fn new(pattern: Pattern, mode: Mode) -> Self {
        Checker {
            pattern,
            prefixed: mode != Mode::Raw,
            prefix_seen: 0,
            piece_len: 0,
            verified: 0,
            reply_offset: 0,
        }
    }

    /// Request bytes whose echo has arrived and matched.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Checks the next reply bytes.
    pub fn feed(&mut self, reply: &[u8]) -> Result<(), Mismatch> {
        for &b in reply {
            self.step(b)?;
            self.reply_offset += 1;
        }
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<(), Mismatch> {
        if self.prefixed {
            let in_piece = self.prefix_seen == PREFIX.len();
            if in_piece && b == PREFIX[0] && self.piece_len > 0 {
                // Payloads never hold `G`: this starts the next prefix.
                self.prefix_seen = 1;
                self.piece_len = 0;
                return Ok(());
            }
            if !in_piece {
                if b != PREFIX[self.prefix_seen] {
                    return Err(self
                        .mismatch(format!("{:?} of the GOT: prefix", PREFIX[self.prefix_seen] as char), b));
                }
                self.prefix_seen += 1;
                return Ok(());
            }
        }
        let expected = self.pattern.byte(self.verified);
        if b != expected {
            return Err(self.mismatch(format!("{:?}", expected as char), b));
        }
        self.verified += 1;
        self.piece_len += 1;
        Ok(())
    }

    fn mismatch(&self, expected: String, got: u8) -> Mismatch {
        Mismatch {
            offset: self.verified,
            reply_offset: self.reply_offset,
            expected,
            got: format!("{:?}", got as char),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo_core::Session;

    fn stream(pattern: &Pattern, messages: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..messages {
            pattern.message(i, &mut out);
        }
        out
    }

    #[test]
    fn payload_has_no_g_and_lines_end_in_newline() {
        let p = Pattern::new(7, 64, Mode::Line);
        let s = stream(&p, 100);
        assert!(!s.contains(&b'G'));
        assert!(s.chunks(64).all(|m| m.ends_with(b"\n") && !m[..63].contains(&b'\n')));
    }

    #[test]
    fn accepts_every_mode_in_any_chunking() {
        for mode in Mode::ALL {
            let p = Pattern::new(3, 100, mode);
            let input = stream(&p, 50);
            let mut session = Session::new(mode, 37, 64 * 1024);
            for chunk in input.chunks(333) {
                session.receive(chunk);
            }
            let reply = session.pending().to_vec();
            let mut checker = Checker::new(p, mode);
            for chunk in reply.chunks(7) {
                checker.feed(chunk).unwrap();
            }
            assert_eq!(checker.verified(), input.len() as u64, "{mode}");
        }
    }

    #[test]
    fn catches_a_corrupt_byte_a_missing_prefix_and_another_connection() {
        let p = Pattern::new(1, 64, Mode::Got);
        let mut reply = b"GOT:".to_vec();
        reply.extend(stream(&p, 2));
        let mut bad = reply.clone();
        bad[40] ^= 1;
        let err = Checker::new(p, Mode::Got).feed(&bad).unwrap_err();
        assert_eq!((err.offset, err.reply_offset), (36, 40));
        assert!(Checker::new(p, Mode::Got).feed(&reply[4..]).is_err());
        let other = Pattern::new(2, 64, Mode::Got);
        assert!(Checker::new(other, Mode::Got).feed(&reply).is_err());
        assert!(Checker::new(p, Mode::Got).feed(b"GOT:GOT:").is_err(), "empty piece");
    }
}
