//! In-process storage for sessionkit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod store;

pub use cache::*;
pub use store::*;
