//! Judging a reply: an oracle for the deterministic modes and a parser for
//! `got`, both written without [`crate::protocol::Session`] so that a bug
//! there cannot hide behind the same bug here.

use std::borrow::Cow;

use super::{Failure, Target};
use crate::protocol::{Mode, PREFIX};

/// How many bytes a failure message shows on each side of a difference.
const SHOWN: usize = 24;

/// The exact `line`-mode reply to `input`: `GOT:` + each `\n`-terminated
/// line, a line longer than `max_line` cut into `max_line`-byte pieces. The
/// unterminated tail is answered only `at_eof`, apart from its full pieces.
pub fn line_reply(input: &[u8], max_line: usize, at_eof: bool) -> Vec<u8> {
    let max_line = max_line.max(1);
    let mut out = Vec::with_capacity(input.len() + input.len() / 8);
    for line in input.split_inclusive(|&b| b == b'\n') {
        let terminated = line.ends_with(b"\n");
        for piece in line.chunks(max_line) {
            if terminated || at_eof || piece.len() == max_line {
                out.extend_from_slice(PREFIX);
                out.extend_from_slice(piece);
            }
        }
    }
    out
}

/// Checks a reply as it arrives against the input that caused it.
///
/// In `line` and `raw` mode the reply must equal the oracle's byte for byte.
/// In `got` mode it must be a sequence of `GOT:` + piece, each piece
/// 1..=`read_size` bytes, the pieces concatenating to the input. When the
/// input holds a `G`, a `G` in the reply may start a prefix or be data; the
/// parser follows every reading at once (a small NFA, pruned at every byte),
/// so it accepts exactly the valid replies.
#[derive(Debug)]
pub struct ReplyChecker<'a> {
    check: Check<'a>,
    /// Reply bytes accepted so far.
    received: usize,
    /// The last few accepted bytes, to show where a difference happened.
    recent: Vec<u8>,
}

#[derive(Debug)]
enum Check<'a> {
    Exact(Cow<'a, [u8]>),
    Got(GotParser<'a>),
}

impl<'a> ReplyChecker<'a> {
    /// A checker for the reply `target` owes to `input`; `at_eof` says the
    /// client closed its side after it (so `line` mode answers the tail).
    pub fn new(target: &Target, input: &'a [u8], at_eof: bool) -> Self {
        let check = match target.mode {
            Mode::Raw => Check::Exact(Cow::Borrowed(input)),
            Mode::Line => Check::Exact(Cow::Owned(line_reply(input, target.max_line, at_eof))),
            Mode::Got => Check::Got(GotParser::new(input, target.read_size)),
        };
        ReplyChecker { check, received: 0, recent: Vec::new() }
    }

    /// Takes the next bytes of the reply; fails at the first wrong byte,
    /// including any byte past the end of a complete reply.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let result = match &mut self.check {
            Check::Exact(expected) => check_exact(expected, self.received, bytes),
            Check::Got(parser) => parser.feed(bytes),
        };
        if let Err((at, reason)) = result {
            let mut before = self.recent.clone();
            before.extend_from_slice(&bytes[..at]);
            let before = &before[before.len().saturating_sub(SHOWN)..];
            return Err(Failure::Mismatch(format!(
                "reply wrong at byte {}: {reason}; got {} after {}",
                self.received + at,
                show(&bytes[at..]),
                show(before),
            )));
        }
        self.received += bytes.len();
        let keep = bytes.len().min(SHOWN);
        self.recent.extend_from_slice(&bytes[bytes.len() - keep..]);
        let excess = self.recent.len().saturating_sub(SHOWN);
        self.recent.drain(..excess);
        Ok(())
    }

    /// Whether the whole reply has arrived.
    pub fn is_complete(&self) -> bool {
        match &self.check {
            Check::Exact(expected) => self.received == expected.len(),
            Check::Got(parser) => parser.is_complete(),
        }
    }

    /// A lower bound on the reply bytes still to come (at least 1 while the
    /// reply is incomplete), so a client can read without ever taking bytes
    /// that belong to a later reply.
    pub fn min_remaining(&self) -> usize {
        match &self.check {
            Check::Exact(expected) => expected.len() - self.received,
            Check::Got(parser) => parser.min_remaining(),
        }
    }

    /// How far the reply has come, for messages.
    pub fn progress(&self) -> String {
        match &self.check {
            Check::Exact(expected) => format!("{} of {} reply bytes received", self.received, expected.len()),
            Check::Got(parser) => format!(
                "{} of {} input bytes echoed back in {} reply bytes",
                parser.echoed(),
                parser.input.len(),
                self.received
            ),
        }
    }
}

/// Compares `bytes`, the reply from offset `at`, with `expected`. Returns
/// the offset in `bytes` of the first difference and what was expected.
fn check_exact(expected: &[u8], at: usize, bytes: &[u8]) -> Result<(), (usize, String)> {
    let want = &expected[at.min(expected.len())..];
    let n = bytes.len().min(want.len());
    // Slice equality is a memcmp, fast even in a debug build; look for the
    // exact offset only when something differs.
    if bytes[..n] != want[..n] {
        let i = bytes.iter().zip(want).position(|(a, b)| a != b).unwrap_or(n);
        return Err((i, format!("expected {}", show(&want[i..]))));
    }
    if bytes.len() > want.len() {
        return Err((n, format!("the {}-byte reply is complete; nothing more was due", expected.len())));
    }
    Ok(())
}

/// Where the `got` parser may stand: how much input the pieces so far have
/// echoed, and what the next reply byte may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct State {
    /// Input bytes echoed back so far.
    echoed: usize,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Inside a `GOT:` prefix, this many of its bytes seen.
    Prefix(usize),
    /// Inside a piece, this many of its bytes seen.
    Piece(usize),
}

#[derive(Debug)]
struct GotParser<'a> {
    input: &'a [u8],
    read_size: usize,
    /// Every reading of the reply so far that is still valid, sorted and
    /// deduplicated. Without a `G` in the input there is exactly one.
    states: Vec<State>,
    /// Scratch space for the next step's states.
    next: Vec<State>,
}

impl<'a> GotParser<'a> {
    fn new(input: &'a [u8], read_size: usize) -> Self {
        GotParser {
            input,
            read_size: read_size.max(1),
            states: vec![State { echoed: 0, phase: Phase::Prefix(0) }],
            next: Vec::new(),
        }
    }

    fn echoed(&self) -> usize {
        self.states.iter().map(|s| s.echoed).max().unwrap_or(0)
    }

    fn is_complete(&self) -> bool {
        let n = self.input.len();
        self.states.iter().any(|s| {
            s.echoed == n
                && match s.phase {
                    Phase::Piece(len) => len > 0,
                    Phase::Prefix(seen) => n == 0 && seen == 0,
                }
        })
    }

    fn min_remaining(&self) -> usize {
        let n = self.input.len();
        let least = self.states.iter().map(|s| {
            let prefix_left = match s.phase {
                Phase::Prefix(seen) => PREFIX.len() - seen,
                Phase::Piece(_) => 0,
            };
            n - s.echoed + prefix_left
        });
        least.min().unwrap_or(0).max(1)
    }

    /// Takes reply bytes; on failure returns the offset in `bytes` of the
    /// first byte no reading accepts, and why.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), (usize, String)> {
        let n = self.input.len();
        let mut i = 0;
        while i < bytes.len() {
            // Fast path: one reading, inside a piece. Bytes other than `G`
            // can only be data, so a run of them is compared in one go.
            if let [State { echoed, phase: Phase::Piece(len) }] = self.states[..] {
                let rest = &bytes[i..];
                let run = rest.iter().position(|&b| b == PREFIX[0]).unwrap_or(rest.len());
                let take = run.min(n - echoed).min(self.read_size - len);
                if take > 0 && rest[..take] == self.input[echoed..echoed + take] {
                    self.states[0] = State { echoed: echoed + take, phase: Phase::Piece(len + take) };
                    i += take;
                    continue;
                }
            }
            let byte = bytes[i];
            self.next.clear();
            for &state in &self.states {
                step(self.input, self.read_size, state, byte, &mut self.next);
            }
            if self.next.is_empty() {
                return Err((i, self.explain(byte)));
            }
            self.next.sort_unstable();
            self.next.dedup();
            std::mem::swap(&mut self.states, &mut self.next);
            i += 1;
        }
        Ok(())
    }

    /// Why `byte` fits no reading: told from the reading that got furthest.
    fn explain(&self, byte: u8) -> String {
        let n = self.input.len();
        let Some(state) = self.states.iter().max_by_key(|s| s.echoed) else {
            return "no valid reading left".into();
        };
        let at = state.echoed;
        match state.phase {
            _ if at == n => format!("all {n} input bytes were already echoed back; nothing more was due"),
            Phase::Prefix(seen) => {
                format!("expected {} (byte {} of a GOT: prefix)", show(&PREFIX[seen..seen + 1]), seen + 1)
            }
            Phase::Piece(len) if len == self.read_size && self.input[at] == byte => {
                format!("a piece longer than read_size ({} bytes): a GOT: prefix was due", self.read_size)
            }
            Phase::Piece(0) => {
                format!("expected input byte {} at input offset {at}", show(&self.input[at..]))
            }
            Phase::Piece(len) => format!(
                "expected input byte {} at input offset {at} or a new GOT: prefix ({len}-byte piece so far)",
                show(&self.input[at..])
            ),
        }
    }
}

/// Every state `state` may move to on reading `byte`.
fn step(input: &[u8], read_size: usize, state: State, byte: u8, next: &mut Vec<State>) {
    let State { echoed, phase } = state;
    // A new prefix needs at least one input byte left to echo after it.
    let more_input = echoed < input.len();
    match phase {
        Phase::Prefix(seen) => {
            if more_input && byte == PREFIX[seen] {
                let phase = if seen + 1 == PREFIX.len() { Phase::Piece(0) } else { Phase::Prefix(seen + 1) };
                next.push(State { echoed, phase });
            }
        }
        Phase::Piece(len) => {
            if more_input && len < read_size && input[echoed] == byte {
                next.push(State { echoed: echoed + 1, phase: Phase::Piece(len + 1) });
            }
            if more_input && len > 0 && byte == PREFIX[0] {
                next.push(State { echoed, phase: Phase::Prefix(1) });
            }
        }
    }
}

/// Splits a `got` or `line` reply into its pieces. Only for replies to an
/// input without `G`, where every `G` starts a prefix.
pub(crate) fn split_pieces(reply: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    if reply.is_empty() {
        return Ok(Vec::new());
    }
    let mut pieces = Vec::new();
    let mut offset = 0;
    for part in reply.split(|&b| b == PREFIX[0]).skip(1) {
        match part.strip_prefix(&PREFIX[1..]) {
            Some(piece) => pieces.push(piece),
            None => {
                return Err(Failure::Mismatch(format!(
                    "reply wrong at byte {offset}: expected a GOT: prefix, got {}",
                    show(&reply[offset..])
                )));
            }
        }
        offset += 1 + part.len();
    }
    if !reply.starts_with(PREFIX) {
        return Err(Failure::Mismatch(format!("reply does not start with GOT:, got {}", show(reply))));
    }
    Ok(pieces)
}

/// `bytes`, escaped and quoted, cut to a few bytes.
pub(crate) fn show(bytes: &[u8]) -> String {
    if bytes.len() > SHOWN {
        format!("\"{}\"...", bytes[..SHOWN].escape_ascii())
    } else {
        format!("\"{}\"", bytes.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(mode: Mode, read_size: usize, max_line: usize) -> Target {
        Target { addr: "127.0.0.1:1".parse().unwrap(), mode, read_size, max_line }
    }

    /// Feeds `reply` in `chunk`-byte pieces; returns whether it was complete.
    fn check(t: &Target, input: &[u8], at_eof: bool, reply: &[u8], chunk: usize) -> Result<bool, Failure> {
        let mut checker = ReplyChecker::new(t, input, at_eof);
        for part in reply.chunks(chunk) {
            checker.feed(part)?;
        }
        Ok(checker.is_complete())
    }

    fn got(input: &[u8], read_size: usize, reply: &[u8]) -> Result<bool, Failure> {
        let t = target(Mode::Got, read_size, 64);
        let whole = check(&t, input, false, reply, reply.len().max(1))?;
        assert_eq!(check(&t, input, false, reply, 1)?, whole, "byte at a time agrees");
        Ok(whole)
    }

    fn mismatch(result: Result<bool, Failure>) -> String {
        match result {
            Err(Failure::Mismatch(m)) => m,
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn got_accepts_valid_replies() {
        assert!(got(b"abcdef", 3, b"GOT:abcGOT:def").unwrap());
        assert!(got(b"abcdef", 1000, b"GOT:abcdef").unwrap());
        assert!(got(b"abcdef", 1000, b"GOT:aGOT:bcdeGOT:f").unwrap());
        assert!(got(b"", 1000, b"").unwrap());
    }

    #[test]
    fn got_rejects_missing_prefix() {
        assert!(mismatch(got(b"Hello\n", 1000, b"Hello\n")).contains("byte 1 of a GOT: prefix"));
        assert!(mismatch(got(b"abcdef", 1000, b"GOT:abcGOdef")).contains("byte 3 of a GOT: prefix"));
    }

    #[test]
    fn got_rejects_wrong_order() {
        let m = mismatch(got(b"abcdef", 1000, b"GOT:defGOT:abc"));
        assert!(m.contains("at byte 4") && m.contains("input offset 0"), "{m}");
    }

    #[test]
    fn got_truncated_is_incomplete() {
        assert!(!got(b"abcdef", 1000, b"GOT:abcGOT:de").unwrap());
        assert!(!got(b"abcdef", 1000, b"GOT:abcGO").unwrap());
        assert!(!got(b"abcdef", 1000, b"").unwrap());
    }

    #[test]
    fn got_rejects_long_empty_and_extra_pieces() {
        assert!(mismatch(got(b"abcdef", 3, b"GOT:abcdGOT:ef")).contains("longer than read_size (3 bytes)"));
        assert!(mismatch(got(b"abc", 1000, b"GOT:GOT:abc")).contains("input offset 0"));
        assert!(mismatch(got(b"abc", 1000, b"GOT:abcGOT:")).contains("already echoed back"));
        assert!(mismatch(got(b"abc", 1000, b"GOT:abcd")).contains("already echoed back"));
        assert!(mismatch(got(b"", 1000, b"GOT:")).contains("already echoed back"));
    }

    /// Every way of cutting an input holding `G` and `GOT:` itself into
    /// pieces of at most `read_size` gives a reply the parser accepts, and
    /// byte-level damage to it is caught.
    #[test]
    fn got_ambiguous_inputs() {
        let input = b"GaGOT:GGOT:G:";
        for read_size in [1, 2, 3, 5, 1000] {
            let n = input.len();
            // Cuts between bytes, as a bit mask.
            for mask in 0u32..(1 << (n - 1)) {
                let mut reply = Vec::new();
                let mut start = 0;
                let mut ok = true;
                for end in 1..=n {
                    if end == n || mask & (1 << (end - 1)) != 0 {
                        ok &= end - start <= read_size;
                        reply.extend_from_slice(PREFIX);
                        reply.extend_from_slice(&input[start..end]);
                        start = end;
                    }
                }
                if !ok {
                    continue;
                }
                assert!(got(input, read_size, &reply).unwrap(), "{}", reply.escape_ascii());
                let mut damaged = reply.clone();
                damaged.pop();
                assert!(!got(input, read_size, &damaged).unwrap_or(false));
                damaged.push(b'X');
                assert!(got(input, read_size, &damaged).is_err());
            }
        }
        let every: Vec<u8> = (0..=255).collect();
        let mut reply = Vec::new();
        for piece in every.chunks(71) {
            reply.extend_from_slice(PREFIX);
            reply.extend_from_slice(piece);
        }
        assert!(got(&every, 100, &reply).unwrap());
        assert!(got(&every, 70, &reply).is_err());
    }

    #[test]
    fn line_oracle() {
        assert_eq!(line_reply(b"Hello\nWorld\n", 64, false), b"GOT:Hello\nGOT:World\n");
        assert_eq!(line_reply(b"abcdefg\nhi", 4, false), b"GOT:abcdGOT:efg\n");
        assert_eq!(line_reply(b"abcdefg\nhi", 4, true), b"GOT:abcdGOT:efg\nGOT:hi");
        assert_eq!(line_reply(b"abcd\n", 4, false), b"GOT:abcdGOT:\n");
        assert_eq!(line_reply(b"abcdefghij", 4, false), b"GOT:abcdGOT:efgh");
        assert_eq!(line_reply(b"\n\n", 64, true), b"GOT:\nGOT:\n");
        assert_eq!(line_reply(b"", 64, true), b"");
    }

    #[test]
    fn exact_modes_point_at_the_difference() {
        let t = target(Mode::Raw, 1000, 64);
        assert!(check(&t, b"abcdef", false, b"abcdef", 2).unwrap());
        assert!(!check(&t, b"abcdef", false, b"abc", 2).unwrap());
        let m = mismatch(check(&t, b"abcdef", false, b"abcxef", 2));
        assert!(m.contains("at byte 3") && m.contains("expected \"def\"") && m.contains("got \"x\""), "{m}");
        assert!(mismatch(check(&t, b"ab", false, b"abc", 2)).contains("nothing more was due"));
        let t = target(Mode::Line, 1000, 4);
        assert!(check(&t, b"abcdefg\nhi", true, b"GOT:abcdGOT:efg\nGOT:hi", 3).unwrap());
        assert!(mismatch(check(&t, b"abcdefg\nhi", false, b"GOT:abcdefg\n", 3)).contains("at byte 8"));
    }

    #[test]
    fn pieces_split_at_prefixes() {
        assert_eq!(split_pieces(b"GOT:abGOT:c\n").unwrap(), [&b"ab"[..], b"c\n"]);
        assert!(split_pieces(b"abGOT:c").is_err());
        assert!(split_pieces(b"GOT:abGc").is_err());
        assert!(split_pieces(b"").unwrap().is_empty());
    }
}
