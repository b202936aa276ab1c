//! Encrypted payloads at rest, as the manager reads them from a store:
//! arbitrary stored bytes, and valid sealed payloads with arbitrary bytes
//! XORed in or cut off. A load is always `Ok(None)` (counted as
//! undecodable) or the original data — never an error, never a panic, and
//! never data that was changed.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sessionkit_core::testing::VecStore;
use sessionkit_core::{PayloadKeys, Record, SessionId, SessionManager, SessionStore, Timestamp};

struct World {
    runtime: tokio::runtime::Runtime,
    store: VecStore,
    manager: SessionManager<String>,
    valid: Record,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let store = VecStore::default();
        let keys = PayloadKeys::new(3, [5; 32])
            .with_previous(1, [6; 32])
            .expect("distinct ids");
        let manager = SessionManager::stateful(store.clone())
            .encrypt_payloads(keys)
            .build()
            .expect("manager");
        let valid = runtime.block_on(async {
            let s = manager.create(None, "secret data".to_owned()).await.expect("create");
            store.load(&s.id()).await.expect("load").expect("live")
        });
        World { runtime, store, manager, valid }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let payload: Vec<u8> = match mode % 3 {
        // Arbitrary stored bytes.
        0 => rest.to_vec(),
        // A valid sealed payload with bytes XORed in.
        1 => {
            let mut p = w.valid.payload.to_vec();
            for (i, b) in rest.iter().enumerate() {
                let at = i % p.len();
                p[at] ^= b;
            }
            p
        }
        // A valid sealed payload cut short.
        _ => {
            let keep = rest.first().map_or(0, |n| usize::from(*n) % w.valid.payload.len());
            w.valid.payload[..keep].to_vec()
        }
    };
    let now = Timestamp::now();
    let record = Record::new(
        SessionId::generate(),
        None,
        Bytes::from(payload.clone()),
        now,
        now + std::time::Duration::from_secs(60),
    );
    w.runtime.block_on(async {
        w.store.create(&record).await.expect("create");
        match w.manager.load(record.id.as_str()).await {
            Ok(None) => {}
            // Only a payload sealed for this very record can open, and a
            // fresh ID makes that impossible: anything that loads is a
            // plain (unencrypted) envelope the fuzzer wrote.
            Ok(Some(s)) => assert!(payload.get(1) == Some(&1), "a sealed payload opened under another id: {:?}", s.data()),
            Err(e) => panic!("a stored payload made load fail: {e:?}"),
        }
        w.store.delete(&record.id).await.expect("delete");
    });
});
