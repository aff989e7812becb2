//! The service layer: what handlers, the command line and the console call. No HTTP here,
//! and no SQL in the handlers.
//!
//! * [`access`]: API keys, roles and the tenant scope of every query.
//! * [`filter`]: the label filter language of lists and exports.
//! * [`read`]: vehicles, customers, labels with explanations, actions, distributions.
//! * [`export`]: streamed CSV and NDJSON exports.

pub mod access;
pub mod export;
pub mod filter;
pub mod read;
