//! Device identifiers, safe to embed in an MQTT topic.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest device id we accept, in bytes. Long enough for a VIN with a prefix or a UUID.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// The identity of one agent (one head unit), as it appears in topics and envelopes.
///
/// 1 to 64 ASCII letters, digits, `-`, `_` or `.`, so it can never contain the MQTT wildcards
/// `+` and `#`, a level separator `/`, or start a `$` system topic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

/// Why a string is not a [`DeviceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    /// The id is empty.
    #[error("device id is empty")]
    Empty,
    /// The id is longer than [`MAX_DEVICE_ID_LEN`].
    #[error("device id is {len} bytes long, at most {MAX_DEVICE_ID_LEN} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a character outside `[A-Za-z0-9._-]`.
    #[error("device id holds {found:?}; only ASCII letters, digits, '-', '_' and '.' are allowed")]
    BadChar {
        /// The first offending character.
        found: char,
    },
}

impl DeviceId {
    /// Checks `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, DeviceIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if id.len() > MAX_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooLong { len: id.len() });
        }
        if let Some(found) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(DeviceIdError::BadChar { found });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(value: DeviceId) -> Self {
        value.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

#[cfg(any(test, feature = "proptest"))]
impl proptest::arbitrary::Arbitrary for DeviceId {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::strategy::Strategy;
        "[A-Za-z0-9._-]{1,64}"
            .prop_map(|s| DeviceId::new(s).expect("the regex only yields valid ids"))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_topic_safe_ids() {
        for id in ["a", "hu-0001", "LSVAU2180N2183294", "fleet_7.car-12"] {
            assert_eq!(DeviceId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_ids_that_would_break_a_topic() {
        assert_eq!(DeviceId::new(""), Err(DeviceIdError::Empty));
        assert_eq!(
            DeviceId::new("a/b"),
            Err(DeviceIdError::BadChar { found: '/' })
        );
        assert_eq!(
            DeviceId::new("+"),
            Err(DeviceIdError::BadChar { found: '+' })
        );
        assert_eq!(
            DeviceId::new("#"),
            Err(DeviceIdError::BadChar { found: '#' })
        );
        assert_eq!(
            DeviceId::new("$SYS"),
            Err(DeviceIdError::BadChar { found: '$' })
        );
        assert_eq!(
            DeviceId::new("é"),
            Err(DeviceIdError::BadChar { found: 'é' })
        );
        assert_eq!(
            DeviceId::new("x".repeat(65)),
            Err(DeviceIdError::TooLong { len: 65 })
        );
    }
}
