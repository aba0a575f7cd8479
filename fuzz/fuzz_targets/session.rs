//! Fuzzes the sans-IO protocol session: any bytes, in any chunking, in any
//! mode, handed over by copy or (in `got` mode) read straight into the
//! reply buffer or answered from the reader's buffer, must give the reply the mode defines, with bounded
//! buffering and no panic.
//!
//! Run with `cargo fuzz run session` from the workspace root (see the
//! README's "Reliability" section).
#![no_main]

use echo_core::protocol::{Mode, PREFIX, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, read_size, max_line, cut_seed, rest @ ..] = data else { return };
    let mode = Mode::ALL[*mode as usize % 3];
    let read_size = 1 + *read_size as usize % 64;
    let max_line = 1 + *max_line as usize % 64;

    // Feed the input in chunks whose sizes come from the seed byte, writing
    // out part of the reply after each, as a backend does on partial writes.
    let mut session = Session::new(mode, read_size, max_line);
    let mut reply = Vec::new();
    let mut expected_got = Vec::new();
    let mut start = 0;
    let mut seed = *cut_seed as usize;
    while start < rest.len() {
        seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
        let end = (start + 1 + (seed >> 8) % 97).min(rest.len());
        let chunk = &rest[start..end];
        if mode == Mode::Got && seed & 0x10000 != 0 {
            // As the thread per connection reads: each piece straight into
            // the reply buffer, after its prefix.
            for piece in chunk.chunks(read_size) {
                let room = session.read_space(piece.len()).expect("got mode reads in place");
                room.copy_from_slice(piece);
                session.commit_read(piece.len());
            }
        } else if mode == Mode::Got
            && seed & 0x20000 != 0
            && session.pending().is_empty()
            && chunk.len() <= read_size
        {
            // As the task loop answers a read with nothing pending: the
            // reply written from the read buffer, in part, the rest queued.
            let whole = [PREFIX, chunk].concat();
            let written = (seed >> 20) % (whole.len() + 1);
            reply.extend_from_slice(&whole[..written]);
            session.queue_unsent(&whole[written..]);
        } else {
            session.receive(chunk);
        }
        for piece in chunk.chunks(read_size) {
            expected_got.extend_from_slice(PREFIX);
            expected_got.extend_from_slice(piece);
        }
        // Output never grows past what was received plus prefixes, and a
        // partial line never past max_line.
        assert!(session.buffered() <= reply_bound(rest.len(), max_line));
        let n = session.pending().len() / 2;
        reply.extend_from_slice(&session.pending()[..n]);
        session.advance(n);
        start = end;
    }
    session.finish();
    reply.extend_from_slice(session.pending());
    let n = session.pending().len();
    session.advance(n);
    assert_eq!(session.buffered(), 0);

    match mode {
        Mode::Raw => assert_eq!(reply, rest),
        Mode::Got => assert_eq!(reply, expected_got),
        Mode::Line => assert_eq!(reply, line_reply(rest, max_line)),
    }
});

fn reply_bound(input: usize, max_line: usize) -> usize {
    input * (1 + PREFIX.len()) + max_line
}

/// The line-mode reply computed the simple way, independently of Session.
fn line_reply(input: &[u8], max_line: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    for &b in input {
        line.push(b);
        if b == b'\n' || line.len() == max_line {
            out.extend_from_slice(PREFIX);
            out.append(&mut line);
        }
    }
    if !line.is_empty() {
        out.extend_from_slice(PREFIX);
        out.append(&mut line);
    }
    out
}
