//! The MQTT topic scheme. This module is the only code that formats or parses a topic.
//!
//! | topic | direction | payload | QoS, retain |
//! |---|---|---|---|
//! | `drivetag/v1/{device}/up/{kind}` | agent → server | [`Envelope`](crate::wire::Envelope) | 1 |
//! | `drivetag/v1/{device}/ack` | server → agent | [`Ack`](crate::wire::Ack) | 1 |
//! | `drivetag/v1/{device}/config` | server → agent | [`ConfigUpdate`](crate::wire::ConfigUpdate) | 1, retained |
//! | `drivetag/v1/{device}/status` | agent → server | [`StatusReport`](crate::wire::StatusReport) | 1, retained, last will |
//!
//! `{kind}` is one of `vehicle`, `trip`, `day`, `places`, `style`. The `v1` follows the major
//! schema version, so agents of two major versions can share a broker during a migration.
//!
//! ```
//! use drivetag_shared::{topics::{self, Channel}, wire::UpKind, DeviceId};
//!
//! let device = DeviceId::new("hu-0001").unwrap();
//! let topic = topics::topic_for(&device, Channel::Up(UpKind::Trip));
//! assert_eq!(topic, "drivetag/v1/hu-0001/up/trip");
//! assert_eq!(topics::parse_topic(&topic).unwrap(), (device, Channel::Up(UpKind::Trip)));
//! ```

use crate::DeviceId;
use crate::wire::UpKind;

/// The first two levels of every drivetag topic.
pub const PREFIX: &str = "drivetag/v1";

/// The default shared-subscription group servers join so that each uplink reaches one of them.
pub const SHARE_GROUP: &str = "drivetag";

/// What a topic carries for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Uplink summaries of one kind.
    Up(UpKind),
    /// The retained configuration.
    Config,
    /// Acknowledgements.
    Ack,
    /// The retained status and last will.
    Status,
}

/// Why a topic is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// It does not start with [`PREFIX`].
    #[error("topic {topic:?} does not start with {PREFIX}/")]
    Prefix {
        /// The topic.
        topic: String,
    },
    /// The device level is not a valid device id.
    #[error("topic {topic:?} has an invalid device id: {source}")]
    Device {
        /// The topic.
        topic: String,
        /// Why the id is invalid.
        source: crate::device::DeviceIdError,
    },
    /// The levels after the device are not a known channel.
    #[error("topic {topic:?} has no known channel after the device id")]
    Channel {
        /// The topic.
        topic: String,
    },
}

/// The topic of `channel` for `device`.
pub fn topic_for(device: &DeviceId, channel: Channel) -> String {
    match channel {
        Channel::Up(kind) => format!("{PREFIX}/{device}/up/{}", kind.as_str()),
        Channel::Config => format!("{PREFIX}/{device}/config"),
        Channel::Ack => format!("{PREFIX}/{device}/ack"),
        Channel::Status => format!("{PREFIX}/{device}/status"),
    }
}

/// The device and channel of a topic.
pub fn parse_topic(topic: &str) -> Result<(DeviceId, Channel), TopicError> {
    let rest = topic
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| TopicError::Prefix {
            topic: topic.to_owned(),
        })?;
    let (device, channel) = rest.split_once('/').ok_or_else(|| TopicError::Channel {
        topic: topic.to_owned(),
    })?;
    let device = DeviceId::new(device).map_err(|source| TopicError::Device {
        topic: topic.to_owned(),
        source,
    })?;
    let channel = match channel.split_once('/') {
        Some(("up", kind)) => UpKind::from_name(kind).map(Channel::Up),
        None if channel == "config" => Some(Channel::Config),
        None if channel == "ack" => Some(Channel::Ack),
        None if channel == "status" => Some(Channel::Status),
        _ => None,
    }
    .ok_or_else(|| TopicError::Channel {
        topic: topic.to_owned(),
    })?;
    Ok((device, channel))
}

/// The filter a server subscribes to for every device's uplinks, as a plain subscription.
pub fn uplink_filter() -> String {
    format!("{PREFIX}/+/up/+")
}

/// The same filter as an MQTT v5 shared subscription in `group`, so that the server instances
/// of one group split the uplinks between them and each message reaches exactly one.
pub fn shared_uplink_filter(group: &str) -> String {
    format!("$share/{group}/{}", uplink_filter())
}

/// The filter for every device's status.
pub fn status_filter() -> String {
    format!("{PREFIX}/+/status")
}

/// The filter an agent subscribes to for its own downlink (config and ack).
pub fn downlink_filters(device: &DeviceId) -> [String; 2] {
    [
        topic_for(device, Channel::Config),
        topic_for(device, Channel::Ack),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn channels() -> Vec<Channel> {
        let mut all: Vec<Channel> = UpKind::ALL.into_iter().map(Channel::Up).collect();
        all.extend([Channel::Config, Channel::Ack, Channel::Status]);
        all
    }

    #[test]
    fn every_channel_has_its_documented_topic() {
        let device = DeviceId::new("car-1").unwrap();
        let topics: Vec<String> = channels()
            .into_iter()
            .map(|channel| topic_for(&device, channel))
            .collect();
        assert_eq!(
            topics,
            [
                "drivetag/v1/car-1/up/vehicle",
                "drivetag/v1/car-1/up/trip",
                "drivetag/v1/car-1/up/day",
                "drivetag/v1/car-1/up/places",
                "drivetag/v1/car-1/up/style",
                "drivetag/v1/car-1/config",
                "drivetag/v1/car-1/ack",
                "drivetag/v1/car-1/status",
            ]
        );
    }

    #[test]
    fn foreign_topics_are_refused() {
        for topic in [
            "",
            "drivetag",
            "drivetag/v2/car/ack",
            "drivetag/v1/car",
            "drivetag/v1/car/up",
            "drivetag/v1/car/up/unknown",
            "drivetag/v1/car/ack/extra",
            "drivetag/v1/car/up/trip/extra",
            "drivetag/v1/+/ack",
            "other/v1/car/ack",
        ] {
            assert!(parse_topic(topic).is_err(), "{topic:?} parsed");
        }
    }

    #[test]
    fn filters() {
        assert_eq!(uplink_filter(), "drivetag/v1/+/up/+");
        assert_eq!(
            shared_uplink_filter(SHARE_GROUP),
            "$share/drivetag/drivetag/v1/+/up/+"
        );
        assert_eq!(status_filter(), "drivetag/v1/+/status");
    }

    proptest! {
        #[test]
        fn topics_round_trip(device in any::<DeviceId>(), index in 0usize..8) {
            let channel = channels()[index];
            let topic = topic_for(&device, channel);
            prop_assert_eq!(parse_topic(&topic), Ok((device, channel)));
        }

        #[test]
        fn parsing_any_string_never_panics(topic in ".*") {
            let _ = parse_topic(&topic);
        }
    }
}
