//! Garbage collection: removes every file of vellum's naming that the committed manifest (live
//! segments and the encoder versions it retains) and the writer's own spilled, uncommitted
//! segments do not reference, and index builds' temporary files a crash left in collection
//! directories. Only those names are touched, so stray user files survive.

use std::collections::BTreeSet;
use std::path::Path;

use super::Writer;
use crate::encode::EMBEDDED_MODELS_DIR;
use crate::error::Result;
use crate::format::manifest;
use crate::storage::tmp_name;

impl Writer {
    /// Deletes segment and tombstone files the committed manifest does not reference, and stale
    /// temporary files.
    pub(super) fn collect_garbage(&self) -> Result<()> {
        self.dir.remove(&tmp_name(Path::new(manifest::FILE_NAME)))?;
        let m = self.base.manifest();
        for c in &m.collections {
            let cdir = Path::new(&c.name);
            let mut keep: BTreeSet<String> = BTreeSet::new();
            let retained = [&c.versions.staged, &c.versions.previous]
                .into_iter()
                .flatten()
                .flat_map(|v| v.segments.iter());
            for s in c.segments.iter().chain(retained) {
                keep.insert(manifest::segment_file_name(s.id));
                if let Some(d) = s.deletes {
                    keep.insert(manifest::deletes_file_name(s.id, d.file_id));
                }
            }
            // Files of this writer's flushed but uncommitted segments must survive.
            if let Some(p) = self.pending.get(&c.name) {
                keep.extend(
                    p.flushed
                        .iter()
                        .map(|(e, _)| manifest::segment_file_name(e.id)),
                );
            }
            let Some(names) = self.dir.list(cdir)? else {
                continue;
            };
            for name in names {
                let ours = name.starts_with("seg-")
                    && (name.ends_with(".vseg") || name.ends_with(".vdel"));
                if (ours && !keep.contains(&name)) || is_stale_spill_file(&name) {
                    self.dir.remove(&cdir.join(&name))?;
                }
            }
        }
        self.collect_models()
    }

    /// Removes embedded model copies no record references (complete copies whose commit never
    /// came, and interrupted copies `*.tmp`), keeping those bound in this writer's batch.
    fn collect_models(&self) -> Result<()> {
        let models = Path::new(EMBEDDED_MODELS_DIR);
        let Some(names) = self.dir.list(models)? else {
            return Ok(());
        };
        let mut keep = self.base.manifest().embedded_models();
        for e in self.encoder_changes.values() {
            for r in [&e.passage, &e.query] {
                if r.embedded {
                    keep.insert(r.fingerprint_hex().to_string());
                }
            }
        }
        for name in names {
            if crate::encode::is_model_dir_name(&name) && !keep.contains(&name) {
                self.dir.remove_dir_all(&models.join(&name))?;
            }
        }
        Ok(())
    }
}

/// Whether `name` is a build's temporary file (`storage::SpillBuffer`, named by `tempfile` where
/// the OS gives it a name: `.tmp` and 6 letters or digits) left by a crash: no build runs while
/// the writer collects garbage, and only a writer builds.
fn is_stale_spill_file(name: &str) -> bool {
    name.strip_prefix(".tmp")
        .is_some_and(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::is_stale_spill_file;

    #[test]
    fn only_tempfile_names_count_as_stale_spill_files() {
        assert!(is_stale_spill_file(".tmpAb3xY9"));
        for name in [
            ".tmp",
            ".tmpAb3xY",
            ".tmpAb3xY9z",
            "MANIFEST.tmp",
            ".tmp-ab3xy",
            "seg-1.vseg",
        ] {
            assert!(!is_stale_spill_file(name), "{name}");
        }
    }
}
