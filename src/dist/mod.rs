//! Data parallelism: the [`Collective`] seam, the launcher's view of the job
//! ([`Launch`]) and the gradient buckets.
//!
//! A job is `world_size` processes, each a rank, launched by `mpirun`, Slurm's `srun`
//! or `torchrun`; [`Launch::from_env`] reads rank and world from their variables. Every
//! rank runs the same program over its shard of each step's prompts and the trainer
//! meets the others only through a [`Collective`]: sums and gathers of flat tensors, a
//! broadcast and a barrier. World size 1 is [`Single`]: no process group, every
//! operation returns its input.
//!
//! Across processes the collective is MPI ([`mpi::Mpi`], OpenMPI or MPICH through the
//! `mpi` crate) and works on tensors of any device (CUDA tensors are staged through host
//! memory). Each operation first exchanges an arrival note with every peer, numbered by
//! the operation's sequence number: a rank that died or hangs is named when the wait
//! passes the timeout, and ranks that reach different operations (a bug: they run
//! different code paths) are stopped at the first one instead of deadlocking.

pub mod mpi;

use std::time::Duration;
use tch::{Kind, Tensor};

/// Errors of a collective operation or of joining the job; each names the operation
/// and the ranks involved.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// An operation did not complete within the timeout.
    #[error(
        "rank {rank}: {what} (collective #{seq}) timed out after {waited_s:.0} s: {} \
         (timeout: trainer.dist.timeout_s)",
        describe_missing(.missing)
    )]
    Timeout {
        /// This rank.
        rank: usize,
        /// The operation.
        what: String,
        /// Its sequence number.
        seq: u64,
        /// Ranks that neither arrived nor answered a roll call.
        missing: Vec<usize>,
        /// Seconds waited before the roll call.
        waited_s: f64,
    },
    /// A peer reached a different operation: the ranks diverged.
    #[error(
        "rank {rank}: at {what} (collective #{seq}) rank {peer} arrived at collective \
         #{peer_seq}: the ranks run different steps"
    )]
    Diverged {
        /// This rank.
        rank: usize,
        /// The operation.
        what: String,
        /// Its sequence number.
        seq: u64,
        /// The peer.
        peer: usize,
        /// The peer's sequence number.
        peer_seq: u64,
    },
    /// The job cannot be joined as launched.
    #[error("data-parallel launch: {0}")]
    Launch(String),
    /// A tensor cannot take part in an operation.
    #[error("{what}: {why}")]
    Tensor {
        /// The operation.
        what: String,
        /// What is wrong.
        why: String,
    },
}

fn describe_missing(missing: &[usize]) -> String {
    if missing.is_empty() {
        "every rank answered a roll call, so they wait at different operations".into()
    } else {
        format!(
            "rank(s) {missing:?} did not arrive or answer a roll call: they died, hang, or \
             are far behind"
        )
    }
}

/// How an all-reduce combines the ranks' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Elementwise sum.
    Sum,
    /// Elementwise mean (the sum divided by the world size).
    Mean,
    /// Elementwise maximum.
    Max,
}

/// The collective operations data-parallel training needs. Every rank must call the
/// same operations in the same order with tensors of the same shape and kind; `what`
/// names the operation in errors. Tensors may live on any device; results are on the
/// input's device.
pub trait Collective {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Combines `tensor` across ranks with `op`, in place.
    fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp, what: &str) -> Result<(), DistError>;
    /// Every rank's `tensor` concatenated along dimension 0 in rank order.
    fn all_gather(&self, tensor: &Tensor, what: &str) -> Result<Tensor, DistError>;
    /// Overwrites `tensor` with rank `root`'s.
    fn broadcast(&self, tensor: &mut Tensor, root: usize, what: &str) -> Result<(), DistError>;
    /// Returns once every rank has called it.
    fn barrier(&self, what: &str) -> Result<(), DistError>;
}

/// World size 1: no process group; every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce(&self, _: &mut Tensor, _: ReduceOp, _: &str) -> Result<(), DistError> {
        Ok(())
    }
    fn all_gather(&self, tensor: &Tensor, _: &str) -> Result<Tensor, DistError> {
        Ok(tensor.shallow_clone())
    }
    fn broadcast(&self, _: &mut Tensor, _: usize, _: &str) -> Result<(), DistError> {
        Ok(())
    }
    fn barrier(&self, _: &str) -> Result<(), DistError> {
        Ok(())
    }
}

/// The launcher that started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `mpirun` / `mpiexec` (OpenMPI's `OMPI_COMM_WORLD_*`, or MPICH's `PMI_*`).
    Mpirun,
    /// Slurm's `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`).
    Slurm,
    /// `torchrun` (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`).
    Torchrun,
}

/// This process's place in the job, as its launcher's environment tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Who launched it (`None`: a plain process, world size 1).
    pub launcher: Option<Launcher>,
    /// Global rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Rank on this machine (the CUDA device index).
    pub local_rank: usize,
    /// Ranks on this machine (they share its cores).
    pub local_world_size: usize,
}

impl Launch {
    /// Reads the launcher's variables (mpirun, then Slurm, then torchrun); a process no
    /// launcher started is rank 0 of 1. An unparsable variable is an error naming it.
    pub fn from_env() -> Result<Launch, DistError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (testable without a launcher).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Launch, DistError> {
        let read = |name: &str| -> Result<Option<usize>, DistError> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        DistError::Launch(format!("{name}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let schemes: [(Launcher, [&str; 4]); 4] = [
            (
                Launcher::Mpirun,
                [
                    "OMPI_COMM_WORLD_RANK",
                    "OMPI_COMM_WORLD_SIZE",
                    "OMPI_COMM_WORLD_LOCAL_RANK",
                    "OMPI_COMM_WORLD_LOCAL_SIZE",
                ],
            ),
            (
                Launcher::Mpirun,
                ["PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"],
            ),
            (
                Launcher::Slurm,
                [
                    "SLURM_PROCID",
                    "SLURM_NTASKS",
                    "SLURM_LOCALID",
                    "SLURM_NTASKS_PER_NODE",
                ],
            ),
            (
                Launcher::Torchrun,
                ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"],
            ),
        ];
        for (launcher, [rank, size, local_rank, local_size]) in schemes {
            let (Some(r), Some(w)) = (read(rank)?, read(size)?) else {
                continue;
            };
            if w == 0 || r >= w {
                return Err(DistError::Launch(format!(
                    "{rank}={r} is not below {size}={w}"
                )));
            }
            // Slurm writes SLURM_NTASKS_PER_NODE as e.g. `4` or `4(x2)`; its first
            // number is this node's count on homogeneous allocations.
            let local_w = var(local_size)
                .and_then(|v| {
                    v.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                })
                .filter(|&n| n > 0)
                .unwrap_or(1);
            return Ok(Launch {
                launcher: Some(launcher),
                rank: r,
                world_size: w,
                local_rank: read(local_rank)?.unwrap_or(0),
                local_world_size: local_w,
            });
        }
        Ok(Launch {
            launcher: None,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
        })
    }

    /// The cores this rank may use: the machine's available cores shared evenly by
    /// the ranks on it (at least 1). libtorch's threads and the code sandbox's workers
    /// are sized by it, so two ranks on a 2-core box do not oversubscribe it.
    pub fn cores_per_rank(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.local_world_size.max(1)).max(1)
    }

    /// The collective of this job: [`Single`] at world size 1, else MPI (for tensors
    /// on any device). `torchrun` starts processes that MPI cannot join, so a multi-rank
    /// `torchrun` launch is refused with the launchers that work.
    pub fn connect(&self, timeout: Duration) -> Result<Box<dyn Collective>, DistError> {
        if self.world_size == 1 {
            return Ok(Box::new(Single));
        }
        match self.launcher {
            Some(Launcher::Torchrun) => Err(DistError::Launch(format!(
                "torchrun started {} ranks, but this build's collective is MPI, which cannot \
                 join processes torchrun starts (NCCL is not built in): launch with \
                 `mpirun -n {}` or `srun --mpi=pmix`",
                self.world_size, self.world_size
            ))),
            _ => Ok(Box::new(mpi::Mpi::join(*self, timeout)?)),
        }
    }
}

/// Elements per gradient bucket: 2^24 f32 (64 MiB), the order of PyTorch DDP's 25 MiB
/// buckets scaled to fewer, larger messages (MPI's per-message cost is higher).
pub const BUCKET_ELEMENTS: i64 = 1 << 24;

/// Sums `tensors` (e.g. gradients) across ranks in place, flattened into buckets of
/// at most [`BUCKET_ELEMENTS`] elements of one kind and device: one operation per
/// bucket instead of one per tensor. A tensor larger than a bucket goes alone.
pub fn all_reduce_buckets(
    comm: &dyn Collective,
    tensors: &mut [Tensor],
    op: ReduceOp,
    what: &str,
) -> Result<(), DistError> {
    if comm.world_size() == 1 || tensors.is_empty() {
        return Ok(());
    }
    let mut start = 0;
    while start < tensors.len() {
        let (kind, device) = (tensors[start].kind(), tensors[start].device());
        let mut end = start;
        let mut elements = 0;
        while end < tensors.len()
            && tensors[end].kind() == kind
            && tensors[end].device() == device
            && (end == start || elements + tensors[end].numel() as i64 <= BUCKET_ELEMENTS)
        {
            elements += tensors[end].numel() as i64;
            end += 1;
        }
        let flat: Vec<Tensor> = tensors[start..end]
            .iter()
            .map(|t| t.detach().reshape([-1]))
            .collect();
        let mut bucket = Tensor::cat(&flat, 0);
        comm.all_reduce(&mut bucket, op, what)?;
        let mut offset = 0;
        for t in &mut tensors[start..end] {
            let n = t.numel() as i64;
            let part = bucket.narrow(0, offset, n).view_as(t);
            tch::no_grad(|| t.copy_(&part));
            offset += n;
        }
        start = end;
    }
    Ok(())
}

/// A scalar per rank, gathered: `values[r]` is rank `r`'s (f64 on the CPU).
pub fn all_gather_f64(
    comm: &dyn Collective,
    value: f64,
    what: &str,
) -> Result<Vec<f64>, DistError> {
    let t = comm.all_gather(&Tensor::from_slice(&[value]), what)?;
    Vec::<f64>::try_from(&t.to_kind(Kind::Double)).map_err(|e| DistError::Tensor {
        what: what.into(),
        why: e.to_string(),
    })
}
