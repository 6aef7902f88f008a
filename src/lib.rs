//! twiml-failover: one small binary that answers Twilio voice and messaging webhooks, as a number's
//! primary handler or as its "Primary Handler Fails" fallback.
//!
//! # Layout
//! A request flows one way: [`server`] accepts within limits ([`server::limits`]) → [`route`] →
//! [`webhook`] decodes → [`verify`] checks the signature ([`signature`], [`keyring`]) → the
//! [`journal`] keeps what the caller sent → the answer comes from the enterprise's own app
//! ([`upstream`], when configured) or from [`templates`] → [`server::respond`].
//!
//! Beside it: [`forward`] delivers what the journal keeps (the journal is storage and speaks no
//! HTTP); [`twilio`] is Twilio's vocabulary that the request path, the template lint, upstream
//! mode, the drill and `numbers` share (channels, roles, what a TwiML document must be, media
//! types, connection overrides), and imports nothing of the crate.
//!
//! Around it: `main.rs` parses the command line ([`cli`]: one variant per command, each command's
//! flags declared in its own file of [`commands`], `serve`'s in [`config`] and the modules whose
//! settings they are) and runs one function of [`commands`].
//! [`config`] layers flags, environment and file; each module checks its own section of them with
//! [`setting`]'s checks (the secrets they name are read by [`secrets`], from files and the
//! environment only); [`service`] turns
//! them into the shared state ([`server::app`]) and owns the lifecycle: start, lame duck, drain,
//! then the journal's writer, the spill import and the forwarder, started and stopped as one. The
//! other commands' engines are [`drill`], [`numbers`], [`monitor`] (rounds of the account's wiring
//! and probes of every URL Twilio would call, from `numbers`' reads and audit and the drill's
//! fetch) and [`authoring`] (`check`, `render`, `test`, `import-bin`), which `serve` does not run.
//!
//! One of each: [`net`] (the outgoing HTTP client and its TLS settings), [`backoff`],
//! [`breaker`], [`signals`], [`metrics`], [`operator_file`] (every file the operator names is read
//! through it, bounded).
//!
//! `tests/structure.rs` reads the imports of every file and checks: no circle between top-level
//! modules, nor between the files and sub-folders of any folder (its `mod.rs` is their parent);
//! only `cli`, `commands`, `config` and `service` see the command line and the settings, and no
//! module of the library imports `cli`; [`twilio`]
//! imports nothing of the crate, and [`drill`], [`numbers`] and [`upstream`] import neither each
//! other nor [`templates`]; only [`commands`] imports [`authoring`]; [`journal`] imports none of
//! [`net`], [`breaker`], [`keyring`], [`signature`] and [`forward`].
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
pub mod monitor;
pub mod net;
pub mod numbers;
pub mod operator_file;
pub mod readiness;
pub mod reload;
pub mod route;
pub mod secrets;
pub mod server;
pub mod service;
pub mod setting;
pub mod signals;
pub mod signature;
pub mod templates;
pub mod twilio;
pub mod upstream;
pub mod verify;
pub mod webhook;
