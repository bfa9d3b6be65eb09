//! Exchange with other tools: export a field's vectors as `.npy` + ids, import Tevatron's encoded
//! pickles.

pub mod export;
pub mod tevatron;

pub use export::{export_dense, ExportStats};
pub use tevatron::{import_tevatron, read_tevatron_pickle, TevatronShard};
