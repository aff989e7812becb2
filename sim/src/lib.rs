//! drivetag's fleet simulator and one-command demo.
//!
//! Simulated cars drive a simulated city ([`world`]) as their drivers' [`persona`]s plan
//! ([`fleet`]), along street-grid routes at 1 Hz ([`drive`]); each car's head unit emits NMEA
//! sentences and vehicle signals ([`nmea`]) that a **real agent** reads, summarises, stores in
//! its outbox and sends over MQTT to a **real server**, which labels the customers
//! ([`demo`]). No summary is built by the simulator itself.

pub mod demo;
pub mod drive;
pub mod fleet;
pub mod nmea;
pub mod persona;
pub mod world;
