//! The sandbox: one wasmtime engine, one pre-linked Python runtime, and a fresh
//! instance for every execution.
//!
//! Isolation comes from what the guest is *not* given: no preopened directories (so no
//! file system at all), no environment variables, no arguments but the program, every
//! socket address denied, stdin from memory and stdout/stderr into capped memory pipes.
//! Limits are enforced by the host: an epoch deadline (wall clock), a memory cap through a
//! [`ResourceLimiter`], an 8 MiB wasm stack, and the pipes' capacities. Every execution
//! runs in its own [`Store`], so nothing a program does survives it.

use super::CodeError;
use crate::runtime::{self, PYTHON_312_PREVIEW1};
use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::component::{self, Component, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, OptLevel, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// File name of the pre-initialised CPython component that `scripts/setup.sh` builds
/// from `verifiers/guest/` with componentize-py.
pub const COMPONENT_FILE: &str = "cove-sandbox.wasm";

/// Suffix of the file written next to the component at build time holding its SHA-256.
pub const COMPONENT_HASH_SUFFIX: &str = ".sha256";

/// The guest driver, run by the preview1 fallback through `python -c`.
const GUEST_DRIVER: &str = include_str!("../../guest/cove_guest.py");

/// The guest's exit status for a program that does not compile (see `sandbox.wit`).
const GUEST_SYNTAX_ERROR: i32 = -1;

/// The preview1 driver's process exit status for a syntax error (`cove_guest.main`).
const PREVIEW1_SYNTAX_ERROR: i32 = 120;

/// The wasm stack every execution gets; deep recursion ends in a clean `RecursionError`
/// or a stack-overflow trap, never in a host crash.
pub const WASM_STACK: usize = 8 << 20;

/// Native stack of the threads that run guests: the wasm stack plus room for the host.
pub(crate) const HOST_THREAD_STACK: usize = WASM_STACK + (8 << 20);

/// How often the epoch ticker advances the engine's epoch (the deadline granularity).
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Which Python runtime executes programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// The pre-initialised CPython 3.14 component (fast start, pre-imported stdlib).
    #[default]
    Component,
    /// The pinned CPython 3.12 WASI preview1 build: slow (-O0, ~50 ms start), kept as
    /// a fallback that needs no set-up build step.
    Preview1,
}

/// Per-execution resource limits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Wall-clock deadline of one execution, sleeps included.
    pub time: Duration,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: usize,
    /// Cap on captured stdout, in bytes; a program that writes more gets `OutputLimit`.
    pub stdout_bytes: usize,
    /// Cap on captured stderr, in bytes (its tail is shown in `RuntimeError` details).
    pub stderr_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(4),
            memory_bytes: 512 << 20,
            stdout_bytes: 4 << 20,
            stderr_bytes: 64 << 10,
        }
    }
}

/// How one execution ended, as seen by the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// The program finished; `0` is success, anything else its exit status.
    Exited(i32),
    /// The program does not compile (the SyntaxError is on stderr).
    SyntaxError,
    /// The wall-clock deadline passed.
    TimeLimit,
    /// The program tried to grow its memory past the cap and then failed.
    MemoryLimit,
    /// The program wrote more than the stdout cap.
    OutputLimit,
    /// The guest trapped (stack overflow, unreachable, ...); the message says which.
    Trap(String),
}

/// The result of running one program once.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Execution {
    /// How it ended.
    pub termination: Termination,
    /// Captured stdout (at most the cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the cap).
    pub stderr: Vec<u8>,
    /// Wall-clock time of the execution (instantiation included).
    pub elapsed: Duration,
}

/// Store data of one execution.
struct Guest {
    wasi: GuestWasi,
    table: ResourceTable,
    limiter: MemoryCap,
}

enum GuestWasi {
    Component(WasiCtx),
    Preview1(WasiP1Ctx),
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        match &mut self.wasi {
            GuestWasi::Component(ctx) => WasiCtxView {
                ctx,
                table: &mut self.table,
            },
            GuestWasi::Preview1(_) => unreachable!("the preview1 linker never asks for a p2 view"),
        }
    }
}

/// Refuses memory growth past the cap and remembers that it did.
struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

enum Prepared {
    Component {
        pre: component::InstancePre<Guest>,
        execute: component::ComponentExportIndex,
    },
    Preview1 {
        pre: wasmtime::InstancePre<Guest>,
    },
}

/// A ready-to-run Python sandbox. Cheap to share (`Arc`) across threads; every
/// [`Sandbox::run`] creates a fresh instance.
pub struct Sandbox {
    engine: Engine,
    prepared: Prepared,
    kind: RuntimeKind,
    stop_ticker: Arc<AtomicBool>,
    slots: Slots,
}

/// The free instance slots of a sandbox's pool: a counting semaphore, so that more
/// concurrent runs than slots wait instead of failing.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// A held slot, given back on drop.
struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(count: u32) -> Self {
        Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

thread_local! {
    /// Set on threads whose native stack can hold a full wasm stack.
    static BIG_STACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one with a [`HOST_THREAD_STACK`]-sized stack; called by
/// the batch pool's start handler.
pub(crate) fn mark_big_stack_thread() {
    BIG_STACK.with(|b| b.set(true));
}

/// Instances (and so executions) that one sandbox can run at the same time: the size
/// of its instance pool, twice the cores (at least 4, at most 256). A run beyond it
/// waits for a free slot ([`Slots`]) rather than failing to instantiate.
fn pool_instances() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    (2 * cores).clamp(4, 256)
}

/// Bytes of each pooled linear memory kept mapped between executions and reset in
/// place (only the pages an execution touched, found with Linux's `PAGEMAP_SCAN`
/// where the kernel has it); memory beyond it is returned to the kernel.
const KEEP_RESIDENT: usize = 64 << 20;

/// The engine settings that shape compiled code; part of the compiled-code cache key.
///
/// Instances come from wasmtime's pooling allocator: linear memories live in
/// pre-reserved slots, initialised copy-on-write from the runtime's snapshot and reset
/// in place after each execution, so a run costs no `mmap`/`munmap` and reuses pages
/// that are already resident. On-demand allocation (wasmtime's default) mapped and
/// unmapped a fresh memory per run: slower, and the kernel's per-process memory-map
/// lock made threads of one process stop scaling.
fn engine_config(slots: u32) -> (Config, String) {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 2)
        .total_tables(slots * 16)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(1 << 20)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(WASM_STACK)
        // Only checked against max_wasm_stack (wasmtime's async feature is on); runs are sync.
        .async_stack_size(WASM_STACK + (1 << 20))
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_component_model(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let description = format!(
        "epoch_interruption,max_wasm_stack={WASM_STACK},opt=speed,component_model,cow,pooling"
    );
    (config, description)
}

impl Sandbox {
    /// Loads the runtime of `kind` from [`runtime::runtime_dir`], checks its SHA-256,
    /// and compiles it (or loads the compiled code from the on-disk cache).
    pub fn new(kind: RuntimeKind) -> Result<Self, CodeError> {
        Self::from_dirs(kind, &runtime::runtime_dir(), &runtime::compiled_dir())
    }

    /// Like [`Sandbox::new`] with explicit folders: the runtime files are read from `dir`
    /// and compiled code is cached in `compiled_dir`, keyed by wasmtime version, engine
    /// config and runtime hash.
    pub fn from_dirs(
        kind: RuntimeKind,
        dir: &Path,
        compiled_dir: &Path,
    ) -> Result<Self, CodeError> {
        let slots = pool_instances();
        let (config, config_description) = engine_config(slots);
        let engine = Engine::new(&config).map_err(|e| CodeError::Engine(format!("{e:#}")))?;
        let (path, sha256) = match kind {
            RuntimeKind::Component => {
                let path = dir.join(COMPONENT_FILE);
                let sha = verify_component(&path)?;
                (path, sha)
            }
            RuntimeKind::Preview1 => {
                let path = runtime::verify(
                    &dir.join(PYTHON_312_PREVIEW1.file_name),
                    &PYTHON_312_PREVIEW1,
                )?;
                (path, PYTHON_312_PREVIEW1.sha256.to_string())
            }
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        config_description.hash(&mut hasher);
        let key = format!(
            "{}-wasmtime{}-{:016x}-{}.cwasm",
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("runtime"),
            wasmtime_version(),
            hasher.finish(),
            &sha256[..16]
        );
        let prepared = match kind {
            RuntimeKind::Component => {
                let component = load_cached(
                    compiled_dir,
                    &key,
                    &path,
                    |bytes| unsafe {
                        // SAFETY: the file was written by `Component::serialize` of this very
                        // engine configuration (its name carries the config hash) into the
                        // project's cache; wasmtime re-checks version and config on load.
                        Component::deserialize(&engine, bytes)
                    },
                    |wasm| {
                        let c = Component::new(&engine, wasm)?;
                        let bytes = c.serialize()?;
                        Ok((c, bytes))
                    },
                )?;
                let mut linker = component::Linker::<Guest>::new(&engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
                let execute = component.get_export_index(None, "execute").ok_or_else(|| {
                    CodeError::Engine(format!("{}: no `execute` export", path.display()))
                })?;
                let pre = linker.instantiate_pre(&component).map_err(engine_err)?;
                Prepared::Component { pre, execute }
            }
            RuntimeKind::Preview1 => {
                let module = load_cached(
                    compiled_dir,
                    &key,
                    &path,
                    |bytes| unsafe {
                        // SAFETY: as above, a file this engine configuration serialised.
                        Module::deserialize(&engine, bytes)
                    },
                    |wasm| {
                        let m = Module::new(&engine, wasm)?;
                        let bytes = m.serialize()?;
                        Ok((m, bytes))
                    },
                )?;
                let mut linker = wasmtime::Linker::<Guest>::new(&engine);
                wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |g: &mut Guest| {
                    match &mut g.wasi {
                        GuestWasi::Preview1(ctx) => ctx,
                        GuestWasi::Component(_) => {
                            unreachable!("the p2 linker never asks for a p1 context")
                        }
                    }
                })
                .map_err(engine_err)?;
                let pre = linker.instantiate_pre(&module).map_err(engine_err)?;
                Prepared::Preview1 { pre }
            }
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop_ticker.clone())
            .map_err(|e| CodeError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Self {
            engine,
            prepared,
            kind,
            stop_ticker,
            slots: Slots::new(slots),
        })
    }

    /// Which runtime this sandbox runs.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// Runs `code` once in a fresh instance with `stdin` as its standard input.
    ///
    /// Runs on the calling thread when it has a large enough stack (the batch pool's
    /// threads), otherwise on a short-lived thread that has one.
    pub fn run(&self, code: &str, stdin: &[u8], limits: &Limits) -> Execution {
        if BIG_STACK.with(Cell::get) {
            return self.run_here(code, stdin, limits);
        }
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cove-sandbox".into())
                .stack_size(HOST_THREAD_STACK)
                .spawn_scoped(scope, || self.run_here(code, stdin, limits))
                .map(|handle| handle.join())
        })
        .map_err(|e| format!("cannot start a sandbox thread: {e}"))
        .and_then(|joined| joined.map_err(|_| "the sandbox thread panicked".to_string()))
        .unwrap_or_else(|msg| Execution {
            termination: Termination::Trap(msg),
            stdout: Vec::new(),
            stderr: Vec::new(),
            elapsed: Duration::ZERO,
        })
    }

    fn run_here(&self, code: &str, stdin: &[u8], limits: &Limits) -> Execution {
        // Waiting for a slot is not the program's time.
        let _slot = self.slots.acquire();
        let start = Instant::now();
        let stdout = MemoryOutputPipe::new(limits.stdout_bytes);
        let stderr = MemoryOutputPipe::new(limits.stderr_bytes);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdin(MemoryInputPipe::new(stdin.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let deadline_ms = u32::try_from(limits.time.as_millis()).unwrap_or(u32::MAX);
        let wasi = match self.kind {
            RuntimeKind::Component => GuestWasi::Component(builder.build()),
            RuntimeKind::Preview1 => {
                let driver = format!("{GUEST_DRIVER}\nmain()\n");
                let (len, deadline) = (stdin.len().to_string(), deadline_ms.to_string());
                builder.args(&[
                    "python",
                    "-c",
                    driver.as_str(),
                    code,
                    len.as_str(),
                    deadline.as_str(),
                ]);
                GuestWasi::Preview1(builder.build_p1())
            }
        };
        let mut store = Store::new(
            &self.engine,
            Guest {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryCap {
                    max_bytes: limits.memory_bytes,
                    hit: false,
                },
            },
        );
        store.limiter(|g| &mut g.limiter);
        let ticks = (limits.time.as_micros() / EPOCH_TICK.as_micros()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let result: wasmtime::Result<i32> = match &self.prepared {
            Prepared::Component { pre, execute } => (|| {
                let instance = pre.instantiate(&mut store)?;
                let func =
                    instance.get_typed_func::<(&str, u64, u32), (i32,)>(&mut store, execute)?;
                let (status,) = func.call(&mut store, (code, stdin.len() as u64, deadline_ms))?;
                Ok(status)
            })(),
            Prepared::Preview1 { pre } => (|| {
                let instance = pre.instantiate(&mut store)?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call(&mut store, ())?;
                Ok(0)
            })(),
        };
        let elapsed = start.elapsed();
        let memory_hit = store.data().limiter.hit;
        drop(store);
        let stdout = stdout.contents().to_vec();
        let stderr = stderr.contents().to_vec();
        let output_full = stdout.len() >= limits.stdout_bytes;
        let status = match result {
            Ok(status) => Ok(status),
            Err(err) => match err.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => Ok(*code),
                None => Err(err),
            },
        };
        let termination = match status {
            _ if output_full => Termination::OutputLimit,
            Ok(GUEST_SYNTAX_ERROR) if self.kind == RuntimeKind::Component => {
                Termination::SyntaxError
            }
            Ok(PREVIEW1_SYNTAX_ERROR) if self.kind == RuntimeKind::Preview1 => {
                Termination::SyntaxError
            }
            Ok(0) => Termination::Exited(0),
            Ok(_) | Err(_) if memory_hit => Termination::MemoryLimit,
            Ok(code) => Termination::Exited(code),
            Err(err) => match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Termination::TimeLimit,
                Some(Trap::StackOverflow) => {
                    Termination::Trap("wasm stack overflow (recursion too deep)".into())
                }
                Some(trap) => Termination::Trap(trap.to_string()),
                None => Termination::Trap(format!("{err:#}")),
            },
        };
        let termination = match termination {
            Termination::Exited(_) | Termination::Trap(_) if elapsed > limits.time => {
                Termination::TimeLimit
            }
            other => other,
        };
        Execution {
            termination,
            stdout,
            stderr,
            elapsed,
        }
    }
}

fn engine_err(e: wasmtime::Error) -> CodeError {
    CodeError::Engine(format!("{e:#}"))
}

/// The wasmtime version this crate is built against (the pinned `=48.0.8`).
fn wasmtime_version() -> &'static str {
    "48.0.8"
}

/// Checks the locally built component against the SHA-256 written next to it at build
/// time and returns that hash.
fn verify_component(path: &Path) -> Result<String, CodeError> {
    let hash_path = PathBuf::from(format!("{}{COMPONENT_HASH_SUFFIX}", path.display()));
    if !path.is_file() {
        return Err(CodeError::ComponentMissing(path.to_path_buf()));
    }
    let expected = std::fs::read_to_string(&hash_path)
        .map_err(|source| CodeError::Io {
            path: hash_path.clone(),
            source,
        })?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let actual = runtime::sha256_file(path)?;
    if actual != expected {
        return Err(CodeError::ComponentHash {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(actual)
}

/// Loads compiled code from `cache_dir/key`, or compiles `source` and writes the cache
/// (atomically, through a temporary file), removing older entries of the same runtime.
/// A stale or unreadable cache entry is recompiled, never trusted.
fn load_cached<T>(
    cache_dir: &Path,
    key: &str,
    source: &Path,
    deserialize: impl Fn(&[u8]) -> wasmtime::Result<T>,
    compile: impl Fn(&[u8]) -> wasmtime::Result<(T, Vec<u8>)>,
) -> Result<T, CodeError> {
    let cached = cache_dir.join(key);
    if let Ok(bytes) = std::fs::read(&cached)
        && let Ok(value) = deserialize(&bytes)
    {
        return Ok(value);
    }
    let wasm = std::fs::read(source).map_err(|e| CodeError::Io {
        path: source.to_path_buf(),
        source: e,
    })?;
    let (value, bytes) = compile(&wasm)
        .map_err(|e| CodeError::Engine(format!("compiling {}: {e:#}", source.display())))?;
    // The cache is an optimisation: failing to write or prune it is not an error.
    let stem = key.split("-wasmtime").next().unwrap_or(key);
    if let Ok(entries) = std::fs::read_dir(cache_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{stem}-wasmtime"))
                && name.ends_with(".cwasm")
                && name != key
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if std::fs::create_dir_all(cache_dir).is_ok() {
        let tmp = cache_dir.join(format!("{key}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &cached);
        }
    }
    Ok(value)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until `stop` is set.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cove-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
}
