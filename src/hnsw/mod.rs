//! HNSW graphs for dense fields: built in parallel by vellum's own builder, stored as a section
//! of the segment file (`format-spec/hnsw.md`), memory-mapped and searched in place, so opening a database never
//! deserializes or rebuilds a graph.
//!
//! * [`HnswParams`] — index parameters (`m`, `ef_construction`, the segment size threshold, `ef`),
//!   recorded in the manifest (defined in [`crate::meta::index`]).
//! * [`build`] — builds a graph over a segment's vectors (8-bit codes or bf16, duplicates
//!   attached apart) and assembles its layers.
//! * [`insert`] — the construction algorithm itself (parallel insertion, the paper's neighbour
//!   heuristic, one contiguous array of lists).
//! * [`crate::format::graph`] — the byte layout (the codec beside its spec chapter): encoding,
//!   O(1) validation at open, bounds-checked access, and the full structural check of `verify`.
//! * [`search`] — best-first search over a mapped graph with a caller's similarities; deleted rows
//!   are traversed but never returned, so deletes do not cut recall.

pub mod build;
pub mod insert;
pub mod search;

pub use crate::format::graph::{encode_graph, Graph, GraphView, Nav, NavView};
pub use crate::meta::index::HnswParams;
pub use build::{build_graph, graph_sections};
pub use search::{search_graph, search_graph_prefetching};
