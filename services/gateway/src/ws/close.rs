//! Why the server closes a socket: the close codes API.md names, one name each.

/// A close code of this service's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// 1008: a malformed connect request (e.g. `after`).
    Policy = 1008,
    /// 1009: a frame over 64 KiB.
    TooBig = 1009,
    /// 1011: the server failed.
    Internal = 1011,
    /// 1012: the replica is restarting: reconnect, with `after=`.
    Restart = 1012,
    /// 1013: try again later: a dependency is down, or the client read too slowly.
    TryAgain = 1013,
    /// 4401: no valid token (missing, invalid, expired or revoked).
    Unauthorized = 4401,
    /// 4403: not (or no longer) a participant of the chat.
    Forbidden = 4403,
    /// 4404: no such chat.
    NotFound = 4404,
    /// 4408: no pong within the deadline.
    NoPong = 4408,
}

impl CloseCode {
    const ALL: [Self; 9] = [
        Self::Policy,
        Self::TooBig,
        Self::Internal,
        Self::Restart,
        Self::TryAgain,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::NoPong,
    ];

    /// The number on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code with this number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.code() == code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_numbers_are_as_api_md_names_them() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        let numbers: Vec<u16> = CloseCode::ALL.iter().map(|code| code.code()).collect();
        assert_eq!(numbers, [1008, 1009, 1011, 1012, 1013, 4401, 4403, 4404, 4408]);
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
