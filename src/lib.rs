//! twiml-failover: one small binary that answers Twilio voice and messaging webhooks, as a number's
//! primary handler or as its "Primary Handler Fails" fallback.
//!
//! # Layout
//! A request flows one way: [`server`] accepts within limits → [`route`] → [`webhook`] decodes →
//! [`verify`] checks the signature ([`signature`], [`keyring`]) → [`templates`] renders → respond.
//! [`cli`] and [`config`] build the settings once; [`service`] turns them into the shared state
//! ([`server::app`]) and owns the lifecycle: start, lame duck, drain, stop the forwarder, flush.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod commands;
pub mod config;
pub mod drill;
pub mod journal;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod numbers;
pub mod readiness;
pub mod reload;
pub mod route;
pub mod server;
pub mod service;
pub mod signals;
pub mod signature;
pub mod templates;
pub mod upstream;
pub mod verify;
pub mod webhook;
