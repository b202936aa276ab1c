//! Connection and key configuration.

use std::time::Duration;

use sessionkit_core::{Error, Result};

use crate::keys::Keys;

/// How a [`RedisStore`](crate::RedisStore) or
/// [`RedisInvalidationChannel`](crate::RedisInvalidationChannel) talks to
/// Redis.
///
/// The setters store what they are given; the constructors that take a
/// config ([`RedisStore::standalone`](crate::RedisStore::standalone),
/// [`RedisStore::from_connection_manager`](crate::RedisStore::from_connection_manager),
/// [`RedisInvalidationChannel::connect`](crate::RedisInvalidationChannel::connect),
/// the cluster ones) check it before connecting and fail with
/// [`Error::Config`] naming the setting, the value given and the range
/// allowed. Nothing is rounded or clamped into range.
///
/// | setting | allowed |
/// |---|---|
/// | [`prefix`](Self::prefix) | 1 to 64 characters of `A–Z a–z 0–9 - _ . : /` |
/// | [`command_timeout`](Self::command_timeout), [`connect_timeout`](Self::connect_timeout), [`ping_interval`](Self::ping_interval) | at least 1 ms |
///
/// The settings in use are read from what was built:
/// [`RedisStore::prefix`](crate::RedisStore::prefix),
/// [`RedisStore::command_timeout`](crate::RedisStore::command_timeout),
/// [`RedisInvalidationChannel::channel_name`](crate::RedisInvalidationChannel::channel_name).
///
/// ```no_run
/// # async fn run() -> sessionkit_core::Result<()> {
/// use std::time::Duration;
/// use sessionkit_redis::{RedisConfig, RedisStore};
///
/// let config = RedisConfig::new()
///     .prefix("myapp:sessions")
///     .command_timeout(Duration::from_millis(500))
///     .connect_timeout(Duration::from_secs(1));
/// let store = RedisStore::standalone("redis://127.0.0.1:6379", config).await?;
/// assert_eq!(store.prefix(), "myapp:sessions");
/// assert_eq!(store.command_timeout(), Duration::from_millis(500));
/// # Ok(()) }
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
    /// ([`Error::Config`] otherwise).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The upper bound of one store call (all the commands it sends,
    /// including waiting for a reconnection). Past it the call fails with
    /// [`Error::Timeout`]. At least 1 ms (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The upper bound of one connection attempt. At least 1 ms (default
    /// 2 s).
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
    /// connection to notice a dead or hung server. At least 1 ms (default
    /// 1 s).
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

    /// Checks every setting and returns the key names they give. Every
    /// constructor that takes a config calls it first.
    pub(crate) fn validate(&self) -> Result<Keys> {
        for (setting, value) in [
            ("command_timeout", self.command_timeout),
            ("connect_timeout", self.connect_timeout),
            ("ping_interval", self.ping_interval),
        ] {
            if value < Duration::from_millis(1) {
                return Err(Error::Config(format!(
                    "RedisConfig: {setting} must be at least 1ms (got {value:?})"
                )));
            }
        }
        Keys::new(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(config: RedisConfig) -> String {
        match config.validate() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for t in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(999),
        ] {
            let c = RedisConfig::new;
            for (setting, config) in [
                ("command_timeout", c().command_timeout(t)),
                ("connect_timeout", c().connect_timeout(t)),
                ("ping_interval", c().ping_interval(t)),
            ] {
                assert_eq!(
                    config_error(config),
                    format!("RedisConfig: {setting} must be at least 1ms (got {t:?})")
                );
            }
        }
        assert_eq!(
            config_error(RedisConfig::new().prefix("a{b}")),
            "RedisConfig: prefix must be 1 to 64 characters of A-Z a-z 0-9 - _ . : / (got \"a{b}\")"
        );
        assert!(config_error(RedisConfig::new().prefix("")).contains("(got \"\")"));
        let long = "x".repeat(crate::MAX_PREFIX_LEN + 1);
        assert!(config_error(RedisConfig::new().prefix(long)).contains("prefix"));
    }

    #[test]
    fn boundary_settings_are_accepted() {
        let ms = Duration::from_millis(1);
        let keys = RedisConfig::new()
            .command_timeout(ms)
            .connect_timeout(ms)
            .ping_interval(ms)
            .prefix("p")
            .validate()
            .expect("the smallest values in range");
        assert_eq!(keys.prefix(), "p");
        let long = "x".repeat(crate::MAX_PREFIX_LEN);
        let day = Duration::from_secs(86_400);
        let keys = RedisConfig::new()
            .command_timeout(day)
            .connect_timeout(day)
            .ping_interval(day)
            .prefix(long.as_str())
            .validate()
            .expect("large values");
        assert_eq!(keys.prefix(), long);
        RedisConfig::new()
            .validate()
            .expect("the defaults are in range");
    }
}
