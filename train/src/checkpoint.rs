//! Writing a trained encoder as a Hugging Face model folder that `transformers`,
//! `sentence-transformers` and vellum load: `model.safetensors` (every tensor of the original
//! checkpoint, under its original name, f32), the original `config.json` and tokenizer files, and
//! sentence-transformers' module files written from the field's record (pooling, normalisation,
//! max length), so every loader pools as the field does. Folders are written under a temporary
//! name, fsynced and renamed into place: a crash leaves either the whole folder or none.

use std::path::{Path, PathBuf};

use serde_json::json;
use vellum::encode::Pooling;

use crate::error::{Result, TrainError};
use crate::tower::Tower;

/// Files copied unchanged from the model folder training started from (those present).
pub const COPIED_FILES: [&str; 11] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "added_tokens.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::io(path, e)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// Writes the model of `tower` into folder `dir` (created if missing; its files are replaced).
/// The field's Matryoshka `dims` and `prefix` are not expressible in sentence-transformers' module
/// files: a loader applies them itself (vellum's record keeps them when the folder is bound).
pub fn write_model(tower: &Tower, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("1_Pooling")).map_err(io(dir))?;
    for name in COPIED_FILES {
        let from = tower.dir.dir.join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    tower.params.save(&dir.join("model.safetensors"))?;
    let r = &tower.record;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if r.normalize {
        modules.push(
            json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}),
        );
        std::fs::create_dir_all(dir.join("2_Normalize")).map_err(io(dir))?;
    }
    write_json(&dir.join("modules.json"), &json!(modules))?;
    // The source's settings (do_lower_case above all: training tokenised with it) with the
    // field's length.
    let mut st = tower
        .dir
        .json("sentence_bert_config.json")?
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| json!({"do_lower_case": false}));
    st["max_seq_length"] = json!(r.max_length);
    write_json(&dir.join("sentence_bert_config.json"), &st)?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": tower.model().hidden(),
            "pooling_mode_cls_token": r.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": r.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": r.pooling == Pooling::Last,
            "include_prompt": true
        }),
    )?;
    Ok(())
}

/// Fsyncs every file and folder under `dir` (deepest first), then `dir` itself.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for e in entries {
        let path = e.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// Creates folder `dest` atomically: `fill` writes into a temporary sibling, which is fsynced
/// and renamed to `dest`. An existing `dest` is first renamed aside and removed after the new
/// folder is in place, so a crash leaves the old folder (possibly under its aside name
/// `.<name>.old`) or the new one, never neither.
pub fn write_atomically(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dest
        .file_name()
        .ok_or_else(|| TrainError::Invalid(format!("{}: not a folder name", dest.display())))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp: PathBuf = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    sync_tree(&tmp)?;
    let old: PathBuf = parent.join(format!(".{}.old", name.to_string_lossy()));
    if dest.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(dest, &old).map_err(io(dest))?;
    }
    std::fs::rename(&tmp, dest).map_err(io(dest))?;
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(io(parent))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Moves every file of folder `from` (recursively) into `to`, each by one atomic rename after
/// `from` was fsynced: a crash leaves each file whole, old or new. Used for the final model in
/// an output folder that also holds checkpoints (a whole-folder rename would move them too).
pub fn move_files_into(from: &Path, to: &Path) -> Result<()> {
    sync_tree(from)?;
    std::fs::create_dir_all(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let path = e.map_err(io(from))?.path();
        let dest = to.join(path.file_name().expect("entries have names"));
        if path.is_dir() {
            move_files_into(&path, &dest)?;
        } else {
            std::fs::rename(&path, &dest).map_err(io(&dest))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(to))?;
    std::fs::remove_dir_all(from).map_err(io(from))
}

/// The encoders a field gets from a finished training written to `output`: its model folder
/// (tied) or `passage_model/` + `query_model/` (untied), recorded by absolute path, with the
/// field's `current` options carried over (the trained model is the current one fine-tuned).
/// For [`vellum::encode::prepare_encoders`], then a re-encode.
pub fn trained_encoders(
    output: &Path,
    untied: bool,
    current: &vellum::encode::FieldEncoders,
    embed: bool,
) -> Result<vellum::encode::EncoderChoice> {
    let absolute = |p: &Path| -> Result<String> {
        Ok(std::fs::canonicalize(p)
            .map_err(|e| TrainError::io(p, e))?
            .display()
            .to_string())
    };
    let (passage, query) = if untied {
        (
            absolute(&output.join("passage_model"))?,
            Some(absolute(&output.join("query_model"))?),
        )
    } else {
        (absolute(output)?, None)
    };
    Ok(vellum::encode::EncoderChoice {
        passage,
        passage_options: current.passage.options(),
        query,
        query_options: current.query.options(),
        embed,
    })
}
