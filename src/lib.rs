//! twiml-failover: one small binary that answers Twilio voice and messaging webhooks, as a number's
//! primary handler or as its "Primary Handler Fails" fallback.
//!
//! # Layout
//! A request flows one way: [`server`] accepts within limits ([`server::limits`]) → [`route`] →
//! [`webhook`] decodes → [`verify`] checks the signature ([`signature`], [`keyring`]) → the
//! [`journal`] keeps what the caller sent → the answer comes from the enterprise's own app
//! ([`upstream`], when configured) or from [`templates`] → [`server::respond`].
//!
//! Around it: `main.rs` parses the command line ([`cli`]) and runs one function of [`commands`].
//! [`config`] turns flags, environment and file into each module's own settings; [`service`] turns
//! them into the shared state ([`server::app`]) and owns the lifecycle: start, lame duck, drain,
//! stop the forwarder, flush. The other commands' engines are [`drill`] and [`numbers`].
//!
//! One of each: [`net`] (the outgoing HTTP client), [`backoff`], [`breaker`], [`signals`],
//! [`metrics`], [`operator_file`] (every file the operator names is read through it, bounded).
//! `tests/structure.rs` checks that no modules import each other in a circle and that only
//! `commands`, `config` and `service` see the command line and the settings.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authoring;
pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod drill;
pub mod forward;
pub mod journal;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod numbers;
pub mod operator_file;
pub mod readiness;
pub mod reload;
pub mod route;
pub mod server;
pub mod service;
pub mod signals;
pub mod signature;
pub mod templates;
pub mod twilio;
pub mod upstream;
pub mod verify;
pub mod webhook;
