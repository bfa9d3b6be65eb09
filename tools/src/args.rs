//! Command-line arguments. Flags are defined once here; their doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::runfile::RunFormat;

/// vellum: an embedded search-index database for neural retrieval.
///
/// A database is a directory of collections; each document has an id, text, JSON metadata and
/// vector fields (dense, multi-vector or tensor). Exit status: 0 on success, 1 on any error
/// (printed as one line on stderr), 2 on bad usage.
#[derive(Debug, Parser)]
#[command(name = "vellum", version, about, long_about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a database (if missing) and a collection in it.
    Create(CreateArgs),
    /// Add documents from JSONL with precomputed vectors from .npy / safetensors files.
    Ingest(IngestArgs),
    /// Exact top-k search with query vectors; writes a run file to stdout.
    Search(SearchArgs),
    /// Show collections, schemas, document counts, segments and sizes.
    Info(InfoArgs),
    /// Check every checksum and structure; exits non-zero on any problem.
    Verify(DbArg),
    /// Delete documents by id (one id per line in a file).
    Delete(DeleteArgs),
    /// Merge a collection's segments into one and drop deleted rows.
    Compact(CollectionArgs),
    /// Print one stored document (id, text, metadata, vector shapes) as JSON.
    Get(GetArgs),
}

/// Just the database path.
#[derive(Debug, clap::Args)]
pub struct DbArg {
    /// Database directory.
    pub db: PathBuf,
}

/// Database + collection.
#[derive(Debug, clap::Args)]
pub struct CollectionArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
}

/// `vellum create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Database directory (created if missing).
    pub db: PathBuf,
    /// Collection name (1-64 characters from A-Z a-z 0-9 _ - .).
    #[arg(long, short = 'c')]
    pub collection: String,
    /// A vector field: NAME:dense:DIM[:DTYPE[:METRIC]], NAME:multi:DIM[:DTYPE[:METRIC]] or
    /// NAME:tensor:SHAPE[:DTYPE], e.g. emb:dense:384:f32:cosine, tok:multi:128:f16:ip,
    /// img:tensor:50x768:f16. DTYPE: f32, f16, bf16. METRIC: ip, cosine, l2. Repeatable.
    #[arg(long = "field", short = 'f')]
    pub fields: Vec<String>,
}

/// `vellum ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Documents, JSON lines: {"id": ..., "text": ..., "metadata": {...}} ("docid"/"_id" and
    /// "title" are accepted too). Row i of every vector file belongs to the i-th document.
    #[arg(long)]
    pub docs: PathBuf,
    /// FIELD=FILE.npy or FIELD=FILE.safetensors[:TENSOR] (tensor name defaults to FIELD).
    /// dense: [N, dim]; multi: [T, dim] token matrix (with --lengths); tensor: [N, *shape]. Repeatable.
    #[arg(long = "vectors", short = 'v')]
    pub vectors: Vec<String>,
    /// FIELD=FILE: per-document token counts (1-D integer array of N) for a multi field. Repeatable.
    #[arg(long = "lengths")]
    pub lengths: Vec<String>,
    /// Replace documents whose id already exists instead of failing.
    #[arg(long)]
    pub upsert: bool,
}

/// `vellum search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// The vector field to search.
    #[arg(long, short = 'f')]
    pub field: String,
    /// Query vectors: .npy or .safetensors[:TENSOR]. Dense: [Q, dim]; multi: [T, dim] token
    /// matrix with --query-lengths.
    #[arg(long)]
    pub query_vectors: String,
    /// Multi fields: per-query token counts (1-D integer array of Q).
    #[arg(long)]
    pub query_lengths: Option<String>,
    /// Query ids, one per line, aligned with the query rows (default: 0, 1, 2, ...).
    #[arg(long)]
    pub query_ids: Option<PathBuf>,
    /// Hits per query.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    /// Output format: trec (qid Q0 docid rank score tag), tsv (qid<TAB>docid<TAB>score, as
    /// Tevatron) or json (one object per query per line).
    #[arg(long, value_enum, default_value_t = RunFormat::Trec)]
    pub format: RunFormat,
    /// Run tag (last column of trec output).
    #[arg(long, default_value = "vellum")]
    pub tag: String,
    /// Dense search routine: auto (streaming for one query, screened for batches), streaming,
    /// blocked (f32 matrix products) or screened (bf16 screen + exact rescoring).
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    pub strategy: StrategyArg,
    /// Queries per batch (bounds memory for large query sets).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
}

/// `--strategy` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Pick by batch size.
    Auto,
    /// One SIMD call per vector.
    Streaming,
    /// Blocked f32 matrix products.
    Blocked,
    /// bf16 screening with exact rescoring (AVX-512 BF16; else blocked).
    Screened,
}

/// `vellum info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vellum delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// File with one id per line.
    #[arg(long)]
    pub ids: PathBuf,
}

/// `vellum get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Document id.
    #[arg(long)]
    pub id: String,
    /// Also print vector values.
    #[arg(long)]
    pub vectors: bool,
}
