//! twiml-failover: one small binary that answers Twilio voice and messaging webhooks, as a number's
//! primary handler or as its "Primary Handler Fails" fallback.
//!
//! # Layout
//! A request flows one way: [`server`] accepts within limits → [`route`] → [`webhook`] decodes →
//! [`verify`] checks the signature ([`signature`], [`keyring`]) → [`templates`] renders → respond.
//! [`config`] and [`cli`] build the settings once; [`app`] holds the shared state.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod drill;
pub mod journal;
pub mod keyring;
pub mod log_line;
pub mod log_writer;
pub mod metrics;
pub mod net;
pub mod numbers;
pub mod readiness;
pub mod reload;
pub mod route;
pub mod server;
pub mod signals;
pub mod signature;
pub mod templates;
pub mod upstream;
pub mod verify;
pub mod webhook;
