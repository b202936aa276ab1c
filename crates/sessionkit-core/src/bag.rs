//! A key-value session type for applications that prefer
//! `get::<U>("key")` to a typed struct.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A map from string keys to values of any serde type.
///
/// Each value is kept as JSON text, so a `Bag` encodes with every
/// [`PayloadCodec`](crate::PayloadCodec) (including the non-self-describing
/// binary ones) and a value can be read back as any compatible type.
///
/// ```
/// use sessionkit_core::Bag;
///
/// let mut bag = Bag::new();
/// bag.insert("user_id", &42u64).unwrap();
/// bag.insert("cart", &vec!["apple", "pear"]).unwrap();
/// assert_eq!(bag.get::<u64>("user_id").unwrap(), Some(42));
/// assert_eq!(bag.get::<Vec<String>>("cart").unwrap().unwrap().len(), 2);
/// assert_eq!(bag.get::<u64>("missing").unwrap(), None);
/// // A value of the wrong type is an error, not a panic.
/// assert!(bag.get::<u64>("cart").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Bag {
    entries: BTreeMap<String, String>,
}

impl Bag {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `key` as a `U`: `Ok(None)` when absent, [`Error::Decode`] when
    /// the stored value is not a `U`.
    pub fn get<U: DeserializeOwned>(&self, key: &str) -> Result<Option<U>> {
        self.entries
            .get(key)
            .map(|json| serde_json::from_str(json).map_err(Error::decode))
            .transpose()
    }

    /// Stores `value` under `key`, returning whether a value was replaced.
    pub fn insert<U: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &U,
    ) -> Result<bool> {
        let json = serde_json::to_string(value).map_err(Error::encode)?;
        Ok(self.entries.insert(key.into(), json).is_some())
    }

    /// Removes `key`, returning whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bag is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
