//! drivetag's dealership backend.
//!
//! The server ingests the agents' summaries over MQTT, stores them, joins them with dealer
//! data, labels customers and picks aftermarket strategies.
#![warn(missing_docs)]

pub mod config;
