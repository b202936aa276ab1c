//! [`RedisInvalidationChannel`]: the cross-instance invalidation channel
//! over Redis pub/sub.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, PubSub};
use sessionkit_core::{
    ChannelEvent, Error, InvalidationChannel, InvalidationMessage, Result, async_trait,
};
use tokio::sync::mpsc;

use crate::config::RedisConfig;
use crate::conn::{bounded, connection_lost, map_err};
use crate::store::manager_config;

/// How many events a subscriber may have queued before the channel replaces
/// what it cannot deliver with one [`ChannelEvent::Reset`].
const QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// An [`InvalidationChannel`] over Redis pub/sub, on the channel
/// `<prefix>:invalidate`.
///
/// - [`publish`](InvalidationChannel::publish) sends
///   [`InvalidationMessage::encode`] with `PUBLISH` (through a
///   reconnecting connection manager, bounded by the command timeout; sent
///   once more on a new connection if the connection turns out dead, as
///   after a Redis restart: a message delivered twice only evicts twice);
/// - [`subscribe`](InvalidationChannel::subscribe) subscribes once (an
///   error if that fails), then hands the connection to a background task
///   that forwards every decodable message as [`ChannelEvent::Message`]
///   (malformed ones are logged and skipped), pings the server every
///   [`ping_interval`](RedisConfig::ping_interval), and as soon as the
///   connection drops or a ping goes unanswered within the command timeout
///   sends [`ChannelEvent::Disconnected`] (nothing is received from then
///   on), reconnects with exponential backoff (50 ms to 2 s), and sends
///   [`ChannelEvent::Reset`] once subscribed anew (the subscription is live
///   again; messages published in between were missed). A subscriber (such
///   as `CachedStore`) therefore knows at every moment whether it is
///   subscribed. The task ends when the receiver is dropped. A subscriber
///   that falls more than 1024 events behind gets a `Reset` in place of the
///   messages that could not be queued (`Disconnected` and `Reset` are
///   never dropped).
///
/// With Redis Cluster, give any node's URL: classic pub/sub messages are
/// broadcast to every node of the cluster. The channel stays on that one
/// node: while it is down, subscribers see `Disconnected` and the channel
/// keeps retrying it (a cache then relies on its `max_staleness`), so
/// prefer a stable address.
///
/// ```no_run
/// # async fn demo() -> sessionkit_core::Result<()> {
/// use sessionkit_core::{ChannelEvent, InvalidationChannel};
/// use sessionkit_redis::{RedisConfig, RedisInvalidationChannel};
///
/// let channel = RedisInvalidationChannel::connect(
///     "redis://127.0.0.1:6379",
///     RedisConfig::new().prefix("myapp"),
/// )
/// .await?;
/// let mut events = channel.subscribe().await?;
/// while let Some(event) = events.recv().await {
///     match event {
///         ChannelEvent::Message(msg) => println!("evict {:?}", msg.target),
///         ChannelEvent::Disconnected => println!("unsubscribed: evict everything"),
///         ChannelEvent::Reset => println!("subscribed again: evict everything"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisInvalidationChannel {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisInvalidationChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisInvalidationChannel")
            .field("channel", &self.channel)
            .finish()
    }
}

impl RedisInvalidationChannel {
    /// Connects the publishing side to `url` (`redis://host:port`). Fails
    /// with [`Error::Config`] if a setting of `config` is out of range (see
    /// [`RedisConfig`]), before connecting.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self> {
        let keys = config.validate()?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("invalid redis url: {e}")))?;
        let bound = config.connect_timeout + config.command_timeout;
        let publisher = bounded(bound, async {
            ConnectionManager::new_with_config(client.clone(), manager_config(&config))
                .await
                .map_err(|e| map_err(e, bound))
        })
        .await?;
        Ok(RedisInvalidationChannel {
            client,
            publisher,
            channel: keys.channel(),
            config,
        })
    }

    /// The pub/sub channel name.
    pub fn channel_name(&self) -> &str {
        &self.channel
    }
}

async fn open_subscription(
    client: &redis::Client,
    channel: &str,
    config: &RedisConfig,
) -> Result<PubSub> {
    let bound = config.connect_timeout + config.command_timeout;
    bounded(bound, async {
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| map_err(e, bound))?;
        pubsub
            .subscribe(channel)
            .await
            .map_err(|e| map_err(e, bound))?;
        Ok(pubsub)
    })
    .await
}

/// Delivers one event; `false` when the receiver is gone. When the queue is
/// full, a message is lost, so a `Reset` takes its place (waiting for
/// room); a `Disconnected` or `Reset` is never lost: it waits for room
/// itself.
async fn deliver(tx: &mpsc::Sender<ChannelEvent>, event: ChannelEvent) -> bool {
    match tx.try_send(event) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(ChannelEvent::Message(_))) => {
            tracing::warn!("invalidation subscriber fell behind; sending a reset");
            tx.send(ChannelEvent::Reset).await.is_ok()
        }
        Err(mpsc::error::TrySendError::Full(event)) => tx.send(event).await.is_ok(),
    }
}

/// Why a subscription ended.
enum End {
    ReceiverGone,
    ConnectionLost,
}

async fn pump(pubsub: PubSub, tx: &mpsc::Sender<ChannelEvent>, config: &RedisConfig) -> End {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return End::ConnectionLost };
                match InvalidationMessage::decode(msg.get_payload_bytes()) {
                    Ok(m) => {
                        if !deliver(tx, ChannelEvent::Message(m)).await {
                            return End::ReceiverGone;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "skipping a malformed invalidation message");
                    }
                }
            }
            _ = ping.tick() => {
                let answered =
                    tokio::time::timeout(config.command_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    tracing::warn!("invalidation channel: ping unanswered, reconnecting");
                    return End::ConnectionLost;
                }
            }
            _ = tx.closed() => return End::ReceiverGone,
        }
    }
}

/// Opens a new subscription, retrying with exponential backoff; `None` when
/// the receiver went away meanwhile.
async fn reconnect(
    client: &redis::Client,
    channel: &str,
    config: &RedisConfig,
    tx: &mpsc::Sender<ChannelEvent>,
) -> Option<PubSub> {
    let mut delay = BACKOFF_MIN;
    loop {
        match open_subscription(client, channel, config).await {
            Ok(p) => return Some(p),
            Err(err) => {
                tracing::debug!(error = %err, ?delay, "invalidation channel: reconnect failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = tx.closed() => return None,
                }
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn run(
    client: redis::Client,
    channel: String,
    config: RedisConfig,
    first: PubSub,
    tx: mpsc::Sender<ChannelEvent>,
) {
    let mut pubsub = first;
    loop {
        if !matches!(pump(pubsub, &tx, &config).await, End::ConnectionLost) {
            return;
        }
        // The subscription is gone: nothing is received from now on…
        if !deliver(&tx, ChannelEvent::Disconnected).await {
            return;
        }
        let Some(p) = reconnect(&client, &channel, &config, &tx).await else {
            return;
        };
        tracing::info!("invalidation channel: resubscribed");
        // …until now, and whatever was published while we were away is
        // lost: the subscription is live again.
        if !deliver(&tx, ChannelEvent::Reset).await {
            return;
        }
        pubsub = p;
    }
}

#[async_trait]
impl InvalidationChannel for RedisInvalidationChannel {
    async fn publish(&self, message: &InvalidationMessage) -> Result<()> {
        let timeout = self.config.command_timeout;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(message.encode());
        let publish = || async {
            let mut conn = self.publisher.clone();
            let _receivers: i64 = cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| map_err(e, timeout))?;
            Ok(())
        };
        bounded(timeout, async {
            // A dead connection (the first command after a Redis restart)
            // is retried once on the new one: a message delivered twice
            // only evicts twice.
            match publish().await {
                Err(e) if connection_lost(&e) => publish().await,
                r => r,
            }
        })
        .await
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<ChannelEvent>> {
        let first = open_subscription(&self.client, &self.channel, &self.config).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(
            self.client.clone(),
            self.channel.clone(),
            self.config.clone(),
            first,
            tx,
        ));
        Ok(rx)
    }
}
