//! `InvalidationMessage::decode` on arbitrary bytes (what a pub/sub channel
//! may deliver): never panics, and an accepted message re-encodes to the
//! exact bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_core::{Error, InvalidationMessage};

fuzz_target!(|data: &[u8]| {
    match InvalidationMessage::decode(data) {
        Ok(msg) => assert_eq!(msg.encode(), data, "decode/encode is not canonical"),
        Err(e) => assert!(matches!(e, Error::Decode(_)), "{e:?}"),
    }
});
