//! [`RedisStore`]: the [`SessionStore`] over standalone Redis or Redis
//! Cluster.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use sessionkit_core::{
    Error, Record, Result, ScanCursor, ScanPage, SessionId, SessionStore, Timestamp, async_trait,
    validate_subject,
};

use crate::codec;
use crate::config::RedisConfig;
#[cfg(feature = "cluster")]
use crate::conn::ClusterShared;
use crate::conn::{Conn, bounded, connection_lost, map_err};
use crate::keys::Keys;
use crate::native::{Capability, Known, KnownValues, SavePath, SaveStats};

/// The latest instant handed to `PXAT` (31 Dec 9999); later expiries are
/// stored exactly in the value but expire in Redis at this instant.
const MAX_PXAT: i64 = 253_402_300_799_999;
/// Subject index scores are session expiries rounded up to a multiple of
/// this (see [`index_score`]), so that a save that moves the expiry by a
/// little does not have to raise its index entry.
const INDEX_GRANULE_MS: i64 = 60_000;

/// The score of a session's subject-index entry: its expiry rounded up to
/// the next multiple of [`INDEX_GRANULE_MS`], at most [`MAX_PXAT`]. Every
/// write keeps a live session's entry at least this high.
fn index_score(expires_at: Timestamp) -> i64 {
    granule_ceil(expires_at.as_millis()).min(MAX_PXAT)
}

fn granule_ceil(ms: i64) -> i64 {
    let up = ms.div_euclid(INDEX_GRANULE_MS) + i64::from(ms.rem_euclid(INDEX_GRANULE_MS) != 0);
    up.saturating_mul(INDEX_GRANULE_MS)
}

/// The least stored expiry whose index entry (at least [`index_score`] of
/// it) already covers a new expiry `expires_at`: a save from a value that
/// expired at or after this, with the same subject, needs no index command.
fn index_floor(expires_at: Timestamp) -> i64 {
    granule_ceil(expires_at.as_millis().min(MAX_PXAT)) - INDEX_GRANULE_MS + 1
}

/// Whether the index entry of a session stored with expiry `old` (ms)
/// covers a new expiry.
fn index_covers(old: i64, new: Timestamp) -> bool {
    old >= index_floor(new)
}

/// The hash slots of a Redis Cluster.
#[cfg(feature = "cluster")]
const CLUSTER_SLOTS: u16 = 16_384;
/// How many slots one `scan` batch on a cluster looks at, at most.
#[cfg(feature = "cluster")]
const SCAN_SLOTS_PER_BATCH: u16 = 512;
/// How many `CLUSTER GETKEYSINSLOT` a cluster `scan` has in flight at once.
#[cfg(feature = "cluster")]
const SCAN_SLOT_CONCURRENCY: u16 = 64;
/// The most keys (of every prefix) a cluster `scan` reads from one slot.
#[cfg(feature = "cluster")]
const SCAN_KEYS_PER_SLOT: u32 = 100_000;

/// How many batches (`SCAN` calls, or [`SCAN_SLOTS_PER_BATCH`] slots of a
/// cluster) one `scan` page reads at most.
const SCAN_BATCHES_PER_PAGE: usize = 8;

/// How many keys one `MGET` fetches when listing a subject.
const MGET_CHUNK: usize = 256;
/// How many per-session deletes `delete_subject` runs at once.
const DELETE_CONCURRENCY: usize = 16;
/// The most passes over a subject's index one `delete_subject` makes (see
/// `RedisStore::delete_subject_inner`).
const DELETE_SUBJECT_PASSES: usize = 8;

// Every script touches the keys of one session (one hash slot) or one index
// key, so each is atomic on a cluster too. Header offsets: see `codec`.

/// `utf8_ok(s, from, to)`: whether bytes `from..=to` of `s` are valid UTF-8,
/// by the rules of Rust's `str::from_utf8` (no overlong forms, no
/// surrogates, nothing above U+10FFFF), so that a script refuses exactly
/// the subjects that [`codec`] would call corrupted.
const UTF8_OK: &str = r"
local function utf8_ok(s, from, to)
  local i = from
  while i <= to do
    local c = string.byte(s, i)
    local n, lo, hi = 0, 128, 191
    if c < 128 then n = 0
    elseif c >= 194 and c <= 223 then n = 1
    elseif c == 224 then n = 2; lo = 160
    elseif c >= 225 and c <= 236 then n = 2
    elseif c == 237 then n = 2; hi = 159
    elseif c == 238 or c == 239 then n = 2
    elseif c == 240 then n = 3; lo = 144
    elseif c >= 241 and c <= 243 then n = 3
    elseif c == 244 then n = 3; hi = 143
    else return false end
    if i + n > to then return false end
    for k = 1, n do
      local d = string.byte(s, i + k)
      if d < lo or d > hi then return false end
      lo, hi = 128, 191
    end
    i = i + n + 1
  end
  return true
end
";

/// Reads only the 29-byte header of KEYS[1] into `v` (returning {0} when the
/// key is absent and {-2} when it is not a session value): the payload never
/// crosses into Lua.
const READ_HEADER: &str = r"
local v = redis.call('GETRANGE', KEYS[1], 0, 28)
if #v == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
  return {-2}
end
if #v < 29 or string.byte(v, 1) ~= 83 or string.byte(v, 2) ~= 1 then return {-2} end
";

/// Sets `tag` to the subject tag (flags, length, subject) of KEYS[1], whose
/// header is in `v`; reads the subject bytes only when there is a subject.
/// Returns {-2} for anything [`codec`] would refuse (needs [`UTF8_OK`]).
const READ_SUBJECT_TAG: &str = r"
local n = string.byte(v, 28) * 256 + string.byte(v, 29)
local flags = string.byte(v, 27)
if n > 256 or flags > 1 or (flags == 0 and n > 0) then return {-2} end
local tag = string.sub(v, 27, 29)
if n > 0 then tag = redis.call('GETRANGE', KEYS[1], 26, 28 + n) end
if #tag ~= 3 + n or not utf8_ok(tag, 4, #tag) then return {-2} end
";

/// The longest a `compare_and_delete` receipt is kept (a day), whatever the
/// command timeout.
const RECEIPT_TTL_MAX_MS: u64 = 86_400_000;

/// How long a staged value waits for the save script that moves it into
/// place (it is sent right before the script, in the same pipeline).
const STAGING_TTL_MS: u64 = 30_000;

/// CAS write of a staged value. KEYS[1] session, KEYS[2] the staged new
/// value; ARGV: expected header start (magic, format, version: 10 bytes),
/// now, new expiry for PXAT, the new value's subject tag, and the index
/// floor (see [`index_floor`]; empty: not asked). Moves the staged value
/// into place (`RENAME`, then `PEXPIREAT`), or deletes it when the write is
/// refused. Returns 1 (written, same subject) | 2 (written, same subject,
/// but the old expiry was below the floor: the index entry must be raised)
/// | {1, old subject tag} (written, the subject changed) | 0 not found or
/// expired | -1 version mismatch | -2 corrupted | -3 the staged value is
/// missing.
///
/// The payload never goes through Lua: the script reads only the header
/// and subject (`GETRANGE`). The common case (same version, same subject)
/// costs two string comparisons before the `RENAME`; anything else takes
/// the slow path, which tells the cases apart.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
{UTF8_OK}
local v = redis.call('GETRANGE', KEYS[1], 0, 25 + #ARGV[4])
local now = tonumber(ARGV[2])
local same = string.sub(v, 1, 10) == ARGV[1] and string.sub(v, 27) == ARGV[4]
local refused = nil
if not same then
  if #v == 0 then
    refused = 0
    if redis.call('EXISTS', KEYS[1]) == 1 then refused = -2 end
  elseif #v < 29 or string.byte(v, 1) ~= 83 or string.byte(v, 2) ~= 1 then
    refused = -2
  elseif struct.unpack('>i8', v, 19) <= now then
    refused = 0
  elseif string.sub(v, 3, 10) ~= string.sub(ARGV[1], 3, 10) then
    refused = -1
  else
    local n = string.byte(v, 28) * 256 + string.byte(v, 29)
    local flags = string.byte(v, 27)
    if n > 256 or flags > 1 or (flags == 0 and n > 0) then
      refused = -2
    else
      same = redis.call('GETRANGE', KEYS[1], 26, 28 + n)
      if #same ~= 3 + n or not utf8_ok(same, 4, #same) then refused = -2 end
    end
  end
elseif struct.unpack('>i8', v, 19) <= now then
  refused = 0
end
if refused then
  redis.call('DEL', KEYS[2])
  return refused
end
if tonumber(ARGV[3]) <= now then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  local moved = redis.pcall('RENAME', KEYS[2], KEYS[1])
  if type(moved) == 'table' and moved.err then return -3 end
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
if same == true then
  if ARGV[5] ~= '' and struct.unpack('>i8', v, 19) < tonumber(ARGV[5]) then return 2 end
  return 1
end
return {{1, same}}
"
    ))
});

/// Moves the expiry. KEYS[1] session; ARGV: now, new expiry for PXAT, new
/// expiry as 8 bytes BE. Returns {1, subject tag} | {0} | {-2}.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    // Rewrites the 8 expiry bytes in place (SETRANGE) and the key's expiry;
    // the payload is neither read nor rewritten.
    Script::new(&format!(
        r"
{UTF8_OK}
{READ_HEADER}
local now = tonumber(ARGV[1])
if struct.unpack('>i8', v, 19) <= now then return {{0}} end
{READ_SUBJECT_TAG}
if tonumber(ARGV[2]) <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SETRANGE', KEYS[1], 18, ARGV[3])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return {{1, tag}}
"
    ))
});

/// Compare-and-delete. KEYS[1] session, KEYS[2] its receipt; ARGV:
/// expected version (8 bytes BE), now, the call's nonce (8 bytes), receipt
/// lifetime (ms). Deletes a live session whose stored version is the
/// expected one and leaves a receipt (nonce and subject tag) behind.
/// Returns {1, subject tag} deleted (or: absent, and the receipt is this
/// call's: an earlier attempt of the same call deleted it) | {0} absent or
/// expired | {-1} another version | {-2} corrupted (nothing deleted).
///
/// Reads only the header and the subject (`GETRANGE`), like `touch`.
static COMPARE_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
{UTF8_OK}
local v = redis.call('GETRANGE', KEYS[1], 0, 28)
if #v == 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {{-2}} end
  local receipt = redis.call('GET', KEYS[2])
  if receipt and string.sub(receipt, 1, 8) == ARGV[3] then
    return {{1, string.sub(receipt, 9)}}
  end
  return {{0}}
end
if #v < 29 or string.byte(v, 1) ~= 83 or string.byte(v, 2) ~= 1 then return {{-2}} end
if struct.unpack('>i8', v, 19) <= tonumber(ARGV[2]) then return {{0}} end
if string.sub(v, 3, 10) ~= ARGV[1] then return {{-1}} end
{READ_SUBJECT_TAG}
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[3] .. tag, 'PX', ARGV[4])
return {{1, tag}}
"
    ))
});

/// Deletes a session listed in a subject's index if it still belongs to the
/// subject, or if it is corrupted (whatever [`codec`] would refuse: its
/// subject cannot be read, and the index names it for this subject).
/// KEYS[1] session; ARGV: subject tag, now. Returns {1} deleted live | {2}
/// deleted expired | {3} deleted corrupted | {0} absent or another subject.
/// Reads only the header and the subject (`GETRANGE`).
static DELETE_IF_SUBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
{UTF8_OK}
local v = redis.call('GETRANGE', KEYS[1], 0, 28)
if #v == 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {{0}} end
local ok = #v == 29 and string.byte(v, 1) == 83 and string.byte(v, 2) == 1
local tag = nil
if ok then
  local n = string.byte(v, 28) * 256 + string.byte(v, 29)
  local flags = string.byte(v, 27)
  ok = n <= 256 and (flags == 1 or (flags == 0 and n == 0))
  if ok then
    tag = string.sub(v, 27, 29)
    if n > 0 then tag = redis.call('GETRANGE', KEYS[1], 26, 28 + n) end
    ok = #tag == 3 + n
  end
end
if ok and tag == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if struct.unpack('>i8', v, 19) > tonumber(ARGV[2]) then return {{1}} end
  return {{2}}
end
if ok and utf8_ok(tag, 4, #tag) then return {{0}} end
redis.call('DEL', KEYS[1])
return {{3}}
"
    ))
});

/// Adds or raises an index entry (scores only go up) and lets the index
/// expire with its latest entry. KEYS[1] index; ARGV: member, score.
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(top[2]))) end
return 1
",
    )
});

/// Removes index entries whose score is still at most the cutoff (an entry
/// raised meanwhile by a concurrent write is kept). KEYS[1] index; ARGV:
/// cutoff, members…
static INDEX_PRUNE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cutoff = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= cutoff then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
",
    )
});

/// A [`SessionStore`] in Redis (standalone, or Redis Cluster with the
/// `cluster` feature). Cheap to clone: clones share the connection.
///
/// See the [crate documentation](crate) for the key layout, the value
/// encoding and what is atomic where.
///
/// ```no_run
/// # async fn run() -> sessionkit_core::Result<()> {
/// use sessionkit_redis::{RedisConfig, RedisStore};
///
/// let store = RedisStore::standalone(
///     "redis://127.0.0.1:6379",
///     RedisConfig::new().prefix("myapp:sessions"),
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    timeout: Duration,
    shared: Arc<Shared>,
}

/// What the clones of one store share besides the connection.
struct Shared {
    /// Whether the server has `SET … IFEQ`, and the save counters.
    cap: Capability,
    /// The exact stored values of recently seen sessions.
    known: KnownValues,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.conn {
                    Conn::Standalone(_) => "standalone",
                    #[cfg(feature = "cluster")]
                    Conn::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.keys.prefix())
            .field("command_timeout", &self.timeout)
            .field("save_path", &self.save_path())
            .finish()
    }
}

/// The connection manager settings derived from a [`RedisConfig`].
pub(crate) fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout))
        .set_number_of_retries(config.reconnect_attempts)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
}

impl RedisStore {
    /// Connects to a standalone server (`redis://host:port/db`), with the
    /// default [`RedisConfig`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::standalone(url, RedisConfig::new()).await
    }

    /// Connects to a standalone server through a
    /// [`ConnectionManager`] (one multiplexed connection that reconnects by
    /// itself). Fails with a transient error or [`Error::Timeout`] if the
    /// server cannot be reached within the connect timeout, and, before
    /// connecting, with [`Error::Config`] if a setting of `config` is out of
    /// range (see [`RedisConfig`]; so do the other constructors).
    pub async fn standalone(url: &str, config: RedisConfig) -> Result<Self> {
        let keys = config.validate()?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("invalid redis url: {e}")))?;
        let bound = config.connect_timeout + config.command_timeout;
        let manager = bounded(bound, async {
            ConnectionManager::new_with_config(client, manager_config(&config))
                .await
                .map_err(|e| map_err(e, bound))
        })
        .await?;
        let store = Self::with_conn(Conn::Standalone(manager), keys, &config);
        store.detect_at_connect().await;
        Ok(store)
    }

    /// Wraps an existing [`ConnectionManager`] (its own timeouts apply to
    /// each command; `config` gives the prefix and the overall bound of
    /// each call).
    pub fn from_connection_manager(
        manager: ConnectionManager,
        config: RedisConfig,
    ) -> Result<Self> {
        let keys = config.validate()?;
        Ok(Self::with_conn(Conn::Standalone(manager), keys, &config))
    }

    /// Connects to a Redis Cluster given some of its nodes
    /// (`redis://host:port` each); the client discovers the rest and follows
    /// slot migrations and failovers. If the cluster connection stops
    /// answering (3 store calls in a row time out), the store builds a new
    /// one from the same client and swaps it in (see "Timeouts and retries"
    /// in the [crate documentation](crate)).
    #[cfg(feature = "cluster")]
    pub async fn cluster<I, S>(nodes: I, config: RedisConfig) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = config.validate()?;
        let nodes: Vec<String> = nodes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if nodes.is_empty() {
            return Err(Error::Config("no redis cluster nodes given".into()));
        }
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.command_timeout)
            .retries(u32::try_from(config.reconnect_attempts).unwrap_or(u32::MAX))
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .build()
            .map_err(|e| Error::Config(format!("invalid redis cluster configuration: {e}")))?;
        let bound = config.connect_timeout + config.command_timeout;
        let conn = bounded(bound, async {
            client
                .get_async_connection()
                .await
                .map_err(|e| map_err(e, bound))
        })
        .await?;
        let shared = ClusterShared::new(
            Some(client),
            conn,
            bound,
            config.command_timeout.max(Duration::from_secs(1)),
        );
        let store = Self::with_conn(Conn::Cluster(Arc::new(shared)), keys, &config);
        store.detect_at_connect().await;
        Ok(store)
    }

    /// Wraps an existing cluster connection (its own timeouts and retries
    /// apply to each command; `config` gives the prefix and the overall
    /// bound of each call). Without the client, the store cannot replace a
    /// wedged connection: prefer [`RedisStore::cluster`].
    #[cfg(feature = "cluster")]
    pub fn from_cluster_connection(
        conn: redis::cluster_async::ClusterConnection,
        config: RedisConfig,
    ) -> Result<Self> {
        let keys = config.validate()?;
        let shared = ClusterShared::new(
            None,
            conn,
            config.connect_timeout + config.command_timeout,
            config.command_timeout.max(Duration::from_secs(1)),
        );
        Ok(Self::with_conn(
            Conn::Cluster(Arc::new(shared)),
            keys,
            &config,
        ))
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !matches!(self.conn, Conn::Standalone(_))
    }

    fn with_conn(conn: Conn, keys: Keys, config: &RedisConfig) -> Self {
        let entries = if config.native_saves {
            config.save_cache_entries
        } else {
            0
        };
        RedisStore {
            conn,
            keys,
            timeout: config.command_timeout,
            shared: Arc::new(Shared {
                cap: Capability::new(config.native_saves && entries > 0),
                known: KnownValues::new(entries, config.save_cache_max_value),
            }),
        }
    }

    /// How this store writes a save whose current stored value it knows:
    /// [`SavePath::Native`] (one `SET … IFEQ … PXAT`) when the server has
    /// conditional `SET` (Valkey ≥ 8.1, Redis ≥ 8.4), else
    /// [`SavePath::Script`]. Detected when the store connects and again
    /// after a reconnection, a failover or a restart of the server (see
    /// "Servers and save paths" in the [crate documentation](crate)).
    /// A store built with [`RedisStore::from_connection_manager`] starts on
    /// the script path and detects in the background on its first save (or
    /// call [`RedisStore::detect_save_path`]).
    pub fn save_path(&self) -> SavePath {
        self.shared.cap.path()
    }

    /// How many saves took which path, since the store was built (shared
    /// by its clones).
    pub fn save_stats(&self) -> SaveStats {
        self.shared.cap.stats()
    }

    /// Probes the server now for conditional `SET` (`SET … IFEQ` on a key
    /// that never exists: nothing is written) and switches the save path
    /// accordingly; returns it. Stores do this by themselves; this is for
    /// tests and for operators who want it done at a given moment (after a
    /// planned failover, say). With [`RedisConfig::native_saves`] off (or
    /// an empty [`RedisConfig::save_cache`]) it probes nothing and returns
    /// [`SavePath::Script`].
    pub async fn detect_save_path(&self) -> Result<SavePath> {
        if !self.shared.cap.enabled() {
            return Ok(SavePath::Script);
        }
        let started = self.shared.cap.triggers();
        let outcome = bounded(self.timeout, self.probe()).await;
        self.shared.cap.record_probe(
            started,
            outcome.as_ref().ok().copied(),
            Timestamp::now().as_millis(),
        );
        outcome
    }

    /// Sets the save path without asking the server (tests: a store told
    /// it has `IFEQ` where it has not must still save correctly).
    #[doc(hidden)]
    pub fn __set_save_path(&self, path: SavePath) {
        self.shared.cap.set_path(path);
    }

    /// The first detection, when connecting: a failure leaves the store on
    /// the script path with a probe due (the next save starts one).
    async fn detect_at_connect(&self) {
        match self.detect_save_path().await {
            Ok(path) => tracing::debug!(save_path = ?path, "redis save path detected"),
            Err(err) => {
                tracing::debug!(error = %err, "could not detect the redis save path; saving by script until a later probe succeeds");
            }
        }
    }

    /// `SET <probe key> "" IFEQ <x> PXAT <t>`: the probe key never exists,
    /// so a server with the option answers nil and writes nothing; a server
    /// without it answers `ERR syntax error`.
    async fn probe(&self) -> Result<SavePath> {
        self.shared.cap.probes.fetch_add(1, Ordering::Relaxed);
        let key = self.keys.probe(rand::random());
        let pxat = (Timestamp::now() + Duration::from_secs(60)).as_millis();
        let mut cmd = command("SET", 6, key.len() + 64);
        cmd.arg(&key)
            .arg("")
            .arg("IFEQ")
            .arg("sessionkit capability probe")
            .arg("PXAT")
            .arg(pxat);
        let mut conn = self.conn.clone();
        match cmd.query_async::<Value>(&mut conn).await {
            Ok(Value::Nil | Value::Okay) => Ok(SavePath::Native),
            Ok(_) => Ok(SavePath::Script),
            Err(e) if refused_option(&e) => Ok(SavePath::Script),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Starts a background probe if one is due (see [`Capability`]).
    fn maybe_probe(&self, now: Timestamp) {
        let cap = &self.shared.cap;
        let Some(started) = cap.begin_probe(now.as_millis()) else {
            return;
        };
        let guard = ProbeGuard {
            shared: Arc::clone(&self.shared),
            started,
            outcome: None,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        runtime.spawn(async move {
            let mut guard = guard;
            match bounded(store.timeout, store.probe()).await {
                Ok(path) => {
                    tracing::debug!(save_path = ?path, "redis save path detected again");
                    guard.outcome = Some(path);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "redis save path probe failed; will retry");
                }
            }
        });
    }

    /// The key prefix of this store ([`RedisConfig::prefix`]).
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The upper bound of one store call ([`RedisConfig::command_timeout`]).
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    /// The key under which a session is stored (for operations tooling and
    /// tests; the value format is described in the crate documentation).
    pub fn session_key(&self, id: &SessionId) -> String {
        self.keys.session(id)
    }

    /// The key of a subject's index (a sorted set of session IDs scored by
    /// expiry).
    pub fn subject_index_key(&self, subject: &str) -> String {
        self.keys.subject_index(subject)
    }

    /// Runs one store call within the command timeout, and lets the
    /// connection note whether it timed out. A transient failure or a
    /// timeout makes a capability probe due: a reconnection, a restart or
    /// a failover may put another server behind the connection.
    async fn bounded<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let result = bounded(self.timeout, fut).await;
        self.conn.record(&result);
        if matches!(
            result,
            Err(Error::Backend {
                transient: true,
                ..
            } | Error::Timeout(_))
        ) {
            self.shared.cap.trigger();
        }
        result
    }

    /// [`RedisStore::bounded`] for a call that is safe to send again: when
    /// `call` fails because the connection is dead (see
    /// [`connection_lost`]: the request never reached the server or got no
    /// reply, as for the first command of an idle store after a Redis
    /// restart), it runs once more, on the connection the connection
    /// manager is re-establishing, within the same bound.
    async fn bounded_retry<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.bounded(async {
            match call().await {
                Err(e) if connection_lost(&e) => {
                    tracing::debug!(error = %e, "redis connection lost; sending the call once more");
                    call().await
                }
                r => r,
            }
        })
        .await
    }

    fn err(&self, e: redis::RedisError) -> Error {
        map_err(e, self.timeout)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// Runs `cmd`, an `EVALSHA` of `script` built by [`evalsha`]; after a
    /// `NOSCRIPT` (a restarted or new server, a failover) loads the script
    /// and runs it again.
    async fn eval<T: redis::FromRedisValue>(&self, script: &Script, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // An empty script cache: a new or restarted server.
                self.shared.cap.trigger();
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(|e| self.err(e))?;
                cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
            }
            r => r.map_err(|e| self.err(e)),
        }
    }

    /// The write of `save`: stages the new value under a key of its own
    /// (`SET … PX`) and runs the compare-and-swap script that moves it into
    /// place, in one pipeline (one round trip; both keys share a slot). The
    /// payload reaches the server once, as a plain `SET` argument, and never
    /// goes through Lua. After a `NOSCRIPT`, loads the script and runs it
    /// again (the staged value waits [`STAGING_TTL_MS`]).
    async fn save_staged(
        &self,
        record: &Record,
        value: &codec::Encoded<'_>,
        now: Timestamp,
        floor: Option<i64>,
    ) -> Result<Value> {
        let staging = self.keys.staging(&record.id, rand::random());
        let mut set = command("SET", 4, staging.len() + value.len() + 16);
        set.arg(&staging).arg(value).arg("PX").arg(STAGING_TTL_MS);
        let mut expected = [0u8; 10];
        expected[0] = codec::MAGIC;
        expected[1] = codec::FORMAT;
        expected[2..].copy_from_slice(&record.version.to_be_bytes());
        let tag = codec::subject_tag(record.subject.as_deref());
        let mut cas = evalsha(
            &SAVE,
            2,
            7,
            self.keys.session_len() + staging.len() + 10 + 60 + tag.len(),
        );
        cas.arg(self.keys.session_arg(&record.id))
            .arg(&staging)
            .arg(&expected[..])
            .arg(now.as_millis())
            .arg(record.expires_at.as_millis().min(MAX_PXAT))
            .arg(tag);
        match floor {
            Some(floor) => cas.arg(floor),
            None => cas.arg(""),
        };
        let mut pipe = redis::pipe();
        pipe.add_command(set).add_command(cas).ignore_errors();
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
        let [staged, reply]: [Value; 2] = replies
            .try_into()
            .map_err(|_| Error::backend("unexpected pipeline reply", false))?;
        // The script found nothing to move (-3) or refused the write; the
        // failed SET is the cause worth reporting.
        staged.extract_error().map_err(|e| self.err(e))?;
        match reply.extract_error() {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.shared.cap.trigger();
                let cas = pipe
                    .cmd_iter()
                    .nth(1)
                    .ok_or_else(|| Error::backend("unexpected pipeline state", false))?;
                self.eval(&SAVE, cas).await
            }
            r => r.map_err(|e| self.err(e)),
        }
    }

    /// Remembers what a create or a save just wrote (see
    /// [`KnownValues::put`]); builds the small head buffer only for a value
    /// the cache takes.
    fn remember_written(
        &self,
        record: &Record,
        version: u64,
        value: &codec::Encoded<'_>,
        force: bool,
    ) {
        if self.shared.known.accepts(value.len()) {
            self.shared
                .known
                .put(Known::written(record, version, value.head()), force);
        } else {
            self.shared.known.forget(&record.id, None);
        }
    }

    /// A save as one `SET key value IFEQ <remembered value> PXAT <expiry>`.
    /// The index command is left out when the subject is unchanged and its
    /// entry already covers the new expiry (known exactly: if the write
    /// happens, the stored value was the remembered one); otherwise it is
    /// sent first, in the same round trip. A refused comparison writes
    /// nothing and leaves the decision to the script.
    async fn save_native(
        &self,
        record: &Record,
        value: &codec::Encoded<'_>,
        new_version: u64,
        known: &Known,
    ) -> Result<NativeSave> {
        let subject = record.subject.as_deref();
        let index = subject.filter(|s| {
            known.subject() != Some(*s) || !index_covers(known.expires_at, record.expires_at)
        });
        let mut set = command(
            "SET",
            6,
            self.keys.session_len() + value.len() + known.len() + 32,
        );
        set.arg(self.keys.session_arg(&record.id))
            .arg(value)
            .arg("IFEQ")
            .arg(known)
            .arg("PXAT")
            .arg(record.expires_at.as_millis().min(MAX_PXAT));
        let write = async {
            let mut conn = self.conn.clone();
            set.query_async::<Value>(&mut conn).await
        };
        let (indexed, reply) = match index {
            Some(subject) => {
                futures_util::future::join(
                    self.index_add(subject, &record.id, record.expires_at),
                    write,
                )
                .await
            }
            None => (Ok(()), write.await),
        };
        let cap = &self.shared.cap;
        match reply {
            Ok(Value::Okay) => {
                cap.native.fetch_add(1, Ordering::Relaxed);
                self.remember_written(record, new_version, value, false);
                if let (Err(err), Some(subject)) = (&indexed, index) {
                    // Written, but the index entry may now expire before
                    // the session: raise it once more before reporting.
                    tracing::debug!(error = %err, "raising a subject index entry failed; retrying");
                    self.index_add(subject, &record.id, record.expires_at)
                        .await?;
                }
                if let Some(old) = known.subject().filter(|o| subject != Some(*o))
                    && let Err(err) = self.index_remove(old, &[record.id.as_str()]).await
                {
                    tracing::debug!(error = %err, "could not remove a session from its former subject's index; pruned on read");
                }
                Ok(NativeSave::Saved)
            }
            Ok(Value::Nil) => {
                // Saved or touched elsewhere, deleted, expired or corrupted:
                // the script tells which (and saves after a touch).
                cap.native_missed.fetch_add(1, Ordering::Relaxed);
                self.shared.known.forget(&record.id, Some(known.version));
                Ok(NativeSave::Missed {
                    indexed: index.is_some() && indexed.is_ok(),
                })
            }
            Ok(_) => Err(Error::backend("unexpected reply to SET IFEQ", false)),
            Err(e) if refused_option(&e) => {
                // This server has no IFEQ (a failover to an older one, or a
                // cluster node not yet upgraded): nothing was written.
                tracing::info!(error = %e, "the redis server refused SET IFEQ; saving by script");
                cap.native_missed.fetch_add(1, Ordering::Relaxed);
                cap.set_path(SavePath::Script);
                Ok(NativeSave::Missed {
                    indexed: index.is_some() && indexed.is_ok(),
                })
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// A save by the compare-and-swap script (see [`RedisStore::save_staged`]).
    ///
    /// The index command goes in the same round trip, unless `indexed` (a
    /// native attempt already raised it) or the remembered value `known`
    /// predicts that the entry covers the new expiry (same subject, old
    /// expiry at or past the floor); the script then checks the prediction
    /// against the stored expiry and answers 2 when it was wrong (a touch
    /// elsewhere lowered the expiry), and only then is the entry raised
    /// after the write.
    async fn save_script(
        &self,
        record: &Record,
        value: &codec::Encoded<'_>,
        new_version: u64,
        now: Timestamp,
        known: Option<&Known>,
        indexed: bool,
    ) -> Result<u64> {
        let subject = record.subject.as_deref().filter(|_| record.is_live(now));
        let predicted = subject.is_some()
            && !indexed
            && known.is_some_and(|k| {
                k.subject() == subject && index_covers(k.expires_at, record.expires_at)
            });
        let send_index = subject.filter(|_| !indexed && !predicted);
        let floor = predicted.then(|| index_floor(record.expires_at));
        let save = self.save_staged(record, value, now, floor);
        // The index entry is raised in the same round trip as the write
        // (its command is sent first).
        let (index_result, reply) = match send_index {
            Some(subject) => {
                futures_util::future::join(
                    self.index_add(subject, &record.id, record.expires_at),
                    save,
                )
                .await
            }
            None => (Ok(()), save.await),
        };
        let (code, tag) = script_reply(reply?)?;
        self.shared.cap.script.fetch_add(1, Ordering::Relaxed);
        match code {
            1 | 2 => {
                if record.is_live(now) {
                    self.remember_written(record, new_version, value, false);
                } else {
                    self.shared.known.forget(&record.id, None);
                }
                if let Some(subject) = subject {
                    if let (Err(err), Some(_)) = (&index_result, send_index) {
                        // Written, but the index entry may now expire before
                        // the session: raise it once more before reporting.
                        tracing::debug!(error = %err, "raising a subject index entry failed; retrying");
                        self.index_add(subject, &record.id, record.expires_at)
                            .await?;
                    } else if predicted && (code == 2 || tag.is_some()) {
                        // The prediction was wrong: raise the entry now.
                        self.index_add(subject, &record.id, record.expires_at)
                            .await?;
                    }
                }
                // A tag comes back only when the subject changed.
                let old = match tag {
                    Some(tag) => codec::parse_subject_tag(&tag)?,
                    None => None,
                };
                if let Some(old) = old.filter(|o| record.subject.as_deref() != Some(o))
                    && let Err(err) = self.index_remove(&old, &[record.id.as_str()]).await
                {
                    tracing::debug!(error = %err, "could not remove a session from its former subject's index; pruned on read");
                }
                Ok(new_version)
            }
            0 => {
                self.shared.known.forget(&record.id, None);
                Err(Error::NotFound)
            }
            -1 => {
                self.shared.known.forget(&record.id, Some(record.version));
                Err(Error::Conflict)
            }
            -2 => Err(Error::decode("corrupted session value")),
            -3 => Err(Error::backend(
                "the staged session value was gone before the save script ran; retry",
                true,
            )),
            _ => Err(Error::backend("unexpected script reply", false)),
        }
    }

    async fn index_add(&self, subject: &str, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        let mut cmd = evalsha(&INDEX_ADD, 1, 3, 64 + 22 + 20);
        cmd.arg(self.keys.subject_index(subject))
            .arg(id.as_str())
            .arg(index_score(expires_at));
        let _: i64 = self.eval(&INDEX_ADD, &cmd).await?;
        Ok(())
    }

    async fn index_remove(&self, subject: &str, members: &[&str]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .query(
                redis::cmd("ZREM")
                    .arg(self.keys.subject_index(subject))
                    .arg(members),
            )
            .await?;
        Ok(())
    }

    async fn index_prune(&self, subject: &str, cutoff: Timestamp, members: &[&str]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut inv = INDEX_PRUNE.key(self.keys.subject_index(subject));
        inv.arg(cutoff.as_millis());
        for m in members {
            inv.arg(*m);
        }
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One page of `scan`: the pending IDs of the last batch first, then
    /// batches from `at` (`None`: none left), until `limit` IDs are in hand
    /// (the rest of the last batch goes into the cursor), the keyspace is
    /// done, or [`SCAN_BATCHES_PER_PAGE`] batches were read (a keyspace
    /// full of other keys: the page may then hold fewer records, even
    /// none).
    async fn scan_page(
        &self,
        mut at: Option<u64>,
        pending: &[SessionId],
        limit: usize,
    ) -> Result<ScanPage> {
        let mut ids: Vec<SessionId> = pending.to_vec();
        let mut batches = 0;
        while ids.len() < limit && batches < SCAN_BATCHES_PER_PAGE {
            let Some(position) = at else { break };
            let (batch, next) = self.scan_batch(position, limit - ids.len()).await?;
            ids.extend(batch);
            at = next;
            batches += 1;
        }
        let rest = if ids.len() > limit {
            ids.split_off(limit)
        } else {
            Vec::new()
        };
        let records = self.load_many(&ids).await?;
        let next = (at.is_some() || !rest.is_empty()).then(|| scan_cursor(at, &rest));
        Ok(ScanPage::new(records, next))
    }

    /// One batch of session IDs from `position`, and where the next batch
    /// starts (`None`: the keyspace is done).
    async fn scan_batch(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<(Vec<SessionId>, Option<u64>)> {
        match &self.conn {
            Conn::Standalone(_) => {
                let pattern = format!("{}:s:{{*", self.keys.prefix());
                let (next, keys): (u64, Vec<Vec<u8>>) = self
                    .query(
                        redis::cmd("SCAN")
                            .arg(position)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(limit.clamp(16, 1000)),
                    )
                    .await?;
                let mut ids: Vec<SessionId> = keys
                    .iter()
                    .filter_map(|k| self.keys.parse_session(k))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                Ok((ids, (next != 0).then_some(next)))
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(shared) => self.scan_slots(shared, position, limit).await,
        }
    }

    /// Cluster batch: the session keys of the slots from `first`, a chunk
    /// of slots at a time, until `limit` IDs are found or
    /// [`SCAN_SLOTS_PER_BATCH`] slots were read.
    #[cfg(feature = "cluster")]
    async fn scan_slots(
        &self,
        shared: &ClusterShared,
        first: u64,
        limit: usize,
    ) -> Result<(Vec<SessionId>, Option<u64>)> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

        let Ok(first) = u16::try_from(first) else {
            return Ok((Vec::new(), None));
        };
        if first >= CLUSTER_SLOTS {
            return Ok((Vec::new(), None));
        }
        let end = first
            .saturating_add(SCAN_SLOTS_PER_BATCH)
            .min(CLUSTER_SLOTS);
        let mut ids = Vec::new();
        let mut slot = first;
        while slot < end && ids.len() < limit {
            let chunk_end = slot.saturating_add(SCAN_SLOT_CONCURRENCY).min(end);
            let reads = (slot..chunk_end).map(|s| {
                let mut conn = shared.current();
                async move {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("GETKEYSINSLOT").arg(s).arg(SCAN_KEYS_PER_SLOT);
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(s, SlotAddr::Master),
                    ));
                    conn.route_command(cmd, route).await
                }
            });
            for reply in futures_util::future::join_all(reads).await {
                let keys: Vec<Vec<u8>> = redis::from_redis_value(reply.map_err(|e| self.err(e))?)
                    .map_err(|e| self.err(e.into()))?;
                let mut in_slot: Vec<SessionId> = keys
                    .iter()
                    .filter_map(|k| self.keys.parse_session(k))
                    .collect();
                in_slot.sort_unstable();
                ids.extend(in_slot);
            }
            slot = chunk_end;
        }
        Ok((ids, (slot < CLUSTER_SLOTS).then_some(u64::from(slot))))
    }

    /// The live records among `ids` (`MGET`), in order; corrupted values are
    /// skipped with a warning.
    async fn load_many(&self, ids: &[SessionId]) -> Result<Vec<Record>> {
        let now = Timestamp::now();
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MGET_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.keys.session(id)).collect();
            let values: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
            if values.len() != keys.len() {
                return Err(Error::backend(
                    "MGET returned a wrong number of values",
                    true,
                ));
            }
            for (id, value) in chunk.iter().zip(values) {
                let Some(bytes) = value else { continue };
                match codec::decode_owned(*id, bytes) {
                    Ok(r) if r.is_live(now) => records.push(r),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(id = %id.redacted(), error = %err, "skipping a corrupted session value while scanning");
                    }
                }
            }
        }
        Ok(records)
    }

    /// Reads a subject's index and, `with_values`, the sessions it names.
    async fn scan_subject(&self, subject: &str, with_values: bool) -> Result<Vec<IndexEntry>> {
        let raw: Value = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.keys.subject_index(subject))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        let pairs = zrange_pairs(raw)?;
        let mut entries = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(MGET_CHUNK) {
            let ids: Vec<Option<SessionId>> = chunk
                .iter()
                .map(|(m, _)| SessionId::parse(m).ok())
                .collect();
            let keys: Vec<String> = ids
                .iter()
                .flatten()
                .map(|id| self.keys.session(id))
                .collect();
            let mut values: std::vec::IntoIter<Option<Vec<u8>>> = if keys.is_empty() || !with_values
            {
                Vec::new().into_iter()
            } else {
                let v: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
                if v.len() != keys.len() {
                    return Err(Error::backend(
                        "MGET returned a wrong number of values",
                        true,
                    ));
                }
                v.into_iter()
            };
            for ((member, score), id) in chunk.iter().zip(ids) {
                let value = match id {
                    Some(_) => values.next().flatten(),
                    None => None,
                };
                entries.push(IndexEntry {
                    member: member.clone(),
                    score: *score,
                    id,
                    value,
                });
            }
        }
        Ok(entries)
    }

    async fn list_subject_inner(&self, subject: &str) -> Result<Vec<Record>> {
        let now = Timestamp::now();
        let entries = self.scan_subject(subject, true).await?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        let mut invalid = Vec::new();
        let mut lagging = Vec::new();
        for e in &entries {
            if e.id.is_none() {
                invalid.push(e.member.as_str());
                continue;
            }
            let record = match (e.id, &e.value) {
                (Some(id), Some(bytes)) => match codec::decode(id, bytes) {
                    Ok(r) => Some(r),
                    Err(err) => {
                        tracing::warn!(id = %id.redacted(), error = %err, "skipping a corrupted session value while listing a subject");
                        None
                    }
                },
                _ => None,
            };
            match record {
                Some(r) if r.subject.as_deref() == Some(subject) && r.is_live(now) => {
                    if e.score < index_score(r.expires_at) as f64 {
                        lagging.push((r.id, r.expires_at));
                    }
                    live.push(r);
                }
                _ if e.score <= now.as_millis() as f64 => stale.push(e.member.as_str()),
                _ => {}
            }
        }
        if let Err(err) = self.index_prune(subject, now, &stale).await {
            tracing::debug!(error = %err, "could not prune a subject index; will retry on the next read");
        }
        if let Err(err) = self.index_remove(subject, &invalid).await {
            tracing::debug!(error = %err, "could not clean a subject index; will retry on the next read");
        }
        // An entry scored below its session's expiry (a touch whose index
        // update failed) is raised, so the index key cannot expire first.
        for (id, expires_at) in lagging {
            if let Err(err) = self.index_add(subject, &id, expires_at).await {
                tracing::debug!(error = %err, "could not repair a subject index entry; will retry on the next read");
            }
        }
        live.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(live)
    }

    async fn delete_if_subject(
        &self,
        i: usize,
        id: SessionId,
        tag: &[u8],
        now: Timestamp,
    ) -> (usize, Result<i64>) {
        let mut conn = self.conn.clone();
        let r: Result<Vec<i64>> = DELETE_IF_SUBJECT
            .key(self.keys.session(&id))
            .arg(tag)
            .arg(now.as_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e));
        (i, r.map(|v| v.first().copied().unwrap_or(0)))
    }

    /// `delete_subject`: passes over the subject's index until a pass sees
    /// no session vanish under it.
    ///
    /// A session the index lists but that a pass finds gone (or moved to
    /// another subject) was removed by someone else while the pass ran, for
    /// instance by the `compare_and_delete` of a rotation, whose new session
    /// was created (and indexed) before the old one went, possibly after
    /// this pass read the index. One more pass reads the index again and
    /// removes that successor, so a session rotated during a log-out
    /// everywhere does not survive it. An entry that was already gone in
    /// the previous pass (a stale entry, or a create still in flight) does
    /// not call for another pass, so the passes end: in practice one, two
    /// when something raced, at most [`DELETE_SUBJECT_PASSES`].
    async fn delete_subject_inner(&self, subject: &str) -> Result<u64> {
        let tag = codec::subject_tag(Some(subject));
        let mut removed = 0u64;
        let mut gone_before: std::collections::HashSet<String> = Default::default();
        for pass in 1..=DELETE_SUBJECT_PASSES {
            let (n, gone) = self.delete_subject_pass(subject, &tag).await?;
            removed += n;
            if gone.iter().all(|m| gone_before.contains(m)) {
                return Ok(removed);
            }
            if pass == DELETE_SUBJECT_PASSES {
                tracing::warn!(
                    passes = pass,
                    "delete_subject: sessions of the subject kept vanishing under concurrent changes; stopped"
                );
            }
            gone_before = gone;
        }
        Ok(removed)
    }

    /// One pass of `delete_subject`: deletes every session the index lists
    /// that still belongs to the subject (or is corrupted), cleans the index,
    /// and returns how many live ones it removed and the members it found
    /// gone or moved to another subject.
    async fn delete_subject_pass(
        &self,
        subject: &str,
        tag: &[u8],
    ) -> Result<(u64, std::collections::HashSet<String>)> {
        let now = Timestamp::now();
        let entries = self.scan_subject(subject, false).await?;
        let mut results: Vec<(usize, Result<i64>)> = Vec::with_capacity(entries.len());
        let jobs: Vec<(usize, SessionId)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.id.map(|id| (i, id)))
            .collect();
        for batch in jobs.chunks(DELETE_CONCURRENCY) {
            let mut futs = Vec::with_capacity(batch.len());
            for (i, id) in batch {
                futs.push(self.delete_if_subject(*i, *id, tag, now));
            }
            results.extend(futures_util::future::join_all(futs).await);
        }
        let mut removed = 0u64;
        let mut deleted: Vec<&str> = Vec::new();
        let mut first_err = None;
        let mut done = vec![false; entries.len()];
        for (i, r) in results {
            match r {
                // A corrupted value (3) counts as removed, as for `delete`.
                Ok(1 | 3) => {
                    removed += 1;
                    done[i] = true;
                }
                Ok(2) => done[i] = true,
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let mut stale = Vec::new();
        let mut gone = std::collections::HashSet::new();
        for (e, done) in entries.iter().zip(done) {
            if done || e.id.is_none() {
                deleted.push(e.member.as_str());
                continue;
            }
            gone.insert(e.member.clone());
            if e.score <= now.as_millis() as f64 {
                // Named no session of this subject: pruned only while its
                // score has passed, so an in-flight create is kept.
                stale.push(e.member.as_str());
            }
        }
        if let Err(err) = self.index_remove(subject, &deleted).await {
            tracing::debug!(error = %err, "could not clean a subject index; pruned on read");
        }
        if let Err(err) = self.index_prune(subject, now, &stale).await {
            tracing::debug!(error = %err, "could not prune a subject index; will retry on the next read");
        }
        Ok((removed, gone))
    }
}

/// Ends a background probe when its task finishes or is dropped (a
/// runtime shutting down), so that a later save can start another.
struct ProbeGuard {
    shared: Arc<Shared>,
    started: u64,
    outcome: Option<SavePath>,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.shared
            .cap
            .end_probe(self.started, self.outcome, Timestamp::now().as_millis());
    }
}

/// Whether a server refused a command's syntax (`ERR …`, or an ACL that
/// forbids it): for `SET … IFEQ`, a server without the option. Such a
/// command was not executed.
fn refused_option(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::ResponseError | redis::ServerErrorKind::NoPerm
        )
    )
}

/// What a native save attempt did.
enum NativeSave {
    /// Written.
    Saved,
    /// Not written (the stored value was not the remembered one, or the
    /// server refused the option): the script decides. `indexed`: the
    /// subject's index entry was already raised for the new expiry.
    Missed { indexed: bool },
}

struct IndexEntry {
    member: String,
    score: f64,
    id: Option<SessionId>,
    value: Option<Vec<u8>>,
}

/// `ZRANGE … WITHSCORES` as (member, score) pairs, from the flat RESP2 form
/// or the nested RESP3 form.
fn zrange_pairs(raw: Value) -> Result<Vec<(String, f64)>> {
    let bad = || Error::backend("unexpected ZRANGE reply", false);
    let items = match raw {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        _ => return Err(bad()),
    };
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    };
    let number = |v: &Value| -> Option<f64> {
        match v {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            other => text(other)?.parse().ok(),
        }
    };
    let mut out = Vec::new();
    if items.iter().all(|v| matches!(v, Value::Array(_))) {
        for item in &items {
            if let Value::Array(pair) = item
                && let [m, s] = &pair[..]
            {
                // Members that are not UTF-8 cannot be session IDs; keep them
                // as lossy text so they can be pruned.
                out.push((text(m).unwrap_or_default(), number(s).ok_or_else(bad)?));
            }
        }
    } else {
        for pair in items.chunks(2) {
            if let [m, s] = pair {
                out.push((text(m).unwrap_or_default(), number(s).ok_or_else(bad)?));
            }
        }
    }
    Ok(out)
}

/// A command named `name`, its buffers sized for `args` more arguments of
/// `bytes` bytes in all (so that writing them does not reallocate).
fn command(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args + 1, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// `EVALSHA <sha> <keys>`, to which the caller adds `args` more arguments
/// (keys and arguments) of about `bytes` bytes in all.
fn evalsha(script: &Script, keys: usize, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = command("EVALSHA", args + 2, 40 + 2 + bytes);
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Parses a script reply: `code` or `{code, tag?}`.
fn script_reply(v: Value) -> Result<(i64, Option<Vec<u8>>)> {
    let bad = || Error::backend("unexpected script reply", false);
    match v {
        Value::Int(code) => Ok((code, None)),
        Value::Array(items) => {
            let code = match items.first() {
                Some(Value::Int(c)) => *c,
                _ => return Err(bad()),
            };
            let tag = match items.get(1) {
                Some(Value::BulkString(b)) => Some(b.clone()),
                None => None,
                _ => return Err(bad()),
            };
            Ok((code, tag))
        }
        _ => Err(bad()),
    }
}

fn check_subject(record: &Record) -> Result<()> {
    match &record.subject {
        Some(s) => validate_subject(s),
        None => Ok(()),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &Record) -> Result<()> {
        check_subject(record)?;
        let value = codec::encoded(record, record.version)?;
        self.bounded(async {
            let now = Timestamp::now();
            let key = self.keys.session_arg(&record.id);
            // A PXAT in the past stores nothing (the record is not live), but
            // a live record with this ID still makes NX fail.
            let pxat = record.expires_at.as_millis().clamp(1, MAX_PXAT);
            let mut set = command("SET", 5, self.keys.session_len() + value.len() + 24);
            set.arg(&key).arg(&value).arg("NX").arg("PXAT").arg(pxat);
            // The index entry and the session are written in one round trip
            // (the index command is sent first). A session whose index entry
            // could not be written is taken back, so a session that exists
            // is always in its subject's index.
            let (indexed, reply) = match record.subject.as_deref() {
                Some(subject) if record.is_live(now) => {
                    futures_util::future::join(
                        self.index_add(subject, &record.id, record.expires_at),
                        self.query::<Value>(&set),
                    )
                    .await
                }
                _ => (Ok(()), self.query::<Value>(&set).await),
            };
            if matches!(reply?, Value::Nil) {
                return Err(Error::Conflict);
            }
            if let Err(e) = indexed {
                if let Err(undo) = self.query::<i64>(redis::cmd("DEL").arg(&key)).await {
                    tracing::warn!(id = %record.id.redacted(), error = %undo, "could not take back a session whose index entry failed; it expires unused");
                }
                return Err(e);
            }
            if record.is_live(now) {
                self.remember_written(record, record.version, &value, true);
            }
            Ok(())
        })
        .await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.bounded_retry(|| async {
            let bytes: Option<Vec<u8>> = self
                .query(command("GET", 1, self.keys.session_len()).arg(self.keys.session_arg(id)))
                .await?;
            let Some(bytes) = bytes else { return Ok(None) };
            if !self.shared.known.enabled() {
                let record = codec::decode_owned(*id, bytes)?;
                return Ok(record.is_live(Timestamp::now()).then_some(record));
            }
            let (record, head) = codec::decode_owned_with_head(*id, bytes)?;
            if !record.is_live(Timestamp::now()) {
                return Ok(None);
            }
            // The exact stored bytes, for a native save: views into the
            // reply, no copy.
            self.shared.known.put(Known::loaded(&record, head), false);
            Ok(Some(record))
        })
        .await
    }

    async fn save(&self, record: &Record) -> Result<u64> {
        check_subject(record)?;
        let Some(new_version) = record.version.checked_add(1) else {
            // No stored version can be followed by this one: report what a
            // CAS would (absent, or a different version), else exhaustion.
            return match self.load(&record.id).await? {
                None => Err(Error::NotFound),
                Some(stored) if stored.version != record.version => Err(Error::Conflict),
                Some(_) => Err(Error::backend("session version counter exhausted", false)),
            };
        };
        let value = codec::encoded(record, new_version)?;
        self.bounded(async {
            let now = Timestamp::now();
            self.maybe_probe(now);
            let known = self.shared.known.get(&record.id, record.version);
            // The native path needs the exact stored bytes (the remembered
            // value at this version), a live old value (IFEQ does not know
            // the application's clock) and a live new one (a save into the
            // past deletes, which the script does).
            if self.shared.cap.path() == SavePath::Native
                && record.is_live(now)
                && let Some(known) = known.as_ref().filter(|k| k.expires_at > now.as_millis())
            {
                match self.save_native(record, &value, new_version, known).await? {
                    NativeSave::Saved => return Ok(new_version),
                    NativeSave::Missed { indexed } => {
                        return self
                            .save_script(record, &value, new_version, now, None, indexed)
                            .await;
                    }
                }
            }
            self.save_script(record, &value, new_version, now, known.as_ref(), false)
                .await
        })
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: Timestamp) -> Result<()> {
        // Safe to send again: it sets an absolute expiry.
        self.bounded_retry(|| async {
            let now = Timestamp::now();
            let mut cmd = evalsha(&TOUCH, 1, 4, self.keys.session_len() + 48);
            cmd.arg(self.keys.session_arg(id))
                .arg(now.as_millis())
                .arg(expires_at.as_millis().min(MAX_PXAT))
                .arg(&expires_at.as_millis().to_be_bytes()[..]);
            let reply: Value = self.eval(&TOUCH, &cmd).await?;
            match script_reply(reply)? {
                (1, Some(tag)) => {
                    // The script rewrote the expiry bytes in place: so does
                    // the remembered value (or it goes, with the session).
                    if expires_at > now {
                        self.shared.known.touched(id, expires_at.as_millis());
                    } else {
                        self.shared.known.forget(id, None);
                    }
                    // The index is raised after the write (the subject is
                    // only known now). If this fails the caller sees the
                    // error and a retry repairs the index.
                    if let Some(subject) = codec::parse_subject_tag(&tag)?
                        && expires_at > now
                    {
                        self.index_add(&subject, id, expires_at).await?;
                    }
                    Ok(())
                }
                (0, _) => {
                    self.shared.known.forget(id, None);
                    Err(Error::NotFound)
                }
                (-2, _) => Err(Error::decode("corrupted session value")),
                _ => Err(Error::backend("unexpected script reply", false)),
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        // Safe to send again; if the first attempt was applied and only its
        // reply was lost, the second finds nothing and reports `false`.
        self.shared.known.forget(id, None);
        self.bounded_retry(|| async {
            let now = Timestamp::now();
            let old: Option<Vec<u8>> = self
                .query(command("GETDEL", 1, self.keys.session_len()).arg(self.keys.session_arg(id)))
                .await?;
            let Some(old) = old else { return Ok(false) };
            match codec::decode(*id, &old) {
                Ok(record) => {
                    if let Some(subject) = &record.subject
                        && let Err(err) = self.index_remove(subject, &[id.as_str()]).await
                    {
                        tracing::debug!(error = %err, "could not remove a deleted session from its subject's index; pruned on read");
                    }
                    Ok(record.is_live(now))
                }
                Err(err) => {
                    tracing::warn!(id = %id.redacted(), error = %err, "deleted a corrupted session value");
                    Ok(true)
                }
            }
        })
        .await
    }

    async fn list_subject(&self, subject: &str) -> Result<Vec<Record>> {
        validate_subject(subject)?;
        self.bounded_retry(|| self.list_subject_inner(subject))
            .await
    }

    async fn delete_subject(&self, subject: &str) -> Result<u64> {
        validate_subject(subject)?;
        // Safe to send again (the count may then miss what the first
        // attempt removed).
        self.bounded_retry(|| self.delete_subject_inner(subject))
            .await
    }

    async fn compare_and_delete(&self, id: &SessionId, version: u64) -> Result<()> {
        // The nonce makes the call safe to send again: the script leaves it
        // in a receipt next to the session when it deletes, and a second
        // attempt that finds the session gone and its own receipt there
        // knows the first one succeeded (a receipt of another call, say a
        // concurrent rotation that won, is NotFound).
        let nonce: [u8; 8] = rand::random::<u64>().to_be_bytes();
        // The receipt must outlive the call (both attempts run within the
        // command timeout); capped so that `PX` always accepts it.
        let receipt_ttl_ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2)
            .saturating_add(1_000)
            .min(RECEIPT_TTL_MAX_MS);
        let receipt = self.keys.receipt(id);
        self.shared.known.forget(id, None);
        self.bounded_retry(|| async {
            let mut cmd = evalsha(
                &COMPARE_AND_DELETE,
                2,
                6,
                self.keys.session_len() + receipt.len() + 8 + 20 + 8 + 20,
            );
            cmd.arg(self.keys.session_arg(id))
                .arg(&receipt)
                .arg(&version.to_be_bytes()[..])
                .arg(Timestamp::now().as_millis())
                .arg(&nonce[..])
                .arg(receipt_ttl_ms);
            let reply: Value = self.eval(&COMPARE_AND_DELETE, &cmd).await?;
            match script_reply(reply)? {
                (1, Some(tag)) => {
                    // Like `delete`: the index entry goes after the session
                    // (they are in different slots); an entry left behind
                    // names no session and is pruned on read.
                    match codec::parse_subject_tag(&tag) {
                        Ok(Some(subject)) => {
                            if let Err(err) = self.index_remove(&subject, &[id.as_str()]).await {
                                tracing::debug!(error = %err, "could not remove a deleted session from its subject's index; pruned on read");
                            }
                        }
                        Ok(None) => {}
                        Err(err) => {
                            // The script checks the subject as the codec
                            // does, so this does not happen; the session is
                            // gone either way.
                            tracing::warn!(id = %id.redacted(), error = %err, "compare_and_delete removed a session whose subject could not be read");
                        }
                    }
                    Ok(())
                }
                (0, _) => Err(Error::NotFound),
                (-1, _) => Err(Error::Conflict),
                (-2, _) => Err(Error::decode("corrupted session value")),
                _ => Err(Error::backend("unexpected script reply", false)),
            }
        })
        .await
    }

    /// Redis expires keys by itself (`PXAT`): nothing to purge, returns 0.
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    /// Standalone: `SCAN … MATCH <prefix>:s:{*`; on a cluster, slot by
    /// slot (`CLUSTER GETKEYSINSLOT` on each slot's master, so a failover
    /// or a slot migration between pages does not matter). A batch larger
    /// than the page keeps its remaining IDs in the cursor. Corrupted
    /// values are skipped with a warning, like `list_subject`.
    async fn scan(&self, cursor: Option<&ScanCursor>, limit: usize) -> Result<ScanPage> {
        let (at, pending) = match cursor {
            Some(c) => parse_scan_cursor(c.as_str())?,
            None => (Some(0), Vec::new()),
        };
        let limit = limit.max(1);
        // Read-only: safe to send again on a new connection.
        self.bounded_retry(|| self.scan_page(at, &pending, limit))
            .await
    }
}

/// A scan cursor: `<position>` then `:<id>` for each ID of the last batch
/// not returned yet. The position is the `SCAN` cursor (standalone) or the
/// next slot (cluster), or `e` when only those IDs are left.
fn scan_cursor(at: Option<u64>, pending: &[SessionId]) -> ScanCursor {
    let mut text = at.map_or_else(|| "e".to_owned(), |at| at.to_string());
    for id in pending {
        text.push(':');
        text.push_str(id.as_str());
    }
    ScanCursor::new(text)
}

fn parse_scan_cursor(text: &str) -> Result<(Option<u64>, Vec<SessionId>)> {
    let bad = || Error::decode("not a scan cursor of a Redis session store");
    let mut parts = text.split(':');
    let at = match parts.next() {
        Some("e") => None,
        Some(p) => Some(p.parse::<u64>().map_err(|_| bad())?),
        None => return Err(bad()),
    };
    let pending = parts
        .map(|p| SessionId::parse(p).map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    Ok((at, pending))
}
