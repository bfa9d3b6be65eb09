//! Random add / upsert / delete / commit / compact / rollback / crash sequences on a database in a
//! `MemDirectory`, checked against a `BTreeMap` model after every step (see `fuzz/ops_model.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../ops_model.rs"]
mod ops_model;

fuzz_target!(|data: &[u8]| {
    // Long sequences add nothing the fuzzer cannot reach by composing short ones.
    ops_model::run(&data[..data.len().min(512)]);
});
