//! What the load generator sends, and how it checks what comes back.
//!
//! Every byte sent is a function of its offset in the connection's stream,
//! so a reply can be checked as it arrives without keeping a copy of what
//! was sent. Payloads are lowercase letters: they never contain `G`, so in the
//! `got` and `line` modes a `G` in the reply can only start a `GOT:` prefix,
//! and the prefixes parse without ambiguity.

use std::sync::LazyLock;

use echo_core::Mode;
use echo_core::protocol::PREFIX;

/// The period of every stream: a prime, so that a reply replayed from
/// another point of the stream (or delivered to the wrong connection) lines
/// up with the expected bytes only by a rare coincidence.
const PERIOD: usize = 65_521;

/// The longest slice of the table taken at once.
const WINDOW: usize = 4 * 1024;

/// One period of pseudo-random lowercase letters, followed by its first
/// `WINDOW` bytes again so that any slice of up to `WINDOW` bytes from a
/// start below `PERIOD` is contiguous. Sending and checking then copy and
/// compare whole slices (memcpy, memcmp) instead of computing every byte:
/// the load generator must cost less CPU per round trip than the servers
/// it measures.
static TABLE: LazyLock<Box<[u8]>> = LazyLock::new(|| {
    (0..PERIOD + WINDOW)
        .map(|i| {
            let h = ((i % PERIOD) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            b'a' + ((h >> 40) % 26) as u8
        })
        .collect()
});

/// The bytes of one connection's request stream.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    /// Where in the table this connection's stream starts, so that two
    /// connections send different streams and a reply delivered to the
    /// wrong connection is caught.
    start: u64,
    /// Message size; in `line` mode its last byte is the `\n`.
    size: u64,
    line: bool,
}

impl Pattern {
    /// The stream of connection `seed`, which sends `size`-byte messages in
    /// `mode`.
    pub fn new(seed: u64, size: usize, mode: Mode) -> Self {
        let start = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % PERIOD as u64;
        Pattern { start, size: size.max(1) as u64, line: mode == Mode::Line }
    }

    /// The byte at `offset` in the request stream.
    pub fn byte(&self, offset: u64) -> u8 {
        if self.line && offset % self.size == self.size - 1 {
            return b'\n';
        }
        self.letters(offset, 1)[0]
    }

    /// Appends message number `index` to `out`.
    pub fn message(&self, index: u64, out: &mut Vec<u8>) {
        let start = index * self.size;
        if !self.line && self.size as usize <= WINDOW {
            out.extend_from_slice(self.letters(start, self.size as usize));
            return;
        }
        out.reserve(self.size as usize);
        self.for_each_run(start, self.size as usize, |_, run| {
            out.extend_from_slice(run);
            true
        });
    }

    /// Where `bytes`, found at `offset` of the stream, first differ from
    /// it; `None` when they match.
    pub fn first_difference(&self, offset: u64, bytes: &[u8]) -> Option<usize> {
        if !self.line && bytes.len() <= WINDOW {
            // The common case, one reply's payload: a single comparison.
            return first_mismatch(bytes, self.letters(offset, bytes.len()));
        }
        let mut found = None;
        self.for_each_run(offset, bytes.len(), |at, run| {
            found = first_mismatch(&bytes[at..at + run.len()], run).map(|i| at + i);
            found.is_none()
        });
        found
    }

    /// The message size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stream's `len` bytes from `offset`, as slices of at most
    /// `WINDOW` bytes (a line's `\n` is a slice of its own), each passed
    /// with its position from `offset` on, until `each` returns false.
    fn for_each_run(&self, offset: u64, len: usize, mut each: impl FnMut(usize, &[u8]) -> bool) {
        let mut done = 0;
        while done < len {
            let at = offset + done as u64;
            let mut run = (len - done).min(WINDOW);
            if self.line {
                let to_newline = (self.size - 1 - at % self.size) as usize;
                if to_newline == 0 {
                    if !each(done, b"\n") {
                        return;
                    }
                    done += 1;
                    continue;
                }
                run = run.min(to_newline);
            }
            if !each(done, self.letters(at, run)) {
                return;
            }
            done += run;
        }
    }

    /// `len` (at most `WINDOW`) letters of the table from stream `offset`.
    fn letters(&self, offset: u64, len: usize) -> &'static [u8] {
        // `start` is below PERIOD and offsets stay far below 2^63.
        let from = ((self.start + offset) % PERIOD as u64) as usize;
        &TABLE[from..from + len]
    }
}

/// Where two slices of the same length first differ; `None` when equal.
/// The equality test is one memcmp, the common (matching) case.
fn first_mismatch(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    got.iter().zip(want).position(|(g, w)| g != w)
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

    /// Checks the next reply bytes: prefixes byte by byte, payload a run at
    /// a time (payloads never hold `G`, so a run ends at the next `G`).
    pub fn feed(&mut self, mut reply: &[u8]) -> Result<(), Mismatch> {
        while let Some(&first) = reply.first() {
            if self.prefixed && reply.starts_with(PREFIX) && self.at_piece_boundary() {
                // The common case: a whole prefix at once.
                self.prefix_seen = PREFIX.len();
                self.piece_len = 0;
                self.advance(&mut reply, PREFIX.len());
                continue;
            }
            if self.prefixed {
                let in_piece = self.prefix_seen == PREFIX.len();
                if in_piece && first == PREFIX[0] && self.piece_len > 0 {
                    // This starts the next prefix.
                    self.prefix_seen = 1;
                    self.piece_len = 0;
                    self.advance(&mut reply, 1);
                    continue;
                }
                if !in_piece {
                    let want = PREFIX[self.prefix_seen];
                    if first != want {
                        return Err(self.mismatch(format!("{:?} of the GOT: prefix", want as char), first));
                    }
                    self.prefix_seen += 1;
                    self.advance(&mut reply, 1);
                    continue;
                }
            }
            // A `G` that cannot start a prefix (an empty piece) is checked
            // as payload, where it never matches.
            let run = match self.prefixed {
                true => memchr::memchr(PREFIX[0], &reply[1..]).map_or(reply.len(), |i| i + 1),
                false => reply.len(),
            };
            if let Some(i) = self.pattern.first_difference(self.verified, &reply[..run]) {
                self.verified += i as u64;
                self.reply_offset += i as u64;
                let expected = self.pattern.byte(self.verified);
                return Err(self.mismatch(format!("{:?}", expected as char), reply[i]));
            }
            self.verified += run as u64;
            self.piece_len += run as u64;
            self.advance(&mut reply, run);
        }
        Ok(())
    }

    /// Whether a `GOT:` may start here: at the very start, or after a
    /// piece that is not empty.
    fn at_piece_boundary(&self) -> bool {
        match self.prefix_seen {
            0 => true,
            n => n == PREFIX.len() && self.piece_len > 0,
        }
    }

    /// Consumes `n` reply bytes.
    fn advance(&mut self, reply: &mut &[u8], n: usize) {
        *reply = &reply[n..];
        self.reply_offset += n as u64;
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
    fn every_corrupt_byte_is_caught_where_it_is_in_any_chunking() {
        for mode in Mode::ALL {
            // Messages longer than a table window too, to cross slices.
            for size in [64, 5_000] {
                let p = Pattern::new(9, size, mode);
                let mut session = Session::new(mode, 1 << 20, 1 << 20);
                session.receive(&stream(&p, 3));
                let reply = session.pending().to_vec();
                let step = (reply.len() / 97).max(1);
                for at in (0..reply.len()).step_by(step) {
                    let mut bad = reply.clone();
                    bad[at] = if bad[at] == b'z' { b'y' } else { b'z' };
                    let mut checker = Checker::new(p, mode);
                    let err = bad
                        .chunks(at % 13 + 1)
                        .try_for_each(|c| checker.feed(c))
                        .expect_err("a changed byte must be caught");
                    assert_eq!(err.reply_offset, at as u64, "{mode}, size {size}");
                }
            }
        }
    }

    #[test]
    fn connections_send_different_streams() {
        let a = stream(&Pattern::new(0, 64, Mode::Raw), 4);
        let b = stream(&Pattern::new(1, 64, Mode::Raw), 4);
        assert_ne!(a, b);
        assert!(Checker::new(Pattern::new(0, 64, Mode::Raw), Mode::Raw).feed(&b).is_err());
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
