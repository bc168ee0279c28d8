//! The MPI [`Collective`]: OpenMPI (or any MPI) through the `mpi` crate.
//!
//! Data moves as contiguous host buffers: f32 for floating tensors (bf16 / f16 are
//! widened, so sums do not round at every hop), f64 as is, i64 for integer and boolean
//! tensors. CUDA tensors are copied to the host and back; on GPUs NCCL would avoid the
//! copies (see the README's data-parallel section).
//!
//! Before every operation each rank sends every peer an arrival note (the operation's
//! sequence number and element count) and waits for theirs; a mismatch (a peer at
//! another operation, or sending another size) is [`DistError::Diverged`] /
//! [`DistError::Tensor`] before any data moves. The data then moves by MPI's
//! non-blocking collectives. Every wait polls under `trainer.dist.timeout_s`, where a
//! blocking MPI call would wait forever on a hung peer. On timeout the rank holds a
//! roll call: peers that are waiting too answer it (their poll loops do), and the
//! [`DistError::Timeout`] names those that do not: dead, stopped, or stuck in their
//! own work.

use super::{Collective, DistError, Launch, ReduceOp};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, Source};
use mpi::topology::{Communicator, Process, SimpleCommunicator};
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// The tag of arrival notes (collectives never match point-to-point messages).
const ARRIVAL_TAG: i32 = 0x636F;
/// The tags of a roll call after a timeout, and of its answers.
const ROLL_CALL_TAG: i32 = 0x636F + 1;
const PRESENT_TAG: i32 = 0x636F + 2;
/// How long a roll call waits for answers.
const ROLL_CALL_GRACE: Duration = Duration::from_secs(5);

/// An MPI process group over `MPI_COMM_WORLD` (see the module docs). Dropping it
/// finalizes MPI, unless an operation failed: finalizing waits for every peer, which a
/// hung one never answers, so the process then leaves without it (the launcher stops
/// the job when a rank exits unfinalized).
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    timeout: Duration,
    seq: Cell<u64>,
    failed: Cell<bool>,
    universe: ManuallyDrop<Universe>,
}

impl Drop for Mpi {
    fn drop(&mut self) {
        if !self.failed.get() {
            // SAFETY: dropped once, here; never used after.
            unsafe { ManuallyDrop::drop(&mut self.universe) };
        }
    }
}

impl Mpi {
    /// Initializes MPI and checks that its world is the one `launch` describes (a
    /// process started by `torchrun` or by hand is an MPI world of its own), then
    /// waits up to `timeout` for every rank to arrive.
    pub fn join(launch: Launch, timeout: Duration) -> Result<Mpi, DistError> {
        let universe = mpi::initialize().ok_or_else(|| {
            DistError::Launch("MPI is already initialized in this process".into())
        })?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if (rank, size) != (launch.rank, launch.world_size) {
            return Err(DistError::Launch(format!(
                "the launcher's environment says rank {} of {}, but MPI's world is rank {rank} \
                 of {size}: these processes were not started by an MPI launcher (use `mpirun \
                 -n N` or `srun --mpi=pmix`)",
                launch.rank, launch.world_size
            )));
        }
        let comm = Mpi {
            world,
            rank,
            size,
            timeout,
            seq: Cell::new(0),
            failed: Cell::new(false),
            universe: ManuallyDrop::new(universe),
        };
        comm.arrive("joining the job", 0)?;
        Ok(comm)
    }

    fn peers(&self) -> Vec<usize> {
        (0..self.size).filter(|&p| p != self.rank).collect()
    }

    /// Sends every peer this operation's note and waits for theirs (see the module
    /// docs). A timeout or divergence marks the group failed (see [`Mpi`]); a size
    /// mismatch does not, since every rank sees it at the same operation and no data
    /// moved.
    fn arrive(&self, what: &str, elements: usize) -> Result<(), DistError> {
        match self.exchange_notes(what, elements) {
            Err(e @ DistError::Tensor { .. }) => Err(e),
            outcome => self.fail_on(outcome),
        }
    }

    fn fail_on<T>(&self, outcome: Result<T, DistError>) -> Result<T, DistError> {
        self.failed.set(self.failed.get() || outcome.is_err());
        outcome
    }

    fn exchange_notes(&self, what: &str, elements: usize) -> Result<(), DistError> {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let note = [seq, elements as u64];
        let peers = self.peers();
        for &p in &peers {
            // Two words: sent eagerly, so this returns even if the peer is stuck.
            self.world
                .process_at_rank(p as i32)
                .send_with_tag(&note[..], ARRIVAL_TAG);
        }
        let mut notes = vec![[0u64; 2]; peers.len()];
        let start = Instant::now();
        let arrived = mpi::request::scope(|scope| {
            let mut pending: Vec<_> = peers
                .iter()
                .zip(notes.iter_mut())
                .map(|(&p, buf)| {
                    let req = self
                        .world
                        .process_at_rank(p as i32)
                        .immediate_receive_into_with_tag(scope, &mut buf[..], ARRIVAL_TAG);
                    Some((p, req))
                })
                .collect();
            let done = self.poll_until_deadline(start, || {
                for slot in pending.iter_mut() {
                    if let Some((p, req)) = slot.take() {
                        *slot = req.test().err().map(|req| (p, req));
                    }
                }
                pending.iter().all(Option::is_none)
            });
            // Late notes are cancelled, so the scope ends with no request open.
            for (_, req) in pending.into_iter().flatten() {
                req.cancel();
                req.wait();
            }
            done
        });
        if !arrived {
            // Who never sent a note, and of those who did, who stopped answering.
            let waited = start.elapsed();
            let silent = self.roll_call();
            let missing: Vec<usize> = peers
                .iter()
                .zip(&notes)
                .filter(|(p, n)| n[0] != seq || silent.contains(p))
                .map(|(&p, _)| p)
                .collect();
            return Err(self.timeout_error(what, seq, missing, waited));
        }
        for (&peer, &[peer_seq, peer_elements]) in peers.iter().zip(&notes) {
            if peer_seq != seq {
                return Err(DistError::Diverged {
                    rank: self.rank,
                    what: what.into(),
                    seq,
                    peer,
                    peer_seq,
                });
            }
            if peer_elements != elements as u64 {
                return Err(DistError::Tensor {
                    what: what.into(),
                    why: format!(
                        "rank {peer} has {peer_elements} elements, rank {} has {elements}",
                        self.rank
                    ),
                });
            }
        }
        Ok(())
    }

    /// Calls `done` until it is true (`true`) or `self.timeout` has passed since
    /// `start` (`false`), answering peers' roll calls meanwhile. Spins briefly (peers
    /// usually arrive together), then sleeps between polls to leave the core free.
    fn poll_until_deadline(&self, start: Instant, mut done: impl FnMut() -> bool) -> bool {
        let mut polls = 0u32;
        loop {
            if done() {
                return true;
            }
            self.answer_roll_calls();
            if start.elapsed() >= self.timeout {
                return false;
            }
            polls = polls.saturating_add(1);
            if polls < 2_000 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Receives every one-word message with `tag` that has come, handing `each` its
    /// sender and the word.
    fn drain(&self, tag: i32, mut each: impl FnMut(Process<'_>, u64)) {
        while let Some(status) = self.world.any_process().immediate_probe_with_tag(tag) {
            let sender = self.world.process_at_rank(status.source_rank());
            let (word, _): (u64, _) = sender.receive_with_tag(tag);
            each(sender, word);
        }
    }

    /// Answers every roll call that has come (see [`Mpi::roll_call`]).
    fn answer_roll_calls(&self) {
        self.drain(ROLL_CALL_TAG, |caller, _| {
            caller.send_with_tag(&(self.rank as u64), PRESENT_TAG)
        });
    }

    /// After a timeout: asks every peer to answer and returns those that do not
    /// within [`ROLL_CALL_GRACE`]. A peer waiting in any operation answers (its poll
    /// loop does); one that died, is stopped or is stuck in its own work does not.
    fn roll_call(&self) -> Vec<usize> {
        let peers = self.peers();
        for &p in &peers {
            self.world
                .process_at_rank(p as i32)
                .send_with_tag(&self.seq.get(), ROLL_CALL_TAG);
        }
        let mut answered = vec![false; self.size];
        let start = Instant::now();
        while start.elapsed() < ROLL_CALL_GRACE && peers.iter().any(|&p| !answered[p]) {
            self.answer_roll_calls();
            self.drain(PRESENT_TAG, |_, rank| answered[rank as usize] = true);
            std::thread::sleep(Duration::from_millis(1));
        }
        peers.into_iter().filter(|&p| !answered[p]).collect()
    }

    fn timeout_error(
        &self,
        what: &str,
        seq: u64,
        missing: Vec<usize>,
        waited: Duration,
    ) -> DistError {
        DistError::Timeout {
            rank: self.rank,
            what: what.into(),
            seq,
            missing,
            waited_s: waited.as_secs_f64(),
        }
    }

    /// Waits for a non-blocking collective `request` under the deadline. On timeout
    /// the request is abandoned (MPI cannot cancel a collective; the caller leaks its
    /// buffers, which MPI may still write), the group is marked failed, and the error
    /// names the peers that do not answer a roll call.
    fn complete<'a, D: ?Sized, S: mpi::request::Scope<'a>>(
        &self,
        what: &str,
        request: mpi::request::Request<'a, D, S>,
    ) -> Result<(), DistError> {
        let start = Instant::now();
        let mut pending = Some(request);
        let done = self.poll_until_deadline(start, || match pending.take() {
            Some(req) => match req.test() {
                Ok(_) => true,
                Err(req) => {
                    pending = Some(req);
                    false
                }
            },
            None => true,
        });
        if done {
            return Ok(());
        }
        if let Some(req) = pending {
            // SAFETY: the raw request is never completed and the caller leaks its
            // buffers, so MPI can only ever write live memory.
            let _ = unsafe { req.into_raw() };
        }
        let waited = start.elapsed();
        let silent = self.roll_call();
        self.fail_on(Err(self.timeout_error(
            what,
            self.seq.get(),
            silent,
            waited,
        )))
    }
}

/// The host buffer a tensor travels in: its values as `T`.
fn host_values<T: tch::kind::Element + Default + Clone>(
    tensor: &Tensor,
    kind: Kind,
    what: &str,
) -> Result<Vec<T>, DistError> {
    let flat = tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(kind)
        .contiguous()
        .reshape([-1]);
    let n = flat.numel();
    let mut values = vec![T::default(); n];
    flat.f_copy_data(&mut values, n)
        .map_err(|e| DistError::Tensor {
            what: what.into(),
            why: e.to_string(),
        })?;
    Ok(values)
}

/// The kind a tensor of `kind` travels as: f32 for floating kinds, f64 as is, i64 for
/// integers and booleans.
fn wire_kind(kind: Kind) -> Kind {
    match kind {
        Kind::Double => Kind::Double,
        Kind::Float | Kind::BFloat16 | Kind::Half => Kind::Float,
        _ => Kind::Int64,
    }
}

/// `values` as a tensor of `shape`, `kind` and `device`.
fn from_host<T: tch::kind::Element>(
    values: &[T],
    shape: &[i64],
    kind: Kind,
    device: Device,
) -> Tensor {
    Tensor::from_slice(values)
        .view(shape)
        .to_kind(kind)
        .to_device(device)
}

impl Mpi {
    fn reduce_as<T>(&self, tensor: &mut Tensor, op: ReduceOp, what: &str) -> Result<(), DistError>
    where
        T: tch::kind::Element + Equivalence + Default + Clone,
    {
        let send: Vec<T> = host_values(tensor, wire_kind(tensor.kind()), what)?;
        let mut recv = vec![T::default(); send.len()];
        let combine = match op {
            ReduceOp::Sum | ReduceOp::Mean => SystemOperation::sum(),
            ReduceOp::Max => SystemOperation::max(),
        };
        let outcome = mpi::request::scope(|scope| {
            let req =
                self.world
                    .immediate_all_reduce_into(scope, &send[..], &mut recv[..], combine);
            self.complete(what, req)
        });
        if let Err(e) = outcome {
            std::mem::forget((send, recv));
            return Err(e);
        }
        let mut out = from_host(
            &recv,
            &tensor.size(),
            wire_kind(tensor.kind()),
            tensor.device(),
        );
        if op == ReduceOp::Mean {
            // In f64: integer tensors cannot be divided in place (the copy truncates).
            out = out.to_kind(Kind::Double) / self.size as f64;
        }
        tch::no_grad(|| tensor.copy_(&out));
        Ok(())
    }

    fn gather_as<T>(&self, tensor: &Tensor, what: &str) -> Result<Tensor, DistError>
    where
        T: tch::kind::Element + Equivalence + Default + Clone,
    {
        let send: Vec<T> = host_values(tensor, wire_kind(tensor.kind()), what)?;
        let mut recv = vec![T::default(); send.len() * self.size];
        let outcome = mpi::request::scope(|scope| {
            let req = self
                .world
                .immediate_all_gather_into(scope, &send[..], &mut recv[..]);
            self.complete(what, req)
        });
        if let Err(e) = outcome {
            std::mem::forget((send, recv));
            return Err(e);
        }
        let mut shape = tensor.size();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] *= self.size as i64;
        Ok(from_host(&recv, &shape, tensor.kind(), tensor.device()))
    }

    fn broadcast_as<T>(&self, tensor: &mut Tensor, root: usize, what: &str) -> Result<(), DistError>
    where
        T: tch::kind::Element + Equivalence + Default + Clone,
    {
        let mut buf: Vec<T> = host_values(tensor, wire_kind(tensor.kind()), what)?;
        let outcome = mpi::request::scope(|scope| {
            let req = self
                .world
                .process_at_rank(root as i32)
                .immediate_broadcast_into(scope, &mut buf[..]);
            self.complete(what, req)
        });
        if let Err(e) = outcome {
            std::mem::forget(buf);
            return Err(e);
        }
        let out = from_host(&buf, &tensor.size(), tensor.kind(), tensor.device());
        tch::no_grad(|| tensor.copy_(&out));
        Ok(())
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp, what: &str) -> Result<(), DistError> {
        self.arrive(what, tensor.numel())?;
        match wire_kind(tensor.kind()) {
            Kind::Double => self.reduce_as::<f64>(tensor, op, what),
            Kind::Float => self.reduce_as::<f32>(tensor, op, what),
            _ => self.reduce_as::<i64>(tensor, op, what),
        }
    }

    fn all_gather(&self, tensor: &Tensor, what: &str) -> Result<Tensor, DistError> {
        self.arrive(what, tensor.numel())?;
        match wire_kind(tensor.kind()) {
            Kind::Double => self.gather_as::<f64>(tensor, what),
            Kind::Float => self.gather_as::<f32>(tensor, what),
            _ => self.gather_as::<i64>(tensor, what),
        }
    }

    fn broadcast(&self, tensor: &mut Tensor, root: usize, what: &str) -> Result<(), DistError> {
        if root >= self.size {
            return Err(DistError::Tensor {
                what: what.into(),
                why: format!("root {root} is not a rank of {}", self.size),
            });
        }
        self.arrive(what, tensor.numel())?;
        match wire_kind(tensor.kind()) {
            Kind::Double => self.broadcast_as::<f64>(tensor, root, what),
            Kind::Float => self.broadcast_as::<f32>(tensor, root, what),
            _ => self.broadcast_as::<i64>(tensor, root, what),
        }
    }

    fn barrier(&self, what: &str) -> Result<(), DistError> {
        // Every peer's note has come: every rank has reached this point.
        self.arrive(what, 0)
    }
}
