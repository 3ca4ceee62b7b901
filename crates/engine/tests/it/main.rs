//! Integration tests of the engine through its public API.

mod alloc;
mod bucketing;
mod conformance;
mod diagnostics;
mod docs;
mod evaluation;
mod experiments;
mod explain;
mod incremental;
