//! The tools that help write templates, apart from what `serve` runs ([`crate::templates`]): each
//! is one command's engine, and none is on the request path.
//!
//! - [`check`]: `check`, both roles' sets loaded as a server would, every problem a diagnostic.
//! - [`preview`]: `render`, what `serve` would answer to one webhook, without a server.
//! - [`suite`]: `test`, the template tests' file format and runner (over [`preview`]).
//! - [`bin`]: `import-bin`, a TwiML Bin translated into this project's template syntax. Pure.

pub mod bin;
pub mod check;
pub mod preview;
pub mod suite;
