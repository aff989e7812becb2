//! Arbitrary bytes as each wire frame: `Envelope`, `Ack`, `ConfigUpdate` and `StatusReport`.
//!
//! Properties: decoding never panics, and a frame that decodes re-encodes to the bytes it came
//! from. Only a frame of a newer minor version than this build's may carry bytes after the
//! message, which the decoder skips, so for those the re-encoded body is a prefix of the input's.
//! For an envelope, `peek_header` agrees with the decoded device, sequence number and time.

#![no_main]

use drivetag_shared::codec::{self, Frame};
use drivetag_shared::wire::{Ack, ConfigUpdate, Envelope, StatusReport};
use libfuzzer_sys::fuzz_target;

/// Decodes `data` as `F`; if it decodes, checks the round trip and returns the frame.
fn round_trip<F: Frame + std::fmt::Debug>(data: &[u8]) -> Option<F> {
    let frame = codec::decode::<F>(data).ok()?;
    let encoded = codec::encode(&frame);
    assert_eq!(encoded[0], data[0], "{}: major version", F::NAME);
    if data[1] > codec::MINOR {
        assert!(
            data[2..].starts_with(&encoded[2..]),
            "{} of minor {} does not start with its re-encoding\n  input: {data:02x?}\n  again: {encoded:02x?}\n  frame: {frame:?}",
            F::NAME,
            data[1],
        );
    } else {
        assert_eq!(
            encoded[2..],
            data[2..],
            "{} does not re-encode to its bytes\n  frame: {frame:?}",
            F::NAME
        );
    }
    Some(frame)
}

fuzz_target!(|data: &[u8]| {
    if let Some(envelope) = round_trip::<Envelope>(data) {
        let header = codec::peek_header(data).expect("a decodable envelope has a header");
        assert_eq!(header.major, data[0]);
        assert_eq!(header.device, envelope.device);
        assert_eq!(header.seq, envelope.seq);
        assert_eq!(header.created_s, envelope.created_s);
    }
    round_trip::<Ack>(data);
    round_trip::<ConfigUpdate>(data);
    round_trip::<StatusReport>(data);
});
