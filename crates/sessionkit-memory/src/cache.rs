//! CachedStore: owned by the cache work.
