//! Where parameters come from: a memory-mapped safetensors checkpoint (single file or
//! sharded with `model.safetensors.index.json`) or a seeded random initialisation; and
//! the Hugging Face folder loader ([`super::hf`]).
//!
//! Loading memory-maps every file and converts one tensor at a time into the target
//! dtype and device, so peak memory is the model plus one tensor (the mapped file
//! pages are shared page cache, not a second copy).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype as StDtype, Metadata, SafeTensors};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::ModelError;

/// How a parameter is initialised when it is not read from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with the source's standard deviation (weights, embeddings).
    Normal,
    /// All ones (RMSNorm weights).
    Ones,
    /// All zeros (biases).
    Zeros,
}

/// A provider of named parameters (Hugging Face names).
pub trait WeightSource {
    /// The tensor called `name` with exactly `shape`, as `kind` on `device`.
    fn tensor(
        &mut self,
        name: &str,
        shape: &[i64],
        init: Init,
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError>;
}

/// Seeded random initialisation (transformers' scheme: normal(0, std) weights, unit
/// norms, zero biases), drawn on the CPU with ChaCha8 so it is the same on every
/// machine and independent of libtorch's global generator.
#[derive(Debug)]
pub struct RandomInit {
    rng: ChaCha8Rng,
    std: f64,
}

impl RandomInit {
    /// A source drawing from `seed` with standard deviation `std` (transformers: 0.02).
    pub fn new(seed: u64, std: f64) -> Self {
        RandomInit {
            rng: ChaCha8Rng::seed_from_u64(seed),
            std,
        }
    }
}

impl WeightSource for RandomInit {
    fn tensor(
        &mut self,
        _name: &str,
        shape: &[i64],
        init: Init,
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let t = match init {
            Init::Ones => Tensor::f_ones(shape, (Kind::Float, Device::Cpu))?,
            Init::Zeros => Tensor::f_zeros(shape, (Kind::Float, Device::Cpu))?,
            Init::Normal => {
                let n: i64 = shape.iter().product();
                let vals: Vec<f32> = (0..n)
                    .map(|_| {
                        // Box–Muller: u1 in (0, 1], u2 in [0, 1).
                        let u1: f64 = 1.0 - self.rng.random::<f64>();
                        let u2: f64 = self.rng.random::<f64>();
                        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                        (z * self.std) as f32
                    })
                    .collect();
                Tensor::from_slice(&vals).f_view(shape)?
            }
        };
        Ok(t.f_to_kind(kind)?.f_to_device(device)?)
    }
}

/// One memory-mapped safetensors file and its parsed header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

/// Parameters read from safetensors files through memory maps.
pub struct SafetensorsSource {
    files: Vec<MappedFile>,
    /// Tensor name → index into `files`.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.files.iter().map(|m| &m.path).collect();
        f.debug_struct("SafetensorsSource")
            .field("files", &paths)
            .finish()
    }
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors`, or the shards listed in
    /// `dir/model.safetensors.index.json` (`weight_map`).
    pub fn open_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if index_path.exists() {
            let text = read(&index_path)?;
            let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
                path: index_path.clone(),
                source: e,
            })?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| ModelError::Field {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    message: "missing or not an object".into(),
                })?;
            let mut shard_ids: HashMap<String, usize> = HashMap::new();
            let mut files = Vec::new();
            let mut index = HashMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| ModelError::Field {
                    path: index_path.clone(),
                    field: format!("weight_map.{name}"),
                    message: "not a file name".into(),
                })?;
                let id = match shard_ids.get(file) {
                    Some(&id) => id,
                    None => {
                        files.push(map_file(&dir.join(file))?);
                        shard_ids.insert(file.to_string(), files.len() - 1);
                        files.len() - 1
                    }
                };
                index.insert(name.clone(), id);
            }
            Ok(SafetensorsSource { files, index })
        } else if single.exists() {
            let f = map_file(&single)?;
            let index = f.metadata.tensors().into_keys().map(|k| (k, 0)).collect();
            Ok(SafetensorsSource {
                files: vec![f],
                index,
            })
        } else {
            Err(ModelError::MissingFile {
                path: single,
                what: "model weights (or model.safetensors.index.json for a sharded checkpoint)"
                    .into(),
            })
        }
    }
}

fn map_file(path: &Path) -> Result<MappedFile, ModelError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    // SAFETY: the checkpoint is opened read-only; like every safetensors loader we
    // assume it is not truncated by another process while mapped.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&mmap[..]).map_err(|e| ModelError::Tensor {
            path: path.to_path_buf(),
            tensor: "<header>".into(),
            message: e.to_string(),
        })?;
    Ok(MappedFile {
        path: path.to_path_buf(),
        mmap,
        header_len,
        metadata,
    })
}

impl WeightSource for SafetensorsSource {
    fn tensor(
        &mut self,
        name: &str,
        shape: &[i64],
        _init: Init,
        kind: Kind,
        device: Device,
    ) -> Result<Tensor, ModelError> {
        let Some(&id) = self.index.get(name) else {
            let path = self
                .files
                .first()
                .map(|f| f.path.clone())
                .unwrap_or_default();
            return Err(ModelError::Tensor {
                path,
                tensor: name.into(),
                message: "missing from the checkpoint".into(),
            });
        };
        let f = &self.files[id];
        let err = |message: String| ModelError::Tensor {
            path: f.path.clone(),
            tensor: name.into(),
            message,
        };
        let info = f
            .metadata
            .info(name)
            .ok_or_else(|| err("listed in the index but absent from this shard".into()))?;
        let got: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        if got != shape {
            return Err(err(format!(
                "shape mismatch: file has {got:?}, config.json implies {shape:?}"
            )));
        }
        let src_kind = match info.dtype {
            StDtype::F32 => Kind::Float,
            StDtype::F16 => Kind::Half,
            StDtype::BF16 => Kind::BFloat16,
            StDtype::F64 => Kind::Double,
            other => return Err(err(format!("unsupported dtype {other:?}"))),
        };
        let (start, end) = info.data_offsets;
        let base = 8 + f.header_len;
        let bytes = f
            .mmap
            .get(base + start..base + end)
            .ok_or_else(|| err("data offsets lie outside the file".into()))?;
        let t = Tensor::f_from_data_size(bytes, shape, src_kind)?;
        Ok(t.f_to_kind(kind)?.f_to_device(device)?)
    }
}

pub(super) fn io_err(path: &Path, e: std::io::Error) -> ModelError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ModelError::MissingFile {
            path: path.to_path_buf(),
            what: "file not found".into(),
        }
    } else {
        ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

pub(super) fn read(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

pub(super) fn read_json(path: &Path) -> Result<Value, ModelError> {
    serde_json::from_str(&read(path)?).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}
