//! drivetag's in-car agent.
//!
//! The agent reads GPS fixes and vehicle signals, cuts them into trips and stays, and turns
//! them into the compact summaries of [`drivetag_shared::wire`]. Raw positions never leave
//! the car.
//!
//! # Brief overview
//!
//! The agent is a pipeline of sources → transforms → sinks:
//!
//! * [`sources`] read NMEA 0183, GPX, gpsd JSON and the vehicle-signal CSV into
//!   [`sample::Sample`]s, reporting every bad line with its number.
//! * [`transforms`] are pure state machines: cleaning, trip segmentation, trip features, stay
//!   points, places, days and the driving score. [`pipeline::Pipeline`] joins them.
//! * [`report`] prints what the pipeline found for `drivetag-agent summarize`.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod outbox;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod sample;
pub mod sources;
pub mod summarize;
pub mod transforms;
pub mod uplink;
