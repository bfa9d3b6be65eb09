//! HNSW graphs for dense fields: built with `hnsw_rs`, stored as a section of the segment file
//! (`format-spec/hnsw.md`), memory-mapped and searched in place, so opening a database never
//! deserializes or rebuilds a graph.
//!
//! * [`params`] — index parameters (`m`, `ef_construction`, the segment size threshold, `ef`).
//! * [`build`] — builds a graph over a segment's vectors (parallel, `hnsw_rs`) and extracts its
//!   neighbour lists.
//! * [`layout`] — the byte layout: encoding, O(1) validation at open, bounds-checked access, and
//!   the full structural check of `verify`.
//! * [`search`] — best-first search over a mapped graph with simsimd similarities; deleted rows
//!   are traversed but never returned, so deletes do not cut recall.

pub mod build;
pub mod layout;
pub mod params;
pub mod search;

pub use build::{build_graph, graph_sections};
pub use layout::{encode_graph, Graph, GraphView, Nav, NavView};
pub use params::HnswParams;
pub use search::{search_graph, search_graph_prefetching};
