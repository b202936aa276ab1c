//! `SessionId::parse` on arbitrary text: never panics, accepts only the
//! canonical 22-character form, and what it accepts round-trips exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_core::{ID_LEN, SessionId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SessionId::parse(text) {
        Ok(id) => {
            assert_eq!(text.len(), ID_LEN);
            assert_eq!(id.as_str(), text, "parse must keep the canonical text");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "accepted a character outside the URL-safe alphabet"
            );
            assert_eq!(SessionId::from_bytes(id.to_bytes()), id);
            assert_eq!(SessionId::parse(id.as_str()).ok(), Some(id));
            let shown = id.redacted();
            assert!(!shown.contains(text), "redacted() leaked the whole id");
        }
        Err(e) => assert!(matches!(e, sessionkit_core::Error::InvalidId), "{e:?}"),
    }
});
