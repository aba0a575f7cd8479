//! The echo protocol as a sans-IO [`Session`]: bytes read go in, reply bytes
//! come out. It does no I/O and knows no runtime, so every backend drives the
//! same code and the protocol is tested without a socket.

use std::fmt;
use std::str::FromStr;

use crate::replies::Replies;

/// The prefix the seed puts before every reply: `b'GOT:' + data`.
pub const PREFIX: &[u8] = b"GOT:";

/// The seed's `recv(1000)`: the largest piece answered at once in `got` mode.
pub const DEFAULT_READ_SIZE: usize = 1000;

/// The longest line answered whole in `line` mode; longer ones come back in
/// pieces of this size, each prefixed, so a line never costs more memory.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How a server answers what it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The seed's protocol: `GOT:` + the bytes of each read of at most
    /// `read_size` bytes. What a client sees depends on how TCP split the
    /// stream; stripping the prefixes always gives the input back.
    #[default]
    Got,
    /// `GOT:` + each `\n`-terminated line, whatever the chunking.
    Line,
    /// RFC 862 echo: the input, byte for byte.
    Raw,
}

impl Mode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Mode; 3] = [Mode::Got, Mode::Line, Mode::Raw];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Got => "got",
            Mode::Line => "line",
            Mode::Raw => "raw",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a mode name that is not `got`, `line` or `raw`.
#[derive(Debug, thiserror::Error)]
#[error("unknown mode {0:?}: expected got, line or raw")]
pub struct UnknownMode(String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// The protocol state of one connection.
///
/// Feed it with [`Session::receive`] as bytes arrive and with
/// [`Session::finish`] at end of input; write out [`Session::pending`] and
/// report what was written with [`Session::advance`].
///
/// ```
/// use echo_core::protocol::{Mode, Session};
///
/// let mut session = Session::new(Mode::Line, 1000, 64 * 1024);
/// session.receive(b"Hel");
/// assert!(session.pending().is_empty()); // no full line yet
/// session.receive(b"lo\nWor");
/// assert_eq!(session.pending(), b"GOT:Hello\n");
/// session.advance(10);
/// session.finish(); // end of input answers the unterminated tail
/// assert_eq!(session.pending(), b"GOT:Wor");
/// ```
///
/// `repr(C)` keeps the fields in the order written: what every reply uses
/// first, what only `line` mode uses last (see [`Connection`](crate::Connection)
/// for why the order matters).
#[derive(Debug)]
#[repr(C)]
pub struct Session {
    /// Reply bytes not yet written, and room for more.
    out: Replies,
    /// Largest piece answered at once in `got` mode.
    read_size: usize,
    mode: Mode,
    /// Longest line answered whole in `line` mode.
    max_line: usize,
    /// The start of a line whose `\n` has not arrived yet (`line` mode only);
    /// never longer than `max_line`.
    line: Vec<u8>,
}

impl Session {
    /// A session for `mode`. `read_size` and `max_line` are clamped to at
    /// least 1 byte so the session always makes progress.
    pub fn new(mode: Mode, read_size: usize, max_line: usize) -> Self {
        Session {
            mode,
            read_size: read_size.max(1),
            max_line: max_line.max(1),
            line: Vec::new(),
            out: Replies::default(),
        }
    }

    /// The mode this session answers in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes bytes read from the peer and queues their reply.
    pub fn receive(&mut self, input: &[u8]) {
        match self.mode {
            Mode::Raw => {
                self.out.reserve(input.len());
                self.out.push(input);
            }
            // A read larger than `read_size` is answered as several reads
            // would have been, so a backend may read with a larger buffer.
            // The usual case, one read of 1..=`read_size` bytes: one
            // reservation for the reply rather than a check per piece.
            // (Nothing read, nothing answered: that is the loop below.)
            Mode::Got if !input.is_empty() && input.len() <= self.read_size => {
                self.out.reserve(PREFIX.len() + input.len());
                self.out.push(PREFIX);
                self.out.push(input);
            }
            Mode::Got => {
                self.out.reserve(input.len());
                for piece in input.chunks(self.read_size) {
                    self.out.push(PREFIX);
                    self.out.push(piece);
                }
            }
            Mode::Line => self.receive_lines(input),
        }
    }

    fn receive_lines(&mut self, mut rest: &[u8]) {
        // Not `reserve`: most of the input may be a partial line, which
        // goes to `line`, not to the replies.
        self.out.reuse_sent(rest.len());
        while !rest.is_empty() {
            let room = self.max_line - self.line.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.emit_line(&window[..=end]);
                    rest = &rest[end + 1..];
                }
                None => {
                    rest = &rest[window.len()..];
                    if window.len() == room {
                        // The line reached `max_line` without a newline:
                        // answer this piece now instead of buffering more.
                        self.emit_line(window);
                    } else {
                        self.line.extend_from_slice(window);
                    }
                }
            }
        }
    }

    /// Answers the buffered start of a line followed by `tail`.
    fn emit_line(&mut self, tail: &[u8]) {
        self.out.push(PREFIX);
        self.out.push(&self.line);
        self.out.push(tail);
        self.line.clear();
    }

    /// The peer sent its last byte: answer an unterminated line, if any.
    pub fn finish(&mut self) {
        if self.mode == Mode::Line && !self.line.is_empty() {
            self.emit_line(&[]);
        }
    }

    /// Reply bytes not yet written.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        self.out.pending()
    }

    /// How many reply bytes are waiting to be written:
    /// [`Session::pending`]'s length, the cheaper way.
    #[inline]
    pub fn pending_len(&self) -> usize {
        self.out.len()
    }

    /// Queues `tail`, the part of a `got` reply that a backend built and
    /// wrote itself but not whole (see
    /// [`Connection::answered`](crate::Connection::answered)). Only while
    /// nothing is pending, so the reply keeps its place.
    pub fn queue_unsent(&mut self, tail: &[u8]) {
        debug_assert!(self.mode == Mode::Got && self.out.len() == 0, "a reply answered out of turn");
        if !tail.is_empty() {
            self.out.reserve(tail.len());
            self.out.push(tail);
        }
    }

    /// In `got` mode, where one read is one reply, room for a read of up to
    /// `len` bytes straight into the output buffer, right after its reply's
    /// prefix, so that the bytes read are never copied; `None` in the other
    /// modes. Hand the count read to [`Session::commit_read`]; after a
    /// failed read, do nothing.
    ///
    /// ```
    /// use echo_core::protocol::{Mode, Session};
    ///
    /// let mut session = Session::new(Mode::Got, 1000, 64 * 1024);
    /// let room = session.read_space(1000).expect("got mode");
    /// room[..5].copy_from_slice(b"Hello"); // what a read would do
    /// session.commit_read(5);
    /// assert_eq!(session.pending(), b"GOT:Hello");
    /// ```
    #[inline]
    pub fn read_space(&mut self, len: usize) -> Option<&mut [u8]> {
        let room = self.out.spare(self.read_room(len)?);
        let (prefix, room) = room.split_at_mut(PREFIX.len());
        prefix.copy_from_slice(PREFIX);
        Some(room)
    }

    /// Makes [`Session::read_space`]'s room for `len` bytes ready, growing
    /// the output buffer if it must, so that asking for it next neither
    /// grows nor moves anything: what lets a caller count the buffer's
    /// new size before it lends the room out.
    #[inline]
    pub fn prepare_read(&mut self, len: usize) {
        if let Some(room) = self.read_room(len) {
            self.out.prepare(room);
        }
    }

    /// The output buffer room a read of up to `len` bytes in place takes,
    /// prefix included; `None` outside `got` mode.
    #[inline]
    fn read_room(&self, len: usize) -> Option<usize> {
        (self.mode == Mode::Got).then(|| PREFIX.len() + len.min(self.read_size))
    }

    /// Queues the reply to a read of `n` bytes into [`Session::read_space`]
    /// (nothing for `n == 0`: end of input is [`Session::finish`]).
    ///
    /// # Panics
    /// If `n` is more than the room that was given: a backend bug.
    #[inline]
    pub fn commit_read(&mut self, n: usize) {
        if n > 0 {
            self.out.commit(PREFIX.len() + n);
        }
    }

    /// Records that the first `n` bytes of [`Session::pending`] were written.
    ///
    /// # Panics
    /// If `n` is more than is pending: a backend bug, not a peer's doing.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// The output buffer's capacity: the memory it holds for replies.
    pub fn capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Gives the output buffer's memory back if nothing is pending, instead
    /// of keeping up to 128 KiB of it for the next burst.
    pub fn release_buffer(&mut self) {
        self.out.release();
    }

    /// Bytes buffered for this connection: pending replies and a partial line.
    pub fn buffered(&self) -> usize {
        self.out.len() + self.line.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` split at `cuts`, then end of input; returns the reply.
    fn reply(mode: Mode, read_size: usize, max_line: usize, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut session = Session::new(mode, read_size, max_line);
        let mut out = Vec::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for cut in cuts {
            session.receive(&input[start..cut]);
            start = cut;
            // Write out an odd amount each time, as a partial write would.
            let n = session.pending().len().div_ceil(2);
            out.extend_from_slice(&session.pending()[..n]);
            session.advance(n);
        }
        session.finish();
        out.extend_from_slice(session.pending());
        let n = session.pending().len();
        session.advance(n);
        assert_eq!(session.buffered(), 0);
        out
    }

    /// Splits a `got` reply into its pieces, knowing the input has no `G`.
    fn got_pieces(reply: &[u8]) -> Vec<&[u8]> {
        assert!(reply.is_empty() || reply.starts_with(PREFIX), "reply must start with GOT:");
        reply.split(|&b| b == b'G').skip(1).map(|p| &p[3..]).collect()
    }

    #[test]
    fn seed_transcript() {
        assert_eq!(reply(Mode::Got, 1000, 64, b"Hello\n", &[]), b"GOT:Hello\n");
        assert_eq!(reply(Mode::Line, 1000, 64, b"Hello\n", &[2]), b"GOT:Hello\n");
        assert_eq!(reply(Mode::Raw, 1000, 64, b"Hello\n", &[2]), b"Hello\n");
    }

    #[test]
    fn got_answers_each_read() {
        assert_eq!(reply(Mode::Got, 1000, 64, b"abcdef", &[2]), b"GOT:abGOT:cdef");
        assert_eq!(reply(Mode::Got, 2, 64, b"abcde", &[]), b"GOT:abGOT:cdGOT:e");
    }

    #[test]
    fn line_pieces_and_tail() {
        assert_eq!(reply(Mode::Line, 1000, 4, b"abcdefg\nhi", &[]), b"GOT:abcdGOT:efg\nGOT:hi");
        assert_eq!(reply(Mode::Line, 1000, 4, b"abcd\n", &[]), b"GOT:abcdGOT:\n");
        assert_eq!(reply(Mode::Line, 1000, 64, b"\n\n", &[1]), b"GOT:\nGOT:\n");
    }

    #[test]
    fn empty_input_gets_no_reply() {
        for mode in Mode::ALL {
            assert!(reply(mode, 1000, 64, b"", &[]).is_empty(), "{mode}");
        }
    }

    #[test]
    fn only_got_mode_reads_in_place() {
        assert!(Session::new(Mode::Line, 1000, 64).read_space(1000).is_none());
        assert!(Session::new(Mode::Raw, 1000, 64).read_space(1000).is_none());
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("echo".parse::<Mode>().unwrap_err().to_string().contains("got, line or raw"));
    }

    /// A writer that lags: each turn it takes less than the whole pending
    /// reply, so the buffer is never emptied and `advance` never gets to
    /// clear it. The reader feeds it as a backend does, only while the
    /// pending reply is under a high watermark. Many megabytes pass through;
    /// the buffer stays bounded only because `advance` moves the unsent
    /// rest to the front once most of it is sent, and every byte comes out
    /// in order, so the compaction moved the right bytes.
    #[test]
    fn slow_writer_keeps_buffer_bounded() {
        const HIGH_WATERMARK: usize = 64 * 1024;
        const READ: usize = 16 * 1024;
        const WRITE: usize = 10 * 1024;
        let pattern = |offset: usize| (offset % 251) as u8;
        let mut session = Session::new(Mode::Raw, 1000, 64);
        let (mut received, mut sent) = (0, 0);
        let mut largest = 0;
        while sent < 4 << 20 {
            if session.pending().len() < HIGH_WATERMARK {
                let chunk: Vec<u8> = (received..received + READ).map(pattern).collect();
                session.receive(&chunk);
                received += READ;
            }
            let pending = session.pending();
            // Less than everything: the rest waits for the next turn.
            let n = WRITE.min(pending.len() - 1);
            assert!(pending[..n].iter().enumerate().all(|(i, &b)| b == pattern(sent + i)), "at {sent}");
            session.advance(n);
            sent += n;
            assert!(!session.pending().is_empty(), "the writer must lag, never catch up");
            largest = largest.max(session.out.capacity());
        }
        assert!(largest <= 256 * 1024, "the output buffer grew to {largest} bytes");
    }

    proptest! {
        #[test]
        fn line_and_raw_ignore_chunking(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..600),
            cuts_a in proptest::collection::vec(any::<usize>(), 0..8),
            cuts_b in proptest::collection::vec(any::<usize>(), 0..8),
            max_line in 1usize..40,
        ) {
            for mode in [Mode::Line, Mode::Raw] {
                let a = reply(mode, 1000, max_line, &input, &cuts_a);
                let b = reply(mode, 1000, max_line, &input, &cuts_b);
                prop_assert_eq!(&a, &b);
            }
            prop_assert_eq!(reply(Mode::Raw, 1000, max_line, &input, &cuts_a), input);
        }

        #[test]
        fn line_pieces_rebuild_input(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), b'a'..=b'z'], 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_line in 1usize..40,
        ) {
            let out = reply(Mode::Line, 1000, max_line, &input, &cuts);
            let pieces = got_pieces(&out);
            prop_assert_eq!(pieces.concat(), input);
            for piece in &pieces[..pieces.len().saturating_sub(1)] {
                prop_assert!(piece.ends_with(b"\n") || piece.len() == max_line);
            }
        }

        /// Reads that land in the reply buffer ([`Session::read_space`])
        /// are answered exactly as reads handed over by copy, whatever the
        /// read sizes and however much of the reply each write takes.
        #[test]
        fn reads_in_place_answer_as_copied_ones(
            reads in proptest::collection::vec((1usize..1200, any::<u8>(), 0usize..3000), 1..40),
            read_size in 1usize..1200,
        ) {
            let mut copied = Session::new(Mode::Got, read_size, 64);
            let mut in_place = Session::new(Mode::Got, read_size, 64);
            let (mut out_copied, mut out_in_place) = (Vec::new(), Vec::new());
            for (len, byte, write) in reads {
                let room = in_place.read_space(len).expect("got mode");
                let n = room.len();
                prop_assert_eq!(n, len.min(read_size));
                room.fill(byte);
                in_place.commit_read(n);
                copied.receive(&vec![byte; n]);
                for (session, out) in [(&mut copied, &mut out_copied), (&mut in_place, &mut out_in_place)] {
                    let n = write.min(session.pending().len());
                    out.extend_from_slice(&session.pending()[..n]);
                    session.advance(n);
                }
            }
            out_copied.extend_from_slice(copied.pending());
            out_in_place.extend_from_slice(in_place.pending());
            prop_assert_eq!(out_copied, out_in_place);
        }

        #[test]
        fn got_strips_back_to_input(
            input in proptest::collection::vec(any::<u8>().prop_filter("no G", |&b| b != b'G'), 0..3000),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            read_size in 1usize..1200,
        ) {
            let out = reply(Mode::Got, read_size, 64, &input, &cuts);
            let pieces = got_pieces(&out);
            prop_assert_eq!(pieces.concat(), input);
            for piece in pieces {
                prop_assert!((1..=read_size).contains(&piece.len()));
            }
        }
    }
}
