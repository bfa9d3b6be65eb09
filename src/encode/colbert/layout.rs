//! Reading a late-interaction (ColBERT) checkpoint's settings from the three layouts users have,
//! into one [`Layout`]: which token marks each side, how long each side's inputs are, query
//! expansion, the skiplist, the projection head and normalisation.
//!
//! * **Stanford ColBERT** (`stanford-futuredata/ColBERT`, `HF_ColBERT`): `config.json`
//!   `architectures` names `HF_ColBERT`; BERT weights under `bert.`, the head `linear.weight` at
//!   the root of `model.safetensors`; `artifact.metadata` (ColBERT's `ColBERTConfig`):
//!   `query_token_id` / `doc_token_id` (marker tokens, default `[unused0]` / `[unused1]`),
//!   `query_maxlen` (32), `doc_maxlen` (220), `attend_to_mask_tokens` (false),
//!   `mask_punctuation` (true). Queries are always `[MASK]`-expanded to `query_maxlen`.
//! * **PyLate** (`lightonai/pylate`, `models/colbert.py`): `config_sentence_transformers.json`
//!   with `query_prefix` / `document_prefix` (marker tokens added to the vocabulary, default
//!   `"[Q] "` / `"[D] "`), `query_length` (32), `document_length` (180), `do_query_expansion`
//!   (true), `attend_to_expansion_tokens` (false), `skiplist_words` (punctuation), `prompts`
//!   (text prefixes); `modules.json` lists the Transformer and `Dense` heads.
//! * **sentence-transformers ≥ 6** (`MultiVectorEncoder`): modules Transformer, Dense,
//!   `MultiVectorMask` (`skiplist_words`, `skiplist_tasks`, `keep_only_token_ids`), Normalize; the
//!   transformer's `sentence_bert_config.json` holds `query_length`, `document_length` and
//!   `query_expansion` `{strategy: fixed|min, attend, token, length}`; markers are text prompts
//!   (`prompts` in `config_sentence_transformers.json`).
//!
//! Every file read here is one the fingerprint covers or one whose effect the encoder record
//! stores (markers, lengths, expansion, skiplist: [`crate::meta::encoder::LateInteraction`]).

use serde_json::Value;

use crate::encode::source::ModelDir;
use crate::error::Result;

/// The checkpoint layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Stanford ColBERT's `HF_ColBERT`.
    Stanford,
    /// PyLate's sentence-transformers layout.
    PyLate,
    /// sentence-transformers 6 `MultiVectorEncoder`.
    SentenceTransformers,
}

impl Format {
    /// The name recorded in the encoder record.
    pub fn name(self) -> &'static str {
        match self {
            Format::Stanford => "stanford",
            Format::PyLate => "pylate",
            Format::SentenceTransformers => "sentence-transformers",
        }
    }
}

/// One side's (queries' or documents') conventions, with tokens still as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// Token inserted right after the first token.
    pub marker: Option<String>,
    /// Text put before the input.
    pub prompt: String,
    /// Most tokens per input (marker and special tokens included); `None`: the model's limit.
    pub length: Option<usize>,
    /// Query expansion (queries only).
    pub expansion: Option<Expansion>,
    /// Words whose token vectors are dropped.
    pub skiplist: Vec<String>,
    /// How a skiplist word becomes the token id whose vectors are dropped.
    pub skip_rule: SkipRule,
    /// Keep only these token ids (documents).
    pub keep_only: Option<Vec<u32>>,
}

/// How each implementation turns a skiplist word into a token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRule {
    /// The word's vocabulary id; a word that is not one is ignored (sentence-transformers'
    /// `MultiVectorMask`).
    Vocabulary,
    /// The word's vocabulary id, `[UNK]` when it is not one (PyLate's `convert_tokens_to_ids`).
    VocabularyOrUnknown,
    /// The first id of the word tokenized without special tokens (Stanford ColBERT's
    /// `tokenizer.encode(symbol, add_special_tokens=False)[0]`): `[UNK]` for a symbol outside a
    /// WordPiece vocabulary, a word-start piece such as `▁` when a SentencePiece tokenizer splits it.
    FirstPiece,
}

/// Query expansion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// Pad target in tokens.
    pub length: usize,
    /// The padding token (`None`: the tokenizer's mask token).
    pub token: Option<String>,
    /// Whether tokens attend to the expansion tokens.
    pub attend: bool,
    /// `fixed` (also the ceiling) rather than `min`.
    pub fixed: bool,
}

/// A projection of the head: `out × in` weights, optional bias.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadLayer {
    /// `[out, in]` row-major.
    pub weight: Vec<f32>,
    /// `[out]`, or empty.
    pub bias: Vec<f32>,
    /// Output size.
    pub out: usize,
    /// Input size.
    pub inp: usize,
}

/// What a checkpoint says about running it as a late-interaction encoder.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout read.
    pub format: Format,
    /// Query side.
    pub query: Side,
    /// Document side.
    pub document: Side,
    /// The projection head, applied in order to every token state.
    pub head: Vec<HeadLayer>,
    /// L2-normalise every output vector.
    pub normalize: bool,
    /// Lower-case texts before tokenizing (`sentence_bert_config.json`'s `do_lower_case`).
    pub lower_case: bool,
}

/// Which layout `dir` has, `None` for a dense (single-vector) model.
///
/// Like PyLate and sentence-transformers, a folder whose `modules.json` lists a Dense head is
/// read in the sentence-transformers layout even when `config.json` also names `HF_ColBERT`
/// (repositories that ship both layouts).
pub fn detect(dir: &ModelDir) -> Result<Option<Format>> {
    let modules = match dir.json("modules.json")? {
        Some(m) => module_list(dir, &m)?,
        None => Vec::new(),
    };
    let st_layout = modules
        .iter()
        .any(|(kind, _)| kind == "Dense" || kind == "MultiVectorMask");
    if !st_layout {
        if let Some(config) = dir.json("config.json")? {
            let stanford = config
                .get("architectures")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("HF_ColBERT")));
            if stanford {
                return Ok(Some(Format::Stanford));
            }
        }
    }
    if let Some(st) = dir.json("config_sentence_transformers.json")? {
        match st.get("model_type").and_then(Value::as_str) {
            Some("ColBERT") => return Ok(Some(Format::PyLate)),
            Some("MultiVectorEncoder") => return Ok(Some(Format::SentenceTransformers)),
            _ => {}
        }
        if st.get("query_prefix").is_some() || st.get("do_query_expansion").is_some() {
            return Ok(Some(Format::PyLate));
        }
    }
    if modules.iter().any(|(kind, _)| kind == "MultiVectorMask") {
        return Ok(Some(Format::SentenceTransformers));
    }
    Ok(None)
}

/// Module paths vellum reads heads and masks from: the fingerprint and `--embed-model` cover
/// exactly these (see [`crate::encode::MODEL_FILES`]).
pub const MODULE_DIRS: [&str; 3] = ["1_Dense", "2_Dense", "2_MultiVectorMask"];

/// `(class name, path)` of each module of `modules.json`.
fn module_list(dir: &ModelDir, modules: &Value) -> Result<Vec<(String, String)>> {
    let list = modules
        .as_array()
        .ok_or_else(|| dir.error("modules.json: expected a JSON array of modules"))?;
    Ok(list
        .iter()
        .map(|m| {
            let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
            let path = m.get("path").and_then(Value::as_str).unwrap_or("");
            (
                kind.rsplit('.').next().unwrap_or("").to_string(),
                path.to_string(),
            )
        })
        .collect())
}

fn punctuation() -> Vec<String> {
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
        .chars()
        .map(String::from)
        .collect()
}

fn usize_key(dir: &ModelDir, file: &str, v: &Value, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .filter(|&n| n >= 2)
            .map(|n| Some(n as usize))
            .ok_or_else(|| dir.error(format!("{file}: {key} is {x}; expected an integer >= 2"))),
    }
}

fn bool_key(dir: &ModelDir, file: &str, v: &Value, key: &str) -> Result<Option<bool>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_bool()
            .map(Some)
            .ok_or_else(|| dir.error(format!("{file}: {key} is {x}; expected true or false"))),
    }
}

fn str_key(dir: &ModelDir, file: &str, v: &Value, key: &str) -> Result<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| dir.error(format!("{file}: {key} is {x}; expected a string"))),
    }
}

fn words_key(dir: &ModelDir, file: &str, v: &Value, key: &str) -> Result<Option<Vec<String>>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|w| {
                w.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| dir.error(format!("{file}: {key} holds {w}; expected strings")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(x) => Err(dir.error(format!("{file}: {key} is {x}; expected a list of strings"))),
    }
}

/// Reads the layout of a late-interaction checkpoint of format `format` (from [`detect`]).
/// `hidden` is the transformer's hidden size (the head's input).
pub fn read(dir: &ModelDir, format: Format, hidden: usize) -> Result<Layout> {
    let lower_case = match dir.json("sentence_bert_config.json")? {
        Some(cfg) => {
            bool_key(dir, "sentence_bert_config.json", &cfg, "do_lower_case")?.unwrap_or(false)
        }
        None => false,
    };
    let mut layout = match format {
        Format::Stanford => stanford(dir, hidden)?,
        Format::PyLate => pylate(dir, hidden)?,
        Format::SentenceTransformers => sentence_transformers(dir, hidden)?,
    };
    layout.lower_case = lower_case;
    Ok(layout)
}

fn stanford(dir: &ModelDir, hidden: usize) -> Result<Layout> {
    const FILE: &str = "artifact.metadata";
    let meta = dir.json(FILE)?.ok_or_else(|| {
        dir.error("a Stanford ColBERT checkpoint (HF_ColBERT) needs its artifact.metadata (query/document lengths, markers); it is missing")
    })?;
    let query_len = usize_key(dir, FILE, &meta, "query_maxlen")?.unwrap_or(32);
    let doc_len = usize_key(dir, FILE, &meta, "doc_maxlen")?.unwrap_or(220);
    let attend = bool_key(dir, FILE, &meta, "attend_to_mask_tokens")?.unwrap_or(false);
    let mask_punctuation = bool_key(dir, FILE, &meta, "mask_punctuation")?.unwrap_or(true);
    let query_marker = str_key(dir, FILE, &meta, "query_token_id")?.unwrap_or("[unused0]".into());
    let doc_marker = str_key(dir, FILE, &meta, "doc_token_id")?.unwrap_or("[unused1]".into());
    let head = read_stanford_head(dir, hidden)?;
    Ok(Layout {
        format: Format::Stanford,
        query: Side {
            marker: Some(query_marker),
            prompt: String::new(),
            length: Some(query_len),
            expansion: Some(Expansion {
                length: query_len,
                token: None,
                attend,
                fixed: true,
            }),
            skiplist: Vec::new(),
            skip_rule: SkipRule::FirstPiece,
            keep_only: None,
        },
        document: Side {
            marker: Some(doc_marker),
            prompt: String::new(),
            length: Some(doc_len),
            expansion: None,
            skiplist: if mask_punctuation {
                punctuation()
            } else {
                Vec::new()
            },
            skip_rule: SkipRule::FirstPiece,
            keep_only: None,
        },
        head: vec![head],
        normalize: true,
        lower_case: false,
    })
}

fn read_stanford_head(dir: &ModelDir, hidden: usize) -> Result<HeadLayer> {
    let path = dir.dir.join("model.safetensors");
    let file = crate::storage::map_file(&path)?;
    let st = safetensors::SafeTensors::deserialize(file.bytes())
        .map_err(|e| dir.error(format!("model.safetensors cannot be read: {e}")))?;
    let view = st.tensor("linear.weight").map_err(|_| {
        dir.error("model.safetensors has no tensor \"linear.weight\": a Stanford ColBERT checkpoint keeps its projection head there")
    })?;
    head_from_view(
        dir,
        "model.safetensors",
        "linear.weight",
        &view,
        hidden,
        None,
    )
}

fn head_from_view(
    dir: &ModelDir,
    file: &str,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    inp: usize,
    out: Option<usize>,
) -> Result<HeadLayer> {
    let shape = view.shape();
    if shape.len() != 2 || shape[0] == 0 || shape[1] != inp || out.is_some_and(|o| o != shape[0]) {
        return Err(dir.error(format!(
            "{file}: tensor {name:?} has shape {shape:?}; expected [{}, {inp}]",
            out.map_or("out".to_string(), |o| o.to_string())
        )));
    }
    Ok(HeadLayer {
        weight: decode(dir, file, name, view)?,
        bias: Vec::new(),
        out: shape[0],
        inp,
    })
}

fn decode(
    dir: &ModelDir,
    file: &str,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<Vec<f32>> {
    let element = match view.dtype() {
        safetensors::Dtype::F32 => crate::DType::F32,
        safetensors::Dtype::F16 => crate::DType::F16,
        safetensors::Dtype::BF16 => crate::DType::Bf16,
        other => {
            return Err(dir.error(format!(
                "{file}: tensor {name:?} has element type {other:?}; expected F32, F16 or BF16"
            )))
        }
    };
    let mut out = Vec::new();
    element.decode_into(view.data(), &mut out);
    Ok(out)
}

/// The `Dense` modules of `modules.json` (PyLate's and sentence-transformers'), in order.
fn dense_heads(
    dir: &ModelDir,
    modules: &[(String, String)],
    hidden: usize,
) -> Result<Vec<HeadLayer>> {
    let mut heads: Vec<HeadLayer> = Vec::new();
    for (kind, path) in modules {
        if kind != "Dense" {
            continue;
        }
        if !MODULE_DIRS.contains(&path.as_str()) {
            return Err(dir.error(format!(
                "modules.json: a Dense module at {path:?}; vellum reads heads from {}",
                MODULE_DIRS[..2].join(" or ")
            )));
        }
        let cfg_name = format!("{path}/config.json");
        let cfg = dir
            .json(&cfg_name)?
            .ok_or_else(|| dir.error(format!("missing {cfg_name} (the Dense head's settings)")))?;
        let inp = heads.last().map_or(hidden, |h| h.out);
        let in_features = usize_key(dir, &cfg_name, &cfg, "in_features")?;
        let out_features = usize_key(dir, &cfg_name, &cfg, "out_features")?;
        if in_features.is_some_and(|i| i != inp) {
            return Err(dir.error(format!(
                "{cfg_name}: in_features is {}, but the layer before outputs {inp}",
                in_features.unwrap_or(0)
            )));
        }
        // sentence-transformers' Dense defaults: bias true, activation Tanh.
        let activation = str_key(dir, &cfg_name, &cfg, "activation_function")?
            .unwrap_or("torch.nn.modules.activation.Tanh".into());
        if !activation.ends_with("Identity") {
            return Err(dir.error(format!(
                "{cfg_name}: activation_function {activation:?} is not supported (ColBERT heads are linear: torch.nn.modules.linear.Identity)"
            )));
        }
        if bool_key(dir, &cfg_name, &cfg, "use_residual")?.unwrap_or(false) {
            return Err(dir.error(format!("{cfg_name}: use_residual is not supported")));
        }
        let weights_name = format!("{path}/model.safetensors");
        let weights_path = dir.dir.join(&weights_name);
        if !weights_path.is_file() {
            return Err(dir.error(format!(
                "missing {weights_name} (the Dense head's weights; only safetensors are read)"
            )));
        }
        let file = crate::storage::map_file(&weights_path)?;
        let st = safetensors::SafeTensors::deserialize(file.bytes())
            .map_err(|e| dir.error(format!("{weights_name} cannot be read: {e}")))?;
        let view = st
            .tensor("linear.weight")
            .map_err(|_| dir.error(format!("{weights_name} has no tensor \"linear.weight\"")))?;
        let mut head = head_from_view(
            dir,
            &weights_name,
            "linear.weight",
            &view,
            inp,
            out_features,
        )?;
        if bool_key(dir, &cfg_name, &cfg, "bias")?.unwrap_or(true) {
            let b = st.tensor("linear.bias").map_err(|_| {
                dir.error(format!(
                    "{weights_name} has no tensor \"linear.bias\" but {cfg_name} says bias: true"
                ))
            })?;
            if b.shape() != [head.out] {
                return Err(dir.error(format!(
                    "{weights_name}: tensor \"linear.bias\" has shape {:?}; expected [{}]",
                    b.shape(),
                    head.out
                )));
            }
            head.bias = decode(dir, &weights_name, "linear.bias", &b)?;
        }
        heads.push(head);
    }
    if heads.is_empty() {
        return Err(dir.error(
            "modules.json lists no Dense module: a ColBERT checkpoint needs its projection head (1_Dense/)",
        ));
    }
    Ok(heads)
}

fn pylate(dir: &ModelDir, hidden: usize) -> Result<Layout> {
    const FILE: &str = "config_sentence_transformers.json";
    let cfg = dir
        .json(FILE)?
        .ok_or_else(|| dir.error(format!("missing {FILE}")))?;
    let modules = dir
        .json("modules.json")?
        .ok_or_else(|| dir.error("missing modules.json (a PyLate checkpoint lists its Transformer and Dense modules there)"))?;
    let modules = module_list(dir, &modules)?;
    check_modules(dir, &modules, &["Transformer", "Dense"])?;
    let head = dense_heads(dir, &modules, hidden)?;
    // PyLate's encode puts a prompt before the text only when asked by name or through
    // `default_prompt_name` (for both sides alike).
    let prompts = cfg.get("prompts").cloned().unwrap_or(Value::Null);
    let default_prompt = str_key(dir, FILE, &cfg, "default_prompt_name")?;
    let prompt = |_side: &str| -> Result<String> {
        match &default_prompt {
            Some(name) => Ok(str_key(dir, FILE, &prompts, name)?.unwrap_or_default()),
            None => Ok(String::new()),
        }
    };
    let marker = |key: &str, default: &str| -> Result<Option<String>> {
        let m = str_key(dir, FILE, &cfg, key)?.unwrap_or(default.to_string());
        Ok((!m.is_empty()).then_some(m))
    };
    let query_len = usize_key(dir, FILE, &cfg, "query_length")?.unwrap_or(32);
    let doc_len = usize_key(dir, FILE, &cfg, "document_length")?.unwrap_or(180);
    let expand = bool_key(dir, FILE, &cfg, "do_query_expansion")?.unwrap_or(true);
    let attend = expand
        && bool_key(dir, FILE, &cfg, "attend_to_expansion_tokens")?
            .or(bool_key(dir, FILE, &cfg, "attend_to_mask_tokens")?)
            .unwrap_or(false);
    let skiplist = words_key(dir, FILE, &cfg, "skiplist_words")?.unwrap_or_else(punctuation);
    Ok(Layout {
        format: Format::PyLate,
        query: Side {
            marker: marker("query_prefix", "[Q] ")?,
            prompt: prompt("query")?,
            length: Some(query_len),
            expansion: expand.then_some(Expansion {
                length: query_len,
                token: None,
                attend,
                fixed: true,
            }),
            skiplist: Vec::new(),
            skip_rule: SkipRule::VocabularyOrUnknown,
            keep_only: None,
        },
        document: Side {
            marker: marker("document_prefix", "[D] ")?,
            prompt: prompt("document")?,
            length: Some(doc_len),
            expansion: None,
            skiplist,
            skip_rule: SkipRule::VocabularyOrUnknown,
            keep_only: None,
        },
        head,
        normalize: true,
        lower_case: false,
    })
}

fn check_modules(dir: &ModelDir, modules: &[(String, String)], allowed: &[&str]) -> Result<()> {
    match modules.first() {
        Some((kind, _)) if kind == "Transformer" => {}
        _ => return Err(dir.error("modules.json: the first module must be the Transformer")),
    }
    for (kind, path) in modules {
        if !allowed.contains(&kind.as_str()) {
            return Err(dir.error(format!(
                "modules.json: module {kind:?} ({path}) is not supported in a late-interaction model (vellum runs {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn sentence_transformers(dir: &ModelDir, hidden: usize) -> Result<Layout> {
    const TRANSFORMER: &str = "sentence_bert_config.json";
    let modules = dir
        .json("modules.json")?
        .ok_or_else(|| dir.error("missing modules.json"))?;
    let modules = module_list(dir, &modules)?;
    check_modules(
        dir,
        &modules,
        &["Transformer", "Dense", "MultiVectorMask", "Normalize"],
    )?;
    let head = dense_heads(dir, &modules, hidden)?;
    let normalize = modules.iter().any(|(k, _)| k == "Normalize");
    let transformer = dir.json(TRANSFORMER)?.unwrap_or(Value::Null);
    let max_seq = usize_key(dir, TRANSFORMER, &transformer, "max_seq_length")?;
    let query_len = usize_key(dir, TRANSFORMER, &transformer, "query_length")?.or(max_seq);
    let doc_len = usize_key(dir, TRANSFORMER, &transformer, "document_length")?.or(max_seq);
    let expansion = match transformer.get("query_expansion") {
        None | Some(Value::Null) => None,
        Some(e) => {
            let what = format!("{TRANSFORMER}: query_expansion");
            let strategy = str_key(dir, &what, e, "strategy")?.unwrap_or_default();
            let fixed = match strategy.as_str() {
                "fixed" => true,
                "min" => false,
                other => {
                    return Err(
                        dir.error(format!("{what}: strategy {other:?}; expected fixed or min"))
                    )
                }
            };
            let length = usize_key(dir, &what, e, "length")?
                .ok_or_else(|| dir.error(format!("{what}: length is required")))?;
            Some(Expansion {
                length,
                token: str_key(dir, &what, e, "token")?,
                attend: bool_key(dir, &what, e, "attend")?.unwrap_or(false),
                fixed,
            })
        }
    };
    let (mut skiplist, mut tasks, mut keep_only) = (Vec::new(), vec!["document".to_string()], None);
    if let Some((_, path)) = modules.iter().find(|(k, _)| k == "MultiVectorMask") {
        if !MODULE_DIRS.contains(&path.as_str()) {
            return Err(dir.error(format!(
                "modules.json: a MultiVectorMask module at {path:?}; vellum reads it from {}",
                MODULE_DIRS[2]
            )));
        }
        let name = format!("{path}/config.json");
        if let Some(cfg) = dir.json(&name)? {
            skiplist = words_key(dir, &name, &cfg, "skiplist_words")?.unwrap_or_default();
            tasks = match cfg.get("skiplist_tasks") {
                Some(Value::String(s)) => vec![s.clone()],
                _ => words_key(dir, &name, &cfg, "skiplist_tasks")?.unwrap_or(tasks),
            };
            keep_only = match cfg.get("keep_only_token_ids") {
                // sentence-transformers: an empty list is no allowlist.
                None | Some(Value::Null) => None,
                Some(Value::Array(a)) if a.is_empty() => None,
                Some(Value::Array(a)) => Some(
                    a.iter()
                        .map(|v| {
                            v.as_u64().map(|n| n as u32).ok_or_else(|| {
                                dir.error(format!(
                                    "{name}: keep_only_token_ids holds {v}; expected token ids"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
                Some(x) => {
                    return Err(dir.error(format!(
                        "{name}: keep_only_token_ids is {x}; expected a list of token ids"
                    )))
                }
            };
        }
    }
    let st = dir
        .json("config_sentence_transformers.json")?
        .unwrap_or(Value::Null);
    let prompts = st.get("prompts").cloned().unwrap_or(Value::Null);
    let prompt = |keys: &[&str]| -> Result<String> {
        for k in keys {
            if let Some(p) = str_key(dir, "config_sentence_transformers.json", &prompts, k)? {
                return Ok(p);
            }
        }
        Ok(String::new())
    };
    let skips = |task: &str| {
        if tasks.iter().any(|t| t == task) {
            skiplist.clone()
        } else {
            Vec::new()
        }
    };
    Ok(Layout {
        format: Format::SentenceTransformers,
        query: Side {
            marker: None,
            prompt: prompt(&["query"])?,
            length: query_len,
            expansion,
            skiplist: skips("query"),
            skip_rule: SkipRule::Vocabulary,
            keep_only: None,
        },
        document: Side {
            marker: None,
            prompt: prompt(&["document", "passage", "corpus"])?,
            length: doc_len,
            expansion: None,
            skiplist: skips("document"),
            skip_rule: SkipRule::Vocabulary,
            keep_only,
        },
        head,
        normalize,
        lower_case: false,
    })
}
