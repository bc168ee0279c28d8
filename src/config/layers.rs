//! Layered TOML configuration, as the bundled binaries resolve it.
//!
//! Configuration is resolved in three layers, later ones winning: the binary's embedded
//! defaults, the user's TOML file (`--config`), and `--set key.path=value` flags (the
//! value is read as a TOML literal — `1e-6`, `true`, `"clip_cov"`, `[1, 2]` — and as a
//! plain string when it is not one). The resolved table is written to the run folder as
//! `config.toml`, so every run records exactly what it ran with.

use super::ConfigError;
use std::path::{Path, PathBuf};

/// Merges `over` into `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Parses one `key.path=value` flag.
pub fn parse_set(flag: &str) -> Result<(Vec<String>, toml::Value), ConfigError> {
    let bad = |message: &str| ConfigError::BadSet {
        flag: flag.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = flag
        .split_once('=')
        .ok_or_else(|| bad("expected key=value"))?;
    let path: Vec<String> = key
        .trim()
        .split('.')
        .map(|s| s.trim().to_string())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("empty key segment"));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    Ok((path, value))
}

/// Applies one `--set` flag to `table`, creating intermediate tables.
pub fn apply_set(table: &mut toml::Table, flag: &str) -> Result<(), ConfigError> {
    let (path, value) = parse_set(flag)?;
    let (last, parents) = path
        .split_last()
        .expect("parse_set never returns an empty path");
    let mut cursor = table;
    for part in parents {
        let entry = cursor
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::BadSet {
            flag: flag.to_string(),
            message: format!("`{part}` is not a table"),
        })?;
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// Resolves the three layers into a table.
pub fn resolve_table(
    defaults: &str,
    file: Option<&Path>,
    sets: &[String],
) -> Result<toml::Table, ConfigError> {
    let parse = |text: &str, origin: PathBuf| {
        text.parse::<toml::Table>()
            .map_err(|source| ConfigError::Toml {
                path: origin,
                source,
            })
    };
    let mut table = parse(defaults, PathBuf::from("embedded defaults"))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        merge(&mut table, parse(&text, path.to_path_buf())?);
    }
    for flag in sets {
        apply_set(&mut table, flag)?;
    }
    Ok(table)
}

/// Resolves the layers and deserialises them into the binary's config type `T`, returning
/// both (the table is what gets written to the run folder).
pub fn resolve<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    sets: &[String],
) -> Result<(T, toml::Table), ConfigError> {
    let table = resolve_table(defaults, file, sets)?;
    Ok((from_table(table.clone())?, table))
}

/// Deserialises a resolved table into the config type `T`.
pub fn from_table<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, ConfigError> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Unfit(e.message().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        name: String,
        train: Train,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Train {
        lr: f64,
        steps: u32,
        mode: String,
    }

    const DEFAULTS: &str = "name = \"demo\"\n[train]\nlr = 1e-3\nsteps = 10\nmode = \"none\"\n";

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[train]\nsteps = 50\nmode = \"kl_cov\"\n").unwrap();
        let sets = vec![
            "train.lr=5e-7".to_string(),
            "train.mode=clip_cov".to_string(),
        ];
        let (cfg, table): (Demo, _) = resolve(DEFAULTS, Some(&file), &sets).unwrap();
        assert_eq!(
            cfg,
            Demo {
                name: "demo".into(),
                train: Train {
                    lr: 5e-7,
                    steps: 50,
                    mode: "clip_cov".into()
                }
            }
        );
        assert_eq!(table["train"]["steps"].as_integer(), Some(50));
    }

    #[test]
    fn errors_name_the_flag_or_field() {
        let err = resolve::<Demo>(DEFAULTS, None, &["train.lr".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--set train.lr: expected key=value"),
            "{err}"
        );
        let err = resolve::<Demo>(DEFAULTS, None, &["name.x=1".into()]).unwrap_err();
        assert!(err.to_string().contains("`name` is not a table"), "{err}");
        let err = resolve::<Demo>(DEFAULTS, None, &["train.lrr=1".into()]).unwrap_err();
        assert!(err.to_string().contains("lrr"), "{err}");
        let err = resolve::<Demo>(DEFAULTS, None, &["train.steps=many".into()]).unwrap_err();
        assert!(matches!(err, ConfigError::Unfit(_)), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, "[train\n").unwrap();
        let err = resolve::<Demo>(DEFAULTS, Some(&file), &[]).unwrap_err();
        assert!(err.to_string().contains("broken.toml"), "{err}");
    }
}
