//! `numbers audit|plan|apply`: the whole account's webhook wiring (incoming phone numbers, TwiML
//! Apps, Messaging Services) judged against the intended wiring, diffed, and changed.
//!
//! Pure: [`model`] (the resources), [`wiring`] (the intent), [`audit`] (effective handling and
//! verdicts), [`plan`] (field-by-field changes), [`report`] (text and JSON). I/O: [`rest`] (the
//! Twilio REST client on [`crate::net`]), [`apply`] and [`lookup`] (one number, for the drill).
//! The command itself (flags, terminal, exit status) is [`crate::commands::numbers`].

pub mod apply;
pub mod audit;
pub mod lookup;
pub mod model;
pub mod plan;
pub mod report;
pub mod rest;
pub mod wiring;
