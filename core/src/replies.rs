//! A session's reply buffer: reply bytes queued at the back and written
//! from the front, with room a read can land in straight.
//!
//! The buffer's spare room stays initialized once it has been used, which
//! is what lets [`Replies::spare`] hand out room to read into as a plain
//! `&mut [u8]`: no unsafe code, and no zero-filling each time (which would
//! touch every cache line of a 1,000-byte read for a 64-byte message). The
//! vector's length is therefore how far the buffer was ever written, not
//! what is pending: bytes past [`Replies::pending`] are stale.

/// The capacity kept once every reply is sent; more than twice this is
/// given back.
const KEPT_CAPACITY: usize = 64 * 1024;

/// Sent bytes at the front worth moving the unsent rest over, so that a
/// peer that reads slowly does not make the buffer grow.
const COMPACT_AFTER: usize = 64 * 1024;

/// Reply bytes waiting to be written, and room for more.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    /// Initialized as far as its length; `buf[sent..end]` is pending.
    buf: Vec<u8>,
    /// How much has been written. Kept as an offset so a partial write
    /// costs no copy.
    sent: usize,
    /// Where the pending replies end.
    end: usize,
}

impl Replies {
    /// Reply bytes not yet written.
    #[inline]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.end]
    }

    /// How many reply bytes are waiting: [`Replies::pending`]'s length,
    /// without the bounds checks of slicing.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.end - self.sent
    }

    /// The memory held for replies.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Makes room for `additional` bytes after the pending ones, reusing
    /// the room of replies already sent first (see
    /// [`Replies::reuse_sent`]).
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.end + additional <= self.buf.capacity() {
            return;
        }
        self.reuse_sent(additional);
        // Past `end` is stale: a reallocation need not copy it.
        self.buf.truncate(self.end);
        self.buf.reserve(additional);
    }

    /// Moves the pending replies over those already sent when `additional`
    /// more bytes would not fit otherwise: moving what is pending costs no
    /// more than the copy a reallocation makes, and the buffer stays the
    /// size of what is pending (which the watermarks and the server's
    /// budget bound), not that plus up to 64 KiB already sent.
    pub(crate) fn reuse_sent(&mut self, additional: usize) {
        if self.sent > 0 && self.end + additional > self.buf.capacity() {
            self.compact();
        }
    }

    /// Queues `bytes` after the pending replies.
    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let end = self.end + bytes.len();
        if end <= self.buf.len() {
            self.buf[self.end..end].copy_from_slice(bytes);
        } else {
            self.buf.truncate(self.end);
            self.buf.extend_from_slice(bytes);
        }
        self.end = end;
    }

    /// `len` bytes of room right after the pending replies, to be filled
    /// and then queued with [`Replies::commit`]. Zeroed only where the
    /// buffer holds nothing written yet: the first time, and after it grew
    /// or moved its replies to the front (rare once traffic is steady).
    #[inline]
    pub(crate) fn spare(&mut self, len: usize) -> &mut [u8] {
        self.prepare(len);
        let end = self.end + len;
        &mut self.buf[self.end..end]
    }

    /// Makes [`Replies::spare`]'s room for `len` bytes ready, so that
    /// asking for it next costs one comparison.
    #[inline]
    pub(crate) fn prepare(&mut self, len: usize) {
        if self.end + len > self.buf.len() {
            self.grow(len);
        }
    }

    /// The rare part of [`Replies::prepare`]: the room holds nothing
    /// written yet.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, len: usize) {
        self.reserve(len);
        let end = self.end + len;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
    }

    /// Queues the first `n` bytes of the room [`Replies::spare`] gave.
    ///
    /// # Panics
    /// If `n` passes the end of the buffer's written room: a caller's bug.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "committed past the spare room");
        self.end += n;
    }

    /// Records that the first `n` pending bytes were written.
    ///
    /// # Panics
    /// If `n` is more than is pending: a backend bug, not a peer's doing.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        assert!(n <= self.len(), "advanced past the pending reply");
        self.sent += n;
        if self.sent == self.end {
            (self.sent, self.end) = (0, 0);
            // A burst (a flood of short lines, a client that read nothing
            // for a while) may have grown the buffer far past what steady
            // traffic needs; give that memory back once it is all sent.
            if self.buf.capacity() > 2 * KEPT_CAPACITY {
                self.shrink();
            }
        } else if self.sent >= COMPACT_AFTER && self.sent * 2 >= self.end {
            // Most of the buffer is already sent: move the rest to the front.
            self.compact();
        }
    }

    /// Gives back what a burst grew the buffer to, past what is kept.
    #[cold]
    fn shrink(&mut self) {
        self.buf.truncate(KEPT_CAPACITY);
        self.buf.shrink_to(KEPT_CAPACITY);
    }

    /// Moves the pending replies to the front of the buffer.
    fn compact(&mut self) {
        self.buf.copy_within(self.sent..self.end, 0);
        (self.sent, self.end) = (0, self.end - self.sent);
    }

    /// Gives the buffer's memory back if nothing is pending.
    pub(crate) fn release(&mut self) {
        if self.sent == self.end {
            *self = Replies::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_room_is_zeroed_once_and_reused() {
        let mut replies = Replies::default();
        replies.push(b"GOT:");
        let room = replies.spare(8);
        assert_eq!(room, [0; 8], "never written: zeroed");
        room[..2].copy_from_slice(b"hi");
        replies.commit(2);
        assert_eq!(replies.pending(), b"GOT:hi");
        replies.advance(6);
        // The stale bytes of the last round are handed out again, not
        // zeroed: whatever a read writes over them is what is queued.
        let room = replies.spare(4);
        assert_eq!(&room[..4], b"GOT:");
        room.copy_from_slice(b"abcd");
        replies.commit(3);
        assert_eq!(replies.pending(), b"abc");
        replies.push(b"!");
        assert_eq!(replies.pending(), b"abc!", "a push goes right after what was committed");
    }

    #[test]
    fn spare_room_moves_pending_replies_over_sent_ones() {
        let mut replies = Replies::default();
        replies.push(&[1; 100]);
        let capacity = replies.capacity();
        replies.advance(90);
        // Room for 85 bytes fits only once the 90 sent ones are reused.
        replies.spare(85).fill(2);
        replies.commit(85);
        assert_eq!(replies.capacity(), capacity, "grew instead of reusing sent room");
        assert_eq!(replies.pending(), [[1; 10].as_slice(), &[2; 85]].concat());
    }

    #[test]
    #[should_panic(expected = "committed past the spare room")]
    fn committing_more_than_the_room_panics() {
        let mut replies = Replies::default();
        replies.spare(4);
        replies.commit(5);
    }
}
