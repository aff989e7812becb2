//! Frames on the wire: a two-byte schema version, then the message in `postcard`.
//!
//! ```text
//! +-------+-------+---------------------------------------------+
//! | major | minor | postcard(Envelope | Ack | ConfigUpdate | ...) |
//! +-------+-------+---------------------------------------------+
//! ```
//!
//! A decoder refuses an unknown major version before it reads the body. Within a major version
//! a newer minor may append enum variants (an older decoder reports them as
//! [`DecodeError::Malformed`]) and may append bytes after the message, which an older decoder
//! skips; for its own or an older minor a decoder refuses trailing bytes, so a decoded frame
//! re-encodes to exactly the bytes it came from.

use serde::{Serialize, de::DeserializeOwned};

use crate::DeviceId;
use crate::wire::{Ack, ConfigUpdate, Envelope, StatusReport};

/// The major schema version this build speaks. It is also the `v1` in every topic.
pub const MAJOR: u8 = 1;
/// The minor schema version this build writes.
pub const MINOR: u8 = 0;

/// A message that travels on its own as a frame.
pub trait Frame: Serialize + DeserializeOwned {
    /// Name used in errors and logs.
    const NAME: &'static str;
}

impl Frame for Envelope {
    const NAME: &'static str = "envelope";
}
impl Frame for Ack {
    const NAME: &'static str = "ack";
}
impl Frame for ConfigUpdate {
    const NAME: &'static str = "config";
}
impl Frame for StatusReport {
    const NAME: &'static str = "status";
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the frame needs.
    #[error("{frame} is truncated")]
    Truncated {
        /// The frame that was expected.
        frame: &'static str,
    },
    /// A major version this build does not speak.
    #[error("{frame} has schema version {found}.x, this build speaks {MAJOR}.x")]
    UnknownVersion {
        /// The frame that was expected.
        frame: &'static str,
        /// The major version found.
        found: u8,
    },
    /// Bytes after a complete frame of a version this build fully knows.
    #[error("{frame} has {count} unexpected trailing bytes")]
    TrailingBytes {
        /// The frame that was expected.
        frame: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// A field holds a value no encoder writes (unknown enum variant, bad UTF-8, bad id...).
    #[error("{frame} is malformed: {reason}")]
    Malformed {
        /// The frame that was expected.
        frame: &'static str,
        /// What was wrong, from the decoder.
        reason: String,
    },
}

/// Encodes a frame at the current version.
pub fn encode<F: Frame>(frame: &F) -> Vec<u8> {
    let mut bytes = vec![MAJOR, MINOR];
    postcard::to_io(frame, &mut bytes)
        .expect("postcard cannot fail to serialise wire types into a Vec");
    bytes
}

/// Decodes a frame, checking its version first.
pub fn decode<F: Frame>(bytes: &[u8]) -> Result<F, DecodeError> {
    let (minor, body) = split_version::<F>(bytes)?;
    let (frame, rest) = postcard::take_from_bytes::<F>(body).map_err(postcard_error::<F>)?;
    // postcard also accepts over-long varints (0 as `80 00`), which no encoder writes: refuse
    // them, or the same message would have two encodings.
    let message = &body[..body.len() - rest.len()];
    if !postcard::to_io(&frame, SameBytes(message)).is_ok_and(|left| left.0.is_empty()) {
        return Err(DecodeError::Malformed {
            frame: F::NAME,
            reason: "not in canonical form (an over-long integer)".to_owned(),
        });
    }
    // A newer minor may append bytes we do not know; from our own or an older minor they are
    // corruption.
    let newer_minor = minor > MINOR;
    if !rest.is_empty() && !newer_minor {
        return Err(DecodeError::TrailingBytes {
            frame: F::NAME,
            count: rest.len(),
        });
    }
    Ok(frame)
}

/// The part of an [`Envelope`] whose layout is the same in every major version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Header {
    /// The major version of the envelope.
    #[serde(skip)]
    pub major: u8,
    /// The sending device.
    pub device: DeviceId,
    /// Its sequence number.
    pub seq: u64,
    /// When it was created, UTC seconds.
    pub created_s: u64,
}

/// Reads an envelope's header without decoding its body, whatever its major version, so the
/// server can reject an envelope it cannot decode by sequence number.
pub fn peek_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    const NAME: &str = "envelope header";
    let Some((&major, rest)) = bytes.split_first() else {
        return Err(DecodeError::Truncated { frame: NAME });
    };
    let Some((_minor, body)) = rest.split_first() else {
        return Err(DecodeError::Truncated { frame: NAME });
    };
    let (mut header, _) =
        postcard::take_from_bytes::<Header>(body).map_err(|error| classify(NAME, error))?;
    header.major = major;
    Ok(header)
}

/// A writer that accepts exactly the bytes it was made with, in order: re-encoding a decoded
/// message into it checks the message was canonical without allocating.
struct SameBytes<'a>(&'a [u8]);

impl std::io::Write for SameBytes<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.0.strip_prefix(bytes) {
            Some(rest) => {
                self.0 = rest;
                Ok(bytes.len())
            }
            None => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn split_version<F: Frame>(bytes: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    match bytes {
        [] | [_] => Err(DecodeError::Truncated { frame: F::NAME }),
        [major, _, ..] if *major != MAJOR => Err(DecodeError::UnknownVersion {
            frame: F::NAME,
            found: *major,
        }),
        [_, minor, body @ ..] => Ok((*minor, body)),
    }
}

fn postcard_error<F: Frame>(error: postcard::Error) -> DecodeError {
    classify(F::NAME, error)
}

fn classify(frame: &'static str, error: postcard::Error) -> DecodeError {
    match error {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated { frame },
        other => DecodeError::Malformed {
            frame,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
