//! What a submission is for, encoded in the 64 bits of user data the kernel
//! hands back with its completion.

/// What a submission does; the low byte of its user data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// Accept one connection on the listener.
    Accept = 1,
    /// Read the shutdown eventfd.
    Wake = 2,
    /// Receive from a connection.
    Recv = 3,
    /// Send to a connection.
    Send = 4,
    /// Close a descriptor.
    Close = 5,
    /// Cancel another operation.
    Cancel = 6,
    /// One of the ring's [`Timer`]s.
    Timer = 7,
}

/// The user data of a submission: `key << 32 | generation << 8 | op`.
///
/// The key is the connection's slab slot and the generation tells apart
/// two connections that used the same slot one after the other, so a late
/// completion can never be taken for the newer connection's. Ring-wide
/// operations use key 0 and, for timers, the timer's index as generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token(u64);

/// Generations are stored in 24 bits of the user data.
const GEN_MASK: u32 = 0x00ff_ffff;

impl Token {
    /// The token of an operation on connection `key`.
    pub(crate) fn conn(key: u32, generation: u32, op: Op) -> Token {
        Token(u64::from(key) << 32 | u64::from(generation & GEN_MASK) << 8 | op as u64)
    }

    /// The token of a ring-wide operation.
    pub(crate) fn ring(op: Op) -> Token {
        Token::conn(0, 0, op)
    }

    /// The token of `timer`.
    pub(crate) fn timer(timer: Timer) -> Token {
        Token::conn(0, timer as u32, Op::Timer)
    }

    /// The raw user data, for a submission.
    pub(crate) fn user_data(self) -> u64 {
        self.0
    }

    /// The token a completion's user data carries.
    pub(crate) fn from_user_data(user_data: u64) -> Token {
        Token(user_data)
    }

    /// The operation, or `None` for a user data this crate never made.
    pub(crate) fn op(self) -> Option<Op> {
        Some(match self.0 as u8 {
            1 => Op::Accept,
            2 => Op::Wake,
            3 => Op::Recv,
            4 => Op::Send,
            5 => Op::Close,
            6 => Op::Cancel,
            7 => Op::Timer,
            _ => return None,
        })
    }

    /// The connection's slab key.
    pub(crate) fn key(self) -> usize {
        (self.0 >> 32) as usize
    }

    /// The connection's generation (masked to 24 bits).
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 8) as u32 & GEN_MASK
    }

    /// The timer a [`Op::Timer`] token stands for.
    pub(crate) fn timer_kind(self) -> Option<Timer> {
        Timer::ALL.into_iter().find(|t| *t as u32 == self.generation())
    }
}

/// The ring's timers; at most one of each is in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Time to look for idle connections.
    Idle = 0,
    /// The accept back-off is over.
    Retry = 1,
    /// The drain deadline has come.
    Drain = 2,
    /// Time to look at the send queues of draining connections that wait
    /// for their last replies to be acknowledged.
    Linger = 3,
    /// Time to look whether the server's budget of buffered replies has
    /// room again for the connections it stopped.
    Budget = 4,
}

impl Timer {
    /// How many timers there are.
    pub(crate) const COUNT: usize = 5;
    /// Every timer.
    pub(crate) const ALL: [Timer; Timer::COUNT] =
        [Timer::Idle, Timer::Retry, Timer::Drain, Timer::Linger, Timer::Budget];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = Token::conn(123_456, 0x0123_4567, Op::Send);
        assert_eq!(token.key(), 123_456);
        assert_eq!(token.generation(), 0x0023_4567);
        assert_eq!(token.op(), Some(Op::Send));
        assert_eq!(Token::timer(Timer::Drain).timer_kind(), Some(Timer::Drain));
        assert_eq!(Token::from_user_data(0).op(), None);
    }
}
