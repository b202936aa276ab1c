//! MemoryStore: owned by the memory-store work.
