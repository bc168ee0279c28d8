//! A Hugging Face folder as a [`Policy`]: `config.json`, the safetensors weights,
//! `tokenizer.json`, the chat template and the EOS / pad rules (behind
//! [`Policy::from_hf_dir`]).

use std::path::Path;

use serde_json::Value;
use tch::Device;
use tokenizers::Tokenizer;

use super::chat::ChatTemplate;
use super::config::Qwen2Config;
use super::qwen2::Qwen2;
use super::weights::{SafetensorsSource, read, read_json};
use super::{Dtype, ModelError, Policy};

/// `eos_token_id` as an int or a list of ints; `None` when absent or null.
fn ids_field(v: &Value, path: &Path, field: &str) -> Result<Option<Vec<i64>>, ModelError> {
    let bad = || ModelError::Field {
        path: path.to_path_buf(),
        field: field.into(),
        message: "must be an integer or a list of integers".into(),
    };
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(vec![n.as_i64().ok_or_else(bad)?])),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_i64().ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// A special token of `tokenizer_config.json` (`eos_token`, `pad_token`, ...): a string
/// or an `AddedToken` object with `content`.
fn token_field(v: &Value, field: &str) -> Option<String> {
    match v.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Loads a Hugging Face folder into a [`Policy`]; see [`Policy::from_hf_dir`].
pub(crate) fn load_policy(dir: &Path, dtype: Dtype, device: Device) -> Result<Policy, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::MissingFile {
            path: dir.to_path_buf(),
            what: "checkpoint folder".into(),
        });
    }
    let config_path = dir.join("config.json");
    let config = Qwen2Config::from_file(&config_path)?;
    let raw_config = read_json(&config_path)?;

    let tok_path = dir.join("tokenizer.json");
    if !tok_path.exists() {
        return Err(ModelError::MissingFile {
            path: tok_path,
            what: "the tokenizer".into(),
        });
    }
    let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| ModelError::Tokenizer {
        path: tok_path.clone(),
        message: e.to_string(),
    })?;
    let token_id = |s: &str| tokenizer.token_to_id(s).map(i64::from);

    let tc_path = dir.join("tokenizer_config.json");
    let tok_cfg = if tc_path.exists() {
        Some(read_json(&tc_path)?)
    } else {
        None
    };
    // transformers >= 4.47 saves the template to chat_template.jinja, which wins over
    // tokenizer_config.json's `chat_template`.
    let jinja_path = dir.join("chat_template.jinja");
    let chat_template = if jinja_path.exists() {
        let specials = tok_cfg
            .as_ref()
            .map(ChatTemplate::specials)
            .unwrap_or_default();
        Some(ChatTemplate::new(
            &read(&jinja_path)?,
            specials,
            &jinja_path,
        )?)
    } else {
        match &tok_cfg {
            Some(tc) => ChatTemplate::from_tokenizer_config(tc, &tc_path)?,
            None => None,
        }
    };

    let gen_path = dir.join("generation_config.json");
    let gen_cfg = if gen_path.exists() {
        Some(read_json(&gen_path)?)
    } else {
        None
    };
    let mut eos = match &gen_cfg {
        Some(g) => ids_field(g, &gen_path, "eos_token_id")?,
        None => None,
    };
    if eos.is_none() {
        eos = ids_field(&raw_config, &config_path, "eos_token_id")?;
    }
    if eos.is_none() {
        eos = tok_cfg
            .as_ref()
            .and_then(|tc| token_field(tc, "eos_token"))
            .and_then(|s| token_id(&s))
            .map(|i| vec![i]);
    }
    let eos_token_ids = eos.ok_or_else(|| ModelError::Field {
        path: gen_path.clone(),
        field: "eos_token_id".into(),
        message: "no EOS id in generation_config.json, config.json or tokenizer_config.json".into(),
    })?;
    for &id in &eos_token_ids {
        if id < 0 || id >= config.vocab_size {
            return Err(ModelError::Field {
                path: gen_path.clone(),
                field: "eos_token_id".into(),
                message: format!(
                    "{id} lies outside the vocabulary (vocab_size {})",
                    config.vocab_size
                ),
            });
        }
    }
    let pad_token_id = match &gen_cfg {
        Some(g) => ids_field(g, &gen_path, "pad_token_id")?.and_then(|v| v.first().copied()),
        None => None,
    }
    .or_else(|| {
        tok_cfg
            .as_ref()
            .and_then(|tc| token_field(tc, "pad_token"))
            .and_then(|s| token_id(&s))
    })
    .unwrap_or(eos_token_ids[0]);

    let mut src = SafetensorsSource::open_dir(dir)?;
    let model = Qwen2::new(&config, &mut src, dtype.kind(), device)?;
    Ok(Policy {
        model: Box::new(model),
        tokenizer,
        eos_token_ids,
        pad_token_id,
        chat_template,
        config,
        source: dir.to_path_buf(),
    })
}
