//! drivetag's wire contract: everything the agent and the server say to each other.
//!
//! # Brief overview
//!
//! * [`wire`] holds every message. Uplink summaries travel inside an [`wire::Envelope`]
//!   (device, per-device sequence number, creation time); the server answers with an
//!   [`wire::Ack`] and configures the agent with a [`wire::ConfigUpdate`]; the agent reports
//!   its health with a [`wire::StatusReport`].
//! * [`codec`] turns those frames into bytes and back: a two-byte schema version, then
//!   `postcard`. Decoding never panics; garbage, truncation and unknown versions are typed
//!   [`codec::DecodeError`]s.
//! * [`topics`] is the only code that formats or parses an MQTT topic.
//! * [`cell`] quantises positions into coarse grid cells, the only form in which a place
//!   leaves the car.
//!
//! ```
//! use drivetag_shared::{codec, wire::*, DeviceId};
//!
//! let envelope = Envelope {
//!     device: DeviceId::new("hu-0001").unwrap(),
//!     seq: 7,
//!     created_s: 1_700_000_000,
//!     body: Uplink::Vehicle(VehicleInfo {
//!         vin: "LSVAU2180N2183294".into(),
//!         make: "Volkswagen".into(),
//!         model: "Lavida".into(),
//!         model_year: 2022,
//!         energy: EnergyType::Ice,
//!         odometer_m: 23_456_000,
//!         agent_version: "0.1.0".into(),
//!     }),
//! };
//! let bytes = codec::encode(&envelope);
//! assert_eq!(codec::decode::<Envelope>(&bytes).unwrap(), envelope);
//! ```
#![warn(missing_docs)]

pub mod cell;
pub mod codec;
pub mod device;
pub mod topics;
pub mod wire;

pub use cell::{Cell, CellSize};
pub use device::DeviceId;
