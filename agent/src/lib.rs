//! drivetag's in-car agent.
//!
//! The agent reads GPS fixes and vehicle signals, cuts them into trips and stays, and turns
//! them into the compact summaries of [`drivetag_shared::wire`]. Raw positions never leave
//! the car.
#![warn(missing_docs)]

pub mod config;
