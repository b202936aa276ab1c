//! The stored payload path: `Envelope::read`, then `PayloadCodec::decode`
//! into a realistic application struct and into `Bag`, for every codec.
//! Never panics; whatever decodes re-encodes and decodes to the same value.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use sessionkit_core::{Bag, Envelope, Error, PayloadCodec};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Theme {
    Light,
    Dark,
    Custom { accent: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CartLine {
    sku: String,
    qty: u16,
    price_cents: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct AppSession {
    user_id: u64,
    name: String,
    roles: Vec<String>,
    csrf: [u8; 16],
    cart: Vec<CartLine>,
    prefs: BTreeMap<String, String>,
    theme: Option<Theme>,
    mfa: bool,
    last_seen: i64,
}

fn check<T>(codec: PayloadCodec, body: &[u8])
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    match codec.decode::<T>(body) {
        Ok(value) => {
            let again = codec.encode(&value).expect("a decoded value must encode");
            let back: T = codec.decode(&again).expect("re-encoded bytes must decode");
            assert_eq!(back, value);
        }
        Err(e) => assert!(matches!(e, Error::Decode(_)), "{e:?}"),
    }
}

const CODECS: [PayloadCodec; 3] = [
    PayloadCodec::Bincode,
    PayloadCodec::Postcard,
    PayloadCodec::Json,
];

fuzz_target!(|data: &[u8]| {
    // As stored: envelope first.
    if let Ok(env) = Envelope::read(data) {
        assert_eq!(env.body.len() + Envelope::HEADER_LEN, data.len());
        if let Ok(codec) = env.codec() {
            check::<AppSession>(codec, env.body);
            check::<Bag>(codec, env.body);
            let rewritten = Envelope::write(codec, env.schema, env.body);
            assert_eq!(rewritten, data);
        }
    }
    // Raw bodies: the first byte picks the codec so every decoder sees
    // arbitrary input, not only what passes the envelope check.
    if let Some((&pick, body)) = data.split_first() {
        let codec = CODECS[usize::from(pick) % CODECS.len()];
        check::<AppSession>(codec, body);
        check::<Bag>(codec, body);
    }
});
