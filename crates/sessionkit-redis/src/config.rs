//! Connection and key configuration.

use std::time::Duration;

/// How a [`RedisStore`](crate::RedisStore) or
/// [`RedisInvalidationChannel`](crate::RedisInvalidationChannel) talks to
/// Redis.
///
/// ```
/// use std::time::Duration;
/// use sessionkit_redis::RedisConfig;
///
/// let config = RedisConfig::new()
///     .prefix("myapp:sessions")
///     .command_timeout(Duration::from_millis(500))
///     .connect_timeout(Duration::from_secs(1));
/// assert_eq!(config.get_prefix(), "myapp:sessions");
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) prefix: String,
    pub(crate) command_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_attempts: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) native_saves: bool,
    pub(crate) save_cache_entries: usize,
    pub(crate) save_cache_max_value: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "sessionkit".to_owned(),
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            reconnect_attempts: 2,
            ping_interval: Duration::from_secs(1),
            native_saves: true,
            save_cache_entries: 4096,
            save_cache_max_value: 8 * 1024,
        }
    }
}

impl RedisConfig {
    /// The defaults: prefix `sessionkit`, 2 s command timeout, 2 s connect
    /// timeout, 2 reconnect attempts per failed command, 1 s pub/sub health
    /// check, native saves on where the server has them, a save cache of
    /// 4096 values of at most 8 KiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// The prefix of every key (and of the pub/sub channel): 1 to 64
    /// characters of `A–Z a–z 0–9 - _ . : /`. Checked when connecting
    /// ([`Error::Config`](sessionkit_core::Error::Config) otherwise).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The upper bound of one store call (all the commands it sends,
    /// including waiting for a reconnection). Past it the call fails with
    /// [`Error::Timeout`](sessionkit_core::Error::Timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The upper bound of one connection attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many times the standalone connection manager retries to reconnect
    /// (with exponential backoff from 50 ms) after the connection dropped,
    /// before failing the pending commands. The next command starts a new
    /// round, so a restarted server is picked up without rebuilding the
    /// store. For the cluster client: retries per request.
    pub fn reconnect_attempts(mut self, attempts: usize) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// How often the invalidation channel's subscriber pings its pub/sub
    /// connection to notice a dead or hung server.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Whether a [`RedisStore`](crate::RedisStore) saves with one native
    /// `SET … IFEQ … PXAT` where the server has it (Valkey ≥ 8.1, Redis ≥
    /// 8.4; detected, see [`SavePath`](crate::SavePath)). Default `true`;
    /// `false` keeps every save on the compare-and-swap script.
    pub fn native_saves(mut self, enabled: bool) -> Self {
        self.native_saves = enabled;
        self
    }

    /// The save cache of a [`RedisStore`](crate::RedisStore): the exact
    /// stored values of up to `entries` recently loaded, created or saved
    /// sessions (each at most `max_value_bytes` long, header and subject
    /// included), which a native save sends as the `IFEQ` comparison value
    /// and which spare a save with an unchanged subject its index command.
    /// Remembering a value copies no payload: it shares the buffer of the
    /// loaded reply or of the saved record. A session the cache does not
    /// hold is saved by the script. `entries == 0` turns the cache (and
    /// so native saves) off. Default: 4096 entries of at most 8 KiB.
    pub fn save_cache(mut self, entries: usize, max_value_bytes: usize) -> Self {
        self.save_cache_entries = entries;
        self.save_cache_max_value = max_value_bytes;
        self
    }

    /// The configured key prefix.
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The configured command timeout.
    pub fn get_command_timeout(&self) -> std::time::Duration {
        self.command_timeout
    }
}
