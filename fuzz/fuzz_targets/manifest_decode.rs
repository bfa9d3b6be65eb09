//! Manifest decoding of hostile bytes; a decoded manifest must re-encode to the same value.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vellum::format::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(Path::new("MANIFEST"), data) {
        let again = Manifest::decode(Path::new("MANIFEST"), &m.encode())
            .expect("re-encoded manifest decodes");
        assert_eq!(m, again);
    }
});
