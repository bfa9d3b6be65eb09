//! Command-line arguments. Flags are defined once here; their doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Add documents: JSONL with precomputed vectors from .npy / safetensors files, or text
    /// (JSONL / TSV) encoded by the fields' passage encoders.
    Ingest(IngestArgs),
    /// Top-k search (exact, HNSW or MaxSim) with query vectors or query texts encoded by the
    /// field's query encoder; over one database or shards; writes a run file to stdout.
    Search(Box<SearchArgs>),
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
    /// Evaluate a run against qrels (trec_eval measures) and/or DPR answers (top-k accuracy).
    Eval(EvalArgs),
    /// Merge the run files of disjoint shards into one run (the reducer of sharded search).
    MergeRuns(MergeRunsArgs),
    /// Convert a run file between TREC and Tevatron TSV (input layout detected).
    ConvertRun(ConvertRunArgs),
    /// Write a dense or tensor field's values as .npy and the document ids as a text file.
    Export(ExportArgs),
    /// Import Tevatron's encoded corpus pickles ((reps, lookup_indices)) into a dense field.
    ImportTevatron(ImportTevatronArgs),
    /// Declare (or drop) an HNSW index on a dense field and build its graph (rewrites the
    /// collection as one segment, crash-safely, like compact).
    Index(IndexArgs),
    /// Copy the last commit of a database (while writers may keep committing) into a new
    /// directory, then verify the copy. A plain file copy is safe only while no writer runs.
    Backup(BackupArgs),
    /// Fine-tune a dense field's encoders on training queries (Tevatron's contrastive loss, hard
    /// negatives mined from the collection) and write Hugging Face checkpoints.
    Train(Box<TrainArgs>),
    /// Re-encode a field with a new encoder as a new encoder version: new segments are written
    /// beside the current ones (readers keep searching the current version), then one commit
    /// switches the field. Resumable after a crash or Ctrl-C; the replaced version is kept for
    /// --rollback until --drop-previous.
    Reencode(ReencodeArgs),
}

/// `vellum reencode`.
#[derive(Debug, clap::Args)]
pub struct ReencodeArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// The field to re-encode (dense or multi-vector, with encoders bound). Not needed with
    /// --abort or --drop-previous.
    #[arg(long, short = 'f', required_unless_present_any = ["abort", "drop_previous"])]
    pub field: Option<String>,
    /// The new passage encoder: a model folder or a cached Hugging Face model id (of the field's
    /// dimension, or any with --new-field). Its own configuration (pooling, normalisation, length) applies, as at create.
    /// Without it, an interrupted re-encode continues with the encoder it started with.
    #[arg(long, conflicts_with_all = ["rollback", "abort", "drop_previous"])]
    pub encoder: Option<String>,
    /// A separate new query encoder (untied); queries use --encoder otherwise.
    #[arg(long, requires = "encoder")]
    pub query_encoder: Option<String>,
    /// Options of the new passage encoder (as create's --encoder-options, without FIELD=).
    #[arg(long, requires = "encoder")]
    pub encoder_options: Option<String>,
    /// Options of the new query encoder.
    #[arg(long, requires = "encoder")]
    pub query_encoder_options: Option<String>,
    /// Copy the new models into the database (DB/.models/).
    #[arg(long, requires = "encoder")]
    pub embed_model: bool,
    /// Encode into a new field instead of --field (schema evolution, e.g. a model of another
    /// dimension): NAME takes --field's kind, dtype and metric and the encoder's dimension;
    /// NAME:KIND:DIM[:DTYPE[:METRIC]] gives them. --field and the other fields are kept; the
    /// switch adds the field, --rollback removes it again. Continue an interrupted one with
    /// --field NAME.
    #[arg(long, requires = "encoder")]
    pub new_field: Option<String>,
    /// Device and batch size for encoding, e.g. device=cpu,batch_size=64.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Rows per new segment: the unit of resumption (an interruption loses at most one).
    #[arg(long, default_value_t = 10_000)]
    pub piece_rows: u64,
    /// Do not keep the replaced version for rollback (its files are removed at the switch).
    #[arg(long)]
    pub no_keep_previous: bool,
    /// Switch back to the version the last re-encode replaced (deletions since carry over).
    #[arg(long, conflicts_with_all = ["abort", "drop_previous"])]
    pub rollback: bool,
    /// Discard an unfinished re-encode (its new segments are removed).
    #[arg(long, conflicts_with = "drop_previous")]
    pub abort: bool,
    /// Drop the version kept for rollback, freeing its files.
    #[arg(long)]
    pub drop_previous: bool,
}

/// `vellum train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// The dense field whose encoders train.
    #[arg(long, short = 'f')]
    pub field: String,
    /// Tevatron train JSONL: query_id, query, positive_passages / negative_passages
    /// ({docid, title, text}) or positive_document_ids / negative_document_ids (ids in the
    /// collection).
    #[arg(long, conflicts_with_all = ["queries", "qrels"])]
    pub train: Option<PathBuf>,
    /// Training queries (TSV qid<TAB>text or JSONL), with --qrels naming their relevant
    /// documents in the collection.
    #[arg(long, requires = "qrels")]
    pub queries: Option<PathBuf>,
    /// Relevance judgements of --queries (TREC or BEIR TSV).
    #[arg(long, requires = "queries")]
    pub qrels: Option<PathBuf>,
    /// Output folder: checkpoint-N/ folders, then the trained model (tied) or query_model/ +
    /// passage_model/ (untied), and training_report.json.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Continue from the newest checkpoint in --output (same settings and data).
    #[arg(long, conflicts_with = "query_only")]
    pub resume: bool,
    /// Passes over the training queries.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Queries per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Passages per query: its positive, then group-size − 1 hard negatives.
    #[arg(long, default_value_t = 8)]
    pub group_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1, conflicts_with = "query_only")]
    pub accumulation: usize,
    /// Softmax temperature (default: 0.02 when the encoder normalises, else 1.0).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// Weight decay (not on biases and layer norms).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Fraction of the steps spent in linear warm-up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping (0: none).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed of the query order and of sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Query tokens during training (default: the field's query encoder's max_length).
    #[arg(long)]
    pub query_max_len: Option<usize>,
    /// Passage tokens during training (default: the passage encoder's max_length).
    #[arg(long, conflicts_with = "query_only")]
    pub passage_max_len: Option<usize>,
    /// Train separate query and passage models even when the field uses one model.
    #[arg(long, conflicts_with = "query_only")]
    pub untie: bool,
    /// Hard negatives mined per query from the collection (0: none mined; queries then need
    /// negatives in the training file, or --group-size 1).
    #[arg(long, default_value_t = 100)]
    pub mine_depth: usize,
    /// Top-ranked non-positive documents skipped when mining (likely unjudged positives).
    #[arg(long, default_value_t = 0)]
    pub mine_skip: usize,
    /// Sample from mined negatives even where the training file gives negatives.
    #[arg(long)]
    pub prefer_mined: bool,
    /// Write a checkpoint every N steps (default: every epoch).
    #[arg(long, conflicts_with = "query_only")]
    pub save_every: Option<usize>,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 2)]
    pub save_total_limit: usize,
    /// Held-out queries, evaluated by re-ranking their top --eval-depth documents.
    #[arg(long, requires = "eval_qrels")]
    pub eval_queries: Option<PathBuf>,
    /// Judgements of --eval-queries.
    #[arg(long, requires = "eval_queries")]
    pub eval_qrels: Option<PathBuf>,
    /// Documents re-ranked per held-out query.
    #[arg(long, default_value_t = 100)]
    pub eval_depth: usize,
    /// Evaluate every N steps (always before the first and after the last).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Where the towers train: cpu, or cuda:N (a build with the `cuda-train` feature:
    /// benches/gpu/build-train.sh; other builds refuse cuda:N with that advice).
    #[arg(long, default_value = "cpu")]
    pub device: vellum::search::Device,
    /// Arithmetic: f32, or bf16 mixed precision (products in bf16 — tensor cores on a GPU —
    /// with f32 weights, optimiser state, layer norms, softmax and loss).
    #[arg(long, default_value = "f32")]
    pub precision: vellum_train::Precision,
    /// Train only a (small) query encoder against the stored passage vectors (Cohen et al.
    /// 2024): align it to the current query encoder, then train contrastively; nothing is
    /// re-encoded. Held-out evaluation is full retrieval.
    #[arg(long)]
    pub query_only: bool,
    /// Query-only student: the current query model's first N layers.
    #[arg(long, requires = "query_only", conflicts_with = "student")]
    pub student_layers: Option<usize>,
    /// Query-only student: another BERT-family model folder with the field's dimensions.
    #[arg(long, requires = "query_only")]
    pub student: Option<PathBuf>,
    /// Query-only: alignment steps before contrastive training.
    #[arg(long, default_value_t = 200)]
    pub align_steps: usize,
    /// Query-only: alignment loss, cosine (1 − cos) or mse.
    #[arg(long, default_value = "cosine")]
    pub align_loss: String,
    /// Query-only: alignment learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub align_lr: f64,
    /// Query-only: more texts to align on besides the training queries, one per line (or
    /// `id<TAB>text` lines, as a queries TSV). Unjudged queries of the same kind work best; a
    /// few thousand training queries alone are too few for a small student.
    #[arg(long, requires = "query_only")]
    pub align_texts: Option<PathBuf>,
    /// Query-only: train the student's word embeddings too (by default they stay frozen, as in
    /// Cohen et al.).
    #[arg(long, requires = "query_only")]
    pub train_embeddings: bool,
    /// Query-only: bind the trained model as the field's query encoder (a new encoder version;
    /// stored vectors unchanged).
    #[arg(long, requires = "query_only")]
    pub bind: bool,
    /// Query-only with --bind: encoder options of the bound query encoder, e.g. dtype=int8
    /// (dynamic int8 quantisation, several times faster again; measure its quality with
    /// `vellum search` + `vellum eval`).
    #[arg(long, requires = "bind", default_value = "")]
    pub bind_options: String,
    /// After training, re-encode the field with the trained model(s) as a new encoder version
    /// (as `vellum reencode`, with the field's current encoder options), keeping the current
    /// version for `vellum reencode --rollback`.
    #[arg(long, conflicts_with = "query_only")]
    pub reencode: bool,
    /// Rounds of mine → train → re-encode (needs --reencode and --mine-depth): each round
    /// re-mines hard negatives with the previous round's re-encoded vectors and trains on from
    /// its model, into OUTPUT/round-K/.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// With --reencode: rows per new segment (the unit of resumption).
    #[arg(long, default_value_t = 10_000, requires = "reencode")]
    pub piece_rows: u64,
    /// With --bind or --reencode: copy the model into the database.
    #[arg(long)]
    pub embed_model: bool,
}

/// `vellum backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Destination: a new (or empty) directory.
    pub dest: PathBuf,
}

/// `vellum index`.
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Field to index: a dense field (HNSW) or a multi-vector field (`--plaid`).
    #[arg(long, short = 'f')]
    pub field: String,
    /// HNSW parameters, KEY=VALUE,...: m (16), ef_construction (200), min_rows (4096: smaller
    /// segments are searched exactly), ef (64: default search candidate list).
    #[arg(long, default_value = "")]
    pub hnsw: String,
    /// Build a PLAID index on a multi-vector field instead, KEY=VALUE,...: nbits (2: residual
    /// bits per dimension, 1, 2 or 4), centroids / k (2^floor(log2(16·sqrt(tokens)))),
    /// kmeans_iters (4), min_rows (256), recluster_percent (5), seed, store (tokens: keep the
    /// full-precision tokens too; codes: keep only the compressed codes, ~40 bytes per token at
    /// 2 bits, 128-d; reads decompress them, and dropping the index later writes the
    /// decompressed tokens back: the originals are gone). An empty value takes the defaults
    /// (`--plaid ""`).
    #[arg(long, conflicts_with = "hnsw")]
    pub plaid: Option<String>,
    /// Remove the index (and the graphs or PLAID sections) instead.
    #[arg(long, conflicts_with_all = ["hnsw", "plaid"])]
    pub drop: bool,
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
    /// Declare an HNSW index: FIELD=KEY=VALUE,... (e.g. emb=m=16,ef_construction=200; see
    /// `vellum index --help` for the keys) or just FIELD for the defaults. Repeatable.
    #[arg(long = "hnsw", value_name = "FIELD[=PARAMS]")]
    pub hnsw: Vec<String>,
    /// Bind a passage encoder to a dense field: FIELD=MODEL, MODEL a local folder in the Hugging
    /// Face layout (config.json, model.safetensors, tokenizer.json) or a model id found in the
    /// local Hugging Face cache (e.g. sentence-transformers/all-MiniLM-L6-v2). Documents given
    /// as text are encoded with it at ingest; queries too, unless --query-encoder is given.
    #[arg(long = "encoder", value_name = "FIELD=MODEL")]
    pub encoders: Vec<String>,
    /// A separate query encoder for a field (untied, as DPR; or a small query model with a
    /// large passage model): FIELD=MODEL.
    #[arg(long = "query-encoder", value_name = "FIELD=MODEL")]
    pub query_encoders: Vec<String>,
    /// Options of a field's passage encoder: FIELD=KEY=VALUE,... with keys pooling
    /// (cls|mean|last), normalize (true|false), max_length (tokens), prefix (text put before
    /// each input, e.g. "passage: "; must be the last key), dims (keep the first N dimensions,
    /// Matryoshka), dtype (f32|f16|bf16), device (cpu|cuda:N), batch_size. Unset keys follow the
    /// model folder (sentence-transformers' config files), else cls pooling, no normalization,
    /// the model's maximum length, f32.
    #[arg(long = "encoder-options", value_name = "FIELD=OPTIONS")]
    pub encoder_options: Vec<String>,
    /// Options of a field's query encoder (same keys). With a tied model they apply over the
    /// passage options, e.g. emb=prefix=query: for e5.
    #[arg(long = "query-encoder-options", value_name = "FIELD=OPTIONS")]
    pub query_encoder_options: Vec<String>,
    /// Copy the encoder models into the database (DB/.models/), so a copied database encodes
    /// queries and documents without the original model folders.
    #[arg(long)]
    pub embed_model: bool,
}

/// `vellum ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Documents, JSON lines: {"id": ..., "text": ..., "image": "path", "metadata": {...}}
    /// ("docid"/"_id" and "title" are accepted too, as in Tevatron's corpus files; "image" is
    /// relative to the file's folder), TSV (.tsv: id<TAB>text[<TAB>title]), or a folder of
    /// images (one document per image file; id = path without extension). Row i of every vector
    /// file belongs to the i-th document. Without --vectors, every field must have an encoder:
    /// the text (title + " " + text when a title is given) or the image is encoded with the
    /// field's passage encoder, committing as it goes; re-running the same command after a
    /// crash or Ctrl-C skips the ids already committed.
    #[arg(long)]
    pub docs: PathBuf,
    /// When encoding images: skip (and list) documents whose image is missing, unreadable or
    /// damaged instead of stopping.
    #[arg(long)]
    pub skip_bad_images: bool,
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
    /// Ingest only shard INDEX of COUNT: documents whose 0-based position p in the input has
    /// p mod COUNT = INDEX (e.g. --shard 0/4 ... 3/4 on four machines, one database each).
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<vellum::ingest::Shard>,
    /// When encoding: commit after this many documents (and every 60 s, and at the end).
    #[arg(long, default_value_t = 10_000)]
    pub commit_every: usize,
    /// When encoding: device and batch size of the passage encoders, e.g.
    /// device=cpu,batch_size=64 (the other options are fixed by the collection).
    #[arg(long, default_value = "")]
    pub encoder_options: String,
}

/// `vellum search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Database directory (or give shards with repeated --db).
    pub db: Option<PathBuf>,
    /// A database shard; repeat to search several databases (same collection schema) and merge
    /// their results.
    #[arg(long = "db", value_name = "DB")]
    pub dbs: Vec<PathBuf>,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// The vector field to search (stage 1 when re-ranking; not used with --candidates).
    #[arg(long, short = 'f')]
    pub field: Option<String>,
    /// Text queries: TSV (qid<TAB>text, by extension .tsv) or JSONL ({"id": ..., "text": ...}),
    /// encoded in batches by the field's query encoder.
    #[arg(long, conflicts_with_all = ["query_vectors", "query_lengths", "query_ids"])]
    pub queries: Option<PathBuf>,
    /// Query vectors: .npy or .safetensors[:TENSOR]. Dense: [Q, dim]; multi: [T, dim] token
    /// matrix with --query-lengths.
    #[arg(long)]
    pub query_vectors: Option<String>,
    /// With --queries: device and batch size of the query encoder, e.g. device=cpu,batch_size=64
    /// (the other encoder options are fixed by the collection).
    #[arg(long, default_value = "")]
    pub encoder_options: String,
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
    /// Where to search: cpu, or cuda:N to search exactly on NVIDIA GPU N (results equal the
    /// CPU's; HNSW graphs and PLAID sections are not used there) and to score a multi-vector
    /// re-ranking field's candidates there. The field is copied to the GPU once and every batch
    /// reuses the copy.
    #[arg(long, default_value = "cpu")]
    pub device: vellum::search::Device,
    /// Dense fields on a GPU: element type of the field's copy there: stored (the field's own),
    /// tf32, f16 or bf16 (tensor cores; results stay exact, a few more rows are rescored).
    #[arg(long, default_value = "stored")]
    pub gpu_precision: vellum::search::GpuPrecision,
    /// HNSW candidate list size (default: the index's ef). Larger is slower and more exact.
    #[arg(long)]
    pub ef: Option<usize>,
    /// Search exactly even where HNSW graphs or PLAID sections exist.
    #[arg(long)]
    pub exact: bool,
    /// PLAID: centroids probed per query token (default by k: 1, 2 or 4).
    #[arg(long)]
    pub ncells: Option<usize>,
    /// PLAID: rows kept after centroid pruning (default by k: 256, 1024 or max(4k, 4096)).
    #[arg(long)]
    pub ndocs: Option<usize>,
    /// PLAID: rows per segment scored by full MaxSim in the last stage (default ndocs / 4, at
    /// least k; above ndocs acts as ndocs). Raising it toward ndocs trades time for agreement
    /// with exact search.
    #[arg(long)]
    pub full_scores: Option<usize>,
    /// PLAID: centroid score threshold of the pruning stage (default by k: 0.5, 0.45 or 0.4).
    #[arg(long, allow_negative_numbers = true)]
    pub centroid_threshold: Option<f32>,
    /// PLAID: score the final candidates with decompressed vectors instead of the stored ones.
    #[arg(long)]
    pub decompress: bool,
    /// Return only documents whose metadata matches this filter: JSON text, or @FILE holding it.
    /// E.g. '{"lang": "en", "year": {"$gte": 2000}}'; operators $eq $ne $in $nin $gt $gte $lt
    /// $lte $exists, $and $or $not; dotted keys look into nested objects; an array value matches
    /// if any element does (full syntax: `vellum::filter::Filter` in the library docs).
    #[arg(long)]
    pub filter: Option<String>,
    /// Two-stage search: re-rank each query's stage-1 candidates with this field (dense, or
    /// exact MaxSim on a multi-vector field) and the re-ranking queries, keep the best k.
    #[arg(long)]
    pub rerank_field: Option<String>,
    /// Re-ranking text queries (same ids as the stage-1 queries), encoded by --rerank-field's
    /// query encoder.
    #[arg(
        long,
        requires = "rerank_field",
        conflicts_with = "rerank_query_vectors"
    )]
    pub rerank_queries: Option<PathBuf>,
    /// Re-ranking query vectors (.npy or .safetensors[:TENSOR]), as --query-vectors.
    #[arg(long, requires = "rerank_field")]
    pub rerank_query_vectors: Option<String>,
    /// Re-ranking multi-vector queries: per-query token counts.
    #[arg(long, requires = "rerank_query_vectors")]
    pub rerank_query_lengths: Option<String>,
    /// Ids of the re-ranking query vectors, one per line (default: 0, 1, 2, ...).
    #[arg(long, requires = "rerank_query_vectors")]
    pub rerank_query_ids: Option<PathBuf>,
    /// Stage-1 candidates per query when re-ranking or saving them (--save-candidates).
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// Final score of a re-ranked hit: "second" (the re-ranking field's score) or "sum:W1,W2"
    /// (W1 * stage-1 score + W2 * stage-2 score).
    #[arg(long, default_value = "second")]
    pub combine: String,
    /// Also write the stage-1 candidates (TREC run) to this file, to re-rank them later with
    /// --candidates.
    #[arg(long)]
    pub save_candidates: Option<PathBuf>,
    /// Skip stage 1: re-rank the candidates of this run file (TREC or TSV, e.g. written by
    /// --save-candidates) with --rerank-field. Candidates no longer in the database are skipped.
    #[arg(long, requires = "rerank_field", conflicts_with_all = ["field", "queries", "query_vectors", "save_candidates"])]
    pub candidates: Option<PathBuf>,
    /// Qrels (TREC or BEIR TSV): print --metrics of the run on stderr after searching.
    #[arg(long, value_name = "QRELS")]
    pub eval: Option<PathBuf>,
    /// Measures for --eval (see `vellum eval --help`).
    #[arg(long, default_value = DEFAULT_METRICS)]
    pub metrics: String,
}

/// Measures reported when none are asked for.
pub const DEFAULT_METRICS: &str = "mrr@10,recall@100,ndcg@10,map";

/// `vellum eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run file: TREC (qid Q0 docid rank score tag) or Tevatron TSV (qid docid score). Ranks
    /// come from the scores as trec_eval derives them (ties: docid descending).
    #[arg(long)]
    pub run: PathBuf,
    /// Qrels: TREC (qid 0 docid rel) or BEIR TSV with header (query-id corpus-id score).
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Comma-separated measures: mrr[@k], recall@k, p@k, ndcg[@k], map[@k], success@k
    /// (trec_eval semantics: relevant means grade >= 1; the mean is over queries both judged and
    /// in the run).
    #[arg(long, default_value = DEFAULT_METRICS)]
    pub metrics: String,
    /// DPR answers, JSONL {"qid": ..., "answers": [...]}: report top-k answer accuracy (a hit
    /// when a retrieved passage's stored text contains an answer, as pyserini's has_answers).
    /// Needs --db and --collection for the passage texts.
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Cutoffs for answer accuracy.
    #[arg(long, default_value = "20,100", value_delimiter = ',')]
    pub topk: Vec<usize>,
    /// Database holding the passages (for --answers).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Collection holding the passages (for --answers).
    #[arg(long, short = 'c')]
    pub collection: Option<String>,
    /// Print one JSON object ({"mrr@10": ..., "top20": ...}).
    #[arg(long)]
    pub json: bool,
    /// Also print per-query values.
    #[arg(long)]
    pub per_query: bool,
}

/// `vellum merge-runs`.
#[derive(Debug, clap::Args)]
pub struct MergeRunsArgs {
    /// Run files of disjoint shards (TREC or TSV).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Keep the best K documents per query (default: all).
    #[arg(short = 'k', long)]
    pub k: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Trec)]
    pub format: RunFormat,
    /// Run tag (last column of trec output).
    #[arg(long, default_value = "vellum")]
    pub tag: String,
}

/// `vellum convert-run`.
#[derive(Debug, clap::Args)]
pub struct ConvertRunArgs {
    /// Input run file (TREC or TSV, detected).
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub to: RunFormat,
    /// Run tag (last column of trec output).
    #[arg(long, default_value = "vellum")]
    pub tag: String,
    /// Keep the best K documents per query (default: all).
    #[arg(short = 'k', long)]
    pub k: Option<usize>,
}

/// `vellum export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name.
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Dense or tensor field to export.
    #[arg(long, short = 'f')]
    pub field: String,
    /// Output .npy ([N, dim] or [N, *shape]; float32, or float16 for f16 fields).
    #[arg(long)]
    pub vectors: PathBuf,
    /// Output id file (line i = id of row i).
    #[arg(long)]
    pub ids: PathBuf,
}

/// `vellum import-tevatron`.
#[derive(Debug, clap::Args)]
pub struct ImportTevatronArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Collection name (its schema: the one dense field, of the pickles' dimension).
    #[arg(long, short = 'c')]
    pub collection: String,
    /// Dense field receiving the vectors.
    #[arg(long, short = 'f')]
    pub field: String,
    /// Tevatron pickles (corpus.*.pkl), imported in the order given.
    #[arg(required = true)]
    pub pickles: Vec<PathBuf>,
    /// Replace documents whose id already exists instead of failing.
    #[arg(long)]
    pub upsert: bool,
}

/// `--strategy` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Coded where segments have screening codes, else streaming (one query) or screened (batches).
    Auto,
    /// One SIMD call per vector.
    Streaming,
    /// Blocked f32 matrix products.
    Blocked,
    /// bf16 screening with exact rescoring (AVX-512 BF16; else blocked).
    Screened,
    /// Per query: the stored 8-bit screening codes with exact rescoring.
    Coded,
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

/// Output format of search results and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    /// `qid Q0 docid rank score tag` (rank from 1).
    Trec,
    /// `qid<TAB>docid<TAB>score` (Tevatron).
    Tsv,
    /// `{"qid": ..., "hits": [{"docid", "rank", "score"}, ...]}` per line.
    Json,
}

impl From<RunFormat> for vellum::eval::RunFormat {
    fn from(f: RunFormat) -> Self {
        match f {
            RunFormat::Trec => vellum::eval::RunFormat::Trec,
            RunFormat::Tsv => vellum::eval::RunFormat::Tsv,
            RunFormat::Json => vellum::eval::RunFormat::Json,
        }
    }
}
