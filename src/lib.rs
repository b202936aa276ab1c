//! sessionkit facade
