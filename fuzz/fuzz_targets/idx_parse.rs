//! Fuzzes `mnist_mlp::data::idx::parse` on images and labels, raw and gzipped.
//!
//! The parser's module is compiled in directly (`#[path]`): it stands alone (std, flate2,
//! sha2, thiserror), and building the whole crate would build Burn with libFuzzer's
//! instrumentation, for no gain in what is fuzzed.
//!
//! The first input byte chooses the kind (bit 0) and whether the rest is gzipped before
//! parsing (bit 1), so that the fuzzer also reaches the IDX checks behind valid gzip; raw
//! inputs reach the gzip decoder with corrupt streams too, since gzip is detected by content.
//! Any result is fine as long as it is a value that keeps the parser's promises, or an error
//! of one line naming the file; a panic, a hang or an allocation past libFuzzer's limit
//! (2 GiB by default) is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

#[path = "../../src/data/idx.rs"]
#[allow(dead_code)]
mod idx;

use idx::{IdxKind, PIXELS};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = if selector & 1 == 0 {
        IdxKind::Images
    } else {
        IdxKind::Labels
    };
    let input = if selector & 2 == 0 {
        bytes.to_vec()
    } else {
        idx::encode::gzip(bytes)
    };
    match idx::parse(input.as_slice(), Path::new("fuzz"), kind, Some(input.len() as u64)) {
        Ok(parsed) => {
            let item = match kind {
                IdxKind::Images => PIXELS,
                IdxKind::Labels => 1,
            };
            assert_eq!(parsed.values.len(), parsed.count * item);
            if kind == IdxKind::Labels {
                assert!(parsed.values.iter().all(|&label| label < 10));
            }
            assert_eq!(parsed.sha256.len(), 64);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz: "), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
});
