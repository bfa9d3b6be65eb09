//! Finding a model's files: a local folder in the Hugging Face layout, or a model id resolved
//! from the local Hugging Face cache; reading sentence-transformers' defaults; fingerprinting.
//! Compiled in every build (no model code here).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::meta::encoder::Pooling;

/// The files of a model folder that define its behaviour, relative to the folder: what the
/// fingerprint covers and what `--embed-model` copies. The last six exist only in late-interaction
/// (ColBERT) checkpoints (Stanford's metadata, PyLate's and sentence-transformers' head and mask
/// modules), so adding them changed no dense model's fingerprint.
pub const MODEL_FILES: [&str; 12] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "artifact.metadata",
    "1_Dense/config.json",
    "1_Dense/model.safetensors",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "2_MultiVectorMask/config.json",
];

/// Files vellum also reads and `--embed-model` copies: PyLate's markers, lengths and skiplist,
/// the prompts, the mask token. A late-interaction checkpoint's fingerprint covers them (see
/// [`fingerprint_files`]); a dense model's does not (that would have changed the fingerprints of
/// dense models that ship them, such as all-MiniLM-L6-v2, and dense encoders read nothing that
/// matters from them).
pub const SETTINGS_FILES: [&str; 2] =
    ["config_sentence_transformers.json", "tokenizer_config.json"];

/// Files of image encoders (CLIP's image processor settings), fingerprinted after the others
/// for CLIP checkpoints (`config.json` `model_type` `clip`) only.
pub const IMAGE_FILES: [&str; 1] = ["preprocessor_config.json"];

/// Files of [`MODEL_FILES`] that only late-interaction (ColBERT) checkpoints have.
pub const LATE_INTERACTION_FILES: [&str; 6] = [
    "artifact.metadata",
    "1_Dense/config.json",
    "1_Dense/model.safetensors",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "2_MultiVectorMask/config.json",
];

/// A model folder that has the files an encoder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The folder.
    pub dir: PathBuf,
    /// What the user named (folder or model id), recorded in the manifest.
    pub source: String,
}

impl ModelDir {
    /// Resolves `source`: an existing folder, else a Hugging Face model id (`org/name`,
    /// optionally `org/name@revision`) looked up in the local cache (`$HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). Nothing is downloaded.
    pub fn resolve(source: &str) -> Result<ModelDir> {
        let path = Path::new(source);
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else if looks_like_model_id(source) {
            resolve_from_hf_cache(source)?
        } else {
            return Err(Error::Model {
                path: path.to_path_buf(),
                detail: "no such folder (expected a model folder with config.json, tokenizer.json and model.safetensors, or a Hugging Face model id such as sentence-transformers/all-MiniLM-L6-v2)".into(),
            });
        };
        let m = ModelDir {
            dir,
            source: source.to_string(),
        };
        m.check_files()?;
        Ok(m)
    }

    /// A folder known to hold a model (an embedded copy, for instance).
    pub fn at(dir: PathBuf, source: &str) -> Result<ModelDir> {
        let m = ModelDir {
            dir,
            source: source.to_string(),
        };
        m.check_files()?;
        Ok(m)
    }

    fn check_files(&self) -> Result<()> {
        for required in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !self.dir.join(required).is_file() {
                let hint = match required {
                    "model.safetensors" if self.dir.join("pytorch_model.bin").is_file() => {
                        " (only safetensors weights are read: convert pytorch_model.bin with `safetensors`' convert script)"
                    }
                    "model.safetensors" if self.dir.join("model.safetensors.index.json").is_file() => {
                        " (sharded weights are not supported yet)"
                    }
                    _ => "",
                };
                return Err(self.error(format!("missing {required}{hint}")));
            }
        }
        Ok(())
    }

    /// An [`Error::Model`] about this folder.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        Error::Model {
            path: self.dir.clone(),
            detail: detail.into(),
        }
    }

    /// Reads and parses a JSON file of the folder, `None` when it does not exist.
    pub fn json(&self, name: &str) -> Result<Option<Value>> {
        let path = self.dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.error(format!("{name} is not valid JSON: {e}")))
    }

    /// sentence-transformers' defaults, read from `modules.json`, `1_Pooling/config.json` and
    /// `sentence_bert_config.json` when present.
    pub fn defaults(&self) -> Result<ModelDefaults> {
        let mut d = ModelDefaults::default();
        let mut pooling_dir = Some("1_Pooling".to_string());
        if let Some(modules) = self.json("modules.json")? {
            let list = modules
                .as_array()
                .ok_or_else(|| self.error("modules.json: expected a JSON array of modules"))?;
            pooling_dir = None;
            for m in list {
                let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
                let path = m.get("path").and_then(Value::as_str).unwrap_or("");
                match kind.rsplit('.').next().unwrap_or("") {
                    "Transformer" => {}
                    "Pooling" => pooling_dir = Some(path.to_string()),
                    "Normalize" => d.normalize = true,
                    other => {
                        return Err(self.error(format!(
                            "modules.json: module {other:?} ({path}) is not supported (vellum runs Transformer, Pooling and Normalize modules)"
                        )))
                    }
                }
            }
        }
        if let Some(dir) = pooling_dir {
            let name = format!("{dir}/config.json");
            if let Some(cfg) = self.json(&name)? {
                d.pooling = Some(
                    pooling_from_config(&cfg).map_err(|e| self.error(format!("{name}: {e}")))?,
                );
            }
        }
        if let Some(cfg) = self.json("sentence_bert_config.json")? {
            d.max_length = cfg
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|n| n as usize);
            d.do_lower_case = cfg
                .get("do_lower_case")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        Ok(d)
    }

    /// The model's fingerprint: `xxh3-128:<hex>` over the name, length and bytes of each of
    /// [`MODEL_FILES`] present in the folder.
    pub fn fingerprint(&self) -> Result<String> {
        fingerprint_files(|name| {
            let path = self.dir.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            crate::storage::map_file(&path).map(Some)
        })
    }

    /// Copies the model's files into folder `rel` of `dir` (a database's `.models/<hex>`), through
    /// a temporary folder renamed into place, so that `rel` either holds a complete copy or does
    /// not exist. Every file and every folder that gains an entry is fsynced (sub-folders such as
    /// `1_Pooling/` included), so a committed manifest never names a copy a power cut can lose.
    pub fn copy_into(&self, dir: &dyn crate::storage::Directory, rel: &Path) -> Result<()> {
        if dir.exists(rel)? {
            return Ok(());
        }
        let tmp = crate::storage::tmp_name(rel);
        dir.remove_dir_all(&tmp)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let new_parent = !dir.exists(parent)?;
        dir.create_dir_all(&tmp)?;
        let mut dirs = std::collections::BTreeSet::new();
        for name in MODEL_FILES
            .iter()
            .chain(&SETTINGS_FILES)
            .chain(&IMAGE_FILES)
        {
            let from = self.dir.join(name);
            if !from.is_file() {
                continue;
            }
            let to = tmp.join(name);
            let sub = to.parent().expect("file in folder").to_path_buf();
            dir.create_dir_all(&sub)?;
            let mut src = std::fs::File::open(&from).map_err(|e| Error::io(&from, e))?;
            let mut dst = dir.create_new(&to)?;
            std::io::copy(&mut src, &mut dst).map_err(|e| Error::io(dir.path_of(&to), e))?;
            dst.sync().map_err(|e| Error::io(dir.path_of(&to), e))?;
            dirs.insert(sub);
        }
        // Deepest first: a sub-folder's content is durable before its entry in its parent.
        for d in dirs.iter().rev() {
            dir.sync_dir(d)?;
        }
        if !dirs.contains(&tmp) {
            dir.sync_dir(&tmp)?;
        }
        dir.rename(&tmp, rel)?;
        dir.sync_dir(parent)?;
        if new_parent {
            dir.sync_dir(parent.parent().unwrap_or(Path::new("")))?;
        }
        Ok(())
    }
}

/// The fingerprint of a model's files: XXH3-128 over, for each of [`MODEL_FILES`] that `open`
/// finds (in that order; `None` for an absent file), the file name's UTF-8 bytes, its length as
/// u64 LE, and its bytes — followed, for a late-interaction checkpoint (one with any of the
/// [`LATE_INTERACTION_FILES`]), by the same for each of [`SETTINGS_FILES`], and for a CLIP
/// checkpoint (`config.json` `model_type` `clip`) by the same for each of [`IMAGE_FILES`].
pub fn fingerprint_files(
    mut open: impl FnMut(&str) -> Result<Option<crate::storage::MappedFile>>,
) -> Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut late = false;
    for name in MODEL_FILES {
        let Some(file) = open(name)? else {
            continue;
        };
        late |= LATE_INTERACTION_FILES.contains(&name);
        // Mapped, not read: model weights are hundreds of megabytes.
        let bytes = file.bytes();
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let settings: &[&str] = if late { &SETTINGS_FILES } else { &[] };
    // Image settings count for image models only (CLIP), so that a text model folder that
    // happens to ship a preprocessor_config.json keeps its fingerprint.
    let clip = match open("config.json")? {
        Some(f) => serde_json::from_slice::<serde_json::Value>(f.bytes())
            .ok()
            .and_then(|v| v.get("model_type")?.as_str().map(|t| t == "clip"))
            .unwrap_or(false),
        None => false,
    };
    let image: &[&str] = if clip { &IMAGE_FILES } else { &[] };
    for name in settings.iter().chain(image) {
        let Some(file) = open(name)? else {
            continue;
        };
        let bytes = file.bytes();
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    Ok(format!("xxh3-128:{:032x}", h.digest128()))
}

/// What a model folder says about how sentence-transformers would run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelDefaults {
    /// Pooling from the Pooling module's config.
    pub pooling: Option<Pooling>,
    /// A Normalize module is present.
    pub normalize: bool,
    /// `max_seq_length`.
    pub max_length: Option<usize>,
    /// Lower-case inputs before tokenizing.
    pub do_lower_case: bool,
}

fn pooling_from_config(cfg: &Value) -> std::result::Result<Pooling, String> {
    let on = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_lasttoken", Some(Pooling::Last)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
    ];
    let set: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
    match set.as_slice() {
        [(_, Some(p))] => Ok(*p),
        [(k, None)] => Err(format!(
            "{k} is not supported (use cls, mean or last pooling)"
        )),
        [] => Err("no pooling mode is set".into()),
        _ => Err(format!(
            "{} pooling modes are set at once (vellum supports exactly one of cls, mean, last)",
            set.len()
        )),
    }
}

fn looks_like_model_id(s: &str) -> bool {
    let id = s.split('@').next().unwrap_or(s);
    let parts: Vec<&str> = id.split('/').collect();
    !s.starts_with('.')
        && !s.starts_with('/')
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// The Hugging Face hub cache folder this process would use.
pub fn hf_hub_cache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(p).join("huggingface").join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

fn resolve_from_hf_cache(source: &str) -> Result<PathBuf> {
    let cache = hf_hub_cache().ok_or_else(|| Error::Model {
        path: PathBuf::from(source),
        detail:
            "no local folder of that name, and no Hugging Face cache is configured (set HF_HOME)"
                .into(),
    })?;
    resolve_in_cache(&cache, source)
}

fn resolve_in_cache(cache: &Path, source: &str) -> Result<PathBuf> {
    let (id, revision) = match source.split_once('@') {
        Some((id, rev)) => (id, rev),
        None => (source, "main"),
    };
    let not_found = |detail: String| Error::Model {
        path: PathBuf::from(source),
        detail,
    };
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    if !repo.is_dir() {
        return Err(not_found(format!(
            "no local folder of that name, and the model is not in the Hugging Face cache ({} does not exist); download it first (e.g. `huggingface-cli download {id}`) or pass a local folder",
            repo.display()
        )));
    }
    let snapshots = repo.join("snapshots");
    let commit = match std::fs::read_to_string(repo.join("refs").join(revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let dir = snapshots.join(&commit);
    if dir.is_dir() {
        return Ok(dir);
    }
    // No ref file and no snapshot named like the revision: accept a single snapshot.
    let entries: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .map_err(|e| Error::io(&snapshots, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match entries.as_slice() {
        [only] if revision == "main" => Ok(only.clone()),
        _ => Err(not_found(format!(
            "revision {revision:?} is not in the Hugging Face cache at {} ({} snapshots there)",
            snapshots.display(),
            entries.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn fake_model(dir: &Path) {
        write(dir, "config.json", r#"{"model_type": "bert"}"#);
        write(dir, "tokenizer.json", "{}");
        write(dir, "model.safetensors", "weights");
    }

    #[test]
    fn defaults_follow_sentence_transformers_files() {
        let t = tempfile::tempdir().unwrap();
        fake_model(t.path());
        let m = ModelDir::resolve(t.path().to_str().unwrap()).unwrap();
        assert_eq!(m.defaults().unwrap(), ModelDefaults::default());
        write(
            t.path(),
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        );
        write(
            t.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}"#,
        );
        write(
            t.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length": 256, "do_lower_case": false}"#,
        );
        let d = m.defaults().unwrap();
        assert_eq!(d.pooling, Some(Pooling::Mean));
        assert!(d.normalize);
        assert_eq!(d.max_length, Some(256));
        write(
            t.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_max_tokens": true}"#,
        );
        let e = m.defaults().unwrap_err().to_string();
        assert!(
            e.contains("pooling_mode_max_tokens is not supported"),
            "{e}"
        );
        write(
            t.path(),
            "modules.json",
            r#"[{"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
        );
        let e = m.defaults().unwrap_err().to_string();
        assert!(e.contains("\"Dense\" (2_Dense) is not supported"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "config.json", "{}");
        write(t.path(), "pytorch_model.bin", "x");
        write(t.path(), "tokenizer.json", "{}");
        let e = ModelDir::resolve(t.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing model.safetensors") && e.contains("pytorch_model.bin"),
            "{e}"
        );
        let e = ModelDir::resolve("./no/such/folder")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such folder"), "{e}");
    }

    #[test]
    fn fingerprint_covers_bytes_and_survives_copy() {
        let t = tempfile::tempdir().unwrap();
        fake_model(t.path());
        let m = ModelDir::at(t.path().to_path_buf(), "x").unwrap();
        let a = m.fingerprint().unwrap();
        assert!(a.starts_with("xxh3-128:") && a.len() == 9 + 32, "{a}");
        let dest = t.path().join("copy");
        m.copy_into(
            &crate::storage::FsDirectory::new(t.path()),
            Path::new("copy"),
        )
        .unwrap();
        assert!(!t.path().join("copy.tmp").exists());
        assert_eq!(
            ModelDir::at(dest.clone(), "x")
                .unwrap()
                .fingerprint()
                .unwrap(),
            a
        );
        write(t.path(), "model.safetensors", "weightz");
        assert_ne!(m.fingerprint().unwrap(), a);
    }

    #[test]
    fn model_ids_resolve_from_the_hf_cache_layout() {
        assert!(looks_like_model_id(
            "sentence-transformers/all-MiniLM-L6-v2"
        ));
        assert!(looks_like_model_id("bert-base-uncased@main"));
        assert!(
            !looks_like_model_id("./models/x")
                && !looks_like_model_id("/abs/x")
                && !looks_like_model_id("a/b/c")
        );
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("models--org--tiny");
        fake_model(&repo.join("snapshots/abc123"));
        write(&repo, "refs/main", "abc123\n");
        let dir = resolve_in_cache(t.path(), "org/tiny").unwrap();
        assert!(dir.ends_with("snapshots/abc123"));
        assert!(resolve_in_cache(t.path(), "org/tiny@abc123").is_ok());
        let e = resolve_in_cache(t.path(), "org/absent")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the Hugging Face cache"), "{e}");
    }
}
