//! Text → token ids with a model's Hugging Face `tokenizer.json` (the `tokenizers` crate): the
//! record's prefix prepended, lower-casing where the model asks for it, special tokens added,
//! truncation at the encoder's `max_length` and no fixed padding (vellum packs batches itself).

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::source::ModelDir;
use crate::error::{Error, Result};

/// A model's tokenizer with the encoder's text conventions.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    prefix: String,
    lower_case: bool,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` of `dir`, checked against the model's vocabulary size, truncating at
    /// `max_length` tokens.
    pub fn load(
        dir: &ModelDir,
        max_length: usize,
        vocab_size: usize,
        prefix: &str,
        lower_case: bool,
    ) -> Result<Self> {
        let path = dir.dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| dir.error(format!("tokenizer.json cannot be loaded: {e}")))?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > vocab_size {
            return Err(dir.error(format!(
                "tokenizer.json has {tokenizer_vocab} tokens but config.json's vocab_size is {vocab_size}: the tokenizer does not belong to this model"
            )));
        }
        // tokenizer.json may carry fixed padding and truncation (all-MiniLM-L6-v2's pads to
        // 128): vellum pads per batch and truncates at the encoder's max_length, as
        // sentence-transformers.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| dir.error(format!("tokenizer.json: cannot set truncation: {e}")))?;
        Ok(TextTokenizer {
            tokenizer,
            prefix: prefix.to_string(),
            lower_case,
        })
    }

    /// Token ids of one text (prefix applied, special tokens added, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenize_checked(text)?.0)
    }

    /// [`TextTokenizer::tokenize`], also saying whether the text was truncated.
    pub fn tokenize_checked(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let mut input = String::with_capacity(self.prefix.len() + text.len());
        input.push_str(&self.prefix);
        input.push_str(text);
        if self.lower_case {
            input = input.to_lowercase();
        }
        let enc = self
            .tokenizer
            .encode_fast(input.as_str(), true)
            .map_err(|e| Error::InvalidInput(format!("tokenizer failed: {e}")))?;
        Ok((enc.get_ids().to_vec(), !enc.get_overflowing().is_empty()))
    }

    /// The first token id of `text` tokenized without special tokens, prefix or truncation
    /// (`tokenizer.encode(text, add_special_tokens=False)[0]`); `None` when it has no token.
    pub fn first_piece(&self, text: &str) -> Option<u32> {
        let enc = self.tokenizer.encode_fast(text, false).ok()?;
        enc.get_ids().first().copied()
    }

    /// The id of a vocabulary token (added tokens included), `None` when it is not one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }
}
