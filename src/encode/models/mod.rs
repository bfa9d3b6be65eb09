//! Model files: one per architecture family, each a serde `Config` with Hugging Face key names and
//! the checks that turn it into what a backend runs. Today: the BERT family ([`bert`]); ColBERT and
//! CLIP arrive beside it.

pub mod bert;
