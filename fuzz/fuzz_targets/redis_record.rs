//! The value the Redis store keeps for a session (`GET` of a session key)
//! and the subject tag its Lua scripts return: arbitrary bytes never panic,
//! are either a `Decode` error or a record, and a decoded record re-encodes
//! to the exact bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_core::{Error, SessionId};
use sessionkit_redis::__fuzz::{decode_record, encode_record, parse_subject_tag};

fuzz_target!(|data: &[u8]| {
    let id = SessionId::from_bytes([3; 16]);
    match decode_record(id, data) {
        Ok(record) => {
            assert_eq!(record.id, id);
            let again = encode_record(&record, record.version).expect("a decoded record encodes");
            assert_eq!(again, data, "decode/encode is not canonical");
        }
        Err(e) => assert!(matches!(e, Error::Decode(_)), "{e:?}"),
    }
    match parse_subject_tag(data) {
        Ok(subject) => assert!(subject.is_none_or(|s| s.len() <= 256)),
        Err(e) => assert!(matches!(e, Error::Decode(_)), "{e:?}"),
    }
});
