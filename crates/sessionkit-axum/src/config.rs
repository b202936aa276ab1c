//! How the ticket travels: cookie attributes or bearer headers.
//!
//! The types live in `sessionkit-http`, shared with `sessionkit-actix`, and
//! are re-exported here unchanged.

pub use sessionkit_http::{BearerConfig, CookieConfig, Transport};
