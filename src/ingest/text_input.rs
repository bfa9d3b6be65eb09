//! Text inputs: documents as TSV (`id<TAB>text[<TAB>title]`, as MS MARCO's collection.tsv and
//! DPR's psgs_w100.tsv), a reader that picks JSONL or TSV by extension, and query files (TSV
//! `qid<TAB>text` or JSONL `{"id", "text"}`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::jsonl::JsonlDocs;
use crate::document::Document;
use crate::error::{Error, Result};

/// Whether a path names a TSV file (`.tsv`, case-insensitive).
pub fn is_tsv(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
}

/// Streams documents from `id<TAB>text[<TAB>title]` lines. A first line whose first column is
/// `id` (a header, as in DPR's files) is skipped; blank lines are skipped.
pub struct TsvDocs {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    line_no: u64,
    buf: String,
}

impl TsvDocs {
    /// Opens the file.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(TsvDocs {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, f),
            line_no: 0,
            buf: String::new(),
        })
    }

    fn parse(&self, line: &str) -> Result<Document> {
        let at = |d: String| Error::bad_input(&self.path, format!("line {}", self.line_no), d);
        let mut cols = line.split('\t');
        let id = cols.next().unwrap_or("").to_string();
        let text = cols
            .next()
            .ok_or_else(|| at("expected id<TAB>text[<TAB>title], found no tab".into()))?
            .to_string();
        let mut metadata = Map::new();
        if let Some(title) = cols.next() {
            metadata.insert("title".into(), Value::String(title.to_string()));
        }
        if cols.next().is_some() {
            return Err(at("expected at most 3 columns (id, text, title)".into()));
        }
        crate::document::validate_id(&id).map_err(|e| at(e.to_string()))?;
        Ok(Document {
            id,
            text,
            metadata,
            values: Vec::new(),
        })
    }
}

impl Iterator for TsvDocs {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    let detail = format!("line {}", self.line_no + 1);
                    return Some(Err(Error::bad_input(&self.path, detail, e.to_string())));
                }
            }
            self.line_no += 1;
            let line = self.buf.trim_end_matches(['\n', '\r']);
            // A UTF-8 byte-order mark is not part of the first line.
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            if line.trim().is_empty() || (self.line_no == 1 && line.starts_with("id\t")) {
                continue;
            }
            let line = line.to_string();
            return Some(self.parse(&line));
        }
    }
}

/// Documents from JSONL or TSV (chosen by extension) or a folder of images, with the line (for
/// a folder: the position) of the last one read.
pub enum DocReader {
    /// JSON lines.
    Jsonl(JsonlDocs),
    /// Tab-separated.
    Tsv(TsvDocs),
    /// A folder of images: one document per image file.
    Images(ImageFolder),
}

/// Image file extensions a folder ingest picks up (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "gif", "bmp"];

/// The documents of a folder of images: every image file under it (sub-folders included), in
/// path order; the id is the path relative to the folder without its extension (`/`-separated),
/// the metadata `{"image": relative path}`, the text empty.
pub struct ImageFolder {
    files: std::vec::IntoIter<String>,
    at: u64,
}

impl ImageFolder {
    /// The image files under `dir`, relative to it, sorted.
    pub fn list(dir: &Path) -> Result<Vec<String>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
            for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
                let entry = entry.map_err(|e| Error::io(dir, e))?;
                let path = entry.path();
                // Hidden files (macOS `._x.jpg` resource forks) are not images; symbolic links
                // to folders are not followed (a link loop would never end).
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
                if kind.is_dir() {
                    walk(root, &path, out)?;
                } else if path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
                {
                    let rel = path.strip_prefix(root).expect("under root");
                    let parts: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out)?;
        out.sort();
        // Ids are the paths without extension: each must be a valid id, and unique.
        let mut seen: HashMap<String, &String> = HashMap::new();
        for rel in &out {
            let id = Self::id_of(rel);
            crate::document::validate_id(&id).map_err(|e| {
                Error::bad_input(
                    dir.join(rel),
                    "image file name",
                    format!("{e} (the id is the path without its extension; rename the file)"),
                )
            })?;
            if let Some(other) = seen.insert(id.clone(), rel) {
                return Err(Error::bad_input(
                    dir.join(rel),
                    "image file name",
                    format!("{other} and {rel} would both get the id {id:?}; rename one"),
                ));
            }
        }
        Ok(out)
    }

    /// A file's document id: its path relative to the folder without the extension.
    fn id_of(rel: &str) -> String {
        match rel.rsplit_once('.') {
            Some((stem, _)) => stem.to_string(),
            None => rel.to_string(),
        }
    }

    fn open(dir: &Path) -> Result<Self> {
        Ok(ImageFolder {
            files: Self::list(dir)?.into_iter(),
            at: 0,
        })
    }
}

impl Iterator for ImageFolder {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        let rel = self.files.next()?;
        self.at += 1;
        let id = Self::id_of(&rel);
        let mut metadata = Map::new();
        metadata.insert("image".into(), Value::String(rel));
        Some(Ok(Document {
            id,
            text: String::new(),
            metadata,
            values: Vec::new(),
        }))
    }
}

impl DocReader {
    /// Opens `path` as TSV when it ends in `.tsv`, else as JSONL.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(if path.is_dir() {
            DocReader::Images(ImageFolder::open(path)?)
        } else if is_tsv(path) {
            DocReader::Tsv(TsvDocs::open(path)?)
        } else {
            DocReader::Jsonl(JsonlDocs::open(path)?)
        })
    }

    /// Line number of the last document returned.
    pub fn line(&self) -> u64 {
        match self {
            DocReader::Jsonl(r) => r.line(),
            DocReader::Tsv(r) => r.line_no,
            DocReader::Images(r) => r.at,
        }
    }

    /// Counts documents (non-blank lines, less a TSV header) without parsing them.
    pub fn count(path: &Path) -> Result<u64> {
        if path.is_dir() {
            return Ok(ImageFolder::list(path)?.len() as u64);
        }
        if !is_tsv(path) {
            return JsonlDocs::count(path);
        }
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut n = 0;
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            let line = if i == 0 {
                line.strip_prefix(crate::ingest::jsonl::BOM)
                    .unwrap_or(&line)
                    .to_vec()
            } else {
                line
            };
            let blank = line.iter().all(u8::is_ascii_whitespace);
            let header = i == 0 && line.starts_with(b"id\t");
            if !blank && !header {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Iterator for DocReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            DocReader::Jsonl(r) => r.next(),
            DocReader::Tsv(r) => r.next(),
            DocReader::Images(r) => r.next(),
        }
    }
}

/// The text an encoder sees for a document: `title + " " + text` when the document has a
/// non-empty `title` in its metadata (Tevatron's and DPR's convention), else its text.
pub fn text_to_encode(doc: &Document) -> std::borrow::Cow<'_, str> {
    encoded_text(&doc.text, doc.metadata.get("title").and_then(Value::as_str))
}

/// [`text_to_encode`] of a document given as its text and optional title (a stored document,
/// a passage of a training file).
pub fn encoded_text<'a>(text: &'a str, title: Option<&str>) -> std::borrow::Cow<'a, str> {
    match title {
        Some(title) if !title.trim().is_empty() => format!("{title} {text}").into(),
        _ => text.into(),
    }
}

/// One query of a query file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
}

/// Reads queries: TSV `qid<TAB>text` (by extension `.tsv`) or JSONL `{"id": ..., "text": ...}`
/// (`query_id` / `_id` and `query` are accepted too). Duplicate ids and empty texts are errors
/// that name both lines.
pub fn read_queries(path: &Path) -> Result<Vec<TextQuery>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let tsv = is_tsv(path);
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let at = |d: String| Error::bad_input(path, format!("line {line_no}"), d);
        if line.trim().is_empty() {
            continue;
        }
        let (id, q) = if tsv {
            let (id, q) = line
                .split_once('\t')
                .ok_or_else(|| at("expected qid<TAB>text, found no tab".into()))?;
            (id.to_string(), q.to_string())
        } else {
            let v: Value =
                serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
            let id = ["id", "query_id", "_id", "qid"]
                .iter()
                .find_map(|k| v.get(*k))
                .ok_or_else(|| at("missing \"id\" field".into()))?;
            let id = match id {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(at(format!(
                        "\"id\" must be a string or number, found {other}"
                    )))
                }
            };
            let q = ["text", "query"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .ok_or_else(|| at("missing \"text\" field (a string)".into()))?;
            (id, q.to_string())
        };
        if id.is_empty() {
            return Err(at("empty query id".into()));
        }
        if q.trim().is_empty() {
            return Err(at(format!("query {id:?} has no text")));
        }
        if let Some(first) = seen.insert(id.clone(), line_no) {
            return Err(at(format!(
                "duplicate query id {id:?} (first on line {first})"
            )));
        }
        out.push(TextQuery { id, text: q });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_docs_with_header_title_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.tsv");
        std::fs::write(
            &p,
            "id\ttext\ttitle\n1\tfirst text\tTitle One\n\n2\tsecond\n",
        )
        .unwrap();
        let docs: Vec<Document> = DocReader::open(&p).unwrap().map(|d| d.unwrap()).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(DocReader::count(&p).unwrap(), 2);
        assert_eq!(text_to_encode(&docs[0]), "Title One first text");
        assert_eq!(text_to_encode(&docs[1]), "second");
        std::fs::write(&p, "1\tok\n2 no tab\n").unwrap();
        let e = DocReader::open(&p)
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.tsv:line 2") && e.contains("no tab"), "{e}");
    }

    #[test]
    fn queries_tsv_and_jsonl_reject_duplicates_and_empty_text() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("q.tsv");
        std::fs::write(&p, "q1\thello world\nq2\tsecond query\n").unwrap();
        let q = read_queries(&p).unwrap();
        assert_eq!(
            q[1],
            TextQuery {
                id: "q2".into(),
                text: "second query".into()
            }
        );
        std::fs::write(&p, "q1\thello\nq2\tx\nq1\tagain\n").unwrap();
        let e = read_queries(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("duplicate query id \"q1\" (first on line 1)"),
            "{e}"
        );
        std::fs::write(&p, "q1\t  \n").unwrap();
        assert!(read_queries(&p)
            .unwrap_err()
            .to_string()
            .contains("has no text"));
        let j = t.path().join("q.jsonl");
        std::fs::write(
            &j,
            "{\"id\": 7, \"text\": \"seven\"}\n{\"_id\": \"b\", \"query\": \"bee\"}\n",
        )
        .unwrap();
        let q = read_queries(&j).unwrap();
        assert_eq!((q[0].id.as_str(), q[1].text.as_str()), ("7", "bee"));
    }
}
