//! Token states → one vector per text: `cls` (the first token, DPR / Tevatron), `mean` over the
//! text's tokens (sentence-transformers' default) or `last` (the EOS token, Tevatron's DSE and
//! decoder encoders), Matryoshka truncation to the first `dims` values, and optional L2
//! normalisation (sentence-transformers' `Normalize`: divide by `max(‖v‖, 1e-12)`).

use crate::meta::encoder::Pooling;

/// Pools the states of one text: `states` holds its `len` token rows of `hidden` values; writes
/// `out.len()` (≤ `hidden`) values.
pub fn pool(states: &[f32], len: usize, hidden: usize, pooling: Pooling, out: &mut [f32]) {
    let dims = out.len();
    let row = |t: usize| &states[t * hidden..(t + 1) * hidden];
    match pooling {
        // A dense encoder's record never pools `Tokens` (its loader refuses it).
        Pooling::Cls | Pooling::Tokens => out.copy_from_slice(&row(0)[..dims]),
        Pooling::Last => out.copy_from_slice(&row(len - 1)[..dims]),
        Pooling::Mean => {
            let mut acc = vec![0f32; hidden];
            for t in 0..len {
                for (a, v) in acc.iter_mut().zip(row(t)) {
                    *a += v;
                }
            }
            let inv = 1.0 / len as f32;
            for (d, a) in out.iter_mut().zip(&acc) {
                *d = a * inv;
            }
        }
    }
}

/// Divides `v` by its L2 norm (at least 1e-12), as sentence-transformers does.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_and_normalisation() {
        // Two tokens of hidden size 3.
        let states = [1.0, 2.0, 3.0, 3.0, 4.0, 5.0];
        let mut out = [0f32; 2];
        pool(&states, 2, 3, Pooling::Cls, &mut out);
        assert_eq!(out, [1.0, 2.0]);
        pool(&states, 2, 3, Pooling::Last, &mut out);
        assert_eq!(out, [3.0, 4.0]);
        pool(&states, 2, 3, Pooling::Mean, &mut out);
        assert_eq!(out, [2.0, 3.0]);
        let mut v = [3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }
}
