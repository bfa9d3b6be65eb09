//! The operation-sequence model check of `fuzz/ops_model.rs` on fixed pseudo-random sequences, so
//! every test run covers it (the `operations` fuzz target explores further in CI).

#[path = "../../fuzz/ops_model.rs"]
mod ops_model;

use crate::common::Rng;

#[test]
fn random_operation_sequences_agree_with_the_model() {
    let mut rng = Rng(0x5eed);
    for _ in 0..150 {
        let len = 2 + rng.below(200) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        ops_model::run(&data);
    }
}

#[test]
fn a_crash_in_every_commit_of_a_long_sequence_agrees_with_the_model() {
    // add, add, upsert, delete, then a crash at boundary k, repeated.
    let mut data = vec![1u8];
    for k in 0..16u8 {
        data.extend_from_slice(&[
            0,
            k,
            1,
            k + 1,
            3,
            k,
            4,
            k + 2,
            8,
            k | if k % 2 == 1 { 0x80 } else { 0 },
        ]);
    }
    ops_model::run(&data);
}
