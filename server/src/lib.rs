//! drivetag's dealership backend.
//!
//! The server ingests the agents' summaries over MQTT, stores them, joins them with dealer
//! data, labels customers and picks aftermarket strategies.
#![warn(missing_docs)]

pub mod agents;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod import;
pub mod ingest;
pub mod labeller;
pub mod labels;
pub mod metrics;
pub mod serve;
pub mod service;
pub mod store;
