//! The cases, each a plain `pub fn(&Target) -> Result<(), Failure>` listed
//! in [`super::CASES`]. Every reply is judged by the mode-aware checker (see
//! [`super::ReplyChecker`]), so each case can fail in every mode.
//!
//! Connections end with `Client::close`: a last round trip that would show
//! any stray byte, then a close. Only `half_close`, `half_close_backed_up`
//! and `empty_connection` require the server to end the stream after the
//! client's end of input, so a server that never closes (the seed, say)
//! fails those three, not all.

use super::client::{Buffers, Client, Deadline, Plan};
use super::payload::{bytes, lines};
use super::verify::{show, split_pieces};
use super::{Failure, Target};
use crate::protocol::Mode;

/// Clients connected at once in [`many_clients`].
const CLIENTS: usize = 100;
/// Round trips each of them makes.
const ROUNDS: usize = 3;
/// Bytes streamed by [`large_stream`].
const LARGE: usize = 16 << 20;
/// Bytes written before reading by [`slow_reader`].
const UNREAD: usize = 8 << 20;
/// The receive buffer of [`slow_reader`]'s client, and both buffers of
/// [`half_close_backed_up`]'s.
const SMALL_BUFFER: usize = 64 << 10;
/// The most [`half_close_backed_up`] writes before it closes its write side,
/// backed up or not. Correct servers on loopback back up after 4 to 6 MiB;
/// a server that reads everything into memory never does, and of its
/// replies only what the kernel holds on the way back survives its close at
/// end of input: its send buffer (up to `tcp_wmem`'s limit, 4 MiB by
/// default on Linux) and the client's receive buffer. 16 MiB leaves such a
/// server megabytes short even after the replies the client reads while it
/// is still catching up on its input.
const BACKLOG: usize = 16 << 20;

/// The seed's transcript: `Hello\n`, then `World\n` on the same connection,
/// each answered (`GOT:Hello\n`, `GOT:World\n`; raw: the echo) before the
/// next is sent, and nothing else.
pub fn seed_transcript(target: &Target) -> Result<(), Failure> {
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    client.round_trip(target, b"Hello\n")?;
    client.round_trip(target, b"World\n")?;
    client.close(target)
}

/// 100 clients connected at once make interleaved round trips: each sends
/// its own message, then every reply is read, for several rounds. Each
/// reply must come on its own connection, whole and in order.
pub fn many_clients(target: &Target) -> Result<(), Failure> {
    let deadline = Deadline::start();
    let mut clients = (0..CLIENTS)
        .map(|i| Client::connect(target, deadline, &format!("client {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    for round in 0..ROUNDS {
        let in_round = |f: Failure| f.within(&format!("round {round}"));
        let messages: Vec<_> = (0..CLIENTS).map(|i| message(i, round)).collect();
        for (client, message) in clients.iter_mut().zip(&messages) {
            client.send(message).map_err(in_round)?;
        }
        for (client, message) in clients.iter_mut().zip(&messages) {
            client.expect_reply(target, message).map_err(in_round)?;
        }
    }
    clients.into_iter().try_for_each(|client| client.close(target))
}

/// A message no other client sends in any round, 1 to 1.5 KB, in lines.
fn message(client: usize, round: usize) -> Vec<u8> {
    let mut message = format!("client {client} round {round}: ").into_bytes();
    let len = 1 + (client * 37 + round * 101) % 1500;
    message.extend(lines(len, (client * ROUNDS + round) as u64, 40..=400));
    message
}

/// All 256 byte values, 16 times over, then `\n`: every value comes back
/// unchanged (in `got` mode the input holds `G`, and the checker resolves
/// which `G` starts a prefix).
pub fn every_byte_value(target: &Target) -> Result<(), Failure> {
    let mut input: Vec<u8> = (0..16).flat_map(|_| 0..=255u8).collect();
    input.push(b'\n');
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    client.round_trip(target, &input)?;
    client.close(target)
}

/// 16 MiB written from one thread while another reads: every reply byte
/// comes back, in order, and nothing after it.
pub fn large_stream(target: &Target) -> Result<(), Failure> {
    let input = lines(LARGE, 16, 1..=2000);
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    client.exchange(target, &input, Plan::default())?;
    client.close(target)
}

/// The client writes 8 MiB before it reads anything: it starts reading once
/// the writer is done or has stalled (the server stopped reading, its output
/// over the high watermark). Then every reply byte must come, in order, and
/// the writer must finish: a server that drops what it cannot write at once,
/// or stops for good, fails here.
pub fn slow_reader(target: &Target) -> Result<(), Failure> {
    let input = lines(UNREAD, 8, 1..=2000);
    // A small receive buffer keeps the kernel from absorbing much of what
    // the server sends: the server has to hold (and bound) the rest.
    let buffers = Buffers { receive: Some(SMALL_BUFFER), ..Buffers::default() };
    let mut client = Client::connect_with(target, Deadline::start(), "client", buffers)?;
    client.exchange(target, &input, Plan { read_after_stall: true, ..Plan::default() })?;
    client.close(target)
}

/// The client writes 100 KiB and an unterminated tail, then closes its
/// write side: it gets every reply (in `line` mode the tail too, answered at
/// end of input), then a clean end of stream, not a reset.
pub fn half_close(target: &Target) -> Result<(), Failure> {
    let mut input = lines(100 << 10, 3, 1..=200);
    input.extend_from_slice(b"an unterminated tail, answered at end of input");
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    client.exchange(target, &input, Plan { shutdown: true, ..Plan::default() })?;
    client.expect_eof()
}

/// The client writes without reading until the connection is backed up
/// both ways: its replies fill the client's receive buffer and the server's
/// send buffer, the server (its output over the high watermark) stops
/// reading, and the input fills the server's receive buffer and the client's
/// send buffer, until a write takes nothing for a while; or until 16 MiB are
/// written, whichever comes first. Then it closes its write side with all
/// that still queued, and only then reads: every reply byte must come (in
/// `line` mode the unterminated tail too), then a clean end of stream, not
/// a reset. [`half_close`] sends too little to queue anything; here a
/// server that reads everything into memory and closes at end of input
/// with replies still queued loses megabytes.
pub fn half_close_backed_up(target: &Target) -> Result<(), Failure> {
    let input = lines(BACKLOG, 4, 1..=2000);
    let buffers = Buffers { receive: Some(SMALL_BUFFER), send: Some(SMALL_BUFFER) };
    let mut client = Client::connect_with(target, Deadline::start(), "client", buffers)?;
    let backlog = client.write_until_stalled(&input)?;
    let how = if backlog.stalled { "until the writes stalled" } else { "the server took it all" };
    let context = format!("after {} bytes written unread ({how}) and the write side closed", backlog.written);
    client.shutdown_write().map_err(|f| f.within(&context))?;
    client.expect_last_reply(target, &input[..backlog.written]).map_err(|f| f.within(&context))?;
    client.expect_eof().map_err(|f| f.within(&context))
}

/// One client writes as much as the socket buffers take without reading,
/// then resets the connection. A connection opened before goes on working,
/// and a fresh client is served.
pub fn reset_mid_stream(target: &Target) -> Result<(), Failure> {
    let deadline = Deadline::start();
    let mut before = Client::connect(target, deadline, "client A (connected before the reset)")?;
    before.round_trip(target, b"before the reset\n")?;
    let mut resetting = Client::connect(target, deadline, "client B (resets)")?;
    resetting.round_trip(target, b"about to write a lot, then reset\n")?;
    resetting.flood(&lines(4 << 20, 5, 1..=2000))?;
    resetting.reset()?;
    before.round_trip(target, b"after the reset\n")?;
    let mut after = Client::connect_retrying(target, deadline, "client C (connected after the reset)")?;
    after.round_trip(target, b"a fresh client after the reset\n")?;
    before.close(target)?;
    after.close(target)
}

/// A client that sends nothing and closes its write side gets a clean end
/// of stream with no byte at all; clients that connect and close, or
/// connect and reset, do not disturb a following round trip.
pub fn empty_connection(target: &Target) -> Result<(), Failure> {
    let deadline = Deadline::start();
    Client::connect(target, deadline, "client A (sends nothing)")?.finish()?;
    drop(Client::connect(target, deadline, "client B (connects and closes)")?);
    Client::connect(target, deadline, "client C (connects and resets)")?.reset()?;
    let mut client = Client::connect_retrying(target, deadline, "client D")?;
    client.round_trip(target, b"after empty connections\n")?;
    client.close(target)
}

/// The same input (many short lines and one over `max_line`) sent in two
/// very different chunkings on two connections: 2000 one-byte writes then
/// 64 KiB writes, and one single write. `line` and `raw` replies are exact
/// and identical; `got` replies both strip to the input.
pub fn chunking_independence(target: &Target) -> Result<(), Failure> {
    let deadline = Deadline::start();
    let long = (2 * target.max_line.max(1) + 100).min(1 << 20);
    let mut input = lines(64 << 10, 11, 1..=80);
    input.extend(bytes(long, 12));
    input.push(b'\n');
    input.extend(lines(64 << 10, 13, 1..=80));

    let mut trickle = Client::connect(target, deadline, "client 1 (byte at a time, then 64 KiB writes)")?;
    let first = trickle.exchange(target, &input, Plan { bytewise: 2000, ..Plan::default() })?;
    let mut whole = Client::connect(target, deadline, "client 2 (one write)")?;
    let second = whole.exchange(target, &input, Plan { chunk: usize::MAX, ..Plan::default() })?;
    if target.mode != Mode::Got && first != second {
        let at = first.iter().zip(&second).position(|(a, b)| a != b).unwrap_or(first.len().min(second.len()));
        return Err(Failure::Mismatch(format!(
            "the two chunkings got different replies from byte {at}: {} and {}",
            show(&first[at.min(first.len())..]),
            show(&second[at.min(second.len())..]),
        )));
    }
    trickle.close(target)?;
    whole.close(target)
}

/// A line of 3 × `max_line` + 17 bytes, one of exactly `max_line`, then a
/// short one: `line` mode answers the long ones in prefixed pieces of exactly
/// `max_line` bytes, the rest whole; `got` and `raw` as usual.
pub fn long_lines(target: &Target) -> Result<(), Failure> {
    let max_line = target.max_line.max(1);
    let mut input = bytes(3 * max_line + 17, 21);
    input.push(b'\n');
    input.extend(bytes(max_line, 22));
    input.push(b'\n');
    input.extend_from_slice(b"short\n");
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    let reply = client.exchange(target, &input, Plan::default())?;
    if target.mode == Mode::Line {
        check_line_pieces(&reply, max_line)?;
    }
    client.close(target)
}

/// 10 × `read_size` + 3 bytes, a line over `max_line` and a short one, in
/// one write: in `got` mode every piece is 1..=`read_size` bytes (however
/// TCP split the input; the pieces' sizes are all a client may rely on); in
/// `line` mode every piece ends with `\n` or is exactly `max_line` bytes;
/// `raw` is exact.
pub fn got_piece_sizes(target: &Target) -> Result<(), Failure> {
    let read_size = target.read_size.max(1);
    let max_line = target.max_line.max(1);
    let mut input = bytes(10 * read_size + 3, 31);
    input.push(b'\n');
    input.extend(bytes((2 * max_line + 5).min(1 << 20), 32));
    input.extend_from_slice(b"\ntail\n");
    let mut client = Client::connect(target, Deadline::start(), "client")?;
    let reply = client.exchange(target, &input, Plan { chunk: usize::MAX, ..Plan::default() })?;
    match target.mode {
        Mode::Got => {
            for (i, piece) in split_pieces(&reply)?.iter().enumerate() {
                if !(1..=read_size).contains(&piece.len()) {
                    return Err(Failure::Mismatch(format!(
                        "got piece {i} is {} bytes, outside 1..={read_size}",
                        piece.len()
                    )));
                }
            }
        }
        Mode::Line => check_line_pieces(&reply, max_line)?,
        Mode::Raw => {}
    }
    client.close(target)
}

/// Every piece of a `line` reply (to an input without `G`) is a whole line
/// of at most `max_line` bytes or a `max_line`-byte cut of a longer one.
fn check_line_pieces(reply: &[u8], max_line: usize) -> Result<(), Failure> {
    for (i, piece) in split_pieces(reply)?.iter().enumerate() {
        if piece.len() > max_line || !(piece.ends_with(b"\n") || piece.len() == max_line) {
            return Err(Failure::Mismatch(format!(
                "line piece {i} is {} bytes ending {}: neither a whole line nor a {max_line}-byte cut",
                piece.len(),
                show(&piece[piece.len().saturating_sub(8)..])
            )));
        }
    }
    Ok(())
}
