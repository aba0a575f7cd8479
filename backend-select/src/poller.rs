//! Which readiness call the scheduler makes.

use std::fmt;
use std::str::FromStr;

/// The readiness call the scheduler blocks in when no task is ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Poller {
    /// select(2), as the seed does. It cannot watch descriptors numbered
    /// 1024 (`FD_SETSIZE`) or more: such connections are closed at once,
    /// logged and counted as refused.
    #[default]
    Select,
    /// poll(2): the same loop with no limit on descriptor numbers.
    Poll,
}

impl Poller {
    /// Every poller, in the order the CLI lists them.
    pub const ALL: [Poller; 2] = [Poller::Select, Poller::Poll];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Poller::Select => "select",
            Poller::Poll => "poll",
        }
    }
}

impl fmt::Display for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a poller name that is not `select` or `poll`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPoller(String);

impl fmt::Display for UnknownPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown poller {:?}: expected select or poll", self.0)
    }
}

impl std::error::Error for UnknownPoller {}

impl FromStr for Poller {
    type Err = UnknownPoller;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Poller::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPoller(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for poller in Poller::ALL {
            assert_eq!(poller.to_string().parse::<Poller>(), Ok(poller));
        }
        assert_eq!(Poller::default(), Poller::Select);
        assert!("epoll".parse::<Poller>().unwrap_err().to_string().contains("select or poll"));
    }
}
