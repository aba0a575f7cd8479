//! What the load generator sends, and how it checks what comes back.
//!
//! Every byte sent is a function of its offset in the connection's stream,
//! so a reply can be checked as it arrives without keeping a copy of what
//! was sent. Payloads are lowercase letters: they never contain `G`, so in the
//! `got` and `line` modes a `G` in the reply can only start a `GOT:` prefix,
//! and the prefixes parse without ambiguity.
//!
//! # Every message is distinguishable
//!
//! The bytes come from one table of period `P` = [`PERIOD`] (a prime).
//! Message `k` of a connection is the table from offset
//! `base + k * stride`, where `base` is the connection's own start and
//! `stride = size + g`, with the gap `g` in {1, 2} chosen so that
//! `stride ≢ 0 (mod P)` (`g ≢ 0` holds since `P > 2`). A byte of message `k`
//! at position `w` in it sits at table offset `T(k, w) = base + k * stride + w`.
//! A reply that lines up the wrong bytes with message `k`'s position `w`
//! is compared against bytes from another table offset, and the difference
//! of offsets is, mod `P`:
//!
//! - `j` whole messages dropped (`0 < j ≤ pipeline < P`, since no more than
//!   `pipeline` messages are ever in flight): `T(k + j, w) - T(k, w) = j * stride`,
//!   non-zero as `P` is prime and divides neither factor;
//! - a message duplicated, or two swapped: the same with `j = ±1`;
//! - a chunk of `m * P` bytes dropped inside one long message (the one
//!   shift that lines up again inside a message): the next message's first
//!   byte meets the expected `T(k, size - m * P)`, a difference of
//!   `m * P + g ≡ g`, non-zero;
//! - another connection's bytes at the same message number:
//!   `base' - base`, non-zero while the connections are fewer than `P`
//!   (each starts at `seed * SPREAD mod P`, a bijection of the seeds below
//!   `P`); at another message number the shift is non-zero but for one
//!   pairing of numbers in `P`.
//!
//! A non-zero shift of the table is caught at its first differing byte;
//! with pseudo-random letters a shifted run of `n` bytes matches by chance
//! with probability about `26^-n` per comparison (a one-byte message can
//! slip through a few comparisons; the bytes after it cannot). The one
//! exception is a line-mode message of one byte, which is only its `\n`:
//! there every message is alike, and only the counts (unanswered or extra
//! replies) can catch a drop.
//!
//! Sending stays a copy of table slices and checking a comparison of them:
//! a message never spans the table's end, because each is cut at the table
//! window below.

use std::sync::LazyLock;

use echo_core::Mode;
use echo_core::protocol::PREFIX;

/// The period of every stream: a prime, so that a reply replayed from
/// another point of the stream (or delivered to the wrong connection) lines
/// up with the expected bytes only by a rare coincidence.
pub const PERIOD: usize = 65_521;

/// Spreads the connections' starting points over the table.
const SPREAD: u64 = 0x2545_F491_4F6C_DD1D;

/// The longest slice of the table taken at once.
const WINDOW: usize = 4 * 1024;

/// The largest message size the load generator accepts (64 MiB): each
/// connection holds up to `pipeline` of them.
pub const MAX_SIZE: usize = 64 << 20;

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
    base: u64,
    /// Message size; in `line` mode its last byte is the `\n`.
    size: u64,
    /// `(size + gap) mod PERIOD`: how far apart in the table two messages
    /// start, never 0 (see the module's comment).
    stride: u64,
    /// `stride - size`: the table bytes skipped between two messages.
    gap: u64,
    line: bool,
}

impl Pattern {
    /// The stream of connection `seed`, which sends `size`-byte messages in
    /// `mode`.
    pub fn new(seed: u64, size: usize, mode: Mode) -> Self {
        let p = PERIOD as u64;
        // Multiplying by a number that P does not divide, mod P, is a
        // bijection: the first P connections all start at different places.
        let base = (seed % p) * (SPREAD % p) % p;
        let size = size.max(1) as u64;
        let gap = if (size + 1) % p == 0 { 2 } else { 1 };
        Pattern { base, size, stride: (size + gap) % p, gap, line: mode == Mode::Line }
    }

    /// The byte at `offset` in the request stream.
    pub fn byte(&self, offset: u64) -> u8 {
        if self.line && offset % self.size == self.size - 1 {
            return b'\n';
        }
        TABLE[self.table_offset(offset)]
    }

    /// Appends message number `index` to `out`.
    pub fn message(&self, index: u64, out: &mut Vec<u8>) {
        let start = index * self.size;
        if !self.line && self.size as usize <= WINDOW {
            let from = self.table_offset(start);
            out.extend_from_slice(&TABLE[from..from + self.size as usize]);
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
        let within = offset % self.size;
        if !self.line && bytes.len() <= WINDOW && within + bytes.len() as u64 <= self.size {
            // The common case, one reply's payload: a single comparison.
            let from = self.table_offset(offset);
            return first_mismatch(bytes, &TABLE[from..from + bytes.len()]);
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

    /// Where stream byte `offset` sits in the table: message `k` starts at
    /// `base + k * stride`.
    fn table_offset(&self, offset: u64) -> usize {
        let p = PERIOD as u64;
        let (k, within) = (offset / self.size, offset % self.size);
        ((self.base + (k % p) * self.stride + within % p) % p) as usize
    }

    /// The stream's `len` bytes from `offset`, as slices of at most
    /// `WINDOW` bytes that never cross a message's end (a line's `\n` is a
    /// slice of its own), each passed with its position from `offset` on,
    /// until `each` returns false. The table position is found once and
    /// then advanced: no division per message, which matters when one read
    /// holds a thousand small ones.
    fn for_each_run(&self, offset: u64, len: usize, mut each: impl FnMut(usize, &[u8]) -> bool) {
        let p = PERIOD as u64;
        let mut within = offset % self.size;
        let mut from = self.table_offset(offset) as u64;
        let mut done = 0;
        while done < len {
            let to_end = self.size - within;
            let run = if self.line && to_end == 1 {
                if !each(done, b"\n") {
                    return;
                }
                1
            } else {
                let limit = if self.line { to_end - 1 } else { to_end };
                let run = ((len - done) as u64).min(WINDOW as u64).min(limit) as usize;
                if !each(done, &TABLE[from as usize..from as usize + run]) {
                    return;
                }
                run
            };
            done += run;
            within += run as u64;
            from += run as u64;
            if within == self.size {
                // The next message starts `gap` further on in the table.
                within = 0;
                from += self.gap;
            }
            if from >= p {
                from -= p;
            }
        }
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

/// The first reply byte that was not what the server should have sent, or
/// the point at which the reply stream went wrong (ended early, went on
/// too long, was never finished).
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

/// How replies are cut into pieces.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// No prefixes: the request stream back.
    Raw,
    /// `GOT:` + pieces of 1..=`read_size` bytes, cut anywhere.
    Got { read_size: u64 },
    /// `GOT:` + each line, or for a line longer than `max_line` pieces of
    /// exactly `max_line` bytes and then the rest.
    Line { max_line: u64 },
}

/// Checks a reply stream as it arrives, in any chunking.
#[derive(Debug)]
pub struct Checker {
    pattern: Pattern,
    framing: Framing,
    /// How much of the current `GOT:` prefix has been seen; `PREFIX.len()`
    /// once inside a piece.
    prefix_seen: usize,
    /// Bytes of the current piece seen so far: a piece is never empty.
    piece_len: u64,
    /// Bytes the current piece may still hold (`got`) or must still hold
    /// (`line`).
    piece_room: u64,
    /// Request bytes whose echo has been verified.
    verified: u64,
    /// Reply bytes consumed.
    reply_offset: u64,
}

impl Checker {
    /// A checker for replies to `pattern` from a server in `mode` that
    /// answers `got` reads of at most `read_size` bytes and lines of at most
    /// `max_line` bytes whole (the server's `--read-size` and `--max-line`).
    pub fn new(pattern: Pattern, mode: Mode, read_size: usize, max_line: usize) -> Self {
        let framing = match mode {
            Mode::Raw => Framing::Raw,
            Mode::Got => Framing::Got { read_size: read_size.max(1) as u64 },
            Mode::Line => Framing::Line { max_line: max_line.max(1) as u64 },
        };
        let prefix_seen = if matches!(framing, Framing::Raw) { PREFIX.len() } else { 0 };
        Checker {
            pattern,
            framing,
            prefix_seen,
            piece_len: 0,
            piece_room: u64::MAX,
            verified: 0,
            reply_offset: 0,
        }
    }

    /// Request bytes whose echo has arrived and matched.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Reply bytes consumed.
    pub fn reply_offset(&self) -> u64 {
        self.reply_offset
    }

    /// Whether the reply stream may end here: not inside a prefix, not after
    /// an empty piece, not inside a line-mode piece.
    pub fn at_end_of_piece(&self) -> bool {
        match self.framing {
            Framing::Raw => true,
            Framing::Got { .. } => {
                self.prefix_seen == 0 || (self.prefix_seen == PREFIX.len() && self.piece_len > 0)
            }
            Framing::Line { .. } => {
                self.prefix_seen == 0 || (self.prefix_seen == PREFIX.len() && self.piece_room == 0)
            }
        }
    }

    /// Checks the next reply bytes: prefixes byte by byte, payload a run at
    /// a time (payloads never hold `G`, so in `got` mode a run ends at the
    /// next `G`; in `line` mode where the piece must end).
    pub fn feed(&mut self, mut reply: &[u8]) -> Result<(), Mismatch> {
        while let Some(&first) = reply.first() {
            if self.prefix_seen < PREFIX.len() {
                if self.prefix_seen == 0 && reply.starts_with(PREFIX) {
                    // The common case: a whole prefix at once.
                    self.advance(&mut reply, PREFIX.len());
                    self.start_piece();
                    continue;
                }
                let want = PREFIX[self.prefix_seen];
                if first != want {
                    let why = match self.framing {
                        _ if self.prefix_seen > 0 => String::new(),
                        Framing::Got { read_size } if self.piece_len == read_size => {
                            format!(" (a got-mode piece holds at most --read-size {read_size} bytes)")
                        }
                        Framing::Line { max_line } => {
                            format!(
                                " (line mode answers each line, or each --max-line {max_line} bytes of a longer one)"
                            )
                        }
                        _ => String::new(),
                    };
                    return Err(self.mismatch(format!("{:?} of the GOT: prefix{why}", want as char), first));
                }
                self.advance(&mut reply, 1);
                self.prefix_seen += 1;
                if self.prefix_seen == PREFIX.len() {
                    self.start_piece();
                }
                continue;
            }
            let run = match self.framing {
                Framing::Raw => reply.len(),
                Framing::Line { .. } => {
                    if self.piece_room == 0 {
                        self.prefix_seen = 0;
                        continue;
                    }
                    reply.len().min(self.piece_room as usize)
                }
                Framing::Got { .. } => {
                    if self.piece_len > 0 && (first == PREFIX[0] || self.piece_room == 0) {
                        // This starts the next prefix.
                        self.prefix_seen = 0;
                        continue;
                    }
                    // A `G` that cannot start a prefix (an empty piece) is
                    // checked as payload, where it never matches.
                    let to_g = memchr::memchr(PREFIX[0], &reply[1..]).map_or(reply.len(), |i| i + 1);
                    to_g.min(self.piece_room as usize)
                }
            };
            if let Some(i) = self.pattern.first_difference(self.verified, &reply[..run]) {
                self.verified += i as u64;
                self.reply_offset += i as u64;
                let expected = self.pattern.byte(self.verified);
                let why = match self.framing {
                    Framing::Line { max_line } if reply[i] == PREFIX[0] => format!(
                        " (line mode answers a whole line, or --max-line {max_line} bytes of a longer one, after one GOT:)"
                    ),
                    _ => String::new(),
                };
                return Err(self.mismatch(format!("{:?}{why}", expected as char), reply[i]));
            }
            self.verified += run as u64;
            self.piece_len += run as u64;
            self.piece_room -= run as u64;
            self.advance(&mut reply, run);
        }
        Ok(())
    }

    /// A prefix has been read: the piece after it begins, at `verified`.
    fn start_piece(&mut self) {
        self.prefix_seen = PREFIX.len();
        self.piece_len = 0;
        self.piece_room = match self.framing {
            Framing::Raw => u64::MAX,
            Framing::Got { read_size } => read_size,
            // Pieces are cut at multiples of max_line from the line's
            // start, as echo_core::protocol answers: this piece starts at
            // one of them.
            Framing::Line { max_line } => {
                let size = self.pattern.size();
                max_line.min(size - self.verified % size)
            }
        };
    }

    /// Consumes `n` reply bytes.
    fn advance(&mut self, reply: &mut &[u8], n: usize) {
        *reply = &reply[n..];
        self.reply_offset += n as u64;
    }

    /// A [`Mismatch`] at the current position.
    pub fn mismatch(&self, expected: String, got: u8) -> Mismatch {
        self.failure(expected, format!("{:?}", got as char))
    }

    /// A failure of the reply stream at the current position, described in
    /// words.
    pub fn failure(&self, expected: String, got: String) -> Mismatch {
        Mismatch { offset: self.verified, reply_offset: self.reply_offset, expected, got }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo_core::Session;

    use echo_core::protocol::{DEFAULT_MAX_LINE, DEFAULT_READ_SIZE};

    fn checker_for(pattern: Pattern, mode: Mode) -> Checker {
        Checker::new(pattern, mode, DEFAULT_READ_SIZE, DEFAULT_MAX_LINE)
    }

    /// What a protocol-correct server answers to `input` in `mode`, read
    /// in chunks of `chunk` bytes.
    fn answer(mode: Mode, input: &[u8], chunk: usize, read_size: usize, max_line: usize) -> Vec<u8> {
        let mut session = Session::new(mode, read_size, max_line);
        for piece in input.chunks(chunk) {
            session.receive(piece);
        }
        session.pending().to_vec()
    }

    /// Whether a checker of `pattern` in `mode` finds fault with `reply`,
    /// fed in pieces of 1,000 bytes.
    fn caught(pattern: Pattern, mode: Mode, reply: &[u8]) -> bool {
        let mut checker = checker_for(pattern, mode);
        reply.chunks(1000).try_for_each(|c| checker.feed(c)).is_err()
    }

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
            let mut checker = checker_for(p, mode);
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
                    let mut checker = Checker::new(p, mode, 1 << 20, 1 << 20);
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
    fn connections_start_at_distinct_places() {
        let mut bases: Vec<u64> =
            (0..PERIOD as u64).map(|seed| Pattern::new(seed, 64, Mode::Raw).base).collect();
        bases.sort_unstable();
        bases.dedup();
        assert_eq!(bases.len(), PERIOD);
    }

    #[test]
    fn connections_send_different_streams() {
        let a = stream(&Pattern::new(0, 64, Mode::Raw), 4);
        let b = stream(&Pattern::new(1, 64, Mode::Raw), 4);
        assert_ne!(a, b);
        assert!(checker_for(Pattern::new(0, 64, Mode::Raw), Mode::Raw).feed(&b).is_err());
    }

    #[test]
    fn catches_a_corrupt_byte_a_missing_prefix_and_another_connection() {
        let p = Pattern::new(1, 64, Mode::Got);
        let mut reply = b"GOT:".to_vec();
        reply.extend(stream(&p, 2));
        let mut bad = reply.clone();
        bad[40] ^= 1;
        let err = checker_for(p, Mode::Got).feed(&bad).unwrap_err();
        assert_eq!((err.offset, err.reply_offset), (36, 40));
        assert!(checker_for(p, Mode::Got).feed(&reply[4..]).is_err());
        let other = Pattern::new(2, 64, Mode::Got);
        assert!(checker_for(other, Mode::Got).feed(&reply).is_err());
        assert!(checker_for(p, Mode::Got).feed(b"GOT:GOT:").is_err(), "empty piece");
    }

    /// Message `i` of `pattern`.
    fn message(pattern: &Pattern, i: u64) -> Vec<u8> {
        let mut out = Vec::new();
        pattern.message(i, &mut out);
        out
    }

    #[test]
    fn a_dropped_duplicated_or_swapped_whole_message_is_caught_at_any_size() {
        // 65,521 is the table's period: with messages one period apart in
        // the table every message was alike, and none of this was caught.
        for size in [65_521, 131_042, 65_520, 65_522, 64, 1] {
            for mode in Mode::ALL {
                if mode == Mode::Line && size == 1 {
                    continue; // every message is just its newline
                }
                let p = Pattern::new(5, size, mode);
                let messages: Vec<Vec<u8>> = (0..4).map(|i| message(&p, i)).collect();
                let good = messages.concat();
                let reply = |input: &[u8]| answer(mode, input, 4096, DEFAULT_READ_SIZE, DEFAULT_MAX_LINE);
                assert!(!caught(p, mode, &reply(&good)), "{mode}, size {size}: the correct reply");
                let dropped = [&messages[0][..], &messages[2], &messages[3]].concat();
                let duplicated = [&messages[0][..], &messages[0], &messages[1], &messages[2]].concat();
                let swapped = [&messages[1][..], &messages[0], &messages[2], &messages[3]].concat();
                for (what, input) in [("dropped", dropped), ("duplicated", duplicated), ("swapped", swapped)]
                {
                    assert!(caught(p, mode, &reply(&input)), "{mode}, size {size}: a {what} message passed");
                }
            }
        }
    }

    #[test]
    fn a_period_long_chunk_dropped_inside_a_long_got_message_is_caught() {
        let p = Pattern::new(11, 200_000, Mode::Got);
        let input = stream(&p, 2);
        let mut short = input.clone();
        short.drain(50_000..50_000 + PERIOD);
        let reply = answer(Mode::Got, &short, 1000, DEFAULT_READ_SIZE, DEFAULT_MAX_LINE);
        assert!(caught(p, Mode::Got, &reply), "a chunk of one period lines up again inside a message");
        let reply = answer(Mode::Got, &input, 1000, DEFAULT_READ_SIZE, DEFAULT_MAX_LINE);
        assert!(!caught(p, Mode::Got, &reply));
    }

    #[test]
    fn line_mode_wants_one_prefix_per_line_or_per_max_line_piece() {
        let p = Pattern::new(2, 2_000, Mode::Line);
        let input = stream(&p, 3);
        // Answered as got mode with 7-byte reads: a prefix every 7 bytes.
        let unframed = answer(Mode::Got, &input, 4096, 7, DEFAULT_MAX_LINE);
        assert!(caught(p, Mode::Line, &unframed));
        // Lines longer than --max-line: pieces of exactly max_line bytes.
        let pieces = answer(Mode::Line, &input, 333, 1000, 700);
        let mut checker = Checker::new(p, Mode::Line, 1000, 700);
        pieces.chunks(5).try_for_each(|c| checker.feed(c)).unwrap();
        assert_eq!(checker.verified(), input.len() as u64);
        assert!(checker.at_end_of_piece());
        let mut wrong_cut = Checker::new(p, Mode::Line, 1000, 600);
        assert!(wrong_cut.feed(&pieces).is_err(), "pieces cut at another --max-line");
        let mut whole = Checker::new(p, Mode::Line, 1000, DEFAULT_MAX_LINE);
        assert!(whole.feed(&pieces).is_err(), "pieces where whole lines were due");
    }

    #[test]
    fn got_mode_pieces_hold_at_most_read_size_bytes() {
        let p = Pattern::new(4, 300, Mode::Got);
        let input = stream(&p, 2);
        let big = answer(Mode::Got, &input, 4096, 100, DEFAULT_MAX_LINE);
        assert!(Checker::new(p, Mode::Got, 100, DEFAULT_MAX_LINE).feed(&big).is_ok());
        let err = Checker::new(p, Mode::Got, 99, DEFAULT_MAX_LINE).feed(&big).unwrap_err();
        assert!(err.expected.contains("--read-size 99"), "{err}");
    }

    #[test]
    fn a_reply_cut_inside_a_prefix_or_a_line_does_not_end_cleanly() {
        let p = Pattern::new(1, 64, Mode::Line);
        let mut checker = checker_for(p, Mode::Line);
        checker.feed(b"GO").unwrap();
        assert!(!checker.at_end_of_piece());
        let reply = answer(Mode::Line, &stream(&p, 1), 64, 1000, 1000);
        let mut checker = checker_for(p, Mode::Line);
        checker.feed(&reply[..30]).unwrap();
        assert!(!checker.at_end_of_piece());
        checker.feed(&reply[30..]).unwrap();
        assert!(checker.at_end_of_piece());
    }
}
