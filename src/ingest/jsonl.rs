//! Document input: JSON lines with `id` (or `docid` / `_id`), `text`, optional `title`, `image`
//! (a path, relative to the file's folder) and `metadata`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::document::Document;
use crate::error::{Error, Result};

/// Streams documents from a JSONL file. Blank lines are skipped (but counted in line numbers).
pub struct JsonlDocs {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    line_no: u64,
    buf: Vec<u8>,
}

impl JsonlDocs {
    /// Opens the file.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonlDocs {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, f),
            line_no: 0,
            buf: Vec::new(),
        })
    }

    /// Line number of the last document returned.
    pub fn line(&self) -> u64 {
        self.line_no
    }

    /// Counts the documents (non-blank lines) without parsing them.
    pub fn count(path: &Path) -> Result<u64> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let (mut n, mut line) = (0u64, Vec::new());
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)
                .map_err(|e| Error::io(path, e))?
                == 0
            {
                return Ok(n);
            }
            let content = if n == 0 {
                line.strip_prefix(BOM).unwrap_or(&line)
            } else {
                &line
            };
            if !content.iter().all(u8::is_ascii_whitespace) {
                n += 1;
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Document> {
        let at =
            |detail: String| Error::bad_input(&self.path, format!("line {}", self.line_no), detail);
        let text = std::str::from_utf8(line).map_err(|e| {
            at(format!(
                "invalid UTF-8 at byte {} of the line",
                e.valid_up_to()
            ))
        })?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(at(
                "expected a JSON object like {\"id\": ..., \"text\": ..., \"metadata\": {...}}"
                    .into(),
            ));
        };
        let id_key = ["id", "docid", "_id"]
            .into_iter()
            .find(|k| obj.contains_key(*k))
            .ok_or_else(|| at("missing \"id\" field".into()))?;
        let id = match obj.remove(id_key).expect("present") {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(at(format!(
                    "field {id_key:?} must be a string or number, found {other}"
                )))
            }
        };
        let text = match obj.remove("text") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(at(format!(
                    "field \"text\" must be a string, found {other}"
                )))
            }
        };
        let mut metadata = match obj.remove("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(at(format!(
                    "field \"metadata\" must be a JSON object, found {other}"
                )))
            }
        };
        if let Some(title) = obj.remove("title") {
            metadata.entry("title").or_insert(title);
        }
        // An image path (relative to the file's folder) for fields whose encoder takes images;
        // kept in the metadata, where ingest reads it and readers find the source image.
        // Other values (and an `image` the metadata already has, as for `title`) leave the
        // metadata as it is; an ingest that encodes images then reports the missing path.
        if let Some(Value::String(p)) = obj.remove("image") {
            if !p.trim().is_empty() {
                metadata.entry("image").or_insert(Value::String(p));
            }
        }
        let doc = Document {
            id,
            text,
            metadata,
            values: Vec::new(),
        };
        crate::document::validate_id(&doc.id).map_err(|e| at(e.to_string()))?;
        Ok(doc)
    }
}

impl Iterator for JsonlDocs {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::io(&self.path, e))),
            }
            self.line_no += 1;
            if self.line_no == 1 && self.buf.starts_with(BOM) {
                // A UTF-8 byte-order mark (Windows editors) is not part of the first document.
                self.buf.drain(..BOM.len());
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = std::mem::take(&mut self.buf);
            let doc = self.parse(&line);
            self.buf = line;
            return Some(doc);
        }
    }
}

/// The UTF-8 byte-order mark, skipped at the start of every text input.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads one id per line (blank lines skipped), e.g. query ids or ids to delete.
pub fn read_id_list(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::bad_input(
            path,
            "content",
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docs_and_reports_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"text\":\"x\",\"metadata\":{\"k\":1}}\n\n{\"docid\":7,\"title\":\"T\",\"text\":\"y\"}\n{\"id\":\"b\",\"text\":3}\n").unwrap();
        assert_eq!(JsonlDocs::count(&p).unwrap(), 3);
        let docs: Vec<Result<Document>> = JsonlDocs::open(&p).unwrap().collect();
        let a = docs[0].as_ref().unwrap();
        assert_eq!((a.id.as_str(), a.text.as_str()), ("a", "x"));
        let b = docs[1].as_ref().unwrap();
        assert_eq!(b.id, "7");
        assert_eq!(b.metadata["title"], "T");
        let err = docs[2].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("c.jsonl:line 4") && err.contains("\"text\" must be a string"),
            "{err}"
        );
    }

    #[test]
    fn bad_utf8_and_empty_ids_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, b"{\"id\":\"\xff\"}\n{\"id\":\"\"}\n").unwrap();
        let docs: Vec<Result<Document>> = JsonlDocs::open(&p).unwrap().collect();
        assert!(docs[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("line 1: invalid UTF-8"));
        assert!(docs[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("line 2: invalid input: empty document id"));
    }
}
