//! Data-parallel placement: where each rank's prompts and rows sit in the single-process
//! order, the gather of a step's rows, and the same-weights check.

use super::TrainError;
use super::learner::Learner;
use crate::config::TrainConfig;
use crate::dist::{Collective, DistError};
use crate::model::ModelError;
use crate::rollout::{FinishReason, Trajectory};
use tch::{Kind, Tensor};

/// The single-process position, among a step's (or a refill round's) `prompts`
/// prompts, of rank `rank`'s `q`-th: each optimizer mini-batch's block of prompts is
/// split into equal contiguous shares in rank order, so a global mini-batch is its
/// ranks' local ones concatenated.
pub(crate) fn global_prompt(
    cfg: &TrainConfig,
    world: usize,
    rank: usize,
    q: usize,
    prompts: usize,
) -> usize {
    if world == 1 {
        return q;
    }
    let block = cfg.mini_batch_size / cfg.group_size;
    let (k, j) = (q / (block / world), q % (block / world));
    let start = k * block;
    start + rank * (block.min(prompts - start) / world) + j
}

/// A step's rows of every rank in single-process order (see [`global_batch`]).
pub(crate) struct GlobalBatch {
    pub scores: Vec<f64>,
    pub correct: Vec<bool>,
    pub lengths: Vec<usize>,
    pub truncated: Vec<bool>,
    /// Group ids (at world size 1 the rows' own; else the global prompt index).
    pub groups: Vec<usize>,
    /// The single-process position of each of this rank's rows.
    pub local: Vec<usize>,
    /// For each single-process position, its row in the rank-major gather.
    pub order: Vec<usize>,
}

/// The step's rows of every rank in single-process order: the per-row values advantages
/// and metrics need, gathered, with where this rank's rows sit. `rows` must be scored.
pub(crate) fn global_batch(l: &Learner, rows: &[Trajectory]) -> Result<GlobalBatch, TrainError> {
    let (world, g, n) = (l.comm.world_size(), l.cfg.group_size, rows.len());
    // Rank `r`'s row `i`: its single-process position and group.
    let place = |r: usize, i: usize| -> (usize, usize) {
        if world == 1 {
            return (i, rows[i].group);
        }
        let prompt = global_prompt(&l.cfg, world, r, i / g, n * world / g);
        (prompt * g + i % g, prompt)
    };
    let mut table = Vec::with_capacity(n * 4);
    for r in rows {
        let score = r
            .score
            .as_ref()
            .expect("the experience stage scores every trajectory");
        table.extend([
            score.reward,
            score.correct as u8 as f64,
            r.response().len() as f64,
            (r.finish == FinishReason::Length) as u8 as f64,
        ]);
    }
    let all = l.comm.all_gather(
        &Tensor::from_slice(&table).view([n as i64, 4]),
        "gathering rewards",
    )?;
    let all = Vec::<f64>::try_from(&all.reshape([-1])).map_err(ModelError::Torch)?;
    let total = n * world;
    let mut batch = GlobalBatch {
        scores: vec![0.0; total],
        correct: vec![false; total],
        lengths: vec![0; total],
        truncated: vec![false; total],
        groups: vec![0; total],
        local: (0..n).map(|i| place(l.comm.rank(), i).0).collect(),
        order: vec![0; total],
    };
    for r in 0..world {
        for i in 0..n {
            let (pos, group) = place(r, i);
            let v = &all[(r * n + i) * 4..(r * n + i + 1) * 4];
            batch.scores[pos] = v[0];
            batch.correct[pos] = v[1] != 0.0;
            batch.lengths[pos] = v[2] as usize;
            batch.truncated[pos] = v[3] != 0.0;
            batch.groups[pos] = group;
            batch.order[pos] = r * n + i;
        }
    }
    Ok(batch)
}

/// Every rank's `[rows, T]` tensor in single-process row order (this rank's own at
/// world size 1).
pub(crate) fn gather_rows(
    comm: &dyn Collective,
    x: &Tensor,
    order: &Tensor,
    what: &str,
) -> Result<Tensor, TrainError> {
    if comm.world_size() == 1 {
        return Ok(x.shallow_clone());
    }
    Ok(comm.all_gather(x, what)?.index_select(0, order))
}

/// Fails unless every rank holds the same trainable parameters `params` (per tensor,
/// the f64 sums of its values and of their squares, gathered and compared bitwise):
/// ranks that load different weights would silently train different models. The sums
/// reduce on the tensor's device without an f64 copy of the weights.
pub(crate) fn check_same_weights(
    comm: &dyn Collective,
    params: &[(String, Tensor)],
    what: &str,
) -> Result<(), TrainError> {
    let world = comm.world_size();
    if world == 1 {
        return Ok(());
    }
    let prints: Vec<f64> = params
        .iter()
        .flat_map(|(_, t)| {
            let t = t.detach();
            [t.sum(Kind::Double), t.square().sum(Kind::Double)].map(|s| s.double_value(&[]))
        })
        .collect();
    let all = comm.all_gather(&Tensor::from_slice(&prints), "comparing parameters")?;
    let all = Vec::<f64>::try_from(&all).map_err(ModelError::Torch)?;
    let n = prints.len();
    for rank in 1..world {
        if let Some(i) = (0..n).find(|&i| all[rank * n + i].to_bits() != all[i].to_bits()) {
            return Err(DistError::Launch(format!(
                "{what}: rank {rank}'s `{}` differs from rank 0's (do all ranks load the same \
                 model and checkpoint?)",
                params[i / 2].0
            ))
            .into());
        }
    }
    Ok(())
}

/// Checks trajectories given to `Trainer::learn`: each one's task indexes the dataset
/// (`n_tasks` examples) and its lengths agree; data-parallel, they are this rank's share
/// as `Trainer::step` lays it out (`prompts_per_step / world` whole groups, trajectory
/// `i` in group `i / group_size`).
pub(crate) fn check_share(
    cfg: &TrainConfig,
    world: usize,
    n_tasks: usize,
    trajectories: &[Trajectory],
) -> Result<(), TrainError> {
    let (g, share) = (cfg.group_size, cfg.prompts_per_step / world);
    if world > 1 && trajectories.len() != share * g {
        return Err(TrainError::Batch {
            index: trajectories.len(),
            why: format!(
                "{} trajectories, but this rank's share of a step is {share} groups of {g}",
                trajectories.len()
            ),
        });
    }
    for (index, t) in trajectories.iter().enumerate() {
        let why = if world > 1 && t.group != index / g {
            Some(format!(
                "group {}, but it lies in group {}",
                t.group,
                index / g
            ))
        } else if t.task >= n_tasks {
            Some(format!("task {} of {n_tasks}", t.task))
        } else {
            t.check().err()
        };
        if let Some(why) = why {
            return Err(TrainError::Batch { index, why });
        }
    }
    Ok(())
}
