//! Integration tests of the engine through its public API.

mod conformance;
mod diagnostics;
mod alloc;
mod evaluation;
