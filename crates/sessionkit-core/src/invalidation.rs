//! Cross-instance cache invalidation.
//!
//! A cache in front of a shared store (`CachedStore` in `sessionkit-memory`)
//! publishes an [`Invalidation`] after every write it makes, and evicts what
//! other instances publish. The transport is an [`InvalidationChannel`]
//! (Redis pub/sub in `sessionkit-redis`); this module only defines the
//! contract and the wire format, so that every channel speaks the same one.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::{ID_LEN, SessionId};
use crate::record::validate_subject;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One session changed or was deleted.
    Id(SessionId),
    /// Every session of a subject was deleted.
    Subject(String),
}

/// An [`Invalidation`] and the instance that published it (so that the
/// publisher can ignore its own messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationMessage {
    /// A random identifier of the publishing instance.
    pub origin: u64,
    /// What changed.
    pub target: Invalidation,
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// Another instance changed something.
    Message(InvalidationMessage),
    /// The subscription is gone (the connection dropped): nothing is
    /// received until a [`ChannelEvent::Reset`] follows. A cache evicts
    /// everything and reports itself unsubscribed until then.
    Disconnected,
    /// Messages may have been lost (the subscription was re-established,
    /// or the subscriber fell behind): evict everything. The subscription
    /// is live when this arrives.
    Reset,
}

const TAG_ID: u8 = b'i';
const TAG_SUBJECT: u8 = b's';

impl InvalidationMessage {
    /// The wire form: 8 bytes of origin (big-endian), a tag byte, then the
    /// session ID text or the subject.
    ///
    /// ```
    /// use sessionkit_core::{Invalidation, InvalidationMessage, SessionId};
    /// let msg = InvalidationMessage { origin: 7, target: Invalidation::Id(SessionId::generate()) };
    /// assert_eq!(InvalidationMessage::decode(&msg.encode()).unwrap(), msg);
    /// assert!(InvalidationMessage::decode(b"garbage").is_err());
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + ID_LEN);
        out.extend_from_slice(&self.origin.to_be_bytes());
        match &self.target {
            Invalidation::Id(id) => {
                out.push(TAG_ID);
                out.extend_from_slice(id.as_str().as_bytes());
            }
            Invalidation::Subject(s) => {
                out.push(TAG_SUBJECT);
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    /// Parses the wire form strictly; anything else is [`Error::Decode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::decode("malformed invalidation message");
        if bytes.len() < 9 {
            return Err(bad());
        }
        let mut origin = [0u8; 8];
        origin.copy_from_slice(&bytes[..8]);
        let body = std::str::from_utf8(&bytes[9..]).map_err(|_| bad())?;
        let target = match bytes[8] {
            TAG_ID => Invalidation::Id(SessionId::parse(body).map_err(|_| bad())?),
            TAG_SUBJECT => {
                validate_subject(body).map_err(|_| bad())?;
                Invalidation::Subject(body.to_owned())
            }
            _ => return Err(bad()),
        };
        Ok(InvalidationMessage {
            origin: u64::from_be_bytes(origin),
            target,
        })
    }
}

/// A broadcast channel between application instances.
///
/// Delivery is best effort: a channel must send [`ChannelEvent::Reset`]
/// whenever it may have missed messages (for example after reconnecting), so
/// that subscribers clear what could now be stale.
#[async_trait]
pub trait InvalidationChannel: Send + Sync + 'static {
    /// Publishes one message to every subscriber (including, possibly, the
    /// publisher itself).
    async fn publish(&self, message: &InvalidationMessage) -> Result<()>;

    /// Starts a subscription. The channel keeps it alive (reconnecting as
    /// needed) until the receiver is dropped.
    async fn subscribe(&self) -> Result<tokio::sync::mpsc::Receiver<ChannelEvent>>;
}
